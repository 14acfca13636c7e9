#include "ssl/eval/knn.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"

namespace selfsup::eval {

namespace {
void check_labels(const Tensor& labels, int64_t n, int64_t num_classes, const char* what) {
  SELFSUP_CHECK(labels.dtype() == DType::i64 && labels.dim() == 1 && labels.size(0) == n, "knn: ", what,
                " labels must be int64 of shape (", n, "), got ", dtype_name(labels.dtype()), " ",
                shape_str(labels.sizes()));
  Tensor c = labels.contiguous();
  const int64_t* p = c.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    SELFSUP_CHECK(p[i] >= 0 && p[i] < num_classes, "knn: ", what, " label ", p[i], " at ", i, " outside [0, ",
                  num_classes, ")");
}
}  // namespace

double knn_accuracy(const Tensor& train_features, const Tensor& train_labels, const Tensor& test_features,
                    const Tensor& test_labels, int64_t num_classes, const KnnOptions& opt) {
  SELFSUP_CHECK(train_features.dim() == 2 && test_features.dim() == 2 &&
                    train_features.size(1) == test_features.size(1),
                "knn: features must be (N, D) and (M, D), got ", shape_str(train_features.sizes()), " and ",
                shape_str(test_features.sizes()));
  const int64_t n = train_features.size(0), m = test_features.size(0);
  SELFSUP_CHECK(n > 0 && m > 0, "knn: empty feature set");
  SELFSUP_CHECK(opt.k >= 1 && opt.temperature > 0, "knn: k must be >= 1 and temperature > 0");
  check_labels(train_labels, n, num_classes, "train");
  check_labels(test_labels, m, num_classes, "test");
  NoGradGuard ng;
  const int64_t k = std::min(opt.k, n);
  Tensor train = normalize(train_features.to(DType::f32), 1);
  Tensor test = normalize(test_features.to(DType::f32), 1);
  Tensor tl = train_labels.contiguous(), sl = test_labels.contiguous();
  const int64_t* train_lab = tl.data_ptr<int64_t>();
  const int64_t* test_lab = sl.data_ptr<int64_t>();
  int64_t correct = 0;
  for (int64_t c0 = 0; c0 < m; c0 += opt.chunk) {
    const int64_t rows = std::min(opt.chunk, m - c0);
    Tensor sim = matmul(test.narrow(0, c0, rows), train.t()).contiguous();  // (rows, N)
    const float* s = sim.data_ptr<float>();
#pragma omp parallel for reduction(+ : correct) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = s + r * n;
      std::vector<int64_t> idx(static_cast<size_t>(n));
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                        [row](int64_t a, int64_t b) { return row[a] > row[b]; });
      std::vector<double> votes(static_cast<size_t>(num_classes), 0.0);
      for (int64_t j = 0; j < k; ++j) votes[train_lab[idx[j]]] += std::exp(row[idx[j]] / opt.temperature);
      int64_t pred = std::max_element(votes.begin(), votes.end()) - votes.begin();
      correct += pred == test_lab[c0 + r];
    }
  }
  return static_cast<double>(correct) / static_cast<double>(m);
}

}  // namespace selfsup::eval
