// safetensors: round trips over every dtype, the layout rules, a file written for PyTorch (and one for
// PyTorch to read), crafted bad inputs (each a clear selfsup::Error naming the file and tensor, never a
// crash), loading into existing tensors, and atomic replacement.
#include <doctest/doctest.h>

#include <cstdlib>
#include <random>

#include "engine/io/atomic_file.h"
#include "engine/io/safetensors.h"
#include "engine/ops/ops.h"
#include "tests/io/io_test_util.h"

using namespace selfsup;
using namespace selfsup::testing;

namespace {

Tensor vec(std::vector<double> v, DType dt, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<int64_t>(v.size())};
  return Tensor::from_vector(v, shape).to(dt);
}

// The tensors test_io writes for PyTorch (mirrored in make_io_fixtures.py: expected_export()).
TensorMap export_tensors() {
  TensorMap m;
  m["linear.weight"] = sub(mul(Tensor::arange(0, 12, 1, DType::f32), 0.5), 2.0).reshape({3, 4});
  m["linear.bias"] = vec({0.25, -1.0, 3.0}, DType::f32);
  m["transposed"] = Tensor::arange(0, 6, 1, DType::f64).reshape({2, 3}).t();
  m["steps"] = Tensor::from_vector(std::vector<int64_t>{123456789012}, {});
  m["half"] = vec({1.0, -0.5, 2048.0}, DType::f16);
  m["brain"] = vec({1.0, -3.5, 0.15625}, DType::bf16);
  m["flags"] = vec({0, 1}, DType::b8);
  m["bytes"] = vec({9, 200}, DType::u8);
  m["i32"] = vec({-5, 6}, DType::i32);
  return m;
}

void check_same(const TensorMap& a, const TensorMap& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) {
    REQUIRE_MESSAGE(b.count(k), k);
    const Tensor& u = b.at(k);
    CHECK_MESSAGE(t.dtype() == u.dtype(), k);
    CHECK_MESSAGE(t.sizes() == u.sizes(), k);
    CHECK_MESSAGE(t.to_vector() == u.to_vector(), k);
  }
}

// Loading `bytes` fails with an Error whose message names the file and contains every fragment.
void expect_bad(const TempDir& dir, const std::vector<uint8_t>& bytes, const std::vector<std::string>& fragments) {
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  std::string msg;
  try {
    load_safetensors(path);
    FAIL("no error for a bad file; expected: ", fragments[0]);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_MESSAGE(msg.find(path) != std::string::npos, msg);
  for (const auto& f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "'", f, "' not in: ", msg);
  // The in-memory parser agrees.
  CHECK_THROWS_AS(parse_safetensors(bytes.data(), bytes.size(), path), Error);
}

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

TEST_CASE("round trip of every dtype, scalars, empty and non-contiguous tensors, metadata") {
  TempDir dir;
  TensorMap m = export_tensors();
  m["empty"] = Tensor::zeros({0, 3});
  m["x64"] = vec({1e-300, -2.5, 3e300}, DType::f64);
  m["i64"] = Tensor::from_vector(std::vector<int64_t>{INT64_MIN, -1, INT64_MAX}, {3});
  const Metadata md = {{"format", "pt"}, {"note", "unicode \xc3\xa9 and \"quotes\""}};
  const std::string path = dir.file("m.safetensors");
  save_safetensors(path, m, md);
  SafetensorsFile f = load_safetensors(path);
  check_same(m, f.tensors);
  CHECK(f.metadata == md);
  CHECK(f.tensors.at("transposed").is_contiguous());
  CHECK(f.tensors.at("steps").dim() == 0);
  // The file and the in-memory serialisation agree byte for byte.
  CHECK(read_bytes(path) == serialize_safetensors(m, md));
  check_same(m, parse_safetensors(read_bytes(path).data(), read_bytes(path).size(), path).tensors);
}

TEST_CASE("layout: header padded to 8 bytes, tensors aligned to their element size, widest first") {
  TensorMap m = {{"a_u8", vec({1, 2, 3}, DType::u8)},
                 {"b_f64", vec({1, 2}, DType::f64)},
                 {"c_f16", vec({1}, DType::f16)},
                 {"d_f32", vec({1, 2, 3}, DType::f32)}};
  std::vector<uint8_t> bytes = serialize_safetensors(m);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<int64_t>(n));
  CHECK(header.rfind(
            "{\"b_f64\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
            "\"d_f32\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[16,28]},"
            "\"c_f16\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[28,30]},"
            "\"a_u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[30,33]}}",
            0) == 0);
  CHECK(header.find_last_not_of(' ') == header.find_last_of('}'));  // padded with spaces
  CHECK(bytes.size() == 8 + n + 33);
}

