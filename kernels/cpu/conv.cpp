// 2-d convolution on the CPU, NCHW activations, weight (K, C/groups, R, S), optional bias (K).
//
// float: oneDNN convolution primitives, prepared once per shape and direction and kept in a thread-safe cache
// (creating one JIT-compiles kernels, milliseconds). oneDNN's fast direct kernels want blocked layouts
// (nChw16c ...), so by default the primitive picks its layouts (format_tag::any) and cached reorder primitives
// copy between the caller's NCHW buffers and per-thread blocked workspaces. Measured on ResNet shapes this is
// 2-3x faster than the plain-NCHW primitive (which falls back to im2col + GEMM) even with the copies, except for
// pointwise (1x1, stride 1) convolutions, which are GEMMs already, and backward-data with fewer than 8 input
// channels (the RGB stem), where blocking C=3 to 16 wastes most of the work; those keep NCHW. Activations whose
// channel count is a multiple of 8 but not of 16 (a width-8 ResNet) are blocked by 8 (nChw8c, AVX2 kernels)
// rather than padded to 16: padding halves the useful work and makes the reorders 2-3x slower. The forward
// with fewer than 16 input channels reads NCHW directly (oneDNN's first-layer kernels, no input reorder) where
// oneDNN has such a kernel for the channel count; where it would fall to im2col + GEMM instead (8 channels on
// AVX2), the input is blocked by 8.
// A plan whose layouts land on a reference kernel falls back to the primitive's choice
// (docs/cpu-dense-kernels.md).
//
// bf16 (autocast, kernels/bf16_api.h): where oneDNN has bfloat16 kernels (AVX512-BF16 / AMX) the plan's compute
// descriptors are bfloat16 for the inputs and float for the output, so the reorders that already convert NCHW to
// blocked layouts also convert the type; elsewhere the inputs are rounded to bfloat16 in float copies and the
// float plan runs on them (same numbers, no speedup).
//
// Channels-last (Conv2dShape::x_nhwc / y_nhwc): the caller's buffers may be (N, H, W, C). oneDNN's direct
// kernels read and write that layout themselves, so a convolution whose input and output are both
// channels-last needs no reorder at all; conv2d_channels_last_cpu says for which shapes that measured faster
// than blocked layouts with their reorders (up to 64 channels on AVX2, docs/cpu-dense-kernels.md). A buffer
// in either layout that the plan wants blocked goes through the same cached reorders as NCHW.
//
// Tiny output maps (at most 4 positions per image, groups 1): one GEMM over the whole batch instead of oneDNN's
// one GEMM per image (kernels/cpu/conv_small.cpp).
//
// double: the reference precision for gradient checks on small tensors: im2col + GEMM (OpenBLAS dgemm), simple
// and independent of oneDNN.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "kernels/cpu/conv_small.h"
#include "kernels/cpu/dnnl_common.h"
#include "kernels/bf16_api.h"
#include "kernels/kernel_api.h"

