// backends/cuda/src/kernels.cuh: the launchers of the CUDA backend's own kernels, callable from host
// C++ (no device code here). Tensors are NHWC in a storage type (DType); per-channel parameters
// (bias, gamma, beta, linear weights) are always float. Every launcher enqueues on `stream`, checks
// the launch, and returns without waiting.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "sluice/core/layer_specs.hpp"

namespace sluice::cuda::kernels {

using i64 = std::int64_t;

enum class DType { f32, f16, bf16 };
inline std::size_t dtype_bytes(DType d) { return d == DType::f32 ? 4 : 2; }

// ---- layout and conversion ----
void nchw_to_nhwc(const float* src, void* dst, DType dt, i64 n, i64 c, i64 hw, cudaStream_t stream);
void nhwc_to_nchw(const void* src, DType dt, float* dst, i64 n, i64 c, i64 hw, cudaStream_t stream);
void convert_from_float(const float* src, void* dst, DType dt, i64 count, cudaStream_t stream);

// ---- elementwise ----
/// y[p, c] = act(y[p, c] + bias[c]) in place over `pixels` rows of `c` channels; bias may be null.
void bias_activation(void* y, DType dt, const float* bias, i64 pixels, i64 c, Activation act, cudaStream_t stream);
/// src (n, h, w, 4c) with channel (a*2+b)*c + co -> dst (n, 2h, 2w, c) at (2i+a, 2j+b, co), plus bias.
void shuffle2x2_bias(const void* src, void* dst, DType dt, const float* bias, i64 n, i64 h, i64 w, i64 c,
                     cudaStream_t stream);
void activation(const void* x, void* y, DType dt, i64 count, Activation act, cudaStream_t stream);
void add(const void* a, const void* b, void* y, DType dt, i64 count, Activation act, cudaStream_t stream);
/// y = x * g; x is (n, h, w, c) NHWC, g is (n, gh, gw, gc) with each of gh, gw, gc 1 or equal to x's.
void mul_broadcast(const void* x, const void* g, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, i64 gh, i64 gw,
                   i64 gc, cudaStream_t stream);
/// dst[p, offset + ch] = src[p, ch] for `pixels` rows; src has c_src channels, dst c_dst.
void copy_channels(const void* src, void* dst, DType dt, i64 pixels, i64 c_src, i64 c_dst, i64 offset,
                   cudaStream_t stream);
void max_pool2x2(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream);
/// PyTorch's upsample_bilinear2d (no antialias, output size given), both align_corners modes.
void resize_bilinear(const void* x, void* y, DType dt, i64 n, i64 c, i64 h, i64 w, i64 ho, i64 wo,
                     bool align_corners, cudaStream_t stream);

// ---- convolution fallback ----
/// A plain direct convolution (one output element per thread, float accumulation): x (n, h, w, c),
/// filter KRSC (out, kh, kw, c / groups), y (n, ho, wo, out). Used when cuDNN offers no algorithm.
void conv2d_direct(const void* x, const void* filter, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, i64 out, i64 ho,
                   i64 wo, i64 kh, i64 kw, const ConvSpec& spec, cudaStream_t stream);

// ---- reductions over the H x W plane of each (sample, channel) ----
/// Bytes of device scratch the plane reductions below need.
std::size_t plane_scratch_bytes(i64 n, i64 hw, i64 c);
/// y = act(gamma * (x - mean) / sqrt(var + eps) + beta + residual); residual may be null.
void instance_norm(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, const float* gamma, const float* beta,
                   float eps, const void* residual, Activation act, void* scratch, cudaStream_t stream);
/// y = x * sigmoid(-(x - mean) / sqrt(var + eps)).
void simam(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, float eps, void* scratch, cudaStream_t stream);
/// y (n, c) = mean over the plane.
void global_avg_pool(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, void* scratch, cudaStream_t stream);
/// y (n, c) = max over the plane.
void global_max_pool(const void* x, void* y, DType dt, i64 n, i64 hw, i64 c, void* scratch, cudaStream_t stream);

// ---- other reductions ----
/// y (pixels, 2) = [mean over c, max over c].
void channel_mean_max(const void* x, void* y, DType dt, i64 pixels, i64 c, cudaStream_t stream);
/// y (n, h, 1, c) = mean over w.
void mean_over_w(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream);
/// y (n, 1, w, c) = mean over h.
void mean_over_h(const void* x, void* y, DType dt, i64 n, i64 h, i64 w, i64 c, cudaStream_t stream);
/// y (n, out) = act(weight (out, in) x (n, in) + bias); bias may be null.
void linear(const void* x, void* y, DType dt, i64 n, i64 in, i64 out, const float* weight, const float* bias,
            Activation act, cudaStream_t stream);

// ---- attention (attention.cu) ----
/// Largest head dimension self_attention supports.
constexpr i64 max_head_dim = 128;
/// qkv (n, tokens, 3c) with channels [q | k | v], head h owning channels h*d .. h*d+d-1 of each;
/// y (n, tokens, c) = softmax(q k^T / sqrt(d)) v per head, by an online softmax over key tiles.
void self_attention(const void* qkv, void* y, DType dt, i64 n, i64 tokens, i64 c, i64 heads, cudaStream_t stream);

}  // namespace sluice::cuda::kernels
