// sluice/backends/cpu/gemm.hpp: the CPU backend's FP32 matrix multiply for convolutions,
// C[m x n] = A[m x k] * B[k x n], on operands packed for a register-blocked micro-kernel.
//  - A (the weights) is packed once at load time: per block of kGemmKc rows of k, panels of kGemmMr
//    rows of A stored k-major, the last panel padded with zero rows;
//  - B (the im2col block, or an input plane of a 1x1 conv) is written into panels of kGemmNr
//    columns per kGemmKc block; or, for convs on padded planes, read in place through a table of
//    row offsets (gemm_indirect), so that nothing is copied;
//  - the micro-kernel keeps a kGemmMr x kGemmNr tile of C in 12 AVX registers and streams one A
//    panel from L2 against one B panel held in L1; a narrower last panel (9-16 or 1-8 columns)
//    takes 6 or 12 rows at a time instead, again 12 registers of C.
// Every element of C is summed over k in the same order (k blocks in turn, each one sequentially),
// whatever m, n, the panel an element falls in or the caller's split of n: a sample's result does
// not depend on the batch it runs in or on how the columns were tiled.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include "sluice/backends/cpu/intrinsics.hpp"
#define SLUICE_CPU_GEMM_AVX2 1
#endif
#include "sluice/backends/cpu/tile_store.hpp"

namespace sluice::cpu::kernels {

inline constexpr std::int64_t kGemmMr = 4;    // rows of A per panel
inline constexpr std::int64_t kGemmNr = 24;   // columns of B per panel (three 8-float vectors)
inline constexpr std::int64_t kGemmKc = 256;  // depth per block: an A panel and a B panel fit L1

inline std::int64_t round_up(std::int64_t v, std::int64_t to) { return (v + to - 1) / to * to; }

/// Floats of A [m x k] once packed.
inline std::int64_t packed_a_floats(std::int64_t m, std::int64_t k) { return round_up(m, kGemmMr) * k; }

/// Packs row-major A [m x k] (row stride lda) into `out` (packed_a_floats(m, k) floats).
inline void pack_a(const float* a, std::int64_t m, std::int64_t k, std::int64_t lda, float* out) {
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0);
    for (std::int64_t i0 = 0; i0 < m; i0 += kGemmMr)
      for (std::int64_t kk = 0; kk < kc; ++kk)
        for (std::int64_t i = 0; i < kGemmMr; ++i) *out++ = i0 + i < m ? a[(i0 + i) * lda + k0 + kk] : 0.0f;
  }
}

#ifdef SLUICE_CPU_GEMM_AVX2
namespace detail {
/// Lanes [0, count) of a vector, count in [0, 8].
inline __m256i first_lanes(std::int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
}  // namespace detail
#endif

/// dst[0, count) = src[0, count), inline and with a masked tail: the runs of the packed layouts and
/// of small planes are short, and a call to memcpy (or a scalar tail) per run cost more than the copy.
inline void copy_run(float* dst, const float* src, std::int64_t count) {
  std::int64_t i = 0;
#ifdef SLUICE_CPU_GEMM_AVX2
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i < count) {
    const __m256i lanes = detail::first_lanes(count - i);
    _mm256_maskstore_ps(dst + i, lanes, _mm256_maskload_ps(src + i, lanes));
  }
#else
  for (; i < count; ++i) dst[i] = src[i];
#endif
}

/// dst[0, count) = 0, the same way.
inline void zero_run(float* dst, std::int64_t count) {
  std::int64_t i = 0;
#ifdef SLUICE_CPU_GEMM_AVX2
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
  if (i < count) _mm256_maskstore_ps(dst + i, detail::first_lanes(count - i), _mm256_setzero_ps());
#else
  for (; i < count; ++i) dst[i] = 0.0f;
#endif
}

/// Where the rows of a packed B [k x n] go: per k block, ceil(n / kGemmNr) panels of kc x kGemmNr.
class PackedB {
 public:
  PackedB(float* data, std::int64_t k, std::int64_t n)
      : data_(data), k_(k), n_(n), panels_((n + kGemmNr - 1) / kGemmNr) {}

  static std::int64_t floats(std::int64_t k, std::int64_t n) { return k * round_up(n, kGemmNr); }

  /// Row r = values[0, n); the padding columns of the last panel become zero.
  void set_row(std::int64_t r, const float* values) const {
    for (std::int64_t p = 0; p < panels_; ++p)
      copy_run(row_panel(r, p), values + p * kGemmNr, std::min(kGemmNr, n_ - p * kGemmNr));
    zero_padding(r);
  }

