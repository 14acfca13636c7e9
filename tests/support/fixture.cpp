#include "tests/support/fixture.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace selfsup::testing {

std::map<std::string, FixtureTensor> load_fixture(const std::string& file) {
  const std::string path = std::string(SELFSUP_FIXTURE_DIR) + "/" + file;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("fixture " + path + ": cannot open");
  std::string magic;
  std::getline(in, magic);
  if (magic != "SSFX1") throw std::runtime_error("fixture " + path + ": bad magic '" + magic + "'");
  std::map<std::string, FixtureTensor> out;
  std::string header;
  while (std::getline(in, header)) {
    if (header.empty()) continue;
    std::istringstream hs(header);
    std::string name;
    int ndim = -1;
    hs >> name >> ndim;
    if (!hs || ndim < 0) throw std::runtime_error("fixture " + path + ": bad header line '" + header + "'");
    FixtureTensor t;
    int64_t numel = 1;
    for (int d = 0; d < ndim; ++d) {
      int64_t v = -1;
      hs >> v;
      if (!hs || v < 0) throw std::runtime_error("fixture " + path + ": bad shape for '" + name + "'");
      t.shape.push_back(v);
      numel *= v;
    }
    t.data.resize(static_cast<size_t>(numel));
    in.read(reinterpret_cast<char*>(t.data.data()), numel * 8);
    if (in.gcount() != numel * 8) throw std::runtime_error("fixture " + path + ": '" + name + "' is truncated");
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace selfsup::testing
