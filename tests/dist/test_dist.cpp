// Data parallelism against one process. Runs as one process (ctest "dist": every collective the identity)
// and under `mpirun -np 2` and `-np 4 --oversubscribe` (tests/dist/mpirun.sh, label mpi). Each rank computes
// the one-process reference itself (the whole global batch, plain BatchNorm, nt_xent: the same code a
// single-process run takes) and the data-parallel version on its shard, and compares them.
//
// Tolerances, as max |a - b| / max |b| over a tensor: float64 agrees to rounding (1e-10; the sums merely run
// in another order); float32 to 1e-6, except where the float32 one-process result is itself further than
// that from the exact one (the SimCLR gradients, see there). A rank never returns early: the collectives of
// every rank must match, so the checks come after the work.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/autograd/grad_mode.h"
#include "engine/core/cuda_context.h"
#include "engine/core/rng.h"
#include "engine/data/loader.h"
#include "engine/dist/ddp.h"
#include "engine/dist/gather.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"
#include "engine/optim/sgd.h"
#include "ssl/methods/simclr.h"
#include "tests/dist/dist_support.h"

using namespace selfsup;
using namespace selfsup::test_dist;

namespace {

double tol(DType dt) { return dt == DType::f64 ? 1e-10 : 1e-6; }

ssl::SimCLROptions tiny_simclr() {
  ssl::SimCLROptions o;
  o.encoder.depth = 18;
  o.encoder.in_channels = 1;
  o.encoder.stem = models::Stem::cifar;
  o.encoder.width = 4;
  o.encoder.seed = 7;
  o.proj_hidden = 16;
  o.proj_dim = 8;
  o.temperature = 0.2;
  return o;
}

// The global batch of step `step`: two views (B, 1, 8, 8), and the dataset indices.
struct GlobalBatch {
  std::vector<Tensor> views;
  Tensor indices;
};
GlobalBatch global_batch(int64_t B, int64_t step, DType dt) {
  GlobalBatch g;
  g.views = {global_randn({B, 1, 8, 8}, 1000 + 2 * step, dt), global_randn({B, 1, 8, 8}, 1001 + 2 * step, dt)};
  std::vector<int64_t> idx(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) idx[i] = i;
  g.indices = Tensor::from_vector(idx, {B});
  return g;
}

// A one-process SimCLR (plain BN, local NT-Xent) and a data-parallel one (SyncBN, global negatives, rank 0's
// weights broadcast, gradients averaged in small buckets so that several start during backward).
struct Pair {
  std::shared_ptr<ssl::SimCLR> ref, dp;
  std::unique_ptr<dist::GradientReducer> reducer;
};
Pair make_pair(DType dt) {
  Pair p;
  p.ref = std::make_shared<ssl::SimCLR>(tiny_simclr());
  p.ref->to(dt);
  p.ref->set_communicator(dist::Communicator::single_process());
  p.dp = std::make_shared<ssl::SimCLR>(tiny_simclr());
  p.dp->to(dt);
  p.dp->set_communicator(comm());
  CHECK(dist::convert_sync_batch_norm(*p.dp, comm()) == 21);  // ResNet-18: 20 in the encoder, 1 in the head
  std::vector<Tensor> state;
  for (const auto& [name, t] : p.dp->state_dict()) state.push_back(t);
  dist::broadcast_tensors(state, comm());
  p.reducer = std::make_unique<dist::GradientReducer>(p.dp->trainable_parameters(), comm(), /*bucket_bytes=*/16384);
  return p;
}

// One step's losses (the data-parallel one averaged over ranks); gradients left in .grad.
std::pair<double, double> forward_backward(Pair& p, int64_t B, int64_t step, DType dt) {
  GlobalBatch g = global_batch(B, step, dt);
  p.ref->zero_grad();
  ssl::StepResult r = p.ref->training_step({g.views, g.indices, step, 1.0});
  r.loss.backward();
  std::vector<Tensor> local = {shard(g.views[0]), shard(g.views[1])};
  Tensor local_idx = shard(g.indices);
  p.dp->zero_grad();
  ssl::StepResult d = p.dp->training_step({local, local_idx, step, 1.0});
  d.loss.backward();
  p.reducer->finish();
  return {r.loss.item(), comm().mean(d.loss.item())};
}

}  // namespace

