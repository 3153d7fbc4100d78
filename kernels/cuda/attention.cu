// Fused multi-head attention for the short sequences of divided space-time attention (spec §2.2.2):
// temporal sequences of T+1 = 5 tokens and spatial sequences of 197 tokens. Register-blocked tiles
// (see NOTES.md): a block of W warps owns 4·W query rows (forward, dQ) or key rows (dK/dV); the
// other side streams through shared memory in tiles of 32 rows. Scores are computed with lane =
// key (or query) of the tile and float4 shared reads; P·V-like products with lane = head dim.
// Online softmax and all accumulation in f32 for both the f32 and bf16 storage types; no atomics,
// so results are deterministic.
//
// Layouts (the head split/merge permutes happen here, not as separate copies):
//   qkv  [S, L, 3, H, D]  — the qkv Linear output rows as they come from the GEMM (q | k | v, head h
//                           at columns h·D..h·D+D−1 of each third; spec §2.6 row layout)
//   out  [S, L, H·D]      — heads merged, ready for the proj GEMM
//   lse  [S, H, L] f32    — log-sum-exp of the scaled scores, saved for the backward pass
//   dqkv [S, L, 3, H, D]  — gradient w.r.t. qkv (every element written)
// Scores are (scale·q)·kᵀ as in the reference. D ≤ 128.
// Launch (kernels/src/cuda/ops/attention.rs, AttentionShape::launch): grid (S, H, ceil(L / (4·W))),
// block 32·W threads, dynamic shared memory for the tiles laid out at the top of each kernel
// (at most 48 KiB, so W ≤ 8, and fewer warps for D > 64), with row stride attn_stride(D).
#include "common.cuh"

#define MAXD 128
#define NC (MAXD / 32)  // head-dim registers per lane (d = lane + 32·c)
#define RW 4            // rows per warp
#define TILE 32         // streamed rows per tile (one per lane)

// Row stride in shared memory: D rounded up to 8, plus 4, so that stride/4 is odd and the
// per-lane float4 row reads of a quarter warp hit distinct banks.
__device__ __forceinline__ int attn_stride(int D) { return ((D + 7) & ~7) + 4; }

// Four consecutive elements as f32; p must be 4-element aligned (vector load: 16 B for f32, 8 B
// for bf16, whose f32 value is its bit pattern shifted up by 16).
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const bf16* p) {
  const unsigned long long u = *reinterpret_cast<const unsigned long long*>(p);
  float4 r;
  r.x = __int_as_float((int)((u & 0xffffull) << 16));
  r.y = __int_as_float((int)(((u >> 16) & 0xffffull) << 16));
  r.z = __int_as_float((int)(((u >> 32) & 0xffffull) << 16));
  r.w = __int_as_float((int)(((u >> 48) & 0xffffull) << 16));
  return r;
}

// Stages rows [r0, r0 + n) of one head's D columns (element stride `row`) into dst[n][ld] as f32
// times `mul`; rows ≥ rmax and columns ≥ D are zero-filled up to D rounded to 4. Each lane moves
// 4 columns; a warp covers 32 / g rows per step, g = the column groups rounded up to a power of
// two (no integer division). Vector loads when D % 4 == 0 (row starts are then 4-aligned: every
// offset is a multiple of D and device allocations are 256-byte aligned).
template <typename T>
__device__ __forceinline__ void stage(float* dst, int ld, const T* src, long row, int r0, int n,
                                      int rmax, int D, float mul) {
  const int groups = (D + 3) >> 2;
  int sh = 0;
  while ((1 << sh) < groups) ++sh;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const int g = lane & ((1 << sh) - 1), sub = lane >> sh, per = 32 >> sh;
  const bool vec = (D & 3) == 0;
  if (g >= groups) return;
  const int d = 4 * g;
  for (int j = warp * per + sub; j < n; j += W * per) {
    const int r = r0 + j;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < rmax) {
      const T* sp = src + (long)r * row + d;
      if (vec) {
        v = load4(sp);
      } else {
        v.x = to_f32(sp[0]);
        v.y = d + 1 < D ? to_f32(sp[1]) : 0.0f;
        v.z = d + 2 < D ? to_f32(sp[2]) : 0.0f;
        v.w = d + 3 < D ? to_f32(sp[3]) : 0.0f;
      }
      v.x *= mul;
      v.y *= mul;
      v.z *= mul;
      v.w *= mul;
    }
    *reinterpret_cast<float4*>(dst + j * ld + d) = v;
  }
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }

