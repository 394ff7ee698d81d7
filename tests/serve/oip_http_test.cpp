// The Open Inference Protocol's HTTP transport (oip_http.hpp) through Api::handle, over a real
// BatcherService: metadata and readiness, JSON and binary tensors as tritonclient sends them (also
// from a body spooled to disk), and every malformed request refused with the protocol's
// {"error": ...} and the status tritonclient reports.
#include "support/brightness_service.hpp"
#include "support/serve_test_support.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "sluice/serve/oip_http.hpp"
#include "sluice/serve/spooled_body.hpp"

namespace {

using namespace sluice::serve;
using namespace sluice::serve::testing;  // BrightnessService and its test images
using nlohmann::json;

std::string bytes_element(const std::string& s) {
  std::string out;
  oip::append_bytes_element(out, s);
  return out;
}

/// A response's JSON header and binary tail, split as tritonclient splits them.
struct Parsed {
  unsigned status = 0;
  json header;
  std::string tail;
};

struct OipHttpFixture : ::testing::Test {
  Executor executor;
  std::shared_ptr<BrightnessService> model = make_brightness_service("bright", executor);
  std::shared_ptr<Api> api;

  void SetUp() override {
    ApiLimits limits;
    limits.max_files = 4;
    limits.max_pixels = 512 * 512;
    api = std::make_shared<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", limits, std::make_shared<HttpMetrics>());
    serve_open_inference_protocol(*api);
  }
  void TearDown() override { model->stop(); }