TEST_CASE("communicator: all_reduce, all_gather, reduce_scatter, broadcast, barrier give the defined values") {
  const int W = comm().world_size(), r = comm().rank();
  Tensor s = Tensor::full({3}, r + 1, DType::f64);
  comm().all_reduce(s, dist::ReduceOp::sum);
  Tensor m = Tensor::full({2, 2}, r + 1, DType::f32);
  dist::WorkHandle h = comm().all_reduce_async(m, dist::ReduceOp::mean);
  Tensor i64 = Tensor::full({1}, int64_t(1) << 40, DType::i64);
  comm().all_reduce(i64);
  h->wait();
  Tensor gathered = comm().all_gather(Tensor::full({2, 3}, r, DType::f64));
  Tensor g_in = Tensor::full({1, 2}, 10 + r, DType::i64), g_out = Tensor::empty({W, 2}, DType::i64);
  dist::WorkHandle gh = comm().all_gather_async(g_in, g_out);
  Tensor rs = comm().reduce_scatter(Tensor::full({2 * W}, r + 1, DType::f64));
  Tensor b0 = Tensor::full({4}, r, DType::f32), bl = Tensor::full({4}, r, DType::f32);
  comm().broadcast(b0, 0);
  comm().broadcast(bl, W - 1);
  comm().barrier();
  gh->wait();
  for (int q = 0; q < W; ++q) CHECK(g_out.narrow(0, q, 1).to_vector() == std::vector<double>(2, 10 + q));
  CHECK(s.to_vector() == std::vector<double>(3, W * (W + 1) / 2.0));
  CHECK(m.to_vector() == std::vector<double>(4, (W + 1) / 2.0));
  CHECK(i64.item() == static_cast<double>(W) * double(int64_t(1) << 40));
  REQUIRE(gathered.sizes() == Shape{2 * W, 3});
  for (int q = 0; q < W; ++q) CHECK(gathered.narrow(0, 2 * q, 2).to_vector() == std::vector<double>(6, q));
  CHECK(rs.to_vector() == std::vector<double>(2, W * (W + 1) / 2.0));
  CHECK(b0.to_vector() == std::vector<double>(4, 0));
  CHECK(bl.to_vector() == std::vector<double>(4, W - 1));
  CHECK(comm().mean(r) == doctest::Approx((W - 1) / 2.0));
  CHECK(comm().broadcast_value(100 + r, 0) == 100);
}

TEST_CASE("all_gather_with_grad: each rank receives its rows' gradient summed over every rank's loss") {
  const int W = comm().world_size(), r = comm().rank();
  Tensor x = global_randn({3, 4}, 100 + r, DType::f64).set_requires_grad(true);
  Tensor g = dist::all_gather_with_grad(x, comm());  // (3W, 4)
  Tensor c = global_randn({3 * W, 4}, 200 + r, DType::f64);  // rank r's loss: sum(c_r * gathered)
  sum(mul(g, c)).backward();
  // d(sum_s loss_s)/dx_r = sum_s c_s[rows of r]
  Tensor expect = Tensor::zeros({3, 4}, DType::f64);
  for (int s = 0; s < W; ++s) expect = add(expect, global_randn({3 * W, 4}, 200 + s, DType::f64).narrow(0, 3 * r, 3));
  for (int s = 0; s < W; ++s)
    CHECK(rel_err(g.narrow(0, 3 * s, 3), global_randn({3, 4}, 100 + s, DType::f64)) == 0);
  CHECK(rel_err(x.grad(), expect) < 1e-14);
}

