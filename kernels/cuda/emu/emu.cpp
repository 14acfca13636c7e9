// The emulator's runtime (see emu.h): a fiber per GPU thread, blocks run one after another, barriers and
// warp collectives as rendezvous points; every launch runs TWICE on the same inputs, threads and blocks in
// opposite orders, and must give bit-identical memory (otherwise the result depends on the schedule: a
// missing __syncthreads, a read of shared memory this block did not write, a race between blocks);
// guarded allocations, launch-configuration limits, and the CUDA runtime calls the launchers make.
// Linked only into the emulated test binary (test_cuda_emu), never next to the real CUDA runtime.
#include "kernels/cuda/emu/emu.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <map>
#include <memory>

#include "kernels/cuda/common.cuh"

namespace selfsup::emu {

namespace {

constexpr size_t kPage = 4096;
constexpr size_t kStack = 256 * 1024;  // per thread; the lowest page is a guard
constexpr size_t kMaxDynamicSmem = 227 * 1024;  // sm_90 opt-in limit
constexpr uint8_t kCanary = 0xa5;

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// ------------------------------------------------------------------ guarded allocations
struct Buf {
  char* map;       // the whole mapping: guard page, [head slack, data, tail slack], guard page
  size_t map_len;
  char* data;
  size_t bytes;
};
std::map<char*, Buf>& buffers() {
  static std::map<char*, Buf> b;  // by data address
  return b;
}

bool slack_intact(const Buf& b) {
  for (const char* p = b.map + kPage; p < b.data; ++p)
    if (static_cast<uint8_t>(*p) != kCanary) return false;
  for (const char* p = b.data + b.bytes; p < b.map + b.map_len - kPage; ++p)
    if (static_cast<uint8_t>(*p) != kCanary) return false;
  return true;
}

// ------------------------------------------------------------------ fibers
enum class Wait : uint8_t { none, block, warp };

struct Fiber {
  ucontext_t ctx{};
  char* stack = nullptr;
  uint3 tid{};
  bool done = false;
  Wait wait = Wait::none;
  unsigned wait_gen = 0;
};

struct WarpSlot {
  int arrived = 0;
  unsigned gen = 0, mask = 0;
  const char* what = nullptr;
  const void* ins[32];
  void* outs[32];
};

// Stacks for up to 1024 threads, mapped once and reused by every block and launch.
char* stack_pool(int n) {
  static char* pool = nullptr;
  static int have = 0;
  if (n > have) {
    if (pool) munmap(pool, have * kStack);
    void* m = mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw EmuError("emulator: cannot map thread stacks");
    pool = static_cast<char*>(m);
    have = n;
    for (int i = 0; i < n; ++i) mprotect(pool + i * kStack, kPage, PROT_NONE);  // overflow faults
  }
  return pool;
}

struct Grid {
  const LaunchInfo* info = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  int nthreads = 0, cur = -1;
  ucontext_t sched{};
  int bar_arrived = 0;
  unsigned bar_gen = 0;
  std::vector<WarpSlot> warps;
  std::unique_ptr<char[]> smem;  // dynamic shared memory, 128-byte aligned inside
  char* smem_aligned = nullptr;
  std::string error;
  bool float_atomic = false;
};
Grid* g_grid = nullptr;

std::string where() {
  const Grid& g = *g_grid;
  std::string s = std::string(g.info->kernel) + " (launched at " + g.info->file + ":" + std::to_string(g.info->line) +
                  "), block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                  std::to_string(blockIdx.z) + ")";
  if (g.cur >= 0) {
    const uint3 t = g.fibers[g.cur].tid;
    s += ", thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ")";
  }
  return s;
}

Fiber& current() {
  if (!g_grid || g_grid->cur < 0) throw EmuError("device intrinsic called outside an emulated kernel");
  return g_grid->fibers[g_grid->cur];
}

void yield(Wait w, unsigned gen) {
  Fiber& f = current();
  f.wait = w;
  f.wait_gen = gen;
  swapcontext(&f.ctx, &g_grid->sched);
}

void fiber_main() {
  Grid& g = *g_grid;
  try {
    (*g.body)();
  } catch (const std::exception& e) {
    if (g.error.empty()) g.error = std::string(e.what()) + "\n  in " + where();
  }
  g.fibers[g.cur].done = true;  // returning resumes uc_link: the scheduler
}

