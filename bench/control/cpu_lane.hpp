// bench/control/cpu_lane.hpp: what the real-lane comparisons (bench_control_cpu on a virtual clock,
// bench_control_live against a threaded Batcher) share: a network on the CPU backend with
// pre-generated inputs, a CPU-hog co-tenant, and the calibration that turns the network into the
// comparison's numbers -- its latency curve, the SLO (K x batch-1 p50), the lane's own noise and the
// oracle capacity (simulated on the measured table, oracle_capacity.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control_sim.hpp"
#include "oracle_capacity.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/calibrate/calibrator.hpp"
#include "sluice/models/registry.hpp"

namespace sluice::bench {

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
  /// Runs a batch of n (at most the size given at construction); returns its wall time in ms.
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

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

/// Every run's result, by (trace, policy), in run order.
using RunResults = std::map<std::pair<std::string, std::string>, std::vector<SimResult>>;

/// The summary table: medians and ranges of attainment and goodput per trace and policy, and in how
/// many runs the "slo controller" had both >= the "fixed tuned" one of the same run.
inline void print_run_table(const RunResults& results, const std::vector<std::string>& traces,
                            const std::vector<std::string>& policies) {
  auto range = [](const std::vector<double>& v, const char* fmt) {
    char buf[96];
    std::snprintf(buf, sizeof buf, fmt, median(v), *std::min_element(v.begin(), v.end()),
                  *std::max_element(v.begin(), v.end()));
    return std::string(buf);
  };
  std::printf("\n| trace | policy | attained: median (min-max) | goodput req/s: median (min-max) | SLO >= tuned, runs |\n"
              "|---|---|---|---|---|\n");
  for (const std::string& trace : traces)
    for (const std::string& policy : policies) {
      const auto it = results.find({trace, policy});
      if (it == results.end() || it->second.empty()) continue;
      const auto& rs = it->second;
      std::vector<double> att, good;
      for (const auto& r : rs) att.push_back(100 * r.attainment()), good.push_back(r.goodput());
      std::string wins;
      const auto tuned = results.find({trace, "fixed tuned"});
      if (policy == "slo controller" && tuned != results.end()) {
        std::size_t won = 0;
        for (std::size_t i = 0; i < rs.size() && i < tuned->second.size(); ++i)
          won += rs[i].attainment() >= tuned->second[i].attainment() && rs[i].goodput() >= tuned->second[i].goodput();
        wins = std::to_string(won) + "/" + std::to_string(rs.size());
      }
      std::printf("| %s | %s | %s | %s | %s |\n", trace.c_str(), policy.c_str(), range(att, "%.2f%% (%.2f-%.2f)").c_str(),
                  range(good, "%.2f (%.2f-%.2f)").c_str(), wins.c_str());
    }
}

/// The options both real-lane benchmarks take; `extra(option, value)` takes a program's own ones
/// (returns false for an unknown option).
struct LaneArgs {
  std::string network = "resunet_small", checkpoint, write_table;
  std::int64_t h = 64, w = 64;
  double slo_multiple = 5;
  std::size_t threads = 1, max_batch = 8, runs = 3;
  std::uint64_t seed = 1;

  /// False (after a message on stderr) for an unknown option or a missing checkpoint.
  bool parse(int argc, char** argv, const std::function<bool(const std::string&, const std::string&)>& extra) {
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string a = argv[i], v = argv[i + 1];
      if (a == "--network") network = v;
      else if (a == "--checkpoint") checkpoint = v;
      else if (a == "--size") std::sscanf(v.c_str(), "%ldx%ld", &h, &w);
      else if (a == "--runs") runs = std::stoul(v);
      else if (a == "--slo") slo_multiple = std::stod(v);
      else if (a == "--threads") threads = std::stoul(v);
      else if (a == "--max-batch") max_batch = std::stoul(v);
      else if (a == "--seed") seed = std::stoull(v);
      else if (a == "--write-table") write_table = v;
      else if (!extra(a, v)) {
        std::fprintf(stderr, "unknown option %s\n", a.c_str());
        return false;
      }
    }
    if (checkpoint.empty()) std::fprintf(stderr, "missing --checkpoint FILE\n");
    return !checkpoint.empty() && h > 0 && w > 0 && max_batch > 0;
  }
  std::string size() const { return std::to_string(h) + "x" + std::to_string(w); }
  std::string device() const {
    return "CPU backend, " + std::to_string(threads) + " thread(s), shared 2-core machine";
  }
};

/// The comparison's numbers, all derived from one calibration of the lane.
struct CalibratedLane {
  control::LatencyTable table;  ///< the controllers' starting profile
  LatencyCurve curve;           ///< p50 per size, for the simulator's fixed-policy search
  SimOptions sim;               ///< the SLO and the lane's measured spread
  double capacity = 0.0;        ///< oracle capacity, req/s
};

/// Calibrates `lane` (sizes up to `max_batch`); the SLO is `slo_multiple` x the batch-1 p50.
/// `write_table`, when not empty, receives the measured p50s as a latency-table JSON.
inline CalibratedLane calibrate_lane(CpuLane& lane, const std::string& network, std::size_t max_batch,
                                     double slo_multiple, std::uint64_t seed, const std::string& device,
                                     const std::string& input_size, const std::string& write_table = {}) {
  calibrate::CalibrationOptions co;
  co.model_name = network;
  co.max_batch_size = max_batch;
  co.timed_runs = 15;
  const auto cal = calibrate::calibrate(lane, co);
  CalibratedLane out;
  out.table = cal.latency_table();
  out.curve.name = network;
  out.curve.max_safe = cal.max_safe_batch_size;
  std::vector<double> spreads;
  for (const auto& sr : cal.sizes)
    if (sr.success) {
      out.curve.p50_ms[sr.batch_size] = std::chrono::duration<double, std::milli>(sr.p50).count();
      spreads.push_back(std::log(std::chrono::duration<double>(sr.p99) / std::chrono::duration<double>(sr.p50)) / 2.326);
    }
  if (!write_table.empty()) {
    nlohmann::json j;
    j["description"] = "p50 batch latency measured by a real-lane comparison's calibration";
    j["device"] = device;
    j["input_size"] = input_size;
    for (const auto& [n, ms] : out.curve.p50_ms) j["models"][network + "_cpu"]["p50_ms_by_batch"][std::to_string(n)] = ms;
    std::ofstream(write_table) << j.dump(2) << "\n";
  }
  out.sim.seed = seed;
  out.sim.slo_ms = slo_multiple * out.curve.at(1);
  out.sim.noise_sigma = std::clamp(median(spreads), 0.01, 0.5);  // the lane's own measured spread
  out.capacity = oracle_capacity(out.curve, out.sim, 4000, seed + 7);
  return out;
}

}  // namespace sluice::bench
