// sluice/control/aimd.hpp: Clipper's additive-increase / multiplicative-decrease batch sizing. The
// batch size grows by a fixed step after each full batch whose latency stayed under the target, and
// is cut by a factor (10% by default) after a batch that went over it. A batch is dispatched as soon
// as a lane is idle (or after an optional queue delay), holding at most the current size.
#pragma once

#include <algorithm>
#include <cmath>

#include "sluice/core/batch_controller.hpp"
#include "sluice/core/error.hpp"

namespace sluice::control {

class Aimd {
 public:
  struct Options {
    Duration latency_target{};        ///< the batch latency SLO (required, > 0)
    double initial_batch_size = 1.0;
    double additive_step = 1.0;       ///< added after a full batch under the target
    double backoff = 0.10;            ///< share cut after a batch over the target (0 < backoff < 1)
    Duration max_queue_delay{};       ///< wait for a full batch at most this long (0: never wait)
  };

  explicit Aimd(Options options) : options_(options), size_(options.initial_batch_size) {
    if (options_.latency_target <= Duration::zero())
      throw Error(errc::invalid_argument, "aimd: latency_target must be > 0");
    if (!(options_.backoff > 0.0 && options_.backoff < 1.0))
      throw Error(errc::invalid_argument, "aimd: backoff must be in (0, 1)");
    if (!(options_.additive_step > 0.0) || !(options_.initial_batch_size >= 1.0))
      throw Error(errc::invalid_argument, "aimd: need additive_step > 0 and initial_batch_size >= 1");
    if (options_.max_queue_delay < Duration::zero())
      throw Error(errc::invalid_argument, "aimd: max_queue_delay must be >= 0");
  }

  /// The current target batch size (before the Batcher's cap).
  std::size_t batch_size() const { return static_cast<std::size_t>(std::floor(size_)); }

  Decision decide(const QueueState& q, TimePoint now) {
    cap_ = std::max<std::size_t>(1, q.max_batch_size);
    size_ = std::min(size_, static_cast<double>(cap_));  // never grow past what can run
    if (q.queued == 0 || q.idle_lanes == 0) return Decision::wait(kNever);
    const std::size_t target = std::min(batch_size(), cap_);
    if (q.queued >= target) return Decision::now(target);
    const TimePoint due = q.oldest_arrival + options_.max_queue_delay;
    if (options_.max_queue_delay == Duration::zero() || now >= due) return Decision::now(q.queued);
    return Decision::wait(due);
  }

  void observe(const BatchRecord& r) {
    if (r.out_of_memory) {
      size_ = std::max(1.0, static_cast<double>(r.batch_size) - 1.0);
      return;
    }
    if (!r.ok) return;
    if (r.run_time() > options_.latency_target) {
      size_ = std::max(1.0, size_ * (1.0 - options_.backoff));
    } else if (r.batch_size >= batch_size()) {
      // Only a full batch proves the current size is fast enough; a light load must not inflate it.
      size_ = std::min(size_ + options_.additive_step, static_cast<double>(cap_));
    }
  }

 private:
  Options options_;
  double size_;
  std::size_t cap_ = static_cast<std::size_t>(-1);
};

static_assert(BatchController<Aimd>);

}  // namespace sluice::control
