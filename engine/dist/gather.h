// Global negatives: gather every rank's embeddings with a backward that returns to each rank the gradient
// of its own rows summed over every rank's loss, and SimCLR's NT-Xent of the local rows against all columns.
#pragma once
#include "engine/dist/communicator.h"
#include "engine/ops/contrastive.h"

namespace selfsup::dist {

// x (n, ...) on every rank -> (W n, ...), rank r's rows at [r n, (r + 1) n). Differentiable: the gradient
// G (W n, ...) arriving on each rank is reduce-scattered (summed over ranks, each keeps its own n rows),
// because rank s's loss depends on rank r's rows through s's gathered copy of them.
Tensor all_gather_with_grad(const Tensor& x, Communicator& comm);

// NT-Xent over the global batch, no rank building the (2B, 2B) logits. z (2n, D) holds this rank's two views
// [view 1 of its n samples; view 2 of the same samples], rank r owning samples [r n, (r + 1) n) of the global
// batch. The columns are the gathered, normalised rows laid out as one process would hold them,
// [view 1 of all B; view 2 of all B]; this rank's rows are scored against them with the streaming
// contrastive op (engine/ops/contrastive.h), each row's positive and excluded self column given by its
// global index. The loss is the mean over this rank's rows; its mean over ranks is the one-process loss, and
// with gradients averaged over ranks (GradientReducer) so are the parameter gradients.
ContrastiveResult global_nt_xent(const Tensor& z, double temperature, Communicator& comm);

}  // namespace selfsup::dist