namespace selfsup::kernels {
namespace {

// layouts_ok: whether the caller takes channels-last buffers (the float kernels).
void validate(const Conv2dShape& s, const char* call, bool layouts_ok) {
  const auto out_size = [](int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
  };
  if ((s.x_nhwc || s.y_nhwc) && !layouts_ok)
    throw std::invalid_argument(std::string(call) + ": channels-last layouts are taken by the float kernels only");
  const bool ok = s.N >= 0 && s.C > 0 && s.K > 0 && s.R > 0 && s.S > 0 && s.groups > 0 && s.C % s.groups == 0 &&
                  s.K % s.groups == 0 && s.stride_h > 0 && s.stride_w > 0 && s.dil_h > 0 && s.dil_w > 0 &&
                  s.pad_h >= 0 && s.pad_w >= 0 && s.P > 0 && s.Q > 0 &&
                  s.P == out_size(s.H, s.R, s.stride_h, s.pad_h, s.dil_h) &&
                  s.Q == out_size(s.W, s.S, s.stride_w, s.pad_w, s.dil_w);
  if (!ok)
    throw std::invalid_argument(std::string(call) + ": inconsistent Conv2dShape (N=" + std::to_string(s.N) +
                                " C=" + std::to_string(s.C) + " K=" + std::to_string(s.K) +
                                " groups=" + std::to_string(s.groups) + " P=" + std::to_string(s.P) +
                                " Q=" + std::to_string(s.Q) + ")");
}

int64_t weight_numel(const Conv2dShape& s) { return s.K * (s.C / s.groups) * s.R * s.S; }

// ---------------------------------------------------------------- float: oneDNN
using dnnl::memory;
using Tag = memory::format_tag;
namespace du = dnnl_util;

enum class Dir : int64_t { fwd, bwd_data, bwd_weight };

// Everything that changes the primitive: the shape, the direction, whether there is a bias and whether the
// inputs are computed in bfloat16 (native bf16).
using ConvKey = std::array<int64_t, 17>;

ConvKey conv_key(const Conv2dShape& s, Dir dir, bool bias, bool bf16) {
  return {s.N,     s.C,     s.H,      s.W, s.K, s.R, s.S, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h,
          s.dil_w, s.groups, s.P,     s.Q,
          int64_t(dir) * 4 + int64_t(bias) * 2 + int64_t(bf16) + int64_t(s.x_nhwc) * 16 + int64_t(s.y_nhwc) * 32};
}

// One primitive argument: the caller's plain buffer (user) and, when the primitive wants another layout
// (impl), the cached reorder between them (user -> impl for inputs, impl -> user for outputs).
struct ConvArg {
  int arg;  // DNNL_ARG_*
  bool output;
  memory::desc user, impl;
  dnnl::reorder reorder;  // empty when user == impl
  memory::desc reorder_scratch;
};

struct ConvPlan {
  dnnl::primitive primitive;
  std::string impl;  // oneDNN's implementation name, e.g. "jit:avx512_core"
  memory::desc scratch;
  std::vector<ConvArg> args;  // in the order run_plan receives the pointers
};

// 8-wide channel blocks (below) on x86 only: oneDNN's x86 kernels (SSE4.1 to AVX-512) all take them; elsewhere
// a forced layout could land on a reference implementation.
#if defined(__x86_64__)
constexpr bool kEightWideBlocks = true;
#else
constexpr bool kEightWideBlocks = false;
#endif

// The layouts a plan asks oneDNN for, per tensor: the caller's plain ones (user) where that measured faster,
// else blocked (see the file comment and docs/cpu-dense-kernels.md for the numbers).
struct ConvLayouts {
  memory::desc x, w, y;
};

// The same tensor, layout left to the primitive.
memory::desc any(const memory::desc& d) { return memory::desc(d.dims(), d.data_type(), Tag::any); }

// first_layer: whether a forward with fewer than 16 input channels reads the plain input (see plan_for).
ConvLayouts choose_layouts(const Conv2dShape& s, Dir dir, const memory::desc& x_user, const memory::desc& w_user,
                           const memory::desc& y_user, bool first_layer = true) {
  // nChw8c for 8, 24, 40, ... channels, which the AVX-512 kernels would pad to 16-wide blocks.
  const auto blocked = [&](const memory::desc& d, int64_t channels) {
    const bool by8 = kEightWideBlocks && channels % 16 != 0 && channels % 8 == 0;
    return by8 ? memory::desc(d.dims(), d.data_type(), Tag::nChw8c) : any(d);
  };
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                         s.pad_w == 0 && s.groups == 1;
  if (pointwise || (dir == Dir::bwd_data && s.groups == 1 && s.C < 8)) return {x_user, w_user, y_user};
  // Forward with few input channels: oneDNN's first-layer kernels read plain NCHW input directly (no input
  // reorder) and write 16-wide blocks. Forcing 8-wide output blocks here selects a reference kernel.
  if (first_layer && dir == Dir::fwd && s.groups == 1 && s.C < 16) return {x_user, any(w_user), any(y_user)};
  return {blocked(x_user, s.C), any(w_user), blocked(y_user, s.K)};
}

dnnl::primitive_attr user_scratchpad() {
  // With a caller-provided scratchpad one primitive can run on several threads at once.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

ConvArg make_arg(int arg, bool output, const memory::desc& user, const memory::desc& impl) {
  ConvArg a{arg, output, user, impl, {}, {}};
  if (user != impl) {
    auto& eng = du::cpu_engine();
    auto pd = output ? dnnl::reorder::primitive_desc(eng, impl, eng, user, user_scratchpad())
                     : dnnl::reorder::primitive_desc(eng, user, eng, impl, user_scratchpad());
    a.reorder = dnnl::reorder(pd);
    a.reorder_scratch = pd.scratchpad_desc();
  }
  return a;
}

// The caller's buffers as oneDNN memory descriptors.
struct UserDescs {
  memory::desc x, w, y, b;
};

using DataType = memory::data_type;

// Element types of x, w and y: the caller's buffers are all float; a native bf16 plan computes on bfloat16
// inputs (x and w forward, dy and w backward-data, x and dy backward-weight) and writes float outputs.
struct ConvTypes {
  DataType x, w, y;
};

ConvTypes compute_types(Dir dir, bool bf16) {
  const auto f = DataType::f32, b = bf16 ? DataType::bf16 : DataType::f32;
  if (dir == Dir::fwd) return {b, b, f};
  if (dir == Dir::bwd_data) return {f, b, b};
  return {b, f, b};
}

UserDescs user_descs(const Conv2dShape& s, const ConvTypes& t = {DataType::f32, DataType::f32, DataType::f32}) {
  // Grouped weights as (G, K/G, C/G, R, S): the same bytes as the caller's (K, C/G, R, S).
  const memory::dims w_dims = s.groups == 1 ? memory::dims{s.K, s.C, s.R, s.S}
                                            : memory::dims{s.groups, s.K / s.groups, s.C / s.groups, s.R, s.S};
  return {memory::desc({s.N, s.C, s.H, s.W}, t.x, s.x_nhwc ? Tag::nhwc : Tag::nchw),
          memory::desc(w_dims, t.w, s.groups == 1 ? Tag::oihw : Tag::goihw),
          memory::desc({s.N, s.K, s.P, s.Q}, t.y, s.y_nhwc ? Tag::nhwc : Tag::nchw),
          memory::desc({s.K}, DataType::f32, Tag::x)};
}

// The backward primitives' forward hint of a native bf16 plan: bfloat16 throughout (the forward's output type
// does not matter for the hint); a float tensor's layout is left to the primitive.
memory::desc hint_desc(const memory::desc& d, bool bf16) {
  if (!bf16 || d.data_type() == DataType::bf16) return d;
  return memory::desc(d.dims(), DataType::bf16, Tag::any);
}

// u: the caller's float buffers; layouts: what the primitive computes on (their types are the compute types).
ConvPlan make_plan(const Conv2dShape& s, Dir dir, bool bias, const UserDescs& u, const ConvLayouts& layouts) {
  const memory::desc &x_user = u.x, &w_user = u.w, &y_user = u.y, &b_user = u.b, no_bias;
  const memory::desc &x_any = layouts.x, &w_any = layouts.w, &y_any = layouts.y;
  // oneDNN takes dilation minus one; right padding equal to the left one gives the same P, Q (floor division).
  const memory::dims strides{s.stride_h, s.stride_w}, dil{s.dil_h - 1, s.dil_w - 1}, pad{s.pad_h, s.pad_w};
  const auto algo = dnnl::algorithm::convolution_direct;
  auto& eng = du::cpu_engine();
  const auto attr = user_scratchpad();

  const bool bf16 = x_any.data_type() == DataType::bf16 || y_any.data_type() == DataType::bf16;
  const bool hint_only = bf16 && dir != Dir::fwd;
  const dnnl::convolution_forward::primitive_desc fwd_pd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, hint_desc(x_any, hint_only),
                                      hint_desc(w_any, hint_only), bias ? b_user : no_bias,
                                      hint_desc(y_any, hint_only), strides, dil, pad, pad),
      attr, eng);
  ConvPlan plan;
  if (dir == Dir::fwd) {
    plan.primitive = dnnl::convolution_forward(fwd_pd);
    plan.impl = fwd_pd.impl_info_str();
    plan.scratch = fwd_pd.scratchpad_desc();
    plan.args = {make_arg(DNNL_ARG_SRC, false, x_user, fwd_pd.src_desc()),
                 make_arg(DNNL_ARG_WEIGHTS, false, w_user, fwd_pd.weights_desc())};
    if (bias) plan.args.push_back(make_arg(DNNL_ARG_BIAS, false, b_user, b_user));
    plan.args.push_back(make_arg(DNNL_ARG_DST, true, y_user, fwd_pd.dst_desc()));
  } else if (dir == Dir::bwd_data) {
    const dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(algo, x_any, w_any, y_any, strides, dil, pad, pad), attr, eng, fwd_pd);
    plan.primitive = dnnl::convolution_backward_data(pd);
    plan.impl = pd.impl_info_str();
    plan.scratch = pd.scratchpad_desc();
    plan.args = {make_arg(DNNL_ARG_DIFF_DST, false, y_user, pd.diff_dst_desc()),
                 make_arg(DNNL_ARG_WEIGHTS, false, w_user, pd.weights_desc()),
                 make_arg(DNNL_ARG_DIFF_SRC, true, x_user, pd.diff_src_desc())};
  } else {
    const dnnl::convolution_backward_weights::primitive_desc pd(
        dnnl::convolution_backward_weights::desc(algo, x_any, w_any, bias ? b_user : no_bias, y_any, strides, dil,
                                                 pad, pad),
        attr, eng, fwd_pd);
    plan.primitive = dnnl::convolution_backward_weights(pd);
    plan.impl = pd.impl_info_str();
    plan.scratch = pd.scratchpad_desc();
    plan.args = {make_arg(DNNL_ARG_SRC, false, x_user, pd.src_desc()),
                 make_arg(DNNL_ARG_DIFF_DST, false, y_user, pd.diff_dst_desc()),
                 make_arg(DNNL_ARG_DIFF_WEIGHTS, true, w_user, pd.diff_weights_desc())};
    if (bias) plan.args.push_back(make_arg(DNNL_ARG_DIFF_BIAS, true, b_user, pd.diff_bias_desc()));
  }
  return plan;
}

