// safetensors reader and writer (format in safetensors.h). The header is parsed and validated completely
// before any tensor is allocated, so a hostile header cannot make us allocate or read out of bounds.
#include "engine/io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include <zlib.h>

#include "engine/autograd/grad_mode.h"
#include "engine/io/atomic_file.h"

namespace selfsup {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// ---------------------------------------------------------------- header parsing

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// A non-negative JSON integer; `what` names it in the error.
uint64_t json_uint(const json& v, const std::string& src, const std::string& what) {
  SELFSUP_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0), "safetensors '", src,
                "': ", what, " must be a non-negative integer, got ", v.dump());
  return v.get<uint64_t>();
}

// Parses and validates the JSON header against a data buffer of `data_size` bytes.
std::vector<Entry> parse_header(const char* text, size_t n, uint64_t data_size, const std::string& src,
                                Metadata* metadata) {
  json h;
  try {
    h = json::parse(text, text + n);
  } catch (const json::exception& e) {
    throw_error(str_cat("safetensors '", src, "': invalid JSON header: ", e.what()));
  }
  SELFSUP_CHECK(h.is_object(), "safetensors '", src, "': the header must be a JSON object, got ", h.type_name());
  std::vector<Entry> entries;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      SELFSUP_CHECK(v.is_object(), "safetensors '", src, "': __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        SELFSUP_CHECK(m.value().is_string(), "safetensors '", src, "': __metadata__ entry '", m.key(),
                      "' must be a string, got ", m.value().dump());
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string ctx = str_cat("tensor '", key, "'");
    SELFSUP_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                  "safetensors '", src, "': ", ctx, " needs an object with dtype, shape and data_offsets, got ",
                  v.dump());
    SELFSUP_CHECK(v["dtype"].is_string(), "safetensors '", src, "': ", ctx, ": dtype must be a string");
    Entry e;
    e.name = key;
    e.dtype = safetensors_dtype(v["dtype"].get<std::string>(), str_cat("safetensors '", src, "': ", ctx));
    SELFSUP_CHECK(v["shape"].is_array(), "safetensors '", src, "': ", ctx, ": shape must be an array");
    uint64_t nbytes = dtype_size(e.dtype);
    for (const json& d : v["shape"]) {
      uint64_t dim = json_uint(d, src, ctx + " shape entry");
      SELFSUP_CHECK(dim < (uint64_t{1} << 62) && !__builtin_mul_overflow(nbytes, dim, &nbytes), "safetensors '", src,
                    "': ", ctx, ": shape ", v["shape"].dump(), " is too large");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& off = v["data_offsets"];
    SELFSUP_CHECK(off.is_array() && off.size() == 2, "safetensors '", src, "': ", ctx,
                  ": data_offsets must be [begin, end], got ", off.dump());
    e.begin = json_uint(off[0], src, ctx + " data_offsets");
    e.end = json_uint(off[1], src, ctx + " data_offsets");
    SELFSUP_CHECK(e.begin <= e.end, "safetensors '", src, "': ", ctx, ": data_offsets [", e.begin, ", ", e.end,
                  "] end before they begin");
    SELFSUP_CHECK(e.end <= data_size, "safetensors '", src, "': ", ctx, ": data_offsets [", e.begin, ", ", e.end,
                  "] lie outside the data buffer (", data_size, " bytes; the file is truncated or the offsets wrong)");
    SELFSUP_CHECK(e.end - e.begin == nbytes, "safetensors '", src, "': ", ctx, ": data_offsets [", e.begin, ", ",
                  e.end, "] hold ", e.end - e.begin, " bytes but dtype ", safetensors_dtype_name(e.dtype),
                  " and shape ", shape_str(e.shape), " need ", nbytes);
    entries.push_back(std::move(e));
  }
  // The tensors must tile [0, data_size): sorted by offset, each starts where the previous ended.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    SELFSUP_CHECK(e->begin >= pos, "safetensors '", src, "': tensors '", prev ? prev->name : "", "' [", prev ? prev->begin : 0,
                  ", ", pos, ") and '", e->name, "' [", e->begin, ", ", e->end, ") overlap");
    SELFSUP_CHECK(e->begin == pos, "safetensors '", src, "': a gap of ", e->begin - pos, " bytes before tensor '",
                  e->name, "' (data_offsets begin at ", e->begin, ", the previous tensor ends at ", pos, ")");
    pos = e->end;
    prev = e;
  }
  SELFSUP_CHECK(pos == data_size, "safetensors '", src, "': ", data_size - pos,
                " bytes of data after the last tensor (the tensors cover ", pos, " of ", data_size, " bytes)");
  return entries;
}

