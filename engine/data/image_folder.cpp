#include "engine/data/image_folder.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "engine/data/file_util.h"

namespace selfsup {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// The formats the reader accepts, recognised by their leading bytes, or nullptr. Without this gate stb_image
// decodes whatever format the bytes hold (GIF, PSD, PIC, HDR, TGA, PNM ...) whatever the file's name says,
// and its less-used decoders are where its known memory-safety bugs lie (docs/hardening.md).
const char* image_format(const std::vector<uint8_t>& b) {
  if (b.size() >= 8 && std::memcmp(b.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return "PNG";
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return "JPEG";
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  return nullptr;
}

// Debian's stb_image 2.27 sums a JPEG Huffman table's 16 code counts (up to 16 x 255) and writes that many
// values into a 256-entry array (found by the image fuzz target; upstream stb_image now refuses n > 256). Until the
// distribution ships the fix, the reader walks the JPEG's segments itself and refuses such a table. Returns
// the problem, or "" when every table is within bounds (other malformations are left to stb).
// The same walk refuses a scan that decodes with a Huffman table no DHT segment defined before it: stb keeps its
// tables in malloc'ed memory it never clears, so such a scan decoded garbage tables and hit an assert inside
// stb's decoder, which Debian builds with asserts on (image fuzz target, tests/fuzz/regressions/image/).
std::string jpeg_table_problem(const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  auto at = [&](size_t k) -> size_t { return k < n ? b[k] : 0; };  // stb reads past the end as zero bytes
  size_t i = 2;                                                     // after SOI
  bool defined[2][4] = {};  // [class: 0 DC, 1 AC][table id]
  bool progressive = false;
  while (i + 1 < n) {
    if (b[i] != 0xFF) {  // entropy-coded data after a scan: skip to the next marker
      ++i;
      continue;
    }
    const uint8_t m = b[i + 1];
    // Fill bytes, stuffed zeros and restart markers carry no length; EOI ends the image.
    if (m == 0xFF) {
      ++i;
      continue;
    }
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) {
      i += 2;
      continue;
    }
    if (m == 0xD9 || i + 4 > n) return "";
    const size_t len = (at(i + 2) << 8) | at(i + 3);  // includes its own 2 bytes
    if (m == 0xC2) progressive = true;
    if (m == 0xDA) {
      // SOS: Ns, then (component, DC table << 4 | AC table) per component, then Ss, Se, Ah/Al. A baseline scan
      // decodes with both tables; a progressive one with the DC tables (first DC scan: Ss 0, Ah 0) or the AC
      // tables (Ss > 0); a DC refinement scan reads raw bits.
      const size_t ns = at(i + 4), ss = at(i + 5 + 2 * ns), ah = at(i + 7 + 2 * ns) >> 4;
      const bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
      for (size_t c = 0; c < ns; ++c) {
        const size_t tables = at(i + 6 + 2 * c), td = tables >> 4, ta = tables & 15;
        if (dc && td < 4 && !defined[0][td])
          return str_cat("the JPEG scan at byte ", i, " decodes with DC Huffman table ", td, ", which no DHT defines");
        if (ac && ta < 4 && !defined[1][ta])
          return str_cat("the JPEG scan at byte ", i, " decodes with AC Huffman table ", ta, ", which no DHT defines");
      }
    }
    if (m != 0xC4) {
      i += 2 + std::max<size_t>(len, 2);
      continue;
    }
    // DHT: tables of (class/id byte, 16 counts, sum(counts) values) while the segment has bytes left. As stb
    // does, a table may run past the segment's stated end, and the next marker is looked for after it.
    size_t t = i + 4;
    while (t < i + 2 + len && t < n) {
      size_t codes = 0;
      for (size_t k = 0; k < 16; ++k) codes += at(t + 1 + k);
      if (codes > 256) return str_cat("a JPEG Huffman table at byte ", t, " defines ", codes, " codes (at most 256)");
      const size_t tc = at(t) >> 4, th = at(t) & 15;
      if (tc < 2 && th < 4) defined[tc][th] = true;  // stb refuses other classes and ids itself
      t += 17 + codes;
    }
    i = std::max(t, i + 4);
  }
  return "";
}

// stb_image reads a BMP's pixel rows without checking that the file holds them (bytes past the end read as 0),
// so a 154-byte file claiming 4 x 11.8 million pixels made it allocate 141 MB and spend 13 s filling it (image
// fuzz target). An uncompressed BMP (BI_RGB or BI_BITFIELDS, all stb decodes) must hold every row it claims:
// offset + |height| x stride bytes. Returns the problem, or "".
std::string bmp_size_problem(const std::vector<uint8_t>& b, int w, int h) {
  if (b.size() < 30) return "";  // stb's own header checks refuse it
  auto u16 = [&](size_t k) { return size_t{b[k]} | (size_t{b[k + 1]} << 8); };
  auto u32 = [&](size_t k) { return u16(k) | (u16(k + 2) << 16); };
  const size_t offset = u32(10), header = u32(14);
  const size_t bpp = header == 12 ? u16(24) : u16(28);
  const size_t stride = (static_cast<size_t>(w) * bpp + 31) / 32 * 4;
  const size_t need = offset + static_cast<size_t>(h) * stride;
  if (need > b.size())
    return str_cat("its header says ", w, "x", h, " pixels at ", bpp, " bits (", need, " bytes with the header), but the "
                   "file has ", b.size(), " bytes: truncated or corrupt");
  return "";
}

// stb_image decodes a JPEG scan whose data runs out as if zero bits followed, so a 716-byte file claiming
// 1542 x 8445 pixels decoded 13 million pixels of garbage (13 s under ASan: the image fuzz target's timeout,
// regressions/image/jpeg-13mp-in-716-bytes.jpg). Every 8x8 block of the full-resolution component is coded
// in at least one bit (its DC Huffman code, baseline or progressive), so a file of B bytes holds at most 8 B
// blocks. Returns the problem, or "".
std::string jpeg_size_problem(uint64_t file_bytes, int w, int h) {
  const uint64_t blocks = (static_cast<uint64_t>(w) + 7) / 8 * ((static_cast<uint64_t>(h) + 7) / 8);
  if (blocks > file_bytes * 8)
    return str_cat("its header says ", w, "x", h, " pixels (", blocks, " 8x8 blocks, each coded in at least one ",
                   "bit), but the file has ", file_bytes, " bytes: truncated or corrupt");
  return "";
}

// stb_image grows its buffer for a PNG's image data by each IDAT chunk's stated length before it reads the
// chunk, so a 200-byte file claiming a 500 MB chunk made it allocate 500 MB (image fuzz target). Every
// chunk must fit in the file; returns the problem, or "".
std::string png_chunk_problem(const std::vector<uint8_t>& b) {
  const size_t n = b.size();
  for (size_t i = 8; i + 8 <= n;) {  // after the signature: (length, type, data, CRC) chunks
    const size_t len = (size_t{b[i]} << 24) | (size_t{b[i + 1]} << 16) | (size_t{b[i + 2]} << 8) | b[i + 3];
    if (len > n - i - 8)
      return str_cat("a PNG chunk at byte ", i, " claims ", len, " bytes, past the end of the ", n, "-byte file");
    if (std::memcmp(b.data() + i + 4, "IEND", 4) == 0) break;
    i += 12 + len;
  }
  return "";
}

// The size limits every header must meet, or the problem ("" when it does).
std::string size_problem(int w, int h) {
  if (w <= 0 || h <= 0)  // stb accepts a BMP of height 0 (image fuzz target): no pixels to learn from
    return str_cat("its header says ", w, "x", h, " pixels, an empty image");
  if (static_cast<int64_t>(w) * h > kMaxImagePixels)
    return str_cat("its header says ", w, "x", h, " pixels, more than the reader's limit of ", kMaxImagePixels);
  return "";
}

// Decodes `path` into *out as uint8 (h, w, channels); returns the problem, or "" when decoded.
std::string decode(const std::string& path, int channels, Tensor* out) {
  std::vector<uint8_t> bytes;
  try {
    bytes = data_detail::read_file_bytes(path, "image folder");
  } catch (const Error& e) {
    return e.what();
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    return str_cat("file of ", bytes.size(), " bytes is too large to decode (stb_image reads at most 2 GiB)");
  const char* format = image_format(bytes);
  if (format == nullptr) return "not a PNG, JPEG or BMP file (its first bytes are none of theirs)";
  std::string error;
  if (std::strcmp(format, "JPEG") == 0) error = jpeg_table_problem(bytes);
  if (std::strcmp(format, "PNG") == 0) error = png_chunk_problem(bytes);
  if (!error.empty()) return error;
  int w = 0, h = 0, comp = 0;
  // The size from the header first: a header claiming a huge image is refused before stb allocates for it.
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    return std::string("cannot decode: ") + (why ? why : "unknown error");
  }
  error = size_problem(w, h);
  if (error.empty() && std::strcmp(format, "BMP") == 0) error = bmp_size_problem(bytes, w, h);
  if (error.empty() && std::strcmp(format, "JPEG") == 0) error = jpeg_size_problem(bytes.size(), w, h);
  if (!error.empty()) return error;
  const std::unique_ptr<uint8_t, void (*)(void*)> px(
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp, channels), stbi_image_free);
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    return std::string("cannot decode: ") + (why ? why : "unknown error");
  }
  *out = Tensor::from_blob(px.get(), {h, w, channels}, DType::u8);  // a copy
  return "";
}

