"""Independent float64 NumPy references for the elementwise losses, written from the spec.

Nothing here calls fastloss. Every formula gives, per element, the loss ``l``, its derivative
``g = dl/dy_pred`` and second derivative ``h`` (the exact almost-everywhere value where the loss is
piecewise linear), as functions of the residual ``r = y_pred - y_true``.

The kernels compute natively in ``y_pred``'s dtype. To compare float32 results element by element,
``elementwise_reference`` first rounds the inputs, the residual and the hyper-parameters to the
compute dtype (what the kernel sees), then evaluates the formulas in float64. ``reduce_reference``
applies the weights and the reduction exactly as the contract states.

Adding an elementwise loss to fastloss means adding an entry to ``REFERENCES`` (a contract test
fails when one is missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

LN2 = math.log(2.0)


def _nan_where(r, x):
    """``x``, with NaN wherever the residual is NaN."""
    return np.where(np.isnan(r), np.nan, x)


# --------------------------------------------------------------------------------------------------
# Per-element formulas: f(r, **params) -> (l, g, h), all float64 arrays of r's shape.
# --------------------------------------------------------------------------------------------------


def mse(r):
    l = r * r
    g = 2.0 * r
    h = _nan_where(r, np.full_like(r, 2.0))
    return l, g, h


def mae(r):
    l = np.abs(r)
    g = np.sign(r)  # 0 at r = 0, NaN for NaN
    h = _nan_where(r, np.zeros_like(r))
    return l, g, h


def huber(r, delta=1.0):
    a = np.abs(r)
    inside = a <= delta
    l = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    g = np.where(inside, r, delta * np.sign(r))
    h = np.where(inside, 1.0, 0.0)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def smooth_l1(r, beta=1.0):
    a = np.abs(r)
    if beta == 0.0:  # exactly the L1 loss
        return a, np.sign(r), _nan_where(r, np.zeros_like(r))
    inside = a < beta
    l = np.where(inside, 0.5 * r * r / beta, a - 0.5 * beta)
    g = np.where(inside, r / beta, np.sign(r))
    h = np.where(inside, 1.0 / beta, 0.0)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def quantile(r, quantile=0.5):
    tau = np.asarray(quantile, dtype=np.float64)
    pos = r > 0
    l = np.where(pos, (1.0 - tau) * r, -tau * r)
    g = np.where(pos, 1.0 - tau, -tau)  # subgradient -tau at r = 0 (scikit-learn's choice)
    h = np.zeros_like(l)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def log_cosh(r):
    """log(cosh r) without overflow or cancellation.

    |r| < 1:  cosh r - 1 = 2 sinh(r/2)^2, so l = log1p(2 sinh(r/2)^2)   (no cancellation near 0)
    |r| >= 1: l = |r| - log 2 + log1p(exp(-2|r|))                        (no overflow)
    g = tanh r; h = sech^2 r = 1 / cosh(r)^2 (cosh overflowing to inf gives the correct 0).
    """
    a = np.abs(r)
    small = a < 1.0
    s = np.sinh(0.5 * np.where(small, a, 0.0))
    l_small = np.log1p(2.0 * s * s)
    big_a = np.where(small, 1.0, a)
    l_big = big_a - LN2 + np.log1p(np.exp(-2.0 * big_a))
    l = np.where(small, l_small, l_big)
    g = np.tanh(r)
    c = np.cosh(r)
    h = 1.0 / (c * c)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def log_cosh_mp(r: float, dps: int = 50) -> Tuple[float, float, float]:
    """High-precision log(cosh r), tanh r, sech^2 r with mpmath (for spot checks)."""
    import mpmath

    if r != 0 and math.isfinite(r):  # cosh(r) = 1 + r^2/2: keep enough digits beyond the 1
        dps += int(max(0.0, -2.0 * math.log10(abs(r))))
    with mpmath.workdps(dps):
        x = mpmath.mpf(r)
        if mpmath.isinf(x):
            return math.inf, math.copysign(1.0, r), 0.0
        l = mpmath.log(mpmath.cosh(x))
        g = mpmath.tanh(x)
        h = mpmath.sech(x) ** 2
        return float(l), float(g), float(h)


# --------------------------------------------------------------------------------------------------
# The registry of references: one entry per C++ elementwise kernel name.
# --------------------------------------------------------------------------------------------------


def regression_inputs(rng: np.random.Generator, shape, dtype=np.float64, scale: float = 1.5):
    """(y_true, y_pred) with residuals on both sides of every kink of the regression losses."""
    y_true = rng.normal(0.0, 2.0, size=shape)
    resid = rng.normal(0.0, scale, size=shape) * rng.choice([0.05, 1.0, 4.0], size=shape)
    y_pred = y_true + resid
    return np.asarray(y_true, dtype=dtype), np.asarray(y_pred, dtype=dtype)


@dataclass(frozen=True)
class Reference:
    name: str                       # kernel name (fastloss._core.elementwise_kernels key)
    cls_name: str                   # the Python class in fastloss
    formula: Callable[..., Tuple[np.ndarray, np.ndarray, np.ndarray]]
    kinks: Callable[[Dict[str, Any]], Tuple[float, ...]]  # |r| values where l, g or h jump
    param_sets: Tuple[Dict[str, Any], ...]                # hyper-parameters worth testing
    make_inputs: Callable[..., Tuple[np.ndarray, np.ndarray]] = regression_inputs
    smooth_grad: bool = True        # gradient continuous (so FD of the value works at kinks)
    has_hessian: bool = True        # a non-trivial Hessian worth FD-checking
    float_params: Tuple[str, ...] = field(default=())  # params the kernel rounds to the dtype


REFERENCES: Dict[str, Reference] = {
    "mse": Reference("mse", "MSE", mse, lambda p: (), ({},)),
    "mae": Reference("mae", "MAE", mae, lambda p: (0.0,), ({},), smooth_grad=False,
                     has_hessian=False),
    "huber": Reference("huber", "Huber", huber, lambda p: (0.0, p.get("delta", 1.0)),
                       ({}, {"delta": 0.3}, {"delta": 2.5}), float_params=("delta",)),
    "smooth_l1": Reference("smooth_l1", "SmoothL1", smooth_l1, lambda p: (0.0, p.get("beta", 1.0)),
                           ({}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 3.0}),
                           float_params=("beta",)),
    "quantile": Reference("quantile", "Quantile", quantile, lambda p: (0.0,),
                          ({}, {"quantile": 0.1}, {"quantile": 0.9}), smooth_grad=False,
                          has_hessian=False, float_params=("quantile",)),
    "log_cosh": Reference("log_cosh", "LogCosh", log_cosh, lambda p: (), ({},)),
}


# --------------------------------------------------------------------------------------------------
# Elementwise evaluation and reductions.
# --------------------------------------------------------------------------------------------------


def compute_dtype(y_pred) -> np.dtype:
    """The dtype the kernel computes in: y_pred's float dtype; ints/bools -> float64, f16 -> f32."""
    dt = np.asarray(y_pred).dtype
    if dt == np.float32 or dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def elementwise_reference(name: str, y_true, y_pred, params: Optional[Dict[str, Any]] = None,
                          dtype=None):
    """Per-element (l, g, h) in float64 for kernel ``name``.

    Inputs, residual and float hyper-parameters are rounded to ``dtype`` (default: the compute
    dtype of ``y_pred``) before the float64 formulas run. For a vector ``quantile`` the last axis of
    ``y_pred`` holds the quantiles and ``y_true`` may lack it.
    """
    ref = REFERENCES[name]
    params = dict(params or {})
    dt = np.dtype(dtype) if dtype is not None else compute_dtype(y_pred)
    p = np.asarray(y_pred).astype(dt)
    y = np.asarray(y_true).astype(dt)
    if y.shape != p.shape:  # per-row y_true against (..., q) predictions
        y = np.broadcast_to(y[..., None], p.shape)
    with np.errstate(all="ignore"):
        r = (p - y).astype(np.float64)  # the residual as the kernel forms it, in dt
        for k in ref.float_params:
            if k in params:
                v = np.asarray(params[k], dtype=np.float64).astype(dt).astype(np.float64)
                params[k] = float(v) if v.ndim == 0 else v
        return ref.formula(r, **params)


