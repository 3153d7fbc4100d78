// BatchNorm3d of the hm head in channel-last form x[rows, ch] (spec §2.3: eps 1e-5, momentum 0.05,
// batch statistics in training, biased variance for normalising, unbiased for the running
// estimate). Column reductions are two-stage (per-block partials, then a fixed-order finish) so
// results are deterministic. Launch partial kernels with block (32, 8), grid (ceil(ch/32),
// ceil(rows/rows_per_block)); finish/apply kernels are 1-D.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// partial[blk][c] = Σ_rows-in-block f(x) with f = x (mode 0) or (x − mean[c])² (mode 1).
extern "C" __global__ void bn_col_partial(const float* x, const float* mean, int mode, float* partial,
                                          int R, int C, int rows_per_block) {
  __shared__ float sh[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block, r1 = min(R, r0 + rows_per_block);
  float acc = 0.0f;
  if (c < C) {
    const float mu = mode ? mean[c] : 0.0f;
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float v = x[(long)r * C + c] - mu;
      acc += mode ? v * v : v;
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int k = 0; k < 8; ++k) t += sh[k][threadIdx.x];
    partial[(long)blockIdx.y * C + c] = t;
  }
}

// mean[c] = Σ partial / R.
extern "C" __global__ void bn_mean_finish(const float* partial, int nblocks, int R, int C, float* mean) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float t = 0.0f;
  for (int k = 0; k < nblocks; ++k) t += partial[(long)k * C + c];
  mean[c] = t / R;
}

// rstd from the biased variance; running stats updated with the unbiased one.
extern "C" __global__ void bn_var_finish(const float* partial, int nblocks, int R, int C, float eps,
                                         float momentum, const float* mean, float* rstd,
                                         float* running_mean, float* running_var) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float q = 0.0f;
  for (int k = 0; k < nblocks; ++k) q += partial[(long)k * C + c];
  const float var_b = q / R;
  const float var_u = R > 1 ? q / (R - 1) : var_b;
  rstd[c] = rsqrtf(var_b + eps);
  running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
  running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var_u;
}

// Eval mode: mean/rstd from the running statistics.
extern "C" __global__ void bn_eval_stats(const float* running_mean, const float* running_var,
                                         float* mean, float* rstd, int C, float eps) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  mean[c] = running_mean[c];
  rstd[c] = rsqrtf(running_var[c] + eps);
}

// y = (x − mean)·rstd·γ + β.
extern "C" __global__ void bn_apply(const float* x, const float* gamma, const float* beta,
                                    const float* mean, const float* rstd, float* y, long R, int C) {
  GRID_STRIDE(i, R * C) {
    const int c = (int)(i % C);
    y[i] = (x[i] - mean[c]) * rstd[c] * gamma[c] + beta[c];
  }
}

// partial[blk][c] = Σ dy and partial[blk][C + c] = Σ dy·x̂ over the block's rows.
extern "C" __global__ void bn_bwd_partial(const float* dy, const float* x, const float* mean,
                                          const float* rstd, float* partial, int R, int C,
                                          int rows_per_block) {
  __shared__ float s1[8][33], s2[8][33];
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_block, r1 = min(R, r0 + rows_per_block);
  float a = 0.0f, b = 0.0f;
  if (c < C) {
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float g = dy[(long)r * C + c];
      a += g;
      b += g * (x[(long)r * C + c] - mean[c]) * rstd[c];
    }
  }
  s1[threadIdx.y][threadIdx.x] = a;
  s2[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t1 = 0.0f, t2 = 0.0f;
    for (int k = 0; k < 8; ++k) {
      t1 += s1[k][threadIdx.x];
      t2 += s2[k][threadIdx.x];
    }
    partial[(long)blockIdx.y * 2 * C + c] = t1;
    partial[(long)blockIdx.y * 2 * C + C + c] = t2;
  }
}

// dβ += Σ dy, dγ += Σ dy·x̂; m[c] = Σ dy / R, m[C + c] = Σ dy·x̂ / R for the dx kernel.
extern "C" __global__ void bn_bwd_finish(const float* partial, int nblocks, int R, int C,
                                         float* dgamma, float* dbeta, float* m) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float t1 = 0.0f, t2 = 0.0f;
  for (int k = 0; k < nblocks; ++k) {
    t1 += partial[(long)k * 2 * C + c];
    t2 += partial[(long)k * 2 * C + C + c];
  }
  dbeta[c] += t1;
  dgamma[c] += t2;
  m[c] = t1 / R;
  m[C + c] = t2 / R;
}

// dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)) (written).
extern "C" __global__ void bn_bwd_dx(const float* dy, const float* x, const float* gamma,
                                     const float* mean, const float* rstd, const float* m, float* dx,
                                     long R, int C) {
  GRID_STRIDE(i, R * C) {
    const int c = (int)(i % C);
    const float xh = (x[i] - mean[c]) * rstd[c];
    dx[i] = gamma[c] * rstd[c] * (dy[i] - m[c] - xh * m[C + c]);
  }
}
