#include "engine/dist/ddp.h"

#include <algorithm>
#include <chrono>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"

namespace selfsup::dist {

struct GradientReducer::State {
  struct Bucket {
    std::vector<size_t> params;  // indices into State::params
    Tensor flat;                 // (numel) of the bucket's dtype on its device
    size_t ready = 0;
    WorkHandle work;
  };
  std::vector<Tensor> params;
  std::vector<size_t> bucket_of, offset_of;
  std::vector<char> got;  // this step: the parameter's gradient is in its bucket
  std::vector<Bucket> buckets;
  size_t next_start = 0;  // buckets start in index order
  Communicator* comm = nullptr;
  bool overlap = true;
  ReducerStats stats;

  void start_ready_buckets(bool in_backward) {
    while (next_start < buckets.size() && buckets[next_start].ready == buckets[next_start].params.size()) {
      Bucket& b = buckets[next_start++];
      b.work = comm->all_reduce_async(b.flat, ReduceOp::sum);
      if (in_backward) ++stats.buckets_started_in_backward;
    }
  }

  void on_grad(size_t i, const Tensor& grad) {
    SELFSUP_CHECK(!got[i], "GradientReducer: parameter ", i, " received a second gradient before finish(): "
                  "data-parallel training takes one backward per optimizer step");
    got[i] = 1;
    Bucket& b = buckets[bucket_of[i]];
    const Tensor& p = params[i];
    b.flat.narrow(0, static_cast<int64_t>(offset_of[i]), p.numel()).copy_(grad.reshape({p.numel()}));
    ++b.ready;
    for (size_t k = 0; k < next_start; ++k)
      if (buckets[k].work) buckets[k].work->test();  // progress for the ones in flight
    if (overlap) start_ready_buckets(true);
  }
};

GradientReducer::GradientReducer(std::vector<Tensor> params, Communicator& comm, int64_t bucket_bytes, bool overlap)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.params = std::move(params);
  s.comm = &comm;
  s.overlap = overlap;
  const size_t n = s.params.size();
  s.bucket_of.assign(n, 0);
  s.offset_of.assign(n, 0);
  s.got.assign(n, 0);
  // Reverse order: the last layers' gradients are ready first.
  int64_t bytes = 0;
  for (size_t k = n; k-- > 0;) {
    const Tensor& p = s.params[k];
    SELFSUP_CHECK(p.is_leaf() && p.requires_grad(), "GradientReducer: parameter ", k, " (", shape_str(p.sizes()),
                  ") is not a leaf that requires grad");
    bool fresh = s.buckets.empty() || bytes >= bucket_bytes;
    if (!fresh) {
      const Tensor& first = s.params[s.buckets.back().params.front()];
      fresh = first.dtype() != p.dtype() || first.device() != p.device();
    }
    if (fresh) {
      s.buckets.emplace_back();
      bytes = 0;
    }
    State::Bucket& b = s.buckets.back();
    s.bucket_of[k] = s.buckets.size() - 1;
    s.offset_of[k] = b.params.empty() ? 0 : s.offset_of[b.params.back()] + s.params[b.params.back()].numel();
    b.params.push_back(k);
    bytes += p.numel() * static_cast<int64_t>(dtype_size(p.dtype()));
  }
  for (State::Bucket& b : s.buckets) {
    const Tensor& last = s.params[b.params.back()];
    const int64_t numel = static_cast<int64_t>(s.offset_of[b.params.back()]) + last.numel();
    b.flat = Tensor::zeros({numel}, last.dtype(), last.device());
    s.stats.bytes_per_step += numel * static_cast<int64_t>(dtype_size(last.dtype()));
  }
  s.stats.buckets = static_cast<int64_t>(s.buckets.size());
  std::weak_ptr<State> weak = state_;
  for (size_t k = 0; k < n; ++k) {
    s.params[k].register_grad_ready_hook([weak, k](const Tensor& grad) {
      if (auto st = weak.lock()) st->on_grad(k, grad);
    });
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::finish() {
  State& s = *state_;
  NoGradGuard ng;
  // A parameter without a gradient this step (unused by the loss) contributes zeros.
  for (size_t i = 0; i < s.params.size(); ++i) {
    if (s.got[i]) continue;
    State::Bucket& b = s.buckets[s.bucket_of[i]];
    b.flat.narrow(0, static_cast<int64_t>(s.offset_of[i]), s.params[i].numel()).zero_();
    ++b.ready;
  }
  s.start_ready_buckets(false);
  const auto t0 = std::chrono::steady_clock::now();
  for (State::Bucket& b : s.buckets) b.work->wait();
  s.stats.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double inv = 1.0 / s.comm->world_size();
  for (State::Bucket& b : s.buckets) {
    if (inv != 1.0) b.flat.mul_(inv);
    for (size_t i : b.params) {
      Tensor& p = s.params[i];
      Tensor mean = b.flat.narrow(0, static_cast<int64_t>(s.offset_of[i]), p.numel()).reshape(p.sizes());
      if (p.grad().defined())
        p.grad().copy_(mean);
      else
        p.set_grad(mean.clone());
    }
    b.ready = 0;
    b.work.reset();
  }
  std::fill(s.got.begin(), s.got.end(), 0);
  s.next_start = 0;
  ++s.stats.steps;
}

ReducerStats GradientReducer::stats() const { return state_->stats; }

void GradientReducer::set_overlap(bool on) { state_->overlap = on; }

void all_reduce_gradients(const std::vector<Tensor>& params, Communicator& comm) {
  if (params.empty()) return;
  NoGradGuard ng;
  std::vector<Tensor> flat;
  for (const Tensor& p : params) {
    SELFSUP_CHECK(p.dtype() == params[0].dtype() && p.device() == params[0].device(),
                  "all_reduce_gradients: parameters of one dtype and device, got ", p.str(), " and ", params[0].str());
    flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : Tensor::zeros({p.numel()}, p.dtype(), p.device()));
  }
  Tensor all = cat(flat, 0).contiguous();  // (sum of numel)
  comm.all_reduce(all, ReduceOp::mean);
  int64_t off = 0;
  for (const Tensor& p0 : params) {
    Tensor p = p0;
    Tensor mean = all.narrow(0, off, p.numel()).reshape(p.sizes());
    if (p.grad().defined())
      p.grad().copy_(mean);
    else
      p.set_grad(mean.clone());
    off += p.numel();
  }
}

void broadcast_tensors(const std::vector<Tensor>& tensors, Communicator& comm, int root) {
  NoGradGuard ng;
  for (const Tensor& t : tensors) {
    if (t.is_contiguous()) {
      Tensor v = t;
      comm.broadcast(v, root);
    } else {
      Tensor c = t.contiguous();
      comm.broadcast(c, root);
      Tensor(t).copy_(c);
    }
  }
}

}  // namespace selfsup::dist
