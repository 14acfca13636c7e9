// The fine-tuning loop: loader worker augments (RandomResizedCrop + flip, the pre-training recipe's
// normalisation), encoder (batch norm in training mode) + linear head, cross-entropy, SGD with momentum on two
// parameter groups (encoder at lr * backbone_lr_scale, head at lr), warm-up + cosine by step. With
// backbone_lr_scale 0 the encoder is frozen the way the linear probe freezes it: eval mode (running
// statistics), no gradients, so the result is a linear probe trained with augmentation.
#include "ssl/eval/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/data/loader.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/layers.h"
#include "engine/ops/ops.h"
#include "engine/optim/schedule.h"
#include "engine/optim/sgd.h"
#include "ssl/eval/features.h"
#include "ssl/trainer/progress.h"

namespace selfsup::eval {

namespace {

using Clock = std::chrono::steady_clock;

// Top-1 of encoder + head on `test` (features in eval mode, exactly as the linear probe sees them).
double test_top1(models::ResNet& encoder, nn::Linear& head, const ImageDataset& test, const FinetuneOptions& opt) {
  Tensor f = extract_features(encoder, test, opt.image_size, opt.recipe);  // (N, D) on the CPU
  NoGradGuard ng;
  Tensor pred = argmax(head.forward(f.to(opt.device)), 1).to(Device::cpu());  // (N) int64
  const int64_t* pp = pred.data_ptr<int64_t>();
  const Tensor labels = test.labels.narrow(0, 0, f.size(0)).contiguous();
  const int64_t* lp = labels.data_ptr<int64_t>();
  int64_t right = 0;
  for (int64_t i = 0; i < f.size(0); ++i) right += pp[i] == lp[i];
  return static_cast<double>(right) / static_cast<double>(f.size(0));
}

}  // namespace

FinetuneResult finetune(models::ResNet& encoder, const ImageDataset& train, const ImageDataset& test,
                        const FinetuneOptions& opt) {
  SELFSUP_CHECK(opt.epochs >= 1 && opt.batch >= 1, "finetune: --epochs and --batch must be >= 1");
  SELFSUP_CHECK(opt.lr > 0 && opt.backbone_lr_scale >= 0 && opt.weight_decay >= 0 && opt.momentum >= 0,
                "finetune: --lr must be positive, --backbone-lr-scale, --wd and momentum non-negative");
  SELFSUP_CHECK(train.num_classes >= 2, "finetune: ", train.name, " has no class labels to fine-tune on");
  const int64_t batch = std::min(opt.batch, train.size());
  const bool frozen = opt.backbone_lr_scale == 0.0;

  AugmentRecipe recipe = make_recipe("eval", static_cast<int>(opt.image_size), static_cast<int>(train.channels()));
  const AugmentRecipe pretrain = make_recipe(opt.recipe, static_cast<int>(opt.image_size), static_cast<int>(train.channels()));
  std::copy(std::begin(pretrain.mean), std::end(pretrain.mean), std::begin(recipe.mean));
  std::copy(std::begin(pretrain.std), std::end(pretrain.std), std::begin(recipe.std));
  recipe.scale_lo = static_cast<float>(opt.crop_min);
  recipe.scale_hi = 1.0f;
  recipe.flip_p = 0.5f;
  LoaderOptions lo;
  lo.batch_size = batch;
  lo.seed = opt.seed;
  lo.num_workers = 1;
  DataLoader loader(train, lo, make_augment_transform(recipe, opt.seed, 1));
  const int64_t per_epoch = loader.batches_per_epoch(), total = per_epoch * opt.epochs;

  Generator head_gen(opt.seed, 0x46434844ull);  // "FCHD": the head's init stream
  nn::Linear head(encoder.feature_dim(), train.num_classes, true, head_gen);
  encoder.to(opt.device);
  head.to(opt.device);
  std::vector<ParamGroup> groups{ParamGroup{head.parameters(), opt.lr}};
  if (!frozen) groups.push_back(ParamGroup{encoder.parameters(), opt.lr * opt.backbone_lr_scale});
  SGD sgd(std::move(groups), SgdOptions{opt.lr, opt.momentum, 0.0, opt.weight_decay, false});
  const WarmupCosineSchedule schedule{opt.lr, std::min(per_epoch, total / 2), total, 0.0};
  const int64_t eval_every = opt.eval_every > 0 ? opt.eval_every : std::max<int64_t>(1, opt.epochs / 10);

  const FinetuneCheckpoints& ck = opt.checkpoints;
  FinetuneResult r;
  int64_t step = 0;
  if (ck.resume && std::filesystem::is_directory(ck.dir) && !latest_checkpoint(ck.dir).empty()) {
    const Checkpoint c = load_checkpoint(ck.dir);
    nn::NamedTensors enc, hd;
    for (const auto& [k, v] : c.model) {
      if (k.rfind("encoder.", 0) == 0) enc.emplace_back(k.substr(8), v);
      if (k.rfind("head.", 0) == 0) hd.emplace_back(k.substr(5), v);
    }
    encoder.load_state_dict(enc);
    head.load_state_dict(hd);
    sgd.load_state_dict(c.optim);
    SELFSUP_CHECK(c.loader.count("epoch") && c.loader.count("batch"), ck.dir, ": the checkpoint has no loader position");
    loader.set_position({static_cast<int64_t>(c.loader.at("epoch").item()),
                         static_cast<int64_t>(c.loader.at("batch").item())});
    step = r.resumed_at = c.step;
    SELFSUP_CHECK(step <= total, ck.dir, ": checkpoint at step ", step, " is past this run's ", total, " steps");
  }
  auto save = [&] {
    Checkpoint c;
    c.step = step;
    const LoaderPosition pos = loader.position();
    c.epoch = pos.epoch;
    for (const auto& [k, v] : encoder.state_dict()) c.model["encoder." + k] = v;
    for (const auto& [k, v] : head.state_dict()) c.model["head." + k] = v;
    c.optim = sgd.state_dict();
    c.loader["epoch"] = Tensor::from_vector(std::vector<int64_t>{pos.epoch}, {});
    c.loader["batch"] = Tensor::from_vector(std::vector<int64_t>{pos.batch}, {});
    save_checkpoint(ck.dir, c, 2);
  };

  std::unique_ptr<trainer::Progress> progress;
  if (!opt.quiet) progress = std::make_unique<trainer::Progress>(total, stdout);
  const Clock::time_point t0 = Clock::now();
  Clock::time_point t_ckpt = t0;
  int64_t images = 0;
  while (step < total) {
    Batch b = loader.next();
    const double lr_factor = schedule.factor(step);
    sgd.set_lr_factor(lr_factor);
    encoder.train(!frozen);
    Tensor x = b.views[0].to(opt.device);  // (B, C, s, s)
    std::optional<NoGradGuard> no_grad;
    if (frozen) no_grad.emplace();
    Tensor features = encoder.forward_features(x);  // (B, D)
    no_grad.reset();
    Tensor loss = cross_entropy(head.forward(features), b.labels.to(opt.device));
    sgd.zero_grad();
    loss.backward();
    sgd.step();
    r.last_loss = loss.item();
    SELFSUP_CHECK(std::isfinite(r.last_loss), "finetune: the loss is ", r.last_loss, " at step ", step,
                  "; lower --lr");
    ++step;  // from here on `step` counts the steps done, which is what a checkpoint stores
    images += b.labels.numel();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    if (opt.on_step) opt.on_step(step, r.last_loss);
    if (progress)
      progress->update(step, {{"loss", r.last_loss}, {"lr", opt.lr * lr_factor}}, static_cast<double>(images) / elapsed);
    const int64_t epoch = step / per_epoch;
    if (step % per_epoch == 0 && (epoch % eval_every == 0 || step == total)) {
      r.test_top1 = test_top1(encoder, head, test, opt);
      if (opt.on_eval) opt.on_eval(step, epoch, r.test_top1);
    }
    if (ck.dir.empty() || step == total) continue;
    const bool stop = ck.stop_after > 0 && step - r.resumed_at >= ck.stop_after;
    const bool due = std::chrono::duration<double>(Clock::now() - t_ckpt).count() >= ck.every_minutes * 60.0 ||
                     (ck.every_steps > 0 && step % ck.every_steps == 0);
    if (stop || due) {
      save();
      t_ckpt = Clock::now();
    }
    if (stop) {
      if (progress) progress->finish();
      r.steps = step;
      return r;
    }
  }
  if (progress) progress->finish();
  if (r.resumed_at == total) r.test_top1 = test_top1(encoder, head, test, opt);  // killed after its last checkpoint
  if (!ck.dir.empty() && r.resumed_at < total) save();
  r.finished = true;
  r.steps = total;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.images_per_s = r.seconds > 0 ? static_cast<double>(images) / r.seconds : 0;
  encoder.train(false);
  for (const auto& [k, v] : encoder.state_dict()) r.weights.emplace_back(k, v.to(Device::cpu()));
  r.weights.emplace_back("fc.weight", head.weight.to(Device::cpu()));
  r.weights.emplace_back("fc.bias", head.bias.to(Device::cpu()));
  return r;
}

}  // namespace selfsup::eval