TEST_CASE("global NT-Xent over N ranks equals nt_xent over the global batch, loss and gradients") {
  const int W = comm().world_size();
  for (DType dt : {DType::f64, DType::f32}) {
    const std::string dt_name = dtype_name(dt);
    CAPTURE(dt_name);
    const int64_t B = 6 * W, D = 5;
    Tensor v1 = global_randn({B, D}, 300, dt), v2 = global_randn({B, D}, 301, dt);
    Tensor zg = cat({v1, v2}, 0).set_requires_grad(true);  // one process: (2B, D)
    ContrastiveResult ref = nt_xent(zg, 0.3);
    ref.loss.backward();
    Tensor zl = cat({shard(v1), shard(v2)}, 0).set_requires_grad(true);  // this rank: (2n, D)
    ContrastiveResult loc = dist::global_nt_xent(zl, 0.3, comm());
    mul(loc.loss, 1.0 / W).backward();  // the global loss is the mean of the ranks' losses
    const double loss = comm().mean(loc.loss.item()), acc = comm().mean(loc.accuracy);
    Tensor gref = zg.grad();
    Tensor expect = cat({shard(gref.narrow(0, 0, B)), shard(gref.narrow(0, B, B))}, 0);
    CHECK(std::abs(loss - ref.loss.item()) <= tol(dt) * std::abs(ref.loss.item()));
    CHECK(acc == doctest::Approx(ref.accuracy));
    CHECK(rel_err(zl.grad(), expect) < tol(dt));
  }
}

TEST_CASE("SyncBN equals BatchNorm over the global batch: output, running stats and gradients") {
  const int W = comm().world_size();
  for (DType dt : {DType::f64, DType::f32}) {
    for (bool spatial : {true, false}) {
      const std::string dt_name = dtype_name(dt);
    CAPTURE(dt_name);
      CAPTURE(spatial);
      const int64_t B = 3 * W, C = 5;
      const Shape shape = spatial ? Shape{B, C, 3, 2} : Shape{B, C};
      Tensor x = global_randn(shape, 400, dt), gy = global_randn(shape, 401, dt);
      Tensor w0 = add(global_randn({C}, 402, dt), 1.0), b0 = global_randn({C}, 403, dt);
      // one process, the engine's batch_norm kernel
      Tensor xg = x.clone().set_requires_grad(true), wg = w0.clone().set_requires_grad(true),
             bg = b0.clone().set_requires_grad(true);
      Tensor rm = Tensor::zeros({C}, dt), rv = Tensor::ones({C}, dt);
      Tensor y = batch_norm(xg, rm, rv, wg, bg, true, 0.1, 1e-5);
      sum(mul(y, gy)).backward();
      // this rank's shard through SyncBN; the summed loss over ranks is the one-process loss
      Tensor xl = shard(x).set_requires_grad(true), wl = w0.clone().set_requires_grad(true),
             bl = b0.clone().set_requires_grad(true);
      Tensor rml = Tensor::zeros({C}, dt), rvl = Tensor::ones({C}, dt);
      Tensor yl = dist::sync_batch_norm(xl, rml, rvl, wl, bl, 0.1, 1e-5, comm());
      sum(mul(yl, shard(gy))).backward();
      Tensor dw = wl.grad().clone(), db = bl.grad().clone();  // local parts: summed over ranks
      comm().all_reduce(dw);
      comm().all_reduce(db);
      CHECK(rel_err(yl, shard(y)) < tol(dt));
      CHECK(rel_err(rml, rm) < tol(dt));
      CHECK(rel_err(rvl, rv) < tol(dt));
      CHECK(rel_err(xl.grad(), shard(xg.grad())) < tol(dt));
      CHECK(rel_err(dw, wg.grad()) < tol(dt));
      CHECK(rel_err(db, bg.grad()) < tol(dt));
    }
  }
}