template <typename T>
__device__ void attn_fwd_impl(const T* qkv, T* out, float* lse, int L, int H, int D, float scale) {
  DYNAMIC_SHARED(float4, pool4);
  float* pool = reinterpret_cast<float*>(pool4);
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const int BQ = RW * W, i0 = blockIdx.z * BQ;
  const int ld = attn_stride(D), Dr = (D + 3) & ~3;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3 + h * D;
  float* qs = pool;               // [BQ][ld]  scale·q
  float* ks = qs + BQ * ld;       // [TILE][ld]
  float* vs = ks + TILE * ld;     // [TILE][ld]
  float* ps = vs + TILE * ld;     // [W][RW][TILE] probabilities of this warp's rows
  float* pw = ps + warp * RW * TILE;
  stage(qs, ld, base, row3, i0, BQ, L, D, scale);
  float acc[RW][NC], m[RW], lsum[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    m[r] = -INFINITY;
    lsum[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) acc[r][c] = 0.0f;
  }
  const float* qw = qs + warp * RW * ld;
  for (int c0 = 0; c0 < L; c0 += TILE) {
    const int kc = min(TILE, L - c0);
    __syncthreads();
    stage(ks, ld, base + C, row3, c0, TILE, L, D, 1.0f);
    stage(vs, ld, base + 2 * C, row3, c0, TILE, L, D, 1.0f);
    __syncthreads();
    float sc[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) sc[r] = 0.0f;
    const float* kl = ks + lane * ld;
#pragma unroll 2
    for (int d = 0; d < Dr; d += 4) {
      const float4 k4 = ld4(kl + d);
#pragma unroll
      for (int r = 0; r < RW; ++r) sc[r] = dot4(ld4(qw + r * ld + d), k4, sc[r]);
    }
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const float sv = lane < kc ? sc[r] : -INFINITY;
      const float mnew = fmaxf(m[r], warp_max(sv));
      const float corr = __expf(m[r] - mnew);
      const float p = __expf(sv - mnew);
      lsum[r] = lsum[r] * corr + p;
#pragma unroll
      for (int c = 0; c < NC; ++c) acc[r][c] *= corr;
      pw[r * TILE + lane] = p;
      m[r] = mnew;
    }
    __syncwarp();
    const int kr = (kc + 3) & ~3;
#pragma unroll 2
    for (int j = 0; j < kr; j += 4) {
      float4 p4[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) p4[r] = ld4(pw + r * TILE + j);
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c * 32 < D) {
          const float* vp = vs + j * ld + lane + 32 * c;
          const float v0 = vp[0], v1 = vp[ld], v2 = vp[2 * ld], v3 = vp[3 * ld];
#pragma unroll
          for (int r = 0; r < RW; ++r)
            acc[r][c] = fmaf(p4[r].w, v3, fmaf(p4[r].z, v2, fmaf(p4[r].y, v1, fmaf(p4[r].x, v0, acc[r][c]))));
        }
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    const int i = i0 + warp * RW + r;
    const float l = warp_sum(lsum[r]);
    if (i < L) {
      const float inv = 1.0f / l;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int d = lane + 32 * c;
        if (d < D) out[((long)s * L + i) * C + h * D + d] = from_f32<T>(acc[r][c] * inv);
      }
      if (lane == 0) lse[((long)s * H + h) * L + i] = m[r] + logf(l);
    }
  }
}

