// fastloss/vmath.hpp - branch-free, table-free elementary functions for float and double that
// gcc auto-vectorizes (SSE2 / AVX2 / AVX-512) in a plain element loop, and that compile as CUDA
// device code. Namespace fastloss::vm; every function is overloaded for float and double, and the
// float versions run in float arithmetic only (full vector width).
//
// Measured max error, in ULP of the result type, vs. the exact value (subnormal results: in units
// of the smallest subnormal). float: all 2^32 inputs, reference libm double. double: >= 3e7 random
// inputs (log-uniform over the whole range + dense in the interesting interval) + ~5e4 edge points
// (powers of 2, thresholds, reduction boundaries), reference long double libm. sse2 = baseline
// x86-64 (no FMA, so fma_ rounds twice); avx2 and avx512 give bit-identical results (both FMA),
// and so does CUDA (sm_90, nvcc --fmad=false: 2.5e7 inputs, no bit differences).
//                  float  sse2 / avx2 / avx512    double  sse2 / avx2 / avx512
//   exp                  0.762 / 0.750 / 0.750            0.752 / 0.750 / 0.750
//   expm1                0.876 / 0.788 / 0.788            0.892 / 0.803 / 0.803
//   log                  0.835 / 0.760 / 0.760            0.824 / 0.755 / 0.755
//   log1p                0.835 / 0.760 / 0.760            0.829 / 0.757 / 0.757
//   tanh                 0.752 / 0.677 / 0.677            0.758 / 0.698 / 0.698
//   softplus             0.896 / 0.782 / 0.782            0.858 / 0.815 / 0.815
//   sigmoid              0.773 / 0.750 / 0.750            0.754 / 0.750 / 0.750
//   log_sigmoid          0.896 / 0.782 / 0.782            0.891 / 0.820 / 0.820
// Since the cheaper exp reduction (exp, expm1, tanh, softplus, sigmoid, log_sigmoid) re-measured
// on samples only, vs long double libm - float: 1M random bit patterns + 3M points in [-110, 110],
// [-1, 4], [-3, 12]; double: 5M (random bits, [-760, 760], [-1, 4], [-22, 22], +-[2^-70, 2^10]):
//   float sse2:  0.750 0.774 0.662 0.852 0.780 0.846   avx2/avx512: 0.754 0.726 0.652 0.778 0.754 0.764
//   double sse2: 0.746 0.798 0.678 0.824 0.752 0.864   avx2/avx512: 0.745 0.731 0.613 0.815 0.746 0.820
// The table keeps the larger of the exhaustive (old code) and sampled (new code) maxima.
// Exceptions, measured after the float32 tanh/expm1/log/log1p and float64 log1p/exp were rewritten for
// speed (no compensation; the contract is 2 ULP, integer distance to the correctly rounded value):
// float over all 2^32 inputs vs double libm, avx512 (sse2): tanh 2.50 (2.50), integer distance <= 2,
// no decrease; expm1 1.46 (1.54); log 0.93 (1.07); log1p 1.45 (1.53); double
// log1p 1.30 on 3.3e7 samples vs long double; double tanh (one division, 1 - e^-2z rounded once)
// 1.73 (sse2: 1.74) on 3e7 samples vs long double (dense in [-1.6, 1.6], [-0.7, 0.7], [-22, 22], and
// +-[2^-60, 2^5]); double exp (no compensation, exp_q by Estrin) 1.12 (sse2: 1.08) on 3.5e7
// samples vs long double (over its whole range, dense in [-5, 5] and next to both ends); double log
// and log1p (m in [0.75, 1.5) and log_m_kernel, for the AVX-512 array form of log) 0.949 and 0.930
// (sse2: 1.031 both) on 3e7 samples vs long double (log: dense in [0.5, 2] and next to 0.75 and
// 1.5, log-uniform over the whole range, random bits; log1p: dense in [-0.5, 2], log-uniform up to
// the top and down to -1). The rows above for these nine are superseded.
// Every other function is faithful (< 1 ULP) on every ISA; the 0.75 maxima of float exp and of
// sigmoid are in the subnormal range (a correctly rounded mantissa rounded again to fewer bits). Monotone: float
// non-decreasing over all inputs except 7 each for softplus/log_sigmoid (1-ULP steps where the
// exact value is within 2e-6 ULP of a midpoint, near x = +-2^-24); double: no decrease in 2e7
// (x, nextafter(x)) pairs per function.
//
// Domains and special values (identical on every ISA):
//   exp(x)        all x. +inf for x > 0x1.62e42ep6 = 88.72283 (f) / 0x1.62e42fefa39efp9 =
//                 709.782712893384 (d), finite at those; gradual underflow through the subnormals,
//                 0 below -103.9721 (f) / -745.13322 (d). exp(+-0) = 1, exp(-inf) = +0.
//   expm1(x)      all x. Same overflow threshold as exp; -1 from x ~ -17 (f) / -37.1 (d) down to
//                 -inf; expm1(+-0) = +-0, tiny/subnormal x -> x.
//   log(x)        x >= 0 (subnormals included); log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf,
//                 log(1) = +0.
//   log1p(x)      x >= -1; log1p(-1) = -inf, x < -1 -> NaN, +inf -> +inf, +-0 and tiny x -> x.
//   tanh(x)       all x; odd (sign copied bitwise: tanh(-0) = -0); tiny x -> x; +-1 for
//                 |x| >= 9.011 (f) / 19.062 (d).
//   softplus(x)   = log(1 + exp(x)), all x; = x for large x (+inf -> +inf), = exp(x) for very
//                 negative x (gradual underflow, -inf -> +0); no intermediate overflow.
//   sigmoid(x)    = 1 / (1 + exp(-x)), all x; in [0, 1]; sigmoid(+-0) = 0.5, +inf -> 1, -inf -> +0,
//                 subnormal results below x = -87.3 (f) / -708.4 (d).
//   log_sigmoid(x) = -softplus(-x) = log(sigmoid(x)), all x; = x for very negative x
//                 (-inf -> -inf), ~ -exp(-x) for large x (+inf -> -0).
//   NaN in -> NaN out for every function.
//
// Techniques (why the code looks the way it does):
//   * No data-indexed tables (they become gathers): pure polynomials after range reduction. The
//     double log also has an explicit AVX-512 form for arrays (getmant/getexp in place of the
//     integer reduction and the special-value selects), with the same operations after them.
//   * Every branch is a select on values computed on both sides (`c ? a : b` -> blend); special
//     values are patched by final selects, as few as possible: gcc turns two clamps of one value
//     into six mask operations (exp: 1.4x slower on AVX-512), so exp/expm1 clamp once and select
//     the overflow lanes, and NaN shares its select with the domain check where it can.
//   * Round-to-integer by the "shifter" trick (x + 1.5*2^52 holds round(x) in its low mantissa
//     bits), so no double<->int64 conversion is needed (AVX2 has none); 2^k is built by integer
//     add/shift into the exponent field, in two factors for exp so that results that are
//     subnormal or next to overflow are rounded exactly once.
//   * Only logical shifts and add/sub/and/or/xor on the integer views: they vectorize on AVX2
//     (no 64-bit arithmetic shift, integer min or multiply).
//   * Extra precision where the ULP bound depends on it: Cody-Waite ln2 split whose high part has
//     trailing zeros (k*ln2_hi and x - k*ln2_hi exact, with or without FMA) and the rounding error
//     of r = rh - rl carried along; r^2/2 formed with one rounding for expm1 (which amplifies
//     it); Fast2Sum/2Sum error terms, so exp and log1p hand double-T pairs to the
//     composed functions; residual-corrected divisions in tanh and sigmoid (exact residual via
//     fma_, or Dekker's product on the baseline target, which has no FMA).
//   * -ffp-contract=off is assumed: every fused multiply-add is written as fma_. For CUDA use
//     --fmad=false to stay bit-identical to the host. (With contraction on, -ffp-contract=fast,
//     a sampled run - 1/61 of all floats, 1e6 doubles - still stayed below 0.79 ULP.)
#pragma once

