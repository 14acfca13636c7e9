// `selfsup eval linear|knn` and `selfsup embed`: evaluate a trained encoder on frozen features.
#include <omp.h>

#include <cstdio>

#include "engine/autograd/autocast.h"
#include "engine/data/spec.h"
#include "engine/io/npy.h"
#include "ssl/app/args.h"
#include "ssl/app/commands.h"
#include "ssl/app/encoder_arg.h"
#include "ssl/app/eval_record.h"
#include "ssl/eval/features.h"
#include "ssl/eval/knn.h"
#include "ssl/eval/linear_probe.h"
#include "ssl/eval/semi_supervised.h"
#include "ssl/trainer/encoder_io.h"

namespace selfsup::app {

namespace {

const char* kEvalUsage =
    "usage: selfsup eval linear|knn|finetune (--checkpoint DIR | --weights FILE) [--data SPEC] [options]\n"
    "\n"
    "finetune: the whole encoder trained with a new head, against the same network from scratch\n"
    "        (`selfsup eval finetune --help` lists its options)\n"
    "linear: standardise frozen features (encoder in eval mode), train a linear classifier with\n"
    "        cross-entropy, print train and test top-1.  --epochs (30) --batch (256) --lr (0.1) --wd (1e-4)\n"
    "knn:    cosine kNN with temperature-weighted votes (InstDisc).  --k (200) --temperature (0.07)\n"
    "both:   --data SPEC (default: the data the checkpoint was trained on)  --train-limit N  --test-limit N\n"
    "        --threads N  --features layer4|layer3 (the trunk stage that is pooled; default layer4, the\n"
    "        encoder's output; the pretext-task papers probe intermediate stages, see docs/methods.md)\n"
    "        --weights FILE instead of --checkpoint: torchvision-named weights, described as for `selfsup embed`\n"
    "        --label-fraction F (1): semi-supervised evaluation with only a class-balanced fraction F of the\n"
    "        training labels (0.01 and 0.1 are the literature's 1% / 10%), drawn from the first --train-limit\n"
    "        images by --label-seed (0); its indices go to --out DIR (runs/eval) as label-subset-F-seedS.npy\n"
    "        --record: append the result to the checkpoint DIR's evals.jsonl (what `selfsup compare` reads)\n"
    "        --strict: folder data: an unreadable image is an error (default: skipped with a warning)\n"
    "        --precision fp32|bf16 (fp32): the encoder's features in float32 or mixed bfloat16 (autocast, as\n"
    "        `selfsup train --precision`); the probe and kNN themselves run in float32\n"
    "        folder data: each image resized by its short side to floor(S / 0.875) and centre-cropped to S x S\n"
    "        (S: the encoder's --image-size; torchvision's ImageFolder evaluation), decoded a batch at a time\n";

const char* kEmbedUsage =
    "usage: selfsup embed (--checkpoint DIR | --weights FILE.safetensors) --data SPEC [--split train|test]\n"
    "                     [--limit N] --out FEATURES.npy\n"
    "\n"
    "Writes the encoder's features (eval mode, resize + normalisation only) as a float32 (N, D) NumPy array.\n"
    "--weights takes a torchvision-named ResNet state dict (a run's encoder.safetensors, or its encoder part in a\n"
    "checkpoint ckpt-<step>.safetensors); describe it with --arch resnet18|resnet34|resnet50\n"
    "--width W (64 = torchvision) --stem imagenet|cifar --in-channels 1|3 --image-size S (default 224/32/28 by\n"
    "stem and data) --recipe gray|simclr (its normalisation).  --labels FILE.npy also writes the labels.\n"
    "--features layer4|layer3: the trunk stage that is pooled (default layer4, the encoder's output).\n"

