// Element types. Lives in kernels/ because kernels take a DType to pick their instantiation; the engine
// re-exports it (engine/core/dtype.h). bfloat16 and float16 are storage types with conversions.
#pragma once
#include <cstdint>
#include <cstring>

namespace selfsup {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, b8 };

constexpr int kNumDTypes = 8;

inline constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
    case DType::b8: return 1;
  }
  return 0;
}

inline constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b8: return "bool";
  }
  return "?";
}

inline constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}

// bfloat16: the top 16 bits of a float32; conversion rounds to nearest even (NaN stays NaN).
struct bf16 {
  uint16_t bits;
  static bf16 from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      r.bits = static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      r.bits = static_cast<uint16_t>(u >> 16);
    }
    return r;
  }
  float to_float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// IEEE float16 (binary16), converted in software with round to nearest even.
struct f16 {
  uint16_t bits;
  static f16 from_float(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x007fffffu;
    int32_t exp = static_cast<int32_t>((x >> 23) & 0xff);
    f16 r;
    if (exp == 0xff) {  // Inf or NaN
      r.bits = static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
      return r;
    }
    int32_t e = exp - 127 + 15;
    if (e >= 0x1f) {  // overflow to Inf
      r.bits = static_cast<uint16_t>(sign | 0x7c00u);
      return r;
    }
    if (e <= 0) {  // subnormal or zero
      if (e < -10) {
        r.bits = static_cast<uint16_t>(sign);
        return r;
      }
      mant |= 0x00800000u;
      uint32_t shift = static_cast<uint32_t>(14 - e);
      uint32_t half = mant >> shift;
      uint32_t rem = mant & ((1u << shift) - 1u);
      uint32_t mid = 1u << (shift - 1);
      if (rem > mid || (rem == mid && (half & 1u))) ++half;
      r.bits = static_cast<uint16_t>(sign | half);
      return r;
    }
    uint32_t half = sign | (static_cast<uint32_t>(e) << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
    r.bits = static_cast<uint16_t>(half);
    return r;
  }
  float to_float() const {
    uint32_t sign = (static_cast<uint32_t>(bits) & 0x8000u) << 16;
    uint32_t exp = (bits >> 10) & 0x1fu;
    uint32_t mant = bits & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
      if (mant == 0) {
        u = sign;
      } else {  // subnormal: normalise
        int e = -1;
        do {
          ++e;
          mant <<= 1;
        } while ((mant & 0x400u) == 0);
        u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
      }
    } else if (exp == 0x1f) {
      u = sign | 0x7f800000u | (mant << 13);
    } else {
      u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

}  // namespace selfsup
