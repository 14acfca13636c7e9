// OpCase rows: matrix products and convolution.
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;
using V = std::vector<Tensor>;

namespace {
Conv2dOptions conv(int64_t stride, int64_t pad, int64_t dil = 1, int64_t groups = 1) {
  Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {pad, pad};
  o.dilation = {dil, dil};
  o.groups = groups;
  return o;
}
ConvTranspose2dOptions deconv(int64_t stride, int64_t pad, int64_t out_pad = 0, int64_t dil = 1, int64_t groups = 1) {
  ConvTranspose2dOptions o;
  o.stride = {stride, stride};
  o.padding = {pad, pad};
  o.output_padding = {out_pad, out_pad};
  o.dilation = {dil, dil};
  o.groups = groups;
  return o;
}
}  // namespace

SELFSUP_OP_CASES({
    {"matmul/2d", {{3, 4}, {4, 5}}, [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul/transposed", {{4, 3}, {5, 4}}, [](const V& x) { return matmul(x[0].t(), x[1].t()); }},
    {"matmul/vector", {{3, 4}, {4}}, [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul/nd_x_2d", {{2, 3, 4}, {4, 2}}, [](const V& x) { return matmul(x[0], x[1]); }},
    {"matmul/batched", {{2, 3, 4}, {2, 4, 2}}, [](const V& x) { return matmul(x[0], x[1]); }},
    // K = 1024 summed terms per output: the float32 bound grows with them (engine_op_case.h).
    {"matmul/long_k", {{2, 1024}, {1024, 3}}, [](const V& x) { return matmul(x[0], x[1]); }, {}, {}, {},
     f32_ulps_for_terms(1024), f32_ulps_for_terms(1024)},
    {"bmm/transposed", {{2, 4, 3}, {2, 4, 2}}, [](const V& x) { return bmm(x[0].transpose(1, 2), x[1]); }},
    {"linear/bias", {{5, 4}, {3, 4}, {3}}, [](const V& x) { return linear(x[0], x[1], x[2]); }},
    {"linear/no_bias_3d", {{2, 3, 4}, {2, 4}}, [](const V& x) { return linear(x[0], x[1]); }},
    {"conv2d/basic", {{2, 3, 5, 5}, {4, 3, 3, 3}, {4}}, [](const V& x) { return conv2d(x[0], x[1], x[2]); }},
    {"conv2d/stride2_pad1", {{1, 2, 6, 5}, {3, 2, 3, 3}}, [](const V& x) { return conv2d(x[0], x[1], Tensor(), conv(2, 1)); }},
    {"conv2d/dilation2", {{1, 2, 7, 7}, {2, 2, 3, 3}}, [](const V& x) { return conv2d(x[0], x[1], Tensor(), conv(1, 2, 2)); }},
    {"conv2d/groups2", {{2, 4, 4, 4}, {6, 2, 3, 3}, {6}}, [](const V& x) { return conv2d(x[0], x[1], x[2], conv(1, 1, 1, 2)); }},
    {"conv2d/depthwise", {{1, 3, 5, 5}, {3, 1, 3, 3}}, [](const V& x) { return conv2d(x[0], x[1], Tensor(), conv(1, 1, 1, 3)); }},
    // 64 channels x 3 x 3 = 576 summed terms per output.
    {"conv2d/many_channels", {{1, 64, 4, 4}, {2, 64, 3, 3}}, [](const V& x) { return conv2d(x[0], x[1]); }, {}, {}, {},
     f32_ulps_for_terms(576), f32_ulps_for_terms(576)},
    // Maps of at most 4 positions (PIRL's and Jigsaw's tiles at layer3/4): one GEMM over the batch on the CPU.
    {"conv2d/tiny_map_2x2", {{6, 8, 2, 2}, {5, 8, 3, 3}, {5}}, [](const V& x) { return conv2d(x[0], x[1], x[2], conv(1, 1)); }},
    {"conv2d/tiny_map_1x1", {{4, 8, 1, 1}, {6, 8, 3, 3}}, [](const V& x) { return conv2d(x[0], x[1], Tensor(), conv(1, 1)); }},
    // conv_transpose2d: weight (Cin, Cout/groups, R, S); the decoder's 4x4 stride-2 upsampling among them.
    {"conv_transpose2d/basic", {{2, 3, 4, 4}, {3, 2, 3, 3}, {2}}, [](const V& x) { return conv_transpose2d(x[0], x[1], x[2]); }},
    {"conv_transpose2d/stride2_pad1_k4", {{1, 2, 3, 4}, {2, 3, 4, 4}, {3}},
     [](const V& x) { return conv_transpose2d(x[0], x[1], x[2], deconv(2, 1)); }},
    {"conv_transpose2d/output_padding", {{1, 2, 4, 3}, {2, 2, 3, 3}},
     [](const V& x) { return conv_transpose2d(x[0], x[1], Tensor(), deconv(2, 1, 1)); }},
    {"conv_transpose2d/dilation2", {{1, 2, 3, 3}, {2, 2, 3, 3}}, [](const V& x) { return conv_transpose2d(x[0], x[1], Tensor(), deconv(1, 1, 0, 2)); }},
    {"conv_transpose2d/groups2", {{2, 4, 3, 3}, {4, 3, 3, 3}, {6}},
     [](const V& x) { return conv_transpose2d(x[0], x[1], x[2], deconv(2, 0, 1, 1, 2)); }},
    {"conv_transpose2d/permuted_input", {{1, 4, 3, 2}, {2, 3, 2, 2}},
     [](const V& x) { return conv_transpose2d(x[0].permute({0, 3, 1, 2}), x[1], Tensor(), deconv(2, 0)); }},
    {"upsample/nearest_x2", {{2, 3, 3, 4}}, [](const V& x) { return upsample(x[0], 2, UpsampleMode::nearest); }},
    {"upsample/nearest_size", {{1, 2, 5, 3}}, [](const V& x) { return upsample(x[0], {7, 8}, UpsampleMode::nearest); }},
    {"upsample/bilinear_x2", {{2, 2, 3, 4}}, [](const V& x) { return upsample(x[0], 2, UpsampleMode::bilinear); }},
    {"upsample/bilinear_size", {{1, 2, 4, 5}}, [](const V& x) { return upsample(x[0], {7, 6}, UpsampleMode::bilinear); }},
    {"upsample/bilinear_align_corners", {{1, 1, 3, 4}}, [](const V& x) { return upsample(x[0], {5, 9}, UpsampleMode::bilinear, true); }},
    {"conv2d/1x1_permuted_input", {{2, 4, 4, 3}, {5, 3, 1, 1}}, [](const V& x) { return conv2d(x[0].permute({0, 3, 1, 2}), x[1]); }},
});
