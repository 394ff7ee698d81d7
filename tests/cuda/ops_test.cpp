// Every CUDA backend operation against the naive double-precision references that the CPU backend's
// tests use too (tests/support/cpu_reference.hpp), in each precision, on odd shapes: planes larger than one
// reduction chunk, key counts that end in a partial tile, channel counts that are not multiples of
// 32. Tolerances: tests/support/cuda_test_support.hpp. Skips without a GPU.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/cpu_reference.hpp"
#include "support/cuda_test_support.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::NormEpilogue;
using sluice::Shape;
using sluice::cuda::CudaBackend;
using sluice::cuda::CudaOptions;
using sluice::cuda::CudaTensor;
using sluice::cuda::Precision;
namespace ref = sluice::cpu::test;
namespace support = sluice::cuda::test;

class CudaOps : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    SLUICE_SKIP_WITHOUT_GPU();
    CudaOptions options;
    options.precision = GetParam();
    gpu_ = std::make_unique<CudaBackend>(options);
  }

  CudaBackend& gpu() { return *gpu_; }

  std::pair<CudaTensor, ref::Ref> input(const Shape& s, float lo = -1.0f, float hi = 1.0f) {
    auto v = ref::random_values(static_cast<std::size_t>(s.numel()), rng_, lo, hi);
    return {gpu().upload(v, s), ref::to_ref(v, s)};
  }

  std::vector<float> host(const CudaTensor& t) {
    std::vector<float> out(static_cast<std::size_t>(gpu().shape_of(t).numel()));
    gpu().download(t, out);
    return out;
  }

  void expect_close(const CudaTensor& got, const ref::Ref& want, bool convolution = false) {
    ASSERT_EQ(gpu().shape_of(got), want.s);
    const ref::Diff d = ref::diff(host(got), want);
    EXPECT_LE(d.max_abs, support::tolerance(GetParam(), convolution) * std::max(1.0, d.scale))
        << "precision " << sluice::cuda::to_string(GetParam()) << ", scale " << d.scale;
  }

  std::mt19937 rng_{4321};
  std::unique_ptr<CudaBackend> gpu_;
};

struct ConvCase {
  Shape x;
  std::int64_t out, kh, kw;
  ConvSpec spec;
  bool bias;
  Activation act;
};

TEST_P(CudaOps, Conv2dMatchesTheReference) {
  const Activation none = Activation::none, relu = Activation::relu, sig = Activation::sigmoid;
  const ConvCase cases[] = {
      {{2, 5, 13, 11}, 7, 3, 3, ConvSpec::same(3), true, none},
      {{2, 4, 17, 15}, 6, 3, 3, ConvSpec::same(3, 2), false, relu},
      {{3, 9, 7, 10}, 5, 1, 1, ConvSpec::same(1), true, relu},
      {{1, 3, 20, 19}, 8, 7, 7, ConvSpec::same(7), true, relu},      // a stem: 3 input channels
      {{2, 3, 21, 18}, 16, 3, 3, ConvSpec::same(3, 2), false, none},
      {{2, 2, 9, 1}, 1, 1, 7, {1, 1, 0, 3, 1, 1, 1}, false, sig},   // triplet a_ch: width 1
      {{2, 2, 1, 9}, 1, 7, 1, {1, 1, 3, 0, 1, 1, 1}, false, sig},   // triplet a_cw: height 1
      {{2, 2, 12, 13}, 1, 7, 7, ConvSpec::same(7), false, sig},     // spatial attention 2 -> 1
      {{2, 4, 15, 13}, 6, 3, 3, {1, 1, 2, 2, 2, 2, 1}, true, none},  // dilation 2
      {{2, 6, 10, 9}, 4, 3, 3, {1, 1, 1, 1, 1, 1, 2}, true, none},   // groups 2
      {{2, 8, 11, 12}, 8, 3, 3, {1, 1, 1, 1, 1, 1, 8}, false, none},  // depthwise
      {{1, 64, 24, 20}, 48, 3, 3, ConvSpec::same(3), true, relu},   // tensor-core friendly widths
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("x " + c.x.to_string() + " out " + std::to_string(c.out) + " k " + std::to_string(c.kh) + "x" +
                 std::to_string(c.kw) + " groups " + std::to_string(c.spec.groups));
    auto [x, rx] = input(c.x);
    const auto w = ref::random_host({c.out, c.x.c / c.spec.groups, c.kh, c.kw}, rng_, 0.5f);
    const auto b = ref::random_host({c.out}, rng_, 0.5f);
    const sluice::WeightView bv = b;
    const auto conv = gpu().make_conv(w, c.bias ? &bv : nullptr, c.spec);
    expect_close(gpu().conv2d(x, conv, c.act), ref::conv2d(rx, w, c.bias ? &bv : nullptr, c.spec, c.act), true);
  }
}

