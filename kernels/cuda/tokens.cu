// Token re-sequencing of the divided space-time block (spec §2.2.1–2.2.2), matching the Backend
// trait's layout (kernels/src/backend.rs): per sample L = 2 + N·T tokens of width C, index 0 = CLS,
// 1 + n·T + t = patch n of frame t, L − 1 = temp token. Temporal sequences are [B·N, T+1, C]
// (τ last), spatial sequences [B·T, 1+N, C] (CLS first). Backward kernels accumulate (+=) and are
// written so that each thread owns its destination elements (no atomics, deterministic).
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (n); i += (long)gridDim.x * blockDim.x)

// tok[b, j] from the patch embedding e[(b·T + t)·N + n], cls, pos [(1+N), C], time [(T+1), C].
// compat != 0: the reference's temp token (patch b of frame 0 of sample 0 + pos[1+b] + time[0]).
template <typename T>
__device__ void embed_fwd_impl(const T* e, const T* cls, const T* pos, const T* time, const T* temp,
                               T* tok, int B, int TT, int N, int C, int compat) {
  const long L = 2 + (long)N * TT;
  GRID_STRIDE(idx, B * L * C) {
    const int i = (int)(idx % C);
    const long j = (idx / C) % L;
    const long b = idx / (C * L);
    float v;
    if (j == 0) {
      v = to_f32(cls[i]) + to_f32(pos[i]);
    } else if (j == L - 1) {
      v = compat ? to_f32(e[b * C + i]) + to_f32(pos[(1 + b) * C + i]) + to_f32(time[i])
                 : to_f32(temp[i]) + to_f32(time[(long)TT * C + i]);
    } else {
      const long n = (j - 1) / TT, t = (j - 1) % TT;
      v = to_f32(e[((b * TT + t) * N + n) * C + i]) + to_f32(pos[(1 + n) * C + i]) +
          to_f32(time[t * C + i]);
    }
    tok[idx] = from_f32<T>(v);
  }
}

// de (overwritten) from dtok: patch rows copy; in compat mode e row b (sample 0, frame 0, patch b)
// also receives the temp-token gradient of sample b.
template <typename T>
__device__ void embed_bwd_e_impl(const T* dtok, T* de, int B, int TT, int N, int C, int compat) {
  const long L = 2 + (long)N * TT;
  GRID_STRIDE(idx, (long)B * TT * N * C) {
    const int i = (int)(idx % C);
    const long row = idx / C;
    const long n = row % N, t = (row / N) % TT, b = row / ((long)N * TT);
    float v = to_f32(dtok[(b * L + 1 + n * TT + t) * C + i]);
    if (compat && row < B) v += to_f32(dtok[(row * L + L - 1) * C + i]);
    de[idx] = from_f32<T>(v);
  }
}

// dcls, dpos (rows 0..N), dtime (rows 0..T), dtemp accumulated; one thread per parameter element.
template <typename T>
__device__ void embed_bwd_params_impl(const T* dtok, T* dcls, T* dpos, T* dtime, T* dtemp, int B,
                                      int TT, int N, int C, int compat) {
  const long L = 2 + (long)N * TT;
  const long npos = (long)(N + 1) * C, ntime = (long)(TT + 1) * C;
  GRID_STRIDE(idx, npos + ntime) {
    if (idx < npos) {
      const int i = (int)(idx % C);
      const long p = idx / C;
      float s = 0.0f;
      if (p == 0) {
        for (long b = 0; b < B; ++b) s += to_f32(dtok[b * L * C + i]);
        dcls[i] = from_f32<T>(to_f32(dcls[i]) + s);
      } else {
        const long n = p - 1;
        for (long b = 0; b < B; ++b)
          for (long t = 0; t < TT; ++t) s += to_f32(dtok[(b * L + 1 + n * TT + t) * C + i]);
        if (compat && n < B) s += to_f32(dtok[(n * L + L - 1) * C + i]);
      }
      dpos[idx] = from_f32<T>(to_f32(dpos[idx]) + s);
    } else {
      const long k = idx - npos;
      const int i = (int)(k % C);
      const long t = k / C;
      float s = 0.0f;
      if (t < TT) {
        for (long b = 0; b < B; ++b)
          for (long n = 0; n < N; ++n) s += to_f32(dtok[(b * L + 1 + n * TT + t) * C + i]);
        if (compat && t == 0)
          for (long b = 0; b < B; ++b) s += to_f32(dtok[(b * L + L - 1) * C + i]);
      } else if (!compat) {
        for (long b = 0; b < B; ++b) s += to_f32(dtok[(b * L + L - 1) * C + i]);
        dtemp[i] = from_f32<T>(to_f32(dtemp[i]) + s);
      }
      dtime[k] = from_f32<T>(to_f32(dtime[k]) + s);
    }
  }
}