// A JPEG's size and component count from its frame header (SOF0-2, what stb decodes), found by walking the
// segments before it with seeks. stb_image's own header scan (stbi_info) builds every Huffman table it meets
// on the way, and a bad table makes stb 2.27 write past its arrays before any of the reader's checks ran
// (regressions/image/jpeg-dht-truncated-table.jpg): so a JPEG's header is read here, not by stb.
bool jpeg_frame_header(std::FILE* f, int* w, int* h, int* comp) {
  if (std::fseek(f, 2, SEEK_SET) != 0) return false;  // after SOI
  for (int c = std::fgetc(f); c != EOF; c = std::fgetc(f)) {
    if (c != 0xFF) continue;  // stb skips bytes between segments too
    int m = std::fgetc(f);
    while (m == 0xFF) m = std::fgetc(f);
    if (m == EOF || m == 0xD9) return false;
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // no length
    uint8_t seg[8];
    if (m >= 0xC0 && m <= 0xC2) {  // length (2), precision, height (2), width (2), components
      if (std::fread(seg, 1, 8, f) != 8) return false;
      *h = (seg[3] << 8) | seg[4];
      *w = (seg[5] << 8) | seg[6];
      *comp = seg[7];
      return true;
    }
    if (std::fread(seg, 1, 2, f) != 2) return false;
    const int len = (seg[0] << 8) | seg[1];  // includes its own 2 bytes
    if (len < 2 || std::fseek(f, len - 2, SEEK_CUR) != 0) return false;
  }
  return false;
}

