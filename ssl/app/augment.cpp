// `selfsup augment`: loads a dataset, draws views with a recipe and writes a PNG grid (one row per image:
// the original, then its views) so a user can see what the model sees. Uses the same sampling as training:
// view v of image i at step t comes from (seed, t, i, v).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/data/augment.h"
#include "engine/data/spec.h"
#include "ssl/app/commands.h"
#include "ssl/app/image_grid.h"

namespace selfsup::app {

namespace {

const char* kUsage =
    "usage: selfsup augment --data SPEC [--recipe NAME] [--views N] [--count N] [--preview FILE.png]\n"
    "                       [--seed N] [--step N] [--start N] [--size N] [--split S]\n"
    "                       [--channels 1|3] [--strict]\n\n"
    "Draws views of a few images with an augmentation recipe and writes a PNG grid: each row is an image\n"
    "(resized to the view size) followed by its views. A folder's images may differ in size: each view is\n"
    "cropped from the original image (RandomResizedCrop of its area and aspect ratio), the first column is\n"
    "the evaluation crop (short side resized, centre-cropped).\n\n"
    "  --data SPEC        fashion-mnist | cifar10:PATH | cifar100:PATH | stl10:PATH | folder:PATH\n"
    "                     (PATH: a directory or, for CIFAR, one .bin file; stl10: the stl10_binary dir)\n"
    "  --recipe NAME      simclr | mocov1 | mocov2 | gray | eval (default: simclr, gray for 1 channel)\n"
    "  --views N          views per image (default 4)\n"
    "  --count N          images, one row each (default 8)\n"
    "  --preview FILE     output PNG (default views.png)\n"
    "  --seed N           augmentation seed (default 0); --step N the training step (default 0)\n"
    "  --start N          first image index (default 0)\n"
    "  --size N           view size (default: the images' height; folder: 96)\n"
    "  --split S          train | test (stl10 also unlabeled, train+unlabeled; default train)\n"
    "  --channels C       folder: decode to 1 or 3 channels (default 3)\n"
    "  --strict           folder: an unreadable image is an error (default: skipped with a warning)\n";

int64_t parse_int(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    SELFSUP_CHECK(used == v.size(), "");
    return x;
  } catch (...) {
    throw Error("augment: " + flag + " expects an integer, got '" + v + "'");
  }
}

}  // namespace

int cmd_augment(const std::vector<std::string>& args) {
  std::string spec, recipe_name, preview = "views.png", split = "train";
  int64_t views = 4, count = 8, seed = 0, step = 0, start = 0, size = 0;
  ImageFolderOptions folder;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (a == "--strict") {
      folder.strict = true;
      continue;
    }
    SELFSUP_CHECK(i + 1 < args.size(), "augment: ", a, " needs a value (see selfsup augment --help)");
    const std::string& v = args[++i];
    if (a == "--data") spec = v;
    else if (a == "--recipe") recipe_name = v;
    else if (a == "--preview") preview = v;
    else if (a == "--split") split = v;
    else if (a == "--views") views = parse_int(a, v);
    else if (a == "--count") count = parse_int(a, v);
    else if (a == "--seed") seed = parse_int(a, v);
    else if (a == "--step") step = parse_int(a, v);
    else if (a == "--start") start = parse_int(a, v);
    else if (a == "--size") size = parse_int(a, v);
    else if (a == "--channels") folder.channels = static_cast<int>(parse_int(a, v));
    else throw Error("augment: unknown option '" + a + "' (see selfsup augment --help)");
  }
  SELFSUP_CHECK(!spec.empty(), "augment: --data is required (see selfsup augment --help)");
  SELFSUP_CHECK(views >= 1 && views <= 64, "augment: --views must be in [1, 64], got ", views);
  SELFSUP_CHECK(count >= 1 && count <= 256, "augment: --count must be in [1, 256], got ", count);
  SELFSUP_CHECK(seed >= 0 && step >= 0 && start >= 0, "augment: --seed, --step and --start must be >= 0");

  const ImageDataset ds = data::load_dataset(spec, split, folder);
  const int64_t N = ds.size(), C = ds.channels();
  SELFSUP_CHECK(start < N, "augment: --start ", start, " but the dataset has ", N, " images");
  count = std::min(count, N - start);
  if (size == 0) size = ds.source ? 96 : ds.images.size(1);
  SELFSUP_CHECK(size >= 4 && size <= 1024, "augment: --size must be in [4, 1024], got ", size);
  if (recipe_name.empty()) recipe_name = C == 1 ? "gray" : "simclr";
  const AugmentRecipe recipe = make_recipe(recipe_name, static_cast<int>(size), static_cast<int>(C));

  std::vector<int64_t> id_list(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) id_list[i] = start + i;
  const Tensor ids = Tensor::from_vector(id_list, {count});
  // The original: the eval recipe at the view size, same mean/std (a uniform data set: the whole image, or
  // its central square; a folder: the short side resized and the centre cropped, as evaluation sees it).
  AugmentRecipe eval = make_recipe("eval", static_cast<int>(size), static_cast<int>(C));
  for (int c = 0; c < 3; ++c) eval.mean[c] = recipe.mean[c], eval.std[c] = recipe.std[c];
  std::vector<Tensor> out;
  Tensor originals;
  if (ds.source) {
    std::vector<Tensor> images;
    for (int64_t i = 0; i < count; ++i) images.push_back(ds.source->load(start + i));
    out = augment_views_each(images, ids, recipe, static_cast<uint64_t>(seed), static_cast<uint64_t>(step),
                             static_cast<int>(views));
    originals = eval_views_each(images, eval);
  } else {
    const Tensor images = ds.images.narrow(0, start, count).contiguous();
    out = augment_views(images, ids, recipe, static_cast<uint64_t>(seed), static_cast<uint64_t>(step),
                        static_cast<int>(views));
    originals = augment_views(images, ids, eval, 0, 0, 1)[0];
  }

  ImageGrid grid(static_cast<int>(count), static_cast<int>(views) + 1, static_cast<int>(size), static_cast<int>(C));
  const int64_t per = C * size * size;
  for (int r = 0; r < static_cast<int>(count); ++r) {
    grid.put(r, 0, originals.data_ptr<float>() + r * per, eval.mean, eval.std);
    for (int v = 0; v < views; ++v) grid.put(r, v + 1, out[v].data_ptr<float>() + r * per, recipe.mean, recipe.std);
  }
  grid.write_png(preview);
  std::printf("%s: %lld images x (1 original + %lld %s views) of %s, %dx%d px -> %s\n", ds.name.c_str(),
              static_cast<long long>(count), static_cast<long long>(views), recipe_name.c_str(), ds.name.c_str(), static_cast<int>(size),
              static_cast<int>(size), preview.c_str());
  return 0;
}

}  // namespace selfsup::app
