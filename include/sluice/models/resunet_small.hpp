// sluice/models/resunet_small.hpp: ResUNetSmall -- the five-level attention residual U-Net whose
// blocks carry squeeze-excitation and spatial attention, with spatially refined attention gates
// on the skips. Defaults [48, 96, 192, 384, 512].
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sluice/models/attention_resunet.hpp"
#include "sluice/models/residual_se_block.hpp"
#include "sluice/models/spatial_attention.hpp"

namespace sluice::models {

struct ResUNetSmallVariant {
  static constexpr const char* kName = "resunet_small";
  static std::vector<std::int64_t> default_features() { return {48, 96, 192, 384, 512}; }
  static constexpr std::int64_t kInitKernel = 7;
  template <class B>
  using Block = ResidualSeBlock<B>;
  template <class B>
  using Gate = AttentionGate<B, SpatialAttention>;
  static std::int64_t gate_inner(std::int64_t f) { return std::max<std::int64_t>(f / 2, 8); }
  static GateBiases gate_biases() { return {}; }
  static constexpr const char* kGateRefine = "spatial_attention";
};

using ResUNetSmallOptions = AttentionResUNetOptions;

template <Backend B>
using ResUNetSmall = AttentionResUNet<B, ResUNetSmallVariant>;

}  // namespace sluice::models
