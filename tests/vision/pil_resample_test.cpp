// Pillow's anti-aliased resize: pil_resize against Pillow's own output (tests/data/resize, written by
// tools/reference/resize_reference.py) for downscales 2x..9x, fractional factors and different
// factors per axis; and resize_to_input's choice between it and OpenCV's bilinear.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/vision/pil_resample.hpp"
#include "sluice/vision/preprocess.hpp"

namespace {

using namespace sluice::vision;
const std::string kDir = std::string(SLUICE_TEST_DATA_DIR) + "/resize/";

/// The reference script's source: v(x, y, c) = ((37 x + 91 y + 53 c) ^ (x y)) & 255.
cv::Mat source(int width, int height, int channels) {
  cv::Mat m(height, width, CV_8UC(channels));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        m.ptr<std::uint8_t>(y)[x * channels + c] =
            static_cast<std::uint8_t>(((x * 37 + y * 91 + c * 53) ^ (x * y)) & 255);
  return m;
}

cv::Mat expected(const std::string& name, int channels) {
  cv::Mat e = cv::imread(kDir + name + ".png", cv::IMREAD_UNCHANGED);
  if (channels == 3 && !e.empty()) cv::cvtColor(e, e, cv::COLOR_BGR2RGB);  // the source is in Pillow's order
  return e;
}

double max_diff(const cv::Mat& a, const cv::Mat& b) {
  double m = 0;
  cv::Mat d;
  cv::absdiff(a.reshape(1), b.reshape(1), d);
  cv::minMaxLoc(d, nullptr, &m);
  return m;
}

TEST(PilResample, MatchesPillowOnDownscales) {
  std::ifstream in(kDir + "cases.json");
  ASSERT_TRUE(in) << "run tools/reference/resize_reference.py";
  const auto cases = nlohmann::json::parse(in);
  const int w = cases["source"]["width"], h = cases["source"]["height"];
  ASSERT_GE(cases["cases"].size(), 12u);
  for (const auto& c : cases["cases"]) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const int channels = c["channels"];
    const cv::Mat want = expected(name, channels);
    ASSERT_FALSE(want.empty());
    const PilFilter filter = c["filter"] == "bilinear" ? PilFilter::bilinear : PilFilter::lanczos;
    const cv::Mat got = pil_resize(source(w, h, channels), cv::Size(c["width"], c["height"]), filter);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.channels(), want.channels());
    EXPECT_LE(max_diff(got, want), 1.0);
  }
}

TEST(PilResample, OpenCvBilinearIsFarFromIt) {
  // What the anti-aliasing changes: OpenCV's bilinear shrink of the same source is many grey levels
  // away from Pillow's (the comparison above would catch a bilinear stand-in).
  const cv::Mat src = source(360, 270, 1);
  cv::Mat bilinear;
  cv::resize(src, bilinear, cv::Size(90, 68), 0, 0, cv::INTER_LINEAR);
  EXPECT_GT(max_diff(bilinear, expected("lanczos_c1_4x", 1)), 20.0);
}

TEST(PilResample, ResizeToInputShrinksLikePillowAndEnlargesLikeBefore) {
  PreprocessOptions o;
  o.input_width = 90;
  o.input_height = 68;
  DecodedImage big;
  big.pixels = source(360, 270, 3);
  const DecodedImage small = resize_to_input(big, o);
  EXPECT_EQ(max_diff(small.pixels, pil_resize(big.pixels, cv::Size(90, 68), PilFilter::lanczos)), 0.0);
  PreprocessOptions with_bilinear = o;
  with_bilinear.shrink_filter = PilFilter::bilinear;
  EXPECT_EQ(max_diff(resize_to_input(big, with_bilinear).pixels,
                     pil_resize(big.pixels, cv::Size(90, 68), PilFilter::bilinear)),
            0.0);

  DecodedImage tiny;
  tiny.pixels = source(40, 30, 3);
  cv::Mat bilinear;
  cv::resize(tiny.pixels, bilinear, cv::Size(90, 68), 0, 0, cv::INTER_LINEAR);
  EXPECT_EQ(max_diff(resize_to_input(tiny, o).pixels, bilinear), 0.0);

  DecodedImage wide;  // wider but shorter than the input: a mixed case keeps the bilinear path
  wide.pixels = source(200, 40, 1);
  cv::resize(wide.pixels, bilinear, cv::Size(90, 68), 0, 0, cv::INTER_LINEAR);
  EXPECT_EQ(max_diff(resize_to_input(wide, o).pixels, bilinear), 0.0);
}

