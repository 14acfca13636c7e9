// Definitions for dnnl_common.h: the shared engine, per-thread streams and per-thread workspaces.
#include "kernels/cpu/dnnl_common.h"

#include <array>
#include <cstring>
#include <cstdlib>
#include <new>

#include "kernels/dtype.h"
#include "kernels/bf16_api.h"

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

const float* rounded_to_bf16(int slot, const float* src, std::int64_t n) {
  auto* out = static_cast<float*>(workspace(slot, std::size_t(n) * sizeof(float)));
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) out[i] = bf16::from_float(src[i]).to_float();
  return out;
}

}  // namespace selfsup::kernels::dnnl_util

namespace selfsup::kernels {

bool cpu_native_bf16() {
  // The ISA values are bit masks of their features: AMX contains AVX512-BF16.
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;
}

const char* cpu_isa_name() {
  using I = dnnl::cpu_isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case I::sse41: return "sse41";
    case I::avx: return "avx";
    case I::avx2: return "avx2";
    case I::avx512_mic: return "avx512_mic";
    case I::avx512_mic_4ops: return "avx512_mic_4ops";
    case I::avx512_core: return "avx512_core";
    case I::avx512_core_vnni: return "avx512_core_vnni";
    case I::avx512_core_bf16: return "avx512_core_bf16";
    case I::avx512_core_amx: return "avx512_core_amx";
    case I::avx2_vnni: return "avx2_vnni";
    default: return "other";
  }
}

}  // namespace selfsup::kernels
