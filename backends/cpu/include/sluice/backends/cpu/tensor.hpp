// sluice/backends/cpu/tensor.hpp: the CPU backend's activation tensor: a logical N x C x H x W shape
// over a contiguous NCHW float32 buffer from the backend's arena. Move-only; destroying it returns
// the buffer to the arena's free list.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "sluice/backends/cpu/arena.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu {

class CpuTensor {
 public:
  CpuTensor() = default;  ///< an empty tensor (shape 0 x 0 x 0 x 0); every operation rejects it
  CpuTensor(Buffer buffer, const Shape& shape) : buffer_(std::move(buffer)), shape_(shape) {}
  CpuTensor(CpuTensor&& o) noexcept : buffer_(std::move(o.buffer_)), shape_(std::exchange(o.shape_, Shape{})) {}
  CpuTensor& operator=(CpuTensor&& o) noexcept {
    buffer_ = std::move(o.buffer_);
    shape_ = std::exchange(o.shape_, Shape{});
    return *this;
  }

  const Shape& shape() const { return shape_; }
  bool empty() const { return buffer_.data() == nullptr; }
  float* data() { return buffer_.data(); }
  const float* data() const { return buffer_.data(); }
  std::span<float> values() { return {buffer_.data(), buffer_.size()}; }
  std::span<const float> values() const { return {buffer_.data(), buffer_.size()}; }
  /// Plane (n, c): H x W floats.
  float* plane(std::int64_t n, std::int64_t c) { return data() + (n * shape_.c + c) * shape_.plane(); }
  const float* plane(std::int64_t n, std::int64_t c) const { return data() + (n * shape_.c + c) * shape_.plane(); }

 private:
  Buffer buffer_;
  Shape shape_;
};

}  // namespace sluice::cpu
