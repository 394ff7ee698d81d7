// sluice/control/slo_controller.hpp: the controller sluice recommends. It keeps an online latency
// model of the lane (control/latency_model.hpp), reads every queued request's deadline and decides
// per dispatch how many to take and how long to wait:
//   * the batches are planned over the visible queue so that as many requests as possible finish by
//     their deadline at the model's quantile (p99 by default), then as many at the median, then for
//     the shortest total run time (the most efficient split, e.g. 2+2 rather than 4 where batch 4
//     has worse throughput);
//   * it waits only while the expected arrivals would raise the lane's throughput (items per second
//     of wait + run) and the wait still leaves the head its run time -- so it dispatches at the last
//     safe moment at the latest;
//   * it never takes more than the memory-safe size (its option, the Batcher's cap, and one less than
//     any batch size that ran out of memory);
//   * under overload it sheds queued requests that cannot finish in time even if served alone next
//     (Decision::shed_deadline_before) and rejects at admission those that cannot finish in time behind
//     the queue even at the best throughput (admit()). "Cannot" is judged at an optimistic quantile of
//     the latency (p5 by default; for a request alone on an idle lane, the fastest recent run): a
//     request with a fair chance is served, one without is dropped as early as possible, at
//     admission, before it takes lane time from others; a head request that misses at the p99 is
//     also dropped early when serving it would make the ones behind it miss (plan_with_early_drop);
//   * it keeps one latency model per batch key (QueueState::key, BatchRecord::key), so a mix of input
//     sizes does not blur the sizes' latencies into one; a new key starts from the calibration.
// The model rescales itself when the lane's speed changes for good (control/change_detector.hpp).
// Assumption about the Batcher: shedding is applied before the dispatched batch is formed.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "sluice/control/latency_model.hpp"
#include "sluice/control/latency_table.hpp"
#include "sluice/core/batch_controller.hpp"
#include "sluice/core/error.hpp"

namespace sluice::control {

class SloController {
 public:
  struct Options {
    std::size_t max_batch_size = 0;         ///< memory-safe size (0: only the Batcher's cap)
    LatencyModel::Options model{};          ///< model.quantile is the SLO's quantile (p99)
    std::optional<LatencyTable> calibration;  ///< per-batch-size latencies to start from
    bool shed = true;                       ///< drop queued requests that can no longer make it
    bool admission = true;                  ///< admit() rejects requests that cannot make it
    std::optional<Duration> max_wait;       ///< upper bound of any deliberate wait
    double min_gain = 0.10;                 ///< waiting must raise throughput by at least this share
    std::size_t rate_window = 32;           ///< arrivals used to estimate the arrival rate
    /// The latency quantile at which a request is judged hopeless (shed, or rejected at admission).
    double hopeless_quantile = 0.05;
    bool per_key_models = true;             ///< one latency model per batch key (else one for all)
    /// Drop head requests that miss even alone at the SLO quantile when that lets later ones meet
    /// theirs (see plan_with_early_drop).
    bool early_drop = true;
    /// A request alone in the queue of an idle lane is shed only when it misses even at the lane's
    /// fastest recent run (quantile 0), not at the hopeless quantile, when that run is more than
    /// 10% faster than the p5: serving it takes lane time from nobody waiting, and a real CPU
    /// lane's p5 is too high while a slow spell fills the window.
    bool serve_lone_request = true;
  };

  SloController() : SloController(Options{}) {}
  explicit SloController(Options options) : options_(std::move(options)) {
    if (options_.rate_window < 2) throw Error(errc::invalid_argument, "slo controller: rate_window < 2");
    if (!(options_.hopeless_quantile > 0.0 && options_.hopeless_quantile <= 0.5))
      throw Error(errc::invalid_argument, "slo controller: hopeless_quantile must be in (0, 0.5]");
    if (!(options_.min_gain >= 0.0)) throw Error(errc::invalid_argument, "slo controller: min_gain < 0");
    if (options_.max_wait && *options_.max_wait < Duration::zero())
      throw Error(errc::invalid_argument, "slo controller: max_wait < 0");
    model_for(0);
    if (options_.max_batch_size > 0) memory_cap_ = options_.max_batch_size;
  }

  /// The latency model of batch key 0 (the only one unless requests carry batch keys).
  const LatencyModel& model() const { return models_.at(0); }
  /// The latency model of `key`, or nullptr when no batch of that key was seen yet.
  const LatencyModel* model(std::uint64_t key) const {
    const auto it = models_.find(options_.per_key_models ? key : 0);
    return it == models_.end() ? nullptr : &it->second;
  }
  /// The largest batch this controller will ask for (memory-safe size, lowered by out-of-memory runs).
  std::size_t memory_cap() const { return memory_cap_; }

