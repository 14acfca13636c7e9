// The CPU conv2d kernels (forward, backward data, backward weight and bias) against PyTorch's float64
// results in tests/fixtures/conv2d.ssfx: stride 2 + padding 1, dilation 2, groups 2, bias; float64 within
// 1e-10, float32 loosely.
#include <doctest/doctest.h>

#include "kernels/kernel_api.h"
#include "tests/kernels/nn_test_util.h"

using namespace selfsup::kernels;
using namespace selfsup::testing;

namespace {

using Fixture = std::map<std::string, FixtureTensor>;

template <typename T>
void check_conv2d(const Fixture& fx, const std::string& name, double tol) {
  auto get = [&](const std::string& t) -> const FixtureTensor& { return fixture_tensor(fx, name + "." + t); };
  // attrs: stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias
  const auto& a = get("attrs").data;
  const auto& xs = get("x").shape;  // (N, C, H, W)
  const auto& ws = get("w").shape;  // (K, C/groups, R, S)
  const auto& ys = get("y").shape;  // (N, K, P, Q)
  auto attr = [&](int i) { return static_cast<int64_t>(a[i]); };
  const Conv2dShape s{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], attr(0), attr(1),
                      attr(2), attr(3), attr(4), attr(5), attr(6), ys[2], ys[3]};
  const bool has_bias = a[7] != 0;
  const auto x = cast_to<T>(get("x").data), w = cast_to<T>(get("w").data), dy = cast_to<T>(get("dy").data);
  const std::vector<T> b = has_bias ? cast_to<T>(get("b").data) : std::vector<T>{};
  std::vector<T> y(dy.size()), dx(x.size()), dw(w.size()), db(has_bias ? s.K : 0);

  conv2d_fwd_cpu(s, x.data(), w.data(), has_bias ? b.data() : nullptr, y.data());
  check_close(y, get("y").data, tol, tol, name + " y");
  conv2d_bwd_data_cpu(s, dy.data(), w.data(), dx.data());
  check_close(dx, get("dx").data, tol, tol, name + " dx");
  conv2d_bwd_weight_cpu(s, x.data(), dy.data(), dw.data(), has_bias ? db.data() : nullptr);
  check_close(dw, get("dw").data, tol, tol, name + " dw");
  if (has_bias) check_close(db, get("db").data, tol, tol, name + " db");
}

}  // namespace

TEST_CASE("conv2d matches PyTorch (stride/padding, dilation, groups, bias; forward and both backwards)") {
  const Fixture fx = load_fixture("conv2d.ssfx");
  for (const char* name : {"s2p1", "dil2", "groups2", "bias"}) {
    CAPTURE(name);
    check_conv2d<double>(fx, name, 1e-10);
    check_conv2d<float>(fx, name, 1e-4);
  }
}
