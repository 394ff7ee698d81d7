// The CPU backend beyond numerics: batch invariance of every operation, exact memory accounting
// (peaks, buffer reuse, weights, the limit), bad input, and the thread pool.
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/cpu_reference.hpp"
#include "sluice/backends/cpu/cpu_backend.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::errc;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::cpu::CpuTensor;
namespace ref = sluice::cpu::test;

// ---- batch invariance ----------------------------------------------------------------------------

// Runs `op` on a batch of 8 and on each sample alone; every sample must agree within 1e-6.
class Invariance : public ::testing::Test {
 protected:
  CpuBackend cpu{{.threads = 2}};
  std::mt19937 rng{99};

  using Op = std::function<CpuTensor(CpuBackend&, const std::vector<const CpuTensor*>&)>;

  void check(const std::vector<Shape>& per_sample, const Op& op, const char* name) {
    SCOPED_TRACE(name);
    constexpr std::int64_t batch = 8;
    std::vector<std::vector<float>> values;
    std::vector<CpuTensor> batched;
    for (Shape s : per_sample) {
      s.n = batch;
      values.push_back(ref::random_values(static_cast<std::size_t>(s.numel()), rng));
      batched.push_back(cpu.upload(values.back(), s));
    }
    std::vector<const CpuTensor*> args;
    for (auto& t : batched) args.push_back(&t);
    const std::vector<float> all = cpu.to_vector(op(cpu, args));
    const std::size_t per = all.size() / batch;
    for (std::int64_t i = 0; i < batch; ++i) {
      std::vector<CpuTensor> single;
      for (std::size_t k = 0; k < per_sample.size(); ++k) {
        const Shape s = per_sample[k];
        const auto count = static_cast<std::size_t>(s.numel());
        single.push_back(cpu.upload(std::span<const float>(values[k]).subspan(static_cast<std::size_t>(i) * count, count),
                                    {1, s.c, s.h, s.w}));
      }
      std::vector<const CpuTensor*> one;
      for (auto& t : single) one.push_back(&t);
      const std::vector<float> alone = cpu.to_vector(op(cpu, one));
      ASSERT_EQ(alone.size(), per);
      double worst = 0;
      for (std::size_t j = 0; j < per; ++j)
        worst = std::max(worst, std::abs(double(alone[j]) - double(all[static_cast<std::size_t>(i) * per + j])));
      EXPECT_LE(worst, 1e-6) << "sample " << i;
    }
  }
};

TEST_F(Invariance, EveryOperationGivesASampleTheSameResultAloneAsInABatchOfEight) {
  auto conv3 = cpu.make_conv(ref::random_host({16, 12, 3, 3}, rng, 0.2f), nullptr, ConvSpec::same(3));
  auto conv1 = cpu.make_conv(ref::random_host({8, 12, 1, 1}, rng, 0.2f), nullptr, ConvSpec::same(1));
  auto conv_blocks = cpu.make_conv(ref::random_host({64, 12, 3, 3}, rng, 0.2f), nullptr, ConvSpec::same(3));
  auto conv1_blocks = cpu.make_conv(ref::random_host({96, 12, 1, 1}, rng, 0.2f), nullptr, ConvSpec::same(1));
  auto conv_s2 = cpu.make_conv(ref::random_host({6, 12, 7, 7}, rng, 0.1f), nullptr, ConvSpec::same(7, 2));
  auto dw = cpu.make_conv(ref::random_host({12, 1, 3, 3}, rng, 0.3f), nullptr, {1, 1, 1, 1, 1, 1, 12});
  auto up = cpu.make_conv_transpose2x2(ref::random_host({12, 5, 2, 2}, rng, 0.3f), nullptr);
  auto norm = cpu.make_norm(ref::random_host({12}, rng), ref::random_host({12}, rng));
  auto lin = cpu.make_linear(ref::random_host({7, 12}, rng, 0.3f), nullptr);
  const Shape x{1, 12, 37, 29};
  using A = const std::vector<const CpuTensor*>&;
  check({x}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], conv3, Activation::relu); }, "conv 3x3");
  check({x}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], conv1, Activation::none); }, "conv 1x1");
  check({{1, 12, 9, 11}}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], conv_blocks, Activation::none); },
        "conv in channel blocks");  // alone: the workers share the tile; batched: one task per tile
  check({{1, 12, 9, 11}}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], conv1_blocks, Activation::relu); },
        "1x1 conv in channel blocks");
  check({x}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], conv_s2, Activation::sigmoid); }, "conv 7x7 s2");
  check({x}, [&](CpuBackend& b, A a) { return b.conv2d(*a[0], dw, Activation::none); }, "depthwise");
  check({x}, [&](CpuBackend& b, A a) { return b.conv_transpose2x2(*a[0], up); }, "conv transpose");
  check({x, x}, [&](CpuBackend& b, A a) { return b.instance_norm(*a[0], norm, {a[1], Activation::relu}); },
        "instance norm");
  check({x}, [&](CpuBackend& b, A a) { return b.activation(*a[0], Activation::sigmoid); }, "activation");
  check({x, x}, [&](CpuBackend& b, A a) { return b.add(*a[0], *a[1], Activation::relu); }, "add");
  for (Shape g : {x, Shape{1, 12, 1, 1}, Shape{1, 1, 37, 29}, Shape{1, 1, 37, 1}, Shape{1, 1, 1, 29}})
    check({x, g}, [&](CpuBackend& b, A a) { return b.mul(*a[0], *a[1]); }, "mul");
  check({x, {1, 3, 37, 29}}, [&](CpuBackend& b, A a) { return b.concat({a[0], a[1]}); }, "concat");
  check({x}, [&](CpuBackend& b, A a) { return b.max_pool2x2(*a[0]); }, "max pool");
  check({x}, [&](CpuBackend& b, A a) { return b.resize_bilinear(*a[0], 74, 50, true); }, "resize ac");
  check({x}, [&](CpuBackend& b, A a) { return b.resize_bilinear(*a[0], 20, 61, false); }, "resize");
  check({x}, [&](CpuBackend& b, A a) { return b.global_avg_pool(*a[0]); }, "global avg");
  check({x}, [&](CpuBackend& b, A a) { return b.global_max_pool(*a[0]); }, "global max");
  check({x}, [&](CpuBackend& b, A a) { return b.channel_mean_max(*a[0]); }, "channel mean max");
  check({x}, [&](CpuBackend& b, A a) { return b.mean_over_w(*a[0]); }, "mean over w");
  check({x}, [&](CpuBackend& b, A a) { return b.mean_over_h(*a[0]); }, "mean over h");
  check({{1, 12, 1, 1}}, [&](CpuBackend& b, A a) { return b.linear(*a[0], lin, Activation::relu); }, "linear");
  check({x}, [&](CpuBackend& b, A a) { return b.simam(*a[0], 1e-4f); }, "simam");
  check({x}, [&](CpuBackend& b, A a) { return b.self_attention(*a[0], 2); }, "self attention");
}