  /// Arrivals per second seen lately (0 when unknown); decays while nothing arrives.
  double arrival_rate(TimePoint now) const {
    if (arrivals_.size() < 2 || now <= arrivals_.front()) return 0.0;
    return static_cast<double>(arrivals_.size()) / seconds(now - arrivals_.front());
  }

  Decision decide(const QueueState& q, TimePoint now) {
    note_arrivals(q, now);
    if (q.busy_lanes == 0) in_flight_.clear();
    if (q.queued == 0) return Decision::wait(kNever);
    const std::size_t cap = effective_cap(q);
    LatencyModel& m = model_for(q.key);
    if (m.empty()) {  // cold start: nothing to plan with, serve what is there
      if (q.idle_lanes == 0) return Decision::wait(kNever);
      return dispatch(std::min(q.queued, cap), now, m);
    }
    fill_estimates(cap, m);

    // Times are ns relative to now, as doubles, so that kNever does not overflow.
    const std::size_t visible_n = std::min(q.queued, cap);
    const double lane_free = q.idle_lanes > 0 ? 0.0 : earliest_lane_free(now);
    Decision d = Decision::wait(kNever);

    // 1. Hopeless: cannot finish by the deadline even alone in the next batch, at the optimistic
    // quantile (serving it would only take lane time from requests that can still make it).
    double hopeless_before = lane_free + opt_[1];
    if (options_.serve_lone_request && q.idle_lanes > 0 && q.total_queued == 1 && visible_n == 1) {
      // Only where the window holds two levels (its fastest run clearly below its p5: a spell
      // and the lane's own speed), not the few per cent of one level's steady noise.
      const double fastest = ns(m.estimate_q(1, 0.0));
      if (fastest < opt_[1] * (1.0 - kTwoLevels)) hopeless_before = fastest;
    }
    std::vector<double> deadlines;
    deadlines.reserve(visible_n);
    std::size_t shed = 0;
    for (std::size_t i = 0; i < visible_n; ++i) {
      const double dl = i < q.deadlines.size() ? relative(q.deadlines[i], now) : kInf;
      // After kStarvedAfter decisions in a row that shed everything, an idle lane serves the last
      // request rather than shed it: a model that judges everything hopeless would otherwise never
      // see another batch and never learn that it was wrong.
      const bool last_on_idle_lane = q.idle_lanes > 0 && i + 1 == visible_n && q.total_queued == visible_n &&
                                     deadlines.empty() && all_shed_in_a_row_ >= kStarvedAfter;
      if (options_.shed && dl < hopeless_before && !last_on_idle_lane) {
        ++shed;
        continue;
      }
      deadlines.push_back(dl);
    }
    if (shed > 0) {
      d.shed_deadline_before = now + to_duration(hopeless_before);
      // The kept last request may itself be hopeless: shed only what is due before it.
      for (const double dl : deadlines) d.shed_deadline_before = std::min(d.shed_deadline_before, now + to_duration(dl));
    }
    removed_ = shed;
    if (q.idle_lanes > 0 && deadlines.empty()) ++all_shed_in_a_row_;
    if (q.idle_lanes == 0) return d;
    if (deadlines.empty()) {
      // Everything visible goes; ask again at once if more is queued behind it.
      if (q.queued > visible_n) d.wait_until = now;
      return d;
    }

    // 2. Plan the visible queue; dispatch the plan's first batch. Head requests that miss even
    // alone at the SLO quantile are dropped now when serving them would make later ones miss.
    std::size_t early = 0;
    const std::size_t first = plan_with_early_drop(deadlines, cap, q.total_queued > visible_n,
                                                   q.total_queued > std::max(q.queued, visible_n), early);
    all_shed_in_a_row_ = early == deadlines.size() ? all_shed_in_a_row_ + 1 : 0;
    if (early > 0) {
      const TimePoint cut = now + to_duration(early_latest_) + Duration(1);
      d.shed_deadline_before = std::max(d.shed_deadline_before, cut);
      shed += early;
      removed_ = shed;
      deadlines.erase(deadlines.begin(), deadlines.begin() + static_cast<std::ptrdiff_t>(early));
    }
    if (shed > 0) {
      // The Batcher sheds, then asks again; the dispatch is only its fallback. Not remembered as
      // in flight: the batch asked for after the shed is.
      d.dispatch = first;
      return d;
    }

    // 3. The plan takes everything there is in one batch: would waiting for more pay?
    const bool whole_queue = first == deadlines.size() && q.queued == deadlines.size();
    if (whole_queue && first < cap) {
      if (const auto until = worth_waiting(deadlines, first, cap, now)) {
        d.wait_until = *until;
        return d;
      }
    }
    d.dispatch = first;
    remember_dispatch(first, now, m);
    return d;
  }

