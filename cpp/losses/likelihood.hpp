// Likelihood (density-estimation) losses with a log link: the raw prediction z is the log of the
// mean, mu = exp(z). Derivatives are taken with respect to z. Value, gradient and Hessian diagonal
// come from the same one or two exponentials. Labels outside a distribution's support (counts
// >= 0 for Poisson, y > 0 for Gamma, scikit-learn's ranges for Tweedie) make the value NaN
// (LabelSupport): the Python side either checks the labels before any work
// (first_bad_real_label, when the call writes into the caller's buffers) or runs the kernel
// straight away and, if the reduced value comes back NaN, names the first bad label from a
// rescan, so the labels are read once. References: McCullagh & Nelder, Generalized Linear
// Models (1989); scikit-learn's sklearn/_loss (HalfPoissonLoss, HalfGammaLoss, HalfTweedieLoss);
// PyTorch's poisson_nll_loss and gaussian_nll_loss.
#pragma once

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"
#include "fastloss/vmath.hpp"
#include "binary.hpp"  // weigh: a zero label removes a term even where it is infinite

FL_NAMESPACE_BEGIN
namespace losses {

// A label support: any finite y, [0, inf) or (0, inf). check(y, l) is l, or NaN where y lies
// outside: one unsigned comparison on the bits of y + 0 (which turns -0 into +0), so the element
// loop stays vectorized and cheap: (bits & mask) - off < lim, where mask drops the sign bit when
// any finite y is allowed, off = 1 excludes +0 (the sum wraps to the largest integer) and
// lim = bits(+inf) - off. NaN, +-inf and negative values (sign bit set) fail.
template <class T>
struct LabelSupport {
  using U = decltype(vm::detail::to_bits(T(0)));
  U mask, off, lim;
  FL_HD static LabelSupport make(bool any_finite, bool open) {
    const U inf = vm::detail::to_bits(vm::detail::fp<T>::kInf);
    const U o = open ? 1 : 0;
    return {any_finite ? U(~vm::detail::fp<T>::kSign) : U(~U(0)), o, U(inf - o)};
  }
  FL_HD FL_INLINE T check(T y, T l) const {
    const U u = (vm::detail::to_bits(T(y + T(0))) & mask) - off;
    return u < lim ? l : vm::detail::fp<T>::kNaN;
  }
};

// Poisson negative log-likelihood up to log(y!): l = exp(z) - y z (scikit-learn's HalfPoissonLoss,
// PyTorch's poisson_nll_loss(log_input=True, full=False)); g = exp(z) - y, h = exp(z). With Full,
// PyTorch's Stirling approximation of log(y!) is added for y > 1: y log y - y + log(2 pi y) / 2
// (it does not depend on z: the derivatives are unchanged). Labels: [0, inf).
template <class T, bool Full>
struct PoissonBody {
  static constexpr bool kAux = false;
  // An element's work (elementwise.hpp): its one-thread time over MSE's, float32 : float64.
  static constexpr index_t kWork = Full ? (sizeof(T) == 4 ? 5 : 11) : (sizeof(T) == 4 ? 3 : 5);
  FL_HD explicit PoissonBody(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T mu = vm::exp(z);
    l = mu - weigh(y, z);
    if constexpr (Full) {
      const T ly = vm::log(y > T(1) ? y : T(1));  // log(1) = 0 where the term is dropped
      const T half_log_2pi = T(0.918938533204672741780329736405617639861);
      const T stirling = y * ly - y + (T(0.5) * ly + half_log_2pi);
      l += y > T(1) ? stirling : T(0);
    }
    l = LabelSupport<T>::make(false, false).check(y, l);  // [0, inf)
    if constexpr (G) g = mu - y;
    if constexpr (H) h = mu;
  }
};
template <class T>
struct PoissonNLL : PoissonBody<T, false> {
  using PoissonBody<T, false>::PoissonBody;
};
template <class T>
struct PoissonNLLFull : PoissonBody<T, true> {
  using PoissonBody<T, true>::PoissonBody;
};

// Gamma negative log-likelihood with shape 1 (the exponential distribution) with mean exp(z):
// l = z + y exp(-z) (scikit-learn's HalfGammaLoss); g = 1 - y exp(-z), h = y exp(-z).
// Labels: (0, inf).
template <class T>
struct GammaNLL {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 3 : 5;  // as PoissonBody::kWork
  FL_HD explicit GammaNLL(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T t = y * vm::exp(-z);
    l = LabelSupport<T>::make(false, true).check(y, z + t);  // (0, inf)
    if constexpr (G) g = T(1) - t;
    if constexpr (H) h = t;
  }
};

// scikit-learn's HalfTweedieLoss for a power p other than 1 and 2 (those are PoissonNLL and
// GammaNLL): with a = 1 - p, b = 2 - p,
//   l = exp(b z)/b - y exp(a z)/a (at p = 0, c = 1/2: scikit-learn's (exp(z) - y)^2 / 2, which
//       adds y^2 / 2; c = 0 for the other powers), g = exp(b z) - y exp(a z),
//   h = b exp(b z) - a y exp(a z).
// Written as F (A - y B) so that no infinity meets another: where both exponentials overflow
// (p <= 0 as z -> +inf, p > 2 as z -> -inf), exp(b z) - y exp(a z) would be inf - inf = NaN
// while the limit is infinite. The dominant exponential is factored out (regime):
//   p <= 0 (0 < a < b):  F = exp(a z), A = exp(z), B = 1        exp(z) - y <= 0 only for y >= mu
//   1 < p < 2 (a < 0 < b): F = 1,     A = exp(b z), B = exp(a z)  (the terms never both overflow)
//   p > 2 (a < b < 0):   F = exp(b z), A = 1,      B = exp(-z)
// Each needs two exponentials, E (the first one that is not 1) and R (the other); at three powers
// one comes from the other (Form, which also fixes the regime at compile time): p = 0
// (E = R = exp(z)), p = 3, the inverse Gaussian (E = R = exp(-z)), and p = 1.5
// (R = exp(-z/2) = 1 / E). The CPU driver picks the form once per call (tweedie_form). Labels: p <= 0 any finite y; 1 <= p < 2 [0, inf); p >= 2 (0, inf).
// params: p, c
enum class TweedieForm : int { two_exps, root, square, inverse };

inline TweedieForm tweedie_form(double p) {
  return p == 0.0   ? TweedieForm::root
         : p == 3.0 ? TweedieForm::square
         : p == 1.5 ? TweedieForm::inverse
                    : TweedieForm::two_exps;
}

template <class T, TweedieForm Form>
struct TweedieNLLForm {
  static constexpr bool kAux = false;
  static constexpr index_t kWork = sizeof(T) == 4 ? 3 : 6;  // as PoissonBody::kWork (p = 1.5)
  T a, b, inv_a, inv_b, c;
  T se, sr;          // E = exp(se z), R = exp(sr z)
  T regime;          // -1 (p <= 0), 0 (1 < p < 2), +1 (p > 2): a T, compared in selects
  LabelSupport<T> support;
  FL_HD explicit TweedieNLLForm(const double* prm)
      : a(T(1.0 - prm[0])), b(T(2.0 - prm[0])), inv_a(T(1.0 / (1.0 - prm[0]))),
        inv_b(T(1.0 / (2.0 - prm[0]))), c(T(prm[1])),
        se(T(prm[0] <= 0.0 ? 1.0 - prm[0] : 2.0 - prm[0])),
        sr(T(prm[0] <= 0.0 ? 1.0 : prm[0] < 2.0 ? 1.0 - prm[0] : -1.0)),
        regime(T(prm[0] <= 0.0 ? -1.0 : prm[0] < 2.0 ? 0.0 : 1.0)),
        support(LabelSupport<T>::make(prm[0] <= 0.0, prm[0] >= 2.0)) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T e = vm::exp(se * z);
    T f, A, B, r;
    if constexpr (Form == TweedieForm::root) {  // p = 0: E = R = exp(z)
      f = e, A = e, B = T(1);
    } else if constexpr (Form == TweedieForm::square) {  // p = 3: E = R = exp(-z)
      f = e, A = T(1), B = e;
    } else if constexpr (Form == TweedieForm::inverse) {  // p = 1.5: R = exp(-z/2) = 1 / E
      f = T(1), A = e, B = T(1) / e;
    } else {
      r = vm::exp(sr * z);
      f = regime == T(0) ? T(1) : e;
      A = regime > T(0) ? T(1) : e;
      A = regime < T(0) ? r : A;
      B = regime < T(0) ? T(1) : r;
    }
    const T yb = weigh(y, B);
    // p = 0: (exp(z) - y)^2 / 2 has no cancellation and no y^2 overflow
    const T d = e - y, square = c * d * d, general = f * (A * inv_b - yb * inv_a);
    if constexpr (Form == TweedieForm::root) {
      l = support.check(y, square);
    } else if constexpr (Form == TweedieForm::two_exps) {
      l = support.check(y, c > T(0) ? square : general);  // both arms computed: no branch
    } else {
      l = support.check(y, general);
    }
    if constexpr (G) g = f * (A - yb);
    if constexpr (H) h = f * (b * A - a * yb);
  }
};
template <class T>
using TweedieNLL = TweedieNLLForm<T, TweedieForm::two_exps>;  // any power (the registry's body)
template <class T>
using TweedieNLLRoot = TweedieNLLForm<T, TweedieForm::root>;
template <class T>
using TweedieNLLSquare = TweedieNLLForm<T, TweedieForm::square>;
template <class T>
using TweedieNLLInverse = TweedieNLLForm<T, TweedieForm::inverse>;

