// Fused multi-head attention for the short sequences of divided space-time attention (spec §2.2.2):
// temporal sequences of T+1 = 5 tokens and spatial sequences of 197 tokens. One kernel handles any
// length with an online softmax over key chunks held in shared memory; f32 accumulation for both the
// f32 and bf16 storage types.
//
// Layouts (the head split/merge permutes happen here, not as separate copies):
//   qkv  [S, L, 3, H, D]  — the qkv Linear output rows as they come from the GEMM (q | k | v, head h
//                           at columns h·D..h·D+D−1 of each third; spec §2.6 row layout)
//   out  [S, L, H·D]      — heads merged, ready for the proj GEMM
//   lse  [S, H, L] f32    — log-sum-exp of the scaled scores, saved for the backward pass
//   dqkv [S, L, 3, H, D]  — gradient w.r.t. qkv (every element written)
// Scores are (scale·q)·kᵀ as in the reference. D ≤ 128.
// Launch: grid (S, H, ceil(L/rows)), block 32·rows threads (one warp per query or key row).
#include "common.cuh"

#define MAXD 128
#define NR (MAXD / 32)
#define CHUNK 32

template <typename T>
__device__ void attn_fwd_impl(const T* qkv, T* out, float* lse, int L, int H, int D, float scale) {
  __shared__ float ks[CHUNK][MAXD];
  __shared__ float vs[CHUNK][MAXD];
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, rows = blockDim.x >> 5;
  const int i = blockIdx.z * rows + warp;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3;
  float q[NR], acc[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int d = lane + 32 * r;
    q[r] = (i < L && d < D) ? to_f32(base[i * row3 + h * D + d]) * scale : 0.0f;
    acc[r] = 0.0f;
  }
  float mx = -INFINITY, l = 0.0f;
  for (int c0 = 0; c0 < L; c0 += CHUNK) {
    const int kc = min(CHUNK, L - c0);
    __syncthreads();
    for (int e = threadIdx.x; e < kc * D; e += blockDim.x) {
      const int j = e / D, d = e % D;
      const T* rowp = base + (long)(c0 + j) * row3 + h * D + d;
      ks[j][d] = to_f32(rowp[C]);
      vs[j][d] = to_f32(rowp[2 * C]);
    }
    __syncthreads();
    if (i < L) {
      for (int j = 0; j < kc; ++j) {
        float part = 0.0f;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) part += q[r] * ks[j][d];
        }
        const float sc = warp_sum(part);
        const float mnew = fmaxf(mx, sc);
        const float corr = __expf(mx - mnew);
        const float p = __expf(sc - mnew);
        l = l * corr + p;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) acc[r] = acc[r] * corr + p * vs[j][d];
        }
        mx = mnew;
      }
    }
  }
  if (i < L) {
    const float inv = 1.0f / l;
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int d = lane + 32 * r;
      if (d < D) out[((long)s * L + i) * C + h * D + d] = from_f32<T>(acc[r] * inv);
    }
    if (lane == 0) lse[((long)s * H + h) * L + i] = mx + logf(l);
  }
}

// dQ for one query row per warp, and delta_i = Σ_d dO_i·O_i saved for the dK/dV kernel.
template <typename T>
__device__ void attn_bwd_q_impl(const T* qkv, const T* out, const T* dout, const float* lse,
                                float* delta, T* dqkv, int L, int H, int D, float scale) {
  __shared__ float ks[CHUNK][MAXD];
  __shared__ float vs[CHUNK][MAXD];
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, rows = blockDim.x >> 5;
  const int i = blockIdx.z * rows + warp;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3;
  float q[NR], go[NR], dq[NR];
  float dl = 0.0f;
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int d = lane + 32 * r;
    const bool ok = i < L && d < D;
    q[r] = ok ? to_f32(base[i * row3 + h * D + d]) * scale : 0.0f;
    go[r] = ok ? to_f32(dout[((long)s * L + i) * C + h * D + d]) : 0.0f;
    const float o = ok ? to_f32(out[((long)s * L + i) * C + h * D + d]) : 0.0f;
    dl += go[r] * o;
    dq[r] = 0.0f;
  }
  dl = warp_sum(dl);
  const float m = i < L ? lse[((long)s * H + h) * L + i] : 0.0f;
  for (int c0 = 0; c0 < L; c0 += CHUNK) {
    const int kc = min(CHUNK, L - c0);
    __syncthreads();
    for (int e = threadIdx.x; e < kc * D; e += blockDim.x) {
      const int j = e / D, d = e % D;
      const T* rowp = base + (long)(c0 + j) * row3 + h * D + d;
      ks[j][d] = to_f32(rowp[C]);
      vs[j][d] = to_f32(rowp[2 * C]);
    }
    __syncthreads();
    if (i < L) {
      for (int j = 0; j < kc; ++j) {
        float ps = 0.0f, pd = 0.0f;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) {
            ps += q[r] * ks[j][d];
            pd += go[r] * vs[j][d];
          }
        }
        const float sc = warp_sum(ps), dp = warp_sum(pd);
        const float ds = __expf(sc - m) * (dp - dl);
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) dq[r] += ds * ks[j][d];
        }
      }
    }
  }
  if (i < L) {
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int d = lane + 32 * r;
      if (d < D) dqkv[((long)s * L + i) * row3 + h * D + d] = from_f32<T>(dq[r] * scale);
    }
    if (lane == 0) delta[((long)s * H + h) * L + i] = dl;
  }
}

