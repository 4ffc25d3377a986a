// Likelihood (density-estimation) losses with a log link: the raw prediction z is the log of the
// mean, mu = exp(z). Derivatives are taken with respect to z. Value, gradient and Hessian diagonal
// come from the same one or two exponentials. Labels are checked by the binding before any work
// (first_bad_real_label): counts >= 0 for Poisson, y > 0 for Gamma, scikit-learn's ranges for
// Tweedie. References: McCullagh & Nelder, Generalized Linear Models (1989); scikit-learn's
// sklearn/_loss (HalfPoissonLoss, HalfGammaLoss, HalfTweedieLoss); PyTorch's poisson_nll_loss and
// gaussian_nll_loss.
#pragma once

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"
#include "fastloss/vmath.hpp"
#include "binary.hpp"  // weigh: a zero label removes a term even where it is infinite

FL_NAMESPACE_BEGIN
namespace losses {

// Poisson negative log-likelihood up to log(y!): l = exp(z) - y z (scikit-learn's HalfPoissonLoss,
// PyTorch's poisson_nll_loss(log_input=True, full=False)); g = exp(z) - y, h = exp(z). With Full,
// PyTorch's Stirling approximation of log(y!) is added for y > 1: y log y - y + log(2 pi y) / 2
// (it does not depend on z: the derivatives are unchanged).
template <class T, bool Full>
struct PoissonBody {
  static constexpr bool kAux = false;
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
template <class T>
struct GammaNLL {
  static constexpr bool kAux = false;
  FL_HD explicit GammaNLL(const double*) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    const T t = y * vm::exp(-z);
    l = z + t;
    if constexpr (G) g = T(1) - t;
    if constexpr (H) h = t;
  }
};

// scikit-learn's HalfTweedieLoss for a power p other than 1 and 2 (those are PoissonNLL and
// GammaNLL): l = exp((2-p) z)/(2-p) - y exp((1-p) z)/(1-p) + c y^2, with c = 1/2 for p = 0 only
// (scikit-learn's p = 0 form is (exp(z) - y)^2 / 2), else 0;
// g = exp((2-p) z) - y exp((1-p) z), h = (2-p) exp((2-p) z) - (1-p) y exp((1-p) z).
// The two exponentials are most of the work; at three powers one comes from the other (Form):
// p = 1.5 (exp(-z/2) = 1 / exp(z/2)), p = 3, the inverse Gaussian (exp(-2z) = exp(-z)^2), and
// p = 0 (exp(2z) = exp(z)^2). The CPU driver picks the form once per call (tweedie_form).
// params: p, c
enum class TweedieForm : int { two_exps, inverse, square, root };

inline TweedieForm tweedie_form(double p) {
  return p == 1.5 ? TweedieForm::inverse
         : p == 3.0 ? TweedieForm::square
         : p == 0.0 ? TweedieForm::root
                    : TweedieForm::two_exps;
}

template <class T, TweedieForm Form>
struct TweedieNLLForm {
  static constexpr bool kAux = false;
  T a, b, inv_a, inv_b, c;  // a = 1 - p, b = 2 - p
  FL_HD explicit TweedieNLLForm(const double* prm)
      : a(T(1.0 - prm[0])), b(T(2.0 - prm[0])), inv_a(T(1.0 / (1.0 - prm[0]))),
        inv_b(T(1.0 / (2.0 - prm[0]))), c(T(prm[1])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y, T z, T, T& l, T& g, T& h) const {
    T ea, e2;  // exp((1-p) z), exp((2-p) z)
    if constexpr (Form == TweedieForm::inverse) {
      e2 = vm::exp(b * z), ea = T(1) / e2;
    } else if constexpr (Form == TweedieForm::square) {
      e2 = vm::exp(b * z), ea = e2 * e2;
    } else if constexpr (Form == TweedieForm::root) {
      ea = vm::exp(a * z), e2 = ea * ea;
    } else {
      ea = vm::exp(a * z), e2 = vm::exp(b * z);
    }
    const T e1 = weigh(y, ea);  // y exp((1-p) z)
    l = e2 * inv_b - e1 * inv_a + c * y * y;
    if constexpr (G) g = e2 - e1;
    if constexpr (H) h = b * e2 - a * e1;
  }
};
template <class T>
using TweedieNLL = TweedieNLLForm<T, TweedieForm::two_exps>;  // any power (the registry's body)
template <class T>
using TweedieNLLInverse = TweedieNLLForm<T, TweedieForm::inverse>;
template <class T>
using TweedieNLLSquare = TweedieNLLForm<T, TweedieForm::square>;
template <class T>
using TweedieNLLRoot = TweedieNLLForm<T, TweedieForm::root>;

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
