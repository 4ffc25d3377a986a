"""Regression losses: values, gradients and Hessians against independent references.

* float64 NumPy formulas from ``reference.py`` (every ISA, float32 and float64, weights, reductions,
  shapes including 0-d and empty);
* PyTorch (value and autograd gradient) and scikit-learn (metrics and ``sklearn._loss``), skipped
  cleanly when not installed;
* central finite differences (of the reference and of fastloss itself);
* LogCosh stability, NaN/inf propagation, hyper-parameter validation, hypothesis property tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl

import reference as R
from conftest import (
    DEFAULT_CASE_IDS,
    DEFAULT_CASES,
    LOSS_CASE_IDS,
    LOSS_CASES,
    assert_bitwise_equal,
    assert_elementwise_close,
    fd_grad_hess,
    assert_value_close,
    make_loss,
)

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(), (1,), (7,), (1037,), (13, 9), (4, 5, 3), (0,), (0, 3)]


def _weights_for(rng, shape, mode):
    """None, full-shape weights, or weights over the leading axis (broadcast over the rest)."""
    if mode is None:
        return None
    wshape = shape if mode == "full" else shape[:1]
    w = rng.uniform(0.0, 2.0, size=wshape)
    if w.size > 2:
        w.flat[::5] = 0.0  # some zero weights
    return w


def _weight_modes(shape):
    modes = [None, "full"]
    if len(shape) >= 2:
        modes.append("leading")
    return modes


def _hess_atol(name, params, y, p, w, reduction, dtype, ulps=8):
    """Absolute allowance for Hessians, per element: ``ulps`` of the largest Hessian the loss has
    (its value at r = 0) under the same weights and reduction. The relative accuracy of small
    Hessians is tested separately (test_log_cosh_hessian_relative_accuracy)."""
    zeros = np.zeros(np.shape(p))
    _, _, h0 = R.reference(name, zeros, zeros, params, w, reduction)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    return ulps * float(np.finfo(dtype).eps) * np.abs(h0) + 4 * tiny


def check_against_reference(loss, name, params, y, p, w, reduction, dtype, what=""):
    """All four entry points of ``loss`` against reference.py under one weighting/reduction."""
    what = f"{what} {name}{params} w={'no' if w is None else np.shape(w)} {reduction}"
    ev, eg, eh = R.reference(name, y, p, params, w, reduction)
    v1 = loss(y, p, sample_weight=w, reduction=reduction)
    v2, g2 = loss.value_and_grad(y, p, sample_weight=w, reduction=reduction)
    g3, h3 = loss.grad_hess(y, p, sample_weight=w, reduction=reduction)
    v4, g4, h4 = loss.value_grad_hess(y, p, sample_weight=w, reduction=reduction)

    if reduction == "none":
        assert isinstance(v1, np.ndarray)
        assert_elementwise_close(v1, ev, dtype, what=what + " value")
    else:
        assert_value_close(v1, ev, dtype, what=what + " value")
    assert_elementwise_close(g2, eg, dtype, what=what + " grad")
    h_atol = _hess_atol(name, params, y, p, w, reduction, dtype)
    assert_elementwise_close(h4, eh, dtype, atol=h_atol, what=what + " hess")
    # One body, four entry points: identical bits.
    assert_bitwise_equal(v1, v2, what + " value: __call__ vs value_and_grad")
    assert_bitwise_equal(v1, v4, what + " value: __call__ vs value_grad_hess")
    assert_bitwise_equal(g2, g3, what + " grad: value_and_grad vs grad_hess")
    assert_bitwise_equal(g2, g4, what + " grad: value_and_grad vs value_grad_hess")
    assert_bitwise_equal(h3, h4, what + " hess: grad_hess vs value_grad_hess")
    return v1, g2, h4


# --------------------------------------------------------------------------------------------------
# 1. Values, gradients, Hessians vs the float64 reference (every ISA, dtype, shape, weights)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_matches_reference(isa, rng, name, params, dtype, shape):
    y, p = R.regression_inputs(rng, shape, dtype)
    loss = make_loss(name, params)
    for mode in _weight_modes(shape):
        w = _weights_for(rng, shape, mode)
        for reduction in REDUCTIONS:
            check_against_reference(loss, name, params, y, p, w, reduction, dtype, what=isa)
        if dtype == np.float32 and np.size(p) > 0:
            # The float32 mean is accumulated in double, weights applied in double: it equals a
            # float64 sum of w times the float32 per-element terms over sum(w), to ~1e-12.
            none = loss(y, p, reduction="none").astype(np.float64)
            if w is None:
                expected = float(np.sum(none)) / np.size(p)
            else:
                wb = R.broadcast_weight(np.asarray(w, np.float64), np.shape(p))
                expected = float(np.sum(wb * none)) / float(np.sum(wb))
            assert_value_close(loss(y, p, sample_weight=w), expected, np.float64, rtol=1e-12,
                               what=f"{name} float32 mean accumulated in double")


@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_default_reduction_is_mean_and_constructor_reduction(rng, name, params):
    y, p = R.regression_inputs(rng, (50,))
    mean_ref = R.reference(name, y, p, params)[0]
    sum_ref = R.reference(name, y, p, params, reduction="sum")[0]
    assert_value_close(make_loss(name, params)(y, p), mean_ref, np.float64)
    assert_value_close(make_loss(name, params, reduction="sum")(y, p), sum_ref, np.float64)
    none = make_loss(name, params, reduction="none")(y, p)
    assert isinstance(none, np.ndarray) and none.shape == (50,)
    # A call-time reduction overrides the constructor's.
    assert_value_close(make_loss(name, params, reduction="sum")(y, p, reduction="mean"), mean_ref,
                       np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("y_form", ["per_row", "per_column"])
@pytest.mark.parametrize("w_form", [None, "per_row", "full"])
@pytest.mark.parametrize("lead", [(40,), (6, 7), (0,)], ids=str)
def test_quantile_vector(isa, rng, dtype, y_form, w_form, lead):
    taus = [0.1, 0.5, 0.9]
    shape = lead + (3,)
    y_full, p = R.regression_inputs(rng, shape, dtype)
    y = y_full[..., 0].copy() if y_form == "per_row" else y_full
    w = None
    if w_form == "per_row":
        w = rng.uniform(0.0, 2.0, size=lead)
    elif w_form == "full":
        w = rng.uniform(0.0, 2.0, size=shape)
    loss = fl.Quantile(quantile=taus)
    for reduction in REDUCTIONS:
        check_against_reference(loss, "quantile", {"quantile": taus}, y, p, w, reduction, dtype,
                                what=isa)
    if np.size(p):
        # The mean runs over all n*q terms: per-row weights count once per quantile column.
        ws = np.ones(shape) if w is None else R.broadcast_weight(w, shape)
        total = loss(y, p, sample_weight=w, reduction="sum")
        assert_value_close(loss(y, p, sample_weight=w), total / float(ws.sum()), np.float64,
                           rtol=1e-12)
        # Each column is the scalar-quantile loss with that tau.
        yb = np.broadcast_to(y[..., None], shape) if y_form == "per_row" else y
        for j, tau in enumerate(taus):
            wj = None if w is None else ws[..., j]
            col = fl.Quantile(quantile=tau)(np.ascontiguousarray(yb[..., j]), p[..., j],
                                            sample_weight=wj, reduction="sum")
            # "none" rounds each weighted term to the dtype; the sum weighs in double.
            np.testing.assert_allclose(loss(y, p, sample_weight=w, reduction="none")[..., j].sum(
                dtype=np.float64), col, rtol=1e-12 if dtype == np.float64 else 1e-6)


def test_quantile_vector_examples():
    loss = fl.Quantile(quantile=[0.25, 0.75])
    # r = -1 at tau .25 -> .25 ; r = +1 at tau .75 -> .25 ; mean .25
    assert loss(np.array([1.0]), np.array([[0.0, 2.0]])) == 0.25
    g = loss.value_and_grad(np.array([1.0]), np.array([[0.0, 2.0]]), reduction="sum")[1]
    np.testing.assert_array_equal(g, [[-0.25, 0.25]])
    with pytest.raises(ValueError, match="3 columns"):
        fl.Quantile(quantile=[0.1, 0.5, 0.9])(np.zeros(4), np.zeros((4, 2)))


def test_quantile_vector_with_0d_truth():
    """y_pred (q,) with y_true () is the '(..., q) vs (...)' form with an empty '...'."""
    loss = fl.Quantile(quantile=[0.1, 0.5, 0.9])
    p = np.array([0.0, 1.0, 3.0])
    y = np.float64(1.0)
    expected = R.reference("quantile", y, p, {"quantile": [0.1, 0.5, 0.9]}, reduction="sum")[0]
    assert_value_close(loss(y, p, reduction="sum"), expected, np.float64)


def test_quantile_vector_of_one_with_per_row_truth():
    """quantile=[tau] takes y_pred (n, 1) and, like any vector of quantiles, y_true (n,)."""
    loss = fl.Quantile(quantile=[0.3])
    y = np.array([0.0, 1.0, 2.0])
    p = np.array([[1.0], [0.0], [2.5]])
    expected = R.reference("quantile", y, p, {"quantile": [0.3]}, reduction="sum")[0]
    assert_value_close(loss(y, p, reduction="sum"), expected, np.float64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 0), (0, 0), (3, 0, 2)], ids=str)
def test_leading_weights_with_empty_trailing_axis(shape, reduction):
    """sample_weight over the leading axes of an empty y_pred is still the leading-axes form."""
    y = np.zeros(shape)
    w = np.ones(shape[:1])
    v, g = fl.MSE().value_and_grad(y, y, sample_weight=w, reduction=reduction)
    assert g.shape == shape
    if reduction == "mean":
        assert math.isnan(v)
    elif reduction == "sum":
        assert v == 0.0
    else:
        assert v.shape == shape


@pytest.mark.parametrize("name,params", DEFAULT_CASES, ids=DEFAULT_CASE_IDS)
def test_hand_computed_values(name, params):
    y = np.array([0.0, 0.0, 0.0, 0.0, 2.0])
    p = np.array([0.5, -3.0, 0.0, 2.0, -1.0])  # r = .5, -3, 0, 2, -3
    r = p - y
    expected = {
        "mse": r ** 2,
        "mae": np.abs(r),
        "huber": np.array([0.125, 2.5, 0.0, 1.5, 2.5]),
        "smooth_l1": np.array([0.125, 2.5, 0.0, 1.5, 2.5]),
        "quantile": 0.5 * np.abs(r),
        "log_cosh": np.log(np.cosh(r)),
    }[name]
    got = make_loss(name, params)(y, p, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
    assert make_loss(name, params)(y, p) == pytest.approx(expected.mean(), rel=1e-15)


def test_smooth_l1_beta_zero_is_l1(rng):
    y, p = R.regression_inputs(rng, (300,))
    for dtype in DTYPES:
        yd, pd = y.astype(dtype), p.astype(dtype)
        v, g, h = fl.SmoothL1(beta=0.0).value_grad_hess(yd, pd, reduction="none")
        v1, g1, h1 = fl.MAE().value_grad_hess(yd, pd, reduction="none")
        assert_bitwise_equal(v, v1, "smooth_l1(beta=0) value vs MAE")
        assert_bitwise_equal(g, g1, "smooth_l1(beta=0) grad vs MAE")
        assert not np.any(h), "smooth_l1(beta=0) Hessian must be 0"


def test_huber_is_delta_times_smooth_l1(rng):
    y, p = R.regression_inputs(rng, (400,))
    for delta in (0.3, 1.0, 2.5):
        h = fl.Huber(delta=delta)(y, p, reduction="none")
        s = fl.SmoothL1(beta=delta)(y, p, reduction="none")
        np.testing.assert_allclose(h, delta * s, rtol=1e-14)


def test_quantile_half_is_half_mae(rng):
    y, p = R.regression_inputs(rng, (400,))
    np.testing.assert_allclose(fl.Quantile(quantile=0.5)(y, p, reduction="none"),
                               0.5 * fl.MAE()(y, p, reduction="none"), rtol=0, atol=0)


def test_subgradients_at_zero_residual():
    y = np.array([1.0, -2.0, 0.0])
    p = y.copy()
    for dtype in DTYPES:
        yd, pd = y.astype(dtype), p.astype(dtype)
        _, g = fl.MAE().value_and_grad(yd, pd, reduction="sum")
        np.testing.assert_array_equal(g, 0.0)
        _, g = fl.Quantile(quantile=0.3).value_and_grad(yd, pd, reduction="sum")
        np.testing.assert_array_equal(g, dtype(-0.3))
        for loss in (fl.MSE(), fl.Huber(), fl.SmoothL1(), fl.LogCosh()):
            v, g, h = loss.value_grad_hess(yd, pd, reduction="none")
            np.testing.assert_array_equal(v, 0.0)
            np.testing.assert_array_equal(g, 0.0)
        np.testing.assert_array_equal(fl.SmoothL1(beta=0.5).grad_hess(yd, pd, reduction="sum")[1],
                                      2.0)
        np.testing.assert_array_equal(fl.Huber(delta=0.5).grad_hess(yd, pd, reduction="sum")[1],
                                      1.0)


def test_huber_smooth_l1_at_threshold():
    """|r| == delta is inside for Huber (<=) and outside for SmoothL1 (<): same value either way."""
    y = np.zeros(2)
    p = np.array([0.5, -0.5])
    v, g, h = fl.Huber(delta=0.5).value_grad_hess(y, p, reduction="none")
    np.testing.assert_array_equal(v, [0.125, 0.125])
    np.testing.assert_array_equal(g, [0.5, -0.5])
    np.testing.assert_array_equal(h, [1.0, 1.0])
    v, g, h = fl.SmoothL1(beta=0.5).value_grad_hess(y, p, reduction="none")
    np.testing.assert_array_equal(v, [0.25, 0.25])
    np.testing.assert_array_equal(g, [1.0, -1.0])
    np.testing.assert_array_equal(h, [0.0, 0.0])


# --------------------------------------------------------------------------------------------------
# 2. Cross-checks with PyTorch and scikit-learn
# --------------------------------------------------------------------------------------------------

TORCH_CASES = [
    ("mse", {}, "mse_loss", {}),
    ("mae", {}, "l1_loss", {}),
    ("huber", {}, "huber_loss", {"delta": 1.0}),
    ("huber", {"delta": 0.4}, "huber_loss", {"delta": 0.4}),
    ("huber", {"delta": 2.5}, "huber_loss", {"delta": 2.5}),
    ("smooth_l1", {}, "smooth_l1_loss", {"beta": 1.0}),
    ("smooth_l1", {"beta": 0.5}, "smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1", {"beta": 0.0}, "smooth_l1_loss", {"beta": 0.0}),
]


def _torch_value_grad(torch, fn_name, kwargs, y, p, reduction, w=None):
    F = torch.nn.functional
    yt = torch.from_numpy(np.array(y))  # (np.ascontiguousarray would make a 0-d array 1-d)
    pt = torch.from_numpy(np.array(p)).requires_grad_(True)
    if w is None:
        out = getattr(F, fn_name)(pt, yt, reduction=reduction, **kwargs)
    else:
        wt = torch.from_numpy(np.asarray(w, dtype=p.dtype))
        per = wt * getattr(F, fn_name)(pt, yt, reduction="none", **kwargs)
        out = {"none": per, "sum": per.sum(), "mean": per.sum() / wt.sum()}[reduction]
    (out.sum() if reduction == "none" else out).backward()
    value = out.detach().numpy()
    return (value if reduction == "none" else float(value)), pt.grad.numpy()


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params,fn,kwargs", TORCH_CASES,
                         ids=[f"{c[2]}{c[3] or ''}" for c in TORCH_CASES])
def test_matches_torch(rng, name, params, fn, kwargs, dtype, reduction, weighted):
    torch = pytest.importorskip("torch")
    y, p = R.regression_inputs(rng, (501,), dtype)
    w = rng.uniform(0.0, 2.0, size=p.shape).astype(dtype) if weighted else None
    tv, tg = _torch_value_grad(torch, fn, kwargs, y, p, reduction, w)
    v, g = make_loss(name, params).value_and_grad(y, p, sample_weight=w, reduction=reduction)
    what = f"torch {fn}{kwargs} {reduction}"
    if reduction == "none":
        assert_elementwise_close(v, tv.astype(np.float64), dtype, what=what + " value")
    else:
        # torch reduces float32 in float32; we accumulate in double.
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        assert_value_close(v, tv, dtype, rtol=rtol, what=what + " value")
    assert_elementwise_close(g, tg.astype(np.float64), dtype, what=what + " grad")


def test_matches_torch_2d_and_0d(rng):
    torch = pytest.importorskip("torch")
    for shape in [(17, 5), ()]:
        y, p = R.regression_inputs(rng, shape)
        for name, params, fn, kwargs in TORCH_CASES:
            for reduction in REDUCTIONS:
                tv, tg = _torch_value_grad(torch, fn, kwargs, y, p, reduction)
                v, g = make_loss(name, params).value_and_grad(y, p, reduction=reduction)
                if reduction == "none":
                    np.testing.assert_allclose(v, tv, rtol=1e-14)
                else:
                    assert v == pytest.approx(float(tv), rel=1e-13)
                np.testing.assert_allclose(g, tg, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_matches_sklearn_metrics(rng, weighted):
    metrics = pytest.importorskip("sklearn.metrics")
    y, p = R.regression_inputs(rng, (333,))
    w = rng.uniform(0.0, 3.0, size=y.shape) if weighted else None
    np.testing.assert_allclose(fl.MSE()(y, p, sample_weight=w),
                               metrics.mean_squared_error(y, p, sample_weight=w), rtol=1e-12)
    np.testing.assert_allclose(fl.mse(y, p, sample_weight=w),
                               metrics.mean_squared_error(y, p, sample_weight=w), rtol=1e-12)
    np.testing.assert_allclose(fl.MAE()(y, p, sample_weight=w),
                               metrics.mean_absolute_error(y, p, sample_weight=w), rtol=1e-12)
    for alpha in (0.05, 0.3, 0.5, 0.9):
        np.testing.assert_allclose(
            fl.Quantile(quantile=alpha)(y, p, sample_weight=w),
            metrics.mean_pinball_loss(y, p, sample_weight=w, alpha=alpha), rtol=1e-12)
        np.testing.assert_allclose(
            fl.quantile(y, p, sample_weight=w, quantile=alpha),
            metrics.mean_pinball_loss(y, p, sample_weight=w, alpha=alpha), rtol=1e-12)


def test_matches_sklearn_pinball_multi_quantile(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    taus = [0.1, 0.5, 0.9]
    y = rng.normal(size=200)
    p = y[:, None] + rng.normal(size=(200, 3))
    w = rng.uniform(0.0, 2.0, size=200)
    expected = np.mean([metrics.mean_pinball_loss(y, p[:, j], alpha=t, sample_weight=w)
                        for j, t in enumerate(taus)])
    np.testing.assert_allclose(fl.Quantile(quantile=taus)(y, p, sample_weight=w), expected,
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("tau", [0.1, 0.5, 0.8])
def test_matches_sklearn_pinball_loss(rng, dtype, tau):
    skl = pytest.importorskip("sklearn._loss.loss")
    y, p = R.regression_inputs(rng, (257,), dtype)
    p[:7] = y[:7]  # r = 0: both use the subgradient -tau
    w = rng.uniform(0.0, 2.0, size=y.shape).astype(dtype)
    sk = skl.PinballLoss(quantile=tau)
    yd, pd = y.astype(np.float64), p.astype(np.float64)  # sklearn computes in double
    sk_l = sk.loss(yd, pd, sample_weight=w.astype(np.float64))
    sk_g, sk_h = sk.gradient_hessian(yd, pd, sample_weight=w.astype(np.float64))
    v, g, h = fl.Quantile(quantile=tau).value_grad_hess(y, p, sample_weight=w, reduction="none")
    assert_elementwise_close(v, sk_l, dtype, what="PinballLoss.loss")
    assert_elementwise_close(g, sk_g, dtype, what="PinballLoss gradient")
    # sklearn deliberately returns hessian 1 (for HGBT); ours is the exact a.e. value 0.
    np.testing.assert_array_equal(h, 0.0)
    np.testing.assert_array_equal(g[:7], dtype(-tau) * w[:7])
    np.testing.assert_allclose(fl.Quantile(quantile=tau)(y, p, sample_weight=w),
                               sk(yd, pd, sample_weight=w.astype(np.float64)),
                               rtol=1e-12 if dtype == np.float64 else 2e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("delta", [0.25, 1.0, 3.0])
def test_matches_sklearn_huber_loss(rng, dtype, delta):
    """sklearn's HuberLoss with an explicit delta (its quantile only serves fit_intercept_only)."""
    skl = pytest.importorskip("sklearn._loss.loss")
    y, p = R.regression_inputs(rng, (257,), dtype)
    w = rng.uniform(0.0, 2.0, size=y.shape)
    sk = skl.HuberLoss(delta=delta)
    yd, pd = y.astype(np.float64), p.astype(np.float64)
    sk_l = sk.loss(yd, pd, sample_weight=w)
    sk_g, sk_h = sk.gradient_hessian(yd, pd, sample_weight=w)
    v, g, h = fl.Huber(delta=delta).value_grad_hess(y, p, sample_weight=w, reduction="none")
    assert_elementwise_close(v, sk_l, dtype, what="HuberLoss.loss")
    assert_elementwise_close(g, sk_g, dtype, what="HuberLoss gradient")
    assert_elementwise_close(h, sk_h, dtype, what="HuberLoss hessian")
    np.testing.assert_allclose(fl.Huber(delta=delta)(y, p, sample_weight=w),
                               sk(yd, pd, sample_weight=w),
                               rtol=1e-12 if dtype == np.float64 else 2e-6)