// dQ for 4 query rows per warp, and delta_i = Σ_d dO_i·O_i saved for the dK/dV kernel.
template <typename T>
__device__ void attn_bwd_q_impl(const T* qkv, const T* out, const T* dout, const float* lse,
                                float* delta, T* dqkv, int L, int H, int D, float scale) {
  DYNAMIC_SHARED(float4, pool4);
  float* pool = reinterpret_cast<float*>(pool4);
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const int BQ = RW * W, i0 = blockIdx.z * BQ;
  const int ld = attn_stride(D), Dr = (D + 3) & ~3;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3 + h * D;
  float* qs = pool;               // [BQ][ld]  scale·q
  float* gs = qs + BQ * ld;       // [BQ][ld]  dO
  float* ks = gs + BQ * ld;       // [TILE][ld]
  float* vs = ks + TILE * ld;     // [TILE][ld]
  float* ps = vs + TILE * ld;     // [W][RW][TILE] dS of this warp's rows
  float* pw = ps + warp * RW * TILE;
  stage(qs, ld, base, row3, i0, BQ, L, D, scale);
  stage(gs, ld, dout + (long)s * L * C + h * D, C, i0, BQ, L, D, 1.0f);
  float dq[RW][NC], m[RW], dl[RW];
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    const int i = i0 + warp * RW + r;
    float part = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
      const int d = lane + 32 * c;
      dq[r][c] = 0.0f;
      if (i < L && d < D)
        part += to_f32(dout[((long)s * L + i) * C + h * D + d]) * to_f32(out[((long)s * L + i) * C + h * D + d]);
    }
    dl[r] = warp_sum(part);
    m[r] = i < L ? lse[((long)s * H + h) * L + i] : 0.0f;
  }
  const float* qw = qs + warp * RW * ld;
  const float* gw = gs + warp * RW * ld;
  for (int c0 = 0; c0 < L; c0 += TILE) {
    const int kc = min(TILE, L - c0);
    __syncthreads();
    stage(ks, ld, base + C, row3, c0, TILE, L, D, 1.0f);
    stage(vs, ld, base + 2 * C, row3, c0, TILE, L, D, 1.0f);
    __syncthreads();
    float sc[RW], dp[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) sc[r] = dp[r] = 0.0f;
    const float* kl = ks + lane * ld;
    const float* vl = vs + lane * ld;
    for (int d = 0; d < Dr; d += 4) {
      const float4 k4 = ld4(kl + d), v4 = ld4(vl + d);
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        sc[r] = dot4(ld4(qw + r * ld + d), k4, sc[r]);
        dp[r] = dot4(ld4(gw + r * ld + d), v4, dp[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const float p = lane < kc ? __expf(sc[r] - m[r]) : 0.0f;
      pw[r * TILE + lane] = p * (dp[r] - dl[r]);
    }
    __syncwarp();
    const int kr = (kc + 3) & ~3;
    for (int j = 0; j < kr; j += 4) {
      float4 p4[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) p4[r] = ld4(pw + r * TILE + j);
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c * 32 < D) {
          const float* kp = ks + j * ld + lane + 32 * c;
          const float k0 = kp[0], k1 = kp[ld], k2 = kp[2 * ld], k3 = kp[3 * ld];
#pragma unroll
          for (int r = 0; r < RW; ++r)
            dq[r][c] = fmaf(p4[r].w, k3, fmaf(p4[r].z, k2, fmaf(p4[r].y, k1, fmaf(p4[r].x, k0, dq[r][c]))));
        }
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    const int i = i0 + warp * RW + r;
    if (i < L) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int d = lane + 32 * c;
        if (d < D) dqkv[((long)s * L + i) * row3 + h * D + d] = from_f32<T>(dq[r][c] * scale);
      }
      if (lane == 0) delta[((long)s * H + h) * L + i] = dl[r];
    }
  }
}

