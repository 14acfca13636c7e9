// IDX files: a 4-byte magic (0, 0, element type, number of dims), one big-endian uint32 per dim, then the
// elements in row-major order. The header is read and checked first; the payload is then read in chunks,
// so memory follows the bytes the file holds and a corrupt header can never make us allocate or index past
// them (nor a gzip bomb past the header's claim).
#include "engine/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "engine/core/check.h"

namespace selfsup::data {

namespace {

constexpr uint8_t kTypeU8 = 0x08;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// An open IDX file, raw or gzip-compressed: gzread passes raw files through unchanged, so one path serves both.
GzFile open_idx(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw_error(str_cat("idx: '", path, "' is a directory, expected a file"));
  errno = 0;
  GzFile f(gzopen(path.c_str(), "rb"));
  if (!f) {
    throw_error(str_cat("idx: cannot open '", path, "': ", errno ? std::strerror(errno) : "out of memory"));
  }
  return f;
}

// Appends up to `n` bytes of `f` to `out`, growing it one chunk at a time, so that the allocation follows
// the bytes the file really holds, never a size a header claims. Returns the count appended (< n at the end).
uint64_t read_up_to(gzFile_s* f, uint64_t n, std::vector<uint8_t>& out, const std::string& path) {
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  uint64_t total = 0;
  while (total < n) {
    const size_t have = out.size();
    const uint64_t want = std::min(n - total, kChunk);
    out.resize(have + want);
    const int got = gzread(f, out.data() + have, static_cast<unsigned>(want));
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(f, &code);
      throw_error(str_cat("idx: cannot read '", path, "': ", msg, " (corrupt or truncated gzip data?)"));
    }
    out.resize(have + static_cast<size_t>(got));
    total += static_cast<uint64_t>(got);
    if (got == 0) break;
  }
  return total;
}

// Counts (and discards) the bytes left in `f`.
uint64_t count_rest(gzFile_s* f, const std::string& path) {
  std::vector<uint8_t> scratch;
  uint64_t total = 0;
  for (;;) {
    scratch.clear();
    const uint64_t got = read_up_to(f, uint64_t{1} << 16, scratch, path);
    total += got;
    if (got == 0) return total;
  }
}

// A gzip stream cut short reads as a clean end of file; zlib only reports it on close.
void close_idx(GzFile f, const std::string& path) {
  const int rc = gzclose_r(f.release());
  if (rc == Z_BUF_ERROR) throw_error(str_cat("idx: '", path, "': gzip data ends early (truncated file)"));
  if (rc != Z_OK) throw_error(str_cat("idx: '", path, "': error closing the file (zlib code ", rc, ")"));
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

// `stem` with .gz preferred (the Debian package ships compressed files), else the raw file.
std::string find_split_file(const std::string& dir, const std::string& stem) {
  for (const char* ext : {".gz", ""}) {
    std::string p = dir + "/" + stem + ext;
    if (std::filesystem::is_regular_file(p)) return p;
  }
  throw_error(str_cat("fashion-mnist: neither '", dir, "/", stem, ".gz' nor '", dir, "/", stem,
                      "' exists; install the data set with `apt-get install dataset-fashion-mnist`",
                      " or pass a directory holding the IDX files"));
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

}  // namespace

std::vector<int64_t> read_idx_u8(const std::string& path, int expected_dims, std::vector<uint8_t>& data) {
  SELFSUP_CHECK(expected_dims >= 1 && expected_dims <= 4, "idx: '", path, "': expected_dims must be 1..4, got ",
                expected_dims);
  GzFile f = open_idx(path);
  std::vector<uint8_t> head;
  const uint32_t expected_magic = (uint32_t{kTypeU8} << 8) | static_cast<uint32_t>(expected_dims);
  read_up_to(f.get(), 4, head, path);
  if (head.size() < 4) close_idx(std::move(f), path);  // a truncated gzip stream says so first
  SELFSUP_CHECK(head.size() >= 4, "idx: '", path, "' is ", head.size(), " bytes long, too short for the 4-byte ",
                "magic number (expected ", hex32(expected_magic), ")");
  const uint32_t magic = read_be32(head.data());
  SELFSUP_CHECK(magic == expected_magic, "idx: '", path, "': magic number ", hex32(magic), ", expected ",
                hex32(expected_magic), " (uint8 data, ", expected_dims, " dims)");
  const size_t header = 4 + 4 * static_cast<size_t>(expected_dims);
  read_up_to(f.get(), header - 4, head, path);
  if (head.size() < header) close_idx(std::move(f), path);
  SELFSUP_CHECK(head.size() >= header, "idx: '", path, "' is ", head.size(), " bytes long, too short for its ",
                header, "-byte header (truncated file)");

  std::vector<int64_t> dims(expected_dims);
  // Three uint32 dims can overflow 64 bits. The product of the non-zero dims is bounded too: a zero dim
  // makes the payload empty, but the others still become tensor sizes whose strides must fit int64.
  uint64_t nonzero = 1;
  bool overflow = false, empty = false;
  for (int d = 0; d < expected_dims; ++d) {
    dims[d] = read_be32(head.data() + 4 + 4 * d);
    if (dims[d] == 0) empty = true;
    else overflow = overflow || __builtin_mul_overflow(nonzero, static_cast<uint64_t>(dims[d]), &nonzero);
  }
  SELFSUP_CHECK(!overflow && nonzero <= kMaxIdxBytes, "idx: '", path, "': header says ", dims_str(dims), " = ",
                overflow ? std::string("more than 2^64") : std::to_string(nonzero),
                empty ? " (without its zero dims)" : "", " bytes of data, more than the reader's limit of ",
                kMaxIdxBytes, " bytes (corrupt header?)");
  const uint64_t need = empty ? 0 : nonzero;
  data.clear();
  const uint64_t payload = read_up_to(f.get(), need, data, path);
  const uint64_t trailing = payload == need ? count_rest(f.get(), path) : 0;
  close_idx(std::move(f), path);
  SELFSUP_CHECK(payload == need, "idx: '", path, "': header says ", dims_str(dims), " = ", need,
                " bytes of data, but the file has ", payload, " after the ", header, "-byte header (truncated file)");
  SELFSUP_CHECK(trailing == 0, "idx: '", path, "': header says ", dims_str(dims), " = ", need,
                " bytes of data, but the file has ", payload + trailing, " after the ", header,
                "-byte header (trailing data: header and file disagree)");
  return dims;
}

ImageDataset load_idx(const std::string& images_path, const std::string& labels_path, const std::string& name) {
  std::vector<uint8_t> pixels, label_bytes;
  std::vector<int64_t> idims = read_idx_u8(images_path, 3, pixels);       // (N, H, W)
  std::vector<int64_t> ldims = read_idx_u8(labels_path, 1, label_bytes);  // (N)
  SELFSUP_CHECK(idims[0] == ldims[0], "idx: '", images_path, "' holds ", idims[0], " images but '", labels_path,
                "' holds ", ldims[0], " labels; expected the same count");

  ImageDataset ds;
  ds.name = name.empty() ? std::filesystem::path(images_path).filename().string() : name;
  ds.images = Tensor::from_blob(pixels.data(), {idims[0], idims[1], idims[2], 1}, DType::u8);  // (N, H, W, C)
  std::vector<int64_t> labels(label_bytes.begin(), label_bytes.end());
  ds.labels = Tensor::from_vector(labels, {ldims[0]});  // (N)
  ds.num_classes = labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
  return ds;
}

ImageDataset load_fashion_mnist(const std::string& root, bool train) {
  const std::string dir = root == "fashion-mnist" ? std::string(kFashionMnistDir) : root;
  SELFSUP_CHECK(std::filesystem::is_directory(dir), "fashion-mnist: directory '", dir,
                "' not found; install the data set with `apt-get install dataset-fashion-mnist`",
                " or pass a directory holding the IDX files");
  const std::string split = train ? "train" : "t10k";
  const std::string images = find_split_file(dir, split + "-images-idx3-ubyte");
  const std::string labels = find_split_file(dir, split + "-labels-idx1-ubyte");
  ImageDataset ds = load_idx(images, labels, train ? "fashion-mnist/train" : "fashion-mnist/test");
  SELFSUP_CHECK(ds.num_classes <= 10, "fashion-mnist: '", labels, "' holds label ", ds.num_classes - 1,
                ", expected labels 0..9");
  ds.num_classes = 10;
  ds.class_names = fashion_mnist_classes();
  return ds;
}

}  // namespace selfsup::data
