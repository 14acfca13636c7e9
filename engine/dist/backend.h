// The transports behind the Communicator (engine/dist only; nothing above engine/ includes this): MPI for
// CPU tensors, NCCL for CUDA tensors. Each call starts one collective and returns its handle; the
// Communicator checks shapes and devices before.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "engine/dist/communicator.h"

namespace selfsup::dist {

// Work whose completion is polled: wait() calls test() until it returns true and, past the deadline, prints
// which collective timed out on which rank and aborts the job (a peer died, hangs, or issued another
// collective). Polling is what lets MPI's non-blocking collectives progress while backward runs.
class PolledWork : public Work {
 public:
  PolledWork(std::string what, double timeout_s) : what_(std::move(what)), timeout_s_(timeout_s) {}
  void wait() final;
  const std::string& what() const { return what_; }

 protected:
  // Called once on timeout before the job is aborted (NCCL: abort the communicator).
  virtual void on_timeout() {}

 private:
  std::string what_;
  double timeout_s_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual WorkHandle all_reduce(Tensor t, ReduceOp op) = 0;      // in place
  virtual WorkHandle all_gather(Tensor in, Tensor out) = 0;      // out (size * in.numel()) contiguous
  virtual WorkHandle reduce_scatter(Tensor in, Tensor out) = 0;  // sum; in (size * out.numel())
  virtual WorkHandle broadcast(Tensor t, int root) = 0;
  virtual WorkHandle barrier(double timeout_s) = 0;
};

// Prints "selfsup rank R/N: <message>" to stderr and ends the whole job with `code` (MPI_Abort when MPI runs,
// else std::exit). Used by timeouts and by abort_job().
[[noreturn]] void fatal(int rank, int size, const std::string& message, int code);

#ifdef SELFSUP_HAVE_MPI
// MPI_Init_thread (funneled: only the thread that trains calls MPI) unless already initialised;
// MPI_ERRORS_RETURN on a duplicate of MPI_COMM_WORLD that the backend uses. Reports rank and size.
std::unique_ptr<Backend> make_mpi_backend(double timeout_s, int* rank, int* size);
void mpi_finalize();
[[noreturn]] void mpi_abort(int code);
#endif

#ifdef SELFSUP_HAVE_NCCL
// One NCCL communicator over `size` ranks on CUDA device `device`, with its own stream. Rank 0 makes the
// unique id; `bootstrap` (the MPI backend; may be null when size is 1) broadcasts it.
std::unique_ptr<Backend> make_nccl_backend(int rank, int size, int device, Backend* bootstrap, double timeout_s);
#endif

}  // namespace selfsup::dist
