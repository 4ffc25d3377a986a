"""Likelihood (density-estimation) losses: negative log-likelihoods of generalized linear models
with a log link (McCullagh & Nelder, *Generalized Linear Models*, 1989).

``y_pred`` is the raw prediction ``z = log(mu)``, the log of the predicted mean; derivatives are
with respect to ``z``. The values are scikit-learn's ``HalfPoissonLoss``, ``HalfGammaLoss`` and
``HalfTweedieLoss`` (``sklearn._loss``), which drop the terms that depend on ``y_true`` alone, and
PyTorch's ``poisson_nll_loss`` and ``gaussian_nll_loss``. Labels outside a distribution's support
(a negative count, a non-positive Gamma observation, a non-finite value) are a ValueError naming the
first offending element, raised before any buffer is written.
"""

from __future__ import annotations

from typing import ClassVar, List, Tuple

import numpy as np

from . import _core
from ._base import ElementwiseLoss, FloatArray, Loss, param
from ._validate import boolean, check_label_range, finite_float

__all__ = ["PoissonNLL", "GammaNLL", "TweedieNLL", "GaussianNLL",
           "poisson_nll", "gamma_nll", "tweedie_nll", "gaussian_nll"]


class _LogLinkLoss(ElementwiseLoss):
    """An elementwise negative log-likelihood of ``y_true`` given the log-mean ``y_pred``."""

    family, convex, robust, smooth = "likelihood", True, False, True
    # The support of y_true: (low, closed, description) -- closed: low itself is allowed.
    support: ClassVar[Tuple[float, bool, str]] = (0.0, True, "non-negative values")

    def _label_range(self) -> Tuple[float, bool, str]:
        return self.support

    def _label_check(self):
        low, closed, what = self._label_range()
        return lambda y_true: check_label_range(y_true, low, closed, what)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Observations drawn around the means ``mu = exp(0.5 + 0.5 N(0, 1))`` (see
        ``_sample``), and predictions ``log(mu) + N(0, 0.3^2)``."""
        z = 0.5 + 0.5 * rng.standard_normal(n)
        y = self._sample(np.exp(z), rng)
        p = z + 0.3 * rng.standard_normal(n)
        return y.astype(dtype), p.astype(dtype), {}

    def _sample(self, mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(mu).astype(np.float64)


def _gamma_sample(mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma observations of mean ``mu`` and shape 2 (always > 0 in float32 too)."""
    return np.maximum(rng.gamma(2.0, mu / 2.0), 1e-3)


class PoissonNLL(_LogLinkLoss):
    """Poisson negative log-likelihood with a log link: ``y_pred = z = log(mu)``.

    ``l = exp(z) - y z``, ``dl/dz = exp(z) - y``, ``d2l/dz2 = exp(z)``: scikit-learn's
    ``HalfPoissonLoss`` exactly, and PyTorch's ``poisson_nll_loss(z, y, log_input=True)``. The
    full negative log-likelihood adds ``log(y!)``; with ``full=True`` its Stirling approximation
    ``y log y - y + log(2 pi y) / 2`` is added where ``y > 1`` (zero elsewhere), exactly as
    PyTorch's ``full=True`` (it leaves the derivatives unchanged).

    Labels are counts: finite and ``>= 0`` (integers or reals).

    Parameters
    ----------
    full : bool, default False
        Add PyTorch's Stirling term.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.PoissonNLL()(np.array([0.0, 2.0]), np.array([0.0, np.log(2.0)])), 6)
    0.806853
    """

    function_name = "poisson_nll"
    kernels = {False: "poisson_nll", True: "poisson_nll_full"}  # by ``full``
    full: bool = param(default=False, check=boolean,
                       doc="add the Stirling approximation of log(y!) where y > 1 (PyTorch's full)")
    support = (0.0, True, "counts")

    @property
    def _kernel_name(self) -> str:
        return self.kernels[self.full]

    def _pack_params(self) -> List[float]:
        return []


class GammaNLL(_LogLinkLoss):
    """Gamma negative log-likelihood with a log link: ``y_pred = z = log(mu)``.

    ``l = z + y exp(-z)``, ``dl/dz = 1 - y exp(-z)``, ``d2l/dz2 = y exp(-z)``: scikit-learn's
    ``HalfGammaLoss`` exactly. It is the negative log-likelihood of the exponential distribution
    (Gamma of shape 1) with mean ``mu``; for shape ``k`` the likelihood is ``k l`` plus terms free of
    ``z``. The half Gamma deviance is ``l + constant`` with ``constant = -log(y) - 1``
    (scikit-learn's ``constant_to_optimal_zero``), zero at ``mu = y``.

    Labels must be finite and ``> 0``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.GammaNLL()(np.array([2.0]), np.array([0.0])), 6)
    2.0
    """

    kernel = "gamma_nll"
    support = (0.0, False, "positive values")

    def _sample(self, mu, rng):
        return _gamma_sample(mu, rng)


def _tweedie_power(name: str, value) -> float:
    p = finite_float(name, value)
    if 0 < p < 1:
        raise ValueError(f"{name} must be <= 0 or >= 1 (no Tweedie distribution exists for "
                         f"0 < power < 1); got {p}")
    return p


