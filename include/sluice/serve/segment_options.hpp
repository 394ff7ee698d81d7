// sluice/serve/segment_options.hpp: the options of one segmentation request -- model, threshold,
// detect_holes -- read from multipart form fields or query parameters, with the defaults and ranges
// of docs/http-api.md ("Uploads"). A bad value or an unknown field is a sluice::Error(errc::invalid_argument).
#pragma once

#include <charconv>
#include <cmath>
#include <string>
#include <string_view>
#include <system_error>

#include "sluice/core/error.hpp"
#include "sluice/serve/header_params.hpp"

namespace sluice::serve {

struct SegmentOptions {
  std::string model;        ///< empty: the server's default model
  double threshold = 0.5;   ///< strict `probability > threshold`, in [0.1, 0.9]
  bool detect_holes = true;
};

inline constexpr double kMinThreshold = 0.1;
inline constexpr double kMaxThreshold = 0.9;

/// A decimal number in [0.1, 0.9]; nothing else (no trailing garbage, no NaN, no inf).
inline double parse_threshold(std::string_view text) {
  const std::string_view s = detail::trim_ows(text);
  double value = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value, std::chars_format::general);
  if (s.empty() || ec != std::errc{} || ptr != s.data() + s.size() || !std::isfinite(value))
    throw Error(errc::invalid_argument, "threshold must be a number, got '" + std::string(s.substr(0, 64)) + "'");
  if (value < kMinThreshold || value > kMaxThreshold)
    throw Error(errc::invalid_argument,
                "threshold must be between 0.1 and 0.9, got " + std::string(s.substr(0, 64)));
  return value;
}

/// true/false, 1/0, yes/no, on/off (case-insensitive), as FastAPI's bool form fields.
inline bool parse_bool(std::string_view field, std::string_view text) {
  const std::string v = detail::to_lower(detail::trim_ows(text));
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  throw Error(errc::invalid_argument,
              std::string(field) + " must be true or false, got '" + std::string(text.substr(0, 64)) + "'");
}

/// Sets one option by field name; returns false for a name that is not an option.
inline bool apply_option(SegmentOptions& options, std::string_view name, std::string_view value) {
  if (name == "model") {
    const std::string_view m = detail::trim_ows(value);
    if (m.empty()) throw Error(errc::invalid_argument, "model must not be empty");
    if (m.size() > 128) throw Error(errc::invalid_argument, "model name longer than 128 characters");
    options.model = std::string(m);
  } else if (name == "threshold") {
    options.threshold = parse_threshold(value);
  } else if (name == "detect_holes") {
    options.detect_holes = parse_bool("detect_holes", value);
  } else {
    return false;
  }
  return true;
}

}  // namespace sluice::serve
