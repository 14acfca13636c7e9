// The bodies of the bf16 tensor-core InfoNCE kernels (kernels/cuda/infonce_bf16.cu has the design notes,
// the PTX primitives, the __global__ wrappers and the launchers). They are written against a small set of
// primitives that the including file defines before including this one, so the same code also runs on the
// CPU under a warp emulator (tests/kernels/test_infonce_tc_emulated.cpp) that checks the index math, the
// fragment layouts, the masking and the pipeline without a GPU:
//   TC_DEV (function qualifier), TC_UNROLL / TC_NO_UNROLL (#pragma unroll / unroll 1),
//   TC_SMEM (a block-shared array), TC_SMEM16 (the same, 16-byte aligned),
//   tc_tid(), tc_bid(), tc_sync() (__syncthreads), tc_shfl_xor(float|int, lane mask), tc_any(bool),
//   cp_async16(bf16* dst_smem, const bf16* src, int src_bytes), cp_async_commit(), cp_async_wait_all(),
//   ldsm_x4 / ldsm_x4_trans(uint32_t (&)[4], const bf16* smem_row_address), mma_bf16(c, a, b0, b1),
//   ex2(float), pack_bf16(float lo, float hi).
// Everything lives in namespace selfsup::kernels::infonce_tc, which the includer opens.
#pragma once


using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kBN = 64;          // streamed rows per tile (the forward's columns)
constexpr int kFwdMT = 2;        // m16 tiles per warp in the forward: 32 rows
constexpr int kBwdRows = 16 * kWarps;  // owned rows per block in the backward (one m16 tile per warp)
constexpr int kChunk = 32;             // streamed rows per backward step inside a tile (kBN / kChunk steps)
// Resident blocks per SM asked of the register allocator (ptxas, sm_90, kD = 128): 2 -> 196-231 registers,
// no spills, 8 warps per SM; 3 -> 168 registers with 4-12 bytes of spills, 12 warps. A knob for the GPU session.
constexpr int kBwdMinBlocks = 2;
constexpr int kMaxRows = 1 << 30;      // row/column indices are int inside the kernels
constexpr double kLog2e = 1.4426950408889634;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

enum BwdMode { kRows = 0, kCols = 1, kSym = 2 };  // output: dq, dk, dz = dq + dk (q == k)

// ------------------------------------------------------------------ tiles
// s (kNRows, kD + 8) = rows [r0, r0 + kNRows) of src (nrows, D) in 16-byte chunks; rows >= nrows and columns
// in [D, kD) are zero. D % 8 == 0 and a 16-byte aligned src make every chunk aligned. Consecutive threads
// take consecutive chunks of a row: 128 threads read 8 rows (2 KB when D = 128) contiguously.
template <int kD, int kNRows>
TC_DEV void load_tile_async(bf16* s, const bf16* src, int r0, int nrows, int D) {
  constexpr int kChunks = kD / 8, kLd = kD + 8;
  static_assert((kNRows * kChunks) % kThreads == 0, "the tile splits evenly over the block");
TC_UNROLL
  for (int it = 0; it < kNRows * kChunks / kThreads; ++it) {
    const int idx = it * kThreads + tc_tid();
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    const int row = r0 + r;
    const bool ok = row < nrows && c < D;
    const bf16* p = ok ? src + static_cast<int64_t>(row) * D + c : src;
    cp_async16(s + r * kLd + c, p, ok ? 16 : 0);
  }
}