  HttpResponse call(HttpRequest req, std::shared_ptr<const SpooledBody> spooled = nullptr) {
    if (!spooled) req.prepare_payload();
    std::promise<HttpResponse> p;
    api->handle(std::move(req), {}, [&](HttpResponse r) { p.set_value(std::move(r)); }, std::move(spooled));
    return p.get_future().get();
  }
  HttpResponse get(const std::string& target) { return call(HttpRequest{http::verb::get, target, 11}); }
  HttpResponse post(const std::string& target, std::string body, std::optional<std::size_t> header_length = std::nullopt) {
    HttpRequest req{http::verb::post, target, 11};
    req.set(http::field::content_type, header_length ? "application/octet-stream" : "application/json");
    if (header_length) req.set("Inference-Header-Content-Length", std::to_string(*header_length));
    req.body() = std::move(body);
    return call(std::move(req));
  }
  static Parsed parse(const HttpResponse& r) {
    Parsed p;
    p.status = r.result_int();
    std::size_t n = r.body().size();
    if (const auto it = r.find("Inference-Header-Content-Length"); it != r.end()) n = std::stoul(std::string(it->value()));
    p.header = json::parse(r.body().substr(0, n));
    p.tail = r.body().substr(n);
    return p;
  }
  /// The request must fail with `status` and an error message containing `needle`.
  void refused(const HttpResponse& r, unsigned status, const std::string& needle) {
    EXPECT_EQ(r.result_int(), status) << r.body();
    const json j = json::parse(r.body(), nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body();
    EXPECT_NE(j["error"].get<std::string>().find(needle), std::string::npos) << "'" << needle << "' not in " << r.body();
  }
};

TEST_F(OipHttpFixture, ServerAndModelMetadata) {
  auto r = get("/v2");
  ASSERT_EQ(r.result_int(), 200u);
  const json server = json::parse(r.body());
  EXPECT_EQ(server["name"], "sluice");
  EXPECT_NE(std::find(server["extensions"].begin(), server["extensions"].end(), "binary_tensor_data"), server["extensions"].end());
  r = get("/v2/models/bright");
  ASSERT_EQ(r.result_int(), 200u);
  const json md = json::parse(r.body());
  EXPECT_EQ(md["name"], "bright");
  EXPECT_EQ(md["versions"], json::array({"1"}));
  EXPECT_EQ(md["inputs"][0]["name"], "IMAGE");
  EXPECT_EQ(md["inputs"][0]["datatype"], "BYTES");
  EXPECT_EQ(md["outputs"][0]["name"], "MASK");
  r = get("/v2/models/bright_network/versions/1");
  ASSERT_EQ(r.result_int(), 200u);
  EXPECT_EQ(json::parse(r.body())["inputs"][0]["shape"], json::array({-1, 3, 32, 32}));
  refused(get("/v2/models/bright/versions/2"), 404, "version '2'");
  refused(get("/v2/models/nope"), 404, "unknown model 'nope'");
  refused(get("/v2/models/bright/stats/x/y"), 404, "no endpoint");
  refused(get("/v2/nothing"), 404, "no endpoint");
  EXPECT_EQ(get("/v2/models/bright/ready").result_int(), 200u);
  EXPECT_EQ(get("/v2/models/bright_network/versions/1/ready").result_int(), 200u);
  EXPECT_EQ(get("/v2/models/nope/ready").result_int(), 400u);
  EXPECT_EQ(get("/v2/health/ready").result_int(), 200u);
  r = call(HttpRequest{http::verb::post, "/v2/repository/index", 11});
  ASSERT_EQ(r.result_int(), 200u);
  EXPECT_EQ(json::parse(r.body()).size(), 2u);
  EXPECT_EQ(json::parse(r.body())[1]["name"], "bright_network");
  // Wrong methods: 405 with Allow.
  r = call(HttpRequest{http::verb::get, "/v2/models/bright/infer", 11});
  refused(r, 405, "POST");
  EXPECT_EQ(r[http::field::allow], "POST");
  refused(call(HttpRequest{http::verb::delete_, "/v2/models/bright", 11}), 405, "GET");
  // Metrics labels stay a bounded set.
  EXPECT_EQ(Api::route_of("/v2/models/anything/versions/9/infer"), "/v2/infer");
  EXPECT_EQ(Api::route_of("/v2/models/anything/ready"), "/v2/ready");
  EXPECT_EQ(Api::route_of("/v2/models/anything"), "/v2/metadata");
  EXPECT_EQ(Api::route_of("/v2"), "/v2/metadata");
  EXPECT_EQ(Api::route_of("/v2/health/live"), "/v2/health/live");
}

TEST_F(OipHttpFixture, JsonTensorsInAndOut) {
  // A 16 x 16 RGB image, nested [1][16][16][3], bright in its left half.
  json pixels = json::array();
  json rows = json::array();
  for (int y = 0; y < 16; ++y) {
    json row = json::array();
    for (int x = 0; x < 16; ++x) row.push_back(x < 8 ? json::array({250, 240, 230}) : json::array({10, 20, 30}));
    rows.push_back(row);
  }
  pixels.push_back(rows);
  const json body{{"id", "j1"},
                  {"inputs", {{{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 16, 16, 3}}, {"data", pixels}}}},
                  {"outputs", {{{"name", "MASK"}}, {{"name", "POLYGONS"}}}}};
  const auto r = post("/v2/models/bright/infer", body.dump());
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(r[http::field::content_type], "application/json");
  const json j = json::parse(r.body());
  EXPECT_EQ(j["id"], "j1");
  EXPECT_EQ(j["model_name"], "bright");
  EXPECT_EQ(j["model_version"], "1");
  ASSERT_EQ(j["outputs"].size(), 2u);
  EXPECT_EQ(j["outputs"][0]["shape"], json::array({1, 16, 16}));
  const auto& mask = j["outputs"][0]["data"];
  ASSERT_EQ(mask.size(), 256u);
  EXPECT_EQ(mask[0], 1);
  EXPECT_EQ(mask[15], 0);
  EXPECT_EQ(mask[16 * 15 + 2], 1);
  ASSERT_TRUE(j["outputs"][1].contains("data")) << r.body().substr(r.body().size() - 300);
  const json polygons = json::parse(j["outputs"][1]["data"][0].get<std::string>());
  EXPECT_EQ(polygons["image_size"], json({{"width", 16}, {"height", 16}}));
  // Flat data is the same tensor.
  json flat = json::array();
  for (const auto& row : rows)
    for (const auto& px : row)
      for (const auto& c : px) flat.push_back(c);
  json body2 = body;
  body2["inputs"][0]["data"] = flat;
  const json j2 = json::parse(post("/v2/models/bright/infer", body2.dump()).body());
  EXPECT_EQ(j2["outputs"][0]["data"], mask);
}

TEST_F(OipHttpFixture, BinaryTensorsAsTritonclientSendsThem) {
  const std::string a = png_of(disc_image({64, 48}, {30, 24}, 14)), b = png_of(disc_image({64, 48}, {20, 20}, 9));
  const std::string raw = bytes_element(a) + bytes_element(b);
  const json header{{"inputs", {{{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {2}}, {"parameters", {{"binary_data_size", raw.size()}}}}}},
                    {"outputs", {{{"name", "MASK"}, {"parameters", {{"binary_data", true}}}},
                                 {{"name", "PROBABILITY"}, {"parameters", {{"binary_data", true}}}},
                                 {{"name", "POLYGONS"}, {"parameters", {{"binary_data", false}}}}}}};
  const std::string h = header.dump();
  const auto r = post("/v2/models/bright/versions/1/infer", h + raw, h.size());
  ASSERT_EQ(r.result_int(), 200u) << r.body().substr(0, 300);
  EXPECT_EQ(r[http::field::content_type], "application/octet-stream");
  const Parsed p = parse(r);
  const auto& outs = p.header["outputs"];
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0]["parameters"]["binary_data_size"], 2 * 48 * 64);
  EXPECT_EQ(outs[1]["parameters"]["binary_data_size"], 2 * 48 * 64 * 4);
  EXPECT_FALSE(outs[2].contains("parameters"));
  ASSERT_EQ(p.tail.size(), 2u * 48 * 64 * 5);
  // The binary MASK is the JSON MASK of the same request.
  json as_json = header;
  as_json["outputs"] = json::array({{{"name", "MASK"}}});
  const std::string h2 = as_json.dump();
  const auto r2 = post("/v2/models/bright/infer", h2 + raw, h2.size());
  ASSERT_EQ(r2.result_int(), 200u);
  const json mask = json::parse(r2.body())["outputs"][0]["data"];
  ASSERT_EQ(mask.size(), 2u * 48 * 64);
  for (std::size_t i = 0; i < mask.size(); ++i) ASSERT_EQ(mask[i].get<int>(), static_cast<unsigned char>(p.tail[i])) << i;
  // binary_data_output: every output binary unless it says otherwise.
  json all = header;
  all.erase("outputs");
  all["parameters"] = {{"binary_data_output", true}};
  const std::string h3 = all.dump();
  const Parsed p3 = parse(post("/v2/models/bright/infer", h3 + raw, h3.size()));
  ASSERT_EQ(p3.status, 200u);
  EXPECT_EQ(p3.header["outputs"][0]["name"], "MASK");
  EXPECT_EQ(p3.header["outputs"][1]["name"], "POLYGONS");
  EXPECT_EQ(p3.tail.substr(0, 2 * 48 * 64), p.tail.substr(0, 2 * 48 * 64));
}

