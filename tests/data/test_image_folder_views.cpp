// Image folders as users have them: generated folders of mixed sizes, channel counts and formats (PNG, JPEG,
// BMP written by stb_image_write) through the loader and the view pipeline. References: torchvision's
// RandomResizedCrop.get_params re-implemented here in float64 over the same random draws; the evaluation's
// Resize + CenterCrop geometry from Python's formulas (table below) and its pixels from a float64 bilinear
// resize. Also: a bad file skipped or refused under strict inside the loader, and the memory bound.
#include <stb/stb_image_write.h>

#include <array>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>

#include "engine/data/augment.h"
#include "engine/data/image_folder.h"
#include "engine/data/loader.h"
#include "kernels/augment_params.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;
namespace kn = selfsup::kernels;

namespace {

// (h, w, c) pixels with enough structure that a wrong crop offset shows: (y * 16 + x * 3 + 40 * ch + salt) % 256.
std::vector<uint8_t> pattern(int h, int w, int c, int salt) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch)
        px[(static_cast<size_t>(y) * w + x) * c + ch] = static_cast<uint8_t>((y * 16 + x * 3 + 40 * ch + salt) % 256);
  return px;
}

void write_image(const std::string& path, int h, int w, int c, int salt) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const auto px = pattern(h, w, c, salt);
  const std::string ext = std::filesystem::path(path).extension().string();
  const int ok = ext == ".png"   ? stbi_write_png(path.c_str(), w, h, c, px.data(), w * c)
                 : ext == ".bmp" ? stbi_write_bmp(path.c_str(), w, h, c, px.data())
                                 : stbi_write_jpg(path.c_str(), w, h, c, px.data(), 90);
  REQUIRE_MESSAGE(ok != 0, "cannot write " << path);
}

// cat: 17x45 grey PNG, 120x80 RGB JPEG, 20x33 RGB BMP; dog: 64x48 RGBA PNG, 300x7 RGB PNG, 9x9 grey JPEG,
// 1000x3 grey+alpha PNG (sizes as width x height).
void make_mixed_folder(const TempDir& dir) {
  write_image(dir / "cat/a.png", 45, 17, 1, 0);
  write_image(dir / "cat/b.jpg", 80, 120, 3, 1);
  write_image(dir / "cat/c.bmp", 33, 20, 3, 2);
  write_image(dir / "dog/d.png", 48, 64, 4, 3);
  write_image(dir / "dog/e.png", 7, 300, 3, 4);
  write_image(dir / "dog/f.jpg", 9, 9, 1, 5);
  write_image(dir / "dog/g.png", 3, 1000, 2, 6);
}

struct Box {
  int32_t y, x, h, w;
  bool operator==(const Box&) const = default;
};

// torchvision.transforms.RandomResizedCrop.get_params(img, scale, ratio), in float64 where it computes in
// Python floats, with its random numbers taken from the engine's stream: attempt k's area fraction and log
// aspect ratio are float32 draws (torch.empty(1).uniform_ on float32 tensors, then .item()), torch.log and
// torch.exp run on float32 tensors, and torch.randint(0, n) is the multiply-shift of the attempt's row and
// column words. ratio is the Python tuple (3/4, 4/3) of doubles.
Box reference_get_params(int H, int W, const AugmentRecipe& r, uint64_t seed, uint64_t step, uint64_t sample,
                         uint32_t view, bool* fell_back = nullptr) {
  if (fell_back) *fell_back = false;
  const double area = static_cast<double>(H) * W;
  const float log_lo = std::log(r.ratio_lo), log_hi = std::log(r.ratio_hi);
  for (int k = 0; k < 10; ++k) {
    const kn::Philox4 b = kn::aug_block(seed, kn::kPurposeAugment, step, sample, view, static_cast<uint32_t>(k));
    const double target_area = area * static_cast<double>(kn::aug_uniform(b.v[0], r.scale_lo, r.scale_hi));
    const double aspect_ratio = static_cast<double>(std::exp(kn::aug_uniform(b.v[1], log_lo, log_hi)));
    // int(round(math.sqrt(...))): Python's round is half to even
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area * aspect_ratio)));
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area / aspect_ratio)));
    if (0 < w && w <= W && 0 < h && h <= H) {
      const int i = static_cast<int>(kn::aug_uint_below(b.v[2], static_cast<uint32_t>(H - h + 1)));
      const int j = static_cast<int>(kn::aug_uint_below(b.v[3], static_cast<uint32_t>(W - w + 1)));
      return {i, j, h, w};
    }
  }
  if (fell_back) *fell_back = true;
  const double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // Fallback to central crop
  const double in_ratio = static_cast<double>(W) / H;
  int w = W, h = H;
  if (in_ratio < ratio_min) {
    h = static_cast<int>(std::nearbyint(w / ratio_min));
  } else if (in_ratio > ratio_max) {
    w = static_cast<int>(std::nearbyint(h * ratio_max));
  }
  return {(H - h) / 2, (W - w) / 2, h, w};
}