TEST_CASE("one SimCLR step with global batch B on N ranks: the loss and every gradient of one process") {
  // float64 is the exact check: every gradient within 1e-10 (measured ~1e-13). float32 cannot meet 1e-6
  // against the one-process float32 run: that run is itself ~5e-6 (all parameters as one vector, max-norm)
  // from the float64 gradient of the same weights and views, and the data-parallel run rounds differently
  // (SyncBN's sums vs the BN kernel's, across ranks). So float32 checks that the data-parallel gradient is
  // within 1e-6 of one process's, or no further than twice that run's own rounding error, for the whole
  // vector and for each tensor (a BN weight's gradient, a sum with heavy cancellation, is ~1e-5 off alone).
  for (DType dt : {DType::f64, DType::f32}) {
    const std::string dt_name = dtype_name(dt);
    CAPTURE(dt_name);
    Pair p = make_pair(dt);
    const auto [ref_loss, dp_loss] = forward_backward(p, 8, 0, dt);
    double exact_loss = 0;   // the float64 one-process loss of the same weights and views
    nn::NamedTensors exact;  // the float64 one-process gradients of the same (float32-rounded) weights and views
    if (dt == DType::f32) {
      auto m = std::make_shared<ssl::SimCLR>(tiny_simclr());
      m->to(DType::f64);
      m->set_communicator(dist::Communicator::single_process());
      GlobalBatch g = global_batch(8, 0, dt);
      for (Tensor& v : g.views) v = v.to(DType::f64);
      Tensor loss64 = m->training_step({g.views, g.indices, 0, 1.0}).loss;
      exact_loss = loss64.item();
      loss64.backward();
      exact = m->named_parameters();
    }
    const nn::NamedTensors rp = p.ref->named_parameters(), dpp = p.dp->named_parameters();
    REQUIRE(rp.size() == dpp.size());
    double worst = 0, worst_allowed = 0, diff_all = 0, scale_all = 0, own_all = 0;
    std::string worst_name;
    for (size_t i = 0; i < rp.size(); ++i) {
      const double e = rel_err(dpp[i].second.grad(), rp[i].second.grad());
      const double scale = amax(abs(rp[i].second.grad())).item();
      diff_all = std::max(diff_all, e * scale);
      scale_all = std::max(scale_all, scale);
      if (dt == DType::f32) own_all = std::max(own_all, amax(abs(sub(rp[i].second.grad(),
                                                                     exact[i].second.grad().to(dt)))).item());
      const double allowed =
          dt == DType::f64 ? tol(dt)
                           : std::max(tol(dt), 2 * rel_err(rp[i].second.grad(), exact[i].second.grad().to(dt)));
      if (e / allowed > (worst_allowed > 0 ? worst / worst_allowed : 0)) {
        worst = e;
        worst_allowed = allowed;
        worst_name = rp[i].first;
      }
    }
    // All parameters as one vector: max |a - b| / max |b|, and the one-process float32 run's own error.
    const double whole = diff_all / scale_all, whole_own = own_all / scale_all;
    MESSAGE(dt_name, ": the whole gradient's error ", whole, " (one process's own float32 error ", whole_own,
            "); the largest of one tensor ", worst, " (", worst_name, ", allowed ", worst_allowed, "); loss ",
            dp_loss, " vs ", ref_loss);
    CHECK(whole <= std::max(tol(dt), 2 * whole_own));
    CHECK(worst <= worst_allowed);
    // The loss: within tol, or within twice the one-process float32 run's own relative error, taken as the
    // larger of its loss's and its whole gradient's distance from float64. The loss's alone is one draw of
    // the rounding and can be small by chance: with it as the only scale, the test failed after a change of
    // convolution kernel (on a loss of 2.4: 3.3e-6 apart, the loss's own error 1.4e-6; the gradient's own
    // relative error 3.6e-6).
    const double own_rel = std::max(std::abs(ref_loss - exact_loss) / std::abs(exact_loss), whole_own);
    const double loss_allowed = std::abs(ref_loss) * (dt == DType::f64 ? tol(dt) : std::max(tol(dt), 2 * own_rel));
    MESSAGE(dt_name, ": loss ", dp_loss, " vs ", ref_loss, ", apart ", std::abs(dp_loss - ref_loss), ", allowed ",
            loss_allowed);
    CHECK(std::abs(dp_loss - ref_loss) <= loss_allowed);
    const dist::ReducerStats st = p.reducer->stats();
    CHECK(st.buckets > 3);  // 16 KB buckets over a 500 KB model
    if (comm().world_size() > 1) CHECK(st.buckets_started_in_backward >= st.buckets - 1);
  }
}