// Whether oneDNN's channels-last direct kernels are used for `s` at all: channel counts in whole AVX2 vectors,
// or the one input channel of a grayscale stem. With other counts oneDNN 2.6's channels-last kernels gave
// wrong downsample weight gradients in tests/models' ResNet fixtures and hung on 3 input channels; shapes
// with channels-last buffers that fail this compute blocked, through reorders.
bool channels_last_kernels(const Conv2dShape& s) {
  return s.groups == 1 && (s.C % 8 == 0 || s.C == 1) && s.K % 8 == 0;
}

// The plan with the measured layout rules; should a forced layout make oneDNN fall back to a reference
// kernel (a CPU or oneDNN version where the rule does not hold: 1000x slower), the primitive's own choice.
// A native bf16 plan (bf16 true) has the same layout rules, on the compute types.
ConvPlan plan_for(const Conv2dShape& s, Dir dir, bool bias, bool bf16) {
  const UserDescs u = user_descs(s), c = user_descs(s, compute_types(dir, bf16));
  // Channels-last compute where the output is channels-last and the kernels are trusted for the shape:
  // oneDNN's direct kernels take the activations as they are (an NCHW input is reordered to nhwc).
  if (s.y_nhwc && !bf16 && channels_last_kernels(s)) {
    const ConvLayouts nhwc{memory::desc(c.x.dims(), c.x.data_type(), Tag::nhwc), any(c.w), c.y};
    ConvPlan plan = make_plan(s, dir, bias, u, nhwc);
    if (plan.impl.rfind("jit", 0) == 0) return plan;
  }
  ConvPlan plan = make_plan(s, dir, bias, u, choose_layouts(s, dir, c.x, c.w, c.y));
  // oneDNN's first-layer kernels take plain input only below one vector of channels: 16 with AVX-512, 8 with
  // AVX2. With 8 channels on AVX2 (a width-8 ResNet's layer1) the plain-input plan lands on im2col + GEMM,
  // which measured 3-4x slower than the blocked kernel with its input reorder.
  if (dir == Dir::fwd && s.C % 8 == 0 && plan.impl.find("gemm") != std::string::npos) {
    ConvPlan blocked = make_plan(s, dir, bias, u, choose_layouts(s, dir, c.x, c.w, c.y, false));
    if (blocked.impl.rfind("jit", 0) == 0) plan = std::move(blocked);
  }
  if (plan.impl.rfind("ref", 0) == 0) plan = make_plan(s, dir, bias, u, {any(c.x), any(c.w), any(c.y)});
  return plan;
}

