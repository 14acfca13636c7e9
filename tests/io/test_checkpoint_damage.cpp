// Damaged checkpoints: the checksum catches every single-byte change; a run directory falls back from a
// damaged newest checkpoint to the older one (truncated, zeroed block, flipped data byte, flipped header
// byte), with a warning naming both; both damaged is an error naming both; files without a checksum (format
// version 1) still load; a really full disk (a small tmpfs, run by the io_full_disk test) keeps the
// previous checkpoint.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/io/atomic_file.h"
#include "engine/io/checkpoint.h"
#include "tests/io/checkpoint_test_util.h"
#include "tests/io/io_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;
namespace fs = std::filesystem;

namespace {

// The header's byte range [8, 8 + n) of a safetensors file.
uint64_t header_len(const std::vector<uint8_t>& bytes) {
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  return n;
}

// The message load_checkpoint(path) throws, or "" when it loads.
std::string load_error(const std::string& path) {
  try {
    load_checkpoint(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("checkpoint checksum: every single-bit change anywhere in the file fails to load") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors"), bad = dir.file("bad.safetensors");
  save_checkpoint(path, make_checkpoint(10));
  const std::vector<uint8_t> good = read_bytes(path);
  const uint64_t n = header_len(good);
  REQUIRE(good.size() >= 8 + n + 1024);  // the data: 236 floats (conv1.weight, the queue) and 10 int64
  CHECK(load_error(path).empty());
  // Each position (length prefix, header, data) and two bits: the lowest (a digit '2' -> '3', a hex 'a' ->
  // '`') and the highest (any byte -> a non-ASCII one). Either the parser or the checksum must refuse it.
  int64_t undetected = 0, by_checksum = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::vector<uint8_t> b = good;
      b[i] ^= mask;
      write_bytes(bad, b);
      const std::string err = load_error(bad);
      if (err.empty()) {
        ++undetected;
        MESSAGE("undetected: byte ", i, " ^ ", int(mask));
      }
      by_checksum += err.find("checksum mismatch") != std::string::npos;
    }
  }
  CHECK(undetected == 0);
  // Every data byte, and header bytes the JSON parser accepts, are the checksum's to catch.
  CHECK(by_checksum >= static_cast<int64_t>(2 * (good.size() - 8 - n)));
}

TEST_CASE("a damaged newest checkpoint falls back to the older one, with a warning naming both") {
  TempDir dir;
  const std::string d = dir.file("run");
  save_checkpoint(d, make_checkpoint(10));
  save_checkpoint(d, make_checkpoint(20));
  const std::string newest = d + "/ckpt-20.safetensors", older = d + "/ckpt-10.safetensors";
  std::vector<uint8_t> b = read_bytes(newest);
  const uint64_t n = header_len(b);
  const size_t data_begin = 8 + n, data_size = b.size() - data_begin;
  std::string expected_reason;
  SUBCASE("truncated inside the data (a copy cut short)") {
    b.resize(data_begin + data_size / 2);
    expected_reason = "the file is truncated";
  }
  SUBCASE("truncated inside the header") {
    b.resize(8 + n / 2);
    expected_reason = "beyond the end of the file";
  }
  SUBCASE("a block of zeros (a lost page)") {
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(data_begin + data_size / 4),
              b.begin() + static_cast<std::ptrdiff_t>(data_begin + data_size / 4 + 512), uint8_t{0});
    expected_reason = "checksum mismatch";
  }
  SUBCASE("one flipped byte in the data") {
    b[data_begin + data_size / 2] ^= 0x5a;
    expected_reason = "checksum mismatch";
  }
  SUBCASE("one flipped byte in the header that keeps it valid JSON (the config's \"simclr\" -> \"sjmclr\")") {
    const std::string header(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    const size_t pos = header.find("simclr");
    REQUIRE(pos != std::string::npos);
    b[8 + pos + 1] ^= 0x03;  // 'i' (0x69) -> 'j' (0x6a)
    expected_reason = "checksum mismatch";
  }
  write_bytes(newest, b);

  const Checkpoint ck = load_checkpoint(d);
  CHECK(ck.step == 10);
  CHECK(ck.source == older);
  check_equal(make_checkpoint(10), ck);
  CHECK_MESSAGE(ck.warning.find("damaged checkpoint: safetensors '" + newest + "'") != std::string::npos, ck.warning);
  CHECK_MESSAGE(ck.warning.find(expected_reason) != std::string::npos, ck.warning);
  CHECK_MESSAGE(ck.warning.find("falling back to '" + older + "' (step 10)") != std::string::npos, ck.warning);
  // The damaged file is kept (evidence), the directory is not rewritten by loading.
  CHECK(read_bytes(newest) == b);
  // The newest file named on its own is an error, not a silent fallback.
  CHECK_THROWS_WITH_AS(load_checkpoint(newest), doctest::Contains(newest.c_str()), Error);
}

TEST_CASE("both checkpoints damaged: an error naming both files and what is wrong with each") {
  TempDir dir;
  const std::string d = dir.file("run");
  save_checkpoint(d, make_checkpoint(10));
  save_checkpoint(d, make_checkpoint(20));
  const std::string c10 = d + "/ckpt-10.safetensors", c20 = d + "/ckpt-20.safetensors";
  std::vector<uint8_t> b = read_bytes(c20);
  b.back() ^= 0x01;
  write_bytes(c20, b);
  b = read_bytes(c10);
  b.resize(b.size() - 100);
  write_bytes(c10, b);
  const std::string err = load_error(d);
  CHECK_MESSAGE(err.find("checkpoint directory '" + d + "' holds no valid checkpoint") != std::string::npos, err);
  CHECK_MESSAGE(err.find("safetensors '" + c20 + "': checksum mismatch") != std::string::npos, err);
  CHECK_MESSAGE(err.find("safetensors '" + c10 + "'") != std::string::npos, err);
  CHECK_MESSAGE(err.find("truncated") != std::string::npos, err);
}

TEST_CASE("fallback order: latest, then older steps, never a stale newer file; pruning does not count it") {
  TempDir dir;
  const std::string d = dir.file("run");
  save_checkpoint(d, make_checkpoint(10));
  save_checkpoint(d, make_checkpoint(30));
  save_checkpoint(d, make_checkpoint(20));  // a resumed run saved step 20 after an abandoned step 30
  REQUIRE(latest_checkpoint(d) == d + "/ckpt-20.safetensors");
  // 30 is not counted by the pruning: 10 and 20 are the two kept, 30 waits.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(d)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"ckpt-10.safetensors", "ckpt-20.safetensors", "ckpt-30.safetensors",
                                          "latest"});
  // With 20 damaged, the fallback is 10, not 30 (from the abandoned timeline).
  std::vector<uint8_t> b = read_bytes(d + "/ckpt-20.safetensors");
  b[b.size() - 3] ^= 0x10;  // in the data (the last tensor)
  write_bytes(d + "/ckpt-20.safetensors", b);
  Checkpoint ck = load_checkpoint(d);
  CHECK(ck.step == 10);
  CHECK_MESSAGE(ck.warning.find("ckpt-20.safetensors': checksum mismatch") != std::string::npos, ck.warning);
  // A `latest` naming a missing file: the highest step present is loaded, with the warning.
  fs::remove(d + "/ckpt-20.safetensors");
  ck = load_checkpoint(d);
  CHECK(ck.step == 30);
  CHECK_MESSAGE(ck.warning.find("'latest' names 'ckpt-20.safetensors', which does not exist") != std::string::npos,
                ck.warning);
}

