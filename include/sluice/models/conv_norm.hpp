// sluice/models/conv_norm.hpp: the commonest unit of the four networks -- a convolution followed by
// affine instance norm, with the norm's fused tail act(IN(conv(x)) + residual).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "sluice/core/backend.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class ConvNorm {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `conv`.weight (out, in, k, k) with padding k/2 and `norm`.{weight,bias} (out). A bias
  /// of the conv is optional: instance norm cancels it, but a checkpoint that holds one applies it.
  ConvNorm(ParamBinder<B>& p, const std::string& conv, const std::string& norm, std::int64_t out, std::int64_t in,
           std::int64_t k, std::int64_t stride = 1, Bias bias = Bias::optional)
      : conv_(p.conv(conv, out, in, k, bias, stride)), norm_(p.norm(norm, out)) {}

  /// act(IN(conv(x)) + residual); `residual` may be null.
  Tensor operator()(B& b, const Tensor& x, Activation act = Activation::none, const Tensor* residual = nullptr) const {
    Tensor y = b.conv2d(x, conv_, Activation::none);
    return b.instance_norm(std::move(y), norm_, NormEpilogue{residual, act});
  }

 private:
  typename B::conv_type conv_;
  typename B::norm_type norm_;
};

/// Shape helpers shared by the networks.
template <Backend B>
bool same_plane(const B& b, const typename B::tensor_type& x, const typename B::tensor_type& ref) {
  const Shape a = b.shape_of(x), r = b.shape_of(ref);
  return a.h == r.h && a.w == r.w;
}

}  // namespace sluice::models
