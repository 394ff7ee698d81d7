// sluice/batching/batcher_config.hpp: the plain values a Batcher is configured and called with:
// BatcherConfig (limits, lanes, CPU stages), SubmitOptions (priority, deadline) and StopMode.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/clock.hpp"

namespace sluice {

struct BatcherConfig {
  std::size_t max_batch_size = 32;
  std::vector<std::size_t> preferred_batch_sizes;  ///< ascending, each <= max_batch_size
  Duration max_queue_delay = std::chrono::milliseconds(1);
  std::size_t max_queue_size = 4096;  ///< queued items (not running ones); beyond: queue_full
  std::size_t lanes = 1;              ///< batches that run at once, each on a lane thread
  std::size_t priority_levels = 1;    ///< priorities 0 .. levels-1, higher served first
  /// Threads of the CPU pool that runs a staged model's prepare/finish (0: run them on the lane).
  std::size_t cpu_threads = 1;
  /// Optional cap: with a MemoryAwareBatchModel, the largest n with memory_for(n) <= this.
  std::optional<std::size_t> memory_limit_bytes;
  std::string model_name = "model";  ///< the `model` label of the metrics
  /// An idle lane spins this long for the next batch before it sleeps: lower latency at light
  /// load, for a core kept busy meanwhile. 0 (the default): sleep at once.
  Duration lane_spin{};
};

struct SubmitOptions {
  std::size_t priority = 0;
  TimePoint deadline = kNever;        ///< absolute; kNever: none
  std::optional<Duration> timeout;    ///< relative to submission; the earlier of the two wins
  /// Optional: receives the model's failure message when the request completes with model_failed
  /// (std::error_code cannot carry text). Must stay alive until the completion runs.
  std::string* error_message = nullptr;

  /// The absolute deadline of a request submitted at `now`: the earlier of the two.
  TimePoint deadline_at(TimePoint now) const {
    if (!timeout) return deadline;
    const TimePoint t = (*timeout >= kNever - now) ? kNever : now + *timeout;
    return std::min(deadline, t);
  }
};

enum class StopMode {
  drain,   ///< finish every queued request, then stop
  cancel,  ///< complete every queued request with shutting_down at once
};

}  // namespace sluice
