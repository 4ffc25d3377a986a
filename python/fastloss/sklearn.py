"""scikit-learn adapters: scorers for every fastloss loss, and linear estimators that fit any
registered loss through SciPy (L-BFGS or Newton-CG over :mod:`fastloss.scipy`).

Scorers
-------
``loss_scorer("huber", delta=2.0)`` (or a Loss instance) gives a scorer for ``cross_val_score``,
``GridSearchCV`` ...: the weighted mean loss with ``greater_is_better=False`` (scikit-learn
reports it negated). The estimator output it scores follows the loss: ``predict`` for regression,
``decision_function`` for losses on logits/scores, ``predict_proba`` for losses on probabilities.
Labels must already be in the loss's convention (0/1 or -1/+1, class indices 0..K-1).
(``make_scorer`` is the deprecated former name: it shadowed ``sklearn.metrics.make_scorer``,
whose signature differs.)
``ranking_scorer("ndcg", k=10)`` scores rankings (NDCG, MAP, MRR) over query groups routed as
``qid``. ``concordance_scorer()`` scores survival models by Harrell's concordance index.

Estimators
----------
:class:`LinearRegressor` and :class:`LinearClassifier` minimize
``loss(y, X @ coef + intercept, sample_weight) + alpha / 2 * ||coef||^2`` (the loss's weighted
mean). ``loss`` is a Loss instance (``fl.Huber(delta=0.5)``) or a registered name (``"huber"``,
then ``loss_params`` holds its hyper-parameters, and losses with ``from_logits`` take scores). With
an instance the loss's parameters are the estimator's nested parameters ``loss__<name>``, as
scikit-learn names the parameters of a nested estimator: ``GridSearchCV(LinearRegressor(
loss=fl.Huber()), {"loss__delta": [0.5, 1.0, 2.0]})``. Losses are immutable, so setting
``loss__delta`` stores a copy of the loss with the new value, and ``sklearn.base.clone`` shares
the loss. When the solver stops at ``max_iter`` the fit warns with scikit-learn's
``ConvergenceWarning``. Only the L2 penalty is offered; L1 and elastic net would plug the
regularizers of :mod:`fastloss.regularizers` (with their proximal operators) into
:class:`fastloss.scipy.LinearObjective`.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Union

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import make_scorer as _sk_make_scorer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._adapters import as_loss, check_on_margins, loss_kind
from ._base import Loss, get_loss
from .classification import BinaryCrossEntropy, BinaryFocal, Logistic
from .multiclass import SparseCategoricalCrossEntropy, SparseCategoricalFocal, softmax
from .scipy import linear_objective

__all__ = ["loss_scorer", "LossMetric", "ranking_scorer", "RankingMetric", "concordance_scorer",
           "ConcordanceMetric", "LinearRegressor", "LinearClassifier"]


class LossMetric:
    """``metric(y_true, y_pred, sample_weight=None) -> float``: the loss's weighted mean, as a
    picklable scikit-learn-style metric."""

    def __init__(self, loss: Loss) -> None:
        self.loss = loss
        self.__name__ = loss.function_name

    def __call__(self, y_true, y_pred, sample_weight=None, **inputs) -> float:
        """``inputs``: the loss's optional keyword inputs (``qid=`` of a ranking loss, routed by
        scikit-learn's metadata routing)."""
        return self.loss(np.asarray(y_true), np.asarray(y_pred), sample_weight, reduction="mean",
                         **inputs)


def _response_method(loss: Loss) -> str:
    if loss_kind(loss) not in ("binary", "multiclass"):
        return "predict"
    return "decision_function" if getattr(loss, "from_logits", True) else "predict_proba"


def loss_scorer(loss: Any, *, response_method: Optional[str] = None, **loss_params: Any):
    """A scikit-learn scorer (``greater_is_better=False``) for a loss name or instance.

    ``response_method`` defaults to the estimator output the loss takes (see the module docs).
    """
    if isinstance(loss, str):
        loss = get_loss(loss, **loss_params)
    elif loss_params:
        raise TypeError("loss_params apply to a loss given by name")
    loss = as_loss(loss)
    extra = loss.arguments[2:] + loss.inputs
    if extra:  # a scorer sees an estimator's output only
        raise TypeError(f"a scorer takes (y_true, y_pred); {type(loss).__name__} also needs "
                        f"{', '.join(extra)}")
    return _sk_make_scorer(LossMetric(loss), greater_is_better=False,
                           response_method=response_method or _response_method(loss))


class RankingMetric:
    """``metric(y_true, y_pred, qid=None) -> float``: a ranking metric of
    :mod:`fastloss.ranking` (``"ndcg"``, ``"map"``, ``"mrr"``), the mean over the query groups
    given by sorted query ids ``qid`` (one group without)."""

    def __init__(self, metric: str, **params: Any) -> None:
        from . import ranking
        functions = {"ndcg": ranking.ndcg, "map": ranking.mean_average_precision,
                     "mrr": ranking.mrr}
        if metric not in functions:
            raise ValueError(f"metric must be one of {sorted(functions)}; got {metric!r}")
        self.function, self.params, self.__name__ = functions[metric], params, metric

    def __call__(self, y_true, y_pred, qid=None) -> float:
        return self.function(np.asarray(y_true), np.asarray(y_pred), qid=qid, **self.params)


