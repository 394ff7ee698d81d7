// bench_control_cpu: the tight-SLO controller comparison with a real lane. Arrivals follow a trace
// (open loop: they never wait for the lane) on a virtual clock as in bench_control_sim, but every
// batch really runs a (small) network on the CPU backend and its measured wall time advances the
// clock; idle time is skipped. The real latency step is a co-tenant: CPU-hog threads start at half
// time. The network is calibrated first: its table gives the SLO (K x batch-1 p50), the oracle
// capacity (simulated on the measured table, oracle_capacity.hpp), the tuned FixedBatch (tuned in
// simulation on a different trace of the same kind) and the controllers' starting profile. Each
// policy runs `--runs` times, alternating with the others; the table reports medians and ranges.
// Usage: bench_control_cpu --network NAME --checkpoint FILE [--size HxW] [--requests N] [--runs R]
//                          [--slo K] [--threads N] [--max-batch N] [--seed S] [--write-table PATH]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <thread>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cpu_lane.hpp"
#include "slo_grid.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

using namespace sluice;
using namespace sluice::bench;

int main(int argc, char** argv) try {
  LaneArgs args;
  double requests = 600;
  if (!args.parse(argc, argv, [&](const std::string& a, const std::string& v) {
        if (a != "--requests") return false;
        requests = std::stod(v);
        return true;
      })) {
    std::fprintf(stderr, "usage: %s --network NAME --checkpoint FILE [--size HxW] [--requests N] [--runs R] [--slo K] ...\n", argv[0]);
    return 2;
  }
  const auto& [network, checkpoint, write_table, h, w, slo_multiple, threads, max_batch, runs, seed] = args;
  cpu::CpuBackend backend({.threads = threads});
  const auto weights = weights::load_checkpoint(checkpoint);
  CpuLane lane(backend, models::load_network(network, backend, weights), h, w, max_batch);

  const CalibratedLane cl = calibrate_lane(
      lane, network, max_batch, slo_multiple, seed, args.device(), args.size(), write_table);
  const LatencyCurve& curve = cl.curve;
  const SimOptions& sim = cl.sim;
  const double cap = cl.capacity;
  std::printf("### %s %ldx%ld on the CPU backend (%zu thread%s): batch-1 p50 %.1f ms, SLO %.0f ms (%gx), "
              "oracle capacity %.1f req/s (raw %.1f at batch %zu), noise sigma %.2f, %.0f requests per trace, %zu runs\n\n",
              network.c_str(), h, w, threads, threads == 1 ? "" : "s", curve.at(1), sim.slo_ms, slo_multiple, cap,
              curve.capacity(), curve.best_size(), sim.noise_sigma, requests, runs);

  struct Spec {
    std::string name;
    double load;
    bool hog;
    std::function<Trace(double, double, std::uint64_t)> make;
  };
  const std::vector<Spec> specs = {
      {"poisson 50%", 0.5, false, [](double r, double d, std::uint64_t s) { return poisson_trace("p", r, d, s); }},
      {"poisson 90%", 0.9, false, [](double r, double d, std::uint64_t s) { return poisson_trace("p", r, d, s); }},
      {"bursts 70%", 0.7, false, [](double r, double d, std::uint64_t s) { return mmpp_trace(r, d, s); }},
      {"cpu hog 70%", 0.7, true, [](double r, double d, std::uint64_t s) { return poisson_trace("p", r, d, s); }},
  };
  const std::vector<std::string> policies = {"fixed tuned", "fixed hindsight", "clockwork edf", "slo controller"};
  RunResults results;
  const unsigned hog_threads = std::max(1u, std::thread::hardware_concurrency());

  for (std::size_t run = 0; run < runs; ++run) {
    for (std::size_t ti = 0; ti < specs.size(); ++ti) {
      const Spec& spec = specs[ti];
      const double rate = spec.load * cap, duration = requests / rate;
      const Trace trace = spec.make(rate, duration, seed + 100 + ti);
      const Trace other = spec.make(rate, duration, seed + 1000 + ti);
      // Both fixed choices come from the simulator on the measured table: tuned on the other
      // trace (an operator's offline tuning), hindsight on this very trace.
      const FixedConfig tuned = best_fixed(curve, other, sim).config;
      const FixedConfig hind = best_fixed(curve, trace, sim).config;
      for (std::size_t k = 0; k < policies.size(); ++k) {
        const std::string& policy = policies[(k + run) % policies.size()];  // alternate the order
        CpuHog hog;
        auto real = [&](std::size_t n, double t, std::uint64_t) {
          if (spec.hog && t >= duration / 2) hog.start(hog_threads);
          return lane.timed(n);
        };
        SimResult r;
        if (policy == "fixed tuned" || policy == "fixed hindsight") {
          auto p = make_fixed(policy == "fixed tuned" ? tuned : hind);
          r = simulate_lane(trace, p, sim, curve.max_safe, real);
        } else if (policy == "clockwork edf") {
          ClockworkEdf::Options eo;
          eo.max_batch_size = curve.max_safe;
          eo.profile = cl.table;
          ClockworkEdf p(eo);
          r = simulate_lane(trace, p, sim, curve.max_safe, real);
        } else {
          control::SloController::Options so;
          so.max_batch_size = curve.max_safe;
          so.calibration = cl.table;
          control::SloController p(so);
          r = simulate_lane(trace, p, sim, curve.max_safe, real);
        }
        hog.stop();
        results[{spec.name, policy}].push_back(r);
        std::printf("run %zu | %-12s | %-16s | %8.3f%% | %7.2f | late %4zu | dropped %4zu\n", run + 1, spec.name.c_str(),
                    policy.c_str(), 100 * r.attainment(), r.goodput(), r.late, r.dropped);
        std::fflush(stdout);
      }
    }
  }
  std::vector<std::string> names;
  for (const Spec& spec : specs) names.push_back(spec.name);
  print_run_table(results, names, policies);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_cpu: %s\n", e.what());
  return 1;
}
