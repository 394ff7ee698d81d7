// backends/cuda/src/cuda_backend.cpp: the host side of the CUDA backend -- device, stream and cuDNN
// handle of a lane, the caching allocator, weight packing, convolution plans (cuDNN descriptors and
// the chosen algorithm, cached per layer shape and batch size), and the checks that turn bad input
// into sluice::Error(invalid_argument) before anything reaches the device.
#include "sluice/backends/cuda/cuda_backend.hpp"

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>
#include <vector>

#include "kernels.cuh"
#include "sluice/backends/cuda/caching_allocator.hpp"
#include "sluice/backends/cuda/check.hpp"
#include "sluice/core/error.hpp"

namespace sluice::cuda {

using kernels::DType;
using i64 = std::int64_t;

namespace detail {

/// A device allocation owned by tensors or parameters; the last owner returns it to its allocator.
struct DeviceBlock {
  std::shared_ptr<CachingAllocator> allocator;
  void* ptr = nullptr;
  std::size_t bytes = 0;
  DType dtype = DType::f32;
  DeviceBlock(std::shared_ptr<CachingAllocator> a, void* p, std::size_t n, DType t)
      : allocator(std::move(a)), ptr(p), bytes(n), dtype(t) {}
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  ~DeviceBlock() { allocator->deallocate(ptr); }
};

/// A convolution with its filter packed KRSC (out, kh, kw, in/groups) in the storage type.
struct ConvParams {
  i64 out = 0, in = 0, kh = 0, kw = 0;  // in: all input channels
  ConvSpec spec;
  Precision precision = Precision::fp32;
  std::shared_ptr<DeviceBlock> weight;
  std::shared_ptr<DeviceBlock> bias;  // float (out), or null
};

/// ConvTranspose2d(2, 2) as a 1x1 convolution to 4*out channels (tap-major), then a pixel shuffle.
struct ConvTransposeParams {
  i64 in = 0, out = 0;
  ConvParams gemm;                    // out = 4 * out, 1x1, no bias
  std::shared_ptr<DeviceBlock> bias;  // float (out), or null
};

struct NormParams {
  i64 channels = 0;
  float eps = 1e-5f;
  std::shared_ptr<DeviceBlock> gamma, beta;  // float
};

struct LinearParams {
  i64 out = 0, in = 0;
  std::shared_ptr<DeviceBlock> weight, bias;  // float (out, in); bias float (out) or null
};

}  // namespace detail

const void* CudaTensor::data() const { return block_ ? block_->ptr : nullptr; }
void* CudaTensor::mutable_data() const { return block_ ? block_->ptr : nullptr; }

const char* to_string(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::fp16: return "fp16";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::fp32, Precision::tf32, Precision::fp16, Precision::bf16})
    if (name == to_string(p)) return p;
  throw Error(errc::invalid_argument, "unknown precision '" + name + "' (expected fp32, tf32, fp16 or bf16)");
}

namespace {

DType storage_type(Precision p) {
  switch (p) {
    case Precision::fp16: return DType::f16;
    case Precision::bf16: return DType::bf16;
    default: return DType::f32;
  }
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
  }
}

[[noreturn]] void invalid(const std::string& what) { throw Error(errc::invalid_argument, "cuda backend: " + what); }

void require(const CudaTensor& t, const char* op) {
  if (t.empty()) invalid(std::string(op) + ": empty tensor");
}

template <class P>
const P& require(const ParamHandle<P>& h, const char* op) {
  if (!h) invalid(std::string(op) + ": unbound parameters");
  return *h.get();
}

// Every cuDNN descriptor the backend creates, destroyed with its owner.
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { SLUICE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { SLUICE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d)); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc() { SLUICE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d)); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

/// Everything cuDNN needs for one convolution shape on one lane, planned once.
struct ConvPlan {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
  struct Candidate {
    cudnnConvolutionFwdAlgo_t algo;
    cudnnMathType_t math;
    std::size_t workspace;
  };
  std::vector<Candidate> candidates;  // usable algorithms, best first
  std::size_t current = 0;            // the one in use; the next is tried if cuDNN refuses it at run time
  bool direct() const { return current >= candidates.size(); }  // none left: the backend's own kernel
};

using PlanKey = std::array<i64, 12>;  // n, c, h, w, out, kh, kw, stride h/w, pad h/w, groups (+ dilation folded)
struct PlanKeyHash {
  std::size_t operator()(const PlanKey& k) const noexcept {
    std::size_t h = 1469598103934665603ull;
    for (i64 v : k) h = (h ^ static_cast<std::size_t>(v)) * 1099511628211ull;
    return h;
  }
};

/// Per-operation device time: an event recorded as each operation is enqueued (profiling only).
class OpProfiler {
 public:
  OpProfiler() = default;
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;
  ~OpProfiler() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  bool on = false;

  void mark(const char* op, cudaStream_t stream) {
    if (!on) return;
    if (ops_.size() == events_.size()) {
      cudaEvent_t e = nullptr;
      SLUICE_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    SLUICE_CUDA_CHECK(cudaEventRecord(events_[ops_.size()], stream));
    ops_.push_back(op);
    bytes_.push_back(0);
  }

  /// Activation bytes the operation marked last reads and writes.
  void add_bytes(double bytes) {
    if (on && !bytes_.empty()) bytes_.back() += bytes;
  }

  std::vector<OpTime> take(cudaStream_t stream) {
    if (ops_.empty()) return {};
    const bool was_on = on;
    on = true;
    mark("end", stream);
    on = was_on;
    SLUICE_CUDA_CHECK(cudaEventSynchronize(events_[ops_.size() - 1]));
    std::map<std::string, OpTime> by_op;
    for (std::size_t i = 0; i + 1 < ops_.size(); ++i) {
      float ms = 0;
      SLUICE_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      OpTime& t = by_op[ops_[i]];
      t.op = ops_[i];
      t.ms += ms;
      t.bytes += bytes_[i];
      ++t.calls;
    }
    ops_.clear();
    bytes_.clear();
    std::vector<OpTime> out;
    for (auto& [name, t] : by_op) out.push_back(t);
    std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
    return out;
  }

 private:
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> ops_;
  std::vector<double> bytes_;
};

}  // namespace

