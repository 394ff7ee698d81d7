// sluice/models/residual_se_block.hpp: the residual block of ResUNetSmall --
// conv3-IN-ReLU-conv3-IN, + shortcut (a bare 1x1 conv when the width changes), ReLU, then
// squeeze-excitation and spatial attention.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"
#include "sluice/models/spatial_attention.hpp"
#include "sluice/models/squeeze_excitation.hpp"

namespace sluice::models {

template <Backend B>
class ResidualSeBlock {
 public:
  using Tensor = typename B::tensor_type;

  /// Keys under `prefix`: conv1, norm1, conv2, norm2, adjust_channels (only when in != out),
  /// se.fc.0, se.fc.3, spatial_attention.conv.
  ResidualSeBlock(ParamBinder<B>& p, const std::string& prefix, std::int64_t in, std::int64_t out)
      : first_(p, prefix + ".conv1", prefix + ".norm1", out, in, 3),
        second_(p, prefix + ".conv2", prefix + ".norm2", out, out, 3),
        se_(p, prefix + ".se", out),
        spatial_(p, prefix + ".spatial_attention") {
    if (in != out) adjust_.emplace(p.conv(prefix + ".adjust_channels", out, in, 1, Bias::none));
  }

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = [&] {
      Tensor h = first_(b, x, Activation::relu);
      if (!adjust_) return second_(b, h, Activation::relu, &x);
      Tensor shortcut = b.conv2d(x, *adjust_, Activation::none);
      return second_(b, h, Activation::relu, &shortcut);
    }();
    y = se_(b, y);
    return spatial_(b, y);
  }

 private:
  ConvNorm<B> first_, second_;
  std::optional<typename B::conv_type> adjust_;
  SqueezeExcitation<B> se_;
  SpatialAttention<B> spatial_;
};

}  // namespace sluice::models
