// The remaining handwritten kernels of kernels/cuda on the CPU emulator against their CPU kernels: reductions
// (rows and columns kernels, NaN and tie rules), index ops (scatter_add's atomics), the fp32 tiled InfoNCE
// (dynamic shared memory, half-warp merges), the one-launch EMA (a chunk table, vector and scalar paths),
// Philox fills (bit-identical to the CPU generator) and the elementwise loop (vectorised contiguous path with
// a scalar tail and a broadcast scalar, strided path on a transposed operand).
#include "tests/cuda_emu/emu_test_util.h"

#include <cstring>
#include <memory>
#include <string>

#include "kernels/cuda/cuda_api.h"
#include "kernels/cuda/cuda_nn_api.h"
#include "kernels/kernel_api.h"

using namespace selfsup::kernels;
using namespace emu_test;

namespace {

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <typename T>
void reduce_case(int64_t outer, int64_t dim, int64_t inner, std::vector<ReduceOp> ops = {ReduceOp::sum, ReduceOp::max,
                                                                                   ReduceOp::min, ReduceOp::logsumexp}) {
  CAPTURE(outer);
  CAPTURE(dim);
  CAPTURE(inner);
  std::vector<T> x = as<T>(randn_d(static_cast<size_t>(outer * dim * inner), 21));
  x[2 * inner] = x[0];  // a tie for max/min: the first index wins
  if (x.size() > 7) x[x.size() - 7] = NAN;  // NaN propagates, with its index
  const DeviceArray<T> d_x(x);
  for (const ReduceOp op : ops) {
    CAPTURE(static_cast<int>(op));
    std::vector<T> out(static_cast<size_t>(outer * inner));
    std::vector<int64_t> idx(out.size(), -7);
    reduce_cpu<T>(op, outer, dim, inner, x.data(), out.data(), idx.data());
    DeviceArray<T> d_out(out.size());
    DeviceArray<int64_t> d_idx(out.size());
    reduce_cuda<T>(op, outer, dim, inner, d_x.data(), d_out.data(), d_idx.data(), nullptr);
    CHECK(err_ratio(as_double(d_out.host()), as_double(out), 1e-6, 1e-5) <= 1.0);
    if (op == ReduceOp::max || op == ReduceOp::min) CHECK(d_idx.host() == idx);
  }
}

void infonce_case(int64_t M, int64_t Ncol, int64_t D, int64_t n_private, bool with_self) {
  CAPTURE(M);
  CAPTURE(Ncol);
  CAPTURE(D);
  const std::vector<double> q = rounded<float>(randn_d(static_cast<size_t>(M * D), 31, 0.2)),
                            k = rounded<float>(randn_d(static_cast<size_t>(Ncol * D), 32, 0.2)),
                            dloss = rounded<float>(randn_d(static_cast<size_t>(M), 33));
  std::vector<int64_t> pos(M), self(M);
  for (int64_t i = 0; i < M; ++i) {
    pos[i] = (5 * i + 1) % Ncol;
    self[i] = i % 3 == 0 ? -1 : (pos[i] + 1) % Ncol;
  }
  const int64_t* sp = with_self ? self.data() : nullptr;
  std::vector<double> loss(M), lse(M), dq(q.size()), dk(k.size());
  std::vector<uint8_t> correct(M);
  const double inv_tau = 1.0 / 0.1;
  infonce_fwd_cpu<double>(M, Ncol, D, q.data(), k.data(), pos.data(), sp, n_private, inv_tau, loss.data(),
                          lse.data(), correct.data());
  infonce_bwd_cpu<double>(M, Ncol, D, q.data(), k.data(), pos.data(), sp, n_private, inv_tau, lse.data(),
                          dloss.data(), dq.data(), dk.data());
  const DeviceArray<float> d_q(as<float>(q)), d_k(as<float>(k)), d_dloss(as<float>(dloss));
  const DeviceArray<int64_t> d_pos(pos), d_self(self);
  DeviceArray<float> d_loss(M), d_lse(M), d_dq(q.size()), d_dk(k.size());
  DeviceArray<uint8_t> d_correct(M);
  infonce_fwd_cuda<float>(M, Ncol, D, d_q.data(), d_k.data(), d_pos.data(), with_self ? d_self.data() : nullptr,
                          n_private, inv_tau, d_loss.data(), d_lse.data(), d_correct.data(), nullptr);
  CHECK(err_ratio(as_double(d_loss.host()), loss, 1e-4, 1e-4) <= 1.0);
  CHECK(err_ratio(as_double(d_lse.host()), lse, 1e-4, 1e-4) <= 1.0);
  CHECK(d_correct.host() == correct);
  const DeviceArray<float> d_lse_ref(as<float>(lse));  // the backward on its own
  infonce_bwd_cuda<float>(M, Ncol, D, d_q.data(), d_k.data(), d_pos.data(), with_self ? d_self.data() : nullptr,
                          n_private, inv_tau, d_lse_ref.data(), d_dloss.data(), d_dq.data(), d_dk.data(), nullptr);
  CHECK(err_ratio(as_double(d_dq.host()), dq, 1e-5, 1e-3) <= 1.0);
  CHECK(err_ratio(as_double(d_dk.host()), dk, 1e-5, 1e-3) <= 1.0);
}

// Elementwise operands: a (rows, cols) output, `a` contiguous, `b` transposed storage (strided path) or a
// broadcast scalar (contiguous path with a scalar mask).
template <typename T>
void elementwise_case(int64_t rows, int64_t cols) {
  CAPTURE(rows);
  CAPTURE(cols);
  const int64_t sizes[2] = {rows, cols}, contig[2] = {cols, 1}, transposed[2] = {1, rows}, scalar[2] = {0, 0};
  const size_t n = static_cast<size_t>(rows * cols);
  std::vector<T> a = as<T>(randn_d(n, 41)), b = as<T>(randn_d(n, 42));
  for (T& v : b) v = v == T(0) ? T(1) : v;
  const DeviceArray<T> d_a(a), d_b(b);
  auto op = [](void* p, const int64_t* s) { return StridedOperand{p, s}; };
  for (const UnaryOp u : {UnaryOp::exp, UnaryOp::sigmoid, UnaryOp::gelu, UnaryOp::clamp}) {
    CAPTURE(static_cast<int>(u));
    std::vector<T> ref(n);
    DeviceArray<T> d_out(n);
    unary_cpu<T>(u, 2, sizes, op(ref.data(), contig), op(a.data(), contig), -0.5, 0.5);
    unary_cuda<T>(u, 2, sizes, op(d_out.data(), contig), op(d_a.data(), contig), -0.5, 0.5, nullptr);
    CHECK(err_ratio(as_double(d_out.host()), as_double(ref), 1e-6, 1e-5) <= 1.0);
  }
  for (const BinaryOp bo : {BinaryOp::add, BinaryOp::div, BinaryOp::maximum}) {
    CAPTURE(static_cast<int>(bo));
    for (const int64_t* sb : {transposed, scalar}) {
      std::vector<T> ref(n);
      DeviceArray<T> d_out(n);
      binary_cpu<T>(bo, 2, sizes, op(ref.data(), contig), op(a.data(), contig), op(b.data(), sb));
      binary_cuda<T>(bo, 2, sizes, op(d_out.data(), contig), op(d_a.data(), contig), op(d_b.data(), sb), nullptr);
      CHECK(err_ratio(as_double(d_out.host()), as_double(ref), 1e-6, 1e-5) <= 1.0);
    }
  }
  std::vector<uint8_t> cmp(n);
  DeviceArray<uint8_t> d_cmp(n);
  compare_cpu<T>(BinaryOp::lt, 2, sizes, op(cmp.data(), contig), op(a.data(), contig), op(b.data(), transposed));
  compare_cuda<T>(BinaryOp::lt, 2, sizes, op(d_cmp.data(), contig), op(d_a.data(), contig),
                  op(d_b.data(), transposed), nullptr);
  CHECK(d_cmp.host() == cmp);
  std::vector<T> w(n);
  DeviceArray<T> d_w(n);
  where_cpu<T>(2, sizes, op(w.data(), contig), op(cmp.data(), contig), op(a.data(), contig), op(b.data(), contig));
  where_cuda<T>(2, sizes, op(d_w.data(), contig), op(d_cmp.data(), contig), op(d_a.data(), contig),
                op(d_b.data(), contig), nullptr);
  CHECK(same_bits(d_w.host(), w));
}

}  // namespace

