#include "engine/data/cifar.h"

#include <cstring>
#include <filesystem>

#include "engine/data/file_util.h"

namespace selfsup {

ImageDataset load_cifar_files(CifarKind kind, const std::vector<std::string>& files, bool coarse) {
  const char* what = kind == CifarKind::cifar10 ? "cifar10" : "cifar100";
  const int64_t label_bytes = kind == CifarKind::cifar10 ? 1 : 2;
  const int64_t record = label_bytes + 3072;
  const int64_t classes = kind == CifarKind::cifar10 ? 10 : (coarse ? 20 : 100);
  SELFSUP_CHECK(!files.empty(), what, ": no files given");
  int64_t total = 0;
  for (const auto& f : files) {
    const uint64_t size = data_detail::file_size_of(f, what);
    SELFSUP_CHECK(size > 0 && size % record == 0, what, ": '", f, "' has ", size,
                  " bytes, not a positive multiple of the ", record, "-byte record (is this a ", what,
                  " binary file?)");
    total += static_cast<int64_t>(size) / record;
  }
  ImageDataset ds;
  ds.images = Tensor::empty({total, 32, 32, 3}, DType::u8);
  ds.labels = Tensor::empty({total}, DType::i64);
  ds.num_classes = classes;
  ds.name = what;
  if (kind == CifarKind::cifar10)
    ds.class_names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  uint8_t* img = ds.images.data_ptr<uint8_t>();
  int64_t* lab = ds.labels.data_ptr<int64_t>();
  int64_t n = 0;
  for (const auto& f : files) {
    const std::vector<uint8_t> bytes = data_detail::read_file_bytes(f, what);
    const int64_t count = static_cast<int64_t>(bytes.size()) / record;
    for (int64_t r = 0; r < count; ++r, ++n) {
      const uint8_t* rec = bytes.data() + r * record;
      const int64_t label = kind == CifarKind::cifar10 ? rec[0] : (coarse ? rec[0] : rec[1]);
      SELFSUP_CHECK(label < classes, what, ": '", f, "' record ", r, " has label ", label, " (expected < ",
                    classes, ")");
      lab[n] = label;
      const uint8_t* px = rec + label_bytes;
      uint8_t* out = img + n * 3072;
      for (int i = 0; i < 1024; ++i) {  // planar -> interleaved
        out[i * 3 + 0] = px[i];
        out[i * 3 + 1] = px[1024 + i];
        out[i * 3 + 2] = px[2048 + i];
      }
    }
  }
  return ds;
}

ImageDataset load_cifar(CifarKind kind, const std::string& path, bool train, bool coarse) {
  const char* what = kind == CifarKind::cifar10 ? "cifar10" : "cifar100";
  data_detail::require_exists(path, what);
  if (!std::filesystem::is_directory(path)) return load_cifar_files(kind, {path}, coarse);
  std::vector<std::string> files;
  const std::filesystem::path dir(path);
  if (kind == CifarKind::cifar10) {
    if (train) {
      for (int b = 1; b <= 5; ++b) files.push_back((dir / ("data_batch_" + std::to_string(b) + ".bin")).string());
    } else {
      files.push_back((dir / "test_batch.bin").string());
    }
  } else {
    files.push_back((dir / (train ? "train.bin" : "test.bin")).string());
  }
  ImageDataset ds = load_cifar_files(kind, files, coarse);
  ds.name += train ? "-train" : "-test";
  return ds;
}

}  // namespace selfsup
