"""CategoricalFocal: the softmax focal loss with target distributions on logits.

``l = -sum_k alpha_k y_k (1 - p_k)^gamma log p_k`` with ``p = softmax(z)``; the mean divides by
the summed sample weights (alpha does not normalize).

* An independent float64 NumPy reference (log-softmax by the max shift) with its exact first and
  second derivatives, itself checked against central finite differences and against mpmath at 60
  digits; fastloss against it on every ISA, float32/float64, every reduction, sample weights,
  alpha, one-hot and soft targets, gamma in {0, 0.5, 1, 2, 3.5}.
* PyTorch cross-check (autograd gradient, ``torch.autograd.functional.hessian`` diagonals).
* gamma = 0 is CategoricalCrossEntropy(from_logits=True); one-hot targets are
  SparseCategoricalFocal with the argmax labels.
* Edge cases (saturated rows, -inf / +inf logits, NaN rows, K = 1, N = 1, empty input), errors
  that leave the output buffers untouched, determinism (threads, ISAs, strides, in place) and
  hypothesis properties.

Accuracy model (the one of the softmax kernels): a value is accurate relative to itself; the
gradient ``p_j C - c_j`` and the Hessian diagonal are accurate to a few eps of the compute dtype
times the magnitudes of the terms they are formed from (``p_j C + |c_j|`` and
``p_j C + |p_j c'_j O_j^2| + p_j^2 sum_k |c'_k p_k|``; ``1 - p_j`` is formed in floating point),
each weighted by ``1 + |z_k - m|`` (``exp`` of a rounded difference; ``O^gamma`` formed as
``exp(gamma log O)``), times ``1 + gamma``, plus a few smallest-normal quanta of the dtype (results
below its normal range). The worst observed error is ~1.2 of those units; 8 are allowed, and a
1e-4 relative change of gamma in the reference is already detected.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastloss as fl

from conftest import AVAILABLE_ISAS, assert_bitwise_equal, assert_elementwise_close

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
GAMMAS = [0.0, 0.5, 1.0, 2.0, 3.5]
SENTINEL = -12345.0


# --------------------------------------------------------------------------------------------------
# Independent float64 reference
# --------------------------------------------------------------------------------------------------


def ref_log_softmax(z):
    """log-softmax in float64 by the max shift."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))