    "--data folder:PATH: images of any size, resized by the short side and centre-cropped; --strict makes an\n"
    "unreadable image an error (default: skipped with a warning naming it).\n";

}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0] == "--help" || argv[0] == "-h") {
    std::printf("%s", kEvalUsage);
    return argv.empty() ? 2 : 0;
  }
  const std::string mode = argv[0];
  if (mode == "finetune") return cmd_finetune(std::vector<std::string>(argv.begin() + 1, argv.end()));
  SELFSUP_CHECK(mode == "linear" || mode == "knn", "eval: unknown protocol '", mode,
                "' (expected linear, knn or finetune)");
  Args a(std::vector<std::string>(argv.begin() + 1, argv.end()), "eval " + mode);
  if (a.help()) {
    std::printf("%s", kEvalUsage);
    return 0;
  }
  const EncoderArg source = read_encoder_arg(a, "eval " + mode);
  const int64_t train_limit = a.integer("train-limit", 0), test_limit = a.integer("test-limit", 0);
  const int64_t threads = a.integer("threads", 0);
  eval::LinearProbeOptions lp;
  lp.epochs = a.integer("epochs", lp.epochs);
  lp.batch = a.integer("batch", lp.batch);
  lp.lr = a.number("lr", lp.lr);
  lp.weight_decay = a.number("wd", lp.weight_decay);
  eval::KnnOptions ko;
  ko.k = a.integer("k", ko.k);
  ko.temperature = a.number("temperature", ko.temperature);
  const double fraction = a.number("label-fraction", 1.0);
  const auto label_seed = static_cast<uint64_t>(a.integer("label-seed", 0));
  const std::string out_dir = a.str("out", "runs/eval");
  const bool record = a.flag("record");
  const eval::FeatureLayer layer = eval::parse_feature_layer(a.str("features", "layer4"), "eval " + mode);
  const bool strict = a.flag("strict");
  const DType precision = parse_precision(a.str("precision", "fp32"), ("eval " + mode + ": --precision").c_str());
  a.finish();
  // A record is the protocol's number: over the whole test split, from the whole (or a label fraction of the)
  // training split, so that `selfsup compare` can set records of different encoders side by side.
  SELFSUP_CHECK(!record || (!source.checkpoint.empty() && train_limit == 0 && test_limit == 0), "eval ", mode,
                ": --record needs --checkpoint DIR (the records go to DIR/evals.jsonl) and whole splits (no "
                "--train-limit or --test-limit)");
  SELFSUP_CHECK(fraction > 0.0 && fraction <= 1.0, "eval ", mode, ": --label-fraction must be in (0, 1], got ",
                fraction);
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
  const ssl::LoadedEncoder le = load_encoder(source);
  const std::string spec = data_spec(source, le), ckpt = source.source();
  const ImageFolderOptions folder{static_cast<int>(le.config.in_channels), strict};
  ImageDataset train = data::load_dataset(spec, "train", folder), test = data::load_dataset(spec, "test", folder);
  SELFSUP_CHECK(train.channels() == le.config.in_channels, "eval: ", spec, " has ", train.channels(),
                " channels but the encoder in ", ckpt, " takes ", le.config.in_channels);
  std::printf("eval %s: %s on %s (%s width %ld)\n", mode.c_str(), ckpt.c_str(), spec.c_str(), le.config.arch.c_str(),
              long(le.config.width));
  if (fraction < 1.0) train = eval::labelled_subset(train, train_limit, fraction, label_seed, out_dir);
  std::printf("%s\n", precision_description(precision, le.encoder->parameters().front().device().is_cuda()).c_str());
  Tensor ftr, fte;
  {
    AutocastGuard autocast(precision);  // the features only: standardisation, probe and kNN stay float32
    ftr = eval::extract_features(*le.encoder, train, le.config.image_size, le.config.recipe,
                                 fraction < 1.0 ? 0 : train_limit, 500, layer);
    fte = eval::extract_features(*le.encoder, test, le.config.image_size, le.config.recipe, test_limit, 500, layer);
  }
  // A record of layer3 features says so; layer4's records read as before.
  const std::string at_layer = layer == eval::FeatureLayer::layer3 ? " features=layer3" : "";
  Tensor ytr = train.labels.narrow(0, 0, ftr.size(0)), yte = test.labels.narrow(0, 0, fte.size(0));
  if (mode == "knn") {
    double acc = eval::knn_accuracy(ftr, ytr, fte, yte, train.num_classes, ko);
    std::printf("kNN (k=%ld, T=%.2f) test top-1: %.2f%%\n", long(ko.k), ko.temperature, 100.0 * acc);
    if (record)
      append_eval_record(ckpt, {"knn", fraction, label_seed, fte.size(0), acc, -1.0,
                                str_cat("k=", ko.k, " T=", ko.temperature, at_layer), ""});
    return 0;
  }
  lp.on_epoch = [&](int64_t e, double loss) {
    if ((e + 1) % 5 == 0 || e + 1 == lp.epochs) std::printf("  probe epoch %ld/%ld: loss %.4f\n", long(e + 1), long(lp.epochs), loss);
    std::fflush(stdout);
  };
  eval::LinearProbeResult r = eval::linear_probe(ftr, ytr, fte, yte, train.num_classes, lp);
  std::printf("linear probe: train top-1 %.2f%%, test top-1 %.2f%%\n", 100.0 * r.train_top1, 100.0 * r.test_top1);
  if (record)
    append_eval_record(ckpt, {"linear", fraction, label_seed, fte.size(0), r.test_top1, -1.0,
                              str_cat("epochs=", lp.epochs, " lr=", lp.lr, " wd=", lp.weight_decay, at_layer), ""});
  return 0;
}

int cmd_embed(const std::vector<std::string>& argv) {
  Args a(argv, "embed");
  if (a.help()) {
    std::printf("%s", kEmbedUsage);
    return 0;
  }
  const EncoderArg source = read_encoder_arg(a, "embed");
  const std::string out = a.str("out", "");
  SELFSUP_CHECK(!out.empty(), "embed: --out FEATURES.npy is required");
  const std::string split = a.str("split", "test"), labels_out = a.str("labels", "");
  const int64_t limit = a.integer("limit", 0);
  const eval::FeatureLayer layer = eval::parse_feature_layer(a.str("features", "layer4"), "embed");
  const bool strict = a.flag("strict");
  a.finish();
  const ssl::LoadedEncoder le = load_encoder(source);
  const std::string spec = data_spec(source, le);
  ImageDataset ds = data::load_dataset(spec, split, {static_cast<int>(le.config.in_channels), strict});
  Tensor f = eval::extract_features(*le.encoder, ds, le.config.image_size, le.config.recipe, limit, 500, layer);
  save_npy(out, f);
  if (!labels_out.empty()) save_npy(labels_out, ds.labels.narrow(0, 0, f.size(0)));
  std::printf("embed: %ld x %ld features of %s/%s -> %s\n", long(f.size(0)), long(f.size(1)), spec.c_str(),
              split.c_str(), out.c_str());
  return 0;
}

}  // namespace selfsup::app
