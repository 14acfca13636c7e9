// Autocast (engine/autograd/autocast.h) at the op level: conv2d and linear (matmul / bmm) under
// AutocastGuard(bf16), forward and every gradient, against two float64 references computed here:
//  - the same op in float64 on the bfloat16-rounded inputs (x, w and the incoming gradient; a bias is added
//    unrounded): the only error left is float32 accumulation, bounded by 1e-4 of each element's sum of |terms|
//    (the float tolerance of tests/kernels/dense_check.h), measured 3e-8 to 8e-8;
//  - the exact op in float64: rounding each input to bfloat16 moves it by at most 2^-8 of itself, so every
//    product by at most (2^-7 + 2^-16) of |product|, and an element by that of its sum of |terms|: the bound
//    is 2^-7 + 2^-16 + 1e-4 = 7.9e-3, measured 1.4e-3 to 4.8e-3. The error must also exceed 1e-4, or nothing was
//    rounded.
// The sum of |terms| of every element is the same op on |inputs| (float64), e.g. conv2d(|x|, |w|) + |b|.
// Also: autocast off is bit-identical to the op without any guard and to the float kernel called directly,
// float64 ignores autocast, and the backward keeps the forward's precision when the guard is gone.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "engine/autograd/autocast.h"
#include "engine/autograd/grad_mode.h"
#include "engine/core/rng.h"
#include "engine/ops/ops.h"
#include "kernels/kernel_api.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/error_of.h"

using namespace selfsup;

