// Definitions for dnnl_common.h: the shared engine, per-thread streams and per-thread workspaces.
#include "kernels/cpu/dnnl_common.h"

#include <array>
#include <cstdlib>
#include <new>

namespace selfsup::kernels::dnnl_util {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine = checked("dnnl::engine(cpu)", [] { return dnnl::engine(dnnl::engine::kind::cpu, 0); });
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream = checked("dnnl::stream", [] { return dnnl::stream(cpu_engine()); });
  return stream;
}

void throw_dnnl(const char* call, dnnl_status_t status, const char* detail) {
  std::string message = std::string(call) + ": oneDNN failed with status " + std::to_string(int(status));
  if (detail[0] != '\0') message += " (" + std::string(detail) + ")";
  throw std::runtime_error(message);
}

namespace {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
struct Buffer {
  std::unique_ptr<void, AlignedFree> data;
  std::size_t bytes = 0;
};
}  // namespace

void* workspace(int slot, std::size_t bytes) {
  thread_local std::array<Buffer, kWorkspaceSlots> buffers;
  Buffer& b = buffers.at(slot);
  if (b.bytes < bytes) {
    // Round up so that slowly growing requests do not reallocate every call.
    std::size_t rounded = (bytes + (std::size_t(1) << 20) - 1) & ~((std::size_t(1) << 20) - 1);
    b.data.reset();
    b.data.reset(std::aligned_alloc(64, rounded));
    if (!b.data) throw std::bad_alloc();
    b.bytes = rounded;
  }
  return b.data.get();
}

}  // namespace selfsup::kernels::dnnl_util
