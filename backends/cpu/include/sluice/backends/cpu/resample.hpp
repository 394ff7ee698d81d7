// sluice/backends/cpu/resample.hpp: spatial resampling kernels of the CPU backend: 2x2 max pooling
// (floor on odd sizes) and bilinear resizing with PyTorch's exact source-index rules (no antialias).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sluice/backends/cpu/plane_tasks.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"

namespace sluice::cpu::kernels {

/// MaxPool2d(2, 2): y (h/2 x w/2) per plane.
inline void max_pool2x2(const float* x, std::int64_t planes, std::int64_t h, std::int64_t w, float* y,
                        ThreadPool& pool) {
  const std::int64_t oh = h / 2, ow = w / 2;
  for_each_plane(pool, planes, h * w, [&](std::int64_t task, std::size_t) {
    const float* src = x + task * h * w;
    float* dst = y + task * oh * ow;
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

/// Bilinear resize of every plane from h x w to oh x ow. Each source row a plane needs is resampled
/// along its width once (gathers), into one of two row slots, and each output row blends its two
/// slots (contiguous: it vectorises) -- the same arithmetic, h0 * (w0 a + w1 b) + h1 * (w0 c + w1 d),
/// as blending the four taps per pixel, with an upsampling's gathers done once per source row rather
/// than twice per output row.
inline void resize_bilinear(const float* x, std::int64_t planes, std::int64_t h, std::int64_t w, std::int64_t oh,
                            std::int64_t ow, bool align_corners, float* y, ThreadPool& pool) {
  const LinearTaps th = linear_taps(h, oh, align_corners), tw = linear_taps(w, ow, align_corners);
  std::vector<float> scratch(pool.size() * 2 * static_cast<std::size_t>(ow));
  for_each_plane(pool, planes, oh * ow, [&](std::int64_t task, std::size_t worker) {
    const float* src = x + task * h * w;
    float* dst = y + task * oh * ow;
    float* slot[2] = {scratch.data() + worker * 2 * static_cast<std::size_t>(ow),
                      scratch.data() + (worker * 2 + 1) * static_cast<std::size_t>(ow)};
    std::int64_t held[2] = {-1, -1};  // the source row each slot holds
    // The slot holding source row r resampled along the width; a miss fills the slot other than
    // `keep` (-1: the one holding the lower row, as the rows needed only grow).
    const auto row = [&](std::int64_t r, int keep) -> int {
      for (int k = 0; k < 2; ++k)
        if (held[k] == r) return k;
      const int k = keep >= 0 ? 1 - keep : (held[0] <= held[1] ? 0 : 1);
      const float* in = src + r * w;
      float* out = slot[k];
      for (std::int64_t j = 0; j < ow; ++j) {
        const auto kj = static_cast<std::size_t>(j);
        out[j] = tw.w0[kj] * in[tw.i0[kj]] + tw.w1[kj] * in[tw.i1[kj]];
      }
      held[k] = r;
      return k;
    };
    for (std::int64_t i = 0; i < oh; ++i) {
      const auto ki = static_cast<std::size_t>(i);
      const int k0 = row(th.i0[ki], -1);
      const int k1 = row(th.i1[ki], k0);
      const float* r0 = slot[k0];
      const float* r1 = slot[k1];
      const float h0 = th.w0[ki], h1 = th.w1[ki];
      float* out = dst + i * ow;
      for (std::int64_t j = 0; j < ow; ++j) out[j] = h0 * r0[j] + h1 * r1[j];
    }
  });
}

}  // namespace sluice::cpu::kernels
