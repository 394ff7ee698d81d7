// backends/cuda/src/kernels.cu: the CUDA backend's own kernels for everything that is not a
// convolution: layout conversion, fused bias/activation, the 2x2 transposed-conv pixel shuffle,
// elementwise and broadcast ops, pooling, bilinear resize, and the per-plane reductions (instance
// norm, SimAM, global pools). All tensors are NHWC; arithmetic is float whatever the storage type.
//
// Kernels are written plainly -- one element per thread in a grid-stride loop -- so that each is
// easy to check against its reference; the heavy arithmetic of the networks is in cuDNN. The passes
// that touch whole activations (bias / activation, add, norms, concat, pooling, resize, the pixel
// shuffle) also have a vectorised form that moves 16 bytes per load and store (8 halves or 4 floats
// of consecutive channels): these passes are memory-bound, and 2-byte accesses leave most of the
// bandwidth unused. The launchers pick it when the channel count is a multiple of the pack and the
// pointers are 16-byte aligned (the allocator's blocks are), else the scalar form.
#include <algorithm>
#include <cfloat>

#include "device_common.cuh"

namespace sluice::cuda::kernels {

namespace {

#define SLUICE_GRID_STRIDE(I, i, count) \
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < (count); i += static_cast<I>(gridDim.x) * blockDim.x)

// ---- layout and conversion ----

template <class T, class I>
__global__ void nchw_to_nhwc_kernel(const float* __restrict__ src, T* __restrict__ dst, I c, I hw, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    const I t = i / c;
    const I p = t % hw;
    const I n = t / hw;
    dst[i] = from_float<T>(src[(n * c + ch) * hw + p]);
  }
}

template <class T, class I>
__global__ void nhwc_to_nchw_kernel(const T* __restrict__ src, float* __restrict__ dst, I c, I hw, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I p = i % hw;
    const I t = i / hw;
    const I ch = t % c;
    const I n = t / c;
    dst[i] = to_float(src[(n * hw + p) * c + ch]);
  }
}

template <class T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, i64 count) {
  SLUICE_GRID_STRIDE(i64, i, count) dst[i] = from_float<T>(src[i]);
}

// ---- elementwise ----

template <class T, class I>
__global__ void bias_activation_kernel(T* y, const float* __restrict__ bias, I c, I count, Activation act) {
  SLUICE_GRID_STRIDE(I, i, count) {
    float v = to_float(y[i]);
    if (bias != nullptr) v += bias[i % c];
    y[i] = from_float<T>(apply_activation(v, act));
  }
}

template <class T, class I>
__global__ void shuffle2x2_bias_kernel(const T* __restrict__ src, T* __restrict__ dst, const float* __restrict__ bias,
                                       I h, I w, I c, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I co = i % c;
    I t = i / c;
    const I ox = t % (2 * w);
    t /= 2 * w;
    const I oy = t % (2 * h);
    const I n = t / (2 * h);
    const I tap = (oy & 1) * 2 + (ox & 1);
    const I s = ((n * h + oy / 2) * w + ox / 2) * (4 * c) + tap * c + co;
    float v = to_float(src[s]);
    if (bias != nullptr) v += bias[co];
    dst[i] = from_float<T>(v);
  }
}

template <class T>
__global__ void activation_kernel(const T* __restrict__ x, T* __restrict__ y, i64 count, Activation act) {
  SLUICE_GRID_STRIDE(i64, i, count) y[i] = from_float<T>(apply_activation(to_float(x[i]), act));
}

template <class T>
__global__ void add_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, i64 count,
                           Activation act) {
  SLUICE_GRID_STRIDE(i64, i, count) y[i] = from_float<T>(apply_activation(to_float(a[i]) + to_float(b[i]), act));
}

template <class T, class I>
__global__ void bias_activation_vec_kernel(T* y, const float* __restrict__ bias, I c, I packs, Activation act) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    float v[V];
    load_pack(y + i * V, v);
    const I ch = (i * V) % c;
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = apply_activation(bias != nullptr ? v[k] + bias[ch + k] : v[k], act);
    store_pack(y + i * V, v);
  }
}

template <class T, class I>
__global__ void shuffle2x2_bias_vec_kernel(const T* __restrict__ src, T* __restrict__ dst, const float* __restrict__ bias,
                                           I h, I w, I c, I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const I co = e % c;
    I t = e / c;
    const I ox = t % (2 * w);
    t /= 2 * w;
    const I oy = t % (2 * h);
    const I n = t / (2 * h);
    const I tap = (oy & 1) * 2 + (ox & 1);
    float v[V];
    load_pack(src + ((n * h + oy / 2) * w + ox / 2) * (4 * c) + tap * c + co, v);
    if (bias != nullptr)
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] += bias[co + k];
    store_pack(dst + e, v);
  }
}

template <class T>
__global__ void activation_vec_kernel(const T* __restrict__ x, T* __restrict__ y, i64 packs, Activation act) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(i64, i, packs) {
    float v[V];
    load_pack(x + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = apply_activation(v[k], act);
    store_pack(y + i * V, v);
  }
}

