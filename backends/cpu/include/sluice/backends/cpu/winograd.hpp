// sluice/backends/cpu/winograd.hpp: 3x3 stride-1 convolutions by Winograd's minimal filtering
// F(m x m, 3x3) (Lavin & Gray, 2016), m = 2 or 4: each m x m block of outputs ("tile") comes from an
// (m + 2) x (m + 2) input patch d and each filter g as Y = A^T [(G g G^T) . (B^T d B)] A, (m + 2)^2
// multiplies per input channel where direct convolution needs 9 m^2 (F(2x2): 16 for 36; F(4x4): 36
// for 144). Summed over input channels, the element-wise products become (m + 2)^2 GEMMs
// [out x in] x [in x tiles] on the own GEMM (gemm.hpp):
//  - weights: U = G g G^T, computed in double at load time, packed as (m + 2)^2 A matrices;
//  - input: V = B^T d B per tile and channel, read from the planes in place (zeros past their
//    edges), written into the packed B operands for a block of tiles;
//  - output: M = U V per transform point, then Y = A^T M A, bias and activation, per tile.
// F(4x4) does 44% fewer multiplies than F(2x2) but holds 2.25x the transformed weights and has a
// quarter of the tiles, which leaves the GEMMs too narrow on small planes: a layer runs as F(4x4)
// on planes of enough tiles (winograd_tile), where its width keeps the weights moderate
// (winograd4_suits), always in fp32 (with bf16 precision only on narrow layers). Its transforms use
// power-of-two multipliers only, so that a contracted multiply-add rounds like a multiply and an add.
// The tile depends on the plane, never on the batch. Tiles of all samples are numbered in one
// sequence and cut into blocks of a fixed size; a block may hold tiles of several samples (small
// planes get wide GEMMs in a batch). Every output is still a function of its own tile alone, summed
// over channels in the GEMM's fixed order: a sample's result is bitwise the same alone or in a
// batch, on any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sluice/backends/cpu/conv.hpp"
#include "sluice/backends/cpu/gemm.hpp"
#include "sluice/backends/cpu/gemm_amx.hpp"
#include "sluice/backends/cpu/gemm_bf16.hpp"
#include "sluice/backends/cpu/phase_times.hpp"
#include "sluice/backends/cpu/precision.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"

#ifndef SLUICE_CPU_WINOGRAD_MIN_CHANNELS
#define SLUICE_CPU_WINOGRAD_MIN_CHANNELS 16  // fewer input or output channels: im2col + GEMM
#endif
#ifndef SLUICE_CPU_WINOGRAD_BLOCK_FLOATS
#define SLUICE_CPU_WINOGRAD_BLOCK_FLOATS (1 << 17)  // a worker's transformed block: about half of L2
#endif
#ifndef SLUICE_CPU_WINOGRAD4_MAX_WEIGHTS
// in x out of the widest layer that may run as F(4x4, 3x3): its 36 matrices take 16 bytes per weight.
#define SLUICE_CPU_WINOGRAD4_MAX_WEIGHTS (512 * 512)
#endif
#ifndef SLUICE_CPU_WINOGRAD4_BF16_MAX_WEIGHTS
// With bf16 precision: in x out of the widest layer that runs F(4x4) in fp32 rather than F(2x2) on
// the bf16 kernel (bench_cpu_ops BM_Winograd: 48x48 at 64x64 and 96x96 at 32x32 take 7-8% less
// time as fp32 F(4x4), 192x192 at 16x16 and wider 15-40% more; and fp32 is the more accurate).
#define SLUICE_CPU_WINOGRAD4_BF16_MAX_WEIGHTS (128 * 128)
#endif
#ifndef SLUICE_CPU_WINOGRAD4_MIN_TILES
// 4x4 tiles per sample from which F(4x4) is at least as fast as F(2x2) (bench_cpu_ops BM_Winograd:
// 16x16 planes break even, 8x8 planes take 2.5x as long).
#define SLUICE_CPU_WINOGRAD4_MIN_TILES 16
#endif

// The transform loops write through row pointers that never overlap what they read; the compiler
// cannot prove it and otherwise leaves the loops scalar.
#if defined(__clang__)
#define SLUICE_CPU_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define SLUICE_CPU_IVDEP _Pragma("GCC ivdep")
#else
#define SLUICE_CPU_IVDEP
#endif

