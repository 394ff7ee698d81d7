// sluice/backends/cpu/reduce.hpp: reduction kernels of the CPU backend: global average / max pooling,
// mean and max over channels, and means over a spatial axis. Sums are accumulated in double.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu::kernels {

namespace detail {

inline constexpr std::int64_t kReduceLanes = 8;

/// The sum of x[0, n) in double: eight lanes of every eighth element, then the lanes in order, so
/// that the loop vectorises instead of waiting on one add chain; the order depends on n only.
inline double sum_of(const float* x, std::int64_t n) {
  double lane[kReduceLanes] = {};
  std::int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes)
    for (std::int64_t j = 0; j < kReduceLanes; ++j) lane[j] += static_cast<double>(x[i + j]);
  double sum = 0.0;
  for (std::int64_t j = 0; j < kReduceLanes; ++j) sum += lane[j];
  for (; i < n; ++i) sum += static_cast<double>(x[i]);
  return sum;
}

/// The largest of x[0, n), n > 0, the same way.
inline float max_of(const float* x, std::int64_t n) {
  float lane[kReduceLanes];
  std::fill(lane, lane + kReduceLanes, -std::numeric_limits<float>::infinity());
  std::int64_t i = 0;
  for (; i + kReduceLanes <= n; i += kReduceLanes)
    for (std::int64_t j = 0; j < kReduceLanes; ++j) lane[j] = std::max(lane[j], x[i + j]);
  float best = *std::max_element(lane, lane + kReduceLanes);
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

}  // namespace detail

/// y[plane] = mean or max of the plane.
inline void global_pool(const float* x, std::int64_t planes, std::int64_t plane, bool max, float* y,
                        ThreadPool& pool) {
  pool.parallel_for(static_cast<std::size_t>(planes), [&](std::size_t task, std::size_t) {
    const float* src = x + static_cast<std::int64_t>(task) * plane;
    y[task] = max ? detail::max_of(src, plane)
                  : static_cast<float>(detail::sum_of(src, plane) / static_cast<double>(plane));
  });
}

/// y (N, 2, H, W) = [mean over C, max over C], in chunks of pixels.
inline void channel_mean_max(const float* x, const Shape& s, float* y, ThreadPool& pool) {
  constexpr std::int64_t chunk = 2048;
  const std::int64_t plane = s.plane(), chunks = (plane + chunk - 1) / chunk;
  pool.parallel_for(static_cast<std::size_t>(s.n * chunks), [&](std::size_t task, std::size_t) {
    const std::int64_t n = static_cast<std::int64_t>(task) / chunks;
    const std::int64_t p0 = static_cast<std::int64_t>(task) % chunks * chunk, p1 = std::min(plane, p0 + chunk);
    std::vector<double> sum(static_cast<std::size_t>(p1 - p0), 0.0);
    float* mx = y + (2 * n + 1) * plane;
    std::fill(mx + p0, mx + p1, -std::numeric_limits<float>::infinity());
    for (std::int64_t c = 0; c < s.c; ++c) {
      const float* src = x + (n * s.c + c) * plane;
      for (std::int64_t p = p0; p < p1; ++p) {
        sum[static_cast<std::size_t>(p - p0)] += src[p];
        mx[p] = std::max(mx[p], src[p]);
      }
    }
    float* mean = y + 2 * n * plane;
    for (std::int64_t p = p0; p < p1; ++p)
      mean[p] = static_cast<float>(sum[static_cast<std::size_t>(p - p0)] / static_cast<double>(s.c));
  });
}

/// over_w: y (N, C, H, 1) = mean of each row; otherwise y (N, C, 1, W) = mean of each column.
inline void mean_over_axis(const float* x, const Shape& s, bool over_w, float* y, ThreadPool& pool) {
  pool.parallel_for(static_cast<std::size_t>(s.n * s.c), [&](std::size_t task, std::size_t) {
    const float* src = x + static_cast<std::int64_t>(task) * s.plane();
    if (over_w) {
      float* dst = y + static_cast<std::int64_t>(task) * s.h;
      for (std::int64_t i = 0; i < s.h; ++i)
        dst[i] = static_cast<float>(detail::sum_of(src + i * s.w, s.w) / static_cast<double>(s.w));
    } else {
      float* dst = y + static_cast<std::int64_t>(task) * s.w;
      std::vector<double> sum(static_cast<std::size_t>(s.w), 0.0);
      for (std::int64_t i = 0; i < s.h; ++i)
        for (std::int64_t j = 0; j < s.w; ++j) sum[static_cast<std::size_t>(j)] += src[i * s.w + j];
      for (std::int64_t j = 0; j < s.w; ++j)
        dst[j] = static_cast<float>(sum[static_cast<std::size_t>(j)] / static_cast<double>(s.h));
    }
  });
}

}  // namespace sluice::cpu::kernels
