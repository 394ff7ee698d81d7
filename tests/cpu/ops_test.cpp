// Every CPU backend operation against a naive double-precision loop (tests/support/cpu_reference.hpp) on
// random shapes, odd sizes included. Tolerance: max |got - want| <= 1e-5 * max(1, max |want|), 4x that for
// Winograd F(4x4, 3x3) (float accumulation over at most a few thousand terms stays far below it).
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "support/cpu_reference.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::cpu::CpuTensor;
namespace ref = sluice::cpu::test;

constexpr double tolerance = 1e-5;

#define SLUICE_EXPECT_CLOSE_WITHIN(got, want, tol)                                    \
  do {                                                                               \
    const ref::Diff d_ = ref::diff((got), (want));                                   \
    EXPECT_LE(d_.max_abs, (tol) * std::max(1.0, d_.scale)) << "scale " << d_.scale; \
  } while (0)
#define SLUICE_EXPECT_CLOSE(got, want) SLUICE_EXPECT_CLOSE_WITHIN(got, want, tolerance)

struct Fixture : ::testing::Test {
  CpuBackend cpu{{.threads = 2}};
  std::mt19937 rng{1234};

  // A random input both as a backend tensor and as the reference's double copy.
  std::pair<CpuTensor, ref::Ref> input(const Shape& s, float lo = -1.0f, float hi = 1.0f) {
    auto v = ref::random_values(static_cast<std::size_t>(s.numel()), rng, lo, hi);
    return {cpu.upload(v, s), ref::to_ref(v, s)};
  }
};

struct ConvCase {
  Shape x;
  std::int64_t out, kh, kw;
  ConvSpec spec;
  bool bias;
  Activation act;
};

std::string describe(const ConvCase& c) {
  return "x " + c.x.to_string() + " out " + std::to_string(c.out) + " k " + std::to_string(c.kh) + "x" +
         std::to_string(c.kw) + " stride " + std::to_string(c.spec.stride_h) + "," + std::to_string(c.spec.stride_w) +
         " pad " + std::to_string(c.spec.pad_h) + "," + std::to_string(c.spec.pad_w) + " dil " +
         std::to_string(c.spec.dilation_h) + "," + std::to_string(c.spec.dilation_w) + " groups " +
         std::to_string(c.spec.groups);
}

struct ConvTest : Fixture {
  // Random weights (variance 1/k), bias and input for case c; the backend's conv against the naive
  // double loop.
  void expect_matches_reference(const ConvCase& c, double tol = tolerance) {
    const std::int64_t k = c.x.c / c.spec.groups * c.kh * c.kw;
    auto w = ref::random_host({c.out, c.x.c / c.spec.groups, c.kh, c.kw}, rng, 1.0f / std::sqrt(float(k)));
    auto b = ref::random_host({c.out}, rng);
    const sluice::WeightView bv = b;
    auto conv = cpu.make_conv(w, c.bias ? &bv : nullptr, c.spec);
    auto [x, xr] = input(c.x);
    CpuTensor y = cpu.conv2d(x, conv, c.act);
    ref::Ref want = ref::conv2d(xr, w, c.bias ? &bv : nullptr, c.spec, c.act);
    ASSERT_EQ(y.shape(), want.s);
    SLUICE_EXPECT_CLOSE_WITHIN(cpu.to_vector(y), want, tol);
  }
};