// Workspace slots: one per argument (at most 4), then the primitive's and the reorders' scratchpads.
constexpr int kPrimitiveScratchSlot = 4;
constexpr int kReorderScratchSlot = 5;

void run_reorder(const ConvArg& a, const memory& from, const memory& to) {
  auto& eng = du::cpu_engine();
  std::unordered_map<int, memory> args{{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
  if (a.reorder_scratch.get_size() > 0)
    args[DNNL_ARG_SCRATCHPAD] =
        memory(a.reorder_scratch, eng, du::workspace(kReorderScratchSlot, a.reorder_scratch.get_size()));
  a.reorder.execute(du::thread_stream(), args);
}

// ptrs[i] is the caller's buffer for plan.args[i].
void run_plan(const ConvPlan& plan, const std::vector<void*>& ptrs) {
  auto& eng = du::cpu_engine();
  auto& stream = du::thread_stream();
  std::unordered_map<int, memory> args;
  std::vector<std::pair<const ConvArg*, memory>> outputs_to_copy;  // (arg, caller's memory)
  for (size_t i = 0; i < plan.args.size(); ++i) {
    const ConvArg& a = plan.args[i];
    memory user(a.user, eng, ptrs[i]);
    if (!a.reorder) {
      args[a.arg] = user;
      continue;
    }
    memory impl(a.impl, eng, du::workspace(int(i), a.impl.get_size()));
    if (a.output) {
      outputs_to_copy.emplace_back(&a, user);
    } else {
      run_reorder(a, user, impl);
    }
    args[a.arg] = impl;
  }
  if (const size_t bytes = plan.scratch.get_size(); bytes > 0)
    args[DNNL_ARG_SCRATCHPAD] = memory(plan.scratch, eng, du::workspace(kPrimitiveScratchSlot, bytes));
  plan.primitive.execute(stream, args);
  for (auto& [a, user] : outputs_to_copy) run_reorder(*a, args.at(a->arg), user);
  stream.wait();
}

// ptrs as run_plan's. bf16 without native bfloat16 kernels: the two inputs (ptrs[0], ptrs[1], numel n0 and
// n1) are replaced by bfloat16-rounded copies and the float plan runs.
void conv_dnnl(const char* call, const Conv2dShape& s, Dir dir, bool bias, std::vector<void*> ptrs, bool bf16 = false,
               int64_t n0 = 0, int64_t n1 = 0) {
  static du::PlanCache<ConvKey, ConvPlan> cache;
  const bool native = bf16 && cpu_native_bf16();
  if (bf16 && !native) {
    ptrs[0] = const_cast<float*>(du::rounded_to_bf16(du::kRoundedSlotA, static_cast<const float*>(ptrs[0]), n0));
    ptrs[1] = const_cast<float*>(du::rounded_to_bf16(du::kRoundedSlotB, static_cast<const float*>(ptrs[1]), n1));
  }
  du::checked(call, [&] {
    const auto plan = cache.get(conv_key(s, dir, bias, native), [&] { return plan_for(s, dir, bias, native); });
    run_plan(*plan, ptrs);
  });
}

// ---------------------------------------------------------------- double: im2col + GEMM reference
// col (C/G * R * S, P * Q) from one image's group x (C/G, H, W); taps outside the image read 0.
template <typename T>
void im2col(const Conv2dShape& s, const T* x, T* col) {
  const int64_t Cg = s.C / s.groups;
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        for (int64_t p = 0; p < s.P; ++p) {
          T* row = col + ((c * s.R + r) * s.S + t) * s.P * s.Q + p * s.Q;
          const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
          for (int64_t q = 0; q < s.Q; ++q) {
            const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
            row[q] = (h >= 0 && h < s.H && w >= 0 && w < s.W) ? x[(c * s.H + h) * s.W + w] : T(0);
          }
        }
}

// The adjoint of im2col: dx (C/G, H, W) += scatter of col.
template <typename T>
void col2im_add(const Conv2dShape& s, const T* col, T* dx) {
  const int64_t Cg = s.C / s.groups;
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        for (int64_t p = 0; p < s.P; ++p) {
          const T* row = col + ((c * s.R + r) * s.S + t) * s.P * s.Q + p * s.Q;
          const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
          if (h < 0 || h >= s.H) continue;
          for (int64_t q = 0; q < s.Q; ++q) {
            const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
            if (w >= 0 && w < s.W) dx[(c * s.H + h) * s.W + w] += row[q];
          }
        }
}

// Per image n and group g, with Kg = K/G, CRS = C/G * R * S, PQ = P * Q:
//   fwd        y(Kg, PQ)    = w_g(Kg, CRS) col(CRS, PQ) (+ bias)
//   bwd_data   col(CRS, PQ) = w_g^T dy(Kg, PQ), then col2im
//   bwd_weight dw_g(Kg, CRS) += dy(Kg, PQ) col^T
template <typename T>
void conv_fwd_ref(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, CRS = Cg * s.R * s.S, PQ = s.P * s.Q;
  std::vector<T> col(CRS * PQ);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(s, x + (n * s.C + g * Cg) * s.H * s.W, col.data());
      T* y_ng = y + (n * s.K + g * Kg) * PQ;
      gemm_cpu<T>(false, false, Kg, PQ, CRS, T(1), w + g * Kg * CRS, CRS, col.data(), PQ, T(0), y_ng, PQ);
      if (bias)
        for (int64_t k = 0; k < Kg; ++k)
          for (int64_t i = 0; i < PQ; ++i) y_ng[k * PQ + i] += bias[g * Kg + k];
    }
}

template <typename T>
void conv_bwd_data_ref(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, CRS = Cg * s.R * s.S, PQ = s.P * s.Q;
  std::vector<T> col(CRS * PQ);
  std::fill(dx, dx + s.N * s.C * s.H * s.W, T(0));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t g = 0; g < s.groups; ++g) {
      gemm_cpu<T>(true, false, CRS, PQ, Kg, T(1), w + g * Kg * CRS, CRS, dy + (n * s.K + g * Kg) * PQ, PQ, T(0),
                  col.data(), PQ);
      col2im_add(s, col.data(), dx + (n * s.C + g * Cg) * s.H * s.W);
    }
}

