// sluice/backends/cpu/gemm_amx.hpp: the bf16 conv GEMM of gemm_bf16.hpp on AMX tiles (AMX-TILE and
// AMX-BF16: Intel Xeons from Sapphire Rapids on). One tdpbf16ps multiplies a 16 x 32 bf16 tile of A
// by a 32 x 16 tile of B, stored as 16 rows of k-pairs, into a 16 x 16 float32 tile of C: 8192
// multiply-adds in one instruction, sixteen times a 512-bit vdpbf16ps.
//  - A (the weights) is packed once at load time, per step of 32 k (16 pairs): every row of A, 16
//    words of k-pairs each (bf16(a[i][2p]) low, bf16(a[i][2p + 1]) high), so that a tile of any 16
//    consecutive rows is one load with a 64-byte stride. Rows past m are zero, and 16 more than the
//    last tile needs, so that a block starting at any row reads inside the packing.
//  - B: gemm.hpp's float32 panels (packed or read in place) are rounded to k-pairs as the
//    vdpbf16ps kernel rounds them, four panels side by side (96 columns: six tiles) per depth
//    block of kGemmKc, so that a tile of B is one load with a 384-byte stride.
//  - C: 32 x 32 (2 x 2 tiles) stays in tmm0-3 over a depth block; A's two tiles go to tmm4-5, B's
//    to tmm6-7.
// The sum of a C element runs over the depth blocks in order, their steps of 32 in order and the
// pairs in order inside a step, whatever rows and columns it is computed with: results are batch-
// and thread-invariant as with the other kernels (not the same bits as the vdpbf16ps kernel's).
//
// The kernel is written over a tile interface with two implementations: the registers
// themselves (HardwareTiles, used where cpu_has_amx_bf16(), precision.hpp) and EmulatedTiles,
// the instructions' definitions on arrays, which lets the packing and blocking be tested on any
// x86-64 and the hardware be checked against it where it exists.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sluice/backends/cpu/gemm.hpp"
#include "sluice/backends/cpu/gemm_bf16.hpp"
#include "sluice/backends/cpu/precision.hpp"

namespace sluice::cpu::kernels {

inline constexpr std::int64_t kAmxRows = 16;       // rows of a tile (C, A) and k-pairs of a B tile
inline constexpr std::int64_t kAmxPairs = 16;      // k-pairs of an A tile: a step of 32 k
inline constexpr std::int64_t kAmxColumns = 16;    // float32 columns of a C tile and of a B tile
inline constexpr std::int64_t kAmxBColumns = 4 * kGemmNr;  // B columns rounded together: 4 panels, 6 tiles
static_assert(kGemmKc % (2 * kAmxPairs) == 0, "a depth block is whole steps");
static_assert(kAmxBColumns % kAmxColumns == 0, "the rounded panels are whole tiles");

/// Rows of A in the AMX packing: m padded to a tile, then one tile more (see the header).
inline std::int64_t packed_a_amx_rows(std::int64_t m) { return round_up(m, kAmxRows) + kAmxRows; }

/// Steps of 32 k in a depth of k.
inline std::int64_t amx_steps(std::int64_t k) { return (k + 2 * kAmxPairs - 1) / (2 * kAmxPairs); }

/// 32-bit words of A [m x k] once packed for the AMX kernel.
inline std::int64_t packed_a_amx_words(std::int64_t m, std::int64_t k) {
  return amx_steps(k) * packed_a_amx_rows(m) * kAmxPairs;
}

/// Packs row-major A [m x k] (row stride lda) into `out` (packed_a_amx_words(m, k) words), rounding
/// to bf16: step s holds rows 0 .. packed_a_amx_rows(m) - 1 of k [32 s, 32 s + 32), zero past m and k.
inline void pack_a_amx(const float* a, std::int64_t m, std::int64_t k, std::int64_t lda, std::uint32_t* out) {
  const std::int64_t rows = packed_a_amx_rows(m);
  for (std::int64_t s = 0; s < amx_steps(k); ++s)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t p = 0; p < kAmxPairs; ++p) {
        const std::int64_t k0 = 2 * (s * kAmxPairs + p);
        const float lo = i < m && k0 < k ? a[i * lda + k0] : 0.0f;
        const float hi = i < m && k0 + 1 < k ? a[i * lda + k0 + 1] : 0.0f;
        *out++ = static_cast<std::uint32_t>(to_bf16(lo)) | static_cast<std::uint32_t>(to_bf16(hi)) << 16;
      }
}

