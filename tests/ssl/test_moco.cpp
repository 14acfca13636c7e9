// MoCo v1/v2 (ssl/methods/moco.h) against independent references: the loss and its gradient against a
// float64 loop; the key encoder copied at init, untouched by the optimizer and moved exactly by the EMA
// (float64 loop); the queue's FIFO order across wrap-around; shuffling BN (the un-permute is exact, and BN
// statistics are those of each shard, computed by hand); a short Fashion-MNIST run whose loss falls and whose
// linear probe beats the same encoder untrained; and the SIGKILL resume (tests/support/kill_resume.h) with the
// queue, its pointer and the key encoder in the checkpoint.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "engine/autograd/grad_mode.h"
#include "engine/data/spec.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"
#include "engine/optim/sgd.h"
#include "ssl/methods/moco.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/encoder_io.h"
#include "tests/support/cli_run.h"
#include "tests/support/kill_resume.h"
#include "tests/support/probe.h"

using namespace selfsup;
using ssl::MoCo;
using ssl::MoCoOptions;

namespace {

// A small MoCo: width-2 ResNet-18 on 1 x 8 x 8 images, D = 6.
MoCoOptions small_options(int version, int64_t queue, int64_t shards, double m = 0.9) {
  MoCoOptions o;
  o.encoder.depth = 18;
  o.encoder.in_channels = 1;
  o.encoder.stem = models::Stem::cifar;
  o.encoder.width = 2;
  o.encoder.seed = 3;
  o.version = version;
  o.proj_hidden = 10;
  o.proj_dim = 6;
  o.temperature = version == 1 ? 0.07 : 0.2;
  o.queue_size = queue;
  o.key_momentum = m;
  o.shuffle_bn_shards = shards;
  o.seed = 5;
  return o;
}

Tensor random_views(int64_t b, uint64_t stream) {
  Generator g(11, stream);
  return Tensor::randn({b, 1, 8, 8}, DType::f32, &g);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.sizes() != b.sizes()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

std::vector<Tensor> clones(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.detach().clone());
  return out;
}

// MoCo's loss in float64: q, k (N, D) raw head outputs, queue (K, D). Returns the loss and dL/dq (N, D).
std::pair<double, std::vector<double>> reference_loss(const std::vector<double>& q, const std::vector<double>& k,
                                                      const std::vector<double>& queue, int64_t N, int64_t D,
                                                      int64_t K, double tau) {
  auto unit = [&](const std::vector<double>& v, int64_t i) {
    double n = 0;
    for (int64_t d = 0; d < D; ++d) n += v[i * D + d] * v[i * D + d];
    n = std::sqrt(n);
    std::vector<double> u(static_cast<size_t>(D));
    for (int64_t d = 0; d < D; ++d) u[d] = v[i * D + d] / n;
    return std::pair{u, n};
  };
  double loss = 0;
  std::vector<double> grad(static_cast<size_t>(N * D), 0.0);
  for (int64_t i = 0; i < N; ++i) {
    const auto [qh, qn] = unit(q, i);
    const auto [kh, kn] = unit(k, i);
    // Columns: the positive, then the queue's rows.
    std::vector<std::vector<double>> cols = {kh};
    for (int64_t j = 0; j < K; ++j) cols.emplace_back(queue.begin() + j * D, queue.begin() + (j + 1) * D);
    std::vector<double> logit(cols.size());
    double mx = -1e300;
    for (size_t c = 0; c < cols.size(); ++c) {
      logit[c] = std::inner_product(qh.begin(), qh.end(), cols[c].begin(), 0.0) / tau;
      mx = std::max(mx, logit[c]);
    }
    double z = 0;
    for (double l : logit) z += std::exp(l - mx);
    loss += (mx + std::log(z) - logit[0]) / static_cast<double>(N);
    // dL/dqh = (sum_c p_c col_c - col_0) / (tau N); dL/dq = (I - qh qh^T) dL/dqh / |q|.
    std::vector<double> gh(static_cast<size_t>(D), 0.0);
    for (size_t c = 0; c < cols.size(); ++c) {
      const double p = std::exp(logit[c] - mx) / z - (c == 0 ? 1.0 : 0.0);
      for (int64_t d = 0; d < D; ++d) gh[d] += p * cols[c][d] / (tau * static_cast<double>(N));
    }
    const double dot = std::inner_product(qh.begin(), qh.end(), gh.begin(), 0.0);
    for (int64_t d = 0; d < D; ++d) grad[i * D + d] = (gh[d] - dot * qh[d]) / qn;
  }
  return {loss, grad};
}

// Rows of x (B, C, H, W) float32 normalised with the biased mean and variance over each row's group of rows
// (and H, W), per channel, in float64: BatchNorm2d's training forward with weight 1 and bias 0.
std::vector<double> reference_group_bn(const Tensor& x, const std::vector<std::vector<int64_t>>& groups, double eps) {
  const int64_t C = x.size(1), HW = x.size(2) * x.size(3);
  const std::vector<double> v = x.to_vector();
  std::vector<double> out(v.size());
  for (const std::vector<int64_t>& g : groups)
    for (int64_t c = 0; c < C; ++c) {
      double mean = 0, var = 0;
      for (int64_t i : g)
        for (int64_t p = 0; p < HW; ++p) mean += v[(i * C + c) * HW + p];
      mean /= static_cast<double>(g.size() * HW);
      for (int64_t i : g)
        for (int64_t p = 0; p < HW; ++p) var += std::pow(v[(i * C + c) * HW + p] - mean, 2);
      var /= static_cast<double>(g.size() * HW);
      for (int64_t i : g)
        for (int64_t p = 0; p < HW; ++p) out[(i * C + c) * HW + p] = (v[(i * C + c) * HW + p] - mean) / std::sqrt(var + eps);
    }
  return out;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("moco_info_nce: the loss and its gradient equal a float64 loop; the key gets no gradient") {
  const int64_t N = 5, D = 7, K = 11;
  for (const double tau : {0.07, 0.2}) {
    for (const DType dt : {DType::f64, DType::f32}) {
      CAPTURE(tau);
      CAPTURE(dtype_name(dt));
      Generator g(1, 2);
      Tensor q = Tensor::randn({N, D}, dt, &g), k = Tensor::randn({N, D}, dt, &g);
      Tensor queue;
      {
        NoGradGuard ng;
        queue = normalize(Tensor::randn({K, D}, dt, &g), 1);
      }
      q.set_requires_grad(true);
      k.set_requires_grad(true);
      ContrastiveResult r = ssl::moco_info_nce(q, k, queue, tau);
      r.loss.backward();
      const auto [loss, grad] = reference_loss(q.to_vector(), k.to_vector(), queue.to_vector(), N, D, K, tau);
      // float64: the loops and the kernels differ in summation order only. float32: logits of magnitude
      // up to 1/tau (14) rounded at 2^-24 relative, then exponentiated and summed over 12 columns.
      const double tol = dt == DType::f64 ? 1e-12 : 2e-6 / tau;
      CHECK(std::abs(r.loss.item() - loss) <= tol * loss);
      CHECK(max_abs_diff(q.grad().to_vector(), grad) <= tol);
      CHECK(!k.grad().defined());
    }
  }
}

TEST_CASE("the key encoder starts as a copy, the optimizer leaves it alone, the EMA moves it exactly") {
  for (const int version : {1, 2}) {
    CAPTURE(version);
    const double m = 0.9;
    MoCo moco(small_options(version, 16, 2, m));
    const std::vector<Tensor> query = moco.trainable_parameters(), key = moco.key_parameters();
    REQUIRE(query.size() == key.size());
    CHECK(moco.parameters().size() == 2 * query.size());  // every parameter is the query's or the key's
    for (size_t i = 0; i < query.size(); ++i) {
      CHECK(same_bits(query[i], key[i]));
      CHECK(!query[i].is_same(key[i]));
    }
    SGD sgd(moco.trainable_parameters(), SgdOptions{0.5, 0.9, 0.0, 1e-4, false});
    const std::vector<Tensor> views = {random_views(4, 1), random_views(4, 2)};
    const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});
    for (int64_t step = 0; step < 2; ++step) {
      ssl::StepResult r = moco.training_step({views, idx, step, 1.0});
      const std::vector<Tensor> key_before = clones(moco.key_parameters()), query_before = clones(query);
      sgd.zero_grad();
      r.loss.backward();
      for (const Tensor& k : moco.key_parameters()) CHECK(!k.grad().defined());
      sgd.step();
      int moved = 0;
      for (size_t i = 0; i < key.size(); ++i) {
        CHECK(same_bits(moco.key_parameters()[i], key_before[i]));
        moved += !same_bits(query[i], query_before[i]);
      }
      CHECK(moved == static_cast<int>(query.size()));
      moco.after_step();
      // k <- m k + (1 - m) q, each product and the sum rounded to float: within 3 roundings of the float64 value.
      double worst = 0;
      for (size_t i = 0; i < key.size(); ++i) {
        const std::vector<double> kb = key_before[i].to_vector(), qa = query[i].to_vector();
        const std::vector<double> ka = moco.key_parameters()[i].to_vector();
        for (size_t j = 0; j < kb.size(); ++j) {
          const double want = m * kb[j] + (1 - m) * qa[j];
          const double scale = std::abs(m * kb[j]) + std::abs((1 - m) * qa[j]);
          worst = std::max(worst, std::abs(ka[j] - want) / (scale > 0 ? scale : 1));
        }
      }
      CHECK(worst <= 3 * std::ldexp(1.0, -24));
      int key_moved = 0;  // not trivially: the query moved, so every key tensor moves towards it
      for (size_t i = 0; i < key.size(); ++i) key_moved += !same_bits(moco.key_parameters()[i], key_before[i]);
      CHECK(key_moved == static_cast<int>(key.size()));
    }
  }
}

