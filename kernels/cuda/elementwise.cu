// Row/column elementwise ops around the GEMMs: bias add and its column-sum backward, residual add
// with drop-path, drop-path alone, the CLS/temp-token merge of spec §2.2.2 step 3, row gather /
// scatter for re-sequencing tokens between the temporal and spatial layouts, and dtype casts.
// Matrices are row-major [R, C].
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// x[r, c] += bias[c] (in place).
template <typename T>
__device__ void bias_add_impl(T* x, const float* bias, long R, int C) {
  GRID_STRIDE(i, R * C) x[i] = from_f32<T>(to_f32(x[i]) + bias[i % C]);
}

// Drop-path (timm): out[r] = x[r]·scale[r / rows_per_group], scale = keep/(1 − rate) ∈ {0, 1/(1−rate)}
// drawn on the host per group (sample, (sample, location) or (sample, frame): spec §2.2).
// The backward is the same op applied to the gradient.
template <typename T>
__device__ void drop_path_impl(const T* x, const float* scale, T* out, long R, int C,
                               int rows_per_group) {
  GRID_STRIDE(i, R * C) out[i] = from_f32<T>(to_f32(x[i]) * scale[(i / C) / rows_per_group]);
}

// out = a + drop_path(b): the residual connection of every branch.
template <typename T>
__device__ void residual_drop_path_impl(const T* a, const T* b, const float* scale, T* out, long R,
                                        int C, int rows_per_group) {
  GRID_STRIDE(i, R * C)
  out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]) * scale[(i / C) / rows_per_group]);
}

// Token merge (spec §2.2.2 step 3): out[b] = base[b] + mean_g src[(b·G + g)·seq_len + pos], rows of C.
// CLS: G = T frames, seq_len 197, pos 0; temp token: G = 196 locations, seq_len T+1, pos T.
template <typename T>
__device__ void token_merge_fwd_impl(const T* base, long base_stride, const T* src, T* out,
                                     long out_stride, int B, int G, int seq_len, int pos, int C) {
  GRID_STRIDE(i, (long)B * C) {
    const long b = i / C;
    const int c = (int)(i % C);
    float acc = 0.0f;
    for (int g = 0; g < G; ++g) acc += to_f32(src[((b * G + g) * seq_len + pos) * C + c]);
    out[b * out_stride + c] = from_f32<T>(to_f32(base[b * base_stride + c]) + acc / G);
  }
}

// d src[(b·G + g)·seq_len + pos] = d out[b] / G (written); d base = d out is the caller's copy.
template <typename T>
__device__ void token_merge_bwd_impl(const T* g_out, long out_stride, T* g_src, int B, int G,
                                     int seq_len, int pos, int C) {
  GRID_STRIDE(i, (long)B * G * C) {
    const long bg = i / C;
    const int c = (int)(i % C);
    const long b = bg / G;
    g_src[(bg * seq_len + pos) * C + c] = from_f32<T>(to_f32(g_out[b * out_stride + c]) / G);
  }
}

// out[r] = src[idx[r]] (rows of C).
template <typename T>
__device__ void gather_rows_impl(const T* src, const int* idx, T* out, long R, int C) {
  GRID_STRIDE(i, R * C) out[i] = src[(long)idx[i / C] * C + (i % C)];
}

// dst[idx[r]] += src[r]; idx must be injective (checked on the host), so no atomics are needed.
template <typename T>
__device__ void scatter_add_rows_impl(const T* src, const int* idx, T* dst, long R, int C) {
  GRID_STRIDE(i, R * C) {
    const long d = (long)idx[i / C] * C + (i % C);
    dst[d] = from_f32<T>(to_f32(dst[d]) + to_f32(src[i]));
  }
}

// out = a + b.
template <typename T>
__device__ void add_impl(const T* a, const T* b, T* out, long n) {
  GRID_STRIDE(i, n) out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

// Stage 1 of a deterministic column sum (bias gradient): partial[blockIdx.y][c] = Σ rows of block.
// Launch block (32, 8), grid (ceil(C/32), ceil(R/rows_per_block)).
template <typename T>
__device__ void col_sum_partial_impl(const T* x, float* partial, int R, int C, int rows_per_block) {
  __shared__ float sh[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block, r1 = min(R, r0 + rows_per_block);
  float acc = 0.0f;
  if (c < C)
    for (int r = r0 + threadIdx.y; r < r1; r += 8) acc += to_f32(x[(long)r * C + c]);
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int k = 0; k < 8; ++k) t += sh[k][threadIdx.x];
    partial[(long)blockIdx.y * C + c] = t;
  }
}

