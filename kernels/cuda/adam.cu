// Optimizer kernels for SAM over Adam (spec §6): global gradient L2 norm, SAM perturbation
// w ← w + ρ·g/(‖g‖ + 1e-12) (scale computed on the device from the norm, no host sync), and the
// fused second step: w ← w − e, then PyTorch Adam with L2 decay added to the gradient.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// Stage 1: partial[blockIdx.x] = Σ x² over a grid-stride slice (fixed grid → deterministic).
extern "C" __global__ void sq_sum_partial(const float* x, long n, float* partial) {
  float acc = 0.0f;
  GRID_STRIDE(i, n) acc += x[i] * x[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Stage 2 (grid 1): total[0] += Σ partial (accumulates across parameter tensors).
extern "C" __global__ void sq_sum_finish(const float* partial, int nblocks, float* total) {
  float acc = 0.0f;
  for (int k = threadIdx.x; k < nblocks; k += blockDim.x) acc += partial[k];
  acc = block_sum(acc);
  if (threadIdx.x == 0) total[0] += acc;
}

// e = ρ·g/(sqrt(sumsq) + 1e-12); w += e.
extern "C" __global__ void sam_perturb(float* w, const float* g, float* e, long n,
                                       const float* sumsq, float rho) {
  const float scale = rho / (sqrtf(sumsq[0]) + 1e-12f);
  GRID_STRIDE(i, n) {
    const float ei = scale * g[i];
    e[i] = ei;
    w[i] += ei;
  }
}

// If restore != 0: w −= e first (SAM second step). Then Adam (torch.optim.Adam, L2 decay):
// g' = g + wd·w; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
// w −= (lr/bc1)·m / (sqrt(v)/sqrt(bc2) + eps), bc_k = 1 − β_k^step.
extern "C" __global__ void adam_step(float* w, const float* g, float* m, float* v, const float* e,
                                     int restore, long n, float lr, float beta1, float beta2,
                                     float eps, float wd, float bc1, float bc2) {
  const float step = lr / bc1, sbc2 = sqrtf(bc2);
  GRID_STRIDE(i, n) {
    float wi = w[i];
    if (restore) wi -= e[i];
    const float gi = g[i] + wd * wi;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - step * mi / (sqrtf(vi) / sbc2 + eps);
  }
}
