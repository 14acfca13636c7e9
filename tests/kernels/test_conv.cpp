// conv2d_{fwd,bwd_data,bwd_weight}_cpu against naive float64 direct loops written here (not im2col, not
// oneDNN), on random inputs: stride, padding, dilation, groups (2 and depthwise), 1x1, 7x7/2 stems,
// non-square inputs and filters, bias present and absent, N = 1, channel counts on and off oneDNN's 16-wide
// blocks. Outputs are NaN-filled first: every kernel must overwrite all of its output.
#include <doctest/doctest.h>

#include <stdexcept>
#include <thread>
#include <type_traits>

#include "kernels/cpu/conv_small.h"
#include "kernels/kernel_api.h"
#include "tests/kernels/dense_check.h"
#include "tests/kernels/naive_conv.h"

namespace sk = selfsup::kernels;
using selfsup::testing::make_shape;
using selfsup::testing::max_scaled_error;
using selfsup::testing::naive_conv;
using selfsup::testing::nan_vector;
using selfsup::testing::random_vector;
using selfsup::testing::to_double;
using selfsup::testing::RefValue;
using selfsup::testing::tolerance;

namespace {

template <typename T>
void check_conv(const sk::Conv2dShape& s, bool with_bias) {
  CAPTURE(s.N);
  CAPTURE(s.C);
  CAPTURE(s.H);
  CAPTURE(s.W);
  CAPTURE(s.K);
  CAPTURE(s.R);
  CAPTURE(s.S);
  CAPTURE(s.stride_h);
  CAPTURE(s.pad_h);
  CAPTURE(s.dil_h);
  CAPTURE(s.groups);
  CAPTURE(with_bias);
  const auto x = random_vector<T>(s.N * s.C * s.H * s.W, 11 + s.C);
  const auto w = random_vector<T>(s.K * (s.C / s.groups) * s.R * s.S, 12 + s.K);
  const auto bias = random_vector<T>(s.K, 13);
  const auto dy = random_vector<T>(s.N * s.K * s.P * s.Q, 14 + s.N);
  const auto bias_d = to_double(bias);
  const auto ref = naive_conv(s, to_double(x), to_double(w), with_bias ? &bias_d : nullptr, to_double(dy));

  auto y = nan_vector<T>(ref.y.size());
  sk::conv2d_fwd_cpu<T>(s, x.data(), w.data(), with_bias ? bias.data() : nullptr, y.data());
  CHECK(max_scaled_error(y, ref.y) <= tolerance<T>());

  auto dx = nan_vector<T>(ref.dx.size());
  sk::conv2d_bwd_data_cpu<T>(s, dy.data(), w.data(), dx.data());
  CHECK(max_scaled_error(dx, ref.dx) <= tolerance<T>());

  auto dw = nan_vector<T>(ref.dw.size());
  auto dbias = nan_vector<T>(s.K);
  sk::conv2d_bwd_weight_cpu<T>(s, x.data(), dy.data(), dw.data(), with_bias ? dbias.data() : nullptr);
  CHECK(max_scaled_error(dw, ref.dw) <= tolerance<T>());
  if (with_bias) CHECK(max_scaled_error(dbias, ref.dbias) <= tolerance<T>());
}

const std::initializer_list<int64_t> kShapes[] = {
    // N  C   H   W   K  R  S sh sw ph pw dh dw  g
    {2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},        // basic 3x3, non-square input
    {2, 4, 7, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1},        // stride 2, odd sizes (floor in P, Q)
    {1, 3, 9, 8, 2, 3, 3, 1, 1, 2, 2, 2, 2, 1},        // dilation 2, N = 1
    {2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},        // groups 2
    {2, 8, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8},        // depthwise
    {2, 32, 6, 6, 32, 3, 3, 2, 2, 1, 1, 1, 1, 32},     // depthwise, stride 2, blocked channels
    {3, 16, 5, 4, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1},       // 1x1 (plain-layout path)
    {2, 8, 6, 6, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1},       // 1x1 stride 2 (downsample)
    {2, 3, 20, 17, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1},      // 7x7/2 stem, RGB
    {1, 1, 12, 12, 4, 7, 7, 2, 2, 3, 3, 1, 1, 1},      // 7x7/2 stem, grey
    {1, 5, 6, 11, 3, 1, 3, 1, 1, 0, 1, 1, 1, 1},       // non-square filter and padding
    {2, 6, 9, 7, 5, 3, 2, 2, 1, 1, 0, 1, 2, 1},        // different strides/dilations per axis
    {4, 32, 8, 8, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1},      // blocked nChw16c path
    {2, 20, 9, 9, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1},      // channels off the 16-wide blocks
    {1, 16, 8, 8, 16, 5, 5, 1, 1, 2, 2, 1, 1, 1},      // 5x5 pad 2
    {2, 32, 4, 4, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4},      // groups 4, blocked
    {2, 3, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1},        // no padding, 2x2 output
    {2, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},        // 8 channels (width 8): fwd NCHW-in (AVX-512), nChw8c (AVX2)
    {2, 8, 9, 9, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1},       // 8 -> 16 channels, stride 2
    {2, 24, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},       // 24 = 16 + 8 channels: nChw8c
    {3, 1, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},      // grey CIFAR stem into 8 channels
};

// Output maps of at most 4 positions: one GEMM over the batch (kernels/cpu/conv_small.cpp) for float.
const std::initializer_list<int64_t> kTinyMapShapes[] = {
    // N  C   H   W   K  R  S sh sw ph pw dh dw  g
    {5, 16, 1, 1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},       // 1x1 map, 3x3 pad 1: the centre tap alone
    {3, 8, 2, 2, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1},       // 2x2 map: all 9 taps, 4 meet each position
    {4, 8, 2, 2, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1},       // 2x2 -> 1x1, stride 2: taps (1..2, 1..2)
    {4, 8, 2, 2, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1},       // 1x1 stride 2 downsample of a 2x2 map
    {2, 4, 5, 5, 3, 3, 3, 2, 2, 1, 1, 2, 2, 1},        // dilation 2, stride 2: 2x2 out of 5x5
    {3, 5, 3, 7, 4, 3, 5, 2, 3, 0, 1, 1, 1, 1},        // non-square everything: 1x2 map
    {2, 3, 4, 4, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1},        // no padding, 2x2 output
};

}  // namespace

