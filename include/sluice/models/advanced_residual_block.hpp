// sluice/models/advanced_residual_block.hpp: the advanced residual block (ARB) of AdvancedResUNet
// and its multi-stage attention:
//   MSA(x) = ReLU(IN(conv1x1(Triplet(SimAM(x))))) + x
//   ARB(x) = ReLU(MSA(IN(conv3(ReLU(IN(conv3(x)))))) + identity(x))
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"
#include "sluice/models/triplet_attention.hpp"

namespace sluice::models {

/// SimAM's epsilon as deployed.
inline constexpr float kSimAmEps = 1e-4f;

template <Backend B>
class MultiStageAttention {
 public:
  using Tensor = typename B::tensor_type;

  /// Keys under `prefix`: stage2.conv_{ch,cw,hw}, fusion.0 (1x1 conv), fusion.1 (IN). SimAM
  /// (stage1) owns no parameters.
  MultiStageAttention(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels)
      : triplet_(p, prefix + ".stage2"),
        fusion_(p, prefix + ".fusion.0", prefix + ".fusion.1", channels, channels, 1) {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = b.simam(x, kSimAmEps);
    y = triplet_(b, y);
    y = fusion_(b, y, Activation::relu);
    return b.add(y, x, Activation::none);
  }

 private:
  TripletAttention<B> triplet_;
  ConvNorm<B> fusion_;
};

template <Backend B>
class AdvancedResidualBlock {
 public:
  using Tensor = typename B::tensor_type;

  /// Keys under `prefix`: conv1, norm1, conv2, norm2, skip.{0,1} (only when in != out), attention.*.
  AdvancedResidualBlock(ParamBinder<B>& p, const std::string& prefix, std::int64_t in, std::int64_t out)
      : first_(p, prefix + ".conv1", prefix + ".norm1", out, in, 3),
        second_(p, prefix + ".conv2", prefix + ".norm2", out, out, 3),
        attention_(p, prefix + ".attention", out) {
    if (in != out) skip_.emplace(p, prefix + ".skip.0", prefix + ".skip.1", out, in, 1);
  }

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = first_(b, x, Activation::relu);
    y = second_(b, y);
    y = attention_(b, y);
    if (!skip_) return b.add(y, x, Activation::relu);
    Tensor identity = (*skip_)(b, x);
    return b.add(y, identity, Activation::relu);
  }

 private:
  ConvNorm<B> first_, second_;
  std::optional<ConvNorm<B>> skip_;
  MultiStageAttention<B> attention_;
};

}  // namespace sluice::models
