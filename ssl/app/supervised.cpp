// `selfsup supervised`: trains a small supervised CNN on Fashion-MNIST for about a minute on the CPU and prints
// its test accuracy. Until the SSL trainer exists this is the end-to-end check of the whole stack: IDX
// data -> conv2d / batch_norm / relu / max_pool2d / linear -> cross_entropy -> backward -> SGD, written
// with the functional ops only (no nn modules or optimizers yet), so each step is visible here.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include "engine/autograd/grad_mode.h"
#include "engine/core/check.h"
#include "engine/core/tensor.h"
#include "engine/data/idx.h"
#include "engine/data/sampler.h"
#include "engine/ops/ops.h"
#include "ssl/app/commands.h"

namespace selfsup::app {

namespace {

// Fashion-MNIST's pixel mean and standard deviation over the training set, pixels scaled to [0, 1].
constexpr double kPixelMean = 0.2860, kPixelStd = 0.3530;
constexpr double kMomentum = 0.9, kWeightDecay = 5e-4;
// Linear warm-up over a fixed number of steps, then cosine decay to zero over the rest of the run.
constexpr int64_t kWarmupSteps = 50;
constexpr int64_t kEvalBatch = 500;
constexpr double kPrintEverySeconds = 5.0;
constexpr int64_t kWidth1 = 32, kWidth2 = 64;  // channels of the two conv blocks

struct Options {
  double minutes = 1.0;
  int64_t steps = 0;  // 0: as many as fit in `minutes`
  int64_t batch = 128;
  double lr = 0.05;
  uint64_t seed = 0;
  int threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or all cores)
  std::string data = "fashion-mnist";
};

void print_help() {
  std::printf(
      "usage: selfsup supervised [options]\n\n"
      "Trains a small CNN (two conv-BN-ReLU-maxpool blocks, %lld and %lld channels, then a linear layer)\n"
      "on Fashion-MNIST with SGD (momentum %.1f, weight decay %g, warm-up then cosine learning rate), and\n"
      "prints the accuracy on the 10000 test images.\n\n"
      "options:\n"
      "  --minutes M   training time budget (default 1.0); the learning rate decays with the clock\n"
      "  --steps N     train exactly N steps instead, learning rate by step: bit-reproducible with the\n"
      "                same seed and thread count\n"
      "  --batch B     batch size (default 128)\n"
      "  --lr LR       peak learning rate (default 0.05)\n"
      "  --seed S      seed of the initial weights and the data order (default 0)\n"
      "  --threads T   OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
      "  --data DIR    directory of the IDX files (default fashion-mnist = %s)\n",
      static_cast<long long>(kWidth1), static_cast<long long>(kWidth2), kMomentum, kWeightDecay,
      data::kFashionMnistDir);
}

double parse_number(const std::string& opt, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  SELFSUP_CHECK(used == text.size() && !text.empty() && std::isfinite(v), "supervised: ", opt, " expects a number, got '",
                text, "'");
  return v;
}

int64_t parse_count(const std::string& opt, const std::string& text, int64_t lo) {
  double v = parse_number(opt, text);
  SELFSUP_CHECK(v == std::floor(v) && v >= static_cast<double>(lo) && v <= 1e15, "supervised: ", opt,
                " expects a whole number >= ", lo, ", got '", text, "'");
  return static_cast<int64_t>(v);
}

// Returns false when --help was asked for.
bool parse_options(const std::vector<std::string>& args, Options& o) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return false;
    auto value = [&]() -> const std::string& {
      SELFSUP_CHECK(i + 1 < args.size(), "supervised: option ", a, " needs a value");
      return args[++i];
    };
    if (a == "--minutes") {
      o.minutes = parse_number(a, value());
      SELFSUP_CHECK(o.minutes > 0, "supervised: --minutes must be positive, got ", o.minutes);
    } else if (a == "--steps") {
      o.steps = parse_count(a, value(), 1);
    } else if (a == "--batch") {
      o.batch = parse_count(a, value(), 1);
    } else if (a == "--lr") {
      o.lr = parse_number(a, value());
      SELFSUP_CHECK(o.lr > 0, "supervised: --lr must be positive, got ", o.lr);
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(parse_count(a, value(), 0));
    } else if (a == "--threads") {
      const int64_t t = parse_count(a, value(), 1);
      SELFSUP_CHECK(t <= 4096, "supervised: --threads expects at most 4096, got ", t);
      o.threads = static_cast<int>(t);
    } else if (a == "--data") {
      o.data = value();
    } else {
      throw Error("supervised: unknown option '" + a + "' (see selfsup supervised --help)");
    }
  }
  return true;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A trainable tensor and its SGD momentum buffer.
