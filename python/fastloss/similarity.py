"""Ranking and similarity losses: pairwise distances with their gradients,
contrastive (pairs and batch), triplet margin (explicit triplets and batch mining), center loss,
CosFace (large-margin cosine) and ArcFace.

Conventions
-----------
- Truth first: class labels (or the ``similar`` flags of pairs) come first, embeddings after.
- ``value_and_grad`` returns ``(value, grad)``; ``grad`` is one array for the batch losses (with
  respect to the embeddings) and a tuple, in the documented order, where several inputs are
  differentiable: ``(x1, x2)``, ``(anchor, positive, negative)``, ``(features, centers)``,
  ``(embeddings, weight)``. Each gradient has its input's shape and dtype and is exactly the
  derivative of the value returned under the chosen reduction (for ``"none"``: of the sum of the
  returned values).
- float32 and float64 are computed natively (mixed inputs: the wider type); values are Python
  floats accumulated in double.
- The large matrix products (Gram matrices ``X X^T``, cosines ``x^ W^T`` and the products of the
  backward pass) use NumPy's BLAS; the fused passes (distances from the Gram matrix, mining per
  anchor, margins with the softmax cross-entropy per row, the sparse gradient scatter, the
  normalization backward) are fastloss kernels, deterministic for any thread count. Results are
  bitwise reproducible for a given BLAS and its thread count.
- Distances (``metric``): ``"euclidean"`` ``|x - y|``, ``"sqeuclidean"`` ``|x - y|^2``, both from
  ``|x|^2 + |y|^2 - 2 x.y`` (accumulated in double, clamped at 0; like ``torch.cdist``'s
  matrix-product path, float32 loses relative accuracy for nearly equal rows), and ``"cosine"``
  ``1 - x^.y^`` with ``x^ = x / max(|x|, eps)``. The gradient of the Euclidean distance at 0 is
  taken as 0.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional, Tuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._base import G, FloatArray, KernelResult, Loss, Scalar, param
from ._batch import item_result, item_scale
from ._validate import (
    at_least, between, boolean, choice, integer, non_negative, positive, real_array,
)

__all__ = ["pairwise_distances", "pairwise_distances_backward", "Contrastive", "BatchContrastive",
           "TripletMargin", "BatchTripletMargin", "CenterLoss", "update_centers", "CosFace",
           "ArcFace"]

Triplets = NDArray[np.int64]  # (T, 3) rows of (anchor, positive, negative)
METRICS = dict(_core.metrics)
MINING = dict(_core.mining)


# --------------------------------------------------------------------------------------------------
# Argument checks (all before any work, each naming the argument)
# --------------------------------------------------------------------------------------------------


def _real(x: Any, name: str, ndim: int) -> np.ndarray:
    a = real_array(x, name)
    if a.ndim != ndim:
        what = "(N, D) embeddings" if ndim == 2 else f"{ndim}-D"
        raise ValueError(f"{name} must be {what}; got shape {a.shape}")
    return a


def _common(*arrays: np.ndarray) -> Tuple[np.ndarray, ...]:
    """The arrays as C-contiguous arrays of their common float dtype."""
    dt = np.result_type(*arrays)
    return tuple(np.ascontiguousarray(a, dtype=dt) for a in arrays)


def _labels(y: Any, n: int, name: str = "labels") -> np.ndarray:
    a = y if isinstance(y, np.ndarray) else np.asarray(y)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array; got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one per embedding; got {a.shape}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds values beyond int64")
    return np.require(a, np.int64, "CA")  # C order and aligned


def _class_ids(y: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    a = _labels(y, n, name)
    bad = np.flatnonzero((a < 0) | (a >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {int(a[i])} is not a class index in [0, {num_classes})")
    return a


def _rows_and_table(labels, x, table, x_name: str, table_name: str):
    """Validated (class ids, rows (N, D), class table (C, D)): labels index the table's rows."""
    x, t = _real(x, x_name, 2), _real(table, table_name, 2)
    if x.shape[1] != t.shape[1]:
        raise ValueError(f"{x_name} and {table_name} must have the same dimension D; got {x_name} "
                         f"{x.shape} and {table_name} {t.shape} ({table_name} is (num_classes, D))")
    if t.shape[0] < 1:
        raise ValueError(f"{table_name} must have at least one class row")
    return _class_ids(labels, x.shape[0], t.shape[0]), x, t


def _weights(w: Any, n: int) -> Optional[np.ndarray]:
    if w is None:
        return None
    a = np.ascontiguousarray(real_array(w, "sample_weight"), dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},); got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape; got {na} {a.shape} and "
                         f"{nb} {b.shape}")


_metric = choice(*METRICS)
MARGIN = param(default=1.0, check=non_negative, doc="the margin (>= 0)")
METRIC = param(default="euclidean", check=_metric, doc="'euclidean', 'sqeuclidean' or 'cosine'")
NORM_EPS = param(default=1e-8, check=positive, doc="cosine: rows are divided by max(|x|, eps)")
PAIR_EPS = param(default=1e-6, check=non_negative,
                 doc="distance |x1 - x2 + eps|_p (PyTorch's pairwise_distance)")