TEST_CASE("the queue is FIFO across wrap-around; the loss uses the queue before the step's keys join it") {
  // K = 10, B = 4: rows 0-3, then 4-7, then 8, 9 and (wrapping) 0, 1.
  MoCo moco(small_options(2, 10, 2));
  const Tensor init = moco.queue().clone();
  std::vector<Tensor> batches;
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});
  for (int64_t step = 0; step < 3; ++step) {
    const std::vector<Tensor> views = {random_views(4, 10 + step), random_views(4, 20 + step)};
    const Tensor before = moco.queue().clone();
    ssl::StepResult r = moco.training_step({views, idx, step, 1.0});
    batches.push_back(moco.last_keys().clone());
    // The same loss from the query recomputed (train mode: batch statistics) and the queue as it was.
    Tensor q = moco.head().forward(moco.encoder().forward_features(views[0]));
    CHECK(r.loss.item() == ssl::moco_info_nce(q, moco.last_keys(), before, 0.2).loss.item());
    moco.after_step();
    if (step == 0) {  // rows 4-9 still hold the initial keys, and the pointer is past the first batch
      CHECK(same_bits(moco.queue().narrow(0, 4, 6), init.narrow(0, 4, 6)));
      CHECK(moco.queue_pointer() == 4);
    }
  }
  // Row r of the queue after three steps: which batch and which of its rows.
  const std::vector<std::pair<int, int>> expect = {{2, 2}, {2, 3}, {0, 2}, {0, 3}, {1, 0},
                                                   {1, 1}, {1, 2}, {1, 3}, {2, 0}, {2, 1}};
  for (int64_t r = 0; r < 10; ++r) {
    CAPTURE(r);
    const auto [b, row] = expect[r];
    CHECK(same_bits(moco.queue().narrow(0, r, 1), batches[b].narrow(0, row, 1)));
  }
  CHECK(moco.queue_pointer() == 2);
  MoCo again(small_options(2, 10, 2));
  CHECK(same_bits(again.queue(), init));  // the initial queue is a function of the seed
  // The pointer is the checkpoint's method.queue_ptr; a checkpoint without it is refused, naming it.
  const TensorMap st = moco.method_state();
  REQUIRE(st.count("queue_ptr"));
  again.load_method_state(st);
  CHECK(again.queue_pointer() == 2);
  CHECK_THROWS_WITH_AS(again.load_method_state({}), doctest::Contains("method.queue_ptr"), Error);
  CHECK_THROWS_WITH_AS(again.load_method_state({{"queue_ptr", Tensor::from_vector(std::vector<int64_t>{10}, {})}}),
                       doctest::Contains("outside the queue [0, 10)"), Error);
}

