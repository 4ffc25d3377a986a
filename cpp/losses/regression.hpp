// Regression losses (spec section 2). Residual r = y_pred - y_true; derivatives are taken with
// respect to y_pred. Each body gives value, gradient and Hessian diagonal together; where the loss is
// piecewise linear the Hessian is its exact almost-everywhere value, 0. NaN in r propagates to every
// output.
#pragma once

#include "fastloss/config.hpp"
#include "fastloss/vmath.hpp"
#include "fused_math.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// NaN-propagating sign: -1, 0, +1, or NaN.
template <class T>
FL_HD FL_INLINE T sign_nan(T r) {
  return r > T(0) ? T(1) : (r < T(0) ? T(-1) : r * T(0));
}

template <class T>
struct MSE {
  static constexpr bool kAux = false;
  FL_HD explicit MSE(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T r = p - y;
    l = r * r;
    if constexpr (G) g = T(2) * r;
    if constexpr (H) h = r == r ? T(2) : r;
  }
};

template <class T>
struct MAE {
  static constexpr bool kAux = false;
  FL_HD explicit MAE(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T r = p - y;
    l = r < T(0) ? -r : r;
    if constexpr (G) g = sign_nan(r);
    if constexpr (H) h = r == r ? T(0) : r;
  }
};

// params: delta > 0
template <class T>
struct Huber {
  static constexpr bool kAux = false;
  T delta;
  FL_HD explicit Huber(const double* prm) : delta(static_cast<T>(prm[0])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T r = p - y, a = r < T(0) ? -r : r;
    const bool in = a <= delta;
    l = in ? T(0.5) * r * r : delta * (a - T(0.5) * delta);
    if constexpr (G) g = in ? r : delta * sign_nan(r);
    if constexpr (H) h = in ? T(1) : (a > delta ? T(0) : r);
  }
};

// PyTorch's smooth_l1_loss. params: beta >= 0 (beta = 0 is the L1 loss)
template <class T>
struct SmoothL1 {
  static constexpr bool kAux = false;
  T beta;
  FL_HD explicit SmoothL1(const double* prm) : beta(static_cast<T>(prm[0])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T r = p - y, a = r < T(0) ? -r : r;
    const bool in = a < beta;
    l = in ? T(0.5) * r * r / beta : a - T(0.5) * beta;
    if constexpr (G) g = in ? r / beta : sign_nan(r);
    if constexpr (H) h = in ? T(1) / beta : (a >= beta ? T(0) : r);
  }
};

// Pinball loss; the quantile tau arrives per element (aux) so that a vector of quantiles maps onto
// the columns of an (n, q) prediction. At r = 0 the subgradient is -tau (scikit-learn's choice).
template <class T>
struct Quantile {
  static constexpr bool kAux = true;
  FL_HD explicit Quantile(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T tau, T& l, T& g, T& h) const {
    const T r = p - y;
    l = r > T(0) ? (T(1) - tau) * r : -tau * r;
    if constexpr (G) g = r > T(0) ? T(1) - tau : (r <= T(0) ? -tau : r);
    if constexpr (H) h = r == r ? T(0) : r;
  }
};

// log(cosh r) with a = |r| and one reduction giving e = exp(-2a) and expm1(-2a):
//   log cosh r = log_cosh_abs(a, e)        (no cancellation on either side of a = 0.6875)
//   tanh a = -expm1(-2a) / (1 + e),   sech^2 r = 4 e / (1 + e)^2   (one reciprocal for both)
// e and expm1 keep their relative accuracy (the Hessian stays accurate where sech^2 is tiny, the
// gradient near r = 0); no overflow for any r.
// Two passes over a block (elementwise.hpp): the exponentials first, then the rest.
template <class T>
struct LogCosh {
  static constexpr bool kAux = false;
  // An element's work (elementwise.hpp): its one-thread time over MSE's, float32 : float64.
  static constexpr index_t kWork = sizeof(T) == 4 ? 4 : 8;
  using Stage = ExpExpm1<T>;
  ExpLimits<T> lim = ExpLimits<T>::opaque();
  FL_HD explicit LogCosh(const double*) {}
  FL_HD FL_INLINE Stage stage(T y, T p) const {
    const T r = p - y;
    return exp_expm1_neg_abs(r + r, lim);  // of -2|r|
  }
#if defined(__AVX512F__) && !defined(__CUDACC__)
  // The first pass in AVX-512 registers (as LogitStaged's, binary.hpp).
  template <class StageBuf>
  FL_INLINE void stage_range(index_t i0, index_t i1, const T* __restrict y, const T* __restrict p,
                             StageBuf& st) const {
    using V = decltype(fused_detail::reg_of(T{}));
    constexpr index_t kLanes = sizeof(V) / sizeof(T);
    index_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) {
      const V r = fused_detail::load_reg<V>(p + i) - fused_detail::load_reg<V>(y + i);
      V em1;
      const V e = exp_expm1_neg_abs_reg(r + r, lim, &em1);
      __builtin_memcpy(st.field[0] + i, &e, sizeof e);
      __builtin_memcpy(st.field[1] + i, &em1, sizeof em1);
    }
    for (; i < i1; ++i) st.put(i, stage(y[i], p[i]));
  }
#endif
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T aux, T& l, T& g, T& h) const {
    finish<G, H>(y, p, aux, stage(y, p), l, g, h);
  }
  template <bool G, bool H>
  FL_HD FL_INLINE void finish(T y, T p, T, Stage x, T& l, T& g, T& h) const {
    const T r = p - y;
    l = log_cosh_abs(vm::detail::abs_bits(r), x.e);
    if constexpr (G || H) {
      const T rcp = T(1) / (T(1) + x.e);
      if constexpr (G) {  // tanh r: the sign of r (of zero too) onto tanh a = (0 - expm1) / (1 + e)
        using U = decltype(vm::detail::to_bits(r));
        constexpr U sign = U(1) << (8 * sizeof(T) - 1);
        const T th = (T(0) - x.em1) * rcp;
        g = vm::detail::from_bits(static_cast<U>(vm::detail::to_bits(th) | (vm::detail::to_bits(r) & sign)));
      }
      if constexpr (H) h = T(4) * x.e * (rcp * rcp);
    }
  }
};

}  // namespace losses
FL_NAMESPACE_END
