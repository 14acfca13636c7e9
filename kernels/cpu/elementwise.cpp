// Elementwise CPU kernels: unary, unary derivative, binary, comparison, where, and strided copy with
// dtype conversion. Each op is a lambda handed to StridedLoop, so each op gets its own loop that the
// compiler vectorises on the unit-stride path.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/cpu/strided_loop.h"
#include "kernels/kernel_api.h"

namespace selfsup::kernels {

using cpu::StridedLoop;

namespace {

// Applies f(x) -> y over out/in.
template <typename T, typename F>
void map1(const StridedLoop<2>& loop, F f) {
  loop.run([&](int64_t n, const std::array<char*, 2>& p, const std::array<int64_t, 2>& s) {
    T* o = reinterpret_cast<T*>(p[0]);
    const T* x = reinterpret_cast<const T*>(p[1]);
    if (s[0] == sizeof(T) && s[1] == sizeof(T)) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<T*>(p[0] + i * s[0]) = f(*reinterpret_cast<const T*>(p[1] + i * s[1]));
    }
  });
}

// Applies f(a, b) -> out; Out may differ from T (comparisons write uint8).
template <typename Out, typename T, typename F>
void map2(const StridedLoop<3>& loop, F f) {
  loop.run([&](int64_t n, const std::array<char*, 3>& p, const std::array<int64_t, 3>& s) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    const T* a = reinterpret_cast<const T*>(p[1]);
    const T* b = reinterpret_cast<const T*>(p[2]);
    if (s[0] == sizeof(Out) && s[1] == sizeof(T) && s[2] == sizeof(T)) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (s[0] == sizeof(Out) && s[1] == sizeof(T) && s[2] == 0) {
      const T bv = *b;
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<Out*>(p[0] + i * s[0]) =
            f(*reinterpret_cast<const T*>(p[1] + i * s[1]), *reinterpret_cast<const T*>(p[2] + i * s[2]));
    }
  });
}

// dx = g(dy, x, y) over four operands.
template <typename T, typename F>
void map_bwd(const StridedLoop<4>& loop, F f) {
  loop.run([&](int64_t n, const std::array<char*, 4>& p, const std::array<int64_t, 4>& s) {
    if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == sizeof(T)) {
      T* dx = reinterpret_cast<T*>(p[0]);
      const T* dy = reinterpret_cast<const T*>(p[1]);
      const T* x = reinterpret_cast<const T*>(p[2]);
      const T* y = reinterpret_cast<const T*>(p[3]);
      for (int64_t i = 0; i < n; ++i) dx[i] = f(dy[i], x[i], y[i]);
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      T dy = *reinterpret_cast<const T*>(p[1] + i * s[1]);
      T x = *reinterpret_cast<const T*>(p[2] + i * s[2]);
      T y = *reinterpret_cast<const T*>(p[3] + i * s[3]);
      *reinterpret_cast<T*>(p[0] + i * s[0]) = f(dy, x, y);
    }
  });
}

template <typename T>
T gelu(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2)));
}
template <typename T>
T gelu_grad(T x) {
  T cdf = T(0.5) * (T(1) + std::erf(x * T(M_SQRT1_2)));
  T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}

}  // namespace

template <typename T>
void unary_cpu(UnaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand in, double a,
               double b) {
  // `fill` reads nothing: give the input the output's pointer so the loop stays valid.
  StridedOperand src = op == UnaryOp::fill ? out : in;
  StridedLoop<2> loop(ndim, sizes, {static_cast<char*>(out.data), static_cast<char*>(src.data)},
                      {out.strides, src.strides}, {sizeof(T), sizeof(T)});
  const T ta = static_cast<T>(a), tb = static_cast<T>(b);
  switch (op) {
    case UnaryOp::neg: return map1<T>(loop, [](T x) { return -x; });
    case UnaryOp::exp: return map1<T>(loop, [](T x) { return std::exp(x); });
    case UnaryOp::log: return map1<T>(loop, [](T x) { return std::log(x); });
    case UnaryOp::sqrt: return map1<T>(loop, [](T x) { return std::sqrt(x); });
    case UnaryOp::rsqrt: return map1<T>(loop, [](T x) { return T(1) / std::sqrt(x); });
    case UnaryOp::abs: return map1<T>(loop, [](T x) { return std::abs(x); });
    case UnaryOp::relu: return map1<T>(loop, [](T x) { return x > T(0) ? x : T(0); });
    case UnaryOp::sigmoid: return map1<T>(loop, [](T x) { return T(1) / (T(1) + std::exp(-x)); });
    case UnaryOp::tanh: return map1<T>(loop, [](T x) { return std::tanh(x); });
    case UnaryOp::gelu: return map1<T>(loop, [](T x) { return gelu(x); });
    case UnaryOp::sign: return map1<T>(loop, [](T x) { return T((x > T(0)) - (x < T(0))); });
    case UnaryOp::square: return map1<T>(loop, [](T x) { return x * x; });
    case UnaryOp::reciprocal: return map1<T>(loop, [](T x) { return T(1) / x; });
    case UnaryOp::pow_scalar:
      if (a == 2.0) return map1<T>(loop, [](T x) { return x * x; });
      return map1<T>(loop, [ta](T x) { return std::pow(x, ta); });
    case UnaryOp::clamp: return map1<T>(loop, [ta, tb](T x) { return x < ta ? ta : (x > tb ? tb : x); });
    case UnaryOp::affine: return map1<T>(loop, [ta, tb](T x) { return ta * x + tb; });
    case UnaryOp::fill: return map1<T>(loop, [ta](T) { return ta; });
  }
}

