// sluice/backends/cpu/pointwise.hpp: element-wise kernels of the CPU backend: act(a + b) and the
// broadcast multiply of attention gates (x * g with g of shape (N,C,1,1), (N,1,H,W), (N,1,H,1),
// (N,1,1,W) or x's own shape).
#pragma once

#include "sluice/backends/cpu/intrinsics.hpp"  // before Eigen: see there
#include <Eigen/Core>
#include <cstdint>

#include "sluice/backends/cpu/activation.hpp"
#include "sluice/backends/cpu/plane_tasks.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu::kernels {

using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

/// y = act(a + b) for every plane.
inline void add(const float* a, const float* b, std::int64_t planes, std::int64_t plane, Activation act, float* y,
                ThreadPool& pool) {
  for_each_plane(pool, planes, plane, [&](std::int64_t task, std::size_t) {
    const std::int64_t off = task * plane;
    ArrayMap(y + off, plane) = ConstArrayMap(a + off, plane) + ConstArrayMap(b + off, plane);
    activation(y + off, plane, act);
  });
}

enum class Broadcast { full, per_channel, per_pixel, per_row, per_column };

/// y = x * g, g broadcast as `mode` says (g's shape was checked by the caller).
inline void mul(const float* x, const Shape& s, const float* g, Broadcast mode, float* y, ThreadPool& pool) {
  const std::int64_t plane = s.plane();
  for_each_plane(pool, s.n * s.c, plane, [&](std::int64_t t, std::size_t) {
    const std::int64_t n = t / s.c;
    ConstArrayMap in(x + t * plane, plane);
    ArrayMap out(y + t * plane, plane);
    switch (mode) {
      case Broadcast::full: out = in * ConstArrayMap(g + t * plane, plane); break;
      case Broadcast::per_channel: out = in * g[t]; break;
      case Broadcast::per_pixel: out = in * ConstArrayMap(g + n * plane, plane); break;
      case Broadcast::per_row: {
        const float* gr = g + n * s.h;
        for (std::int64_t i = 0; i < s.h; ++i) out.segment(i * s.w, s.w) = in.segment(i * s.w, s.w) * gr[i];
        break;
      }
      case Broadcast::per_column: {
        ConstArrayMap gc(g + n * s.w, s.w);
        for (std::int64_t i = 0; i < s.h; ++i) out.segment(i * s.w, s.w) = in.segment(i * s.w, s.w) * gc;
        break;
      }
    }
  });
}

}  // namespace sluice::cpu::kernels
