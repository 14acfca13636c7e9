// `selfsup train`: self-supervised training (SimCLR) with the options of ssl/trainer/config.h.
#include <cstdio>

#include "engine/core/check.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/trainer/trainer.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup train [--method simclr|pirl] [--data SPEC] [--epochs E | --minutes M | --steps N] [options]\n"
    "\n"
    "Trains an encoder without labels and reports a kNN monitor on the test split every epoch.\n"
    "Writes config.json, metrics.jsonl, metrics.png, checkpoints and encoder.safetensors into --out.\n"
    "\n"
    "data:      --data fashion-mnist | cifar10:PATH | cifar100:PATH | stl10:PATH | folder:PATH (default\n"
    "           fashion-mnist; its preset: 1 channel, 28x28, grayscale recipe, CIFAR stem)  --limit N\n"
    "encoder:   --arch resnet18|resnet34|resnet50  --width W (layer1 channels, default 16)  --stem cifar|imagenet\n"
    "           --proj-hidden H (512)  --proj-dim D (128)\n"
    "recipe:    --recipe gray|simclr|mocov1|mocov2  --crop-min S (RandomResizedCrop area lower bound, 0.2)\n"
    "training:  --batch B (256)  --optimizer sgd|lars  --lr (0.3)  --weight-decay (5e-4)  --momentum (0.9)\n"
    "           --temperature T (0.2)  --warmup F (fraction of the steps, 0.05)\n"
    "length:    --epochs E | --minutes M (sized after timing the first steps) | --steps N (default --epochs 10)\n"
    "run:       --out DIR (runs/simclr)  --resume DIR  --seed S  --threads N  --device auto|cpu|cuda\n"
    "           --log-every N (10)  --checkpoint-minutes M (5)  --checkpoint-every N (steps; 0 = by time only)\n"
    "           --knn-k K (200)  --knn-train-limit N (10000)  --no-knn\n"
    "           --stop-after N (stop after N steps with a checkpoint, as if interrupted)\n"
    "\n"
    "pirl (Misra & van der Maaten 2019): memory bank of --proj-dim (128) unit rows, one per training image,\n"
    "           NCE against bank negatives, a Jigsaw branch; --temperature defaults to the paper's 0.07\n"
    "           --bank-negatives K (the paper's 32000, capped at the training images minus the batch; the\n"
    "           2-core CPU run uses 4096: the loss's cost grows with K)\n"
    "           --pirl-lambda L (weight of the Jigsaw branch's loss, the paper's 0.5)\n"
    "           --bank-momentum M (bank update m <- normalise(M m + (1 - M) f), the paper's 0.5)\n"
    "           --jigsaw-size S (resize the Jigsaw view to S x S before cutting it into 3 x 3 cells; default 0 =\n"
    "           as is: on 28x28 the 8-pixel tiles learned more, and faster, than tiles of a view resized to 48)\n"
    "           --jigsaw-tile T (tile side inside each cell; 0 = the cell's side - 1, as the paper's 64 of 85)\n"
    "           CPU preset (models/pretrained/pirl-*): --width 8 --batch 64 --lr 0.075 --bank-negatives 4096\n";

}  // namespace

int cmd_train(const std::vector<std::string>& argv) {
  Args a(argv, "train");
  if (a.help()) {
    std::printf("%s", kUsage);
    return 0;
  }
  ssl::TrainConfig c;
  ssl::TrainControl control;
  control.resume = a.str("resume", "");
  control.stop_after = a.integer("stop-after", 0);
  if (!control.resume.empty()) control.expect_method = a.str("method", "");
  c.data = a.str("data", c.data);
  ssl::apply_data_preset(c);
  c.method = a.str("method", c.method);
  c.limit = a.integer("limit", c.limit);
  c.arch = a.str("arch", c.arch);
  c.width = a.integer("width", c.width);
  c.stem = a.str("stem", c.stem);
  c.in_channels = a.integer("in-channels", c.in_channels);
  c.image_size = a.integer("image-size", c.image_size);
  c.proj_hidden = a.integer("proj-hidden", c.proj_hidden);
  c.proj_dim = a.integer("proj-dim", c.proj_dim);
  c.recipe = a.str("recipe", c.recipe);
  c.crop_min = a.number("crop-min", c.crop_min);
  if (c.method == "pirl") c.temperature = 0.07;  // PIRL's paper value (SimCLR's 0.2 is the default)
  c.temperature = a.number("temperature", c.temperature);
  c.bank_negatives = a.integer("bank-negatives", c.bank_negatives);
  c.pirl_lambda = a.number("pirl-lambda", c.pirl_lambda);
  c.bank_momentum = a.number("bank-momentum", c.bank_momentum);
  c.jigsaw_size = a.integer("jigsaw-size", c.jigsaw_size);
  c.jigsaw_tile = a.integer("jigsaw-tile", c.jigsaw_tile);
  c.optimizer = a.str("optimizer", c.optimizer);
  c.lr = a.number("lr", c.lr);
  c.weight_decay = a.number("weight-decay", c.weight_decay);
  c.momentum = a.number("momentum", c.momentum);
  c.warmup_fraction = a.number("warmup", c.warmup_fraction);
  c.batch = a.integer("batch", c.batch);
  c.epochs = a.number("epochs", 0);
  c.minutes = a.number("minutes", 0);
  c.steps = a.integer("steps", 0);
  if (c.epochs == 0 && c.minutes == 0 && c.steps == 0) c.epochs = 10;
  c.device = a.str("device", c.device);
  c.seed = static_cast<uint64_t>(a.integer("seed", 0));
  c.threads = static_cast<int>(a.integer("threads", 0));
  c.out = a.str("out", c.out);
  c.log_every = a.integer("log-every", c.log_every);
  c.checkpoint_minutes = a.number("checkpoint-minutes", c.checkpoint_minutes);
  c.checkpoint_every = a.integer("checkpoint-every", c.checkpoint_every);
  c.knn_k = a.integer("knn-k", c.knn_k);
  c.knn_train_limit = a.integer("knn-train-limit", c.knn_train_limit);
  c.knn_every_epoch = !a.flag("no-knn");
  a.finish();
  if (!control.resume.empty() && argv.size() > 2 + (control.stop_after > 0 ? 2 : 0))
    std::printf("note: --resume continues the stored configuration; other training options are ignored\n");
  ssl::TrainSummary s = ssl::train(c, control);
  std::printf("trained %ld steps (%ld in this run) in %.1f s, %.0f images/s, last loss %.4f", long(s.steps),
              long(s.steps_this_run), s.seconds, s.images_per_s, s.last_loss);
  if (s.knn_top1 >= 0) std::printf(", kNN top-1 %.2f%%", 100.0 * s.knn_top1);
  std::printf("\ncheckpoint: %s\n", s.checkpoint.c_str());
  return 0;
}

}  // namespace selfsup::app