P_NORM = param(default=2.0, check=at_least(1, allow_inf=True), doc="degree of the norm (>= 1, or inf)")
SOFT = param(default=False, check=boolean, doc="softplus(d_ap - d_an + margin) instead of the hinge")


# --------------------------------------------------------------------------------------------------
# Pairwise distances and their gradient: the shared engine
# --------------------------------------------------------------------------------------------------


def _rows(x: np.ndarray, metric: str, eps: float):
    """(rows entering the Gram matrix, squared norms of the raw rows)."""
    sqn, xhat = _core.sim_row_norms(x, eps, metric == "cosine")
    return (xhat if metric == "cosine" else x), sqn


def _gram(xr: np.ndarray, yr: np.ndarray) -> np.ndarray:
    """xr yr^T. For self products a copy of the rows keeps NumPy off its symmetric rank-k path
    (OpenBLAS's syrk is about twice slower than its gemm here)."""
    return np.matmul(xr, (yr.copy() if yr is xr else yr).T)


def _distance_matrix(xr, nx, yr, ny, metric: str, self_: bool) -> np.ndarray:
    d = _gram(xr, yr)
    _core.sim_dist_from_gram(d, nx, ny, METRICS[metric], self_)
    return d


def _dense_backward(g, dist, xr, nx, yr, ny, metric: str, eps: float, self_: bool):
    """Gradients (x, y) of sum(g * D) from the upstream gradient g of the distance matrix D."""
    if metric == "euclidean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(dist != 0, g / (2 * dist), 0).astype(xr.dtype)  # NaN distance: NaN
    if self_:
        g = g + g.T
    if metric == "cosine":
        gx = -(g @ yr)
        _core.sim_normalize_backward(gx, xr, nx, eps)
        if self_:
            return gx, None
        gy = -(g.T @ xr)
        _core.sim_normalize_backward(gy, yr, ny, eps)
        return gx, gy
    gx = 2 * (g.sum(1, dtype=np.float64).astype(xr.dtype)[:, None] * xr - g @ yr)
    if self_:
        return gx, None
    gy = 2 * (g.sum(0, dtype=np.float64).astype(xr.dtype)[:, None] * yr - g.T @ xr)
    return gx, gy


def _pair_inputs(x, y, name_y="y"):
    x = _real(x, "x", 2)
    if y is None:
        return _common(x)[0], None
    y = _real(y, name_y, 2)
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"x and {name_y} must have the same number of columns D; got x {x.shape} "
                         f"and {name_y} {y.shape}")
    return _common(x, y)


def pairwise_distances(x, y=None, *, metric: str = "euclidean", eps: float = 1e-8) -> np.ndarray:
    """Distances between the rows of ``x`` (N, D) and of ``y`` (M, D) (default: ``x`` itself).

    ``metric``: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``, rows divided by
    ``max(|x|, eps)``). Returns an (N, M) array of the inputs' dtype. The self-distance matrix has
    an exact zero diagonal for the Euclidean metrics. Matches ``torch.cdist`` (and
    ``1 - torch.nn.functional.cosine_similarity``) to rounding.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0]]))
    array([[0., 5.],
           [5., 0.]])
    """
    _metric("metric", metric)
    eps = positive("eps", eps)
    x, y = _pair_inputs(x, y)
    xr, nx = _rows(x, metric, eps)
    yr, ny = (xr, nx) if y is None else _rows(y, metric, eps)
    return _distance_matrix(xr, nx, yr, ny, metric, y is None)


def pairwise_distances_backward(grad_output, x, y=None, *, metric: str = "euclidean",
                                eps: float = 1e-8, distances=None):
    """Gradient of ``sum(grad_output * pairwise_distances(x, y))``: ``dx`` when ``y`` is None (the
    matrix is a function of ``x`` twice), else ``(dx, dy)``. ``distances`` (optional) is the
    forward result, to skip recomputing it."""
    _metric("metric", metric)
    eps = positive("eps", eps)
    x, y = _pair_inputs(x, y)
    g = _real(grad_output, "grad_output", 2)
    shape = (x.shape[0], (x if y is None else y).shape[0])
    if g.shape != shape:
        raise ValueError(f"grad_output must have the distance matrix's shape {shape}; "
                         f"got {g.shape}")
    g = np.ascontiguousarray(g, dtype=x.dtype)
    xr, nx = _rows(x, metric, eps)
    yr, ny = (xr, nx) if y is None else _rows(y, metric, eps)
    dist = distances
    if metric == "euclidean" and dist is None:
        dist = _distance_matrix(xr, nx, yr, ny, metric, y is None)
    gx, gy = _dense_backward(g, dist, xr, nx, yr, ny, metric, eps, y is None)
    return gx if y is None else (gx, gy)


# --------------------------------------------------------------------------------------------------
# The Loss contract for several inputs
# --------------------------------------------------------------------------------------------------


