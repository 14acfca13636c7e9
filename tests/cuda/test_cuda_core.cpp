// CUDA backend basics: Philox fills identical to the CPU's bit for bit, to(Device) round trips (contiguous,
// strided, every dtype, autograd both ways), the caching allocator's reuse and statistics, cuBLAS GEMM
// against the CPU (transposes, batched, bf16), casts and the vectorised elementwise path on large tensors.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "engine/autograd/grad_mode.h"
#include "engine/core/cuda_allocator.h"
#include "engine/core/cuda_context.h"
#include "engine/ops/dispatch.h"
#include "engine/ops/ops.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/device.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {
const Device kCuda = Device::cuda(0);

// Bytes of a tensor (any device) as a host vector.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = t.detach().to(Device::cpu()).contiguous();
  std::vector<unsigned char> b(static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
  if (!b.empty()) std::memcpy(b.data(), c.raw_data(), b.size());
  return b;
}

// A tensor of `dt` filled on the given device by the table's random kernel.
Tensor random_on(Device d, const Shape& shape, DType dt, bool normal, uint64_t seed, uint64_t offset) {
  Tensor t = Tensor::empty(shape, dt, d);
  auto& tab = kernel_table(d.type);
  if (normal) {
    tab.fill_normal(dt, t.numel(), seed, 5, offset, t.raw_data());
  } else {
    tab.fill_uniform(dt, t.numel(), seed, 5, offset, t.raw_data());
  }
  return t;
}
}  // namespace

TEST_CASE("cuda: device context") {
  CHECK(cuda_device_count() >= 1);
  CHECK(default_device() == kCuda);
  CHECK(parse_device("auto") == kCuda);
  CHECK(parse_device("cuda:0") == kCuda);
  CHECK_THROWS(parse_device("cuda:999"));
  kernels::cuda::DeviceProps p = kernels::cuda::device_props(0);
  CHECK(p.total_memory > 0);
  CHECK(kernels::cuda::default_stream(0) == kernels::cuda::current_stream(0));
  {
    kernels::cuda::Stream side(0);
    kernels::cuda::StreamGuard g(0, side.get());
    CHECK(kernels::cuda::current_stream(0) == side.get());
  }
  CHECK(kernels::cuda::default_stream(0) == kernels::cuda::current_stream(0));
  kernels::cuda::Event a(true), b(true);
  a.record(kernels::cuda::current_stream(0));
  b.record(kernels::cuda::current_stream(0));
  b.synchronize();
  CHECK(a.elapsed_ms(b) >= 0.0f);
}

TEST_CASE("cuda: Philox fills are bit-identical to the CPU") {
  for (DType dt : {DType::f32, DType::f64})
    for (bool normal : {false, true})
      for (int64_t n : {1, 7, 1000, 1 << 20}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(normal);
        CAPTURE(n);
        Tensor c = random_on(Device::cpu(), {n}, dt, normal, 1234567, 99);
        Tensor g = random_on(kCuda, {n}, dt, normal, 1234567, 99);
        CHECK(bytes_of(c) == bytes_of(g));
      }
}

TEST_CASE("cuda: to(Device) round trips, every dtype, contiguous and strided") {
  Generator gen(7, 0);
  Tensor base = Tensor::randn({5, 6, 7}, DType::f64, &gen);
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::b8}) {
    CAPTURE(dtype_name(dt));
    Tensor x = mul(base, 10.0).to(dt);
    Tensor back = x.to(kCuda).to(Device::cpu());
    CHECK(back.device() == Device::cpu());
    CHECK(bytes_of(back) == bytes_of(x));
    Tensor strided = x.permute({2, 0, 1}).slice(1, 1, 5, 2);
    Tensor sback = strided.to(kCuda).to(Device::cpu());
    CHECK(sback.sizes() == strided.sizes());
    CHECK(bytes_of(sback) == bytes_of(strided));
    // strided on the GPU side too (made contiguous there before the copy)
    Tensor g = x.to(kCuda).permute({1, 2, 0});
    CHECK(bytes_of(g.to(Device::cpu())) == bytes_of(x.permute({1, 2, 0})));
  }
  CHECK(Tensor::zeros({0, 3}, DType::f32, kCuda).to(Device::cpu()).numel() == 0);
}

