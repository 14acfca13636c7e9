// The MPI transport for CPU tensors: non-blocking collectives (MPI_Iallreduce, MPI_Iallgather,
// MPI_Ireduce_scatter_block, MPI_Ibcast, MPI_Ibarrier) on a duplicate of MPI_COMM_WORLD whose error handler
// is MPI_ERRORS_RETURN, so a failing call throws selfsup::Error with MPI's own message instead of killing
// the process without a word. Completion is polled with MPI_Test (backend.h: PolledWork), which also drives
// the progress of messages in flight.
#ifdef SELFSUP_HAVE_MPI
#include <mpi.h>

#include "engine/autograd/grad_mode.h"
#include "engine/dist/backend.h"

namespace selfsup::dist {

namespace {

MPI_Comm g_comm = MPI_COMM_NULL;

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str_cat("dist: ", call, " failed: ", std::string(msg, static_cast<size_t>(len))));
}
#define SELFSUP_MPI_CHECK(call) mpi_check((call), #call)

// The MPI type of a reduction over dtype; 16-bit floats have no MPI arithmetic type.
MPI_Datatype reduce_type(DType d, const char* op) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    default:
      throw Error(str_cat("dist::", op, ": MPI cannot reduce ", dtype_name(d),
                          " tensors (convert to float32 first)"));
  }
}

int count_of(int64_t n, const char* op) {
  SELFSUP_CHECK(n < (int64_t(1) << 31), "dist::", op, ": ", n, " elements exceed MPI's int count");
  return static_cast<int>(n);
}

class MpiWork final : public PolledWork {
 public:
  MpiWork(std::string what, double timeout_s, std::vector<Tensor> keep, std::function<void()> on_done)
      : PolledWork(std::move(what), timeout_s), keep_(std::move(keep)), on_done_(std::move(on_done)) {}
  MPI_Request* request() { return &req_; }
  bool test() override {
    if (done_) return true;
    int flag = 0;
    SELFSUP_MPI_CHECK(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE));
    if (!flag) return false;
    done_ = true;
    if (on_done_) on_done_();
    keep_.clear();
    return true;
  }

 private:
  MPI_Request req_ = MPI_REQUEST_NULL;
  bool done_ = false;
  std::vector<Tensor> keep_;  // the buffers MPI reads and writes until completion
  std::function<void()> on_done_;
};

class MpiBackend final : public Backend {
 public:
  MpiBackend(double timeout_s, int size) : timeout_s_(timeout_s), size_(size) {}

  WorkHandle all_reduce(Tensor t, ReduceOp op) override {
    MPI_Datatype type = reduce_type(t.dtype(), "all_reduce");
    std::function<void()> done;
    if (op == ReduceOp::mean) {
      const double inv = 1.0 / size_;
      done = [t, inv]() mutable {
        NoGradGuard ng;
        t.mul_(inv);
      };
    }
    auto w = std::make_unique<MpiWork>(str_cat("all_reduce of ", shape_str(t.sizes())), timeout_s_,
                                       std::vector<Tensor>{t}, std::move(done));
    SELFSUP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), count_of(t.numel(), "all_reduce"), type, MPI_SUM,
                                     g_comm, w->request()));
    return w;
  }

  WorkHandle all_gather(Tensor in, Tensor out) override {
    const int bytes = count_of(in.numel() * static_cast<int64_t>(dtype_size(in.dtype())), "all_gather");
    auto w = std::make_unique<MpiWork>(str_cat("all_gather of ", shape_str(in.sizes())), timeout_s_,
                                       std::vector<Tensor>{in, out}, nullptr);
    SELFSUP_MPI_CHECK(MPI_Iallgather(in.raw_data(), bytes, MPI_BYTE, out.raw_data(), bytes, MPI_BYTE, g_comm,
                                     w->request()));
    return w;
  }

  WorkHandle reduce_scatter(Tensor in, Tensor out) override {
    MPI_Datatype type = reduce_type(in.dtype(), "reduce_scatter");
    auto w = std::make_unique<MpiWork>(str_cat("reduce_scatter of ", shape_str(in.sizes())), timeout_s_,
                                       std::vector<Tensor>{in, out}, nullptr);
    SELFSUP_MPI_CHECK(MPI_Ireduce_scatter_block(in.raw_data(), out.raw_data(), count_of(out.numel(), "reduce_scatter"),
                                                type, MPI_SUM, g_comm, w->request()));
    return w;
  }

  WorkHandle broadcast(Tensor t, int root) override {
    const int bytes = count_of(t.numel() * static_cast<int64_t>(dtype_size(t.dtype())), "broadcast");
    auto w = std::make_unique<MpiWork>(str_cat("broadcast of ", shape_str(t.sizes())), timeout_s_,
                                       std::vector<Tensor>{t}, [t]() { t.bump_version(); });
    SELFSUP_MPI_CHECK(MPI_Ibcast(t.raw_data(), bytes, MPI_BYTE, root, g_comm, w->request()));
    return w;
  }

  WorkHandle barrier(double timeout_s) override {
    auto w = std::make_unique<MpiWork>("barrier", timeout_s, std::vector<Tensor>{}, nullptr);
    SELFSUP_MPI_CHECK(MPI_Ibarrier(g_comm, w->request()));
    return w;
  }

 private:
  double timeout_s_;
  int size_;
};

}  // namespace

std::unique_ptr<Backend> make_mpi_backend(double timeout_s, int* rank, int* size) {
  int initialized = 0;
  SELFSUP_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    SELFSUP_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors return to the caller (checked above) rather than aborting inside MPI without a message.
  SELFSUP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  SELFSUP_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_comm));
  SELFSUP_MPI_CHECK(MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN));
  SELFSUP_MPI_CHECK(MPI_Comm_rank(g_comm, rank));
  SELFSUP_MPI_CHECK(MPI_Comm_size(g_comm, size));
  return std::make_unique<MpiBackend>(timeout_s, *size);
}

void mpi_finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_comm != MPI_COMM_NULL) MPI_Comm_free(&g_comm);
  MPI_Finalize();
}

[[noreturn]] void mpi_abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest if it did
}

}  // namespace selfsup::dist
#endif  // SELFSUP_HAVE_MPI
