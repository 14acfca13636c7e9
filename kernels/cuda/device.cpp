// Device context (see device.h) and the out-of-line parts of the error scheme of common.cuh.
#include "kernels/cuda/device.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "kernels/cuda/common.cuh"

namespace selfsup::kernels {

namespace cuda_detail {

void throw_status(const char* lib, const char* call, const char* file, int line, long code, const char* msg) {
  // Strip the build directory prefix so messages stay short: keep from "kernels/" or "engine/" on.
  const char* short_file = file;
  for (const char* root : {"kernels/", "engine/", "tests/", "bench/"}) {
    if (const char* p = std::strstr(file, root)) {
      short_file = p;
      break;
    }
  }
  throw CudaError(std::string(lib) + " error: " + call + " failed at " + short_file + ":" + std::to_string(line) +
                  ": code " + std::to_string(code) + " (" + (msg ? msg : "unknown") + ")");
}

bool sync_debug_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SELFSUP_SYNC_DEBUG");
    return v != nullptr && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }();
  return on;
}

void launch_check(const char* file, int line) {
  check_status(cudaGetLastError(), "CUDA", "kernel launch", file, line);
  if (sync_debug_enabled()) check_status(cudaDeviceSynchronize(), "CUDA", "kernel execution (SELFSUP_SYNC_DEBUG)", file, line);
}

}  // namespace cuda_detail

namespace cuda {

namespace {

constexpr int kMaxDevices = 64;

struct CountResult {
  int count = 0;
  std::string reason;
};

const CountResult& count_result() {
  static const CountResult r = [] {
    CountResult c;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      // cudaErrorInsufficientDriver / cudaErrorNoDevice on machines without a GPU: a normal state.
      c.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      (void)cudaGetLastError();  // clear it so no later check reports it
      return c;
    }
    c.count = n < kMaxDevices ? n : kMaxDevices;
    if (n == 0) c.reason = "the CUDA runtime reports 0 devices";
    return c;
  }();
  return r;
}

std::once_flag g_stream_once[kMaxDevices];
cudaStream_t g_default_stream[kMaxDevices] = {};
thread_local cudaStream_t tl_current_stream[kMaxDevices] = {};

void check_index(int device) {
  if (device < 0 || device >= device_count())
    throw CudaError("cuda:" + std::to_string(device) + " does not exist (" + std::to_string(device_count()) +
                    " CUDA device(s)" + (device_count() == 0 ? ": " + no_device_reason() : std::string()) + ")");
}

}  // namespace

int device_count() { return count_result().count; }
const std::string& no_device_reason() { return count_result().reason; }

DeviceProps device_props(int device) {
  check_index(device);
  cudaDeviceProp p;
  SELFSUP_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  DeviceProps r;
  r.index = device;
  r.name = p.name;
  r.total_memory = p.totalGlobalMem;
  r.cc_major = p.major;
  r.cc_minor = p.minor;
  r.multiprocessors = p.multiProcessorCount;
  r.tf32 = p.major >= 8;
  return r;
}

void memory_info(int device, std::size_t* free_bytes, std::size_t* total_bytes) {
  DeviceGuard g(device);
  SELFSUP_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

int current_device() {
  int d = 0;
  SELFSUP_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) {
  check_index(device);
  SELFSUP_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) {
  prev_ = current_device();
  if (prev_ != device) set_device(device);
}
DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != prev_) SELFSUP_CUDA_WARN(cudaSetDevice(prev_));
}

cudaStream_t default_stream(int device) {
  check_index(device);
  std::call_once(g_stream_once[device], [device] {
    DeviceGuard g(device);
    cudaStream_t s = nullptr;
    SELFSUP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    g_default_stream[device] = s;
  });
  return g_default_stream[device];
}

cudaStream_t current_stream(int device) {
  check_index(device);
  cudaStream_t s = tl_current_stream[device];
  return s ? s : default_stream(device);
}

void synchronize_stream(cudaStream_t s) { SELFSUP_CUDA_CHECK(cudaStreamSynchronize(s)); }

void synchronize_device(int device) {
  DeviceGuard g(device);
  SELFSUP_CUDA_CHECK(cudaDeviceSynchronize());
}

Stream::Stream(int device) : device_(device) {
  DeviceGuard g(device);
  SELFSUP_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}
Stream::~Stream() {
  if (s_) SELFSUP_CUDA_WARN(cudaStreamDestroy(s_));
}
void Stream::synchronize() const { synchronize_stream(s_); }

StreamGuard::StreamGuard(int device, cudaStream_t s) : device_(device) {
  check_index(device);
  prev_ = tl_current_stream[device];
  tl_current_stream[device] = s;
}
StreamGuard::~StreamGuard() { tl_current_stream[device_] = prev_; }

Event::Event(bool timing) {
  SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
}
Event::~Event() {
  if (e_) SELFSUP_CUDA_WARN(cudaEventDestroy(e_));
}
void Event::record(cudaStream_t s) { SELFSUP_CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::wait(cudaStream_t s) const { SELFSUP_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }
void Event::synchronize() const { SELFSUP_CUDA_CHECK(cudaEventSynchronize(e_)); }
bool Event::query() const {
  cudaError_t e = cudaEventQuery(e_);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SELFSUP_CUDA_CHECK(e);
  return true;
}
float Event::elapsed_ms(const Event& later) const {
  float ms = 0;
  SELFSUP_CUDA_CHECK(cudaEventElapsedTime(&ms, e_, later.e_));
  return ms;
}

}  // namespace cuda
}  // namespace selfsup::kernels
