#include "ssl/eval/linear_probe.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"
#include "engine/optim/schedule.h"
#include "engine/optim/sgd.h"

namespace selfsup::eval {

namespace {

double top1(const Tensor& features, const Tensor& labels, const Tensor& w, const Tensor& b) {
  NoGradGuard ng;
  Tensor pred = argmax(linear(features, w, b), 1);
  return static_cast<double>(sum(eq(pred, labels)).item()) / static_cast<double>(labels.size(0));
}

// A random permutation of [0, n) that depends only on (seed, epoch): sort indices by Philox keys.
Tensor permutation(int64_t n, uint64_t seed, int64_t epoch) {
  Generator g(seed, 0x50524f4245ull + static_cast<uint64_t>(epoch));  // "PROBE" + epoch
  Tensor keys = Tensor::rand({n}, DType::f64, &g);
  const double* k = keys.data_ptr<double>();
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [k](int64_t a, int64_t b) { return k[a] < k[b]; });
  return Tensor::from_vector(idx, {n});
}

}  // namespace

LinearProbeResult linear_probe(const Tensor& train_features, const Tensor& train_labels, const Tensor& test_features,
                               const Tensor& test_labels, int64_t num_classes, const LinearProbeOptions& opt) {
  SELFSUP_CHECK(train_features.dim() == 2 && test_features.dim() == 2 &&
                    train_features.size(1) == test_features.size(1),
                "linear probe: features must be (N, D) and (M, D), got ", shape_str(train_features.sizes()), " and ",
                shape_str(test_features.sizes()));
  SELFSUP_CHECK(opt.epochs >= 1 && opt.batch >= 1, "linear probe: epochs and batch must be >= 1");
  const int64_t n = train_features.size(0), d = train_features.size(1);
  Tensor train, test;
  {
    NoGradGuard ng;
    Tensor tf = train_features.to(DType::f32);
    Tensor mu = mean(tf, {0}, true);
    Tensor sd = add(sqrt(var(tf, {0}, 0, true)), 1e-6);
    train = div(sub(tf, mu), sd);
    test = div(sub(test_features.to(DType::f32), mu), sd);
  }
  Generator g(opt.seed, 0x4c494e4541ull);  // "LINEA"
  Tensor w = mul(sub(Tensor::rand({num_classes, d}, DType::f32, &g), 0.5), 2.0 / std::sqrt(double(d)));
  Tensor b = Tensor::zeros({num_classes});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  SGD sgd({ParamGroup{{w}}, ParamGroup{{b}, -1, 0.0}}, SgdOptions{opt.lr, 0.9, 0.0, opt.weight_decay, false});
  const int64_t steps_per_epoch = (n + opt.batch - 1) / opt.batch;
  WarmupCosineSchedule sched{opt.lr, 0, opt.epochs * steps_per_epoch, 0.0};
  int64_t step = 0;
  for (int64_t e = 0; e < opt.epochs; ++e) {
    Tensor perm = permutation(n, opt.seed, e);
    double loss_sum = 0;
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      Tensor idx = perm.narrow(0, s * opt.batch, std::min(opt.batch, n - s * opt.batch));
      Tensor x = index_select(train, 0, idx), y = index_select(train_labels, 0, idx);
      sgd.set_lr_factor(sched.factor(step++));
      Tensor loss = cross_entropy(linear(x, w, b), y);
      sgd.zero_grad();
      loss.backward();
      sgd.step();
      loss_sum += loss.item();
    }
    if (opt.on_epoch) opt.on_epoch(e, loss_sum / static_cast<double>(steps_per_epoch));
  }
  return {top1(train, train_labels, w, b), top1(test, test_labels, w, b)};
}

}  // namespace selfsup::eval
