// The pretext-task methods (ssl/methods/rotnet.h, jigsaw.h): their labels against independent references
// (a float64 rotation loop; the tiles put back into the cells the permutation names), the permutation set,
// a short CPU run of each whose pretext loss falls and whose linear probe beats the same encoder untrained,
// exact resume after SIGKILL, and the trunk stage the evaluation commands pool (--features).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/data/spec.h"
#include "engine/ops/ops.h"
#include "kernels/jigsaw_perms.h"
#include "ssl/methods/jigsaw.h"
#include "ssl/methods/registry.h"
#include "ssl/methods/rotnet.h"
#include "ssl/trainer/trainer.h"
#include "ssl/trainer/encoder_io.h"
#include "tests/support/cli_run.h"
#include "tests/support/kill_resume.h"
#include "tests/support/probe.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
using kernels::kJigsawMinHamming;
using kernels::kJigsawPermCount;
using kernels::kJigsawPerms;

namespace {

// Image n of x (N, C, S, S) turned k quarter turns counter-clockwise (torch.rot90(x, k, (2, 3))), in
// float64: out[c][i][j] = in[c][j][S-1-i] per turn.
std::vector<double> rot90_reference(const std::vector<double>& x, int64_t n, int64_t C, int64_t S, int k) {
  std::vector<double> img(x.begin() + n * C * S * S, x.begin() + (n + 1) * C * S * S), out(img.size());
  for (int t = 0; t < k; ++t) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < S; ++j) out[(c * S + i) * S + j] = img[(c * S + j) * S + (S - 1 - i)];
    img = out;
  }
  return img;
}

int hamming(const uint8_t* a, const uint8_t* b) {
  int d = 0;
  for (int i = 0; i < 9; ++i) d += a[i] != b[i];
  return d;
}

ssl::TrainConfig pretext_config(const std::string& method, const std::string& out) {
  ssl::TrainConfig c = test::tiny_train_config(out);
  c.method = method;
  ssl::apply_method_preset(c);
  c.batch = 64;  // the fixture's batch: the preset's is for full runs
  return c;
}

// Mean of the first and of the last `n` step losses of DIR/metrics.jsonl.
std::pair<double, double> loss_ends(const std::string& dir, size_t n) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<double> loss;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("type", "") == "step") loss.push_back(j.at("loss").get<double>());
  }
  REQUIRE(loss.size() >= 2 * n);
  double first = 0, last = 0;
  for (size_t i = 0; i < n; ++i) first += loss[i], last += loss[loss.size() - 1 - i];
  return {first / static_cast<double>(n), last / static_cast<double>(n)};
}

// Trains `c`, then returns (probe of the untrained method, probe of the trained one, the trained method).
struct ShortRun {
  double untrained, trained;
  std::shared_ptr<ssl::Method> method;
};
ShortRun short_run(const ssl::TrainConfig& c) {
  std::shared_ptr<ssl::Method> untrained = ssl::make_method(c);  // the run's initialisation (same seed)
  ssl::train(c, {"", 0, true});
  std::shared_ptr<ssl::Method> trained = ssl::make_method(c);
  const Checkpoint ck = load_checkpoint(c.out);
  trained->load_state_dict(nn::NamedTensors(ck.model.begin(), ck.model.end()));
  // The trunk (layer4) on the first 2000 training and 1000 test images, the probe's default 30 epochs.
  return {test::probe_top1(untrained->encoder(), c, 2000, 1000, 30),
          test::probe_top1(trained->encoder(), c, 2000, 1000, 30), trained};
}

}  // namespace

TEST_CASE("rotnet: image r of the batch is its source turned label[r] quarter turns counter-clockwise") {
  Generator gen(3);
  const int64_t N = 3, C = 2, S = 5;
  const Tensor x = Tensor::randn({N, C, S, S}, DType::f32, &gen);
  const LabeledBatch rb = rotations_all(x);
  REQUIRE(rb.images.sizes() == Shape{4 * N, C, S, S});
  const std::vector<double> xv = x.to_vector(), iv = rb.images.to_vector(), lv = rb.labels.to_vector();
  std::multiset<double> labels(lv.begin(), lv.end());
  for (int k = 0; k < 4; ++k) CHECK(labels.count(k) == N);  // each image in each rotation, once
  for (int64_t r = 0; r < 4 * N; ++r) {
    CAPTURE(r);
    const std::vector<double> want = rot90_reference(xv, r % N, C, S, static_cast<int>(lv[r]));
    const std::vector<double> got(iv.begin() + r * C * S * S, iv.begin() + (r + 1) * C * S * S);
    CHECK(got == want);  // a permutation of the pixels: exact
  }
}