TEST_CASE("ten SGD steps on N ranks end with the parameters and buffers of one process") {
  const DType dt = DType::f64;
  Pair p = make_pair(dt);
  SGD opt_ref(p.ref->trainable_parameters(), SgdOptions{0.1, 0.9, 0.0, 5e-4, false});
  SGD opt_dp(p.dp->trainable_parameters(), SgdOptions{0.1, 0.9, 0.0, 5e-4, false});
  std::vector<double> ref_losses, dp_losses;
  for (int64_t step = 0; step < 10; ++step) {
    const auto [a, b] = forward_backward(p, 8, step, dt);
    ref_losses.push_back(a);
    dp_losses.push_back(b);
    opt_ref.step();
    opt_dp.step();
  }
  for (size_t i = 0; i < ref_losses.size(); ++i) CHECK(std::abs(dp_losses[i] - ref_losses[i]) < 1e-9);
  const nn::NamedTensors rs = p.ref->state_dict(), ds = p.dp->state_dict();
  REQUIRE(rs.size() == ds.size());
  double worst = 0;
  std::string worst_name;
  for (size_t i = 0; i < rs.size(); ++i) {
    const double e = rel_err(ds[i].second, rs[i].second);
    if (e > worst) worst = e, worst_name = rs[i].first;
  }
  CAPTURE(worst_name);
  CHECK(worst < 1e-9);
}

TEST_CASE("loader shards: rank r's batch is rows [r B/N, (r+1) B/N) of the one-process batch, views included") {
  const int W = comm().world_size();
  ImageDataset d;
  d.images = Tensor::empty({64, 8, 8, 1}, DType::u8);
  uint8_t* px = d.images.data_ptr<uint8_t>();
  for (int64_t i = 0; i < d.images.numel(); ++i) px[i] = static_cast<uint8_t>((i * 37) % 251);
  d.labels = Tensor::zeros({64}, DType::i64);
  d.num_classes = 1;
  AugmentRecipe recipe = make_recipe("gray", 8, 1);
  LoaderOptions whole;
  whole.batch_size = 8 * W;
  whole.seed = 3;
  whole.num_workers = 0;
  LoaderOptions part = whole;
  part.shard = comm().rank();
  part.shards = W;
  DataLoader a(d, whole, make_augment_transform(recipe, 3, 2)), b(d, part, make_augment_transform(recipe, 3, 2));
  for (int step = 0; step < 3; ++step) {
    Batch ba = a.next(), bb = b.next();
    CHECK(rel_err(bb.indices, shard(ba.indices)) == 0);
    CHECK(rel_err(bb.views[0], shard(ba.views[0])) == 0);
    CHECK(rel_err(bb.views[1], shard(ba.views[1])) == 0);
  }
}

// ---- NCCL (CUDA tensors): one rank on a GPU machine (bench/gpu_check.sh), two under mpirun with 2+ GPUs.
namespace {

bool no_nccl_device() { return !dist::nccl_built() || cuda_device_count() == 0; }

}  // namespace

