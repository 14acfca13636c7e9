// `selfsup train`: self-supervised training (every method of ssl/methods/registry.h) with the options of
// ssl/trainer/config.h.
#include <cstdio>

#include "engine/core/check.h"
#include "engine/dist/communicator.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/methods/registry.h"
#include "ssl/trainer/trainer.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup train [--method simclr|moco|mocov2|pirl|rotnet|jigsaw|context-encoder] [--data SPEC]\n"
    "                     [--epochs E | --minutes M | --steps N] [options]\n"
    "\n"
    "Trains an encoder without labels and reports a kNN monitor on the test split every epoch.\n"
    "Writes config.json, metrics.jsonl, metrics.png, checkpoints and encoder.safetensors into --out.\n"
    "\n"
    "data:      --data fashion-mnist | cifar10:PATH | cifar100:PATH | stl10:PATH | folder:PATH (default\n"
    "           fashion-mnist; its preset: 1 channel, 28x28, grayscale recipe, CIFAR stem)  --limit N\n"
    "           folder:PATH: images of any size and channel count (decoded to --in-channels, 3) by the loader's\n"
    "           worker, a batch at a time (memory: the batches in flight, not the folder); views cropped from\n"
    "           each original and resized to --image-size.  --strict: an unreadable image is an error\n"
    "           (default: skipped with a warning naming it and the count skipped)\n"
    "encoder:   --arch resnet18|resnet34|resnet50  --width W (layer1 channels, default 16)  --stem cifar|imagenet\n"
    "           --proj-hidden H (512)  --proj-dim D (128)\n"
    "recipe:    --recipe gray|simclr|mocov1|mocov2  --crop-min S (RandomResizedCrop area lower bound, 0.2)\n"
    "training:  --batch B (256)  --optimizer sgd|lars|adamw  --lr (0.3)  --weight-decay (5e-4)  --momentum (0.9)\n"
    "           --temperature T (0.2)  --warmup F (fraction of the steps, 0.05)\n"
    "           --lr-schedule cosine|step (cosine; step: x0.1 at 60% and 80% of the steps)\n"
    "moco:      MoCo v1 (He et al. 2019). Paper defaults, set by --method moco: --temperature 0.07, linear\n"
    "           --proj-dim 128 head, --recipe mocov1, --lr 0.03, --weight-decay 1e-4, --batch 256, --warmup 0,\n"
    "           --lr-schedule step (the paper's x0.1 at epochs 120 and 160 of 200, as fractions of the run)\n"
    "           --queue-size K (65536; capped at the training set's size, with a note)  --key-momentum M\n"
    "           (0.999)  --shuffle-bn-shards S (0 = 8, MoCo's 8 GPUs, or the most up to 8 that divide the\n"
    "           batch with 2+ images each; 1 = off; S must divide --batch): the key batch is permuted, the key\n"
    "           encoder's BN takes its statistics per shard of S, the keys are un-permuted\n"
    "mocov2:    MoCo v2 (Chen et al. 2020): MoCo v1's options, with an MLP head (Linear-ReLU-Linear,\n"
    "           --proj-hidden H; the paper's H is ResNet-50's 2048 features, here 512), --temperature 0.2,\n"
    "           --recipe mocov2 (blur, jitter p 0.8), --lr-schedule cosine\n"
    "           Scaled for a 2-core CPU (models/pretrained/fmnist-cpu-w8-b64-moco*-e20, docs/methods.md): --width 8\n"
    "           instead of ResNet-50, --batch 64, --lr 0.06, --key-momentum 0.99, --queue-size 16384, --crop-min\n"
    "           0.3, 20 epochs instead of 200\n"
    "pirl:      Misra & van der Maaten 2019: memory bank of --proj-dim (128) unit rows, one per training image,\n"
    "           NCE against bank negatives, a Jigsaw branch (preset: --temperature 0.07, the paper's)\n"
    "           --bank-negatives K (the paper's 32000, capped at the training images minus the batch; the\n"
    "           2-core CPU run uses 4096: the loss's cost grows with K)\n"
    "           --pirl-lambda L (weight of the Jigsaw branch's loss, the paper's 0.5)\n"
    "           --bank-momentum M (bank update m <- normalise(M m + (1 - M) f), the paper's 0.5)\n"
    "           --jigsaw-size S (resize the Jigsaw view to S x S before cutting it into 3 x 3 cells; default 0 =\n"
    "           as is: on 28x28 the 8-pixel tiles learned more, and faster, than tiles of a view resized to 48)\n"
    "           --jigsaw-tile T (tile side inside each cell; 0 = the cell's side - 1, as the paper's 64 of 85)\n"
    "           CPU preset (models/pretrained/fmnist-cpu-w8-b64-pirl-e20): --width 8 --batch 64 --lr 0.075\n"
    "           --bank-negatives 4096 --epochs 20\n"
    "rotnet:    each image in its 4 rotations, a 4-way classifier on the pooled features (preset: paper's\n"
    "           batch 128, lr 0.1)\n"
    "jigsaw:    --permutations P (100, the most the table holds)  --jigsaw-tile T (tile side; default\n"
    "           floor(cell * 64 / 75)); 3x3 tiles of the --image-size view, the trunk per tile, MLP of\n"
    "           --proj-hidden units over the 9 features (preset: paper's batch 256, lr 0.01). Fashion-MNIST:\n"
    "           the native 28x28 (cells of 9, tiles of 7) probed better than --image-size 64 (tiles of 17)\n"
    "           (2 CPU cores: the committed pretext runs used batch 64, lr 0.1; docs/methods.md)\n"
    "context-encoder: Pathak et al. 2016 (preset: --optimizer adamw --lr 1e-3 --weight-decay 0 --batch 64;\n"
    "           the paper's Adam 2e-4 is for far longer runs)  --mask blocks|center (blocks: random\n"
    "           quarter-side squares, the default; center: the central half-side square; either hides 1/4 of\n"
    "           the pixels)  --adv A (lambda_adv, 0.001 as the paper; 0 = masked L2 only)\n"
    "length:    --epochs E | --minutes M (sized after timing the first steps) | --steps N (default --epochs 10)\n"
    "run:       --out DIR (runs/simclr)  --resume DIR  --seed S  --threads N  --device auto|cpu|cuda\n"
    "           --precision fp32|bf16 (fp32; bf16: conv/linear/matmul in bfloat16 with float32 accumulation,\n"
    "           BN, losses, optimizer and weights in float32; emulated, with a note, on a CPU without AVX512-BF16)\n"
    "           --log-every N (10)  --checkpoint-minutes M (5)  --checkpoint-every N (steps; 0 = by time only)\n"
    "           --knn-k K (200)  --knn-train-limit N (10000)  --no-knn\n"
    "parallel:  mpirun -np N selfsup train ... (or srun): --batch is the global batch, split over the ranks;\n"
    "           --sync-bn (default) | --no-sync-bn: BatchNorm statistics over the global batch or per rank\n"
    "           --stop-after N (stop after N steps with a checkpoint, as if interrupted)\n";

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
  ssl::apply_method_preset(c);
  c.mask = a.str("mask", c.mask);
  c.adv_weight = a.number("adv", c.adv_weight);
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
  c.temperature = a.number("temperature", c.temperature);
  c.queue_size = a.integer("queue-size", c.queue_size);
  c.key_momentum = a.number("key-momentum", c.key_momentum);
  c.shuffle_bn_shards = a.integer("shuffle-bn-shards", c.shuffle_bn_shards);
  c.bank_negatives = a.integer("bank-negatives", c.bank_negatives);
  c.pirl_lambda = a.number("pirl-lambda", c.pirl_lambda);
  c.bank_momentum = a.number("bank-momentum", c.bank_momentum);
  c.jigsaw_size = a.integer("jigsaw-size", c.jigsaw_size);
  c.jigsaw_tile = a.integer("jigsaw-tile", c.jigsaw_tile);
  c.permutations = a.integer("permutations", c.permutations);
  c.optimizer = a.str("optimizer", c.optimizer);
  c.lr = a.number("lr", c.lr);
  c.weight_decay = a.number("weight-decay", c.weight_decay);
  c.momentum = a.number("momentum", c.momentum);
  c.warmup_fraction = a.number("warmup", c.warmup_fraction);
  c.lr_schedule = a.str("lr-schedule", c.lr_schedule);
  c.batch = a.integer("batch", c.batch);
  c.epochs = a.number("epochs", 0);
  c.minutes = a.number("minutes", 0);
  c.steps = a.integer("steps", 0);
  if (c.epochs == 0 && c.minutes == 0 && c.steps == 0) c.epochs = 10;
  c.device = a.str("device", c.device);
  c.precision = a.str("precision", c.precision);
  c.seed = static_cast<uint64_t>(a.integer("seed", 0));
  c.threads = static_cast<int>(a.integer("threads", 0));
  c.out = a.str("out", c.out);
  c.log_every = a.integer("log-every", c.log_every);
  c.checkpoint_minutes = a.number("checkpoint-minutes", c.checkpoint_minutes);
  c.checkpoint_every = a.integer("checkpoint-every", c.checkpoint_every);
  c.knn_k = a.integer("knn-k", c.knn_k);
  c.knn_train_limit = a.integer("knn-train-limit", c.knn_train_limit);
  c.knn_every_epoch = !a.flag("no-knn");
  const bool sync_bn = a.flag("sync-bn"), no_sync_bn = a.flag("no-sync-bn");
  if (sync_bn && no_sync_bn) throw Error("train: --sync-bn and --no-sync-bn contradict each other");
  c.sync_bn = !no_sync_bn;
  c.strict = a.flag("strict");
  a.finish();
  if (!control.resume.empty() && argv.size() > 2 + (control.stop_after > 0 ? 2 : 0))
    std::printf("note: --resume continues the stored configuration; other training options are ignored\n");
  ssl::TrainSummary s = ssl::train(c, control);
  if (!dist::world().is_root()) return 0;  // rank 0 reports for the job
  std::printf("trained %ld steps (%ld in this run) in %.1f s, %.0f images/s, last loss %.4f", long(s.steps),
              long(s.steps_this_run), s.seconds, s.images_per_s, s.last_loss);
  if (s.knn_top1 >= 0) std::printf(", kNN top-1 %.2f%%", 100.0 * s.knn_top1);
  std::printf("\ncheckpoint: %s\n", s.checkpoint.c_str());
  return 0;
}

}  // namespace selfsup::app
