#include "ssl/methods/jigsaw.h"

#include "engine/ops/ops.h"
#include "kernels/jigsaw_perms.h"
#include "models/heads.h"
#include "ssl/methods/pretext_util.h"

namespace selfsup::ssl {

int64_t jigsaw_tile_size(int64_t image_size, int64_t tile) {
  const int64_t cell = image_size / 3;
  SELFSUP_CHECK(cell >= 2, "jigsaw: --image-size ", image_size, " gives 3x3 cells of ", cell,
                " pixels; the tiles need cells of at least 2 (image size >= 6)");
  const int64_t t = tile > 0 ? tile : std::max<int64_t>(1, cell * 64 / 75);
  SELFSUP_CHECK(t <= cell, "jigsaw: --tile ", t, " does not fit the ", cell, "-pixel cells of a ", image_size,
                "x", image_size, " image (expected 1..", cell, ")");
  return t;
}

Tensor normalize_tiles(const Tensor& tiles) {
  const int64_t N = tiles.size(0), C = tiles.size(1), t = tiles.size(2);
  const Tensor flat = tiles.reshape({N, C, t * t});
  const Tensor m = mean(flat, {2}, true);
  const Tensor v = var(flat, {2}, 0, true);
  return ((flat - m) * rsqrt(v + 1e-5)).reshape({N, C, t, t});
}

Jigsaw::Jigsaw(const JigsawOptions& opt) : opt_(opt), tile_(jigsaw_tile_size(opt.image_size, opt.tile)) {
  SELFSUP_CHECK(opt.permutations >= 2 && opt.permutations <= kernels::kJigsawPermCount, "jigsaw: --permutations ",
                opt.permutations, " is outside [2, ", kernels::kJigsawPermCount,
                "] (the table of scripts/gen_jigsaw_perms.py)");
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  Generator gen(eo.seed, 0x4a494753ull);  // "JIGS": the head's init stream, apart from the encoder's
  head_ = register_module("head", models::simclr_projection_head(9 * encoder_->feature_dim(), opt.hidden,
                                                                 opt.permutations, gen));
}

LabeledBatch Jigsaw::puzzle(const Tensor& x, const Tensor& indices, int64_t step) const {
  SELFSUP_CHECK(x.dim() == 4 && x.size(2) == opt_.image_size && x.size(3) == opt_.image_size, "jigsaw: views are ",
                shape_str(x.sizes()), ", the method was built for (B, C, ", opt_.image_size, ", ", opt_.image_size, ")");
  const int64_t B = x.size(0), C = x.size(1);
  // Tiles are cut on the CPU (jigsaw() is a CPU transform): (B, 9, C, t, t) in shuffled order, labels (B).
  const LabeledBatch jb = jigsaw(x.to(Device::cpu()), static_cast<int>(tile_), indices, opt_.seed,
                                 static_cast<uint64_t>(step), static_cast<int>(opt_.permutations));
  return {normalize_tiles(jb.images.reshape({B * 9, C, tile_, tile_})), jb.labels};
}

StepResult Jigsaw::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 1, "jigsaw: expects 1 view per image, got ", in.views.size());
  const Tensor& x = in.views[0];  // (B, C, S, S)
  const int64_t B = x.size(0);
  const LabeledBatch jb = puzzle(x, in.indices, in.step);
  const Tensor tiles = jb.images.to(x.device());                                // (9B, C, t, t)
  const Tensor f = encoder_->forward_features(tiles);                           // (9B, F), tile-major per image
  const Tensor logits = head_->forward(f.reshape({B, 9 * encoder_->feature_dim()}));  // (B, P)
  const Tensor labels = jb.labels.to(x.device());
  return {cross_entropy(logits, labels), top1_accuracy(logits, labels)};
}

}  // namespace selfsup::ssl
