// The CUDA backend as a whole: host<->device round trips, exact memory accounting, the memory
// limit as errc::out_of_memory, bad input as errc::invalid_argument, per-sample results that do not
// depend on the batch, lanes on several threads sharing weights, and the exhaustive algorithm
// search giving the heuristic's results. Skips without a GPU.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "support/cpu_reference.hpp"
#include "support/cuda_test_support.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::NormEpilogue;
using sluice::Shape;
using sluice::cuda::ConvAlgoSearch;
using sluice::cuda::CudaBackend;
using sluice::cuda::CudaOptions;
using sluice::cuda::CudaTensor;
using sluice::cuda::Precision;
namespace ref = sluice::cpu::test;

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { SLUICE_SKIP_WITHOUT_GPU(); }
  std::mt19937 rng_{99};

  std::vector<float> values(const Shape& s) {
    return ref::random_values(static_cast<std::size_t>(s.numel()), rng_);
  }
  static std::vector<float> host(CudaBackend& b, const CudaTensor& t) {
    std::vector<float> out(static_cast<std::size_t>(b.shape_of(t).numel()));
    b.download(t, out);
    return out;
  }
};

void expect_invalid(auto&& f) {
  try {
    f();
    ADD_FAILURE() << "expected sluice::Error(invalid_argument)";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::invalid_argument) << e.what();
  }
}

TEST_F(CudaBackendTest, UploadDownloadRoundTripsExactlyInFloatPrecisions) {
  for (Precision p : {Precision::fp32, Precision::tf32}) {
    CudaBackend gpu({.precision = p});
    const Shape s{3, 5, 7, 11};
    const auto v = values(s);
    const auto t = gpu.upload(v, s);
    EXPECT_EQ(gpu.shape_of(t), s);
    EXPECT_EQ(host(gpu, t), v);
  }
}

TEST_F(CudaBackendTest, SixteenBitStorageRoundsOnUpload) {
  for (Precision p : {Precision::fp16, Precision::bf16}) {
    CudaBackend gpu({.precision = p});
    const Shape s{1, 3, 4, 5};
    const auto v = values(s);
    const auto back = host(gpu, gpu.upload(v, s));
    double worst = 0;
    for (std::size_t i = 0; i < v.size(); ++i) worst = std::max(worst, std::abs(double(back[i]) - v[i]));
    EXPECT_GT(worst, 0.0) << "values in (-1, 1) are not all representable in 16 bits";
    EXPECT_LE(worst, p == Precision::fp16 ? 1e-3 : 8e-3);
  }
}

TEST_F(CudaBackendTest, MemoryAccountingIsExact) {
  CudaBackend gpu;
  const auto base = gpu.memory();
  EXPECT_EQ(base.current_bytes, 0u);
  const Shape s{2, 4, 8, 8};  // 512 floats
  {
    const auto t = gpu.upload(values(s), s);
    gpu.synchronize();
    EXPECT_EQ(gpu.memory().current_bytes, 512u * 4u);
    // the upload staged 2 KiB of raw NCHW floats beside the 2 KiB tensor
    EXPECT_EQ(gpu.memory().peak_bytes, 2u * 512u * 4u);
  }
  EXPECT_EQ(gpu.memory().current_bytes, 0u);
  gpu.reset_peak();
  EXPECT_EQ(gpu.memory().peak_bytes, 0u);

  const auto w = ref::random_host({8, 4, 3, 3}, rng_);
  const auto conv = gpu.make_conv(w, nullptr, ConvSpec::same(3));
  EXPECT_EQ(gpu.memory().weight_bytes, 8u * 4u * 9u * 4u);
  EXPECT_EQ(gpu.memory().current_bytes, gpu.memory().weight_bytes);
  EXPECT_GE(gpu.reserved_bytes(), gpu.memory().current_bytes);
}

TEST_F(CudaBackendTest, TheMemoryLimitReportsOutOfMemory) {
  CudaBackend gpu({.memory_limit_bytes = 64 * 1024});
  const Shape big{1, 16, 32, 64};  // 128 KiB
  try {
    (void)gpu.upload(values(big), big);
    FAIL() << "must not fit under 64 KiB";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::errc::out_of_memory) << e.what();
  }
  const Shape small{1, 1, 32, 64};  // 8 KiB: still fine after the failure
  EXPECT_EQ(host(gpu, gpu.upload(values(small), small)).size(), 2048u);
}

