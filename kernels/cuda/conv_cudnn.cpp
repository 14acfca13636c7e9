// 2-D convolution on the GPU through cuDNN 9 (NCHW, float and bf16 with fp32 compute): forward, backward
// data, backward weight. Same arguments and semantics as conv2d_*_cpu. The bias add and bias gradient are
// our own kernels (conv_bias.cu), for float and bf16 alike.
//
// cuDNN 9 still ships the legacy descriptor API (cudnnConvolutionForward/BackwardData/BackwardFilter and the
// cudnnFind*AlgorithmEx search) though it marks it deprecated in favour of the graph API; it is the simplest
// correct path, so this file silences the deprecation warnings and uses it.
//
// Per (device, shape, dtype, math mode) a plan caches the descriptors and, per direction, the algorithm
// measured by cudnnFind*AlgorithmEx the first time that direction runs (with a temporary search workspace)
// and its workspace size. A cuDNN handle per device is created lazily; a per-device mutex serialises
// set-stream + enqueue (both are cheap host calls) and the one-time searches, so any thread may call in.
// Workspaces are stream-ordered allocations (cudaMallocAsync / cudaFreeAsync on the caller's stream), so
// concurrent streams never share one; the backend's caching allocator can replace them at merge.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/conv_bias.h"
#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/cuda/nn_check.cuh"

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace selfsup::kernels {

namespace {

std::atomic<bool> g_allow_tf32{false};

// ---- RAII wrappers for cuDNN descriptors (destroy errors are ignored: destructors must not throw)
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { SELFSUP_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { SELFSUP_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d)); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc() { SELFSUP_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d)); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// ---- one cuDNN handle per device. The registry is never destroyed: destroying handles during static
// destruction, after the CUDA runtime may have shut down, can crash (PyTorch leaks them for the same reason).
struct DeviceHandle {
  std::mutex mu;  // held while the handle is bound to a stream and used
  cudnnHandle_t h = nullptr;
};

DeviceHandle& device_handle(int device) {
  static std::mutex registry_mu;
  static auto* registry = new std::map<int, std::unique_ptr<DeviceHandle>>();
  std::lock_guard<std::mutex> lock(registry_mu);
  auto& slot = (*registry)[device];
  if (!slot) {
    auto dh = std::make_unique<DeviceHandle>();
    SELFSUP_CUDNN_CHECK(cudnnCreate(&dh->h));  // on the current device, which is `device`
    slot = std::move(dh);
  }
  return *slot;
}

template <typename T>
constexpr cudnnDataType_t cudnn_dtype();
template <>
constexpr cudnnDataType_t cudnn_dtype<float>() {
  return CUDNN_DATA_FLOAT;
}
template <>
constexpr cudnnDataType_t cudnn_dtype<__nv_bfloat16>() {
  return CUDNN_DATA_BFLOAT16;
}

int to_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw std::runtime_error(std::string("conv2d_cuda: ") + what + " = " + std::to_string(v) + " does not fit cuDNN");
  return static_cast<int>(v);
}

// Descriptors of one (shape, dtype, math mode) and the algorithm chosen for each direction. A convolution
// descriptor per direction, because each direction's search may pick a different math type.
struct ConvPlan {
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv_fwd, conv_bwd_data, conv_bwd_filter;
  bool have_fwd = false, have_bwd_data = false, have_bwd_filter = false;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
  size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
};

using PlanKey = std::array<int64_t, 20>;

std::mutex g_plans_mu;
std::map<PlanKey, std::unique_ptr<ConvPlan>>& plans() {
  static auto* p = new std::map<PlanKey, std::unique_ptr<ConvPlan>>();  // see device_handle on why leaked
  return *p;
}

void set_conv(const Conv2dShape& s, cudnnDataType_t dt, bool tf32, ConvDesc& c) {
  SELFSUP_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
      c.d, to_int(s.pad_h, "pad_h"), to_int(s.pad_w, "pad_w"), to_int(s.stride_h, "stride_h"),
      to_int(s.stride_w, "stride_w"), to_int(s.dil_h, "dil_h"), to_int(s.dil_w, "dil_w"), CUDNN_CROSS_CORRELATION,
      CUDNN_DATA_FLOAT));  // fp32 accumulation for float and bf16
  SELFSUP_CUDNN_CHECK(cudnnSetConvolutionGroupCount(c.d, to_int(s.groups, "groups")));
  // float without TF32: FMA kernels only (exact fp32, as the CPU). float with TF32, or bf16: tensor cores allowed.
  const cudnnMathType_t math = (dt == CUDNN_DATA_FLOAT && !tf32) ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  SELFSUP_CUDNN_CHECK(cudnnSetConvolutionMathType(c.d, math));
}

