// kernels/bf16_api.h, the CPU kernels of autocast's bf16: conv2d forward, backward-data, backward-weight and
// GEMM (plain, transposed, padded leading dims, alpha/beta, batched both ways).
//
// Two references, both float64 loops written here:
//  1. the same loops on the inputs rounded to bfloat16 (what bf16_api.h promises: rounded inputs, float
//     accumulation, a float output). The only error left is float accumulation, so the float tolerance of
//     the exact kernels applies unchanged: 1e-4 of the sum of |terms| (dense_check.h).
//  2. the loops on the unrounded inputs (the exact float op). Rounding each input to bfloat16 changes it by at
//     most 2^-8 of itself (8 significant bits, round to nearest), so each product x_r w_r differs from x w by
//     at most (2 * 2^-8 + 2^-16) |x w| and any output by at most 2^-7 (+ the float tolerance) of its sum of
//     |terms|, whatever the fan-in. Measured (emulated path, AVX2 host): 7.5e-4 to 3.1e-3 (conv), 8.9e-4 to
//     1.6e-3 (GEMM), against the bound 7.9e-3; against reference 1: 2e-8 to 6e-8 (bound 1e-4). The error
//     against the exact op must also exceed the float tolerance, or the inputs were not rounded.
// On a CPU with oneDNN bfloat16 kernels (AVX512-BF16 / AMX) these cases run them; elsewhere the emulation
// (bf16_api.h, cpu_native_bf16); the test prints which.
#include <doctest/doctest.h>

#include <cstdio>

#include "kernels/dtype.h"
#include "kernels/bf16_api.h"
#include "tests/kernels/dense_check.h"
#include "tests/kernels/naive_conv.h"

namespace sk = selfsup::kernels;
using selfsup::testing::make_shape;
using selfsup::testing::max_scaled_error;
using selfsup::testing::naive_conv;
using selfsup::testing::nan_vector;
using selfsup::testing::random_vector;
using selfsup::testing::RefValue;
using selfsup::testing::to_double;

