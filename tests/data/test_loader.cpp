// The loader: shuffle as a pure function of (seed, epoch), every sample once per epoch, drop_last, exact
// resume from a saved position, worker-count independence, transforms and error propagation.
#include <numeric>
#include <set>

#include "engine/data/loader.h"
#include "tests/data/data_test_util.h"

using namespace selfsup;

namespace {

// N images of 2x2x1 whose pixels all equal the image index (mod 256); label = index % 7.
ImageDataset toy(int64_t N) {
  ImageDataset ds;
  ds.images = Tensor::empty({N, 2, 2, 1}, DType::u8);
  std::vector<int64_t> labels(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    for (int k = 0; k < 4; ++k) ds.images.data_ptr<uint8_t>()[i * 4 + k] = static_cast<uint8_t>(i % 256);
    labels[i] = i % 7;
  }
  ds.labels = Tensor::from_vector(labels, {N});
  ds.num_classes = 7;
  ds.name = "toy";
  return ds;
}

std::vector<int64_t> ids(const Batch& b) {
  const int64_t* p = b.indices.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + b.indices.numel());
}

}  // namespace

TEST_CASE("epoch order: a permutation, a pure function of (seed, epoch)") {
  const auto a = DataLoader::epoch_order(1000, 5, 3, true);
  CHECK(a == DataLoader::epoch_order(1000, 5, 3, true));
  CHECK(a != DataLoader::epoch_order(1000, 5, 4, true));
  CHECK(a != DataLoader::epoch_order(1000, 6, 3, true));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  CHECK(a != iota);
  CHECK(DataLoader::epoch_order(10, 5, 3, false) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("batches: content matches indices, every sample once per epoch, drop_last, epochs roll over") {
  for (int workers : {0, 1, 3}) {
    LoaderOptions o;
    o.batch_size = 8;
    o.seed = 9;
    o.num_workers = workers;
    o.drop_last = true;
    DataLoader dl(toy(30), o);
    CHECK(dl.batches_per_epoch() == 3);
    std::set<int64_t> seen;
    for (int b = 0; b < 3; ++b) {
      Batch batch = dl.next();
      CHECK(batch.epoch == 0);
      CHECK(batch.batch == b);
      CHECK(batch.step == b);
      REQUIRE(batch.images.size(0) == 8);
      for (int64_t k = 0; k < 8; ++k) {
        const int64_t i = ids(batch)[k];
        CHECK(batch.images.data_ptr<uint8_t>()[k * 4] == i);
        CHECK(batch.labels.data_ptr<int64_t>()[k] == i % 7);
        CHECK(seen.insert(i).second);
      }
    }
    CHECK(seen.size() == 24);  // 6 dropped
    Batch e1 = dl.next();
    CHECK(e1.epoch == 1);
    CHECK(e1.batch == 0);
    CHECK(e1.step == 3);
    const auto order1 = DataLoader::epoch_order(30, 9, 1, true);
    CHECK(ids(e1) == std::vector<int64_t>(order1.begin(), order1.begin() + 8));
  }
  LoaderOptions keep;
  keep.batch_size = 8;
  keep.drop_last = false;
  keep.num_workers = 2;
  DataLoader dl(toy(30), keep);
  CHECK(dl.batches_per_epoch() == 4);
  std::set<int64_t> seen;
  for (int b = 0; b < 4; ++b)
    for (int64_t i : ids(dl.next())) seen.insert(i);
  CHECK(seen.size() == 30);
  LoaderOptions big;
  big.batch_size = 31;
  CHECK_THROWS_WITH_AS(DataLoader(toy(30), big), doctest::Contains("make no batch"), Error);
}

TEST_CASE("resume: a saved position continues the exact sequence, across epochs and worker counts") {
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 17;
  o.num_workers = 2;
  o.prefetch = 3;
  std::vector<std::vector<int64_t>> reference;
  {
    DataLoader dl(toy(22), o);  // 5 batches per epoch
    for (int i = 0; i < 14; ++i) reference.push_back(ids(dl.next()));
  }
  DataLoader first(toy(22), o);
  for (int i = 0; i < 7; ++i) CHECK(ids(first.next()) == reference[i]);
  const LoaderPosition pos = first.position();
  CHECK(pos == LoaderPosition{1, 2});
  for (int workers : {0, 1, 4}) {
    LoaderOptions o2 = o;
    o2.num_workers = workers;
    DataLoader resumed(toy(22), o2);
    resumed.set_position(pos);
    CHECK(resumed.position() == pos);
    for (int i = 7; i < 14; ++i) CHECK(ids(resumed.next()) == reference[i]);
  }
  // rewinding the same loader discards what it had prefetched
  first.set_position({0, 0});
  CHECK(ids(first.next()) == reference[0]);
  CHECK_THROWS_WITH_AS(first.set_position({0, 5}), doctest::Contains("invalid"), Error);
}

TEST_CASE("transform runs in the workers with the batch's indices and step; errors reach next()") {
  LoaderOptions o;
  o.batch_size = 5;
  o.num_workers = 2;
  DataLoader dl(toy(20), o, [](Batch& b) {
    b.views.push_back(b.images.to(DType::f32));
    b.views.push_back(Tensor::full({1}, static_cast<double>(b.step)));
  });
  for (int i = 0; i < 6; ++i) {
    Batch b = dl.next();
    REQUIRE(b.views.size() == 2);
    CHECK(b.views[1].item() == i);
    CHECK(b.views[0].data_ptr<float>()[0] == static_cast<float>(ids(b)[0]));
  }
  DataLoader bad(toy(20), o, [](Batch& b) {
    if (b.step == 1) throw Error("boom at step 1");
  });
  bad.next();
  CHECK_THROWS_WITH_AS(bad.next(), doctest::Contains("boom at step 1"), Error);
}

TEST_CASE("augment transform: views depend on (seed, step, dataset index), not on workers") {
  ImageDataset ds = toy(12);
  const AugmentRecipe r = make_recipe("gray", 2, 1);
  std::vector<std::vector<double>> ref;
  for (int workers : {0, 3}) {
    LoaderOptions o;
    o.batch_size = 4;
    o.num_workers = workers;
    DataLoader dl(ds, o, make_augment_transform(r, 5, 2));
    std::vector<std::vector<double>> got;
    for (int i = 0; i < 4; ++i) {
      Batch b = dl.next();
      REQUIRE(b.views.size() == 2);
      CHECK(b.views[0].sizes() == Shape{4, 1, 2, 2});
      const auto direct = augment_views(b.images, b.indices, r, 5, b.step, 2);
      CHECK(direct[1].to_vector() == b.views[1].to_vector());
      got.push_back(b.views[0].to_vector());
    }
    if (ref.empty()) ref = got;
    else CHECK(got == ref);
  }
}

TEST_CASE("loader: gather_images = false hands out the same indices and labels without images") {
  LoaderOptions o;
  o.batch_size = 6;
  o.seed = 4;
  o.num_workers = 2;
  DataLoader with(toy(20), o);
  o.gather_images = false;
  DataLoader without(toy(20), o);
  for (int i = 0; i < 5; ++i) {  // crosses an epoch (3 batches per epoch)
    const Batch a = with.next(), b = without.next();
    CHECK_FALSE(b.images.defined());
    CHECK(ids(a) == ids(b));
    CHECK(a.labels.to_vector() == b.labels.to_vector());
    CHECK(a.step == b.step);
  }
}
