// LayerNorm over the last dimension (spec §2.2: eps 1e-6), one warp per row, f32 statistics.
// x, y, g, dx: [R, C] in T; gamma, beta, dgamma, dbeta: [C] f32 (parameters stay f32 masters);
// mean, rstd: [R] f32 saved by the forward for the backward.
// Launch row kernels with block 256 (8 rows), grid ceil(R/8).
#include "common.cuh"

template <typename T>
__device__ void ln_fwd_impl(const T* x, const float* gamma, const float* beta, T* y, float* mean,
                            float* rstd, int R, int C, float eps) {
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= R) return;
  const T* xr = x + (long)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += to_f32(xr[c]);
  const float mu = warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = to_f32(xr[c]) - mu;
    v += d * d;
  }
  const float rs = rsqrtf(warp_sum(v) / C + eps);
  T* yr = y + (long)row * C;
  for (int c = lane; c < C; c += 32) yr[c] = from_f32<T>((to_f32(xr[c]) - mu) * rs * gamma[c] + beta[c]);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = g·γ, x̂ = (x − μ)·rstd.
template <typename T>
__device__ void ln_bwd_x_impl(const T* x, const T* g, const float* gamma, const float* mean,
                              const float* rstd, T* dx, int R, int C) {
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= R) return;
  const T* xr = x + (long)row * C;
  const T* gr = g + (long)row * C;
  const float mu = mean[row], rs = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float gh = to_f32(gr[c]) * gamma[c];
    a += gh;
    b += gh * (to_f32(xr[c]) - mu) * rs;
  }
  a = warp_sum(a) / C;
  b = warp_sum(b) / C;
  T* dr = dx + (long)row * C;
  for (int c = lane; c < C; c += 32) {
    const float gh = to_f32(gr[c]) * gamma[c];
    const float xh = (to_f32(xr[c]) - mu) * rs;
    dr[c] = from_f32<T>(rs * (gh - a - xh * b));
  }
}

// Stage 1 of dγ/dβ: per block of `rows_per_block` rows, column partial sums of g·x̂ and g into
// partial[blockIdx.y][0..C) and partial[blockIdx.y][C..2C). Fixed summation order (deterministic).
// Launch: block (32, 8), grid (ceil(C/32), ceil(R/rows_per_block)).
template <typename T>
__device__ void ln_bwd_params_partial_impl(const T* x, const T* g, const float* mean,
                                           const float* rstd, float* partial, int R, int C,
                                           int rows_per_block) {
  __shared__ float sg[8][33], sb[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block, r1 = min(R, r0 + rows_per_block);
  float ag = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float gv = to_f32(g[(long)r * C + c]);
      ag += gv * (to_f32(x[(long)r * C + c]) - mean[r]) * rstd[r];
      ab += gv;
    }
  }
  sg[threadIdx.y][threadIdx.x] = ag;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float tg = 0.0f, tb = 0.0f;
    for (int k = 0; k < 8; ++k) {
      tg += sg[k][threadIdx.x];
      tb += sb[k][threadIdx.x];
    }
    partial[(long)blockIdx.y * 2 * C + c] = tg;
    partial[(long)blockIdx.y * 2 * C + C + c] = tb;
  }
}

// Stage 2: dγ[c] += Σ_blocks partial, dβ[c] += Σ_blocks partial (accumulates into the gradients).
extern "C" __global__ void ln_bwd_params_finish(const float* partial, int nblocks, int C,
                                                float* dgamma, float* dbeta) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float tg = 0.0f, tb = 0.0f;
  for (int k = 0; k < nblocks; ++k) {
    tg += partial[(long)k * 2 * C + c];
    tb += partial[(long)k * 2 * C + C + c];
  }
  dgamma[c] += tg;
  dbeta[c] += tb;
}

#define LN_ENTRY(T, S)                                                                           \
  extern "C" __global__ void ln_fwd_##S(const T* x, const float* gamma, const float* beta, T* y, \
                                        float* mean, float* rstd, int R, int C, float eps) {     \
    ln_fwd_impl<T>(x, gamma, beta, y, mean, rstd, R, C, eps);                                    \
  }                                                                                              \
  extern "C" __global__ void ln_bwd_x_##S(const T* x, const T* g, const float* gamma,            \
                                          const float* mean, const float* rstd, T* dx, int R,    \
                                          int C) {                                               \
    ln_bwd_x_impl<T>(x, g, gamma, mean, rstd, dx, R, C);                                         \
  }                                                                                              \
  extern "C" __global__ void ln_bwd_params_partial_##S(const T* x, const T* g, const float* mean, \
                                                       const float* rstd, float* partial, int R, \
                                                       int C, int rows_per_block) {              \
    ln_bwd_params_partial_impl<T>(x, g, mean, rstd, partial, R, C, rows_per_block);             \
  }
FOR_FLOAT_TYPES(LN_ENTRY)