// The plain kernel that runs what cuDNN refuses: forced here on every case above.
TEST_P(CudaOps, DirectConvolutionFallbackMatchesTheReference) {
  CudaOptions options;
  options.precision = GetParam();
  options.direct_convolution = true;
  CudaBackend direct(options);
  const ConvCase cases[] = {
      {{2, 5, 13, 11}, 7, 3, 3, ConvSpec::same(3), true, Activation::none},
      {{2, 4, 17, 15}, 6, 3, 3, ConvSpec::same(3, 2), false, Activation::relu},
      {{2, 2, 9, 1}, 1, 1, 7, {1, 1, 0, 3, 1, 1, 1}, false, Activation::sigmoid},
      {{2, 4, 15, 13}, 6, 3, 3, {1, 1, 2, 2, 2, 2, 1}, true, Activation::none},
      {{2, 6, 10, 9}, 4, 3, 3, {1, 1, 1, 1, 1, 1, 2}, true, Activation::none},
      {{2, 8, 11, 12}, 8, 3, 3, {1, 1, 1, 1, 1, 1, 8}, false, Activation::none},
      {{1, 3, 16, 17}, 5, 3, 3, {2, 1, 1, 2, 1, 2, 1}, true, Activation::relu},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("x " + c.x.to_string() + " groups " + std::to_string(c.spec.groups));
    const auto v = ref::random_values(static_cast<std::size_t>(c.x.numel()), rng_);
    const auto w = ref::random_host({c.out, c.x.c / c.spec.groups, c.kh, c.kw}, rng_, 0.5f);
    const auto b = ref::random_host({c.out}, rng_, 0.5f);
    const sluice::WeightView bv = b;
    const auto y = direct.conv2d(direct.upload(v, c.x), direct.make_conv(w, c.bias ? &bv : nullptr, c.spec), c.act);
    std::vector<float> got(static_cast<std::size_t>(direct.shape_of(y).numel()));
    direct.download(y, got);
    const ref::Ref want = ref::conv2d(ref::to_ref(v, c.x), w, c.bias ? &bv : nullptr, c.spec, c.act);
    ASSERT_EQ(direct.shape_of(y), want.s);
    const ref::Diff d = ref::diff(got, want);
    EXPECT_LE(d.max_abs, support::tolerance(GetParam(), true) * std::max(1.0, d.scale));
  }
}

