"""Multi-class (softmax) losses: SparseCategoricalCrossEntropy, CategoricalCrossEntropy and the
softmax utilities (logsumexp, softmax, log_softmax, smooth_labels, class_weights).

* Independent float64 NumPy references written in this file (log-softmax by max shift, the
  formulas of ``cpp/losses/cross_entropy.hpp`` re-derived as ``-sum_k w_k q_k log p_k``): every ISA,
  float32 and float64, every reduction, sample and class weights, label smoothing, ignore_index;
  gradients and Hessian diagonals against central finite differences of the reference.
* PyTorch (``F.cross_entropy``, ``F.nll_loss``, ``torch.logsumexp/softmax/log_softmax``) and
  scikit-learn (``log_loss``, ``HalfMultinomialLoss``, ``compute_class_weight``) cross-checks,
  skipped cleanly when not installed.
* Edge cases (+-inf, 1e30, NaN in ignored rows, all rows ignored, K = 1, K = 50 000, N = 1), label
  and parameter validation, in-place gradients (``grad_out=y_pred``), determinism (threads, ISAs),
  strided inputs and buffers, untouched buffers on error, hypothesis properties, the registry and
  the doctests.
"""

from __future__ import annotations

import doctest
import inspect
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl
import fastloss.multiclass

from conftest import AVAILABLE_ISAS, assert_bitwise_equal

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
IGNORE = -100  # PyTorch's default ignore_index
SENTINEL = -12345.0
# Relative tolerance per compute dtype; the absolute allowance is this times the scale of the
# compared array (its largest finite magnitude), so cancellation (p_t - 1) is covered.
TOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-14}


# --------------------------------------------------------------------------------------------------
# Independent float64 references
# --------------------------------------------------------------------------------------------------


