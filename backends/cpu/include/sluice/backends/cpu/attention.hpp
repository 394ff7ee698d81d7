// sluice/backends/cpu/attention.hpp: multi-head self-attention over the H*W tokens of a (N, 3C, H, W)
// q|k|v tensor, blocked over queries: each task scores one block of queries against all keys
// ([block x tokens] floats of scratch), applies an exact row softmax and multiplies by v. Memory is
// O(tokens * block) per worker, never the tokens x tokens matrix of a head.
//
// In NCHW the channels h*d .. h*d+d-1 of q (or k, v) form a row-major [d x tokens] matrix, so every
// product maps the tensor in place: S = scale * Q_blk^T K, O_blk = V S^T, written straight into the
// output channels h*d + j.
#pragma once

#include "sluice/backends/cpu/intrinsics.hpp"  // before Eigen: see there
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "sluice/backends/cpu/conv.hpp"
#include "sluice/backends/cpu/thread_pool.hpp"

namespace sluice::cpu::kernels {

/// Queries per block: fixed, so a sample's result does not depend on the batch.
constexpr std::int64_t attention_block = 64;

/// Scratch floats one worker needs.
inline std::int64_t attention_scratch_floats(std::int64_t tokens) {
  return std::min(attention_block, tokens) * tokens;
}

/// qkv (N, 3C, T tokens) -> y (N, C, T tokens); `scratch` holds pool.size() * attention_scratch_floats(T).
inline void self_attention(const float* qkv, std::int64_t n, std::int64_t channels, std::int64_t tokens,
                           std::int64_t heads, float* y, float* scratch, ThreadPool& pool) {
  const std::int64_t d = channels / heads;
  const std::int64_t blocks = (tokens + attention_block - 1) / attention_block;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const std::int64_t per_worker = attention_scratch_floats(tokens);
  pool.parallel_for(static_cast<std::size_t>(n * heads * blocks), [&](std::size_t task, std::size_t worker) {
    const std::int64_t t = static_cast<std::int64_t>(task);
    const std::int64_t block = t % blocks, head = t / blocks % heads, s = t / blocks / heads;
    const std::int64_t q0 = block * attention_block, bq = std::min(attention_block, tokens - q0);
    const float* base = qkv + s * 3 * channels * tokens;
    const float* q = base + head * d * tokens;
    const float* k = base + (channels + head * d) * tokens;
    const float* v = base + (2 * channels + head * d) * tokens;
    ConstMatrixMap qb(q + q0, d, bq, Eigen::OuterStride<>(tokens));
    ConstMatrixMap km(k, d, tokens, Eigen::OuterStride<>(tokens));
    ConstMatrixMap vm(v, d, tokens, Eigen::OuterStride<>(tokens));
    MatrixMap sm(scratch + static_cast<std::int64_t>(worker) * per_worker, bq, tokens, Eigen::OuterStride<>(tokens));
    sm.noalias() = qb.transpose() * km;
    for (std::int64_t r = 0; r < bq; ++r) {
      auto row = sm.row(r).array();
      const float mx = row.maxCoeff();
      row = ((row - mx) * scale).exp();
      row *= 1.0f / row.sum();
    }
    MatrixMap out(y + s * channels * tokens + head * d * tokens + q0, d, bq, Eigen::OuterStride<>(tokens));
    out.noalias() = vm * sm.transpose();
  });
}

}  // namespace sluice::cpu::kernels
