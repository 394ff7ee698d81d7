// sluice/vision/shape_metrics.hpp: the shape metrics of one polygon with holes, as the spheroid
// service's POST /api/calculate-metrics reports them (backend/segmentation/api/metrics_endpoint.py,
// `calculate_metrics`, over backend/segmentation/utils/characteristic_functions.py, `calculate_all`).
//
// Definitions (all in pixels; A = outer area minus the holes' areas, clamped at 0; P = the outer
// perimeter; Pwh = P plus every hole's perimeter):
//   Area                 |shoelace(outer)| - sum |shoelace(hole)|            (cv2.contourArea)
//   Perimeter            closed length of the outer ring                      (cv2.arcLength)
//   PerimeterWithHoles   Pwh
//   EquivalentDiameter   sqrt(4 A / pi)
//   Circularity          min(1, 4 pi A / Pwh^2)       (ImageJ: holes count in the perimeter)
//   Compactness          Pwh^2 / (4 pi A)             (1 / circularity before the clamp)
//   Sphericity           pi sqrt(4 A / pi) / Pwh      (= sqrt(4 pi A) / Pwh = sqrt(circularity))
//   Convexity            hull perimeter / Pwh
//   Solidity             A / hull area
//   Extent               A / (BoundingBoxWidth * BoundingBoxHeight)
//   BoundingBoxWidth/Height   cv2.boundingRect of the float points: floor(max) - floor(min) + 1
//   FeretDiameterMax/Min the longer / shorter side of cv2.minAreaRect (a caliper pair aligned with
//                        a hull edge, not the true maximum caliper); FeretAspectRatio = max / min
//   FeretDiameterMaxOrthogonalDistance  the shortest side of cv2.boxPoints of that rectangle with
//                        its corners truncated to integers (np.int0)
//   LengthMajor/MinorDiameterThroughCentroid  size.width / size.height of cv2.fitEllipse (5 points
//                        or more, else 0): OpenCV gives width <= height, so "Major" is the SHORTER
//                        axis in the service's output; kept as is, the exports depend on it.
// The hull, the rectangle and the ellipse are computed from the outer ring only. When there are no
// holes, Compactness and Sphericity use P (= Pwh) and A. Coordinates are rounded to float32 first,
// as the service does (np.float32); everything else is computed in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace sluice::vision {

struct PolygonPoint {
  double x = 0, y = 0;
};
using Ring = std::vector<PolygonPoint>;

struct ShapeMetrics {
  double area = 0, perimeter = 0, perimeter_with_holes = 0, equivalent_diameter = 0, circularity = 0;
  double feret_diameter_max = 0, feret_diameter_max_orthogonal_distance = 0, feret_diameter_min = 0;
  double feret_aspect_ratio = 0;
  double length_major_diameter_through_centroid = 0, length_minor_diameter_through_centroid = 0;
  double compactness = 0, convexity = 0, solidity = 0, sphericity = 0, extent = 0;
  double bounding_box_width = 0, bounding_box_height = 0;
};

/// The metrics under the service's names, in its order (the fields of /api/calculate-metrics).
inline std::vector<std::pair<const char*, double>> named_metrics(const ShapeMetrics& m) {
  return {{"Area", m.area},
          {"Perimeter", m.perimeter},
          {"PerimeterWithHoles", m.perimeter_with_holes},
          {"EquivalentDiameter", m.equivalent_diameter},
          {"Circularity", m.circularity},
          {"FeretDiameterMax", m.feret_diameter_max},
          {"FeretDiameterMaxOrthogonalDistance", m.feret_diameter_max_orthogonal_distance},
          {"FeretDiameterMin", m.feret_diameter_min},
          {"FeretAspectRatio", m.feret_aspect_ratio},
          {"LengthMajorDiameterThroughCentroid", m.length_major_diameter_through_centroid},
          {"LengthMinorDiameterThroughCentroid", m.length_minor_diameter_through_centroid},
          {"Compactness", m.compactness},
          {"Convexity", m.convexity},
          {"Solidity", m.solidity},
          {"Sphericity", m.sphericity},
          {"Extent", m.extent},
          {"BoundingBoxWidth", m.bounding_box_width},
          {"BoundingBoxHeight", m.bounding_box_height}};
}