/// 32-bit words of A [m x k] packed for a bf16 kernel: AMX tiles (`amx`) or vdpbf16ps.
inline std::int64_t bf16_kernel_words(std::int64_t m, std::int64_t k, bool amx) {
  return amx ? packed_a_amx_words(m, k) : packed_a_bf16_words(m, k);
}

/// Packs A for a bf16 kernel: pack_a_amx (`amx`) or pack_a_bf16.
inline void pack_a_bf16_kernel(const float* a, std::int64_t m, std::int64_t k, std::int64_t lda, std::uint32_t* out,
                               bool amx) {
  (amx ? pack_a_amx : pack_a_bf16)(a, m, k, lda, out);
}

namespace detail {

/// The tile registers tmm0-7, configured as 16 rows of 64 bytes each. The instructions are written
/// as assembly with a memory clobber: the compiler's intrinsics tell it neither that a load reads
/// the buffer just written (which it could then drop) nor that a store writes C.
struct HardwareTiles {
  static constexpr bool hardware = true;

  struct alignas(64) Config {
    std::uint8_t palette = 1, start_row = 0;
    std::array<std::uint8_t, 14> reserved{};
    std::array<std::uint16_t, 16> bytes_per_row{};
    std::array<std::uint8_t, 16> rows{};
  };
  static_assert(sizeof(Config) == 64);

  static void configure() {
#if defined(__x86_64__) && defined(__GNUC__)
    Config config;
    for (int t = 0; t < 8; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
    __asm__ volatile("ldtilecfg %0" ::"m"(config));
#endif
  }
  static void release() {
#if defined(__x86_64__) && defined(__GNUC__)
    __asm__ volatile("tilerelease" ::: "memory");
#endif
  }
#if defined(__x86_64__) && defined(__GNUC__)
  /// tmmT = 16 rows of 64 bytes from p, `stride` bytes apart.
  template <int T>
  static void load(const void* p, std::int64_t stride) {
#define SLUICE_CPU_AMX_LOAD(t) \
  if constexpr (T == t) __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(p), "r"(stride) : "memory")
    SLUICE_CPU_AMX_LOAD(0);
    SLUICE_CPU_AMX_LOAD(1);
    SLUICE_CPU_AMX_LOAD(2);
    SLUICE_CPU_AMX_LOAD(3);
    SLUICE_CPU_AMX_LOAD(4);
    SLUICE_CPU_AMX_LOAD(5);
    SLUICE_CPU_AMX_LOAD(6);
    SLUICE_CPU_AMX_LOAD(7);
#undef SLUICE_CPU_AMX_LOAD
  }
  /// The 16 rows of C tile tmmT to p, `stride` bytes apart.
  template <int T>
  static void store(void* p, std::int64_t stride) {
    static_assert(T < 4, "only C tiles are stored");
#define SLUICE_CPU_AMX_STORE(t) \
  if constexpr (T == t) __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(p), "r"(stride) : "memory")
    SLUICE_CPU_AMX_STORE(0);
    SLUICE_CPU_AMX_STORE(1);
    SLUICE_CPU_AMX_STORE(2);
    SLUICE_CPU_AMX_STORE(3);
#undef SLUICE_CPU_AMX_STORE
  }
  /// C tile tmmT = 0.
  template <int T>
  static void zero() {
    static_assert(T < 4, "only C tiles are zeroed");
#define SLUICE_CPU_AMX_ZERO(t) \
  if constexpr (T == t) __asm__ volatile("tilezero %%tmm" #t ::: "memory")
    SLUICE_CPU_AMX_ZERO(0);
    SLUICE_CPU_AMX_ZERO(1);
    SLUICE_CPU_AMX_ZERO(2);
    SLUICE_CPU_AMX_ZERO(3);
#undef SLUICE_CPU_AMX_ZERO
  }
  /// tmmC += tmmA (16 rows x 16 pairs) * tmmB (16 pairs x 16 columns): C tile (r, t) = A tile r
  /// (tmm4 + r) times B tile t (tmm6 + t).
  template <int C, int A, int B>
  static void dot() {
    static_assert((C == 0 && A == 4 && B == 6) || (C == 1 && A == 4 && B == 7) || (C == 2 && A == 5 && B == 6) ||
                      (C == 3 && A == 5 && B == 7),
                  "the kernel's tile roles");
#define SLUICE_CPU_AMX_DOT(c, a, b)                 \
  if constexpr (C == c && A == a && B == b) \
  __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::: "memory")
    SLUICE_CPU_AMX_DOT(0, 4, 6);
    SLUICE_CPU_AMX_DOT(1, 4, 7);
    SLUICE_CPU_AMX_DOT(2, 5, 6);
    SLUICE_CPU_AMX_DOT(3, 5, 7);
#undef SLUICE_CPU_AMX_DOT
  }
#else
  template <int T>
  static void load(const void*, std::int64_t) {}
  template <int T>
  static void store(void*, std::int64_t) {}
  template <int T>
  static void zero() {}
  template <int C, int A, int B>
  static void dot() {}
#endif
};

