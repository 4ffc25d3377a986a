"""MultiClassHinge (Weston-Watkins / Crammer-Singer, PyTorch's multi_margin_loss semantics) and
SparseCategoricalFocal (softmax focal loss of Lin et al. 2017).

* Independent float64 NumPy references written here from the docstrings' formulas: value,
  gradient and Hessian diagonal, float32 / float64, every ISA, every reduction, sample weights,
  class weights / alpha, ignore_index; the mean normalizations (hinge: summed sample weights;
  focal: summed sample weights of the rows not ignored, alpha does not normalize).
* PyTorch: ``F.multi_margin_loss`` (value and autograd gradient) and the focal formula written with
  torch ops (value, autograd gradient where finite, autograd Hessian diagonal); gamma = 0 focal is
  SparseCategoricalCrossEntropy(from_logits=True).
* Central finite differences of the kernel's own value (gradient) and gradient (Hessian).
* Edge cases, validation, determinism (threads, ISAs), strided inputs, buffers, hypothesis
  properties, doctests and the registry.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastloss as fl
import fastloss.multiclass

from conftest import AVAILABLE_ISAS, assert_bitwise_equal

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
SENTINEL = 7.25
IGNORE = -100

# Hinge: computed in double from the (exact) float32/float64 inputs, rounded once on output.
HINGE_TOL = {np.dtype(np.float32): 4 * 2.0 ** -23, np.dtype(np.float64): 1e-14}
# Focal: float32 exponentials in the float32 kernel. Gradients are compared relatively (the kernel
# forms p_t - 1 as -(1 - p_t) summed from the other classes); Hessians relative to c p_k, the scale
# of the term c p_k (1 - p_k) whose 1 - p_k the kernel forms from p_k (see ref_focal).
FOCAL_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}


# --------------------------------------------------------------------------------------------------
# Independent float64 references
# --------------------------------------------------------------------------------------------------


def ref_hinge(y, z, form="weston_watkins", p=1, margin=1.0, class_weight=None):
    """Per-row loss, gradient and Hessian diagonal (unweighted rows, before the reduction) of the
    multi-class hinge. ``z`` (N, K), ``y`` (N,)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    N, K = z.shape
    r = np.arange(N)
    wt = np.ones(N) if class_weight is None else np.asarray(class_weight, np.float64)[y]
    zt = z[r, y]
    u = (margin - zt)[:, None] + z
    other = np.ones((N, K), bool)
    other[r, y] = False
    if form == "weston_watkins":
        active = other & (u > 0)
        coef = wt / K
    else:
        zz = np.where(other, z, -np.inf)
        kstar = np.argmax(zz, axis=1)  # the first maximum
        active = np.zeros((N, K), bool)
        if K > 1:
            active[r, kstar] = u[r, kstar] > 0
        coef = wt
    upos = np.where(active, u, 0.0)
    term = upos ** p
    slope = np.where(active, p * upos ** (p - 1), 0.0)
    curve = np.where(active, 2.0 if p == 2 else 0.0, 0.0)
    loss = coef * term.sum(axis=1)
    g = coef[:, None] * slope
    g[r, y] = -coef * slope.sum(axis=1)
    h = coef[:, None] * curve
    h[r, y] = coef * curve.sum(axis=1)
    return loss, g, h


