// bench_control_cpu: the controller comparison with a real lane. Arrivals follow a trace on the
// virtual clock as in bench_control_sim, but every batch really runs a (small) network on the CPU
// backend and its measured wall time advances the clock. The latency step makes the lane 30% slower
// by spinning for 30% of each run's time after half the trace. Capacity, SLO and the
// SloController's starting table come from a short calibration of the same network first.
// Usage: bench_control_cpu --network NAME --checkpoint FILE [--size HxW] [--seconds S] [--threads N]
//                          [--max-batch N] [--seed S] [--slo-only 1]
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "control_sim.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/calibrate/calibrator.hpp"
#include "sluice/control/aimd.hpp"
#include "sluice/control/fixed_batch.hpp"
#include "sluice/control/slo_controller.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

using namespace sluice;
using namespace sluice::bench;

namespace {

/// The network with pre-generated random inputs per batch size (three per size, rotated).
class CpuLane {
 public:
  CpuLane(cpu::CpuBackend& b, models::AnyNetwork<cpu::CpuBackend> net, std::int64_t h, std::int64_t w, std::size_t max)
      : b_(b), net_(std::move(net)), h_(h), w_(w), inputs_(max + 1) {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> u(0.05f, 1.0f);
    for (std::size_t n = 1; n <= max; ++n)
      for (int k = 0; k < 3; ++k) {
        std::vector<float> x(n * static_cast<std::size_t>(net_.in_channels() * h_ * w_));
        for (auto& v : x) v = u(rng);
        inputs_[n].push_back(std::move(x));
      }
  }
  // calibrate::CalibrationModel
  void prepare(std::size_t n, std::uint64_t seed) { n_ = n, k_ = seed % 3; }
  calibrate::RunReport run() {
    b_.reset_peak();
    run_once(n_, k_);
    return {b_.memory().peak_bytes, std::nullopt};
  }
  /// Runs a batch of n; returns its wall time in ms.
  double timed(std::size_t n) {
    const auto t0 = Clock::now();
    run_once(n, rot_++ % 3);
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  }

 private:
  void run_once(std::size_t n, std::size_t k) {
    auto x = b_.upload(inputs_[n][k], Shape{static_cast<std::int64_t>(n), net_.in_channels(), h_, w_});
    auto y = models::run_forward(net_, b_, x);
    b_.synchronize();
  }
  cpu::CpuBackend& b_;
  models::AnyNetwork<cpu::CpuBackend> net_;
  std::int64_t h_, w_;
  std::vector<std::vector<std::vector<float>>> inputs_;
  std::size_t n_ = 1, k_ = 0, rot_ = 0;
};

void spin_ms(double ms) {
  const auto until = Clock::now() + std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
  while (Clock::now() < until) {
  }
}

Duration ms_d(double ms) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

}  // namespace

