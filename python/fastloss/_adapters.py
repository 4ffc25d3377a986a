"""What every integration shares (scikit-learn, SciPy, Dask and the gradient-boosting adapters):
resolving a loss given by name, its kind, the raw-margin check, and the number of outputs a
model of it needs."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._base import ElementwiseLoss, Loss, get_loss
from .multiclass import _RowLoss


def as_loss(loss: Any) -> Loss:
    """A Loss instance, or a registered name (``"huber"``) constructed with its defaults."""
    if isinstance(loss, str):
        return get_loss(loss)
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a fastloss Loss or a registered loss name; got {type(loss).__name__}")
    return loss


def loss_kind(loss: Loss) -> str:
    """"multiclass" (a class axis), "binary" (classification on one score), "regression", or
    the family's own name for the others (no Fisher curvature is known for them)."""
    if isinstance(loss, _RowLoss):
        return "multiclass"
    return {"classification": "binary"}.get(loss.family, loss.family)


def check_on_margins(loss: Loss, where: str) -> None:
    """Boosters and linear models produce raw scores: probability-space losses do not apply."""
    if getattr(loss, "from_logits", True) is False:
        raise ValueError(f"{where} works on raw margins: construct {type(loss).__name__} with "
                         f"from_logits=True")


def output_count(loss: Loss, y: np.ndarray, n_outputs: Optional[int] = None) -> int:
    """Margins per sample of a model of ``loss`` on labels ``y`` (``n_outputs`` when given): one
    per class on a class axis, one per quantile, one per target column, else 1."""
    if n_outputs is not None:
        return int(n_outputs)
    if not isinstance(loss, ElementwiseLoss):  # a class axis
        if getattr(loss, "dense", False):
            return y.shape[1]
        return int(y.max()) + 1 if y.size else 1
    quantiles = getattr(loss, "quantile", None)
    if isinstance(quantiles, tuple):
        return len(quantiles)
    return y.shape[1] if y.ndim == 2 else 1
