// Postprocessing on synthetic maps of known shapes: holes and their parents, the min-area filter,
// detect_holes = false, thresholds (strict, validated), confidence, and the result JSON layout.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "sluice/vision/postprocess.hpp"
#include "sluice/vision/result_json.hpp"

namespace sv = sluice::vision;

namespace {

/// Logits that are +4 inside `mask` (non-zero) and -4 outside: sigmoid 0.982 vs 0.018.
std::vector<float> logits_of(const cv::Mat& mask) {
  std::vector<float> out(static_cast<std::size_t>(mask.total()));
  for (int y = 0; y < mask.rows; ++y)
    for (int x = 0; x < mask.cols; ++x) out[static_cast<std::size_t>(y * mask.cols + x)] = mask.at<std::uint8_t>(y, x) ? 4.0f : -4.0f;
  return out;
}

double iou(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat i, u;
  cv::bitwise_and(a, b, i);
  cv::bitwise_or(a, b, u);
  return static_cast<double>(cv::countNonZero(i)) / cv::countNonZero(u);
}

/// Which side of the shape a point is on, by distance from the disc's centre.
cv::Mat disc_with_hole(cv::Size size, cv::Point c, int outer, int inner) {
  cv::Mat m = cv::Mat::zeros(size, CV_8UC1);
  cv::circle(m, c, outer, cv::Scalar(255), cv::FILLED);
  if (inner > 0) cv::circle(m, c, inner, cv::Scalar(0), cv::FILLED);
  return m;
}

}  // namespace

TEST(Postprocess, DiscWithHoleGivesOneExternalAndOneInternalWithParent) {
  const cv::Mat mask = disc_with_hole({120, 100}, {60, 50}, 35, 12);
  const auto logits = logits_of(mask);
  const auto seg = sv::postprocess(logits, mask.size(), mask.size());
  ASSERT_EQ(seg.polygons.size(), 2u);
  int externals = 0, internals = 0;
  for (const auto& p : seg.polygons) {
    if (p.internal) {
      ++internals;
      ASSERT_GE(p.parent, 0);
      EXPECT_FALSE(seg.polygons[static_cast<std::size_t>(p.parent)].internal);
      EXPECT_NEAR(p.area, M_PI * 12 * 12, 0.25 * M_PI * 12 * 12);
    } else {
      ++externals;
      EXPECT_EQ(p.parent, -1);
      EXPECT_NEAR(p.area, M_PI * 35 * 35, 0.1 * M_PI * 35 * 35);
    }
    for (const auto& pt : p.points) {  // every point lies on the ring's border
      const double r = std::hypot(pt.x - 60.0, pt.y - 50.0);
      EXPECT_TRUE(std::abs(r - 35) < 2.0 || std::abs(r - 12) < 2.0) << pt;
    }
  }
  EXPECT_EQ(externals, 1);
  EXPECT_EQ(internals, 1);
  EXPECT_NEAR(seg.confidence, 1.0 / (1.0 + std::exp(-4.0)), 1e-6);
  // Rasterised back with its hole, it is the mask again up to the one-pixel border.
  EXPECT_GT(iou(sv::rasterize(seg), mask), 0.97);
}

TEST(Postprocess, SmallAreasAreDropped) {
  cv::Mat mask = cv::Mat::zeros(80, 80, CV_8UC1);
  cv::rectangle(mask, cv::Rect(5, 5, 6, 6), cv::Scalar(255), cv::FILLED);      // contour area 25 < 50
  cv::rectangle(mask, cv::Rect(40, 40, 12, 12), cv::Scalar(255), cv::FILLED);  // area 121
  cv::rectangle(mask, cv::Rect(20, 60, 8, 9), cv::Scalar(255), cv::FILLED);    // area 7 x 8 = 56
  const auto seg = sv::postprocess(logits_of(mask), mask.size(), mask.size());
  ASSERT_EQ(seg.polygons.size(), 2u);
  std::multiset<double> areas;
  for (const auto& p : seg.polygons) areas.insert(p.area);
  EXPECT_EQ(areas, (std::multiset<double>{56.0, 121.0}));
  // A hole below the limit vanishes, its object stays.
  const cv::Mat ring = disc_with_hole({60, 60}, {30, 30}, 20, 3);
  const auto seg2 = sv::postprocess(logits_of(ring), ring.size(), ring.size());
  ASSERT_EQ(seg2.polygons.size(), 1u);
  EXPECT_FALSE(seg2.polygons[0].internal);
  // The limit is configurable.
  const auto all = sv::postprocess(logits_of(mask), mask.size(), mask.size(), {.min_area = 0.0});
  EXPECT_EQ(all.polygons.size(), 3u);
}

