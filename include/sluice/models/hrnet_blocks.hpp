// sluice/models/hrnet_blocks.hpp: HRNet's residual blocks -- the Bottleneck of layer1 and the
// BasicBlock of every stage branch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

/// conv1x1-IN-ReLU-conv3-IN-ReLU-conv1x1(4 planes)-IN, + shortcut, ReLU. Keys under `prefix`:
/// conv1..3, bn1..3, downsample.{0,1} (when in != 4 planes).
template <Backend B>
class HRNetBottleneck {
 public:
  using Tensor = typename B::tensor_type;
  static constexpr std::int64_t kExpansion = 4;

  HRNetBottleneck(ParamBinder<B>& p, const std::string& prefix, std::int64_t in, std::int64_t planes)
      : c1_(p, prefix + ".conv1", prefix + ".bn1", planes, in, 1),
        c2_(p, prefix + ".conv2", prefix + ".bn2", planes, planes, 3),
        c3_(p, prefix + ".conv3", prefix + ".bn3", planes * kExpansion, planes, 1) {
    if (in != planes * kExpansion)
      downsample_.emplace(p, prefix + ".downsample.0", prefix + ".downsample.1", planes * kExpansion, in, 1);
  }

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = c1_(b, x, Activation::relu);
    y = c2_(b, y, Activation::relu);
    if (!downsample_) return c3_(b, y, Activation::relu, &x);
    Tensor shortcut = (*downsample_)(b, x);
    return c3_(b, y, Activation::relu, &shortcut);
  }

 private:
  ConvNorm<B> c1_, c2_, c3_;
  std::optional<ConvNorm<B>> downsample_;
};

/// conv3-IN-ReLU-conv3-IN, + x, ReLU. Keys under `prefix`: conv1, bn1, conv2, bn2.
template <Backend B>
class HRNetBasicBlock {
 public:
  using Tensor = typename B::tensor_type;

  HRNetBasicBlock(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels)
      : c1_(p, prefix + ".conv1", prefix + ".bn1", channels, channels, 3),
        c2_(p, prefix + ".conv2", prefix + ".bn2", channels, channels, 3) {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = c1_(b, x, Activation::relu);
    return c2_(b, y, Activation::relu, &x);
  }

 private:
  ConvNorm<B> c1_, c2_;
};

}  // namespace sluice::models