namespace detail {

inline std::vector<cv::Point2f> to_float_points(std::span<const PolygonPoint> ring) {
  std::vector<cv::Point2f> out;
  out.reserve(ring.size());
  for (const auto& p : ring) out.emplace_back(static_cast<float>(p.x), static_cast<float>(p.y));
  return out;
}

/// |signed area| of the closed ring (shoelace).
inline double ring_area(std::span<const cv::Point2f> ring) {
  if (ring.size() < 3) return 0.0;
  double twice = 0;
  for (std::size_t i = 0, j = ring.size() - 1; i < ring.size(); j = i++)
    twice += static_cast<double>(ring[j].x) * ring[i].y - static_cast<double>(ring[j].y) * ring[i].x;
  return std::abs(twice) * 0.5;
}

/// Length of the closed ring (the last point joins the first).
inline double ring_length(std::span<const cv::Point2f> ring) {
  if (ring.size() < 2) return 0.0;
  double sum = 0;
  for (std::size_t i = 0, j = ring.size() - 1; i < ring.size(); j = i++)
    sum += std::hypot(static_cast<double>(ring[i].x) - ring[j].x, static_cast<double>(ring[i].y) - ring[j].y);
  return sum;
}

}  // namespace detail

/// The service's metrics of `outer` with `holes` subtracted. Pure; needs at least 3 outer points
/// for a meaningful answer (fewer give zeros where the service's formulas do).
inline ShapeMetrics shape_metrics(std::span<const PolygonPoint> outer, std::span<const Ring> holes = {}) {
  constexpr double pi = std::numbers::pi;
  ShapeMetrics m;
  const std::vector<cv::Point2f> contour = detail::to_float_points(outer);
  if (contour.empty()) return m;

  const double outer_area = detail::ring_area(contour);
  m.perimeter = detail::ring_length(contour);
  double hole_area = 0, pwh = m.perimeter;
  for (const Ring& h : holes) {
    const auto hp = detail::to_float_points(h);
    hole_area += detail::ring_area(hp);
    pwh += detail::ring_length(hp);
  }
  m.perimeter_with_holes = pwh;

  std::vector<cv::Point2f> hull;
  cv::convexHull(contour, hull);
  const double hull_area = detail::ring_area(hull);
  const double hull_perimeter = detail::ring_length(hull);
  const cv::Rect bbox = cv::boundingRect(contour);
  m.bounding_box_width = bbox.width;
  m.bounding_box_height = bbox.height;
  const double bbox_area = static_cast<double>(bbox.width) * bbox.height;

  if (contour.size() >= 2) {
    const cv::RotatedRect rect = cv::minAreaRect(contour);
    m.feret_diameter_max = std::max(rect.size.width, rect.size.height);
    m.feret_diameter_min = std::min(rect.size.width, rect.size.height);
    m.feret_aspect_ratio = m.feret_diameter_min != 0 ? m.feret_diameter_max / m.feret_diameter_min : 0.0;
    cv::Point2f corners[4];
    rect.points(corners);
    double shortest = 0;
    for (int i = 0; i < 4; ++i) {
      // np.int0 truncates each corner toward zero before the side lengths are measured.
      const double dx = std::trunc(corners[i].x) - std::trunc(corners[(i + 1) % 4].x);
      const double dy = std::trunc(corners[i].y) - std::trunc(corners[(i + 1) % 4].y);
      const double side = std::sqrt(dx * dx + dy * dy);
      shortest = i == 0 ? side : std::min(shortest, side);
    }
    m.feret_diameter_max_orthogonal_distance = shortest;
  }
  if (contour.size() >= 5) {
    try {
      const cv::RotatedRect e = cv::fitEllipse(contour);
      // The service returns OpenCV's (width, height) as (major, minor); JSON cannot carry NaN.
      if (std::isfinite(e.size.width) && std::isfinite(e.size.height)) {
        m.length_major_diameter_through_centroid = e.size.width;
        m.length_minor_diameter_through_centroid = e.size.height;
      }
    } catch (const cv::Exception&) {
      // A degenerate outline: the service answers 0, 0 too.
    }
  }

  // Without holes the service keeps the outer area and perimeter (Pwh == P then).
  double area = outer_area;
  if (!holes.empty()) area = std::max(0.0, outer_area - hole_area);
  m.area = area;
  m.convexity = pwh > 0 ? hull_perimeter / pwh : 0.0;
  if (area > 0) {
    m.equivalent_diameter = std::sqrt(4 * area / pi);
    m.circularity = pwh > 0 ? std::min(1.0, 4 * pi * area / (pwh * pwh)) : 0.0;
    m.compactness = pwh * pwh / (4 * pi * area);
    m.sphericity = pwh > 0 ? pi * std::sqrt(4 * area / pi) / pwh : 0.0;
    m.solidity = hull_area > 0 ? area / hull_area : 0.0;
    m.extent = bbox_area > 0 ? area / bbox_area : 0.0;
  }
  return m;
}

}  // namespace sluice::vision
