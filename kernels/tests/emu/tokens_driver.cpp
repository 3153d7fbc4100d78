// Token layout kernels (tokens.cu) on files from the Rust test; launch shapes as backend.rs.
#include "emu_io.h"

static dim3 flat(long n) { return {(unsigned)((n + 255) / 256), 1, 1}; }

int main(int argc, char** argv) {
  g_io_dir = argv[1];
  const int B = std::atoi(argv[2]), T = std::atoi(argv[3]), N = std::atoi(argv[4]), C = std::atoi(argv[5]);
  const long L = 2 + (long)N * T;
  auto e = load("e"), cls = load("cls"), pos = load("pos"), time = load("time"), temp = load("temp");
  auto dtok = load("dtok"), r = load("r"), v = load("v"), acc_tok = load("acc_tok"), acc_r = load("acc_r"), acc_v = load("acc_v");
  auto acc_pos = load("acc_pos"), acc_time = load("acc_time"), acc_c = load("acc_c");
  for (int compat = 0; compat < 2; ++compat) {
    const std::string sfx = compat ? "_compat" : "_clean";
    auto tok = nans(B * L * C);
    emu_launch(flat(B * L * C), {256, 1, 1}, [&] { embed_fwd_impl<float>(e.data(), cls.data(), pos.data(), time.data(), temp.data(), tok.data(), B, T, N, C, compat); });
    save(("tokens" + sfx).c_str(), tok);
    auto de = nans(e.size());
    emu_launch(flat((long)B * T * N * C), {256, 1, 1}, [&] { embed_bwd_e_impl<float>(dtok.data(), de.data(), B, T, N, C, compat); });
    auto dcls = acc_c, dpos = acc_pos, dtime = acc_time, dtemp = acc_c;
    emu_launch(flat((long)(N + T + 2) * C), {256, 1, 1}, [&] { embed_bwd_params_impl<float>(dtok.data(), dcls.data(), dpos.data(), dtime.data(), dtemp.data(), B, T, N, C, compat); });
    save(("de" + sfx).c_str(), de);
    save(("dcls" + sfx).c_str(), dcls);
    save(("dpos" + sfx).c_str(), dpos);
    save(("dtime" + sfx).c_str(), dtime);
    save(("dtemp" + sfx).c_str(), dtemp);
  }
  auto tok = load("tok");
  auto tseq = nans(r.size());
  emu_launch(flat(r.size()), {256, 1, 1}, [&] { temporal_gather_fwd_impl<float>(tok.data(), tseq.data(), B, T, N, C); });
  save("tseq", tseq);
  auto d1 = acc_tok;
  emu_launch(flat((long)B * N * T * C + (long)B * C), {256, 1, 1}, [&] { temporal_gather_bwd_impl<float>(r.data(), d1.data(), B, T, N, C); });
  save("tgather_bwd", d1);
  auto sseq = nans(v.size());
  emu_launch(flat(v.size()), {256, 1, 1}, [&] { spatial_gather_fwd_impl<float>(tok.data(), r.data(), sseq.data(), B, T, N, C); });
  save("sseq", sseq);
  auto d2 = acc_tok, dr2 = acc_r;
  emu_launch(flat((long)B * N * T * C + (long)B * C), {256, 1, 1}, [&] { spatial_gather_bwd_impl<float>(v.data(), d2.data(), dr2.data(), B, T, N, C); });
  save("sgather_bwd_tok", d2);
  save("sgather_bwd_r", dr2);
  auto y = nans(tok.size());
  emu_launch(flat(tok.size()), {256, 1, 1}, [&] { merge_fwd_impl<float>(tok.data(), r.data(), v.data(), y.data(), B, T, N, C); });
  save("merge", y);
  auto d3 = acc_tok, dr3 = acc_r, dv3 = acc_v;
  emu_launch(flat(tok.size() + r.size() + v.size()), {256, 1, 1}, [&] { merge_bwd_impl<float>(tok.data(), d3.data(), dr3.data(), dv3.data(), B, T, N, C); });
  save("merge_bwd_tok", d3);
  save("merge_bwd_r", dr3);
  save("merge_bwd_v", dv3);
  return 0;
}