def ref_value_simple(y, z, gamma, alpha=None):
    """Per-row loss straight from the definition (float64, no care for saturated rows): the
    function differentiated by finite differences."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    a = np.ones(z.shape[-1]) if alpha is None else np.asarray(alpha, np.float64)
    lsm = ref_log_softmax(z)
    p = np.exp(lsm)
    w = a * y
    with np.errstate(all="ignore"):
        terms = np.where(w == 0, 0.0, -w * (1.0 - p) ** gamma * lsm)
    return terms.sum(axis=-1)


def _plus_inf_limit(z):
    """Rows with a +inf logit: the limit of the softmax (the +inf classes share the probability):
    +inf -> 0, finite -> -inf, NaN kept."""
    z = z.copy()
    pos = np.any(z == np.inf, axis=-1)
    if np.any(pos):
        r = z[pos]
        z[pos] = np.where(r == np.inf, 0.0, np.where(np.isnan(r), np.nan, -np.inf))
    return z


def ref_focal_terms(y, z, gamma, alpha=None):
    """Per-row value, per-element gradient and Hessian diagonal of the unweighted rows, and their
    rounding scales, all in float64, for (n, K) inputs.

    ``O_k = 1 - p_k`` is formed as ``1 - p_k`` except for the row's most probable class, where it
    is the sum of the other probabilities (the only class whose ``O`` can be tiny), and
    ``-log p_k = log1p(sum_{j != M} e_j) - (z_k - m)``. Derivatives (``c_k``, ``C``, ``c'_k``)::

        c_k = a_k y_k O_k^g (g p_k L_k / O_k + 1),   C = sum_k c_k,   dl/dz_j = p_j C - c_j
        p c' O^2 = a y g O^(g+1) ((L - 2) - (g - 1) p L / O) p
        d2l/dz_j2 = p_j O_j C - p_j c'_j O_j^2 - p_j^2 sum_{k != j} c'_k p_k
    """
    z = _plus_inf_limit(np.asarray(z, np.float64))
    y = np.asarray(y, np.float64)
    n, K = z.shape
    a = np.ones(K) if alpha is None else np.asarray(alpha, np.float64)
    w = a * y
    g = float(gamma)
    with np.errstate(all="ignore"):
        m = np.max(z, axis=-1, keepdims=True)
        d = z - m
        e = np.exp(d)
        M = np.argmax(np.where(np.isnan(z), -np.inf, z), axis=-1)
        isM = np.zeros((n, K), bool)
        isM[np.arange(n), M] = True
        other_M = np.sum(np.where(isM, 0.0, e), axis=-1, keepdims=True)
        S = 1.0 + other_M
        log_s = np.log1p(other_M)
        p = e / S
        O = np.where(isM, other_M / S, 1.0 - p)
        L = log_s - d
        R = np.where(O > 0, L / O, 1.0)
        pR = np.where(p == 0, 0.0, p * R)  # p L / O -> 0 where p -> 0 (a class at -inf)
        f = O ** g  # 0 ** 0 == 1
        use = w != 0
        loss_k = np.where(use, w * f * L, 0.0)
        c = np.where(use, w * f * (g * pR + 1.0), 0.0)
        cpO2 = np.where(use & (p > 0), w * g * f * O * ((L - 2.0) - (g - 1.0) * pR) * p, 0.0)
        cp = np.where(O > 0, cpO2 / (O * O), 0.0)
        C = np.sum(c, axis=-1, keepdims=True)
        off = (~np.eye(K, dtype=bool)).astype(np.float64)
        others = np.einsum("nk,jk->nj", cp, off)  # sum_{k != j} c'_k p_k, without cancellation
        others_abs = np.einsum("nk,jk->nj", np.abs(cp), off)
        c_others = np.einsum("nk,jk->nj", c, off)  # C - c_j
        loss = np.sum(loss_k, axis=-1)
        # p_j C - c_j = p_j (C - c_j) - O_j c_j: accurate for the saturated class too
        grad = p * c_others - O * c
        hess = p * O * C - cpO2 - p * p * others
        # NaN rows stay NaN
        nanrow = np.any(np.isnan(z), axis=-1)
        grad[nanrow] = np.nan
        hess[nanrow] = np.nan
        loss[nanrow] = np.nan
        # Rounding scales. A probability computed as exp(z_k - m) with z_k - m rounded in the
        # compute dtype has relative error ~ (1 + |z_k - m|) eps: kap_k; O_M (and S) carry the
        # p-weighted mean of the others' kap_k: kap_row (which also bounds |log O_M|, the error
        # factor of O^gamma = exp(gamma log O)). c_k and c'_k p_k carry both.
        kap = np.where(np.isfinite(d), 1.0 + np.abs(d), 1.0)
        po = np.where(isM, 0.0, p)
        po_sum = np.sum(po, axis=-1, keepdims=True)
        kap_row = 1.0 + np.where(po_sum > 0, np.sum(po * (kap - 1.0), axis=-1, keepdims=True)
                                 / np.where(po_sum > 0, po_sum, 1.0), 0.0)
        cK = c * (kap + kap_row)
        CK = np.sum(cK, axis=-1, keepdims=True)
        cpK = np.abs(cp) * (kap + kap_row)
        others_absK = np.einsum("nk,jk->nj", cpK, off)
        vscale = np.sum(loss_k, axis=-1) * kap_row[:, 0]
        gscale = p * C * kap + p * CK + cK
        hscale = (p * C * (kap + 1.0) + p * CK + np.abs(cpO2) * (kap + kap_row)
                  + p * p * (others_absK + 2.0 * kap * others_abs))
    return loss, grad, hess, vscale, gscale, hscale


def ref_focal(y, z, gamma, alpha=None, sample_weight=None, reduction="mean"):
    """(value, grad, hess) and (value scale, grad scale, hess scale) of the reduced loss, in the
    shapes fastloss returns: ``"none"`` gives the weighted rows and the derivatives of their sum;
    ``"mean"`` divides by sum(s) (NaN with a zero gradient when 0)."""
    z = np.asarray(z, np.float64)
    shape = z.shape
    K = shape[-1]
    z2 = z.reshape(-1, K)
    y2 = np.asarray(y, np.float64).reshape(-1, K)
    n = z2.shape[0]
    lr, gr, hr, ls, gs, hs = ref_focal_terms(y2, z2, gamma, alpha)
    s = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        rows, rows_s = s * lr, s * ls
        gr, gs = s[:, None] * gr, s[:, None] * gs
        hr, hs = s[:, None] * hr, s[:, None] * hs
    if reduction == "none":
        return ((rows.reshape(shape[:-1]), gr.reshape(shape), hr.reshape(shape)),
                (rows_s.reshape(shape[:-1]), gs.reshape(shape), hs.reshape(shape)))
    total, total_s = float(np.sum(rows)), float(np.sum(rows_s))
    if reduction == "sum":
        return (total, gr.reshape(shape), hr.reshape(shape)), (total_s, gs.reshape(shape),
                                                              hs.reshape(shape))
    norm = float(np.sum(s))
    if norm == 0:
        z0 = np.zeros(shape)
        return (math.nan, z0, z0), (0.0, z0, z0)
    return ((total / norm, (gr / norm).reshape(shape), (hr / norm).reshape(shape)),
            (total_s / norm, (gs / norm).reshape(shape), (hs / norm).reshape(shape)))


# --------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------

# eps multiples of the compute dtype (see the module docstring)
VALUE_ULPS = 8
DERIV_ULPS = 8


def _ulps(gamma):
    """O^gamma multiplies the relative error of O by gamma."""
    return 1.0 + gamma


def assert_scaled_close(got, expected, scale, dtype, ulps, what="", tiny_scale=1.0):
    """|got - expected| <= ulps * eps(dtype) * scale + 4 * tiny(dtype) * max(1, tiny_scale)
    elementwise (results below the normal range of dtype are compared absolutely);
    NaN must match NaN and infinities match exactly. ``got`` is a float (reduced values) or an
    array of ``dtype``."""
    dtype = np.dtype(dtype)
    if np.ndim(expected) == 0 and not isinstance(got, np.ndarray):
        assert isinstance(got, float), f"{what}: value is {type(got).__name__}, not float"
    else:
        got = np.asarray(got)
        assert got.shape == np.shape(expected), f"{what}: shape {got.shape} != {np.shape(expected)}"
        assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    g = np.atleast_1d(np.asarray(got, np.float64))
    e = np.atleast_1d(np.asarray(expected, np.float64))
    sc = np.broadcast_to(np.atleast_1d(np.asarray(scale, np.float64)), e.shape)
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    with np.errstate(all="ignore"):
        allow = ulps * eps * sc + 4 * tiny * max(1.0, float(tiny_scale))
        bad = np.isnan(g) != np.isnan(e)
        bad |= np.isinf(e) & (g != e)
        fin = np.isfinite(e)
        err = np.abs(g - e)
        bad |= fin & ~(err <= allow)
    if np.any(bad):
        idx = [tuple(i) for i in np.argwhere(bad)[:6]]
        rows = "\n".join(f"  at {i}: got {g[i]!r}, expected {e[i]!r} (err {err[i]:.3g}, allowed "
                         f"{allow[i]:.3g})" for i in idx)
        raise AssertionError(f"{what}: {int(np.sum(bad))} of {bad.size} differ ({dtype}, {ulps} "
                             f"eps of the scale):\n{rows}")


def check_outputs(loss, y, z, gamma, alpha, sw, reduction, dtype, what):
    """Every entry point against the reference; one kernel body, so the values from __call__,
    value_and_grad and value_grad_hess are bitwise equal and so are the gradients."""
    (ev, eg, eh), (vs, gs, hs) = ref_focal(y, z, gamma, alpha, sw, reduction)
    ul = _ulps(gamma)
    v1 = loss(y, z, sample_weight=sw, reduction=reduction)
    v2, g2 = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
    v3, g3, h3 = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
    g4, h4 = loss.grad_hess(y, z, sample_weight=sw, reduction=reduction)
    C_scale = np.max(np.sum(gs, axis=-1)) if np.size(gs) else 1.0  # the row coefficients
    for i, v in enumerate((v1, v2, v3)):
        assert_scaled_close(v, ev, vs, dtype, VALUE_ULPS * ul, f"{what} value[{i}]",
                            tiny_scale=np.size(z))
    for i, g in enumerate((g2, g3, g4)):
        assert_scaled_close(g, eg, gs, dtype, DERIV_ULPS * ul, f"{what} grad[{i}]",
                            tiny_scale=C_scale)
    for i, h in enumerate((h3, h4)):
        assert_scaled_close(h, eh, hs, dtype, DERIV_ULPS * ul, f"{what} hess[{i}]",
                            tiny_scale=C_scale)
    assert_bitwise_equal(v1, v2, f"{what}: __call__ vs value_and_grad")
    assert_bitwise_equal(v1, v3, f"{what}: __call__ vs value_grad_hess")
    assert_bitwise_equal(g2, g3, f"{what}: grad of value_and_grad vs value_grad_hess")
    assert_bitwise_equal(h3, h4, f"{what}: hess of value_grad_hess vs grad_hess")


def make_targets(rng, n, K, dtype, kind):
    """One-hot, soft (Dirichlet with some zero entries) or mixed target rows."""
    if kind == "onehot":
        y = np.eye(K)[rng.integers(0, K, size=n)]
    else:
        y = rng.dirichlet(np.full(K, 0.7), size=n)
        if K > 2:
            y[rng.random((n, K)) < 0.25] = 0.0  # zero targets (the 0 * log p terms)
            y[np.sum(y, axis=-1) == 0, 0] = 1.0
            y /= np.sum(y, axis=-1, keepdims=True)
        if kind == "mixed":
            hard = np.arange(0, n, 3)
            y[hard] = np.eye(K)[rng.integers(0, K, size=hard.size)]
    return y.astype(dtype)


def make_logits(rng, n, K, dtype, scale=3.0):
    z = rng.normal(scale=scale, size=(n, K))
    if n > 4:
        z[1] *= 8.0  # a confident row
        if K > 1:
            z[2, 0] = z[2, 1]  # a tie (at the max when it is the max)
    return z.astype(dtype)


# --------------------------------------------------------------------------------------------------
# 1. The reference itself: exact derivatives against finite differences and mpmath
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
def test_reference_derivatives_vs_finite_differences(gamma, rng):
    n, K = 4, 5
    z = rng.normal(scale=1.5, size=(n, K))
    y = make_targets(rng, n, K, np.float64, "mixed")
    alpha = rng.uniform(0.3, 2.0, size=K)
    lr, gr, hr, *_ = ref_focal_terms(y, z, gamma, alpha)
    np.testing.assert_allclose(lr, ref_value_simple(y, z, gamma, alpha), rtol=1e-13, atol=0)
    h = 1e-5
    for j in range(K):
        dz = np.zeros_like(z)
        dz[:, j] = h
        fd_g = (ref_value_simple(y, z + dz, gamma, alpha)
                - ref_value_simple(y, z - dz, gamma, alpha)) / (2 * h)
        np.testing.assert_allclose(gr[:, j], fd_g, rtol=1e-7, atol=1e-9, err_msg=f"grad {j}")
        _, gp, *_ = ref_focal_terms(y, z + dz, gamma, alpha)
        _, gm, *_ = ref_focal_terms(y, z - dz, gamma, alpha)
        fd_h = (gp[:, j] - gm[:, j]) / (2 * h)
        np.testing.assert_allclose(hr[:, j], fd_h, rtol=1e-7, atol=1e-9, err_msg=f"hess {j}")


def _mp_row(y, z, gamma, alpha=None):
    """Value, gradient and Hessian diagonal of one row at 60 digits (mpmath differentiation)."""
    mp = pytest.importorskip("mpmath").mp
    K = len(z)
    a = [1.0] * K if alpha is None else list(alpha)
    with mp.workdps(60):
        def f(*zz):
            m = max(zz)
            ex = [mp.exp(v - m) for v in zz]
            S = mp.fsum(ex)
            tot = mp.mpf(0)
            for k in range(K):
                if y[k] == 0:
                    continue
                O = mp.fsum(ex[j] for j in range(K) if j != k) / S
                tot += -a[k] * mp.mpf(float(y[k])) * (O ** gamma if gamma else 1) * (
                    (zz[k] - m) - mp.log(S))
            return tot
        zz = [mp.mpf(float(v)) for v in z]
        v = float(f(*zz))
        g = [float(mp.diff(f, zz, tuple(int(i == j) for i in range(K)))) for j in range(K)]
        h = [float(mp.diff(f, zz, tuple(2 * int(i == j) for i in range(K)))) for j in range(K)]
    return v, np.array(g), np.array(h)


MP_ROWS = [
    ([1.0, 0.0, 0.0], [40.0, 0.0, 0.0]),  # saturated correct row
    ([0.0, 1.0, 0.0], [12.0, -3.0, 0.5]),  # confidently wrong
    ([0.2, 0.5, 0.3], [2.0, -1.0, 0.5]),
    ([0.0, 0.6, 0.0, 0.4], [25.0, 24.0, -3.0, 23.0]),
]


@pytest.mark.parametrize("gamma", GAMMAS)
def test_reference_vs_mpmath(gamma):
    for y, z in MP_ROWS:
        alpha = [0.5, 2.0, 1.0, 1.5][:len(z)]
        ev, eg, eh = _mp_row(y, z, gamma, alpha)
        lr, gr, hr, *_ = ref_focal_terms(np.array([y]), np.array([z]), gamma, alpha)
        np.testing.assert_allclose(lr[0], ev, rtol=1e-13, err_msg=f"{z}")
        np.testing.assert_allclose(gr[0], eg, rtol=1e-12, atol=0, err_msg=f"grad {z}")
        np.testing.assert_allclose(hr[0], eh, rtol=1e-12, atol=0, err_msg=f"hess {z}")


# --------------------------------------------------------------------------------------------------
# 1. fastloss against the reference
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_reference(isa, dtype, gamma, reduction, rng):
    n, K = 23, 7
    z = make_logits(rng, n, K, dtype)
    for targets in ("onehot", "soft", "mixed"):
        y = make_targets(rng, n, K, dtype, targets)
        for use_alpha in (False, True):
            alpha = rng.uniform(0.0, 3.0, size=K) if use_alpha else None
            if use_alpha:
                alpha[2] = 0.0
            for weighted in (False, True):
                sw = rng.uniform(0.0, 2.0, size=n) if weighted else None
                loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
                check_outputs(loss, y, z, gamma, alpha, sw, reduction, dtype,
                              f"{targets} alpha={use_alpha} sw={weighted}")


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_reference_wide_rows(dtype, gamma, rng):
    """Rows longer than every SIMD width with remainders (K = 1..70), large logits."""
    for K in (1, 2, 3, 8, 15, 16, 17, 33, 70):
        z = make_logits(rng, 9, K, dtype, scale=12.0)
        y = make_targets(rng, 9, K, dtype, "mixed")
        loss = fl.CategoricalFocal(gamma=gamma)
        check_outputs(loss, y, z, gamma, None, None, "sum", dtype, f"K={K}")


@pytest.mark.parametrize("gamma", GAMMAS + [4.0, 8.0, 9.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_matches_reference_long_rows_with_alpha(isa, dtype, gamma, rng):
    """Rows of more than 16 classes (one row at a time, the per-class terms in vector loops):
    alpha with a zero, sample weights, the top class first, last and tied, confident rows, a
    NaN logit at class 0 (that row only is NaN); O^gamma by products up to gamma = 8, by exp and
    log beyond."""
    for K in (17, 40, 300):
        n = 12
        z = make_logits(rng, n, K, dtype, scale=4.0)
        z[0, 0] = 30.0  # the top class first, then last, then tied (the first one counts)
        z[1, -1] = 30.0
        z[2, 5] = z[2, 9] = 25.0
        z[3, K // 2] = 60.0  # a confident row: 1 - p of the top class summed from the others
        y = make_targets(rng, n, K, dtype, "mixed")
        y[3] = 0.0
        y[3, K // 2] = 1.0
        alpha = rng.uniform(0.2, 2.0, size=K)
        alpha[1] = 0.0
        sw = rng.uniform(0.5, 2.0, size=n)
        loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
        for reduction in REDUCTIONS:
            check_outputs(loss, y, z, gamma, alpha, sw, reduction, dtype, f"K={K} {reduction}")
        zn = z.copy()
        zn[4, 0] = np.nan
        rows, g, h = loss.value_grad_hess(y, zn, reduction="none")
        r0, g0, h0 = loss.value_grad_hess(y, z, reduction="none")
        assert np.isnan(rows[4]) and np.all(np.isnan(g[4])) and np.all(np.isnan(h[4]))
        keep = np.arange(n) != 4
        assert_bitwise_equal(rows[keep], r0[keep], f"K={K}: rows beside the NaN row")
        assert_bitwise_equal(g[keep], g0[keep], f"K={K}: gradient beside the NaN row")
        assert_bitwise_equal(h[keep], h0[keep], f"K={K}: Hessian beside the NaN row")


@pytest.mark.parametrize("gamma", GAMMAS)
def test_fastloss_vs_finite_differences(gamma, rng):
    """float64 fastloss: gradient against central differences of the reference value, and the
    Hessian diagonal against central differences of fastloss's own gradient."""
    n, K = 6, 5
    z = rng.normal(scale=1.5, size=(n, K))
    y = make_targets(rng, n, K, np.float64, "mixed")
    alpha = rng.uniform(0.3, 2.0, size=K)
    sw = rng.uniform(0.5, 2.0, size=n)
    loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
    for reduction in REDUCTIONS:
        _, g, hs = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
        norm = np.sum(sw) if reduction == "mean" else 1.0
        h = 1e-5
        for j in range(K):
            dz = np.zeros_like(z)
            dz[:, j] = h
            fd = sw * (ref_value_simple(y, z + dz, gamma, alpha)
                       - ref_value_simple(y, z - dz, gamma, alpha)) / (2 * h) / norm
            np.testing.assert_allclose(g[:, j], fd, rtol=1e-7, atol=1e-9,
                                       err_msg=f"grad {reduction} {j}")
            _, gp = loss.value_and_grad(y, z + dz, sample_weight=sw, reduction=reduction)
            _, gm = loss.value_and_grad(y, z - dz, sample_weight=sw, reduction=reduction)
            np.testing.assert_allclose(hs[:, j], (gp[:, j] - gm[:, j]) / (2 * h), rtol=1e-7,
                                       atol=1e-9, err_msg=f"hess {reduction} {j}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_alpha_does_not_normalize(dtype, rng):
    """alpha = 2 everywhere doubles every output exactly (the mean divides by sum(s) only)."""
    n, K = 11, 6
    z = make_logits(rng, n, K, dtype)
    y = make_targets(rng, n, K, dtype, "soft")
    sw = rng.uniform(0.5, 1.5, size=n)
    for gamma in (0.0, 2.0):
        plain = fl.CategoricalFocal(gamma=gamma)
        double = fl.CategoricalFocal(gamma=gamma, alpha=[2.0] * K)
        for reduction in REDUCTIONS:
            v1, g1, h1 = plain.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
            v2, g2, h2 = double.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
            assert_bitwise_equal(v2, 2 * v1 if reduction != "none" else (2 * v1).astype(dtype),
                                 f"value {reduction}")
            assert_bitwise_equal(g2, (2 * g1).astype(dtype), f"grad {reduction}")
            assert_bitwise_equal(h2, (2 * h1).astype(dtype), f"hess {reduction}")
        # the mean is the weighted sum over the summed sample weights
        total = double(y, z, sample_weight=sw, reduction="sum")
        assert double(y, z, sample_weight=sw) == pytest.approx(total / np.sum(sw), rel=1e-14)


def test_docstring_example_and_functional(rng):
    assert round(fl.CategoricalFocal(gamma=2.0)(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])),
                 6) == 0.173287
    # 0.25 * log 2 exactly
    assert fl.CategoricalFocal(gamma=2.0)(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])) == \
        pytest.approx(0.25 * math.log(2), rel=1e-15)
    z = rng.normal(size=(2, 3, 4))
    y = make_targets(rng, 6, 4, np.float64, "soft").reshape(2, 3, 4)
    sw = rng.uniform(0.5, 1.5, size=(2, 3))
    for reduction in REDUCTIONS:
        got = fl.categorical_focal(y, z, gamma=1.5, alpha=[1, 2, 3, 4], sample_weight=sw,
                                   reduction=reduction)
        want = fl.CategoricalFocal(gamma=1.5, alpha=[1, 2, 3, 4], reduction=reduction)(
            y, z, sample_weight=sw)
        assert_bitwise_equal(got, want, reduction)
    # leading axes: (2, 3, 4) equals the (6, 4) flattening
    loss = fl.CategoricalFocal(gamma=1.5)
    for reduction in REDUCTIONS:
        v, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
        v2, g2, h2 = loss.value_grad_hess(y.reshape(6, 4), z.reshape(6, 4),
                                          sample_weight=sw.reshape(6), reduction=reduction)
        assert_bitwise_equal(v, v2 if reduction != "none" else v2.reshape(2, 3), reduction)
        assert_bitwise_equal(g, g2.reshape(2, 3, 4), reduction)
        assert_bitwise_equal(h, h2.reshape(2, 3, 4), reduction)
    check_outputs(loss, y, z, 1.5, None, sw, "mean", np.float64, "3-D")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_output_buffers(dtype, rng):
    n, K = 9, 5
    z = make_logits(rng, n, K, dtype)
    y = make_targets(rng, n, K, dtype, "soft")
    loss = fl.CategoricalFocal(gamma=2.0)
    er, eg, eh = loss.value_grad_hess(y, z, reduction="none")
    out = np.full(n, SENTINEL, dtype)
    g = np.full((n, K), SENTINEL, dtype)
    h = np.full((n, K), SENTINEL, dtype)
    r, g_, h_ = loss.value_grad_hess(y, z, reduction="none", out=out, grad_out=g, hess_out=h)
    assert r is out and g_ is g and h_ is h
    assert_bitwise_equal(out, er, "out")
    assert_bitwise_equal(g, eg, "grad_out")
    assert_bitwise_equal(h, eh, "hess_out")
    g2 = np.full((n, K), SENTINEL, dtype)
    r2, gg = loss.value_and_grad(y, z, reduction="none", grad_out=g2)
    assert gg is g2
    assert_bitwise_equal(g2, eg, "value_and_grad grad_out")
    # strided output buffers
    big_g = np.full((n, 2 * K), SENTINEL, dtype)
    big_h = np.full((2 * n, K), SENTINEL, dtype)
    _, gv, hv = loss.value_grad_hess(y, z, reduction="none", grad_out=big_g[:, ::2],
                                     hess_out=big_h[::2])
    assert_bitwise_equal(big_g[:, ::2], eg, "strided grad_out")
    assert_bitwise_equal(big_h[::2], eh, "strided hess_out")
    assert np.all(big_g[:, 1::2] == SENTINEL) and np.all(big_h[1::2] == SENTINEL)