// ---- memory accounting -----------------------------------------------------------------------------

constexpr std::size_t f4 = sizeof(float);

TEST(CpuMemory, CurrentAndPeakFollowAKnownSequenceExactly) {
  CpuBackend cpu({.threads = 1});
  EXPECT_EQ(cpu.memory().current_bytes, 0u);
  std::vector<float> v(1000, 1.0f);
  {
    CpuTensor a = cpu.upload(std::span(v).first(100), {1, 1, 10, 10});
    CpuTensor b = cpu.upload(std::span(v).first(200), {2, 1, 10, 10});
    EXPECT_EQ(cpu.memory().current_bytes, 300 * f4);
    a = CpuTensor{};  // releases 100 floats
    CpuTensor c = cpu.upload(std::span(v).first(50), {1, 2, 5, 5});
    EXPECT_EQ(cpu.memory().current_bytes, 250 * f4);
    EXPECT_EQ(cpu.memory().peak_bytes, 300 * f4);
    cpu.reset_peak();
    EXPECT_EQ(cpu.memory().peak_bytes, 250 * f4);
  }
  EXPECT_EQ(cpu.memory().current_bytes, 0u);
  EXPECT_EQ(cpu.memory().peak_bytes, 250 * f4);
}

TEST(CpuMemory, BuffersAreReusedSoPeakFollowsTheLiveSetNotTheLayerCount) {
  CpuBackend cpu({.threads = 1});
  const Shape s{2, 8, 16, 16};
  const std::size_t bytes = static_cast<std::size_t>(s.numel()) * f4;
  std::vector<float> v(static_cast<std::size_t>(s.numel()), 0.5f);
  CpuTensor x = cpu.upload(v, s);
  cpu.reset_peak();
  for (int layer = 0; layer < 20; ++layer) x = cpu.activation(x, Activation::relu);
  EXPECT_EQ(cpu.memory().peak_bytes, 2 * bytes);      // input and output of one layer
  EXPECT_EQ(cpu.memory().current_bytes, bytes);
  const std::size_t reserved = cpu.reserved_bytes();  // two buckets, recycled 20 times
  EXPECT_LE(reserved, 2 * sluice::cpu::Arena::bucket_floats(static_cast<std::size_t>(s.numel())) * f4);
  for (int layer = 0; layer < 20; ++layer) x = cpu.activation(x, Activation::relu);
  EXPECT_EQ(cpu.reserved_bytes(), reserved);
  x = CpuTensor{};
  cpu.trim();
  EXPECT_EQ(cpu.reserved_bytes(), 0u);
}

TEST(CpuMemory, TheCacheLimitBoundsTheFreeList) {
  CpuBackend cpu({.threads = 1, .cache_limit_bytes = 3000 * f4});
  std::vector<float> v(2000, 1.0f);
  for (std::int64_t side = 10; side <= 40; side += 3) {  // a different bucket every time
    CpuTensor t = cpu.upload(std::span(v).first(static_cast<std::size_t>(side * side)), {1, 1, side, side});
  }
  EXPECT_LE(cpu.arena()->cached_bytes(), 3000 * f4);
  EXPECT_EQ(cpu.reserved_bytes(), cpu.arena()->cached_bytes());  // nothing is live
  EXPECT_EQ(cpu.memory().current_bytes, 0u);
  // Without the bound, every size would stay cached.
  CpuBackend unbounded({.threads = 1});
  std::size_t total = 0;
  for (std::int64_t side = 10; side <= 40; side += 3) {
    CpuTensor t = unbounded.upload(std::span(v).first(static_cast<std::size_t>(side * side)), {1, 1, side, side});
    total += sluice::cpu::Arena::bucket_floats(static_cast<std::size_t>(side * side)) * f4;
  }
  EXPECT_EQ(unbounded.arena()->cached_bytes(), total);
}

TEST(CpuMemory, BucketsWasteAtMostAQuarter) {
  for (std::size_t n : {1u, 16u, 17u, 100u, 1000u, 4096u, 4097u, 123457u}) {
    const std::size_t b = sluice::cpu::Arena::bucket_floats(n);
    EXPECT_GE(b, n);
    EXPECT_LE(b, std::max<std::size_t>(16, n + n / 4 + 1)) << n;
  }
}

