#include "ssl/app/args.h"

#include "engine/core/check.h"

namespace selfsup::app {

Args::Args(const std::vector<std::string>& args, std::string command) : command_(std::move(command)) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    SELFSUP_CHECK(a.size() > 2 && a.compare(0, 2, "--") == 0, command_, ": unexpected argument '", a,
                  "' (options look like --name value; see selfsup ", command_, " --help)");
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0) {
      value = args[++i];
    }
    SELFSUP_CHECK(values_.count(name) == 0, command_, ": --", name, " given twice");
    values_[name] = value;
  }
}

bool Args::flag(const std::string& name) {
  auto it = values_.find(name);
  if (it == values_.end()) return false;
  SELFSUP_CHECK(it->second.empty(), command_, ": --", name, " takes no value, got '", it->second, "'");
  used_[name] = true;
  return true;
}

std::string Args::str(const std::string& name, const std::string& def) {
  auto it = values_.find(name);
  if (it == values_.end()) return def;
  SELFSUP_CHECK(!it->second.empty(), command_, ": --", name, " needs a value");
  used_[name] = true;
  return it->second;
}

double Args::number(const std::string& name, double def) {
  if (!has(name)) return def;
  const std::string v = str(name, "");
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw Error(str_cat(command_, ": --", name, " expects a number, got '", v, "'"));
}

int64_t Args::integer(const std::string& name, int64_t def) {
  if (!has(name)) return def;
  const std::string v = str(name, "");
  try {
    size_t used = 0;
    long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw Error(str_cat(command_, ": --", name, " expects an integer, got '", v, "'"));
}

void Args::finish() const {
  for (const auto& [name, value] : values_)
    SELFSUP_CHECK(used_.count(name) > 0, command_, ": unknown option --", name, " (see selfsup ", command_, " --help)");
}

}  // namespace selfsup::app