// The A fragments (16 rows x kD) of rows [row0, row0 + 16) of a staged tile.
template <int kD>
TC_DEV void load_a_frags(uint32_t (&af)[kD / 16][4], const bf16* s, int row0, int lane) {
  constexpr int kLd = kD + 8;
TC_UNROLL
  for (int kk = 0; kk < kD / 16; ++kk)
    ldsm_x4(af[kk], s + (row0 + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8);
}

// acc[kMT][kNT][4] = A (kMT x 16 rows, registers) x tile^T (the first 8 kNT rows of the staged tile as
// the columns). One ldmatrix.x4 gives b0, b1 of two n8 tiles: matrices (rows n0..+7, k0), (n0..+7, k0+8),
// (n0+8.., k0), (n0+8.., k0+8), so lane l addresses row n0 + (l & 7) + 8 (l >> 4), column k0 + 8 ((l >> 3) & 1).
template <int kD, int kMT, int kNT>
TC_DEV void mma_abt(float (&acc)[kMT][kNT][4], const uint32_t (&af)[kMT][kD / 16][4],
                                        const bf16* tile, int lane) {
  constexpr int kLd = kD + 8;
  static_assert(kNT % 2 == 0, "n8 tiles come in pairs");
TC_UNROLL
  for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
    for (int nt = 0; nt < kNT; ++nt)
TC_UNROLL
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.0f;
  const int lrow = (lane & 7) + ((lane >> 4) << 3), lcol = ((lane >> 3) & 1) * 8;
TC_UNROLL
  for (int kk = 0; kk < kD / 16; ++kk) {
TC_UNROLL
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4];
      ldsm_x4(b, tile + (np * 16 + lrow) * kLd + kk * 16 + lcol);
TC_UNROLL
      for (int mt = 0; mt < kMT; ++mt) {
        mma_bf16(acc[mt][2 * np], af[mt][kk], b[0], b[1]);
        mma_bf16(acc[mt][2 * np + 1], af[mt][kk], b[2], b[3]);
      }
    }
  }
}

TC_DEV bool in_range(int x, int lo, int n) { return static_cast<unsigned>(x - lo) < static_cast<unsigned>(n); }

// Column col takes part in row r's softmax (the CPU kernel's masking rules).
TC_DEV bool is_valid(int col, int pos, int self, int n_private, int Ncol) {
  return col < Ncol && col != self && (col >= n_private || col == pos);
}

// ------------------------------------------------------------------ forward
// One thread's view of one row: running max m of the raw dot products over the valid columns it has seen,
// the sum l of exp2((s - m) scale2), the first column reaching m, and the positive's raw dot product.
struct FwdRow {
  float m, l, tpos;
  int bestj;
};

// Folds this thread's 16 entries of one row of a tile (s[nt][2h + e], column c0 + 8 nt + 2t + e).
template <bool kMasked>
TC_DEV void fwd_row_update(FwdRow& st, const float (&s)[8][4], int h, int c0, int t,
                                               float scale2, int pos, int self, int n_private, int Ncol) {
  float v[16];
  bool nan_seen = false;
TC_UNROLL
  for (int nt = 0; nt < 8; ++nt)
TC_UNROLL
    for (int e = 0; e < 2; ++e) {
      float a = s[nt][2 * h + e];
      if (kMasked) {
        const int col = c0 + nt * 8 + 2 * t + e;
        if (col == pos) st.tpos = a;  // taken before masking, as the CPU kernel does
        a = is_valid(col, pos, self, n_private, Ncol) ? a : -INFINITY;
        nan_seen |= a != a;
      }
      v[nt * 2 + e] = a;
    }
  float tm = v[0];
TC_UNROLL
  for (int i = 1; i < 16; ++i) tm = fmaxf(tm, v[i]);  // fmaxf skips NaN; NaN reaches l below
  if (tm > st.m) {  // a new maximum (rare after the first tiles): rescale, find its first column
    st.l *= ex2((st.m - tm) * scale2);  // m = -inf: exp2(-inf) = 0 and l was 0
    st.m = tm;
TC_UNROLL
    for (int i = 15; i >= 0; --i)
      if (v[i] == tm) st.bestj = c0 + (i >> 1) * 8 + 2 * t + (i & 1);  // last write = lowest column
  }
  if (st.m == -INFINITY) {  // everything masked so far
    if (nan_seen) st.l = NAN;
    return;
  }
  const float ms = st.m * scale2;
  float sum = 0.0f;
TC_UNROLL
  for (int i = 0; i < 16; ++i) sum += ex2(fmaf(v[i], scale2, -ms));  // masked: exp2(-inf) = 0
  st.l += sum;
}

