// bench/control/control_sim.hpp: a deterministic discrete-event simulator for batch controllers. It
// replays an arrival trace on a virtual clock against one simulated lane whose batch latency comes
// from a measured table (interpolated between sizes, with log-normal noise, optionally slowed down
// mid-run), and drives the controller through the Batcher's own sans-io BatchFormer, so admission,
// shedding, expiry and wake-ups follow the real batching rules. Same seed, same result.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sluice/batching/batch_former.hpp"
#include "sluice/core/batch_controller.hpp"

namespace sluice::bench {

/// Batch latency of a model by batch size: measured p50s, linearly interpolated in between.
struct LatencyCurve {
  std::string name;
  std::map<std::size_t, double> p50_ms;  ///< measured sizes
  std::size_t max_safe = 1;              ///< largest size that fits in memory

  double at(std::size_t n) const {
    auto hi = p50_ms.lower_bound(n);
    if (hi != p50_ms.end() && hi->first == n) return hi->second;
    if (hi == p50_ms.begin()) return hi->second * static_cast<double>(n) / static_cast<double>(hi->first);
    auto lo = std::prev(hi);
    if (hi == p50_ms.end()) {  // beyond the table: continue the last segment
      if (lo == p50_ms.begin()) return lo->second * static_cast<double>(n) / static_cast<double>(lo->first);
      hi = lo--;
    }
    const double f = (static_cast<double>(n) - static_cast<double>(lo->first)) /
                     static_cast<double>(hi->first - lo->first);
    return lo->second + f * (hi->second - lo->second);
  }
  /// Largest throughput (items/s) over sizes 1..max_safe: the maximum sustainable rate.
  double capacity() const {
    double best = 0.0;
    for (std::size_t n = 1; n <= max_safe; ++n) best = std::max(best, 1000.0 * static_cast<double>(n) / at(n));
    return best;
  }
  std::size_t best_size() const {
    std::size_t best = 1;
    for (std::size_t n = 1; n <= max_safe; ++n)
      if (static_cast<double>(n) / at(n) > static_cast<double>(best) / at(best)) best = n;
    return best;
  }
};

/// Arrival times (seconds from the start) and the device's slowdown factor over time. A trace of
/// mixed input sizes gives each arrival a batch key (an index into `key_cost`, the latency factor of
/// that input size); items of different keys never share a batch.
struct Trace {
  std::string name;
  std::vector<double> arrivals_s;
  double duration_s = 0.0;
  std::function<double(double)> slowdown = [](double) { return 1.0; };
  std::vector<std::uint32_t> keys{};  ///< per arrival; empty: every arrival has key 0
  std::vector<double> key_cost{};   ///< latency factor per key; empty: 1 for every key
  /// A co-tenant: from `cotenant_from_s` on, each batch's run time is multiplied by one of these
  /// ratios drawn at random (a real lane's measured slowdown, its larger variance included).
  std::vector<double> cotenant_ratios{};
  double cotenant_from_s = 0.0;
  /// Or the co-tenant replayed in time order (its spells kept): (offset s, ratio) steps, sorted by
  /// offset, over a period of `cotenant_period_s`, cycled from `cotenant_from_s` on. A real co-tenant's
  /// slow runs come in spells of tens of runs; drawn independently they never do.
  std::vector<std::pair<double, double>> cotenant_timeline{};
  double cotenant_period_s = 0.0;
  /// The co-tenant's factor at time t (1 before it starts or without one); `draw` picks a ratio.
  template <class Draw>
  double cotenant_at(double t, Draw&& draw) const {
    if (t < cotenant_from_s) return 1.0;
    if (!cotenant_timeline.empty() && cotenant_period_s > 0.0) {
      const double u = std::fmod(t - cotenant_from_s, cotenant_period_s);
      auto it = std::upper_bound(cotenant_timeline.begin(), cotenant_timeline.end(), u,
                                 [](double v, const std::pair<double, double>& step) { return v < step.first; });
      return it == cotenant_timeline.begin() ? cotenant_timeline.front().second : std::prev(it)->second;
    }
    return cotenant_ratios.empty() ? 1.0 : cotenant_ratios[draw(cotenant_ratios.size())];
  }
  std::uint32_t key_of(std::size_t i) const { return keys.empty() ? 0 : keys[i]; }
  double cost_of(std::uint64_t key) const { return key < key_cost.size() ? key_cost[key] : 1.0; }
};

inline void poisson(std::vector<double>& out, std::mt19937_64& rng, double rate, double from, double to) {
  std::exponential_distribution<double> gap(rate);
  for (double t = from + gap(rng); t < to; t += gap(rng)) out.push_back(t);
}

inline Trace poisson_trace(std::string name, double rate, double duration_s, std::uint64_t seed) {
  Trace t{std::move(name), {}, duration_s};
  std::mt19937_64 rng(seed);
  poisson(t.arrivals_s, rng, rate, 0.0, duration_s);
  return t;
}

/// Background Poisson load plus, every `period_s`, `burst` requests spread over `spread_s`.
inline Trace burst_trace(double rate, std::size_t burst, double period_s, double spread_s, double duration_s,
                         std::uint64_t seed) {
  Trace t{"bursts", {}, duration_s};
  std::mt19937_64 rng(seed);
  poisson(t.arrivals_s, rng, rate, 0.0, duration_s);
  std::uniform_real_distribution<double> u(0.0, spread_s);
  for (double start = period_s / 2; start < duration_s; start += period_s)
    for (std::size_t i = 0; i < burst; ++i) t.arrivals_s.push_back(start + u(rng));
  std::sort(t.arrivals_s.begin(), t.arrivals_s.end());
  return t;
}

/// Rate `before` for the first half, `after` for the second.
inline Trace load_step_trace(double before, double after, double duration_s, std::uint64_t seed) {
  Trace t{"load step", {}, duration_s};
  std::mt19937_64 rng(seed);
  poisson(t.arrivals_s, rng, before, 0.0, duration_s / 2);
  poisson(t.arrivals_s, rng, after, duration_s / 2, duration_s);
  return t;
}

/// Constant load; the device becomes `factor` times slower at half time.
inline Trace latency_step_trace(double rate, double factor, double duration_s, std::uint64_t seed) {
  Trace t = poisson_trace("latency step", rate, duration_s, seed);
  t.slowdown = [half = duration_s / 2, factor](double s) { return s < half ? 1.0 : factor; };
  return t;
}

/// What became of one request (SimResult::outcome, indexed like the trace's arrivals).
enum class Outcome : std::uint8_t { on_time, late, rejected, shed, expired };

struct SimResult {
  std::size_t requests = 0;
  std::size_t on_time = 0;
  std::size_t late = 0;       ///< served after the deadline
  std::size_t dropped = 0;    ///< rejected at admission, shed or expired in the queue
  std::size_t rejected = 0;   ///< of those: rejected at admission
  std::size_t batches = 0;
  double duration_s = 0.0;
  double p50_ms = 0.0, p99_ms = 0.0;  ///< latency of the served requests
  std::vector<Outcome> outcome;       ///< per request, for the miss analysis (bench_control_sim --why)
  double attainment() const { return requests ? static_cast<double>(on_time) / static_cast<double>(requests) : 1.0; }
  double goodput() const { return duration_s > 0 ? static_cast<double>(on_time) / duration_s : 0.0; }
  double mean_batch() const {
    return batches ? static_cast<double>(on_time + late) / static_cast<double>(batches) : 0.0;
  }
};

struct SimOptions {
  double slo_ms = 1000.0;     ///< deadline = arrival + SLO
  double noise_sigma = 0.03;  ///< log-normal sigma of each batch's run time
  std::uint64_t seed = 1;
  std::vector<std::size_t> preferred_batch_sizes;  ///< the former's (Triton-style policies read them)
};

/// Runs `trace` through a BatchFormer driving `controller` on one lane whose batch of n items of key
/// k, started at trace time t seconds, takes `run_ms(n, t, k)` milliseconds (a table, or a real
/// model's measured time).
template <class Controller, class RunMs>
SimResult simulate_lane(const Trace& trace, Controller& controller, const SimOptions& opt, std::size_t max_batch,
                        RunMs&& run_ms) {
  using namespace std::chrono;
  const TimePoint origin = TimePoint{} + hours(1);
  auto at = [&](double s) { return origin + duration_cast<Duration>(duration<double>(s)); };
  auto secs = [&](TimePoint t) { return duration<double>(t - origin).count(); };

  batching::FormerConfig config;
  config.max_batch_size = max_batch;
  config.max_queue_size = std::size_t{1} << 24;
  config.preferred_batch_sizes = opt.preferred_batch_sizes;
  batching::BatchFormer<std::uint32_t, Controller> former(config, controller);
  using Batch = typename batching::BatchFormer<std::uint32_t, Controller>::Batch;
  using Item = typename batching::BatchFormer<std::uint32_t, Controller>::Item;

  const Duration slo = duration_cast<Duration>(duration<double, std::milli>(opt.slo_ms));

  SimResult res;
  res.requests = trace.arrivals_s.size();
  res.duration_s = trace.duration_s;
  std::vector<double> latencies;
  latencies.reserve(res.requests);
  std::vector<Item> dropped, expired;
  res.outcome.assign(res.requests, Outcome::expired);
  Batch running;
  bool busy = false;
  TimePoint lane_done = kNever, lane_start{};
  std::size_t next = 0;

  auto finish_batch = [&](TimePoint now) {
    for (const auto& item : running.items) {
      latencies.push_back(duration<double, std::milli>(now - item.arrival).count());
      (now <= item.deadline ? res.on_time : res.late)++;
      res.outcome[item.payload] = now <= item.deadline ? Outcome::on_time : Outcome::late;
    }
    BatchRecord r;
    r.batch_size = running.items.size();
    r.started = lane_start;
    r.finished = now;
    r.key = running.key;
    controller.observe(r);
    former.release_slot();
    busy = false;
    lane_done = kNever;
  };

  while (true) {
    const TimePoint arrival = next < trace.arrivals_s.size() ? at(trace.arrivals_s[next]) : kNever;
    // While the lane runs, the former is not asked (its last wake-up may be stale); expiry of queued
    // items then happens at the next event, which changes no outcome.
    const TimePoint now = std::min({arrival, lane_done, busy ? kNever : former.next_wakeup()});
    if (now == kNever) break;
    if (busy && lane_done <= now) finish_batch(now);
    while (next < trace.arrivals_s.size() && at(trace.arrivals_s[next]) <= now) {
      std::uint32_t id = static_cast<std::uint32_t>(next);
      if (!former.push(id, trace.key_of(next), 0, at(trace.arrivals_s[next]) + slo, now)) {
        ++res.dropped, ++res.rejected;
        res.outcome[next] = Outcome::rejected;
      }
      ++next;
    }
    former.expire(now, expired);
    if (!busy) {
      if (former.next_batch(now, running, dropped)) {
        const std::size_t n = running.items.size();
        const double ms = run_ms(n, secs(now), running.key);
        lane_start = now;
        lane_done = now + duration_cast<Duration>(duration<double, std::milli>(ms));
        busy = true;
        ++res.batches;
      }
    }
    for (const auto& item : dropped) res.outcome[item.payload] = Outcome::shed;
    for (const auto& item : expired) res.outcome[item.payload] = Outcome::expired;
    res.dropped += dropped.size() + expired.size();
    dropped.clear();
    expired.clear();
  }
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    auto q = [&](double p) { return latencies[static_cast<std::size_t>(p * static_cast<double>(latencies.size() - 1))]; };
    res.p50_ms = q(0.5);
    res.p99_ms = q(0.99);
  }
  return res;
}

/// The simulated lane: the curve's latency, slowed down as the trace says, with log-normal noise.
template <class Controller>
SimResult simulate(const LatencyCurve& curve, const Trace& trace, Controller& controller, const SimOptions& opt) {
  std::mt19937_64 rng(opt.seed ^ 0x9e3779b97f4a7c15ULL);
  std::normal_distribution<double> noise(0.0, opt.noise_sigma);
  // Its own stream, so that traces without a co-tenant replay exactly as before.
  std::mt19937_64 cotenant_rng(opt.seed ^ 0xc07e4a47ULL);
  const auto draw = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(cotenant_rng); };
  return simulate_lane(trace, controller, opt, curve.max_safe, [&](std::size_t n, double t, std::uint64_t key) {
    const double cotenant = trace.cotenant_at(t, draw);
    return curve.at(n) * trace.cost_of(key) * trace.slowdown(t) * cotenant * std::exp(noise(rng));
  });
}

}  // namespace sluice::bench
