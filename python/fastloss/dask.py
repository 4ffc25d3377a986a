"""Dask adapter: a fastloss loss over ``dask.array`` inputs larger than one machine.

The graph is blockwise: one fused task per block of rows evaluates the kernel once
(``loss._evaluate``: the block's ``sum(w l)``, its mean denominator and, when asked, the
derivatives of the sum), reading the ``y_true``, ``y_pred`` and ``sample_weight`` blocks of the
same rows. One root task merges the blocks' partials exactly (``math.fsum`` over every block's
partial, so the result does not depend on the order in which the blocks finish; past
``SPLIT_EVERY`` blocks a tree gathers them), and the mean divides by the global denominator, the
same as the in-memory ``reduction="mean"``. The gradient and Hessian blocks are scaled by that
global normalization, so they equal the in-memory derivatives of the global value.

The value is a 0-d dask array (``.compute()`` gives a float); the derivatives are dask arrays of
``y_pred``'s shape, dtype and row chunks. A value costs the block tasks and the root, nothing else:
the loss travels inside each block task (a few hundred bytes) rather than as a task of its own, the
root is the value itself (dask adds no task gathering its one chunk), and the blocks send on two
floats each; with derivatives, the partials are taken out on each block's worker, so the gradient
blocks never move to the root. Each block task runs the kernel with its share of fastloss's
threads (block tasks run side by side, one per thread of the pool running them).

Blocks are rows: arrays are rechunked so that only the first axis is split (a class axis or
quantile axis stays whole); ``y_true`` and ``sample_weight`` follow ``y_pred``'s row chunks.
Works on any scheduler, including a ``distributed`` cluster (the workers import fastloss).
"""

from __future__ import annotations

import math
import operator
import threading
import uuid
from typing import Any, List, Optional, Tuple

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import single_key
from dask.highlevelgraph import HighLevelGraph
from dask.system import CPU_COUNT

from ._adapters import as_loss
from ._base import Loss
from ._runtime import get_num_threads, num_threads

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


