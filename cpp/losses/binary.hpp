// Binary classification losses (spec section 3): cross-entropy on logits and on probabilities,
// logistic, focal, and the hinge family. y_pred is a logit/score z or a probability p; derivatives
// are with respect to it. NaN in y_pred propagates to every output.
#pragma once

#include "fastloss/config.hpp"
#include "fastloss/vmath.hpp"
#include "fused_math.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// The logit losses run in two passes over a block (elementwise.hpp): e = exp(-|z|) first, then the
// body's finish(y, z, aux, e, ...) for the rest; operator() chains both for the one-pass callers.
template <class T, class Body>
struct LogitStaged {
  static constexpr bool kAux = false;
  // An element's work (elementwise.hpp): its one-thread time over MSE's, float32 : float64.
  static constexpr index_t kWork = sizeof(T) == 4 ? 3 : 7;
  using Stage = T;
  ExpLimits<T> lim = ExpLimits<T>::opaque();
  FL_HD FL_INLINE T stage(T, T z) const { return exp_neg_abs(z, lim); }
#if defined(__AVX512F__) && !defined(__CUDACC__)
  // The first pass over elements [i0, i1) of a block in AVX-512 registers (elementwise.hpp's
  // stage_range): exp_expm1_neg_abs_reg, whose vscalef saves the integer exponent arithmetic.
  template <class StageBuf>
  FL_INLINE void stage_range(index_t i0, index_t i1, const T*, const T* __restrict z, StageBuf& st) const {
    using V = decltype(fused_detail::reg_of(T{}));
    constexpr index_t kLanes = sizeof(V) / sizeof(T);
    index_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) {
      const V e = exp_expm1_neg_abs_reg(fused_detail::load_reg<V>(z + i), lim);
      __builtin_memcpy(st.value + i, &e, sizeof e);
    }
    for (; i < i1; ++i) st.value[i] = stage(T(0), z[i]);
  }
#endif
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T aux, T& l, T& g, T& h) const {
    static_cast<const Body&>(*this).template finish<G, H>(y, z, aux, stage(y, z), l, g, h);
  }
};

// c * x with 0 * inf = 0: a target weight of exactly 0 removes its term even where the term is
// infinite (a saturated logit on the other class).
template <class T>
FL_HD FL_INLINE T weigh(T c, T x) {
  return c == T(0) ? T(0) : c * x;
}

template <class T>
FL_HD FL_INLINE T clamp_prob(T p, T eps) {
  return p < eps ? eps : (p > T(1) - eps ? T(1) - eps : p);  // NaN passes through
}

// {-1, +1} or {0, 1} labels as a sign, and NaN for any other label (NaN included): the value of
// a call with a bad label is NaN, so a call that writes no caller buffer needs no label check
// before the kernel (the Python side names the label afterwards). Selects on single comparisons
// keep the loops vectorized; two of them (|y| = 1, y = 0), as a compare costs a multiply's slot.
template <class T>
FL_HD FL_INLINE T label_sign(T y) {
  const T zero_or_bad = y == T(0) ? T(-1) : vm::detail::fp<T>::kNaN;
  return vm::detail::abs_bits(y) == T(1) ? y : zero_or_bad;
}

