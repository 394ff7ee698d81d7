// backends/cuda/src/attention.cu: multi-head self-attention over the H*W tokens of an NHWC tensor with
// an online softmax (flash-attention style): keys and values stream through shared memory in tiles
// of 32, each query keeps a running maximum, a running sum and an unnormalised output, and the
// token x token score matrix never exists. Memory is O(tokens * channels) whatever the token count.
//
// Work split: a block serves 16 queries of one (sample, head): 8 warps x 2 queries. For each key
// tile, lane j of a warp computes the score of key j; the warp then updates the query's running
// max / sum, and each lane accumulates the output dimensions lane, lane+32, ... (up to 128).
#include <cmath>

#include "device_common.cuh"

namespace sluice::cuda::kernels {

namespace {

constexpr int attn_warps = 8;
constexpr int attn_queries_per_warp = 2;
constexpr int attn_queries = attn_warps * attn_queries_per_warp;
constexpr int attn_keys = 32;  // one key per lane
constexpr int attn_max_d = static_cast<int>(max_head_dim);
constexpr int attn_dims_per_lane = attn_max_d / 32;

template <class T>
__global__ void __launch_bounds__(attn_warps * 32)
    self_attention_kernel(const T* __restrict__ qkv, T* __restrict__ y, int tokens, int c, int d, float scale) {
  __shared__ float keys[attn_keys][attn_max_d + 1];  // +1: lane j reads row j without bank conflicts
  __shared__ float values[attn_keys][attn_max_d];
  __shared__ float queries[attn_queries][attn_max_d];

  const int head = blockIdx.y;
  const i64 n = blockIdx.z;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int first_query = blockIdx.x * attn_queries;
  const i64 row_stride = 3 * static_cast<i64>(c);
  const T* sample = qkv + n * tokens * row_stride;
  const int q_offset = head * d, k_offset = c + head * d, v_offset = 2 * c + head * d;

  for (int e = threadIdx.x; e < attn_queries * d; e += blockDim.x) {
    const int q = e / d, j = e % d;
    const int token = first_query + q;
    queries[q][j] = token < tokens ? to_float(sample[token * row_stride + q_offset + j]) * scale : 0.0f;
  }

  float running_max[attn_queries_per_warp], running_sum[attn_queries_per_warp];
  float acc[attn_queries_per_warp][attn_dims_per_lane];
#pragma unroll
  for (int q = 0; q < attn_queries_per_warp; ++q) {
    running_max[q] = -INFINITY;
    running_sum[q] = 0.0f;
#pragma unroll
    for (int r = 0; r < attn_dims_per_lane; ++r) acc[q][r] = 0.0f;
  }

  for (int key0 = 0; key0 < tokens; key0 += attn_keys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, the queries are stored)
    for (int e = threadIdx.x; e < attn_keys * d; e += blockDim.x) {
      const int k = e / d, j = e % d;
      const int token = key0 + k;
      float kv = 0.0f, vv = 0.0f;
      if (token < tokens) {
        const T* row = sample + token * row_stride;
        kv = to_float(row[k_offset + j]);
        vv = to_float(row[v_offset + j]);
      }
      keys[k][j] = kv;
      values[k][j] = vv;
    }
    __syncthreads();

    const bool valid = key0 + lane < tokens;  // lane 0 is always valid: a tile has at least one key
#pragma unroll
    for (int q = 0; q < attn_queries_per_warp; ++q) {
      const float* query = queries[warp * attn_queries_per_warp + q];
      float score = 0.0f;
      for (int j = 0; j < d; ++j) score += query[j] * keys[lane][j];
      score = valid ? score : -INFINITY;
      const float new_max = fmaxf(running_max[q], warp_max(score));
      const float rescale = expf(running_max[q] - new_max);  // 0 on the first tile (max was -inf)
      const float p = valid ? expf(score - new_max) : 0.0f;
      running_sum[q] = running_sum[q] * rescale + warp_sum(p);
#pragma unroll
      for (int r = 0; r < attn_dims_per_lane; ++r) acc[q][r] *= rescale;
      for (int k = 0; k < attn_keys; ++k) {
        const float pk = __shfl_sync(0xffffffffu, p, k);
#pragma unroll
        for (int r = 0; r < attn_dims_per_lane; ++r) {
          const int j = lane + 32 * r;
          if (j < d) acc[q][r] += pk * values[k][j];
        }
      }
      running_max[q] = new_max;
    }
  }

#pragma unroll
  for (int q = 0; q < attn_queries_per_warp; ++q) {
    const int token = first_query + warp * attn_queries_per_warp + q;
    if (token >= tokens) continue;
    T* out = y + (n * tokens + token) * c + head * d;
    const float inv = 1.0f / running_sum[q];
#pragma unroll
    for (int r = 0; r < attn_dims_per_lane; ++r) {
      const int j = lane + 32 * r;
      if (j < d) out[j] = from_float<T>(acc[q][r] * inv);
    }
  }
}

}  // namespace

void self_attention(const void* qkv, void* y, DType dt, i64 n, i64 tokens, i64 c, i64 heads, cudaStream_t stream) {
  if (n * tokens * c == 0) return;
  const i64 d = c / heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const dim3 grid(static_cast<unsigned>((tokens + attn_queries - 1) / attn_queries), static_cast<unsigned>(heads),
                  static_cast<unsigned>(n));
  dispatch_type(dt, [&](auto t) {
    using T = typename decltype(t)::type;
    self_attention_kernel<T><<<grid, attn_warps * 32, 0, stream>>>(static_cast<const T*>(qkv), static_cast<T*>(y),
                                                                  static_cast<int>(tokens), static_cast<int>(c),
                                                                  static_cast<int>(d), scale);
  });
  SLUICE_CUDA_CHECK_LAUNCH();
}

}  // namespace sluice::cuda::kernels
