// Helpers for the model fixture tests: the deterministic values that tests/fixtures/make_model_fixtures.py
// gives every weight, input and cotangent (the fixtures store only outputs and gradients), and closeness
// checks over Tensors.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/nn/module.h"
#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"
#include "tests/support/fixture.h"

namespace selfsup::testing {

inline uint32_t fnv1a32(const std::string& s) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char b : s) h = (h ^ b) * 0x01000193u;
  return h;
}

// Values in [-1, 1), a pure function of (name, index): murmur3's fmix32 of index * golden + fnv1a(name).
// Integer arithmetic mod 2^32 and an exact division by 2^32, so Python and C++ agree bit for bit.
inline std::vector<double> det_values(const std::string& name, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  const uint32_t salt = fnv1a32(name);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t x = static_cast<uint32_t>(i) * 0x9E3779B1u + salt;
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    x ^= x >> 16;
    v[static_cast<size_t>(i)] = 2.0 * (static_cast<double>(x) / 4294967296.0) - 1.0;
  }
  return v;
}

inline Tensor det_tensor(const std::string& name, const Shape& shape, DType dtype = DType::f64) {
  return Tensor::from_vector(det_values(name, shape_numel(shape)), shape).to(dtype);
}

// The value make_model_fixtures.py's det_state_value gives the state_dict entry `key` of `shape`.
inline Tensor det_state_value(const std::string& key, const Shape& shape) {
  auto ends = [&](const std::string& s) { return key.size() >= s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0; };
  if (ends("num_batches_tracked")) return Tensor::full({}, 5, DType::i64);
  std::vector<double> v = det_values(key, shape_numel(shape));
  double scale = 0.1, shift = 0.0;
  if (ends("running_mean")) {
    scale = 0.1;
  } else if (ends("running_var")) {
    scale = 0.25, shift = 1.0;
  } else if (ends("weight") && shape.size() == 4) {
    scale = std::sqrt(6.0 / static_cast<double>(shape[1] * shape[2] * shape[3]));
  } else if (ends("weight") && shape.size() == 2) {
    scale = 1.0 / std::sqrt(static_cast<double>(shape[1]));
  } else if (ends("weight")) {
    scale = 0.25, shift = 1.0;
  }
  for (auto& e : v) e = shift + scale * e;
  return Tensor::from_vector(v, shape);
}

// A state_dict for `m` with every entry set by det_state_value.
inline nn::NamedTensors det_state(const nn::Module& m) {
  nn::NamedTensors out;
  for (const auto& [k, t] : m.state_dict()) out.emplace_back(k, det_state_value(k, t.sizes()));
  return out;
}

inline Tensor fixture_as_tensor(const FixtureTensor& f) {
  return Tensor::from_vector(f.data, Shape(f.shape.begin(), f.shape.end()));
}

inline const FixtureTensor& get(const std::map<std::string, FixtureTensor>& fx, const std::string& name) {
  auto it = fx.find(name);
  REQUIRE_MESSAGE(it != fx.end(), "fixture has no tensor '" << name << "'");
  return it->second;
}

// |got - want| <= atol + rtol |want| elementwise, with atol = rtol * max|want| so near-zero entries of a
// vector are judged against the vector's scale.
inline void check_tensor(const Tensor& got, const FixtureTensor& want, double rtol, const std::string& what) {
  std::vector<double> g = got.to_vector();
  REQUIRE_MESSAGE(got.sizes() == Shape(want.shape.begin(), want.shape.end()),
                  what << ": shape " << shape_str(got.sizes()) << " vs fixture "
                       << shape_str(Shape(want.shape.begin(), want.shape.end())));
  double scale = 0;
  for (double w : want.data) scale = std::max(scale, std::abs(w));
  CloseResult r = allclose(g, want.data, rtol * scale, rtol);
  CHECK_MESSAGE(r.ok, what << ": " << r.message << " (max abs err " << r.max_abs << ", scale " << scale << ")");
}

// <grad, det(prefix + name + "#k")> for k = 0..2, one row per parameter in named_parameters order, and
// ||grad||_2 as a 4th column: an error e in the gradient moves a projection by about ||e|| / sqrt(3), so
// the projections are judged against the gradient's norm, not their own (possibly cancelling) value.
inline std::vector<std::vector<double>> grad_projections(const nn::Module& m, const std::string& prefix) {
  std::vector<std::vector<double>> rows;
  for (const auto& [name, p] : m.named_parameters()) {
    REQUIRE_MESSAGE(p.grad().defined(), "parameter " << name << " has no gradient");
    std::vector<double> g = p.grad().to_vector(), row;
    for (int k = 0; k < 3; ++k) {
      std::vector<double> r = det_values(prefix + name + "#" + std::to_string(k), p.numel());
      double s = 0;
      for (size_t i = 0; i < g.size(); ++i) s += g[i] * r[i];
      row.push_back(s);
    }
    double n2 = 0;
    for (double e : g) n2 += e * e;
    row.push_back(std::sqrt(n2));
    rows.push_back(row);
  }
  return rows;
}