TEST_F(ConvTest, MatchesNaiveReferenceOverKernelsStridesDilationsAndGroups) {
  const Activation none = Activation::none, relu = Activation::relu, sig = Activation::sigmoid;
  const ConvCase cases[] = {
      {{2, 5, 13, 11}, 7, 3, 3, ConvSpec::same(3), true, none},
      {{2, 4, 17, 15}, 6, 3, 3, ConvSpec::same(3, 2), false, relu},
      {{3, 9, 7, 10}, 5, 1, 1, ConvSpec::same(1), true, relu},    // 1x1: GEMM on the plane
      {{2, 6, 9, 9}, 4, 1, 1, ConvSpec::same(1, 2), false, none},  // 1x1 stride 2: im2col
      {{1, 3, 20, 19}, 8, 7, 7, ConvSpec::same(7), true, relu},
      {{2, 3, 21, 18}, 8, 7, 7, ConvSpec::same(7, 2), false, none},
      {{2, 2, 9, 1}, 1, 1, 7, {1, 1, 0, 3, 1, 1, 1}, false, sig},  // triplet a_ch: width 1
      {{2, 2, 5, 11}, 1, 1, 7, {1, 1, 0, 3, 1, 1, 1}, false, sig},
      {{2, 2, 1, 9}, 1, 7, 1, {1, 1, 3, 0, 1, 1, 1}, false, sig},  // triplet a_cw: height 1
      {{2, 2, 10, 6}, 1, 7, 1, {1, 1, 3, 0, 1, 1, 1}, false, none},
      {{2, 2, 12, 13}, 1, 7, 7, ConvSpec::same(7), false, sig},   // spatial attention 2 -> 1
      {{2, 4, 15, 13}, 6, 3, 3, {1, 1, 2, 2, 2, 2, 1}, true, none},  // dilation 2
      {{1, 3, 16, 17}, 5, 3, 3, {2, 1, 1, 2, 1, 2, 1}, true, relu},  // mixed stride, pad, dilation
      {{2, 6, 10, 9}, 4, 3, 3, {1, 1, 1, 1, 1, 1, 2}, true, none},  // groups 2
      {{2, 4, 8, 7}, 8, 3, 3, {1, 1, 1, 1, 1, 1, 4}, false, relu},  // groups 4, channel multiplier 2
      {{2, 8, 11, 12}, 8, 3, 3, {1, 1, 1, 1, 1, 1, 8}, false, none},  // depthwise
      {{2, 6, 13, 9}, 6, 3, 3, {2, 2, 1, 1, 1, 1, 6}, true, relu},   // depthwise stride 2
      {{1, 5, 12, 12}, 5, 5, 5, {1, 1, 4, 4, 2, 2, 5}, true, none},  // depthwise 5x5 dilation 2
      {{1, 16, 70, 45}, 12, 3, 3, ConvSpec::same(3), true, relu},    // several row tiles
      {{2, 8, 50, 50}, 8, 1, 1, ConvSpec::same(1), false, none},     // several 1x1 tiles
      {{1, 12, 6, 7}, 64, 3, 3, ConvSpec::same(3), true, relu},      // small plane: channel blocks
      {{2, 8, 5, 5}, 128, 3, 3, {1, 1, 1, 1, 1, 1, 2}, false, none},  // channel blocks per group
      {{2, 20, 9, 9}, 100, 1, 1, ConvSpec::same(1), true, sig},   // 1x1 channel blocks 40, 40, 20
      {{1, 3, 5, 5}, 4, 5, 5, {1, 1, 0, 0, 1, 1, 1}, true, none},    // kernel as large as the input
      {{1, 3, 4, 6}, 2, 3, 3, {3, 3, 2, 2, 1, 1, 1}, false, none},   // padding larger than stride
      {{1, 40, 9, 11}, 10, 3, 3, ConvSpec::same(3), true, relu},    // k = 360: two GEMM depth blocks
      {{2, 300, 5, 7}, 6, 1, 1, ConvSpec::same(1), false, none},     // 1x1, k = 300
      {{1, 64, 6, 6}, 8, 3, 3, {1, 1, 1, 1, 1, 1, 2}, true, none},   // groups 2, k = 288 per group
      {{1, 12, 8, 9}, 64, 3, 3, ConvSpec::same(3), true, relu},     // padded planes, shared channel blocks
      {{3, 12, 8, 9}, 64, 3, 3, ConvSpec::same(3), false, none},     // padded planes, a task per tile
      {{2, 6, 9, 30}, 4, 5, 3, {1, 1, 2, 1, 1, 2, 1}, true, none},   // padded planes, 5x3, dilation 2
      {{2, 8, 12, 10}, 72, 3, 3, ConvSpec::same(3), true, relu},    // > 64 outputs: packed im2col
      {{1, 3, 9, 75}, 8, 3, 3, ConvSpec::same(3, 2), true, relu},   // stride 2, wide rows: 8-wide gathers + tails
  };
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(describe(c));
    expect_matches_reference(c);
  }
}