int main(int argc, char** argv) try {
  std::string network = "resunet_small", checkpoint;
  std::int64_t h = 64, w = 64;
  double seconds = 20;
  std::size_t threads = 1, max_batch = 8;
  std::uint64_t seed = 1;
  bool slo_only = false;  // only the SloController, with and without the calibration table
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--network") network = v;
    else if (a == "--checkpoint") checkpoint = v;
    else if (a == "--size") std::sscanf(v.c_str(), "%ldx%ld", &h, &w);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--threads") threads = std::stoul(v);
    else if (a == "--max-batch") max_batch = std::stoul(v);
    else if (a == "--seed") seed = std::stoull(v);
    else if (a == "--slo-only") slo_only = v == "1";
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (checkpoint.empty()) {
    std::fprintf(stderr, "usage: %s --network NAME --checkpoint FILE [--size HxW] [--seconds S] ...\n", argv[0]);
    return 2;
  }
  cpu::CpuBackend backend({.threads = threads});
  const auto weights = weights::load_checkpoint(checkpoint);
  CpuLane lane(backend, models::load_network(network, backend, weights), h, w, max_batch);

  calibrate::CalibrationOptions co;
  co.model_name = network;
  co.max_batch_size = max_batch;
  co.timed_runs = 10;
  const auto cal = calibrate::calibrate(lane, co);
  LatencyCurve curve;
  curve.name = network;
  curve.max_safe = cal.max_safe_batch_size;
  for (const auto& s : cal.sizes)
    if (s.success) curve.p50_ms[s.batch_size] = std::chrono::duration<double, std::milli>(s.p50).count();
  const double cap = curve.capacity();
  SimOptions sim;
  sim.seed = seed;
  sim.slo_ms = 1000.0 * 40.0 / cap;
  std::printf("### %s %ldx%ld on the CPU backend (%zu thread%s): calibrated capacity %.1f req/s (batch %zu), "
              "SLO %.0f ms, %.0f s per trace\n\n",
              network.c_str(), h, w, threads, threads == 1 ? "" : "s", cap, curve.best_size(), sim.slo_ms, seconds);
  std::printf("| trace              | policy                     | attained  | goodput | p50 ms  | p99 ms  | batch | late   | shed   |\n");
  std::printf("|--------------------|----------------------------|-----------|---------|---------|---------|-------|--------|--------|\n");

  std::vector<Trace> traces = {poisson_trace("poisson 50%", 0.5 * cap, seconds, seed + 50),
                               poisson_trace("poisson 90%", 0.9 * cap, seconds, seed + 90),
                               latency_step_trace(0.7 * cap, 1.3, seconds, seed + 103)};
  auto print = [](const std::string& trace, const std::string& policy, const SimResult& r) {
    std::printf("| %-18s | %-26s | %8.3f%% | %7.2f | %7.0f | %7.0f | %5.2f | %6zu | %6zu |\n", trace.c_str(),
                policy.c_str(), 100.0 * r.attainment(), r.goodput(), r.p50_ms, r.p99_ms, r.mean_batch(), r.late,
                r.dropped);
    std::fflush(stdout);
  };
  for (const Trace& trace : traces) {
    auto real = [&](std::size_t n, double t) {
      const double ms = lane.timed(n);
      const double extra = ms * (trace.slowdown(t) - 1.0);
      if (extra > 0) spin_ms(extra);
      return ms + extra;
    };
    if (slo_only) {
      for (bool table : {true, false}) {
        control::SloController::Options so;
        so.max_batch_size = curve.max_safe;
        if (table) so.calibration = cal.latency_table();
        control::SloController slo(so);
        print(trace.name, table ? "slo controller" : "slo controller, no table", simulate_lane(trace, slo, sim, curve.max_safe, real));
      }
      continue;
    }
    std::string best_name;
    SimResult best;
    for (auto [size, delay] : std::vector<std::pair<std::size_t, double>>{{1, 0}, {2, 0}, {4, 0}, {8, 0}, {4, 10}, {8, 10}}) {
      if (size > curve.max_safe) continue;
      control::FixedBatch fixed(control::FixedBatch::Options{size, ms_d(delay)});
      const SimResult r = simulate_lane(trace, fixed, sim, curve.max_safe, real);
      if (best_name.empty() || r.goodput() > best.goodput() ||
          (r.goodput() == best.goodput() && r.attainment() > best.attainment())) {
        best = r;
        best_name = "fixed best (" + std::to_string(size) + ", " + std::to_string(static_cast<int>(delay)) + " ms)";
      }
    }
    print(trace.name, best_name, best);
    control::Aimd::Options ao;
    ao.latency_target = ms_d(sim.slo_ms / 2);
    control::Aimd aimd(ao);
    print(trace.name, "aimd (target SLO/2)", simulate_lane(trace, aimd, sim, curve.max_safe, real));
    control::SloController::Options so;
    so.max_batch_size = curve.max_safe;
    so.calibration = cal.latency_table();
    control::SloController slo(so);
    print(trace.name, "slo controller", simulate_lane(trace, slo, sim, curve.max_safe, real));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_cpu: %s\n", e.what());
  return 1;
}
