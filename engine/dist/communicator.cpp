// The Communicator: the job's shape from the launcher's environment, argument checks, and the choice of
// transport per tensor (CPU -> MPI, CUDA -> NCCL). In a single process every collective is the identity.
#include "engine/dist/communicator.h"

#include <sched.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "engine/dist/backend.h"

namespace selfsup::dist {

namespace {

using Clock = std::chrono::steady_clock;

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  SELFSUP_CHECK(end && *end == '\0' && x >= 0 && x < (1 << 30), "dist: environment variable ", name, "='", v,
                "' is not a non-negative integer");
  return static_cast<int>(x);
}

bool g_distributed = false;
int g_rank = 0, g_size = 1;
double g_wait_s = 0;  // time blocked in PolledWork::wait, all communicators (the training thread alone waits)

}  // namespace

void PolledWork::wait() {
  if (test()) return;
  const Clock::time_point t0 = Clock::now();
  struct Account {  // adds the blocked time however wait() is left
    Clock::time_point t0;
    ~Account() { g_wait_s += std::chrono::duration<double>(Clock::now() - t0).count(); }
  } account{t0};
  for (int spins = 0;; ++spins) {
    if (test()) return;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (waited > timeout_s_) {
      on_timeout();
      fatal(g_rank, g_size,
            str_cat(what_, " did not complete within ", timeout_s_,
                    " s (SELFSUP_DIST_TIMEOUT): another rank died, hangs, or issued a different collective; "
                    "aborting the job"),
            1);
    }
    // Spin briefly (a collective usually completes within microseconds of its last peer), then sleep so a
    // waiting rank does not take the core of a rank that still computes.
    if (spins < 2000)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

[[noreturn]] void fatal(int rank, int size, const std::string& message, int code) {
  std::fprintf(stderr, "selfsup rank %d/%d: %s\n", rank, size, message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
#ifdef SELFSUP_HAVE_MPI
  if (g_distributed) mpi_abort(code);
#endif
  std::_Exit(code);
}

std::unique_ptr<Communicator> Communicator::from_environment() {
  std::unique_ptr<Communicator> c(new Communicator());
  int env_rank = 0, env_size = 1;
  bool launched = false;
  if (env("OMPI_COMM_WORLD_SIZE")) {
    c->launcher_ = "mpirun";
    env_rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    env_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    c->local_rank_ = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
    launched = true;
  } else if (env("SLURM_NTASKS") && env("SLURM_PROCID")) {
    c->launcher_ = "srun";
    env_rank = env_int("SLURM_PROCID", 0);
    env_size = env_int("SLURM_NTASKS", 1);
    c->local_rank_ = env_int("SLURM_LOCALID", 0);
    launched = true;
  }
  if (const char* t = env("SELFSUP_DIST_TIMEOUT")) {
    char* end = nullptr;
    c->timeout_s_ = std::strtod(t, &end);
    SELFSUP_CHECK(end && *end == '\0' && c->timeout_s_ > 0, "dist: SELFSUP_DIST_TIMEOUT='", t,
                  "' must be a positive number of seconds");
  }
  SELFSUP_CHECK(env_size >= 1 && env_rank < env_size, "dist: ", c->launcher_, " reports rank ", env_rank, " of ",
                env_size);
  c->rank_ = env_rank;
  c->size_ = env_size;
  c->launched_ = launched;
  if (!launched) return c;
#ifdef SELFSUP_HAVE_MPI
  int mpi_rank = 0, mpi_size = 1;
  c->mpi_ = make_mpi_backend(c->timeout_s_, &mpi_rank, &mpi_size);
  SELFSUP_CHECK(mpi_rank == env_rank && mpi_size == env_size, "dist: ", c->launcher_, " says rank ", env_rank, " of ",
                env_size, " but MPI sees rank ", mpi_rank, " of ", mpi_size,
                c->launcher_ == "srun" ? " (srun needs --mpi=pmix for OpenMPI)" : "");
  g_distributed = env_size > 1;
#else
  SELFSUP_CHECK(env_size == 1, "dist: launched as rank ", env_rank, " of ", env_size, " by ", c->launcher_,
                ", but this selfsup was built without MPI: install libopenmpi-dev (scripts/install-deps.sh) and "
                "rebuild");
#endif
  g_rank = c->rank_;
  g_size = c->size_;
  return c;
}

std::unique_ptr<Communicator> Communicator::single_rank_transports() {
  std::unique_ptr<Communicator> c(new Communicator());
  c->launched_ = true;
  c->launcher_ = "one rank, transports on";
  return c;
}

Communicator& Communicator::single_process() {
  static Communicator c;
  return c;
}

Communicator::~Communicator() {
  nccl_.reset();
  const bool had_mpi = mpi_ != nullptr;
  mpi_.reset();
#ifdef SELFSUP_HAVE_MPI
  if (had_mpi) mpi_finalize();
#else
  (void)had_mpi;
#endif
}

Backend& Communicator::backend_for(const Tensor& t, const char* op) {
  SELFSUP_CHECK(t.defined() && t.is_contiguous(), "dist::", op, ": the tensor must be defined and contiguous");
  ++stats_.calls;
  stats_.bytes += t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
  if (t.device().is_cpu()) {
    SELFSUP_CHECK(mpi_ != nullptr, "dist::", op, ": internal: no MPI backend");
    return *mpi_;
  }
#ifdef SELFSUP_HAVE_NCCL
  if (!nccl_) nccl_ = make_nccl_backend(rank_, size_, t.device().index, mpi_.get(), timeout_s_);
  return *nccl_;
#else
  throw Error(str_cat("dist::", op, ": a ", t.device().str(),
                      " tensor needs the NCCL backend, which this build lacks (NCCL was not found at configure "
                      "time: the CUDA toolkit's or pip's nvidia-nccl-cu12)"));
#endif
}

namespace {

class DoneWork final : public Work {
 public:
  void wait() override {}
  bool test() override { return true; }
};

}  // namespace

bool Communicator::local_only(const Tensor& t) const {
  return size_ == 1 && (t.device().is_cpu() ? mpi_ == nullptr : !launched_);
}

WorkHandle Communicator::all_reduce_async(Tensor& t, ReduceOp op) {
  if (local_only(t)) return std::make_unique<DoneWork>();
  return backend_for(t, "all_reduce").all_reduce(t, op);
}

void Communicator::all_reduce(Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }

WorkHandle Communicator::all_gather_async(const Tensor& x, Tensor& out) {
  SELFSUP_CHECK(x.dim() >= 1 && x.is_contiguous(), "dist::all_gather: needs a contiguous tensor with a leading (row) "
                "dimension, got ", shape_str(x.sizes()));
  Shape out_shape = x.sizes();
  out_shape[0] *= size_;
  SELFSUP_CHECK(out.defined() && out.is_contiguous() && out.sizes() == out_shape && out.dtype() == x.dtype() &&
                    out.device() == x.device(),
                "dist::all_gather: the output must be a contiguous ", dtype_name(x.dtype()), " tensor of shape ",
                shape_str(out_shape), " on ", x.device().str());
  if (local_only(x)) {
    out.copy_(x);
    return std::make_unique<DoneWork>();
  }
  return backend_for(x, "all_gather").all_gather(x, out);
}

Tensor Communicator::all_gather(const Tensor& x) {
  SELFSUP_CHECK(x.dim() >= 1, "dist::all_gather: needs a tensor with a leading (row) dimension, got ",
                shape_str(x.sizes()));
  Tensor xc = x.contiguous();
  if (local_only(xc)) return xc;
  Shape out_shape = xc.sizes();
  out_shape[0] *= size_;
  Tensor out = Tensor::empty(out_shape, xc.dtype(), xc.device());
  all_gather_async(xc, out)->wait();
  return out;
}

Tensor Communicator::reduce_scatter(const Tensor& x) {
  SELFSUP_CHECK(x.dim() >= 1 && x.size(0) % size_ == 0, "dist::reduce_scatter: the leading dimension of ",
                shape_str(x.sizes()), " must be a multiple of the world size ", size_);
  Tensor xc = x.contiguous();
  if (local_only(xc)) return xc;
  Shape out_shape = xc.sizes();
  out_shape[0] /= size_;
  Tensor out = Tensor::empty(out_shape, xc.dtype(), xc.device());
  backend_for(xc, "reduce_scatter").reduce_scatter(xc, out)->wait();
  return out;
}

WorkHandle Communicator::broadcast_async(Tensor& t, int root) {
  SELFSUP_CHECK(root >= 0 && root < size_, "dist::broadcast: root ", root, " outside [0, ", size_, ")");
  if (local_only(t)) return std::make_unique<DoneWork>();
  return backend_for(t, "broadcast").broadcast(t, root);
}

void Communicator::broadcast(Tensor& t, int root) { broadcast_async(t, root)->wait(); }

CommStats Communicator::stats() const {
  CommStats s = stats_;
  s.wait_s = g_wait_s;
  return s;
}

void Communicator::barrier(double timeout_s) {
  if (mpi_) mpi_->barrier(timeout_s > 0 ? timeout_s : timeout_s_)->wait();
}

double Communicator::mean(double v) {
  Tensor t = Tensor::from_vector(std::vector<double>{v}, {1});
  all_reduce(t, ReduceOp::mean);
  return t.item();
}

int64_t Communicator::broadcast_value(int64_t v, int root) {
  Tensor t = Tensor::from_vector(std::vector<int64_t>{v}, {1});
  broadcast(t, root);
  return static_cast<int64_t>(t.item());
}

Communicator& world() {
  static std::unique_ptr<Communicator> c = Communicator::from_environment();
  return *c;
}

bool in_distributed_job() { return g_distributed; }

bool mpi_built() {
#ifdef SELFSUP_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#ifdef SELFSUP_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

void abort_job(const std::string& message, int code) {
  if (!g_distributed) return;
  fatal(g_rank, g_size, "error: " + message, code);
}

}  // namespace selfsup::dist