template <typename T>
void conv_bwd_weight_ref(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups, CRS = Cg * s.R * s.S, PQ = s.P * s.Q;
  std::vector<T> col(CRS * PQ);
  std::fill(dw, dw + s.K * CRS, T(0));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(s, x + (n * s.C + g * Cg) * s.H * s.W, col.data());
      gemm_cpu<T>(false, true, Kg, CRS, PQ, T(1), dy + (n * s.K + g * Kg) * PQ, PQ, col.data(), PQ, T(1),
                  dw + g * Kg * CRS, CRS);
    }
  if (!dbias) return;
  for (int64_t k = 0; k < s.K; ++k) {
    T sum = 0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t i = 0; i < PQ; ++i) sum += dy[(n * s.K + k) * PQ + i];
    dbias[k] = sum;
  }
}

}  // namespace

namespace {
std::atomic<bool> g_channels_last{[] {
  const char* v = std::getenv("SELFSUP_CONV_LAYOUT");
  return !(v && std::string(v) == "nchw");
}()};
}  // namespace

void set_cpu_conv_channels_last(bool on) { g_channels_last = on; }

bool conv2d_channels_last_cpu(const Conv2dShape& s) {
  // Measured with oneDNN 2.6 on AVX2 (docs/cpu-dense-kernels.md): channels-last is 1.1-2.7x faster than blocked
  // layouts plus their reorders up to 64 channels on maps up to 32x32, equal at 128 channels and 5-10% slower
  // at 256 and at 64 channels on 56x56, where the blocked kernels win by more than the reorders cost.
  // An RGB stem computes blocked (channels_last_kernels) but still writes channels-last, so that the network
  // after it is channels-last throughout instead of converting the stem's output at the first block.
  const int64_t channels = std::max(s.C, s.K);
  const bool stem = s.groups == 1 && s.C < 8 && s.K % 8 == 0;
  return g_channels_last && (channels_last_kernels(s) || stem) &&
         (channels <= 32 || (channels <= 64 && s.H * s.W <= 32 * 32)) && !conv_small::applies(s);
}

