#include "engine/io/npy.h"

#include <cstring>

#include "engine/io/atomic_file.h"

namespace selfsup {

namespace {
const char* npy_descr(DType dt) {
  switch (dt) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    case DType::u8: return "|u1";
    case DType::b8: return "|b1";
    default: throw_error(str_cat("npy: cannot write dtype ", dtype_name(dt), " (NumPy has no standard code for it)"));
  }
}
}  // namespace

std::vector<uint8_t> serialize_npy(const Tensor& t) {
  Tensor c = t.detach().to(Device::cpu()).contiguous();
  // Python tuple syntax: (), (n,), (a, b)
  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) shape += (i ? ", " : "") + std::to_string(c.sizes()[i]);
  shape += c.dim() == 1 ? ",)" : ")";
  std::string header = str_cat("{'descr': '", npy_descr(c.dtype()), "', 'fortran_order': False, 'shape': ", shape, ", }");
  // magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  // magic, version 1.0, little-endian header length, header
  const std::string preamble = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size() & 0xff) +
                               static_cast<char>(header.size() >> 8) + header;
  std::vector<uint8_t> out(preamble.begin(), preamble.end());
  size_t bytes = static_cast<size_t>(c.numel()) * dtype_size(c.dtype());
  size_t at = out.size();
  out.resize(at + bytes);
  if (bytes) std::memcpy(out.data() + at, c.raw_data(), bytes);
  return out;
}

void save_npy(const std::string& path, const Tensor& t) {
  std::vector<uint8_t> bytes = serialize_npy(t);
  atomic_write_file(path, bytes.data(), bytes.size());
}

}  // namespace selfsup
