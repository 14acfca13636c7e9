// The host-side parts of the GPU view source (engine/data/device_augment.h) that run without a device: the
// residency rule, the mode names, and a clear error where no CUDA device exists. The views themselves are
// tested against the CPU pipeline in tests/cuda/test_cuda_augment.cpp.
#include "engine/core/cuda_context.h"
#include "engine/data/device_augment.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;

TEST_CASE("device augment: the residency rule (<= 25% of the free device memory)") {
  CHECK(kResidentFraction == 0.25);
  CHECK(dataset_fits_resident(25, 100));
  CHECK_FALSE(dataset_fits_resident(26, 100));
  CHECK(dataset_fits_resident(0, 0));
  CHECK(dataset_fits_resident(std::size_t(30) << 30, std::size_t(139) << 30));   // 30 GiB of an H200's 139
  CHECK_FALSE(dataset_fits_resident(std::size_t(40) << 30, std::size_t(139) << 30));
  CHECK(dataset_fits_resident(50, 100, 0.5));
  CHECK(resolve_device_data_mode(DeviceDataMode::automatic, 10, 100) == DeviceDataMode::resident);
  CHECK(resolve_device_data_mode(DeviceDataMode::automatic, 30, 100) == DeviceDataMode::stream);
  CHECK(resolve_device_data_mode(DeviceDataMode::stream, 1, 100) == DeviceDataMode::stream);
  CHECK(resolve_device_data_mode(DeviceDataMode::resident, 90, 100) == DeviceDataMode::resident);
}

TEST_CASE("device augment: mode names, and an error without a CUDA device") {
  CHECK(parse_device_data_mode("auto") == DeviceDataMode::automatic);
  CHECK(parse_device_data_mode("resident") == DeviceDataMode::resident);
  CHECK(parse_device_data_mode("stream") == DeviceDataMode::stream);
  CHECK(std::string(device_data_mode_name(DeviceDataMode::stream)) == "stream");
  CHECK_THROWS_WITH_AS(parse_device_data_mode("gpu"), doctest::Contains("auto, resident or stream"), Error);
  if (cuda_device_count() == 0) {
    ImageDataset ds;
    ds.images = Tensor::zeros({4, 8, 8, 3}, DType::u8);
    ds.labels = Tensor::zeros({4}, DType::i64);
    DeviceAugmentOptions o;
    o.recipe = make_recipe("simclr", 8, 3);
    CHECK_THROWS_AS(DeviceAugmenter(ds, o), Error);
  }
}
