// sluice/backends/cpu/cpu_backend.hpp: sluice::cpu::CpuBackend, the Eigen backend (NCHW float32).
// One CpuBackend is one lane: its own thread pool (options.threads, default all cores) and arena.
// Bound weights (make_*) are immutable handles that any CpuBackend may use, so lanes share them.
// Every operation checks its inputs and throws sluice::Error(errc::invalid_argument) on a mismatch;
// allocation past the memory limit throws sluice::Error(errc::out_of_memory).
// CpuOptions::precision = bf16 runs the conv GEMMs on bf16 operands with float32 sums (precision.hpp),
// on AMX tiles where the CPU has them; the weights a backend binds are packed for its precision and
// kernel.
// set_op_profiling() times each operation call (op_profile.hpp); take_op_profile() returns the sums.
//
//   sluice::cpu::CpuBackend cpu({.threads = 2, .memory_limit_bytes = 1 << 30});
//   auto conv = cpu.make_conv(weight, &bias, sluice::ConvSpec::same(3));
//   auto y = cpu.conv2d(cpu.upload(pixels, {1, 3, 256, 256}), conv, sluice::Activation::relu);
//   std::size_t peak = cpu.measure_peak([&] { network.forward(cpu, x); });  // calibrator
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sluice/backends/cpu/arena.hpp"
#include "sluice/backends/cpu/attention.hpp"
#include "sluice/backends/cpu/batch_split.hpp"
#include "sluice/backends/cpu/conv.hpp"
#include "sluice/backends/cpu/norm.hpp"
#include "sluice/backends/cpu/op_profile.hpp"
#include "sluice/backends/cpu/pointwise.hpp"
#include "sluice/backends/cpu/precision.hpp"
#include "sluice/backends/cpu/reduce.hpp"
#include "sluice/backends/cpu/resample.hpp"
#include "sluice/backends/cpu/tensor.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"
#include "sluice/backends/cpu/winograd.hpp"
#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/core/weight_view.hpp"

namespace sluice::cpu {

struct CpuOptions {
  std::size_t threads = 0;             ///< threads of this backend's pool; 0: hardware_concurrency()
  std::size_t memory_limit_bytes = 0;  ///< 0: no limit; else allocations past it throw out_of_memory
  std::shared_ptr<Arena> arena{};      ///< share an arena (and its accounting) between backends; null: own
  std::size_t cache_limit_bytes = 0;   ///< most bytes the free list keeps for reuse; 0: no bound
  /// How long the pool's idle threads spin before they sleep (ThreadPool); unset: ThreadPool::default_spin().
  std::optional<std::chrono::microseconds> spin{};
  /// How run_batch (models::run_forward) runs a batch of at least `threads` samples: each op split
  /// across the threads, one single-threaded forward pass per sample and thread, or the faster of
  /// the two per input shape (batch_split.hpp).
  BatchSplit batch_split = BatchSplit::automatic;
  /// Arithmetic of the conv GEMMs: fp32, or bf16 where the CPU has AVX512_BF16 (else fp32 with a
  /// note, precision_note()). Fixed for the backend's life: the weights it binds are packed for it.
  Precision precision = Precision::fp32;
};

class CpuBackend {
 public:
  using tensor_type = CpuTensor;
  using conv_type = CpuConv;
  using conv_transpose_type = CpuConvTranspose;
  using norm_type = CpuNorm;
  using linear_type = CpuLinear;

  explicit CpuBackend(CpuOptions options = {})
      : arena_(options.arena ? std::move(options.arena) : std::make_shared<Arena>(options.memory_limit_bytes)),
        pool_(std::make_unique<ThreadPool>(options.threads, options.spin.value_or(ThreadPool::default_spin()))),
        batch_split_(options.batch_split),
        split_tuner_(std::make_unique<SplitTuner>()) {
    if (options.precision == Precision::bf16) {
      precision_note_ = bf16_unavailable_reason();
      precision_ = precision_note_.empty() ? Precision::bf16 : Precision::fp32;
      if (precision_ == Precision::bf16) {
        bf16_kernel_note_ = kernels::amx_unavailable_reason();
        amx_ = bf16_kernel_note_.empty();
      }
    }
    if (options.memory_limit_bytes != 0) arena_->set_limit(options.memory_limit_bytes);
    if (options.cache_limit_bytes != 0) arena_->set_cache_limit(options.cache_limit_bytes);
    if (pool_->size() > 1)
      for (std::size_t i = 0; i < pool_->size(); ++i)
        solos_.push_back(std::make_unique<CpuBackend>(CpuOptions{.threads = 1, .arena = arena_, .precision = precision_}));
  }