template <typename T>
void conv2d_fwd_cpu(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  validate(s, "conv2d_fwd_cpu", std::is_same_v<T, float>);
  if (s.N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (!s.x_nhwc && !s.y_nhwc && conv_small::applies(s)) return conv_small::fwd(s, x, w, bias, y);
    std::vector<void*> ptrs{const_cast<T*>(x), const_cast<T*>(w)};
    if (bias) ptrs.push_back(const_cast<T*>(bias));
    ptrs.push_back(y);
    conv_dnnl("conv2d_fwd_cpu<float>", s, Dir::fwd, bias != nullptr, ptrs);
  } else {
    conv_fwd_ref(s, x, w, bias, y);
  }
}

template <typename T>
void conv2d_bwd_data_cpu(const Conv2dShape& s, const T* dy, const T* w, T* dx) {
  validate(s, "conv2d_bwd_data_cpu", std::is_same_v<T, float>);
  if (s.N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (!s.x_nhwc && !s.y_nhwc && conv_small::applies(s)) return conv_small::bwd_data(s, dy, w, dx);
    conv_dnnl("conv2d_bwd_data_cpu<float>", s, Dir::bwd_data, false, {const_cast<T*>(dy), const_cast<T*>(w), dx});
  } else {
    conv_bwd_data_ref(s, dy, w, dx);
  }
}