# --------------------------------------------------------------------------------------------------
# 2. PyTorch cross-check
# --------------------------------------------------------------------------------------------------


# torch's own rounding (1 - p by cancellation, O^gamma of it): the float64 comparisons allow this
# relative error of the terms' scale; the float32 ones are bound by float32's rounding anyway.
TORCH_RTOL = 1e-11


def _torch_focal_rows(torch, y, z, gamma, alpha):
    lsm = torch.log_softmax(z, dim=-1)
    p = lsm.exp()
    w = y * (alpha if alpha is not None else 1.0)
    mask = w > 0
    # where the target is 0, the term is 0 (no 0 * inf); the masked branch gets a zero gradient
    safe = torch.where(mask, lsm, torch.zeros_like(lsm))
    terms = torch.where(mask, -w * (1.0 - p) ** gamma * safe, torch.zeros_like(lsm))
    return terms.sum(dim=-1)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_torch_value_and_gradient(dtype, gamma, rng):
    torch = pytest.importorskip("torch")
    n, K = 40, 6
    # moderate logits: torch forms 1 - p by cancellation (relative error eps64 / (1 - p))
    z = rng.normal(scale=2.0, size=(n, K)).astype(dtype)
    z[5] = [1e4, 0, 0, 0, 0, 0]  # p = 1 exactly: torch's gradient is NaN for gamma < 1
    y = make_targets(rng, n, K, dtype, "mixed")
    y[5] = np.eye(K)[0]
    alpha = rng.uniform(0.2, 2.0, size=K)
    sw = rng.uniform(0.0, 2.0, size=n)
    loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
    zt = torch.tensor(z.astype(np.float64), requires_grad=True)
    yt = torch.tensor(y.astype(np.float64))
    at = torch.tensor(alpha)
    st_ = torch.tensor(sw)
    rows_t = _torch_focal_rows(torch, yt, zt, gamma, at)
    for reduction in REDUCTIONS:
        if reduction == "none":
            obj = (st_ * rows_t).sum()
            expected_v = (st_ * rows_t).detach().numpy()
        elif reduction == "sum":
            obj = (st_ * rows_t).sum()
            expected_v = float(obj.detach())
        else:
            obj = (st_ * rows_t).sum() / st_.sum()
            expected_v = float(obj.detach())
        (tg,) = torch.autograd.grad(obj, zt, retain_graph=True)
        tg = tg.numpy()
        v, g = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction)
        (_, _, _), (vs, gs, _) = ref_focal(y, z, gamma, alpha, sw, reduction)
        ul = _ulps(gamma)
        eps = float(np.finfo(dtype).eps)
        v_ulps = max(VALUE_ULPS * ul, TORCH_RTOL / eps)
        g_ulps = max(DERIV_ULPS * ul, TORCH_RTOL / eps)
        assert_scaled_close(v, expected_v, vs, dtype, v_ulps, f"value {reduction}",
                            tiny_scale=n * K)
        finite = np.isfinite(tg)
        if 0 < gamma < 1:
            assert not np.all(finite[5]), "torch's gradient at p = 1 should be NaN for gamma < 1"
        assert np.all(np.isfinite(g)), f"fastloss gradient not finite ({reduction})"
        assert_scaled_close(g[finite], tg[finite], gs[finite], dtype, g_ulps,
                            f"grad {reduction}", tiny_scale=np.max(gs))
        # where torch is NaN (p = 1), the limit: 0 for a one-hot target on the saturated class
        np.testing.assert_array_equal(g[~finite], 0)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_torch_hessian_diagonal(gamma, rng):
    torch = pytest.importorskip("torch")
    K = 4
    rows = [(np.array([0.2, 0.0, 0.5, 0.3]), rng.normal(scale=2.0, size=K)),
            (np.array([0.0, 1.0, 0.0, 0.0]), rng.normal(scale=2.0, size=K)),
            (np.array([1.0, 0.0, 0.0, 0.0]), np.array([6.0, 0.5, -1.0, 2.0])),
            (np.array([0.25, 0.25, 0.25, 0.25]), np.array([0.1, -0.2, 0.3, 0.0]))]
    alpha = np.array([0.5, 1.5, 1.0, 2.0])
    loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
    for y, z in rows:
        yt, at = torch.tensor(y), torch.tensor(alpha)
        H = torch.autograd.functional.hessian(
            lambda zz: _torch_focal_rows(torch, yt, zz, gamma, at), torch.tensor(z))
        expected = np.diag(H.numpy())
        _, g, h = loss.value_grad_hess(y[None], z[None], reduction="sum")
        (_, _, _), (_, _, hs) = ref_focal(y[None], z[None], gamma, alpha, None, "sum")
        ulps = max(DERIV_ULPS * _ulps(gamma), TORCH_RTOL / float(np.finfo(np.float64).eps))
        assert_scaled_close(h[0], expected, hs[0], np.float64, ulps,
                            f"hess y={y} z={z}")


