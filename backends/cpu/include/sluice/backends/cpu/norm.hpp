// sluice/backends/cpu/norm.hpp: per-plane statistics kernels of the CPU backend: affine instance norm
// fused with a residual add and an activation, and SimAM. Mean and biased variance are computed in
// double with two passes (no cancellation), then applied in float.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "sluice/backends/cpu/activation.hpp"
#include "sluice/backends/cpu/reduce.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"

namespace sluice::cpu::kernels {

struct PlaneStats {
  double mean, var;  // biased variance
};

/// Mean and biased variance in double, two passes (no cancellation).
inline PlaneStats plane_stats(const float* p, std::int64_t n) {
  const double mean = lane_sum(p, n, plain_value) / static_cast<double>(n);
  const double sq = lane_sum(p, n, [mean](double v) { return (v - mean) * (v - mean); });
  return {mean, sq / static_cast<double>(n)};
}

/// y = act(gamma * (x - mean) / sqrt(var + eps) + beta + residual) per (n, c) plane; residual may be null.
inline void instance_norm(const float* x, const NormParams& p, std::int64_t planes, std::int64_t plane,
                          const float* residual, Activation act, float* y, ThreadPool& pool) {
  constexpr double eps = 1e-5;
  const float* gamma = p.gamma->values.data();
  const float* beta = p.beta->values.data();
  pool.parallel_for(static_cast<std::size_t>(planes), [&](std::size_t task, std::size_t) {
    const std::int64_t t = static_cast<std::int64_t>(task), c = t % p.channels;
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
  pool.parallel_for(static_cast<std::size_t>(planes), [&](std::size_t task, std::size_t) {
    const std::int64_t t = static_cast<std::int64_t>(task);
    const float* src = x + t * plane;
    const PlaneStats s = plane_stats(src, plane);
    // sigmoid(-(x - mean) * r) = 1 / (1 + exp((x - mean) * r))
    const float r = static_cast<float>(1.0 / std::sqrt(s.var + static_cast<double>(eps)));
    const float m = static_cast<float>(s.mean);
    map_chunks(src, y + t * plane, plane, [m, r](const auto& in) { return in / (1.0f + ((in - m) * r).exp()); });
  });
}

}  // namespace sluice::cpu::kernels
