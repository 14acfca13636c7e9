// Fine-tuning: the whole pre-trained encoder plus a fresh linear head trained on labels with a standard
// supervised recipe, the second protocol of the SSL literature (after the frozen linear probe). The same
// function trains the from-scratch baseline: give it a randomly initialised encoder and the same options,
// and the difference of the two test accuracies is what pre-training bought.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "engine/core/device.h"
#include "engine/data/dataset.h"
#include "models/resnet.h"

namespace selfsup::eval {

// Checkpoints of one fine-tuning run: the encoder, the head, the optimizer and the data position, so a run
// killed at any point continues bit-identically (the views are a pure function of seed, step and sample).
struct FinetuneCheckpoints {
  std::string dir;              // ckpt-<step>.safetensors (the last two kept); empty: no checkpoints
  double every_minutes = 5;     // and one at the end of the run
  int64_t every_steps = 0;      // also every N steps (0: by time only)
  int64_t stop_after = 0;       // stop with a checkpoint after this many steps of this process, as if killed
  bool resume = false;          // continue from dir's latest checkpoint, when there is one
};

struct FinetuneOptions {
  int64_t epochs = 30;
  int64_t batch = 128;
  double lr = 0.05;                // peak learning rate of the head; 1 epoch linear warm-up, then cosine to 0
  double backbone_lr_scale = 1.0;  // the encoder's lr = lr * scale; 0 freezes it (eval mode, no gradients)
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double crop_min = 0.64;          // RandomResizedCrop's lower area bound (plus a horizontal flip)
  uint64_t seed = 0;               // head init, data order and augmentation
  int64_t image_size = 28;         // the encoder's input size
  std::string recipe = "gray";     // the pre-training recipe, whose normalisation is reused
  int64_t eval_every = 0;          // test accuracy every N epochs (0: about 10 times per run) and at the end
  Device device = Device::cpu();
  bool quiet = false;              // no progress line
  FinetuneCheckpoints checkpoints;
  // Called after every training step (steps done, loss) and after every test evaluation (steps done, epoch,
  // test top-1).
  std::function<void(int64_t, double)> on_step;
  std::function<void(int64_t, int64_t, double)> on_eval;
};

struct FinetuneResult {
  bool finished = false;     // false: stopped by checkpoints.stop_after before the last step
  int64_t resumed_at = 0;    // the step this process started from (0: a fresh run)
  double test_top1 = 0;
  double last_loss = 0;
  int64_t steps = 0;
  double seconds = 0;
  double images_per_s = 0;
  nn::NamedTensors weights;  // torchvision names: the encoder's tensors plus fc.weight (classes, D), fc.bias
};

// Trains `encoder` (modified in place) and a new head on `train`, reports top-1 on `test`. Both data sets
// need labels in [0, num_classes) of `train`.
FinetuneResult finetune(models::ResNet& encoder, const ImageDataset& train, const ImageDataset& test,
                        const FinetuneOptions& opt);

}  // namespace selfsup::eval
