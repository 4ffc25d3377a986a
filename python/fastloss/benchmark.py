"""Benchmark harness: fastloss against NumPy, PyTorch and scikit-learn, and against the machine's
own memory bandwidth.

What one run measures, for every elementwise loss in ``fastloss.losses()`` (or the ones asked
for), every dtype, size and thread count:

* fastloss ``value_and_grad(y_true, y_pred, grad_out=g)`` with a preallocated ``g`` (the hot
  path) and the value alone ``loss(y_true, y_pred)``;
* the same value (mean) and gradient computed by the fastest careful NumPy formulation we know
  (preallocated buffers, ``out=`` ufuncs, fewest passes; see ``_NUMPY``), by PyTorch CPU
  (forward + backward, see ``_TORCH``) and by ``sklearn._loss`` (see ``_SKLEARN``) when they are
  installed;
* achieved GB/s of fastloss (bytes of the arrays it must read and write, once) and that as a
  fraction of a triad ``a = b + s*c`` measured by the harness on arrays far larger than the
  caches, with the same number of threads;
* speedups as medians of per-repeat ratios: in every repeat each implementation runs once, in a
  rotating order, so that they share the machine's noise;
* a correctness check: the fastloss value and gradient against the NumPy baseline.

The API (``run``, ``format_table``, ``measure_triad_bandwidth``, ``main``) is what
``fastloss bench`` and ``bench/bench_losses.py`` call; ``run`` returns a JSON-serializable dict.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["run", "format_table", "run_multiclass", "format_multiclass_table",
           "measure_triad_bandwidth", "main", "SIZES", "QUICK_SIZES"]

SCHEMA = 1
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")
THREADS = (1, 2)
BASELINE_NAMES = ("numpy", "torch", "sklearn")

# Hyper-parameters used for the benchmark (defaults otherwise). Quantile 0.9 rather than the
# symmetric default 0.5 so that the two branches of the gradient differ.
BENCH_PARAMS: Dict[str, Dict[str, Any]] = {
    "quantile": {"quantile": 0.9},
    "binary_cross_entropy": {"from_logits": True},
    "binary_focal": {"from_logits": True, "gamma": 2.0},
}

# Tolerances of the correctness check against the NumPy baseline (value: relative; gradient:
# max |g - g_ref| relative to max |g_ref|).
RTOL = {"float32": 1e-4, "float64": 1e-10}

# Timing budgets. A "sample" is k back-to-back calls of one implementation (k calibrated so
# that a sample lasts at least sample_s); a "repeat" is one sample of every implementation.
# repeats = clamp(ceil(target_s / sample time of the slowest one), min, max); past max_s
# seconds no further repeat starts once min are done.
# gap_s: pause between samples of implementations with different thread pools (see _measure).
_FULL = dict(sample_s=0.010, target_s=0.20, min_repeats=5, max_repeats=25, triad_repeats=9,
             overhead_samples=101, gap_s=0.010, max_s=5.0)
_QUICK = dict(sample_s=0.002, target_s=0.02, min_repeats=3, max_repeats=7, triad_repeats=7,
              overhead_samples=41, gap_s=0.010, max_s=0.5)

TRIAD_N = 20_000_000  # float64: 3 arrays x 160 MB, far beyond any last-level cache
_TRIAD_CHUNK = 1 << 16  # NumPy fallback: elements per cache-resident chunk (512 KiB float64)

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _touched(shape: Any, dtype: Any, fill: float = 0.0) -> np.ndarray:
    """An array whose pages are all faulted in (np.empty/np.zeros map them lazily)."""
    a = np.empty(shape, dtype=dtype)
    a.fill(fill)
    return a


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _fmt_n(n: int) -> str:
    e = math.log10(n) if n > 0 else 0.0
    return f"1e{int(round(e))}" if n > 0 and abs(e - round(e)) < 1e-12 else str(n)


def _try_import(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # ImportError, or a broken install raising something else
        return None


class _BlasThreads:
    """Limits BLAS threads (NumPy's ``dot``) to ``n`` inside the block, when threadpoolctl is
    installed; otherwise does nothing. The NumPy baselines run with one BLAS thread: NumPy's
    ufuncs are single-threaded anyway, and idle OpenBLAS workers busy-wait long enough after a
    threaded ``dot`` to slow down whatever runs next on a small machine."""

    def __init__(self, n: int) -> None:
        self.n, self._ctx = n, None

    def __enter__(self) -> "_BlasThreads":
        tpc = _try_import("threadpoolctl")
        if tpc is not None:
            self._ctx = tpc.threadpool_limits(limits=self.n, user_api="blas")
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def _data_regression(n: int, dtype: np.dtype, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
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


_DATA = {"regression": _data_regression, "binary": _data_binary, "sign": _data_sign}
# Which data each loss gets; a loss not listed tries these kinds in order until one is accepted.
_DATA_KIND: Dict[str, str] = {
    "binary_cross_entropy": "binary", "binary_focal": "binary", "logistic": "sign",
    "hinge": "sign", "squared_hinge": "sign", "smooth_hinge": "sign",
}


# --------------------------------------------------------------------------------------------
# NumPy baselines: value (mean) and gradient of the mean, preallocated buffers, out= ufuncs.
# Each factory takes (loss, y_true, y_pred) and returns fn() -> (value, grad). Timings that
# chose each formulation: float32/float64 at n = 1e5 .. 1e7, one core, NumPy 2.x, AVX-512 host.
# --------------------------------------------------------------------------------------------

def _np_mse(loss: Any, y: np.ndarray, p: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
    # Kept: r into g in place, dot, scale in place (3 passes). Tried: a separate residual
    # buffer with multiply(r, 2/n, out=g) (10-50% slower: one more array in cache), vdot (same).
    n, g = y.size, _touched(p.shape, p.dtype)
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
    n, r, g = y.size, _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
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
    n, r, g = y.size, _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
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
    n, r, g = y.size, _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
    m = _touched(p.shape, np.bool_, False)
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
    n, r, g = y.size, _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
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
    e, t, g = _touched(p.shape, p.dtype), _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
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
    m, g = _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)
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


_NUMPY: Dict[str, Callable[..., Callable[[], Tuple[float, np.ndarray]]]] = {
    "mse": _np_mse, "mae": _np_mae, "huber": _np_huber, "smooth_l1": _np_smooth_l1,
    "quantile": _np_quantile, "log_cosh": _np_log_cosh,
    "binary_cross_entropy": _np_bce_logits, "hinge": _np_hinge,
}


# --------------------------------------------------------------------------------------------
# PyTorch CPU baselines: forward + backward on from_numpy views (no copy), value read out with
# .item(), the gradient torch allocates each call included; .grad reset every call.
# --------------------------------------------------------------------------------------------

def _torch_forward(name: str, loss: Any) -> Optional[Callable[[Any, Any], Any]]:
    torch = _try_import("torch")
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
        torch = _try_import("torch")
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


_TORCH = {name: _torch_factory(name) for name in (*_NUMPY, "binary_focal", "logistic")}


# --------------------------------------------------------------------------------------------
# scikit-learn baselines (sklearn._loss, the Cython losses behind HistGradientBoosting).
# Speed comparison only: their conventions differ from fastloss's. loss_gradient returns the
# per-sample loss and the per-sample gradient (not divided by n); HalfSquaredError is r^2/2
# (gradient r), PinballLoss is ours, HuberLoss(delta) is ours, SmoothL1 is mapped onto
# HuberLoss(delta=beta) (a factor 1/beta apart). The timed call includes summing loss_out, the
# one extra pass needed to get the value; the gradient is left unscaled.
# --------------------------------------------------------------------------------------------

def _sk_loss_object(name: str, loss: Any) -> Any:
    mod = _try_import("sklearn._loss.loss")
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
        lo, go = _touched(p.shape, p.dtype), _touched(p.shape, p.dtype)

        def fn() -> Tuple[float, np.ndarray]:
            sk.loss_gradient(y, p, loss_out=lo, gradient_out=go, n_threads=threads)
            return float(lo.sum()) / lo.size, go
        return fn
    return factory


_SKLEARN = {name: _sklearn_factory(name)
            for name in ("mse", "mae", "huber", "smooth_l1", "quantile", "binary_cross_entropy")}


# --------------------------------------------------------------------------------------------
# Memory bandwidth: the triad a = b + s*c
# --------------------------------------------------------------------------------------------

class _Triad:
    """Triad buffers (allocated and touched once) and the implementations that can time it.
    ``run`` times every available one and keeps the fastest per thread count.

    Bytes counted per element: 3 x itemsize (read b, read c, write a), the STREAM convention
    (the write-allocate read of ``a`` is not counted; neither is it for fastloss's outputs).

    Methods:

    * ``numexpr``: ``evaluate("b + s*c", out=a)``, one pass, numexpr's own threads (its
      interpreter is compute-bound with one thread: about half the others there);
    * ``torch``: ``torch.add(b, c, alpha=s, out=a)``, one pass, torch's OpenMP threads;
    * ``numpy``: NumPy has no fused multiply-add ufunc, and ``np.multiply`` then ``np.add`` over
      the whole arrays is two passes (5 streams). So each thread walks its half of the arrays in
      chunks of 64 Ki elements (512 KiB, cache resident): ``multiply(c_k, s, out=a_k);
      add(a_k, b_k, out=a_k)``, which moves the 3 streams of a triad to and from memory. It
      reads about 15-25 % below a one-pass triad on the machines we tried (the second pass over
      the chunk and the Python loop are not free), so percentages against it read high.
      Threads are Python threads (ufuncs release the GIL).
    """

    def __init__(self, n: int = TRIAD_N, dtype: Any = np.float64) -> None:
        self.n = int(n)
        self.a = _touched(self.n, dtype, 0.0)
        self.b = _touched(self.n, dtype, 1.0)
        self.c = _touched(self.n, dtype, 2.0)
        self.s = 3.0
        self.bytes = 3 * self.a.itemsize * self.n

    @staticmethod
    def available() -> List[str]:
        out = []
        if _try_import("numexpr") is not None:
            out.append("numexpr")
        if _try_import("torch") is not None:
            out.append("torch")
        out.append("numpy")
        return out

    def runner(self, method: str, threads: int) -> Callable[[], float]:
        """A callable running one triad and returning its duration in seconds."""
        a, b, c, s = self.a, self.b, self.c, self.s
        if method == "numexpr":
            ne = _try_import("numexpr")

            def run_ne() -> float:
                prev = ne.set_num_threads(threads)
                try:
                    t0 = time.perf_counter()
                    ne.evaluate("b + s*c", local_dict={"b": b, "c": c, "s": s}, out=a)
                    return time.perf_counter() - t0
                finally:
                    ne.set_num_threads(prev)
            return run_ne
        if method == "torch":
            torch = _try_import("torch")
            ta, tb, tc = (torch.from_numpy(x) for x in (a, b, c))

            def run_torch() -> float:
                prev = torch.get_num_threads()
                torch.set_num_threads(threads)
                try:
                    t0 = time.perf_counter()
                    torch.add(tb, tc, alpha=s, out=ta)
                    return time.perf_counter() - t0
                finally:
                    torch.set_num_threads(prev)
            return run_torch
        if method != "numpy":
            raise ValueError(f"unknown triad method {method!r}; known: numexpr, torch, numpy")

        def part(lo: int, hi: int) -> None:
            for i in range(lo, hi, _TRIAD_CHUNK):
                j = min(i + _TRIAD_CHUNK, hi)
                ak = a[i:j]
                np.multiply(c[i:j], s, out=ak)
                np.add(ak, b[i:j], out=ak)

        if threads == 1:
            def run_np1() -> float:
                t0 = time.perf_counter()
                part(0, self.n)
                return time.perf_counter() - t0
            return run_np1

        def run_npt() -> float:
            bounds = [self.n * k // threads for k in range(threads + 1)]
            start = threading.Barrier(threads + 1)
            workers = [threading.Thread(target=lambda lo=lo, hi=hi: (start.wait(), part(lo, hi)))
                       for lo, hi in zip(bounds[:-1], bounds[1:])]
            for w in workers:
                w.start()
            start.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            return time.perf_counter() - t0
        return run_npt

    def measure(self, method: str, threads: int, repeats: int) -> Dict[str, Any]:
        run1 = self.runner(method, threads)
        run1()  # warm-up
        times = [run1() for _ in range(repeats)]
        gbps = [self.bytes / t / 1e9 for t in times]
        return {"method": method, "threads": threads, "n": self.n, "dtype": str(self.a.dtype),
                "bytes": self.bytes, "times_s": times, "gbps": gbps, "gbps_median": _median(gbps)}


def _resolve_triad_method(method: str) -> str:
    avail = _Triad.available()
    if method == "auto":
        return avail[0]
    if method not in avail:
        raise ValueError(f"triad method {method!r} not available here; available: {avail}")
    return method


def measure_triad_bandwidth(threads: int = 1, *, n: int = TRIAD_N, repeats: int = 9,
                            method: str = "auto") -> float:
    """Memory bandwidth in GB/s (1e9 bytes/s): median of ``repeats`` triads ``a = b + s*c`` over
    three float64 arrays of ``n`` elements, with ``threads`` threads. See ``_Triad`` for the
    methods; ``"auto"`` times every available one and returns the fastest."""
    tri = _Triad(n)
    methods = _Triad.available() if method == "auto" else [_resolve_triad_method(method)]
    return max(tri.measure(m, int(threads), int(repeats))["gbps_median"] for m in methods)


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> Dict[str, str]:
    out: Dict[str, str] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue
            def rd(k: str) -> str:
                with open(os.path.join(base, d, k)) as f:
                    return f.read().strip()
            kind = rd("type")
            if kind == "Instruction":
                continue
            out[f"L{rd('level')}"] = rd("size")
    except OSError:
        pass
    return out


def _environment(want: Sequence[str]) -> Dict[str, Any]:
    import fastloss

    try:
        affinity = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except AttributeError:
        affinity = os.cpu_count()
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "fastloss": fastloss.__version__}
    if "torch" in want:
        torch = _try_import("torch")
        versions["torch"] = torch.__version__ if torch is not None else None
    if "sklearn" in want:
        sk = _try_import("sklearn")
        versions["sklearn"] = sk.__version__ if sk is not None else None
    ne = _try_import("numexpr")
    if ne is not None:
        versions["numexpr"] = ne.__version__
    blas = None
    tpc = _try_import("threadpoolctl")
    if tpc is not None:
        try:
            blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                    for i in tpc.threadpool_info() if i.get("user_api") == "blas"]
        except Exception:
            blas = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "caches": _caches(), "platform": platform.platform(), "versions": versions,
        "build_info": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in fastloss.build_info().items()},
        "blas": blas, "loadavg_start": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def _time_calls(fn: Callable[[], Any], k: int) -> float:
    """Seconds per call, over k back-to-back calls."""
    loop = itertools.repeat(None, k)
    t0 = time.perf_counter()
    for _ in loop:
        fn()
    return (time.perf_counter() - t0) / k


def _measure(impls: Dict[str, Callable[[], Any]], budget: Dict[str, Any],
             repeats: Optional[int], pools: Optional[Dict[str, str]] = None,
             gap_s: float = 0.0) -> Dict[str, Dict[str, Any]]:
    """Interleaved timing: each repeat runs one sample of every implementation, rotating the
    order. Returns per implementation: calls per sample, per-call times of each repeat.

    ``pools`` names the thread pool each implementation uses (fastloss, torch and scikit-learn
    each bring their own OpenMP runtime). An OpenMP worker spins for a few milliseconds after
    its parallel region before it sleeps; on a machine with as many cores as threads the next
    implementation's threads would fight that spinner. So when the previous sample used another
    pool, the harness first sleeps ``gap_s`` and then makes one untimed call, so that the timed
    calls find their own pool awake (steady state, as in a loop of calls), not asleep."""
    names = list(impls)
    pools = pools or {}
    last_pool: List[Optional[str]] = [None]

    def settle(nm: str) -> bool:
        """Pauses if the previous sample used another thread pool; True if it paused and this
        implementation has a pool of its own to wake up."""
        paused = gap_s > 0 and last_pool[0] is not None and last_pool[0] != pools.get(nm)
        if paused:
            time.sleep(gap_s)
        last_pool[0] = pools.get(nm)
        return paused and pools.get(nm) is not None

    calls: Dict[str, int] = {}
    est: Dict[str, float] = {}
    for name in names:  # warm-up (first call: lazy init, page faults) then calibrate
        fn = impls[name]
        settle(name)
        fn()
        # timeit-style autorange: k = 1, 2, 5, 10, 20, ... until k calls last >= sample_s / 2
        # (one call alone misleads on a busy machine, where it may be far from typical).
        k = 1
        for step in itertools.cycle((2, 2.5, 2)):
            t = _time_calls(fn, k)
            if t * k >= budget["sample_s"] / 2 or k >= 1_000_000:
                break
            k = int(k * step)
        if t * k < 3 * budget["sample_s"]:
            # Cheap enough to retry: keep the fastest of three, so that one preemption of a
            # worker thread during calibration does not shrink k to 1 and leave every sample
            # exposed to it (a loop of calls amortizes such events; a single call does not).
            t = min(t, _time_calls(fn, k), _time_calls(fn, k))
        est[name] = t
        calls[name] = max(1, int(math.ceil(budget["sample_s"] / max(t, 1e-9))))
    adaptive = repeats is None
    if repeats is None:
        slowest = max(calls[nm] * est[nm] for nm in names)
        repeats = int(math.ceil(budget["target_s"] / max(slowest, 1e-9)))
        repeats = max(budget["min_repeats"], min(budget["max_repeats"], repeats))
    times: Dict[str, List[float]] = {nm: [] for nm in names}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t_end = time.perf_counter() + budget["max_s"]
        for i in range(repeats):
            if adaptive and i >= budget["min_repeats"] and time.perf_counter() > t_end:
                break  # the machine got slower than calibrated: keep the run bounded
            order = names[i % len(names):] + names[:i % len(names)]
            for nm in order:
                if settle(nm):
                    impls[nm]()  # untimed: wakes the pool's workers after the pause
                times[nm].append(_time_calls(impls[nm], calls[nm]))
    finally:
        if gc_was:
            gc.enable()
    return {nm: {"calls_per_sample": calls[nm], "times_s": times[nm],
                 "median_s": _median(times[nm])} for nm in names}


def _paired_speedup(base: List[float], fast: List[float]) -> float:
    """Median over repeats of base/fast, both timed in the same repeat."""
    return _median([b / f for b, f in zip(base, fast) if f > 0])


# --------------------------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------------------------

def _as_numpy(g: Any) -> np.ndarray:
    if isinstance(g, np.ndarray):
        return g
    return g.detach().numpy() if hasattr(g, "detach") else np.asarray(g)


def _check(dtype: str, fl_value: float, fl_grad: np.ndarray, fl_value_only: float,
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
# The run
# --------------------------------------------------------------------------------------------

def _elementwise_losses() -> Dict[str, Any]:
    import fastloss
    from fastloss._base import ElementwiseLoss

    return {info.name: info for info in fastloss.losses() if issubclass(info.cls, ElementwiseLoss)}


# --------------------------------------------------------------------------------------------
# Multi-class (row-wise) losses: logits (rows, K), labels (rows,). Value + gradient of the mean,
# fastloss with a preallocated grad_out vs PyTorch forward+backward and a careful NumPy softmax.
# GB/s counts the logits read and the gradient written once (8 B per float32 logit).
# --------------------------------------------------------------------------------------------

MULTICLASS_SHAPES = [(65536, 1000)]
MULTICLASS_QUICK_SHAPES = [(8192, 1000)]


def _np_softmax_ce(z: np.ndarray, t: np.ndarray) -> Callable[[], Tuple[float, np.ndarray]]:
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


def _np_distillation(z: np.ndarray, t: np.ndarray, teacher: np.ndarray, alpha: float, T: float
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


def _torch_multiclass(name: str, z: np.ndarray, t: np.ndarray, gamma: float,
                      teacher: Optional[np.ndarray] = None
                      ) -> Optional[Callable[[], Tuple[float, Any]]]:
    torch = _try_import("torch")
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
        elif name == "distillation":  # alpha = 0.5, T = 2: Hinton's composition
            out = 0.5 * F.cross_entropy(tz, tt) + 0.5 * 4.0 * F.kl_div(
                F.log_softmax(tz / 2.0, dim=1), F.log_softmax(th / 2.0, dim=1), log_target=True,
                reduction="batchmean")
        else:  # softmax focal composed from torch ops
            logp = F.log_softmax(tz, dim=1).gather(1, tt[:, None])[:, 0]
            out = (-(1 - logp.exp()) ** gamma * logp).mean()
        out.backward()
        return out.item(), tz.grad
    return fn


def run_multiclass(shapes: Optional[Sequence[Tuple[int, int]]] = None, threads: Iterable[int] = THREADS,
                   quick: bool = False, progress: Optional[Callable[[str], None]] = None,
                   bandwidth: Optional[Dict[int, float]] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """float32 value+gradient of the sparse softmax cross-entropy, the softmax focal loss and
    distillation (alpha 0.5, T 2; teacher logits read besides the student's)."""
    import fastloss

    say = progress or (lambda msg: None)
    budget = dict(_QUICK if quick else _FULL)
    rng = np.random.default_rng(seed)
    rows_out = []
    for (n, k) in (shapes or (MULTICLASS_QUICK_SHAPES if quick else MULTICLASS_SHAPES)):
        z = rng.standard_normal((n, k)).astype(np.float32)
        t = rng.integers(0, k, n)
        teacher = rng.standard_normal((n, k)).astype(np.float32)
        g = _touched(z.shape, z.dtype)
        # (name, loss, extra inputs, bytes moved per logit)
        for name, loss, inputs, nbytes in (
                ("sparse_categorical_cross_entropy",
                 fastloss.SparseCategoricalCrossEntropy(from_logits=True), {}, 8),
                ("sparse_categorical_focal", fastloss.SparseCategoricalFocal(gamma=2.0), {}, 8),
                ("distillation", fastloss.Distillation(alpha=0.5, temperature=2.0),
                 {"teacher_logits": teacher}, 12)):
            for th in threads:
                say(f"{name} {n}x{k} threads={th}")
                impls: Dict[str, Callable[[], Any]] = {}

                def ours(loss=loss, th=th, inputs=inputs) -> Any:
                    with fastloss.num_threads(th):
                        return loss.value_and_grad(t, z, grad_out=g, **inputs)
                impls["fastloss"] = ours
                if name == "sparse_categorical_cross_entropy":
                    impls["numpy"] = _np_softmax_ce(z, t)
                elif name == "distillation":
                    impls["numpy"] = _np_distillation(z, t, teacher, 0.5, 2.0)
                tf = _torch_multiclass(name, z, t, 2.0, teacher)
                if tf is not None:
                    torch = _try_import("torch")

                    def theirs(tf=tf, th=th) -> Any:
                        torch.set_num_threads(th)
                        return tf()
                    impls["torch"] = theirs
                v, grad = impls["fastloss"]()
                checks = {}
                for nm, fn in impls.items():
                    if nm != "fastloss":
                        bv, bg = fn()
                        checks[nm] = bool(np.isclose(v, bv, rtol=1e-4)
                                          and np.allclose(grad, _as_numpy(bg), rtol=1e-3, atol=1e-9))
                pools = {"fastloss": "fastloss", "torch": "torch"}
                res = _measure(impls, budget, None, pools=pools, gap_s=0.01)
                times = {nm: r["times_s"] for nm, r in res.items()}
                med = {nm: r["median_s"] for nm, r in res.items()}
                gbs = nbytes * n * k / med["fastloss"] / 1e9
                rows_out.append({
                    "loss": name, "rows": n, "classes": k, "threads": th, "ms": med["fastloss"] * 1e3,
                    "gbs": gbs, "pct_triad": (100 * gbs / bandwidth[th]) if bandwidth and th in bandwidth else None,
                    "speedup": {nm: _paired_speedup(times[nm], times["fastloss"]) for nm in impls if nm != "fastloss"},
                    "check_ok": all(checks.values())})
    return rows_out


def format_multiclass_table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["", "multi-class, float32 value+gradient of the mean (labels + logits; GB/s at 8 B/logit, "
             "12 with the teacher's):",
             f"{'loss':34} {'rows x K':>12} {'thr':>3} {'ms':>8} {'GB/s':>6} {'%triad':>7} "
             f"{'vs numpy':>9} {'vs torch':>9} check"]
    for r in rows:
        sp = r["speedup"]
        pct = f"{r['pct_triad']:.0f}%" if r["pct_triad"] is not None else "—"
        lines.append(
            f"{r['loss']:34} {str(r['rows']) + 'x' + str(r['classes']):>12} {r['threads']:>3} "
            f"{r['ms']:8.2f} {r['gbs']:6.1f} {pct:>7} "
            f"{(format(sp['numpy'], '.1f') + 'x') if 'numpy' in sp else '—':>9} "
            f"{(format(sp['torch'], '.1f') + 'x') if 'torch' in sp else '—':>9} "
            f"{'OK' if r['check_ok'] else 'FAIL'}")
    return "\n".join(lines)


def _parse_list(text: str, conv: Callable[[str], Any]) -> List[Any]:
    return [conv(s.strip()) for s in text.split(",") if s.strip()]


def _size(s: str) -> int:
    v = float(s)
    if not math.isfinite(v) or v < 1 or v != int(v):
        raise ValueError(f"size must be a positive integer (1e5 allowed); got {s!r}")
    return int(v)


def _overhead(losses: Dict[str, Any], dtypes: Sequence[str], samples: int) -> List[Dict[str, Any]]:
    """Per-call cost of value_and_grad at n=1000 with grad_out (default threads; below the
    parallel threshold), next to one NumPy ufunc call on the same arrays. Samples of 200 calls,
    round-robin over the losses (and the ufunc) so that a noisy moment hits them all alike."""
    rng = np.random.default_rng(1)
    out = []
    calls = 200
    for dt in dtypes:
        y, p = _data_regression(1000, np.dtype(dt), rng)
        g = _touched(p.shape, p.dtype)
        fns: Dict[str, Callable[[], Any]] = {
            "numpy_ufunc": functools.partial(np.subtract, p, y, out=g)}
        for name, loss in losses.items():
            fn = functools.partial(loss.value_and_grad, y, p, grad_out=g)
            try:
                fn()
            except Exception:
                continue
            fns[name] = fn
        ts: Dict[str, List[float]] = {name: [] for name in fns}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for _ in range(samples):
                for name, fn in fns.items():
                    ts[name].append(_time_calls(fn, calls))
        finally:
            if gc_was:
                gc.enable()
        ref = _median(ts.pop("numpy_ufunc"))
        for name, t in ts.items():
            out.append({"loss": name, "dtype": dt, "n": 1000, "us_per_call": _median(t) * 1e6,
                        "us_min": min(t) * 1e6, "numpy_ufunc_us": ref * 1e6,
                        "samples_us": [x * 1e6 for x in t]})
    return out


def run(losses: Optional[Iterable[str]] = None, sizes: Optional[Iterable[int]] = None,
        dtypes: Iterable[str] = DTYPES, threads: Iterable[int] = THREADS,
        repeats: Optional[int] = None, quick: bool = False,
        progress: Optional[Callable[[str], None]] = None,
        baselines: Iterable[str] = BASELINE_NAMES, triad_method: str = "auto",
        triad_n: int = TRIAD_N, seed: int = 0) -> Dict[str, Any]:
    """Runs the benchmark; returns a JSON-serializable dict (see ``format_table``).

    losses: names from ``fastloss.losses()`` (elementwise ones; default: all of them).
    sizes: element counts (default ``SIZES``, or ``QUICK_SIZES`` when ``quick``).
    repeats: fixed number of interleaved repeats (default: adaptive, see ``_FULL``/``_QUICK``).
    baselines: any of "numpy", "torch", "sklearn" (those not installed are skipped).
    progress: called with a short message before each measurement.
    triad_n: elements per triad array (keep it far above the last-level cache; a smoke test
    may pass a small one).
    """
    t_start = time.perf_counter()
    budget = dict(_QUICK if quick else _FULL)
    say = progress or (lambda msg: None)

    available = _elementwise_losses()
    names = list(available) if losses is None else list(losses)
    unknown = [nm for nm in names if nm not in available]
    if unknown:
        raise ValueError(f"unknown or non-elementwise loss(es) {unknown}; "
                         f"known: {', '.join(available)}")
    sizes = [int(s) for s in (sizes if sizes is not None else (QUICK_SIZES if quick else SIZES))]
    dtypes = [str(np.dtype(d)) for d in dtypes]
    for d in dtypes:
        if d not in RTOL:
            raise ValueError(f"dtype must be float32 or float64; got {d!r}")
    threads = [int(t) for t in threads]
    if any(t < 1 for t in threads):
        raise ValueError("thread counts must be >= 1")
    want = [b for b in baselines if b in BASELINE_NAMES]
    have = {"numpy": True,
            "torch": "torch" in want and _try_import("torch") is not None,
            "sklearn": "sklearn" in want and _try_import("sklearn._loss.loss") is not None}
    torch = _try_import("torch") if have["torch"] else None

    env = _environment(want)
    results: Dict[str, Any] = {
        "schema": SCHEMA, "env": env,
        "config": {"losses": names, "sizes": sizes, "dtypes": dtypes, "threads": threads,
                   "quick": quick, "repeats": repeats, "baselines": want,
                   "baselines_available": [b for b in want if have[b]], "budget": budget,
                   "params": {nm: BENCH_PARAMS.get(nm, {}) for nm in names}, "seed": seed,
                   "rtol": RTOL},
        "triad": {}, "rows": [], "overhead": [], "skipped": [],
    }

    # Memory bandwidth first, and again at the end (the median of both is used). "auto" times
    # every available triad method and keeps the fastest: each is a lower bound.
    methods = _Triad.available() if triad_method == "auto" else [_resolve_triad_method(triad_method)]
    say(f"triad bandwidth ({', '.join(methods)}; threads {','.join(map(str, threads))})")
    tri = _Triad(triad_n)
    triad_runs = {t: {m: [tri.measure(m, t, budget["triad_repeats"])] for m in methods}
                  for t in threads}

    instances: Dict[str, Any] = {}
    for nm in names:
        try:
            instances[nm] = available[nm].cls(**BENCH_PARAMS.get(nm, {}))
        except Exception as e:  # a loss needing parameters we do not know
            results["skipped"].append({"loss": nm, "reason": f"construction failed: {e}"})

    total = len(instances) * len(dtypes) * len(sizes) * len(threads)
    k = 0
    rng = np.random.default_rng(seed)
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    try:
        for dt in dtypes:
            for n in sizes:
                data: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
                for nm, loss in instances.items():
                    # Inputs: the loss's data kind, else the first kind it accepts.
                    kinds = [_DATA_KIND[nm]] if nm in _DATA_KIND else list(_DATA)
                    y = p = None
                    err = None
                    g = None
                    for kind in kinds:
                        if kind not in data:
                            data[kind] = _DATA[kind](n, np.dtype(dt), rng)
                        y, p = data[kind]
                        g = _touched(p.shape, p.dtype)
                        try:
                            loss.value_and_grad(y, p, grad_out=g)
                            err = None
                            break
                        except Exception as e:
                            err = e
                    if err is not None:
                        results["skipped"].append({"loss": nm, "dtype": dt, "n": n,
                                                   "reason": f"fastloss call failed: {err}"})
                        k += len(threads)
                        continue
                    for t in threads:
                        k += 1
                        say(f"[{k}/{total}] {nm} {dt} n={_fmt_n(n)} threads={t}")
                        results["rows"].append(
                            _one_row(nm, loss, y, p, g, dt, n, t, have, budget, repeats))
                data.clear()
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads0)

    say("per-call overhead (n=1000)")
    time.sleep(0.1)  # let the thread pools of the last measurement go idle
    results["overhead"] = _overhead(instances, dtypes, budget["overhead_samples"])

    say("triad bandwidth again")
    for t in threads:
        for m in methods:
            triad_runs[t][m].append(tri.measure(m, t, budget["triad_repeats"]))
    del tri
    for t in threads:
        per_method = {}
        for m, runs in triad_runs[t].items():
            per_method[m] = {"gbps_median": _median([x for r in runs for x in r["gbps"]]),
                             "gbps_start": runs[0]["gbps_median"],
                             "gbps_end": runs[1]["gbps_median"], "runs": runs}
        best = max(per_method, key=lambda m: per_method[m]["gbps_median"])
        results["triad"][str(t)] = {"method": best, "n": int(triad_n),
                                    "gbps_median": per_method[best]["gbps_median"],
                                    "gbps_start": per_method[best]["gbps_start"],
                                    "gbps_end": per_method[best]["gbps_end"],
                                    "methods": per_method}
    for row in results["rows"]:
        bw = results["triad"][str(row["threads"])]["gbps_median"]
        row["pct_triad"] = 100.0 * row["gbps"] / bw
        row["value_pct_triad"] = 100.0 * row["value_gbps"] / bw

    try:
        env["loadavg_end"] = list(os.getloadavg())
    except OSError:
        env["loadavg_end"] = None
    results["elapsed_s"] = time.perf_counter() - t_start
    return results


def _one_row(nm: str, loss: Any, y: np.ndarray, p: np.ndarray, g: np.ndarray, dt: str, n: int,
             t: int, have: Dict[str, bool], budget: Dict[str, Any],
             repeats: Optional[int]) -> Dict[str, Any]:
    import fastloss

    impls: Dict[str, Callable[[], Any]] = {
        "fastloss": functools.partial(loss.value_and_grad, y, p, grad_out=g),
        "fastloss_value": functools.partial(loss, y, p),
    }
    formulations: Dict[str, str] = {}
    errors: Dict[str, str] = {}
    factories = {"numpy": _NUMPY.get(nm), "torch": _TORCH.get(nm) if have["torch"] else None,
                 "sklearn": _SKLEARN.get(nm) if have["sklearn"] else None}
    for base, fac in factories.items():
        if fac is None:
            continue
        try:
            fn = fac(loss, y, p, threads=t) if base == "sklearn" else fac(loss, y, p)
        except Exception as e:
            errors[base] = f"{type(e).__name__}: {e}"
            continue
        if fn is not None:
            impls[base] = fn
            formulations[base] = fac.__name__ if base == "numpy" else base

    torch = _try_import("torch") if have["torch"] else None
    if torch is not None:
        torch.set_num_threads(t)
    with fastloss.num_threads(t), _BlasThreads(1):
        # Correctness first (also the warm-up of every implementation).
        fl_v, fl_g = impls["fastloss"]()
        fl_v_only = impls["fastloss_value"]()
        outs: Dict[str, Tuple[float, np.ndarray]] = {}
        for base in [b for b in BASELINE_NAMES if b in impls]:
            try:
                v, gb = impls[base]()
                outs[base] = (float(v), _as_numpy(gb))
            except Exception as e:
                errors[base] = f"{type(e).__name__}: {e}"
                del impls[base]
        check = None
        if "numpy" in outs:
            check = _check(dt, float(fl_v), fl_g, float(fl_v_only), *outs["numpy"])
        pools = {"fastloss": "fastloss", "fastloss_value": "fastloss", "torch": "torch",
                 "sklearn": "sklearn"}
        timing = _measure(impls, budget, repeats, pools, budget["gap_s"] if t > 1 else 0.0)

    bytes_vg = y.nbytes + p.nbytes + g.nbytes
    bytes_v = y.nbytes + p.nbytes
    fl = timing["fastloss"]
    row: Dict[str, Any] = {
        "loss": nm, "params": loss.get_params(), "dtype": dt, "n": n, "threads": t,
        "fastloss_ms": fl["median_s"] * 1e3,
        "value_ms": timing["fastloss_value"]["median_s"] * 1e3,
        "bytes": bytes_vg, "value_bytes": bytes_v,
        "gbps": bytes_vg / fl["median_s"] / 1e9,
        "value_gbps": bytes_v / timing["fastloss_value"]["median_s"] / 1e9,
        "speedup": {}, "median_ms": {}, "check": check, "formulation": formulations,
        "errors": errors, "repeats": len(fl["times_s"]), "timing": timing,
    }
    for base in BASELINE_NAMES:
        if base in timing:
            row["speedup"][base] = _paired_speedup(timing[base]["times_s"], fl["times_s"])
            row["median_ms"][base] = timing[base]["median_s"] * 1e3
    return row


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _ratio(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def format_table(results: Dict[str, Any]) -> str:
    """The human-readable report of a ``run`` result (or of its JSON)."""
    env = results.get("env", {})
    bi = env.get("build_info", {})
    vers = env.get("versions", {})
    lines = []
    caches = ", ".join(f"{k} {v}" for k, v in env.get("caches", {}).items())
    lines.append(f"machine:  {env.get('cpu')}, {env.get('cpus_usable')} usable cores"
                 + (f" ({caches})" if caches else ""))
    load = env.get("loadavg_start"), env.get("loadavg_end")
    if load[0] is not None:
        lines.append("load avg: start " + " ".join(f"{x:.2f}" for x in load[0])
                     + (", end " + " ".join(f"{x:.2f}" for x in load[1]) if load[1] else ""))
    if load[0] is not None and load[0][0] - 1.0 > 0.5:  # minus this process itself
        lines.append(f"WARNING:  the machine was busy at the start (1-min load {load[0][0]:.1f} on "
                     f"{env.get('cpus_usable')} cores): other processes compete with the timed "
                     "threads; multi-threaded rows are the least reliable")
    lines.append(f"fastloss: {vers.get('fastloss')}, ISA {bi.get('isa_selected')} "
                 f"(compiled {','.join(bi.get('isa_compiled', []))}), OpenMP {bi.get('openmp')}, "
                 f"compiler {bi.get('compiler')}")
    lines.append("versions: " + ", ".join(f"{k} {v if v else 'not installed'}"
                                          for k, v in vers.items() if k != "fastloss"))
    tri = results.get("triad", {})
    if tri:
        tn = next(iter(tri.values())).get("n", TRIAD_N)
        lines.append(f"triad a = b + s*c over 3 x {tn:.0e} float64 (counted 3 x 8 B/elem), "
                     "fastest method, median of start+end runs:")
        for t, v in tri.items():
            others = ", ".join(f"{m} {x['gbps_median']:.1f}" for m, x in v.get("methods", {}).items())
            lines.append(f"  {t} thread{'s' if t != '1' else ' '}: {v['gbps_median']:.1f} GB/s "
                         f"({v['method']}; start {v['gbps_start']:.1f}, end {v['gbps_end']:.1f}"
                         + (f"; all methods: {others}" if others else "") + ")")
    lines.append("GB/s counts y_true + y_pred read and grad written once (12 B/elem float32, "
                 "24 float64); value only: 8/16. Speedups: median of per-repeat ratios "
                 "(baseline time / fastloss value+grad time).")
    params = {r["loss"]: r.get("params") for r in results.get("rows", [])}
    ps = ", ".join(f"{k}({', '.join(f'{a}={b}' for a, b in v.items())})" for k, v in params.items() if v)
    if ps:
        lines.append(f"params:   {ps}")
    lines.append("")

    head = ["loss", "dtype", "n", "thr", "v+g ms", "GB/s", "%triad", "value ms", "val %tri",
            "vs numpy", "vs torch", "vs sklearn", "check"]
    body = []
    for r in results.get("rows", []):
        chk = r.get("check")
        body.append([
            r["loss"], r["dtype"], _fmt_n(r["n"]), str(r["threads"]), _ms(r["fastloss_ms"]),
            f"{r['gbps']:.1f}", f"{r.get('pct_triad', float('nan')):.0f}%", _ms(r["value_ms"]),
            f"{r.get('value_pct_triad', float('nan')):.0f}%",
            _ratio(r["speedup"].get("numpy")), _ratio(r["speedup"].get("torch")),
            _ratio(r["speedup"].get("sklearn")),
            "—" if chk is None else ("OK" if chk["ok"] else
                                     f"FAIL (value {chk['value_rel_err']:.1e}, "
                                     f"grad {chk['grad_rel_err']:.1e})"),
        ])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    left = {0, 1, 12}

    def fmt(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    lines.append(fmt(head))
    lines.append(fmt(["-" * w for w in widths]))
    prev = None
    for cells in body:
        if prev is not None and cells[0] != prev:
            lines.append("")
        prev = cells[0]
        lines.append(fmt(cells))

    ov = results.get("overhead", [])
    if ov:
        lines.append("")
        by_dt: Dict[str, List[str]] = {}
        ref: Dict[str, float] = {}
        for o in ov:
            by_dt.setdefault(o["dtype"], []).append(
                f"{o['loss']} {o['us_per_call']:.2f}" + (f" ({o['us_min']:.2f})" if "us_min" in o else ""))
            ref[o["dtype"]] = o["numpy_ufunc_us"]
        lines.append("per-call overhead, value_and_grad(n=1000, grad_out=g), us per call, median (min):")
        for dt, items in by_dt.items():
            lines.append(f"  {dt}: " + ", ".join(items)
                         + f"   [one np.subtract(out=) call, median: {ref[dt]:.2f}]")
    errs = [(r["loss"], r["dtype"], r["n"], r["threads"], b, e)
            for r in results.get("rows", []) for b, e in r.get("errors", {}).items()]
    if errs or results.get("skipped"):
        lines.append("")
        seen = set()
        for loss, dt, n, t, b, e in errs:
            key = (loss, b, e)
            if key not in seen:
                seen.add(key)
                lines.append(f"note: {b} baseline for {loss} failed ({dt} n={_fmt_n(n)} t={t}): {e}")
        for s in results.get("skipped", []):
            lines.append(f"note: skipped {s['loss']}: {s['reason']}")
    lines.append("")
    lines.append(f"elapsed {results.get('elapsed_s', float('nan')):.1f} s")
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: prints the table; returns 1 when a correctness check failed, else 0."""
    ap = argparse.ArgumentParser(
        prog="fastloss bench",
        description="fastloss vs NumPy / PyTorch / scikit-learn and vs the measured memory "
                    "bandwidth (see bench/README.md).")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {','.join(_fmt_n(s) for s in QUICK_SIZES)} and fewer repeats")
    ap.add_argument("--json", metavar="FILE", help="save all results (raw timings too) as JSON")
    ap.add_argument("--losses", help="comma-separated loss names (default: every elementwise loss)")
    ap.add_argument("--sizes", help="comma-separated sizes, e.g. 1e3,1e5")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="float32,float64")
    ap.add_argument("--threads", default=",".join(map(str, THREADS)), help="e.g. 1,2")
    ap.add_argument("--repeats", type=int, help="fixed number of repeats (default adaptive)")
    ap.add_argument("--baselines", default=",".join(BASELINE_NAMES),
                    help="which of numpy,torch,sklearn to run (if installed)")
    ap.add_argument("--triad", default="auto", choices=("auto", "numexpr", "torch", "numpy"),
                    help="triad implementation for the bandwidth reference")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)

    try:
        losses = _parse_list(args.losses, str) if args.losses else None
        sizes = _parse_list(args.sizes, _size) if args.sizes else None
        threads = _parse_list(args.threads, int)
        dtypes = _parse_list(args.dtypes, str)
        baselines = _parse_list(args.baselines, str)
        bad = [b for b in baselines if b not in BASELINE_NAMES]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}; known: {', '.join(BASELINE_NAMES)}")
        if args.repeats is not None and args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
    except ValueError as e:
        ap.error(str(e))

    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        # Silent for short runs; after ~2 s, one line per measurement on stderr.
        el = time.perf_counter() - t0
        if not args.quiet and el > 2.0:
            print(f"  {el:6.1f}s  {msg}", file=sys.stderr, flush=True)

    try:
        res = run(losses=losses, sizes=sizes, dtypes=dtypes, threads=threads,
                  repeats=args.repeats, quick=args.quick, progress=progress,
                  baselines=baselines, triad_method=args.triad)
    except ValueError as e:
        print(f"fastloss bench: error: {e}", file=sys.stderr)
        return 2
    print(format_table(res))
    if losses is None:  # the whole benchmark: the multi-class kernels too
        bw = {int(t): v["gbps_median"] for t, v in res["triad"].items()}
        res["multiclass"] = run_multiclass(threads=threads, quick=args.quick, progress=progress,
                                           bandwidth=bw)
        print(format_multiclass_table(res["multiclass"]))
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(_jsonable(res), f, indent=1)
        print(f"saved {args.json}")
    failed = [r for r in res["rows"] if r.get("check") and not r["check"]["ok"]]
    failed += [r for r in res.get("multiclass", []) if not r["check_ok"]]
    if failed:
        print(f"{len(failed)} row(s) FAILED the correctness check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m fastloss.benchmark
    sys.exit(main())
