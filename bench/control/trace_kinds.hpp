// bench/control/trace_kinds.hpp: the arrival traces of the tight-SLO comparison beyond plain Poisson
// (control_sim.hpp): bursts from a two-state Markov-modulated Poisson process, a diurnal ramp, and a
// mix of input sizes (batch keys with their own latency). Every generator takes a mean rate, so a
// trace is "L% of the oracle capacity" like the Poisson ones, and a seed: same seed, same trace.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "control_sim.hpp"

namespace sluice::bench {

/// Bursts: the rate alternates between `peak_factor` x a low rate (for ~`high_s` seconds) and the
/// low rate (for ~`low_s` seconds), with exponential sojourns; the long-run mean is `mean_rate`.
inline Trace mmpp_trace(double mean_rate, double duration_s, std::uint64_t seed, double peak_factor = 3.0,
                        double high_s = 5.0, double low_s = 20.0) {
  Trace t{"bursts (mmpp)", {}, duration_s};
  std::mt19937_64 rng(seed);
  const double p_high = high_s / (high_s + low_s);
  const double low = mean_rate / (1.0 + (peak_factor - 1.0) * p_high);
  std::exponential_distribution<double> stay_high(1.0 / high_s), stay_low(1.0 / low_s);
  bool high = false;
  for (double from = 0.0; from < duration_s;) {
    const double to = std::min(duration_s, from + (high ? stay_high(rng) : stay_low(rng)));
    poisson(t.arrivals_s, rng, high ? low * peak_factor : low, from, to);
    from = to;
    high = !high;
  }
  return t;
}

/// A day compressed into the trace: the rate follows a raised cosine from `trough` x the peak at the
/// start and the end up to the peak at half time; `peak_rate` is the busiest moment's rate.
inline Trace diurnal_trace(double peak_rate, double duration_s, std::uint64_t seed, double trough = 0.3) {
  Trace t{"diurnal ramp", {}, duration_s};
  std::mt19937_64 rng(seed);
  std::vector<double> candidates;
  poisson(candidates, rng, peak_rate, 0.0, duration_s);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (double s : candidates) {  // thinning: keep each arrival with rate(s) / peak
    const double share = trough + (1.0 - trough) * 0.5 * (1.0 - std::cos(2.0 * std::numbers::pi * s / duration_s));
    if (u(rng) < share) t.arrivals_s.push_back(s);
  }
  return t;
}

/// Three input sizes (batch keys 0, 1, 2) costing 1, 0.5 and 1.6 x the curve's latency, arriving
/// 40/40/20%: the mean cost per item is 0.92, so `rate` loads the lane about as Poisson does.
inline Trace size_mix_trace(double rate, double duration_s, std::uint64_t seed) {
  Trace t = poisson_trace("size mix", rate, duration_s, seed);
  t.key_cost = {1.0, 0.5, 1.6};
  std::mt19937_64 rng(seed ^ 0x5eedULL);
  std::discrete_distribution<std::uint32_t> pick({0.4, 0.4, 0.2});
  t.keys.reserve(t.arrivals_s.size());
  for (std::size_t i = 0; i < t.arrivals_s.size(); ++i) t.keys.push_back(pick(rng));
  return t;
}

}  // namespace sluice::bench
