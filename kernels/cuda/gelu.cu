// Exact (erf) GELU as nn.GELU() in the reference MLP and heads: y = x·Φ(x).
// Backward: dx = g·(Φ(x) + x·φ(x)).
#include "common.cuh"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

template <typename T>
__device__ void gelu_fwd_impl(const T* x, T* y, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float v = to_f32(x[i]);
    y[i] = from_f32<T>(0.5f * v * (1.0f + erff(v * INV_SQRT2)));
  }
}

template <typename T>
__device__ void gelu_bwd_impl(const T* x, const T* g, T* dx, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float v = to_f32(x[i]);
    const float cdf = 0.5f * (1.0f + erff(v * INV_SQRT2));
    const float pdf = INV_SQRT_2PI * expf(-0.5f * v * v);
    dx[i] = from_f32<T>(to_f32(g[i]) * (cdf + v * pdf));
  }
}

#define GELU_ENTRY(T, S)                                                                      \
  extern "C" __global__ void gelu_fwd_##S(const T* x, T* y, long n) { gelu_fwd_impl<T>(x, y, n); } \
  extern "C" __global__ void gelu_bwd_##S(const T* x, const T* g, T* dx, long n) {             \
    gelu_bwd_impl<T>(x, g, dx, n);                                                            \
  }
FOR_FLOAT_TYPES(GELU_ENTRY)
