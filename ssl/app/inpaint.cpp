// `selfsup inpaint`: what a Context Encoder run learned to paint. Masks test images the way training did,
// runs the trained encoder + decoder (eval mode), and writes a PNG grid, one row per image:
// original | masked (the hole shown mid-grey) | completed (the reconstruction pasted into the hole) | the
// decoder's whole output. Prints the mean squared error over the hidden pixels (in [0, 1] pixel units),
// and that of filling the hole with the data set mean, the baseline a decoder must beat.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/data/spec.h"
#include "engine/io/checkpoint.h"
#include "engine/ops/ops.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/app/image_grid.h"
#include "ssl/eval/features.h"
#include "ssl/methods/context_encoder.h"
#include "ssl/methods/registry.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup inpaint --checkpoint DIR [--data SPEC] [--preview FILE.png] [options]\n"
    "\n"
    "Masks images, fills the holes with a trained Context Encoder (`selfsup train --method context-encoder`)\n"
    "and writes a PNG grid: original | masked | completed | decoder output, one row per image.\n"
    "\n"
    "  --checkpoint DIR   a context-encoder run directory or checkpoint file (the decoder is in the checkpoint,\n"
    "                     not in encoder.safetensors)\n"
    "  --data SPEC        images to inpaint (default: the run's data set)  --split S (test)\n"
    "  --count N (8)  --start I (0): images [I, I + N) of the split\n"
    "  --mask center|blocks (default: the run's)  --seed S (0): which random blocks\n"
    "  --preview FILE     output PNG (default inpaint.png)  --threads N\n";

}  // namespace

int cmd_inpaint(const std::vector<std::string>& argv) {
  Args a(argv, "inpaint");
  if (a.help()) {
    std::printf("%s", kUsage);
    return 0;
  }
  const std::string source = a.str("checkpoint", "");
  SELFSUP_CHECK(!source.empty(), "inpaint: --checkpoint DIR is required (see selfsup inpaint --help)");
  const Checkpoint ck = load_checkpoint(source);
  ssl::TrainConfig cfg = ssl::TrainConfig::from_json(ck.config_json, ck.source);
  SELFSUP_CHECK(cfg.method == "context-encoder", "inpaint: ", ck.source, " is a checkpoint of method '", cfg.method,
                "'; inpainting needs a context-encoder run's decoder");
  const std::string spec = a.str("data", cfg.data), split = a.str("split", "test"), preview = a.str("preview", "inpaint.png");
  const int64_t count = a.integer("count", 8), start = a.integer("start", 0), seed = a.integer("seed", 0);
  cfg.mask = a.str("mask", cfg.mask);
  const int threads = static_cast<int>(a.integer("threads", 0));
  a.finish();
  SELFSUP_CHECK(count >= 1 && count <= 64, "inpaint: --count must be in [1, 64], got ", count);
  SELFSUP_CHECK(start >= 0 && seed >= 0, "inpaint: --start and --seed must be >= 0");
  if (threads > 0) omp_set_num_threads(threads);

  std::shared_ptr<ssl::Method> method = ssl::make_method(cfg);
  method->load_state_dict(nn::NamedTensors(ck.model.begin(), ck.model.end()));
  method->eval();
  auto& ce = dynamic_cast<ssl::ContextEncoder&>(*method);

  const ImageDataset ds = data::load_dataset(spec, split);
  SELFSUP_CHECK(start < ds.size(), "inpaint: --start ", start, " but ", ds.name, " has ", ds.size(), " images");
  const int64_t n = std::min(count, ds.size() - start), s = cfg.image_size, C = cfg.in_channels;
  SELFSUP_CHECK(ds.channels() == C, "inpaint: ", ds.name, " has ", ds.channels(), " channels, the run ", C);
  NoGradGuard ng;
  const Tensor x = eval::eval_views(ds, start, n, s, cfg.recipe);  // (n, C, s, s), normalised
  const Tensor mask = ce.make_mask(n, seed);                       // (n, 1, s, s), 1 = hidden
  const Tensor x_hat = ce.reconstruct(x, mask);
  const Tensor keep = sub(Tensor::ones({1}), mask);
  const AugmentRecipe r = make_recipe(cfg.recipe, static_cast<int>(s), static_cast<int>(C));
  // The hole shown mid-grey: pixel 0.5, normalised per channel.
  std::vector<float> grey(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) grey[c] = (0.5f - r.mean[c]) / r.std[c];
  const Tensor hole = mul(mask, Tensor::from_vector(grey, {1, C, 1, 1}));
  const Tensor masked = add(mul(x, keep), hole).contiguous();
  const Tensor completed = add(mul(x, keep), mul(x_hat, mask)).contiguous();
  const Tensor decoded = x_hat.contiguous();
  const double hidden = sum(mask).item() * static_cast<double>(C);
  const double mse = sum(mul(square(sub(x_hat, x)), mask)).item() / hidden * r.std[0] * r.std[0];
  // The baseline a decoder must beat: the hole filled with the data set mean (0 after normalisation).
  const double mse_mean = sum(mul(square(x), mask)).item() / hidden * r.std[0] * r.std[0];

  ImageGrid grid(static_cast<int>(n), 4, static_cast<int>(s), static_cast<int>(C));
  const int64_t per = C * s * s;
  const Tensor xc = x.contiguous();
  for (int i = 0; i < static_cast<int>(n); ++i) {
    grid.put(i, 0, xc.data_ptr<float>() + i * per, r.mean, r.std);
    grid.put(i, 1, masked.data_ptr<float>() + i * per, r.mean, r.std);
    grid.put(i, 2, completed.data_ptr<float>() + i * per, r.mean, r.std);
    grid.put(i, 3, decoded.data_ptr<float>() + i * per, r.mean, r.std);
  }
  grid.write_png(preview);
  std::printf("%s (%s): %lld images, mask %s, masked-pixel MSE %.4f (filling with the mean: %.4f) -> %s\n",
              ds.name.c_str(), split.c_str(), static_cast<long long>(n), cfg.mask.c_str(), mse, mse_mean,
              preview.c_str());
  return 0;
}

}  // namespace selfsup::app
