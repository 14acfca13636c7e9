// OpCase rows: pooling, batch norm, softmax family, losses, normalisation.
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;
using V = std::vector<Tensor>;

namespace {
Pool2dOptions pool(int64_t k, int64_t s, int64_t p, bool ceil_mode = false, bool include_pad = true) {
  Pool2dOptions o;
  o.kernel = {k, k};
  o.stride = {s, s};
  o.padding = {p, p};
  o.ceil_mode = ceil_mode;
  o.count_include_pad = include_pad;
  return o;
}
// Running statistics in the parameters' dtype (float32 for a bfloat16 input: the CUDA bf16 comparison).
Tensor bn_train(const V& x, int64_t C) {
  const DType p = batch_norm_param_dtype(x[0].dtype());
  Tensor rm = Tensor::zeros({C}, p, x[0].device()), rv = Tensor::ones({C}, p, x[0].device());
  return batch_norm(x[0], rm, rv, x[1], x[2], /*training=*/true, 0.1, 1e-5);
}
// relu(bn(x) + residual) fused; inputs (x, residual, weight, bias), or (x, weight, bias) without residual.
Tensor bn_add_relu(const V& x, bool has_res, bool training = true) {
  const int64_t C = x[0].size(1);
  const DType p = batch_norm_param_dtype(x[0].dtype());
  Tensor rm = Tensor::full({C}, 0.2, p, x[0].device()), rv = Tensor::full({C}, 1.5, p, x[0].device());
  const size_t w = has_res ? 2 : 1;
  return batch_norm_add_relu(x[0], has_res ? x[1] : Tensor(), rm, rv, x[w], x[w + 1], training, 0.1, 1e-5);
}
Tensor targets(std::vector<int64_t> v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }
}  // namespace

SELFSUP_OP_CASES({
    {"max_pool2d/k3s2p1", {{2, 2, 7, 6}}, [](const V& x) { return max_pool2d(x[0], pool(3, 2, 1)); }},
    {"max_pool2d/k2s2_ceil", {{1, 3, 5, 5}}, [](const V& x) { return max_pool2d(x[0], pool(2, 2, 0, true)); }},
    {"avg_pool2d/k3s2p1", {{2, 2, 6, 7}}, [](const V& x) { return avg_pool2d(x[0], pool(3, 2, 1)); }},
    {"avg_pool2d/exclude_pad_ceil", {{1, 2, 5, 5}}, [](const V& x) { return avg_pool2d(x[0], pool(2, 2, 1, true, false)); }},
    {"adaptive_avg_pool2d/global", {{2, 3, 4, 5}}, [](const V& x) { return adaptive_avg_pool2d(x[0], {1, 1}); }},
    {"adaptive_avg_pool2d/uneven", {{1, 2, 5, 7}}, [](const V& x) { return adaptive_avg_pool2d(x[0], {2, 3}); }},
    {"batch_norm/train_4d", {{4, 3, 2, 3}, {3}, {3}}, [](const V& x) { return bn_train(x, 3); }},
    {"batch_norm/train_2d", {{6, 4}, {4}, {4}}, [](const V& x) { return bn_train(x, 4); }},
    {"batch_norm/train_no_affine", {{3, 2, 2, 2}}, [](const V& x) {
       return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true);
     }},
    {"batch_norm/eval", {{3, 2, 2, 2}, {2}, {2}}, [](const V& x) {
       const DType p = batch_norm_param_dtype(x[0].dtype());
       Tensor rm = Tensor::full({2}, 0.3, p, x[0].device()), rv = Tensor::full({2}, 1.7, p, x[0].device());
       return batch_norm(x[0], rm, rv, x[1], x[2], /*training=*/false);
     }},
    // The fused BN + add + ReLU: short rows (S = 6 and 1) and a long row (S = 40 >= 16, the CPU kernel's
    // per-channel streaming path), with and without the residual, and eval (composed from running stats).
    {"batch_norm_add_relu/relu_4d", {{4, 3, 2, 3}, {3}, {3}}, [](const V& x) { return bn_add_relu(x, false); }},
    {"batch_norm_add_relu/add_4d", {{4, 3, 2, 3}, {4, 3, 2, 3}, {3}, {3}}, [](const V& x) { return bn_add_relu(x, true); }},
    {"batch_norm_add_relu/add_2d", {{6, 4}, {6, 4}, {4}, {4}}, [](const V& x) { return bn_add_relu(x, true); }},
    {"batch_norm_add_relu/add_long_rows", {{2, 3, 5, 8}, {2, 3, 5, 8}, {3}, {3}}, [](const V& x) {
       return bn_add_relu(x, true);
     }},
    {"batch_norm_add_relu/eval", {{3, 2, 2, 2}, {3, 2, 2, 2}, {2}, {2}}, [](const V& x) {
       return bn_add_relu(x, true, /*training=*/false);
     }},
    {"softmax/last", {{3, 5}}, [](const V& x) { return softmax(x[0], -1); }},
    {"softmax/middle", {{2, 4, 3}}, [](const V& x) { return softmax(x[0], 1); }},
    {"log_softmax/last", {{4, 6}}, [](const V& x) { return log_softmax(x[0], 1); }},
    {"log_softmax/dim0_permuted", {{5, 3}}, [](const V& x) { return log_softmax(x[0].t(), 0); }},
    {"cross_entropy/plain", {{4, 5}}, [](const V& x) { return cross_entropy(x[0], targets({1, 0, 4, 4})); }},
    {"cross_entropy/label_smoothing", {{3, 6}}, [](const V& x) { return cross_entropy(x[0], targets({5, 2, 0}), 0.1); }},
    {"mse_loss/plain", {{3, 4}, {3, 4}}, [](const V& x) { return mse_loss(x[0], x[1]); }},
    {"normalize/rows", {{4, 5}}, [](const V& x) { return normalize(x[0], 1); }},
    {"normalize/dim0", {{3, 2, 2}}, [](const V& x) { return normalize(x[0], 0); }},
});
