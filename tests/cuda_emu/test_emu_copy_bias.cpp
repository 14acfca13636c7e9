// The convolution bias kernels (conv_bias.cu) and the strided copy / cast (copy.cu) on the CPU emulator.
// Bias add: against a float64 loop, bit-identical (one rounding of a sum of two T values computed in float
// is the correctly rounded sum). Bias gradient: against a float64 sum, float accumulation tolerance. Copy:
// every one of the 8 x 8 dtype pairs against copy_cast_cpu, to the bit, over contiguous (vector path and
// tail), unaligned, permuted, broadcast, scalar and transposed-output layouts.
#include "tests/cuda_emu/emu_test_util.h"

#include <array>
#include <cstring>
#include <limits>
#include <string>

#include "kernels/cuda/conv_bias.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/kernel_api.h"

using namespace selfsup::kernels;
using namespace emu_test;
using selfsup::DType;

namespace {

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---------------------------------------------------------------- conv bias
template <typename T>
void conv_bias_case(int64_t N, int64_t K, int64_t PQ) {
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(PQ);
  const size_t total = static_cast<size_t>(N * K * PQ);
  const std::vector<double> y = rounded<T>(randn_d(total, 81)),
                            bias = rounded<T>(randn_d(static_cast<size_t>(K), 82, 3.0)),
                            dy = rounded<T>(randn_d(total, 83));
  // Add: y + bias[k] is exact in double, rounded once to T. The kernel adds in float and rounds to T: for
  // float that is the correctly rounded sum; for bf16 too (float holds 2 * 8 + 2 bits), so bit-identical.
  std::vector<double> ref_y(total);
  for (size_t i = 0; i < total; ++i) ref_y[i] = y[i] + bias[(i / static_cast<size_t>(PQ)) % static_cast<size_t>(K)];
  DeviceArray<T> d_y(as<T>(y));
  const DeviceArray<T> d_bias(as<T>(bias));
  conv_bias_add_cuda<T>(N, K, PQ, d_bias.data(), d_y.data(), nullptr);
  CHECK(same_bits(d_y.host(), as<T>(ref_y)));

  // Gradient: a float sum of N * PQ terms per channel (fixed order), then one rounding to T.
  std::vector<double> ref_db(static_cast<size_t>(K), 0.0), abs_db(static_cast<size_t>(K), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t s = 0; s < PQ; ++s) {
        const double v = dy[static_cast<size_t>((n * K + k) * PQ + s)];
        ref_db[static_cast<size_t>(k)] += v;
        abs_db[static_cast<size_t>(k)] += std::fabs(v);
      }
  const DeviceArray<T> d_dy(as<T>(dy));
  DeviceArray<T> d_db(static_cast<size_t>(K));
  conv_bias_grad_cuda<T>(N, K, PQ, d_dy.data(), d_db.data(), nullptr);
  const std::vector<double> got = as_double(d_db.host());
  const double round_rel = std::is_same_v<T, bf16> ? 1.0 / 256 : 1.0 / (1 << 23);  // one rounding to T
  for (int64_t k = 0; k < K; ++k) {
    CAPTURE(k);
    const double ref = ref_db[static_cast<size_t>(k)];
    const double tol = 1e-5 * abs_db[static_cast<size_t>(k)] + round_rel * std::fabs(ref) + 1e-30;
    CHECK(std::fabs(got[static_cast<size_t>(k)] - ref) <= tol);  // NaN (never written) fails
  }
}

// ---------------------------------------------------------------- copy / cast
// Host stand-ins for each dtype, to build inputs and name cases (the CPU kernel's are internal).
template <typename F>
void with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(selfsup::bf16{});
    case DType::f16: return f(selfsup::f16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::b8: return f(bool{});
  }
}
constexpr std::array<DType, 8> kAllDTypes = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                             DType::i32, DType::i64, DType::u8,   DType::b8};

bool is_int(DType t) { return t == DType::i32 || t == DType::i64 || t == DType::u8; }

// v stored as dtype t (as a C cast would, with the CPU's half-precision rounding) and read back.
void put(DType t, char* p, double v) {
  with_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, selfsup::bf16> || std::is_same_v<T, selfsup::f16>) {
      *reinterpret_cast<T*>(p) = T::from_float(static_cast<float>(v));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      *reinterpret_cast<T*>(p) = static_cast<uint8_t>(static_cast<int64_t>(v));
    } else {
      *reinterpret_cast<T*>(p) = static_cast<T>(v);
    }
  });
}
double get(DType t, const char* p) {
  double r = 0;
  with_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, selfsup::bf16> || std::is_same_v<T, selfsup::f16>) {
      r = reinterpret_cast<const T*>(p)->to_float();
    } else {
      r = static_cast<double>(*reinterpret_cast<const T*>(p));
    }
  });
  return r;
}

