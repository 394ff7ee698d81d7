// sluice/vision/disintegration_index.hpp: the core-anchored Disintegration Index (DI) of a spheroid
// and its panel metrics, as the spheroid service's POST /api/disintegration-index computes them from
// stored polygons (backend/segmentation/api/metrics_endpoint.py, `disintegration_index` and
// `_fill_valid`, scoring with backend/segmentation/api/disintegration_metrics.py, the service's port
// of the paper's spheroid_seg/compute_di.py).
//
// The polygons become a 3-class mask: every foreground polygon with 3 or more vertices filled with 1
// (cv2.fillPoly, vertices truncated to int32), every core polygon filled with 2 on top. Then, with
// N_fg foreground pixels (1 or 2) and N_C core pixels (2):
//   R_C  = sqrt(N_C / pi), c_C = mean (x, y) of the core pixels
//   d~_i = |p_i - c_C| / R_C over every foreground pixel, sorted
//   W1   = mean_i |d~_(i) - sqrt((i + 0.5) / N_fg)|,   DI = tanh(W1)
//   index_B = (N_fg - N_C) / N_fg; reach_p90 = 90th percentile of d~ (linear, as numpy)
//   n_fragments / largest_fragment_frac: 4-connected components of foreground minus core
//   solidity = N_fg / pixels of the convex hull image (skimage.morphology.convex_hull_image: the hull
//              of the pixels' edge midpoints, pixel centres inside or on it)
//   n_core_components, largest_core_component_frac, core_centroid_shift (in R_C): 8-connected core
//   flags: core_fragmented (largest < 0.99 or shift > 0.1), unvalidated_regime (0.15 <= index_B
//          < 0.30), below_validated_regime (DI < 0.6)
// DI is undefined (reference 'none', 'no_core' or 'core_too_small') without foreground, without a
// core, or with a core under 16048 px.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "sluice/vision/shape_metrics.hpp"

namespace sluice::vision {

struct DisintegrationConstants {
  static constexpr std::int64_t kMinCorePx = 16048;
  static constexpr double kCoreLargestMin = 0.99;
  static constexpr double kCoreShiftMax = 0.1;
  static constexpr double kUnvalidatedLo = 0.15, kUnvalidatedHi = 0.30;
  static constexpr double kValidatedDiFloor = 0.6;
  static constexpr int kValidatedFramePx = 2048;
  static constexpr double kValidatedUmPerPx = 1.28;
  static constexpr double kUmPerPxRelTol = 0.10;
  static constexpr const char* kAlgorithm = "spheroid_seg/compute_di.py";
  static constexpr const char* kAlgorithmSha256 = "efdb7c3b6ea29b6b1381d8feece76d385aa414f1a14fcfb06c34564cdfa730db";
};

/// Every field of the service's answer; an empty optional is JSON null there.
struct DisintegrationResult {
  double di = 0, w1 = 0;  ///< 0.0 sentinels unless reference == "core"
  std::string reference;  ///< "core", "no_core", "core_too_small" or "none"
  std::int64_t n_pixels = 0;
  std::string note;
  std::optional<double> index_b, reach_p90, largest_fragment_frac, solidity;
  std::optional<std::int64_t> n_fragments, area_core_px, area_corona_px, area_total_px, n_core_components;
  std::optional<double> largest_core_component_frac, core_centroid_shift;
  std::optional<int> core_fragmented, unvalidated_regime, below_validated_regime;
  std::vector<std::string> warnings;
};

namespace detail {

/// Component sizes (in discovery order, which is scipy's label order: raster order of each
/// component's first pixel) and, per pixel, its component (-1 outside). `eight`: 8-connectivity.
struct Components {
  std::vector<std::int64_t> sizes;
  std::vector<std::int32_t> label;
};

inline Components label_components(const cv::Mat1b& on, bool eight) {
  const int h = on.rows, w = on.cols;
  Components c;
  c.label.assign(static_cast<std::size_t>(h) * w, -1);
  std::vector<std::int64_t> stack;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::int64_t start = static_cast<std::int64_t>(y) * w + x;
      if (!on(y, x) || c.label[start] >= 0) continue;
      const auto id = static_cast<std::int32_t>(c.sizes.size());
      std::int64_t size = 0;
      c.label[start] = id;
      stack.push_back(start);
      while (!stack.empty()) {
        const std::int64_t p = stack.back();
        stack.pop_back();
        ++size;
        const int py = static_cast<int>(p / w), px = static_cast<int>(p % w);
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) {
            if ((dx == 0 && dy == 0) || (!eight && dx != 0 && dy != 0)) continue;
            const int ny = py + dy, nx = px + dx;
            if (ny < 0 || ny >= h || nx < 0 || nx >= w || !on(ny, nx)) continue;
            const std::int64_t q = static_cast<std::int64_t>(ny) * w + nx;
            if (c.label[q] >= 0) continue;
            c.label[q] = id;
            stack.push_back(q);
          }
      }
      c.sizes.push_back(size);
    }
  return c;
}