TEST(CpuMemory, WeightsAreAccountedWhileAnyHandleLives) {
  CpuBackend cpu({.threads = 1});
  std::mt19937 rng(5);
  auto w = ref::random_host({8, 4, 3, 3}, rng);
  auto b = ref::random_host({8}, rng);
  const sluice::WeightView bias = b;
  {
    auto conv = cpu.make_conv(w, &bias, ConvSpec::same(3));
    EXPECT_EQ(cpu.memory().weight_bytes, (8 * 4 * 9 + 8) * f4);
    EXPECT_EQ(cpu.memory().current_bytes, (8 * 4 * 9 + 8) * f4);
    auto copy = conv;
    conv = {};
    EXPECT_EQ(cpu.memory().weight_bytes, (8 * 4 * 9 + 8) * f4);
  }
  EXPECT_EQ(cpu.memory().weight_bytes, 0u);
  EXPECT_EQ(cpu.memory().current_bytes, 0u);
}

TEST(CpuMemory, ConvPeakIsInputOutputAndIm2colScratch) {
  CpuBackend cpu({.threads = 2});
  std::mt19937 rng(6);
  struct Case {
    Shape x;
    std::int64_t out;
    bool split;  // small plane: output-channel blocks
  };
  for (const Case& c : {Case{{3, 4, 40, 30}, 6, false}, Case{{2, 4, 6, 5}, 64, true}, Case{{4, 4, 6, 5}, 64, true}}) {
    auto conv = cpu.make_conv(ref::random_host({c.out, 4, 3, 3}, rng), nullptr, ConvSpec::same(3));
    // The weights are packed in panels of 4 output channels (6 -> 8 rows), k = 4 * 3 * 3 = 36.
    const std::size_t weights = static_cast<std::size_t>((c.out + 3) / 4 * 4) * 36 * f4;
    const auto in = static_cast<std::size_t>(c.x.numel());
    CpuTensor x = cpu.upload(ref::random_values(in, rng), c.x);
    const auto g = sluice::cpu::kernels::conv_geometry(c.x, conv.get());
    ASSERT_EQ(g.split_channels(), c.split);
    // A 3x3 "same" conv drops 2 columns per row when it runs on padded planes: only where that is
    // at most a quarter of the width (the first case). Then the scratch holds the padded input too.
    const bool padded = 2 * 4 <= c.x.w;
    ASSERT_EQ(g.padded_rows, padded);
    const auto rows = static_cast<std::size_t>(g.rows_per_tile), width = static_cast<std::size_t>(c.x.w);
    const std::size_t columns = padded ? (rows - 1) * (width + 2) + width : rows * width;
    // With padded planes the GEMM reads them in place: no im2col block, but a table of the 36 row
    // offsets (int64, 2 floats each) and a 24-float zero tail after the padded input.
    const std::size_t padded_input =
        padded ? static_cast<std::size_t>(c.x.n * 4 * (c.x.h + 2)) * (width + 2) + 24 + 2 * 36 : 0;
    // Otherwise im2col: k = 36 rows by one tile's columns in whole 24-column panels, per thread
    // unless the workers share the block (split channels and fewer than 2 tiles per thread in the
    // batch: the second case, not the third); and per thread the row of one tile it assembles, or
    // with padded planes the GEMM result of one channel block.
    const bool shared = c.split && c.x.n * g.tiles < 4;
    EXPECT_EQ(g.task_per_tile(2), !shared);
    const std::size_t per_worker = padded ? static_cast<std::size_t>(g.m_block) * columns : rows * width;
    const std::size_t block = padded ? 0 : 36 * ((columns + 23) / 24 * 24);
    const std::size_t scratch = padded_input + block * (shared ? 1 : 2) + 2 * per_worker;
    const std::size_t out = static_cast<std::size_t>(c.x.n * c.out * c.x.h * c.x.w);
    const std::size_t peak = cpu.measure_peak([&] { CpuTensor y = cpu.conv2d(x, conv, Activation::none); });
    EXPECT_EQ(peak, weights + (in + out + scratch) * f4);
    EXPECT_EQ(cpu.memory().current_bytes, weights + in * f4);
  }
}

// A Winograd conv (3x3, stride 1, >= 16 channels both ways) on a small plane runs as F(2x2, 3x3):
// its weights are the 16 transformed [out x in] matrices, out padded to panels of 4, and (narrow,
// fp32: it may run as F(4x4) on larger planes) its raw 3x3 weights; its scratch a block's 16 packed
// operands and 16 products, per thread or per block when the threads share too few blocks (the
// input is read in place and transformed straight into the operands).
TEST(CpuMemory, WinogradConvPeakIsInputOutputAndTransformScratch) {
  CpuBackend cpu({.threads = 2});
  std::mt19937 rng(7);
  const Shape xs{2, 16, 9, 6};
  const std::int64_t out = 18;
  auto conv = cpu.make_conv(ref::random_host({out, 16, 3, 3}, rng), nullptr, ConvSpec::same(3));
  ASSERT_TRUE(conv.get().winograd);
  const std::size_t weights = static_cast<std::size_t>(16 * 20 * 16 + out * 16 * 9) * f4;
  EXPECT_EQ(cpu.memory().weight_bytes, weights);
  const auto in = static_cast<std::size_t>(xs.numel());
  CpuTensor x = cpu.upload(ref::random_values(in, rng), xs);
  const auto g = sluice::cpu::kernels::winograd_geometry(xs, out, 2);
  // 5 x 3 tiles of 2 x 2 per sample.
  ASSERT_EQ(g.tiles, 15);
  const auto block = static_cast<std::size_t>(g.block);
  ASSERT_EQ(block % 24, 0u);
  // 30 tiles make one block, which the two workers share: one block's packed operands and products
  // per point.
  ASSERT_EQ(g.blocks, 1);
  const std::size_t one_block = 16 * (16 * block + out * block);
  const std::size_t y = static_cast<std::size_t>(xs.n * out * xs.h * xs.w);
  const std::size_t peak = cpu.measure_peak([&] { CpuTensor r = cpu.conv2d(x, conv, Activation::none); });
  EXPECT_EQ(peak, weights + (in + y + one_block) * f4);
  EXPECT_EQ(cpu.memory().current_bytes, weights + in * f4);
}