namespace detail {

/// A forward pass captured as a CUDA graph for one (owner, input shape).
struct Recording {
  int eager_runs = 0;    // the first run is eager: it plans the convolutions
  bool failed = false;   // capture refused: eager from then on
  CudaTensor input, output;  // the graph's fixed buffers (output in the lane's graph pool)
  std::vector<std::weak_ptr<const void>> params;  // every parameter set the graph reads
  cudaGraphExec_t exec = nullptr;
  Recording() = default;
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;
  ~Recording() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
  bool params_alive() const {
    for (const auto& p : params)
      if (p.expired()) return false;
    return true;
  }
};

struct BackendImpl {
  CudaOptions options;
  DType dtype = DType::f32;
  std::shared_ptr<CachingAllocator> allocator;
  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cudaEvent_t staging_free = nullptr;  // recorded after the last copy that used the staging buffer
  void* staging = nullptr;
  std::size_t staging_bytes = 0;
  std::unordered_map<PlanKey, std::unique_ptr<ConvPlan>, PlanKeyHash> plans;
  CachingAllocator::RawAlloc raw_alloc;
  CachingAllocator::RawFree raw_free;
  std::map<std::pair<const void*, std::array<i64, 4>>, std::unique_ptr<Recording>> recordings;
  Recording* capturing = nullptr;  // the recording being captured, which notes the parameters ops use
  // Intermediate tensors and workspaces of every graph of the lane. One pool serves them all: a
  // lane's graphs replay one after another on its stream, so they may share memory as eager forward
  // passes share the main allocator's cache; outputs stay live, held by their recordings.
  std::shared_ptr<CachingAllocator> graph_pool;
  OpProfiler profiler;

  ~BackendImpl() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    recordings.clear();
    graph_pool.reset();
    plans.clear();
    if (staging != nullptr) cudaFreeHost(staging);
    if (staging_free != nullptr) cudaEventDestroy(staging_free);
    if (cudnn != nullptr) cudnnDestroy(cudnn);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  // The device is per host thread in CUDA: lanes may be driven from any thread.
  void activate() const {
    int current = -1;
    SLUICE_CUDA_CHECK(cudaGetDevice(&current));
    if (current != options.device) SLUICE_CUDA_CHECK(cudaSetDevice(options.device));
  }

  /// Every operation starts here: the lane's device, and the profiler's mark.
  void begin_op(const char* op) {
    activate();
    profiler.mark(op, stream);
  }

  /// The profile's traffic of the current operation: the bytes of these tensors (each read or written once).
  void traffic(std::initializer_list<const CudaTensor*> tensors) {
    if (!profiler.on) return;
    double bytes = 0;
    for (const CudaTensor* t : tensors)
      if (t != nullptr && !t->empty()) bytes += static_cast<double>(t->shape().numel()) * kernels::dtype_bytes(dtype);
    profiler.add_bytes(bytes);
  }

  /// A recording being captured keeps watch over the parameters its graph reads.
  template <class P>
  void note_params(const ParamHandle<P>& h) {
    if (capturing != nullptr) capturing->params.emplace_back(std::shared_ptr<const void>(h.shared()));
  }

  std::shared_ptr<DeviceBlock> block(std::size_t bytes, DType t, bool weight = false) {
    void* p = allocator->allocate(bytes, weight);
    try {
      return std::make_shared<DeviceBlock>(allocator, p, bytes, t);
    } catch (...) {
      allocator->deallocate(p);
      throw;
    }
  }

  CudaTensor tensor(const Shape& s) {
    if (s.n <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) invalid("tensor shape " + s.to_string() + " is not positive");
    return CudaTensor(block(static_cast<std::size_t>(s.numel()) * kernels::dtype_bytes(dtype), dtype), s);
  }

  void ensure_staging(std::size_t bytes) {
    SLUICE_CUDA_CHECK(cudaEventSynchronize(staging_free));  // the last copy through it has finished
    if (bytes <= staging_bytes) return;
    if (staging != nullptr) SLUICE_CUDA_CHECK(cudaFreeHost(staging));
    staging = nullptr;
    staging_bytes = 0;
    SLUICE_CUDA_CHECK(cudaMallocHost(&staging, bytes));
    staging_bytes = bytes;
  }

  /// Host floats -> a device block (weights: synchronous copy at load time, then the storage type).
  std::shared_ptr<DeviceBlock> upload_weights(std::span<const float> host, DType t) {
    const std::size_t count = host.size();
    auto floats = block(count * sizeof(float), DType::f32, /*weight=*/t == DType::f32);
    SLUICE_CUDA_CHECK(cudaMemcpyAsync(floats->ptr, host.data(), count * sizeof(float), cudaMemcpyHostToDevice, stream));
    if (t == DType::f32) {
      SLUICE_CUDA_CHECK(cudaStreamSynchronize(stream));
      return floats;
    }
    auto converted = block(count * kernels::dtype_bytes(t), t, /*weight=*/true);
    kernels::convert_from_float(static_cast<const float*>(floats->ptr), converted->ptr, t, static_cast<i64>(count),
                                stream);
    SLUICE_CUDA_CHECK(cudaStreamSynchronize(stream));
    return converted;
  }

