// sluice/serve/metrics_api.hpp: the bodies of POST /api/calculate-metrics and POST
// /api/disintegration-index -- JSON in, JSON out, with the spheroid service's field names
// (backend/segmentation/api/metrics_endpoint.py). Every malformed request is an ApiError 400 naming
// the field; the work a request can ask for is bounded by PolygonLimits.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/serve/api_error.hpp"
#include "sluice/vision/disintegration_index.hpp"
#include "sluice/vision/shape_metrics.hpp"

namespace sluice::serve {

struct PolygonLimits {
  std::size_t max_points = 1'000'000;           ///< vertices per request, all polygons together
  std::size_t max_polygons = 100'000;           ///< polygons (rings) per request
  double max_abs_coordinate = 1e7;              ///< |x|, |y|: keeps float32 and int32 conversions exact enough
  std::uint64_t max_di_pixels = 4096ull * 4096;  ///< image_width * image_height of a DI canvas
};

namespace detail {

using OJson = nlohmann::ordered_json;

/// Deepest bracket nesting of a JSON text (strings skipped): a body nested deeper than any valid
/// request is refused before the parser builds it.
inline std::size_t json_depth(std::string_view text) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    else if (ch == '[' || ch == '{') deepest = std::max(deepest, ++depth);
    else if ((ch == ']' || ch == '}') && depth > 0) --depth;
  }
  return deepest;
}

inline nlohmann::json parse_object(std::string_view body) {
  if (json_depth(body) > 8) throw ApiError::bad_request("the JSON body is nested deeper than a polygon request can be");
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) throw ApiError::bad_request("the body is not valid JSON");
  if (!j.is_object()) throw ApiError::bad_request("the body must be a JSON object");
  return j;
}

/// Reads rings as [[x, y], ...] and counts them against the limits.
class RingReader {
 public:
  explicit RingReader(const PolygonLimits& limits) : limits_(limits) {}

  vision::Ring ring(const nlohmann::json& j, const std::string& where) {
    if (!j.is_array()) throw ApiError::bad_request("'" + where + "' must be an array of [x, y] points");
    if (++polygons_ > limits_.max_polygons)
      throw ApiError::bad_request("more than " + std::to_string(limits_.max_polygons) + " polygons in one request");
    points_ += j.size();
    if (points_ > limits_.max_points)
      throw ApiError::bad_request("more than " + std::to_string(limits_.max_points) + " points in one request");
    vision::Ring out;
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      const auto& p = j[i];
      if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number())
        throw ApiError::bad_request("'" + where + "' point " + std::to_string(i) + " must be [x, y] with two numbers");
      const double x = p[0].get<double>(), y = p[1].get<double>();
      if (!std::isfinite(x) || !std::isfinite(y))
        throw ApiError::bad_request("'" + where + "' point " + std::to_string(i) + " is not finite");
      if (std::abs(x) > limits_.max_abs_coordinate || std::abs(y) > limits_.max_abs_coordinate)
        throw ApiError::bad_request("'" + where + "' point " + std::to_string(i) + " is outside +-" +
                                    std::to_string(static_cast<long long>(limits_.max_abs_coordinate)));
      out.push_back({x, y});
    }
    return out;
  }

  /// An optional list of rings (absent or null: none).
  std::vector<vision::Ring> rings(const nlohmann::json& obj, const std::string& key) {
    std::vector<vision::Ring> out;
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return out;
    if (!it->is_array()) throw ApiError::bad_request("'" + key + "' must be an array of polygons");
    for (std::size_t i = 0; i < it->size(); ++i) out.push_back(ring((*it)[i], key + "[" + std::to_string(i) + "]"));
    return out;
  }

 private:
  const PolygonLimits& limits_;
  std::size_t points_ = 0, polygons_ = 0;
};

inline int positive_int(const nlohmann::json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) throw ApiError::bad_request(std::string("missing field '") + key + "'");
  if (!it->is_number()) throw ApiError::bad_request(std::string("'") + key + "' must be an integer");
  const double v = it->get<double>();
  if (v != std::floor(v)) throw ApiError::bad_request(std::string("'") + key + "' must be an integer");
  if (v <= 0) throw ApiError::bad_request("image_width/image_height must be positive");
  if (v > 1e9) throw ApiError::bad_request(std::string("'") + key + "' is too large");
  return static_cast<int>(v);
}

}  // namespace detail

