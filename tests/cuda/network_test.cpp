// The four networks on the CUDA backend against the PyTorch goldens of tests/data/goldens (written by
// tools/reference; shared with tests/models through tests/support/golden.hpp) and against the CPU
// backend, in every precision. The relative L2 bound of each comparison is twice the error PyTorch's
// own forward shows in that arithmetic against the float64 golden (tf32, fp16, bf16 rounding
// emulated on the CPU by make_goldens.py; golden_tolerance), at least 1e-4. Fixed bounds (tf32
// 3e-3, fp16 / bf16 1e-2) cannot hold: these networks amplify rounding, and on an
// H200 PyTorch's own autocast fp16 and TF32 forwards miss them by the same factor as sluice.
// Skips without a GPU, and when the goldens are not there.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/golden.hpp"
#include "support/cuda_test_support.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/weights/safetensors.hpp"
#include "sluice/models/registry.hpp"

namespace {

using sluice::Shape;
using sluice::cuda::CudaBackend;
using sluice::cuda::Precision;
namespace weights = sluice::weights;
namespace models = sluice::models;

double bound(const weights::SafetensorsData& golden, const std::string& output, Precision p) {
  return sluice::test::golden_tolerance(golden, output, std::string(sluice::cuda::to_string(p)));
}

struct Loaded {
  weights::TensorDict weights;
  weights::SafetensorsData io;
  std::string network;
};

Loaded load(const sluice::test::GoldenCase& c) {
  Loaded l{weights::load_checkpoint(c.weights), weights::read_safetensors(c.io), {}};
  auto it = l.io.metadata.find("network");
  l.network = it != l.io.metadata.end() ? it->second : models::detect_network(l.weights);
  return l;
}

class CudaNetworks : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    SLUICE_SKIP_WITHOUT_GPU();
    cases_ = sluice::test::golden_cases();
    if (cases_.empty()) GTEST_SKIP() << "no goldens in " << sluice::test::golden_dir().string();
  }
  std::vector<sluice::test::GoldenCase> cases_;
};

TEST_P(CudaNetworks, MatchPyTorchAndTheCpuBackend) {
  CudaBackend gpu({.precision = GetParam()});
  sluice::cpu::CpuOptions cpu_options;
  cpu_options.threads = 2;
  sluice::cpu::CpuBackend cpu(cpu_options);
  for (const auto& c : cases_) {
    SCOPED_TRACE(c.stem);
    const Loaded l = load(c);
    const auto net = models::load_network(l.network, gpu, l.weights);
    const auto cpu_net = models::load_network(l.network, cpu, l.weights);
    for (const std::string suffix : {"", "_odd"}) {
      if (!l.io.tensors.contains("input" + suffix)) continue;
      SCOPED_TRACE("input" + suffix);
      const auto& in = l.io.tensors.at("input" + suffix);
      const auto& expected = l.io.tensors.at("output" + suffix);
      const Shape in_shape = sluice::test::shape4(in);
      Shape out_shape;
      const auto out = sluice::test::run_host(net, gpu, in.data, in_shape, &out_shape);
      ASSERT_EQ(out_shape, sluice::test::shape4(expected));
      const double tolerance = bound(l.io, "output" + suffix, GetParam());
      EXPECT_LT(sluice::test::relative_l2(out, expected.data), tolerance)
          << l.network << " vs PyTorch at " << in_shape.to_string();
      const auto on_cpu = sluice::test::run_host(cpu_net, cpu, in.data, in_shape);
      EXPECT_LT(sluice::test::relative_l2(out, on_cpu), tolerance)
          << l.network << " vs the CPU backend at " << in_shape.to_string();
    }
  }
}

