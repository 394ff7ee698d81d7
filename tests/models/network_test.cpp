// The four networks against PyTorch: goldens written by tools/reference (random weights, random
// inputs at a normal and an odd size), on the CPU backend and on the naive backend of
// examples/minimal_backend.
// Also: batch invariance, strict weight binding, widths detected from the checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "minimal_backend/minimal_backend.hpp"
#include "support/golden.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

namespace {

using minimal::MinimalBackend;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::test::GoldenCase;
namespace weights = sluice::weights;
namespace models = sluice::models;

struct Loaded {
  weights::TensorDict weights;
  weights::SafetensorsData io;
  std::string network;
};

Loaded load(const GoldenCase& c) {
  Loaded l{weights::load_checkpoint(c.weights), weights::read_safetensors(c.io), {}};
  auto it = l.io.metadata.find("network");
  l.network = it != l.io.metadata.end() ? it->second : models::detect_network(l.weights);
  return l;
}

std::int64_t parameter_count(const weights::TensorDict& w) {
  std::int64_t n = 0;
  for (const auto& [name, t] : w) n += t.numel();
  return n;
}

CpuBackend make_cpu() {
  sluice::cpu::CpuOptions options;
  options.threads = 2;
  return CpuBackend(options);
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

// Both sizes of a case on backend B: output shape N x 1 x H x W and PyTorch's values.
template <class B>
void expect_matches_pytorch(B& backend, const Loaded& l, const std::string& precision = "fp32") {
  const auto net = models::load_network(l.network, backend, l.weights);
  for (const std::string suffix : {"", "_odd"}) {
    SCOPED_TRACE("input" + suffix);
    const auto& in = l.io.tensors.at("input" + suffix);
    const auto& expected = l.io.tensors.at("output" + suffix);
    const Shape in_shape = sluice::test::shape4(in);
    Shape out_shape;
    const auto out = sluice::test::run_host(net, backend, in.data, in_shape, &out_shape);
    EXPECT_EQ(out_shape, (Shape{in_shape.n, 1, in_shape.h, in_shape.w}));
    ASSERT_EQ(out_shape, sluice::test::shape4(expected));
    const double err = sluice::test::relative_l2(out, expected.data);
    EXPECT_LT(err, sluice::test::golden_tolerance(l.io, "output" + suffix, precision))
        << l.network << " at " << in_shape.to_string() << " in " << precision;
    if (precision != "fp32") {  // the rounding really happened: far above float32's error
      EXPECT_GT(err, 10 * sluice::test::golden_tolerance(l.io, "output" + suffix)) << l.network;
      std::printf("%s%s %s: rel. L2 %.3g, PyTorch's own x 2: %.3g\n", l.network.c_str(), suffix.c_str(),
                  precision.c_str(), err, sluice::test::golden_tolerance(l.io, "output" + suffix, precision));
    }
  }
}

TEST_P(Golden, CpuBackendMatchesPyTorch) {
  const Loaded l = load(GetParam());
  CpuBackend cpu = make_cpu();
  expect_matches_pytorch(cpu, l);
}

// CPU bf16 (bf16 GEMM operands, float32 sums): within twice PyTorch's own error with bf16 rounding
// emulated (tools/reference/make_goldens.py), on CPUs with AVX512_BF16.
TEST_P(Golden, CpuBackendInBf16IsWithinTwicePyTorchsBf16Error) {
  const Loaded l = load(GetParam());
  CpuBackend cpu({.threads = 2, .precision = sluice::cpu::Precision::bf16});
  if (cpu.precision() != sluice::cpu::Precision::bf16) GTEST_SKIP() << cpu.precision_note();
  expect_matches_pytorch(cpu, l, "bf16");
}

// The networks on a backend that shares no code with the CPU backend (small cases only: it is slow).
TEST_P(Golden, MinimalBackendMatchesPyTorch) {
  const Loaded l = load(GetParam());
  if (parameter_count(l.weights) > 3'000'000) GTEST_SKIP() << "too large for the naive backend";
  MinimalBackend naive;
  expect_matches_pytorch(naive, l);
}

TEST_P(Golden, WidthsAreDetectedFromTheCheckpoint) {
  const Loaded l = load(GetParam());
  // "config" is JSON such as {"widths": [4, 8, 12, 16]}: the list holds the widths.
  auto it = l.io.metadata.find("config");
  ASSERT_NE(it, l.io.metadata.end()) << "the golden's metadata holds its configuration";
  const std::string& config = it->second;
  const auto open = config.find('['), close = config.find(']');
  ASSERT_TRUE(open != std::string::npos && close != std::string::npos && open < close) << config;
  CpuBackend cpu = make_cpu();
  std::vector<std::int64_t> detected;
  if (l.network == "hrnet") {
    const models::HRNet<CpuBackend> net(cpu, l.weights);
    detected = {net.widths().begin(), net.widths().end()};
  } else if (l.network == "resunet_small") {
    detected = models::ResUNetSmall<CpuBackend>(cpu, l.weights).features();
  } else if (l.network == "advanced_resunet") {
    detected = models::AdvancedResUNet<CpuBackend>(cpu, l.weights).features();
  } else {
    detected = models::CbamResUNet<CpuBackend>(cpu, l.weights).features();
  }
  std::string listed;
  for (auto w : detected) listed += (listed.empty() ? "" : ", ") + std::to_string(w);
  std::string expected;
  for (char ch : config.substr(open + 1, close - open - 1))
    if (ch != ' ') expected += ch;
  std::string got;
  for (char ch : listed)
    if (ch != ' ') got += ch;
  EXPECT_EQ(got, expected);

  // Asking for other widths than the checkpoint's is an error that names both.
  std::vector<std::int64_t> other = detected;
  other.back() += 1;
  try {
    if (l.network == "hrnet") (void)models::HRNet<CpuBackend>(cpu, l.weights, {.widths = other});
    else if (l.network == "resunet_small") (void)models::ResUNetSmall<CpuBackend>(cpu, l.weights, {.features = other});
    else if (l.network == "advanced_resunet") (void)models::AdvancedResUNet<CpuBackend>(cpu, l.weights, {.features = other});
    else (void)models::CbamResUNet<CpuBackend>(cpu, l.weights, {.features = other});
    FAIL() << "other widths must be rejected";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find(std::to_string(other.back())), std::string::npos) << e.what();
  }
}

TEST_P(Golden, TheCheckpointTellsWhichNetworkItHolds) {
  const Loaded l = load(GetParam());
  ASSERT_TRUE(l.io.metadata.contains("network"));
  EXPECT_EQ(models::detect_network(l.weights), l.io.metadata.at("network"));
  CpuBackend cpu = make_cpu();
  EXPECT_EQ(models::load_network(cpu, l.weights).name(), l.io.metadata.at("network"));
}

// Weights bound through one backend object serve another (a second lane) with the same result.
TEST_P(Golden, TwoLanesShareOneNetwork) {
  const Loaded l = load(GetParam());
  CpuBackend lane1 = make_cpu(), lane2 = make_cpu();
  const auto net = models::load_network(l.network, lane1, l.weights);
  const auto copy = net;  // copies share the weights
  const auto& in = l.io.tensors.at("input");
  const auto a = sluice::test::run_host(net, lane1, in.data, sluice::test::shape4(in));
  const auto b = sluice::test::run_host(copy, lane2, in.data, sluice::test::shape4(in));
  EXPECT_EQ(a, b);
  EXPECT_EQ(lane2.memory().weight_bytes, 0u);  // the second lane holds no copy of the weights
}

// A sample's output must not depend on the rest of its batch (instance norm is per sample).
template <class B>
void expect_batch_invariant(B& backend, const Loaded& l) {
  const auto net = models::load_network(l.network, backend, l.weights);
  const auto& in = l.io.tensors.at("input");
  Shape one = sluice::test::shape4(in);
  const std::int64_t plane = one.c * one.h * one.w;
  one.n = 1;
  const std::vector<float> sample(in.data.begin(), in.data.begin() + plane);
  // Eight different samples; ours sits at index 5.
  std::vector<float> batch;
  for (int k = 0; k < 8; ++k)
    for (std::int64_t i = 0; i < plane; ++i) {
      const float v = sample[static_cast<std::size_t>(i)];
      batch.push_back(k == 5 ? v : v * (0.5f + 0.2f * static_cast<float>(k)) + 0.01f * static_cast<float>((i * 7 + k) % 13));
    }
  const auto alone = sluice::test::run_host(net, backend, sample, one);
  const auto together = sluice::test::run_host(net, backend, batch, Shape{8, one.c, one.h, one.w});
  const std::size_t out_plane = alone.size();
  ASSERT_EQ(together.size(), 8 * out_plane);
  double max_diff = 0, max_abs = 0;
  for (std::size_t i = 0; i < out_plane; ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(alone[i]) - together[5 * out_plane + i]));
    max_abs = std::max(max_abs, std::abs(static_cast<double>(alone[i])));
  }
  EXPECT_LE(max_diff, 1e-6 * std::max(1.0, max_abs)) << "largest |output| " << max_abs;
}