  ConvPlan& plan_for(const ConvParams& p, const Shape& xs, const Shape& ys, const void* x, void* y);
  void run_conv(const ConvParams& p, const CudaTensor& x, const CudaTensor& y);
  void run_conv_samples(const ConvParams& p, const Shape& xs, const Shape& ys, const void* x, void* y);
};

ConvPlan& BackendImpl::plan_for(const ConvParams& p, const Shape& xs, const Shape& ys, const void* x, void* y) {
  const ConvSpec& s = p.spec;
  const PlanKey key{xs.n, xs.c, xs.h, xs.w, p.out, p.kh, p.kw, s.stride_h, s.stride_w,
                    s.pad_h * 65536 + s.pad_w, s.dilation_h * 65536 + s.dilation_w, s.groups};
  auto found = plans.find(key);
  if (found != plans.end()) return *found->second;

  auto plan = std::make_unique<ConvPlan>();
  const cudnnDataType_t dt = cudnn_type(dtype);
  const auto i = [](i64 v) { return static_cast<int>(v); };
  SLUICE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x.d, CUDNN_TENSOR_NHWC, dt, i(xs.n), i(xs.c), i(xs.h), i(xs.w)));
  SLUICE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y.d, CUDNN_TENSOR_NHWC, dt, i(ys.n), i(ys.c), i(ys.h), i(ys.w)));
  SLUICE_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(plan->w.d, dt, CUDNN_TENSOR_NHWC, i(p.out), i(p.in / s.groups), i(p.kh), i(p.kw)));
  SLUICE_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->conv.d, i(s.pad_h), i(s.pad_w), i(s.stride_h),
                                                     i(s.stride_w), i(s.dilation_h), i(s.dilation_w),
                                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  SLUICE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan->conv.d, i(s.groups)));
  // As PyTorch: FMA only for strict fp32, default (TF32 allowed) for tf32, tensor ops for 16 bits.
  const bool strict = options.precision == Precision::fp32;
  const cudnnMathType_t math = strict                                         ? CUDNN_FMA_MATH
                               : options.precision == Precision::tf32 ? CUDNN_DEFAULT_MATH
                                                                      : CUDNN_TENSOR_OP_MATH;
  SLUICE_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv.d, math));

  int on = 0, oc = 0, oh = 0, ow = 0;
  SLUICE_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv.d, plan->x.d, plan->w.d, &on, &oc, &oh, &ow));
  if (on != ys.n || oc != ys.c || oh != ys.h || ow != ys.w)
    throw Error(errc::model_failed, "cuda backend: cuDNN computes a convolution output of [" + std::to_string(on) + ", " +
                                        std::to_string(oc) + ", " + std::to_string(oh) + ", " + std::to_string(ow) +
                                        "], sluice " + ys.to_string());

  std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> perf{};
  int returned = 0;
  bool searched = false;
  if (options.algo_search == ConvAlgoSearch::exhaustive) {
    std::shared_ptr<DeviceBlock> ws;
    std::size_t ws_bytes = options.workspace_limit_bytes;
    while (ws == nullptr && ws_bytes >= (std::size_t{1} << 20)) {
      try {
        ws = block(ws_bytes, DType::f32);
      } catch (const Error& e) {
        if (e.code() != errc::out_of_memory) throw;
        ws_bytes /= 4;
      }
    }
    if (ws != nullptr) {
      SLUICE_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(cudnn, plan->x.d, x, plan->w.d, p.weight->ptr,
                                                                plan->conv.d, plan->y.d, y, static_cast<int>(perf.size()),
                                                                &returned, perf.data(), ws->ptr, ws_bytes));
      searched = true;
    }
  }
  if (!searched)
    SLUICE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn, plan->x.d, plan->w.d, plan->conv.d, plan->y.d,
                                                              static_cast<int>(perf.size()), &returned, perf.data()));
  for (int k = 0; k < returned; ++k) {
    const auto& r = perf[static_cast<std::size_t>(k)];
    if (r.status != CUDNN_STATUS_SUCCESS) continue;
    if (strict && r.mathType == CUDNN_TENSOR_OP_MATH) continue;
    const cudnnMathType_t m = strict ? CUDNN_FMA_MATH : r.mathType;
    SLUICE_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv.d, m));
    std::size_t bytes = 0;
    if (cudnnGetConvolutionForwardWorkspaceSize(cudnn, plan->x.d, plan->w.d, plan->conv.d, plan->y.d, r.algo,
                                                &bytes) != CUDNN_STATUS_SUCCESS)
      continue;
    if (bytes > options.workspace_limit_bytes) continue;
    plan->candidates.push_back({r.algo, m, bytes});
  }
  if (!plan->candidates.empty())
    SLUICE_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->conv.d, plan->candidates.front().math));
  return *plans.emplace(key, std::move(plan)).first->second;
}

void BackendImpl::run_conv(const ConvParams& p, const CudaTensor& x, const CudaTensor& y) {
  const Shape& xs = x.shape();
  const Shape& ys = y.shape();
  // cuDNN's 4-d descriptors hold int sizes and strides: a batch whose input or output has more
  // elements than that runs as consecutive sub-batches (NHWC: each is one contiguous range).
  const i64 per_sample = std::max(xs.c * xs.h * xs.w, ys.c * ys.h * ys.w);
  const i64 limit = std::min<i64>(options.max_conv_tensor_elements, std::numeric_limits<int>::max());
  if (per_sample > limit)
    throw Error(errc::invalid_argument, "cuda backend: a convolution of one sample over " + xs.to_string() + " -> " +
                                            ys.to_string() + " exceeds cuDNN's " + std::to_string(limit) +
                                            " elements per tensor");
  const i64 step = std::min(xs.n, limit / per_sample);
  const std::size_t bytes = kernels::dtype_bytes(dtype);
  for (i64 n0 = 0; n0 < xs.n; n0 += step) {
    const i64 count = std::min(step, xs.n - n0);
    const Shape xc{count, xs.c, xs.h, xs.w}, yc{count, ys.c, ys.h, ys.w};
    run_conv_samples(p, xc, yc, static_cast<const char*>(x.data()) + n0 * xs.c * xs.h * xs.w * bytes,
                     static_cast<char*>(y.mutable_data()) + n0 * ys.c * ys.h * ys.w * bytes);
  }
}