TEST_CASE("shuffling BN: one pass over the permuted rows, the un-permute is exact, BN statistics are per shard") {
  const int64_t B = 12, S = 3;
  Generator g(7, 1);
  const Tensor x = Tensor::randn({B, 3, 4, 4}, DType::f32, &g);
  const std::vector<int64_t> perm = {5, 0, 11, 3, 8, 1, 10, 7, 2, 9, 4, 6};
  // An identity net that records what it sees: one batch, x's rows in the permuted order; the output is x.
  std::vector<Tensor> seen;
  Tensor out = ssl::shuffled_shard_forward({}, [&](const Tensor& t) { seen.push_back(t.clone()); return t; }, x, perm, S);
  CHECK(same_bits(out, x));
  REQUIRE(seen.size() == 1);
  for (int64_t j = 0; j < B; ++j) CHECK(same_bits(seen[0].narrow(0, j, 1), x.narrow(0, perm[j], 1)));
  // BatchNorm2d in training mode: each row normalised with its shard's statistics (float64 by hand); shard s
  // is the permuted rows j with j mod S == s.
  nn::BatchNorm2d bn(3);
  Tensor y;
  {
    NoGradGuard ng;
    y = ssl::shuffled_shard_forward({&bn}, [&](const Tensor& t) { return bn.forward(t); }, x, perm, S);
  }
  CHECK(bn.sample_groups() == 1);  // back to whole-batch statistics after the key pass
  std::vector<std::vector<int64_t>> shards(S);
  for (int64_t j = 0; j < B; ++j) shards[j % S].push_back(perm[j]);
  // float32 BN: the normalised values are O(3), their rounding and the statistics' a few ulp of that.
  CHECK(max_abs_diff(y.to_vector(), reference_group_bn(x, shards, 1e-5)) <= 2e-6);
  // Against the whole batch's statistics the rows differ far beyond that: the statistics are the shards'.
  std::vector<int64_t> all(B);
  std::iota(all.begin(), all.end(), 0);
  CHECK(max_abs_diff(y.to_vector(), reference_group_bn(x, {all}, 1e-5)) > 0.05);
  // And against contiguous shards of the permuted rows (the other way to cut it) as far: the grouping is j mod S.
  std::vector<std::vector<int64_t>> blocks(S);
  for (int64_t j = 0; j < B; ++j) blocks[j / (B / S)].push_back(perm[j]);
  CHECK(max_abs_diff(y.to_vector(), reference_group_bn(x, blocks, 1e-5)) > 0.05);
  CHECK_THROWS_WITH_AS(ssl::shuffled_shard_forward({&bn}, [&](const Tensor& t) { return bn.forward(t); }, x, perm, 5),
                       doctest::Contains("5 shards do not divide a batch of 12"), Error);
}

