// bench/control/oracle_capacity.hpp: the fixed-policy search and the oracle capacity it defines.
// For an SLO S, the oracle capacity is the highest Poisson rate that the best FixedBatch chosen with
// hindsight (a grid of max batch size x max queue delay) serves at the target attainment (99.9%).
// Loads are then shares of it, so every SLO has a feasible 100% line. The same search, run on a
// different trace of the same kind, is the "tuned by an operator" FixedBatch; run on the trace
// itself it is the hindsight ceiling.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "control_sim.hpp"
#include "sluice/control/fixed_batch.hpp"

namespace sluice::bench {

struct FixedConfig {
  std::size_t max_size = 1;
  double delay_ms = 0.0;
  std::string name() const {
    return "(" + std::to_string(max_size) + ", " + std::to_string(static_cast<int>(delay_ms + 0.5)) + " ms)";
  }
};

/// The grid: sizes up to the memory-safe size, delays as shares of the SLO (a delay is only useful
/// when it is well inside the SLO).
inline std::vector<FixedConfig> fixed_grid(const LatencyCurve& curve, double slo_ms) {
  std::vector<FixedConfig> grid;
  for (std::size_t size : {1, 2, 3, 4, 6, 8, 12, 16}) {
    if (size > curve.max_safe) continue;
    for (double share : {0.0, 0.05, 0.1, 0.2, 0.35, 0.5}) {
      grid.push_back({size, share * slo_ms});
      if (size == 1) break;  // a batch of one never waits
    }
  }
  return grid;
}

inline control::FixedBatch make_fixed(const FixedConfig& c) {
  using namespace std::chrono;
  return control::FixedBatch(control::FixedBatch::Options{
      c.max_size, duration_cast<Duration>(duration<double, std::milli>(c.delay_ms))});
}

struct FixedChoice {
  FixedConfig config;
  SimResult result;
};

/// The grid's best on `trace`: the highest goodput, then the highest attainment.
inline FixedChoice best_fixed(const LatencyCurve& curve, const Trace& trace, const SimOptions& opt) {
  FixedChoice best{};
  bool first = true;
  for (const FixedConfig& c : fixed_grid(curve, opt.slo_ms)) {
    auto policy = make_fixed(c);
    const SimResult r = simulate(curve, trace, policy, opt);
    if (first || r.goodput() > best.result.goodput() ||
        (r.goodput() == best.result.goodput() && r.attainment() > best.result.attainment())) {
      best = {c, r};
      first = false;
    }
  }
  return best;
}

/// The highest attainment any grid point reaches on `trace` (stops early once `target` is reached).
inline double best_fixed_attainment(const LatencyCurve& curve, const Trace& trace, const SimOptions& opt,
                                    double target) {
  double best = 0.0;
  for (const FixedConfig& c : fixed_grid(curve, opt.slo_ms)) {
    auto policy = make_fixed(c);
    best = std::max(best, simulate(curve, trace, policy, opt).attainment());
    if (best >= target) break;
  }
  return best;
}

/// Bisection on the Poisson rate (same seed at every rate, so arrivals only scale in time and
/// attainment falls monotonically with the rate up to noise): the highest rate whose best fixed
/// policy reaches `target`. Between 1% and 100% of the curve's raw capacity, to `steps` halvings.
/// Each probe trace holds about `requests` arrivals (its duration shrinks as the rate grows).
inline double oracle_capacity(const LatencyCurve& curve, const SimOptions& opt, double requests,
                              std::uint64_t seed, double target = 0.999, int steps = 10) {
  double lo = 0.01 * curve.capacity(), hi = curve.capacity();
  for (int i = 0; i < steps; ++i) {
    const double mid = 0.5 * (lo + hi);
    const Trace t = poisson_trace("oracle", mid, requests / mid, seed);
    (best_fixed_attainment(curve, t, opt, target) >= target ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace sluice::bench
