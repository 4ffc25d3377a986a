"""Consistency losses: agreement between two predictions of the same input
(semi-supervised consistency, ``L = L_supervised + lam * L_consistency``), and smoothness of one
prediction over time, over a neighbour graph and over 2-D/3-D grids.

The smoothness penalties are sums of squared differences over pairs ``(a, b)`` of positions,
``sum ||f_a - f_b||^2``; each pair set is evaluated by the fused MSE kernel on two views of the
same array (value and gradient in one pass), and the gradient is scattered back onto ``f``.
``reduction="sum"`` is that sum; ``"mean"`` divides by the number of (weighted) scalar
squared differences, as an MSE would.
"""

from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np

from ._base import FloatArray, Loss, _check_reduction, param
from ._batch import item_result, item_scale
from ._validate import positive, real_array
from .classification import FROM_LOGITS
from .multiclass import softmax
from .regression import MSE

__all__ = ["ConsistencyMSE", "consistency_mse", "TemporalConsistency", "GraphConsistency",
           "GridConsistency"]


class ConsistencyMSE(Loss[FloatArray]):
    """Consistency between two predictions of the same input (Pi-model / Mean Teacher, Laine &
    Aila 2017, Tarvainen & Valpola 2017): per row, the squared distance of the class
    distributions ``l = sum_k (p_k - q_k)^2`` with ``p`` from ``y_pred`` and ``q`` from ``y_true``
    (the other view, or the teacher), both (..., K).

    On probabilities (default) ``p = y_pred``, ``q = y_true``. With ``from_logits=True``,
    ``p = softmax(y_pred / T)`` and ``q = softmax(y_true / T)`` for the temperature ``T``;
    gradient ``(1/T) p_j (g_j - sum_k p_k g_k)`` with ``g = 2 (p - q)``, and the exact Hessian
    diagonal. The mean divides by the summed row weights (the number of rows; a mean over zero
    weight is NaN with a zero gradient): Mean Teacher's ``softmax_mse_loss`` divided by the batch
    size is this mean divided by ``K``.

    The loss is symmetric: the gradient with respect to ``y_true`` (when both views are trained)
    is ``value_and_grad(y_pred, y_true)[1]``.

    Parameters
    ----------
    from_logits : bool, default False
    temperature : float > 0, default 1.0
        Softmax temperature ``T`` (``from_logits=True`` only).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.ConsistencyMSE()(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
    0.5
    >>> round(fl.ConsistencyMSE(from_logits=True)(np.zeros((1, 2)), np.array([[2.0, 0.0]])), 6)
    0.290013
    """

    function_name = "consistency_mse"
    from_logits: bool = FROM_LOGITS
    temperature: float = param(default=1.0, check=positive, doc="softmax temperature T (logits)")
    family, convex, robust, smooth = "consistency", False, False, True

    def __post_init__(self) -> None:
        if not self.from_logits and self.temperature != 1.0:
            raise ValueError("temperature applies to logits: use from_logits=True")

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64",
                  num_classes: int = 10):
        """CLI data: two noisy views (n, num_classes) of the same logits (softmax probabilities
        unless the loss takes logits)."""
        z = 2.0 * rng.standard_normal((n, num_classes))
        views = (z, z + 0.5 * rng.standard_normal(z.shape))
        if not self.from_logits:
            views = tuple(softmax(v) for v in views)
        return views[0].astype(dtype), views[1].astype(dtype), {}

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        z = real_array(args[1], "y_pred")
        t = real_array(args[0], "y_true")
        if z.ndim == 0:
            raise ValueError("y_pred must have a class axis (..., K)")
        if t.shape != z.shape:
            raise ValueError(f"y_true and y_pred must have the same shape; got y_true {t.shape} "
                             f"and y_pred {z.shape}")
        rows = z.shape[:-1]
        w = None
        if sample_weight is not None:
            w = real_array(sample_weight, "sample_weight").astype(np.float64)
            if w.shape != rows:
                raise ValueError(f"sample_weight must have one weight per row, shape {rows}; got "
                                 f"{w.shape}")
            if not np.all(np.isfinite(w) & (w >= 0)):
                raise ValueError("sample_weight must be finite and non-negative")

        inv_t = 1.0 / self.temperature
        if self.from_logits:
            p = softmax(z.astype(np.float64) * inv_t)
            q = softmax(t.astype(np.float64) * inv_t)
        else:
            p, q = z.astype(np.float64), t.astype(np.float64)
        diff = p - q
        per_row = np.einsum("...k,...k->...", diff, diff)
        norm, row_scale = item_scale(w, rows, reduction)
        c = row_scale[..., None]

        grad = hess = None
        if want_grad or want_hess:
            g = 2.0 * diff
            if self.from_logits:
                gbar = np.einsum("...k,...k->...", p, g)[..., None]
                if want_hess:
                    s2 = np.einsum("...k,...k->...", p, p)[..., None]
                    h = g + 2.0 * p
                    hess = (p * (1 - p) * (g - gbar) + p * (2 * p * (1 - p) - p * (h - gbar - 2 * s2)))
                    hess = (hess * (c * inv_t * inv_t)).astype(z.dtype)
                g = p * (g - gbar) * inv_t
            elif want_hess:
                hess = np.broadcast_to(2.0 * c, z.shape).astype(z.dtype)
            grad = (g * c).astype(z.dtype)
        return item_result(per_row, w, norm, reduction, z.dtype, grad, hess)