def ref_log_softmax(z, axis=-1):
    """log-softmax in float64 by the max shift: (z - m) - log(sum(exp(z - m)))."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    s = z - m
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def ref_logsumexp(z, axis=-1):
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(z - m), axis=axis))


def ref_softmax(z, axis=-1):
    return np.exp(ref_log_softmax(z, axis))


def ref_cross_entropy(y_true, y_pred, *, dense, from_logits, class_weight=None, ignore_index=None,
                      label_smoothing=0.0, eps=1e-7, sample_weight=None, reduction="mean"):
    """(value, grad, hess) in float64, written from the definitions.

    Every variant is ``l = -sum_k w_k q_k log p_k`` with ``q`` the (smoothed) target row
    (``(1-a) onehot(t) + a/K`` for labels, ``(1-a) y + a/K`` for distributions), ``w`` the class
    weights and ``p = softmax(z)`` (logits) or ``max(y_pred, eps)`` (probabilities). Derivatives:
    logits ``(sum_j w_j q_j) p_k - w_k q_k`` and ``(sum_j w_j q_j) p_k (1 - p_k)``; probabilities
    ``-w_k q_k / p_k`` and ``w_k q_k / p_k^2``. Ignored rows contribute 0 and have zero
    derivatives. ``"mean"`` divides by sum(s w_t) over counted rows (labels) or sum(s) (targets),
    and is NaN with a zero gradient when that is 0; ``"none"`` returns the weighted rows and the
    derivatives of their sum.
    """
    x = np.asarray(y_pred, dtype=np.float64)
    K = x.shape[-1]
    x = x.reshape(-1, K)
    n = x.shape[0]
    a = float(label_smoothing)
    w = np.ones(K) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    if dense:
        y = np.asarray(y_true, dtype=np.float64).reshape(-1, K)
        keep = np.ones(n, dtype=bool)
        q = (1 - a) * y + a / K
        norm_w = np.ones(n)
    else:
        t = np.asarray(y_true).reshape(-1).astype(np.int64)
        keep = np.ones(n, dtype=bool) if ignore_index is None else t != ignore_index
        tt = np.where(keep, t, 0)
        q = np.full((n, K), a / K)
        q[np.arange(n), tt] += 1 - a
        q[~keep] = 0.0
        norm_w = w[tt] * keep
    wq = w * q
    with np.errstate(all="ignore"):
        if from_logits:
            lsm = ref_log_softmax(x)
            lsm[~keep] = 0.0  # whatever the logits of an ignored row
            p = np.exp(lsm)
            c = wq.sum(axis=-1, keepdims=True)
            loss = -np.sum(np.where(wq == 0, 0.0, wq * lsm), axis=-1)
            g = c * p - wq
            h = c * p * (1 - p)
        else:
            pc = np.maximum(x, eps)  # NaN propagates
            pc[~keep] = 1.0
            loss = -np.sum(np.where(wq == 0, 0.0, wq * np.log(pc)), axis=-1)
            g = -wq / pc
            h = wq / pc**2
    loss[~keep] = 0.0
    g[~keep] = 0.0
    h[~keep] = 0.0
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    rows = s * loss
    g = s[:, None] * g
    h = s[:, None] * h
    shape = np.shape(y_pred)
    if reduction == "none":
        return rows.reshape(shape[:-1]), g.reshape(shape), h.reshape(shape)
    total = float(np.sum(rows))
    if reduction == "sum":
        return total, g.reshape(shape), h.reshape(shape)
    norm = float(np.sum(s * norm_w))
    if norm == 0:
        return math.nan, np.zeros(shape), np.zeros(shape)
    return total / norm, (g / norm).reshape(shape), (h / norm).reshape(shape)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def assert_close(got, expected, dtype, what="", tol=None, scale=None):
    """``got`` (float or array of ``dtype``) equals the float64 ``expected`` within
    ``tol * (|expected| + scale)``; ``scale`` defaults to the largest finite |expected| (at least
    the smallest normal number). NaN and infinities must match exactly."""
    dtype = np.dtype(dtype)
    tol = TOL[dtype] if tol is None else tol
    if np.ndim(expected) == 0 and not isinstance(got, np.ndarray):
        assert isinstance(got, float), f"{what}: value is {type(got).__name__}, not float"
    else:
        got = np.asarray(got)
        assert got.shape == np.shape(expected), f"{what}: shape {got.shape} != {np.shape(expected)}"
        assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    g = np.asarray(got, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    fin = np.isfinite(e)
    if scale is None:
        scale = float(np.max(np.abs(e[fin]), initial=0.0))
    scale = max(scale, float(np.finfo(dtype).tiny))
    with np.errstate(all="ignore"):
        bad = np.isnan(g) != np.isnan(e)
        bad |= np.isinf(e) & (g != e)
        err = np.abs(g - e)
        bad |= fin & ~(err <= tol * (np.abs(e) + scale))
    if np.any(bad):
        idx = [tuple(i) for i in np.argwhere(np.atleast_1d(bad))[:5]]
        ga, ea = np.atleast_1d(g), np.atleast_1d(e)
        rows = "\n".join(f"  at {i}: got {ga[i]!r}, expected {ea[i]!r}" for i in idx)
        raise AssertionError(f"{what}: {int(np.sum(bad))} of {np.size(bad)} differ beyond "
                             f"tol {tol} (scale {scale:.3g}):\n{rows}")


def softmax64(z):
    return ref_softmax(z)


def make_labels(rng, n, K, ignore=False):
    t = rng.integers(0, K, size=n)
    if ignore:
        t[rng.random(n) < 0.25] = IGNORE
        t[0] = rng.integers(0, K)  # at least one counted row
    return t


def make_pred(rng, n, K, dtype, from_logits, scale=3.0):
    if from_logits:
        return rng.normal(scale=scale, size=(n, K)).astype(dtype)
    # probabilities far from the eps clamp (>= ~1e-4): rows of a mild softmax
    return softmax64(rng.normal(scale=1.0, size=(n, K))).astype(dtype)


def make_targets(rng, n, K, dtype):
    y = rng.dirichlet(np.ones(K), size=n)
    hard = np.arange(0, n, 3)  # some hard (one-hot) rows
    y[hard] = 0.0
    y[hard, rng.integers(0, K, size=hard.size)] = 1.0
    return y.astype(dtype)


def make_class_weight(rng, K):
    w = rng.uniform(0.2, 3.0, size=K)
    if K > 3:
        w[1] = 0.0  # a class with weight 0 (its rows count 0 in the mean)
    return w


def make_sample_weight(rng, n):
    s = rng.uniform(0.0, 2.0, size=n)
    s[-1] = 0.0
    return s


def all_outputs(loss, y, z, sw, reduction):
    """The value from __call__, value_and_grad, value_grad_hess; grad/hess from grad_hess."""
    v1 = loss(y, z, sample_weight=sw, reduction=reduction)
    v2, g2 = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
    v3, g3, h3 = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    g4, h4 = loss.grad_hess(y, z, sample_weight=sw, reduction=reduction)
    return (v1, v2, v3), (g2, g3, g4), (h3, h4)


def check_against_reference(loss, ref_kwargs, y, z, sw, reduction, dtype, what):
    ev, eg, eh = ref_cross_entropy(y, z, sample_weight=sw, reduction=reduction, **ref_kwargs)
    values, grads, hesses = all_outputs(loss, y, z, sw, reduction)
    for i, v in enumerate(values):
        if reduction == "none":
            assert_close(v, ev, dtype, f"{what} rows[{i}]")
        else:
            assert_close(v, ev, dtype, f"{what} value[{i}]",
                         scale=float(np.sum(np.abs(np.atleast_1d(ev)))))
    for i, g in enumerate(grads):
        assert_close(g, eg, dtype, f"{what} grad[{i}]")
    for i, h in enumerate(hesses):
        assert_close(h, eh, dtype, f"{what} hess[{i}]")
    # one body computes the value whatever derivatives are requested
    assert_bitwise_equal(values[0], values[1], f"{what}: __call__ vs value_and_grad")
    assert_bitwise_equal(values[0], values[2], f"{what}: __call__ vs value_grad_hess")
    assert_bitwise_equal(grads[0], grads[1], f"{what}: grad of value_and_grad vs value_grad_hess")


def sparse_loss(from_logits=True, cw=None, ignore_index=None, smoothing=0.0, eps=1e-7):
    loss = fl.SparseCategoricalCrossEntropy(from_logits=from_logits, class_weight=cw,
                                            ignore_index=ignore_index, label_smoothing=smoothing,
                                            eps=eps)
    ref = dict(dense=False, from_logits=from_logits, class_weight=cw, ignore_index=ignore_index,
               label_smoothing=smoothing, eps=eps)
    return loss, ref


def dense_loss(from_logits=True, cw=None, smoothing=0.0, eps=1e-7):
    loss = fl.CategoricalCrossEntropy(from_logits=from_logits, class_weight=cw,
                                      label_smoothing=smoothing, eps=eps)
    ref = dict(dense=True, from_logits=from_logits, class_weight=cw, label_smoothing=smoothing,
               eps=eps)
    return loss, ref


# --------------------------------------------------------------------------------------------------
# 1. Values, gradients and Hessians against the reference: every combination
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["a0", "a.1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["nosw", "sw"])
@pytest.mark.parametrize("use_cw", [False, True], ids=["nocw", "cw"])
@pytest.mark.parametrize("ignore", [False, True], ids=["noign", "ign"])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sparse_matches_reference(isa, dtype, from_logits, ignore, use_cw, weighted, smoothing,
                                  reduction, rng):
    for K in (5, 37):  # tail only, and vector body + tail
        n = 23
        t = make_labels(rng, n, K, ignore)
        z = make_pred(rng, n, K, dtype, from_logits)
        cw = make_class_weight(rng, K) if use_cw else None
        sw = make_sample_weight(rng, n) if weighted else None
        loss, ref = sparse_loss(from_logits, cw, IGNORE if ignore else None, smoothing)
        check_against_reference(loss, ref, t, z, sw, reduction, dtype, f"K={K}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["a0", "a.1"])
@pytest.mark.parametrize("weighted", [False, True], ids=["nosw", "sw"])
@pytest.mark.parametrize("use_cw", [False, True], ids=["nocw", "cw"])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dense_matches_reference(isa, dtype, from_logits, use_cw, weighted, smoothing, reduction,
                                 rng):
    for K in (5, 37):
        n = 23
        y = make_targets(rng, n, K, dtype)
        z = make_pred(rng, n, K, dtype, from_logits)
        cw = make_class_weight(rng, K) if use_cw else None
        sw = make_sample_weight(rng, n) if weighted else None
        loss, ref = dense_loss(from_logits, cw, smoothing)
        check_against_reference(loss, ref, y, z, sw, reduction, dtype, f"K={K}")


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_leading_axes_and_functionals(dtype, dense, rng):
    """(B, T, K) predictions with (B, T) labels; the functional shortcut equals the class."""
    K = 6
    z = rng.normal(scale=2.0, size=(3, 4, K)).astype(dtype)
    sw = rng.uniform(0.5, 1.5, size=(3, 4))
    cw = rng.uniform(0.5, 2.0, size=K)
    if dense:
        y = make_targets(rng, 12, K, dtype).reshape(3, 4, K)
        loss, ref = dense_loss(True, cw, 0.05)
        fn = lambda **kw: fl.categorical_cross_entropy(  # noqa: E731
            y, z, from_logits=True, class_weight=cw, label_smoothing=0.05, **kw)
    else:
        y = rng.integers(0, K, size=(3, 4))
        y[1, 2] = IGNORE
        loss, ref = sparse_loss(True, cw, IGNORE, 0.05)
        fn = lambda **kw: fl.sparse_categorical_cross_entropy(  # noqa: E731
            y, z, from_logits=True, class_weight=cw, ignore_index=IGNORE, label_smoothing=0.05,
            **kw)
    for reduction in REDUCTIONS:
        check_against_reference(loss, ref, y, z, sw, reduction, dtype, reduction)
        got = fn(sample_weight=sw, reduction=reduction)
        assert_bitwise_equal(got, loss(y, z, sample_weight=sw, reduction=reduction),
                             f"functional {reduction}")
    rows = loss(y, z, reduction="none")
    assert rows.shape == (3, 4) and rows.dtype == dtype


def test_mixed_input_dtypes(rng):
    """Labels of any integer dtype; targets and sample weights float32 or float64 independently of
    y_pred."""
    K, n = 7, 19
    z = rng.normal(size=(n, K))
    t = rng.integers(0, K, size=n)
    sw = rng.uniform(0.1, 1.0, size=n)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    base = loss.value_and_grad(t, z, sample_weight=sw)
    for ldt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        for sdt in (np.float32, np.float64):
            v, g = loss.value_and_grad(t.astype(ldt), z, sample_weight=sw.astype(sdt))
            ev, eg, _ = ref_cross_entropy(t, z, dense=False, from_logits=True,
                                          sample_weight=sw.astype(sdt))
            assert_close(v, ev, np.float64, f"labels {np.dtype(ldt)} sw {np.dtype(sdt)}")
            assert_close(g, eg, np.float64, f"grad labels {np.dtype(ldt)}")
            if sdt is np.float64:
                assert_bitwise_equal(v, base[0], f"labels {np.dtype(ldt)}")
    # python lists of labels
    assert_bitwise_equal(loss(list(t), z), loss(t, z), "list labels")
    # float64 targets with float32 logits (targets are used at y_pred's precision)
    y = make_targets(rng, n, K, np.float64)
    z32 = z.astype(np.float32)
    d = fl.CategoricalCrossEntropy(from_logits=True)
    v, g = d.value_and_grad(y, z32)
    ev, eg, _ = ref_cross_entropy(y.astype(np.float32), z32, dense=True, from_logits=True)
    assert_close(v, ev, np.float32, "f64 targets / f32 logits")
    assert g.dtype == np.float32
    assert_close(g, eg, np.float32, "grad f64 targets / f32 logits")


def test_out_buffer_for_rows(rng):
    K, n = 5, 11
    z = rng.normal(size=(n, K)).astype(np.float32)
    t = rng.integers(0, K, size=n)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    out = np.full(n, SENTINEL, dtype=np.float32)
    got = loss(t, z, reduction="none", out=out)
    assert got is out
    ev, _, _ = ref_cross_entropy(t, z, dense=False, from_logits=True, reduction="none")
    assert_close(out, ev, np.float32, "out=")
    big = np.full(2 * n, SENTINEL, dtype=np.float32)  # strided out
    got = loss(t, z, reduction="none", out=big[::2])
    assert_bitwise_equal(big[::2], out, "strided out=")
    assert np.all(big[1::2] == SENTINEL)
    with pytest.raises(ValueError, match="out="):
        loss(t, z, reduction="mean", out=out)


def test_empty_input():
    for dtype in DTYPES:
        z = np.zeros((0, 4), dtype=dtype)
        for loss, y in ((fl.SparseCategoricalCrossEntropy(from_logits=True), np.zeros(0, np.int64)),
                        (fl.CategoricalCrossEntropy(from_logits=True), np.zeros((0, 4), dtype))):
            assert math.isnan(loss(y, z))
            assert loss(y, z, reduction="sum") == 0.0
            v, g = loss.value_and_grad(y, z)
            assert math.isnan(v) and g.shape == (0, 4) and g.dtype == dtype
            assert loss(y, z, reduction="none").shape == (0,)


# --------------------------------------------------------------------------------------------------
# Derivatives against central finite differences of the float64 reference
# --------------------------------------------------------------------------------------------------

FD_CONFIGS = {
    "sparse-logits-plain": dict(dense=False, from_logits=True),
    "sparse-logits-all": dict(dense=False, from_logits=True, cw=True, ignore=True, smoothing=0.2,
                              sw=True),
    "sparse-probs-all": dict(dense=False, from_logits=False, cw=True, ignore=True, smoothing=0.2,
                             sw=True),
    "dense-logits-all": dict(dense=True, from_logits=True, cw=True, smoothing=0.2, sw=True),
    "dense-probs-all": dict(dense=True, from_logits=False, cw=True, smoothing=0.2, sw=True),
}


def _fd_setup(rng, cfg, n=5, K=4):
    dense, from_logits = cfg["dense"], cfg["from_logits"]
    cw = rng.uniform(0.5, 2.0, size=K) if cfg.get("cw") else None
    sw = rng.uniform(0.5, 2.0, size=n) if cfg.get("sw") else None
    a = cfg.get("smoothing", 0.0)
    if from_logits:
        z = rng.normal(scale=1.5, size=(n, K))
    else:
        z = softmax64(rng.normal(scale=0.5, size=(n, K)))  # p >= ~0.05: far from the clamp
    if dense:
        y = make_targets(rng, n, K, np.float64)
        loss, ref = dense_loss(from_logits, cw, a)
    else:
        y = rng.integers(0, K, size=n)
        ign = IGNORE if cfg.get("ignore") else None
        if ign is not None:
            y[2] = IGNORE
        loss, ref = sparse_loss(from_logits, cw, ign, a)
    return loss, ref, y, z, sw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("cfg", list(FD_CONFIGS), ids=list(FD_CONFIGS))
def test_gradient_and_hessian_vs_finite_differences(cfg, reduction, rng):
    loss, ref, y, z, sw = _fd_setup(rng, FD_CONFIGS[cfg])

    def f(x):  # the reduced reference value ("none": the sum of the rows)
        v, _, _ = ref_cross_entropy(y, x, sample_weight=sw, reduction=reduction, **ref)
        return float(np.sum(v))

    def ref_grad(x):
        return ref_cross_entropy(y, x, sample_weight=sw, reduction=reduction, **ref)[1]

    fd_g = np.zeros_like(z)
    fd_h = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        step = 1e-5 * max(1.0, abs(z[i])) if ref["from_logits"] else 1e-6 * z[i]
        zp, zm = z.copy(), z.copy()
        zp[i] += step
        zm[i] -= step
        fd_g[i] = (f(zp) - f(zm)) / (2 * step)
        fd_h[i] = (ref_grad(zp)[i] - ref_grad(zm)[i]) / (2 * step)
    _, eg, eh = ref_cross_entropy(y, z, sample_weight=sw, reduction=reduction, **ref)
    # the reference's analytic derivatives are those of its own value
    np.testing.assert_allclose(eg, fd_g, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd_g)))
    np.testing.assert_allclose(eh, fd_h, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd_h)))
    # fastloss's gradient and Hessian diagonal against the finite differences
    _, g = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
    gh, h = loss.grad_hess(y, z, sample_weight=sw, reduction=reduction)
    for what, got in (("grad", g), ("grad of grad_hess", gh)):
        np.testing.assert_allclose(got, fd_g, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd_g)),
                                   err_msg=what)
    np.testing.assert_allclose(h, fd_h, rtol=1e-6, atol=1e-8 * np.max(np.abs(fd_h)),
                               err_msg="hess")
    # and finite differences of fastloss's own value
    for i in [(0, 0), (1, 3), (4, 2)]:
        step = 1e-5 if ref["from_logits"] else 1e-6 * z[i]
        zp, zm = z.copy(), z.copy()
        zp[i] += step
        zm[i] -= step
        d = (np.sum(loss(y, zp, sample_weight=sw, reduction=reduction))
             - np.sum(loss(y, zm, sample_weight=sw, reduction=reduction))) / (2 * step)
        assert abs(d - g[i]) <= 1e-6 * max(1.0, abs(g[i])), (i, d, g[i])


# --------------------------------------------------------------------------------------------------
# 2. PyTorch and scikit-learn cross-checks
# --------------------------------------------------------------------------------------------------

TORCH_TOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 5e-14}


def _torch_run(fn, z, reduction):
    torch = pytest.importorskip("torch")
    zt = torch.from_numpy(z.copy()).requires_grad_(True)
    out = fn(zt)
    out.sum().backward()
    value = out.detach().numpy()
    return (float(value) if reduction != "none" else value), zt.grad.numpy()


def _compare_torch(v, g, tv, tg, dtype, what):
    tol = TORCH_TOL[np.dtype(dtype)]
    if isinstance(tv, float):
        assert_close(v, tv, np.float64, f"{what} value", tol=tol)
    else:
        assert_close(v, tv, dtype, f"{what} rows", tol=tol)
    assert_close(g, tg, dtype, f"{what} grad", tol=tol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [IGNORE, 2], ids=["ign-100", "ign2"])
@pytest.mark.parametrize("config", ["all", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_cross_entropy_labels(dtype, config, ignore_index, reduction, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, K = 41, 7
    z = rng.normal(scale=3.0, size=(n, K)).astype(dtype)
    t = rng.integers(0, K, size=n)
    t[rng.random(n) < 0.2] = ignore_index
    t[0] = 4
    cw = rng.uniform(0.2, 3.0, size=K) if config == "all" else None
    a = 0.15 if config == "all" else 0.0
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw,
                                            ignore_index=ignore_index, label_smoothing=a)
    v, g = loss.value_and_grad(t, z, reduction=reduction)
    weight = None if cw is None else torch.from_numpy(cw.astype(dtype))
    tv, tg = _torch_run(lambda zt: F.cross_entropy(
        zt, torch.from_numpy(t), weight=weight, ignore_index=ignore_index, label_smoothing=a,
        reduction=reduction), z, reduction)
    _compare_torch(v, g, tv, tg, dtype, f"{config}/{reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("config", ["all", "plain"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_cross_entropy_probability_targets(dtype, config, reduction, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, K = 29, 6
    z = rng.normal(scale=3.0, size=(n, K)).astype(dtype)
    y = make_targets(rng, n, K, dtype)
    cw = rng.uniform(0.2, 3.0, size=K) if config == "all" else None
    a = 0.15 if config == "all" else 0.0
    loss = fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=a)
    v, g = loss.value_and_grad(y, z, reduction=reduction)
    weight = None if cw is None else torch.from_numpy(cw.astype(dtype))
    tv, tg = _torch_run(lambda zt: F.cross_entropy(
        zt, torch.from_numpy(y), weight=weight, label_smoothing=a, reduction=reduction), z,
        reduction)
    _compare_torch(v, g, tv, tg, dtype, f"{config}/{reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_nll_loss_on_probabilities(dtype, reduction, rng):
    """nll_loss(log p) equals SparseCategoricalCrossEntropy(from_logits=False)(p) where the eps
    clamp is inactive; the gradient with respect to p as well."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    n, K = 33, 5
    p = softmax64(rng.normal(size=(n, K))).astype(dtype)
    assert p.min() > 1e-4
    t = rng.integers(0, K, size=n)
    t[::7] = IGNORE
    cw = rng.uniform(0.2, 3.0, size=K)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=False, class_weight=cw, ignore_index=IGNORE)
    v, g = loss.value_and_grad(t, p, reduction=reduction)
    tv, tg = _torch_run(lambda pt: F.nll_loss(
        torch.log(pt), torch.from_numpy(t), weight=torch.from_numpy(cw.astype(dtype)),
        ignore_index=IGNORE, reduction=reduction), p, reduction)
    _compare_torch(v, g, tv, tg, dtype, reduction)
    # without weights, torch's default ignore_index never matches our labels
    plain = fl.SparseCategoricalCrossEntropy(from_logits=False)
    t2 = rng.integers(0, K, size=n)
    tv2, _ = _torch_run(lambda pt: F.nll_loss(torch.log(pt), torch.from_numpy(t2),
                                              reduction=reduction), p, reduction)
    got = plain(t2, p, reduction=reduction)
    if reduction == "none":
        assert_close(got, tv2, dtype, "plain rows", tol=TORCH_TOL[np.dtype(dtype)])
    else:
        assert_close(got, tv2, np.float64, "plain", tol=TORCH_TOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_softmax_utilities(isa, dtype, rng):
    torch = pytest.importorskip("torch")
    x = (rng.normal(size=(4, 5, 37)) * rng.choice([1.0, 30.0, 300.0], size=(4, 5, 1))).astype(dtype)
    tol = TORCH_TOL[np.dtype(dtype)]
    xt = torch.from_numpy(x)
    for axis in (-1, 0, 1):
        lse = fl.logsumexp(x, axis=axis)
        sm = fl.softmax(x, axis=axis)
        lsm = fl.log_softmax(x, axis=axis)
        assert_close(lse, torch.logsumexp(xt, dim=axis).numpy(), dtype, f"logsumexp {axis}",
                     tol=tol)
        assert_close(sm, torch.softmax(xt, dim=axis).numpy(), dtype, f"softmax {axis}", tol=tol,
                     scale=1.0)
        assert_close(lsm, torch.log_softmax(xt, dim=axis).numpy(), dtype, f"log_softmax {axis}",
                     tol=tol)
        # and the float64 references
        assert_close(lse, ref_logsumexp(x, axis), dtype, f"ref logsumexp {axis}")
        assert_close(sm, ref_softmax(x, axis), dtype, f"ref softmax {axis}", scale=1.0)
        assert_close(lsm, ref_log_softmax(x, axis), dtype, f"ref log_softmax {axis}")


def _log_loss(sklearn_metrics, y, p, **kw):
    params = inspect.signature(sklearn_metrics.log_loss).parameters
    if "y_proba" in params:
        return sklearn_metrics.log_loss(y, y_proba=p, **kw)
    return sklearn_metrics.log_loss(y, p, **kw)


@pytest.mark.parametrize("weighted", [False, True], ids=["nosw", "sw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sklearn_log_loss(dtype, weighted, rng):
    metrics = pytest.importorskip("sklearn.metrics")
    n, K = 50, 4
    p = softmax64(rng.normal(size=(n, K)))
    t = rng.integers(0, K, size=n)
    sw = rng.uniform(0.1, 2.0, size=n) if weighted else None
    expected = _log_loss(metrics, t, p, labels=np.arange(K), sample_weight=sw)
    got = fl.SparseCategoricalCrossEntropy()(t, p.astype(dtype), sample_weight=sw)
    tol = 1e-12 if dtype is np.float64 else 1e-6  # p rounded to float32
    assert_close(got, expected, np.float64, "log_loss", tol=tol)
    total = fl.sparse_categorical_cross_entropy(t, p, sample_weight=sw, reduction="sum")
    exp_total = _log_loss(metrics, t, p, labels=np.arange(K), sample_weight=sw, normalize=False)
    assert_close(total, exp_total, np.float64, "log_loss normalize=False")


@pytest.mark.parametrize("weighted", [False, True], ids=["nosw", "sw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sklearn_half_multinomial_loss(dtype, weighted, rng):
    """sklearn's HalfMultinomialLoss (not halved for multiclass): gradient p - onehot, hessian
    p (1 - p) (the diagonal), both times the sample weight: our reduction="sum"."""
    pytest.importorskip("sklearn")
    from sklearn._loss.loss import HalfMultinomialLoss

    n, K = 37, 5
    z = rng.normal(scale=2.0, size=(n, K)).astype(dtype)
    t = rng.integers(0, K, size=n)
    sw = rng.uniform(0.1, 2.0, size=n).astype(dtype) if weighted else None
    sk = HalfMultinomialLoss(n_classes=K)
    sg, sh = sk.gradient_hessian(y_true=t.astype(dtype), raw_prediction=z, sample_weight=sw)
    sl = sk.loss(y_true=t.astype(dtype), raw_prediction=z, sample_weight=sw)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    g, h = loss.grad_hess(t, z, sample_weight=sw, reduction="sum")
    rows = loss(t, z, sample_weight=sw, reduction="none")
    tol = TORCH_TOL[np.dtype(dtype)]
    assert_close(g, np.asarray(sg, np.float64), dtype, "gradient", tol=tol)
    assert_close(h, np.asarray(sh, np.float64), dtype, "hessian", tol=tol)
    assert_close(rows, np.asarray(sl, np.float64), dtype, "loss", tol=tol)


def test_sklearn_compute_class_weight(rng):
    pytest.importorskip("sklearn")
    from sklearn.utils.class_weight import compute_class_weight

    for K, n in ((3, 40), (7, 500), (2, 9)):
        y = rng.integers(0, K, size=n)
        y[:K] = np.arange(K)  # every class present
        expected = compute_class_weight("balanced", classes=np.arange(K), y=y)
        np.testing.assert_allclose(fl.class_weights(y), expected, rtol=1e-14, atol=0)
        np.testing.assert_allclose(fl.class_weights(y, "inverse", num_classes=K), expected,
                                   rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# Utilities: logsumexp / softmax / log_softmax / smooth_labels / class_weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_utilities_edge_values(isa, dtype):
    inf = np.inf
    x = np.array([[inf, 0.0, 1.0], [inf, inf, -inf], [-inf, 0.0, 0.0], [1e30, -1e30, 0.0],
                  [-inf, -inf, -inf]], dtype=dtype)
    lse = fl.logsumexp(x)
    np.testing.assert_array_equal(lse[:2], [inf, inf])
    assert lse[2] == pytest.approx(math.log(2), rel=1e-6)
    assert lse[3] == np.float32(1e30) if dtype is np.float32 else lse[3] == 1e30
    assert lse[4] == -inf
    sm = fl.softmax(x)
    np.testing.assert_array_equal(sm[0], [1, 0, 0])
    np.testing.assert_array_equal(sm[1], [0.5, 0.5, 0])
    np.testing.assert_allclose(sm[2], [0, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(sm[3], [1, 0, 0])
    assert np.all(np.isnan(sm[4]))  # documented: a row of -inf only has no softmax
    lsm = fl.log_softmax(x)
    np.testing.assert_array_equal(lsm[0], [0, -inf, -inf])
    assert lsm[3, 0] == 0 and lsm[3, 1] == -np.asarray(2e30, dtype)
    # NaN stays in its row
    y = np.array([[np.nan, 1.0], [0.0, 0.0]], dtype=dtype)
    assert np.isnan(fl.logsumexp(y)[0]) and fl.logsumexp(y)[1] == pytest.approx(math.log(2))
    np.testing.assert_allclose(fl.softmax(y)[1], [0.5, 0.5])
    # 1-D input, scalar logsumexp
    assert float(fl.logsumexp(np.zeros(4, dtype))) == pytest.approx(math.log(4), rel=1e-6)
    with pytest.raises(ValueError):
        fl.softmax(np.float64(1.0))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_softmax_accuracy_with_large_offset(isa, dtype, rng):
    """log_softmax is shift invariant and accurate in the scale of its output: ``(x - m) -
    log(sum(exp(x - m)))`` (scipy.special.log_softmax, torch, jax) errs by a few eps * (1 +
    |log p|) whatever the offset m of the row; ``x - fl(logsumexp(x))`` errs by ulp(m)."""
    e = float(np.finfo(dtype).eps)
    offsets = [0.0, 100.0, 1000.0, 1e4] if dtype is np.float32 else [0.0, 1e6, 1e10]
    base = rng.normal(scale=3.0, size=(8, 10))
    for c in offsets:
        x = (base + c).astype(dtype)
        expected = ref_log_softmax(x)
        got = fl.log_softmax(x).astype(np.float64)
        err = np.abs(got - expected)
        allow = 8 * e * (1 + np.abs(expected))
        i = np.unravel_index(np.argmax(err / allow), err.shape)
        assert np.all(err <= allow), (
            f"offset {c}: at {i} got {got[i]!r}, expected {expected[i]!r} "
            f"(error {err[i]:.3g} > {allow[i]:.3g})")


def test_softmax_utilities_strided_and_large_k(rng):
    x = rng.normal(scale=5.0, size=(6, 50_000))
    assert_close(fl.logsumexp(x), ref_logsumexp(x), np.float64, "lse K=50000")
    assert_close(fl.softmax(x), ref_softmax(x), np.float64, "softmax K=50000", scale=1.0)
    base = rng.normal(size=(9, 14))
    for view in (base[:, ::2], base[::2], np.asfortranarray(base), base.T, base[::-1]):
        assert_bitwise_equal(fl.softmax(view), fl.softmax(np.ascontiguousarray(view)), "softmax")
        assert_bitwise_equal(fl.log_softmax(view), fl.log_softmax(np.ascontiguousarray(view)),
                             "log_softmax")
        assert_bitwise_equal(fl.logsumexp(view), fl.logsumexp(np.ascontiguousarray(view)), "lse")


def test_smooth_labels():
    y = np.array([0, 2, 1, 2])
    got = fl.smooth_labels(y, 0.1)
    np.testing.assert_allclose(got, 0.9 * np.eye(3)[y] + 0.1 / 3, rtol=1e-15)
    got = fl.smooth_labels(y, 0.2, num_classes=5)
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, 0.8 * np.eye(5)[y] + 0.04, rtol=1e-15)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-15)
    soft = np.array([[0.7, 0.3], [0.5, 0.5]], dtype=np.float32)
    got = fl.smooth_labels(soft, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 0.5 * soft + 0.25, rtol=1e-7)
    # equals CategoricalCrossEntropy's internal smoothing
    z = np.array([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]])
    t = np.array([2, 0])
    assert fl.CategoricalCrossEntropy(from_logits=True)(fl.smooth_labels(t, 0.3), z) == \
        pytest.approx(fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=0.3)(t, z),
                      rel=1e-14)
    with pytest.raises(ValueError):
        fl.smooth_labels(y, 1.0)
    with pytest.raises(ValueError):
        fl.smooth_labels(np.array([0, 3]), 0.1, num_classes=3)
    with pytest.raises(ValueError):
        fl.smooth_labels(np.array([0, -1]), 0.1, num_classes=3)


def test_class_weights_schemes():
    y = np.array([0, 0, 0, 0, 1, 1, 3, 0, 1, 0])  # class 2 absent
    n = y.size
    counts = np.bincount(y, minlength=4).astype(float)
    for scheme, raw in (("inverse", lambda c: 1 / c), ("inverse_sqrt", lambda c: c**-0.5),
                        ("effective", lambda c: (1 - 0.9) / (1 - 0.9**c))):
        w = fl.class_weights(y, scheme, beta=0.9)
        assert w.shape == (4,)
        assert w[2] == 0.0
        present = counts > 0
        expected = np.zeros(4)
        expected[present] = raw(counts[present])
        expected *= n / np.dot(counts, expected)
        np.testing.assert_allclose(w, expected, rtol=1e-14)
        assert np.dot(counts, w) == pytest.approx(n, rel=1e-14)
    assert fl.class_weights(y, num_classes=6).shape == (6,)
    np.testing.assert_allclose(fl.class_weights(y, "effective", beta=0.0)[[0, 1, 3]], 1.0)
    sklearn_weights = pytest.importorskip("sklearn.utils.class_weight")
    balanced = sklearn_weights.compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y)
    np.testing.assert_allclose(fl.class_weights(y)[[0, 1, 3]], balanced, rtol=1e-14)
    with pytest.raises(TypeError):
        fl.class_weights(y.astype(float))
    with pytest.raises(ValueError):
        fl.class_weights(np.array([0, -1]))
    with pytest.raises(ValueError):
        fl.class_weights(y, "bogus")
    with pytest.raises(ValueError):
        fl.class_weights(y, "effective", beta=1.0)
    with pytest.raises(ValueError):
        fl.class_weights(y, num_classes=3)


# --------------------------------------------------------------------------------------------------
# 3. Edge cases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_infinite_and_huge_logits(isa, dtype):
    inf = np.inf
    z = np.array([[1e30, -1e30, 0.0],   # t=0: 0
                  [1e30, -1e30, 0.0],   # t=1: 2e30
                  [-1e30, 0.0, 1e30],   # t=2: 0
                  [-inf, 2.0, 0.0],     # t=1: finite
                  [inf, -inf, 0.0],     # t=2: +inf elsewhere -> inf
                  [0.0, 1.0, -1.0]], dtype=dtype)
    t = np.array([0, 1, 2, 1, 2, 0])
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    rows, g = loss.value_and_grad(t, z, reduction="none")
    l3 = math.log1p(math.exp(-2.0))
    expected = [0.0, 2e30, 0.0, l3, inf, ref_cross_entropy(
        t[5:], z[5:], dense=False, from_logits=True, reduction="sum")[0]]
    assert_close(rows, np.array(expected), dtype, "rows", scale=1.0)
    np.testing.assert_array_equal(g[0], [0, 0, 0])
    np.testing.assert_array_equal(g[1], [1, -1, 0])
    np.testing.assert_array_equal(g[2], [0, 0, 0])
    np.testing.assert_array_equal(g[4], [1, 0, -1])  # the limit of p - onehot
    assert not np.any(np.isnan(g))
    _, gs = loss.value_and_grad(t[5:], z[5:], reduction="sum")
    np.testing.assert_array_equal(g[5], gs[0])  # other rows unaffected
    assert loss(t, z, reduction="sum") == inf
    assert loss(t[:4], z[:4], reduction="sum") == pytest.approx(2e30 + l3, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dense_targets_vector_groups_with_minus_inf(isa, dtype, rng):
    """Dense targets on rows wider than one 16-lane group (the lane sums of the targets' terms,
    and a tail): zero target mass on -inf classes in the groups and in the tail stays finite,
    with class weights and label smoothing (which needs a zero class weight there)."""
    n, K = 6, 37
    z = rng.normal(scale=2.0, size=(n, K)).astype(dtype)
    dead = [3, 17, 34]  # first group, second group, tail
    z[:, dead] = -np.inf
    y = rng.uniform(size=(n, K)).astype(dtype)
    y[:, dead] = 0
    y /= y.sum(axis=1, keepdims=True)
    y[0] = 0
    y[0, 20] = 1  # one-hot
    finite = np.where(np.isinf(z), -1e300, z.astype(np.float64))
    cw = rng.uniform(0.5, 2.0, size=K)
    cw[dead] = 0.0
    for loss, kw in ((fl.CategoricalCrossEntropy(from_logits=True), {}),
                     (fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=0.2),
                      dict(class_weight=cw, label_smoothing=0.2))):
        v, g = loss.value_and_grad(y, z, reduction="sum")
        ev, eg, _ = ref_cross_entropy(y, finite, dense=True, from_logits=True, reduction="sum", **kw)
        assert math.isfinite(v)
        assert_close(v, ev, dtype, "value", scale=ev)
        assert_close(g, eg, dtype, "grad")
        assert np.all(g[:, dead] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_class_at_minus_inf_not_target(isa, dtype):
    z = np.array([[1.0, -np.inf, 0.5, -2.0], [0.0, -np.inf, -np.inf, 3.0]], dtype=dtype)
    t = np.array([2, 3])
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    v, g, h = loss.value_grad_hess(t, z, reduction="sum")
    finite = np.where(np.isinf(z), -1e300, z.astype(np.float64))  # exp(-1e300) == 0
    ev, eg, eh = ref_cross_entropy(t, finite, dense=False, from_logits=True, reduction="sum")
    assert math.isfinite(v)
    assert_close(v, ev, dtype, "value", scale=ev)
    assert_close(g, eg, dtype, "grad")
    assert_close(h, eh, dtype, "hess")
    assert g[0, 1] == 0 and g[1, 1] == 0 and g[1, 2] == 0 and h[0, 1] == 0
    # dense targets with zero mass on the -inf class: finite as well
    y = np.array([[0.2, 0.0, 0.8, 0.0], [0.5, 0.0, 0.0, 0.5]], dtype=dtype)
    d = fl.CategoricalCrossEntropy(from_logits=True)
    v, g = d.value_and_grad(y, z, reduction="sum")
    ev, eg, _ = ref_cross_entropy(y, finite, dense=True, from_logits=True, reduction="sum")
    assert_close(v, ev, dtype, "dense value", scale=ev)
    assert_close(g, eg, dtype, "dense grad")
    assert g[0, 1] == 0 and g[1, 2] == 0
    # smoothing puts mass on the -inf class: infinite loss unless its class weight is 0
    assert loss.__class__(from_logits=True, label_smoothing=0.1)(t, z) == np.inf
    cw = np.array([1.0, 0.0, 1.0, 1.0])
    sm = fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=0.1, class_weight=cw)
    v, g = sm.value_and_grad(t[:1], z[:1], reduction="sum")
    ev, eg, _ = ref_cross_entropy(t[:1], finite[:1], dense=False, from_logits=True,
                                  label_smoothing=0.1, class_weight=cw, reduction="sum")
    assert math.isfinite(v)
    assert_close(v, ev, dtype, "smoothed, weight 0", scale=ev)
    assert_close(g, eg, dtype, "smoothed grad, weight 0")
    assert g[0, 1] == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_target_logit_plus_inf(isa, dtype):
    inf = np.inf
    z = np.array([[0.0, inf, 3.0], [inf, inf, 1.0], [inf, 5.0, inf]], dtype=dtype)
    t = np.array([1, 0, 1])
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    rows, g, h = loss.value_grad_hess(t, z, reduction="none")
    assert rows[0] == 0.0  # the only +inf logit is the target
    assert rows[1] == pytest.approx(math.log(2), rel=1e-6)  # shared with another +inf
    assert rows[2] == inf  # the target is finite, another class +inf
    np.testing.assert_array_equal(g[0], [0, 0, 0])
    np.testing.assert_array_equal(h[0], [0, 0, 0])
    np.testing.assert_allclose(g[1], [-0.5, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(h[1], [0.25, 0.25, 0.0], rtol=1e-6)
    np.testing.assert_allclose(g[2], [0.5, -1.0, 0.5], rtol=1e-6)
    assert not np.any(np.isnan(g)) and not np.any(np.isnan(h))
    # dense target on the +inf class
    y = np.array([[0.0, 1.0, 0.0]], dtype=dtype)
    v, gd = fl.CategoricalCrossEntropy(from_logits=True).value_and_grad(y, z[:1])
    assert v == 0.0
    np.testing.assert_array_equal(gd, np.zeros((1, 3)))


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_ignored_row_with_inf_or_nan_contributes_nothing(isa, dtype, from_logits, rng):
    K = 4
    z = make_pred(rng, 5, K, dtype, from_logits)
    if from_logits:
        z[1] = [np.nan, -np.inf, 1.0, np.inf]
        z[3] = [-np.inf, -np.inf, -np.inf, -np.inf]
    else:  # probabilities outside [0, 1] are an error, ignored row or not
        z[1] = [np.nan, 0.0, 1.0, 0.0]
        z[3] = [0.0, 0.0, 0.0, 0.0]
    t = np.array([0, IGNORE, 3, IGNORE, 2])
    cw = [1.0, 2.0, 0.5, 1.5]
    for a in (0.0, 0.1):
        loss = fl.SparseCategoricalCrossEntropy(from_logits=from_logits, ignore_index=IGNORE,
                                                class_weight=cw, label_smoothing=a)
        keep = t != IGNORE
        for reduction in REDUCTIONS:
            v, g, h = loss.value_grad_hess(t, z, reduction=reduction)
            assert not np.any(np.isnan(v)), reduction
            assert not np.any(np.isnan(g)) and not np.any(np.isnan(h)), reduction
            np.testing.assert_array_equal(g[~keep], 0)
            np.testing.assert_array_equal(h[~keep], 0)
            ev, eg, _ = ref_cross_entropy(t[keep], z[keep], dense=False, from_logits=from_logits,
                                          class_weight=cw, label_smoothing=a,
                                          reduction=reduction)
            if reduction == "none":
                assert np.all(v[~keep] == 0)
                assert_close(v[keep], ev, dtype, "rows")
            else:
                assert_close(v, ev, dtype, reduction, scale=abs(ev))
            assert_close(g[keep], eg, dtype, f"grad {reduction}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_all_rows_ignored(dtype, rng):
    z = rng.normal(size=(4, 3)).astype(dtype)
    z[0, 0] = np.nan
    t = np.full(4, IGNORE)
    for from_logits in (True, False):
        loss = fl.SparseCategoricalCrossEntropy(from_logits=from_logits, ignore_index=IGNORE,
                                                label_smoothing=0.1)
        if not from_logits:
            z = np.abs(z) / (1 + np.abs(z))  # probabilities (the NaN stays)
        v, g, h = loss.value_grad_hess(t, z)
        assert math.isnan(v)
        np.testing.assert_array_equal(g, 0)
        np.testing.assert_array_equal(h, 0)
        assert loss(t, z, reduction="sum") == 0.0
        np.testing.assert_array_equal(loss(t, z, reduction="none"), np.zeros(4))
        _, g = loss.value_and_grad(t, z, reduction="sum")
        np.testing.assert_array_equal(g, 0)
    # zero sample weights also give an empty mean
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    v, g = loss.value_and_grad(np.array([0, 1, 2, 0]), np.nan_to_num(z), sample_weight=np.zeros(4))
    assert math.isnan(v)
    np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_single_class(isa, dtype, rng):
    z = rng.normal(scale=10, size=(7, 1)).astype(dtype)
    for a in (0.0, 0.3):
        for loss, y in ((fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=a),
                         np.zeros(7, np.int64)),
                        (fl.CategoricalCrossEntropy(from_logits=True, label_smoothing=a),
                         np.ones((7, 1), dtype))):
            for reduction in REDUCTIONS:
                v, g, h = loss.value_grad_hess(y, z, reduction=reduction)
                np.testing.assert_array_equal(v, 0.0 if reduction != "none" else np.zeros(7))
                np.testing.assert_array_equal(h, np.zeros((7, 1)))
                if a == 0.0:
                    np.testing.assert_array_equal(g, np.zeros((7, 1)))
                else:  # c p - a/K - (1-a) with c = (1-a) + a: only the rounding of (1-a) + a
                    assert np.all(np.abs(g) <= 2 * np.finfo(dtype).eps), (a, reduction, g)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        fl.SparseCategoricalCrossEntropy(from_logits=True)(np.array([1]), z[:1])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_large_number_of_classes(dtype, rng):
    K = 50_000
    z = rng.normal(scale=4.0, size=(3, K)).astype(dtype)
    t = np.array([0, 49_999, 12_345])
    cw = rng.uniform(0.5, 2.0, size=K)
    sw = np.array([1.0, 0.5, 2.0])
    loss, ref = sparse_loss(True, cw, None, 0.1)
    check_against_reference(loss, ref, t, z, sw, "mean", dtype, "K=50000")
    y = make_targets(rng, 3, K, dtype)
    loss, ref = dense_loss(True, None, 0.0)
    check_against_reference(loss, ref, y, z, None, "sum", dtype, "dense K=50000")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_single_row(dtype, rng):
    K = 9
    z = rng.normal(size=K).astype(dtype)
    t = 4
    loss, ref = sparse_loss(True, rng.uniform(0.5, 2, K), None, 0.1)
    # 1-D y_pred with a scalar label, and the (1, K) form
    zr = z[::-1].copy()[::-1]  # 1-D negative stride
    for y, x in ((np.int64(t), z), (np.array([t]), z[None, :]), (np.int64(t), zr)):
        for reduction in REDUCTIONS:
            check_against_reference(loss, ref, y, x, None, reduction, dtype, f"{x.shape}")
    assert loss(np.array([t]), z[None, :]) == loss(np.array([t]), z[None, :], reduction="sum") \
        / loss.class_weight[t]
    rows = loss(np.int64(t), z, reduction="none")
    assert rows.shape == ()


def test_labels_out_of_range_and_negative():
    z = np.zeros((6, 3))
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    with pytest.raises(ValueError, match=r"y_true\[3\] = 3\b") as e:
        loss(np.array([0, 1, 2, 3, 7, 2]), z)
    assert "[0, 3)" in str(e.value)
    with pytest.raises(ValueError, match=r"y_true\[1\] = -2\b"):
        loss(np.array([0, -2, 5, 1, 1, 1]), z)
    with pytest.raises(ValueError, match=r"y_true\[5\] = 9\b"):
        loss.value_and_grad(np.array([0, 0, 0, 0, 0, 9]), z)
    with pytest.raises(ValueError, match=r"y_true\[0\] = -100\b"):  # no ignore_index set
        loss(np.array([IGNORE, 0, 0, 0, 0, 0]), z)
    # ignore_index accepted (in and out of [0, K)); other bad values still rejected
    ign = fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=IGNORE)
    assert ign(np.array([IGNORE, 0, 1, 2, IGNORE, 0]), z) == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match=r"y_true\[2\] = -1\b.*ignore_index"):
        ign(np.array([IGNORE, 0, -1, 2, IGNORE, 0]), z)
    ign1 = fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=np.int64(1))
    assert ign1.ignore_index == 1
    assert ign1(np.array([1, 1, 1, 1, 1, 0]), z) == pytest.approx(math.log(3))
    # probabilities too
    with pytest.raises(ValueError, match=r"y_true\[0\] = 3\b"):
        fl.SparseCategoricalCrossEntropy()(np.array([3, 0, 0, 0, 0, 0]), z + 1 / 3)


def test_unsigned_label_beyond_int64_is_reported_as_given():
    """A uint64 label above the int64 range is out of range and the error names it as given (not
    its int64 wrap-around)."""
    z = np.zeros((2, 3))
    big = np.array([0, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"y_true\[1\] = 18446744073709551615\b"):
        fl.SparseCategoricalCrossEntropy(from_logits=True)(big, z)


def test_unsigned_label_beyond_int64_is_not_taken_for_ignore_index():
    """uint64 label 2**64 - 1 is not ignore_index=-1: it must be rejected, not silently skipped."""
    z = np.zeros((2, 3))
    big = np.array([0, 2**64 - 1], dtype=np.uint64)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=-1)
    with pytest.raises(ValueError, match=r"y_true\[1\]"):
        loss(big, z)


def test_non_integer_labels():
    z = np.zeros((3, 4))
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    for bad in (np.array([0.0, 1.0, 2.0]), np.array([True, False, True]),
                np.array(["a", "b", "c"]), np.array([0, 1, 2], dtype=np.complex128)):
        with pytest.raises(TypeError, match="y_true"):
            loss(bad, z)
        with pytest.raises(TypeError, match="y_true"):
            loss.value_and_grad(bad, z)
    with pytest.raises(TypeError):
        fl.SparseCategoricalCrossEntropy(ignore_index=1.5)
    with pytest.raises(TypeError):
        fl.SparseCategoricalCrossEntropy(ignore_index=True)


def test_shape_and_parameter_errors():
    z = np.zeros((3, 4))
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)|\(4,\).*\(3,\)"):
        loss(np.zeros(4, np.int64), z)
    with pytest.raises(ValueError, match="same shape"):
        fl.CategoricalCrossEntropy()(np.zeros((3, 5)), z)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(np.zeros(3, np.int64), z, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="sample_weight"):
        loss(np.zeros(3, np.int64), z, sample_weight=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        loss(np.zeros(3, np.int64), z, reduction="avg")
    with pytest.raises(ValueError):
        loss(np.zeros((3,), np.int64), np.zeros((3, 0)))
    with pytest.raises(TypeError):
        loss(np.zeros(3, np.int64), z.astype(np.complex128))
    for bad in (dict(label_smoothing=1.0), dict(label_smoothing=-0.1), dict(eps=0.0),
                dict(eps=0.5), dict(class_weight=[[1.0, 2.0]]), dict(class_weight=[1.0, -1.0]),
                dict(class_weight=[1.0, np.nan]), dict(class_weight=[])):
        with pytest.raises(ValueError):
            fl.SparseCategoricalCrossEntropy(**bad)
        with pytest.raises(ValueError):
            fl.CategoricalCrossEntropy(**bad)
    with pytest.raises(TypeError):
        fl.SparseCategoricalCrossEntropy(from_logits=1)
    with pytest.raises(TypeError):
        fl.CategoricalCrossEntropy(ignore_index=0)


def test_class_weight_wrong_length():
    z = np.zeros((3, 4))
    for cw in ([1.0, 2.0, 3.0], [1.0] * 5):
        with pytest.raises(ValueError, match=r"class_weight.*\b4\b"):
            fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw)(
                np.zeros(3, np.int64), z)
        with pytest.raises(ValueError, match="class_weight"):
            fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw)(np.zeros((3, 4)), z)
        with pytest.raises(ValueError, match="class_weight"):
            fl.SparseCategoricalCrossEntropy(class_weight=cw).value_and_grad(
                np.zeros(3, np.int64), z + 0.25)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_probabilities_outside_unit_interval(dtype):
    """Probabilities outside [0, 1] are an error; inside they are used as given (no
    renormalization) and clamped below at eps."""
    bad = np.array([[0.5, 0.5, 0.0], [0.2, 1.5, 0.0]], dtype=dtype)
    with pytest.raises(ValueError, match=r"y_pred\[1, 1\] = 1.5"):
        fl.SparseCategoricalCrossEntropy()(np.array([0, 1]), bad)
    with pytest.raises(ValueError, match=r"y_pred\[0, 0\] = -1.0"):
        fl.CategoricalCrossEntropy()(np.array([[0.5, 0.5, 0.0]]), np.array([[-1.0, 3.0, 0.0]], dtype))
    p = np.array([[0.5, 0.6, 0.0], [1.0, 0.3, 1e-12], [0.0, 0.0, 0.0], [0.2, 0.3, 0.5]],
                 dtype=dtype)
    t = np.array([1, 0, 2, 2])
    eps = 1e-7
    eps_t = float(np.asarray(eps, dtype))  # the clamp in the compute dtype
    for a in (0.0, 0.1):
        loss = fl.SparseCategoricalCrossEntropy(label_smoothing=a, eps=eps)
        rows, g, h = loss.value_grad_hess(t, p, reduction="none")
        assert np.all(np.isfinite(rows)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        er, eg, eh = ref_cross_entropy(t, p, dense=False, from_logits=False, label_smoothing=a,
                                       eps=eps_t, reduction="none")
        assert_close(rows, er, dtype, f"rows a={a}")
        assert_close(g, eg, dtype, f"grad a={a}")
        assert_close(h, eh, dtype, f"hess a={a}")
        if a == 0.0:
            assert rows[0] == pytest.approx(-math.log(0.6), rel=1e-6)  # rows need not sum to 1
            assert rows[1] == 0.0
            assert rows[2] == pytest.approx(-math.log(eps_t), rel=1e-6)  # p = 0: clamped
    d = fl.CategoricalCrossEntropy(eps=1e-3)
    y = np.array([[0.5, 0.5, 0.0]], dtype=dtype)
    v, g = d.value_and_grad(y, np.array([[0.0, 0.75, 0.0]], dtype=dtype), reduction="sum")
    assert v == pytest.approx(-0.5 * math.log(1e-3) - 0.5 * math.log(0.75), rel=1e-6)
    np.testing.assert_allclose(g, [[-0.5 / float(np.asarray(1e-3, dtype)), -0.5 / 0.75, 0.0]],
                               rtol=1e-6)
    # NaN propagates to its row only
    q = np.array([[np.nan, 0.5, 0.5], [0.5, 0.25, 0.25]], dtype=dtype)
    rows = fl.SparseCategoricalCrossEntropy()(np.array([0, 0]), q, reduction="none")
    assert np.isnan(rows[0]) and rows[1] == pytest.approx(math.log(2), rel=1e-6)


def test_nan_logit_stays_in_its_row(rng):
    z = rng.normal(size=(4, 5))
    z[1, 3] = np.nan
    t = np.array([0, 1, 2, 3])
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    rows, g = loss.value_and_grad(t, z, reduction="none")
    assert np.isnan(rows[1]) and np.all(np.isfinite(rows[[0, 2, 3]]))
    assert np.all(np.isfinite(g[[0, 2, 3]]))
    assert math.isnan(loss(t, z))


# --------------------------------------------------------------------------------------------------
# 4. In-place gradient over the logits
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hess", [False, True], ids=["grad", "grad+hess"])
@pytest.mark.parametrize("use_cw", [False, True], ids=["nocw", "cw"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["a0", "a.2"])
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_in_place_gradient(dtype, from_logits, dense, smoothing, use_cw, hess, rng):
    n, K = 21, 19
    z0 = make_pred(rng, n, K, dtype, from_logits)
    if from_logits:
        z0[3, 4] = np.inf  # a row through the +inf path
        z0[5, 2] = -np.inf
    cw = make_class_weight(rng, K) if use_cw else None
    if dense:
        y = make_targets(rng, n, K, dtype)
        y[5] = np.eye(K)[0]
        loss = fl.CategoricalCrossEntropy(from_logits=from_logits, class_weight=cw,
                                          label_smoothing=smoothing)
    else:
        y = make_labels(rng, n, K, ignore=True)
        y[5] = 0
        loss = fl.SparseCategoricalCrossEntropy(from_logits=from_logits, class_weight=cw,
                                                ignore_index=IGNORE, label_smoothing=smoothing)
    sw = rng.uniform(0.5, 1.5, size=n)
    for reduction in REDUCTIONS:
        if hess:
            v_sep, g_sep, h_sep = loss.value_grad_hess(y, z0.copy(), sample_weight=sw,
                                                       reduction=reduction)
            z = z0.copy()
            v, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction, grad_out=z)
            assert_bitwise_equal(h, h_sep, f"hess {reduction}")
        else:
            v_sep, g_sep = loss.value_and_grad(y, z0.copy(), sample_weight=sw, reduction=reduction)
            z = z0.copy()
            v, g = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction, grad_out=z)
        assert g is z
        assert_bitwise_equal(g, g_sep, f"in-place grad {reduction}")
        assert_bitwise_equal(v, v_sep, f"in-place value {reduction}")


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_in_place_gradient_on_views(dense, rng):
    """grad_out=y_pred where y_pred is a strided or padded view of a larger buffer."""
    n, K = 13, 6
    big0 = rng.normal(size=(n, 2 * K))
    y = make_targets(rng, n, K, np.float64) if dense else rng.integers(0, K, size=n)
    loss = (fl.CategoricalCrossEntropy if dense else fl.SparseCategoricalCrossEntropy)(
        from_logits=True, label_smoothing=0.1)
    for sl in (np.s_[:, ::2], np.s_[:, :K], np.s_[:, K:]):
        big = big0.copy()
        view = big[sl]
        expected = loss.value_and_grad(y, np.ascontiguousarray(view))
        v, g = loss.value_and_grad(y, view, grad_out=view)
        assert g is view
        assert_bitwise_equal(v, expected[0], f"value {sl}")
        assert_bitwise_equal(view, expected[1], f"grad {sl}")
        rest = np.ones(big.shape, bool)
        rest[sl] = False
        assert_bitwise_equal(big[rest], big0[rest], "elements outside the view untouched")