def broadcast_weight(w, shape) -> np.ndarray:
    """sample_weight of shape ``shape`` or of its leading axes, broadcast to ``shape`` (float64)."""
    w = np.asarray(w, dtype=np.float64)
    extra = len(shape) - w.ndim
    return np.broadcast_to(w.reshape(w.shape + (1,) * extra), shape)


def reduce_reference(l, g, h, sample_weight=None, reduction="mean"):
    """(value, grad, hess) in float64 under the contract's weighting and reduction.

    mean: sum(w l) / sum(w) (w broadcast over trailing axes); grads w g / sum(w).
    sum:  sum(w l); grads w g.      none: w l per element; grads w g.
    Mean of an empty input is NaN; sum of an empty input is 0.
    """
    shape = np.shape(l)
    w = np.ones(shape) if sample_weight is None else broadcast_weight(sample_weight, shape)
    with np.errstate(all="ignore"):
        wl = w * l
        if reduction == "none":
            return wl, w * g, w * h
        total = float(np.sum(wl, dtype=np.float64))
        if reduction == "sum":
            return total, w * g, w * h
        norm = float(np.sum(w))
        if np.size(l) == 0:
            return math.nan, w * g, w * h
        return total / norm, w * g / norm, w * h / norm


def reference(name, y_true, y_pred, params=None, sample_weight=None, reduction="mean", dtype=None):
    """Shortcut: elementwise_reference + reduce_reference."""
    l, g, h = elementwise_reference(name, y_true, y_pred, params, dtype)
    return reduce_reference(l, g, h, sample_weight, reduction)
