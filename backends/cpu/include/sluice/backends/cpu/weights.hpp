// sluice/backends/cpu/weights.hpp: the CPU backend's bound parameters, packed once at load time and
// shared read-only (cheap copies of a shared pointer) by every lane. Packed bytes are accounted as
// weights in the arena of the backend that made them, for as long as any copy lives.
//
// Packing: a conv weight (out, in/g, kh, kw) becomes g GEMM matrices [out/g x in/g*kh*kw], whose
// column order (ci, ky, kx) is the row order of the im2col matrix, each packed into the micro-kernel's
// panels (gemm.hpp: pack_a); a 3x3 stride-1 conv that suits Winograd holds the 16 transformed
// [out x in] matrices of F(2x2, 3x3) instead, and where it may run as F(4x4, 3x3) its raw weights,
// from which F(4x4)'s 36 are made when a plane first needs them (winograd.hpp); a depthwise weight
// stays (c, 1, kh, kw); a ConvTranspose2d(2, 2) weight (in, out, 2, 2) becomes one GEMM matrix
// [out*4 x in] (row = co*4 + a*2 + b), packed the same way. With bf16 precision (precision.hpp) the
// GEMM and Winograd matrices are packed for the bf16 kernel instead (gemm_bf16.hpp: pack_a_bf16), as
// 32-bit words of bf16 k-pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "sluice/backends/cpu/arena.hpp"
#include "sluice/core/layer_specs.hpp"

namespace sluice::cpu {

/// A float vector that stays accounted in an arena while it lives.
struct PackedArray {
  PackedArray(std::shared_ptr<Arena> arena, std::vector<float> v)
      : values(std::move(v)), lease(std::move(arena), values.size() * sizeof(float)) {}
  std::vector<float> values;
  WeightLease lease;
};

/// A vector of 32-bit words (bf16 k-pairs), accounted the same way.
struct PackedWords {
  PackedWords(std::shared_ptr<Arena> arena, std::vector<std::uint32_t> v)
      : values(std::move(v)), lease(std::move(arena), values.size() * sizeof(std::uint32_t)) {}
  std::vector<std::uint32_t> values;
  WeightLease lease;
};

/// Packed floats made on first use, once, by whichever thread needs them first, then accounted like
/// the others: for weights that only some input sizes need.
class LazyPacked {
 public:
  explicit LazyPacked(std::shared_ptr<Arena> arena) : arena_(std::move(arena)) {}

  /// The values, made by make() (a std::vector<float>) on the first call.
  template <class Make>
  const std::vector<float>& get(Make&& make) const {
    std::call_once(once_, [&] { packed_ = std::make_unique<PackedArray>(arena_, make()); });
    return packed_->values;
  }

 private:
  std::shared_ptr<Arena> arena_;
  mutable std::once_flag once_;
  mutable std::unique_ptr<PackedArray> packed_;
};

struct ConvParams {
  std::int64_t out = 0, in = 0, kh = 0, kw = 0;  // in = all input channels (not per group)
  ConvSpec spec;
  std::unique_ptr<PackedArray> weight, bias;    // bias null when absent; weight null when weight_bf16 is set
  std::unique_ptr<PackedWords> weight_bf16;      // bf16 precision: the GEMM (or Winograd) matrices as bf16
  bool bf16_amx = false;                         // weight_bf16 is packed for AMX tiles (gemm_amx.hpp)
  bool winograd = false;                         // weight (or weight_bf16) holds F(2x2, 3x3)'s matrices
  std::unique_ptr<PackedArray> weight_3x3;       // convs that may run as F(4x4, 3x3): the raw weights,
  std::unique_ptr<LazyPacked> weight_winograd4;  // and F(4x4, 3x3)'s matrices, made on first use
  bool depthwise() const { return spec.groups == in && spec.groups == out; }
};
struct ConvTransposeParams {
  std::int64_t in = 0, out = 0;
  std::unique_ptr<PackedArray> weight, bias;  // weight: the GEMM matrix [out*4 x in]; bias may be null
  std::unique_ptr<PackedWords> weight_bf16;   // bf16 precision: that matrix as bf16 (weight null)
  bool bf16_amx = false;                      // weight_bf16 is packed for AMX tiles (gemm_amx.hpp)
};
struct NormParams {
  std::int64_t channels = 0;
  std::unique_ptr<PackedArray> gamma, beta;
};
struct LinearParams {
  std::int64_t out = 0, in = 0;
  std::unique_ptr<PackedArray> weight, bias;  // weight [out x in]
};

/// Handles the networks keep: copyable, immutable, thread-safe to share.
template <class P>
class ParamHandle {
 public:
  ParamHandle() = default;
  explicit ParamHandle(std::shared_ptr<const P> p) : p_(std::move(p)) {}
  const P& get() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  std::shared_ptr<const P> p_;
};

using CpuConv = ParamHandle<ConvParams>;
using CpuConvTranspose = ParamHandle<ConvTransposeParams>;
using CpuNorm = ParamHandle<NormParams>;
using CpuLinear = ParamHandle<LinearParams>;

}  // namespace sluice::cpu
