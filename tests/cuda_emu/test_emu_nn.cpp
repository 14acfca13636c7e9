// The nn kernels of kernels/cuda (softmax_xent.cu, norm.cu, normalize.cu, pool.cu) on the CPU emulator
// against their CPU kernels run in double on the same (T-rounded) inputs. Shapes pick every launch mode:
// a warp per row (dim <= 1024, a ragged last block of rows) and a block per row (dim > 1024), the strided
// (inner > 1) kernels, batch norm's long (S >= 32) and short (S < 32, 32 x 16 blocks) layouts, plain and fused
// with the residual add and ReLU.
#include "tests/cuda_emu/emu_test_util.h"

#include <string>

#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/kernel_api.h"

using namespace selfsup::kernels;
using namespace emu_test;

namespace {

template <typename T>
void check_close(const char* what, const std::vector<T>& got, const std::vector<double>& ref) {
  const double e = err_ratio(as_double(got), ref, kAtol<T>, kRtol<T>);
  INFO(std::string(what), ": worst |err| / tol = ", e);
  CHECK(e <= 1.0);
}
void check_close_f(const char* what, const std::vector<float>& got, const std::vector<double>& ref) {
  check_close<float>(what, got, ref);
}

template <typename T>
void softmax_case(int64_t outer, int64_t dim, int64_t inner, bool log) {
  CAPTURE(outer);
  CAPTURE(dim);
  CAPTURE(inner);
  CAPTURE(log);
  const size_t n = static_cast<size_t>(outer * dim * inner);
  const std::vector<double> x = rounded<T>(randn_d(n, 3, 2.0)), dy = rounded<T>(randn_d(n, 4));
  std::vector<double> y(n), dx(n);
  softmax_fwd_cpu<double>(outer, dim, inner, x.data(), y.data(), log);
  const DeviceArray<T> dx_in(as<T>(x)), d_dy(as<T>(dy));
  DeviceArray<T> d_y(n), d_dx(n);
  softmax_fwd_cuda<T>(outer, dim, inner, dx_in.data(), d_y.data(), log, nullptr);
  check_close("softmax forward", d_y.host(), y);
  // Backward from the kernel's own (T-rounded) y, as autograd feeds it.
  const std::vector<double> yk = as_double(d_y.host());
  softmax_bwd_cpu<double>(outer, dim, inner, yk.data(), dy.data(), dx.data(), log);
  softmax_bwd_cuda<T>(outer, dim, inner, d_y.data(), d_dy.data(), d_dx.data(), log, nullptr);
  check_close("softmax backward", d_dx.host(), dx);
}

template <typename T>
void xent_case(int64_t N, int64_t C, double eps) {
  CAPTURE(N);
  CAPTURE(C);
  const std::vector<double> x = rounded<T>(randn_d(static_cast<size_t>(N * C), 5, 3.0));
  std::vector<int64_t> target(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) target[i] = (7 * i + 3) % C;
  std::vector<double> loss(N), lse(N), dlogits(x.size()), dloss = randn_d(static_cast<size_t>(N), 6);
  cross_entropy_fwd_cpu<double>(N, C, x.data(), target.data(), eps, loss.data(), lse.data());
  cross_entropy_bwd_cpu<double>(N, C, x.data(), target.data(), eps, lse.data(), dloss.data(), dlogits.data());
  const DeviceArray<T> d_x(as<T>(x));
  const DeviceArray<int64_t> d_t(target);
  DeviceArray<float> d_loss(N), d_lse(N);
  cross_entropy_fwd_cuda<T>(N, C, d_x.data(), d_t.data(), eps, d_loss.data(), d_lse.data(), nullptr);
  check_close_f("cross-entropy loss", d_loss.host(), loss);
  check_close_f("cross-entropy lse", d_lse.host(), lse);
  const DeviceArray<float> d_dloss(as<float>(dloss));
  DeviceArray<T> d_dx(x.size());
  cross_entropy_bwd_cuda<T>(N, C, d_x.data(), d_t.data(), eps, d_lse.data(), d_dloss.data(), d_dx.data(), nullptr);
  check_close("cross-entropy backward", d_dx.host(), dlogits);
}

template <typename T>
void batch_norm_case(int64_t N, int64_t C, int64_t S) {
  CAPTURE(N);
  CAPTURE(C);
  CAPTURE(S);
  const size_t n = static_cast<size_t>(N * C * S);
  std::vector<double> x = randn_d(n, 8);
  for (size_t i = 0; i < n; ++i) x[i] = 5.0 + 2.0 * x[i];  // |mean| > std: the shifted sums matter
  x = rounded<T>(x);
  const std::vector<double> dy = rounded<T>(randn_d(n, 9)), gamma = rounded<float>(randn_d(C, 10)),
                            beta = rounded<float>(randn_d(C, 11));
  std::vector<double> y(n), mean(C), invstd(C), rm(C, 0.5), rv(C, 2.0), dx(n), dgamma(C), dbeta(C), ye(n);
  batch_norm_fwd_train_cpu<double>(N, C, S, x.data(), gamma.data(), beta.data(), 1e-5, 0.1, y.data(), mean.data(),
                                   invstd.data(), rm.data(), rv.data());
  batch_norm_bwd_cpu<double>(N, C, S, dy.data(), x.data(), gamma.data(), mean.data(), invstd.data(), dx.data(),
                             dgamma.data(), dbeta.data());
  batch_norm_fwd_eval_cpu<double>(N, C, S, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5,
                                  ye.data());
  const DeviceArray<T> d_x(as<T>(x)), d_dy(as<T>(dy));
  const DeviceArray<float> d_g(as<float>(gamma)), d_b(as<float>(beta));
  DeviceArray<float> d_mean(C), d_invstd(C), d_rm(std::vector<float>(C, 0.5f)), d_rv(std::vector<float>(C, 2.0f));
  DeviceArray<T> d_y(n), d_dx(n), d_ye(n);
  batch_norm_fwd_train_cuda<T>(N, C, S, d_x.data(), d_g.data(), d_b.data(), 1e-5, 0.1, d_y.data(), d_mean.data(),
                               d_invstd.data(), d_rm.data(), d_rv.data(), nullptr);
  check_close("batch norm y", d_y.host(), y);
  check_close_f("batch norm save_mean", d_mean.host(), mean);
  check_close_f("batch norm save_invstd", d_invstd.host(), invstd);
  check_close_f("batch norm running_mean", d_rm.host(), rm);
  check_close_f("batch norm running_var", d_rv.host(), rv);
  DeviceArray<float> d_dg(C), d_db(C);
  // The backward reads the reference statistics so it is checked on its own.
  const DeviceArray<float> d_m64(as<float>(mean)), d_i64(as<float>(invstd));
  batch_norm_bwd_cuda<T>(N, C, S, d_dy.data(), d_x.data(), d_g.data(), d_m64.data(), d_i64.data(), d_dx.data(),
                         d_dg.data(), d_db.data(), nullptr);
  check_close("batch norm dx", d_dx.host(), dx);
  check_close_f("batch norm dgamma", d_dg.host(), dgamma);
  check_close_f("batch norm dbeta", d_db.host(), dbeta);
  batch_norm_fwd_eval_cuda<T>(N, C, S, d_x.data(), d_g.data(), d_b.data(), d_rm.data(), d_rv.data(), 1e-5,
                              d_ye.data(), nullptr);
  check_close("batch norm eval", d_ye.host(), ye);
}

// The fused batch norm + residual add + ReLU against the CPU kernel in double. Data centred so that about half
// the outputs are clamped (the mask matters); the backward gets the reference forward's y (rounded to T) and
// statistics, so it is checked on its own.
template <typename T>
void batch_norm_add_relu_case(int64_t N, int64_t C, int64_t S, bool has_res) {
  CAPTURE(N);
  CAPTURE(C);
  CAPTURE(S);
  CAPTURE(has_res);
  const size_t n = static_cast<size_t>(N * C * S);
  std::vector<double> x = randn_d(n, 14);
  for (size_t i = 0; i < n; ++i) x[i] = 3.0 + 2.0 * x[i];
  x = rounded<T>(x);
  const std::vector<double> r = rounded<T>(randn_d(n, 15)), dy = rounded<T>(randn_d(n, 16)),
                            gamma = rounded<float>(randn_d(C, 17)), beta = rounded<float>(randn_d(C, 18));
  std::vector<double> y(n), mean(C), invstd(C), rm(C, 0.5), rv(C, 2.0), dx(n), dr(n), dgamma(C), dbeta(C);
  batch_norm_add_relu_fwd_train_cpu<double>(N, C, S, x.data(), has_res ? r.data() : nullptr, gamma.data(),
                                            beta.data(), 1e-5, 0.1, y.data(), mean.data(), invstd.data(), rm.data(),
                                            rv.data());
  batch_norm_add_relu_bwd_cpu<double>(N, C, S, dy.data(), y.data(), x.data(), gamma.data(), mean.data(),
                                      invstd.data(), dx.data(), has_res ? dr.data() : nullptr, dgamma.data(),
                                      dbeta.data());
  const DeviceArray<T> d_x(as<T>(x)), d_r(as<T>(r)), d_dy(as<T>(dy)), d_yref(as<T>(rounded<T>(y)));
  const DeviceArray<float> d_g(as<float>(gamma)), d_b(as<float>(beta));
  DeviceArray<float> d_mean(C), d_invstd(C), d_rm(std::vector<float>(C, 0.5f)), d_rv(std::vector<float>(C, 2.0f));
  DeviceArray<T> d_y(n), d_dx(n), d_dr(n);
  batch_norm_add_relu_fwd_train_cuda<T>(N, C, S, d_x.data(), has_res ? d_r.data() : nullptr, d_g.data(), d_b.data(),
                                        1e-5, 0.1, d_y.data(), d_mean.data(), d_invstd.data(), d_rm.data(),
                                        d_rv.data(), nullptr);
  check_close("fused bn y", d_y.host(), y);
  check_close_f("fused bn save_mean", d_mean.host(), mean);
  check_close_f("fused bn save_invstd", d_invstd.host(), invstd);
  check_close_f("fused bn running_var", d_rv.host(), rv);
  DeviceArray<float> d_dg(C), d_db(C);
  const DeviceArray<float> d_m64(as<float>(mean)), d_i64(as<float>(invstd));
  batch_norm_add_relu_bwd_cuda<T>(N, C, S, d_dy.data(), d_yref.data(), d_x.data(), d_g.data(), d_m64.data(),
                                  d_i64.data(), d_dx.data(), has_res ? d_dr.data() : nullptr, d_dg.data(),
                                  d_db.data(), nullptr);
  check_close("fused bn dx", d_dx.host(), dx);
  if (has_res) check_close("fused bn dresidual", d_dr.host(), dr);
  check_close_f("fused bn dgamma", d_dg.host(), dgamma);
  check_close_f("fused bn dbeta", d_db.host(), dbeta);
}

template <typename T>
void l2n_case(int64_t outer, int64_t dim, int64_t inner) {
  CAPTURE(outer);
  CAPTURE(dim);
  CAPTURE(inner);
  const size_t n = static_cast<size_t>(outer * dim * inner);
  std::vector<double> x = randn_d(n, 12);
  for (int64_t i = 0; i < inner; ++i) x[i] = 0.0;  // outer 0, inner 0: a zero vector (norm < eps)
  for (int64_t d = 1; d < dim; ++d) x[d * inner] = 0.0;
  x = rounded<T>(x);
  const std::vector<double> dy = rounded<T>(randn_d(n, 13));
  std::vector<double> y(n), norm(static_cast<size_t>(outer * inner)), dx(n);
  l2_normalize_fwd_cpu<double>(outer, dim, inner, x.data(), 1e-12, y.data(), norm.data());
  const DeviceArray<T> d_x(as<T>(x)), d_dy(as<T>(dy));
  DeviceArray<T> d_y(n), d_dx(n);
  DeviceArray<float> d_norm(norm.size());
  l2_normalize_fwd_cuda<T>(outer, dim, inner, d_x.data(), 1e-12, d_y.data(), d_norm.data(), nullptr);
  check_close("l2 normalize y", d_y.host(), y);
  check_close_f("l2 normalize norm", d_norm.host(), norm);
  const std::vector<double> yk = as_double(d_y.host()), nk = as_double(d_norm.host());
  l2_normalize_bwd_cpu<double>(outer, dim, inner, yk.data(), nk.data(), 1e-12, dy.data(), dx.data());
  l2_normalize_bwd_cuda<T>(outer, dim, inner, d_y.data(), d_norm.data(), 1e-12, d_dy.data(), d_dx.data(), nullptr);
  check_close("l2 normalize dx", d_dx.host(), dx);
}

template <typename T>
void pool_case(const Pool2dShape& s) {
  CAPTURE(s.kh);
  CAPTURE(s.stride_h);
  CAPTURE(s.pad_h);
  const size_t nin = static_cast<size_t>(s.N * s.C * s.H * s.W), nout = static_cast<size_t>(s.N * s.C * s.P * s.Q);
  std::vector<double> x = randn_d(nin, 14);
  x[5] = x[6];  // a tie inside a window: the first maximum wins
  x = rounded<T>(x);
  const std::vector<double> dy = rounded<T>(randn_d(nout, 15));
  std::vector<double> y(nout), dx(nin), ya(nout), dxa(nin);
  std::vector<int64_t> am(nout);
  max_pool2d_fwd_cpu<double>(s, x.data(), y.data(), am.data());
  max_pool2d_bwd_cpu<double>(s, dy.data(), am.data(), dx.data());
  avg_pool2d_fwd_cpu<double>(s, x.data(), ya.data());
  avg_pool2d_bwd_cpu<double>(s, dy.data(), dxa.data());
  const DeviceArray<T> d_x(as<T>(x)), d_dy(as<T>(dy));
  DeviceArray<T> d_y(nout), d_dx(nin);
  DeviceArray<int64_t> d_am(nout);
  max_pool2d_fwd_cuda<T>(s, d_x.data(), d_y.data(), d_am.data(), nullptr);
  check_close("max pool y", d_y.host(), y);
  CHECK(d_am.host() == am);
  max_pool2d_bwd_cuda<T>(s, d_dy.data(), d_am.data(), d_dx.data(), nullptr);
  check_close("max pool dx", d_dx.host(), dx);
  avg_pool2d_fwd_cuda<T>(s, d_x.data(), d_y.data(), nullptr);
  check_close("avg pool y", d_y.host(), ya);
  avg_pool2d_bwd_cuda<T>(s, d_dy.data(), d_dx.data(), nullptr);
  check_close("avg pool dx", d_dx.host(), dxa);
}

template <typename T>
void adaptive_case(int64_t N, int64_t C, int64_t H, int64_t W, int64_t P, int64_t Q) {
  const std::vector<double> x = rounded<T>(randn_d(static_cast<size_t>(N * C * H * W), 16)),
                            dy = rounded<T>(randn_d(static_cast<size_t>(N * C * P * Q), 17));
  std::vector<double> y(dy.size()), dx(x.size());
  adaptive_avg_pool2d_fwd_cpu<double>(N, C, H, W, P, Q, x.data(), y.data());
  adaptive_avg_pool2d_bwd_cpu<double>(N, C, H, W, P, Q, dy.data(), dx.data());
  const DeviceArray<T> d_x(as<T>(x)), d_dy(as<T>(dy));
  DeviceArray<T> d_y(y.size()), d_dx(x.size());
  adaptive_avg_pool2d_fwd_cuda<T>(N, C, H, W, P, Q, d_x.data(), d_y.data(), nullptr);
  check_close("adaptive avg pool y", d_y.host(), y);
  adaptive_avg_pool2d_bwd_cuda<T>(N, C, H, W, P, Q, d_dy.data(), d_dx.data(), nullptr);
  check_close("adaptive avg pool dx", d_dx.host(), dx);
}

Pool2dShape pool_shape(int64_t k, int64_t stride, int64_t pad, int64_t dil, bool include_pad) {
  Pool2dShape s{2, 3, 9, 7, k, k, stride, stride, pad, pad, dil, dil, 0, 0, include_pad};
  s.P = (s.H + 2 * pad - dil * (k - 1) - 1) / stride + 1;
  s.Q = (s.W + 2 * pad - dil * (k - 1) - 1) / stride + 1;
  return s;
}

}  // namespace

