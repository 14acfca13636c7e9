// OpCase rows: reductions and joining/indexing ops.
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;
using V = std::vector<Tensor>;

namespace {
Tensor idx(std::vector<int64_t> v, Shape s) { return Tensor::from_vector(v, s); }
}  // namespace

SELFSUP_OP_CASES({
    {"sum/all", {{3, 4}}, [](const V& x) { return sum(x[0]); }},
    {"sum/dim0", {{3, 4}}, [](const V& x) { return sum(x[0], {0}); }},
    {"sum/dims_keepdim", {{2, 3, 4}}, [](const V& x) { return sum(x[0], {0, 2}, true); }},
    {"sum/permuted", {{4, 3, 2}}, [](const V& x) { return sum(x[0].permute({2, 0, 1}), {1}); }},
    {"mean/dim", {{3, 5}}, [](const V& x) { return mean(x[0], {-1}); }},
    {"var/dim", {{4, 5}}, [](const V& x) { return var(x[0], {1}); }},
    {"var/all_biased", {{3, 3}}, [](const V& x) { return var(x[0], {}, 0); }},
    {"max/dim", {{4, 5}}, [](const V& x) { return max(x[0], 1).first; }},
    {"max/middle_keepdim", {{2, 5, 3}}, [](const V& x) { return max(x[0], 1, true).first; }},
    {"min/dim0", {{4, 3}}, [](const V& x) { return min(x[0], 0).first; }},
    {"logsumexp/last", {{3, 6}}, [](const V& x) { return logsumexp(x[0], -1); }},
    // 2048 terms in each logsumexp (and in the softmax normaliser of its gradient).
    {"logsumexp/wide", {{2, 2048}}, [](const V& x) { return logsumexp(x[0], 1); }, {}, {}, {},
     f32_ulps_for_terms(2048), f32_ulps_for_terms(2048)},
    {"logsumexp/middle", {{2, 4, 3}}, [](const V& x) { return logsumexp(x[0], 1, true); }},
    {"cat/dim1", {{2, 3}, {2, 2}}, [](const V& x) { return cat({x[0], x[1]}, 1); }},
    {"cat/dim0_strided", {{3, 2}, {1, 2}}, [](const V& x) { return cat({x[0].t().t(), x[1]}, 0); }},
    {"stack/dim1", {{2, 3}, {2, 3}}, [](const V& x) { return stack({x[0], x[1]}, 1); }},
    {"split/parts", {{5, 2}}, [](const V& x) {
       auto parts = split(x[0], 2, 0);
       return add(mul(parts[0], 2.0), sum(parts[2]));
     }},
    {"index_select/repeat", {{4, 3}}, [](const V& x) { return index_select(x[0], 0, idx({3, 0, 3, 1}, {4})); }},
    {"index_select/dim1", {{2, 5}}, [](const V& x) { return index_select(x[0], 1, idx({4, 4, 2}, {3})); }},
    {"gather/dim1", {{3, 4}}, [](const V& x) { return gather(x[0], 1, idx({0, 3, 1, 1, 2, 2}, {3, 2})); }},
    {"scatter_add/dim0", {{3, 2}, {4, 2}}, [](const V& x) {
       return scatter_add(x[0], 0, idx({0, 2, 2, 1, 0, 0, 1, 2}, {4, 2}), x[1]);
     }},
});
