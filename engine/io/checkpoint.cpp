// Training checkpoints (see checkpoint.h): flattening to prefixed tensors, the directory protocol (file, then
// `latest`, then pruning), and strict parsing on load.
#include "engine/io/checkpoint.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/io/atomic_file.h"

namespace selfsup {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "selfsup.checkpoint";
constexpr const char* kLatest = "latest";
const char* const kReserved[] = {"format", "format_version", "step", "epoch", "config", kSafetensorsChecksumKey};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Tensor i64_scalar(int64_t v) { return Tensor::from_vector(std::vector<int64_t>{v}, {}); }

// The step of "ckpt-<step>.safetensors", or -1 for any other name.
int64_t checkpoint_step(const std::string& filename) {
  const std::string pre = "ckpt-", post = ".safetensors";
  if (filename.size() <= pre.size() + post.size() || filename.rfind(pre, 0) != 0 || !ends_with(filename, post))
    return -1;
  const std::string digits = filename.substr(pre.size(), filename.size() - pre.size() - post.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// Checkpoint files in `dir`, sorted by step ascending.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const int64_t step = checkpoint_step(name);
    if (step >= 0 && entry.is_regular_file()) found.emplace_back(step, name);
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string read_latest(const std::string& dir) {
  std::ifstream in(fs::path(dir) / kLatest);
  if (!in) return "";
  std::string name;
  std::getline(in, name);
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  SELFSUP_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
                "checkpoint directory '", dir, "': the 'latest' file holds '", name,
                "', expected a file name such as ckpt-100.safetensors");
  return name;
}

int64_t parse_int(const Metadata& md, const std::string& key, const std::string& path) {
  auto it = md.find(key);
  SELFSUP_CHECK(it != md.end(), "checkpoint '", path, "': metadata lacks '", key, "'");
  try {
    size_t used = 0;
    int64_t v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception&) {
  }
  throw_error(str_cat("checkpoint '", path, "': metadata '", key, "' is '", it->second, "', expected an integer"));
}

}  // namespace

std::string save_checkpoint(const std::string& dir_or_path, const Checkpoint& ckpt, int keep_last) {
  SELFSUP_CHECK(keep_last >= 1, "save_checkpoint: keep_last must be >= 1, got ", keep_last);
  SELFSUP_CHECK(ckpt.step >= 0, "save_checkpoint: negative step ", ckpt.step);
  if (!nlohmann::json::accept(ckpt.config_json))
    throw_error(str_cat("save_checkpoint: the config is not valid JSON: '", ckpt.config_json.substr(0, 80), "'"));

  TensorMap all;
  auto add_group = [&](const char* prefix, const TensorMap& m) {
    for (const auto& [k, t] : m) all[str_cat(prefix, ".", k)] = t;
  };
  add_group("model", ckpt.model);
  add_group("optim", ckpt.optim);
  add_group("method", ckpt.method);
  add_group("loader", ckpt.loader);
  for (const auto& [name, gen] : ckpt.rng) {
    SELFSUP_CHECK(!name.empty(), "save_checkpoint: a generator has an empty name");
    all[str_cat("rng.", name, ".seed")] = i64_scalar(std::bit_cast<int64_t>(gen.seed()));
    all[str_cat("rng.", name, ".stream")] = i64_scalar(std::bit_cast<int64_t>(gen.stream()));
    all[str_cat("rng.", name, ".offset")] = i64_scalar(std::bit_cast<int64_t>(gen.offset()));
  }
  Metadata md = ckpt.extra;
  for (const char* r : kReserved)
    SELFSUP_CHECK(!md.count(r), "save_checkpoint: extra metadata may not use the reserved name '", r, "'");
  md["format"] = kFormat;
  md["format_version"] = std::to_string(kCheckpointFormatVersion);
  md["step"] = std::to_string(ckpt.step);
  md["epoch"] = std::to_string(ckpt.epoch);
  md["config"] = ckpt.config_json;

  if (ends_with(dir_or_path, ".safetensors")) {
    save_safetensors(dir_or_path, all, md, /*checksum=*/true);
    return dir_or_path;
  }
  const std::string& dir = dir_or_path;
  std::error_code ec;
  fs::create_directories(dir, ec);
  SELFSUP_CHECK(fs::is_directory(dir), "save_checkpoint: cannot create directory '", dir, "'",
                ec ? ": " + ec.message() : std::string());
  const std::string name = str_cat("ckpt-", ckpt.step, ".safetensors");
  const std::string path = (fs::path(dir) / name).string();
  save_safetensors(path, all, md, /*checksum=*/true);                   // 1. the checkpoint itself
  const std::string pointer = name + "\n";
  atomic_write_file((fs::path(dir) / kLatest).string(), pointer.data(), pointer.size());  // 2. the pointer
  // 3. prune: of the files up to this step, keep the newest keep_last (this one among them). Files with a
  // higher step belong to a timeline a resumed run abandoned (e.g. a damaged newest checkpoint it fell back
  // from): counting them would let them crowd out good checkpoints, so they wait until a save at their step
  // replaces them or a later one prunes them.
  auto found = list_checkpoints(dir);
  std::erase_if(found, [&](const auto& f) { return f.first > ckpt.step; });
  for (size_t i = 0; i + static_cast<size_t>(keep_last) < found.size(); ++i)
    if (found[i].second != name) fs::remove(fs::path(dir) / found[i].second, ec);
  // Temp files a crashed writer left behind (an exception cleans up its own).
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string f = entry.path().filename().string();
    if ((f.rfind(".ckpt-", 0) == 0 || f.rfind(".latest.", 0) == 0) && f.find(".tmp-") != std::string::npos)
      fs::remove(entry.path(), ec);
  }
  return path;
}

