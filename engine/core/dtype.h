// The engine's view of element types: kernels/dtype.h plus parsing and promotion rules.
#pragma once
#include <string>

#include "kernels/dtype.h"

namespace selfsup {

// Parses "float32", "f32", "float", "bfloat16", "int64", ... Throws selfsup::Error naming the choices.
DType dtype_from_name(const std::string& name);

// Result dtype of a binary op on two dtypes (PyTorch's rule on same-category types: the wider one; a
// floating type wins over an integer type; bool promotes to anything).
DType promote_types(DType a, DType b);

}  // namespace selfsup
