"""Reference implementations the benchmark times fastloss against: careful NumPy formulations,
PyTorch CPU (forward + backward) and scikit-learn's ``sklearn._loss``; the data each loss gets;
and the correctness check of fastloss against the NumPy reference."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .timing import touched, try_import


# Tolerances of the correctness check against the NumPy baseline (value: relative; gradient:
# max |g - g_ref| relative to max |g_ref|).
RTOL = {"float32": 1e-4, "float64": 1e-10}

_LOG2 = math.log(2.0)

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def data_regression(n: int, dtype: np.dtype, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """y_true ~ N(0, 1), y_pred = y_true + N(0, 1): about a third of the residuals beyond 1, so
    every branch of Huber / SmoothL1 / Quantile is exercised, in no predictable order. No
    residual is exactly 0 (the NumPy baselines below use ``copysign``, exact only for r != 0)."""
    y = rng.standard_normal(n).astype(dtype)
    p = (y + rng.standard_normal(n)).astype(dtype)
    same = p == y
    p[same] = y[same] + 1
    return y, p


def _data_binary(n: int, dtype: np.dtype, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Labels in {0, 1}, logits ~ N(0, 2) (for binary losses added later)."""
    y = (rng.random(n) < 0.5).astype(dtype)
    p = (2.0 * rng.standard_normal(n)).astype(dtype)
    return y, p