class _SimilarityLoss(Loss[G]):
    """Losses on several inputs, named in ``arguments`` (by position or by name, like every
    fastloss loss); subclasses define ``_compute(inputs, sample_weight, reduction, want_grad)``
    returning a :class:`KernelResult` whose ``grad`` is the tuple of gradients in ``grads``
    order."""

    family = "similarity"
    hessian = "none"

    def _compute(self, inputs, sample_weight, reduction, want_grad) -> KernelResult:
        raise NotImplementedError

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        r = self._compute(args, sample_weight, reduction, want_grad)
        return r._replace(grad=r.grad[0]) if r.grad is not None and len(r.grad) == 1 else r

    def synthetic(self, n, rng, dtype="float64"):
        """Built-in data for ``fastloss eval --synthetic``: (first input, second input,
        {name: later input})."""
        data = self._synthetic(rng, n, dtype)
        return data[0], data[1], dict(zip(self.arguments[2:], data[2:]))

    @staticmethod
    def _reduce(per_item, weight, reduction):
        """(result without gradients, d value / d per-item loss) for per-item losses."""
        norm, scale = item_scale(weight, per_item.shape, reduction)
        return item_result(per_item, weight, norm, reduction, np.float64), scale


def _hinge_or_soft(x: np.ndarray, margin: float, soft: bool):
    """(loss, derivative) of the triplet term at x = d_ap - d_an."""
    h = x + margin
    if soft:
        return np.logaddexp(0.0, h), 0.5 * (1.0 + np.tanh(0.5 * h))
    return np.maximum(h, 0.0), (h > 0).astype(np.float64)


def _pnorm_grads(a, b, p, eps, dist, coef):
    """coef * d|a - b + eps|_p / da (the gradient for b is its negative)."""
    coef = np.ascontiguousarray(coef, np.float64)
    return _core.sim_paired_distance_grad(a, b, p, eps, dist, coef)


class Contrastive(_SimilarityLoss[Tuple[FloatArray, FloatArray]]):
    """Contrastive loss on explicit pairs (Hadsell, Chopra, LeCun 2006):
    ``l = 1/2 [y d^2 + (1 - y) max(0, margin - d)^2]`` with ``d = |x1 - x2 + eps|_p``.

    Inputs ``(similar, x1, x2)``: ``similar`` (N,) holds 1 for similar pairs and 0 for dissimilar
    ones; ``x1``, ``x2`` are (N, D). Gradients ``(dx1, dx2)`` (``dx2 = -dx1``); ``dl/dd =
    y d - (1 - y) max(0, margin - d)``. The mean is ``sum(w l) / sum(w)``.

    Parameters
    ----------
    margin : float >= 0, default 1.0
        Distance beyond which dissimilar pairs cost nothing.
    p : float >= 1 or inf, default 2.0
        Degree of the norm.
    eps : float >= 0, default 1e-6
        Added to the difference (PyTorch's ``pairwise_distance``).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> loss = fl.Contrastive(margin=2.0, eps=0.0)
    >>> x1, x2 = np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[3.0, 4.0], [1.0, 0.0]])
    >>> loss(np.array([1, 0]), x1, x2)
    6.5
    """

    function_name = "contrastive"
    arguments = ("similar", "x1", "x2")
    grads = ("x1", "x2")
    margin: float = MARGIN
    p: float = P_NORM
    eps: float = PAIR_EPS
    smooth = False

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        similar, x1, x2 = inputs
        x1, x2 = _real(x1, "x1", 2), _real(x2, "x2", 2)
        _same_shape(x1, x2, "x1", "x2")
        y = np.asarray(similar)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"similar must be a numeric or boolean array; got dtype {y.dtype}")
        if y.shape != (x1.shape[0],):
            raise ValueError(f"similar must have shape ({x1.shape[0]},), one flag per pair; "
                             f"got {y.shape}")
        y = y.astype(np.float64)
        if not np.all((y == 0) | (y == 1)):
            i = int(np.flatnonzero((y != 0) & (y != 1))[0])
            raise ValueError(f"similar must hold 0 or 1; similar[{i}] = {y[i]!r}")
        w = _weights(sample_weight, x1.shape[0])
        dt = (x1.dtype, x2.dtype)
        x1, x2 = _common(x1, x2)
        d = _core.sim_paired_distance(x1, x2, self.p, self.eps)
        hinge = np.maximum(self.margin - d, 0.0)
        per = 0.5 * (y * d * d + (1 - y) * hinge * hinge)
        r, scale = self._reduce(per, w, reduction)
        if not want_grad:
            return r
        g = _pnorm_grads(x1, x2, self.p, self.eps, d, scale * (y * d - (1 - y) * hinge))
        return r._replace(grad=(g.astype(dt[0], copy=False), (-g).astype(dt[1], copy=False)))

    def _synthetic(self, rng, n, dtype):
        x1 = rng.standard_normal((n, 16))
        similar = rng.integers(0, 2, n)
        x2 = np.where(similar[:, None] == 1, x1 + 0.3 * rng.standard_normal((n, 16)),
                      rng.standard_normal((n, 16)))
        return similar, x1.astype(dtype), x2.astype(dtype)