  // ---- base: tensors, copies, accounting ------------------------------------------------------

  /// A tensor with uninitialised values.
  CpuTensor empty(const Shape& shape) {
    check_shape(shape, "empty");
    return CpuTensor(Buffer(arena_, static_cast<std::size_t>(shape.numel())), shape);
  }

  CpuTensor upload(std::span<const float> src, const Shape& shape) {
    check_shape(shape, "upload");
    if (src.size() != static_cast<std::size_t>(shape.numel()))
      fail("upload: " + std::to_string(src.size()) + " values for shape " + shape.to_string());
    CpuTensor t = empty(shape);
    std::memcpy(t.data(), src.data(), src.size_bytes());
    return t;
  }

  void download(const CpuTensor& t, std::span<float> dst) {
    check_tensor(t, "download");
    if (dst.size() != static_cast<std::size_t>(t.shape().numel()))
      fail("download: room for " + std::to_string(dst.size()) + " values, tensor " + t.shape().to_string());
    std::memcpy(dst.data(), t.data(), dst.size_bytes());
  }

  /// A copy of a tensor's values (NCHW), for tests and tools.
  std::vector<float> to_vector(const CpuTensor& t) {
    check_tensor(t, "to_vector");
    return {t.data(), t.data() + t.shape().numel()};
  }

  Shape shape_of(const CpuTensor& t) const { return t.shape(); }
  void synchronize() {}

  MemoryStats memory() const { return arena_->stats(); }
  void reset_peak() { arena_->reset_peak(); }

  /// Runs f() and returns the peak bytes in use while it ran (weights and live inputs included),
  /// e.g. one forward pass at batch size n, for the calibrator. Resets the peak first.
  template <class F>
  std::size_t measure_peak(F&& f) {
    arena_->reset_peak();
    std::forward<F>(f)();
    return arena_->stats().peak_bytes;
  }

  std::size_t memory_limit() const { return arena_->limit(); }
  void set_memory_limit(std::size_t bytes) { arena_->set_limit(bytes); }
  /// Bytes really held from the system (live buffers' buckets plus the free list).
  std::size_t reserved_bytes() const { return arena_->reserved_bytes(); }
  /// Returns the free list to the system.
  void trim() { arena_->trim(); }

  std::size_t threads() const { return pool_->size(); }
  /// The precision the conv GEMMs run at: options.precision, or fp32 where bf16 is not available.
  Precision precision() const { return precision_; }
  /// Why a requested bf16 runs as fp32 (empty otherwise), for logs.
  const std::string& precision_note() const { return precision_note_; }
  /// The kernel of the conv GEMMs: "fp32", "bf16 vdpbf16ps" or "bf16 amx".
  const char* gemm_kernel() const {
    return precision_ == Precision::fp32 ? "fp32" : amx_ ? "bf16 amx" : "bf16 vdpbf16ps";
  }
  /// With bf16 precision, why the GEMMs run on vdpbf16ps rather than AMX tiles (empty on AMX).
  const std::string& bf16_kernel_note() const { return bf16_kernel_note_; }
  ThreadPool& pool() { return *pool_; }
  const std::shared_ptr<Arena>& arena() const { return arena_; }

  // ---- profiling (op_profile.hpp) ----------------------------------------------------------------

  /// While on, each operation adds its wall time, activation bytes and FLOPs to the profile. A batch
  /// run_batch splits runs on the pool threads' own backends, whose times are summed in too: thread
  /// time there, up to threads x the wall time. Not to be called while an operation runs.
  void set_op_profiling(bool on) { set_op_profiling(on ? OpProfiling::by_kind : OpProfiling::off); }
  void set_op_profiling(OpProfiling mode) {
    profiler_.set(mode);
    for (auto& solo : solos_) solo->set_op_profiling(mode);
  }
  /// The per-operation sums since profiling was turned on or last taken, longest first; empties them.
  std::vector<OpTime> take_op_profile() {
    for (auto& solo : solos_) profiler_.absorb(solo->profiler_);
    return profiler_.take();
  }

  // ---- a batch as independent samples (sluice::SampleSplitting; batch_split.hpp) -----------------

