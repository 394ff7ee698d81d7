// sluice/backends/cpu/gemm_bf16.hpp: the conv GEMM of gemm.hpp with bfloat16 operands and float32
// sums (CpuOptions::precision = bf16), on AVX512_BF16's vdpbf16ps: each 32-bit lane of a product
// adds a0 * b0 + a1 * b1 for a pair of consecutive k, so both operands are stored as k-pairs.
//  - A (the weights) is packed once at load time into panels of kBf16Mr rows, per k block of
//    kGemmKc, one 32-bit word per (row, k-pair): bf16(a[i][2p]) low, bf16(a[i][2p + 1]) high;
//  - B stays float32 in gemm.hpp's layouts (packed panels or rows read in place), and each
//    kc x kGemmNr panel is rounded to bf16 k-pairs into a small buffer just before the A panels
//    run over it (the conversion is paid once per panel, not once per row of A);
//  - the micro-kernel holds a kBf16Mr x kGemmNr tile of C in 24 AVX-512VL registers.
// The k order is gemm.hpp's (blocks in turn, pairs in order inside a block): an element of C does
// not depend on the rows, columns or panel it is computed with, so bf16 results are batch- and
// thread-invariant too. The kernels are compiled with target attributes and run only where
// cpu_has_avx512_bf16() (precision.hpp) says so; elsewhere the backend never packs bf16 weights.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "sluice/backends/cpu/gemm.hpp"
#include "sluice/backends/cpu/precision.hpp"
#include "sluice/backends/cpu/tile_store.hpp"

#ifdef SLUICE_CPU_BF16_KERNELS
#include "sluice/backends/cpu/intrinsics.hpp"
#define SLUICE_CPU_BF16_TARGET __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define SLUICE_CPU_BF16_TARGET
#endif

namespace sluice::cpu::kernels {

inline constexpr std::int64_t kBf16Mr = 8;  // rows of A per bf16 panel; columns per panel: kGemmNr

/// bf16 of a float, rounded to nearest, ties to even (what vcvtneps2bf16 does to normal numbers).
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

/// The float a bf16 stands for.
inline float from_bf16(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// 32-bit words of A [m x k] once packed for the bf16 kernel.
inline std::int64_t packed_a_bf16_words(std::int64_t m, std::int64_t k) {
  std::int64_t pairs = 0;
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) pairs += (std::min(kGemmKc, k - k0) + 1) / 2;
  return round_up(m, kBf16Mr) * pairs;
}

/// Packs row-major A [m x k] (row stride lda) into `out` (packed_a_bf16_words(m, k) words), rounding
/// to bf16; padding rows and the odd k of a block's last pair are zero.
inline void pack_a_bf16(const float* a, std::int64_t m, std::int64_t k, std::int64_t lda, std::uint32_t* out) {
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0);
    for (std::int64_t i0 = 0; i0 < m; i0 += kBf16Mr)
      for (std::int64_t kk = 0; kk < kc; kk += 2)
        for (std::int64_t i = 0; i < kBf16Mr; ++i) {
          const bool row = i0 + i < m;
          const float lo = row ? a[(i0 + i) * lda + k0 + kk] : 0.0f;
          const float hi = row && kk + 1 < kc ? a[(i0 + i) * lda + k0 + kk + 1] : 0.0f;
          *out++ = static_cast<std::uint32_t>(to_bf16(lo)) | static_cast<std::uint32_t>(to_bf16(hi)) << 16;
        }
  }
}