# --------------------------------------------------------------------------------------------------
# 5. Determinism and strides
# --------------------------------------------------------------------------------------------------


def _det_problem(rng, dense, dtype):
    n, K = 2000, 64  # 128 000 elements, 8 superblocks of rows: the OpenMP path
    z = rng.normal(scale=3.0, size=(n, K)).astype(dtype)
    z[7, 3] = np.inf
    sw = rng.uniform(0, 2, size=n)
    cw = rng.uniform(0.2, 3.0, size=K)
    if dense:
        y = make_targets(rng, n, K, dtype)
        loss = fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=0.1)
    else:
        y = make_labels(rng, n, K, ignore=True)
        loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw,
                                                ignore_index=IGNORE, label_smoothing=0.1)
    return loss, y, z, sw


def _all_results(loss, y, z, sw):
    out = []
    for reduction in REDUCTIONS:
        out.extend(loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction))
    return out


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_thread_count_bitwise(dtype, dense, rng):
    loss, y, z, sw = _det_problem(rng, dense, dtype)
    with fl.num_threads(1):
        one = _all_results(loss, y, z, sw)
    with fl.num_threads(2):
        two = _all_results(loss, y, z, sw)
    with fl.num_threads(3):
        three = _all_results(loss, y, z, sw)
    for i, (a, b, c) in enumerate(zip(one, two, three)):
        assert_bitwise_equal(a, b, f"output {i}: 1 vs 2 threads")
        assert_bitwise_equal(a, c, f"output {i}: 1 vs 3 threads")
    with fl.num_threads(1):
        s1 = fl.softmax(z), fl.logsumexp(z)
    with fl.num_threads(2):
        s2 = fl.softmax(z), fl.logsumexp(z)
    assert_bitwise_equal(s1[0], s2[0], "softmax threads")
    assert_bitwise_equal(s1[1], s2[1], "logsumexp threads")


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_avx2_avx512_bitwise(dtype, dense, rng):
    if not {"avx2", "avx512"} <= set(AVAILABLE_ISAS):
        pytest.skip("needs both avx2 and avx512")
    loss, y, z, sw = _det_problem(rng, dense, dtype)
    z = z[:300]
    y = y[:300]
    sw = sw[:300]
    results = {}
    for name in ("avx2", "avx512"):
        fl.select_isa(name)
        results[name] = _all_results(loss, y, z, sw) + [fl.softmax(z), fl.log_softmax(z),
                                                        fl.logsumexp(z)]
    for i, (a, b) in enumerate(zip(results["avx2"], results["avx512"])):
        assert_bitwise_equal(a, b, f"output {i}: avx2 vs avx512")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_exponentials_down_to_subnormal(dtype):
    """Row exponentials whose exponents reach the subnormal range and below (the AVX-512 path
    scales by 2^k with vscalef, the others by an integer add and a rescaled subnormal branch):
    each is exp(d) rounded once, and avx2 and avx512 agree to the bit. With the max term 1 and
    the others negligible the row sum is exactly 1, so softmax returns the exponentials
    themselves."""
    info = np.finfo(dtype)
    lo = -104.5 if dtype == np.float32 else -746.5
    # below -45 the 39 other terms of a row sum to less than 2^-54: the row sum (in double) is 1
    d = np.linspace(lo, -45.0, 16 * 40 - 1)
    # finer near the subnormal threshold, where the two scalings part ways
    d[::3] = np.linspace(math.log(float(info.tiny)) - 3, math.log(float(info.tiny)) + 1, d[::3].size)
    z = np.concatenate([[0.0], d]).astype(dtype).reshape(16, 40)
    z[:, 0] = 0.0  # every row: its max first, the rest far below
    exact = np.exp(z.astype(np.float64))  # float64: a float32 rounded once from it
    tiny = float(info.smallest_subnormal)
    results = {}
    for isa in [i for i in ("avx2", "avx512") if i in AVAILABLE_ISAS] or [AVAILABLE_ISAS[0]]:
        fl.select_isa(isa)  # the autouse fixture restores the selection
        p = fl.softmax(z)
        if dtype == np.float32:
            expect = exact.astype(np.float32)
            assert np.all(np.abs(p.astype(np.float64) - expect) <= np.maximum(2e-7 * expect, tiny)), isa
        else:  # no wider reference in NumPy: 2 ULP, or one subnormal step
            assert np.all(np.abs(p - exact) <= np.maximum(5e-16 * exact, tiny)), isa
        assert np.count_nonzero((p > 0) & (p < info.tiny)) > 20  # subnormal results were exercised
        results[isa] = p
    if len(results) == 2:
        assert_bitwise_equal(results["avx2"], results["avx512"], "softmax exponentials avx2 vs avx512")


