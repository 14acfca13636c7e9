// Kernel dispatch: one table of function pointers per device type, generated from op_list.def.
// Ops call `kernel_for(device).NAME` through SELFSUP_KERNEL_CALL, which throws when the device's
// backend does not provide NAME (so a missing CUDA kernel is a clear error, not a crash).
#pragma once
#include "engine/core/check.h"
#include "engine/core/device.h"
#include "engine/core/dtype.h"
#include "kernels/kernel_api.h"

namespace selfsup {

struct KernelTable {
#define SELFSUP_KERNEL(name, ...) \
  using name##_fn = __VA_ARGS__;  \
  name##_fn* name = nullptr;
#include "engine/ops/op_list.def"
#undef SELFSUP_KERNEL
};

// The table of a device type; backends fill theirs when first asked (see cpu_table.cpp).
KernelTable& kernel_table(DeviceType type);

}  // namespace selfsup

#define SELFSUP_KERNEL_CALL(device, name)                                                                 \
  ([&]() {                                                                                               \
    auto* fn_ = ::selfsup::kernel_table((device).type).name;                                             \
    SELFSUP_CHECK(fn_ != nullptr, "kernel '" #name "' is not implemented for device ", (device).str()); \
    return fn_;                                                                                          \
  }())
