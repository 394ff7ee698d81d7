// Shape metrics of polygons with holes: closed forms (squares, rectangles, circles, holes), and the
// fixture tests/data/metrics/shape_metrics.json that tools/reference/shape_metrics_reference.py
// computes independently with the spheroid service's definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/vision/shape_metrics.hpp"

namespace {

using sluice::vision::PolygonPoint;
using sluice::vision::Ring;
using sluice::vision::shape_metrics;
using sluice::vision::ShapeMetrics;
constexpr double pi = std::numbers::pi;

Ring square(double x0, double y0, double a) { return {{x0, y0}, {x0 + a, y0}, {x0 + a, y0 + a}, {x0, y0 + a}}; }

Ring circle(double cx, double cy, double r, int n) {
  Ring ring;
  for (int i = 0; i < n; ++i) {
    const double t = 2 * pi * i / n;
    ring.push_back({cx + r * std::cos(t), cy + r * std::sin(t)});
  }
  return ring;
}

TEST(ShapeMetrics, SquareInClosedForm) {
  const double a = 40;
  const ShapeMetrics m = shape_metrics(square(10, 10, a));
  EXPECT_DOUBLE_EQ(m.area, a * a);
  EXPECT_DOUBLE_EQ(m.perimeter, 4 * a);
  EXPECT_DOUBLE_EQ(m.perimeter_with_holes, 4 * a);
  EXPECT_NEAR(m.circularity, pi / 4, 1e-12);
  EXPECT_NEAR(m.sphericity, std::sqrt(pi) / 2, 1e-12);
  EXPECT_NEAR(m.compactness, 4 / pi, 1e-12);
  EXPECT_NEAR(m.equivalent_diameter, 2 * a / std::sqrt(pi), 1e-12);
  EXPECT_DOUBLE_EQ(m.solidity, 1.0);
  EXPECT_DOUBLE_EQ(m.convexity, 1.0);
  EXPECT_NEAR(m.feret_diameter_max, a, 1e-4);
  EXPECT_NEAR(m.feret_diameter_min, a, 1e-4);
  EXPECT_NEAR(m.feret_aspect_ratio, 1.0, 1e-6);
  // OpenCV's boundingRect counts pixels: floor(max) - floor(min) + 1.
  EXPECT_DOUBLE_EQ(m.bounding_box_width, a + 1);
  EXPECT_DOUBLE_EQ(m.bounding_box_height, a + 1);
  EXPECT_NEAR(m.extent, a * a / ((a + 1) * (a + 1)), 1e-12);
  EXPECT_EQ(m.length_major_diameter_through_centroid, 0.0);  // 4 points: no ellipse fit
}

TEST(ShapeMetrics, RotatedRectangleInClosedForm) {
  const double w = 60, h = 30, c = std::cos(pi / 6), s = std::sin(pi / 6);
  Ring ring;
  for (auto [x, y] : {std::pair{-w / 2, -h / 2}, {w / 2, -h / 2}, {w / 2, h / 2}, {-w / 2, h / 2}})
    ring.push_back({100 + c * x - s * y, 100 + s * x + c * y});
  const ShapeMetrics m = shape_metrics(ring);
  EXPECT_NEAR(m.area, w * h, 1e-3);
  EXPECT_NEAR(m.perimeter, 2 * (w + h), 1e-4);
  EXPECT_NEAR(m.circularity, 4 * pi * w * h / (4 * (w + h) * (w + h)), 1e-6);
  EXPECT_NEAR(m.feret_diameter_max, w, 1e-3);
  EXPECT_NEAR(m.feret_diameter_min, h, 1e-3);
  EXPECT_NEAR(m.feret_aspect_ratio, w / h, 1e-4);
}

TEST(ShapeMetrics, FineCircleIsRound) {
  const double r = 50;
  const ShapeMetrics m = shape_metrics(circle(100, 100, r, 2000));
  EXPECT_NEAR(m.area, pi * r * r, pi * r * r * 1e-5);
  EXPECT_NEAR(m.perimeter, 2 * pi * r, 2 * pi * r * 1e-5);
  EXPECT_NEAR(m.circularity, 1.0, 1e-5);
  EXPECT_NEAR(m.sphericity, 1.0, 1e-5);
  EXPECT_NEAR(m.equivalent_diameter, 2 * r, 1e-3);
  EXPECT_NEAR(m.feret_diameter_max, 2 * r, 1e-2);
  EXPECT_NEAR(m.length_major_diameter_through_centroid, 2 * r, 1e-2);
  EXPECT_NEAR(m.length_minor_diameter_through_centroid, 2 * r, 1e-2);
}

TEST(ShapeMetrics, HolesCountInAreaAndPerimeter) {
  const Ring outer = square(0, 0, 100);
  const std::vector<Ring> holes{square(30, 30, 40)};
  const ShapeMetrics m = shape_metrics(outer, holes);
  const double area = 100 * 100 - 40 * 40, pwh = 400 + 160;
  EXPECT_DOUBLE_EQ(m.area, area);
  EXPECT_DOUBLE_EQ(m.perimeter, 400);
  EXPECT_DOUBLE_EQ(m.perimeter_with_holes, pwh);
  EXPECT_NEAR(m.circularity, 4 * pi * area / (pwh * pwh), 1e-12);
  EXPECT_NEAR(m.compactness, pwh * pwh / (4 * pi * area), 1e-12);
  EXPECT_NEAR(m.sphericity, std::sqrt(4 * pi * area) / pwh, 1e-12);
  EXPECT_NEAR(m.convexity, 400 / pwh, 1e-12);
  EXPECT_NEAR(m.solidity, area / 10000, 1e-12);
  EXPECT_NEAR(m.equivalent_diameter, std::sqrt(4 * area / pi), 1e-12);
}

TEST(ShapeMetrics, AHoleLargerThanTheOutlineLeavesNothing) {
  const std::vector<Ring> holes{square(-5, -5, 20)};
  const ShapeMetrics m = shape_metrics(square(0, 0, 10), holes);
  EXPECT_EQ(m.area, 0.0);
  EXPECT_EQ(m.circularity, 0.0);
  EXPECT_EQ(m.sphericity, 0.0);
  EXPECT_EQ(m.compactness, 0.0);
  EXPECT_EQ(m.solidity, 0.0);
  EXPECT_EQ(m.extent, 0.0);
  EXPECT_DOUBLE_EQ(m.perimeter_with_holes, 40 + 80);
}

TEST(ShapeMetrics, SphericityIsTheRootOfCircularity) {
  // The polygon: circularity 0.517 goes with sphericity 0.719 in the service.
  Ring star;
  for (int i = 0; i < 14; ++i) {
    const double t = pi * i / 7, r = i % 2 ? 35 : 60;
    star.push_back({r * std::cos(t), r * std::sin(t)});
  }
  const ShapeMetrics m = shape_metrics(star);
  EXPECT_GT(m.circularity, 0.3);
  EXPECT_LT(m.circularity, 1.0);
  EXPECT_NEAR(m.sphericity, std::sqrt(m.circularity), 1e-12);
  EXPECT_NEAR(m.compactness * m.circularity, 1.0, 1e-12);
}

Ring ring_of(const nlohmann::json& j) {
  Ring r;
  for (const auto& p : j) r.push_back({p[0].get<double>(), p[1].get<double>()});
  return r;
}

TEST(ShapeMetrics, MatchesTheReferenceFixture) {
  std::ifstream in(std::string(SLUICE_TEST_DATA_DIR) + "/metrics/shape_metrics.json");
  ASSERT_TRUE(in) << "run tools/reference/shape_metrics_reference.py";
  const auto fixture = nlohmann::json::parse(in);
  ASSERT_GE(fixture["cases"].size(), 10u);
  for (const auto& c : fixture["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::vector<Ring> holes;
    for (const auto& h : c["holes"]) holes.push_back(ring_of(h));
    const ShapeMetrics m = shape_metrics(ring_of(c["contour"]), holes);
    const auto got = named_metrics(m);
    const auto& want = c["expected"];
    ASSERT_EQ(want.size(), got.size());
    for (const auto& [key, value] : got) {
      const double expected = want.at(key).get<double>();
      // Relative 1e-6: both sides start from the same float32 coordinates; the reference sums in
      // numpy's order and measures the hull with qhull, OpenCV's calls are the same library.
      EXPECT_NEAR(value, expected, 1e-6 * std::max(1.0, std::abs(expected))) << key;
    }
    for (const auto& [key, value] : c["closed_form"].items()) {
      // The polygon approximates the ideal figure: within 0.1 % of its closed form.
      const double ideal = value.get<double>();
      const double ours = key == "Area" ? m.area : key == "Perimeter" ? m.perimeter
                        : key == "PerimeterWithHoles" ? m.perimeter_with_holes : m.circularity;
      EXPECT_NEAR(ours, ideal, 1e-3 * std::abs(ideal)) << key << " (closed form)";
    }
  }
}

}  // namespace
