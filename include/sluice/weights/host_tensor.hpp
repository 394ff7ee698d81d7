// sluice/weights/host_tensor.hpp: a float32 tensor in host memory with a PyTorch-style shape, and the
// name -> tensor dictionary that checkpoints load into.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "sluice/core/weight_view.hpp"

namespace sluice::weights {

struct HostTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> data;  ///< row-major (C order), as PyTorch stores it

  std::int64_t numel() const {
    return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
  }
  /// What a backend's make_* functions take; valid while this tensor lives unchanged.
  WeightView view() const { return {shape, data}; }
  operator WeightView() const { return view(); }  // NOLINT(google-explicit-constructor): a tensor is its view
};


/// A checkpoint: parameter name (PyTorch state-dict key) -> tensor. Ordered so listings are stable.
using TensorDict = std::map<std::string, HostTensor, std::less<>>;

inline std::string shape_to_string(const std::vector<std::int64_t>& shape) { return dims_to_string(shape); }

}  // namespace sluice::weights
