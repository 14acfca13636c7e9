// `selfsup demo`, what `make demo` runs: SimCLR (or --method X, from the table of presets below) on
// Fashion-MNIST with the CPU preset for a fixed time budget, then the linear probe on the frozen encoder,
// ending with one summary next to the raw-pixel floor.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/autograd/autocast.h"
#include "engine/core/cuda_context.h"
#include "engine/data/spec.h"
#include "kernels/bf16_api.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/app/eval_record.h"
#include "ssl/eval/features.h"
#include "ssl/eval/linear_probe.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/trainer.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup demo [--method M] [--minutes M] [--preset auto|cpu|gpu] [--out DIR] [--threads N]\n"
    "                    [--probe-epochs E] [--pretrained DIR] [--data-dir DIR] [--precision auto|fp32|bf16]\n"
    "\n"
    "The default SSL job: SimCLR on Fashion-MNIST (ResNet-18 layout, CIFAR stem; the cpu preset: width 8,\n"
    "batch 64, lr 0.075; the gpu preset: width 64, batch 512, lr 0.6; auto (default): gpu when a CUDA device\n"
    "is present, else cpu; training runs on the GPU when there is one) for --minutes (default 7), then a\n"
    "linear probe on the frozen, standardised features, the same probe on raw pixels, and one summary. The\n"
    "run directory (default runs/demo, replaced) keeps config, metrics, plot, checkpoints.\n"
    "Every encoder committed under --pretrained (default models/pretrained; each folder: encoder.safetensors,\n"
    "config.json, result.json) gets the same probe, printed beside the demo's own score ('none' skips).\n"
    "--data-dir: the folder of the Fashion-MNIST .gz files (default: Debian's dataset-fashion-mnist).\n"
    "--method: any method of `selfsup train --method` (default simclr); its preset is its row below, or, for a\n"
    "method without one, its paper defaults (train --help) at width 8 / 64 and batch 64 / 512 with the\n"
    "paper's lr scaled by batch / 256.\n"
    "--precision: auto (default) trains in bf16 (autocast: train --help) where it is faster, on a GPU or a CPU\n"
    "with oneDNN bfloat16 kernels (AVX512-BF16 / AMX), and in fp32 where bf16 would be emulated; it prints\n"
    "which. bf16 kept the probe within 0.3 points of fp32 (docs/cpu-dense-kernels.md, Mixed precision).\n";

// The demo's automatic precision: bf16 where it runs natively (faster), else fp32; with the reason.
std::pair<std::string, std::string> choose_precision(const std::string& asked, bool gpu_device) {
  if (asked != "auto") return {asked, "as asked"};
  if (gpu_device) return {"bf16", "auto: cuDNN/cuBLAS bfloat16 on the GPU"};
  if (kernels::cpu_native_bf16())
    return {"bf16", str_cat("auto: oneDNN bfloat16 kernels on this CPU (", kernels::cpu_isa_name(), ")")};
  return {"fp32", str_cat("auto: this CPU (oneDNN ISA ", kernels::cpu_isa_name(),
                          ") has no bfloat16 kernels, bf16 would be emulated and slower")};
}

void moco_demo_preset(ssl::TrainConfig& c, bool gpu) {
  c.width = gpu ? 64 : 8;
  c.batch = gpu ? 512 : 64;
  c.lr = 0.06;
  c.crop_min = 0.3;
  c.key_momentum = 0.99;
  c.queue_size = 16384;  // not the whole data set: each image's own key of the previous epoch would be a negative
}

// The demo's preset of each method that has one, for the cpu and the gpu preset (applied after the method's
// paper defaults, ssl::apply_method_preset). A method adds its row here.
struct DemoPreset {
  const char* method;
  const char* cpu;  // the banner's description of the cpu and gpu presets
  const char* gpu;
  void (*apply)(ssl::TrainConfig& c, bool gpu);
};