// params: pos_weight, label_smoothing. Plain: pos_weight = 1 without smoothing (the common call,
// picked once per call by the CPU driver), where ys = y, wp = y and w = y + (1 - y) = 1 (exactly,
// for y in [0, 1]) need no arithmetic: the same bits, 7 % less time per element from cache and
// 1.05x at n = 10^7 (float32, two threads), the element being bound by multiplies.
template <class T, bool Plain>
struct BCELogitsBody : LogitStaged<T, BCELogitsBody<T, Plain>> {
  T pw, keep, half_alpha;
  FL_HD explicit BCELogitsBody(const double* prm)
      : pw(T(prm[0])), keep(T(1.0 - prm[1])), half_alpha(T(0.5 * prm[1])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void finish(T y, T z, T, T e, T& l, T& g, T& h) const {
    const T ys = Plain ? y : y * keep + half_alpha, yn = T(1) - ys, wp = Plain ? ys : pw * ys;
    const LogisticParts<T> s(z, e);
    // wp sp(-z) + yn sp(z) = w log1p(e) + (yn z for z >= 0, -wp z below): one product of the
    // logit instead of two sums (the same bits for hard targets without pos_weight).
    const T wl = Plain ? s.l : (wp + yn) * s.l;
    l = wl + weigh(z >= T(0) ? yn : -wp, z);
    if constexpr (G) g = yn * s.sig - wp * s.sig_neg;
    if constexpr (H) h = (wp + yn) * (s.sig * s.sig_neg);  // w = 1 there, but a NaN target's NaN
  }
};
template <class T>
using BCELogits = BCELogitsBody<T, false>;
template <class T>
using BCELogitsPlain = BCELogitsBody<T, true>;

// params: pos_weight, label_smoothing, eps. Value, gradient and Hessian at the clamped p.
template <class T>
struct BCEProbs {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 4 : 10;  // as LogitStaged::kWork
  T pw, keep, half_alpha, eps;
  FL_HD explicit BCEProbs(const double* prm)
      : pw(T(prm[0])), keep(T(1.0 - prm[1])), half_alpha(T(0.5 * prm[1])), eps(T(prm[2])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T ys = y * keep + half_alpha, yn = T(1) - ys, wp = pw * ys;
    const T pc = clamp_prob(p, eps), qc = T(1) - pc;
    l = -(wp * vm::log(pc) + yn * vm::log1p(-pc));
    if constexpr (G) g = yn / qc - wp / pc;
    if constexpr (H) h = wp / (pc * pc) + yn / (qc * qc);
  }
};

// log(1 + exp(-s z)) for labels s in {-1, +1} (0 read as -1). Checked: the labels were checked
// before the call (ElementwiseJob::labels_checked; the driver picks the body once per call), so s
// comes from the sign bit of y - 1/2 and u = s z and -(s sig) are sign flips, without label_sign's
// two compares and the two multiplies (a bad label would give a wrong value instead of NaN, but
// none reaches the kernel): the same bits, 3 fewer multiply-pipe operations per register.
template <class T, bool Checked>
struct LogisticBody : LogitStaged<T, LogisticBody<T, Checked>> {
  FL_HD explicit LogisticBody(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void finish(T y, T z, T, T e, T& l, T& g, T& h) const {
    using vm::detail::from_bits;
    using vm::detail::to_bits;
    using U = decltype(to_bits(y));
    constexpr U kSign = U(1) << (8 * sizeof(T) - 1);
    const U neg = to_bits(y - T(0.5)) & kSign;  // s = -1 (Checked)
    const T s = Checked ? T(0) : label_sign(y);
    const T u = Checked ? from_bits(static_cast<U>(to_bits(z) ^ neg)) : s * z;
    const LogisticParts<T> q(u, e);  // exp(-|s z|) = exp(-|z|)
    // softplus(-u) = max(-u, 0) + log1p(e): a max against the opaque zero instead of a second
    // compare of u (a NaN u passes, as the max's second operand); -(s sig) rather than (-s) sig,
    // whose select on the label gcc makes with a compare of its own.
    const T nu = -u;
    l = (this->lim.zero > nu ? this->lim.zero : nu) + q.l;
    if constexpr (G)
      g = Checked ? from_bits(static_cast<U>(to_bits(q.sig_neg) ^ neg ^ kSign)) : -(s * q.sig_neg);
    if constexpr (H) h = q.sig * q.sig_neg;
  }
};
template <class T>
using Logistic = LogisticBody<T, false>;
template <class T>
using LogisticChecked = LogisticBody<T, true>;

// Focal loss l = alpha_t * m^gamma * ce with m = 1 - p_t (Lin et al. 2017; soft labels as in
// torchvision). Derivatives use r = m'/m, whose limit at m = 0 (hard label, saturated logit) is
// 1 - 2y, so no 0 * inf appears: l' = a f (g r ce + ce'),
// l'' = a f ((g(g-1) r^2 + g r m''/m') ce + 2 g r ce' + ce''). params: gamma, alpha (< 0: none).
// The cross-entropy y sp(-z) + (1 - y) sp(z) of a (soft) target y, yn = 1 - y, as
// log1p(e) + (1 - y) z for z >= 0 and log1p(e) - y z below: one product instead of two (the same
// bits for hard targets); a target weight of 0 removes its term against an infinite logit.
template <class T>
FL_HD FL_INLINE T focal_ce(T y, T yn, T z, const LogisticParts<T>& s) {
  return s.l + weigh(z >= T(0) ? yn : -y, z);
}

// The focal value af * ce with af = a m^gamma. The product is NaN only where af = 0 meets an
// infinite ce (m^gamma underflowed for a tiny m > 0 next to an infinite logit opposite a soft
// target: the loss is infinite, or 0 where the class weight a is 0) or where an input is NaN (then
// ce, or af where a is 0, is NaN too). m = 0 never meets an infinite ce: it needs a hard target
// matched by a saturated logit, whose ce is 0.
template <class T>
FL_HD FL_INLINE T focal_product(T af, T at, T ce) {
  const T prod = af * ce, fix = at != T(0) ? ce : af;
  return prod == prod ? prod : fix;
}
// The same for alpha_t = 1 (no alpha), where af = m^gamma is in [0, 1] and so af * ce <= ce: the
// lesser of the two, with a NaN product giving way to ce as a min's second operand (vminps, no
// compare).
template <class T>
FL_HD FL_INLINE T focal_product_unweighted(T af, T ce) {
  const T prod = af * ce;
  return prod < ce ? prod : ce;
}

// alpha_t = alpha y + (1 - alpha)(1 - y), or 1 without alpha (alpha < 0), as one fused
// multiply-add of y and yn = 1 - y: exact for y in {0, 1}, and exactly 1 without alpha
// (y + (1 - y) is within half an ulp of 1 and rounds to it).
template <class T>
struct FocalAlpha {
  T on, off;  // the weights of y and of 1 - y
  FL_HD explicit FocalAlpha(T alpha)
      : on(alpha < T(0) ? T(1) : alpha), off(alpha < T(0) ? T(1) : T(1) - alpha) {}
  FL_HD FL_INLINE T operator()(T y, T yn) const { return fma_(on, y, off * yn); }
};

template <class T>
FL_HD FL_INLINE T pow_nonneg(T m, T gamma) {  // m^gamma for m >= 0, with m^0 = 1
  // computed before the select: a conditional call keeps gcc from vectorizing the value-only loop
  const T p = vm::exp(gamma * vm::log(m));
  return gamma == T(0) ? T(1) : p;
}

template <class T>
struct FocalLogits : LogitStaged<T, FocalLogits<T>> {
  static constexpr index_t kWork = sizeof(T) == 4 ? 7 : 18;  // exp and log for m^gamma
  T gamma;
  FocalAlpha<T> alpha;
  FL_HD explicit FocalLogits(const double* prm) : gamma(T(prm[0])), alpha(T(prm[1])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void finish(T y, T z, T, T e, T& l, T& g, T& h) const {
    const T yn = T(1) - y;
    const LogisticParts<T> s(z, e);
    const T ce = focal_ce(y, yn, z, s);
    const T m = y * s.sig_neg + yn * s.sig, at = alpha(y, yn);
    const T af = at * pow_nonneg(m, gamma);
    l = focal_product(af, at, ce);
    if constexpr (G || H) {
      const T s2 = s.sig * s.sig_neg, dm = (T(1) - T(2) * y);
      const T r = m > T(0) ? dm * s2 / m : dm;
      const T dce = yn * s.sig - y * s.sig_neg;
      const T gr = gamma * r;
      // r = 0 where the logit saturates (s2 = 0) while ce may be infinite: the product's limit is 0.
      const T gr_ce = gamma == T(0) || r == T(0) ? T(0) : gr * ce;
      if constexpr (G) g = af * (gr_ce + dce);
      if constexpr (H) {
        const T curv = gamma == T(0) ? T(0) : ((gamma - T(1)) * r + (T(1) - T(2) * s.sig)) * gr_ce;
        h = af * (curv + T(2) * gr * dce + s2);
      }
    }
  }
};

// m^n and its derivatives in m, P1 = n m^(n-1) and P2 = n(n-1) m^(n-2), for an integer n >= 0 by
// multiplication only (no pow, no division by m): n = N for N in 0..3, else n read at run time
// (2 <= n <= kFocalMaxIntGamma) and m^(n-2) formed from the bits of n - 2.
inline constexpr int kFocalMaxIntGamma = 65;
template <class T>
struct PowDerivs {
  T p0, p1, p2;
};
template <int N, class T>
FL_HD FL_INLINE PowDerivs<T> int_pow_derivs(T m, int n) {
  if constexpr (N == 0) {
    return {T(1), T(0), T(0)};
  } else if constexpr (N == 1) {
    return {m, T(1), T(0)};
  } else if constexpr (N == 2) {
    return {m * m, T(2) * m, T(2)};
  } else if constexpr (N == 3) {
    const T m2 = m * m;
    return {m2 * m, T(3) * m2, T(6) * m};
  } else {
    T q = T(1), b = m;
    for (int bit = 0; bit < 6; ++bit, b = b * b) q = ((n - 2) >> bit) & 1 ? q * b : q;
    const T c = T(n);
    return {q * m * m, c * (q * m), c * (c - T(1)) * q};
  }
}

// FocalLogits for an integer gamma (N as in int_pow_derivs; the driver picks it once per call).
// With P = m^gamma and m' = (1 - 2y) s2, the derivatives need no division by m:
//   l' = a (P1 m' ce + P ce'),   l'' = a (P2 m'^2 ce + P1 m' ((1 - 2 sig) ce + 2 ce') + P s2).
// m' ce is taken as 0 where m' = 0 (saturated logit) while ce may be infinite.
// Without alpha (Alpha false, picked once per call) alpha_t is exactly 1 for y in [0, 1]
// (FocalAlpha) and its products are left out: the same bits, 25 multiplies and compares per
// vector of elements instead of 30 (gamma = 2).
template <class T, int N, bool Alpha>
struct FocalLogitsInt : LogitStaged<T, FocalLogitsInt<T, N, Alpha>> {
  static constexpr index_t kWork = sizeof(T) == 4 ? 4 : 9;
  int n;
  FocalAlpha<T> alpha;
  FL_HD explicit FocalLogitsInt(const double* prm) : n(static_cast<int>(prm[0])), alpha(T(prm[1])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void finish(T y, T z, T, T e, T& l, T& g, T& h) const {
    const T yn = T(1) - y;
    const LogisticParts<T> s(z, e);
    const T ce = focal_ce(y, yn, z, s);
    const T m = y * s.sig_neg + yn * s.sig, at = Alpha ? alpha(y, yn) : T(1);
    const auto weighted = [at](T x) FL_LAMBDA_INLINE { return Alpha ? at * x : x; };
    const PowDerivs<T> P = int_pow_derivs<N>(m, n);
    l = Alpha ? focal_product(weighted(P.p0), at, ce) : focal_product_unweighted(P.p0, ce);
    if constexpr (G || H) {
      const T s2 = s.sig * s.sig_neg, m1 = (T(1) - T(2) * y) * s2, m1ce = weigh(m1, ce);
      const T dce = yn * s.sig - y * s.sig_neg;
      if constexpr (G) g = weighted(P.p1 * m1ce + P.p0 * dce);
      if constexpr (H)
        h = weighted(P.p2 * m1 * m1ce + P.p1 * ((T(1) - T(2) * s.sig) * m1ce + T(2) * m1 * dce) + P.p0 * s2);
    }
  }
};

// params: gamma, alpha (< 0: none), eps. At the clamped p: m = y(1-p) + (1-y)p > 0, m'' = 0.
template <class T>
struct FocalProbs {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 8 : 20;  // as LogitStaged::kWork
  T gamma;
  FocalAlpha<T> alpha;
  T eps;
  FL_HD explicit FocalProbs(const double* prm) : gamma(T(prm[0])), alpha(T(prm[1])), eps(T(prm[2])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T yn = T(1) - y, pc = clamp_prob(p, eps), qc = T(1) - pc;
    const T ce = -(y * vm::log(pc) + yn * vm::log1p(-pc));
    const T m = y * qc + yn * pc, at = alpha(y, yn);
    const T af = at * pow_nonneg(m, gamma);
    l = af * ce;
    if constexpr (G || H) {
      const T r = (T(1) - T(2) * y) / m, gr = gamma * r;
      const T dce = yn / qc - y / pc;
      if constexpr (G) g = af * (gr * ce + dce);
      if constexpr (H) h = af * ((gamma - T(1)) * gr * r * ce + T(2) * gr * dce + y / (pc * pc) + yn / (qc * qc));
    }
  }
};

// Hinge family on the margin u = s z (labels s in {-1, +1}, 0 read as -1). Hessians are the exact
// a.e. values.
template <class T>
struct Hinge {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 2 : 3;  // as LogitStaged::kWork
  FL_HD explicit Hinge(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T s = label_sign(y), u = s * z;
    l = u < T(1) ? T(1) - u : (u >= T(1) ? T(0) : u);
    if constexpr (G) g = u < T(1) ? -s : (u >= T(1) ? T(0) : u);
    if constexpr (H) h = u == u ? T(0) : u;
  }
};

template <class T>
struct SquaredHinge {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 2 : 3;
  FL_HD explicit SquaredHinge(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T s = label_sign(y), u = s * z, d = T(1) - u;
    l = u < T(1) ? d * d : (u >= T(1) ? T(0) : u);
    if constexpr (G) g = u < T(1) ? T(-2) * s * d : (u >= T(1) ? T(0) : u);
    if constexpr (H) h = u < T(1) ? T(2) : (u >= T(1) ? T(0) : u);
  }
};

// Rennie & Srebro (2005): linear below 0, quadratic on (0, 1), zero above 1.
template <class T>
struct SmoothHinge {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 2 : 3;
  FL_HD explicit SmoothHinge(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T s = label_sign(y), u = s * z, d = T(1) - u;
    const bool lin = u <= T(0), quad = u > T(0) && u < T(1), zero = u >= T(1);
    l = lin ? T(0.5) - u : (quad ? T(0.5) * d * d : (zero ? T(0) : u));
    if constexpr (G) g = lin ? -s : (quad ? -s * d : (zero ? T(0) : u));
    if constexpr (H) h = lin ? T(0) : (quad ? T(1) : (zero ? T(0) : u));
  }
};

}  // namespace losses
FL_NAMESPACE_END
