// Fused elementary functions for the elementwise losses: several results from one range reduction,
// or a cheaper function restricted to the sub-domain a loss needs (as vmath's log1p_unit). Written
// like vmath.hpp (selects, no tables, every fused multiply-add as fma_) so that they vectorize and
// compile as device code.
// Errors (ULP of the result type, measured with FMA against long double libm on 4e6 samples of the
// stated domain, subnormal exp results included):
//   exp_expm1_clamped exp <= 1.04 float / 1.09 double; expm1 <= 0.99 / 1.21
//   log_cosh_abs      <= 0.83 float / 0.93 double for a < 0.6875, 1.56 / 1.64 above (4e6 and 5e6
//                     samples of log cosh r: value, long double log1p(2 sinh^2(a/2)) below a = 1)
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

// log(cosh a) for a = |r| >= 0 (or NaN) from e = exp(-2a), without cancellation on either side:
//   a <  0.6875: w/2 + w^2 Q(w), w = a^2 with its rounding error wl added back (Q near-minimax
//                on [0, 0.6875^2]);
//   a >= 0.6875: (a - log 2) + log1p(e) (a - log 2 > -0.006), log1p(e) = e + e^2 P(e) on
//                [0, e^-1.375 = 0.2529] (P near-minimax, weighted by the ULP of the value).
// Both sides are x + x^2 tail(x) + comp, so on AVX-512 (and CUDA) each lane evaluates one
// polynomial with its side's coefficients, picked by selects: a blend takes no slot of the
// multiply pipe that LogCosh is bound by. Both sides computed and one kept cost every element both
// polynomials (and, before, log1p's division): float32 value + gradient, one thread, from cache,
// 0.82 ns per element against 0.76. On AVX2 and the baseline target a select is a blendv or three
// logic operations, and both sides in full with one select run faster (AVX2 float64 from cache:
// 3.3-3.45 against 3.5-3.6 ns); each lane does the same operations either way: the same bits.
// Q and P: 5 float / 11 and 13 double coefficients (double by Estrin's scheme). a = inf gives
// e = 0 and inf; NaN takes the small side, so that its NaN comes from a alone (the same on every
// target, whatever e's NaN).
namespace fused_detail {
// One side's terms (s: the small side, a < 0.6875 or NaN): v = x + (x^2 tail(x) + comp), then
// base + (v m - off), with m = 1/2 on the small side, whose tail and comp are doubled (w/2 takes
// no multiply).
// Every select comes before the arithmetic it feeds (here and for the coefficients): selects
// between computations let gcc thread the two sides apart and evaluate both polynomials again.
template <class T>
struct LogCoshSide {
  T x, comp, m, base, noff;
  FL_HD FL_INLINE LogCoshSide(bool s, T a, T e) {
    constexpr bool f32 = sizeof(T) == 4;
    const T ln2_hi = f32 ? T(0x1.62e430p-1f) : T(0x1.62e42fefa39efp-1);  // a - ln2_hi is exact
    const T ln2_lo = f32 ? T(-0x1.05c610p-29f) : T(0x1.abc9e3b39803fp-56);
    const T w = a * a, wl = fma_(a, a, -w), am = a - ln2_hi;
    x = s ? w : e, comp = s ? wl : T(0), m = s ? T(0.5) : T(1);
    base = s ? T(0) : am, noff = s ? T(0) : -ln2_lo;
  }
  FL_HD FL_INLINE T value(T tail) const {  // small: w/2 + (w^2 Q + wl/2), rounded once; inf passes
    return base + fma_(x + fma_(x * x, tail, comp), m, noff);
  }
};
FL_HD FL_INLINE float log_cosh_tail(float x, bool s) {  // Horner
  const float k0 = s ? -0x1.555554p-3f : -0x1.fffe30p-2f, k1 = s ? 0x1.6c1334p-5f : 0x1.551308p-2f;
  const float k2 = s ? -0x1.b92704p-7f : -0x1.f8d64cp-3f, k3 = s ? 0x1.12e278p-8f : 0x1.69436cp-3f;
  const float k4 = s ? -0x1.076328p-10f : -0x1.5a0aacp-4f;
  return fma_(fma_(fma_(fma_(k4, x, k3), x, k2), x, k1), x, k0);
}
FL_HD FL_INLINE double log_cosh_tail(double x, bool s) {  // Estrin
  const double k0 = s ? -0x1.5555555555553p-3 : -0x1.0000000000000p-1;
  const double k1 = s ? 0x1.6c16c16c15a60p-5 : 0x1.555555555548dp-2;
  const double k2 = s ? -0x1.ba1ba1b8a3758p-7 : -0x1.ffffffffea39ap-3;
  const double k3 = s ? 0x1.1ea5d33a2234bp-8 : 0x1.999999922695bp-3;
  const double k4 = s ? -0x1.833d82619976ep-10 : -0x1.5555540142375p-3;
  const double k5 = s ? 0x1.0d0946ebcd27bp-11 : 0x1.249224e82338cp-3;
  const double k6 = s ? -0x1.7d6fd3bc2d5bdp-13 : -0x1.fffb046a49c0dp-4;
  const double k7 = s ? 0x1.1153010237d0fp-14 : 0x1.c6e13e7c81587p-4;
  const double k8 = s ? -0x1.7f8347b9f19efp-16 : -0x1.97b2dbc12ad6ap-4;
  const double k9 = s ? 0x1.d4dac0e76632dp-18 : 0x1.69707c42e33e5p-4;
  const double k10 = s ? -0x1.61475a28b86e3p-20 : -0x1.299d9a0cc04f5p-4;
  const double k11 = s ? 0.0 : 0x1.861d93fc79176p-5, k12 = s ? 0.0 : -0x1.1dfa90ff1ee96p-6;
  const double x2 = x * x, x4 = x2 * x2, x8 = x4 * x4;
  const double hi = fma_(fma_(k12, x2, fma_(k11, x, k10)), x2, fma_(k9, x, k8));
  const double lo = fma_(fma_(fma_(k7, x, k6), x2, fma_(k5, x, k4)), x4, fma_(fma_(k3, x, k2), x2, fma_(k1, x, k0)));
  return fma_(hi, x8, lo);
}
template <class T>
FL_HD FL_INLINE T log_cosh_side(bool s, T a, T e) {
  const LogCoshSide<T> b(s, a, e);
  return b.value(log_cosh_tail(b.x, s));
}
}  // namespace fused_detail
template <class T>
FL_HD FL_INLINE T log_cosh_abs(T a, T e) {
  const bool s = !(a >= T(0.6875));
#if defined(__AVX512F__) || defined(__CUDACC__)
  return fused_detail::log_cosh_side(s, a, e);
#else
  const T small = fused_detail::log_cosh_side(true, a, e), big = fused_detail::log_cosh_side(false, a, e);
  return s ? small : big;
#endif
}

}  // namespace losses
FL_NAMESPACE_END