  /// Where row r's kGemmNr columns of panel p lie (columns from p kGemmNr), contiguous.
  float* row_panel(std::int64_t r, std::int64_t p) const { return row_base(r) + p * block_depth(r) * kGemmNr; }

  /// Zeroes row r's padding columns in the last panel (set_row does it; a row written column by
  /// column through row_panel needs it once).
  void zero_padding(std::int64_t r) const {
    if (n_ % kGemmNr == 0) return;
    zero_run(row_panel(r, panels_ - 1) + n_ % kGemmNr, kGemmNr - n_ % kGemmNr);
  }

  const float* data() const { return data_; }
  std::int64_t k() const { return k_; }
  std::int64_t n() const { return n_; }
  std::int64_t panels() const { return panels_; }

 private:
  std::int64_t block_depth(std::int64_t r) const { return std::min(kGemmKc, k_ - r / kGemmKc * kGemmKc); }
  float* row_base(std::int64_t r) const {
    return data_ + r / kGemmKc * kGemmKc * panels_ * kGemmNr + r % kGemmKc * kGemmNr;
  }

  float* data_;
  std::int64_t k_, n_, panels_;
};

namespace detail {

/// A panel of packed B: row kk of the panel is kGemmNr contiguous floats.
struct PackedPanel {
  const float* b;
  const float* row(std::int64_t kk) const { return b + kk * kGemmNr; }
};
/// A panel of B read in place: row kk starts at base + offsets[kk] (an indirect GEMM).
struct IndirectPanel {
  const float* base;
  const std::int64_t* offsets;
  const float* row(std::int64_t kk) const { return base + offsets[kk]; }
};

#ifdef SLUICE_CPU_GEMM_AVX2
/// One row of the micro-kernel's tile: c0..c(V-1) += a * (b0 .. b(V-1)).
template <int V>
__attribute__((always_inline)) inline void fma_row(float a, __m256 b0, __m256 b1, __m256 b2, __m256& c0, __m256& c1,
                                                   __m256& c2) {
  const __m256 av = _mm256_set1_ps(a);
  c0 = _mm256_fmadd_ps(av, b0, c0);
  if constexpr (V >= 2) c1 = _mm256_fmadd_ps(av, b1, c1);
  if constexpr (V >= 3) c2 = _mm256_fmadd_ps(av, b2, c2);
}
#endif

#ifdef SLUICE_CPU_GEMM_AVX2
/// The micro-kernel on the first V vectors (8 V columns) of the panel: a panel's last columns are
/// often fewer than kGemmNr (16 Winograd tiles of a small plane, a GEMM's tail), and computing the
/// padding would waste a third or more of the FMAs. Every element of C gets the same FMAs in the
/// same order whatever V is: the result does not depend on the variant that computed it.
template <int V, class Panel>
inline void micro_kernel_vectors(std::int64_t kc, const float* __restrict a, Panel b, float* c, std::int64_t ldc,
                                 bool accumulate, std::int64_t mr, std::int64_t nr) {
  static_assert(kGemmMr == 4 && kGemmNr == 24 && V >= 1 && V <= 3, "written out for 4 x 24 tiles");
  // Twelve named accumulators: as an array, GCC stores them to the stack on every step.
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (std::int64_t kk = 0; kk < kc; ++kk, a += kGemmMr) {
    const float* bk = b.row(kk);
    __m256 b0 = _mm256_loadu_ps(bk), b1 = b0, b2 = b0;
    // Keep the B vectors in registers: folded into the FMAs, each would be loaded four times.
    if constexpr (V == 3) {
      b1 = _mm256_loadu_ps(bk + 8), b2 = _mm256_loadu_ps(bk + 16);
      asm("" : "+x"(b0), "+x"(b1), "+x"(b2));
    } else if constexpr (V == 2) {
      b1 = _mm256_loadu_ps(bk + 8);
      asm("" : "+x"(b0), "+x"(b1));
    } else {
      asm("" : "+x"(b0));
    }
    fma_row<V>(a[0], b0, b1, b2, c00, c01, c02);
    fma_row<V>(a[1], b0, b1, b2, c10, c11, c12);
    fma_row<V>(a[2], b0, b1, b2, c20, c21, c22);
    fma_row<V>(a[3], b0, b1, b2, c30, c31, c32);
  }
  const __m256 acc[kGemmMr][3] = {{c00, c01, c02}, {c10, c11, c12}, {c20, c21, c22}, {c30, c31, c32}};
  store_tile<V>(acc, c, ldc, accumulate, mr, nr);
}
#endif

/// c[mr x nr] (row stride ldc) = (accumulate ? c : 0) + a_panel * b_panel over kc.
template <class Panel>
inline void micro_kernel(std::int64_t kc, const float* __restrict a, Panel b, float* c, std::int64_t ldc,
                         bool accumulate, std::int64_t mr, std::int64_t nr) {
#ifdef SLUICE_CPU_GEMM_AVX2
  if (nr > 16)
    micro_kernel_vectors<3>(kc, a, b, c, ldc, accumulate, mr, nr);
  else if (nr > 8)
    micro_kernel_vectors<2>(kc, a, b, c, ldc, accumulate, mr, nr);
  else
    micro_kernel_vectors<1>(kc, a, b, c, ldc, accumulate, mr, nr);
#else
  float tile[kGemmMr * kGemmNr] = {};
  for (std::int64_t kk = 0; kk < kc; ++kk, a += kGemmMr)
    for (std::int64_t i = 0; i < kGemmMr; ++i)
      for (std::int64_t j = 0; j < kGemmNr; ++j) tile[i * kGemmNr + j] += a[i] * b.row(kk)[j];
  for (std::int64_t i = 0; i < mr; ++i)
    for (std::int64_t j = 0; j < nr; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * kGemmNr + j] : tile[i * kGemmNr + j];
#endif
}

#ifdef SLUICE_CPU_GEMM_AVX2
// How far ahead the tall kernel prefetches its A panels: 8 KiB, two to three panels of a depth
// block (1 KiB hid too little of the memory latency; 16 KiB was no better).
inline constexpr std::int64_t kPrefetchFloats = 2048;

/// The micro-kernel for panels of 9-16 columns, on six rows: with four rows it holds only eight
/// accumulators, fewer than the FMA units' latency needs in flight (two units of 4-5 cycles), and
/// runs at about 80% of the full panels' rate; six rows hold twelve. The rows are two A panels'
/// (`T` from `top`, 6 - T from `bottom`, both kGemmMr floats per step). Each element gets the same
/// FMAs in the same order as in micro_kernel: the same bits. A lone narrow panel is a small plane's
/// (16 Winograd tiles at batch 1), whose large weights then stream from memory once: the two A
/// streams are prefetched (without it they ran 5-10% below the four-row kernel's one stream, which
/// the hardware prefetcher follows better; with it, 5-15% above; warm, the prefetches cost nothing).
template <int T, class Panel>
inline void micro_kernel_6x16(std::int64_t kc, const float* __restrict top, const float* __restrict bottom, Panel b,
                              float* c, std::int64_t ldc, bool accumulate, std::int64_t nr) {
  static_assert(T == 2 || T == 4, "a six-row tile spans a whole panel and half of another");
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  auto row = [&](int i) { return i < T ? top[i] : bottom[i - T]; };
  __m256 unused = c00;  // fma_row<2> leaves its third accumulator alone
  for (std::int64_t kk = 0; kk < kc; ++kk, top += kGemmMr, bottom += kGemmMr) {
    const float* bk = b.row(kk);
    __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
    asm("" : "+x"(b0), "+x"(b1));
    if (kk % 4 == 0) {  // a cache line of each panel per four steps
      _mm_prefetch(reinterpret_cast<const char*>(top + kPrefetchFloats), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(bottom + kPrefetchFloats), _MM_HINT_T0);
    }
    fma_row<2>(row(0), b0, b1, b1, c00, c01, unused);
    fma_row<2>(row(1), b0, b1, b1, c10, c11, unused);
    fma_row<2>(row(2), b0, b1, b1, c20, c21, unused);
    fma_row<2>(row(3), b0, b1, b1, c30, c31, unused);
    fma_row<2>(row(4), b0, b1, b1, c40, c41, unused);
    fma_row<2>(row(5), b0, b1, b1, c50, c51, unused);
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile<2>(acc, c, ldc, accumulate, 6, nr);
}

/// The micro-kernel for panels of 1-8 columns, on twelve rows (three A panels) for the same reason:
/// four rows hold four accumulators.
template <class Panel>
inline void micro_kernel_12x8(std::int64_t kc, const float* __restrict a0, const float* __restrict a1,
                              const float* __restrict a2, Panel b, float* c, std::int64_t ldc, bool accumulate,
                              std::int64_t nr) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  __m256 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (std::int64_t kk = 0; kk < kc; ++kk, a0 += kGemmMr, a1 += kGemmMr, a2 += kGemmMr) {
    __m256 b0 = _mm256_loadu_ps(b.row(kk));
    asm("" : "+x"(b0));
    // One A panel's four rows against the vector, as fma_row<1> does for one row.
    auto panel = [&](const float* a, __m256& x0, __m256& x1, __m256& x2, __m256& x3) {
      x0 = _mm256_fmadd_ps(_mm256_set1_ps(a[0]), b0, x0);
      x1 = _mm256_fmadd_ps(_mm256_set1_ps(a[1]), b0, x1);
      x2 = _mm256_fmadd_ps(_mm256_set1_ps(a[2]), b0, x2);
      x3 = _mm256_fmadd_ps(_mm256_set1_ps(a[3]), b0, x3);
    };
    panel(a0, c0, c1, c2, c3);
    panel(a1, c4, c5, c6, c7);
    panel(a2, c8, c9, c10, c11);
  }
  const __m256 acc[12][1] = {{c0}, {c1}, {c2}, {c3}, {c4}, {c5}, {c6}, {c7}, {c8}, {c9}, {c10}, {c11}};
  store_tile<1>(acc, c, ldc, accumulate, 12, nr);
}
#endif

/// C rows [0, rows) of one k block against one B panel of nr columns: `a` is the block's A panel of
/// row 0, c row 0's first column. Narrow panels take twelve rows at
/// a time on the tall micro-kernels, the rest (and everything wider) four at a time.
template <class Panel>
inline void panel_rows(std::int64_t kc, const float* a, Panel b, float* c, std::int64_t ldc, bool accumulate,
                       std::int64_t rows, std::int64_t nr) {
  const std::int64_t panel = kc * kGemmMr;  // floats of one A panel in this block
  std::int64_t i0 = 0;
#ifdef SLUICE_CPU_GEMM_AVX2
  if (nr <= 16)
    for (; i0 + 3 * kGemmMr <= rows; i0 += 3 * kGemmMr) {
      const float* p = a + i0 / kGemmMr * panel;
      if (nr > 8) {
        micro_kernel_6x16<4>(kc, p, p + panel, b, c + i0 * ldc, ldc, accumulate, nr);
        micro_kernel_6x16<2>(kc, p + panel + 2, p + 2 * panel, b, c + (i0 + 6) * ldc, ldc, accumulate, nr);
      } else {
        micro_kernel_12x8(kc, p, p + panel, p + 2 * panel, b, c + i0 * ldc, ldc, accumulate, nr);
      }
    }
#endif
  for (; i0 < rows; i0 += kGemmMr)
    micro_kernel(kc, a + i0 / kGemmMr * panel, b, c + i0 * ldc, ldc, accumulate, std::min(kGemmMr, rows - i0), nr);
}

}  // namespace detail

