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

#include "slo_grid.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/calibrate/calibrator.hpp"
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

/// A co-tenant: threads that burn CPU until stopped.
class CpuHog {
 public:
  void start(unsigned threads) {
    if (!threads_.empty()) return;
    stop_ = false;
    for (unsigned i = 0; i < threads; ++i)
      threads_.emplace_back([this] {
        volatile double x = 1.0;
        while (!stop_.load(std::memory_order_relaxed)) x = x * 1.0000001 + 1e-9;
      });
  }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  ~CpuHog() { stop(); }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

}  // namespace

int main(int argc, char** argv) try {
  std::string network = "resunet_small", checkpoint, write_table;
  std::int64_t h = 64, w = 64;
  double requests = 600, slo_multiple = 5;
  std::size_t threads = 1, max_batch = 8, runs = 3;
  std::uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--network") network = v;
    else if (a == "--checkpoint") checkpoint = v;
    else if (a == "--size") std::sscanf(v.c_str(), "%ldx%ld", &h, &w);
    else if (a == "--requests") requests = std::stod(v);
    else if (a == "--runs") runs = std::stoul(v);
    else if (a == "--slo") slo_multiple = std::stod(v);
    else if (a == "--threads") threads = std::stoul(v);
    else if (a == "--max-batch") max_batch = std::stoul(v);
    else if (a == "--seed") seed = std::stoull(v);
    else if (a == "--write-table") write_table = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (checkpoint.empty()) {
    std::fprintf(stderr, "usage: %s --network NAME --checkpoint FILE [--size HxW] [--requests N] [--runs R] [--slo K] ...\n", argv[0]);
    return 2;
  }
  cpu::CpuBackend backend({.threads = threads});
  const auto weights = weights::load_checkpoint(checkpoint);
  CpuLane lane(backend, models::load_network(network, backend, weights), h, w, max_batch);

  calibrate::CalibrationOptions co;
  co.model_name = network;
  co.max_batch_size = max_batch;
  co.timed_runs = 15;
  const auto cal = calibrate::calibrate(lane, co);
  LatencyCurve curve;
  curve.name = network;
  curve.max_safe = cal.max_safe_batch_size;
  std::vector<double> spreads;
  for (const auto& sr : cal.sizes)
    if (sr.success) {
      curve.p50_ms[sr.batch_size] = std::chrono::duration<double, std::milli>(sr.p50).count();
      spreads.push_back(std::log(std::chrono::duration<double>(sr.p99) / std::chrono::duration<double>(sr.p50)) / 2.326);
    }
  if (!write_table.empty()) {
    nlohmann::json j;
    j["description"] = "p50 batch latency measured by bench_control_cpu's calibration";
    j["device"] = "CPU backend, " + std::to_string(threads) + " thread(s), shared 2-core machine";
    j["input_size"] = std::to_string(h) + "x" + std::to_string(w);
    for (const auto& [n, ms] : curve.p50_ms) j["models"][network + "_cpu"]["p50_ms_by_batch"][std::to_string(n)] = ms;
    std::ofstream(write_table) << j.dump(2) << "\n";
  }
  SimOptions sim;
  sim.seed = seed;
  sim.slo_ms = slo_multiple * curve.at(1);
  sim.noise_sigma = std::clamp(median(spreads), 0.01, 0.5);  // the lane's own measured spread
  const double cap = oracle_capacity(curve, sim, 4000, seed + 7);
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
  std::map<std::pair<std::string, std::string>, std::vector<SimResult>> results;
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
          eo.profile = cal.latency_table();
          ClockworkEdf p(eo);
          r = simulate_lane(trace, p, sim, curve.max_safe, real);
        } else {
          control::SloController::Options so;
          so.max_batch_size = curve.max_safe;
          so.calibration = cal.latency_table();
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
  std::printf("\n| trace | policy | attained: median (min-max) | goodput: median (min-max) | SLO >= tuned, runs |\n|---|---|---|---|---|\n");
  for (const Spec& spec : specs)
    for (const std::string& policy : policies) {
      const auto& rs = results[{spec.name, policy}];
      std::vector<double> att, good;
      for (const auto& r : rs) att.push_back(100 * r.attainment()), good.push_back(r.goodput());
      std::string wins = "";
      if (policy == "slo controller") {
        const auto& tuned = results[{spec.name, "fixed tuned"}];
        std::size_t n = 0;
        for (std::size_t i = 0; i < rs.size() && i < tuned.size(); ++i)
          n += rs[i].attainment() >= tuned[i].attainment() && rs[i].goodput() >= tuned[i].goodput();
        wins = std::to_string(n) + "/" + std::to_string(rs.size());
      }
      std::printf("| %s | %s | %.3f%% (%.3f-%.3f) | %.2f (%.2f-%.2f) | %s |\n", spec.name.c_str(), policy.c_str(),
                  median(att), *std::min_element(att.begin(), att.end()), *std::max_element(att.begin(), att.end()),
                  median(good), *std::min_element(good.begin(), good.end()), *std::max_element(good.begin(), good.end()),
                  wins.c_str());
    }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_control_cpu: %s\n", e.what());
  return 1;
}
