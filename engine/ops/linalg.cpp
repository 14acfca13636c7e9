// Matrix products. A transposed operand is passed to GEMM as a transpose flag with its leading dimension,
// so a.t() costs nothing; only operands whose last two dims are both strided get a contiguous copy.
// Under autocast (engine/autograd/autocast.h) a float32 product computes on bfloat16 operands with float32
// accumulation, and so does its backward: on the CPU kernels/bf16_api.h's GEMM on the float32 buffers, on CUDA
// cuBLAS's bfloat16 GEMM on cast copies.
#include "engine/autograd/autocast.h"
#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"
#include "kernels/bf16_api.h"

namespace selfsup {

using autograd::SavedTensor;
using Grads = std::vector<Tensor>;

namespace {

// How GEMM reads a (batch, rows, cols) operand: base tensor, transpose flag, leading dim, batch stride.
struct GemmOperand {
  Tensor t;
  bool trans;
  int64_t ld;
  int64_t batch_stride;
};

GemmOperand gemm_operand(const Tensor& x) {
  const int64_t r = x.size(1), c = x.size(2);
  const int64_t sr = x.stride(1), sc = x.stride(2);
  if (sc == 1 && (sr >= std::max<int64_t>(c, 1) || r == 1)) return {x, false, std::max<int64_t>(sr, c), x.stride(0)};
  if (sr == 1 && (sc >= std::max<int64_t>(r, 1) || c == 1)) return {x, true, std::max<int64_t>(sc, r), x.stride(0)};
  Tensor cx = x.contiguous();
  return {cx, false, std::max<int64_t>(c, 1), r * c};
}

// (B, M, K) x (B, K, N) -> (B, M, N); no autograd. Batch strides of 0 broadcast an operand.
Tensor bmm_raw(const Tensor& a, const Tensor& b, bool bf16) {
  if (bf16 && a.device().is_cuda()) return bmm_raw(a.to(DType::bf16), b.to(DType::bf16), false).to(DType::f32);
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  GemmOperand ga = gemm_operand(a), gb = gemm_operand(b);
  Tensor out = Tensor::empty({B, M, N}, a.dtype(), a.device());
  if (bf16) {
    kernels::gemm_batched_bf16_cpu(ga.trans, gb.trans, B, M, N, K, 1.0f, ga.t.data_ptr<float>(), ga.ld,
                                   ga.batch_stride, gb.t.data_ptr<float>(), gb.ld, gb.batch_stride, 0.0f,
                                   out.data_ptr<float>(), N, M * N);
    return out;
  }
  SELFSUP_KERNEL_CALL(a.device(), gemm_batched)(a.dtype(), ga.trans, gb.trans, B, M, N, K, 1.0, ga.t.raw_data(),
                                                ga.ld, ga.batch_stride, gb.t.raw_data(), gb.ld, gb.batch_stride, 0.0,
                                                out.raw_data(), N, M * N);
  return out;
}

void check_matmul_inputs(const Tensor& a, const Tensor& b, const char* op) {
  ops_detail::check_same_device(a, b, op);
  ops_detail::check_floating(a, op, "first operand");
  SELFSUP_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()), ")");
}

}  // namespace

Tensor bmm(const Tensor& a, const Tensor& b) {
  check_matmul_inputs(a, b, "bmm");
  SELFSUP_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D operands, got ", shape_str(a.sizes()), " and ",
                shape_str(b.sizes()));
  SELFSUP_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "bmm: shapes ", shape_str(a.sizes()), " and ",
                shape_str(b.sizes()), " cannot be multiplied (expected (B, M, K) and (B, K, N))");
  const bool bf16 = Autocast::bf16_for(a.dtype());
  Tensor out = bmm_raw(a, b, bf16);
  if (autograd::needs_grad({a, b})) {
    SavedTensor sa = a, sb = b;
    autograd::record("bmm", {a, b}, {out}, [sa, sb, bf16](const Grads& g) {
      Tensor x = sa.unpack("bmm"), y = sb.unpack("bmm");
      // The forward's precision, whatever autocast says when backward runs.
      AutocastGuard same(bf16 ? DType::bf16 : DType::f32);
      return Grads{bmm(g[0], y.transpose(1, 2)), bmm(x.transpose(1, 2), g[0])};
    });
  }
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul_inputs(a, b, "matmul");
  SELFSUP_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least one dimension, got ",
                shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  SELFSUP_CHECK(a.size(-1) == b.size(-2), "matmul: shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
                " cannot be multiplied (", a.size(-1), " != ", b.size(-2), ")");
  if (b.dim() == 2) {
    // (..., M, K) x (K, N): fold the leading dims into M.
    Shape lead(a.sizes().begin(), a.sizes().end() - 1);
    Tensor a2 = a.dim() == 2 ? a : a.reshape({-1, a.size(-1)});
    Tensor out = bmm(a2.unsqueeze(0), b.unsqueeze(0)).squeeze(0);
    lead.push_back(b.size(1));
    return a.dim() == 2 ? out : out.reshape(lead);
  }
  SELFSUP_CHECK(a.dim() == 3 && b.dim() == 3, "matmul: batched operands must both be 3-D (or the second 2-D), got ",
                shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  return bmm(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  SELFSUP_CHECK(weight.dim() == 2, "linear: weight must be (out_features, in_features), got ",
                shape_str(weight.sizes()));
  SELFSUP_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ", shape_str(x.sizes()),
                " does not match weight ", shape_str(weight.sizes()), " (expected last dim ", weight.size(1), ")");
  Tensor y = matmul(x, weight.t());
  if (!bias.defined()) return y;
  SELFSUP_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias of shape ", shape_str(bias.sizes()),
                " does not match weight ", shape_str(weight.sizes()));
  return add(y, bias);
}

}  // namespace selfsup
