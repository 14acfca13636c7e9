// Pooling kernels against naive float64 loops written independently of kernels/cpu/pool.cpp (taps are
// enumerated one by one and tested against the input/padded borders), plus finite-difference backward checks.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

// PyTorch's pooling output size, ceil_mode included (the last window must start inside input + left pad).
int64_t pool_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (span + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

struct MaxRef {
  std::vector<double> y;
  std::vector<int64_t> idx;
};

MaxRef max_pool_ref(const Pool2dShape& s, const std::vector<double>& x) {
  MaxRef r{std::vector<double>(s.N * s.C * s.P * s.Q), std::vector<int64_t>(s.N * s.C * s.P * s.Q)};
  for (int64_t pl = 0; pl < s.N * s.C; ++pl)
    for (int64_t p = 0; p < s.P; ++p)
      for (int64_t q = 0; q < s.Q; ++q) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t bi = -1;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t h = p * s.stride_h - s.pad_h + i * s.dil_h, w = q * s.stride_w - s.pad_w + j * s.dil_w;
            if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
            const double v = x[pl * s.H * s.W + h * s.W + w];
            if (bi < 0 || v > best) {
              best = v;
              bi = h * s.W + w;
            }
          }
        r.y[pl * s.P * s.Q + p * s.Q + q] = best;
        r.idx[pl * s.P * s.Q + p * s.Q + q] = bi;
      }
  return r;
}

// Average pooling as a (P*Q) x (H*W) weight per plane: y = sum of w * x; backward is its transpose.
template <typename F>
void avg_taps(const Pool2dShape& s, F visit) {
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t q = 0; q < s.Q; ++q) {
      int64_t inside = 0, padded = 0;
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t h = p * s.stride_h - s.pad_h + i, w = q * s.stride_w - s.pad_w + j;
          inside += (h >= 0 && h < s.H && w >= 0 && w < s.W);
          padded += (h >= -s.pad_h && h < s.H + s.pad_h && w >= -s.pad_w && w < s.W + s.pad_w);
        }
      const double div = static_cast<double>(s.count_include_pad ? padded : inside);
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t h = p * s.stride_h - s.pad_h + i, w = q * s.stride_w - s.pad_w + j;
          if (h >= 0 && h < s.H && w >= 0 && w < s.W) visit(p * s.Q + q, h * s.W + w, 1.0 / div);
        }
    }
}

std::vector<double> avg_pool_ref(const Pool2dShape& s, const std::vector<double>& x) {
  std::vector<double> y(s.N * s.C * s.P * s.Q, 0.0);
  for (int64_t pl = 0; pl < s.N * s.C; ++pl)
    avg_taps(s, [&](int64_t o, int64_t i, double wt) { y[pl * s.P * s.Q + o] += wt * x[pl * s.H * s.W + i]; });
  return y;
}

std::vector<double> avg_pool_bwd_ref(const Pool2dShape& s, const std::vector<double>& dy) {
  std::vector<double> dx(s.N * s.C * s.H * s.W, 0.0);
  for (int64_t pl = 0; pl < s.N * s.C; ++pl)
    avg_taps(s, [&](int64_t o, int64_t i, double wt) { dx[pl * s.H * s.W + i] += wt * dy[pl * s.P * s.Q + o]; });
  return dx;
}

// Adaptive bins computed with floating-point floor/ceil, independently of the kernel's integer formulas.
void adaptive_taps(int64_t H, int64_t W, int64_t P, int64_t Q,
                   const std::function<void(int64_t, int64_t, double)>& visit) {
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q) {
      const auto h0 = static_cast<int64_t>(std::floor(static_cast<double>(p * H) / P));
      const auto h1 = static_cast<int64_t>(std::ceil(static_cast<double>((p + 1) * H) / P));
      const auto w0 = static_cast<int64_t>(std::floor(static_cast<double>(q * W) / Q));
      const auto w1 = static_cast<int64_t>(std::ceil(static_cast<double>((q + 1) * W) / Q));
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) visit(p * Q + q, h * W + w, 1.0 / static_cast<double>((h1 - h0) * (w1 - w0)));
    }
}