# --------------------------------------------------------------------------------------------------
# 3. Derivatives vs central finite differences
# --------------------------------------------------------------------------------------------------


def _away_from_kinks(rng, name, params, n, margin=1e-3):
    """(y, p) float64 with every |r| at least ``margin`` away from the loss's kinks."""
    kinks = np.array(R.REFERENCES[name].kinks(params), dtype=np.float64)
    y, p = R.regression_inputs(rng, (4 * n,))
    r = np.abs(p - y)
    ok = np.all(np.abs(r[:, None] - kinks[None, :]) > margin, axis=1) if kinks.size else \
        np.ones(r.shape, bool)
    y, p = y[ok][:n], p[ok][:n]
    assert y.size == n
    return y, p


@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_reference_derivatives_match_finite_differences(rng, name, params):
    """The reference's own g and h are the derivatives of its l (validates reference.py)."""
    y, p = _away_from_kinks(rng, name, params, 400)
    f = lambda q: R.elementwise_reference(name, y, q, params)  # noqa: E731
    step = 1e-6 * np.maximum(1.0, np.abs(p))
    lp, gp, _ = f(p + step)
    lm, gm, _ = f(p - step)
    _, g, h = f(p)
    np.testing.assert_allclose((lp - lm) / (2 * step), g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose((gp - gm) / (2 * step), h, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_fastloss_derivatives_match_finite_differences(rng, name, params, reduction, weighted):
    """FD of fastloss's own reduced value, one coordinate at a time, vs its gradient; FD of its
    gradient vs its Hessian diagonal."""
    n = 12
    y, p = _away_from_kinks(rng, name, params, n)
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None
    loss = make_loss(name, params)
    _, g, h = loss.value_grad_hess(y, p, sample_weight=w, reduction=reduction)
    fd_g, fd_h = fd_grad_hess(loss, y, p, w, reduction, 1e-6 * np.maximum(1.0, np.abs(p)))
    scale = 1.0 if reduction == "sum" else 1.0 / (n if w is None else w.sum())
    np.testing.assert_allclose(g, fd_g, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_fastloss_elementwise_finite_differences(rng, name, params, dtype):
    """Elementwise losses: perturbing every element at once, the per-element ("none") values move
    by the per-element gradient (checked in float64 and, with a coarser step, float32)."""
    y, p = _away_from_kinks(rng, name, params, 2000, margin=1e-2)
    y, p = y.astype(dtype), p.astype(dtype)
    loss = make_loss(name, params)
    _, g, h = loss.value_grad_hess(y, p, reduction="none")
    rel = 1e-6 if dtype == np.float64 else 1e-3
    step = (rel * np.maximum(1.0, np.abs(p.astype(np.float64)))).astype(dtype)
    pp, pm = p + step, p - step
    span = pp.astype(np.float64) - pm.astype(np.float64)
    vp, gp = loss.value_and_grad(y, pp, reduction="none")
    vm, gm = loss.value_and_grad(y, pm, reduction="none")
    fd_g = (vp.astype(np.float64) - vm.astype(np.float64)) / span
    fd_h = (gp.astype(np.float64) - gm.astype(np.float64)) / span
    tol = 1e-5 if dtype == np.float64 else 2e-2
    np.testing.assert_allclose(g, fd_g, rtol=tol, atol=tol)
    np.testing.assert_allclose(h, fd_h, rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------------------
# 4. LogCosh stability
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_cosh_large_residuals(isa, dtype):
    mags = np.array([50.0, 100.0, 1e5, 1e30, np.inf])
    r = np.concatenate([mags, -mags]).astype(dtype)
    for y in (np.zeros_like(r), np.full_like(r, 7.0)):
        p = y + r
        v, g, h = fl.LogCosh().value_grad_hess(y, p, reduction="none")
        rr = (p - y).astype(np.float64)  # the residual in dtype
        expected = np.abs(rr) - math.log(2.0)
        assert_elementwise_close(v, expected, dtype, ulps=4, what="log_cosh(large r)")
        np.testing.assert_array_equal(g, np.sign(rr).astype(dtype))
        assert np.all(np.isfinite(h)) and np.all(h >= 0)
        assert np.all(h <= 1e-40), h  # sech^2(50) = 1.5e-43
        # Reduced value: finite where every |r| is finite; inf as soon as one is infinite.
        fin = np.isfinite(rr)
        s = fl.LogCosh()(y[fin], p[fin], reduction="sum")
        assert math.isfinite(s) and s == pytest.approx(float(expected[fin].sum()), rel=1e-6)
        assert fl.LogCosh()(y, p, reduction="sum") == math.inf


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_cosh_small_residuals(isa, dtype):
    mags = np.array([1e-4, 1e-8, 1e-20, 1e-3, 1e-1, 0.5, 0.999, 1.0, 1.001, 3.0, 10.0])
    r = np.concatenate([mags, -mags]).astype(dtype)
    y = np.zeros_like(r)
    v, g, h = fl.LogCosh().value_grad_hess(y, r, reduction="none")
    mp = np.array([R.log_cosh_mp(float(x)) for x in r.astype(np.float64)])
    assert_elementwise_close(v, mp[:, 0], dtype, what="log_cosh value vs mpmath")
    assert_elementwise_close(g, mp[:, 1], dtype, what="log_cosh grad vs mpmath")
    # Absolute accuracy here (sech^2 <= 1); relative: test_log_cosh_hessian_relative_accuracy
    np.testing.assert_allclose(h, mp[:, 2], rtol=0, atol=8 * np.finfo(dtype).eps)
    small = np.abs(r) <= 1e-4
    r64 = r.astype(np.float64)
    rel = np.abs(v[small].astype(np.float64) - r64[small] ** 2 / 2) / (r64[small] ** 2 / 2)
    if dtype == np.float64:
        assert np.all(rel < 1e-6), rel
    else:  # r = 1e-20 gives a float32 subnormal (5e-41): a few quanta of 1.4e-45 allowed
        quanta = np.abs(v[small].astype(np.float64) - r64[small] ** 2 / 2) / 1.4e-45
        assert np.all((rel < 1e-6) | (quanta <= 8)), (rel, quanta)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_cosh_matches_mpmath_across_the_branch(isa, rng, dtype):
    """Value and gradient to ELEMENT_ULPS and the Hessian to 16 ULPs (relative) on both sides of
    |r| = 0.6875, where the value switches from a polynomial in r^2 to |r| - log 2 + log1p(e^-2|r|),
    and over |r| <= 8 where tanh and sech^2 share e^-2|r|."""
    edge = np.float64(0.6875)
    near = edge + np.arange(-8, 9) * np.spacing(dtype(edge)).astype(np.float64)
    r = np.concatenate([near, rng.uniform(0.0, 8.0, 300), rng.uniform(0.5, 0.9, 100)])
    r = np.concatenate([r, -r]).astype(dtype)
    v, g, h = fl.LogCosh().value_grad_hess(np.zeros_like(r), r, reduction="none")
    mp = np.array([R.log_cosh_mp(float(x)) for x in r.astype(np.float64)])
    assert_elementwise_close(v, mp[:, 0], dtype, what="log_cosh value vs mpmath")
    assert_elementwise_close(g, mp[:, 1], dtype, what="log_cosh grad vs mpmath")
    assert_elementwise_close(h, mp[:, 2], dtype, ulps=16, what="log_cosh Hessian vs mpmath")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_log_cosh_hessian_relative_accuracy(dtype):
    """sech^2(r) is a normal number up to |r| ~ 354 (float64) / ~ 43 (float32): the Hessian must
    keep its relative accuracy there, not decay to noise or 0."""
    top = 300.0 if dtype == np.float64 else 40.0
    r = np.linspace(1.0, top, 60).astype(dtype)
    r = np.concatenate([r, -r])
    _, h = fl.LogCosh().grad_hess(np.zeros_like(r), r, reduction="sum")
    mp = np.array([R.log_cosh_mp(float(x))[2] for x in r.astype(np.float64)])
    assert_elementwise_close(h, mp, dtype, ulps=16, what="log_cosh Hessian (sech^2) vs mpmath")


# --------------------------------------------------------------------------------------------------
# 5. NaN and inf
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["y_pred", "y_true"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_nan_propagates(isa, rng, name, params, dtype, where):
    y, p = R.regression_inputs(rng, (3000,), dtype)
    k = 1234
    (p if where == "y_pred" else y)[k] = np.nan
    loss = make_loss(name, params)
    for reduction in ("mean", "sum"):
        v, g, h = loss.value_grad_hess(y, p, reduction=reduction)
        assert math.isnan(v), f"{reduction} value is {v}, expected NaN"
        assert np.isnan(g[k]) and np.isnan(h[k])
        others = np.ones(g.shape, bool)
        others[k] = False
        assert np.all(np.isfinite(g[others])) and np.all(np.isfinite(h[others]))
    none, g, h = loss.value_grad_hess(y, p, reduction="none")
    assert np.flatnonzero(np.isnan(none)).tolist() == [k]
    ev, eg, eh = R.reference(name, y, p, params, reduction="none")
    assert_elementwise_close(none, ev, dtype, what="none with NaN")
    assert_elementwise_close(g, eg, dtype, what="grad with NaN")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_CASE_IDS)
def test_infinite_residuals(isa, name, params, dtype):
    inf = np.inf
    y = np.array([0.0, 0.0, 1.0, -inf, inf, inf, 2.0], dtype)
    # r = inf, -inf, inf, inf, -inf, nan, nan
    p = np.array([inf, -inf, inf, 0.0, 0.0, inf, np.nan], dtype)
    v, g, h = make_loss(name, params).value_grad_hess(y, p, reduction="none")
    ev, eg, eh = R.reference(name, y, p, params, reduction="none")
    assert_elementwise_close(v, ev, dtype, what="value at inf")
    assert_elementwise_close(g, eg, dtype, what="grad at inf")
    assert_elementwise_close(h, eh, dtype, what="hess at inf")
    assert np.all(np.isinf(v[:5]) & (v[:5] > 0))
    assert np.all(np.isnan(v[5:])) and np.all(np.isnan(g[5:]))


def test_mae_with_infinite_residual():
    v, g = fl.MAE().value_and_grad(np.array([0.0, 0.0]), np.array([np.inf, -np.inf]),
                                   reduction="none")
    np.testing.assert_array_equal(v, [np.inf, np.inf])
    np.testing.assert_array_equal(g, [1.0, -1.0])
    value, g = fl.MAE().value_and_grad(np.array([0.0, 0.0]), np.array([np.inf, 1.0]))
    assert value == math.inf
    np.testing.assert_array_equal(g, [0.5, 0.5])


# --------------------------------------------------------------------------------------------------
# 6. Hyper-parameter validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,kwargs,exc,match", [
    (fl.Huber, {"delta": 0.0}, ValueError, "delta"),
    (fl.Huber, {"delta": -1.0}, ValueError, "delta"),
    (fl.Huber, {"delta": float("nan")}, ValueError, "delta"),
    (fl.Huber, {"delta": float("inf")}, ValueError, "delta"),
    (fl.Huber, {"delta": "1.0"}, TypeError, "delta"),
    (fl.Huber, {"delta": True}, TypeError, "delta"),
    (fl.Huber, {"delta": None}, TypeError, "delta"),
    (fl.SmoothL1, {"beta": -0.5}, ValueError, "beta"),
    (fl.SmoothL1, {"beta": float("nan")}, ValueError, "beta"),
    (fl.SmoothL1, {"beta": -1e-300}, ValueError, "beta"),
    (fl.Quantile, {"quantile": 0.0}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": 1.0}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": -0.1}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": 1.5}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": float("nan")}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": []}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": [[0.1, 0.5]]}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": [0.1, 1.0]}, ValueError, "quantile"),
    (fl.Quantile, {"quantile": [0.1, float("nan")]}, ValueError, "quantile"),
    (fl.MSE, {"delta": 1.0}, TypeError, "delta"),
    (fl.Huber, {"beta": 1.0}, TypeError, "beta"),
    (fl.Huber, {"detla": 1.0}, TypeError, "detla"),
    (fl.LogCosh, {"reduction": "avg"}, ValueError, "reduction"),
    (fl.Huber, {"reduction": None}, ValueError, "reduction"),
])
def test_invalid_hyper_parameters(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_positional_hyper_parameter_rejected():
    with pytest.raises(TypeError):
        fl.Huber(1.0)


def test_valid_hyper_parameters_are_stored():
    assert fl.Huber(delta=2).delta == 2.0 and isinstance(fl.Huber(delta=2).delta, float)
    assert fl.Huber(delta=np.float32(0.5)).delta == 0.5
    assert fl.SmoothL1(beta=0).beta == 0.0
    assert fl.Quantile(quantile=[0.1, 0.9]).quantile == (0.1, 0.9)
    assert fl.Quantile(quantile=np.array([0.2, 0.4])).quantile == (0.2, 0.4)
    assert fl.Quantile().quantile == 0.5
    with pytest.raises(ValueError, match="delta"):
        fl.huber(np.zeros(2), np.ones(2), delta=-1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mean_gradient_with_tiny_weights(dtype):
    """Valid (finite, >= 0) weights whose sum is tiny: the mean and its gradient w*g/sum(w) are
    ordinary numbers (here g/n), not inf/NaN."""
    tiny = float(np.finfo(dtype).smallest_subnormal) * 1000
    y = np.zeros(4, dtype)
    p = np.array([1.0, 2.0, 3.0, 4.0], dtype)
    w = np.full(4, tiny, dtype)
    v, g = fl.MSE().value_and_grad(y, p, sample_weight=w)
    assert v == pytest.approx(7.5, rel=1e-6)
    np.testing.assert_allclose(g, 2 * p / 4, rtol=1e-6)


def test_mean_with_huge_float32_weights():
    """float32 weights near FLT_MAX: each w*l overflows float32, but the weighted mean (accumulated
    in float64) is the plain mean 7.5."""
    y = np.zeros(4, np.float32)
    p = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    w = np.full(4, 1e38, np.float32)
    v, g = fl.MSE().value_and_grad(y, p, sample_weight=w)
    assert v == pytest.approx(7.5, rel=1e-6)
    np.testing.assert_allclose(g, 2 * p / 4, rtol=1e-6)


def test_float64_weights_beyond_float32_range_with_float32_predictions():
    """A finite float64 weight that float32 cannot hold: either a correct result or a clear
    ValueError, never a silent inf."""
    y = np.zeros(4, np.float32)
    p = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    w = np.array([1e39, 1e37, 1e37, 1e37])
    try:
        v, g = fl.MSE().value_and_grad(y, p, sample_weight=w)
    except ValueError as e:
        assert "sample_weight" in str(e)
        return
    expected = float(np.sum(w * p.astype(np.float64) ** 2) / w.sum())
    assert v == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(g, 2 * p * w / w.sum(), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# 7. Property tests (hypothesis)
# --------------------------------------------------------------------------------------------------

# max_examples / deadline / database come from the profile loaded in conftest.py (50 examples by
# default; HYPOTHESIS_PROFILE=thorough for 3000).
HYP = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def regression_problem(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    width = 32 if dtype == np.float32 else 64
    lim = float(np.float32(1e30)) if width == 32 else 1e30
    big = st.floats(-lim, lim, width=width, allow_nan=False, allow_subnormal=True)
    small = st.floats(-4.0, 4.0, width=width, allow_nan=False, allow_subnormal=True)
    elems = st.one_of(big, small)
    y = draw(hnp.arrays(dtype, shape, elements=elems))
    p = draw(hnp.arrays(dtype, shape, elements=elems))
    if draw(st.booleans()):  # residuals near the kinks / tiny
        p = (y + draw(hnp.arrays(dtype, shape, elements=small))).astype(dtype)
    # Leading-axis weights with an empty trailing axis are covered by
    # test_leading_weights_with_empty_trailing_axis (kept out of here so that hypothesis does not
    # shrink every run onto that one edge case).
    leading_ok = len(shape) >= 1 and int(np.prod(shape[1:])) > 0
    w_kind = draw(st.sampled_from(["none", "full", "leading"] if leading_ok else ["none", "full"]))
    w = None
    if w_kind != "none":
        wshape = shape if w_kind == "full" else shape[:1]
        w_dtype = draw(st.sampled_from(DTYPES))
        # Weights: 0 or within [1e-30, 1e3]. Weights whose sum is below 1/FLT_MAX or above FLT_MAX
        # have their own tests (test_mean_gradient_with_tiny_weights, ..._huge_float32_weights).
        w = draw(hnp.arrays(w_dtype, wshape, elements=st.one_of(
            st.just(0.0), st.floats(float(np.float32(1e-30)), 1e3, width=32))))
    return dtype, y, p, w


@HYP
@given(case=st.sampled_from(LOSS_CASES), problem=regression_problem())
def test_property_matches_reference_and_reductions_agree(case, problem):
    name, params = case
    dtype, y, p, w = problem
    dt = np.dtype(dtype)
    loss = make_loss(name, params)
    none, g_none, h_none = loss.value_grad_hess(y, p, sample_weight=w, reduction="none")
    total, g_sum = loss.value_and_grad(y, p, sample_weight=w, reduction="sum")
    wb = np.ones(np.shape(p)) if w is None else R.broadcast_weight(w, np.shape(p))
    norm = float(np.sum(wb))
    if np.size(p) > 0 and norm == 0.0:
        with pytest.raises(ValueError, match="sample_weight"):
            loss.value_and_grad(y, p, sample_weight=w, reduction="mean")
    else:
        mean, g_mean = loss.value_and_grad(y, p, sample_weight=w, reduction="mean")

    # Per element: l, g rounded to the dtype first (overflow to inf as the kernel does), then
    # weighted with the weight in the dtype.
    l, g, h = R.elementwise_reference(name, y, p, params)
    wd = wb.astype(dt).astype(np.float64)
    with np.errstate(all="ignore"):
        exp_none = wd * l.astype(dt).astype(np.float64)
        exp_g = wd * g.astype(dt).astype(np.float64)
    assert_elementwise_close(none, exp_none, dt, what=f"{name} none")
    assert_elementwise_close(g_none, exp_g, dt, what=f"{name} grad")
    assert_bitwise_equal(g_none, g_sum, "grad of none vs grad of sum")

    # Reductions agree: sum == sum(w * l) over the unweighted per-element values; mean ==
    # sum / sum(w). (The sum weighs in double: "none" rounds each weighted term to the dtype,
    # where it may underflow or overflow, so it is compared unweighted.)
    with np.errstate(all="ignore"):
        expected_sum = float(np.sum(wb * loss(y, p, reduction="none").astype(np.float64)))
    assert_value_close(total, expected_sum, np.float64, rtol=1e-12, what="sum vs sum(w * l)")
    if np.size(p) == 0:
        assert total == 0.0 and math.isnan(mean)
        return
    if norm == 0.0:
        return  # raised ValueError, checked above
    assert_value_close(mean, total / norm, np.float64, rtol=1e-12, what="mean vs sum/sum(w)")
    # Mean gradient: w g / sum(w) (not g_sum / sum(w): w*g may underflow where w*g/sum(w) does not).
    with np.errstate(all="ignore"):
        exp_gm = g.astype(dt).astype(np.float64) * (wb / norm)
    assert_elementwise_close(g_mean, exp_gm, dt, what="mean grad vs w*g/sum(w)")


@HYP
@given(data=st.data())
def test_property_quantile_vector(data):
    q = data.draw(st.integers(1, 4))
    taus = data.draw(st.lists(st.floats(0.01, 0.99), min_size=q, max_size=q))
    lead = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5))
    dtype = data.draw(st.sampled_from(DTYPES))
    el = st.floats(-1e6, 1e6, width=32)
    p = data.draw(hnp.arrays(dtype, lead + (q,), elements=el))
    y = data.draw(hnp.arrays(dtype, lead + (q,), elements=el))
    loss = fl.Quantile(quantile=taus)
    v, g = loss.value_and_grad(y, p, reduction="none")
    ev, eg, _ = R.reference("quantile", y, p, {"quantile": taus}, reduction="none")
    assert_elementwise_close(v, ev, dtype, what="quantile vector none")
    assert_elementwise_close(g, eg, dtype, what="quantile vector grad")
    if p.size:
        assert_value_close(loss(y, p), float(np.sum(v.astype(np.float64))) / p.size, np.float64,
                           rtol=1e-12)