// Merges the states of the 4 lanes of a quad (they share rows and hold disjoint columns).
TC_DEV void fwd_row_merge(FwdRow& st, float scale2) {
TC_UNROLL
  for (int off = 1; off <= 2; off <<= 1) {
    const float mo = tc_shfl_xor(st.m, off), lo = tc_shfl_xor(st.l, off);
    const float po = tc_shfl_xor(st.tpos, off);
    const int jo = tc_shfl_xor(st.bestj, off);
    if (mo > st.m || (mo == st.m && jo < st.bestj)) st.bestj = jo;  // ties: the lower column
    const float mn = fmaxf(st.m, mo);
    st.l = mn == -INFINITY ? st.l + lo : st.l * ex2((st.m - mn) * scale2) + lo * ex2((mo - mn) * scale2);
    st.m = mn;
    st.tpos = fmaxf(st.tpos, po);  // -inf except in the lane that saw the positive
  }
}

// One block of the forward: rows [128 bid, +128). grid ceil(M / 128) x 128 threads; static shared memory
// 2 x 64 x (kD + 8) bf16 (34.8 KB at kD = 128).
template <int kD>
TC_DEV void fwd_body(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                     const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                     float scale2, float inv_tau, float* __restrict__ loss, float* __restrict__ lse,
                     uint8_t* __restrict__ correct) {
  constexpr int kLd = kD + 8, kMT = kFwdMT, kBM = kWarps * 16 * kMT;
  static_assert(kBM <= 2 * kBN, "the row tile is staged in the two column buffers");
  TC_SMEM16 bf16 sbuf[2 * kBN * kLd];
  const int warp = tc_tid() >> 5, lane = tc_tid() & 31;
  const int g = lane >> 2, t = lane & 3;
  const int r0 = tc_bid() * kBM, wrow = warp * 16 * kMT;

  // This block's q rows -> registers (A fragments), through the (still unused) column buffers.
  load_tile_async<kD, kBM>(sbuf, q, r0, M, D);
  cp_async_commit();
  cp_async_wait_all();
  tc_sync();
  uint32_t qf[kMT][kD / 16][4];
TC_UNROLL
  for (int mt = 0; mt < kMT; ++mt) load_a_frags<kD>(qf[mt], sbuf, wrow + mt * 16, lane);
  tc_sync();  // the buffers now take k tiles

  FwdRow st[kMT][2];
  int prow[kMT][2], srow[kMT][2];
TC_UNROLL
  for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int row = r0 + wrow + mt * 16 + g + 8 * h;
      prow[mt][h] = row < M ? static_cast<int>(pos[row]) : -1;
      srow[mt][h] = (row < M && self_col) ? static_cast<int>(self_col[row]) : -1;
      st[mt][h] = {-INFINITY, 0.0f, -INFINITY, -1};
    }

  const int ntiles = (Ncol + kBN - 1) / kBN;
  load_tile_async<kD, kBN>(sbuf, k, 0, Ncol, D);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait_all();
    tc_sync();  // tile it landed for every thread; everyone is done with tile it - 1's buffer
    if (it + 1 < ntiles) load_tile_async<kD, kBN>(sbuf + ((it + 1) & 1) * kBN * kLd, k, (it + 1) * kBN, Ncol, D);
    cp_async_commit();
    const int c0 = it * kBN;
    float s[kMT][8][4];
    mma_abt<kD, kMT, 8>(s, qf, sbuf + (it & 1) * kBN * kLd, lane);

    // Masking is needed when a row of this warp has its positive or excluded column here, or the tile holds
    // private columns or runs past Ncol; the test is warp-uniform, so the branch does not diverge.
    bool special = false;