class TweedieNLL(_LogLinkLoss):
    """Tweedie negative log-likelihood with a log link (scikit-learn's ``HalfTweedieLoss``):
    ``y_pred = z = log(mu)``, power ``p``.

    ``l = exp((2-p) z) / (2-p) - y exp((1-p) z) / (1-p)``,
    ``dl/dz = exp((2-p) z) - y exp((1-p) z)``,
    ``d2l/dz2 = (2-p) exp((2-p) z) - (1-p) y exp((1-p) z)``;
    at ``p = 1`` and ``p = 2`` the limits, exactly :class:`PoissonNLL` and :class:`GammaNLL`
    (scikit-learn's forms), and at ``p = 0`` scikit-learn's ``(exp(z) - y)**2 / 2``. Like
    scikit-learn's, the value drops a term depending on ``y`` alone
    (``max(y, 0)**(2-p) / ((1-p)(2-p))`` for the other powers), so it is not continuous in ``p``.

    ``p <= 0``: any finite ``y`` (``p = 0`` is the normal distribution); ``1 <= p < 2``:
    ``y >= 0`` (``1 < p < 2``: compound Poisson-Gamma); ``p >= 2``: ``y > 0`` (``p = 3``: inverse
    Gaussian). Powers in ``(0, 1)`` are rejected, as scikit-learn's ``TweedieRegressor`` and
    ``mean_tweedie_deviance`` do. Convex in ``z`` for ``1 <= p <= 2``.

    Parameters
    ----------
    power : float <= 0 or >= 1, default 1.5

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.TweedieNLL(power=1.5)(np.array([1.0]), np.array([0.0])), 6)
    4.0
    """

    kernel = "tweedie_nll"
    power: float = param(default=1.5, check=_tweedie_power,
                         doc="Tweedie power p (<= 0 or >= 1): 1 Poisson, 2 Gamma, 3 inverse Gaussian")
    convex = False

    @property
    def _kernel_name(self) -> str:
        return {1.0: "poisson_nll", 2.0: "gamma_nll"}.get(self.power, "tweedie_nll")

    def _pack_params(self) -> List[float]:
        return [self.power, 0.5 if self.power == 0 else 0.0]

    def _label_range(self) -> Tuple[float, bool, str]:
        if self.power <= 0:
            return (-np.inf, False, f"real values (power={self.power:g})")
        if self.power < 2:
            return (0.0, True, f"non-negative values (power={self.power:g})")
        return (0.0, False, f"positive values (power={self.power:g})")

    def _sample(self, mu, rng):
        if self.power <= 0:
            return mu + 0.3 * rng.standard_normal(mu.shape)
        if self.power >= 2:
            return _gamma_sample(mu, rng)
        # compound Poisson-Gamma: a Poisson number of Gamma(2) jumps, zero when there are none
        counts = rng.poisson(mu)
        return np.where(counts > 0, rng.gamma(2.0 * np.maximum(counts, 1), 0.5), 0.0)


class GaussianNLL(Loss[FloatArray]):
    """Gaussian negative log-likelihood with a learned variance: ``y_pred`` of shape ``(..., 2)``
    holds the mean ``m`` and the log-variance ``s`` of each prediction, ``y_true`` has shape
    ``(...)``.

    ``l = (s + (y - m)**2 exp(-s)) / 2`` (plus ``log(2 pi) / 2`` with ``full=True``);
    gradients ``dl/dm = (m - y) exp(-s)``, ``dl/ds = (1 - (y - m)**2 exp(-s)) / 2``; Hessian
    diagonal ``exp(-s)`` and ``(y - m)**2 exp(-s) / 2``. The mean runs over the ``n`` predictions
    (rows), and ``sample_weight`` has shape ``(...)``.

    Equals PyTorch's ``gaussian_nll_loss(m, y, var=exp(s), full=full)`` wherever
    ``exp(s) >= eps`` (PyTorch's ``eps=1e-6``): PyTorch clamps the variance below ``eps`` in the
    value (and passes the gradient through unclamped). On the log-variance no clamp is needed, so
    none is applied. The Gaussian likelihood (Nix & Weigend, 1994; Kendall & Gal, 2017).

    Parameters
    ----------
    full : bool, default False
        Add the constant ``log(2 pi) / 2``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.GaussianNLL()(np.array([1.0]), np.array([[3.0, 0.0]]))
    2.0
    """

    function_name = "gaussian_nll"
    family, convex, robust, smooth = "likelihood", False, False, True
    native_buffers = True
    full: bool = param(default=False, check=boolean, doc="add the constant log(2 pi) / 2")

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        return _core.rowwise(
            _core.row_kernels["gaussian_nll"], [float(self.full)], y_true, y_pred, sample_weight,
            None, None, None, reduction, want_grad, want_hess, out, grad_out, hess_out)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """``y ~ N(0, 1)``; predictions: the mean ``y + N(0, 0.3^2)`` and the log-variance
        ``log(0.09) + 0.3 N(0, 1)``, shape ``(n, 2)``."""
        y = rng.standard_normal(n)
        p = np.stack([y + 0.3 * rng.standard_normal(n),
                      np.log(0.09) + 0.3 * rng.standard_normal(n)], axis=-1)
        return y.astype(dtype), p.astype(dtype), {}


poisson_nll = PoissonNLL.functional
gamma_nll = GammaNLL.functional
tweedie_nll = TweedieNLL.functional
gaussian_nll = GaussianNLL.functional