// Reads and checks the 8-byte length prefix; returns the header length.
uint64_t check_prefix(const uint8_t* prefix, uint64_t file_size, const std::string& src) {
  SELFSUP_CHECK(file_size >= 8, "safetensors '", src, "': truncated: ", file_size,
                " bytes, but a safetensors file starts with an 8-byte header length");
  const uint64_t n = read_u64_le(prefix);
  SELFSUP_CHECK(n <= kMaxHeaderBytes, "safetensors '", src, "': header length ", n, " exceeds the limit of ",
                kMaxHeaderBytes, " bytes (not a safetensors file?)");
  SELFSUP_CHECK(n <= file_size - 8, "safetensors '", src, "': header length ", n, " is beyond the end of the file (",
                file_size, " bytes: truncated?)");
  return n;
}

// ---------------------------------------------------------------- writing

struct Layout {
  std::string header;                                   // padded JSON
  std::vector<std::pair<std::string, Tensor>> tensors;  // in data order, contiguous CPU
  uint64_t data_size = 0;
};

const void* bytes_of(const Tensor& t) { return t.numel() > 0 ? t.raw_data() : nullptr; }

uint32_t crc_update(uint32_t crc, const void* p, uint64_t n) {
  return n ? static_cast<uint32_t>(crc32_z(crc, static_cast<const Bytef*>(p), static_cast<z_size_t>(n))) : crc;
}

// The checksum's value in the header text is `"<key>":"<8 hex digits>"`: JSON escapes every quote inside a
// string, so this pattern can only be the metadata entry itself.
std::string checksum_pattern() { return str_cat("\"", kSafetensorsChecksumKey, "\":\""); }
constexpr const char* kZeroDigits = "00000000";

// CRC-32 of the 8-byte length prefix, the header (as given: the caller puts kZeroDigits in the checksum's
// place) and the data buffer, fed by `data` in file order.
template <typename FeedData>
uint32_t file_crc(const std::string& header, FeedData data) {
  const uint64_t n = header.size();
  uint32_t crc = crc_update(static_cast<uint32_t>(crc32_z(0, Z_NULL, 0)), &n, 8);
  crc = crc_update(crc, header.data(), n);
  data([&](const void* p, uint64_t size) { crc = crc_update(crc, p, size); });
  return crc;
}