TEST_CASE("jigsaw: the label is the permutation applied (each tile found back in the cell it names)") {
  Generator gen(5);
  const int64_t B = 4, C = 2, S = 28;
  models::ResNetOptions eo;
  eo.in_channels = C;
  eo.stem = models::Stem::cifar;
  eo.width = 4;
  eo.num_classes = 0;
  ssl::Jigsaw jig(ssl::JigsawOptions{eo, S, 0, 100, 32, 11});
  const int64_t t = jig.tile(), cell = S / 3;
  CHECK(t == 9 * 64 / 75);  // floor(cell * 64 / 75) = 7: offsets 0..2 in each 9-pixel cell
  const Tensor x = Tensor::randn({B, C, S, S}, DType::f32, &gen);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{10, 11, 12, 13}, {B});
  const LabeledBatch pz = jig.puzzle(x, ids, 7);
  REQUIRE(pz.images.sizes() == Shape{9 * B, C, t, t});
  const std::vector<double> xv = x.to_vector(), tv = pz.images.to_vector(), lv = pz.labels.to_vector();
  // The float64 reference of a normalised crop: each channel to zero mean, unit (population) variance.
  auto crop = [&](int64_t b, int64_t y0, int64_t x0) {
    std::vector<double> out(static_cast<size_t>(C * t * t));
    for (int64_t c = 0; c < C; ++c) {
      double m = 0, v = 0;
      for (int64_t i = 0; i < t * t; ++i) m += xv[((b * C + c) * S + y0 + i / t) * S + x0 + i % t];
      m /= static_cast<double>(t * t);
      for (int64_t i = 0; i < t * t; ++i) v += std::pow(xv[((b * C + c) * S + y0 + i / t) * S + x0 + i % t] - m, 2);
      v /= static_cast<double>(t * t);
      for (int64_t i = 0; i < t * t; ++i)
        out[c * t * t + i] = (xv[((b * C + c) * S + y0 + i / t) * S + x0 + i % t] - m) / std::sqrt(v + 1e-5);
    }
    return out;
  };
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t label = static_cast<int64_t>(lv[b]);
    REQUIRE(label >= 0);
    REQUIRE(label < 100);
    for (int64_t p = 0; p < 9; ++p) {
      CAPTURE(b);
      CAPTURE(p);
      // Search every cell and offset of the source: the tile at position p matches exactly one, in the cell
      // the label's permutation names. float32 normalisation against float64: 1e-4 covers its rounding.
      const double* tile = tv.data() + (b * 9 + p) * C * t * t;
      std::vector<std::pair<int64_t, std::pair<int64_t, int64_t>>> found;
      for (int64_t cl = 0; cl < 9; ++cl)
        for (int64_t oy = 0; oy <= cell - t; ++oy)
          for (int64_t ox = 0; ox <= cell - t; ++ox) {
            const std::vector<double> ref = crop(b, (cl / 3) * cell + oy, (cl % 3) * cell + ox);
            double err = 0;
            for (size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::abs(ref[i] - tile[i]));
            if (err < 1e-4) found.push_back({cl, {oy, ox}});
          }
      REQUIRE(found.size() == 1);
      CHECK(found[0].first == kJigsawPerms[label][p]);
      offsets.insert(found[0].second);
    }
  }
  CHECK(offsets.size() >= 4);  // the offsets vary (the random gaps), over the 9 possible
  // A pure function of (seed, step, sample index): the same puzzle again, another at another step.
  CHECK(jig.puzzle(x, ids, 7).images.to_vector() == tv);
  CHECK(jig.puzzle(x, ids, 8).images.to_vector() != tv);
}