def _clustered(rng, n, dtype, dim=16):
    """Synthetic labelled embeddings: about 8 per class around random centres."""
    k = max(2, n // 8)
    labels = rng.integers(0, k, n)
    centres = rng.standard_normal((k, dim))
    return labels, (centres[labels] + 0.7 * rng.standard_normal((n, dim))).astype(dtype)


class _LabelledBatch(_SimilarityLoss[FloatArray]):
    """Batch losses on ``(labels, embeddings)``: labels are any integers (equal = same class)."""

    arguments = ("labels", "embeddings")
    grads = ("embeddings",)

    def _batch(self, labels, embeddings, sample_weight):
        x = _real(embeddings, "embeddings", 2)
        n = x.shape[0]
        y = _labels(labels, n)
        _, ids = np.unique(y, return_inverse=True)
        ids = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
        counts = np.bincount(ids).astype(np.int64) if n else np.zeros(0, np.int64)
        return np.ascontiguousarray(x), ids, counts, _weights(sample_weight, n)

    def _synthetic(self, rng, n, dtype):
        return _clustered(rng, n, dtype)


class BatchContrastive(_LabelledBatch):
    """Contrastive loss over every pair of a labelled batch, with positive and negative margins:
    ``l_ij = 1/2 max(0, d_ij - pos_margin)^2`` for pairs of the same class and
    ``1/2 max(0, neg_margin - d_ij)^2`` otherwise (``pos_margin = 0``: Hadsell et al.).

    Inputs ``(labels, embeddings)``. Pairs ``i < j``, weighted by ``w_i w_j``; the mean divides by
    the summed pair weights (the number of pairs ``N (N - 1) / 2`` without weights); a batch with
    fewer than two rows has the value 0. ``reduction="none"`` returns the pair losses in condensed
    order ``(0, 1), (0, 2), ..., (N-2, N-1)`` (SciPy's ``pdist``). Gradient with respect to the
    embeddings.

    Parameters
    ----------
    pos_margin : float >= 0, default 0.0
        Distance below which similar pairs cost nothing.
    neg_margin : float >= 0, default 1.0
        Distance beyond which dissimilar pairs cost nothing.
    metric : "euclidean", "sqeuclidean" or "cosine", default "euclidean"
    eps : float > 0, default 1e-8
        Cosine metric: rows are divided by ``max(|x|, eps)``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    >>> round(fl.BatchContrastive(neg_margin=2.0)(np.array([0, 0, 1]), x), 6)
    0.166667
    """

    function_name = "batch_contrastive"

    empty_mean = 0.0  # a batch of fewer than two rows has no pair

    pos_margin: float = param(default=0.0, check=non_negative,
                              doc="distance below which similar pairs cost 0")
    neg_margin: float = param(default=1.0, check=non_negative,
                              doc="distance beyond which dissimilar pairs cost 0")
    metric: str = METRIC
    eps: float = NORM_EPS

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        x, ids, _, w = self._batch(*inputs, sample_weight)
        n = x.shape[0]
        xr, sqn = _rows(x, self.metric, self.eps)
        d = _distance_matrix(xr, sqn, xr, sqn, self.metric, True)
        iu = np.triu_indices(n, 1)
        same = ids[iu[0]] == ids[iu[1]]
        dv = d[iu].astype(np.float64)
        pos, neg = np.maximum(dv - self.pos_margin, 0.0), np.maximum(self.neg_margin - dv, 0.0)
        per = np.where(same, 0.5 * pos * pos, 0.5 * neg * neg)
        pw = None if w is None else w[iu[0]] * w[iu[1]]
        r, scale = self._reduce(per, pw, reduction)
        if not want_grad:
            return r
        g = np.zeros((n, n), dtype=x.dtype)
        g[iu] = scale * np.where(same, pos, -neg)
        gx, _ = _dense_backward(g, d, xr, sqn, xr, sqn, self.metric, self.eps, True)
        return r._replace(grad=(gx,))


class TripletMargin(_SimilarityLoss[Tuple[FloatArray, FloatArray, FloatArray]]):
    """Triplet margin loss on explicit triplets (Schroff et al. 2015):
    ``l = max(0, d(a, p) - d(a, n) + margin)`` with ``d(u, v) = |u - v + eps|_p``; exactly
    PyTorch's ``triplet_margin_loss(a, p, n, margin, p, eps, swap)``.

    Inputs ``(anchor, positive, negative)``, each (N, D). ``swap=True`` uses
    ``min(d(a, n), d(p, n))`` as the negative distance (Balntas et al. 2016). ``soft=True`` is the
    smooth variant ``softplus(d(a, p) - d(a, n) + margin)`` (with ``margin=0``, the soft margin of
    Hermans et al. 2017; pytorch-metric-learning's ``smooth_loss``).
    Gradients ``(d anchor, d positive, d negative)``; the hinge's kink takes derivative 0.

    Parameters
    ----------
    margin : float >= 0, default 1.0
    p : float >= 1 or inf, default 2.0
        Degree of the norm.
    eps : float >= 0, default 1e-6
        Added to the differences (PyTorch's ``pairwise_distance``).
    swap : bool, default False
        Use ``min(d(a, n), d(p, n))`` as the negative distance.
    soft : bool, default False
        ``softplus`` instead of the hinge.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[0.0, 1.5]])
    >>> value, (ga, gp, gn) = fl.TripletMargin(margin=1.0, eps=0.0).value_and_grad(a, p, n)
    >>> value, ga.tolist(), gn.tolist()
    (0.5, [[-1.0, 1.0]], [[0.0, -1.0]])
    """

    function_name = "triplet_margin"
    arguments = ("anchor", "positive", "negative")
    grads = arguments
    margin: float = MARGIN
    p: float = P_NORM
    eps: float = PAIR_EPS
    swap: bool = param(default=False, check=boolean, doc="distance swap")
    soft: bool = SOFT

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        arrays = [_real(v, name, 2) for v, name in zip(inputs, self.arguments)]
        _same_shape(arrays[0], arrays[1], "anchor", "positive")
        _same_shape(arrays[0], arrays[2], "anchor", "negative")
        w = _weights(sample_weight, arrays[0].shape[0])
        dts = [v.dtype for v in arrays]
        a, p, n = _common(*arrays)
        dap = _core.sim_paired_distance(a, p, self.p, self.eps)
        dan = _core.sim_paired_distance(a, n, self.p, self.eps)
        swapped = np.zeros(dan.shape, bool)
        if self.swap:
            dpn = _core.sim_paired_distance(p, n, self.p, self.eps)
            swapped = dpn < dan
            dan = np.where(swapped, dpn, dan)
        per, dl = _hinge_or_soft(dap - dan, self.margin, self.soft)
        r, scale = self._reduce(per, w, reduction)
        if not want_grad:
            return r
        c = scale * dl
        g_ap = _pnorm_grads(a, p, self.p, self.eps, dap, c)
        g_an = _pnorm_grads(a, n, self.p, self.eps, dan, np.where(swapped, 0.0, c))
        ga, gp, gn = g_ap - g_an, -g_ap, g_an
        if self.swap and swapped.any():
            g_pn = _pnorm_grads(p, n, self.p, self.eps, dan, np.where(swapped, c, 0.0))
            gp, gn = gp - g_pn, gn + g_pn
        return r._replace(grad=tuple(g.astype(dt, copy=False) for g, dt in zip((ga, gp, gn), dts)))

    def _synthetic(self, rng, n, dtype):
        # negatives about as far as the positives: most triplets violate the margin
        a = rng.standard_normal((n, 16))
        return (a.astype(dtype), (a + 0.5 * rng.standard_normal((n, 16))).astype(dtype),
                (a + 0.6 * rng.standard_normal((n, 16))).astype(dtype))


class BatchTripletMargin(_LabelledBatch):
    """Triplet margin loss on a labelled batch, with the triplets mined from it.

    Inputs ``(labels, embeddings)``; ``d`` is the ``metric`` distance (see
    :func:`pairwise_distances`), ``t = d(a, p) - d(a, n)``, and each triplet costs
    ``max(0, t + margin)`` (``soft=True``: ``softplus(t + margin)``). A positive of anchor ``a``
    is any other row with its label, a negative any row with another label. ``mining``:

    - ``"all"`` (batch-all): every triplet; the mean divides by the number of active triplets
      (``t + margin > 0``; with ``soft``, all of them).
    - ``"hard"`` (batch-hard, Hermans et al. 2017): per anchor, its farthest positive and its
      closest negative; the mean is over anchors.
    - ``"semi-hard"`` (Schroff et al. 2015, FaceNet; TensorFlow Addons' ``triplet_semihard_loss``):
      per anchor-positive pair, the closest negative farther than the positive
      (``d(a, n) > d(a, p)``); where none exists (fallback), the farthest negative. Mean over
      anchor-positive pairs.
    - ``"random"``: per anchor-positive pair, a negative drawn uniformly from the anchor's negatives
      by a counter-based generator: ``h = splitmix64(splitmix64(seed + splitmix64(a)) + p)`` picks
      negative number ``floor(h * count / 2^64)`` in index order; reproducible for a ``seed``,
      independent of the thread count. Mean over anchor-positive pairs.

    Ties are broken by the lowest index. Anchors without a positive or without a negative have no
    triplet; a batch without any triplet (a single class, or singletons only) has the value 0 and
    a zero gradient. ``sample_weight`` weights each triplet by its anchor's weight; the mean
    divides by the summed weights of the counted triplets. ``reduction="none"`` returns, per
    anchor, the (weighted) sum of its triplet losses. The gradient is with respect to the
    embeddings (the mined triplets held fixed; hinge kinks take derivative 0).

    Streamed by ``fastloss.GradientAccumulator``, the triplets are mined within each
    micro-batch.

    ``return_triplets=True`` (``__call__`` and ``value_and_grad``) appends the (T, 3) int64 array of
    (anchor, positive, negative) row indices: the mined triplets, or for ``"all"`` the active ones.

    Parameters
    ----------
    margin : float >= 0, default 1.0
    mining : "all", "hard", "semi-hard" or "random", default "hard"
    metric : "euclidean", "sqeuclidean" or "cosine", default "euclidean"
    soft : bool, default False
        ``softplus`` instead of the hinge.
    seed : int in [0, 2**64), default 0
        Seed of ``"random"`` mining.
    eps : float > 0, default 1e-8
        Cosine metric: rows are divided by ``max(|x|, eps)``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.array([[0.0], [1.0], [3.0], [5.0]])
    >>> loss = fl.BatchTripletMargin(margin=1.0, mining="hard")
    >>> loss(np.array([0, 0, 1, 1]), x, return_triplets=True)
    (0.25, array([[0, 1, 2],
           [1, 0, 2],
           [2, 3, 1],
           [3, 2, 1]]))
    """

    function_name = "batch_triplet_margin"
    margin: float = MARGIN
    mining: str = param(default="hard", check=choice(*MINING),
                        doc="'all', 'hard', 'semi-hard' or 'random'")
    metric: str = METRIC
    soft: bool = SOFT
    seed: int = param(default=0, check=integer(0, 2**64), doc="seed of random mining")
    eps: float = NORM_EPS

    empty_mean = 0.0  # a batch without any triplet

    @overload  # type: ignore[override]
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Scalar = ..., out: None = ..., return_triplets: Literal[False] = ...,
                 **inputs: ArrayLike) -> float: ...

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Literal["none"], out: Optional[FloatArray] = ...,
                 return_triplets: Literal[False] = ..., **inputs: ArrayLike) -> FloatArray: ...

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Scalar = ..., out: None = ..., return_triplets: Literal[True],
                 **inputs: ArrayLike) -> Tuple[float, Triplets]: ...

    def __call__(self, *args: Any, sample_weight: Any = None, reduction: Optional[str] = None,
                 out: Any = None, return_triplets: bool = False, **inputs: Any) -> Any:
        result, reduction = self._call(args, inputs, sample_weight, reduction, False, False, out)
        value = self._value(result, reduction)
        return (value, result.extra()) if return_triplets else value

    @overload  # type: ignore[override]
    def value_and_grad(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                       reduction: Scalar = ..., out: None = ...,
                       grad_out: Optional[FloatArray] = ..., return_triplets: Literal[False] = ...,
                       **inputs: ArrayLike) -> Tuple[float, FloatArray]: ...

    @overload
    def value_and_grad(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                       reduction: Scalar = ..., out: None = ...,
                       grad_out: Optional[FloatArray] = ..., return_triplets: Literal[True],
                       **inputs: ArrayLike) -> Tuple[float, FloatArray, Triplets]: ...

    def value_and_grad(self, *args: Any, sample_weight: Any = None,
                       reduction: Optional[str] = None, out: Any = None, grad_out: Any = None,
                       return_triplets: bool = False, **inputs: Any) -> Any:
        result, reduction = self._call(args, inputs, sample_weight, reduction, True, False, out,
                                       grad_out)
        value = self._value(result, reduction)
        return (value, result.grad, result.extra()) if return_triplets else (value, result.grad)

    def mine(self, labels, embeddings) -> np.ndarray:
        """The (T, 3) triplets the loss uses (see the class documentation)."""
        return self._evaluate((labels, embeddings), {}, None, "sum", False, False).extra()

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        x, ids, counts, w = self._batch(*inputs, sample_weight)
        n = x.shape[0]
        metric = METRICS[self.metric]
        xr, sqn = _rows(x, self.metric, self.eps)
        gram = _gram(xr, xr)
        w_all = np.ones(n) if w is None else w
        if self.mining == "all":
            return self._batch_all(x, xr, sqn, gram, ids, counts, w_all, reduction, want_grad)
        cnt = counts[ids] if n else np.zeros(0, np.int64)
        npos, has_neg = cnt - 1, cnt < n
        per_anchor = ((npos > 0) & has_neg).astype(np.int64) if self.mining == "hard" else \
            np.where(has_neg, npos, 0)
        offset = np.concatenate([[0], np.cumsum(per_anchor)]).astype(np.int64)
        a, p, ng, dap, dan = _core.sim_mine(gram, sqn, ids, counts, metric, MINING[self.mining],
                                            self.seed, offset, self.margin, self.soft)
        del gram
        per, dl = _hinge_or_soft(dap - dan, self.margin, self.soft)
        wt = w_all[a]
        norm, scale = item_scale(wt, wt.shape, reduction)
        r = KernelResult(float(np.sum(wt * per)), norm,
                         np.bincount(a, weights=wt * per, minlength=n) if reduction == "none"
                         else None, None, None, lambda: np.stack([a, p, ng], axis=1))
        if not want_grad:
            return r
        c = scale * dl
        grad = _core.sim_pair_grad(xr, sqn, metric, self.eps, np.concatenate([a, a]),
                                   np.concatenate([p, ng]), np.concatenate([dap, dan]),
                                   np.concatenate([c, -c]))
        return r._replace(grad=(grad,))

    def _batch_all(self, x, xr, sqn, gram, ids, counts, w, reduction, want_grad):
        n = x.shape[0]
        metric = METRICS[self.metric]
        loss, count, coef = _core.sim_mine(gram, sqn, ids, counts, metric, MINING["all"], self.seed,
                                           None, self.margin, self.soft)
        norm = float(np.sum(w * count))
        scale = (w / norm if norm > 0 else 0 * w) if reduction == "mean" else w
        d = gram
        _core.sim_dist_from_gram(d, sqn, sqn, metric, True)

        def triplets():
            rows = []
            for a in range(n):
                pos = np.flatnonzero((ids == ids[a]) & (np.arange(n) != a))
                neg = np.flatnonzero(ids != ids[a])
                t = d[a, pos].astype(np.float64)[:, None] - d[a, neg].astype(np.float64)[None, :]
                keep = np.ones(t.shape, bool) if self.soft else (t + self.margin > 0) | np.isnan(t)
                pi, ni = np.nonzero(keep)
                rows.append(np.stack([np.full(pi.size, a), pos[pi], neg[ni]], axis=1))
            return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)

        r = KernelResult(float(np.sum(w * loss)), norm, w * loss if reduction == "none" else None,
                         None, None, triplets)
        if not want_grad:
            return r
        g = (coef * scale[:, None]).astype(x.dtype)
        gx, _ = _dense_backward(g, d, xr, sqn, xr, sqn, self.metric, self.eps, True)
        return r._replace(grad=(gx,))