// dK and dV for 4 key rows per warp; queries, dO, lse and delta stream through shared memory.
template <typename T>
__device__ void attn_bwd_kv_impl(const T* qkv, const T* dout, const float* lse, const float* delta,
                                 T* dqkv, int L, int H, int D, float scale) {
  DYNAMIC_SHARED(float4, pool4);
  float* pool = reinterpret_cast<float*>(pool4);
  const int s = blockIdx.x, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
  const int BK = RW * W, j0 = blockIdx.z * BK;
  const int ld = attn_stride(D), Dr = (D + 3) & ~3;
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + (long)s * L * row3 + h * D;
  const T* gbase = dout + (long)s * L * C + h * D;
  float* ksb = pool;              // [BK][ld]  this block's keys
  float* vsb = ksb + BK * ld;     // [BK][ld]  this block's values
  float* qs = vsb + BK * ld;      // [TILE][ld] scale·q
  float* gs = qs + TILE * ld;     // [TILE][ld] dO
  float* ls = gs + TILE * ld;     // [TILE] lse
  float* dls = ls + TILE;         // [TILE] delta
  float* pw = dls + TILE + warp * 2 * RW * TILE;  // [RW][TILE] P then [RW][TILE] dS
  float* dsw = pw + RW * TILE;
  stage(ksb, ld, base + C, row3, j0, BK, L, D, 1.0f);
  stage(vsb, ld, base + 2 * C, row3, j0, BK, L, D, 1.0f);
  float dk[RW][NC], dv[RW][NC];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int c = 0; c < NC; ++c) dk[r][c] = dv[r][c] = 0.0f;
  const float* kw = ksb + warp * RW * ld;
  const float* vw = vsb + warp * RW * ld;
  for (int c0 = 0; c0 < L; c0 += TILE) {
    const int qc = min(TILE, L - c0);
    __syncthreads();
    stage(qs, ld, base, row3, c0, TILE, L, D, scale);
    stage(gs, ld, gbase, C, c0, TILE, L, D, 1.0f);
    if (threadIdx.x < TILE) {
      const bool ok = (int)threadIdx.x < qc;
      ls[threadIdx.x] = ok ? lse[((long)s * H + h) * L + c0 + threadIdx.x] : 0.0f;
      dls[threadIdx.x] = ok ? delta[((long)s * H + h) * L + c0 + threadIdx.x] : 0.0f;
    }
    __syncthreads();
    float sc[RW], dp[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) sc[r] = dp[r] = 0.0f;
    const float* ql = qs + lane * ld;
    const float* gl = gs + lane * ld;
    for (int d = 0; d < Dr; d += 4) {
      const float4 q4 = ld4(ql + d), g4 = ld4(gl + d);
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        sc[r] = dot4(ld4(kw + r * ld + d), q4, sc[r]);
        dp[r] = dot4(ld4(vw + r * ld + d), g4, dp[r]);
      }
    }
    const float li = ls[lane], dli = dls[lane];
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const float p = lane < qc ? __expf(sc[r] - li) : 0.0f;
      pw[r * TILE + lane] = p;
      dsw[r * TILE + lane] = p * (dp[r] - dli);
    }
    __syncwarp();
    const int qr = (qc + 3) & ~3;
    for (int i = 0; i < qr; i += 4) {
      float4 p4[RW], s4[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        p4[r] = ld4(pw + r * TILE + i);
        s4[r] = ld4(dsw + r * TILE + i);
      }
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        if (c * 32 < D) {
          const float* gp = gs + i * ld + lane + 32 * c;
          const float* qp = qs + i * ld + lane + 32 * c;
          const float g0 = gp[0], g1 = gp[ld], g2 = gp[2 * ld], g3 = gp[3 * ld];
          const float q0 = qp[0], q1 = qp[ld], q2 = qp[2 * ld], q3 = qp[3 * ld];
#pragma unroll
          for (int r = 0; r < RW; ++r) {
            dv[r][c] = fmaf(p4[r].w, g3, fmaf(p4[r].z, g2, fmaf(p4[r].y, g1, fmaf(p4[r].x, g0, dv[r][c]))));
            // qs already carries the scale: dS/dk = scale·q
            dk[r][c] = fmaf(s4[r].w, q3, fmaf(s4[r].z, q2, fmaf(s4[r].y, q1, fmaf(s4[r].x, q0, dk[r][c]))));
          }
        }
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    const int j = j0 + warp * RW + r;
    if (j < L) {
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int d = lane + 32 * c;
        if (d < D) {
          dqkv[((long)s * L + j) * row3 + C + h * D + d] = from_f32<T>(dk[r][c]);
          dqkv[((long)s * L + j) * row3 + 2 * C + h * D + d] = from_f32<T>(dv[r][c]);
        }
      }
    }
  }
}