/// The same instructions on arrays (one set per thread). tdpbf16ps as Intel's intrinsics guide
/// defines it: for each row m and column n of C and each pair k in order, add a[m][k].lo * b[k][n].lo,
/// then a[m][k].hi * b[k][n].hi, in float32 (a product of two bf16 is exact in float32). The
/// instruction set reference's later text sums a tile's even and odd products apart before adding
/// them to C, and the tiles flush denormals: the hardware may differ from this in the last bits of
/// float32, which the self-check and the tests allow for (a misplaced pair or row is far off).
struct EmulatedTiles {
  static constexpr bool hardware = false;
  using Tile = std::array<std::uint32_t, kAmxRows * 16>;  // 16 rows of 64 bytes

  static Tile& tile(int t) {
    static thread_local std::array<Tile, 8> tiles{};
    return tiles[static_cast<std::size_t>(t)];
  }
  static void configure() {}
  static void release() {}
  template <int T>
  static void load(const void* p, std::int64_t stride) {
    for (std::int64_t r = 0; r < kAmxRows; ++r)
      std::memcpy(tile(T).data() + r * 16, static_cast<const char*>(p) + r * stride, 64);
  }
  template <int T>
  static void store(void* p, std::int64_t stride) {
    for (std::int64_t r = 0; r < kAmxRows; ++r)
      std::memcpy(static_cast<char*>(p) + r * stride, tile(T).data() + r * 16, 64);
  }
  template <int T>
  static void zero() {
    tile(T).fill(0);
  }
  template <int C, int A, int B>
  static void dot() {
    const Tile &a = tile(A), &b = tile(B);
    Tile& c = tile(C);
    for (std::int64_t m = 0; m < kAmxRows; ++m)
      for (std::int64_t n = 0; n < kAmxColumns; ++n) {
        float sum;
        std::memcpy(&sum, &c[static_cast<std::size_t>(m * 16 + n)], sizeof sum);
        for (std::int64_t k = 0; k < kAmxPairs; ++k) {
          const std::uint32_t x = a[static_cast<std::size_t>(m * 16 + k)], y = b[static_cast<std::size_t>(k * 16 + n)];
          sum += from_bf16(static_cast<std::uint16_t>(x)) * from_bf16(static_cast<std::uint16_t>(y));
          sum += from_bf16(static_cast<std::uint16_t>(x >> 16)) * from_bf16(static_cast<std::uint16_t>(y >> 16));
        }
        std::memcpy(&c[static_cast<std::size_t>(m * 16 + n)], &sum, sizeof sum);
      }
  }
};

