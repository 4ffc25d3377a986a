// Fused elementary functions for the elementwise losses: several results from one range reduction,
// or a cheaper function restricted to the sub-domain a loss needs (as vmath's log1p_unit). Written
// like vmath.hpp (selects, no tables, every fused multiply-add as fma_) so that they vectorize and
// compile as device code.
// Errors (ULP of the result type, measured with FMA against long double libm on 4e6 samples of the
// stated domain, subnormal exp results included):
//   exp_expm1_clamped exp <= 1.04 float / 1.09 double; expm1 <= 0.99 / 1.21
//   log_cosh_small    <= 0.83 float / 0.95 double on |a| <= 0.6875
#pragma once

#include <cstdint>

#include "fastloss/config.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

template <class T>
struct ExpExpm1 {
  T e, em1;  // exp(x), expm1(x)
  // Its fields, for the elementwise driver's stage buffer (StageBlock).
  static constexpr int kFields = 2;
  template <int J>
  FL_HD FL_INLINE T get() const {
    if constexpr (J == 0) return e;
    else return em1;
  }
};

namespace fused_detail {
template <class T>
struct ExpConst;
template <>
struct ExpConst<float> {
  using U = std::uint32_t;
  static constexpr int kMant = 23;
  static constexpr float kShift = 0x1.8p23f, kLog2e = 0x1.715476p+0f;
  static constexpr float kLn2Hi = 0x1.62e400p-1f, kLn2Lo = 0x1.7f7d1cp-20f;
  static constexpr U kBias = 127;
  static constexpr float kLo = -104.0f, kDown = 0x1p-64f;  // exp(kLo) rounds to +0
  // (exp(r) - 1 - r) / r^2, near-minimax, |r| <= ln2/2; V is float or __m512
  template <class V>
  FL_HD FL_INLINE static V q(V r) {
    V p = V{} + 0x1.6d4320p-10f;
    p = fma_(p, r, V{} + 0x1.120b6ep-7f);
    p = fma_(p, r, V{} + 0x1.5554eap-5f);
    p = fma_(p, r, V{} + 0x1.5554dcp-3f);
    return fma_(p, r, V{} + 0x1.000000p-1f);
  }
};
template <>
struct ExpConst<double> {
  using U = std::uint64_t;
  static constexpr int kMant = 52;
  static constexpr double kShift = 0x1.8p52, kLog2e = 0x1.71547652b82fep+0;
  static constexpr double kLn2Hi = 0x1.62e42fee00000p-1, kLn2Lo = 0x1.a39ef35793c76p-33;
  static constexpr U kBias = 1023;
  static constexpr double kLo = -746.0, kDown = 0x1p-64;
  template <class V>
  FL_HD FL_INLINE static V q(V r) { return vm::detail::exp_q(r); }
};
}  // namespace fused_detail

// The bounds of exp_expm1_clamped's argument as values the compiler cannot see (opaque on the
// host): gcc 12 turns a select against a constant into a compare and a blend, and a compare takes
// a slot of the multiply/FMA pipe that these loops are bound by (AMD Zen 4: 8 FMAs and 4 compares
// take 12 cycles, 8 FMAs and 4 max 8); against a loop-invariant variable the clamp of a loaded
// value is a max and a min, on the other pipes. A loss body holds one (built once per call,
// outside its loops); ExpLimits{} keeps the constants for one-off callers.
template <class T>
struct ExpLimits {
  T lo = fused_detail::ExpConst<T>::kLo, kmin = T(-64), zero = T(0);
  FL_HD static ExpLimits opaque() {
    ExpLimits l;
#if !defined(__CUDACC__) && defined(__GNUC__)
    __asm__("" : "+m"(l.lo), "+m"(l.kmin), "+m"(l.zero));
#endif
    return l;
  }
};