// 3x3 stride-1 convs with >= 16 channels both ways run as Winograd (winograd.hpp): F(4x4, 3x3) on
// planes of >= 16 tiles of 4 x 4, F(2x2, 3x3) on smaller ones. F(4x4)'s transforms (coefficients up
// to 8 in A, 5 in B) amplify the float rounding of the channel sums: its bound is 4x the direct
// kernels' (measured: 1.1e-5 at k = 300).
TEST_F(ConvTest, WinogradMatchesNaiveReference) {
  const Activation none = Activation::none, relu = Activation::relu, sig = Activation::sigmoid;
  const ConvCase cases[] = {
      {{2, 16, 13, 11}, 16, 3, 3, ConvSpec::same(3), true, relu},   // odd sizes: partial tiles
      {{1, 24, 1, 1}, 16, 3, 3, ConvSpec::same(3), true, none},     // a 1x1 plane: one tile, mostly padding
      {{1, 16, 2, 3}, 20, 3, 3, ConvSpec::same(3), false, none},
      {{3, 32, 8, 8}, 48, 3, 3, ConvSpec::same(3), true, relu},     // one block across three samples
      {{2, 300, 5, 7}, 16, 3, 3, ConvSpec::same(3), false, none},   // k = 300: two GEMM depth blocks
      {{1, 16, 9, 9}, 17, 3, 3, ConvSpec::same(3), true, sig},      // sigmoid; outputs not a panel multiple
      {{1, 288, 13, 11}, 272, 3, 3, ConvSpec::same(3), false, sig}, // wide, odd sizes, partial tiles
      {{2, 40, 12, 12}, 200, 3, 3, ConvSpec::same(3), true, relu},  // 3 blocks shared by the workers
      {{1, 16, 70, 45}, 16, 3, 3, ConvSpec::same(3), true, relu},   // F(4x4): many blocks, a block per task
      {{2, 24, 17, 15}, 20, 3, 3, ConvSpec::same(3), true, sig},    // F(4x4): odd sizes, partial tiles
      {{1, 300, 16, 18}, 16, 3, 3, ConvSpec::same(3), false, none}, // F(4x4): k = 300
      {{3, 32, 16, 16}, 48, 3, 3, ConvSpec::same(3), true, relu},   // F(4x4): blocks across samples
      {{1, 16, 5, 290}, 24, 3, 3, ConvSpec::same(3), true, none},   // F(4x4): 73 tiles a row, more than a transform chunk
  };
  std::set<std::int64_t> tiles;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(describe(c));
    ASSERT_TRUE(sluice::cpu::kernels::winograd_suits(c.out, c.x.c, c.kh, c.kw, c.spec));
    const std::int64_t tile = sluice::cpu::kernels::winograd_tile(
        c.x.h, c.x.w, sluice::cpu::kernels::winograd4_suits(c.out, c.x.c, sluice::cpu::Precision::fp32));
    tiles.insert(tile);
    expect_matches_reference(c, tile == 4 ? 4 * tolerance : tolerance);
  }
  EXPECT_EQ(tiles, (std::set<std::int64_t>{2, 4}));
}

