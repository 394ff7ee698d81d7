// sluice/models/spatial_attention.hpp: spatial attention (CBAM's second half, also used alone by
// ResUNetSmall): x * sigmoid(conv7(2->1)([mean over C, max over C])).
#pragma once

#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class SpatialAttention {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.conv.weight (1, 2, 7, 7), no bias.
  SpatialAttention(ParamBinder<B>& p, const std::string& prefix) : conv_(p.conv(prefix + ".conv", 1, 2, 7, Bias::none)) {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor s = b.channel_mean_max(x);
    s = b.conv2d(s, conv_, Activation::sigmoid);
    return b.mul(x, s);
  }

 private:
  typename B::conv_type conv_;
};

}  // namespace sluice::models
