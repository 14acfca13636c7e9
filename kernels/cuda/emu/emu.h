// A CPU emulator for the handwritten CUDA kernels: the production .cu files compiled by the HOST compiler
// (with SELFSUP_CUDA_EMU defined; kernels/cuda/common.cuh includes this header) run their grids here, so
// indexing, reductions, shuffles, barriers, shared memory and bounds are checked against the CPU kernels
// on a machine without a GPU. docs/cuda-emulation.md explains the design and its limits.
//
// What this header provides, in place of nvcc's device environment:
//   - the qualifiers (__global__, __device__, __shared__, __launch_bounds__, ...) as host C++;
//   - threadIdx / blockIdx / blockDim / gridDim: globals the scheduler sets whenever it resumes a thread;
//   - __syncthreads, __shfl_xor_sync, __any_sync: rendezvous points of the fiber scheduler (emu.cpp), where a
//     barrier or collective that some threads never reach is reported instead of hanging;
//   - atomics, bit casts, rounding-mode intrinsics, __ldg, __trap as plain host code (threads only switch at
//     rendezvous points, so an atomic is an ordinary read-modify-write);
//   - SELFSUP_LAUNCH's host form: launch_at(...)(args...) runs the grid (see run_grid in emu.cpp);
//   - guarded "device" allocations (DeviceArray) that the launch checks for stray writes and races.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>  // the global float overloads (expf, isnan, ...) device code calls unqualified

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// ---- qualifiers: host_defines.h already maps __device__, __global__, __host__ and __grid_constant__ to
// nothing for a host compiler. Static shared arrays become function statics: blocks run one after another,
// so a static is exactly one block's shared memory (zero before the first block, the previous block's
// contents after; emu.cpp's differential run reports a kernel whose result depends on that).
#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)
// Dynamic shared memory (kernels declare it with SELFSUP_DYNAMIC_SMEM, common.cuh): a fresh buffer per block,
// filled with 0xff bytes (NaN as float) so a read before the write shows.
#define SELFSUP_EMU_DYNAMIC_SMEM(T, name) T* const name = static_cast<T*>(::selfsup::emu::dynamic_smem())

// ---- the thread's coordinates, rewritten by the scheduler before it resumes a thread
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

using std::max;
using std::min;

namespace selfsup::emu {

// A failure detected by the emulator (deadlock, divergent collective, bad launch configuration, out-of-bounds
// write, race): thrown out of the launch with the kernel's name, block and thread.
class EmuError : public std::runtime_error {
 public:
  explicit EmuError(const std::string& m) : std::runtime_error(m) {}
};

// ---- scheduler entry points (emu.cpp)
void sync_block();
// Warp collective: every lane of `mask` deposits `in` (its own stack object); the last to arrive calls
// f(ctx, ins, outs) with the 32 lanes' pointers (null outside the mask); then each lane reads its `out`.
using WarpFn = void (*)(void* ctx, const void* const* ins, void* const* outs);
void warp_collective(unsigned mask, const char* what, const void* in, void* out, WarpFn f, void* ctx);
[[noreturn]] void trap();
void* dynamic_smem();
void note_float_atomic();  // float atomics make the result order-dependent: the launch skips the race check

struct LaunchInfo {
  const char* file;
  int line;
  const char* kernel;
  dim3 grid, block;
  size_t smem;
};
void run_grid(const LaunchInfo& info, const std::function<void()>& thread_body);

// Runs `body` for every thread of a grid outside SELFSUP_LAUNCH (tests of kernel bodies written as plain
// functions, e.g. the tensor-core InfoNCE); the same checks apply, no launch-check bookkeeping.
void run_body(const char* name, dim3 grid, dim3 block, const std::function<void()>& body);

// SELFSUP_LAUNCH(grid, block, smem, stream, kernel)(args...): the arguments are copied once, as a real
// launch copies them, and every emulated thread calls the kernel on its own copy. The kernel arrives wrapped
// in a generic lambda so its remaining template arguments are deduced from the call, as nvcc does.
template <typename K>
struct Launch {
  LaunchInfo info;
  K kernel;
  template <typename... A>
  void operator()(A&&... a) const {
    const std::tuple<std::decay_t<A>...> args(std::forward<A>(a)...);
    run_grid(info, [&] { std::apply(kernel, args); });
  }
};
template <typename K>
Launch<K> launch_at(const char* file, int line, const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t,
                    K kernel) {
  return Launch<K>{{file, line, name, grid, block, smem}, kernel};
}

// ---- emulated device memory: an exact-size block between two inaccessible pages (a read or write far
// outside faults at once), its slack to the page edges filled with a canary that every launch checks.
void* device_alloc(size_t bytes);
void device_free(void* p);
// Throws unless every launch so far was followed by SELFSUP_LAUNCH_CHECK() (the project's rule).
void expect_launches_checked();

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(device_alloc(n * sizeof(T)))) {}
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) {
    if (!v.empty()) std::memcpy(p_, v.data(), v.size() * sizeof(T));
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { device_free(p_); }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  std::vector<T> host() const { return std::vector<T>(p_, p_ + n_); }
  void fill_bytes(uint8_t b) { std::memset(static_cast<void*>(p_), b, n_ * sizeof(T)); }

 private:
  size_t n_;
  T* p_;
};