def ref_focal(y, z, gamma=2.0, alpha=None, ignore_index=None):
    """Per-row loss, gradient, Hessian diagonal of the softmax focal loss, and per-element scales
    of the gradient and Hessian, in float64.

    l = a_t (1 - p_t)^g (-log p_t). With om = 1 - p_t (summed from the other classes), L = -log p_t:
    dl/dz_k = c (p_k - [k=t]), c = a_t om^g (g p_t L / om + 1). c as a function of p_t has
    derivative c'(p_t) = a_t g om^(g-1) (L - 2 - (g - 1) p_t L / om), and d p_t / d z_k =
    -p_t (p_k - [k=t]); so d2l/dz_k^2 = c p_k (1 - p_k) - c'(p_t) p_t (p_k - [k=t])^2.
    Every 1 - p_k is summed from the other classes (only the most probable class can cancel), so
    the reference keeps its relative accuracy on confident rows. Ignored rows: zeros.

    Scales: the gradient's is |g| (the kernel forms p_t - 1 as -om: relative accuracy); the
    Hessian's is c p_k + |Q| (d_k/om)^2: the kernel forms 1 - p_k from p_k (see
    test_focal_confident_row_hessian for the confident target entry).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    N, K = z.shape
    r = np.arange(N)
    valid = np.ones(N, bool) if ignore_index is None else y != ignore_index
    t = np.where(valid, y, 0)
    zv = np.where(valid[:, None], z, 0.0)
    a = np.ones(N) if alpha is None else np.asarray(alpha, np.float64)[t]
    with np.errstate(all="ignore"):
        m = zv.max(axis=1, keepdims=True)
        e = np.exp(zv - m)
        onehot = np.zeros((N, K))
        onehot[r, t] = 1.0
        S = e.sum(axis=1)
        # sum_{j != k} e_j: total - e_k, except for the largest e_k (summed from the others)
        top = np.argmax(e, axis=1)
        others = S[:, None] - e
        etop = e.copy()
        etop[r, top] = 0.0
        others[r, top] = etop.sum(axis=1)
        et = e[r, t]
        other = others[r, t]
        p = e / S[:, None]
        q = others / S[:, None]  # 1 - p_k
        pt, om = et / S, other / S
        L = np.where(om < 0.5, np.log1p(other / et), np.log(S) + m[:, 0] - zv[r, t])
        f = om ** gamma
        R = np.where(om > 0, L / np.where(om > 0, om, 1.0), 1.0)
        loss = a * f * L
        c = a * f * (gamma * pt * R + 1.0)
        d = np.where(onehot == 1.0, -om[:, None], p)  # p_k - [k = t]
        # c'(p_t) p_t d_k^2 written as Q (d_k / om)^2 with Q = a g om^(g+1) p_t (...), finite at om -> 0
        Q = np.where(om > 0, a * gamma * f * om * pt * ((L - 2.0) - (gamma - 1.0) * pt * R), 0.0)
        ratio = np.where(om[:, None] > 0, d / np.where(om > 0, om, 1.0)[:, None], 0.0)
        g = c[:, None] * d
        h = c[:, None] * p * q - Q[:, None] * ratio ** 2
        gs = np.abs(g)
        hs = np.abs(c[:, None] * p) + np.abs(Q[:, None]) * ratio ** 2
    for arr in (loss, g, h, gs, hs):
        arr[~valid] = 0.0
    return loss, g, h, gs, hs, valid


def reduce_ref(loss, g, h, sw, reduction, norm):
    """Weights and reduction: rows weighted by sw; the mean divides by ``norm``."""
    sw = np.ones(loss.shape[0]) if sw is None else np.asarray(sw, np.float64)
    rows = sw * loss
    scale = sw / norm if reduction == "mean" else sw
    G = scale[:, None] * g
    H = scale[:, None] * h
    if reduction == "none":
        return rows, G, H
    value = rows.sum()
    return (value / norm if norm > 0 else math.nan) if reduction == "mean" else value, G, H


def assert_close(got, expected, tol, scale=None, what=""):
    """|got - expected| <= tol * (|expected| + scale) + tiny elementwise (scale: array or float;
    tiny: the smallest normal number of got's dtype, so that results that underflow the output
    dtype are compared absolutely); NaN and infinities must match."""
    got = np.asarray(got)
    tiny = float(np.finfo(got.dtype).tiny) if got.dtype.kind == "f" else 0.0
    got = got.astype(np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
    scale = 0.0 if scale is None else np.asarray(scale, np.float64)
    with np.errstate(all="ignore"):
        nan_e = np.isnan(expected)
        bad = np.isnan(got) != nan_e
        inf_e = np.isinf(expected)
        bad |= inf_e & (got != expected)
        fin = ~nan_e & ~inf_e
        err = np.abs(got - expected)
        bad |= fin & ~(err <= tol * (np.abs(expected) + scale) + tiny)
    if bad.any():
        idx = [tuple(i) for i in np.argwhere(bad)[:5]] if bad.ndim else [()]
        rows = "\n".join(f"  at {i}: got {got[i]!r}, expected {expected[i]!r}" for i in idx)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ (tol {tol}):\n{rows}")


def hinge_rows_ok(y, z, form, margin, gap=0.05):
    """True when no margin u_k (k != t) is within ``gap`` of the kink and, for Crammer-Singer, the
    arg-max over k != t is separated by ``gap`` from the runner-up."""
    N, K = z.shape
    r = np.arange(N)
    u = margin - z[r, y][:, None] + z
    other = np.ones((N, K), bool)
    other[r, y] = False
    if np.any(other & (np.abs(u) < gap)):
        return False
    if form == "crammer_singer" and K > 2:
        zz = np.sort(np.where(other, z, -np.inf), axis=1)
        if np.any(zz[:, -1] - zz[:, -2] < gap):
            return False
    return True


def hinge_inputs(rng, n, K, form="weston_watkins", margin=1.0, scale=1.5):
    """Labels and scores away from the kinks (and from Crammer-Singer ties)."""
    y = rng.integers(0, K, n)
    while True:
        z = rng.normal(size=(n, K)) * scale
        if hinge_rows_ok(y, z, form, margin):
            return y, z


def _outputs(loss, y, z, sw, reduction):
    v, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    v1 = loss(y, z, sample_weight=sw, reduction=reduction)
    v2, g2 = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
    g3, h3 = loss.grad_hess(y, z, sample_weight=sw, reduction=reduction)
    return v, g, h, v1, v2, g2, g3, h3


# --------------------------------------------------------------------------------------------------
# 1. Against the NumPy references: every ISA, dtype, reduction, weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("use_cw", [False, True], ids=["nocw", "cw"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("form", ["weston_watkins", "crammer_singer"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_hinge_matches_reference(isa, dtype, form, p, use_cw, weighted, reduction, rng):
    n, K = 37, 5
    margin = 0.7
    y, z64 = hinge_inputs(rng, n, K, form, margin)
    z = z64.astype(dtype)
    cw = rng.uniform(0.2, 2.0, K) if use_cw else None
    sw = rng.uniform(0.0, 3.0, n) if weighted else None
    loss = fl.MultiClassHinge(form=form, p=p, margin=margin, class_weight=cw)
    l, g, h = ref_hinge(y, z, form, p, margin, cw)
    norm = float(n if sw is None else np.sum(sw))
    ev, eg, eh = reduce_ref(l, g, h, sw, reduction, norm)
    v, G, H, v1, v2, g2, g3, h3 = _outputs(loss, y, z, sw, reduction)
    tol = HINGE_TOL[np.dtype(dtype)]
    if reduction == "none":
        assert v.dtype == dtype and v.shape == (n,)
        assert_close(v, ev, tol, what="rows")
    else:
        assert isinstance(v, float)
        assert_close(v, ev, 1e-12, what="value")  # accumulated in double from exact inputs
    assert G.dtype == dtype and H.dtype == dtype and G.shape == z.shape
    scale = np.max(np.abs(eg)) if eg.size else 0.0
    assert_close(G, eg, tol, scale * tol, what="grad")
    assert_close(H, eh, tol, what="hess")
    # every entry point gives the same numbers
    assert_bitwise_equal(np.asarray(v1), np.asarray(v), "call vs value_grad_hess")
    assert_bitwise_equal(np.asarray(v2), np.asarray(v), "value_and_grad value")
    assert_bitwise_equal(g2, G, "value_and_grad grad")
    assert_bitwise_equal(g3, G, "grad_hess grad")
    assert_bitwise_equal(h3, H, "grad_hess hess")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("use_alpha", [False, True], ids=["noalpha", "alpha"])
@pytest.mark.parametrize("ignore", [None, IGNORE, 2], ids=["noignore", "ignore-100", "ignore2"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_matches_reference(isa, dtype, gamma, ignore, use_alpha, weighted, reduction, rng):
    n, K = 41, 6
    y = rng.integers(0, K, n)
    if ignore is not None:
        y[rng.random(n) < 0.25] = ignore
    z = (rng.normal(size=(n, K)) * 3.0).astype(dtype)
    z[3, y[3] if y[3] >= 0 else 0] += 12.0  # a confident row
    alpha = rng.uniform(0.1, 2.0, K) if use_alpha else None
    sw = rng.uniform(0.0, 3.0, n) if weighted else None
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha, ignore_index=ignore)
    l, g, h, gs, hs, valid = ref_focal(y, z, gamma, alpha, ignore)
    swv = np.ones(n) if sw is None else sw
    norm = float(np.sum(swv[valid]))  # alpha does not normalize
    ev, eg, eh = reduce_ref(l, g, h, sw, reduction, norm)
    _, egs, ehs = reduce_ref(l, gs, hs, sw, reduction, norm)
    v, G, H, v1, v2, g2, g3, h3 = _outputs(loss, y, z, sw, reduction)
    tol = FOCAL_TOL[np.dtype(dtype)]
    if reduction == "none":
        assert v.dtype == dtype and v.shape == (n,)
        assert_close(v, ev, tol, what="rows")
        assert np.all(v[~valid] == 0)
    else:
        assert isinstance(v, float)
        assert_close(v, ev, tol, what="value")
    assert G.dtype == dtype and H.dtype == dtype and G.shape == z.shape
    assert_close(G, eg, tol, np.abs(egs), what="grad")
    assert_close(H, eh, tol, np.abs(ehs), what="hess")
    assert np.all(G[~valid] == 0) and np.all(H[~valid] == 0)
    assert_bitwise_equal(np.asarray(v1), np.asarray(v), "call vs value_grad_hess")
    assert_bitwise_equal(np.asarray(v2), np.asarray(v), "value_and_grad value")
    assert_bitwise_equal(g2, G, "value_and_grad grad")
    assert_bitwise_equal(g3, G, "grad_hess grad")
    assert_bitwise_equal(h3, H, "grad_hess hess")


def test_mean_normalizations_explicit():
    """Hand-computed: the hinge's mean divides by the summed sample weights (class weights do not
    normalize); the focal mean by the summed sample weights of the counted rows (alpha does not)."""
    y = np.array([0, 1])
    z = np.array([[1.0, 0.5, -1.0], [0.0, 0.0, 0.0]])
    sw = np.array([2.0, 1.0])
    cw = np.array([3.0, 1.0, 1.0])
    # rows: 3 * 0.5 / 3 = 0.5 and 1 * (1 + 1) / 3 = 2/3
    hinge = fl.MultiClassHinge(class_weight=cw)
    assert hinge(y, z, sample_weight=sw, reduction="none").tolist() == pytest.approx([1.0, 2 / 3])
    assert hinge(y, z, sample_weight=sw) == pytest.approx((1.0 + 2 / 3) / 3.0, rel=1e-15)
    assert hinge(y, z) == pytest.approx((0.5 + 2 / 3) / 2.0, rel=1e-15)
    # focal, K = 2 logits 0: p_t = 1/2, l = alpha_t / 4 log 2
    yf = np.array([0, 1, -1])
    zf = np.zeros((3, 2))
    focal = fl.SparseCategoricalFocal(gamma=2.0, alpha=[4.0, 0.5], ignore_index=-1)
    swf = np.array([1.0, 3.0, 100.0])
    expected = (1.0 * 4.0 + 3.0 * 0.5) * 0.25 * math.log(2.0) / 4.0
    assert focal(yf, zf, sample_weight=swf) == pytest.approx(expected, rel=1e-14)
    assert focal(yf, zf, sample_weight=swf, reduction="sum") == pytest.approx(expected * 4, rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_leading_axes_label_dtypes_and_functionals(dtype, rng):
    y = rng.integers(0, 4, (2, 3, 5))
    z = rng.normal(size=(2, 3, 5, 4)).astype(dtype)
    sw = rng.uniform(0.5, 2.0, (2, 3, 5)).astype(np.float32)
    for loss, fn in [(fl.MultiClassHinge(form="crammer_singer", p=2), fl.multi_class_hinge),
                     (fl.SparseCategoricalFocal(gamma=1.5), fl.sparse_categorical_focal)]:
        flat_v, flat_g, flat_h = loss.value_grad_hess(y.reshape(-1), z.reshape(-1, 4),
                                                      sample_weight=sw.reshape(-1))
        v, g, h = loss.value_grad_hess(y, z, sample_weight=sw)
        assert g.shape == z.shape and h.shape == z.shape
        assert v == flat_v
        assert_bitwise_equal(g.reshape(-1, 4), flat_g, "leading axes grad")
        assert_bitwise_equal(h.reshape(-1, 4), flat_h, "leading axes hess")
        rows = loss(y, z, reduction="none", sample_weight=sw)
        assert rows.shape == y.shape
        for ldt in (np.uint8, np.int16, np.int32, np.uint64):
            assert loss(y.astype(ldt), z, sample_weight=sw) == v
        params = loss.get_params()
        assert fn(y, z, sample_weight=sw, **params) == v
        assert fn(y, z, reduction="sum", **params) == loss(y, z, reduction="sum")


# --------------------------------------------------------------------------------------------------
# 2. PyTorch
# --------------------------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_w", [False, True], ids=["now", "weight"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_multi_margin_loss(dtype, p, use_w, reduction, rng):
    torch = _torch()
    F = torch.nn.functional
    n, K, margin = 29, 7, 1.3
    y, z64 = hinge_inputs(rng, n, K, "weston_watkins", margin)
    z = z64.astype(dtype)
    w = rng.uniform(0.1, 3.0, K) if use_w else None
    zt = torch.tensor(z.astype(np.float64), requires_grad=True)
    tv = F.multi_margin_loss(zt, torch.tensor(y), p=p, margin=margin,
                             weight=None if w is None else torch.tensor(w), reduction=reduction)
    tv.sum().backward()
    tg = zt.grad.numpy()
    loss = fl.MultiClassHinge(p=p, margin=margin, class_weight=w)
    v, g = loss.value_and_grad(y, z, reduction=reduction)
    tol = HINGE_TOL[np.dtype(dtype)]
    if reduction == "none":
        assert_close(v, tv.detach().numpy(), tol, what="rows")
    else:
        assert_close(v, float(tv.detach()), 1e-12, what="value")
    assert_close(g, tg, tol, np.max(np.abs(tg)) * tol, what="grad")
    # the multi_class_hinge functional too
    fv = fl.multi_class_hinge(y, z, p=p, margin=margin, class_weight=w, reduction=reduction)
    assert_bitwise_equal(np.asarray(fv), np.asarray(v), "functional")


def _torch_focal(torch, y, z, gamma, alpha, ignore_index, sw, reduction):
    """The focal loss from torch ops: -alpha_t (1 - p_t)^gamma log p_t, masked and reduced."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    valid = torch.ones_like(yt, dtype=torch.bool) if ignore_index is None else yt != ignore_index
    safe = torch.where(valid, yt, torch.zeros_like(yt))
    logp = torch.log_softmax(zt, dim=-1)
    lpt = logp.gather(-1, safe[:, None])[:, 0]
    pt = lpt.exp()
    a = torch.ones_like(lpt) if alpha is None else torch.tensor(alpha).gather(0, safe)
    rows = -a * (1 - pt) ** gamma * lpt
    w = torch.ones_like(lpt) if sw is None else torch.tensor(sw)
    w = torch.where(valid, w, torch.zeros_like(w))
    rows = torch.where(valid, rows * w, torch.zeros_like(rows))
    if reduction == "mean":
        out = rows.sum() / w.sum()
    elif reduction == "sum":
        out = rows.sum()
    else:
        out = rows
    out.sum().backward()
    return out.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("config", ["plain", "alpha", "alpha-ignore-sw"])
