// The stated input limits of docs/hardening.md, each checked on a small file whose header claims far more:
// the readers refuse it with an Error naming the file and the limit, before allocating for the claim; and
// config.json's typed fields.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/core/check.h"
#include "engine/data/idx.h"
#include "engine/data/image_folder.h"
#include "ssl/trainer/config.h"
#include "tests/support/error_of.h"

namespace fs = std::filesystem;
using selfsup::Error;

namespace {

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("selfsup_test_limits_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

using selfsup::test::error_of;

}  // namespace

TEST_CASE("idx: a header claiming 2^42 bytes is refused before the payload is read") {
  TempDir dir;
  std::vector<uint8_t> b;
  for (uint32_t v : {0x803u, 1u << 16, 1u << 16, 1u << 10}) put_be32(b, v);  // (65536, 65536, 1024): 2^42 bytes
  const std::string path = (dir.path / "huge-idx3").string();
  write(path, b);
  std::vector<uint8_t> data;
  const std::string msg = error_of([&] { selfsup::data::read_idx_u8(path, 3, data); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("65536 x 65536 x 1024 = 4398046511104 bytes") != std::string::npos);
  CHECK(msg.find("limit of 17179869184 bytes") != std::string::npos);
  CHECK(data.capacity() == 0);

  // A zero dim empties the payload, but the other dims still become tensor sizes: bounded the same way.
  b.clear();
  for (uint32_t v : {0x803u, 0xffffffffu, 0xffffffffu, 0u}) put_be32(b, v);
  write(path, b);
  CHECK(error_of([&] { selfsup::data::read_idx_u8(path, 3, data); }).find("without its zero dims") !=
        std::string::npos);
}

TEST_CASE("image folder: a PNG header claiming 16384x16384 pixels, and non-PNG/JPEG/BMP contents, are refused") {
  TempDir dir;
  // PNG signature, then an IHDR chunk (length 13, width, height, depth 8, colour type 0 = grey); stb_image
  // reads the size from it without checking the CRC. 256 MiB of grey pixels is under stb's own 1 GiB
  // limit, so the refusal is the reader's.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  put_be32(png, 13);
  png.insert(png.end(), {'I', 'H', 'D', 'R'});
  put_be32(png, 16384);
  put_be32(png, 16384);
  png.insert(png.end(), {8, 0, 0, 0, 0});
  put_be32(png, 0);
  write(dir.path / "c" / "huge.png", png);
  // strict: the refusal is the error; by default the file would be skipped (with this reason) instead.
  // Opening reads the headers (size, format); the JPEG table and BMP row checks run when an image is decoded.
  selfsup::ImageFolderOptions strict;
  strict.strict = true;
  auto open_and_decode = [&](const selfsup::ImageFolderOptions& o) {
    selfsup::open_image_folder(dir.path.string(), o).source->load(0);
  };
  std::string msg = error_of([&] { open_and_decode(strict); });
  CHECK(msg.find("huge.png") != std::string::npos);
  CHECK(msg.find("16384x16384 pixels, more than the reader's limit of 67108864") != std::string::npos);

  fs::remove(dir.path / "c" / "huge.png");
  write(dir.path / "c" / "gif.png", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0, ';'});
  msg = error_of([&] { open_and_decode(strict); });
  CHECK(msg.find("gif.png") != std::string::npos);
  CHECK(msg.find("not a PNG, JPEG or BMP file") != std::string::npos);
  // A JPEG whose scan decodes with a Huffman table no DHT defined (stb would read its uninitialised table and
  // abort on an assert): refused, naming the table.
  fs::remove(dir.path / "c" / "gif.png");
  fs::copy_file(std::string(SELFSUP_SOURCE_DIR) + "/tests/fuzz/regressions/image/jpeg-undefined-huffman-table.jpg",
                dir.path / "c" / "x.jpg");
  msg = error_of([&] { open_and_decode(strict); });
  CHECK(msg.find("x.jpg") != std::string::npos);
  CHECK(msg.find("decodes with AC Huffman table 0, which no DHT defines") != std::string::npos);
  // A 154-byte BMP whose header claims 4 x 11,798,016 pixels: refused before stb allocates 141 MB for its rows.
  fs::remove(dir.path / "c" / "x.jpg");
  fs::copy_file(std::string(SELFSUP_SOURCE_DIR) + "/tests/fuzz/regressions/image/bmp-rows-past-end.bmp",
                dir.path / "c" / "x.bmp");
  msg = error_of([&] { open_and_decode(strict); });
  CHECK(msg.find("x.bmp") != std::string::npos);
  CHECK(msg.find("but the file has 154 bytes: truncated or corrupt") != std::string::npos);
  // A 716-byte JPEG claiming 1542 x 8445 pixels (stb decoded 13 million pixels of garbage from it): refused
  // when the folder is opened, from its header and the file's size.
  fs::remove(dir.path / "c" / "x.bmp");
  fs::copy_file(std::string(SELFSUP_SOURCE_DIR) + "/tests/fuzz/regressions/image/jpeg-13mp-in-716-bytes.jpg",
                dir.path / "c" / "big.jpg");
  msg = error_of([&] { selfsup::open_image_folder(dir.path.string(), strict); });
  CHECK(msg.find("big.jpg") != std::string::npos);
  CHECK(msg.find("1542x8445 pixels (203808 8x8 blocks, each coded in at least one bit), but the file has 716 bytes") !=
        std::string::npos);
  // A JPEG whose Huffman table (before any frame header) runs past the file: its header is read without stb,
  // whose header scan builds the table and wrote past an array; there is no frame header to read. Decoded
  // directly, the table is refused before stb sees it.
  fs::remove(dir.path / "c" / "big.jpg");
  fs::copy_file(std::string(SELFSUP_SOURCE_DIR) + "/tests/fuzz/regressions/image/jpeg-dht-truncated-table.jpg",
                dir.path / "c" / "x.jpg");
  msg = error_of([&] { selfsup::open_image_folder(dir.path.string(), strict); });
  CHECK(msg.find("x.jpg': cannot read the image header: no frame header (SOF0, SOF1 or SOF2)") != std::string::npos);
  msg = error_of([&] { selfsup::decode_image_file((dir.path / "c" / "x.jpg").string(), 3); });
  CHECK(msg.find("a JPEG Huffman table at byte") != std::string::npos);
  fs::remove(dir.path / "c" / "x.jpg");
  fs::copy_file(std::string(SELFSUP_SOURCE_DIR) + "/tests/fuzz/regressions/image/bmp-rows-past-end.bmp",
                dir.path / "c" / "x.bmp");
  // Skipped by default (with a warning): the folder then holds no image at all.
  msg = error_of([&] { open_and_decode({}); });
  CHECK(msg.find("none of the 1 images under") != std::string::npos);
}

TEST_CASE("config.json: a field's JSON type and range are checked before conversion") {
  using selfsup::ssl::TrainConfig;
  CHECK(TrainConfig::from_json(R"({"batch": 512, "lr": 1, "seed": 3, "knn_every_epoch": false})", "c").batch == 512);
  // A float outside int64's range (nlohmann would convert it: undefined behaviour), a negative seed, a
  // thread count past int, a string for a number, and a document that is not an object.
  CHECK(error_of([] { TrainConfig::from_json(R"({"limit": 1e300})", "run/config.json"); })
            .find("run/config.json: configuration field 'limit' is 1e+300, expected a 64-bit integer") != std::string::npos);
  CHECK(error_of([] { TrainConfig::from_json(R"({"seed": -1})", "c"); }).find("expected a non-negative integer") !=
        std::string::npos);
  CHECK(error_of([] { TrainConfig::from_json(R"({"threads": 4294967296})", "c"); }).find("a 32-bit integer") !=
        std::string::npos);
  CHECK(error_of([] { TrainConfig::from_json(R"({"lr": "fast"})", "c"); }).find("expected a number") !=
        std::string::npos);
  CHECK(error_of([] { TrainConfig::from_json("[1, 2]", "c"); }).find("is a JSON array, expected an object") !=
        std::string::npos);
}