struct Param {
  Tensor value;
  Tensor velocity;
  bool decay;  // conv and linear weights only: decaying batch-norm scales and biases only adds noise
};

// Kaiming-normal weights, std = sqrt(gain / fan_in): gain 2 in front of a ReLU keeps activations' variance
// constant through the layers; gain 1 for the classifier, which feeds the softmax directly.
Tensor kaiming(const Shape& shape, int64_t fan_in, double gain, Generator& gen) {
  Tensor w = Tensor::randn(shape, DType::f32, &gen);
  w.mul_(std::sqrt(gain / static_cast<double>(fan_in)));
  return w;
}

// conv 3x3 (no bias: batch norm's shift replaces it) -> batch norm -> ReLU -> 2x2 max pool.
struct ConvBlock {
  Tensor weight;        // (K, C, 3, 3)
  Tensor gamma, beta;   // (K)
  Tensor running_mean;  // (K)
  Tensor running_var;   // (K)

  ConvBlock(int64_t in, int64_t out, Generator& gen)
      : weight(kaiming({out, in, 3, 3}, in * 9, 2.0, gen)),
        gamma(Tensor::ones({out})),
        beta(Tensor::zeros({out})),
        running_mean(Tensor::zeros({out})),
        running_var(Tensor::ones({out})) {}

  // x (N, C, H, W) -> (N, K, H/2, W/2)
  Tensor forward(const Tensor& x, bool training) const {
    Conv2dOptions same;
    same.padding = {1, 1};
    Tensor y = conv2d(x, weight, Tensor(), same);  // (N, K, H, W)
    y = relu(batch_norm(y, running_mean, running_var, gamma, beta, training));
    Pool2dOptions pool;
    pool.kernel = {2, 2};
    return max_pool2d(y, pool);
  }
};

class Net {
 public:
  Net(int64_t image_size, int64_t channels, int64_t classes, Generator& gen)
      : block1_(channels, kWidth1, gen), block2_(kWidth1, kWidth2, gen) {
    const int64_t features = kWidth2 * (image_size / 4) * (image_size / 4);
    fc_weight_ = kaiming({classes, features}, features, 1.0, gen);
    fc_bias_ = Tensor::zeros({classes});
    for (ConvBlock* b : {&block1_, &block2_}) {
      add_param(b->weight, true);
      add_param(b->gamma, false);
      add_param(b->beta, false);
    }
    add_param(fc_weight_, true);
    add_param(fc_bias_, false);
  }

  // x (N, C, H, W) -> logits (N, classes). Training uses batch statistics and updates the running ones.
  Tensor forward(const Tensor& x, bool training) const {
    Tensor h = block2_.forward(block1_.forward(x, training), training);  // (N, 64, H/4, W/4)
    return linear(h.flatten(1), fc_weight_, fc_bias_);
  }

  std::vector<Param>& params() { return params_; }
  int64_t num_parameters() const {
    int64_t n = 0;
    for (const Param& p : params_) n += p.value.numel();
    return n;
  }

 private:
  void add_param(Tensor& t, bool decay) {
    t.set_requires_grad(true);
    params_.push_back({t, Tensor::zeros(t.sizes()), decay});
  }

  ConvBlock block1_, block2_;
  Tensor fc_weight_;  // (classes, features)
  Tensor fc_bias_;    // (classes)
  std::vector<Param> params_;
};

// SGD with momentum and L2 weight decay, as torch.optim.SGD: g += wd * w; v = momentum * v + g;
// w -= lr * v. In place under NoGradGuard: the update must not become part of any graph.
void sgd_step(std::vector<Param>& params, double lr) {
  NoGradGuard no_grad;
  for (Param& p : params) {
    Tensor g = p.value.grad();
    if (!g.defined()) continue;
    if (p.decay) g.add_(p.value, kWeightDecay);
    p.velocity.mul_(kMomentum).add_(g);
    p.value.sub_(p.velocity, lr);
    p.value.set_grad(Tensor());
  }
}

