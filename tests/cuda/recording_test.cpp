// CUDA graphs (CudaBackend::run_recorded, what models::run_forward uses) and the per-operation
// profile: a recorded forward replays to exactly the eager result on new inputs and batch sizes,
// the tensor it returns belongs to the caller, a recording whose parameters are gone is made anew,
// graphs off record nothing, clear_recordings() gives the graphs up; the profile names each
// operation with its call count and traffic. Skips without a GPU.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "support/cpu_reference.hpp"
#include "support/cuda_test_support.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::NormEpilogue;
using sluice::Shape;
using sluice::cuda::CudaBackend;
using sluice::cuda::CudaConv;
using sluice::cuda::CudaNorm;
using sluice::cuda::CudaOptions;
using sluice::cuda::CudaTensor;
using sluice::cuda::Precision;
namespace ref = sluice::cpu::test;

// A forward with the kinds of buffers a network has: convolutions with and without an epilogue,
// a norm's scratch, a pooled and resized branch, a residual add.
struct SmallNet {
  CudaConv first, last;
  CudaNorm norm;

  CudaTensor forward(CudaBackend& b, const CudaTensor& x) const {
    const CudaTensor h = b.instance_norm(b.conv2d(x, first, Activation::none), norm, {nullptr, Activation::relu});
    const CudaTensor up = b.resize_bilinear(b.max_pool2x2(h), h.shape().h, h.shape().w, false);
    return b.conv2d(b.add(h, up), last, Activation::sigmoid);
  }
};

SmallNet make_net(CudaBackend& b, std::mt19937& rng) {
  const auto w1 = ref::random_host({16, 3, 3, 3}, rng, 0.5f);
  const auto gamma = ref::random_host({16}, rng, 1.5f);
  const auto beta = ref::random_host({16}, rng, 0.5f);
  const auto w2 = ref::random_host({1, 16, 3, 3}, rng, 0.3f);
  const auto b2 = ref::random_host({1}, rng, 0.5f);
  const sluice::WeightView b2v = b2;
  return {b.make_conv(w1, nullptr, ConvSpec::same(3)), b.make_conv(w2, &b2v, ConvSpec::same(3)),
          b.make_norm(gamma, beta)};
}

class CudaRecording : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override { SLUICE_SKIP_WITHOUT_GPU(); }

  CudaBackend lane(bool graphs = true) {
    CudaOptions options;
    options.precision = GetParam();
    options.graphs = graphs;
    return CudaBackend(options);
  }
  CudaTensor random_input(CudaBackend& b, const Shape& s) {
    return b.upload(ref::random_values(static_cast<std::size_t>(s.numel()), rng_), s);
  }
  static std::vector<float> host(CudaBackend& b, const CudaTensor& t) {
    std::vector<float> out(static_cast<std::size_t>(b.shape_of(t).numel()));
    b.download(t, out);
    return out;
  }
  static CudaTensor recorded(CudaBackend& b, const void* owner, const SmallNet& net, const CudaTensor& x) {
    return b.run_recorded(owner, x, [&net](CudaBackend& lane, const CudaTensor& in) { return net.forward(lane, in); });
  }

  std::mt19937 rng_{2024};
};

TEST_P(CudaRecording, ReplaysEqualTheEagerForwardExactly) {
  CudaBackend b = lane();
  const SmallNet net = make_net(b, rng_);
  for (const std::int64_t batch : {2, 3}) {
    for (int call = 0; call < 4; ++call) {  // eager, capture + replay, replay, replay
      SCOPED_TRACE("batch " + std::to_string(batch) + ", call " + std::to_string(call));
      const CudaTensor x = random_input(b, {batch, 3, 40, 36});
      const std::vector<float> eager = host(b, net.forward(b, x));
      EXPECT_EQ(host(b, recorded(b, &net, net, x)), eager);
    }
  }
  EXPECT_EQ(b.recording_count(), 2u);  // one graph per input shape
}

TEST_P(CudaRecording, TheReturnedTensorBelongsToTheCaller) {
  CudaBackend b = lane();
  const SmallNet net = make_net(b, rng_);
  const Shape s{2, 3, 32, 32};
  (void)recorded(b, &net, net, random_input(b, s));  // eager
  const CudaTensor x1 = random_input(b, s), x2 = random_input(b, s);
  const CudaTensor y1 = recorded(b, &net, net, x1);  // captured and replayed
  const CudaTensor y2 = recorded(b, &net, net, x2);  // replayed into the same graph buffers
  ASSERT_EQ(b.recording_count(), 1u);
  EXPECT_EQ(host(b, y1), host(b, net.forward(b, x1)));
  EXPECT_EQ(host(b, y2), host(b, net.forward(b, x2)));
}