TC_UNROLL
    for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
      for (int h = 0; h < 2; ++h) special |= in_range(prow[mt][h], c0, kBN) || in_range(srow[mt][h], c0, kBN);
    special = tc_any(special) || c0 < n_private || c0 + kBN > Ncol;
    if (special) {
TC_UNROLL
      for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
        for (int h = 0; h < 2; ++h)
          fwd_row_update<true>(st[mt][h], s[mt], h, c0, t, scale2, prow[mt][h], srow[mt][h], n_private, Ncol);
    } else {
TC_UNROLL
      for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
        for (int h = 0; h < 2; ++h) fwd_row_update<false>(st[mt][h], s[mt], h, c0, t, scale2, -1, -1, 0, Ncol);
    }
  }
  cp_async_wait_all();  // no copy may still be in flight at exit (Ncol = 0 leaves the prefetch pending)

TC_UNROLL
  for (int mt = 0; mt < kMT; ++mt)
TC_UNROLL
    for (int h = 0; h < 2; ++h) {
      fwd_row_merge(st[mt][h], scale2);
      const int row = r0 + wrow + mt * 16 + g + 8 * h;
      if (t == 0 && row < M) {
        const float l = (st[mt][h].m * scale2 + log2f(st[mt][h].l)) * kLn2;
        lse[row] = l;
        loss[row] = l - st[mt][h].tpos * inv_tau;
        if (correct) correct[row] = st[mt][h].bestj == prow[mt][h];
      }
    }
}

// ------------------------------------------------------------------ backward
// d loss / d s for one entry (row r, column col) from the raw dot product a: g_r (p - [col == pos_r]),
// p = exp2(a scale2 - lse2_r) on valid columns, 0 elsewhere. Unmasked: the tile holds no special column.
template <bool kMasked>
TC_DEV float grad_entry(float a, float scale2, float lse2, float gr, int col, int pos, int self,
                                            int n_private, int Ncol) {
  if (!kMasked) return gr * ex2(fmaf(a, scale2, -lse2));
  const float p = is_valid(col, pos, self, n_private, Ncol) ? ex2(fmaf(a, scale2, -lse2)) : 0.0f;
  return gr * (p - (col == pos ? 1.0f : 0.0f));
}

// Turns one S chunk (this warp's 16 owned x kChunk streamed, in place) into the gradient chunk. s0 is the
// chunk's first streamed index; the streamed statistics pointers are already offset to the chunk.
//   kRows: entry (o, s) is G[o][s]: row o (statistics in registers), column s.
//   kCols: entry (o, s) is G[s][o]: row s (statistics from shared memory), column o.
//   kSym:  both, summed.
template <int kMode, bool kMasked>
TC_DEV void grad_chunk(float (&s)[1][kChunk / 8][4], int ow, int s0, int g, int t,
                                           float scale2, const float (&lse2o)[2], const float (&go)[2],
                                           const int (&po)[2], const int (&so)[2], const float* sl2, const float* sg,
                                           const int* sp, const int* ss, int n_private, int Ncol) {
TC_UNROLL
  for (int nt = 0; nt < kChunk / 8; ++nt) {
    const int sl = nt * 8 + 2 * t;  // streamed local index of e = 0
    float2 l2s = make_float2(0.f, 0.f), gs = make_float2(0.f, 0.f);
    if (kMode != kRows) {
      l2s = *reinterpret_cast<const float2*>(sl2 + sl);
      gs = *reinterpret_cast<const float2*>(sg + sl);
    }
TC_UNROLL
    for (int e2 = 0; e2 < 4; ++e2) {
      const int h = e2 >> 1, e = e2 & 1;
      const float a = s[0][nt][e2];
      const int o = ow + g + 8 * h, si = s0 + sl + e;
      float v = 0.0f;
      if (kMode != kCols)
        v += grad_entry<kMasked>(a, scale2, lse2o[h], go[h], si, po[h], so[h], n_private, Ncol);
      if (kMode != kRows) {
        const int pj = kMasked ? sp[sl + e] : -1, sj = kMasked ? ss[sl + e] : -1;
        v += grad_entry<kMasked>(a, scale2, e ? l2s.y : l2s.x, e ? gs.y : gs.x, o, pj, sj, n_private, Ncol);
      }
      s[0][nt][e2] = v;
    }
  }
}

