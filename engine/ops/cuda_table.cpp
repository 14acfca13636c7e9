// Fills the CUDA kernel table (compiled only with the CUDA backend): each entry turns the DType argument
// into the launcher template's type, as cpu_table.cpp does, and passes the current stream of the current
// device. The engine runs one process per GPU (ARCHITECTURE.md, Distributed) and selects its device once
// at startup, so "the current device" is the tensor's device.
#ifdef SELFSUP_HAVE_CUDA
#include "engine/ops/dispatch.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/device.h"

namespace selfsup {

namespace kn = kernels;
using kn::StridedOperand;

namespace {

cudaStream_t stream() { return kn::cuda::current_stream(kn::cuda::current_device()); }

template <typename F>
void on_float(DType t, const char* name, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw_error(str_cat("kernel '", name, "' on CUDA supports float32 and float64, got ", dtype_name(t)));
}

// float32, float64 and bfloat16: the training hot paths (elementwise, GEMM).
template <typename F>
void on_float_bf16(DType t, const char* name, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  if (t == DType::bf16) return f(bf16{});
  throw_error(str_cat("kernel '", name, "' on CUDA supports float32, float64 and bfloat16, got ", dtype_name(t)));
}

template <typename F>
void on_numeric(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8:
    case DType::b8: return f(uint8_t{});
    default: throw_error(str_cat("kernel '", name, "' on CUDA does not support ", dtype_name(t)));
  }
}

}  // namespace

void fill_cuda_table(KernelTable& t) {
  t.unary = [](DType dt, kn::UnaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand i, double a,
               double b) {
    on_float_bf16(dt, "unary", [&](auto v) { kn::unary_cuda<decltype(v)>(op, nd, s, o, i, a, b, stream()); });
  };
  t.unary_bwd = [](DType dt, kn::UnaryBwdOp op, int nd, const int64_t* s, StridedOperand dx, StridedOperand dy,
                   StridedOperand x, StridedOperand y, double a, double b) {
    on_float_bf16(dt, "unary_bwd",
                  [&](auto v) { kn::unary_bwd_cuda<decltype(v)>(op, nd, s, dx, dy, x, y, a, b, stream()); });
  };
  t.binary = [](DType dt, kn::BinaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand a,
                StridedOperand b) {
    on_numeric(dt, "binary", [&](auto v) { kn::binary_cuda<decltype(v)>(op, nd, s, o, a, b, stream()); });
  };
  t.compare = [](DType dt, kn::BinaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand a,
                 StridedOperand b) {
    on_numeric(dt, "compare", [&](auto v) { kn::compare_cuda<decltype(v)>(op, nd, s, o, a, b, stream()); });
  };
  t.where = [](DType dt, int nd, const int64_t* s, StridedOperand o, StridedOperand c, StridedOperand a,
               StridedOperand b) {
    on_numeric(dt, "where", [&](auto v) { kn::where_cuda<decltype(v)>(nd, s, o, c, a, b, stream()); });
  };
  t.copy_cast = [](int nd, const int64_t* s, DType odt, StridedOperand o, DType idt, StridedOperand i) {
    kn::copy_cast_cuda(nd, s, odt, o, idt, i, stream());
  };
  t.reduce = [](DType dt, kn::ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const void* in, void* out,
                int64_t* idx) {
    on_float(dt, "reduce", [&](auto v) {
      using T = decltype(v);
      kn::reduce_cuda<T>(op, outer, dim, inner, static_cast<const T*>(in), static_cast<T*>(out), idx, stream());
    });
  };
  t.index_select = [](int64_t outer, int64_t in_dim, int64_t inner, int64_t es, const void* in, int64_t n_index,
                      const int64_t* index, void* out) {
    kn::index_select_cuda(outer, in_dim, inner, es, in, n_index, index, out, stream());
  };
  t.gather = [](int64_t outer, int64_t in_dim, int64_t out_dim, int64_t inner, int64_t es, const void* in,
                const int64_t* index, void* out) {
    kn::gather_cuda(outer, in_dim, out_dim, inner, es, in, index, out, stream());
  };
  t.scatter_add = [](DType dt, int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, void* self,
                     const int64_t* index, const void* src) {
    on_float(dt, "scatter_add", [&](auto v) {
      using T = decltype(v);
      kn::scatter_add_cuda<T>(outer, self_dim, src_dim, inner, static_cast<T*>(self), index,
                              static_cast<const T*>(src), stream());
    });
  };
  t.fill_uniform = [](DType dt, int64_t n, uint64_t seed, uint64_t sid, uint64_t offset, void* out) {
    on_float(dt, "fill_uniform", [&](auto v) {
      using T = decltype(v);
      kn::fill_uniform_cuda<T>(n, seed, sid, offset, static_cast<T*>(out), stream());
    });
  };
  t.fill_normal = [](DType dt, int64_t n, uint64_t seed, uint64_t sid, uint64_t offset, void* out) {
    on_float(dt, "fill_normal", [&](auto v) {
      using T = decltype(v);
      kn::fill_normal_cuda<T>(n, seed, sid, offset, static_cast<T*>(out), stream());
    });
  };
  t.gemm_batched = [](DType dt, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, double alpha,
                      const void* A, int64_t lda, int64_t sa, const void* B, int64_t ldb, int64_t sb, double beta,
                      void* C, int64_t ldc, int64_t sc) {
    on_float_bf16(dt, "gemm_batched", [&](auto v) {
      using T = decltype(v);
      kn::gemm_batched_cuda<T>(ta, tb, batch, M, N, K, alpha, static_cast<const T*>(A), lda, sa,
                               static_cast<const T*>(B), ldb, sb, beta, static_cast<T*>(C), ldc, sc, stream());
    });
  };

  // ---- nn-level kernels: assigned at merge from kernels/cuda/cuda_nn_api.h (the nn helper's launchers).
  // Until then these stay null, and an op reaching one reports
  // "kernel 'conv2d_fwd' is not implemented for device cuda:0".
  //   t.conv2d_fwd, t.conv2d_bwd_data, t.conv2d_bwd_weight              (conv_cudnn.cpp)
  //   t.max_pool2d_fwd, t.max_pool2d_bwd, t.avg_pool2d_fwd, t.avg_pool2d_bwd,
  //   t.adaptive_avg_pool2d_fwd, t.adaptive_avg_pool2d_bwd                (pool.cu)
  //   t.batch_norm_fwd_train, t.batch_norm_fwd_eval, t.batch_norm_bwd    (norm.cu)
  //   t.softmax_fwd, t.softmax_bwd, t.cross_entropy_fwd, t.cross_entropy_bwd  (softmax_xent.cu)
  //   t.l2_normalize_fwd, t.l2_normalize_bwd                             (normalize.cu)
  //   t.infonce_fwd, t.infonce_bwd                                       (infonce.cu)
  //   t.ema_update                                                       (momentum.cu; its pointer and numel
  //                                                                        arrays arrive in host memory)
}

}  // namespace selfsup
#endif  // SELFSUP_HAVE_CUDA
