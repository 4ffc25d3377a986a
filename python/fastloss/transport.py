"""Optimal transport losses: the exact 1-D Wasserstein distance, entropic
optimal transport (log-domain Sinkhorn) and the sliced Wasserstein distance between weighted
empirical distributions, with gradients with respect to the sample positions of the prediction.

Distributions are given by their samples (positions) and optional non-negative weights, which are
normalized to sum 1 (a zero total is an error). The WGAN critic objective, the dual form
``sup_f E[f(real)] - E[f(fake)]``, is :func:`fastloss.wasserstein_critic` (module adversarial).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _core
from ._runtime import get_num_threads
from ._base import FloatArray, KernelResult, Loss, param
from ._validate import at_least, integer, optional, positive, real_array

__all__ = ["Wasserstein1D", "SlicedWasserstein", "SinkhornLoss", "SinkhornResult", "sinkhorn",
           "sinkhorn_loss", "wasserstein_1d", "sliced_wasserstein", "random_projections"]


# ----------------------------------------------------------------------------------------------
# argument checks (all before any work)
# ----------------------------------------------------------------------------------------------


def _compute_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 when every array is float32, else float64."""
    return np.dtype(np.float32) if all(a.dtype == np.float32 for a in arrays) else np.dtype(np.float64)


def _weights(w: Any, shape: tuple, name: str) -> Optional[np.ndarray]:
    """Non-negative finite weights of the samples along the last axis of ``shape`` (the shape of
    the values, or its last axis alone), each row summing to a positive number; float64, C order."""
    if w is None:
        return None
    a = real_array(w, name).astype(np.float64)
    if a.shape not in (shape, shape[-1:]):
        raise ValueError(f"{name} must have the shape of its samples {shape} or {shape[-1:]}; "
                         f"got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    if np.any(a < 0):
        raise ValueError(f"{name} must be non-negative; got min {a.min()!r}")
    if np.any(a.sum(axis=-1) <= 0):
        raise ValueError(f"{name} must sum to a positive number (per distribution)")
    return np.ascontiguousarray(a)


def _samples(x: Any, name: str, ndim: tuple, axis: int) -> np.ndarray:
    """``x`` as a real array of ``ndim`` dimensions whose samples run along ``axis`` (non-empty)."""
    a = real_array(x, name)
    if a.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions; got shape {a.shape}")
    if a.shape[axis] == 0:
        raise ValueError(f"{name} is an empty distribution (shape {a.shape})")
    return a


# ----------------------------------------------------------------------------------------------
# exact 1-D
# ----------------------------------------------------------------------------------------------


_SORTER: Optional[ThreadPoolExecutor] = None


def _forget_sorter() -> None:
    # A forked child inherits the executor but not its thread: work submitted there would wait
    # forever. The child makes its own on first use.
    global _SORTER
    _SORTER = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sorter)


def _sorter() -> ThreadPoolExecutor:
    global _SORTER
    if _SORTER is None:
        _SORTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastloss-sort")
    return _SORTER


def _w1d_rows(u: np.ndarray, v: np.ndarray, uw, vw, p: float, grad_scale: float, want_grad: bool,
              want_hess: bool):
    """W_p^p of each row pair of u (rows, n) and v (rows, m), same float dtype, C order; the
    derivatives w.r.t. v scaled by grad_scale. Sorting is NumPy's (SIMD) sort/argsort; the merge
    of the quantile functions and the gradient are the C++ kernel's."""
    need_v_order = want_grad or want_hess or vw is not None

    def sort_u():
        return (None, np.sort(u, axis=-1)) if uw is None else (np.argsort(u, axis=-1), u)

    # NumPy sorts without the GIL: u's sort runs beside v's when threads are allowed.
    pending = _sorter().submit(sort_u) if get_num_threads() > 1 and u.size + v.size >= 1 << 16 else None
    v_order = np.argsort(v, axis=-1) if need_v_order else None
    v_in = v if v_order is not None else np.sort(v, axis=-1)
    u_order, u_in = pending.result() if pending is not None else sort_u()
    rows = u.shape[0]

    def inv_sum(w):
        return None if w is None else np.broadcast_to(1.0 / w.sum(axis=-1), (rows,)).copy()

    return _core.wasserstein_1d(u_in, v_in, u_order, v_order, uw, vw, inv_sum(uw), inv_sum(vw),
                                float(p), float(grad_scale), want_grad, want_hess)