// dK and dV for one key row per warp; queries, dO, lse and delta stream through shared memory.
template <typename T>
__device__ void attn_bwd_kv_impl(const T* qkv, const T* dout, const float* lse, const float* delta,
                                 T* dqkv, int L, int H, int D, float scale) {
  __shared__ float qs[CHUNK][MAXD];
  __shared__ float gs[CHUNK][MAXD];
  __shared__ float ls[CHUNK], dls[CHUNK];
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, rows = blockDim.x >> 5;
  const int j = blockIdx.z * rows + warp;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3;
  float k[NR], v[NR], dk[NR], dv[NR];
#pragma unroll
  for (int r = 0; r < NR; ++r) {
    const int d = lane + 32 * r;
    const bool ok = j < L && d < D;
    k[r] = ok ? to_f32(base[j * row3 + C + h * D + d]) : 0.0f;
    v[r] = ok ? to_f32(base[j * row3 + 2 * C + h * D + d]) : 0.0f;
    dk[r] = 0.0f;
    dv[r] = 0.0f;
  }
  for (int c0 = 0; c0 < L; c0 += CHUNK) {
    const int qc = min(CHUNK, L - c0);
    __syncthreads();
    for (int e = threadIdx.x; e < qc * D; e += blockDim.x) {
      const int ii = e / D, d = e % D;
      qs[ii][d] = to_f32(base[(long)(c0 + ii) * row3 + h * D + d]) * scale;
      gs[ii][d] = to_f32(dout[((long)s * L + c0 + ii) * C + h * D + d]);
    }
    for (int e = threadIdx.x; e < qc; e += blockDim.x) {
      ls[e] = lse[((long)s * H + h) * L + c0 + e];
      dls[e] = delta[((long)s * H + h) * L + c0 + e];
    }
    __syncthreads();
    if (j < L) {
      for (int ii = 0; ii < qc; ++ii) {
        float ps = 0.0f, pd = 0.0f;
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) {
            ps += qs[ii][d] * k[r];
            pd += gs[ii][d] * v[r];
          }
        }
        const float sc = warp_sum(ps), dp = warp_sum(pd);
        const float p = __expf(sc - ls[ii]);
        const float ds = p * (dp - dls[ii]);
#pragma unroll
        for (int r = 0; r < NR; ++r) {
          const int d = lane + 32 * r;
          if (d < D) {
            dv[r] += p * gs[ii][d];
            dk[r] += ds * qs[ii][d];  // qs already carries the scale: dS/dk = scale·q
          }
        }
      }
    }
  }
  if (j < L) {
#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const int d = lane + 32 * r;
      if (d < D) {
        dqkv[((long)s * L + j) * row3 + C + h * D + d] = from_f32<T>(dk[r]);
        dqkv[((long)s * L + j) * row3 + 2 * C + h * D + d] = from_f32<T>(dv[r]);
      }
    }
  }
}

#define ATTN_ENTRY(T, S)                                                                         \
  extern "C" __global__ void attn_fwd_##S(const T* qkv, T* out, float* lse, int L, int H, int D, \
                                          float scale) {                                         \
    attn_fwd_impl<T>(qkv, out, lse, L, H, D, scale);                                             \
  }                                                                                              \
  extern "C" __global__ void attn_bwd_q_##S(const T* qkv, const T* out, const T* dout,           \
                                            const float* lse, float* delta, T* dqkv, int L,      \
                                            int H, int D, float scale) {                         \
    attn_bwd_q_impl<T>(qkv, out, dout, lse, delta, dqkv, L, H, D, scale);                        \
  }                                                                                              \
  extern "C" __global__ void attn_bwd_kv_##S(const T* qkv, const T* dout, const float* lse,      \
                                             const float* delta, T* dqkv, int L, int H, int D,   \
                                             float scale) {                                      \
    attn_bwd_kv_impl<T>(qkv, dout, lse, delta, dqkv, L, H, D, scale);                            \
  }
FOR_FLOAT_TYPES(ATTN_ENTRY)
