"""Dask adapter: a fastloss loss over ``dask.array`` inputs larger than one machine.

Each block of rows is evaluated by the fused kernel into a partial sum ``(sum(w l), normalizer)``
(:func:`fastloss.partial_sum`: each loss's own mean denominator, from the same kernel call); the
partials are merged exactly (``math.fsum``, so the result does not
depend on the order in which the blocks finish), and the mean divides by the global normalizer,
the same denominator as the in-memory ``reduction="mean"``. The gradient and Hessian are lazy
dask arrays, each block scaled by the global normalization (``1 / normalizer`` for the mean), so
they equal the in-memory derivatives of the global value.

Blocks are rows: arrays are rechunked so that only the first axis is split (a class axis or
quantile axis stays whole); ``y_true`` and ``sample_weight`` follow ``y_pred``'s row chunks.

Works on any scheduler, including a ``distributed`` cluster (the workers import fastloss).
The same recipe runs without Dask; see docs/integrations.md for Ray and Spark.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import dask
import dask.array as da
import numpy as np

from ._adapters import as_loss
from ._base import Loss

__all__ = ["loss_value", "value_and_grad", "grad_hess"]


def _row_blocks(y_pred, *others) -> Tuple[da.Array, List[Any], List[List[Any]]]:
    """``y_pred`` chunked by rows only, and each other array (or None) on the same row chunks,
    as per-block delayed objects."""
    p = da.asarray(y_pred)
    if p.ndim == 0:
        raise ValueError("y_pred must have at least one axis")
    p = p.rechunk({i: -1 for i in range(1, p.ndim)})
    delayed = []
    for x in others:
        if x is None:
            delayed.append([None] * p.numblocks[0])
            continue
        x = da.asarray(x)
        if x.shape[:1] != p.shape[:1]:
            raise ValueError(f"arrays must have y_pred's number of rows; got shapes {p.shape} and {x.shape}")
        x = x.rechunk((p.chunks[0],) + tuple((n,) for n in x.shape[1:]))
        delayed.append(list(x.to_delayed().ravel()))
    return p, list(p.to_delayed().ravel()), delayed


def _reduction(loss: Loss, reduction: Optional[str]) -> str:
    reduction = reduction or loss.reduction
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' over dask arrays; got {reduction!r}")
    return reduction


def _scale(normalizers: Sequence[float], reduction: str) -> float:
    """What each per-block derivative of the sum is multiplied by."""
    if reduction == "sum":
        return 1.0
    total = math.fsum(normalizers)
    return 1.0 / total if total > 0 else 0.0


def _merge(sums: Sequence[float], normalizers: Sequence[float], reduction: str) -> float:
    total = math.fsum(sums)
    if reduction == "sum":
        return total
    norm = math.fsum(normalizers)
    return total / norm if norm > 0 else float("nan")


def _block(loss: Loss, y, p, w, want_grad: bool, want_hess: bool):
    """One block, one kernel call: ``(sum of the loss, its mean's denominator, derivatives of the
    sum)``."""
    r = loss._evaluate((y, p), {}, w, "sum", want_grad, want_hess)
    return r.total, r.norm, r.grad, r.hess


def _scaled(d: np.ndarray, scale: float) -> np.ndarray:
    """A block's derivative of the sum, in place, times the global factor (``1/denominator``
    for the mean)."""
    d *= d.dtype.type(scale)
    return d


def _plan(loss, y_true, y_pred, sample_weight, reduction, want_grad, want_hess):
    loss = as_loss(loss)
    loss._require_chunkable()
    reduction = _reduction(loss, reduction)
    p, p_blocks, (y_blocks, w_blocks) = _row_blocks(y_pred, y_true, sample_weight)
    shapes = [(rows,) + p.shape[1:] for rows in p.chunks[0]]
    outs = [dask.delayed(_block, nout=4)(loss, yb, pb, wb, want_grad, want_hess)
            for yb, pb, wb in zip(y_blocks, p_blocks, w_blocks)]
    sums, norms = [o[0] for o in outs], [o[1] for o in outs]
    value = dask.delayed(_merge)(sums, norms, reduction)
    scale = dask.delayed(_scale)(norms, reduction)

    def lazy(i: int) -> da.Array:  # output i of every block, scaled, as one dask array
        return da.concatenate([da.from_delayed(dask.delayed(_scaled)(o[i], scale), shape=s,
                                               dtype=p.dtype) for o, s in zip(outs, shapes)],
                              axis=0)

    return value, lazy


def loss_value(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """The loss value (weighted mean or sum) as a ``dask.delayed`` object: ``.compute()`` gives
    a Python float equal to the in-memory ``loss(y_true, y_pred, sample_weight)``."""
    return _plan(loss, y_true, y_pred, sample_weight, reduction, False, False)[0]


def value_and_grad(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(value, grad)``: the value as a ``dask.delayed`` float and the gradient as a lazy dask
    array of ``y_pred``'s shape and dtype, from one kernel pass per block."""
    value, lazy = _plan(loss, y_true, y_pred, sample_weight, reduction, True, False)
    return value, lazy(2)


def grad_hess(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(grad, hess)`` as lazy dask arrays of ``y_pred``'s shape and dtype: the derivatives of
    the global value under ``reduction``."""
    _, lazy = _plan(loss, y_true, y_pred, sample_weight, reduction, True, True)
    return lazy(2), lazy(3)