TEST_P(Golden, SampleAloneEqualsSampleInABatchOfEight) {
  const Loaded l = load(GetParam());
  CpuBackend cpu = make_cpu();
  expect_batch_invariant(cpu, l);
}

// The same on the naive backend, whose every operation is per sample by construction: this one
// isolates the network code (no op of it may mix samples).
TEST_P(Golden, SampleAloneEqualsSampleInABatchOfEightOnTheMinimalBackend) {
  const Loaded l = load(GetParam());
  MinimalBackend naive;
  expect_batch_invariant(naive, l);
}

// run_forward on a CPU backend of 2 threads, batch split always, runs a batch of 5 as five
// single-threaded forward passes (map_samples); every kernel being batch- and thread-invariant, the
// values must equal those of the whole batch split op by op, bit for bit.
// The same in bf16 (where the CPU has AVX512_BF16).
TEST_P(Golden, ABatchSplitIntoSamplesEqualsTheWholeBatchBitForBit) {
  for (const auto precision : {sluice::cpu::Precision::fp32, sluice::cpu::Precision::bf16}) {
    SCOPED_TRACE(sluice::cpu::to_string(precision));
    const Loaded l = load(GetParam());
    CpuBackend cpu({.threads = 2, .batch_split = sluice::cpu::BatchSplit::always, .precision = precision});
    if (cpu.precision() != precision) continue;
    const auto net = models::load_network(l.network, cpu, l.weights);
    const auto& in = l.io.tensors.at("input");
    Shape shape = sluice::test::shape4(in);
    const std::size_t plane = static_cast<std::size_t>(shape.c * shape.h * shape.w);
    std::vector<float> batch;
    for (int k = 0; k < 5; ++k)
      for (std::size_t i = 0; i < plane; ++i) batch.push_back(in.data[i] * (0.6f + 0.2f * static_cast<float>(k)));
    shape.n = 5;
    const auto x = cpu.upload(batch, shape);
    const auto split = cpu.to_vector(models::run_forward(net, cpu, x));
    const auto whole = cpu.to_vector(net.forward(cpu, x));
    ASSERT_EQ(split.size(), whole.size());
    EXPECT_EQ(split, whole);
  }
}

