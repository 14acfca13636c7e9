// Strided copy with dtype conversion, every dtype pair, with the rules of copy_cast_cpu: a same-dtype copy
// moves raw bytes (exact for every type); a conversion goes through double exactly as the CPU does
// (int64 -> float rounds via double, float -> uint8 truncates through int64, anything -> bool is != 0,
// bf16/f16 round to nearest even with the CPU's NaN pattern), so CPU and GPU casts agree bit for bit.
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/elementwise_loop.cuh"

namespace selfsup::kernels {

using cuda::launch_elementwise;

namespace {

template <typename T>
__device__ __forceinline__ double load_as_double(T x) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    return static_cast<double>(cuda::to_float(x));
  } else {
    return static_cast<double>(x);
  }
}

template <typename O>
__device__ __forceinline__ O store_from_double(double v) {
  if constexpr (std::is_same_v<O, bf16>) {
    return cuda::to_bf16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<O, f16>) {
    return cuda::to_f16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<O, bool>) {
    return v != 0.0;
  } else if constexpr (std::is_same_v<O, uint8_t>) {
    return static_cast<uint8_t>(static_cast<int64_t>(v));
  } else {
    return static_cast<O>(v);
  }
}

template <typename O, typename I>
struct CastF {
  __device__ O operator()(I x) const { return store_from_double<O>(load_as_double<I>(x)); }
};

template <typename T>
struct CopyF {
  __device__ T operator()(T x) const { return x; }
};

template <typename F>
void visit_dtype(DType t, F&& f) {
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

void copy_cast_cuda(int ndim, const int64_t* sizes, DType out_dtype, StridedOperand out, DType in_dtype,
                    StridedOperand in, cudaStream_t stream) {
  StridedOperand ops[2] = {out, in};
  if (out_dtype == in_dtype) {  // raw copy by element size
    switch (dtype_size(out_dtype)) {
      case 1: return launch_elementwise<uint8_t, uint8_t, uint8_t, uint8_t, 1>(ndim, sizes, ops, CopyF<uint8_t>{}, stream);
      case 2: return launch_elementwise<uint16_t, uint16_t, uint16_t, uint16_t, 1>(ndim, sizes, ops, CopyF<uint16_t>{}, stream);
      case 4: return launch_elementwise<uint32_t, uint32_t, uint32_t, uint32_t, 1>(ndim, sizes, ops, CopyF<uint32_t>{}, stream);
      default: return launch_elementwise<uint64_t, uint64_t, uint64_t, uint64_t, 1>(ndim, sizes, ops, CopyF<uint64_t>{}, stream);
    }
  }
  visit_dtype(out_dtype, [&](auto out_tag) {
    using O = decltype(out_tag);
    visit_dtype(in_dtype, [&](auto in_tag) {
      using I = decltype(in_tag);
      launch_elementwise<O, I, I, I, 1>(ndim, sizes, ops, CastF<O, I>{}, stream);
    });
  });
}

}  // namespace selfsup::kernels