TEST_F(OipHttpFixture, SpooledBodyStaysAViewOfTheFile) {
  const std::string raw = bytes_element(png_of(disc_image({40, 40}, {20, 20}, 10)));
  const json header{{"inputs", {{{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {1}}, {"parameters", {{"binary_data_size", raw.size()}}}}}},
                    {"parameters", {{"binary_data_output", true}}}};
  const std::string body = header.dump() + raw;
  const int fd = open_spool_file(default_spool_dir());
  ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  auto spooled = std::make_shared<const SpooledBody>(fd, body.size(), MemoryBudget::Lease{});
  ::close(fd);
  HttpRequest req{http::verb::post, "/v2/models/bright/infer", 11};
  req.set("Inference-Header-Content-Length", std::to_string(header.dump().size()));
  req.content_length(body.size());
  const Parsed p = parse(call(std::move(req), spooled));
  ASSERT_EQ(p.status, 200u) << p.header.dump();
  EXPECT_EQ(p.tail.size(), 40u * 40 + p.header["outputs"][1]["parameters"]["binary_data_size"].get<std::size_t>());
}

TEST_F(OipHttpFixture, MalformedRequestsAreRefused) {
  const std::string png = png_of(disc_image({40, 40}, {20, 20}, 10));
  const std::string raw = bytes_element(png);
  const std::string url = "/v2/models/bright/infer";
  auto binary_header = [&](std::int64_t size) {
    return json{{"inputs", {{{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {1}}, {"parameters", {{"binary_data_size", size}}}}}}}.dump();
  };
  auto with_input = [](json input) { return json{{"inputs", json::array({std::move(input)})}}.dump(); };
  refused(post(url, "{not json"), 400, "not valid JSON");
  refused(post(url, "[1, 2]"), 400, "JSON object");
  refused(post(url, "{}"), 400, "'inputs'");
  refused(post(url, R"({"inputs": []})"), 400, "'inputs'");
  refused(post(url, R"({"inputs": [{"datatype": "UINT8"}]})"), 400, "'name'");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT9"}, {"shape", {1}}, {"data", {1}}})), 400, "UINT9");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", "1"}, {"data", {1}}})), 400, "'shape'");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, -16, 16, 3}}, {"data", {1}}})), 400, "negative");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 1.5, 16, 3}}, {"data", {1}}})), 400, "integer");
  refused(post(url, R"({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [18446744073709551615, 2, 2, 3], "data": [1]}]})"), 400, "integer");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1LL << 40, 1LL << 40, 3}}, {"data", {1}}})), 400, "too many");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 2, 2, 3}}, {"data", {1, 2, 3}}})), 400, "needs 12");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 1, 1, 3}}, {"data", {1, 2, 300}}})), 400, "element 2");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 1, 1, 3}}, {"data", {1, 2, "x"}}})), 400, "element 2");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 1, 1, 3}}, {"data", {1, 2, -1}}})), 400, "element 2");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "UINT8"}, {"shape", {1, 1, 1, 3}}})), 400, "'data'");
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {1}}, {"data", {"not an image"}}})), 400, "IMAGE[0]");
  // A huge declared N: refused before anything is allocated for it.
  refused(post(url, with_input({{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {1LL << 40}}, {"data", {"x"}}})), 400, "needs");
  refused(post(url, binary_header(1) + std::string(1, 'x'), binary_header(1).size()), 400, "IMAGE");
  // Deep nesting is refused while parsing.
  refused(post(url, std::string(100000, '[') + std::string(100000, ']')), 400, "nests deeper");
  refused(post(url, R"({"inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [1], "data": )" + std::string(40, '[') +
                        "1" + std::string(40, ']') + "}]}"),
          400, "nests deeper");
  // Inference-Header-Content-Length: past the body, not a number, negative.
  const std::string h = binary_header(static_cast<std::int64_t>(raw.size()));
  refused(post(url, h + raw, h.size() + raw.size() + 1), 400, "exceeds");
  HttpRequest bad{http::verb::post, url, 11};
  bad.set("Inference-Header-Content-Length", "12abc");
  bad.body() = h + raw;
  refused(call(bad), 400, "decimal");
  bad.set("Inference-Header-Content-Length", "-5");
  refused(call(bad), 400, "decimal");
  bad.set("Inference-Header-Content-Length", "99999999999999999999999");
  refused(call(bad), 400, "decimal");
  // binary_data_size: overrunning, negative, leaving bytes over, beside data.
  refused(post(url, binary_header(static_cast<std::int64_t>(raw.size()) + 1) + raw, binary_header(static_cast<std::int64_t>(raw.size()) + 1).size()), 400, "overruns");
  refused(post(url, binary_header(-1) + raw, binary_header(-1).size()), 400, "non-negative");
  refused(post(url, h + raw + "extra", h.size()), 400, "5 bytes of binary data");
  // A BYTES element whose length prefix overruns the binary data.
  std::string overrun = raw;
  overrun[3] = '\x7f';
  refused(post(url, h + overrun, h.size()), 400, "overruns");
  // Outputs and parameters.
  json outputs = json::parse(h);
  outputs["outputs"] = {{{"name", "MASK"}, {"parameters", {{"binary_data", "yes"}}}}};
  refused(post(url, outputs.dump() + raw, outputs.dump().size()), 400, "binary_data");
  outputs["outputs"] = {{{"name", "NOPE"}}};
  refused(post(url, outputs.dump() + raw, outputs.dump().size()), 400, "NOPE");
  outputs["outputs"] = "MASK";
  refused(post(url, outputs.dump() + raw, outputs.dump().size()), 400, "'outputs'");
  json params = json::parse(h);
  params["parameters"] = {{"threshold", 2}};
  refused(post(url, params.dump() + raw, params.dump().size()), 400, "threshold");
  params["parameters"] = "x";
  refused(post(url, params.dump() + raw, params.dump().size()), 400, "'parameters'");
  // Unknown model, version; compressed bodies.
  refused(post("/v2/models/nope/infer", h + raw, h.size()), 404, "nope");
  refused(post("/v2/models/bright/versions/3/infer", h + raw, h.size()), 404, "version");
  HttpRequest gz{http::verb::post, url, 11};
  gz.set(http::field::content_encoding, "gzip");
  gz.body() = "x";
  refused(call(gz), 400, "Content-Encoding");
  // After all that, the model still answers.
  EXPECT_EQ(post(url, h + raw, h.size()).result_int(), 200u);
}

