// tests/support/packed_gemm_product.hpp: a random product A * B for the tests of a packed GEMM kernel
// (gemm.hpp in fp32, gemm_bf16.hpp in bf16), computed through the kernel for any block of rows and
// window of columns, so that its results can be set against a double product or against each other.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "sluice/backends/cpu/gemm.hpp"
#include "support/cpu_reference.hpp"

namespace sluice::cpu::test {

/// `Kernel` names a GEMM's packed form of A: `Word` (its element), `packed_a_size(m, k)` (in words),
/// `pack_a(a, m, k, lda, out)` and `gemm(packed_a, m, m0, rows, packed_b, c, ldc)`.
template <class Kernel>
struct PackedGemmProduct {
  std::int64_t m, k, n;
  std::vector<float> a, b;  // row-major [m x k], [k x n]
  std::vector<typename Kernel::Word> packed_a;

  PackedGemmProduct(std::int64_t m_, std::int64_t k_, std::int64_t n_, std::mt19937& rng)
      : m(m_),
        k(k_),
        n(n_),
        a(random_values(static_cast<std::size_t>(m * k), rng)),
        b(random_values(static_cast<std::size_t>(k * n), rng)),
        packed_a(static_cast<std::size_t>(Kernel::packed_a_size(m, k))) {
    Kernel::pack_a(a.data(), m, k, k, packed_a.data());
  }

  /// Rows [m0, m0 + rows) and columns [c0, c1) of A * B through the kernel, B packed for those columns.
  std::vector<float> run(std::int64_t m0, std::int64_t rows, std::int64_t c0, std::int64_t c1) const {
    std::vector<float> scratch(static_cast<std::size_t>(kernels::PackedB::floats(k, c1 - c0)), -7.0f);
    const kernels::PackedB packed(scratch.data(), k, c1 - c0);
    for (std::int64_t r = 0; r < k; ++r) packed.set_row(r, b.data() + r * n + c0);
    std::vector<float> c(static_cast<std::size_t>(rows * (c1 - c0)), 99.0f);
    Kernel::gemm(packed_a.data(), m, m0, rows, packed, c.data(), c1 - c0);
    return c;
  }
};

/// For every shape m x k x n of the lists, in that order, a fresh product drawn from `rng` and all of
/// A * B through the kernel: check(p, c), traced with the shape. A fatal failure ends the walk there.
template <class Kernel, class Check>
void for_every_shape(std::span<const std::int64_t> ms, std::span<const std::int64_t> ks,
                     std::span<const std::int64_t> ns, std::mt19937& rng, Check check) {
  for (std::int64_t m : ms)
    for (std::int64_t k : ks)
      for (std::int64_t n : ns) {
        SCOPED_TRACE("m " + std::to_string(m) + " k " + std::to_string(k) + " n " + std::to_string(n));
        const PackedGemmProduct<Kernel> p(m, k, n, rng);
        check(p, p.run(0, m, 0, n));
        if (::testing::Test::HasFatalFailure()) return;
      }
}

}  // namespace sluice::cpu::test
