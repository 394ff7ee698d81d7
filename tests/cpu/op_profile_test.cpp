// The CPU backend's operation profile (op_profile.hpp): names, call counts, bytes and FLOPs of a
// small hand-built forward pass, take emptying it, nothing recorded while off, and the per-thread
// profiles of a split batch summed in.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "support/cpu_reference.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::cpu::CpuTensor;
using sluice::cpu::OpProfiling;
using sluice::cpu::OpTime;
namespace ref = sluice::cpu::test;

class OpProfile : public ::testing::Test {
 protected:
  std::mt19937 rng{7};
  sluice::weights::HostTensor w1 = ref::random_host({8, 4, 1, 1}, rng), b1 = ref::random_host({8}, rng);
  sluice::weights::HostTensor w3 = ref::random_host({8, 8, 3, 3}, rng, 0.2f);
  sluice::weights::HostTensor gamma = ref::random_host({8}, rng), beta = ref::random_host({8}, rng);

  struct Net {
    sluice::cpu::CpuConv pointwise, three;
    sluice::cpu::CpuNorm norm;
  };

  Net bind(CpuBackend& cpu) {
    const sluice::WeightView bias = b1;
    return {cpu.make_conv(w1, &bias, ConvSpec::same(1)), cpu.make_conv(w3, nullptr, ConvSpec::same(3)),
            cpu.make_norm(gamma, beta)};
  }

  // 1x1 conv (4 -> 8), instance norm, add, 3x3 conv, max pool, concat, 1x1 conv on the input again.
  static CpuTensor forward(CpuBackend& cpu, const Net& net, const CpuTensor& x) {
    const CpuTensor a = cpu.conv2d(x, net.pointwise, Activation::relu);
    const CpuTensor b = cpu.instance_norm(a, net.norm, {});
    const CpuTensor c = cpu.add(a, b, Activation::none);
    const CpuTensor d = cpu.conv2d(c, net.three, Activation::none);
    const CpuTensor e = cpu.conv2d(x, net.pointwise, Activation::none);
    const CpuTensor f = cpu.concat({&d, &e});
    return cpu.max_pool2x2(f);
  }

  CpuTensor input(CpuBackend& cpu, std::int64_t n) {
    return cpu.upload(ref::random_values(static_cast<std::size_t>(n * 4 * 8 * 8), rng), {n, 4, 8, 8});
  }

  static std::map<std::string, OpTime> by_op(const std::vector<OpTime>& profile) {
    std::map<std::string, OpTime> m;
    for (const OpTime& t : profile) m[t.op + (t.shape.empty() ? "" : " " + t.shape)] = t;
    return m;
  }
};

TEST_F(OpProfile, CountsEachOperationKindWithItsBytesAndFlops) {
  CpuBackend cpu({.threads = 2});
  const Net net = bind(cpu);
  const CpuTensor x = input(cpu, 1);
  cpu.set_op_profiling(true);
  (void)forward(cpu, net, x);
  const std::vector<OpTime> profile = cpu.take_op_profile();
  const auto m = by_op(profile);

  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m.at("conv2d/1x1").calls, 2);
  EXPECT_EQ(m.at("conv2d/padded").calls, 1);
  for (const char* op : {"instance_norm", "add", "concat", "max_pool2x2"}) EXPECT_EQ(m.at(op).calls, 1) << op;
  // add reads two 1 x 8 x 8 x 8 tensors and writes a third.
  EXPECT_EQ(m.at("add").bytes, 3.0 * 512 * sizeof(float));
  // Two 1x1 convs: each reads 4 x 64, writes 8 x 64 floats and does 8 x 4 multiply-adds per pixel.
  EXPECT_EQ(m.at("conv2d/1x1").bytes, 2.0 * (256 + 512) * sizeof(float));
  EXPECT_EQ(m.at("conv2d/1x1").flops, 2.0 * 2 * 8 * 4 * 64);
  EXPECT_EQ(m.at("conv2d/padded").flops, 2.0 * 8 * 8 * 9 * 64);
  EXPECT_EQ(m.at("instance_norm").flops, 0.0);
  // concat reads its 16 x 64 floats once and writes them once; max pool reads them and writes a quarter.
  EXPECT_EQ(m.at("concat").bytes, 2.0 * 1024 * sizeof(float));
  EXPECT_EQ(m.at("max_pool2x2").bytes, 1.25 * 1024 * sizeof(float));
  for (const OpTime& t : profile) {
    EXPECT_GE(t.ms, 0.0) << t.op;
    EXPECT_TRUE(t.shape.empty()) << t.op;
  }
  EXPECT_TRUE(std::ranges::is_sorted(profile, std::ranges::greater{}, &OpTime::ms));

  EXPECT_TRUE(cpu.take_op_profile().empty()) << "take empties the profile";
  (void)forward(cpu, net, x);
  EXPECT_EQ(by_op(cpu.take_op_profile()).at("conv2d/1x1").calls, 2) << "still on after a take";
}

