// sluice/models/attention_gate.hpp: the additive attention gate of the U-Net decoders, with an
// optional refinement of its output (spatial attention in ResUNetSmall, triplet attention in
// AdvancedResUNet, none in CBAM-ResUNet).
//   psi = sigmoid(IN(conv1x1(ReLU(IN(W_g g) + IN(W_x x)))))   out = refine(x * psi)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

/// No refinement: the gate's output is x * psi.
template <Backend B>
struct NoRefine {
  NoRefine(ParamBinder<B>&, const std::string&) {}
  typename B::tensor_type operator()(B&, typename B::tensor_type&& x) const { return std::move(x); }
};

/// The biases of a gate's convolutions. All are followed by instance norm, so an absent bias is
/// harmless; `required` only makes binding as strict as PyTorch's for networks that declare them.
struct GateBiases {
  Bias w = Bias::optional;    ///< W_g.0 and W_x.0
  Bias psi = Bias::optional;  ///< psi.0
};

template <Backend B, template <class> class Refine>
class AttentionGate {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.W_g.{0,1}, `prefix`.W_x.{0,1}, `prefix`.psi.{0,1} and the refinement under
  /// `prefix`.`refine_name`. Gate width F_g = F_l = `channels`, inner width `inner`.
  AttentionGate(ParamBinder<B>& p, const std::string& prefix, std::int64_t channels, std::int64_t inner,
                GateBiases biases, const std::string& refine_name)
      : w_g_(p, prefix + ".W_g.0", prefix + ".W_g.1", inner, channels, 1, 1, biases.w),
        w_x_(p, prefix + ".W_x.0", prefix + ".W_x.1", inner, channels, 1, 1, biases.w),
        psi_(p, prefix + ".psi.0", prefix + ".psi.1", 1, inner, 1, 1, biases.psi),
        refine_(p, prefix + "." + refine_name) {}

  /// g: the decoder's upsampled tensor; x: the encoder's skip (same plane size).
  Tensor operator()(B& b, const Tensor& g, const Tensor& x) const {
    Tensor psi = [&] {
      Tensor g1 = w_g_(b, g);
      Tensor s = w_x_(b, x, Activation::relu, &g1);
      return psi_(b, s, Activation::sigmoid);
    }();
    return refine_(b, b.mul(x, psi));
  }

 private:
  ConvNorm<B> w_g_, w_x_, psi_;
  Refine<B> refine_;
};

}  // namespace sluice::models
