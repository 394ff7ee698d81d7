// sluice/core/layer_specs.hpp: plain descriptions of layers that networks hand to a backend when
// they bind weights: everything a backend needs besides the weight tensors themselves.
#pragma once

#include <cstdint>

namespace sluice {

/// Conv2d hyper-parameters. Channels and kernel size come from the weight (out, in/groups, kh, kw).
struct ConvSpec {
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;

  /// Stride 1 and "same" padding k/2 for a k x k kernel, as the networks' "conv k".
  static ConvSpec same(std::int64_t k, std::int64_t stride = 1) {
    return {stride, stride, k / 2, k / 2, 1, 1, 1};
  }
};

/// Activation applied at the end of a fused operation.
enum class Activation { none, relu, sigmoid };

/// The tail that instance norm may fuse: out = act(norm(x) + residual).
struct NormEpilogue {
  const void* residual = nullptr;  ///< a `const tensor_type*` of the same backend, or null
  Activation activation = Activation::none;
};

}  // namespace sluice