template <class T>
__global__ void add_vec_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, i64 packs,
                               Activation act) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(i64, i, packs) {
    float u[V], v[V];
    load_pack(a + i * V, u);
    load_pack(b + i * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) u[k] = apply_activation(u[k] + v[k], act);
    store_pack(y + i * V, u);
  }
}

// g's strides in its own NHWC layout, 0 along broadcast dimensions.
template <class I>
struct BroadcastStrides {
  I n, h, w, c;
};

template <class T, class I>
__global__ void mul_broadcast_kernel(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ y, I h, I w,
                                     I c, BroadcastStrides<I> gs, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    I t = i / c;
    const I xw = t % w;
    t /= w;
    const I xh = t % h;
    const I n = t / h;
    const I gi = n * gs.n + xh * gs.h + xw * gs.w + ch * gs.c;
    y[i] = from_float<T>(to_float(x[i]) * to_float(g[gi]));
  }
}

// x packs of channels; g either has the channels too (gs.c == 1: a pack of g) or one value per pixel.
template <class T, class I>
__global__ void mul_broadcast_vec_kernel(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ y, I h, I w,
                                         I c, BroadcastStrides<I> gs, I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const I ch = e % c;
    I t = e / c;
    const I xw = t % w;
    t /= w;
    const I xh = t % h;
    const I n = t / h;
    const I gi = n * gs.n + xh * gs.h + xw * gs.w + ch * gs.c;
    float v[V], gv[V];
    load_pack(x + e, v);
    if (gs.c != 0) {
      load_pack(g + gi, gv);
    } else {
      const float one = to_float(g[gi]);
#pragma unroll
      for (int k = 0; k < V; ++k) gv[k] = one;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] *= gv[k];
    store_pack(y + e, v);
  }
}

template <class T, class I>
__global__ void copy_channels_vec_kernel(const T* __restrict__ src, T* __restrict__ dst, I c_src, I c_dst, I offset,
                                         I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const I ch = e % c_src;
    const I p = e / c_src;
    *reinterpret_cast<uint4*>(dst + p * c_dst + offset + ch) = *reinterpret_cast<const uint4*>(src + e);
  }
}

template <class T, class I>
__global__ void max_pool2x2_vec_kernel(const T* __restrict__ x, T* __restrict__ y, I h, I w, I c, I ho, I wo,
                                       I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const I ch = e % c;
    I t = e / c;
    const I ox = t % wo;
    t /= wo;
    const I oy = t % ho;
    const I n = t / ho;
    const T* base = x + ((n * h + 2 * oy) * w + 2 * ox) * c + ch;
    float a[V], b[V], d[V], f[V];
    load_pack(base, a);
    load_pack(base + c, b);
    load_pack(base + w * c, d);
    load_pack(base + w * c + c, f);
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] = fmaxf(fmaxf(a[k], b[k]), fmaxf(d[k], f[k]));
    store_pack(y + e, a);
  }
}

template <class T, class I>
__global__ void copy_channels_kernel(const T* __restrict__ src, T* __restrict__ dst, I c_src, I c_dst, I offset,
                                     I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c_src;
    const I p = i / c_src;
    dst[p * c_dst + offset + ch] = src[i];
  }
}

template <class T, class I>
__global__ void max_pool2x2_kernel(const T* __restrict__ x, T* __restrict__ y, I h, I w, I c, I ho, I wo, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    I t = i / c;
    const I ox = t % wo;
    t /= wo;
    const I oy = t % ho;
    const I n = t / ho;
    const I base = ((n * h + 2 * oy) * w + 2 * ox) * c + ch;
    const float a = fmaxf(to_float(x[base]), to_float(x[base + c]));
    const float b = fmaxf(to_float(x[base + w * c]), to_float(x[base + w * c + c]));
    y[i] = from_float<T>(fmaxf(a, b));
  }
}

struct DirectConvGeometry {
  int kh, kw, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

template <class T, class I>
__global__ void conv2d_direct_kernel(const T* __restrict__ x, const T* __restrict__ filter, T* __restrict__ y, I h,
                                     I w, I c, I out, I ho, I wo, I cin_g, I cout_g, DirectConvGeometry g, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I co = i % out;
    I t = i / out;
    const i64 ox = static_cast<i64>(t % wo);
    t /= wo;
    const i64 oy = static_cast<i64>(t % ho);
    const I n = t / ho;
    const I group = co / cout_g;
    float acc = 0.0f;
    for (int r = 0; r < g.kh; ++r) {
      const i64 iy = oy * g.stride_h - g.pad_h + static_cast<i64>(r) * g.dilation_h;
      if (iy < 0 || iy >= static_cast<i64>(h)) continue;
      for (int s = 0; s < g.kw; ++s) {
        const i64 ix = ox * g.stride_w - g.pad_w + static_cast<i64>(s) * g.dilation_w;
        if (ix < 0 || ix >= static_cast<i64>(w)) continue;
        const T* xp = x + ((n * h + static_cast<I>(iy)) * w + static_cast<I>(ix)) * c + group * cin_g;
        const T* wp = filter + ((co * g.kh + r) * g.kw + s) * cin_g;
        for (I k = 0; k < cin_g; ++k) acc += to_float(xp[k]) * to_float(wp[k]);
      }
    }
    y[i] = from_float<T>(acc);
  }
}

