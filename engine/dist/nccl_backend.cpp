// The NCCL transport for CUDA tensors: one communicator per process (rank r on its CUDA device), with its
// own stream so collectives overlap the compute stream. Ordering: the NCCL stream waits for an event
// recorded on the caller's current stream (the gradient is written there), and completion is an event on
// the NCCL stream that the caller's stream waits on. Completion is polled on the host together with
// ncclCommGetAsyncError, so a peer that died (NCCL error) or hangs (deadline) ends the job with a message
// instead of a kernel that spins forever; on timeout the communicator is aborted first (ncclCommAbort).
// Compiled when CMake found NCCL; it has compiled here but has only run where a GPU was lent
// (bench/gpu_check.sh: a 1-rank smoke test; tests/dist: 2 ranks wherever 2+ GPUs exist).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "engine/autograd/grad_mode.h"
#include "engine/dist/backend.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"

namespace selfsup::dist {

namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8:
    case DType::b8: return ncclUint8;
  }
  return ncclUint8;
}

class NcclWork final : public PolledWork {
 public:
  NcclWork(std::string what, double timeout_s, ncclComm_t comm, int device, cudaEvent_t done,
           std::vector<Tensor> keep)
      : PolledWork(std::move(what), timeout_s), comm_(comm), device_(device), done_event_(done),
        keep_(std::move(keep)) {}
  ~NcclWork() override {
    if (done_event_) cudaEventDestroy(done_event_);
  }
  bool test() override {
    if (done_) return true;
    ncclResult_t async = ncclSuccess;
    SELFSUP_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    SELFSUP_CHECK(async == ncclSuccess || async == ncclInProgress, "dist: NCCL ", what(), " failed: ",
                  ncclGetErrorString(async));
    const cudaError_t q = cudaEventQuery(done_event_);
    if (q == cudaErrorNotReady) return false;
    SELFSUP_CUDA_CHECK(q);
    // The caller's stream continues after the collective without a host round trip for later work.
    kernels::cuda::DeviceGuard g(device_);
    SELFSUP_CUDA_CHECK(cudaStreamWaitEvent(kernels::cuda::current_stream(device_), done_event_, 0));
    done_ = true;
    keep_.clear();
    return true;
  }

 protected:
  void on_timeout() override { ncclCommAbort(comm_); }

 private:
  ncclComm_t comm_;
  int device_;
  cudaEvent_t done_event_;
  std::vector<Tensor> keep_;
  bool done_ = false;
};

class NcclBackend final : public Backend {
 public:
  NcclBackend(int rank, int size, int device, Backend* bootstrap, double timeout_s)
      : size_(size), device_(device), timeout_s_(timeout_s) {
    kernels::cuda::DeviceGuard g(device_);
    ncclUniqueId id{};
    if (rank == 0) SELFSUP_NCCL_CHECK(ncclGetUniqueId(&id));
    if (size > 1) {
      SELFSUP_CHECK(bootstrap != nullptr, "dist: NCCL over ", size, " ranks needs MPI to share its unique id");
      Tensor blob = Tensor::from_blob(&id, {static_cast<int64_t>(sizeof id)}, DType::u8);
      bootstrap->broadcast(blob, 0)->wait();
      std::memcpy(&id, blob.raw_data(), sizeof id);
    }
    SELFSUP_NCCL_CHECK(ncclCommInitRank(&comm_, size, id, rank));
    SELFSUP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclBackend() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  WorkHandle all_reduce(Tensor t, ReduceOp op) override {
    return launch(str_cat("all_reduce of ", shape_str(t.sizes())), {t}, [&] {
      return ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           op == ReduceOp::mean ? ncclAvg : ncclSum, comm_, stream_);
    });
  }
  WorkHandle all_gather(Tensor in, Tensor out) override {
    return launch(str_cat("all_gather of ", shape_str(in.sizes())), {in, out}, [&] {
      return ncclAllGather(in.raw_data(), out.raw_data(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()),
                           comm_, stream_);
    });
  }
  WorkHandle reduce_scatter(Tensor in, Tensor out) override {
    return launch(str_cat("reduce_scatter of ", shape_str(in.sizes())), {in, out}, [&] {
      return ncclReduceScatter(in.raw_data(), out.raw_data(), static_cast<size_t>(out.numel()),
                               nccl_type(in.dtype()), ncclSum, comm_, stream_);
    });
  }
  WorkHandle broadcast(Tensor t, int root) override {
    return launch(str_cat("broadcast of ", shape_str(t.sizes())), {t}, [&] {
      return ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                           comm_, stream_);
    });
  }
  WorkHandle barrier(double timeout_s) override {
    // NCCL has no barrier: a one-element all-reduce, waited with the backend's deadline.
    (void)timeout_s;
    Tensor one = Tensor::zeros({1}, DType::f32, Device::cuda(device_));
    return all_reduce(one, ReduceOp::sum);
  }

 private:
  template <typename F>
  WorkHandle launch(std::string what, std::vector<Tensor> keep, F&& call) {
    kernels::cuda::DeviceGuard g(device_);
    cudaEvent_t ready = nullptr, done = nullptr;
    SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    SELFSUP_CUDA_CHECK(cudaEventRecord(ready, kernels::cuda::current_stream(device_)));
    SELFSUP_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);
    SELFSUP_NCCL_CHECK(call());
    SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    SELFSUP_CUDA_CHECK(cudaEventRecord(done, stream_));
    return std::make_unique<NcclWork>(std::move(what), timeout_s_, comm_, device_, done, std::move(keep));
  }

  int size_;
  int device_;
  double timeout_s_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_nccl_backend(int rank, int size, int device, Backend* bootstrap, double timeout_s) {
  return std::make_unique<NcclBackend>(rank, size, device, bootstrap, timeout_s);
}

}  // namespace selfsup::dist
