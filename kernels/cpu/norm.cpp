// CPU batch norm, x viewed as (N, C, S) with S = H*W (1 for BatchNorm1d), PyTorch's semantics: normalise
// with the biased batch variance, update running_var with the unbiased one.
//
// Each kernel is one reduction per channel (statistics, or the two gradient sums) followed by one streaming
// elementwise pass. Reductions accumulate in double and read memory once: the statistics use sums of
// x - shift and (x - shift)^2 with shift = a sample of the channel, so the one-pass variance formula does not
// cancel catastrophically (the shift puts the mean near 0). The reduction order depends only on the shapes,
// never on the thread count, so results are bit-identical for any OMP_NUM_THREADS.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

constexpr int64_t kParallelMinWork = 1 << 14;
// Rows of at least this many elements are long enough to stream per channel (parallel over C).
constexpr int64_t kLongRow = 16;
// Short-row path: per-channel partial sums are kept for blocks of about this many elements.
constexpr int64_t kBlockElems = 1 << 14;

// out (2, C) = per-channel sums over (N, S) of u = p - p_center[c] and of u (q - q_center[c]), p and q being
// (N, C, S). Statistics use p = q = x centred on a shift; the backward p = dy (centre 0), q = x (centre mean).
// kMask (the fused BN + ReLU backward): p is replaced by p [mask > 0], mask (N, C, S) being the ReLU's output,
// so the masked gradient is never written to memory.
template <bool kMask = false, typename T>
void channel_sums(int64_t N, int64_t C, int64_t S, const T* p, const double* p_center, const T* q,
                  const double* q_center, double* out, const T* mask = nullptr) {
  if (S >= kLongRow) {
    // Long rows: one thread owns a channel and reads its N rows, each a contiguous stream.
#pragma omp parallel for schedule(static) if (N * C * S > kParallelMinWork)
    for (int64_t c = 0; c < C; ++c) {
      // Each row is summed in T over kLanes interleaved partial sums (float lanes are twice as many as
      // double's and need no conversions: this loop was 11% of a SimCLR step when it converted every element
      // to double), the lanes and the rows' sums in double. The lanes are explicit, not left to the
      // vectoriser: the backward's sums cancel strongly (dy of a BN-fed conv is nearly orthogonal to 1 and x),
      // and one sequential float sum per row, what an unvectorised build (-O0, sanitizers) made of
      // `omp simd reduction`, moved ResNet-50's float32 gradients by 2%. Now every build sums in this order.
      constexpr int64_t kLanes = 16;
      const T pc = static_cast<T>(p_center[c]), qc = static_cast<T>(q_center[c]);
      double sa = 0, sb = 0;
      for (int64_t n = 0; n < N; ++n) {
        const T* pr = p + (n * C + c) * S;
        const T* qr = q + (n * C + c) * S;
        const T* mr = kMask ? mask + (n * C + c) * S : nullptr;
        T la[kLanes] = {}, lb[kLanes] = {};
        int64_t s = 0;
        for (; s + kLanes <= S; s += kLanes) {
#pragma omp simd
          for (int64_t l = 0; l < kLanes; ++l) {
            const T u = (kMask ? (mr[s + l] > T(0) ? pr[s + l] : T(0)) : pr[s + l]) - pc;
            la[l] += u;
            lb[l] += u * (qr[s + l] - qc);
          }
        }
        for (int64_t l = 0; s < S; ++s, ++l) {  // the tail, one element per lane
          const T u = (kMask ? (mr[s] > T(0) ? pr[s] : T(0)) : pr[s]) - pc;
          la[l] += u;
          lb[l] += u * (qr[s] - qc);
        }
        for (int64_t l = 0; l < kLanes; ++l) {
          sa += static_cast<double>(la[l]);
          sb += static_cast<double>(lb[l]);
        }
      }
      out[c] = sa;
      out[C + c] = sb;
    }
    return;
  }
  // Short rows (S = 1 is (N, C)): a channel is strided by C*S, so walk memory in order instead, a block of
  // whole samples per task, each block keeping its own (2, C) partial sums; blocks are then summed in order.
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockElems / (C * S));
  const int64_t blocks = (N + rows_per_block - 1) / rows_per_block;
  std::vector<double> partial(static_cast<size_t>(blocks * 2 * C), 0.0);  // (blocks, 2, C)
  std::vector<T> pc(static_cast<size_t>(C)), qc(static_cast<size_t>(C));  // the centres in T, for S = 1
  for (int64_t c = 0; c < C; ++c) pc[c] = static_cast<T>(p_center[c]), qc[c] = static_cast<T>(q_center[c]);
