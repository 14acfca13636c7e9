// gemm_cpu / gemm_batched_cpu against a naive float64 triple loop written here (independent of BLAS and
// oneDNN), on random inputs: both transposes, leading dimensions wider than the matrix, batch strides with
// gaps, M/N/K = 1, alpha/beta, beta = 0 over a NaN-filled C (C must not be read), untouched padding.
#include <doctest/doctest.h>

#include <stdexcept>

#include "kernels/kernel_api.h"
#include "tests/kernels/dense_check.h"

namespace sk = selfsup::kernels;
using selfsup::testing::max_scaled_error;
using selfsup::testing::random_vector;
using selfsup::testing::RefValue;
using selfsup::testing::tolerance;

namespace {

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  int64_t pad;  // extra columns in every leading dimension
  double alpha, beta;
};

constexpr double kGuard = 12345.0;  // written into C's padding; must survive

template <typename T>
void check_gemm(const GemmCase& c, int64_t batch) {
  CAPTURE(c.ta);
  CAPTURE(c.tb);
  CAPTURE(c.M);
  CAPTURE(c.N);
  CAPTURE(c.K);
  CAPTURE(c.pad);
  CAPTURE(batch);
  // A is (M, K), stored (K, M) when ta; B is (K, N), stored (N, K) when tb; C is (M, N).
  const int64_t a_rows = c.ta ? c.K : c.M, lda = (c.ta ? c.M : c.K) + c.pad;
  const int64_t b_rows = c.tb ? c.N : c.K, ldb = (c.tb ? c.K : c.N) + c.pad;
  const int64_t ldc = c.N + c.pad;
  // Batch strides leave a gap of 3 elements so a kernel assuming packed matrices reads wrong data.
  const int64_t stride_a = a_rows * lda + 3, stride_b = b_rows * ldb + 3, stride_c = c.M * ldc + 3;
  auto A = random_vector<T>(batch * stride_a, 1 + c.M);
  auto B = random_vector<T>(batch * stride_b, 2 + c.N);
  auto C = random_vector<T>(batch * stride_c, 3 + c.K);
  if (c.beta == 0) C = selfsup::testing::nan_vector<T>(C.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = c.N; n < ldc; ++n) C[b * stride_c + m * ldc + n] = T(kGuard);
  const auto C0 = C;

  std::vector<RefValue> ref(batch * c.M * c.N);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        RefValue r;
        for (int64_t k = 0; k < c.K; ++k) {
          const double a = A[b * stride_a + (c.ta ? k * lda + m : m * lda + k)];
          const double bb = B[b * stride_b + (c.tb ? n * ldb + k : k * ldb + n)];
          r.value += a * bb;
          r.magnitude += std::abs(a * bb);
        }
        r.value *= c.alpha;
        r.magnitude *= std::abs(c.alpha);
        if (c.beta != 0) {
          const double c0 = C0[b * stride_c + m * ldc + n];
          r.value += c.beta * c0;
          r.magnitude += std::abs(c.beta * c0);
        }
        ref[(b * c.M + m) * c.N + n] = r;
      }

  if (batch == 1) {
    sk::gemm_cpu<T>(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb, T(c.beta), C.data(), ldc);
  } else {
    sk::gemm_batched_cpu<T>(c.ta, c.tb, batch, c.M, c.N, c.K, T(c.alpha), A.data(), lda, stride_a, B.data(), ldb,
                            stride_b, T(c.beta), C.data(), ldc, stride_c);
  }
  std::vector<T> got(ref.size());
  bool guards_intact = true;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t n = 0; n < c.N; ++n) got[(b * c.M + m) * c.N + n] = C[b * stride_c + m * ldc + n];
      for (int64_t n = c.N; n < ldc; ++n) guards_intact &= C[b * stride_c + m * ldc + n] == T(kGuard);
    }
  CHECK(guards_intact);
  CHECK(max_scaled_error(got, ref) <= tolerance<T>());
}

const GemmCase kCases[] = {
    {false, false, 7, 5, 3, 0, 1.0, 0.0},     {true, false, 17, 33, 9, 2, 1.0, 0.0},
    {false, true, 31, 16, 40, 5, 0.5, 0.0},   {true, true, 64, 48, 37, 1, -2.0, 0.0},
    {false, false, 1, 1, 1, 0, 1.0, 0.0},     {false, false, 1, 100, 50, 3, 1.0, 0.0},
    {true, false, 100, 1, 50, 3, 1.0, 0.0},   {false, true, 40, 30, 1, 4, 1.0, 0.0},
    {false, false, 33, 65, 129, 7, 1.5, 0.5}, {true, true, 20, 19, 18, 0, 1.0, 1.0},
    {false, false, 256, 200, 300, 16, 1.0, -0.25},
};

}  // namespace

TEST_CASE_TEMPLATE("gemm_cpu matches a naive float64 loop", T, float, double) {
  for (const auto& c : kCases) check_gemm<T>(c, 1);
}

TEST_CASE_TEMPLATE("gemm_batched_cpu matches a naive float64 loop", T, float, double) {
  for (const auto& c : kCases) check_gemm<T>(c, 3);
  check_gemm<T>({false, false, 2, 3, 4, 1, 1.0, 0.0}, 37);  // many tiny matrices: the across-batch path
  check_gemm<T>({true, true, 5, 4, 3, 0, 2.0, 1.0}, 16);
}

TEST_CASE_TEMPLATE("gemm_cpu with K = 0 scales C by beta", T, float, double) {
  std::vector<T> C{1, 2, 3, 4};
  sk::gemm_cpu<T>(false, false, 2, 2, 0, T(1), nullptr, 1, nullptr, 2, T(0.5), C.data(), 2);
  CHECK(C == std::vector<T>{0.5, 1, 1.5, 2});
}

TEST_CASE("the scaled error catches a single wrong element") {
  std::vector<RefValue> ref{{1.0, 2.0}, {-3.0, 4.0}};
  CHECK(max_scaled_error(std::vector<float>{1.0f, -3.0f}, ref) <= tolerance<float>());
  CHECK(max_scaled_error(std::vector<float>{1.0f, -3.01f}, ref) > tolerance<float>());
  CHECK(max_scaled_error(std::vector<double>{1.0, std::nan("")}, ref) > 1.0);
}

TEST_CASE("gemm_cpu<float> turns a oneDNN error into std::runtime_error naming the call") {
  std::vector<float> A(4), B(4), C(4);
  // lda = 1 < K = 2 is invalid for a row-major (M, K) A.
  CHECK_THROWS_WITH_AS(sk::gemm_cpu<float>(false, false, 2, 2, 2, 1.0f, A.data(), 1, B.data(), 2, 0.0f, C.data(), 2),
                       doctest::Contains("dnnl_sgemm"), std::runtime_error);
}