class _Distributions(Loss[FloatArray]):
    """Losses between two empirical distributions (samples of y_true and of y_pred)."""

    family = "distribution"

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """CLI data: n samples of N(0, s^2) and of N(0.5 s, (1.2 s)^2), s = 0.5 (costs of order
        one, where Sinkhorn converges at its default epsilon); 1-D for the exact 1-D loss, else
        (n, 2) point clouds."""
        shape = (n,) if isinstance(self, Wasserstein1D) else (n, 2)
        return ((0.5 * rng.standard_normal(shape)).astype(dtype),
                (0.25 + 0.6 * rng.standard_normal(shape)).astype(dtype), {})

    chunkable = False  # one value per pair of whole distributions: chunks do not add up
    optional_inputs = ("true_weight",)  # the weights of y_true's samples


class Wasserstein1D(_Distributions):
    """Exact 1-D Wasserstein loss ``W_p^p`` between the empirical distributions of ``y_true``
    (n samples) and ``y_pred`` (m samples), optionally weighted.

    ``W_p^p = int_0^1 |F_true^-1(t) - F_pred^-1(t)|^p dt`` (the optimal transport cost for the cost
    ``|x - y|^p``; the distance is its p-th root). For p = 1 this is SciPy's
    ``wasserstein_distance``; for any p it is POT's ``wasserstein_1d``. Both samples are sorted
    (NumPy) and the two quantile functions merged in one pass (C++), which also yields the gradient
    w.r.t. the positions ``y_pred``: a segment of mass w pairing ``y_true[i]`` with ``y_pred[j]``
    adds ``w p |d|^(p-1) sign(d)``, ``d = y_pred[j] - y_true[i]``. The Hessian diagonal is the a.e.
    value ``w p (p-1) |d|^(p-2)`` summed the same way (the order of the samples held fixed; 0 for
    p = 1, ``2 * weight_j`` for p = 2).

    Shapes: 1-D arrays are one distribution each; 2-D arrays ``(B, n)`` and ``(B, m)`` are B
    independent pairs (one per row), reduced over rows by ``reduction`` (``"none"`` gives the B
    values). ``true_weight`` / ``sample_weight`` weight the samples of ``y_true`` / ``y_pred``
    (shape of the samples or of one row); they are normalized per row.

    Parameters
    ----------
    p : float >= 1, default 1

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.Wasserstein1D()(np.array([0.0, 1.0, 3.0]), np.array([5.0, 6.0, 8.0]))
    5.0
    >>> value, grad = fl.Wasserstein1D(p=2).value_and_grad(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    >>> value, grad.tolist()
    (0.0, [0.0, 0.0])
    """

    function_name = "wasserstein_1d"
    p: float = param(default=1.0, check=at_least(1), doc="exponent of the ground cost |x - y|^p")
    hessian = "a.e."

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             true_weight=None):
        return self._w1d(*args, sample_weight, true_weight, reduction, want_grad, want_hess)

    def _w1d(self, y_true, y_pred, sample_weight, true_weight, reduction, want_grad, want_hess):
        u = _samples(y_true, "y_true", (1, 2), -1)
        v = _samples(y_pred, "y_pred", (1, 2), -1)
        if u.ndim != v.ndim or u.shape[:-1] != v.shape[:-1]:
            raise ValueError(f"y_true and y_pred must both be 1-D, or 2-D with the same number of "
                             f"rows; got y_true {u.shape} and y_pred {v.shape}")
        uw = _weights(true_weight, u.shape, "true_weight")
        vw = _weights(sample_weight, v.shape, "sample_weight")
        dt = _compute_dtype(u, v)
        out_dtype = v.dtype
        rows = 1 if u.ndim == 1 else u.shape[0]
        u2 = np.ascontiguousarray(u.reshape(rows, -1), dtype=dt)
        v2 = np.ascontiguousarray(v.reshape(rows, -1), dtype=dt)
        # the mean is over rows (independent pairs of distributions)
        scale = 1.0 / rows if reduction == "mean" else 1.0
        values, grad, hess = _w1d_rows(u2, v2, uw, vw, self.p, scale, want_grad, want_hess)
        grad = None if grad is None else grad.reshape(v.shape).astype(out_dtype, copy=False)
        hess = None if hess is None else hess.reshape(v.shape).astype(out_dtype, copy=False)
        per_row = values if u.ndim == 2 else values.reshape(())
        return KernelResult(float(values.sum()), float(rows), per_row if reduction == "none"
                            else None, grad, hess)


