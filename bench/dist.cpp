// bench_dist: data-parallel SimCLR training steps on the CPU, one process or under mpirun, with what the
// communication costs. The model is the trainer's (ResNet-18 layout, CIFAR stem, 1 channel, width W,
// projection 512/128, NT-Xent tau 0.2 over the global batch, SGD); the views are fixed random (B, 1, 28, 28)
// batches, so the numbers are the model's and the transport's, not augmentation's.
//
//   bench_dist [--width 8] [--batch 64 (global)] [--steps 20] [--threads 1] [--no-sync-bn] [--bucket-kb 25600]
//   mpirun -np 2 --bind-to none bench_dist --threads 1 ...
//
// It runs --steps steps with the gradient all-reduce overlapped with backward (buckets started from the
// grad-ready hooks), then --steps with every bucket started after backward, and prints on rank 0 one JSON
// line: images/s (overlapped), the time blocked in communication per step (every collective: all_gather of
// the embeddings, SyncBN's statistics, the gradient buckets), the bytes this rank contributes per step, and
// the fraction of the gradient all-reduce hidden under backward, 1 - (wait after backward with overlap) /
// (wait after backward without), and the latency of a 1-element all_reduce (the price of each of SyncBN's
// synchronisations). bench/dist_scaling.sh runs it at 1 and 2 ranks next to PyTorch DDP.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "engine/dist/ddp.h"
#include "engine/dist/sync_batch_norm.h"
#include "engine/optim/sgd.h"
#include "ssl/methods/simclr.h"

using namespace selfsup;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int64_t width = 8, batch = 64, steps = 20, threads = 1, bucket_kb = 25 * 1024;
  bool sync_bn = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_dist: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--width") width = value();
    else if (a == "--batch") batch = value();
    else if (a == "--steps") steps = value();
    else if (a == "--threads") threads = value();
    else if (a == "--bucket-kb") bucket_kb = value();
    else if (a == "--no-sync-bn") sync_bn = false;
    else {
      std::fprintf(stderr, "usage: bench_dist [--width W] [--batch B] [--steps N] [--threads T] [--no-sync-bn] "
                           "[--bucket-kb K]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  try {
    dist::Communicator& comm = dist::world();
    const int W = comm.world_size();
    SELFSUP_CHECK(batch % W == 0 && steps >= 2, "bench_dist: --batch ", batch, " must be a multiple of the ", W,
                  " ranks, --steps >= 2");
    omp_set_num_threads(static_cast<int>(threads));
    const int64_t n = batch / W;
    ssl::SimCLROptions o;
    o.encoder.depth = 18;
    o.encoder.in_channels = 1;
    o.encoder.stem = models::Stem::cifar;
    o.encoder.width = width;
    ssl::SimCLR model(o);
    if (sync_bn && comm.distributed()) dist::convert_sync_batch_norm(model, comm);
    std::vector<Tensor> state;
    for (const auto& [name, t] : model.state_dict()) state.push_back(t);
    dist::broadcast_tensors(state, comm);
    SGD opt(model.trainable_parameters(), SgdOptions{0.3, 0.9, 0.0, 5e-4, false});
    dist::GradientReducer reducer(model.trainable_parameters(), comm, bucket_kb << 10);
    // Four fixed batches of this rank's views, cycled.
    std::vector<std::vector<Tensor>> views;
    for (int k = 0; k < 4; ++k) {
      Generator g(1234 + k * 64 + comm.rank(), 0x42454e43ull);  // "BENC"
      views.push_back({Tensor::randn({n, 1, 28, 28}, DType::f32, &g), Tensor::randn({n, 1, 28, 28}, DType::f32, &g)});
    }
    Tensor idx = Tensor::zeros({n}, DType::i64);
    int64_t step = 0;
    auto one_step = [&] {
      const std::vector<Tensor>& v = views[step % 4];
      ssl::StepResult r = model.training_step({v, idx, step, 1.0});
      opt.zero_grad();
      r.loss.backward();
      reducer.finish();
      opt.step();
      ++step;
    };
    struct Phase {
      double seconds = 0, wait_s = 0, grad_wait_s = 0;
      int64_t bytes = 0;
    };
    auto phase = [&](bool overlap) {
      reducer.set_overlap(overlap);
      one_step();  // warm-up (first-touch allocations, oneDNN primitive creation)
      comm.barrier();
      const dist::CommStats c0 = comm.stats();
      const dist::ReducerStats r0 = reducer.stats();
      const Clock::time_point t0 = Clock::now();
      for (int64_t s = 0; s < steps; ++s) one_step();
      comm.barrier();
      Phase p;
      p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      const dist::CommStats c1 = comm.stats();
      p.wait_s = c1.wait_s - c0.wait_s;
      p.bytes = c1.bytes - c0.bytes;
      p.grad_wait_s = reducer.stats().wait_s - r0.wait_s;
      return p;
    };
    const Phase on = phase(true), off = phase(false);
    // The cost of one synchronisation on this machine: a 1-element all_reduce, 200 times. SyncBN pays about
    // two per BN layer and step (forward and backward), each also a wait for the slowest rank.
    Tensor one = Tensor::ones({1});
    comm.barrier();
    const Clock::time_point tl = Clock::now();
    for (int k = 0; k < 200; ++k) comm.all_reduce(one);
    const double latency_us = comm.mean(std::chrono::duration<double>(Clock::now() - tl).count() / 200 * 1e6);
    // Averaged over ranks (they wait for each other at every collective, so they differ little).
    const double seconds = comm.mean(on.seconds), wait = comm.mean(on.wait_s);
    const double grad_on = comm.mean(on.grad_wait_s), grad_off = comm.mean(off.grad_wait_s);
    const double off_seconds = comm.mean(off.seconds);
    if (comm.is_root()) {
      const double per = 1000.0 / static_cast<double>(steps);
      const dist::ReducerStats rs = reducer.stats();
      std::printf(
          "{\"bench\": \"dist\", \"ranks\": %d, \"threads\": %ld, \"width\": %ld, \"batch\": %ld, \"sync_bn\": %s, "
          "\"images_per_s\": %.1f, \"images_per_s_no_overlap\": %.1f, \"step_ms\": %.2f, \"comm_wait_ms\": %.3f, "
          "\"grad_wait_ms\": %.3f, \"grad_wait_ms_no_overlap\": %.3f, \"hidden_fraction\": %.3f, "
          "\"grad_bytes\": %ld, \"bytes_per_step\": %ld, \"buckets\": %ld, \"allreduce_latency_us\": %.1f}\n",
          W, long(threads), long(width), long(batch), sync_bn ? "true" : "false", batch * steps / seconds,
          batch * steps / off_seconds, seconds * per, wait * per, grad_on * per, grad_off * per,
          grad_off > 0 ? 1.0 - grad_on / grad_off : 0.0, long(rs.bytes_per_step),
          long(on.bytes / steps), long(rs.buckets), latency_us);
    }
  } catch (const std::exception& e) {
    dist::abort_job(e.what());
    std::fprintf(stderr, "bench_dist: %s\n", e.what());
    return 1;
  }
  return 0;
}
