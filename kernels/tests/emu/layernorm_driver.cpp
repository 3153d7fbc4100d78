// Driver for layernorm.cu under cuda_emu.h: forward, dx and the two-stage dγ/dβ reduction vs a
// double-precision reference, launched as kernels/src/cuda/ops/layernorm.rs does (with a smaller
// rows-per-block so several partial blocks are summed).
#include <cstdio>
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

int main() {
  const int R = 50, C = 100, RPB = 16;
  const float eps = 1e-6f;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(R * C), g(R * C), gamma(C), beta(C);
  for (auto& v : x) v = 2 * u(rng) + 0.3f;
  for (auto& v : g) v = u(rng);
  for (auto& v : gamma) v = 1 + 0.5f * u(rng);
  for (auto& v : beta) v = u(rng);
  std::vector<double> y(R * C), dx(R * C), dgamma(C, 0.25), dbeta(C, -0.5);
  for (int r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (int c = 0; c < C; ++c) mu += x[r * C + c];
    mu /= C;
    for (int c = 0; c < C; ++c) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
    const double rs = 1.0 / std::sqrt(var / C + eps);
    double a = 0, b = 0;
    for (int c = 0; c < C; ++c) {
      const double xh = (x[r * C + c] - mu) * rs;
      y[r * C + c] = xh * gamma[c] + beta[c];
      a += g[r * C + c] * gamma[c];
      b += g[r * C + c] * gamma[c] * xh;
      dgamma[c] += g[r * C + c] * xh;
      dbeta[c] += g[r * C + c];
    }
    for (int c = 0; c < C; ++c) {
      const double xh = (x[r * C + c] - mu) * rs;
      dx[r * C + c] = rs * (g[r * C + c] * gamma[c] - a / C - xh * b / C);
    }
  }
  std::vector<float> yo(R * C, NAN), mean(R, NAN), rstd(R, NAN), dxo(R * C, NAN), dg(C, 0.25f), db(C, -0.5f);
  const int nb = (R + RPB - 1) / RPB;
  std::vector<float> partial(nb * 2 * C, NAN);
  emu_launch({(unsigned)((R + 7) / 8), 1, 1}, {256, 1, 1}, [&] { ln_fwd_impl<float>(x.data(), gamma.data(), beta.data(), yo.data(), mean.data(), rstd.data(), R, C, eps); });
  emu_launch({(unsigned)((R + 7) / 8), 1, 1}, {256, 1, 1}, [&] { ln_bwd_x_impl<float>(x.data(), g.data(), gamma.data(), mean.data(), rstd.data(), dxo.data(), R, C); });
  emu_launch({(unsigned)((C + 31) / 32), (unsigned)nb, 1}, {32, 8, 1}, [&] { ln_bwd_params_partial_impl<float>(x.data(), g.data(), mean.data(), rstd.data(), partial.data(), R, C, RPB); });
  emu_launch({(unsigned)((C + 255) / 256), 1, 1}, {256, 1, 1}, [&] { ln_bwd_params_finish(partial.data(), nb, C, dg.data(), db.data()); });
  std::printf("ln_y %.3e\n", rel(y, yo));
  std::printf("ln_dx %.3e\n", rel(dx, dxo));
  std::printf("ln_dgamma_acc %.3e\n", rel(dgamma, dg));
  std::printf("ln_dbeta_acc %.3e\n", rel(dbeta, db));
  return 0;
}