def _strided_views(base):
    """Views of ``base`` (n, K) content: each returns (view, contiguous copy)."""
    n, K = base.shape
    wide = np.zeros((n, 2 * K), base.dtype)
    wide[:, ::2] = base
    padded = np.zeros((n, K + 3), base.dtype)
    padded[:, :K] = base
    rows2 = np.zeros((2 * n, K), base.dtype)
    rows2[::2] = base
    return {
        "cols::2": wide[:, ::2],
        "padded": padded[:, :K],
        "rows::2": rows2[::2],
        "fortran": np.asfortranarray(base),
        "transposed": np.ascontiguousarray(base.T).T,
        "reversed": base[::-1].copy()[::-1],
    }


@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_inputs_match_contiguous(dtype, dense, rng):
    n, K = 17, 21
    z = rng.normal(scale=2.0, size=(n, K)).astype(dtype)
    sw = rng.uniform(0.5, 1.5, size=n)
    cw = rng.uniform(0.5, 2.0, size=K)
    if dense:
        y = make_targets(rng, n, K, dtype)
        loss = fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=0.1)
    else:
        y = make_labels(rng, n, K, ignore=True)
        loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw,
                                                ignore_index=IGNORE, label_smoothing=0.1)
    base = _all_results(loss, y, z, sw)
    for name, view in _strided_views(z).items():
        assert np.array_equal(view, z)
        got = _all_results(loss, y, view, sw)
        for i, (a, b) in enumerate(zip(got, base)):
            assert_bitwise_equal(a, b, f"{name}: output {i}")
    # broadcast rows (stride 0)
    row = z[:1]
    bz = np.broadcast_to(row, (n, K))
    by = np.broadcast_to(y[:1], (n, K)) if dense else np.full(n, y[0])
    got = loss(by, bz, reduction="none")
    assert np.all(got == got[0])
    # strided labels, targets and sample weights
    sw2 = np.repeat(sw, 2)[::2]
    y2 = np.repeat(y, 2, axis=0)[::2]
    got = _all_results(loss, y2, z, sw2)
    for i, (a, b) in enumerate(zip(got, base)):
        assert_bitwise_equal(a, b, f"strided labels/targets/weights: output {i}")
    if dense:
        yf = np.asfortranarray(y)
        for i, (a, b) in enumerate(zip(_all_results(loss, yf, z, sw), base)):
            assert_bitwise_equal(a, b, f"fortran targets: output {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_output_buffers(dtype, rng):
    n, K = 15, 9
    z = rng.normal(size=(n, K)).astype(dtype)
    t = rng.integers(0, K, size=n)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=0.1)
    v0, g0, h0 = loss.value_grad_hess(t, z, reduction="none")
    layouts = {  # (base buffer, view of it with the shape of z)
        "cols::2": lambda b: b[:, ::2], "rows::2": lambda b: b[::2], "fortran": lambda b: b,
        "transposed": lambda b: b.T,
    }
    bases = {"cols::2": (n, 2 * K), "rows::2": (2 * n, K), "fortran": (n, K), "transposed": (K, n)}
    for name, view_of in layouts.items():
        order = "F" if name == "fortran" else "C"
        gbase = np.full(bases[name], SENTINEL, dtype, order=order)
        hbase = np.full(bases[name], SENTINEL, dtype, order=order)
        gb, hb = view_of(gbase), view_of(hbase)
        obase = np.full(2 * n, SENTINEL, dtype)
        outb = obase[::2]
        v, g, h = loss.value_grad_hess(t, z, reduction="none", out=outb, grad_out=gb, hess_out=hb)
        assert g is gb and h is hb and v is outb
        assert_bitwise_equal(np.ascontiguousarray(gb), g0, f"{name} grad_out")
        assert_bitwise_equal(np.ascontiguousarray(hb), h0, f"{name} hess_out")
        assert_bitwise_equal(np.ascontiguousarray(outb), v0, f"{name} out")
        # nothing written outside the views
        assert np.sum(gbase == SENTINEL) == gbase.size - gb.size, name
        assert np.sum(hbase == SENTINEL) == hbase.size - hb.size, name
        assert np.all(obase[1::2] == SENTINEL)


