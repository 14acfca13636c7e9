// The launch machinery behind every elementwise CUDA kernel (the GPU twin of kernels/cpu/strided_loop.h).
//
// Host side: dimensions that are contiguous for every operand are merged (a contiguous tensor becomes one
// flat dimension, a transposed one two), size-1 dims are dropped, and the result (at most kMaxDims dims)
// is passed to the kernel by value. Then one of two kernels runs:
//   contig_kernel<V>: every operand is contiguous (or a broadcast scalar) and 16-byte aligned: each
//                     thread loads V elements per operand with one vector instruction (16 bytes for the
//                     widest operand), computes, stores V results; the scalar tail is done separately.
//   strided_kernel:   anything else; each element's byte offsets come from its linear index by div/mod
//                     over the coalesced sizes (32-bit arithmetic when the loop has < 2^31 elements).
// Ops are functors with a device operator() over 1, 2 or 3 inputs; a runtime `op` field inside the
// functor picks the operation, so each dtype compiles one kernel pair per family, not one per op.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/kernel_api.h"

namespace selfsup::kernels::cuda {

// ---- half-precision storage types (selfsup::bf16 / f16 from kernels/dtype.h) on the device, with the
// same round-to-nearest-even and NaN rules as the CPU conversions, so casts agree bit for bit.
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }
__device__ __forceinline__ bf16 to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  bf16 r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.bits = static_cast<uint16_t>((u >> 16) | 0x40);
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.bits = static_cast<uint16_t>(u >> 16);
  }
  return r;
}
__device__ __forceinline__ float to_float(f16 x) {
  // NaN: the CPU's f16::to_float keeps the sign and payload; cvt.f32.f16 (and __half2float's host version)
  // returns the canonical NaN 0x7fffffff, which would make an f16 -> f32/f64/bf16 cast differ in its bits.
  if ((x.bits & 0x7c00u) == 0x7c00u && (x.bits & 0x3ffu) != 0u)
    return __uint_as_float(((static_cast<uint32_t>(x.bits) & 0x8000u) << 16) | 0x7f800000u |
                           ((static_cast<uint32_t>(x.bits) & 0x3ffu) << 13));
  __half_raw raw;
  raw.x = x.bits;
  return __half2float(__half(raw));
}
__device__ __forceinline__ f16 to_f16(float f) {
  f16 r;
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep the CPU's quiet-NaN pattern
    r.bits = static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7c00u | 0x200u);
    return r;
  }
  __half_raw raw = __half_raw(__float2half_rn(f));
  r.bits = raw.x;
  return r;
}

// Compute type: half-precision storage computes in float.
template <typename T>
struct Acc {
  using type = T;
};
template <>
struct Acc<bf16> {
  using type = float;
};
template <>
struct Acc<f16> {
  using type = float;
};
template <typename T>
using acc_t = typename Acc<T>::type;

template <typename T>
__device__ __forceinline__ acc_t<T> to_acc(T x) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    return to_float(x);
  } else {
    return x;
  }
}
template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return to_bf16(x);
  } else if constexpr (std::is_same_v<T, f16>) {
    return to_f16(x);
  } else {
    return x;
  }
}

// ---- geometry
template <int N>
struct Geom {
  int ndim = 0;
  bool small = false;                      // numel < 2^31: 32-bit index arithmetic
  int64_t sizes[kMaxDims] = {};            // innermost last
  int64_t strides[N][kMaxDims] = {};       // bytes
};

template <int N>
struct Ptrs {
  char* p[N];
};

