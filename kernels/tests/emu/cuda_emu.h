// Host emulation of the small CUDA subset the kernels use, so their logic can be tested on a
// machine without a GPU. The threads of a block are user-level fibers on one OS thread (started
// with makecontext, switched with _setjmp/_longjmp); __syncthreads and warp shuffles are
// barriers at which a fiber yields until every live member arrived. `__shared__` statics serve as
// block memory (blocks run one after another). Threads that return early leave the barriers,
// as exited CUDA threads do.
#pragma once
#include <csetjmp>
#include <cmath>
#include <math.h>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <ucontext.h>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
// Dynamic shared memory: a 48 KiB static block (the most a launch gets without opting in).
#define DYNAMIC_SHARED(T, name) alignas(16) static T name[49152 / sizeof(T)]

struct EmuBarrier {
  unsigned expected = 0, arrived = 0, gen = 0;
};

struct EmuFiber {
  jmp_buf env;
  std::unique_ptr<char[]> stack;
  ucontext_t start;
  bool started = false, done = false;
  dim3 tid;
};

inline jmp_buf g_sched_env;
inline std::vector<EmuFiber>* g_fibers = nullptr;
inline unsigned g_cur = 0;
inline EmuBarrier g_block_bar;
inline std::vector<EmuBarrier> g_warp_bars;
inline float g_shfl[1024];
inline const std::function<void()>* g_body = nullptr;

inline void emu_yield() {
  if (!_setjmp((*g_fibers)[g_cur].env)) _longjmp(g_sched_env, 1);
}

inline void emu_release_if_complete(EmuBarrier& b) {
  if (b.arrived > 0 && b.arrived == b.expected) {
    b.arrived = 0;
    ++b.gen;
  }
}

inline void emu_wait(EmuBarrier& b) {
  const unsigned gen = b.gen;
  ++b.arrived;
  emu_release_if_complete(b);
  while (b.gen == gen) emu_yield();
}

inline void __syncthreads() { emu_wait(g_block_bar); }
inline void __syncwarp() { emu_wait(g_warp_bars[g_cur / 32]); }

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline float __shfl_xor_sync(unsigned, float v, int o) {
  const unsigned t = g_cur;
  EmuBarrier& bar = g_warp_bars[t / 32];
  g_shfl[t] = v;
  emu_wait(bar);
  const float r = g_shfl[t ^ (unsigned)o];
  emu_wait(bar);
  return r;
}

struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return {0x7fc0};
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return {(uint16_t)(u >> 16)};
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int min(int a, int b) { return a < b ? a : b; }

inline void emu_fiber_main() {
  (*g_body)();
  EmuFiber& f = (*g_fibers)[g_cur];
  f.done = true;
  // Leave the barriers: others waiting on them no longer count this thread.
  g_block_bar.expected--;
  emu_release_if_complete(g_block_bar);
  EmuBarrier& w = g_warp_bars[g_cur / 32];
  w.expected--;
  emu_release_if_complete(w);
  _longjmp(g_sched_env, 1);
}

// Runs `body` as a grid of blocks of `block` threads.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  constexpr size_t kStack = 256 * 1024;
  gridDim = grid;
  blockDim = block;
  g_body = &body;
  const unsigned n = block.x * block.y * block.z;
  std::vector<EmuFiber> fibers(n);
  g_fibers = &fibers;
  for (auto& f : fibers) f.stack.reset(new char[kStack]);
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        g_block_bar = {n, 0, 0};
        g_warp_bars.assign((n + 31) / 32, EmuBarrier{});
        for (unsigned w = 0; w < g_warp_bars.size(); ++w) g_warp_bars[w].expected = std::min(32u, n - 32 * w);
        for (unsigned t = 0; t < n; ++t) {
          EmuFiber& f = fibers[t];
          f.started = f.done = false;
          f.tid = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
          getcontext(&f.start);
          f.start.uc_stack.ss_sp = f.stack.get();
          f.start.uc_stack.ss_size = kStack;
          f.start.uc_link = nullptr;
          makecontext(&f.start, emu_fiber_main, 0);
        }
        unsigned live = n;
        while (live > 0) {
          live = 0;
          for (unsigned t = 0; t < n; ++t) {
            EmuFiber& f = fibers[t];
            if (f.done) continue;
            g_cur = t;
            threadIdx = f.tid;
            if (!_setjmp(g_sched_env)) {
              if (!f.started) {
                f.started = true;
                setcontext(&f.start);
              } else {
                _longjmp(f.env, 1);
              }
            }
            if (!f.done) ++live;
          }
        }
      }
}