// Past cuDNN's 2^31 elements per tensor a convolution runs in sub-batches: the limit lowered to
// 2.5 samples' output here (so 2 samples per sub-batch, the last one alone), and to less than one
// sample, which must be a clear error.
TEST_P(CudaOps, ConvolutionsPastTheDescriptorLimitRunInSubBatches) {
  const Shape xs{5, 6, 9, 11};
  const std::int64_t out = 10;
  CudaOptions options;
  options.precision = GetParam();
  options.max_conv_tensor_elements = out * xs.h * xs.w * 5 / 2;
  CudaBackend split(options);
  const auto v = ref::random_values(static_cast<std::size_t>(xs.numel()), rng_);
  const auto w = ref::random_host({out, xs.c, 3, 3}, rng_, 0.5f);
  const auto b = ref::random_host({out}, rng_, 0.5f);
  const sluice::WeightView bv = b;
  const auto y = split.conv2d(split.upload(v, xs), split.make_conv(w, &bv, ConvSpec::same(3)), Activation::relu);
  std::vector<float> got(static_cast<std::size_t>(split.shape_of(y).numel()));
  split.download(y, got);
  const ref::Ref want = ref::conv2d(ref::to_ref(v, xs), w, &bv, ConvSpec::same(3), Activation::relu);
  ASSERT_EQ(split.shape_of(y), want.s);
  const ref::Diff d = ref::diff(got, want);
  EXPECT_LE(d.max_abs, support::tolerance(GetParam(), true) * std::max(1.0, d.scale));
  // the transposed convolution's 4 x out-channel taps go through the same path
  const auto wt = ref::random_host({xs.c, 3, 2, 2}, rng_, 0.5f);
  const auto bt = ref::random_host({3}, rng_, 0.5f);
  const sluice::WeightView btv = bt;
  const auto up = split.conv_transpose2x2(split.upload(v, xs), split.make_conv_transpose2x2(wt, &btv));
  std::vector<float> got_up(static_cast<std::size_t>(split.shape_of(up).numel()));
  split.download(up, got_up);
  const ref::Diff du = ref::diff(got_up, ref::conv_transpose2x2(ref::to_ref(v, xs), wt, &btv));
  EXPECT_LE(du.max_abs, support::tolerance(GetParam(), true) * std::max(1.0, du.scale));

  options.max_conv_tensor_elements = out * xs.h * xs.w - 1;
  CudaBackend too_small(options);
  try {
    (void)too_small.conv2d(too_small.upload(v, xs), too_small.make_conv(w, &bv, ConvSpec::same(3)), Activation::none);
    FAIL() << "one sample over the limit must be refused";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument) << e.what();
  }
}

TEST_P(CudaOps, ConvTranspose2x2MatchesTheReference) {
  for (const auto& [s, out, bias] : {std::tuple{Shape{2, 6, 5, 7}, std::int64_t{4}, true},
                                     std::tuple{Shape{1, 32, 8, 8}, std::int64_t{16}, false},
                                     std::tuple{Shape{3, 3, 1, 1}, std::int64_t{5}, true}}) {
    SCOPED_TRACE(s.to_string());
    auto [x, rx] = input(s);
    const auto w = ref::random_host({s.c, out, 2, 2}, rng_, 0.5f);
    const auto b = ref::random_host({out}, rng_, 0.5f);
    const sluice::WeightView bv = b;
    const auto up = gpu().make_conv_transpose2x2(w, bias ? &bv : nullptr);
    expect_close(gpu().conv_transpose2x2(x, up), ref::conv_transpose2x2(rx, w, bias ? &bv : nullptr), true);
  }
}

TEST_P(CudaOps, InstanceNormWithResidualAndActivation) {
  // 37 x 29 = 1073 pixels: several reduction chunks; 40 channels: two channel groups, one partial.
  const Shape s{2, 40, 37, 29};
  auto [x, rx] = input(s, -2.0f, 3.0f);
  auto [r, rr] = input(s);
  const auto gamma = ref::random_host({s.c}, rng_, 1.5f);
  const auto beta = ref::random_host({s.c}, rng_, 0.5f);
  const auto norm = gpu().make_norm(gamma, beta);
  expect_close(gpu().instance_norm(x, norm, {}), ref::instance_norm(rx, gamma, beta, nullptr, Activation::none));
  expect_close(gpu().instance_norm(x, norm, NormEpilogue{&r, Activation::relu}),
               ref::instance_norm(rx, gamma, beta, &rr, Activation::relu));
  expect_close(gpu().instance_norm(x, norm, NormEpilogue{nullptr, Activation::sigmoid}),
               ref::instance_norm(rx, gamma, beta, nullptr, Activation::sigmoid));
}

