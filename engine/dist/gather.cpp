#include "engine/dist/gather.h"

#include "engine/autograd/node.h"
#include "engine/ops/ops.h"

namespace selfsup::dist {

Tensor all_gather_with_grad(const Tensor& x, Communicator& comm) {
  Tensor out = comm.all_gather(x.detach());  // (W n, ...)
  Communicator* c = &comm;
  autograd::record("all_gather", {x}, {out}, [c](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{c->reduce_scatter(g[0].contiguous())};  // (n, ...)
  });
  return out;
}

ContrastiveResult global_nt_xent(const Tensor& z, double temperature, Communicator& comm) {
  SELFSUP_CHECK(z.dim() == 2 && z.size(0) >= 2 && z.size(0) % 2 == 0,
                "global_nt_xent: z must be (2n, D) with n >= 1, got ", shape_str(z.sizes()));
  const int64_t n = z.size(0) / 2, D = z.size(1), W = comm.world_size(), r = comm.rank();
  const int64_t B = n * W;  // global batch
  Tensor zn = normalize(z, 1);
  // (W 2n, D) in rank order [r0 view1, r0 view2, r1 view1, ...] -> (2, W, n, D) -> (2B, D): one process's layout.
  Tensor cols = all_gather_with_grad(zn, comm).reshape({W, 2, n, D}).permute({1, 0, 2, 3}).reshape({2 * B, D});
  std::vector<int64_t> pos(static_cast<size_t>(2 * n)), self(static_cast<size_t>(2 * n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = r * n + i;  // global sample id of local sample i
    self[i] = g;                  // view 1 row
    pos[i] = B + g;
    self[n + i] = B + g;          // view 2 row
    pos[n + i] = g;
  }
  return contrastive_loss(zn, cols, Tensor::from_vector(pos, {2 * n}), Tensor::from_vector(self, {2 * n}), 0,
                          temperature);
}

}  // namespace selfsup::dist
