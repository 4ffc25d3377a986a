"""Optimal transport: exact 1-D Wasserstein, Sinkhorn, sliced Wasserstein.

References: a float64 quantile-function integral written from the definition, SciPy's
wasserstein_distance (p = 1), POT (wasserstein_1d, sinkhorn2 / sinkhorn, sliced_wasserstein_distance
with the same projections); derivatives against central finite differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def ref_wasserstein_1d(u, v, uw=None, vw=None, p=1.0):
    """W_p^p = int_0^1 |F_u^-1(t) - F_v^-1(t)|^p dt, exactly, in float64 (piecewise constant
    quantile functions: evaluate at the midpoints of the merged cumulative levels)."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    uw = np.ones(u.size) if uw is None else np.asarray(uw, np.float64)
    vw = np.ones(v.size) if vw is None else np.asarray(vw, np.float64)
    iu, iv = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
    cu, cv = np.cumsum(uw[iu]) / uw.sum(), np.cumsum(vw[iv]) / vw.sum()
    levels = np.unique(np.concatenate([[0.0], cu, cv, [1.0]]))
    levels = levels[levels <= 1.0]
    mid = (levels[:-1] + levels[1:]) / 2
    qu = u[iu][np.minimum(np.searchsorted(cu, mid), u.size - 1)]
    qv = v[iv][np.minimum(np.searchsorted(cv, mid), v.size - 1)]
    return float(np.sum(np.diff(levels) * np.abs(qu - qv) ** p))


# --------------------------------------------------------------------------------------------------
# exact 1-D
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_w1d_matches_reference(rng, dtype, weighted, p):
    u = rng.standard_normal(301).astype(dtype)
    v = (rng.standard_normal(157) * 2 + 0.5).astype(dtype)
    uw = rng.random(301) if weighted else None
    vw = rng.random(157) if weighted else None
    got = fl.wasserstein_1d(u, v, true_weight=uw, sample_weight=vw, p=p)
    assert isinstance(got, float)
    assert got == pytest.approx(ref_wasserstein_1d(u, v, uw, vw, p), rel=RTOL[dtype])


@pytest.mark.parametrize("weighted", [False, True])
def test_w1d_matches_scipy(rng, weighted):
    scipy_stats = pytest.importorskip("scipy.stats")
    u, v = rng.standard_normal(500), rng.exponential(size=800)
    uw = rng.random(500) if weighted else None
    vw = rng.random(800) if weighted else None
    expected = scipy_stats.wasserstein_distance(u, v, uw, vw)
    assert fl.wasserstein_1d(u, v, true_weight=uw, sample_weight=vw) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_w1d_matches_pot(rng, p):
    ot = pytest.importorskip("ot")
    u, v = rng.standard_normal(400), rng.standard_normal(250) + 1
    uw, vw = rng.random(400), rng.random(250)
    expected = float(ot.wasserstein_1d(u, v, uw / uw.sum(), vw / vw.sum(), p=p))
    assert fl.wasserstein_1d(u, v, true_weight=uw, sample_weight=vw, p=p) == pytest.approx(expected, rel=1e-11)