TEST_CASE("a file written for PyTorch's safetensors (make_io_fixtures.py) loads with every value") {
  const std::string path = std::string(SELFSUP_FIXTURE_DIR) + "/torch_written.safetensors";
  SafetensorsFile f = load_safetensors(path);
  CHECK(f.metadata.at("format") == "pt");
  const TensorMap& t = f.tensors;
  CHECK(t.size() == 10);
  std::vector<double> conv;
  for (int i = 0; i < 24; ++i) conv.push_back(i * 0.25 - 1.5);
  CHECK(t.at("conv1.weight").dtype() == DType::f32);
  CHECK(t.at("conv1.weight").sizes() == Shape{2, 3, 2, 2});
  CHECK(t.at("conv1.weight").to_vector() == conv);
  CHECK(t.at("bn1.running_var").to_vector() == std::vector<double>{1.5, -2.25, 1e-300});
  CHECK(t.at("bn1.num_batches_tracked").dim() == 0);
  CHECK(t.at("bn1.num_batches_tracked").item() == 7);
  CHECK(t.at("ids").to_vector() == std::vector<double>{-1, 1099511627776.0, 3});
  CHECK(t.at("half").dtype() == DType::f16);
  CHECK(t.at("half").to_vector() == std::vector<double>{1, -2, 65504, 0.5});
  CHECK(t.at("brain").dtype() == DType::bf16);
  CHECK(t.at("brain").sizes() == Shape{2, 2});
  CHECK(t.at("brain").to_vector() == std::vector<double>{1, -2, 0.5, 3.140625});
  CHECK(t.at("i32").to_vector() == std::vector<double>{-7, 2147483647});
  CHECK(t.at("pixels").dtype() == DType::u8);
  CHECK(t.at("pixels").to_vector() == std::vector<double>{0, 1, 254, 255});
  CHECK(t.at("mask").dtype() == DType::b8);
  CHECK(t.at("mask").to_vector() == std::vector<double>{1, 0, 1});
  CHECK(t.at("empty").sizes() == Shape{0, 3});
  // And we write it back byte for byte as the reference writer did.
  CHECK(serialize_safetensors(t, f.metadata) == read_bytes(path));
}

// The selfsup -> PyTorch direction. tests/fixtures/selfsup_written.safetensors is this writer's output for
// export_tensors(); make_io_fixtures.py reads it with torch (values, dtypes, shapes, metadata, and
// nn.Linear.load_state_dict) every time it runs. This test keeps the committed bytes equal to what the
// writer produces today, so the torch check covers the current writer. After a deliberate format change,
// regenerate with SELFSUP_IO_EXPORT=tests/fixtures/selfsup_written.safetensors ./build/test_io
// -tc='*written by selfsup*' and rerun the script.
TEST_CASE("the file written by selfsup for PyTorch (make_io_fixtures.py reads it with torch) is current") {
  const Metadata metadata = {{"producer", "selfsup test_io"}};
  const char* env = std::getenv("SELFSUP_IO_EXPORT");
  if (env && *env) save_safetensors(env, export_tensors(), metadata);
  const std::string path = std::string(SELFSUP_FIXTURE_DIR) + "/selfsup_written.safetensors";
  CHECK(serialize_safetensors(export_tensors(), metadata) == read_bytes(path));
  check_same(export_tensors(), load_safetensors(path).tensors);
}