// A sample's Winograd result is the same bits alone, in the middle of a batch (its tiles then share
// GEMM blocks with other samples' tiles, at other panel offsets) and on one thread, for both tiles.
TEST_F(ConvTest, WinogradIsBatchAndThreadInvariant) {
  CpuBackend single{{.threads = 1}};
  for (const Shape one : {Shape{1, 16, 5, 7}, Shape{1, 16, 17, 15}}) {
    SCOPED_TRACE(one.to_string());
    auto w = ref::random_host({24, 16, 3, 3}, rng, 0.1f);
    auto b = ref::random_host({24}, rng);
    const sluice::WeightView bv = b;
    const auto sample = ref::random_values(static_cast<std::size_t>(one.numel()), rng);
    std::vector<float> batch = ref::random_values(static_cast<std::size_t>(one.numel()), rng);
    batch.insert(batch.end(), sample.begin(), sample.end());
    const auto tail = ref::random_values(static_cast<std::size_t>(one.numel()), rng);
    batch.insert(batch.end(), tail.begin(), tail.end());
    const auto conv = cpu.make_conv(w, &bv, ConvSpec::same(3));
    const auto alone = cpu.to_vector(cpu.conv2d(cpu.upload(sample, one), conv, Activation::relu));
    const auto together =
        cpu.to_vector(cpu.conv2d(cpu.upload(batch, {3, one.c, one.h, one.w}), conv, Activation::relu));
    const auto serial = single.to_vector(
        single.conv2d(single.upload(sample, one), single.make_conv(w, &bv, ConvSpec::same(3)), Activation::relu));
    ASSERT_EQ(together.size(), 3 * alone.size());
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), together.begin() + static_cast<std::ptrdiff_t>(alone.size())));
    EXPECT_EQ(alone, serial);
  }
}

TEST_F(ConvTest, TransposedConv2x2Stride2MatchesReference) {
  for (Shape s : {Shape{2, 6, 5, 7}, Shape{1, 3, 1, 1}, Shape{3, 16, 40, 33}}) {
    SCOPED_TRACE(s.to_string());
    auto w = ref::random_host({s.c, 5, 2, 2}, rng, 0.5f);
    auto b = ref::random_host({5}, rng);
    const sluice::WeightView bv = b;
    for (bool with_bias : {true, false}) {
      auto up = cpu.make_conv_transpose2x2(w, with_bias ? &bv : nullptr);
      auto [x, xr] = input(s);
      CpuTensor y = cpu.conv_transpose2x2(x, up);
      ref::Ref want = ref::conv_transpose2x2(xr, w, with_bias ? &bv : nullptr);
      ASSERT_EQ(y.shape(), want.s);
      SLUICE_EXPECT_CLOSE(cpu.to_vector(y), want);
    }
  }
}

using OpsTest = Fixture;

TEST_F(OpsTest, InstanceNormWithResidualAndActivation) {
  for (Shape s : {Shape{2, 3, 7, 5}, Shape{1, 4, 1, 9}, Shape{3, 2, 33, 17}}) {
    SCOPED_TRACE(s.to_string());
    auto gamma = ref::random_host({s.c}, rng, 2.0f);
    auto beta = ref::random_host({s.c}, rng, 1.0f);
    auto norm = cpu.make_norm(gamma, beta);
    // A large offset checks that the statistics do not cancel catastrophically.
    auto [x, xr] = input(s, 90.0f, 110.0f);
    auto [r, rr] = input(s);
    for (Activation a : {Activation::none, Activation::relu, Activation::sigmoid}) {
      SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.instance_norm(x, norm, {nullptr, a})),
                          ref::instance_norm(xr, gamma, beta, nullptr, a));
      SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.instance_norm(x, norm, {&r, a})),
                          ref::instance_norm(xr, gamma, beta, &rr, a));
      // In place: a tensor handed over (a convolution's output) is normalised in its own buffer.
      CpuTensor own = cpu.upload(cpu.to_vector(x), s);
      const float* buffer = own.data();
      CpuTensor y = cpu.instance_norm(std::move(own), norm, {&r, a});
      EXPECT_EQ(y.data(), buffer);
      SLUICE_EXPECT_CLOSE(cpu.to_vector(y), ref::instance_norm(xr, gamma, beta, &rr, a));
    }
  }
}

TEST(PlaneStats, MatchDoublePrecisionAcrossBlocksAndLargeOffsets) {
  // Planes over several of the statistics' float blocks, with a ragged tail, whose mean is up to
  // 1e5 times their spread: a plain float sum of x^2 (or of x without the correction) would lose
  // the variance. Against sums of the same floats in double.
  std::mt19937 rng(99);
  for (const std::int64_t n : {std::int64_t{7}, std::int64_t{2048}, std::int64_t{5003}, std::int64_t{70001}}) {
    for (const double offset : {0.0, 100.0, 1e4}) {
      SCOPED_TRACE(std::to_string(n) + " values around " + std::to_string(offset));
      std::normal_distribution<double> spread(offset, 0.1);
      std::vector<float> x(static_cast<std::size_t>(n));
      for (float& v : x) v = static_cast<float>(spread(rng));
      double mean = 0.0, var = 0.0;
      for (float v : x) mean += v;
      mean /= static_cast<double>(n);
      for (float v : x) var += (v - mean) * (v - mean);
      var /= static_cast<double>(n);
      const auto got = sluice::cpu::kernels::plane_stats(x.data(), n);
      EXPECT_NEAR(got.mean, mean, 1e-6 * std::sqrt(var) + 1e-12);
      EXPECT_NEAR(got.var, var, 1e-5 * var + 1e-12);
    }
  }
}

