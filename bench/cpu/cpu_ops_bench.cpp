// bench_cpu_ops: the machine's FP32 matrix-multiply rate (square matrices through Eigen's sgemm and
// through the backend's own conv GEMM, 1 thread and split over the backend's thread pool) and the CPU
// backend's conv2d GFLOP/s on the networks' typical layers, in one run so the ratio "conv / GEMM" is
// measured under the same load.
//   build-cpu/bench/cpu/bench_cpu_ops --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// The machine is shared, so besides GFLOP/s of wall time each benchmark reports GFLOP per CPU-second
// of the whole process (all threads): the rate per core actually obtained, robust to other load.
// GFLOP/s counts 2 * N * out * out_h * out_w * in/groups * kh * kw per conv (a multiply-add = 2 FLOP).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include "sluice/backends/cpu/intrinsics.hpp"  // before Eigen: see there
#include <Eigen/Core>
#include <random>
#include <vector>

#include "sluice/backends/cpu/cpu_backend.hpp"
#include "sluice/weights/host_tensor.hpp"

namespace {

using sluice::Activation;
using sluice::ConvSpec;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::cpu::CpuTensor;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Runs body() per iteration; sets GFLOP/s (wall) and GFLOP/cpu_s (per CPU-second of all threads).
template <class F>
void run_flops(benchmark::State& state, double flops_per_iteration, F&& body) {
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) body();
  const double cpu = process_cpu_seconds() - cpu0;
  const double total = flops_per_iteration * double(state.iterations()) * 1e-9;
  state.counters["GFLOP/s"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  state.counters["GFLOP/cpu_s"] = cpu > 0 ? total / cpu : 0.0;
}

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// C = A * B, square n x n; with threads > 1 the columns of C are split in equal blocks over a pool.
void BM_Sgemm(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  const auto threads = static_cast<std::size_t>(state.range(1));
  RowMatrix a = RowMatrix::Random(n, n), b = RowMatrix::Random(n, n), c(n, n);
  sluice::cpu::ThreadPool pool(threads);
  const Eigen::Index block = (n + static_cast<Eigen::Index>(threads) - 1) / static_cast<Eigen::Index>(threads);
  run_flops(state, 2.0 * double(n) * double(n) * double(n), [&] {
    pool.parallel_for(threads, [&](std::size_t t, std::size_t) {
      const Eigen::Index c0 = static_cast<Eigen::Index>(t) * block, cols = std::min(block, n - c0);
      c.middleCols(c0, cols).noalias() = a * b.middleCols(c0, cols);
    });
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
}
BENCHMARK(BM_Sgemm)->ArgNames({"n", "threads"})->Args({1024, 1})->Args({2048, 1})->Args({1024, 2})->Args({2048, 2})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

// The same product through the backend's own conv GEMM (gemm.hpp): A packed once (as conv weights
// are at load time), B packed into panels on every call (as im2col does), per thread a column block.
void BM_ConvGemm(benchmark::State& state) {
  namespace kernels = sluice::cpu::kernels;
  const std::int64_t n = state.range(0);
  const auto threads = static_cast<std::size_t>(state.range(1));
  const auto square = static_cast<std::size_t>(n * n);
  const std::vector<float> a = random_values(square, 1), b = random_values(square, 2);
  std::vector<float> packed_a(static_cast<std::size_t>(kernels::packed_a_floats(n, n))), c(square);
  kernels::pack_a(a.data(), n, n, n, packed_a.data());
  sluice::cpu::ThreadPool pool(threads);
  const std::int64_t block = (n + static_cast<std::int64_t>(threads) - 1) / static_cast<std::int64_t>(threads);
  std::vector<std::vector<float>> panels(threads,
                                         std::vector<float>(static_cast<std::size_t>(kernels::PackedB::floats(n, block))));
  run_flops(state, 2.0 * double(n) * double(n) * double(n), [&] {
    pool.parallel_for(threads, [&](std::size_t t, std::size_t worker) {
      const std::int64_t c0 = static_cast<std::int64_t>(t) * block, cols = std::min(block, n - c0);
      const kernels::PackedB packed(panels[worker].data(), n, cols);
      for (std::int64_t r = 0; r < n; ++r) packed.set_row(r, b.data() + r * n + c0);
      kernels::gemm_packed(packed_a.data(), n, 0, n, packed, c.data() + c0, n);
    });
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
}
BENCHMARK(BM_ConvGemm)->ArgNames({"n", "threads"})->Args({1024, 1})->Args({2048, 1})->Args({1024, 2})->Args({2048, 2})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

struct Layer {
  std::int64_t in, out, k, hw, stride;
};
// The networks' typical convolutions: HRNet branch / ResUNet 3x3s, the HRNet head 1x1, a 7x7 stem.
const Layer layers[] = {
    {64, 64, 3, 128, 1},   // 0: 3x3 64->64 at 128x128
    {256, 256, 3, 32, 1},  // 1: 3x3 256->256 at 32x32
    {720, 720, 1, 64, 1},  // 2: 1x1 720->720 at 64x64 (HRNet last_layer)
    {3, 64, 7, 256, 1},    // 3: 7x7 3->64 at 256x256 (init_conv)
    {48, 48, 3, 128, 1},   // 4: 3x3 48->48 at 128x128 (HRNet W48 branch 0 at 512 input)
    {3, 64, 3, 512, 2},    // 5: 3x3 s2 3->64 at 512x512 (HRNet stem)
    {64, 256, 1, 128, 1},  // 6: 1x1 64->256 at 128x128 (HRNet layer1 expansion at 512 input)
    {256, 64, 1, 128, 1},  // 7: 1x1 256->64 at 128x128 (HRNet layer1 reduction)
};

// args: layer, batch, threads
void conv2d_case(benchmark::State& state, bool bf16) {
  const Layer& l = layers[state.range(0)];
  const std::int64_t n = state.range(1);
  CpuBackend cpu({.threads = static_cast<std::size_t>(state.range(2)),
                  .precision = bf16 ? sluice::cpu::Precision::bf16 : sluice::cpu::Precision::fp32});
  sluice::weights::HostTensor w;
  w.shape = {l.out, l.in, l.k, l.k};
  w.data = random_values(static_cast<std::size_t>(w.numel()), 1);
  sluice::weights::HostTensor b;
  b.shape = {l.out};
  b.data = random_values(static_cast<std::size_t>(l.out), 2);
  const sluice::WeightView bias = b;
  auto conv = cpu.make_conv(w, &bias, ConvSpec::same(l.k, l.stride));
  const Shape s{n, l.in, l.hw, l.hw};
  CpuTensor x = cpu.upload(random_values(static_cast<std::size_t>(s.numel()), 3), s);
  const std::int64_t out_hw = (l.hw - 1) / l.stride + 1;
  const double flops = 2.0 * double(n) * double(l.out) * double(out_hw * out_hw) * double(l.in * l.k * l.k);
  run_flops(state, flops, [&] {
    CpuTensor y = cpu.conv2d(x, conv, Activation::relu);
    benchmark::DoNotOptimize(y.data());
  });
}
void BM_Conv2d(benchmark::State& state) { conv2d_case(state, false); }
BENCHMARK(BM_Conv2d)
    ->ArgNames({"layer", "n", "threads"})
    ->ArgsProduct({{0, 1, 2, 3, 4, 5}, {1}, {1, 2}})
    ->Args({1, 4, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// args: layer, batch, threads, bf16 (where the CPU has AVX512_BF16)
void BM_Conv2d1x1(benchmark::State& state) { conv2d_case(state, state.range(3) != 0); }
BENCHMARK(BM_Conv2d1x1)
    ->ArgNames({"layer", "n", "threads", "bf16"})
    ->ArgsProduct({{2, 6, 7}, {1}, {1, 2}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// A 3x3 conv as Winograd F(2x2, 3x3) against F(4x4, 3x3) (winograd.hpp), on the kernel itself:
// which tile pays on which layer (SLUICE_CPU_WINOGRAD4_MAX_WEIGHTS). GFLOP/s count direct FLOPs.
// Compare with --benchmark_enable_random_interleaving=true --benchmark_repetitions=5.
const Layer winograd_layers[] = {
    {48, 48, 3, 64, 1},    // 0: HRNet branch 0 at 256 input
    {96, 96, 3, 32, 1},    // 1: HRNet branch 1
    {192, 192, 3, 16, 1},  // 2: HRNet branch 2
    {384, 384, 3, 8, 1},   // 3: HRNet branch 3
    {48, 48, 3, 256, 1},   // 4: ResUNetSmall encoder 1
    {384, 384, 3, 32, 1},  // 5: ResUNetSmall encoder 4
    {512, 512, 3, 16, 1},  // 6: ResUNetSmall encoder 5
    {1024, 1024, 3, 8, 1}, // 7: ResUNetSmall bottleneck
};

// args: layer, tile, batch, threads, bf16 (1: F(2x2) on the vdpbf16ps kernel, 2: on AMX tiles, where the
// CPU has them)
void BM_Winograd(benchmark::State& state) {
  namespace k = sluice::cpu::kernels;
  const Layer& l = winograd_layers[state.range(0)];
  const std::int64_t tile = state.range(1), n = state.range(2);
  const bool bf16 = state.range(4) != 0, amx = state.range(4) == 2;
  if (bf16 && !sluice::cpu::cpu_has_avx512_bf16()) {
    state.SkipWithError("this CPU lacks AVX512_BF16");
    return;
  }
  if (const std::string why = amx ? k::amx_unavailable_reason() : std::string(); !why.empty()) {
    state.SkipWithError(why.c_str());
    return;
  }
  sluice::cpu::ThreadPool pool(static_cast<std::size_t>(state.range(3)));
  const std::vector<float> w = random_values(static_cast<std::size_t>(l.out * l.in * 9), 1);
  const std::vector<float> u = bf16 ? std::vector<float>{} : k::winograd_weights(w.data(), l.out, l.in, tile);
  const std::vector<std::uint32_t> u16 =
      bf16 ? k::winograd_weights_bf16(w.data(), l.out, l.in, tile, amx) : std::vector<std::uint32_t>{};
  const k::ConvWeights weights = bf16 ? k::ConvWeights{nullptr, u16.data(), amx} : k::ConvWeights{u.data(), nullptr, false};
  const Shape s{n, l.in, l.hw, l.hw};
  const std::vector<float> x = random_values(static_cast<std::size_t>(s.numel()), 3);
  const k::WinogradGeometry g = k::winograd_geometry(s, l.out, tile);
  std::vector<float> y(static_cast<std::size_t>(n * l.out * l.hw * l.hw));
  std::vector<float> scratch(static_cast<std::size_t>(g.scratch_floats(pool.size())));
  const double flops = 2.0 * double(n) * double(l.out) * double(l.hw * l.hw) * double(l.in * 9);
  run_flops(state, flops, [&] {
    k::conv2d_winograd(x.data(), weights, nullptr, g, Activation::relu, y.data(), scratch.data(), pool);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_Winograd)
    ->ArgNames({"layer", "tile", "n", "threads", "bf16"})
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6, 7}, {2, 4}, {1}, {2}, {0}})
    ->ArgsProduct({{0, 1, 2, 3}, {2, 4}, {1}, {1}, {0}})  // one thread: the pool's scaling on small planes
    ->ArgsProduct({{0, 1, 2, 3, 4, 5, 6, 7}, {2}, {1}, {2}, {1, 2}})
    ->ArgsProduct({{0, 1, 2, 3, 7}, {2, 4}, {4}, {2}, {0}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ConvTranspose2d(2, 2) 512 -> 256 at 32x32 (a decoder up-step).
void BM_ConvTranspose(benchmark::State& state) {
  CpuBackend cpu({.threads = static_cast<std::size_t>(state.range(0))});
  sluice::weights::HostTensor w;
  w.shape = {512, 256, 2, 2};
  w.data = random_values(static_cast<std::size_t>(w.numel()), 1);
  auto up = cpu.make_conv_transpose2x2(w, nullptr);
  const Shape s{1, 512, 32, 32};
  CpuTensor x = cpu.upload(random_values(static_cast<std::size_t>(s.numel()), 3), s);
  run_flops(state, 2.0 * 512 * 256 * 4 * 32 * 32, [&] {
    CpuTensor y = cpu.conv_transpose2x2(x, up);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_ConvTranspose)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// Self-attention at the AdvancedResUNet bottleneck: 1024 channels, 8 heads, 32x32 tokens (512 input).
void BM_SelfAttention(benchmark::State& state) {
  CpuBackend cpu({.threads = static_cast<std::size_t>(state.range(0))});
  const Shape s{1, 3 * 1024, 32, 32};
  CpuTensor x = cpu.upload(random_values(static_cast<std::size_t>(s.numel()), 3), s);
  const double t = 1024.0;  // tokens; q k^T and A v are 2 * t * t * channels FLOP each
  run_flops(state, 2.0 * 2.0 * t * t * 1024.0, [&] {
    CpuTensor y = cpu.self_attention(x, 8);
    benchmark::DoNotOptimize(y.data());
  });
}
BENCHMARK(BM_SelfAttention)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

// Instance norm + residual + ReLU over C x S x S: 64 x 256 x 256 streams past L2; HRNet-W48's
// first branch at a 512 input (48 x 128 x 128, no residual) stays in L2/L3 plane by plane.
void BM_InstanceNorm(benchmark::State& state) {
  CpuBackend cpu({.threads = static_cast<std::size_t>(state.range(0))});
  const std::int64_t channels = state.range(1), side = state.range(2);
  const bool with_residual = state.range(3) != 0;
  sluice::weights::HostTensor g, b;
  g.shape = b.shape = {channels};
  g.data = random_values(static_cast<std::size_t>(channels), 1);
  b.data = random_values(static_cast<std::size_t>(channels), 2);
  auto norm = cpu.make_norm(g, b);
  const Shape s{1, channels, side, side};
  CpuTensor x = cpu.upload(random_values(static_cast<std::size_t>(s.numel()), 3), s);
  CpuTensor r = cpu.upload(random_values(static_cast<std::size_t>(s.numel()), 4), s);
  for (auto _ : state) {
    CpuTensor y = with_residual ? cpu.instance_norm(x, norm, {&r, Activation::relu})
                                : cpu.instance_norm(x, norm, {nullptr, Activation::relu});
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * s.numel() * 4 * (with_residual ? 3 : 2));
}
BENCHMARK(BM_InstanceNorm)
    ->ArgNames({"threads", "c", "side", "residual"})
    ->Args({1, 64, 256, 1})
    ->Args({2, 64, 256, 1})
    ->Args({1, 48, 128, 0})
    ->Args({2, 48, 128, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
