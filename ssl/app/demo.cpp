// `selfsup demo`, what `make demo` runs: SimCLR on Fashion-MNIST with the CPU preset for a fixed time
// budget, then the linear probe on the frozen encoder, ending with one summary next to the raw-pixel floor.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "engine/core/cuda_context.h"
#include "engine/data/spec.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/eval/features.h"
#include "ssl/eval/linear_probe.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup demo [--minutes M] [--out DIR] [--threads N] [--probe-epochs E]\n"
    "\n"
    "The default SSL job: SimCLR on Fashion-MNIST (ResNet-18 layout, CIFAR stem, width 8, batch 256 on the\n"
    "CPU; width 64, batch 512 when a CUDA device is present) for --minutes of training (default 7), then a\n"
    "linear probe on the frozen, standardised features, the same probe on raw pixels, and one summary. The\n"
    "run directory (default runs/demo, replaced) keeps config, metrics, plot, checkpoints.\n";

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
  Args a(argv, "demo");
  if (a.help()) {
    std::printf("%s", kUsage);
    return 0;
  }
  // The Fashion-MNIST presets (README: presets). On a machine with a CUDA device the larger GPU preset runs
  // instead: full-width ResNet-18, batch 512. It has not been run on a GPU yet (no GPU session so far), so
  // its settings are a starting point, not a measured result.
  const bool gpu = default_device().is_cuda();
  ssl::TrainConfig c;
  c.data = "fashion-mnist";
  ssl::apply_data_preset(c);
  c.width = gpu ? 64 : 8;
  c.batch = gpu ? 512 : 256;
  c.temperature = 0.2;
  c.crop_min = 0.3;
  c.lr = gpu ? 0.6 : 0.3;
  c.minutes = a.number("minutes", 7.0);
  c.out = a.str("out", "runs/demo");
  c.threads = static_cast<int>(a.integer("threads", 0));
  c.checkpoint_minutes = 2;
  eval::LinearProbeOptions lp;
  lp.epochs = a.integer("probe-epochs", 20);
  a.finish();
  SELFSUP_CHECK(c.minutes > 0, "demo: --minutes must be positive");
  // The demo owns its run directory: a previous demo's checkpoints would make `train` refuse to start.
  std::filesystem::remove_all(c.out);
  const auto wall0 = std::chrono::steady_clock::now();

  std::printf("== selfsup demo: SimCLR on Fashion-MNIST, %s preset, %.1f minutes of training ==\n",
              gpu ? "GPU (ResNet-18 width 64, batch 512; not yet validated on a GPU)" : "CPU (ResNet-18 width 8)",
              c.minutes);
  ssl::TrainSummary s = ssl::train(c);
  std::printf("\n== linear probe on the frozen encoder ==\n");
  ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(c.out);
  ImageDataset train = data::load_dataset(c.data, "train"), test = data::load_dataset(c.data, "test");
  std::printf("features of %ld training and %ld test images (encoder in eval mode)...\n", long(train.size()),
              long(test.size()));
  std::fflush(stdout);
  Tensor ftr = eval::extract_features(*le.encoder, train, c.image_size, c.recipe);
  Tensor fte = eval::extract_features(*le.encoder, test, c.image_size, c.recipe);
  lp.on_epoch = [&](int64_t e, double loss) {
    if ((e + 1) % 5 == 0) std::printf("  probe epoch %ld/%ld: loss %.4f\n", long(e + 1), long(lp.epochs), loss);
    std::fflush(stdout);
  };
  eval::LinearProbeResult r = eval::linear_probe(ftr, train.labels, fte, test.labels, train.num_classes, lp);
  // The same probe on raw pixels: the floor the encoder has to beat.
  std::printf("the same probe on raw pixels...\n");
  std::fflush(stdout);
  auto pixels = [](const ImageDataset& d) { return d.images.reshape({d.size(), -1}).to(DType::f32); };
  lp.on_epoch = nullptr;
  eval::LinearProbeResult raw = eval::linear_probe(pixels(train), train.labels, pixels(test), test.labels,
                                                   train.num_classes, lp);
  std::printf(
      "\n== summary ==\n"
      "SimCLR training: %ld steps in %.1f min, %.0f images/s (2 views each), last loss %.3f\n"
      "kNN monitor (k=200) test top-1:   %.2f%%\n"
      "linear probe test top-1:          %.2f%%   (train %.2f%%)\n"
      "same probe on raw pixels:         %.2f%%\n"
      "published floors:                 logistic regression on pixels 84.4%%, kNN-5 85.5%%; random width-16\n"
      "                                  encoder 76.7%%; PyTorch SimCLR, same 10-minute CPU budget, 76.9%%\n"
      "run directory: %s (config.json, metrics.jsonl, metrics.png, checkpoints, encoder.safetensors)\n"
      "demo wall time: %.1f min\n",
      long(s.steps), s.seconds / 60.0, s.images_per_s, s.last_loss, 100.0 * s.knn_top1, 100.0 * r.test_top1,
      100.0 * r.train_top1, 100.0 * raw.test_top1, c.out.c_str(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count() / 60.0);
  return 0;
}

}  // namespace selfsup::app