// PyTorch's area_pixel_compute_source_index for linear modes.
__device__ __forceinline__ float source_index(float scale, int dst, bool align_corners) {
  if (align_corners) return scale * static_cast<float>(dst);
  const float src = scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  return src < 0.0f ? 0.0f : src;
}

// The four source elements of output element `i` (NHWC, channel i % c): the first's offset, the
// steps to its right and lower neighbours (0 at the border), and the weights.
template <class I>
struct BilinearTaps {
  I base, dw, dh;
  float h0, h1, w0, w1;
};

template <class I>
__device__ __forceinline__ BilinearTaps<I> bilinear_taps(I i, I c, I h, I w, I ho, I wo, float scale_h, float scale_w,
                                                         bool align_corners) {
  const I ch = i % c;
  I t = i / c;
  const int ox = static_cast<int>(t % wo);
  t /= wo;
  const int oy = static_cast<int>(t % ho);
  const I n = t / ho;
  const float hr = source_index(scale_h, oy, align_corners);
  const int h1 = static_cast<int>(hr);
  const float wr = source_index(scale_w, ox, align_corners);
  const int w1 = static_cast<int>(wr);
  BilinearTaps<I> p;
  p.h1 = hr - static_cast<float>(h1);
  p.h0 = 1.0f - p.h1;
  p.w1 = wr - static_cast<float>(w1);
  p.w0 = 1.0f - p.w1;
  p.base = ((n * h + static_cast<I>(h1)) * w + static_cast<I>(w1)) * c + ch;
  p.dw = w1 < static_cast<int>(w) - 1 ? c : 0;
  p.dh = h1 < static_cast<int>(h) - 1 ? w * c : 0;
  return p;
}

template <class T, class I>
__global__ void resize_bilinear_kernel(const T* __restrict__ x, T* __restrict__ y, I c, I h, I w, I ho, I wo,
                                       float scale_h, float scale_w, bool align_corners, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const BilinearTaps<I> p = bilinear_taps(i, c, h, w, ho, wo, scale_h, scale_w, align_corners);
    const T* base = x + p.base;
    const float v = p.h0 * (p.w0 * to_float(base[0]) + p.w1 * to_float(base[p.dw])) +
                    p.h1 * (p.w0 * to_float(base[p.dh]) + p.w1 * to_float(base[p.dh + p.dw]));
    y[i] = from_float<T>(v);
  }
}

template <class T, class I>
__global__ void resize_bilinear_vec_kernel(const T* __restrict__ x, T* __restrict__ y, I c, I h, I w, I ho, I wo,
                                           float scale_h, float scale_w, bool align_corners, I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const BilinearTaps<I> p = bilinear_taps(e, c, h, w, ho, wo, scale_h, scale_w, align_corners);
    const T* base = x + p.base;
    float p00[V], p01[V], p10[V], p11[V];
    load_pack(base, p00);
    load_pack(base + p.dw, p01);
    load_pack(base + p.dh, p10);
    load_pack(base + p.dh + p.dw, p11);
#pragma unroll
    for (int k = 0; k < V; ++k)
      p00[k] = p.h0 * (p.w0 * p00[k] + p.w1 * p01[k]) + p.h1 * (p.w0 * p10[k] + p.w1 * p11[k]);
    store_pack(y + e, p00);
  }
}

// ---- plane reductions ----
// Stage 1: a block reduces one chunk of pixels of one sample into a partial per channel (scalar
// form: 32 channels x 8 pixel lanes; vectorised form: 16-byte channel packs x as many pixel lanes as
// fit 256 threads). Stage 2: a warp per (sample, channel) combines its partials in double; they are
// stored (sample, channel, chunk), so the warp reads them contiguously. Moments are of x - x[pixel 0] (a shift that keeps E[x^2] - E[x]^2 accurate when the mean is large
// against the spread); deterministic, no atomics. Chunks are sized for about 1024 blocks in all:
// enough to fill the device at batch 1, few enough partials per channel at large batches that stage 2
// stays short.

constexpr int chunk_lanes = 8;
constexpr i64 min_chunk_pixels = 256;
constexpr i64 target_chunk_blocks = 1024;

struct PlaneChunks {
  i64 count, pixels;  // chunks per sample, pixels per chunk (the last may have fewer, or none)
};

inline PlaneChunks plane_chunking(i64 n, i64 hw) {
  const i64 most = (hw + min_chunk_pixels - 1) / min_chunk_pixels;
  const i64 wanted = (target_chunk_blocks + n - 1) / n;
  const i64 count = std::max<i64>(1, std::min(most, wanted));
  return {count, (hw + count - 1) / count};
}

