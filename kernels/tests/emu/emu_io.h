// File exchange for emulation drivers driven from Rust: argv[1] is a directory of little-endian
// f32 arrays `<name>.bin`; drivers read inputs with `load` and write outputs with `save`; integer
// parameters follow as argv[2..].
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

inline std::string g_io_dir;

inline std::vector<float> load(const char* name) {
  std::string p = g_io_dir + "/" + name + ".bin";
  FILE* f = std::fopen(p.c_str(), "rb");
  if (!f) { std::fprintf(stderr, "missing %s\n", p.c_str()); std::exit(3); }
  std::fseek(f, 0, SEEK_END);
  long n = std::ftell(f) / 4;
  std::fseek(f, 0, SEEK_SET);
  std::vector<float> v(n);
  if (std::fread(v.data(), 4, n, f) != (size_t)n) std::exit(3);
  std::fclose(f);
  return v;
}

inline void save(const char* name, const std::vector<float>& v) {
  std::string p = g_io_dir + "/" + name + ".out";
  FILE* f = std::fopen(p.c_str(), "wb");
  std::fwrite(v.data(), 4, v.size(), f);
  std::fclose(f);
}

inline std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }
