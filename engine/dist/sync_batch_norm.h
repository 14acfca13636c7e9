// SyncBN: batch normalisation whose training statistics are those of the global batch, every rank's rows
// together, so N ranks with B/N rows each normalise exactly as one process with B rows (SimCLR's choice: a
// rank's own BN statistics would let the contrastive task cheat through per-device batch statistics).
//
// Forward: one all-reduce of (2C + 1) per-channel sums of x - shift and (x - shift)^2 (shift: the running
// mean, the same on every rank) and the count. Backward: one all-reduce of (2C) sums of
// dy and dy * xhat, the terms through which every rank's rows depend on every other rank's statistics;
// dweight and dbias stay local (the gradient reducer averages them with the other parameters).
#pragma once
#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"

namespace selfsup::nn {
class Module;
}

namespace selfsup::dist {

// x (n, C) or (n, C, H, W) on this rank; weight/bias (C) may be undefined; running stats (C), if defined, are
// updated in place with the global mean and the global unbiased variance (count / (count - 1)), as one
// process's batch_norm updates them. Always uses batch statistics (training mode).
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, double momentum, double eps, Communicator& comm);

// Makes every BatchNorm of `m` synchronise its training statistics over `comm`; returns how many.
int convert_sync_batch_norm(nn::Module& m, Communicator& comm);

}  // namespace selfsup::dist