// F(4x4, 3x3)'s 36 transformed matrices are made the first time a plane of >= 16 tiles of 4 x 4
// comes, once, even when two backends sharing the conv reach it at the same moment, and are then
// accounted as weights of the backend that made the conv; both get the same bits.
TEST(CpuMemory, Winograd4WeightsAreMadeOnceOnFirstUse) {
  CpuBackend cpu({.threads = 2}), other({.threads = 1});
  std::mt19937 rng(8);
  const std::int64_t out = 18;
  auto conv = cpu.make_conv(ref::random_host({out, 16, 3, 3}, rng), nullptr, ConvSpec::same(3));
  const std::size_t before = cpu.memory().weight_bytes;
  const Shape small{1, 16, 9, 6}, large{1, 16, 16, 16};
  const auto values = ref::random_values(static_cast<std::size_t>(large.numel()), rng);
  (void)cpu.conv2d(cpu.upload(std::vector<float>(values.begin(), values.begin() + small.numel()), small), conv,
                   Activation::none);
  EXPECT_EQ(cpu.memory().weight_bytes, before) << "a small plane runs as F(2x2)";
  std::vector<float> a, b;
  std::thread t([&] { b = other.to_vector(other.conv2d(other.upload(values, large), conv, Activation::relu)); });
  a = cpu.to_vector(cpu.conv2d(cpu.upload(values, large), conv, Activation::relu));
  t.join();
  EXPECT_EQ(a, b);
  const std::size_t winograd4 = static_cast<std::size_t>(36 * 20 * 16) * f4;
  EXPECT_EQ(cpu.memory().weight_bytes, before + winograd4);
  EXPECT_EQ(other.memory().weight_bytes, 0u);
  (void)cpu.conv2d(cpu.upload(values, large), conv, Activation::none);
  EXPECT_EQ(cpu.memory().weight_bytes, before + winograd4);
}

TEST(CpuMemory, PeakOfAPassScalesWithTheBatch) {
  CpuBackend cpu({.threads = 2});
  auto pass = [&](std::int64_t n) {
    const Shape s{n, 4, 32, 32};
    std::vector<float> v(static_cast<std::size_t>(s.numel()), 1.0f);
    return cpu.measure_peak([&] {
      CpuTensor x = cpu.upload(v, s);
      CpuTensor y = cpu.max_pool2x2(cpu.activation(x, Activation::relu));
      CpuTensor z = cpu.add(y, y, Activation::none);
    });
  };
  const std::size_t one = pass(1);
  // x, the temporary relu(x) and the pool output (a quarter) live together at the peak.
  EXPECT_EQ(one, (4 * 32 * 32 * 2 + 4 * 16 * 16) * f4);
  EXPECT_EQ(pass(4), 4 * one);
  EXPECT_EQ(pass(7), 7 * one);
}

TEST(CpuMemory, TheLimitThrowsOutOfMemoryAndLeavesTheBackendUsable) {
  CpuBackend cpu({.threads = 1, .memory_limit_bytes = 1000 * f4});
  std::vector<float> v(600, 1.0f);
  CpuTensor a = cpu.upload(v, {1, 1, 20, 30});
  try {
    CpuTensor b = cpu.activation(a, Activation::relu);  // 1200 floats > 1000
    FAIL() << "no out_of_memory";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::make_error_code(errc::out_of_memory));
  }
  EXPECT_EQ(cpu.memory().current_bytes, 600 * f4);
  EXPECT_EQ(cpu.memory().peak_bytes, 600 * f4);
  cpu.set_memory_limit(2000 * f4);
  CpuTensor b = cpu.activation(a, Activation::relu);
  EXPECT_EQ(cpu.memory().current_bytes, 1200 * f4);
  cpu.set_memory_limit(0);
  CpuTensor c = cpu.add(a, b, Activation::none);
  EXPECT_EQ(cpu.memory().current_bytes, 1800 * f4);
}

TEST(CpuMemory, ASharedArenaAccountsEveryLane) {
  auto arena = std::make_shared<sluice::cpu::Arena>();
  CpuBackend lane1({.threads = 1, .arena = arena}), lane2({.threads = 1, .arena = arena});
  std::vector<float> v(64, 1.0f);
  CpuTensor a = lane1.upload(v, {1, 1, 8, 8});
  CpuTensor b = lane2.upload(v, {1, 1, 8, 8});
  EXPECT_EQ(lane1.memory().current_bytes, 128 * f4);
  EXPECT_EQ(lane2.memory().current_bytes, 128 * f4);
}

// ---- bad input -------------------------------------------------------------------------------------

// f() must throw sluice::Error with `code` and a message that contains `part` (any, when empty).
void expect_error(errc code, const std::function<void()>& f, const std::string& part, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no error";
  } catch (const sluice::Error& e) {
    EXPECT_EQ(e.code(), sluice::make_error_code(code)) << what;
    EXPECT_STRNE(e.what(), "") << what;
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << what << ": " << e.what();
  }
}

