// sluice/models/advanced_resunet.hpp: AdvancedResUNet ("ResUNet Advanced") -- a four-level U-Net
// of advanced residual blocks (SimAM + triplet attention), lightweight multi-head self-attention
// in the bottleneck and triplet-refined attention gates. Widths are read from the checkpoint
// (encoder{i}.0.conv1.weight); deployed [64, 128, 256, 512]. Unlike the original, odd sizes work
// (a decoder tensor is resized to its skip's size when pooling floored one) from 32x32 up.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/weights/host_tensor.hpp"
#include "sluice/models/advanced_residual_block.hpp"
#include "sluice/models/attention_gate.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/final_conv_head.hpp"
#include "sluice/models/lightweight_self_attention.hpp"
#include "sluice/models/network.hpp"
#include "sluice/models/param_binder.hpp"
#include "sluice/models/triplet_attention.hpp"

namespace sluice::models {

struct AdvancedResUNetOptions {
  /// Expected widths (e.g. {64, 128, 256, 512}); empty accepts the checkpoint's.
  std::vector<std::int64_t> features;
  std::int64_t heads = 8;  ///< heads of the bottleneck self-attention
};

template <Backend B>
class AdvancedResUNet {
 public:
  using Tensor = typename B::tensor_type;
  using Block = AdvancedResidualBlock<B>;
  using Gate = AttentionGate<B, TripletAttention>;
  static constexpr const char* kName = "advanced_resunet";
  static constexpr std::array<int, 4> kEncoderBlocks = {2, 2, 3, 3};
  /// The bottleneck's norms see the input after the four encoders' 2x2 poolings.
  static constexpr DeepestNormPlane kDeepestNorm{kMaxPool2x2, 4};

  AdvancedResUNet(B& backend, const weights::TensorDict& weights, const AdvancedResUNetOptions& options = {}) {
    ParamBinder<B> p(backend, weights);
    for (int i = 1; i <= 4; ++i) features_[i - 1] = p.dim_of("encoder" + std::to_string(i) + ".0.conv1.weight", 0);
    check_widths(kName, options.features, {features_.begin(), features_.end()});
    in_channels_ = p.dim_of("init_conv.0.weight", 1);
    const std::int64_t f0 = features_[0], top = features_[3];

    init_.emplace(p, "init_conv.0", "init_conv.1", f0, in_channels_, 7);
    std::int64_t in = f0;
    for (int s = 0; s < 4; ++s) {
      for (int k = 0; k < kEncoderBlocks[s]; ++k) {
        encoders_[s].emplace_back(p, "encoder" + std::to_string(s + 1) + "." + std::to_string(k), in, features_[s]);
        in = features_[s];
      }
    }
    bottleneck_in_.emplace(p, "bottleneck.0", top, 2 * top);
    attention_.emplace(p, "bottleneck.1", 2 * top, options.heads);
    bottleneck_out_.emplace(p, "bottleneck.2", 2 * top, 2 * top);
    in = 2 * top;
    for (int k = 4; k >= 1; --k) {  // decoder k runs at the resolution of encoder k
      const std::int64_t f = features_[k - 1];
      const std::string n = std::to_string(k);
      auto& stage = decoders_[k - 1];
      stage.up.emplace(p.up("upconv" + n, in, f));
      stage.gate.emplace(p, "att" + n, f, f / 2, GateBiases{Bias::optional, Bias::required}, "refine");
      stage.blocks.emplace_back(p, "decoder" + n + ".0", 2 * f, f);
      stage.blocks.emplace_back(p, "decoder" + n + ".1", f, f);
      in = f;
    }
    head_.emplace(p, f0, 3);
    p.finish();
  }

  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return head_->out_channels(); }
  /// The smallest square input (32x32): see kDeepestNorm.
  std::int64_t min_input_size() const { return kDeepestNorm.min_side(); }
  std::vector<std::int64_t> features() const { return {features_.begin(), features_.end()}; }

  Tensor forward(B& b, const Tensor& input) const {
    const Shape in_shape = b.shape_of(input);
    check_input(kName, in_shape, in_channels_, kDeepestNorm);
    Tensor x = (*init_)(b, input, Activation::relu);
    std::vector<Tensor> skips;
    for (const auto& stage : encoders_) {
      for (const auto& block : stage) x = block(b, x);
      skips.push_back(std::move(x));
      x = b.max_pool2x2(skips.back());
    }
    x = (*bottleneck_in_)(b, x);
    x = (*attention_)(b, x);  // no residual around the attention, as in the original
    x = (*bottleneck_out_)(b, x);
    for (int k = 4; k >= 1; --k) {
      const auto& stage = decoders_[k - 1];
      x = b.conv_transpose2x2(x, *stage.up);
      const Tensor& skip = skips.back();
      if (!same_plane(b, x, skip)) {
        const Shape s = b.shape_of(skip);
        x = b.resize_bilinear(x, s.h, s.w, false);
      }
      Tensor cat = [&] {
        Tensor a = (*stage.gate)(b, x, skip);
        return b.concat({&a, &x});
      }();
      skips.pop_back();
      x = stage.blocks[0](b, cat);
      x = stage.blocks[1](b, x);
    }
    return (*head_)(b, x);
  }

 private:
  struct DecoderStage {
    std::optional<typename B::conv_transpose_type> up;
    std::optional<Gate> gate;
    std::vector<Block> blocks;
  };

  std::array<std::int64_t, 4> features_{};
  std::int64_t in_channels_ = 3;
  std::optional<ConvNorm<B>> init_;
  std::optional<FinalConvHead<B>> head_;
  std::array<std::vector<Block>, 4> encoders_;
  std::optional<Block> bottleneck_in_, bottleneck_out_;
  std::optional<LightweightSelfAttention<B>> attention_;
  std::array<DecoderStage, 4> decoders_;
};

}  // namespace sluice::models