namespace {

constexpr double kFloatTol = 1e-4;
constexpr double kBf16Bound = 2.0 / 256 + 1.0 / 65536 + kFloatTol;

Tensor rounded64(const Tensor& t) { return t.detach().to(DType::bf16).to(DType::f64); }
Tensor exact64(const Tensor& t) { return t.detach().to(DType::f64); }
Tensor abs64(const Tensor& t) { return abs(t.detach().to(DType::f64)); }

// max over elements of |got - ref| / (magnitude + 1e-30)
double scaled_error(const Tensor& got, const Tensor& ref, const Tensor& magnitude) {
  const std::vector<double> g = got.to_vector(), r = ref.to_vector(), m = magnitude.to_vector();
  REQUIRE(g.size() == r.size());
  REQUIRE(g.size() == m.size());
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g[i] - r[i]) / (m[i] + 1e-30);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

// got (float32, autocast bf16) against ref_rounded and ref_exact (float64), both scaled by magnitude.
void check_bf16(const char* what, const Tensor& got, const Tensor& ref_rounded, const Tensor& ref_exact,
                const Tensor& magnitude) {
  CAPTURE(what);
  const double e_r = scaled_error(got, ref_rounded, magnitude), e_x = scaled_error(got, ref_exact, magnitude);
  CAPTURE(e_r);
  CAPTURE(e_x);
  std::printf("  autocast %-10s error vs rounded-input float64 %.2e, vs exact float64 %.2e\n", what, e_r, e_x);
  CHECK(got.dtype() == DType::f32);
  CHECK(e_r <= kFloatTol);
  CHECK(e_x <= kBf16Bound);
  CHECK(e_x > kFloatTol);
}

struct ConvGrads {
  Tensor y, dx, dw, db;
};

// y = conv2d(x, w, b), then backward of sum(y * g); leaves are fresh copies of the given tensors.
ConvGrads conv_run(const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& g, const Conv2dOptions& o) {
  Tensor x = x0.detach().clone().set_requires_grad(true), w = w0.detach().clone().set_requires_grad(true);
  Tensor b = b0.detach().clone().set_requires_grad(true);
  Tensor y = conv2d(x, w, b, o);
  sum(mul(y, g)).backward();
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

}  // namespace

TEST_CASE("autocast bf16: conv2d forward and gradients against float64 on bfloat16-rounded inputs") {
  Generator gen(41);
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  // (N, C, H, W) = (3, 8, 9, 9) into 16 channels, 3x3 stride 2: a width-8 ResNet's downsampling conv.
  Tensor x = Tensor::randn({3, 8, 9, 9}, DType::f32, &gen), w = Tensor::randn({16, 8, 3, 3}, DType::f32, &gen);
  Tensor b = Tensor::randn({16}, DType::f32, &gen), g = Tensor::randn({3, 16, 5, 5}, DType::f32, &gen);
  ConvGrads got;
  {
    AutocastGuard autocast(DType::bf16);
    got = conv_run(x, w, b, g, o);
  }
  const ConvGrads ref_r = conv_run(rounded64(x), rounded64(w), exact64(b), rounded64(g), o);
  const ConvGrads ref_x = conv_run(exact64(x), exact64(w), exact64(b), exact64(g), o);
  const ConvGrads mag = conv_run(abs64(x), abs64(w), abs64(b), abs64(g), o);
  check_bf16("y", got.y, ref_r.y, ref_x.y, mag.y);
  check_bf16("dx", got.dx, ref_r.dx, ref_x.dx, mag.dx);
  check_bf16("dw", got.dw, ref_r.dw, ref_x.dw, mag.dw);
  // db = sum of the rounded g: its rounding errors cancel below 1e-4 of the sum of |g| (the kernel test says
  // why), so only the rounded reference and the bf16 bound apply.
  CHECK(scaled_error(got.db, ref_r.db, mag.db) <= kFloatTol);
  CHECK(scaled_error(got.db, ref_x.db, mag.db) <= kBf16Bound);
}

TEST_CASE("autocast bf16: linear forward and gradients against float64 on bfloat16-rounded inputs") {
  Generator gen(42);
  // x (6, 40) -> 12 features; a 3-d input folds its leading dims into the GEMM's rows.
  Tensor x0 = Tensor::randn({2, 3, 40}, DType::f32, &gen), w0 = Tensor::randn({12, 40}, DType::f32, &gen);
  Tensor b0 = Tensor::randn({12}, DType::f32, &gen), g = Tensor::randn({2, 3, 12}, DType::f32, &gen);
  auto run = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi, const Tensor& gi) {
    Tensor x = xi.detach().clone().set_requires_grad(true), w = wi.detach().clone().set_requires_grad(true);
    Tensor b = bi.detach().clone().set_requires_grad(true);
    Tensor y = linear(x, w, b);
    sum(mul(y, gi)).backward();
    return std::vector<Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
  };
  std::vector<Tensor> got;
  {
    AutocastGuard autocast(DType::bf16);
    got = run(x0, w0, b0, g);
  }
  const auto ref_r = run(rounded64(x0), rounded64(w0), exact64(b0), rounded64(g));
  const auto ref_x = run(exact64(x0), exact64(w0), exact64(b0), exact64(g));
  const auto mag = run(abs64(x0), abs64(w0), abs64(b0), abs64(g));
  check_bf16("linear y", got[0], ref_r[0], ref_x[0], mag[0]);
  check_bf16("linear dx", got[1], ref_r[1], ref_x[1], mag[1]);
  check_bf16("linear dw", got[2], ref_r[2], ref_x[2], mag[2]);
  // The bias gradient is a float32 reduction of the unrounded g (add's backward): exact to float32.
  CHECK(scaled_error(got[3], ref_x[3], mag[3]) <= kFloatTol);
}

