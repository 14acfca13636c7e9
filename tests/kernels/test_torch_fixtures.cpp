// The CPU batch norm (plain, and fused with the residual add and ReLU), cross-entropy and max pool kernels
// against PyTorch's own float64 results (tests/fixtures/*.ssfx, made by make_fixtures.py): float64 within
// 1e-10, float32 loosely.
#include <doctest/doctest.h>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

using Fixture = std::map<std::string, FixtureTensor>;

template <typename T>
void check_batch_norm(const Fixture& fx, const std::string& name, double tol) {
  auto get = [&](const std::string& t) { return fixture_tensor(fx, name + "." + t).data; };
  const auto& shape = fixture_tensor(fx, name + ".x").shape;
  const int64_t N = shape[0], C = shape[1];
  int64_t S = 1;
  for (size_t d = 2; d < shape.size(); ++d) S *= shape[d];
  const double eps = get("attrs")[0], momentum = get("attrs")[1];
  const auto x = cast_to<T>(get("x")), gamma = cast_to<T>(get("gamma")), beta = cast_to<T>(get("beta"));
  const auto dy = cast_to<T>(get("dy"));
  auto rm = cast_to<T>(get("running_mean_before")), rv = cast_to<T>(get("running_var_before"));
  std::vector<T> y(x.size()), mean(C), invstd(C), dx(x.size()), dgamma(C), dbeta(C), y_eval(x.size());

  batch_norm_fwd_train_cpu(N, C, S, x.data(), gamma.data(), beta.data(), eps, momentum, y.data(), mean.data(),
                           invstd.data(), rm.data(), rv.data());
  check_close(y, get("y"), tol, tol, name + " y");
  check_close(rm, get("running_mean_after"), tol, tol, name + " running_mean");
  check_close(rv, get("running_var_after"), tol, tol, name + " running_var");
  batch_norm_bwd_cpu(N, C, S, dy.data(), x.data(), gamma.data(), mean.data(), invstd.data(), dx.data(),
                     dgamma.data(), dbeta.data());
  check_close(dx, get("dx"), tol, tol, name + " dx");
  check_close(dgamma, get("dgamma"), tol, tol, name + " dgamma");
  check_close(dbeta, get("dbeta"), tol, tol, name + " dbeta");
  batch_norm_fwd_eval_cpu(N, C, S, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), eps, y_eval.data());
  check_close(y_eval, get("y_eval"), tol, tol, name + " y_eval");
}

// relu(batch_norm(x) + residual) against torch's unfused F.batch_norm, + and F.relu (residual absent in the
// "relu" case): output, running statistics and every gradient, residual's included.
template <typename T>
void check_batch_norm_add_relu(const Fixture& fx, const std::string& name, double tol) {
  auto get = [&](const std::string& t) { return fixture_tensor(fx, name + "." + t).data; };
  const auto& shape = fixture_tensor(fx, name + ".x").shape;
  const int64_t N = shape[0], C = shape[1];
  int64_t S = 1;
  for (size_t d = 2; d < shape.size(); ++d) S *= shape[d];
  const bool has_res = fx.count(name + ".residual") > 0;
  const double eps = get("attrs")[0], momentum = get("attrs")[1];
  const auto x = cast_to<T>(get("x")), gamma = cast_to<T>(get("gamma")), beta = cast_to<T>(get("beta"));
  const auto dy = cast_to<T>(get("dy"));
  const auto res = has_res ? cast_to<T>(get("residual")) : std::vector<T>();
  auto rm = cast_to<T>(get("running_mean_before")), rv = cast_to<T>(get("running_var_before"));
  std::vector<T> y(x.size()), mean(C), invstd(C), dx(x.size()), dres(x.size()), dgamma(C), dbeta(C);

  batch_norm_add_relu_fwd_train_cpu(N, C, S, x.data(), has_res ? res.data() : nullptr, gamma.data(), beta.data(),
                                    eps, momentum, y.data(), mean.data(), invstd.data(), rm.data(), rv.data());
  check_close(y, get("y"), tol, tol, name + " y");
  check_close(rm, get("running_mean_after"), tol, tol, name + " running_mean");
  check_close(rv, get("running_var_after"), tol, tol, name + " running_var");
  batch_norm_add_relu_bwd_cpu(N, C, S, dy.data(), y.data(), x.data(), gamma.data(), mean.data(), invstd.data(),
                              dx.data(), has_res ? dres.data() : nullptr, dgamma.data(), dbeta.data());
  check_close(dx, get("dx"), tol, tol, name + " dx");
  if (has_res) check_close(dres, get("dresidual"), tol, tol, name + " dresidual");
  check_close(dgamma, get("dgamma"), tol, tol, name + " dgamma");
  check_close(dbeta, get("dbeta"), tol, tol, name + " dbeta");
}