TEST_CASE("emulated softmax / log_softmax: warp rows, block rows, strided; float and bf16") {
  for (const bool log : {false, true}) {
    softmax_case<float>(19, 50, 1, log);    // warp per row, 3 blocks of 8 rows, the last one ragged
    softmax_case<float>(3, 1100, 1, log);   // block per row (dim > 1024)
    softmax_case<float>(4, 9, 37, log);     // strided: a thread per (outer, inner)
  }
  softmax_case<__nv_bfloat16>(11, 1024, 1, true);  // the largest warp-mode row
  softmax_case<__nv_bfloat16>(2, 1500, 1, false);
  launches_checked();
}

TEST_CASE("emulated cross-entropy: warp and block rows, label smoothing; float and bf16") {
  xent_case<float>(13, 10, 0.0);
  xent_case<float>(9, 37, 0.1);
  xent_case<float>(3, 1300, 0.1);  // block per row
  xent_case<__nv_bfloat16>(10, 100, 0.1);
  launches_checked();
}

TEST_CASE("emulated batch norm: long rows (a block per channel) and short rows (32 x 16 blocks)") {
  batch_norm_case<float>(3, 5, 40);   // S >= 32, S not a multiple of 32
  batch_norm_case<float>(7, 37, 4);   // S < 32, C not a multiple of 32: idle columns in the last block
  batch_norm_case<float>(20, 6, 1);   // BatchNorm1d
  batch_norm_case<__nv_bfloat16>(2, 3, 64);
  launches_checked();
}

