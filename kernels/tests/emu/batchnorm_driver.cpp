// BatchNorm kernels (batchnorm.cu) in the order backend.rs launches them, training and eval mode.
#include "emu_io.h"

int main(int argc, char** argv) {
  g_io_dir = argv[1];
  const int R = std::atoi(argv[2]), C = std::atoi(argv[3]), RPB = std::atoi(argv[4]);
  const float eps = 1e-5f, momentum = 0.05f;
  auto x = load("x"), gamma = load("gamma"), beta = load("beta"), rm0 = load("rm"), rv0 = load("rv"), dy = load("dy"), acc = load("acc");
  const int nb = (R + RPB - 1) / RPB;
  const dim3 pgrid{(unsigned)((C + 31) / 32), (unsigned)nb, 1}, fgrid{(unsigned)((C + 255) / 256), 1, 1};
  const dim3 agrid{(unsigned)(((long)R * C + 255) / 256), 1, 1};
  for (int train = 0; train < 2; ++train) {
    const std::string sfx = train ? "_train" : "_eval";
    auto rm = rm0, rv = rv0, mean = nans(C), rstd = nans(C), y = nans((size_t)R * C), partial = nans((size_t)nb * 2 * C);
    if (train) {
      int mode = 0;
      emu_launch(pgrid, {32, 8, 1}, [&] { bn_col_partial(x.data(), mean.data(), mode, partial.data(), R, C, RPB); });
      emu_launch(fgrid, {256, 1, 1}, [&] { bn_mean_finish(partial.data(), nb, R, C, mean.data()); });
      mode = 1;
      emu_launch(pgrid, {32, 8, 1}, [&] { bn_col_partial(x.data(), mean.data(), mode, partial.data(), R, C, RPB); });
      emu_launch(fgrid, {256, 1, 1}, [&] { bn_var_finish(partial.data(), nb, R, C, eps, momentum, mean.data(), rstd.data(), rm.data(), rv.data()); });
    } else {
      emu_launch(fgrid, {256, 1, 1}, [&] { bn_eval_stats(rm.data(), rv.data(), mean.data(), rstd.data(), C, eps); });
    }
    emu_launch(agrid, {256, 1, 1}, [&] { bn_apply(x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), y.data(), R, C); });
    auto dx = nans((size_t)R * C), dg = std::vector<float>(acc.begin(), acc.begin() + C), db = std::vector<float>(acc.begin() + C, acc.end()), m = nans(2 * C);
    emu_launch(pgrid, {32, 8, 1}, [&] { bn_bwd_partial(dy.data(), x.data(), mean.data(), rstd.data(), partial.data(), R, C, RPB); });
    emu_launch(fgrid, {256, 1, 1}, [&] { bn_bwd_finish(partial.data(), nb, R, C, dg.data(), db.data(), m.data()); });
    emu_launch(agrid, {256, 1, 1}, [&] { bn_bwd_dx(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), m.data(), dx.data(), R, C); });
    for (auto [name, vec] : {std::pair{"y", &y}, {"mean", &mean}, {"rstd", &rstd}, {"rm", &rm}, {"rv", &rv}, {"dx", &dx}, {"dgamma", &dg}, {"dbeta", &db}})
      save((std::string(name) + sfx).c_str(), *vec);
  }
  return 0;
}
