// sluice/backends/cpu/conv.hpp: the convolution kernels of the CPU backend (NCHW float32).
//  - dense and grouped conv: per sample and tile of output rows, im2col into the packed B operand of
//    the GEMM (gemm.hpp) in a per-worker scratch block (1x1 stride-1 convs copy their input planes
//    there; other stride-1 convs skip it and read zero-padded copies of the input planes in place),
//    one GEMM per group against the weights packed at load time, then bias + activation while the
//    tile is still in cache; small planes (fewer than 4 tiles per sample) also split the output
//    channels into blocks, which the workers share when a batch has too few tiles to give each
//    worker its own;
//  - depthwise conv: a direct loop per plane;
//  - ConvTranspose2d(2, 2): one GEMM [out*4 x in] x [in x pixels] per tile (fp32 or bf16, as the
//    other GEMMs), scattered with the bias.
// The GEMM sums every output over k in one fixed order, and the tiles depend only on the layer's
// geometry, never on the batch size or thread count: a sample's result is bitwise the same alone or
// in a batch.
#pragma once

#include "sluice/backends/cpu/intrinsics.hpp"  // before Eigen: see there
#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "sluice/backends/cpu/activation.hpp"
#include "sluice/backends/cpu/gemm.hpp"
#include "sluice/backends/cpu/gemm_amx.hpp"
#include "sluice/backends/cpu/gemm_bf16.hpp"
#include "sluice/backends/cpu/phase_times.hpp"
#include "sluice/backends/cpu/plane_tasks.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"
#include "sluice/backends/cpu/weights.hpp"
#include "sluice/core/shape.hpp"

