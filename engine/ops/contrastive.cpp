// Contrastive ops: validation, index construction, autograd wiring around the infonce kernels.
#include "engine/ops/contrastive.h"

#include "engine/autograd/grad_mode.h"
#include "engine/autograd/node.h"
#include "engine/ops/op_utils.h"
#include "engine/ops/ops.h"

namespace selfsup {

using autograd::SavedTensor;
using Grads = std::vector<Tensor>;

ContrastiveResult contrastive_loss(const Tensor& q, const Tensor& k, const Tensor& pos, const Tensor& self_col,
                                   int64_t n_private, double temperature) {
  ops_detail::check_floating(q, "contrastive_loss", "q");
  SELFSUP_CHECK(q.dim() == 2 && k.dim() == 2 && q.size(1) == k.size(1), "contrastive_loss: q ", shape_str(q.sizes()),
                " and k ", shape_str(k.sizes()), " must be (M, D) and (Ncol, D)");
  SELFSUP_CHECK(q.dtype() == k.dtype(), "contrastive_loss: q and k dtypes differ (", dtype_name(q.dtype()), ", ",
                dtype_name(k.dtype()), ")");
  ops_detail::check_same_device(q, k, "contrastive_loss");
  SELFSUP_CHECK(temperature > 0, "contrastive_loss: temperature must be positive, got ", temperature);
  const int64_t M = q.size(0), Ncol = k.size(0), D = q.size(1);
  SELFSUP_CHECK(M > 0 && Ncol > 1, "contrastive_loss: needs at least one row and two columns, got M=", M,
                " Ncol=", Ncol);
  SELFSUP_CHECK(pos.dtype() == DType::i64 && pos.dim() == 1 && pos.size(0) == M,
                "contrastive_loss: pos must be int64 of shape (", M, ")");
  SELFSUP_CHECK(n_private >= 0 && n_private <= Ncol, "contrastive_loss: n_private ", n_private, " outside [0, ", Ncol,
                "]");
  {  // validate on host copies (downloads when the indices live on a GPU)
    Tensor ph = pos.to(Device::cpu()).contiguous();
    const int64_t* pp = ph.data_ptr<int64_t>();
    for (int64_t i = 0; i < M; ++i)
      SELFSUP_CHECK(pp[i] >= 0 && pp[i] < Ncol, "contrastive_loss: positive column ", pp[i], " of row ", i,
                    " out of range [0, ", Ncol, ")");
    if (self_col.defined()) {
      SELFSUP_CHECK(self_col.dtype() == DType::i64 && self_col.dim() == 1 && self_col.size(0) == M,
                    "contrastive_loss: self_col must be int64 of shape (", M, ")");
      Tensor sh = self_col.to(Device::cpu()).contiguous();
      const int64_t* sp = sh.data_ptr<int64_t>();
      for (int64_t i = 0; i < M; ++i)
        SELFSUP_CHECK(sp[i] != pp[i], "contrastive_loss: row ", i, " excludes its own positive column ", pp[i]);
    }
  }
  // The kernels read the indices on q's device (CPU-built indices are uploaded).
  Tensor pc = pos.to(q.device()).contiguous();
  Tensor sc = self_col.defined() ? self_col.to(q.device()).contiguous() : Tensor();
  const int64_t* pp = pc.data_ptr<int64_t>();
  Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous();
  // Per-row losses and lse keep float precision for bf16 inputs (the kernels' convention); the loss is float.
  const DType stat_dt = q.dtype() == DType::bf16 ? DType::f32 : q.dtype();
  Tensor rows = Tensor::empty({M}, stat_dt, q.device()), lse = Tensor::empty({M}, stat_dt, q.device());
  Tensor correct = Tensor::empty({M}, DType::u8, q.device());
  const double inv_tau = 1.0 / temperature;
  const int64_t* sp = sc.defined() ? sc.data_ptr<int64_t>() : nullptr;
  SELFSUP_KERNEL_CALL(q.device(), infonce_fwd)(q.dtype(), M, Ncol, D, qc.raw_data(), kc.raw_data(), pp, sp, n_private,
                                               inv_tau, rows.raw_data(), lse.raw_data(), correct.data_ptr<uint8_t>());
  if (autograd::needs_grad({q, k})) {
    SavedTensor sq = qc, sk = kc;
    bool need_q = q.requires_grad(), need_k = k.requires_grad();
    // q and k the same tensor (SimCLR's z): a backend may compute dz = dq + dk in one sweep (CUDA bf16 does:
    // one recompute and one product instead of two each); the whole gradient then goes to input 0.
    const bool same = q.is_same(k) && need_q;
    autograd::record("contrastive_loss", {q, k}, {rows},
                     [sq, sk, pc, sc, lse, n_private, inv_tau, need_q, need_k, same, M, Ncol, D](const Grads& g) {
                       Tensor qs = sq.unpack("contrastive_loss"), ks = sk.unpack("contrastive_loss");
                       Tensor gr = g[0].contiguous();
                       if (same) {
                         if (auto* sym = kernel_table(qs.device().type).infonce_bwd_sym) {
                           Tensor dz = Tensor::empty({M, D}, qs.dtype(), qs.device());
                           if (sym(qs.dtype(), M, D, qs.raw_data(), pc.data_ptr<int64_t>(),
                                   sc.defined() ? sc.data_ptr<int64_t>() : nullptr, n_private, inv_tau,
                                   lse.raw_data(), gr.raw_data(), dz.raw_data()))
                             return Grads{dz, Tensor()};
                         }
                       }
                       Tensor dq = need_q ? Tensor::empty({M, D}, qs.dtype(), qs.device()) : Tensor();
                       Tensor dk = need_k ? Tensor::empty({Ncol, D}, qs.dtype(), qs.device()) : Tensor();
                       SELFSUP_KERNEL_CALL(qs.device(), infonce_bwd)(
                           qs.dtype(), M, Ncol, D, qs.raw_data(), ks.raw_data(), pc.data_ptr<int64_t>(),
                           sc.defined() ? sc.data_ptr<int64_t>() : nullptr, n_private, inv_tau, lse.raw_data(),
                           gr.raw_data(), need_q ? dq.raw_data() : nullptr, need_k ? dk.raw_data() : nullptr);
                       return Grads{dq, dk};
                     });
  }
  double acc = sum(correct).item() / static_cast<double>(M);
  return {mean(rows), acc};
}

ContrastiveResult nt_xent(const Tensor& z, double temperature, bool normalize_rows) {
  SELFSUP_CHECK(z.dim() == 2 && z.size(0) >= 2 && z.size(0) % 2 == 0, "nt_xent: z must be (2N, D) with N >= 1, got ",
                shape_str(z.sizes()));
  const int64_t two_n = z.size(0), n = two_n / 2;
  std::vector<int64_t> pos(static_cast<size_t>(two_n)), self(static_cast<size_t>(two_n));
  for (int64_t i = 0; i < two_n; ++i) {
    pos[i] = (i + n) % two_n;
    self[i] = i;
  }
  Tensor zn = normalize_rows ? normalize(z, 1) : z;
  return contrastive_loss(zn, zn, Tensor::from_vector(pos, {two_n}), Tensor::from_vector(self, {two_n}), 0,
                          temperature);
}

ContrastiveResult info_nce(const Tensor& q, const Tensor& k, const Tensor& queue, double temperature, bool grad_to_k) {
  SELFSUP_CHECK(q.dim() == 2 && k.sizes() == q.sizes(), "info_nce: q ", shape_str(q.sizes()), " and k ",
                shape_str(k.sizes()), " must both be (N, D)");
  SELFSUP_CHECK(queue.dim() == 2 && queue.size(1) == q.size(1), "info_nce: queue ", shape_str(queue.sizes()),
                " must be (K, ", q.size(1), ")");
  const int64_t n = q.size(0);
  std::vector<int64_t> pos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos[i] = i;
  Tensor keys = grad_to_k ? k : k.detach();
  Tensor cols = cat({keys, queue.detach().to(q.dtype())}, 0);
  return contrastive_loss(q, cols, Tensor::from_vector(pos, {n}), Tensor(), n, temperature);
}

ContrastiveResult memory_bank_nce(const Tensor& q, const Tensor& bank, const Tensor& pos_index,
                                  const Tensor& neg_index, double temperature) {
  SELFSUP_CHECK(q.dim() == 2 && bank.dim() == 2 && bank.size(1) == q.size(1), "memory_bank_nce: q ",
                shape_str(q.sizes()), " and bank ", shape_str(bank.sizes()), " must be (M, D) and (B, D)");
  SELFSUP_CHECK(pos_index.dim() == 1 && pos_index.size(0) == q.size(0), "memory_bank_nce: pos_index must be (",
                q.size(0), "), got ", shape_str(pos_index.sizes()));
  const int64_t m = q.size(0);
  Tensor b = bank.detach().to(q.dtype());
  Tensor cols = cat({index_select(b, 0, pos_index), index_select(b, 0, neg_index)}, 0);
  std::vector<int64_t> pos(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) pos[i] = i;
  return contrastive_loss(q, cols, Tensor::from_vector(pos, {m}), Tensor(), m, temperature);
}

void ema_update(const std::vector<Tensor>& target, const std::vector<Tensor>& online, double m) {
  SELFSUP_CHECK(target.size() == online.size(), "ema_update: ", target.size(), " target tensors but ", online.size(),
                " online tensors");
  if (target.empty()) return;
  std::vector<void*> tp;
  std::vector<const void*> op;
  std::vector<int64_t> numel;
  const DType dt = target[0].dtype();
  for (size_t i = 0; i < target.size(); ++i) {
    const Tensor &t = target[i], &o = online[i];
    SELFSUP_CHECK(t.sizes() == o.sizes() && t.dtype() == dt && o.dtype() == dt, "ema_update: pair ", i,
                  " differs: target ", shape_str(t.sizes()), " ", dtype_name(t.dtype()), ", online ",
                  shape_str(o.sizes()), " ", dtype_name(o.dtype()));
    SELFSUP_CHECK(t.is_contiguous() && o.is_contiguous(), "ema_update: pair ", i, " is not contiguous");
    ops_detail::check_same_device(t, o, "ema_update");
    ops_detail::check_inplace(t, "ema_update");
    tp.push_back(t.raw_data());
    op.push_back(o.raw_data());
    numel.push_back(t.numel());
  }
  SELFSUP_KERNEL_CALL(target[0].device(), ema_update)(dt, static_cast<int64_t>(tp.size()), tp.data(), op.data(),
                                                      numel.data(), m);
  for (const Tensor& t : target) t.bump_version();
}

FeatureQueue::FeatureQueue(int64_t size, int64_t dim, DType dtype, uint64_t seed) {
  SELFSUP_CHECK(size > 0 && dim > 0, "FeatureQueue: size and dim must be positive, got ", size, " and ", dim);
  NoGradGuard ng;
  Generator gen(seed, 0x5155455545ull);  // its own stream: "QUEUE"
  buffer_ = normalize(Tensor::randn({size, dim}, dtype, &gen), 1);
}

int64_t ring_enqueue(const Tensor& ring, int64_t pointer, const Tensor& rows) {
  SELFSUP_CHECK(ring.dim() == 2 && rows.dim() == 2 && rows.size(1) == ring.size(1), "ring_enqueue: rows ",
                shape_str(rows.sizes()), " must be (B, ", ring.size(1), ")");
  const int64_t K = ring.size(0);
  SELFSUP_CHECK(pointer >= 0 && pointer < K, "ring_enqueue: pointer ", pointer, " out of range [0, ", K, ")");
  NoGradGuard ng;
  Tensor src = rows.detach();
  int64_t b = src.size(0);
  if (b > K) {  // only the newest K rows survive
    src = src.narrow(0, b - K, K);
    b = K;
  }
  const int64_t first = std::min(b, K - pointer);
  ring.narrow(0, pointer, first).copy_(src.narrow(0, 0, first));
  if (first < b) ring.narrow(0, 0, b - first).copy_(src.narrow(0, first, b - first));
  return (pointer + b) % K;
}

void FeatureQueue::enqueue(const Tensor& keys) {
  SELFSUP_CHECK(keys.dim() == 2 && keys.size(1) == buffer_.size(1), "FeatureQueue::enqueue: keys ",
                shape_str(keys.sizes()), " must be (B, ", buffer_.size(1), ")");
  ptr_ = ring_enqueue(buffer_, ptr_, keys);
}

void FeatureQueue::set_state(const Tensor& buffer, int64_t pointer) {
  SELFSUP_CHECK(buffer.sizes() == buffer_.sizes(), "FeatureQueue::set_state: buffer ", shape_str(buffer.sizes()),
                " must be ", shape_str(buffer_.sizes()));
  SELFSUP_CHECK(pointer >= 0 && pointer < buffer_.size(0), "FeatureQueue::set_state: pointer ", pointer,
                " out of range [0, ", buffer_.size(0), ")");
  NoGradGuard ng;
  buffer_.copy_(buffer);
  ptr_ = pointer;
}

}  // namespace selfsup