TEST_CASE("cuda: to(Device) is differentiable both ways") {
  Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}).set_requires_grad(true);
  Tensor y = mul(x.to(kCuda), 3.0);           // backward: cuda -> cpu
  Tensor z = sum(mul(y.to(Device::cpu()), y.to(Device::cpu())));  // cpu <- cuda
  z.backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().device() == Device::cpu());
  CHECK(x.grad().to_vector() == std::vector<double>{18, 36, 54, 72});
}

TEST_CASE("cuda: fill_, zeros, item, printing, cross-device copy_") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::u8, DType::b8}) {
    CAPTURE(dtype_name(dt));
    Tensor t = Tensor::full({3, 5}, 1.0, dt, kCuda);
    CHECK(sum(t.to(DType::f64)).item() == 15.0);
    t.zero_();
    CHECK(sum(t.to(DType::f64)).item() == 0.0);
  }
  Tensor g = Tensor::empty({4}, DType::f32, kCuda);
  g.copy_(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4}));
  CHECK(g.to_vector() == std::vector<double>{1, 2, 3, 4});
  CHECK(g.str().find("cuda:0") != std::string::npos);
}

TEST_CASE("cuda: caching allocator reuses blocks and keeps statistics") {
  cuda_empty_cache();
  cuda_reset_peak_memory_stats(0);
  const CudaMemoryStats s0 = cuda_memory_stats(0);
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({1000, 1000}, DType::f32, kCuda);  // 4 MB: large class
    first = a.raw_data();
    CHECK(cuda_memory_stats(0).allocated >= s0.allocated + 4000000);
  }
  const CudaMemoryStats s1 = cuda_memory_stats(0);
  CHECK(s1.allocated == s0.allocated);  // freed into the cache...
  CHECK(s1.reserved > s0.reserved);     // ...not to the driver
  {
    Tensor b = Tensor::empty({1000, 1000}, DType::f32, kCuda);
    CHECK(b.raw_data() == first);  // same class, same stream: the cached block comes back
  }
  const CudaMemoryStats s2 = cuda_memory_stats(0);
  CHECK(s2.n_cache_hit > s1.n_cache_hit);
  CHECK(s2.n_cuda_malloc == s1.n_cuda_malloc);
  CHECK(s2.peak_allocated >= 4000000);
  {  // another stream does not take the block
    kernels::cuda::Stream side(0);
    kernels::cuda::StreamGuard sg(0, side.get());
    Tensor c = Tensor::empty({1000, 1000}, DType::f32, kCuda);
    CHECK(c.raw_data() != first);
  }
  cuda_empty_cache();
  CHECK(cuda_memory_stats(0).reserved < s2.reserved);
  MESSAGE(cuda_memory_summary(0));
}

namespace {
std::atomic<bool> g_side_release{false};
// Holds a stream until g_side_release is set (at most 5 s, so that a driver which serialises an allocation
// behind it cannot deadlock the test).
void hold_stream(void*) {
  const auto t0 = std::chrono::steady_clock::now();
  while (!g_side_release.load() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
  }
}
}  // namespace

TEST_CASE("cuda: record_stream keeps a freed block from reuse until the other stream's work is done") {
  cuda_empty_cache();
  kernels::cuda::Stream side(0);
  g_side_release = false;
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({1000, 1000}, DType::f32, kCuda);  // on the default stream
    first = a.raw_data();
    SELFSUP_CUDA_CHECK(cudaLaunchHostFunc(side.get(), hold_stream, nullptr));  // "work" on the side stream
    cuda_record_stream(a, side.get());
  }  // freed: an event is recorded on the side stream, behind the held work
  Tensor b = Tensor::empty({1000, 1000}, DType::f32, kCuda);
  CHECK(b.raw_data() != first);  // the side stream may still be using the old block
  g_side_release = true;
  side.synchronize();
  Tensor c = Tensor::empty({1000, 1000}, DType::f32, kCuda);
  CHECK(c.raw_data() == first);  // its event has completed: back in the default stream's cache
}

