// Driver for attention.cu under cuda_emu.h: fused forward/backward vs a double-precision naive
// reference, launched with the same configuration as kernels/src/cuda/ops/attention.rs.
#include <cstdio>
#include <cstdlib>
#include <random>

static double rel(const std::vector<double>& want, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// Random inputs (exactly representable in bf16) and the double-precision reference: out, dqkv and
// the probabilities P[S, H, L, L].
struct Case {
  int S, L, H, D;
  std::vector<float> qkv, dout;
  std::vector<double> out, dq, probs;
};

static Case make_case(int S, int L, int H, int D) {
  const int C = H * D;
  std::mt19937 rng(S * 1000 + L * 10 + D);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> qkv(3L * S * L * C), dout((size_t)S * L * C);
  for (auto& v : qkv) v = __bfloat162float(__float2bfloat16(u(rng)));
  for (auto& v : dout) v = __bfloat162float(__float2bfloat16(u(rng) * 0.5f));
  const double scale = 1.0 / std::sqrt((double)D);
  std::vector<double> out((size_t)S * L * C, 0), dq(qkv.size(), 0), probs((size_t)S * H * L * L);
  for (int s = 0; s < S; ++s)
    for (int h = 0; h < H; ++h) {
      auto at = [&](int tok, int part, int d) { return (double)qkv[((size_t)(s * L + tok) * 3 + part) * C + h * D + d]; };
      std::vector<double> p((size_t)L * L);
      for (int i = 0; i < L; ++i) {
        double mx = -INFINITY;
        for (int j = 0; j < L; ++j) {
          double sc = 0;
          for (int d = 0; d < D; ++d) sc += at(i, 0, d) * scale * at(j, 1, d);
          p[i * L + j] = sc;
          mx = std::max(mx, sc);
        }
        double z = 0;
        for (int j = 0; j < L; ++j) z += (p[i * L + j] = std::exp(p[i * L + j] - mx));
        for (int j = 0; j < L; ++j) p[i * L + j] /= z;
        for (int j = 0; j < L; ++j) probs[(((size_t)s * H + h) * L + i) * L + j] = p[i * L + j];
        for (int d = 0; d < D; ++d) {
          double o = 0;
          for (int j = 0; j < L; ++j) o += p[i * L + j] * at(j, 2, d);
          out[(size_t)(s * L + i) * C + h * D + d] = o;
        }
      }
      auto go = [&](int tok, int d) { return (double)dout[(size_t)(s * L + tok) * C + h * D + d]; };
      for (int i = 0; i < L; ++i) {
        std::vector<double> dp(L);
        double dot = 0;
        for (int j = 0; j < L; ++j) {
          dp[j] = 0;
          for (int d = 0; d < D; ++d) dp[j] += go(i, d) * at(j, 2, d);
          dot += p[i * L + j] * dp[j];
        }
        for (int j = 0; j < L; ++j) {
          const double ds = p[i * L + j] * (dp[j] - dot);
          for (int d = 0; d < D; ++d) {
            dq[((size_t)(s * L + i) * 3 + 0) * C + h * D + d] += scale * ds * at(j, 1, d);
            dq[((size_t)(s * L + j) * 3 + 1) * C + h * D + d] += scale * ds * at(i, 0, d);
            dq[((size_t)(s * L + j) * 3 + 2) * C + h * D + d] += p[i * L + j] * go(i, d);
          }
        }
      }
    }
  return Case{S, L, H, D, qkv, dout, out, dq, probs};
}

template <typename T>
static void run_case(const char* name, int S, int L, int H, int D) {
  const Case c = make_case(S, L, H, D);
  const auto& [S_, L_, H_, D_, qkv, dout, out, dq, probs] = c;
  const double scale = 1.0 / std::sqrt((double)D);
  std::vector<T> qkv_t(qkv.size()), dout_t(dout.size()), out_t(out.size(), from_f32<T>(NAN)), dq_t(dq.size(), from_f32<T>(NAN));
  for (size_t i = 0; i < qkv.size(); ++i) qkv_t[i] = from_f32<T>(qkv[i]);
  for (size_t i = 0; i < dout.size(); ++i) dout_t[i] = from_f32<T>(dout[i]);
  std::vector<float> lse((size_t)S * H * L, NAN), delta((size_t)S * H * L, NAN);
  // Same rule as AttentionShape::launch (4 rows per warp, up to 8 warps, fewer for D > 64), and the
  // same shared-memory sizes, which must fit the emulator's 48 KiB dynamic block.
  enum Kind { Fwd, BwdQ, BwdKv };
  auto dims = [&](Kind k) {
    const int wmax = D <= 64 ? 8 : (k == Fwd ? 4 : 2);
    const int warps = std::min(wmax, (L + 3) / 4), rows = 4 * warps;
    const int ld = (D + 7) / 8 * 8 + 4, tiles = 2 * 32 * ld, pw = warps * 4 * 32;
    const int floats = k == Fwd ? rows * ld + tiles + pw : k == BwdQ ? 2 * rows * ld + tiles + pw : 2 * rows * ld + tiles + 64 + 2 * pw;
    if (floats * 4 > 49152) {
      std::fprintf(stderr, "%s: %d bytes of shared memory exceed 48 KiB\n", name, floats * 4);
      std::exit(1);
    }
    return std::pair<dim3, dim3>{dim3{(unsigned)S, (unsigned)H, (unsigned)((L + rows - 1) / rows)}, dim3{(unsigned)(32 * warps), 1, 1}};
  };
  const auto [gf, bf] = dims(Fwd);
  const auto [gq, bq] = dims(BwdQ);
  const auto [gk, bk] = dims(BwdKv);
  const float sc = (float)scale;
  emu_launch(gf, bf, [&] { attn_fwd_impl<T>(qkv_t.data(), out_t.data(), lse.data(), L, H, D, sc); });
  emu_launch(gq, bq, [&] { attn_bwd_q_impl<T>(qkv_t.data(), out_t.data(), dout_t.data(), lse.data(), delta.data(), dq_t.data(), L, H, D, sc); });
  emu_launch(gk, bk, [&] { attn_bwd_kv_impl<T>(qkv_t.data(), dout_t.data(), lse.data(), delta.data(), dq_t.data(), L, H, D, sc); });
  std::vector<float> og(out.size()), dg(dq.size());
  for (size_t i = 0; i < og.size(); ++i) og[i] = to_f32(out_t[i]);
  for (size_t i = 0; i < dg.size(); ++i) dg[i] = to_f32(dq_t[i]);
  std::printf("%s_out %.3e\n", name, rel(out, og));
  std::printf("%s_dqkv %.3e\n", name, rel(dq, dg));
}

// The one-warp kernel for very short sequences: forward (out, saved P) and backward from P.
template <typename T>
static void run_short(const char* name, int S, int L, int H, int D) {
  const Case c = make_case(S, L, H, D);
  std::vector<T> qkv_t(c.qkv.size()), dout_t(c.dout.size()), out_t(c.out.size(), from_f32<T>(NAN)),
      dq_t(c.dq.size(), from_f32<T>(NAN));
  for (size_t i = 0; i < c.qkv.size(); ++i) qkv_t[i] = from_f32<T>(c.qkv[i]);
  for (size_t i = 0; i < c.dout.size(); ++i) dout_t[i] = from_f32<T>(c.dout[i]);
  std::vector<float> probs(c.probs.size(), NAN);
  const float sc = (float)(1.0 / std::sqrt((double)D));
  // Same launch as AttentionShape::short_launch: SHORT_WARPS warps per block, one per (seq, head).
  const dim3 grid{(unsigned)((S * H + SHORT_WARPS - 1) / SHORT_WARPS), 1, 1}, block{32 * SHORT_WARPS, 1, 1};
  emu_launch(grid, block, [&] { attn_short_fwd_impl<T>(qkv_t.data(), out_t.data(), probs.data(), S, L, H, D, sc); });
  emu_launch(grid, block, [&] { attn_short_bwd_impl<T>(qkv_t.data(), dout_t.data(), probs.data(), dq_t.data(), S, L, H, D, sc); });
  std::vector<float> og(c.out.size()), dg(c.dq.size());
  for (size_t i = 0; i < og.size(); ++i) og[i] = to_f32(out_t[i]);
  for (size_t i = 0; i < dg.size(); ++i) dg[i] = to_f32(dq_t[i]);
  std::printf("%s_out %.3e\n", name, rel(c.out, og));
  std::printf("%s_probs %.3e\n", name, rel(c.probs, probs));
  std::printf("%s_dqkv %.3e\n", name, rel(c.dq, dg));
}

// The kernels around the batched GEMMs: the row softmax and its backward match the reference
// probabilities and the reference softmax gradient.
static void run_gemm_pieces(const char* name, int S, int L, int H, int D) {
  const Case c = make_case(S, L, H, D);
  // Scores from the reference probabilities' logits: log P is a valid logit row (softmax-invariant).
  const long rows = (long)S * H * L;
  std::vector<float> p(c.probs.size()), g(c.probs.size());
  std::vector<double> gref(c.probs.size());
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t i = 0; i < p.size(); ++i) p[i] = (float)std::log(c.probs[i]) + 3.0f;
  for (auto& v : g) v = u(rng);
  for (long r = 0; r < rows; ++r) {
    double dot = 0;
    for (int j = 0; j < L; ++j) dot += c.probs[r * L + j] * g[r * L + j];
    for (int j = 0; j < L; ++j) gref[r * L + j] = c.probs[r * L + j] * (g[r * L + j] - dot);
  }
  const dim3 grid{(unsigned)((rows + 7) / 8), 1, 1}, block{256, 1, 1};
  emu_launch(grid, block, [&] { softmax_rows_f32(p.data(), rows, L); });
  emu_launch(grid, block, [&] { softmax_rows_bwd_f32(p.data(), g.data(), rows, L); });
  std::printf("%s_softmax %.3e\n", name, rel(c.probs, p));
  std::printf("%s_softmax_bwd %.3e\n", name, rel(gref, g));
}

