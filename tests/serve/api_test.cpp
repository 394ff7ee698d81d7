// Tests of the endpoints without sockets: requests go straight into Api::handle, a fake model
// answers. Also the option parsing and the query parser.
#include <gtest/gtest.h>

#include <future>
#include <string>

#include "support/fake_service.hpp"
#include "sluice/serve/api.hpp"

namespace {

using namespace sluice::serve;
using sluice::serve::testing::checksum;
using sluice::serve::testing::FakeService;

std::string multipart(const std::string& b, const std::vector<std::tuple<std::string, std::string, std::string>>& f) {
  std::string body;
  for (const auto& [name, filename, content] : f) {
    body += "--" + b + "\r\nContent-Disposition: form-data; name=\"" + name + "\"";
    if (!filename.empty()) body += "; filename=\"" + filename + "\"";
    body += "\r\n\r\n" + content + "\r\n";
  }
  return body + "--" + b + "--\r\n";
}

std::string png_header(std::uint32_t w, std::uint32_t h) {
  std::string s("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  for (std::uint32_t v : {w, h})
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xFF);
  return s + std::string("\x08\x02", 2) + std::string(18, '\0');  // 8-bit RGB
}

struct ApiFixture : ::testing::Test {
  std::shared_ptr<FakeService> a = std::make_shared<FakeService>("alpha");
  std::shared_ptr<FakeService> b = std::make_shared<FakeService>("beta");
  ApiLimits limits;
  std::unique_ptr<Api> api;

  void SetUp() override {
    limits.max_pixels = 1000 * 1000;
    limits.max_files = 8;
    api = std::make_unique<Api>(std::vector<std::shared_ptr<ModelService>>{a, b}, "", limits,
                                std::make_shared<HttpMetrics>());
  }

