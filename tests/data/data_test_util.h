// Helpers for tests/data: fixture access, max-abs-error comparison with the worst index, temp directories.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/support/fixture.h"

namespace selfsup::testing {

using Fixture = std::map<std::string, FixtureTensor>;

inline const Fixture& augment_fixture() {
  static const Fixture fx = load_fixture("augment.ssfx");
  return fx;
}

inline const FixtureTensor& fx_get(const std::string& name) {
  const Fixture& fx = augment_fixture();
  auto it = fx.find(name);
  if (it == fx.end()) FAIL("fixture tensor '" << name << "' missing from augment.ssfx");
  return it->second;
}

inline std::vector<float> to_float(const std::vector<double>& v, double scale = 1.0) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i] * scale);
  return out;
}

// Max |got - want| <= tol, reporting the worst element.
template <typename G>
void check_max_abs(const G& got, const std::vector<double>& want, double tol, const std::string& what) {
  REQUIRE_MESSAGE(got.size() == want.size(), what << ": " << got.size() << " values, expected " << want.size());
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= worst)) worst = e, at = i;
  }
  if (std::getenv("SELFSUP_PRINT_ERRORS")) std::printf("%-40s max abs error %.3g\n", what.c_str(), worst);
  CHECK_MESSAGE(worst <= tol, what << ": max abs error " << worst << " at " << at << " (got " << got[at]
                                   << ", want " << want[at] << "), tolerance " << tol);
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("selfsup_test_" + tag + "_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace selfsup::testing
