// ModelsInferenceService, called as its transports call it: the protocol models of a real
// BatcherService (BrightnessNet, tests/support/brightness_service.hpp), their outputs checked
// against what the pipeline's own steps give, every malformed tensor refused with a message that
// names it, and protocol requests sharing batches with /api/v1 requests.
#include "support/brightness_service.hpp"
#include "support/serve_test_support.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "sluice/serve/fair_pool.hpp"
#include "sluice/serve/memory_budget.hpp"
#include "sluice/serve/oip_models.hpp"
#include "sluice/serve/oip_tensor.hpp"

namespace {

using namespace sluice::serve;
using namespace sluice::serve::testing;  // BrightnessService and its test images

std::string rgb_bytes(const cv::Mat& bgr) {
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return std::string(reinterpret_cast<const char*>(rgb.data), rgb.total() * 3);
}

std::string bytes_tensor(const std::vector<std::string>& elements) {
  std::string data;
  for (const auto& e : elements) oip::append_bytes_element(data, e);
  return data;
}

struct Answer {
  std::optional<oip::Failure> failure;
  oip::InferResponse response;
  const oip::OutputTensor* output(const std::string& name) const {
    for (const auto& o : response.outputs)
      if (o.name == name) return &o;
    return nullptr;
  }
};

oip::InputTensor input(std::string name, oip::DataType type, std::vector<std::int64_t> shape, std::string data) {
  auto owned = std::make_shared<std::string>(std::move(data));
  oip::InputTensor t;
  t.name = std::move(name);
  t.datatype = type;
  t.shape = std::move(shape);
  t.data = *owned;
  t.owner = owned;
  return t;
}

oip::InferRequest request(std::string model, oip::InputTensor in, std::vector<std::string> outputs = {}) {
  oip::InferRequest r;
  r.model_name = std::move(model);
  r.id = "req-1";
  r.inputs.push_back(std::move(in));
  for (auto& o : outputs) r.outputs.push_back({std::move(o), oip::Parameters::object()});
  return r;
}

struct OipFixture : ::testing::Test {
  Executor executor;
  std::shared_ptr<BrightnessService> model;
  std::shared_ptr<Api> api;
  std::unique_ptr<ModelsInferenceService> service;
  ApiLimits limits;

  void start(BrightnessOptions options = {}) {
    model = make_brightness_service("bright", executor, options);
    limits.max_files = 4;
    limits.max_pixels = 512 * 512;
    api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", limits,
                                std::make_shared<HttpMetrics>());
    service = std::make_unique<ModelsInferenceService>(api);
  }
  void SetUp() override { start(); }
  void TearDown() override {
    service.reset();
    api.reset();
    if (model) model->stop();
    model.reset();
  }

  std::future<Answer> infer_async(oip::InferRequest r) {
    auto p = std::make_shared<std::promise<Answer>>();
    auto f = p->get_future();
    service->infer(std::move(r), [p](std::optional<oip::Failure> failure, oip::InferResponse response) {
      p->set_value(Answer{std::move(failure), std::move(response)});
    });
    return f;
  }
  Answer infer(oip::InferRequest r) { return infer_async(std::move(r)).get(); }

  /// The failure's status and message, for the attacks: the request must fail.
  std::pair<oip::Status, std::string> refused(oip::InferRequest r) {
    const Answer a = infer(std::move(r));
    EXPECT_TRUE(a.failure.has_value());
    if (!a.failure) return {oip::Status::ok, ""};
    return {a.failure->status, a.failure->message};
  }

  /// The same image's answer from /api/v1/segment (the result JSON, with the timing fields).
  nlohmann::json segment_v1(const std::string& png) {
    HttpRequest req{http::verb::post, "/api/v1/segment?model=bright", 11};
    req.set(http::field::content_type, "image/png");
    req.body() = png;
    req.prepare_payload();
    std::promise<HttpResponse> p;
    api->handle(req, [&](HttpResponse r) { p.set_value(std::move(r)); });
    const HttpResponse r = p.get_future().get();
    EXPECT_EQ(r.result_int(), 200u) << r.body();
    return nlohmann::json::parse(r.body());
  }
};