namespace sluice::cpu::kernels {

/// Whether a conv runs as Winograd: 3x3, stride 1, dilation 1, padding 1, one group, and enough
/// channels both ways for the transform points' GEMMs to pay for the transforms.
inline bool winograd_suits(std::int64_t out, std::int64_t in, std::int64_t kh, std::int64_t kw, const ConvSpec& s) {
  return kh == 3 && kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 && s.dilation_w == 1 &&
         s.pad_h == 1 && s.pad_w == 1 && s.groups == 1 && in >= SLUICE_CPU_WINOGRAD_MIN_CHANNELS &&
         out >= SLUICE_CPU_WINOGRAD_MIN_CHANNELS;
}

/// Whether a conv that suits Winograd may also run as F(4x4, 3x3), always in fp32 (bf16's 8-bit
/// significands cannot absorb its larger transform coefficients: about 5x F(2x2)'s error): up to
/// SLUICE_CPU_WINOGRAD4_MAX_WEIGHTS in fp32; with bf16 precision only the narrow layers, up to
/// SLUICE_CPU_WINOGRAD4_BF16_MAX_WEIGHTS, where fp32 F(4x4) is faster than bf16 F(2x2) (its
/// transforms touch 2.25 instead of 4 values per output, and there the transforms dominate).
inline bool winograd4_suits(std::int64_t out, std::int64_t in, Precision precision) {
  return in * out <= (precision == Precision::fp32 ? SLUICE_CPU_WINOGRAD4_MAX_WEIGHTS
                                                   : SLUICE_CPU_WINOGRAD4_BF16_MAX_WEIGHTS);
}

/// The output tile side m of the F(m x m, 3x3) a conv runs as on h x w planes: 4 when it may and
/// the plane has SLUICE_CPU_WINOGRAD4_MIN_TILES tiles of 4 x 4, else 2.
inline std::int64_t winograd_tile(std::int64_t h, std::int64_t w, bool winograd4) {
  return winograd4 && ((h + 3) / 4) * ((w + 3) / 4) >= SLUICE_CPU_WINOGRAD4_MIN_TILES ? 4 : 2;
}

/// Transform points of F(m x m, 3x3): the (m + 2) x (m + 2) patch.
inline constexpr std::int64_t winograd_points(std::int64_t tile) { return (tile + 2) * (tile + 2); }

/// Floats of the transformed, packed weights of an [out x in x 3 x 3] conv.
inline std::int64_t winograd_weight_floats(std::int64_t out, std::int64_t in, std::int64_t tile) {
  return winograd_points(tile) * packed_a_floats(out, in);
}

namespace detail {

/// The 1-D transforms of F(m, 3): input(x, y) sets y(j, (B^T x)_j) for j < m + 2 from x(k), k < m + 2;
/// output(x, y) sets y(j, (A^T x)_j) for j < m; G is the filter transform.
template <int M>
struct WinogradTransform;

template <>
struct WinogradTransform<2> {
  static constexpr int kPatch = 4;
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  template <class X, class Y>
  static void input(X x, Y y) {
    const float x0 = x(0), x1 = x(1), x2 = x(2), x3 = x(3);
    y(0, x0 - x2), y(1, x1 + x2), y(2, x2 - x1), y(3, x1 - x3);
  }
  template <class X, class Y>
  static void output(X x, Y y) {
    const float x0 = x(0), x1 = x(1), x2 = x(2), x3 = x(3);
    y(0, x0 + x1 + x2), y(1, x1 - x2 - x3);
  }
};

template <>
struct WinogradTransform<4> {
  static constexpr int kPatch = 6;
  static constexpr double G[6][3] = {{0.25, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  // B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
  // with 5 a = 4 a + a. On floats or on vectors of them (winograd4_input_group).
  template <class X, class Y>
  static void input(X x, Y y) {
    const auto x0 = x(0), x1 = x(1), x2 = x(2), x3 = x(3), x4 = x(4), x5 = x(5);
    const auto d42 = x4 - x2, d31 = x3 - x1;
    y(0, 4.0f * (x0 - x2) + d42);
    y(1, (x3 + x4) - 4.0f * (x1 + x2));
    y(2, (x4 - x3) + 4.0f * (x1 - x2));
    y(3, d42 + 2.0f * d31);
    y(4, d42 - 2.0f * d31);
    y(5, (x5 - x3) - 4.0f * d31);
  }
  // A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
  template <class X, class Y>
  static void output(X x, Y y) {  // on floats or on vectors of them (winograd4_output_group)
    const auto x0 = x(0), x5 = x(5);
    const auto s12 = x(1) + x(2), d12 = x(1) - x(2), s34 = x(3) + x(4), d34 = x(3) - x(4);
    y(0, x0 + s12 + s34);
    y(1, d12 + 2.0f * d34);
    y(2, s12 + 4.0f * s34);
    y(3, d12 + 8.0f * d34 + x5);
  }
};

/// U = G g G^T for every (co, ci) of w (out, in, 3, 3), [point][co][ci] row-major.
template <int M>
inline std::vector<float> winograd_transform_weights(const float* w, std::int64_t out, std::int64_t in) {
  constexpr int P = WinogradTransform<M>::kPatch;
  const auto& G = WinogradTransform<M>::G;
  std::vector<float> u(static_cast<std::size_t>(P * P * out * in));
  for (std::int64_t co = 0; co < out; ++co) {
    for (std::int64_t ci = 0; ci < in; ++ci) {
      const float* g = w + (co * in + ci) * 9;
      double gg[P][3];  // G g
      for (int i = 0; i < P; ++i)
        for (int j = 0; j < 3; ++j) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < P; ++i)
        for (int j = 0; j < P; ++j)
          u[static_cast<std::size_t>(((i * P + j) * out + co) * in + ci)] =
              static_cast<float>(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
    }
  }
  return u;
}

inline std::vector<float> transform_weights(const float* w, std::int64_t out, std::int64_t in, std::int64_t tile) {
  return tile == 4 ? winograd_transform_weights<4>(w, out, in) : winograd_transform_weights<2>(w, out, in);
}

}  // namespace detail

/// The transformed weights of F(tile x tile, 3x3) as packed A matrices [out x in], point-major.
inline std::vector<float> winograd_weights(const float* w, std::int64_t out, std::int64_t in, std::int64_t tile) {
  const std::vector<float> u = detail::transform_weights(w, out, in, tile);
  std::vector<float> packed(static_cast<std::size_t>(winograd_weight_floats(out, in, tile)));
  for (std::int64_t point = 0; point < winograd_points(tile); ++point)
    pack_a(u.data() + point * out * in, out, in, in, packed.data() + point * packed_a_floats(out, in));
  return packed;
}

/// The same for the bf16 kernels, point-major: packed by pack_a_bf16 (gemm_bf16.hpp) or, for AMX
/// tiles, by pack_a_amx (gemm_amx.hpp).
inline std::vector<std::uint32_t> winograd_weights_bf16(const float* w, std::int64_t out, std::int64_t in,
                                                        std::int64_t tile, bool amx) {
  const std::vector<float> u = detail::transform_weights(w, out, in, tile);
  const std::int64_t words = bf16_kernel_words(out, in, amx);
  std::vector<std::uint32_t> packed(static_cast<std::size_t>(winograd_points(tile) * words));
  for (std::int64_t point = 0; point < winograd_points(tile); ++point)
    pack_a_bf16_kernel(u.data() + point * out * in, out, in, in, packed.data() + point * words, amx);
  return packed;
}

/// A conv's F(4x4, 3x3) weights (its weight_winograd4), transformed from its 3x3 weights on the first
/// call.
inline const float* winograd4_weights(const ConvParams& p) {
  return p.weight_winograd4->get([&] { return winograd_weights(p.weight_3x3->values.data(), p.out, p.in, 4); }).data();
}

/// Sizes of one Winograd conv and its blocks; the output is h x w like the input.
struct WinogradGeometry {
  std::int64_t n, cin, cout, h, w;
  std::int64_t tile, points;             // output tile side m; (m + 2)^2 transform points
  std::int64_t tiles_h, tiles_w, tiles;  // m x m output tiles per sample
  std::int64_t block, blocks;            // tiles per GEMM block; blocks over the whole batch