def ranking_scorer(metric: str = "ndcg", **params: Any):
    """A scikit-learn scorer (greater is better) for NDCG (``"ndcg"``, with ``k=`` and ``gain=``),
    mean average precision (``"map"``, ``k=``) or MRR (``"mrr"``) over the estimator's
    ``predict`` scores. The query groups come as sorted query ids ``qid`` through scikit-learn's
    metadata routing (``sklearn.set_config(enable_metadata_routing=True)``,
    ``scorer.set_score_request(qid=True)``, ``params={"qid": qid}``; split with ``GroupKFold`` so
    that queries stay whole); without ``qid`` a fold's documents form one query."""
    return _sk_make_scorer(RankingMetric(metric, **params), greater_is_better=True,
                           response_method="predict")


class ConcordanceMetric:
    """``metric(y_true, y_pred, event=None) -> float``: Harrell's concordance index
    (:func:`fastloss.concordance_index`) of a survival model's predictions.

    ``y_true`` holds times in XGBoost's ``survival:cox`` convention (positive: an event, negative
    or zero: right-censored at ``|time|``), or non-negative times with ``event=`` (booleans or 0/1,
    1 = event). ``predicts="risk"`` for predictions where higher means an earlier event (a Cox
    model's log hazard ratio), ``"time"`` where higher means a later one (an AFT model's time or
    log time)."""

    def __init__(self, predicts: str = "risk") -> None:
        if predicts not in ("risk", "time"):
            raise ValueError(f"predicts must be 'risk' or 'time'; got {predicts!r}")
        self.predicts, self.__name__ = predicts, "concordance_index"

    def __call__(self, y_true, y_pred, event=None) -> float:
        from .survival import concordance_index
        t = np.asarray(y_true, dtype=np.float64)
        if event is None:
            t, event = np.abs(t), t > 0
        score = np.asarray(y_pred, dtype=np.float64)
        return concordance_index(t, event, score if self.predicts == "risk" else -score)


def concordance_scorer(predicts: str = "risk"):
    """A scikit-learn scorer (greater is better) for Harrell's concordance index of the
    estimator's ``predict`` output (see :class:`ConcordanceMetric` for the label conventions and
    ``predicts``). Censoring comes with the labels' sign, or as ``event`` through scikit-learn's
    metadata routing (``sklearn.set_config(enable_metadata_routing=True)``,
    ``scorer.set_score_request(event=True)``, ``params={"event": event}``)."""
    return _sk_make_scorer(ConcordanceMetric(predicts), greater_is_better=True,
                           response_method="predict")


def make_scorer(loss: Any, *, response_method: Optional[str] = None, **loss_params: Any):
    """Deprecated name of :func:`loss_scorer` (it shadowed ``sklearn.metrics.make_scorer``,
    whose signature differs)."""
    warnings.warn("fastloss.sklearn.make_scorer is deprecated; use fastloss.sklearn.loss_scorer "
                  "(same arguments)", DeprecationWarning, stacklevel=2)
    return loss_scorer(loss, response_method=response_method, **loss_params)