TEST_P(CudaNetworks, PeakMemoryIsReportedAndReturnsToTheWeights) {
  CudaBackend gpu({.precision = GetParam()});
  const Loaded l = load(cases_.front());
  const auto net = models::load_network(l.network, gpu, l.weights);
  const auto& in = l.io.tensors.at("input");
  const auto weights = gpu.memory().current_bytes;
  gpu.reset_peak();
  (void)sluice::test::run_host(net, gpu, in.data, sluice::test::shape4(in));
  gpu.synchronize();
  EXPECT_EQ(gpu.memory().current_bytes, weights) << "every activation went back to the allocator";
  EXPECT_GT(gpu.memory().peak_bytes, weights);
}

// The Batcher's contract: a forward that does not fit is errc::out_of_memory, and the lane goes on.
TEST_P(CudaNetworks, AForwardPastTheMemoryLimitIsOutOfMemoryAndTheLaneRecovers) {
  CudaBackend loader({.precision = GetParam()});
  const Loaded l = load(cases_.front());
  const auto net = models::load_network(l.network, loader, l.weights);
  const auto& in = l.io.tensors.at("input");
  const Shape shape = sluice::test::shape4(in);
  const auto weights = loader.memory().current_bytes;
  loader.reset_peak();
  const auto expected = sluice::test::run_host(net, loader, in.data, shape);
  const auto activations = loader.memory().peak_bytes - weights;  // what one forward needs beyond the weights
  ASSERT_GE(shape.n, 2) << "the golden input is a batch";
  CudaBackend lane({.precision = GetParam(), .memory_limit_bytes = activations * 3 / 4});
  try {
    (void)sluice::test::run_host(net, lane, in.data, shape);
    FAIL() << "three quarters of the activation memory must not suffice";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory) << e.what();
  }
  EXPECT_EQ(lane.memory().current_bytes, 0u) << "everything the failed forward held went back";
  // The same lane still runs a forward that fits: one sample (about half the batch's memory).
  Shape one = shape;
  one.n = 1;
  const std::vector<float> sample(in.data.begin(), in.data.begin() + one.numel());
  const auto single = sluice::test::run_host(net, lane, sample, one);
  const std::vector<float> first(expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(single.size()));
  EXPECT_LT(sluice::test::relative_l2(single, first), bound(l.io, "output", GetParam()));
}

// A sample's output must not depend on the rest of its batch (instance norm is per sample).
TEST_P(CudaNetworks, SampleAloneEqualsSampleInABatch) {
  CudaBackend gpu({.precision = GetParam()});
  for (const auto& c : cases_) {
    SCOPED_TRACE(c.stem);
    const Loaded l = load(c);
    const auto net = models::load_network(l.network, gpu, l.weights);
    const auto& in = l.io.tensors.at("input");
    Shape one = sluice::test::shape4(in);
    const std::int64_t plane = one.c * one.h * one.w;
    one.n = 1;
    const std::vector<float> sample(in.data.begin(), in.data.begin() + plane);
    std::vector<float> batch;
    for (int k = 0; k < 3; ++k)
      for (std::int64_t i = 0; i < plane; ++i)
        batch.push_back(k == 1 ? sample[static_cast<std::size_t>(i)] : 0.3f * static_cast<float>(k + 1) - sample[static_cast<std::size_t>(i)]);
    const auto alone = sluice::test::run_host(net, gpu, sample, one);
    const auto together = sluice::test::run_host(net, gpu, batch, Shape{3, one.c, one.h, one.w});
    ASSERT_EQ(together.size(), 3 * alone.size());
    const std::vector<float> middle(together.begin() + static_cast<std::ptrdiff_t>(alone.size()),
                                    together.begin() + static_cast<std::ptrdiff_t>(2 * alone.size()));
    // cuDNN may pick another algorithm for another batch size: within the precision's bound
    EXPECT_LT(sluice::test::relative_l2(middle, alone), bound(l.io, "output", GetParam()));
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaNetworks,
                         ::testing::Values(Precision::fp32, Precision::tf32, Precision::fp16, Precision::bf16),
                         [](const auto& info) { return std::string(sluice::cuda::to_string(info.param)); });

}  // namespace