Box crop_of(const AugmentParams& p) { return {p.crop_y, p.crop_x, p.crop_h, p.crop_w}; }

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().raw_data(), b.contiguous().raw_data(), static_cast<size_t>(a.numel()) * dtype_size(a.dtype())) == 0;
}

// The peak resident memory of this process (VmHWM) in bytes, and its reset (Linux >= 4.0: clear_refs "5").
int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  FAIL("no VmHWM in /proc/self/status");
  return 0;
}
void reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.close();
  REQUIRE_MESSAGE(out.good(), "cannot reset the peak RSS through /proc/self/clear_refs (Linux >= 4.0)");
}

}  // namespace

TEST_CASE("RandomResizedCrop parameters of any source size equal torchvision's get_params (float64 reference)") {
  const std::vector<std::pair<int, int>> sizes = {{17, 45}, {45, 17}, {375, 500}, {500, 375}, {1, 1},  {3, 1000},
                                                  {1000, 3}, {224, 224}, {1080, 1920}, {7, 9},   {8192, 8192}};
  int64_t fallbacks = 0, checked = 0;
  for (const char* name : {"simclr", "mocov2"}) {
    const AugmentRecipe r = make_recipe(name, 32, 3);
    for (const auto& [H, W] : sizes)
      for (uint64_t sample = 0; sample < 150; ++sample)
        for (uint32_t view = 0; view < 2; ++view) {
          const AugmentParams p = kn::sample_augment_params(r, H, W, 7, 3, sample, view);
          bool fell_back = false;
          const Box want = reference_get_params(H, W, r, 7, 3, sample, view, &fell_back);
          REQUIRE_MESSAGE(crop_of(p) == want, name << " " << H << "x" << W << " sample " << sample << " view " << view
                                                   << ": got (" << p.crop_y << ", " << p.crop_x << ", " << p.crop_h
                                                   << ", " << p.crop_w << "), torchvision (" << want.y << ", "
                                                   << want.x << ", " << want.h << ", " << want.w << ")");
          fallbacks += fell_back;
          ++checked;
        }
  }
  CHECK(checked == 2 * 11 * 150 * 2);
  CHECK(fallbacks > 0);  // the extreme aspect ratios reach the central-crop fallback
}

TEST_CASE("image folder of mixed sizes and channels through the loader: each view crops its original image") {
  TempDir dir("mixed_views");
  make_mixed_folder(dir);
  const ImageDataset ds = open_image_folder(dir.path.string());
  REQUIRE(ds.size() == 7);
  const AugmentRecipe recipe = make_recipe("simclr", 16, 3);
  const uint64_t seed = 11;
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.seed = seed;
  lo.num_workers = 2;
  DataLoader loader(ds, lo, make_augment_transform(recipe, seed, 2));
  LoaderOptions lo0 = lo;
  lo0.num_workers = 0;
  DataLoader sync(ds, lo0, make_augment_transform(recipe, seed, 2));
  for (int b = 0; b < 4; ++b) {  // two epochs of 2 batches (drop_last)
    const Batch batch = loader.next();
    const Batch same = sync.next();
    REQUIRE(batch.views.size() == 2);
    CHECK(!batch.images.defined());
    REQUIRE(batch.sources.size() == 3);
    for (int v = 0; v < 2; ++v) {
      REQUIRE(batch.views[v].sizes() == Shape{3, 3, 16, 16});
      CHECK(same_bits(batch.views[v], same.views[v]));  // worker count does not matter
    }
    for (int64_t k = 0; k < 3; ++k) {
      const int64_t id = batch.indices.data_ptr<int64_t>()[k];
      const Tensor img = ds.source->load(id);  // (h, w, 3) whatever the file held
      CHECK(same_bits(batch.sources[k], img));
      const int H = static_cast<int>(img.size(0)), W = static_cast<int>(img.size(1));
      const AugmentParams p = kn::sample_augment_params(recipe, H, W, seed, batch.step, id, 1);
      CHECK(crop_of(p) == reference_get_params(H, W, recipe, seed, batch.step, id, 1));
      // The view is the pipeline applied to that image alone, at its own size.
      const Tensor alone = apply_augment(img.reshape({1, H, W, 3}), recipe, {p});
      CHECK(same_bits(batch.views[1].narrow(0, k, 1), alone));
    }
  }
}

