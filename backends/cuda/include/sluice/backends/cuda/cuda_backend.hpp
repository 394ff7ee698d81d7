// sluice/backends/cuda/cuda_backend.hpp: the CUDA/cuDNN backend -- sluice::Backend on an NVIDIA GPU.
// One CudaBackend object is one execution lane: its own stream, cuDNN handle, convolution plans,
// pinned staging buffer and caching device allocator. Activations are NHWC on the device, in the
// storage type of the chosen precision; convolutions run through cuDNN, the rest through the
// backend's own kernels. Weights are packed once (NHWC filters, converted to the precision) and may
// be used by any backend object on the same device with the same precision.
//
// This header includes no CUDA header (the implementation lives behind opaque pointers), so a
// translation unit that uses the backend compiles with any C++20 compiler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sluice/core/error.hpp"
#include "sluice/core/layer_specs.hpp"
#include "sluice/core/memory_stats.hpp"
#include "sluice/core/shape.hpp"
#include "sluice/core/weight_view.hpp"

namespace sluice::cuda {

/// Arithmetic of convolutions and storage of activations.
///  - fp32: float storage, FMA-only convolutions (no tensor cores): matches PyTorch fp32 to ~1e-6
///  - tf32: float storage, TF32 tensor-core convolutions
///  - fp16 / bf16: half / bfloat16 storage and weights, tensor-core convolutions accumulating in
///    float; norms, reductions, softmax and resampling compute in float
enum class Precision { fp32, tf32, fp16, bf16 };

/// "fp32", "tf32", "fp16", "bf16".
const char* to_string(Precision p);
/// Parses to_string's names; throws sluice::Error(invalid_argument) for anything else.
Precision parse_precision(const std::string& name);

/// How a convolution algorithm is chosen, once per (layer shape, batch size) and lane.
enum class ConvAlgoSearch {
  heuristic,   ///< cuDNN's heuristic ranking (fast to plan; what tests use)
  exhaustive,  ///< time every algorithm once (cudnnFind...Ex) and keep the fastest (benchmarks)
};

struct CudaOptions {
  int device = 0;
  Precision precision = Precision::fp32;
  ConvAlgoSearch algo_search = ConvAlgoSearch::heuristic;
  std::size_t workspace_limit_bytes = std::size_t{1} << 30;  ///< largest cuDNN workspace an algorithm may use
  std::size_t memory_limit_bytes = 0;  ///< 0: the device's; else out_of_memory past this many bytes in use
  /// Run every convolution with the backend's plain direct kernel instead of cuDNN (slow; the
  /// fallback for shapes cuDNN refuses, forced here for tests and diagnosis).
  bool direct_convolution = false;
  /// cuDNN's tensor descriptors address at most 2^31 - 1 elements: a convolution whose input or
  /// output is larger runs as sub-batches of at most this many elements each. Lower it only to test
  /// that path on small tensors.
  std::int64_t max_conv_tensor_elements = std::int64_t{1} << 31;
  /// run_recorded (models::run_forward) captures each network's forward pass per input shape as a
  /// CUDA graph and replays it: one launch instead of one per kernel. Off: every forward launches
  /// its kernels one by one.
  bool graphs = true;
};

/// Device time of one kind of operation, summed over the calls between two take_op_profile()s.
struct OpTime {
  std::string op;  ///< "conv", "conv_epilogue", "instance_norm", "add", "concat", ...
  double ms = 0;
  std::int64_t calls = 0;
  double bytes = 0;  ///< activation bytes the calls read and wrote, at least: bytes / ms is a bandwidth
};

namespace detail {
struct DeviceBlock;
struct ConvParams;
struct ConvTransposeParams;
struct NormParams;
struct LinearParams;
struct BackendImpl;
}  // namespace detail

/// An activation tensor on the device: logical N x C x H x W, stored NHWC. Immutable once made;
/// copies share the buffer, and the last copy returns it to the allocator of its backend.
class CudaTensor {
 public:
  CudaTensor() = default;  ///< empty; every operation rejects it
  CudaTensor(std::shared_ptr<detail::DeviceBlock> block, const Shape& shape) : block_(std::move(block)), shape_(shape) {}

  const Shape& shape() const { return shape_; }
  bool empty() const { return block_ == nullptr; }
  const void* data() const;  ///< device pointer to the NHWC elements
  void* mutable_data() const;

 private:
  std::shared_ptr<detail::DeviceBlock> block_;
  Shape shape_;
};

/// Bound parameters: copyable, immutable handles shared by every lane.
template <class P>
class ParamHandle {
 public:
  ParamHandle() = default;
  explicit ParamHandle(std::shared_ptr<const P> p) : p_(std::move(p)) {}
  const P* get() const { return p_.get(); }
  explicit operator bool() const { return p_ != nullptr; }
  /// The shared parameters (recordings watch them: a replay never reads freed weights).
  const std::shared_ptr<const P>& shared() const { return p_; }

 private:
  std::shared_ptr<const P> p_;
};

using CudaConv = ParamHandle<detail::ConvParams>;
using CudaConvTranspose = ParamHandle<detail::ConvTransposeParams>;
using CudaNorm = ParamHandle<detail::NormParams>;
using CudaLinear = ParamHandle<detail::LinearParams>;

class CudaBackend {
 public:
  using tensor_type = CudaTensor;
  using conv_type = CudaConv;
  using conv_transpose_type = CudaConvTranspose;
  using norm_type = CudaNorm;
  using linear_type = CudaLinear;

