// sluice/vision/postprocess.hpp: one image's logits -> polygons. Sigmoid, bilinear resize back to
// the original size, strict threshold, contours (with their hierarchy, or external only and filled),
// min-area filter, internal/external with parent links, confidence = max probability.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "sluice/core/error.hpp"
#include "sluice/vision/sigmoid.hpp"

namespace sluice::vision {

struct PostprocessOptions {
  double threshold = 0.5;    ///< mask = probability > threshold (strict); valid 0.1 .. 0.9
  bool detect_holes = true;  ///< false: external outlines only, holes filled
  double min_area = 50.0;    ///< contours with a smaller OpenCV contourArea are dropped

  static constexpr double kMinThreshold = 0.1;
  static constexpr double kMaxThreshold = 0.9;

  void validate() const {
    if (!(threshold >= kMinThreshold && threshold <= kMaxThreshold))  // also rejects NaN
      throw Error(errc::invalid_argument, "threshold " + std::to_string(threshold) + " is outside 0.1 .. 0.9");
    if (!(min_area >= 0.0)) throw Error(errc::invalid_argument, "min_area must be >= 0");
  }
};

struct Polygon {
  std::vector<cv::Point> points;  ///< original-image pixels, as traced (no simplification)
  bool internal = false;          ///< the contour has a parent in the hierarchy (a hole's outline)
  int parent = -1;                ///< index of the parent in Segmentation::polygons, when it was kept
  double area = 0.0;
};

struct Segmentation {
  cv::Size image_size;       ///< the original image
  double threshold = 0.5;
  float confidence = 0.0f;   ///< max probability over the image
  std::vector<Polygon> polygons;
};

namespace detail {

inline Segmentation contours_to_polygons(const cv::Mat& mask, const PostprocessOptions& options, Segmentation seg) {
  std::vector<std::vector<cv::Point>> contours;
  std::vector<cv::Vec4i> hierarchy;
  if (options.detect_holes) {
    cv::findContours(mask, contours, hierarchy, cv::RETR_TREE, cv::CHAIN_APPROX_SIMPLE);
  } else {
    std::vector<std::vector<cv::Point>> outer;
    cv::findContours(mask, outer, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::Mat filled = cv::Mat::zeros(mask.size(), CV_8UC1);
    cv::drawContours(filled, outer, -1, cv::Scalar(255), cv::FILLED);
    cv::findContours(filled, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  }
  // First pass: which contours survive; second: links to surviving parents (the order of
  // OpenCV's output does not promise that a parent precedes its children).
  std::vector<int> kept_index(contours.size(), -1);
  for (std::size_t i = 0; i < contours.size(); ++i) {
    if (contours[i].size() < 3) continue;
    const double area = cv::contourArea(contours[i]);
    if (area < options.min_area) continue;
    kept_index[i] = static_cast<int>(seg.polygons.size());
    Polygon p;
    p.area = area;
    p.internal = !hierarchy.empty() && hierarchy[i][3] >= 0;
    seg.polygons.push_back(std::move(p));
  }
  for (std::size_t i = 0; i < contours.size(); ++i) {
    if (kept_index[i] < 0) continue;
    Polygon& p = seg.polygons[static_cast<std::size_t>(kept_index[i])];
    p.points = std::move(contours[i]);
    if (p.internal) p.parent = kept_index[static_cast<std::size_t>(hierarchy[i][3])];
  }
  return seg;
}

}  // namespace detail

/// The probability map of one image at its original size: sigmoid of the network's H x W logits
/// (row-major, `map_size`), resized bilinearly to `original`. CV_32FC1.
inline cv::Mat probability_map(std::span<const float> logits, cv::Size map_size, cv::Size original) {
  if (map_size.width <= 0 || map_size.height <= 0 || original.width <= 0 || original.height <= 0)
    throw Error(errc::invalid_argument, "postprocess needs positive sizes");
  if (logits.size() != static_cast<std::size_t>(map_size.area()))
    throw Error(errc::invalid_argument, "logit map holds " + std::to_string(logits.size()) + " values, expected " +
                                            std::to_string(map_size.area()));
  cv::Mat prob(map_size, CV_32FC1);
  float* p = prob.ptr<float>();
  sigmoid(logits.data(), p, logits.size());
  if (map_size == original) return prob;
  cv::Mat full;
  cv::resize(prob, full, original, 0.0, 0.0, cv::INTER_LINEAR);
  return full;
}

/// The binary mask of a probability map: CV_8UC1, 255 where probability > threshold (strict).
inline cv::Mat threshold_mask(const cv::Mat& probability, double threshold) { return probability > threshold; }

namespace detail {

/// threshold_mask's mask of a CV_32FC1 map and the map's largest value, in one pass over it (the
/// two OpenCV calls read it twice, and minMaxLoc also tracks where the extremes are). The mask
/// compares in float as cv::compare does (the threshold rounded to float); NaN is never above it
/// and is skipped by the maximum, which is 0 when the map holds no number.
inline float mask_and_max(const cv::Mat& probability, double threshold, cv::Mat& mask) {
  mask.create(probability.size(), CV_8UC1);
  const float t = static_cast<float>(threshold);
  float hi = -std::numeric_limits<float>::infinity();
  for (int y = 0; y < probability.rows; ++y) {
    const float* p = probability.ptr<float>(y);
    std::uint8_t* m = mask.ptr<std::uint8_t>(y);
    int x = 0;
#ifdef __AVX2__
    // 32 at a time (GCC does not vectorise the NaN-skipping maximum by itself); vmaxps returns
    // its second operand when either is NaN, as the scalar loop below keeps hi.
    const __m256 tv = _mm256_set1_ps(t);
    __m256 hv = _mm256_set1_ps(hi);
    for (; x + 32 <= probability.cols; x += 32) {
      __m256i above[4];
      for (int q = 0; q < 4; ++q) {
        const __m256 v = _mm256_loadu_ps(p + x + 8 * q);
        above[q] = _mm256_castps_si256(_mm256_cmp_ps(v, tv, _CMP_GT_OQ));
        hv = _mm256_max_ps(v, hv);
      }
      // All-ones / zero words packed to bytes (0xff = 255); the permute undoes the packs' lane order.
      const __m256i words = _mm256_packs_epi32(above[0], above[1]), words2 = _mm256_packs_epi32(above[2], above[3]);
      const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2),
                                                        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(m + x), bytes);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, hv);
    for (float v : lanes) hi = v > hi ? v : hi;
#endif
    for (; x < probability.cols; ++x) {
      const float v = p[x];
      m[x] = v > t ? 255 : 0;
      hi = v > hi ? v : hi;  // maxps's operand order: a NaN v leaves hi
    }
  }
  return hi == -std::numeric_limits<float>::infinity() ? 0.0f : hi;
}

}  // namespace detail

/// The polygons of a probability map at the original size (probability_map's output).
inline Segmentation segment_probability(const cv::Mat& probability, const PostprocessOptions& options) {
  options.validate();
  Segmentation seg;
  seg.image_size = probability.size();
  seg.threshold = options.threshold;
  if (probability.type() != CV_32FC1) throw Error(errc::invalid_argument, "a probability map is CV_32FC1");
  cv::Mat mask;
  seg.confidence = detail::mask_and_max(probability, options.threshold, mask);
  return detail::contours_to_polygons(mask, options, std::move(seg));
}

/// Postprocesses one image. `logits` is the network's H x W map (row-major) of size `map_size`;
/// `original` is the decoded image's size. Throws sluice::Error(invalid_argument) on bad options.
inline Segmentation postprocess(std::span<const float> logits, cv::Size map_size, cv::Size original,
                                const PostprocessOptions& options = {}) {
  options.validate();
  return segment_probability(probability_map(logits, map_size, original), options);
}

/// Postprocesses an already binary mask (CV_8UC1, non-zero = object) with a given confidence: the
/// contour half of `postprocess`, for callers (and tests) that hold a mask.
inline Segmentation polygons_from_mask(const cv::Mat& mask, const PostprocessOptions& options = {},
                                       float confidence = 1.0f) {
  options.validate();
  if (mask.empty() || mask.type() != CV_8UC1) throw Error(errc::invalid_argument, "mask must be a non-empty CV_8UC1");
  Segmentation seg;
  seg.image_size = mask.size();
  seg.threshold = options.threshold;
  seg.confidence = confidence;
  return detail::contours_to_polygons(mask, options, std::move(seg));
}

/// Draws polygons back into a mask (CV_8UC1, 255 = object), honouring holes: a polygon at an even
/// depth of the parent chain adds area, one at an odd depth removes its interior but keeps its own
/// outline pixels (the traced outline of a hole lies on object pixels).
inline cv::Mat rasterize(const Segmentation& seg) {
  cv::Mat mask = cv::Mat::zeros(seg.image_size, CV_8UC1);
  auto depth = [&](std::size_t i) {
    int d = 0;
    for (int p = seg.polygons[i].parent; p >= 0 && d <= static_cast<int>(seg.polygons.size());
         p = seg.polygons[static_cast<std::size_t>(p)].parent)
      ++d;
    return seg.polygons[i].internal && seg.polygons[i].parent < 0 ? 1 : d;
  };
  std::vector<std::size_t> order(seg.polygons.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return depth(a) < depth(b); });
  for (std::size_t i : order) {
    const auto& pts = seg.polygons[i].points;
    const std::vector<std::vector<cv::Point>> one{pts};
    if (depth(i) % 2 == 0) {
      cv::fillPoly(mask, one, cv::Scalar(255));
    } else {
      cv::fillPoly(mask, one, cv::Scalar(0));
      cv::polylines(mask, one, true, cv::Scalar(255));
    }
  }
  return mask;
}

}  // namespace sluice::vision