  /// Runs f(backend, batch) -> tensor, a network's forward pass, on x: as f(*this, x), each op split
  /// across the threads, or as map_samples(x, f), as options.batch_split says. The values are the
  /// same bit for bit either way: every kernel is batch- and thread-invariant.
  template <class F>
  CpuTensor run_batch(const CpuTensor& x, F&& f) {
    check_tensor(x, "run_batch");
    const Shape s = x.shape();
    if (!may_split(s.n)) return f(*this, x);
    if (batch_split_ == BatchSplit::always) return map_samples(x, f);
    const bool split = split_tuner_->next_split(s);
    const auto start = std::chrono::steady_clock::now();
    CpuTensor y = split ? map_samples(x, f) : f(*this, x);
    split_tuner_->record(s, split, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return y;
  }

  /// Whether run_batch may split a batch of n: options.batch_split is not never and every thread
  /// gets a sample (whether it does, automatic splitting decides per shape).
  bool may_split(std::int64_t n) const {
    return batch_split_ != BatchSplit::never && pool_->size() > 1 && n >= static_cast<std::int64_t>(pool_->size());
  }

  /// The way automatic splitting chose for batches of shape s (true: split), once it has.
  std::optional<bool> split_choice(const Shape& s) const { return split_tuner_->choice(s); }

  /// Runs f(solo, sample) for each sample of x (1 x C x H x W) on the pool's threads, where solo is
  /// the calling thread's single-threaded CpuBackend over this backend's arena, and stacks the
  /// results (each 1 x C' x H' x W', the same shape) along N. The first exception f throws is rethrown.
  template <class F>
  CpuTensor map_samples(const CpuTensor& x, F&& f) {
    check_tensor(x, "map_samples");
    const Shape& s = x.shape();
    const Shape one{1, s.c, s.h, s.w};
    const auto n = static_cast<std::size_t>(s.n);
    std::vector<CpuTensor> outputs(n);
    pool_->parallel_for(n, [&](std::size_t i, std::size_t worker) {
      CpuBackend& solo = solos_.empty() ? *this : *solos_[worker];
      const CpuTensor sample =
          solo.upload({x.data() + static_cast<std::int64_t>(i) * one.numel(), static_cast<std::size_t>(one.numel())}, one);
      outputs[i] = f(solo, sample);
    });
    const Shape out_one = outputs.front().shape();
    for (const CpuTensor& o : outputs)
      if (o.empty() || o.shape() != out_one || out_one.n != 1)
        fail("map_samples: every sample's result must be 1 x C x H x W of one shape, got " +
             (o.empty() ? std::string("an empty tensor") : o.shape().to_string()) + " beside " + out_one.to_string());
    CpuTensor y = empty({s.n, out_one.c, out_one.h, out_one.w});
    for (std::size_t i = 0; i < n; ++i)
      std::memcpy(y.data() + static_cast<std::int64_t>(i) * out_one.numel(), outputs[i].data(),
                  static_cast<std::size_t>(out_one.numel()) * sizeof(float));
    return y;
  }

  // ---- weights ----------------------------------------------------------------------------------

  CpuConv make_conv(const WeightView& w, const WeightView* bias, const ConvSpec& spec) {
    check_host(w, 4, "make_conv weight");
    if (spec.stride_h < 1 || spec.stride_w < 1 || spec.dilation_h < 1 || spec.dilation_w < 1 || spec.pad_h < 0 ||
        spec.pad_w < 0 || spec.groups < 1)
      fail("make_conv: stride and dilation must be >= 1, padding >= 0, groups >= 1");
    auto p = std::make_shared<ConvParams>();
    p->out = w.shape[0];
    p->in = w.shape[1] * spec.groups;
    p->kh = w.shape[2];
    p->kw = w.shape[3];
    p->spec = spec;
    if (p->out % spec.groups != 0)
      fail("make_conv: " + std::to_string(p->out) + " output channels are not divisible by groups " +
           std::to_string(spec.groups));
    if (p->depthwise()) {
      p->weight = std::make_unique<PackedArray>(arena_, std::vector<float>(w.data.begin(), w.data.end()));
    } else if (kernels::winograd_suits(p->out, p->in, p->kh, p->kw, spec)) {
      if (precision_ == Precision::bf16) {
        p->weight_bf16 =
            std::make_unique<PackedWords>(arena_, kernels::winograd_weights_bf16(w.data.data(), p->out, p->in, 2, amx_));
        p->bf16_amx = amx_;
      } else {
        p->weight = std::make_unique<PackedArray>(arena_, kernels::winograd_weights(w.data.data(), p->out, p->in, 2));
      }
      if (kernels::winograd4_suits(p->out, p->in, precision_)) {
        p->weight_3x3 = std::make_unique<PackedArray>(arena_, std::vector<float>(w.data.begin(), w.data.end()));
        p->weight_winograd4 = std::make_unique<LazyPacked>(arena_);
      }
      p->winograd = true;
    } else {
      // (out, in/g, kh, kw) row-major is g stacked [out/g x in/g*kh*kw] GEMM matrices.
      pack_gemm_weights(*p, w.data.data(), spec.groups, p->out / spec.groups, w.shape[1] * p->kh * p->kw);
    }
    p->bias = pack_bias(bias, p->out, "make_conv");
    return CpuConv(std::move(p));
  }

  CpuConvTranspose make_conv_transpose2x2(const WeightView& w, const WeightView* bias) {
    check_host(w, 4, "make_conv_transpose2x2 weight");
    if (w.shape[2] != 2 || w.shape[3] != 2)
      fail("make_conv_transpose2x2: weight must be (in, out, 2, 2), got " + dims_to_string(w.shape));
    auto p = std::make_shared<ConvTransposeParams>();
    p->in = w.shape[0];
    p->out = w.shape[1];
    std::vector<float> matrix(w.data.size());
    // (in, out, a, b) -> row co*4 + a*2 + b, column ci.
    for (std::int64_t ci = 0; ci < p->in; ++ci)
      for (std::int64_t r = 0; r < p->out * 4; ++r)
        matrix[static_cast<std::size_t>(r * p->in + ci)] = w.data[static_cast<std::size_t>(ci * p->out * 4 + r)];
    pack_gemm_weights(*p, matrix.data(), 1, 4 * p->out, p->in);
    p->bias = pack_bias(bias, p->out, "make_conv_transpose2x2");
    return CpuConvTranspose(std::move(p));
  }

  CpuNorm make_norm(const WeightView& gamma, const WeightView& beta) {
    check_host(gamma, 1, "make_norm gamma");
    check_host(beta, 1, "make_norm beta");
    if (!std::ranges::equal(gamma.shape, beta.shape))
      fail("make_norm: gamma " + dims_to_string(gamma.shape) + " and beta " + dims_to_string(beta.shape) +
           " differ");
    auto p = std::make_shared<NormParams>();
    p->channels = gamma.shape[0];
    p->gamma = std::make_unique<PackedArray>(arena_, std::vector<float>(gamma.data.begin(), gamma.data.end()));
    p->beta = std::make_unique<PackedArray>(arena_, std::vector<float>(beta.data.begin(), beta.data.end()));
    return CpuNorm(std::move(p));
  }

  CpuLinear make_linear(const WeightView& w, const WeightView* bias) {
    check_host(w, 2, "make_linear weight");
    auto p = std::make_shared<LinearParams>();
    p->out = w.shape[0];
    p->in = w.shape[1];
    p->weight = std::make_unique<PackedArray>(arena_, std::vector<float>(w.data.begin(), w.data.end()));
    p->bias = pack_bias(bias, p->out, "make_linear");
    return CpuLinear(std::move(p));
  }

  // ---- layer operations -------------------------------------------------------------------------

  CpuTensor conv2d(const CpuTensor& x, const CpuConv& conv, Activation act) {
    check_tensor(x, "conv2d");
    if (!conv) fail("conv2d: unbound conv");
    const ConvParams& p = conv.get();
    const Shape& s = x.shape();
    if (s.c != p.in)
      fail("conv2d: input has " + std::to_string(s.c) + " channels, the conv expects " + std::to_string(p.in));
    const std::int64_t eff_h = p.spec.dilation_h * (p.kh - 1) + 1, eff_w = p.spec.dilation_w * (p.kw - 1) + 1;
    if (s.h + 2 * p.spec.pad_h < eff_h || s.w + 2 * p.spec.pad_w < eff_w)
      fail("conv2d: input " + s.to_string() + " is smaller than the kernel");
    const auto t0 = profiler_.start();
    PhaseTimes phases;  // filled only while profiling
    PhaseTimes* const timing = profiler_.on() ? &phases : nullptr;
    const double flops = 2.0 * static_cast<double>(s.n * p.out * (s.c / p.spec.groups) * p.kh * p.kw);  // per pixel
    if (p.winograd) {
      const std::int64_t tile = kernels::winograd_tile(s.h, s.w, p.weight_winograd4 != nullptr);
      const kernels::WinogradGeometry g = kernels::winograd_geometry(s, p.out, tile);
      const kernels::ConvWeights u =
          tile == 2 ? kernels::ConvWeights::of(p) : kernels::ConvWeights{kernels::winograd4_weights(p), nullptr, false};
      CpuTensor y = empty({s.n, p.out, s.h, s.w});
      Buffer scratch(arena_, static_cast<std::size_t>(g.scratch_floats(pool_->size())));
      kernels::conv2d_winograd(x.data(), u, p.bias ? p.bias->values.data() : nullptr, g, act, y.data(),
                               scratch.data(), *pool_, timing);
      return profiler_.done(t0, "conv2d/winograd", std::move(y), s, s.numel(), flops * s.plane(), &phases,
                            {"input transform", "GEMMs", "output transform"});
    }
    const kernels::ConvGeometry g = kernels::conv_geometry(s, p);
    CpuTensor y = empty({s.n, g.cout, g.oh, g.ow});
    if (p.depthwise()) {
      kernels::conv2d_depthwise(x.data(), p, g, act, y.data(), *pool_);
    } else {
      Buffer scratch(arena_, static_cast<std::size_t>(g.scratch_floats(pool_->size())));
      kernels::conv2d_gemm(x.data(), p, g, act, y.data(), scratch.data(), *pool_, timing);
    }
    const char* kernel = p.depthwise() ? "conv2d/depthwise" : g.padded_rows ? "conv2d/padded"
                         : g.pointwise()   ? "conv2d/1x1"       : "conv2d/im2col";
    const char* gather = g.padded_rows ? "pad" : g.pointwise() ? "pack" : "im2col";
    return profiler_.done(t0, kernel, std::move(y), s, s.numel(), flops * static_cast<double>(g.oh * g.ow),
                          p.depthwise() ? nullptr : &phases, {gather, "GEMM + bias", nullptr});
  }

  CpuTensor conv_transpose2x2(const CpuTensor& x, const CpuConvTranspose& up) {
    check_tensor(x, "conv_transpose2x2");
    if (!up) fail("conv_transpose2x2: unbound weights");
    const ConvTransposeParams& p = up.get();
    const Shape& s = x.shape();
    if (s.c != p.in)
      fail("conv_transpose2x2: input has " + std::to_string(s.c) + " channels, expected " + std::to_string(p.in));
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, p.out, 2 * s.h, 2 * s.w});
    Buffer scratch(arena_, static_cast<std::size_t>(kernels::conv_transpose_worker_floats(p, s)) * pool_->size());
    kernels::conv_transpose2x2(x.data(), p, s, y.data(), scratch.data(), *pool_);
    return profiler_.done(t0, "conv_transpose2x2", std::move(y), s, s.numel(), 8.0 * p.out * s.numel());
  }

