// sluice/backends/cpu/reduce.hpp: reduction kernels of the CPU backend: global average / max pooling,
// mean and max over channels, and means over a spatial axis. Sums are accumulated in double.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "sluice/backends/cpu/plane_tasks.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu::kernels {

/// Sums in double over 8 interleaved lanes (element i goes to lane i % 8), combined in a fixed
/// order: the compiler vectorises the lanes, and the result depends only on the values, never on
/// the plane's address (a sample's statistics are the same alone or in a batch). `f` maps an element.
template <class F>
inline double lane_sum(const float* p, std::int64_t n, F f) {
  constexpr std::int64_t kLanes = 8;
  double acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::int64_t l = 0; l < kLanes; ++l) acc[l] += f(static_cast<double>(p[i + l]));
  for (std::int64_t l = 0; i < n; ++i, ++l) acc[l] += f(static_cast<double>(p[i]));
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/// lane_sum's element map for a plain sum.
inline constexpr auto plain_value = [](double v) { return v; };

namespace detail {

/// The largest of x[0, n) (-inf for none), over eight lanes as lane_sum: the loop vectorises.
inline float max_of(const float* x, std::int64_t n) {
  constexpr std::int64_t kLanes = 8;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::int64_t j = 0; j < kLanes; ++j) lane[j] = std::max(lane[j], x[i + j]);
  float best = *std::max_element(lane, lane + kLanes);
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

}  // namespace detail

/// y[plane] = mean or max of the plane.
inline void global_pool(const float* x, std::int64_t planes, std::int64_t plane, bool max, float* y,
                        ThreadPool& pool) {
  for_each_plane(pool, planes, plane, [&](std::int64_t task, std::size_t) {
    const float* src = x + task * plane;
    y[task] = max ? detail::max_of(src, plane)
                  : static_cast<float>(lane_sum(src, plane, plain_value) / static_cast<double>(plane));
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
        dst[i] = static_cast<float>(lane_sum(src + i * s.w, s.w, plain_value) / static_cast<double>(s.w));
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