// Each conv's time is split between its kernel's phases; the parts add up to the conv's time.
TEST_F(OpProfile, SplitsEachConvIntoItsPhases) {
  CpuBackend cpu({.threads = 2});
  const Net net = bind(cpu);
  const sluice::weights::HostTensor w16 = ref::random_host({16, 16, 3, 3}, rng, 0.1f);
  const auto winograd = cpu.make_conv(w16, nullptr, ConvSpec::same(3));
  const CpuTensor x = input(cpu, 2);
  const CpuTensor x16 = cpu.upload(ref::random_values(2 * 16 * 12 * 12, rng), {2, 16, 12, 12});
  cpu.set_op_profiling(true);
  for (int i = 0; i < 2; ++i) {
    (void)forward(cpu, net, x);
    (void)cpu.conv2d(x16, winograd, Activation::relu);
  }
  const auto m = by_op(cpu.take_op_profile());
  const std::map<std::string, std::vector<std::string>> phases{
      {"conv2d/winograd", {"input transform", "GEMMs", "output transform"}},
      {"conv2d/padded", {"pad", "GEMM + bias"}},
      {"conv2d/1x1", {"pack", "GEMM + bias"}}};
  for (const auto& [op, names] : phases) {
    SCOPED_TRACE(op);
    const OpTime& t = m.at(op);
    std::vector<std::string> got;
    double sum = 0;
    for (const auto& part : t.parts) {
      got.push_back(part.name);
      EXPECT_GE(part.ms, 0.0);
      sum += part.ms;
    }
    EXPECT_EQ(got, names);
    EXPECT_NEAR(sum, t.ms, 1e-9 * t.ms + 1e-12);
  }
  EXPECT_EQ(m.at("conv2d/winograd").calls, 2);
  EXPECT_EQ(m.at("conv2d/winograd").flops, 2.0 * 2 * 2 * 16 * 16 * 9 * 144);
  EXPECT_TRUE(m.at("add").parts.empty());
}

TEST_F(OpProfile, RecordsNothingWhileOff) {
  CpuBackend cpu({.threads = 2});
  const Net net = bind(cpu);
  const CpuTensor x = input(cpu, 1);
  (void)forward(cpu, net, x);
  EXPECT_TRUE(cpu.take_op_profile().empty()) << "never turned on";
  cpu.set_op_profiling(true);
  cpu.set_op_profiling(false);
  (void)forward(cpu, net, x);
  EXPECT_TRUE(cpu.take_op_profile().empty()) << "turned off again";
}

TEST_F(OpProfile, ByShapeSplitsAKindByItsInputAndOutputShapes) {
  CpuBackend cpu({.threads = 1});
  const Net net = bind(cpu);
  cpu.set_op_profiling(OpProfiling::by_shape);
  (void)forward(cpu, net, input(cpu, 1));
  const auto m = by_op(cpu.take_op_profile());
  ASSERT_EQ(m.size(), 6u);  // the two 1x1 convs have the same shapes
  const OpTime& pointwise = m.at("conv2d/1x1 " + Shape{1, 4, 8, 8}.to_string() + " -> " + Shape{1, 8, 8, 8}.to_string());
  EXPECT_EQ(pointwise.calls, 2);
  EXPECT_EQ(m.at("max_pool2x2 " + Shape{1, 16, 8, 8}.to_string() + " -> " + Shape{1, 16, 4, 4}.to_string()).calls, 1);
}

TEST_F(OpProfile, ASplitBatchSumsThePerSampleProfilesOfEveryThread) {
  CpuBackend cpu({.threads = 2, .batch_split = sluice::cpu::BatchSplit::always});
  const Net net = bind(cpu);
  const CpuTensor x = input(cpu, 4);
  cpu.set_op_profiling(true);
  const CpuTensor y = cpu.run_batch(x, [&](CpuBackend& b, const CpuTensor& in) { return forward(b, net, in); });
  EXPECT_EQ(y.shape(), (Shape{4, 16, 4, 4}));
  const auto m = by_op(cpu.take_op_profile());
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m.at("conv2d/1x1").calls, 8);  // 2 per sample
  EXPECT_EQ(m.at("add").calls, 4);
  EXPECT_EQ(m.at("add").bytes, 4 * 3.0 * 512 * sizeof(float));
  EXPECT_TRUE(cpu.take_op_profile().empty()) << "the threads' profiles were emptied too";
}

}  // namespace