def test_concurrent_python_threads(rng):
    loss, y, z, sw = _det_problem(rng, False, np.float64)
    expected = loss.value_and_grad(y, z, sample_weight=sw)
    results = [None] * 4

    def work(i):
        results[i] = loss.value_and_grad(y, z, sample_weight=sw)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in results:
        assert_bitwise_equal(r[0], expected[0], "value")
        assert_bitwise_equal(r[1], expected[1], "grad")


# --------------------------------------------------------------------------------------------------
# 6. Errors leave caller buffers untouched
# --------------------------------------------------------------------------------------------------


def test_errors_leave_buffers_untouched(rng):
    n, K = 8, 5
    z = rng.normal(size=(n, K))
    good = rng.integers(0, K, size=n)
    bad_label = good.copy()
    bad_label[5] = K
    sparse = fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=0.1)

    def buffers():
        return (np.full(n, SENTINEL), np.full((n, K), SENTINEL), np.full((n, K), SENTINEL))

    cases = {
        "label out of range": (sparse, bad_label, z, None, ValueError),
        "negative sample weight": (sparse, good, z, -np.ones(n), ValueError),
        "NaN sample weight": (sparse, good, z, np.full(n, np.nan), ValueError),
        "class_weight length": (fl.SparseCategoricalCrossEntropy(from_logits=True,
                                                                 class_weight=[1.0] * (K + 1)),
                                good, z, None, ValueError),
        "label shape": (sparse, good[:-1], z, None, ValueError),
        "float labels": (sparse, good.astype(float), z, None, TypeError),
        "dense shape": (fl.CategoricalCrossEntropy(from_logits=True), np.zeros((n, K + 1)), z,
                        None, ValueError),
    }
    for what, (loss, y, x, sw, exc) in cases.items():
        out, g, h = buffers()
        with pytest.raises(exc):
            loss.value_grad_hess(y, x, sample_weight=sw, reduction="none", out=out, grad_out=g,
                                 hess_out=h)
        assert np.all(out == SENTINEL) and np.all(g == SENTINEL) and np.all(h == SENTINEL), what
        # in place over the logits: the logits survive the error
        zc = x.copy()
        with pytest.raises(exc):
            loss.value_and_grad(y, zc, sample_weight=sw, grad_out=zc)
        assert_bitwise_equal(zc, x, f"{what}: logits after a failed in-place call")
    # a bad buffer after a good one: the good one is not written either
    out, g, h = buffers()
    with pytest.raises(ValueError):
        sparse.value_grad_hess(good, z, reduction="none", out=out, grad_out=g,
                               hess_out=np.zeros((n, K + 1)))
    assert np.all(out == SENTINEL) and np.all(g == SENTINEL)
    out, g, h = buffers()
    with pytest.raises(TypeError):
        sparse.value_grad_hess(good, z, reduction="none", out=out, grad_out=g,
                               hess_out=np.zeros((n, K), np.float32))
    assert np.all(out == SENTINEL) and np.all(g == SENTINEL)
    ro = np.full((n, K), SENTINEL)
    ro.setflags(write=False)
    out, g, h = buffers()
    with pytest.raises(ValueError, match="read-only"):
        sparse.value_grad_hess(good, z, reduction="none", out=out, grad_out=g, hess_out=ro)
    assert np.all(out == SENTINEL) and np.all(g == SENTINEL)


