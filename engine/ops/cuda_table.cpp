// Fills the CUDA kernel table (compiled only with the CUDA backend): each entry turns the DType argument
// into the launcher template's type, as cpu_table.cpp does, and passes the current stream of the current
// device. The engine runs one process per GPU (ARCHITECTURE.md, Distributed) and selects its device once
// at startup, so "the current device" is the tensor's device.
#ifdef SELFSUP_HAVE_CUDA
#include <type_traits>

#include "engine/ops/dispatch.h"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/device.h"

namespace selfsup {

namespace kn = kernels;
using kn::StridedOperand;

namespace {

cudaStream_t stream() { return kn::cuda::current_stream(kn::cuda::current_device()); }

// InfoNCE and the EMA update on CUDA: float32 (InfoNCE's bf16 kernels are not wired: the engine keeps the
// contrastive losses' statistics in the data's dtype).
void on_f32(DType t, const char* name) {
  SELFSUP_CHECK(t == DType::f32, "kernel '", name, "' on CUDA supports float32, got ", dtype_name(t));
}

// The other nn-level kernels: float32 and bfloat16 (cuda_nn_api.h's __nv_bfloat16, the same bits as the
// engine's bf16), computed in float. Their statistics arguments (batch norm's parameters and saved/running
// statistics, cross-entropy's loss/lse/dloss, the L2 norm) are float32 for both: the engine allocates them
// so (batch_norm_param_dtype, stat_dtype in loss_ops.cpp).
template <typename F>
void on_f32_bf16(DType t, const char* name, F&& f) {
  if (t == DType::f32) return f(std::type_identity<float>{});
  if (t == DType::bf16) return f(std::type_identity<__nv_bfloat16>{});
  throw_error(str_cat("kernel '", name, "' on CUDA supports float32 and bfloat16, got ", dtype_name(t)));
}

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

