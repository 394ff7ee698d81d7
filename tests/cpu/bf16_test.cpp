// The bf16 precision of the CPU backend: the bf16 GEMMs (gemm_bf16.hpp on vdpbf16ps, gemm_amx.hpp on
// AMX tiles, the latter through the tiles' emulation on every CPU and on the tiles themselves where
// they exist) against a naive double product within a bound derived from bf16's unit roundoff, their
// batch/thread invariance, the CPUID dispatch (against the kernel's own flags in /proc/cpuinfo) and
// the fallbacks.
#include "sluice/backends/cpu/gemm_amx.hpp"
#include "sluice/backends/cpu/gemm_bf16.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "sluice/backends/cpu/cpu_backend.hpp"
#include "support/cpu_reference.hpp"
#include "support/packed_gemm_product.hpp"

namespace {

namespace kernels = sluice::cpu::kernels;
namespace ref = sluice::cpu::test;
using sluice::Activation;
using sluice::ConvSpec;
using sluice::Shape;
using sluice::cpu::CpuBackend;
using sluice::cpu::Precision;

bool bf16_runs_here() { return sluice::cpu::bf16_unavailable_reason().empty(); }
bool amx_runs_here() { return bf16_runs_here() && kernels::amx_unavailable_reason().empty(); }

#define SLUICE_REQUIRE_BF16()                                       \
  do {                                                              \
    if (!bf16_runs_here()) GTEST_SKIP() << sluice::cpu::bf16_unavailable_reason(); \
  } while (0)

/// gemm_bf16.hpp's packing (A rounded to bf16 pairs) and GEMM, for the shared product.
struct Bf16Gemm {
  using Word = std::uint32_t;
  static constexpr auto packed_a_size = kernels::packed_a_bf16_words;
  static constexpr auto pack_a = kernels::pack_a_bf16;
  static constexpr auto gemm = kernels::gemm_packed_bf16;
};
using Product = ref::PackedGemmProduct<Bf16Gemm>;

/// gemm_amx.hpp's packing and GEMM on the tiles' emulation (any CPU) or on the tiles.
template <class Tiles>
struct AmxGemm {
  using Word = std::uint32_t;
  static constexpr auto packed_a_size = kernels::packed_a_amx_words;
  static constexpr auto pack_a = kernels::pack_a_amx;
  static constexpr auto gemm = kernels::gemm_packed_amx<Tiles>;
};
using EmulatedAmx = AmxGemm<kernels::detail::EmulatedTiles>;
using HardwareAmx = AmxGemm<kernels::detail::HardwareTiles>;

double bf16_value(float f) { return kernels::from_bf16(kernels::to_bf16(f)); }

TEST(Bf16Rounding, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(kernels::from_bf16(kernels::to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1; just above goes up.
  EXPECT_EQ(kernels::from_bf16(kernels::to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(kernels::from_bf16(kernels::to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20))),
            1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(kernels::from_bf16(kernels::to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isinf(kernels::from_bf16(kernels::to_bf16(INFINITY))));
  EXPECT_TRUE(std::isnan(kernels::from_bf16(kernels::to_bf16(NAN))));
}

/// Checks c = A * B of p against the double product: within bf16's bound of the exact one and within
/// float32's of the product of the bf16-rounded operands.
template <class Kernel>
void expect_within_the_bf16_bound(const ref::PackedGemmProduct<Kernel>& p, const std::vector<float>& c) {
  const std::int64_t m = p.m, k = p.k, n = p.n;
  // Rounding each operand to bf16 (unit roundoff u = 2^-8) moves a product by at most
  // (2u + u^2) |a b|; bf16 x bf16 is exact in float and the float sums of k + 1 terms add
  // gamma_(k+1) (u32 = 2^-24) of the magnitude (Higham 3.1). Against the rounded operands the
  // kernel must meet the float bound alone: a pair or a row in the wrong place cannot.
  const double u = std::ldexp(1.0, -8), u32 = std::ldexp(1.0, -24);
  const double gamma = (k + 2) * u32 / (1 - (k + 2) * u32);
  double worst_ratio = 0;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double exact = 0, rounded = 0, magnitude = 0, rounded_magnitude = 0;
      for (std::int64_t q = 0; q < k; ++q) {
        const double t = double(p.a[i * k + q]) * double(p.b[q * n + j]);
        const double r = bf16_value(p.a[i * k + q]) * bf16_value(p.b[q * n + j]);
        exact += t, rounded += r, magnitude += std::abs(t), rounded_magnitude += std::abs(r);
      }
      const double got = c[i * n + j];
      ASSERT_LE(std::abs(got - exact), (2 * u + u * u + gamma * (1 + 2 * u + u * u)) * magnitude)
          << "at " << i << "," << j;
      ASSERT_LE(std::abs(got - rounded), gamma * rounded_magnitude) << "at " << i << "," << j;
      if (magnitude > 0) worst_ratio = std::max(worst_ratio, std::abs(got - exact) / magnitude);
    }
  // And bf16 really ran: with k >= 7 random products, some output's error relative to its
  // magnitude is near u / sqrt(k) (> 1e-5), where float's stays near 2^-24 sqrt(k) (< 1e-6).
  if (k >= 7) {
    EXPECT_GT(worst_ratio, 1e-5);
  }
}

TEST(Bf16Gemm, MatchesDoubleProductWithinTheBf16Bound) {
  SLUICE_REQUIRE_BF16();
  std::mt19937 rng(81);
  // Shapes around the panel sizes (8 rows, 24 columns), the pairs (odd k) and the depth block (256).
  const std::int64_t ms[] = {1, 7, 8, 9, 30}, ks[] = {1, 2, 7, 255, 256, 257, 600}, ns[] = {1, 23, 24, 25, 97};
  ref::for_every_shape<Bf16Gemm>(ms, ks, ns, rng, expect_within_the_bf16_bound<Bf16Gemm>);
}

/// Rows [m0, m0 + rows) and columns [c0, c1) of a product.
struct Window {
  std::int64_t m0, rows, c0, c1;
};

/// Each window of p through the kernel must give the same bits as the whole product there.
template <class Kernel>
void expect_windows_equal_the_whole(const ref::PackedGemmProduct<Kernel>& p, std::initializer_list<Window> windows) {
  const std::vector<float> full = p.run(0, p.m, 0, p.n);
  for (const Window w : windows) {
    const std::vector<float> part = p.run(w.m0, w.rows, w.c0, w.c1);
    for (std::int64_t i = 0; i < w.rows; ++i)
      for (std::int64_t j = w.c0; j < w.c1; ++j)
        ASSERT_EQ(part[i * (w.c1 - w.c0) + j - w.c0], full[(w.m0 + i) * p.n + j]) << i << "," << j;
  }
}

TEST(Bf16Gemm, AnElementIsTheSameBitsWhateverRowsAndColumnsAreComputedWithIt) {
  SLUICE_REQUIRE_BF16();
  std::mt19937 rng(82);
  // Last panels of 1-8, 9-16 and 17-24 columns: the micro-kernel's three widths.
  expect_windows_equal_the_whole(Product(40, 531, 150, rng),
                                 {{0, 40, 0, 1}, {8, 16, 5, 150}, {32, 8, 17, 41}, {16, 3, 149, 150}, {0, 40, 3, 19},
                                  {8, 24, 40, 53}, {24, 16, 100, 140}});
}

/// B of p stored in place for an indirect GEMM: its rows in reverse order in memory, row stride n + 5,
/// and a panel's width readable past the end.
struct RowsInPlace {
  std::vector<float> storage;
  std::vector<std::int64_t> offsets;

  template <class Kernel>
  explicit RowsInPlace(const ref::PackedGemmProduct<Kernel>& p)
      : storage(static_cast<std::size_t>(p.k * (p.n + 5) + kernels::kGemmNr), 3.0f),
        offsets(static_cast<std::size_t>(p.k)) {
    for (std::int64_t r = 0; r < p.k; ++r) {
      offsets[static_cast<std::size_t>(r)] = (p.k - 1 - r) * (p.n + 5);
      std::copy_n(p.b.begin() + r * p.n, p.n, storage.begin() + offsets[static_cast<std::size_t>(r)]);
    }
  }
};

TEST(Bf16Gemm, ReadingBInPlaceThroughRowOffsetsGivesThePackedResultBitForBit) {
  SLUICE_REQUIRE_BF16();
  std::mt19937 rng(83);
  const Product p(20, 301, 77, rng);
  const RowsInPlace b(p);
  std::vector<float> c(static_cast<std::size_t>(p.m * p.n), 99.0f);
  kernels::gemm_indirect_bf16(p.packed_a.data(), p.m, 0, p.m, b.storage.data(), b.offsets.data(), p.k, p.n, c.data(),
                              p.n);
  EXPECT_EQ(c, p.run(0, p.m, 0, p.n));
}

// ---- AMX tiles ---------------------------------------------------------------------------------

// The AMX kernel's packing and blocking, on the tiles' emulation: any CPU runs these.
TEST(AmxGemm, MatchesDoubleProductWithinTheBf16Bound) {
  std::mt19937 rng(91);
  // Around the tiles (16 rows, 16 columns, steps of 32 k), the rounded B panels (96 columns), the
  // pairs (odd k) and the depth block (256).
  const std::int64_t ms[] = {1, 16, 17, 40}, ks[] = {1, 7, 33, 256, 257, 600}, ns[] = {1, 16, 17, 97, 130};
  ref::for_every_shape<EmulatedAmx>(ms, ks, ns, rng, expect_within_the_bf16_bound<EmulatedAmx>);
}

TEST(AmxGemm, AnElementIsTheSameBitsWhateverRowsAndColumnsAreComputedWithIt) {
  std::mt19937 rng(92);
  // Blocks of one and two tiles each way, full and partial; rows that start inside a tile (the
  // callers split rows by 8); the last rows, whose tiles read the packing's zero rows.
  expect_windows_equal_the_whole(ref::PackedGemmProduct<EmulatedAmx>(45, 531, 150, rng),
                                 {{0, 45, 0, 1}, {8, 16, 5, 150}, {3, 33, 17, 41}, {16, 3, 149, 150}, {0, 45, 3, 19},
                                  {8, 24, 40, 53}, {24, 21, 100, 140}, {40, 5, 0, 150}});
}

TEST(AmxGemm, ReadingBInPlaceThroughRowOffsetsGivesThePackedResultBitForBit) {
  std::mt19937 rng(93);
  const ref::PackedGemmProduct<EmulatedAmx> p(20, 301, 77, rng);
  const RowsInPlace b(p);
  std::vector<float> c(static_cast<std::size_t>(p.m * p.n), 99.0f);
  kernels::gemm_indirect_amx<kernels::detail::EmulatedTiles>(p.packed_a.data(), p.m, 0, p.m, b.storage.data(),
                                                              b.offsets.data(), p.k, p.n, c.data(), p.n);
  EXPECT_EQ(c, p.run(0, p.m, 0, p.n));
}

// The tiles themselves against their emulation, to float32 rounding (they may order a tile's sums
// otherwise, see EmulatedTiles), and against the double product, on every shape class.
TEST(AmxGemm, TheTilesAgreeWithTheirEmulation) {
  if (!sluice::cpu::cpu_has_amx_bf16()) GTEST_SKIP() << "no AMX-BF16 tiles on this CPU";
  EXPECT_EQ(kernels::amx_unavailable_reason(), "");
  std::mt19937 rng(94);
  const std::tuple<std::int64_t, std::int64_t, std::int64_t> shapes[] = {{1, 7, 1}, {17, 257, 97}, {40, 600, 130}, {96, 96, 64}};
  for (const auto& [m, k, n] : shapes) {
    SCOPED_TRACE("m " + std::to_string(m) + " k " + std::to_string(k) + " n " + std::to_string(n));
    std::mt19937 same_draws = rng;
    const ref::PackedGemmProduct<HardwareAmx> hardware(m, k, n, rng);
    const std::vector<float> got = hardware.run(0, m, 0, n);
    expect_within_the_bf16_bound(hardware, got);
    const std::vector<float> emulated = ref::PackedGemmProduct<EmulatedAmx>(m, k, n, same_draws).run(0, m, 0, n);
    // Both sum the same exact products in float32, each within gamma_(k+2) of their magnitude.
    const double u32 = std::ldexp(1.0, -24), gamma = (k + 2) * u32 / (1 - (k + 2) * u32);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double magnitude = 0;
        for (std::int64_t q = 0; q < k; ++q)
          magnitude += std::abs(bf16_value(hardware.a[i * k + q]) * bf16_value(hardware.b[q * n + j]));
        ASSERT_LE(std::abs(double(got[i * n + j]) - emulated[i * n + j]), 2 * gamma * magnitude) << i << "," << j;
      }
  }
}

// B is rounded to pairs by AVX512_BF16 for the tiles and in scalar code for their emulation.
TEST(AmxGemm, TheScalarAndVectorRoundingOfBAgreeBitForBit) {
  SLUICE_REQUIRE_BF16();
  std::mt19937 rng(95);
  for (std::int64_t kc : {1, 2, 7, 256}) {
    const std::vector<float> panel = ref::random_values(static_cast<std::size_t>(kc * kernels::kGemmNr), rng);
    std::vector<std::uint32_t> vector_words(static_cast<std::size_t>((kc + 1) / 2 * 40), 7u), scalar_words = vector_words;
    kernels::detail::pack_b_panel_bf16(kc, kernels::detail::PackedPanel{panel.data()}, vector_words.data(), 40);
    kernels::detail::pack_b_panel_bf16_scalar(kc, kernels::detail::PackedPanel{panel.data()}, scalar_words.data(), 40);
    EXPECT_EQ(vector_words, scalar_words) << "kc " << kc;
  }
}

// ---- dispatch and fallback -------------------------------------------------------------------------

/// The kernel's own flags from /proc/cpuinfo, or nothing where it has none.
std::optional<std::set<std::string>> kernel_cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (in && std::getline(in, line) && line.rfind("flags", 0) != 0) {
  }
  if (line.rfind("flags", 0) != 0) return std::nullopt;
  std::istringstream words(line);
  std::set<std::string> flags;
  for (std::string w; words >> w;) flags.insert(w);
  return flags;
}

TEST(Bf16Dispatch, CpuidAgreesWithTheKernelsFlags) {
  const auto flags = kernel_cpu_flags();
  if (!flags) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  const bool all = flags->count("avx512_bf16") && flags->count("avx512f") && flags->count("avx512bw") &&
                   flags->count("avx512vl");
  EXPECT_EQ(sluice::cpu::cpu_has_avx512_bf16(), all);
}

TEST(Bf16Dispatch, AmxAgreesWithTheKernelsFlagsAndCanBeSwitchedOff) {
  const auto flags = kernel_cpu_flags();
  if (!flags) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  EXPECT_EQ(sluice::cpu::cpu_has_amx_bf16(),
            flags->count("amx_tile") && flags->count("amx_bf16") && sluice::cpu::cpu_has_avx512_bf16());
  ::setenv("SLUICE_CPU_AMX", "off", 1);
  CpuBackend off({.threads = 2, .precision = Precision::bf16});
  const std::string reason = kernels::amx_unavailable_reason();
  ::unsetenv("SLUICE_CPU_AMX");
  EXPECT_NE(reason.find("SLUICE_CPU_AMX=off"), std::string::npos);
  if (bf16_runs_here()) {
    EXPECT_STREQ(off.gemm_kernel(), "bf16 vdpbf16ps");
    EXPECT_EQ(off.bf16_kernel_note(), reason);
    CpuBackend on({.threads = 2, .precision = Precision::bf16});
    EXPECT_STREQ(on.gemm_kernel(), amx_runs_here() ? "bf16 amx" : "bf16 vdpbf16ps");
  } else {
    EXPECT_STREQ(off.gemm_kernel(), "fp32");
  }
}

TEST(Bf16Dispatch, ParsesItsTwoNamesAndRejectsTheCudaOnesClearly) {
  EXPECT_EQ(sluice::cpu::parse_precision("fp32"), Precision::fp32);
  EXPECT_EQ(sluice::cpu::parse_precision("bf16"), Precision::bf16);
  for (const char* bad : {"fp16", "tf32", "BF16", ""}) {
    try {
      (void)sluice::cpu::parse_precision(bad);
      ADD_FAILURE() << bad;
    } catch (const sluice::Error& e) {
      EXPECT_EQ(e.code(), sluice::errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("fp32 or bf16"), std::string::npos);
    }
  }
}

/// Convs of every kernel kind (Winograd, im2col, in place, 1x1, strided, grouped, channel blocks).
struct ConvKinds {
  std::mt19937 rng{84};
  std::vector<std::pair<sluice::weights::HostTensor, ConvSpec>> layers;
  ConvKinds() {
    // Winograd F(2x2) on the bf16 kernel: wider than SLUICE_CPU_WINOGRAD4_BF16_MAX_WEIGHTS, so
    // that planes of many tiles do not move it to fp32 F(4x4).
    layers.emplace_back(ref::random_host({1040, 16, 3, 3}, rng, 0.1f), ConvSpec::same(3));
    layers.emplace_back(ref::random_host({12, 16, 3, 3}, rng, 0.2f), ConvSpec::same(3));       // in place
    layers.emplace_back(ref::random_host({96, 16, 1, 1}, rng, 0.2f), ConvSpec::same(1));       // 1x1, blocks
    layers.emplace_back(ref::random_host({80, 16, 3, 3}, rng, 0.1f), ConvSpec{1, 1, 2, 2, 2, 2, 1});  // im2col
    layers.emplace_back(ref::random_host({6, 16, 7, 7}, rng, 0.05f), ConvSpec::same(7, 2));    // strided
    layers.emplace_back(ref::random_host({16, 4, 3, 3}, rng, 0.2f), ConvSpec{1, 1, 1, 1, 1, 1, 4});  // grouped
  }
};

std::vector<std::vector<float>> run_kinds(CpuBackend& cpu, const ConvKinds& kinds, const std::vector<float>& x,
                                          const Shape& s) {
  std::vector<std::vector<float>> out;
  for (const auto& [w, spec] : kinds.layers)
    out.push_back(cpu.to_vector(cpu.conv2d(cpu.upload(x, s), cpu.make_conv(w, nullptr, spec), Activation::none)));
  return out;
}

TEST(Bf16Dispatch, WithBf16SwitchedOffTheBackendRunsFp32BitForBitAndSaysWhy) {
  ::setenv("SLUICE_CPU_BF16", "off", 1);
  CpuBackend off({.threads = 2, .precision = Precision::bf16});
  ::unsetenv("SLUICE_CPU_BF16");
  CpuBackend fp32({.threads = 2});
  EXPECT_EQ(off.precision(), Precision::fp32);
  EXPECT_NE(off.precision_note().find("SLUICE_CPU_BF16=off"), std::string::npos);
  EXPECT_TRUE(fp32.precision_note().empty());
  const ConvKinds kinds;
  std::mt19937 rng(85);
  const Shape s{2, 16, 19, 23};
  const auto x = ref::random_values(static_cast<std::size_t>(s.numel()), rng);
  EXPECT_EQ(run_kinds(off, kinds, x, s), run_kinds(fp32, kinds, x, s));
}

/// Every kind of conv on `bf16`'s kernel: near the double reference within the bf16 bound, visibly
/// coarser than fp32.
void expect_every_kind_near_the_reference(CpuBackend& bf16) {
  CpuBackend fp32({.threads = 2});
  ASSERT_EQ(bf16.precision(), Precision::bf16);
  const ConvKinds kinds;
  std::mt19937 rng(86);
  const Shape s{2, 16, 19, 23};
  const auto x = ref::random_values(static_cast<std::size_t>(s.numel()), rng);
  const auto got = run_kinds(bf16, kinds, x, s), base = run_kinds(fp32, kinds, x, s);
  for (std::size_t i = 0; i < kinds.layers.size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const auto& [w, spec] = kinds.layers[i];
    const ref::Ref want = ref::conv2d(ref::to_ref(x, s), w, nullptr, spec, Activation::none);
    const ref::Diff d = ref::diff(got[i], want);
    // Every output is a sum of k products whose operands were rounded to bf16 (u = 2^-8), the
    // Winograd ones after their transforms: random signs keep the error a few u of the output
    // range. fp32 stays within 1e-5 of it: the bf16 result must be visibly coarser.
    EXPECT_LE(d.max_abs, 8 * std::ldexp(1.0, -8) * std::max(1.0, d.scale)) << "scale " << d.scale;
    EXPECT_GT(d.max_abs, 1e-4 * d.scale);
    EXPECT_LE(ref::diff(base[i], want).max_abs, 1e-5 * std::max(1.0, d.scale));
  }
}

TEST(Bf16Conv, EveryKernelKindIsNearTheDoubleReferenceAndNotFp32) {
  SLUICE_REQUIRE_BF16();
  CpuBackend bf16({.threads = 2, .precision = Precision::bf16});  // on AMX tiles where the CPU has them
  expect_every_kind_near_the_reference(bf16);
}

TEST(Bf16Conv, OnAnAmxCpuTheVdpbf16psKernelStillServesEveryKind) {
  if (!amx_runs_here()) GTEST_SKIP() << "the test above ran the vdpbf16ps kernel: " << kernels::amx_unavailable_reason();
  ::setenv("SLUICE_CPU_AMX", "off", 1);
  CpuBackend bf16({.threads = 2, .precision = Precision::bf16});
  ::unsetenv("SLUICE_CPU_AMX");
  ASSERT_STREQ(bf16.gemm_kernel(), "bf16 vdpbf16ps");
  expect_every_kind_near_the_reference(bf16);
}

TEST(Bf16Conv, ASampleIsTheSameBitsAloneInABatchAndOnOneThread) {
  SLUICE_REQUIRE_BF16();
  CpuBackend two({.threads = 2, .precision = Precision::bf16});
  CpuBackend one({.threads = 1, .precision = Precision::bf16});
  const ConvKinds kinds;
  std::mt19937 rng(87);
  const Shape batch{5, 16, 13, 17}, single{1, 16, 13, 17};
  const auto x = ref::random_values(static_cast<std::size_t>(batch.numel()), rng);
  const auto together = run_kinds(two, kinds, x, batch);
  const std::size_t plane = static_cast<std::size_t>(single.numel());
  for (std::int64_t n : {0, 3}) {
    const std::vector<float> sample(x.begin() + n * plane, x.begin() + (n + 1) * plane);
    const auto alone = run_kinds(two, kinds, sample, single), serial = run_kinds(one, kinds, sample, single);
    for (std::size_t i = 0; i < kinds.layers.size(); ++i) {
      SCOPED_TRACE("layer " + std::to_string(i) + " sample " + std::to_string(n));
      const std::size_t per = alone[i].size();
      ASSERT_EQ(together[i].size(), 5 * per);
      EXPECT_TRUE(std::equal(alone[i].begin(), alone[i].end(), together[i].begin() + n * per));
      EXPECT_EQ(alone[i], serial[i]);
    }
  }
}

// A narrow Winograd layer runs F(4x4) in fp32 on planes of >= 16 tiles of 4 x 4 even with bf16
// precision (faster there than F(2x2) on the bf16 kernel, and exact to fp32): the same bits as the
// fp32 backend; on a smaller plane it runs F(2x2) in bf16, near fp32 but not the same.
TEST(Bf16Conv, ANarrowWinogradLayerOnALargePlaneRunsFp32FourByFour) {
  SLUICE_REQUIRE_BF16();
  CpuBackend bf16({.threads = 2, .precision = Precision::bf16});
  CpuBackend fp32({.threads = 2});
  std::mt19937 rng(89);
  const auto w = ref::random_host({24, 16, 3, 3}, rng, 0.1f);
  ASSERT_TRUE(kernels::winograd4_suits(24, 16, Precision::bf16));
  ASSERT_FALSE(kernels::winograd4_suits(1040, 16, Precision::bf16));
  auto run = [&](CpuBackend& cpu, const std::vector<float>& x, const Shape& s) {
    return cpu.to_vector(cpu.conv2d(cpu.upload(x, s), cpu.make_conv(w, nullptr, ConvSpec::same(3)), Activation::relu));
  };
  const Shape large{2, 16, 19, 23}, small{2, 16, 9, 11};  // 5 x 6 and 3 x 3 tiles of 4 x 4
  ASSERT_EQ(kernels::winograd_tile(large.h, large.w, true), 4);
  ASSERT_EQ(kernels::winograd_tile(small.h, small.w, true), 2);
  const auto xl = ref::random_values(static_cast<std::size_t>(large.numel()), rng);
  EXPECT_EQ(run(bf16, xl, large), run(fp32, xl, large));
  const auto xs = ref::random_values(static_cast<std::size_t>(small.numel()), rng);
  const auto got = run(bf16, xs, small), base = run(fp32, xs, small);
  const ref::Diff d = ref::diff(got, ref::to_ref(base, {small.n, 24, small.h, small.w}));
  EXPECT_GT(d.max_abs, 1e-4 * d.scale);
  EXPECT_LE(d.max_abs, 8 * std::ldexp(1.0, -8) * std::max(1.0, d.scale));
}

// ConvTranspose2d(2, 2) runs its GEMM in bf16 too: near the double reference within the bf16 bound,
// visibly coarser than fp32, and a sample's result is the same bits alone and in a batch.
TEST(Bf16ConvTranspose, IsNearTheDoubleReferenceAndTheSameBitsInABatch) {
  SLUICE_REQUIRE_BF16();
  CpuBackend bf16({.threads = 2, .precision = Precision::bf16});
  CpuBackend fp32({.threads = 2});
  std::mt19937 rng(88);
  const Shape batch{3, 40, 37, 29}, single{1, 40, 37, 29};  // 29 columns: tiles of 36 rows, a short last one
  const auto w = ref::random_host({40, 24, 2, 2}, rng, 0.2f), b = ref::random_host({24}, rng);
  const sluice::WeightView bv = b;
  const auto x = ref::random_values(static_cast<std::size_t>(batch.numel()), rng);
  auto run = [&](CpuBackend& cpu, const std::vector<float>& in, const Shape& s) {
    return cpu.to_vector(cpu.conv_transpose2x2(cpu.upload(in, s), cpu.make_conv_transpose2x2(w, &bv)));
  };
  const auto got = run(bf16, x, batch), base = run(fp32, x, batch);
  const ref::Ref want = ref::conv_transpose2x2(ref::to_ref(x, batch), w, &bv);
  const ref::Diff d = ref::diff(got, want);
  // Each output sums 40 products of bf16-rounded operands (u = 2^-8) plus the bias.
  EXPECT_LE(d.max_abs, 8 * std::ldexp(1.0, -8) * std::max(1.0, d.scale)) << "scale " << d.scale;
  EXPECT_GT(d.max_abs, 1e-4 * d.scale);
  EXPECT_LE(ref::diff(base, want).max_abs, 1e-5 * std::max(1.0, d.scale));
  const std::size_t in_plane = static_cast<std::size_t>(single.numel());
  const std::vector<float> second(x.begin() + static_cast<std::ptrdiff_t>(in_plane),
                                  x.begin() + static_cast<std::ptrdiff_t>(2 * in_plane));
  const auto alone = run(bf16, second, single);
  ASSERT_EQ(got.size(), 3 * alone.size());
  EXPECT_TRUE(std::equal(alone.begin(), alone.end(), got.begin() + static_cast<std::ptrdiff_t>(alone.size())));
}

}  // namespace