TEST_CASE_TEMPLATE("conv2d kernels match naive float64 loops", T, float, double) {
  bool with_bias = true;
  for (const auto& v : kShapes) {
    check_conv<T>(make_shape(v), with_bias);
    with_bias = !with_bias;
  }
  check_conv<T>(make_shape({2, 16, 6, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}), false);
  check_conv<T>(make_shape({2, 16, 6, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}), true);  // same shape, now with bias
  for (const auto& v : kTinyMapShapes) {
    check_conv<T>(make_shape(v), false);
    check_conv<T>(make_shape(v), true);
  }
}

namespace {

// (N, C, H, W) <-> (N, H, W, C) copies, for the channels-last buffers of the test below.
template <typename T>
std::vector<T> to_nhwc(const std::vector<T>& v, int64_t N, int64_t C, int64_t H, int64_t W) {
  std::vector<T> out(v.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i) out[(n * H * W + i) * C + c] = v[(n * C + c) * H * W + i];
  return out;
}

template <typename T>
std::vector<T> from_nhwc(const std::vector<T>& v, int64_t N, int64_t C, int64_t H, int64_t W) {
  std::vector<T> out(v.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H * W; ++i) out[(n * C + c) * H * W + i] = v[(n * H * W + i) * C + c];
  return out;
}

// The float kernels with x/dx channels-last (x_nhwc) and/or y/dy channels-last (y_nhwc) against the NCHW
// float64 loops.
void check_conv_layouts(sk::Conv2dShape s, bool x_nhwc, bool y_nhwc) {
  CAPTURE(s.C);
  CAPTURE(s.K);
  CAPTURE(s.H);
  CAPTURE(s.R);
  CAPTURE(s.stride_h);
  CAPTURE(x_nhwc);
  CAPTURE(y_nhwc);
  s.x_nhwc = x_nhwc;
  s.y_nhwc = y_nhwc;
  const auto x = random_vector<float>(s.N * s.C * s.H * s.W, 21 + s.C);
  const auto w = random_vector<float>(s.K * s.C * s.R * s.S, 22 + s.K);
  const auto bias = random_vector<float>(s.K, 23);
  const auto dy = random_vector<float>(s.N * s.K * s.P * s.Q, 24);
  const auto bias_d = to_double(bias);
  const auto ref = naive_conv(s, to_double(x), to_double(w), &bias_d, to_double(dy));
  const auto x_in = x_nhwc ? to_nhwc(x, s.N, s.C, s.H, s.W) : x;
  const auto dy_in = y_nhwc ? to_nhwc(dy, s.N, s.K, s.P, s.Q) : dy;

  auto y = nan_vector<float>(ref.y.size());
  sk::conv2d_fwd_cpu<float>(s, x_in.data(), w.data(), bias.data(), y.data());
  CHECK(max_scaled_error(y_nhwc ? from_nhwc(y, s.N, s.K, s.P, s.Q) : y, ref.y) <= tolerance<float>());

  auto dx = nan_vector<float>(ref.dx.size());
  sk::conv2d_bwd_data_cpu<float>(s, dy_in.data(), w.data(), dx.data());
  CHECK(max_scaled_error(x_nhwc ? from_nhwc(dx, s.N, s.C, s.H, s.W) : dx, ref.dx) <= tolerance<float>());

  auto dw = nan_vector<float>(ref.dw.size());
  auto dbias = nan_vector<float>(s.K);
  sk::conv2d_bwd_weight_cpu<float>(s, x_in.data(), dy_in.data(), dw.data(), dbias.data());
  CHECK(max_scaled_error(dw, ref.dw) <= tolerance<float>());
  CHECK(max_scaled_error(dbias, ref.dbias) <= tolerance<float>());
  dw = nan_vector<float>(ref.dw.size());  // without a bias: another primitive
  sk::conv2d_bwd_weight_cpu<float>(s, x_in.data(), dy_in.data(), dw.data(), nullptr);
  CHECK(max_scaled_error(dw, ref.dw) <= tolerance<float>());
}

}  // namespace

