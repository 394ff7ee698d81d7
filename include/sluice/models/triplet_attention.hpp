// sluice/models/triplet_attention.hpp: triplet attention (kernel 7) of AdvancedResUNet:
// x * a_ch * a_cw * a_hw, three gates from [mean over C, max over C] of x pooled over W, over H,
// and not pooled.
#pragma once

#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class TripletAttention {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.conv_ch.weight (1, 2, 1, 7), `prefix`.conv_cw.weight (1, 2, 7, 1) and
  /// `prefix`.conv_hw.weight (1, 2, 7, 7), no biases. conv_ch runs on a width-1 tensor and conv_cw
  /// on a height-1 tensor, so only their centre taps meet data.
  TripletAttention(ParamBinder<B>& p, const std::string& prefix)
      : conv_ch_(p.conv_centre_tap(prefix + ".conv_ch", 1, 2, 1, 7)),
        conv_cw_(p.conv_centre_tap(prefix + ".conv_cw", 1, 2, 7, 1)),
        conv_hw_(p.conv(prefix + ".conv_hw", 1, 2, 7, Bias::none)) {}

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor a_ch = gate(b, b.mean_over_w(x), conv_ch_);  // (N,1,H,1)
    Tensor a_cw = gate(b, b.mean_over_h(x), conv_cw_);  // (N,1,1,W)
    Tensor a_hw = gate(b, x, conv_hw_);                 // (N,1,H,W)
    Tensor y = b.mul(x, a_ch);
    y = b.mul(y, a_cw);
    return b.mul(y, a_hw);
  }

 private:
  static Tensor gate(B& b, const Tensor& v, const typename B::conv_type& conv) {
    Tensor s = b.channel_mean_max(v);
    return b.conv2d(s, conv, Activation::sigmoid);
  }

  typename B::conv_type conv_ch_, conv_cw_, conv_hw_;
};

}  // namespace sluice::models