  std::int64_t block_tiles(std::int64_t b) const { return std::min(block, n * tiles - b * block); }
  /// One worker's floats: a block's packed B operands [cin x block] and products [cout x block], one
  /// of each per point.
  std::int64_t worker_floats() const { return points * (PackedB::floats(cin, block) + cout * block); }
  /// Whether workers take whole blocks, or share the phases of all blocks (too few for the threads).
  bool task_per_block(std::size_t threads) const { return blocks >= 2 * static_cast<std::int64_t>(threads); }
  /// Scratch floats: one block per worker, or all the blocks when they share them.
  std::int64_t scratch_floats(std::size_t threads) const {
    return (task_per_block(threads) ? static_cast<std::int64_t>(threads) : blocks) * worker_floats();
  }
};

/// The geometry of an F(tile x tile, 3x3) conv from `cin` to `cout` channels on input shape x; the
/// block size depends on the channel counts only, never on the batch or the thread count.
inline WinogradGeometry winograd_geometry(const Shape& x, std::int64_t cout, std::int64_t tile) {
  WinogradGeometry g{};
  g.n = x.n, g.cin = x.c, g.cout = cout, g.h = x.h, g.w = x.w;
  g.tile = tile, g.points = winograd_points(tile);
  g.tiles_h = (x.h + tile - 1) / tile, g.tiles_w = (x.w + tile - 1) / tile, g.tiles = g.tiles_h * g.tiles_w;
  const std::int64_t fit = SLUICE_CPU_WINOGRAD_BLOCK_FLOATS / (g.points * (g.cin + g.cout));
  g.block = std::clamp<std::int64_t>(fit / kGemmNr * kGemmNr, kGemmNr, 8 * kGemmNr);
  g.blocks = (g.n * g.tiles + g.block - 1) / g.block;
  return g;
}

namespace detail {

/// The parts of one block in a worker's scratch.
struct WinogradBlock {
  std::int64_t first, count;  // tiles [first, first + count) of the batch
  float* operands;            // packed B [cin x count] per point, PackedB::floats(cin, block) apart
  float* products;            // [cout x count] row-major per point, cout * block apart
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

inline constexpr std::int64_t kTransformChunk = 64;  // tiles transformed together, contiguous in stack arrays

/// V = B^T d B for the tiles [0, len) of a chunk of one tile row (tile row ty, first tile column
/// tx0) of one channel's plane, into the packed operands: the chunk's tile i is the block's tile
/// j + i, and its point (r, c) goes to operand(r P + c, j + i), which is contiguous up to the next
/// multiple of kGemmNr (the packed B panels).
///  1. B^T (.) down the P input rows of the patches, along the chunk's whole column span at once:
///     contiguous rows in, contiguous rows out. Rows above or below the plane read as zero, and the
///     columns past its left and right edges are zeroed after (the conv's padding and the last
///     tiles' overhang), so that nothing else looks at an edge.
///  2. (.) B along each of those P rows: column k of tile i is t[M i + k]. Each row is split into
///     its M phases first, so that the transform reads whole vectors (phase[k % M][i + k / M])
///     rather than stride-M lanes.
template <int M, class Operand>
inline void winograd_input_chunk(const float* plane, std::int64_t h, std::int64_t w, std::int64_t ty,
                                 std::int64_t tx0, std::int64_t len, std::int64_t j, const Operand& operand) {
  using T = WinogradTransform<M>;
  constexpr int P = T::kPatch;
  constexpr std::int64_t kSpan = M * kTransformChunk + (P - M);
  static_assert(P - M <= M, "a patch spans the columns of at most two tiles");
  static constexpr float kZeros[kSpan] = {};
  const std::int64_t x0 = M * tx0 - 1, span = M * len + (P - M);  // patch columns [x0, x0 + span)
  const std::int64_t lo = std::max<std::int64_t>(0, -x0), hi = std::min(span, w - x0);  // inside: [lo, hi)
  float t[P][kSpan];  // B^T d: [row of the transform][column - x0]
  {
    const float* in[P];
    for (int k = 0; k < P; ++k) {
      const std::int64_t y = M * ty - 1 + k;
      in[k] = y >= 0 && y < h ? plane + y * w + x0 + lo : kZeros;
    }
    float* out[P];
    for (int r = 0; r < P; ++r) out[r] = t[r] + lo;
    SLUICE_CPU_IVDEP
    for (std::int64_t x = 0; x < hi - lo; ++x)
      T::input([&](int k) { return in[k][x]; }, [&](int r, float value) { out[r][x] = value; });
    for (int r = 0; r < P; ++r) {
      std::fill(t[r], t[r] + lo, 0.0f);
      std::fill(t[r] + hi, t[r] + span, 0.0f);
    }
  }
  for (int r = 0; r < P; ++r) {
    float phase[M][kTransformChunk + 1];
    for (std::int64_t i = 0; i < len; ++i)
      for (int q = 0; q < M; ++q) phase[q][i] = t[r][M * i + q];
    for (int q = 0; q < P - M; ++q) phase[q][len] = t[r][M * len + q];  // the last tile's overlap
    for (std::int64_t i0 = 0, i1; i0 < len; i0 = i1) {  // i0 .. i1: the tiles in one panel
      i1 = std::min(len, i0 + kGemmNr - (j + i0) % kGemmNr);
      float* out[P];
      for (int c = 0; c < P; ++c) out[c] = operand(r * P + c, j + i0);
      SLUICE_CPU_IVDEP
      for (std::int64_t i = i0; i < i1; ++i)
        T::input([&](int k) { return phase[k % M][i + k / M]; }, [&](int c, float value) { out[c][i - i0] = value; });
    }
  }
}

#ifdef SLUICE_CPU_GEMM_AVX2
inline constexpr std::int64_t kLaneTiles = 8;  // F(4x4) tiles transformed together, one per vector lane
// A block reads its tiles' patch rows channel after channel: short row pieces a plane apart, which
// the hardware prefetchers do not follow. The input transform prefetches them this many planes ahead
// (ResUNetSmall at 256: 30% less time in it with 1 or 2, 4 is late).
inline constexpr std::int64_t kInputPrefetchPlanes = 1;

/// winograd_input_chunk<4> for up to kLaneTiles tiles [tx0, tx0 + len) of tile row ty, with the
/// tiles in the lanes of vectors from the start: point p of tile i goes to dest[p * point_floats + i]
/// (the tiles must not cross a packed panel). The generic chunk spends most of its time on the
/// short runs of a block (8-24 tiles) rather than on arithmetic; here the eight patches are loaded
/// as 128-bit quarters so that one in-lane 4 x 4 transpose per transform row yields the tile
/// phases in order (the generic chunk splits them element by element). Every value gets the same
/// operations as in the generic chunk: the same bits.
///  1. B^T (.) down the six patch rows, on slots s = 0..3 (columns 4s..4s+3 of the group, those of
///     tile s, in the low half; of tile s + 4 in the high) and on columns 32-33 (the last tile's
///     overlap). Rows outside the plane are zeros, and so are columns outside it (masked loads).
///  2. (.) B along each transform row: its phases k = 0..3 by the transpose, 4 and 5 as phases 0 and
///     1 moved one tile down with the overlap columns in the last lane.
inline void winograd4_input_group(const float* plane, std::int64_t h, std::int64_t w, std::int64_t ty,
                                  std::int64_t tx0, std::int64_t len, float* dest, std::int64_t point_floats,
                                  std::int64_t prefetch_floats = 0) {
  using T = WinogradTransform<4>;
  constexpr std::int64_t kColumns = 4 * kLaneTiles + 2;  // the patch columns of a whole group
  const std::int64_t x0 = 4 * tx0 - 1;  // the group's first column in the plane
  // At the plane's left and right edges the loads are masked to its columns (the others read as
  // zeros, the conv's padding); a short group's lanes past `len` read whatever the row holds there
  // and are not stored.
  const bool masked = x0 < 0 || x0 + kColumns > w;
  auto columns_mask = [&](std::int64_t c) {  // lanes of columns [c, c + 4) inside the plane
    const __m128i x = _mm_add_epi32(_mm_set1_epi32(static_cast<int>(x0 + c)), _mm_setr_epi32(0, 1, 2, 3));
    return _mm_andnot_si128(_mm_cmpgt_epi32(_mm_setzero_si128(), x),
                            _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(w)), x));
  };
  __m128i masks[9];  // columns 4q..4q+3 for q < 8; 32-33 (and never 34-35)
  if (masked) {
    for (int q = 0; q < 8; ++q) masks[q] = columns_mask(4 * q);
    masks[8] = _mm_and_si128(columns_mask(32), _mm_setr_epi32(-1, -1, 0, 0));
  }
  auto load = [&](const float* row, int q) {  // columns 4q..4q+3 of a patch row (q = 8: 32-33, zeros)
    if (masked) return _mm_maskload_ps(row + 4 * q, masks[q]);
    return q < 8 ? _mm_loadu_ps(row + 4 * q)
                 : _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 32)));  // unaligned
  };
  // Where each patch row's column x0 is (one before the row at the left edge, a lane the mask
  // never reads); null above or below the plane (zeros).
  const float* rows[6];
  for (int k = 0; k < 6; ++k) {
    const std::int64_t y = 4 * ty - 1 + k;
    rows[k] = y >= 0 && y < h ? plane + y * w + x0 : nullptr;
  }
  auto load_row = [&](int k, int q) { return rows[k] ? load(rows[k], q) : _mm_setzero_ps(); };
  if (prefetch_floats != 0)  // the same patch rows prefetch_floats on: lines at most 48 bytes apart
    for (int k = 0; k < 6; ++k)
      if (rows[k])
        for (const std::int64_t c : {0, 12, 24, 33})
          _mm_prefetch(reinterpret_cast<const char*>(rows[k] + prefetch_floats + c), _MM_HINT_T0);
  __m256 t[6][4];  // B^T d on the slots: [transform row][slot]
  __m128 overlap[6];
  for (int s = 0; s < 4; ++s) {
    __m256 in[6];
    for (int k = 0; k < 6; ++k)
      in[k] = _mm256_insertf128_ps(_mm256_castps128_ps256(load_row(k, s)), load_row(k, 4 + s), 1);
    T::input([&](int k) { return in[k]; }, [&](int r, __m256 v) { t[r][s] = v; });
  }
  {
    __m128 in[6];
    for (int k = 0; k < 6; ++k) in[k] = load_row(k, 8);
    T::input([&](int k) { return in[k]; }, [&](int r, __m128 v) { overlap[r] = v; });
  }
  const __m256i next_tile = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
  const __m256i lanes = detail::first_lanes(len);
  for (int r = 0; r < 6; ++r) {
    const __m256 a = _mm256_unpacklo_ps(t[r][0], t[r][1]), b = _mm256_unpackhi_ps(t[r][0], t[r][1]);
    const __m256 c = _mm256_unpacklo_ps(t[r][2], t[r][3]), d = _mm256_unpackhi_ps(t[r][2], t[r][3]);
    __m256 phase[6];
    phase[0] = _mm256_shuffle_ps(a, c, 0x44);
    phase[1] = _mm256_shuffle_ps(a, c, 0xee);
    phase[2] = _mm256_shuffle_ps(b, d, 0x44);
    phase[3] = _mm256_shuffle_ps(b, d, 0xee);
    phase[4] = _mm256_blend_ps(_mm256_permutevar8x32_ps(phase[0], next_tile), _mm256_broadcastss_ps(overlap[r]),
                               0x80);
    phase[5] = _mm256_blend_ps(_mm256_permutevar8x32_ps(phase[1], next_tile),
                               _mm256_broadcastss_ps(_mm_movehdup_ps(overlap[r])), 0x80);
    float* out = dest + r * 6 * point_floats;
    T::input([&](int k) { return phase[k]; }, [&](int c, __m256 v) {
      if (len == kLaneTiles)
        _mm256_storeu_ps(out + c * point_floats, v);
      else
        _mm256_maskstore_ps(out + c * point_floats, lanes, v);
    });
  }
}
#endif