template <typename T>
void unary_bwd_cpu(UnaryBwdOp op, int ndim, const int64_t* sizes, StridedOperand dx, StridedOperand dy,
                   StridedOperand x, StridedOperand y, double a, double b) {
  StridedLoop<4> loop(ndim, sizes,
                      {static_cast<char*>(dx.data), static_cast<char*>(dy.data), static_cast<char*>(x.data),
                       static_cast<char*>(y.data)},
                      {dx.strides, dy.strides, x.strides, y.strides}, {sizeof(T), sizeof(T), sizeof(T), sizeof(T)});
  const T ta = static_cast<T>(a), tb = static_cast<T>(b);
  switch (op) {
    case UnaryBwdOp::exp: return map_bwd<T>(loop, [](T g, T, T v) { return g * v; });
    case UnaryBwdOp::log: return map_bwd<T>(loop, [](T g, T u, T) { return g / u; });
    case UnaryBwdOp::sqrt: return map_bwd<T>(loop, [](T g, T, T v) { return g * T(0.5) / v; });
    case UnaryBwdOp::rsqrt: return map_bwd<T>(loop, [](T g, T, T v) { return g * T(-0.5) * v * v * v; });
    case UnaryBwdOp::abs:
      return map_bwd<T>(loop, [](T g, T u, T) { return g * T((u > T(0)) - (u < T(0))); });
    case UnaryBwdOp::relu: return map_bwd<T>(loop, [](T g, T u, T) { return u > T(0) ? g : T(0); });
    case UnaryBwdOp::sigmoid: return map_bwd<T>(loop, [](T g, T, T v) { return g * v * (T(1) - v); });
    case UnaryBwdOp::tanh: return map_bwd<T>(loop, [](T g, T, T v) { return g * (T(1) - v * v); });
    case UnaryBwdOp::gelu: return map_bwd<T>(loop, [](T g, T u, T) { return g * gelu_grad(u); });
    case UnaryBwdOp::pow_scalar:
      return map_bwd<T>(loop, [ta](T g, T u, T) { return g * ta * std::pow(u, ta - T(1)); });
    case UnaryBwdOp::clamp:
      return map_bwd<T>(loop, [ta, tb](T g, T u, T) { return (u >= ta && u <= tb) ? g : T(0); });
  }
}

template <typename T>
void binary_cpu(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                StridedOperand b) {
  StridedLoop<3> loop(ndim, sizes,
                      {static_cast<char*>(out.data), static_cast<char*>(a.data), static_cast<char*>(b.data)},
                      {out.strides, a.strides, b.strides}, {sizeof(T), sizeof(T), sizeof(T)});
  switch (op) {
    case BinaryOp::add: return map2<T, T>(loop, [](T u, T v) { return u + v; });
    case BinaryOp::sub: return map2<T, T>(loop, [](T u, T v) { return u - v; });
    case BinaryOp::mul: return map2<T, T>(loop, [](T u, T v) { return u * v; });
    case BinaryOp::div: return map2<T, T>(loop, [](T u, T v) { return u / v; });
    case BinaryOp::pow:
      return map2<T, T>(loop, [](T u, T v) { return static_cast<T>(std::pow(double(u), double(v))); });
    case BinaryOp::maximum: return map2<T, T>(loop, [](T u, T v) { return u >= v ? u : v; });
    case BinaryOp::minimum: return map2<T, T>(loop, [](T u, T v) { return u <= v ? u : v; });
    default: throw std::runtime_error("binary_cpu: comparison ops go through compare_cpu");
  }
}

template <typename T>
void compare_cpu(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                 StridedOperand b) {
  StridedLoop<3> loop(ndim, sizes,
                      {static_cast<char*>(out.data), static_cast<char*>(a.data), static_cast<char*>(b.data)},
                      {out.strides, a.strides, b.strides}, {1, sizeof(T), sizeof(T)});
  switch (op) {
    case BinaryOp::eq: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u == v); });
    case BinaryOp::ne: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u != v); });
    case BinaryOp::lt: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u < v); });
    case BinaryOp::le: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u <= v); });
    case BinaryOp::gt: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u > v); });
    case BinaryOp::ge: return map2<uint8_t, T>(loop, [](T u, T v) { return uint8_t(u >= v); });
    default: throw std::runtime_error("compare_cpu: only comparison ops");
  }
}

