#include "ssl/trainer/trainer.h"

#include <omp.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/autograd/autocast.h"
#include "engine/autograd/grad_mode.h"
#include "engine/core/cuda_context.h"
#include "engine/data/augment.h"
#include "engine/data/device_augment.h"
#include "engine/data/loader.h"
#include "engine/data/sampler.h"
#include "engine/data/spec.h"
#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "engine/optim/adamw.h"
#include "engine/optim/lars.h"
#include "engine/optim/schedule.h"
#include "engine/optim/sgd.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/distributed.h"
#include "ssl/trainer/plot.h"
#include "ssl/trainer/progress.h"
#include "ssl/trainer/run_length.h"

namespace selfsup::ssl {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void validate(const TrainConfig& c) {
  SELFSUP_CHECK(is_known_method(c.method), "train: unknown --method '", c.method, "' (expected ", method_list(), ")");
  parse_precision(c.precision, "train: --precision");
  SELFSUP_CHECK(c.arch == "resnet18" || c.arch == "resnet34" || c.arch == "resnet50", "train: unknown --arch '",
                c.arch, "' (expected resnet18, resnet34 or resnet50)");
  SELFSUP_CHECK(c.stem == "cifar" || c.stem == "imagenet", "train: unknown --stem '", c.stem,
                "' (expected cifar or imagenet)");
  SELFSUP_CHECK(c.optimizer == "sgd" || c.optimizer == "lars" || c.optimizer == "adamw", "train: unknown --optimizer '",
                c.optimizer, "' (expected sgd, lars or adamw)");
  SELFSUP_CHECK(c.width >= 1 && c.batch >= 2 && c.proj_dim >= 1 && c.proj_hidden >= 1 && c.image_size >= 8,
                "train: --width, --proj-dim and --proj-hidden must be >= 1, --batch >= 2, the image size >= 8");
  SELFSUP_CHECK(c.temperature > 0 && c.lr > 0 && c.weight_decay >= 0 && c.momentum >= 0 && c.crop_min > 0 &&
                    c.crop_min <= 1 && c.warmup_fraction >= 0 && c.warmup_fraction < 1,
                "train: --temperature and --lr must be positive, --crop-min in (0, 1], --warmup in [0, 1)");
  SELFSUP_CHECK(c.lr_schedule == "cosine" || c.lr_schedule == "step", "train: unknown --lr-schedule '",
                c.lr_schedule, "' (expected cosine or step)");
  SELFSUP_CHECK(c.log_every >= 1 && c.checkpoint_every >= 0, "train: --log-every must be >= 1, --checkpoint-every >= 0");
  const int given = (c.epochs > 0) + (c.minutes > 0) + (c.steps > 0);
  SELFSUP_CHECK(given == 1 || c.total_steps > 0, "train: give exactly one of --epochs, --minutes or --steps");
}

// The lr factor of update `step`: linear warmup over warmup_fraction of the steps, then cosine to 0 or, for
// --lr-schedule step, x0.1 at 60% and at 80% of the steps (MoCo v1's decay at epochs 120 and 160 of 200).
double lr_factor_at(const TrainConfig& c, int64_t step) {
  const int64_t warmup = std::llround(c.warmup_fraction * static_cast<double>(c.total_steps));
  if (c.lr_schedule == "step" && step >= warmup) {
    const double T = static_cast<double>(c.total_steps);
    return StepDecaySchedule{c.lr, 0.1, 0, {std::llround(0.6 * T), std::llround(0.8 * T)}}.factor(step);
  }
  return WarmupCosineSchedule{c.lr, warmup, c.total_steps, 0.0}.factor(step);
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, Method& m) {
  if (c.optimizer == "adamw")
    return std::make_unique<AdamW>(m.trainable_parameters(), AdamWOptions{c.lr, 0.9, 0.999, 1e-8, c.weight_decay});
  if (c.optimizer == "lars")
    return std::make_unique<LARS>(m.trainable_parameters(), LarsOptions{c.lr, c.momentum, c.weight_decay});
  return std::make_unique<SGD>(m.trainable_parameters(), SgdOptions{c.lr, c.momentum, 0.0, c.weight_decay, false});
}

TensorMap to_map(const nn::NamedTensors& named) {
  TensorMap m;
  for (const auto& [k, v] : named) m[k] = v;
  return m;
}

nn::NamedTensors to_named(const TensorMap& m) { return nn::NamedTensors(m.begin(), m.end()); }

// The first `limit` images of a data set (0 = all), sharing memory.
ImageDataset head_of(ImageDataset d, int64_t limit) {
  return limit > 0 && limit < d.size() ? data::head_images(d, limit) : d;
}

// One line per event in DIR/metrics.jsonl; opened in append mode so a resumed run continues the file.
class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path) : f_(std::fopen(path.c_str(), "a")) {
    SELFSUP_CHECK(f_ != nullptr, "train: cannot open ", path, " for writing");
  }
  ~MetricsLog() { std::fclose(f_); }
  void line(const std::string& json) {
    std::fprintf(f_, "%s\n", json.c_str());
    std::fflush(f_);
  }

 private:
  std::FILE* f_;
};

