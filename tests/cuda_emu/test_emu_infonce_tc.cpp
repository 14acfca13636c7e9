// The bf16 tensor-core InfoNCE kernels (kernels/cuda/infonce_bf16_impl.cuh) run on the CPU emulator
// (kernels/cuda/emu, docs/cuda-emulation.md), against infonce_*_cpu<double> on the same bf16-rounded inputs.
// The kernel bodies are the production code, compiled for the host with the primitives below, built on the
// emulator's rendezvous (emu::warp_collective, __syncthreads):
//   - ldmatrix and mma.sync follow the PTX ISA's fragment layouts for mma.m16n8k16 .bf16 and ldmatrix
//     (.trans): every lane deposits its operands, the last to arrive computes the warp's result;
//   - cp.async copies are deferred until the issuing thread's cp.async.wait_group, so a tile read before its
//     wait sees stale data; every cp.async and ldmatrix address is checked for 16-byte alignment.
// What this cannot catch beyond the emulator's limits: a misreading of the PTX layouts shared by the kernel
// and this file (the layouts are restated here from the ISA, independently).
#include "tests/cuda_emu/emu_test_util.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/kernel_api.h"

namespace tc_emu {

using bf16 = __nv_bfloat16;
using selfsup::emu::EmuError;
constexpr int kBlockThreads = 128;

void check_aligned16(const void* p, const char* what) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) throw EmuError(std::string(what) + ": address not 16-byte aligned");
}

uint16_t bits(bf16 v) { return static_cast<__nv_bfloat16_raw>(v).x; }
float bf(uint16_t u) {
  __nv_bfloat16_raw r;
  r.x = u;
  return __bfloat162float(bf16(r));
}

// ------------------------------------------------------------------ the primitives the kernel bodies use
#define TC_DEV inline
#define TC_UNROLL
#define TC_NO_UNROLL
#define TC_SMEM static
#define TC_SMEM16 alignas(16) static