template <typename T>
void where_cpu(int ndim, const int64_t* sizes, StridedOperand out, StridedOperand cond, StridedOperand a,
               StridedOperand b) {
  StridedLoop<4> loop(ndim, sizes,
                      {static_cast<char*>(out.data), static_cast<char*>(cond.data), static_cast<char*>(a.data),
                       static_cast<char*>(b.data)},
                      {out.strides, cond.strides, a.strides, b.strides}, {sizeof(T), 1, sizeof(T), sizeof(T)});
  loop.run([&](int64_t n, const std::array<char*, 4>& p, const std::array<int64_t, 4>& s) {
    for (int64_t i = 0; i < n; ++i) {
      bool c = *reinterpret_cast<const uint8_t*>(p[1] + i * s[1]) != 0;
      *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[c ? 2 : 3] + i * s[c ? 2 : 3]);
    }
  });
}

namespace {

template <typename T>
double load_as_double(const char* p) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    return reinterpret_cast<const T*>(p)->to_float();
  } else {
    return static_cast<double>(*reinterpret_cast<const T*>(p));
  }
}
template <typename T>
void store_from_double(char* p, double v) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    *reinterpret_cast<T*>(p) = T::from_float(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, uint8_t>) {
    *reinterpret_cast<T*>(p) = static_cast<T>(static_cast<int64_t>(v));  // wraps like a C cast of an int
  } else {
    *reinterpret_cast<T*>(p) = static_cast<T>(v);
  }
}

template <typename F>
void visit_dtype(DType t, F f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16{});
    case DType::f16: return f(f16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::b8: return f(bool{});
  }
}

}  // namespace

void copy_cast_cpu(int ndim, const int64_t* sizes, DType out_dtype, StridedOperand out, DType in_dtype,
                   StridedOperand in) {
  const int64_t os = static_cast<int64_t>(dtype_size(out_dtype)), is = static_cast<int64_t>(dtype_size(in_dtype));
  StridedLoop<2> loop(ndim, sizes, {static_cast<char*>(out.data), static_cast<char*>(in.data)},
                      {out.strides, in.strides}, {os, is});
  if (out_dtype == in_dtype) {  // a plain copy: exact for every type (int64 beyond 2^53 included)
    loop.run([&](int64_t n, const std::array<char*, 2>& p, const std::array<int64_t, 2>& s) {
      if (s[0] == os && s[1] == is) {
        std::memcpy(p[0], p[1], static_cast<size_t>(n * os));
      } else {
        for (int64_t i = 0; i < n; ++i) std::memcpy(p[0] + i * s[0], p[1] + i * s[1], static_cast<size_t>(os));
      }
    });
    return;
  }
  visit_dtype(out_dtype, [&](auto out_tag) {
    using O = decltype(out_tag);
    visit_dtype(in_dtype, [&](auto in_tag) {
      using I = decltype(in_tag);
      loop.run([&](int64_t n, const std::array<char*, 2>& p, const std::array<int64_t, 2>& s) {
        for (int64_t i = 0; i < n; ++i) {
          double v = load_as_double<I>(p[1] + i * s[1]);
          if constexpr (std::is_same_v<O, bool>) {
            *reinterpret_cast<bool*>(p[0] + i * s[0]) = v != 0.0;
          } else {
            store_from_double<O>(p[0] + i * s[0], v);
          }
        }
      });
    });
  });
}

#define SELFSUP_INSTANTIATE_FLOAT(T)                                                                         \
  template void unary_cpu<T>(UnaryOp, int, const int64_t*, StridedOperand, StridedOperand, double, double);  \
  template void unary_bwd_cpu<T>(UnaryBwdOp, int, const int64_t*, StridedOperand, StridedOperand,            \
                                 StridedOperand, StridedOperand, double, double);
#define SELFSUP_INSTANTIATE_ALL(T)                                                                           \
  template void binary_cpu<T>(BinaryOp, int, const int64_t*, StridedOperand, StridedOperand, StridedOperand); \
  template void compare_cpu<T>(BinaryOp, int, const int64_t*, StridedOperand, StridedOperand, StridedOperand); \
  template void where_cpu<T>(int, const int64_t*, StridedOperand, StridedOperand, StridedOperand, StridedOperand);
SELFSUP_INSTANTIATE_FLOAT(float)
SELFSUP_INSTANTIATE_FLOAT(double)
SELFSUP_INSTANTIATE_ALL(float)
SELFSUP_INSTANTIATE_ALL(double)
SELFSUP_INSTANTIATE_ALL(int32_t)
SELFSUP_INSTANTIATE_ALL(int64_t)
SELFSUP_INSTANTIATE_ALL(uint8_t)

}  // namespace selfsup::kernels
