// sluice/models/hrnet.hpp: HRNetV2 for segmentation (W48 by default), with instance norm. Branch
// widths, module counts and block counts are read from the checkpoint.
//   stem (2 x conv3/s2) -> layer1 (Bottlenecks) -> stages 2..4 of parallel branches, fused after
//   every module -> head on the concatenation of all branches -> logits at the input size.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/weights/host_tensor.hpp"
#include "sluice/models/conv_norm.hpp"
#include "sluice/models/hrnet_blocks.hpp"
#include "sluice/models/network.hpp"
#include "sluice/models/param_binder.hpp"

namespace sluice::models {

struct HRNetOptions {
  /// Expected branch widths (e.g. {48, 96, 192, 384}); empty accepts the checkpoint's.
  std::vector<std::int64_t> widths;
};

template <Backend B>
class HRNet {
 public:
  using Tensor = typename B::tensor_type;
  static constexpr const char* kName = "hrnet";
  static constexpr std::int64_t kStemWidth = 64;
  static constexpr std::int64_t kBranches = 4;
  /// The last branch's norms see the input after five 3x3 stride-2 convolutions: conv1, conv2,
  /// transition1.1, transition2.2, transition3.3.
  static constexpr DeepestNormPlane kDeepestNorm{kConv3x3Stride2, 5};

  /// Binds every parameter by its state-dict key; throws sluice::Error(invalid_argument) listing
  /// every missing, unexpected or misshapen tensor.
  HRNet(B& backend, const weights::TensorDict& weights, const HRNetOptions& options = {}) {
    ParamBinder<B> p(backend, weights);
    widths_ = {p.dim_of("transition1.0.0.weight", 0), p.dim_of("transition1.1.0.0.weight", 0),
               p.dim_of("transition2.2.0.0.weight", 0), p.dim_of("transition3.3.0.0.weight", 0)};
    check_widths(kName, options.widths, {widths_.begin(), widths_.end()});
    out_channels_ = p.dim_of("last_layer.3.weight", 0);
    in_channels_ = p.dim_of("conv1.weight", 1);

    stem1_.emplace(p, "conv1", "bn1", kStemWidth, in_channels_, 3, 2);
    stem2_.emplace(p, "conv2", "bn2", kStemWidth, kStemWidth, 3, 2);
    const std::int64_t layer1_blocks = count(p, [](int k) { return "layer1." + std::to_string(k) + ".conv1.weight"; }, 4);
    std::int64_t in = kStemWidth;
    for (int k = 0; k < layer1_blocks; ++k) {
      layer1_.emplace_back(p, "layer1." + std::to_string(k), in, kStemWidth);
      in = kStemWidth * HRNetBottleneck<B>::kExpansion;
    }
    const std::int64_t layer1_out = in;
    transitions_.emplace_back(p, "transition1.0.0", "transition1.0.1", widths_[0], layer1_out, 3, 1);
    transitions_.emplace_back(p, "transition1.1.0.0", "transition1.1.0.1", widths_[1], layer1_out, 3, 2);
    transitions_.emplace_back(p, "transition2.2.0.0", "transition2.2.0.1", widths_[2], widths_[1], 3, 2);
    transitions_.emplace_back(p, "transition3.3.0.0", "transition3.3.0.1", widths_[3], widths_[2], 3, 2);

    const std::array<std::int64_t, 3> default_modules = {1, 4, 3};
    for (int s = 0; s < 3; ++s) {
      const std::string stage = "stage" + std::to_string(s + 2) + ".";
      const int branches = s + 2;
      const std::int64_t modules = count(
          p, [&](int m) { return stage + std::to_string(m) + ".branches.0.0.conv1.weight"; }, default_modules[s]);
      const std::int64_t blocks = count(
          p, [&](int k) { return stage + "0.branches.0." + std::to_string(k) + ".conv1.weight"; }, 4);
      auto& modules_of_stage = stages_[s];
      for (int m = 0; m < modules; ++m)
        modules_of_stage.emplace_back(p, stage + std::to_string(m), branches, blocks, widths_);
    }

    const std::int64_t head = widths_[0] + widths_[1] + widths_[2] + widths_[3];
    head_.emplace(p, "last_layer.0", "last_layer.1", head, head, 1, 1, Bias::required);
    classifier_.emplace(p.conv("last_layer.3", out_channels_, head, 1, Bias::required));
    p.finish();
  }

  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  /// The smallest square input (33x33): see kDeepestNorm.
  std::int64_t min_input_size() const { return kDeepestNorm.min_side(); }
  const std::array<std::int64_t, 4>& widths() const { return widths_; }