std::string latest_checkpoint(const std::string& dir) {
  SELFSUP_CHECK(fs::is_directory(dir), "checkpoint directory '", dir, "' does not exist");
  const std::string name = read_latest(dir);
  if (!name.empty()) {
    const std::string path = (fs::path(dir) / name).string();
    SELFSUP_CHECK(fs::is_regular_file(path), "checkpoint directory '", dir, "': 'latest' names '", name,
                  "', which does not exist");
    return path;
  }
  auto found = list_checkpoints(dir);
  return found.empty() ? "" : (fs::path(dir) / found.back().second).string();
}

namespace {

// One checkpoint file, strictly parsed; any damage or inconsistency throws.
Checkpoint load_checkpoint_file(const std::string& path) {
  SELFSUP_CHECK(fs::exists(path), "checkpoint '", path, "' does not exist");
  SafetensorsFile file = load_safetensors(path);  // verifies the checksum when the file has one
  const Metadata& md = file.metadata;
  auto fmt = md.find("format");
  SELFSUP_CHECK(fmt != md.end() && fmt->second == kFormat, "checkpoint '", path,
                "' is not a selfsup checkpoint (metadata 'format' is ",
                fmt == md.end() ? std::string("missing") : "'" + fmt->second + "'", ", expected '", kFormat, "')");
  const int64_t version = parse_int(md, "format_version", path);
  SELFSUP_CHECK(version >= 1 && version <= kCheckpointFormatVersion, "checkpoint '", path, "' has format version ",
                version, "; this build reads versions 1..", kCheckpointFormatVersion);
  // Version 2 files always carry the checksum: without this check a damaged key name would pass as "no
  // checksum". Version 1 files predate it and load unchecked.
  SELFSUP_CHECK(version < 2 || md.count(kSafetensorsChecksumKey), "checkpoint '", path, "' has format version ",
                version, " but no '", kSafetensorsChecksumKey, "' checksum in its metadata (the file is damaged)");
  Checkpoint ck;
  ck.source = path;
  ck.step = parse_int(md, "step", path);
  ck.epoch = parse_int(md, "epoch", path);
  auto cfg = md.find("config");
  ck.config_json = cfg == md.end() ? "{}" : cfg->second;
  for (const auto& [k, v] : md)
    if (std::find(std::begin(kReserved), std::end(kReserved), k) == std::end(kReserved)) ck.extra[k] = v;

  struct RngParts {
    bool has[3] = {false, false, false};
    uint64_t v[3] = {0, 0, 0};
  };
  std::map<std::string, RngParts> rng;
  for (const auto& [key, t] : file.tensors) {
    const size_t dot = key.find('.');
    const std::string prefix = key.substr(0, dot), rest = dot == std::string::npos ? "" : key.substr(dot + 1);
    SELFSUP_CHECK(!rest.empty(), "checkpoint '", path, "': unexpected key '", key,
                  "' (expected a prefix: model., optim., method., loader. or rng.)");
    if (prefix == "model") ck.model[rest] = t;
    else if (prefix == "optim") ck.optim[rest] = t;
    else if (prefix == "method") ck.method[rest] = t;
    else if (prefix == "loader") ck.loader[rest] = t;
    else if (prefix == "rng") {
      const size_t last = rest.rfind('.');
      const std::string name = last == std::string::npos ? "" : rest.substr(0, last);
      const std::string field = last == std::string::npos ? rest : rest.substr(last + 1);
      const int idx = field == "seed" ? 0 : field == "stream" ? 1 : field == "offset" ? 2 : -1;
      SELFSUP_CHECK(!name.empty() && idx >= 0, "checkpoint '", path, "': unexpected key '", key,
                    "' (expected rng.<name>.seed, .stream or .offset)");
      SELFSUP_CHECK(t.dtype() == DType::i64 && t.numel() == 1, "checkpoint '", path, "': '", key,
                    "' must be an int64 scalar, got ", dtype_name(t.dtype()), " of shape ", shape_str(t.sizes()));
      rng[name].has[idx] = true;
      rng[name].v[idx] = std::bit_cast<uint64_t>(*t.data_ptr<int64_t>());
    } else {
      throw_error(str_cat("checkpoint '", path, "': unexpected key '", key,
                          "' (expected a prefix: model., optim., method., loader. or rng.)"));
    }
  }
  for (const auto& [name, parts] : rng) {
    const char* fields[3] = {"seed", "stream", "offset"};
    for (int i = 0; i < 3; ++i)
      SELFSUP_CHECK(parts.has[i], "checkpoint '", path, "': generator '", name, "' lacks 'rng.", name, ".", fields[i],
                    "'");
    Generator g(parts.v[0], parts.v[1]);
    g.set_offset(parts.v[2]);
    ck.rng.emplace(name, g);
  }
  return ck;
}

// The files load_checkpoint(dir) tries, in order: the one `latest` names, then the older ones by step,
// newest first. Files with a higher step than `latest`'s belong to a timeline a resumed run abandoned, so
// they are not candidates. A `latest` that is malformed or names a missing file is recorded in `failures`.
std::vector<std::string> candidates(const std::string& dir, std::vector<std::string>* failures) {
  std::string named;
  try {
    named = read_latest(dir);
    if (!named.empty() && !fs::is_regular_file(fs::path(dir) / named)) {
      failures->push_back(str_cat("checkpoint directory '", dir, "': 'latest' names '", named,
                                  "', which does not exist"));
      named.clear();
    }
  } catch (const Error& e) {
    failures->push_back(e.what());
  }
  const int64_t named_step = named.empty() ? -1 : checkpoint_step(named);
  std::vector<std::string> out;
  if (!named.empty()) out.push_back((fs::path(dir) / named).string());
  auto found = list_checkpoints(dir);
  for (auto it = found.rbegin(); it != found.rend(); ++it)
    if (it->second != named && (named.empty() || it->first < named_step))
      out.push_back((fs::path(dir) / it->second).string());
  return out;
}

}  // namespace