template <typename T>
ConvPlan& plan_for(int device, const Conv2dShape& s) {
  const bool tf32 = g_allow_tf32.load();
  const cudnnDataType_t dt = cudnn_dtype<T>();
  const PlanKey key{device, static_cast<int64_t>(dt), tf32, s.N, s.C, s.H, s.W, s.K, s.R, s.S,
                    s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups, s.P, s.Q, 0};
  std::lock_guard<std::mutex> lock(g_plans_mu);
  auto& slot = plans()[key];
  if (slot) return *slot;
  if (s.groups < 1 || s.C % s.groups != 0 || s.K % s.groups != 0)
    throw std::runtime_error("conv2d_cuda: channels not divisible by groups");
  auto p = std::make_unique<ConvPlan>();
  SELFSUP_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x.d, CUDNN_TENSOR_NCHW, dt, to_int(s.N, "N"),
                                                    to_int(s.C, "C"), to_int(s.H, "H"), to_int(s.W, "W")));
  SELFSUP_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y.d, CUDNN_TENSOR_NCHW, dt, to_int(s.N, "N"),
                                                    to_int(s.K, "K"), to_int(s.P, "P"), to_int(s.Q, "Q")));
  SELFSUP_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w.d, dt, CUDNN_TENSOR_NCHW, to_int(s.K, "K"),
                                                    to_int(s.C / s.groups, "C/groups"), to_int(s.R, "R"),
                                                    to_int(s.S, "S")));
  set_conv(s, dt, tf32, p->conv_fwd);
  set_conv(s, dt, tf32, p->conv_bwd_data);
  set_conv(s, dt, tf32, p->conv_bwd_filter);
  int n, c, h, w;  // the caller's output size must be cuDNN's
  SELFSUP_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv_fwd.d, p->x.d, p->w.d, &n, &c, &h, &w));
  if (n != s.N || c != s.K || h != s.P || w != s.Q)
    throw std::runtime_error("conv2d_cuda: output size (" + std::to_string(s.P) + ", " + std::to_string(s.Q) +
                             ") differs from cuDNN's (" + std::to_string(h) + ", " + std::to_string(w) + ")");
  slot = std::move(p);
  return *slot;
}

// A stream-ordered device buffer, freed on the same stream (also when an exception unwinds).
struct StreamBuffer {
  void* ptr = nullptr;
  cudaStream_t stream;
  StreamBuffer(size_t bytes, cudaStream_t st) : stream(st) {
    if (bytes) SELFSUP_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, stream));
  }
  ~StreamBuffer() {
    if (ptr) cudaFreeAsync(ptr, stream);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
};

// Workspace offered to the one-time algorithm search: half the free memory, at most 1 GiB.
size_t search_workspace_bytes() {
  size_t free_b = 0, total_b = 0;
  SELFSUP_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return std::min<size_t>(free_b / 2, size_t{1} << 30);
}

// Picks the fastest successful result (cuDNN sorts them by time); with TF32 disallowed for float, the math
// type stays FMA whatever the result says.
template <typename Perf>
const Perf& pick(const std::vector<Perf>& perf, int returned, const char* what) {
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS) return perf[i];
  throw std::runtime_error(std::string("conv2d_cuda: cuDNN found no working ") + what + " algorithm");
}

void adopt_math(const ConvDesc& c, cudnnDataType_t dt, cudnnMathType_t m) {
  if (dt == CUDNN_DATA_FLOAT && !g_allow_tf32.load()) return;
  SELFSUP_CUDNN_CHECK(cudnnSetConvolutionMathType(c.d, m));
}

int current_device() {
  int d = 0;
  SELFSUP_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

}  // namespace

void conv2d_cuda_set_allow_tf32(bool allow) { g_allow_tf32.store(allow); }

void conv2d_cuda_clear_cache() {
  std::lock_guard<std::mutex> lock(g_plans_mu);
  plans().clear();
}

template <typename T>
void conv2d_fwd_cuda(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y, cudaStream_t stream) {
  if (s.N * s.K * s.P * s.Q == 0) return;
  const int dev = current_device();
  ConvPlan& p = plan_for<T>(dev, s);
  DeviceHandle& dh = device_handle(dev);
  std::lock_guard<std::mutex> lock(dh.mu);
  SELFSUP_CUDNN_CHECK(cudnnSetStream(dh.h, stream));
  if (!p.have_fwd) {  // measured once per shape; writes y, which the real call below overwrites
    int count = 0, returned = 0;
    SELFSUP_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(dh.h, &count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(count));
    const size_t ws_bytes = search_workspace_bytes();
    StreamBuffer ws(ws_bytes, stream);
    SELFSUP_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(dh.h, p.x.d, x, p.w.d, w, p.conv_fwd.d, p.y.d, y,
                                                                  count, &returned, perf.data(), ws.ptr, ws_bytes));
    const auto& best = pick(perf, returned, "forward");
    adopt_math(p.conv_fwd, cudnn_dtype<T>(), best.mathType);
    p.fwd_algo = best.algo;
    SELFSUP_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(dh.h, p.x.d, p.w.d, p.conv_fwd.d, p.y.d,
                                                                   p.fwd_algo, &p.fwd_ws));
    p.have_fwd = true;
  }
  const float one = 1.0f, zero = 0.0f;  // float scaling factors for float and bf16 data
  StreamBuffer ws(p.fwd_ws, stream);
  SELFSUP_CUDNN_CHECK(cudnnConvolutionForward(dh.h, &one, p.x.d, x, p.w.d, w, p.conv_fwd.d, p.fwd_algo, ws.ptr,
                                                 p.fwd_ws, &zero, p.y.d, y));
  if (bias) conv_bias_add_cuda<T>(s.N, s.K, s.P * s.Q, bias, y, stream);
}

