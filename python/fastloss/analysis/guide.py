"""Loss selection guide, tied to the registry.

``recommend(task=..., ...)`` walks the rules below, keeps those whose loss is registered now
(``fastloss.losses()`` is read at call time, so losses added later appear as soon as they are
registered and a rule naming a loss that does not exist is skipped), scores each candidate from
the rule and from the loss's registered properties (convex, robust, smooth, Hessian) and its
measured Lipschitz property, and returns them ranked with the reasons.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .._base import LossInfo, losses

__all__ = ["Recommendation", "recommend", "loss_properties", "TASKS"]

TASKS = ("regression", "binary", "multiclass", "similarity")


@dataclass
class Recommendation:
    name: str
    params: Dict[str, Any]
    score: float
    reasons: List[str] = field(default_factory=list)

    def make(self):
        """The loss object (``fastloss.get_loss(name, **params)``)."""
        from .._base import get_loss
        return get_loss(self.name, **self.params)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})  score {self.score:g}: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class _Rule:
    task: str
    loss: str
    score: float
    reason: str
    when: Callable[[Dict[str, Any]], bool] = lambda ctx: True
    params: Callable[[Dict[str, Any]], Dict[str, Any]] = lambda ctx: {}


def _imbalanced(ctx) -> bool:
    return bool(ctx["imbalance"])


def _pos_weight(ctx) -> Dict[str, Any]:
    ratio = ctx["imbalance"]
    return {"from_logits": True, **({"pos_weight": float(ratio)} if not isinstance(ratio, bool) and ratio > 1 else {})}


# The usual choices per task and situation, one rule per (task, loss, situation).
_RULES = (
    _Rule("regression", "mse", 3, "standard for regression; Gaussian likelihood"),
    _Rule("regression", "huber", 2, "robust to outliers, quadratic near zero (Huber 1964)"),
    _Rule("regression", "mae", 1.5, "robust to outliers; Laplace likelihood, estimates the median"),
    _Rule("regression", "log_cosh", 1.5, "smooth and robust: like MSE near zero, like MAE for large errors"),
    _Rule("regression", "smooth_l1", 1, "Huber scaled by 1/beta (object-detection convention)"),
    _Rule("regression", "quantile", 6, "quantile regression (Koenker & Bassett 1978)",
          lambda c: c["quantile"] is not None, lambda c: {"quantile": c["quantile"]}),
    _Rule("binary", "binary_cross_entropy", 3, "balanced binary classification: binary cross-entropy "
          "from logits, for stability", lambda c: not _imbalanced(c), lambda c: {"from_logits": True}),
    _Rule("binary", "binary_cross_entropy", 3, "imbalanced data: BCE weighted by pos_weight",
          _imbalanced, _pos_weight),
    _Rule("binary", "binary_focal", 3, "imbalanced data: focal loss down-weights easy examples "
          "(Lin et al. 2017)", _imbalanced, lambda c: {"from_logits": True}),
    _Rule("binary", "binary_cross_entropy", 3.5, "noisy labels: label smoothing caps the penalty on "
          "confidently wrong labels (Szegedy et al. 2016)", lambda c: c["noisy_labels"],
          lambda c: {"from_logits": True, "label_smoothing": 0.1}),
    _Rule("binary", "logistic", 2, "the same likelihood on -1/+1 labels (logistic regression)"),
    _Rule("binary", "smooth_hinge", 1, "margin loss (SVM) with a continuous gradient"),
    _Rule("binary", "hinge", 0.5, "margin loss (SVM); sparse solutions"),
    _Rule("binary", "squared_hinge", 0.5, "margin loss with a continuous gradient (L2-SVM)"),
    _Rule("multiclass", "sparse_categorical_cross_entropy", 3, "standard multi-class: categorical "
          "cross-entropy on integer labels", lambda c: not _imbalanced(c),
          lambda c: {"from_logits": True}),
    _Rule("multiclass", "sparse_categorical_cross_entropy", 1, "large number of classes: sparse "
          "labels avoid one-hot targets of K columns",
          lambda c: (c["n_classes"] or 0) >= 100, lambda c: {"from_logits": True}),
    _Rule("multiclass", "sparse_categorical_cross_entropy", 3, "imbalanced classes: weighted CE "
          "(class_weight from fastloss.class_weights(labels))", _imbalanced,
          lambda c: {"from_logits": True}),
    _Rule("multiclass", "sparse_categorical_focal", 3, "imbalanced classes: focal loss (Lin et al. 2017)",
          _imbalanced),
    _Rule("multiclass", "sparse_categorical_cross_entropy", 3.5, "noisy labels: label smoothing "
          "(Szegedy et al. 2016)", lambda c: c["noisy_labels"],
          lambda c: {"from_logits": True, "label_smoothing": 0.1}),
    _Rule("multiclass", "categorical_cross_entropy", 1.5, "soft or one-hot target distributions",
          params=lambda c: {"from_logits": True}),
    _Rule("multiclass", "multi_class_hinge", 0.5, "multi-class margin loss (SVM)"),
    _Rule("similarity", "contrastive", 3, "pair-based similarity learning (Hadsell et al. 2006)"),
    _Rule("similarity", "batch_contrastive", 2.5, "pair-based, over all pairs of a labelled batch"),
    _Rule("similarity", "triplet_margin", 3, "triplet-based similarity learning (Schroff et al. 2015)"),
    _Rule("similarity", "batch_triplet_margin", 3, "triplet-based with batch-hard or semi-hard "
          "mining of a labelled batch (Hermans et al. 2017)"),
    _Rule("similarity", "arcface", 2.5, "many classes: additive angular margin (ArcFace, Deng et al. 2019)"),
    _Rule("similarity", "cosface", 2.5, "many classes: large margin cosine (CosFace, Wang et al. 2018)"),
)


@lru_cache(maxsize=None)
def _lipschitz(name: str) -> Optional[bool]:
    """Measured: the largest gradient over synthetic data stays bounded when the predictions are
    scaled up 100-fold (a Lipschitz loss: bounded gradient); None if not measurable."""
    from .._base import get_loss
    try:
        info = next(i for i in losses() if i.name == name)
        params = {"from_logits": True} if "from_logits" in info.params else {}
        loss = get_loss(name, reduction="sum", **params)
        y, p, inputs = loss.synthetic(64, np.random.default_rng(0), "float64")
        with warnings.catch_warnings():  # a probe far from any data (Sinkhorn need not converge)
            warnings.simplefilter("ignore")
            sizes = [float(np.max(np.abs(loss.value_and_grad(y, p * s, **inputs)[1]))) for s in (1e2, 1e4)]
    except Exception:  # a loss whose inputs the synthetic data does not fit
        return None
    return bool(np.isfinite(sizes).all() and sizes[1] <= 2 * sizes[0] + 1e-12)


def loss_properties(info: LossInfo) -> Dict[str, Any]:
    """The registry's declared properties plus the measured ``lipschitz``."""
    return {"convex": info.convex, "robust": info.robust, "smooth": info.smooth,
            "hessian": info.hessian, "lipschitz": _lipschitz(info.name)}