  /// Rejects a new request whose deadline cannot be met behind the current queue even if the lane
  /// ran at its best throughput with optimistic (hopeless_quantile) latencies, the running batch
  /// ended as early as it plausibly can, and the queued requests that are hopeless themselves (they
  /// will be shed, not served) took no lane time.
  bool admit(const QueueState& q, TimePoint deadline, TimePoint now) {
    LatencyModel& m = model_for(q.key);
    if (!options_.admission || deadline == kNever || m.empty()) {
      note_arrival(now);
      ++admitted_;
      return true;
    }
    const std::size_t cap = effective_cap(q);
    fill_estimates(cap, m);
    const double lanes = static_cast<double>(std::max<std::size_t>(1, q.idle_lanes + q.busy_lanes));
    const double lane_free = q.idle_lanes > 0 ? 0.0 : earliest_lane_free(now, /*optimistic=*/true);
    // Lane time per item at the best throughput, spread over the lanes: for this key, and for the
    // other keys' queued requests, whose sizes are unknown here, the cheapest key's (optimism is
    // the safe side of a rejection).
    const double per_item = optimistic_per_item(cap) / lanes;
    const double other_per_item = cheapest_per_item(q.key, cap, per_item * lanes) / lanes;
    double t = lane_free;
    std::size_t visible = 0;
    // A request ahead that misses even alone right after the running batch, at the SLO quantile,
    // does not count: it is hopeless and shed, or dropped early for the sake of the ones behind
    // it (this one among them) when it would make them miss (plan_with_early_drop).
    const double early_drop_alone = options_.early_drop ? est_[1] : opt_[1];
    for (const TimePoint dl : q.deadlines) {  // this key's head, in dispatch order
      ++visible;
      if (lane_free + early_drop_alone <= relative(dl, now)) t += per_item;
    }
    const std::size_t same_key = std::min(q.queued, q.total_queued);
    t += static_cast<double>(same_key > visible ? same_key - visible : 0) * per_item;
    t += static_cast<double>(q.total_queued - same_key) * other_per_item;
    const double done = std::max(lane_free + opt_[1], t + per_item);
    if (done > relative(deadline, now)) return false;
    note_arrival(now);  // exact arrival times where the Batcher asks us; decide() counts the rest
    ++admitted_;
    return true;
  }

  void observe(const BatchRecord& r) {
    forget_dispatch(r);
    if (r.batch_size == 0) return;
    if (r.out_of_memory) {
      memory_cap_ = std::min(memory_cap_, std::max<std::size_t>(1, r.batch_size - 1));
      return;
    }
    if (r.ok) model_for(r.key).observe(r.batch_size, r.run_time());
  }

 private:
  static constexpr double kInf = std::numeric_limits<double>::infinity();

  struct InFlight {
    TimePoint started;
    std::size_t size;
    TimePoint expected_end;  ///< at the median latency
    TimePoint earliest_end;  ///< at the optimistic (hopeless_quantile) latency
  };

