"""Parameter regularizers: L1, L2 and elastic net over one or many parameter arrays --
value, (sub)gradient and proximal operator -- and a data loss plus a regularizer,
``L_total = L_data(y_true, y_pred) + R(theta)``.

Parameters ``theta`` are one array, a list/tuple of arrays, or a mapping name -> array; gradients
and proximal steps come back in the same structure, each array with its own shape and dtype
(float32 stays float32; other real dtypes give float64). Values are summed in float64.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ._base import Loss
from ._validate import non_negative, positive, real_array

__all__ = ["L1", "L2", "ElasticNet", "Regularized"]


def _as_param(name: str, a: Any) -> np.ndarray:
    return real_array(a, name)


def _flatten(theta: Any):
    """(list of arrays, rebuild(list of arrays) -> theta's structure)."""
    if isinstance(theta, Mapping):
        keys = list(theta)
        return ([_as_param(f"theta[{k!r}]", theta[k]) for k in keys],
                lambda arrays: dict(zip(keys, arrays)))
    if isinstance(theta, (list, tuple)):
        kind = type(theta)
        return [_as_param(f"theta[{i}]", a) for i, a in enumerate(theta)], kind
    return [_as_param("theta", theta)], lambda arrays: arrays[0]


class ElasticNet:
    """Elastic-net penalty ``R(theta) = l1 * sum|theta_i| + l2 * sum theta_i**2`` (Zou & Hastie
    2005; the L2 term has no factor 1/2, unlike scikit-learn's ``ElasticNet``).

    - gradient: ``l1 * sign(theta) + 2 l2 theta`` -- at ``theta_i = 0`` the L1 part takes the
      subgradient 0 (the minimum-norm one when ``l2`` adds nothing there);
    - proximal operator of ``step * R``: ``argmin_x step R(x) + ||x - v||^2 / 2 =
      soft(v, step l1) / (1 + 2 step l2)`` with ``soft(v, a) = sign(v) max(|v| - a, 0)``
      (element by element).

    Parameters
    ----------
    l1 : float >= 0, default 0.0
    l2 : float >= 0, default 0.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> r = fl.ElasticNet(l1=0.5, l2=0.25)
    >>> r(np.array([1.0, -2.0]))
    2.75
    >>> r.prox(np.array([1.0, -2.0, 0.25]), step=1.0).tolist()
    [0.3333333333333333, -1.0, 0.0]
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = non_negative("l1", l1)
        self.l2 = non_negative("l2", l2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1!r}, l2={self.l2!r})"

    def __call__(self, theta) -> float:
        """``R(theta)`` summed over every array, in float64."""
        terms = []
        for a in _flatten(theta)[0]:
            if self.l1:
                terms.append(self.l1 * float(np.abs(a).sum(dtype=np.float64)))
            if self.l2:
                terms.append(self.l2 * float(np.square(a, dtype=np.float64).sum()))
        return math.fsum(terms)

    def grad(self, theta):
        """``dR/dtheta`` (the subgradient 0 of ``|theta_i|`` at 0), in ``theta``'s structure."""
        arrays, rebuild = _flatten(theta)
        out = []
        for a in arrays:
            g = (self.l1 * np.sign(a)).astype(a.dtype) if self.l1 else np.zeros_like(a)
            if self.l2:
                g += a.dtype.type(2.0 * self.l2) * a
            out.append(g)
        return rebuild(out)

    def value_and_grad(self, theta):
        return self(theta), self.grad(theta)

    def prox(self, theta, step: float = 1.0):
        """The proximal operator of ``step * R`` at ``theta`` (closed form, element by element)."""
        step = positive("step", step)
        arrays, rebuild = _flatten(theta)
        shrink = step * self.l1
        scale = 1.0 / (1.0 + 2.0 * step * self.l2)
        out = []
        for a in arrays:
            x = np.sign(a) * np.maximum(np.abs(a) - a.dtype.type(shrink), 0) if shrink else a.copy()
            x = x * a.dtype.type(scale)
            x += 0  # -0.0 -> 0.0 where the threshold zeroes a negative entry
            out.append(x.astype(a.dtype, copy=False))
        return rebuild(out)


class L1(ElasticNet):
    """L1 (lasso) penalty ``R(theta) = lam * sum|theta_i|``; subgradient ``lam sign(theta)`` (0 at
    0); proximal operator: soft thresholding by ``step * lam``.

    Parameters
    ----------
    lam : float >= 0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.L1(0.5)(np.array([1.0, -2.0])), fl.L1(0.5).prox(np.array([1.0, -0.25])).tolist()
    (1.5, [0.5, 0.0])
    """

    def __init__(self, lam: float) -> None:
        super().__init__(l1=non_negative("lam", lam))

    def __repr__(self) -> str:
        return f"L1(lam={self.l1!r})"


class L2(ElasticNet):
    """L2 (ridge, weight decay) penalty ``R(theta) = lam * sum theta_i**2``; gradient
    ``2 lam theta``; proximal operator ``v / (1 + 2 step lam)``.

    Parameters
    ----------
    lam : float >= 0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.L2(0.5)(np.array([1.0, -2.0])), fl.L2(0.5).grad(np.array([1.0, -2.0])).tolist()
    (2.5, [1.0, -2.0])
    """

    def __init__(self, lam: float) -> None:
        super().__init__(l2=non_negative("lam", lam))

    def __repr__(self) -> str:
        return f"L2(lam={self.l2!r})"


class Regularized:
    """A data loss plus a parameter penalty: ``L_total = L_data(y_true, y_pred) + R(theta)``.

    ``value_and_grad(y_true, y_pred, theta)`` returns ``(value, dL/dy_pred, dR/dtheta)``: the data
    loss's gradient with respect to its prediction (chain it through your model) and the
    penalty's gradient with respect to the parameters, in ``theta``'s structure. Any loss: its own
    arguments come first (several inputs, keyword inputs such as ``teacher_logits``), then
    ``theta`` (or ``theta=`` by keyword).

    Parameters
    ----------
    loss : fastloss.Loss (reduction "mean" or "sum")
    regularizer : L1, L2 or ElasticNet

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> obj = fl.Regularized(fl.MSE(), fl.L2(0.1))
    >>> theta = np.array([1.0, 2.0])
    >>> round(obj(np.zeros(2), np.array([1.0, 1.0]), theta), 6)
    1.5
    """

    def __init__(self, loss: Loss, regularizer: ElasticNet) -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastloss.Loss; got {type(loss).__name__}")
        if loss.reduction not in ("mean", "sum"):
            raise ValueError(f"loss must have reduction 'mean' or 'sum'; got {loss.reduction!r}")
        if not isinstance(regularizer, ElasticNet):
            raise TypeError(f"regularizer must be L1, L2 or ElasticNet; got "
                            f"{type(regularizer).__name__}")
        self.loss, self.regularizer = loss, regularizer

    def __repr__(self) -> str:
        return f"Regularized({self.loss!r}, {self.regularizer!r})"

    def _split(self, args, theta):
        """The loss's arguments and theta (keyword, or the last positional argument)."""
        if theta is None:
            if not args:
                raise TypeError("Regularized needs theta (the parameters)")
            args, theta = args[:-1], args[-1]
        return args, theta

    def __call__(self, *args, theta=None, sample_weight=None, **inputs) -> float:
        """``L_data(*args) + R(theta)``: the loss's own arguments, then ``theta``."""
        args, theta = self._split(args, theta)
        penalty = self.regularizer(theta)  # validates theta before the data pass
        return self.loss(*args, sample_weight=sample_weight, **inputs) + penalty

    def value_and_grad(self, *args, theta=None, sample_weight=None, grad_out=None, **inputs):
        """``(value, dL/dy_pred, dR/dtheta)``; ``dL/dy_pred`` is a tuple for a loss with several
        differentiable inputs."""
        args, theta = self._split(args, theta)
        penalty, grad_theta = self.regularizer.value_and_grad(theta)
        value, grad = self.loss.value_and_grad(*args, sample_weight=sample_weight,
                                               grad_out=grad_out, **inputs)
        return value + penalty, grad, grad_theta
