"""SciPy adapter: a linear model's objective for ``scipy.optimize.minimize``.

``linear_objective(loss, X, y)`` packs the coefficients ``W`` (``d`` or ``d x K``) and the
intercept ``b`` into one flat vector ``theta`` and gives

- ``fun(theta) -> (value, gradient)`` for ``minimize(..., jac=True)`` (L-BFGS-B, CG, BFGS ...),
- ``hessp(theta, p)`` (Hessian times vector) for Newton-CG and trust-region methods,

of ``loss(y, X @ W + b, sample_weight) + l2 / 2 * ||W||^2``, where the loss reduces with its own
``reduction`` ("mean", the weighted mean ``sum(w l) / sum(w)``, by default; "sum" also works).
The intercept is not penalized. One fused fastloss pass gives the value and the gradient with
respect to the margins; the rest is two matrix products.

``hessp`` needs a Hessian that is diagonal in the margins: every elementwise loss (regression,
binary, multi-quantile). Multi-class (softmax) losses couple the classes of a row: use L-BFGS.
For piecewise-linear losses (MAE, quantile, hinge) the Hessian is the exact almost-everywhere
value 0 and only ``l2`` gives curvature: prefer L-BFGS there too.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._adapters import as_loss, check_on_margins, output_count
from ._base import ElementwiseLoss, Loss

__all__ = ["LinearObjective", "linear_objective"]


class LinearObjective:
    """The objective of a linear model with a fastloss loss; see the module docs.

    Attributes
    ----------
    n_features, n_outputs : int
        ``W`` has shape ``(n_features,)`` for one output, ``(n_features, n_outputs)`` otherwise.
    x0 : ndarray
        Zeros of the size of ``theta``: a starting point.
    """

    def __init__(self, loss: Loss, X: Any, y: Any, sample_weight: Any = None, l2: float = 0.0,
                 fit_intercept: bool = True, n_outputs: Optional[int] = None) -> None:
        self.loss = as_loss(loss)
        check_on_margins(self.loss, "linear_objective")
        self.reduction = self.loss.reduction
        if self.reduction == "none":
            raise ValueError("linear_objective needs a loss with reduction 'mean' or 'sum'")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
        self.X, self.y = X, np.asarray(y)
        if self.y.shape[:1] != X.shape[:1]:
            raise ValueError(f"X and y must have the same number of rows; got X {X.shape} and y {self.y.shape}")
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.l2 = float(l2)
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be >= 0; got {l2}")
        self.fit_intercept = bool(fit_intercept)
        self.n_features = X.shape[1]
        self.n_outputs = output_count(self.loss, self.y, n_outputs)
        self.x0 = np.zeros(self.n_features * self.n_outputs + self.n_outputs * self.fit_intercept)
        self._hess_at: Tuple[Optional[bytes], Optional[np.ndarray]] = (None, None)

    def unpack(self, theta: np.ndarray, name: str = "theta"):
        """``(W, b)``: coefficients and intercept (0.0 without one) from the flat ``theta``."""
        d, k = self.n_features, self.n_outputs
        theta = np.asarray(theta)
        if theta.shape != self.x0.shape:
            raise ValueError(f"{name} must have shape {self.x0.shape} (n_features * n_outputs"
                             f"{' + n_outputs' if self.fit_intercept else ''}); got {theta.shape}")
        W = theta[:d * k] if k == 1 else theta[:d * k].reshape(d, k)
        if not self.fit_intercept:
            return W, 0.0 if k == 1 else np.zeros(k)
        b = theta[d * k:]
        return W, (float(b[0]) if k == 1 else b)

    def margins(self, theta: np.ndarray, X: Any = None) -> np.ndarray:
        """``X @ W + b`` (the training ``X`` by default)."""
        W, b = self.unpack(theta)
        return (self.X if X is None else np.asarray(X, dtype=np.float64)) @ W + b

    def _pack(self, gW: np.ndarray, gZ: np.ndarray) -> np.ndarray:
        parts = [gW.ravel()]
        if self.fit_intercept:
            parts.append(np.atleast_1d(gZ.sum(axis=0)))
        return np.concatenate(parts)

    def fun(self, theta: np.ndarray) -> Tuple[float, np.ndarray]:
        """``(value, gradient)`` at ``theta``."""
        W, _ = self.unpack(theta)
        value, gZ = self.loss.value_and_grad(self.y, self.margins(theta), self.sample_weight,
                                             reduction=self.reduction)
        # The one place a penalty enters: L1 / elastic net (with their proximal operators)
        # would plug in here beside the L2 term.
        value += 0.5 * self.l2 * float(np.dot(W.ravel(), W.ravel()))
        return value, self._pack(self.X.T @ gZ + self.l2 * W, gZ)

    def hessp(self, theta: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Hessian at ``theta`` times the vector ``p`` (elementwise losses)."""
        if not isinstance(self.loss, ElementwiseLoss):
            raise TypeError(f"hessp needs a Hessian diagonal in the margins; {type(self.loss).__name__} "
                            "couples the classes of a row: use L-BFGS (jac=True) instead")
        key = theta.tobytes()
        if self._hess_at[0] != key:  # one kernel pass per new theta, shared by the CG iterations
            _, h = self.loss.grad_hess(self.y, self.margins(theta), self.sample_weight,
                                       reduction=self.reduction)
            self._hess_at = (key, h)
        h = self._hess_at[1]
        P, pb = self.unpack(p, "p")
        hZ = h * (self.X @ P + pb)
        return self._pack(self.X.T @ hZ + self.l2 * P, hZ)


def linear_objective(loss: Any, X: Any, y: Any, sample_weight: Any = None, l2: float = 0.0,
                     fit_intercept: bool = True, *, n_outputs: Optional[int] = None) -> LinearObjective:
    """The objective of a linear model ``X @ W + b`` under ``loss`` (see the module docs).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> from scipy.optimize import minimize
    >>> from fastloss.scipy import linear_objective
    >>> X = np.array([[0.0], [1.0], [2.0]]); y = np.array([1.0, 3.0, 5.0])
    >>> obj = linear_objective(fl.MSE(), X, y)
    >>> res = minimize(obj.fun, obj.x0, jac=True, hessp=obj.hessp, method="Newton-CG")
    >>> np.round(res.x, 6).tolist()   # slope, intercept
    [2.0, 1.0]
    """
    return LinearObjective(loss, X, y, sample_weight, l2, fit_intercept, n_outputs)