namespace detail {

/// Rounds panel b (kc rows of kGemmNr floats) to bf16 k-pairs in scalar code: word (p, j), at
/// out[p * stride + j], holds rows 2p and 2p + 1 of column j. An odd kc's last pair is completed
/// with zero (never read past the panel's rows).
template <class Panel>
inline void pack_b_panel_bf16_scalar(std::int64_t kc, Panel b, std::uint32_t* out, std::int64_t stride) {
  for (std::int64_t kk = 0; kk < kc; kk += 2, out += stride)
    for (std::int64_t j = 0; j < kGemmNr; ++j)
      out[j] = static_cast<std::uint32_t>(to_bf16(b.row(kk)[j])) |
               static_cast<std::uint32_t>(kk + 1 < kc ? to_bf16(b.row(kk + 1)[j]) : 0) << 16;
}

/// The same with AVX512_BF16's conversion (the same bits for normal numbers).
template <class Panel>
SLUICE_CPU_BF16_TARGET inline void pack_b_panel_bf16(std::int64_t kc, Panel b, std::uint32_t* out,
                                                     std::int64_t stride = kGemmNr) {
#ifdef SLUICE_CPU_BF16_KERNELS
  static_assert(kGemmNr == 24, "the conversion is written out for three 8-column vectors");
  for (std::int64_t kk = 0; kk < kc; kk += 2, out += stride) {
    const float* r0 = b.row(kk);
    const float* r1 = kk + 1 < kc ? b.row(kk + 1) : nullptr;
    for (int v = 0; v < 3; ++v) {
      const __m256 x0 = _mm256_loadu_ps(r0 + 8 * v);
      const __m256 x1 = r1 != nullptr ? _mm256_loadu_ps(r1 + 8 * v) : _mm256_setzero_ps();
      // Interleave the two rows (columns 0,1,4,5 / 2,3,6,7 per 128-bit lane), put the columns back
      // in order, then round both halves to bf16 in one instruction.
      const __m256 lo = _mm256_unpacklo_ps(x0, x1), hi = _mm256_unpackhi_ps(x0, x1);
      const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
      const __m256bh pairs = _mm256_cvtne2ps_pbh(second, first);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * v), reinterpret_cast<const __m256i&>(pairs));
    }
  }
#else
  pack_b_panel_bf16_scalar(kc, b, out, stride);
#endif
}

#ifdef SLUICE_CPU_BF16_KERNELS
/// The bf16 micro-kernel on the first V vectors (8 V columns) of the panel (see gemm.hpp's
/// micro_kernel_vectors: the same products in the same order whatever V is).
template <int V>
SLUICE_CPU_BF16_TARGET inline void micro_kernel_bf16_vectors(std::int64_t pairs, const std::uint32_t* __restrict a,
                                                             const std::uint32_t* __restrict b, float* c,
                                                             std::int64_t ldc, bool accumulate, std::int64_t mr,
                                                             std::int64_t nr) {
  static_assert(kBf16Mr == 8 && kGemmNr == 24 && V >= 1 && V <= 3, "written out for 8 x 24 tiles");
  // Twenty-four named accumulators (as an array, GCC keeps them on the stack).
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00, c20 = c00, c21 = c00,
         c22 = c00, c30 = c00, c31 = c00, c32 = c00, c40 = c00, c41 = c00, c42 = c00, c50 = c00, c51 = c00,
         c52 = c00, c60 = c00, c61 = c00, c62 = c00, c70 = c00, c71 = c00, c72 = c00;
#define SLUICE_CPU_BF16_ROW(i)                                                            \
  {                                                                                       \
    const __m256i ai = _mm256_set1_epi32(static_cast<int>(a[i]));                         \
    const __m256bh av = reinterpret_cast<const __m256bh&>(ai);                            \
    c##i##0 = _mm256_dpbf16_ps(c##i##0, av, b0);                                          \
    if constexpr (V >= 2) c##i##1 = _mm256_dpbf16_ps(c##i##1, av, b1);                   \
    if constexpr (V >= 3) c##i##2 = _mm256_dpbf16_ps(c##i##2, av, b2);                   \
  }
  for (std::int64_t p = 0; p < pairs; ++p, a += kBf16Mr, b += kGemmNr) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i w1 = V >= 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 8)) : w0;
    const __m256i w2 = V >= 3 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16)) : w0;
    const __m256bh b0 = reinterpret_cast<const __m256bh&>(w0), b1 = reinterpret_cast<const __m256bh&>(w1),
                   b2 = reinterpret_cast<const __m256bh&>(w2);
    SLUICE_CPU_BF16_ROW(0)
    SLUICE_CPU_BF16_ROW(1)
    SLUICE_CPU_BF16_ROW(2)
    SLUICE_CPU_BF16_ROW(3)
    SLUICE_CPU_BF16_ROW(4)
    SLUICE_CPU_BF16_ROW(5)
    SLUICE_CPU_BF16_ROW(6)
    SLUICE_CPU_BF16_ROW(7)
  }
#undef SLUICE_CPU_BF16_ROW
  const __m256 acc[kBf16Mr][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32},
                                  {c40, c41, c42}, {c50, c51, c52}, {c60, c61, c62}, {c70, c71, c72}};
  store_tile<V>(acc, c, ldc, accumulate, mr, nr);
}
#endif

