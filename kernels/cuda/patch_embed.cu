// Patch embedding im2col/col2im (spec §2.2.1 step 1). The Conv2d(3→C, k=p, s=p) becomes
// rows × (3·p·p) @ weightᵀ through cuBLAS; these kernels only move pixels.
// Input clips are B×Cin×T×H×W (the model's input layout); output rows are ordered (b, t, n) with
// n = (H/p)·i + j row-major, columns ordered (cin, kh, kw) to match the weight [C, Cin, p, p].
#include "common.cuh"

template <typename T>
__device__ void unfold_impl(const float* x, T* cols, int b, int cin, int t, int h, int w, int p) {
  const int gh = h / p, gw = w / p, n = gh * gw, k = cin * p * p;
  const long total = (long)b * t * n * k;
  for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;
       idx += (long)gridDim.x * blockDim.x) {
    const int col = (int)(idx % k);
    const long row = idx / k;
    const int patch = (int)(row % n);
    const int frame = (int)((row / n) % t);
    const int bb = (int)(row / ((long)n * t));
    const int kw = col % p, kh = (col / p) % p, ci = col / (p * p);
    const int y = (patch / gw) * p + kh, xx = (patch % gw) * p + kw;
    const long src = ((((long)bb * cin + ci) * t + frame) * h + y) * w + xx;
    cols[idx] = from_f32<T>(x[src]);
  }
}

// Patches do not overlap (stride = kernel), so col2im is a pure scatter: every input pixel that is
// covered receives exactly one column gradient; pixels outside the grid (H or W not a multiple of p)
// get zero.
template <typename T>
__device__ void fold_impl(const T* g_cols, float* g_x, int b, int cin, int t, int h, int w, int p) {
  const int gh = h / p, gw = w / p, n = gh * gw, k = cin * p * p;
  const long total = (long)b * cin * t * h * w;
  for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;
       idx += (long)gridDim.x * blockDim.x) {
    const int xx = (int)(idx % w);
    const int y = (int)((idx / w) % h);
    const int frame = (int)((idx / ((long)w * h)) % t);
    const int ci = (int)((idx / ((long)w * h * t)) % cin);
    const int bb = (int)(idx / ((long)w * h * t * cin));
    const int i = y / p, j = xx / p;
    float v = 0.0f;
    if (i < gh && j < gw) {
      const long row = ((long)bb * t + frame) * n + i * gw + j;
      const int col = (ci * p + (y % p)) * p + (xx % p);
      v = to_f32(g_cols[row * k + col]);
    }
    g_x[idx] = v;
  }
}

#define PATCH_ENTRY(T, S)                                                                        \
  extern "C" __global__ void patch_unfold_##S(const float* x, T* cols, int b, int cin, int t,    \
                                              int h, int w, int p) {                             \
    unfold_impl<T>(x, cols, b, cin, t, h, w, p);                                                 \
  }                                                                                              \
  extern "C" __global__ void patch_fold_##S(const T* g_cols, float* g_x, int b, int cin, int t,  \
                                            int h, int w, int p) {                               \
    fold_impl<T>(g_cols, g_x, b, cin, t, h, w, p);                                               \
  }
FOR_FLOAT_TYPES(PATCH_ENTRY)
