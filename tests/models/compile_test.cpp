// Compile-time checks of the networks against the reference backend: each satisfies Network, and
// the registry's type-erased handle does too.
#include <gtest/gtest.h>

#include "support/reference_backend.hpp"
#include "sluice/models/registry.hpp"

namespace {
using sluice::test::ReferenceBackend;
using namespace sluice::models;

static_assert(Network<HRNet<ReferenceBackend>, ReferenceBackend>);
static_assert(Network<ResUNetSmall<ReferenceBackend>, ReferenceBackend>);
static_assert(Network<AdvancedResUNet<ReferenceBackend>, ReferenceBackend>);
static_assert(Network<CbamResUNet<ReferenceBackend>, ReferenceBackend>);
static_assert(Network<AnyNetwork<ReferenceBackend>, ReferenceBackend>);
static_assert(!Network<int, ReferenceBackend>);
struct NoForward {
  std::int64_t in_channels() const { return 3; }
  std::int64_t out_channels() const { return 1; }
  std::int64_t min_input_size() const { return 1; }
};
static_assert(!Network<NoForward, ReferenceBackend>);

TEST(Registry, UnknownNameIsInvalidArgument) {
  ReferenceBackend b;
  sluice::weights::TensorDict empty;
  try {
    (void)load_network<ReferenceBackend>("unet9000", b, empty);
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
  ReferenceBackend b;
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