// Random pooling configurations: odd sizes, padding up to k/2, strides, dilation, ceil mode, N = 1.
std::vector<Pool2dShape> random_shapes(bool dilation, uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<Pool2dShape> out;
  while (static_cast<int>(out.size()) < count) {
    Pool2dShape s{};
    s.N = pick(1, 3);
    s.C = pick(1, 3);
    s.H = pick(1, 11);
    s.W = pick(1, 11);
    s.kh = pick(1, 4);
    s.kw = pick(1, 4);
    s.stride_h = pick(1, 3);
    s.stride_w = pick(1, 3);
    s.pad_h = pick(0, s.kh / 2);
    s.pad_w = pick(0, s.kw / 2);
    s.dil_h = dilation ? pick(1, 2) : 1;
    s.dil_w = dilation ? pick(1, 2) : 1;
    s.count_include_pad = pick(0, 1) == 1;
    const bool ceil_mode = pick(0, 1) == 1;
    s.P = pool_out(s.H, s.kh, s.stride_h, s.pad_h, s.dil_h, ceil_mode);
    s.Q = pool_out(s.W, s.kw, s.stride_w, s.pad_w, s.dil_w, ceil_mode);
    if (s.P > 0 && s.Q > 0) out.push_back(s);
  }
  return out;
}

template <typename T>
void check_max_pool(const Pool2dShape& s, uint64_t seed, double tol) {
  const auto x = random_float_exact(s.N * s.C * s.H * s.W, seed);
  const auto dy = random_float_exact(s.N * s.C * s.P * s.Q, seed + 1);
  const MaxRef ref = max_pool_ref(s, x);
  auto xt = cast_to<T>(x), dyt = cast_to<T>(dy);
  std::vector<T> y(ref.y.size()), dx(x.size());
  std::vector<int64_t> idx(ref.y.size());
  max_pool2d_fwd_cpu(s, xt.data(), y.data(), idx.data());
  check_close(y, ref.y, 0, 0, "max_pool y");
  CHECK(idx == ref.idx);
  std::vector<double> dx_ref(x.size(), 0.0);
  for (int64_t pl = 0; pl < s.N * s.C; ++pl)
    for (int64_t o = 0; o < s.P * s.Q; ++o) {
      const int64_t i = ref.idx[pl * s.P * s.Q + o];
      if (i >= 0) dx_ref[pl * s.H * s.W + i] += dy[pl * s.P * s.Q + o];
    }
  max_pool2d_bwd_cpu(s, dyt.data(), idx.data(), dx.data());
  check_close(dx, dx_ref, tol, tol, "max_pool dx");
}

template <typename T>
void check_avg_pool(const Pool2dShape& s, uint64_t seed, double tol) {
  const auto x = random_float_exact(s.N * s.C * s.H * s.W, seed);
  const auto dy = random_float_exact(s.N * s.C * s.P * s.Q, seed + 1);
  auto xt = cast_to<T>(x), dyt = cast_to<T>(dy);
  std::vector<T> y(dy.size()), dx(x.size());
  avg_pool2d_fwd_cpu(s, xt.data(), y.data());
  check_close(y, avg_pool_ref(s, x), tol, tol, "avg_pool y");
  avg_pool2d_bwd_cpu(s, dyt.data(), dx.data());
  check_close(dx, avg_pool_bwd_ref(s, dy), tol, tol, "avg_pool dx");
}

}  // namespace

TEST_CASE("max_pool2d matches a naive loop (random shapes, padding, stride, dilation, ceil mode)") {
  uint64_t seed = 100;
  for (const auto& s : random_shapes(true, 1, 60)) {
    CAPTURE(s.H);
    CAPTURE(s.W);
    CAPTURE(s.kh);
    CAPTURE(s.stride_h);
    CAPTURE(s.pad_h);
    CAPTURE(s.dil_h);
    check_max_pool<double>(s, seed, 1e-14);
    check_max_pool<float>(s, seed, 1e-6);
    seed += 2;
  }
}

TEST_CASE("max_pool2d takes the first maximum on ties and treats padding as -inf") {
  // All-negative plane with ties: padding must not win (it would if padded with 0).
  Pool2dShape s{1, 1, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 2, 2, false};
  std::vector<double> x = {-3, -1, -1, -2, -1, -5, -4, -1, -2, -2, -1, -1, -3, -1, -6, -1};
  const MaxRef ref = max_pool_ref(s, x);
  std::vector<double> y(4);
  std::vector<int64_t> idx(4);
  max_pool2d_fwd_cpu(s, x.data(), y.data(), idx.data());
  CHECK(y == ref.y);
  CHECK(idx == ref.idx);
  CHECK(idx[0] == 1);  // window rows 0..1, cols 0..1: -1 at (0,1) comes before -1 at (1,0)
  CHECK(y[0] == -1);

  // A NaN is the maximum of its window (PyTorch's isnan rule), and the last NaN gives the index.
  x[5] = NAN;
  x[10] = NAN;
  max_pool2d_fwd_cpu(s, x.data(), y.data(), idx.data());
  CHECK(std::isnan(y[0]));
  CHECK(idx[0] == 5);
  CHECK(std::isnan(y[3]));
  CHECK(idx[3] == 10);  // window rows 1..3, cols 1..3 holds both NaNs: the later one
}