# --------------------------------------------------------------------------------------------------
# 7. Hypothesis properties
# --------------------------------------------------------------------------------------------------


@st.composite
def logit_problems(draw):
    n = draw(st.integers(1, 12))
    K = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from(DTYPES))
    mag = draw(st.sampled_from([1.0, 30.0, 1e4, 1e30]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "uniform", "ties"]))
    if kind == "normal":
        z = rng.normal(size=(n, K)) * mag
    elif kind == "uniform":
        z = rng.uniform(-mag, mag, size=(n, K))
    else:  # many equal logits
        z = rng.choice([-mag, 0.0, mag], size=(n, K))
    t = rng.integers(0, K, size=n)
    return z.astype(dtype), t, dtype


def _row_tolerance(z, dtype, smoothing):
    """Per-row absolute allowance of the kernel's value: the float exp sum (a few eps of dtype, K
    terms) plus float64 rounding of lse and z_t (and the smoothed sum of logits)."""
    z64 = np.abs(z.astype(np.float64))
    K = z.shape[-1]
    e_t = float(np.finfo(dtype).eps)
    e_64 = float(np.finfo(np.float64).eps)
    big = np.max(z64, axis=-1)
    tol = (8 + K) * e_t + 16 * e_64 * big
    if smoothing:
        tol += 4 * K * e_64 * big
    return tol


