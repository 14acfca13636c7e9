// The training loop of `selfsup train`: data + augmentation in loader threads, the method's loss,
// backward, the optimizer with warmup + cosine, progress on the terminal, metrics (JSONL + PNG plot), a kNN
// monitor every epoch, atomic checkpoints (every N minutes and at the end, the last two kept), exact resume,
// and a clean stop on a non-finite loss.
//
// DIR (cfg.out) receives: config.json, metrics.jsonl, metrics.png, ckpt-<step>.safetensors (+ `latest`),
// and at the end encoder.safetensors (the encoder alone, torchvision names).
#pragma once
#include <cstdint>
#include <string>

#include "ssl/trainer/config.h"

namespace selfsup::ssl {

struct TrainSummary {
  int64_t steps = 0;          // optimizer steps taken in total (including before a resume)
  int64_t steps_this_run = 0;
  double images_per_s = 0;    // training throughput of this run (images, not views)
  double seconds = 0;
  double last_loss = 0;
  double knn_top1 = -1;       // last kNN monitor value (-1 when none ran)
  std::string checkpoint;     // the last checkpoint written
};

struct TrainControl {
  std::string resume;       // a run directory (or checkpoint file) to continue
  int64_t stop_after = 0;   // stop (with a checkpoint) after this many steps of this run, as if interrupted
  bool quiet = false;       // no progress output (tests)
  std::string expect_method;  // --method given with --resume: the checkpoint must be of this method
};

TrainSummary train(TrainConfig cfg, const TrainControl& control = {});

}  // namespace selfsup::ssl
