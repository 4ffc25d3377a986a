"""LightGBM adapters: any fastloss loss as a custom objective and as a custom metric.

- :class:`Objective` for the native API: ``lightgbm.train({"objective": Objective(loss), ...})``.
- :class:`SklearnObjective` for ``LGBMRegressor(objective=...)`` / ``LGBMClassifier(...)``: it is
  called as ``objective(y_true, y_pred, weight, group)``.
- :class:`Metric` (native ``feval=``) and :class:`SklearnMetric` (``eval_metric=``): the weighted
  mean of the loss, as ``(name, value, is_higher_better=False)``; a ranking loss's over the query
  groups, each weighted by the mean weight of its documents (LightGBM's query weight).

LightGBM hands float64 raw scores, ``(n,)`` or ``(n, K)`` for multi-class, and float32 labels; the
objectives return the gradient and Hessian of the weighted sum of the loss in the same shape,
under the Hessian policy of :mod:`fastloss._boosting` (``hessian="exact" | "clip" | "fisher"``,
``floor``). The adapters are module-level and picklable.

Ranking losses (:mod:`fastloss.ranking`) get the Dataset's query groups (``get_group()``, or the
``group`` of the scikit-learn API): ``lightgbm.train({"objective": Objective(fl.LambdaRank())},
lgb.Dataset(X, y, group=sizes))`` trains LightGBM's own ``lambdarank``. LightGBM's weights are
per document: each document's gradient and Hessian are multiplied by its weight, as LightGBM's
ranking objectives do.

``init_score``: a custom objective starts from 0 (no ``boost_from_average``). Pass
``init_score=np.full(n, init_score(loss, y))`` (``(n, K)`` for multi-class) to the Dataset to start
from the best constant margin, and add the same constant to ``predict``'s output: LightGBM does not
store ``init_score`` in the model. Predictions are raw scores: apply the sigmoid / softmax yourself.

Notes: fastloss's MSE is ``r**2`` (gradient ``2 r``, Hessian 2), twice LightGBM's ``l2``; its
multi-class objective scales the Hessian by ``K / (K - 1)``, fastloss's softmax does not.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ._boosting import BoostingObjective, LossAdapter, best_constant

__all__ = ["Objective", "SklearnObjective", "Metric", "SklearnMetric", "init_score"]


class Objective(BoostingObjective):
    """Native-API objective: ``objective(preds, train_data) -> (grad, hess)``."""

    def __call__(self, preds: np.ndarray, train_data) -> Tuple[np.ndarray, np.ndarray]:
        return self.grad_hess(train_data.get_label(), preds, train_data.get_weight(),
                              train_data.get_group())


class SklearnObjective(BoostingObjective):
    """scikit-learn-API objective: ``objective(y_true, y_pred, weight, group)``."""

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, weight: Any = None, group: Any = None):
        return self.grad_hess(y_true, y_pred, weight, group)


class Metric(LossAdapter):
    """Native-API metric: ``feval(preds, eval_data) -> (name, weighted mean loss, False)``.

    With a custom objective ``preds`` are raw scores; with a built-in one, transformed
    predictions (probabilities): choose ``from_logits`` accordingly.
    """

    def __init__(self, loss: Any, *, name: str = "") -> None:
        super().__init__(loss)
        self.name = name or self.loss.function_name

    def __call__(self, preds: np.ndarray, eval_data) -> Tuple[str, float, bool]:
        return self.name, self.metric_value(eval_data.get_label(), preds, eval_data.get_weight(),
                                            eval_data.get_group()), False


class SklearnMetric(Metric):
    """scikit-learn-API metric: ``eval_metric(y_true, y_pred, weight, group) -> (name, value,
    False)``."""

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, weight: Any = None,
                 group: Any = None) -> Tuple[str, float, bool]:
        return self.name, self.metric_value(y_true, y_pred, weight, group), False


def init_score(loss: Any, y_true: Any, sample_weight: Any = None):
    """The best constant raw score for ``loss`` on ``y_true`` (a float, or K values for
    multi-output losses): fill the Dataset's ``init_score`` with it."""
    return best_constant(loss, y_true, sample_weight)
