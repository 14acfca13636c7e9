// OpCase rows: elementwise ops with broadcasting, strided (permuted/sliced) inputs and scalars.
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;
using V = std::vector<Tensor>;

namespace {
// Inputs in (lo, hi): for log, sqrt, pow and division.
InputMaker uniform_in(std::vector<Shape> shapes, double lo, double hi) {
  return [shapes, lo, hi](size_t i, DType dt, Generator& g) {
    return add(mul(Tensor::rand(shapes[i], dt, &g), hi - lo), lo);
  };
}
// randn inputs kept at least `gap` away from 0 (for kinks at 0: relu, abs).
InputMaker away_from_zero(std::vector<Shape> shapes, double gap) {
  return [shapes, gap](size_t i, DType dt, Generator& g) {
    Tensor r = Tensor::randn(shapes[i], dt, &g);
    return add(r, mul(sign(r), gap));
  };
}
}  // namespace

SELFSUP_OP_CASES({
    {"add/same_shape", {{3, 4}, {3, 4}}, [](const V& x) { return add(x[0], x[1]); }},
    {"add/broadcast_rows", {{3, 4}, {4}}, [](const V& x) { return add(x[0], x[1]); }},
    {"add/broadcast_both", {{3, 1, 5}, {4, 1}}, [](const V& x) { return add(x[0], x[1]); }},
    {"add/permuted", {{4, 3}, {3, 4}}, [](const V& x) { return add(x[0].t(), x[1]); }},
    {"add/scalar", {{5}}, [](const V& x) { return add(x[0], 2.5); }},
    {"sub/broadcast", {{2, 3}, {2, 1}}, [](const V& x) { return sub(x[0], x[1]); }},
    {"mul/broadcast", {{2, 3, 4}, {3, 1}}, [](const V& x) { return mul(x[0], x[1]); }},
    {"mul/sliced", {{4, 6}, {4, 3}}, [](const V& x) { return mul(x[0].slice(1, 0, 6, 2), x[1]); }},
    {"mul/scalar", {{2, 2}}, [](const V& x) { return mul(x[0], -3.0); }},
    {"div/broadcast", {{3, 4}, {4}}, [](const V& x) { return div(x[0], x[1]); }, uniform_in({{3, 4}, {4}}, 0.5, 2.0)},
    {"pow/tensor", {{3, 3}, {3, 3}}, [](const V& x) { return pow(x[0], x[1]); }, uniform_in({{3, 3}, {3, 3}}, 0.5, 2.0)},
    {"pow/scalar", {{6}}, [](const V& x) { return pow(x[0], 2.7); }, uniform_in({{6}}, 0.5, 2.0)},
    {"neg/plain", {{4}}, [](const V& x) { return neg(x[0]); }},
    {"exp/plain", {{3, 3}}, [](const V& x) { return exp(x[0]); }},
    {"log/plain", {{3, 3}}, [](const V& x) { return log(x[0]); }, uniform_in({{3, 3}}, 0.5, 3.0)},
    {"sqrt/plain", {{7}}, [](const V& x) { return sqrt(x[0]); }, uniform_in({{7}}, 0.5, 3.0)},
    {"rsqrt/plain", {{7}}, [](const V& x) { return rsqrt(x[0]); }, uniform_in({{7}}, 0.5, 3.0)},
    {"abs/plain", {{8}}, [](const V& x) { return abs(x[0]); }, away_from_zero({{8}}, 0.05)},
    {"relu/permuted", {{3, 5}}, [](const V& x) { return relu(x[0].t()); }, away_from_zero({{3, 5}}, 0.05)},
    {"sigmoid/plain", {{3, 4}}, [](const V& x) { return sigmoid(x[0]); }},
    {"tanh/plain", {{3, 4}}, [](const V& x) { return tanh(x[0]); }},
    {"gelu/plain", {{3, 4}}, [](const V& x) { return gelu(x[0]); }},
    {"square/plain", {{5}}, [](const V& x) { return square(x[0]); }},
    {"clamp/plain", {{10}}, [](const V& x) { return clamp(x[0], -0.5, 0.5); },
     [](size_t, DType dt, Generator&) {  // values clear of the clamp bounds
       return Tensor::from_vector(std::vector<double>{-2, -0.9, -0.3, -0.1, 0.05, 0.2, 0.45, 0.7, 1.5, 3}, {10}).to(dt);
     }},
    {"maximum/broadcast", {{3, 4}, {4}}, [](const V& x) { return maximum(x[0], x[1]); }},
    {"minimum/plain", {{6}, {6}}, [](const V& x) { return minimum(x[0], x[1]); }},
    {"where/broadcast", {{3, 4}, {3, 4}, {4}},
     [](const V& x) { return where(gt(x[0], 0.0), x[1], x[2]); }, {}, {false, true, true}},
    {"permute/3d", {{2, 3, 4}}, [](const V& x) { return mul(x[0].permute({2, 0, 1}), 2.0); }},
    {"slice/step", {{5, 6}}, [](const V& x) { return x[0].slice(1, 1, 6, 2).slice(0, 1, 4); }},
    {"expand/rows", {{1, 4}}, [](const V& x) { return mul(x[0].expand({3, 4}), Tensor::arange(0, 12).reshape({3, 4}).to(x[0].dtype()).to(x[0].device())); }},
    {"view/reshape", {{2, 6}}, [](const V& x) { return mul(x[0].reshape({3, 4}), Tensor::arange(0, 12).reshape({3, 4}).to(x[0].dtype()).to(x[0].device())); }},
    {"cast/roundtrip", {{4}}, [](const V& x) { return mul(x[0].to(DType::f32).to(x[0].dtype()), 1.0); },
     {}, {}, {1e-3, 1e-3, 1e-3}},
});