// Shuffle context: lane l reads lane l ^ mask.
struct XorCtx {
  int lane_mask;
  size_t bytes;
};
inline void xor_fn(void* ctx, const void* const* ins, void* const* outs) {
  const XorCtx& c = *static_cast<const XorCtx*>(ctx);
  for (int l = 0; l < 32; ++l) {
    if (!outs[l]) continue;
    const int src = l ^ c.lane_mask;
    if (src > 31 || !ins[src])
      throw EmuError("__shfl_xor_sync: lane " + std::to_string(l) + " reads lane " + std::to_string(src) +
                     ", which is not in the mask");
    std::memcpy(outs[l], ins[src], c.bytes);
  }
}
inline void any_fn(void*, const void* const* ins, void* const* outs) {
  int any = 0;
  for (int l = 0; l < 32; ++l)
    if (ins[l]) any |= *static_cast<const int*>(ins[l]);
  for (int l = 0; l < 32; ++l)
    if (outs[l]) *static_cast<int*>(outs[l]) = any;
}

}  // namespace selfsup::emu

// ---- the device intrinsics the covered kernels use
inline void __syncthreads() { ::selfsup::emu::sync_block(); }

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move 4 or 8 bytes");
  T out;
  ::selfsup::emu::XorCtx c{lane_mask, sizeof(T)};
  ::selfsup::emu::warp_collective(mask, "__shfl_xor_sync", &v, &out, ::selfsup::emu::xor_fn, &c);
  return out;
}
inline int __any_sync(unsigned mask, int pred) {
  int in = pred != 0, out = 0;
  ::selfsup::emu::warp_collective(mask, "__any_sync", &in, &out, ::selfsup::emu::any_fn, nullptr);
  return out;
}

// cuda_runtime.h's typed overload exists only under nvcc; the C entry point is emulated in emu.cpp.
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

[[noreturn]] inline void __trap() { ::selfsup::emu::trap(); }

inline float atomicAdd(float* p, float v) {
  ::selfsup::emu::note_float_atomic();
  const float old = *p;
  *p = old + v;
  return old;
}
inline double atomicAdd(double* p, double v) {
  ::selfsup::emu::note_float_atomic();
  const double old = *p;
  *p = old + v;
  return old;
}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline float __uint_as_float(uint32_t u) { return std::bit_cast<float>(u); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline uint32_t __float_as_uint(float f) { return std::bit_cast<uint32_t>(f); }
// Round-to-nearest arithmetic the kernels spell out to forbid FMA contraction: plain IEEE operations here
// (the emulator builds with -ffp-contract=off, see CMakeLists.txt).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
