// OpCase rows: the contrastive losses (float64 gradcheck through the streaming kernels).
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_op_case.h"

using namespace selfsup;
using namespace selfsup::testing;
using V = std::vector<Tensor>;

SELFSUP_OP_CASES({
    {"nt_xent/normalized", {{6, 4}}, [](const V& x) { return nt_xent(x[0], 0.5).loss; }},
    {"nt_xent/raw", {{4, 3}}, [](const V& x) { return nt_xent(x[0], 2.0, false).loss; }},
    {"info_nce/grad_to_k", {{3, 4}, {3, 4}, {5, 4}},
     [](const V& x) { return info_nce(x[0], x[1], x[2], 0.7, true).loss; }, {}, {true, true, false}},
    {"memory_bank_nce/plain", {{3, 4}, {6, 4}}, [](const V& x) {
       return memory_bank_nce(x[0], x[1], Tensor::from_vector(std::vector<int64_t>{5, 0, 2}, {3}),
                              Tensor::from_vector(std::vector<int64_t>{1, 3, 4}, {3}), 0.5).loss;
     }, {}, {true, false}},
});