TEST_CASE("jigsaw: the permutation set is the generator's, P rows of it, min Hamming distance as generated") {
  // The first 100 rows, all the method can use, keep the distance scripts/gen_jigsaw_perms.py found.
  int pair_min = 9;
  for (int a = 0; a < kJigsawPermCount; ++a)
    for (int b = a + 1; b < kJigsawPermCount; ++b) pair_min = std::min(pair_min, hamming(kJigsawPerms[a], kJigsawPerms[b]));
  CHECK(pair_min == kJigsawMinHamming);
  CHECK(kJigsawMinHamming == 6);
  // --permutations P: the labels are rows 0..P-1, all of them drawn.
  models::ResNetOptions eo;
  eo.in_channels = 1;
  eo.stem = models::Stem::cifar;
  eo.width = 4;
  eo.num_classes = 0;
  ssl::Jigsaw jig(ssl::JigsawOptions{eo, 28, 0, 10, 32, 1});
  std::vector<int64_t> idv(500);
  for (int64_t i = 0; i < 500; ++i) idv[i] = i;
  const LabeledBatch pz = jig.puzzle(Tensor::zeros({500, 1, 28, 28}), Tensor::from_vector(idv, {500}), 0);
  std::set<double> seen;
  for (double l : pz.labels.to_vector()) seen.insert(l);
  CHECK(seen.size() == 10);
  CHECK(*seen.rbegin() == 9);
  // Options out of range say which and what fits.
  CHECK_THROWS_WITH_AS(ssl::Jigsaw(ssl::JigsawOptions{eo, 28, 0, 101, 32, 1}), doctest::Contains("--permutations 101"),
                       Error);
  CHECK_THROWS_WITH_AS(ssl::Jigsaw(ssl::JigsawOptions{eo, 28, 10, 100, 32, 1}), doctest::Contains("--tile 10"), Error);
  CHECK_THROWS_WITH_AS(ssl::Jigsaw(ssl::JigsawOptions{eo, 5, 0, 100, 32, 1}), doctest::Contains("--image-size 5"),
                       Error);
}

TEST_CASE("rotnet: a short CPU run lowers the loss, predicts the rotations of unseen images, beats its init"
          * doctest::test_suite("learning")) {
  test::require_fashion_mnist();
  ssl::TrainConfig c = pretext_config("rotnet", test::fresh_run_dir("pretext", "rotnet"));
  c.limit = 2048;
  c.epochs = 6;
  const ShortRun r = short_run(c);
  const auto [first, last] = loss_ends(c.out, 4);
  MESSAGE("rotnet loss " << first << " -> " << last << "; probe untrained " << r.untrained << ", trained " << r.trained);
  CHECK(last < 0.8 * first);
  CHECK(r.trained > r.untrained + 0.02);
  // 500 test images turned by the float64 loop: the classifier names the turn (chance: 25%).
  auto& rot = dynamic_cast<ssl::RotNet&>(*r.method);
  rot.eval();
  NoGradGuard ng;
  const ImageDataset test = data::load_dataset(c.data, "test");
  const int64_t n = 500, S = c.image_size;
  AugmentRecipe plain = make_recipe("eval", static_cast<int>(S), 1);  // resize + the gray recipe's 0.5/0.5
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = i;
  const Tensor x = apply_augment(test.images.narrow(0, 0, n), plain, sample_params(plain, 28, 28, 0, 0, ids.data(), n, 0));
  const std::vector<double> xv = x.to_vector();
  int64_t hits = 0;
  for (int k = 0; k < 4; ++k) {
    CAPTURE(k);
    std::vector<double> turned;
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> img = rot90_reference(xv, i, 1, S, k);
      turned.insert(turned.end(), img.begin(), img.end());
    }
    const std::vector<double> pred = argmax(rot.rotation_logits(Tensor::from_vector(turned, {n, 1, S, S}).to(DType::f32)), 1).to_vector();
    // Each turn is named most often as itself: a swapped label (90 for 270) would show here.
    std::array<int64_t, 4> votes{};
    for (double p : pred) ++votes[static_cast<size_t>(p)];
    MESSAGE("turned " << k << ": predicted 0/1/2/3 " << votes[0] << "/" << votes[1] << "/" << votes[2] << "/" << votes[3]);
    CHECK(std::max_element(votes.begin(), votes.end()) - votes.begin() == k);
    hits += votes[static_cast<size_t>(k)];
  }
  const double acc = static_cast<double>(hits) / static_cast<double>(4 * n);
  MESSAGE("rotation accuracy on turned test images: " << acc);
  CHECK(acc > 0.5);
}

