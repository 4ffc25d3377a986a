"""Dask adapter: a fastloss loss over ``dask.array`` inputs larger than one machine.

Each block of rows is evaluated by the fused kernel into a partial sum ``(sum(w l), normalizer)``
(:func:`fastloss.partial_sum`, each loss's own mean denominator); the partials are merged exactly (``math.fsum``, so the result does not
depend on the order in which the blocks finish), and the mean divides by the global normalizer,
the same denominator as the in-memory ``reduction="mean"``. The gradient and Hessian are lazy
dask arrays, each block scaled by the global normalization (``1 / normalizer`` for the mean), so
they equal the in-memory derivatives of the global value. The normalizer needs only the labels and
weights, so gradient blocks stream: no block waits for another's predictions.

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

from ._base import Loss
from ._boosting import as_loss

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


def _normalizer(loss: Loss, y, shape, w) -> float:
    """The block's share of the mean's denominator: it needs only the shape of the predictions."""
    return loss._normalizer(y, np.broadcast_to(np.float64(0.0), shape), w)


def _block(loss: Loss, y, p, w, scale: float, want: str):
    """One block: the sum of the loss and/or the derivatives of the sum times ``scale``."""
    if want == "value":
        return loss(y, p, w, reduction="sum")
    if want == "grad_hess":
        outs = loss.grad_hess(y, p, w, reduction="sum")
    else:
        value, grad = loss.value_and_grad(y, p, w, reduction="sum")
        outs = (grad,)
    for d in outs:
        d *= d.dtype.type(scale)
    return outs if want == "grad_hess" else (value, outs[0])


def _plan(loss, y_true, y_pred, sample_weight, reduction):
    loss = as_loss(loss)
    reduction = _reduction(loss, reduction)
    p, p_blocks, (y_blocks, w_blocks) = _row_blocks(y_pred, y_true, sample_weight)
    shapes = [(rows,) + p.shape[1:] for rows in p.chunks[0]]
    normalizers = [dask.delayed(_normalizer)(loss, yb, shape, wb)
                   for yb, shape, wb in zip(y_blocks, shapes, w_blocks)]
    return loss, reduction, p, list(zip(y_blocks, p_blocks, w_blocks)), shapes, normalizers


def _lazy(blocks, shapes, dtype) -> da.Array:
    return da.concatenate([da.from_delayed(b, shape=s, dtype=dtype) for b, s in zip(blocks, shapes)],
                          axis=0)


def loss_value(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """The loss value (weighted mean or sum) as a ``dask.delayed`` object: ``.compute()`` gives
    a Python float equal to the in-memory ``loss(y_true, y_pred, sample_weight)``."""
    loss, reduction, _, blocks, _, normalizers = _plan(loss, y_true, y_pred, sample_weight, reduction)
    sums = [dask.delayed(_block)(loss, y, p, w, 1.0, "value") for y, p, w in blocks]
    return dask.delayed(_merge)(sums, normalizers, reduction)


def value_and_grad(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(value, grad)``: the value as a ``dask.delayed`` float and the gradient as a lazy dask
    array of ``y_pred``'s shape and dtype, from one kernel pass per block."""
    loss, reduction, p, blocks, shapes, normalizers = _plan(loss, y_true, y_pred, sample_weight, reduction)
    scale = dask.delayed(_scale)(normalizers, reduction)
    outs = [dask.delayed(_block, nout=2)(loss, y, pb, w, scale, "value_and_grad")
            for y, pb, w in blocks]
    value = dask.delayed(_merge)([o[0] for o in outs], normalizers, reduction)
    return value, _lazy([o[1] for o in outs], shapes, p.dtype)


def grad_hess(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(grad, hess)`` as lazy dask arrays of ``y_pred``'s shape and dtype: the derivatives of
    the global value under ``reduction``."""
    loss, reduction, p, blocks, shapes, normalizers = _plan(loss, y_true, y_pred, sample_weight, reduction)
    scale = dask.delayed(_scale)(normalizers, reduction)
    outs = [dask.delayed(_block, nout=2)(loss, y, pb, w, scale, "grad_hess")
            for y, pb, w in blocks]
    return (_lazy([o[0] for o in outs], shapes, p.dtype), _lazy([o[1] for o in outs], shapes, p.dtype))
