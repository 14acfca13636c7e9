// Jigsaw (Noroozi & Favaro, ECCV 2016): the image is cut into a 3x3 grid of cells; from each cell a
// tile x tile crop at a random offset (the random gap between tiles, against matching edges), the nine
// tiles shuffled by one of P permutations chosen for maximal Hamming distance (kernels/jigsaw_perms.h,
// scripts/gen_jigsaw_perms.py), each tile normalised to zero mean and unit variance per channel (against
// matching brightness and contrast). The context-free network: the shared trunk on every tile (one
// (9B, C, tile, tile) batch), the nine pooled features concatenated in tile order, an MLP, and P-way
// cross-entropy on the permutation's index. The permutation and offsets of sample i at step t are a pure
// function of (seed, t, i) (engine/data/augment.h jigsaw()), so a resumed run cuts the same tiles.
#pragma once
#include <memory>

#include "engine/data/augment.h"

#include "ssl/methods/method.h"

namespace selfsup::ssl {

struct JigsawOptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0 (feature extractor)
  int64_t image_size = 28;        // the view the tiles are cut from (image_size x image_size)
  int64_t tile = 0;               // tile side; 0 = floor(cell * 64 / 75), the paper's 64-pixel tile in a 75-pixel cell
  int64_t permutations = 100;     // P: the first P rows of the permutation table
  int64_t hidden = 512;           // the MLP's hidden width
  uint64_t seed = 0;              // the permutation and offset stream
};

// The tile side JigsawOptions{image_size, tile} resolves to.
int64_t jigsaw_tile_size(int64_t image_size, int64_t tile);

class Jigsaw : public Method {
 public:
  explicit Jigsaw(const JigsawOptions& opt);
  StepResult training_step(const StepInput& in) override;
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return "jigsaw"; }
  std::string type_name() const override { return "Jigsaw"; }
  int num_views() const override { return 1; }
  std::string loss_title() const override { return "Jigsaw permutation cross-entropy"; }
  std::string accuracy_name() const override { return "perm acc"; }
  int64_t tile() const { return tile_; }
  // The puzzle of views x (B, C, S, S) of the samples `indices` at `step`: tiles (9B, C, tile, tile),
  // normalised, in shuffled order (rows 9b..9b+8 are image b's positions 0..8), on the CPU; labels int64
  // (B): the permutation's row in kernels/jigsaw_perms.h (position p holds cell kJigsawPerms[label][p]).
  LabeledBatch puzzle(const Tensor& x, const Tensor& indices, int64_t step) const;

 private:
  JigsawOptions opt_;
  int64_t tile_;
  std::shared_ptr<models::ResNet> encoder_;
  std::shared_ptr<nn::Sequential> head_;  // (B, 9 * feature_dim) -> (B, P)
};

// Per-tile normalisation: tiles (N, C, t, t) -> each (tile, channel) to zero mean and unit variance
// (population variance; eps 1e-5 keeps a flat tile, e.g. Fashion-MNIST's black background, at zero).
Tensor normalize_tiles(const Tensor& tiles);

}  // namespace selfsup::ssl