// Blocks of 256 threads per SM the register allocation must allow.
#ifndef FWD_MIN_BLOCKS
#define FWD_MIN_BLOCKS 3
#endif
#ifndef BWD_MIN_BLOCKS
#define BWD_MIN_BLOCKS 2
#endif
#define ATTN_ENTRY(T, S)                                                                         \
  extern "C" __global__ void __launch_bounds__(256, FWD_MIN_BLOCKS) attn_fwd_##S(const T* qkv, T* out, float* lse, int L, int H, int D, \
                                          float scale) {                                         \
    attn_fwd_impl<T>(qkv, out, lse, L, H, D, scale);                                             \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(256, BWD_MIN_BLOCKS) attn_bwd_q_##S(const T* qkv, const T* out, const T* dout,           \
                                            const float* lse, float* delta, T* dqkv, int L,      \
                                            int H, int D, float scale) {                         \
    attn_bwd_q_impl<T>(qkv, out, dout, lse, delta, dqkv, L, H, D, scale);                        \
  }                                                                                              \
  extern "C" __global__ void __launch_bounds__(256, BWD_MIN_BLOCKS) attn_bwd_kv_##S(const T* qkv, const T* dout, const float* lse,      \
                                             const float* delta, T* dqkv, int L, int H, int D,   \
                                             float scale) {                                      \
    attn_bwd_kv_impl<T>(qkv, dout, lse, delta, dqkv, L, H, D, scale);                            \
  }
FOR_FLOAT_TYPES(ATTN_ENTRY)

// ---------------------------------------------------------------------------------------------
// Very short sequences (temporal attention: L = T+1 = 5): one warp per (sequence, head), the whole
// head in registers (lane holds head dims lane and lane + 32), scores by warp reduction. The tiled
// kernels above pad such sequences to 32-row tiles; this one reads each element once and saves
// the probabilities P[S, H, L, L] so the backward pass needs no recomputation. Memory-bound.
// Launch: blocks of SHORT_WARPS warps, grid ceil(S·H / SHORT_WARPS); L ≤ SHORT_L, D ≤ 32·SHORT_C.
#define SHORT_L 8
#define SHORT_C 2
#define SHORT_WARPS 4

template <typename T>
__device__ __forceinline__ void attn_short_load(float (&r)[SHORT_L][SHORT_C], const T* base, long stride,
                                                int L, int D, float mul) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < SHORT_L; ++i)
#pragma unroll
    for (int c = 0; c < SHORT_C; ++c) {
      const int d = lane + 32 * c;
      r[i][c] = (i < L && d < D) ? to_f32(base[i * stride + d]) * mul : 0.0f;
    }
}

