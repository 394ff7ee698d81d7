// sluice/core/backend.hpp: the Backend concept -- memory, tensors and the layer operations that the
// networks compose. A backend knows nothing of batching; networks know nothing of memory layout.
//
// Tensors are opaque values with a logical N x C x H x W shape; destroying one returns its memory
// to the backend's arena. Weights are bound once (make_*), pre-packed in the backend's layout, and
// shared read-only by every lane: a lane is one backend object (own arena, threads or stream) and
// runs a network's forward() with weights that any backend object of the same device made.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "sluice/core/layer_specs.hpp"
#include "sluice/core/memory_stats.hpp"
#include "sluice/core/shape.hpp"
#include "sluice/core/weight_view.hpp"

namespace sluice {

/// The base every backend satisfies: opaque tensors with a logical NCHW shape, host<->device copies
/// in NCHW float32, synchronisation, and exact memory accounting.
template <class B>
concept BackendBase = requires(B& b, const B& cb, const typename B::tensor_type& t, std::span<const float> src,
                               std::span<float> dst, const Shape& shape) {
  typename B::tensor_type;
  { b.upload(src, shape) } -> std::same_as<typename B::tensor_type>;  // host NCHW -> backend tensor
  b.download(t, dst);                                                  // backend tensor -> host NCHW
  { cb.shape_of(t) } -> std::same_as<Shape>;
  b.synchronize();
  { cb.memory() } -> std::same_as<MemoryStats>;
  b.reset_peak();
};

/// Binding weights: each returns a backend-owned, pre-packed, immutable parameter object. The views
/// are valid only during the call (a backend copies what it keeps); a null bias means none.
///  - make_conv(weight (out, in/groups, kh, kw), bias (out) or null, spec)
///  - make_conv_transpose2x2(weight (in, out, 2, 2), bias (out) or null): kernel 2, stride 2
///  - make_norm(gamma (C), beta (C)): affine instance norm, eps 1e-5
///  - make_linear(weight (out, in), bias (out) or null)
template <class B>
concept BackendWeights = requires(B& b, const WeightView& w, const WeightView* bias, const ConvSpec& spec) {
  typename B::conv_type;
  typename B::conv_transpose_type;
  typename B::norm_type;
  typename B::linear_type;
  { b.make_conv(w, bias, spec) } -> std::same_as<typename B::conv_type>;
  { b.make_conv_transpose2x2(w, bias) } -> std::same_as<typename B::conv_transpose_type>;
  { b.make_norm(w, w) } -> std::same_as<typename B::norm_type>;
  { b.make_linear(w, bias) } -> std::same_as<typename B::linear_type>;
};

/// The layer operations of the four networks. Every operation returns a new tensor.
///  - conv2d(x, conv, act): convolution + bias + activation
///  - conv_transpose2x2(x, up): ConvTranspose2d(k=2, s=2) + bias
///  - instance_norm(x, norm, epilogue): act(IN(x) + residual), per sample and channel over H x W
///  - activation(x, act); add(a, b, act) = act(a + b)
///  - mul(x, g): x * g with g broadcast from (N,C,1,1), (N,1,H,W), (N,1,H,1), (N,1,1,W) or x's shape
///  - concat({a, b, ...}): along channels
///  - max_pool2x2(x): floor on odd sizes
///  - resize_bilinear(x, h, w, align_corners): PyTorch's exact sampling (no antialias)
///  - global_avg_pool(x), global_max_pool(x): (N,C,1,1)
///  - channel_mean_max(x): (N,2,H,W) = [mean over C, max over C]
///  - mean_over_w(x): (N,C,H,1); mean_over_h(x): (N,C,1,W)
///  - linear(x (N,C,1,1), lin, act): (N,out,1,1)
///  - simam(x, eps): x * sigmoid(-(x - mu) / sqrt(var + eps)), per sample and channel (the deployed sign)
///  - self_attention(qkv (N,3C,H,W), heads): softmax(q k^T / sqrt(d)) v per head over H*W tokens,
///    without materialising the full token x token matrix; (N,C,H,W)
template <class B>
concept BackendOps = requires(B& b, const typename B::tensor_type& x, const typename B::conv_type& conv,
                              const typename B::conv_transpose_type& up, const typename B::norm_type& norm,
                              const typename B::linear_type& lin, Activation act, NormEpilogue epi,
                              std::int64_t n, bool flag, float eps) {
  { b.conv2d(x, conv, act) } -> std::same_as<typename B::tensor_type>;
  { b.conv_transpose2x2(x, up) } -> std::same_as<typename B::tensor_type>;
  { b.instance_norm(x, norm, epi) } -> std::same_as<typename B::tensor_type>;
  { b.activation(x, act) } -> std::same_as<typename B::tensor_type>;
  { b.add(x, x, act) } -> std::same_as<typename B::tensor_type>;
  { b.mul(x, x) } -> std::same_as<typename B::tensor_type>;
  { b.concat({&x, &x}) } -> std::same_as<typename B::tensor_type>;
  { b.max_pool2x2(x) } -> std::same_as<typename B::tensor_type>;
  { b.resize_bilinear(x, n, n, flag) } -> std::same_as<typename B::tensor_type>;
  { b.global_avg_pool(x) } -> std::same_as<typename B::tensor_type>;
  { b.global_max_pool(x) } -> std::same_as<typename B::tensor_type>;
  { b.channel_mean_max(x) } -> std::same_as<typename B::tensor_type>;
  { b.mean_over_w(x) } -> std::same_as<typename B::tensor_type>;
  { b.mean_over_h(x) } -> std::same_as<typename B::tensor_type>;
  { b.linear(x, lin, act) } -> std::same_as<typename B::tensor_type>;
  { b.simam(x, eps) } -> std::same_as<typename B::tensor_type>;
  { b.self_attention(x, n) } -> std::same_as<typename B::tensor_type>;
};

/// A complete backend: what the networks are written against.
template <class B>
concept Backend = BackendBase<B> && BackendWeights<B> && BackendOps<B>;

/// Optional: a backend that may run a batch as independent samples, one forward pass per sample on
/// a thread of its own (the CPU backend). run_batch(x, f) returns f(b, x), a forward pass, or calls
/// f(thread_backend&, 1 x C x H x W sample) per sample and stacks the results along N: the backend
/// picks the way. models::run_forward uses it.
template <class B>
concept SampleSplitting = Backend<B> && requires(B& b, const typename B::tensor_type& x,
                                                 typename B::tensor_type (*f)(B&, const typename B::tensor_type&)) {
  { b.run_batch(x, f) } -> std::same_as<typename B::tensor_type>;
};

/// Optional: a backend that may record a forward pass once and replay it (the CUDA backend's CUDA
/// graphs). run_recorded(owner, x, f) returns f(b, x), run or replayed; `owner` (the network object)
/// and x's shape name the recording. models::run_forward uses it.
template <class B>
concept ForwardRecording = Backend<B> && requires(B& b, const void* owner, const typename B::tensor_type& x,
                                                  typename B::tensor_type (*f)(B&, const typename B::tensor_type&)) {
  { b.run_recorded(owner, x, f) } -> std::same_as<typename B::tensor_type>;
};

}  // namespace sluice
