// Autocast: mixed precision for the dense ops, as torch.autocast. While an AutocastGuard(DType::bf16) is alive
// on a thread, conv2d, matmul / bmm and linear on float32 tensors compute in bfloat16 with float32
// accumulation, forward and backward (the decision is taken at the forward and kept by the backward node);
// everything else (batch norm, losses, softmax, InfoNCE, the optimizer, the weights) stays float32.
// On the CPU the float32 buffers are kept and kernels/bf16_api.h's kernels round the inputs; on CUDA the
// operands are cast to bfloat16 tensors for cuDNN / cuBLAS and the result back to float32.
// Thread-local like GradMode, so loader threads are unaffected. docs/cpu-dense-kernels.md, "Mixed precision".
#pragma once
#include <string>

#include "engine/core/dtype.h"

namespace selfsup {

class Autocast {
 public:
  // DType::f32 (off, the default) or DType::bf16.
  static DType dtype();
  static void set_dtype(DType dtype);
  // Whether a dense op on a `data` tensor computes in bfloat16 now: float32 data under autocast.
  static bool bf16_for(DType data);
};

class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype) : prev_(Autocast::dtype()) { Autocast::set_dtype(dtype); }
  ~AutocastGuard() { Autocast::set_dtype(prev_); }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

// "fp32" or "bf16" (the --precision flag) as the autocast dtype; anything else throws an Error naming `field`.
DType parse_precision(const std::string& value, const char* field);
const char* precision_name(DType dtype);
// One line saying how a run at `precision` computes on `device`, e.g. "precision bf16: conv2d/linear/matmul in
// bfloat16 with float32 accumulation on oneDNN's avx512_core_amx kernels; BN, losses, optimizer, weights float32",
// or, on a CPU without bfloat16 kernels, that they are emulated (same numbers, float32 speed).
std::string precision_description(DType precision, bool cuda);

}  // namespace selfsup