/// V = B^T d B for channels [c0, c1) of every tile of the block, into the packed operands, chunk by
/// chunk of each run of tiles along a row (winograd_input_chunk, reading the plane in place).
template <int M>
inline void winograd_input(const float* x, const WinogradGeometry& g, const WinogradBlock& b, std::int64_t c0,
                           std::int64_t c1) {
  const std::int64_t nb = b.count, operand_floats = PackedB::floats(g.cin, g.block);
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    auto operand = [&](std::int64_t point, std::int64_t tile) {
      return PackedB(b.operands + point * operand_floats, g.cin, nb).row_panel(ci, tile / kGemmNr) + tile % kGemmNr;
    };
    for_each_tile_run(g, b, [&](std::int64_t s, std::int64_t ty, std::int64_t tx0, std::int64_t run, std::int64_t j0) {
      const float* plane = x + (s * g.cin + ci) * g.h * g.w;
#ifdef SLUICE_CPU_GEMM_AVX2
      if constexpr (M == 4) {
        for (std::int64_t done = 0, len; done < run; done += len) {  // groups that stay inside a panel
          const std::int64_t j = j0 + done;
          len = std::min({kLaneTiles, run - done, kGemmNr - j % kGemmNr});
          winograd4_input_group(plane, g.h, g.w, ty, tx0 + done, len, operand(0, j), operand_floats,
                                kInputPrefetchPlanes * g.h * g.w);
        }
        return;
      }
#endif
      for (std::int64_t done = 0; done < run; done += kTransformChunk)
        winograd_input_chunk<M>(plane, g.h, g.w, ty, tx0 + done, std::min(kTransformChunk, run - done), j0 + done,
                                operand);
    });
    for (std::int64_t point = 0; point < g.points; ++point)
      PackedB(b.operands + point * operand_floats, g.cin, nb).zero_padding(ci);
  }
}