TEST_CASE("MoCo's keys: the key encoder's BN takes its statistics shard by shard in the step's permutation") {
  MoCo moco(small_options(1, 16, 4));
  const Tensor v = random_views(8, 3);
  const std::vector<int64_t> p0 = moco.key_permutation(8, 0), p1 = moco.key_permutation(8, 1);
  std::vector<int64_t> sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(p0 != p1);                           // a new permutation every step
  CHECK(moco.key_permutation(8, 1) == p1);  // and the same one for the same step (resume)
  const Tensor k = moco.keys(v, 1);  // one pass of 8 rows, BN statistics per shard
  // By hand: 4 shards of 2 rows (shard s: the permuted rows s and s + 4) each through key encoder and head
  // as a batch of its own, rows put back, normalised. A separate key encoder with the same weights, so that
  // its BN running statistics are not moved twice.
  MoCo twin(small_options(1, 16, 4));
  std::vector<double> want(static_cast<size_t>(8 * 6));
  {
    NoGradGuard ng;
    for (int64_t s = 0; s < 4; ++s) {
      const int64_t rows[2] = {p1[s], p1[s + 4]};
      const Tensor shard = cat({v.narrow(0, rows[0], 1), v.narrow(0, rows[1], 1)}, 0);
      const std::vector<double> o = twin.key_head().forward(twin.key_encoder().forward_features(shard)).to_vector();
      for (int64_t r = 0; r < 2; ++r) {
        double n = 0;
        for (int64_t d = 0; d < 6; ++d) n += o[r * 6 + d] * o[r * 6 + d];
        for (int64_t d = 0; d < 6; ++d) want[rows[r] * 6 + d] = o[r * 6 + d] / std::sqrt(n);
      }
    }
  }
  CHECK(max_abs_diff(k.to_vector(), want) <= 1e-6);
  // The whole batch at once (no shuffling BN) gives other keys: the shards' statistics matter.
  MoCo whole(small_options(1, 16, 1));
  CHECK(max_abs_diff(whole.keys(v, 1).to_vector(), want) > 1e-3);
}

