// sluice/core/shape.hpp: the logical shape of an activation tensor, N x C x H x W. Layout in memory
// is each backend's business (CPU: NCHW, CUDA: NHWC); networks only ever see this shape.
#pragma once

#include <cstdint>
#include <string>

namespace sluice {

struct Shape {
  std::int64_t n = 0, c = 0, h = 0, w = 0;

  std::int64_t numel() const { return n * c * h * w; }
  std::int64_t plane() const { return h * w; }
  friend bool operator==(const Shape&, const Shape&) = default;
  std::string to_string() const {
    return "[" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "]";
  }
};

}  // namespace sluice