consistency_mse = ConsistencyMSE.functional


_SUM_OF_SQUARES = MSE(reduction="sum")  # sum of w (b - a)^2, gradient 2 w (b - a) w.r.t. b


class _PairwiseSquares:
    """``sum over pair sets (a, b, w) of sum w ||f[a] - f[b]||^2`` and its gradient: subclasses
    list the pair sets (index expressions into ``f``, optional weight per pair)."""

    def __init__(self, reduction: str) -> None:
        self.reduction = _check_reduction(reduction)
        if reduction == "none":
            raise ValueError("reduction must be 'mean' or 'sum' for a pairwise consistency")

    def _pairs(self, f: np.ndarray):
        raise NotImplementedError

    def evaluate(self, f, want_grad: bool = True):
        f = real_array(f, "f")
        pairs = self._pairs(f)  # validates the geometry before any work
        total = norm = 0.0
        grad = np.zeros_like(f) if want_grad else None
        for a, b, w in pairs:
            r = _SUM_OF_SQUARES._evaluate((f[a], f[b]), {}, w, "sum", want_grad, False)
            if want_grad:
                _scatter(grad, b, r.grad)
                _scatter(grad, a, np.negative(r.grad, out=r.grad))
            total += r.total
            norm += r.norm
        if self.reduction == "sum":
            return total, grad
        if want_grad and norm > 0:
            grad *= grad.dtype.type(1.0 / norm)
        return (total / norm if norm > 0 else math.nan), grad

    def __call__(self, f) -> float:
        return self.evaluate(f, want_grad=False)[0]

    def value_and_grad(self, f):
        """``(value, d value / d f)``, the gradient with ``f``'s shape and dtype."""
        return self.evaluate(f)


def _scatter(grad: np.ndarray, index, values: np.ndarray) -> None:
    if isinstance(index, np.ndarray):  # gathered rows may repeat: unbuffered add
        np.add.at(grad, index, values)
    else:
        grad[index] += values


def _axis(name: str, axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} axes")
    return int(axis) % ndim


class TemporalConsistency(_PairwiseSquares):
    """Temporal consistency of a sequence of predictions:
    ``L = sum_t ||f(x_t) - f(x_{t+1})||^2`` over the sequence ``axis`` of ``f`` (every other axis
    -- batch, features -- summed). Gradient ``2 (f_t - f_{t-1}) - 2 (f_{t+1} - f_t)`` (one-sided
    at the ends). ``"mean"`` divides by the number of scalar differences.

    Parameters
    ----------
    axis : int, default 0
    reduction : "sum" or "mean", default "sum"

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> tc = fl.TemporalConsistency(axis=0)
    >>> v, g = tc.value_and_grad(np.array([0.0, 1.0, 3.0]))
    >>> v, g.tolist()
    (5.0, [-2.0, -2.0, 4.0])
    """

    def __init__(self, axis: int = 0, reduction: str = "sum") -> None:
        super().__init__(reduction)
        self.axis = axis

    def __repr__(self) -> str:
        return f"TemporalConsistency(axis={self.axis!r}, reduction={self.reduction!r})"

    def _pairs(self, f):
        if f.ndim == 0:
            raise ValueError("f must have a sequence axis")
        ax = _axis("axis", self.axis, f.ndim)
        before = (slice(None),) * ax
        return [(before + (slice(0, -1),), before + (slice(1, None),), None)]


