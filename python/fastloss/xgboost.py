"""XGBoost adapters: any fastloss loss as a custom objective and as a custom metric.

- :class:`Objective` for the native API: ``xgboost.train(params, dtrain, obj=Objective(loss))``
  (and ``xgboost.dask.train``: the adapters are module-level and picklable).
- :class:`SklearnObjective` for ``XGBRegressor(objective=...)`` / ``XGBClassifier(objective=...)``.
- :class:`Metric` (native ``custom_metric=``) and :class:`SklearnMetric` (``eval_metric=``): the
  weighted mean of the loss, lower is better (a ranking loss's over the DMatrix's query groups
  with the native :class:`Metric`).

XGBoost hands the raw margins (float32, ``(n,)`` or ``(n, K)`` for multi-class and multi-output)
and float32 labels; the objectives return the per-sample gradient and Hessian of the weighted sum
of the loss in the margins' shape and dtype, under the Hessian policy of
:mod:`fastloss._boosting` (``hessian="exact" | "clip" | "fisher"``, ``floor``).

Ranking losses (:mod:`fastloss.ranking`) get the DMatrix's query groups (``group_ptr``, set by
``group=`` or ``qid=``) with the native :class:`Objective`; XGBoost's ranking weights are one per
group, which is fastloss's ``sample_weight`` of a ranking loss.

``base_score``: with a custom objective XGBoost has no link function, so ``base_score`` is a raw
margin (0.5 by default, not a probability). Set it to :func:`base_score` ``(loss, y)``, the best
constant margin (``logit(mean(y))`` for logistic losses, the mean for MSE, the quantile for the
pinball loss), or to 0 to start from nothing; for multi-class give per-row ``base_margin`` instead.
Predictions (``predict``) are margins too: apply the sigmoid / softmax yourself. Exception:
``XGBClassifier`` runs a callable objective under ``binary:logistic``'s (``multi:softprob``'s)
link, so there ``base_score`` is a probability and ``predict_proba`` applies the link.

Survival: ``Objective(fastloss.CoxPH())`` trains on ``survival:cox`` labels (negative =
right-censored) and ``Objective(fastloss.AFT(...))`` on the DMatrix's ``label_lower_bound`` /
``label_upper_bound``, as ``survival:aft`` does (with its bounds on the derivatives); predictions
are margins (log hazard ratios, log times).

Notes: fastloss's MSE is ``r**2`` (gradient ``2 r``, Hessian 2), twice XGBoost's
``reg:squarederror``; with ``reg_lambda > 0`` or ``min_child_weight`` the two differ by that
factor. XGBoost's softmax uses the Hessian ``2 p (1 - p)``, fastloss's ``p (1 - p)``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from ._boosting import BoostingObjective, LossAdapter, best_constant
from .survival import AFT

__all__ = ["Objective", "SklearnObjective", "Metric", "SklearnMetric", "base_score"]


def _group(dtrain) -> Any:
    """The query group sizes of a DMatrix built with ``group=`` or ``qid=`` (None without)."""
    ptr = dtrain.get_uint_info("group_ptr")
    return np.diff(ptr.astype(np.int64)) if ptr.size else None


def _weights(dtrain) -> Any:
    w = dtrain.get_weight()
    return w if w.size else None


def _labels(loss: Any, dtrain) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The labels and keyword inputs of ``loss`` from a DMatrix: AFT's interval bounds
    (``label_lower_bound`` / ``label_upper_bound``, as ``survival:aft`` reads them) when set."""
    if isinstance(loss, AFT):
        lower = dtrain.get_float_info("label_lower_bound")
        if lower.size:
            return lower, {"upper": dtrain.get_float_info("label_upper_bound")}
    return dtrain.get_label(), {}


class Objective(BoostingObjective):
    """Native-API objective: ``obj(predt, dtrain) -> (grad, hess)``."""

    def __call__(self, predt: np.ndarray, dtrain) -> Tuple[np.ndarray, np.ndarray]:
        y, inputs = _labels(self.loss, dtrain)
        return self.grad_hess(y, predt, _weights(dtrain), _group(dtrain), **inputs)


class SklearnObjective(BoostingObjective):
    """scikit-learn-API objective: ``objective(y_true, y_pred, *, sample_weight=None)``."""

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, *, sample_weight: Any = None):
        return self.grad_hess(y_true, y_pred, sample_weight)


class Metric(LossAdapter):
    """Native-API metric: ``custom_metric(predt, dtrain) -> (name, weighted mean loss)``.

    ``predt`` is what XGBoost hands the metric: raw margins with a custom objective, transformed
    predictions (probabilities) with a built-in one; choose ``from_logits`` accordingly.
    """

    def __init__(self, loss: Any, *, name: str = "") -> None:
        super().__init__(loss)
        self.__name__ = name or self.loss.function_name

    def __call__(self, predt: np.ndarray, dtrain) -> Tuple[str, float]:
        y, inputs = _labels(self.loss, dtrain)
        return self.__name__, self.metric_value(y, predt, _weights(dtrain), _group(dtrain), **inputs)


class SklearnMetric(Metric):
    """scikit-learn-API metric: ``eval_metric(y_true, y_pred, sample_weight=None) -> float``."""

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, sample_weight: Any = None) -> float:
        return self.metric_value(y_true, y_pred, sample_weight)


def base_score(loss: Any, y_true: Any, sample_weight: Any = None):
    """The best constant margin for ``loss`` on ``y_true``: XGBoost's ``base_score`` for a
    fastloss objective (an array of K margins for multi-output losses: use ``base_margin``)."""
    return best_constant(loss, y_true, sample_weight)