wasserstein_1d = Wasserstein1D.functional


# ----------------------------------------------------------------------------------------------
# sliced
# ----------------------------------------------------------------------------------------------


def random_projections(d: int, n_projections: int, seed: Optional[int] = 0) -> np.ndarray:
    """``(d, n_projections)`` directions uniform on the unit sphere (normalized Gaussian columns,
    ``numpy.random.default_rng(seed)``): the layout of POT's ``projections`` argument."""
    theta = np.random.default_rng(seed).standard_normal((d, n_projections))
    return theta / np.linalg.norm(theta, axis=0, keepdims=True)


class SlicedWasserstein(_Distributions):
    """Sliced Wasserstein distance between point clouds ``y_true`` (n, d) and ``y_pred`` (m, d):
    ``SW_p = (mean_l W_p^p(y_true @ theta_l, y_pred @ theta_l))^(1/p)`` over unit directions
    ``theta_l`` — POT's ``sliced_wasserstein_distance`` (same definition and projections layout).

    The directions are drawn from ``seed`` (:func:`random_projections`), or given as a
    ``(d, n_projections)`` array through ``projections=`` at call time (e.g. POT's, to compare).
    Each projection is an exact 1-D problem (:class:`Wasserstein1D`, all solved in one parallel
    kernel call); the gradient w.r.t. ``y_pred`` is ``(1/p) SW^(1-p) mean_l g_l theta_l^T`` (zero
    where ``SW = 0``). Weights as in :class:`Wasserstein1D` (one per point). No Hessian.

    Parameters
    ----------
    n_projections : int >= 1, default 50
    p : float >= 1, default 2
    seed : int or None, default 0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.zeros((4, 3))
    >>> fl.SlicedWasserstein(n_projections=20)(x, x + [3.0, 0.0, 4.0], reduction="sum") > 0
    True
    """

    function_name = "sliced_wasserstein"
    n_projections: int = param(default=50, check=integer(1), doc="number of random directions")
    p: float = param(default=2.0, check=at_least(1), doc="exponent of the ground cost")
    seed: Optional[int] = param(default=0, check=optional(integer()),
                                doc="seed of the directions (numpy default_rng)")
    hessian = "none"

    optional_inputs = ("true_weight", "projections")

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             true_weight=None, projections=None):
        value, grad = self._sliced(*args, sample_weight, true_weight, projections, want_grad)
        # one distance between two point clouds, whatever the reduction
        return KernelResult(value, 1.0, np.asarray(value), grad, None)

    def _sliced(self, y_true, y_pred, sample_weight, true_weight, projections, want_grad):
        x = _samples(y_true, "y_true", (2,), 0)
        y = _samples(y_pred, "y_pred", (2,), 0)
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"y_true and y_pred must have the same dimension (columns); got "
                             f"y_true {x.shape} and y_pred {y.shape}")
        d = x.shape[1]
        if projections is None:
            theta = random_projections(d, self.n_projections, self.seed)
        else:
            theta = real_array(projections, "projections").astype(np.float64)
            if theta.ndim != 2 or theta.shape[0] != d or theta.shape[1] < 1:
                raise ValueError(f"projections must be (d, n_projections) = ({d}, L); got {theta.shape}")
        uw = _weights(true_weight, x.shape[:1], "true_weight")
        vw = _weights(sample_weight, y.shape[:1], "sample_weight")
        dt = _compute_dtype(x, y)
        out_dtype = y.dtype
        th = theta.astype(dt)
        L = th.shape[1]
        xp = np.ascontiguousarray(th.T @ x.astype(dt, copy=False).T)  # (L, n)
        yp = np.ascontiguousarray(th.T @ y.astype(dt, copy=False).T)  # (L, m)
        values, g, _ = _w1d_rows(xp, yp, uw, vw, self.p, 1.0 / L, want_grad, False)
        mean = float(values.sum()) / L
        value = mean ** (1.0 / self.p)
        if not want_grad:
            return value, None
        coef = 0.0 if mean == 0.0 else mean ** (1.0 / self.p - 1.0) / self.p
        grad = (g.T @ th.T) * dt.type(coef)
        return value, grad.astype(out_dtype, copy=False)


