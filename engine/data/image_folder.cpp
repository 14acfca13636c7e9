#include "engine/data/image_folder.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "engine/data/file_util.h"
#include "kernels/augment_api.h"

namespace selfsup {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

struct Decoded {
  std::vector<uint8_t> pixels;  // (h, w, C)
  int h = 0, w = 0;
  std::string error;  // empty when decoded
};

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

Decoded decode(const std::string& path, int channels, int rh, int rw) {
  Decoded d;
  std::vector<uint8_t> bytes;
  try {
    bytes = data_detail::read_file_bytes(path, "image folder");
  } catch (const Error& e) {
    d.error = e.what();
    return d;
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    d.error = str_cat("file of ", bytes.size(), " bytes is too large to decode (stb_image reads at most 2 GiB)");
    return d;
  }
  const char* format = image_format(bytes);
  if (format == nullptr) {
    d.error = "not a PNG, JPEG or BMP file (its first bytes are none of theirs)";
    return d;
  }
  if (std::strcmp(format, "JPEG") == 0) d.error = jpeg_table_problem(bytes);
  if (std::strcmp(format, "PNG") == 0) d.error = png_chunk_problem(bytes);
  if (!d.error.empty()) return d;
  int w = 0, h = 0, comp = 0;
  // The size from the header first: a header claiming a huge image is refused before stb allocates for it.
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    d.error = std::string("cannot decode: ") + (why ? why : "unknown error");
    return d;
  }
  if (w <= 0 || h <= 0) {  // stb accepts a BMP of height 0 (image fuzz target): no pixels to learn from
    d.error = str_cat("its header says ", w, "x", h, " pixels, an empty image");
    return d;
  }
  if (static_cast<int64_t>(w) * h > kMaxImagePixels) {
    d.error = str_cat("its header says ", w, "x", h, " pixels, more than the reader's limit of ", kMaxImagePixels);
    return d;
  }
  if (std::strcmp(format, "BMP") == 0) d.error = bmp_size_problem(bytes, w, h);
  if (!d.error.empty()) return d;
  uint8_t* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp, channels);
  if (px == nullptr) {
    const char* why = stbi_failure_reason();
    d.error = std::string("cannot decode: ") + (why ? why : "unknown error");
    return d;
  }
  if (rh > 0 && rw > 0 && (h != rh || w != rw)) {
    d.pixels.resize(static_cast<size_t>(rh) * rw * channels);
    resize_image_u8(px, h, w, channels, d.pixels.data(), rh, rw);
    d.h = rh;
    d.w = rw;
  } else {
    d.pixels.assign(px, px + static_cast<size_t>(h) * w * channels);
    d.h = h;
    d.w = w;
  }
  stbi_image_free(px);
  return d;
}

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
  struct Header {
    int w = 0, h = 0, comp = 0;
    std::string error;
  };
  const int64_t n = static_cast<int64_t>(files.size());
  std::vector<Header> headers(files.size());
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < n; ++i) {
    Header& hd = headers[i];
    // stbi_info reads the header only; it fails for a file that is not an image or is cut before its size.
    if (!stbi_info(files[i].c_str(), &hd.w, &hd.h, &hd.comp)) {
      const char* why = stbi_failure_reason();
      hd.error = std::string("cannot read the image header: ") + (why ? why : "unknown error");
    }
  }
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

void resize_image_u8(const uint8_t* src, int H, int W, int C, uint8_t* dst, int h, int w) {
  std::vector<float> planar(static_cast<size_t>(C) * h * w);
  kernels::aug_resized_crop_u8_cpu(C, H, W, src, 0, 0, H, W, false, h, w, planar.data());
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (int64_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c) {
      const float v = planar[c * plane + i] * 255.0f + 0.5f;
      dst[i * C + c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
}

ImageDataset load_image_folder(const std::string& root, const ImageFolderOptions& opt, ImageFolderInfo* info) {
  SELFSUP_CHECK(opt.channels == 1 || opt.channels == 3, "image folder: channels must be 1 or 3, got ",
                opt.channels);
  SELFSUP_CHECK((opt.resize_h > 0) == (opt.resize_w > 0) && opt.resize_h >= 0 && opt.resize_w >= 0,
                "image folder: resize needs both a height and a width > 0, got ", opt.resize_h, "x",
                opt.resize_w);
  std::vector<std::string> classes, files;
  std::vector<int64_t> file_labels;
  list_folder(root, &classes, &files, &file_labels);

  const int64_t n_files = static_cast<int64_t>(files.size());
  std::vector<Decoded> decoded(files.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n_files; ++i) decoded[i] = decode(files[i], opt.channels, opt.resize_h, opt.resize_w);

  std::vector<int64_t> keep;
  std::vector<std::string> skipped;
  for (int64_t i = 0; i < n_files; ++i) {
    if (decoded[i].error.empty()) {
      keep.push_back(i);
      continue;
    }
    SELFSUP_CHECK(!opt.strict, "image folder: '", files[i], "': ", decoded[i].error,
                  " (--strict: unreadable files are errors; without it they are skipped with a warning)");
    std::fprintf(stderr, "warning: image folder: skipping '%s': %s\n", files[i].c_str(), decoded[i].error.c_str());
    skipped.push_back(files[i] + ": " + decoded[i].error);
  }
  if (!skipped.empty())
    std::fprintf(stderr, "warning: image folder: skipped %zu of %lld files under '%s'\n", skipped.size(),
                 static_cast<long long>(n_files), root.c_str());
  SELFSUP_CHECK(!keep.empty(), "image folder: none of the ", n_files, " files under '", root, "' could be decoded");

  const Decoded& first = decoded[keep[0]];
  for (int64_t i : keep) {
    SELFSUP_CHECK(decoded[i].h == first.h && decoded[i].w == first.w, "image folder: '", files[i], "' is ",
                  decoded[i].w, "x", decoded[i].h, " but '", files[keep[0]], "' is ", first.w, "x", first.h,
                  "; images must share one size (ask for a resize, e.g. --resize ", first.h, ")");
  }
  const int64_t n = static_cast<int64_t>(keep.size());
  const int64_t bytes = static_cast<int64_t>(first.h) * first.w * opt.channels;
  ImageDataset ds;
  ds.images = Tensor::empty({n, first.h, first.w, opt.channels}, DType::u8);
  ds.labels = Tensor::empty({n}, DType::i64);
  ds.num_classes = static_cast<int64_t>(classes.size());
  ds.name = "folder:" + root;
  ds.class_names = classes;
  uint8_t* img = ds.images.data_ptr<uint8_t>();
  int64_t* lab = ds.labels.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k) {
    std::memcpy(img + k * bytes, decoded[keep[k]].pixels.data(), static_cast<size_t>(bytes));
    lab[k] = file_labels[keep[k]];
  }
  if (info) {
    info->classes = classes;
    info->files.clear();
    for (int64_t i : keep) info->files.push_back(files[i]);
    info->skipped = skipped;
  }
  return ds;
}

}  // namespace selfsup