def test_w1d_rows_and_reductions(rng):
    u, v = rng.standard_normal((5, 60)), rng.standard_normal((5, 40))
    vw = rng.random(40)  # one weight row shared by every row
    per_row = np.array([ref_wasserstein_1d(u[r], v[r], None, vw, 2) for r in range(5)])
    loss = fl.Wasserstein1D(p=2)
    np.testing.assert_allclose(loss(u, v, vw, reduction="none"), per_row, rtol=1e-12)
    assert loss(u, v, vw, reduction="sum") == pytest.approx(float(per_row.sum()), rel=1e-12)
    assert loss(u, v, vw) == pytest.approx(float(per_row.mean()), rel=1e-12)
    # the gradient of the mean is that of the sum over rows / rows
    _, g_mean = loss.value_and_grad(u, v, vw)
    _, g_sum = loss.value_and_grad(u, v, vw, reduction="sum")
    np.testing.assert_allclose(g_mean * 5, g_sum, rtol=1e-12)


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_w1d_gradient_finite_differences(rng, p, weighted):
    u, v = rng.standard_normal(23), rng.standard_normal(17) + 0.3
    uw = rng.random(23) if weighted else None
    vw = rng.random(17) if weighted else None
    loss = fl.Wasserstein1D(p=p)
    value, grad = loss.value_and_grad(u, v, vw, true_weight=uw)
    assert grad.shape == v.shape and grad.dtype == v.dtype
    h = 1e-7  # far below the gaps between samples: the order (and the pairing) does not change
    fd = np.empty_like(v)
    for j in range(v.size):
        vp, vm = v.copy(), v.copy()
        vp[j] += h
        vm[j] -= h
        fd[j] = (loss(u, vp, vw, true_weight=uw) - loss(u, vm, vw, true_weight=uw)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_w1d_hessian(rng):
    u, v, vw = rng.standard_normal(30), rng.standard_normal(20), rng.random(20)
    g, h = fl.Wasserstein1D(p=2).grad_hess(u, v, vw, reduction="sum")
    np.testing.assert_allclose(h, 2 * vw / vw.sum(), rtol=1e-12)  # 2 * the mass of each sample
    _, h1 = fl.Wasserstein1D(p=1).grad_hess(u, v)
    assert np.all(h1 == 0)


def test_w1d_equal_sizes_is_sorted_matching(rng):
    u, v = rng.standard_normal(100), rng.standard_normal(100)
    value, grad = fl.Wasserstein1D(p=2).value_and_grad(u, v)
    su, order = np.sort(u), np.argsort(v)
    assert value == pytest.approx(float(np.mean((np.sort(v) - su) ** 2)), rel=1e-12)
    expected = np.empty(100)
    expected[order] = 2 * (v[order] - su) / 100
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_w1d_determinism_threads(rng, dtype):
    u = rng.standard_normal((8, 6000)).astype(dtype)
    v = rng.standard_normal((8, 5000)).astype(dtype)
    loss = fl.Wasserstein1D(p=2)
    with fl.num_threads(1):
        v1, g1 = loss.value_and_grad(u, v, reduction="none")
    with fl.num_threads(2):
        v2, g2 = loss.value_and_grad(u, v, reduction="none")
    assert_bitwise_equal(v1, v2)
    assert_bitwise_equal(g1, g2)
    assert g1.dtype == dtype


def test_w1d_errors():
    loss = fl.Wasserstein1D()
    with pytest.raises(ValueError, match="empty"):
        loss(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="empty"):
        loss(np.array([1.0]), np.zeros(0))
    with pytest.raises(ValueError, match="non-negative"):
        loss([0.0, 1.0], [0.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="positive"):
        loss([0.0, 1.0], [0.0, 2.0], true_weight=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(3,\)"):
        loss([0.0, 1.0], [0.0, 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="rows"):
        loss(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        loss([0.0, 1.0], [0.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match=">= 1"):
        fl.Wasserstein1D(p=0.5)
    with pytest.raises(TypeError):
        loss(np.array(["a"]), np.array([1.0]))


# --------------------------------------------------------------------------------------------------
# Sinkhorn
# --------------------------------------------------------------------------------------------------


def _clouds(rng, n=60, m=45, d=3):
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((m, d)) * 0.8 + 0.5
    return x, y, rng.random(n) + 0.1, rng.random(m) + 0.1


def test_sinkhorn_matches_pot_cost_matrix(rng):
    ot = pytest.importorskip("ot")
    x, y, a, b = _clouds(rng)
    M = ot.dist(x, y) + rng.random((60, 45))  # any cost
    a, b = a / a.sum(), b / b.sum()
    r = fl.sinkhorn(cost=M, a=a, b=b, epsilon=0.3, tol=1e-12, return_plan=True)
    assert r.converged and r.error < 1e-12
    P = ot.sinkhorn(a, b, M, 0.3, stopThr=1e-13, numItermax=100000)
    np.testing.assert_allclose(r.plan, P, rtol=1e-8, atol=1e-14)
    expected = float(ot.sinkhorn2(a, b, M, 0.3, stopThr=1e-13, numItermax=100000))
    assert r.cost == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(r.plan.sum(axis=1), a, rtol=1e-12)  # rows exact
    assert np.linalg.norm(r.plan.sum(axis=0) - b) == pytest.approx(r.error, rel=1e-3, abs=1e-14)


def test_sinkhorn_point_clouds_match_pot(rng):
    ot = pytest.importorskip("ot")
    x, y, _, _ = _clouds(rng)
    r = fl.sinkhorn(x, y, epsilon=0.5)
    expected = float(ot.sinkhorn2(ot.unif(60), ot.unif(45), ot.dist(x, y), 0.5, stopThr=1e-12))
    assert r.cost == pytest.approx(expected, rel=1e-8)


def test_sinkhorn_objective_is_primal(rng):
    x, y, a, b = _clouds(rng)
    r = fl.sinkhorn(x, y, a=a, b=b, epsilon=0.2, tol=1e-12, return_plan=True)
    a, b = a / a.sum(), b / b.sum()
    P, C = r.plan, ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    kl = np.sum(P * np.log(P / np.outer(a, b))) - P.sum() + 1.0
    assert r.cost == pytest.approx(float(np.sum(P * C)), rel=1e-12)
    assert r.objective == pytest.approx(float(np.sum(P * C) + 0.2 * kl), rel=1e-9)


def test_sinkhorn_gradient_finite_differences(rng):
    x, y, a, b = _clouds(rng, 12, 9, 2)
    loss = fl.SinkhornLoss(epsilon=0.4, tol=1e-13, max_iter=100000)
    value, grad = loss.value_and_grad(x, y, b, true_weight=a)
    r = fl.sinkhorn(x, y, a=a, b=b, epsilon=0.4, tol=1e-13, max_iter=100000, grad=True)
    assert value == r.objective
    h = 1e-6
    for target, g in (("y", grad), ("x", r.grad_x)):
        base = y if target == "y" else x
        fd = np.empty_like(base)
        for idx in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[idx] += h
            minus[idx] -= h
            args = (x, plus) if target == "y" else (plus, y)
            argm = (x, minus) if target == "y" else (minus, y)
            fd[idx] = (loss(*args, b, true_weight=a) - loss(*argm, b, true_weight=a)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_sinkhorn_small_epsilon_is_stable(rng):
    x, y, _, _ = _clouds(rng, 30, 30, 2)
    C = ((x[:, None] - y[None]) ** 2).sum(-1)
    assert np.exp(-C.max() / 0.01) == 0  # the kernel matrix of the scaling form would underflow
    r = fl.sinkhorn(x, y, epsilon=0.01, max_iter=50000, tol=1e-5, return_plan=True)
    assert r.converged and np.all(np.isfinite(r.plan))
    ot = pytest.importorskip("ot")
    emd = float(ot.emd2(ot.unif(30), ot.unif(30), ot.dist(x, y)))
    assert r.cost == pytest.approx(emd, rel=2e-2)  # entropic -> exact as eps -> 0


def test_sinkhorn_float32(rng):
    x, y, _, _ = _clouds(rng)
    r64 = fl.sinkhorn(x, y, epsilon=0.5, grad=True)
    r32 = fl.sinkhorn(x.astype(np.float32), y.astype(np.float32), epsilon=0.5, grad=True)
    assert r32.converged and r32.grad_y.dtype == np.float32
    assert r32.cost == pytest.approx(r64.cost, rel=1e-4)
    np.testing.assert_allclose(r32.grad_y, r64.grad_y, rtol=1e-3, atol=1e-4)


def test_sinkhorn_determinism_threads(rng):
    x, y, a, b = _clouds(rng, 700, 600, 2)  # above the size where the iteration runs in parallel (256K)
    x, y = x.astype(np.float32), y.astype(np.float32)
    runs = []
    for threads in (1, 2):
        with fl.num_threads(threads), pytest.warns(RuntimeWarning):
            runs.append(fl.sinkhorn(x, y, a=a, b=b, epsilon=0.1, max_iter=4, return_plan=True,
                                    grad=True))
    r1, r2 = runs
    assert r1.n_iter == r2.n_iter
    for name in ("cost", "objective", "error"):
        assert_bitwise_equal(getattr(r1, name), getattr(r2, name), name)
    for name in ("plan", "grad_x", "grad_y", "f", "g"):
        assert_bitwise_equal(getattr(r1, name), getattr(r2, name), name)


def test_sinkhorn_nonconvergence_warns(rng):
    x, y, _, _ = _clouds(rng)
    with pytest.warns(RuntimeWarning, match=r"marginal error \d"):
        r = fl.sinkhorn(x, y, epsilon=0.01, max_iter=3)
    assert not r.converged and r.n_iter == 3 and r.error > 0


def test_sinkhorn_errors(rng):
    x, y, _, _ = _clouds(rng)
    with pytest.raises(ValueError, match="epsilon"):
        fl.sinkhorn(x, y, epsilon=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        fl.SinkhornLoss(epsilon=-1)
    with pytest.raises(ValueError, match="empty"):
        fl.sinkhorn(np.zeros((0, 3)), y, epsilon=1.0)
    with pytest.raises(ValueError, match="dimension"):
        fl.sinkhorn(x, y[:, :2], epsilon=1.0)
    with pytest.raises(ValueError, match="positive"):
        fl.sinkhorn(x, y, a=np.zeros(60), epsilon=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        fl.sinkhorn(x, y, b=-np.ones(45), epsilon=1.0)
    with pytest.raises(ValueError, match="one weight per point|shape"):
        fl.sinkhorn(x, y, b=np.ones(44), epsilon=1.0)
    with pytest.raises(ValueError, match="not both"):
        fl.sinkhorn(x, y, cost=np.ones((60, 45)), epsilon=1.0)
    with pytest.raises(ValueError, match="finite"):
        fl.sinkhorn(cost=np.full((2, 2), np.inf), epsilon=1.0)


# --------------------------------------------------------------------------------------------------
# sliced
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_sliced_matches_pot(rng, p):
    ot = pytest.importorskip("ot")
    x, y, a, b = _clouds(rng, 80, 50, 4)
    theta = ot.sliced.get_random_projections(4, 40, seed=3)
    expected = float(ot.sliced_wasserstein_distance(x, y, a / a.sum(), b / b.sum(), p=p,
                                                    projections=theta))
    got = fl.sliced_wasserstein(x, y, true_weight=a, sample_weight=b, p=p, projections=theta)
    assert got == pytest.approx(expected, rel=1e-11)


def test_sliced_seeded_and_gradient(rng):
    x, y, _, _ = _clouds(rng, 15, 11, 3)
    loss = fl.SlicedWasserstein(n_projections=25, p=2, seed=7)
    assert loss(x, y) == loss(x, y)  # the seed fixes the directions
    theta = fl.random_projections(3, 25, 7)
    assert loss(x, y) == fl.sliced_wasserstein(x, y, p=2, projections=theta)
    value, grad = loss.value_and_grad(x, y)
    h, fd = 1e-7, np.empty_like(y)
    for idx in np.ndindex(y.shape):
        plus, minus = y.copy(), y.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (loss(x, plus) - loss(x, minus)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)


def test_sliced_float32_and_errors(rng):
    x, y, _, _ = _clouds(rng, 40, 30, 3)
    v64 = fl.sliced_wasserstein(x, y)
    _, g32 = fl.SlicedWasserstein().value_and_grad(x.astype(np.float32), y.astype(np.float32))
    assert g32.dtype == np.float32
    assert fl.sliced_wasserstein(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(v64, rel=1e-5)
    with pytest.raises(ValueError, match="dimension"):
        fl.sliced_wasserstein(x, y[:, :2])
    with pytest.raises(ValueError, match="projections"):
        fl.sliced_wasserstein(x, y, projections=np.ones((2, 5)))
    with pytest.raises(ValueError, match=">= 1"):
        fl.SlicedWasserstein(n_projections=0)


@pytest.mark.parametrize("name", ["wasserstein_1d", "sliced_wasserstein", "sinkhorn_loss", "perceptual"])
def test_cli_eval_synthetic(capsys, name):
    import json

    from fastloss import cli

    params = ["--param", "epsilon=1.0"] if name == "sinkhorn_loss" else []
    assert cli.main(["eval", name, "--synthetic", "64", "--json", *params]) == 0
    report = json.loads(capsys.readouterr().out)
    assert np.isfinite(report["value"]) and report["grad_l2_norm"] > 0


def test_sinkhorn_zero_weights_match_pot(rng):
    ot = pytest.importorskip("ot")
    x, y, a, b = _clouds(rng, 20, 15, 2)
    a[[0, 7]] = 0.0
    b[3] = 0.0
    M = ot.dist(x, y)
    r = fl.sinkhorn(x, y, a=a, b=b, epsilon=0.5, tol=1e-12, return_plan=True)
    ia, ib = a > 0, b > 0  # POT divides by zero weights: solve on the weighted points, embed
    P = np.zeros((20, 15))
    P[np.ix_(ia, ib)] = ot.sinkhorn(a[ia] / a.sum(), b[ib] / b.sum(), M[np.ix_(ia, ib)], 0.5,
                                    stopThr=1e-13)
    assert r.converged and np.all(np.isfinite(r.plan))
    np.testing.assert_allclose(r.plan, P, rtol=1e-8, atol=1e-15)
    assert np.all(r.plan[[0, 7]] == 0) and np.all(r.plan[:, 3] == 0)


def test_w1d_ties():
    u, v = np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0, 1.0, 3.0, 0.5])
    for p in (1.0, 1.5, 2.0):
        value, grad, hess = fl.Wasserstein1D(p=p).value_grad_hess(u, v)
        assert value == pytest.approx(ref_wasserstein_1d(u, v, p=p), rel=1e-14)
        assert np.all(np.isfinite(grad)) and not np.any(np.isnan(hess))


def test_sinkhorn_underflowing_column(rng):
    # C / eps reaches 2000 for the far point: its whole column of exp(-C/eps) underflows
    x = np.linspace(0, 1, 20)[:, None]
    y = np.r_[np.linspace(0, 1, 9), [10.0]][:, None]
    r = fl.sinkhorn(x, y, epsilon=0.05, return_plan=True, max_iter=100000, tol=1e-6)  # slow: C/eps large
    assert r.converged and np.all(np.isfinite(r.plan)) and np.all(np.isfinite(r.g))
    assert r.plan.sum(axis=0)[-1] == pytest.approx(0.1, rel=1e-4)
    ot = pytest.importorskip("ot")
    emd = float(ot.emd2(ot.unif(20), ot.unif(10), ot.dist(x, y)))
    assert r.cost == pytest.approx(emd, rel=1e-2)
