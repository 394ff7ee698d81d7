// sluice/models/registry.hpp: the four networks by name, behind one type-erased handle, for code
// that picks a network at run time (CLI, server): load_network<B>("hrnet", backend, weights).
// Names are resolved through the alias table of names.hpp, so the service's names work too.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/core/backend.hpp"
#include "sluice/core/error.hpp"
#include "sluice/weights/host_tensor.hpp"
#include "sluice/models/advanced_resunet.hpp"
#include "sluice/models/cbam_resunet.hpp"
#include "sluice/models/hrnet.hpp"
#include "sluice/models/names.hpp"
#include "sluice/models/network.hpp"
#include "sluice/models/resunet_small.hpp"

namespace sluice::models {

/// sluice's names of the networks (what detect_network() answers and checkpoints record).
inline constexpr std::array<std::string_view, 4> kNetworkNames = {"hrnet", "resunet_small", "advanced_resunet",
                                                                 "cbam_resunet"};

/// Any network over backend B. Copies share the same (immutable) weights, so one AnyNetwork can be
/// handed to every lane.
template <Backend B>
class AnyNetwork {
 public:
  using Tensor = typename B::tensor_type;

  template <class N>
    requires Network<N, B>
  AnyNetwork(std::string name, std::shared_ptr<const N> net)
      : name_(std::move(name)), impl_(std::make_shared<const Holder<N>>(std::move(net))) {}

  Tensor forward(B& backend, const Tensor& x) const { return impl_->forward(backend, x); }
  std::int64_t in_channels() const { return impl_->in_channels(); }
  std::int64_t out_channels() const { return impl_->out_channels(); }
  std::int64_t min_input_size() const { return impl_->min_input_size(); }
  const std::string& name() const { return name_; }

 private:
  struct Interface {
    virtual ~Interface() = default;
    virtual Tensor forward(B& backend, const Tensor& x) const = 0;
    virtual std::int64_t in_channels() const = 0;
    virtual std::int64_t out_channels() const = 0;
    virtual std::int64_t min_input_size() const = 0;
  };
  template <class N>
  struct Holder final : Interface {
    explicit Holder(std::shared_ptr<const N> n) : net(std::move(n)) {}
    Tensor forward(B& backend, const Tensor& x) const override { return net->forward(backend, x); }
    std::int64_t in_channels() const override { return net->in_channels(); }
    std::int64_t out_channels() const override { return net->out_channels(); }
    std::int64_t min_input_size() const override { return net->min_input_size(); }
    std::shared_ptr<const N> net;
  };

  std::string name_;
  std::shared_ptr<const Interface> impl_;
};

/// The network a checkpoint holds, told by a key only it has; empty if none matches.
inline std::string detect_network(const weights::TensorDict& weights) {
  if (weights.contains("transition1.0.0.weight")) return "hrnet";
  if (weights.contains("encoder1.0.conv1.weight")) return "advanced_resunet";
  if (weights.contains("downs.0.cbam.spatial_attention.conv.weight")) return "cbam_resunet";
  if (weights.contains("downs.0.se.fc.0.weight")) return "resunet_small";
  return {};
}

/// Builds the network `name` (any spelling in kNetworkAliases) from a checkpoint, with widths
/// detected from it; the handle carries sluice's name. Throws sluice::Error(invalid_argument) for an
/// unknown name or a checkpoint that does not match.
template <Backend B>
AnyNetwork<B> load_network(std::string_view name, B& backend, const weights::TensorDict& weights) {
  const std::string canonical = network_name(name);
  auto make = [&]<template <class> class N>() {
    return AnyNetwork<B>(canonical, std::make_shared<const N<B>>(backend, weights));
  };
  if (canonical == "hrnet") return make.template operator()<HRNet>();
  if (canonical == "resunet_small") return make.template operator()<ResUNetSmall>();
  if (canonical == "advanced_resunet") return make.template operator()<AdvancedResUNet>();
  return make.template operator()<CbamResUNet>();
}

/// Builds whichever of the four networks the checkpoint holds (see detect_network).
template <Backend B>
AnyNetwork<B> load_network(B& backend, const weights::TensorDict& weights) {
  const std::string name = detect_network(weights);
  if (name.empty())
    throw Error(errc::invalid_argument,
                "the checkpoint holds none of the known networks (no transition1.0.0.weight, encoder1.0.conv1.weight, "
                "downs.0.cbam.spatial_attention.conv.weight or downs.0.se.fc.0.weight)");
  return load_network(name, backend, weights);
}

}  // namespace sluice::models
