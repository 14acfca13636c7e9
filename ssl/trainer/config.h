// The configuration of a training run: every choice `selfsup train` makes, with presets per data set.
// It is printed at the start, written to DIR/config.json, and stored in every checkpoint, so a resumed run
// continues with exactly the configuration it was started with.
#pragma once
#include <cstdint>
#include <string>

namespace selfsup::ssl {

struct TrainConfig {
  std::string method = "simclr";
  std::string data = "fashion-mnist";
  int64_t limit = 0;  // use only the first N training images (0 = all)
  // encoder and head
  std::string arch = "resnet18";
  int64_t width = 16;
  std::string stem = "cifar";
  int64_t in_channels = 1;
  int64_t image_size = 28;
  int64_t proj_hidden = 512;
  int64_t proj_dim = 128;
  // augmentation
  std::string recipe = "gray";
  double crop_min = 0.2;  // RandomResizedCrop's lower area bound
  // Context Encoder: the mask and the adversarial weight (lambda_rec = 1 - adv_weight)
  std::string mask = "blocks";
  double adv_weight = 0.001;
  // loss and optimisation
  double temperature = 0.2;
  // MoCo v1/v2 (ssl/methods/moco.h)
  int64_t queue_size = 65536;    // K, negatives in the key queue (capped by the training set's size)
  double key_momentum = 0.999;   // m of the key encoder's EMA
  int64_t shuffle_bn_shards = 0;  // S, shards of the key batch for shuffling BN (0 = 8 when the batch allows)
  // pretext tasks (ssl/methods/rotnet.h, jigsaw.h)
  int64_t permutations = 100;  // jigsaw: P, the first P rows of kernels/jigsaw_perms.h
  std::string optimizer = "sgd";  // sgd | lars | adamw
  double lr = 0.3;
  double weight_decay = 5e-4;
  double momentum = 0.9;
  double warmup_fraction = 0.05;  // of the total steps
  std::string lr_schedule = "cosine";  // cosine | step (x0.1 at 60% and 80% of the steps: MoCo v1's 120, 160 of 200)
  int64_t batch = 256;
  // PIRL (ssl/methods/pirl.h)
  int64_t bank_negatives = 32000;  // memory-bank rows drawn as negatives per step (capped: dataset_size - batch)
  double pirl_lambda = 0.5;        // weight of the Jigsaw branch's loss
  double bank_momentum = 0.5;      // m_i <- normalise(bank_momentum m_i + (1 - bank_momentum) f_i)
  int64_t jigsaw_size = 0;         // the Jigsaw view is resized to this size before it is cut (0 = as is)
  int64_t jigsaw_tile = 0;         // tile side in each 3x3 cell (0 = the method's own: pirl the cell's side - 1,
                                   // jigsaw floor(cell * 64 / 75), the paper's ratio)
  // length: exactly one of epochs / minutes / steps decides total_steps (minutes: after timing a few steps)
  double epochs = 0;
  double minutes = 0;
  int64_t steps = 0;
  int64_t total_steps = 0;  // resolved at the start of training and kept for resume
  int64_t dataset_size = 0;  // training images used (after --limit): resolved at the start, sizes a memory bank
  // run
  std::string device = "auto";
  std::string precision = "fp32";  // fp32 | bf16 (autocast: engine/autograd/autocast.h)
  uint64_t seed = 0;
  int threads = 0;  // 0 = OpenMP default
  std::string out = "runs/simclr";
  int64_t log_every = 10;
  double checkpoint_minutes = 5;
  int64_t checkpoint_every = 0;  // also a checkpoint every N steps (0 = by time only)
  int64_t knn_k = 200;
  int64_t knn_train_limit = 10000;  // training images used as the kNN monitor's memory (0 = all)
  int64_t knn_test_limit = 0;       // test images classified by the monitor (0 = all)
  bool knn_every_epoch = true;
  // Data-parallel runs (mpirun/srun, ssl/trainer/distributed.h): BatchNorm statistics over the global batch.
  bool sync_bn = true;
  bool strict = false;  // folder data: an unreadable image is an error (default: skipped with a warning)

  std::string to_json() const;  // pretty-printed
  static TrainConfig from_json(const std::string& json, const std::string& source);
};

// Data-set defaults: fashion-mnist (1 channel, 28x28, grayscale recipe, CIFAR stem), cifar10/cifar100 (3
// channels, 32x32, SimCLR recipe, CIFAR stem), stl10 (3 channels, 96x96, SimCLR recipe, ImageNet stem).
// Applies to the fields a user did not set on the command line.
void apply_data_preset(TrainConfig& cfg);
// Method defaults from the papers, applied before the command line's options: moco (He et al. 2019: tau 0.07,
// lr 0.03, weight decay 1e-4, batch 256, mocov1 recipe, no warmup, step decay), mocov2 (Chen et al. 2020: tau
// 0.2, lr 0.03, weight decay 1e-4, batch 256, mocov2 recipe, no warmup, cosine), context-encoder (AdamW lr
// 1e-3, no weight decay, batch 64; the paper's Adam 2e-4 is for far longer runs).
// rotnet (Gidaris et al.: batch 128, lr 0.1), jigsaw (Noroozi & Favaro: batch 256, lr 0.01). Others keep the
// defaults.
void apply_method_preset(TrainConfig& cfg);

}  // namespace selfsup::ssl