/// The expected mask of BrightnessNet on `bgr` at threshold 0.5 after the pipeline's resize to `s`
/// and back: probability > 0.5 where 10 * mean(RGB) / 255 - 5 > 0, computed here with OpenCV alone.
cv::Mat expected_mask(const cv::Mat& bgr, int s) {
  cv::Mat small;
  cv::resize(bgr, small, cv::Size(s, s), 0, 0, cv::INTER_AREA);
  cv::Mat f;
  small.convertTo(f, CV_32FC3, 1.0 / 255.0);
  std::vector<cv::Mat> ch;
  cv::split(f, ch);
  cv::Mat logit = (ch[0] + ch[1] + ch[2]) * (10.0 / 3.0) - 5.0;
  cv::Mat prob;
  cv::exp(-logit, prob);
  prob = 1.0 / (1.0 + prob);
  cv::Mat full;
  cv::resize(prob, full, bgr.size(), 0, 0, cv::INTER_LINEAR);
  cv::Mat mask = full > 0.5;
  return mask / 255;
}

/// Waits (bounded) for `done`: what a completion handler releases after it answered is released a
/// moment after the caller has its answer.
template <class Pred>
bool eventually(Pred done) {
  for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return done();
}

double agreement(const cv::Mat& a, const cv::Mat& b) {
  return 1.0 - static_cast<double>(cv::countNonZero(a != b)) / static_cast<double>(a.total());
}

TEST_F(OipFixture, MetadataAndReadiness) {
  EXPECT_TRUE(service->live());
  EXPECT_TRUE(service->ready());
  EXPECT_EQ(service->server_metadata().name, "sluice");
  const auto ext = service->server_metadata().extensions;
  EXPECT_NE(std::find(ext.begin(), ext.end(), "binary_tensor_data"), ext.end());
  EXPECT_EQ(service->model_names(), (std::vector<std::string>{"bright", "bright_network"}));
  EXPECT_TRUE(service->model_ready("bright", ""));
  EXPECT_TRUE(service->model_ready("bright", "1"));
  EXPECT_TRUE(service->model_ready("bright_network", "1"));
  EXPECT_FALSE(service->model_ready("bright", "2"));
  EXPECT_FALSE(service->model_ready("nope", ""));
  EXPECT_FALSE(service->model_ready("", ""));
  EXPECT_FALSE(service->model_ready("bright_networkx", ""));
  const auto md = service->model_metadata("bright", "");
  ASSERT_TRUE(md);
  ASSERT_EQ(md->inputs.size(), 1u);
  EXPECT_EQ(md->inputs[0].name, "IMAGE");
  EXPECT_EQ(md->outputs.size(), 3u);
  const auto net = service->model_metadata("bright_network", "1");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->inputs[0].shape, (std::vector<std::int64_t>{-1, 3, 32, 32}));
  EXPECT_EQ(net->outputs[0].shape, (std::vector<std::int64_t>{-1, 1, 32, 32}));
  EXPECT_FALSE(service->model_metadata("bright", "7"));
}

TEST(OipLoading, NotReadyAndUnavailableWhileLoading) {
  auto api = std::make_shared<Api>(ApiLimits{}, std::make_shared<HttpMetrics>());
  ModelsInferenceService service(api);
  EXPECT_TRUE(service.live());
  EXPECT_FALSE(service.ready());
  EXPECT_FALSE(service.model_ready("bright", ""));
  EXPECT_TRUE(service.model_names().empty());
  std::promise<std::optional<oip::Failure>> p;
  service.infer(request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({"x"}))),
                [&](std::optional<oip::Failure> f, oip::InferResponse) { p.set_value(std::move(f)); });
  const auto f = p.get_future().get();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, oip::Status::unavailable);
}