TEST(Postprocess, WithoutHolesOutlinesAreFilled) {
  cv::Mat mask = disc_with_hole({100, 100}, {50, 50}, 30, 12);
  cv::circle(mask, {50, 50}, 5, cv::Scalar(255), cv::FILLED);  // an island inside the hole
  const auto with = sv::postprocess(logits_of(mask), mask.size(), mask.size(), {.detect_holes = true, .min_area = 10});
  EXPECT_EQ(with.polygons.size(), 3u);  // outer, hole, island (internal: it has a parent)
  const auto without = sv::postprocess(logits_of(mask), mask.size(), mask.size(), {.detect_holes = false});
  ASSERT_EQ(without.polygons.size(), 1u);
  EXPECT_FALSE(without.polygons[0].internal);
  const cv::Mat filled = disc_with_hole({100, 100}, {50, 50}, 30, 0);
  EXPECT_GT(iou(sv::rasterize(without), filled), 0.97);
  EXPECT_GT(iou(sv::rasterize(with), mask), 0.9);
}

TEST(Postprocess, ResizesTheMapBackToTheOriginalSize) {
  // A 32 x 32 logit map of a centred square, for an original of 128 x 96: the square scales.
  cv::Mat small = cv::Mat::zeros(32, 32, CV_8UC1);
  cv::rectangle(small, cv::Rect(8, 8, 16, 16), cv::Scalar(255), cv::FILLED);
  const auto seg = sv::postprocess(logits_of(small), small.size(), cv::Size(128, 96));
  EXPECT_EQ(seg.image_size, cv::Size(128, 96));
  ASSERT_EQ(seg.polygons.size(), 1u);
  const cv::Rect box = cv::boundingRect(seg.polygons[0].points);
  EXPECT_NEAR(box.x, 32, 2);
  EXPECT_NEAR(box.y, 24, 2);
  EXPECT_NEAR(box.width, 64, 3);
  EXPECT_NEAR(box.height, 48, 3);
}

TEST(Postprocess, ThresholdIsStrictAndValidated) {
  // Logit 0 is probability exactly 0.5: not above a threshold of 0.5.
  std::vector<float> half(40 * 40, 0.0f);
  EXPECT_TRUE(sv::postprocess(half, {40, 40}, {40, 40}, {.threshold = 0.5}).polygons.empty());
  EXPECT_EQ(sv::postprocess(half, {40, 40}, {40, 40}, {.threshold = 0.4}).polygons.size(), 1u);
  for (double bad : {0.05, 0.95, -1.0, 1.5, std::nan("")}) {
    try {
      sv::postprocess(half, {40, 40}, {40, 40}, {.threshold = bad});
      ADD_FAILURE() << "threshold " << bad << " accepted";
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("0.1 .. 0.9"), std::string::npos);
    }
  }
  EXPECT_NO_THROW(sv::postprocess(half, {40, 40}, {40, 40}, {.threshold = 0.1}));
  EXPECT_NO_THROW(sv::postprocess(half, {40, 40}, {40, 40}, {.threshold = 0.9}));
  EXPECT_THROW(sv::postprocess(std::vector<float>(10), {40, 40}, {40, 40}), sluice::Error);
}

TEST(Postprocess, ConfidenceIsTheMaxProbability) {
  std::vector<float> logits(20 * 20, -3.0f);
  logits[7 * 20 + 9] = 2.0f;
  const auto seg = sv::postprocess(logits, {20, 20}, {20, 20});
  EXPECT_NEAR(seg.confidence, 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
  EXPECT_TRUE(seg.polygons.empty());  // one pixel is far below 50
}

TEST(ResultJson, HasTheSpecLayoutFieldByField) {
  const cv::Mat mask = disc_with_hole({90, 70}, {45, 35}, 30, 10);
  const auto seg = sv::postprocess(logits_of(mask), mask.size(), mask.size(), {.threshold = 0.35});
  ASSERT_EQ(seg.polygons.size(), 2u);
  const auto j = sv::to_json(seg, {.model_used = "hrnet", .device = "cpu", .batch_size = 4, .batch_position = 2});

  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"model_used", "threshold_used", "image_size", "polygons", "processing_info"}));
  EXPECT_EQ(j["model_used"], "hrnet");
  EXPECT_DOUBLE_EQ(j["threshold_used"].get<double>(), 0.35);
  EXPECT_EQ(j["image_size"]["width"], 90);
  EXPECT_EQ(j["image_size"]["height"], 70);
  const auto& info = j["processing_info"];
  EXPECT_EQ(info["device"], "cpu");
  EXPECT_EQ(info["num_polygons"], 2);
  EXPECT_EQ(info["batch_size"], 4);
  EXPECT_EQ(info["batch_position"], 2);

  ASSERT_TRUE(j["polygons"].is_array());
  std::string external_id;
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& p = j["polygons"][i];
    const auto& src = seg.polygons[i];
    EXPECT_EQ(p["id"], "polygon_" + std::to_string(i + 1));
    EXPECT_EQ(p["type"], src.internal ? "internal" : "external");
    EXPECT_EQ(p["class"], "spheroid");
    EXPECT_DOUBLE_EQ(p["confidence"].get<double>(), static_cast<double>(seg.confidence));
    EXPECT_EQ(p["vertices_count"].get<std::size_t>(), src.points.size());
    ASSERT_EQ(p["points"].size(), src.points.size());
    for (std::size_t k = 0; k < src.points.size(); ++k) {
      EXPECT_TRUE(p["points"][k]["x"].is_number_float());
      EXPECT_EQ(p["points"][k]["x"].get<double>(), src.points[k].x);
      EXPECT_EQ(p["points"][k]["y"].get<double>(), src.points[k].y);
    }
    if (!src.internal) external_id = p["id"];
  }
  for (const auto& p : j["polygons"]) {
    if (p["type"] == "internal") EXPECT_EQ(p["parent_id"], external_id);
    else EXPECT_FALSE(p.contains("parent_id"));
  }
  std::vector<std::string> pkeys;
  for (auto it = j["polygons"][0].begin(); it != j["polygons"][0].end(); ++it) pkeys.push_back(it.key());
  EXPECT_EQ((std::vector<std::string>(pkeys.begin(), pkeys.begin() + 6)),
            (std::vector<std::string>{"id", "points", "type", "class", "confidence", "vertices_count"}));
}