TEST_CASE("emulated fused batch norm + add + ReLU: long and short rows, with and without the residual") {
  batch_norm_add_relu_case<float>(3, 5, 40, true);
  batch_norm_add_relu_case<float>(3, 5, 40, false);
  batch_norm_add_relu_case<float>(7, 37, 4, true);
  batch_norm_add_relu_case<__nv_bfloat16>(2, 3, 64, true);
  launches_checked();
}

TEST_CASE("emulated L2 normalize: warp rows, block rows, strided, a zero vector") {
  l2n_case<float>(10, 128, 1);
  l2n_case<float>(2, 1030, 1);
  l2n_case<float>(3, 6, 5);
  l2n_case<__nv_bfloat16>(9, 64, 1);
  launches_checked();
}

TEST_CASE("emulated pooling: max (dilation, padding, ties) and avg (count_include_pad), adaptive") {
  pool_case<float>(pool_shape(3, 2, 1, 1, true));
  pool_case<float>(pool_shape(2, 1, 0, 2, false));
  pool_case<float>(pool_shape(3, 3, 1, 1, false));
  pool_case<__nv_bfloat16>(pool_shape(3, 2, 1, 1, true));
  adaptive_case<float>(2, 3, 7, 9, 3, 4);
  adaptive_case<float>(1, 2, 5, 5, 7, 6);  // more bins than pixels: overlapping bins
  launches_checked();
}