inline void winograd_input(const float* x, const WinogradGeometry& g, const WinogradBlock& b, std::int64_t c0,
                           std::int64_t c1) {
  if (g.tile == 4)
    winograd_input<4>(x, g, b, c0, c1);
  else
    winograd_input<2>(x, g, b, c0, c1);
}

/// M = U V for transform points [p0, p1).
inline void winograd_multiply(const ConvWeights& u, const WinogradGeometry& g, const WinogradBlock& b,
                              std::int64_t p0, std::int64_t p1) {
  const std::int64_t operand_floats = PackedB::floats(g.cin, g.block);
  for (std::int64_t point = p0; point < p1; ++point) {
    const PackedB operand(b.operands + point * operand_floats, g.cin, b.count);
    u.at(point, g.cout, g.cin).gemm_packed(g.cout, 0, g.cout, operand, b.products + point * g.cout * g.block, b.count);
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

/// Where one output channel's chunk or group of tiles goes: tiles [tx0, tx0 + len) of tile row ty
/// of an h x w plane, whose products (points point_floats apart, tiles contiguous) start at m.
struct WinogradOutputRun {
  const float* m;
  std::int64_t point_floats;
  float* plane;
  std::int64_t h, w, ty, tx0, len;
};

/// Y = A^T M A + beta, activated, for up to kTransformChunk tiles of one channel: the m output rows
/// are formed contiguously, then interleaved into place.
template <int M>
inline void winograd_output_chunk(const WinogradOutputRun& o, float beta, Activation act) {
  using T = WinogradTransform<M>;
  constexpr int P = T::kPatch;
  constexpr std::int64_t kChunk = kTransformChunk;
  const std::int64_t len = o.len;
  float am[M][P][kChunk];  // A^T M: [output row][column][tile]
  for (int c = 0; c < P; ++c) {
    const float* src[P];  // the products of the points (k, c)
    for (int k = 0; k < P; ++k) src[k] = o.m + (k * P + c) * o.point_floats;
    SLUICE_CPU_IVDEP
    for (std::int64_t i = 0; i < len; ++i)
      T::output([&](int k) { return src[k][i]; }, [&](int r, float v) { am[r][c][i] = v; });
  }
  const std::int64_t ox = M * o.tx0, width = std::min(M * len, o.w - ox);
  for (int r = 0; r < M && M * o.ty + r < o.h; ++r) {  // (A^T M) A, interleaved into the output row
    float columns[M][kChunk], line[M * kChunk];  // the m columns of each tile, then interleaved
    for (std::int64_t i = 0; i < len; ++i)
      T::output([&](int k) { return am[r][k][i]; }, [&](int j, float v) { columns[j][i] = v + beta; });
    for (std::int64_t i = 0; i < len; ++i)
      for (int j = 0; j < M; ++j) line[M * i + j] = columns[j][i];
    activate(line, width, act);
    copy_run(o.plane + (M * o.ty + r) * o.w + ox, line, width);
  }
}

#ifdef SLUICE_CPU_GEMM_AVX2
/// winograd_output_chunk<4> for up to kLaneTiles tiles, a tile per vector lane: A^T M A on 36
/// vectors of products, then one in-lane 4 x 4 transpose per output row puts each tile's four
/// columns together, and 128-bit halves swapped across give the row in order. Every value gets the
/// same operations as in the generic chunk (relu as max(0, v), which keeps std::max's -0 and NaN;
/// sigmoid by the same scalar code): the same bits. The output rows of the next plane (the next
/// channel, written next) are prefetched for writing, for the reason of kInputPrefetchPlanes.
inline void winograd4_output_group(const WinogradOutputRun& o, float beta, Activation act) {
  using T = WinogradTransform<4>;
  const __m256i tiles = first_lanes(o.len);
  __m256 am[4][6];  // A^T M: [output row][column]
  for (int c = 0; c < 6; ++c) {
    __m256 src[6];
    for (int k = 0; k < 6; ++k) {
      const float* p = o.m + (k * 6 + c) * o.point_floats;
      src[k] = o.len == kLaneTiles ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tiles);
    }
    T::output([&](int k) { return src[k]; }, [&](int r, __m256 v) { am[r][c] = v; });
  }
  const std::int64_t ox = 4 * o.tx0, width = std::min(4 * o.len, o.w - ox);
  for (int r = 0; r < 4 && 4 * o.ty + r < o.h; ++r)  // 32 floats: lines at most 64 bytes apart
    for (const std::int64_t c : {0, 16, 31})
      __builtin_prefetch(o.plane + o.h * o.w + (4 * o.ty + r) * o.w + ox + c, 1);
  const __m256 bias = _mm256_set1_ps(beta), zero = _mm256_setzero_ps();
  for (int r = 0; r < 4 && 4 * o.ty + r < o.h; ++r) {
    __m256 col[4];  // column j of every tile
    T::output([&](int k) { return am[r][k]; }, [&](int j, __m256 v) { col[j] = v + bias; });
    const __m256 a = _mm256_unpacklo_ps(col[0], col[1]), b = _mm256_unpackhi_ps(col[0], col[1]);
    const __m256 c = _mm256_unpacklo_ps(col[2], col[3]), d = _mm256_unpackhi_ps(col[2], col[3]);
    const __m256 u0 = _mm256_shuffle_ps(a, c, 0x44), u1 = _mm256_shuffle_ps(a, c, 0xee);  // tiles 0|4, 1|5
    const __m256 u2 = _mm256_shuffle_ps(b, d, 0x44), u3 = _mm256_shuffle_ps(b, d, 0xee);  // tiles 2|6, 3|7
    __m256 line[4] = {_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u2, u3, 0x20),
                      _mm256_permute2f128_ps(u0, u1, 0x31), _mm256_permute2f128_ps(u2, u3, 0x31)};
    float* out = o.plane + (4 * o.ty + r) * o.w + ox;
    if (act == Activation::sigmoid) {
      alignas(32) float values[4 * kLaneTiles];
      for (int v = 0; v < 4; ++v) _mm256_store_ps(values + 8 * v, line[v]);
      activate(values, width, act);
      copy_run(out, values, width);
      continue;
    }
    for (int v = 0; v < 4; ++v) {
      if (act == Activation::relu) line[v] = _mm256_max_ps(zero, line[v]);
      const std::int64_t left = width - 8 * v;
      if (left >= 8)
        _mm256_storeu_ps(out + 8 * v, line[v]);
      else if (left > 0)
        _mm256_maskstore_ps(out + 8 * v, first_lanes(left), line[v]);
    }
  }
}
#endif