TEST_CASE("a checkpoint without a checksum (format version 1) still loads; version 2 requires one") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_checkpoint(path, make_checkpoint(10));
  SafetensorsFile raw = load_safetensors(path);
  raw.metadata.erase(kSafetensorsChecksumKey);
  raw.metadata["format_version"] = "1";
  const std::string v1 = dir.file("v1.safetensors");
  save_safetensors(v1, raw.tensors, raw.metadata);  // as the writer of version 1 wrote it: no checksum
  const Checkpoint ck = load_checkpoint(v1);
  check_equal(make_checkpoint(10), ck);
  CHECK(ck.warning.empty());
  raw.metadata["format_version"] = "2";
  const std::string v2 = dir.file("v2.safetensors");
  save_safetensors(v2, raw.tensors, raw.metadata);
  CHECK_THROWS_WITH_AS(load_checkpoint(v2), doctest::Contains("has format version 2 but no 'selfsup.crc32' checksum"),
                       Error);
}

// Run by the io_full_disk ctest entry (tests/io/full_disk.sh) inside a user namespace with a small tmpfs
// mounted at SELFSUP_FULL_DISK_DIR; skipped in the ordinary run of test_io.
TEST_CASE("a full disk (a 1 MiB tmpfs) while saving keeps the previous checkpoint and names the cause" *
          doctest::skip()) {
  const char* root = std::getenv("SELFSUP_FULL_DISK_DIR");
  REQUIRE_MESSAGE(root != nullptr, "set SELFSUP_FULL_DISK_DIR to a small tmpfs (tests/io/full_disk.sh does)");
  const std::string d = std::string(root) + "/run";
  save_checkpoint(d, make_checkpoint(10));
  const std::vector<uint8_t> ckpt10 = read_bytes(d + "/ckpt-10.safetensors");
  // Fill the file system: write until ENOSPC.
  {
    std::ofstream filler(std::string(root) + "/filler", std::ios::binary);
    const std::vector<char> block(4096, 'x');
    while (filler.write(block.data(), static_cast<std::streamsize>(block.size())) && filler.flush()) {
    }
  }
  CHECK_THROWS_WITH_AS(save_checkpoint(d, make_checkpoint(20)), doctest::Contains("No space left on device"), Error);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(d)) entries.push_back(e.path().filename().string());
  std::sort(entries.begin(), entries.end());
  CHECK(entries == std::vector<std::string>{"ckpt-10.safetensors", "latest"});  // no partial file, no temp file
  CHECK(read_bytes(d + "/ckpt-10.safetensors") == ckpt10);
  check_equal(make_checkpoint(10), load_checkpoint(d));
  // Space freed: the next save works.
  fs::remove(std::string(root) + "/filler");
  save_checkpoint(d, make_checkpoint(20));
  CHECK(load_checkpoint(d).step == 20);
}
