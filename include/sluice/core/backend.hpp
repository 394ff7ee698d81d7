// sluice/core/backend.hpp: the Backend concept -- memory, tensors and the layer operations that the
// networks compose. A backend knows nothing of batching; networks know nothing of memory layout.
// The layer operations are added to this concept by the backend work as the networks need them.
#pragma once

#include <concepts>
#include <span>

#include "sluice/core/memory_stats.hpp"
#include "sluice/core/shape.hpp"

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

}  // namespace sluice
