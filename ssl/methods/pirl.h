// PIRL (Misra & van der Maaten, 2019): Pretext-Invariant Representation Learning. The representation of
// an image should not change when the image is cut into a shuffled 3x3 jigsaw. Two branches share one
// trunk (the ResNet encoder):
//   f(v_I) = normalise(W_f trunk(v_I))                       view 0, the whole image         (B, 128)
//   g(v_J) = normalise(W_g [trunk(t_0); ...; trunk(t_8)])     view 1 cut into 9 shuffled tiles (B, 128)
// and both are scored against a memory bank m (one unit row per training image) with NCE whose negatives
// are rows drawn from the bank:
//   loss = lambda L(m_I, g(v_J)) + (1 - lambda) L(m_I, f(v_I))
// After the optimizer step the bank rows of the batch move towards f: m_i <- normalise(0.5 m_i + 0.5 f(v_i)).
// L is the InfoNCE form of the paper's NCE (memory_bank_nce: softmax over the positive and the negatives at
// temperature tau; docs/infonce.md). The bank is a registered buffer, so it is checkpointed with the model
// (model.bank) and moves to the device with it; the negatives are a pure function of (seed, step), so a
// resumed run draws the same ones.
//
// Data parallel (N ranks, n = B / N images each; docs/distributed.md, "Methods with state"): one global bank.
// Every rank gathers the global batch's dataset indices (the negatives exclude the whole batch and are drawn
// from (seed, step) alone, so every rank draws one process's negatives) and, for after_step, their new f
// rows, so every rank writes the same B rows in the same order and the bank stays the one-process bank.
#pragma once
#include <memory>

#include "engine/dist/communicator.h"
#include "ssl/methods/method.h"
#include "ssl/trainer/config.h"

namespace selfsup::ssl {

struct PIRLOptions {
  models::ResNetOptions encoder;  // num_classes is forced to 0 (the shared trunk)
  int64_t bank_size = 0;          // rows of the memory bank: the number of training images
  int64_t dim = 128;              // D: embedding and bank row width
  int64_t negatives = 32000;      // bank rows drawn as negatives per step (the paper's 32000)
  double lambda = 0.5;            // weight of the Jigsaw branch's loss
  double temperature = 0.07;
  double bank_momentum = 0.5;     // m_i <- normalise(bank_momentum m_i + (1 - bank_momentum) f(v_i))
  int64_t jigsaw_size = 0;        // the Jigsaw view is resized (bilinear) to this size before cutting; 0 = as is
  int64_t tile = 0;               // tile side in pixels inside each (size / 3) cell; 0 = the cell's side - 1
};

// What the Jigsaw branch feeds the trunk: view 1 resized and cut.
struct JigsawInput {
  Tensor tiles;  // float (9B, C, tile, tile): rows 9b .. 9b + 8 are sample b's tiles in their shuffled order
  Tensor perm;   // int64 (B): the row of kernels/jigsaw_perms.h that ordered sample b's tiles
};

class PIRL : public Method {
 public:
  explicit PIRL(const PIRLOptions& opt);
  // The job whose global batch shares the bank (default: this process's, dist::world()).
  void set_communicator(dist::Communicator& comm) { comm_ = &comm; }
  StepResult training_step(const StepInput& in) override;
  void after_step() override;
  models::ResNet& encoder() override { return *encoder_; }
  std::string method_name() const override { return "pirl"; }
  std::string type_name() const override { return "PIRL"; }
  std::string accuracy_name() const override { return "bank acc"; }

  const PIRLOptions& options() const { return opt_; }
  const Tensor& bank() const { return bank_; }  // (bank_size, dim), unit rows
  // The branches, for tests: f (B, C, h, w) -> (B, dim) and tiles (9B, C, t, t) -> (B, dim), both unnormalised.
  Tensor embed_image(const Tensor& x);
  Tensor embed_jigsaw(const Tensor& tiles);
  // Resizes and cuts view x (B, C, h, w) of the samples `indices` at `step` (tiles on the CPU).
  JigsawInput jigsaw_input(const Tensor& x, const Tensor& indices, int64_t step) const;
  // The normalised f(v_I) rows of the global batch (B, dim) that after_step() will write (undefined before a step).
  const Tensor& pending_features() const { return pending_f_; }

 private:
  PIRLOptions opt_;
  dist::Communicator* comm_;
  std::shared_ptr<models::ResNet> encoder_;
  std::shared_ptr<nn::Linear> head_f_, head_g_;
  Tensor bank_;
  Tensor pending_f_, pending_idx_;  // the global batch's (B, dim) and (B): set by training_step, used by after_step
};

// loss = lambda L(m_pos, normalise(g)) + (1 - lambda) L(m_pos, normalise(f)), L = memory_bank_nce against
// bank[pos_index] (positives) and bank[neg_index] (negatives). f, g (B, D); bank (N, D) constant.
struct PIRLLoss {
  Tensor loss;
  double accuracy_f, accuracy_g;
};
PIRLLoss pirl_loss(const Tensor& f, const Tensor& g, const Tensor& bank, const Tensor& pos_index,
                   const Tensor& neg_index, double lambda, double temperature);

// K negative bank rows for a batch: uniform over the rows not in `batch_indices` (so no row's negatives hold
// its own or another sample's positive), with replacement, from the Philox stream of (seed, step). int64 (K).
Tensor draw_negatives(uint64_t seed, int64_t step, const Tensor& batch_indices, int64_t bank_size, int64_t k);

// The bank rows a step writes: normalise(momentum m + (1 - momentum) f) for m = bank[indices], f (B, D).
Tensor bank_update_rows(const Tensor& bank_rows, const Tensor& f, double momentum);

// Bilinear resize of float (N, C, H, W) to (N, C, size, size) with half-pixel centres (PyTorch's
// interpolate(mode="bilinear", align_corners=False) for upscaling). CPU tensors, no autograd.
Tensor resize_bilinear(const Tensor& x, int64_t size);

// PIRL's options from a training configuration (bank size = cfg.dataset_size).
PIRLOptions pirl_options(const TrainConfig& c);

}  // namespace selfsup::ssl