void expect_invalid(const std::function<void()>& f, const char* what) { expect_error(errc::invalid_argument, f, "", what); }

TEST(CpuErrors, MismatchedShapesAndWeightsAreInvalidArguments) {
  CpuBackend cpu({.threads = 2});
  std::mt19937 rng(7);
  auto x = cpu.upload(ref::random_values(2 * 4 * 6 * 6, rng), {2, 4, 6, 6});
  auto y = cpu.upload(ref::random_values(2 * 3 * 6 * 6, rng), {2, 3, 6, 6});
  auto z = cpu.upload(ref::random_values(2 * 4 * 5 * 6, rng), {2, 4, 5, 6});
  auto conv = cpu.make_conv(ref::random_host({2, 3, 3, 3}, rng), nullptr, ConvSpec::same(3));
  auto big = cpu.make_conv(ref::random_host({2, 4, 9, 9}, rng), nullptr, {});
  auto norm = cpu.make_norm(ref::random_host({3}, rng), ref::random_host({3}, rng));
  auto norm4 = cpu.make_norm(ref::random_host({4}, rng), ref::random_host({4}, rng));
  auto lin = cpu.make_linear(ref::random_host({2, 4}, rng), nullptr);
  auto up = cpu.make_conv_transpose2x2(ref::random_host({3, 2, 2, 2}, rng), nullptr);
  auto bias3_tensor = ref::random_host({3}, rng);
  const sluice::WeightView bias3 = bias3_tensor;
  auto bad_data = ref::random_host({2, 3, 3, 3}, rng);
  bad_data.data.pop_back();
  const Activation none = Activation::none;

  expect_invalid([&] { cpu.conv2d(x, conv, none); }, "conv channels");
  expect_invalid([&] { cpu.conv2d(x, big, none); }, "kernel larger than the input");
  expect_invalid([&] { cpu.conv2d(CpuTensor{}, conv, none); }, "empty tensor");
  expect_invalid([&] { cpu.make_conv(ref::random_host({2, 3, 3}, rng), nullptr, {}); }, "conv weight rank");
  expect_invalid([&] { cpu.make_conv(bad_data, nullptr, {}); }, "conv weight size");
  expect_invalid([&] { cpu.make_conv(ref::random_host({2, 3, 3, 3}, rng), &bias3, {}); }, "conv bias");
  expect_invalid([&] { cpu.make_conv(ref::random_host({3, 1, 3, 3}, rng), nullptr, {1, 1, 1, 1, 1, 1, 2}); },
                 "groups do not divide out");
  expect_invalid([&] { cpu.make_conv(ref::random_host({2, 1, 3, 3}, rng), nullptr, {0, 1, 0, 0, 1, 1, 1}); },
                 "stride 0");
  expect_invalid([&] { cpu.make_conv_transpose2x2(ref::random_host({3, 2, 3, 3}, rng), nullptr); }, "up kernel");
  expect_invalid([&] { cpu.conv_transpose2x2(x, up); }, "up channels");
  expect_invalid([&] { cpu.make_norm(ref::random_host({3}, rng), ref::random_host({4}, rng)); }, "gamma/beta");
  expect_invalid([&] { cpu.instance_norm(x, norm, {}); }, "norm channels");
  expect_invalid([&] { cpu.instance_norm(x, norm4, {&z, none}); }, "residual shape");
  expect_invalid([&] { cpu.add(x, y, none); }, "add shapes");
  expect_invalid([&] { cpu.add(x, z, none); }, "add sizes");
  expect_invalid([&] { cpu.mul(x, y); }, "mul broadcast");
  expect_invalid([&] { cpu.mul(x, cpu.upload(std::vector<float>(4, 1.0f), {1, 4, 1, 1})); }, "mul batch");
  expect_invalid([&] { cpu.concat({&x, &z}); }, "concat sizes");
  expect_invalid([&] { cpu.concat({}); }, "concat nothing");
  expect_invalid([&] { cpu.concat({&x, nullptr}); }, "concat null");
  expect_invalid([&] { cpu.linear(x, lin, none); }, "linear shape");
  expect_invalid([&] { cpu.self_attention(x, 1); }, "qkv channels");
  expect_invalid([&] { cpu.self_attention(cpu.upload(std::vector<float>(6 * 4, 1.0f), {1, 6, 2, 2}), 4); },
                 "heads");
  expect_invalid([&] { cpu.max_pool2x2(cpu.upload(std::vector<float>(3, 1.0f), {1, 1, 1, 3})); }, "pool 1 row");
  expect_invalid([&] { cpu.resize_bilinear(x, 0, 5, true); }, "resize to 0");
  expect_invalid([&] { cpu.simam(x, 0.0f); }, "simam eps");
  expect_invalid([&] { cpu.upload(std::vector<float>(5, 1.0f), {1, 1, 2, 2}); }, "upload size");
  expect_invalid([&] { cpu.upload({}, {0, 1, 2, 2}); }, "upload shape");
  expect_invalid([&] {
    std::vector<float> small(3);
    cpu.download(x, small);
  }, "download size");
  // Nothing leaked on any of these paths: only x, y, z and the weights are live.
  EXPECT_EQ(cpu.memory().current_bytes,
            (2 * 4 * 36 + 2 * 3 * 36 + 2 * 4 * 30) * f4 + cpu.memory().weight_bytes);
}

// ---- thread pool -------------------------------------------------------------------------------------

