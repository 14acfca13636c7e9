// Engine-side view of the CUDA devices: what exists, which device `--device auto` means, copies between
// devices, and the stream an op on a device runs on. Exists in every build: without the CUDA backend it
// reports zero devices and every CUDA request is a clear error. The kernel-side context (streams,
// events, guards) is kernels/cuda/device.h.
#pragma once
#include <cstddef>
#include <string>

#include "engine/core/device.h"

namespace selfsup {

bool cuda_built();            // the CUDA backend was compiled in
int cuda_device_count();      // 0 without a driver/device (never throws)
std::string cuda_no_device_reason();
// cuda:0 when a CUDA device exists, else the CPU.
Device default_device();
// "auto", "cpu", "cuda", "cuda:N" -> Device (auto = default_device()); errors name the bad string.
Device parse_device(const std::string& s);
// Throws unless `d` is the CPU or an existing CUDA device.
void check_device(Device d);
// For `selfsup info`: "CUDA built, no device (<reason>)" or one line per device with its memory.
std::string cuda_devices_summary();

// The current stream of a CUDA device as an opaque pointer (cudaStream_t), for the kernel table.
void* cuda_stream(Device d);
// Waits for the device's current stream (no-op on the CPU).
void synchronize(Device d);

// Copies nbytes of contiguous memory between any two devices. Host-to-device goes through a pinned
// staging buffer and returns without waiting; device-to-host waits for the copy.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t nbytes);

}  // namespace selfsup
