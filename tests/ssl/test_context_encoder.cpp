// Context Encoder (ssl/methods/context_encoder.h): the masks, the masked L2 (hidden pixels only), the
// logistic losses against float64, where the adversarial gradients go, the decoder's sizes, a short run
// that learns, and an exact resume with the discriminator and its optimizer.
#include <doctest/doctest.h>
#include <stb/stb_image.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "engine/autograd/grad_mode.h"
#include "engine/data/spec.h"
#include "engine/io/checkpoint.h"
#include "engine/ops/ops.h"
#include "ssl/methods/context_encoder.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"
#include "tests/support/cli_run.h"
#include "tests/support/kill_resume.h"
#include "tests/support/probe.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
using namespace selfsup::ssl;

namespace {

ContextEncoderOptions tiny_options(const std::string& mask, double adv, int64_t size = 28) {
  ContextEncoderOptions o;
  o.encoder.depth = 18;
  o.encoder.in_channels = 1;
  o.encoder.stem = models::Stem::cifar;
  o.encoder.width = 4;
  o.encoder.seed = 3;
  o.image_size = size;
  o.mask = mask;
  o.adv_weight = adv;
  o.seed = 11;
  return o;
}

std::set<const void*> storage_of(const std::vector<Tensor>& ts) {
  std::set<const void*> s;
  for (const Tensor& t : ts) s.insert(t.raw_data());
  return s;
}

bool all_equal(const Tensor& a, const Tensor& b) { return a.to_vector() == b.to_vector(); }

}  // namespace

TEST_CASE("context-encoder masks: the centre square is a quarter; blocks hide >= a quarter, fixed by (seed, step)") {
  ContextEncoder ce(tiny_options("center", 0));
  const std::vector<double> m = ce.make_mask(2, 5).to_vector();  // (2, 1, 28, 28)
  double hidden = 0;
  for (int64_t y = 0; y < 28; ++y)
    for (int64_t x = 0; x < 28; ++x) {
      const bool inside = y >= 7 && y < 21 && x >= 7 && x < 21;
      CHECK(m[y * 28 + x] == (inside ? 1.0 : 0.0));
      hidden += m[784 + y * 28 + x];
    }
  CHECK(hidden == 196);  // 14 x 14 = 784 / 4

  ContextEncoder cb(tiny_options("blocks", 0));
  const std::vector<double> b1 = cb.make_mask(8, 5).to_vector(), again = cb.make_mask(8, 5).to_vector();
  const std::vector<double> b2 = cb.make_mask(8, 6).to_vector();
  CHECK(b1 == again);
  CHECK(b1 != b2);
  for (int64_t i = 0; i < 8; ++i) {
    double h = 0;
    for (int64_t p = 0; p < 784; ++p) h += b1[i * 784 + p];
    CHECK(h >= 196);
    CHECK(h < 196 + 49);  // the last 7x7 block added crossed the quarter
  }
}

TEST_CASE("context-encoder masked L2 counts hidden pixels only and equals a float64 loop") {
  Generator gen(1);
  const Tensor x = Tensor::randn({3, 2, 6, 6}, DType::f64, &gen);
  Tensor x_hat = Tensor::randn({3, 2, 6, 6}, DType::f64, &gen);
  const Tensor u = Tensor::rand({3, 1, 6, 6}, DType::f64, &gen);
  const Tensor mask = gt(u, 0.6).to(DType::f64);
  const std::vector<double> xv = x.to_vector(), hv = x_hat.to_vector(), mv = mask.to_vector();
  double num = 0, den = 0;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t p = 0; p < 36; ++p) {
        const double mk = mv[n * 36 + p], d = hv[(n * 2 + c) * 36 + p] - xv[(n * 2 + c) * 36 + p];
        num += mk * d * d;
        den += mk;
      }
  const double l = ContextEncoder::masked_l2(x_hat, x, mask).item();
  CHECK(std::abs(l - num / den) <= 1e-14 * (num / den));
  // Anything the decoder paints over visible pixels is free: changing it leaves the loss as it was.
  const Tensor visible = sub(Tensor::ones({1}, DType::f64), mask);
  const Tensor other = add(x_hat, mul(visible, 100.0));
  CHECK(ContextEncoder::masked_l2(other, x, mask).item() == doctest::Approx(l).epsilon(1e-15));
  CHECK_THROWS_WITH_AS(ContextEncoder::masked_l2(x_hat, x, Tensor::zeros({3, 1, 6, 6}, DType::f64)),
                       doctest::Contains("the mask hides no pixel"), Error);
}

TEST_CASE("context-encoder logistic loss equals log(1 + exp(-/+z)) in float64, finite at |z| = 800") {
  const std::vector<double> z = {-800, -30, -2.5, -1e-3, 0, 0.7, 12, 800};
  const Tensor t = Tensor::from_vector(z, {8});
  double want1 = 0, want0 = 0;
  for (double v : z) {
    want1 += v < 0 ? -v + std::log1p(std::exp(v)) : std::log1p(std::exp(-v));  // -log sigmoid(z)
    want0 += v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));   // -log(1 - sigmoid(z))
  }
  CHECK(ContextEncoder::bce_with_logits(t, 1.0).item() == doctest::Approx(want1 / 8).epsilon(1e-14));
  CHECK(ContextEncoder::bce_with_logits(t, 0.0).item() == doctest::Approx(want0 / 8).epsilon(1e-14));
}