@pytest.mark.parametrize("gamma", [0.0, 0.25, 1.0, 2.0, 4.5])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_focal(dtype, gamma, config, reduction, rng):
    torch = _torch()
    n, K = 23, 5
    y = rng.integers(0, K, n)
    alpha = rng.uniform(0.2, 2.0, K) if "alpha" in config else None
    ignore = IGNORE if "ignore" in config else None
    sw = rng.uniform(0.0, 2.0, n) if "sw" in config else None
    if ignore is not None:
        y[::4] = IGNORE
    z = (rng.normal(size=(n, K)) * 2.5).astype(dtype)
    tv, tg = _torch_focal(torch, y, z.astype(np.float64), gamma, alpha, ignore, sw, reduction)
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha, ignore_index=ignore)
    v, g = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert_close(v, tv, tol, what="value")
    finite = np.isfinite(tg)  # torch's gradient is NaN where p_t rounds to 1 and gamma < 1
    assert finite.sum() >= 0.9 * finite.size
    assert np.all(np.isfinite(g))
    assert_close(g[finite], tg[finite], tol, np.max(np.abs(tg[finite])), what="grad")
    fv = fl.sparse_categorical_focal(y, z, gamma=gamma, alpha=alpha, ignore_index=ignore,
                                     sample_weight=sw, reduction=reduction)
    assert_bitwise_equal(np.asarray(fv), np.asarray(v), "functional")


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_torch_focal_hessian_diagonal(gamma, rng):
    torch = _torch()
    n, K = 6, 4
    y = rng.integers(0, K, n)
    z = rng.normal(size=(n, K)) * 2.0
    alpha = rng.uniform(0.5, 1.5, K)
    yt, at = torch.tensor(y), torch.tensor(alpha)

    def f(x):
        lpt = torch.log_softmax(x, -1).gather(-1, yt[:, None])[:, 0]
        return (-at.gather(0, yt) * (1 - lpt.exp()) ** gamma * lpt).sum()

    hess = torch.autograd.functional.hessian(f, torch.tensor(z)).reshape(n * K, n * K)
    th = torch.diagonal(hess).reshape(n, K).numpy()
    _, h = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha).grad_hess(y, z, reduction="sum")
    assert_close(h, th, 1e-11, np.max(np.abs(th)), what="hess vs torch")


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9])
def test_focal_finite_where_torch_gradient_is_nan(gamma):
    """gamma < 1 and p_t == 1 in float64: torch's autograd gives NaN (0^(gamma-1) * 0); ours is
    finite and equal to the analytic limit (the other-class sum keeps 1 - p_t accurate)."""
    torch = _torch()
    y = np.array([0, 1, 2, 3])
    z = np.array([[40.0, 0.0, 0.0, -1.0], [0.0, 1e4, 3.0, 0.0], [0.5, -0.2, 38.5, 1.0],
                  [0.2, -0.3, 0.1, 0.0]])
    _, tg = _torch_focal(torch, y, z, gamma, None, None, None, "sum")
    assert np.isnan(tg).any(), "torch was expected to give NaN here"
    loss = fl.SparseCategoricalFocal(gamma=gamma)
    v, g, h = loss.value_grad_hess(y, z, reduction="none")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    l, eg, eh, gs, hs, _ = ref_focal(y, z, gamma)
    assert_close(v, l, 1e-13, what="rows")  # relative accuracy of tiny losses
    assert l[0] > 0 and v[0] > 0
    assert_close(g, eg, 1e-13, gs, what="grad")
    assert_close(h, eh, 1e-13, hs, what="hess")
    # where torch is finite, we agree
    finite = np.isfinite(tg)
    assert_close(g[finite], tg[finite], 1e-12, np.max(np.abs(tg[finite])), what="grad vs torch")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sw"])
