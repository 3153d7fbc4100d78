// Generic driver for the single-kernel families (gelu, loss, adam, blend, patch_embed, conv3d):
// the part is chosen at compile time (-DFAMILY_...), integer parameters are argv[2..5]; launch
// shapes as in kernels/src/cuda.
#include "emu_io.h"

static dim3 flat(long n) { return {(unsigned)((n + 255) / 256), 1, 1}; }

int main(int argc, char** argv) {
  g_io_dir = argv[1];
  const int p0 = std::atoi(argv[2]), p1 = std::atoi(argv[3]), p2 = std::atoi(argv[4]), p3 = std::atoi(argv[5]);
  (void)p0; (void)p1; (void)p2; (void)p3;
#ifdef FAMILY_GELU
  auto x = load("x"), g = load("g");
  const long n = x.size();
  auto y = nans(n), dx = nans(n);
  emu_launch(flat(n), {256, 1, 1}, [&] { gelu_fwd_impl<float>(x.data(), y.data(), n); });
  emu_launch(flat(n), {256, 1, 1}, [&] { gelu_bwd_impl<float>(x.data(), g.data(), dx.data(), n); });
  save("y", y);
  save("dx", dx);
#endif
#ifdef FAMILY_LOSS
  auto x = load("x"), t = load("t");
  const int n = x.size();
  auto loss = nans(1), grad = nans(n);
  emu_launch({1, 1, 1}, {1024, 1, 1}, [&] { bce_logits(x.data(), t.data(), n, loss.data(), grad.data()); });
  save("bce_loss", loss);
  save("bce_grad", grad);
  emu_launch({1, 1, 1}, {1024, 1, 1}, [&] { mse(x.data(), t.data(), n, loss.data(), grad.data()); });
  save("mse_loss", loss);
  save("mse_grad", grad);
  const int R = p0, C = p1;
  auto sy = nans((size_t)R * C), sdx = nans((size_t)R * C);
  emu_launch({(unsigned)((R + 7) / 8), 1, 1}, {256, 1, 1}, [&] { softmax_fwd(x.data(), sy.data(), R, C); });
  emu_launch({(unsigned)((R + 7) / 8), 1, 1}, {256, 1, 1}, [&] { softmax_bwd(sy.data(), t.data(), sdx.data(), R, C); });
  save("softmax_y", sy);
  save("softmax_dx", sdx);
#endif
#ifdef FAMILY_ADAM
  auto w = load("w"), g = load("g"), g2 = load("g2"), m = load("m"), v = load("v");
  const long n = w.size();
  auto partial = nans(512), total = std::vector<float>(1, 0.0f), e = nans(n);
  emu_launch({512, 1, 1}, {256, 1, 1}, [&] { sq_sum_partial(g.data(), n, partial.data()); });
  emu_launch({1, 1, 1}, {1024, 1, 1}, [&] { sq_sum_finish(partial.data(), 512, total.data()); });
  save("sumsq", total);
  emu_launch(flat(n), {256, 1, 1}, [&] { sam_perturb(w.data(), g.data(), e.data(), n, total.data(), 0.05f); });
  save("perturbed", w);
  const float b1 = 0.9f, b2 = 0.995f;
  const float bc1 = 1 - std::pow(b1, 3), bc2 = 1 - std::pow(b2, 3);
  emu_launch(flat(n), {256, 1, 1}, [&] { adam_step(w.data(), g2.data(), m.data(), v.data(), e.data(), 1, n, 5e-5f, b1, b2, 1e-8f, 1e-4f, bc1, bc2); });
  save("w", w);
  save("m", m);
  save("v", v);
#endif
#ifdef FAMILY_BLEND
  auto src = load("src"), tgt = load("tgt"), mask = load("mask"), ratio = load("ratio"), go = load("go"), gb = load("gb");
  const int n = p0, hw = p1, c = p2;
  auto out = nans(src.size()), bnd = nans(mask.size()), gs = nans(src.size()), gt = nans(src.size()), gm = nans(mask.size());
  emu_launch(flat((long)n * hw), {256, 1, 1}, [&] { blend_fwd_f32(src.data(), tgt.data(), mask.data(), ratio.data(), out.data(), bnd.data(), n, hw, c); });
  emu_launch(flat((long)n * hw), {256, 1, 1}, [&] { blend_bwd_f32(src.data(), tgt.data(), mask.data(), ratio.data(), go.data(), gb.data(), gs.data(), gt.data(), gm.data(), n, hw, c); });
  for (auto [name, vec] : {std::pair{"out", &out}, {"boundary", &bnd}, {"g_src", &gs}, {"g_tgt", &gt}, {"g_mask", &gm}}) save(name, *vec);
  std::vector<unsigned char> s8(src.begin(), src.end()), t8(tgt.begin(), tgt.end()), o8(src.size(), 0);
  emu_launch(flat((long)n * hw), {256, 1, 1}, [&] { blend_fwd_u8(s8.data(), t8.data(), mask.data(), ratio.data(), o8.data(), bnd.data(), n, hw, c); });
  save("out_u8", std::vector<float>(o8.begin(), o8.end()));
#endif
#ifdef FAMILY_PATCH
  auto x = load("x");
  const int B = p0, T = p1, HW = p2, P = p3;
  const long rows = (long)B * T * (HW / P) * (HW / P), k = 3L * P * P;
  auto cols = nans(rows * k), back = nans(x.size());
  emu_launch(flat(rows * k), {256, 1, 1}, [&] { unfold_impl<float>(x.data(), cols.data(), B, 3, T, HW, HW, P); });
  emu_launch(flat(x.size()), {256, 1, 1}, [&] { fold_impl<float>(cols.data(), back.data(), B, 3, T, HW, HW, P); });
  save("cols", cols);
  save("fold", back);
#endif
#ifdef FAMILY_CONV3D
  auto x = load("x"), dcols = load("dcols");
  const int B = p0, T = p1, S = p2, Cin = p3;
  const long rows = (long)B * T * S;
  auto cols = nans(rows * 3 * Cin), dx = nans(x.size());
  emu_launch(flat(rows * 3 * Cin), {256, 1, 1}, [&] { conv3d_im2col_impl<float>(x.data(), cols.data(), B, T, S, Cin); });
  emu_launch(flat(rows * Cin), {256, 1, 1}, [&] { conv3d_col2im_impl<float>(dcols.data(), dx.data(), B, T, S, Cin); });
  save("cols", cols);
  save("dx", dx);
#endif
  return 0;
}
