// The conv GEMM (gemm.hpp) against a naive double-precision product, and the property the batch
// invariance of the networks rests on: an element of C is the same bits whichever rows, columns or
// panel offsets it is computed with.
#include "sluice/backends/cpu/gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "support/cpu_reference.hpp"
#include "support/packed_gemm_product.hpp"

namespace {

namespace kernels = sluice::cpu::kernels;
namespace ref = sluice::cpu::test;

/// gemm.hpp's fp32 packing and GEMM, for the shared product.
struct Fp32Gemm {
  using Word = float;
  static constexpr auto packed_a_size = kernels::packed_a_floats;
  static constexpr auto pack_a = kernels::pack_a;
  static constexpr auto gemm = kernels::gemm_packed;
};
using Product = ref::PackedGemmProduct<Fp32Gemm>;

TEST(ConvGemm, MatchesDoubleProductWithinTheFloatSummationBound) {
  std::mt19937 rng(77);
  // Shapes around the panel sizes (4 rows, 24 columns), the depth block (256) and the tall
  // micro-kernels of narrow panels (12 rows of 1-8 or 9-16 columns).
  const std::int64_t ms[] = {1, 3, 4, 5, 12, 13, 30, 64}, ks[] = {1, 7, 255, 256, 257, 600},
                     ns[] = {1, 8, 16, 23, 24, 25, 97};
  ref::for_every_shape<Fp32Gemm>(ms, ks, ns, rng, [](const Product& p, const std::vector<float>& c) {
    const std::int64_t m = p.m, k = p.k, n = p.n;
    // Any float summation order of k products is within gamma_k * sum |a b| of the exact sum
    // (Higham, Accuracy and Stability, 3.1), with gamma_k = k u / (1 - k u), u = 2^-24.
    const double u = std::ldexp(1.0, -24), gamma = (k + 1) * u / (1 - (k + 1) * u);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double want = 0, magnitude = 0;
        for (std::int64_t q = 0; q < k; ++q) {
          const double t = double(p.a[i * k + q]) * double(p.b[q * n + j]);
          want += t;
          magnitude += std::abs(t);
        }
        ASSERT_LE(std::abs(double(c[i * n + j]) - want), gamma * magnitude) << "at " << i << "," << j;
      }
  });
}

TEST(ConvGemm, AnElementIsTheSameBitsWhateverRowsAndColumnsAreComputedWithIt) {
  std::mt19937 rng(78);
  const Product p(22, 530, 150, rng);
  const std::vector<float> full = p.run(0, p.m, 0, p.n);
  // Row blocks start on panel boundaries (multiples of 4); column windows start anywhere, so the
  // same column lands in a different panel and position, as a sample does in a batch; their last
  // panels hold 1-8, 9-16 and 17-24 columns (the micro-kernel's three widths), and windows of 12
  // rows or more put the narrow ones on the tall micro-kernels (six rows of 16, twelve of 8).
  struct Window {
    std::int64_t m0, rows, c0, c1;
  };
  for (const Window& w : {Window{0, 8, 0, 150}, Window{8, 14, 0, 150}, Window{4, 4, 5, 29},
                          Window{0, 22, 31, 150}, Window{20, 2, 149, 150}, Window{12, 10, 1, 2},
                          Window{0, 22, 3, 19}, Window{4, 8, 40, 53}, Window{16, 6, 100, 140},
                          Window{4, 16, 31, 38}, Window{8, 14, 134, 150}, Window{0, 12, 60, 69},
                          Window{4, 12, 0, 16}}) {
    SCOPED_TRACE("rows " + std::to_string(w.m0) + "+" + std::to_string(w.rows) + " columns [" +
                 std::to_string(w.c0) + ", " + std::to_string(w.c1) + ")");
    const std::vector<float> part = p.run(w.m0, w.rows, w.c0, w.c1);
    const std::int64_t width = w.c1 - w.c0;
    for (std::int64_t i = 0; i < w.rows; ++i)
      for (std::int64_t j = 0; j < width; ++j)
        ASSERT_EQ(part[i * width + j], full[(w.m0 + i) * p.n + w.c0 + j]) << "at " << i << "," << j;
  }
}

TEST(ConvGemm, ReadingBInPlaceThroughRowOffsetsGivesThePackedResultBitForBit) {
  std::mt19937 rng(79);
  const Product p(30, 300, 61, rng);
  // B's rows scattered over a larger buffer, in another order, as a conv's rows are in its padded
  // input planes; the last row is followed by just the panel's width that gemm_indirect may read.
  const std::int64_t stride = 70;
  std::vector<float> storage(static_cast<std::size_t>(p.k * stride + sluice::cpu::kernels::kGemmNr), 5.0f);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(p.k));
  for (std::int64_t r = 0; r < p.k; ++r) {
    offsets[r] = ((r * 37) % p.k) * stride + 3;
    std::copy_n(p.b.data() + r * p.n, p.n, storage.data() + offsets[r]);
  }
  // Rows 4-24: twelve on the tall micro-kernel for the last panel's 13 columns, then four at a time.
  const std::vector<float> packed = p.run(4, 21, 0, p.n);
  std::vector<float> in_place(static_cast<std::size_t>(21 * p.n), 99.0f);
  kernels::gemm_indirect(p.packed_a.data(), p.m, 4, 21, storage.data(), offsets.data(), p.k, p.n,
                         in_place.data(), p.n);
  EXPECT_EQ(in_place, packed);
}

TEST(ConvGemm, PackedRowsPadTheLastPanelWithZeros) {
  std::vector<float> storage(static_cast<std::size_t>(kernels::PackedB::floats(3, 30)), -1.0f);
  const kernels::PackedB packed(storage.data(), 3, 30);
  ASSERT_EQ(packed.panels(), 2);
  std::vector<float> row(30);
  for (std::int64_t r = 0; r < 3; ++r) {
    for (std::size_t j = 0; j < row.size(); ++j) row[j] = float(r * 100 + static_cast<std::int64_t>(j));
    packed.set_row(r, row.data());
  }
  // Panel p holds k rows of 24 columns: element (r, j) sits at p * 3 * 24 + r * 24 + j % 24.
  for (std::int64_t r = 0; r < 3; ++r)
    for (std::int64_t j = 0; j < 48; ++j)
      EXPECT_EQ(storage[static_cast<std::size_t>(j / 24 * 72 + r * 24 + j % 24)],
                j < 30 ? float(r * 100 + j) : 0.0f)
          << r << "," << j;
}

}  // namespace