template <typename T>
__device__ void attn_short_fwd_impl(const T* qkv, T* out, float* probs, int S, int L, int H, int D,
                                    float scale) {
  const int lane = threadIdx.x & 31;
  const long w = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (w >= (long)S * H) return;  // whole warps leave together
  const long s = w / H;
  const int h = (int)(w - s * H);
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + s * L * row3 + (long)h * D;
  float q[SHORT_L][SHORT_C], k[SHORT_L][SHORT_C], v[SHORT_L][SHORT_C];
  attn_short_load(q, base, row3, L, D, scale);
  attn_short_load(k, base + C, row3, L, D, 1.0f);
  attn_short_load(v, base + 2 * C, row3, L, D, 1.0f);
  float* P = probs + w * L * L;
#pragma unroll
  for (int i = 0; i < SHORT_L; ++i) {
    if (i >= L) break;
    float sc[SHORT_L];
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < SHORT_L; ++j) {
      sc[j] = 0.0f;
      if (j >= L) continue;  // uniform across the warp
      float p = 0.0f;
#pragma unroll
      for (int c = 0; c < SHORT_C; ++c) p += q[i][c] * k[j][c];
      p = warp_sum(p);
      sc[j] = p;
      m = fmaxf(m, p);
    }
    float z = 0.0f;
#pragma unroll
    for (int j = 0; j < SHORT_L; ++j) {
      sc[j] = j < L ? __expf(sc[j] - m) : 0.0f;
      z += sc[j];
    }
    const float inv = 1.0f / z;
    float o[SHORT_C] = {};
#pragma unroll
    for (int j = 0; j < SHORT_L; ++j) {
      const float p = sc[j] * inv;
      if (j < L && lane == j) P[i * L + j] = p;
#pragma unroll
      for (int c = 0; c < SHORT_C; ++c) o[c] += p * v[j][c];
    }
    T* dst = out + (s * L + i) * C + (long)h * D;
#pragma unroll
    for (int c = 0; c < SHORT_C; ++c) {
      const int d = lane + 32 * c;
      if (d < D) dst[d] = from_f32<T>(o[c]);
    }
  }
}

template <typename T>
__device__ void attn_short_bwd_impl(const T* qkv, const T* dout, const float* probs, T* dqkv, int S,
                                    int L, int H, int D, float scale) {
  const int lane = threadIdx.x & 31;
  const long w = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (w >= (long)S * H) return;
  const long s = w / H;
  const int h = (int)(w - s * H);
  const long C = (long)H * D, row3 = 3 * C;
  const T* base = qkv + s * L * row3 + (long)h * D;
  float q[SHORT_L][SHORT_C], k[SHORT_L][SHORT_C], v[SHORT_L][SHORT_C], g[SHORT_L][SHORT_C];
  attn_short_load(q, base, row3, L, D, scale);
  attn_short_load(k, base + C, row3, L, D, 1.0f);
  attn_short_load(v, base + 2 * C, row3, L, D, 1.0f);
  attn_short_load(g, dout + s * L * C + (long)h * D, C, L, D, 1.0f);
  float dq[SHORT_L][SHORT_C] = {}, dk[SHORT_L][SHORT_C] = {}, dv[SHORT_L][SHORT_C] = {};
  const float* P = probs + w * L * L;
#pragma unroll
  for (int i = 0; i < SHORT_L; ++i) {
    if (i >= L) break;
    float p[SHORT_L], dp[SHORT_L];
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < SHORT_L; ++j) {
      p[j] = 0.0f;
      dp[j] = 0.0f;
      if (j >= L) continue;  // uniform across the warp
      p[j] = P[i * L + j];
      float t = 0.0f;
#pragma unroll
      for (int c = 0; c < SHORT_C; ++c) t += g[i][c] * v[j][c];
      dp[j] = warp_sum(t);
      dot += p[j] * dp[j];
    }
#pragma unroll
    for (int j = 0; j < SHORT_L; ++j) {
      const float ds = p[j] * (dp[j] - dot);
#pragma unroll
      for (int c = 0; c < SHORT_C; ++c) {
        dv[j][c] += p[j] * g[i][c];
        dq[i][c] += ds * k[j][c];
        dk[j][c] += ds * q[i][c];  // q already carries the scale
      }
    }
  }
  T* dst = dqkv + s * L * row3 + (long)h * D;
