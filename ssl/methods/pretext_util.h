// What the pretext-task methods (RotNet, Jigsaw) share: the fraction of a batch whose predicted class is
// the pretext label, the monitor they report as they train.
#pragma once
#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"

namespace selfsup::ssl {

// logits (N, K), labels int64 (N) on the same device -> fraction of rows whose argmax is the label.
inline double top1_accuracy(const Tensor& logits, const Tensor& labels) {
  NoGradGuard no_grad;
  const Tensor hits = eq(argmax(logits.detach(), 1), labels).to(DType::f32);
  return mean(hits).item();
}

}  // namespace selfsup::ssl