/// C[mr x nr] (row stride ldc, mr <= 16 RT, nr <= 16 CT) = (accumulate ? C : 0) + the `steps` steps of
/// A (row tiles 16 rows apart in a step, steps a_step words apart) times B (rows of kAmxBColumns words,
/// tile t at column 16 t). Partial blocks go through a 32 x 32 staging area.
template <class Tiles, int RT, int CT>
inline void amx_block(std::int64_t steps, const std::uint32_t* a, std::int64_t a_step, const std::uint32_t* b,
                      float* c, std::int64_t ldc, bool accumulate, std::int64_t mr, std::int64_t nr) {
  constexpr std::int64_t kStage = 2 * kAmxColumns;
  alignas(64) float staging[2 * kAmxRows * kStage];
  const bool direct = mr == kAmxRows * RT && nr == kAmxColumns * CT;
  float* target = direct ? c : staging;
  const std::int64_t stride = direct ? ldc : kStage, bytes = stride * static_cast<std::int64_t>(sizeof(float));
  if (accumulate) {
    if (!direct) {
      std::fill(std::begin(staging), std::end(staging), 0.0f);
      for (std::int64_t i = 0; i < mr; ++i) std::copy_n(c + i * ldc, nr, staging + i * kStage);
    }
    Tiles::template load<0>(target, bytes);
    if constexpr (CT == 2) Tiles::template load<1>(target + kAmxColumns, bytes);
    if constexpr (RT == 2) Tiles::template load<2>(target + kAmxRows * stride, bytes);
    if constexpr (RT == 2 && CT == 2) Tiles::template load<3>(target + kAmxRows * stride + kAmxColumns, bytes);
  } else {
    Tiles::template zero<0>();
    if constexpr (CT == 2) Tiles::template zero<1>();
    if constexpr (RT == 2) Tiles::template zero<2>();
    if constexpr (RT == 2 && CT == 2) Tiles::template zero<3>();
  }
  constexpr std::int64_t a_bytes = kAmxPairs * sizeof(std::uint32_t), b_bytes = kAmxBColumns * sizeof(std::uint32_t);
  for (std::int64_t s = 0; s < steps; ++s, a += a_step, b += kAmxRows * kAmxBColumns) {
    Tiles::template load<4>(a, a_bytes);
    if constexpr (RT == 2) Tiles::template load<5>(a + kAmxRows * kAmxPairs, a_bytes);
    Tiles::template load<6>(b, b_bytes);
    if constexpr (CT == 2) Tiles::template load<7>(b + kAmxColumns, b_bytes);
    Tiles::template dot<0, 4, 6>();
    if constexpr (CT == 2) Tiles::template dot<1, 4, 7>();
    if constexpr (RT == 2) Tiles::template dot<2, 5, 6>();
    if constexpr (RT == 2 && CT == 2) Tiles::template dot<3, 5, 7>();
  }
  Tiles::template store<0>(target, bytes);
  if constexpr (CT == 2) Tiles::template store<1>(target + kAmxColumns, bytes);
  if constexpr (RT == 2) Tiles::template store<2>(target + kAmxRows * stride, bytes);
  if constexpr (RT == 2 && CT == 2) Tiles::template store<3>(target + kAmxRows * stride + kAmxColumns, bytes);
  if (!direct)
    for (std::int64_t i = 0; i < mr; ++i) std::copy_n(staging + i * kStage, nr, c + i * ldc);
}

/// The product of rows [m0, m0 + rows) of the packed A with B over every depth block and group of
/// four B panels; panel_at(k0, kc, j0) gives B's panel (as gemm_bf16's).
template <class Tiles, class PanelAt>
inline void gemm_amx(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows, std::int64_t k,
                     std::int64_t n, const PanelAt& panel_at, float* c, std::int64_t ldc) {
  alignas(64) std::uint32_t b_pairs[kGemmKc / 2 * kAmxBColumns];
  const std::int64_t a_step = packed_a_amx_rows(m) * kAmxPairs;
  Tiles::configure();
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0), pairs = (kc + 1) / 2, steps = amx_steps(kc);
    const std::uint32_t* a_block = a + k0 / (2 * kAmxPairs) * a_step + m0 * kAmxPairs;
    for (std::int64_t j0 = 0; j0 < n; j0 += kAmxBColumns) {
      const std::int64_t columns = std::min(kAmxBColumns, n - j0), tiles = (columns + kAmxColumns - 1) / kAmxColumns;
      const std::int64_t panels = (columns + kGemmNr - 1) / kGemmNr;
      for (std::int64_t q = 0; q < panels; ++q) {
        if constexpr (Tiles::hardware)
          pack_b_panel_bf16(kc, panel_at(k0, kc, j0 + q * kGemmNr), b_pairs + q * kGemmNr, kAmxBColumns);
        else
          pack_b_panel_bf16_scalar(kc, panel_at(k0, kc, j0 + q * kGemmNr), b_pairs + q * kGemmNr, kAmxBColumns);
      }
      // The step's pairs past kc, and the columns of the last tile past the last panel, are zero.
      for (std::int64_t p = 0; p < steps * kAmxPairs; ++p) {
        std::uint32_t* row = b_pairs + p * kAmxBColumns;
        std::fill(row + (p < pairs ? panels * kGemmNr : 0), row + std::max(tiles * kAmxColumns, panels * kGemmNr),
                  0u);
      }
      for (std::int64_t i0 = 0; i0 < rows; i0 += 2 * kAmxRows) {
        const std::int64_t mr = std::min(2 * kAmxRows, rows - i0);
        for (std::int64_t t = 0; t < tiles; t += 2) {
          const std::int64_t nr = std::min(2 * kAmxColumns, columns - t * kAmxColumns);
          const std::uint32_t* a_rows = a_block + i0 * kAmxPairs;
          const std::uint32_t* b_tiles = b_pairs + t * kAmxColumns;
          float* c_block = c + i0 * ldc + j0 + t * kAmxColumns;
          const bool two_rows = mr > kAmxRows, two_columns = nr > kAmxColumns;
          if (two_rows && two_columns)
            amx_block<Tiles, 2, 2>(steps, a_rows, a_step, b_tiles, c_block, ldc, k0 > 0, mr, nr);
          else if (two_rows)
            amx_block<Tiles, 2, 1>(steps, a_rows, a_step, b_tiles, c_block, ldc, k0 > 0, mr, nr);
          else if (two_columns)
            amx_block<Tiles, 1, 2>(steps, a_rows, a_step, b_tiles, c_block, ldc, k0 > 0, mr, nr);
          else
            amx_block<Tiles, 1, 1>(steps, a_rows, a_step, b_tiles, c_block, ldc, k0 > 0, mr, nr);
        }
      }
    }
  }
  Tiles::release();
}

}  // namespace detail

