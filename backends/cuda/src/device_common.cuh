// backends/cuda/src/device_common.cuh: device helpers shared by the backend's .cu files: loads and
// stores that convert a storage type to and from float, activations, warp reductions, launch
// sizing, and the dispatch from a runtime DType (and index width) to a kernel template.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "kernels.cuh"
#include "sluice/backends/cuda/check.hpp"

namespace sluice::cuda::kernels {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/// Elements of T in one 16-byte (128-bit) load: the unit of the vectorised kernels.
template <class T>
inline constexpr int pack_elems = 16 / static_cast<int>(sizeof(T));

/// Loads the 16 bytes at `p` (16-byte aligned) as pack_elems<T> floats.
template <class T>
__device__ __forceinline__ void load_pack(const T* __restrict__ p, float (&v)[pack_elems<T>]) {
  alignas(16) T e[pack_elems<T>];
  *reinterpret_cast<uint4*>(e) = *reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int k = 0; k < pack_elems<T>; ++k) v[k] = to_float(e[k]);
}

/// Stores pack_elems<T> floats at `p` (16-byte aligned) in the storage type, as one 16-byte store.
template <class T>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const float (&v)[pack_elems<T>]) {
  alignas(16) T e[pack_elems<T>];
#pragma unroll
  for (int k = 0; k < pack_elems<T>; ++k) e[k] = from_float<T>(v[k]);
  *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(e);
}

__device__ __forceinline__ float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

__device__ __forceinline__ float apply_activation(float v, Activation act) {
  switch (act) {
    case Activation::relu: return v > 0.0f ? v : 0.0f;
    case Activation::sigmoid: return sigmoidf(v);
    case Activation::none: break;
  }
  return v;
}

template <class V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

constexpr int threads_per_block = 256;

/// Blocks for a grid-stride loop over `count` items (capped: the loops stride over the rest).
inline unsigned blocks_for(i64 count, int per_block = threads_per_block) {
  i64 blocks = (count + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > (i64{1} << 20)) blocks = i64{1} << 20;
  return static_cast<unsigned>(blocks);
}

/// Elements per 16-byte pack of a storage type (host side).
inline i64 pack_elems_of(DType dt) { return 16 / static_cast<i64>(dtype_bytes(dt)); }

/// True when every pointer is 16-byte aligned (null pointers pass): the vectorised kernels' precondition,
/// with channel counts that are multiples of the pack.
inline bool aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  return true;
}

template <class T>
struct TypeTag {
  using type = T;
};

/// Calls f(TypeTag<T>{}) with T the storage type of `dt`.
template <class F>
void dispatch_type(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(TypeTag<float>{}); return;
    case DType::f16: f(TypeTag<__half>{}); return;
    case DType::bf16: f(TypeTag<__nv_bfloat16>{}); return;
  }
}

/// Calls f(TypeTag<T>{}, TypeTag<I>{}) with I = uint32_t when every index fits 31 bits (cheap
/// division; a grid-stride step, at most 2^28, then cannot wrap), else uint64_t.
template <class F>
void dispatch_type_index(DType dt, i64 max_index, F&& f) {
  dispatch_type(dt, [&](auto t) {
    if (max_index < (i64{1} << 31))
      f(t, TypeTag<std::uint32_t>{});
    else
      f(t, TypeTag<std::uint64_t>{});
  });
}

}  // namespace sluice::cuda::kernels