#include <cstdint>

#include "fastloss/config.hpp"

#if defined(__AVX512F__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

// One list of every vm:: function, for generated bindings/dispatch: X(name) per function.
#define FASTLOSS_VMATH_FUNCS(X) \
  X(exp) X(expm1) X(log) X(log1p) X(tanh) X(softplus) X(sigmoid) X(log_sigmoid) X(exp_nonpos) X(log1p_unit)

FL_NAMESPACE_BEGIN
#if defined(__AVX512F__) && !defined(__CUDACC__)
// fma_ on one AVX-512 register: kernels written once for a scalar and a register (whose +, -, *, /
// and scalar operands are GCC/Clang vector arithmetic) compute the same bits in both.
FL_INLINE __m512 fma_(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
FL_INLINE __m512d fma_(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
#endif
namespace vm {
namespace detail {

// ---- bit views (memcpy folds to a register move; valid host and device code) -----------------
FL_HD FL_INLINE std::uint64_t to_bits(double x) {
  std::uint64_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  return u;
}
FL_HD FL_INLINE std::uint32_t to_bits(float x) {
  std::uint32_t u;
  __builtin_memcpy(&u, &x, sizeof u);
  return u;
}
FL_HD FL_INLINE double from_bits(std::uint64_t u) {
  double x;
  __builtin_memcpy(&x, &u, sizeof x);
  return x;
}
FL_HD FL_INLINE float from_bits(std::uint32_t u) {
  float x;
  __builtin_memcpy(&x, &u, sizeof x);
  return x;
}

// ---- per-type constants -------------------------------------------------------------------------
template <class T>
struct fp;

template <>
struct fp<double> {
  using U = std::uint64_t;
  static constexpr int kMant = 52;
  static constexpr U kBias = 1023;
  static constexpr U kSign = 0x8000000000000000ull;
  static constexpr U kExpMask = 0xfff0000000000000ull;  // sign + exponent field
  static constexpr double kShift = 0x1.8p52;            // x + kShift = round(x) in low bits
  static constexpr double kIntBase = 0x1p52;            // bits(2^52) | n == bits(2^52 + n)
  static constexpr double kLog2e = 0x1.71547652b82fep0;
  static constexpr double kLn2Hi = 0x1.62e42fee00000p-1;  // 32 significant bits: k*hi exact
  static constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  static constexpr double kInf = __builtin_huge_val();
  static constexpr double kNaN = __builtin_nan("");
  // exp: clamp keeps 2^k splittable into two normal factors; overflow/underflow then happen in
  // the final multiply, correctly rounded.
  static constexpr double kExpHi = 710.0;
  static constexpr double kExpLo = -746.0;
  static constexpr double kExpm1Lo = -40.0;  // expm1 = -1 (rounded) below -37.43
  static constexpr double kExpm1Cap = 512.0;
  static constexpr double kTanhHi = 20.0;  // 1 - tanh(20) < 2^-55: rounds to 1
  // log: subnormals are rescaled by 2^54; reduction offset sqrt(1/2) so m in [sqrt(.5), sqrt(2))
  static constexpr double kMinNormal = 0x1p-1022;
  static constexpr double kSubScale = 0x1p54;
  static constexpr double kSubAdj = -54.0;
  static constexpr U kLogOff = 0x3fe6a09e667f3bcdull;
  static constexpr U kLogOffM = 0x3fe8000000000000ull;  // 0.75: m in [0.75, 1.5), log_m_kernel's
  static constexpr U kKHalf = 0x800;  // 12-bit two's complement -> offset binary
  static constexpr double kLog1pCap = 1000.0;
};

template <>
struct fp<float> {
  using U = std::uint32_t;
  static constexpr int kMant = 23;
  static constexpr U kBias = 127;
  static constexpr U kSign = 0x80000000u;
  static constexpr U kExpMask = 0xff800000u;
  static constexpr float kShift = 0x1.8p23f;
  static constexpr float kIntBase = 0x1p23f;
  static constexpr float kLog2e = 0x1.715476p0f;
  static constexpr float kLn2Hi = 0x1.62e4p-1f;  // 15 significant bits: k*hi exact, |k| <= 256
  static constexpr float kLn2Lo = 0x1.7f7d1cp-20f;
  static constexpr float kInf = __builtin_huge_valf();
  static constexpr float kNaN = __builtin_nanf("");
  static constexpr float kExpHi = 89.0f;
  static constexpr float kExpLo = -104.0f;
  static constexpr float kExpm1Lo = -20.0f;  // expm1f = -1 below -17.33
  static constexpr float kExpm1Cap = 64.0f;
  static constexpr float kTanhHi = 9.5f;  // 1 - tanh(9.5) < 2^-26
  static constexpr float kMinNormal = 0x1p-126f;
  static constexpr float kSubScale = 0x1p25f;
  static constexpr float kSubAdj = -25.0f;
  static constexpr U kLogOff = 0x3f3504f3u;
  static constexpr U kKHalf = 0x100;  // 9-bit two's complement -> offset binary
  static constexpr float kLog1pCap = 100.0f;
};

// ---- polynomials (Horner with explicit fma_) ----------------------------------------------------
// fdlibm log kernel: log(1+f) = f - f^2/2 + s*(f^2/2 + R(s^2)), s = f/(2+f), |s| <= 0.1716.
FL_HD FL_INLINE double log_R(double z, double w) {
  double t1 = w * fma_(w, fma_(w, 0x1.39a09d078c69fp-3, 0x1.c71c51d8e78afp-3), 0x1.999999997fa04p-2);
  double t2 =
      z * fma_(w, fma_(w, fma_(w, 0x1.2f112df3e5244p-3, 0x1.7466496cb03dep-3), 0x1.2492494229359p-2),
               0x1.5555555555593p-1);
  return t2 + t1;
}
FL_HD FL_INLINE float log_R(float z, float w) {
  float t1 = w * fma_(w, 0x1.f13c4cp-3f, 0x1.999c26p-2f);
  float t2 = z * fma_(w, 0x1.23d3dcp-2f, 0x1.555554p-1f);
  return t2 + t1;
}

// log(1 + f) for float f in [sqrt(1/2) - 1, sqrt(2) - 1] (+-0.001): f - f^2/2 + f^3 P(f), P of degree
// 7, minimax for the relative error (linear programming on 6000 points, float coefficients rounded
// one at a time from the highest and the rest re-fitted): 2^-27.2.
FL_HD FL_INLINE float log1p_poly(float f) {
  float p = fma_(f, -0x1.393ab4p-4f, 0x1.05bc8cp-3f);
  p = fma_(p, f, -0x1.0d99d6p-3f);
  p = fma_(p, f, 0x1.22ce26p-3f);
  p = fma_(p, f, -0x1.546f12p-3f);
  p = fma_(p, f, 0x1.99a072p-3f);
  p = fma_(p, f, -0x1.000234p-2f);
  p = fma_(p, f, 0x1.555554p-2f);
  p = fma_(p, f, -0.5f);
  return fma_(f * f, p, f);  // one rounding of a sum dominated by f
}

// log(1 + f) + kd ln2 for the double log, f = m - 1 with m in [0.75, 1.5) (the interval of AVX-512's
// getmant, so that its array form below reduces with two instructions and gives the same bits):
// s = f / (2 + f), u = s^2, log(1 + f) = 2 atanh(s) = f - s (f - u Q(u)) (as 2s = f - s f), Q
// near-minimax (Remez on the absolute error of u Q over u in [0, 1/25]: 2^-61.7). One rounding of
// the correction s (f - u Q) - kd ln2_lo, subtracted from the exact f: 0.95 ULP (against 0.76 for
// the fdlibm kernel below, 5 fewer multiplies). V is double or __m512d (V{} + c: c in every lane).
template <class V>
FL_HD FL_INLINE V log_m_kernel(V f, V kd) {
  const V s = f / (2.0 + f);
  const V u = s * s;
  V q = V{} + 0x1.1b69ed774df6fp-3;
  q = fma_(q, u, V{} + 0x1.0dcf139a2062bp-3);
  q = fma_(q, u, V{} + 0x1.3b358bb071eb1p-3);
  q = fma_(q, u, V{} + 0x1.745c4c7adb6f9p-3);
  q = fma_(q, u, V{} + 0x1.c71c7488d9210p-3);
  q = fma_(q, u, V{} + 0x1.24924921ec0d4p-2);
  q = fma_(q, u, V{} + 0x1.999999999c0f7p-2);
  q = fma_(q, u, V{} + 0x1.555555555554fp-1);
  const V c = fma_(s, fma_(-u, q, f), -(kd * fp<double>::kLn2Lo));
  return kd * fp<double>::kLn2Hi + (f - c);
}

// ---- building blocks ----------------------------------------------------------------------------
// 2^n for an integer-valued n with n + bias in [1, 2*bias] (exact).
template <class T>
FL_HD FL_INLINE T pow2i(T n) {
  using F = fp<T>;
  using U = typename F::U;
  return from_bits(static_cast<U>(to_bits(n + (F::kIntBase + T(F::kBias))) << F::kMant));
}

// n - q*d exactly (q ~ n/d): one fma_, or Dekker's product where fma_ is not fused.
template <class T>
FL_HD FL_INLINE T div_residual(T n, T q, T d) {
  if constexpr (kHasFma) {
    return fma_(-q, d, n);
  } else {
    constexpr T kSplit = sizeof(T) == 8 ? T(134217729.0) : T(4097.0);  // 2^ceil(p/2) + 1
    T cq = kSplit * q, qh = cq - (cq - q), ql = q - qh;
    T cd = kSplit * d, dh = cd - (cd - d), dl = d - dh;
    T p = q * d;
    T e = ((qh * dh - p) + qh * dl + ql * dh) + ql * dl;  // q*d = p + e exactly
    return (n - p) - e;  // n - p exact (Sterbenz)
  }
}

// Cody-Waite reduction: x = k*ln2 + rh - rl, rh exact (ln2_hi has trailing zeros); r = rh - rl
// rounded and dr its exact error (Fast2Sum), so e^x = 2^k * (1 + r + u) with
// u = dr + r^2 * (1/2 + r*q3(r)) carrying ~2^-60 relative error. z holds k in its low bits.
// exp (and exp_dd) round r^2 once more, harmless there; expm1 amplifies the error of u by ~5
// near k = 1, so ExactSquare adds the rounding error of r^2 (via fma_), dr*r, and r^2/2 last.
template <class T>
struct ExpRed {
  T z, kd, r, u;
};
// q3(r) ~ (e^r - 1 - r - r^2/2) / r^3 on |r| <= ln2/2 + 0.002 (Chebyshev fit; abs err * r^3 <
// 2.1e-19 (double, degree 9) / 5.6e-10 (float, degree 4, incl. coefficient rounding)), as
// even + r * odd polynomial in r^2: two Horner chains, half the latency of one.
template <class T>
FL_HD FL_INLINE T exp_q3(T r, T r2);
template <>
FL_HD FL_INLINE double exp_q3(double r, double r2) {
  double e = fma_(0x1.af509232e2477p-26, r2, 0x1.71de00e89dd34p-19);
  e = fma_(e, r2, 0x1.a01a01ac50533p-13);
  e = fma_(e, r2, 0x1.111111111001cp-7);
  e = fma_(e, r2, 0x1.5555555555557p-3);
  double o = fma_(0x1.1f74882ae4b27p-29, r2, 0x1.27e4daa87b888p-22);
  o = fma_(o, r2, 0x1.a01a01a714245p-16);
  o = fma_(o, r2, 0x1.6c16c16c16266p-10);
  o = fma_(o, r2, 0x1.5555555555556p-5);
  return fma_(o, r, e);
}
template <>
FL_HD FL_INLINE float exp_q3(float r, float r2) {
  float e = fma_(fma_(0x1.a127fcp-13f, r2, 0x1.1110e0p-7f), r2, 0x1.555556p-3f);
  float o = fma_(0x1.6d4690p-10f, r2, 0x1.5554e6p-5f);
  return fma_(o, r, e);
}
template <class T, bool ExactSquare = false>
FL_HD FL_INLINE ExpRed<T> exp_reduce(T x) {
  using F = fp<T>;
  ExpRed<T> e;
  e.z = fma_(x, F::kLog2e, F::kShift);
  e.kd = e.z - F::kShift;
  T rh = fma_(e.kd, -F::kLn2Hi, x);  // exact
  T rl = e.kd * F::kLn2Lo;
  e.r = rh - rl;
  T dr = (rh - e.r) - rl;  // Fast2Sum error, |rh| >= |rl|
  T r2 = e.r * e.r;
  T q = exp_q3(e.r, r2);
  if constexpr (ExactSquare) {
    // r^2/2 with one rounding (the rounding error of r^2 via fma_) and added last; dr*(1 + r)
    T c = fma_(r2 * e.r, q, fma_(T(0.5), fma_(e.r, e.r, -r2), fma_(dr, e.r, dr)));
    e.u = fma_(T(0.5), r2, c);
  } else {
    e.u = fma_(r2, fma_(e.r, q, T(0.5)), dr);
  }
  return e;
}

// exp for x already in [kExpLo, kExpHi] (or NaN), as hi + lo (lo only meaningful while hi is
// normal; composed helpers use it to keep exp's rounding out of their error).
template <class T>
struct DD {
  T hi, lo;
};
// 1 + r + u = p + pl (Fast2Sum: the rounding of 1 + r stays out of the error budget).
template <class T>
FL_HD FL_INLINE DD<T> exp_mant(const ExpRed<T>& e) {
  T h = T(1) + e.r;
  T l = ((T(1) - h) + e.r) + e.u;
  T p = h + l;
  return {p, l - (p - h)};
}
template <class T>
FL_HD FL_INLINE DD<T> exp_dd(T x) {
  using F = fp<T>;
  using U = typename F::U;
  ExpRed<T> e = exp_reduce(x);
  DD<T> m = exp_mant(e);
  // 2^k = 2^e1 * 2^e2 with m = k + 2*bias >= 0 split by a logical shift: both factors normal, so a
  // subnormal or overflowing result is rounded once, in the last multiply.
  U mk = static_cast<U>(to_bits(e.z) - to_bits(F::kShift) + 2 * F::kBias);
  U e1 = mk >> 1;
  U e2 = mk - e1;
  T s1 = from_bits(static_cast<U>(e1 << F::kMant)), s2 = from_bits(static_cast<U>(e2 << F::kMant));
  return {(m.hi * s1) * s2, (m.lo * s1) * s2};
}
template <class T>
FL_HD FL_INLINE T exp_core(T x) {
  return exp_dd(x).hi;  // the unused lo part is dead code
}

// expm1(x) * (1/sc) = H + L (double-T), x in [kExpm1Lo, kExpHi] (or NaN). 2^k is applied
// as 2^kc * sc, kc = min(k, cap), so that exp(x) near overflow stays finite until the end.
template <class T>
struct Expm1Parts {
  T H, L, sc;
};
template <class T>
FL_HD FL_INLINE Expm1Parts<T> expm1_parts(T x) {
  using F = fp<T>;
  ExpRed<T> e = exp_reduce<T, true>(x);  // expm1 amplifies r^2's rounding by ~5 near k = 1
  Expm1Parts<T> o;
  T kc = e.kd < F::kExpm1Cap ? e.kd : F::kExpm1Cap;
  o.sc = pow2i(e.kd - kc);
  // expm1(x) = (t - 1) + t*r + t*u, t = 2^kc; t - 1 and t*r are exact(ish) and
  // |t - 1| >= |t*r| (or t - 1 == 0), so Fast2Sum captures their sum exactly.
  T t = pow2i(kc);
  T a = t - T(1);
  T ae = (t - a) - T(1);  // rounding error of t - 1 (nonzero only for k > p)
  T b = t * e.r;
  o.H = a + b;
  o.L = ((b - (o.H - a)) + ae) + t * e.u;
  return o;
}

// Reduction for log: x = 2^k * m, m in [sqrt(.5), sqrt(2)) (or [offset, 2 offset)); returns k (as T)
// and f = m - 1 (exact).
template <class T>
struct LogRed {
  T kd, f;
};
template <class T>
FL_HD FL_INLINE LogRed<T> log_reduce(T x, typename fp<T>::U offset = fp<T>::kLogOff) {
  using F = fp<T>;
  using U = typename F::U;
  U ix = to_bits(x);
  U tmp = static_cast<U>(ix - offset);
  U kb = static_cast<U>((tmp >> F::kMant) ^ F::kKHalf);  // k + kKHalf (offset binary)
  LogRed<T> r;
  r.kd = from_bits(static_cast<U>(to_bits(F::kIntBase) | kb)) - (F::kIntBase + T(F::kKHalf));
  U iz = static_cast<U>(ix - (tmp & F::kExpMask));
  r.f = from_bits(iz) - T(1);
  return r;
}

// log(1 + f) + kd*ln2 + lo = hi + lo, |f| <= 0.4143, lo a tiny correction; hi = kd*ln2_hi exact.
template <class T>
FL_HD FL_INLINE DD<T> log_kernel_dd(T f, T kd, T lo) {
  using F = fp<T>;
  T s = f / (T(2) + f);
  T z = s * s;
  T w = z * z;
  T R = log_R(z, w);
  T hf = T(0.5) * f;
  T hfsq = hf * f;
  T inner = fma_(s, hfsq + R, fma_(kd, F::kLn2Lo, lo));
  // f^2/2 - inner with one rounding (where fma_ is fused): f^2/2 is the largest correction term
  return {kd * F::kLn2Hi, f - fma_(hf, f, -inner)};
}

// log1p(x + xl) = hi + lo for x >= -1, finite, |xl| <= ulp(x) (no special-value handling).
template <class T>
FL_HD FL_INLINE DD<T> log1p_core_dd(T x, T xl = T(0)) {
  using F = fp<T>;
  T u = T(1) + x;
  T c = x > T(1) ? (T(1) - (u - x)) : (x - (u - T(1)));  // 1 + x = u + c exactly
  LogRed<T> r = log_reduce(u);
  // f = m - 1 + c*2^-k as Fast2Sum pair (f, fl); 2^-k only matters for small k, so cap it.
  T kc = r.kd < F::kLog1pCap ? r.kd : F::kLog1pCap;
  T sc = pow2i(-kc);
  T cl = c * sc;
  T f = r.f + cl;
  T fl = (cl - (f - r.f)) + xl * sc;
  return log_kernel_dd(f, r.kd, fma_(-fl, f, fl));  // fl / (1 + f) to first order
}

template <class T>
FL_HD FL_INLINE T neg_abs(T x) {
  return from_bits(static_cast<typename fp<T>::U>(to_bits(x) | fp<T>::kSign));
}
template <class T>
FL_HD FL_INLINE T abs_bits(T x) {  // |x| by its sign bit: no compare (|-0| = +0, NaN stays NaN)
  return from_bits(static_cast<typename fp<T>::U>(to_bits(x) & ~fp<T>::kSign));
}

// (exp(r) - 1 - r) / r^2 for |r| <= ln2/2, near-minimax (Chebyshev), by Estrin's scheme (a
// dependency chain of 4 operations instead of Horner's 9, so that more consecutive elements
// overlap: float64 BCE and LogCosh 3-12 % faster): exp = 1 + r + r^2 q to ~1.1 ULP without
// compensation (float64 exp below, and the fused losses' exponentials).
// V is double or __m512d (V{} + c: c in every lane).
template <class V>
FL_HD FL_INLINE V exp_q(V r) {
  const V r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const V p01 = fma_(V{} + 0x1.5555555555556p-3, r, V{} + 0x1.0000000000001p-1);
  const V p23 = fma_(V{} + 0x1.1111111110989p-7, r, V{} + 0x1.5555555553cd9p-5);
  const V p45 = fma_(V{} + 0x1.a01a01a7e5259p-13, r, V{} + 0x1.6c16c178c18a5p-10);
  const V p67 = fma_(V{} + 0x1.71de0d2e6e42bp-19, r, V{} + 0x1.a019b83d2cea4p-16);
  const V p89 = fma_(V{} + 0x1.af39d92ab3282p-26, r, V{} + 0x1.28927c0646723p-22);
  const V p03 = fma_(p23, r2, p01), p47 = fma_(p67, r2, p45);
  return fma_(p89, r8, fma_(p47, r4, p03));
}

// ---- the functions ------------------------------------------------------------------------------
template <class T>
FL_HD FL_INLINE T exp_t(T x) {
  using F = fp<T>;
  // One clamp and one select (gcc merges two clamps into six mask operations): above kExpHi the
  // integer exponent wraps, and the select overwrites that lane. NaN passes both.
  T xc = x < F::kExpLo ? F::kExpLo : x;
  T y = exp_core(xc);
  return x > F::kExpHi ? F::kInf : y;
}

// double: the same clamp and select around Cody-Waite, exp_q, 1 + p and 2^k in two normal
// factors (subnormal and overflowing results rounded once, as in exp_dd), without exp_dd's
// compensation: <= 1.1 ULP (exp_dd: 0.75) for two thirds of the operations.
template <>
FL_HD FL_INLINE double exp_t<double>(double x) {
  using F = fp<double>;
  using U = F::U;
  const double xc = x < F::kExpLo ? F::kExpLo : x;
  const double z = fma_(xc, F::kLog2e, F::kShift), kd = z - F::kShift;
  double r = fma_(kd, -F::kLn2Hi, xc);  // exact
  r = fma_(kd, -F::kLn2Lo, r);
  const double m = 1.0 + fma_(r * r, exp_q(r), r);
  const U mk = static_cast<U>(to_bits(z) - to_bits(F::kShift) + 2 * F::kBias);
  const U e1 = mk >> 1, e2 = mk - e1;
  const double y = (m * from_bits(static_cast<U>(e1 << F::kMant))) * from_bits(static_cast<U>(e2 << F::kMant));
  return x > F::kExpHi ? F::kInf : y;
}

template <class T>
FL_HD FL_INLINE T expm1_t(T x) {
  using F = fp<T>;
  T xc = x < F::kExpm1Lo ? F::kExpm1Lo : x;  // one clamp, one select: as in exp_t
  Expm1Parts<T> p = expm1_parts(xc);
  T r = (p.H + p.L) * p.sc;
  r = x > F::kExpHi ? F::kInf : r;
  return x == T(0) ? x : r;  // keep the sign of zero
}

// float: e^x - 1 = (2^n - 1) + 2^n (e^t - 1), one fused multiply-add (no compensation: the error
// budget is 2 ULP). n is capped at 127 so that 2^n stays finite; t then reaches ln2 near overflow,
// which the polynomial covers.
template <>
FL_HD FL_INLINE float expm1_t<float>(float x) {
  using F = fp<float>;
  const float xc = x < F::kExpm1Lo ? F::kExpm1Lo : x;  // NaN passes
  float n = fma_(xc, F::kLog2e, F::kShift) - F::kShift;  // round(x / ln2)
  n = n < 127.0f ? n : 127.0f;
  float t = fma_(n, -F::kLn2Hi, xc);  // exact
  t = fma_(n, -F::kLn2Lo, t);
  // e^t - 1 = t + t^2 Q(t) on [-1.01 ln2/2, 1.005 ln2], Q of degree 5, minimax for the relative
  // error (linear programming on 6000 points, float coefficients rounded one at a time from the
  // highest and the rest re-fitted): 2^-27.1.
  float q = fma_(t, 0x1.e2d7b0p-13f, 0x1.6b37cep-10f);
  q = fma_(q, t, 0x1.10def2p-7f);
  q = fma_(q, t, 0x1.55575cp-5f);
  q = fma_(q, t, 0x1.55557cp-3f);
  q = fma_(q, t, 0x1.fffffep-2f);
  const float p = fma_(t * t, q, t);
  const float s = pow2i(n);
  float y = fma_(s, p, s - 1.0f);  // s - 1 exact for the n where it matters
  y = x > 0x1.62e42ep6f ? F::kInf : y;
  return from_bits(to_bits(y) | (to_bits(x) & F::kSign));  // sign of x: expm1(-0) = -0
}

// All ones where x is below the normal range, else 0: subnormals' scale and exponent shift taken
// by masks, so that gcc reduces x once (from a select on `x < min normal` it made two reductions,
// one per side, and blended them: 6 % of float32 log).
template <class T>
FL_HD FL_INLINE typename fp<T>::U subnormal_mask(T x) {
  using U = typename fp<T>::U;
  return static_cast<U>(U(0) - static_cast<U>(x < fp<T>::kMinNormal));
}
// x times kSubScale where it is subnormal (mask m), and the exponent shift -kSubAdj there, else 0.
template <class T>
FL_HD FL_INLINE T subnormal_scaled(T x, typename fp<T>::U m) {
  using F = fp<T>;
  return x * from_bits(static_cast<typename F::U>(to_bits(T(1)) + (m & (to_bits(F::kSubScale) - to_bits(T(1))))));
}
template <class T>
FL_HD FL_INLINE T subnormal_shift(typename fp<T>::U m) {
  return from_bits(static_cast<typename fp<T>::U>(to_bits(-fp<T>::kSubAdj) & m));
}

template <class T>
FL_HD FL_INLINE T log_t(T x);

// double: m in [0.75, 1.5) and log_m_kernel (the AVX-512 array form, log(__m512d) below, gets the
// same bits from getmant/getexp).
template <>
FL_HD FL_INLINE double log_t<double>(double x) {
  using F = fp<double>;
  const F::U sub = subnormal_mask(x);
  LogRed<double> r = log_reduce(subnormal_scaled(x, sub), F::kLogOffM);
  double y = log_m_kernel(r.f, r.kd - subnormal_shift<double>(sub));
  y = x == F::kInf ? x : y;
  y = x == 0.0 ? -F::kInf : y;
  return x >= 0.0 ? y : F::kNaN;  // x < 0 and NaN in one select
}

// float: the log1p polynomial on f = m - 1 (exact): no division.
template <>
FL_HD FL_INLINE float log_t<float>(float x) {
  using F = fp<float>;
  const std::uint32_t sub = subnormal_mask(x);
  const float xs = subnormal_scaled(x, sub);
  const std::int32_t ix = static_cast<std::int32_t>(to_bits(xs) - F::kLogOff);
  const float k = static_cast<float>(ix >> 23) - subnormal_shift<float>(sub);
  const float f = from_bits(to_bits(xs) - (static_cast<std::uint32_t>(ix) & 0xff800000u)) - 1.0f;
  float y = fma_(k, 0x1.62e430p-1f, log1p_poly(f));
  y = x == F::kInf ? x : y;
  y = x == 0.0f ? -F::kInf : y;
  return x >= 0.0f ? y : F::kNaN;  // x < 0 and NaN in one select
}

template <class T>
FL_HD FL_INLINE T log1p_t(T x);

// float: (1 + x) = 2^k m exactly as f = m - 1 = fma(x, 2^(2-k), 2^(2-k) - 4) / 4 (one rounding; the
// factor 4 keeps 2^-k normal up to k = 128, and f = x exactly for tiny x), then
// log1p(x) = k ln2 + log(1 + f) with a polynomial in f (no division, no compensated 1 + x).
template <>
FL_HD FL_INLINE float log1p_t<float>(float x) {
  using U = std::uint32_t;
  const float u = 1.0f + x;  // only picks k: its rounding error stays out of f
  const std::int32_t ix = static_cast<std::int32_t>(to_bits(u) - fp<float>::kLogOff);
  const U kb = static_cast<U>(ix) & 0xff800000u;  // k << 23
  const float k = static_cast<float>(ix >> 23);
  const float s4 = from_bits(static_cast<U>(0x40800000u - kb));  // 2^(2-k)
  const float f = fma_(x, s4, s4 - 4.0f) * 0.25f;
  float y = fma_(k, 0x1.62e430p-1f, log1p_poly(f));
  y = x == fp<float>::kInf ? x : y;
  y = x == -1.0f ? -fp<float>::kInf : y;
  y = x >= -1.0f ? y : fp<float>::kNaN;  // x < -1 and NaN in one select
  return from_bits(to_bits(y) | (to_bits(x) & fp<float>::kSign));  // sign of x: log1p(-0) = -0
}

// double: the same f (m in [0.75, 1.5), as for log), then log_m_kernel (no compensated 1 + x, no
// 2^-k cap).
template <>
FL_HD FL_INLINE double log1p_t<double>(double x) {
  using F = fp<double>;
  using U = F::U;
  const double u = 1.0 + x;  // only picks k
  const U tmp = static_cast<U>(to_bits(u) - F::kLogOffM);
  const U kb = static_cast<U>((tmp >> F::kMant) ^ F::kKHalf);  // k + kKHalf (offset binary)
  const double kd = from_bits(static_cast<U>(to_bits(F::kIntBase) | kb)) - (F::kIntBase + double(F::kKHalf));
  const double s4 = from_bits(static_cast<U>(0x4010000000000000ull - (tmp & F::kExpMask)));  // 2^(2-k)
  const double f = fma_(x, s4, s4 - 4.0) * 0.25;
  double y = log_m_kernel(f, kd);
  y = x == F::kInf ? x : y;
  y = x == -1.0 ? -F::kInf : y;
  y = x >= -1.0 ? y : F::kNaN;
  return from_bits(to_bits(y) | (to_bits(x) & F::kSign));
}

template <class T>
FL_HD FL_INLINE T tanh_t(T x);

// double: e = e^-2z = 2^n e^t, t = -2z - n ln2 in [-ln2/2, ln2/2] (Cody-Waite, its rounding error dt
// carried); 1 - e = (1 - 2^n) - 2^n (e^t - 1) with one rounding; tanh z = (1 - e) / (1 + e), 1 + e
// as an exact pair and the quotient corrected by its residual: one division, no expm1 in
// double-double. Saturated lanes (z > 20, where the reduction is garbage) are overwritten by one
// final select; NaN passes (compares false).
template <>
FL_HD FL_INLINE double tanh_t<double>(double x) {
  using F = fp<double>;
  using U = F::U;
  const double z = abs_bits(x);
  const double magic = F::kShift + 1024.0;  // zn's low bits hold n + 1024
  const double zn = fma_(z, -2.0 * F::kLog2e, magic);  // n = round(-2z / ln2)
  const double s = from_bits(static_cast<U>(to_bits(zn) << F::kMant)) * 0.5;  // 2^n
  const double n = zn - magic;
  const double rh = fma_(n, -F::kLn2Hi, -(z + z));  // exact
  const double rl = n * F::kLn2Lo;
  const double t = rh - rl;
  const double dt = (rh - t) - rl;  // Fast2Sum error
  const double t2 = t * t;
  const double v = t + fma_(t2, fma_(t, exp_q3(t, t2), 0.5), dt);  // e^(t + dt) - 1
  const double nem = fma_(-s, v, 1.0 - s);  // 1 - e; 1 - 2^n is exact for the n where it matters
  const double e = fma_(s, v, s);           // e in (0, 1]
  const double dh = 1.0 + e;
  const double dl = (1.0 - dh) + e;  // 1 + e = dh + dl exactly (Fast2Sum)
  const double rcp = 1.0 / dh;
  const double q0 = nem * rcp;
  const double rho = div_residual(nem, q0, dh) - q0 * dl;
  double y = fma_(rho, rcp, q0);
  y = z > F::kTanhHi ? 1.0 : y;
  return from_bits(static_cast<U>(to_bits(y) | (to_bits(x) & F::kSign)));  // odd: tanh(-0) = -0
}

// float: one expm1 of -2|x| and one division, no compensation (the error budget is 2 ULP, not 1):
// e = e^-2z = 2^n e^t, t = -2z - n ln2 = 2h in [-ln2/2, ln2/2]; 1 - e = (1 - 2^n) - 2^n (e^t - 1)
// with e^t - 1 = 2(h + h^2 Q(h)); tanh z = (1 - e) / (1 + e). Saturated lanes (z > 9, where the
// reduction is garbage) are overwritten by one final select: cheaper than clamping z first,
// which gcc turns into several masked operations.
template <>
FL_HD FL_INLINE float tanh_t<float>(float x) {
  const float z = from_bits(to_bits(x) & 0x7fffffffu);
  const float magic = 0x1.8p23f + 128.0f;  // zn's low mantissa bits hold n + 128
  const float zn = fma_(z, -0x1.715476p1f, magic);  // n = round(-2z / ln2)
  const float s2 = from_bits(static_cast<std::uint32_t>(to_bits(zn) << 23));  // 2^(n+1)
  const float n = zn - magic;
  float h;
  if constexpr (kHasFma) {
    h = fma_(n, -0x1.62e430p-2f, -z);  // |n| <= 26 here: the rounding of ln2/2 costs < 0.01 ULP
  } else {
    h = fma_(n, -0x1.62e4p-2f, -z);  // ln2/2 split: n*hi exact without a fused multiply-add
    h = fma_(n, -0x1.7f7d1cp-21f, h);
  }
  // Q(h) ~ (e^2h - 1 - 2h) / (2h^2): minimax for the relative error of e^2h - 1 on
  // |h| <= 1.01 ln2/4 (linear programming on 4000 points, float coefficients rounded one at a
  // time from the highest and the rest re-fitted): 2^-25.7.
  float q = fma_(h, 0x1.6be8f8p-5f, 0x1.122d1ep-3f);
  q = fma_(q, h, 0x1.555682p-2f);
  q = fma_(q, h, 0x1.5554aap-1f);
  q = fma_(q, h, 0x1.fffffep-1f);
  const float hs = h * s2;
  const float p = fma_(q * h, hs, hs);            // 2^n (e^t - 1)
  const float nem = fma_(s2, -0.5f, 1.0f) - p;    // 1 - e in [0, 1): 1 - 2^n exact
  float y = nem / (2.0f - nem);
  y = z > 9.0f ? 1.0f : y;  // tanh rounds to 1 from 9.01 on; NaN passes (compares false)
  return from_bits((to_bits(x) & 0x80000000u) | to_bits(y));  // odd: sign copied (tanh(-0) = -0)
}

template <class T>
FL_HD FL_INLINE T softplus_t(T x) {
  using F = fp<T>;
  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|); e^-|x| in [0, 1] never overflows.
  T n = neg_abs(x);
  n = n < F::kExpLo ? F::kExpLo : n;
  DD<T> e = exp_dd(n);
  DD<T> l = log1p_core_dd(e.hi, e.lo);
  // max(x, 0) + l.hi by 2Sum, so that the only rounding of size ulp(result) is the last one.
  T a = x > T(0) ? x : T(0);
  T sh = a + l.hi;
  T bb = sh - a;
  T sl = (a - (sh - bb)) + (l.hi - bb);
  T y = sh + (sl + l.lo);
  y = x == F::kInf ? x : y;
  return x != x ? x + x : y;
}

template <class T>
FL_HD FL_INLINE T sigmoid_t(T x) {
  using F = fp<T>;
  // e = e^-|x| in [0, 1]: 1/(1+e) for x >= 0, e/(1+e) for x < 0 (no overflow, gradual underflow).
  T n = neg_abs(x);
  n = n < F::kExpLo ? F::kExpLo : n;
  DD<T> e = exp_dd(n);
  T dh = T(1) + e.hi;  // 1 + e as Fast2Sum pair
  T dl = ((T(1) - dh) + e.hi) + e.lo;
  bool pos = x >= T(0);
  T nh = pos ? T(1) : e.hi;
  T nl = pos ? T(0) : e.lo;
  // (nh + nl) / (dh + dl): one reciprocal, then a residual correction.
  T rcp = T(1) / dh;
  T q0 = nh * rcp;
  T rho = div_residual(nh, q0, dh) + (nl - q0 * dl);
  T y = fma_(rho, rcp, q0);
  return x != x ? x + x : y;
}

}  // namespace detail

#define FASTLOSS_VM_DEFINE_(name)                                                 \
  FL_HD FL_INLINE float name(float x) { return detail::name##_t<float>(x); }     \
  FL_HD FL_INLINE double name(double x) { return detail::name##_t<double>(x); }

FASTLOSS_VM_DEFINE_(exp)
FASTLOSS_VM_DEFINE_(expm1)
FASTLOSS_VM_DEFINE_(log)
FASTLOSS_VM_DEFINE_(log1p)
FASTLOSS_VM_DEFINE_(tanh)
FASTLOSS_VM_DEFINE_(softplus)
FASTLOSS_VM_DEFINE_(sigmoid)

#undef FASTLOSS_VM_DEFINE_

// log(sigmoid(x)) = -softplus(-x): same error as softplus.
FL_HD FL_INLINE float log_sigmoid(float x) { return -detail::softplus_t<float>(-x); }
FL_HD FL_INLINE double log_sigmoid(double x) { return -detail::softplus_t<double>(-x); }

// exp_nonpos(x): exp for x <= 0 only (x - max of a softmax row; -|z| in the logistic losses).
// Half the cost of exp: one Cody-Waite reduction, one polynomial, 2^k by an integer add, no
// overflow path. Error (measured): <= 1.08 ULP for float over every x in [-104, 0], subnormal
// results included (rounded once); double <= 1 ULP (Taylor to r^14 on |r| <= ln2/2).
// exp_nonpos(-inf) = 0, NaN -> NaN. Positive x is outside the domain (the result is not exp(x)).
FL_HD FL_INLINE float exp_nonpos(float x) {
  const float shift = 0x1.8p23f;  // x*log2(e) + 1.5*2^23 holds round(x*log2(e)) in its low bits
  const float z = fma_(x, 0x1.715476p+0f, shift), kd = z - shift;
  float r = fma_(kd, -0x1.62e400p-1f, x);
  r = fma_(kd, -0x1.7f7d1cp-20f, r);
  float p = 0x1.6d4320p-10f;  // (exp(r) - 1 - r) / r^2, near-minimax on |r| <= ln2/2
  p = fma_(p, r, 0x1.120b6ep-7f);
  p = fma_(p, r, 0x1.5554eap-5f);
  p = fma_(p, r, 0x1.5554dcp-3f);
  p = fma_(p, r, 0x1.000000p-1f);
  const float m = 1.0f + fma_(r * r, p, r);
  // 2^k into the exponent field; below the normal range, 2^(k+64) and one exact scaling by
  // 2^-64, so that subnormal results are rounded once.
  const std::uint32_t k = detail::to_bits(z) - detail::to_bits(shift);
  const float normal = detail::from_bits(detail::to_bits(m) + (k << 23));
  const float small = detail::from_bits(detail::to_bits(m) + ((k + 64u) << 23)) * 0x1p-64f;
  const float res = kd < -125.0f ? small : normal;
  return x < -104.0f ? 0.0f : (x != x ? x : res);
}
namespace detail {
// log1p(x) = 2 atanh(s) with s = x / (2 + x), u = s^2, as (x - s x) + 2 s u P(u) (x - s x = 2s with
// the leading term x exact), for a polynomial P(u) ~ (atanh(s) / s - 1) / u fitted to the caller's
// range of x.
template <class T, class Poly>
FL_HD FL_INLINE T log1p_atanh(T x, Poly poly) {
  const T s = x / (T(2) + x), u = s * s;
  return fma_(s + s, poly(u) * u, fma_(-s, x, x));
}
}  // namespace detail

// log1p_unit(x): log1p for x in [-0.5, 1] only (log1p(exp(-|z|)) in the logistic losses), without
// range reduction: detail::log1p_atanh with |s| <= 1/3 and P near-minimax (Chebyshev) on
// [0, 1/9]: <= 1.30 ULP float, 1.32 double (FMA, against long double libm on 4e6 samples), a
// quarter of log1p's cost. NaN -> NaN.
FL_HD FL_INLINE float log1p_unit(float x) {
  return detail::log1p_atanh(x, [](float u) FL_LAMBDA_INLINE {
    float p = 0x1.dba260p-4f;
    p = fma_(p, u, 0x1.bc8cf8p-4f);
    p = fma_(p, u, 0x1.24c926p-3f);
    p = fma_(p, u, 0x1.9998d4p-3f);
    return fma_(p, u, 0x1.555556p-2f);
  });
}
FL_HD FL_INLINE double log1p_unit(double x) {
  return detail::log1p_atanh(x, [](double u) FL_LAMBDA_INLINE {
    double p = 0x1.4b0a26c5f2aefp-4;
    p = fma_(p, u, 0x1.687a6e7c95176p-5);
    p = fma_(p, u, 0x1.eb905e8575054p-5);
    p = fma_(p, u, 0x1.10ac75dc602b1p-4);
    p = fma_(p, u, 0x1.3b18b294bebf9p-4);
    p = fma_(p, u, 0x1.745cf0b0e03bdp-4);
    p = fma_(p, u, 0x1.c71c727143318p-4);
    p = fma_(p, u, 0x1.24924923d44c6p-3);
    p = fma_(p, u, 0x1.999999999a3ddp-3);
    return fma_(p, u, 0x1.5555555555555p-2);
  });
}

FL_HD FL_INLINE double exp_nonpos(double x) {
  const double shift = 0x1.8p52;
  const double z = fma_(x, 0x1.71547652b82fep+0, shift), kd = z - shift;
  double r = fma_(kd, -0x1.62e42fee00000p-1, x);
  r = fma_(kd, -0x1.a39ef35793c76p-33, r);
  double p = 0x1.93974a8c07c9dp-37;  // Taylor coefficients 1/n!, n = 14 .. 2
  p = fma_(p, r, 0x1.6124613a86d09p-33);
  p = fma_(p, r, 0x1.1eed8eff8d898p-29);
  p = fma_(p, r, 0x1.ae64567f544e4p-26);
  p = fma_(p, r, 0x1.27e4fb7789f5cp-22);
  p = fma_(p, r, 0x1.71de3a556c734p-19);
  p = fma_(p, r, 0x1.a01a01a01a01ap-16);
  p = fma_(p, r, 0x1.a01a01a01a01ap-13);
  p = fma_(p, r, 0x1.6c16c16c16c17p-10);
  p = fma_(p, r, 0x1.1111111111111p-7);
  p = fma_(p, r, 0x1.5555555555555p-5);
  p = fma_(p, r, 0x1.5555555555555p-3);
  p = fma_(p, r, 0x1.0000000000000p-1);
  const double m = 1.0 + fma_(r * r, p, r);
  const std::uint64_t k = detail::to_bits(z) - detail::to_bits(shift);
  const double normal = detail::from_bits(detail::to_bits(m) + (k << 52));
  const double small = detail::from_bits(detail::to_bits(m) + ((k + 64u) << 52)) * 0x1p-64;
  const double res = kd < -1021.0 ? small : normal;
  return x < -746.0 ? 0.0 : (x != x ? x : res);
}

#if defined(__AVX512F__) && !defined(__CUDACC__)
// exp_nonpos on one AVX-512 register (the row kernels' explicit vectors): the same operations
// and bits, but 2^k applied by vscalef, which rounds m 2^k once also where the result is subnormal:
// one instruction for the integer add, the shifted subnormal path and the two selects (16 instead
// of 26 per register for float).
FL_INLINE __m512 exp_nonpos(__m512 x) {
  const __m512 shift = _mm512_set1_ps(0x1.8p23f);
  const __m512 kd = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), shift), shift);
  __m512 r = _mm512_fmadd_ps(kd, _mm512_set1_ps(-0x1.62e400p-1f), x);
  r = _mm512_fmadd_ps(kd, _mm512_set1_ps(-0x1.7f7d1cp-20f), r);
  __m512 p = _mm512_set1_ps(0x1.6d4320p-10f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.120b6ep-7f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.5554eap-5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.5554dcp-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.000000p-1f));
  const __m512 m = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r));
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_NLT_UQ);  // NaN too
  return _mm512_mask_mov_ps(_mm512_maskz_scalef_ps(keep, m, kd), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}
