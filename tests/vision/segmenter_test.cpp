// The Segmenter's three stages on a batch that mixes good and bad images: every bad image gets its
// own clear error, the good ones of the same batch get their polygons. The "network" is one 1x1
// convolution on the CPU backend (logit = 10 * mean(RGB) - 5), so the expected mask is known: the
// bright disc drawn into each test image.
// The CPU backend first: its intrinsics header silences GCC 12's AVX-512 false positives only when it
// is the first to include <immintrin.h> (OpenCV's headers include it too).
#include "sluice/backends/cpu/cpu_backend.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/vision/segmenter.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace sv = sluice::vision;
using sluice::cpu::CpuBackend;

namespace {

struct BrightnessNet {
  explicit BrightnessNet(CpuBackend& b) {
    sluice::weights::HostTensor w{{1, 3, 1, 1}, {10.0f / 3, 10.0f / 3, 10.0f / 3}};
    sluice::weights::HostTensor bias{{1}, {-5.0f}};
    const sluice::WeightView bias_view = bias;
    conv = std::make_shared<CpuBackend::conv_type>(b.make_conv(w, &bias_view, sluice::ConvSpec{}));
  }
  CpuBackend::tensor_type forward(CpuBackend& b, const CpuBackend::tensor_type& x) const {
    return b.conv2d(x, *conv, sluice::Activation::none);
  }
  std::int64_t in_channels() const { return 3; }
  std::int64_t out_channels() const { return 1; }
  std::int64_t min_input_size() const { return 1; }
  std::shared_ptr<const CpuBackend::conv_type> conv;
};
static_assert(sluice::models::Network<BrightnessNet, CpuBackend>);
using TestSegmenter = sv::Segmenter<BrightnessNet, CpuBackend>;
static_assert(sluice::StagedBatchModel<TestSegmenter>);
static_assert(sluice::BatchModel<TestSegmenter>);

cv::Mat disc_image(cv::Size size, cv::Point c, int r, int type = CV_8UC3) {
  cv::Mat m(size, CV_8UC3, cv::Scalar(25, 25, 25));
  cv::circle(m, c, r, cv::Scalar(230, 230, 230), cv::FILLED);
  if (type == CV_8UC1) cv::cvtColor(m, m, cv::COLOR_BGR2GRAY);
  return m;
}

cv::Mat disc_mask(cv::Size size, cv::Point c, int r) {
  cv::Mat m = cv::Mat::zeros(size, CV_8UC1);
  cv::circle(m, c, r, cv::Scalar(255), cv::FILLED);
  return m;
}

std::shared_ptr<const std::vector<std::uint8_t>> bytes_of(const cv::Mat& img, const std::string& ext) {
  auto out = std::make_shared<std::vector<std::uint8_t>>();
  EXPECT_TRUE(cv::imencode(ext, img, *out));
  return out;
}

std::shared_ptr<const std::vector<std::uint8_t>> bytes_of(const std::string& s) {
  return std::make_shared<const std::vector<std::uint8_t>>(s.begin(), s.end());
}

double iou(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat i, u;
  cv::bitwise_and(a, b, i);
  cv::bitwise_or(a, b, u);
  return static_cast<double>(cv::countNonZero(i)) / cv::countNonZero(u);
}

sv::SegmentRequest request(std::string name, std::shared_ptr<const std::vector<std::uint8_t>> bytes,
                           sv::PostprocessOptions options = {}) {
  sv::SegmentRequest r;
  r.name = std::move(name);
  r.bytes = std::move(bytes);
  r.options = options;
  return r;
}

sv::PostprocessOptions threshold(double t) {
  sv::PostprocessOptions o;
  o.threshold = t;
  return o;
}

sv::PostprocessOptions no_holes() {
  sv::PostprocessOptions o;
  o.detect_holes = false;
  return o;
}

/// The highest probability BrightnessNet gives `bytes`, through the pipeline's own steps: its logit
/// is linear in the channel mean of the input-size image, and the probability map goes back to the
/// original size bilinearly before its maximum is taken.
double expected_confidence(const std::vector<std::uint8_t>& bytes, const sv::PreprocessOptions& o) {
  const sv::DecodedImage decoded = sv::decode_image(bytes);
  const cv::Mat small = sv::resize_to_input(decoded, o).pixels;
  cv::Mat f;
  small.reshape(1, static_cast<int>(small.total())).convertTo(f, CV_32F);
  cv::Mat means;
  cv::reduce(f, means, 1, cv::REDUCE_AVG);
  cv::Mat prob(small.size(), CV_32FC1);
  for (int i = 0; i < static_cast<int>(small.total()); ++i)
    prob.ptr<float>()[i] = 1.0f / (1.0f + std::exp(-(10.0f * means.at<float>(i) / 255.0f - 5.0f)));
  cv::Mat full;
  cv::resize(prob, full, decoded.pixels.size(), 0.0, 0.0, cv::INTER_LINEAR);
  double m = 0;
  cv::minMaxLoc(full, nullptr, &m);
  return m;
}

sv::SegmenterConfig test_config() {
  sv::SegmenterConfig c;
  c.model_name = "brightness";
  c.preprocess = {.input_height = 64, .input_width = 64, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  return c;
}

}  // namespace

TEST(Segmenter, BadImagesFailAloneAndTheRestOfTheBatchGetsResults) {
  CpuBackend cpu({.threads = 1});
  TestSegmenter seg(BrightnessNet(cpu), {&cpu}, test_config());

  auto huge = *bytes_of(disc_image({16, 16}, {8, 8}, 4), ".png");
  for (int i = 0; i < 4; ++i) huge[16 + i] = huge[20 + i] = static_cast<std::uint8_t>(20000u >> (24 - 8 * i));

  std::vector<sv::SegmentRequest> requests(9);
  requests[0] = request("good_png", bytes_of(disc_image({120, 90}, {60, 45}, 30), ".png"));
  requests[1] = request("text", bytes_of("definitely not an image"));
  requests[2] = request("empty", bytes_of(""));
  requests[3] = request("one_pixel", bytes_of(cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 1, 1)), ".png"));
  requests[4] = request("huge", std::make_shared<const std::vector<std::uint8_t>>(huge));
  requests[5] = request("bad_threshold", requests[0].bytes, threshold(0.95));
  requests[6].name = "missing";
  requests[6].path = "/nonexistent/sluice/x.png";
  requests[7] = request("good_gray_bmp", bytes_of(disc_image({100, 100}, {40, 55}, 25, CV_8UC1), ".bmp"));
  requests[8] = request("good_no_holes", requests[0].bytes, no_holes());

  auto batch = seg.prepare(requests);
  EXPECT_EQ(batch.images, 3u);
  EXPECT_EQ(batch.input.size(), 3u * 3 * 64 * 64);
  seg.run(batch, sluice::RunContext{});
  std::vector<sv::SegmentResponse> out(requests.size());
  seg.finish(batch, out);

  const std::vector<std::pair<std::size_t, std::string>> failures = {
      {1, "not a decodable image"}, {2, "empty file"}, {3, "1 x 1"}, {4, "20000 x 20000"},
      {5, "threshold"},             {6, "cannot open"}};
  for (const auto& [i, what] : failures) {
    EXPECT_FALSE(out[i].ok()) << out[i].name;
    EXPECT_EQ(out[i].error, sluice::errc::invalid_argument) << out[i].name;
    EXPECT_NE(out[i].message.find(what), std::string::npos) << out[i].name << ": " << out[i].message;
    EXPECT_TRUE(out[i].segmentation.polygons.empty());
  }
  const std::vector<std::pair<std::size_t, cv::Mat>> goods = {
      {0, disc_mask({120, 90}, {60, 45}, 30)}, {7, disc_mask({100, 100}, {40, 55}, 25)},
      {8, disc_mask({120, 90}, {60, 45}, 30)}};
  std::size_t position = 0;
  for (const auto& [i, truth] : goods) {
    const auto& r = out[i];
    ASSERT_TRUE(r.ok()) << r.name << ": " << r.message;
    EXPECT_EQ(r.name, requests[i].name);
    EXPECT_EQ(r.segmentation.image_size, truth.size());
    ASSERT_EQ(r.segmentation.polygons.size(), 1u) << r.name;
    EXPECT_GT(iou(sv::rasterize(r.segmentation), truth), 0.9) << r.name;
    EXPECT_EQ(r.info.batch_size, 3u);
    EXPECT_EQ(r.info.batch_position, position++);
    EXPECT_EQ(r.info.model_used, "brightness");
    EXPECT_EQ(r.batch_requests, requests.size());
    // max probability: at least that of the disc colour 230 (the anti-aliased shrink rings a little
    // above it at the disc's edge), exactly what the pipeline's steps give, up to float rounding
    const double sigmoid_230 = 1.0 / (1.0 + std::exp(-(10.0 * 230.0 / 255.0 - 5.0)));
    EXPECT_GE(r.segmentation.confidence, sigmoid_230 - 1e-5);
    EXPECT_NEAR(r.segmentation.confidence, expected_confidence(*requests[i].bytes, test_config().preprocess), 1e-5);
  }
}