struct Header {
  int w = 0, h = 0, comp = 0;  // comp: channels stored in the file
  std::string error;           // empty when the header is sound
};

// What opening a folder (and its census) checks of each file, from its first bytes and its header only (no
// pixels decoded, a few hundred bytes read): the format gate, the size in the header (stb_image's
// stbi_info for PNG and BMP, jpeg_frame_header for JPEG), the pixel limit, and for a JPEG that the file is
// large enough for the size it claims.
Header read_header(const std::string& path) {
  Header hd;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    hd.error = "cannot open the file";
    return hd;
  }
  std::vector<uint8_t> head(8);
  head.resize(std::fread(head.data(), 1, head.size(), f));
  const char* format = image_format(head);
  const bool jpeg = format != nullptr && std::strcmp(format, "JPEG") == 0;
  bool info = false;
  if (jpeg) {
    info = jpeg_frame_header(f, &hd.w, &hd.h, &hd.comp);
  } else if (format != nullptr) {
    info = std::fseek(f, 0, SEEK_SET) == 0 && stbi_info_from_file(f, &hd.w, &hd.h, &hd.comp);
  }
  const long file_bytes = std::fseek(f, 0, SEEK_END) == 0 ? std::ftell(f) : -1;
  std::fclose(f);
  if (format == nullptr) {
    hd.error = "cannot read the image header: not a PNG, JPEG or BMP file (its first bytes are none of theirs)";
  } else if (!info) {
    const char* why = jpeg ? "no frame header (SOF0, SOF1 or SOF2) before the end" : stbi_failure_reason();
    hd.error = std::string("cannot read the image header: ") + (why ? why : "unknown error");
  } else {
    hd.error = size_problem(hd.w, hd.h);
    if (hd.error.empty() && jpeg && file_bytes >= 0)
      hd.error = jpeg_size_problem(static_cast<uint64_t>(file_bytes), hd.w, hd.h);
  }
  return hd;
}

