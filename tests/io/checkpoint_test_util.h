// What the checkpoint tests share: a checkpoint with every kind of content, and a field-by-field comparison.
#pragma once
#include <doctest/doctest.h>

#include "engine/io/checkpoint.h"

namespace selfsup::testing {

inline Checkpoint make_checkpoint(int64_t step) {
  Generator g(1234, 7);
  Checkpoint ck;
  ck.step = step;
  ck.epoch = step / 10;
  ck.config_json = R"({"method": "simclr", "batch_size": 256, "lr": 0.3})";
  ck.model["conv1.weight"] = Tensor::randn({4, 3, 3, 3}, DType::f32, &g);
  ck.model["bn1.num_batches_tracked"] = Tensor::from_vector(std::vector<int64_t>{step}, {});
  ck.method["queue"] = Tensor::randn({8, 16}, DType::f32, &g);
  ck.method["queue_ptr"] = Tensor::from_vector(std::vector<int64_t>{3}, {});
  ck.loader["epoch_seed"] = Tensor::from_vector(std::vector<int64_t>{99}, {});
  ck.loader["next_index"] = Tensor::from_vector(std::vector<int64_t>{step * 32}, {});
  Generator aug(0xfedcba9876543210ull, 3);  // a seed above INT64_MAX survives the int64 bit pattern
  aug.take(1000 + static_cast<uint64_t>(step));
  ck.rng.emplace("augment", aug);
  ck.rng.emplace("dropout.layer1", Generator(5, 0));  // dots in a generator name
  ck.extra["git"] = "abc123";
  return ck;
}

inline void check_tensors_equal(const TensorMap& a, const TensorMap& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) {
    REQUIRE_MESSAGE(b.count(k), k);
    CHECK_MESSAGE(t.dtype() == b.at(k).dtype(), k);
    CHECK_MESSAGE(t.sizes() == b.at(k).sizes(), k);
    CHECK_MESSAGE(t.to_vector() == b.at(k).to_vector(), k);
  }
}

inline void check_equal(const Checkpoint& a, const Checkpoint& b) {
  CHECK(a.step == b.step);
  CHECK(a.epoch == b.epoch);
  CHECK(a.config_json == b.config_json);
  CHECK(a.extra == b.extra);
  check_tensors_equal(a.model, b.model);
  check_tensors_equal(a.optim, b.optim);
  check_tensors_equal(a.method, b.method);
  check_tensors_equal(a.loader, b.loader);
  REQUIRE(a.rng.size() == b.rng.size());
  for (const auto& [name, g] : a.rng) {
    REQUIRE_MESSAGE(b.rng.count(name), name);
    const Generator& h = b.rng.at(name);
    CHECK(g.seed() == h.seed());
    CHECK(g.stream() == h.stream());
    CHECK(g.offset() == h.offset());
  }
}

}  // namespace selfsup::testing
