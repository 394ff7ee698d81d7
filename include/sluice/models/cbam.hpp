// sluice/models/cbam.hpp: CBAM (convolutional block attention module) -- channel attention with
// one MLP shared by the average- and max-pooled descriptors, then spatial attention.
#pragma once

#include <cstdint>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/param_binder.hpp"
#include "sluice/models/spatial_attention.hpp"
#include "sluice/models/squeeze_excitation.hpp"

namespace sluice::models {

template <Backend B>
class ChannelAttention {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.shared_mlp.0.weight (hidden, C) and `prefix`.shared_mlp.2.weight (C, hidden).
  ChannelAttention(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels)
      : fc1_(p.linear(prefix + ".shared_mlp.0", reduced_width(channels), channels, Bias::none)),
        fc2_(p.linear(prefix + ".shared_mlp.2", channels, reduced_width(channels), Bias::none)) {}

  /// x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))).
  Tensor operator()(B& b, const Tensor& x) const {
    Tensor avg = mlp(b, b.global_avg_pool(x));
    Tensor max = mlp(b, b.global_max_pool(x));
    Tensor s = b.add(avg, max, Activation::sigmoid);
    return b.mul(x, s);
  }

 private:
  Tensor mlp(B& b, const Tensor& v) const {
    Tensor h = b.linear(v, fc1_, Activation::relu);
    return b.linear(h, fc2_, Activation::none);
  }

  typename B::linear_type fc1_, fc2_;
};

template <Backend B>
class Cbam {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.channel_attention.* and `prefix`.spatial_attention.conv.
  Cbam(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels)
      : channel_(p, prefix + ".channel_attention", channels), spatial_(p, prefix + ".spatial_attention") {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = channel_(b, x);
    return spatial_(b, y);
  }

 private:
  ChannelAttention<B> channel_;
  SpatialAttention<B> spatial_;
};

}  // namespace sluice::models