/// C rows [m0, m0 + rows) = A rows [m0, m0 + rows) * B, where `a` is A [m x k] packed by pack_a and
/// m0 is a multiple of kGemmMr; c points at C's row m0 (row stride ldc).
inline void gemm_packed(const float* a, std::int64_t m, std::int64_t m0, std::int64_t rows, const PackedB& b,
                        float* c, std::int64_t ldc) {
  const std::int64_t k = b.k(), n = b.n(), a_panels = (m + kGemmMr - 1) / kGemmMr;
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0);
    const float* a_block = a + k0 * a_panels * kGemmMr;
    const float* b_block = b.data() + k0 * b.panels() * kGemmNr;
    for (std::int64_t j0 = 0; j0 < n; j0 += kGemmNr) {
      const float* b_panel = b_block + j0 / kGemmNr * kc * kGemmNr;
      detail::panel_rows(kc, a_block + m0 / kGemmMr * kc * kGemmMr, detail::PackedPanel{b_panel}, c + j0, ldc,
                         k0 > 0, rows, std::min(kGemmNr, n - j0));
    }
  }
}

/// The same product with B [k x n] read in place: B(r, j) = b[offsets[r] + j]. Rows are read a whole
/// panel wide, so up to kGemmNr - 1 floats past column n - 1 of a row must be readable (their
/// products are not stored). The summation order is gemm_packed's: the results are the same bits.
inline void gemm_indirect(const float* a, std::int64_t m, std::int64_t m0, std::int64_t rows, const float* b,
                          const std::int64_t* offsets, std::int64_t k, std::int64_t n, float* c,
                          std::int64_t ldc) {
  const std::int64_t a_panels = (m + kGemmMr - 1) / kGemmMr;
  for (std::int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
    const std::int64_t kc = std::min(kGemmKc, k - k0);
    const float* a_block = a + k0 * a_panels * kGemmMr;
    for (std::int64_t j0 = 0; j0 < n; j0 += kGemmNr)
      detail::panel_rows(kc, a_block + m0 / kGemmMr * kc * kGemmMr, detail::IndirectPanel{b + j0, offsets + k0},
                         c + j0, ldc, k0 > 0, rows, std::min(kGemmNr, n - j0));
  }
}

}  // namespace sluice::cpu::kernels