TEST_F(OipFixture, EncodedImagesGiveMaskAndPolygonsEqualToApiV1) {
  const cv::Mat a = disc_image({96, 80}, {40, 50}, 25), b = disc_image({96, 80}, {30, 30}, 18);
  const std::string pa = png_of(a), pb = png_of(b);
  const Answer r = infer(request("bright", input("IMAGE", oip::DataType::BYTES, {2}, bytes_tensor({pa, pb}))));
  ASSERT_FALSE(r.failure) << r.failure->message;
  EXPECT_EQ(r.response.id, "req-1");
  EXPECT_EQ(r.response.model_version, "1");
  ASSERT_EQ(r.response.outputs.size(), 2u);  // the defaults, in this order
  EXPECT_EQ(r.response.outputs[0].name, "MASK");
  EXPECT_EQ(r.response.outputs[1].name, "POLYGONS");
  const auto* mask = r.output("MASK");
  EXPECT_EQ(mask->datatype, oip::DataType::UINT8);
  ASSERT_EQ(mask->shape, (std::vector<std::int64_t>{2, 80, 96}));  // cv::Size is width x height
  ASSERT_EQ(mask->data.size(), 2u * 96 * 80);
  for (int i = 0; i < 2; ++i) {
    const cv::Mat got(80, 96, CV_8UC1, const_cast<char*>(mask->data.data()) + i * 96 * 80);
    double lo, hi;
    cv::minMaxLoc(got, &lo, &hi);
    EXPECT_EQ(lo, 0.0);
    EXPECT_EQ(hi, 1.0);  // 0/1, not 0/255
    // Pillow's Lanczos (the pipeline) and OpenCV's area resize differ on the disc's rim only.
    EXPECT_GT(agreement(got, expected_mask(i == 0 ? a : b, 32)), 0.97);
  }
  const auto* polygons = r.output("POLYGONS");
  EXPECT_EQ(polygons->datatype, oip::DataType::BYTES);
  ASSERT_EQ(polygons->shape, (std::vector<std::int64_t>{2}));
  const auto rows = oip::split_bytes(polygons->data, 2);
  ASSERT_TRUE(rows);
  const auto j0 = nlohmann::json::parse((*rows)[0]);
  const auto v1 = segment_v1(pa);
  EXPECT_EQ(j0["polygons"], v1["polygons"]);
  EXPECT_EQ(j0["image_size"], v1["image_size"]);
  EXPECT_FALSE(j0["polygons"].empty());
}

TEST_F(OipFixture, RgbPixelsEqualTheEncodedPath) {
  const cv::Mat a = disc_image({64, 72}, {30, 40}, 20), b = disc_image({64, 72}, {50, 20}, 12);
  oip::InferRequest bytes = request("bright", input("IMAGE", oip::DataType::BYTES, {2, 1}, bytes_tensor({png_of(a), png_of(b)})),
                                    {"POLYGONS", "PROBABILITY", "MASK"});
  oip::InferRequest pixels = request("bright", input("IMAGE", oip::DataType::UINT8, {2, 72, 64, 3}, rgb_bytes(a) + rgb_bytes(b)),
                                     {"POLYGONS", "PROBABILITY", "MASK"});
  const Answer x = infer(std::move(bytes)), y = infer(std::move(pixels));
  ASSERT_FALSE(x.failure) << x.failure->message;
  ASSERT_FALSE(y.failure) << y.failure->message;
  ASSERT_EQ(y.response.outputs.size(), 3u);
  EXPECT_EQ(y.response.outputs[1].name, "PROBABILITY");
  EXPECT_EQ(y.output("PROBABILITY")->shape, (std::vector<std::int64_t>{2, 72, 64}));
  for (const char* name : {"POLYGONS", "PROBABILITY", "MASK"}) EXPECT_TRUE(x.output(name)->data == y.output(name)->data) << name;
}

