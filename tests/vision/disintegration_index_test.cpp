// The Disintegration Index from polygons: against tests/data/metrics/disintegration_index.json
// (tools/reference/shape_metrics_reference.py: numpy, scipy.ndimage, skimage), and properties that
// hold by construction (a core that is the whole spheroid scores about 0).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/vision/disintegration_index.hpp"

namespace {

using namespace sluice::vision;

Ring circle(double cx, double cy, double r, int n) {
  Ring ring;
  for (int i = 0; i < n; ++i) {
    const double t = 2 * std::numbers::pi * i / n;
    ring.push_back({cx + r * std::cos(t), cy + r * std::sin(t)});
  }
  return ring;
}

std::vector<Ring> rings_of(const nlohmann::json& j) {
  std::vector<Ring> out;
  for (const auto& poly : j) {
    Ring r;
    for (const auto& p : poly) r.push_back({p[0].get<double>(), p[1].get<double>()});
    out.push_back(std::move(r));
  }
  return out;
}

TEST(DisintegrationIndex, ACoreThatIsTheWholeSpheroidScoresAboutZero) {
  const std::vector<Ring> disk{circle(200, 200, 90, 720)};
  const DisintegrationResult r = disintegration_index(compose_di_mask(400, 400, disk, disk));
  ASSERT_EQ(r.reference, "core");
  EXPECT_LT(r.di, 0.01);  // a filled disk is the reference distribution itself
  EXPECT_EQ(*r.index_b, 0.0);
  EXPECT_EQ(*r.n_fragments, 0);
  EXPECT_EQ(*r.largest_fragment_frac, 0.0);
  EXPECT_NEAR(*r.reach_p90, std::sqrt(0.9), 0.02);  // 90 % of a disk's area lies within sqrt(0.9) R
  EXPECT_EQ(*r.core_fragmented, 0);
  EXPECT_EQ(*r.below_validated_regime, 1);
  EXPECT_NEAR(*r.solidity, 1.0, 0.01);
  EXPECT_EQ(r.warnings.size(), 1u);  // 400 x 400 is not the validated frame
}

TEST(DisintegrationIndex, UndefinedWithoutAUsableCore) {
  const std::vector<Ring> disk{circle(100, 100, 80, 200)}, small{circle(100, 100, 40, 200)};
  const auto none = disintegration_index(compose_di_mask(2048, 2048, {}, {}));
  EXPECT_EQ(none.reference, "none");
  EXPECT_FALSE(none.area_total_px);
  EXPECT_TRUE(none.warnings.empty());
  const auto no_core = disintegration_index(compose_di_mask(220, 220, disk, {}));
  EXPECT_EQ(no_core.reference, "no_core");
  EXPECT_EQ(no_core.note, "no core: DI undefined");
  EXPECT_EQ(*no_core.area_core_px, 0);
  EXPECT_FALSE(no_core.largest_core_component_frac);
  const auto too_small = disintegration_index(compose_di_mask(220, 220, disk, small));
  EXPECT_EQ(too_small.reference, "core_too_small");
  EXPECT_EQ(too_small.di, 0.0);
  EXPECT_FALSE(too_small.index_b);
  EXPECT_TRUE(too_small.largest_core_component_frac);
}

TEST(DisintegrationIndex, PolygonsWithFewerThanThreePointsAreSkipped) {
  int valid = -1;
  const std::vector<Ring> cores{{{1, 1}, {50, 50}}, circle(30, 30, 10, 30)};
  const cv::Mat1b m = compose_di_mask(64, 64, {}, cores, &valid);
  EXPECT_EQ(valid, 1);
  EXPECT_GT(cv::countNonZero(m), 250);
}

void expect_optional(const nlohmann::json& want, const auto& got, const char* key, double tol) {
  if (want.is_null()) {
    EXPECT_FALSE(got) << key;
  } else {
    ASSERT_TRUE(got) << key;
    EXPECT_NEAR(static_cast<double>(*got), want.get<double>(), tol) << key;
  }
}

TEST(DisintegrationIndex, MatchesTheReferenceFixture) {
  std::ifstream in(std::string(SLUICE_TEST_DATA_DIR) + "/metrics/disintegration_index.json");
  ASSERT_TRUE(in) << "run tools/reference/shape_metrics_reference.py";
  const auto fixture = nlohmann::json::parse(in);
  ASSERT_GE(fixture["cases"].size(), 6u);
  for (const auto& c : fixture["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto& q = c["request"];
    const auto& e = c["expected"];
    std::optional<double> um;
    if (!q["pixel_size_um"].is_null()) um = q["pixel_size_um"].get<double>();
    const DisintegrationResult r = disintegration_index(
        compose_di_mask(q["image_width"], q["image_height"], rings_of(q["mask_polygons"]), rings_of(q["core_polygons"])),
        um);
    EXPECT_EQ(r.reference, e["reference"].get<std::string>());
    EXPECT_EQ(r.n_pixels, e["n_pixels"].get<std::int64_t>());  // the same pixels were filled
    EXPECT_NEAR(r.di, e["di"].get<double>(), 1e-9);
    EXPECT_NEAR(r.w1, e["w1"].get<double>(), 1e-9);
    // Pixel counts and flags exactly; ratios to 1e-9 (summation order differs from numpy's).
    expect_optional(e["index_b"], r.index_b, "index_b", 1e-12);
    expect_optional(e["reach_p90"], r.reach_p90, "reach_p90", 1e-9);
    expect_optional(e["n_fragments"], r.n_fragments, "n_fragments", 0);
    expect_optional(e["largest_fragment_frac"], r.largest_fragment_frac, "largest_fragment_frac", 1e-12);
    expect_optional(e["solidity"], r.solidity, "solidity", 1e-12);
    expect_optional(e["area_core_px"], r.area_core_px, "area_core_px", 0);
    expect_optional(e["area_corona_px"], r.area_corona_px, "area_corona_px", 0);
    expect_optional(e["area_total_px"], r.area_total_px, "area_total_px", 0);
    expect_optional(e["n_core_components"], r.n_core_components, "n_core_components", 0);
    expect_optional(e["largest_core_component_frac"], r.largest_core_component_frac, "largest_core_component_frac", 1e-12);
    expect_optional(e["core_centroid_shift"], r.core_centroid_shift, "core_centroid_shift", 1e-9);
    expect_optional(e["core_fragmented"], r.core_fragmented, "core_fragmented", 0);
    expect_optional(e["unvalidated_regime"], r.unvalidated_regime, "unvalidated_regime", 0);
    expect_optional(e["below_validated_regime"], r.below_validated_regime, "below_validated_regime", 0);
    EXPECT_EQ(nlohmann::json(r.warnings), e["warnings"]);
  }
}

}  // namespace
