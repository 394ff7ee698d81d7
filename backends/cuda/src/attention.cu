// backends/cuda/src/attention.cu: multi-head self-attention over the H*W tokens of an NHWC tensor with
// an online softmax (flash-attention style): keys and values stream through shared memory in tiles
// of 32, each query keeps a running maximum, a running sum and an unnormalised output, and the
// token x token score matrix never exists. Memory is O(tokens * channels) whatever the token count.
//
// Two kernels:
//  - tensor cores (fp16 / bf16 storage, head dimension a multiple of 16 up to 128, compute
//    capability 8.0+): a block serves 64 queries of one (sample, head), a warp 16 of them. Per tile
//    of 64 keys, S = Q K^T and O += P V are WMMA 16x16x16 products with float accumulators; the
//    softmax runs in float on S in shared memory (two lanes per query row), P is rounded to the
//    storage type for the second product, and O lives in shared memory so that its rows can be
//    rescaled when the running maximum grows;
//  - CUDA cores (everything else): a block serves 16 queries: 8 warps x 2 queries. For each key
//    tile, lane j of a warp computes the score of key j; the warp then updates the query's running
//    max / sum, and each lane accumulates the output dimensions lane, lane+32, ... (up to 128).
#include <mma.h>

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

// ---- tensor cores ----

constexpr int tc_warps = 4;
constexpr int tc_rows = 16;                    // queries per warp: one WMMA tile
constexpr int tc_queries = tc_warps * tc_rows;  // per block
constexpr int tc_keys = 64;                    // keys per tile
constexpr int tc_pad = 8;                      // 16-bit row padding (keeps rows 32-byte aligned, eases banks)

// Row strides (elements) and bytes of the dynamic shared memory for head dimension d.
struct TcLayout {
  int ld, lds, ldp, ldo;
  std::size_t q, kv, s, p, o;
  __host__ __device__ explicit TcLayout(int d)
      : ld(d + tc_pad),
        lds(tc_keys + 4),
        ldp(tc_keys + tc_pad),
        ldo(d + 4),
        q(static_cast<std::size_t>(tc_queries) * ld * 2),
        kv(static_cast<std::size_t>(tc_keys) * ld * 2),
        s(static_cast<std::size_t>(tc_warps) * tc_rows * lds * 4),
        p(static_cast<std::size_t>(tc_warps) * tc_rows * ldp * 2),
        o(static_cast<std::size_t>(tc_warps) * tc_rows * ldo * 4) {}
  __host__ __device__ std::size_t bytes() const { return q + 2 * kv + s + p + o; }
};