/// gemm_packed (gemm.hpp) with `a` packed by pack_a_amx; m0 is any row.
template <class Tiles = detail::HardwareTiles>
inline void gemm_packed_amx(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows,
                            const PackedB& b, float* c, std::int64_t ldc) {
  detail::gemm_amx<Tiles>(a, m, m0, rows, b.k(), b.n(), detail::PackedPanels{&b}, c, ldc);
}

/// gemm_indirect (gemm.hpp) with `a` packed by pack_a_amx; m0 is any row.
template <class Tiles = detail::HardwareTiles>
inline void gemm_indirect_amx(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows,
                              const float* b, const std::int64_t* offsets, std::int64_t k, std::int64_t n, float* c,
                              std::int64_t ldc) {
  detail::gemm_amx<Tiles>(a, m, m0, rows, k, n, detail::IndirectPanels{b, offsets}, c, ldc);
}

namespace detail {

/// A product with partial tiles and two depth blocks through the tiles and through their emulation:
/// empty when they agree to float32 rounding (see EmulatedTiles), else what differed. A wrong tile
/// configuration or layout is off by far more.
inline std::string amx_self_check() {
  constexpr std::int64_t m = 37, k = 300, n = 70, m0 = 3, rows = 33;
  std::uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / static_cast<float>(1u << 24) - 0.5f;
  };
  std::vector<float> a(m * k), b(k * n);
  for (float& v : a) v = next();
  for (float& v : b) v = next();
  std::vector<std::uint32_t> packed(static_cast<std::size_t>(packed_a_amx_words(m, k)));
  pack_a_amx(a.data(), m, k, k, packed.data());
  std::vector<float> b_storage(static_cast<std::size_t>(PackedB::floats(k, n)));
  const PackedB packed_b(b_storage.data(), k, n);
  for (std::int64_t r = 0; r < k; ++r) packed_b.set_row(r, b.data() + r * n);
  std::vector<float> hardware(rows * n), emulated(rows * n);
  gemm_packed_amx<HardwareTiles>(packed.data(), m, m0, rows, packed_b, hardware.data(), n);
  gemm_packed_amx<EmulatedTiles>(packed.data(), m, m0, rows, packed_b, emulated.data(), n);
  // Both sum the same exact products (of bf16 operands) in float32, each within gamma_(k+2) of
  // their magnitude (Higham 3.1), whatever the order.
  const double u32 = std::ldexp(1.0, -24), gamma = (k + 2) * u32 / (1 - (k + 2) * u32);
  auto rounded = [](float v) { return double(from_bf16(to_bf16(v))); };
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double magnitude = 0;
      for (std::int64_t q = 0; q < k; ++q) magnitude += std::abs(rounded(a[(m0 + i) * k + q]) * rounded(b[q * n + j]));
      const float h = hardware[i * n + j], e = emulated[i * n + j];
      if (!(std::abs(double(h) - e) <= 2 * gamma * magnitude))
        return "the AMX tiles disagree with their definition (row " + std::to_string(i) + ", column " +
               std::to_string(j) + ": " + std::to_string(h) + " against " + std::to_string(e) +
               "): running the vdpbf16ps kernel";
    }
  return {};
}

}  // namespace detail

/// Why the bf16 GEMMs run on the vdpbf16ps kernel (gemm_bf16.hpp) rather than on AMX tiles here;
/// empty when AMX runs. SLUICE_CPU_AMX=off forces the vdpbf16ps kernel. Where the processor has the
/// tiles, a check product must agree with their emulation first (once per process).
inline std::string amx_unavailable_reason() {
  if (const char* v = std::getenv("SLUICE_CPU_AMX"); v != nullptr && std::strcmp(v, "off") == 0)
    return "SLUICE_CPU_AMX=off: running the vdpbf16ps kernel";
  if (!cpu_has_amx_bf16()) return "no AMX-BF16 tiles on this CPU (or not granted by the OS)";
  static const std::string check = detail::amx_self_check();
  return check;
}

}  // namespace sluice::cpu::kernels