@given(logit_problems(), st.sampled_from([0.0, 0.1]))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_property_value_matches_reference(problem, smoothing):
    z, t, dtype = problem
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, label_smoothing=smoothing)
    rows = loss(t, z, reduction="none")
    er, eg, _ = ref_cross_entropy(t, z, dense=False, from_logits=True, label_smoothing=smoothing,
                                  reduction="none")
    tol = _row_tolerance(z, dtype, smoothing)
    err = np.abs(rows.astype(np.float64) - er)
    rtol = 1e-6 if dtype is np.float32 else 1e-13
    assert np.all(np.isfinite(rows)), rows
    assert np.all(err <= tol + rtol * np.abs(er)), (rows, er, tol)
    total = loss(t, z, reduction="sum")
    assert abs(total - er.sum()) <= np.sum(tol) + rtol * abs(er.sum()) + 1e-300
    _, g = loss.value_and_grad(t, z, reduction="sum")
    assert np.all(np.isfinite(g))
    c = 1.0 if smoothing == 0 else (1 - smoothing) + smoothing  # sum_j w_j q_j with w = 1
    np.testing.assert_allclose(g, eg, rtol=0, atol=c * 16 * float(np.finfo(dtype).eps))


@given(logit_problems())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_property_softmax_rows_sum_to_one(problem):
    z, _, dtype = problem
    e = float(np.finfo(dtype).eps)
    sm = fl.softmax(z)
    assert sm.dtype == dtype
    assert np.all(sm >= 0) and np.all(sm <= 1)
    np.testing.assert_allclose(sm.astype(np.float64).sum(axis=-1), 1.0, rtol=0, atol=8 * e)
    np.testing.assert_allclose(sm, ref_softmax(z), rtol=0, atol=8 * e)
    lse = fl.logsumexp(z)
    np.testing.assert_allclose(lse, ref_logsumexp(z), rtol=8 * e, atol=8 * e)


