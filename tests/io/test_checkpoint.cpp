// Training checkpoints: round trip (with an optimizer that resumes identically), the directory protocol
// (latest pointer, keep the newest two), kill-safety under injected write failures, and clear errors.
#include <doctest/doctest.h>

#include "engine/autograd/grad_mode.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "engine/ops/ops.h"
#include "engine/optim/sgd.h"
#include "tests/io/io_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

Checkpoint make_checkpoint(int64_t step) {
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

void check_tensors_equal(const TensorMap& a, const TensorMap& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) {
    REQUIRE_MESSAGE(b.count(k), k);
    CHECK_MESSAGE(t.dtype() == b.at(k).dtype(), k);
    CHECK_MESSAGE(t.sizes() == b.at(k).sizes(), k);
    CHECK_MESSAGE(t.to_vector() == b.at(k).to_vector(), k);
  }
}

void check_equal(const Checkpoint& a, const Checkpoint& b) {
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

}  // namespace

TEST_CASE("checkpoint round trip: model, optimizer, method, loader, generators, metadata") {
  TempDir dir;
  // An optimizer mid-run; its state goes into the checkpoint and a fresh optimizer resumes from it.
  Generator g(3);
  Tensor w = Tensor::randn({5, 4}, DType::f32, &g).set_requires_grad(true);
  Tensor b = Tensor::randn({4}, DType::f32, &g).set_requires_grad(true);
  SGD opt({w, b}, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = true});
  for (int k = 0; k < 2; ++k) {
    w.set_grad(Tensor::randn({5, 4}, DType::f32, &g));
    b.set_grad(Tensor::randn({4}, DType::f32, &g));
    opt.step();
  }
  Checkpoint ck = make_checkpoint(20);
  ck.model["fc.weight"] = w;
  ck.model["fc.bias"] = b;
  ck.optim = opt.state_dict();
  const std::string path = dir.file("run.safetensors");
  CHECK(save_checkpoint(path, ck) == path);
  Checkpoint back = load_checkpoint(path);
  check_equal(ck, back);

  // The file is plain safetensors with prefixed names and the metadata.
  SafetensorsFile raw = load_safetensors(path);
  CHECK(raw.metadata.at("format") == "selfsup.checkpoint");
  CHECK(raw.metadata.at("format_version") == "1");
  CHECK(raw.metadata.at("step") == "20");
  CHECK(raw.metadata.at("config") == ck.config_json);
  CHECK(raw.tensors.count("model.conv1.weight"));
  CHECK(raw.tensors.count("optim.state.0.0.momentum_buffer"));
  CHECK(raw.tensors.count("method.queue"));
  CHECK(raw.tensors.count("loader.next_index"));
  CHECK(raw.tensors.at("rng.augment.offset").item() == 1020);

  // Resume: fresh parameters and optimizer from the checkpoint take the identical next step.
  Tensor w2 = Tensor::zeros({5, 4}).set_requires_grad(true);
  Tensor b2 = Tensor::zeros({4}).set_requires_grad(true);
  {
    NoGradGuard no_grad;  // as a model's load_state_dict does
    w2.copy_(back.model.at("fc.weight"));
    b2.copy_(back.model.at("fc.bias"));
  }
  SGD opt2({w2, b2}, SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = true});
  opt2.load_state_dict(back.optim);
  Tensor gw = Tensor::randn({5, 4}, DType::f32, &g), gb = Tensor::randn({4}, DType::f32, &g);
  w.set_grad(gw);
  b.set_grad(gb);
  w2.set_grad(gw.clone());
  b2.set_grad(gb.clone());
  opt.step();
  opt2.step();
  CHECK(w.to_vector() == w2.to_vector());
  CHECK(b.to_vector() == b2.to_vector());
  // The restored generator continues the same sequence.
  Generator orig = ck.rng.at("augment"), restored = back.rng.at("augment");
  CHECK(Tensor::rand({6}, DType::f32, &orig).to_vector() == Tensor::rand({6}, DType::f32, &restored).to_vector());
}

TEST_CASE("checkpoint directory: ckpt-<step> files, a latest pointer, the newest two kept") {
  TempDir dir;
  const std::string d = dir.file("ckpts");
  CHECK(save_checkpoint(d, make_checkpoint(10)) == d + "/ckpt-10.safetensors");
  save_checkpoint(d, make_checkpoint(20));
  CHECK(load_checkpoint(d).step == 20);
  save_checkpoint(d, make_checkpoint(100));  // numeric order, not lexicographic: 100 is the newest
  save_checkpoint(d, make_checkpoint(30));   // an earlier step saved later (a resumed run): latest wins
  std::vector<std::string> entries;
  for (const auto& e : std::filesystem::directory_iterator(d)) entries.push_back(e.path().filename().string());
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"ckpt-100.safetensors", "ckpt-30.safetensors", "latest"});
  CHECK(load_checkpoint(d).step == 30);
  CHECK(latest_checkpoint(d) == d + "/ckpt-30.safetensors");
  check_equal(make_checkpoint(100), load_checkpoint(d + "/ckpt-100.safetensors"));
  // keep_last = 1 prunes to the newest only.
  save_checkpoint(d, make_checkpoint(200), /*keep_last=*/1);
  entries.clear();
  for (const auto& e : std::filesystem::directory_iterator(d)) entries.push_back(e.path().filename().string());
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"ckpt-200.safetensors", "latest"});
  // Without `latest`, the highest step is used.
  std::filesystem::remove(d + "/latest");
  CHECK(load_checkpoint(d).step == 200);
}

