"""Dask adapter: a fastloss loss over ``dask.array`` inputs larger than one machine.

The graph is blockwise: one fused task per block of rows evaluates the kernel once
(``loss._evaluate``: the block's ``sum(w l)``, its mean denominator and, when asked, the
derivatives of the sum), reading the ``y_true``, ``y_pred`` and ``sample_weight`` blocks of the
same rows; a tree reduction (``split_every`` blocks per node) merges the partials exactly
(``math.fsum`` over every block's partial, so the result does not depend on the order in which the
blocks finish), and the mean divides by the global denominator, the same as the in-memory
``reduction="mean"``. The gradient and Hessian blocks are scaled by that global normalization, so
they equal the in-memory derivatives of the global value.

The value is a 0-d dask array (``.compute()`` gives a float); the derivatives are dask arrays of
``y_pred``'s shape, dtype and row chunks. The loss is stored once in the graph (one key every block
task reads), not pickled into each task.

Blocks are rows: arrays are rechunked so that only the first axis is split (a class axis or
quantile axis stays whole); ``y_true`` and ``sample_weight`` follow ``y_pred``'s row chunks.
Works on any scheduler, including a ``distributed`` cluster (the workers import fastloss).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ._adapters import as_loss
from ._base import Loss

__all__ = ["loss_value", "value_and_grad", "grad_hess"]

SPLIT_EVERY = 16  # block partials merged per node of the reduction tree


def _aligned(y_pred, *others) -> Tuple[da.Array, List[Optional[da.Array]]]:
    """``y_pred`` chunked by rows only, and each other array (or None) on the same row chunks."""
    p = da.asarray(y_pred)
    if p.ndim == 0:
        raise ValueError("y_pred must have at least one axis")
    p = p.rechunk({i: -1 for i in range(1, p.ndim)})
    aligned = []
    for x in others:
        if x is not None:
            x = da.asarray(x)
            if x.shape[:1] != p.shape[:1]:
                raise ValueError(f"arrays must have y_pred's number of rows; got shapes {p.shape} "
                                 f"and {x.shape}")
            x = x.rechunk((p.chunks[0],) + tuple((n,) for n in x.shape[1:]))
        aligned.append(x)
    return p, aligned


def _reduction(loss: Loss, reduction: Optional[str]) -> str:
    reduction = reduction or loss.reduction
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum' over dask arrays; got {reduction!r}")
    return reduction


def _block(loss: Loss, y, p, w, want_grad: bool, want_hess: bool):
    """One block, one kernel call: ``((sum,), (denominator,), d sum / d p, its Hessian)``."""
    r = loss._evaluate((y, p), {}, w, "sum", want_grad, want_hess)
    return (r.total,), (r.norm,), r.grad, r.hess


def _combine(*parts) -> Tuple[tuple, tuple]:
    """A node of the reduction tree: the partials of its children, kept apart so that the root
    sums them exactly."""
    return (sum((p[0] for p in parts), ()), sum((p[1] for p in parts), ()))


def _finish(parts, reduction: str) -> Tuple[float, float]:
    """``(value, scale)``: the global value and the factor of each block's derivative of the
    sum (``1 / denominator`` for the mean)."""
    total, norm = math.fsum(parts[0]), math.fsum(parts[1])
    if reduction == "sum":
        return total, 1.0
    return (total / norm if norm > 0 else math.nan), (1.0 / norm if norm > 0 else 0.0)


def _value(finished) -> np.ndarray:
    return np.float64(finished[0])


def _scaled(block, i: int, finished) -> np.ndarray:
    """Output ``i`` of a block (its own array, written in place) times the global factor."""
    d = block[i]
    scale = finished[1]
    if scale != 1.0:
        d *= d.dtype.type(scale)
    return d


def _plan(loss, y_true, y_pred, sample_weight, reduction, want_grad, want_hess):
    loss = as_loss(loss)
    loss._require_chunkable()
    reduction = _reduction(loss, reduction)
    p, (y, w) = _aligned(y_pred, y_true, sample_weight)
    token = tokenize(loss, y, p, w, reduction, want_grad, want_hess)
    loss_key, block = f"fastloss-loss-{token}", f"fastloss-block-{token}"
    tail = (0,) * (p.ndim - 1)
    graph: dict = {loss_key: loss}  # stored once; every block task depends on it

    def key(x, i):
        return None if x is None else (x.name, i) + (0,) * (x.ndim - 1)

    level = []
    for i in range(p.numblocks[0]):
        graph[(block, i)] = (_block, loss_key, key(y, i), key(p, i), key(w, i), want_grad, want_hess)
        level.append((block, i))
    depth = 0
    while len(level) > 1:  # the tree reduction of the (sum, denominator) partials
        name, depth = f"fastloss-merge{depth}-{token}", depth + 1
        nodes = []
        for j in range(0, len(level), SPLIT_EVERY):
            graph[(name, j)] = (_combine,) + tuple(level[j:j + SPLIT_EVERY])
            nodes.append((name, j))
        level = nodes
    finished = f"fastloss-finish-{token}"
    graph[finished] = (_finish, level[0], reduction)
    value_name = f"fastloss-value-{token}"
    graph[(value_name,)] = (_value, finished)
    deps = [x for x in (y, p, w) if x is not None]
    hlg = HighLevelGraph.from_collections(value_name, graph, dependencies=deps)
    value = da.Array(hlg, value_name, chunks=(), dtype=np.float64)

    def lazy(i: int) -> da.Array:  # output i of every block, scaled, as one dask array
        name = f"fastloss-d{i}-{token}"
        layer = {(name, b) + tail: (_scaled, (block, b), i, finished)
                 for b in range(p.numblocks[0])}
        g = HighLevelGraph.from_collections(name, layer, dependencies=[value])  # its keys
        return da.Array(g, name, chunks=p.chunks, dtype=p.dtype)

    return value, lazy


def loss_value(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """The loss value (weighted mean or sum) as a 0-d dask array: ``.compute()`` gives a float
    equal to the in-memory ``loss(y_true, y_pred, sample_weight)``."""
    return _plan(loss, y_true, y_pred, sample_weight, reduction, False, False)[0]


def value_and_grad(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(value, grad)``: the value as a 0-d dask array and the gradient as a dask array of
    ``y_pred``'s shape, dtype and row chunks, from one kernel pass per block."""
    value, lazy = _plan(loss, y_true, y_pred, sample_weight, reduction, True, False)
    return value, lazy(2)


def grad_hess(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(grad, hess)`` as dask arrays of ``y_pred``'s shape and dtype: the derivatives of the
    global value under ``reduction``."""
    _, lazy = _plan(loss, y_true, y_pred, sample_weight, reduction, True, True)
    return lazy(2), lazy(3)