TEST_CASE("crafted bad files: each a clear error naming the file and tensor") {
  TempDir dir;
  const auto data12 = f32_bytes({1, 2, 3});
  auto hdr = [](const std::string& body) { return "{" + body + "}"; };
  const std::string ok_entry = "\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}";

  SUBCASE("sanity: the well-formed base file loads") {
    write_bytes(dir.file("ok.safetensors"), craft(hdr(ok_entry), data12));
    CHECK(load_safetensors(dir.file("ok.safetensors")).tensors.at("w").to_vector() == std::vector<double>{1, 2, 3});
  }
  SUBCASE("truncated before the length prefix") {
    expect_bad(dir, {1, 2, 3}, {"truncated: 3 bytes", "8-byte header length"});
    expect_bad(dir, {}, {"truncated: 0 bytes"});
  }
  SUBCASE("header length beyond the file") {
    expect_bad(dir, craft(hdr(ok_entry), data12, 5000), {"header length 5000 is beyond the end of the file"});
    expect_bad(dir, craft(hdr(ok_entry), data12, uint64_t{1} << 60), {"exceeds the limit"});
  }
  SUBCASE("invalid JSON, or JSON of the wrong shape") {
    expect_bad(dir, craft("{\"w\": {", data12), {"invalid JSON header"});
    expect_bad(dir, craft("[1, 2]", {}), {"the header must be a JSON object"});
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[3]}"), data12),
               {"tensor 'w' needs an object with dtype, shape and data_offsets"});
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}"), data12),
               {"tensor 'w' shape entry must be a non-negative integer, got -3"});
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0]}"), data12),
               {"tensor 'w': data_offsets must be [begin, end], got [0]"});
    expect_bad(dir, craft(hdr("\"__metadata__\":{\"a\":1}," + ok_entry), data12),
               {"__metadata__ entry 'a' must be a string"});
  }
  SUBCASE("unknown dtype") {
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[0,3]}"), {1, 2, 3}),
               {"tensor 'w'", "unsupported dtype 'F8_E4M3'", "supported: F32"});
  }
  SUBCASE("offsets outside the data (also: a truncated data section)") {
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}"), data12),
               {"tensor 'w'", "data_offsets [4, 16] lie outside the data buffer (12 bytes"});
    std::vector<uint8_t> cut = craft(hdr(ok_entry), data12);
    cut.pop_back();
    expect_bad(dir, cut, {"tensor 'w'", "lie outside the data buffer (11 bytes"});
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,0]}"), data12),
               {"tensor 'w'", "end before they begin"});
  }
  SUBCASE("offsets that disagree with dtype * shape") {
    expect_bad(dir, craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}"), data12),
               {"tensor 'w'", "hold 12 bytes but dtype F32 and shape [2, 2] need 16"});
    expect_bad(dir,
               craft(hdr("\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387903, 4611686018427387903],"
                         "\"data_offsets\":[0,12]}"),
                     data12),
               {"tensor 'w'", "is too large"});
  }
  SUBCASE("overlapping tensors, gaps, bytes after the last tensor") {
    expect_bad(dir,
               craft(hdr("\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}"),
                     data12),
               {"tensors 'a' [0, 8) and 'b' [4, 12) overlap"});
    expect_bad(dir,
               craft(hdr("\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}"),
                     data12),
               {"a gap of 4 bytes before tensor 'b'"});
    std::vector<uint8_t> extra = data12;
    extra.push_back(0);
    expect_bad(dir, craft(hdr(ok_entry), extra), {"1 bytes of data after the last tensor"});
  }
  SUBCASE("BOOL bytes other than 0/1") {
    expect_bad(dir, craft(hdr("\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}"), {1, 7}),
               {"tensor 'm': BOOL element 1 is 7"});
  }
  SUBCASE("not a file") {
    CHECK_THROWS_WITH_AS(load_safetensors(dir.file("missing.safetensors")),
                         doctest::Contains("missing.safetensors': cannot open"), Error);
    CHECK_THROWS_WITH_AS(load_safetensors(dir.str()), doctest::Contains("not a regular file"), Error);
  }
}