TEST_F(CudaBackendTest, BadInputIsRejectedAsInvalidArgument) {
  CudaBackend gpu;
  const Shape s{1, 4, 6, 6};
  const auto x = gpu.upload(values(s), s);
  const auto w = ref::random_host({8, 3, 3, 3}, rng_);
  const auto conv = gpu.make_conv(w, nullptr, ConvSpec::same(3));
  std::vector<float> wrong(10);
  expect_invalid([&] { (void)gpu.upload(wrong, s); });
  expect_invalid([&] { gpu.download(x, wrong); });
  expect_invalid([&] { (void)gpu.conv2d(x, conv, Activation::none); });  // 4 channels, weight wants 3
  expect_invalid([&] { (void)gpu.conv2d(CudaTensor{}, conv, Activation::none); });
  expect_invalid([&] { (void)gpu.add(x, gpu.upload(values({1, 4, 6, 5}), {1, 4, 6, 5}), Activation::none); });
  expect_invalid([&] { (void)gpu.mul(x, gpu.upload(values({1, 2, 6, 6}), {1, 2, 6, 6})); });
  expect_invalid([&] { (void)gpu.concat({&x, nullptr}); });
  expect_invalid([&] { (void)gpu.self_attention(x, 3); });
  expect_invalid([&] { (void)gpu.resize_bilinear(x, 0, 4, false); });
  expect_invalid([&] { (void)gpu.linear(x, gpu.make_linear(ref::random_host({2, 4}, rng_), nullptr), Activation::none); });
  const auto gamma = ref::random_host({4}, rng_);
  const auto norm = gpu.make_norm(gamma, gamma);
  const auto other = gpu.upload(values({1, 4, 6, 5}), {1, 4, 6, 5});
  expect_invalid([&] { (void)gpu.instance_norm(x, norm, NormEpilogue{&other, Activation::none}); });
  expect_invalid([&] { (void)gpu.make_conv(ref::random_host({8, 3, 3}, rng_), nullptr, ConvSpec::same(3)); });
  expect_invalid([&] { (void)gpu.make_conv_transpose2x2(ref::random_host({8, 3, 3, 3}, rng_), nullptr); });
  CudaBackend half({.precision = Precision::fp16});
  expect_invalid([&] { (void)half.conv2d(half.upload(values({1, 3, 6, 6}), {1, 3, 6, 6}), conv, Activation::none); });
}

// A sample's result must not depend on the other samples of its batch (instance norm is per sample).
TEST_F(CudaBackendTest, SampleResultsDoNotDependOnTheBatch) {
  CudaBackend gpu;
  const Shape one{1, 6, 19, 17}, batch{5, 6, 19, 17};
  const auto sample = values(one);
  auto all = values(batch);
  std::copy(sample.begin(), sample.end(), all.begin() + 3 * one.numel());
  const auto w = ref::random_host({6, 6, 3, 3}, rng_, 0.4f);
  const auto conv = gpu.make_conv(w, nullptr, ConvSpec::same(3));
  const auto gamma = ref::random_host({6}, rng_);
  const auto norm = gpu.make_norm(gamma, gamma);
  auto run = [&](const std::vector<float>& v, const Shape& s) {
    const auto x = gpu.upload(v, s);
    const auto y = gpu.instance_norm(gpu.conv2d(x, conv, Activation::none), norm, {&x, Activation::relu});
    return host(gpu, gpu.simam(y, 1e-4f));
  };
  const auto alone = run(sample, one);
  const auto together = run(all, batch);
  for (std::size_t i = 0; i < alone.size(); ++i)
    ASSERT_NEAR(alone[i], together[3 * alone.size() + i], 1e-5f * std::max(1.0f, std::abs(alone[i]))) << i;
}

TEST_F(CudaBackendTest, LanesOnSeveralThreadsShareWeightsAndAgree) {
  CudaBackend loader;
  const auto w = ref::random_host({16, 8, 3, 3}, rng_, 0.3f);
  const auto conv = loader.make_conv(w, nullptr, ConvSpec::same(3));
  const Shape s{2, 8, 33, 31};
  const auto input = values(s);
  std::vector<std::vector<float>> results(3);
  std::vector<std::thread> lanes;
  for (std::size_t k = 0; k < results.size(); ++k)
    lanes.emplace_back([&, k] {
      CudaBackend lane;
      for (int rep = 0; rep < 5; ++rep) results[k] = host(lane, lane.conv2d(lane.upload(input, s), conv, Activation::relu));
    });
  for (auto& t : lanes) t.join();
  const ref::Ref want = ref::conv2d(ref::to_ref(input, s), w, nullptr, ConvSpec::same(3), Activation::relu);
  for (const auto& r : results) {
    const ref::Diff d = ref::diff(r, want);
    EXPECT_LE(d.max_abs, 1e-4 * std::max(1.0, d.scale));
  }
}

TEST_F(CudaBackendTest, ExhaustiveAlgorithmSearchAgreesWithTheHeuristic) {
  CudaBackend heuristic, exhaustive({.algo_search = ConvAlgoSearch::exhaustive});
  const auto w = ref::random_host({32, 16, 3, 3}, rng_, 0.3f);
  const Shape s{2, 16, 40, 36};
  const auto v = values(s);
  const auto a = host(heuristic, heuristic.conv2d(heuristic.upload(v, s), heuristic.make_conv(w, nullptr, ConvSpec::same(3)),
                                                  Activation::none));
  const auto b = host(exhaustive, exhaustive.conv2d(exhaustive.upload(v, s),
                                                    exhaustive.make_conv(w, nullptr, ConvSpec::same(3)), Activation::none));
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(a[i])));
  }
  EXPECT_LE(worst, 1e-4 * std::max(1.0, scale));
}

TEST_F(CudaBackendTest, ReportsItsDeviceAndOptions) {
  CudaBackend gpu({.precision = Precision::tf32});
  EXPECT_FALSE(gpu.device_name().empty());
  EXPECT_EQ(gpu.options().precision, Precision::tf32);
  expect_invalid([] { CudaBackend bad({.device = 1000}); });
}

}  // namespace
