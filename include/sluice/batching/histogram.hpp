// sluice/batching/histogram.hpp: a fixed-bucket histogram that many threads record into with a
// few relaxed atomic adds (no locks, no allocation), and that renders itself in the Prometheus text
// format. Buckets are powers of two of a base unit, so finding a bucket is one bit_width.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace sluice::batching {

/// Counts values (unsigned integers in some unit) into `Buckets` buckets with upper bounds
/// unit, 2*unit, 4*unit, ... plus +Inf. Snapshots are not atomic as a whole: each number is.
template <std::size_t Buckets = 32>
class Histogram {
 public:
  static constexpr std::size_t bucket_count = Buckets;

  /// Upper bound (inclusive) of bucket i in value units: 2^i.
  static constexpr std::uint64_t upper_bound(std::size_t i) { return std::uint64_t{1} << i; }

  /// The bucket of a value: the smallest i with value <= 2^i (the last bucket takes the rest).
  static constexpr std::size_t bucket_of(std::uint64_t v) {
    const std::size_t i = v <= 1 ? 0 : static_cast<std::size_t>(std::bit_width(v - 1));
    return std::min(i, Buckets);
  }

  void record(std::uint64_t v) noexcept {
    counts_[bucket_of(v)].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  /// The number of values: the sum of the buckets (no third atomic on the hot path).
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& c : counts_) n += c.load(std::memory_order_relaxed);
    return n;
  }
  std::uint64_t sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  /// Count in bucket i (i == Buckets is the overflow bucket).
  std::uint64_t bucket(std::size_t i) const noexcept { return counts_[i].load(std::memory_order_relaxed); }

  /// The upper bound of the bucket that holds quantile q (0..1), in value units: a coarse estimate
  /// (within a factor of two), good enough to eyeball a dashboard or a test.
  std::uint64_t quantile_upper_bound(double q) const noexcept {
    const std::uint64_t n = count();
    if (n == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i <= Buckets; ++i) {
      seen += bucket(i);
      if (seen >= rank) return i == Buckets ? UINT64_MAX : upper_bound(i);
    }
    return UINT64_MAX;
  }

  /// Appends `name_bucket{labels,le="..."}` lines, `name_sum` and `name_count`. `scale` converts a
  /// value unit into the exported unit (e.g. 1e-9 for nanoseconds exported as seconds).
  void render(std::string& out, std::string_view name, std::string_view labels, double scale) const {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= Buckets; ++i) {
      cumulative += bucket(i);
      out.append(name).append("_bucket{").append(labels).append(labels.empty() ? "" : ",").append("le=\"");
      if (i == Buckets) {
        out.append("+Inf");
      } else {
        out.append(format_number(static_cast<double>(upper_bound(i)) * scale));
      }
      out.append("\"} ").append(std::to_string(cumulative)).append("\n");
    }
    out.append(name).append("_sum{").append(labels).append("} ");
    out.append(format_number(static_cast<double>(sum()) * scale)).append("\n");
    out.append(name).append("_count{").append(labels).append("} ").append(std::to_string(count())).append("\n");
  }

  static std::string format_number(double v) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%.9g", v);
    return std::string(buf, static_cast<std::size_t>(n > 0 ? n : 0));
  }

 private:
  std::array<std::atomic<std::uint64_t>, Buckets + 1> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

}  // namespace sluice::batching