TEST_F(OpsTest, ActivationsAddAndMul) {
  const Shape s{2, 3, 5, 7};
  auto [x, xr] = input(s, -6.0f, 6.0f);
  auto [z, zr] = input(s);
  for (Activation a : {Activation::none, Activation::relu, Activation::sigmoid}) {
    ref::Ref want(s), sum(s);
    for (std::size_t i = 0; i < want.v.size(); ++i) {
      want.v[i] = ref::act(xr.v[i], a);
      sum.v[i] = ref::act(xr.v[i] + zr.v[i], a);
    }
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.activation(x, a)), want);
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.add(x, z, a)), sum);
  }
  for (Shape gs : {s, Shape{2, 3, 1, 1}, Shape{2, 1, 5, 7}, Shape{2, 1, 5, 1}, Shape{2, 1, 1, 7}}) {
    SCOPED_TRACE(gs.to_string());
    auto [g, gr] = input(gs);
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.mul(x, g)), ref::mul_broadcast(xr, gr));
  }
}

TEST_F(OpsTest, ConcatAlongChannels) {
  auto [a, ar] = input({2, 3, 4, 5});
  auto [b, br] = input({2, 1, 4, 5});
  auto [c, cr] = input({2, 2, 4, 5});
  const ref::Ref want = ref::concat({&ar, &br, &cr});
  CpuTensor y = cpu.concat({&a, &b, &c});
  ASSERT_EQ(y.shape(), want.s);
  SLUICE_EXPECT_CLOSE(cpu.to_vector(y), want);
}

TEST_F(OpsTest, MaxPoolFloorsOddSizes) {
  for (Shape s : {Shape{2, 3, 8, 6}, Shape{1, 2, 7, 9}, Shape{1, 1, 2, 3}}) {
    SCOPED_TRACE(s.to_string());
    auto [x, xr] = input(s);
    CpuTensor y = cpu.max_pool2x2(x);
    ASSERT_EQ(y.shape(), (Shape{s.n, s.c, s.h / 2, s.w / 2}));
    SLUICE_EXPECT_CLOSE(cpu.to_vector(y), ref::max_pool2x2(xr));
  }
}

TEST_F(OpsTest, BilinearResizeMatchesPyTorchSampling) {
  struct Case {
    Shape x;
    std::int64_t h, w;
  };
  for (const Case& c : {Case{{2, 3, 5, 7}, 10, 14}, Case{{1, 2, 8, 8}, 32, 32}, Case{{1, 2, 62, 60}, 125, 121},
                        Case{{1, 2, 9, 11}, 4, 5}, Case{{1, 1, 1, 1}, 3, 4}, Case{{1, 1, 6, 5}, 1, 1},
                        Case{{1, 2, 7, 3}, 7, 3}}) {
    for (bool ac : {true, false}) {
      SCOPED_TRACE(c.x.to_string() + " -> " + std::to_string(c.h) + "x" + std::to_string(c.w) + " ac " +
                   std::to_string(ac));
      auto [x, xr] = input(c.x);
      CpuTensor y = cpu.resize_bilinear(x, c.h, c.w, ac);
      ASSERT_EQ(y.shape(), (Shape{c.x.n, c.x.c, c.h, c.w}));
      SLUICE_EXPECT_CLOSE(cpu.to_vector(y), ref::resize_bilinear(xr, c.h, c.w, ac));
    }
  }
}

