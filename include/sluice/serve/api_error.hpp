// sluice/serve/api_error.hpp: what a failed request answers -- an HTTP status, a stable error code,
// a message, and the JSON body `{"success": false, "error": code, "detail": message}` (FastAPI's
// `detail`, as FastAPI answers; docs/http-api.md, "Errors") -- and the mapping of sluice::errc onto it.
#pragma once

#include <optional>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include "sluice/core/error.hpp"
#include "sluice/core/utf8.hpp"
#include "sluice/serve/header_params.hpp"

namespace sluice::serve {

struct ApiError {
  unsigned status = 500;
  std::string code;     ///< machine-readable, e.g. "bad_request", "queue_full"
  std::string message;  ///< for humans
  std::optional<unsigned> retry_after_s;  ///< sets Retry-After (503)

  /// The message as a client reads it. It may quote client text (a file name, a field): it is made
  /// valid UTF-8 and clipped here, so that no answer can fail to serialise.
  std::string detail() const { return clip_utf8(message, 1024); }

  nlohmann::ordered_json to_json() const {
    return nlohmann::ordered_json{{"success", false}, {"error", code}, {"detail", detail()}, {"status", status}};
  }
  std::string body() const { return to_json().dump(); }

  static ApiError bad_request(std::string m) { return {400, "bad_request", std::move(m), std::nullopt}; }
  static ApiError not_found(std::string m) { return {404, "not_found", std::move(m), std::nullopt}; }
};

/// The HTTP answer to a request that completed with a sluice error (or any other error code).
inline ApiError api_error_from(std::error_code ec, unsigned retry_after_s = 1) {
  if (ec.category() == error_category()) {
    switch (static_cast<errc>(ec.value())) {
      case errc::queue_full: return {503, "queue_full", "the model's queue is full; retry later", retry_after_s};
      case errc::deadline_exceeded: return {504, "deadline_exceeded", "inference did not finish before the request's deadline", std::nullopt};
      case errc::cancelled: return {503, "cancelled", "the request was cancelled", retry_after_s};
      case errc::shutting_down: return {503, "shutting_down", "the server is shutting down", retry_after_s};
      case errc::out_of_memory: return {503, "out_of_memory", "the model ran out of memory even for one image", retry_after_s};
      case errc::invalid_argument: return {400, "invalid_image", "the image could not be processed", std::nullopt};
      case errc::model_failed: return {500, "model_failed", "inference failed", std::nullopt};
    }
  }
  return {500, "internal_error", ec.message(), std::nullopt};
}

}  // namespace sluice::serve
