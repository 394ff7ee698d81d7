// sluice/control/fixed_batch.hpp: the Triton-like policy. Dispatch a full batch at once, a preferred
// size as soon as one is queued, and whatever is queued once the oldest item has waited the
// configured max queue delay. It never adapts; it is the baseline the adaptive controllers beat.
#pragma once

#include <algorithm>
#include <optional>

#include "sluice/core/batch_controller.hpp"

namespace sluice::control {

class FixedBatch {
 public:
  /// Optional overrides of the Batcher's configured max batch size and delay (never above its cap).
  struct Options {
    std::optional<std::size_t> max_batch_size;
    std::optional<Duration> max_queue_delay;
  };

  FixedBatch() = default;
  explicit FixedBatch(Options options) : options_(options) {}

  Decision decide(const QueueState& q, TimePoint now) const {
    const std::size_t cap = std::max<std::size_t>(1, std::min(q.max_batch_size, options_.max_batch_size.value_or(q.max_batch_size)));
    const Duration delay = options_.max_queue_delay.value_or(q.max_queue_delay);
    if (q.queued == 0) return Decision::wait(kNever);
    if (q.queued >= cap) return Decision::now(cap);
    // The largest preferred size that the queue already fills.
    for (auto it = q.preferred_batch_sizes.rbegin(); it != q.preferred_batch_sizes.rend(); ++it)
      if (*it <= q.queued && *it <= cap) return Decision::now(*it);
    const TimePoint due = q.oldest_arrival + delay;
    if (now >= due) return Decision::now(q.queued);
    return Decision::wait(due);
  }

  void observe(const BatchRecord&) {}

 private:
  Options options_;
};

static_assert(BatchController<FixedBatch>);

}  // namespace sluice::control