def _data_sign(n: int, dtype: np.dtype, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Labels in {-1, +1}, scores ~ N(0, 2) (margin losses added later)."""
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(dtype)
    p = (2.0 * rng.standard_normal(n)).astype(dtype)
    return y, p


def _data_positive(n: int, dtype: np.dtype, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Positive targets (times, amounts) y = exp(N(0, 1)) and log-scale predictions
    log(y) + N(0, 0.5), for log-link likelihoods and survival times."""
    ly = rng.standard_normal(n)
    return np.exp(ly).astype(dtype), (ly + 0.5 * rng.standard_normal(n)).astype(dtype)


DATA = {"regression": data_regression, "binary": _data_binary, "sign": _data_sign,
        "positive": _data_positive}
# Which data each loss gets; a loss not listed tries these kinds in order until one is accepted.
DATA_KIND: Dict[str, str] = {
    "binary_cross_entropy": "binary", "binary_focal": "binary", "logistic": "sign",
    "hinge": "sign", "squared_hinge": "sign", "smooth_hinge": "sign",
    "gamma_nll": "positive", "aft": "positive",
}


# --------------------------------------------------------------------------------------------
# NumPy baselines: value (mean) and gradient of the mean, preallocated buffers, out= ufuncs.
# Each factory takes (loss, y_true, y_pred) and returns fn() -> (value, grad). Timings that
# chose each formulation: float32/float64 at n = 1e5 .. 1e7, one core, NumPy 2.x, AVX-512 host.
# --------------------------------------------------------------------------------------------

def _np_mse(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # Kept: r into g in place, dot, scale in place (3 passes). Tried: a separate residual
    # buffer with multiply(r, 2/n, out=g) (10-50% slower: one more array in cache), vdot (same).
    n, g = y.size, touched(p.shape, p.dtype)
    scale = 2.0 / n

    def fn() -> Tuple[float, np.ndarray]:
        np.subtract(p, y, out=g)
        v = float(np.dot(g, g)) / n
        np.multiply(g, scale, out=g)
        return v, g
    return fn


def _np_mae(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # Kept: copysign(1/n, r) gives the gradient of the mean in one pass and dot(g, r) = mean|r|
    # (3 passes; exact for r != 0, which the benchmark data guarantees; at r == 0 it would give
    # +-1/n instead of 0). Tried: sign + dot + scale (4 passes, 5-20% slower), abs + sum + sign +
    # scale (5 passes, 20-30% slower).
    n, r, g = y.size, touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    inv_n = 1.0 / n

    def fn() -> Tuple[float, np.ndarray]:
        np.subtract(p, y, out=r)
        np.copysign(inv_n, r, out=g)
        v = float(np.dot(g, r))
        return v, g
    return fn


def _np_huber_like(delta: float, scale: float, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # With c = clip(r, -d, d): huber = c * (r - c/2), so mean = (c.r - c.c/2) / n, gradient c / n
    # (no cancellation: c.r >= c.c). Kept: one clip + two dots + scale (5 passes). Tried:
    # minimum + maximum instead of clip (30-120% slower), a per-element value array + sum.
    n, r, g = y.size, touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    s = scale / n

    def fn() -> Tuple[float, np.ndarray]:
        np.subtract(p, y, out=r)
        np.clip(r, -delta, delta, out=g)
        v = (float(np.dot(g, r)) - 0.5 * float(np.dot(g, g))) * s
        np.multiply(g, s, out=g)
        return v, g
    return fn


def _np_huber(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    return _np_huber_like(float(loss.delta), 1.0, y, p)


def _np_smooth_l1(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # SmoothL1(beta) = Huber(delta=beta) / beta (beta > 0).
    beta = float(loss.beta)
    if beta == 0.0:
        return _np_mae(loss, y, p)
    return _np_huber_like(beta, 1.0 / beta, y, p)


def _np_quantile(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # With u = [r > 0] - tau (the per-element gradient), the pinball loss is u * r, so
    # mean = dot(u, r) / n. Kept: greater into a bool buffer, subtract tau with a float output,
    # dot, scale (5 passes, exact subgradient -tau at r == 0). Tried: 1/n folded in
    # (multiply(mask, 1/n) - tau/n, same speed), copysign(1/2n, r) + (1/2 - tau)/n (same speed
    # in float32, 10% faster in float64, but wrong at r == 0).
    tau = loss.quantile
    if not isinstance(tau, float):
        raise NotImplementedError("the NumPy baseline covers a scalar quantile only")
    n, r, g = y.size, touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    m = touched(p.shape, np.bool_, False)
    inv_n = 1.0 / n

    def fn() -> Tuple[float, np.ndarray]:
        np.subtract(p, y, out=r)
        np.greater(r, 0, out=m)
        np.subtract(m, tau, out=g, dtype=g.dtype)
        v = float(np.dot(g, r)) * inv_n
        np.multiply(g, inv_n, out=g)
        return v, g
    return fn


def _np_log_cosh(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # Stable for every |r|: log cosh r = |r| + log1p(exp(-2|r|)) - log 2; gradient tanh(r).
    # Kept: abs, sum, (-2)*, exp, log1p, sum, tanh, scale (8 passes, but all SIMD ufuncs).
    # Tried: logaddexp(r, -r) - log 2 (the textbook stable form: 4-10x slower, logaddexp is a
    # scalar loop in NumPy); tanh in place then multiply into g (same speed).
    n, r, g = y.size, touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    inv_n = 1.0 / n

    def fn() -> Tuple[float, np.ndarray]:
        np.subtract(p, y, out=r)
        np.abs(r, out=g)
        s = float(g.sum())
        np.multiply(g, -2.0, out=g)
        np.exp(g, out=g)
        np.log1p(g, out=g)
        v = (s + float(g.sum())) * inv_n - _LOG2
        np.tanh(r, out=g)
        np.multiply(g, inv_n, out=g)
        return v, g
    return fn


def _np_bce_logits(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    """Stable: l = max(z, 0) - y z + log1p(exp(-|z|)); g = (sigmoid(z) - y) / n with the sigmoid
    from the same exp(-|z|). Fastest of this, np.logaddexp(0, z) - y z, and scipy's expit."""
    n = p.size
    e, t, g = touched(p.shape, p.dtype), touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    pos = np.empty(p.shape, dtype=bool)

    def fn() -> Tuple[float, np.ndarray]:
        np.abs(p, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)                      # e = exp(-|z|)
        np.log1p(e, out=t)
        v = float(t.sum(dtype=np.float64)) + float(np.maximum(p, 0, out=g).sum(dtype=np.float64))
        v -= float(np.dot(y, p))
        np.add(e, 1, out=t)
        np.reciprocal(t, out=t)               # 1 / (1 + e)
        np.greater_equal(p, 0, out=pos)
        np.multiply(e, t, out=g)              # sigmoid(-|z|)
        np.copyto(g, t, where=pos)            # sigmoid(z)
        np.subtract(g, y, out=g)
        np.multiply(g, 1.0 / n, out=g)
        return v / n, g
    return fn


def _np_hinge(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    """l = max(0, 1 - y z); g = -y [y z < 1] / n."""
    n = p.size
    m, g = touched(p.shape, p.dtype), touched(p.shape, p.dtype)
    act = np.empty(p.shape, dtype=bool)

    def fn() -> Tuple[float, np.ndarray]:
        np.multiply(y, p, out=m)
        np.subtract(1, m, out=m)
        np.greater(m, 0, out=act)
        v = float(np.maximum(m, 0, out=m).sum(dtype=np.float64)) / n
        np.multiply(y, -1.0 / n, out=g)
        g[~act] = 0
        return v, g
    return fn


NUMPY: Dict[str, Callable[..., Callable[[], Tuple[float, np.ndarray]]]] = {
    "mse": _np_mse, "mae": _np_mae, "huber": _np_huber, "smooth_l1": _np_smooth_l1,
    "quantile": _np_quantile, "log_cosh": _np_log_cosh,
    "binary_cross_entropy": _np_bce_logits, "hinge": _np_hinge,
}


# --------------------------------------------------------------------------------------------
# PyTorch CPU baselines: forward + backward on from_numpy views (no copy), value read out with
# .item(), the gradient torch allocates each call included; .grad reset every call.
# --------------------------------------------------------------------------------------------

def _torch_forward(name: str, loss: Any) -> Optional[Callable[[Any, Any], Any]]:
    torch = try_import("torch")
    F = torch.nn.functional
    if name == "mse":
        return lambda yp, yt: F.mse_loss(yp, yt)
    if name == "mae":
        return lambda yp, yt: F.l1_loss(yp, yt)
    if name == "huber":
        d = float(loss.delta)
        return lambda yp, yt: F.huber_loss(yp, yt, delta=d)
    if name == "smooth_l1":
        b = float(loss.beta)
        return lambda yp, yt: F.smooth_l1_loss(yp, yt, beta=b)
    if name == "quantile":
        tau = loss.quantile
        if not isinstance(tau, float):
            return None

        def quantile(yp: Any, yt: Any) -> Any:
            e = yt - yp
            return torch.maximum(tau * e, (tau - 1.0) * e).mean()
        return quantile
    if name == "log_cosh":
        def log_cosh(yp: Any, yt: Any) -> Any:  # stable: r + softplus(-2r) - log 2
            r = yp - yt
            return (r + F.softplus(-2.0 * r) - _LOG2).mean()
        return log_cosh
    if name == "binary_cross_entropy" and loss.from_logits:
        pw = float(loss.pos_weight)
        return lambda yp, yt: F.binary_cross_entropy_with_logits(
            yp, yt, pos_weight=None if pw == 1.0 else torch.tensor(pw, dtype=yp.dtype))
    if name == "binary_focal" and loss.from_logits:
        gamma, alpha = float(loss.gamma), loss.alpha

        def focal(yp: Any, yt: Any) -> Any:  # torchvision's sigmoid_focal_loss, composed
            prob = torch.sigmoid(yp)
            ce = F.binary_cross_entropy_with_logits(yp, yt, reduction="none")
            p_t = prob * yt + (1 - prob) * (1 - yt)
            out = ce * (1 - p_t) ** gamma
            if alpha is not None:
                out = (alpha * yt + (1 - alpha) * (1 - yt)) * out
            return out.mean()
        return focal
    if name == "logistic":
        return lambda yp, yt: F.soft_margin_loss(yp, yt)
    if name == "hinge":
        return lambda yp, yt: torch.clamp(1 - yt * yp, min=0).mean()
    return None


def _torch_factory(name: str) -> Callable[..., Optional[Callable[[], Tuple[float, Any]]]]:
    def factory(loss: Any, y: np.ndarray, p: np.ndarray) -> Optional[Callable[[], Tuple[float, Any]]]:
        torch = try_import("torch")
        forward = _torch_forward(name, loss)
        if forward is None:
            return None
        yt = torch.from_numpy(y)
        yp = torch.from_numpy(p).requires_grad_()

        def fn() -> Tuple[float, Any]:
            yp.grad = None
            out = forward(yp, yt)
            out.backward()
            return out.item(), yp.grad
        return fn
    return factory


TORCH = {name: _torch_factory(name) for name in (*NUMPY, "binary_focal", "logistic")}


# --------------------------------------------------------------------------------------------
# scikit-learn baselines (sklearn._loss, the Cython losses behind HistGradientBoosting).
# Speed comparison only: their conventions differ from fastloss's. loss_gradient returns the
# per-sample loss and the per-sample gradient (not divided by n); HalfSquaredError is r^2/2
# (gradient r), PinballLoss is ours, HuberLoss(delta) is ours, SmoothL1 is mapped onto
# HuberLoss(delta=beta) (a factor 1/beta apart). The timed call includes summing loss_out, the
# one extra pass needed to get the value; the gradient is left unscaled.
# --------------------------------------------------------------------------------------------

def _sk_loss_object(name: str, loss: Any) -> Any:
    mod = try_import("sklearn._loss.loss")
    if mod is None:
        return None
    if name == "mse":
        return mod.HalfSquaredError()
    if name == "mae":
        return mod.AbsoluteError()
    if name == "quantile":
        return mod.PinballLoss(quantile=loss.quantile) if isinstance(loss.quantile, float) else None
    if name == "huber":
        return mod.HuberLoss(delta=float(loss.delta))
    if name == "smooth_l1":
        return mod.HuberLoss(delta=float(loss.beta)) if loss.beta > 0 else mod.AbsoluteError()
    if name == "binary_cross_entropy" and loss.from_logits and loss.pos_weight == 1.0:
        return mod.HalfBinomialLoss()  # log(1 + exp(z)) - y z: ours with 0/1 labels
    return None


def _sklearn_factory(name: str) -> Callable[..., Optional[Callable[[], Tuple[float, np.ndarray]]]]:
    def factory(loss: Any, y: np.ndarray, p: np.ndarray, threads: int = 1) -> Optional[Callable[[], Tuple[float, np.ndarray]]]:
        sk = _sk_loss_object(name, loss)
        if sk is None:
            return None
        lo, go = touched(p.shape, p.dtype), touched(p.shape, p.dtype)

        def fn() -> Tuple[float, np.ndarray]:
            sk.loss_gradient(y, p, loss_out=lo, gradient_out=go, n_threads=threads)
            return float(lo.sum()) / lo.size, go
        return fn
    return factory


SKLEARN = {name: _sklearn_factory(name)
            for name in ("mse", "mae", "huber", "smooth_l1", "quantile", "binary_cross_entropy")}

# --------------------------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------------------------

def as_numpy(g: Any) -> np.ndarray:
    if isinstance(g, np.ndarray):
        return g
    return g.detach().numpy() if hasattr(g, "detach") else np.asarray(g)


def check_result(dtype: str, fl_value: float, fl_grad: np.ndarray, fl_value_only: float,
           ref_value: float, ref_grad: np.ndarray) -> Dict[str, Any]:
    rtol = RTOL[dtype]
    v_err = abs(fl_value - ref_value) / max(abs(ref_value), np.finfo(np.float64).tiny)
    v_only_err = abs(fl_value_only - fl_value) / max(abs(fl_value), np.finfo(np.float64).tiny)
    ref = np.asarray(ref_grad, dtype=np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(np.asarray(fl_grad, dtype=np.float64) - ref))) if ref.size else 0.0
    g_err = diff / scale if scale > 0 else diff
    ok = bool(v_err <= rtol and g_err <= rtol and v_only_err <= rtol
              and np.isfinite(fl_value) and np.isfinite(g_err))
    return {"against": "numpy", "ok": ok, "rtol": rtol, "value_rel_err": float(v_err),
            "grad_rel_err": float(g_err), "value_only_rel_err": float(v_only_err)}

# --------------------------------------------------------------------------------------------
# Multi-class (row-wise) losses: logits (rows, K), labels (rows,). Value + gradient of the mean,
# fastloss with a preallocated grad_out vs PyTorch forward+backward and a careful NumPy softmax.
# GB/s counts the logits read and the gradient written once (8 B per float32 logit).
# --------------------------------------------------------------------------------------------

def np_softmax_ce(z: np.ndarray, t: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    """max shift, exp in place, one division per row: the fastest NumPy form we found."""
    n = z.shape[0]
    e = np.empty_like(z)
    rows = np.arange(n)

    def fn() -> Tuple[float, np.ndarray]:
        m = z.max(axis=1, keepdims=True)
        np.subtract(z, m, out=e)
        np.exp(e, out=e)
        s = e.sum(axis=1, keepdims=True, dtype=np.float64)
        v = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[rows, t]))
        np.multiply(e, (1.0 / (s * n)).astype(z.dtype), out=e)
        e[rows, t] -= 1.0 / n
        return v, e
    return fn


def np_categorical_ce(z: np.ndarray, q: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    """Cross-entropy against target rows q (sum_k q_k (lse - z_k)), in the form of np_softmax_ce."""
    n = z.shape[0]
    e = np.empty_like(z)
    qsum = q.sum(axis=1, keepdims=True, dtype=np.float64)
    qn = q / np.asarray(n, z.dtype)  # the targets' share of the mean's gradient, set up once

    def fn() -> Tuple[float, np.ndarray]:
        m = z.max(axis=1, keepdims=True)
        np.subtract(z, m, out=e)
        qd = float(np.einsum("ij,ij->", q, e, dtype=np.float64))  # sum q (z - m)
        np.exp(e, out=e)
        s = e.sum(axis=1, keepdims=True, dtype=np.float64)
        v = (float((qsum[:, 0] * np.log(s[:, 0])).sum()) - qd) / n
        np.multiply(e, (qsum / (s * n)).astype(z.dtype), out=e)
        np.subtract(e, qn, out=e)
        return v, e
    return fn


def np_distillation(z: np.ndarray, t: np.ndarray, teacher: np.ndarray, alpha: float, T: float
                     ) -> Callable[[], Tuple[float, np.ndarray]]:
    """alpha CE + (1 - alpha) T^2 KL(softmax(teacher/T) || softmax(z/T)), written with NumPy."""
    n = z.shape[0]
    rows = np.arange(n)

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    def fn() -> Tuple[float, np.ndarray]:
        logp1, logq, logp = log_softmax(z), log_softmax(z / T), log_softmax(teacher / T)
        p = np.exp(logp)
        kl = float((p * (logp - logq)).sum()) / n
        ce = -float(logp1[rows, t].sum()) / n
        g = alpha * np.exp(logp1) + (1 - alpha) * T * (np.exp(logq) - p)
        g[rows, t] -= alpha
        g /= n
        return alpha * ce + (1 - alpha) * T * T * kl, g
    return fn


def torch_multiclass(name: str, z: np.ndarray, t: np.ndarray, gamma: float,
                      teacher: Optional[np.ndarray] = None
                      ) -> Optional[Callable[[], Tuple[float, Any]]]:
    torch = try_import("torch")
    if torch is None:
        return None
    F = torch.nn.functional
    tz = torch.from_numpy(z).requires_grad_()
    tt = torch.from_numpy(t)
    th = torch.from_numpy(teacher) if teacher is not None else None

    def fn() -> Tuple[float, Any]:
        tz.grad = None
        if name == "sparse_categorical_cross_entropy":
            out = F.cross_entropy(tz, tt)
        elif name == "categorical_cross_entropy":  # target rows, passed as `teacher`
            out = F.cross_entropy(tz, th)
        elif name == "distillation":  # alpha = 0.5, T = 2: Hinton's composition
            out = 0.5 * F.cross_entropy(tz, tt) + 0.5 * 4.0 * F.kl_div(
                F.log_softmax(tz / 2.0, dim=1), F.log_softmax(th / 2.0, dim=1), log_target=True,
                reduction="batchmean")
        elif name == "categorical_focal":  # target rows, passed as `teacher`; composed
            logp = F.log_softmax(tz, dim=1)
            out = (-(th * (1 - logp.exp()) ** gamma * logp).sum(dim=1)).mean()
        else:  # softmax focal composed from torch ops
            logp = F.log_softmax(tz, dim=1).gather(1, tt[:, None])[:, 0]
            out = (-(1 - logp.exp()) ** gamma * logp).mean()
        out.backward()
        return out.item(), tz.grad
    return fn