const DemoPreset kDemoPresets[] = {
    {"simclr", "width 8, batch 64, lr 0.075", "width 64, batch 512, lr 0.6",
     [](ssl::TrainConfig& c, bool gpu) {
       c.width = gpu ? 64 : 8;
       c.batch = gpu ? 512 : 64;
       c.temperature = 0.2;
       c.crop_min = 0.3;
       c.lr = gpu ? 0.6 : 0.075;
     }},
    // MoCo v1 and v2: the committed CPU runs' settings (docs/methods.md: lr from one-epoch trials; m 0.99 for
    // a short run, where 0.999 averages over a whole epoch; K spanning 256 steps as MoCo's 65536 at batch 256).
    {"moco", "width 8, batch 64, lr 0.06, m 0.99, K 16384", "width 64, batch 512, lr 0.06, m 0.99, K 16384",
     moco_demo_preset},
    {"mocov2", "width 8, batch 64, lr 0.06, m 0.99, K 16384", "width 64, batch 512, lr 0.06, m 0.99, K 16384",
     moco_demo_preset},
    // PIRL: the committed CPU run's settings (docs/methods.md): SimCLR's demo lr and crop, 4096 bank negatives.
    {"pirl", "width 8, batch 64, lr 0.075, 4096 negatives", "width 64, batch 512, lr 0.6, 32000 negatives",
     [](ssl::TrainConfig& c, bool gpu) {
       c.width = gpu ? 64 : 8;
       c.batch = gpu ? 512 : 64;
       c.lr = gpu ? 0.6 : 0.075;
       c.crop_min = 0.3;
       c.bank_negatives = gpu ? 32000 : 4096;
     }},
    // Context Encoder: the method preset (AdamW 1e-3, batch 64, random-block masks) at the demo's widths.
    {"context-encoder", "width 8, batch 64, AdamW lr 1e-3, block masks", "width 64, batch 256, AdamW lr 1e-3, block masks",
     [](ssl::TrainConfig& c, bool gpu) {
       c.width = gpu ? 64 : 8;
       c.batch = gpu ? 256 : 64;
     }},
};

// Sets c from the method's row, or the generic preset; returns the banner's description.
std::string apply_demo_preset(ssl::TrainConfig& c, bool gpu) {
  ssl::apply_method_preset(c);
  for (const DemoPreset& p : kDemoPresets)
    if (c.method == p.method) {
      p.apply(c, gpu);
      return gpu ? p.gpu : p.cpu;
    }
  const double paper_batch = static_cast<double>(c.batch);
  c.width = gpu ? 64 : 8;
  c.batch = gpu ? 512 : 64;
  c.lr *= static_cast<double>(c.batch) / paper_batch;
  return str_cat("width ", c.width, ", batch ", c.batch, ", lr ", c.lr, " (the paper's, scaled by batch)");
}

// One committed encoder (models/pretrained/<name>/) evaluated with the demo's probe.
struct PretrainedScore {
  std::string name;
  std::string trained;   // how it was trained, from result.json ("SimCLR, 20 epochs on a 2-core CPU, ...")
  double recorded;       // the probe score measured when it was committed (result.json)
  double measured;       // the probe score measured now
};

// Probes every <dir>/<name>/encoder.safetensors with the options and data of the demo's own probe.
std::vector<PretrainedScore> probe_pretrained(const std::string& dir, const ImageDataset& train,
                                              const ImageDataset& test, const eval::LinearProbeOptions& lp) {
  namespace fs = std::filesystem;
  std::vector<PretrainedScore> out;
  if (dir == "none" || !fs::is_directory(dir)) return out;
  std::vector<fs::path> runs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "encoder.safetensors")) runs.push_back(e.path());
  std::sort(runs.begin(), runs.end());
  for (const auto& run : runs) {
    const nlohmann::json result = read_json_file(run / "result.json");
    const std::string where = (run / "result.json").string();
    SELFSUP_CHECK(result.contains("trained") && result["trained"].is_string(), where,
                  ": expected a string field 'trained' (how the encoder was trained)");
    SELFSUP_CHECK(result.contains("linear_probe_test_top1") && result["linear_probe_test_top1"].is_number(), where,
                  ": expected a number field 'linear_probe_test_top1' (a fraction, e.g. 0.87)");
    PretrainedScore p{run.filename().string(), result["trained"].get<std::string>(),
                      result["linear_probe_test_top1"].get<double>(), 0.0};
    std::printf("\n== committed encoder %s (%s) ==\n", p.name.c_str(), p.trained.c_str());
    std::fflush(stdout);
    ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(run.string());
    Tensor ftr = eval::extract_features(*le.encoder, train, le.config.image_size, le.config.recipe);
    Tensor fte = eval::extract_features(*le.encoder, test, le.config.image_size, le.config.recipe);
    p.measured = eval::linear_probe(ftr, train.labels, fte, test.labels, train.num_classes, lp).test_top1;
    std::printf("linear probe test top-1 %.2f%% (recorded when committed: %.2f%%)\n", 100.0 * p.measured,
                100.0 * p.recorded);
    out.push_back(p);
  }
  return out;
}

}  // namespace