template <typename T>
void check_cross_entropy(const Fixture& fx, const std::string& name, double tol) {
  const auto& lg = fixture_tensor(fx, "logits");
  const int64_t N = lg.shape[0], C = lg.shape[1];
  std::vector<int64_t> target;
  for (double t : fixture_tensor(fx, "target").data) target.push_back(static_cast<int64_t>(t));
  const double ls = fixture_tensor(fx, name + ".label_smoothing").data[0];
  const auto logits = cast_to<T>(lg.data);
  std::vector<T> loss(N), lse(N), dlogits(N * C);
  cross_entropy_fwd_cpu(N, C, logits.data(), target.data(), ls, loss.data(), lse.data());
  check_close(loss, fixture_tensor(fx, name + ".loss_none").data, tol, tol, name + " loss per row");
  double mean = 0;
  for (T l : loss) mean += static_cast<double>(l) / static_cast<double>(N);
  check_close(std::vector<double>{mean}, fixture_tensor(fx, name + ".loss").data, tol, tol, name + " loss");
  const std::vector<T> dloss(N, static_cast<T>(1.0 / static_cast<double>(N)));  // d mean / d loss_i
  cross_entropy_bwd_cpu(N, C, logits.data(), target.data(), ls, lse.data(), dloss.data(), dlogits.data());
  check_close(dlogits, fixture_tensor(fx, name + ".dlogits").data, tol, tol, name + " dlogits");
}

template <typename T>
void check_max_pool(const Fixture& fx, const std::string& name, double tol) {
  auto get = [&](const std::string& t) -> const FixtureTensor& { return fixture_tensor(fx, name + "." + t); };
  const auto& a = get("attrs").data;
  const auto& xs = get("x").shape;
  const auto& ys = get("y").shape;
  Pool2dShape s{xs[0], xs[1], xs[2], xs[3],
                static_cast<int64_t>(a[0]), static_cast<int64_t>(a[1]), static_cast<int64_t>(a[2]),
                static_cast<int64_t>(a[3]), static_cast<int64_t>(a[4]), static_cast<int64_t>(a[5]),
                1, 1, ys[2], ys[3], false};
  const auto x = cast_to<T>(get("x").data), dy = cast_to<T>(get("dy").data);
  std::vector<T> y(dy.size()), dx(x.size());
  std::vector<int64_t> idx(dy.size());
  max_pool2d_fwd_cpu(s, x.data(), y.data(), idx.data());
  check_close(y, get("y").data, tol, tol, name + " y");
  check_close(std::vector<double>(idx.begin(), idx.end()), get("idx").data, 0, 0, name + " indices");
  max_pool2d_bwd_cpu(s, dy.data(), idx.data(), dx.data());
  check_close(dx, get("dx").data, tol, tol, name + " dx");
}

}  // namespace

TEST_CASE("batch_norm matches PyTorch (training, running stats, backward, eval)") {
  const Fixture fx = load_fixture("batch_norm.ssfx");
  for (const char* name : {"nchw", "nc"}) {
    CAPTURE(name);
    check_batch_norm<double>(fx, name, 1e-10);
    check_batch_norm<float>(fx, name, 1e-4);
  }
}

TEST_CASE("batch_norm_add_relu matches PyTorch's batch_norm + add + relu (training, running stats, backward)") {
  const Fixture fx = load_fixture("batch_norm_add_relu.ssfx");
  for (const char* name : {"relu", "add_relu", "add_relu_short"}) {
    CAPTURE(name);
    check_batch_norm_add_relu<double>(fx, name, 1e-10);
    check_batch_norm_add_relu<float>(fx, name, 1e-4);
  }
}

TEST_CASE("cross_entropy matches PyTorch (label smoothing 0 and 0.1, mean reduction)") {
  const Fixture fx = load_fixture("cross_entropy.ssfx");
  for (const char* name : {"ls0", "ls1"}) {
    CAPTURE(name);
    check_cross_entropy<double>(fx, name, 1e-10);
    check_cross_entropy<float>(fx, name, 1e-5);
  }
}

TEST_CASE("max_pool2d matches PyTorch (values, indices, backward)") {
  const Fixture fx = load_fixture("max_pool2d.ssfx");
  for (const char* name : {"k3s2p1", "k2s2"}) {
    CAPTURE(name);
    check_max_pool<double>(fx, name, 1e-10);
    check_max_pool<float>(fx, name, 1e-5);
  }
}