// Whether converting v to an integer dtype is defined (C++: the truncated value must fit; the GPU
// saturates where the CPU's result is undefined, so such inputs are not part of the promise).
bool fits(DType t, double v) {
  if (!std::isfinite(v)) return false;
  if (t == DType::i32) return v > -2147483649.0 && v < 2147483648.0;
  return v >= -9223372036854775808.0 && v < 9223372036854775808.0;  // i64, u8 (via int64)
}

// Input values for a copy from `in` to `out`: ties and edge cases of every rounding the casts do.
std::vector<double> value_pool(DType in, DType out) {
  std::vector<double> pool;
  if (in == DType::b8) return {0, 1, 1, 0, 1};
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> cand = {0,     1,      -1,     2,     0.5,  -0.5,  1.5,   -2.5,   2.5,  3.75, -7.25,
                              100.4, -128,   127,    200.9, 255,  256,   300.6, -300.6, 1000.5, 42,  -0.0,
                              -1.99, 65535,  -65537, 12.5,  0.99, -0.99, 7,     -3};
  for (float f : randn(24, 91, 20.0f)) cand.push_back(f);
  if (!is_int(in)) {  // floating: half-precision ties, overflow, subnormals, specials, double-only bits
    const double more[] = {1.0 / 3,        1 + 0x1p-8,  1 + 3 * 0x1p-8, -(1 + 0x1p-8), 1 + 0x1p-11, 1 + 3 * 0x1p-11,
                           65504,          65520,       -65520,         1e5,           3e38,        -3e38,
                           1e-5,           6e-8,        2.9e-8,         0x1p-24,       0x1p-25,     0x3p-26,
                           1e-40,          -1e-40,      0x1p-133,       0.1,           1 + 0x1p-30, 16777217,
                           2147483647.5,   -2147483648.7, 3e9,          nan,           -nan,        inf,
                           -inf,           0x1.fffffep127, 0x1.ff8p15,  0x1.fep127,  3000000007.0, -3000000007.0};
    cand.insert(cand.end(), std::begin(more), std::end(more));
  } else {  // integers: the limits of int32, past them (uint8 wraps through int64, not int32), 2^24 + 1
    const double more[] = {2147483647.0, -2147483648.0, 3000000007.0, -3000000007.0, 16777217, -16777217};
    cand.insert(cand.end(), std::begin(more), std::end(more));
  }
  for (double v : cand) {
    if (is_int(in) && !fits(in, v)) continue;
    char buf[8];
    put(in, buf, v);
    const double w = get(in, buf);  // the value as read
    if (is_int(out) && !fits(out, w)) continue;
    pool.push_back(v);
  }
  return pool;
}

// int64 values that are not doubles (written directly, not through the pool): a conversion rounds them.
// The last one becomes 2^63 as a double, which only a floating or bool output can take.
constexpr int64_t kBigInts[] = {(int64_t(1) << 53) + 1, -(int64_t(1) << 62) - 12345, (int64_t(1) << 62) + 1,
                                std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};

struct Layout {
  const char* name;
  std::vector<int64_t> sizes, out_strides, in_strides;
  int64_t out_storage, in_storage, in_offset;  // elements; the input starts in_offset elements in
};

std::vector<int64_t> contiguous(const std::vector<int64_t>& sizes) {
  std::vector<int64_t> s(sizes.size());
  int64_t st = 1;
  for (size_t d = sizes.size(); d-- > 0;) {
    s[d] = st;
    st *= sizes[d];
  }
  return s;
}

std::vector<Layout> copy_layouts() {
  const std::vector<int64_t> sz = {3, 5, 7}, c = contiguous(sz);
  return {
      {"contiguous (vector path, tail)", sz, c, c, 105, 105, 0},
      {"contiguous, fewer elements than one vector", {1, 3}, {3, 1}, {3, 1}, 3, 3, 0},
      {"unaligned input (strided path, one dim)", sz, c, c, 105, 106, 1},
      {"permuted input (7, 3, 5) storage", sz, c, {5, 1, 15}, 105, 105, 0},
      {"broadcast input along dims 0 and 2", sz, c, {0, 1, 0}, 105, 5, 0},
      {"scalar input (contiguous path, scalar mask)", sz, c, {0, 0, 0}, 105, 1, 0},
      {"transposed output, contiguous input", sz, {1, 3, 15}, c, 105, 105, 0},
  };
}

