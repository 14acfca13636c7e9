// Small file helpers shared by the dataset readers: whole-file reads and existence checks whose errors
// name the path.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/core/check.h"

namespace selfsup::data_detail {

inline void require_exists(const std::string& path, const char* what) {
  SELFSUP_CHECK(std::filesystem::exists(path), what, ": '", path, "' does not exist");
}

inline std::vector<uint8_t> read_file_bytes(const std::string& path, const char* what) {
  require_exists(path, what);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  SELFSUP_CHECK(in.good(), what, ": cannot open '", path, "'");
  const std::streamsize size = in.tellg();
  SELFSUP_CHECK(size >= 0, what, ": cannot read the size of '", path, "'");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  SELFSUP_CHECK(in.gcount() == size, what, ": short read of '", path, "'");
  return bytes;
}

inline uint64_t file_size_of(const std::string& path, const char* what) {
  require_exists(path, what);
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  SELFSUP_CHECK(!ec, what, ": cannot read the size of '", path, "': ", ec.message());
  return n;
}

}  // namespace selfsup::data_detail
