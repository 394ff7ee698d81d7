// sluice/calibrate/calibration_result.hpp: the measurements of a batch-size sweep and the two rules
// that choose from them: optimal_batch_size (highest throughput whose p95 fits the latency budget,
// the smaller size when the larger one gains less than the knee threshold) and max_safe_batch_size
// (largest size that ran and fits the memory limit less a reserve). Also the linear memory fit the
// sweep uses to stop before a size that would not fit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "sluice/control/latency_table.hpp"
#include "sluice/core/clock.hpp"
#include "sluice/core/error.hpp"

namespace sluice::calibrate {

/// One batch size of the sweep.
struct SizeResult {
  std::size_t batch_size = 0;
  bool success = false;
  std::string error;               ///< why it failed (empty on success)
  std::size_t runs = 0;            ///< timed runs
  Duration mean{}, p50{}, p95{}, p99{};
  double throughput = 0.0;         ///< items per second over the timed runs
  std::size_t peak_bytes = 0;      ///< the largest peak of any run of this size
};

struct CalibrationResult {
  std::string model_name;
  std::vector<SizeResult> sizes;   ///< ascending batch size, failures included
  std::size_t optimal_batch_size = 1;
  std::size_t max_safe_batch_size = 1;
  std::size_t memory_limit_bytes = 0;
  double memory_reserve_percent = 15.0;
  Duration latency_budget{};
  std::string stop_reason;         ///< why the sweep ended

  const SizeResult* find(std::size_t n) const {
    for (const auto& s : sizes)
      if (s.batch_size == n) return &s;
    return nullptr;
  }
  /// The per-batch-size table the SloController starts from (successful sizes only).
  control::LatencyTable latency_table() const {
    control::LatencyTable t;
    for (const auto& s : sizes)
      if (s.success) t.push_back({s.batch_size, s.p50, std::max(s.p95, s.p50), std::max({s.p99, s.p95, s.p50})});
    return t;
  }
};

/// Highest throughput among successful sizes <= max_safe whose p95 is within `budget` (a zero
/// budget means no limit); then the smallest size whose throughput is within `knee` (0.10 = 10%) of
/// it, since a bigger batch that gains less than that only adds latency. nullopt if none qualifies.
inline std::optional<std::size_t> choose_optimal(const std::vector<SizeResult>& sizes, Duration budget, double knee,
                                                 std::size_t max_safe) {
  if (knee < 0.0) throw Error(errc::invalid_argument, "calibrate: knee threshold must be >= 0");
  auto eligible = [&](const SizeResult& s) {
    return s.success && s.batch_size <= max_safe && (budget <= Duration::zero() || s.p95 <= budget);
  };
  double best = 0.0;
  for (const auto& s : sizes)
    if (eligible(s)) best = std::max(best, s.throughput);
  if (best <= 0.0) return std::nullopt;
  std::optional<std::size_t> pick;
  for (const auto& s : sizes)
    if (eligible(s) && s.throughput * (1.0 + knee) >= best && (!pick || s.batch_size < *pick)) pick = s.batch_size;
  return pick;
}

/// The memory that may be used: the limit less the reserve.
inline double usable_bytes(std::size_t limit_bytes, double reserve_percent) {
  return static_cast<double>(limit_bytes) * (1.0 - reserve_percent / 100.0);
}

/// Largest successful size whose peak fits the usable memory (limit 0: no memory limit).
inline std::optional<std::size_t> choose_max_safe(const std::vector<SizeResult>& sizes, std::size_t limit_bytes,
                                                  double reserve_percent) {
  if (reserve_percent < 0.0 || reserve_percent >= 100.0)
    throw Error(errc::invalid_argument, "calibrate: memory reserve must be in [0, 100) percent");
  std::optional<std::size_t> pick;
  for (const auto& s : sizes) {
    if (!s.success) continue;
    if (limit_bytes > 0 && static_cast<double>(s.peak_bytes) > usable_bytes(limit_bytes, reserve_percent)) continue;
    if (!pick || s.batch_size > *pick) pick = s.batch_size;
  }
  return pick;
}

/// Peak memory of batch size n predicted from the measured peaks of successful sizes by a
/// least-squares line (fixed part + per-item part). One point: proportional to n (over-estimates
/// when the fixed part is large, which is the safe side). nullopt without measurements.
inline std::optional<double> predict_peak_bytes(const std::vector<SizeResult>& sizes, std::size_t n) {
  double w = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& s : sizes) {
    if (!s.success) continue;
    const double x = static_cast<double>(s.batch_size), y = static_cast<double>(s.peak_bytes);
    w += 1;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  if (w == 0) return std::nullopt;
  const double x = static_cast<double>(n);
  const double var = sxx / w - (sx / w) * (sx / w);
  if (w < 2 || var <= 0) return sy / sx * x;
  const double b = (sxy / w - (sx / w) * (sy / w)) / var;
  const double a = sy / w - b * sx / w;
  // Never predict less than the largest measured per-item share says (guards a negative slope).
  double floor = 0;
  for (const auto& s : sizes)
    if (s.success && s.batch_size <= n) floor = std::max(floor, static_cast<double>(s.peak_bytes));
  return std::max(a + b * x, floor);
}

}  // namespace sluice::calibrate
