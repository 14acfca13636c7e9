#include "ssl/methods/pirl.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd/grad_mode.h"
#include "engine/data/augment.h"
#include "engine/ops/contrastive.h"
#include "engine/ops/ops.h"
#include "kernels/philox.h"
#include "ssl/methods/registry.h"

namespace selfsup::ssl {

namespace {

// Philox stream tag of the negatives (top 8 bits of the stream; the augmentation purposes use 0xA1-0xA5,
// kernels/augment_params.h): stream = tag << 56 | step, block = k / 4, word = k % 4.
constexpr uint64_t kNegativeStream = 0xB1;

}  // namespace

PIRLOptions pirl_options(const TrainConfig& c) {
  PIRLOptions o;
  o.encoder = encoder_options(c);
  o.bank_size = c.dataset_size;
  o.dim = c.proj_dim;
  // The paper's 32000 negatives come from 1.28M images; a smaller data set caps them at the rows that are not
  // the batch's own.
  o.negatives = std::min(c.bank_negatives, c.dataset_size - c.batch);
  o.lambda = c.pirl_lambda;
  o.bank_momentum = c.bank_momentum;
  o.temperature = c.temperature;
  o.jigsaw_size = c.jigsaw_size;
  o.tile = c.jigsaw_tile;
  return o;
}

PIRL::PIRL(const PIRLOptions& opt) : opt_(opt), comm_(&dist::world()) {
  SELFSUP_CHECK(opt.bank_size >= 2, "pirl: the memory bank needs one row per training image, got bank_size ",
                opt.bank_size);
  SELFSUP_CHECK(opt.dim >= 1 && opt.negatives >= 1, "pirl: --proj-dim and --bank-negatives must be >= 1, got ",
                opt.dim, " and ", opt.negatives);
  SELFSUP_CHECK(opt.lambda >= 0 && opt.lambda <= 1, "pirl: --pirl-lambda must be in [0, 1], got ", opt.lambda);
  SELFSUP_CHECK(opt.bank_momentum >= 0 && opt.bank_momentum < 1, "pirl: --bank-momentum must be in [0, 1), got ",
                opt.bank_momentum);
  SELFSUP_CHECK(opt.temperature > 0, "pirl: --temperature must be positive, got ", opt.temperature);
  SELFSUP_CHECK(opt.jigsaw_size == 0 || opt.jigsaw_size >= 3, "pirl: --jigsaw-size must be 0 (no resize) or >= 3, got ",
                opt.jigsaw_size);
  models::ResNetOptions eo = opt.encoder;
  eo.num_classes = 0;
  encoder_ = register_module("encoder", std::make_shared<models::ResNet>(eo));
  const int64_t F = encoder_->feature_dim();
  Generator gen(eo.seed, 0x48454144ull);  // "HEAD": the heads' init stream, apart from the encoder's
  head_f_ = register_module("head_f", std::make_shared<nn::Linear>(F, opt.dim, true, gen));
  head_g_ = register_module("head_g", std::make_shared<nn::Linear>(9 * F, opt.dim, true, gen));
  NoGradGuard ng;
  Generator bank_gen(eo.seed, 0x42414E4Bull);  // "BANK": random unit rows, as the paper initialises it
  register_buffer("bank", &bank_, normalize(Tensor::randn({opt.bank_size, opt.dim}, DType::f32, &bank_gen), 1));
}

JigsawInput PIRL::jigsaw_input(const Tensor& x, const Tensor& indices, int64_t step) const {
  SELFSUP_CHECK(x.dim() == 4 && x.size(2) == x.size(3), "pirl: the Jigsaw view must be square (B, C, s, s), got ",
                shape_str(x.sizes()));
  Tensor v = x.detach().to(Device::cpu()).to(DType::f32).contiguous();
  if (opt_.jigsaw_size > 0 && opt_.jigsaw_size != v.size(2)) v = resize_bilinear(v, opt_.jigsaw_size);
  const int64_t cell = v.size(2) / 3;
  // The paper takes a 64-pixel tile from each 85-pixel cell: a random jitter of position inside the cell,
  // so the tiles' borders do not line up (a shortcut for the trunk).
  const int64_t t = opt_.tile > 0 ? opt_.tile : std::max<int64_t>(1, cell - 1);
  SELFSUP_CHECK(t <= cell, "pirl: --jigsaw-tile ", t, " does not fit the ", cell, "-pixel cells of the ", v.size(2),
                "-pixel Jigsaw view (--jigsaw-size)");
  LabeledBatch j = jigsaw(v, static_cast<int>(t), indices, opt_.encoder.seed, static_cast<uint64_t>(step));
  const int64_t B = v.size(0), C = v.size(1);
  return {j.images.reshape({B * 9, C, t, t}), j.labels};
}

Tensor PIRL::embed_image(const Tensor& x) { return head_f_->forward(encoder_->forward_features(x)); }

Tensor PIRL::embed_jigsaw(const Tensor& tiles) {
  SELFSUP_CHECK(tiles.dim() == 4 && tiles.size(0) % 9 == 0, "pirl: tiles must be (9B, C, t, t), got ",
                shape_str(tiles.sizes()));
  const int64_t B = tiles.size(0) / 9;
  // The running statistics of batch norm are kept for full images: evaluation (kNN, the probe) sees full
  // images, and tile statistics (smaller maps, a different scale) would shift them. The tiles are normalised
  // with their own batch statistics, and the running buffers are put back as they were.
  nn::NamedTensors saved;
  if (encoder_->is_training()) {
    NoGradGuard ng;
    for (const auto& [name, b] : encoder_->named_buffers()) saved.emplace_back(name, b.clone());
  }
  Tensor h = encoder_->forward_features(tiles);  // (9B, F), sample b's tiles in rows 9b .. 9b + 8
  if (!saved.empty()) {
    NoGradGuard ng;
    nn::NamedTensors now = encoder_->named_buffers();
    for (size_t i = 0; i < now.size(); ++i) now[i].second.copy_(saved[i].second);
  }
  return head_g_->forward(h.reshape({B, 9 * h.size(1)}));  // tile features concatenated in tile order
}

StepResult PIRL::training_step(const StepInput& in) {
  SELFSUP_CHECK(in.views.size() == 2, "pirl: expects 2 views per image (the image and its Jigsaw view), got ",
                in.views.size());
  const Tensor& idx = in.indices;
  const int64_t B = in.views[0].size(0);
  SELFSUP_CHECK(idx.dtype() == DType::i64 && idx.dim() == 1 && idx.size(0) == B, "pirl: indices must be int64 (", B,
                "), got ", shape_str(idx.sizes()));
  const Tensor idx_cpu = idx.to(Device::cpu()).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    const int64_t r = idx_cpu.data_ptr<int64_t>()[i];
    SELFSUP_CHECK(r >= 0 && r < opt_.bank_size, "pirl: dataset index ", r, " is outside the memory bank's ",
                  opt_.bank_size, " rows");
  }
  const Device dev = in.views[0].device();
  // The global batch's indices (B), rank r's at [r n, (r + 1) n): the negatives avoid all of them, as in one process.
  const Tensor global_idx = comm_->all_gather(idx_cpu);
  Tensor f = embed_image(in.views[0]);  // (n, D)
  JigsawInput jin = jigsaw_input(in.views[1], idx_cpu, in.step);
  Tensor g = embed_jigsaw(jin.tiles.to(dev).to(in.views[1].dtype()));  // (n, D)
  Tensor neg = draw_negatives(opt_.encoder.seed, in.step, global_idx, opt_.bank_size, opt_.negatives);
  PIRLLoss l = pirl_loss(f, g, bank_, idx_cpu.to(dev), neg.to(dev), opt_.lambda, opt_.temperature);
  {
    NoGradGuard ng;
    pending_f_ = comm_->all_gather(normalize(f.detach().to(DType::f32), 1).contiguous());  // (B, D)
    pending_idx_ = global_idx;
  }
  return {l.loss, opt_.lambda * l.accuracy_g + (1 - opt_.lambda) * l.accuracy_f};
}

