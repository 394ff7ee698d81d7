// POST /api/calculate-metrics and POST /api/disintegration-index through Api::handle: the service's
// field names and values on valid requests, and a 400 (or 413) naming the problem for each malformed one.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <numbers>
#include <string>

#include <nlohmann/json.hpp>

#include "support/fake_service.hpp"
#include "sluice/serve/api.hpp"

namespace {

using namespace sluice::serve;
using sluice::serve::testing::FakeService;
using nlohmann::json;

struct MetricsApi : ::testing::Test {
  std::shared_ptr<FakeService> model = std::make_shared<FakeService>("alpha");
  ApiLimits limits;
  std::unique_ptr<Api> api;

  void SetUp() override {
    limits.polygons.max_points = 5000;
    limits.polygons.max_polygons = 50;
    limits.polygons.max_di_pixels = 2048 * 2048;
    api = std::make_unique<Api>(std::vector<std::shared_ptr<ModelService>>{model}, "", limits,
                                std::make_shared<HttpMetrics>());
  }

  HttpResponse post(const std::string& target, const std::string& body, http::verb verb = http::verb::post) {
    HttpRequest req{verb, target, 11};
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    std::promise<HttpResponse> p;
    api->handle(req, [&](HttpResponse r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  /// Expects `status` and a detail containing `needle`.
  void expect_error(const std::string& target, const std::string& body, unsigned status, const std::string& needle) {
    SCOPED_TRACE(body.substr(0, 200));
    const HttpResponse r = post(target, body);
    EXPECT_EQ(r.result_int(), status);
    const json j = json::parse(r.body(), nullptr, false);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["success"], false);
    EXPECT_NE(j["detail"].get<std::string>().find(needle), std::string::npos) << j["detail"];
  }
};

json square(double x0, double y0, double a) { return json::array({{x0, y0}, {x0 + a, y0}, {x0 + a, y0 + a}, {x0, y0 + a}}); }

json circle(double cx, double cy, double r, int n) {
  json ring = json::array();
  for (int i = 0; i < n; ++i) {
    const double t = 2 * std::numbers::pi * i / n;
    ring.push_back({cx + r * std::cos(t), cy + r * std::sin(t)});
  }
  return ring;
}

TEST_F(MetricsApi, CalculateMetricsAnswersTheServiceFields) {
  const HttpResponse r = post("/api/calculate-metrics", json{{"contour", square(0, 0, 100)}, {"holes", {square(30, 30, 40)}}}.dump());
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(r[http::field::content_type], "application/json");
  const auto j = nlohmann::ordered_json::parse(r.body());
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  const std::vector<std::string> want{"Area", "Perimeter", "PerimeterWithHoles", "EquivalentDiameter", "Circularity",
                                      "FeretDiameterMax", "FeretDiameterMaxOrthogonalDistance", "FeretDiameterMin",
                                      "FeretAspectRatio", "LengthMajorDiameterThroughCentroid",
                                      "LengthMinorDiameterThroughCentroid", "Compactness", "Convexity", "Solidity",
                                      "Sphericity", "Extent", "BoundingBoxWidth", "BoundingBoxHeight"};
  EXPECT_EQ(keys, want);
  EXPECT_DOUBLE_EQ(j["Area"].get<double>(), 8400);
  EXPECT_DOUBLE_EQ(j["Perimeter"].get<double>(), 400);
  EXPECT_DOUBLE_EQ(j["PerimeterWithHoles"].get<double>(), 560);
  EXPECT_NEAR(j["Circularity"].get<double>(), 4 * std::numbers::pi * 8400 / (560.0 * 560.0), 1e-12);
  EXPECT_DOUBLE_EQ(j["BoundingBoxWidth"].get<double>(), 101);
}

TEST_F(MetricsApi, CalculateMetricsWithoutHolesAndIntegerCoordinates) {
  const HttpResponse r = post("/api/calculate-metrics", R"({"contour": [[0,0],[30,0],[0,40]]})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const auto j = json::parse(r.body());
  EXPECT_DOUBLE_EQ(j["Area"].get<double>(), 600);
  EXPECT_DOUBLE_EQ(j["Perimeter"].get<double>(), 120);
  EXPECT_EQ(j["LengthMajorDiameterThroughCentroid"].get<double>(), 0.0);  // under 5 points
}

TEST_F(MetricsApi, CalculateMetricsRefusesMalformedRequests) {
  const std::string path = "/api/calculate-metrics";
  expect_error(path, "{\"contour\": [[0,0],[1,0]", 400, "not valid JSON");
  expect_error(path, "[1, 2, 3]", 400, "JSON object");
  expect_error(path, "{\"holes\": []}", 400, "missing field 'contour'");
  expect_error(path, "{\"contour\": null}", 400, "missing field 'contour'");
  expect_error(path, "{\"contour\": \"0,0 1,1\"}", 400, "'contour' must be an array");
  expect_error(path, "{\"contour\": [[0,0],[1,0]]}", 400, "at least 3 points");
  expect_error(path, "{\"contour\": [[0,0],[1,0],[1]]}", 400, "point 2 must be [x, y]");
  expect_error(path, "{\"contour\": [[0,0],[1,0],[1,1,1]]}", 400, "point 2 must be [x, y]");
  expect_error(path, "{\"contour\": [[0,0],[1,\"0\"],[1,1]]}", 400, "point 1 must be [x, y]");
  expect_error(path, "{\"contour\": [[0,0],[1,true],[1,1]]}", 400, "point 1 must be [x, y]");
  // A number beyond double's range is not valid JSON to the parser (NaN and Infinity are not JSON).
  expect_error(path, "{\"contour\": [[0,0],[1e999,0],[1,1]]}", 400, "not valid JSON");
  expect_error(path, "{\"contour\": [[0,0],[NaN,0],[1,1]]}", 400, "not valid JSON");
  expect_error(path, "{\"contour\": [[0,0],[1e12,0],[1,1]]}", 400, "outside");
  expect_error(path, "{\"contour\": [[0,0],[10,0],[10,10]], \"holes\": [[[1,1],[2,1]]]}", 400, "'holes[0]' needs at least 3");
  expect_error(path, "{\"contour\": [[0,0],[10,0],[10,10]], \"holes\": {\"a\": 1}}", 400, "'holes' must be an array");
  expect_error(path, json{{"contour", circle(0, 0, 10, 5001)}}.dump(), 400, "more than 5000 points");
  json many = {{"contour", square(0, 0, 100)}, {"holes", json::array()}};
  for (int i = 0; i < 60; ++i) many["holes"].push_back(square(10, 10, 1));
  expect_error(path, many.dump(), 400, "more than 50 polygons");
  expect_error(path, std::string(100, '[') + std::string(100, ']'), 400, "nested deeper");
  const HttpResponse get = post(path, "", http::verb::get);
  EXPECT_EQ(get.result_int(), 405);
}

TEST_F(MetricsApi, DisintegrationIndexAnswersTheServiceFields) {
  const json body{{"mask_polygons", {circle(200, 200, 90, 360)}},
                  {"core_polygons", {circle(200, 200, 85, 360)}},
                  {"image_width", 400},
                  {"image_height", 400},
                  {"pixel_size_um", 0.5}};
  const HttpResponse r = post("/api/disintegration-index", body.dump());
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const auto j = nlohmann::ordered_json::parse(r.body());
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  const std::vector<std::string> want{
      "di", "w1", "reference", "n_pixels", "source", "algorithm", "algorithm_sha256", "note", "index_b", "reach_p90",
      "n_fragments", "largest_fragment_frac", "solidity", "area_core_px", "area_corona_px", "area_total_px",
      "n_core_components", "largest_core_component_frac", "core_centroid_shift", "core_fragmented",
      "unvalidated_regime", "below_validated_regime", "warnings"};
  EXPECT_EQ(keys, want);
  EXPECT_EQ(j["reference"], "core");
  EXPECT_EQ(j["source"], "polygons");
  EXPECT_LT(j["di"].get<double>(), 0.1);
  EXPECT_GT(j["di"].get<double>(), 0.0);
  EXPECT_TRUE(j["n_pixels"].is_number_integer());
  EXPECT_EQ(j["n_pixels"], j["area_total_px"]);
  EXPECT_EQ(j["warnings"].size(), 2u);  // frame size and pixel size
}

TEST_F(MetricsApi, DisintegrationIndexNeedsACore) {
  // The singular legacy fields, and no core: N/A sentinels, not an error.
  const json body{{"mask_polygon", circle(100, 100, 80, 100)}, {"image_width", 2048}, {"image_height", 2048}};
  const HttpResponse r = post("/api/disintegration-index", body.dump());
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const auto j = json::parse(r.body());
  EXPECT_EQ(j["reference"], "no_core");
  EXPECT_EQ(j["di"], 0.0);
  EXPECT_TRUE(j["index_b"].is_null());
  EXPECT_EQ(j["area_core_px"], 0);
  EXPECT_TRUE(j["warnings"].empty());
}

TEST_F(MetricsApi, DisintegrationIndexRefusesMalformedRequests) {
  const std::string path = "/api/disintegration-index";
  const json mask = {circle(50, 50, 20, 40)};
  expect_error(path, "not json", 400, "not valid JSON");
  expect_error(path, json{{"mask_polygons", mask}, {"image_height", 100}}.dump(), 400, "missing field 'image_width'");
  expect_error(path, json{{"mask_polygons", mask}, {"image_width", 0}, {"image_height", 100}}.dump(), 400,
               "must be positive");
  expect_error(path, json{{"mask_polygons", mask}, {"image_width", 10.5}, {"image_height", 100}}.dump(), 400,
               "'image_width' must be an integer");
  expect_error(path, json{{"mask_polygons", mask}, {"image_width", "100"}, {"image_height", 100}}.dump(), 400,
               "'image_width' must be an integer");
  expect_error(path, json{{"image_width", 100}, {"image_height", 100}}.dump(), 400,
               "At least one of mask_polygons / mask_polygon is required");
  expect_error(path, json{{"mask_polygons", json::array()}, {"image_width", 100}, {"image_height", 100}}.dump(), 400,
               "At least one of mask_polygons / mask_polygon is required");
  expect_error(path, json{{"mask_polygons", {{{0, 0}, {1, 0}, {"x", 1}}}}, {"image_width", 100}, {"image_height", 100}}.dump(),
               400, "'mask_polygons[0]' point 2");
  expect_error(path, "{\"mask_polygons\": [[[0,0],[1,0],[1,-Infinity]]], \"image_width\": 9, \"image_height\": 9}",
               400, "not valid JSON");
  expect_error(path, json{{"mask_polygons", mask}, {"core_polygons", {{{0, 0}, {1, 0}, {1, 2e7}}}}, {"image_width", 100},
                          {"image_height", 100}}.dump(), 400, "outside");
  expect_error(path, json{{"mask_polygons", mask}, {"image_width", 100}, {"image_height", 100}, {"pixel_size_um", "1.28"}}.dump(),
               400, "'pixel_size_um' must be a number");
  expect_error(path, json{{"mask_polygons", mask}, {"image_width", 3000}, {"image_height", 2000}}.dump(), 413,
               "more than the limit");
  expect_error(path, json{{"mask_polygons", {circle(0, 0, 10, 6000)}}, {"image_width", 10}, {"image_height", 10}}.dump(), 400,
               "more than 5000 points");
}

TEST(MetricsApiRings, NonFiniteCoordinatesAreRefused) {
  // JSON text cannot carry them, a JSON value built in the program can.
  PolygonLimits limits;
  detail::RingReader reader(limits);
  for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    const json ring = json::array({{0.0, 0.0}, {bad, 1.0}, {1.0, 1.0}});
    try {
      reader.ring(ring, "contour");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400u);
      EXPECT_NE(e.message.find("point 1 is not finite"), std::string::npos) << e.message;
    }
  }
}

TEST_F(MetricsApi, DisintegrationIndexSkipsPolygonsWithFewerThanThreePoints) {
  // As the service's _fill_valid: a two-point polygon is skipped, not refused.
  const json body{{"mask_polygons", {{{1, 1}, {5, 5}}}}, {"image_width", 64}, {"image_height", 64}};
  const HttpResponse r = post("/api/disintegration-index", body.dump());
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(json::parse(r.body())["reference"], "none");
}

}  // namespace