struct CoreAnchor {
  std::int64_t n = 0;
  double largest_frac = NAN, shift = NAN;
};

/// compute_di.py's core_components: count, largest component's share, centroid shift in R_C.
inline CoreAnchor core_components(const cv::Mat1b& core) {
  const Components c = label_components(core, true);
  CoreAnchor a;
  a.n = static_cast<std::int64_t>(c.sizes.size());
  if (c.sizes.empty()) return a;
  const auto k = static_cast<std::int32_t>(std::max_element(c.sizes.begin(), c.sizes.end()) - c.sizes.begin());
  double sx = 0, sy = 0, lx = 0, ly = 0;
  std::int64_t total = 0;
  for (int y = 0; y < core.rows; ++y)
    for (int x = 0; x < core.cols; ++x) {
      if (!core(y, x)) continue;
      ++total;
      sx += x, sy += y;
      if (c.label[static_cast<std::size_t>(y) * core.cols + x] == k) lx += x, ly += y;
    }
  const double nk = static_cast<double>(c.sizes[k]);
  const double r_c = std::sqrt(static_cast<double>(total) / std::numbers::pi);
  a.largest_frac = nk / static_cast<double>(total);
  a.shift = std::hypot(sx / total - lx / nk, sy / total - ly / nk) / r_c;
  return a;
}

/// Pixels of skimage's convex_hull_image(fg): pixel centres inside or on the hull of the
/// foreground pixels' edge midpoints (x +- 0.5, y +- 0.5).
inline std::int64_t convex_hull_pixels(const cv::Mat1b& fg) {
  std::vector<cv::Point2f> pts;  // half-integers: exact in float
  for (int y = 0; y < fg.rows; ++y) {
    int first = -1, last = -1;
    for (int x = 0; x < fg.cols; ++x)
      if (fg(y, x)) {
        if (first < 0) first = x;
        last = x;
      }
    if (first < 0) continue;  // the row's extreme pixels carry the whole hull
    for (int x : {first, last}) {
      pts.emplace_back(x - 0.5f, static_cast<float>(y));
      pts.emplace_back(x + 0.5f, static_cast<float>(y));
      pts.emplace_back(static_cast<float>(x), y - 0.5f);
      pts.emplace_back(static_cast<float>(x), y + 0.5f);
    }
  }
  if (pts.empty()) return 0;
  std::vector<cv::Point2f> hull;
  cv::convexHull(pts, hull);
  double ymin = hull[0].y, ymax = hull[0].y;
  for (const auto& p : hull) ymin = std::min<double>(ymin, p.y), ymax = std::max<double>(ymax, p.y);
  constexpr double eps = 1e-9;  // border points count as inside
  std::int64_t count = 0;
  const int r0 = std::max(0, static_cast<int>(std::ceil(ymin - eps)));
  const int r1 = std::min(fg.rows - 1, static_cast<int>(std::floor(ymax + eps)));
  for (int r = r0; r <= r1; ++r) {
    double lo = INFINITY, hi = -INFINITY;
    for (std::size_t i = 0, j = hull.size() - 1; i < hull.size(); j = i++) {
      const double x1 = hull[j].x, y1 = hull[j].y, x2 = hull[i].x, y2 = hull[i].y;
      if (r < std::min(y1, y2) - eps || r > std::max(y1, y2) + eps) continue;
      if (y1 == y2) {
        lo = std::min({lo, x1, x2}), hi = std::max({hi, x1, x2});
      } else {
        const double x = x1 + (r - y1) * (x2 - x1) / (y2 - y1);
        lo = std::min(lo, x), hi = std::max(hi, x);
      }
    }
    if (lo > hi) continue;
    const int c0 = std::max(0, static_cast<int>(std::ceil(lo - eps)));
    const int c1 = std::min(fg.cols - 1, static_cast<int>(std::floor(hi + eps)));
    if (c1 >= c0) count += c1 - c0 + 1;
  }
  return count;
}

}  // namespace detail