def _threads_per_task(blocks: int) -> int:
    """fastloss threads for one block task. Block tasks run side by side, as many as the pool
    running them has threads (a distributed worker's threads, or dask's threaded scheduler's: one
    per core), so each takes its share and the cores are not oversubscribed. A worker process
    started by a nanny already has ``OMP_NUM_THREADS=1``; the synchronous scheduler runs one task
    at a time in the calling thread, with all the threads."""
    threads = get_num_threads()
    if threading.current_thread() is threading.main_thread():
        return threads
    try:
        from distributed import get_worker
        side_by_side = get_worker().state.nthreads
    except (ImportError, ValueError):  # not on a distributed worker
        side_by_side = dask.config.get("num_workers", None) or CPU_COUNT
    return max(1, threads // min(blocks, side_by_side))


def _partial(loss: Loss, y, p, w, blocks: int) -> Tuple[tuple, tuple]:
    """The value task of one block: ``((sum,), (denominator,))``, two floats to send on."""
    with num_threads(_threads_per_task(blocks)):
        r = loss._evaluate((y, p), {}, w, "sum", False, False)
    return (r.total,), (r.norm,)


def _block(loss: Loss, y, p, w, blocks: int, want_hess: bool):
    """One block, one kernel call: ``(partial, d sum / d p, its Hessian or None)``."""
    with num_threads(_threads_per_task(blocks)):
        r = loss._evaluate((y, p), {}, w, "sum", True, want_hess)
    return ((r.total,), (r.norm,)), r.grad, r.hess


def _combine(*parts) -> Tuple[tuple, tuple]:
    """A node of the reduction tree: the partials of its children, kept apart so that the root
    sums them exactly."""
    return (sum((p[0] for p in parts), ()), sum((p[1] for p in parts), ()))


def _finish(reduction: str, *parts) -> Tuple[np.float64, float]:
    """``(value, scale)``: the global value and the factor of each block's derivative of the
    sum (``1 / denominator`` for the mean)."""
    totals, norms = _combine(*parts)
    total, norm = math.fsum(totals), math.fsum(norms)
    if reduction == "sum":
        return np.float64(total), 1.0
    return np.float64(total / norm if norm > 0 else math.nan), (1.0 / norm if norm > 0 else 0.0)


def _value(reduction: str, *parts) -> np.float64:
    return _finish(reduction, *parts)[0]


def _scaled(block, i: int, finished) -> np.ndarray:
    """Output ``i`` of a block (its own array, written in place) times the global factor."""
    d = block[i]
    scale = finished[1]
    if scale != 1.0:
        d *= d.dtype.type(scale)
    return d


class _Scalar(da.Array):
    """The 0-d value: computing it hands back its one chunk as is (a NumPy float64), the way a
    ``dask.delayed`` result is, so that dask adds no task gathering the chunks, a further round
    trip on a cluster. Arithmetic on it gives ordinary dask arrays."""

    __slots__ = ()

    def __dask_postcompute__(self):
        return single_key, ()

    def _rebuild(self, dsk, *, rename=None):
        """After a persist, still a value whose compute fetches its one chunk (no task)."""
        name = rename.get(self.name, self.name) if rename else self.name
        return _Scalar(dsk, name, chunks=(), dtype=self.dtype)


def _plan(loss, y_true, y_pred, sample_weight, reduction, want_grad, want_hess):
    """The value (a 0-d dask array) and, when derivatives are asked for, ``lazy(i)``: output
    ``i`` of the block tasks (1: gradient, 2: Hessian) as a dask array of ``y_pred``'s chunks."""
    loss = as_loss(loss)
    loss._require_chunkable()
    reduction = _reduction(loss, reduction)
    p, (y, w) = _aligned(y_pred, y_true, sample_weight)
    token = tokenize(loss, y, p, w, reduction, want_grad, want_hess)
    block, partial = f"fastloss-block-{token}", f"fastloss-partial-{token}"
    # The value is the key a compute gathers: a fresh name per graph, as dask gives the task that
    # gathers an array's chunks, so that computing the same value again never asks the scheduler
    # for a key that the previous compute is releasing (distributed then reschedules it).
    value_name = f"fastloss-value-{uuid.uuid4().hex}"
    tail = (0,) * (p.ndim - 1)

    def key(x, i):
        return None if x is None else (x.name, i) + (0,) * (x.ndim - 1)

    # The loss (a few hundred bytes pickled) goes into every block task: a shared key holding it
    # would be a task of its own, sent from the worker that ran it to every other worker.
    graph: dict = {}
    level = []
    n = p.numblocks[0]
    for i in range(n):
        if want_grad:  # the partial is taken out on the block's worker, the arrays stay there
            graph[(block, i)] = (_block, loss, key(y, i), key(p, i), key(w, i), n, want_hess)
            graph[(partial, i)] = (operator.getitem, (block, i), 0)
            level.append((partial, i))
        else:
            graph[(block, i)] = (_partial, loss, key(y, i), key(p, i), key(w, i), n)
            level.append((block, i))
    depth = 0
    while len(level) > SPLIT_EVERY:  # a tree over many blocks; the root merges the last level
        name, depth = f"fastloss-merge{depth}-{token}", depth + 1
        nodes = []
        for j in range(0, len(level), SPLIT_EVERY):
            graph[(name, j)] = (_combine,) + tuple(level[j:j + SPLIT_EVERY])
            nodes.append((name, j))
        level = nodes
    finished = f"fastloss-finish-{token}"
    if want_grad:
        graph[finished] = (_finish, reduction) + tuple(level)
        graph[(value_name,)] = (operator.getitem, finished, 0)
    else:  # the root is the value itself: one task after the blocks
        graph[(value_name,)] = (_value, reduction) + tuple(level)
    deps = [x for x in (y, p, w) if x is not None]
    hlg = HighLevelGraph.from_collections(value_name, graph, dependencies=deps)
    value = _Scalar(hlg, value_name, chunks=(), dtype=np.float64)

    def lazy(i: int) -> da.Array:  # output i of every block, scaled, as one dask array
        name = f"fastloss-d{i}-{token}"
        # The sum's derivatives are the blocks' own: taken out where each block was computed,
        # as soon as it is, without waiting for the global normalizer of the mean.
        layer = {(name, b) + tail: ((operator.getitem, (block, b), i) if reduction == "sum"
                                    else (_scaled, (block, b), i, finished))
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
    return value, lazy(1)


def grad_hess(loss: Any, y_true, y_pred, sample_weight=None, *, reduction: Optional[str] = None):
    """``(grad, hess)`` as dask arrays of ``y_pred``'s shape and dtype: the derivatives of the
    global value under ``reduction``."""
    _, lazy = _plan(loss, y_true, y_pred, sample_weight, reduction, True, True)
    return lazy(1), lazy(2)