TEST_CASE("augment_views_each on images of one size is augment_views, bit for bit (the CIFAR path unchanged)") {
  const int N = 5, H = 32, W = 32;
  std::vector<uint8_t> px;
  std::vector<Tensor> each;
  for (int i = 0; i < N; ++i) {
    const auto p = pattern(H, W, 3, 17 * i);
    px.insert(px.end(), p.begin(), p.end());
    each.push_back(Tensor::from_blob(p.data(), {H, W, 3}, DType::u8));
  }
  const Tensor batch = Tensor::from_blob(px.data(), {N, H, W, 3}, DType::u8);
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{4, 9, 0, 123, 7}, {N});
  for (const char* name : {"simclr", "mocov1", "mocov2"}) {
    const AugmentRecipe r = make_recipe(name, 24, 3);
    const auto a = augment_views(batch, ids, r, 5, 9, 2, 2);
    const auto b = augment_views_each(each, ids, r, 5, 9, 2, 2);
    for (int v = 0; v < 2; ++v) CHECK_MESSAGE(same_bits(a[v], b[v]), name << " view " << v);
  }
  CHECK_THROWS_WITH_AS(augment_views_each({each[0], Tensor::zeros({4, 4, 1}, DType::u8)}, ids.narrow(0, 0, 2),
                                          make_recipe("simclr", 8, 3), 0, 0, 1),
                       doctest::Contains("image 1 has 1 channels"), Error);
}

TEST_CASE("evaluation crop: torchvision's Resize(floor(S / 0.875)) + CenterCrop(S), geometry and pixels") {
  // Expected values from torchvision's formulas in Python (round() is half to even):
  //   R = math.floor(S / 0.875); short, long = (w, h) if w <= h else (h, w); new_long = int(R * long / short)
  //   top = int(round((new_h - S) / 2.0)); left = int(round((new_w - S) / 2.0))
  struct Row {
    int h, w, size;
    EvalCrop want;
  };
  const std::vector<Row> rows = {
      {375, 500, 224, {256, 341, 16, 58}}, {500, 375, 224, {341, 256, 58, 16}}, {45, 17, 32, {95, 36, 32, 2}},
      {17, 45, 32, {36, 95, 2, 32}},       {32, 32, 32, {36, 36, 2, 2}},        {7, 300, 16, {18, 771, 1, 378}},
      {1080, 1920, 96, {109, 193, 6, 48}}, {9, 9, 28, {32, 32, 2, 2}},          {256, 256, 224, {256, 256, 16, 16}},
      {33, 20, 16, {29, 18, 6, 1}}};
  for (const Row& r : rows) {
    const EvalCrop g = eval_crop_geometry(r.h, r.w, r.size);
    CHECK_MESSAGE((g.resized_h == r.want.resized_h && g.resized_w == r.want.resized_w && g.top == r.want.top &&
                   g.left == r.want.left),
                  r.h << "x" << r.w << " to " << r.size << ": got (" << g.resized_h << ", " << g.resized_w << ", "
                      << g.top << ", " << g.left << ")");
  }
  // Pixels: a float64 bilinear resize (align_corners=False, no antialiasing; torch's source index
  // (dst + 0.5) * in / out - 0.5 clamped at 0), rounded half to even to uint8 as torchvision does, then the crop.
  // Our resize computes in float32 and rounds half up: at most 1 apart (ties and float32 rounding).
  for (const auto& [h, w, c] : std::vector<std::array<int, 3>>{{45, 17, 1}, {33, 20, 3}, {80, 120, 3}, {9, 9, 3}}) {
    const int S = 16;
    const auto px = pattern(h, w, c, 9);
    const Tensor out = eval_crop_u8(Tensor::from_blob(px.data(), {h, w, c}, DType::u8), S);
    REQUIRE(out.sizes() == Shape{S, S, c});
    const EvalCrop g = eval_crop_geometry(h, w, S);
    std::vector<double> want;
    for (int y = g.top; y < g.top + S; ++y)
      for (int x = g.left; x < g.left + S; ++x)
        for (int ch = 0; ch < c; ++ch) {
          const double sy = std::max(0.0, (y + 0.5) * h / g.resized_h - 0.5);
          const double sx = std::max(0.0, (x + 0.5) * w / g.resized_w - 0.5);
          const int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx);
          const int y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
          const double ly = sy - y0, lx = sx - x0;
          auto at = [&](int yy, int xx) { return static_cast<double>(px[(static_cast<size_t>(yy) * w + xx) * c + ch]); };
          const double v = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
          want.push_back(std::nearbyint(v));
        }
    std::vector<double> got(out.data_ptr<uint8_t>(), out.data_ptr<uint8_t>() + out.numel());
    check_max_abs(got, want, 1.0, "eval crop " + std::to_string(h) + "x" + std::to_string(w));
  }
  // eval_views_each: the crop, normalised by the recipe (the eval recipe's crop of a square copies it).
  const auto px = pattern(45, 17, 3, 1);
  const Tensor img = Tensor::from_blob(px.data(), {45, 17, 3}, DType::u8);
  const AugmentRecipe eval = make_recipe("eval", 16, 3);
  const Tensor v = eval_views_each({img}, eval);
  REQUIRE(v.sizes() == Shape{1, 3, 16, 16});
  const Tensor crop = eval_crop_u8(img, 16);
  for (int ch = 0; ch < 3; ++ch)
    for (int i = 0; i < 256; ++i) {
      const float want = (crop.data_ptr<uint8_t>()[i * 3 + ch] / 255.0f - eval.mean[ch]) / eval.std[ch];
      REQUIRE(std::fabs(v.data_ptr<float>()[ch * 256 + i] - want) <= 1e-5f);
    }
}