// Merges dimensions as StridedLoop does; returns numel. Throws beyond kMaxDims coalesced dims.
template <int N>
int64_t coalesce(int ndim, const int64_t* sizes, const std::array<const int64_t*, N>& elem_strides,
                 const std::array<int64_t, N>& elem_bytes, Geom<N>& g) {
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) numel *= sizes[d];
  int nd = 0;
  int64_t gs[64];
  int64_t st[N][64];
  for (int d = 0; d < ndim; ++d) {
    if (sizes[d] == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < N && merge; ++k) merge = st[k][nd - 1] == elem_strides[k][d] * elem_bytes[k] * sizes[d];
    if (merge) {
      gs[nd - 1] *= sizes[d];
      for (int k = 0; k < N; ++k) st[k][nd - 1] = elem_strides[k][d] * elem_bytes[k];
    } else {
      if (nd == 64) throw CudaError("elementwise CUDA kernel: more than 64 dimensions");
      gs[nd] = sizes[d];
      for (int k = 0; k < N; ++k) st[k][nd] = elem_strides[k][d] * elem_bytes[k];
      ++nd;
    }
  }
  if (nd == 0) {
    gs[0] = 1;
    for (int k = 0; k < N; ++k) st[k][0] = 0;
    nd = 1;
  }
  if (nd > kMaxDims)
    throw CudaError("elementwise CUDA kernel: " + std::to_string(nd) + " dimensions remain after merging (at most " +
                    std::to_string(kMaxDims) + " supported); make the operands contiguous first");
  g.ndim = nd;
  g.small = numel < (int64_t(1) << 31);
  for (int d = 0; d < nd; ++d) {
    g.sizes[d] = gs[d];
    for (int k = 0; k < N; ++k) g.strides[k][d] = st[k][d];
  }
  return numel;
}

// Byte offsets of linear element i for every operand.
template <int N>
__device__ __forceinline__ void offsets_of(const Geom<N>& g, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  if (g.ndim == 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i * g.strides[k][0];
    return;
  }
  if (g.small) {
    uint32_t r = static_cast<uint32_t>(i);
    for (int d = g.ndim - 1; d >= 0; --d) {
      uint32_t sz = static_cast<uint32_t>(g.sizes[d]);
      uint32_t q = r / sz, idx = r - q * sz;
      r = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(idx) * g.strides[k][d];
    }
  } else {
    int64_t r = i;
    for (int d = g.ndim - 1; d >= 0; --d) {
      int64_t q = r / g.sizes[d], idx = r - q * g.sizes[d];
      r = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * g.strides[k][d];
    }
  }
}

// Calls f on the K inputs at p[1..K] and stores into p[0].
template <typename Out, typename A, typename B, typename C, int K, typename F>
__device__ __forceinline__ void apply_at(const F& f, char* o, const char* a, const char* b, const char* c) {
  if constexpr (K == 1) {
    *reinterpret_cast<Out*>(o) = f(*reinterpret_cast<const A*>(a));
  } else if constexpr (K == 2) {
    *reinterpret_cast<Out*>(o) = f(*reinterpret_cast<const A*>(a), *reinterpret_cast<const B*>(b));
  } else {
    *reinterpret_cast<Out*>(o) =
        f(*reinterpret_cast<const A*>(a), *reinterpret_cast<const B*>(b), *reinterpret_cast<const C*>(c));
  }
}

template <typename Out, typename A, typename B, typename C, int K, typename F>
__global__ void strided_kernel(Geom<K + 1> g, int64_t n, Ptrs<K + 1> p, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[K + 1];
    offsets_of<K + 1>(g, i, off);
    apply_at<Out, A, B, C, K>(f, p.p[0] + off[0], p.p[1] + off[1], K >= 2 ? p.p[K >= 2 ? 2 : 1] + off[K >= 2 ? 2 : 1] : nullptr,
                              K >= 3 ? p.p[K >= 3 ? 3 : 1] + off[K >= 3 ? 3 : 1] : nullptr);
  }
}

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_or_splat(const char* base, bool scalar, int64_t i0) {
  Vec<T, V> r;
  if (scalar) {
    T s = *reinterpret_cast<const T*>(base);
#pragma unroll
    for (int j = 0; j < V; ++j) r.v[j] = s;
  } else {
    r = load_vec<T, V>(reinterpret_cast<const T*>(base) + i0);
  }
  return r;
}