/// Y = A^T M A + bias, activated, for output channels [c0, c1) of every tile of the block, per run
/// of tiles along a row: F(4x4) on vectors of tiles where the CPU has AVX2, else in chunks.
template <int M>
inline void winograd_output(const WinogradGeometry& g, const WinogradBlock& b, const float* bias, Activation act,
                            std::int64_t c0, std::int64_t c1, float* y) {
  const std::int64_t point_floats = g.cout * g.block;
  for (std::int64_t co = c0; co < c1; ++co) {
    const float beta = bias ? bias[co] : 0.0f;
    for_each_tile_run(g, b, [&](std::int64_t s, std::int64_t ty, std::int64_t tx0, std::int64_t run, std::int64_t j0) {
      float* plane = y + (s * g.cout + co) * g.h * g.w;
      const float* m = b.products + co * b.count + j0;
#ifdef SLUICE_CPU_GEMM_AVX2
      if constexpr (M == 4) {
        for (std::int64_t done = 0; done < run; done += kLaneTiles)
          winograd4_output_group({m + done, point_floats, plane, g.h, g.w, ty, tx0 + done,
                                  std::min(kLaneTiles, run - done)},
                                 beta, act);
        return;
      }
#endif
      for (std::int64_t done = 0; done < run; done += kTransformChunk)
        winograd_output_chunk<M>({m + done, point_floats, plane, g.h, g.w, ty, tx0 + done,
                                  std::min(kTransformChunk, run - done)},
                                 beta, act);
    });
  }
}