class CenterLoss(_SimilarityLoss[Tuple[FloatArray, FloatArray]]):
    """Center loss (Wen et al. 2016): ``l_i = 1/2 |x_i - c_{y_i}|^2``.

    Inputs ``(labels, features, centers)``: labels (N,) are class indices into ``centers`` (C, D);
    features (N, D). Gradients ``(d features, d centers)``: ``w_i s (x_i - c_{y_i})`` and
    ``-sum_{i: y_i = j} w_i s (x_i - c_j)`` with ``s = 1/sum(w)`` for the mean (the paper's sum:
    ``reduction="sum"``). The paper updates the centers with its own rule instead of their
    gradient: :func:`update_centers`. The paper's combined loss is ``CE + lambda * Center``;
    see ``docs/similarity.md``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> features, centers = np.array([[1.0, 0.0], [0.0, 2.0]]), np.zeros((2, 2))
    >>> fl.CenterLoss()(np.array([0, 1]), features, centers)
    1.25
    """

    function_name = "center_loss"
    arguments = ("labels", "features", "centers")
    grads = ("features", "centers")
    convex, smooth = True, True

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        y, x, c = _rows_and_table(*inputs, "features", "centers")
        w = _weights(sample_weight, x.shape[0])
        dts = (x.dtype, c.dtype)
        x, c = _common(x, c)
        diff = x - c[y]
        per = 0.5 * np.einsum("ij,ij->i", diff, diff, dtype=np.float64)
        r, scale = self._reduce(per, w, reduction)
        if not want_grad:
            return r
        gx = diff * np.asarray(scale, dtype=x.dtype)[:, None]
        gc = -_segment_sum(gx, y, c.shape[0])
        return r._replace(grad=(gx.astype(dts[0], copy=False), gc.astype(dts[1], copy=False)))

    def _synthetic(self, rng, n, dtype):
        labels, x = _clustered(rng, n, dtype)
        centers = np.zeros((int(labels.max()) + 1, x.shape[1]), dtype)
        return labels, x, centers


