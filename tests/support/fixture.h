// Reader for the small reference files in tests/fixtures/ (made by tests/fixtures/make_fixtures.py with
// PyTorch; tests never import PyTorch). Format: see tests/fixtures/README.md.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace selfsup::testing {

struct FixtureTensor {
  std::vector<int64_t> shape;
  std::vector<double> data;  // every tensor is stored as float64 (integer targets too)
};

// Loads SELFSUP_FIXTURE_DIR/<file>; throws std::runtime_error naming the file on any malformed content.
std::map<std::string, FixtureTensor> load_fixture(const std::string& file);

}  // namespace selfsup::testing