// What the sources of one opened folder share (select() makes more): the files, the options, and the files
// found unreadable when first loaded, so that each is reported once and never decoded again.
struct FolderFiles {
  std::string root;
  std::vector<std::string> files;
  ImageFolderOptions options;
  std::mutex mu;
  std::set<int64_t> bad;  // indices into files
};

class FolderSource final : public ImageSource {
 public:
  FolderSource(std::shared_ptr<FolderFiles> shared, std::vector<int64_t> rows)
      : shared_(std::move(shared)), rows_(std::move(rows)) {}
  int64_t size() const override { return static_cast<int64_t>(rows_.size()); }
  int channels() const override { return shared_->options.channels; }

  Tensor load(int64_t i) const override {
    const int64_t n = size();
    SELFSUP_CHECK(i >= 0 && i < n, "image folder: image ", i, " outside [0, ", n, ") of '", shared_->root, "'");
    FolderFiles& s = *shared_;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t file = rows_[static_cast<size_t>((i + k) % n)];
      {
        std::lock_guard<std::mutex> lk(s.mu);
        if (s.bad.count(file)) continue;
      }
      Tensor img;
      const std::string error = decode(s.files[file], s.options.channels, &img);
      if (error.empty()) return img;
      SELFSUP_CHECK(!s.options.strict, "image folder: '", s.files[file], "': ", error,
                    " (--strict: unreadable files are errors; without it they are skipped with a warning)");
      std::lock_guard<std::mutex> lk(s.mu);
      if (s.bad.insert(file).second)
        std::fprintf(stderr,
                     "warning: image folder: skipping '%s': %s (%zu unreadable when decoded so far, of %zu files "
                     "under '%s'; each one's place is taken by the next readable image)\n",
                     s.files[file].c_str(), error.c_str(), s.bad.size(), s.files.size(), s.root.c_str());
    }
    throw Error(str_cat("image folder: none of the ", n, " images under '", s.root, "' could be decoded"));
  }

  std::shared_ptr<const ImageSource> select(const std::vector<int64_t>& ids) const override {
    std::vector<int64_t> rows;
    rows.reserve(ids.size());
    for (int64_t i : ids) {
      SELFSUP_CHECK(i >= 0 && i < size(), "image folder: index ", i, " outside [0, ", size(), ") of '",
                    shared_->root, "'");
      rows.push_back(rows_[static_cast<size_t>(i)]);
    }
    return std::make_shared<FolderSource>(shared_, std::move(rows));
  }

 private:
  std::shared_ptr<FolderFiles> shared_;
  std::vector<int64_t> rows_;  // image -> index into shared_->files
};