#pragma omp parallel for schedule(static) if (N * C * S > kParallelMinWork)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    double* pa = partial.data() + blk * 2 * C;
    double* pb = pa + C;
    const int64_t n_end = std::min(N, (blk + 1) * rows_per_block);
    if (S == 1) {
      // (N, C) rows (BatchNorm1d, and channels-last activations as (N*H*W, C)): vectorised along C, summed in
      // T over runs of kRun rows and each run's sums added in double, as the long-row path sums kLanes-wide
      // lanes: the same precision, without a conversion per element (the double loop was 11% of a width-16
      // channels-last training step).
      constexpr int64_t kRun = 16;
      std::vector<T> fa(static_cast<size_t>(C)), fb(static_cast<size_t>(C));
      for (int64_t n0 = blk * rows_per_block; n0 < n_end; n0 += kRun) {
        std::fill(fa.begin(), fa.end(), T(0));
        std::fill(fb.begin(), fb.end(), T(0));
        for (int64_t n = n0; n < std::min(n_end, n0 + kRun); ++n) {
          const T* pr = p + n * C;
          const T* qr = q + n * C;
          const T* mr = kMask ? mask + n * C : nullptr;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const T u = (kMask ? (mr[c] > T(0) ? pr[c] : T(0)) : pr[c]) - pc[c];
            fa[c] += u;
            fb[c] += u * (qr[c] - qc[c]);
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          pa[c] += static_cast<double>(fa[c]);
          pb[c] += static_cast<double>(fb[c]);
        }
      }
      continue;
    }
    for (int64_t n = blk * rows_per_block; n < n_end; ++n) {
      const T* pr = p + n * C * S;  // (C, S)
      const T* qr = q + n * C * S;
      const T* mr = kMask ? mask + n * C * S : nullptr;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t s = 0; s < S; ++s) {
          const T pv = kMask ? (mr[c * S + s] > T(0) ? pr[c * S + s] : T(0)) : pr[c * S + s];
          const double u = static_cast<double>(pv) - p_center[c];
          pa[c] += u;
          pb[c] += u * (static_cast<double>(qr[c * S + s]) - q_center[c]);
        }
    }
  }
  for (int64_t i = 0; i < 2 * C; ++i) out[i] = 0;
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t i = 0; i < 2 * C; ++i) out[i] += partial[blk * 2 * C + i];
}

// y = (x - center[c]) * scale[c] + shift[c] over (N, C, S); center is subtracted first so that large means
// do not cost float precision. kRelu (the fused BN + ReLU forward): y = max(0, that + residual), residual
// (N, C, S) or null, in the same pass.
template <bool kRelu = false, typename T>
void center_scale_shift(int64_t N, int64_t C, int64_t S, const T* x, const T* center, const T* scale,
                        const T* shift, T* y, const T* residual = nullptr) {
  auto out = [](T v, const T* r, int64_t i) {
    if constexpr (kRelu) {
      if (r) v += r[i];
      return v > T(0) ? v : T(0);
    } else {
      return v;
    }
  };
  if (S == 1) {  // (N, C): vectorise along C
#pragma omp parallel for schedule(static) if (N * C > kParallelMinWork)
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * C;
      const T* rr = residual ? residual + n * C : nullptr;
      T* yr = y + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yr[c] = out((xr[c] - center[c]) * scale[c] + shift[c], rr, c);
    }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const T* xr = x + (n * C + c) * S;
      const T* rr = residual ? residual + (n * C + c) * S : nullptr;
      T* yr = y + (n * C + c) * S;
      const T m = center[c], a = scale[c], b = shift[c];
      if (rr) {  // the residual's branch hoisted out of the inner loop
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) yr[s] = out((xr[s] - m) * a + b, rr, s);
      } else {
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) yr[s] = out((xr[s] - m) * a + b, nullptr, s);
      }
    }
  }
}

