// sluice/calibrate/calibrator.hpp: the batch-size sweep. For each size of 1, 2, 3, 4, 6, 8, 12, 16,
// 24, 32, ... it first predicts the peak memory from the sizes measured so far and stops if that
// would not fit (so the limit is found without crashing), then warms up, times enough runs on
// fresh random inputs per run for p50/p95/p99 and throughput, and records the true peak memory.
// It stops at the first failure, the memory limit, the size limit or a latency ceiling.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "sluice/calibrate/calibration_model.hpp"
#include "sluice/calibrate/calibration_result.hpp"
#include "sluice/control/latency_model.hpp"
#include "sluice/core/error.hpp"

namespace sluice::calibrate {

struct CalibrationOptions {
  std::string model_name = "model";
  std::size_t max_batch_size = 256;      ///< the sweep never goes above this
  std::size_t warmup_runs = 2;           ///< per size, untimed
  std::size_t timed_runs = 30;           ///< per size
  Duration latency_budget{};             ///< p95 budget for the optimal size (0: none)
  double knee = 0.10;                    ///< a bigger batch must gain more throughput than this
  std::size_t memory_limit_bytes = 0;    ///< 0: no limit (the sweep then stops on failure or size)
  double memory_reserve_percent = 15.0;  ///< of the limit, kept free
  Duration max_p50{};                    ///< stop after a size whose p50 exceeds this (0: never)
  std::uint64_t seed = 1;                ///< inputs of run i use seed + i: every run sees new data

  void validate() const {
    if (max_batch_size == 0) throw Error(errc::invalid_argument, "calibrate: max_batch_size must be >= 1");
    if (timed_runs < 2) throw Error(errc::invalid_argument, "calibrate: need at least 2 timed runs");
    if (knee < 0.0) throw Error(errc::invalid_argument, "calibrate: knee must be >= 0");
    if (memory_reserve_percent < 0.0 || memory_reserve_percent >= 100.0)
      throw Error(errc::invalid_argument, "calibrate: memory_reserve_percent must be in [0, 100)");
  }
};

/// 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, ... up to `max` (then `max` itself if not on the ladder).
inline std::vector<std::size_t> sweep_sizes(std::size_t max) {
  std::vector<std::size_t> out;
  for (std::size_t n : {1, 2, 3}) if (n <= max) out.push_back(n);
  for (std::size_t p = 4; p <= max; p *= 2) {
    out.push_back(p);
    if (p + p / 2 <= max) out.push_back(p + p / 2);
  }
  if (!out.empty() && out.back() != max) out.push_back(max);
  return out;
}

/// Measures one size: warm-up, then timed runs, each on freshly prepared random inputs.
template <CalibrationModel M>
SizeResult measure_size(M& model, std::size_t n, const CalibrationOptions& o, std::uint64_t& seed) {
  SizeResult r;
  r.batch_size = n;
  std::vector<double> times;  // ns
  try {
    for (std::size_t i = 0; i < o.warmup_runs + o.timed_runs; ++i) {
      model.prepare(n, seed++);
      const auto start = Clock::now();
      const RunReport report = model.run();
      const auto wall = Clock::now() - start;
      r.peak_bytes = std::max(r.peak_bytes, report.peak_bytes);
      if (i < o.warmup_runs) continue;
      times.push_back(std::chrono::duration<double, std::nano>(report.device_time.value_or(wall)).count());
    }
  } catch (const std::exception& e) {
    r.success = false;
    r.error = e.what();
    return r;
  }
  auto dur = [](double ns) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::nano>(ns));
  };
  double total = 0;
  for (double t : times) total += t;
  r.success = true;
  r.runs = times.size();
  r.mean = dur(total / static_cast<double>(times.size()));
  r.p50 = dur(control::quantile_of(times, 0.50));
  r.p95 = dur(control::quantile_of(times, 0.95));
  r.p99 = dur(control::quantile_of(times, 0.99));
  r.throughput = total > 0 ? static_cast<double>(n * times.size()) / (total * 1e-9) : 0.0;
  return r;
}

template <CalibrationModel M>
CalibrationResult calibrate(M& model, const CalibrationOptions& o) {
  o.validate();
  CalibrationResult res;
  res.model_name = o.model_name;
  res.memory_limit_bytes = o.memory_limit_bytes;
  res.memory_reserve_percent = o.memory_reserve_percent;
  res.latency_budget = o.latency_budget;
  res.stop_reason = "reached max_batch_size " + std::to_string(o.max_batch_size);
  std::uint64_t seed = o.seed;
  const double usable = usable_bytes(o.memory_limit_bytes, o.memory_reserve_percent);
  for (std::size_t n : sweep_sizes(o.max_batch_size)) {
    if (o.memory_limit_bytes > 0) {
      if (const auto predicted = predict_peak_bytes(res.sizes, n); predicted && *predicted > usable) {
        res.stop_reason = "batch " + std::to_string(n) + " predicted to need " +
                          std::to_string(static_cast<long long>(*predicted / 1048576.0)) + " MiB > usable " +
                          std::to_string(static_cast<long long>(usable / 1048576.0)) + " MiB";
        break;
      }
    }
    SizeResult r = measure_size(model, n, o, seed);
    res.sizes.push_back(r);
    if (!r.success) {
      res.stop_reason = "batch " + std::to_string(n) + " failed: " + r.error;
      break;
    }
    if (o.memory_limit_bytes > 0 && static_cast<double>(r.peak_bytes) > usable) {
      res.stop_reason = "batch " + std::to_string(n) + " exceeded the usable memory";
      break;
    }
    if (o.max_p50 > Duration::zero() && r.p50 > o.max_p50) {
      res.stop_reason = "batch " + std::to_string(n) + " p50 above the latency ceiling";
      break;
    }
  }
  const auto safe = choose_max_safe(res.sizes, o.memory_limit_bytes, o.memory_reserve_percent);
  if (!safe) throw Error(errc::out_of_memory, "calibrate: not even batch size 1 ran within the limits (" +
                                                  res.stop_reason + ")");
  res.max_safe_batch_size = *safe;
  res.optimal_batch_size = choose_optimal(res.sizes, o.latency_budget, o.knee, *safe).value_or(1);
  return res;
}

}  // namespace sluice::calibrate
