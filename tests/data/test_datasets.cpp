// Dataset readers on small crafted files, and every bad-input case: missing path, CIFAR size not a multiple
// of the record, bad labels, STL-10 layout, image folders (decode, channels, images of different sizes,
// corrupt/truncated images with and without skipping, empty folder). tests/data/test_image_folder_views.cpp
// has the folder's views, evaluation crops and memory bound.
#include <stb/stb_image_write.h>

#include "engine/data/cifar.h"
#include "engine/data/image_folder.h"
#include "engine/data/stl10.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

// A CIFAR record: label byte(s), then planes R, G, B with value (plane * 50 + pixel) % 256.
std::vector<uint8_t> cifar_record(std::vector<uint8_t> labels, int salt) {
  std::vector<uint8_t> rec = labels;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 1024; ++i) rec.push_back(static_cast<uint8_t>((c * 50 + i + salt) % 256));
  return rec;
}

std::vector<uint8_t> cat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// An (h, w, c) image with pixel value (y * 16 + x * 3 + ch + salt) % 256, written as PNG.
std::vector<uint8_t> pattern(int h, int w, int c, int salt) {
  std::vector<uint8_t> px(static_cast<size_t>(h * w * c));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int ch = 0; ch < c; ++ch) px[(y * w + x) * c + ch] = static_cast<uint8_t>((y * 16 + x * 3 + ch + salt) % 256);
  return px;
}

void write_png(const std::string& path, int h, int w, int c, int salt) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  const auto px = pattern(h, w, c, salt);
  REQUIRE(stbi_write_png(path.c_str(), w, h, c, px.data(), w * c) != 0);
}

}  // namespace

TEST_CASE("CIFAR-10: records to NHWC with labels; directory layout; errors") {
  TempDir dir("cifar10");
  write_bytes(dir / "one.bin", cat(cifar_record({3}, 0), cifar_record({9}, 7)));
  ImageDataset ds = load_cifar(CifarKind::cifar10, dir / "one.bin", true);
  CHECK(ds.images.sizes() == Shape{2, 32, 32, 3});
  CHECK(ds.labels.to_vector() == std::vector<double>{3, 9});
  CHECK(ds.num_classes == 10);
  const uint8_t* p = ds.images.data_ptr<uint8_t>();
  CHECK(p[0] == 0);        // (0, 0) R
  CHECK(p[1] == 50);       // (0, 0) G
  CHECK(p[2] == 100);      // (0, 0) B
  CHECK(p[(33) * 3 + 1] == (50 + 33) % 256);   // (1, 1) G
  CHECK(p[3072 + 2] == 107);                   // second image (0, 0) B
  // the directory form: data_batch_1..5.bin
  for (int b = 1; b <= 5; ++b) write_bytes(dir / ("batches/data_batch_" + std::to_string(b) + ".bin"), cifar_record({uint8_t(b)}, b));
  write_bytes(dir / "batches/test_batch.bin", cifar_record({0}, 0));
  CHECK(load_cifar(CifarKind::cifar10, dir / "batches", true).labels.to_vector() == std::vector<double>{1, 2, 3, 4, 5});
  CHECK(load_cifar(CifarKind::cifar10, dir / "batches", false).images.size(0) == 1);

  CHECK_THROWS_WITH_AS(load_cifar(CifarKind::cifar10, dir / "nope.bin", true), doctest::Contains("does not exist"), Error);
  auto rec = cifar_record({1}, 0);
  rec.pop_back();
  write_bytes(dir / "short.bin", rec);
  CHECK_THROWS_WITH_AS(load_cifar(CifarKind::cifar10, dir / "short.bin", true),
                       doctest::Contains("3072 bytes, not a positive multiple of the 3073-byte record"), Error);
  write_bytes(dir / "empty.bin", {});
  CHECK_THROWS_AS(load_cifar(CifarKind::cifar10, dir / "empty.bin", true), Error);
  write_bytes(dir / "badlabel.bin", cifar_record({10}, 0));
  CHECK_THROWS_WITH_AS(load_cifar(CifarKind::cifar10, dir / "badlabel.bin", true), doctest::Contains("label 10"), Error);
  std::filesystem::remove(dir / "batches/data_batch_3.bin");
  CHECK_THROWS_WITH_AS(load_cifar(CifarKind::cifar10, dir / "batches", true), doctest::Contains("data_batch_3.bin"), Error);
}

TEST_CASE("CIFAR-100: fine or coarse labels, 3074-byte records") {
  TempDir dir("cifar100");
  write_bytes(dir / "train.bin", cat(cifar_record({4, 77}, 0), cifar_record({19, 99}, 1)));
  ImageDataset fine = load_cifar(CifarKind::cifar100, dir.path.string(), true);
  CHECK(fine.labels.to_vector() == std::vector<double>{77, 99});
  CHECK(fine.num_classes == 100);
  CHECK(fine.images.data_ptr<uint8_t>()[3072 + 1] == 51);
  ImageDataset coarse = load_cifar(CifarKind::cifar100, dir / "train.bin", true, true);
  CHECK(coarse.labels.to_vector() == std::vector<double>{4, 19});
  CHECK(coarse.num_classes == 20);
  // a CIFAR-10 file read as CIFAR-100 is caught by the record size
  write_bytes(dir / "c10.bin", cifar_record({1}, 0));
  CHECK_THROWS_WITH_AS(load_cifar(CifarKind::cifar100, dir / "c10.bin", true), doctest::Contains("3074-byte record"), Error);
}