TEST_F(OipHttpFixture, UndecodableImageInRowTwoOfThreeFailsOnlyItsRequest) {
  const std::string good = png_of(disc_image({40, 40}, {20, 20}, 10));
  std::string broken = good;
  for (std::size_t i = 60; i < broken.size() - 12; ++i) broken[i] = static_cast<char>(i * 31);
  auto send = [&](const std::vector<std::string>& images) {
    std::string raw;
    for (const auto& i : images) raw += bytes_element(i);
    const std::string h = json{{"inputs", {{{"name", "IMAGE"}, {"datatype", "BYTES"}, {"shape", {images.size()}},
                                            {"parameters", {{"binary_data_size", raw.size()}}}}}}}.dump();
    return std::async(std::launch::async, [this, h, raw] { return post("/v2/models/bright/infer", h + raw, h.size()); });
  };
  auto mixed = send({good, broken, good});
  auto other = send({good, good, good});
  refused(mixed.get(), 400, "row 1");
  EXPECT_EQ(other.get().result_int(), 200u);
}

TEST_F(OipHttpFixture, NetworkModelOverJson) {
  json data = json::array();
  for (int i = 0; i < 3 * 32 * 32; ++i) data.push_back(i < 32 * 32 ? 0.3 : 0.0);
  const json body{{"inputs", {{{"name", "INPUT"}, {"datatype", "FP32"}, {"shape", {1, 3, 32, 32}}, {"data", data}}}}};
  const auto r = post("/v2/models/bright_network/infer", body.dump());
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  const json out = json::parse(r.body())["outputs"][0];
  EXPECT_EQ(out["name"], "LOGITS");
  EXPECT_EQ(out["shape"], json::array({1, 1, 32, 32}));
  // logit = (10 / 3) * (0.3 + 0 + 0) - 5 = -4
  EXPECT_NEAR(out["data"][0].get<double>(), -4.0, 1e-5);
}

TEST(OipHttpLoading, ModelsNotReadyWhileLoading) {
  auto api = std::make_shared<Api>(ApiLimits{}, std::make_shared<HttpMetrics>());
  serve_open_inference_protocol(*api);
  std::promise<HttpResponse> p;
  HttpRequest req{http::verb::post, "/v2/models/bright/infer", 11};
  req.body() = R"({"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["x"]}]})";
  req.prepare_payload();
  api->handle(req, [&](HttpResponse r) { p.set_value(std::move(r)); });
  const HttpResponse r = p.get_future().get();
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_NE(json::parse(r.body())["error"].get<std::string>().find("loading"), std::string::npos);
  std::promise<HttpResponse> q;
  api->handle(HttpRequest{http::verb::get, "/v2/health/ready", 11}, [&](HttpResponse x) { q.set_value(std::move(x)); });
  EXPECT_EQ(q.get_future().get().result_int(), 400u);
}

}  // namespace