  static double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
  static double relative(TimePoint t, TimePoint now) {
    if (t == kNever) return kInf;
    return std::chrono::duration<double, std::nano>(t - now).count();
  }
  static Duration to_duration(double ns) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::nano>(ns));
  }

  std::size_t effective_cap(const QueueState& q) const {
    return std::max<std::size_t>(
        1, std::min({q.max_batch_size, memory_cap_, options_.model.max_batch_size}));
  }

  LatencyModel& model_for(std::uint64_t key) {
    if (!options_.per_key_models) key = 0;
    auto it = models_.find(key);
    if (it == models_.end()) {
      // A bounded number of keys: beyond it, unknown keys share key 0's model (a stranger sending
      // ever new input sizes must not grow the controller without bound).
      if (models_.size() >= kMaxKeys) return models_.at(0);
      it = models_.emplace(key, LatencyModel(options_.model)).first;
      if (options_.calibration) it->second.seed(*options_.calibration);
    }
    return it->second;
  }

  // est_[k]: the SLO quantile of a batch of k; typ_[k]: its median; opt_[k]: its optimistic
  // (hopeless_quantile) latency (ns).
  void fill_estimates(std::size_t cap, const LatencyModel& m) {
    est_.assign(cap + 1, 0.0);
    typ_.assign(cap + 1, 0.0);
    opt_.assign(cap + 1, 0.0);
    for (std::size_t k = 1; k <= cap; ++k) {
      est_[k] = ns(m.estimate(k));
      typ_[k] = std::min(est_[k], ns(m.typical(k)));
      opt_[k] = std::min(typ_[k], ns(m.estimate_q(k, options_.hopeless_quantile)));
    }
  }
  // The least lane time per item over the batch sizes at the optimistic latencies (after fill_estimates).
  double optimistic_per_item(std::size_t cap) const {
    double best = opt_[1];
    for (std::size_t k = 2; k <= cap; ++k) best = std::min(best, opt_[k] / static_cast<double>(k));
    return best;
  }

  // optimistic_per_item over every key's model (`own`: that of `key`, already known). Cached per
  // model until it sees another batch; at most kMaxKeys models.
  double cheapest_per_item(std::uint64_t key, std::size_t cap, double own) {
    double best = own;
    if (models_.size() < 2) return best;
    for (auto& [k, model] : models_) {
      if (k == key || model.empty()) continue;
      PerItem& c = per_item_[k];
      if (c.observations != model.observations() || c.changes != model.changes_detected() || c.cap != cap || !c.valid) {
        double v = kInf;
        for (std::size_t n = 1; n <= cap; ++n) {
          const double typ = ns(model.typical(n)), o = std::min(typ, ns(model.estimate_q(n, options_.hopeless_quantile)));
          v = std::min(v, o / static_cast<double>(n));
        }
        c = {model.observations(), model.changes_detected(), cap, v, true};
      }
      best = std::min(best, c.value);
    }
    return best;
  }

  static double ns(std::optional<Duration> d) {
    return d ? std::chrono::duration<double, std::nano>(*d).count() : kInf;
  }

  // Early drop: a request at the head that the plan misses at the SLO quantile (it cannot make it
  // even alone, or the plan gives it up for the ones behind it) still takes lane time from those
  // behind it when served. Dropping it now rather than serving it late pays when the plan for the
  // rest then meets more deadlines at the median finish times (the likely count: a dropped request
  // is a sure miss, a served one with a fair chance is not) or, as many there, at the SLO quantile.
  // Tried for every such prefix that can be shed by deadline alone (its latest deadline is before
  // every later one); ties keep the requests. Returns the first batch of the chosen plan, and the
  // prefix in `early`.
  // With requests waiting that the plan cannot see (`others_waiting`: other batch keys, or this
  // key's beyond the visible head), the requests at the head that miss even alone at the SLO
  // quantile (at the median, when that is every visible one and no other key waits) are dropped
  // outright: their lane time is the others' wait (but after kStarvedAfter decisions in a row that
  // dropped everything visible, the last one is served).
  std::size_t plan_with_early_drop(const std::vector<double>& deadlines, std::size_t cap, bool others_waiting,
                                   bool other_keys_waiting, std::size_t& early) {
    early = 0;
    early_latest_ = 0.0;
    const std::size_t r = deadlines.size();
    if (options_.early_drop && options_.shed && others_waiting) {
      // When nothing visible makes it even alone at the SLO quantile (a lane slowed down so far that
      // its p99 nears the SLO) and only this key waits behind, that quantile would drop every
      // request: then only those that miss alone at the median go, and the plan serves the ones
      // with a fair chance. (Other keys waiting may be cheaper and make it: the p99 rule stays.)
      const auto misses_alone_before = [&](double t) {
        std::size_t n = 0;
        while (n < r && deadlines[n] < t) ++n;
        return n;
      };
      std::size_t j = misses_alone_before(est_[1]);
      if (j == r && !other_keys_waiting) j = misses_alone_before(typ_[1]);
      double latest = -kInf;
      for (std::size_t x = 0; x < j; ++x) latest = std::max(latest, deadlines[x]);
      // A key whose model is too slow would otherwise never run again and never learn it.
      if (j == r && all_shed_in_a_row_ >= kStarvedAfter) {
        --j;
        latest = -kInf;
        for (std::size_t x = 0; x < j; ++x) latest = std::max(latest, deadlines[x]);
      }
      if (j > 0 && (j == r || latest < *std::min_element(deadlines.begin() + static_cast<std::ptrdiff_t>(j), deadlines.end()))) {
        early = j;
        early_latest_ = latest;
        return j == r ? 1 : plan_first_batch(deadlines, j, cap);
      }
    }
    std::size_t first = plan_first_batch(deadlines, 0, cap);
    if (!options_.early_drop || !options_.shed) return first;
    std::size_t best_likely = likely_[r], best = on_time_[r];
    const double missed_before = std::max(est_[1], est_[first]);
    double latest = -kInf;
    for (std::size_t j = 1; j < r && deadlines[j - 1] < missed_before; ++j) {
      latest = std::max(latest, deadlines[j - 1]);
      if (!(latest < *std::min_element(deadlines.begin() + static_cast<std::ptrdiff_t>(j), deadlines.end()))) continue;
      const std::size_t f = plan_first_batch(deadlines, j, cap);
      // On a tie at the median, more met at the p99 decides -- unless the tail is wide (the p99
      // more than 10% above the median: a real CPU lane's, 1.3-1.5x) and a dropped request would
      // make it at the median served alone now: a likely success is not given up for the wide
      // tail of another (measured, the trade lost more requests than it saved). On narrow noise
      // the median and the p99 agree, and the p99 is a fair tie-break.
      const bool tie_may_drop = latest < typ_[1] || est_[1] <= typ_[1] * (1.0 + kWideTail);
      if (likely_[r - j] > best_likely ||
          (likely_[r - j] == best_likely && on_time_[r - j] > best && tie_may_drop)) {
        best_likely = likely_[r - j];
        best = on_time_[r - j];
        early = j;
        first = f;
        early_latest_ = latest;
      }
    }
    return first;
  }

  // Dynamic programme over prefixes of the visible queue from `from` on (dispatch order is fixed):
  // the split into consecutive batches that meets the most deadlines, then ends soonest. Returns
  // the first batch; on_time_[deadlines.size() - from] holds how many the plan meets.
  std::size_t plan_first_batch(const std::vector<double>& all, std::size_t from, std::size_t cap) {
    // Deadlines are checked against the SLO-quantile finish times; among plans that meet as many,
    // the one that meets the most at the median finish times (a plan that gives up the head to
    // save the one behind it serves the head late for certain, where serving both one by one
    // misses the second only in the tail), then the one with the least total median run time
    // (the quantiles are noisier than medians and would otherwise drown the few per cent that
    // separate batch sizes). Batches run back to back, so the median finish is the median work.
    const std::span<const double> deadlines(all.data() + from, all.size() - from);
    const std::size_t r = deadlines.size();
    on_time_.assign(r + 1, 0);
    likely_.assign(r + 1, 0);
    finish_.assign(r + 1, kInf);
    work_.assign(r + 1, kInf);
    choice_.assign(r + 1, 0);
    finish_[0] = 0.0;
    work_[0] = 0.0;
    for (std::size_t i = 1; i <= r; ++i) {
      double head = kInf;  // earliest deadline of the candidate batch (j, i]
      for (std::size_t k = 1; k <= std::min(i, cap); ++k) {
        const std::size_t j = i - k;
        head = std::min(head, deadlines[j]);
        const double end = finish_[j] + est_[k];
        const double work = work_[j] + typ_[k];
        std::size_t met = k, met_median = k;
        if (head < end) {
          met = 0;
          for (std::size_t x = j; x < i; ++x) met += deadlines[x] >= end ? 1 : 0;
        }
        if (head < work) {
          met_median = 0;
          for (std::size_t x = j; x < i; ++x) met_median += deadlines[x] >= work ? 1 : 0;
        }
        const std::size_t total = on_time_[j] + met, likely = likely_[j] + met_median;
        const bool better = choice_[i] == 0 || total > on_time_[i] ||
                            (total == on_time_[i] && (likely > likely_[i] ||
                                                      (likely == likely_[i] && work < work_[i] * (1 - 1e-9))));
        if (better) {
          on_time_[i] = total;
          likely_[i] = likely;
          finish_[i] = end;
          work_[i] = work;
          choice_[i] = k;
        }
      }
    }
    std::size_t i = r, first = r;
    while (i > 0) {
      first = choice_[i];
      i -= choice_[i];
    }
    return first;
  }

  // Waiting for j more arrivals (expected j / rate) pays when the lane's throughput over wait + run
  // beats running the n queued now, and the head still has its run time left afterwards.
  std::optional<TimePoint> worth_waiting(const std::vector<double>& deadlines, std::size_t n,
                                         std::size_t cap, TimePoint now) const {
    const double rate = arrival_rate(now) * 1e-9;  // per ns
    if (rate <= 0.0) return std::nullopt;
    const double head = *std::min_element(deadlines.begin(), deadlines.end());
    const double now_rate = static_cast<double>(n) / typ_[n];
    const double max_wait = options_.max_wait ? relative(now + *options_.max_wait, now) : kInf;
    for (std::size_t target = n + 1; target <= cap; ++target) {
      const double wait = static_cast<double>(target - n) / rate;
      if (wait > max_wait || wait + est_[target] > head) break;
      if (static_cast<double>(target) / (wait + typ_[target]) > now_rate * (1.0 + options_.min_gain)) {
        // Re-decide when the expected arrivals are due; never past the last safe start for n.
        const double last_safe = head - est_[n];
        return now + to_duration(std::max(0.0, std::min(wait, last_safe)));
      }
    }
    return std::nullopt;
  }

  // Arrivals the queue grew by since the last decide() that admit() did not already record (a
  // Batcher may call decide() only when a lane is free, so these get the time of this call).
  void note_arrivals(const QueueState& q, TimePoint now) {
    const std::size_t expected = last_total_ > removed_ ? last_total_ - removed_ : 0;
    const std::size_t grown = q.total_queued > expected ? q.total_queued - expected : 0;
    for (std::size_t i = std::min(grown, admitted_); i < grown; ++i) note_arrival(now);
    last_total_ = q.total_queued;
    removed_ = 0;
    admitted_ = 0;
  }
  void note_arrival(TimePoint now) {
    if (arrivals_.size() == options_.rate_window) arrivals_.erase(arrivals_.begin());
    arrivals_.push_back(now);
  }

  Decision dispatch(std::size_t n, TimePoint now, const LatencyModel& m) {
    remember_dispatch(n, now, m);
    return Decision::now(n);
  }
  void remember_dispatch(std::size_t n, TimePoint now, const LatencyModel& m) {
    removed_ += n;
    const auto t = m.typical(n);
    const auto e = m.estimate_q(n, options_.hopeless_quantile);
    const Duration typical = t ? *t : Duration::zero();
    in_flight_.push_back({now, n, now + typical, now + (e ? std::min(*e, typical) : typical)});
  }
  void forget_dispatch(const BatchRecord& r) {
    if (in_flight_.empty()) return;
    auto it = std::find_if(in_flight_.begin(), in_flight_.end(),
                           [&](const InFlight& f) { return f.size == r.batch_size; });
    in_flight_.erase(it != in_flight_.end() ? it : in_flight_.begin());
  }
  double earliest_lane_free(TimePoint now, bool optimistic = false) const {
    double best = kInf;
    for (const auto& f : in_flight_)
      best = std::min(best, std::max(0.0, relative(optimistic ? f.earliest_end : f.expected_end, now)));
    return std::isfinite(best) ? best : 0.0;
  }

  static constexpr std::size_t kMaxKeys = 64;
  static constexpr std::size_t kStarvedAfter = 8;
  static constexpr double kWideTail = 0.10;  // p99 this far above the median: a wide tail (early drop's tie)
  static constexpr double kTwoLevels = 0.10;  // fastest run this far below the p5: two levels (serve_lone_request)

  Options options_;
  std::map<std::uint64_t, LatencyModel> models_;  // by batch key
  struct PerItem {
    std::uint64_t observations = 0;
    std::size_t changes = 0, cap = 0;
    double value = 0.0;
    bool valid = false;
  };
  std::map<std::uint64_t, PerItem> per_item_;  // cheapest_per_item's cache, by batch key
  std::size_t memory_cap_ = std::numeric_limits<std::size_t>::max();
  std::vector<InFlight> in_flight_;
  std::vector<TimePoint> arrivals_;  // timestamps of the last rate_window arrivals
  std::size_t last_total_ = 0;       // total_queued at the previous decide
  std::size_t removed_ = 0;          // dispatched + shed by the previous decide
  std::size_t admitted_ = 0;         // arrivals admit() recorded since the previous decide
  std::size_t all_shed_in_a_row_ = 0;  // decisions on an idle lane that shed everything visible
  std::vector<double> est_, typ_, opt_, finish_, work_;
  double early_latest_ = 0.0;  // the latest deadline of the prefix plan_with_early_drop drops
  std::vector<std::size_t> on_time_, likely_, choice_;
};

static_assert(AdmittingController<SloController>);

}  // namespace sluice::control
