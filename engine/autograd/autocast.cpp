// Definitions for autocast.h: a thread-local dtype.
#include "engine/autograd/autocast.h"

#include <string>

#include "engine/core/check.h"
#include "kernels/bf16_api.h"

namespace selfsup {

namespace {
thread_local DType autocast_dtype = DType::f32;
}  // namespace

DType Autocast::dtype() { return autocast_dtype; }

void Autocast::set_dtype(DType dtype) {
  SELFSUP_CHECK(dtype == DType::f32 || dtype == DType::bf16, "autocast: dtype must be float32 (off) or bfloat16, got ",
                dtype_name(dtype));
  autocast_dtype = dtype;
}

bool Autocast::bf16_for(DType data) { return data == DType::f32 && autocast_dtype == DType::bf16; }

DType parse_precision(const std::string& value, const char* field) {
  if (value == "fp32") return DType::f32;
  if (value == "bf16") return DType::bf16;
  throw_error(str_cat(field, ": expected fp32 or bf16, got '", value, "'"));
}

const char* precision_name(DType dtype) { return dtype == DType::bf16 ? "bf16" : "fp32"; }

std::string precision_description(DType precision, bool cuda) {
  if (precision != DType::bf16) return "precision fp32";
  const char* rest = "; batch norm, losses, softmax, InfoNCE, the optimizer and the weights in float32";
  if (cuda) return str_cat("precision bf16: conv2d on cuDNN, linear/matmul on cuBLAS, bfloat16 inputs, float32 accumulation", rest);
  if (kernels::cpu_native_bf16())
    return str_cat("precision bf16: conv2d on oneDNN's bfloat16 kernels (ISA ", kernels::cpu_isa_name(),
                   "), linear/matmul on bfloat16-rounded inputs, float32 accumulation", rest);
  return str_cat("precision bf16, emulated: oneDNN's ISA here is ", kernels::cpu_isa_name(),
                 ", without bfloat16 kernels (AVX512-BF16 or AMX), so conv2d/linear/matmul round their inputs to "
                 "bfloat16 and compute in float32: the numbers of bf16, at float32 speed or slower", rest);
}

}  // namespace selfsup
