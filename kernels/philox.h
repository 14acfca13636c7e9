// Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
// generator. The output is a pure function of (key, counter), so any element of any random stream can be
// computed independently, on a CPU thread or a GPU thread, and give the same bits. selfsup uses
// key = seed, counter = (element block, stream): every random decision is (seed, stream, index).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SELFSUP_HD __host__ __device__ __forceinline__
#else
#define SELFSUP_HD inline
#endif

namespace selfsup::kernels {

struct Philox4 {
  uint32_t v[4];
};

SELFSUP_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// One block of four 32-bit outputs for a 128-bit counter and a 64-bit key.
SELFSUP_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kM1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// Block `block` of stream `stream` under `seed`.
SELFSUP_HD Philox4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  Philox4 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(stream),
               static_cast<uint32_t>(stream >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in [0, 1) from the top 24 bits (float) or 53 bits of two words (double).
SELFSUP_HD float uint_to_unit_float(uint32_t u) { return static_cast<float>(u >> 8) * (1.0f / 16777216.0f); }
SELFSUP_HD double uints_to_unit_double(uint32_t hi, uint32_t lo) {
  uint64_t x = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(x & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// ---- Normal numbers, identical on CPU and GPU.
// The libm log/cos of the host and of CUDA differ in the last bit for some inputs, so Box-Muller built on
// them would not give the same numbers on both. These two functions use only operations that IEEE 754
// defines exactly (+, -, *, /, sqrt, fma, frexp) and write every multiply-add as an explicit fma, so no
// compiler contraction can change a rounding: the same bits on every device and compiler. Both are
// accurate to a few ulp of double, which is far below float resolution.

// Natural log of a finite x > 0: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
// s = (m-1)/(m+1), |s| <= 0.172, by its series (13 terms reach double precision).
SELFSUP_HD double philox_log(double x) {
  int e = 0;
  double m = ::frexp(x, &e);  // m in [0.5, 1)
  if (m < 0.7071067811865476) {
    m = m * 2.0;  // exact
    e -= 1;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 0.04;  // 1/25, then 1/23 ... 1/3, 1
  p = ::fma(p, s2, 0.043478260869565216);
  p = ::fma(p, s2, 0.047619047619047616);
  p = ::fma(p, s2, 0.05263157894736842);
  p = ::fma(p, s2, 0.058823529411764705);
  p = ::fma(p, s2, 0.06666666666666667);
  p = ::fma(p, s2, 0.07692307692307693);
  p = ::fma(p, s2, 0.09090909090909091);
  p = ::fma(p, s2, 0.1111111111111111);
  p = ::fma(p, s2, 0.14285714285714285);
  p = ::fma(p, s2, 0.2);
  p = ::fma(p, s2, 0.3333333333333333);
  p = ::fma(p, s2, 1.0);
  const double log_m = (2.0 * s) * p;
  return ::fma(static_cast<double>(e), 0.6931471805599453, log_m);
}

// cos(2 pi u) for u in [0, 1): quadrant from 4u (exact), the rest folded to an angle t in [0, pi/4]
// where the Taylor series of cos and sin converge to double precision in 11 terms.
SELFSUP_HD double philox_cos_2pi(double u) {
  const double q4 = u * 4.0;  // exact
  const int q = static_cast<int>(q4);  // 0..3
  const double r = q4 - static_cast<double>(q);  // in [0, 1), exact
  const bool flip = r > 0.5;  // cos(t) = sin(pi/2 - t) keeps the angle below pi/4
  const double rr = flip ? 1.0 - r : r;  // exact
  const double t = rr * 1.5707963267948966;
  const double t2 = t * t;
  double c = 4.110317623312165e-19;  // 1/20!, -1/18!, ... 1/4!, -1/2!, 1
  c = ::fma(c, t2, -1.5619206968586225e-16);
  c = ::fma(c, t2, 4.779477332387385e-14);
  c = ::fma(c, t2, -1.1470745597729725e-11);
  c = ::fma(c, t2, 2.08767569878681e-09);
  c = ::fma(c, t2, -2.755731922398589e-07);
  c = ::fma(c, t2, 2.48015873015873e-05);
  c = ::fma(c, t2, -0.001388888888888889);
  c = ::fma(c, t2, 0.041666666666666664);
  c = ::fma(c, t2, -0.5);
  c = ::fma(c, t2, 1.0);
  double sp = 1.9572941063391263e-20;  // 1/21!, -1/19!, ... -1/3!, 1
  sp = ::fma(sp, t2, -8.22063524662433e-18);
  sp = ::fma(sp, t2, 2.8114572543455206e-15);
  sp = ::fma(sp, t2, -7.647163731819816e-13);
  sp = ::fma(sp, t2, 1.6059043836821613e-10);
  sp = ::fma(sp, t2, -2.505210838544172e-08);
  sp = ::fma(sp, t2, 2.7557319223985893e-06);
  sp = ::fma(sp, t2, -0.0001984126984126984);
  sp = ::fma(sp, t2, 0.008333333333333333);
  sp = ::fma(sp, t2, -0.16666666666666666);
  sp = ::fma(sp, t2, 1.0);
  const double s = t * sp;
  const double cos_t = flip ? s : c;  // of the unfolded angle
  const double sin_t = flip ? c : s;
  switch (q) {
    case 0: return cos_t;
    case 1: return -sin_t;
    case 2: return -cos_t;
    default: return sin_t;
  }
}

// Element formulas of fill_uniform / fill_normal (kernels/cpu/random.cpp and kernels/cuda/random.cu use
// these and nothing else). Uniform [0, 1): the first word (float) or first two words (double) of the
// block. Normal: Box-Muller from the first two words (float) or all four (double), u1 in (0, 1].
SELFSUP_HD float philox_uniform_float(const Philox4& r) { return uint_to_unit_float(r.v[0]); }
SELFSUP_HD double philox_uniform_double(const Philox4& r) { return uints_to_unit_double(r.v[0], r.v[1]); }
SELFSUP_HD float philox_normal_float(const Philox4& r) {
  const double u1 = 1.0 - static_cast<double>(uint_to_unit_float(r.v[0]));  // exact
  const double u2 = static_cast<double>(uint_to_unit_float(r.v[1]));
  return static_cast<float>(::sqrt(-2.0 * philox_log(u1)) * philox_cos_2pi(u2));
}
SELFSUP_HD double philox_normal_double(const Philox4& r) {
  const double u1 = 1.0 - uints_to_unit_double(r.v[0], r.v[1]);  // exact
  const double u2 = uints_to_unit_double(r.v[2], r.v[3]);
  return ::sqrt(-2.0 * philox_log(u1)) * philox_cos_2pi(u2);
}

}  // namespace selfsup::kernels