void PIRL::after_step() {
  if (!pending_f_.defined()) return;  // no step taken since the last update
  NoGradGuard ng;
  Tensor idx = pending_idx_.to(bank_.device());
  Tensor rows = bank_update_rows(index_select(bank_, 0, idx), pending_f_, opt_.bank_momentum);
  const int64_t* p = pending_idx_.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows.size(0); ++i) bank_.narrow(0, p[i], 1).copy_(rows.narrow(0, i, 1));
  pending_f_ = Tensor();
  pending_idx_ = Tensor();
}

PIRLLoss pirl_loss(const Tensor& f, const Tensor& g, const Tensor& bank, const Tensor& pos_index,
                   const Tensor& neg_index, double lambda, double temperature) {
  SELFSUP_CHECK(f.dim() == 2 && g.sizes() == f.sizes(), "pirl_loss: f ", shape_str(f.sizes()), " and g ",
                shape_str(g.sizes()), " must both be (B, D)");
  ContrastiveResult lg = memory_bank_nce(normalize(g, 1), bank, pos_index, neg_index, temperature);
  ContrastiveResult lf = memory_bank_nce(normalize(f, 1), bank, pos_index, neg_index, temperature);
  return {lg.loss * lambda + lf.loss * (1 - lambda), lf.accuracy, lg.accuracy};
}

