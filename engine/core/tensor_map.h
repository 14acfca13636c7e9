// Named tensors: a module's or optimizer's state, the contents of a safetensors file. Sorted by name, so
// files and state dicts list their entries in a stable order.
#pragma once
#include <map>
#include <string>

#include "engine/core/tensor.h"

namespace selfsup {

using TensorMap = std::map<std::string, Tensor>;

}  // namespace selfsup
