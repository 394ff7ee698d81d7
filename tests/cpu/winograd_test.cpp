// Winograd's transforms (winograd.hpp): the vector F(4x4) paths that take eight tiles a lane each
// against the generic chunks (bit for bit) and against B^T d B and A^T M A + bias in double.
#include "sluice/backends/cpu/winograd.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace kernels = sluice::cpu::kernels;

#ifdef SLUICE_CPU_GEMM_AVX2
// B^T of F(4x4, 3x3), as written out in winograd.hpp.
constexpr double kBt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                              {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};

TEST(WinogradInput, EightTilesALaneGiveTheGenericChunksBitsAndBtDB) {
  std::mt19937 rng(91);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  // 13 x 45: 4 tile rows (the last one past the bottom edge), 12 tile columns (the last past the
  // right edge; 45 is not a multiple of 4); groups at the left edge, inside, at the right edge, short.
  const std::int64_t h = 13, w = 45, tiles_h = 4, tiles_w = 12;
  std::vector<float> plane(static_cast<std::size_t>(h * w));
  for (float& v : plane) v = value(rng);
  constexpr std::int64_t stride = 24;  // floats between two points' operands (one panel row)
  for (std::int64_t ty = 0; ty < tiles_h; ++ty)
    for (std::int64_t tx0 = 0; tx0 < tiles_w; ++tx0)
      for (std::int64_t len = 1; len <= kernels::detail::kLaneTiles && tx0 + len <= tiles_w; ++len) {
        SCOPED_TRACE("tile row " + std::to_string(ty) + ", tiles " + std::to_string(tx0) + "+" + std::to_string(len));
        std::vector<float> group(36 * stride, -7.0f), chunk(36 * stride, -7.0f);
        kernels::detail::winograd4_input_group(plane.data(), h, w, ty, tx0, len, group.data(), stride);
        kernels::detail::winograd_input_chunk<4>(plane.data(), h, w, ty, tx0, len, 0,
                                                 [&](std::int64_t point, std::int64_t tile) {
                                                   return chunk.data() + point * stride + tile;
                                                 });
        ASSERT_EQ(group, chunk);  // including the lanes past len, left alone by both
        for (std::int64_t i = 0; i < len; ++i) {
          auto d = [&](std::int64_t k, std::int64_t l) {  // the patch, zero outside the plane
            const std::int64_t y = 4 * ty - 1 + k, x = 4 * (tx0 + i) - 1 + l;
            return y >= 0 && y < h && x >= 0 && x < w ? double(plane[static_cast<std::size_t>(y * w + x)]) : 0.0;
          };
          for (int r = 0; r < 6; ++r)
            for (int c = 0; c < 6; ++c) {
              double want = 0;
              for (int k = 0; k < 6; ++k)
                for (int l = 0; l < 6; ++l) want += kBt[r][k] * d(k, l) * kBt[c][l];
              // At most 36 terms of |B^T| |B| <= 25, each input below 1: float's rounding stays
              // within a few ulps of the largest partial sums.
              ASSERT_NEAR(group[static_cast<std::size_t>((r * 6 + c) * stride + i)], want, 1e-4)
                  << "tile " << i << " point " << r << "," << c;
            }
        }
      }
}

// A^T of F(4x4, 3x3), as written out in winograd.hpp.
constexpr double kAt[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

TEST(WinogradOutput, EightTilesALaneGiveTheGenericChunksBitsAndAtMAPlusBias) {
  std::mt19937 rng(92);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  const std::int64_t h = 13, w = 45, tiles_h = 4, tiles_w = 12;  // the last tile row and column overhang
  constexpr std::int64_t stride = 16;                            // floats between two points' products
  std::vector<float> products(36 * stride);
  for (float& v : products) v = value(rng);
  products[7 * stride + 5] = std::numeric_limits<float>::quiet_NaN();  // tile 5: NaN through relu too
  const float beta = 0.25f;
  for (const sluice::Activation act :
       {sluice::Activation::none, sluice::Activation::relu, sluice::Activation::sigmoid})
    for (std::int64_t ty = 0; ty < tiles_h; ++ty)
      for (std::int64_t tx0 = 0; tx0 < tiles_w; ++tx0)
        for (std::int64_t len = 1; len <= kernels::detail::kLaneTiles && tx0 + len <= tiles_w; ++len) {
          SCOPED_TRACE("activation " + std::to_string(int(act)) + ", tile row " + std::to_string(ty) + ", tiles " +
                       std::to_string(tx0) + "+" + std::to_string(len));
          std::vector<float> group(static_cast<std::size_t>(h * w), -7.0f), chunk = group;
          kernels::detail::winograd4_output_group({products.data(), stride, group.data(), h, w, ty, tx0, len},
                                                  beta, act);
          kernels::detail::winograd_output_chunk<4>({products.data(), stride, chunk.data(), h, w, ty, tx0, len},
                                                    beta, act);
          ASSERT_EQ(0, std::memcmp(group.data(), chunk.data(), group.size() * sizeof(float)));  // bits
          for (std::int64_t i = 0; i < len; ++i)
            for (int r = 0; r < 4; ++r)
              for (int c = 0; c < 4; ++c) {
                const std::int64_t y = 4 * ty + r, x = 4 * (tx0 + i) + c;
                if (y >= h || x >= w) continue;
                double want = beta;
                for (int k = 0; k < 6; ++k)
                  for (int l = 0; l < 6; ++l)
                    want += kAt[r][k] * double(products[static_cast<std::size_t>((k * 6 + l) * stride + i)]) * kAt[c][l];
                if (act == sluice::Activation::relu) want = std::max(want, 0.0);
                if (act == sluice::Activation::sigmoid) want = 1 / (1 + std::exp(-want));
                if (std::isnan(want)) {
                  ASSERT_TRUE(std::isnan(group[static_cast<std::size_t>(y * w + x)]));
                  continue;
                }
                ASSERT_NEAR(group[static_cast<std::size_t>(y * w + x)], want, 1e-4) << "tile " << i << " " << r << "," << c;
              }
          // Nothing outside the tiles' rows and columns is written.
          for (std::int64_t y = 0; y < h; ++y)
            for (std::int64_t x = 0; x < w; ++x)
              if (y / 4 != ty || x / 4 < tx0 || x / 4 >= tx0 + len) {
                ASSERT_EQ(group[static_cast<std::size_t>(y * w + x)], -7.0f) << y << "," << x;
              }
        }
}
#else
TEST(WinogradInput, EightTilesALaneGiveTheGenericChunksBitsAndBtDB) { GTEST_SKIP() << "built without AVX2"; }
TEST(WinogradOutput, EightTilesALaneGiveTheGenericChunksBitsAndAtMAPlusBias) { GTEST_SKIP() << "built without AVX2"; }
#endif

}  // namespace
