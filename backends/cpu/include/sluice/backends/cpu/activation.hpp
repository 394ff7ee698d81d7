// sluice/backends/cpu/activation.hpp: the fused output pass of the CPU kernels: out = act(v + bias)
// over a contiguous run of floats, vectorised through Eigen arrays.
#pragma once

#include <Eigen/Core>
#include <cstddef>

#include "sluice/core/layer_specs.hpp"

namespace sluice::cpu::kernels {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

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
      a = 1.0f / (1.0f + (-(a + bias)).exp());
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
    case Activation::sigmoid: d = 1.0f / (1.0f + (-s).exp()); break;
  }
}

}  // namespace sluice::cpu::kernels
