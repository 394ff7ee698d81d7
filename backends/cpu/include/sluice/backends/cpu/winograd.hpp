// sluice/backends/cpu/winograd.hpp: 3x3 stride-1 convolutions by Winograd's minimal filtering
// F(2x2, 3x3) (Lavin & Gray, 2016): each 2x2 block of outputs ("tile") comes from a 4x4 input patch
// d and each filter g as Y = A^T [(G g G^T) . (B^T d B)] A, 16 multiplies per input channel where
// direct convolution needs 36. Summed over input channels, the 16 element-wise products become 16
// GEMMs [out x in] x [in x tiles] on the own GEMM (gemm.hpp):
//  - weights: U = G g G^T, computed in double at load time, packed as 16 A matrices;
//  - input: zero-padded planes, then V = B^T d B per tile and channel, written into 16 packed B
//    operands for a block of tiles;
//  - output: M = U V per transform point, then Y = A^T M A, bias and activation, per tile.
// Tiles of all samples are numbered in one sequence and cut into blocks of a fixed size; a block may
// hold tiles of several samples (small planes get wide GEMMs in a batch). Every output is still a
// function of its own tile alone, summed over channels in the GEMM's fixed order: a sample's result
// is bitwise the same alone or in a batch, on any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sluice/backends/cpu/conv.hpp"
#include "sluice/backends/cpu/gemm.hpp"
#include "sluice/backends/cpu/gemm_bf16.hpp"
#include "sluice/backends/cpu/phase_times.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"

#ifndef SLUICE_CPU_WINOGRAD_MIN_CHANNELS
#define SLUICE_CPU_WINOGRAD_MIN_CHANNELS 16  // fewer input or output channels: im2col + GEMM
#endif
#ifndef SLUICE_CPU_WINOGRAD_BLOCK_FLOATS
#define SLUICE_CPU_WINOGRAD_BLOCK_FLOATS (1 << 17)  // a worker's transformed block: about half of L2
#endif

