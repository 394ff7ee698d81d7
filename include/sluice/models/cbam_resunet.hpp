// sluice/models/cbam_resunet.hpp: CBAM-ResUNet -- the four-level attention residual U-Net whose
// blocks end in CBAM (channel then spatial attention), with plain attention gates (biased 1x1
// convs) on the skips. Defaults [64, 128, 256, 512].
#pragma once

#include <cstdint>
#include <vector>

#include "sluice/models/attention_resunet.hpp"
#include "sluice/models/residual_cbam_block.hpp"

namespace sluice::models {

struct CbamResUNetVariant {
  static constexpr const char* kName = "cbam_resunet";
  static std::vector<std::int64_t> default_features() { return {64, 128, 256, 512}; }
  static constexpr std::int64_t kInitKernel = 3;
  template <class B>
  using Block = ResidualCbamBlock<B>;
  template <class B>
  using Gate = AttentionGate<B, NoRefine>;
  static std::int64_t gate_inner(std::int64_t f) { return f / 2; }
  static GateBiases gate_biases() { return {Bias::required, Bias::required}; }
  static constexpr const char* kGateRefine = "";
};

using CbamResUNetOptions = AttentionResUNetOptions;

template <Backend B>
using CbamResUNet = AttentionResUNet<B, CbamResUNetVariant>;

}  // namespace sluice::models