/// The service's warnings for a frame or pixel size outside the validated 2048 x 2048, ~1.28 um/px.
inline std::vector<std::string> di_input_scale_warnings(int width, int height, std::optional<double> um_per_px) {
  using K = DisintegrationConstants;
  std::vector<std::string> w;
  if (width != K::kValidatedFramePx || height != K::kValidatedFramePx)
    w.push_back("frame is " + std::to_string(width) + "x" + std::to_string(height) +
                " px; the model and the Disintegration Index were validated only on 2048x2048 px brightfield "
                "frames at ~1.28 um/px (5x objective). The read-out is returned but was never tested at this size.");
  if (um_per_px && *um_per_px > 0 && std::isfinite(*um_per_px) &&
      std::abs(*um_per_px / K::kValidatedUmPerPx - 1.0) > K::kUmPerPxRelTol) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4g", *um_per_px);
    w.push_back(std::string("pixel size is ") + buf +
                " um/px; the model and the Disintegration Index were validated only at ~1.28 um/px (2048x2048 px "
                "frames, 5x objective). The read-out is returned but was never tested at this scale.");
  }
  return w;
}

/// The 3-class mask (0 background, 1 foreground, 2 core) of `_fill_valid`: polygons with fewer than
/// 3 vertices are skipped. `valid_cores` receives how many core polygons were filled.
inline cv::Mat1b compose_di_mask(int width, int height, std::span<const Ring> foreground, std::span<const Ring> cores,
                                 int* valid_cores = nullptr) {
  cv::Mat1b mask(height, width, std::uint8_t{0});
  auto fill = [&](std::span<const Ring> polys, int value) {
    int n = 0;
    for (const Ring& poly : polys) {
      if (poly.size() < 3) continue;
      std::vector<cv::Point> pts;
      pts.reserve(poly.size());
      for (const auto& p : poly)  // np.float32, then astype(np.int32): truncation toward zero
        pts.emplace_back(static_cast<int>(std::trunc(static_cast<float>(p.x))),
                         static_cast<int>(std::trunc(static_cast<float>(p.y))));
      const std::vector<std::vector<cv::Point>> one{std::move(pts)};
      cv::fillPoly(mask, one, cv::Scalar(value));
      ++n;
    }
    return n;
  };
  fill(foreground, 1);
  const int n = fill(cores, 2);
  if (valid_cores) *valid_cores = n;
  return mask;
}