std::string deadlock_report() {
  const Grid& g = *g_grid;
  int at_bar = 0, exited = 0;
  std::string warps;
  for (int t = 0; t < g.nthreads; ++t) {
    const Fiber& f = g.fibers[t];
    exited += f.done;
    at_bar += f.wait == Wait::block;
  }
  for (size_t w = 0; w < g.warps.size(); ++w)
    if (g.warps[w].arrived)
      warps += "\n  warp " + std::to_string(w) + ": " + std::to_string(g.warps[w].arrived) + " lane(s) wait in " +
               g.warps[w].what + " for the other lanes of mask 0x" + [&] {
                 char b[16];
                 std::snprintf(b, sizeof b, "%08x", g.warps[w].mask);
                 return std::string(b);
               }();
  return "deadlock: " + std::to_string(at_bar) + " thread(s) wait at __syncthreads, " + std::to_string(exited) +
         " of " + std::to_string(g.nthreads) + " have exited" + warps +
         "\n  (a barrier or warp collective under a condition that is not uniform)";
}

// A fresh fiber that will run fiber_main on `stack` (getcontext returns twice: kept out of the scheduler).
[[gnu::noinline]] void init_fiber(Fiber& f, char* stack, ucontext_t* link) {
  f.done = false;
  f.wait = Wait::none;
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = stack + kPage;
  f.ctx.uc_stack.ss_size = kStack - kPage;
  f.ctx.uc_link = link;
  makecontext(&f.ctx, fiber_main, 0);
}

// Runs one block to completion; `forward`: threads resumed in increasing order, else decreasing.
void run_block(bool forward) {
  Grid& g = *g_grid;
  char* stacks = stack_pool(g.nthreads);
  for (int t = 0; t < g.nthreads; ++t) init_fiber(g.fibers[t], stacks + t * kStack, &g.sched);
  g.bar_arrived = 0;
  for (WarpSlot& w : g.warps) w.arrived = 0;
  if (g.smem) std::memset(g.smem_aligned, 0xff, g.info->smem);
  for (;;) {
    bool ran = false, all_done = true;
    for (int k = 0; k < g.nthreads; ++k) {
      const int t = forward ? k : g.nthreads - 1 - k;
      Fiber& f = g.fibers[t];
      if (f.done) continue;
      all_done = false;
      if (f.wait == Wait::block && f.wait_gen == g.bar_gen) continue;
      if (f.wait == Wait::warp && f.wait_gen == g.warps[t / 32].gen) continue;
      f.wait = Wait::none;
      g.cur = t;
      threadIdx = f.tid;
      swapcontext(&g.sched, &f.ctx);
      g.cur = -1;
      ran = true;
      if (!g.error.empty()) throw EmuError(g.error);
    }
    if (all_done) return;
    if (!ran) throw EmuError(deadlock_report() + "\n  in " + where());
  }
}

void run_all_blocks(bool forward) {
  Grid& g = *g_grid;
  const dim3 gd = g.info->grid;
  const uint64_t n = static_cast<uint64_t>(gd.x) * gd.y * gd.z;
  for (uint64_t k = 0; k < n; ++k) {
    const uint64_t b = forward ? k : n - 1 - k;
    blockIdx = uint3{static_cast<unsigned>(b % gd.x), static_cast<unsigned>(b / gd.x % gd.y),
                     static_cast<unsigned>(b / gd.x / gd.y)};
    run_block(forward);
  }
}

struct Unchecked {
  bool pending = false;
  std::string at;
} g_unchecked;

void validate(const LaunchInfo& li) {
  const std::string at = std::string(li.kernel) + " launched at " + li.file + ":" + std::to_string(li.line);
  if (g_unchecked.pending)
    throw EmuError("the launch " + g_unchecked.at + " was not followed by SELFSUP_LAUNCH_CHECK()");
  const dim3 b = li.block, gd = li.grid;
  const uint64_t threads = static_cast<uint64_t>(b.x) * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64)
    throw EmuError("invalid block (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) +
                   "): " + at);
  if (gd.x == 0 || gd.y == 0 || gd.z == 0 || gd.x > 0x7fffffffu || gd.y > 65535 || gd.z > 65535)
    throw EmuError("invalid grid (" + std::to_string(gd.x) + "," + std::to_string(gd.y) + "," +
                   std::to_string(gd.z) + "): " + at);
  if (li.smem > kMaxDynamicSmem)
    throw EmuError(std::to_string(li.smem) + " bytes of dynamic shared memory, over the device's " +
                   std::to_string(kMaxDynamicSmem) + ": " + at);
}

