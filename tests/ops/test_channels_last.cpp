// Channels-last activations (docs/cpu-dense-kernels.md): the tensor layout, and the ops a ResNet's activations
// go through on the CPU (conv2d, batch norm with and without the fused add + ReLU, elementwise ops) give the
// values and gradients of the NCHW path and keep the layout. The NCHW results come from the same ops with
// kernels::set_cpu_conv_channels_last(false) or contiguous inputs; float32 throughout, so results agree to
// the rounding of a different summation order. Gradients are compared by value: a leaf's .grad is stored
// contiguous whatever the layout it arrived in (engine/autograd/engine.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/ops/ops.h"
#include "kernels/kernel_api.h"

using namespace selfsup;

namespace {

// max |a - b| / max(1, max |b|) over all elements (logical order), for same-shape tensors.
double scaled_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.sizes() == b.sizes());
  const auto va = a.to_vector(), vb = b.to_vector();
  double diff = 0, scale = 1;
  for (size_t i = 0; i < va.size(); ++i) {
    diff = std::max(diff, std::abs(va[i] - vb[i]));
    scale = std::max(scale, std::abs(vb[i]));
  }
  return diff / scale;
}

Tensor randn(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn(s, DType::f32, &g);
}

// Turns the channels-last convolutions off for a scope.
struct NchwScope {
  NchwScope() { kernels::set_cpu_conv_channels_last(false); }
  ~NchwScope() { kernels::set_cpu_conv_channels_last(true); }
};

}  // namespace

TEST_CASE("channels-last tensors: strides, the layout test and the differentiable copy") {
  Tensor e = Tensor::empty_channels_last({2, 3, 4, 5});
  CHECK(e.strides() == Shape{60, 1, 15, 3});
  CHECK(e.is_channels_last());
  CHECK_FALSE(e.is_contiguous());
  CHECK(Tensor::empty({2, 1, 4, 5}).is_channels_last());  // one channel: both layouts at once
  CHECK_FALSE(Tensor::empty({2, 3, 4, 5}).is_channels_last());
  CHECK_FALSE(Tensor::empty({2, 3, 4}).is_channels_last());
  CHECK_THROWS(Tensor::empty_channels_last({2, 3, 4}));

  Tensor x = randn({2, 3, 4, 5}, 1).set_requires_grad(true);
  Tensor cl = x.channels_last();
  CHECK(cl.is_channels_last());
  CHECK(cl.to_vector() == x.to_vector());  // same logical values
  CHECK(cl.channels_last().is_same(cl));
  CHECK(cl.contiguous().is_contiguous());
  CHECK(cl.contiguous().to_vector() == x.to_vector());
  Tensor w = randn({2, 3, 4, 5}, 2);
  sum(mul(cl, w)).backward();
  CHECK(x.grad().to_vector() == w.to_vector());
}

TEST_CASE("elementwise ops keep the channels-last layout and their values") {
  Tensor a = randn({2, 8, 5, 3}, 3), b = randn({2, 8, 5, 3}, 4);
  Tensor acl = a.channels_last(), bcl = b.channels_last();
  Tensor s = add(acl, bcl);
  CHECK(s.is_channels_last());
  CHECK(s.to_vector() == add(a, b).to_vector());  // elementwise: bit-identical in any order
  Tensor mixed = mul(acl, b);                      // one operand of each layout
  CHECK(mixed.is_channels_last());
  CHECK(mixed.to_vector() == mul(a, b).to_vector());
  Tensor r = relu(acl);
  CHECK(r.is_channels_last());
  CHECK(r.to_vector() == relu(a).to_vector());
  Tensor bias = randn({1, 8, 1, 1}, 5);  // broadcast along N, H, W
  CHECK(add(acl, bias).is_channels_last());
  CHECK(add(acl, bias).to_vector() == add(a, bias).to_vector());

  Tensor x = a.channels_last().detach().set_requires_grad(true);
  sum(mul(relu(x), b)).backward();  // a leaf's .grad is stored contiguous (engine.cpp): values only
  Tensor x2 = a.detach().set_requires_grad(true);
  sum(mul(relu(x2), b)).backward();
  CHECK(x.grad().to_vector() == x2.grad().to_vector());
}