TEST_CASE("kill safety: a failure while writing leaves the previous checkpoint loadable") {
  TempDir dir;
  const std::string d = dir.file("ckpts");
  save_checkpoint(d, make_checkpoint(10));
  const std::vector<uint8_t> ckpt10 = read_bytes(d + "/ckpt-10.safetensors");
  const std::vector<uint8_t> latest10 = read_bytes(d + "/latest");
  auto listing = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(d)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  };

  SUBCASE("failure in the middle of the checkpoint file") {
    set_atomic_write_fault_for_testing(1000);
    CHECK_THROWS_WITH_AS(save_checkpoint(d, make_checkpoint(20)), doctest::Contains("injected write failure"), Error);
    CHECK(listing() == std::vector<std::string>{"ckpt-10.safetensors", "latest"});  // no partial ckpt-20
  }
  SUBCASE("failure while writing the latest pointer (the new file is complete, latest still names the old)") {
    // Budget: all of ckpt-20 (same size as ckpt-10: same shapes) plus 3 bytes of the pointer.
    set_atomic_write_fault_for_testing(static_cast<int64_t>(ckpt10.size()) + 3);
    CHECK_THROWS_WITH_AS(save_checkpoint(d, make_checkpoint(20)), doctest::Contains("latest': injected write failure"),
                         Error);
    CHECK(listing() == std::vector<std::string>{"ckpt-10.safetensors", "ckpt-20.safetensors", "latest"});
  }
  SUBCASE("a crashed writer's partial temp file is ignored, and cleaned up by the next save") {
    write_bytes(d + "/.ckpt-20.safetensors.tmp-999-0", {1, 2, 3});
    CHECK(load_checkpoint(d).step == 10);
    save_checkpoint(d, make_checkpoint(20));
    CHECK(listing() == std::vector<std::string>{"ckpt-10.safetensors", "ckpt-20.safetensors", "latest"});
    return;
  }
  CHECK(read_bytes(d + "/ckpt-10.safetensors") == ckpt10);
  CHECK(read_bytes(d + "/latest") == latest10);
  check_equal(make_checkpoint(10), load_checkpoint(d));
  // And the next save works normally.
  save_checkpoint(d, make_checkpoint(20));
  CHECK(load_checkpoint(d).step == 20);
}

TEST_CASE("checkpoint errors are clear") {
  TempDir dir;
  std::filesystem::create_directories(dir.file("empty"));
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("empty")),
                       doctest::Contains("empty' holds no checkpoint (no 'latest' file and no ckpt-<step>.safetensors)"),
                       Error);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("nothing.safetensors")), doctest::Contains("does not exist"), Error);

  save_safetensors(dir.file("weights.safetensors"), {{"w", Tensor::zeros({2})}});
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("weights.safetensors")),
                       doctest::Contains("is not a selfsup checkpoint (metadata 'format' is missing"), Error);

  Metadata md = {{"format", "selfsup.checkpoint"}, {"format_version", "9"}, {"step", "1"}, {"epoch", "0"}};
  save_safetensors(dir.file("future.safetensors"), {}, md);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("future.safetensors")),
                       doctest::Contains("has format version 9; this build reads versions 1..1"), Error);
  md["format_version"] = "1";
  md["step"] = "ten";
  save_safetensors(dir.file("badstep.safetensors"), {}, md);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("badstep.safetensors")),
                       doctest::Contains("metadata 'step' is 'ten', expected an integer"), Error);
  md["step"] = "1";
  save_safetensors(dir.file("prefix.safetensors"), {{"weights.w", Tensor::zeros({2})}}, md);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("prefix.safetensors")),
                       doctest::Contains("unexpected key 'weights.w' (expected a prefix: model., optim."), Error);
  save_safetensors(dir.file("rng.safetensors"),
                   {{"rng.aug.seed", Tensor::from_vector(std::vector<int64_t>{1}, {})},
                    {"rng.aug.offset", Tensor::from_vector(std::vector<int64_t>{1}, {})}},
                   md);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("rng.safetensors")),
                       doctest::Contains("generator 'aug' lacks 'rng.aug.stream'"), Error);

  std::filesystem::create_directories(dir.file("dangling"));
  write_bytes(dir.file("dangling/latest"), {'c', 'k', 'p', 't', '-', '5', '.', 's', 'a', 'f', 'e', 't', 'e', 'n',
                                            's', 'o', 'r', 's', '\n'});
  CHECK_THROWS_WITH_AS(load_checkpoint(dir.file("dangling")),
                       doctest::Contains("'latest' names 'ckpt-5.safetensors', which does not exist"), Error);

  Checkpoint bad = make_checkpoint(1);
  bad.config_json = "{not json";
  CHECK_THROWS_WITH_AS(save_checkpoint(dir.file("x"), bad), doctest::Contains("the config is not valid JSON"), Error);
  bad = make_checkpoint(1);
  bad.extra["step"] = "7";
  CHECK_THROWS_WITH_AS(save_checkpoint(dir.file("x"), bad), doctest::Contains("reserved name 'step'"), Error);
}