TEST_CASE("jigsaw: a short CPU run lowers the loss and beats its init through the probe"
          * doctest::test_suite("learning")) {
  test::require_fashion_mnist();
  ssl::TrainConfig c = pretext_config("jigsaw", test::fresh_run_dir("pretext", "jigsaw"));
  c.limit = 2048;
  c.epochs = 6;
  c.lr = 0.1;
  const ShortRun r = short_run(c);
  const auto [first, last] = loss_ends(c.out, 4);
  MESSAGE("jigsaw loss " << first << " -> " << last << "; probe untrained " << r.untrained << ", trained " << r.trained);
  CHECK(last < 0.9 * first);
  CHECK(r.trained > r.untrained + 0.02);
}

TEST_CASE("rotnet and jigsaw: killed with SIGKILL and resumed, bit-identical to the uninterrupted run") {
  for (const char* m : {"rotnet", "jigsaw"})
    test::check_kill_resume(m, {}, [](ssl::TrainConfig& c) {
      const int64_t batch = c.batch;
      ssl::apply_method_preset(c);
      c.batch = batch;
    });
}

TEST_CASE("train --method rotnet, then eval and embed --features layer3|layer4 from the command line") {
  test::require_fashion_mnist();
  const std::string dir = test::fresh_run_dir("pretext", "cli"), data = test::fashion_mnist_spec();
  const test::CliRun t = test::run_selfsup("train --method rotnet --data " + data +
                                           " --device cpu --limit 256 --batch 64 --width 4 --steps 4 --no-knn --out " + dir);
  INFO(t.out);
  REQUIRE(t.code == 0);
  CHECK(t.out.find("\"method\": \"rotnet\"") != std::string::npos);
  CHECK(t.out.find("rot acc") != std::string::npos);
  // layer3 of a width-4 ResNet-18 has 16 channels, layer4 32.
  for (const auto& [layer, dim] : {std::pair{"layer3", 16}, std::pair{"layer4", 32}}) {
    CAPTURE(layer);
    const std::string npy = dir + "/" + layer + ".npy";
    const test::CliRun e = test::run_selfsup("embed --checkpoint " + dir + " --split test --limit 10 --features " +
                                             layer + " --out " + npy);
    INFO(e.out);
    REQUIRE(e.code == 0);
    CHECK(e.out.find(str_cat("10 x ", dim, " features")) != std::string::npos);
  }
  // layer3's features against the stages called one by one and averaged over the plane with mean().
  const ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(dir);
  models::ResNet& enc = *le.encoder;
  enc.eval();
  const ImageDataset test_set = data::load_dataset(data, "test");
  AugmentRecipe plain = make_recipe("eval", 28, 1);
  std::vector<int64_t> ids(10);
  for (int64_t i = 0; i < 10; ++i) ids[i] = i;
  const Tensor x = apply_augment(test_set.images.narrow(0, 0, 10), plain, sample_params(plain, 28, 28, 0, 0, ids.data(), 10, 0));
  std::vector<double> want;
  {
    NoGradGuard ng;
    const Tensor y = enc.layer3->forward(enc.layer2->forward(enc.layer1->forward(relu(enc.bn1->forward(enc.conv1->forward(x))))));
    want = mean(y, {2, 3}).to_vector();  // (10, 16)
  }
  std::ifstream in(dir + "/layer3.npy", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 128 + 10 * 16 * 4);  // 128-byte header, then float32 (10, 16)
  std::vector<float> got(160);
  std::memcpy(got.data(), bytes.data() + 128, 160 * 4);
  for (size_t i = 0; i < 160; ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));  // float32 sums in another order
  }
  const test::CliRun k = test::run_selfsup("eval knn --checkpoint " + dir + " --train-limit 200 --test-limit 50 --k 20 "
                                           "--features layer3");
  INFO(k.out);
  CHECK(k.code == 0);
  CHECK(k.out.find("kNN (k=20, T=0.07) test top-1:") != std::string::npos);
  const test::CliRun bad = test::run_selfsup("eval linear --checkpoint " + dir + " --features layer5");
  CHECK(bad.code != 0);
  CHECK(bad.out.find("unknown --features 'layer5' (expected layer3 or layer4)") != std::string::npos);
}