def _segment_sum(v: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Rows of v summed per label (in row order: deterministic), shape (k, D)."""
    out = np.zeros((k, v.shape[1]), dtype=v.dtype)
    if v.shape[0] == 0:
        return out
    order = np.argsort(labels, kind="stable")
    sl = labels[order]
    starts = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
    out[sl[starts]] = np.add.reduceat(v[order], starts, axis=0)
    return out


def update_centers(labels, features, centers, alpha: float = 0.5, *, out=None) -> np.ndarray:
    """The center update of Wen et al. 2016 (their eq. 4):
    ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``, ``n_j`` the count of class
    ``j`` in the batch. Returns new centers, or writes them into ``out`` (``out=centers`` updates
    in place). ``alpha`` in [0, 1]."""
    alpha = between(0, 1)("alpha", alpha)
    y, x, c = _rows_and_table(labels, features, centers, "features", "centers")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.shape != c.shape or out.dtype != c.dtype:
            raise ValueError(f"out must be an ndarray of shape {c.shape} and dtype {c.dtype}")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
    k = c.shape[0]
    n_j = np.bincount(y, minlength=k).astype(np.float64)
    xs = _segment_sum(x.astype(np.float64), y, k)
    delta = (n_j[:, None] * c - xs) / (1.0 + n_j[:, None])
    new = (c - alpha * delta).astype(c.dtype)
    if out is None:
        return new
    out[...] = new
    return out


class _MarginSoftmax(_SimilarityLoss[Tuple[FloatArray, FloatArray]]):
    """Shared body of CosFace and ArcFace (see their docs)."""

    arguments = ("labels", "embeddings", "weight")
    grads = ("embeddings", "weight")
    _arc = False
    eps = 1e-12  # row normalization x / max(|x|, eps) (PyTorch's F.normalize)

    def _compute(self, inputs, sample_weight, reduction, want_grad):
        y, x, W = _rows_and_table(*inputs, "embeddings", "weight")
        w = _weights(sample_weight, x.shape[0])
        dts = (x.dtype, W.dtype)
        x, W = _common(x, W)
        sqx, xh = _core.sim_row_norms(x, self.eps, True)
        sqw, wh = _core.sim_row_norms(W, self.eps, True)
        cos = np.matmul(xh, wh.T)
        norm = float(np.sum(w)) if w is not None else float(x.shape[0])
        grad_scale = (1.0 / norm if norm > 0 else 0.0) if reduction == "mean" else 1.0
        total, rows = _core.sim_margin_softmax(cos, y, self.scale, self.margin, self._arc,
                                               getattr(self, "easy_margin", False), w, grad_scale,
                                               want_grad, reduction == "none")
        r = KernelResult(total, norm, rows if reduction == "none" else None, None, None)
        if not want_grad:
            return r
        gx = np.matmul(cos, wh)
        gw = np.matmul(cos.T, xh)
        _core.sim_normalize_backward(gx, xh, sqx, self.eps)
        _core.sim_normalize_backward(gw, wh, sqw, self.eps)
        return r._replace(grad=(gx.astype(dts[0], copy=False), gw.astype(dts[1], copy=False)))

    def _synthetic(self, rng, n, dtype, classes=10):
        W = rng.standard_normal((classes, 32))
        labels = rng.integers(0, classes, n)
        return labels, (W[labels] + rng.standard_normal((n, 32))).astype(dtype), W.astype(dtype)


SCALE = param(default=64.0, check=positive, doc="the scale s of the logits")


class CosFace(_MarginSoftmax):
    """Large-margin cosine loss (CosFace / LMCL, Wang et al. 2018):
    ``l = -log(exp(s (cos t_y - m)) / (exp(s (cos t_y - m)) + sum_{j != y} exp(s cos t_j)))``.

    Inputs ``(labels, embeddings, weight)``: labels (N,) class indices, embeddings (N, D), class
    weights ``weight`` (C, D); both are normalized inside the loss (rows divided by
    ``max(|row|, 1e-12)``) and ``cos t_j`` is the cosine between embedding and class row ``j``.
    Gradients ``(d embeddings, d weight)``, through the normalization. Mean ``sum(w l)/sum(w)``.
    Matches pytorch-metric-learning's ``CosFaceLoss`` (its weight is our ``weight.T``).

    Parameters
    ----------
    scale : float > 0, default 64.0
        The scale ``s`` of the logits.
    margin : float >= 0, default 0.35
        The cosine margin ``m``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> weight, emb = np.eye(2), np.array([[2.0, 0.0], [0.0, 3.0]])
    >>> round(fl.CosFace(scale=4.0, margin=0.35)(np.array([0, 1]), emb, weight), 6)
    0.071645
    """

    function_name = "cosface"
    scale: float = SCALE
    margin: float = param(default=0.35, check=non_negative, doc="the cosine margin m")
    smooth = True


class ArcFace(_MarginSoftmax):
    """Additive angular margin loss (ArcFace, Deng et al. 2019): CosFace's form with the target
    logit ``s cos(t_y + m)``.

    Where ``t_y + m > pi`` (``cos t_y <= cos(pi - m)``) the target logit is
    ``s (cos t_y - m sin(pi - m))`` instead (InsightFace's fallback, which keeps it decreasing in
    the angle); with ``easy_margin=True`` the margin applies only where ``cos t_y > 0`` (the logit
    is ``s cos t_y`` elsewhere). At ``|cos t_y| = 1`` the derivative of ``sin t_y`` is taken as 0.
    Inputs, normalization and gradients as :class:`CosFace`. Without the fallback regime, matches
    pytorch-metric-learning's ``ArcFaceLoss`` (its margin is in degrees).

    Parameters
    ----------
    scale : float > 0, default 64.0
        The scale ``s`` of the logits.
    margin : float in [0, pi), default 0.5
        The angular margin ``m`` (radians).
    easy_margin : bool, default False
        Apply the margin only where ``cos t_y > 0``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> weight, emb = np.eye(2), np.array([[2.0, 0.0], [0.0, 3.0]])
    >>> round(fl.ArcFace(scale=4.0, margin=0.5)(np.array([0, 1]), emb, weight), 6)
    0.029449
    """

    function_name = "arcface"
    scale: float = SCALE
    margin: float = param(default=0.5, check=between(0, math.pi, "left"),
                          doc="the angular margin m (radians)")
    easy_margin: bool = param(default=False, check=boolean,
                              doc="apply the margin only where cos > 0")
    _arc = True
