// sluice/models/final_conv_head.hpp: the segmentation head of the U-Nets, `final_conv` in their
// checkpoints: 3x3 conv -> instance norm -> ReLU (-> dropout, an identity at inference) -> 1x1 conv
// with bias to the output channels. Only the 1x1 conv's index in the Sequential differs between
// the networks (it follows the dropout or not).
#pragma once

#include <cstdint>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class FinalConvHead {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds final_conv.0 / .1 (hidden width from the checkpoint) and final_conv.{classifier_index}
  /// (output channels from the checkpoint) on an input of `in` channels.
  FinalConvHead(ParamBinder<B>& p, std::int64_t in, int classifier_index)
      : FinalConvHead(p, in, p.dim_of("final_conv.0.weight", 0), "final_conv." + std::to_string(classifier_index)) {}

  std::int64_t out_channels() const { return out_channels_; }

  /// The logits: classifier(ReLU(IN(conv(x)))).
  Tensor operator()(B& b, const Tensor& x) const {
    return b.conv2d(conv_norm_(b, x, Activation::relu), classifier_, Activation::none);
  }

 private:
  FinalConvHead(ParamBinder<B>& p, std::int64_t in, std::int64_t hidden, const std::string& classifier)
      : out_channels_(p.dim_of(classifier + ".weight", 0)),
        conv_norm_(p, "final_conv.0", "final_conv.1", hidden, in, 3),
        classifier_(p.conv(classifier, out_channels_, hidden, 1, Bias::required)) {}

  std::int64_t out_channels_;
  ConvNorm<B> conv_norm_;
  typename B::conv_type classifier_;
};

}  // namespace sluice::models
