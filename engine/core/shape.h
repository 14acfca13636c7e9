// Shapes and strides: small helpers shared by the tensor and the ops. Strides are in elements.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace selfsup {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace selfsup
