"""What the gradient-boosting adapters (XGBoost, LightGBM, CatBoost) share: the per-sample
derivatives of a fastloss loss at the booster's raw margins, the Hessian policy, the label
conversion, and the best constant margin (``base_score`` / ``init_score``).

Boosters fit each tree by a Newton step ``-sum(g) / sum(h)`` per leaf, so they need a positive
curvature ``h``. The Hessian policy says where it comes from:

- ``"exact"``: the loss's own Hessian diagonal, untouched (it may be 0 for piecewise-linear
  losses and negative for non-convex ones such as focal; the booster then misbehaves).
- ``"clip"``: the exact Hessian, raised to at least ``floor``.
- ``"fisher"``: the curvature of the likelihood the link implies, raised to at least ``floor``:
  1 for regression (unit-variance Gaussian), ``sigmoid(z) (1 - sigmoid(z))`` for binary losses
  (Bernoulli, logit link), ``p_k (1 - p_k)`` with ``p = softmax(z)`` for multi-class losses
  (categorical, softmax link). It is always positive and does not depend on the label.
- default (``None``): ``"clip"`` for convex losses with an exact Hessian (MSE, log-cosh,
  logistic, cross-entropy), ``"fisher"`` for the others (MAE, Huber, quantile, hinge family,
  focal); ``"clip"`` for families other than regression and classification (no Fisher known).

Every policy multiplies by the sample weight; the floor is per unit weight (``floor * w``).
The default floor, 1e-16, is XGBoost's own for its logistic and softmax objectives. A loss may
declare ``boosting_bounds = ((gmin, gmax), (hmin, hmax))``, bounds per unit weight that the "clip"
and "fisher" policies apply to the gradient and the Hessian (:class:`fastloss.AFT`: XGBoost's
``survival:aft`` bounds).

Survival losses read their censoring from the booster's data: :class:`fastloss.CoxPH` takes
XGBoost's ``survival:cox`` labels (negative = right-censored) as any booster stores them, and
:class:`fastloss.AFT` the ``label_lower_bound`` / ``label_upper_bound`` of an XGBoost DMatrix
(other boosters hold one label per sample: observed times).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._adapters import as_loss, check_on_margins, loss_kind, output_count
from ._base import ElementwiseLoss
from ._validate import real_array
from .classification import BinaryCrossEntropy
from .multiclass import SparseCategoricalCrossEntropy
from .ranking import _RankingLoss, group_offsets

HESSIAN_POLICIES = ("exact", "clip", "fisher")
FISHER_KINDS = ("regression", "binary", "multiclass")

_BERNOULLI = BinaryCrossEntropy(from_logits=True)  # its Hessian is sigmoid(z)(1-sigmoid(z)), any label
_CATEGORICAL = SparseCategoricalCrossEntropy(from_logits=True)  # p_k (1 - p_k), any label


def per_element(w: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Row weights broadcast over the trailing axes of a prediction of ``shape``."""
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


class LossAdapter:
    """A fastloss loss seen by a booster: label conversion and the weighted-mean metric.

    Module-level and picklable (``xgboost.dask`` ships adapters to the workers). The metric
    adapters derive from it directly; they evaluate the loss on whatever the booster hands them
    (margins or probabilities: choose ``from_logits`` accordingly).
    """

    def __init__(self, loss: Any) -> None:
        self.loss = as_loss(loss)
        self.kind = loss_kind(self.loss)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.loss!r})"

    def labels(self, y_true: Any, margin: np.ndarray) -> np.ndarray:
        """The booster's labels in the loss's convention: integer class indices for sparse
        multi-class losses (boosters store them as floats), the margin's shape otherwise."""
        y = np.asarray(y_true)
        if self.kind == "multiclass" and not getattr(self.loss, "dense", False):
            y = y.reshape(-1)
            if y.dtype.kind == "f":
                yi = y.astype(np.int32)
                if not np.array_equal(yi, y):
                    raise ValueError("multi-class labels must be integer class indices 0..K-1")
                y = yi
            return y
        if margin.ndim == 2 and y.ndim == 1 and y.size == margin.size:
            return y.reshape(margin.shape)  # one label per output, stored flat
        return y

    def metric_value(self, y_true: Any, margin: Any, sample_weight: Any = None,
                     group: Any = None, **inputs: Any) -> float:
        """The weighted mean of the loss: what the metric adapters report. A ranking loss is
        evaluated on the booster's query groups (sizes; one group without), weighted per group:
        XGBoost's weights are one per group; LightGBM's per-document weights give each group
        their mean, LightGBM's own query weight."""
        margin = np.asarray(margin)
        w = None if sample_weight is None or np.size(sample_weight) == 0 else np.asarray(sample_weight)
        if isinstance(self.loss, _RankingLoss):
            offsets = group_offsets(margin.shape[0], group)
            sizes = np.diff(offsets)
            if w is not None and w.shape == margin.shape[:1] and sizes.size != margin.shape[0]:
                w = np.add.reduceat(w.astype(np.float64), offsets[:-1]) / np.maximum(sizes, 1)
            inputs["group"] = sizes
        return self.loss(self.labels(y_true, margin), margin, w, reduction="mean", **inputs)