TEST_CASE("a short MoCo v2 run on Fashion-MNIST: the loss falls and the probe beats the untrained encoder"
          * doctest::test_suite("learning")) {
  test::require_fashion_mnist();
  const std::string dir = test::fresh_run_dir("moco", "short");
  ssl::TrainConfig c = test::tiny_train_config(dir);
  c.method = "mocov2";
  ssl::apply_method_preset(c);
  c.limit = 2048;
  c.batch = 64;
  c.width = 4;
  c.proj_hidden = 64;
  c.queue_size = 512;
  c.key_momentum = 0.99;
  c.lr = 0.06;
  c.epochs = 4;  // 128 steps
  const ssl::TrainSummary s = ssl::train(c, {"", 0, true});
  CHECK(s.steps == 128);
  // The loss rises while real keys replace the queue's random initial rows (8 steps), then falls: the mean
  // over the last 16 steps against the 16 after the queue filled.
  std::vector<double> loss;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] == "step") loss.push_back(j["loss"].get<double>());
  }
  REQUIRE(loss.size() == 128);
  const double early = std::accumulate(loss.begin() + 8, loss.begin() + 24, 0.0) / 16;
  const double late = std::accumulate(loss.end() - 16, loss.end(), 0.0) / 16;
  MESSAGE("loss after the queue filled " << early << ", at the end " << late);
  CHECK(late < early - 0.1);
  ssl::LoadedEncoder trained = ssl::load_encoder_from_checkpoint(dir);
  const std::shared_ptr<ssl::Method> untrained = ssl::make_method(c);  // the same initialisation, untrained
  const double p_trained = test::probe_top1(*trained.encoder, c, 2048, 1000),
               p_untrained = test::probe_top1(untrained->encoder(), c, 2048, 1000);
  MESSAGE("linear probe: trained " << p_trained << ", untrained " << p_untrained);
  CHECK(p_trained > p_untrained + 0.01);
}