TEST_F(OipFixture, ADecodeStageAnswersAsTheModelsOwnDecodingAndGivesItsBudgetBack) {
  const cv::Mat a = disc_image({64, 72}, {30, 40}, 20), b = disc_image({64, 72}, {50, 20}, 12);
  const std::vector<std::string> outputs = {"POLYGONS", "PROBABILITY", "MASK"};
  auto encoded = [&] { return request("bright", input("IMAGE", oip::DataType::BYTES, {2, 1}, bytes_tensor({png_of(a), png_of(b)})), outputs); };
  auto pixels = [&] { return request("bright", input("IMAGE", oip::DataType::UINT8, {2, 72, 64, 3}, rgb_bytes(a) + rgb_bytes(b)), outputs); };
  // Without a decode stage the model's prepare decodes: the answers the stage must give too.
  const Answer want_encoded = infer(encoded()), want_pixels = infer(pixels());
  ASSERT_FALSE(want_encoded.failure) << want_encoded.failure->message;
  ASSERT_FALSE(want_pixels.failure) << want_pixels.failure->message;
  TearDown();
  BrightnessOptions options;
  options.decoding = {std::make_shared<FairPool>(2), std::make_shared<MemoryBudget>(std::size_t{64} << 20)};
  const std::shared_ptr<MemoryBudget> memory = options.decoding.memory;
  start(options);
  const Answer got_encoded = infer(encoded()), got_pixels = infer(pixels());
  ASSERT_FALSE(got_encoded.failure) << got_encoded.failure->message;
  ASSERT_FALSE(got_pixels.failure) << got_pixels.failure->message;
  for (const std::string& name : outputs) {
    EXPECT_TRUE(got_encoded.output(name)->data == want_encoded.output(name)->data) << name;
    EXPECT_TRUE(got_pixels.output(name)->data == want_pixels.output(name)->data) << name;
  }
  EXPECT_EQ(got_pixels.output("PROBABILITY")->shape, (std::vector<std::int64_t>{2, 72, 64}));
  // Each image's resized pixels are held while queued, and let go once its batch has run.
  EXPECT_TRUE(eventually([&] { return memory->in_use() == 0; })) << memory->in_use();
  // Both forms did pass through the stage: under a budget smaller than one image, it refuses them.
  TearDown();
  options.decoding.memory = std::make_shared<MemoryBudget>(1000);
  start(options);
  const auto [encoded_status, encoded_message] = refused(encoded());
  EXPECT_NE(encoded_message.find("more than the server's memory budget of 1000"), std::string::npos) << encoded_message;
  const auto [pixels_status, pixels_message] = refused(pixels());
  EXPECT_NE(pixels_message.find("cannot hold this image's 13824 bytes"), std::string::npos) << pixels_message;
}

TEST_F(OipFixture, ThresholdAndDetectHolesParameters) {
  cv::Mat ring = disc_image({80, 80}, {40, 40}, 30);
  cv::circle(ring, {40, 40}, 10, cv::Scalar(10, 30, 50), cv::FILLED);
  auto holes = [&](bool detect) {
    auto r = request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png_of(ring)})), {"POLYGONS"});
    r.parameters["detect_holes"] = true;
    r.inputs[0].parameters["detect_holes"] = detect;  // the input's parameter wins
    const Answer a = infer(std::move(r));
    EXPECT_FALSE(a.failure);
    return nlohmann::json::parse(oip::split_bytes(a.output("POLYGONS")->data, 1)->at(0))["polygons"].size();
  };
  EXPECT_EQ(holes(true), 2u);
  EXPECT_EQ(holes(false), 1u);
  auto r = request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png_of(ring)})), {"POLYGONS"});
  r.parameters["threshold"] = 0.7;
  const Answer a = infer(std::move(r));
  ASSERT_FALSE(a.failure);
  EXPECT_EQ(nlohmann::json::parse(oip::split_bytes(a.output("POLYGONS")->data, 1)->at(0))["threshold_used"], 0.7);
}

