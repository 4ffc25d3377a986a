// Regression losses (spec section 2). Residual r = y_pred - y_true; derivatives are taken with
// respect to y_pred. Each body gives value, gradient and Hessian diagonal together; where the loss is
// piecewise linear the Hessian is its exact almost-everywhere value, 0. NaN in r propagates to every
// output.
#pragma once

#include "fastloss/config.hpp"
#include "fastloss/vmath.hpp"

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

// log(cosh(r)) from q = expm1(-|r|) (so e^-|r| = 1 + q, no overflow for any |r|):
//   small |r|: log1p(cosh|r| - 1) = log1p(q^2 / (2(1+q)))       (no cancellation near 0)
//   large |r|: |r| - log 2 + log1p(e^-2|r|)
//   tanh|r| = -q(2+q) / (2 + 2q + q^2),   sech^2 r = 4 e^-2|r| / (1 + e^-2|r|)^2
// The Hessian takes e^-|r| from exp itself: 1 + q cancels for large |r|, where sech^2 is tiny
// but must keep its relative accuracy.
template <class T>
struct LogCosh {
  static constexpr bool kAux = false;
  FL_HD explicit LogCosh(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T p, T, T& l, T& g, T& h) const {
    const T r = p - y, a = r < T(0) ? -r : r;
    const T q = vm::expm1(-a), t = T(1) + q, t2 = t * t;
    const bool small = a < T(1);
    const T arg = small ? q * q / (T(2) * t) : t2;
    const T base = small ? T(0) : a - T(0.693147180559945309417232121458176568);
    l = base + vm::log1p(arg);
    if constexpr (G) {
      const T th = -q * (T(2) + q) / (T(2) + T(2) * q + q * q);
      g = r < T(0) ? -th : th;
    }
    if constexpr (H) {
      const T e = vm::exp(-a), e2 = e * e, d = T(1) + e2;
      h = T(4) * e2 / (d * d);
    }
  }
};

}  // namespace losses
FL_NAMESPACE_END
