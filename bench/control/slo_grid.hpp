// bench/control/slo_grid.hpp: the tight-SLO comparison. For one latency curve and one SLO (a multiple
// of the batch-1 latency) it finds the oracle capacity (oracle_capacity.hpp), builds the traces as
// shares of it, and runs every competitor on each trace:
//   fixed (tuned)    the grid's best on a *different* trace of the same kind (what an operator can do)
//   fixed (hindsight) the grid's best on this very trace (the ceiling)
//   triton-style     preferred sizes (the most efficient size and the largest) + a max queue delay
//                    tuned on the other trace
//   aimd             Clipper's AIMD with the SLO/2 as its batch-latency target
//   clockwork edf    the predictive EDF scheduler of clockwork_edf.hpp
//   slo controller   sluice's SloController
// Deterministic: every trace and every simulated run is seeded.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "clockwork_edf.hpp"
#include "control_sim.hpp"
#include "oracle_capacity.hpp"
#include "sluice/control/aimd.hpp"
#include "sluice/control/slo_controller.hpp"
#include "trace_kinds.hpp"

namespace sluice::bench {

/// The calibration table a controller starts from: the curve's p50s with the simulator's noise.
inline control::LatencyTable table_of(const LatencyCurve& c, double sigma) {
  using namespace std::chrono;
  auto ms = [](double v) { return duration_cast<Duration>(duration<double, std::milli>(v)); };
  control::LatencyTable t;
  for (std::size_t n = 1; n <= c.max_safe; ++n) {
    const double p50 = c.at(n);
    t.push_back({n, ms(p50), ms(p50 * std::exp(1.645 * sigma)), ms(p50 * std::exp(2.326 * sigma))});
  }
  return t;
}

struct TraceSpec {
  std::string name;
  bool poisson = false;  ///< a plain Poisson load (the attainment goal applies up to 90%)
  double load = 0.0;     ///< share of the oracle capacity (the peak for the diurnal ramp)
  std::function<Trace(double rate, double duration_s, std::uint64_t seed)> make;
  std::size_t index = 0;  ///< position in trace_specs(): seeds the trace, so a subset replays the same traces
};

inline std::vector<TraceSpec> trace_specs(std::vector<int> poisson_loads = {30, 50, 70, 80, 90, 95},
                                          double other_load = 0.7) {
  std::vector<TraceSpec> specs;
  for (int pct : poisson_loads)
    specs.push_back({"poisson " + std::to_string(pct) + "%", true, pct / 100.0, [pct](double r, double duration_s, std::uint64_t s) {
                       return poisson_trace("poisson " + std::to_string(pct) + "%", r, duration_s, s);
                     }});
  const std::string at = " " + std::to_string(static_cast<int>(other_load * 100 + 0.5)) + "%";
  specs.push_back({"bursts" + at, false, other_load,
                   [](double r, double duration_s, std::uint64_t s) { return mmpp_trace(r, duration_s, s); }});
  specs.push_back({"diurnal peak 90%", false, 0.9,
                   [](double r, double duration_s, std::uint64_t s) { return diurnal_trace(r, duration_s, s); }});
  specs.push_back({"latency step" + at, false, other_load,
                   [](double r, double duration_s, std::uint64_t s) { return latency_step_trace(r, 1.3, duration_s, s); }});
  specs.push_back({"size mix" + at, false, other_load,
                   [](double r, double duration_s, std::uint64_t s) { return size_mix_trace(r, duration_s, s); }});
  for (std::size_t i = 0; i < specs.size(); ++i) specs[i].index = i;
  return specs;
}

struct PolicyRow {
  std::string policy;
  SimResult r;
  bool hindsight = false;
};

struct TraceRows {
  TraceSpec spec;
  std::vector<PolicyRow> rows;  ///< in the order of the header comment; the SloController last
  Trace trace{};                ///< the trace they ran on (for the miss analysis)
  const SimResult& slo() const { return rows.back().r; }
  const SimResult& hindsight() const { return rows[1].r; }
  /// The SloController's attainment is above every competitor's but the hindsight one's (a tie at
  /// 100% counts: nothing can be better).
  bool slo_beats_all_online() const {
    for (std::size_t i = 0; i + 1 < rows.size(); ++i) {
      if (rows[i].hindsight) continue;
      const double a = rows[i].r.attainment(), s = slo().attainment();
      if (!(s > a || (s == 1.0 && a == 1.0))) return false;
    }
    return true;
  }
};

inline control::SloController::Options slo_controller_options(const LatencyCurve& curve, const SimOptions& sim) {
  control::SloController::Options so;
  so.max_batch_size = curve.max_safe;
  so.calibration = table_of(curve, sim.noise_sigma);
  return so;
}

/// Every competitor on `trace`; the tuned ones are tuned on `other`. `slo_options` may change the
/// SloController's options (e.g. to switch a mechanism off for a comparison).
inline std::vector<PolicyRow> run_policies(
    const LatencyCurve& curve, const Trace& trace, const Trace& other, const SimOptions& sim,
    const std::function<void(control::SloController::Options&)>& slo_options = {}) {
  using namespace std::chrono;
  std::vector<PolicyRow> rows;
  const FixedChoice tuned = best_fixed(curve, other, sim);
  auto tuned_policy = make_fixed(tuned.config);
  rows.push_back({"fixed tuned " + tuned.config.name(), simulate(curve, trace, tuned_policy, sim)});
  const FixedChoice hind = best_fixed(curve, trace, sim);
  rows.push_back({"fixed hindsight " + hind.config.name(), hind.result, true});

  SimOptions triton = sim;
  triton.preferred_batch_sizes = {curve.best_size()};
  if (curve.max_safe > curve.best_size()) triton.preferred_batch_sizes.push_back(curve.max_safe);
  FixedChoice tri{};
  bool first = true;
  for (double share : {0.0, 0.05, 0.1, 0.2, 0.35, 0.5}) {
    auto p = make_fixed({curve.max_safe, share * sim.slo_ms});
    const SimResult r = simulate(curve, other, p, triton);
    if (first || r.goodput() > tri.result.goodput()) tri = {{curve.max_safe, share * sim.slo_ms}, r};
    first = false;
  }
  auto tri_policy = make_fixed(tri.config);
  rows.push_back({"triton-style " + tri.config.name(), simulate(curve, trace, tri_policy, triton)});

  control::Aimd::Options ao;
  ao.latency_target = duration_cast<Duration>(duration<double, std::milli>(sim.slo_ms / 2));
  control::Aimd aimd(ao);
  rows.push_back({"aimd (target SLO/2)", simulate(curve, trace, aimd, sim)});

  ClockworkEdf::Options co;
  co.max_batch_size = curve.max_safe;
  co.profile = table_of(curve, sim.noise_sigma);
  co.model.pooled_tail = false;  // Clockwork's profile: the p99 of each size's own last runs
  ClockworkEdf edf(co);
  rows.push_back({"clockwork edf", simulate(curve, trace, edf, sim)});

  auto so = slo_controller_options(curve, sim);
  if (slo_options) slo_options(so);
  control::SloController slo(so);
  rows.push_back({"slo controller", simulate(curve, trace, slo, sim)});
  return rows;
}

/// The whole grid for one curve and one SLO multiple; every trace holds about `requests` arrivals.
/// `capacity` receives the oracle capacity.
inline std::vector<TraceRows> run_slo_grid(const LatencyCurve& curve, double slo_multiple, double requests,
                                           std::uint64_t seed, double& capacity,
                                           std::vector<TraceSpec> specs = {}) {
  SimOptions sim;
  sim.seed = seed;
  sim.slo_ms = slo_multiple * curve.at(1);
  if (specs.empty()) specs = trace_specs();
  capacity = oracle_capacity(curve, sim, requests, seed + 7);
  std::vector<TraceRows> out;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const double rate = specs[i].load * capacity;
    const std::size_t n = specs[i].index;
    const Trace trace = specs[i].make(rate, requests / rate, seed + 100 + n);
    const Trace other = specs[i].make(rate, requests / rate, seed + 1000 + n);
    out.push_back({specs[i], run_policies(curve, trace, other, sim), trace});
  }
  return out;
}

}  // namespace sluice::bench
