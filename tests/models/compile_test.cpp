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