TEST_CASE("conv2d writes channels-last where it computes faster, with the NCHW path's values and gradients") {
  const Tensor x0 = randn({4, 16, 10, 10}, 6), w0 = randn({16, 16, 3, 3}, 7), b0 = randn({16}, 8);
  const Tensor gy = randn({4, 16, 10, 10}, 9);
  const Conv2dOptions opt{.padding = {1, 1}};
  auto run = [&](const Tensor& xin, Tensor* grads) {
    Tensor x = xin.detach().set_requires_grad(true), w = w0.detach().set_requires_grad(true);
    Tensor b = b0.detach().set_requires_grad(true);
    Tensor y = conv2d(x, w, b, opt);
    sum(mul(y, gy)).backward();
    grads[0] = x.grad(), grads[1] = w.grad(), grads[2] = b.grad();
    return y;
  };
  Tensor ref_g[3], cl_g[3], in_g[3];
  Tensor ref;
  {
    NchwScope nchw;
    ref = run(x0, ref_g);
    CHECK(ref.is_contiguous());
  }
  Tensor y = run(x0, cl_g);  // NCHW input, channels-last output
  CHECK(y.is_channels_last());
  CHECK_FALSE(y.is_contiguous());
  Tensor y2 = run(x0.channels_last(), in_g);  // channels-last in and out
  CHECK(y2.is_channels_last());
  for (const Tensor* g : {cl_g, in_g}) {
    CHECK(scaled_diff(g[0], ref_g[0]) < 1e-5);
    CHECK(scaled_diff(g[1], ref_g[1]) < 1e-5);
    CHECK(scaled_diff(g[2], ref_g[2]) < 1e-5);
  }
  CHECK(scaled_diff(y, ref) < 1e-5);
  CHECK(scaled_diff(y2, ref) < 1e-5);
  // 128 channels stay NCHW (blocked kernels win there), also from a channels-last input.
  Tensor wide = conv2d(randn({2, 64, 4, 4}, 10).channels_last(), randn({128, 64, 3, 3}, 11), Tensor(), opt);
  CHECK(wide.is_contiguous());
}

TEST_CASE("batch norm and its fused add + ReLU on channels-last input match NCHW, layout kept") {
  const Tensor x0 = add(mul(randn({6, 16, 5, 7}, 12), 3.0), 2.0), r0 = randn({6, 16, 5, 7}, 13);
  const Tensor gamma0 = randn({16}, 14), beta0 = randn({16}, 15), gy = randn({6, 16, 5, 7}, 16);
  for (bool fused : {false, true}) {
    CAPTURE(fused);
    Tensor out[2], dx[2], dr[2], dg[2], db[2], rm[2], rv[2];
    for (int cl = 0; cl < 2; ++cl) {
      Tensor x = (cl ? x0.channels_last() : x0).detach().set_requires_grad(true);
      Tensor r = (cl ? r0.channels_last() : r0).detach().set_requires_grad(true);
      Tensor g = gamma0.detach().set_requires_grad(true), b = beta0.detach().set_requires_grad(true);
      rm[cl] = Tensor::zeros({16});
      rv[cl] = Tensor::ones({16});
      out[cl] = fused ? batch_norm_add_relu(x, r, rm[cl], rv[cl], g, b, true, 0.1, 1e-5)
                      : batch_norm(x, rm[cl], rv[cl], g, b, true, 0.1, 1e-5);
      sum(mul(out[cl], gy)).backward();
      dx[cl] = x.grad(), dg[cl] = g.grad(), db[cl] = b.grad();
      if (fused) dr[cl] = r.grad();
      CHECK(out[cl].is_channels_last() == (cl == 1));
    }
    CHECK(scaled_diff(out[1], out[0]) < 1e-5);
    CHECK(scaled_diff(dx[1], dx[0]) < 1e-5);
    CHECK(scaled_diff(dg[1], dg[0]) < 1e-5);
    CHECK(scaled_diff(db[1], db[0]) < 1e-5);
    CHECK(scaled_diff(rm[1], rm[0]) < 1e-6);
    CHECK(scaled_diff(rv[1], rv[0]) < 1e-6);
    if (fused) CHECK(scaled_diff(dr[1], dr[0]) < 1e-6);
  }
  // Eval mode (running statistics) takes the layout too.
  NoGradGuard ng;
  Tensor rm = randn({16}, 17), rv = add(mul(randn({16}, 18), randn({16}, 18)), 0.5);
  Tensor e_cl = batch_norm(x0.channels_last(), rm, rv, gamma0, beta0, false, 0.1, 1e-5);
  CHECK(e_cl.is_channels_last());
  CHECK(scaled_diff(e_cl, batch_norm(x0, rm, rv, gamma0, beta0, false, 0.1, 1e-5)) < 1e-6);
}