TEST_P(CudaOps, InstanceNormIsAccurateWhenTheMeanDwarfsTheSpread) {
  if (GetParam() == Precision::fp16 || GetParam() == Precision::bf16)
    GTEST_SKIP() << "16-bit storage cannot hold 100 + 0.01 x";
  const Shape s{1, 3, 64, 48};
  auto [x, rx] = input(s, 100.0f, 100.01f);
  const auto gamma = ref::random_host({s.c}, rng_, 1.0f);
  const auto beta = ref::random_host({s.c}, rng_, 1.0f);
  const auto norm = gpu().make_norm(gamma, beta);
  const ref::Ref want = ref::instance_norm(rx, gamma, beta, nullptr, Activation::none);
  const ref::Diff d = ref::diff(host(gpu().instance_norm(x, norm, {})), want);
  // x * (gamma / std) + shift would cancel ~35000 against ~35000 here (error ~4e-3); the kernels
  // subtract the mean first, so float accuracy holds.
  EXPECT_LE(d.max_abs, 1e-4 * std::max(1.0, d.scale));
  expect_close(gpu().simam(x, 1e-4f), ref::simam(rx, 1e-4));
}

TEST_P(CudaOps, ElementwiseActivationAndAdd) {
  const Shape s{2, 7, 5, 9};
  auto [a, ra] = input(s);
  auto [b, rb] = input(s);
  for (Activation act : {Activation::none, Activation::relu, Activation::sigmoid}) {
    ref::Ref want_act(s), want_add(s);
    for (std::size_t i = 0; i < ra.v.size(); ++i) {
      want_act.v[i] = ref::act(ra.v[i], act);
      want_add.v[i] = ref::act(ra.v[i] + rb.v[i], act);
    }
    expect_close(gpu().activation(a, act), want_act);
    expect_close(gpu().add(a, b, act), want_add);
  }
}

TEST_P(CudaOps, MulBroadcastsEveryAllowedShape) {
  const Shape s{2, 6, 5, 7};
  auto [x, rx] = input(s);
  for (const Shape gs : {Shape{2, 6, 1, 1}, Shape{2, 1, 5, 7}, Shape{2, 1, 5, 1}, Shape{2, 1, 1, 7}, s}) {
    SCOPED_TRACE(gs.to_string());
    auto [g, rg] = input(gs);
    expect_close(gpu().mul(x, g), ref::mul_broadcast(rx, rg));
  }
}

TEST_P(CudaOps, ConcatAlongChannels) {
  auto [a, ra] = input({2, 3, 4, 5});
  auto [b, rb] = input({2, 5, 4, 5});
  auto [c, rc] = input({2, 1, 4, 5});
  ref::Ref want({2, 9, 4, 5});
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t ch = 0; ch < 9; ++ch)
      for (std::int64_t h = 0; h < 4; ++h)
        for (std::int64_t w = 0; w < 5; ++w)
          want.at(n, ch, h, w) = ch < 3 ? ra.at(n, ch, h, w) : ch < 8 ? rb.at(n, ch - 3, h, w) : rc.at(n, 0, h, w);
  expect_close(gpu().concat({&a, &b, &c}), want);
}

TEST_P(CudaOps, MaxPoolFloorsOddSizes) {
  for (const Shape s : {Shape{2, 5, 8, 6}, Shape{1, 3, 9, 7}}) {
    auto [x, rx] = input(s);
    expect_close(gpu().max_pool2x2(x), ref::max_pool2x2(rx));
  }
}

