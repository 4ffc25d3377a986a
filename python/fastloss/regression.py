"""Regression losses.

Every loss here is elementwise in the residual ``r = y_pred - y_true``; derivatives are with
respect to ``y_pred``. With ``reduction="mean"`` the value is ``sum(w * l) / sum(w)`` (``w = 1``
without weights), so an unweighted mean equals PyTorch's and scikit-learn's.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np

from ._base import ElementwiseLoss, param
from ._validate import between, non_negative, number_or_floats, positive

__all__ = ["MSE", "MAE", "Huber", "SmoothL1", "Quantile", "LogCosh"]


class MSE(ElementwiseLoss):
    """Mean squared error (L2 loss).

    ``l = r**2``,  ``dl/dy_pred = 2 r``,  ``d2l/dy_pred2 = 2``.

    Convex, smooth, sensitive to outliers (Gaussian likelihood).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.MSE()(np.array([0.0, 1.0]), np.array([1.0, 3.0]))
    2.5
    """

    kernel = "mse"
    family, convex, robust, smooth = "regression", True, False, True


class MAE(ElementwiseLoss):
    """Mean absolute error (L1 loss).

    ``l = |r|``,  ``dl/dy_pred = sign(r)`` (0 at r = 0),  Hessian: the exact almost-everywhere
    value 0.

    Convex, robust to outliers, not differentiable at 0 (Laplace likelihood).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.MAE()(np.array([0.0, 1.0]), np.array([1.0, 3.0]))
    1.5
    """

    kernel = "mae"
    family, convex, robust, smooth, hessian = "regression", True, True, False, "a.e."


class Huber(ElementwiseLoss):
    """Huber loss: quadratic within ``delta`` of the target, linear beyond.

    ``l = r**2 / 2`` if ``|r| <= delta`` else ``delta * (|r| - delta / 2)``;
    ``dl/dy_pred = r`` or ``delta * sign(r)``; Hessian 1 inside, 0 outside (exact a.e.).
    Equals ``torch.nn.functional.huber_loss(y_pred, y_true, delta=delta)``.

    Parameters
    ----------
    delta : float > 0, default 1.0
        Threshold between the quadratic and the linear regime.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.Huber(delta=1.0)(np.array([0.0, 0.0]), np.array([0.5, 3.0]))
    1.3125
    """

    kernel = "huber"
    delta: float = param(default=1.0, check=positive,
                         doc="threshold between quadratic and linear regime")
    family, convex, robust, smooth, hessian = "regression", True, True, True, "a.e."


class SmoothL1(ElementwiseLoss):
    """Smooth L1 loss (PyTorch's ``smooth_l1_loss``): Huber divided by ``beta``.

    ``l = r**2 / (2 beta)`` if ``|r| < beta`` else ``|r| - beta / 2``; gradient ``r / beta`` or
    ``sign(r)``; Hessian ``1 / beta`` inside, 0 outside (the exact a.e. value). ``beta = 0`` is
    exactly the L1 loss.

    Parameters
    ----------
    beta : float >= 0, default 1.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.SmoothL1(beta=2.0)(np.array([0.0, 0.0]), np.array([1.0, 3.0]))
    1.125
    """

    kernel = "smooth_l1"
    beta: float = param(default=1.0, check=non_negative, doc="width of the quadratic region")
    family, convex, robust, smooth, hessian = "regression", True, True, True, "a.e."


class Quantile(ElementwiseLoss):
    """Quantile (pinball) loss for quantile level ``tau``.

    ``l = max(tau * (y - y_pred), (tau - 1) * (y - y_pred))``; gradient ``1 - tau`` where
    ``y_pred > y`` and ``-tau`` where ``y_pred <= y`` (scikit-learn's subgradient at 0); Hessian:
    the exact a.e. value 0. ``tau = 0.5`` is half the absolute error.

    With a vector of ``q`` quantiles, ``y_pred`` has shape ``(..., q)`` (one column per quantile)
    and ``y_true`` either the same shape or ``(...)``; the mean runs over all ``n * q`` terms.

    Parameters
    ----------
    quantile : float in (0, 1) or sequence of them, default 0.5

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.Quantile(quantile=0.9)(np.array([1.0, 1.0]), np.array([0.0, 2.0]))
    0.5
    >>> fl.Quantile(quantile=[0.25, 0.75])(np.array([1.0]), np.array([[0.0, 2.0]]))
    0.25
    """

    kernel = "quantile"
    quantile: Union[float, Sequence[float]] = param(
        default=0.5, check=number_or_floats(between(0, 1, "neither")),
        doc="quantile level(s) tau in (0, 1); a sequence is stored as a tuple")
    family, convex, robust, smooth, hessian = "regression", True, True, False, "a.e."

    def _pack_params(self) -> List[float]:
        return []

    def _column_params(self) -> Optional[np.ndarray]:
        return np.asarray(self.quantile, dtype=np.float64)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """The regression data, with one prediction column per quantile for a vector of them."""
        y, p, inputs = super().synthetic(n, rng)
        if np.ndim(self.quantile):
            p = p[:, None] + np.linspace(-1, 1, np.size(self.quantile))[None, :] * 0.3
        return y.astype(dtype), p.astype(dtype), inputs


class LogCosh(ElementwiseLoss):
    """Log-cosh loss: ``l = log(cosh(r))``, smooth everywhere, ~``r**2/2`` near 0, ~``|r| - log 2``
    far away.

    Gradient ``tanh(r)``, Hessian ``1 - tanh(r)**2``. Computed without overflow for any ``|r|``
    (through ``expm1(-|r|)``) and without cancellation near 0.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.LogCosh()(np.array([0.0]), np.array([100.0])), 6)
    99.306853
    """

    kernel = "log_cosh"
    family, convex, robust, smooth = "regression", True, True, True


mse = MSE.functional
mae = MAE.functional
huber = Huber.functional
smooth_l1 = SmoothL1.functional
quantile = Quantile.functional
log_cosh = LogCosh.functional