TEST_CASE("moco and mocov2 runs killed with SIGKILL resume bit-identical, queue and key encoder included") {
  // The queue (200 rows: batches of 64 wrap around it at uneven places) and the key encoder live in model.*,
  // the queue pointer in method.*. The CLI applies the method's preset; the library run applies it here.
  for (const char* method : {"moco", "mocov2"})
    test::check_kill_resume(method, {"--queue-size", "200", "--key-momentum", "0.99"}, [](ssl::TrainConfig& c) {
      const ssl::TrainConfig tiny = c;
      ssl::apply_method_preset(c);
      c.batch = tiny.batch;
      c.proj_hidden = tiny.proj_hidden;
      c.proj_dim = tiny.proj_dim;
      c.queue_size = 200;
      c.key_momentum = 0.99;
    });
}

TEST_CASE("a moco checkpoint resumes only as moco") {
  test::require_fashion_mnist();
  const std::string dir = test::fresh_run_dir("moco", "other");
  ssl::TrainConfig c = test::tiny_train_config(dir);
  c.method = "moco";
  c.queue_size = 128;
  c.steps = 2;
  c.epochs = 0;
  ssl::train(c, {"", 0, true});
  ssl::TrainControl control{dir, 0, true};
  control.expect_method = "simclr";
  CHECK_THROWS_WITH_AS(ssl::train(c, control), doctest::Contains("is a checkpoint of method 'moco', not 'simclr'"),
                       Error);
  const Checkpoint ck = load_checkpoint(dir);
  CHECK(ck.model.at("queue").sizes() == Shape{128, 16});
  CHECK(ck.model.count("key_encoder.conv1.weight") == 1);
  CHECK(ck.method.at("queue_ptr").item() == 0);  // 2 steps of 64 keys around a queue of 128
}

TEST_CASE("the CLI: MoCo's options in --help, the queue capped with a note, bad values named") {
  const test::CliRun help = test::run_selfsup("train --help");
  CHECK(help.code == 0);
  for (const char* s : {"--method simclr|moco|mocov2", "--queue-size K (65536", "--key-momentum M", "(0.999)",
                        "--shuffle-bn-shards S", "--temperature 0.07", "--lr-schedule cosine|step"})
    CHECK_MESSAGE(help.out.find(s) != std::string::npos, s);
  test::require_fashion_mnist();
  const std::string dir = test::fresh_run_dir("moco", "cli");
  const std::string base = "train --method mocov2 --data " + test::fashion_mnist_spec() +
                           " --device cpu --limit 256 --batch 64 --width 4 --proj-hidden 32 --steps 3 --no-knn";
  const test::CliRun ok = test::run_selfsup(base + " --out " + dir);
  INFO(ok.out);
  REQUIRE(ok.code == 0);
  CHECK(ok.out.find("note: mocov2: --queue-size 65536 capped at the 256 training images") != std::string::npos);
  const ssl::TrainConfig stored = ssl::TrainConfig::from_json(test::read_text(dir + "/config.json"), dir);
  CHECK(stored.queue_size == 256);
  CHECK(stored.shuffle_bn_shards == 8);
  CHECK(stored.temperature == 0.2);
  CHECK(stored.recipe == "mocov2");
  CHECK(stored.lr_schedule == "cosine");
  const std::string never = " --out " + test::fresh_run_dir("moco", "never");
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {" --shuffle-bn-shards 65", "--shuffle-bn-shards 65 must divide the batch of 64"},
           {" --shuffle-bn-shards 6", "--shuffle-bn-shards 6 must divide the batch of 64"},
           {" --key-momentum 1", "--key-momentum must be in [0, 1), got 1"},
           {" --lr-schedule linear", "unknown --lr-schedule 'linear' (expected cosine or step)"}}) {
    const test::CliRun bad = test::run_selfsup(base + args + never);
    CHECK(bad.code != 0);
    CHECK_MESSAGE(bad.out.find(says) != std::string::npos, bad.out);
  }
  const test::CliRun demo = test::run_selfsup("demo --method byol");
  CHECK(demo.code != 0);
  CHECK(demo.out.find("selfsup demo: error: unknown --method 'byol' (expected " + ssl::method_list() + ")") != std::string::npos);
}