namespace {

constexpr double kFloatTol = 1e-4;                            // dense_check.h's float tolerance
constexpr double kBf16Bound = 2.0 / 256 + 1.0 / 65536 + kFloatTol;  // 2^-7 + 2^-16 + float accumulation

std::vector<double> rounded(const std::vector<float>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = selfsup::bf16::from_float(v[i]).to_float();
  return out;
}

// Both checks of the file comment for one output. must_differ: also require the error against the exact op to
// exceed the float tolerance (not for dbias, a plain sum over N P Q rounded values whose rounding errors cancel
// to about 2^-9 / sqrt(N P Q) of the sum of |terms|, below the float tolerance).
void check_both(const char* what, const std::vector<float>& got, const std::vector<RefValue>& ref_rounded,
                const std::vector<RefValue>& ref_exact, bool must_differ = true) {
  CAPTURE(what);
  const double err_rounded = max_scaled_error(got, ref_rounded), err_exact = max_scaled_error(got, ref_exact);
  CAPTURE(err_rounded);
  CAPTURE(err_exact);
  CHECK(err_rounded <= kFloatTol);
  CHECK(err_exact <= kBf16Bound);
  if (must_differ) CHECK(err_exact > kFloatTol);
  std::printf("  %-16s error vs rounded-input float64 %.2e, vs exact float64 %.2e\n", what, err_rounded, err_exact);
}

void check_conv_bf16(const sk::Conv2dShape& s, bool with_bias) {
  CAPTURE(s.C);
  CAPTURE(s.K);
  CAPTURE(s.R);
  CAPTURE(s.stride_h);
  CAPTURE(s.groups);
  CAPTURE(with_bias);
  const auto x = random_vector<float>(s.N * s.C * s.H * s.W, 21 + s.C);
  const auto w = random_vector<float>(s.K * (s.C / s.groups) * s.R * s.S, 22 + s.K);
  const auto bias = random_vector<float>(s.K, 23);
  const auto dy = random_vector<float>(s.N * s.K * s.P * s.Q, 24 + s.N);
  const auto bias_d = to_double(bias);
  const auto* b = with_bias ? &bias_d : nullptr;
  const auto ref_r = naive_conv(s, rounded(x), rounded(w), b, rounded(dy));
  const auto ref_e = naive_conv(s, to_double(x), to_double(w), b, to_double(dy));

  auto y = nan_vector<float>(ref_r.y.size());
  sk::conv2d_fwd_bf16_cpu(s, x.data(), w.data(), with_bias ? bias.data() : nullptr, y.data());
  check_both("forward", y, ref_r.y, ref_e.y);

  auto dx = nan_vector<float>(ref_r.dx.size());
  sk::conv2d_bwd_data_bf16_cpu(s, dy.data(), w.data(), dx.data());
  check_both("backward-data", dx, ref_r.dx, ref_e.dx);

  auto dw = nan_vector<float>(ref_r.dw.size());
  auto dbias = nan_vector<float>(s.K);
  sk::conv2d_bwd_weight_bf16_cpu(s, x.data(), dy.data(), dw.data(), with_bias ? dbias.data() : nullptr);
  check_both("backward-weight", dw, ref_r.dw, ref_e.dw);
  if (with_bias) check_both("backward-bias", dbias, ref_r.dbias, ref_e.dbias, false);
}

// A is (M, K) (stored (K, M) when ta), B is (K, N) (stored (N, K) when tb), leading dims padded by 2,
// batch strides with a gap of 3; C = alpha A B + beta C.
void check_gemm_bf16(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, double beta) {
  CAPTURE(ta);
  CAPTURE(tb);
  CAPTURE(batch);
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 2, ldc = N + 2;
  const int64_t sa = (ta ? K : M) * lda + 3, sb = (tb ? N : K) * ldb + 3, sc = M * ldc + 3;
  const auto A = random_vector<float>(batch * sa, 31 + M), B = random_vector<float>(batch * sb, 32 + N);
  auto C = random_vector<float>(batch * sc, 33 + K);
  const auto C0 = C;
  const double alpha = 0.75;
  const auto Ar = rounded(A), Br = rounded(B);
  std::vector<RefValue> ref_r(batch * M * N), ref_e(batch * M * N);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        RefValue r{beta * C0[b * sc + m * ldc + n], std::abs(beta * C0[b * sc + m * ldc + n])}, e = r;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t ai = b * sa + (ta ? k * lda + m : m * lda + k), bi = b * sb + (tb ? n * ldb + k : k * ldb + n);
          r.value += alpha * Ar[ai] * Br[bi];
          r.magnitude += std::abs(alpha * Ar[ai] * Br[bi]);
          e.value += alpha * double(A[ai]) * B[bi];
          e.magnitude += std::abs(alpha * double(A[ai]) * B[bi]);
        }
        ref_r[(b * M + m) * N + n] = r;
        ref_e[(b * M + m) * N + n] = e;
      }
  sk::gemm_batched_bf16_cpu(ta, tb, batch, M, N, K, float(alpha), A.data(), lda, sa, B.data(), ldb, sb, float(beta),
                            C.data(), ldc, sc);
  std::vector<float> got(batch * M * N);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) got[(b * M + m) * N + n] = C[b * sc + m * ldc + n];
  check_both("gemm", got, ref_r, ref_e);
}

}  // namespace

TEST_CASE("bf16 conv2d kernels match float64 loops on bfloat16-rounded inputs") {
  std::printf("bf16 kernels on this CPU: %s (oneDNN ISA %s)\n",
              sk::cpu_native_bf16() ? "oneDNN bfloat16 kernels" : "emulated (no bfloat16 kernels)", sk::cpu_isa_name());
  const std::initializer_list<int64_t> shapes[] = {
      // N  C   H   W   K  R  S sh sw ph pw dh dw  g
      {2, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // width-8 ResNet: NCHW-in forward, nChw8c backward
      {2, 16, 8, 8, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},  // blocked 16-wide, stride 2
      {3, 16, 5, 4, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1},   // 1x1: the plain-layout path (a type-only reorder)
      {2, 3, 12, 12, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1},  // RGB stem (plain backward-data)
      {2, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2},    // groups 2
  };
  bool with_bias = true;
  for (const auto& v : shapes) {
    check_conv_bf16(make_shape(v), with_bias);
    with_bias = !with_bias;
  }
}

TEST_CASE("bf16 gemm kernels match float64 loops on bfloat16-rounded inputs") {
  check_gemm_bf16(false, false, 1, 17, 13, 40, 0.0);
  check_gemm_bf16(true, false, 1, 9, 21, 33, 0.5);
  check_gemm_bf16(false, true, 1, 12, 7, 64, 1.0);
  check_gemm_bf16(true, true, 1, 5, 6, 50, 0.0);
  check_gemm_bf16(false, true, 4, 8, 9, 30, 0.25);        // batched, small: one sgemm per OpenMP thread
  check_gemm_bf16(true, false, 2, 128, 96, 128, 0.0);     // batched, large: threaded sgemm per matrix
}
