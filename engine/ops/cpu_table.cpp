// Fills the CPU kernel table: each entry turns the DType argument into the kernel template's type.
// kernel_table() also fills the CUDA table (engine/ops/cuda_table.cpp) when the backend is compiled.
#include "engine/ops/dispatch.h"

namespace selfsup {

namespace kn = kernels;
using kn::StridedOperand;

namespace {

// Calls f(T{}) for float32/float64, throws for other dtypes naming the kernel.
template <typename F>
void on_float(DType t, const char* name, F&& f) {
  if (t == DType::f32) return f(float{});
  if (t == DType::f64) return f(double{});
  throw_error(str_cat("kernel '", name, "' supports float32 and float64, got ", dtype_name(t)));
}

// float, double and the integer types the comparison/arithmetic kernels are instantiated for.
template <typename F>
void on_numeric(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8:
    case DType::b8: return f(uint8_t{});
    default: throw_error(str_cat("kernel '", name, "' does not support ", dtype_name(t)));
  }
}

void fill_cpu_table(KernelTable& t) {
  t.unary = [](DType dt, kn::UnaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand i, double a,
               double b) { on_float(dt, "unary", [&](auto v) { kn::unary_cpu<decltype(v)>(op, nd, s, o, i, a, b); }); };
  t.unary_bwd = [](DType dt, kn::UnaryBwdOp op, int nd, const int64_t* s, StridedOperand dx, StridedOperand dy,
                   StridedOperand x, StridedOperand y, double a, double b) {
    on_float(dt, "unary_bwd", [&](auto v) { kn::unary_bwd_cpu<decltype(v)>(op, nd, s, dx, dy, x, y, a, b); });
  };
  t.binary = [](DType dt, kn::BinaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand a,
                StridedOperand b) { on_numeric(dt, "binary", [&](auto v) { kn::binary_cpu<decltype(v)>(op, nd, s, o, a, b); }); };
  t.compare = [](DType dt, kn::BinaryOp op, int nd, const int64_t* s, StridedOperand o, StridedOperand a,
                 StridedOperand b) { on_numeric(dt, "compare", [&](auto v) { kn::compare_cpu<decltype(v)>(op, nd, s, o, a, b); }); };
  t.where = [](DType dt, int nd, const int64_t* s, StridedOperand o, StridedOperand c, StridedOperand a,
               StridedOperand b) { on_numeric(dt, "where", [&](auto v) { kn::where_cpu<decltype(v)>(nd, s, o, c, a, b); }); };
  t.copy_cast = kn::copy_cast_cpu;
  t.reduce = [](DType dt, kn::ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const void* in, void* out,
                int64_t* idx) {
    on_float(dt, "reduce", [&](auto v) {
      using T = decltype(v);
      kn::reduce_cpu<T>(op, outer, dim, inner, static_cast<const T*>(in), static_cast<T*>(out), idx);
    });
  };
  t.index_select = kn::index_select_cpu;
  t.gather = kn::gather_cpu;
  t.scatter_add = [](DType dt, int64_t outer, int64_t self_dim, int64_t src_dim, int64_t inner, void* self,
                     const int64_t* index, const void* src) {
    on_float(dt, "scatter_add", [&](auto v) {
      using T = decltype(v);
      kn::scatter_add_cpu<T>(outer, self_dim, src_dim, inner, static_cast<T*>(self), index, static_cast<const T*>(src));
    });
  };
  t.fill_uniform = [](DType dt, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, void* out) {
    on_float(dt, "fill_uniform", [&](auto v) {
      using T = decltype(v);
      kn::fill_uniform_cpu<T>(n, seed, stream, offset, static_cast<T*>(out));
    });
  };
  t.fill_normal = [](DType dt, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, void* out) {
    on_float(dt, "fill_normal", [&](auto v) {
      using T = decltype(v);
      kn::fill_normal_cpu<T>(n, seed, stream, offset, static_cast<T*>(out));
    });
  };
  t.gemm_batched = [](DType dt, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, double alpha,
                      const void* A, int64_t lda, int64_t sa, const void* B, int64_t ldb, int64_t sb, double beta,
                      void* C, int64_t ldc, int64_t sc) {
    on_float(dt, "gemm_batched", [&](auto v) {
      using T = decltype(v);
      kn::gemm_batched_cpu<T>(ta, tb, batch, M, N, K, T(alpha), static_cast<const T*>(A), lda, sa,
                              static_cast<const T*>(B), ldb, sb, T(beta), static_cast<T*>(C), ldc, sc);
    });
  };
  t.conv2d_fwd = [](DType dt, const kn::Conv2dShape& s, const void* x, const void* w, const void* b, void* y) {
    on_float(dt, "conv2d_fwd", [&](auto v) {
      using T = decltype(v);
      kn::conv2d_fwd_cpu<T>(s, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                            static_cast<T*>(y));
    });
  };
  t.conv2d_bwd_data = [](DType dt, const kn::Conv2dShape& s, const void* dy, const void* w, void* dx) {
    on_float(dt, "conv2d_bwd_data", [&](auto v) {
      using T = decltype(v);
      kn::conv2d_bwd_data_cpu<T>(s, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx));
    });
  };
  t.conv2d_bwd_weight = [](DType dt, const kn::Conv2dShape& s, const void* x, const void* dy, void* dw, void* db) {
    on_float(dt, "conv2d_bwd_weight", [&](auto v) {
      using T = decltype(v);
      kn::conv2d_bwd_weight_cpu<T>(s, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                                   static_cast<T*>(db));
    });
  };
  t.max_pool2d_fwd = [](DType dt, const kn::Pool2dShape& s, const void* x, void* y, int64_t* arg) {
    on_float(dt, "max_pool2d_fwd", [&](auto v) {
      using T = decltype(v);
      kn::max_pool2d_fwd_cpu<T>(s, static_cast<const T*>(x), static_cast<T*>(y), arg);
    });
  };
  t.max_pool2d_bwd = [](DType dt, const kn::Pool2dShape& s, const void* dy, const int64_t* arg, void* dx) {
    on_float(dt, "max_pool2d_bwd", [&](auto v) {
      using T = decltype(v);
      kn::max_pool2d_bwd_cpu<T>(s, static_cast<const T*>(dy), arg, static_cast<T*>(dx));
    });
  };
  t.avg_pool2d_fwd = [](DType dt, const kn::Pool2dShape& s, const void* x, void* y) {
    on_float(dt, "avg_pool2d_fwd", [&](auto v) {
      using T = decltype(v);
      kn::avg_pool2d_fwd_cpu<T>(s, static_cast<const T*>(x), static_cast<T*>(y));
    });
  };
  t.avg_pool2d_bwd = [](DType dt, const kn::Pool2dShape& s, const void* dy, void* dx) {
    on_float(dt, "avg_pool2d_bwd", [&](auto v) {
      using T = decltype(v);
      kn::avg_pool2d_bwd_cpu<T>(s, static_cast<const T*>(dy), static_cast<T*>(dx));
    });
  };
  t.adaptive_avg_pool2d_fwd = [](DType dt, int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 const void* x, void* y) {
    on_float(dt, "adaptive_avg_pool2d_fwd", [&](auto v) {
      using T = decltype(v);
      kn::adaptive_avg_pool2d_fwd_cpu<T>(N, C, H, W, P, Q, static_cast<const T*>(x), static_cast<T*>(y));
    });
  };
  t.adaptive_avg_pool2d_bwd = [](DType dt, int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 const void* dy, void* dx) {
    on_float(dt, "adaptive_avg_pool2d_bwd", [&](auto v) {
      using T = decltype(v);
      kn::adaptive_avg_pool2d_bwd_cpu<T>(N, C, H, W, P, Q, static_cast<const T*>(dy), static_cast<T*>(dx));
    });
  };
  t.batch_norm_fwd_train = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* g, const void* b,
                              double eps, double momentum, void* y, void* mean, void* invstd, void* rm, void* rv) {
    on_float(dt, "batch_norm_fwd_train", [&](auto v) {
      using T = decltype(v);
      kn::batch_norm_fwd_train_cpu<T>(N, C, S, static_cast<const T*>(x), static_cast<const T*>(g),
                                      static_cast<const T*>(b), eps, momentum, static_cast<T*>(y),
                                      static_cast<T*>(mean), static_cast<T*>(invstd), static_cast<T*>(rm),
                                      static_cast<T*>(rv));
    });
  };
  t.batch_norm_fwd_eval = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* g, const void* b,
                             const void* rm, const void* rv, double eps, void* y) {
    on_float(dt, "batch_norm_fwd_eval", [&](auto v) {
      using T = decltype(v);
      kn::batch_norm_fwd_eval_cpu<T>(N, C, S, static_cast<const T*>(x), static_cast<const T*>(g),
                                     static_cast<const T*>(b), static_cast<const T*>(rm), static_cast<const T*>(rv),
                                     eps, static_cast<T*>(y));
    });
  };
  t.batch_norm_bwd = [](DType dt, int64_t N, int64_t C, int64_t S, const void* dy, const void* x, const void* g,
                        const void* mean, const void* invstd, void* dx, void* dg, void* db) {
    on_float(dt, "batch_norm_bwd", [&](auto v) {
      using T = decltype(v);
      kn::batch_norm_bwd_cpu<T>(N, C, S, static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(g),
                                static_cast<const T*>(mean), static_cast<const T*>(invstd), static_cast<T*>(dx),
                                static_cast<T*>(dg), static_cast<T*>(db));
    });
  };
  t.batch_norm_add_relu_fwd_train = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* r,
                                       const void* g, const void* b, double eps, double momentum, void* y,
                                       void* mean, void* invstd, void* rm, void* rv) {
    on_float(dt, "batch_norm_add_relu_fwd_train", [&](auto v) {
      using T = decltype(v);
      kn::batch_norm_add_relu_fwd_train_cpu<T>(N, C, S, static_cast<const T*>(x), static_cast<const T*>(r),
                                               static_cast<const T*>(g), static_cast<const T*>(b), eps, momentum,
                                               static_cast<T*>(y), static_cast<T*>(mean), static_cast<T*>(invstd),
                                               static_cast<T*>(rm), static_cast<T*>(rv));
    });
  };
  t.batch_norm_add_relu_bwd = [](DType dt, int64_t N, int64_t C, int64_t S, const void* dy, const void* y,
                                 const void* x, const void* g, const void* mean, const void* invstd, void* dx,
                                 void* dr, void* dg, void* db) {
    on_float(dt, "batch_norm_add_relu_bwd", [&](auto v) {
      using T = decltype(v);
      kn::batch_norm_add_relu_bwd_cpu<T>(N, C, S, static_cast<const T*>(dy), static_cast<const T*>(y),
                                         static_cast<const T*>(x), static_cast<const T*>(g),
                                         static_cast<const T*>(mean), static_cast<const T*>(invstd),
                                         static_cast<T*>(dx), static_cast<T*>(dr), static_cast<T*>(dg),
                                         static_cast<T*>(db));
    });
  };
  t.softmax_fwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* x, void* y, bool log) {
    on_float(dt, "softmax_fwd", [&](auto v) {
      using T = decltype(v);
      kn::softmax_fwd_cpu<T>(outer, n, inner, static_cast<const T*>(x), static_cast<T*>(y), log);
    });
  };
  t.softmax_bwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* y, const void* dy, void* dx,
                     bool log) {
    on_float(dt, "softmax_bwd", [&](auto v) {
      using T = decltype(v);
      kn::softmax_bwd_cpu<T>(outer, n, inner, static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx),
                             log);
    });
  };
  t.cross_entropy_fwd = [](DType dt, int64_t N, int64_t C, const void* logits, const int64_t* target, double ls,
                           void* loss, void* lse) {
    on_float(dt, "cross_entropy_fwd", [&](auto v) {
      using T = decltype(v);
      kn::cross_entropy_fwd_cpu<T>(N, C, static_cast<const T*>(logits), target, ls, static_cast<T*>(loss),
                                   static_cast<T*>(lse));
    });
  };
  t.cross_entropy_bwd = [](DType dt, int64_t N, int64_t C, const void* logits, const int64_t* target, double ls,
                           const void* lse, const void* dloss, void* dlogits) {
    on_float(dt, "cross_entropy_bwd", [&](auto v) {
      using T = decltype(v);
      kn::cross_entropy_bwd_cpu<T>(N, C, static_cast<const T*>(logits), target, ls, static_cast<const T*>(lse),
                                   static_cast<const T*>(dloss), static_cast<T*>(dlogits));
    });
  };
  t.l2_normalize_fwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* x, double eps, void* y,
                          void* norm) {
    on_float(dt, "l2_normalize_fwd", [&](auto v) {
      using T = decltype(v);
      kn::l2_normalize_fwd_cpu<T>(outer, n, inner, static_cast<const T*>(x), eps, static_cast<T*>(y),
                                  static_cast<T*>(norm));
    });
  };
  t.l2_normalize_bwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* y, const void* norm,
                          double eps, const void* dy, void* dx) {
    on_float(dt, "l2_normalize_bwd", [&](auto v) {
      using T = decltype(v);
      kn::l2_normalize_bwd_cpu<T>(outer, n, inner, static_cast<const T*>(y), static_cast<const T*>(norm), eps,
                                  static_cast<const T*>(dy), static_cast<T*>(dx));
    });
  };
  t.infonce_fwd = [](DType dt, int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, void* loss, void* lse,
                     uint8_t* correct) {
    on_float(dt, "infonce_fwd", [&](auto v) {
      using T = decltype(v);
      kn::infonce_fwd_cpu<T>(M, Ncol, D, static_cast<const T*>(q), static_cast<const T*>(k), pos, self_col, n_private,
                             inv_tau, static_cast<T*>(loss), static_cast<T*>(lse), correct);
    });
  };
  t.infonce_bwd = [](DType dt, int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, const void* lse, const void* dloss,
                     void* dq, void* dk) {
    on_float(dt, "infonce_bwd", [&](auto v) {
      using T = decltype(v);
      kn::infonce_bwd_cpu<T>(M, Ncol, D, static_cast<const T*>(q), static_cast<const T*>(k), pos, self_col, n_private,
                             inv_tau, static_cast<const T*>(lse), static_cast<const T*>(dloss), static_cast<T*>(dq),
                             static_cast<T*>(dk));
    });
  };
  t.ema_update = [](DType dt, int64_t n, void* const* target, const void* const* online, const int64_t* numel,
                    double m) {
    on_float(dt, "ema_update", [&](auto v) {
      using T = decltype(v);
      kn::ema_update_cpu<T>(n, reinterpret_cast<T* const*>(target), reinterpret_cast<const T* const*>(online), numel, m);
    });
  };
}

}  // namespace

#ifdef SELFSUP_HAVE_CUDA
void fill_cuda_table(KernelTable& t);  // engine/ops/cuda_table.cpp
#endif

KernelTable& kernel_table(DeviceType type) {
  static KernelTable tables[kNumDeviceTypes];
  static const bool filled = [] {
    fill_cpu_table(tables[static_cast<int>(DeviceType::cpu)]);
#ifdef SELFSUP_HAVE_CUDA
    fill_cuda_table(tables[static_cast<int>(DeviceType::cuda)]);
#endif
    return true;
  }();
  (void)filled;
  return tables[static_cast<int>(type)];
}

}  // namespace selfsup