  CpuTensor instance_norm(const CpuTensor& x, const CpuNorm& norm, NormEpilogue epi) {
    return instance_norm_into(x, norm, epi, nullptr);
  }

  /// As above, normalising x's own buffer: a convolution's output that nothing else reads is
  /// normalised where it lies, so the norm's writes hit the lines its statistics just read instead of
  /// a second buffer (less memory traffic, one buffer less in the cache).
  CpuTensor instance_norm(CpuTensor&& x, const CpuNorm& norm, NormEpilogue epi) {
    CpuTensor owned = std::move(x);
    return instance_norm_into(owned, norm, epi, &owned);
  }

  CpuTensor activation(const CpuTensor& x, Activation act) {
    check_tensor(x, "activation");
    const auto t0 = profiler_.start();
    CpuTensor y = empty(x.shape());
    const std::int64_t plane = x.shape().plane();
    kernels::for_each_plane(*pool_, x.shape().n * x.shape().c, plane, [&](std::int64_t t, std::size_t) {
      const std::int64_t off = t * plane;
      kernels::activation_copy(x.data() + off, y.data() + off, plane, act);
    });
    return profiler_.done(t0, "activation", std::move(y), x.shape(), x.shape().numel());
  }

  CpuTensor add(const CpuTensor& a, const CpuTensor& b, Activation act) {
    check_tensor(a, "add");
    check_tensor(b, "add");
    same_shape(a.shape(), b.shape(), "add");
    const auto t0 = profiler_.start();
    CpuTensor y = empty(a.shape());
    kernels::add(a.data(), b.data(), a.shape().n * a.shape().c, a.shape().plane(), act, y.data(), *pool_);
    return profiler_.done(t0, "add", std::move(y), a.shape(), 2.0 * a.shape().numel());
  }