  /// N x 3 x H x W -> N x n_class x H x W logits.
  Tensor forward(B& b, const Tensor& input) const {
    const Shape in_shape = b.shape_of(input);
    check_input(kName, in_shape, in_channels_, kDeepestNorm);
    std::vector<Tensor> x;
    {
      Tensor y = (*stem1_)(b, input, Activation::relu);
      y = (*stem2_)(b, y, Activation::relu);
      for (const auto& block : layer1_) y = block(b, y);
      x.push_back(transitions_[0](b, y, Activation::relu));
      x.push_back(transitions_[1](b, y, Activation::relu));
    }
    for (int s = 0; s < 3; ++s) {
      if (s > 0) x.push_back(transitions_[static_cast<std::size_t>(s + 1)](b, x.back(), Activation::relu));
      for (const auto& module : stages_[s]) x = module(b, std::move(x));
    }
    Tensor y = [&] {
      const Shape s0 = b.shape_of(x[0]);
      for (std::size_t i = 1; i < x.size(); ++i) x[i] = b.resize_bilinear(x[i], s0.h, s0.w, true);
      Tensor cat = b.concat({&x[0], &x[1], &x[2], &x[3]});
      x.clear();
      return (*head_)(b, cat, Activation::relu);
    }();
    y = b.conv2d(y, *classifier_, Activation::none);
    // The original scales by 4; sluice resizes to exactly the input size (the same when 32 | H, W).
    return b.resize_bilinear(y, in_shape.h, in_shape.w, true);
  }

 private:
  /// One multi-resolution module: every branch runs its blocks, then every output branch i sums
  /// f_ij(x_j) over all branches j and applies ReLU.
  class Module {
   public:
    Module(ParamBinder<B>& p, const std::string& prefix, int branches, std::int64_t blocks,
           const std::array<std::int64_t, 4>& widths)
        : branches_(static_cast<std::size_t>(branches)), fuse_(static_cast<std::size_t>(branches)) {
      for (int i = 0; i < branches; ++i)
        for (int k = 0; k < blocks; ++k)
          branches_[i].emplace_back(p, prefix + ".branches." + std::to_string(i) + "." + std::to_string(k), widths[i]);
      for (int i = 0; i < branches; ++i) {
        fuse_[i].resize(static_cast<std::size_t>(branches));
        for (int j = 0; j < branches; ++j) {
          const std::string f = prefix + ".fuse_layers." + std::to_string(i) + "." + std::to_string(j);
          if (j > i) {
            fuse_[i][j].emplace_back(p, f + ".0", f + ".1", widths[i], widths[j], 1);
          } else if (j < i) {
            for (int k = 0; k < i - j; ++k) {
              const bool last = k == i - j - 1;
              const std::string link = f + "." + std::to_string(k);
              fuse_[i][j].emplace_back(p, link + ".0", link + ".1", last ? widths[i] : widths[j], widths[j], 3, 2);
            }
          }
        }
      }
    }

    std::vector<Tensor> operator()(B& b, std::vector<Tensor> x) const {
      const std::size_t n = branches_.size();
      for (std::size_t i = 0; i < n; ++i)
        for (const auto& block : branches_[i]) x[i] = block(b, x[i]);
      std::vector<Tensor> out;
      out.reserve(n);
      for (std::size_t i = 0; i < n; ++i) out.push_back(fuse(b, x, i));
      return out;
    }

   private:
    // y_i = ReLU(sum_j f_ij(x_j)), summed in the original's order j = 0, 1, ...
    Tensor fuse(B& b, const std::vector<Tensor>& x, std::size_t i) const {
      const std::size_t n = x.size();
      const Shape target = b.shape_of(x[i]);
      std::optional<Tensor> acc;
      const Tensor* sum = nullptr;
      for (std::size_t j = 0; j < n; ++j) {
        const Activation act = j + 1 == n ? Activation::relu : Activation::none;
        const auto& chain = fuse_[i][j];
        if (j == i) {
          if (!sum) {
            sum = &x[i];
            continue;
          }
          acc = b.add(*sum, x[i], act);
        } else if (j > i) {
          Tensor t = chain[0](b, x[j]);
          t = b.resize_bilinear(t, target.h, target.w, true);
          acc = sum ? b.add(*sum, t, act) : std::move(t);
        } else {
          std::optional<Tensor> t;
          const Tensor* src = &x[j];
          for (std::size_t k = 0; k + 1 < chain.size(); ++k) {
            t = chain[k](b, *src, Activation::relu);
            src = &*t;
          }
          acc = chain.back()(b, *src, sum ? act : Activation::none, sum);
        }
        sum = &*acc;
      }
      return std::move(*acc);
    }

    std::vector<std::vector<HRNetBasicBlock<B>>> branches_;
    std::vector<std::vector<std::vector<ConvNorm<B>>>> fuse_;  // fuse_[i][j]: chain from branch j to i
  };

  template <class KeyOf>
  static std::int64_t count(const ParamBinder<B>& p, KeyOf key_of, std::int64_t fallback) {
    int n = 0;
    while (p.has(key_of(n))) ++n;
    return n > 0 ? n : fallback;  // none found: bind the default so that finish() names the keys
  }

  std::array<std::int64_t, 4> widths_{};
  std::int64_t in_channels_ = 3, out_channels_ = 1;
  std::optional<ConvNorm<B>> stem1_, stem2_, head_;
  std::vector<HRNetBottleneck<B>> layer1_;
  std::vector<ConvNorm<B>> transitions_;
  std::array<std::vector<Module>, 3> stages_;
  std::optional<typename B::conv_type> classifier_;
};

}  // namespace sluice::models