void BackendImpl::run_conv_samples(const ConvParams& p, const Shape& xs, const Shape& ys, const void* x, void* y) {
  const auto direct = [&] {
    kernels::conv2d_direct(x, p.weight->ptr, y, dtype, xs.n, xs.h, xs.w, xs.c, p.out, ys.h, ys.w, p.kh, p.kw, p.spec,
                           stream);
  };
  if (options.direct_convolution) return direct();
  ConvPlan& plan = plan_for(p, xs, ys, x, y);
  const float alpha = 1.0f, beta = 0.0f;
  while (!plan.direct()) {
    const auto& c = plan.candidates[plan.current];
    std::shared_ptr<DeviceBlock> ws;
    if (c.workspace > 0) ws = block(c.workspace, DType::f32);
    const cudnnStatus_t status = cudnnConvolutionForward(cudnn, &alpha, plan.x.d, x, plan.w.d, p.weight->ptr,
                                                         plan.conv.d, c.algo, ws ? ws->ptr : nullptr, c.workspace,
                                                         &beta, plan.y.d, y);
    if (status == CUDNN_STATUS_SUCCESS) return;
    if (CUDNN_STATUS_CATEGORY(status) != CUDNN_STATUS_NOT_SUPPORTED)
      detail::throw_cudnn_error(status, "cudnnConvolutionForward", __FILE__, __LINE__);
    // refused at run time: never ask again for this shape, try the next algorithm
    if (++plan.current < plan.candidates.size())
      SLUICE_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.d, plan.candidates[plan.current].math));
  }
  direct();
}

}  // namespace detail

// ---- construction ----

int CudaBackend::device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string CudaBackend::unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  }
  return count == 0 ? "the CUDA driver reports no device" : "";
}

CudaBackend::CudaBackend(CudaOptions options) : impl_(std::make_unique<detail::BackendImpl>()) {
  auto& m = *impl_;
  m.options = options;
  m.dtype = storage_type(options.precision);
  const int count = device_count();
  if (count == 0) invalid("no usable CUDA device (" + unavailable_reason() + ")");
  if (options.device < 0 || options.device >= count)
    invalid("device " + std::to_string(options.device) + " does not exist (" + std::to_string(count) + " devices)");
  SLUICE_CUDA_CHECK(cudaSetDevice(options.device));
  SLUICE_CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  SLUICE_CUDNN_CHECK(cudnnCreate(&m.cudnn));
  SLUICE_CUDNN_CHECK(cudnnSetStream(m.cudnn, m.stream));
  SLUICE_CUDA_CHECK(cudaEventCreateWithFlags(&m.staging_free, cudaEventDisableTiming));
  const int device = options.device;
  m.raw_alloc = [device](std::size_t bytes) -> void* {
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != device) SLUICE_CUDA_CHECK(cudaSetDevice(device));
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    if (status != cudaSuccess) detail::throw_cuda_error(status, "cudaMalloc", __FILE__, __LINE__);
    return p;
  };
  m.raw_free = [](void* p) { (void)cudaFree(p); };
  m.allocator = std::make_shared<CachingAllocator>(m.raw_alloc, m.raw_free, options.memory_limit_bytes);
}

CudaBackend::~CudaBackend() = default;
CudaBackend::CudaBackend(CudaBackend&&) noexcept = default;
CudaBackend& CudaBackend::operator=(CudaBackend&&) noexcept = default;

const CudaOptions& CudaBackend::options() const { return impl_->options; }

std::string CudaBackend::device_name() const {
  cudaDeviceProp prop{};
  SLUICE_CUDA_CHECK(cudaGetDeviceProperties(&prop, impl_->options.device));
  return prop.name;
}

// ---- BackendBase ----

CudaTensor CudaBackend::upload(std::span<const float> src, const Shape& shape) {
  auto& m = *impl_;
  m.begin_op("upload");
  if (shape.n <= 0 || shape.c <= 0 || shape.h <= 0 || shape.w <= 0)
    invalid("upload: shape " + shape.to_string() + " is not positive");
  if (static_cast<i64>(src.size()) != shape.numel())
    invalid("upload: " + std::to_string(src.size()) + " floats for shape " + shape.to_string());
  const std::size_t bytes = src.size() * sizeof(float);
  m.ensure_staging(bytes);
  std::memcpy(m.staging, src.data(), bytes);
  auto raw = m.block(bytes, DType::f32);
  SLUICE_CUDA_CHECK(cudaMemcpyAsync(raw->ptr, m.staging, bytes, cudaMemcpyHostToDevice, m.stream));
  SLUICE_CUDA_CHECK(cudaEventRecord(m.staging_free, m.stream));
  CudaTensor t = m.tensor(shape);
  kernels::nchw_to_nhwc(static_cast<const float*>(raw->ptr), t.mutable_data(), m.dtype, shape.n, shape.c,
                        shape.plane(), m.stream);
  return t;  // `raw` goes back to the cache; the stream orders its reuse after the conversion
}

void CudaBackend::download(const CudaTensor& t, std::span<float> dst) {
  auto& m = *impl_;
  m.begin_op("download");
  require(t, "download");
  const Shape& s = t.shape();
  if (static_cast<i64>(dst.size()) != s.numel())
    invalid("download: " + std::to_string(dst.size()) + " floats for shape " + s.to_string());
  const std::size_t bytes = dst.size() * sizeof(float);
  auto raw = m.block(bytes, DType::f32);
  kernels::nhwc_to_nchw(t.data(), m.dtype, static_cast<float*>(raw->ptr), s.n, s.c, s.plane(), m.stream);
  m.ensure_staging(bytes);
  SLUICE_CUDA_CHECK(cudaMemcpyAsync(m.staging, raw->ptr, bytes, cudaMemcpyDeviceToHost, m.stream));
  SLUICE_CUDA_CHECK(cudaEventRecord(m.staging_free, m.stream));
  SLUICE_CUDA_CHECK(cudaStreamSynchronize(m.stream));
  std::memcpy(dst.data(), m.staging, bytes);
}