namespace sluice::cpu::kernels {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using ConstMatrixMap = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Sizes of one conv: input, kernel, output, and its decomposition into GEMMs.
struct ConvGeometry {
  std::int64_t n, cin, h, w;
  std::int64_t cout, kh, kw, sh, sw, ph, pw, dh, dw, groups;
  std::int64_t oh, ow;
  std::int64_t cin_g, cout_g, k;  // per group; k = cin_g * kh * kw (GEMM depth)
  std::int64_t rows_per_tile, tiles;  // output rows per GEMM tile
  std::int64_t m_block, m_blocks;     // output channels (of a group) per GEMM block
  /// Stride-1 convs with at most SLUICE_CPU_INDIRECT_MAX_CHANNELS outputs per group (too few rows
  /// of A to amortise packing B) and padding small beside the width run on zero-padded copies of the
  /// input planes (hp x wp): there the GEMM column of output pixel (y, x) is y * wp + x, every row of
  /// the im2col matrix is one contiguous run of a padded plane, and the GEMM reads those runs in place
  /// (gemm_indirect): no im2col. The wp - ow columns between two output rows are computed and dropped.
  bool padded_rows;
  std::int64_t hp, wp;

  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
  std::int64_t tile_pixels() const { return rows_per_tile * ow; }
  /// GEMM columns of a tile of `rows` output rows.
  std::int64_t columns(std::int64_t rows) const { return padded_rows ? (rows - 1) * wp + ow : rows * ow; }
  /// Small planes split the output channels too, into blocks of m_block.
  bool split_channels() const { return m_blocks > 1; }
  /// Whether each (sample, tile) is one task with its own im2col block: always, unless the channels
  /// are split and there are too few tiles in the batch to keep `threads` workers busy; then the
  /// workers share one im2col block per tile and split its channel blocks. Both run the same GEMMs.
  bool task_per_tile(std::size_t threads) const {
    return !split_channels() || n * tiles >= 2 * static_cast<std::int64_t>(threads);
  }
  /// Floats of the table of im2col row offsets (padded_rows only: k int64 offsets).
  std::int64_t offset_floats() const { return padded_rows ? 2 * k : 0; }
  /// Floats of the zero-padded input copy (padded_rows only), with a panel's width of zeros after
  /// it: the GEMM reads its rows a whole panel wide.
  std::int64_t padded_floats() const { return padded_rows ? n * cin * hp * wp + kGemmNr : 0; }
  /// Floats of one packed im2col block (none with padded rows).
  std::int64_t block_floats() const { return padded_rows ? 0 : PackedB::floats(k, columns(rows_per_tile)); }
  /// Floats a worker needs besides the block: with padded rows, the GEMM result of one channel block
  /// (its columns include the dropped ones); otherwise the im2col row it assembles before packing
  /// (none for a 1x1 conv, which packs its input rows).
  std::int64_t worker_floats() const {
    if (padded_rows) return m_block * columns(rows_per_tile);
    return pointwise() ? 0 : tile_pixels();
  }
  /// Floats of scratch the conv needs with `threads` workers: the offsets and the padded input, a
  /// block per worker or one shared block, and each worker's own floats.
  std::int64_t scratch_floats(std::size_t threads) const {
    const auto t = static_cast<std::int64_t>(threads);
    return offset_floats() + padded_floats() + (task_per_tile(threads) ? t * block_floats() : block_floats()) +
           t * worker_floats();
  }
};

#ifndef SLUICE_CPU_IM2COL_BLOCK_FLOATS
#define SLUICE_CPU_IM2COL_BLOCK_FLOATS (1 << 18)  // tuned in bench/cpu (docs/performance.md)
#endif
#ifndef SLUICE_CPU_INDIRECT_MAX_CHANNELS
#define SLUICE_CPU_INDIRECT_MAX_CHANNELS 64  // see padded_rows; measured on HRNet (docs/performance.md)
#endif
#ifndef SLUICE_CPU_TILE_MIN_PIXELS
#define SLUICE_CPU_TILE_MIN_PIXELS 128
#endif
#ifndef SLUICE_CPU_TILE_MAX_PIXELS
#define SLUICE_CPU_TILE_MAX_PIXELS 1024
#endif

/// The decomposition, from the layer's geometry alone: tiles of output rows so that the im2col block
/// stays about L2-sized and the GEMM gets enough columns; when a sample has fewer than 4 tiles (small
/// planes, e.g. a bottleneck at batch 1), blocks of >= 32 output channels as well, so that every
/// thread gets work. The thread count never enters, so a layer runs the same GEMMs on any machine.
inline void plan_tiles(ConvGeometry& g) {
  const std::int64_t target_pixels =
      std::clamp<std::int64_t>(SLUICE_CPU_IM2COL_BLOCK_FLOATS / std::max<std::int64_t>(g.k, 1),
                               SLUICE_CPU_TILE_MIN_PIXELS, SLUICE_CPU_TILE_MAX_PIXELS);
  g.rows_per_tile = std::clamp<std::int64_t>((target_pixels + g.ow - 1) / g.ow, 1, g.oh);
  g.tiles = (g.oh + g.rows_per_tile - 1) / g.rows_per_tile;
  constexpr std::int64_t min_tasks = 4, min_block = 32;
  g.m_block = g.cout_g;
  g.m_blocks = 1;
  const std::int64_t per_sample = g.tiles * g.groups;
  if (per_sample < min_tasks && g.cout_g >= 2 * min_block) {
    const std::int64_t want = std::min((min_tasks + per_sample - 1) / per_sample, g.cout_g / min_block);
    g.m_block = round_up((g.cout_g + want - 1) / want, 2 * kGemmMr);  // whole panels of packed A
    static_assert(2 * kGemmMr % kBf16Mr == 0, "a channel block starts on a panel of either packing");
    g.m_blocks = (g.cout_g + g.m_block - 1) / g.m_block;
  }
}

/// The geometry of conv `p` on input shape `x` (already validated), with its decomposition.
inline ConvGeometry conv_geometry(const Shape& x, const ConvParams& p) {
  ConvGeometry g{};
  g.n = x.n, g.cin = x.c, g.h = x.h, g.w = x.w;
  g.cout = p.out, g.kh = p.kh, g.kw = p.kw;
  g.sh = p.spec.stride_h, g.sw = p.spec.stride_w, g.ph = p.spec.pad_h, g.pw = p.spec.pad_w;
  g.dh = p.spec.dilation_h, g.dw = p.spec.dilation_w, g.groups = p.spec.groups;
  g.oh = (x.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.ow = (x.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  g.cin_g = g.cin / g.groups, g.cout_g = g.cout / g.groups, g.k = g.cin_g * g.kh * g.kw;
  g.hp = g.h + 2 * g.ph, g.wp = g.w + 2 * g.pw;
  // At most a quarter of the columns dropped (a 3x3 conv from width 8 up).
  g.padded_rows = g.sh == 1 && g.sw == 1 && !g.pointwise() && (g.wp - g.ow) * 4 <= g.ow &&
                  g.cout_g <= SLUICE_CPU_INDIRECT_MAX_CHANNELS;
  plan_tiles(g);
  return g;
}

/// Zero-padded copies of `planes` planes of h x w: plane i becomes hp x wp at padded + i * hp * wp,
/// its values starting at row `top`, column `left` (hp >= top + h, wp >= left + w).
inline void pad_planes(const float* x, std::int64_t planes, std::int64_t h, std::int64_t w, std::int64_t top,
                       std::int64_t left, std::int64_t hp, std::int64_t wp, float* padded, ThreadPool& pool) {
  for_each_plane(pool, planes, hp * wp, [&](std::int64_t task, std::size_t) {
    const float* src = x + task * h * w;
    float* dst = padded + task * hp * wp;
    zero_run(dst, top * wp);
    for (std::int64_t y = 0; y < h; ++y) {
      float* row = dst + (top + y) * wp;
      zero_run(row, left);
      copy_run(row + left, src + y * w, w);
      zero_run(row + left + w, wp - left - w);
    }
    zero_run(dst + (top + h) * wp, (hp - top - h) * wp);
  });
}

/// im2col of output rows [oh0, oh1) for the channels [c0, c1) of group `grp` of one sample into the
/// packed GEMM operand `col` (row = (ci * kh + ky) * kw + kx, ci counted within the group). Each row
/// is assembled in `row` (tile_pixels() floats) and then packed in whole panels: written straight
/// into the panels, the short runs of small planes cost more than the copy. A 1x1 stride-1 conv packs
/// its input rows. (Convs on padded planes need none of this.)
inline void im2col_rows(const float* xn, const ConvGeometry& g, std::int64_t grp, std::int64_t c0, std::int64_t c1,
                        std::int64_t oh0, std::int64_t oh1, const PackedB& col, float* row) {
  const std::int64_t in_plane = g.h * g.w;
  const float* group_planes = xn + grp * g.cin_g * in_plane;
  if (g.pointwise()) {
    for (std::int64_t ci = c0; ci < c1; ++ci) col.set_row(ci, group_planes + ci * in_plane + oh0 * g.ow);
    return;
  }
  for (std::int64_t ci = c0; ci < c1; ++ci) {
    const float* plane = group_planes + ci * in_plane;
    for (std::int64_t ky = 0; ky < g.kh; ++ky) {
      for (std::int64_t kx = 0; kx < g.kw; ++kx) {
        // Output columns whose input column iw = ow * sw - pw + kx * dw lies inside [0, w).
        const std::int64_t off = kx * g.dw - g.pw;
        std::int64_t lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
        std::int64_t hi = (g.w - 1 - off) < 0 ? 0 : (g.w - 1 - off) / g.sw + 1;
        lo = std::min(lo, g.ow);
        hi = std::clamp(hi, lo, g.ow);
        for (std::int64_t oh = oh0; oh < oh1; ++oh) {
          float* r = row + (oh - oh0) * g.ow;
          const std::int64_t ih = oh * g.sh - g.ph + ky * g.dh;
          if (ih < 0 || ih >= g.h) {
            zero_run(r, g.ow);
            continue;
          }
          const float* src = plane + ih * g.w + off;  // src[o * sw] is output column o's input
          zero_run(r, lo);
          if (g.sw == 1) {
            copy_run(r + lo, src + lo, hi - lo);
          } else {
            for (std::int64_t o = lo; o < hi; ++o) r[o] = src[o * g.sw];
          }
          zero_run(r + hi, g.ow - hi);
        }
        col.set_row((ci * g.kh + ky) * g.kw + kx, row);
      }
    }
  }
}

/// The offset of im2col row (ci, ky, kx) of a group in the padded input, from the group's first
/// plane at the tile's first row: the GEMM of a tile reads B(r, j) = tile_start[offsets[r] + j].
inline void padded_row_offsets(const ConvGeometry& g, std::int64_t* offsets) {
  for (std::int64_t ci = 0; ci < g.cin_g; ++ci)
    for (std::int64_t ky = 0; ky < g.kh; ++ky)
      for (std::int64_t kx = 0; kx < g.kw; ++kx)
        offsets[(ci * g.kh + ky) * g.kw + kx] = ci * g.hp * g.wp + ky * g.dh * g.wp + kx * g.dw;
}

/// Bias + activation of output channels [oc0, oc0 + rows), output rows [oh0, oh1) of one sample.
inline void bias_activation_block(const float* bias, const ConvGeometry& g, std::int64_t oc0, std::int64_t rows,
                                  std::int64_t oh0, std::int64_t oh1, Activation act, float* yn) {
  const std::int64_t out_plane = g.oh * g.ow;
  for (std::int64_t oc = oc0; oc < oc0 + rows; ++oc)
    bias_activation(yn + oc * out_plane + oh0 * g.ow, (oh1 - oh0) * g.ow, bias ? bias[oc] : 0.0f, act);
}

/// Where a conv's GEMMs read B: packed im2col blocks, or (padded rows) the padded input in place.
struct ConvOperand {
  const PackedB* packed = nullptr;
  const float* tile_start = nullptr;  // padded rows: the group's first padded plane at the tile's first row
  const std::int64_t* offsets = nullptr;
};

/// A conv's packed GEMM matrices: float32 (pack_a) or, with bf16 precision, bf16 k-pairs packed for
/// the vdpbf16ps kernel (pack_a_bf16) or for AMX tiles (pack_a_amx); the GEMMs run on the kernel
/// they were packed for.
struct ConvWeights {
  const float* fp32 = nullptr;
  const std::uint32_t* bf16 = nullptr;
  bool amx = false;  // bf16 is pack_a_amx's layout

  template <class Params>  // ConvParams or ConvTransposeParams
  static ConvWeights of(const Params& p) {
    return p.weight_bf16 ? ConvWeights{nullptr, p.weight_bf16->values.data(), p.bf16_amx}
                         : ConvWeights{p.weight->values.data(), nullptr, false};
  }
  /// Matrix `index` of several [m x k] ones packed one after another (groups, Winograd points).
  ConvWeights at(std::int64_t index, std::int64_t m, std::int64_t k) const {
    if (fp32) return {fp32 + index * packed_a_floats(m, k), nullptr, false};
    return {nullptr, bf16 + index * bf16_kernel_words(m, k, amx), amx};
  }
  /// gemm_packed (gemm.hpp) on these weights' kernel; m0 is a multiple of kBf16Mr.
  void gemm_packed(std::int64_t m, std::int64_t m0, std::int64_t rows, const PackedB& b, float* c,
                   std::int64_t ldc) const {
    if (fp32)
      kernels::gemm_packed(fp32, m, m0, rows, b, c, ldc);
    else if (amx)
      gemm_packed_amx(bf16, m, m0, rows, b, c, ldc);
    else
      gemm_packed_bf16(bf16, m, m0, rows, b, c, ldc);
  }
  /// gemm_indirect (gemm.hpp) on these weights' kernel.
  void gemm_indirect(std::int64_t m, std::int64_t m0, std::int64_t rows, const float* b, const std::int64_t* offsets,
                     std::int64_t k, std::int64_t n, float* c, std::int64_t ldc) const {
    if (fp32)
      kernels::gemm_indirect(fp32, m, m0, rows, b, offsets, k, n, c, ldc);
    else if (amx)
      gemm_indirect_amx(bf16, m, m0, rows, b, offsets, k, n, c, ldc);
    else
      gemm_indirect_bf16(bf16, m, m0, rows, b, offsets, k, n, c, ldc);
  }
};

/// One GEMM block: output channels [m0, m0 + rows) of group `grp`, output rows [oh0, oh1) of one
/// sample; then bias + activation. With padded rows the result goes to `staging` (rows x columns
/// floats) first and only the output columns are copied out.
inline void conv_block(const ConvWeights& weight, const float* bias, const ConvGeometry& g, std::int64_t grp,
                       std::int64_t m0, std::int64_t rows, const ConvOperand& b, std::int64_t oh0, std::int64_t oh1,
                       Activation act, float* yn, float* staging) {
  const std::int64_t out_plane = g.oh * g.ow, oc0 = grp * g.cout_g + m0;
  const ConvWeights a = weight.at(grp, g.cout_g, g.k);
  float* out = yn + oc0 * out_plane + oh0 * g.ow;
  if (g.padded_rows) {
    const std::int64_t columns = g.columns(oh1 - oh0);
    a.gemm_indirect(g.cout_g, m0, rows, b.tile_start, b.offsets, g.k, columns, staging, columns);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t r = 0; r < oh1 - oh0; ++r)
        copy_run(out + i * out_plane + r * g.ow, staging + i * columns + r * g.wp, g.ow);
  } else {
    a.gemm_packed(g.cout_g, m0, rows, *b.packed, out, out_plane);
  }
  bias_activation_block(bias, g, oc0, rows, oh0, oh1, act, yn);
}

/// Dense or grouped conv of all samples. `scratch` holds g.scratch_floats(pool.size()) floats.
/// `phases`, when not null, gets the workers' time in im2col or padding (0) and the GEMMs with their
/// bias and activation (1).
inline void conv2d_gemm(const float* x, const ConvParams& p, const ConvGeometry& g, Activation act, float* y,
                        float* scratch, ThreadPool& pool, PhaseTimes* phases = nullptr) {
  const ConvWeights weight = ConvWeights::of(p);
  const float* bias = p.bias ? p.bias->values.data() : nullptr;
  const std::int64_t out_plane = g.oh * g.ow;
  // scratch: [row offsets][padded input][blocks][workers' own floats]
  auto* offsets = reinterpret_cast<std::int64_t*>(scratch);
  float* padded = scratch + g.offset_floats();
  float* work = padded + g.padded_floats();
  if (g.padded_rows) {
    padded_row_offsets(g, offsets);
    PhaseTimes::time(phases, 0, [&] { pad_planes(x, g.n * g.cin, g.h, g.w, g.ph, g.pw, g.hp, g.wp, padded, pool); },
                     pool.size());
    zero_run(padded + g.padded_floats() - kGemmNr, kGemmNr);
  }
  const float* source = g.padded_rows ? padded : x;
  const std::int64_t source_plane = g.padded_rows ? g.hp * g.wp : g.h * g.w;
  auto tile_rows = [&](std::int64_t tile, std::int64_t& oh0, std::int64_t& oh1) {
    oh0 = tile * g.rows_per_tile;
    oh1 = std::min(g.oh, oh0 + g.rows_per_tile);
  };
  // The B operand of group `grp` of sample xn, for output rows [oh0, oh1).
  auto operand = [&](const float* xn, std::int64_t grp, std::int64_t oh0, const PackedB& col) {
    ConvOperand b;
    if (g.padded_rows) {
      b.tile_start = xn + grp * g.cin_g * source_plane + oh0 * g.wp;
      b.offsets = offsets;
    } else {
      b.packed = &col;
    }
    return b;
  };
  if (g.task_per_tile(pool.size())) {
    // Tasks = (sample, tile); each worker im2cols into its own block, then runs the channel blocks.
    pool.parallel_for(static_cast<std::size_t>(g.n * g.tiles), [&](std::size_t task, std::size_t worker) {
      const std::int64_t n = static_cast<std::int64_t>(task) / g.tiles;
      std::int64_t oh0, oh1;
      tile_rows(static_cast<std::int64_t>(task) % g.tiles, oh0, oh1);
      const float* xn = source + n * g.cin * source_plane;
      float* yn = y + n * g.cout * out_plane;
      float* own = work + static_cast<std::int64_t>(worker) * (g.block_floats() + g.worker_floats());
      const PackedB col(own, g.k, g.columns(oh1 - oh0));
      float* extra = own + g.block_floats();
      for (std::int64_t grp = 0; grp < g.groups; ++grp) {
        if (!g.padded_rows)
          PhaseTimes::time(phases, 0, [&] { im2col_rows(xn, g, grp, 0, g.cin_g, oh0, oh1, col, extra); });
        const ConvOperand b = operand(xn, grp, oh0, col);
        PhaseTimes::time(phases, 1, [&] {
          for (std::int64_t m0 = 0; m0 < g.cout_g; m0 += g.m_block)
            conv_block(weight, bias, g, grp, m0, std::min(g.m_block, g.cout_g - m0), b, oh0, oh1, act, yn, extra);
        });
      }
    });
    return;
  }
  // Few tiles (small planes, small batch): per (sample, tile, group), im2col once (split over
  // channels), then the output-channel blocks in parallel.
  auto own_floats = [&](std::size_t worker) {
    return work + g.block_floats() + static_cast<std::int64_t>(worker) * g.worker_floats();
  };
  for (std::int64_t n = 0; n < g.n; ++n) {
    const float* xn = source + n * g.cin * source_plane;
    float* yn = y + n * g.cout * out_plane;
    for (std::int64_t tile = 0; tile < g.tiles; ++tile) {
      std::int64_t oh0, oh1;
      tile_rows(tile, oh0, oh1);
      const PackedB col(work, g.k, g.columns(oh1 - oh0));
      for (std::int64_t grp = 0; grp < g.groups; ++grp) {
        if (!g.padded_rows) {
          const std::int64_t chunks = std::min<std::int64_t>(g.cin_g, static_cast<std::int64_t>(pool.size()) * 4);
          pool.parallel_for(static_cast<std::size_t>(chunks), [&](std::size_t chunk, std::size_t worker) {
            // Chunks differ by at most one channel (as even as the channels allow).
            const auto c = static_cast<std::int64_t>(chunk);
            const std::int64_t c0 = c * g.cin_g / chunks, c1 = (c + 1) * g.cin_g / chunks;
            if (c0 < c1)
              PhaseTimes::time(phases, 0, [&] { im2col_rows(xn, g, grp, c0, c1, oh0, oh1, col, own_floats(worker)); });
          });
        }
        const ConvOperand b = operand(xn, grp, oh0, col);
        pool.parallel_for(static_cast<std::size_t>(g.m_blocks), [&](std::size_t block, std::size_t worker) {
          const std::int64_t m0 = static_cast<std::int64_t>(block) * g.m_block;
          PhaseTimes::time(phases, 1, [&] {
            conv_block(weight, bias, g, grp, m0, std::min(g.m_block, g.cout_g - m0), b, oh0, oh1, act, yn,
                       own_floats(worker));
          });
        });
      }
    }
  }
}

/// Depthwise conv (groups == in == out): a direct loop per plane.
inline void conv2d_depthwise(const float* x, const ConvParams& p, const ConvGeometry& g, Activation act, float* y,
                             ThreadPool& pool) {
  const float* weight = p.weight->values.data();
  const float* bias = p.bias ? p.bias->values.data() : nullptr;
  const std::int64_t in_plane = g.h * g.w, out_plane = g.oh * g.ow;
  pool.parallel_for(static_cast<std::size_t>(g.n * g.cout), [&](std::size_t task, std::size_t) {
    const std::int64_t c = static_cast<std::int64_t>(task) % g.cout;
    const float* src = x + static_cast<std::int64_t>(task) * in_plane;
    float* dst = y + static_cast<std::int64_t>(task) * out_plane;
    const float* wc = weight + c * g.kh * g.kw;
    std::fill(dst, dst + out_plane, 0.0f);
    for (std::int64_t ky = 0; ky < g.kh; ++ky) {
      for (std::int64_t kx = 0; kx < g.kw; ++kx) {
        const float wv = wc[ky * g.kw + kx];
        const std::int64_t off = kx * g.dw - g.pw;
        std::int64_t lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
        std::int64_t hi = (g.w - 1 - off) < 0 ? 0 : (g.w - 1 - off) / g.sw + 1;
        lo = std::min(lo, g.ow);
        hi = std::clamp(hi, lo, g.ow);
        for (std::int64_t oh = 0; oh < g.oh; ++oh) {
          const std::int64_t ih = oh * g.sh - g.ph + ky * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          const float* s = src + ih * g.w;
          float* d = dst + oh * g.ow;
          if (g.sw == 1) {
            for (std::int64_t o = lo; o < hi; ++o) d[o] += wv * s[o + off];
          } else {
            for (std::int64_t o = lo; o < hi; ++o) d[o] += wv * s[o * g.sw + off];
          }
        }
      }
    }
    bias_activation(dst, out_plane, bias ? bias[c] : 0.0f, act);
  });
}

/// Rows of input per ConvTranspose2d(2, 2) tile, from the geometry only.
inline std::int64_t conv_transpose_rows_per_tile(std::int64_t h, std::int64_t w) {
  return std::clamp<std::int64_t>((1024 + w - 1) / w, 1, h);
}

/// One worker's scratch floats for conv_transpose2x2 on input xs: a tile's packed input and its
/// [out*4 x pixels] product.
inline std::int64_t conv_transpose_worker_floats(const ConvTransposeParams& p, const Shape& xs) {
  const std::int64_t pixels = conv_transpose_rows_per_tile(xs.h, xs.w) * xs.w;
  return PackedB::floats(p.in, pixels) + 4 * p.out * pixels;
}

/// ConvTranspose2d(kernel 2, stride 2) + bias: per tile of input rows, the GEMM [out*4 x in] x
/// [in x pixels] on the own kernels (fp32 or bf16, as the weights were packed), then each of the
/// four kernel positions' rows scattered to its output pixels. `scratch` holds pool.size() *
/// conv_transpose_worker_floats floats.
inline void conv_transpose2x2(const float* x, const ConvTransposeParams& p, const Shape& xs, float* y,
                              float* scratch, ThreadPool& pool) {
  const std::int64_t rows = conv_transpose_rows_per_tile(xs.h, xs.w);
  const std::int64_t tiles = (xs.h + rows - 1) / rows;
  const std::int64_t in_plane = xs.h * xs.w, ow = 2 * xs.w, out_plane = 4 * in_plane, m = 4 * p.out;
  const std::int64_t per_worker = conv_transpose_worker_floats(p, xs);
  const ConvWeights weight = ConvWeights::of(p);
  const float* bias = p.bias ? p.bias->values.data() : nullptr;
  pool.parallel_for(static_cast<std::size_t>(xs.n * tiles), [&](std::size_t task, std::size_t worker) {
    const std::int64_t n = static_cast<std::int64_t>(task) / tiles;
    const std::int64_t r0 = static_cast<std::int64_t>(task) % tiles * rows, r1 = std::min(xs.h, r0 + rows);
    const std::int64_t pixels = (r1 - r0) * xs.w;
    float* own = scratch + static_cast<std::int64_t>(worker) * per_worker;
    const PackedB b(own, p.in, pixels);
    for (std::int64_t ci = 0; ci < p.in; ++ci) b.set_row(ci, x + (n * p.in + ci) * in_plane + r0 * xs.w);
    float* z = own + PackedB::floats(p.in, pixels);
    weight.gemm_packed(m, 0, m, b, z, pixels);
    float* yn = y + n * p.out * out_plane;
    for (std::int64_t co = 0; co < p.out; ++co) {
      const float bv = bias ? bias[co] : 0.0f;
      float* yc = yn + co * out_plane;
      for (std::int64_t ab = 0; ab < 4; ++ab) {
        const std::int64_t a_off = ab / 2, b_off = ab % 2;
        const float* zr = z + (co * 4 + ab) * pixels;
        for (std::int64_t i = r0; i < r1; ++i) {
          float* dst = yc + (2 * i + a_off) * ow + b_off;
          const float* src = zr + (i - r0) * xs.w;
          for (std::int64_t j = 0; j < xs.w; ++j) dst[2 * j] = src[j] + bv;
        }
      }
    }
  });
}

}  // namespace sluice::cpu::kernels