template <class T>
__global__ void plane_moments_partial_kernel(const T* __restrict__ x, float2* __restrict__ partial, i64 hw, i64 c,
                                             i64 chunks, i64 chunk_pixels) {
  __shared__ float sums[chunk_lanes][32];
  __shared__ float squares[chunk_lanes][32];
  const i64 ch = static_cast<i64>(blockIdx.y) * 32 + threadIdx.x;
  const i64 n = blockIdx.z;
  const i64 chunk = blockIdx.x;
  float s = 0.0f, ss = 0.0f;
  if (ch < c) {
    const T* sample = x + n * hw * c + ch;
    const float shift = to_float(sample[0]);
    const i64 end = min(hw, (chunk + 1) * chunk_pixels);
    for (i64 p = chunk * chunk_pixels + threadIdx.y; p < end; p += chunk_lanes) {
      const float v = to_float(sample[p * c]) - shift;
      s += v;
      ss += v * v;
    }
  }
  sums[threadIdx.y][threadIdx.x] = s;
  squares[threadIdx.y][threadIdx.x] = ss;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    for (int k = 1; k < chunk_lanes; ++k) {
      s += sums[k][threadIdx.x];
      ss += squares[k][threadIdx.x];
    }
    partial[(n * c + ch) * chunks + chunk] = make_float2(s, ss);
  }
}

// Thread t: channel pack t % groups, pixel lane t / groups (groups = c / pack <= blockDim.x).
template <class T>
__global__ void plane_moments_partial_vec_kernel(const T* __restrict__ x, float2* __restrict__ partial, i64 hw,
                                                 i64 c, i64 chunks, i64 chunk_pixels) {
  constexpr int V = pack_elems<T>;
  __shared__ float sums[threads_per_block * V];
  __shared__ float squares[threads_per_block * V];
  const int groups = static_cast<int>(c / V);
  const int lanes = static_cast<int>(blockDim.x) / groups;
  const int g = static_cast<int>(threadIdx.x) % groups;
  const int lane = static_cast<int>(threadIdx.x) / groups;
  const i64 n = blockIdx.y;
  const i64 chunk = blockIdx.x;
  float s[V], ss[V];
#pragma unroll
  for (int k = 0; k < V; ++k) s[k] = ss[k] = 0.0f;
  if (lane < lanes) {
    const T* sample = x + n * hw * c + static_cast<i64>(g) * V;
    float shift[V];
    load_pack(sample, shift);
    const i64 end = min(hw, (chunk + 1) * chunk_pixels);
    for (i64 p = chunk * chunk_pixels + lane; p < end; p += lanes) {
      float v[V];
      load_pack(sample + p * c, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float d = v[k] - shift[k];
        s[k] += d;
        ss[k] += d * d;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    sums[threadIdx.x * V + k] = s[k];
    squares[threadIdx.x * V + k] = ss[k];
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < groups) {  // lane 0 of pack g adds the other lanes, in lane order
    for (int l = 1; l < lanes; ++l)
#pragma unroll
      for (int k = 0; k < V; ++k) {
        s[k] += sums[(l * groups + g) * V + k];
        ss[k] += squares[(l * groups + g) * V + k];
      }
#pragma unroll
    for (int k = 0; k < V; ++k) partial[(n * c + static_cast<i64>(g) * V + k) * chunks + chunk] = make_float2(s[k], ss[k]);
  }
}

enum class MomentsUse { instance_norm, simam, mean };

// Combines the partials of (sample, channel) into `stats` = (shift, mean - shift, factor, beta), so
// that the apply passes compute ((x - shift) - (mean - shift)) * factor: no cancellation even when the
// mean dwarfs the spread. instance_norm: factor = gamma / sqrt(var + eps), beta; simam: factor =
// 1 / sqrt(var + eps); mean: out = mean, in the storage type.
template <class T>
__global__ void plane_moments_finalize_kernel(const T* __restrict__ x, const float2* __restrict__ partial, i64 n_total,
                                              i64 hw, i64 c, i64 chunks, MomentsUse use, const float* gamma,
                                              const float* beta, float eps, float4* stats, T* out) {
  const int lane = threadIdx.x % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x / 32);
  for (i64 i = static_cast<i64>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n_total * c; i += warps) {
    const i64 ch = i % c;
    const i64 n = i / c;
    double s = 0.0, ss = 0.0;
    for (i64 k = lane; k < chunks; k += 32) {
      const float2 v = partial[i * chunks + k];
      s += v.x;
      ss += v.y;
    }
    s = warp_sum(s);
    ss = warp_sum(ss);
    if (lane != 0) continue;
    const float shift = to_float(x[n * hw * c + ch]);
    const double mean_shifted = s / static_cast<double>(hw);
    double var = ss / static_cast<double>(hw) - mean_shifted * mean_shifted;
    if (var < 0.0) var = 0.0;
    const double inv_std = 1.0 / sqrt(var + static_cast<double>(eps));
    switch (use) {
      case MomentsUse::instance_norm:
        stats[i] = make_float4(shift, static_cast<float>(mean_shifted), static_cast<float>(gamma[ch] * inv_std), beta[ch]);
        break;
      case MomentsUse::simam:
        stats[i] = make_float4(shift, static_cast<float>(mean_shifted), static_cast<float>(inv_std), 0.0f);
        break;
      case MomentsUse::mean:
        out[i] = from_float<T>(static_cast<float>(static_cast<double>(shift) + mean_shifted));
        break;
    }
  }
}

template <class T, class I>
__global__ void norm_apply_kernel(const T* __restrict__ x, T* __restrict__ y, const float4* __restrict__ stats,
                                  const T* __restrict__ residual, Activation act, I c, I plane_elems, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    const I n = i / plane_elems;
    const float4 st = stats[n * c + ch];
    float v = ((to_float(x[i]) - st.x) - st.y) * st.z + st.w;
    if (residual != nullptr) v += to_float(residual[i]);
    y[i] = from_float<T>(apply_activation(v, act));
  }
}

