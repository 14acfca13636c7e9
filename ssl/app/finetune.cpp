// `selfsup eval finetune`: fine-tune a trained encoder with a fresh linear head on (a fraction of) the labels,
// train the same network from random initialisation with the same recipe and budget, and print both.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "engine/core/cuda_context.h"
#include "engine/data/spec.h"
#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/app/encoder_arg.h"
#include "ssl/app/eval_record.h"
#include "ssl/eval/finetune.h"
#include "ssl/eval/semi_supervised.h"
#include "ssl/trainer/encoder_io.h"
#include "ssl/trainer/plot.h"

namespace selfsup::app {

namespace {

namespace fs = std::filesystem;

const char* kFinetuneUsage =
    "usage: selfsup eval finetune (--checkpoint DIR | --weights FILE) [--data SPEC] [options]\n"
    "\n"
    "Trains the whole encoder from DIR's weights (or FILE's, described as for `selfsup embed`) plus a new\n"
    "linear head on the labels (RandomResizedCrop (crop-min..1) + horizontal flip, batch norm in training\n"
    "mode, SGD momentum 0.9, 1 epoch warm-up then cosine), prints test top-1, then trains the same network\n"
    "from random initialisation with the same recipe and budget and prints both numbers.\n"
    "  --label-fraction F     class-balanced fraction of the training labels (1; 0.01 / 0.1 = the 1% / 10%\n"
    "                         of the literature), drawn by --label-seed (0), indices written to --out\n"
    "  --epochs E             default 60 at F <= 0.01, 30 at F <= 0.1 (SimCLR's semi-supervised schedule),\n"
    "                         10 with all labels (scaled down from 90 for a 2-core CPU)\n"
    "  --lr LR (0.05)  --backbone-lr-scale S (1; 0 freezes the encoder: a linear probe with augmentation)\n"
    "  --batch B (128)  --wd WD (5e-4)  --crop-min A (0.64)  --seed S (0: head init, data order, views)\n"
    "  --baseline scratch|none (scratch)  --device auto|cpu|cuda (auto)  --threads N\n"
    "  --train-limit N  --test-limit N (first N images of each split; 0 = all)\n"
    "  --record               append the result to the checkpoint DIR's evals.jsonl (read by `selfsup compare`)\n"
    "  --out DIR (runs/finetune): metrics.jsonl, metrics.png, finetuned.safetensors and scratch.safetensors\n"
    "                         (torchvision names, fc.* included), result.json, the label subset\n";

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// One network's run: its metrics lines ("run": name) and the points of its two plot series.
struct Curve {
  std::vector<double> steps, loss, epochs, top1;
};

}  // namespace

int cmd_finetune(const std::vector<std::string>& argv) {
  Args a(argv, "eval finetune");
  if (a.help()) {
    std::printf("%s", kFinetuneUsage);
    return 0;
  }
  const EncoderArg source = read_encoder_arg(a, "eval finetune");
  const double fraction = a.number("label-fraction", 1.0);
  SELFSUP_CHECK(fraction > 0.0 && fraction <= 1.0, "eval finetune: --label-fraction must be in (0, 1], got ",
                fraction);
  eval::FinetuneOptions opt;
  opt.epochs = a.integer("epochs", fraction <= 0.01 ? 60 : fraction <= 0.1 ? 30 : 10);
  opt.lr = a.number("lr", opt.lr);
  opt.backbone_lr_scale = a.number("backbone-lr-scale", opt.backbone_lr_scale);
  opt.batch = a.integer("batch", opt.batch);
  opt.weight_decay = a.number("wd", opt.weight_decay);
  opt.crop_min = a.number("crop-min", opt.crop_min);
  opt.seed = static_cast<uint64_t>(a.integer("seed", 0));
  const auto label_seed = static_cast<uint64_t>(a.integer("label-seed", 0));
  const std::string baseline = a.str("baseline", "scratch"), out = a.str("out", "runs/finetune");
  const std::string device = a.str("device", "auto");
  const int64_t threads = a.integer("threads", 0);
  const int64_t train_limit = a.integer("train-limit", 0), test_limit = a.integer("test-limit", 0);
  const bool record = a.flag("record");
  a.finish();
  SELFSUP_CHECK(!record || (!source.checkpoint.empty() && train_limit == 0 && test_limit == 0),
                "eval finetune: --record needs --checkpoint DIR (the records go to DIR/evals.jsonl) and whole splits ",
                "(no --train-limit or --test-limit)");
  SELFSUP_CHECK(baseline == "scratch" || baseline == "none", "eval finetune: --baseline must be scratch or none, got '",
                baseline, "'");
  // Checked here as well as in eval::finetune, so a bad value stops before any data is loaded or printed.
  SELFSUP_CHECK(opt.epochs >= 1 && opt.batch >= 1, "eval finetune: --epochs and --batch must be >= 1");
  SELFSUP_CHECK(opt.lr > 0 && opt.backbone_lr_scale >= 0 && opt.weight_decay >= 0,
                "eval finetune: --lr must be positive, --backbone-lr-scale and --wd non-negative");
  SELFSUP_CHECK(opt.crop_min > 0 && opt.crop_min <= 1, "eval finetune: --crop-min must be in (0, 1], got ",
                opt.crop_min);
  SELFSUP_CHECK(!fs::exists(fs::path(out) / "result.json"), "eval finetune: ", out,
                " already holds a fine-tuning result (result.json); choose another --out");
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
  opt.device = parse_device(device);
  ssl::LoadedEncoder le = load_encoder(source);
  const std::string spec = data_spec(source, le), ckpt = source.source();
  opt.image_size = le.config.image_size;
  opt.recipe = le.config.recipe;

  ImageDataset train = data::load_dataset(spec, "train"), test = data::load_dataset(spec, "test");
  SELFSUP_CHECK(train.images.size(3) == le.config.in_channels, "eval finetune: ", spec, " has ",
                train.images.size(3), " channels but the encoder in ", ckpt, " takes ", le.config.in_channels);
  if (test_limit > 0 && test_limit < test.size()) {
    test.images = test.images.narrow(0, 0, test_limit);
    test.labels = test.labels.narrow(0, 0, test_limit);
  }
  fs::create_directories(out);
  if (fraction < 1.0) {
    train = eval::labelled_subset(train, train_limit, fraction, label_seed, out);
  } else if (train_limit > 0 && train_limit < train.size()) {
    train.images = train.images.narrow(0, 0, train_limit);
    train.labels = train.labels.narrow(0, 0, train_limit);
  }
  std::printf("eval finetune: %s (%s width %ld) on %s: %ld labelled training images, %ld epochs, %ld test images, %s\n",
              ckpt.c_str(), le.config.arch.c_str(), long(le.config.width), spec.c_str(), long(train.size()),
              long(opt.epochs), long(test.size()), opt.device.str().c_str());

  std::FILE* metrics = std::fopen((fs::path(out) / "metrics.jsonl").string().c_str(), "w");
  SELFSUP_CHECK(metrics != nullptr, "eval finetune: cannot write ", (fs::path(out) / "metrics.jsonl").string());
  Curve curves[2];
  auto run_one = [&](const char* name, models::ResNet& encoder, Curve& c) {
    opt.on_step = [&](int64_t step, double loss) {
      if (step % 10 != 0) return;
      std::fprintf(metrics, "{\"type\": \"step\", \"run\": \"%s\", \"step\": %ld, \"loss\": %s}\n", name, long(step),
                   num(loss).c_str());
      c.steps.push_back(static_cast<double>(step));
      c.loss.push_back(loss);
    };
    opt.on_eval = [&](int64_t epoch, double top1) {
      std::fprintf(metrics, "{\"type\": \"eval\", \"run\": \"%s\", \"epoch\": %ld, \"test_top1\": %s}\n", name,
                   long(epoch), num(top1).c_str());
      std::fflush(metrics);
      c.epochs.push_back(static_cast<double>(epoch));
      c.top1.push_back(100.0 * top1);
      std::printf("\n  %s epoch %ld: test top-1 %.2f%%\n", name, long(epoch), 100.0 * top1);
    };
    eval::FinetuneResult r = eval::finetune(encoder, train, test, opt);
    TensorMap weights(r.weights.begin(), r.weights.end());
    save_safetensors((fs::path(out) / (std::string(name) + ".safetensors")).string(), weights,
                     {{"format", "pt"}, {"arch", le.config.arch}});
    std::printf("%s: test top-1 %.2f%% (%ld steps, %.1f s, %.0f images/s)\n", name, 100.0 * r.test_top1,
                long(r.steps), r.seconds, r.images_per_s);
    return r;
  };
  const eval::FinetuneResult tuned = run_one("finetuned", *le.encoder, curves[0]);
  eval::FinetuneResult scratch;
  const bool with_scratch = baseline == "scratch";
  if (with_scratch) {
    std::shared_ptr<models::ResNet> fresh = ssl::build_encoder(le.config, opt.seed);
    scratch = run_one("scratch", *fresh, curves[1]);
  }
  std::fclose(metrics);

  std::vector<trainer::Series> loss_series{{"fine-tuned", curves[0].steps, curves[0].loss, 0x1f77b4}};
  std::vector<trainer::Series> top1_series{{"fine-tuned", curves[0].epochs, curves[0].top1, 0x1f77b4}};
  if (with_scratch) {
    loss_series.push_back({"from scratch", curves[1].steps, curves[1].loss, 0xd62728});
    top1_series.push_back({"from scratch", curves[1].epochs, curves[1].top1, 0xd62728});
  }
  trainer::write_line_chart_png((fs::path(out) / "metrics.png").string(),
                                {trainer::Panel{"fine-tuning loss", "step", loss_series},
                                 trainer::Panel{"test top-1 %", "epoch", top1_series}});
  std::string result = "{\n  \"protocol\": \"finetune\",\n  \"checkpoint\": \"" + ckpt + "\",\n  \"data\": \"" + spec +
                       "\",\n  \"label_fraction\": " + num(fraction) + ",\n  \"label_seed\": " +
                       std::to_string(label_seed) + ",\n  \"labelled_images\": " + std::to_string(train.size()) +
                       ",\n  \"epochs\": " + std::to_string(opt.epochs) + ",\n  \"backbone_lr_scale\": " +
                       num(opt.backbone_lr_scale) + ",\n  \"finetuned_top1\": " + num(tuned.test_top1);
  if (with_scratch) result += ",\n  \"scratch_top1\": " + num(scratch.test_top1);
  result += "\n}\n";
  atomic_write_file((fs::path(out) / "result.json").string(), result.data(), result.size());
  if (record)
    append_eval_record(ckpt, {"finetune", fraction, label_seed, test.size(), tuned.test_top1,
                              with_scratch ? scratch.test_top1 : -1.0,
                              str_cat("epochs=", opt.epochs, " lr=", opt.lr, " backbone_lr_scale=", opt.backbone_lr_scale),
                              ""});
  if (with_scratch)
    std::printf("fine-tuned %.2f%% / from scratch %.2f%% (%+.2f pt) with %ld labelled images -> %s\n",
                100.0 * tuned.test_top1, 100.0 * scratch.test_top1, 100.0 * (tuned.test_top1 - scratch.test_top1),
                long(train.size()), out.c_str());
  else
    std::printf("fine-tuned %.2f%% with %ld labelled images -> %s\n", 100.0 * tuned.test_top1, long(train.size()),
                out.c_str());
  return 0;
}

}  // namespace selfsup::app
