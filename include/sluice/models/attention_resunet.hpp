// sluice/models/attention_resunet.hpp: the residual U-Net with attention-gated skips that
// ResUNetSmall and CBAM-ResUNet share: init conv, an encoder of residual blocks (each output a skip,
// then pool), a two-block bottleneck, a decoder of transposed conv -> gate(skip) -> concat -> block,
// and a final conv. A Variant supplies what differs: block and gate types, init kernel, gate width.
// Widths are read from the checkpoint (downs.{i}.conv1.weight).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/weights/host_tensor.hpp"
#include "sluice/models/attention_gate.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/final_conv_head.hpp"
#include "sluice/models/network.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

struct AttentionResUNetOptions {
  /// Expected encoder widths; empty accepts the checkpoint's.
  std::vector<std::int64_t> features;
};

/// Variant requirements: kName, default_features(), kInitKernel, Block<B>, Gate<B>,
/// gate_inner(f), gate_biases(), kGateRefine (the refinement's key, "" for none).
template <Backend B, class Variant>
class AttentionResUNet {
 public:
  using Tensor = typename B::tensor_type;
  using Block = typename Variant::template Block<B>;
  using Gate = typename Variant::template Gate<B>;
  static constexpr const char* kName = Variant::kName;

  AttentionResUNet(B& backend, const weights::TensorDict& weights, const AttentionResUNetOptions& options = {}) {
    ParamBinder<B> p(backend, weights);
    for (int i = 0; p.has("downs." + std::to_string(i) + ".conv1.weight"); ++i)
      features_.push_back(p.dim_of("downs." + std::to_string(i) + ".conv1.weight", 0));
    if (features_.empty()) features_ = Variant::default_features();  // let finish() name what is missing
    check_widths(kName, options.features, features_);
    in_channels_ = p.dim_of("init_conv.0.weight", 1);
    const std::int64_t f0 = features_.front(), top = features_.back();

    init_.emplace(p, "init_conv.0", "init_conv.1", f0, in_channels_, Variant::kInitKernel);
    std::int64_t in = f0;
    for (std::size_t i = 0; i < features_.size(); ++i) {
      downs_.emplace_back(p, "downs." + std::to_string(i), in, features_[i]);
      in = features_[i];
    }
    bottleneck_.emplace_back(p, "bottleneck.0", top, 2 * top);
    bottleneck_.emplace_back(p, "bottleneck.1", 2 * top, 2 * top);
    in = 2 * top;
    for (std::size_t i = 0; i < features_.size(); ++i) {
      const std::int64_t f = features_[features_.size() - 1 - i];
      ups_.push_back(p.up("ups." + std::to_string(2 * i), in, f));
      gates_.emplace_back(p, "attentions." + std::to_string(i), f, Variant::gate_inner(f), Variant::gate_biases(),
                          Variant::kGateRefine);
      decoder_.emplace_back(p, "ups." + std::to_string(2 * i + 1), 2 * f, f);
      in = f;
    }
    head_.emplace(p, f0, 4);
    p.finish();
  }

  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return head_->out_channels(); }
  /// The smallest square input (2^(levels + 1)): see deepest_norm().
  std::int64_t min_input_size() const { return deepest_norm().min_side(); }
  const std::vector<std::int64_t>& features() const { return features_; }

  Tensor forward(B& b, const Tensor& input) const {
    const Shape in_shape = b.shape_of(input);
    check_input(kName, in_shape, in_channels_, deepest_norm());
    Tensor x = (*init_)(b, input, Activation::relu);
    std::vector<Tensor> skips;
    for (const auto& down : downs_) {
      skips.push_back(down(b, x));
      x = b.max_pool2x2(skips.back());
    }
    for (const auto& block : bottleneck_) x = block(b, x);
    for (std::size_t i = 0; i < ups_.size(); ++i) {
      x = b.conv_transpose2x2(x, ups_[i]);
      const Tensor& skip = skips.back();
      if (!same_plane(b, x, skip)) {  // odd sizes: pooling floored, so match the skip's plane
        const Shape s = b.shape_of(skip);
        x = b.resize_bilinear(x, s.h, s.w, false);
      }
      Tensor cat = [&] {
        Tensor a = gates_[i](b, x, skip);
        return b.concat({&a, &x});
      }();
      skips.pop_back();
      x = decoder_[i](b, cat);
    }
    x = (*head_)(b, x);
    if (const Shape s = b.shape_of(x); s.h != in_shape.h || s.w != in_shape.w)
      x = b.resize_bilinear(x, in_shape.h, in_shape.w, false);
    return x;
  }

 private:
  /// The bottleneck's norms see the input after one 2x2 pooling per encoder level.
  DeepestNormPlane deepest_norm() const { return {kMaxPool2x2, static_cast<int>(features_.size())}; }

  std::vector<std::int64_t> features_;
  std::int64_t in_channels_ = 3;
  std::optional<ConvNorm<B>> init_;
  std::optional<FinalConvHead<B>> head_;
  std::vector<Block> downs_, bottleneck_, decoder_;
  std::vector<typename B::conv_transpose_type> ups_;
  std::vector<Gate> gates_;
};

}  // namespace sluice::models