// seq[b·N + n, t] = tok[b, 1 + n·T + t] (t < T); seq[b·N + n, T] = tok[b, L − 1].
template <typename T>
__device__ void temporal_gather_fwd_impl(const T* tok, T* seq, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  GRID_STRIDE(idx, (long)B * N * (TT + 1) * C) {
    const int i = (int)(idx % C);
    const long t = (idx / C) % (TT + 1);
    const long bn = idx / ((long)C * (TT + 1));
    const long b = bn / N, n = bn % N;
    const long j = t < TT ? 1 + n * TT + t : L - 1;
    seq[idx] = tok[(b * L + j) * C + i];
  }
}

// dtok += scatter of dseq; the temp row receives Σ_n.
template <typename T>
__device__ void temporal_gather_bwd_impl(const T* dseq, T* dtok, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  const long npatch = (long)B * N * TT * C;
  GRID_STRIDE(idx, npatch + (long)B * C) {
    if (idx < npatch) {
      const int i = (int)(idx % C);
      const long t = (idx / C) % TT;
      const long bn = idx / ((long)C * TT);
      const long b = bn / N, n = bn % N;
      const long d = (b * L + 1 + n * TT + t) * C + i;
      dtok[d] = from_f32<T>(to_f32(dtok[d]) + to_f32(dseq[(bn * (TT + 1) + t) * C + i]));
    } else {
      const long k = idx - npatch;
      const int i = (int)(k % C);
      const long b = k / C;
      float s = 0.0f;
      for (long n = 0; n < N; ++n) s += to_f32(dseq[((b * N + n) * (TT + 1) + TT) * C + i]);
      const long d = (b * L + L - 1) * C + i;
      dtok[d] = from_f32<T>(to_f32(dtok[d]) + s);
    }
  }
}

// seq[b·T + t, 0] = tok[b, 0]; seq[b·T + t, 1 + n] = tok[b, 1 + n·T + t] + r[b·N + n, t].
template <typename T>
__device__ void spatial_gather_fwd_impl(const T* tok, const T* r, T* seq, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  GRID_STRIDE(idx, (long)B * TT * (N + 1) * C) {
    const int i = (int)(idx % C);
    const long p = (idx / C) % (N + 1);
    const long bt = idx / ((long)C * (N + 1));
    const long b = bt / TT, t = bt % TT;
    if (p == 0) {
      seq[idx] = tok[b * L * C + i];
    } else {
      const long n = p - 1;
      seq[idx] = from_f32<T>(to_f32(tok[(b * L + 1 + n * TT + t) * C + i]) +
                             to_f32(r[((b * N + n) * (TT + 1) + t) * C + i]));
    }
  }
}

// dtok[b, 0] += Σ_t dseq[b·T + t, 0]; dtok[b, 1 + n·T + t] += g and dr[b·N + n, t] += g with
// g = dseq[b·T + t, 1 + n].
template <typename T>
__device__ void spatial_gather_bwd_impl(const T* dseq, T* dtok, T* dr, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  const long npatch = (long)B * N * TT * C;
  GRID_STRIDE(idx, npatch + (long)B * C) {
    if (idx < npatch) {
      const int i = (int)(idx % C);
      const long t = (idx / C) % TT;
      const long bn = idx / ((long)C * TT);
      const long b = bn / N, n = bn % N;
      const float g = to_f32(dseq[((b * TT + t) * (N + 1) + 1 + n) * C + i]);
      const long d = (b * L + 1 + n * TT + t) * C + i;
      dtok[d] = from_f32<T>(to_f32(dtok[d]) + g);
      const long dd = ((b * N + n) * (TT + 1) + t) * C + i;
      dr[dd] = from_f32<T>(to_f32(dr[dd]) + g);
    } else {
      const long k = idx - npatch;
      const int i = (int)(k % C);
      const long b = k / C;
      float s = 0.0f;
      for (long t = 0; t < TT; ++t) s += to_f32(dseq[(b * TT + t) * (N + 1) * C + i]);
      const long d = b * L * C + i;
      dtok[d] = from_f32<T>(to_f32(dtok[d]) + s);
    }
  }
}

// Block merge: CLS' = CLS + mean_t v[bt, 0]; p' = p + r[bn, t] + v[bt, 1 + n];
// τ' = τ + mean_n r[bn, T].
template <typename T>
__device__ void merge_fwd_impl(const T* tok, const T* r, const T* v, T* y, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  GRID_STRIDE(idx, (long)B * L * C) {
    const int i = (int)(idx % C);
    const long j = (idx / C) % L;
    const long b = idx / ((long)C * L);
    float out = to_f32(tok[idx]);
    if (j == 0) {
      float s = 0.0f;
      for (long t = 0; t < TT; ++t) s += to_f32(v[(b * TT + t) * (N + 1) * C + i]);
      out += s * (1.0f / TT);
    } else if (j == L - 1) {
      float s = 0.0f;
      for (long n = 0; n < N; ++n) s += to_f32(r[((b * N + n) * (TT + 1) + TT) * C + i]);
      out += s * (1.0f / N);
    } else {
      const long n = (j - 1) / TT, t = (j - 1) % TT;
      out += to_f32(r[((b * N + n) * (TT + 1) + t) * C + i]) +
             to_f32(v[((b * TT + t) * (N + 1) + 1 + n) * C + i]);
    }
    y[idx] = from_f32<T>(out);
  }
}

