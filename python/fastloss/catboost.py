"""CatBoost adapters: any fastloss loss as a custom objective and as a custom metric.

CatBoost maximizes: its objectives return the derivatives of a quantity to maximize, so the
adapters hand it ``(-grad, -hess)`` of the fastloss loss (whose Hessian follows the policy of
:mod:`fastloss._boosting`, ``hessian="exact" | "clip" | "fisher"``, ``floor``).

- :class:`Objective`: ``CatBoostRegressor(loss_function=Objective(loss), eval_metric=...)``
  (CatBoost requires an ``eval_metric`` with a Python objective). ``calc_ders_range`` computes a
  whole range of objects in one fused fastloss pass. Multi-class losses go through CatBoost's
  ``calc_ders_multi``, which CatBoost calls once per object (its API; slow in Python), with the
  Hessian diagonal as the matrix.
- :class:`Metric`: ``eval_metric=Metric(loss)``; the weighted mean of the loss (lower is better),
  merged by CatBoost from ``(sum, normalizer)`` pairs.

Ranking losses are not available here: CatBoost hands a Python objective no query groups.

Predictions are raw margins (``prediction_type="RawFormulaVal"``); set
``boost_from_average=False`` and pass ``baseline=`` :func:`baseline` ``(loss, y)`` in the Pool to
start from the best constant margin. To reproduce CatBoost's own Newton steps use
``leaf_estimation_method="Newton"``.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ._boosting import BoostingObjective, LossAdapter, best_constant
from .accumulate import partial_sum

__all__ = ["Objective", "Metric", "baseline"]


def _margins(approxes) -> np.ndarray:
    """CatBoost's approxes (one array per dimension) as ``(n,)`` or ``(n, K)`` margins."""
    if len(approxes) == 1:
        return np.asarray(approxes[0], dtype=np.float64)
    return np.stack([np.asarray(a, dtype=np.float64) for a in approxes], axis=1)


class Objective(BoostingObjective):
    """CatBoost objective with derivatives of the maximized ``-loss``.

    CatBoost hands ``calc_ders_range`` blocks of objects (up to a thousand or so), so the loss
    must be a sum over objects: losses that couple the whole batch (``chunkable = False``, e.g.
    :class:`fastloss.CoxPH`, whose risk sets span all samples) are refused; CatBoost's own
    ``loss_function="Cox"`` trains that model.
    """

    def __init__(self, loss: Any, **kwargs: Any) -> None:
        super().__init__(loss, **kwargs)
        if self.kind == "ranking":  # calc_ders_range receives no group ids
            raise ValueError("CatBoost's Python objectives receive no query groups: use CatBoost's "
                             "own ranking losses (YetiRank, PairLogit, QueryRMSE) or the XGBoost / "
                             "LightGBM adapters for fastloss's ranking losses")
        if not self.loss.chunkable:
            raise ValueError(f"{self.loss!r} couples the whole batch, but CatBoost computes the "
                             "derivatives of a custom objective in blocks of objects; use a loss "
                             "that is a sum over objects (or CatBoost's built-in objective)")

    def calc_ders_range(self, approxes, targets, weights) -> np.ndarray:
        """``(n, 2)``: first and second derivative of ``-w * loss`` per object."""
        grad, hess = self.grad_hess(targets, np.asarray(approxes, dtype=np.float64), weights)
        return np.negative(np.stack([grad, hess], axis=1))

    def calc_ders_multi(self, approx, target, weight) -> Tuple[List[float], List[List[float]]]:
        """One object of a multi-class loss: the gradient (K,) and a diagonal Hessian (K, K)."""
        w = None if weight is None else np.array([weight], dtype=np.float64)
        grad, hess = self.grad_hess(np.array([target]), np.asarray(approx, dtype=np.float64)[None, :], w)
        return (-grad[0]).tolist(), np.diag(-hess[0]).tolist()


class Metric(LossAdapter):
    """CatBoost metric: the weighted mean of the loss, lower is better."""

    def is_max_optimal(self) -> bool:
        return False

    def evaluate(self, approxes, target, weight) -> Tuple[float, float]:
        margin = _margins(approxes)
        return partial_sum(self.loss, self.labels(target, margin), margin, weight)

    def get_final_error(self, error: float, weight: float) -> float:
        return error / weight if weight > 0 else float("nan")


def baseline(loss: Any, y_true: Any, sample_weight: Any = None):
    """The best constant raw margin for ``loss`` on ``y_true``: fill the Pool's ``baseline``."""
    return best_constant(loss, y_true, sample_weight)