TEST_CASE("cuda: guard mode catches nothing on a clean op and reports the sizes") {
  cuda_set_guard_mode(true);
  {
    Tensor a = Tensor::ones({37}, DType::f32, kCuda);
    Tensor b = add(a, a);
    CHECK(b.to_vector()[36] == 2.0);
  }
  CHECK(cuda_guard_check().empty());
  cuda_set_guard_mode(false);
}

TEST_CASE("cuda: cuBLAS GEMM matches the CPU (transposes, batched, leading dims, bf16)") {
  kernels::set_tf32(false);
  Generator gen(11, 0);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      const int64_t B = 3, M = 37, N = 29, K = 45;
      Tensor a = Tensor::randn(ta ? Shape{B, K, M} : Shape{B, M, K}, DType::f32, &gen);
      Tensor b = Tensor::randn(tb ? Shape{B, N, K} : Shape{B, K, N}, DType::f32, &gen);
      // Transpose on each device (to(Device) would make a transposed view contiguous, hiding the flags).
      auto op = [](const Tensor& t, bool tr) { return tr ? t.transpose(1, 2) : t; };
      Tensor c_cpu = matmul(op(a, ta), op(b, tb));
      Tensor c_gpu = matmul(op(a.to(kCuda), ta), op(b.to(kCuda), tb));
      CloseResult r = allclose(c_gpu.to(Device::cpu()), c_cpu, 1e-4, 1e-4);
      INFO(r.message);
      CHECK(r.ok);
      // sliced operand: leading dimension larger than the row length
      Tensor wide = Tensor::randn({M, K + 9}, DType::f32, &gen);
      Tensor w2 = Tensor::randn({K, N}, DType::f32, &gen);
      CloseResult r2 = allclose(matmul(wide.to(kCuda).slice(1, 3, 3 + K), w2.to(kCuda)).to(Device::cpu()),
                                matmul(wide.slice(1, 3, 3 + K), w2), 1e-4, 1e-4);
      INFO(r2.message);
      CHECK(r2.ok);
    }
  // TF32 on: same result to TF32 precision
  kernels::set_tf32(true);
  Tensor a = Tensor::randn({64, 128}, DType::f32, &gen), b = Tensor::randn({128, 32}, DType::f32, &gen);
  CHECK(allclose(matmul(a.to(kCuda), b.to(kCuda)).to(Device::cpu()), matmul(a, b), 5e-2, 1e-2).ok);
  // bf16: bf16 inputs, float accumulation, compared with the float product of the same rounded inputs
  Tensor a16 = a.to(DType::bf16), b16 = b.to(DType::bf16);
  Tensor ref = matmul(a16.to(DType::f32), b16.to(DType::f32));
  Tensor c16 = Tensor::empty({64, 32}, DType::bf16, kCuda);
  Tensor ga = a16.to(kCuda), gb = b16.to(kCuda);
  kernel_table(DeviceType::cuda).gemm_batched(DType::bf16, false, false, 1, 64, 32, 128, 1.0, ga.raw_data(), 128, 0,
                                              gb.raw_data(), 32, 0, 0.0, c16.raw_data(), 32, 0);
  CloseResult r = allclose(c16.to(Device::cpu()).to(DType::f32), ref, 0.1, 1e-2);
  INFO(r.message);
  CHECK(r.ok);
}

TEST_CASE("cuda: casts agree with the CPU bit for bit") {
  Generator gen(3, 0);
  Tensor x = mul(Tensor::randn({4099}, DType::f64, &gen), 300.0);
  for (DType from : {DType::f64, DType::f32, DType::bf16, DType::f16, DType::i64, DType::i32})
    for (DType to : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::b8}) {
      CAPTURE(dtype_name(from));
      CAPTURE(dtype_name(to));
      Tensor src = x.to(from);
      CHECK(bytes_of(src.to(kCuda).to(to)) == bytes_of(src.to(to)));
      Tensor strided = src.slice(0, 1, 4099, 3);
      CHECK(bytes_of(strided.to(kCuda).to(to)) == bytes_of(strided.to(to)));
    }
}