TEST_CASE("image folder in the loader: an undecodable file is skipped with a warning, or an error under strict") {
  TempDir dir("loader_bad");
  for (int i = 0; i < 5; ++i) write_image(dir / ("c/" + std::to_string(i) + ".png"), 10 + i, 12, 3, i);
  {
    // 2.png cut in half: its header reads, its pixels do not decode
    std::ifstream in(dir / "c/2.png", std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes.resize(bytes.size() / 2);
    write_bytes(dir / "c/2.png", bytes);
  }
  LoaderOptions lo;
  lo.batch_size = 5;
  lo.shuffle = false;
  lo.num_workers = 1;
  ImageFolderOptions strict;
  strict.strict = true;
  DataLoader refusing(open_image_folder(dir.path.string(), strict), lo, make_augment_transform(make_recipe("simclr", 8, 3), 0, 1));
  CHECK_THROWS_WITH_AS(refusing.next(), doctest::Contains("2.png"), Error);
  const ImageDataset ds = open_image_folder(dir.path.string());
  DataLoader skipping(ds, lo, make_augment_transform(make_recipe("simclr", 8, 3), 0, 1));
  const Batch b = skipping.next();
  REQUIRE(b.sources.size() == 5);  // the batch keeps its size
  CHECK(b.views[0].size(0) == 5);
  CHECK(b.sources[2].sizes() == Shape{13, 12, 3});  // image 2's place: 3.png, the next readable image
  CHECK(same_bits(b.sources[2], b.sources[3]));
}

// AddressSanitizer keeps freed memory in a quarantine (256 MB by default) before reusing it, and adds shadow
// memory and redzones, so under `make test-sanitize` the peak also holds up to about 400 MB that is not
// live (measured 367 MB at most): the bound grows by that, and the folder grows so that holding it decoded
// would still be far past the bound.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)  // clang
#define SELFSUP_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(SELFSUP_TEST_ASAN)  // gcc, clang
constexpr int64_t kFreedMemoryHeld = 400'000'000;
#else
constexpr int64_t kFreedMemoryHeld = 0;
#endif

TEST_CASE("image folder: memory stays bounded by the batches in flight, not the folder") {
  // 400 JPEGs of 512 x 512 RGB (2400 under ASan): 315 MB decoded, about 2 MB as files. Opening the folder and
  // a whole epoch of the loader (2 workers, batch 10, 16 x 16 views) must not hold them: the peak grows by
  // well under the decoded size (the bound allows the batches in flight, 3 x 10 x 0.8 MB, with room for the
  // allocator).
  TempDir dir("memory_bound");
  const int n = kFreedMemoryHeld > 0 ? 2400 : 400, side = 512;
  {
    std::vector<uint8_t> px(static_cast<size_t>(side) * side * 3);
    for (int i = 0; i < n; ++i) {
      std::fill(px.begin(), px.end(), static_cast<uint8_t>(i % 256));
      const std::filesystem::path folder = dir.path / std::string(1, static_cast<char>('a' + i % 4));  // 4 classes
      const std::string path = (folder / (std::to_string(i) + ".jpg")).string();
      std::filesystem::create_directories(folder);
      REQUIRE(stbi_write_jpg(path.c_str(), side, side, 3, px.data(), 80) != 0);
    }
  }
  const int64_t decoded_bytes = int64_t{n} * side * side * 3;
  reset_peak_rss();
  const int64_t before = peak_rss_bytes();
  {
    const ImageDataset ds = open_image_folder(dir.path.string());
    REQUIRE(ds.size() == n);
    LoaderOptions lo;
    lo.batch_size = 10;
    lo.num_workers = 2;
    DataLoader loader(ds, lo, make_augment_transform(make_recipe("simclr", 16, 3), 0, 2));
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
      const Batch batch = loader.next();
      REQUIRE(batch.views[0].sizes() == Shape{10, 3, 16, 16});
    }
  }
  const int64_t grown = peak_rss_bytes() - before;
  INFO("peak RSS grew by " << grown / 1e6 << " MB; the folder decoded is " << decoded_bytes / 1e6 << " MB");
  CHECK(grown < 96'000'000 + kFreedMemoryHeld);
  CHECK(grown < decoded_bytes / 3);
}
