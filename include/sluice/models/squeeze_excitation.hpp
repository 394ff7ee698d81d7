// sluice/models/squeeze_excitation.hpp: squeeze-and-excitation with average pooling only, as in
// ResUNetSmall: x * sigmoid(fc2(ReLU(fc1(GAP(x))))), hidden width max(C/16, 8), no biases.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

/// The hidden width of the SE and CBAM channel MLPs.
inline std::int64_t reduced_width(std::int64_t channels) { return std::max<std::int64_t>(channels / 16, 8); }

template <Backend B>
class SqueezeExcitation {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.fc.0.weight (hidden, C) and `prefix`.fc.3.weight (C, hidden).
  SqueezeExcitation(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels)
      : fc1_(p.linear(prefix + ".fc.0", reduced_width(channels), channels, Bias::none)),
        fc2_(p.linear(prefix + ".fc.3", channels, reduced_width(channels), Bias::none)) {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = b.global_avg_pool(x);
    y = b.linear(y, fc1_, Activation::relu);
    y = b.linear(y, fc2_, Activation::sigmoid);
    return b.mul(x, y);
  }

 private:
  typename B::linear_type fc1_, fc2_;
};

}  // namespace sluice::models