TEST_CASE("STL-10: column-major planes transposed to HWC; splits; errors") {
  TempDir dir("stl10");
  const int S = 96, IB = 3 * S * S;
  std::vector<uint8_t> x(2 * IB);
  // value at (image n, channel c, row r, col k) stored at c*S*S + k*S + r (column-major)
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < S; ++k)
        for (int r = 0; r < S; ++r) x[n * IB + c * S * S + k * S + r] = static_cast<uint8_t>((r * 7 + k * 3 + c * 11 + n) % 256);
  write_bytes(dir / "train_X.bin", x);
  write_bytes(dir / "train_y.bin", {1, 10});
  write_bytes(dir / "unlabeled_X.bin", std::vector<uint8_t>(x.begin(), x.begin() + IB));
  ImageDataset ds = load_stl10(dir.path.string(), "train");
  CHECK(ds.images.sizes() == Shape{2, 96, 96, 3});
  CHECK(ds.labels.to_vector() == std::vector<double>{0, 9});
  const uint8_t* p = ds.images.data_ptr<uint8_t>();
  bool ok = true;
  for (int n = 0; n < 2; ++n)
    for (int r = 0; r < S; ++r)
      for (int k = 0; k < S; ++k)
        for (int c = 0; c < 3; ++c) ok &= p[n * IB + (r * S + k) * 3 + c] == (r * 7 + k * 3 + c * 11 + n) % 256;
  CHECK(ok);
  ImageDataset both = load_stl10(dir.path.string(), "train+unlabeled");
  CHECK(both.labels.to_vector() == std::vector<double>{0, 9, -1});
  CHECK_THROWS_WITH_AS(load_stl10(dir.path.string(), "test"), doctest::Contains("test_X.bin"), Error);
  CHECK_THROWS_WITH_AS(load_stl10(dir.path.string(), "val"), doctest::Contains("unknown split 'val'"), Error);
  CHECK_THROWS_WITH_AS(load_stl10(dir / "missing", "train"), doctest::Contains("does not exist"), Error);
  write_bytes(dir / "train_y.bin", {1});
  CHECK_THROWS_WITH_AS(load_stl10(dir.path.string(), "train"), doctest::Contains("has 1 labels"), Error);
  write_bytes(dir / "train_y.bin", {1, 11});
  CHECK_THROWS_WITH_AS(load_stl10(dir.path.string(), "train"), doctest::Contains("expected 1..10"), Error);
  write_bytes(dir / "train_X.bin", std::vector<uint8_t>(IB + 5));
  CHECK_THROWS_WITH_AS(load_stl10(dir.path.string(), "train"), doctest::Contains("not a positive multiple"), Error);
}

TEST_CASE("image folder: classes, formats, channels; each image decoded at its own size") {
  TempDir dir("folder");
  write_png(dir / "cat/a.png", 6, 5, 3, 0);
  write_png(dir / "cat/b.PNG", 6, 5, 1, 1);  // gray: converted to RGB
  write_png(dir / "dog/c.png", 6, 5, 4, 2);  // RGBA: alpha dropped
  {
    const auto px = pattern(6, 5, 3, 3);
    REQUIRE(stbi_write_bmp((dir / "dog/d.bmp").c_str(), 5, 6, 3, px.data()) != 0);
    REQUIRE(stbi_write_jpg((dir / "dog/e.jpg").c_str(), 5, 6, 3, px.data(), 95) != 0);
  }
  write_png(dir / "dog/f.png", 9, 7, 3, 4);       // another size
  write_bytes(dir / "dog/notes.txt", {1, 2, 3});  // ignored: not an image extension
  ImageFolderInfo info;
  ImageDataset ds = open_image_folder(dir.path.string(), {}, &info);
  CHECK(!ds.images.defined());  // nothing decoded by opening
  REQUIRE(ds.size() == 6);
  CHECK(ds.channels() == 3);
  CHECK(ds.labels.to_vector() == std::vector<double>{0, 0, 1, 1, 1, 1});
  CHECK(ds.num_classes == 2);
  CHECK(info.classes == std::vector<std::string>{"cat", "dog"});
  const Tensor a = ds.source->load(0);
  CHECK(a.sizes() == Shape{6, 5, 3});
  const auto want = pattern(6, 5, 3, 0);
  CHECK(std::equal(want.begin(), want.end(), a.data_ptr<uint8_t>()));
  const Tensor b = ds.source->load(1);  // b.PNG gray -> r = g = b = the grey value
  const auto grey = pattern(6, 5, 1, 1);
  for (size_t i = 0; i < grey.size(); ++i) {
    REQUIRE(b.data_ptr<uint8_t>()[i * 3] == grey[i]);
    REQUIRE(b.data_ptr<uint8_t>()[i * 3 + 2] == grey[i]);
  }
  const Tensor c = ds.source->load(2);  // RGBA: the RGB of the pattern's first three channels
  const auto rgba = pattern(6, 5, 4, 2);
  for (size_t i = 0; i < 30; ++i) REQUIRE(c.data_ptr<uint8_t>()[i * 3 + 1] == rgba[i * 4 + 1]);
  const auto bmp = pattern(6, 5, 3, 3);  // d.bmp lossless
  CHECK(std::equal(bmp.begin(), bmp.end(), ds.source->load(3).data_ptr<uint8_t>()));
  CHECK(ds.source->load(5).sizes() == Shape{9, 7, 3});

  ImageFolderOptions gray;
  gray.channels = 1;
  const ImageDataset g = open_image_folder(dir.path.string(), gray);
  CHECK(g.channels() == 1);
  CHECK(g.source->load(2).sizes() == Shape{6, 5, 1});
  CHECK(g.source->load(5).sizes() == Shape{9, 7, 1});
  // select() picks images by index, sharing the files
  const auto sub = g.source->select({5, 0});
  CHECK(sub->size() == 2);
  CHECK(sub->load(0).sizes() == Shape{9, 7, 1});
  CHECK_THROWS_WITH_AS(g.source->load(6), doctest::Contains("outside [0, 6)"), Error);
}

