// Self-blended video compositing (spec §4.3 steps 10–11), batched over frames.
// Layouts: src/tgt/out are frames N×H×W×C (HWC, C channels), mask N×H×W, ratio N (one blend ratio r
// per frame; the pipeline repeats the clip's r for its 4 frames). boundary = 4·m·(1−m) uses m
// without r, as in the reference.
#include "common.cuh"

// f32 images: fake = r·m·S + (1 − r·m)·I.
extern "C" __global__ void blend_fwd_f32(const float* src, const float* tgt, const float* mask,
                                         const float* ratio, float* out, float* boundary, int n,
                                         int hw, int c) {
  const long total = (long)n * hw;
  for (long p = blockIdx.x * (long)blockDim.x + threadIdx.x; p < total;
       p += (long)gridDim.x * blockDim.x) {
    const int f = (int)(p / hw);
    const float m = mask[p];
    const float a = ratio[f] * m;
    for (int ch = 0; ch < c; ++ch) {
      const long i = p * c + ch;
      out[i] = a * src[i] + (1.0f - a) * tgt[i];
    }
    boundary[p] = 4.0f * m * (1.0f - m);
  }
}

// Gradients of blend_fwd_f32 given d(out) and d(boundary): dS = r·m·g, dI = (1 − r·m)·g,
// dm = r·Σ_c (S − I)·g + 4·(1 − 2m)·gb.
extern "C" __global__ void blend_bwd_f32(const float* src, const float* tgt, const float* mask,
                                         const float* ratio, const float* g_out,
                                         const float* g_boundary, float* g_src, float* g_tgt,
                                         float* g_mask, int n, int hw, int c) {
  const long total = (long)n * hw;
  for (long p = blockIdx.x * (long)blockDim.x + threadIdx.x; p < total;
       p += (long)gridDim.x * blockDim.x) {
    const int f = (int)(p / hw);
    const float r = ratio[f];
    const float m = mask[p];
    const float a = r * m;
    float gm = 0.0f;
    for (int ch = 0; ch < c; ++ch) {
      const long i = p * c + ch;
      const float g = g_out[i];
      g_src[i] = a * g;
      g_tgt[i] = (1.0f - a) * g;
      gm += (src[i] - tgt[i]) * g;
    }
    g_mask[p] = r * gm + 4.0f * (1.0f - 2.0f * m) * g_boundary[p];
  }
}

// uint8 images as the data pipeline stores them: the blend is computed in f32 and truncated to
// uint8 like the reference's float64 → uint8 cast; the boundary map stays f32 in [0, 1].
extern "C" __global__ void blend_fwd_u8(const unsigned char* src, const unsigned char* tgt,
                                        const float* mask, const float* ratio, unsigned char* out,
                                        float* boundary, int n, int hw, int c) {
  const long total = (long)n * hw;
  for (long p = blockIdx.x * (long)blockDim.x + threadIdx.x; p < total;
       p += (long)gridDim.x * blockDim.x) {
    const int f = (int)(p / hw);
    const float m = mask[p];
    const float a = ratio[f] * m;
    for (int ch = 0; ch < c; ++ch) {
      const long i = p * c + ch;
      float v = a * (float)src[i] + (1.0f - a) * (float)tgt[i];
      v = fminf(fmaxf(v, 0.0f), 255.0f);
      out[i] = (unsigned char)v;  // truncation toward zero, as numpy astype(uint8)
    }
    boundary[p] = 4.0f * m * (1.0f - m);
  }
}