void CudaBackend::synchronize() {
  impl_->activate();
  SLUICE_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

// The graph pool counts as in use, all of it: replays write its blocks without allocating them.
MemoryStats CudaBackend::memory() const {
  MemoryStats total = impl_->allocator->stats();
  if (impl_->graph_pool != nullptr) {
    const std::size_t graphs = impl_->graph_pool->reserved_bytes();
    total.current_bytes += graphs;
    total.peak_bytes += graphs;
  }
  return total;
}
void CudaBackend::reset_peak() { impl_->allocator->reset_peak(); }
std::size_t CudaBackend::reserved_bytes() const {
  return impl_->allocator->reserved_bytes() + (impl_->graph_pool ? impl_->graph_pool->reserved_bytes() : 0);
}
void CudaBackend::release_cached() {
  synchronize();
  impl_->allocator->release_cached();
}

// ---- BackendWeights ----

namespace {
void check_vector(const WeightView* t, i64 n, const char* what) {
  if (t != nullptr && (t->shape.size() != 1 || t->shape[0] != n || t->numel() != static_cast<i64>(t->data.size())))
    invalid(std::string(what) + " has shape " + dims_to_string(t->shape) + ", expected [" + std::to_string(n) + "]");
}
void check_data(const WeightView& t, const char* what) {
  if (t.numel() != static_cast<i64>(t.data.size()))
    invalid(std::string(what) + ": shape " + dims_to_string(t.shape) + " but " + std::to_string(t.data.size()) +
            " values");
}
}  // namespace

CudaConv CudaBackend::make_conv(const WeightView& weight, const WeightView* bias, const ConvSpec& spec) {
  auto& m = *impl_;
  m.activate();
  if (weight.shape.size() != 4) invalid("make_conv: weight shape " + dims_to_string(weight.shape) + " is not 4-D");
  check_data(weight, "make_conv weight");
  const i64 out = weight.shape[0], in_g = weight.shape[1], kh = weight.shape[2], kw = weight.shape[3];
  if (out <= 0 || in_g <= 0 || kh <= 0 || kw <= 0) invalid("make_conv: empty weight");
  if (spec.groups <= 0 || out % spec.groups != 0) invalid("make_conv: groups must divide the output channels");
  if (spec.stride_h <= 0 || spec.stride_w <= 0 || spec.dilation_h <= 0 || spec.dilation_w <= 0 || spec.pad_h < 0 ||
      spec.pad_w < 0)
    invalid("make_conv: stride and dilation must be positive, padding non-negative");
  check_vector(bias, out, "make_conv bias");

  auto p = std::make_shared<detail::ConvParams>();
  p->out = out;
  p->in = in_g * spec.groups;
  p->kh = kh;
  p->kw = kw;
  p->spec = spec;
  p->precision = m.options.precision;
  std::vector<float> packed(weight.data.size());  // (out, in_g, kh, kw) -> (out, kh, kw, in_g)
  for (i64 o = 0; o < out; ++o)
    for (i64 ci = 0; ci < in_g; ++ci)
      for (i64 r = 0; r < kh; ++r)
        for (i64 s = 0; s < kw; ++s)
          packed[static_cast<std::size_t>(((o * kh + r) * kw + s) * in_g + ci)] =
              weight.data[static_cast<std::size_t>(((o * in_g + ci) * kh + r) * kw + s)];
  p->weight = m.upload_weights(packed, m.dtype);
  if (bias != nullptr) p->bias = m.upload_weights(bias->data, DType::f32);
  return CudaConv(std::move(p));
}

CudaConvTranspose CudaBackend::make_conv_transpose2x2(const WeightView& weight, const WeightView* bias) {
  auto& m = *impl_;
  m.activate();
  if (weight.shape.size() != 4 || weight.shape[2] != 2 || weight.shape[3] != 2)
    invalid("make_conv_transpose2x2: weight shape " + dims_to_string(weight.shape) + " is not (in, out, 2, 2)");
  check_data(weight, "make_conv_transpose2x2 weight");
  const i64 in = weight.shape[0], out = weight.shape[1];
  if (in <= 0 || out <= 0) invalid("make_conv_transpose2x2: empty weight");
  check_vector(bias, out, "make_conv_transpose2x2 bias");

  auto p = std::make_shared<detail::ConvTransposeParams>();
  p->in = in;
  p->out = out;
  p->gemm.out = 4 * out;
  p->gemm.in = in;
  p->gemm.kh = p->gemm.kw = 1;
  p->gemm.precision = m.options.precision;
  // filter row (a*2+b)*out + co, column ci  <-  weight (ci, co, a, b)
  std::vector<float> packed(weight.data.size());
  for (i64 ci = 0; ci < in; ++ci)
    for (i64 co = 0; co < out; ++co)
      for (i64 tap = 0; tap < 4; ++tap)
        packed[static_cast<std::size_t>((tap * out + co) * in + ci)] =
            weight.data[static_cast<std::size_t>((ci * out + co) * 4 + tap)];
  p->gemm.weight = m.upload_weights(packed, m.dtype);
  if (bias != nullptr) p->bias = m.upload_weights(bias->data, DType::f32);
  return CudaConvTranspose(std::move(p));
}

CudaNorm CudaBackend::make_norm(const WeightView& gamma, const WeightView& beta) {
  auto& m = *impl_;
  m.activate();
  if (gamma.shape.size() != 1 || gamma.shape[0] <= 0) invalid("make_norm: gamma shape " + dims_to_string(gamma.shape));
  check_vector(&gamma, gamma.shape[0], "make_norm gamma");
  check_vector(&beta, gamma.shape[0], "make_norm beta");
  auto p = std::make_shared<detail::NormParams>();
  p->channels = gamma.shape[0];
  p->gamma = m.upload_weights(gamma.data, DType::f32);
  p->beta = m.upload_weights(beta.data, DType::f32);
  return CudaNorm(std::move(p));
}

CudaLinear CudaBackend::make_linear(const WeightView& weight, const WeightView* bias) {
  auto& m = *impl_;
  m.activate();
  if (weight.shape.size() != 2 || weight.shape[0] <= 0 || weight.shape[1] <= 0)
    invalid("make_linear: weight shape " + dims_to_string(weight.shape) + " is not (out, in)");
  check_data(weight, "make_linear weight");
  check_vector(bias, weight.shape[0], "make_linear bias");
  auto p = std::make_shared<detail::LinearParams>();
  p->out = weight.shape[0];
  p->in = weight.shape[1];
  p->weight = m.upload_weights(weight.data, DType::f32);
  if (bias != nullptr) p->bias = m.upload_weights(bias->data, DType::f32);
  return CudaLinear(std::move(p));
}

// ---- BackendOps ----

namespace {
const float* float_ptr(const std::shared_ptr<detail::DeviceBlock>& b) {
  return b ? static_cast<const float*>(b->ptr) : nullptr;
}
void check_precision(Precision have, Precision want, const char* op) {
  if (have != want)
    invalid(std::string(op) + ": parameters packed for " + to_string(have) + " used by a " + to_string(want) +
            " backend");
}
}  // namespace

CudaTensor CudaBackend::conv2d(const CudaTensor& x, const CudaConv& conv, Activation act) {
  auto& m = *impl_;
  m.begin_op("conv2d");
  require(x, "conv2d");
  const auto& p = require(conv, "conv2d");
  check_precision(p.precision, m.options.precision, "conv2d");
  const Shape& s = x.shape();
  if (s.c != p.in)
    invalid("conv2d: input " + s.to_string() + " has " + std::to_string(s.c) + " channels, the weight expects " +
            std::to_string(p.in));
  const ConvSpec& c = p.spec;
  const i64 ho = (s.h + 2 * c.pad_h - c.dilation_h * (p.kh - 1) - 1) / c.stride_h + 1;
  const i64 wo = (s.w + 2 * c.pad_w - c.dilation_w * (p.kw - 1) - 1) / c.stride_w + 1;
  if (ho <= 0 || wo <= 0) invalid("conv2d: input " + s.to_string() + " is smaller than the kernel");
  m.note_params(conv);
  CudaTensor y = m.tensor({s.n, p.out, ho, wo});
  m.run_conv(p, x, y);
  m.traffic({&x, &y});
  if (p.bias != nullptr || act != Activation::none) {
    m.profiler.mark("conv_epilogue", m.stream);
    m.traffic({&y, &y});
  }
  kernels::bias_activation(y.mutable_data(), m.dtype, float_ptr(p.bias), s.n * ho * wo, p.out, act, m.stream);
  return y;
}

CudaTensor CudaBackend::conv_transpose2x2(const CudaTensor& x, const CudaConvTranspose& up) {
  auto& m = *impl_;
  m.begin_op("conv_transpose2x2");
  require(x, "conv_transpose2x2");
  const auto& p = require(up, "conv_transpose2x2");
  check_precision(p.gemm.precision, m.options.precision, "conv_transpose2x2");
  const Shape& s = x.shape();
  if (s.c != p.in)
    invalid("conv_transpose2x2: input " + s.to_string() + " has " + std::to_string(s.c) +
            " channels, the weight expects " + std::to_string(p.in));
  m.note_params(up);
  CudaTensor taps = m.tensor({s.n, 4 * p.out, s.h, s.w});
  m.run_conv(p.gemm, x, taps);
  CudaTensor y = m.tensor({s.n, p.out, 2 * s.h, 2 * s.w});
  kernels::shuffle2x2_bias(taps.data(), y.mutable_data(), m.dtype, float_ptr(p.bias), s.n, s.h, s.w, p.out, m.stream);
  m.traffic({&x, &taps, &taps, &y});
  return y;
}

CudaTensor CudaBackend::instance_norm(const CudaTensor& x, const CudaNorm& norm, NormEpilogue epilogue) {
  auto& m = *impl_;
  m.begin_op("instance_norm");
  require(x, "instance_norm");
  const auto& p = require(norm, "instance_norm");
  const Shape& s = x.shape();
  if (s.c != p.channels)
    invalid("instance_norm: input " + s.to_string() + " for a norm of " + std::to_string(p.channels) + " channels");
  const void* residual = nullptr;
  if (epilogue.residual != nullptr) {
    const auto* r = static_cast<const CudaTensor*>(epilogue.residual);
    require(*r, "instance_norm residual");
    if (r->shape() != s) invalid("instance_norm: residual " + r->shape().to_string() + " for input " + s.to_string());
    residual = r->data();
  }
  m.note_params(norm);
  CudaTensor y = m.tensor(s);
  auto scratch = m.block(kernels::plane_scratch_bytes(s.n, s.plane(), s.c), DType::f32);
  kernels::instance_norm(x.data(), y.mutable_data(), m.dtype, s.n, s.plane(), s.c, float_ptr(p.gamma),
                         float_ptr(p.beta), p.eps, residual, epilogue.activation, scratch->ptr, m.stream);
  m.traffic({&x, &x, &y, static_cast<const CudaTensor*>(epilogue.residual)});
  return y;
}

CudaTensor CudaBackend::activation(const CudaTensor& x, Activation act) {
  auto& m = *impl_;
  m.begin_op("activation");
  require(x, "activation");
  CudaTensor y = m.tensor(x.shape());
  kernels::activation(x.data(), y.mutable_data(), m.dtype, x.shape().numel(), act, m.stream);
  m.traffic({&x, &y});
  return y;
}

CudaTensor CudaBackend::add(const CudaTensor& a, const CudaTensor& b, Activation act) {
  auto& m = *impl_;
  m.begin_op("add");
  require(a, "add");
  require(b, "add");
  if (a.shape() != b.shape()) invalid("add: shapes " + a.shape().to_string() + " and " + b.shape().to_string());
  CudaTensor y = m.tensor(a.shape());
  kernels::add(a.data(), b.data(), y.mutable_data(), m.dtype, a.shape().numel(), act, m.stream);
  m.traffic({&a, &b, &y});
  return y;
}

CudaTensor CudaBackend::mul(const CudaTensor& x, const CudaTensor& g) {
  auto& m = *impl_;
  m.begin_op("mul");
  require(x, "mul");
  require(g, "mul");
  const Shape& s = x.shape();
  const Shape& gs = g.shape();
  const auto fits = [](i64 gd, i64 xd) { return gd == 1 || gd == xd; };
  if (gs.n != s.n || !fits(gs.c, s.c) || !fits(gs.h, s.h) || !fits(gs.w, s.w))
    invalid("mul: " + gs.to_string() + " does not broadcast to " + s.to_string());
  CudaTensor y = m.tensor(s);
  kernels::mul_broadcast(x.data(), g.data(), y.mutable_data(), m.dtype, s.n, s.h, s.w, s.c, gs.h, gs.w, gs.c,
                         m.stream);
  m.traffic({&x, &g, &y});
  return y;
}

CudaTensor CudaBackend::concat(std::initializer_list<const CudaTensor*> parts) {
  auto& m = *impl_;
  m.begin_op("concat");
  if (parts.size() == 0) invalid("concat: no tensors");
  Shape out{};
  for (const CudaTensor* t : parts) {
    if (t == nullptr) invalid("concat: null tensor");
    require(*t, "concat");
    const Shape& s = t->shape();
    if (out.c == 0) {
      out = s;
      continue;
    }
    if (s.n != out.n || s.h != out.h || s.w != out.w)
      invalid("concat: " + s.to_string() + " does not match " + out.to_string() + " outside channels");
    out.c += s.c;
  }
  CudaTensor y = m.tensor(out);
  i64 offset = 0;
  for (const CudaTensor* t : parts) {
    kernels::copy_channels(t->data(), y.mutable_data(), m.dtype, out.n * out.plane(), t->shape().c, out.c, offset,
                           m.stream);
    offset += t->shape().c;
  }
  m.traffic({&y, &y});
  return y;
}

CudaTensor CudaBackend::max_pool2x2(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("max_pool2x2");
  require(x, "max_pool2x2");
  const Shape& s = x.shape();
  if (s.h < 2 || s.w < 2) invalid("max_pool2x2: input " + s.to_string() + " is smaller than 2 x 2");
  CudaTensor y = m.tensor({s.n, s.c, s.h / 2, s.w / 2});
  kernels::max_pool2x2(x.data(), y.mutable_data(), m.dtype, s.n, s.h, s.w, s.c, m.stream);
  m.traffic({&x, &y});
  return y;
}

CudaTensor CudaBackend::resize_bilinear(const CudaTensor& x, std::int64_t h, std::int64_t w, bool align_corners) {
  auto& m = *impl_;
  m.begin_op("resize_bilinear");
  require(x, "resize_bilinear");
  if (h <= 0 || w <= 0) invalid("resize_bilinear: output size " + std::to_string(h) + " x " + std::to_string(w));
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, s.c, h, w});
  kernels::resize_bilinear(x.data(), y.mutable_data(), m.dtype, s.n, s.c, s.h, s.w, h, w, align_corners, m.stream);
  m.traffic({&x, &y});
  return y;
}