// exp(x) and expm1(x) for x in [kLo, 0] (or NaN) from one Cody-Waite reduction x = k ln2 + r:
// p = expm1(r), exp = 2^k (1 + p), expm1 = (2^k - 1) + 2^k p (both roundings exact or small next
// to the result, so expm1 keeps full relative accuracy near 0). 2^(k+64) is normal for every k
// here, so exp = ((1 + p) 2^(k+64)) 2^-64 rounds once, subnormal results included, and
// exp(kLo) already rounds to +0. (1 + p) 2^(k+64) is an integer add to the exponent field (a
// multiply fewer), which would make garbage of a NaN: adding x - x (0, or NaN) restores it.
// Below k = -64, 2^k - 1 rounds to -1 and 2^k is capped there.
template <class T>
FL_HD FL_INLINE ExpExpm1<T> exp_expm1_clamped(T x, const ExpLimits<T>& lim) {
  using C = fused_detail::ExpConst<T>;
  using U = typename C::U;
  using vm::detail::from_bits;
  using vm::detail::to_bits;
  const T z = fma_(x, C::kLog2e, C::kShift), kd = z - C::kShift;
  T r = fma_(kd, -C::kLn2Hi, x);
  r = fma_(kd, -C::kLn2Lo, r);
  const T p = fma_(r * r, C::q(r), r);
  const U k64 = static_cast<U>(to_bits(z) - to_bits(C::kShift) + 64u);
  const T e = from_bits(static_cast<U>(to_bits(T(1) + p) + (k64 << C::kMant))) * C::kDown + (x - x);
  const T kc = kd < lim.kmin ? lim.kmin : kd;
  const U kcb = static_cast<U>(to_bits(kc + C::kShift) - to_bits(C::kShift) + C::kBias);
  const T sc = from_bits(static_cast<U>(kcb << C::kMant));
  return {e, fma_(sc, p, sc - T(1))};
}

// exp(-|z|) and expm1(-|z|) for any z (NaN included): z is clamped to [kLo, -kLo] before its sign
// is set (a max and a min; NaN passes).
template <class T>
FL_HD FL_INLINE ExpExpm1<T> exp_expm1_neg_abs(T z, const ExpLimits<T>& lim = {}) {
  const T lo = z < lim.lo ? lim.lo : z, zc = lo > -lim.lo ? -lim.lo : lo;
  return exp_expm1_clamped(vm::detail::neg_abs(zc), lim);
}

// exp(-|z|): one range reduction shared by every part of a logistic loss.
template <class T>
FL_HD FL_INLINE T exp_neg_abs(T z, const ExpLimits<T>& lim = {}) {
  return exp_expm1_neg_abs(z, lim).e;
}

#if defined(__AVX512F__) && !defined(__CUDACC__)
namespace fused_detail {
// One AVX-512 register of T's lanes (declared only: decltype(reg_of(T{})) names its type).
__m512 reg_of(float);
__m512d reg_of(double);
template <class V, class T>
FL_INLINE V load_reg(const T* x) {  // unaligned
  V v;
  __builtin_memcpy(&v, x, sizeof v);
  return v;
}
// (the zero-masked forms with every lane set: gcc 12 warns on the plain ones' undefined source)
FL_INLINE __m512 max_reg(__m512 a, __m512 b) { return _mm512_maskz_max_ps(0xffff, a, b); }  // a > b ? a : b
FL_INLINE __m512d max_reg(__m512d a, __m512d b) { return _mm512_maskz_max_pd(0xff, a, b); }
FL_INLINE __m512 min_reg(__m512 a, __m512 b) { return _mm512_maskz_min_ps(0xffff, a, b); }  // a < b ? a : b
FL_INLINE __m512d min_reg(__m512d a, __m512d b) { return _mm512_maskz_min_pd(0xff, a, b); }
FL_INLINE __m512 neg_abs_reg(__m512 a) { return _mm512_or_ps(a, _mm512_set1_ps(-0.0f)); }
FL_INLINE __m512d neg_abs_reg(__m512d a) { return _mm512_or_pd(a, _mm512_set1_pd(-0.0)); }
FL_INLINE __m512 scalef_reg(__m512 a, __m512 k) { return _mm512_maskz_scalef_ps(0xffff, a, k); }  // a 2^k
FL_INLINE __m512d scalef_reg(__m512d a, __m512d k) { return _mm512_maskz_scalef_pd(0xff, a, k); }
}  // namespace fused_detail

// exp_expm1_neg_abs on one AVX-512 register (V = __m512 for T = float, __m512d for double): the
// same operations up to 1 + p, then 2^k by vscalef instead of the integer add to the exponent and
// the scaling by 2^-64 (all round once, subnormal results included: the same bits; a NaN passes
// vscalef, so no x - x), and 2^kc for expm1 by vscalef too: exp alone in 9 instead of 10
// multiply-pipe operations per float register, 8 instead of 14 others.
// expm1 goes to *em1 where asked for (a pointer rather than ExpExpm1<V>: gcc warns on a class
// template over __m512, whose alignment attribute a template argument drops).
template <class T, class V>
FL_INLINE V exp_expm1_neg_abs_reg(V z, const ExpLimits<T>& lim, V* em1 = nullptr) {
  using C = fused_detail::ExpConst<T>;
  using namespace fused_detail;
  const V lo = V{} + lim.lo;
  const V x = neg_abs_reg(min_reg(-lo, max_reg(lo, z)));  // as exp_expm1_neg_abs's clamp
  const V kd = fma_(x, V{} + C::kLog2e, V{} + C::kShift) - C::kShift;
  V r = fma_(kd, V{} - C::kLn2Hi, x);
  r = fma_(kd, V{} - C::kLn2Lo, r);
  const V p = fma_(r * r, C::q(r), r);
  if (em1) {
    const V sc = scalef_reg(V{} + T(1), max_reg(V{} + lim.kmin, kd));
    *em1 = fma_(sc, p, sc - T(1));
  }
  return scalef_reg(p + T(1), kd);
}
#endif