int cmd_demo(const std::vector<std::string>& argv) {
  Args a(argv, "demo");
  if (a.help()) {
    std::printf("%s", kUsage);
    return 0;
  }
  // The Fashion-MNIST presets (README: presets). On a machine with a CUDA device the larger GPU preset runs
  // by default: full-width ResNet-18, batch 512. It has not been run on a GPU yet (no GPU session so far), so
  // its settings are a starting point, not a measured result. --preset picks one explicitly (the gpu preset
  // on a CPU is slow but exercises the same configuration).
  const bool have_gpu = default_device().is_cuda();
  const std::string preset = a.str("preset", "auto");
  SELFSUP_CHECK(preset == "auto" || preset == "cpu" || preset == "gpu", "demo: unknown --preset '", preset,
                "' (expected auto, cpu or gpu)");
  const bool gpu = preset == "gpu" || (preset == "auto" && have_gpu);
  ssl::TrainConfig c;
  const std::string data_dir = a.str("data-dir", "");
  c.data = data_dir.empty() ? "fashion-mnist" : "fashion-mnist:" + data_dir;
  ssl::apply_data_preset(c);
  c.method = a.str("method", "simclr");
  SELFSUP_CHECK(ssl::is_known_method(c.method), "demo: unknown --method '", c.method, "' (expected ",
                ssl::method_list(), ")");
  const std::string preset_text = apply_demo_preset(c, gpu);
  c.minutes = a.number("minutes", 7.0);
  c.out = a.str("out", "runs/demo");
  c.threads = static_cast<int>(a.integer("threads", 0));
  c.checkpoint_minutes = 2;
  eval::LinearProbeOptions lp;
  lp.epochs = a.integer("probe-epochs", 20);
  const std::string pretrained = a.str("pretrained", "models/pretrained");
  const std::string precision_arg = a.str("precision", "auto");
  a.finish();
  if (precision_arg != "auto") parse_precision(precision_arg, "demo: --precision (auto, fp32 or bf16)");
  const auto [precision, precision_why] = choose_precision(precision_arg, have_gpu);
  c.precision = precision;
  SELFSUP_CHECK(c.minutes > 0, "demo: --minutes must be positive");
  // The demo owns its run directory: a previous demo's checkpoints would make `train` refuse to start.
  std::filesystem::remove_all(c.out);
  const auto wall0 = std::chrono::steady_clock::now();

  const std::string method_title = c.method == "simclr" ? "SimCLR" : c.method;  // `make demo`'s banner unchanged
  std::printf("== selfsup demo: %s on Fashion-MNIST, %s preset (ResNet-18 %s%s), %.1f minutes of training on the %s ==\n",
              method_title.c_str(), gpu ? "GPU" : "CPU", preset_text.c_str(), gpu ? "; not yet validated on a GPU" : "",
              c.minutes, have_gpu ? "GPU" : "CPU");
  std::printf("precision: %s (%s)\n", precision.c_str(), precision_why.c_str());
  ssl::TrainSummary s = ssl::train(c);
  std::printf("\n== linear probe on the frozen encoder ==\n");
  ssl::LoadedEncoder le = ssl::load_encoder_from_checkpoint(c.out);
  ImageDataset train = data::load_dataset(c.data, "train"), test = data::load_dataset(c.data, "test");
  std::printf("features of %ld training and %ld test images (encoder in eval mode)...\n", long(train.size()),
              long(test.size()));
  std::fflush(stdout);
  Tensor ftr, fte;
  {
    AutocastGuard autocast(parse_precision(precision, "demo: --precision"));  // the features, as trained
    ftr = eval::extract_features(*le.encoder, train, c.image_size, c.recipe);
    fte = eval::extract_features(*le.encoder, test, c.image_size, c.recipe);
  }
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
  const std::vector<PretrainedScore> committed = probe_pretrained(pretrained, train, test, lp);
  std::printf(
      "\n== summary ==\n"
      "%s training (%s): %ld steps in %.1f min, %.0f images/s (2 views each), last loss %.3f\n"
      "kNN monitor (k=200) test top-1:   %.2f%%\n"
      "linear probe test top-1:          %.2f%%   (train %.2f%%)\n"
      "same probe on raw pixels:         %.2f%%\n"
      "published floors:                 logistic regression on pixels 84.4%%, kNN-5 85.5%%; random width-16\n"
      "                                  encoder 76.7%%; PyTorch SimCLR, same 10-minute CPU budget, 76.9%%\n"
      "run directory: %s (config.json, metrics.jsonl, metrics.png, checkpoints, encoder.safetensors)\n",
      method_title.c_str(), precision.c_str(), long(s.steps), s.seconds / 60.0, s.images_per_s, s.last_loss, 100.0 * s.knn_top1, 100.0 * r.test_top1,
      100.0 * r.train_top1, 100.0 * raw.test_top1, c.out.c_str());
  if (committed.empty() && pretrained != "none")
    std::printf("committed encoders:               none under %s\n", pretrained.c_str());
  for (const auto& p : committed)
    std::printf("committed encoder %s: linear probe test top-1 %.2f%% (%s)\n", p.name.c_str(),
                100.0 * p.measured, p.trained.c_str());
  std::printf("demo wall time: %.1f min\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count() / 60.0);
  return 0;
}

}  // namespace selfsup::app