template <class T, class I>
__global__ void norm_apply_vec_kernel(const T* __restrict__ x, T* __restrict__ y, const float4* __restrict__ stats,
                                      const T* __restrict__ residual, Activation act, I c, I plane_elems, I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const float4* st = stats + (e / plane_elems) * c + e % c;
    float v[V], r[V];
    load_pack(x + e, v);
    if (residual != nullptr) load_pack(residual + e, r);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float4 q = st[k];
      float o = ((v[k] - q.x) - q.y) * q.z + q.w;
      if (residual != nullptr) o += r[k];
      v[k] = apply_activation(o, act);
    }
    store_pack(y + e, v);
  }
}

template <class T, class I>
__global__ void simam_apply_vec_kernel(const T* __restrict__ x, T* __restrict__ y, const float4* __restrict__ stats,
                                       I c, I plane_elems, I packs) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(I, i, packs) {
    const I e = i * V;
    const float4* st = stats + (e / plane_elems) * c + e % c;
    float v[V];
    load_pack(x + e, v);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float4 q = st[k];
      v[k] = v[k] * sigmoidf(-((v[k] - q.x) - q.y) * q.z);
    }
    store_pack(y + e, v);
  }
}

template <class T, class I>
__global__ void simam_apply_kernel(const T* __restrict__ x, T* __restrict__ y, const float4* __restrict__ stats, I c,
                                   I plane_elems, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    const I n = i / plane_elems;
    const float4 st = stats[n * c + ch];
    const float v = to_float(x[i]);
    y[i] = from_float<T>(v * sigmoidf(-((v - st.x) - st.y) * st.z));
  }
}

template <class T>
__global__ void plane_max_partial_kernel(const T* __restrict__ x, float* __restrict__ partial, i64 hw, i64 c,
                                         i64 chunks, i64 chunk_pixels) {
  __shared__ float maxima[chunk_lanes][32];
  const i64 ch = static_cast<i64>(blockIdx.y) * 32 + threadIdx.x;
  const i64 n = blockIdx.z;
  const i64 chunk = blockIdx.x;
  float m = -FLT_MAX;
  if (ch < c) {
    const T* sample = x + n * hw * c + ch;
    const i64 end = min(hw, (chunk + 1) * chunk_pixels);
    for (i64 p = chunk * chunk_pixels + threadIdx.y; p < end; p += chunk_lanes) m = fmaxf(m, to_float(sample[p * c]));
  }
  maxima[threadIdx.y][threadIdx.x] = m;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    for (int k = 1; k < chunk_lanes; ++k) m = fmaxf(m, maxima[k][threadIdx.x]);
    partial[(n * c + ch) * chunks + chunk] = m;
  }
}

template <class T>
__global__ void plane_max_finalize_kernel(const float* __restrict__ partial, T* __restrict__ y, i64 n_total, i64 c,
                                          i64 chunks) {
  const int lane = threadIdx.x % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x / 32);
  for (i64 i = static_cast<i64>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; i < n_total * c; i += warps) {
    float m = -FLT_MAX;
    for (i64 k = lane; k < chunks; k += 32) m = fmaxf(m, partial[i * chunks + k]);
    m = warp_max(m);
    if (lane == 0) y[i] = from_float<T>(m);
  }
}

// ---- other reductions ----

// One warp per pixel.
template <class T>
__global__ void channel_mean_max_kernel(const T* __restrict__ x, T* __restrict__ y, i64 pixels, i64 c) {
  const int lane = threadIdx.x % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x / 32);
  for (i64 p = static_cast<i64>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; p < pixels; p += warps) {
    float s = 0.0f, m = -FLT_MAX;
    for (i64 ch = lane; ch < c; ch += 32) {
      const float v = to_float(x[p * c + ch]);
      s += v;
      m = fmaxf(m, v);
    }
    s = warp_sum(s);
    m = warp_max(m);
    if (lane == 0) {
      y[2 * p] = from_float<T>(s / static_cast<float>(c));
      y[2 * p + 1] = from_float<T>(m);
    }
  }
}

// One thread per pixel, its channels in 16-byte packs (a warp reads 32 consecutive pixels).
template <class T>
__global__ void channel_mean_max_vec_kernel(const T* __restrict__ x, T* __restrict__ y, i64 pixels, i64 c) {
  constexpr int V = pack_elems<T>;
  SLUICE_GRID_STRIDE(i64, p, pixels) {
    float s = 0.0f, m = -FLT_MAX;
    for (i64 ch = 0; ch < c; ch += V) {
      float v[V];
      load_pack(x + p * c + ch, v);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        s += v[k];
        m = fmaxf(m, v[k]);
      }
    }
    y[2 * p] = from_float<T>(s / static_cast<float>(c));
    y[2 * p + 1] = from_float<T>(m);
  }
}