TEST_CASE("emulated reductions: rows (inner = 1) and columns kernels, NaN and ties") {
  reduce_case<float>(3, 70, 1);      // few rows: 1024-thread blocks
  reduce_case<float>(1024, 3, 1, {ReduceOp::max});  // many rows: 256-thread blocks (1024 of them: kept to one op)
  reduce_case<double>(2, 19, 45);    // columns: 32 x 16 blocks, a ragged column tile
  launches_checked();
}

TEST_CASE("emulated index ops: index_select, gather, scatter_add with colliding targets") {
  const int64_t outer = 2, in_dim = 5, inner = 3, n_index = 7;
  const std::vector<int64_t> index = {4, 0, 0, 2, 4, 1, 3};
  const std::vector<float> in = as<float>(randn_d(static_cast<size_t>(outer * in_dim * inner), 51));
  const DeviceArray<float> d_in(in);
  const DeviceArray<int64_t> d_index(index);
  std::vector<float> out(static_cast<size_t>(outer * n_index * inner));
  DeviceArray<float> d_out(out.size());
  index_select_cpu(outer, in_dim, inner, 4, in.data(), n_index, index.data(), out.data());
  index_select_cuda(outer, in_dim, inner, 4, d_in.data(), n_index, d_index.data(), d_out.data(), nullptr);
  CHECK(same_bits(d_out.host(), out));
  // gather / scatter_add index (outer, 2, inner) along dim
  std::vector<int64_t> gi(static_cast<size_t>(outer * 2 * inner));
  for (size_t i = 0; i < gi.size(); ++i) gi[i] = static_cast<int64_t>((3 * i + 1) % in_dim);
  const DeviceArray<int64_t> d_gi(gi);
  std::vector<double> g(gi.size());
  DeviceArray<double> d_g(gi.size());
  const std::vector<double> in64 = randn_d(in.size(), 52);
  const DeviceArray<double> d_in64(in64);
  gather_cpu(outer, in_dim, 2, inner, 8, in64.data(), gi.data(), g.data());
  gather_cuda(outer, in_dim, 2, inner, 8, d_in64.data(), d_gi.data(), d_g.data(), nullptr);
  CHECK(same_bits(d_g.host(), g));
  std::vector<double> self(in64);
  DeviceArray<double> d_self(in64);
  std::vector<double> src(gi.size(), 0.0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = 0.25 * static_cast<double>(i + 1);  // exact sums
  const DeviceArray<double> d_src(src);
  scatter_add_cpu<double>(outer, in_dim, 2, inner, self.data(), gi.data(), src.data());
  scatter_add_cuda<double>(outer, in_dim, 2, inner, d_self.data(), d_gi.data(), d_src.data(), nullptr);
  CHECK(same_bits(d_self.host(), self));
  launches_checked();
}

TEST_CASE("emulated fp32 tiled InfoNCE: ragged tiles, excluded and private columns, D not a multiple of 16") {
  infonce_case(70, 70, 24, 0, true);    // 2 row tiles, 2 column tiles, ragged
  infonce_case(20, 90, 40, 20, false);  // MoCo-like: private batch keys then queue columns
  launches_checked();
}

TEST_CASE("emulated EMA update: one launch over many tensors, aligned and unaligned, bit-identical") {
  const std::vector<int64_t> numel = {5000, 3, 0, 4097, 8};  // several chunks; an empty tensor; tails
  std::vector<std::vector<float>> tgt, onl;
  std::vector<std::unique_ptr<DeviceArray<float>>> d_t, d_o;
  std::vector<float*> tp, dtp;
  std::vector<const float*> op, dop;
  for (size_t t = 0; t < numel.size(); ++t) {
    tgt.push_back(as<float>(randn_d(numel[t] + 1, 60 + t)));
    onl.push_back(as<float>(randn_d(numel[t] + 1, 70 + t)));
    d_t.push_back(std::make_unique<DeviceArray<float>>(tgt.back()));
    d_o.push_back(std::make_unique<DeviceArray<float>>(onl.back()));
    // tensor 3 starts one float in: the kernel's scalar path
    const size_t off = t == 3 ? 1 : 0;
    tp.push_back(tgt.back().data() + off);
    op.push_back(onl.back().data() + off);
    dtp.push_back(d_t.back()->data() + off);
    dop.push_back(d_o.back()->data() + off);
  }
  ema_update_cpu<float>(static_cast<int64_t>(numel.size()), tp.data(), op.data(), numel.data(), 0.99);
  ema_update_cuda<float>(static_cast<int64_t>(numel.size()), dtp.data(), dop.data(), numel.data(), 0.99, nullptr);
  for (size_t t = 0; t < numel.size(); ++t) CHECK(same_bits(d_t[t]->host(), tgt[t]));
  launches_checked();
}

TEST_CASE("emulated Philox fills: bit-identical to the CPU generator, with an offset") {
  const int64_t n = 3000;  // more than one block
  std::vector<float> uf(n), nf(n);
  std::vector<double> ud(n), nd(n);
  DeviceArray<float> d_uf(n), d_nf(n);
  DeviceArray<double> d_ud(n), d_nd(n);
  fill_uniform_cpu<float>(n, 7, 3, 11, uf.data());
  fill_normal_cpu<float>(n, 7, 3, 11, nf.data());
  fill_uniform_cpu<double>(n, 7, 4, 0, ud.data());
  fill_normal_cpu<double>(n, 7, 4, 0, nd.data());
  fill_uniform_cuda<float>(n, 7, 3, 11, d_uf.data(), nullptr);
  fill_normal_cuda<float>(n, 7, 3, 11, d_nf.data(), nullptr);
  fill_uniform_cuda<double>(n, 7, 4, 0, d_ud.data(), nullptr);
  fill_normal_cuda<double>(n, 7, 4, 0, d_nd.data(), nullptr);
  CHECK(same_bits(d_uf.host(), uf));
  CHECK(same_bits(d_nf.host(), nf));
  CHECK(same_bits(d_ud.host(), ud));
  CHECK(same_bits(d_nd.host(), nd));
  launches_checked();
}

TEST_CASE("emulated elementwise loop: vectorised contiguous path with a tail, broadcast scalar, strided path") {
  elementwise_case<float>(7, 9);    // 63 elements: 15 float4 groups and a tail of 3
  elementwise_case<double>(5, 3);
  launches_checked();
}