// Pointer arrays of the in-place batched GEMMs: entry b = s·H + h of each operand.
static void run_ptrs() {
  const int S = 5, H = 3, n = S * H;
  std::vector<unsigned long long> out(3 * n, 0);
  emu_launch(dim3{1, 1, 1}, dim3{256, 1, 1}, [&] {
    attn_gemm_ptrs(out.data(), n, H, 1000ull, 700, 11, 2000ull, 900, 13, 3000ull, 300, 17);
  });
  double bad = 0;
  for (int s = 0; s < S; ++s)
    for (int h = 0; h < H; ++h) {
      const int i = s * H + h;
      bad += out[i] != 1000ull + 4ull * (s * 700 + h * 11);
      bad += out[n + i] != 2000ull + 4ull * (s * 900 + h * 13);
      bad += out[2 * n + i] != 3000ull + 4ull * (s * 300 + h * 17);
    }
  std::printf("gemm_ptrs_wrong %.3e\n", bad);
}

int main() {
  run_ptrs();
  run_short<float>("short_f32_L5_D64", 5, 5, 3, 64);
  run_short<float>("short_f32_L8_D20", 3, 8, 2, 20);  // longest short sequence, D not a multiple of 32
  run_short<bf16>("bf16_short_L5_D64", 2, 5, 2, 64);
  run_short<float>("short_f32_L1_D33", 2, 1, 2, 33);  // a single token: P = 1
  run_gemm_pieces("gemm_L197_D64", 2, 197, 2, 64);
  run_gemm_pieces("gemm_L11_D5", 3, 11, 2, 5);

  run_case<float>("f32_temporal_L5_D64", 3, 5, 2, 64);
  run_case<float>("f32_spatial_L197_D64", 2, 197, 2, 64);
  run_case<float>("f32_L17_D16", 2, 17, 3, 16);
  run_case<float>("f32_L40_D96", 1, 40, 1, 96);
  run_case<bf16>("bf16_L37_D64", 2, 37, 2, 64);
  run_case<float>("f32_L70_D128", 1, 70, 2, 128);  // D > 64: fewer warps per block, 4 head-dim registers
  run_case<float>("f32_L33_D18", 1, 33, 2, 18);    // D not a multiple of 4: scalar staging, zero-padded columns
  return 0;
}