inline void winograd_output(const WinogradGeometry& g, const WinogradBlock& b, const float* bias, Activation act,
                            std::int64_t c0, std::int64_t c1, float* y) {
  if (g.tile == 4)
    winograd_output<4>(g, b, bias, act, c0, c1, y);
  else
    winograd_output<2>(g, b, bias, act, c0, c1, y);
}

}  // namespace detail

/// The conv of all samples of x by transformed weights `u` (winograd_weights or winograd_weights_bf16).
/// `scratch` holds g.scratch_floats(pool.size()) floats. `phases`, when not null, gets the workers'
/// time in the input transforms (0), the GEMMs (1) and the output transforms (2).
inline void conv2d_winograd(const float* x, const ConvWeights& u, const float* bias, const WinogradGeometry& g,
                            Activation act, float* y, float* scratch, ThreadPool& pool,
                            PhaseTimes* phases = nullptr) {
  float* work = scratch;
  auto block_at = [&](std::int64_t index, float* own) {
    return detail::WinogradBlock{index * g.block, g.block_tiles(index), own,
                                 own + g.points * PackedB::floats(g.cin, g.block)};
  };
  if (g.task_per_block(pool.size())) {
    pool.parallel_for(static_cast<std::size_t>(g.blocks), [&](std::size_t task, std::size_t worker) {
      float* own = work + static_cast<std::int64_t>(worker) * g.worker_floats();
      const detail::WinogradBlock b = block_at(static_cast<std::int64_t>(task), own);
      PhaseTimes::time(phases, 0, [&] { detail::winograd_input(x, g, b, 0, g.cin); });
      PhaseTimes::time(phases, 1, [&] { detail::winograd_multiply(u, g, b, 0, g.points); });
      PhaseTimes::time(phases, 2, [&] { detail::winograd_output(g, b, bias, act, 0, g.cout, y); });
    });
    return;
  }
  // Few blocks: all of them at once, phase by phase, the workers sharing each phase: the input and
  // output transforms by ranges of (block, channel), the GEMMs by transform point, each point's
  // weights then read once for every block (on small planes the weights are most of the traffic).
  const auto chunks = static_cast<std::int64_t>(pool.size()) * 4;
  // Chunks differ by at most one unit, so that each thread's share is as even as the total allows
  // (chunks of ceil(total / chunks) left the last one short: 36 points went 20 to 16 on two threads).
  auto split = [&](std::int64_t total, std::size_t phase, auto&& fn) {
    pool.parallel_for(static_cast<std::size_t>(chunks), [&](std::size_t chunk, std::size_t) {
      const auto c = static_cast<std::int64_t>(chunk);
      const std::int64_t lo = c * total / chunks, hi = (c + 1) * total / chunks;
      if (lo < hi) PhaseTimes::time(phases, phase, [&] { fn(lo, hi); });
    });
  };
  auto block = [&](std::int64_t index) { return block_at(index, work + index * g.worker_floats()); };
  // fn(block, c0, c1) over the channels [c0, c1) of each block that [lo, hi) of blocks x channels holds.
  auto per_block = [&](std::int64_t channels, std::int64_t lo, std::int64_t hi, auto&& fn) {
    for (std::int64_t index = lo / channels; index * channels < hi; ++index)
      fn(block(index), std::max(lo, index * channels) - index * channels,
         std::min(hi, (index + 1) * channels) - index * channels);
  };
  split(g.blocks * g.cin, 0, [&](std::int64_t lo, std::int64_t hi) {
    per_block(g.cin, lo, hi, [&](const detail::WinogradBlock& b, std::int64_t c0, std::int64_t c1) {
      detail::winograd_input(x, g, b, c0, c1);
    });
  });
  split(g.points, 1, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t point = lo; point < hi; ++point)
      for (std::int64_t index = 0; index < g.blocks; ++index)
        detail::winograd_multiply(u, g, block(index), point, point + 1);
  });
  split(g.blocks * g.cout, 2, [&](std::int64_t lo, std::int64_t hi) {
    per_block(g.cout, lo, hi, [&](const detail::WinogradBlock& b, std::int64_t c0, std::int64_t c1) {
      detail::winograd_output(g, b, bias, act, c0, c1, y);
    });
  });
}

}  // namespace sluice::cpu::kernels
