"""What the framework bridges (fastloss.torch, fastloss.jax, fastloss.keras) share: binding a
call's inputs, one forward evaluation on host arrays, and the backward pass of an incoming
gradient -- framework-free, on NumPy arrays."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from ._adapters import as_loss
from ._base import ElementwiseLoss, Loss
from .multiclass import _RowLoss


def bind(fl_loss: Any, args: tuple, sample_weight: Any, inputs: Dict[str, Any],
         reduction: Optional[str]):
    """``(loss, reduction, arguments, sample_weight, keyword inputs)`` of a bridge call, checked
    like a direct call (missing or unknown inputs are a TypeError)."""
    fl_loss = as_loss(fl_loss)
    reduction = fl_loss.reduction if reduction is None else reduction
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of ('mean', 'sum', 'none'); got {reduction!r}")
    if not inputs and len(args) == len(fl_loss.arguments):
        return fl_loss, reduction, tuple(args), sample_weight, {}
    bound, w, named = fl_loss._bind(args, inputs, sample_weight)
    return fl_loss, reduction, bound, w, {k: v for k, v in named.items() if v is not None}


def forward(fl_loss: Loss, reduction: str, args: tuple, w: Any, named: Dict[str, Any],
            want_grad: bool, **buffers: Any) -> Tuple[Any, Tuple[Any, ...]]:
    """``(value, grads)``: the value under ``reduction`` and, when asked, the gradients in
    ``fl_loss.grads`` order (an empty tuple otherwise)."""
    if not want_grad:
        buffers.pop("grad_out", None)
        return fl_loss(*args, sample_weight=w, reduction=reduction, **named, **buffers), ()
    value, grads = fl_loss.value_and_grad(*args, sample_weight=w, reduction=reduction, **named,
                                          **buffers)
    return value, (tuple(grads) if len(fl_loss.grads) > 1 else (grads,))


def separable(fl_loss: Loss) -> bool:
    """True when item i's value depends on item i's inputs alone (elementwise terms, rows of a
    class axis): the derivative of ``sum(g_i l_i)`` is the per-item gradient times ``g_i``."""
    return isinstance(fl_loss, (ElementwiseLoss, _RowLoss))


def per_item_backward(fl_loss: Loss, args: tuple, w: Any, named: Dict[str, Any],
                      incoming: np.ndarray) -> Tuple[Any, ...]:
    """The gradients of ``sum(incoming_i * value_i)`` under ``reduction="none"`` for any loss
    that takes per-item weights: the loss's ``"sum"`` gradient with the weights multiplied by the
    incoming gradient (its positive and negative parts in two passes, weights being >= 0)."""
    incoming = np.asarray(incoming, dtype=np.float64)
    base = np.ones(incoming.shape)
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        base = base * w.reshape(w.shape + (1,) * (incoming.ndim - w.ndim))
    total: Optional[list] = None
    for sign, part in ((1.0, np.maximum(incoming, 0)), (-1.0, np.maximum(-incoming, 0))):
        if not part.any():
            continue
        try:
            _, grads = forward(fl_loss, "sum", args, base * part, named, True)
        except ValueError as e:
            raise ValueError(f"{type(fl_loss).__name__}: backward through reduction='none' weights "
                             f"each returned value, and this loss takes no weight per returned "
                             f"value ({e}); use 'sum' or 'mean'") from None
        grads = [sign * np.asarray(g, dtype=np.float64) for g in grads]
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
    if total is None:  # a zero incoming gradient
        return tuple(np.zeros(np.shape(args[fl_loss.arguments.index(n)])) for n in fl_loss.grads)
    return tuple(total)


def broadcast_items(incoming: np.ndarray, grad_shape: Tuple[int, ...]) -> Optional[tuple]:
    """The shape that lays one incoming value per item over a gradient of ``grad_shape`` (items
    lead the gradient's axes), or None when the shapes do not line up."""
    shape = tuple(incoming.shape)
    if shape != tuple(grad_shape[:len(shape)]):
        return None
    return shape + (1,) * (len(grad_shape) - len(shape))
