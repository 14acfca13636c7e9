// Reductions over the middle axis of a contiguous (outer, dim, inner) block. Two loop orders: with
// inner == 1 each output is a dot-like pass over one contiguous row; with inner > 1 the loop walks dim in
// the middle and accumulates a contiguous row of `inner` partial results, so memory is read once in order.
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/kernel_api.h"

namespace selfsup::kernels {

namespace {

template <typename T>
void reduce_rows(ReduceOp op, int64_t outer, int64_t dim, const T* in, T* out, int64_t* idx) {
#pragma omp parallel for schedule(static) if (outer * dim > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    const T* row = in + o * dim;
    switch (op) {
      case ReduceOp::sum: {
        double acc = 0;
        for (int64_t d = 0; d < dim; ++d) acc += row[d];
        out[o] = static_cast<T>(acc);
        break;
      }
      case ReduceOp::max:
      case ReduceOp::min: {
        bool is_max = op == ReduceOp::max;
        T best = row[0];
        int64_t bi = 0;
        for (int64_t d = 1; d < dim; ++d) {
          // NaN propagates, as in PyTorch: once best is NaN it stays.
          if (std::isnan(best)) break;
          if (std::isnan(row[d]) || (is_max ? row[d] > best : row[d] < best)) {
            best = row[d];
            bi = d;
          }
        }
        out[o] = best;
        if (idx) idx[o] = bi;
        break;
      }
      case ReduceOp::logsumexp: {
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t d = 0; d < dim; ++d) m = row[d] > m ? row[d] : m;
        if (std::isinf(m)) {
          out[o] = m;
          break;
        }
        double acc = 0;
        for (int64_t d = 0; d < dim; ++d) acc += std::exp(static_cast<double>(row[d] - m));
        out[o] = static_cast<T>(m + std::log(acc));
        break;
      }
    }
  }
}

template <typename T>
void reduce_strided(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out, int64_t* idx) {
#pragma omp parallel if (outer * dim * inner > 32768)
  {
    std::vector<double> acc(static_cast<size_t>(inner));
    std::vector<T> mx(static_cast<size_t>(inner));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      const T* blk = in + o * dim * inner;
      T* ob = out + o * inner;
      switch (op) {
        case ReduceOp::sum: {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t d = 0; d < dim; ++d)
            for (int64_t i = 0; i < inner; ++i) acc[i] += blk[d * inner + i];
          for (int64_t i = 0; i < inner; ++i) ob[i] = static_cast<T>(acc[i]);
          break;
        }
        case ReduceOp::max:
        case ReduceOp::min: {
          bool is_max = op == ReduceOp::max;
          int64_t* ib = idx ? idx + o * inner : nullptr;
          for (int64_t i = 0; i < inner; ++i) {
            ob[i] = blk[i];
            if (ib) ib[i] = 0;
          }
          for (int64_t d = 1; d < dim; ++d)
            for (int64_t i = 0; i < inner; ++i) {
              T v = blk[d * inner + i];
              if (!std::isnan(ob[i]) && (std::isnan(v) || (is_max ? v > ob[i] : v < ob[i]))) {
                ob[i] = v;
                if (ib) ib[i] = d;
              }
            }
          break;
        }
        case ReduceOp::logsumexp: {
          for (int64_t i = 0; i < inner; ++i) mx[i] = -std::numeric_limits<T>::infinity();
          for (int64_t d = 0; d < dim; ++d)
            for (int64_t i = 0; i < inner; ++i) mx[i] = std::max(mx[i], blk[d * inner + i]);
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t d = 0; d < dim; ++d)
            for (int64_t i = 0; i < inner; ++i)
              if (!std::isinf(mx[i])) acc[i] += std::exp(static_cast<double>(blk[d * inner + i] - mx[i]));
          for (int64_t i = 0; i < inner; ++i)
            ob[i] = std::isinf(mx[i]) ? mx[i] : static_cast<T>(mx[i] + std::log(acc[i]));
          break;
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void reduce_cpu(ReduceOp op, int64_t outer, int64_t dim, int64_t inner, const T* in, T* out, int64_t* idx) {
  if (inner == 1) {
    reduce_rows(op, outer, dim, in, out, idx);
  } else {
    reduce_strided(op, outer, dim, inner, in, out, idx);
  }
}

template void reduce_cpu<float>(ReduceOp, int64_t, int64_t, int64_t, const float*, float*, int64_t*);
template void reduce_cpu<double>(ReduceOp, int64_t, int64_t, int64_t, const double*, double*, int64_t*);

}  // namespace selfsup::kernels