TEST_CASE("avg_pool2d matches a naive loop (count_include_pad both ways, ceil mode)") {
  uint64_t seed = 500;
  for (const auto& s : random_shapes(false, 2, 60)) {
    CAPTURE(s.H);
    CAPTURE(s.kh);
    CAPTURE(s.stride_h);
    CAPTURE(s.pad_h);
    CAPTURE(s.count_include_pad);
    check_avg_pool<double>(s, seed, 1e-14);
    check_avg_pool<float>(s, seed, 1e-6);
    seed += 2;
  }
}

TEST_CASE("adaptive_avg_pool2d matches PyTorch's bins, forward and backward") {
  const int64_t cases[][4] = {{7, 7, 1, 1}, {5, 7, 3, 2}, {10, 9, 4, 4}, {3, 3, 5, 4}, {1, 6, 1, 6}, {8, 8, 8, 8}};
  uint64_t seed = 900;
  for (const auto& c : cases) {
    const int64_t N = 2, C = 3, H = c[0], W = c[1], P = c[2], Q = c[3];
    CAPTURE(H);
    CAPTURE(W);
    CAPTURE(P);
    CAPTURE(Q);
    const auto x = random_float_exact(N * C * H * W, seed);
    const auto dy = random_float_exact(N * C * P * Q, seed + 1);
    std::vector<double> y_ref(N * C * P * Q, 0.0), dx_ref(x.size(), 0.0);
    for (int64_t pl = 0; pl < N * C; ++pl)
      adaptive_taps(H, W, P, Q, [&](int64_t o, int64_t i, double wt) {
        y_ref[pl * P * Q + o] += wt * x[pl * H * W + i];
        dx_ref[pl * H * W + i] += wt * dy[pl * P * Q + o];
      });
    std::vector<double> y(y_ref.size()), dx(x.size());
    adaptive_avg_pool2d_fwd_cpu(N, C, H, W, P, Q, x.data(), y.data());
    adaptive_avg_pool2d_bwd_cpu(N, C, H, W, P, Q, dy.data(), dx.data());
    check_close(y, y_ref, 1e-14, 1e-14, "adaptive y");
    check_close(dx, dx_ref, 1e-14, 1e-14, "adaptive dx");
    auto xf = cast_to<float>(x), dyf = cast_to<float>(dy);
    std::vector<float> yf(y_ref.size()), dxf(x.size());
    adaptive_avg_pool2d_fwd_cpu(N, C, H, W, P, Q, xf.data(), yf.data());
    adaptive_avg_pool2d_bwd_cpu(N, C, H, W, P, Q, dyf.data(), dxf.data());
    check_close(yf, y_ref, 1e-6, 1e-6, "adaptive y f32");
    check_close(dxf, dx_ref, 1e-6, 1e-6, "adaptive dx f32");
    seed += 2;
  }
}

TEST_CASE("pooling backward equals a finite difference of sum(dy * pool(x))") {
  uint64_t seed = 1300;
  for (const auto& s : random_shapes(true, 3, 12)) {
    const auto x = random_vector(s.N * s.C * s.H * s.W, seed);  // continuous: no ties for max pool
    const auto dy = random_vector(s.N * s.C * s.P * s.Q, seed + 1);
    const int64_t out = s.N * s.C * s.P * s.Q;
    const auto max_loss = [&](const std::vector<double>& v) {
      std::vector<double> y(out);
      std::vector<int64_t> idx(out);
      max_pool2d_fwd_cpu(s, v.data(), y.data(), idx.data());
      return dot(y, dy);
    };
    std::vector<double> y(out), dx(x.size());
    std::vector<int64_t> idx(out);
    max_pool2d_fwd_cpu(s, x.data(), y.data(), idx.data());
    max_pool2d_bwd_cpu(s, dy.data(), idx.data(), dx.data());
    check_close(dx, finite_difference(max_loss, x), 1e-7, 1e-7, "max_pool fd");

    Pool2dShape a = s;  // average pooling has no dilation
    a.dil_h = a.dil_w = 1;
    a.P = pool_out(a.H, a.kh, a.stride_h, a.pad_h, 1, false);
    a.Q = pool_out(a.W, a.kw, a.stride_w, a.pad_w, 1, false);
    const auto dya = random_vector(a.N * a.C * a.P * a.Q, seed + 2);
    const auto avg_loss = [&](const std::vector<double>& v) {
      std::vector<double> ya(dya.size());
      avg_pool2d_fwd_cpu(a, v.data(), ya.data());
      return dot(ya, dya);
    };
    std::vector<double> dxa(x.size());
    avg_pool2d_bwd_cpu(a, dya.data(), dxa.data());
    check_close(dxa, finite_difference(avg_loss, x), 1e-7, 1e-7, "avg_pool fd");
    seed += 3;
  }
}