class GraphConsistency(_PairwiseSquares):
    """Spatial consistency over a neighbour graph:
    ``L = sum_{(i, j) in edges} w_ij ||f_i - f_j||^2`` for node predictions ``f`` (N, ...) --
    nodes on the first axis, features on the others. Each listed edge counts once (list an
    undirected edge once; listing both directions doubles it). The gradient is
    ``2 (D - W) f``, the graph Laplacian applied to ``f``. ``"mean"`` divides by
    ``sum(w) * (features per node)``.

    Parameters
    ----------
    edges : int array (E, 2)
    edge_weight : array (E,) of finite non-negative weights, optional
    reduction : "sum" or "mean", default "sum"

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> gc = fl.GraphConsistency([[0, 1], [1, 2]], edge_weight=[1.0, 0.5])
    >>> v, g = gc.value_and_grad(np.array([0.0, 1.0, 3.0]))
    >>> v, g.tolist()
    (3.0, [-2.0, 0.0, 2.0])
    """

    def __init__(self, edges, edge_weight=None, reduction: str = "sum") -> None:
        super().__init__(reduction)
        e = np.asarray(edges)
        if e.dtype.kind not in "iu" or e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"edges must be an integer array of shape (E, 2); got dtype {e.dtype} "
                             f"shape {e.shape}")
        if e.size and e.min() < 0:
            raise ValueError("edges must hold non-negative node indices")
        self.edges = e.astype(np.int64)
        self.edge_weight = None
        if edge_weight is not None:
            w = real_array(edge_weight, "edge_weight").astype(np.float64)
            if w.shape != (e.shape[0],):
                raise ValueError(f"edge_weight must have one weight per edge, shape "
                                 f"({e.shape[0]},); got {w.shape}")
            if not np.all(np.isfinite(w) & (w >= 0)):
                raise ValueError("edge_weight must be finite and non-negative")
            self.edge_weight = w

    def __repr__(self) -> str:
        return f"GraphConsistency(<{len(self.edges)} edges>, reduction={self.reduction!r})"

    def _pairs(self, f):
        if f.ndim == 0:
            raise ValueError("f must have a node axis (N, ...)")
        if self.edges.size and self.edges.max() >= f.shape[0]:
            raise ValueError(f"edges refer to node {int(self.edges.max())} but f has "
                             f"{f.shape[0]} nodes (shape {f.shape})")
        return [(self.edges[:, 0], self.edges[:, 1], self.edge_weight)]


# Neighbour offsets, each unordered pair once (the first non-zero component positive).
def _half_offsets(ndim: int, diagonal: bool):
    for o in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = [c for c in o if c]
        if nonzero and nonzero[0] > 0 and (diagonal or len(nonzero) == 1):
            yield o


_NEIGHBORHOODS = {2: {4: False, 8: True}, 3: {6: False, 26: True}}


class GridConsistency(_PairwiseSquares):
    """Spatial consistency over a 2-D or 3-D grid:
    ``L = sum over neighbouring cells (i, j) of ||f_i - f_j||^2`` on the last ``ndim`` axes of
    ``f`` (leading axes -- batch, channels -- are summed over). Neighbourhoods: 4 (edge) or 8
    (edge and corner) in 2-D; 6 (face) or 26 (face, edge, corner) in 3-D. Each unordered pair of
    neighbours counts once. ``"mean"`` divides by the number of scalar differences.

    Parameters
    ----------
    ndim : 2 or 3, default 2
    neighbors : 4 or 8 (2-D), 6 or 26 (3-D), default 4 (2-D) / 6 (3-D)
    reduction : "sum" or "mean", default "sum"

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> f = np.array([[0.0, 1.0], [2.0, 3.0]])
    >>> fl.GridConsistency(neighbors=4)(f), fl.GridConsistency(neighbors=8)(f)
    (10.0, 20.0)
    """

    def __init__(self, ndim: int = 2, neighbors: Optional[int] = None,
                 reduction: str = "sum") -> None:
        super().__init__(reduction)
        if ndim not in _NEIGHBORHOODS:
            raise ValueError(f"ndim must be 2 or 3; got {ndim!r}")
        neighbors = min(_NEIGHBORHOODS[ndim]) if neighbors is None else neighbors
        if neighbors not in _NEIGHBORHOODS[ndim]:
            raise ValueError(f"neighbors must be one of {sorted(_NEIGHBORHOODS[ndim])} in {ndim}-D; "
                             f"got {neighbors!r}")
        self.ndim, self.neighbors = ndim, neighbors
        self.offsets = tuple(_half_offsets(ndim, _NEIGHBORHOODS[ndim][neighbors]))

    def __repr__(self) -> str:
        return (f"GridConsistency(ndim={self.ndim}, neighbors={self.neighbors}, "
                f"reduction={self.reduction!r})")

    def _pairs(self, f):
        if f.ndim < self.ndim:
            raise ValueError(f"f must have at least {self.ndim} (grid) axes; got shape {f.shape}")
        lead = (slice(None),) * (f.ndim - self.ndim)
        cut = {1: (slice(0, -1), slice(1, None)), 0: (slice(None), slice(None)),
               -1: (slice(1, None), slice(0, -1))}
        return [(lead + tuple(cut[c][0] for c in o), lead + tuple(cut[c][1] for c in o), None)
                for o in self.offsets]