// One block of the backward: owned rows [64 bid, +64). grid ceil(owned / 64) x 128 threads. Owned: rows of q (kRows, kSym) or of k (kCols); streamed:
// the other side (kSym: z itself). out (owned, D) is overwritten.
template <int kD, int kMode>
TC_DEV void bwd_body(int M, int Ncol, int D, const bf16* __restrict__ q, const bf16* __restrict__ k,
                     const int64_t* __restrict__ pos, const int64_t* __restrict__ self_col, int n_private,
                     float scale2, float inv_tau, const float* __restrict__ lse, const float* __restrict__ dloss,
                     bf16* __restrict__ out) {
  constexpr int kLd = kD + 8, kKS = kD / 16, kNT = kD / 8;
  constexpr bool kStreamStats = kMode != kRows;  // streamed rows are softmax rows: their statistics are needed
  TC_SMEM16 bf16 sbuf[2 * kBN * kLd];
  TC_SMEM16 float s_lse2[2][kBN];
  TC_SMEM16 float s_g[2][kBN];
  TC_SMEM int s_pos[2][kBN], s_self[2][kBN];
  const int warp = tc_tid() >> 5, lane = tc_tid() & 31;
  const int g = lane >> 2, t = lane & 3;
  const bf16* own = kMode == kCols ? k : q;
  const bf16* str = kMode == kRows ? k : q;
  const int n_own = kMode == kCols ? Ncol : M, n_str = kMode == kRows ? Ncol : M;
  const int o0 = tc_bid() * kBwdRows, ow = o0 + warp * 16;

  load_tile_async<kD, kBwdRows>(sbuf, own, o0, n_own, D);
  cp_async_commit();
  cp_async_wait_all();
  tc_sync();
  uint32_t af[1][kKS][4];
  load_a_frags<kD>(af[0], sbuf, warp * 16, lane);
  tc_sync();

  // Statistics of the owned rows when they are softmax rows (kRows, kSym). Rows past M: g = 0, so their
  // entries vanish whatever p is (their operand rows are zero, p stays finite).
  float lse2o[2] = {0.f, 0.f}, go[2] = {0.f, 0.f};
  int po[2] = {-1, -1}, so[2] = {-1, -1};
  if (kMode != kCols) {
TC_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int row = ow + g + 8 * h;
      if (row < M) {
        lse2o[h] = lse[row] * static_cast<float>(kLog2e);
        go[h] = inv_tau * dloss[row];
        po[h] = static_cast<int>(pos[row]);
        so[h] = self_col ? static_cast<int>(self_col[row]) : -1;
      }
    }
  }
  // Statistics of streamed rows [s0, s0 + 64) into buffer b (plain stores, ordered by the loop's barrier).
  auto load_stats = [&](int b, int s0) {
    for (int r = tc_tid(); r < kBN; r += kThreads) {
      const int row = s0 + r;
      const bool ok = row < M;
      s_lse2[b][r] = ok ? lse[row] * static_cast<float>(kLog2e) : 0.0f;
      s_g[b][r] = ok ? inv_tau * dloss[row] : 0.0f;
      s_pos[b][r] = ok ? static_cast<int>(pos[row]) : -1;
      s_self[b][r] = (ok && self_col) ? static_cast<int>(self_col[row]) : -1;
    }
  };

  float oacc[kNT][4];
TC_UNROLL
  for (int nt = 0; nt < kNT; ++nt)
TC_UNROLL
    for (int e = 0; e < 4; ++e) oacc[nt][e] = 0.0f;

  const int ntiles = (n_str + kBN - 1) / kBN;
  load_tile_async<kD, kBN>(sbuf, str, 0, n_str, D);
  if (kStreamStats) load_stats(0, 0);
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait_all();
    tc_sync();  // tile and statistics it are visible; tile it - 1's buffers are free
    const int b = it & 1, s0 = it * kBN;
    if (it + 1 < ntiles) {
      load_tile_async<kD, kBN>(sbuf + (b ^ 1) * kBN * kLd, str, s0 + kBN, n_str, D);
      if (kStreamStats) load_stats(b ^ 1, s0 + kBN);
    }
    cp_async_commit();
    const bf16* tile = sbuf + b * kBN * kLd;

    // Warp-uniform: does any entry of this warp's 16 x 64 block need the masked formula?
    bool special = false;
    if (kMode != kCols)
