// sluice/backends/cpu/resample.hpp: spatial resampling kernels of the CPU backend: 2x2 max pooling
// (floor on odd sizes) and bilinear resizing with PyTorch's exact source-index rules (no antialias).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sluice/backends/cpu/thread_pool.hpp"

namespace sluice::cpu::kernels {

/// MaxPool2d(2, 2): y (h/2 x w/2) per plane.
inline void max_pool2x2(const float* x, std::int64_t planes, std::int64_t h, std::int64_t w, float* y,
                        ThreadPool& pool) {
  const std::int64_t oh = h / 2, ow = w / 2;
  pool.parallel_for(static_cast<std::size_t>(planes), [&](std::size_t task, std::size_t) {
    const float* src = x + static_cast<std::int64_t>(task) * h * w;
    float* dst = y + static_cast<std::int64_t>(task) * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i) {
      const float* r0 = src + 2 * i * w;
      const float* r1 = r0 + w;
      for (std::int64_t j = 0; j < ow; ++j)
        dst[i * ow + j] = std::max(std::max(r0[2 * j], r0[2 * j + 1]), std::max(r1[2 * j], r1[2 * j + 1]));
    }
  });
}

/// The two source taps and weights of each output index along one axis.
struct LinearTaps {
  std::vector<std::int64_t> i0, i1;
  std::vector<float> w0, w1;
};

/// PyTorch's rules (upsample_bilinear2d, no scale_factor given):
///  align_corners:  scale = (in - 1) / (out - 1) (0 when out == 1), src = scale * dst;
///  otherwise:      scale = in / out, src = max(scale * (dst + 0.5) - 0.5, 0);
///  i0 = min(floor(src), in - 1), lambda = clamp(src - i0, 0, 1), i1 = i0 + (i0 < in - 1).
/// src and lambda are computed in double, as a float64 PyTorch does, and lambda is rounded to float
/// once: a float src near 512 is off by up to 3e-5, which moved lambda by more than all the float
/// arithmetic of the blend (PyTorch's float path itself computes src partly in double).
inline LinearTaps linear_taps(std::int64_t in, std::int64_t out, bool align_corners) {
  LinearTaps t;
  t.i0.resize(static_cast<std::size_t>(out));
  t.i1.resize(static_cast<std::size_t>(out));
  t.w0.resize(static_cast<std::size_t>(out));
  t.w1.resize(static_cast<std::size_t>(out));
  double scale;
  if (align_corners) {
    scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  } else {
    scale = static_cast<double>(in) / static_cast<double>(out);
  }
  for (std::int64_t d = 0; d < out; ++d) {
    double src = align_corners ? scale * static_cast<double>(d) : scale * (static_cast<double>(d) + 0.5) - 0.5;
    if (!align_corners && src < 0.0) src = 0.0;
    const std::int64_t i0 = std::min(static_cast<std::int64_t>(std::floor(src)), in - 1);
    const double lambda = std::clamp(src - static_cast<double>(i0), 0.0, 1.0);
    const auto k = static_cast<std::size_t>(d);
    t.i0[k] = i0;
    t.i1[k] = i0 + (i0 < in - 1 ? 1 : 0);
    t.w1[k] = static_cast<float>(lambda);
    t.w0[k] = static_cast<float>(1.0 - lambda);
  }
  return t;
}

/// Bilinear resize of every plane from h x w to oh x ow.
inline void resize_bilinear(const float* x, std::int64_t planes, std::int64_t h, std::int64_t w, std::int64_t oh,
                            std::int64_t ow, bool align_corners, float* y, ThreadPool& pool) {
  const LinearTaps th = linear_taps(h, oh, align_corners), tw = linear_taps(w, ow, align_corners);
  pool.parallel_for(static_cast<std::size_t>(planes), [&](std::size_t task, std::size_t) {
    const float* src = x + static_cast<std::int64_t>(task) * h * w;
    float* dst = y + static_cast<std::int64_t>(task) * oh * ow;
    for (std::int64_t i = 0; i < oh; ++i) {
      const auto ki = static_cast<std::size_t>(i);
      const float* r0 = src + th.i0[ki] * w;
      const float* r1 = src + th.i1[ki] * w;
      const float h0 = th.w0[ki], h1 = th.w1[ki];
      float* out = dst + i * ow;
      for (std::int64_t j = 0; j < ow; ++j) {
        const auto kj = static_cast<std::size_t>(j);
        const std::int64_t j0 = tw.i0[kj], j1 = tw.i1[kj];
        const float w0 = tw.w0[kj], w1 = tw.w1[kj];
        out[j] = h0 * (w0 * r0[j0] + w1 * r0[j1]) + h1 * (w0 * r1[j0] + w1 * r1[j1]);
      }
    }
  });
}

}  // namespace sluice::cpu::kernels
