// The fuzz targets' entry functions (contract in fuzz_entries.h). The file readers take paths, so each
// input is written to a scratch directory of this process (under /dev/shm when it exists: fuzzing writes
// thousands of files a second) and read back through the same public function `selfsup` calls.
// An entry may catch selfsup::Error between calls to reach more readers with one input; anything else it
// lets through. A broken invariant throws std::logic_error, which the fuzzer and the replay test both
// report as a failure.
#include "tests/fuzz/fuzz_entries.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "engine/core/check.h"
#include "engine/data/cifar.h"
#include "engine/data/idx.h"
#include "engine/data/augment.h"
#include "engine/data/image_folder.h"
#include "engine/data/stl10.h"
#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "ssl/app/args.h"
#include "ssl/trainer/config.h"

namespace selfsup::fuzz {

namespace fs = std::filesystem;

namespace {

// This process's scratch directory, removed at exit.
const fs::path& scratch() {
  static const fs::path dir = [] {
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    fs::path d = base / ("selfsup-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  static const struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup;
  return dir;
}

std::string write_file(const fs::path& path, const uint8_t* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error("fuzz: cannot write scratch file " + path.string());
  return path.string();
}

void expect(bool ok, const char* what) {
  if (!ok) throw std::logic_error(std::string("fuzz invariant broken: ") + what);
}

template <typename F>
void ignore_error(F&& f) {
  try {
    f();
  } catch (const Error&) {
  }
}

// IDX, raw or gzip-compressed (zlib reads both; the corpus holds both): the input as an idx3 and as an
// idx1 file, and, when it parses as images, as the images of load_idx with a matching label file.
void run_idx(const uint8_t* data, size_t size) {
  const std::string path = write_file(scratch() / "in.idx", data, size);
  std::vector<uint8_t> payload;
  ignore_error([&] {
    std::vector<int64_t> dims = data::read_idx_u8(path, 1, payload);
    expect(dims.size() == 1 && static_cast<uint64_t>(dims[0]) == payload.size(), "idx1 dims match the payload");
  });
  std::vector<int64_t> dims = data::read_idx_u8(path, 3, payload);
  expect(dims.size() == 3 && static_cast<uint64_t>(dims[0]) * static_cast<uint64_t>(dims[1]) *
                                     static_cast<uint64_t>(dims[2]) == payload.size(),
         "idx3 dims match the payload");
  if (dims[0] > 4096) return;  // the label file below is sized by the image count
  std::vector<uint8_t> labels = {0, 0, 8, 1, 0, 0, static_cast<uint8_t>(dims[0] >> 8), static_cast<uint8_t>(dims[0])};
  for (int64_t i = 0; i < dims[0]; ++i) labels.push_back(static_cast<uint8_t>(i % 7));
  const std::string lpath = write_file(scratch() / "labels.idx", labels.data(), labels.size());
  data::ImageDataset ds = data::load_idx(path, lpath);
  expect(ds.size() == dims[0] && ds.images.numel() == static_cast<int64_t>(payload.size()), "load_idx sizes");
}

// CIFAR-10 and CIFAR-100 (fine and coarse labels) record files.
void run_cifar(const uint8_t* data, size_t size) {
  const std::string path = write_file(scratch() / "in.bin", data, size);
  const struct {
    CifarKind kind;
    bool coarse;
    int64_t classes;
  } kinds[] = {{CifarKind::cifar10, false, 10}, {CifarKind::cifar100, false, 100}, {CifarKind::cifar100, true, 20}};
  for (const auto& k : kinds) {
    ignore_error([&] {
      ImageDataset ds = load_cifar_files(k.kind, {path}, k.coarse);
      expect(ds.images.numel() == ds.size() * 3072, "cifar image bytes");
      const int64_t* lab = ds.labels.data_ptr<int64_t>();
      for (int64_t i = 0; i < ds.size(); ++i) expect(lab[i] >= 0 && lab[i] < k.classes, "cifar label range");
    });
  }
  load_cifar(CifarKind::cifar10, path, true);
}

// STL-10: the input's first byte picks the split and how the image files' sizes relate to the label
// count; the rest is the label file. Image files are sparse (their pixels do not matter to the reader's
// checks, only their sizes do), 27648 bytes per image.
void run_stl10(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t mode = data[0];
  const fs::path dir = scratch() / "stl10";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int64_t n = static_cast<int64_t>(size) - 1;
  const int64_t images = std::max<int64_t>(0, n + (mode & 3) - 1);  // n - 1, n, n + 1 or n + 2 images
  const uint64_t extra = (mode >> 2) & 1;                             // one stray byte after the images
  const char* splits[] = {"train", "test", "unlabeled", "train+unlabeled", "bogus"};
  const std::string split = splits[(mode >> 3) % 5];
  for (const char* part : {"train", "test"}) {
    write_file(dir / (std::string(part) + "_y.bin"), data + 1, static_cast<size_t>(n));
    const fs::path x = dir / (std::string(part) + "_X.bin");
    write_file(x, nullptr, 0);
    fs::resize_file(x, static_cast<uint64_t>(images) * 27648 + extra);
  }
  if (!(mode & 0x80)) {  // else the unlabeled file is missing
    const fs::path u = dir / "unlabeled_X.bin";
    write_file(u, nullptr, 0);
    fs::resize_file(u, static_cast<uint64_t>((mode >> 5) & 3) * 27648 + extra);
  }
  ImageDataset ds = load_stl10(dir.string(), split);
  const int64_t* lab = ds.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < ds.size(); ++i) expect(lab[i] >= -1 && lab[i] < 10, "stl10 label range");
}

// One image file (stb detects the format from the bytes) in a one-class image folder, opened strict (an
// unreadable file is an Error): decoded as RGB at its own size, then as grey, whose views (a SimCLR crop of
// the original's size, and the evaluation's short-side resize and centre crop) are made at 12 x 12.
void run_image(const uint8_t* data, size_t size) {
  const fs::path root = scratch() / "folder";
  write_file(root / "c" / "img.png", data, size);
  ImageFolderOptions opt;
  opt.strict = true;
  ImageDataset ds = open_image_folder(root.string(), opt);
  expect(ds.size() == 1 && ds.channels() == 3, "image folder: one RGB image");
  const Tensor rgb = ds.source->load(0);
  expect(rgb.dim() == 3 && rgb.size(2) == 3 && rgb.size(0) * rgb.size(1) <= kMaxImagePixels,
         "image folder: an RGB image within the pixel limit");
  opt.channels = 1;
  ds = open_image_folder(root.string(), opt);
  const std::vector<Tensor> grey{ds.source->load(0)};
  expect(grey[0].size(0) == rgb.size(0) && grey[0].size(1) == rgb.size(1), "image folder: grey and RGB sizes agree");
  const Tensor ids = Tensor::from_vector(std::vector<int64_t>{0}, {1});
  const std::vector<Tensor> views = augment_views_each(grey, ids, make_recipe("gray", 12, 1), 0, 0, 1, 1);
  expect(views[0].sizes() == Shape{1, 1, 12, 12}, "image folder: a 12 x 12 view");
  expect(eval_views_each(grey, make_recipe("eval", 12, 1), 1).sizes() == Shape{1, 1, 12, 12},
         "image folder: a 12 x 12 evaluation crop");
}

// safetensors from memory and from a file (both must agree), then the same file as a training checkpoint
// and its stored configuration.
void run_safetensors(const uint8_t* data, size_t size) {
  const std::string path = write_file(scratch() / "in.safetensors", data, size);
  bool parsed = false;
  size_t count = 0;
  try {
    count = parse_safetensors(data, size, "fuzz input").tensors.size();
    parsed = true;
  } catch (const Error&) {
  }
  ignore_error([&] {
    SafetensorsFile f = load_safetensors(path);
    expect(parsed && f.tensors.size() == count, "load_safetensors agrees with parse_safetensors");
  });
  Checkpoint ck = load_checkpoint(path);
  ssl::TrainConfig::from_json(ck.config_json, path);
}

// config.json (written by `selfsup train`, read back by eval/embed and on resume) as text.
void run_config(const uint8_t* data, size_t size) {
  ssl::TrainConfig c = ssl::TrainConfig::from_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  ssl::apply_data_preset(c);
  ssl::TrainConfig::from_json(c.to_json(), "fuzz round trip");
}

// The CLI parser: NUL-separated arguments; every option is read as the type its name's first letter picks
// (what a command would ask for), then finish() rejects what no read consumed.
void run_args(const uint8_t* data, size_t size) {
  std::vector<std::string> argv(1);
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) argv.emplace_back();
    else argv.back() += static_cast<char>(data[i]);
  }
  app::Args a(argv, "fuzz");
  std::vector<std::string> names;
  for (const std::string& s : argv) {
    if (s.size() <= 2 || s.compare(0, 2, "--") != 0) continue;
    names.push_back(s.substr(2, s.find('=') == std::string::npos ? std::string::npos : s.find('=') - 2));
  }
  for (const std::string& name : names) {
    ignore_error([&] {
      switch (name.empty() ? 's' : name[0]) {
        case 'n': a.number(name, 0.5); break;
        case 'i': a.integer(name, 7); break;
        case 'f': a.flag(name); break;
        default: a.str(name, "default"); break;
      }
    });
  }
  a.help();
  a.finish();
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"idx", run_idx, 4096},      {"cifar", run_cifar, 8192},          {"stl10", run_stl10, 64},
      {"image", run_image, 8192},  {"safetensors", run_safetensors, 4096}, {"config", run_config, 2048},
      {"args", run_args, 512},
  };
  return all;
}

const Target* find_target(const std::string& name) {
  for (const Target& t : targets())
    if (name == t.name) return &t;
  return nullptr;
}

}  // namespace selfsup::fuzz
