// sluice/core/weight_view.hpp: a read-only view of one parameter tensor in host memory, float32 in
// PyTorch's row-major order, as a backend's make_* functions receive it. Core owns no weights: the
// weights layer (checkpoint loading) produces these views, and a backend copies what it keeps.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace sluice {

struct WeightView {
  std::span<const std::int64_t> shape;  ///< PyTorch order, e.g. (out, in/groups, kh, kw)
  std::span<const float> data;          ///< row-major (C order), shape's product values

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
};

/// "[64, 3, 3, 3]": a parameter shape for error messages.
inline std::string dims_to_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace sluice