// ------------------------------------------------------------------ faults inside a kernel
struct sigaction g_old_segv;
void on_segv(int sig, siginfo_t* si, void*) {
  char msg[512];
  const char* addr = static_cast<const char*>(si->si_addr);
  const char* what = "outside every emulated device buffer";
  for (const auto& [d, b] : buffers())
    if (addr >= b.map && addr < b.map + b.map_len) what = "in the guard page of an emulated device buffer (out of bounds)";
  int n = std::snprintf(msg, sizeof msg, "\nselfsup emulator: fault at address %p, %s\n", si->si_addr, what);
  if (n > 0) (void)!write(2, msg, static_cast<size_t>(n));
  if (g_grid) {
    const std::string w = "  in " + where() + "\n";
    (void)!write(2, w.data(), w.size());
  }
  sigaction(sig, &g_old_segv, nullptr);  // returning re-faults into the previous handler (doctest reports it)
}

void install_fault_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  static std::vector<char> alt(64 * 1024);  // the handler must run even when a thread stack overflowed
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, &g_old_segv);
}

void check_slack(const std::string& at) {
  for (const auto& [d, b] : buffers())
    if (!slack_intact(b))
      throw EmuError("a write outside an emulated device buffer of " + std::to_string(b.bytes) + " bytes (its slack "
                     "bytes changed) in " + at);
}

}  // namespace

// ------------------------------------------------------------------ entry points
void sync_block() {
  Grid& g = *g_grid;
  current();
  if (++g.bar_arrived == g.nthreads) {
    g.bar_arrived = 0;
    ++g.bar_gen;
    return;
  }
  yield(Wait::block, g.bar_gen);
}

void warp_collective(unsigned mask, const char* what, const void* in, void* out, WarpFn f, void* ctx) {
  Grid& g = *g_grid;
  current();
  const int t = g.cur, w = t / 32, lane = t % 32;
  const int lanes_in_warp = std::min(32, g.nthreads - 32 * w);
  if (!((mask >> lane) & 1u)) throw EmuError(std::string(what) + ": the calling lane is not in the mask");
  if (lanes_in_warp < 32 && (mask >> lanes_in_warp) != 0)
    throw EmuError(std::string(what) + ": the mask names lanes past the end of the block");
  WarpSlot& s = g.warps[w];
  if (s.arrived == 0) {
    s.mask = mask;
    s.what = what;
    for (int l = 0; l < 32; ++l) {
      s.ins[l] = nullptr;
      s.outs[l] = nullptr;
    }
  } else if (s.mask != mask || std::strcmp(s.what, what) != 0) {
    throw EmuError(std::string("divergent warp collectives: ") + what + " meets " + s.what + " (or another mask)");
  }
  s.ins[lane] = in;
  s.outs[lane] = out;
  if (++s.arrived == std::popcount(mask)) {
    f(ctx, s.ins, s.outs);
    s.arrived = 0;
    ++s.gen;
    return;
  }
  yield(Wait::warp, s.gen);
}

void trap() { throw EmuError("__trap()"); }

void* dynamic_smem() {
  current();
  if (!g_grid->smem) throw EmuError("dynamic shared memory used by a launch that asked for 0 bytes");
  return g_grid->smem_aligned;
}

void note_float_atomic() { g_grid->float_atomic = true; }

void run_body(const char* name, dim3 grid, dim3 block, const std::function<void()>& body) {
  const LaunchInfo li{"(test)", 0, name, grid, block, 0};
  const Unchecked saved = g_unchecked;
  g_unchecked.pending = false;
  run_grid(li, body);
  g_unchecked = saved;
}

