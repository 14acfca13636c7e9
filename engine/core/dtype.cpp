#include "engine/core/dtype.h"

#include "engine/core/check.h"

namespace selfsup {

DType dtype_from_name(const std::string& name) {
  if (name == "float32" || name == "f32" || name == "float") return DType::f32;
  if (name == "float64" || name == "f64" || name == "double") return DType::f64;
  if (name == "bfloat16" || name == "bf16") return DType::bf16;
  if (name == "float16" || name == "f16" || name == "half") return DType::f16;
  if (name == "int32" || name == "i32" || name == "int") return DType::i32;
  if (name == "int64" || name == "i64" || name == "long") return DType::i64;
  if (name == "uint8" || name == "u8") return DType::u8;
  if (name == "bool") return DType::b8;
  throw_error(str_cat("unknown dtype '", name,
                      "' (expected float32, float64, bfloat16, float16, int32, int64, uint8 or bool)"));
}

namespace {
// Rank within a category: bool < integers (by width) < floating (by width, bf16/f16 below f32).
int type_rank(DType t) {
  switch (t) {
    case DType::b8: return 0;
    case DType::u8: return 1;
    case DType::i32: return 2;
    case DType::i64: return 3;
    case DType::f16: return 4;
    case DType::bf16: return 5;
    case DType::f32: return 6;
    case DType::f64: return 7;
  }
  return 0;
}
}  // namespace

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  // f16 and bf16 meet at f32, as in PyTorch.
  if ((a == DType::f16 && b == DType::bf16) || (a == DType::bf16 && b == DType::f16)) return DType::f32;
  return type_rank(a) >= type_rank(b) ? a : b;
}

}  // namespace selfsup
