// tests/support/control_test_util.hpp: a manual clock and queue-state builder for controller tests.
#pragma once

#include <chrono>
#include <vector>

#include "sluice/core/batch_controller.hpp"

namespace sluice::control::test {

using std::chrono::milliseconds;

/// A fixed origin far from the epoch, so that "now - something" never underflows.
inline TimePoint t0() { return TimePoint{} + std::chrono::hours(1000); }
inline TimePoint at_ms(double ms) {
  return t0() + std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}
inline Duration ms(double v) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(v));
}
inline double to_ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

/// Owns the deadline storage a QueueState spans over.
struct Queue {
  std::vector<TimePoint> deadlines;
  std::size_t max_batch_size = 64;
  std::size_t idle_lanes = 1;
  std::size_t busy_lanes = 0;
  TimePoint oldest = t0();

  QueueState state() const {
    QueueState q;
    q.queued = deadlines.size();
    q.total_queued = deadlines.size();
    q.max_batch_size = max_batch_size;
    q.oldest_arrival = oldest;
    q.deadlines = std::span<const TimePoint>(deadlines.data(), std::min(deadlines.size(), max_batch_size));
    q.earliest_deadline = kNever;
    for (auto d : q.deadlines) q.earliest_deadline = std::min(q.earliest_deadline, d);
    q.idle_lanes = idle_lanes;
    q.busy_lanes = busy_lanes;
    return q;
  }
};

inline BatchRecord record(std::size_t n, TimePoint start, Duration run) {
  BatchRecord r;
  r.batch_size = n;
  r.started = start;
  r.finished = start + run;
  return r;
}

}  // namespace sluice::control::test