  /// Number of usable CUDA devices; 0 (never an exception) when there is no driver or no GPU.
  static int device_count() noexcept;
  /// Why device_count() is 0 (the CUDA error text), or "" when a device exists.
  static std::string unavailable_reason();

  /// Throws sluice::Error(invalid_argument) when the device does not exist or CUDA is unusable.
  explicit CudaBackend(CudaOptions options = {});
  ~CudaBackend();
  CudaBackend(CudaBackend&&) noexcept;
  CudaBackend& operator=(CudaBackend&&) noexcept;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const CudaOptions& options() const;
  std::string device_name() const;

  // ---- BackendBase ----
  /// Host NCHW float32 -> device tensor. The host data is staged through pinned memory and copied
  /// asynchronously: `src` may be reused as soon as upload returns.
  CudaTensor upload(std::span<const float> src, const Shape& shape);
  /// Device tensor -> host NCHW float32 (waits for the lane's stream).
  void download(const CudaTensor& t, std::span<float> dst);
  Shape shape_of(const CudaTensor& t) const { return t.shape(); }
  void synchronize();
  /// Bytes in use; the memory of recorded graphs (run_recorded) counts as in use, all of it.
  MemoryStats memory() const;
  void reset_peak();
  /// Device bytes this lane holds (in use plus cached, graphs included).
  std::size_t reserved_bytes() const;
  /// Gives cached device blocks back to the driver (not the graphs': clear_recordings() does).
  void release_cached();

  // ---- BackendWeights ----
  CudaConv make_conv(const WeightView& weight, const WeightView* bias, const ConvSpec& spec);
  CudaConvTranspose make_conv_transpose2x2(const WeightView& weight, const WeightView* bias);
  CudaNorm make_norm(const WeightView& gamma, const WeightView& beta);
  CudaLinear make_linear(const WeightView& weight, const WeightView* bias);

  // ---- BackendOps ----
  CudaTensor conv2d(const CudaTensor& x, const CudaConv& conv, Activation act);
  CudaTensor conv_transpose2x2(const CudaTensor& x, const CudaConvTranspose& up);
  CudaTensor instance_norm(const CudaTensor& x, const CudaNorm& norm, NormEpilogue epilogue);
  CudaTensor activation(const CudaTensor& x, Activation act);
  CudaTensor add(const CudaTensor& a, const CudaTensor& b, Activation act = Activation::none);
  CudaTensor mul(const CudaTensor& x, const CudaTensor& g);
  CudaTensor concat(std::initializer_list<const CudaTensor*> parts);
  CudaTensor max_pool2x2(const CudaTensor& x);
  CudaTensor resize_bilinear(const CudaTensor& x, std::int64_t h, std::int64_t w, bool align_corners);
  CudaTensor global_avg_pool(const CudaTensor& x);
  CudaTensor global_max_pool(const CudaTensor& x);
  CudaTensor channel_mean_max(const CudaTensor& x);
  CudaTensor mean_over_w(const CudaTensor& x);
  CudaTensor mean_over_h(const CudaTensor& x);
  CudaTensor linear(const CudaTensor& x, const CudaLinear& lin, Activation act);
  CudaTensor simam(const CudaTensor& x, float eps);
  CudaTensor self_attention(const CudaTensor& qkv, std::int64_t heads);

  // ---- ForwardRecording: CUDA graphs ----
  /// forward(*this, x), recorded as a CUDA graph per (owner, x's shape) and replayed (options().graphs).
  /// The first call for a key runs eagerly (it plans the convolutions and sizes their workspaces),
  /// the second captures and replays, later ones replay: x is copied into the graph's own input
  /// buffer and the result out of its output buffer, so the returned tensor belongs to the caller.
  /// The graph's intermediate tensors live in a memory pool of its own until clear_recordings().
  /// A recording whose parameters have been freed (its network is gone) is dropped and made anew;
  /// where capture fails, that key runs eagerly from then on. Eager while op profiling is on.
  template <class F>
  CudaTensor run_recorded(const void* owner, const CudaTensor& x, F&& forward) {
    return run_recorded_impl(owner, x, [&forward](CudaBackend& b, const CudaTensor& in) { return forward(b, in); });
  }
  /// Recordings held (replayable graphs).
  std::size_t recording_count() const;
  /// Drops every recording and gives its memory pool back.
  void clear_recordings();

  // ---- profiling ----
  /// While on, each operation records a CUDA event as it is enqueued; take_op_profile() (which waits
  /// for the stream) attributes the time between consecutive events to the earlier one's operation.
  /// Device time, so exact for a GPU that runs behind the host; operations run eagerly meanwhile.
  void set_op_profiling(bool on);
  /// The per-operation times since profiling was turned on or last taken, longest first.
  std::vector<OpTime> take_op_profile();

 private:
  CudaTensor run_recorded_impl(const void* owner, const CudaTensor& x,
                               const std::function<CudaTensor(CudaBackend&, const CudaTensor&)>& forward);

  std::unique_ptr<detail::BackendImpl> impl_;
};

}  // namespace sluice::cuda