std::string hex8(uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Verifies the checksum a header records (if any) against the file's bytes; `data` feeds the data buffer.
template <typename FeedData>
void verify_checksum(const std::string& header, const Metadata& md, const std::string& src, FeedData data) {
  auto it = md.find(kSafetensorsChecksumKey);
  if (it == md.end()) return;  // files without a checksum (older selfsup files, other writers) load unchecked
  const std::string& recorded = it->second;
  const bool hex = recorded.size() == 8 && std::all_of(recorded.begin(), recorded.end(), [](char c) {
                     return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                   });
  SELFSUP_CHECK(hex, "safetensors '", src, "': metadata '", kSafetensorsChecksumKey, "' is '", recorded,
                "', expected 8 lowercase hex digits (the file is damaged)");
  const std::string pattern = checksum_pattern() + recorded + "\"";
  const size_t pos = header.find(pattern);
  SELFSUP_CHECK(pos != std::string::npos && header.rfind(pattern) == pos, "safetensors '", src,
                "': the checksum entry is not in its written form (the file is damaged)");
  std::string zeroed = header;
  zeroed.replace(pos + checksum_pattern().size(), 8, kZeroDigits);
  const std::string actual = hex8(file_crc(zeroed, data));
  SELFSUP_CHECK(actual == recorded, "safetensors '", src, "': checksum mismatch: the file records crc32 ", recorded,
                " but its bytes give ", actual, " (the file is damaged: truncated, overwritten or bit-flipped)");
}

Layout plan(const TensorMap& tensors, const Metadata& metadata_in, bool checksum) {
  Layout L;
  Metadata metadata = metadata_in;
  if (checksum) {
    SELFSUP_CHECK(!metadata.count(kSafetensorsChecksumKey), "safetensors: metadata '", kSafetensorsChecksumKey,
                  "' is reserved for the checksum the writer records");
    metadata[kSafetensorsChecksumKey] = kZeroDigits;
  }
  NoGradGuard no_grad;
  for (const auto& [name, t] : tensors) {
    SELFSUP_CHECK(name != "__metadata__", "safetensors: '__metadata__' cannot name a tensor");
    SELFSUP_CHECK(t.defined(), "safetensors: tensor '", name, "' is undefined");
    Tensor c = t.detach();
    if (c.device() != Device::cpu()) c = c.to(Device::cpu());
    L.tensors.emplace_back(name, c.contiguous());
  }
  // The reference writer's order (its Dtype enum, descending, then name), so our files are byte-identical
  // to the `safetensors` package's. It puts wider dtypes first: every tensor stays aligned to its element
  // size, since the data buffer starts at a multiple of 8.
  auto rank = [](DType dt) {
    switch (dt) {
      case DType::b8: return 0;
      case DType::u8: return 1;
      case DType::f16: return 7;
      case DType::bf16: return 8;
      case DType::i32: return 9;
      case DType::f32: return 11;
      case DType::f64: return 12;
      case DType::i64: return 13;
    }
    return 0;
  };
  std::stable_sort(L.tensors.begin(), L.tensors.end(), [&](const auto& a, const auto& b) {
    return rank(a.second.dtype()) > rank(b.second.dtype());
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();  // keys in data order, as the reference writes
  if (!metadata.empty()) h["__metadata__"] = metadata;
  for (const auto& [name, t] : L.tensors) {
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    h[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
               {"shape", std::vector<int64_t>(t.sizes().begin(), t.sizes().end())},
               {"data_offsets", {L.data_size, L.data_size + nbytes}}};
    L.data_size += nbytes;
  }
  L.header = h.dump();
  L.header.append((8 - L.header.size() % 8) % 8, ' ');
  if (checksum) {
    const size_t pos = L.header.find(checksum_pattern() + kZeroDigits + "\"") + checksum_pattern().size();
    const uint32_t crc = file_crc(L.header, [&](auto&& feed) {
      for (const auto& [name, t] : L.tensors) feed(bytes_of(t), static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype()));
    });
    L.header.replace(pos, 8, hex8(crc));
  }
  return L;
}

// bool tensors must hold 0 or 1 (other bytes would be undefined behaviour when read as bool).
void check_bool_values(const Tensor& t, const std::string& name, const std::string& src) {
  if (t.dtype() != DType::b8) return;
  const uint8_t* p = static_cast<const uint8_t*>(t.numel() ? t.raw_data() : nullptr);
  for (int64_t i = 0; i < t.numel(); ++i)
    SELFSUP_CHECK(p[i] <= 1, "safetensors '", src, "': tensor '", name, "': BOOL element ", i, " is ",
                  static_cast<int>(p[i]), " (expected 0 or 1)");
}

// ---------------------------------------------------------------- files

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

void read_exact(FILE* f, void* dst, uint64_t n, uint64_t offset, const std::string& src) {
  if (n == 0) return;
  SELFSUP_CHECK(::fseeko(f, static_cast<off_t>(offset), SEEK_SET) == 0, "safetensors '", src, "': seek failed");
  SELFSUP_CHECK(std::fread(dst, 1, n, f) == n, "safetensors '", src, "': read of ", n, " bytes at offset ", offset,
                " failed (file changed while reading?)");
}

}  // namespace

const char* safetensors_dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i64: return "I64";
    case DType::i32: return "I32";
    case DType::u8: return "U8";
    case DType::b8: return "BOOL";
  }
  return "?";
}

DType safetensors_dtype(const std::string& name, const std::string& context) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i64, DType::i32, DType::u8, DType::b8})
    if (name == safetensors_dtype_name(dt)) return dt;
  throw_error(str_cat(context, ": unsupported dtype '", name, "' (supported: F32, F64, BF16, F16, I64, I32, U8, BOOL)"));
}