TEST(Segmenter, AnAllBadBatchSkipsTheNetwork) {
  CpuBackend cpu({.threads = 1});
  TestSegmenter seg(BrightnessNet(cpu), {&cpu}, test_config());
  std::vector<sv::SegmentRequest> requests = {request("a", bytes_of("x")), request("b", bytes_of(""))};
  auto batch = seg.prepare(requests);
  EXPECT_EQ(batch.images, 0u);
  seg.run(batch, sluice::RunContext{});
  std::vector<sv::SegmentResponse> out(2);
  seg.finish(batch, out);
  EXPECT_FALSE(out[0].ok());
  EXPECT_FALSE(out[1].ok());
}

TEST(Segmenter, LanesUseTheirOwnBackendAndGiveTheSameResult) {
  CpuBackend a({.threads = 1}), b({.threads = 1});
  TestSegmenter seg(BrightnessNet(a), {&a, &b}, test_config());
  std::vector<sv::SegmentRequest> requests = {request("x", bytes_of(disc_image({80, 80}, {40, 40}, 20), ".png"))};
  auto b0 = seg.prepare(requests);
  auto b1 = seg.prepare(requests);
  EXPECT_NE(b0.id, b1.id);
  a.reset_peak();
  b.reset_peak();
  seg.run(b0, sluice::RunContext{0});
  seg.run(b1, sluice::RunContext{1});
  EXPECT_GT(a.memory().peak_bytes, 0u);
  EXPECT_GT(b.memory().peak_bytes, 0u);
  EXPECT_EQ(b0.logits, b1.logits);
}

TEST(Segmenter, RejectsABadConfiguration) {
  CpuBackend cpu({.threads = 1});
  EXPECT_THROW(TestSegmenter(BrightnessNet(cpu), {}, test_config()), sluice::Error);
  auto c = test_config();
  c.preprocess.input_width = 0;
  EXPECT_THROW(TestSegmenter(BrightnessNet(cpu), {&cpu}, c), sluice::Error);
}
