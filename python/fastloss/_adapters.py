"""What every integration shares (scikit-learn, SciPy, Dask and the gradient-boosting adapters):
resolving a loss given by name, its kind, and the raw-margin check."""

from __future__ import annotations

from typing import Any

from ._base import Loss, get_loss
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

