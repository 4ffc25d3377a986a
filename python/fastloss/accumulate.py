"""Exact gradient accumulation and streaming.

A mean loss ``L = S / N`` over a large batch is the ratio of two sums: the weighted sum of the
per-sample losses ``S`` and the loss's normalizer ``N`` (``sum(w)`` for an elementwise loss;
``sum(w_i * class_weight[y_i])`` over the non-ignored rows for a cross-entropy with labels;
whatever each loss's own ``"mean"`` divides by). Averaging the means of the micro-batches is
wrong whenever they have different normalizers (ragged last batch, weights, class weights,
ignored rows). :class:`GradientAccumulator` keeps ``S`` and ``N`` instead, each micro-batch
returns the gradient of its contribution to ``S``, and the caller scales the accumulated
(parameter) gradient once by :attr:`GradientAccumulator.scale` ``= 1/N`` at the end: the value and
the gradient are then those of the one-shot call on the concatenated batch.

The sums are kept exactly (non-overlapping floating-point expansions, the algorithm behind
:func:`math.fsum`), so the result does not depend on the order in which micro-batches arrive or
partial states are merged; the only rounding that differs from the one-shot call is each
micro-batch's own (deterministic) kernel sum, far below 1e-12 relative in float64.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import numpy as np

from ._base import Loss
from ._validate import choice

__all__ = ["GradientAccumulator", "partial_sum"]

_EMPTY_POLICIES = ("skip", "raise")


def partial_sum(loss: Loss, *args, sample_weight=None, **inputs) -> Tuple[float, float]:
    """``(weighted sum of the loss, denominator of its mean)`` over one piece of the data, from
    one kernel call (the arguments are the loss's own). Pieces merge by addition: the mean over
    all of them is ``fsum(sums) / fsum(denominators)`` (a Dask block, a Spark partition, a
    CatBoost metric call; see docs/integrations.md). NotImplementedError for a loss that compares
    whole batches (``loss.chunkable`` is False)."""
    loss._require_chunkable()
    result = loss._evaluate(args, inputs, sample_weight, "sum", False, False)
    return result.total, result.norm


class _ExactSum:
    """A float64 sum without rounding error: Shewchuk's non-overlapping partials (as in
    ``math.fsum``); ``value()`` is the correctly rounded total whatever the order of ``add``.
    Non-finite terms are kept apart (``inf + -inf`` is NaN, as in a plain sum)."""

    def __init__(self) -> None:
        self.partials: List[float] = []
        self.special = 0.0

    def add(self, x: float) -> None:
        if not math.isfinite(x):
            self.special += x
            return
        i = 0
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)
            if lo:
                self.partials[i] = lo
                i += 1
            x = hi
        self.partials[i:] = [x]

    def extend(self, other: "_ExactSum") -> None:
        for x in other.partials:
            self.add(x)
        self.special += other.special

    def value(self) -> float:
        return self.special if self.special != 0.0 else math.fsum(self.partials)


class GradientAccumulator:
    """Streams micro-batches of any loss and yields exactly the full batch's value and gradient.

    ``update(y_true, y_pred, sample_weight)`` evaluates one micro-batch in one fused kernel call
    (``reduction="sum"``), adds its weighted loss sum and its normalizer to exact running sums,
    and returns the gradient of that micro-batch's *sum* with respect to its ``y_pred``. After the
    last micro-batch, :meth:`value` is the loss under its own reduction and :attr:`scale` the
    factor that turns the accumulated gradients of the sum into those of the value (``1/N`` for
    ``"mean"``, 1 for ``"sum"``). Back-propagate each micro-batch's gradient into your parameters,
    add the parameter gradients up, multiply once by ``scale``.

    Partial states are mergeable and picklable: accumulate chunks anywhere (other processes,
    other machines), ship the accumulators (``pickle``), and :meth:`merge` them -- in any order,
    with the same result.

    Empty micro-batches (``y_pred`` with no element): with ``on_empty="skip"`` (default) they are
    validated like any call, contribute nothing, and ``update`` returns an empty gradient; with
    ``on_empty="raise"`` they are a ValueError. A mean whose total normalizer is 0 (no batch,
    or every row ignored / weightless) is NaN with ``scale = 0``, as the cross-entropy's one-shot
    mean over no counted row.

    Parameters
    ----------
    loss : fastloss.Loss
        Any loss with ``reduction="mean"`` or ``"sum"`` (elementwise, binary, multi-class with
        ``class_weight`` and ``ignore_index``...).
    on_empty : "skip" or "raise", default "skip"

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> y, p = np.arange(10.0), np.arange(10.0) + 0.5
    >>> acc = fl.GradientAccumulator(fl.MSE())
    >>> grads = [acc.update(y[i:i + 3], p[i:i + 3]) for i in range(0, 10, 3)]
    >>> acc.value() == fl.MSE()(y, p)
    True
    >>> bool(np.allclose(np.concatenate(grads) * acc.scale, fl.MSE().value_and_grad(y, p)[1]))
    True
    """

    def __init__(self, loss: Loss, *, on_empty: str = "skip") -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastloss.Loss; got {type(loss).__name__}")
        if loss.reduction not in ("mean", "sum"):
            raise ValueError(f"the accumulated loss must have reduction 'mean' or 'sum'; got "
                             f"{loss.reduction!r}")
        self.on_empty = choice(*_EMPTY_POLICIES)("on_empty", on_empty)
        loss._require_chunkable()
        self.loss = loss
        self.batches = 0  # micro-batches added, empty ones included
        self._sum = _ExactSum()
        self._norm = _ExactSum()

    def __repr__(self) -> str:
        return (f"GradientAccumulator({self.loss!r}, batches={self.batches}, "
                f"sum={self.total:.17g}, normalizer={self.normalizer:.17g})")

    def update(self, *args, sample_weight=None, want_grad: bool = True, grad_out=None,
               **inputs) -> Optional[Any]:
        """Adds one micro-batch (the loss's own arguments: ``update(y_true, y_pred)``, or its
        several inputs, keyword inputs such as ``teacher_logits``); returns the gradient of its
        weighted loss *sum* (into ``grad_out`` if given; a tuple for a loss with several
        differentiable inputs), or None when ``want_grad=False``. Multiply the accumulated
        gradients by :attr:`scale` at the end."""
        if self.on_empty == "raise":
            pred = args[1] if len(args) > 1 else inputs.get(self.loss.arguments[1])
            if np.size(pred) == 0:
                raise ValueError(f"empty micro-batch ({self.loss.arguments[1]} shape "
                                 f"{np.shape(pred)}) and on_empty='raise'")
        result = self.loss._evaluate(args, inputs, sample_weight, "sum", want_grad, False,
                                        None, grad_out)
        self._sum.add(result.total)
        self._norm.add(result.norm)
        self.batches += 1
        return result.grad

    @property
    def total(self) -> float:
        """The weighted loss sum over every micro-batch so far."""
        return self._sum.value()

    @property
    def normalizer(self) -> float:
        """The denominator of the loss's mean over every micro-batch so far."""
        return self._norm.value()

    @property
    def scale(self) -> float:
        """The factor from gradients of the sum to gradients of the value: ``1/normalizer`` for
        ``"mean"`` (0 when the normalizer is 0), 1 for ``"sum"``."""
        if self.loss.reduction == "sum":
            return 1.0
        n = self.normalizer
        return 1.0 / n if n > 0 else 0.0

    def value(self) -> float:
        """The loss over everything added, under the loss's reduction (NaN for a mean over a
        zero normalizer)."""
        if self.loss.reduction == "sum":
            return self.total
        n = self.normalizer
        return self.total / n if n > 0 else math.nan

    def merge(self, *others: "GradientAccumulator") -> "GradientAccumulator":
        """A new accumulator holding this one's micro-batches and those of ``others`` (same loss,
        reduction and parameters; any order gives the same result)."""
        for other in others:
            if not isinstance(other, GradientAccumulator):
                raise TypeError(f"can only merge GradientAccumulator objects; got "
                                f"{type(other).__name__}")
            if other.loss != self.loss:  # losses compare by class, reduction and parameters
                raise ValueError(f"cannot merge accumulators of different losses: {self.loss!r} "
                                 f"and {other.loss!r}")
        merged = GradientAccumulator(self.loss, on_empty=self.on_empty)
        for acc in (self, *others):
            merged._sum.extend(acc._sum)
            merged._norm.extend(acc._norm)
            merged.batches += acc.batches
        return merged
