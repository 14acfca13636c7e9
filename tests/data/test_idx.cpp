// IDX reader: small crafted files (raw and gzipped) with known values, every malformed-input case the
// reader must reject with a selfsup::Error naming the file, and the real Fashion-MNIST test split (Debian's
// dataset-fashion-mnist, a declared dependency: without it that case fails saying how to install it).
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/data/idx.h"
#include "tests/support/fashion_mnist.h"
#include "tests/support/error_of.h"

namespace fs = std::filesystem;
using selfsup::DType;
using selfsup::Error;
using selfsup::data::ImageDataset;
using selfsup::data::load_fashion_mnist;
using selfsup::data::load_idx;

namespace {

// A fresh directory per test case, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("selfsup_test_idx_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// An IDX file: magic, big-endian dims, then `payload` (which tests may make too short or too long).
std::vector<uint8_t> idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b;
  put_be32(b, magic);
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}

using selfsup::test::error_of;

// Two 3x2 images with pixel values 0..11 and labels {4, 1}.
const std::vector<uint8_t> kPixels = iota_bytes(12, 0);
const std::vector<uint8_t> kLabels = {4, 1};

void check_small(const ImageDataset& ds) {
  REQUIRE(ds.images.sizes() == selfsup::Shape{2, 3, 2, 1});
  CHECK(ds.images.dtype() == DType::u8);
  REQUIRE(ds.labels.sizes() == selfsup::Shape{2});
  CHECK(ds.labels.dtype() == DType::i64);
  const uint8_t* px = ds.images.data_ptr<uint8_t>();
  for (int i = 0; i < 12; ++i) CHECK(px[i] == i);
  CHECK(ds.labels.data_ptr<int64_t>()[0] == 4);
  CHECK(ds.labels.data_ptr<int64_t>()[1] == 1);
  CHECK(ds.num_classes == 5);
  CHECK(ds.size() == 2);
}

}  // namespace

TEST_CASE("idx: raw, gzipped and mixed files give the same values") {
  TempDir dir;
  write_raw(dir / "img", idx_bytes(0x803, {2, 3, 2}, kPixels));
  write_raw(dir / "lbl", idx_bytes(0x801, {2}, kLabels));
  write_gz(dir / "img.gz", idx_bytes(0x803, {2, 3, 2}, kPixels));
  write_gz(dir / "lbl.gz", idx_bytes(0x801, {2}, kLabels));
  check_small(load_idx(dir / "img", dir / "lbl", "small"));
  check_small(load_idx(dir / "img.gz", dir / "lbl.gz"));
  check_small(load_idx(dir / "img.gz", dir / "lbl"));
  CHECK(load_idx(dir / "img", dir / "lbl", "small").name == "small");
  CHECK(load_idx(dir / "img", dir / "lbl").name == "img");
}

TEST_CASE("idx: an empty data set is valid") {
  TempDir dir;
  write_raw(dir / "img", idx_bytes(0x803, {0, 28, 28}, {}));
  write_raw(dir / "lbl", idx_bytes(0x801, {0}, {}));
  ImageDataset ds = load_idx(dir / "img", dir / "lbl");
  CHECK(ds.size() == 0);
  CHECK(ds.images.sizes() == selfsup::Shape{0, 28, 28, 1});
  CHECK(ds.num_classes == 0);
}