template <typename T>
void conv2d_bwd_weight_cpu(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias) {
  validate(s, "conv2d_bwd_weight_cpu", std::is_same_v<T, float>);
  if (s.N == 0) {
    // No samples: the gradients are exactly zero (and oneDNN rejects empty tensors).
    std::fill(dw, dw + weight_numel(s), T(0));
    if (dbias) std::fill(dbias, dbias + s.K, T(0));
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!s.x_nhwc && !s.y_nhwc && conv_small::applies(s)) return conv_small::bwd_weight(s, x, dy, dw, dbias);
    std::vector<void*> ptrs{const_cast<T*>(x), const_cast<T*>(dy), dw};
    if (dbias) ptrs.push_back(dbias);
    conv_dnnl("conv2d_bwd_weight_cpu<float>", s, Dir::bwd_weight, dbias != nullptr, ptrs);
  } else {
    conv_bwd_weight_ref(s, x, dy, dw, dbias);
  }
}

template void conv2d_fwd_cpu<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void conv2d_fwd_cpu<double>(const Conv2dShape&, const double*, const double*, const double*, double*);
template void conv2d_bwd_data_cpu<float>(const Conv2dShape&, const float*, const float*, float*);
template void conv2d_bwd_data_cpu<double>(const Conv2dShape&, const double*, const double*, double*);
template void conv2d_bwd_weight_cpu<float>(const Conv2dShape&, const float*, const float*, float*, float*);
template void conv2d_bwd_weight_cpu<double>(const Conv2dShape&, const double*, const double*, double*, double*);

// ---------------------------------------------------------------- bf16 (kernels/bf16_api.h)
void conv2d_fwd_bf16_cpu(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y) {
  validate(s, "conv2d_fwd_bf16_cpu", false);
  if (s.N == 0) return;
  std::vector<void*> ptrs{const_cast<float*>(x), const_cast<float*>(w)};
  if (bias) ptrs.push_back(const_cast<float*>(bias));
  ptrs.push_back(y);
  conv_dnnl("conv2d_fwd_bf16_cpu", s, Dir::fwd, bias != nullptr, ptrs, true, s.N * s.C * s.H * s.W,
            weight_numel(s));
}

void conv2d_bwd_data_bf16_cpu(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  validate(s, "conv2d_bwd_data_bf16_cpu", false);
  if (s.N == 0) return;
  conv_dnnl("conv2d_bwd_data_bf16_cpu", s, Dir::bwd_data, false,
            {const_cast<float*>(dy), const_cast<float*>(w), dx}, true, s.N * s.K * s.P * s.Q, weight_numel(s));
}

void conv2d_bwd_weight_bf16_cpu(const Conv2dShape& s, const float* x, const float* dy, float* dw, float* dbias) {
  validate(s, "conv2d_bwd_weight_bf16_cpu", false);
  if (s.N == 0) return conv2d_bwd_weight_cpu<float>(s, x, dy, dw, dbias);  // zeros, as the float kernel
  std::vector<void*> ptrs{const_cast<float*>(x), const_cast<float*>(dy), dw};
  if (dbias) ptrs.push_back(dbias);
  conv_dnnl("conv2d_bwd_weight_bf16_cpu", s, Dir::bwd_weight, dbias != nullptr, ptrs, true, s.N * s.C * s.H * s.W,
            s.N * s.K * s.P * s.Q);
}

}  // namespace selfsup::kernels