CudaTensor CudaBackend::global_avg_pool(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("global_avg_pool");
  require(x, "global_avg_pool");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, s.c, 1, 1});
  auto scratch = m.block(kernels::plane_scratch_bytes(s.n, s.plane(), s.c), DType::f32);
  kernels::global_avg_pool(x.data(), y.mutable_data(), m.dtype, s.n, s.plane(), s.c, scratch->ptr, m.stream);
  m.traffic({&x});
  return y;
}

CudaTensor CudaBackend::global_max_pool(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("global_max_pool");
  require(x, "global_max_pool");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, s.c, 1, 1});
  auto scratch = m.block(kernels::plane_scratch_bytes(s.n, s.plane(), s.c), DType::f32);
  kernels::global_max_pool(x.data(), y.mutable_data(), m.dtype, s.n, s.plane(), s.c, scratch->ptr, m.stream);
  m.traffic({&x});
  return y;
}

CudaTensor CudaBackend::channel_mean_max(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("channel_mean_max");
  require(x, "channel_mean_max");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, 2, s.h, s.w});
  kernels::channel_mean_max(x.data(), y.mutable_data(), m.dtype, s.n * s.plane(), s.c, m.stream);
  m.traffic({&x, &y});
  return y;
}

CudaTensor CudaBackend::mean_over_w(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("mean_over_w");
  require(x, "mean_over_w");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, s.c, s.h, 1});
  kernels::mean_over_w(x.data(), y.mutable_data(), m.dtype, s.n, s.h, s.w, s.c, m.stream);
  return y;
}