  CpuTensor mul(const CpuTensor& x, const CpuTensor& g) {
    check_tensor(x, "mul");
    check_tensor(g, "mul gate");
    const Shape& s = x.shape();
    const Shape& gs = g.shape();
    kernels::Broadcast mode;
    if (gs == s) {
      mode = kernels::Broadcast::full;
    } else if (gs == Shape{s.n, s.c, 1, 1}) {
      mode = kernels::Broadcast::per_channel;
    } else if (gs == Shape{s.n, 1, s.h, s.w}) {
      mode = kernels::Broadcast::per_pixel;
    } else if (gs == Shape{s.n, 1, s.h, 1}) {
      mode = kernels::Broadcast::per_row;
    } else if (gs == Shape{s.n, 1, 1, s.w}) {
      mode = kernels::Broadcast::per_column;
    } else {
      fail("mul: cannot broadcast " + gs.to_string() + " to " + s.to_string());
    }
    const auto t0 = profiler_.start();
    CpuTensor y = empty(s);
    kernels::mul(x.data(), s, g.data(), mode, y.data(), *pool_);
    return profiler_.done(t0, "mul", std::move(y), s, s.numel() + gs.numel());
  }

  CpuTensor concat(std::initializer_list<const CpuTensor*> parts) {
    if (parts.size() == 0) fail("concat: no tensors");
    Shape out{};
    for (const CpuTensor* t : parts) {
      if (t == nullptr) fail("concat: null tensor");
      check_tensor(*t, "concat");
      const Shape& s = t->shape();
      if (out.n == 0) {
        out = s;
        out.c = 0;
      } else if (s.n != out.n || s.h != out.h || s.w != out.w) {
        fail("concat: " + s.to_string() + " does not match N, H, W of " + (*parts.begin())->shape().to_string());
      }
      out.c += s.c;
    }
    const auto t0 = profiler_.start();
    CpuTensor y = empty(out);
    const std::vector<const CpuTensor*> list(parts);
    pool_->parallel_for(static_cast<std::size_t>(out.n * static_cast<std::int64_t>(list.size())),
                        [&](std::size_t task, std::size_t) {
                          const std::int64_t n = static_cast<std::int64_t>(task / list.size());
                          const std::size_t part = task % list.size();
                          std::int64_t c0 = 0;
                          for (std::size_t i = 0; i < part; ++i) c0 += list[i]->shape().c;
                          const CpuTensor& t = *list[part];
                          const std::int64_t count = t.shape().c * out.plane();
                          std::memcpy(y.plane(n, c0), t.plane(n, 0), static_cast<std::size_t>(count) * sizeof(float));
                        });
    return profiler_.done(t0, "concat", std::move(y), list.front()->shape(), out.numel());
  }