@given(logit_problems())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_property_gradient_rows_sum_to_zero(problem):
    z, t, dtype = problem
    e = float(np.finfo(dtype).eps)
    _, g = fl.SparseCategoricalCrossEntropy(from_logits=True).value_and_grad(t, z,
                                                                             reduction="sum")
    sums = g.astype(np.float64).sum(axis=-1)
    assert np.all(np.abs(sums) <= 16 * e), sums
    assert np.all(g[np.arange(len(t)), t] <= 0)
    others = np.ones(g.shape, bool)
    others[np.arange(len(t)), t] = False
    assert np.all(g[others] >= 0)


# --------------------------------------------------------------------------------------------------
# 8. Registry and doctests
# --------------------------------------------------------------------------------------------------


def test_registry_lists_both_classes():
    infos = {info.name: info for info in fl.losses()}
    for name, cls in (("sparse_categorical_cross_entropy", fl.SparseCategoricalCrossEntropy),
                      ("categorical_cross_entropy", fl.CategoricalCrossEntropy)):
        assert name in infos, sorted(infos)
        info = infos[name]
        assert info.cls is cls
        assert info.family == "classification"
        assert info.function is getattr(fl, name)
        assert "label_smoothing" in info.params and "class_weight" in info.params
        assert info in fl.losses("classification")
        assert isinstance(fl.get_loss(name, from_logits=True), cls)
    assert "ignore_index" in infos["sparse_categorical_cross_entropy"].params
    assert "ignore_index" not in infos["categorical_cross_entropy"].params
    for name in ("logsumexp", "softmax", "log_softmax", "smooth_labels", "class_weights"):
        assert callable(getattr(fl, name))


def test_doctests():
    result = doctest.testmod(fastloss.multiclass, verbose=False,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2
    assert result.failed == 0
    for cls in (fl.SparseCategoricalCrossEntropy, fl.CategoricalCrossEntropy):
        assert "Examples" in cls.__doc__


def test_every_row_kernel_has_a_registered_class():
    # A row-wise kernel (cpp/losses/registry.hpp) is reached through the class of the same name.
    # (GaussianNLL's rows of (mean, log-variance) have no class axis: any registered class counts)
    from fastloss import _core
    names = {info.name for info in fl.losses()}
    assert set(_core.row_kernels) <= names, sorted(set(_core.row_kernels) - names)
    assert sorted(_core.row_kernels.values()) == list(range(len(_core.row_kernels)))


def test_rowwise_checks_its_parameter_count():
    from fastloss import _core
    with pytest.raises(ValueError, match="takes 3 parameters; got 1"):
        _core.rowwise(_core.row_kernels["multi_class_hinge"], [1.0], np.array([0]), np.zeros((1, 2)),
                      None, None, None, None, "mean", False, False, None, None, None)


def test_logsumexp_of_a_row_without_finite_values():
    # NaN propagates (the row max skips it); a row of -inf alone has logsumexp -inf.
    out = fl.logsumexp(np.array([[np.nan, np.nan], [-np.inf, -np.inf], [-np.inf, np.nan],
                                 [1.0, np.nan]]))
    assert np.isnan(out[0]) and out[1] == -np.inf and np.isnan(out[2]) and np.isnan(out[3])


# Confident rows: the loss log(1 + sum of the other exp(z_k - z_t)) is tiny, and log of the rounded
# sum 1 + 1e-13 keeps only three digits; the kernels take log1p of the other terms' sum.
CONFIDENT = {
    np.float64: [[30.0, 0.0, 0.0], [25.0, -3.0, 1.0, 0.0], [40.0, 2.0], [36.5, 36.5 - 33.0, -1e3]],
    np.float32: [[15.0, 0.0, 0.0], [14.0, -3.0, 1.0, 0.0], [16.0, 2.0], [0.0, -14.0, -1e3]],
}


def _confident_case(dtype, K):
    mp = pytest.importorskip("mpmath")
    z = np.array([r + [r[-1]] * (K - len(r)) for r in CONFIDENT[dtype]], dtype)
    with mp.workdps(50):
        exact = np.array([float(mp.log(mp.fsum(mp.exp(mp.mpf(float(v)) - mp.mpf(float(row[0])))
                                                for v in row))) for row in z])
    assert (exact < 1e-4).all()
    return z, np.zeros(len(z), np.int64), exact


@pytest.mark.parametrize("K", [4, 40])  # 40: the exponentials also summed in T lanes
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_confident_rows_keep_relative_accuracy_vs_mpmath(dtype, K, isa):
    from conftest import assert_elementwise_close
    z, y, exact = _confident_case(dtype, K)
    onehot = np.eye(z.shape[1], dtype=dtype)[y]
    got = {
        "sparse": fl.SparseCategoricalCrossEntropy(from_logits=True)(y, z, reduction="none"),
        "categorical": fl.CategoricalCrossEntropy(from_logits=True)(onehot, z, reduction="none"),
        "focal gamma=0": fl.SparseCategoricalFocal(gamma=0.0)(y, z, reduction="none"),
        "distillation alpha=1": fl.Distillation(alpha=1.0)(y, z, teacher_logits=z, reduction="none"),
        # the hard term's softmax from the squared tempered exponentials (T = 2), or its own (T = 3)
        "distillation alpha=1 T=2": fl.Distillation(alpha=1.0, temperature=2.0)(
            y, z, teacher_logits=z, reduction="none"),
        "distillation alpha=1 T=3": fl.Distillation(alpha=1.0, temperature=3.0)(
            y, z, teacher_logits=z, reduction="none"),
        # with the gradient, the sums come from the exponentials stored for it
        "sparse with gradient": fl.SparseCategoricalCrossEntropy(from_logits=True).value_and_grad(
            y, z, reduction="none")[0],
        "distillation T=2 with gradient": fl.Distillation(alpha=1.0, temperature=2.0).value_and_grad(
            y, z, teacher_logits=z, reduction="none")[0],
    }
    for name, v in got.items():
        assert_elementwise_close(v, exact, dtype, ulps=4, what=name)