// Stage 2: out[c] += Σ_blocks partial[k][c] (accumulates into the gradient).
extern "C" __global__ void col_sum_finish(const float* partial, int nblocks, int C, float* out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float t = 0.0f;
  for (int k = 0; k < nblocks; ++k) t += partial[(long)k * C + c];
  out[c] += t;
}

// y[i] += alpha·x[i].
extern "C" __global__ void axpy_f32(float alpha, const float* x, float* y, long n) {
  GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// x[i] *= m[i] (dropout masks).
extern "C" __global__ void mul_inplace_f32(float* x, const float* m, long n) {
  GRID_STRIDE(i, n) x[i] *= m[i];
}

// x[g·group_len + i] *= scale[g] for g < groups (in-place drop-path on contiguous row groups).
extern "C" __global__ void scale_groups_f32(float* x, const float* scale, long groups, long group_len) {
  GRID_STRIDE(i, groups * group_len) x[i] *= scale[i / group_len];
}

extern "C" __global__ void cast_f32_bf16(const float* x, bf16* y, long n) {
  GRID_STRIDE(i, n) y[i] = __float2bfloat16(x[i]);
}
extern "C" __global__ void cast_bf16_f32(const bf16* x, float* y, long n) {
  GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]);
}

#define EW_ENTRY(T, S)                                                                            \
  extern "C" __global__ void bias_add_##S(T* x, const float* bias, long R, int C) {               \
    bias_add_impl<T>(x, bias, R, C);                                                              \
  }                                                                                               \
  extern "C" __global__ void drop_path_##S(const T* x, const float* scale, T* out, long R, int C, \
                                           int rows_per_group) {                                  \
    drop_path_impl<T>(x, scale, out, R, C, rows_per_group);                                       \
  }                                                                                               \
  extern "C" __global__ void residual_drop_path_##S(const T* a, const T* b, const float* scale,   \
                                                    T* out, long R, int C, int rows_per_group) {  \
    residual_drop_path_impl<T>(a, b, scale, out, R, C, rows_per_group);                           \
  }                                                                                               \
  extern "C" __global__ void token_merge_fwd_##S(const T* base, long base_stride, const T* src,   \
                                                 T* out, long out_stride, int B, int G,           \
                                                 int seq_len, int pos, int C) {                   \
    token_merge_fwd_impl<T>(base, base_stride, src, out, out_stride, B, G, seq_len, pos, C);      \
  }                                                                                               \
  extern "C" __global__ void token_merge_bwd_##S(const T* g_out, long out_stride, T* g_src, int B, \
                                                 int G, int seq_len, int pos, int C) {            \
    token_merge_bwd_impl<T>(g_out, out_stride, g_src, B, G, seq_len, pos, C);                     \
  }                                                                                               \
  extern "C" __global__ void gather_rows_##S(const T* src, const int* idx, T* out, long R, int C) { \
    gather_rows_impl<T>(src, idx, out, R, C);                                                     \
  }                                                                                               \
  extern "C" __global__ void scatter_add_rows_##S(const T* src, const int* idx, T* dst, long R,   \
                                                  int C) {                                        \
    scatter_add_rows_impl<T>(src, idx, dst, R, C);                                                \
  }                                                                                               \
  extern "C" __global__ void add_##S(const T* a, const T* b, T* out, long n) {                    \
    add_impl<T>(a, b, out, n);                                                                    \
  }                                                                                               \
  extern "C" __global__ void col_sum_partial_##S(const T* x, float* partial, int R, int C,        \
                                                 int rows_per_block) {                            \
    col_sum_partial_impl<T>(x, partial, R, C, rows_per_block);                                    \
  }
FOR_FLOAT_TYPES(EW_ENTRY)