FL_INLINE __m512d exp_nonpos(__m512d x) {
  const __m512d shift = _mm512_set1_pd(0x1.8p52);
  const __m512d kd = _mm512_sub_pd(_mm512_fmadd_pd(x, _mm512_set1_pd(0x1.71547652b82fep+0), shift), shift);
  __m512d r = _mm512_fmadd_pd(kd, _mm512_set1_pd(-0x1.62e42fee00000p-1), x);
  r = _mm512_fmadd_pd(kd, _mm512_set1_pd(-0x1.a39ef35793c76p-33), r);
  static constexpr double c[] = {0x1.6124613a86d09p-33, 0x1.1eed8eff8d898p-29, 0x1.ae64567f544e4p-26,
                                 0x1.27e4fb7789f5cp-22, 0x1.71de3a556c734p-19, 0x1.a01a01a01a01ap-16,
                                 0x1.a01a01a01a01ap-13, 0x1.6c16c16c16c17p-10, 0x1.1111111111111p-7,
                                 0x1.5555555555555p-5,  0x1.5555555555555p-3,  0x1.0000000000000p-1};
  __m512d p = _mm512_set1_pd(0x1.93974a8c07c9dp-37);
  for (double ci : c) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(ci));
  const __m512d m = _mm512_add_pd(_mm512_set1_pd(1.0), _mm512_fmadd_pd(_mm512_mul_pd(r, r), p, r));
  const __mmask8 keep = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-746.0), _CMP_NLT_UQ);
  return _mm512_mask_mov_pd(_mm512_maskz_scalef_pd(keep, m, kd), _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q), x);
}
// log on one AVX-512 register (the array form of vm::log): getmant/getexp reduce x, subnormals
// included, to the m and k of log_t<double>, whose kernel then gives the same bits; the special
// values come out of the same arithmetic (getexp(+0) = -inf, getexp(+inf) = +inf with m = 1; a
// negative x or NaN gives m = NaN), once -0 is made +0 by adding +0.
FL_INLINE __m512d log(__m512d x) {
  // (the masked forms with every lane set: gcc 12 warns on the unmasked ones' undefined source)
  x = _mm512_add_pd(x, _mm512_setzero_pd());
  const __m512d m = _mm512_mask_getmant_pd(x, 0xff, x, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_nan);
  const __m512d kd = _mm512_sub_pd(_mm512_mask_getexp_pd(x, 0xff, x), _mm512_mask_getexp_pd(m, 0xff, m));
  return detail::log_m_kernel(_mm512_sub_pd(m, _mm512_set1_pd(1.0)), kd);
}
#endif

}  // namespace vm
FL_NAMESPACE_END