/// DI and panel of a 3-class mask, with the service's N/A answers when DI is undefined.
inline DisintegrationResult disintegration_index(const cv::Mat1b& mask, std::optional<double> um_per_px = std::nullopt) {
  using K = DisintegrationConstants;
  DisintegrationResult r;
  r.warnings = di_input_scale_warnings(mask.cols, mask.rows, um_per_px);
  const cv::Mat1b fg = mask > 0, core = mask == 2;
  const std::int64_t n_fg = cv::countNonZero(fg), n_core = cv::countNonZero(core);
  r.n_pixels = n_fg;
  const detail::CoreAnchor anchor = detail::core_components(core);
  auto finite = [](double v) { return std::isfinite(v) ? std::optional<double>(v) : std::nullopt; };
  r.largest_core_component_frac = finite(anchor.largest_frac);
  r.core_centroid_shift = finite(anchor.shift);
  if (n_fg == 0 || n_core == 0 || n_core < K::kMinCorePx) {
    r.reference = n_fg == 0 ? "none" : n_core == 0 ? "no_core" : "core_too_small";
    r.note = n_fg == 0    ? "no foreground: DI undefined"
             : n_core == 0 ? "no core: DI undefined"
                           : "core of " + std::to_string(n_core) +
                                 " px is below the minimum core size (16048 px, the smallest expert core of the "
                                 "released dataset): DI undefined";
    if (n_fg) {
      r.area_core_px = n_core, r.area_corona_px = n_fg - n_core, r.area_total_px = n_fg;
      r.n_core_components = anchor.n;
    }
    return r;
  }

  double sx = 0, sy = 0;
  for (int y = 0; y < core.rows; ++y)
    for (int x = 0; x < core.cols; ++x)
      if (core(y, x)) sx += x, sy += y;
  const double cx = sx / static_cast<double>(n_core), cy = sy / static_cast<double>(n_core);
  const double r_c = std::sqrt(static_cast<double>(n_core) / std::numbers::pi);
  std::vector<double> d;
  d.reserve(static_cast<std::size_t>(n_fg));
  for (int y = 0; y < fg.rows; ++y)
    for (int x = 0; x < fg.cols; ++x)
      if (fg(y, x)) d.push_back(std::hypot(x - cx, y - cy) / r_c);
  std::sort(d.begin(), d.end());
  const auto n = static_cast<double>(d.size());
  double sum = 0, comp = 0;  // Neumaier summation: close to numpy's pairwise sum over millions of terms
  for (std::size_t i = 0; i < d.size(); ++i) {
    const double term = std::abs(d[i] - std::sqrt((static_cast<double>(i) + 0.5) / n));
    const double t = sum + term;
    comp += std::abs(sum) >= std::abs(term) ? (sum - t) + term : (term - t) + sum;
    sum = t;
  }
  const double w1 = (sum + comp) / n;
  const double pos = 0.9 * (n - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, d.size() - 1);
  const double reach = d[lo] + (pos - static_cast<double>(lo)) * (d[hi] - d[lo]);

  const cv::Mat1b corona = fg & ~core;
  const detail::Components frags = detail::label_components(corona, false);
  double largest = 0.0;
  if (!frags.sizes.empty()) {
    std::int64_t total = 0;
    for (auto s : frags.sizes) total += s;
    largest = static_cast<double>(*std::max_element(frags.sizes.begin(), frags.sizes.end())) / static_cast<double>(total);
  }
  const double index_b = static_cast<double>(n_fg - n_core) / static_cast<double>(n_fg);
  const std::int64_t hull = detail::convex_hull_pixels(fg);

  r.reference = "core";
  r.di = std::tanh(w1);
  r.w1 = w1;
  r.index_b = index_b;
  r.reach_p90 = reach;
  r.n_fragments = static_cast<std::int64_t>(frags.sizes.size());
  r.largest_fragment_frac = largest;
  if (hull > 0) r.solidity = static_cast<double>(n_fg) / static_cast<double>(hull);
  r.area_core_px = n_core, r.area_corona_px = n_fg - n_core, r.area_total_px = n_fg;
  r.n_core_components = anchor.n;
  r.core_fragmented = (anchor.largest_frac < K::kCoreLargestMin || anchor.shift > K::kCoreShiftMax) ? 1 : 0;
  r.unvalidated_regime = (K::kUnvalidatedLo <= index_b && index_b < K::kUnvalidatedHi) ? 1 : 0;
  r.below_validated_regime = r.di < K::kValidatedDiFloor ? 1 : 0;
  return r;
}

}  // namespace sluice::vision