// What metrics.jsonl holds up to a step, for the plot of a resumed run.
struct MetricsHistory {
  std::vector<double> steps, loss;  // step lines
  std::vector<double> epochs, knn;  // epoch lines (kNN top-1 in %)
};

// Cuts DIR/metrics.jsonl back to the lines of steps <= `step` (the checkpoint a run resumes from) and
// returns them. A run killed after its last checkpoint had logged steps the resumed run takes again, and
// each step must appear once; a last line without its newline (killed mid-write) goes too. Atomic: a kill
// during the rewrite leaves the old file, which the next resume cuts the same way.
MetricsHistory truncate_metrics(const std::string& path, int64_t step) {
  MetricsHistory h;
  std::ifstream in(path);
  if (!in) return h;  // nothing logged yet
  auto number = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
  };
  std::string kept;
  for (std::string line; std::getline(in, line) && !in.eof();) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() > step)
      continue;
    kept += line + "\n";
    const std::string type = j.value("type", "");
    if (type == "step") {
      h.steps.push_back(number(j, "step"));
      h.loss.push_back(number(j, "loss"));
    } else if (type == "epoch") {
      h.epochs.push_back(number(j, "epoch"));
      h.knn.push_back(100.0 * number(j, "knn_top1"));
    }
  }
  in.close();
  atomic_write_file(path, kept.data(), kept.size());
  return h;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