  HttpResponse call(http::verb verb, const std::string& target, const std::string& content_type = "",
                    const std::string& body = "") {
    HttpRequest req{verb, target, 11};
    if (!content_type.empty()) req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
    std::promise<HttpResponse> p;
    api->handle(req, [&](HttpResponse r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    a->join();
    b->join();
    return r;
  }
  HttpResponse post_form(const std::string& target, const std::vector<std::tuple<std::string, std::string, std::string>>& f) {
    return call(http::verb::post, target, "multipart/form-data; boundary=XX", multipart("XX", f));
  }
  static nlohmann::json json_of(const HttpResponse& r) { return nlohmann::json::parse(r.body()); }
};

TEST_F(ApiFixture, InfoEndpoints) {
  auto r = call(http::verb::get, "/api/v1/health");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(json_of(r)["status"], "healthy");
  EXPECT_EQ(json_of(r)["models_loaded"], 2);
  r = call(http::verb::get, "/api/v1/models");
  ASSERT_EQ(r.result_int(), 200u);
  auto j = json_of(r);
  EXPECT_EQ(j["default_model"], "alpha");
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_EQ(j["models"][1]["name"], "beta");
  EXPECT_EQ(j["models"][1]["backend"], "fake");
  r = call(http::verb::get, "/api/v1/status");
  EXPECT_EQ(json_of(r)["models"]["beta"]["jobs"], 0);
  r = call(http::verb::get, "/metrics");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_NE(r.body().find("fake_jobs_total{model=\"beta\"} 0"), std::string::npos);
  EXPECT_NE(r[http::field::content_type].find("text/plain"), std::string::npos);
}

TEST_F(ApiFixture, RoutingErrors) {
  auto r = call(http::verb::get, "/api/v1/nothing");
  EXPECT_EQ(r.result_int(), 404u);
  EXPECT_EQ(json_of(r)["success"], false);
  EXPECT_EQ(json_of(r)["error"], "not_found");
  r = call(http::verb::get, "/api/v1/segment");
  EXPECT_EQ(r.result_int(), 405u);
  EXPECT_EQ(r[http::field::allow], "POST");
  r = call(http::verb::post, "/api/v1/health");
  EXPECT_EQ(r.result_int(), 405u);
  r = call(http::verb::get, "/api/v1/health?x=%zz");
  EXPECT_EQ(r.result_int(), 400u);
}

TEST_F(ApiFixture, SegmentMultipartPassesOptionsAndImage) {
  const std::string image = "not really an image, the fake does not decode";
  auto r = post_form("/api/v1/segment", {{"file", "x.PNG", image}, {"model", "", "beta"}, {"threshold", "", "0.25"},
                                         {"detect_holes", "", "false"}});
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  auto j = json_of(r);
  EXPECT_EQ(j["success"], true);
  EXPECT_EQ(j["model_used"], "beta");
  EXPECT_DOUBLE_EQ(j["threshold_used"].get<double>(), 0.25);
  EXPECT_EQ(j["detect_holes"], false);
  EXPECT_EQ(j["checksum"], checksum(image));
  EXPECT_EQ(j["bytes"], image.size());
  EXPECT_TRUE(j.contains("processing_time"));
  EXPECT_TRUE(j.contains("inference_time"));
  EXPECT_TRUE(j.contains("preprocessing_time"));
  EXPECT_EQ(j["batch_size_used"], 1);
  EXPECT_EQ(b->jobs.load(), 1);
  EXPECT_EQ(a->jobs.load(), 0);
  // The fake finds size % 3 polygons; an image without any gets the warning.
  EXPECT_EQ(j["polygons"].size(), image.size() % 3);
  EXPECT_EQ(j.contains("warning"), image.size() % 3 == 0);
  j = json_of(post_form("/api/v1/segment", {{"file", "y.jpg", "abc"}}));
  EXPECT_EQ(j["warning"], "no polygons found");
  EXPECT_EQ(j["model_used"], "alpha");  // the default model
  EXPECT_DOUBLE_EQ(j["threshold_used"].get<double>(), 0.5);
  EXPECT_EQ(j["detect_holes"], true);
}

TEST_F(ApiFixture, SegmentRawBodyWithQueryOptions) {
  const std::string image = "raw image bytes";
  auto r = call(http::verb::post, "/api/v1/segment?model=beta&threshold=0.75&detect_holes=0", "image/png", image);
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  auto j = json_of(r);
  EXPECT_EQ(j["model_used"], "beta");
  EXPECT_DOUBLE_EQ(j["threshold_used"].get<double>(), 0.75);
  EXPECT_EQ(j["detect_holes"], false);
  EXPECT_EQ(j["checksum"], checksum(image));
  r = call(http::verb::post, "/api/v1/segment?threshold=2", "image/png", image);
  EXPECT_EQ(r.result_int(), 400u);
  r = call(http::verb::post, "/api/v1/segment?colour=red", "image/png", image);
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_NE(json_of(r)["detail"].get<std::string>().find("colour"), std::string::npos);
}

TEST_F(ApiFixture, SegmentBadRequests) {
  struct Case {
    std::vector<std::tuple<std::string, std::string, std::string>> fields;
    unsigned status;
    std::string in_detail;
  };
  const std::vector<Case> cases = {
      {{{"model", "", "alpha"}}, 400, "missing field 'file'"},
      {{{"file", "a.png", "x"}, {"threshold", "", "0.05"}}, 400, "between 0.1 and 0.9"},
      {{{"file", "a.png", "x"}, {"threshold", "", "0.95"}}, 400, "between 0.1 and 0.9"},
      {{{"file", "a.png", "x"}, {"threshold", "", "half"}}, 400, "must be a number"},
      {{{"file", "a.png", "x"}, {"threshold", "", "0.5abc"}}, 400, "must be a number"},
      {{{"file", "a.png", "x"}, {"detect_holes", "", "maybe"}}, 400, "detect_holes"},
      {{{"file", "a.png", "x"}, {"colour", "", "red"}}, 400, "unknown field 'colour'"},
      {{{"file", "a.gif", "x"}}, 400, ".jpg"},
      {{{"file", "", "x"}}, 400, "must be a file upload"},
      {{{"file", "a.png", ""}}, 400, "empty"},
      {{{"file", "a.png", "x"}, {"file", "b.png", "y"}}, 400, "one 'file'"},
      {{{"file", "a.png", "x"}, {"model", "", "gamma"}}, 404, "unknown model 'gamma'"},
      {{{"file", "a.png", png_header(1001, 1000)}}, 413, "more than the limit"},
  };
  for (const auto& c : cases) {
    auto r = post_form("/api/v1/segment", c.fields);
    EXPECT_EQ(r.result_int(), c.status) << r.body();
    const auto j = json_of(r);
    EXPECT_EQ(j["success"], false);
    EXPECT_NE(j["detail"].get<std::string>().find(c.in_detail), std::string::npos) << r.body();
  }
  EXPECT_EQ(a->jobs.load() + b->jobs.load(), 0);
  // The pixel limit is inclusive.
  EXPECT_EQ(post_form("/api/v1/segment", {{"file", "a.png", png_header(1000, 1000)}}).result_int(), 200u);

  EXPECT_EQ(call(http::verb::post, "/api/v1/segment", "application/json", "{}").result_int(), 415u);
  EXPECT_EQ(call(http::verb::post, "/api/v1/segment", "", "x").result_int(), 415u);
  auto r = call(http::verb::post, "/api/v1/segment", "multipart/form-data; boundary=XX", "--XX\r\nbroken");
  EXPECT_EQ(r.result_int(), 400u);
  EXPECT_NE(json_of(r)["detail"].get<std::string>().find("multipart"), std::string::npos);
}

TEST_F(ApiFixture, ModelErrorsMapToStatuses) {
  const std::vector<std::pair<sluice::errc, unsigned>> map = {{sluice::errc::queue_full, 503},
                                                              {sluice::errc::deadline_exceeded, 504},
                                                              {sluice::errc::invalid_argument, 400},
                                                              {sluice::errc::model_failed, 500},
                                                              {sluice::errc::shutting_down, 503}};
  for (const auto& [e, status] : map) {
    a->fail_with = e;
    auto r = post_form("/api/v1/segment", {{"file", "a.png", "x"}});
    EXPECT_EQ(r.result_int(), status) << r.body();
    EXPECT_EQ(json_of(r)["detail"], "fake failure");
    EXPECT_EQ(r.count(http::field::retry_after), status == 503 ? 1u : 0u);
  }
}

TEST_F(ApiFixture, BatchSegmentAnswersEveryFileInOrder) {
  std::vector<std::tuple<std::string, std::string, std::string>> fields;
  for (int i = 0; i < 6; ++i) fields.emplace_back("files", "f" + std::to_string(i) + ".png", std::string(10 + i, 'a' + i));
  fields.emplace_back("threshold", "", "0.3");
  auto r = post_form("/api/v1/batch-segment", fields);
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  auto j = json_of(r);
  EXPECT_EQ(j["success"], true);
  EXPECT_EQ(j["batch_size"], 6);
  EXPECT_EQ(j["successful_count"], 6);
  EXPECT_EQ(j["failed_count"], 0);
  EXPECT_EQ(j["model_used"], "alpha");
  EXPECT_DOUBLE_EQ(j["threshold_used"].get<double>(), 0.3);
  std::size_t polygons = 0;
  ASSERT_EQ(j["results"].size(), 6u);
  for (int i = 0; i < 6; ++i) {
    const auto& res = j["results"][i];
    EXPECT_EQ(res["filename"], "f" + std::to_string(i) + ".png");
    EXPECT_EQ(res["batch_index"], i);
    EXPECT_EQ(res["success"], true);
    EXPECT_EQ(res["checksum"], checksum(std::string(10 + i, 'a' + i)));
    polygons += res["polygons"].size();
  }
  EXPECT_EQ(j["total_polygons"], polygons);
  EXPECT_EQ(a->jobs.load(), 6);

  // More files than the limit: 413; no files: 400; all failing the same way: that status.
  fields.clear();
  for (int i = 0; i < 9; ++i) fields.emplace_back("files", "f.png", "x");
  EXPECT_EQ(post_form("/api/v1/batch-segment", fields).result_int(), 413u);
  EXPECT_EQ(post_form("/api/v1/batch-segment", {{"model", "", "alpha"}}).result_int(), 400u);
  a->fail_with = sluice::errc::queue_full;
  r = post_form("/api/v1/batch-segment", {{"files", "a.png", "x"}, {"files", "b.png", "y"}});
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  a->fail_with = sluice::errc::invalid_argument;  // undecodable images: per-image errors, 200
  r = post_form("/api/v1/batch-segment", {{"files", "a.png", "x"}});
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(json_of(r)["failed_count"], 1);
  EXPECT_EQ(json_of(r)["results"][0]["success"], false);
  EXPECT_EQ(json_of(r)["results"][0]["filename"], "a.png");
}

TEST(Api, RejectsBadConfiguration) {
  auto m = std::make_shared<FakeService>("m");
  auto metrics = std::make_shared<HttpMetrics>();
  EXPECT_THROW(Api({}, "", {}, metrics), sluice::Error);
  EXPECT_THROW(Api({m, m}, "", {}, metrics), sluice::Error);
  EXPECT_THROW(Api({m}, "other", {}, metrics), sluice::Error);
}

HttpResponse ask(Api& api, http::verb verb, const std::string& target, const std::string& content_type = "",
                 const std::string& body = "") {
  HttpRequest req{verb, target, 11};
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  req.body() = body;
  req.prepare_payload();
  std::promise<HttpResponse> p;
  api.handle(req, [&](HttpResponse r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

nlohmann::json body_of(const HttpResponse& r) { return nlohmann::json::parse(r.body()); }

TEST(Readiness, LoadingThenReadyAsPublished) {
  Api api(ApiLimits{}, std::make_shared<HttpMetrics>());
  EXPECT_FALSE(api.ready());
  // Loading: both health paths answer 200 "loading" (the backend reads status == "healthy"),
  // liveness is 200, readiness 503, and work that needs a model 503 with Retry-After.
  for (const char* path : {"/health", "/api/v1/health"}) {
    const auto r = ask(api, http::verb::get, path);
    ASSERT_EQ(r.result_int(), 200u) << path;
    const auto j = body_of(r);
    EXPECT_EQ(j["status"], "loading") << path;
    EXPECT_EQ(j["ready"], false);
    EXPECT_EQ(j["models_loaded"], 0);
    EXPECT_EQ(j["service"], "sluice");
    EXPECT_TRUE(j["timestamp"].is_string());
    EXPECT_EQ(j["device"]["gpu_available"], false);
  }
  EXPECT_EQ(ask(api, http::verb::get, "/health/live").result_int(), 200u);
  EXPECT_EQ(ask(api, http::verb::get, "/v2/health/live").result_int(), 200u);
  EXPECT_EQ(ask(api, http::verb::get, "/v2/health/ready").result_int(), 400u);  // the protocol: 4xx is false
  auto r = ask(api, http::verb::get, "/health/ready");
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(body_of(r)["status"], "loading");
  r = ask(api, http::verb::post, "/api/v1/segment", "multipart/form-data; boundary=XX",
          multipart("XX", {{"file", "a.png", "x"}}));
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(body_of(r)["error"], "loading");
  EXPECT_EQ(r[http::field::retry_after], "1");
  r = ask(api, http::verb::post, "/api/v1/batch-segment", "multipart/form-data; boundary=XX",
          multipart("XX", {{"files", "a.png", "x"}}));
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(ask(api, http::verb::get, "/api/v1/models").result_int(), 503u);
  // The polygon metrics need no model.
  EXPECT_EQ(ask(api, http::verb::post, "/api/calculate-metrics", "application/json",
                R"({"contour": [[0, 0], [10, 0], [10, 10], [0, 10]], "holes": []})")
                .result_int(),
            200u);

  auto m = std::make_shared<FakeService>("demo");
  api.publish({m}, "");
  EXPECT_TRUE(api.ready());
  for (const char* path : {"/health", "/api/v1/health"}) {
    const auto j = body_of(ask(api, http::verb::get, path));
    EXPECT_EQ(j["status"], "healthy") << path;
    EXPECT_EQ(j["ready"], true);
    EXPECT_EQ(j["models_loaded"], 1);
    EXPECT_EQ(j["models"][0], "demo");
  }
  r = ask(api, http::verb::get, "/health/ready");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(body_of(r)["status"], "ready");
  r = ask(api, http::verb::get, "/v2/health/ready");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_TRUE(r.body().empty());
  r = ask(api, http::verb::post, "/api/v1/segment", "multipart/form-data; boundary=XX",
          multipart("XX", {{"file", "a.png", "x"}}));
  m->join();
  EXPECT_EQ(r.result_int(), 200u) << r.body();
}

TEST(Readiness, AFailedLoadIsUnhealthyAndNotReady) {
  Api api(ApiLimits{}, std::make_shared<HttpMetrics>());
  api.fail("weights: no such file");
  auto j = body_of(ask(api, http::verb::get, "/health"));
  EXPECT_EQ(j["status"], "unhealthy");
  EXPECT_EQ(j["error"], "weights: no such file");
  auto r = ask(api, http::verb::get, "/health/ready");
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_EQ(body_of(r)["status"], "unhealthy");
  r = ask(api, http::verb::post, "/api/v1/segment", "image/png", "x");
  EXPECT_EQ(r.result_int(), 503u);
  EXPECT_NE(body_of(r)["detail"].get<std::string>().find("no such file"), std::string::npos);
}

TEST(ModelNames, TheServicesNamesReachTheModelOfThatNetwork) {
  // One model named by sluice's network name, one by an arbitrary name with its network in info().
  auto adv = std::make_shared<FakeService>("advanced_resunet");
  auto demo = std::make_shared<FakeService>("demo");
  demo->network = "cbam_resunet";
  Api api({adv, demo}, "", ApiLimits{}, std::make_shared<HttpMetrics>());
  auto send = [&](const std::string& model) {
    auto r = ask(api, http::verb::post, "/api/v1/segment", "multipart/form-data; boundary=XX",
                 multipart("XX", {{"file", "a.png", "x"}, {"model", "", model}}));
    adv->join();
    demo->join();
    return r;
  };
  auto r = send("resunet_advanced");  // the service's name
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(body_of(r)["model_used"], "advanced_resunet");
  EXPECT_EQ(adv->jobs.load(), 1);
  r = send("cbam_resunet");
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(demo->jobs.load(), 1);
  r = ask(api, http::verb::post, "/api/v1/segment?model=resunet_advanced", "image/png", "x");
  adv->join();
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_EQ(adv->jobs.load(), 2);
  // An unknown name: 404 listing every accepted name.
  r = send("hrnet");
  EXPECT_EQ(r.result_int(), 404u);
  const std::string detail = body_of(r)["detail"];
  for (const char* name : {"advanced_resunet", "resunet_advanced", "demo", "cbam_resunet"})
    EXPECT_NE(detail.find(name), std::string::npos) << name << " in " << detail;
  // /models lists each model with its other names.
  const auto j = body_of(ask(api, http::verb::get, "/api/v1/models"));
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_EQ(j["models"][0]["aliases"], nlohmann::json::array({"resunet_advanced"}));
  EXPECT_EQ(j["models"][1]["aliases"], nlohmann::json::array({"cbam_resunet"}));
  EXPECT_EQ(j["models"][0]["available"], true);
  EXPECT_TRUE(j["models"][0]["description"].is_string());
  // The default model may be given by another spelling.
  Api by_alias({adv}, "resunet_advanced", ApiLimits{}, std::make_shared<HttpMetrics>());
  EXPECT_EQ(body_of(ask(by_alias, http::verb::get, "/api/v1/models"))["default_model"], "advanced_resunet");
}

TEST(Options, ThresholdAndBool) {
  EXPECT_DOUBLE_EQ(parse_threshold("0.1"), 0.1);
  EXPECT_DOUBLE_EQ(parse_threshold(" 0.9 "), 0.9);
  EXPECT_DOUBLE_EQ(parse_threshold("5e-1"), 0.5);
  for (const char* bad : {"", "0.0999", "0.90001", "nan", "inf", "-0.5", "0.5.5", "0x0.8", "1"})
    EXPECT_THROW(parse_threshold(bad), sluice::Error) << bad;
  EXPECT_TRUE(parse_bool("f", "TRUE"));
  EXPECT_TRUE(parse_bool("f", "1"));
  EXPECT_FALSE(parse_bool("f", "off"));
  EXPECT_THROW(parse_bool("f", "2"), sluice::Error);
}

TEST(Query, DecodesTargets) {
  auto t = parse_target("/a%20b?x=1&y=hello+world&z=%2F%3d&flag&&w=");
  EXPECT_EQ(t.path, "/a b");
  ASSERT_EQ(t.query.size(), 5u);
  EXPECT_EQ(t.query[1].second, "hello world");
  EXPECT_EQ(t.query[2].second, "/=");
  EXPECT_EQ(t.query[3].first, "flag");
  EXPECT_EQ(t.query[3].second, "");
  EXPECT_THROW(parse_target("/?a=%4"), sluice::Error);
  EXPECT_THROW(parse_target("/?a=%g0"), sluice::Error);
  std::string many = "/?";
  for (int i = 0; i < 70; ++i) many += "k=v&";
  EXPECT_THROW(parse_target(many), sluice::Error);
}

}  // namespace

namespace {

using namespace sluice::serve;
using sluice::serve::testing::FakeService;

struct HostileApi : ::testing::Test {
  std::shared_ptr<FakeService> model = std::make_shared<FakeService>("m");
  std::shared_ptr<HttpMetrics> metrics = std::make_shared<HttpMetrics>();
  Api api{{model}, "", ApiLimits{.max_pixels = 1000 * 1000}, metrics};

  /// The answer, whose body must be valid UTF-8 JSON whatever the request held.
  HttpResponse call(HttpRequest req) {
    req.prepare_payload();
    std::promise<HttpResponse> p;
    api.handle(std::move(req), [&](HttpResponse r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    model->join();
    EXPECT_TRUE(sluice::is_valid_utf8(r.body())) << r.body();
    EXPECT_TRUE(nlohmann::json::accept(r.body())) << r.body();
    return r;
  }
  HttpResponse form(const std::string& target, const std::vector<std::tuple<std::string, std::string, std::string>>& f) {
    HttpRequest req{http::verb::post, target, 11};
    req.set(http::field::content_type, "multipart/form-data; boundary=XX");
    req.body() = multipart("XX", f);
    return call(std::move(req));
  }
};

TEST_F(HostileApi, TextThatIsNotUtf8NeverBreaksTheAnswer) {
  HttpRequest bad_key{http::verb::post, "/api/v1/segment?%FF=1", 11};
  bad_key.set(http::field::content_type, "image/png");
  bad_key.body() = "x";
  EXPECT_EQ(call(bad_key).result_int(), 400u);

  // A Latin-1 file name comes back with U+FFFD in its place.
  auto r = form("/api/v1/batch-segment", {{"files", "caf\xE9.png", "img"}});
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  EXPECT_EQ(nlohmann::json::parse(r.body())["results"][0]["filename"], "caf\xEF\xBF\xBD.png");

  // Error texts are clipped: a long name of multi-byte characters must not be cut inside one.
  std::string long_name;
  for (int i = 0; i < 150; ++i) long_name += "\xC3\xA9";  // 300 bytes of e-acute
  r = form("/api/v1/segment", {{"file", long_name + ".gif", "img"}});
  EXPECT_EQ(r.result_int(), 400u);
  for (std::size_t cut = 60; cut < 70; ++cut)  // query keys are clipped at 64 bytes
    EXPECT_EQ(call(HttpRequest{http::verb::post, "/api/v1/segment?" + std::string(cut, 'k') + "%C3%A9=1", 11})
                  .result_int(),
              400u);
  EXPECT_EQ(call(HttpRequest{http::verb::get, "/no/\xFF\xFE", 11}).result_int(), 404u);
}

TEST_F(HostileApi, EveryBatchFileGetsItsOwnResultOrError) {
  auto r = form("/api/v1/batch-segment", {{"files", "a.png", "first"},
                                          {"files", "b.gif", "gif bytes"},
                                          {"files", "c.png", ""},
                                          {"files", "d.png", png_header(2000, 2000)},
                                          {"files", "e.png", "last"}});
  ASSERT_EQ(r.result_int(), 200u) << r.body();
  const auto j = nlohmann::json::parse(r.body());
  ASSERT_EQ(j["results"].size(), 5u);
  const std::vector<std::pair<bool, std::string>> expect = {
      {true, ""}, {false, "bad_request"}, {false, "bad_request"}, {false, "image_too_large"}, {true, ""}};
  for (std::size_t i = 0; i < expect.size(); ++i) {
    const auto& res = j["results"][i];
    EXPECT_EQ(res["batch_index"], i);
    EXPECT_EQ(res["filename"], std::string(1, static_cast<char>('a' + i)) + (i == 1 ? ".gif" : ".png"));
    EXPECT_EQ(res["success"], expect[i].first) << res;
    if (!expect[i].first) {
      EXPECT_EQ(res["error"], expect[i].second) << res;
    }
  }
  EXPECT_EQ(j["successful_count"], 2);
  EXPECT_EQ(j["failed_count"], 3);
  EXPECT_EQ(model->jobs.load(), 2);  // only the good ones reached the model
}

TEST_F(HostileApi, ImagesAreCountedByTheirOutcome) {
  form("/api/v1/segment", {{"file", "a.png", "fine"}});
  model->fail_with = sluice::errc::invalid_argument;  // a decode failure
  form("/api/v1/segment", {{"file", "b.png", "undecodable"}});
  form("/api/v1/batch-segment", {{"files", "c.png", "undecodable"}, {"files", "d.png", ""}});
  std::string out;
  metrics->render(out);
  EXPECT_NE(out.find("sluice_http_images_total{model=\"m\",outcome=\"ok\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sluice_http_images_total{model=\"m\",outcome=\"invalid_image\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sluice_http_images_total{model=\"m\",outcome=\"bad_request\"} 1\n"), std::string::npos) << out;
}

TEST_F(HostileApi, HeadOfAGetRouteHasTheLengthAndNoBody) {
  auto head = [&](const std::string& target) {
    HttpRequest req{http::verb::head, target, 11};
    req.prepare_payload();
    std::promise<HttpResponse> p;
    api.handle(std::move(req), [&](HttpResponse r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  };
  const auto r = head("/api/v1/models");
  EXPECT_EQ(r.result_int(), 200u);
  EXPECT_TRUE(r.body().empty());
  EXPECT_EQ(r[http::field::content_length],
            std::to_string(call(HttpRequest{http::verb::get, "/api/v1/models", 11}).body().size()));
  const auto post_only = head("/api/v1/segment");
  EXPECT_EQ(post_only.result_int(), 405u);
  EXPECT_EQ(post_only[http::field::allow], "POST");
}

}  // namespace

namespace {

// Requests in flight = started - answered - dropped: what a load balancer or autoscaler reads as
// the server's concurrency.
TEST(HttpMetrics, RequestsInFlightAreStartedMinusEnded) {
  HttpMetrics m;
  auto in_flight = [&] {
    std::string out;
    m.render(out);
    const std::string key = "\nsluice_http_requests_in_flight ";
    const auto at = out.find(key);
    return at == std::string::npos ? std::string("absent") : out.substr(at + key.size(), out.find('\n', at + 1) - at - key.size());
  };
  EXPECT_EQ(in_flight(), "0");
  for (int i = 0; i < 3; ++i) m.request_started();
  EXPECT_EQ(in_flight(), "3");
  m.record("/api/v1/segment", "POST", 200, 0.1);
  m.request_dropped("client_closed");
  EXPECT_EQ(in_flight(), "1");
}

}  // namespace