Tensor draw_negatives(uint64_t seed, int64_t step, const Tensor& batch_indices, int64_t bank_size, int64_t k) {
  SELFSUP_CHECK(batch_indices.dtype() == DType::i64 && batch_indices.dim() == 1,
                "draw_negatives: batch_indices must be 1-D int64");
  SELFSUP_CHECK(bank_size < (int64_t(1) << 32), "draw_negatives: bank_size ", bank_size, " must be below 2^32");
  std::vector<int64_t> taken;
  const Tensor bi = batch_indices.to(Device::cpu()).contiguous();
  for (int64_t i = 0; i < bi.numel(); ++i) taken.push_back(bi.data_ptr<int64_t>()[i]);
  std::sort(taken.begin(), taken.end());
  taken.erase(std::unique(taken.begin(), taken.end()), taken.end());
  const int64_t free_rows = bank_size - static_cast<int64_t>(taken.size());
  SELFSUP_CHECK(free_rows >= 1 && k >= 1, "draw_negatives: no bank row is left for negatives (", bank_size,
                " rows, ", taken.size(), " in the batch), or k = ", k);
  const uint64_t stream = (kNegativeStream << 56) | (static_cast<uint64_t>(step) & ((uint64_t(1) << 56) - 1));
  std::vector<int64_t> out(static_cast<size_t>(k));
  kernels::Philox4 block{};
  for (int64_t j = 0; j < k; ++j) {
    if (j % 4 == 0) block = kernels::philox_block(seed, stream, static_cast<uint64_t>(j / 4));
    // r-th free row: r plus the number of batch rows at or below the answer (taken is sorted).
    int64_t r = static_cast<int64_t>((static_cast<uint64_t>(block.v[j % 4]) * static_cast<uint64_t>(free_rows)) >> 32);
    for (int64_t t : taken) {
      if (t > r) break;
      ++r;
    }
    out[static_cast<size_t>(j)] = r;
  }
  return Tensor::from_vector(out, {k});
}

Tensor bank_update_rows(const Tensor& bank_rows, const Tensor& f, double momentum) {
  SELFSUP_CHECK(bank_rows.sizes() == f.sizes(), "bank_update_rows: bank rows ", shape_str(bank_rows.sizes()),
                " and features ", shape_str(f.sizes()), " differ");
  NoGradGuard ng;
  return normalize(bank_rows * momentum + f.to(bank_rows.dtype()) * (1 - momentum), 1);
}

Tensor resize_bilinear(const Tensor& x, int64_t size) {
  SELFSUP_CHECK(x.dim() == 4 && x.dtype() == DType::f32 && x.device().is_cpu() && size >= 1,
                "resize_bilinear: expects a float32 CPU (N, C, H, W) tensor and size >= 1, got ", x.str());
  const Tensor in = x.contiguous();
  const int64_t NC = in.size(0) * in.size(1), H = in.size(2), W = in.size(3);
  Tensor out = Tensor::empty({in.size(0), in.size(1), size, size}, DType::f32);
  // Source coordinate of output pixel o: (o + 0.5) * in / out - 0.5, clamped at 0 (PyTorch's rule).
  auto taps = [size](int64_t n_in, std::vector<int64_t>& i0, std::vector<int64_t>& i1, std::vector<float>& w1) {
    const float scale = static_cast<float>(n_in) / static_cast<float>(size);
    for (int64_t o = 0; o < size; ++o) {
      const float s = std::max(0.0f, (static_cast<float>(o) + 0.5f) * scale - 0.5f);
      const int64_t a = std::min<int64_t>(static_cast<int64_t>(s), n_in - 1);
      i0.push_back(a);
      i1.push_back(std::min<int64_t>(a + 1, n_in - 1));
      w1.push_back(s - static_cast<float>(a));
    }
  };
  std::vector<int64_t> y0, y1, x0, x1;
  std::vector<float> wy, wx;
  taps(H, y0, y1, wy);
  taps(W, x0, x1, wx);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t p = 0; p < NC; ++p) {
    const float* s = src + p * H * W;
    float* d = dst + p * size * size;
    for (int64_t i = 0; i < size; ++i) {
      const float* r0 = s + y0[i] * W;
      const float* r1 = s + y1[i] * W;
      for (int64_t j = 0; j < size; ++j) {
        const float top = r0[x0[j]] + wx[j] * (r0[x1[j]] - r0[x0[j]]);
        const float bot = r1[x0[j]] + wx[j] * (r1[x1[j]] - r1[x0[j]]);
        d[i * size + j] = top + wy[i] * (bot - top);
      }
    }
  }
  return out;
}

}  // namespace selfsup::ssl
