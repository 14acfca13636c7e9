// Elementwise CUDA kernels: unary, unary derivative, binary, comparison, where. The formulas are those of
// kernels/cpu/elementwise.cpp, op for op; bf16 is computed in float and rounded once on store.
// The op is a runtime field of the functor (a uniform branch, free next to the memory traffic), so each
// element type compiles two kernels per family (contiguous-vectorised and strided), not two per op.
#include <stdexcept>

#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/elementwise_loop.cuh"

namespace selfsup::kernels {

using cuda::acc_t;
using cuda::from_acc;
using cuda::launch_elementwise;
using cuda::to_acc;

namespace {

template <typename A>
__device__ __forceinline__ A gelu_d(A x) {
  return A(0.5) * x * (A(1) + erf(x * A(0.70710678118654752440)));
}
template <typename A>
__device__ __forceinline__ A gelu_grad_d(A x) {
  A cdf = A(0.5) * (A(1) + erf(x * A(0.70710678118654752440)));
  A pdf = exp(A(-0.5) * x * x) * A(0.3989422804014327);
  return cdf + x * pdf;
}

template <typename T>
struct UnaryF {
  UnaryOp op;
  acc_t<T> a, b;
  __device__ T operator()(T xin) const {
    using A = acc_t<T>;
    const A x = to_acc(xin);
    A y;
    switch (op) {
      case UnaryOp::neg: y = -x; break;
      case UnaryOp::exp: y = exp(x); break;
      case UnaryOp::log: y = log(x); break;
      case UnaryOp::sqrt: y = sqrt(x); break;
      case UnaryOp::rsqrt: y = A(1) / sqrt(x); break;
      case UnaryOp::abs: y = fabs(x); break;
      case UnaryOp::relu: y = x > A(0) ? x : A(0); break;
      case UnaryOp::sigmoid: y = A(1) / (A(1) + exp(-x)); break;
      case UnaryOp::tanh: y = tanh(x); break;
      case UnaryOp::gelu: y = gelu_d(x); break;
      case UnaryOp::sign: y = A((x > A(0)) - (x < A(0))); break;
      case UnaryOp::square: y = x * x; break;
      case UnaryOp::reciprocal: y = A(1) / x; break;
      case UnaryOp::pow_scalar: y = a == A(2) ? x * x : pow(x, a); break;
      case UnaryOp::clamp: y = x < a ? a : (x > b ? b : x); break;
      case UnaryOp::affine: y = a * x + b; break;
      case UnaryOp::fill: y = a; break;
      default: y = x; break;
    }
    return from_acc<T>(y);
  }
};

template <typename T>
struct UnaryBwdF {
  UnaryBwdOp op;
  acc_t<T> a, b;
  // dx = f(dy, x, y)
  __device__ T operator()(T gin, T uin, T vin) const {
    using A = acc_t<T>;
    const A g = to_acc(gin), u = to_acc(uin), v = to_acc(vin);
    A r;
    switch (op) {
      case UnaryBwdOp::exp: r = g * v; break;
      case UnaryBwdOp::log: r = g / u; break;
      case UnaryBwdOp::sqrt: r = g * A(0.5) / v; break;
      case UnaryBwdOp::rsqrt: r = g * A(-0.5) * v * v * v; break;
      case UnaryBwdOp::abs: r = g * A((u > A(0)) - (u < A(0))); break;
      case UnaryBwdOp::relu: r = u > A(0) ? g : A(0); break;
      case UnaryBwdOp::sigmoid: r = g * v * (A(1) - v); break;
      case UnaryBwdOp::tanh: r = g * (A(1) - v * v); break;
      case UnaryBwdOp::gelu: r = g * gelu_grad_d(u); break;
      case UnaryBwdOp::pow_scalar: r = g * a * pow(u, a - A(1)); break;
      case UnaryBwdOp::clamp: r = (u >= a && u <= b) ? g : A(0); break;
      default: r = g; break;
    }
    return from_acc<T>(r);
  }
};

template <typename T>
struct BinaryF {
  BinaryOp op;
  __device__ T operator()(T uin, T vin) const {
    using A = acc_t<T>;
    const A u = to_acc(uin), v = to_acc(vin);
    A r;
    switch (op) {
      case BinaryOp::add: r = u + v; break;
      case BinaryOp::sub: r = u - v; break;
      case BinaryOp::mul: r = u * v; break;
      case BinaryOp::div: r = u / v; break;
      case BinaryOp::pow: r = static_cast<A>(::pow(static_cast<double>(u), static_cast<double>(v))); break;
      case BinaryOp::maximum: r = u >= v ? u : v; break;
      case BinaryOp::minimum: r = u <= v ? u : v; break;
      default: r = u; break;
    }
    return from_acc<T>(r);
  }
};

template <typename T>
struct CompareF {
  BinaryOp op;
  __device__ uint8_t operator()(T uin, T vin) const {
    const acc_t<T> u = to_acc(uin), v = to_acc(vin);
    switch (op) {
      case BinaryOp::eq: return u == v;
      case BinaryOp::ne: return u != v;
      case BinaryOp::lt: return u < v;
      case BinaryOp::le: return u <= v;
      case BinaryOp::gt: return u > v;
      case BinaryOp::ge: return u >= v;
      default: return 0;
    }
  }
};

template <typename T>
struct WhereF {
  __device__ T operator()(uint8_t c, T a, T b) const { return c != 0 ? a : b; }
};

}  // namespace

template <typename T>
void unary_cuda(UnaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand in, double a,
                double b, cudaStream_t stream) {
  // `fill` reads nothing: give the input the output's pointer so the loop stays valid.
  StridedOperand ops[2] = {out, op == UnaryOp::fill ? out : in};
  UnaryF<T> f{op, static_cast<acc_t<T>>(a), static_cast<acc_t<T>>(b)};
  launch_elementwise<T, T, T, T, 1>(ndim, sizes, ops, f, stream);
}

template <typename T>
void unary_bwd_cuda(UnaryBwdOp op, int ndim, const int64_t* sizes, StridedOperand dx, StridedOperand dy,
                    StridedOperand x, StridedOperand y, double a, double b, cudaStream_t stream) {
  StridedOperand ops[4] = {dx, dy, x, y};
  UnaryBwdF<T> f{op, static_cast<acc_t<T>>(a), static_cast<acc_t<T>>(b)};
  launch_elementwise<T, T, T, T, 3>(ndim, sizes, ops, f, stream);
}

template <typename T>
void binary_cuda(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                 StridedOperand b, cudaStream_t stream) {
  if (op >= BinaryOp::eq) throw std::invalid_argument("binary_cuda: comparison ops go through compare_cuda");
  StridedOperand ops[3] = {out, a, b};
  launch_elementwise<T, T, T, T, 2>(ndim, sizes, ops, BinaryF<T>{op}, stream);
}

template <typename T>
void compare_cuda(BinaryOp op, int ndim, const int64_t* sizes, StridedOperand out, StridedOperand a,
                  StridedOperand b, cudaStream_t stream) {
  if (op < BinaryOp::eq) throw std::invalid_argument("compare_cuda: only comparison ops");
  StridedOperand ops[3] = {out, a, b};
  launch_elementwise<uint8_t, T, T, T, 2>(ndim, sizes, ops, CompareF<T>{op}, stream);
}

template <typename T>
void where_cuda(int ndim, const int64_t* sizes, StridedOperand out, StridedOperand cond, StridedOperand a,
                StridedOperand b, cudaStream_t stream) {
  StridedOperand ops[4] = {out, cond, a, b};
  launch_elementwise<T, uint8_t, T, T, 3>(ndim, sizes, ops, WhereF<T>{}, stream);
}

#define SELFSUP_CUDA_INSTANTIATE_FLOAT(T)                                                                      \
  template void unary_cuda<T>(UnaryOp, int, const int64_t*, StridedOperand, StridedOperand, double, double,    \
                              cudaStream_t);                                                                   \
  template void unary_bwd_cuda<T>(UnaryBwdOp, int, const int64_t*, StridedOperand, StridedOperand,             \
                                  StridedOperand, StridedOperand, double, double, cudaStream_t);
#define SELFSUP_CUDA_INSTANTIATE_ALL(T)                                                                        \
  template void binary_cuda<T>(BinaryOp, int, const int64_t*, StridedOperand, StridedOperand, StridedOperand,  \
                               cudaStream_t);                                                                  \
  template void compare_cuda<T>(BinaryOp, int, const int64_t*, StridedOperand, StridedOperand, StridedOperand, \
                                cudaStream_t);                                                                 \
  template void where_cuda<T>(int, const int64_t*, StridedOperand, StridedOperand, StridedOperand,             \
                              StridedOperand, cudaStream_t);
SELFSUP_CUDA_INSTANTIATE_FLOAT(float)
SELFSUP_CUDA_INSTANTIATE_FLOAT(double)
SELFSUP_CUDA_INSTANTIATE_FLOAT(bf16)
SELFSUP_CUDA_INSTANTIATE_ALL(float)
SELFSUP_CUDA_INSTANTIATE_ALL(double)
SELFSUP_CUDA_INSTANTIATE_ALL(bf16)
SELFSUP_CUDA_INSTANTIATE_ALL(int32_t)
SELFSUP_CUDA_INSTANTIATE_ALL(int64_t)
SELFSUP_CUDA_INSTANTIATE_ALL(uint8_t)

}  // namespace selfsup::kernels