/// POST /api/calculate-metrics: {"contour": [[x, y], ...], "holes": [[[x, y], ...], ...]} -> the
/// service's MetricsResponse (Area, Perimeter, ... in its order).
inline nlohmann::ordered_json calculate_metrics_json(std::string_view body, const PolygonLimits& limits) {
  const nlohmann::json req = detail::parse_object(body);
  detail::RingReader reader(limits);
  const auto contour_it = req.find("contour");
  if (contour_it == req.end() || contour_it->is_null()) throw ApiError::bad_request("missing field 'contour'");
  const vision::Ring contour = reader.ring(*contour_it, "contour");
  if (contour.size() < 3) throw ApiError::bad_request("'contour' needs at least 3 points");
  const std::vector<vision::Ring> holes = reader.rings(req, "holes");
  for (std::size_t i = 0; i < holes.size(); ++i)
    if (holes[i].size() < 3) throw ApiError::bad_request("'holes[" + std::to_string(i) + "]' needs at least 3 points");
  const vision::ShapeMetrics m = vision::shape_metrics(contour, holes);
  nlohmann::ordered_json out = nlohmann::ordered_json::object();  // in the service's order
  for (const auto& [name, value] : vision::named_metrics(m)) out[name] = value;
  return out;
}

/// POST /api/disintegration-index: {"mask_polygons" | "mask_polygon", "core_polygons" |
/// "core_polygon", "image_width", "image_height", "pixel_size_um"?} -> the service's
/// DisintegrationResponse.
inline nlohmann::ordered_json disintegration_index_json(std::string_view body, const PolygonLimits& limits) {
  const nlohmann::json req = detail::parse_object(body);
  const int width = detail::positive_int(req, "image_width");
  const int height = detail::positive_int(req, "image_height");
  if (static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height) > limits.max_di_pixels)
    throw ApiError{413, "image_too_large",
                   "image_width x image_height is " + std::to_string(width) + " x " + std::to_string(height) +
                       ", more than the limit of " + std::to_string(limits.max_di_pixels) + " pixels",
                   std::nullopt};
  std::optional<double> um_per_px;
  if (const auto it = req.find("pixel_size_um"); it != req.end() && !it->is_null()) {
    if (!it->is_number()) throw ApiError::bad_request("'pixel_size_um' must be a number");
    um_per_px = it->get<double>();
  }
  detail::RingReader reader(limits);
  // The plural field wins when it is non-empty; the singular one is the service's older form.
  auto polygons = [&](const char* plural, const char* singular) {
    std::vector<vision::Ring> out = reader.rings(req, plural);
    if (out.empty())
      if (const auto it = req.find(singular); it != req.end() && !it->is_null()) out.push_back(reader.ring(*it, singular));
    return out;
  };
  const std::vector<vision::Ring> mask = polygons("mask_polygons", "mask_polygon");
  if (mask.empty()) throw ApiError::bad_request("At least one of mask_polygons / mask_polygon is required");
  const std::vector<vision::Ring> cores = polygons("core_polygons", "core_polygon");

  const vision::DisintegrationResult r =
      vision::disintegration_index(vision::compose_di_mask(width, height, mask, cores), um_per_px);
  auto opt = [](const auto& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr); };
  return {{"di", r.di},
          {"w1", r.w1},
          {"reference", r.reference},
          {"n_pixels", r.n_pixels},
          {"source", "polygons"},
          {"algorithm", vision::DisintegrationConstants::kAlgorithm},
          {"algorithm_sha256", vision::DisintegrationConstants::kAlgorithmSha256},
          {"note", r.note},
          {"index_b", opt(r.index_b)},
          {"reach_p90", opt(r.reach_p90)},
          {"n_fragments", opt(r.n_fragments)},
          {"largest_fragment_frac", opt(r.largest_fragment_frac)},
          {"solidity", opt(r.solidity)},
          {"area_core_px", opt(r.area_core_px)},
          {"area_corona_px", opt(r.area_corona_px)},
          {"area_total_px", opt(r.area_total_px)},
          {"n_core_components", opt(r.n_core_components)},
          {"largest_core_component_frac", opt(r.largest_core_component_frac)},
          {"core_centroid_shift", opt(r.core_centroid_shift)},
          {"core_fragmented", opt(r.core_fragmented)},
          {"unvalidated_regime", opt(r.unvalidated_regime)},
          {"below_validated_regime", opt(r.below_validated_regime)},
          {"warnings", r.warnings}};
}

}  // namespace sluice::serve