TEST_P(CudaRecording, ARecordingWhoseNetworkIsGoneIsMadeAnew) {
  CudaBackend b = lane();
  const int owner = 0;  // the same owner key for two different networks, as a reused address would be
  const Shape s{1, 3, 24, 28};
  const CudaTensor x = random_input(b, s);
  {
    const SmallNet first = make_net(b, rng_);
    for (int call = 0; call < 3; ++call) (void)recorded(b, &owner, first, x);
    ASSERT_EQ(b.recording_count(), 1u);
  }
  const SmallNet second = make_net(b, rng_);
  const std::vector<float> want = host(b, second.forward(b, x));
  for (int call = 0; call < 3; ++call) {
    SCOPED_TRACE("call " + std::to_string(call));
    EXPECT_EQ(host(b, recorded(b, &owner, second, x)), want);
  }
  EXPECT_EQ(b.recording_count(), 1u);
}

TEST_P(CudaRecording, GraphsOffRecordNothingAndClearingGivesThemUp) {
  CudaBackend off = lane(/*graphs=*/false);
  const SmallNet net_off = make_net(off, rng_);
  const CudaTensor x_off = random_input(off, {2, 3, 20, 20});
  for (int call = 0; call < 3; ++call)
    EXPECT_EQ(host(off, recorded(off, &net_off, net_off, x_off)), host(off, net_off.forward(off, x_off)));
  EXPECT_EQ(off.recording_count(), 0u);

  CudaBackend on = lane();
  const SmallNet net = make_net(on, rng_);
  const CudaTensor x = random_input(on, {2, 3, 20, 20});
  for (int call = 0; call < 2; ++call) (void)recorded(on, &net, net, x);
  ASSERT_EQ(on.recording_count(), 1u);
  EXPECT_GT(on.memory().current_bytes, on.memory().weight_bytes);  // the graph's buffers are accounted
  on.clear_recordings();
  EXPECT_EQ(on.recording_count(), 0u);
  for (int call = 0; call < 3; ++call) EXPECT_EQ(host(on, recorded(on, &net, net, x)), host(on, net.forward(on, x)));
  EXPECT_EQ(on.recording_count(), 1u);
}

TEST_P(CudaRecording, TheOpProfileNamesEachOperationWithItsCalls) {
  CudaBackend b = lane();
  const SmallNet net = make_net(b, rng_);
  const CudaTensor x = random_input(b, {2, 3, 64, 48});
  EXPECT_TRUE(b.take_op_profile().empty()) << "nothing is recorded while profiling is off";
  b.set_op_profiling(true);
  for (int pass = 0; pass < 2; ++pass) (void)recorded(b, &net, net, x);  // eager while profiling
  const auto profile = b.take_op_profile();
  b.set_op_profiling(false);
  EXPECT_EQ(b.recording_count(), 0u);
  std::map<std::string, std::int64_t> calls;
  double total = 0;
  const double element = GetParam() == Precision::fp16 ? 2 : 4;
  for (const auto& t : profile) {
    calls[t.op] = t.calls;
    EXPECT_GE(t.ms, 0.0) << t.op;
    EXPECT_GT(t.bytes, 0.0) << t.op;
    total += t.ms;
    if (t.op == "add") {  // two passes of a + b -> y over 2 x 16 x 64 x 48
      EXPECT_EQ(t.bytes, 2 * 3 * (2.0 * 16 * 64 * 48) * element);
    }
  }
  EXPECT_GT(total, 0.0);
  const std::map<std::string, std::int64_t> want{{"conv2d", 4},      {"conv_epilogue", 2}, {"instance_norm", 2},
                                                 {"max_pool2x2", 2}, {"resize_bilinear", 2}, {"add", 2}};
  EXPECT_EQ(calls, want);
  EXPECT_TRUE(b.take_op_profile().empty()) << "a take empties the profile";
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaRecording, ::testing::Values(Precision::fp32, Precision::fp16),
                         [](const auto& info) { return std::string(sluice::cuda::to_string(info.param)); });

}  // namespace