CudaTensor CudaBackend::mean_over_h(const CudaTensor& x) {
  auto& m = *impl_;
  m.begin_op("mean_over_h");
  require(x, "mean_over_h");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor({s.n, s.c, 1, s.w});
  kernels::mean_over_h(x.data(), y.mutable_data(), m.dtype, s.n, s.h, s.w, s.c, m.stream);
  return y;
}

CudaTensor CudaBackend::linear(const CudaTensor& x, const CudaLinear& lin, Activation act) {
  auto& m = *impl_;
  m.begin_op("linear");
  require(x, "linear");
  const auto& p = require(lin, "linear");
  const Shape& s = x.shape();
  if (s.h != 1 || s.w != 1 || s.c != p.in)
    invalid("linear: input " + s.to_string() + " for a layer of " + std::to_string(p.in) + " inputs (needs [N, " +
            std::to_string(p.in) + ", 1, 1])");
  m.note_params(lin);
  CudaTensor y = m.tensor({s.n, p.out, 1, 1});
  kernels::linear(x.data(), y.mutable_data(), m.dtype, s.n, p.in, p.out, float_ptr(p.weight), float_ptr(p.bias), act,
                  m.stream);
  return y;
}

CudaTensor CudaBackend::simam(const CudaTensor& x, float eps) {
  auto& m = *impl_;
  m.begin_op("simam");
  require(x, "simam");
  if (!(eps >= 0.0f)) invalid("simam: eps must be >= 0");
  const Shape& s = x.shape();
  CudaTensor y = m.tensor(s);
  auto scratch = m.block(kernels::plane_scratch_bytes(s.n, s.plane(), s.c), DType::f32);
  kernels::simam(x.data(), y.mutable_data(), m.dtype, s.n, s.plane(), s.c, eps, scratch->ptr, m.stream);
  m.traffic({&x, &x, &y});
  return y;
}