namespace sluice::cpu::kernels {

inline constexpr std::int64_t kWinogradPoints = 16;  // the 4 x 4 transform domain of F(2x2, 3x3)

/// Whether a conv runs as Winograd F(2x2, 3x3): 3x3, stride 1, dilation 1, padding 1, one group,
/// and enough channels both ways for 16 GEMMs to pay for the transforms.
inline bool winograd_suits(std::int64_t out, std::int64_t in, std::int64_t kh, std::int64_t kw, const ConvSpec& s) {
  return kh == 3 && kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 && s.dilation_w == 1 &&
         s.pad_h == 1 && s.pad_w == 1 && s.groups == 1 && in >= SLUICE_CPU_WINOGRAD_MIN_CHANNELS &&
         out >= SLUICE_CPU_WINOGRAD_MIN_CHANNELS;
}

/// Floats of the transformed, packed weights of an [out x in x 3 x 3] conv.
inline std::int64_t winograd_weight_floats(std::int64_t out, std::int64_t in) {
  return kWinogradPoints * packed_a_floats(out, in);
}

/// U = G g G^T for every (co, ci) of w (out, in, 3, 3), [point][co][ci] row-major.
inline std::vector<float> winograd_transform_weights(const float* w, std::int64_t out, std::int64_t in) {
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  std::vector<float> u(static_cast<std::size_t>(kWinogradPoints * out * in));  // [point][co][ci]
  for (std::int64_t co = 0; co < out; ++co) {
    for (std::int64_t ci = 0; ci < in; ++ci) {
      const float* g = w + (co * in + ci) * 9;
      double gg[4][3];  // G g
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          u[static_cast<std::size_t>(((i * 4 + j) * out + co) * in + ci)] =
              static_cast<float>(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
    }
  }
  return u;
}

/// The transformed weights as 16 packed A matrices [out x in], point-major.
inline std::vector<float> winograd_weights(const float* w, std::int64_t out, std::int64_t in) {
  const std::vector<float> u = winograd_transform_weights(w, out, in);
  std::vector<float> packed(static_cast<std::size_t>(winograd_weight_floats(out, in)));
  for (std::int64_t point = 0; point < kWinogradPoints; ++point)
    pack_a(u.data() + point * out * in, out, in, in, packed.data() + point * packed_a_floats(out, in));
  return packed;
}

/// The same for the bf16 kernel (gemm_bf16.hpp): 16 matrices packed by pack_a_bf16, point-major.
inline std::vector<std::uint32_t> winograd_weights_bf16(const float* w, std::int64_t out, std::int64_t in) {
  const std::vector<float> u = winograd_transform_weights(w, out, in);
  const std::int64_t words = packed_a_bf16_words(out, in);
  std::vector<std::uint32_t> packed(static_cast<std::size_t>(kWinogradPoints * words));
  for (std::int64_t point = 0; point < kWinogradPoints; ++point)
    pack_a_bf16(u.data() + point * out * in, out, in, in, packed.data() + point * words);
  return packed;
}

/// Sizes of one Winograd conv and its blocks; the output is h x w like the input.
struct WinogradGeometry {
  std::int64_t n, cin, cout, h, w;
  std::int64_t tiles_h, tiles_w, tiles;  // 2x2 output tiles per sample
  std::int64_t hp, wp;                   // padded planes: one zero row / column before, enough after
  std::int64_t block, blocks;            // tiles per GEMM block; blocks over the whole batch

  std::int64_t block_tiles(std::int64_t b) const { return std::min(block, n * tiles - b * block); }
  std::int64_t padded_floats() const { return n * cin * hp * wp; }
  /// A block's 16 packed B operands [cin x block] and 16 products [cout x block].
  std::int64_t transformed_floats() const {
    return kWinogradPoints * (PackedB::floats(cin, block) + cout * block);
  }
  /// One worker's floats: a block's operands and products, and one channel's transformed row.
  std::int64_t worker_floats() const { return transformed_floats() + kWinogradPoints * block; }
  std::int64_t scratch_floats(std::size_t threads) const {
    return padded_floats() + static_cast<std::int64_t>(threads) * worker_floats();
  }
  /// Whether workers take whole blocks, or share each block (too few blocks for the threads).
  bool task_per_block(std::size_t threads) const { return blocks >= 2 * static_cast<std::int64_t>(threads); }
};

/// The geometry of a Winograd conv from `cin` to `cout` channels on input shape x; the block size
/// depends on the channel counts only, never on the batch or the thread count.
inline WinogradGeometry winograd_geometry(const Shape& x, std::int64_t cout) {
  WinogradGeometry g{};
  g.n = x.n, g.cin = x.c, g.cout = cout, g.h = x.h, g.w = x.w;
  g.tiles_h = (x.h + 1) / 2, g.tiles_w = (x.w + 1) / 2, g.tiles = g.tiles_h * g.tiles_w;
  g.hp = 2 * g.tiles_h + 2, g.wp = 2 * g.tiles_w + 2;
  const std::int64_t fit = SLUICE_CPU_WINOGRAD_BLOCK_FLOATS / (kWinogradPoints * (g.cin + g.cout));
  g.block = std::clamp<std::int64_t>(fit / kGemmNr * kGemmNr, kGemmNr, 8 * kGemmNr);
  g.blocks = (g.n * g.tiles + g.block - 1) / g.block;
  return g;
}

namespace detail {

/// The parts of one block in a worker's scratch.
struct WinogradBlock {
  std::int64_t first, count;  // tiles [first, first + count) of the batch
  float* operands;            // 16 packed B [cin x count], PackedB::floats(cin, block) apart
  float* products;            // 16 [cout x count] row-major, cout * block apart
};

/// Calls fn(sample, tile_row, first_tile_column, tiles, j) for each run of the block's tiles that
/// lies in one tile row of one sample; j is the run's first column in the block.
template <class F>
inline void for_each_tile_run(const WinogradGeometry& g, const WinogradBlock& b, F&& fn) {
  for (std::int64_t j = 0; j < b.count;) {
    const std::int64_t tile = b.first + j, s = tile / g.tiles, t = tile % g.tiles;
    const std::int64_t tx = t % g.tiles_w, run = std::min(g.tiles_w - tx, b.count - j);
    fn(s, t / g.tiles_w, tx, run, j);
    j += run;
  }
}

/// V = B^T d B for channels [c0, c1) of every tile of the block, into the packed operands: per run
/// of tiles along a row, first d B along each of the 4 input rows (stride-2 columns), then B^T (.)
/// down the rows, contiguous over the run so that both vectorise.
inline void winograd_input(const float* padded, const WinogradGeometry& g, const WinogradBlock& b, std::int64_t c0,
                           std::int64_t c1, float* row) {
  constexpr std::int64_t kChunk = 64;
  const std::int64_t nb = b.count, operand_floats = PackedB::floats(g.cin, g.block);
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    for_each_tile_run(g, b, [&](std::int64_t s, std::int64_t ty, std::int64_t tx0, std::int64_t run, std::int64_t j0) {
      const float* plane = padded + (s * g.cin + ci) * g.hp * g.wp + ty * 2 * g.wp;
      for (std::int64_t done = 0; done < run; done += kChunk) {
        const std::int64_t len = std::min(kChunk, run - done);
        float h[4][4][kChunk];  // [input row][column of d B][tile]
        for (int r = 0; r < 4; ++r) {
          const float* x = plane + r * g.wp + 2 * (tx0 + done);
          for (std::int64_t i = 0; i < len; ++i) {
            const float x0 = x[2 * i], x1 = x[2 * i + 1], x2 = x[2 * i + 2], x3 = x[2 * i + 3];
            h[r][0][i] = x0 - x2;
            h[r][1][i] = x1 + x2;
            h[r][2][i] = x2 - x1;
            h[r][3][i] = x1 - x3;
          }
        }
        float* out = row + j0 + done;
        for (int c = 0; c < 4; ++c) {
          float* v0 = out + c * nb;
          float* v1 = out + (4 + c) * nb;
          float* v2 = out + (8 + c) * nb;
          float* v3 = out + (12 + c) * nb;
          for (std::int64_t i = 0; i < len; ++i) {
            v0[i] = h[0][c][i] - h[2][c][i];
            v1[i] = h[1][c][i] + h[2][c][i];
            v2[i] = h[2][c][i] - h[1][c][i];
            v3[i] = h[1][c][i] - h[3][c][i];
          }
        }
      }
    });
    for (std::int64_t point = 0; point < kWinogradPoints; ++point)
      PackedB(b.operands + point * operand_floats, g.cin, nb).set_row(ci, row + point * nb);
  }
}

/// M = U V for transform points [p0, p1).
inline void winograd_multiply(const ConvWeights& u, const WinogradGeometry& g, const WinogradBlock& b,
                              std::int64_t p0, std::int64_t p1) {
  const std::int64_t operand_floats = PackedB::floats(g.cin, g.block), a_floats = packed_a_floats(g.cout, g.cin),
                     a_words = packed_a_bf16_words(g.cout, g.cin);
  for (std::int64_t point = p0; point < p1; ++point) {
    const PackedB operand(b.operands + point * operand_floats, g.cin, b.count);
    float* product = b.products + point * g.cout * g.block;
    if (u.bf16)
      gemm_packed_bf16(u.bf16 + point * a_words, g.cout, 0, g.cout, operand, product, b.count);
    else
      gemm_packed(u.fp32 + point * a_floats, g.cout, 0, g.cout, operand, product, b.count);
  }
}

/// act(v) for each of v[0, n): the same scalar code for every element (vector exp would round
/// differently), so an output does not depend on where its tile fell.
inline void activate(float* v, std::int64_t n, Activation act) {
  switch (act) {
    case Activation::relu:
      for (std::int64_t i = 0; i < n; ++i) v[i] = std::max(v[i], 0.0f);
      break;
    case Activation::sigmoid:
      for (std::int64_t i = 0; i < n; ++i) v[i] = 1.0f / (1.0f + std::exp(-v[i]));
      break;
    case Activation::none:
      break;
  }
}

/// Y = A^T M A + bias, activated, for output channels [c0, c1) of every tile of the block: per run
/// of tiles along a row, the two output rows are formed contiguously, then interleaved into place.
inline void winograd_output(const WinogradGeometry& g, const WinogradBlock& b, const float* bias, Activation act,
                            std::int64_t c0, std::int64_t c1, float* y) {
  constexpr std::int64_t kChunk = 64;
  const std::int64_t point_floats = g.cout * g.block;
  for (std::int64_t co = c0; co < c1; ++co) {
    const float beta = bias ? bias[co] : 0.0f;
    for_each_tile_run(g, b, [&](std::int64_t s, std::int64_t ty, std::int64_t tx0, std::int64_t run, std::int64_t j0) {
      float* plane = y + (s * g.cout + co) * g.h * g.w;
      for (std::int64_t done = 0; done < run; done += kChunk) {
        const std::int64_t len = std::min(kChunk, run - done);
        const float* m = b.products + co * b.count + j0 + done;
        float am[2][4][kChunk];  // A^T M: [output row][column][tile]
        for (int c = 0; c < 4; ++c) {
          const float* m0 = m + c * point_floats;
          const float* m1 = m + (4 + c) * point_floats;
          const float* m2 = m + (8 + c) * point_floats;
          const float* m3 = m + (12 + c) * point_floats;
          for (std::int64_t i = 0; i < len; ++i) {
            am[0][c][i] = m0[i] + m1[i] + m2[i];
            am[1][c][i] = m1[i] - m2[i] - m3[i];
          }
        }
        const std::int64_t ox = 2 * (tx0 + done), width = std::min(2 * len, g.w - ox);
        for (int r = 0; r < 2 && 2 * ty + r < g.h; ++r) {  // (A^T M) A, interleaved into the output row
          float pairs[2 * kChunk];
          for (std::int64_t i = 0; i < len; ++i) {
            pairs[2 * i] = am[r][0][i] + am[r][1][i] + am[r][2][i] + beta;
            pairs[2 * i + 1] = am[r][1][i] - am[r][2][i] - am[r][3][i] + beta;
          }
          activate(pairs, width, act);
          copy_run(plane + (2 * ty + r) * g.w + ox, pairs, width);
        }
      }
    });
  }
}

}  // namespace detail

/// The conv of all samples of x by transformed weights `u` (winograd_weights or winograd_weights_bf16).
/// `scratch` holds g.scratch_floats(pool.size()) floats. `phases`, when not null, gets the workers'
/// time in the padding and input transforms (0), the GEMMs (1) and the output transforms (2).
inline void conv2d_winograd(const float* x, const ConvWeights& u, const float* bias, const WinogradGeometry& g,
                            Activation act, float* y, float* scratch, ThreadPool& pool,
                            PhaseTimes* phases = nullptr) {
  float* padded = scratch;
  PhaseTimes::time(
      phases, 0, [&] { pad_planes(x, g.n * g.cin, g.h, g.w, 1, 1, g.hp, g.wp, padded, pool); }, pool.size());
  float* work = padded + g.padded_floats();
  auto block_at = [&](std::int64_t index, float* own) {
    return detail::WinogradBlock{index * g.block, g.block_tiles(index), own,
                                 own + kWinogradPoints * PackedB::floats(g.cin, g.block)};
  };
  auto row_of = [&](std::size_t worker) {
    return work + static_cast<std::int64_t>(worker) * g.worker_floats() + g.transformed_floats();
  };
  if (g.task_per_block(pool.size())) {
    pool.parallel_for(static_cast<std::size_t>(g.blocks), [&](std::size_t task, std::size_t worker) {
      float* own = work + static_cast<std::int64_t>(worker) * g.worker_floats();
      const detail::WinogradBlock b = block_at(static_cast<std::int64_t>(task), own);
      PhaseTimes::time(phases, 0, [&] { detail::winograd_input(padded, g, b, 0, g.cin, row_of(worker)); });
      PhaseTimes::time(phases, 1, [&] { detail::winograd_multiply(u, g, b, 0, kWinogradPoints); });
      PhaseTimes::time(phases, 2, [&] { detail::winograd_output(g, b, bias, act, 0, g.cout, y); });
    });
    return;
  }
  // Few blocks: the workers share each one, phase by phase (channels, transform points, channels).
  const auto chunks = static_cast<std::int64_t>(pool.size()) * 4;
  auto split = [&](std::int64_t total, std::size_t phase, auto&& fn) {
    const std::int64_t per = (total + chunks - 1) / chunks;
    pool.parallel_for(static_cast<std::size_t>(chunks), [&](std::size_t chunk, std::size_t worker) {
      const std::int64_t lo = static_cast<std::int64_t>(chunk) * per, hi = std::min(total, lo + per);
      if (lo < hi) PhaseTimes::time(phases, phase, [&] { fn(lo, hi, worker); });
    });
  };
  for (std::int64_t index = 0; index < g.blocks; ++index) {
    const detail::WinogradBlock b = block_at(index, work);
    split(g.cin, 0, [&](std::int64_t lo, std::int64_t hi, std::size_t worker) {
      detail::winograd_input(padded, g, b, lo, hi, row_of(worker));
    });
    split(kWinogradPoints, 1, [&](std::int64_t lo, std::int64_t hi, std::size_t) {
      detail::winograd_multiply(u, g, b, lo, hi);
    });
    split(g.cout, 2, [&](std::int64_t lo, std::int64_t hi, std::size_t) {
      detail::winograd_output(g, b, bias, act, lo, hi, y);
    });
  }
}

}  // namespace sluice::cpu::kernels