// Gaussian negative log-likelihood on rows (mean m, log-variance s) with target y (one value per
// row): l = (s + (y - m)^2 exp(-s)) / 2 [+ log(2 pi) / 2 with full]; with r = m - y and
// q = r^2 exp(-s): dl/dm = r exp(-s), dl/ds = (1 - q) / 2, d2l/dm2 = exp(-s), d2l/ds2 = q / 2.
// A row kernel of width 2: each output needs both columns of its row.
// params: full
template <class T>
struct GaussianNLL {
  static const char* check(const RowJob& job) {
    return job.K != 2 ? "y_pred must have a last axis of size 2 (mean, log-variance)" : nullptr;
  }
  static constexpr RowSpec spec{RowTarget::values, 1, nullptr, false, 0, &check};
  double constant;
  FL_HD explicit GaussianNLL(const double* v) : constant(v[0] != 0.0 ? 0.918938533204672741780329736405617639861 : 0.0) {}
  template <bool G, bool H>
  FL_HD double row(const RowJob& job, index_t r, T*) const {
    const T* x = static_cast<const T*>(job.x) + r * job.x_stride;
    const T y = static_cast<const T*>(job.targets)[r];
    const T m = x[0], s = x[1];  // read before the gradient row (which may be y_pred) is written
    const T d = m - y, e = vm::exp(-s), q = d * d * e;
    const double w = job.sample_weight ? job.sample_weight[r] : 1.0;
    if constexpr (G) {
      const T sc = static_cast<T>(w * job.grad_scale);
      T* g = static_cast<T*>(job.grad_out) + r * job.grad_stride;
      if constexpr (H) {
        T* h = static_cast<T*>(job.hess_out) + r * job.hess_stride;
        h[0] = sc * e;
        h[1] = sc * (T(0.5) * q);
      }
      g[0] = sc * (d * e);
      g[1] = sc * (T(0.5) * (T(1) - q));
    }
    return w * (0.5 * (double(s) + double(q)) + constant);
  }
};

}  // namespace losses
FL_NAMESPACE_END