// softplus(z), softplus(-z), sigmoid(z), sigmoid(-z) from e = exp(-|z|) and one log1p of it, each
// to full relative accuracy on both tails (no 1 - sigmoid cancellation), subnormals included.
template <class T>
struct LogisticParts {
  T l, sp, sp_neg, sig, sig_neg;  // l = log1p(exp(-|z|))
  FL_HD FL_INLINE explicit LogisticParts(T z) : LogisticParts(z, exp_neg_abs(z)) {}
  FL_HD FL_INLINE LogisticParts(T z, T e) {
    l = vm::log1p_unit(e);
    const T inv = T(1) / (T(1) + e);
    const bool pos = z >= T(0);
    sp = (pos ? z : T(0)) + l;
    sp_neg = (pos ? T(0) : -z) + l;
    sig = pos ? inv : e * inv;
    sig_neg = pos ? e * inv : inv;  // NaN z: every part is NaN already
  }
};

// log1p(x) for x in [0, e^-1.375 = 0.2529] (log1p(exp(-2|r|)) in LogCosh's branch for
// |r| >= 0.6875): log1p_unit's form (vm::detail::log1p_atanh) with P near-minimax (Remez on
// the absolute error of u P, u = s^2 <= 0.0126 instead of 1/9): 3 float / 6 double coefficients
// instead of 5 / 10. Any x in [0, 1] gives a finite value (the lanes of the other branch); NaN -> NaN.
FL_HD FL_INLINE float log1p_quarter(float x) {
  return vm::detail::log1p_atanh(x, [](float u) FL_LAMBDA_INLINE {
    return fma_(fma_(0x1.2a296ap-3f, u, 0x1.998f16p-3f), u, 0x1.555558p-2f);
  });
}
FL_HD FL_INLINE double log1p_quarter(double x) {
  return vm::detail::log1p_atanh(x, [](double u) FL_LAMBDA_INLINE {
    double p = 0x1.474275a55e1f6p-4;
    p = fma_(p, u, 0x1.74278b178b52dp-4);
    p = fma_(p, u, 0x1.c71ce51a98e7dp-4);
    p = fma_(p, u, 0x1.249248e5e17e4p-3);
    p = fma_(p, u, 0x1.99999999b8e99p-3);
    return fma_(p, u, 0x1.555555555552cp-2);
  });
}

// log(cosh(a)) for |a| <= 0.6875 without cancellation: w/2 + w^2 Q(w), w = a^2 (its rounding
// error added back), Q near-minimax (Chebyshev) on [0, 0.6875^2].
FL_HD FL_INLINE float log_cosh_small(float a) {
  const float w = a * a, wl = fma_(a, a, -w);
  float q = -0x1.076328p-11f;
  q = fma_(q, w, 0x1.12e278p-9f);
  q = fma_(q, w, -0x1.b92704p-8f);
  q = fma_(q, w, 0x1.6c1334p-6f);
  q = fma_(q, w, -0x1.555554p-4f);
  return fma_(0.5f, w, fma_(w * w, q, 0.5f * wl));  // w/2 exact, added last
}
FL_HD FL_INLINE double log_cosh_small(double a) {
  // Q by Estrin's scheme (chain of 5 operations instead of 10), as exp_expm1_clamped.
  const double w = a * a, wl = fma_(a, a, -w), w2 = w * w, w4 = w2 * w2, w8 = w4 * w4;
  const double q01 = fma_(0x1.6c16c16c15a60p-6, w, -0x1.5555555555553p-4);
  const double q23 = fma_(0x1.1ea5d33a2234bp-9, w, -0x1.ba1ba1b8a3758p-8);
  const double q45 = fma_(0x1.0d0946ebcd27bp-12, w, -0x1.833d82619976ep-11);
  const double q67 = fma_(0x1.1153010237d0fp-15, w, -0x1.7d6fd3bc2d5bdp-14);
  const double q8a = fma_(fma_(-0x1.61475a28b86e3p-21, w, 0x1.d4dac0e76632dp-19), w, -0x1.7f8347b9f19efp-17);
  const double q = fma_(q8a, w8, fma_(fma_(q67, w2, q45), w4, fma_(q23, w2, q01)));
  return fma_(0.5, w, fma_(w2, q, 0.5 * wl));
}

}  // namespace losses
FL_NAMESPACE_END