TEST_CASE("conv2d float kernels take channels-last buffers in every combination") {
  const std::initializer_list<int64_t> shapes[] = {
      // N  C   H   W   K  R  S sh sw ph pw dh dw  g
      {2, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // a width-16 layer1 conv: channels-last kernels
      {2, 16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},   // stride 2 into the next stage
      {2, 16, 9, 9, 32, 1, 1, 2, 2, 0, 0, 1, 1, 1},   // 1x1 stride 2 downsample
      {2, 8, 28, 28, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1},  // the same at a ResNet's 28x28, 14x14 and 7x7
      {2, 16, 14, 14, 32, 1, 1, 2, 2, 0, 0, 1, 1, 1},
      {2, 32, 7, 7, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1},
      {2, 4, 12, 12, 8, 1, 1, 2, 2, 0, 0, 1, 1, 1},   // 4 channels: channels-last buffers, blocked compute
      {3, 1, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // grayscale stem
      {2, 3, 10, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // RGB stem: blocked compute, channels-last buffers
      {2, 64, 5, 5, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1},  // into a 128-channel stage (blocked)
      {2, 20, 6, 6, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1},   // channels off the 8-wide vectors (blocked)
      {5, 16, 1, 1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},    // a tiny map: oneDNN, not the batch GEMM
  };
  for (const auto& v : shapes)
    for (int layouts = 1; layouts < 4; ++layouts) check_conv_layouts(make_shape(v), layouts & 1, layouts & 2);
}

TEST_CASE("channels-last is chosen for small channel counts only, and can be turned off") {
  CHECK(sk::conv2d_channels_last_cpu(make_shape({2, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK(sk::conv2d_channels_last_cpu(make_shape({2, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK(sk::conv2d_channels_last_cpu(make_shape({2, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK_FALSE(sk::conv2d_channels_last_cpu(make_shape({2, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK_FALSE(sk::conv2d_channels_last_cpu(make_shape({2, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK(sk::conv2d_channels_last_cpu(make_shape({2, 3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1})));  // RGB stem
  CHECK_FALSE(sk::conv2d_channels_last_cpu(make_shape({2, 20, 8, 8, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK_FALSE(sk::conv2d_channels_last_cpu(make_shape({2, 8, 7, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8})));  // groups
  sk::set_cpu_conv_channels_last(false);
  CHECK_FALSE(sk::conv2d_channels_last_cpu(make_shape({2, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  sk::set_cpu_conv_channels_last(true);
}

TEST_CASE("conv2d on tiny output maps takes the batch-GEMM path; larger maps and groups do not") {
  for (const auto& v : kTinyMapShapes) CHECK(sk::conv_small::applies(make_shape(v)));
  CHECK_FALSE(sk::conv_small::applies(make_shape({2, 8, 9, 9, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1})));
  CHECK_FALSE(sk::conv_small::applies(make_shape({2, 16, 3, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1})));  // 3x3 map
  CHECK_FALSE(sk::conv_small::applies(make_shape({2, 8, 2, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8})));    // depthwise
  CHECK(sk::conv_small::applies(make_shape({2, 16, 3, 3, 16, 3, 3, 1, 1, 0, 0, 1, 1, 1})));        // 1x1 map
}

TEST_CASE("conv2d_fwd_cpu<float> gives identical results when called from two threads at once") {
  const auto s = make_shape({8, 32, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1});
  const auto x = random_vector<float>(s.N * s.C * s.H * s.W, 1);
  const auto w = random_vector<float>(s.K * s.C * s.R * s.S, 2);
  std::vector<float> serial(s.N * s.K * s.P * s.Q), a(serial.size()), b(serial.size());
  sk::conv2d_fwd_cpu<float>(s, x.data(), w.data(), nullptr, serial.data());
  std::thread ta([&] { sk::conv2d_fwd_cpu<float>(s, x.data(), w.data(), nullptr, a.data()); });
  std::thread tb([&] { sk::conv2d_fwd_cpu<float>(s, x.data(), w.data(), nullptr, b.data()); });
  ta.join();
  tb.join();
  CHECK(a == serial);
  CHECK(b == serial);
}

TEST_CASE_TEMPLATE("conv2d kernels reject an inconsistent shape", T, float, double) {
  auto s = make_shape({1, 6, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1});
  s.groups = 4;  // 6 channels do not split into 4 groups
  std::vector<T> buf(1024);
  CHECK_THROWS_AS(sk::conv2d_fwd_cpu<T>(s, buf.data(), buf.data(), nullptr, buf.data()), std::invalid_argument);
  s = make_shape({1, 6, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1});
  s.P = 4;  // should be 5
  CHECK_THROWS_AS(sk::conv2d_bwd_data_cpu<T>(s, buf.data(), buf.data(), buf.data()), std::invalid_argument);
  if constexpr (std::is_same_v<T, double>) {  // channels-last buffers: the float kernels only
    s = make_shape({1, 6, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1});
    s.y_nhwc = true;
    CHECK_THROWS_AS(sk::conv2d_fwd_cpu<T>(s, buf.data(), buf.data(), nullptr, buf.data()), std::invalid_argument);
  }
}