TEST_P(CudaOps, ResizeBilinearBothModesUpAndDown) {
  auto [x, rx] = input({2, 3, 7, 9});
  for (bool ac : {true, false})
    for (const auto& [h, w] : {std::pair{14, 18}, std::pair{28, 36}, std::pair{4, 5}, std::pair{7, 9}, std::pair{1, 1},
                               std::pair{13, 3}}) {
      SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + (ac ? " align_corners" : ""));
      expect_close(gpu().resize_bilinear(x, h, w, ac), ref::resize_bilinear(rx, h, w, ac));
    }
}

TEST_P(CudaOps, PlaneAndChannelReductions) {
  const Shape s{2, 37, 23, 19};  // 437 pixels: two reduction chunks
  auto [x, rx] = input(s);
  expect_close(gpu().global_avg_pool(x), ref::reduce(rx, false, true, true, false));
  expect_close(gpu().global_max_pool(x), ref::reduce(rx, false, true, true, true));
  expect_close(gpu().mean_over_w(x), ref::reduce(rx, false, false, true, false));
  expect_close(gpu().mean_over_h(x), ref::reduce(rx, false, true, false, false));
  expect_close(gpu().channel_mean_max(x), ref::channel_mean_max(rx));
}

TEST_P(CudaOps, LinearWithAndWithoutBias) {
  auto [x, rx] = input({3, 70, 1, 1});
  const auto w = ref::random_host({9, 70}, rng_, 0.3f);
  const auto b = ref::random_host({9}, rng_, 0.3f);
  const sluice::WeightView bv = b;
  expect_close(gpu().linear(x, gpu().make_linear(w, &bv), Activation::relu), ref::linear(rx, w, &bv, Activation::relu));
  expect_close(gpu().linear(x, gpu().make_linear(w, nullptr), Activation::sigmoid),
               ref::linear(rx, w, nullptr, Activation::sigmoid));
}

TEST_P(CudaOps, SimAm) {
  auto [x, rx] = input({2, 5, 17, 19}, -2.0f, 2.0f);
  expect_close(gpu().simam(x, 1e-4f), ref::simam(rx, 1e-4));
}

TEST_P(CudaOps, SelfAttentionOnlineSoftmax) {
  // (channels, heads, h, w): a partial key tile, head dims below / above / equal to one warp. In 16
  // bits, head dims in 16s run on tensor cores (64-key tiles, 64 queries per block): 128 x 1 with
  // 40 tokens (one partial tile), 32 x 2 with 143 (three tiles, the last partial), 128 x 8 with 72.
  for (const auto& [c, heads, h, w] : {std::tuple{16, 2, 9, 7}, std::tuple{80, 2, 6, 6}, std::tuple{128, 1, 5, 8},
                                       std::tuple{64, 8, 11, 13}, std::tuple{64, 2, 11, 13},
                                       std::tuple{1024, 8, 9, 8}}) {
    const Shape s{2, 3 * c, h, w};
    SCOPED_TRACE(s.to_string() + " heads " + std::to_string(heads));
    auto [qkv, rq] = input(s, -1.5f, 1.5f);
    expect_close(gpu().self_attention(qkv, heads), ref::self_attention(rq, heads));
  }
}

