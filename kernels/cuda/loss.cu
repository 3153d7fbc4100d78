// Losses of spec §3 on f32 head outputs: BCE with logits (cls), MSE (hm, temp_loc) and a row
// softmax with its backward. Scalar losses are reduced by a single block in a fixed order so the
// result is deterministic; the gradient of the mean loss is written alongside.
// Launch the loss kernels with grid 1, block 1024; softmax with block 256 (8 rows), grid ceil(R/8).
#include "common.cuh"

// loss[0] = mean(max(x,0) − x·y + log(1 + e^{−|x|})); grad = (σ(x) − y)/n.
extern "C" __global__ void bce_logits(const float* x, const float* y, int n, float* loss,
                                      float* grad) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = x[i], t = y[i];
    acc += fmaxf(v, 0.0f) - v * t + log1pf(expf(-fabsf(v)));
    grad[i] = (1.0f / (1.0f + expf(-v)) - t) / n;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) loss[0] = acc / n;
}

// loss[0] = mean((x − y)²); grad = 2(x − y)/n.
extern "C" __global__ void mse(const float* x, const float* y, int n, float* loss, float* grad) {
  float acc = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float d = x[i] - y[i];
    acc += d * d;
    grad[i] = 2.0f * d / n;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) loss[0] = acc / n;
}

// y = softmax(x) per row of C (max-subtracted), one warp per row.
extern "C" __global__ void softmax_fwd(const float* x, float* y, int R, int C) {
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= R) return;
  const float* xr = x + (long)row * C;
  float m = -INFINITY;
  for (int c = lane; c < C; c += 32) m = fmaxf(m, xr[c]);
  m = warp_max(m);
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += expf(xr[c] - m);
  s = warp_sum(s);
  for (int c = lane; c < C; c += 32) y[(long)row * C + c] = expf(xr[c] - m) / s;
}

// dx = y·(g − Σ_c g·y) per row.
extern "C" __global__ void softmax_bwd(const float* y, const float* g, float* dx, int R, int C) {
  const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= R) return;
  const long o = (long)row * C;
  float d = 0.0f;
  for (int c = lane; c < C; c += 32) d += g[o + c] * y[o + c];
  d = warp_sum(d);
  for (int c = lane; c < C; c += 32) dx[o + c] = y[o + c] * (g[o + c] - d);
}