  // ---- nn-level kernels (kernels/cuda/cuda_nn_api.h): float32 and bfloat16 data, float statistics.
  using F = float;
  using BF = __nv_bfloat16;  // the bf16 variants of the l2-normalize and InfoNCE kernels
  t.conv2d_fwd = [](DType dt, const kn::Conv2dShape& s, const void* x, const void* w, const void* b, void* y) {
    on_f32_bf16(dt, "conv2d_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::conv2d_fwd_cuda<T>(s, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                             static_cast<T*>(y), stream());
    });
  };
  t.conv2d_bwd_data = [](DType dt, const kn::Conv2dShape& s, const void* dy, const void* w, void* dx) {
    on_f32_bf16(dt, "conv2d_bwd_data", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::conv2d_bwd_data_cuda<T>(s, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx),
                                  stream());
    });
  };
  t.conv2d_bwd_weight = [](DType dt, const kn::Conv2dShape& s, const void* x, const void* dy, void* dw, void* db) {
    on_f32_bf16(dt, "conv2d_bwd_weight", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::conv2d_bwd_weight_cuda<T>(s, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                                    static_cast<T*>(db), stream());
    });
  };
  t.max_pool2d_fwd = [](DType dt, const kn::Pool2dShape& s, const void* x, void* y, int64_t* arg) {
    on_f32_bf16(dt, "max_pool2d_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::max_pool2d_fwd_cuda<T>(s, static_cast<const T*>(x), static_cast<T*>(y), arg, stream());
    });
  };
  t.max_pool2d_bwd = [](DType dt, const kn::Pool2dShape& s, const void* dy, const int64_t* arg, void* dx) {
    on_f32_bf16(dt, "max_pool2d_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::max_pool2d_bwd_cuda<T>(s, static_cast<const T*>(dy), arg, static_cast<T*>(dx), stream());
    });
  };
  t.avg_pool2d_fwd = [](DType dt, const kn::Pool2dShape& s, const void* x, void* y) {
    on_f32_bf16(dt, "avg_pool2d_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::avg_pool2d_fwd_cuda<T>(s, static_cast<const T*>(x), static_cast<T*>(y), stream());
    });
  };
  t.avg_pool2d_bwd = [](DType dt, const kn::Pool2dShape& s, const void* dy, void* dx) {
    on_f32_bf16(dt, "avg_pool2d_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::avg_pool2d_bwd_cuda<T>(s, static_cast<const T*>(dy), static_cast<T*>(dx), stream());
    });
  };
  t.adaptive_avg_pool2d_fwd = [](DType dt, int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 const void* x, void* y) {
    on_f32_bf16(dt, "adaptive_avg_pool2d_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::adaptive_avg_pool2d_fwd_cuda<T>(N, C, H, W, P, Q, static_cast<const T*>(x), static_cast<T*>(y), stream());
    });
  };
  t.adaptive_avg_pool2d_bwd = [](DType dt, int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q,
                                 const void* dy, void* dx) {
    on_f32_bf16(dt, "adaptive_avg_pool2d_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::adaptive_avg_pool2d_bwd_cuda<T>(N, C, H, W, P, Q, static_cast<const T*>(dy), static_cast<T*>(dx), stream());
    });
  };
  t.batch_norm_fwd_train = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* g, const void* b,
                              double eps, double momentum, void* y, void* mean, void* invstd, void* rm, void* rv) {
    on_f32_bf16(dt, "batch_norm_fwd_train", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::batch_norm_fwd_train_cuda<T>(N, C, S, static_cast<const T*>(x), static_cast<const F*>(g),
                                       static_cast<const F*>(b), eps, momentum, static_cast<T*>(y),
                                       static_cast<F*>(mean), static_cast<F*>(invstd), static_cast<F*>(rm),
                                       static_cast<F*>(rv), stream());
    });
  };
  t.batch_norm_fwd_eval = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* g, const void* b,
                             const void* rm, const void* rv, double eps, void* y) {
    on_f32_bf16(dt, "batch_norm_fwd_eval", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::batch_norm_fwd_eval_cuda<T>(N, C, S, static_cast<const T*>(x), static_cast<const F*>(g),
                                      static_cast<const F*>(b), static_cast<const F*>(rm), static_cast<const F*>(rv),
                                      eps, static_cast<T*>(y), stream());
    });
  };
  t.batch_norm_bwd = [](DType dt, int64_t N, int64_t C, int64_t S, const void* dy, const void* x, const void* g,
                        const void* mean, const void* invstd, void* dx, void* dg, void* db) {
    on_f32_bf16(dt, "batch_norm_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::batch_norm_bwd_cuda<T>(N, C, S, static_cast<const T*>(dy), static_cast<const T*>(x),
                                 static_cast<const F*>(g), static_cast<const F*>(mean), static_cast<const F*>(invstd),
                                 static_cast<T*>(dx), static_cast<F*>(dg), static_cast<F*>(db), stream());
    });
  };
  t.batch_norm_add_relu_fwd_train = [](DType dt, int64_t N, int64_t C, int64_t S, const void* x, const void* r,
                                       const void* g, const void* b, double eps, double momentum, void* y,
                                       void* mean, void* invstd, void* rm, void* rv) {
    on_f32_bf16(dt, "batch_norm_add_relu_fwd_train", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::batch_norm_add_relu_fwd_train_cuda<T>(N, C, S, static_cast<const T*>(x), static_cast<const T*>(r),
                                                static_cast<const F*>(g), static_cast<const F*>(b), eps, momentum,
                                                static_cast<T*>(y), static_cast<F*>(mean), static_cast<F*>(invstd),
                                                static_cast<F*>(rm), static_cast<F*>(rv), stream());
    });
  };
  t.batch_norm_add_relu_bwd = [](DType dt, int64_t N, int64_t C, int64_t S, const void* dy, const void* y,
                                 const void* x, const void* g, const void* mean, const void* invstd, void* dx,
                                 void* dr, void* dg, void* db) {
    on_f32_bf16(dt, "batch_norm_add_relu_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::batch_norm_add_relu_bwd_cuda<T>(N, C, S, static_cast<const T*>(dy), static_cast<const T*>(y),
                                          static_cast<const T*>(x), static_cast<const F*>(g),
                                          static_cast<const F*>(mean), static_cast<const F*>(invstd),
                                          static_cast<T*>(dx), static_cast<T*>(dr), static_cast<F*>(dg),
                                          static_cast<F*>(db), stream());
    });
  };
  t.softmax_fwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* x, void* y, bool log) {
    on_f32_bf16(dt, "softmax_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::softmax_fwd_cuda<T>(outer, n, inner, static_cast<const T*>(x), static_cast<T*>(y), log, stream());
    });
  };
  t.softmax_bwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* y, const void* dy, void* dx,
                     bool log) {
    on_f32_bf16(dt, "softmax_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::softmax_bwd_cuda<T>(outer, n, inner, static_cast<const T*>(y), static_cast<const T*>(dy),
                              static_cast<T*>(dx), log, stream());
    });
  };
  t.cross_entropy_fwd = [](DType dt, int64_t N, int64_t C, const void* logits, const int64_t* target, double ls,
                           void* loss, void* lse) {
    on_f32_bf16(dt, "cross_entropy_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::cross_entropy_fwd_cuda<T>(N, C, static_cast<const T*>(logits), target, ls, static_cast<F*>(loss),
                                    static_cast<F*>(lse), stream());
    });
  };
  t.cross_entropy_bwd = [](DType dt, int64_t N, int64_t C, const void* logits, const int64_t* target, double ls,
                           const void* lse, const void* dloss, void* dlogits) {
    on_f32_bf16(dt, "cross_entropy_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::cross_entropy_bwd_cuda<T>(N, C, static_cast<const T*>(logits), target, ls, static_cast<const F*>(lse),
                                    static_cast<const F*>(dloss), static_cast<T*>(dlogits), stream());
    });
  };
  // bf16: y and dx in bf16, the norm in float (cuda_nn_api.h).
  t.l2_normalize_fwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* x, double eps, void* y,
                          void* norm) {
    on_f32_bf16(dt, "l2_normalize_fwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::l2_normalize_fwd_cuda<T>(outer, n, inner, static_cast<const T*>(x), eps, static_cast<T*>(y),
                                   static_cast<F*>(norm), stream());
    });
  };
  t.l2_normalize_bwd = [](DType dt, int64_t outer, int64_t n, int64_t inner, const void* y, const void* norm,
                          double eps, const void* dy, void* dx) {
    on_f32_bf16(dt, "l2_normalize_bwd", [&](auto v) {
      using T = typename decltype(v)::type;
      kn::l2_normalize_bwd_cuda<T>(outer, n, inner, static_cast<const T*>(y), static_cast<const F*>(norm), eps,
                                   static_cast<const T*>(dy), static_cast<T*>(dx), stream());
    });
  };
  // InfoNCE. bf16: loss, lse and dloss are float; the tensor-core kernels (kernels/cuda/infonce_bf16.cu) when
  // infonce_tc_supported (D % 8 == 0, D <= 128, aligned rows), else the CUDA-core kernels (bf16 loads, fp32 FMA).
  t.infonce_fwd = [](DType dt, int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, void* loss, void* lse,
                     uint8_t* correct) {
    if (dt == DType::bf16) {
      const BF *qb = static_cast<const BF*>(q), *kb = static_cast<const BF*>(k);
      float *lo = static_cast<float*>(loss), *ls = static_cast<float*>(lse);
      if (kn::infonce_tc_supported(M, Ncol, D, q, k))
        return kn::infonce_tc_fwd_cuda(M, Ncol, D, qb, kb, pos, self_col, n_private, inv_tau, lo, ls, correct, stream());
      return kn::infonce_fwd_cuda<BF>(M, Ncol, D, qb, kb, pos, self_col, n_private, inv_tau, lo, ls, correct, stream());
    }
    on_f32(dt, "infonce_fwd");
    kn::infonce_fwd_cuda<F>(M, Ncol, D, static_cast<const F*>(q), static_cast<const F*>(k), pos, self_col, n_private,
                            inv_tau, static_cast<F*>(loss), static_cast<F*>(lse), correct, stream());
  };
  t.infonce_bwd = [](DType dt, int64_t M, int64_t Ncol, int64_t D, const void* q, const void* k, const int64_t* pos,
                     const int64_t* self_col, int64_t n_private, double inv_tau, const void* lse, const void* dloss,
                     void* dq, void* dk) {
    if (dt == DType::bf16) {
      const BF *qb = static_cast<const BF*>(q), *kb = static_cast<const BF*>(k);
      const float *ls = static_cast<const float*>(lse), *dl = static_cast<const float*>(dloss);
      BF *dqb = static_cast<BF*>(dq), *dkb = static_cast<BF*>(dk);
      if (kn::infonce_tc_supported(M, Ncol, D, q, k))
        return kn::infonce_tc_bwd_cuda(M, Ncol, D, qb, kb, pos, self_col, n_private, inv_tau, ls, dl, dqb, dkb,
                                       stream());
      return kn::infonce_bwd_cuda<BF>(M, Ncol, D, qb, kb, pos, self_col, n_private, inv_tau, ls, dl, dqb, dkb,
                                     stream());
    }
    on_f32(dt, "infonce_bwd");
    kn::infonce_bwd_cuda<F>(M, Ncol, D, static_cast<const F*>(q), static_cast<const F*>(k), pos, self_col, n_private,
                            inv_tau, static_cast<const F*>(lse), static_cast<const F*>(dloss), static_cast<F*>(dq),
                            static_cast<F*>(dk), stream());
  };
  t.infonce_bwd_sym = [](DType dt, int64_t M, int64_t D, const void* z, const int64_t* pos, const int64_t* self_col,
                         int64_t n_private, double inv_tau, const void* lse, const void* dloss, void* dz) {
    if (dt != DType::bf16 || !kn::infonce_tc_supported(M, M, D, z, z)) return false;
    kn::infonce_tc_bwd_sym_cuda(M, D, static_cast<const BF*>(z), pos, self_col, n_private, inv_tau,
                                static_cast<const float*>(lse), static_cast<const float*>(dloss), static_cast<BF*>(dz),
                                stream());
    return true;
  };
  t.ema_update = [](DType dt, int64_t n, void* const* target, const void* const* online, const int64_t* numel,
                    double mom) {
    on_f32(dt, "ema_update");
    kn::ema_update_cuda<F>(n, reinterpret_cast<F* const*>(target), reinterpret_cast<const F* const*>(online), numel,
                           mom, stream());
  };
}

}  // namespace selfsup
#endif  // SELFSUP_HAVE_CUDA