class _LinearModel(BaseEstimator):
    """What both linear estimators share: the loss, the penalty, the solver and the fit."""

    def __init__(self, loss: Union[str, Loss] = "mse", loss_params: Optional[dict] = None,
                 alpha: float = 0.0, fit_intercept: bool = True, solver: str = "lbfgs",
                 max_iter: int = 1000, tol: float = 1e-10) -> None:
        self.loss = loss
        self.loss_params = loss_params
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol

    def set_params(self, **params: Any) -> "_LinearModel":
        """scikit-learn's ``set_params``; ``loss__<name>=value`` replaces the Loss instance held in
        ``loss`` by a copy with that parameter changed (losses are immutable)."""
        nested = {key[len("loss__"):]: params.pop(key) for key in list(params)
                  if key.startswith("loss__")}
        super().set_params(**params)
        if nested:
            if not isinstance(self.loss, Loss):
                raise ValueError(
                    f"loss__{next(iter(nested))} needs a Loss instance as loss (e.g. "
                    f"loss=fastloss.get_loss({self.loss!r})); a loss given by name takes its "
                    f"parameters in loss_params")
            self.loss = self.loss.replace(**nested)
        return self

    def _make_loss(self) -> Loss:
        if isinstance(self.loss, Loss):
            if self.loss_params:
                raise TypeError("loss_params apply to a loss given by name; set the parameters "
                                "of a Loss instance in its constructor (or as loss__<name>)")
            check_on_margins(self.loss, type(self).__name__)
            return self.loss
        if not isinstance(self.loss, str):
            raise TypeError(f"loss must be a fastloss Loss or a registered loss name; got "
                            f"{type(self.loss).__name__}")
        params = dict(self.loss_params or {})
        if any(p.name == "from_logits" for p in type(get_loss(self.loss)).params):
            params.setdefault("from_logits", True)  # a linear model produces scores
        return get_loss(self.loss, **params)

    def _solve(self, X, y, sample_weight, n_outputs=None):
        """``(coef, intercept, iterations)`` of one fit."""
        if self.solver not in ("lbfgs", "newton-cg"):
            raise ValueError(f"solver must be 'lbfgs' or 'newton-cg'; got {self.solver!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0; got {self.alpha}")
        self.loss_ = self._make_loss()
        obj = linear_objective(self.loss_, X, y, sample_weight, l2=self.alpha,
                               fit_intercept=self.fit_intercept, n_outputs=n_outputs)
        if self.solver == "lbfgs":
            res = minimize(obj.fun, obj.x0, jac=True, method="L-BFGS-B",
                           options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-15})
        else:
            res = minimize(obj.fun, obj.x0, jac=True, hessp=obj.hessp, method="Newton-CG",
                           options={"maxiter": self.max_iter, "xtol": self.tol})
        if not res.success and res.nit >= self.max_iter:
            warnings.warn(f"{type(self).__name__} ({self.solver}) did not converge in max_iter="
                          f"{self.max_iter} iterations: {res.message}. Increase max_iter or "
                          f"scale the features.", ConvergenceWarning, stacklevel=3)
        coef, intercept = obj.unpack(res.x)
        return coef, intercept, int(res.nit)

    def _fitted(self, solution):
        self.coef_, self.intercept_, self.n_iter_ = solution
        return self

    def _margins(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_ + self.intercept_


class LinearRegressor(RegressorMixin, _LinearModel):
    """Linear regression under any fastloss regression loss, by name or instance (``"mse"``,
    ``fl.Huber(delta=0.5)``, ``"quantile"`` (with a vector of quantiles ``predict`` gives one
    column per quantile), ``"log_cosh"`` ...), with an L2 penalty ``alpha``. With an instance, its
    parameters are nested parameters (``loss__delta``) for ``GridSearchCV``.

    Attributes: ``coef_``, ``intercept_``, ``n_iter_``, ``loss_`` (the fitted Loss).
    """

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        return self._fitted(self._solve(X, y, sample_weight))

    def predict(self, X) -> np.ndarray:
        return self._margins(X)


_PROBABILISTIC = (BinaryCrossEntropy, BinaryFocal, Logistic, SparseCategoricalCrossEntropy,
                  SparseCategoricalFocal)


class LinearClassifier(ClassifierMixin, _LinearModel):
    """Linear classifier under any fastloss classification loss, by name or instance (then with
    ``from_logits=True`` where the loss has it): binary losses (``"logistic"``,
    ``"binary_focal"``, ``"hinge"``, ``"smooth_hinge"`` ...) on one score, multi-class losses
    (``"sparse_categorical_cross_entropy"``, ``"multi_class_hinge"`` ...) on one score per class.
    Any labels; they are encoded in the loss's convention. ``predict_proba`` for the
    likelihood-based losses (sigmoid / softmax of the scores).

    Attributes: ``classes_``, ``coef_``, ``intercept_``, ``n_iter_``, ``loss_``.
    """

    def __init__(self, loss: Union[str, Loss] = "logistic", loss_params: Optional[dict] = None,
                 alpha: float = 1e-4, fit_intercept: bool = True, solver: str = "lbfgs",
                 max_iter: int = 1000, tol: float = 1e-10) -> None:
        super().__init__(loss, loss_params, alpha, fit_intercept, solver, max_iter, tol)

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        self.classes_, codes = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"LinearClassifier needs samples of at least 2 classes; got {k} class")
        if loss_kind(self._make_loss()) == "multiclass":
            return self._fitted(self._solve(X, codes.astype(np.int32), sample_weight, n_outputs=k))
        if k == 2:
            return self._fitted(self._solve(X, codes.astype(np.float64), sample_weight))
        # A binary loss on more classes: one-vs-rest, one score per class.
        fits = [self._solve(X, (codes == c).astype(np.float64), sample_weight) for c in range(k)]
        return self._fitted((np.stack([f[0] for f in fits], axis=1), np.array([f[1] for f in fits]),
                             max(f[2] for f in fits)))

    def decision_function(self, X) -> np.ndarray:
        """Scores: ``(n,)`` for two classes (positive class ``classes_[1]``), ``(n, K)`` otherwise."""
        z = self._margins(X)
        return z[:, 1] - z[:, 0] if z.ndim == 2 and z.shape[1] == 2 else z

    def predict(self, X) -> np.ndarray:
        z = self._margins(X)
        return self.classes_[np.argmax(z, axis=1) if z.ndim == 2 else (z > 0).astype(int)]

    def _probabilistic(self) -> bool:
        return isinstance(self._make_loss(), _PROBABILISTIC)

    @available_if(_probabilistic)
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities: softmax of the scores for multi-class losses, the sigmoid for a
        binary loss (normalized over the classes when fitted one-vs-rest)."""
        z = self._margins(X)
        if loss_kind(self.loss_) == "multiclass":
            return softmax(z)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid without overflow
        if z.ndim == 1:
            return np.stack([1.0 - p, p], axis=1)
        return p / p.sum(axis=1, keepdims=True)