sliced_wasserstein = SlicedWasserstein.functional


# ----------------------------------------------------------------------------------------------
# Sinkhorn
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkhornResult:
    """What :func:`sinkhorn` returns.

    ``cost``: the transport cost ``<P, C>`` of the plan (POT's ``sinkhorn2``); ``objective``: the
    entropic objective ``OT_eps = <P, C> + eps KL(P | a b^T)`` at the solution, computed as the
    dual value ``<a, f> + <b, g>``; ``plan`` (n, m) when requested; ``grad_x``, ``grad_y``: the
    gradients of ``objective`` w.r.t. the point positions (envelope theorem:
    ``d OT_eps / d C = P``), with point clouds and ``grad=True``; ``f``, ``g``: the dual potentials;
    ``n_iter``, ``error`` (``||P^T 1 - b||_2`` of the returned plan, whose rows are exact),
    ``converged`` (error < tol).
    """

    cost: float
    objective: float
    plan: Optional[np.ndarray]
    grad_x: Optional[np.ndarray]
    grad_y: Optional[np.ndarray]
    f: np.ndarray
    g: np.ndarray
    n_iter: int
    error: float
    converged: bool


def _marginal(w, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    a = _weights(w, (n,), name)
    if a.ndim != 1:
        raise ValueError(f"{name} must have one weight per point ({n}); got shape {a.shape}")
    return a / a.sum()


def _default_tol(dtype) -> float:
    return 1e-9 if np.dtype(dtype) == np.float64 else 1e-5


def sinkhorn(x=None, y=None, *, cost=None, a=None, b=None, epsilon, max_iter=1000, tol=None,
             return_plan=False, grad=False) -> SinkhornResult:
    """Entropic optimal transport between weighted point clouds by log-domain Sinkhorn.

    Give either the point clouds ``x`` (n, d) and ``y`` (m, d) (1-D: d = 1), whose cost is the
    squared Euclidean distance ``C_ij = |x_i - y_j|^2``, or a cost matrix ``cost`` (n, m). ``a``
    (n,) and ``b`` (m,) are the weights (uniform by default; normalized to sum 1).

    Log-domain stabilized Sinkhorn (Schmitzer 2019): scaling iterations (two matrix-vector
    products, no exp) run on the plan of the current log-domain potentials, and are absorbed into
    the potentials by an exact log-sum-exp update (our vector exp/log) whenever a scaling leaves
    [1e-50, 1e50] (float32: [1e-8, 1e8]) or a column underflows. The kernel ``exp(-C/eps)`` is
    never formed, so nothing under- or overflows for any ``epsilon``. The iteration stops when
    the marginal error ``||P^T 1 - b||_2`` of the row-exact plan falls below ``tol`` (POT's
    criterion, checked every iteration at no extra cost) or after ``max_iter`` iterations; then it
    emits a ``RuntimeWarning`` carrying the error reached (never silent) and returns the last plan.
    ``tol`` defaults to 1e-9 for float64 and 1e-5 for float32 inputs (float32 costs and plans
    cannot resolve marginals much below ~1e-6; with ``C/eps`` large, use float64).
    Deterministic for any number of threads. Memory: the cost matrix and a workspace of its size
    (and its transpose with ``grad=True``).

    Returns a :class:`SinkhornResult`.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.array([[0.0], [1.0]]); y = np.array([[0.0], [1.0]])
    >>> r = fl.sinkhorn(x, y, epsilon=0.01, return_plan=True)
    >>> r.converged, np.round(r.plan, 3).tolist()
    (True, [[0.5, 0.0], [0.0, 0.5]])
    """
    eps = positive("epsilon", epsilon)
    max_iter = integer(1)("max_iter", max_iter)
    if cost is not None:
        if x is not None or y is not None:
            raise ValueError("give either the point clouds x and y or the cost matrix, not both")
        C = real_array(cost, "cost")
        if C.ndim != 2 or 0 in C.shape:
            raise ValueError(f"cost must be a non-empty (n, m) matrix; got shape {C.shape}")
        if not np.all(np.isfinite(C)):
            raise ValueError("cost must be finite")
        dt = _compute_dtype(C)
        n, m = C.shape
        C = np.ascontiguousarray(C, dtype=dt)
        xs = ys = None
    else:
        if x is None or y is None:
            raise ValueError("give the point clouds x and y, or cost=")
        xs, ys = (_samples(v, name, (1, 2), 0) for v, name in ((x, "x"), (y, "y")))
        xs = xs.reshape(xs.shape[0], -1) if xs.ndim == 2 else xs[:, None]
        ys = ys.reshape(ys.shape[0], -1) if ys.ndim == 2 else ys[:, None]
        if xs.shape[1] != ys.shape[1]:
            raise ValueError(f"x and y must have the same dimension; got x {np.shape(x)} and y {np.shape(y)}")
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ValueError("x and y must be finite")
        dt = _compute_dtype(xs, ys)
        n, m = xs.shape[0], ys.shape[0]
        xs, ys = np.ascontiguousarray(xs, dtype=dt), np.ascontiguousarray(ys, dtype=dt)
        C = None
    tol = _default_tol(dt) if tol is None else positive("tol", tol)
    aa, bb = _marginal(a, n, "a"), _marginal(b, m, "b")
    out = _core.sinkhorn(C, xs, ys, aa, bb, eps, max_iter, tol, bool(return_plan),
                         bool(grad) and C is None)
    transport_cost, objective, f, g, n_iter, error, plan, gx, gy = out
    converged = bool(error < tol)
    if not converged:
        warnings.warn(f"Sinkhorn did not converge: marginal error {error:.3g} >= tol {tol:.3g} "
                      f"after {n_iter} iterations (epsilon={eps:g}); increase max_iter or epsilon",
                      RuntimeWarning, stacklevel=2)
    if gx is not None:
        gx = gx.reshape(np.shape(x)).astype(_out_dtype(x), copy=False)
        gy = gy.reshape(np.shape(y)).astype(_out_dtype(y), copy=False)
    return SinkhornResult(float(transport_cost), float(objective), plan, gx, gy, f, g, int(n_iter),
                          float(error), converged)


def _out_dtype(a) -> np.dtype:
    """The gradient's dtype for input ``a``: the dtype it is computed in (float16: float32)."""
    return real_array(np.asarray(a)[:0], "x").dtype


class SinkhornLoss(_Distributions):
    """Entropic optimal transport loss between point clouds ``y_true`` (n, d) and ``y_pred``
    (m, d) under the squared Euclidean cost: the value is the entropic objective ``OT_eps`` of
    :func:`sinkhorn` (``<P, C> + eps KL(P | a b^T)``), the gradient its exact derivative w.r.t.
    ``y_pred`` at the solution (envelope theorem: ``2 sum_i P_ij (y_j - x_i)``).

    ``true_weight`` / ``sample_weight``: the weights of the points of ``y_true`` / ``y_pred``.
    Non-convergence is a RuntimeWarning with the marginal error reached. No Hessian.

    Parameters
    ----------
    epsilon : float > 0, default 0.1
    max_iter : int >= 1, default 1000
    tol : float > 0 or None (1e-9 in float64, 1e-5 in float32)

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.array([[0.0], [1.0]])
    >>> value, grad = fl.SinkhornLoss(epsilon=1.0).value_and_grad(x, x + 0.5)
    >>> round(value, 6), np.round(grad, 4).tolist()
    (0.629885, [[0.2311], [0.7689]])
    """

    function_name = "sinkhorn_loss"
    epsilon: float = param(default=0.1, check=positive, doc="entropic regularization")
    max_iter: int = param(default=1000, check=integer(1), doc="iteration limit")
    tol: Optional[float] = param(default=None, check=optional(positive),
                                 doc="marginal error to reach")
    smooth = True
    hessian = "none"

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             true_weight=None):
        r = self._solve(*args, sample_weight, true_weight, want_grad)
        # one objective between two point clouds, whatever the reduction
        return KernelResult(r.objective, 1.0, np.asarray(r.objective), r.grad_y, None)

    def _solve(self, y_true, y_pred, sample_weight, true_weight, want_grad):
        # the weights checked under the loss's names for them (the solver calls them a and b)
        for w, x, name in ((true_weight, y_true, "true_weight"), (sample_weight, y_pred,
                                                                  "sample_weight")):
            if w is not None:
                _marginal(w, np.shape(x)[0], name)
        return sinkhorn(y_true, y_pred, a=true_weight, b=sample_weight, epsilon=self.epsilon,
                        max_iter=self.max_iter, tol=self.tol, grad=want_grad)


sinkhorn_loss = SinkhornLoss.functional