TEST_CASE("cuda: elementwise on large, unaligned and broadcast operands; bf16 elementwise") {
  Generator gen(5, 0);
  const int64_t n = (1 << 22) + 3;
  Tensor a = Tensor::randn({n}, DType::f32, &gen), b = Tensor::randn({n}, DType::f32, &gen);
  Tensor ga = a.to(kCuda), gb = b.to(kCuda);
  CHECK(bytes_of(add(ga, gb)) == bytes_of(add(a, b)));
  CHECK(bytes_of(mul(ga, gb)) == bytes_of(mul(a, b)));
  // unaligned views (offset by one element) take the strided kernel
  CHECK(bytes_of(add(ga.slice(0, 1, n), gb.slice(0, 0, n - 1))) == bytes_of(add(a.slice(0, 1, n), b.slice(0, 0, n - 1))));
  // broadcast scalar and rows
  Tensor m = Tensor::randn({513, 1031}, DType::f32, &gen), r = Tensor::randn({1031}, DType::f32, &gen);
  CHECK(bytes_of(add(m.to(kCuda), r.to(kCuda))) == bytes_of(add(m, r)));
  CHECK(bytes_of(mul(m.to(kCuda), Tensor::scalar(2.5))) == bytes_of(mul(m, 2.5)));
  // bf16 add on CUDA equals float add rounded to bf16 (what the CPU cast path produces)
  Tensor a16 = a.to(DType::bf16), b16 = b.to(DType::bf16);
  Tensor sum16 = Tensor::empty({n}, DType::bf16, kCuda);
  Tensor ga16 = a16.to(kCuda), gb16 = b16.to(kCuda);
  const int64_t st[1] = {1};
  kernel_table(DeviceType::cuda).binary(DType::bf16, kernels::BinaryOp::add, 1, &n, {sum16.raw_data(), st},
                                        {ga16.raw_data(), st}, {gb16.raw_data(), st});
  CHECK(bytes_of(sum16) == bytes_of(add(a16.to(DType::f32), b16.to(DType::f32)).to(DType::bf16)));
}

TEST_CASE("cuda: reductions on big rows and columns") {
  Generator gen(9, 0);
  Tensor x = Tensor::randn({3, 200001}, DType::f32, &gen);
  Tensor gx = x.to(kCuda);
  CHECK(allclose(sum(gx, {1}).to(Device::cpu()), sum(x, {1}), 1e-3, 1e-5).ok);
  CHECK(allclose(logsumexp(gx, 1).to(Device::cpu()), logsumexp(x, 1), 1e-5, 1e-5).ok);
  auto [mv, mi] = max(gx, 1);
  auto [cv, ci] = max(x, 1);
  CHECK(bytes_of(mv) == bytes_of(cv));
  CHECK(bytes_of(mi) == bytes_of(ci));
  Tensor y = Tensor::randn({70, 1000, 33}, DType::f32, &gen);
  CHECK(allclose(sum(y.to(kCuda), {1}).to(Device::cpu()), sum(y, {1}), 1e-3, 1e-5).ok);
  auto [yv, yi] = min(y.to(kCuda), 1);
  auto [zv, zi] = min(y, 1);
  CHECK(bytes_of(yv) == bytes_of(zv));
  CHECK(bytes_of(yi) == bytes_of(zi));
  // ties: first index
  Tensor t = Tensor::full({4, 9}, 1.0, DType::f32, kCuda);
  CHECK(argmax(t, 1).to_vector() == std::vector<double>{0, 0, 0, 0});
}

TEST_CASE("cuda: index ops reject bad indices that live on the GPU") {
  Tensor x = Tensor::randn({4, 3}, DType::f32).to(kCuda);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 4}, {2}).to(kCuda);
  CHECK_THROWS_WITH(index_select(x, 0, bad), doctest::Contains("out of range"));
  Tensor ok = Tensor::from_vector(std::vector<int64_t>{3, 0}, {2}).to(kCuda);
  CHECK(index_select(x, 0, ok).to_vector() == index_select(x.to(Device::cpu()), 0, ok.to(Device::cpu())).to_vector());
}
