// Elementwise kernels (elementwise.cu) on files from the Rust test.
#include "emu_io.h"

static dim3 flat(long n) { return {(unsigned)((n + 255) / 256), 1, 1}; }

int main(int argc, char** argv) {
  g_io_dir = argv[1];
  const int R = std::atoi(argv[2]), C = std::atoi(argv[3]), PER = std::atoi(argv[4]), RPB = std::atoi(argv[5]);
  auto x = load("x"), a = load("a"), bias = load("bias"), scale = load("scale"), acc = load("acc"), idxf = load("idx");
  const long n = (long)R * C;
  auto xb = x;
  emu_launch(flat(n), {256, 1, 1}, [&] { bias_add_impl<float>(xb.data(), bias.data(), R, C); });
  save("bias_add", xb);
  auto o = nans(n);
  emu_launch(flat(n), {256, 1, 1}, [&] { drop_path_impl<float>(x.data(), scale.data(), o.data(), R, C, PER); });
  save("drop_path", o);
  auto o2 = nans(n);
  emu_launch(flat(n), {256, 1, 1}, [&] { residual_drop_path_impl<float>(a.data(), x.data(), scale.data(), o2.data(), R, C, PER); });
  save("residual_drop_path", o2);
  auto o3 = nans(n);
  emu_launch(flat(n), {256, 1, 1}, [&] { add_impl<float>(a.data(), x.data(), o3.data(), n); });
  save("add", o3);
  const int nb = (R + RPB - 1) / RPB;
  auto partial = nans((size_t)nb * C), cs = acc;
  emu_launch({(unsigned)((C + 31) / 32), (unsigned)nb, 1}, {32, 8, 1}, [&] { col_sum_partial_impl<float>(x.data(), partial.data(), R, C, RPB); });
  emu_launch({(unsigned)((C + 255) / 256), 1, 1}, {256, 1, 1}, [&] { col_sum_finish(partial.data(), nb, C, cs.data()); });
  save("col_sum", cs);
  // token merge: base rows of stride `C*3`, groups of `PER` rows of `seq_len = 3`, position 1.
  const int G = PER, SL = 3, POS = 1, BB = R / (G * SL);
  auto merged = nans((size_t)BB * C);
  emu_launch(flat((long)BB * C), {256, 1, 1}, [&] { token_merge_fwd_impl<float>(a.data(), 3L * C, x.data(), merged.data(), C, BB, G, SL, POS, C); });
  save("token_merge_fwd", merged);
  auto gsrc = std::vector<float>(n, 0.0f);
  emu_launch(flat((long)BB * G * C), {256, 1, 1}, [&] { token_merge_bwd_impl<float>(bias.data(), 0, gsrc.data(), BB, G, SL, POS, C); });
  save("token_merge_bwd", gsrc);
  std::vector<int> idx(idxf.begin(), idxf.end());
  const long ni = idx.size();
  auto gathered = nans(ni * C);
  emu_launch(flat(ni * C), {256, 1, 1}, [&] { gather_rows_impl<float>(x.data(), idx.data(), gathered.data(), ni, C); });
  save("gather", gathered);
  auto scattered = a;
  emu_launch(flat(ni * C), {256, 1, 1}, [&] { scatter_add_rows_impl<float>(gathered.data(), idx.data(), scattered.data(), ni, C); });
  save("scatter_add", scattered);
  std::vector<bf16> hb(n, __float2bfloat16(NAN));
  auto back = nans(n);
  emu_launch(flat(n), {256, 1, 1}, [&] { cast_f32_bf16(x.data(), hb.data(), n); });
  emu_launch(flat(n), {256, 1, 1}, [&] { cast_bf16_f32(hb.data(), back.data(), n); });
  save("cast_roundtrip", back);
  auto y = a;
  emu_launch(flat(n), {256, 1, 1}, [&] { axpy_f32(-0.75f, x.data(), y.data(), n); });
  save("axpy", y);
  auto xm = x;
  emu_launch(flat(n), {256, 1, 1}, [&] { mul_inplace_f32(xm.data(), a.data(), n); });
  save("mul_inplace", xm);
  auto xs = x;
  const long groups = scale.size(), glen = (long)PER * C;
  emu_launch(flat(groups * glen), {256, 1, 1}, [&] { scale_groups_f32(xs.data(), scale.data(), groups, glen); });
  save("scale_groups", xs);
  return 0;
}