TEST_F(OipFixture, NetworkModelReturnsTheLogitsOfItsInput) {
  // Two rows of a known input: logit = (10 / 3) * (r + g + b) - 5 per pixel.
  const int s = 32;
  std::vector<float> x(2 * 3 * s * s);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
  std::string data(reinterpret_cast<const char*>(x.data()), x.size() * 4);
  const Answer a = infer(request("bright_network", input("INPUT", oip::DataType::FP32, {2, 3, s, s}, data)));
  ASSERT_FALSE(a.failure) << a.failure->message;
  const auto* logits = a.output("LOGITS");
  ASSERT_TRUE(logits);
  ASSERT_EQ(logits->shape, (std::vector<std::int64_t>{2, 1, s, s}));
  ASSERT_EQ(logits->data.size(), 2u * s * s * 4);
  std::vector<float> y(2 * s * s);
  std::memcpy(y.data(), logits->data.data(), logits->data.size());
  double worst = 0;
  for (int n = 0; n < 2; ++n)
    for (int p = 0; p < s * s; ++p) {
      const float* row = x.data() + n * 3 * s * s;
      const double want = (10.0 / 3.0) * (row[p] + row[s * s + p] + row[2 * s * s + p]) - 5.0;
      worst = std::max(worst, std::abs(want - y[n * s * s + p]));
    }
  EXPECT_LT(worst, 1e-4);
}

TEST_F(OipFixture, AttacksOnNamesTypesAndShapes) {
  const std::string png = png_of(disc_image({40, 40}, {20, 20}, 10));
  using oip::DataType;
  using oip::Status;
  auto bad = [&](oip::InferRequest r, Status want, const std::string& needle) {
    const auto [status, message] = refused(std::move(r));
    EXPECT_EQ(status, want) << message;
    EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' not in: " << message;
  };
  bad(request("nope", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png}))), Status::not_found, "nope");
  auto versioned = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  versioned.model_version = "2";
  bad(std::move(versioned), Status::not_found, "version");
  bad(request("bright", input("PIXELS", DataType::BYTES, {1}, bytes_tensor({png}))), Status::invalid_argument, "PIXELS");
  bad(request("bright", input("IMAGE", DataType::FP32, {1, 4}, std::string(16, '\0'))), Status::invalid_argument, "IMAGE");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})), {"SCORES"}), Status::invalid_argument, "SCORES");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})), {"MASK", "MASK"}), Status::invalid_argument, "twice");
  // Shapes: negative, overflowing, empty, a huge N, and data that does not fill the shape.
  bad(request("bright", input("IMAGE", DataType::BYTES, {-1}, bytes_tensor({png}))), Status::invalid_argument, "shape");
  bad(request("bright", input("IMAGE", DataType::UINT8, {1, INT64_MAX, INT64_MAX, 3}, "")), Status::invalid_argument, "shape");
  bad(request("bright", input("IMAGE", DataType::UINT8, {1 << 20, 1 << 20, 1 << 20, 3}, "")), Status::invalid_argument, "shape");
  bad(request("bright", input("IMAGE", DataType::BYTES, {}, bytes_tensor({png}))), Status::invalid_argument, "shape");
  bad(request("bright", input("IMAGE", DataType::BYTES, {0}, "")), Status::invalid_argument, "no rows");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1000000000}, bytes_tensor({png}))), Status::invalid_argument, "limit");
  bad(request("bright", input("IMAGE", DataType::UINT8, {1, 10, 10, 3}, std::string(299, 'x'))), Status::invalid_argument, "300");
  bad(request("bright", input("IMAGE", DataType::UINT8, {1, 10, 10, 4}, std::string(400, 'x'))), Status::invalid_argument, "[N, H, W, 3]");
  bad(request("bright", input("IMAGE", DataType::UINT8, {1, 1000, 1000, 3}, std::string(3000000, 'x'))), Status::invalid_argument, "pixels");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1, 2}, bytes_tensor({png, png}))), Status::invalid_argument, "[N]");
  // BYTES: a length prefix past the end, fewer or more elements than the shape says.
  std::string overrun = bytes_tensor({png});
  overrun[0] = '\xff';
  overrun[1] = '\xff';
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, overrun)), Status::invalid_argument, "overruns");
  bad(request("bright", input("IMAGE", DataType::BYTES, {2}, bytes_tensor({png}))), Status::invalid_argument, "2 elements");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png, png}))), Status::invalid_argument, "elements");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png}) + "ab")), Status::invalid_argument, "elements");
  bad(request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({""}))), Status::invalid_argument, "IMAGE[0]");
  bad(request("bright", input("IMAGE", DataType::BYTES, {2}, bytes_tensor({png, "not an image"}))), Status::invalid_argument, "IMAGE[1]");
  // Parameters of the wrong type or range.
  auto t = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  t.parameters["threshold"] = "high";
  bad(std::move(t), Status::invalid_argument, "threshold");
  t = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  t.inputs[0].parameters["threshold"] = 5.0;
  bad(std::move(t), Status::invalid_argument, "0.1 .. 0.9");
  t = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  t.parameters["detect_holes"] = 1;
  bad(std::move(t), Status::invalid_argument, "detect_holes");
  // Two inputs, none.
  t = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  t.inputs.push_back(t.inputs[0]);
  bad(std::move(t), Status::invalid_argument, "exactly one input");
  t = request("bright", input("IMAGE", DataType::BYTES, {1}, bytes_tensor({png})));
  t.inputs.clear();
  bad(std::move(t), Status::invalid_argument, "IMAGE");
  // The network model: wrong size, type, data length.
  bad(request("bright_network", input("INPUT", DataType::FP32, {1, 3, 16, 16}, std::string(3 * 16 * 16 * 4, '\0'))),
      Status::invalid_argument, "[N, 3, 32, 32]");
  bad(request("bright_network", input("INPUT", DataType::FP64, {1, 3, 32, 32}, std::string(3 * 32 * 32 * 8, '\0'))),
      Status::invalid_argument, "FP32");
  bad(request("bright_network", input("INPUT", DataType::FP32, {1, 3, 32, 32}, std::string(100, '\0'))),
      Status::invalid_argument, "bytes");
  // Images of different sizes cannot share one MASK tensor; POLYGONS alone are fine.
  const std::string other = png_of(disc_image({48, 40}, {20, 20}, 10));
  bad(request("bright", input("IMAGE", DataType::BYTES, {2}, bytes_tensor({png, other}))), Status::invalid_argument, "same size");
  const Answer ok = infer(request("bright", input("IMAGE", DataType::BYTES, {2}, bytes_tensor({png, other})), {"POLYGONS"}));
  EXPECT_FALSE(ok.failure);
}

