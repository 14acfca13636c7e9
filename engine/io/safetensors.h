// safetensors (huggingface/safetensors) read/write, so weights move between selfsup and PyTorch.
//
// Layout: an 8-byte little-endian unsigned header length N, then N bytes of JSON (padded with spaces to a
// multiple of 8), then the data buffer. The JSON maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets in bytes relative to the data buffer, row-major little-endian data) and may hold
// "__metadata__": {string: string}. Supported dtypes: F32, F64, BF16, F16, I64, I32, U8, BOOL.
// As the reference implementation does, the reader requires the tensors to tile the data buffer exactly:
// each [begin, end) holds numel * dtype size bytes, no two overlap, no gaps, nothing after the last.
//
// Checksum (optional, ours): a writer asked for it records in __metadata__, under kSafetensorsChecksumKey,
// the CRC-32 (zlib's) of the whole file as 8 lowercase hex digits, computed with those 8 digits read as
// '0'. Every byte of the file is covered, header and data, so a truncated, zeroed or bit-flipped file fails
// to load. Readers verify it whenever it is present; files without it (other writers, older selfsup files)
// load unchecked. Other readers see one more metadata string.
//
// Every malformed input raises selfsup::Error naming the file, the tensor and what was expected; no input
// crashes the reader or makes it allocate more than the file's size.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/core/tensor_map.h"

namespace selfsup {

using Metadata = std::map<std::string, std::string>;

constexpr const char* kSafetensorsChecksumKey = "selfsup.crc32";

struct SafetensorsFile {
  TensorMap tensors;  // CPU tensors, contiguous, the file's dtypes
  Metadata metadata;
};

// Writes atomically (engine/io/atomic_file.h): the previous file at `path` survives any failure. Tensors
// may live on any device, in any layout; they are written contiguous, on the CPU, in their dtype.
// `checksum` records the file's CRC-32 (above); without it the file is byte-identical to the reference
// writer's.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {},
                      bool checksum = false);

SafetensorsFile load_safetensors(const std::string& path);

// Copies the file's tensors into existing tensors (a module's parameters and buffers), converting dtypes.
// The file's shapes must equal the destination's. strict: a destination key missing from the file, or a file
// key the destination lacks, is an error; non-strict: only the common keys are copied. Everything is
// validated before anything is copied. Returns the keys that were copied.
std::vector<std::string> load_safetensors_into(const std::string& path, const TensorMap& destination,
                                               bool strict = true);

// In-memory forms (the file functions use these; tests craft files with them).
std::vector<uint8_t> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {},
                                           bool checksum = false);
// `source` names the bytes in error messages (usually the file path).
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& source);

// "F32" <-> DType. safetensors_dtype throws for names outside the supported set.
const char* safetensors_dtype_name(DType dt);
DType safetensors_dtype(const std::string& name, const std::string& context);

}  // namespace selfsup