// Every mutated input has one of two outcomes, both checked: a selfsup::Error naming the source ("fuzz"),
// or a file the reader took exactly as its header says: writing the parsed tensors and metadata back gives
// the mutated bytes (so the data bytes are the original ones and nothing was silently reinterpreted; the
// accepted edits rename a tensor or a metadata entry, or touch nothing the format reads), and when the
// header is unchanged the tensors are identical to the original ones.
TEST_CASE("no input crashes the reader: every truncation and 3000 random header corruptions") {
  TensorMap m = {{"w", vec({1, 2, 3, 4}, DType::f32, {2, 2})}, {"b", vec({5, 6}, DType::f64)},
                 {"n", Tensor::from_vector(std::vector<int64_t>{9}, {})}};
  const std::vector<uint8_t> good = serialize_safetensors(m, {{"k", "v"}});
  for (size_t len = 0; len < good.size(); ++len)
    CHECK_THROWS_WITH_AS(parse_safetensors(good.data(), len, "truncated"), doctest::Contains("truncated"), Error);
  uint64_t n;
  std::memcpy(&n, good.data(), 8);
  std::mt19937 rng(42);
  int accepted = 0, renamed = 0;
  const char alphabet[] = "{}[]\",:0123456789-eE.FIUBOL_ \x01\xff";
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> bad = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (8 + n);  // the length prefix or the header
      bad[pos] = static_cast<uint8_t>(alphabet[rng() % (sizeof(alphabet) - 1)]);
    }
    CAPTURE(trial);
    SafetensorsFile f;
    try {
      f = parse_safetensors(bad.data(), bad.size(), "fuzz");
    } catch (const Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find("'fuzz'") != std::string::npos, e.what());
      continue;
    }
    ++accepted;
    CHECK(serialize_safetensors(f.tensors, f.metadata) == bad);
    if (std::equal(good.begin(), good.begin() + 8 + n, bad.begin())) check_same(f.tensors, m);
    bool same_names = f.tensors.size() == m.size();
    for (const auto& kv : m) same_names = same_names && f.tensors.count(kv.first);
    renamed += same_names ? 0 : 1;
  }
  // With this seed: 45 of 3000 accepted, 14 of them with a renamed tensor (counts logged, not asserted).
  MESSAGE(accepted, " of 3000 corruptions accepted as valid files, ", renamed, " with a renamed tensor");
}

TEST_CASE("load into existing tensors: strict keys, shapes, dtype conversion, all-or-nothing") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"fc.weight", vec({1, 2, 3, 4, 5, 6}, DType::f64, {2, 3})}, {"fc.bias", vec({7, 8}, DType::f64)}});

  Tensor w = Tensor::zeros({2, 3});
  Tensor b = Tensor::zeros({2});
  w.set_requires_grad(true);  // parameters require grad; loading must still work (no-grad copy)
  auto copied = load_safetensors_into(path, {{"fc.weight", w}, {"fc.bias", b}});
  CHECK(copied.size() == 2);
  CHECK(w.dtype() == DType::f32);
  CHECK(w.to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
  CHECK(b.to_vector() == std::vector<double>{7, 8});

  Tensor w2 = Tensor::zeros({3, 2});
  Tensor b2 = Tensor::zeros({2});
  CHECK_THROWS_WITH_AS(load_safetensors_into(path, {{"fc.weight", w2}, {"fc.bias", b2}}),
                       doctest::Contains("tensor 'fc.weight' has shape [2, 3] in the file but the destination expects [3, 2]"),
                       Error);
  CHECK(b2.to_vector() == std::vector<double>{0, 0});  // nothing copied
  CHECK_THROWS_WITH_AS(load_safetensors_into(path, {{"fc.weight", w}, {"fc.bias", b}, {"fc.scale", b2}}),
                       doctest::Contains("missing from the file: 'fc.scale'"), Error);
  CHECK_THROWS_WITH_AS(load_safetensors_into(path, {{"fc.weight", w}}),
                       doctest::Contains("unexpected in the file: 'fc.bias'"), Error);
  Tensor w3 = Tensor::zeros({2, 3}, DType::f64);
  copied = load_safetensors_into(path, {{"fc.weight", w3}, {"other", b2}}, /*strict=*/false);
  CHECK(copied == std::vector<std::string>{"fc.weight"});
  CHECK(w3.to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("atomic replacement: a failed write leaves the previous file intact and no temp file") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const TensorMap a = {{"w", vec({1, 2, 3}, DType::f32)}};
  const TensorMap b = {{"w", vec({4, 5, 6, 7}, DType::f32)}, {"v", vec({8}, DType::f64)}};
  save_safetensors(path, a);
  const std::vector<uint8_t> before = read_bytes(path);
  for (int64_t fail_after : {0, 7, 8, 40, 100}) {
    set_atomic_write_fault_for_testing(fail_after);
    CHECK_THROWS_WITH_AS(save_safetensors(path, b), doctest::Contains("injected write failure"), Error);
    CHECK(read_bytes(path) == before);
    CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
  }
  check_same(a, load_safetensors(path).tensors);
  save_safetensors(path, b);  // the hook is one-shot: writing works again
  check_same(b, load_safetensors(path).tensors);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
  CHECK_THROWS_WITH_AS(save_safetensors(dir.file("no/such/dir/x.safetensors"), a),
                       doctest::Contains("no/such/dir/x.safetensors': creating the temp file"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"__metadata__", vec({1}, DType::f32)}}),
                       doctest::Contains("'__metadata__' cannot name a tensor"), Error);
}