// The layout: sorted class subdirectories, each one's image files sorted by name, with their labels.
void list_folder(const std::string& root, std::vector<std::string>* classes, std::vector<std::string>* files,
                 std::vector<int64_t>* labels) {
  data_detail::require_exists(root, "image folder");
  SELFSUP_CHECK(fs::is_directory(root), "image folder: '", root, "' is not a directory");
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) classes->push_back(e.path().filename().string());
  std::sort(classes->begin(), classes->end());
  SELFSUP_CHECK(!classes->empty(), "image folder: '", root,
                "' has no class subdirectories (expected root/<class_name>/<image>.png|jpg|jpeg|bmp)");
  for (size_t c = 0; c < classes->size(); ++c) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::directory_iterator(fs::path(root) / (*classes)[c]))
      if (e.is_regular_file() && is_image_file(e.path())) in_class.push_back(e.path().string());
    std::sort(in_class.begin(), in_class.end());
    for (auto& f : in_class) {
      files->push_back(std::move(f));
      labels->push_back(static_cast<int64_t>(c));
    }
  }
  SELFSUP_CHECK(!files->empty(), "image folder: no images (.png .jpg .jpeg .bmp) in the class directories of '",
                root, "'");
}

}  // namespace

int64_t ImageFolderCensus::images() const {
  int64_t n = 0;
  for (int64_t c : per_class) n += c;
  return n;
}

ImageFolderCensus census_image_folder(const std::string& root) {
  ImageFolderCensus out;
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  list_folder(root, &out.classes, &files, &labels);
  const int64_t n = static_cast<int64_t>(files.size());
  std::vector<Header> headers(files.size());
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < n; ++i) headers[i] = read_header(files[i]);
  out.per_class.assign(out.classes.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    const Header& hd = headers[i];
    if (!hd.error.empty()) {
      out.unreadable.push_back(files[i] + ": " + hd.error);
      continue;
    }
    ++out.per_class[static_cast<size_t>(labels[i])];
    ++out.sizes[{hd.w, hd.h}];
    ++out.channels[hd.comp];
  }
  return out;
}

Tensor decode_image_file(const std::string& path, int channels) {
  SELFSUP_CHECK(channels == 1 || channels == 3, "image folder: channels must be 1 or 3, got ", channels);
  Tensor img;
  const std::string error = decode(path, channels, &img);
  SELFSUP_CHECK(error.empty(), "image folder: '", path, "': ", error);
  return img;
}

ImageDataset open_image_folder(const std::string& root, const ImageFolderOptions& opt, ImageFolderInfo* info) {
  SELFSUP_CHECK(opt.channels == 1 || opt.channels == 3, "image folder: channels must be 1 or 3, got ",
                opt.channels);
  std::vector<std::string> classes, files;
  std::vector<int64_t> file_labels;
  list_folder(root, &classes, &files, &file_labels);

  const int64_t n_files = static_cast<int64_t>(files.size());
  std::vector<std::string> problems(files.size());
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < n_files; ++i) problems[i] = read_header(files[i]).error;

  auto shared = std::make_shared<FolderFiles>();
  shared->root = root;
  shared->options = opt;
  std::vector<int64_t> labels;
  std::vector<std::string> skipped;
  for (int64_t i = 0; i < n_files; ++i) {
    if (problems[i].empty()) {
      shared->files.push_back(files[i]);
      labels.push_back(file_labels[i]);
      continue;
    }
    SELFSUP_CHECK(!opt.strict, "image folder: '", files[i], "': ", problems[i],
                  " (--strict: unreadable files are errors; without it they are skipped with a warning)");
    std::fprintf(stderr, "warning: image folder: skipping '%s': %s\n", files[i].c_str(), problems[i].c_str());
    skipped.push_back(files[i] + ": " + problems[i]);
  }
  if (!skipped.empty())
    std::fprintf(stderr, "warning: image folder: skipped %zu of %lld files under '%s'\n", skipped.size(),
                 static_cast<long long>(n_files), root.c_str());
  SELFSUP_CHECK(!shared->files.empty(), "image folder: none of the ", n_files, " files under '", root,
                "' could be decoded");
  const int64_t n = static_cast<int64_t>(shared->files.size());
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[i] = i;
  ImageDataset ds;
  ds.source = std::make_shared<FolderSource>(shared, std::move(rows));
  ds.labels = Tensor::from_vector(labels, {n});
  ds.num_classes = static_cast<int64_t>(classes.size());
  ds.name = "folder:" + root;
  ds.class_names = classes;
  if (info) {
    info->classes = classes;
    info->files = shared->files;
    info->skipped = skipped;
  }
  return ds;
}

}  // namespace selfsup
