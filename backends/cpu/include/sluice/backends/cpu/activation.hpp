// sluice/backends/cpu/activation.hpp: the fused output pass of the CPU kernels: out = act(v + bias)
// over a contiguous run of floats, vectorised through Eigen arrays.
#pragma once

#include "sluice/backends/cpu/intrinsics.hpp"  // before Eigen: see there
#include <Eigen/Core>
#include <algorithm>
#include <cstddef>

#include "sluice/core/layer_specs.hpp"

namespace sluice::cpu::kernels {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

/// dst[i] = f(src[i]) for i < n, computed on fixed 16-float chunks in a local array (the tail padded),
/// so every element goes through the same vector code whatever its index or address. Eigen's
/// dynamic-size maps peel scalars for alignment and tails, and its vector exp rounds differently
/// from the scalar one: a sample's result would then depend on where the batch put it.
template <class F>
inline void map_chunks(const float* src, float* dst, std::ptrdiff_t n, F f) {
  constexpr std::ptrdiff_t kChunk = 16;
  Eigen::Array<float, kChunk, 1> chunk;
  for (std::ptrdiff_t i = 0; i < n; i += kChunk) {
    const std::ptrdiff_t m = std::min(kChunk, n - i);
    if (m < kChunk) chunk.setZero();
    std::copy_n(src + i, m, chunk.data());
    chunk = f(chunk);
    std::copy_n(chunk.data(), m, dst + i);
  }
}

inline void sigmoid(const float* src, float* dst, std::ptrdiff_t n, float bias) {
  map_chunks(src, dst, n, [bias](const auto& x) { return 1.0f / (1.0f + (-(x + bias)).exp()); });
}

/// p[i] = act(p[i] + bias) for i < n.
inline void bias_activation(float* p, std::ptrdiff_t n, float bias, Activation act) {
  ArrayMap a(p, n);
  switch (act) {
    case Activation::none:
      if (bias != 0.0f) a += bias;
      break;
    case Activation::relu:
      a = (a + bias).max(0.0f);
      break;
    case Activation::sigmoid:
      sigmoid(p, p, n, bias);
      break;
  }
}

inline void activation(float* p, std::ptrdiff_t n, Activation act) { bias_activation(p, n, 0.0f, act); }

/// dst[i] = act(src[i]) for i < n (dst may equal src).
inline void activation_copy(const float* src, float* dst, std::ptrdiff_t n, Activation act) {
  Eigen::Map<const Eigen::ArrayXf> s(src, n);
  ArrayMap d(dst, n);
  switch (act) {
    case Activation::none: d = s; break;
    case Activation::relu: d = s.max(0.0f); break;
    case Activation::sigmoid: sigmoid(src, dst, n, 0.0f); break;
  }
}

}  // namespace sluice::cpu::kernels
