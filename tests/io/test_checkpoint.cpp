// Training checkpoints: round trip (with an optimizer that resumes identically), the directory protocol
// (latest pointer, keep the newest two), kill-safety under injected write failures, and clear errors.
// Damage (test_checkpoint_damage.cpp) has its own file.
#include <doctest/doctest.h>

#include "engine/autograd/grad_mode.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "engine/ops/ops.h"
#include "engine/optim/sgd.h"
#include "tests/io/checkpoint_test_util.h"
#include "tests/io/io_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

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
  CHECK(raw.metadata.at("format_version") == "2");
  CHECK(raw.metadata.at(kSafetensorsChecksumKey).size() == 8);
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
  // 100 is from an abandoned timeline: not counted, not removed; of the rest the newest two stay.
  CHECK(entries ==
        std::vector<std::string>{"ckpt-100.safetensors", "ckpt-20.safetensors", "ckpt-30.safetensors", "latest"});
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
    CHECK_THROWS_WITH_AS(save_checkpoint(d, make_checkpoint(20)), doctest::Contains("No space left on device"), Error);
    CHECK(listing() == std::vector<std::string>{"ckpt-10.safetensors", "latest"});  // no partial ckpt-20
  }
  SUBCASE("failure while writing the latest pointer (the new file is complete, latest still names the old)") {
    // Budget: all of ckpt-20 (same size as ckpt-10: same shapes) plus 3 bytes of the pointer.
    set_atomic_write_fault_for_testing(static_cast<int64_t>(ckpt10.size()) + 3);
    CHECK_THROWS_WITH_AS(save_checkpoint(d, make_checkpoint(20)), doctest::Contains("latest' (temp file"),
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
                       doctest::Contains("has format version 9; this build reads versions 1..2"), Error);
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
