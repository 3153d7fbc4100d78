// Temporal Conv3d of the hm head (kernel (3,1,1), padding (1,0,0), stride 1; spec §2.3) as
// im2col + cuBLAS GEMM. Channel-last layout x[B, T, S, Cin]; columns ordered (ci, k) to match the
// PyTorch weight [Cout, Cin, 3, 1, 1] flattened to [Cout, 3·Cin].
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// cols[(b, t, s), ci·3 + k] = x[b, t + k − 1, s, ci], zero outside 0..T.
template <typename T>
__device__ void conv3d_im2col_impl(const T* x, T* cols, int B, int TT, int S, int Cin) {
  const long K = 3L * Cin;
  GRID_STRIDE(idx, (long)B * TT * S * K) {
    const long col = idx % K, row = idx / K;
    const int k = (int)(col % 3);
    const long ci = col / 3;
    const long s = row % S, t = (row / S) % TT, b = row / ((long)S * TT);
    const long ts = t + k - 1;
    cols[idx] = (ts >= 0 && ts < TT) ? x[((b * TT + ts) * S + s) * Cin + ci] : from_f32<T>(0.0f);
  }
}

// dx[b, t, s, ci] = Σ_k dcols[(b, t − k + 1, s), ci·3 + k] over valid taps (written).
template <typename T>
__device__ void conv3d_col2im_impl(const T* dcols, T* dx, int B, int TT, int S, int Cin) {
  const long K = 3L * Cin;
  GRID_STRIDE(idx, (long)B * TT * S * Cin) {
    const long ci = idx % Cin, row = idx / Cin;
    const long s = row % S, t = (row / S) % TT, b = row / ((long)S * TT);
    float acc = 0.0f;
    for (int k = 0; k < 3; ++k) {
      const long to = t - k + 1;
      if (to >= 0 && to < TT) acc += to_f32(dcols[((b * TT + to) * S + s) * K + ci * 3 + k]);
    }
    dx[idx] = from_f32<T>(acc);
  }
}

#define CONV_ENTRY(T, S)                                                                        \
  extern "C" __global__ void conv3d_im2col_##S(const T* x, T* cols, int B, int TT, int Sc,      \
                                               int Cin) {                                       \
    conv3d_im2col_impl<T>(x, cols, B, TT, Sc, Cin);                                             \
  }                                                                                             \
  extern "C" __global__ void conv3d_col2im_##S(const T* dcols, T* dx, int B, int TT, int Sc,    \
                                               int Cin) {                                       \
    conv3d_col2im_impl<T>(dcols, dx, B, TT, Sc, Cin);                                           \
  }
FOR_FLOAT_TYPES(CONV_ENTRY)