inline std::vector<double> input_grad_projections(const Tensor& x) {
  std::vector<double> g = x.grad().to_vector(), out;
  for (int k = 0; k < 3; ++k) {
    std::vector<double> r = det_values("dxproj:" + std::to_string(k), x.numel());
    double s = 0;
    for (size_t i = 0; i < g.size(); ++i) s += g[i] * r[i];
    out.push_back(s);
  }
  return out;
}

inline void check_projections(const std::vector<std::vector<double>>& got, const FixtureTensor& want,
                              const nn::Module& m, double rtol, const std::string& what) {
  auto names = m.named_parameters();
  REQUIRE_MESSAGE((want.shape.size() == 2 && static_cast<size_t>(want.shape[0]) == got.size()),
                  what << ": " << got.size() << " parameters, fixture has " << want.shape[0]);
  // Convs feeding a training-mode BN have gradients that vanish up to BN's eps (the output is invariant to
  // their scale); float32 cannot resolve those relative to their own tiny norm, so 1% of the model's
  // largest gradient norm is added to each parameter's scale.
  double max_norm = 0;
  for (const auto& row : got) max_norm = std::max(max_norm, row[3]);
  for (size_t p = 0; p < got.size(); ++p) {
    std::vector<double> w(want.data.begin() + 3 * p, want.data.begin() + 3 * p + 3);
    std::vector<double> mine(got[p].begin(), got[p].begin() + 3);
    CloseResult r = allclose(mine, w, rtol * (got[p][3] + 0.01 * max_norm) + 1e-300, rtol);
    CHECK_MESSAGE(r.ok, what << " " << names[p].first << ": " << r.message);
  }
}

// Runs make_model_fixtures.py's run_case on our module in `dtype`: load the deterministic state, eval
// forward + backward of sum(y * cot), then train forward + backward, comparing with the fixture's
// outputs, gradient projections, input-gradient projections, running stats and (when stored) gradients.
inline void check_model_case(nn::Module& m, const std::map<std::string, FixtureTensor>& fx, const std::string& tag,
                             const Shape& x_shape, DType dtype, double rtol) {
  const std::string what = tag + (dtype == DType::f64 ? " f64" : " f32");
  m.to(dtype);
  m.load_state_dict(det_state(m));
  const Tensor x0 = det_tensor("input:" + tag, x_shape, dtype);

  m.eval();
  Tensor xe = x0.clone().set_requires_grad(true);
  Tensor y = m.forward(xe);
  check_tensor(y, get(fx, tag + ".y_eval"), rtol, what + " y_eval");
  const Tensor cot = det_tensor("cot:" + tag, y.sizes(), dtype);
  sum(mul(y, cot)).backward();
  check_projections(grad_projections(m, "proj:"), get(fx, tag + ".gproj_eval"), m, rtol, what + " eval grad");
  check_tensor(Tensor::from_vector(input_grad_projections(xe), {3}), get(fx, tag + ".dx_eval_proj"), rtol,
               what + " eval dx");

  m.zero_grad();
  m.train();
  Tensor xt = x0.clone().set_requires_grad(true);
  y = m.forward(xt);
  check_tensor(y, get(fx, tag + ".y_train"), rtol, what + " y_train");
  sum(mul(y, cot)).backward();
  check_projections(grad_projections(m, "proj:"), get(fx, tag + ".gproj_train"), m, rtol, what + " train grad");
  check_tensor(Tensor::from_vector(input_grad_projections(xt), {3}), get(fx, tag + ".dx_train_proj"), rtol,
               what + " train dx");
  for (const auto& [name, p] : m.named_parameters()) {
    auto it = fx.find(tag + ".grad." + name);
    if (it != fx.end()) check_tensor(p.grad(), it->second, rtol, what + " grad " + name);
  }
  std::vector<double> running;
  for (const auto& [name, b] : m.named_buffers()) {
    if (name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0) {
      CHECK_MESSAGE(b.item() == 6.0, what << " " << name << " after one training forward from 5");
      continue;
    }
    for (double v : b.to_vector()) running.push_back(v);
  }
  if (!running.empty()) {
    const int64_t n = static_cast<int64_t>(running.size());
    check_tensor(Tensor::from_vector(running, {n}), get(fx, tag + ".running_after"), rtol, what + " running stats");
  }
}

}  // namespace selfsup::testing
