// Engine-side CUDA context (see cuda_context.h).
#include "engine/core/cuda_context.h"

#include <cstdio>
#include <cstring>

#include "engine/core/check.h"
#include "engine/core/cuda_allocator.h"

#ifdef SELFSUP_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#endif

namespace selfsup {

#ifdef SELFSUP_HAVE_CUDA
namespace kc = kernels::cuda;
bool cuda_built() { return true; }
int cuda_device_count() { return kc::device_count(); }
std::string cuda_no_device_reason() { return kc::no_device_reason(); }
#else
bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_no_device_reason() { return "the CUDA backend is not compiled (SELFSUP_CUDA=OFF or no nvcc)"; }
#endif

Device default_device() { return cuda_device_count() > 0 ? Device::cuda(0) : Device::cpu(); }

Device parse_device(const std::string& s) {
  if (s == "auto") return default_device();
  if (s == "cpu") return Device::cpu();
  Device d;
  if (s == "cuda") {
    d = Device::cuda(0);
  } else if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.find_first_not_of("0123456789", 5) == std::string::npos) {
    d = Device::cuda(std::stoi(s.substr(5)));
  } else {
    throw_error(str_cat("unknown device '", s, "': expected auto, cpu, cuda or cuda:N"));
  }
  check_device(d);
  return d;
}

void check_device(Device d) {
  if (d.is_cpu()) return;
  SELFSUP_CHECK(cuda_built(), "device ", d.str(), " requested, but this build has no CUDA backend");
  SELFSUP_CHECK(d.index >= 0 && d.index < cuda_device_count(), "device ", d.str(), " requested, but ",
                cuda_device_count() == 0 ? str_cat("there is no CUDA device (", cuda_no_device_reason(), ")")
                                         : str_cat("only ", cuda_device_count(), " CUDA device(s) exist"));
}

std::string cuda_devices_summary() {
#ifdef SELFSUP_HAVE_CUDA
  const int n = cuda_device_count();
  if (n == 0) return str_cat("CUDA built, no device (", cuda_no_device_reason(), ")");
  std::string out = str_cat("CUDA built, ", n, " device(s)");
  for (int i = 0; i < n; ++i) {
    kc::DeviceProps p = kc::device_props(i);
    std::size_t free_b = 0, total_b = 0;
    kc::memory_info(i, &free_b, &total_b);
    char line[256];
    std::snprintf(line, sizeof line, "\n  cuda:%d  %s  sm_%d%d  %d SMs  %.1f GiB (%.1f GiB free)", i, p.name.c_str(),
                  p.cc_major, p.cc_minor, p.multiprocessors, static_cast<double>(total_b) / (1ull << 30),
                  static_cast<double>(free_b) / (1ull << 30));
    out += line;
    out += "\n  " + cuda_memory_summary(i);
  }
  return out;
#else
  return "CUDA backend not compiled";
#endif
}

void* cuda_stream(Device d) {
#ifdef SELFSUP_HAVE_CUDA
  check_device(d);
  return kc::current_stream(d.index);
#else
  check_device(d);
  return nullptr;
#endif
}

void synchronize(Device d) {
  if (d.is_cpu()) return;
#ifdef SELFSUP_HAVE_CUDA
  check_device(d);
  kc::synchronize_stream(kc::current_stream(d.index));
#endif
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef SELFSUP_HAVE_CUDA
  check_device(dst_device);
  check_device(src_device);
  if (src_device.is_cpu()) {  // upload: stage in pinned memory so the copy is asynchronous
    kc::DeviceGuard g(dst_device.index);
    cudaStream_t s = kc::current_stream(dst_device.index);
    PinnedBuffer b = pinned_acquire(nbytes);
    std::memcpy(b.data, src, nbytes);
    SELFSUP_CUDA_CHECK(cudaMemcpyAsync(dst, b.data, nbytes, cudaMemcpyHostToDevice, s));
    pinned_release(b, s);
  } else if (dst_device.is_cpu()) {  // download: the caller reads dst next, so wait
    kc::DeviceGuard g(src_device.index);
    cudaStream_t s = kc::current_stream(src_device.index);
    SELFSUP_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s));
    SELFSUP_CUDA_CHECK(cudaStreamSynchronize(s));
  } else if (src_device == dst_device) {
    kc::DeviceGuard g(dst_device.index);
    SELFSUP_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, kc::current_stream(dst_device.index)));
  } else {  // between GPUs: the source's pending writes first, then a peer copy on the destination stream
    kc::synchronize_stream(kc::current_stream(src_device.index));
    kc::DeviceGuard g(dst_device.index);
    SELFSUP_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes,
                                           kc::current_stream(dst_device.index)));
  }
  if (kernels::cuda_detail::sync_debug_enabled()) SELFSUP_CUDA_CHECK(cudaDeviceSynchronize());
#else
  throw_error(str_cat("copy from ", src_device.str(), " to ", dst_device.str(),
                      ": this build has no CUDA backend (SELFSUP_CUDA=OFF)"));
#endif
}

}  // namespace selfsup