template <class T>
__global__ void __launch_bounds__(tc_warps * 32)
    self_attention_tc_kernel(const T* __restrict__ qkv, T* __restrict__ y, int tokens, int c, int d, float scale) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  extern __shared__ __align__(128) unsigned char smem[];
  const TcLayout L(d);
  T* qs = reinterpret_cast<T*>(smem);
  T* ks = reinterpret_cast<T*>(smem + L.q);
  T* vs = reinterpret_cast<T*>(smem + L.q + L.kv);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  float* ss = reinterpret_cast<float*>(smem + L.q + 2 * L.kv) + warp * tc_rows * L.lds;
  T* ps = reinterpret_cast<T*>(smem + L.q + 2 * L.kv + L.s) + warp * tc_rows * L.ldp;
  float* os = reinterpret_cast<float*>(smem + L.q + 2 * L.kv + L.s + L.p) + warp * tc_rows * L.ldo;

  const int head = blockIdx.y;
  const i64 n = blockIdx.z;
  const int first_query = blockIdx.x * tc_queries;
  const i64 row_stride = 3 * static_cast<i64>(c);
  const T* sample = qkv + n * tokens * row_stride;
  const int q_offset = head * d, k_offset = c + head * d, v_offset = 2 * c + head * d;
  const T zero = from_float<T>(0.0f);

  for (int e = threadIdx.x; e < tc_queries * d; e += blockDim.x) {
    const int q = e / d, j = e % d;
    const int token = first_query + q;
    qs[q * L.ld + j] = token < tokens ? sample[token * row_stride + q_offset + j] : zero;
  }
  for (int e = lane; e < tc_rows * d; e += 32) os[(e / d) * L.ldo + e % d] = 0.0f;

  // lanes 2r and 2r+1 own query row r of the warp: half 0 / 1 of the key tile and of the output
  const int row = lane / 2, half = lane % 2;
  float running_max = -INFINITY, running_sum = 0.0f;
  const T* q_tile = qs + warp * tc_rows * L.ld;

  for (int key0 = 0; key0 < tokens; key0 += tc_keys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, Q is stored)
    for (int e = threadIdx.x; e < tc_keys * d; e += blockDim.x) {
      const int k = e / d, j = e % d;
      const int token = key0 + k;
      const bool in = token < tokens;
      const T* r = sample + static_cast<i64>(in ? token : 0) * row_stride;
      ks[k * L.ld + j] = in ? r[k_offset + j] : zero;
      vs[k * L.ld + j] = in ? r[v_offset + j] : zero;
    }
    __syncthreads();

    // S (16 x 64) = Q (16 x d) K^T (d x 64)
    for (int nt = 0; nt < tc_keys / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kt = 0; kt < d / 16; ++kt) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
        wmma::load_matrix_sync(a, q_tile + kt * 16, L.ld);
        wmma::load_matrix_sync(b, ks + nt * 16 * L.ld + kt * 16, L.ld);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(ss + nt * 16, acc, L.lds, wmma::mem_row_major);
    }
    __syncwarp();

    // online softmax of row `row` over this tile; P in the storage type
    const int cols = tc_keys / 2;
    float tile_max = -INFINITY;
    for (int k = 0; k < cols; ++k) {
      const int col = half * cols + k;
      if (key0 + col < tokens) tile_max = fmaxf(tile_max, ss[row * L.lds + col] * scale);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    const float new_max = fmaxf(running_max, tile_max);  // finite: a tile has at least one key
    const float rescale = expf(running_max - new_max);    // 0 on the first tile
    float sum = 0.0f;
    for (int k = 0; k < cols; ++k) {
      const int col = half * cols + k;
      const T p = from_float<T>(key0 + col < tokens ? expf(ss[row * L.lds + col] * scale - new_max) : 0.0f);
      ps[row * L.ldp + col] = p;
      sum += to_float(p);  // the rounded weights, as P V uses them
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    running_sum = running_sum * rescale + sum;
    running_max = new_max;
    for (int j = half * (d / 2); j < (half + 1) * (d / 2); ++j) os[row * L.ldo + j] *= rescale;
    __syncwarp();

    // O (16 x d) += P (16 x 64) V (64 x d)
    for (int jt = 0; jt < d / 16; ++jt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, os + jt * 16, L.ldo, wmma::mem_row_major);
      for (int kt = 0; kt < tc_keys / 16; ++kt) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(a, ps + kt * 16, L.ldp);
        wmma::load_matrix_sync(b, vs + kt * 16 * L.ld + jt * 16, L.ld);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(os + jt * 16, acc, L.ldo, wmma::mem_row_major);
    }
    __syncwarp();
  }

  const int token = first_query + warp * tc_rows + row;
  if (token < tokens) {
    T* out = y + (n * tokens + token) * c + head * d;
    const float inv = 1.0f / running_sum;
    for (int j = half * (d / 2); j < (half + 1) * (d / 2); ++j) out[j] = from_float<T>(os[row * L.ldo + j] * inv);
  }
#endif
}

/// Tensor cores serve 16-bit storage with head dimensions in 16s on compute capability 8.0 and up.
bool tensor_core_attention(DType dt, i64 d) {
  if (dt == DType::f32 || d % 16 != 0 || d > attn_max_d) return false;
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 8;
}

}  // namespace

void self_attention(const void* qkv, void* y, DType dt, i64 n, i64 tokens, i64 c, i64 heads, cudaStream_t stream) {
  if (n * tokens * c == 0) return;
  const i64 d = c / heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  if (tensor_core_attention(dt, d)) {
    const TcLayout layout(static_cast<int>(d));
    const dim3 tc_grid(static_cast<unsigned>((tokens + tc_queries - 1) / tc_queries), static_cast<unsigned>(heads),
                       static_cast<unsigned>(n));
    const auto launch = [&](auto kernel, const auto* in, auto* out) {
      SLUICE_CUDA_CHECK(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(layout.bytes())));
      kernel<<<tc_grid, tc_warps * 32, layout.bytes(), stream>>>(in, out, static_cast<int>(tokens), static_cast<int>(c),
                                                                  static_cast<int>(d), scale);
    };
    if (dt == DType::f16)
      launch(self_attention_tc_kernel<__half>, static_cast<const __half*>(qkv), static_cast<__half*>(y));
    else
      launch(self_attention_tc_kernel<__nv_bfloat16>, static_cast<const __nv_bfloat16*>(qkv),
             static_cast<__nv_bfloat16*>(y));
    SLUICE_CUDA_CHECK_LAUNCH();
    return;
  }
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
