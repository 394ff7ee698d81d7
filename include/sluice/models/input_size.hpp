// sluice/models/input_size.hpp: which input sizes a network can honestly run. Instance norm over a
// plane of a single value is undefined (x - mean is 0 whatever x is; PyTorch raises there), so a
// network runs H x W only when every instance norm sees more than one value per channel. Planes
// only shrink on the way down, so the deepest one decides: the input after the network's chain
// of halvings (stride-2 convolutions or 2x2 pooling), each with its own rounding.
#pragma once

#include <cstdint>
#include <string>

#include "sluice/core/error.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::models {

/// One halving layer along one axis: a `kernel`-wide window, stride 2, `padding` on each side.
struct Halving {
  std::int64_t kernel = 2, padding = 0;

  /// PyTorch's output size, 0 where the window does not fit even once (pooling then raises).
  constexpr std::int64_t operator()(std::int64_t side) const {
    const std::int64_t span = side + 2 * padding - kernel;
    return span < 0 ? 0 : span / 2 + 1;
  }
};

/// 3x3, stride 2, padding 1 (HRNet's stem and transitions): rounds up, 33 -> 17.
inline constexpr Halving kConv3x3Stride2{3, 1};
/// MaxPool2d(2, 2) (the U-Nets' encoders): rounds down, 33 -> 16, 1 -> nothing.
inline constexpr Halving kMaxPool2x2{2, 0};

/// The plane of a network's deepest instance norm: the input after `count` halvings.
struct DeepestNormPlane {
  Halving halving;
  int count = 0;

  constexpr std::int64_t side(std::int64_t input_side) const {
    for (int i = 0; i < count; ++i) input_side = halving(input_side);
    return input_side;
  }

  constexpr bool runs(std::int64_t h, std::int64_t w) const {
    const std::int64_t a = side(h), b = side(w);
    return a >= 1 && b >= 1 && a * b > 1;
  }

  /// The smallest square input that runs; every H x W with H, W >= it runs too (side() never
  /// decreases as the input grows).
  constexpr std::int64_t min_side() const {
    std::int64_t s = 1;
    while (side(s) < 2) ++s;
    return s;
  }

  /// Throws sluice::Error(invalid_argument) naming the smallest input when `s` does not run.
  void check(const char* network, const Shape& s) const {
    if (runs(s.h, s.w)) return;
    const std::string min = std::to_string(min_side());
    throw Error(errc::invalid_argument,
                std::string(network) + ": input " + s.to_string() + " is too small: after " + std::to_string(count) +
                    " halvings its deepest instance norm would normalise a " + std::to_string(side(s.h)) + "x" +
                    std::to_string(side(s.w)) + " plane and needs two values or more; the smallest square input is " +
                    min + "x" + min + " (other shapes run where that plane holds two values or more)");
  }
};

}  // namespace sluice::models