TEST_F(OipFixture, MemoryBudgetRefusesWhatItCannotHold) {
  // A 1 MiB budget: one 512 x 512 image's MASK and PROBABILITY (1.25 MiB) cannot be held.
  limits.memory_budget_bytes = 1 << 20;
  model = make_brightness_service("bright", executor);
  api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", limits, std::make_shared<HttpMetrics>());
  service = std::make_unique<ModelsInferenceService>(api);
  const std::string png = png_of(disc_image({512, 512}, {200, 200}, 100));
  const auto [status, message] =
      refused(request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png})), {"MASK", "PROBABILITY"}));
  EXPECT_EQ(status, oip::Status::resource_exhausted);
  EXPECT_NE(message.find("memory budget"), std::string::npos) << message;
  EXPECT_EQ(api->memory()->in_use(), 0u);
  EXPECT_FALSE(infer(request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png})), {"POLYGONS"})).failure);
  EXPECT_TRUE(eventually([&] { return api->memory()->in_use() == 0; }));  // the answer's lease is given back
}

TEST_F(OipFixture, UndecodableRowFailsItsRequestOnly) {
  // A PNG whose header is fine and whose data is not: it passes the checks and fails in decoding.
  const std::string good = png_of(disc_image({40, 40}, {20, 20}, 10));
  std::string broken = good;
  for (std::size_t i = 60; i < broken.size() - 12; ++i) broken[i] = static_cast<char>(i * 31);
  auto mixed = infer_async(request("bright", input("IMAGE", oip::DataType::BYTES, {3}, bytes_tensor({good, broken, good}))));
  auto other = infer_async(request("bright", input("IMAGE", oip::DataType::BYTES, {2}, bytes_tensor({good, good}))));
  const Answer m = mixed.get(), o = other.get();
  ASSERT_TRUE(m.failure);
  EXPECT_EQ(m.failure->status, oip::Status::invalid_argument);
  EXPECT_NE(m.failure->message.find("row 1"), std::string::npos) << m.failure->message;
  ASSERT_FALSE(o.failure) << o.failure->message;
  EXPECT_EQ(o.output("MASK")->shape[0], 2);
}

