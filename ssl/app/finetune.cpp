// `selfsup eval finetune`: fine-tune a trained encoder with a fresh linear head on (a fraction of) the labels,
// train the same network from random initialisation with the same recipe and budget, and print both.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>

#include "engine/core/cuda_context.h"
#include "engine/data/sampler.h"
#include "engine/data/spec.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
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
    "  --checkpoint-minutes M (5)  --checkpoint-every N (steps; 0 = by time only): checkpoints of the run in\n"
    "                         progress under --out (ckpt-finetuned/, ckpt-scratch/, the last two kept)\n"
    "  --resume DIR           continue a stopped or killed run exactly (bit-identical weights and metrics),\n"
    "                         with the arguments it was started with; only --stop-after may be added\n"
    "  --stop-after N         stop with a checkpoint after N steps of this process, as if interrupted\n"
    "  --record               append the result to the checkpoint DIR's evals.jsonl (read by `selfsup compare`)\n"
    "  --strict               folder data: an unreadable image is an error (default: skipped with a warning)\n"
    "  --out DIR (runs/finetune): metrics.jsonl, metrics.png, finetuned.safetensors and scratch.safetensors\n"
    "                         (torchvision names, fc.* included), result.json, the label subset, and\n"
    "                         finetune.json (the run's arguments, for --resume)\n";

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
  // --resume DIR continues the run with the arguments it was started with (DIR/finetune.json); only
  // --stop-after may be given beside it.
  Args first(argv, "eval finetune");
  if (first.help()) {
    std::printf("%s", kFinetuneUsage);
    return 0;
  }
  const std::string resume = first.has("resume") ? first.str("resume", "") : "";
  std::vector<std::string> args = argv;
  if (!resume.empty()) {
    const fs::path saved = fs::path(resume) / "finetune.json";
    SELFSUP_CHECK(fs::is_regular_file(saved), "eval finetune: ", resume,
                  " holds no fine-tuning run to resume (no finetune.json)");
    const int64_t stop_after = first.integer("stop-after", 0);
    first.finish();
    args = read_json_file(saved).at("args").get<std::vector<std::string>>();
    if (stop_after > 0) args.insert(args.end(), {"--stop-after", std::to_string(stop_after)});
  }
  const bool resuming = !resume.empty();
  Args a(args, "eval finetune");
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
  opt.checkpoints.every_minutes = a.number("checkpoint-minutes", opt.checkpoints.every_minutes);
  opt.checkpoints.every_steps = a.integer("checkpoint-every", 0);
  int64_t stop_after = a.integer("stop-after", 0);
  const auto label_seed = static_cast<uint64_t>(a.integer("label-seed", 0));
  const std::string baseline = a.str("baseline", "scratch");
  const std::string out = resuming ? resume : a.str("out", "runs/finetune");
  const std::string device = a.str("device", "auto");
  const int64_t threads = a.integer("threads", 0);
  const int64_t train_limit = a.integer("train-limit", 0), test_limit = a.integer("test-limit", 0);
  const bool record = a.flag("record");
  const bool strict = a.flag("strict");
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
  SELFSUP_CHECK(opt.checkpoints.every_minutes > 0 && opt.checkpoints.every_steps >= 0 && stop_after >= 0,
                "eval finetune: --checkpoint-minutes must be positive, --checkpoint-every and --stop-after >= 0");
  SELFSUP_CHECK(resuming || !fs::exists(fs::path(out) / "finetune.json"), "eval finetune: ", out,
                " already holds a fine-tuning run (finetune.json); --resume ", out,
                " continues it, or choose another --out");
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
  opt.device = parse_device(device);
  ssl::LoadedEncoder le = load_encoder(source);
  const std::string spec = data_spec(source, le), ckpt = source.source();
  opt.image_size = le.config.image_size;
  opt.recipe = le.config.recipe;

  const ImageFolderOptions folder{static_cast<int>(le.config.in_channels), strict};
  ImageDataset train = data::load_dataset(spec, "train", folder), test = data::load_dataset(spec, "test", folder);
  SELFSUP_CHECK(train.channels() == le.config.in_channels, "eval finetune: ", spec, " has ",
                train.channels(), " channels but the encoder in ", ckpt, " takes ", le.config.in_channels);
  if (test_limit > 0 && test_limit < test.size()) test = data::head_images(test, test_limit);
  fs::create_directories(out);
  if (!resuming) {
    // The arguments that define the run, for --resume: everything but where it is and when it stops.
    std::vector<std::string> stored;
    for (size_t i = 0; i < argv.size(); ++i) {
      if (argv[i] == "--out" || argv[i] == "--stop-after") {
        ++i;
        continue;
      }
      if (argv[i].rfind("--out=", 0) == 0 || argv[i].rfind("--stop-after=", 0) == 0) continue;
      stored.push_back(argv[i]);
    }
    const std::string text = nlohmann::json{{"args", stored}}.dump(2) + "\n";
    atomic_write_file((fs::path(out) / "finetune.json").string(), text.data(), text.size());
  }
  if (fraction < 1.0) {
    train = eval::labelled_subset(train, train_limit, fraction, label_seed, out);
  } else if (train_limit > 0 && train_limit < train.size()) {
    train = data::head_images(train, train_limit);
  }
  std::printf("eval finetune: %s %s (%s width %ld) on %s: %ld labelled training images, %ld epochs, %ld test images, %s\n",
              resuming ? "resuming" : "starting", ckpt.c_str(), le.config.arch.c_str(), long(le.config.width),
              spec.c_str(), long(train.size()), long(opt.epochs), long(test.size()), opt.device.str().c_str());

  // A run finished when <name>.json (its result) exists; it is in progress when ckpt-<name>/ holds a checkpoint.
  const char* names[2] = {"finetuned", "scratch"};
  auto done_file = [&](int k) { return fs::path(out) / (std::string(names[k]) + ".json"); };
  auto ckpt_dir = [&](int k) { return (fs::path(out) / ("ckpt-" + std::string(names[k]))).string(); };
  Curve curves[2];
  const fs::path metrics_path = fs::path(out) / "metrics.jsonl";
  if (resuming && fs::exists(metrics_path)) {
    // Keep each run's lines up to the state being resumed (all of a finished run's, none of a run without a
    // checkpoint), so the file holds every step once; the curves come back from the kept lines.
    int64_t upto[2];
    for (int k = 0; k < 2; ++k)
      upto[k] = fs::exists(done_file(k)) ? INT64_MAX
                : !fs::is_directory(ckpt_dir(k)) || latest_checkpoint(ckpt_dir(k)).empty() ? 0
                                                                             : load_checkpoint(ckpt_dir(k)).step;
    std::ifstream in(metrics_path);
    std::string kept;
    for (std::string line; std::getline(in, line);) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const std::exception&) {
        continue;  // a line torn by the kill
      }
      const int k = j.value("run", std::string()) == names[1] ? 1 : 0;
      const int64_t step = j.value("step", int64_t{0});
      if (step > upto[k]) continue;
      kept += line + "\n";
      if (j.value("type", std::string()) == "step") {
        curves[k].steps.push_back(static_cast<double>(step));
        curves[k].loss.push_back(j.value("loss", NAN));
      } else {
        curves[k].epochs.push_back(static_cast<double>(j.value("epoch", int64_t{0})));
        curves[k].top1.push_back(100.0 * j.value("test_top1", NAN));
      }
    }
    atomic_write_file(metrics_path.string(), kept.data(), kept.size());
  } else {
    atomic_write_file(metrics_path.string(), "", 0);
  }
  std::FILE* metrics = std::fopen(metrics_path.string().c_str(), "a");
  SELFSUP_CHECK(metrics != nullptr, "eval finetune: cannot write ", metrics_path.string());

  // Trains network k (or reads its result when an earlier process finished it); false when stopped early.
  double top1[2] = {NAN, NAN};
  auto run_one = [&](int k, models::ResNet& encoder) {
    const char* name = names[k];
    if (fs::exists(done_file(k))) {
      top1[k] = read_json_file(done_file(k)).at("test_top1").get<double>();
      std::printf("%s: finished earlier, test top-1 %.2f%%\n", name, 100.0 * top1[k]);
      return true;
    }
    Curve& c = curves[k];
    opt.on_step = [&](int64_t step, double loss) {
      if (step % 10 != 0) return;
      std::fprintf(metrics, "{\"type\": \"step\", \"run\": \"%s\", \"step\": %ld, \"loss\": %s}\n", name, long(step),
                   num(loss).c_str());
      c.steps.push_back(static_cast<double>(step));
      c.loss.push_back(loss);
    };
    opt.on_eval = [&](int64_t step, int64_t epoch, double t) {
      std::fprintf(metrics, "{\"type\": \"eval\", \"run\": \"%s\", \"step\": %ld, \"epoch\": %ld, \"test_top1\": %s}\n",
                   name, long(step), long(epoch), num(t).c_str());
      std::fflush(metrics);
      c.epochs.push_back(static_cast<double>(epoch));
      c.top1.push_back(100.0 * t);
      std::printf("\n  %s epoch %ld: test top-1 %.2f%%\n", name, long(epoch), 100.0 * t);
    };
    opt.checkpoints.dir = ckpt_dir(k);
    opt.checkpoints.resume = resuming;
    opt.checkpoints.stop_after = stop_after;
    const eval::FinetuneResult r = eval::finetune(encoder, train, test, opt);
    std::fflush(metrics);
    if (stop_after > 0) stop_after = std::max<int64_t>(1, stop_after - (r.steps - r.resumed_at));
    if (!r.finished) {
      std::printf("eval finetune: stopped after step %ld of the %s run (checkpoint in %s); selfsup eval finetune "
                  "--resume %s continues it\n", long(r.steps), name, ckpt_dir(k).c_str(), out.c_str());
      return false;
    }
    TensorMap weights(r.weights.begin(), r.weights.end());
    save_safetensors((fs::path(out) / (std::string(name) + ".safetensors")).string(), weights,
                     {{"format", "pt"}, {"arch", le.config.arch}});
    const std::string result = nlohmann::json{{"test_top1", r.test_top1}, {"steps", r.steps}}.dump() + "\n";
    atomic_write_file(done_file(k).string(), result.data(), result.size());
    fs::remove_all(ckpt_dir(k));  // the weights and the result are written: its checkpoints are not needed
    top1[k] = r.test_top1;
    std::printf("%s: test top-1 %.2f%% (%ld steps, %.1f s, %.0f images/s)\n", name, 100.0 * r.test_top1,
                long(r.steps), r.seconds, r.images_per_s);
    return true;
  };
  const bool with_scratch = baseline == "scratch";
  bool finished = run_one(0, *le.encoder);
  if (finished && with_scratch) {
    std::shared_ptr<models::ResNet> fresh = ssl::build_encoder(le.config, opt.seed);
    finished = run_one(1, *fresh);
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
  if (!finished) return 0;
  nlohmann::json result = {{"protocol", "finetune"},      {"checkpoint", ckpt},
                           {"data", spec},                {"label_fraction", fraction},
                           {"label_seed", label_seed},    {"labelled_images", train.size()},
                           {"epochs", opt.epochs},        {"backbone_lr_scale", opt.backbone_lr_scale},
                           {"finetuned_top1", top1[0]}};
  if (with_scratch) result["scratch_top1"] = top1[1];
  const std::string text = result.dump(2) + "\n";
  atomic_write_file((fs::path(out) / "result.json").string(), text.data(), text.size());
  if (record)
    append_eval_record(ckpt, {"finetune", fraction, label_seed, test.size(), top1[0], with_scratch ? top1[1] : -1.0,
                              str_cat("epochs=", opt.epochs, " lr=", opt.lr, " backbone_lr_scale=", opt.backbone_lr_scale),
                              ""});
  if (with_scratch)
    std::printf("fine-tuned %.2f%% / from scratch %.2f%% (%+.2f pt) with %ld labelled images -> %s\n", 100.0 * top1[0],
                100.0 * top1[1], 100.0 * (top1[0] - top1[1]), long(train.size()), out.c_str());
  else
    std::printf("fine-tuned %.2f%% with %ld labelled images -> %s\n", 100.0 * top1[0], long(train.size()), out.c_str());
  return 0;
}

}  // namespace selfsup::app
