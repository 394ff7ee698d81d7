// sluice/models/lightweight_self_attention.hpp: the bottleneck self-attention of AdvancedResUNet:
// qkv = conv1x1(dim -> 3 dim)(depthwise conv3(x)), multi-head softmax attention over the H*W
// tokens (the backend never materialises the full token x token matrix), then a 1x1 projection.
#pragma once

#include <cstdint>
#include <string>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

template <Backend B>
class LightweightSelfAttention {
 public:
  using Tensor = typename B::tensor_type;

  /// Binds `prefix`.qkv.0.weight (dim, 1, 3, 3) depthwise, `prefix`.qkv.1.weight (3 dim, dim, 1, 1),
  /// `prefix`.proj.{weight,bias} and ignores `prefix`.relative_position_bias_table (never read).
  LightweightSelfAttention(ParamBinder<B>& p, const std::string& prefix, std::int64_t dim, std::int64_t heads)
      : heads_(check_heads(dim, heads)),
        depthwise_(p.conv(prefix + ".qkv.0", dim, dim, 3, 3, ConvSpec{1, 1, 1, 1, 1, 1, dim}, Bias::none)),
        qkv_(p.conv(prefix + ".qkv.1", 3 * dim, dim, 1, Bias::none)),
        proj_(p.conv(prefix + ".proj", dim, dim, 1, Bias::required)) {
    p.ignore(prefix + ".relative_position_bias_table");
  }

  Tensor operator()(B& b, const Tensor& x) const {
    Tensor y = b.conv2d(x, depthwise_, Activation::none);
    y = b.conv2d(y, qkv_, Activation::none);
    y = b.self_attention(y, heads_);
    return b.conv2d(y, proj_, Activation::none);
  }

 private:
  static std::int64_t check_heads(std::int64_t dim, std::int64_t heads) {
    if (heads <= 0 || dim % heads != 0)
      throw Error(errc::invalid_argument, "self-attention: " + std::to_string(dim) + " channels do not split into " +
                                              std::to_string(heads) + " heads");
    return heads;
  }

  std::int64_t heads_;
  typename B::conv_type depthwise_, qkv_, proj_;
};

}  // namespace sluice::models