// The training forward: statistics (one read of x), then one elementwise pass writing y; with kRelu the
// pass also adds the residual and applies the ReLU.
template <bool kRelu, typename T>
void bn_fwd_train(int64_t N, int64_t C, int64_t S, const T* x, const T* residual, const T* gamma, const T* beta,
                  double eps, double momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                  T* running_var) {
  const int64_t count = N * S;
  // The unbiased variance needs two values; PyTorch refuses this case the same way.
  if (count < 2) throw std::runtime_error("batch_norm: expected more than 1 value per channel when training");
  std::vector<double> shift(static_cast<size_t>(C));  // (C) a sample of each channel: x[0, c, 0]
  for (int64_t c = 0; c < C; ++c) shift[c] = static_cast<double>(x[c * S]);
  std::vector<double> sums(static_cast<size_t>(2 * C));  // (2, C): sum(x - shift), sum((x - shift)^2)
  channel_sums(N, C, S, x, shift.data(), x, shift.data(), sums.data());

  std::vector<T> mean_t(static_cast<size_t>(C)), scale(static_cast<size_t>(C)), offset(static_cast<size_t>(C));
  const double inv_count = 1.0 / static_cast<double>(count);
  for (int64_t c = 0; c < C; ++c) {
    const double d_mean = sums[c] * inv_count;  // mean - shift
    const double var = std::max(0.0, sums[C + c] * inv_count - d_mean * d_mean);  // biased
    const double mean = shift[c] + d_mean;
    const double invstd = 1.0 / std::sqrt(var + eps);
    save_mean[c] = static_cast<T>(mean);
    save_invstd[c] = static_cast<T>(invstd);
    if (running_mean) running_mean[c] = static_cast<T>((1 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) {
      const double unbiased = var * static_cast<double>(count) / static_cast<double>(count - 1);
      running_var[c] = static_cast<T>((1 - momentum) * running_var[c] + momentum * unbiased);
    }
    mean_t[c] = static_cast<T>(mean);
    scale[c] = static_cast<T>(invstd * (gamma ? static_cast<double>(gamma[c]) : 1.0));
    offset[c] = beta ? beta[c] : T(0);
  }
  center_scale_shift<kRelu>(N, C, S, x, mean_t.data(), scale.data(), offset.data(), y, residual);
}

// With xhat = (x - mean) invstd, g = gamma invstd and n = N*S:
//   dbeta = sum(dy), dgamma = sum(dy xhat),
//   dx = g (dy - mean(dy) - xhat mean(dy xhat)) = (dy - mean(dy)) g - (x - mean) k,
//   k = g invstd^2 sum(dy (x - mean)) / n.
// kRelu: dy is first replaced by dz = dy [y > 0] (y the fused forward's output) in both passes, and
// dresidual = dz when asked for (non-null).
template <bool kRelu, typename T>
void bn_bwd(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x, const T* gamma,
            const T* save_mean, const T* save_invstd, T* dx, T* dresidual, T* dgamma, T* dbeta) {
  if (N * S == 0) {  // no samples: zero gradients for the (C) parameters, nothing to write in dx
    for (int64_t c = 0; c < C; ++c) {
      if (dgamma) dgamma[c] = T(0);
      if (dbeta) dbeta[c] = T(0);
    }
    return;
  }
  std::vector<double> sums(static_cast<size_t>(2 * C));  // (2, C): sum(dy), sum(dy (x - mean))
  const std::vector<double> zeros(static_cast<size_t>(C), 0.0);
  std::vector<double> mean(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<double>(save_mean[c]);
  channel_sums<kRelu>(N, C, S, dy, zeros.data(), x, mean.data(), sums.data(), y);

  // Per channel: dx = (dy - mean_dy) g - (x - mean) k, computed as one pass over (N, C, S).
  std::vector<T> mean_dy(static_cast<size_t>(C)), g(static_cast<size_t>(C)), k(static_cast<size_t>(C));
  const double inv_count = 1.0 / static_cast<double>(N * S);
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = static_cast<double>(save_invstd[c]);
    const double gc = invstd * (gamma ? static_cast<double>(gamma[c]) : 1.0);
    if (dbeta) dbeta[c] = static_cast<T>(sums[c]);
    if (dgamma) dgamma[c] = static_cast<T>(sums[C + c] * invstd);
    mean_dy[c] = static_cast<T>(sums[c] * inv_count);
    g[c] = static_cast<T>(gc);
    k[c] = static_cast<T>(gc * invstd * invstd * sums[C + c] * inv_count);
  }
  // The gradient reaching the BN: dy itself, or dy masked by the ReLU's output.
  auto grad = [](const T* d, const T* yy, int64_t i) {
    if constexpr (kRelu) {
      return yy[i] > T(0) ? d[i] : T(0);
    } else {
      return d[i];
    }
  };
  if (S == 1) {  // (N, C): vectorise along C
#pragma omp parallel for schedule(static) if (N * C > kParallelMinWork)
    for (int64_t n = 0; n < N; ++n) {
      const T* xr = x + n * C;
      const T* dyr = dy + n * C;
      const T* yr = kRelu ? y + n * C : nullptr;
      T* dxr = dx + n * C;
      T* drr = dresidual ? dresidual + n * C : nullptr;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const T dz = grad(dyr, yr, c);
        dxr[c] = (dz - mean_dy[c]) * g[c] - (xr[c] - save_mean[c]) * k[c];
        if (kRelu && drr) drr[c] = dz;
      }
    }
    return;
  }
#pragma omp parallel for collapse(2) schedule(static) if (N * C * S > kParallelMinWork)
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (n * C + c) * S;
      const T* xr = x + off;
      const T* dyr = dy + off;
      const T* yr = kRelu ? y + off : nullptr;
      T* dxr = dx + off;
      T* drr = dresidual ? dresidual + off : nullptr;
      const T mdy = mean_dy[c], gc = g[c], kc = k[c], m = save_mean[c];
      if (kRelu && drr) {
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) {
          const T dz = grad(dyr, yr, s);
          dxr[s] = (dz - mdy) * gc - (xr[s] - m) * kc;
          drr[s] = dz;
        }
      } else {
#pragma omp simd
        for (int64_t s = 0; s < S; ++s) dxr[s] = (grad(dyr, yr, s) - mdy) * gc - (xr[s] - m) * kc;
      }
    }
  }
}

}  // namespace