TEST(ThreadPool, RunsEveryTaskOnceOnAValidWorker) {
  for (std::size_t threads : {1u, 2u, 4u}) {
    sluice::cpu::ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (std::size_t count : {0u, 1u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(count);
      std::atomic<bool> bad_worker{false};
      pool.parallel_for(count, [&](std::size_t t, std::size_t w) {
        hits[t].fetch_add(1);
        if (w >= threads) bad_worker = true;
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
      EXPECT_FALSE(bad_worker.load());
    }
  }
}

TEST(ThreadPool, PlanesGroupedIntoTasksEachRunOnce) {
  namespace k = sluice::cpu::kernels;
  // Small planes share a task (64-value planes: 64 a task, capped to leave four tasks a thread);
  // large ones get a task each; never zero planes a task.
  EXPECT_EQ(k::planes_per_task(384, 64, 2), 48);
  EXPECT_EQ(k::planes_per_task(4096, 64, 2), 64);
  EXPECT_EQ(k::planes_per_task(48, 16384, 2), 1);
  EXPECT_EQ(k::planes_per_task(3, 1, 2), 1);
  for (std::size_t threads : {1u, 2u, 3u}) {
    sluice::cpu::ThreadPool pool(threads);
    for (std::int64_t planes : {0, 1, 7, 385, 5000}) {
      for (std::int64_t plane : {1, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(planes));
        std::atomic<bool> bad_worker{false};
        k::for_each_plane(pool, planes, plane, [&](std::int64_t p, std::size_t w) {
          hits[static_cast<std::size_t>(p)].fetch_add(1);
          if (w >= threads) bad_worker = true;
        });
        for (auto& h : hits) EXPECT_EQ(h.load(), 1);
        EXPECT_FALSE(bad_worker.load());
      }
    }
  }
}

// Thread w of n takes the tasks [w * count / n, (w + 1) * count / n) of a job first, so that
// successive jobs split the same way give each core the data it wrote before. Here every task waits
// until all threads have started one: nobody can take from another's share before its owner has
// begun it, so each thread's first task is the first of its own share.
TEST(ThreadPool, EachThreadStartsOnItsOwnShare) {
  for (std::size_t threads : {2u, 3u}) {
    sluice::cpu::ThreadPool pool(threads, std::chrono::microseconds{0});
    for (std::size_t count : {threads, 3 * threads + 1, std::size_t{40}}) {
      std::vector<std::atomic<std::size_t>> first_task(threads);
      std::vector<std::atomic<bool>> started(threads);
      std::atomic<bool> timed_out{false};
      pool.parallel_for(count, [&](std::size_t t, std::size_t w) {
        if (!started[w].exchange(true)) first_task[w] = t;
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{20};
        while (!std::all_of(started.begin(), started.end(), [](const auto& s) { return s.load(); }))
          if (std::chrono::steady_clock::now() > give_up) {
            timed_out = true;
            break;
          }
      });
      ASSERT_FALSE(timed_out.load()) << "a worker never joined";
      for (std::size_t w = 0; w < threads; ++w)
        EXPECT_EQ(first_task[w].load(), w * count / threads) << "thread " << w << ", " << count << " tasks";
    }
  }
}

TEST(ThreadPool, RethrowsATaskExceptionAndStaysUsable) {
  sluice::cpu::ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(100, [](std::size_t t, std::size_t) {
    if (t == 42) throw std::runtime_error("task failed");
  }),
               std::runtime_error);
  std::atomic<int> sum{0};
  pool.parallel_for(10, [&](std::size_t t, std::size_t) { sum += static_cast<int>(t); });
  EXPECT_EQ(sum.load(), 45);
}

TEST(ThreadPool, NestedCallsRunInlineOnTheSameWorker) {
  sluice::cpu::ThreadPool pool(2);
  std::atomic<int> inner{0};
  std::atomic<bool> mismatch{false};
  pool.parallel_for(4, [&](std::size_t, std::size_t outer) {
    pool.parallel_for(5, [&](std::size_t, std::size_t w) {
      if (w != outer) mismatch = true;
      ++inner;
    });
  });
  EXPECT_EQ(inner.load(), 20);
  EXPECT_FALSE(mismatch.load());
}

// Many short jobs, as in a forward pass, with pauses that let the workers fall asleep between some
// of them: whatever the spin, every task runs once and no wake-up is lost (a lost one hangs here).
TEST(ThreadPool, ShortJobsAndPausesRunCorrectlyWithAnySpin) {
  using std::chrono::microseconds;
  for (microseconds spin : {microseconds{0}, microseconds{50}, microseconds{20'000}}) {
    sluice::cpu::ThreadPool pool(3, spin);
    EXPECT_EQ(pool.spin(), spin);
    for (int job = 0; job < 3000; ++job) {
      const std::size_t count = 1 + static_cast<std::size_t>(job % 9);
      std::atomic<std::size_t> sum{0};
      pool.parallel_for(count, [&](std::size_t t, std::size_t) { sum += t + 1; });
      ASSERT_EQ(sum.load(), count * (count + 1) / 2) << "spin " << spin.count() << " us, job " << job;
      if (job % 97 == 0) std::this_thread::sleep_for(microseconds{200});
    }
  }
}

// A worker that gets no core (here: parked in a signal handler, as a descheduled thread would be)
// must not hold a job at the barrier: the caller takes every task and the job ends without it.
// Before, the caller waited for every worker to check in, so this job hung until the worker ran.
namespace parked_worker {
std::atomic<bool> parked{false}, release{false};
extern "C" void park(int) {
  parked.store(true);
  while (!release.load()) {
  }
}
}  // namespace parked_worker

TEST(ThreadPool, AJobDoesNotWaitForAWorkerThatHasNoCore) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer defers signal handlers to the thread's next intercepted call";
#endif
  using namespace parked_worker;
  sluice::cpu::ThreadPool pool(2, std::chrono::microseconds{0});
  // Find the worker's thread: a job whose task runs on worker 1 records it.
  std::atomic<pthread_t> worker_thread{};
  std::atomic<bool> found{false};
  for (int attempt = 0; attempt < 10000 && !found.load(); ++attempt)
    pool.parallel_for(2, [&](std::size_t, std::size_t w) {
      if (w == 1) worker_thread = pthread_self(), found = true;
      std::this_thread::sleep_for(std::chrono::microseconds{50});
    });
  ASSERT_TRUE(found.load()) << "worker 1 never took a task";
  std::this_thread::sleep_for(std::chrono::milliseconds{5});  // let it go back to sleep

  struct sigaction action {}, previous{};
  action.sa_handler = park;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &action, &previous), 0);
  parked = false, release = false;
  ASSERT_EQ(pthread_kill(worker_thread.load(), SIGUSR1), 0);
  while (!parked.load()) std::this_thread::yield();

  std::atomic<int> sum{0};
  std::atomic<bool> done{false};
  std::thread caller([&] {
    for (int job = 0; job < 50; ++job)
      pool.parallel_for(8, [&](std::size_t t, std::size_t w) {
        EXPECT_EQ(w, 0u) << "the parked worker ran a task";
        sum += static_cast<int>(t);
      });
    done = true;
  });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{20};
  while (!done.load() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  const bool finished_while_parked = done.load();
  release = true;  // unpark: a hung caller finishes now, so the thread can be joined either way
  caller.join();
  sigaction(SIGUSR1, &previous, nullptr);
  EXPECT_TRUE(finished_while_parked) << "the jobs waited for the parked worker";
  EXPECT_EQ(sum.load(), 50 * 28);
  // The worker is back: jobs use both threads again.
  std::atomic<bool> worker_ran{false};
  for (int attempt = 0; attempt < 10000 && !worker_ran.load(); ++attempt)
    pool.parallel_for(2, [&](std::size_t, std::size_t w) {
      if (w == 1) worker_ran = true;
      std::this_thread::sleep_for(std::chrono::microseconds{50});
    });
  EXPECT_TRUE(worker_ran.load());
}

TEST(ThreadPool, SpinComesFromTheEnvironmentWhenValid) {
  using sluice::cpu::ThreadPool;
  using std::chrono::microseconds;
  const char* saved = std::getenv("SLUICE_CPU_SPIN_US");
  const std::string restore = saved ? saved : "";
  const std::pair<const char*, microseconds> cases[] = {
      {"0", microseconds{0}},          {"75", microseconds{75}},
      {"1000000", microseconds{1'000'000}}, {"1000001", ThreadPool::built_in_spin},
      {"-5", ThreadPool::built_in_spin}, {"12us", ThreadPool::built_in_spin},
      {"", ThreadPool::built_in_spin}};
  for (const auto& [text, expected] : cases) {
    ::setenv("SLUICE_CPU_SPIN_US", text, 1);
    EXPECT_EQ(ThreadPool::default_spin(), expected) << "'" << text << "'";
  }
  ::unsetenv("SLUICE_CPU_SPIN_US");
  EXPECT_EQ(ThreadPool::default_spin(), ThreadPool::built_in_spin);
  if (saved) ::setenv("SLUICE_CPU_SPIN_US", restore.c_str(), 1);
  EXPECT_EQ(ThreadPool(2, microseconds{-3}).spin(), microseconds{0});
  EXPECT_EQ(ThreadPool(2, std::chrono::hours{1}).spin(), ThreadPool::max_spin);
}

TEST(CpuBackendOptions, ThreadCountIsConfigurable) {
  EXPECT_EQ(CpuBackend({.threads = 1}).threads(), 1u);
  EXPECT_EQ(CpuBackend({.threads = 3}).threads(), 3u);
  EXPECT_GE(CpuBackend().threads(), 1u);
}

TEST(CpuBackendOptions, SpinIsConfigurable) {
  EXPECT_EQ(CpuBackend({.threads = 2, .spin = std::chrono::microseconds{0}}).pool().spin().count(), 0);
  EXPECT_EQ(CpuBackend({.threads = 2, .spin = std::chrono::microseconds{30}}).pool().spin().count(), 30);
}

// ---- a batch as independent samples (map_samples) ------------------------------------------------

// run_batch with a forward pass f: how often f ran per call, and on which backend; each way may be
// made slower by a delay per call of f.
struct Ways {
  std::atomic<int> whole{0}, per_sample{0};
  auto forward(CpuBackend& lane, std::chrono::milliseconds whole_delay = {}, std::chrono::milliseconds sample_delay = {}) {
    return [this, &lane, whole_delay, sample_delay](CpuBackend& b, const CpuTensor& x) {
      ++(&b == &lane ? whole : per_sample);
      std::this_thread::sleep_for(&b == &lane ? whole_delay : sample_delay);
      return b.activation(x, Activation::relu);
    };
  }
};

TEST(BatchSplit, SplitsOnlyWhenAskedAndEveryThreadGetsASample) {
  auto calls = [](sluice::cpu::CpuOptions options, std::int64_t n) {
    CpuBackend cpu(options);
    Ways ways;
    (void)cpu.run_batch(cpu.upload(std::vector<float>(static_cast<std::size_t>(n) * 4, 1.0f), {n, 1, 2, 2}),
                        ways.forward(cpu));
    return std::pair(ways.whole.load(), ways.per_sample.load());
  };
  using sluice::cpu::BatchSplit;
  EXPECT_EQ(calls({.threads = 2, .batch_split = BatchSplit::always}, 1), std::pair(1, 0));
  EXPECT_EQ(calls({.threads = 2, .batch_split = BatchSplit::always}, 5), std::pair(0, 5));
  EXPECT_EQ(calls({.threads = 4, .batch_split = BatchSplit::always}, 3), std::pair(1, 0));
  EXPECT_EQ(calls({.threads = 4, .batch_split = BatchSplit::always}, 4), std::pair(0, 4));
  EXPECT_EQ(calls({.threads = 1, .batch_split = BatchSplit::always}, 8), std::pair(1, 0));
  EXPECT_EQ(calls({.threads = 2, .batch_split = BatchSplit::never}, 8), std::pair(1, 0));
  EXPECT_EQ(calls({.threads = 2}, 8), std::pair(0, 8));  // auto's first trial is split
  // may_split tells the same rule without running anything.
  EXPECT_TRUE(CpuBackend({.threads = 4}).may_split(4));
  EXPECT_FALSE(CpuBackend({.threads = 4}).may_split(3));
  EXPECT_FALSE(CpuBackend({.threads = 2, .batch_split = BatchSplit::never}).may_split(8));
}

// Automatic: per shape, two batches each way (split first), then the faster way for good. Here
// the whole-batch way is made 30 ms slower, then the split way; each shape is tuned on its own.
TEST(BatchSplit, AutomaticKeepsTheFasterWayPerShape) {
  using std::chrono::milliseconds;
  for (const bool slow_whole : {true, false}) {
    CpuBackend cpu({.threads = 2});
    Ways ways;
    const Shape s{4, 1, 8, 8};
    const CpuTensor x = cpu.upload(std::vector<float>(256, 1.0f), s);
    const milliseconds slow{30}, fast{0};
    auto run = [&](int batches) {
      for (int i = 0; i < batches; ++i)
        (void)cpu.run_batch(x, ways.forward(cpu, slow_whole ? slow : fast, slow_whole ? fast : slow));
    };
    run(3);
    EXPECT_EQ(cpu.split_choice(s), std::nullopt);
    EXPECT_EQ(ways.whole.load(), 1);
    EXPECT_EQ(ways.per_sample.load(), 8);
    run(1);
    ASSERT_EQ(cpu.split_choice(s), std::optional<bool>(slow_whole));
    EXPECT_EQ(cpu.split_choice(Shape{2, 1, 8, 8}), std::nullopt);  // another shape: not tuned yet
    ways.whole = 0;
    ways.per_sample = 0;
    run(5);
    EXPECT_EQ(ways.whole.load(), slow_whole ? 0 : 5);
    EXPECT_EQ(ways.per_sample.load(), slow_whole ? 20 : 0);
  }
}

TEST(BatchSplit, ParsesItsThreeNames) {
  using sluice::cpu::BatchSplit;
  for (BatchSplit w : {BatchSplit::never, BatchSplit::always, BatchSplit::automatic})
    EXPECT_EQ(sluice::cpu::parse_batch_split(sluice::cpu::to_string(w)), w);
  expect_error(errc::invalid_argument, [] { sluice::cpu::parse_batch_split("sometimes"); }, "sometimes",
               "an unknown way");
}

// Each sample reaches f alone, on a single-threaded backend that is not the caller's, and the
// results come back stacked in the input's order; the memory is the caller's arena's.
TEST(MapSamples, RunsEachSampleOnASingleThreadedBackendAndStacksInOrder) {
  CpuBackend cpu({.threads = 2});
  const Shape s{6, 2, 3, 4};
  std::vector<float> in(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) - 50.0f;
  const CpuTensor x = cpu.upload(in, s);
  const std::size_t before = cpu.memory().current_bytes;
  std::atomic<int> calls{0}, wrong_backend{0};
  const CpuTensor y = cpu.map_samples(x, [&](CpuBackend& solo, const CpuTensor& sample) {
    ++calls;
    if (&solo == &cpu || solo.threads() != 1 || solo.arena() != cpu.arena() || sample.shape() != Shape{1, 2, 3, 4})
      ++wrong_backend;
    return solo.activation(sample, Activation::relu);
  });
  EXPECT_EQ(calls.load(), 6);
  EXPECT_EQ(wrong_backend.load(), 0);
  ASSERT_EQ(y.shape(), s);
  const auto out = cpu.to_vector(y);
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], std::max(in[i], 0.0f)) << i;
  EXPECT_EQ(cpu.memory().current_bytes, before + in.size() * sizeof(float));  // y, nothing else
}

TEST(MapSamples, RethrowsTheFirstErrorAndLeaksNothing) {
  CpuBackend cpu({.threads = 2});
  const CpuTensor x = cpu.upload(std::vector<float>(4 * 8, 1.0f), {4, 2, 2, 2});
  const std::size_t before = cpu.memory().current_bytes;
  std::atomic<int> seen{0};
  expect_error(errc::out_of_memory, [&] {
    (void)cpu.map_samples(x, [&](CpuBackend& solo, const CpuTensor& sample) {
      if (seen++ == 2) throw sluice::Error(errc::out_of_memory, "sample failed");
      return solo.activation(sample, Activation::relu);
    });
  }, "sample failed", "a failing sample");
  EXPECT_EQ(cpu.memory().current_bytes, before);
  // Results of different shapes cannot be stacked.
  std::atomic<int> k{0};
  expect_error(errc::invalid_argument, [&] {
    (void)cpu.map_samples(x, [&](CpuBackend& solo, const CpuTensor& sample) {
      return k++ == 1 ? solo.max_pool2x2(sample) : solo.activation(sample, Activation::relu);
    });
  }, "one shape", "results of two shapes");
  EXPECT_EQ(cpu.memory().current_bytes, before);
}

}  // namespace