// Contiguous operands (input k is a broadcast scalar when bit k of scalar_mask is set).
template <int V, typename Out, typename A, typename B, typename C, int K, typename F>
__global__ void contig_kernel(int64_t n, Ptrs<K + 1> p, unsigned scalar_mask, F f) {
  const int64_t nvec = n / V;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += step) {
    const int64_t i0 = v * V;
    Vec<A, V> a = load_or_splat<A, V>(p.p[1], scalar_mask & 1u, i0);
    Vec<Out, V> o;
    if constexpr (K == 1) {
#pragma unroll
      for (int j = 0; j < V; ++j) o.v[j] = f(a.v[j]);
    } else if constexpr (K == 2) {
      Vec<B, V> b = load_or_splat<B, V>(p.p[2], scalar_mask & 2u, i0);
#pragma unroll
      for (int j = 0; j < V; ++j) o.v[j] = f(a.v[j], b.v[j]);
    } else {
      Vec<B, V> b = load_or_splat<B, V>(p.p[2], scalar_mask & 2u, i0);
      Vec<C, V> c = load_or_splat<C, V>(p.p[3], scalar_mask & 4u, i0);
#pragma unroll
      for (int j = 0; j < V; ++j) o.v[j] = f(a.v[j], b.v[j], c.v[j]);
    }
    store_vec<Out, V>(reinterpret_cast<Out*>(p.p[0]) + i0, o);
  }
  // Tail (fewer than V elements): one thread each.
  const int64_t i = nvec * V + tid;
  if (i < n) {
    const int64_t so[4] = {static_cast<int64_t>(sizeof(Out)), static_cast<int64_t>(sizeof(A)),
                           static_cast<int64_t>(sizeof(B)), static_cast<int64_t>(sizeof(C))};
    auto at = [&](int k) -> char* { return p.p[k] + ((scalar_mask >> (k - 1)) & 1u ? 0 : i * so[k]); };
    apply_at<Out, A, B, C, K>(f, p.p[0] + i * so[0], at(1), K >= 2 ? at(K >= 2 ? 2 : 1) : nullptr,
                              K >= 3 ? at(K >= 3 ? 3 : 1) : nullptr);
  }
}

// Runs f over K inputs (types A, B, C; unused ones ignored) into an output of type Out.
// ops[0] is the output, ops[1..K] the inputs, all sharing `sizes`.
template <typename Out, typename A, typename B, typename C, int K, typename F>
void launch_elementwise(int ndim, const int64_t* sizes, const StridedOperand* ops, const F& f, cudaStream_t stream) {
  constexpr int N = K + 1;
  const std::array<int64_t, 4> bytes = {static_cast<int64_t>(sizeof(Out)), static_cast<int64_t>(sizeof(A)),
                                        static_cast<int64_t>(sizeof(B)), static_cast<int64_t>(sizeof(C))};
  std::array<const int64_t*, N> st;
  std::array<int64_t, N> eb;
  Ptrs<N> p;
  for (int k = 0; k < N; ++k) {
    st[k] = ops[k].strides;
    eb[k] = bytes[k];
    p.p[k] = static_cast<char*>(ops[k].data);
  }
  Geom<N> g;
  const int64_t n = coalesce<N>(ndim, sizes, st, eb, g);
  if (n == 0) return;

  constexpr size_t kWidest = std::max({sizeof(Out), sizeof(A), K >= 2 ? sizeof(B) : 1, K >= 3 ? sizeof(C) : 1});
  constexpr int V = static_cast<int>(16 / kWidest) > 0 ? static_cast<int>(16 / kWidest) : 1;
  bool contiguous = g.ndim == 1 && g.strides[0][0] == bytes[0];
  unsigned scalar_mask = 0;
  for (int k = 1; k < N && contiguous; ++k) {
    if (g.strides[k][0] == 0) {
      scalar_mask |= 1u << (k - 1);
    } else if (g.strides[k][0] != bytes[k]) {
      contiguous = false;
    } else if (!is_aligned(p.p[k], bytes[k] * V)) {
      contiguous = false;
    }
  }
  if (contiguous && !is_aligned(p.p[0], bytes[0] * V)) contiguous = false;
  if (contiguous && V > 1) {
    const int64_t work = std::max<int64_t>(n / V, 1);
    SELFSUP_LAUNCH(grid_for(work, kBlock), kBlock, 0, stream, contig_kernel<V, Out, A, B, C, K>)(
        n, p, scalar_mask, f);
    SELFSUP_LAUNCH_CHECK();
  } else {
    SELFSUP_LAUNCH(grid_for(n, kBlock), kBlock, 0, stream, strided_kernel<Out, A, B, C, K>)(g, n, p, f);
    SELFSUP_LAUNCH_CHECK();
  }
}

}  // namespace selfsup::kernels::cuda