template <typename T>
void conv2d_bwd_data_cuda(const Conv2dShape& s, const T* dy, const T* w, T* dx, cudaStream_t stream) {
  if (s.N * s.C * s.H * s.W == 0) return;
  const int dev = current_device();
  ConvPlan& p = plan_for<T>(dev, s);
  DeviceHandle& dh = device_handle(dev);
  std::lock_guard<std::mutex> lock(dh.mu);
  SELFSUP_CUDNN_CHECK(cudnnSetStream(dh.h, stream));
  if (!p.have_bwd_data) {
    int count = 0, returned = 0;
    SELFSUP_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(dh.h, &count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(count));
    const size_t ws_bytes = search_workspace_bytes();
    StreamBuffer ws(ws_bytes, stream);
    SELFSUP_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(dh.h, p.w.d, w, p.y.d, dy, p.conv_bwd_data.d,
                                                                       p.x.d, dx, count, &returned, perf.data(),
                                                                       ws.ptr, ws_bytes));
    const auto& best = pick(perf, returned, "backward-data");
    adopt_math(p.conv_bwd_data, cudnn_dtype<T>(), best.mathType);
    p.bwd_data_algo = best.algo;
    SELFSUP_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(dh.h, p.w.d, p.y.d, p.conv_bwd_data.d, p.x.d,
                                                                        p.bwd_data_algo, &p.bwd_data_ws));
    p.have_bwd_data = true;
  }
  const float one = 1.0f, zero = 0.0f;
  StreamBuffer ws(p.bwd_data_ws, stream);
  SELFSUP_CUDNN_CHECK(cudnnConvolutionBackwardData(dh.h, &one, p.w.d, w, p.y.d, dy, p.conv_bwd_data.d,
                                                      p.bwd_data_algo, ws.ptr, p.bwd_data_ws, &zero, p.x.d, dx));
}

template <typename T>
void conv2d_bwd_weight_cuda(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* dbias, cudaStream_t stream) {
  if (s.N * s.P * s.Q == 0) {  // no samples: zero gradients
    if (dw) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(T) * s.K * (s.C / s.groups) * s.R * s.S, stream));
    if (dbias) SELFSUP_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(T) * s.K, stream));
    return;
  }
  const int dev = current_device();
  ConvPlan& p = plan_for<T>(dev, s);
  DeviceHandle& dh = device_handle(dev);
  std::lock_guard<std::mutex> lock(dh.mu);
  SELFSUP_CUDNN_CHECK(cudnnSetStream(dh.h, stream));
  const float one = 1.0f, zero = 0.0f;
  if (dw) {
    if (!p.have_bwd_filter) {
      int count = 0, returned = 0;
      SELFSUP_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(dh.h, &count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(count));
      const size_t ws_bytes = search_workspace_bytes();
      StreamBuffer ws(ws_bytes, stream);
      SELFSUP_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(dh.h, p.x.d, x, p.y.d, dy,
                                                                           p.conv_bwd_filter.d, p.w.d, dw, count,
                                                                           &returned, perf.data(), ws.ptr, ws_bytes));
      const auto& best = pick(perf, returned, "backward-filter");
      adopt_math(p.conv_bwd_filter, cudnn_dtype<T>(), best.mathType);
      p.bwd_filter_algo = best.algo;
      SELFSUP_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          dh.h, p.x.d, p.y.d, p.conv_bwd_filter.d, p.w.d, p.bwd_filter_algo, &p.bwd_filter_ws));
      p.have_bwd_filter = true;
    }
    StreamBuffer ws(p.bwd_filter_ws, stream);
    SELFSUP_CUDNN_CHECK(cudnnConvolutionBackwardFilter(dh.h, &one, p.x.d, x, p.y.d, dy, p.conv_bwd_filter.d,
                                                          p.bwd_filter_algo, ws.ptr, p.bwd_filter_ws, &zero, p.w.d,
                                                          dw));
  }
  if (dbias) conv_bias_grad_cuda<T>(s.N, s.K, s.P * s.Q, dy, dbias, stream);
}

#define SELFSUP_INSTANTIATE_CONV_CUDA(T)                                                                     \
  template void conv2d_fwd_cuda<T>(const Conv2dShape&, const T*, const T*, const T*, T*, cudaStream_t);      \
  template void conv2d_bwd_data_cuda<T>(const Conv2dShape&, const T*, const T*, T*, cudaStream_t);           \
  template void conv2d_bwd_weight_cuda<T>(const Conv2dShape&, const T*, const T*, T*, T*, cudaStream_t);
SELFSUP_INSTANTIATE_CONV_CUDA(float)
SELFSUP_INSTANTIATE_CONV_CUDA(__nv_bfloat16)
#undef SELFSUP_INSTANTIATE_CONV_CUDA

}  // namespace selfsup::kernels