std::vector<uint8_t> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata, bool checksum) {
  Layout L = plan(tensors, metadata, checksum);
  std::vector<uint8_t> out(8 + L.header.size() + L.data_size);
  const uint64_t n = L.header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, L.header.data(), n);
  uint8_t* p = out.data() + 8 + n;
  for (const auto& [name, t] : L.tensors) {
    const size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    if (nbytes) std::memcpy(p, bytes_of(t), nbytes);
    p += nbytes;
  }
  return out;
}

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& src) {
  const uint64_t n = check_prefix(data, size, src);
  SafetensorsFile f;
  const uint8_t* base = data + 8 + n;
  const std::string header(reinterpret_cast<const char*>(data + 8), n);
  const std::vector<Entry> entries = parse_header(header.data(), n, size - 8 - n, src, &f.metadata);
  // The tensors tile the data buffer, so it is fed whole.
  verify_checksum(header, f.metadata, src, [&](auto&& feed) { feed(base, size - 8 - n); });
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), base + e.begin, e.end - e.begin);
    check_bool_values(t, e.name, src);
    f.tensors[e.name] = t;
  }
  return f;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata, bool checksum) {
  Layout L = plan(tensors, metadata, checksum);
  AtomicFileWriter w(path);
  const uint64_t n = L.header.size();
  w.write(&n, 8);
  w.write(L.header.data(), n);
  for (const auto& [name, t] : L.tensors)
    w.write(bytes_of(t), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  w.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
  struct stat st;
  SELFSUP_CHECK(::stat(path.c_str(), &st) == 0, "safetensors '", path, "': cannot open: ", std::strerror(errno));
  SELFSUP_CHECK(S_ISREG(st.st_mode), "safetensors '", path, "': not a regular file");
  FilePtr f(std::fopen(path.c_str(), "rb"));
  SELFSUP_CHECK(f != nullptr, "safetensors '", path, "': cannot open: ", std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint8_t prefix[8] = {0};
  if (file_size >= 8) read_exact(f.get(), prefix, 8, 0, path);
  const uint64_t n = check_prefix(prefix, file_size, path);
  std::string header(n, '\0');
  read_exact(f.get(), header.data(), n, 8, path);
  SafetensorsFile out;
  std::vector<Entry> entries = parse_header(header.data(), n, file_size - 8 - n, path, &out.metadata);
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    read_exact(f.get(), t.numel() ? t.raw_data() : nullptr, e.end - e.begin, 8 + n + e.begin, path);
    out.tensors[e.name] = t;
  }
  // Before the BOOL check, so a damaged file reports its damage. The tensors tile the data buffer: fed in
  // offset order they are the buffer.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  verify_checksum(header, out.metadata, path, [&](auto&& feed) {
    for (const Entry& e : entries) feed(bytes_of(out.tensors.at(e.name)), e.end - e.begin);
  });
  for (const Entry& e : entries) check_bool_values(out.tensors.at(e.name), e.name, path);
  return out;
}

std::vector<std::string> load_safetensors_into(const std::string& path, const TensorMap& destination, bool strict) {
  SafetensorsFile file = load_safetensors(path);
  std::vector<std::string> missing, unexpected, copied;
  for (const auto& [k, t] : destination)
    if (!file.tensors.count(k)) missing.push_back(k);
  for (const auto& [k, t] : file.tensors)
    if (!destination.count(k)) unexpected.push_back(k);
  auto list = [](const std::vector<std::string>& keys) {
    std::string s;
    for (size_t i = 0; i < keys.size() && i < 8; ++i) s += (i ? ", '" : "'") + keys[i] + "'";
    if (keys.size() > 8) s += str_cat(" and ", keys.size() - 8, " more");
    return s;
  };
  if (strict) {
    SELFSUP_CHECK(missing.empty() && unexpected.empty(), "safetensors '", path, "': keys do not match the destination",
                  missing.empty() ? "" : str_cat("; missing from the file: ", list(missing)),
                  unexpected.empty() ? "" : str_cat("; unexpected in the file: ", list(unexpected)));
  }
  for (const auto& [k, t] : destination) {
    auto it = file.tensors.find(k);
    if (it == file.tensors.end()) continue;
    SELFSUP_CHECK(t.defined(), "safetensors '", path, "': destination tensor '", k, "' is undefined");
    SELFSUP_CHECK(it->second.sizes() == t.sizes(), "safetensors '", path, "': tensor '", k, "' has shape ",
                  shape_str(it->second.sizes()), " in the file but the destination expects ", shape_str(t.sizes()));
  }
  NoGradGuard no_grad;
  for (const auto& [k, t] : destination) {
    auto it = file.tensors.find(k);
    if (it == file.tensors.end()) continue;
    Tensor dst = t;
    dst.copy_(it->second.to(t.device()));
    copied.push_back(k);
  }
  return copied;
}

}  // namespace selfsup