// Blank images: the demo model answers a constant image with polygons along the border (the
// PyTorch reference gives the same ones; docs/demo-model.md, "Blank images"). The pipeline's own
// part must add nothing: a constant probability map, resized to any image size, is one value
// everywhere -- no polygon below the threshold, one covering the whole image above it.
TEST(Postprocess, ConstantMapsGiveNoBorderPolygons) {
  const cv::Size map(128, 128);
  for (const cv::Size original : {cv::Size(128, 128), cv::Size(256, 256), cv::Size(300, 200), cv::Size(97, 61),
                                  cv::Size(1000, 37)})
    for (const float logit : {-4.0f, -1e-3f, 1e-3f, 4.0f}) {
      const std::vector<float> logits(static_cast<std::size_t>(map.area()), logit);
      const auto seg = sv::postprocess(logits, map, original, {});
      const std::string what = std::to_string(original.width) + "x" + std::to_string(original.height) +
                               " logit " + std::to_string(logit);
      EXPECT_NEAR(seg.confidence, 1.0 / (1.0 + std::exp(-logit)), 1e-6) << what;
      if (logit < 0) {
        EXPECT_TRUE(seg.polygons.empty()) << what;
        continue;
      }
      ASSERT_EQ(seg.polygons.size(), 1u) << what;
      EXPECT_EQ(cv::boundingRect(seg.polygons[0].points), cv::Rect(cv::Point(0, 0), original)) << what;
      EXPECT_DOUBLE_EQ(seg.polygons[0].area, (original.width - 1.0) * (original.height - 1.0)) << what;
    }
}

TEST(Postprocess, OnePassGivesOpenCvsMaskAndMaximum) {
  // mask_and_max against threshold_mask (cv::compare) and cv::minMaxLoc: probabilities at the float
  // neighbours of each threshold (OpenCV compares with the threshold rounded to float), a window
  // of a larger map (rows apart), odd widths; NaN is below every threshold and not the maximum.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (double threshold : {0.1, 0.3, 0.5, 0.7, 0.9})
    for (int width : {1, 7, 31, 290}) {
      cv::Mat big(41, width + 6, CV_32FC1);
      const float t = static_cast<float>(threshold);
      const float near[] = {std::nextafter(t, 0.0f), t, std::nextafter(t, 1.0f)};
      for (int y = 0; y < big.rows; ++y)
        for (int x = 0; x < big.cols; ++x) big.at<float>(y, x) = (x + y) % 3 == 0 ? near[(x + 2 * y) % 3] : u(rng);
      const cv::Mat map = big(cv::Rect(3, 2, width, 37));
      cv::Mat mask;
      const float hi = sv::detail::mask_and_max(map, threshold, mask);
      EXPECT_EQ(cv::norm(mask, sv::threshold_mask(map, threshold), cv::NORM_INF), 0.0) << threshold << " " << width;
      double lo = 0.0, want = 0.0;
      cv::minMaxLoc(map, &lo, &want);
      EXPECT_EQ(hi, static_cast<float>(want)) << threshold << " " << width;

      cv::Mat with_nan = map.clone();
      with_nan.at<float>(0, 0) = std::numeric_limits<float>::quiet_NaN();
      with_nan.at<float>(with_nan.rows - 1, with_nan.cols - 1) = std::numeric_limits<float>::quiet_NaN();
      const float hi_nan = sv::detail::mask_and_max(with_nan, threshold, mask);
      EXPECT_EQ(mask.at<std::uint8_t>(0, 0), 0);
      if (width > 1) {
        cv::Mat numbers = with_nan.clone();
        numbers.at<float>(0, 0) = numbers.at<float>(numbers.rows - 1, numbers.cols - 1) = 0.0f;
        cv::minMaxLoc(numbers, &lo, &want);
        EXPECT_EQ(hi_nan, static_cast<float>(want)) << threshold << " " << width;
      }
    }
  cv::Mat all_nan(4, 5, CV_32FC1, cv::Scalar(std::numeric_limits<float>::quiet_NaN())), mask;
  EXPECT_EQ(sv::detail::mask_and_max(all_nan, 0.5, mask), 0.0f);
  EXPECT_EQ(cv::countNonZero(mask), 0);
  EXPECT_THROW(sv::segment_probability(cv::Mat(4, 4, CV_64FC1, cv::Scalar(0.9)), {}), sluice::Error);
}