template <typename T>
void batch_norm_fwd_train_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* gamma, const T* beta,
                              double eps, double momentum, T* y, T* save_mean, T* save_invstd, T* running_mean,
                              T* running_var) {
  bn_fwd_train<false>(N, C, S, x, static_cast<const T*>(nullptr), gamma, beta, eps, momentum, y, save_mean,
                      save_invstd, running_mean, running_var);
}

template <typename T>
void batch_norm_add_relu_fwd_train_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* residual,
                                       const T* gamma, const T* beta, double eps, double momentum, T* y,
                                       T* save_mean, T* save_invstd, T* running_mean, T* running_var) {
  bn_fwd_train<true>(N, C, S, x, residual, gamma, beta, eps, momentum, y, save_mean, save_invstd, running_mean,
                     running_var);
}

template <typename T>
void batch_norm_fwd_eval_cpu(int64_t N, int64_t C, int64_t S, const T* x, const T* gamma, const T* beta,
                             const T* running_mean, const T* running_var, double eps, T* y) {
  std::vector<T> scale(static_cast<size_t>(C)), offset(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    scale[c] = static_cast<T>(invstd * (gamma ? static_cast<double>(gamma[c]) : 1.0));
    offset[c] = beta ? beta[c] : T(0);
  }
  center_scale_shift(N, C, S, x, running_mean, scale.data(), offset.data(), y);
}

template <typename T>
void batch_norm_bwd_cpu(int64_t N, int64_t C, int64_t S, const T* dy, const T* x, const T* gamma,
                        const T* save_mean, const T* save_invstd, T* dx, T* dgamma, T* dbeta) {
  bn_bwd<false>(N, C, S, dy, static_cast<const T*>(nullptr), x, gamma, save_mean, save_invstd, dx,
                static_cast<T*>(nullptr), dgamma, dbeta);
}

template <typename T>
void batch_norm_add_relu_bwd_cpu(int64_t N, int64_t C, int64_t S, const T* dy, const T* y, const T* x,
                                 const T* gamma, const T* save_mean, const T* save_invstd, T* dx, T* dresidual,
                                 T* dgamma, T* dbeta) {
  bn_bwd<true>(N, C, S, dy, y, x, gamma, save_mean, save_invstd, dx, dresidual, dgamma, dbeta);
}

#define SELFSUP_INSTANTIATE_BN(T)                                                                             \
  template void batch_norm_fwd_train_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, double,  \
                                            double, T*, T*, T*, T*, T*);                                      \
  template void batch_norm_fwd_eval_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*, \
                                           const T*, double, T*);                                             \
  template void batch_norm_bwd_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*,      \
                                      const T*, T*, T*, T*);                                                  \
  template void batch_norm_add_relu_fwd_train_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, \
                                                     const T*, double, double, T*, T*, T*, T*, T*);           \
  template void batch_norm_add_relu_bwd_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*,       \
                                               const T*, const T*, const T*, T*, T*, T*, T*);
SELFSUP_INSTANTIATE_BN(float)
SELFSUP_INSTANTIATE_BN(double)
#undef SELFSUP_INSTANTIATE_BN

}  // namespace selfsup::kernels