class BoostingObjective(LossAdapter):
    """Per-sample gradient and Hessian of ``loss`` at raw margins, with a Hessian policy.

    Subclasses adapt the call signature of one booster.

    Parameters
    ----------
    loss : fastloss Loss or registered name
        Binary and multi-class losses must take logits (``from_logits=True`` where it applies).
    hessian : "exact", "clip", "fisher" or None (default: by the loss, see the module docs)
    floor : float >= 0, default 1e-16
        Lower bound of the Hessian per unit weight under "clip" and "fisher".
    """

    def __init__(self, loss: Any, *, hessian: Optional[str] = None, floor: float = 1e-16) -> None:
        super().__init__(loss)
        check_on_margins(self.loss, type(self).__name__)
        fisher_known = self.kind in FISHER_KINDS
        if hessian is None:
            exact = self.loss.convex and self.loss.hessian == "exact"
            hessian = "clip" if exact or not fisher_known else "fisher"
        if hessian not in HESSIAN_POLICIES:
            raise ValueError(f"hessian must be one of {HESSIAN_POLICIES} or None; got {hessian!r}")
        if hessian == "fisher" and not fisher_known:
            raise ValueError(f"no Fisher curvature is known for {self.kind!r} losses; use hessian='clip'")
        floor = float(floor)
        if not floor >= 0 or not np.isfinite(floor):
            raise ValueError(f"floor must be finite and >= 0; got {floor}")
        self.hessian, self.floor = hessian, floor

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.loss!r}, hessian={self.hessian!r}, floor={self.floor!r})"

    def grad_hess(self, y_true: Any, margin: Any, sample_weight: Any = None,
                  group: Any = None, **inputs: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``(grad, hess)`` of the weighted sum of the loss, each of the margin's shape and of the
        dtype it is computed in (integer margins: float64). ``group``: the query group sizes of
        the booster's data, for ranking losses; ``inputs``: the loss's keyword inputs (AFT's
        ``upper=``)."""
        margin = real_array(margin, "margin")
        y = self.labels(y_true, margin)
        w = None if sample_weight is None or np.size(sample_weight) == 0 else np.asarray(sample_weight)
        if isinstance(self.loss, _RankingLoss):
            if getattr(self, "_groups", None) is None:
                self._groups = RankingGroups()
            grad, hess, w = ranking_grad_hess(self.loss, y, margin, w, group, self._groups)
        else:
            grad, hess = self.loss.grad_hess(y, margin, w, reduction="sum", **inputs)
        if self.hessian == "fisher":
            hess = self._fisher(y, margin, w)
        if self.hessian != "exact":
            lower = self.floor if w is None else per_element(w * self.floor, hess.shape)
            np.maximum(hess, lower, out=hess, casting="unsafe")
            bounds = getattr(self.loss, "boosting_bounds", None)
            if bounds is not None:
                unit = 1.0 if w is None else per_element(w, hess.shape)
                for x, (low, high) in zip((grad, hess), bounds):
                    np.clip(x, low * unit, high * unit, out=x, casting="unsafe")
        return grad, hess

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_groups", None)  # a cache of the booster's labels: not shipped
        return state

    def _fisher(self, y: np.ndarray, margin: np.ndarray, w: Optional[np.ndarray]) -> np.ndarray:
        if self.kind == "binary":  # label-free: (pw ys + 1 - ys) = 1 for any label ys
            return _BERNOULLI.grad_hess(y, margin, w, reduction="sum")[1]
        if self.kind == "multiclass":
            labels = np.zeros(margin.shape[:-1], np.int32)
            return _CATEGORICAL.grad_hess(labels, margin, w, reduction="sum")[1]
        ones = np.ones(margin.shape, margin.dtype)
        return ones if w is None else ones * per_element(w, margin.shape).astype(margin.dtype)


class RankingGroups:
    """The query groups of a booster's data, and its labels prepared for the ranking kernels
    (:meth:`fastloss.ranking._RankingLoss.prepare_groups`), kept between rounds: a booster hands
    the same label and group arrays at every round (LightGBM's Dataset does), and they do not
    change. Prepared at the second call with the same arrays, so that callers handing new arrays
    every time (XGBoost's ``get_label()``) pay nothing."""

    def __init__(self) -> None:
        self._entry: Tuple[Any, ...] = ((), None)  # (key, value): replaced in one assignment

    def get(self, loss: Any, y: np.ndarray, margin: np.ndarray, group: Any):
        """``(offsets, sizes, prepared or None)`` for these labels and groups."""
        key = (loss, y, group, margin.shape[0], margin.dtype)
        old, value = self._entry
        if len(old) == len(key) and all(a is b for a, b in zip(old[:3], key[:3])) and old[3:] == key[3:]:
            offsets, sizes, prepared = value
            if prepared is None:
                value = (offsets, sizes, loss.prepare_groups(y, offsets, margin.dtype))
                self._entry = (key, value)
            return value
        offsets = group_offsets(margin.shape[0], group)
        value = (offsets, np.diff(offsets), None)
        self._entry = (key, value)
        return value


def ranking_grad_hess(loss: Any, y: np.ndarray, margin: np.ndarray, w: Optional[np.ndarray],
                      group: Any, groups: Optional[RankingGroups] = None
                      ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A ranking loss on the booster's query groups (sizes; one group without). Weights are
    per group (XGBoost: one per group) or per document (LightGBM: each document's gradient and
    Hessian times its weight, as LightGBM's own lambdarank). Returns the derivatives of the
    weighted sum and the weights per document (for the Hessian floor). ``groups`` keeps the
    groups and prepared labels between rounds."""
    n = margin.shape[0]
    offsets, sizes, prepared = (groups or RankingGroups()).get(loss, y, margin, group)
    per_document = w is not None and w.shape == (n,) and sizes.size != n
    grad, hess = loss.boosting_grad_hess(y, margin, None if per_document else w, offsets, prepared)
    if w is None:
        return grad, hess, None
    if per_document:
        grad *= w
        hess *= w
        return grad, hess, w
    return grad, hess, np.repeat(w, sizes)


def best_constant(loss: Any, y_true: Any, sample_weight: Any = None, *, n_outputs: Optional[int] = None):
    """The constant raw margin that minimizes the weighted loss: the right ``base_score``
    (XGBoost), ``init_score`` (LightGBM) or ``baseline`` (CatBoost) for a fastloss objective.

    A float for one output (found by Brent's method on the mean loss, so it also holds for
    piecewise-linear losses: the median for MAE, the quantile for Quantile); an array of
    ``n_outputs`` for multi-class or multi-quantile losses (L-BFGS on the intercept-only model;
    for softmax losses only differences between classes matter).
    """
    from scipy.optimize import minimize, minimize_scalar

    loss = as_loss(loss)
    check_on_margins(loss, "best_constant")
    y = np.asarray(y_true)
    k = output_count(loss, y, n_outputs)
    shape = (y.shape[0],) if k == 1 else (y.shape[0], k)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    reduction = "mean" if loss.reduction == "none" else loss.reduction

    def fun(c: np.ndarray) -> Tuple[float, np.ndarray]:
        """The loss of the constant margin ``c`` and its gradient in ``c``."""
        value, grad = loss.value_and_grad(y, np.zeros(shape) + (c[0] if k == 1 else c), w,
                                          reduction=reduction)
        return value, np.atleast_1d(grad.sum(axis=0))

    if k == 1 and isinstance(loss, ElementwiseLoss):
        scale = max(1.0, float(np.max(np.abs(y)))) if y.size else 1.0
        res = minimize_scalar(lambda c: fun(np.array([c]))[0], bracket=(-scale, scale))
        return float(res.x)
    res = minimize(fun, np.zeros(k), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000})
    return float(res.x[0]) if k == 1 else res.x