TrainSummary train(TrainConfig cfg, const TrainControl& control) {
  const Clock::time_point t_start = Clock::now();
  // ---- resume: the stored configuration wins, so the continued run is the same run
  Checkpoint resumed;
  bool resuming = !control.resume.empty();
  if (resuming) {
    resumed = load_checkpoint(control.resume);
    // Damaged newer checkpoints the load fell back over are set aside (kept as evidence, renamed so they no
    // longer count as checkpoints): left in place, the pruning would keep them and remove good ones.
    for (const std::string& bad : resumed.damaged) {
      std::error_code ec;
      fs::rename(bad, bad + ".damaged", ec);
      const std::string outcome = ec ? str_cat("could not rename the damaged ", bad, ": ", ec.message())
                                     : str_cat("renamed the damaged ", bad, " to ", bad, ".damaged");
      std::fprintf(stderr, "warning: %s\n", outcome.c_str());
    }
    TrainConfig stored = TrainConfig::from_json(resumed.config_json, control.resume);
    SELFSUP_CHECK(control.expect_method.empty() || control.expect_method == stored.method, "train: ",
                  resumed.source, " is a checkpoint of method '", stored.method, "', not '", control.expect_method,
                  "': resume it without --method, or start the ", control.expect_method, " run in another --out");
    stored.out = fs::is_directory(control.resume) ? control.resume : fs::path(control.resume).parent_path().string();
    if (stored.out.empty()) stored.out = ".";
    cfg = stored;
  }
  validate(cfg);
  // Under mpirun/srun: this rank's part of the job (ssl/trainer/distributed.h); rank 0 alone writes and prints.
  DistributedTraining dp(cfg);
  const bool root = dp.is_root(), quiet = control.quiet || !root;
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
  // auto: cuda:0 when a device exists, else the CPU; an explicit cuda without a device is an error here.
  const Device device = dp.device(parse_device(cfg.device));

  fs::create_directories(cfg.out);
  SELFSUP_CHECK(resuming || latest_checkpoint(cfg.out).empty(), "train: ", cfg.out, " already holds a run (",
                latest_checkpoint(cfg.out), "); pass --resume ", cfg.out, " to continue it, or choose another --out");

  // ---- data
  // An image folder decodes to the configured channels (grey, RGB and RGBA files alike).
  const ImageFolderOptions folder{static_cast<int>(cfg.in_channels), cfg.strict};
  ImageDataset train_set = head_of(data::load_dataset(cfg.data, "train", folder), cfg.limit);
  SELFSUP_CHECK(train_set.channels() == cfg.in_channels, "train: ", cfg.data, " has ", train_set.channels(),
                " channels, the configuration expects ", cfg.in_channels, " (--in-channels)");
  SELFSUP_CHECK(cfg.batch <= train_set.size(), "train: --batch ", cfg.batch, " is larger than the ", train_set.size(),
                " training images of ", cfg.data);
  // ---- model: before the loader, which makes as many views per image as the method takes
  cfg.dataset_size = train_set.size();  // a memory bank (PIRL) has one row per training image
  for (const std::string& note : resolve_method_config(cfg, train_set.size()))
    if (!control.quiet) std::printf("note: %s\n", note.c_str());
  std::shared_ptr<Method> method = make_method(cfg);
  method->to(device);
  const int views = method->num_views();
  AugmentRecipe recipe = make_recipe(cfg.recipe, static_cast<int>(cfg.image_size), static_cast<int>(cfg.in_channels));
  recipe.scale_lo = static_cast<float>(cfg.crop_min);
  // Views: on a CUDA device the fused kernel makes them from the dataset (resident on the device, or
  // streamed through pinned buffers; see DeviceAugmenter below), so the loader hands out indices only;
  // on the CPU its worker runs the CPU pipeline, overlapping the training step.
  // Images of mixed sizes (an image folder) are decoded and augmented by the loader's worker on the CPU.
  const bool gpu_views = device.is_cuda() && !train_set.source;
  LoaderOptions lo;
  lo.batch_size = cfg.batch;
  lo.seed = cfg.seed;
  lo.num_workers = 1;
  lo.gather_images = !gpu_views;
  lo.shard = dp.rank();
  lo.shards = dp.world_size();
  DataLoader loader(train_set, lo, gpu_views ? BatchTransform() : make_augment_transform(recipe, cfg.seed, views));
  const int64_t steps_per_epoch = loader.batches_per_epoch();

  // The kNN monitor: the test split classified against (a prefix of) the training split, when there is one.
  ImageDataset knn_train, knn_test;
  if (cfg.knn_every_epoch && root) {
    try {
      knn_test = head_of(data::load_dataset(cfg.data, "test", folder), cfg.knn_test_limit);
      knn_train = head_of(train_set, cfg.knn_train_limit);
    } catch (const Error& e) {
      if (!quiet) std::printf("kNN monitor off: %s\n", e.what());
    }
  }

  // ---- optimizer (the model, built before the loader, is on the device: to(Device) replaces the
  // parameter tensors, so the optimizer must see the moved ones)
  std::unique_ptr<Optimizer> optim = make_optimizer(cfg, *method);
  // After the model is on the device, so the residency rule sees the memory that is really free.
  // SELFSUP_GPU_DATA=auto|resident|stream overrides the rule (the views are the same either way).
  std::unique_ptr<DeviceAugmenter> augmenter;
  if (gpu_views) {
    DeviceAugmentOptions ao;
    ao.recipe = recipe;
    ao.seed = cfg.seed;
    ao.views = views;
    ao.device = device;
    ao.max_batch = cfg.batch;
    const char* mode = std::getenv("SELFSUP_GPU_DATA");
    ao.mode = parse_device_data_mode(mode ? mode : "auto");
    augmenter = std::make_unique<DeviceAugmenter>(train_set, ao);
    if (!quiet) std::printf("%s\n", augmenter->description().c_str());
  }
  int64_t step = 0;
  if (resuming) {
    method->load_state_dict(to_named(resumed.model));
    method->load_method_state(resumed.method);
    optim->load_state_dict(resumed.optim);
    SELFSUP_CHECK(resumed.loader.count("epoch") && resumed.loader.count("batch"), control.resume,
                  ": the checkpoint has no loader position (loader.epoch, loader.batch)");
    loader.set_position({static_cast<int64_t>(resumed.loader.at("epoch").item()),
                         static_cast<int64_t>(resumed.loader.at("batch").item())});
    step = resumed.step;
  }
  dp.prepare(*method, cfg.sync_bn);

  // ---- length of the run
  const bool calibrate = cfg.total_steps == 0 && cfg.minutes > 0;
  if (cfg.total_steps == 0) {
    if (cfg.steps > 0) cfg.total_steps = cfg.steps;
    if (cfg.epochs > 0) cfg.total_steps = std::max<int64_t>(1, std::llround(cfg.epochs * steps_per_epoch));
    if (calibrate) cfg.total_steps = std::numeric_limits<int64_t>::max();  // set after timing a few steps
  }
  auto write_config = [&] {
    std::string text = cfg.to_json() + "\n";
    atomic_write_file((fs::path(cfg.out) / "config.json").string(), text.data(), text.size());
  };
  if (!calibrate && root) write_config();

  if (!quiet) {
    std::printf("selfsup train: %s %s\n%s\n", resuming ? "resuming" : "starting", cfg.out.c_str(),
                cfg.to_json().c_str());
    std::printf("data: %s, %ld training images, %ld steps per epoch; encoder %s width %ld (%ld parameters) on %s\n",
                train_set.name.c_str(), long(train_set.size()), long(steps_per_epoch), cfg.arch.c_str(),
                long(cfg.width), long(method->num_parameters()), device.str().c_str());
    if (resuming) std::printf("resumed at step %ld of %ld\n", long(step), long(cfg.total_steps));
    if (dp.active()) std::printf("%s\n", dp.describe().c_str());
    std::printf("%s\n", precision_description(parse_precision(cfg.precision, "train: --precision"), device.is_cuda()).c_str());
  }
  // Mixed precision for the whole loop: the methods' forward and backward, and the kNN monitor's features.
  AutocastGuard autocast(parse_precision(cfg.precision, "train: --precision"));

  // On the GPU path the next batch is taken from the loader one step early (its upload overlaps this
  // step), so the data position of a checkpoint is that held batch's, not the loader's.
  std::optional<Batch> held;
  auto data_position = [&]() -> LoaderPosition {
    return held ? LoaderPosition{held->epoch, held->batch} : loader.position();
  };

  const std::string metrics_path = (fs::path(cfg.out) / "metrics.jsonl").string();
  MetricsHistory history = resuming && root ? truncate_metrics(metrics_path, step) : MetricsHistory{};
  std::unique_ptr<MetricsLog> metrics = root ? std::make_unique<MetricsLog>(metrics_path) : nullptr;
  std::vector<double>& plot_steps = history.steps;
  std::vector<double>& plot_loss = history.loss;
  std::vector<double>& plot_epochs = history.epochs;
  std::vector<double>& plot_knn = history.knn;
  TrainSummary summary;
  auto save = [&](int64_t at_step) {
    if (!root) return;
    Checkpoint ck;
    ck.step = at_step;
    const LoaderPosition pos = data_position();
    ck.epoch = pos.epoch;
    ck.config_json = cfg.to_json();
    ck.model = to_map(method->state_dict());
    ck.method = method->method_state();
    ck.optim = optim->state_dict();
    ck.loader["epoch"] = Tensor::from_vector(std::vector<int64_t>{pos.epoch}, {});
    ck.loader["batch"] = Tensor::from_vector(std::vector<int64_t>{pos.batch}, {});
    try {
      summary.checkpoint = save_checkpoint(cfg.out, ck, 2);
    } catch (const Error& e) {
      // A full disk (or any write failure): the atomic writer left the previous checkpoint as it was.
      const std::string previous = latest_checkpoint(cfg.out);
      throw Error(str_cat("train: cannot save the checkpoint of step ", at_step, " in ", cfg.out, ": ", e.what(),
                          ". Training stopped. ",
                          previous.empty() ? std::string("No earlier checkpoint exists.")
                                           : str_cat("The previous checkpoint ", previous,
                                                     " is intact: free space, then continue with --resume ", cfg.out)));
    }
  };
  auto knn_monitor = [&](int64_t epoch) {
    if (knn_test.size() == 0) return;
    Tensor ftr = eval::extract_features(method->encoder(), knn_train, cfg.image_size, cfg.recipe);
    Tensor fte = eval::extract_features(method->encoder(), knn_test, cfg.image_size, cfg.recipe);
    eval::KnnOptions ko;
    ko.k = cfg.knn_k;
    AutocastGuard exact(DType::f32);  // the similarity search itself in float32
    summary.knn_top1 = eval::knn_accuracy(ftr, knn_train.labels, fte, knn_test.labels, knn_test.num_classes, ko);
    metrics->line(str_cat("{\"type\": \"epoch\", \"epoch\": ", epoch, ", \"step\": ", step, ", \"knn_top1\": ",
                          num(summary.knn_top1), "}"));
    plot_epochs.push_back(static_cast<double>(epoch));
    plot_knn.push_back(100.0 * summary.knn_top1);
    if (!quiet) std::printf("\nepoch %ld: kNN top-1 %.2f%%\n", long(epoch), 100.0 * summary.knn_top1);
  };
  auto write_plot = [&] {
    if (!root) return;
    trainer::write_line_chart_png((fs::path(cfg.out) / "metrics.png").string(),
                         {trainer::Panel{method->loss_title(), "step", {trainer::Series{"loss", plot_steps, plot_loss, 0x1f77b4}}},
                          trainer::Panel{"kNN top-1 %", "epoch",
                                         {trainer::Series{"kNN top-1 %", plot_epochs, plot_knn, 0xd62728}}}});
  };

  // ---- the loop
  const int64_t start_step = step;
  // No progress output when quiet; a --minutes run gets its reporter once it knows its length.
  auto make_progress = [&] {
    const bool length_known = cfg.total_steps != std::numeric_limits<int64_t>::max();
    return quiet || !length_known ? nullptr : std::make_unique<trainer::Progress>(cfg.total_steps, stdout);
  };
  std::unique_ptr<trainer::Progress> progress = make_progress();
  Clock::time_point t_loop = Clock::now(), t_ckpt = Clock::now();
  int64_t images = 0;
  double last_loss = 0;
  Clock::time_point t_timed = t_loop;  // the end of the warm-up steps, where a --minutes run's timing starts
  // One kNN monitor pass, estimated from the features of one of its batches (the monitor's own batch size, so
  // the convolution plans it creates are the monitor's) scaled to the images the monitor embeds.
  auto time_monitor = [&]() -> double {
    if (knn_test.size() == 0) return 0;
    const int64_t n = std::min<int64_t>(500, knn_train.size());
    const Clock::time_point t0 = Clock::now();
    eval::extract_features(method->encoder(), knn_train, cfg.image_size, cfg.recipe, n);
    return seconds_since(t0) / static_cast<double>(n) * static_cast<double>(knn_train.size() + knn_test.size());
  };
  while (step < cfg.total_steps) {
    Batch batch = held ? std::move(*held) : loader.next();
    held.reset();
    const double lr_factor = lr_factor_at(cfg, step);
    optim->set_lr_factor(lr_factor);
    if (augmenter) {
      batch.views = augmenter->views(batch);  // enqueued on the device's stream
    } else {
      // The loader builds views on the CPU (its workers overlap the model); they move to the model's device here.
      for (Tensor& v : batch.views) v = v.to(device);
    }
    StepResult r = method->training_step(StepInput{batch.views, batch.indices, step, lr_factor});
    if (augmenter && step + 1 < cfg.total_steps) {
      // While the forward pass runs: take the next batch and start its upload (stream mode), so it is on
      // the device when the next step begins.
      held = loader.next();
      augmenter->stage(*held);
    }
    // The global batch's loss and monitor: the means over ranks (the same on every rank).
    const double loss = dp.mean(r.loss.item());
    r.accuracy = dp.mean(r.accuracy);
    if (!std::isfinite(loss)) {
      throw Error(str_cat("train: the loss is ", loss, " at step ", step, "; training stopped. ",
                          summary.checkpoint.empty() && latest_checkpoint(cfg.out).empty()
                              ? std::string("No checkpoint was written yet.")
                              : "The last good checkpoint is " + latest_checkpoint(cfg.out) + "."));
    }
    optim->zero_grad();
    r.loss.backward();
    dp.reduce_gradients();
    optim->step();
    method->after_step();
    ++step;
    images += batch.indices.numel() * dp.world_size();
    last_loss = loss;
    const double elapsed = seconds_since(t_loop);
    // Decided once per step, so a --minutes run is sized before the first checkpoint records its length.
    const bool interrupted = control.stop_after > 0 && step - start_step >= control.stop_after;
    const bool every_due = cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0;
    const bool time_due = seconds_since(t_ckpt) >= cfg.checkpoint_minutes * 60.0;
    if (calibrate && cfg.total_steps == std::numeric_limits<int64_t>::max()) {
      const int64_t done = step - start_step, timed = done - kWarmupSteps;
      if (done == kWarmupSteps) t_timed = Clock::now();
      const double window = std::min(kWindowSeconds, kWindowFraction * cfg.minutes * 60.0);
      const bool size_now = timed >= kTimedSteps || (timed >= 1 && elapsed >= window) ||
                            step % steps_per_epoch == 0 || interrupted || every_due || time_due;
      // Rank 0's clock decides, so every rank sizes the run at the same step (a broadcast per step, only
      // until the run is sized).
      if (dp.from_root(size_now ? 1 : 0) != 0) {
        RunLengthInput in;
        in.step = step;
        in.step_s = timed >= 1 ? seconds_since(t_timed) / static_cast<double>(timed)
                               : elapsed / static_cast<double>(done);
        in.monitor_s = time_monitor();
        in.remaining_s = cfg.minutes * 60.0 - seconds_since(t_start);
        in.steps_per_epoch = steps_per_epoch;
        cfg.total_steps = dp.from_root(steps_for_budget(in));
        if (root) write_config();
        if (progress) progress->finish();
        progress = make_progress();
      }
    }
    if (metrics && (step % cfg.log_every == 0 || step == cfg.total_steps)) {
      metrics->line(str_cat("{\"type\": \"step\", \"step\": ", step, ", \"epoch\": ", data_position().epoch,
                            ", \"loss\": ", num(loss), ", \"acc\": ", num(r.accuracy), ", \"lr\": ",
                            num(cfg.lr * lr_factor), ", \"images_per_s\": ", num(images / elapsed), "}"));
      plot_steps.push_back(static_cast<double>(step));
      plot_loss.push_back(loss);
    }
    if (progress)
      progress->update(step, {{"loss", loss}, {method->accuracy_name(), r.accuracy}, {"lr", cfg.lr * lr_factor}},
                       static_cast<double>(images) / elapsed);
    if (step % steps_per_epoch == 0 && step < cfg.total_steps) {
      knn_monitor(step / steps_per_epoch);
      write_plot();
      dp.wait_for_root();
    }
    const bool periodic = every_due && step < cfg.total_steps;
    if (interrupted || periodic || time_due) {
      save(step);
      t_ckpt = Clock::now();
    }
    if (interrupted) break;
  }
  if (progress) progress->finish();
  summary.steps = step;
  summary.steps_this_run = step - start_step;
  summary.seconds = seconds_since(t_loop);
  summary.images_per_s = summary.seconds > 0 ? static_cast<double>(images) / summary.seconds : 0;
  summary.last_loss = last_loss;
  if (step >= cfg.total_steps) {
    knn_monitor((step + steps_per_epoch - 1) / steps_per_epoch);
    write_plot();
    save(step);
    if (root)
      save_safetensors((fs::path(cfg.out) / "encoder.safetensors").string(), to_map(method->encoder().state_dict()),
                       {{"format", "pt"}, {"arch", cfg.arch}, {"config", cfg.to_json()}});
  }
  return summary;
}

}  // namespace selfsup::ssl
