// The CUDA device context: how many devices (no driver = zero devices, never an exception), their
// properties, the current device, one default stream per device (created on first use, non-blocking so
// it never serialises with the legacy stream), side streams and events as RAII handles.
//
// The "current stream" of a device is what every launcher of kernels/cuda receives from the engine. It is
// the device's default stream unless a StreamGuard on this thread selects a side stream.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <vector>

namespace selfsup::kernels::cuda {

// Number of usable devices; 0 when the runtime reports no driver, an insufficient driver or no device.
// Computed once per process.
int device_count();
// Why device_count() is 0 ("" when devices exist): the runtime's own message.
const std::string& no_device_reason();

struct DeviceProps {
  int index = 0;
  std::string name;
  std::size_t total_memory = 0;  // bytes
  int cc_major = 0, cc_minor = 0;
  int multiprocessors = 0;
  bool tf32 = false;  // compute capability >= 8.0
};
DeviceProps device_props(int device);
// Free and total bytes on the device (cudaMemGetInfo).
void memory_info(int device, std::size_t* free_bytes, std::size_t* total_bytes);

int current_device();
void set_device(int device);  // checks the index against device_count()

// Sets the device for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

// The per-device default stream (process lifetime; never destroyed).
cudaStream_t default_stream(int device);
// The stream work for `device` goes to on this thread: a StreamGuard's stream, else default_stream.
cudaStream_t current_stream(int device);
void synchronize_stream(cudaStream_t s);
void synchronize_device(int device);

// An owned non-blocking stream (side work, e.g. overlapping copies with compute).
class Stream {
 public:
  explicit Stream(int device);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  int device() const { return device_; }
  void synchronize() const;

 private:
  int device_;
  cudaStream_t s_ = nullptr;
};

// Makes `s` the current stream of `device` on this thread for a scope.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t prev_;
};

// An owned event; timing is enabled only when asked (timing events cost more to record).
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s);
  void wait(cudaStream_t s) const;  // `s` waits for the recorded work (no host block)
  void synchronize() const;
  bool query() const;               // true once the recorded work is done
  float elapsed_ms(const Event& later) const;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace selfsup::kernels::cuda