// big_ints: the input's first elements are kBigInts when it is int64 (not for an int32 output).
void copy_case(DType out_t, DType in_t, const Layout& L, const std::vector<double>& pool, bool big_ints) {
  const std::string what = std::string(selfsup::dtype_name(in_t)) + " -> " + selfsup::dtype_name(out_t) + ", " + L.name;
  CAPTURE(what);
  const size_t is = selfsup::dtype_size(in_t), os = selfsup::dtype_size(out_t);
  std::vector<char> in(static_cast<size_t>(L.in_storage) * is);
  for (size_t j = 0; j < static_cast<size_t>(L.in_storage); ++j) put(in_t, &in[j * is], pool[j % pool.size()]);
  if (big_ints && in_t == DType::i64 && out_t != DType::i32) {  // int64 values past 2^53 first
    const size_t nb = std::size(kBigInts) - (is_int(out_t) ? 1 : 0);
    for (size_t j = 0; j < nb && j < static_cast<size_t>(L.in_storage); ++j) std::memcpy(&in[j * is], &kBigInts[j], 8);
  }
  if (in_t == out_t && !is_int(in_t) && in_t != DType::b8 && L.in_storage > 2) {
    // a plain copy moves bits: a signalling NaN with a payload and a negative NaN survive it
    const uint64_t snan[2] = {is == 8 ? 0x7ff0000000000123ull : is == 4 ? 0x7f800123ull : 0x7c05ull,
                              is == 8 ? 0xfff8000000000001ull : is == 4 ? 0xffc00001ull : 0xffc1ull};
    std::memcpy(&in[is], &snan[0], is);
    std::memcpy(&in[2 * is], &snan[1], is);
  }
  std::vector<char> ref(static_cast<size_t>(L.out_storage) * os, static_cast<char>(0xff));
  const int nd = static_cast<int>(L.sizes.size());
  copy_cast_cpu(nd, L.sizes.data(), out_t, {ref.data(), L.out_strides.data()}, in_t,
                {in.data() + L.in_offset * static_cast<int64_t>(is), L.in_strides.data()});
  const DeviceArray<char> d_in(in);
  DeviceArray<char> d_out(ref.size());
  copy_cast_cuda(nd, L.sizes.data(), out_t, {d_out.data(), L.out_strides.data()}, in_t,
                 {d_in.data() + L.in_offset * static_cast<int64_t>(is), L.in_strides.data()}, nullptr);
  const std::vector<char> got = d_out.host();
  size_t bad = 0;
  while (bad < ref.size() && got[bad] == ref[bad]) ++bad;
  if (bad < ref.size()) {
    const size_t e = bad / os;
    CAPTURE(e);
    const double g = get(out_t, &got[e * os]), r = get(out_t, &ref[e * os]);
    CAPTURE(g);
    CAPTURE(r);
    FAIL_CHECK("the emulated copy differs from copy_cast_cpu");
  }
}

}  // namespace

TEST_CASE("emulated conv bias add and gradient: float and bf16, odd planes, several warps per channel") {
  const int64_t shapes[][3] = {{2, 3, 49}, {3, 5, 1}, {4, 7, 33}, {5, 2, 131}, {1, 19, 9}};
  for (const auto& s : shapes) {
    conv_bias_case<float>(s[0], s[1], s[2]);
    conv_bias_case<bf16>(s[0], s[1], s[2]);
  }
  // N = 0: the gradient is written as zeros; K = 0: nothing to do.
  DeviceArray<float> d_db(3), d_empty(1);
  conv_bias_grad_cuda<float>(0, 3, 5, d_empty.data(), d_db.data(), nullptr);
  CHECK(d_db.host() == std::vector<float>(3, 0.0f));
  conv_bias_add_cuda<float>(0, 3, 5, d_db.data(), d_empty.data(), nullptr);
  conv_bias_grad_cuda<float>(2, 0, 5, d_empty.data(), d_db.data(), nullptr);
  CHECK(std::isnan(d_empty.host()[0]));  // untouched
  launches_checked();
}

TEST_CASE("emulated copy / cast: every dtype pair, every layout, bit-identical to copy_cast_cpu") {
  const std::vector<Layout> layouts = copy_layouts();
  for (const DType o : kAllDTypes)
    for (const DType i : kAllDTypes) {
      const std::vector<double> pool = value_pool(i, o);
      REQUIRE(pool.size() >= 5);
      for (const Layout& L : layouts) copy_case(o, i, L, pool, true);
    }
  launches_checked();
}

TEST_CASE("emulated copy / cast: many blocks, contiguous and transposed") {
  const std::vector<int64_t> flat = {2051}, mat = {33, 65};
  const Layout big[] = {{"contiguous 2051", flat, {1}, {1}, 2051, 2051, 0},
                        {"transposed 33 x 65", mat, {65, 1}, {1, 33}, 2145, 2145, 0}};
  const DType pairs[][2] = {{DType::bf16, DType::f32}, {DType::f32, DType::bf16}, {DType::f16, DType::f32},
                            {DType::f32, DType::f16},  {DType::f32, DType::u8},   {DType::u8, DType::u8},
                            {DType::f32, DType::f32},  {DType::f32, DType::i64}};
  for (const auto& p : pairs)
    for (const Layout& L : big) copy_case(p[0], p[1], L, value_pool(p[1], p[0]), true);
  launches_checked();
}
