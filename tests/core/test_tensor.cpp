// Tensor basics: dtypes, factories, views and their strides, contiguous copies, printing, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/ops/ops.h"
#include "tests/support/engine_gradcheck.h"

using namespace selfsup;

TEST_CASE("dtype sizes, names, parsing and promotion") {
  CHECK(dtype_size(DType::bf16) == 2);
  CHECK(dtype_size(DType::i64) == 8);
  CHECK(std::string(dtype_name(DType::b8)) == "bool");
  CHECK(dtype_from_name("float32") == DType::f32);
  CHECK(dtype_from_name("bf16") == DType::bf16);
  CHECK_THROWS_WITH_AS(dtype_from_name("float8"), doctest::Contains("unknown dtype 'float8'"), Error);
  CHECK(promote_types(DType::f32, DType::f64) == DType::f64);
  CHECK(promote_types(DType::i64, DType::f32) == DType::f32);
  CHECK(promote_types(DType::b8, DType::i32) == DType::i32);
  CHECK(promote_types(DType::bf16, DType::f16) == DType::f32);
}

TEST_CASE("bfloat16 and float16 conversions round to nearest even") {
  CHECK(bf16::from_float(1.0f).to_float() == 1.0f);
  CHECK(bf16::from_float(3.140625f).to_float() == 3.140625f);  // exactly representable
  // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties to even -> 1.
  CHECK(bf16::from_float(1.0f + 1.0f / 256).to_float() == 1.0f);
  CHECK(std::isnan(bf16::from_float(NAN).to_float()));
  CHECK(f16::from_float(1.0f).bits == 0x3c00);
  CHECK(f16::from_float(65504.0f).bits == 0x7bff);
  CHECK(f16::from_float(1e6f).bits == 0x7c00);               // overflow to +inf
  CHECK(f16::from_float(5.9604645e-8f).bits == 0x0001);      // smallest subnormal
  CHECK(f16{0x0001}.to_float() == doctest::Approx(5.9604645e-8));
  CHECK(f16{0xc000}.to_float() == -2.0f);
  for (float v : {0.1f, -3.5f, 1000.25f, 6.1e-5f}) {
    float back = f16::from_float(v).to_float();
    CHECK(std::abs(back - v) <= std::abs(v) * 1e-3f);
  }
}

TEST_CASE("factories fill the requested values and dtypes") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.sizes() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.to_vector() == std::vector<double>(6, 0.0));
  CHECK(Tensor::full({2}, 2.5, DType::f64).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(Tensor::ones({3}, DType::i64).to_vector() == std::vector<double>{1, 1, 1});
  CHECK(Tensor::arange(0, 5, 2).to_vector() == std::vector<double>{0, 2, 4});
  CHECK(Tensor::full({2}, 1.5, DType::bf16).to_vector() == std::vector<double>{1.5, 1.5});
  CHECK(Tensor::scalar(4.0).dim() == 0);
  CHECK(Tensor::scalar(4.0).item() == 4.0);
  auto raw = reinterpret_cast<uintptr_t>(Tensor::empty({17}).raw_data());
  CHECK(raw % 64 == 0);
}

TEST_CASE("rand and randn are reproducible, thread-independent and have the right moments") {
  Generator g1(42, 3), g2(42, 3), g3(43, 3);
  Tensor a = Tensor::rand({10000}, DType::f32, &g1);
  Tensor b = Tensor::rand({10000}, DType::f32, &g2);
  Tensor c = Tensor::rand({10000}, DType::f32, &g3);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(a.to_vector() != c.to_vector());
  CHECK(g1.offset() == 10000);
  CHECK(mean(a).item() == doctest::Approx(0.5).epsilon(0.02));
  CHECK(amin(a).item() >= 0.0);
  CHECK(amax(a).item() < 1.0);
  // Drawing 10000 at once equals drawing 4000 then 6000 (element i uses block offset + i).
  Generator g4(42, 3);
  Tensor p1 = Tensor::rand({4000}, DType::f32, &g4), p2 = Tensor::rand({6000}, DType::f32, &g4);
  CHECK(cat({p1, p2}).to_vector() == a.to_vector());
  Generator gn(7, 0);
  Tensor n = Tensor::randn({200000}, DType::f64, &gn);
  CHECK(mean(n).item() == doctest::Approx(0.0).scale(1.0).epsilon(0.01));
  CHECK(var(n).item() == doctest::Approx(1.0).epsilon(0.02));
}