TEST_CASE("image folder: unreadable files are skipped with a count, or with strict errors naming the file") {
  TempDir dir("badfolder");
  write_png(dir / "a/good1.png", 4, 4, 3, 0);
  write_png(dir / "a/good2.png", 4, 4, 3, 1);
  write_bytes(dir / "b/garbage.jpg", {0x12, 0x34, 0x56, 0x78, 0x9a});
  {
    // a truncated PNG: first half of a valid one (its header is intact, its pixels are not)
    write_png(dir / "tmp/full.png", 16, 16, 3, 5);
    std::ifstream in(dir / "tmp/full.png", std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes.resize(bytes.size() / 2);
    write_bytes(dir / "b/truncated.png", bytes);
    std::filesystem::remove_all(dir / "tmp");
  }
  ImageFolderOptions strict;
  strict.strict = true;
  CHECK_THROWS_WITH_AS(open_image_folder(dir.path.string(), strict), doctest::Contains("garbage.jpg"), Error);
  const ImageFolderOptions skip;  // the default
  ImageFolderInfo info;
  ImageDataset ds = open_image_folder(dir.path.string(), skip, &info);
  // garbage.jpg fails its header and is left out when the folder is opened; truncated.png only when decoded
  REQUIRE(ds.size() == 3);
  REQUIRE(info.skipped.size() == 1);
  CHECK(info.skipped[0].find("garbage.jpg") != std::string::npos);
  CHECK(info.files.back().find("truncated.png") != std::string::npos);
  CHECK(ds.num_classes == 2);
  // Image 2 (truncated.png) is skipped with a warning; its place is taken by the next readable image, image 0
  // (cyclically), so the pixels are good1.png's.
  const Tensor two = ds.source->load(2);
  const auto good1 = pattern(4, 4, 3, 0);
  CHECK(std::equal(good1.begin(), good1.end(), two.data_ptr<uint8_t>()));
  // strict, the decode failure is an error naming the file
  ImageFolderOptions strict_decode = strict;
  TempDir dir2("badfolder2");
  std::filesystem::create_directories(dir2.path / "b");
  std::filesystem::copy_file(dir / "b/truncated.png", dir2 / "b/truncated.png");
  write_png(dir2 / "b/z.png", 4, 4, 3, 0);
  const ImageDataset sd = open_image_folder(dir2.path.string(), strict_decode);
  CHECK(sd.source->load(1).sizes() == Shape{4, 4, 3});
  CHECK_THROWS_WITH_AS(sd.source->load(0), doctest::Contains("truncated.png"), Error);

  CHECK_THROWS_WITH_AS(open_image_folder(dir / "missing"), doctest::Contains("does not exist"), Error);
  TempDir empty("emptyfolder");
  CHECK_THROWS_WITH_AS(open_image_folder(empty.path.string()), doctest::Contains("no class subdirectories"), Error);
  std::filesystem::create_directories(empty.path / "cls");
  write_bytes(empty / "cls/readme.txt", {1});
  CHECK_THROWS_WITH_AS(open_image_folder(empty.path.string()), doctest::Contains("no images"), Error);
  TempDir allbad("allbad");
  write_bytes(allbad / "c/x.png", {1, 2, 3});
  CHECK_THROWS_WITH_AS(open_image_folder(allbad.path.string(), skip), doctest::Contains("none of the 1 files"), Error);
  ImageFolderOptions two_channels;
  two_channels.channels = 2;
  CHECK_THROWS_WITH_AS(open_image_folder(dir.path.string(), two_channels), doctest::Contains("channels must be 1 or 3"),
                       Error);
}
