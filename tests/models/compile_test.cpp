// Compile-time checks of the networks against the naive backend of examples/minimal_backend: each
// satisfies Network, and the registry's type-erased handle does too.
#include <gtest/gtest.h>

#include <type_traits>

#include "minimal_backend/minimal_backend.hpp"
#include "sluice/models/registry.hpp"

namespace {
using minimal::MinimalBackend;
using namespace sluice::models;

// Move-only tensors: a network that copies an activation by accident does not compile here.
static_assert(!std::is_copy_constructible_v<MinimalBackend::tensor_type>);
static_assert(Network<HRNet<MinimalBackend>, MinimalBackend>);
static_assert(Network<ResUNetSmall<MinimalBackend>, MinimalBackend>);
static_assert(Network<AdvancedResUNet<MinimalBackend>, MinimalBackend>);
static_assert(Network<CbamResUNet<MinimalBackend>, MinimalBackend>);
static_assert(Network<AnyNetwork<MinimalBackend>, MinimalBackend>);
static_assert(!Network<int, MinimalBackend>);
struct NoForward {
  std::int64_t in_channels() const { return 3; }
  std::int64_t out_channels() const { return 1; }
  std::int64_t min_input_size() const { return 1; }
};
static_assert(!Network<NoForward, MinimalBackend>);

TEST(Registry, UnknownNameIsInvalidArgument) {
  MinimalBackend b;
  sluice::weights::TensorDict empty;
  try {
    (void)load_network<MinimalBackend>("unet9000", b, empty);
    FAIL() << "expected an error";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("unet9000"), std::string::npos);
  }
}
TEST(Registry, TheServicesNamesResolveToSluicesAndUnknownNamesListTheKnownOnes) {
  EXPECT_EQ(sluice::models::network_name("resunet_advanced"), "advanced_resunet");
  EXPECT_EQ(sluice::models::network_name("advanced_resunet"), "advanced_resunet");
  EXPECT_EQ(sluice::models::network_name("hrnet"), "hrnet");
  EXPECT_EQ(sluice::models::network_name("cbam_resunet"), "cbam_resunet");
  EXPECT_EQ(sluice::models::find_network("resunet_small")->service_name, "resunet_small");
  const auto all = sluice::models::spellings(*sluice::models::find_network("resunet_advanced"));
  EXPECT_EQ(all, (std::vector<std::string>{"advanced_resunet", "resunet_advanced"}));
  EXPECT_FALSE(sluice::models::find_network("unet_spherohq"));
  try {
    (void)sluice::models::network_name("unet_spherohq");
    FAIL() << "expected an error";
  } catch (const sluice::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("resunet_advanced"), std::string::npos) << what;
    EXPECT_NE(what.find("advanced_resunet"), std::string::npos) << what;
  }
}
TEST(Registry, ACheckpointOfNoKnownNetworkIsInvalidArgument) {
  MinimalBackend b;
  sluice::weights::TensorDict weights;
  weights["conv.weight"] = sluice::weights::HostTensor{{1, 1, 1, 1}, {1.0f}};
  EXPECT_EQ(detect_network(weights), "");
  try {
    (void)load_network(b, weights);
    FAIL() << "expected an error";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
  }
}
}  // namespace