TC_UNROLL
      for (int h = 0; h < 2; ++h) special |= in_range(po[h], s0, kBN) || in_range(so[h], s0, kBN);
    if (kStreamStats)
TC_UNROLL
      for (int r = lane; r < kBN; r += 32) special |= in_range(s_pos[b][r], ow, 16) || in_range(s_self[b][r], ow, 16);
    special = tc_any(special);
    if (kMode != kCols) special |= s0 < n_private || s0 + kBN > Ncol;  // streamed indices are columns
    if (kMode != kRows) special |= ow < n_private || ow + 16 > Ncol;   // owned indices are columns

    // The tile in chunks of kChunk streamed rows (a rolled loop: it bounds the registers live at once to one
    // chunk's S, G and B fragments, next to the 16 x kD output accumulators and the A fragments).
TC_NO_UNROLL
    for (int c = 0; c < kBN; c += kChunk) {
      const bf16* ct = tile + c * kLd;
      float s[1][kChunk / 8][4];
      mma_abt<kD, 1, kChunk / 8>(s, af, ct, lane);
      if (special)
        grad_chunk<kMode, true>(s, ow, s0 + c, g, t, scale2, lse2o, go, po, so, s_lse2[b] + c, s_g[b] + c,
                                s_pos[b] + c, s_self[b] + c, n_private, Ncol);
      else
        grad_chunk<kMode, false>(s, ow, s0 + c, g, t, scale2, lse2o, go, po, so, s_lse2[b] + c, s_g[b] + c,
                                 s_pos[b] + c, s_self[b] + c, n_private, Ncol);

      // out (16 x kD) += G (16 x kChunk, the accumulators packed as A fragments) x chunk (kChunk x kD).
      // B(k = streamed row, n = feature) is the chunk read transposed: matrices (k0.., n0), (k0+8.., n0),
      // (k0.., n0+8), (k0+8.., n0+8), so lane l addresses row k0 + (l & 7) + 8 ((l >> 3) & 1), column
      // n0 + 8 (l >> 4).
      const int trow = (lane & 7) + ((lane >> 3) & 1) * 8, tcol = (lane >> 4) * 8;
TC_UNROLL
      for (int kk = 0; kk < kChunk / 16; ++kk) {
        const uint32_t pa[4] = {pack_bf16(s[0][2 * kk][0], s[0][2 * kk][1]),
                                pack_bf16(s[0][2 * kk][2], s[0][2 * kk][3]),
                                pack_bf16(s[0][2 * kk + 1][0], s[0][2 * kk + 1][1]),
                                pack_bf16(s[0][2 * kk + 1][2], s[0][2 * kk + 1][3])};
TC_UNROLL
        for (int dp = 0; dp < kD / 16; ++dp) {
          uint32_t bt[4];
          ldsm_x4_trans(bt, ct + (kk * 16 + trow) * kLd + dp * 16 + tcol);
          mma_bf16(oacc[2 * dp], pa, bt[0], bt[1]);
          mma_bf16(oacc[2 * dp + 1], pa, bt[2], bt[3]);
        }
      }
    }
  }
  cp_async_wait_all();

  // oacc[nt][e]: row ow + g + 8 (e >> 1), feature 8 nt + 2t + (e & 1); pairs go out as one bf16x2 store.
TC_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int row = ow + g + 8 * h;
    if (row >= n_own) continue;
    bf16* dst = out + static_cast<int64_t>(row) * D;
TC_UNROLL
    for (int nt = 0; nt < kNT; ++nt) {
      const int d = nt * 8 + 2 * t;
      if (d < D)
        *reinterpret_cast<__nv_bfloat162*>(dst + d) = __floats2bfloat162_rn(oacc[nt][2 * h], oacc[nt][2 * h + 1]);
    }
  }
}