// Backward of the merge, accumulating into dtok, dr and dv; the index space is the concatenation
// of the three destinations so every element has exactly one writer.
template <typename T>
__device__ void merge_bwd_impl(const T* dy, T* dtok, T* dr, T* dv, int B, int TT, int N, int C) {
  const long L = 2 + (long)N * TT;
  const long ntok = (long)B * L * C, nr = (long)B * N * (TT + 1) * C, nv = (long)B * TT * (N + 1) * C;
  GRID_STRIDE(idx, ntok + nr + nv) {
    if (idx < ntok) {
      dtok[idx] = from_f32<T>(to_f32(dtok[idx]) + to_f32(dy[idx]));
    } else if (idx < ntok + nr) {
      const long k = idx - ntok;
      const int i = (int)(k % C);
      const long t = (k / C) % (TT + 1);
      const long bn = k / ((long)C * (TT + 1));
      const long b = bn / N, n = bn % N;
      const float g = t < TT ? to_f32(dy[(b * L + 1 + n * TT + t) * C + i])
                             : to_f32(dy[(b * L + L - 1) * C + i]) * (1.0f / N);
      dr[k] = from_f32<T>(to_f32(dr[k]) + g);
    } else {
      const long k = idx - ntok - nr;
      const int i = (int)(k % C);
      const long p = (k / C) % (N + 1);
      const long bt = k / ((long)C * (N + 1));
      const long b = bt / TT, t = bt % TT;
      const float g = p == 0 ? to_f32(dy[b * L * C + i]) * (1.0f / TT)
                             : to_f32(dy[(b * L + 1 + (p - 1) * TT + t) * C + i]);
      dv[k] = from_f32<T>(to_f32(dv[k]) + g);
    }
  }
}

#define TOK_ENTRY(T, S)                                                                            \
  extern "C" __global__ void embed_fwd_##S(const T* e, const T* cls, const T* pos, const T* time,  \
                                           const T* temp, T* tok, int B, int TT, int N, int C,     \
                                           int compat) {                                           \
    embed_fwd_impl<T>(e, cls, pos, time, temp, tok, B, TT, N, C, compat);                          \
  }                                                                                                \
  extern "C" __global__ void embed_bwd_e_##S(const T* dtok, T* de, int B, int TT, int N, int C,    \
                                             int compat) {                                         \
    embed_bwd_e_impl<T>(dtok, de, B, TT, N, C, compat);                                            \
  }                                                                                                \
  extern "C" __global__ void embed_bwd_params_##S(const T* dtok, T* dcls, T* dpos, T* dtime,       \
                                                  T* dtemp, int B, int TT, int N, int C,           \
                                                  int compat) {                                    \
    embed_bwd_params_impl<T>(dtok, dcls, dpos, dtime, dtemp, B, TT, N, C, compat);                 \
  }                                                                                                \
  extern "C" __global__ void temporal_gather_fwd_##S(const T* tok, T* seq, int B, int TT, int N,   \
                                                     int C) {                                      \
    temporal_gather_fwd_impl<T>(tok, seq, B, TT, N, C);                                            \
  }                                                                                                \
  extern "C" __global__ void temporal_gather_bwd_##S(const T* dseq, T* dtok, int B, int TT, int N, \
                                                     int C) {                                      \
    temporal_gather_bwd_impl<T>(dseq, dtok, B, TT, N, C);                                          \
  }                                                                                                \
  extern "C" __global__ void spatial_gather_fwd_##S(const T* tok, const T* r, T* seq, int B,       \
                                                    int TT, int N, int C) {                        \
    spatial_gather_fwd_impl<T>(tok, r, seq, B, TT, N, C);                                          \
  }                                                                                                \
  extern "C" __global__ void spatial_gather_bwd_##S(const T* dseq, T* dtok, T* dr, int B, int TT,  \
                                                    int N, int C) {                                \
    spatial_gather_bwd_impl<T>(dseq, dtok, dr, B, TT, N, C);                                       \
  }                                                                                                \
  extern "C" __global__ void merge_fwd_##S(const T* tok, const T* r, const T* v, T* y, int B,      \
                                           int TT, int N, int C) {                                 \
    merge_fwd_impl<T>(tok, r, v, y, B, TT, N, C);                                                  \
  }                                                                                                \
  extern "C" __global__ void merge_bwd_##S(const T* dy, T* dtok, T* dr, T* dv, int B, int TT,      \
                                           int N, int C) {                                         \
    merge_bwd_impl<T>(dy, dtok, dr, dv, B, TT, N, C);                                              \
  }
FOR_FLOAT_TYPES(TOK_ENTRY)