TEST_CASE("autocast off is bit-identical to no autocast and to the float kernels") {
  Generator gen(43);
  Tensor x = Tensor::randn({2, 8, 7, 7}, DType::f32, &gen), w = Tensor::randn({8, 8, 3, 3}, DType::f32, &gen);
  Tensor b = Tensor::randn({8}, DType::f32, &gen), g = Tensor::randn({2, 8, 7, 7}, DType::f32, &gen);
  Conv2dOptions o;
  o.padding = {1, 1};
  const ConvGrads plain = conv_run(x, w, b, g, o);
  ConvGrads off;
  {
    AutocastGuard guard(DType::f32);
    off = conv_run(x, w, b, g, o);
  }
  CHECK(off.y.to_vector() == plain.y.to_vector());
  CHECK(off.dx.to_vector() == plain.dx.to_vector());
  CHECK(off.dw.to_vector() == plain.dw.to_vector());
  // The op's forward is the float kernel's output, bit for bit (no rounding pass sneaked in).
  kernels::Conv2dShape s{2, 8, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 7, 7};
  std::vector<float> y(2 * 8 * 7 * 7);
  kernels::conv2d_fwd_cpu<float>(s, x.data_ptr<float>(), w.data_ptr<float>(), b.data_ptr<float>(), y.data());
  CHECK(plain.y.to_vector() == std::vector<double>(y.begin(), y.end()));
  Tensor a = Tensor::randn({5, 9}, DType::f32, &gen), c = Tensor::randn({9, 4}, DType::f32, &gen);
  std::vector<float> ac(5 * 4);
  kernels::gemm_cpu<float>(false, false, 5, 4, 9, 1.0f, a.data_ptr<float>(), 9, c.data_ptr<float>(), 4, 0.0f,
                           ac.data(), 4);
  CHECK(matmul(a, c).to_vector() == std::vector<double>(ac.begin(), ac.end()));
}

TEST_CASE("autocast: float64 ignores it, backward keeps the forward's precision, the guard nests") {
  Generator gen(44);
  Tensor a = Tensor::randn({4, 30}, DType::f64, &gen), c = Tensor::randn({30, 3}, DType::f64, &gen);
  Tensor exact = matmul(a, c);
  {
    AutocastGuard autocast(DType::bf16);
    CHECK(matmul(a, c).to_vector() == exact.to_vector());  // float64 is the reference precision: untouched
    {
      AutocastGuard inner(DType::f32);
      CHECK(Autocast::dtype() == DType::f32);
    }
    CHECK(Autocast::dtype() == DType::bf16);
  }
  CHECK(Autocast::dtype() == DType::f32);

  // Backward after the guard is gone gives the gradients of a backward inside it (the node kept bf16).
  Tensor x = Tensor::randn({2, 8, 6, 6}, DType::f32, &gen), w = Tensor::randn({8, 8, 3, 3}, DType::f32, &gen);
  Tensor l = Tensor::randn({5, 8}, DType::f32, &gen), g = Tensor::randn({2, 5}, DType::f32, &gen);
  auto run = [&](bool backward_inside) {
    Tensor xl = x.clone().set_requires_grad(true), wl = w.clone().set_requires_grad(true);
    Tensor ll = l.clone().set_requires_grad(true);
    Tensor loss;
    {
      AutocastGuard autocast(DType::bf16);
      Tensor h = mean(conv2d(xl, wl, Tensor(), Conv2dOptions{{1, 1}, {1, 1}}), {2, 3});  // (2, 8)
      loss = sum(mul(linear(h, ll), g));
      if (backward_inside) loss.backward();
    }
    if (!backward_inside) loss.backward();
    return std::vector<std::vector<double>>{xl.grad().to_vector(), wl.grad().to_vector(), ll.grad().to_vector()};
  };
  const auto inside = run(true), after = run(false);
  CHECK(inside == after);
  // ... and differs from the float32 gradients (the backward really ran in bf16).
  Tensor xl = x.clone().set_requires_grad(true), wl = w.clone().set_requires_grad(true);
  Tensor h = mean(conv2d(xl, wl, Tensor(), Conv2dOptions{{1, 1}, {1, 1}}), {2, 3});
  sum(mul(linear(h, l), g)).backward();
  CHECK(xl.grad().to_vector() != inside[0]);
}

TEST_CASE("precision names: fp32 and bf16, anything else names the field") {
  CHECK(parse_precision("fp32", "x") == DType::f32);
  CHECK(parse_precision("bf16", "x") == DType::bf16);
  CHECK(test::error_of([] { parse_precision("fp16", "train: --precision"); }) ==
        "train: --precision: expected fp32 or bf16, got 'fp16'");
  CHECK(test::error_of([] { Autocast::set_dtype(DType::f16); }).find("autocast: dtype must be") == 0);
}
