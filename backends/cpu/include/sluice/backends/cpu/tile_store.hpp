// sluice/backends/cpu/tile_store.hpp: the store that ends every conv GEMM micro-kernel (gemm.hpp's
// fp32 kernels, gemm_bf16.hpp's bf16 kernel): a tile of C held in __m256 accumulators, written or
// added to C. Compiled for AVX (a target attribute) wherever the bf16 kernels are, so a build
// without -mavx2 still has it for those kernels, which carry their own target attributes.
#pragma once

#include <cstdint>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include "sluice/backends/cpu/intrinsics.hpp"

namespace sluice::cpu::kernels::detail {

/// Stores (or adds) the first V vectors of the first mr rows of a micro-kernel's R-row tile of C to
/// c's first nr columns: whole vectors when the tile is full, else through a buffer.
template <int V, int R, int W>
__attribute__((always_inline, target("avx"))) inline void store_tile(const __m256 (&acc)[R][W], float* c,
                                                                   std::int64_t ldc, bool accumulate, std::int64_t mr,
                                                                   std::int64_t nr) {
  static_assert(V <= W);
  if (mr == R && nr == 8 * V) {
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v) {
        float* ci = c + i * ldc + 8 * v;
        _mm256_storeu_ps(ci, accumulate ? _mm256_add_ps(acc[i][v], _mm256_loadu_ps(ci)) : acc[i][v]);
      }
    return;
  }
  alignas(32) float tile[R * 8 * V];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) _mm256_store_ps(tile + (i * V + v) * 8, acc[i][v]);
  for (std::int64_t i = 0; i < mr; ++i)
    for (std::int64_t j = 0; j < nr; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i * 8 * V + j] : tile[i * 8 * V + j];
}

}  // namespace sluice::cpu::kernels::detail
#endif