TEST_CASE("context-encoder decoder grows the trunk's map back to 28x28 and 32x32") {
  for (int64_t size : {28, 32}) {
    CAPTURE(size);
    ContextEncoder ce(tiny_options("center", 0, size));
    Generator gen(2);
    const Tensor x = Tensor::randn({2, 1, size, size}, DType::f32, &gen);
    CHECK(ce.reconstruct(x, ce.make_mask(2, 0)).sizes() == Shape{2, 1, size, size});
  }
}

TEST_CASE("context-encoder adversarial terms: the discriminator steps itself, the trainer's tensors are G's") {
  ContextEncoder ce(tiny_options("center", 0.001));
  const std::vector<Tensor> trainable = ce.trainable_parameters();
  const std::set<const void*> g = storage_of(trainable);
  const std::vector<Tensor> disc = ce.discriminator().parameters();
  for (const Tensor& d : disc) CHECK(g.count(d.raw_data()) == 0);
  CHECK(trainable.size() + disc.size() == ce.parameters().size());
  std::vector<Tensor> before;
  for (const Tensor& d : disc) before.push_back(d.clone());

  Generator gen(4);
  const std::vector<Tensor> views = {Tensor::randn({4, 1, 28, 28}, DType::f32, &gen)};
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});
  StepResult r = ce.training_step(StepInput{views, idx, 0, 1.0});
  // The discriminator's own step ran on detached completions: it moved, and no gradient reached G.
  bool moved = false;
  for (size_t i = 0; i < disc.size(); ++i) moved |= !all_equal(before[i], disc[i]);
  CHECK(moved);
  for (const Tensor& p : trainable) CHECK(!p.grad().defined());
  // The generator's loss reaches the encoder and the decoder.
  r.loss.backward();
  int64_t with_grad = 0;
  for (const Tensor& p : trainable) with_grad += p.grad().defined() && sum(abs(p.grad())).item() > 0;
  CHECK(with_grad == static_cast<int64_t>(trainable.size()));
  CHECK(r.accuracy >= 0.0);
  CHECK(r.accuracy <= 1.0);
  // The discriminator's optimizer state is method state, the only such state.
  const TensorMap st = ce.method_state();
  CHECK(!st.empty());
  for (const auto& [k, v] : st) CHECK(k.rfind("disc_optim.", 0) == 0);
  ContextEncoder l2_only(tiny_options("center", 0));
  CHECK(l2_only.method_state().empty());
  CHECK(l2_only.trainable_parameters().size() == l2_only.parameters().size());
}

TEST_CASE("context-encoder: a short CPU run's masked L2 falls and its probe beats the random encoder"
          * doctest::test_suite("learning")) {
  ssl::TrainConfig c = test::tiny_train_config(test::fresh_run_dir("ce", "learn"));
  c.method = "context-encoder";
  ssl::apply_method_preset(c);
  c.batch = 64;
  c.mask = "blocks";
  c.limit = 2048;
  c.epochs = 6;
  c.log_every = 4;
  ssl::TrainControl q;
  q.quiet = true;
  const ssl::TrainSummary s = ssl::train(c, q);
  CHECK(s.steps == 192);
  // The masked L2 falls: the mean of the last four logged losses against the first four's.
  std::vector<double> losses;
  std::ifstream metrics(c.out + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.value("type", "") == "step") losses.push_back(j.at("loss").get<double>());
  }
  REQUIRE(losses.size() == 48);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
  const double last = (losses[44] + losses[45] + losses[46] + losses[47]) / 4;
  MESSAGE("masked L2 + adversarial: first ", first, ", last ", last);
  CHECK(last < 0.8 * first);
  LoadedEncoder trained = load_encoder_from_checkpoint(c.out);
  const double t = test::probe_top1(*trained.encoder, c, 2000, 1000);
  const double r = test::probe_top1(*build_encoder(trained.config, 0), c, 2000, 1000);
  MESSAGE("probe top-1: trained ", t, ", random ", r);
  CHECK(t > r);

  // selfsup inpaint on this run: a 4 x 4 grid, and holes painted better than the mean fills them.
  const std::string png = c.out + "/inpaint.png";
  const test::CliRun run = test::run_selfsup("inpaint --checkpoint " + c.out + " --count 4 --preview " + png);
  INFO(run.out);
  REQUIRE(run.code == 0);
  int w = 0, h = 0, comp = 0;
  REQUIRE(stbi_info(png.c_str(), &w, &h, &comp) == 1);
  CHECK(w == 2 + 4 * (112 + 2));  // 28 px zoomed 4x, 2 px separators
  CHECK(h == 2 + 4 * (112 + 2));
  CHECK(comp == 1);
  double mse = 0, mse_mean = 0;
  REQUIRE(std::sscanf(run.out.substr(run.out.find("masked-pixel MSE")).c_str(),
                      "masked-pixel MSE %lf (filling with the mean: %lf)", &mse, &mse_mean) == 2);
  CHECK(mse < mse_mean);
  const test::CliRun wrong = test::run_selfsup("inpaint --checkpoint " + c.out + " --count 0");
  CHECK(wrong.code != 0);
  CHECK(wrong.out.find("--count must be in [1, 64], got 0") != std::string::npos);
}

TEST_CASE("context-encoder: a run killed with SIGKILL resumes bit-identical, discriminator and its Adam included") {
  test::check_kill_resume("context-encoder", {"--mask", "blocks"}, [](ssl::TrainConfig& c) {
    ssl::apply_method_preset(c);
    c.batch = 64;
    c.mask = "blocks";
  });
}
