// sluice/serve/api_limits.hpp: the limits of the HTTP API (Api) that need a request's content --
// files and pixels per request, the memory budget of request bytes, deadlines -- and their checks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"
#include "sluice/serve/memory_budget.hpp"
#include "sluice/serve/metrics_api.hpp"
#include "sluice/serve/multipart.hpp"

namespace sluice::serve {

struct ApiLimits {
  std::uint64_t max_pixels = 200'000'000;  ///< per image, read from its header before decoding
  std::size_t max_files = 256;                     ///< per batch-segment request
  /// Deadline of each image in the Batcher; zero: none.
  Duration request_timeout = std::chrono::seconds(60);
  unsigned retry_after_s = 1;                      ///< Retry-After of 503 answers
  /// Request bytes held at once (bodies being read and parsed, images decoded and queued).
  std::size_t memory_budget_bytes = default_memory_budget_bytes();
  MultipartLimits multipart{};
  PolygonLimits polygons{};  ///< /api/calculate-metrics and /api/disintegration-index
  /// Threads for those two endpoints, so that a large canvas does not hold up the connections'
  /// threads (health checks included); 0 computes them inside handle().
  unsigned metrics_threads = 1;

  /// Throws sluice::Error(errc::invalid_argument) naming the first limit that makes every request fail.
  void validate() const {
    if (max_pixels == 0) throw Error(errc::invalid_argument, "max_pixels must be positive");
    if (max_files == 0) throw Error(errc::invalid_argument, "max_files must be positive");
    if (request_timeout < Duration::zero()) throw Error(errc::invalid_argument, "the request timeout (deadline_ms) must be >= 0");
    if (memory_budget_bytes == 0) throw Error(errc::invalid_argument, "memory_budget_bytes must be positive");
  }
};

}  // namespace sluice::serve