TEST_F(OipFixture, TheCallersDeadlineBoundsTheRequest) {
  const std::string png = png_of(disc_image({40, 40}, {20, 20}, 10));
  oip::InferRequest late = request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png})), {"POLYGONS"});
  late.deadline = sluice::Clock::now() - std::chrono::milliseconds(1);
  const auto [status, message] = refused(std::move(late));
  EXPECT_EQ(status, oip::Status::deadline_exceeded);
  EXPECT_NE(message.find("deadline"), std::string::npos) << message;
  EXPECT_TRUE(eventually([&] { return api->memory()->in_use() == 0; }));

  // Batches of exactly 2 and 30 s of waiting for company: only the caller's deadline (300 ms) can
  // end this request's wait -- it runs alone then, or fails as late, but it does not wait 30 s.
  TearDown();
  start({.input_size = 32, .max_batch_size = 2, .max_queue_delay = std::chrono::seconds(30)});
  oip::InferRequest soon = request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png})), {"POLYGONS"});
  soon.deadline = sluice::Clock::now() + std::chrono::milliseconds(300);
  auto answer = infer_async(std::move(soon));
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "the request waited for company past its deadline";
  const Answer a = answer.get();
  if (a.failure) {
    EXPECT_EQ(a.failure->status, oip::Status::deadline_exceeded) << a.failure->message;
  }
}

TEST_F(OipFixture, ProtocolAndApiV1RequestsShareOneBatch) {
  // Batches of exactly 2, and a long wait for company: the two requests can only run together.
  TearDown();
  start({.input_size = 32, .max_batch_size = 2, .max_queue_delay = std::chrono::seconds(30)});
  const std::string png = png_of(disc_image({40, 40}, {20, 20}, 10));
  auto oip_answer = infer_async(request("bright", input("IMAGE", oip::DataType::BYTES, {1}, bytes_tensor({png})), {"POLYGONS"}));
  const nlohmann::json v1 = segment_v1(png);
  const Answer a = oip_answer.get();
  ASSERT_FALSE(a.failure) << a.failure->message;
  const auto j = nlohmann::json::parse(oip::split_bytes(a.output("POLYGONS")->data, 1)->at(0));
  EXPECT_EQ(j["processing_info"]["batch_size"], 2);
  EXPECT_EQ(v1["processing_info"]["batch_size"], 2);
  EXPECT_NE(j["processing_info"]["batch_position"], v1["processing_info"]["batch_position"]);
  EXPECT_TRUE(eventually([&] { return model->status()["batches"] == 1; })) << model->status().dump();
}

TEST_F(OipFixture, ConcurrentClientsEachGetTheirOwnAnswer) {
  std::vector<cv::Mat> images;
  std::vector<std::future<Answer>> answers;
  for (int i = 0; i < 16; ++i) {
    images.push_back(disc_image({48, 48}, {10 + i * 2, 24}, 8 + i / 2));
    answers.push_back(infer_async(request("bright", input("IMAGE", oip::DataType::UINT8, {1, 48, 48, 3}, rgb_bytes(images.back())))));
  }
  for (int i = 0; i < 16; ++i) {
    const Answer a = answers[i].get();
    ASSERT_FALSE(a.failure) << a.failure->message;
    const cv::Mat got(48, 48, CV_8UC1, const_cast<char*>(a.output("MASK")->data.data()));
    EXPECT_GT(agreement(got, expected_mask(images[i], 32)), 0.95) << i;
  }
}

}  // namespace