@pytest.mark.parametrize("ignore", [None, 1], ids=["noignore", "ignore1"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_gamma0_is_cross_entropy(isa, dtype, reduction, ignore, weighted, rng):
    n, K = 40, 7
    y = rng.integers(0, K, n)
    z = (rng.normal(size=(n, K)) * 2.0).astype(dtype)
    sw = rng.uniform(0.1, 2.0, n) if weighted else None
    focal = fl.SparseCategoricalFocal(gamma=0.0, ignore_index=ignore)
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=ignore)
    fv, fg, fh = focal.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    cv, cg, ch = ce.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    eps = float(np.finfo(dtype).eps)
    z64 = z.astype(np.float64)
    r = np.arange(n)
    swv = np.ones(n) if sw is None else sw
    keep = np.ones(n, bool) if ignore is None else y != ignore
    # per-row coefficient of the derivatives: the sample weight (over the norm for the mean)
    crow = (swv / np.sum(swv[keep]) if reduction == "mean" else swv) * keep
    P = fl.softmax(z64)
    onehot = np.zeros((n, K))
    onehot[r[keep], y[keep]] = 1.0
    # gradient c (p_k - [k = t]): ~1 ulp of its operands (both kernels form p_t - 1; FMA
    # contraction may differ between the two loops)
    assert_close(fg, cg, 2 * eps, crow[:, None] * (P + onehot), what="grad")
    # values: ~1 ulp of the operands of lse - z_t (the cross-entropy kernel forms that difference,
    # which cancels; the focal kernel's log1p form is the more accurate one, checked below)
    opscale = np.maximum(np.abs(fl.logsumexp(z64)), np.abs(z64[r, np.clip(y, 0, None)])) * keep
    if reduction == "none":
        assert_close(fv, cv, 2 * eps, swv * opscale, what="rows")
    else:
        assert_close(fv, cv, 2 * eps, np.sum(crow * opscale), what="value")
    # Hessian c p (1 - p): ~1 ulp of c p (1 - p is formed from p in both kernels)
    assert_close(fh, ch, 3 * eps, crow[:, None] * P, what="hess")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_gamma0_rows_accuracy_vs_mpmath(dtype, rng):
    """gamma = 0 rows (-log p_t) to a few ulps of the exact value (1 - p_t from the other classes)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    n, K = 60, 5
    y = rng.integers(0, K, n)
    z = (rng.normal(size=(n, K)) * 3).astype(dtype)
    rows = fl.SparseCategoricalFocal(gamma=0.0)(y, z, reduction="none")
    exact = np.array([float(mp.log(mp.fsum(mp.exp(mp.mpf(float(v))) for v in z[i]))
                            - mp.mpf(float(z[i, y[i]]))) for i in range(n)])
    from conftest import assert_elementwise_close
    assert_elementwise_close(rows, exact, dtype, ulps=8 if dtype is np.float64 else 4,
                             what="focal gamma=0 rows")


@pytest.mark.parametrize("gamma", [0.0, 0.7, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_equals_categorical_focal_on_one_hot(dtype, gamma, rng):
    """With one-hot targets, fl.CategoricalFocal is the same loss (and the same mean: no
    ignore_index, rows counted by their sample weights)."""
    if not hasattr(fl, "CategoricalFocal"):
        pytest.skip("no CategoricalFocal")
    n, K = 30, 6
    y = rng.integers(0, K, n)
    z = (rng.normal(size=(n, K)) * 2).astype(dtype)
    alpha = rng.uniform(0.5, 2.0, K)
    sw = rng.uniform(0.1, 2.0, n)
    onehot = np.eye(K, dtype=dtype)[y]
    sparse = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha)
    dense = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
    tol = FOCAL_TOL[np.dtype(dtype)]
    for reduction in REDUCTIONS:
        v, g, h = sparse.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
        dv, dg, dh = dense.value_grad_hess(onehot, z, sample_weight=sw, reduction=reduction)
        assert_close(v, dv, tol, what=f"value {reduction}")
        assert_close(g, dg, tol, np.abs(dg).max(), what=f"grad {reduction}")
        assert_close(h, dh, tol, np.abs(dh).max(), what=f"hess {reduction}")


# --------------------------------------------------------------------------------------------------
# 3. Finite differences (float64, of the kernel's own value and gradient)
# --------------------------------------------------------------------------------------------------


def _fd(loss, y, z, sw, reduction, step):
    """Central differences: of the value (gradient) and of the diagonal gradient entries (Hessian)."""
    n, K = z.shape
    fg = np.empty_like(z)
    fh = np.empty_like(z)
    for i in range(n):
        for k in range(K):
            zp, zm = z.copy(), z.copy()
            zp[i, k] += step
            zm[i, k] -= step
            vp, gp = loss.value_and_grad(y, zp, sample_weight=sw, reduction=reduction)
            vm, gm = loss.value_and_grad(y, zm, sample_weight=sw, reduction=reduction)
            fg[i, k] = (vp - vm) / (2 * step)
            fh[i, k] = (gp[i, k] - gm[i, k]) / (2 * step)
    return fg, fh


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("form", ["weston_watkins", "crammer_singer"])
def test_hinge_finite_differences(form, p, reduction, rng):
    n, K = 6, 5
    y, z = hinge_inputs(rng, n, K, form, 0.8)
    sw = rng.uniform(0.5, 2.0, n)
    loss = fl.MultiClassHinge(form=form, p=p, margin=0.8, class_weight=rng.uniform(0.5, 2.0, K))
    fg, fh = _fd(loss, y, z, sw, reduction, 1e-6)
    _, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    np.testing.assert_allclose(g, fg, rtol=1e-7, atol=1e-8 * np.max(np.abs(fg)))
    np.testing.assert_allclose(h, fh, rtol=1e-7, atol=1e-8 * max(np.max(np.abs(fh)), 1.0))
    assert np.any(g != 0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
def test_focal_finite_differences(gamma, reduction, rng):
    n, K = 6, 4
    y = rng.integers(0, K, n)
    y[2] = IGNORE
    z = rng.normal(size=(n, K)) * 2.0
    sw = rng.uniform(0.5, 2.0, n)
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=rng.uniform(0.5, 2.0, K),
                                     ignore_index=IGNORE)
    fg, fh = _fd(loss, y, z, sw, reduction, 1e-5)
    _, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    np.testing.assert_allclose(g, fg, rtol=1e-6, atol=1e-8 * np.max(np.abs(fg)))
    np.testing.assert_allclose(h, fh, rtol=1e-6, atol=1e-8 * np.max(np.abs(fh)))
    assert np.all(g[2] == 0) and np.all(h[2] == 0)


# --------------------------------------------------------------------------------------------------
# 4. Edge cases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_confident_rows(dtype, gamma):
    y = np.array([0, 1, 2])
    z = np.array([[40.0, 0.0, 0.0], [1.0, 1e4, -3.0], [-2.0, 0.5, 30.0]], dtype=dtype)
    loss = fl.SparseCategoricalFocal(gamma=gamma)
    v, g, h = loss.value_grad_hess(y, z, reduction="none")
    total = loss(y, z, reduction="sum")
    l, eg, eh, gs, hs, _ = ref_focal(y, z, gamma)
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h)) and np.all(np.isfinite(v))
    # the value keeps its relative accuracy (1 - p_t from the other classes): tiny but > 0
    assert_close(total, l.sum(), tol, what="sum")
    assert total > 0
    assert v[1] == 0.0  # exp(-1e4) underflows: p_t == 1 exactly
    assert_close(v, l.astype(dtype), tol, what="rows")  # rows are stored in the dtype
    assert_close(g, eg, tol, gs, what="grad")
    assert_close(h, eh, tol, hs, what="hess")
    # non-target entries c p_k keep their relative accuracy
    assert_close(g[0, 1:], eg[0, 1:].astype(dtype), tol, what="grad non-target")


CONFIDENT_ROWS = {
    # label 0 dominant: p_t = 1 - 2e-7, 1 - 2e-11, 1 - 8.5e-18 (the target entry)
    "correct": (np.array([[16.0, 0.0, 0.0], [25.0, 0.0, -1.0], [40.0, 0.0, 0.0]]), 0),
    # class 1 dominant, the label 0: p_1 = 1 - 1.5e-7, 1 - 5e-11, 1 - 8.5e-18 (entry 1)
    "wrong": (np.array([[0.0, 16.0, -1.0], [1.0, 25.0, 0.0], [0.0, 40.0, 0.0]]), 1),
}


@pytest.mark.parametrize("case", sorted(CONFIDENT_ROWS))
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_confident_row_hessian(dtype, gamma, case):
    """The docstring: "the exact Hessian diagonal; 1 - p_t is summed from the other classes, so
    confident rows keep their accuracy". The Hessian entry of the dominant class,
    c p_k (1 - p_k) - Q (d_k / om)^2, must then keep its relative accuracy (as the gradient does,
    and as fl.CategoricalFocal does for its top class). The reference (1 - p_k summed from the
    other classes) agrees with mpmath to 1e-16 on these rows."""
    z, k = CONFIDENT_ROWS[case]
    z = z.astype(dtype)
    y = np.zeros(3, np.int64)
    loss = fl.SparseCategoricalFocal(gamma=gamma)
    _, g, h = loss.value_grad_hess(y, z, reduction="none")
    _, eg, eh, _, _, _ = ref_focal(y, z, gamma)
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert np.all(eh[:, k] != 0)
    assert_close(g, eg, tol, what="gradient")
    assert_close(h[:, k], eh[:, k], 10 * tol, what=f"Hessian of the dominant class {k}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_minus_inf_class(dtype, gamma):
    y = np.array([0, 2])
    z = np.array([[1.0, -np.inf, 0.5, -1.0], [0.3, -np.inf, 2.0, -np.inf]], dtype=dtype)
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=[1.0, 2.0, 0.5, 1.5])
    v, g, h = loss.value_grad_hess(y, z, reduction="none")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    assert g[0, 1] == 0 and g[1, 1] == 0 and g[1, 3] == 0
    assert h[0, 1] == 0 and h[1, 1] == 0 and h[1, 3] == 0
    # equal to the loss without those classes
    v2, g2, h2 = fl.SparseCategoricalFocal(gamma=gamma, alpha=[1.0, 0.5, 1.5]).value_grad_hess(
        np.array([0]), z[:1, [0, 2, 3]], reduction="none")
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert_close(v[:1], v2, tol, what="row 0")
    assert_close(g[0, [0, 2, 3]], g2[0], tol, np.max(np.abs(g2)), what="row 0 grad")
    assert_close(h[0, [0, 2, 3]], h2[0], tol, np.max(np.abs(h2)), what="row 0 hess")
    l, eg, eh, gs, hs, _ = ref_focal(y, z.astype(np.float64), gamma, [1.0, 2.0, 0.5, 1.5])
    assert_close(v, l, tol, what="rows vs reference")
    assert_close(g, eg, tol, gs, what="grad vs reference")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_label_at_minus_inf(dtype, gamma):
    """The label's logit at -inf: p_t = 0, loss +inf (as cross-entropy); the gradient is the finite
    limit alpha_t (p - onehot) (c -> alpha_t as p_t -> 0), no NaN."""
    z = np.array([[-np.inf, 0.0, 0.0]], dtype)
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=[2.0, 1.0, 1.0])
    v, g, h = loss.value_grad_hess(np.array([0]), z, reduction="sum")
    assert v == math.inf
    assert not np.any(np.isnan(g)), f"NaN gradient for a label at -inf: {g}"
    assert not np.any(np.isnan(h)), f"NaN Hessian for a label at -inf: {h}"
    np.testing.assert_array_equal(g, np.array([[-2.0, 1.0, 1.0]], dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_plus_inf_logits(dtype, gamma):
    """+inf logits: the limit of the softmax (the +inf classes share the probability)."""
    inf = np.inf
    alpha = [1.0, 2.0, 0.5]
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha)
    # the label alone at +inf: p_t = 1, loss 0, derivatives 0
    v, g, h = loss.value_grad_hess(np.array([1]), np.array([[0.0, inf, 3.0]], dtype), reduction="sum")
    assert v == 0.0 and np.all(g == 0) and np.all(h == 0)
    # two classes at +inf, one the label: the row equals logits (0, 0, -inf)
    y = np.array([0])
    v, g, h = loss.value_grad_hess(y, np.array([[inf, inf, 5.0]], dtype), reduction="sum")
    ev, eg, eh = loss.value_grad_hess(y, np.array([[0.0, 0.0, -inf]], dtype), reduction="sum")
    l, rg, rh, _, _, _ = ref_focal(y, np.array([[0.0, 0.0, -inf]]), gamma, alpha)
    assert v == pytest.approx(alpha[0] * 0.5 ** gamma * math.log(2.0), rel=1e-6)
    assert v == ev
    assert_bitwise_equal(g, eg, "two +inf grad")
    assert_bitwise_equal(h, eh, "two +inf hess")
    assert_close(g, rg, FOCAL_TOL[np.dtype(dtype)], np.max(np.abs(rg)), what="two +inf vs ref")
    # rows around it are unaffected
    y3 = np.array([2, 0, 1])
    z3 = np.array([[0.1, 0.2, 0.3], [1.0, inf, 3.0], [0.5, -0.5, 0.0]], dtype)
    rows, g3, _ = loss.value_grad_hess(y3, z3, reduction="none")
    keep = [0, 2]
    r2, gk, _ = loss.value_grad_hess(y3[keep], z3[keep], reduction="none")
    assert_bitwise_equal(rows[keep], r2, "other rows")
    assert_bitwise_equal(g3[keep], gk, "other rows grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_plus_inf_on_another_class(dtype, gamma):
    """Another class at +inf, the label finite: p_t -> 0, loss +inf (as cross-entropy); the
    gradient has the finite limit alpha_t (p - onehot) (c -> alpha_t as p_t -> 0), never NaN."""
    alpha = [1.0, 2.0, 0.5]
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha)
    v, g, h = loss.value_grad_hess(np.array([0]), np.array([[1.0, np.inf, 3.0]], dtype),
                                   reduction="sum")
    assert v == math.inf
    assert not np.any(np.isnan(g)), f"NaN in the gradient of a row with a +inf logit: {g}"
    assert not np.any(np.isnan(h)), f"NaN in the Hessian of a row with a +inf logit: {h}"
    np.testing.assert_array_equal(g, np.array([[-1.0, 1.0, 0.0]]) * alpha[0])
    np.testing.assert_array_equal(h, np.zeros((1, 3)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_ignored_rows_with_nan_and_inf(dtype, reduction, rng):
    n, K = 8, 5
    y = rng.integers(0, K, n)
    z = (rng.normal(size=(n, K))).astype(dtype)
    y[[1, 4, 6]] = IGNORE
    zbad = z.copy()
    zbad[1] = np.nan
    zbad[4] = -np.inf
    zbad[6] = [np.inf, -np.inf, np.nan, np.inf, 0.0]
    sw = rng.uniform(0.5, 2.0, n)
    loss = fl.SparseCategoricalFocal(gamma=2.0, alpha=rng.uniform(0.5, 2, K), ignore_index=IGNORE)
    v, g, h = loss.value_grad_hess(y, zbad, sample_weight=sw, reduction=reduction)
    ev, eg, eh = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    assert not np.any(np.isnan(np.asarray(v))) and not np.any(np.isnan(g)) and not np.any(np.isnan(h))
    assert_bitwise_equal(np.asarray(v), np.asarray(ev), "value")
    assert_bitwise_equal(g, eg, "grad")
    assert_bitwise_equal(h, eh, "hess")
    assert np.all(g[[1, 4, 6]] == 0) and np.all(h[[1, 4, 6]] == 0)
    if reduction == "none":
        assert np.all(v[[1, 4, 6]] == 0)
    # and the mean equals the mean over the other rows only
    keep = np.setdiff1d(np.arange(n), [1, 4, 6])
    if reduction == "mean":
        assert v == pytest.approx(loss(y[keep], z[keep], sample_weight=sw[keep]), rel=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_all_rows_ignored(dtype):
    y = np.full(4, 3)
    z = np.array([[0.0, 1.0, np.nan], [1.0, 2.0, 3.0], [np.inf, 0.0, 0.0], [-np.inf] * 3], dtype)
    loss = fl.SparseCategoricalFocal(gamma=2.0, ignore_index=3)
    v, g, h = loss.value_grad_hess(y, z)
    assert math.isnan(v)
    assert np.all(g == 0) and np.all(h == 0) and g.dtype == dtype
    v, g, h = loss.value_grad_hess(y, z, reduction="sum")
    assert v == 0.0 and np.all(g == 0) and np.all(h == 0)
    rows = loss(y, z, reduction="none")
    assert np.all(rows == 0)
    # zero sample weights on every counted row: also an empty mean
    assert math.isnan(fl.SparseCategoricalFocal()(np.array([0, 1]), np.zeros((2, 2)),
                                                  sample_weight=np.zeros(2)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_many_classes(isa, dtype, rng):
    """K = 3001 (many SIMD chunks plus a tail) against the references."""
    n, K = 5, 3001
    y = rng.integers(0, K, n)
    z = (rng.normal(size=(n, K)) * 2).astype(dtype)
    sw = rng.uniform(0.5, 2, n)
    focal = fl.SparseCategoricalFocal(gamma=1.5, alpha=rng.uniform(0.5, 2, K))
    v, g, h = focal.value_grad_hess(y, z, sample_weight=sw, reduction="none")
    l, eg, eh, gs, hs, _ = ref_focal(y, z, 1.5, focal.alpha)
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert_close(v, sw * l, tol, what="focal rows")
    assert_close(g, sw[:, None] * eg, tol, sw[:, None] * gs, what="focal grad")
    assert_close(h, sw[:, None] * eh, tol, sw[:, None] * hs, what="focal hess")
    # the reference applies the kernel's rules at kinks (u > 0) and ties (first maximum)
    z = rng.normal(size=(n, K)).astype(dtype)
    for form in ("weston_watkins", "crammer_singer"):
        hinge = fl.MultiClassHinge(form=form, p=2)
        v, g, h = hinge.value_grad_hess(y, z, reduction="none")
        l, eg, eh = ref_hinge(y, z, form, 2, 1.0)
        htol = HINGE_TOL[np.dtype(dtype)]
        assert_close(v, l, htol, what=f"{form} rows")
        assert_close(g, eg, htol, np.abs(eg).max() * htol, what=f"{form} grad")
        assert_close(h, eh, htol, what=f"{form} hess")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_single_class_and_single_row(dtype, gamma, rng):
    z = rng.normal(size=(5, 1)).astype(dtype) * 10
    loss = fl.SparseCategoricalFocal(gamma=gamma)
    v, g, h = loss.value_grad_hess(np.zeros(5, np.int64), z, reduction="none")
    assert np.all(v == 0) and np.all(g == 0) and np.all(h == 0)
    z1 = np.array([[0.3, -1.2, 2.0]], dtype)
    v, g, h = loss.value_grad_hess(np.array([1]), z1)
    l, eg, eh, gs, hs, _ = ref_focal(np.array([1]), z1, gamma)
    tol = FOCAL_TOL[np.dtype(dtype)]
    assert_close(v, l[0], tol, what="N=1 value")
    assert_close(g, eg, tol, gs, what="N=1 grad")
    assert_close(h, eh, tol, hs, what="N=1 hess")


def test_focal_nan_logit_propagates_to_its_row():
    y = np.array([0, 1, 2])
    z = np.array([[0.1, np.nan, 0.3], [1.0, 2.0, 3.0], [0.5, 0.5, 0.2]])
    loss = fl.SparseCategoricalFocal()
    rows, g, _ = loss.value_grad_hess(y, z, reduction="none")
    assert math.isnan(rows[0]) and np.all(np.isfinite(rows[1:]))
    assert math.isnan(loss(y, z))
    r2, g2, _ = loss.value_grad_hess(y[1:], z[1:], reduction="none")
    assert_bitwise_equal(rows[1:], r2, "other rows")
    assert_bitwise_equal(g[1:], g2, "other rows grad")


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("form", ["weston_watkins", "crammer_singer"])
def test_hinge_single_class(form, p, rng):
    z = rng.normal(size=(4, 1)) * 5
    loss = fl.MultiClassHinge(form=form, p=p, margin=2.0, class_weight=[3.0])
    v, g, h = loss.value_grad_hess(np.zeros(4, np.int32), z, reduction="none")
    assert np.all(v == 0) and np.all(g == 0) and np.all(h == 0)
    assert loss(np.zeros(4, np.int32), z) == 0.0


@pytest.mark.parametrize("p", [1, 2])
def test_crammer_singer_ties_use_first_maximum(p):
    loss = fl.MultiClassHinge(form="crammer_singer", p=p, margin=1.0)
    y = np.array([0, 1, 1, 2])
    z = np.array([[0.3, 1.0, 1.0, -2.0],   # tie between 1 and 2 -> 1
                  [1.0, 0.3, 1.0, 0.0],    # tie between 0 and 2 -> 0
                  [1.0, 1.0, 0.0, -5.0],   # tie with the label: k* = 0, u = margin
                  [-1.0, -1.0, 0.5, -1.0]])  # all others tie -> 0
    rows, g, h = loss.value_grad_hess(y, z, reduction="none")
    u = np.array([1.7, 1.7, 1.0, 0.0])
    np.testing.assert_allclose(rows, u ** p, rtol=1e-15)
    slope = p * u ** (p - 1) * (u > 0)
    eg = np.zeros_like(z)
    eg[0, 1], eg[0, 0] = slope[0], -slope[0]
    eg[1, 0], eg[1, 1] = slope[1], -slope[1]
    eg[2, 0], eg[2, 1] = slope[2], -slope[2]
    np.testing.assert_allclose(g, eg, rtol=1e-15)
    eh = np.abs(eg) * 0 + (np.abs(eg) > 0) * (2.0 if p == 2 else 0.0)
    np.testing.assert_array_equal(h, eh)
    _, rg, rh = ref_hinge(y, z, "crammer_singer", p, 1.0)
    np.testing.assert_allclose(g, rg, rtol=1e-15)


@pytest.mark.parametrize("form", ["weston_watkins", "crammer_singer"])
@pytest.mark.parametrize("where", ["other", "label"])
def test_hinge_nan_propagates_to_its_row(form, where):
    y = np.array([0, 2, 1])
    z = np.array([[1.0, 0.5, -1.0], [0.2, 0.4, 0.1], [0.0, 2.0, 1.5]])
    z[1, 0 if where == "other" else 2] = np.nan
    loss = fl.MultiClassHinge(form=form, p=2)
    rows, g, h = loss.value_grad_hess(y, z, reduction="none")
    assert math.isnan(rows[1]) and np.all(np.isfinite(rows[[0, 2]]))
    assert math.isnan(loss(y, z)) and math.isnan(loss(y, z, reduction="sum"))
    r2, g2, h2 = loss.value_grad_hess(y[[0, 2]], z[[0, 2]], reduction="none")
    assert_bitwise_equal(rows[[0, 2]], r2, "other rows")
    assert_bitwise_equal(g[[0, 2]], g2, "other rows grad")
    assert_bitwise_equal(h[[0, 2]], h2, "other rows hess")


@pytest.mark.parametrize("which", ["hinge", "focal"])
@pytest.mark.parametrize("bad", ["too_big", "negative", "float", "bool"])
def test_bad_labels(which, bad):
    z = np.zeros((4, 3))
    y = np.array([0, 2, 1, 1])
    if bad == "too_big":
        y[2] = 3
    elif bad == "negative":
        y[2] = -1
    elif bad == "float":
        y = y.astype(np.float64)
    else:
        y = y.astype(bool)
    loss = fl.MultiClassHinge() if which == "hinge" else fl.SparseCategoricalFocal(ignore_index=IGNORE)
    exc = ValueError if bad in ("too_big", "negative") else TypeError
    grad_out = np.full((4, 3), SENTINEL)
    hess_out = np.full((4, 3), SENTINEL)
    out = np.full(4, SENTINEL)
    with pytest.raises(exc, match="y_true") as info:
        loss.value_grad_hess(y, z, reduction="none", out=out, grad_out=grad_out, hess_out=hess_out)
    if bad in ("too_big", "negative"):
        assert "2" in str(info.value)  # the first bad row
    assert np.all(grad_out == SENTINEL) and np.all(hess_out == SENTINEL) and np.all(out == SENTINEL)
    with pytest.raises(exc, match="y_true"):
        loss(y, z)


def test_label_shape_mismatch_names_y_true():
    for loss in (fl.MultiClassHinge(), fl.SparseCategoricalFocal()):
        grad_out = np.full((4, 3), SENTINEL)
        with pytest.raises(ValueError, match="y_true"):
            loss.value_and_grad(np.zeros(3, np.int64), np.zeros((4, 3)), grad_out=grad_out)
        assert np.all(grad_out == SENTINEL)


@pytest.mark.parametrize("kwargs, match", [
    (dict(form="one_vs_rest"), "form"),
    (dict(form=None), "form"),
    (dict(p=3), "p must"),
    (dict(p=0), "p must"),
    (dict(p=True), "p must"),
    (dict(margin=-0.1), "margin"),
    (dict(margin=float("nan")), "margin"),
    (dict(class_weight=[1.0, -1.0]), "class_weight"),
])
def test_hinge_invalid_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fl.MultiClassHinge(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(gamma=-0.5), "gamma"),
    (dict(gamma=float("inf")), "gamma"),
    (dict(alpha=[1.0, float("nan")]), "alpha"),
    (dict(alpha=[0.5, -0.5]), "alpha"),
    (dict(ignore_index=1.5), "ignore_index"),
])
def test_focal_invalid_parameters(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fl.SparseCategoricalFocal(**kwargs)


def test_weights_of_wrong_length_at_call():
    z = np.zeros((2, 3))
    y = np.array([0, 1])
    for loss, match in [(fl.MultiClassHinge(class_weight=[1.0, 2.0]), "class_weight"),
                        (fl.SparseCategoricalFocal(alpha=[1.0, 2.0, 3.0, 4.0]), "class_weight|alpha")]:
        grad_out = np.full((2, 3), SENTINEL)
        with pytest.raises(ValueError, match=match):
            loss.value_and_grad(y, z, grad_out=grad_out)
        assert np.all(grad_out == SENTINEL)
        with pytest.raises(ValueError, match="sample_weight"):
            type(loss)()(y, z, sample_weight=np.array([1.0, -1.0]))
        with pytest.raises(ValueError, match="sample_weight"):
            type(loss)()(y, z, sample_weight=np.ones(3))


def test_empty_input():
    for loss in (fl.MultiClassHinge(), fl.SparseCategoricalFocal()):
        y, z = np.zeros(0, np.int64), np.zeros((0, 3))
        v, g = loss.value_and_grad(y, z)
        assert math.isnan(v) and g.shape == (0, 3)
        assert loss(y, z, reduction="sum") == 0.0
        assert loss(y, z, reduction="none").shape == (0,)


# --------------------------------------------------------------------------------------------------
# Buffers, in place
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_out_buffers_and_in_place(dtype, rng):
    n, K = 9, 4
    y = rng.integers(0, K, n)
    z = rng.normal(size=(n, K)).astype(dtype)
    for loss in (fl.MultiClassHinge(p=2), fl.MultiClassHinge(form="crammer_singer"),
                 fl.SparseCategoricalFocal(gamma=1.5, alpha=rng.uniform(0.5, 2, K))):
        rows, g, h = loss.value_grad_hess(y, z, reduction="none")
        out = np.empty(n, dtype)
        go, ho = np.empty((n, K), dtype), np.empty((n, K), dtype)
        r2, g2, h2 = loss.value_grad_hess(y, z, reduction="none", out=out, grad_out=go, hess_out=ho)
        assert np.shares_memory(r2, out) and np.shares_memory(g2, go) and np.shares_memory(h2, ho)
        assert_bitwise_equal(out, rows, "out")
        assert_bitwise_equal(go, g, "grad_out")
        assert_bitwise_equal(ho, h, "hess_out")
        zz = z.copy()
        v3, g3 = loss.value_and_grad(y, zz, reduction="sum", grad_out=zz)
        assert v3 == loss(y, z, reduction="sum")
        _, gs = loss.value_and_grad(y, z, reduction="sum")
        assert_bitwise_equal(zz, gs, "in place grad_out=y_pred")
        with pytest.raises(ValueError, match="out"):
            loss(y, z, out=np.empty(n, dtype))  # reduction mean
        with pytest.raises((ValueError, TypeError), match="grad_out"):
            loss.value_and_grad(y, z, grad_out=np.empty((n, K + 1), dtype))
        ro = np.empty((n, K), dtype)
        ro.setflags(write=False)
        with pytest.raises((ValueError, TypeError), match="grad_out"):
            loss.value_and_grad(y, z, grad_out=ro)


# --------------------------------------------------------------------------------------------------
# 5. Determinism and strided inputs
# --------------------------------------------------------------------------------------------------


def _big_cases(rng, dtype):
    n, K = 20000, 7  # 140 000 elements, above the parallel threshold
    y = rng.integers(0, K, n)
    yi = y.copy()
    yi[::9] = IGNORE
    z = (rng.normal(size=(n, K)) * 2).astype(dtype)
    sw = rng.uniform(0, 2, n)
    return [(fl.MultiClassHinge(p=2, class_weight=rng.uniform(0.5, 2, K)), y, z, sw),
            (fl.MultiClassHinge(form="crammer_singer"), y, z, sw),
            (fl.SparseCategoricalFocal(gamma=2.0, alpha=rng.uniform(0.5, 2, K),
                                       ignore_index=IGNORE), yi, z, sw)]


def _all(loss, y, z, sw):
    res = [loss.value_grad_hess(y, z, sample_weight=sw, reduction=r) for r in ("mean", "none")]
    return [res[0][0], res[0][1], res[0][2], res[1][0]]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_threads_bitwise(dtype, rng):
    for loss, y, z, sw in _big_cases(rng, dtype):
        with fl.num_threads(1):
            one = _all(loss, y, z, sw)
        with fl.num_threads(2):
            two = _all(loss, y, z, sw)
        for a, b, what in zip(one, two, ["value", "grad", "hess", "rows"]):
            assert_bitwise_equal(a if isinstance(a, float) else np.asarray(a),
                                 b if isinstance(b, float) else np.asarray(b), f"{loss} {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_avx2_vs_avx512_bitwise(dtype, rng):
    if not {"avx2", "avx512"} <= set(AVAILABLE_ISAS):
        pytest.skip("needs both avx2 and avx512")
    for loss, y, z, sw in _big_cases(rng, dtype):
        res = {}
        for name in ("avx2", "avx512"):
            fl.select_isa(name)
            res[name] = _all(loss, y[:3000], z[:3000], sw[:3000])
        for a, b, what in zip(res["avx2"], res["avx512"], ["value", "grad", "hess", "rows"]):
            assert_bitwise_equal(a, b, f"{loss} {what}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_inputs(dtype, rng):
    n, K = 30, 5
    big = (rng.normal(size=(2 * n, 2 * K)) * 2).astype(dtype)
    ybig = rng.integers(0, K, 3 * n)
    swbig = rng.uniform(0.5, 2, 2 * n)
    for loss in (fl.MultiClassHinge(p=2, class_weight=rng.uniform(0.5, 2, K)),
                 fl.MultiClassHinge(form="crammer_singer", margin=0.5),
                 fl.SparseCategoricalFocal(gamma=0.5, alpha=rng.uniform(0.5, 2, K))):
        views = [big[::2, ::2], big[::2, :K], big[1::2, 3:3 + K],
                 np.asfortranarray(big[:n, :K]), big[:n, :K][::-1]]
        y = ybig[::3]
        sw = swbig[::2]
        for zv in views:
            zc = np.ascontiguousarray(zv)
            for r in REDUCTIONS:
                a = loss.value_grad_hess(y, zv, sample_weight=sw, reduction=r)
                b = loss.value_grad_hess(np.ascontiguousarray(y), zc,
                                         sample_weight=np.ascontiguousarray(sw), reduction=r)
                for x1, x2 in zip(a, b):
                    assert_bitwise_equal(x1 if isinstance(x1, float) else np.asarray(x1),
                                         x2 if isinstance(x2, float) else np.asarray(x2),
                                         f"{loss} strided {r}")
        # a strided 3-D view with leading axes
        z3 = (rng.normal(size=(4, 6, 2 * K)).astype(dtype))[:, ::2, ::2]
        y3 = rng.integers(0, K, (4, 3))
        a = loss.value_grad_hess(y3, z3)
        b = loss.value_grad_hess(y3, np.ascontiguousarray(z3))
        assert a[0] == b[0]
        assert_bitwise_equal(a[1], b[1], "3-D strided grad")


# --------------------------------------------------------------------------------------------------
# 6. Hypothesis
# --------------------------------------------------------------------------------------------------


@st.composite
def _problems(draw):
    n = draw(st.integers(1, 25))
    K = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    r = np.random.default_rng(seed)
    y = r.integers(0, K, n)
    z = r.normal(size=(n, K)) * scale
    if draw(st.booleans()):
        z = np.round(z)  # ties and exact kinks
    weighted = draw(st.booleans())
    sw = r.uniform(0, 3, n) if weighted else None
    return y, z, sw, r


@given(_problems(), st.sampled_from(["weston_watkins", "crammer_singer"]), st.sampled_from([1, 2]),
       st.floats(0.0, 3.0), st.booleans(), st.sampled_from(DTYPES))
def test_property_hinge(problem, form, p, margin, use_cw, dtype):
    y, z, sw, r = problem
    K = z.shape[1]
    cw = r.uniform(0, 2, K) if use_cw else None
    z = z.astype(dtype)
    loss = fl.MultiClassHinge(form=form, p=p, margin=margin, class_weight=cw)
    v, g = loss.value_and_grad(y, z, sample_weight=sw, reduction="sum")
    l, _, _ = ref_hinge(y, z, form, p, margin, cw)
    ev = np.sum(l * (1 if sw is None else sw))
    assert_close(v, ev, 1e-12, what="hinge value")
    mean = loss(y, z, sample_weight=sw)
    norm = z.shape[0] if sw is None else np.sum(sw)
    if norm > 0:
        assert_close(mean, ev / norm, 1e-12, what="hinge mean")
    if form == "weston_watkins" and cw is None and sw is None:
        rowsum = g.astype(np.float64).sum(axis=1)
        bound = 4 * np.finfo(dtype).eps * np.abs(g.astype(np.float64)).sum(axis=1)
        assert np.all(np.abs(rowsum) <= bound), f"gradient rows do not sum to 0: {rowsum}"


@given(_problems(), st.floats(0.0, 5.0), st.booleans(), st.sampled_from(DTYPES))
def test_property_focal(problem, gamma, use_alpha, dtype):
    y, z, sw, r = problem
    K = z.shape[1]
    alpha = r.uniform(0, 2, K) if use_alpha else None
    z = z.astype(dtype)
    loss = fl.SparseCategoricalFocal(gamma=gamma, alpha=alpha)
    v, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction="sum")
    l, eg, eh, gs, hs, _ = ref_focal(y, z, gamma, alpha)
    w = 1 if sw is None else sw
    tol = FOCAL_TOL[np.dtype(dtype)]
    # per-row relative accuracy: the sum's tolerance is the sum of the rows' allowances
    assert abs(v - np.sum(l * w)) <= tol * np.sum(np.abs(l * w)) + 1e-300, (v, np.sum(l * w))
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    wcol = np.ones((len(y), 1)) if sw is None else sw[:, None]
    assert_close(g, eg * wcol, tol, gs * wcol, what="focal grad")


# --------------------------------------------------------------------------------------------------
# 7. Doctests and registry
# --------------------------------------------------------------------------------------------------


def test_doctests():
    finder = doctest.DocTestFinder()
    names = set()
    failed = attempted = 0
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in finder.find(fastloss.multiclass, "fastloss.multiclass"):
        if t.examples:
            names.add(t.name.rsplit(".", 1)[-1])
            res = runner.run(t)
            failed += res.failed
            attempted += res.attempted
    assert failed == 0, f"{failed} doctest example(s) failed"
    assert {"MultiClassHinge", "SparseCategoricalFocal"} <= names
    assert attempted >= 4


def test_registry():
    infos = {i.name: i for i in fl.losses()}
    assert infos["multi_class_hinge"].cls is fl.MultiClassHinge
    assert infos["sparse_categorical_focal"].cls is fl.SparseCategoricalFocal
    assert infos["multi_class_hinge"].function is fl.multi_class_hinge
    assert infos["sparse_categorical_focal"].function is fl.sparse_categorical_focal
    assert infos["multi_class_hinge"].params == {"form": "weston_watkins", "p": 1, "margin": 1.0,
                                                 "class_weight": None}
    assert infos["sparse_categorical_focal"].params == {"gamma": 2.0, "alpha": None,
                                                        "ignore_index": None}
    assert infos["multi_class_hinge"].hessian == "a.e."
    assert "multi_class_hinge" in {i.name for i in fl.losses("classification")}
    assert isinstance(fl.get_loss("MultiClassHinge", p=2), fl.MultiClassHinge)
    assert fl.get_loss("sparse_categorical_focal", gamma=1.0).gamma == 1.0


# Rows of at most 16 classes go through the kernels 16 rows at a time, the rows across the vector
# lanes; the private switch _set_row_blocks(False) makes them take one row at a time. Both must
# give the same bits on every SIMD target: values, gradients, Hessians, per-row values, in place.
@pytest.fixture
def row_by_row():
    def run(fn):
        previous = fl._core._set_row_blocks(False)
        try:
            return fn()
        finally:
            fl._core._set_row_blocks(previous)
    return run


def _few_class_logits(rng, n, K, dtype):
    z = (3.0 * rng.standard_normal((n, K))).astype(dtype)
    z[5, 0] = np.inf  # a block the blocked path hands back to the row path
    z[20] = -np.inf  # a row without a finite logit
    z[40, -1] = np.nan
    z[60] = 0.0
    z[61, 0] = 40.0  # confident rows: S - 1 summed apart
    z[62, K // 2] = 40.0
    return z


def _few_class_cases(K, dtype, rng, n):
    labels = rng.integers(0, K, n)
    labels[61] = 0
    targets = rng.random((n, K)).astype(dtype)
    targets /= targets.sum(1, keepdims=True)
    targets[63] = 0.0
    targets[64, :] = 0.0
    targets[64, 0] = 1.0
    cw = rng.random(K) + 0.5
    teacher = (2.0 * rng.standard_normal((n, K))).astype(dtype)
    teacher[70, -1] = 50.0
    teacher[71] = -np.inf
    teacher[71, 0] = 0.0
    ignored = labels.copy()
    ignored[[3, 30, 31]] = -100
    return [
        (fl.SparseCategoricalCrossEntropy(from_logits=True), labels, {}),
        (fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=0.1),
         labels, {}),
        (fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=-100), ignored, {}),
        (fl.CategoricalCrossEntropy(from_logits=True), targets, {}),
        (fl.CategoricalCrossEntropy(from_logits=True, class_weight=cw, label_smoothing=0.2),
         targets, {}),
        (fl.SparseCategoricalFocal(), labels, {}),
        (fl.SparseCategoricalFocal(gamma=0.5, alpha=cw), labels, {}),
        (fl.SparseCategoricalFocal(gamma=0.0, ignore_index=-100), ignored, {}),
        (fl.CategoricalFocal(), targets, {}),
        (fl.CategoricalFocal(gamma=0.5, alpha=cw), targets, {}),
        (fl.CategoricalFocal(gamma=0.0), targets, {}),
        (fl.Distillation(), labels, {"teacher_logits": teacher}),  # T = 2: squares of the tempered
        (fl.Distillation(alpha=0.3, temperature=3.0), labels, {"teacher_logits": teacher}),
        (fl.Distillation(alpha=0.7, temperature=1.0), labels, {"teacher_logits": teacher}),
        (fl.Distillation(alpha=0.0, temperature=1.5), None, {"teacher_logits": teacher}),
        (fl.KLDivergence(temperature=2.0), teacher, {}),
    ]


_FEW_CLASS_CASES = 16


def test_few_class_cases_are_all_run():
    cases = _few_class_cases(3, np.float64, np.random.default_rng(0), 87)
    assert len(cases) == _FEW_CLASS_CASES


@pytest.mark.parametrize("case", range(_FEW_CLASS_CASES))
@pytest.mark.parametrize("K", [1, 2, 3, 7, 16, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_classes_in_blocks_of_rows_equal_the_row_path(case, K, dtype, row_by_row, isa):
    rng = np.random.default_rng(K)
    n = 16 * 5 + 7  # whole blocks and a partial one
    z = _few_class_logits(rng, n, K, dtype)
    w = rng.random(n)
    loss, y, kw = _few_class_cases(K, dtype, rng, n)[case]
    for reduction in ("mean", "sum", "none"):
        for sw in (None, w):
            call = dict(kw, sample_weight=sw, reduction=reduction)
            a = loss.value_grad_hess(y, z, **call)
            b = row_by_row(lambda: loss.value_grad_hess(y, z, **call))
            for x, ref in zip(a, b):
                assert_bitwise_equal(np.asarray(x), np.asarray(ref))
            v, g = loss.value_and_grad(y, z, **call)
            assert_bitwise_equal(np.asarray(v), np.asarray(a[0]))
            assert_bitwise_equal(g, a[1])
            assert_bitwise_equal(np.asarray(loss(y, z, **call)), np.asarray(a[0]))
    zz = z.copy()
    v, g = loss.value_and_grad(y, zz, grad_out=zz, **kw)  # in place over the logits
    assert g is zz
    assert_bitwise_equal(g, row_by_row(lambda: loss.value_and_grad(y, z, **kw))[1])


# Rows shared between threads by blocks, not superblocks (fewer than 4 superblocks per thread):
# 1800 rows of 10 classes, 1500 of 16.
@pytest.mark.parametrize("case", range(_FEW_CLASS_CASES))
@pytest.mark.parametrize("K, n", [(10, 1800), (16, 1500)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_few_class_rows_equal_for_any_thread_count(case, K, n, dtype):
    rng = np.random.default_rng(K)
    z = _few_class_logits(rng, n, K, dtype)
    w = rng.random(n)
    loss, y, kw = _few_class_cases(K, dtype, rng, n)[case]
    results = {}
    for t in (1, 2, 3):
        with fl.num_threads(t):
            results[t] = [loss.value_grad_hess(y, z, sample_weight=w, reduction=r, **kw)
                          for r in ("mean", "none")]
    for t in (2, 3):
        for a, b in zip(results[1], results[t]):
            for x, ref in zip(a, b):
                assert_bitwise_equal(np.asarray(x), np.asarray(ref))