// One error, invalid_argument, naming the missing, the unexpected and the misshapen tensor.
TEST_P(Golden, BadWeightsGiveOneErrorNamingEveryProblem) {
  const Loaded l = load(GetParam());
  weights::TensorDict bad = l.weights;
  // Pick a missing and a misshapen tensor that no width detection reads: the final norm's gamma
  // and beta exist in every network under a name ending in ".1.weight" / ".1.bias".
  std::string missing, misshapen;
  for (const auto& [name, t] : bad) {
    if (name.rfind("last_layer.1.", 0) == 0 || name.rfind("final_conv.1.", 0) == 0) {
      if (name.ends_with(".weight")) missing = name;
      if (name.ends_with(".bias")) misshapen = name;
    }
  }
  ASSERT_FALSE(missing.empty());
  ASSERT_FALSE(misshapen.empty());
  bad.erase(missing);
  bad[misshapen].shape.push_back(1);
  bad["decoder.extra.weight"] = weights::HostTensor{{2}, {1.0f, 2.0f}};
  CpuBackend cpu = make_cpu();
  try {
    (void)models::load_network(l.network, cpu, bad);
    FAIL() << "binding bad weights must throw";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
    const std::string what = e.what();
    EXPECT_NE(what.find(missing), std::string::npos) << what;
    EXPECT_NE(what.find(misshapen), std::string::npos) << what;
    EXPECT_NE(what.find("decoder.extra.weight"), std::string::npos) << what;
  }
}

TEST_P(Golden, RejectsAnInputWithTheWrongChannelCount) {
  const Loaded l = load(GetParam());
  CpuBackend cpu = make_cpu();
  const auto net = models::load_network(l.network, cpu, l.weights);
  const std::vector<float> data(2 * 32 * 32, 0.5f);
  try {
    (void)net.forward(cpu, cpu.upload(data, Shape{1, 2, 32, 32}));
    FAIL() << "a 2-channel input must be rejected";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
  }
}

std::string case_name(const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.stem; }

INSTANTIATE_TEST_SUITE_P(Networks, Golden, ::testing::ValuesIn(sluice::test::golden_cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Golden);

// Every network has at least one golden case (tools/reference writes them).
TEST(Goldens, EveryNetworkHasOne) {
  if (!std::filesystem::is_directory(sluice::test::golden_dir()))
    GTEST_SKIP() << sluice::test::golden_dir() << " does not exist yet (tools/reference writes it)";
  std::vector<std::string> found;
  for (const auto& c : sluice::test::golden_cases()) found.push_back(load(c).network);
  for (auto name : models::kNetworkNames)
    EXPECT_NE(std::find(found.begin(), found.end(), std::string(name)), found.end()) << name;
}

}  // namespace