#pragma unroll
  for (int i = 0; i < SHORT_L; ++i) {
    if (i >= L) break;
#pragma unroll
    for (int c = 0; c < SHORT_C; ++c) {
      const int d = lane + 32 * c;
      if (d < D) {
        dst[i * row3 + d] = from_f32<T>(dq[i][c] * scale);
        dst[i * row3 + C + d] = from_f32<T>(dk[i][c]);
        dst[i * row3 + 2 * C + d] = from_f32<T>(dv[i][c]);
      }
    }
  }
}

#define ATTN_SHORT_ENTRY(T, S_)                                                                  \
  extern "C" __global__ void attn_short_fwd_##S_(const T* qkv, T* out, float* probs, int S, int L, \
                                                 int H, int D, float scale) {                    \
    attn_short_fwd_impl<T>(qkv, out, probs, S, L, H, D, scale);                                  \
  }                                                                                              \
  extern "C" __global__ void attn_short_bwd_##S_(const T* qkv, const T* dout, const float* probs,  \
                                                 T* dqkv, int S, int L, int H, int D,            \
                                                 float scale) {                                  \
    attn_short_bwd_impl<T>(qkv, dout, probs, dqkv, S, L, H, D, scale);                           \
  }
FOR_FLOAT_TYPES(ATTN_SHORT_ENTRY)

// ---------------------------------------------------------------------------------------------
// Pieces of the GEMM formulation used for long sequences in f32 storage (spatial attention,
// L = 197): the score and value products go to cuBLAS pointer-batched GEMMs that address each
// (sequence, head) matrix inside the row layouts (tensor cores in TF32 math); these kernels do the
// row softmax around them and build the pointer arrays.

// In-place row softmax of scores[rows, L]; one warp per row.
extern "C" __global__ void softmax_rows_f32(float* x, long rows, int L) {
  const int lane = threadIdx.x & 31;
  const long r = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  float* p = x + r * L;
  float m = -INFINITY;
  for (int j = lane; j < L; j += 32) m = fmaxf(m, p[j]);
  m = warp_max(m);
  float z = 0.0f;
  for (int j = lane; j < L; j += 32) {
    const float e = __expf(p[j] - m);
    p[j] = e;
    z += e;
  }
  const float inv = 1.0f / warp_sum(z);
  for (int j = lane; j < L; j += 32) p[j] *= inv;
}

// Softmax backward in place: dp ← p ⊙ (dp − Σ_j p·dp) per row; one warp per row.
extern "C" __global__ void softmax_rows_bwd_f32(const float* p, float* dp, long rows, int L) {
  const int lane = threadIdx.x & 31;
  const long r = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= rows) return;
  const float* pr = p + r * L;
  float* g = dp + r * L;
  float dot = 0.0f;
  for (int j = lane; j < L; j += 32) dot += pr[j] * g[j];
  dot = warp_sum(dot);
  for (int j = lane; j < L; j += 32) g[j] = pr[j] * (g[j] - dot);
}

// Pointer arrays of a batched GEMM over (sequence, head) pairs, so cuBLAS reads the heads where
// the qkv GEMM left them and writes where the next op wants them (no permute copies). Entry
// b = s·H + h of operand i is base_i + 4·(s·stride_s_i + h·stride_h_i) bytes; out holds the A, B
// and C arrays one after another (n entries each).
extern "C" __global__ void attn_gemm_ptrs(unsigned long long* out, int n, int H,
                                          unsigned long long a, long as, long ah,
                                          unsigned long long b, long bs, long bh,
                                          unsigned long long c, long cs, long ch) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const long s = i / H, h = i - s * H;
  out[i] = a + 4ull * (unsigned long long)(s * as + h * ah);
  out[n + i] = b + 4ull * (unsigned long long)(s * bs + h * bh);
  out[2 * n + i] = c + 4ull * (unsigned long long)(s * cs + h * ch);
}