void run_grid(const LaunchInfo& li, const std::function<void()>& body) {
  validate(li);
  install_fault_handler();
  Grid g;
  g.info = &li;
  g.body = &body;
  g.nthreads = static_cast<int>(li.block.x * li.block.y * li.block.z);
  g.fibers.resize(g.nthreads);
  for (int t = 0; t < g.nthreads; ++t)
    g.fibers[t].tid = uint3{t % li.block.x, t / li.block.x % li.block.y, t / (li.block.x * li.block.y)};
  g.warps.resize((g.nthreads + 31) / 32);
  if (li.smem) {
    g.smem.reset(new char[li.smem + 128]);
    g.smem_aligned = g.smem.get() + (128 - reinterpret_cast<uintptr_t>(g.smem.get()) % 128) % 128;
  }
  blockDim = li.block;
  gridDim = li.grid;
  const std::string at = std::string(li.kernel) + " (launched at " + li.file + ":" + std::to_string(li.line) + ")";
  // Snapshot every device buffer, run forward, keep the result, restore, run backward, compare.
  std::vector<std::vector<char>> before;
  for (const auto& [d, b] : buffers()) before.emplace_back(b.data, b.data + b.bytes);
  g_grid = &g;
  struct Reset {
    ~Reset() { g_grid = nullptr; }
  } reset;
  // Only a launch that completed waits for its SELFSUP_LAUNCH_CHECK() (a failed one throws past it).
  const Unchecked done{li.file[0] != '(', at};
  run_all_blocks(true);
  check_slack(at);
  if (g.float_atomic) {  // float atomics: order-dependent rounding, no differential check
    g_unchecked = done;
    return;
  }
  std::vector<std::vector<char>> first;
  size_t i = 0;
  for (const auto& [d, b] : buffers()) {
    first.emplace_back(b.data, b.data + b.bytes);
    std::memcpy(b.data, before[i++].data(), b.bytes);
  }
  run_all_blocks(false);
  check_slack(at);
  i = 0;
  for (const auto& [d, b] : buffers()) {
    const std::vector<char>& f = first[i++];
    for (size_t k = 0; k < b.bytes; ++k)
      if (f[k] != b.data[k])
        throw EmuError("the result depends on the thread schedule (byte " + std::to_string(k) + " of a " +
                       std::to_string(b.bytes) + "-byte buffer differs between two orders): a missing "
                       "__syncthreads, a read of shared memory this block did not write, or a race, in " + at);
  }
  g_unchecked = done;
}

void* device_alloc(size_t bytes) {
  const size_t used = round_up(std::max<size_t>(bytes, 1), 16);
  const size_t len = round_up(used, kPage) + 2 * kPage;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) throw EmuError("emulator: device_alloc failed");
  char* map = static_cast<char*>(m);
  mprotect(map, kPage, PROT_NONE);
  mprotect(map + len - kPage, kPage, PROT_NONE);
  std::memset(map + kPage, kCanary, len - 2 * kPage);
  char* data = map + len - kPage - used;  // the end of the data (16-byte rounded) touches the guard page
  std::memset(data, 0xff, bytes);         // NaN / -1 until written
  buffers()[data] = Buf{map, len, data, bytes};
  return data;
}

void device_free(void* p) {
  auto it = buffers().find(static_cast<char*>(p));
  if (it == buffers().end()) return;
  munmap(it->second.map, it->second.map_len);
  buffers().erase(it);
}

void expect_launches_checked() {
  if (g_unchecked.pending) {
    g_unchecked.pending = false;
    throw EmuError("the launch " + g_unchecked.at + " was not followed by SELFSUP_LAUNCH_CHECK()");
  }
}

}  // namespace selfsup::emu

// ------------------------------------------------------------------ the CUDA runtime calls the launchers make
namespace {
// Whether [p, p + n) lies inside one emulated device buffer.
bool in_device_buffer(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  for (const auto& [d, b] : selfsup::emu::buffers())
    if (c >= b.data && c + n <= b.data + b.bytes) return true;
  return false;
}
}  // namespace

cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t) {
  if (count && !in_device_buffer(p, count)) return cudaErrorInvalidValue;
  std::memset(p, value, count);
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  // The opt-in itself is not tracked per kernel (launches name kernels through lambdas): only its range.
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize &&
      (value < 0 || static_cast<size_t>(value) > selfsup::emu::kMaxDynamicSmem))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }

namespace selfsup::kernels::cuda_detail {
void throw_status(const char* lib, const char* call, const char* file, int line, long code, const char* msg) {
  throw CudaError(std::string(lib) + " error: " + call + " failed at " + file + ":" + std::to_string(line) +
                  ": code " + std::to_string(code) + " (" + (msg ? msg : "unknown") + ")");
}
// Launches run synchronously here and report their own errors; this only records that the check happened.
void launch_check(const char*, int) { emu::g_unchecked.pending = false; }
}  // namespace selfsup::kernels::cuda_detail