// Large planes and scale factors near 1 (ResUNetSmall at 513x383 resizes 512x382 -> 513x383):
// there a source coordinate rounded to float moves lambda by up to ulp(512) = 6e-5, far more than
// the float arithmetic of the blend. Tolerance: max |got - want| <= 1e-6 * max(1, max |want|),
// a few float roundings of the weights and three multiply-adds.
TEST_F(OpsTest, BilinearResizeTapsAreExactOnLargePlanes) {
  constexpr double taps_tolerance = 1e-6;
  struct Case {
    Shape x;
    std::int64_t h, w;
    bool ac;
  };
  for (const Case& c : {Case{{1, 2, 512, 382}, 513, 383, false}, Case{{1, 1, 256, 191}, 257, 192, false},
                        Case{{1, 1, 16, 11}, 513, 383, false}, Case{{1, 1, 33, 47}, 513, 383, true},
                        Case{{1, 1, 383, 513}, 1000, 700, true}, Case{{1, 1, 700, 1000}, 383, 513, false}}) {
    SCOPED_TRACE(c.x.to_string() + " -> " + std::to_string(c.h) + "x" + std::to_string(c.w) + " ac " +
                 std::to_string(c.ac));
    auto [x, xr] = input(c.x);
    const ref::Diff d = ref::diff(cpu.to_vector(cpu.resize_bilinear(x, c.h, c.w, c.ac)),
                                  ref::resize_bilinear(xr, c.h, c.w, c.ac));
    EXPECT_LE(d.max_abs, taps_tolerance * std::max(1.0, d.scale)) << "scale " << d.scale;
  }
}

TEST_F(OpsTest, Reductions) {
  for (Shape s : {Shape{2, 5, 7, 9}, Shape{1, 3, 1, 6}, Shape{2, 70, 50, 45}}) {
    SCOPED_TRACE(s.to_string());
    auto [x, xr] = input(s);
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.global_avg_pool(x)), ref::reduce(xr, false, true, true, false));
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.global_max_pool(x)), ref::reduce(xr, false, true, true, true));
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.mean_over_w(x)), ref::reduce(xr, false, false, true, false));
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.mean_over_h(x)), ref::reduce(xr, false, true, false, false));
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.channel_mean_max(x)), ref::channel_mean_max(xr));
  }
}

TEST_F(OpsTest, LinearWithBiasAndActivation) {
  auto w = ref::random_host({9, 24}, rng, 0.3f);
  auto b = ref::random_host({9}, rng);
  const sluice::WeightView bv = b;
  auto [x, xr] = input({3, 24, 1, 1});
  for (bool with_bias : {true, false})
    for (Activation a : {Activation::none, Activation::relu, Activation::sigmoid}) {
      auto lin = cpu.make_linear(w, with_bias ? &bv : nullptr);
      SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.linear(x, lin, a)), ref::linear(xr, w, with_bias ? &bv : nullptr, a));
    }
}

TEST_F(OpsTest, SimAM) {
  for (Shape s : {Shape{2, 3, 9, 7}, Shape{1, 2, 1, 5}}) {
    auto [x, xr] = input(s, -3.0f, 5.0f);
    SLUICE_EXPECT_CLOSE(cpu.to_vector(cpu.simam(x, 1e-4f)), ref::simam(xr, 1e-4));
  }
}

TEST_F(OpsTest, SelfAttentionOverTokensAndHeads) {
  struct Case {
    Shape qkv;
    std::int64_t heads;
  };
  // 9 x 17 = 153 tokens: three query blocks, the last one partial.
  for (const Case& c : {Case{{2, 24, 9, 17}, 2}, Case{{1, 48, 4, 4}, 8}, Case{{1, 3, 1, 1}, 1}, Case{{2, 6, 5, 3}, 1}}) {
    SCOPED_TRACE(c.qkv.to_string());
    auto [x, xr] = input(c.qkv, -2.0f, 2.0f);
    CpuTensor y = cpu.self_attention(x, c.heads);
    ref::Ref want = ref::self_attention(xr, c.heads);
    ASSERT_EQ(y.shape(), want.s);
    SLUICE_EXPECT_CLOSE(cpu.to_vector(y), want);
  }
}

}  // namespace