# --------------------------------------------------------------------------------------------------
# 3. Special cases: gamma = 0 is cross-entropy; one-hot targets are the sparse focal loss
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gamma_zero_is_categorical_cross_entropy(isa, dtype, rng):
    n, K = 30, 9
    z = make_logits(rng, n, K, dtype, scale=2.0)
    y = make_targets(rng, n, K, dtype, "mixed")
    sw = rng.uniform(0.0, 2.0, size=n)
    focal = fl.CategoricalFocal(gamma=0.0)
    ce = fl.CategoricalCrossEntropy(from_logits=True)
    for reduction in REDUCTIONS:
        vf, gf, hf = focal.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
        vc, gc, hc = ce.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
        (_, _, _), (vs, gs, hs) = ref_focal(y, z, 0.0, None, sw, reduction)
        assert_scaled_close(vf, vc, vs, dtype, 2, f"value {reduction}")
        if reduction == "none":
            assert_elementwise_close(vf, vc, dtype, ulps=2, what="rows")
        assert_scaled_close(gf, gc, gs, dtype, 2, f"grad {reduction}")
        assert_scaled_close(hf, hc, hs, dtype, 2, f"hess {reduction}")


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_one_hot_is_sparse_focal(isa, dtype, gamma, rng):
    n, K = 30, 9
    z = make_logits(rng, n, K, dtype, scale=2.0)
    t = rng.integers(0, K, size=n)
    t[1] = np.argmax(z[1])  # a confident correct row
    y = np.eye(K, dtype=dtype)[t]
    assert np.array_equal(np.argmax(y, axis=-1), t)
    alpha = rng.uniform(0.2, 2.0, size=K)
    sw = rng.uniform(0.0, 2.0, size=n)
    for a in (None, alpha):
        dense = fl.CategoricalFocal(gamma=gamma, alpha=a)
        sparse = fl.SparseCategoricalFocal(gamma=gamma, alpha=a)
        for reduction in REDUCTIONS:
            vd, gd, hd = dense.value_grad_hess(y, z, sample_weight=sw, reduction=reduction)
            vs_, gs_, hs_ = sparse.value_grad_hess(t, z, sample_weight=sw, reduction=reduction)
            (_, _, _), (vs, gs, hs) = ref_focal(y, z, gamma, a, sw, reduction)
            ul = 4 * _ulps(gamma)
            what = f"alpha={a is not None} {reduction}"
            assert_scaled_close(vd, vs_, vs, dtype, ul, f"value {what}")
            assert_scaled_close(gd, gs_, gs, dtype, ul, f"grad {what}")
            assert_scaled_close(hd, hs_, hs, dtype, ul, f"hess {what}")


