// sluice/backends/cpu/norm.hpp: per-plane statistics kernels of the CPU backend: affine instance norm
// fused with a residual add and an activation, and SimAM. Mean and biased variance come from a
// corrected two-pass sum (no cancellation), accumulated in float within blocks and in double across
// them, then applied in float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "sluice/backends/cpu/activation.hpp"
#include "sluice/backends/cpu/plane_tasks.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"

namespace sluice::cpu::kernels {

struct PlaneStats {
  double mean, var;  // biased variance
};

namespace detail {

// Statistics sums: float adds over 64 interleaved lanes (four independent vector chains) within
// blocks of 2048 elements, each block's lanes folded in a fixed order and added in double. Float
// adds run 8x as many elements per instruction as double ones with no conversion; a lane adds 32
// elements of a block, so its rounding stays near 1e-6 of the block's sum.
inline constexpr std::int64_t kStatLanes = 64;
inline constexpr std::int64_t kStatBlock = 2048;

inline double fold_lanes(float* acc) {
  for (std::int64_t width = kStatLanes / 2; width > 0; width /= 2)
    for (std::int64_t l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0];
}

}  // namespace detail

/// Mean and biased variance of a plane, corrected two-pass: a first mean m0, then the sums of
/// d = x - m0 and d^2 (whose size is the spread, not the offset: no cancellation however large the
/// mean), mean = m0 + sum(d) / n, var = sum(d^2) / n - (sum(d) / n)^2. Block by block from the
/// plane's start, so a sample's statistics never depend on where its plane sits in a batch.
inline PlaneStats plane_stats(const float* p, std::int64_t n) {
  using detail::kStatBlock, detail::kStatLanes;
  double sum = 0.0;
  for (std::int64_t start = 0; start < n; start += kStatBlock) {
    const std::int64_t end = std::min(n, start + kStatBlock);
    float acc[kStatLanes] = {};
    std::int64_t i = start;
    for (; i + kStatLanes <= end; i += kStatLanes)
      for (std::int64_t l = 0; l < kStatLanes; ++l) acc[l] += p[i + l];
    for (std::int64_t l = 0; i < end; ++i, ++l) acc[l] += p[i];
    sum += detail::fold_lanes(acc);
  }
  const float m0 = static_cast<float>(sum / static_cast<double>(n));
  double sum_d = 0.0, sum_d2 = 0.0;
  for (std::int64_t start = 0; start < n; start += kStatBlock) {
    const std::int64_t end = std::min(n, start + kStatBlock);
    float acc_d[kStatLanes] = {}, acc_d2[kStatLanes] = {};
    std::int64_t i = start;
    for (; i + kStatLanes <= end; i += kStatLanes)
      for (std::int64_t l = 0; l < kStatLanes; ++l) {
        const float d = p[i + l] - m0;
        acc_d[l] += d;
        acc_d2[l] += d * d;
      }
    for (std::int64_t l = 0; i < end; ++i, ++l) {
      const float d = p[i] - m0;
      acc_d[l] += d;
      acc_d2[l] += d * d;
    }
    sum_d += detail::fold_lanes(acc_d);
    sum_d2 += detail::fold_lanes(acc_d2);
  }
  const double shift = sum_d / static_cast<double>(n);
  return {static_cast<double>(m0) + shift, std::max(0.0, sum_d2 / static_cast<double>(n) - shift * shift)};
}

/// y = act(gamma * (x - mean) / sqrt(var + eps) + beta + residual) per (n, c) plane; residual may be null.
inline void instance_norm(const float* x, const NormParams& p, std::int64_t planes, std::int64_t plane,
                          const float* residual, Activation act, float* y, ThreadPool& pool) {
  constexpr double eps = 1e-5;
  const float* gamma = p.gamma->values.data();
  const float* beta = p.beta->values.data();
  for_each_plane(pool, planes, plane, [&](std::int64_t t, std::size_t) {
    const std::int64_t c = t % p.channels;
    const float* src = x + t * plane;
    const PlaneStats s = plane_stats(src, plane);
    const double scale = gamma[c] / std::sqrt(s.var + eps);
    // (x - mean) * scale + beta: subtracting first keeps planes with a large mean exact.
    const float m = static_cast<float>(s.mean), a = static_cast<float>(scale), b = beta[c];
    float* dst = y + t * plane;
    const float* res = residual ? residual + t * plane : nullptr;
    // One pass for the common epilogues (none or ReLU, with or without a residual); sigmoid is rare.
    auto normalise = [&](auto relu, auto with_residual) {
      for (std::int64_t i = 0; i < plane; ++i) {
        float v = (src[i] - m) * a + b;
        if constexpr (with_residual) v += res[i];
        dst[i] = relu ? std::max(v, 0.0f) : v;
      }
    };
    const bool relu = act == Activation::relu;
    if (res) {
      relu ? normalise(std::true_type{}, std::true_type{}) : normalise(std::false_type{}, std::true_type{});
    } else {
      relu ? normalise(std::true_type{}, std::false_type{}) : normalise(std::false_type{}, std::false_type{});
    }
    if (act == Activation::sigmoid) activation(dst, plane, act);
  });
}

/// SimAM as deployed: y = x * sigmoid(-(x - mean) / sqrt(var + eps)) per (n, c) plane.
inline void simam(const float* x, std::int64_t planes, std::int64_t plane, float eps, float* y, ThreadPool& pool) {
  for_each_plane(pool, planes, plane, [&](std::int64_t t, std::size_t) {
    const float* src = x + t * plane;
    const PlaneStats s = plane_stats(src, plane);
    // sigmoid(-(x - mean) * r) = 1 / (1 + exp((x - mean) * r))
    const float r = static_cast<float>(1.0 / std::sqrt(s.var + static_cast<double>(eps)));
    const float m = static_cast<float>(s.mean);
    map_chunks(src, y + t * plane, plane, [m, r](const auto& in) { return in / (1.0f + ((in - m) * r).exp()); });
  });
}

}  // namespace sluice::cpu::kernels