// y (n, h, c): one thread per output, a loop over w (neighbouring threads read neighbouring channels).
template <class T, class I>
__global__ void mean_over_w_kernel(const T* __restrict__ x, T* __restrict__ y, I w, I c, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    const I row = i / c;  // n * h + y
    const T* p = x + row * w * c + ch;
    float s = 0.0f;
    for (I k = 0; k < w; ++k) s += to_float(p[k * c]);
    y[i] = from_float<T>(s / static_cast<float>(w));
  }
}

// y (n, w, c): one thread per output, a loop over h.
template <class T, class I>
__global__ void mean_over_h_kernel(const T* __restrict__ x, T* __restrict__ y, I h, I w, I c, I count) {
  SLUICE_GRID_STRIDE(I, i, count) {
    const I ch = i % c;
    I t = i / c;
    const I col = t % w;
    const I n = t / w;
    const T* p = x + (n * h * w + col) * c + ch;
    float s = 0.0f;
    for (I k = 0; k < h; ++k) s += to_float(p[k * w * c]);
    y[i] = from_float<T>(s / static_cast<float>(h));
  }
}

// One warp per (sample, output feature).
template <class T>
__global__ void linear_kernel(const T* __restrict__ x, T* __restrict__ y, i64 n_total, i64 in, i64 out,
                              const float* __restrict__ weight, const float* __restrict__ bias, Activation act) {
  const int lane = threadIdx.x % 32;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x / 32);
  for (i64 o = static_cast<i64>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; o < n_total * out; o += warps) {
    const i64 n = o / out;
    const i64 f = o % out;
    float s = 0.0f;
    for (i64 k = lane; k < in; k += 32) s += weight[f * in + k] * to_float(x[n * in + k]);
    s = warp_sum(s);
    if (lane == 0) y[o] = from_float<T>(apply_activation(s + (bias != nullptr ? bias[f] : 0.0f), act));
  }
}

}  // namespace

// ---- launchers ----

