// conv_transpose2d and upsample against PyTorch (tests/fixtures/decoder.ssfx, made by make_fixtures.py's
// decoder_fixtures): forward and every gradient in float64, where we and PyTorch differ only by summation
// order (a few 1e-16 relative), and float32 against the same float64 reference within its rounding error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/ops/ops.h"
#include "tests/support/fixture.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

using Fixture = std::map<std::string, FixtureTensor>;

const Fixture& fixture() {
  static const Fixture fx = load_fixture("decoder.ssfx");
  return fx;
}

const FixtureTensor& get(const std::string& name) {
  auto it = fixture().find(name);
  if (it == fixture().end()) FAIL("decoder.ssfx has no tensor ", name);
  return it->second;
}

Tensor tensor_of(const FixtureTensor& f, DType dtype) {
  return Tensor::from_vector(f.data, Shape(f.shape.begin(), f.shape.end())).to(dtype);
}

Tensor input_of(const FixtureTensor& f, DType dtype) {
  Tensor t = tensor_of(f, dtype);
  t.set_requires_grad(true);
  return t;
}

// max |got - want| / max |want|: the error relative to the tensor's scale.
double scaled_error(const Tensor& got, const FixtureTensor& want) {
  REQUIRE(got.sizes() == Shape(want.shape.begin(), want.shape.end()));
  const std::vector<double> g = got.to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    err = std::max(err, std::abs(g[i] - want.data[i]));
    scale = std::max(scale, std::abs(want.data[i]));
  }
  return err / scale;
}

// float64: summation order only. float32: the inputs are rounded to float32 (relative 6e-8 each) and each
// output sums at most 36 products (a 3x3 kernel over 4 channels), so a few 1e-7 of the scale; 2e-6 allows
// the worst case without letting a wrong tap (an error of order 1) through.
double tolerance(DType dt) { return dt == DType::f64 ? 1e-13 : 2e-6; }

void check_deconv(const std::string& name, DType dt) {
  const std::string p = "deconv." + name + ".";
  const std::vector<double>& a = get(p + "attrs").data;
  ConvTranspose2dOptions o;
  o.stride = {int64_t(a[0]), int64_t(a[1])};
  o.padding = {int64_t(a[2]), int64_t(a[3])};
  o.output_padding = {int64_t(a[4]), int64_t(a[5])};
  o.dilation = {int64_t(a[6]), int64_t(a[7])};
  o.groups = int64_t(a[8]);
  const bool has_bias = a[9] != 0;
  Tensor x = input_of(get(p + "x"), dt);
  Tensor w = input_of(get(p + "w"), dt);
  Tensor b = has_bias ? input_of(get(p + "b"), dt) : Tensor();
  Tensor y = conv_transpose2d(x, w, b, o);
  CHECK(scaled_error(y, get(p + "y")) < tolerance(dt));
  sum(mul(y, tensor_of(get(p + "dy"), dt))).backward();
  CHECK(scaled_error(x.grad(), get(p + "dx")) < tolerance(dt));
  CHECK(scaled_error(w.grad(), get(p + "dw")) < tolerance(dt));
  if (has_bias) CHECK(scaled_error(b.grad(), get(p + "db")) < tolerance(dt));
}

void check_upsample(const std::string& name, DType dt) {
  const std::string p = "upsample." + name + ".";
  const std::vector<double>& a = get(p + "attrs").data;
  const UpsampleMode mode = a[2] == 0 ? UpsampleMode::nearest : UpsampleMode::bilinear;
  Tensor x = input_of(get(p + "x"), dt);
  Tensor y = upsample(x, {int64_t(a[0]), int64_t(a[1])}, mode, a[3] != 0);
  CHECK(scaled_error(y, get(p + "y")) < tolerance(dt));
  sum(mul(y, tensor_of(get(p + "dy"), dt))).backward();
  CHECK(scaled_error(x.grad(), get(p + "dx")) < tolerance(dt));
}

}  // namespace

TEST_CASE("conv_transpose2d equals PyTorch's: k4 s2 p1, output_padding, dilation, groups, bias") {
  for (const char* name : {"k4s2p1", "outpad", "dil2", "groups2"})
    for (DType dt : {DType::f64, DType::f32}) {
      CAPTURE(name);
      CAPTURE(dtype_name(dt));
      check_deconv(name, dt);
    }
}

TEST_CASE("upsample equals F.interpolate: nearest, bilinear (align_corners false and true), up and down") {
  for (const char* name : {"nearest_x2", "nearest_down_up", "bilinear_x2", "bilinear_7_to_28", "bilinear_odd", "bilinear_align"})
    for (DType dt : {DType::f64, DType::f32}) {
      CAPTURE(name);
      CAPTURE(dtype_name(dt));
      check_upsample(name, dt);
    }
}

TEST_CASE("conv_transpose2d is conv2d's adjoint: <conv2d(u), v> == <u, conv_transpose2d(v)>") {
  // The defining identity, independent of PyTorch: for the same weight, strides and padding.
  Generator gen(7);
  Tensor u = Tensor::randn({2, 3, 9, 8}, DType::f64, &gen);
  Tensor w = Tensor::randn({4, 3, 3, 3}, DType::f64, &gen);  // conv2d: (K=4, C=3); deconv: (Cin=4, Cout=3)
  Conv2dOptions co;
  co.stride = {2, 2};
  co.padding = {1, 1};
  Tensor cu = conv2d(u, w, Tensor(), co);  // (2, 4, 5, 4)
  Tensor v = Tensor::randn(cu.sizes(), DType::f64, &gen);
  ConvTranspose2dOptions to;
  to.stride = {2, 2};
  to.padding = {1, 1};
  to.output_padding = {0, 1};  // 9 = (5-1)*2 - 2 + 3 + 0, 8 = (4-1)*2 - 2 + 3 + 1
  Tensor tv = conv_transpose2d(v, w, Tensor(), to);
  REQUIRE(tv.sizes() == u.sizes());
  const double lhs = sum(mul(cu, v)).item(), rhs = sum(mul(u, tv)).item();
  CHECK(std::abs(lhs - rhs) <= 1e-12 * std::abs(lhs));
}

TEST_CASE("conv_transpose2d and upsample refuse bad arguments with the op's name") {
  ConvTranspose2dOptions o;
  o.stride = {2, 2};
  o.output_padding = {2, 2};
  CHECK_THROWS_WITH_AS(conv_transpose2d(Tensor::zeros({1, 2, 3, 3}), Tensor::zeros({2, 1, 3, 3}), Tensor(), o),
                       doctest::Contains("output_padding 2 must be smaller than the stride 2"), Error);
  CHECK_THROWS_WITH_AS(conv_transpose2d(Tensor::zeros({1, 2, 3, 3}), Tensor::zeros({3, 1, 3, 3})),
                       doctest::Contains("conv_transpose2d: input of shape [1, 2, 3, 3] has 2 channels"), Error);
  CHECK_THROWS_WITH_AS(conv_transpose2d(Tensor::zeros({1, 2, 3, 3}), Tensor::zeros({2, 1, 3, 3}), Tensor::zeros({2})),
                       doctest::Contains("bias of shape [2] must be (1)"), Error);
  CHECK_THROWS_WITH_AS(upsample(Tensor::zeros({1, 1, 2, 2}), 2, UpsampleMode::nearest, true),
                       doctest::Contains("align_corners applies to bilinear mode only"), Error);
  CHECK_THROWS_WITH_AS(upsample(Tensor::zeros({1, 4}), 2, UpsampleMode::nearest),
                       doctest::Contains("upsample: input (N, C, H, W) must have 4 dimensions"), Error);
}
