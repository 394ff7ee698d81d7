// sluice/serve/image_answer.hpp: the answer for one segmented image -- its result JSON with the
// timing fields the service's clients read, or its error -- shared by /segment and /batch-segment.
#pragma once

#include <system_error>

#include "sluice/serve/api_error.hpp"
#include "sluice/serve/model_service.hpp"

namespace sluice::serve {

/// The per-image result JSON (docs/formats.md) plus the timing fields of docs/http-api.md.
inline Json image_json(const SegmentOutcome& out, double processing_time) {
  Json j = out.result;
  j["success"] = true;
  j["processing_time"] = processing_time;
  j["inference_time"] = out.inference_time;
  j["preprocessing_time"] = out.preprocessing_time;
  j["batch_size_used"] = out.batch_size;
  const auto polygons = j.find("polygons");
  if (polygons == j.end() || polygons->empty()) j["warning"] = "no polygons found";
  return j;
}

/// The error answer of one failed image: the error code's answer with the model's detail.
inline ApiError image_error(std::error_code ec, const SegmentOutcome& out, unsigned retry_after_s) {
  ApiError e = api_error_from(ec, retry_after_s);
  if (!out.error_detail.empty()) e.message = out.error_detail;
  return e;
}

}  // namespace sluice::serve
