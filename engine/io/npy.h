// NumPy .npy writer (format version 1.0): a magic string, a header dict ('descr', 'fortran_order',
// 'shape') padded to a multiple of 64 bytes, then the raw little-endian data in C order. Enough for
// `numpy.load` to read features exported by `selfsup embed`.
#pragma once
#include <string>
#include <vector>

#include "engine/core/tensor.h"

namespace selfsup {

// The bytes of a .npy file holding `t` (float32, float64, int32, int64, uint8 or bool).
std::vector<uint8_t> serialize_npy(const Tensor& t);
// Writes `t` to `path` atomically (engine/io/atomic_file.h).
void save_npy(const std::string& path, const Tensor& t);

}  // namespace selfsup