Checkpoint load_checkpoint(const std::string& path_or_dir) {
  if (!fs::is_directory(path_or_dir)) return load_checkpoint_file(path_or_dir);
  const std::string& dir = path_or_dir;
  std::vector<std::string> failures;  // one message per file that failed, each naming its file
  std::vector<std::string> damaged;   // those files
  const std::vector<std::string> files = candidates(dir, &failures);
  SELFSUP_CHECK(!files.empty() || !failures.empty(), "checkpoint directory '", dir,
                "' holds no checkpoint (no 'latest' file and no ckpt-<step>.safetensors)");
  for (const std::string& file : files) {
    try {
      Checkpoint ck = load_checkpoint_file(file);
      ck.damaged = damaged;
      if (!failures.empty()) {
        std::string w = "warning: ";
        for (const std::string& f : failures) w += str_cat("damaged checkpoint: ", f, "; ");
        ck.warning = str_cat(w, "falling back to '", file, "' (step ", ck.step,
                             "): a resumed run repeats the steps after it");
        std::fprintf(stderr, "%s\n", ck.warning.c_str());
      }
      return ck;
    } catch (const Error& e) {
      failures.push_back(e.what());
      damaged.push_back(file);
    }
  }
  std::string all;
  for (const std::string& f : failures) all += str_cat("\n  ", f);
  throw_error(str_cat("checkpoint directory '", dir, "' holds no valid checkpoint; every candidate is damaged:", all));
}

}  // namespace selfsup
