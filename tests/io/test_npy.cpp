// .npy export: the exact header bytes NumPy expects, and the data after it.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "engine/io/npy.h"

using namespace selfsup;

TEST_CASE("npy header and data") {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  std::vector<uint8_t> b = serialize_npy(t.t());  // non-contiguous input is written in C order
  CHECK(std::memcmp(b.data(), "\x93NUMPY\x01\x00", 8) == 0);
  size_t hlen = b[8] | (b[9] << 8);
  CHECK((10 + hlen) % 64 == 0);
  std::string header(b.begin() + 10, b.begin() + 10 + static_cast<long>(hlen));
  CHECK(header.find("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }") == 0);
  CHECK(header.back() == '\n');
  CHECK(b.size() == 10 + hlen + 24);
  float v[6];
  std::memcpy(v, b.data() + 10 + hlen, 24);
  CHECK(v[1] == 4.0f);
  CHECK(std::string(reinterpret_cast<const char*>(serialize_npy(Tensor::zeros({5}, DType::i64)).data()) + 10, 60)
            .find("'shape': (5,)") != std::string::npos);
  CHECK_THROWS_WITH_AS(serialize_npy(Tensor::zeros({2}, DType::bf16)), doctest::Contains("npy: cannot write dtype bfloat16"),
                       Error);
}