# --------------------------------------------------------------------------------------------------
# 4. Edge cases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_saturated_correct_row(isa, dtype, gamma):
    loss = fl.CategoricalFocal(gamma=gamma)
    y = np.array([[1.0, 0.0, 0.0]], dtype=dtype)
    z = np.array([[40.0, 0.0, 0.0]], dtype=dtype)
    v, g, h = loss.value_grad_hess(y, z, reduction="sum")
    ev, eg, eh = _mp_row([1.0, 0.0, 0.0], [40.0, 0.0, 0.0], gamma)
    # the value keeps its relative accuracy: (2 e^-40)^gamma * log1p(2 e^-40) (float32: 4e-31)
    assert v > 0
    assert v == pytest.approx(ev, rel=(VALUE_ULPS * _ulps(gamma)) * float(np.finfo(dtype).eps))
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    # the derivatives at the row's scale: c_0 = (1 + gamma) O^gamma (~ C)
    C = (1 + gamma) * (2 * math.exp(-40)) ** gamma
    (_, eg_ref, eh_ref), (_, gs, hs) = ref_focal(y, z, gamma, None, None, "sum")
    np.testing.assert_allclose(eg_ref[0], eg, rtol=1e-12)
    np.testing.assert_allclose(eh_ref[0], eh, rtol=1e-12)
    assert_scaled_close(g, eg[None], gs, dtype, DERIV_ULPS * _ulps(gamma), "grad",
                        tiny_scale=C)
    assert_scaled_close(h, eh[None], hs, dtype, DERIV_ULPS * _ulps(gamma), "hess",
                        tiny_scale=C)
    # the non-target classes get p_j C, accurate to the element up to O^gamma formed as
    # exp(gamma log O): |gamma log O| eps
    O = 2 * math.exp(-40) / (1 + 2 * math.exp(-40))
    assert_elementwise_close(g[0, 1:], eg[1:], dtype, ulps=8 + 2 * gamma * abs(math.log(O)),
                             what="grad of the other classes")
    # z = [1e4, 0, 0]: p = 1 exactly; the limits are 0 (value, gradient, Hessian)
    z = np.array([[1e4, 0.0, 0.0]], dtype=dtype)
    for reduction in REDUCTIONS:
        v, g, h = loss.value_grad_hess(y, z, reduction=reduction)
        np.testing.assert_array_equal(v, 0.0 if reduction != "none" else [0.0])
        np.testing.assert_array_equal(g, np.zeros((1, 3)))
        np.testing.assert_array_equal(h, np.zeros((1, 3)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_class_at_minus_inf_with_zero_target(isa, dtype, rng):
    z = np.array([[1.0, -np.inf, 0.5, -2.0],
                  [0.0, -np.inf, -np.inf, 3.0],
                  [-np.inf, 2.0, 2.0, -np.inf]], dtype=dtype)
    y = np.array([[0.2, 0.0, 0.8, 0.0],
                  [0.5, 0.0, 0.0, 0.5],
                  [0.0, 1.0, 0.0, 0.0]], dtype=dtype)
    alpha = np.array([1.0, 3.0, 0.5, 2.0])
    for gamma in GAMMAS:
        loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
        v, g, h = loss.value_grad_hess(y, z, reduction="none")
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        minf = np.isneginf(z)
        np.testing.assert_array_equal(g[minf], 0)
        np.testing.assert_array_equal(h[minf], 0)
        # equal to the rows without those classes
        for i in range(3):
            keep = ~minf[i]
            a_i = alpha[keep]
            vr, gr, hr = fl.CategoricalFocal(gamma=gamma, alpha=a_i).value_grad_hess(
                y[i:i + 1, keep], z[i:i + 1, keep], reduction="none")
            assert_elementwise_close(v[i:i + 1], vr.astype(np.float64), dtype, ulps=2,
                                     what=f"row {i} value gamma={gamma}")
            (_, eg, eh), (_, gs, hs) = ref_focal(y[i:i + 1, keep], z[i:i + 1, keep], gamma, a_i,
                                                 None, "sum")
            assert_scaled_close(g[i:i + 1, keep], eg, gs, dtype, DERIV_ULPS * _ulps(gamma),
                                f"row {i} grad gamma={gamma}")
            assert_scaled_close(h[i:i + 1, keep], eh, hs, dtype, DERIV_ULPS * _ulps(gamma),
                                f"row {i} hess gamma={gamma}")
        check_outputs(loss, y, z, gamma, alpha, None, "mean", dtype, f"gamma={gamma}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_plus_inf_logits(isa, dtype):
    inf = np.inf
    z = np.array([[inf, 0.0, 3.0],    # target on the only +inf class: 0
                  [inf, inf, 1.0],    # two +inf classes share: p = [1/2, 1/2, 0]
                  [inf, -inf, 5.0],
                  [0.5, -1.0, 2.0]], dtype=dtype)
    y = np.array([[1.0, 0.0, 0.0],
                  [0.5, 0.5, 0.0],
                  [1.0, 0.0, 0.0],
                  [0.3, 0.3, 0.4]], dtype=dtype)
    for gamma in GAMMAS:
        loss = fl.CategoricalFocal(gamma=gamma)
        v, g, h = loss.value_grad_hess(y, z, reduction="none")
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        np.testing.assert_array_equal(v[[0, 2]], 0.0)
        np.testing.assert_array_equal(g[[0, 2]], 0.0)
        np.testing.assert_array_equal(h[[0, 2]], 0.0)
        # row 1: -2 * 0.5 * 0.5^gamma * log(0.5) = 0.5^gamma log 2; gradient 0 by symmetry
        assert v[1] == pytest.approx(0.5 ** gamma * math.log(2), rel=4 * float(np.finfo(dtype).eps))
        assert np.all(np.abs(g[1]) <= 4 * np.finfo(dtype).eps)
        (ev, eg, eh), (vs, gs, hs) = ref_focal(y[1:2], np.array([[0.0, 0.0, -inf]]), gamma,
                                               None, None, "none")
        assert_scaled_close(h[1:2], eh, hs, dtype, DERIV_ULPS * _ulps(gamma), "hess row 1")
        assert h[1, 2] == 0
        check_outputs(loss, y, z, gamma, None, None, "mean", dtype, f"gamma={gamma}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_infinite_loss_rows_have_the_limit_gradient(dtype):
    """Target mass on a class at -inf (or a class whose logit is finite while another is +inf):
    the loss is +inf, and the gradient is the finite limit p_j C - c_j with c_k -> alpha_k y_k
    for the vanishing class (p L -> 0), as CategoricalCrossEntropy gives (gamma = 0 is CCE)."""
    inf = np.inf
    z = np.array([[0.0, -inf, 1.0], [inf, 5.0, inf]], dtype=dtype)
    y = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype)
    p0 = np.exp(ref_log_softmax(np.array([0.0, 1.0])))
    want = np.array([[p0[0], -1.0, p0[1]], [0.5, -1.0, 0.5]])
    ce = fl.CategoricalCrossEntropy(from_logits=True).value_and_grad(y, z, reduction="none")
    np.testing.assert_allclose(ce[1], want, rtol=1e-6)
    for gamma in GAMMAS:
        v, g = fl.CategoricalFocal(gamma=gamma).value_and_grad(y, z, reduction="none")
        np.testing.assert_array_equal(v, [inf, inf])
        assert not np.any(np.isnan(g)), f"gamma={gamma}: gradient {g.tolist()} (limit " \
                                        f"{want.tolist()})"
        np.testing.assert_allclose(g, want, rtol=1e-6, err_msg=f"gamma={gamma}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nan_stays_in_its_row(isa, dtype, rng):
    n, K = 6, 5
    z = make_logits(rng, n, K, dtype)
    y = make_targets(rng, n, K, dtype, "soft")
    z[2, 3] = np.nan
    z[4, 0] = np.nan
    z[4, 1] = np.inf
    loss = fl.CategoricalFocal(gamma=2.0)
    rows, g, h = loss.value_grad_hess(y, z, reduction="none")
    good = np.array([0, 1, 3, 5])
    assert np.isnan(rows[2]) and np.isnan(rows[4])
    assert np.all(np.isfinite(rows[good]))
    assert np.all(np.isfinite(g[good])) and np.all(np.isfinite(h[good]))
    r2, g2, h2 = loss.value_grad_hess(y[good], z[good], reduction="none")
    assert_bitwise_equal(rows[good], r2, "rows without the NaN rows")
    assert_bitwise_equal(g[good], g2, "grad without the NaN rows")
    assert_bitwise_equal(h[good], h2, "hess without the NaN rows")
    assert math.isnan(loss(y, z)) and math.isnan(loss(y, z, reduction="sum"))
    # a NaN target too
    y2 = y.copy()
    y2[1, 2] = np.nan
    rows = loss(y2, np.nan_to_num(z), reduction="none")
    assert np.isnan(rows[1]) and np.all(np.isfinite(np.delete(rows, 1)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_single_class(isa, dtype, rng):
    z = rng.normal(scale=10, size=(7, 1)).astype(dtype)
    z[3] = np.inf
    y = np.ones((7, 1), dtype)
    y[2] = 0.5
    for gamma in GAMMAS:
        loss = fl.CategoricalFocal(gamma=gamma, alpha=[2.0])
        for reduction in REDUCTIONS:
            v, g, h = loss.value_grad_hess(y, z, reduction=reduction)
            np.testing.assert_array_equal(v, 0.0 if reduction != "none" else np.zeros(7))
            np.testing.assert_array_equal(g, np.zeros((7, 1)))
            np.testing.assert_array_equal(h, np.zeros((7, 1)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_single_row(dtype, rng):
    K = 9
    z = rng.normal(size=K).astype(dtype)
    y = make_targets(rng, 1, K, dtype, "soft")[0]
    loss = fl.CategoricalFocal(gamma=2.0, alpha=rng.uniform(0.5, 2.0, K))
    for reduction in REDUCTIONS:
        check_outputs(loss, y[None], z[None], 2.0, loss.alpha, None, reduction, dtype, "(1, K)")
        v, g, h = loss.value_grad_hess(y, z, reduction=reduction)  # 1-D: one row
        v2, g2, h2 = loss.value_grad_hess(y[None], z[None], reduction=reduction)
        assert_bitwise_equal(v, v2 if reduction != "none" else v2.reshape(()), reduction)
        assert_bitwise_equal(g, g2[0], reduction)
        assert_bitwise_equal(h, h2[0], reduction)
    assert loss(y[None], z[None]) == loss(y[None], z[None], reduction="sum")


def test_empty_input():
    for dtype in DTYPES:
        z = np.zeros((0, 4), dtype)
        y = np.zeros((0, 4), dtype)
        loss = fl.CategoricalFocal()
        assert math.isnan(loss(y, z))
        assert loss(y, z, reduction="sum") == 0.0
        v, g, h = loss.value_grad_hess(y, z)
        assert math.isnan(v)
        assert g.shape == (0, 4) and g.dtype == dtype and h.shape == (0, 4) and h.dtype == dtype
        rows = loss(y, z, reduction="none")
        assert rows.shape == (0,) and rows.dtype == dtype
    # zero sample weights: an empty mean, NaN with a zero gradient
    z = np.array([[1.0, 2.0], [0.0, -1.0]])
    v, g = fl.CategoricalFocal().value_and_grad(np.eye(2), z, sample_weight=np.zeros(2))
    assert math.isnan(v)
    np.testing.assert_array_equal(g, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_derivatives_finite_where_value_finite(isa, dtype, rng):
    """Extreme but finite inputs: whenever a row's value is finite, so are its derivatives."""
    n, K = 64, 7
    z = rng.choice([-1e30, -1e4, -88.0, -40.0, 0.0, 1e-30, 17.0, 40.0, 1e4, 1e30], size=(n, K))
    z = z.astype(dtype)
    y = make_targets(rng, n, K, dtype, "mixed")
    y[::5] = np.eye(K)[np.argmax(z[::5], axis=-1)]  # saturated correct rows
    for gamma in GAMMAS:
        for alpha in (None, rng.uniform(0, 2, size=K)):
            rows, g, h = fl.CategoricalFocal(gamma=gamma, alpha=alpha).value_grad_hess(
                y, z, reduction="none")
            fin = np.isfinite(rows)
            assert np.all(rows[fin] >= 0)
            assert np.all(np.isfinite(g[fin])), f"gamma={gamma}: {np.argwhere(~np.isfinite(g))}"
            assert np.all(np.isfinite(h[fin])), f"gamma={gamma}: {np.argwhere(~np.isfinite(h))}"


# --------------------------------------------------------------------------------------------------
# 4. Errors
# --------------------------------------------------------------------------------------------------


def test_parameter_errors():
    for bad in (-0.5, -1e-12, math.nan, math.inf):
        with pytest.raises(ValueError, match="gamma"):
            fl.CategoricalFocal(gamma=bad)
    with pytest.raises(TypeError):
        fl.CategoricalFocal(gamma="2")
    for bad in ([1.0, -1.0], [1.0, math.nan], [[1.0, 2.0]], []):
        with pytest.raises(ValueError, match="alpha"):
            fl.CategoricalFocal(alpha=bad)
    with pytest.raises(TypeError):
        fl.CategoricalFocal(from_logits=False)
    with pytest.raises(TypeError):
        fl.CategoricalFocal(label_smoothing=0.1)
    # gamma = 0 is allowed
    assert fl.CategoricalFocal(gamma=0).gamma == 0.0


def test_shape_and_alpha_length_errors():
    z = np.zeros((3, 4))
    loss = fl.CategoricalFocal()
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)|\(3, 4\).*\(3, 5\)"):
        loss(np.zeros((3, 5)), z)
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 4\)|\(3, 4\).*\(4,\)"):
        loss(np.zeros(4), z)
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(3, 4\)|\(3, 4\).*\(2, 4\)"):
        loss(np.zeros((2, 4)), z)
    for alpha in ([1.0] * 3, [1.0] * 5):
        with pytest.raises(ValueError, match=r"\b4\b"):
            fl.CategoricalFocal(alpha=alpha)(np.zeros((3, 4)), z)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(np.zeros((3, 4)), z, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        loss(np.zeros((3, 4)), z, reduction="avg")


def test_errors_leave_buffers_untouched(rng):
    n, K = 8, 5
    z = rng.normal(size=(n, K))
    y = make_targets(rng, n, K, np.float64, "soft")
    plain = fl.CategoricalFocal(gamma=2.0)
    cases = {
        "y_true shape": (plain, y[:, :-1], None, ValueError),
        "y_true rows": (plain, y[:-1], None, ValueError),
        "alpha length": (fl.CategoricalFocal(alpha=[1.0] * (K + 1)), y, None, ValueError),
        "alpha short": (fl.CategoricalFocal(alpha=[1.0] * (K - 1)), y, None, ValueError),
        "negative sample weight": (plain, y, -np.ones(n), ValueError),
    }
    for what, (loss, yy, sw, exc) in cases.items():
        out = np.full(n, SENTINEL)
        g = np.full((n, K), SENTINEL)
        h = np.full((n, K), SENTINEL)
        with pytest.raises(exc):
            loss.value_grad_hess(yy, z, sample_weight=sw, reduction="none", out=out, grad_out=g,
                                 hess_out=h)
        assert np.all(out == SENTINEL) and np.all(g == SENTINEL) and np.all(h == SENTINEL), what
        g = np.full((n, K), SENTINEL)
        with pytest.raises(exc):
            loss.value_and_grad(yy, z, sample_weight=sw, grad_out=g)
        assert np.all(g == SENTINEL), what
        zc = z.copy()
        with pytest.raises(exc):
            loss.value_and_grad(yy, zc, sample_weight=sw, grad_out=zc)
        assert_bitwise_equal(zc, z, f"{what}: logits after a failed in-place call")
    # a bad hess_out after a good grad_out: nothing written
    g = np.full((n, K), SENTINEL)
    with pytest.raises(ValueError):
        plain.value_grad_hess(y, z, grad_out=g, hess_out=np.zeros((n, K + 1)))
    assert np.all(g == SENTINEL)


# --------------------------------------------------------------------------------------------------
# 5. Determinism, strides, in place
# --------------------------------------------------------------------------------------------------


def _det_problem(rng, dtype, n=4000, K=32):
    z = rng.normal(scale=4.0, size=(n, K)).astype(dtype)  # 128 000 elements
    z[7, 3] = np.inf
    z[9, :] = 0.0
    z[9, 0] = 60.0
    z[11, 5] = -np.inf
    y = make_targets(rng, n, K, dtype, "mixed")
    y[7] = np.eye(K)[3]  # on the +inf class: a finite row
    y[11, 5] = 0.0
    sw = rng.uniform(0, 2, size=n)
    alpha = rng.uniform(0.2, 3.0, size=K)
    return fl.CategoricalFocal(gamma=2.0, alpha=alpha), y, z, sw


def _all_results(loss, y, z, sw):
    out = []
    for reduction in REDUCTIONS:
        out.extend(loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_thread_count_bitwise(dtype, rng):
    loss, y, z, sw = _det_problem(rng, dtype)
    assert z.size >= 100_000
    with fl.num_threads(1):
        one = _all_results(loss, y, z, sw)
    with fl.num_threads(2):
        two = _all_results(loss, y, z, sw)
    for i, (a, b) in enumerate(zip(one, two)):
        assert_bitwise_equal(a, b, f"output {i}: 1 vs 2 threads")
    assert all(np.all(np.isfinite(r)) for r in one[1:3])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_avx2_avx512_bitwise(dtype, rng):
    if not {"avx2", "avx512"} <= set(AVAILABLE_ISAS):
        pytest.skip("needs both avx2 and avx512")
    loss, y, z, sw = _det_problem(rng, dtype, n=600, K=37)
    results = {}
    for name in ("avx2", "avx512"):
        fl.select_isa(name)
        results[name] = _all_results(loss, y, z, sw)
    for i, (a, b) in enumerate(zip(results["avx2"], results["avx512"])):
        assert_bitwise_equal(a, b, f"output {i}: avx2 vs avx512")


def _strided_views(base):
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
        "reversed": base[::-1].copy()[::-1],
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_strided_inputs_match_contiguous(dtype, rng):
    n, K = 17, 21
    z = make_logits(rng, n, K, dtype)
    y = make_targets(rng, n, K, dtype, "mixed")
    sw = rng.uniform(0.5, 1.5, size=n)
    loss = fl.CategoricalFocal(gamma=1.5, alpha=rng.uniform(0.5, 2.0, size=K))
    base = _all_results(loss, y, z, sw)
    for name, view in _strided_views(z).items():
        assert np.array_equal(view, z)
        for i, (a, b) in enumerate(zip(_all_results(loss, y, view, sw), base)):
            assert_bitwise_equal(a, b, f"logits {name}: output {i}")
    for name, view in _strided_views(y).items():
        for i, (a, b) in enumerate(zip(_all_results(loss, view, z, sw), base)):
            assert_bitwise_equal(a, b, f"targets {name}: output {i}")
    sw2 = np.repeat(sw, 2)[::2]
    for i, (a, b) in enumerate(zip(_all_results(loss, y, z, sw2), base)):
        assert_bitwise_equal(a, b, f"strided sample weights: output {i}")
    # broadcast rows (stride 0)
    bz = np.broadcast_to(z[:1], (n, K))
    by = np.broadcast_to(y[:1], (n, K))
    rows = loss(by, bz, reduction="none")
    assert np.all(rows == rows[0])


def _bitwise_mismatch(a, b, what):
    try:
        assert_bitwise_equal(a, b, what)
    except AssertionError as e:
        return str(e).splitlines()[0]
    return None


@pytest.mark.parametrize("hess", [False, True], ids=["grad", "grad+hess"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_in_place_gradient(dtype, hess, rng):
    """grad_out=y_pred: value, gradient (and Hessian) bitwise equal to a separate buffer. Every
    mismatch is collected and reported together."""
    n, K = 21, 19
    z0 = make_logits(rng, n, K, dtype)
    z0[3, 4] = np.inf
    z0[5, 2] = -np.inf
    y = make_targets(rng, n, K, dtype, "mixed")
    y[3] = np.eye(K)[4]
    y[5] = np.eye(K)[0]
    sw = rng.uniform(0.5, 1.5, size=n)
    problems = []
    for gamma in (0.0, 0.5, 2.0):
        loss = fl.CategoricalFocal(gamma=gamma, alpha=rng.uniform(0.5, 2.0, size=K))
        for reduction in REDUCTIONS:
            z = z0.copy()
            if hess:
                v_sep, g_sep, h_sep = loss.value_grad_hess(y, z0.copy(), sample_weight=sw,
                                                           reduction=reduction)
                v, g, h = loss.value_grad_hess(y, z, sample_weight=sw, reduction=reduction,
                                               grad_out=z)
                problems.append(_bitwise_mismatch(h, h_sep, f"hess {reduction} gamma={gamma}"))
            else:
                v_sep, g_sep = loss.value_and_grad(y, z0.copy(), sample_weight=sw,
                                                   reduction=reduction)
                v, g = loss.value_and_grad(y, z, sample_weight=sw, reduction=reduction,
                                           grad_out=z)
            assert g is z
            problems.append(_bitwise_mismatch(g, g_sep, f"grad {reduction} gamma={gamma}"))
            problems.append(_bitwise_mismatch(v, v_sep, f"value {reduction} gamma={gamma}"))
    problems = [p for p in problems if p]
    assert not problems, "in place differs from a separate buffer:\n" + "\n".join(problems)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_in_place_gradient_on_views(dtype, rng):
    """grad_out=y_pred where y_pred is a strided or padded view of a larger buffer."""
    n, K = 13, 6
    y = make_targets(rng, n, K, dtype, "soft")
    big0 = rng.normal(size=(n, 2 * K)).astype(dtype)
    loss = fl.CategoricalFocal(gamma=2.0)
    for sl in (np.s_[:, ::2], np.s_[:, :K], np.s_[:, K:]):
        big = big0.copy()
        view = big[sl]
        expected = loss.value_and_grad(y, np.ascontiguousarray(view))
        v, g = loss.value_and_grad(y, view, grad_out=view)
        assert g is view
        rest = np.ones(big.shape, bool)
        rest[sl] = False
        assert_bitwise_equal(big[rest], big0[rest], "elements outside the view untouched")
        assert_bitwise_equal(view, expected[1], f"grad {sl}")
        assert_bitwise_equal(v, expected[0], f"value {sl}")


# --------------------------------------------------------------------------------------------------
# 6. Hypothesis properties
# --------------------------------------------------------------------------------------------------


@st.composite
def focal_problems(draw):
    n = draw(st.integers(1, 10))
    K = draw(st.integers(1, 30))
    dtype = draw(st.sampled_from(DTYPES))
    mag = draw(st.sampled_from([1.0, 5.0, 20.0, 50.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["uniform", "ties"]))
    if kind == "uniform":
        z = rng.uniform(-mag, mag, size=(n, K))
    else:
        z = rng.choice([-mag, 0.0, mag], size=(n, K))
    y = make_targets(rng, n, K, np.float64, draw(st.sampled_from(["soft", "mixed", "onehot"])))
    gamma = draw(st.sampled_from(GAMMAS + [draw(st.floats(0.0, 5.0))]))
    alpha = rng.uniform(0.0, 3.0, size=K) if draw(st.booleans()) else None
    return z.astype(dtype), y.astype(dtype), dtype, gamma, alpha


@given(focal_problems())
@settings(suppress_health_check=[HealthCheck.too_slow])
# a loss of 3.7e-44, a float32 subnormal: the sum, returned in float32, is rounded to 27 * 2^-149
@example((np.array([[50.0, -50.0]], dtype=np.float32), np.array([[1.0, 0.0]], dtype=np.float32),
          np.float32, 0.0, None))
def test_property_value_matches_reference(problem):
    z, y, dtype, gamma, alpha = problem
    loss = fl.CategoricalFocal(gamma=gamma, alpha=alpha)
    rows, g, h = loss.value_grad_hess(y, z, reduction="none")
    (er, eg, eh), (rs, gs, hs) = ref_focal(y, z, gamma, alpha, None, "none")
    assert np.all(np.isfinite(rows)) and np.all(rows >= 0)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    ul = _ulps(gamma)
    C = float(np.max(np.sum(gs, axis=-1)))
    assert_scaled_close(rows, er, rs, dtype, VALUE_ULPS * ul, "rows", tiny_scale=z.shape[-1])
    assert_scaled_close(g, eg, gs, dtype, DERIV_ULPS * ul, "grad", tiny_scale=C)
    assert_scaled_close(h, eh, hs, dtype, DERIV_ULPS * ul, "hess", tiny_scale=C)
    total = loss(y, z, reduction="sum")  # in dtype: below its normal range, rounded to its spacing
    assert abs(total - float(np.sum(er))) <= VALUE_ULPS * ul * float(np.finfo(dtype).eps) * \
        float(np.sum(rs)) + float(np.finfo(dtype).smallest_subnormal)


@given(focal_problems())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_property_gradient_rows_sum_to_zero(problem):
    """sum_j (p_j C - c_j) = C - C = 0 for every row, to the rounding of the row's scale C."""
    z, y, dtype, gamma, alpha = problem
    _, g = fl.CategoricalFocal(gamma=gamma, alpha=alpha).value_and_grad(y, z, reduction="sum")
    assert np.all(np.isfinite(g))
    (_, _, _), (_, gs, _) = ref_focal(y, z, gamma, alpha, None, "sum")
    K = z.shape[-1]
    sums = g.astype(np.float64).sum(axis=-1)
    scale = np.sum(gs, axis=-1)  # sum_j (p_j C + |c_j|) = 2 C
    allow = (K + DERIV_ULPS * _ulps(gamma)) * float(np.finfo(dtype).eps) * scale \
        + 4 * K * float(np.finfo(dtype).tiny)
    assert np.all(np.abs(sums) <= allow), (sums, allow)