inline int tc_tid() { return static_cast<int>(threadIdx.x); }
inline int tc_bid() { return static_cast<int>(blockIdx.x); }
inline void tc_sync() { __syncthreads(); }
inline float tc_shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
inline int tc_shfl_xor(int v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
inline bool tc_any(bool p) { return __any_sync(0xffffffffu, p) != 0; }

// cp.async: issued copies wait in the thread's queue until its cp_async_wait_all.
struct Copy {
  void* dst;
  const void* src;
  int bytes;
};
std::vector<Copy> g_pending[kBlockThreads];

inline void cp_async16(bf16* dst, const bf16* src, int src_bytes) {
  check_aligned16(dst, "cp.async destination");
  if (src_bytes) check_aligned16(src, "cp.async source");
  if (src_bytes != 0 && src_bytes != 16) throw EmuError("cp.async: src_bytes must be 0 or 16 here");
  g_pending[tc_tid()].push_back({dst, src, src_bytes});
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {
  auto& p = g_pending[tc_tid()];
  for (const Copy& c : p) {
    if (c.bytes) std::memcpy(c.dst, c.src, 16);
    else std::memset(c.dst, 0, 16);
  }
  p.clear();
}

// ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i; lane l receives, of each matrix, row l/4
// columns 2(l%4), 2(l%4)+1 (with .trans: rows 2(l%4), 2(l%4)+1 of column l/4), the lower index in the low half.
template <bool kTrans>
void ldsm_fn(void*, const void* const* ins, void* const* outs) {
  auto row = [&](int lane) { return *static_cast<const bf16* const*>(ins[lane]); };
  for (int l = 0; l < 32; ++l) {
    uint32_t* r = static_cast<uint32_t*>(outs[l]);
    for (int i = 0; i < 4; ++i) {
      uint16_t lo, hi;
      if (!kTrans) {
        const bf16* p = row(8 * i + l / 4);
        lo = bits(p[2 * (l % 4)]);
        hi = bits(p[2 * (l % 4) + 1]);
      } else {
        lo = bits(row(8 * i + 2 * (l % 4))[l / 4]);
        hi = bits(row(8 * i + 2 * (l % 4) + 1)[l / 4]);
      }
      r[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}
template <bool kTrans>
void ldsm(uint32_t (&r)[4], const bf16* row) {
  check_aligned16(row, "ldmatrix row");
  selfsup::emu::warp_collective(0xffffffffu, kTrans ? "ldmatrix.trans" : "ldmatrix", &row, r, ldsm_fn<kTrans>,
                                nullptr);
}
inline void ldsm_x4(uint32_t (&r)[4], const bf16* row) { ldsm<false>(r, row); }
inline void ldsm_x4_trans(uint32_t (&r)[4], const bf16* row) { ldsm<true>(r, row); }

// mma.m16n8k16.row.col f32.bf16.bf16.f32, fragments per the PTX ISA (g = lane / 4, t = lane % 4):
//   A: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B: b0 (k 2t..2t+1, n g), b1 (k 2t+8..2t+9, n g)
//   C: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1)
struct MmaIn {
  uint32_t a[4], b0, b1;
  float c[4];
};
void mma_fn(void*, const void* const* ins, void* const* outs) {
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const int gg = l / 4, tt = l % 4;
    const MmaIn& in = *static_cast<const MmaIn*>(ins[l]);
    const int ar[4] = {gg, gg + 8, gg, gg + 8}, ac[4] = {2 * tt, 2 * tt, 2 * tt + 8, 2 * tt + 8};
    for (int i = 0; i < 4; ++i) {
      A[ar[i]][ac[i]] = bf(static_cast<uint16_t>(in.a[i] & 0xffff));
      A[ar[i]][ac[i] + 1] = bf(static_cast<uint16_t>(in.a[i] >> 16));
    }
    B[2 * tt][gg] = bf(static_cast<uint16_t>(in.b0 & 0xffff));
    B[2 * tt + 1][gg] = bf(static_cast<uint16_t>(in.b0 >> 16));
    B[2 * tt + 8][gg] = bf(static_cast<uint16_t>(in.b1 & 0xffff));
    B[2 * tt + 9][gg] = bf(static_cast<uint16_t>(in.b1 >> 16));
    C[gg][2 * tt] = in.c[0];
    C[gg][2 * tt + 1] = in.c[1];
    C[gg + 8][2 * tt] = in.c[2];
    C[gg + 8][2 * tt + 1] = in.c[3];
  }
  for (int l = 0; l < 32; ++l) {
    const int gg = l / 4, tt = l % 4;
    const int rr[4] = {gg, gg, gg + 8, gg + 8}, cc[4] = {2 * tt, 2 * tt + 1, 2 * tt, 2 * tt + 1};
    for (int i = 0; i < 4; ++i) {
      float acc = C[rr[i]][cc[i]];
      for (int kk = 0; kk < 16; ++kk) acc += A[rr[i]][kk] * B[kk][cc[i]];  // products exact in fp32
      static_cast<float*>(outs[l])[i] = acc;
    }
  }
}
inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const MmaIn in{{a[0], a[1], a[2], a[3]}, b0, b1, {c[0], c[1], c[2], c[3]}};
  selfsup::emu::warp_collective(0xffffffffu, "mma.sync", &in, c, mma_fn, nullptr);
}

inline float ex2(float x) { return std::exp2(x); }
inline uint32_t pack_bf16(float lo, float hi) {
  return static_cast<uint32_t>(bits(__float2bfloat16_rn(lo))) | (static_cast<uint32_t>(bits(__float2bfloat16_rn(hi))) << 16);
}

#include "kernels/cuda/infonce_bf16_impl.cuh"

#undef TC_DEV
#undef TC_UNROLL
#undef TC_NO_UNROLL
#undef TC_SMEM
#undef TC_SMEM16

}  // namespace tc_emu

namespace {

using tc_emu::bf16;

struct Case {
  const char* name;
  int64_t M, Ncol, D, n_private;
  bool same;  // q and k the same tensor (SimCLR)
  std::vector<float> q, k;  // bf16-representable values
  std::vector<int64_t> pos, self;
};

std::vector<float> unit_rows_bf16(int64_t n, int64_t D, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n * D));
  for (int64_t r = 0; r < n; ++r) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += static_cast<double>(v[r * D + d] = nd(rng)) * v[r * D + d];
    for (int64_t d = 0; d < D; ++d)
      v[r * D + d] = __bfloat162float(__float2bfloat16_rn(static_cast<float>(v[r * D + d] / std::sqrt(s))));
  }
  return v;
}