TEST(PilResample, TapsCachedAcrossSizesGiveTheSameImage) {
  // More size pairs than the per-thread taps cache holds, twice: the second round runs on taps
  // evicted and recomputed or found in the cache, and must give the first round's pixels.
  const cv::Mat src = source(300, 260, 1);
  std::vector<cv::Mat> first;
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 20; ++i) {
      const cv::Mat got = pil_resize(src, cv::Size(40 + 7 * i, 30 + 5 * i), PilFilter::lanczos);
      if (round == 0) {
        first.push_back(got);
      } else {
        SCOPED_TRACE(i);
        EXPECT_EQ(max_diff(got, first[static_cast<std::size_t>(i)]), 0.0);
      }
    }
  // And a four-channel image (the horizontal pass runs on its transpose) matches its planes resized
  // one by one.
  std::vector<cv::Mat> planes;
  cv::split(source(150, 110, 4), planes);
  cv::Mat together = pil_resize(source(150, 110, 4), cv::Size(47, 33), PilFilter::lanczos), part;
  for (int c = 0; c < 4; ++c) {
    cv::extractChannel(together, part, c);
    EXPECT_EQ(max_diff(part, pil_resize(planes[static_cast<std::size_t>(c)], cv::Size(47, 33), PilFilter::lanczos)), 0.0);
  }
}

TEST(PilResample, RefusesWhatItCannotResize) {
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_32FC1), cv::Size(2, 2), PilFilter::lanczos), sluice::Error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_8UC(5)), cv::Size(2, 2), PilFilter::lanczos), sluice::Error);
  EXPECT_THROW(pil_resize(cv::Mat(4, 4, CV_8UC1), cv::Size(0, 2), PilFilter::lanczos), sluice::Error);
}

/// pil_pass_down's rows as the plain loop sums them, one output byte at a time.
cv::Mat pass_down_one_at_a_time(const cv::Mat& in, const detail::PilTaps& t) {
  cv::Mat out(static_cast<int>(t.first.size()), in.cols, in.type());
  const std::size_t row = static_cast<std::size_t>(in.cols) * in.channels();
  for (int i = 0; i < out.rows; ++i)
    detail::pil_pass_down_scalar(in.ptr<std::uint8_t>(t.first[i]), in.step,
                                 &t.weights[static_cast<std::size_t>(i) * t.ksize], t.count[i], 0, row,
                                 out.ptr<std::uint8_t>(i));
  return out;
}

TEST(PilResample, ThePassDownGivesThePlainLoopsSumsBitForBit) {
  // With AVX2 the pass sums sixteen bytes of a row at once, two taps per instruction with each
  // weight split into 16-bit halves: every filter, odd and even tap counts (one tap to a 45-tap
  // shrink), rows of 1 to 67 bytes (no whole block, blocks and a tail), a row step wider than the
  // row, and pixels from noise to all-255 and 0/255 stripes (the Lanczos lobes' negative weights
  // then drive sums below 0 and past 255 before the clip).
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::pair<int, int> sizes[] = {{300, 128}, {225, 128}, {17, 5}, {40, 39}, {128, 128}, {700, 46}, {9, 1}};
  for (PilFilter f : {PilFilter::bilinear, PilFilter::bicubic, PilFilter::lanczos})
    for (auto [in_rows, out_rows] : sizes)
      for (int width : {1, 15, 16, 17, 33, 67})
        for (int pattern = 0; pattern < 3; ++pattern) {
          cv::Mat wide(in_rows, width + 5, CV_8UC1);
          for (int y = 0; y < in_rows; ++y)
            for (int x = 0; x < width + 5; ++x)
              wide.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(
                  pattern == 0 ? byte(rng) : pattern == 1 ? 255 : ((y / 2 + x) % 2) * 255);
          const cv::Mat in = wide.colRange(0, width);  // rows `step` apart, wider than the row
          const auto taps = detail::pil_taps(in_rows, out_rows, f);
          cv::Mat got;
          detail::pil_pass_down(in, taps, got);
          const cv::Mat want = pass_down_one_at_a_time(in, taps);
          ASSERT_EQ(cv::norm(got, want, cv::NORM_INF), 0.0)
              << "filter " << static_cast<int>(f) << ", " << in_rows << " -> " << out_rows << " rows of " << width
              << ", pattern " << pattern;
        }
}

TEST(PilResample, TheGreyTransposeIsOpenCvs) {
  // 16 x 16 blocks in registers and the edges byte by byte: sizes below, at and past whole blocks
  // in each direction, and a window of a larger image (rows a step apart).
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int rows : {1, 15, 16, 17, 33, 48, 225})
    for (int cols : {1, 7, 16, 31, 32, 290}) {
      cv::Mat big(rows + 3, cols + 9, CV_8UC1);
      for (int y = 0; y < big.rows; ++y)
        for (int x = 0; x < big.cols; ++x) big.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(byte(rng));
      const cv::Mat in = big(cv::Rect(4, 2, cols, rows));
      cv::Mat got, want;
      detail::transpose_grey(in, got);
      cv::transpose(in, want);
      ASSERT_EQ(got.size(), want.size());
      ASSERT_EQ(cv::norm(got, want, cv::NORM_INF), 0.0) << rows << " x " << cols;
    }
}

}  // namespace
