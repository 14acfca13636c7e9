// The communicator of a data-parallel job: one per process, created from the launcher's environment.
//
//   mpirun -np N ...   OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK (MPI_Init_thread runs on first use)
//   srun -n N ...      SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (OpenMPI's PMIx: srun --mpi=pmix)
//   anything else      one process: rank 0 of 1, every collective returns its input, MPI is never started
//
// Collectives take CPU tensors over MPI and CUDA tensors over NCCL (the unique id is broadcast over MPI;
// NCCL runs on its own stream, ordered after the caller's current stream). Every rank must issue the
// same collectives in the same order; tensors are contiguous and, for all_reduce, reduced in place.
//
// Faults never hang a job silently: MPI runs with MPI_ERRORS_RETURN and every call is checked (an error
// throws selfsup::Error naming the call); waits poll with a deadline (SELFSUP_DIST_TIMEOUT seconds,
// default 300), after which the rank prints which collective timed out and aborts the whole job; a rank
// that throws reaches abort_job() (the CLI's error handler), which prints its message and calls MPI_Abort,
// so mpirun ends every other rank. A rank that dies is noticed by mpirun itself, which kills the others.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "engine/core/tensor.h"

namespace selfsup::dist {

enum class ReduceOp { sum, mean };

// A collective in flight. wait() returns when the output is ready for the caller (CPU: written; CUDA: the
// caller's current stream is ordered after it). The handle keeps its tensors alive until then.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  // Non-blocking: true once complete. Also drives MPI's progress for messages in flight.
  virtual bool test() = 0;
};
using WorkHandle = std::unique_ptr<Work>;

class Backend;

// What this process's collectives cost so far (for bench_dist and the trainer's summary): how many were
// started, the bytes of this rank's contribution (the tensor it passed in), and the time spent blocked in
// wait() (communication that was not hidden behind computation).
struct CommStats {
  int64_t calls = 0;
  int64_t bytes = 0;
  double wait_s = 0;
};

class Communicator {
 public:
  // A job from the launcher's environment (see above). Throws when the environment names more than one
  // rank but MPI was not built in or does not see the same world.
  static std::unique_ptr<Communicator> from_environment();
  // Rank 0 of 1 whatever the environment: every collective is the identity (a one-process reference
  // computed inside a job of several, as the tests do).
  static Communicator& single_process();
  // Rank 0 of 1 whose collectives still go through the transports (NCCL for CUDA tensors, MPI for CPU ones
  // when a launcher started MPI): a backend's one-rank smoke test (bench/gpu_check.sh runs NCCL's).
  static std::unique_ptr<Communicator> single_rank_transports();
  ~Communicator();

  int rank() const { return rank_; }
  int world_size() const { return size_; }
  int local_rank() const { return local_rank_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }
  std::string launcher() const { return launcher_; }  // "mpirun", "srun" or "single process"
  double timeout_s() const { return timeout_s_; }

  // t (any shape, contiguous) reduced in place over all ranks; mean divides the sum by world_size().
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::sum);
  WorkHandle all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::sum);
  // x (n, ...) from every rank -> (world_size * n, ...), rank r's rows at [r n, (r + 1) n).
  Tensor all_gather(const Tensor& x);
  // The same into `out` (world_size * n, ...), contiguous, allocated by the caller; x must stay unchanged
  // until the handle's wait().
  WorkHandle all_gather_async(const Tensor& x, Tensor& out);
  // x (world_size * n, ...) summed over ranks; this rank keeps rows [rank n, (rank + 1) n) -> (n, ...).
  Tensor reduce_scatter(const Tensor& x);
  // t overwritten in place with root's values.
  void broadcast(Tensor& t, int root = 0);
  WorkHandle broadcast_async(Tensor& t, int root = 0);
  // timeout_s 0: timeout_s(). A longer one lets ranks wait for work rank 0 does alone (the kNN monitor).
  void barrier(double timeout_s = 0);
  CommStats stats() const;
  // A scalar's mean over ranks (the logged loss), and root's value of an integer (a length decided on rank 0).
  double mean(double v);
  int64_t broadcast_value(int64_t v, int root = 0);

 private:
  Communicator() = default;
  Backend& backend_for(const Tensor& t, const char* op);
  // A single process without a transport for t's device: the collective is the identity. Under a launcher
  // even one rank runs the real transport (`mpirun -np 1` tests the MPI and NCCL paths).
  bool local_only(const Tensor& t) const;

  int rank_ = 0, size_ = 1, local_rank_ = 0;
  std::string launcher_ = "single process";
  bool launched_ = false;
  double timeout_s_ = 300;
  CommStats stats_;
  std::unique_ptr<Backend> mpi_;   // CPU tensors (and NCCL's bootstrap); null in a single process
  std::unique_ptr<Backend> nccl_;  // CUDA tensors, created on first use
};

// What this build holds: the MPI backend (CPU tensors, more than one process) and the NCCL backend.
bool mpi_built();
bool nccl_built();

// The process's communicator, created from the environment on first use.
Communicator& world();
// True when this process is one rank of a job of several (world() was created with world_size() > 1).
bool in_distributed_job();
// For a top-level error handler: in a job of several ranks, prints "selfsup rank R/N: error: <message>" and
// aborts the whole job (MPI_Abort, exit code `code`), so no other rank waits forever on this one.
// Returns (does nothing) in a single process.
void abort_job(const std::string& message, int code = 1);

}  // namespace selfsup::dist