TEST_CASE("NCCL: collectives and the gathered gradient of CUDA tensors give the CPU values" *
          doctest::skip(no_nccl_device())) {
  std::unique_ptr<dist::Communicator> one;
  dist::Communicator& c = comm().distributed() ? comm() : *(one = dist::Communicator::single_rank_transports());
  const int W = c.world_size(), r = c.rank();
  const Device dev = Device::cuda(c.local_rank() % cuda_device_count());
  Tensor s = Tensor::full({1000}, r + 1, DType::f32).to(dev);
  c.all_reduce(s, dist::ReduceOp::sum);
  Tensor m = Tensor::full({7}, r + 1, DType::f64).to(dev);
  c.all_reduce_async(m, dist::ReduceOp::mean)->wait();
  Tensor gathered = c.all_gather(Tensor::full({2, 3}, r, DType::f32).to(dev));
  Tensor rs = c.reduce_scatter(Tensor::full({2 * W}, r + 1, DType::f32).to(dev));
  Tensor b = Tensor::full({5}, r, DType::f32).to(dev);
  c.broadcast(b, 0);
  c.barrier();
  Tensor x = global_randn({3, 4}, 100 + r, DType::f64).to(dev).set_requires_grad(true);
  Tensor g = dist::all_gather_with_grad(x, c);
  Tensor w = global_randn({3 * W, 4}, 200 + r, DType::f64);
  sum(mul(g, w.to(dev))).backward();
  Tensor expect = Tensor::zeros({3, 4}, DType::f64);
  for (int q = 0; q < W; ++q) expect = add(expect, global_randn({3 * W, 4}, 200 + q, DType::f64).narrow(0, 3 * r, 3));
  CHECK(s.to(Device::cpu()).to_vector() == std::vector<double>(1000, W * (W + 1) / 2.0));
  CHECK(m.to(Device::cpu()).to_vector() == std::vector<double>(7, (W + 1) / 2.0));
  for (int q = 0; q < W; ++q)
    CHECK(gathered.to(Device::cpu()).narrow(0, 2 * q, 2).to_vector() == std::vector<double>(6, q));
  CHECK(rs.to(Device::cpu()).to_vector() == std::vector<double>(2, W * (W + 1) / 2.0));
  CHECK(b.to(Device::cpu()).to_vector() == std::vector<double>(5, 0));
  CHECK(rel_err(x.grad().to(Device::cpu()), expect) < 1e-14);
}

TEST_CASE("GradientReducer: the mean over ranks, zeros for an unused parameter, one backward per step") {
  const int W = comm().world_size(), r = comm().rank();
  Tensor a = Tensor::zeros({300}, DType::f64).set_requires_grad(true);
  Tensor b = Tensor::zeros({5}, DType::f64).set_requires_grad(true);  // not in the loss
  // Buckets fill in reverse order and close once they reach 16 bytes: [b (40 bytes)], [a].
  dist::GradientReducer red({a, b}, comm(), /*bucket_bytes=*/16);
  Tensor c = global_randn({300}, 500 + r, DType::f64);
  sum(mul(a, c)).backward();
  red.finish();
  Tensor expect = Tensor::zeros({300}, DType::f64);
  for (int q = 0; q < W; ++q) expect = add(expect, global_randn({300}, 500 + q, DType::f64));
  expect = div(expect, W);
  CHECK(rel_err(a.grad(), expect) < 1e-15);
  REQUIRE(b.grad().defined());
  CHECK(b.grad().to_vector() == std::vector<double>(5, 0.0));
  CHECK(red.stats().buckets == 2);
  // A second backward before finish() would reduce a half-accumulated gradient: refused.
  a.set_grad(Tensor());
  sum(mul(a, c)).backward();
  bool refused = false;
  try {
    sum(mul(a, c)).backward();
  } catch (const Error& e) {
    refused = std::string(e.what()).find("one backward per optimizer step") != std::string::npos;
  }
  CHECK(refused);
  red.finish();
}