// Channel counts that are multiples of 8 take the 16-byte (vectorised) kernels; the tests above use
// odd counts, which take the scalar ones. Same references, same tolerances. 48 channels over 37 x 29
// pixels: several reduction chunks and six channel packs in 16 bits; 384: 48 packs.
TEST_P(CudaOps, VectorisedKernelsMatchTheReference) {
  const Shape s{2, 48, 37, 29};
  auto [x, rx] = input(s, -2.0f, 3.0f);
  auto [r, rr] = input(s);
  {
    SCOPED_TRACE("conv2d bias + relu epilogue");
    const auto w = ref::random_host({48, 48, 3, 3}, rng_, 0.2f);
    const auto b = ref::random_host({48}, rng_, 0.5f);
    const sluice::WeightView bv = b;
    expect_close(gpu().conv2d(x, gpu().make_conv(w, &bv, ConvSpec::same(3)), Activation::relu),
                 ref::conv2d(rx, w, &bv, ConvSpec::same(3), Activation::relu), true);
  }
  {
    SCOPED_TRACE("conv_transpose2x2");
    const auto w = ref::random_host({48, 16, 2, 2}, rng_, 0.3f);
    const auto b = ref::random_host({16}, rng_, 0.5f);
    const sluice::WeightView bv = b;
    expect_close(gpu().conv_transpose2x2(x, gpu().make_conv_transpose2x2(w, &bv)), ref::conv_transpose2x2(rx, w, &bv),
                 true);
  }
  for (Activation act : {Activation::none, Activation::relu, Activation::sigmoid}) {
    SCOPED_TRACE("elementwise, activation " + std::to_string(static_cast<int>(act)));
    ref::Ref want_act(s), want_add(s);
    for (std::size_t i = 0; i < rx.v.size(); ++i) {
      want_act.v[i] = ref::act(rx.v[i], act);
      want_add.v[i] = ref::act(rx.v[i] + rr.v[i], act);
    }
    expect_close(gpu().activation(x, act), want_act);
    expect_close(gpu().add(x, r, act), want_add);
  }
  for (const Shape gs : {Shape{2, 48, 1, 1}, Shape{2, 1, 37, 29}, s}) {
    SCOPED_TRACE("mul by " + gs.to_string());
    auto [g, rg] = input(gs);
    expect_close(gpu().mul(x, g), ref::mul_broadcast(rx, rg));
  }
  {
    SCOPED_TRACE("concat 16 + 48 + 8 channels");
    auto [a, ra] = input({2, 16, 37, 29});
    auto [b, rb] = input({2, 8, 37, 29});
    expect_close(gpu().concat({&a, &x, &b}), ref::concat({&ra, &rx, &rb}));
  }
  expect_close(gpu().max_pool2x2(x), ref::max_pool2x2(rx));
  for (bool ac : {true, false})
    for (const auto& [h, w] : {std::pair{74, 58}, std::pair{18, 14}, std::pair{37, 29}}) {
      SCOPED_TRACE("resize to " + std::to_string(h) + "x" + std::to_string(w) + (ac ? " align_corners" : ""));
      expect_close(gpu().resize_bilinear(x, h, w, ac), ref::resize_bilinear(rx, h, w, ac));
    }
  const auto gamma = ref::random_host({s.c}, rng_, 1.5f);
  const auto beta = ref::random_host({s.c}, rng_, 0.5f);
  const auto norm = gpu().make_norm(gamma, beta);
  expect_close(gpu().instance_norm(x, norm, NormEpilogue{&r, Activation::relu}),
               ref::instance_norm(rx, gamma, beta, &rr, Activation::relu));
  expect_close(gpu().simam(x, 1e-4f), ref::simam(rx, 1e-4));
  expect_close(gpu().global_avg_pool(x), ref::reduce(rx, false, true, true, false));
  expect_close(gpu().global_max_pool(x), ref::reduce(rx, false, true, true, true));
  expect_close(gpu().channel_mean_max(x), ref::channel_mean_max(rx));
  {
    SCOPED_TRACE("384 channels, a batch of 5 (other chunking)");
    const Shape wide{5, 384, 23, 21};
    auto [y, ry] = input(wide, -1.0f, 2.0f);
    const auto g2 = ref::random_host({wide.c}, rng_, 1.5f);
    const auto b2 = ref::random_host({wide.c}, rng_, 0.5f);
    expect_close(gpu().instance_norm(y, gpu().make_norm(g2, b2), {}),
                 ref::instance_norm(ry, g2, b2, nullptr, Activation::none));
  }
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaOps,
                         ::testing::Values(Precision::fp32, Precision::tf32, Precision::fp16, Precision::bf16),
                         [](const auto& info) { return std::string(sluice::cuda::to_string(info.param)); });

}  // namespace
