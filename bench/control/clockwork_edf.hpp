// bench/control/clockwork_edf.hpp: a Clockwork-style predictive scheduler, written as a competitor
// for the controller comparison (not a library policy). It keeps a latency profile per batch size
// and batch key (the p99 of the last runs, control/latency_model.hpp), serves the queue in deadline
// order, and whenever a lane is idle dispatches the largest batch whose predicted completion meets
// the earliest deadline in it. Requests that cannot make their deadline even alone are dropped at
// once. It never waits on purpose: it is work-conserving, like Clockwork's per-GPU executor.
#pragma once

#include <algorithm>
#include <map>
#include <optional>

#include "sluice/control/latency_model.hpp"
#include "sluice/control/latency_table.hpp"
#include "sluice/core/batch_controller.hpp"

namespace sluice::bench {

class ClockworkEdf {
 public:
  struct Options {
    std::size_t max_batch_size = 0;              ///< 0: the Batcher's cap
    std::optional<control::LatencyTable> profile;  ///< the offline profile every key starts from
    control::LatencyModel::Options model{};
  };

  explicit ClockworkEdf(Options options) : options_(std::move(options)) {}

  Decision decide(const QueueState& q, TimePoint now) {
    if (q.queued == 0 || q.idle_lanes == 0) return Decision::wait(kNever);
    auto& m = model(q.key);
    std::size_t cap = q.max_batch_size;
    if (options_.max_batch_size > 0) cap = std::min(cap, options_.max_batch_size);
    cap = std::max<std::size_t>(1, std::min(cap, q.queued));
    if (m.empty()) return Decision::now(cap);
    // Deadline order equals queue order when every request has the same SLO; the head is earliest.
    const auto alone = m.estimate(1);
    if (alone && !q.deadlines.empty() && q.deadlines.front() != kNever && now + *alone > q.deadlines.front()) {
      // Drop every request that cannot finish even alone, then decide again on the rest.
      Decision d = Decision::wait(now);
      d.shed_deadline_before = now + *alone;
      return d;
    }
    const TimePoint head = q.deadlines.empty() ? kNever : q.deadlines.front();
    for (std::size_t b = cap; b > 1; --b) {
      const auto t = m.estimate(b);
      if (head == kNever || (t && now + *t <= head)) return Decision::now(b);
    }
    return Decision::now(1);
  }

  void observe(const BatchRecord& r) {
    if (r.ok && r.batch_size > 0) model(r.key).observe(r.batch_size, r.run_time());
  }

 private:
  control::LatencyModel& model(std::uint64_t key) {
    auto it = models_.find(key);
    if (it == models_.end()) {
      it = models_.emplace(key, control::LatencyModel(options_.model)).first;
      if (options_.profile) it->second.seed(*options_.profile);
    }
    return it->second;
  }

  Options options_;
  std::map<std::uint64_t, control::LatencyModel> models_;
};

static_assert(BatchController<ClockworkEdf>);

}  // namespace sluice::bench