CudaTensor CudaBackend::self_attention(const CudaTensor& qkv, std::int64_t heads) {
  auto& m = *impl_;
  m.begin_op("self_attention");
  require(qkv, "self_attention");
  const Shape& s = qkv.shape();
  if (heads <= 0 || s.c % (3 * heads) != 0)
    invalid("self_attention: " + std::to_string(s.c) + " channels do not split into q, k, v of " +
            std::to_string(heads) + " heads");
  const i64 c = s.c / 3;
  if (c / heads > kernels::max_head_dim)
    invalid("self_attention: head dimension " + std::to_string(c / heads) + " is above the supported " +
            std::to_string(kernels::max_head_dim));
  if (s.plane() > std::numeric_limits<int>::max()) invalid("self_attention: too many tokens");
  CudaTensor y = m.tensor({s.n, c, s.h, s.w});
  kernels::self_attention(qkv.data(), y.mutable_data(), m.dtype, s.n, s.plane(), c, heads, m.stream);
  m.traffic({&qkv, &y});
  return y;
}

// ---- ForwardRecording: CUDA graphs ----

namespace {
void copy_device(const CudaTensor& from, const CudaTensor& to, DType t, cudaStream_t stream) {
  SLUICE_CUDA_CHECK(cudaMemcpyAsync(to.mutable_data(), from.data(),
                                    static_cast<std::size_t>(from.shape().numel()) * kernels::dtype_bytes(t),
                                    cudaMemcpyDeviceToDevice, stream));
}
}  // namespace

CudaTensor CudaBackend::run_recorded_impl(const void* owner, const CudaTensor& x,
                                          const std::function<CudaTensor(CudaBackend&, const CudaTensor&)>& forward) {
  auto& m = *impl_;
  if (!m.options.graphs || m.profiler.on || m.capturing != nullptr || x.empty()) return forward(*this, x);
  m.activate();
  const Shape& s = x.shape();
  auto& slot = m.recordings[{owner, {s.n, s.c, s.h, s.w}}];
  if (slot != nullptr && slot->exec != nullptr && !slot->params_alive()) {
    SLUICE_CUDA_CHECK(cudaStreamSynchronize(m.stream));  // its network is gone: record anew
    slot.reset();
  }
  if (slot == nullptr) slot = std::make_unique<detail::Recording>();
  detail::Recording& r = *slot;
  if (r.failed || r.eager_runs == 0) {
    ++r.eager_runs;
    return forward(*this, x);
  }
  if (r.exec == nullptr) {
    // Capture: the forward's tensors come from (and return to) the graph pool, whose blocks then
    // stay with the graphs; cudaMalloc is allowed in relaxed capture mode.
    if (m.graph_pool == nullptr)
      m.graph_pool = std::make_shared<CachingAllocator>(m.raw_alloc, m.raw_free, m.options.memory_limit_bytes,
                                                        /*retain_cache=*/true);
    r.input = m.tensor(s);
    r.params.clear();
    const auto main_allocator = m.allocator;
    m.allocator = m.graph_pool;
    m.capturing = &r;
    cudaGraph_t graph = nullptr;
    bool captured = false;
    try {
      SLUICE_CUDA_CHECK(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeRelaxed));
      CudaTensor y = forward(*this, r.input);
      SLUICE_CUDA_CHECK(cudaStreamEndCapture(m.stream, &graph));
      r.output = std::move(y);
      captured = true;
    } catch (const Error&) {
      cudaGraph_t partial = nullptr;
      if (cudaStreamEndCapture(m.stream, &partial) == cudaSuccess && partial != nullptr) cudaGraphDestroy(partial);
      (void)cudaGetLastError();
    }
    m.allocator = main_allocator;
    m.capturing = nullptr;
    if (captured && cudaGraphInstantiate(&r.exec, graph, 0) != cudaSuccess) {
      (void)cudaGetLastError();
      r.exec = nullptr;
    }
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (r.exec == nullptr) {  // this key runs eagerly from now on
      r.failed = true;
      r.input = r.output = CudaTensor();
      return forward(*this, x);
    }
    // The eager runs' blocks cached by the main allocator are not needed again by this shape.
    SLUICE_CUDA_CHECK(cudaStreamSynchronize(m.stream));
    m.allocator->release_cached();
  }
  copy_device(x, r.input, m.dtype, m.stream);
  SLUICE_CUDA_CHECK(cudaGraphLaunch(r.exec, m.stream));
  CudaTensor y = m.tensor(r.output.shape());
  copy_device(r.output, y, m.dtype, m.stream);
  return y;
}

std::size_t CudaBackend::recording_count() const {
  std::size_t n = 0;
  for (const auto& [key, r] : impl_->recordings) n += r->exec != nullptr ? 1 : 0;
  return n;
}

void CudaBackend::clear_recordings() {
  synchronize();
  impl_->recordings.clear();
  impl_->graph_pool.reset();
}

// ---- profiling ----

void CudaBackend::set_op_profiling(bool on) { impl_->profiler.on = on; }

std::vector<OpTime> CudaBackend::take_op_profile() {
  impl_->activate();
  return impl_->profiler.take(impl_->stream);
}

}  // namespace sluice::cuda