TEST_CASE("idx: malformed input throws selfsup::Error naming the file") {
  TempDir dir;
  write_raw(dir / "lbl", idx_bytes(0x801, {2}, kLabels));
  const std::string img = dir / "img";
  auto load = [&] { return load_idx(img, dir / "lbl"); };

  SUBCASE("missing file") {
    std::string msg = error_of([&] { load_idx(dir / "nope", dir / "lbl"); });
    CHECK(msg.find(dir / "nope") != std::string::npos);
    CHECK(msg.find("cannot open") != std::string::npos);
  }
  SUBCASE("a directory") {
    std::string msg = error_of([&] { load_idx(dir.path.string(), dir / "lbl"); });
    CHECK(msg.find("is a directory") != std::string::npos);
  }
  SUBCASE("empty file") {
    write_raw(img, {});
    CHECK(error_of(load).find("too short") != std::string::npos);
  }
  SUBCASE("labels file given as images: wrong magic") {
    std::string msg = error_of([&] { load_idx(dir / "lbl", dir / "lbl"); });
    CHECK(msg.find(dir / "lbl") != std::string::npos);
    CHECK(msg.find("0x00000801") != std::string::npos);
    CHECK(msg.find("expected 0x00000803") != std::string::npos);
  }
  SUBCASE("float element type: wrong magic") {
    write_raw(img, idx_bytes(0xD03, {2, 3, 2}, kPixels));
    CHECK(error_of(load).find("magic number 0x00000d03") != std::string::npos);
  }
  SUBCASE("truncated header") {
    std::vector<uint8_t> b = idx_bytes(0x803, {2, 3, 2}, {});
    b.resize(10);
    write_raw(img, b);
    CHECK(error_of(load).find("16-byte header") != std::string::npos);
  }
  SUBCASE("truncated data") {
    write_raw(img, idx_bytes(0x803, {2, 3, 2}, iota_bytes(11)));
    std::string msg = error_of(load);
    CHECK(msg.find(img) != std::string::npos);
    CHECK(msg.find("2 x 3 x 2 = 12 bytes") != std::string::npos);
    CHECK(msg.find("has 11") != std::string::npos);
    CHECK(msg.find("truncated") != std::string::npos);
  }
  SUBCASE("trailing data") {
    write_raw(img, idx_bytes(0x803, {2, 3, 2}, iota_bytes(13)));
    CHECK(error_of(load).find("trailing data") != std::string::npos);
  }
  SUBCASE("header sizes that overflow 64 bits") {
    write_raw(img, idx_bytes(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, kPixels));
    CHECK(error_of(load).find("more than 2^64") != std::string::npos);
  }
  SUBCASE("truncated gzip stream") {
    // Incompressible payload so that cutting the compressed file loses part of the data.
    std::vector<uint8_t> px(4 * 64 * 64);
    uint32_t x = 12345;
    for (uint8_t& p : px) p = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
    write_gz(dir / "full.gz", idx_bytes(0x803, {4, 64, 64}, px));
    std::ifstream in(dir / "full.gz", std::ios::binary);
    std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    gz.resize(gz.size() / 2);
    write_raw(img + ".gz", gz);
    std::string msg = error_of([&] { load_idx(img + ".gz", dir / "lbl"); });
    CHECK(msg.find(img + ".gz") != std::string::npos);
    CHECK(msg.find("truncated") != std::string::npos);
  }
  SUBCASE("image and label counts differ") {
    write_raw(img, idx_bytes(0x803, {3, 2, 2}, kPixels));
    std::string msg = error_of(load);
    CHECK(msg.find("3 images") != std::string::npos);
    CHECK(msg.find("2 labels") != std::string::npos);
  }
}

TEST_CASE("fashion-mnist: a missing directory or file says how to install it") {
  TempDir dir;
  std::string msg = error_of([&] { load_fashion_mnist(dir / "absent", true); });
  CHECK(msg.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  CHECK(msg.find(dir / "absent") != std::string::npos);
  msg = error_of([&] { load_fashion_mnist(dir.path.string(), false); });
  CHECK(msg.find("t10k-images-idx3-ubyte") != std::string::npos);
  CHECK(msg.find("apt-get install dataset-fashion-mnist") != std::string::npos);
}

TEST_CASE("fashion-mnist: a directory of raw (uncompressed) files loads, labels beyond 9 are refused") {
  TempDir dir;
  write_raw(dir / "t10k-images-idx3-ubyte", idx_bytes(0x803, {2, 3, 2}, kPixels));
  write_raw(dir / "t10k-labels-idx1-ubyte", idx_bytes(0x801, {2}, kLabels));
  ImageDataset ds = load_fashion_mnist(dir.path.string(), false);
  CHECK(ds.num_classes == 10);
  CHECK(ds.name == "fashion-mnist/test");
  CHECK(ds.class_names.size() == 10);
  write_raw(dir / "t10k-labels-idx1-ubyte", idx_bytes(0x801, {2}, {3, 10}));
  CHECK(error_of([&] { load_fashion_mnist(dir.path.string(), false); }).find("label 10") != std::string::npos);
}

TEST_CASE("fashion-mnist: the real test split") {
  selfsup::test::require_fashion_mnist();
  ImageDataset ds = load_fashion_mnist(selfsup::test::fashion_mnist_dir(), false);
  REQUIRE(ds.images.sizes() == selfsup::Shape{10000, 28, 28, 1});
  REQUIRE(ds.labels.sizes() == selfsup::Shape{10000});
  CHECK(ds.num_classes == 10);
  CHECK(ds.class_names[9] == "Ankle boot");
  const int64_t* y = ds.labels.data_ptr<int64_t>();
  std::vector<int64_t> per_class(10, 0);
  int64_t out_of_range = 0;
  for (int64_t i = 0; i < 10000; ++i) {
    if (y[i] < 0 || y[i] >= 10) {
      ++out_of_range;
    } else {
      ++per_class[y[i]];
    }
  }
  REQUIRE(out_of_range == 0);
  for (int64_t c = 0; c < 10; ++c) CHECK(per_class[c] == 1000);
  // The first test images are an ankle boot, a pullover and a trouser.
  CHECK(y[0] == 9);
  CHECK(y[1] == 2);
  CHECK(y[2] == 1);
  // Pixels span the full uint8 range and the border of the first image is background.
  const uint8_t* px = ds.images.data_ptr<uint8_t>();
  uint8_t lo = 255, hi = 0;
  for (int64_t i = 0; i < ds.images.numel(); ++i) {
    lo = std::min(lo, px[i]);
    hi = std::max(hi, px[i]);
  }
  CHECK(lo == 0);
  CHECK(hi == 255);
  CHECK(px[0] == 0);
}
