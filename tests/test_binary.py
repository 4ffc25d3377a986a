"""Binary-classification losses: values, gradients and Hessians against independent references.

BinaryCrossEntropy (probabilities and logits), Logistic, BinaryFocal (probabilities and logits),
Hinge, SquaredHinge, SmoothHinge:

* float64 NumPy formulas from ``reference.py`` (every ISA, float32 and float64, hard and soft
  labels, weights, reductions, shapes); outputs that cancel (soft labels) or go through ``pow``
  (focal) are compared with allowances scaled by their terms (``Reference.scales``);
* PyTorch (value, autograd gradient and Hessian), scikit-learn (``log_loss``, ``hinge_loss``,
  ``sklearn._loss.HalfBinomialLoss``) and mpmath, skipped cleanly when not installed;
* central finite differences of the reference and of fastloss itself, away from kinks/clamp edges;
* stability at |z| = 1e30 and inf, p = 0 and 1 exactly, NaN propagation, accuracy in the saturated
  (well-classified) regime;
* label validation of the {-1, +1} / {0, 1} losses, hyper-parameter validation, identities
  (focal with gamma = 0 is BCE, ...), hypothesis property tests.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl

import reference as R
from conftest import (
    BINARY_CASE_IDS,
    BINARY_CASES,
    ELEMENT_ULPS,
    VALUE_RTOL,
    assert_bitwise_equal,
    assert_elementwise_close,
    fd_grad_hess,
    make_loss,
    reference_atol,
)

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
SENTINEL = -12345.0
PARALLEL_N = 150_001

PM1_KERNELS = [n for n, r in R.REFERENCES.items() if r.family == "binary" and r.labels == "pm1"]
PROB_KERNELS = ["bce_probs", "focal_probs"]
LOGIT_KERNELS = ["bce_logits", "focal_logits"]
SOFT_KERNELS = PROB_KERNELS + LOGIT_KERNELS  # soft labels allowed, not validated
PM1_CLASSES = {"logistic": "Logistic", "hinge": "Hinge", "squared_hinge": "SquaredHinge",
               "smooth_hinge": "SmoothHinge"}


def tol_ulps(name, params):
    """Per-element ULPs: the focal loss multiplies a few more rounded factors than the others."""
    return 16 if name.startswith("focal") else ELEMENT_ULPS


def binary_case_inputs(rng, name, shape, dtype=np.float64, soft=True):
    """Inputs for ``name``: soft and hard labels where allowed; for the {-1, +1} losses, scores
    with some exactly at the kinks (u = 0, u = 1)."""
    ref = R.REFERENCES[name]
    if ref.labels == "pm1":
        y, z = R.pm1_inputs(rng, shape)
        if z.size >= 8:
            flat_y, flat_z = y.reshape(-1), z.reshape(-1)
            k = rng.choice(flat_z.size, size=max(2, flat_z.size // 20), replace=False)
            u = rng.choice([0.0, 1.0, -1.0], size=k.size)
            flat_z[k] = u * np.where(flat_y[k] > 0, 1.0, -1.0)  # u = s z exactly
        return y.astype(dtype), z.astype(dtype)
    if name in PROB_KERNELS:
        return R.prob_inputs(rng, shape, dtype, soft=soft)
    return R.binary_inputs(rng, shape, dtype, soft=soft)


def _weights_for(rng, shape, mode):
    if mode is None:
        return None
    wshape = shape if mode == "full" else shape[:1]
    w = rng.uniform(0.0, 2.0, size=wshape)
    if w.size > 2:
        w.flat[::5] = 0.0
    return w


def _weight_modes(shape):
    return [None, "full"] + (["leading"] if len(shape) >= 2 else [])


def assert_reduced_close(got, expected, dtype, atol=0.0, rtol=None, what=""):
    """A reduced value (Python float): NaN iff expected NaN, inf iff inf, else within
    rtol * |expected| + atol."""
    assert isinstance(got, float), f"{what}: value is {type(got).__name__}, not float"
    rtol = VALUE_RTOL[np.dtype(dtype)] if rtol is None else rtol
    if math.isnan(expected) or math.isinf(expected):
        assert got == expected or (math.isnan(got) and math.isnan(expected)), (
            f"{what}: got {got!r}, expected {expected!r}")
        return
    assert math.isfinite(got), f"{what}: got {got!r}, expected {expected!r}"
    allow = rtol * abs(expected) + (atol if atol is not None else 0.0) + 1e-300
    assert abs(got - expected) <= allow, (
        f"{what}: got {got!r}, expected {expected!r} "
        f"(diff {abs(got - expected):.3g} > {allow:.3g})")


def check_against_reference(loss, name, params, y, p, w, reduction, dtype, ulps=None, what=""):
    """All four entry points of ``loss`` against reference.py under one weighting/reduction."""
    ulps = tol_ulps(name, params) if ulps is None else ulps
    what = f"{what} {name}{params} w={'no' if w is None else np.shape(w)} {reduction}"
    ev, eg, eh = R.reference(name, y, p, params, w, reduction)
    atol = reference_atol(name, y, p, params, w, reduction, ulps=ulps) or (None, None, None)
    v1 = loss(y, p, sample_weight=w, reduction=reduction)
    v2, g2 = loss.value_and_grad(y, p, sample_weight=w, reduction=reduction)
    g3, h3 = loss.grad_hess(y, p, sample_weight=w, reduction=reduction)
    v4, g4, h4 = loss.value_grad_hess(y, p, sample_weight=w, reduction=reduction)
    if reduction == "none":
        assert isinstance(v1, np.ndarray)
        assert_elementwise_close(v1, ev, dtype, ulps=ulps, atol=atol[0], what=what + " value")
    else:
        assert_reduced_close(v1, ev, dtype, atol=atol[0], what=what + " value")
    assert_elementwise_close(g2, eg, dtype, ulps=ulps, atol=atol[1], what=what + " grad")
    assert_elementwise_close(h4, eh, dtype, ulps=ulps, atol=atol[2], what=what + " hess")
    assert_bitwise_equal(v1, v2, what + " value: __call__ vs value_and_grad")
    assert_bitwise_equal(v1, v4, what + " value: __call__ vs value_grad_hess")
    assert_bitwise_equal(g2, g3, what + " grad: value_and_grad vs grad_hess")
    assert_bitwise_equal(g2, g4, what + " grad: value_and_grad vs value_grad_hess")
    assert_bitwise_equal(h3, h4, what + " hess: grad_hess vs value_grad_hess")
    return v1, g2, h4


# --------------------------------------------------------------------------------------------------
# 1. Values, gradients, Hessians vs the float64 reference
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1037,), (13, 9)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_matches_reference(isa, rng, name, params, dtype, shape):
    y, p = binary_case_inputs(rng, name, shape, dtype)
    loss = make_loss(name, params)
    for mode in _weight_modes(shape):
        w = _weights_for(rng, shape, mode)
        for reduction in REDUCTIONS:
            check_against_reference(loss, name, params, y, p, w, reduction, dtype, what=isa)
    if dtype == np.float32:
        # float32 per-element terms, accumulated (and weighted) in double.
        w = _weights_for(rng, shape, "full")
        none = loss(y, p, reduction="none").astype(np.float64)
        expected = float(np.sum(w * none)) / float(np.sum(w))
        assert_reduced_close(loss(y, p, sample_weight=w), expected, np.float64, rtol=1e-12,
                             what=f"{name} float32 mean accumulated in double")


@pytest.mark.parametrize("shape", [(), (1,), (7,), (4, 5, 3), (0,), (0, 3)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_matches_reference_shapes(rng, name, params, dtype, shape):
    y, p = binary_case_inputs(rng, name, shape, dtype)
    loss = make_loss(name, params)
    for mode in _weight_modes(shape):
        w = _weights_for(rng, shape, mode)
        if w is not None and np.size(w) and not np.any(w):
            w = np.ones_like(w)
        for reduction in REDUCTIONS:
            check_against_reference(loss, name, params, y, p, w, reduction, dtype)


@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_hard_labels_are_accurate_to_ulps(isa, rng, name, params):
    """With labels 0/1 (or +-1) nothing cancels in g: every output is within a few ULPs of
    itself, with no term-scale allowance (the spec's form -pw y s(-z) + (1 - y) s(z) has one term;
    a kernel computing s(z) - y loses the small gradients of well-classified examples)."""
    for dtype in DTYPES:
        y, p = binary_case_inputs(rng, name, (2000,), dtype, soft=False)
        if name in SOFT_KERNELS:
            y = (y > 0.5).astype(dtype)
        ls = params.get("label_smoothing", 0.0)
        if ls:  # smoothed targets are soft: covered by test_matches_reference
            continue
        v, g, h = make_loss(name, params).value_grad_hess(y, p, reduction="none")
        el, eg, eh = R.elementwise_reference(name, y, p, params)
        ulps = tol_ulps(name, params)
        if name.startswith("focal"):  # pow: allowance 1 + gamma |log m| (see reference.py)
            ls_, gs_, hs_ = R.elementwise_scales(name, y, p, params)
            e = ulps * float(np.finfo(dtype).eps)
            assert_elementwise_close(v, el, dtype, ulps=0, atol=e * ls_ + 1e-300, what="value")
            assert_elementwise_close(g, eg, dtype, ulps=0, atol=e * gs_ + 1e-300, what="grad")
            continue
        if name == "bce_probs":
            # log(1 - p) may be formed as log of a rounded 1 - p here (see the small-p test)
            atol = reference_atol(name, y, p, params, reduction="none", ulps=ulps)[0]
            assert_elementwise_close(v, el, dtype, ulps=ulps, atol=atol, what="value")
        else:
            assert_elementwise_close(v, el, dtype, ulps=ulps, what=f"{name} value")
        assert_elementwise_close(g, eg, dtype, ulps=ulps, what=f"{name} grad")
        assert_elementwise_close(h, eh, dtype, ulps=ulps, what=f"{name} hess")


@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_default_reduction_is_mean_and_constructor_reduction(rng, name, params):
    y, p = binary_case_inputs(rng, name, (50,))
    mean_ref = R.reference(name, y, p, params)[0]
    sum_ref = R.reference(name, y, p, params, reduction="sum")[0]
    assert_reduced_close(make_loss(name, params)(y, p), mean_ref, np.float64)
    assert_reduced_close(make_loss(name, params, reduction="sum")(y, p), sum_ref, np.float64)
    none = make_loss(name, params, reduction="none")(y, p)
    assert isinstance(none, np.ndarray) and none.shape == (50,)
    assert_reduced_close(make_loss(name, params, reduction="sum")(y, p, reduction="mean"),
                         mean_ref, np.float64)


def test_kernel_selection():
    assert fl.BinaryCrossEntropy()._kernel_name == "bce_probs"
    assert fl.BinaryCrossEntropy(from_logits=True)._kernel_name == "bce_logits"
    assert fl.BinaryFocal()._kernel_name == "focal_probs"
    assert fl.BinaryFocal(from_logits=True)._kernel_name == "focal_logits"
    assert set(fl.BinaryCrossEntropy.kernels.values()) == {"bce_probs", "bce_logits"}
    assert set(fl.BinaryFocal.kernels.values()) == {"focal_probs", "focal_logits"}
    for name, cls in PM1_CLASSES.items():
        assert getattr(fl, cls)()._kernel_name == name
    # The two kernels of one class really differ: 0.3 as a probability and as a logit.
    y, p = np.array([1.0]), np.array([0.3])
    assert fl.BinaryCrossEntropy()(y, p) == pytest.approx(-math.log(0.3), rel=1e-15)
    assert fl.BinaryCrossEntropy(from_logits=True)(y, p) == pytest.approx(
        math.log1p(math.exp(-0.3)), rel=1e-15)


def test_hand_computed_values():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    z = np.array([2.0, 2.0, -1.0, 0.0])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    # BCE on logits, pos_weight 3, no smoothing.
    v, g, h = fl.BinaryCrossEntropy(from_logits=True, pos_weight=3.0).value_grad_hess(
        y, z, reduction="none")
    np.testing.assert_allclose(v, [3 * sp(-2), sp(2), 3 * sp(1), math.log(2)], rtol=1e-15)
    np.testing.assert_allclose(g, [-3 * sig(-2), sig(2), -3 * sig(1), 0.5], rtol=1e-15)
    np.testing.assert_allclose(h, [3 * sig(2) * sig(-2), sig(2) * sig(-2), 3 * sig(-1) * sig(1),
                                   0.25], rtol=1e-15)
    # Label smoothing 0.2 (Keras): targets 0.9 and 0.1.
    v = fl.BinaryCrossEntropy(from_logits=True, label_smoothing=0.2)(y, z, reduction="none")
    np.testing.assert_allclose(v[:2], [0.9 * sp(-2) + 0.1 * sp(2), 0.1 * sp(-2) + 0.9 * sp(2)],
                               rtol=1e-14)
    # BCE on probabilities.
    p = np.array([0.8, 0.8, 0.25, 0.5])
    v, g, h = fl.BinaryCrossEntropy().value_grad_hess(y, p, reduction="none")
    np.testing.assert_allclose(v, [-math.log(0.8), -math.log(0.2), -math.log(0.25), math.log(2)],
                               rtol=1e-14)
    np.testing.assert_allclose(g, [-1 / 0.8, 1 / 0.2, -4.0, 2.0], rtol=1e-14)
    np.testing.assert_allclose(h, [1 / 0.64, 1 / 0.04, 16.0, 4.0], rtol=1e-14)
    # Focal (gamma 2, alpha 0.25) on probabilities: at * (1 - p_t)^2 * ce.
    v = fl.BinaryFocal(gamma=2.0, alpha=0.25)(y, p, reduction="none")
    np.testing.assert_allclose(v, [0.25 * 0.04 * -math.log(0.8), 0.75 * 0.64 * -math.log(0.2),
                                   0.25 * 0.5625 * -math.log(0.25), 0.75 * 0.25 * math.log(2)],
                               rtol=1e-14)
    # Logistic and the hinge family with +-1 labels: u = s z = 2, -2, -1, 0 (s = -1 for y = 0).
    v = fl.Logistic()(y, z, reduction="none")
    np.testing.assert_allclose(v, [sp(-2), sp(2), sp(1), math.log(2)], rtol=1e-15)
    np.testing.assert_array_equal(fl.Hinge()(y, z, reduction="none"), [0.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(fl.SquaredHinge()(y, z, reduction="none"), [0.0, 9.0, 4.0, 1.0])
    np.testing.assert_array_equal(fl.SmoothHinge()(y, z, reduction="none"), [0.0, 2.5, 1.5, 0.5])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_hinge_family_at_the_kinks(isa, dtype):
    """Exact values at u = s z in {0, 1} and around them: g = 0 at u = 1 (u < 1 is strict),
    smooth hinge linear at u = 0 (u <= 0)."""
    z = np.array([1.0, -1.0, 0.0, 0.0, 0.5, -0.5, 2.0, -3.0], dtype)
    y = np.array([1.0, -1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype)  # u = 1 1 0 0 .5 .5 2 -3
    s = np.where(y > 0, 1.0, -1.0)
    v, g, h = fl.Hinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0, 0, 1, 1, 0.5, 0.5, 0, 4])
    np.testing.assert_array_equal(g, [0, 0, -s[2], -s[3], -s[4], -s[5], 0, -1])
    np.testing.assert_array_equal(h, 0.0)
    v, g, h = fl.SquaredHinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0, 0, 1, 1, 0.25, 0.25, 0, 16])
    np.testing.assert_array_equal(g, [0, 0, -2 * s[2], -2 * s[3], -s[4], -s[5], 0, -8])
    np.testing.assert_array_equal(h, [0, 0, 2, 2, 2, 2, 0, 2])
    v, g, h = fl.SmoothHinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0, 0, 0.5, 0.5, 0.125, 0.125, 0, 3.5])
    np.testing.assert_array_equal(g, [0, 0, -s[2], -s[3], -0.5 * s[4], -0.5 * s[5], 0, -1])
    np.testing.assert_array_equal(h, [0, 0, 0, 0, 1, 1, 0, 0])


# --------------------------------------------------------------------------------------------------
# 2. Labels: {-1, +1} / {0, 1} for Logistic and the hinge family; soft labels for BCE / focal
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PM1_KERNELS)
def test_zero_one_labels_equal_pm1_labels(rng, name):
    loss = make_loss(name)
    for dtype in DTYPES:
        y, z = R.pm1_inputs(rng, (3001,), dtype)
        pm = np.where(y > 0, 1.0, -1.0).astype(dtype)
        zo = (y > 0).astype(dtype)
        expected = loss.value_grad_hess(pm, z, reduction="none")
        for label, lab in [("0/1", zo), ("-0.0", np.where(y > 0, 1.0, -0.0).astype(dtype)),
                           ("int8 0/1", zo.astype(np.int8)), ("int64 +-1", pm.astype(np.int64)),
                           ("bool", y > 0), ("uint8", zo.astype(np.uint8)),
                           ("float32 labels", pm.astype(np.float32))]:
            got = loss.value_grad_hess(lab, z, reduction="none")
            for a, b in zip(got, expected):
                assert_bitwise_equal(a, b, f"{name}: {label} labels vs +-1")


def _bad_label_cases(dtype):
    return [(0.5, "0.5"), (2.0, "2"), (-2.0, "-2"), (np.nan, "nan"), (np.inf, "inf"),
            (-0.25, "-0.25"), (1.0 + 2 * np.finfo(dtype).eps, None)]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [37, PARALLEL_N], ids=["small", "parallel"])
@pytest.mark.parametrize("name", PM1_KERNELS)
def test_invalid_labels_raise_and_write_nothing(rng, name, n, dtype):
    loss = make_loss(name)
    y, z = R.pm1_inputs(rng, (n,), dtype)
    first = n // 3 if n > 100 else 11
    for bad, text in _bad_label_cases(dtype):
        yb = y.copy()
        yb[first] = bad
        yb[first + 5:] = np.where(np.arange(n - first - 5) % 7 == 0, 3.0, yb[first + 5:])  # later
        bufs = {k: np.full(n, SENTINEL, dtype) for k in ("out", "grad_out", "hess_out")}
        with pytest.raises(ValueError) as info:
            loss.value_grad_hess(yb, z, reduction="none", **bufs)
        msg = str(info.value)
        assert "y_true" in msg, msg
        assert str(first) in msg, f"first bad index {first} not in {msg!r}"
        if text is not None:
            assert text in msg.lower(), f"bad value {text} not in {msg!r}"
        for k, buf in bufs.items():
            assert np.all(buf == SENTINEL), f"{k} written before the label error"
        g = np.full(n, SENTINEL, dtype)
        for red in REDUCTIONS:
            with pytest.raises(ValueError, match="y_true"):
                loss.value_and_grad(yb, z, reduction=red, grad_out=g)
            with pytest.raises(ValueError, match="y_true"):
                loss(yb, z, reduction=red)
            with pytest.raises(ValueError, match="y_true"):
                loss.grad_hess(yb, z, reduction=red, grad_out=g)
        assert np.all(g == SENTINEL), "grad_out written before the label error"


@pytest.mark.parametrize("name", PM1_KERNELS)
def test_invalid_labels_other_forms(name):
    loss = make_loss(name)
    z = np.zeros((3, 4))
    y = np.ones((3, 4))
    y[1, 2] = 0.75
    with pytest.raises(ValueError, match=r"y_true") as info:
        loss(y, z)
    assert "0.75" in str(info.value) and "1" in str(info.value) and "2" in str(info.value)
    # Integer labels other than -1, 0, 1.
    with pytest.raises(ValueError, match=r"y_true.*2|2.*y_true"):
        loss(np.array([1, -1, 2, 0]), np.zeros(4))
    # Strided labels: the first bad element of the view, not of its base.
    base = np.ones(20)
    base[1] = 5.0   # outside the view [::2]
    base[6] = 0.5   # view index 3
    with pytest.raises(ValueError, match=r"y_true") as info:
        loss(base[::2], np.zeros(10))
    assert "0.5" in str(info.value) and "3" in str(info.value)
    # 0-d and list labels.
    with pytest.raises(ValueError, match="y_true"):
        loss(np.float64(0.5), np.float64(1.0))
    with pytest.raises(ValueError, match="y_true"):
        loss([1.0, 0.3], [0.0, 0.0])
    # Valid: mixed conventions in one array, 0-d, empty.
    loss(np.array([-1.0, 0.0, 1.0]), np.zeros(3))
    assert math.isfinite(loss(np.float64(-1.0), np.float64(0.3)))
    assert math.isnan(loss(np.zeros(0), np.zeros(0)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", PM1_KERNELS)
def test_labels_checked_in_the_kernel_pass(name, dtype):
    """Without caller buffers the kernel reads the labels once (a bad one makes the value NaN,
    then the first is named), on the fast and the general path; a NaN score with good labels is
    a NaN value, no error; float64 labels narrowed for float32 scores are checked before the
    kernel (1 + 2^-30 would read as 1)."""
    loss = make_loss(name)
    n = 30_000
    y = np.where(np.arange(n) % 3 == 0, 1.0, -1.0).astype(dtype)
    y[[777, 20_000]] = 0.5
    z = np.linspace(-3, 3, n).astype(dtype)
    w = np.ones(n)
    w[777] = 0.0  # a zero weight does not hide the label
    calls = [lambda: loss(y, z), lambda: loss.value_and_grad(y, z, reduction="sum"),
             lambda: loss(y, z, sample_weight=w), lambda: loss.value_and_grad(y[:, None], z[:, None])]
    if make_loss(name).hessian != "none":
        calls.append(lambda: loss.grad_hess(y, z))
    for call in calls:
        with fl.num_threads(2), pytest.raises(ValueError, match=r"y_true\[777(, 0)?\] = 0.5"):
            call()
    good = np.where(np.arange(n) % 3 == 0, 1.0, -1.0).astype(dtype)
    zn = z.copy()
    zn[5] = np.nan
    value, grad = loss.value_and_grad(good, zn)
    assert np.isnan(value) and np.isnan(grad[5]) and np.isfinite(np.delete(grad, 5)).all()
    if dtype == np.float32:
        narrowed = good.astype(np.float64)
        narrowed[9] = 1.0 + 2.0 ** -30
        with pytest.raises(ValueError, match=r"y_true\[9\] = 1.0000000009"):
            loss(narrowed, z)


@pytest.mark.parametrize("name", SOFT_KERNELS)
def test_soft_and_out_of_range_labels_are_not_validated(rng, name):
    """BCE / focal take soft labels; they are not validated (labels outside [0, 1] are the
    caller's business): the result is the formula's."""
    loss = make_loss(name)
    y = np.array([0.0, 0.3, 0.5, 1.0, 1.5, -0.5, 2.0])
    p = np.array([0.2, 0.7, 0.5, 0.9, 0.6, 0.4, 0.1])
    v, g, h = loss.value_grad_hess(y, p, reduction="none")
    el, eg, eh = R.elementwise_reference(name, y, p, R.REFERENCES[name].base_params)
    np.testing.assert_allclose(v, el, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, eg, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, eh, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# 3. Cross-checks: PyTorch, scikit-learn, mpmath
# --------------------------------------------------------------------------------------------------


def _torch_reduce(per, w, reduction, torch):
    if w is not None:
        per = torch.from_numpy(np.asarray(w, np.float64)).to(per.dtype) * per
        return {"none": per, "sum": per.sum(), "mean": per.sum() / float(np.sum(w))}[reduction]
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


def _torch_outputs(torch, fn, y, x, w, reduction, hess=False):
    """(value, grad[, hess]) of ``fn(yt, xt) -> per-element tensor`` reduced like fastloss."""
    yt = torch.from_numpy(np.array(y))
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)
    out = _torch_reduce(fn(yt, xt), w, reduction, torch)
    total = out.sum() if reduction == "none" else out
    (g,) = torch.autograd.grad(total, xt, create_graph=hess)
    value = out.detach().numpy()
    value = value if reduction == "none" else float(value)
    if not hess:
        return value, g.detach().numpy()
    if not g.requires_grad:  # piecewise linear: the a.e. Hessian is 0
        return value, g.detach().numpy(), np.zeros_like(g.detach().numpy())
    (h,) = torch.autograd.grad(g.sum(), xt, allow_unused=True)  # elementwise: diagonal Hessian
    h = np.zeros_like(g.detach().numpy()) if h is None else h.numpy()
    return value, g.detach().numpy(), h


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("pw,ls", [(1.0, 0.0), (2.5, 0.0), (0.375, 0.25), (1.0, 0.1)])
def test_bce_logits_matches_torch(rng, pw, ls, dtype, reduction, weighted):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y, z = R.binary_inputs(rng, (501,), dtype, soft=True)
    z[:4] = np.array([1e30, -1e30, 80.0, -80.0], dtype)  # torch's form is stable there too
    y[:4] = np.array([1.0, 0.0, 0.0, 1.0], dtype)
    w = rng.uniform(0.0, 2.0, size=z.shape) if weighted else None
    ys = (y.astype(np.float64) * (1 - ls) + ls / 2).astype(dtype)

    def fn(yt, xt):
        return F.binary_cross_entropy_with_logits(
            xt, torch.from_numpy(ys), pos_weight=torch.tensor(pw, dtype=xt.dtype),
            reduction="none")

    tv, tg = _torch_outputs(torch, fn, y, z, w, reduction)
    loss = fl.BinaryCrossEntropy(from_logits=True, pos_weight=pw, label_smoothing=ls)
    v, g = loss.value_and_grad(y, z, sample_weight=w, reduction=reduction)
    # torch forms (1 - y) z + (1 + (pw - 1) y) (log1p(e^-|z|) + max(-z, 0)) and, for the gradient,
    # a difference of O(1 + pw) terms: it is accurate to eps (1 + pw)(1 + |z|) absolutely, not
    # relatively (fastloss's relative accuracy is tested against reference.py).
    e = 16 * float(np.finfo(dtype).eps)
    with np.errstate(all="ignore"):
        sc = (1.0 + pw) * (1.0 + np.abs(z.astype(np.float64)))
        sc = np.where(np.isfinite(sc), sc, 0.0)
    la, ga, _ = R.reduce_reference(sc, sc, sc, w, reduction)
    what = f"torch bce_with_logits pw={pw} ls={ls} {reduction}"
    if reduction == "none":
        assert_elementwise_close(v, tv.astype(np.float64), dtype, ulps=16, atol=e * la, what=what)
    else:
        assert_reduced_close(v, tv, dtype, atol=e * la, rtol=1e-5 if dtype == np.float32 else 1e-12,
                             what=what)
    assert_elementwise_close(g, tg.astype(np.float64), dtype, ulps=16, atol=e * ga,
                             what=what + " grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_probs_matches_torch(rng, dtype):
    """torch.nn.functional.binary_cross_entropy: same value for p inside (eps, 1 - eps); the same
    gradient (torch's is (p - y) / (p (1 - p)))."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y, p = R.prob_inputs(rng, (777,), dtype, soft=True, edges=False)
    p = np.clip(p, 1e-4, 1 - 1e-4).astype(dtype)
    for reduction in REDUCTIONS:
        tv, tg = _torch_outputs(torch, lambda yt, xt: F.binary_cross_entropy(
            xt, yt, reduction="none"), y, p, None, reduction)
        v, g = fl.BinaryCrossEntropy().value_and_grad(y, p, reduction=reduction)
        la, ga, _ = reference_atol("bce_probs", y, p, {}, None, reduction, ulps=16)
        if reduction == "none":
            assert_elementwise_close(v, tv.astype(np.float64), dtype, ulps=16, atol=la)
        else:
            assert_reduced_close(v, tv, dtype, atol=la,
                                 rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert_elementwise_close(g, tg.astype(np.float64), dtype, ulps=16, atol=ga, what="grad")


def test_bce_probs_gradient_is_not_killed_by_the_clamp():
    """Unlike torch (whose log clamp at -100 leaves a value but a gradient from the unclamped p),
    outside [eps, 1 - eps] the value and gradient are those at the clamped point, never 0."""
    eps = 1e-3
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.0, 1.0, 1e-9, 1.0 - 1e-9])
    v, g, h = fl.BinaryCrossEntropy(eps=eps).value_grad_hess(y, p, reduction="none")
    lo, hi = eps, 1.0 - eps
    np.testing.assert_allclose(v, [-math.log(lo), -math.log1p(-hi), -math.log(lo),
                                   -math.log1p(-hi)], rtol=1e-14)
    np.testing.assert_allclose(g, [-1 / lo, 1 / (1 - hi), -1 / lo, 1 / (1 - hi)], rtol=1e-12)
    np.testing.assert_allclose(h, [1 / lo ** 2, 1 / (1 - hi) ** 2, 1 / lo ** 2,
                                   1 / (1 - hi) ** 2], rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_logistic_matches_torch_soft_margin(rng, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y, z = R.pm1_inputs(rng, (640,), dtype)
    s = np.where(y > 0, 1.0, -1.0).astype(dtype)
    w = rng.uniform(0.0, 2.0, size=z.shape)
    for reduction in REDUCTIONS:
        for ww in (None, w):
            tv, tg = _torch_outputs(torch, lambda yt, xt: F.soft_margin_loss(
                xt, torch.from_numpy(s), reduction="none"), y, z, ww, reduction)
            v, g = fl.Logistic().value_and_grad(y, z, sample_weight=ww, reduction=reduction)
            if reduction == "none":
                assert_elementwise_close(v, tv.astype(np.float64), dtype, ulps=16)
            else:
                assert_reduced_close(v, tv, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
            assert_elementwise_close(g, tg.astype(np.float64), dtype, ulps=16, what="grad")


@pytest.mark.parametrize("name", ["logistic", "bce_logits"])
def test_matches_sklearn_half_binomial(rng, name):
    """sklearn._loss.HalfBinomialLoss (y in {0, 1}): loss log(1 + e^raw) - y raw, gradient
    sigmoid(raw) - y, Hessian sigmoid (1 - sigmoid): element by element, weighted."""
    skl = pytest.importorskip("sklearn._loss.loss")
    y, z = R.binary_inputs(rng, (4001,), np.float64, scale=(0.1, 1.0, 5.0, 30.0))
    z[:6] = [0.0, 40.0, -40.0, 700.0, -700.0, 1e-300]
    w = rng.uniform(0.0, 2.0, size=y.shape)
    sk = skl.HalfBinomialLoss()
    sk_l = sk.loss(y, z, sample_weight=w)
    sk_g, sk_h = sk.gradient_hessian(y, z, sample_weight=w)
    v, g, h = make_loss(name).value_grad_hess(y, z, sample_weight=w, reduction="none")
    assert_elementwise_close(g, sk_g, np.float64, what="HalfBinomialLoss gradient")
    assert_elementwise_close(h, sk_h, np.float64, what="HalfBinomialLoss hessian")
    # sklearn's loss is log1pexp(raw) - y raw: a difference, accurate to eps (1 + |raw|) only.
    assert_elementwise_close(v, sk_l, np.float64,
                             atol=4 * np.finfo(float).eps * w * (1 + np.abs(z)),
                             what="HalfBinomialLoss.loss")
    assert_elementwise_close(v, w * R.elementwise_reference("logistic", y, z)[0], np.float64,
                             what="loss vs reference")
    np.testing.assert_allclose(make_loss(name)(y, z, sample_weight=w), sk(y, z, sample_weight=w),
                               rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_bce_probs_matches_sklearn_log_loss(rng, weighted):
    metrics = pytest.importorskip("sklearn.metrics")
    y, p = R.prob_inputs(rng, (999,), soft=False, edges=False)
    p = np.clip(p, 1e-6, 1 - 1e-6)  # sklearn clips with its own eps: stay away from 0 and 1
    w = rng.uniform(0.0, 3.0, size=y.shape) if weighted else None
    expected = metrics.log_loss(y, p, sample_weight=w, labels=[0, 1])
    np.testing.assert_allclose(fl.BinaryCrossEntropy()(y, p, sample_weight=w), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(fl.binary_cross_entropy(y, p, sample_weight=w), expected,
                               rtol=1e-12)
    # The same numbers as logits.
    z = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(fl.BinaryCrossEntropy(from_logits=True)(y, z, sample_weight=w),
                               expected, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_hinge_matches_sklearn(rng, weighted):
    metrics = pytest.importorskip("sklearn.metrics")
    y, z = R.pm1_inputs(rng, (800,))
    pm = np.where(y > 0, 1.0, -1.0)
    zo = (y > 0).astype(np.float64)
    w = rng.uniform(0.0, 2.0, size=y.shape) if weighted else None
    for labels in (pm, zo):
        expected = metrics.hinge_loss(labels, z, sample_weight=w)
        np.testing.assert_allclose(fl.Hinge()(labels, z, sample_weight=w), expected, rtol=1e-12)
        np.testing.assert_allclose(fl.hinge(labels, z, sample_weight=w), expected, rtol=1e-12)


def _torch_hinges(torch):
    def hinge(yt, xt):
        s = torch.where(yt > 0, 1.0, -1.0).to(xt.dtype)
        return torch.clamp(1 - s * xt, min=0)

    def squared(yt, xt):
        return hinge(yt, xt) ** 2

    def smooth(yt, xt):
        s = torch.where(yt > 0, 1.0, -1.0).to(xt.dtype)
        u = s * xt
        return torch.where(u <= 0, 0.5 - u, torch.where(u < 1, 0.5 * (1 - u) ** 2, 0 * u))

    return {"hinge": hinge, "squared_hinge": squared, "smooth_hinge": smooth}


@pytest.mark.parametrize("name", ["hinge", "squared_hinge", "smooth_hinge"])
def test_hinge_family_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    y, z = R.pm1_inputs(rng, (901,))
    u = np.where(y > 0, 1.0, -1.0) * z
    keep = (np.abs(u) > 1e-3) & (np.abs(u - 1) > 1e-3)  # torch's subgradient at kinks differs
    y, z = y[keep], z[keep]
    w = rng.uniform(0.0, 2.0, size=y.shape)
    for reduction in REDUCTIONS:
        tv, tg, th = _torch_outputs(torch, _torch_hinges(torch)[name], y, z, w, reduction,
                                    hess=True)
        v, g, h = make_loss(name).value_grad_hess(y, z, sample_weight=w, reduction=reduction)
        if reduction == "none":
            np.testing.assert_allclose(v, tv, rtol=1e-14, atol=1e-300)
        else:
            assert v == pytest.approx(tv, rel=1e-13)
        np.testing.assert_allclose(g, tg, rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(h, th, rtol=1e-14, atol=1e-300)


def _torch_focal(torch, gamma, alpha, from_logits):
    """torchvision.ops.sigmoid_focal_loss's formula in torch ops (also for probabilities)."""
    F = torch.nn.functional

    def fn(yt, xt):
        if from_logits:
            p = torch.sigmoid(xt)
            ce = F.binary_cross_entropy_with_logits(xt, yt, reduction="none")
        else:
            p = xt
            ce = -(yt * torch.log(p) + (1 - yt) * torch.log1p(-p))
        p_t = p * yt + (1 - p) * (1 - yt)
        loss = ce * (1 - p_t) ** gamma
        if alpha is not None:
            loss = (alpha * yt + (1 - alpha) * (1 - yt)) * loss
        return loss

    return fn


FOCAL_TORCH_PARAMS = [{}, {"gamma": 0.5, "alpha": 0.25}, {"gamma": 1.0},
                      {"gamma": 3.0, "alpha": 0.75}, {"gamma": 2.5, "alpha": 0.0}]


@pytest.mark.parametrize("params", FOCAL_TORCH_PARAMS, ids=str)
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
def test_focal_matches_torch_autograd(rng, from_logits, params):
    torch = pytest.importorskip("torch")
    name = "focal_logits" if from_logits else "focal_probs"
    gamma, alpha = params.get("gamma", 2.0), params.get("alpha")
    # Moderate logits: the torch form 1 - p_t cancels for well-classified examples.
    y, z = R.binary_inputs(rng, (600,), np.float64, soft=True, scale=(0.1, 1.0, 3.0))
    z = np.clip(z, -8, 8)
    x = z if from_logits else R._sigmoid(z)
    w = rng.uniform(0.0, 2.0, size=y.shape)
    fn = _torch_focal(torch, gamma, alpha, from_logits)
    loss = make_loss(name, params)
    for reduction in REDUCTIONS:
        tv, tg, th = _torch_outputs(torch, fn, y, x, w, reduction, hess=True)
        v, g, h = loss.value_grad_hess(y, x, sample_weight=w, reduction=reduction)
        la, ga, ha = reference_atol(name, y, x, params, w, reduction, ulps=1e4)
        if reduction == "none":
            np.testing.assert_allclose(v, tv, rtol=1e-10, atol=0)
        else:
            assert v == pytest.approx(tv, rel=1e-11)
        np.testing.assert_array_less(np.abs(g - tg), ga + 1e-300)
        np.testing.assert_array_less(np.abs(h - th), ha + 1e-300)


def test_torchvision_sigmoid_focal_loss(rng):
    ops = pytest.importorskip("torchvision.ops")
    torch = pytest.importorskip("torch")
    y, z = R.binary_inputs(rng, (300,), np.float64, soft=False, scale=(0.1, 1.0, 3.0))
    for gamma, alpha in [(2.0, 0.25), (0.0, -1), (1.5, 0.6)]:
        zt = torch.from_numpy(z).requires_grad_(True)
        t = ops.sigmoid_focal_loss(zt, torch.from_numpy(y), alpha=alpha, gamma=gamma,
                                   reduction="sum")
        t.backward()
        loss = fl.BinaryFocal(gamma=gamma, alpha=None if alpha < 0 else alpha, from_logits=True)
        v, g = loss.value_and_grad(y, z, reduction="sum")
        assert v == pytest.approx(float(t), rel=1e-11)
        np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
def test_focal_matches_mpmath(rng, from_logits):
    """The reference's hand-derived chain rule and fastloss (float64) against mpmath: the value at
    60 digits and its derivatives by mpmath.diff, at a few hundred points (soft and hard labels,
    several gamma/alpha, logits up to |z| = 30, probabilities down to 1e-6)."""
    pytest.importorskip("mpmath")
    name = "focal_logits" if from_logits else "focal_probs"
    n = 40
    for params in ({}, {"gamma": 0.5, "alpha": 0.25}, {"gamma": 3.0, "alpha": 0.75},
                   {"gamma": 1.5}, {"gamma": 0.0}):
        y, z = R.binary_inputs(rng, (n,), np.float64, soft=True, scale=(0.3, 2.0, 6.0))
        z[:4] = [30.0, -30.0, 12.0, -12.0]
        y[:4] = [1.0, 0.0, 0.7, 1.0]
        x = z if from_logits else np.clip(R._sigmoid(z), 1e-6, 1 - 1e-6)
        gamma, alpha = params.get("gamma", 2.0), params.get("alpha")
        mp = np.array([R.focal_mp(float(a), float(b), gamma, alpha, from_logits)
                       for a, b in zip(y, x)])
        el, eg, eh = R.elementwise_reference(name, y, x, params)
        ls, gs, hs = R.elementwise_scales(name, y, x, params)
        for what, got, exp, sc in [("l", el, mp[:, 0], ls), ("g", eg, mp[:, 1], gs),
                                   ("h", eh, mp[:, 2], hs)]:
            np.testing.assert_array_less(np.abs(got - exp), 1e-12 * sc + 1e-300,
                                         err_msg=f"reference {what} vs mpmath {params}")
        v, g, h = make_loss(name, params).value_grad_hess(y, x, reduction="none")
        e = 16 * np.finfo(np.float64).eps
        for what, got, exp, sc in [("l", v, mp[:, 0], ls), ("g", g, mp[:, 1], gs),
                                   ("h", h, mp[:, 2], hs)]:
            np.testing.assert_array_less(np.abs(got - exp), e * sc + 1e-300,
                                         err_msg=f"fastloss {what} vs mpmath {params}")


# --------------------------------------------------------------------------------------------------
# 4. Derivatives vs central finite differences
# --------------------------------------------------------------------------------------------------


def _smooth_inputs(rng, name, n, margin=1e-3):
    """(y, x) float64 away from the kinks (hinge family: u = 0, 1) and the clamp edges."""
    ref = R.REFERENCES[name]
    y, x = binary_case_inputs(rng, name, (4 * n,), np.float64)
    if ref.labels == "pm1":
        t = np.where(y > 0, 1.0, -1.0) * x
    else:
        t = x
    kinks = np.array(ref.kinks({}), dtype=np.float64)
    ok = np.all(np.abs(t[:, None] - kinks[None, :]) > margin, axis=1) if kinks.size else \
        np.ones(t.shape, bool)
    if name in PROB_KERNELS:
        ok &= (x > 1e-2) & (x < 1 - 1e-2)
    y, x = y[ok][:n], x[ok][:n]
    assert y.size == n
    return y, x


@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_reference_derivatives_match_finite_differences(rng, name, params):
    """The reference's own g and h are the derivatives of its l (validates reference.py)."""
    y, x = _smooth_inputs(rng, name, 400)
    f = lambda q: R.elementwise_reference(name, y, q, params)  # noqa: E731
    step = 1e-6 * (np.minimum(x, 1 - x) if name in PROB_KERNELS else np.maximum(1.0, np.abs(x)))
    lp, gp, _ = f(x + step)
    lm, gm, _ = f(x - step)
    _, g, h = f(x)
    np.testing.assert_allclose((lp - lm) / (2 * step), g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose((gp - gm) / (2 * step), h, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_fastloss_derivatives_match_finite_differences(rng, name, params, reduction, weighted):
    """FD of fastloss's reduced value, one coordinate at a time, vs its gradient; FD of its
    gradient vs its Hessian diagonal."""
    n = 10
    y, x = _smooth_inputs(rng, name, n, margin=1e-2)
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None
    loss = make_loss(name, params)
    _, g, h = loss.value_grad_hess(y, x, sample_weight=w, reduction=reduction)
    steps = 1e-6 * (np.minimum(x, 1 - x) if name in PROB_KERNELS else np.maximum(1.0, np.abs(x)))
    fd_g, fd_h = fd_grad_hess(loss, y, x, w, reduction, steps)
    scale = 1.0 if reduction == "sum" else 1.0 / (n if w is None else w.sum())
    np.testing.assert_allclose(g, fd_g, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", BINARY_CASES, ids=BINARY_CASE_IDS)
def test_fastloss_elementwise_finite_differences(rng, name, params, dtype):
    y, x = _smooth_inputs(rng, name, 2000, margin=3e-2)
    y, x = y.astype(dtype), x.astype(dtype)
    loss = make_loss(name, params)
    _, g, h = loss.value_grad_hess(y, x, reduction="none")
    rel = 1e-6 if dtype == np.float64 else 1e-3
    x64 = x.astype(np.float64)
    base = np.minimum(x64, 1 - x64) if name in PROB_KERNELS else np.maximum(1.0, np.abs(x64))
    step = (rel * base).astype(dtype)
    pp, pm = x + step, x - step
    span = pp.astype(np.float64) - pm.astype(np.float64)
    vp, gp = loss.value_and_grad(y, pp, reduction="none")
    vm, gm = loss.value_and_grad(y, pm, reduction="none")
    fd_g = (vp.astype(np.float64) - vm.astype(np.float64)) / span
    fd_h = (gp.astype(np.float64) - gm.astype(np.float64)) / span
    tol = 1e-5 if dtype == np.float64 else 2e-2
    _, gs, hs = R.elementwise_scales(name, y, x, params)
    for what, got, fd, sc in (("grad", g, fd_g, gs), ("hess", h, fd_h, hs)):
        got = got.astype(np.float64)
        bad = ~(np.abs(got - fd) <= tol * (np.abs(fd) + np.maximum(sc, 1e-3)))
        assert not bad.any(), (f"{name}{params} {what} vs FD: at x={x[bad][:4]}, y={y[bad][:4]}: "
                               f"got {got[bad][:4]}, FD {fd[bad][:4]}")


# --------------------------------------------------------------------------------------------------
# 5. Stability: huge and infinite logits, p = 0 and 1, NaN, saturated (well-classified) examples
# --------------------------------------------------------------------------------------------------

EXTREME_Z = [np.inf, 1e30, 1e5, 800.0, 100.0, 40.0]


def _extreme_grid(dtype, labels):
    mags = np.array(EXTREME_Z)
    z = np.concatenate([mags, -mags])
    yy, zz = np.meshgrid(np.array(labels, dtype=np.float64), z, indexing="ij")
    return yy.ravel().astype(dtype), zz.ravel().astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", [c for c in BINARY_CASES if c[0] not in PROB_KERNELS],
                         ids=[i for c, i in zip(BINARY_CASES, BINARY_CASE_IDS)
                              if c[0] not in PROB_KERNELS])
def test_extreme_logits(isa, name, params, dtype):
    """|z| in {40, ..., 1e30, inf}: finite where the math is, inf where it is inf, never NaN for
    non-NaN inputs (a label that gives a term weight 0 removes it: y = 0, z = -inf is l = 0)."""
    labels = [-1.0, 0.0, 1.0] if R.REFERENCES[name].labels == "pm1" else [0.0, 1.0, 0.3, 0.75]
    y, z = _extreme_grid(dtype, labels)
    loss = make_loss(name, params)
    v, g, h = loss.value_grad_hess(y, z, reduction="none")
    el, eg, eh = R.elementwise_reference(name, y, z, params)
    assert not np.any(np.isnan(el) | np.isnan(eg) | np.isnan(eh)), "reference gives NaN"
    for what, got in (("value", v), ("grad", g), ("hess", h)):
        bad = np.isnan(got)
        assert not bad.any(), (f"{what} NaN at y={y[bad].tolist()} z={z[bad].tolist()}")
    atol = reference_atol(name, y, z, params, reduction="none", ulps=tol_ulps(name, params))
    atol = atol or (None, None, None)
    ulps = tol_ulps(name, params)
    assert_elementwise_close(v, el, dtype, ulps=ulps, atol=atol[0], what=f"{name} value")
    assert_elementwise_close(g, eg, dtype, ulps=ulps, atol=atol[1], what=f"{name} grad")
    assert_elementwise_close(h, eh, dtype, ulps=ulps, atol=atol[2], what=f"{name} hess")
    # Reduced: inf iff some element is inf; the gradient of the mean is finite where g is.
    s, gs = loss.value_and_grad(y, z, reduction="sum")
    assert s == (math.inf if np.isinf(el).any() else pytest.approx(float(el.sum()), rel=1e-5))
    assert not np.any(np.isnan(gs))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bce_logits_infinite_logits_exact(isa, dtype):
    inf = np.inf
    for pw in (1.0, 2.5):
        loss = fl.BinaryCrossEntropy(from_logits=True, pos_weight=pw)
        y = np.array([1.0, 1.0, 0.0, 0.0, 0.5], dtype)
        z = np.array([inf, -inf, inf, -inf, inf], dtype)
        v, g, h = loss.value_grad_hess(y, z, reduction="none")
        np.testing.assert_array_equal(v, [0.0, inf, inf, 0.0, inf])
        np.testing.assert_array_equal(g, [0.0, -pw, 1.0, 0.0, 0.5])
        np.testing.assert_array_equal(h, 0.0)
        # 1e30: finite and exact (softplus(1e30) = 1e30).
        z = np.array([1e30, -1e30, 1e30, -1e30], dtype)
        v, g, h = loss.value_grad_hess(y[:4], z, reduction="none")
        big = float(dtype(1e30))
        np.testing.assert_array_equal(v, np.array([0.0, pw * big, big, 0.0], dtype))
        np.testing.assert_array_equal(g, [0.0, -pw, 1.0, 0.0])
        np.testing.assert_array_equal(h, 0.0)
    # With smoothing every target is soft: both terms are present, l is inf at either infinity.
    v, g = fl.BinaryCrossEntropy(from_logits=True, label_smoothing=0.25).value_and_grad(
        np.array([1.0, 0.0], dtype), np.array([inf, -inf], dtype), reduction="none")
    np.testing.assert_array_equal(v, [inf, inf])
    np.testing.assert_array_equal(g, [0.125, -0.125])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_logistic_and_hinges_at_infinity(dtype):
    inf = np.inf
    y = np.array([1.0, 1.0, -1.0, 0.0], dtype)
    z = np.array([inf, -inf, inf, -inf], dtype)  # u = inf, -inf, -inf, inf
    v, g, h = fl.Logistic().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0.0, inf, inf, 0.0])
    np.testing.assert_array_equal(g, [0.0, -1.0, 1.0, 0.0])
    np.testing.assert_array_equal(h, 0.0)
    v, g, h = fl.Hinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0.0, inf, inf, 0.0])
    np.testing.assert_array_equal(g, [0.0, -1.0, 1.0, 0.0])
    v, g, h = fl.SquaredHinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0.0, inf, inf, 0.0])
    np.testing.assert_array_equal(g, [0.0, -inf, inf, 0.0])
    np.testing.assert_array_equal(h, [0.0, 2.0, 2.0, 0.0])
    v, g, h = fl.SmoothHinge().value_grad_hess(y, z, reduction="none")
    np.testing.assert_array_equal(v, [0.0, inf, inf, 0.0])
    np.testing.assert_array_equal(g, [0.0, -1.0, 1.0, 0.0])
    np.testing.assert_array_equal(h, 0.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", [c for c in BINARY_CASES if c[0] in PROB_KERNELS],
                         ids=[i for c, i in zip(BINARY_CASES, BINARY_CASE_IDS)
                              if c[0] in PROB_KERNELS])
def test_probability_edges(isa, name, params, dtype):
    """p = 0 and 1 exactly, subnormal, 1 - ulp: the clamped formula, finite (outside [0, 1] is an
    error: test_probabilities_outside_the_unit_interval_are_an_error)."""
    tiny = float(np.finfo(dtype).smallest_subnormal)
    below_one = float(np.nextafter(dtype(1), dtype(0)))
    ps = [0.0, 1.0, -0.0, tiny, below_one, 1e-30, 0.5]
    yy, pp = np.meshgrid([0.0, 1.0, 0.4], ps, indexing="ij")
    y, p = yy.ravel().astype(dtype), pp.ravel().astype(dtype)
    v, g, h = make_loss(name, params).value_grad_hess(y, p, reduction="none")
    for what, got in (("value", v), ("grad", g), ("hess", h)):
        assert np.all(np.isfinite(got)), f"{what}: {got[~np.isfinite(got)]}"
    el, eg, eh = R.elementwise_reference(name, y, p, params)
    la, ga, ha = reference_atol(name, y, p, params, reduction="none", ulps=tol_ulps(name, params))
    ulps = tol_ulps(name, params)
    assert_elementwise_close(v, el, dtype, ulps=ulps, atol=la, what=f"{name} value at edges")
    assert_elementwise_close(g, eg, dtype, ulps=ulps, atol=ga, what=f"{name} grad at edges")
    assert_elementwise_close(h, eh, dtype, ulps=ulps, atol=ha, what=f"{name} hess at edges")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", PROB_KERNELS)
def test_probability_losses_small_p_accuracy(dtype, name):
    """y = 0 and small p: l = -log(1 - p) ~ p must keep its relative accuracy (log1p(-p), not
    log of a rounded 1 - p, which is off by ~eps / p relative: ~500 ULP at p = 1e-3). Likewise
    y = 1 and p close to 1 (log p: no rounding issue, 1 - p is exact there)."""
    p = np.array([1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 2e-6], dtype)
    y = np.zeros_like(p)
    params = {"gamma": 0.0} if name == "focal_probs" else {}
    v, g, h = make_loss(name, params).value_grad_hess(y, p, reduction="none")
    el, eg, eh = R.elementwise_reference(name, y, p, params)
    assert_elementwise_close(v, el, dtype, ulps=8, what=f"{name} -log(1 - p) for small p")
    assert_elementwise_close(g, eg, dtype, ulps=8, what=f"{name} grad for small p")
    assert_elementwise_close(h, eh, dtype, ulps=8, what=f"{name} hess for small p")
    q = (1 - p.astype(np.float64)).astype(dtype)  # p close to 1 with y = 1: the mirror image
    v = make_loss(name, params)(np.ones_like(q), q, reduction="none")
    assert_elementwise_close(v, R.elementwise_reference(name, np.ones_like(q), q, params)[0],
                             dtype, ulps=8, what=f"{name} -log(p) for p near 1")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params", [("bce_logits", {}), ("bce_logits", {"pos_weight": 2.5}),
                                         ("logistic", {}), ("focal_logits", {}),
                                         ("focal_logits", {"gamma": 0.5, "alpha": 0.25})],
                         ids=["bce", "bce-pw", "logistic", "focal", "focal-0.5"])
def test_saturated_logits_keep_relative_accuracy(isa, name, params, dtype):
    """Well-classified examples (y = 1, z >> 0; y = 0, z << 0): l, g, h are tiny but must be
    accurate relative to themselves (e.g. g = -sigmoid(-z), not sigmoid(z) - 1 which is 0)."""
    top = 700.0 if dtype == np.float64 else 80.0
    z = np.geomspace(5.0, top, 64)
    y = np.concatenate([np.ones_like(z), np.zeros_like(z)]).astype(dtype)
    z = np.concatenate([z, -z]).astype(dtype)
    v, g, h = make_loss(name, params).value_grad_hess(y, z, reduction="none")
    el, eg, eh = R.elementwise_reference(name, y, z, params)
    ulps = tol_ulps(name, params)
    atol = reference_atol(name, y, z, params, reduction="none", ulps=ulps) or (None,) * 3
    assert_elementwise_close(v, el, dtype, ulps=ulps, atol=atol[0], what=f"{name} value")
    assert_elementwise_close(g, eg, dtype, ulps=ulps, atol=atol[1], what=f"{name} grad")
    assert_elementwise_close(h, eh, dtype, ulps=ulps, atol=atol[2], what=f"{name} hess")
    nz = eg.astype(dtype) != 0  # the gradient points the right way wherever it is representable
    assert np.all(g[:64][nz[:64]] < 0) and np.all(g[64:][nz[64:]] > 0)


# A NaN label of the {-1, +1} losses is a ValueError (test_invalid_labels_raise_and_write_nothing).
NAN_CASES = [(n, p, where) for (n, p) in BINARY_CASES for where in ("y_pred", "y_true")
             if where == "y_pred" or R.REFERENCES[n].labels != "pm1"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name,params,where", NAN_CASES,
                         ids=[f"{i}-{w}" for (n, p), i in zip(BINARY_CASES, BINARY_CASE_IDS)
                              for w in ("y_pred", "y_true")
                              if w == "y_pred" or R.REFERENCES[n].labels != "pm1"])
def test_nan_propagates(isa, rng, name, params, dtype, where):
    y, x = binary_case_inputs(rng, name, (3000,), dtype)
    k = 1234
    (x if where == "y_pred" else y)[k] = np.nan
    loss = make_loss(name, params)
    for reduction in ("mean", "sum"):
        v, g, h = loss.value_grad_hess(y, x, reduction=reduction)
        assert math.isnan(v), f"{reduction} value is {v}, expected NaN"
        assert np.isnan(g[k]) and np.isnan(h[k]), (g[k], h[k])
        others = np.ones(g.shape, bool)
        others[k] = False
        assert not np.any(np.isnan(g[others])) and not np.any(np.isnan(h[others]))
    none, g, h = loss.value_grad_hess(y, x, reduction="none")
    assert np.flatnonzero(np.isnan(none)).tolist() == [k]
    assert np.flatnonzero(np.isnan(g)).tolist() == [k]
    assert np.flatnonzero(np.isnan(h)).tolist() == [k]


# --------------------------------------------------------------------------------------------------
# 6. Identities between the losses
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
def test_focal_with_gamma_zero_is_bce(isa, rng, from_logits, dtype):
    name = "bce_logits" if from_logits else "bce_probs"
    for soft in (False, True):
        y, x = binary_case_inputs(rng, name, (4001,), dtype, soft=soft)
        if not soft:
            y = (y > 0.5).astype(dtype)
        for eps in (1e-7, 1e-3):
            kw = {"from_logits": from_logits, "eps": eps}
            f = fl.BinaryFocal(gamma=0.0, **kw).value_grad_hess(y, x, reduction="none")
            b = fl.BinaryCrossEntropy(**kw).value_grad_hess(y, x, reduction="none")
            p = {} if from_logits else {"eps": eps}
            scales = R.elementwise_scales(name, y, x, p) if soft else [np.abs(a) for a in b]
            e = 2 * float(np.finfo(dtype).eps)
            sub = 4 * float(np.finfo(dtype).smallest_subnormal)
            for what, a, c, sc in zip(("value", "grad", "hess"), f, b, scales):
                assert_elementwise_close(a, c.astype(np.float64), dtype, ulps=2,
                                         atol=e * sc + sub,
                                         what=f"focal(gamma=0) vs BCE {what} soft={soft}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0, 4.0, 7.0, 65.0, 66.0])
def test_focal_logits_integer_gamma_matches_reference(isa, rng, gamma, dtype):
    """Integer gamma is raised by multiplication (gamma <= 65), any other through exp/log: both
    forms agree with the reference, on soft and hard labels, logits up to |z| ~ 25 and saturated
    ones (where m^gamma and ce' vanish while ce grows: the gradient stays finite). m^gamma
    multiplies the rounding error of m by gamma in either form, hence the allowance."""
    params = {"gamma": gamma, "alpha": 0.25}
    ulps = max(16, int(2 * gamma))
    loss = make_loss("focal_logits", params)
    for soft in (True, False):
        y, z = binary_case_inputs(rng, "focal_logits", (3001,), dtype, soft=soft)
        for reduction in ("none", "sum"):
            check_against_reference(loss, "focal_logits", params, y, z, None, reduction, dtype,
                                    ulps=ulps, what=isa)
    y = np.array([1, 0, 1, 0, 1, 0, 0.5, 0.5], dtype=dtype)
    z = np.array([-1e30, 1e30, 1e30, -1e30, -np.inf, np.inf, 1e30, -np.inf], dtype=dtype)
    v, g, h = loss.value_grad_hess(y, z, reduction="none")
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h)), (g, h)
    assert np.all(v[[2, 3]] == 0) and np.all(g[[2, 3]] == 0)


@pytest.mark.parametrize("gamma", [2.0, 2.5])  # the integer and the general body
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_infinite_logit_against_a_tiny_target_is_infinite(isa, gamma, dtype):
    """m^gamma of a tiny soft target underflows (float32: (3e-33)^2 = 0) while the cross-entropy
    of an infinite logit is infinite: the loss is infinite, not 0 * inf = NaN."""
    y = np.array([3.317226e-33, 1e-30, 0.0, 1.0], dtype)
    z = np.array([-np.inf, -np.inf, -np.inf, -np.inf], dtype)
    loss = fl.BinaryFocal(gamma=gamma, from_logits=True)
    values, grad = loss.value_and_grad(y, z, reduction="none")
    assert values[0] == np.inf and values[1] == np.inf and values[3] == np.inf and values[2] == 0
    assert not np.isnan(grad).any()
    ref = R.elementwise_reference("focal_logits", y.astype(np.float64), z.astype(np.float64),
                                  {"gamma": gamma})[0]
    np.testing.assert_array_equal(values, ref.astype(dtype))


@pytest.mark.parametrize("gamma", [2.0, 2.5])  # the integer and the general body
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_focal_class_weight_zero_removes_an_infinite_cross_entropy(isa, gamma, dtype):
    """alpha = 1 weighs the negative class by 0 (alpha = 0 the positive one): its elements count
    0 even where their cross-entropy is infinite (a logit saturated the wrong way), as a target
    weight of 0 does in BCE, while NaN logits still propagate."""
    z = np.array([np.inf, np.inf, -np.inf, np.nan, np.nan], dtype)
    y = np.array([0.0, 0.25, 1.0, 0.0, 1.0], dtype)
    for alpha, zero in ((1.0, [0]), (0.0, [2])):
        values, grad, hess = fl.BinaryFocal(gamma=gamma, alpha=alpha, from_logits=True).value_grad_hess(
            y, z, reduction="none")
        assert np.all(values[zero] == 0) and np.all(grad[zero] == 0), (alpha, values, grad)
        assert np.all(np.isnan(values[3:])) and np.all(np.isnan(grad[3:])), (alpha, values, grad)
        assert not np.isnan(hess[:3]).any(), (alpha, hess)
    # the soft target opposite +inf keeps its (infinite) loss under either weight
    assert fl.BinaryFocal(gamma=gamma, alpha=1.0, from_logits=True).value_grad_hess(
        y[1:2], z[1:2], reduction="none")[0][0] == np.inf


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
def test_focal_alpha_weights_the_classes(rng, from_logits):
    name = "focal_logits" if from_logits else "focal_probs"
    y, x = binary_case_inputs(rng, name, (2000,), soft=True)
    base = fl.BinaryFocal(gamma=1.5, from_logits=from_logits).value_grad_hess(
        y, x, reduction="none")
    for alpha in (0.0, 0.25, 1.0):
        at = alpha * y + (1 - alpha) * (1 - y)
        got = fl.BinaryFocal(gamma=1.5, alpha=alpha, from_logits=from_logits).value_grad_hess(
            y, x, reduction="none")
        for a, b in zip(got, base):
            np.testing.assert_allclose(a, at * b, rtol=4e-16 * 8, atol=1e-300)


def test_logistic_equals_bce_on_logits_with_hard_labels(rng):
    y, z = R.binary_inputs(rng, (3000,))
    for dtype in DTYPES:
        yd, zd = y.astype(dtype), z.astype(dtype)
        a = fl.Logistic().value_grad_hess(yd, zd, reduction="none")
        b = fl.BinaryCrossEntropy(from_logits=True).value_grad_hess(yd, zd, reduction="none")
        for what, u, v in zip(("value", "grad", "hess"), a, b):
            assert_elementwise_close(u, v.astype(np.float64), dtype, ulps=4,
                                     what=f"logistic vs bce_logits {what}")


def test_bce_logits_and_probs_agree(rng):
    """BCE on z equals BCE on sigmoid(z) (where the clamp is inactive) and g_z = g_p dp/dz."""
    y, z = R.binary_inputs(rng, (2000,), soft=True, scale=(0.1, 1.0, 3.0))
    p = R._sigmoid(z)
    for params in ({}, {"pos_weight": 2.5, "label_smoothing": 0.1}):
        vz, gz, hz = fl.BinaryCrossEntropy(from_logits=True, **params).value_grad_hess(
            y, z, reduction="none")
        vp, gp, hp = fl.BinaryCrossEntropy(**params).value_grad_hess(y, p, reduction="none")
        dp = p * (1 - p)
        np.testing.assert_allclose(vz, vp, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(gz, gp * dp, rtol=1e-9, atol=1e-12)
        # d2l/dz2 = h_p (dp/dz)^2 + g_p d2p/dz2
        np.testing.assert_allclose(hz, hp * dp ** 2 + gp * dp * (1 - 2 * p), rtol=1e-8, atol=1e-11)


def test_label_smoothing_and_pos_weight_definitions(rng):
    y, z = R.binary_inputs(rng, (1500,), soft=True)
    a = 0.3
    ys = y * (1 - a) + a / 2
    np.testing.assert_allclose(
        fl.BinaryCrossEntropy(from_logits=True, label_smoothing=a)(y, z, reduction="none"),
        fl.BinaryCrossEntropy(from_logits=True)(ys, z, reduction="none"), rtol=1e-14, atol=1e-300)
    hard = (y > 0.5).astype(np.float64)
    l1 = fl.BinaryCrossEntropy(from_logits=True)(hard, z, reduction="none")
    l3 = fl.BinaryCrossEntropy(from_logits=True, pos_weight=3.0)(hard, z, reduction="none")
    np.testing.assert_allclose(l3, np.where(hard == 1, 3 * l1, l1), rtol=1e-15)


def test_squared_hinge_is_hinge_squared(rng):
    y, z = R.pm1_inputs(rng, (1000,))
    np.testing.assert_allclose(fl.SquaredHinge()(y, z, reduction="none"),
                               fl.Hinge()(y, z, reduction="none") ** 2, rtol=4e-16)
    g_h = fl.Hinge().value_and_grad(y, z, reduction="none")[1]
    g_s = fl.SquaredHinge().value_and_grad(y, z, reduction="none")[1]
    np.testing.assert_allclose(g_s, 2 * fl.Hinge()(y, z, reduction="none") * g_h, rtol=4e-16)


# --------------------------------------------------------------------------------------------------
# 7. Hyper-parameters, registry, docs
# --------------------------------------------------------------------------------------------------

BCE, FOCAL = fl.BinaryCrossEntropy, fl.BinaryFocal


@pytest.mark.parametrize("cls,kwargs,exc,match", [
    (BCE, {"pos_weight": 0.0}, ValueError, "pos_weight"),
    (BCE, {"pos_weight": -1.0}, ValueError, "pos_weight"),
    (BCE, {"pos_weight": float("nan")}, ValueError, "pos_weight"),
    (BCE, {"pos_weight": float("inf")}, ValueError, "pos_weight"),
    (BCE, {"pos_weight": "2"}, TypeError, "pos_weight"),
    (BCE, {"label_smoothing": -0.1}, ValueError, "label_smoothing"),
    (BCE, {"label_smoothing": 1.0}, ValueError, "label_smoothing"),
    (BCE, {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    (BCE, {"label_smoothing": float("nan")}, ValueError, "label_smoothing"),
    (BCE, {"eps": 0.0}, ValueError, "eps"),
    (BCE, {"eps": -1e-7}, ValueError, "eps"),
    (BCE, {"eps": 0.5}, ValueError, "eps"),
    (BCE, {"eps": 0.7}, ValueError, "eps"),
    (BCE, {"eps": float("nan")}, ValueError, "eps"),
    (BCE, {"from_logits": 1}, (TypeError, ValueError), "from_logits"),
    (BCE, {"from_logits": "True"}, (TypeError, ValueError), "from_logits"),
    (BCE, {"from_logits": None}, (TypeError, ValueError), "from_logits"),
    (BCE, {"gamma": 2.0}, TypeError, "gamma"),
    (FOCAL, {"gamma": -0.5}, ValueError, "gamma"),
    (FOCAL, {"gamma": -1e-300}, ValueError, "gamma"),
    (FOCAL, {"gamma": float("nan")}, ValueError, "gamma"),
    (FOCAL, {"gamma": "2"}, TypeError, "gamma"),
    (FOCAL, {"alpha": -0.1}, ValueError, "alpha"),
    (FOCAL, {"alpha": 1.1}, ValueError, "alpha"),
    (FOCAL, {"alpha": float("nan")}, ValueError, "alpha"),
    (FOCAL, {"alpha": "0.25"}, TypeError, "alpha"),
    (FOCAL, {"eps": 0.0}, ValueError, "eps"),
    (FOCAL, {"eps": 0.5}, ValueError, "eps"),
    (FOCAL, {"from_logits": 0}, (TypeError, ValueError), "from_logits"),
    (FOCAL, {"from_logits": "yes"}, (TypeError, ValueError), "from_logits"),
    (FOCAL, {"pos_weight": 2.0}, TypeError, "pos_weight"),
    (fl.Logistic, {"from_logits": True}, TypeError, "from_logits"),
    (fl.Hinge, {"margin": 1.0}, TypeError, "margin"),
    (fl.SquaredHinge, {"reduction": "avg"}, ValueError, "reduction"),
    (fl.SmoothHinge, {"gamma": 1.0}, TypeError, "gamma"),
])
def test_invalid_hyper_parameters(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(**kwargs)


def test_valid_hyper_parameters_are_stored():
    b = BCE(from_logits=True, pos_weight=2, label_smoothing=0, eps=1e-3)
    assert b.from_logits is True and b.pos_weight == 2.0 and isinstance(b.pos_weight, float)
    assert b.label_smoothing == 0.0 and b.eps == 1e-3
    assert BCE().from_logits is False and BCE().pos_weight == 1.0 and BCE().eps == 1e-7
    f = FOCAL()
    assert f.gamma == 2.0 and f.alpha is None and f.from_logits is False and f.eps == 1e-7
    assert FOCAL(alpha=0).alpha == 0.0 and FOCAL(alpha=1).alpha == 1.0 and FOCAL(gamma=0).gamma == 0
    assert BCE(label_smoothing=0.999).label_smoothing == 0.999
    assert FOCAL(alpha=np.float32(0.25)).alpha == 0.25
    r = eval(repr(FOCAL(gamma=1.5, alpha=0.25, from_logits=True)), {"BinaryFocal": FOCAL})  # noqa
    assert r.get_params() == {"gamma": 1.5, "alpha": 0.25, "from_logits": True, "eps": 1e-7}
    with pytest.raises(ValueError, match="pos_weight"):
        fl.binary_cross_entropy(np.zeros(2), np.full(2, 0.5), pos_weight=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        fl.binary_focal(np.zeros(2), np.full(2, 0.5), gamma=-1.0)


def test_functional_shortcuts(rng):
    y, z = R.binary_inputs(rng, (100,), soft=True)
    p = R._sigmoid(z)
    yp, zp = R.pm1_inputs(rng, (100,))
    assert fl.binary_cross_entropy(y, z, from_logits=True, pos_weight=2.0) == \
        BCE(from_logits=True, pos_weight=2.0)(y, z)
    assert fl.binary_cross_entropy(y, p, reduction="sum") == BCE()(y, p, reduction="sum")
    assert fl.binary_focal(y, z, from_logits=True, gamma=1.0, alpha=0.25) == \
        FOCAL(from_logits=True, gamma=1.0, alpha=0.25)(y, z)
    assert fl.logistic(yp, zp) == fl.Logistic()(yp, zp)
    assert fl.hinge(yp, zp) == fl.Hinge()(yp, zp)
    assert fl.squared_hinge(yp, zp) == fl.SquaredHinge()(yp, zp)
    assert fl.smooth_hinge(yp, zp) == fl.SmoothHinge()(yp, zp)
    for name in ("BinaryCrossEntropy", "Logistic", "BinaryFocal", "Hinge", "SquaredHinge",
                 "SmoothHinge", "binary_cross_entropy", "logistic", "binary_focal", "hinge",
                 "squared_hinge", "smooth_hinge"):
        assert name in fl.__all__ and getattr(fl, name) is getattr(fl.classification, name)
    for key in ("binary_cross_entropy", "BinaryCrossEntropy", "binary_focal", "logistic", "hinge"):
        assert isinstance(fl.get_loss(key), fl.Loss)
    assert fl.get_loss("binary_cross_entropy", from_logits=True)._kernel_name == "bce_logits"


def test_hinge_docstring_says_hessian_is_ae():
    for cls in (fl.Hinge, fl.SmoothHinge):
        assert "a.e." in cls.__doc__ or "almost" in cls.__doc__


def test_classification_module_doctests():
    import fastloss.classification as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted >= 6, result
    assert result.failed == 0, result


# --------------------------------------------------------------------------------------------------
# 8. Property tests (hypothesis)
# --------------------------------------------------------------------------------------------------

HYP = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def binary_problem(draw):
    name, params = draw(st.sampled_from(BINARY_CASES))
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 40))
    width = 32 if dtype == np.float32 else 64
    ref = R.REFERENCES[name]
    if name in PROB_KERNELS:
        x_el = st.one_of(st.floats(0.0, 1.0, width=width),
                         st.sampled_from([0.0, 1.0, 1e-9, 1 - 1e-9]))
    else:
        big = float(np.float32(1e30)) if width == 32 else 1e30
        x_el = st.one_of(st.floats(-30.0, 30.0, width=width),
                         st.floats(-big, big, width=width),
                         st.sampled_from([np.inf, -np.inf, 0.0, 1.0, -1.0]))
    if ref.labels == "pm1":
        y_el = st.sampled_from([-1.0, 0.0, 1.0])
    else:
        y_el = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0, width=width))
    x = draw(hnp.arrays(dtype, (n,), elements=x_el))
    y = draw(hnp.arrays(dtype, (n,), elements=y_el))
    w = None
    if draw(st.booleans()):
        w = draw(hnp.arrays(np.float64, (n,), elements=st.one_of(
            st.just(0.0), st.floats(1e-3, 1e3))))
    return name, params, dtype, y, x, w


@HYP
@given(problem=binary_problem())
def test_property_matches_reference_and_reductions_agree(problem):
    name, params, dtype, y, x, w = problem
    dt = np.dtype(dtype)
    loss = make_loss(name, params)
    none, g_none, h_none = loss.value_grad_hess(y, x, sample_weight=w, reduction="none")
    el, eg, eh = R.elementwise_reference(name, y, x, params)
    wb = np.ones(np.shape(x)) if w is None else np.asarray(w, np.float64)
    # Never NaN where the reference is not (no NaN inputs here; a weight 0 times an infinite loss
    # is NaN, as everywhere in fastloss: also where the loss overflows only in the input's dtype).
    with np.errstate(all="ignore"):
        wl, wg, wh = (np.where(np.isnan(wb * e.astype(dt)), np.nan, wb * e) for e in (el, eg, eh))
    for what, got, exp in (("value", none, wl), ("grad", g_none, wg), ("hess", h_none, wh)):
        bad = np.isnan(got) & ~np.isnan(exp)
        assert not bad.any(), f"{name}{params} {what} NaN at y={y[bad]}, x={x[bad]}"
    ulps = tol_ulps(name, params)
    atol = reference_atol(name, y, x, params, w, "none", ulps=ulps) or (None,) * 3
    assert_elementwise_close(none, wl, dt, ulps=ulps, atol=atol[0], what=f"{name} none")
    assert_elementwise_close(g_none, wg, dt, ulps=ulps, atol=atol[1], what=f"{name} grad")
    assert_elementwise_close(h_none, wh, dt, ulps=ulps, atol=atol[2], what=f"{name} hess")
    total, g_sum = loss.value_and_grad(y, x, sample_weight=w, reduction="sum")
    assert_bitwise_equal(g_none, g_sum, "grad of none vs grad of sum")
    with np.errstate(all="ignore"):
        expected_sum = float(np.sum(none.astype(np.float64)))
    if math.isinf(expected_sum) or math.isnan(expected_sum):
        assert total == expected_sum or (math.isnan(total) and math.isnan(expected_sum))
    else:
        assert_reduced_close(total, expected_sum, np.float64,
                             rtol=1e-12 if dt == np.float64 else 1.2e-7, what="sum vs none.sum()")
    norm = float(np.sum(wb))
    if x.size and norm > 0:
        mean = loss(y, x, sample_weight=w)
        if math.isfinite(total):
            assert_reduced_close(mean, total / norm, np.float64, rtol=1e-12, what="mean")
        else:
            assert mean == total or (math.isnan(mean) and math.isnan(total))


@HYP
@given(data=st.data())
def test_property_pm1_labels_validated(data):
    """Any label outside {-1, 0, +1} is reported (first one, by index); valid labels never are."""
    name = data.draw(st.sampled_from(PM1_KERNELS))
    n = data.draw(st.integers(1, 30))
    y = data.draw(hnp.arrays(np.float64, (n,), elements=st.one_of(
        st.sampled_from([-1.0, 0.0, 1.0, -0.0]), st.floats(allow_nan=True))))
    bad = ~np.isin(y, [-1.0, 0.0, 1.0])
    loss = make_loss(name)
    if bad.any():
        with pytest.raises(ValueError, match="y_true") as info:
            loss(y, np.zeros(n))
        assert str(int(np.flatnonzero(bad)[0])) in str(info.value)
    else:
        assert math.isfinite(loss(y, np.zeros(n)))
