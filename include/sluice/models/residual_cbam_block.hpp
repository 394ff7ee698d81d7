// sluice/models/residual_cbam_block.hpp: the residual block of CBAM-ResUNet --
// conv3-IN-ReLU-conv3-IN, + shortcut (1x1 conv + IN when the width changes), ReLU, then CBAM.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/cbam.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class ResidualCbamBlock {
 public:
  using Tensor = typename B::tensor_type;

  /// Keys under `prefix`: conv1, norm1, conv2, norm2, adjust_channels.{0,1} (only when in != out),
  /// cbam.channel_attention.shared_mlp.{0,2}, cbam.spatial_attention.conv.
  ResidualCbamBlock(ParamBinder<B>& p, const std::string& prefix, std::int64_t in, std::int64_t out)
      : first_(p, prefix + ".conv1", prefix + ".norm1", out, in, 3),
        second_(p, prefix + ".conv2", prefix + ".norm2", out, out, 3),
        cbam_(p, prefix + ".cbam", out) {
    if (in != out) adjust_.emplace(p, prefix + ".adjust_channels.0", prefix + ".adjust_channels.1", out, in, 1);
  }

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = [&] {
      Tensor h = first_(b, x, Activation::relu);
      if (!adjust_) return second_(b, h, Activation::relu, &x);
      Tensor shortcut = (*adjust_)(b, x);
      return second_(b, h, Activation::relu, &shortcut);
    }();
    return cbam_(b, y);
  }

 private:
  ConvNorm<B> first_, second_;
  std::optional<ConvNorm<B>> adjust_;
  Cbam<B> cbam_;
};

}  // namespace sluice::models