Case simclr(int64_t two_n, int64_t D) {
  std::mt19937 rng(7 + two_n + D);
  Case c{"simclr", two_n, two_n, D, 0, true, unit_rows_bf16(two_n, D, rng), {}, {}, {}};
  c.k = c.q;
  for (int64_t i = 0; i < two_n; ++i) {
    c.pos.push_back((i + two_n / 2) % two_n);
    c.self.push_back(i);
  }
  return c;
}

Case moco(int64_t n, int64_t queue, int64_t D) {
  std::mt19937 rng(11 + n + queue + D);
  Case c{"moco", n, n + queue, D, n, false, unit_rows_bf16(n, D, rng), unit_rows_bf16(n + queue, D, rng), {}, {}};
  for (int64_t i = 0; i < n; ++i) c.pos.push_back(i);
  return c;
}

// Random positives and excluded columns, fewer columns than rows, no private columns.
Case generic(int64_t M, int64_t Ncol, int64_t D) {
  std::mt19937 rng(13 + M + Ncol + D);
  Case c{"generic", M, Ncol, D, 0, false, unit_rows_bf16(M, D, rng), unit_rows_bf16(Ncol, D, rng), {}, {}};
  std::uniform_int_distribution<int64_t> col(0, Ncol - 1);
  for (int64_t i = 0; i < M; ++i) {
    const int64_t p = col(rng);
    int64_t s = col(rng);
    if (s == p) s = -1;
    c.pos.push_back(p);
    c.self.push_back(s);
  }
  return c;
}

double scaled_err(const std::vector<double>& a, const std::vector<double>& b) {
  double e = 0, s = 1e-3;
  for (size_t i = 0; i < a.size(); ++i) {
    e = std::max(e, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(b[i]));
  }
  return e / s;
}