TEST_CASE("views share storage and compute strides") {
  Tensor x = Tensor::arange(0, 24).reshape({2, 3, 4});
  CHECK(x.is_contiguous());
  Tensor p = x.permute({2, 0, 1});
  CHECK(p.sizes() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(!p.is_contiguous());
  CHECK(p.storage() == x.storage());
  CHECK(p.contiguous().to_vector()[1] == 4.0);  // p[0,0,1] = x[0,1,0]
  Tensor t = x.transpose(0, 2);
  CHECK(t.sizes() == Shape{4, 3, 2});
  Tensor s = x.slice(2, 1, 4, 2);  // columns 1 and 3
  CHECK(s.sizes() == Shape{2, 3, 2});
  CHECK(s.to_vector() == std::vector<double>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23});
  Tensor n = x.narrow(1, 1, 2);
  CHECK(n.offset() == 4);
  CHECK(n.select(0, 1).to_vector() == std::vector<double>{16, 17, 18, 19, 20, 21, 22, 23});
  Tensor e = Tensor::arange(0, 3).reshape({3, 1}).expand({3, 4});
  CHECK(e.strides() == Shape{1, 0});
  CHECK(e.contiguous().to_vector() == std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2});
  CHECK(x.unsqueeze(0).sizes() == Shape{1, 2, 3, 4});
  CHECK(x.unsqueeze(-1).sizes() == Shape{2, 3, 4, 1});
  CHECK(x.unsqueeze(0).squeeze().sizes() == Shape{2, 3, 4});
  CHECK(x.flatten(1).sizes() == Shape{2, 12});
  CHECK(x.view({-1, 4}).sizes() == Shape{6, 4});
  // A view of a transposed tensor is impossible without a copy; reshape copies.
  CHECK_THROWS_WITH_AS(x.transpose(0, 1).view({-1}), doctest::Contains("view: shape [24] is incompatible"), Error);
  CHECK(x.transpose(0, 1).reshape({-1}).to_vector()[1] == 1.0);
  CHECK(x.transpose(0, 1).reshape({-1}).to_vector()[4] == 12.0);
}

TEST_CASE("permuted element order") {
  Tensor x = Tensor::arange(0, 6).reshape({2, 3});
  CHECK(x.t().contiguous().to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
  Tensor y = Tensor::arange(0, 24).reshape({2, 3, 4}).permute({2, 0, 1});
  CHECK(y.contiguous().to_vector()[1] == 4.0);  // y[0,0,1] = x[0,1,0] = 4
}

TEST_CASE("casts between dtypes") {
  Tensor x = Tensor::from_vector(std::vector<double>{-1.5, 0.0, 2.25, 300.0}, {4});
  CHECK(x.to(DType::f32).to_vector() == std::vector<double>{-1.5, 0.0, 2.25, 300.0});
  CHECK(x.to(DType::i64).to_vector() == std::vector<double>{-1, 0, 2, 300});
  CHECK(x.to(DType::b8).to_vector() == std::vector<double>{1, 0, 1, 1});
  CHECK(x.to(DType::bf16).to_vector() == std::vector<double>{-1.5, 0.0, 2.25, 300.0});
  CHECK(x.to(DType::f16).to_vector() == std::vector<double>{-1.5, 0.0, 2.25, 300.0});
  CHECK(Tensor::from_vector(std::vector<int64_t>{(1LL << 60) + 1}, {1}).clone().data_ptr<int64_t>()[0] ==
        (1LL << 60) + 1);
}

TEST_CASE("printing shows shape, dtype, device and values") {
  std::string s = Tensor::arange(0, 3).str();
  CHECK(s.find("[3]") != std::string::npos);
  CHECK(s.find("float32") != std::string::npos);
  CHECK(s.find("cpu") != std::string::npos);
  CHECK(s.find("0, 1, 2") != std::string::npos);
  std::string big = Tensor::arange(0, 100).str();
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.find("99") != std::string::npos);
}

TEST_CASE("in-place ops update values and bump the version counter") {
  Tensor x = Tensor::ones({3});
  uint64_t v0 = x.version();
  x.add_(Tensor::full({3}, 2.0), 0.5);
  CHECK(x.to_vector() == std::vector<double>{2, 2, 2});
  x.mul_(3.0).add_(1.0);
  CHECK(x.to_vector() == std::vector<double>{7, 7, 7});
  x.addcmul_(Tensor::full({3}, 2.0), Tensor::full({3}, 3.0), 0.5);
  CHECK(x.to_vector() == std::vector<double>{10, 10, 10});
  x.clamp_(0, 8);
  CHECK(x.to_vector() == std::vector<double>{8, 8, 8});
  CHECK(x.version() > v0);
  Tensor y = Tensor::zeros({2, 3});
  y.narrow(1, 1, 2).copy_(Tensor::from_vector(std::vector<float>{5, 6}, {2}));
  CHECK(y.to_vector() == std::vector<double>{0, 5, 6, 0, 5, 6});
}

TEST_CASE("bad input throws selfsup::Error naming the op and shapes") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(x.slice(1, 0, 5), doctest::Contains("slice: range [0, 5) out of bounds for dim 1 of size 3"),
                       Error);
  CHECK_THROWS_WITH_AS(x.narrow(0, 1, 2), doctest::Contains("out of bounds"), Error);
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), doctest::Contains("cannot reshape a tensor of shape [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(x.permute({0, 0}), doctest::Contains("permute: dim 0 repeated"), Error);
  CHECK_THROWS_WITH_AS(x.expand({4, 3}), doctest::Contains("expand: cannot expand shape [2, 3] to [4, 3]"), Error);
  CHECK_THROWS_WITH_AS(x.size(2), doctest::Contains("dim 2 out of range for a tensor of rank 2"), Error);
  CHECK_THROWS_WITH_AS(x.item(), doctest::Contains("expected a one-element tensor, got shape [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(x.data_ptr<double>(), doctest::Contains("tensor has dtype float32, requested float64"), Error);
  CHECK_THROWS_AS(Tensor().sizes(), Error);
}