// `progress` in [0, 1]: how much of the run after the warm-up is done.
double learning_rate(double peak, int64_t step, double progress) {
  if (step < kWarmupSteps) return peak * static_cast<double>(step + 1) / kWarmupSteps;
  return peak * 0.5 * (1.0 + std::cos(std::numbers::pi * std::clamp(progress, 0.0, 1.0)));
}

// uint8 images (N, H, W, C) -> normalised float (N, C, H, W).
Tensor to_input(const Tensor& images) {
  Tensor x = images.to(DType::f32).permute({0, 3, 1, 2});  // (N, C, H, W), pixel values 0..255
  // (p / 255 - mean) / std as one scale and one shift.
  return add(mul(x, 1.0 / (255.0 * kPixelStd)), -kPixelMean / kPixelStd).contiguous();
}

// How many of the rows of logits (N, classes) have their maximum at the label; adds to per-class counts.
int64_t count_correct(const Tensor& logits, const Tensor& labels, std::vector<int64_t>* per_class_correct = nullptr) {
  Tensor pred = argmax(logits.detach(), 1).contiguous();  // (N) int64
  Tensor y = labels.contiguous();
  const int64_t* pp = pred.data_ptr<int64_t>();
  const int64_t* yp = y.data_ptr<int64_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < pred.numel(); ++i) {
    if (pp[i] != yp[i]) continue;
    ++correct;
    if (per_class_correct) ++(*per_class_correct)[yp[i]];
  }
  return correct;
}

struct EvalResult {
  double accuracy = 0;
  std::vector<double> per_class;
  double seconds = 0;
};

// Accuracy over the whole set, in batches, batch norm on its running statistics.
EvalResult evaluate(const Net& net, const data::ImageDataset& ds) {
  Clock::time_point t0 = Clock::now();
  NoGradGuard no_grad;
  std::vector<int64_t> correct(ds.num_classes, 0), total(ds.num_classes, 0);
  int64_t all_correct = 0;
  for (int64_t start = 0; start < ds.size(); start += kEvalBatch) {
    const int64_t n = std::min(kEvalBatch, ds.size() - start);
    Tensor labels = ds.labels.narrow(0, start, n);  // (n)
    all_correct += count_correct(net.forward(to_input(ds.images.narrow(0, start, n)), false), labels, &correct);
    const Tensor lc = labels.contiguous();
    const int64_t* lp = lc.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) ++total[lp[i]];
  }
  EvalResult r;
  r.accuracy = ds.size() ? static_cast<double>(all_correct) / static_cast<double>(ds.size()) : 0.0;
  for (int64_t c = 0; c < ds.num_classes; ++c)
    r.per_class.push_back(total[c] ? static_cast<double>(correct[c]) / static_cast<double>(total[c]) : 0.0);
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace

int cmd_supervised(const std::vector<std::string>& args) {
  Options opt;
  if (!parse_options(args, opt)) {
    print_help();
    return 0;
  }
  const Clock::time_point wall0 = Clock::now();
  if (opt.threads > 0) omp_set_num_threads(opt.threads);

  data::ImageDataset train = data::load_fashion_mnist(opt.data, true);
  data::ImageDataset test = data::load_fashion_mnist(opt.data, false);
  const int64_t image_size = train.images.size(1), channels = train.images.size(3);
  SELFSUP_CHECK(train.images.size(2) == image_size && image_size % 4 == 0, "supervised: expected square images with a ",
                "side divisible by 4, got ", shape_str(train.images.sizes()));
  SELFSUP_CHECK(opt.batch <= train.size(), "supervised: --batch ", opt.batch, " exceeds the ", train.size(),
                " training images");

  // Separate streams: changing how the weights are drawn leaves the data order alone and vice versa.
  Generator init_gen(opt.seed, 0), shuffle_gen(opt.seed, 1);
  Net net(image_size, channels, train.num_classes, init_gen);
  std::printf("selfsup supervised: %s, %lld train / %lld test images of %lldx%lld\n", train.name.c_str(),
              static_cast<long long>(train.size()), static_cast<long long>(test.size()),
              static_cast<long long>(image_size), static_cast<long long>(image_size));
  std::printf(
      "model: conv%lld-conv%lld-linear%lld, %lld parameters; batch %lld, SGD lr %g momentum %g wd %g; "
      "%d threads; seed %llu\n",
      static_cast<long long>(kWidth1), static_cast<long long>(kWidth2), static_cast<long long>(train.num_classes),
      static_cast<long long>(net.num_parameters()), static_cast<long long>(opt.batch), opt.lr, kMomentum, kWeightDecay,
      omp_get_max_threads(), static_cast<unsigned long long>(opt.seed));
  std::fflush(stdout);

  const int64_t steps_per_epoch = train.size() / opt.batch;  // the last partial batch is dropped
  // Without --steps the run is sized by the clock: the schedule follows elapsed time and training stops when
  // the budget is spent, so a busy machine shortens the run instead of stretching it.
  const bool timed = opt.steps == 0;
  const double budget_s = opt.minutes * 60.0;
  std::vector<int64_t> order;
  const Clock::time_point train0 = Clock::now();
  Clock::time_point last_print = train0;
  double warmup_end_s = 0, loss_sum = 0, lr = 0;
  int64_t step = 0, images = 0, window_steps = 0, window_correct = 0;
  auto print_progress = [&] {
    const int64_t window_images = window_steps * opt.batch;
    std::printf("step %5lld  epoch %5.2f  %5.1f s  loss %.4f  train acc %5.1f%%  lr %.4f  %6.0f img/s\n",
                static_cast<long long>(step), static_cast<double>(step) / static_cast<double>(steps_per_epoch),
                seconds_since(train0), loss_sum / static_cast<double>(window_steps),
                100.0 * static_cast<double>(window_correct) / static_cast<double>(window_images), lr,
                static_cast<double>(window_images) / seconds_since(last_print));
    std::fflush(stdout);
    loss_sum = 0;
    window_steps = window_correct = 0;
    last_print = Clock::now();
  };
  for (;; ++step) {
    const double elapsed = seconds_since(train0);
    if (timed ? (step > 0 && elapsed >= budget_s) : step >= opt.steps) break;
    if (step == kWarmupSteps) warmup_end_s = elapsed;
    const double progress = timed ? (elapsed - warmup_end_s) / std::max(1e-9, budget_s - warmup_end_s)
                                  : static_cast<double>(step - kWarmupSteps) /
                                        static_cast<double>(std::max<int64_t>(1, opt.steps - kWarmupSteps));
    lr = learning_rate(opt.lr, step, progress);

    const int64_t pos = step % steps_per_epoch;
    if (pos == 0) order = data::randperm(train.size(), shuffle_gen);
    Tensor index = Tensor::from_vector(
        std::vector<int64_t>(order.begin() + pos * opt.batch, order.begin() + (pos + 1) * opt.batch),
        {opt.batch});                                           // (B)
    Tensor x = to_input(index_select(train.images, 0, index));  // (B, C, H, W)
    Tensor y = index_select(train.labels, 0, index);            // (B)

    Tensor logits = net.forward(x, true);  // (B, classes)
    Tensor loss = cross_entropy(logits, y);
    loss.backward();
    sgd_step(net.params(), lr);

    loss_sum += loss.item();
    window_correct += count_correct(logits, y);
    images += opt.batch;
    ++window_steps;
    if (seconds_since(last_print) >= kPrintEverySeconds) print_progress();
  }
  if (window_steps > 0) print_progress();
  const double train_seconds = seconds_since(train0);

  EvalResult ev = evaluate(net, test);
  std::printf("per-class test accuracy:");
  for (int64_t c = 0; c < test.num_classes; ++c) {
    const std::string name =
        c < static_cast<int64_t>(test.class_names.size()) ? test.class_names[c] : std::to_string(c);
    std::printf("%s %s %.1f%%", c ? "," : "", name.c_str(), 100.0 * ev.per_class[c]);
  }
  std::printf("\n");
  std::printf(
      "summary: %lld steps (%.2f epochs) in %.1f s, %.0f train img/s; test accuracy %.2f%% on %lld images "
      "(eval %.1f s); wall %.1f s\n",
      static_cast<long long>(step), static_cast<double>(step) / static_cast<double>(steps_per_epoch), train_seconds,
      static_cast<double>(images) / train_seconds, 100.0 * ev.accuracy, static_cast<long long>(test.size()), ev.seconds,
      seconds_since(wall0));
  if (timed) {
    std::printf("(a clock-sized run; --steps %lld --seed %llu trains the same length reproducibly)\n",
                static_cast<long long>(step), static_cast<unsigned long long>(opt.seed));
  }
  return 0;
}

}  // namespace selfsup::app