template <int kD>
void run_case(const Case& c, bool sym) {
  namespace tc = tc_emu;
  const double inv_tau = 1.0 / 0.2;
  const float scale2 = static_cast<float>(inv_tau * tc::kLog2e), it = static_cast<float>(inv_tau);
  const int M = static_cast<int>(c.M), N = static_cast<int>(c.Ncol), D = static_cast<int>(c.D),
            np = static_cast<int>(c.n_private);
  // inputs in emulated device memory (16-byte aligned, guarded, part of the two-order comparison)
  const emu_test::DeviceArray<bf16> qb(emu_test::as<bf16>(std::vector<double>(c.q.begin(), c.q.end()))),
      kb(emu_test::as<bf16>(std::vector<double>(c.k.begin(), c.k.end())));
  const emu_test::DeviceArray<int64_t> pos(c.pos), self_d(c.self.empty() ? std::vector<int64_t>{0} : c.self);
  const bf16* q = qb.data();
  const bf16* k = c.same ? q : kb.data();
  const int64_t* self = c.self.empty() ? nullptr : self_d.data();

  // reference on the same (bf16) values
  std::vector<double> q64(c.q.begin(), c.q.end()), k64(c.k.begin(), c.k.end());
  std::vector<double> rloss(M), rlse(M), rdq(c.M * c.D), rdk(c.Ncol * c.D), dloss64(M);
  std::vector<uint8_t> rcorrect(M);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(0.5f, 1.5f);
  for (int i = 0; i < M; ++i) dloss64[i] = static_cast<float>(ud(rng) / M);
  const emu_test::DeviceArray<float> dloss(emu_test::as<float>(dloss64));
  const int64_t* self_h = c.self.empty() ? nullptr : c.self.data();
  selfsup::kernels::infonce_fwd_cpu<double>(c.M, c.Ncol, c.D, q64.data(), k64.data(), c.pos.data(), self_h,
                                            c.n_private, inv_tau, rloss.data(), rlse.data(), rcorrect.data());
  selfsup::kernels::infonce_bwd_cpu<double>(c.M, c.Ncol, c.D, q64.data(), k64.data(), c.pos.data(), self_h,
                                            c.n_private, inv_tau, rlse.data(), dloss64.data(), rdq.data(),
                                            rdk.data());

  // forward
  emu_test::DeviceArray<float> loss(M), lse(M);
  emu_test::DeviceArray<uint8_t> correct(M);
  const unsigned fwd_grid = (M + 127) / 128;
  selfsup::emu::run_body("fwd_body", fwd_grid, tc::kBlockThreads, [&] {
    tc::fwd_body<kD>(M, N, D, q, k, pos.data(), self, np, scale2, it, loss.data(), lse.data(), correct.data());
  });
  const double e_lse = scaled_err(emu_test::as_double(lse.host()), rlse);
  const double e_loss = scaled_err(emu_test::as_double(loss.host()), rloss);
  int64_t bad = 0;
  for (int i = 0; i < M; ++i) bad += correct.host()[i] != rcorrect[i];
  INFO(std::string(c.name), " M=", M, " Ncol=", N, " D=", D, " err lse ", e_lse, " loss ", e_loss, " correct mismatches ", bad);
  CHECK(e_lse < 1e-4);
  CHECK(e_loss < 1e-4);
  CHECK(bad * 100 <= M);  // near ties may flip under fp32 accumulation

  // backward: use the reference lse so the backward is checked on its own
  const emu_test::DeviceArray<float> lsef(emu_test::as<float>(rlse));
  auto bwd = [&](auto mode_tag, int owned, std::vector<bf16>& out) {
    constexpr int kMode = decltype(mode_tag)::value;
    emu_test::DeviceArray<bf16> d_out(static_cast<size_t>(owned) * D);
    selfsup::emu::run_body("bwd_body", (owned + 63) / 64, tc::kBlockThreads, [&] {
      tc::bwd_body<kD, kMode>(M, N, D, q, k, pos.data(), self, np, scale2, it, lsef.data(), dloss.data(),
                              d_out.data());
    });
    out = d_out.host();
  };
  auto to64 = [](const std::vector<bf16>& v) {
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); ++i) o[i] = __bfloat162float(v[i]);
    return o;
  };
  if (sym) {
    std::vector<bf16> dz;
    bwd(std::integral_constant<int, tc::kSym>{}, M, dz);
    std::vector<double> rdz(rdq);
    for (size_t i = 0; i < rdz.size(); ++i) rdz[i] += rdk[i];
    const double e = scaled_err(to64(dz), rdz);
    INFO("dz err ", e);
    CHECK(e < 1e-2);
  }
  std::vector<bf16> dq, dk;
  bwd(std::integral_constant<int, tc::kRows>{}, M, dq);
  bwd(std::integral_constant<int, tc::kCols>{}, N, dk);
  const double e_dq = scaled_err(to64(dq), rdq), e_dk = scaled_err(to64(dk), rdk);
  INFO("dq err ", e_dq, " dk err ", e_dk);
  MESSAGE(std::string(c.name), " M=", M, " Ncol=", N, " D=", D, ": scaled errors lse ", e_lse, " loss ", e_loss,
          " dq ", e_dq, " dk ", e_dk, ", correct mismatches ", bad);
  CHECK(e_dq < 1e-2);
  CHECK(e_dk < 1e-2);
}

}  // namespace

TEST_CASE("infonce bf16 tensor-core kernels, emulated on the CPU: SimCLR, ragged, D = 128 and padded D") {
  run_case<128>(simclr(200, 128), true);   // 2 row blocks (forward), 4 (backward), ragged last tiles
  run_case<64>(simclr(130, 40), true);     // D = 40 padded to 64; a positive in the same tile as the row
  run_case<64>(simclr(520, 64), true);     // most tiles take the unmasked fast path (positives far away)
}

TEST_CASE("infonce bf16 tensor-core kernels, emulated on the CPU: MoCo queue and generic masks") {
  run_case<64>(moco(70, 250, 64), false);       // private key columns, queue columns, Ncol = 320
  run_case<128>(generic(150, 90, 96), false);   // random positives / excluded columns, D = 96 padded to 128
}