/// c[mr x nr] (row stride ldc) = (accumulate ? c : 0) + a_panel * b_panel over `pairs` k-pairs.
SLUICE_CPU_BF16_TARGET inline void micro_kernel_bf16(std::int64_t pairs, const std::uint32_t* __restrict a,
                                                     const std::uint32_t* __restrict b, float* c, std::int64_t ldc,
                                                     bool accumulate, std::int64_t mr, std::int64_t nr) {
#ifdef SLUICE_CPU_BF16_KERNELS
  if (nr > 16)
    micro_kernel_bf16_vectors<3>(pairs, a, b, c, ldc, accumulate, mr, nr);
  else if (nr > 8)
    micro_kernel_bf16_vectors<2>(pairs, a, b, c, ldc, accumulate, mr, nr);
  else
    micro_kernel_bf16_vectors<1>(pairs, a, b, c, ldc, accumulate, mr, nr);
#else
  // Builds without the kernels never pack bf16 weights; this keeps the code path compilable and exact.
  float tile[kBf16Mr * kGemmNr] = {};
  for (std::int64_t p = 0; p < pairs; ++p, a += kBf16Mr, b += kGemmNr)
    for (std::int64_t i = 0; i < kBf16Mr; ++i)
      for (std::int64_t j = 0; j < kGemmNr; ++j)
        tile[i * kGemmNr + j] += from_bf16(static_cast<std::uint16_t>(a[i])) * from_bf16(static_cast<std::uint16_t>(b[j])) +
                                 from_bf16(static_cast<std::uint16_t>(a[i] >> 16)) * from_bf16(static_cast<std::uint16_t>(b[j] >> 16));
  for (std::int64_t i = 0; i < mr; ++i)
    for (std::int64_t j = 0; j < nr; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * kGemmNr + j] : tile[i * kGemmNr + j];
#endif
}

/// The bf16 product over every k block and column panel; panel_at(k0, kc, j0) gives B's panel.
template <class PanelAt>
SLUICE_CPU_BF16_TARGET inline void gemm_bf16(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows,
                                             std::int64_t k, std::int64_t n, const PanelAt& panel_at, float* c,
                                             std::int64_t ldc) {
  alignas(64) std::uint32_t b_pairs[kGemmKc / 2 * kGemmNr];
  const std::int64_t m_padded = round_up(m, kBf16Mr);
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0), pairs = (kc + 1) / 2;
    const std::uint32_t* a_block = a + k0 / 2 * m_padded;  // every block before k0 is kGemmKc deep (even)
    for (std::int64_t j0 = 0; j0 < n; j0 += kGemmNr) {
      pack_b_panel_bf16(kc, panel_at(k0, kc, j0), b_pairs);
      for (std::int64_t i0 = 0; i0 < rows; i0 += kBf16Mr)
        micro_kernel_bf16(pairs, a_block + (m0 + i0) / kBf16Mr * pairs * kBf16Mr, b_pairs, c + i0 * ldc + j0, ldc,
                          k0 > 0, std::min(kBf16Mr, rows - i0), std::min(kGemmNr, n - j0));
    }
  }
}

/// Panels of a PackedB.
struct PackedPanels {
  const PackedB* b;
  PackedPanel operator()(std::int64_t k0, std::int64_t kc, std::int64_t j0) const {
    return {b->data() + k0 * b->panels() * kGemmNr + j0 / kGemmNr * kc * kGemmNr};
  }
};
/// Panels of a B read in place.
struct IndirectPanels {
  const float* b;
  const std::int64_t* offsets;
  IndirectPanel operator()(std::int64_t k0, std::int64_t, std::int64_t j0) const { return {b + j0, offsets + k0}; }
};

}  // namespace detail

/// gemm_packed (gemm.hpp) with `a` packed by pack_a_bf16; m0 is a multiple of kBf16Mr.
inline void gemm_packed_bf16(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows,
                             const PackedB& b, float* c, std::int64_t ldc) {
  detail::gemm_bf16(a, m, m0, rows, b.k(), b.n(), detail::PackedPanels{&b}, c, ldc);
}

/// gemm_indirect (gemm.hpp) with `a` packed by pack_a_bf16; m0 is a multiple of kBf16Mr.
inline void gemm_indirect_bf16(const std::uint32_t* a, std::int64_t m, std::int64_t m0, std::int64_t rows,
                               const float* b, const std::int64_t* offsets, std::int64_t k, std::int64_t n, float* c,
                               std::int64_t ldc) {
  detail::gemm_bf16(a, m, m0, rows, k, n, detail::IndirectPanels{b, offsets}, c, ldc);
}

}  // namespace sluice::cpu::kernels