def _property_terms(props, ctx) -> List[tuple]:
    """(score change, reason) from a loss's properties in this situation."""
    terms = []
    if props["convex"]:
        terms.append((0.5, "convex: every local minimum is global"))
    elif ctx["need_convex"]:
        terms.append((-3, "not convex, but a convex loss was asked for"))
    if ctx["outliers"] or ctx["noisy_labels"]:
        if props["robust"]:
            terms.append((2, "robust to outliers / noisy labels"))
        elif ctx["task"] == "regression":
            terms.append((-2, "sensitive to outliers (quadratic growth)"))
    if props["lipschitz"]:
        terms.append((0.25, "Lipschitz: bounded gradient, stable optimization"))
    if ctx["need_hessian"]:
        if props["smooth"] and props["hessian"] == "exact":
            terms.append((1, "smooth with an exact Hessian (second-order methods, boosting)"))
        else:
            terms.append((-2, "Hessian only almost everywhere (zero on pieces): poor for Newton/boosting"))
    elif not props["smooth"]:
        terms.append((-0.5, "not differentiable everywhere"))
    return terms


def recommend(task: str, *, outliers: bool = False, imbalance: Any = False, noisy_labels: bool = False,
              n_classes: Optional[int] = None, quantile: Optional[float] = None,
              need_hessian: bool = False, need_convex: bool = False,
              top: Optional[int] = None) -> List[Recommendation]:
    """Ranked loss recommendations for a task.

    ``task``: "regression", "binary", "multiclass" (or "classification" with ``n_classes``), or
    "similarity". ``imbalance``: True, or the majority/minority ratio (used as BCE's
    ``pos_weight``). ``quantile``: a target quantile for quantile regression. ``need_hessian``:
    second-order use (Newton, gradient boosting). Only registered losses are returned; a task
    whose losses are not registered yet gives an empty list.
    """
    if task == "classification":
        if n_classes is None:
            raise ValueError("task='classification' needs n_classes (2 for binary)")
        task = "binary" if n_classes == 2 else "multiclass"
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or 'classification'; got {task!r}")
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1); got {quantile}")
    if not isinstance(imbalance, bool) and not (isinstance(imbalance, (int, float)) and math.isfinite(imbalance)
                                                and imbalance >= 1):
        raise ValueError(f"imbalance must be a bool or a class ratio >= 1; got {imbalance!r}")
    ctx = dict(task=task, outliers=outliers, imbalance=imbalance, noisy_labels=noisy_labels,
               n_classes=n_classes, quantile=quantile, need_hessian=need_hessian,
               need_convex=need_convex)
    registered = {info.name: info for info in losses()}
    best: Dict[tuple, Recommendation] = {}
    for rule in _RULES:
        if rule.task != task or rule.loss not in registered or not rule.when(ctx):
            continue
        params = rule.params(ctx)
        key = (rule.loss, tuple(sorted(params.items())))
        if key in best:  # a second rule for the same configuration adds its reason
            best[key].score += rule.score / 2
            best[key].reasons.insert(1, rule.reason)
            continue
        terms = _property_terms(loss_properties(registered[rule.loss]), ctx)
        best[key] = Recommendation(rule.loss, params, rule.score + sum(t for t, _ in terms),
                                   [rule.reason] + [r for _, r in terms])
    ranked = sorted(best.values(), key=lambda r: -r.score)
    return ranked[:top] if top else ranked