  CpuTensor max_pool2x2(const CpuTensor& x) {
    check_tensor(x, "max_pool2x2");
    const Shape& s = x.shape();
    if (s.h < 2 || s.w < 2) fail("max_pool2x2: input " + s.to_string() + " is smaller than 2 x 2");
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, s.c, s.h / 2, s.w / 2});
    kernels::max_pool2x2(x.data(), s.n * s.c, s.h, s.w, y.data(), *pool_);
    return profiler_.done(t0, "max_pool2x2", std::move(y), s, s.numel());
  }

  CpuTensor resize_bilinear(const CpuTensor& x, std::int64_t h, std::int64_t w, bool align_corners) {
    check_tensor(x, "resize_bilinear");
    if (h < 1 || w < 1) fail("resize_bilinear: output size must be positive");
    const Shape& s = x.shape();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, s.c, h, w});
    kernels::resize_bilinear(x.data(), s.n * s.c, s.h, s.w, h, w, align_corners, y.data(), *pool_);
    return profiler_.done(t0, "resize_bilinear", std::move(y), s, s.numel());
  }

  CpuTensor global_avg_pool(const CpuTensor& x) { return global_pool(x, false); }
  CpuTensor global_max_pool(const CpuTensor& x) { return global_pool(x, true); }

  CpuTensor channel_mean_max(const CpuTensor& x) {
    check_tensor(x, "channel_mean_max");
    const Shape& s = x.shape();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, 2, s.h, s.w});
    kernels::channel_mean_max(x.data(), s, y.data(), *pool_);
    return profiler_.done(t0, "channel_mean_max", std::move(y), s, s.numel());
  }

  CpuTensor mean_over_w(const CpuTensor& x) {
    check_tensor(x, "mean_over_w");
    const Shape& s = x.shape();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, s.c, s.h, 1});
    kernels::mean_over_axis(x.data(), s, true, y.data(), *pool_);
    return profiler_.done(t0, "mean_over_w", std::move(y), s, s.numel());
  }

  CpuTensor mean_over_h(const CpuTensor& x) {
    check_tensor(x, "mean_over_h");
    const Shape& s = x.shape();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, s.c, 1, s.w});
    kernels::mean_over_axis(x.data(), s, false, y.data(), *pool_);
    return profiler_.done(t0, "mean_over_h", std::move(y), s, s.numel());
  }

  CpuTensor linear(const CpuTensor& x, const CpuLinear& lin, Activation act) {
    check_tensor(x, "linear");
    if (!lin) fail("linear: unbound weights");
    const LinearParams& p = lin.get();
    const Shape& s = x.shape();
    if (s.c != p.in || s.h != 1 || s.w != 1)
      fail("linear: input " + s.to_string() + ", expected (N, " + std::to_string(p.in) + ", 1, 1)");
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, p.out, 1, 1});
    // One matrix-vector product per sample: the same arithmetic whatever the batch size.
    kernels::ConstMatrixMap wm(p.weight->values.data(), p.out, p.in, Eigen::OuterStride<>(p.in));
    const float* bias = p.bias ? p.bias->values.data() : nullptr;
    for (std::int64_t n = 0; n < s.n; ++n) {
      Eigen::Map<const Eigen::VectorXf> xv(x.data() + n * p.in, p.in);
      Eigen::Map<Eigen::VectorXf> yv(y.data() + n * p.out, p.out);
      yv.noalias() = wm * xv;
      if (bias) yv += Eigen::Map<const Eigen::VectorXf>(bias, p.out);
      kernels::activation(yv.data(), p.out, act);
    }
    return profiler_.done(t0, "linear", std::move(y), s, s.numel(), 2.0 * s.numel() * p.out);
  }

  CpuTensor simam(const CpuTensor& x, float eps) {
    check_tensor(x, "simam");
    if (!(eps > 0.0f)) fail("simam: eps must be positive");
    const auto t0 = profiler_.start();
    CpuTensor y = empty(x.shape());
    kernels::simam(x.data(), x.shape().n * x.shape().c, x.shape().plane(), eps, y.data(), *pool_);
    return profiler_.done(t0, "simam", std::move(y), x.shape(), x.shape().numel());
  }

  CpuTensor self_attention(const CpuTensor& qkv, std::int64_t heads) {
    check_tensor(qkv, "self_attention");
    const Shape& s = qkv.shape();
    if (heads < 1 || s.c % 3 != 0 || (s.c / 3) % heads != 0)
      fail("self_attention: " + std::to_string(s.c) + " channels are not 3 x a multiple of " + std::to_string(heads) +
           " heads");
    const std::int64_t c = s.c / 3, tokens = s.plane();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, c, s.h, s.w});
    Buffer scratch(arena_, static_cast<std::size_t>(kernels::attention_scratch_floats(tokens)) * pool_->size());
    kernels::self_attention(qkv.data(), s.n, c, tokens, heads, y.data(), scratch.data(), *pool_);
    // Scores and the weighted sum: two [tokens x tokens x c] products per sample.
    return profiler_.done(t0, "self_attention", std::move(y), s, s.numel(), 4.0 * s.n * c * tokens * tokens);
  }

 private:
  /// instance_norm's work; `in_place` (x itself, or null for a new tensor) is where y goes.
  CpuTensor instance_norm_into(const CpuTensor& x, const CpuNorm& norm, NormEpilogue epi, CpuTensor* in_place) {
    check_tensor(x, "instance_norm");
    if (!norm) fail("instance_norm: unbound weights");
    const NormParams& p = norm.get();
    const Shape s = x.shape();  // a copy: x may be moved into y below
    const float* src = x.data();
    if (s.c != p.channels)
      fail("instance_norm: input has " + std::to_string(s.c) + " channels, the norm " + std::to_string(p.channels));
    const float* residual = nullptr;
    if (epi.residual != nullptr) {
      const auto* r = static_cast<const CpuTensor*>(epi.residual);
      check_tensor(*r, "instance_norm residual");
      same_shape(s, r->shape(), "instance_norm residual");
      residual = r->data();
    }
    const auto t0 = profiler_.start();
    CpuTensor y = in_place ? std::move(*in_place) : empty(s);
    kernels::instance_norm(src, p, s.n * s.c, s.plane(), residual, epi.activation, y.data(), *pool_);
    return profiler_.done(t0, "instance_norm", std::move(y), s, (residual ? 2.0 : 1.0) * s.numel());
  }

  [[noreturn]] static void fail(const std::string& what) { throw Error(errc::invalid_argument, what); }

  static void check_shape(const Shape& s, const char* op) {
    if (s.n < 1 || s.c < 1 || s.h < 1 || s.w < 1)
      fail(std::string(op) + ": every dimension must be positive, got " + s.to_string());
  }
  static void check_tensor(const CpuTensor& t, const char* op) {
    if (t.empty()) fail(std::string(op) + ": empty tensor");
  }
  static void same_shape(const Shape& a, const Shape& b, const char* op) {
    if (a != b) fail(std::string(op) + ": shapes " + a.to_string() + " and " + b.to_string() + " differ");
  }
  static void check_host(const WeightView& t, std::size_t rank, const std::string& what) {
    if (t.shape.size() != rank)
      fail(what + ": expected rank " + std::to_string(rank) + ", got " + dims_to_string(t.shape));
    for (auto d : t.shape)
      if (d < 1) fail(what + ": every dimension must be positive, got " + dims_to_string(t.shape));
    if (static_cast<std::size_t>(t.numel()) != t.data.size())
      fail(what + ": shape " + dims_to_string(t.shape) + " but " + std::to_string(t.data.size()) + " values");
  }
  std::unique_ptr<PackedArray> pack_bias(const WeightView* bias, std::int64_t out, const char* op) {
    if (bias == nullptr) return nullptr;
    check_host(*bias, 1, std::string(op) + " bias");
    if (bias->shape[0] != out)
      fail(std::string(op) + ": bias " + dims_to_string(bias->shape) + ", expected [" + std::to_string(out) + "]");
    return std::make_unique<PackedArray>(arena_, std::vector<float>(bias->data.begin(), bias->data.end()));
  }

  CpuTensor global_pool(const CpuTensor& x, bool max) {
    check_tensor(x, max ? "global_max_pool" : "global_avg_pool");
    const Shape& s = x.shape();
    const auto t0 = profiler_.start();
    CpuTensor y = empty({s.n, s.c, 1, 1});
    kernels::global_pool(x.data(), s.n * s.c, s.plane(), max, y.data(), *pool_);
    return profiler_.done(t0, max ? "global_max_pool" : "global_avg_pool", std::move(y), s, s.numel());
  }

  /// `groups` stacked row-major GEMM matrices [m x k] at `a`, packed for this backend's precision
  /// into p.weight (fp32) or p.weight_bf16, one group after another.
  template <class Params>
  void pack_gemm_weights(Params& p, const float* a, std::int64_t groups, std::int64_t m, std::int64_t k) {
    if (precision_ == Precision::bf16) {
      const std::int64_t group_words = kernels::bf16_kernel_words(m, k, amx_);
      std::vector<std::uint32_t> packed(static_cast<std::size_t>(groups * group_words));
      for (std::int64_t grp = 0; grp < groups; ++grp)
        kernels::pack_a_bf16_kernel(a + grp * m * k, m, k, k, packed.data() + grp * group_words, amx_);
      p.weight_bf16 = std::make_unique<PackedWords>(arena_, std::move(packed));
      p.bf16_amx = amx_;
    } else {
      const std::int64_t group_floats = kernels::packed_a_floats(m, k);
      std::vector<float> packed(static_cast<std::size_t>(groups * group_floats));
      for (std::int64_t grp = 0; grp < groups; ++grp)
        kernels::pack_a(a + grp * m * k, m, k, k, packed.data() + grp * group_floats);
      p.weight = std::make_unique<PackedArray>(arena_, std::move(packed));
    }
  }

  std::shared_ptr<Arena> arena_;
  std::unique_ptr<ThreadPool> pool_;
  BatchSplit batch_split_ = BatchSplit::automatic;
  Precision precision_ = Precision::fp32;
  std::string precision_note_;
  bool amx_ = false;  // bf16 GEMMs on AMX tiles (gemm_amx.hpp): the weights are packed for them
  std::string bf16_kernel_note_;
  std::unique_ptr<SplitTuner> split_tuner_;         ///< in a box: CpuBackend stays movable
  std::vector<std::unique_ptr<CpuBackend>> solos_;  ///< one single-threaded backend per pool thread
  OpProfiler profiler_;
};

static_assert(sluice::BackendBase<CpuBackend>);
static_assert(sluice::BackendWeights<CpuBackend>);
static_assert(sluice::BackendOps<CpuBackend>);
static_assert(sluice::SampleSplitting<CpuBackend>);
static_assert(sluice::Backend<CpuBackend>);

}  // namespace sluice::cpu
