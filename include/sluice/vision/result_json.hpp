// sluice/vision/result_json.hpp: a Segmentation as the result JSON, field for field and in its
// documented order (docs/formats.md, "Segmentation result JSON").
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "sluice/vision/postprocess.hpp"

namespace sluice::vision {

/// What the result reports beside the polygons.
struct ResultInfo {
  std::string model_used;
  std::string device = "cpu";
  std::size_t batch_size = 1;
  std::size_t batch_position = 0;
};

inline std::string polygon_id(std::size_t index) { return "polygon_" + std::to_string(index + 1); }

/// ordered_json keeps the documented field order (plain json would sort the keys).
inline nlohmann::ordered_json to_json(const Segmentation& seg, const ResultInfo& info) {
  using nlohmann::ordered_json;
  ordered_json polygons = ordered_json::array();
  for (std::size_t i = 0; i < seg.polygons.size(); ++i) {
    const Polygon& p = seg.polygons[i];
    ordered_json points = ordered_json::array();
    for (const cv::Point& pt : p.points)
      points.push_back(ordered_json{{"x", static_cast<double>(pt.x)}, {"y", static_cast<double>(pt.y)}});
    ordered_json poly{{"id", polygon_id(i)},
                      {"points", std::move(points)},
                      {"type", p.internal ? "internal" : "external"},
                      {"class", "spheroid"},
                      {"confidence", static_cast<double>(seg.confidence)},
                      {"vertices_count", p.points.size()}};
    if (p.internal && p.parent >= 0) poly["parent_id"] = polygon_id(static_cast<std::size_t>(p.parent));
    polygons.push_back(std::move(poly));
  }
  return ordered_json{
      {"model_used", info.model_used},
      {"threshold_used", seg.threshold},
      {"image_size", ordered_json{{"width", seg.image_size.width}, {"height", seg.image_size.height}}},
      {"polygons", std::move(polygons)},
      {"processing_info", ordered_json{{"device", info.device},
                                       {"num_polygons", seg.polygons.size()},
                                       {"batch_size", info.batch_size},
                                       {"batch_position", info.batch_position}}}};
}

}  // namespace sluice::vision