void nchw_to_nhwc(const float* src, void* dst, DType dt, i64 n, i64 c, i64 hw, cudaStream_t stream) {
  const i64 count = n * c * hw;
  if (count == 0) return;
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    nchw_to_nhwc_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(src, static_cast<T*>(dst), I(c),
                                                                                   I(hw), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void nhwc_to_nchw(const void* src, DType dt, float* dst, i64 n, i64 c, i64 hw, cudaStream_t stream) {
  const i64 count = n * c * hw;
  if (count == 0) return;
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    nhwc_to_nchw_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(static_cast<const T*>(src), dst,
                                                                                   I(c), I(hw), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void convert_from_float(const float* src, void* dst, DType dt, i64 count, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    convert_kernel<T><<<blocks_for(count), threads_per_block, 0, stream>>>(src, static_cast<T*>(dst), count);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void bias_activation(void* y, DType dt, const float* bias, i64 pixels, i64 c, Activation act, cudaStream_t stream) {
  const i64 count = pixels * c;
  if (count == 0 || (bias == nullptr && act == Activation::none)) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = c % v == 0 && aligned16({y});
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    if (vec) {
      bias_activation_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<T*>(y), bias, I(c), I(count / v), act);
      return;
    }
    bias_activation_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(static_cast<T*>(y), bias, I(c),
                                                                                      I(count), act);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void shuffle2x2_bias(const void* src, void* dst, DType dt, const float* bias, i64 n, i64 h, i64 w, i64 c,
                     cudaStream_t stream) {
  const i64 count = n * 4 * h * w * c;
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = c % v == 0 && aligned16({src, dst});
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    if (vec) {
      shuffle2x2_bias_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(src), static_cast<T*>(dst), bias, I(h), I(w), I(c), I(count / v));
      return;
    }
    shuffle2x2_bias_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(src), static_cast<T*>(dst), bias, I(h), I(w), I(c), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void activation(const void* x, void* y, DType dt, i64 count, Activation act, cudaStream_t stream) {
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = count % v == 0 && aligned16({x, y});
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    if (vec) {
      activation_vec_kernel<T><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<T*>(y), count / v, act);
      return;
    }
    activation_kernel<T><<<blocks_for(count), threads_per_block, 0, stream>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(y), count, act);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void add(const void* a, const void* b, void* y, DType dt, i64 count, Activation act, cudaStream_t stream) {
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = count % v == 0 && aligned16({a, b, y});
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    if (vec) {
      add_vec_kernel<T><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), count / v, act);
      return;
    }
    add_kernel<T><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), count, act);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void mul_broadcast(const void* x, const void* g, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, i64 gh, i64 gw,
                   i64 gc, cudaStream_t stream) {
  const i64 count = n * h * w * c;
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  // g with channels must match x's (gc == c), and a pack of x then reads a pack of g
  const bool vec = c % v == 0 && aligned16({x, g, y});
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    BroadcastStrides<I> gs{};
    gs.c = gc > 1 ? 1 : 0;
    gs.w = gw > 1 ? I(gc) : 0;
    gs.h = gh > 1 ? I(gw * gc) : 0;
    gs.n = I(gh * gw * gc);
    if (vec && (gc == c || gc == 1)) {
      mul_broadcast_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const T*>(g), static_cast<T*>(y), I(h), I(w), I(c), gs, I(count / v));
      return;
    }
    mul_broadcast_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(g), static_cast<T*>(y), I(h), I(w), I(c), gs, I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void copy_channels(const void* src, void* dst, DType dt, i64 pixels, i64 c_src, i64 c_dst, i64 offset,
                   cudaStream_t stream) {
  const i64 count = pixels * c_src;
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = c_src % v == 0 && c_dst % v == 0 && offset % v == 0 && aligned16({src, dst});
  dispatch_type_index(dt, pixels * c_dst, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    if (vec) {
      copy_channels_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(src), static_cast<T*>(dst), I(c_src), I(c_dst), I(offset), I(count / v));
      return;
    }
    copy_channels_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(src), static_cast<T*>(dst), I(c_src), I(c_dst), I(offset), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void max_pool2x2(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream) {
  const i64 ho = h / 2, wo = w / 2;
  const i64 count = n * ho * wo * c;
  if (count == 0) return;
  const i64 v = pack_elems_of(dt);
  const bool vec = c % v == 0 && aligned16({x, y});
  dispatch_type_index(dt, n * h * w * c, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    if (vec) {
      max_pool2x2_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<T*>(y), I(h), I(w), I(c), I(ho), I(wo), I(count / v));
      return;
    }
    max_pool2x2_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), I(h), I(w), I(c), I(ho), I(wo), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void conv2d_direct(const void* x, const void* filter, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, i64 out, i64 ho,
                   i64 wo, i64 kh, i64 kw, const ConvSpec& spec, cudaStream_t stream) {
  const i64 count = n * ho * wo * out;
  if (count == 0) return;
  const auto i = [](i64 v) { return static_cast<int>(v); };
  const DirectConvGeometry g{i(kh),         i(kw),         i(spec.stride_h),   i(spec.stride_w),
                             i(spec.pad_h), i(spec.pad_w), i(spec.dilation_h), i(spec.dilation_w)};
  dispatch_type_index(dt, std::max(count, n * h * w * c), [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    conv2d_direct_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(filter), static_cast<T*>(y), I(h), I(w), I(c), I(out), I(ho),
        I(wo), I(c / spec.groups), I(out / spec.groups), g, I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

// PyTorch's area_pixel_compute_scale with an explicit output size, in float as its CUDA kernel.
static float area_scale(i64 in, i64 out, bool align_corners) {
  if (align_corners) return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  return static_cast<float>(in) / static_cast<float>(out);
}

void resize_bilinear(const void* x, void* y, DType dt, i64 n, i64 c, i64 h, i64 w, i64 ho, i64 wo,
                     bool align_corners, cudaStream_t stream) {
  const i64 count = n * ho * wo * c;
  if (count == 0) return;
  const float sh = area_scale(h, ho, align_corners), sw = area_scale(w, wo, align_corners);
  const i64 v = pack_elems_of(dt);
  const bool vec = c % v == 0 && aligned16({x, y});
  dispatch_type_index(dt, std::max(count, n * h * w * c), [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    if (vec) {
      resize_bilinear_vec_kernel<T, I><<<blocks_for(count / v), threads_per_block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<T*>(y), I(c), I(h), I(w), I(ho), I(wo), sh, sw, align_corners,
          I(count / v));
      return;
    }
    resize_bilinear_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), I(c), I(h), I(w), I(ho), I(wo), sh, sw, align_corners, I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

// Scratch: partials (n, chunks, c) of float2, then (16-byte aligned) the (n, c) float4 statistics.
static i64 stats_offset(i64 n, i64 hw, i64 c) {
  return (n * plane_chunking(n, hw).count * c * static_cast<i64>(sizeof(float2)) + 15) / 16 * 16;
}

std::size_t plane_scratch_bytes(i64 n, i64 hw, i64 c) {
  return static_cast<std::size_t>(stats_offset(n, hw, c) + n * c * static_cast<i64>(sizeof(float4)));
}

namespace {
// Stage 1 + 2 of the moments; returns the (n, c) float4 statistics inside the scratch.
template <class T>
float4* plane_moments(const T* x, i64 n, i64 hw, i64 c, MomentsUse use, const float* gamma, const float* beta,
                      float eps, T* mean_out, void* scratch, cudaStream_t stream) {
  const PlaneChunks chunking = plane_chunking(n, hw);
  const i64 chunks = chunking.count;
  auto* partial = static_cast<float2*>(scratch);
  auto* results = reinterpret_cast<float4*>(static_cast<char*>(scratch) + stats_offset(n, hw, c));
  constexpr i64 v = pack_elems<T>;
  if (c % v == 0 && c / v <= threads_per_block && aligned16({x})) {
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(n));
    plane_moments_partial_vec_kernel<T><<<grid, threads_per_block, 0, stream>>>(x, partial, hw, c, chunks,
                                                                                chunking.pixels);
  } else {
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>((c + 31) / 32), static_cast<unsigned>(n));
    plane_moments_partial_kernel<T><<<grid, dim3(32, chunk_lanes), 0, stream>>>(x, partial, hw, c, chunks,
                                                                               chunking.pixels);
  }
  SLUICE_CUDA_CHECK_LAUNCH();
  plane_moments_finalize_kernel<T><<<blocks_for(n * c, threads_per_block / 32), threads_per_block, 0, stream>>>(
      x, partial, n, hw, c, chunks, use, gamma, beta, eps, results, mean_out);
  SLUICE_CUDA_CHECK_LAUNCH();
  return results;
}
}  // namespace

void instance_norm(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, const float* gamma, const float* beta,
                   float eps, const void* residual, Activation act, void* scratch, cudaStream_t stream) {
  const i64 count = n * hw * c;
  if (count == 0) return;
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    const T* xt = static_cast<const T*>(x);
    const float4* ss =
        plane_moments<T>(xt, n, hw, c, MomentsUse::instance_norm, gamma, beta, eps, nullptr, scratch, stream);
    if (c % pack_elems<T> == 0 && aligned16({x, y, residual})) {
      const i64 packs = count / pack_elems<T>;
      norm_apply_vec_kernel<T, I><<<blocks_for(packs), threads_per_block, 0, stream>>>(
          xt, static_cast<T*>(y), ss, static_cast<const T*>(residual), act, I(c), I(hw * c), I(packs));
      return;
    }
    norm_apply_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        xt, static_cast<T*>(y), ss, static_cast<const T*>(residual), act, I(c), I(hw * c), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void simam(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, float eps, void* scratch, cudaStream_t stream) {
  const i64 count = n * hw * c;
  if (count == 0) return;
  dispatch_type_index(dt, count, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    const T* xt = static_cast<const T*>(x);
    const float4* st = plane_moments<T>(xt, n, hw, c, MomentsUse::simam, nullptr, nullptr, eps, nullptr, scratch, stream);
    if (c % pack_elems<T> == 0 && aligned16({x, y})) {
      const i64 packs = count / pack_elems<T>;
      simam_apply_vec_kernel<T, I><<<blocks_for(packs), threads_per_block, 0, stream>>>(xt, static_cast<T*>(y), st,
                                                                                        I(c), I(hw * c), I(packs));
      return;
    }
    simam_apply_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(xt, static_cast<T*>(y), st, I(c),
                                                                                  I(hw * c), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void global_avg_pool(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, void* scratch, cudaStream_t stream) {
  if (n * hw * c == 0) return;
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    plane_moments<T>(static_cast<const T*>(x), n, hw, c, MomentsUse::mean, nullptr, nullptr, 0.0f, static_cast<T*>(y),
                     scratch, stream);
  });
}

void global_max_pool(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, void* scratch, cudaStream_t stream) {
  if (n * hw * c == 0) return;
  const PlaneChunks chunking = plane_chunking(n, hw);
  const i64 chunks = chunking.count;
  auto* partial = static_cast<float*>(scratch);
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>((c + 31) / 32), static_cast<unsigned>(n));
    plane_max_partial_kernel<T><<<grid, dim3(32, chunk_lanes), 0, stream>>>(static_cast<const T*>(x), partial, hw, c,
                                                                            chunks, chunking.pixels);
    SLUICE_CUDA_CHECK_LAUNCH();
    plane_max_finalize_kernel<T><<<blocks_for(n * c, threads_per_block / 32), threads_per_block, 0, stream>>>(
        partial, static_cast<T*>(y), n, c, chunks);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void channel_mean_max(const void* x, void* y, DType dt, i64 pixels, i64 c, cudaStream_t stream) {
  if (pixels * c == 0) return;
  const bool vec = c % pack_elems_of(dt) == 0 && aligned16({x});
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    if (vec) {
      channel_mean_max_vec_kernel<T><<<blocks_for(pixels), threads_per_block, 0, stream>>>(static_cast<const T*>(x),
                                                                                           static_cast<T*>(y), pixels, c);
      return;
    }
    channel_mean_max_kernel<T><<<blocks_for(pixels, threads_per_block / 32), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), pixels, c);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void mean_over_w(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream) {
  const i64 count = n * h * c;
  if (count == 0 || w == 0) return;
  dispatch_type_index(dt, n * h * w * c, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    mean_over_w_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), I(w), I(c), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void mean_over_h(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream) {
  const i64 count = n * w * c;
  if (count == 0 || h == 0) return;
  dispatch_type_index(dt, n * h * w * c, [&](auto t, auto idx) {
    using T = typename decltype(t)::type;
    using I = typename decltype(idx)::type;
    mean_over_h_kernel<T, I><<<blocks_for(count), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), I(h), I(w), I(c), I(count));
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

void linear(const void* x, void* y, DType dt, i64 n, i64 in, i64 out, const float* weight, const float* bias,
            Activation act, cudaStream_t stream) {
  if (n * out == 0) return;
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    linear_kernel<T><<<blocks_for(n * out, threads_per_block / 32), threads_per_block, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), n, in, out, weight, bias, act);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

}  // namespace sluice::cuda::kernels
