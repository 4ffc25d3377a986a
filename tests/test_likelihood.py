"""Likelihood losses with a log link: PoissonNLL, GammaNLL, TweedieNLL, GaussianNLL.

* scikit-learn's ``sklearn._loss`` (HalfPoissonLoss, HalfGammaLoss, HalfTweedieLoss):
  ``gradient_hessian`` to rtol 1e-10 and ``loss`` (float64);
* PyTorch's ``poisson_nll_loss`` (``full`` both ways) and ``gaussian_nll_loss``: values and
  autograd gradients;
* independent float64 NumPy formulas (every ISA, float32 and float64, weights, reductions);
* central finite differences of the reference for the gradient and the Hessian diagonal;
* label domains, out= buffers untouched on error, strided inputs, parameter validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl

from conftest import fd_grad_hess

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# Tweedie powers: scikit-learn's special cases (0, 1, 2) and the general formula on both sides.
POWERS = [-1.0, 0.0, 1.0, 1.3, 1.5, 1.9, 2.0, 2.5, 3.0]


# ---- independent float64 references ---------------------------------------------------------

def ref_poisson(y, z, full=False):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    l = np.exp(z) - y * z
    if full:
        ys = np.where(y > 1, y, 1.0)
        l = l + np.where(y > 1, ys * np.log(ys) - ys + 0.5 * np.log(2 * np.pi * ys), 0.0)
    return l, np.exp(z) - y, np.exp(z)


def ref_gamma(y, z):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    t = y * np.exp(-z)
    return z + t, 1 - t, t


def ref_tweedie(y, z, p):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    if p == 1:
        return ref_poisson(y, z)
    if p == 2:
        return ref_gamma(y, z)
    if p == 0:
        mu = np.exp(z)
        return 0.5 * (mu - y) ** 2, mu * (mu - y), mu * (2 * mu - y)
    e1, e2 = np.exp((1 - p) * z), np.exp((2 - p) * z)
    return e2 / (2 - p) - y * e1 / (1 - p), e2 - y * e1, (2 - p) * e2 - (1 - p) * y * e1


def ref_gaussian(y, x, full=False):
    """Per-row loss, (n, 2) gradient and Hessian diagonal."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    m, s = x[..., 0], x[..., 1]
    e = np.exp(-s)
    q = (y - m) ** 2 * e
    l = 0.5 * (s + q) + (HALF_LOG_2PI if full else 0.0)
    g = np.stack([(m - y) * e, 0.5 * (1 - q)], axis=-1)
    h = np.stack([e, 0.5 * q], axis=-1)
    return l, g, h


def _data(kind, n, rng, p=None):
    """Labels in the loss's support and log-means around them."""
    z = 0.5 + 0.8 * rng.standard_normal(n)
    mu = np.exp(z)
    if kind == "poisson" or (kind == "tweedie" and 1 <= p < 2):
        y = rng.poisson(mu).astype(np.float64)
        if kind == "tweedie":
            y = y * rng.uniform(0.5, 1.5, n)
    elif kind == "gamma" or (kind == "tweedie" and p >= 2):
        y = rng.gamma(2.0, mu / 2.0) + 1e-3
    else:
        y = mu + rng.standard_normal(n)
    return y, z + 0.4 * rng.standard_normal(n)


def _loss_and_ref(kind, p=None, full=False):
    if kind == "poisson":
        return fl.PoissonNLL(full=full), lambda y, z: ref_poisson(y, z, full)
    if kind == "gamma":
        return fl.GammaNLL(), ref_gamma
    return fl.TweedieNLL(power=p), lambda y, z: ref_tweedie(y, z, p)


ELEMENTWISE = ([("poisson", None, False), ("poisson", None, True), ("gamma", None, False)]
               + [("tweedie", p, False) for p in POWERS])
EW_IDS = [f"{k}{'' if p is None else p}{'-full' if f else ''}" for k, p, f in ELEMENTWISE]


# ---- scikit-learn ----------------------------------------------------------------------------

def _sklearn_loss(kind, p):
    sk = pytest.importorskip("sklearn._loss.loss")
    if kind == "poisson":
        return sk.HalfPoissonLoss()
    if kind == "gamma":
        return sk.HalfGammaLoss()
    return sk.HalfTweedieLoss(power=p)


def _close_terms(got, expected, scale, rtol):
    """|got - expected| <= rtol * scale elementwise: scale is the size of the terms that form
    the result (a gradient near the optimum cancels: its own size is no yardstick)."""
    assert np.all(np.abs(got - expected) <= rtol * scale), np.max(np.abs(got - expected) / scale)


@pytest.mark.parametrize("kind,p,full", [c for c in ELEMENTWISE if not c[2]],
                         ids=[i for i, c in zip(EW_IDS, ELEMENTWISE) if not c[2]])
def test_gradient_hessian_equal_sklearn(isa, rng, kind, p, full):
    sk = _sklearn_loss(kind, p)
    loss, _ = _loss_and_ref(kind, p)
    y, z = _data(kind, 2000, rng, p)
    w = rng.uniform(0, 2, y.size)
    g_sk, h_sk = sk.gradient_hessian(y, z, sample_weight=w)
    g, h = loss.grad_hess(y, z, sample_weight=w, reduction="none")
    pp = 1.0 if p is None else p
    # the magnitudes of the two terms of each derivative
    e1, e2 = np.abs(y) * np.exp((1 - pp) * z), np.exp((2 - pp) * z)
    scale_g = w * (e1 + e2 + (1 if kind == "gamma" else 0))
    scale_h = w * (np.abs(1 - pp) * e1 + np.abs(2 - pp) * e2 + e1 + e2)
    _close_terms(g, g_sk, scale_g, 1e-10)
    _close_terms(h, h_sk, scale_h, 1e-10)
    # and as relative accuracy wherever the derivative does not cancel
    big = np.abs(g_sk) > 1e-3 * scale_g
    np.testing.assert_allclose(g[big], g_sk[big], rtol=1e-10)
    big = np.abs(h_sk) > 1e-3 * scale_h
    assert big.mean() > 0.9
    np.testing.assert_allclose(h[big], h_sk[big], rtol=1e-10)
    # values: sklearn's loss (without its constant_to_optimal_zero), and the weighted mean
    l_sk = sk.loss(y, z)
    values = loss(y, z, reduction="none")
    scale_l = e1 / max(abs(1 - pp), 1e-3) + e2 + np.abs(z * y) + np.abs(z) + y * y
    _close_terms(values, l_sk, scale_l, 1e-10)
    assert abs(loss(y, z, sample_weight=w) - sk(y, z, sample_weight=w)) <= 1e-10 * np.average(
        scale_l, weights=w)


def test_sklearn_constant_makes_the_deviance(rng):
    """GammaNLL + (-log y - 1) is scikit-learn's half Gamma deviance (zero at mu = y)."""
    sk = pytest.importorskip("sklearn._loss.loss")
    y, z = _data("gamma", 500, rng)
    const = sk.HalfGammaLoss().constant_to_optimal_zero(y)
    np.testing.assert_allclose(const, -np.log(y) - 1)
    dev = fl.GammaNLL()(y, np.log(y), reduction="none") + const
    np.testing.assert_allclose(dev, 0, atol=1e-12)


# ---- PyTorch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("full", [False, True])
def test_poisson_equals_torch(rng, full):
    torch = pytest.importorskip("torch")
    y, z = _data("poisson", 3000, rng)
    y[:5] = [0, 1, 2, 0.5, 1.5]  # both sides of the Stirling mask (y > 1)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.poisson_nll_loss(zt, torch.tensor(y), log_input=True, full=full)
    ref.backward()
    value, grad = fl.PoissonNLL(full=full).value_and_grad(y, z)
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-18)
    per = torch.nn.functional.poisson_nll_loss(torch.tensor(z), torch.tensor(y), log_input=True,
                                               full=full, reduction="none").numpy()
    np.testing.assert_allclose(fl.PoissonNLL(full=full)(y, z, reduction="none"), per, rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gaussian_equals_torch(rng, full, reduction):
    torch = pytest.importorskip("torch")
    n = 1000
    y = rng.standard_normal(n)
    x = np.stack([y + rng.standard_normal(n), rng.uniform(-3, 3, n)], axis=-1)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.gaussian_nll_loss(xt[:, 0], torch.tensor(y), torch.exp(xt[:, 1]),
                                                full=full, reduction=reduction)
    ref.backward()
    value, grad = fl.GaussianNLL(full=full).value_and_grad(y, x, reduction=reduction)
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_gaussian_differs_from_torch_only_below_its_eps():
    """PyTorch clamps var at eps = 1e-6 in the value; the log-variance needs no clamp."""
    torch = pytest.importorskip("torch")
    y, x = np.array([0.0]), np.array([[1e-4, -20.0]])  # var = exp(-20) = 2.1e-9 < 1e-6
    ref = torch.nn.functional.gaussian_nll_loss(torch.tensor(x[:, 0]), torch.tensor(y),
                                                torch.exp(torch.tensor(x[:, 1]))).item()
    exact = 0.5 * (-20.0 + 1e-8 * math.exp(20.0))
    assert fl.GaussianNLL()(y, x) == pytest.approx(exact, rel=1e-12)
    assert ref == pytest.approx(0.5 * (math.log(1e-6) + 1e-8 / 1e-6), rel=1e-12)


# ---- independent reference: dtypes, ISAs, weights, reductions --------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind,p,full", ELEMENTWISE, ids=EW_IDS)
def test_values_and_derivatives_vs_reference(isa, rng, kind, p, full, dtype):
    loss, ref = _loss_and_ref(kind, p, full)
    y64, z64 = _data(kind, 1500, rng, p)
    y, z = y64.astype(dtype), z64.astype(dtype)
    w = rng.uniform(0, 2, y.size)
    w[::7] = 0
    # the reference at the rounded inputs: what the kernel is asked to compute
    l_ref, g_ref, h_ref = ref(y.astype(np.float64), z.astype(np.float64))
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    pp = 1.0 if p is None else p
    yf, zf = y.astype(np.float64), z.astype(np.float64)
    e1, e2 = np.abs(yf) * np.exp((1 - pp) * zf), np.exp((2 - pp) * zf)
    # float32 rounds (1-p) z and (2-p) z before exp: an absolute error of |z| eps in the exponent
    amp = 1 + (np.abs(zf) * max(abs(1 - pp), abs(2 - pp)) if dtype == np.float32 else 0)
    scale_l = (e1 / max(abs(1 - pp), 1e-3) + e2 + np.abs(zf) * (1 + np.abs(yf)) + yf * yf
               + (np.abs(yf * np.log(np.maximum(yf, 1))) + yf + 1 if full else 0)) * amp
    scale_g = (e1 + e2 + 1) * amp
    scale_h = (e1 + e2) * (abs(1 - pp) + abs(2 - pp) + 1) * amp
    for reduction in ("mean", "sum", "none"):
        v, g, h = loss.value_grad_hess(y, z, sample_weight=w, reduction=reduction)
        assert g.dtype == dtype and h.dtype == dtype
        c = w / w.sum() if reduction == "mean" else w
        if reduction == "none":
            _close_terms(v, w * l_ref, w * scale_l, rtol)
        else:
            assert abs(v - np.sum(c * l_ref)) <= rtol * np.sum(c * scale_l)
        _close_terms(g, c * g_ref, c * scale_g, rtol)
        _close_terms(h, c * h_ref, c * scale_h, rtol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_vs_reference(isa, rng, dtype, full):
    n = 777
    y = rng.standard_normal(n).astype(dtype)
    x = np.stack([y + rng.standard_normal(n), rng.uniform(-4, 4, n)], axis=-1).astype(dtype)
    w = rng.uniform(0, 2, n)
    l_ref, g_ref, h_ref = ref_gaussian(y, x, full)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for reduction in ("mean", "sum", "none"):
        v, g, h = fl.GaussianNLL(full=full).value_grad_hess(y, x, sample_weight=w,
                                                            reduction=reduction)
        c = (w / w.sum() if reduction == "mean" else w)[:, None]
        scale = np.abs(g_ref) + np.abs(h_ref) + 1
        _close_terms(g, c * g_ref, c * scale, rtol)
        _close_terms(h, c * h_ref, c * scale, rtol)
        if reduction == "none":
            np.testing.assert_allclose(v, w * l_ref, rtol=rtol, atol=rtol * 10)
        else:
            expected = np.sum(c[:, 0] * l_ref)
            assert v == pytest.approx(expected, rel=rtol * 10, abs=rtol)


def test_float32_close_to_float64(rng):
    """float32 results track the float64 ones to float32 accuracy on typical data."""
    for loss, kind, p in [(fl.PoissonNLL(), "poisson", None), (fl.GammaNLL(), "gamma", None),
                          (fl.TweedieNLL(power=1.5), "tweedie", 1.5)]:
        y, z = _data(kind, 10_000, rng, p)
        y32, z32 = y.astype(np.float32), z.astype(np.float32)
        v32, g32, h32 = loss.value_grad_hess(y32, z32, reduction="sum")
        v64, g64, h64 = loss.value_grad_hess(y32.astype(np.float64), z32.astype(np.float64),
                                             reduction="sum")
        terms = np.abs(np.exp(z)) + np.abs(y * z) + np.abs(z) + y  # what each value is made of
        assert abs(v32 - v64) <= 1e-6 * np.sum(terms)
        np.testing.assert_allclose(loss(y32, z32, reduction="none"),
                                   loss(y32.astype(np.float64), z32.astype(np.float64),
                                        reduction="none"), rtol=0, atol=1e-6 * np.max(terms))
        np.testing.assert_allclose(h32, h64, rtol=5e-6)
        np.testing.assert_allclose(g32, g64, rtol=5e-6, atol=5e-6 * np.max(np.abs(h64)))


# ---- finite differences ----------------------------------------------------------------------

def _fd(f, z, h=1e-5):
    """Central differences of f (elementwise) at z: first and second derivative."""
    fp, fm, f0 = f(z + h), f(z - h), f(z)
    return (fp - fm) / (2 * h), (fp - 2 * f0 + fm) / (h * h)


@pytest.mark.parametrize("kind,p,full", ELEMENTWISE, ids=EW_IDS)
def test_finite_differences(rng, kind, p, full):
    loss, ref = _loss_and_ref(kind, p, full)
    y, z = _data(kind, 40, rng, p)
    g, h = loss.grad_hess(y, z, reduction="none")
    fd_g, fd_h = _fd(lambda t: ref(y, t)[0], z)
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h, fd_h, rtol=1e-3, atol=1e-3)
    # and finite differences of fastloss itself (value -> gradient, gradient -> Hessian)
    fd_g2, fd_h2 = fd_grad_hess(loss, y, z, None, "sum", np.full(z.size, 1e-6))
    np.testing.assert_allclose(g, fd_g2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h, fd_h2, rtol=1e-5, atol=1e-5)


def test_gaussian_finite_differences(rng):
    n = 30
    y = rng.standard_normal(n)
    x = np.stack([y + rng.standard_normal(n), rng.uniform(-2, 2, n)], axis=-1)
    loss = fl.GaussianNLL()
    g, h = loss.grad_hess(y, x, reduction="sum")
    eps = 1e-5
    for j in range(2):
        d = np.zeros_like(x)
        d[:, j] = eps
        lp = loss(y, x + d, reduction="none")
        lm = loss(y, x - d, reduction="none")
        l0 = loss(y, x, reduction="none")
        np.testing.assert_allclose(g[:, j], (lp - lm) / (2 * eps), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(h[:, j], (lp - 2 * l0 + lm) / eps**2, rtol=1e-3, atol=1e-4)


# ---- labels, parameters, buffers, layouts ----------------------------------------------------

@pytest.mark.parametrize("loss,bad,index", [
    (fl.PoissonNLL(), -1.0, 3), (fl.PoissonNLL(), np.nan, 0), (fl.PoissonNLL(), np.inf, 5),
    (fl.GammaNLL(), 0.0, 2), (fl.GammaNLL(), -2.0, 4),
    (fl.TweedieNLL(power=1.5), -0.5, 1), (fl.TweedieNLL(power=2.5), 0.0, 5),
    (fl.TweedieNLL(power=0.0), np.inf, 3), (fl.TweedieNLL(power=-1.0), np.nan, 2),
])
def test_labels_outside_the_support(loss, bad, index):
    y = np.full(6, 2.0)
    y[index] = bad
    if index + 1 < y.size:
        y[index + 1] = bad  # the first one is named
    z = np.zeros(6)
    g_buf, h_buf = np.full(6, 7.0), np.full(6, 7.0)
    with pytest.raises(ValueError, match=rf"y_true\[{index}\] = {bad!r}") as err:
        loss.grad_hess(y, z, grad_out=g_buf, hess_out=h_buf)
    assert "y_true must hold" in str(err.value) and "finite, in" in str(err.value)
    np.testing.assert_array_equal(g_buf, 7.0)
    np.testing.assert_array_equal(h_buf, 7.0)
    with pytest.raises(ValueError, match="y_true"):
        loss(y.astype(np.float32), z.astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf, -np.inf, -0.0])
def test_bad_label_found_anywhere(dtype, bad):
    """The first bad label of a large array (many blocks, several threads), contiguous or
    strided, float32 or float64; -0.0 is 0: a count, not a positive amount."""
    n = 50_000
    for where in (0, 1023, 1024, 33_333, n - 1):
        y = np.full(n, 3.0, dtype)
        y[where] = bad
        y[-1] = bad if where == n - 1 else -5.0  # a later bad label is not the one reported
        for labels in (y, np.repeat(y, 2)[::2]):
            with fl.num_threads(2):
                with pytest.raises(ValueError, match=rf"y_true\[{where}\] = "):
                    fl.GammaNLL()(labels, np.zeros(n, dtype))
                if bad != -0.0:
                    with pytest.raises(ValueError, match=rf"y_true\[{where}\] = "):
                        fl.PoissonNLL()(labels, np.zeros(n, dtype))
    ok = np.full(n, 3.0, dtype)
    ok[7] = -0.0
    assert np.isfinite(fl.PoissonNLL()(ok, np.zeros(n, dtype)))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_labels_checked_in_the_kernel_pass(dtype):
    """Without caller buffers the kernel checks the labels as it goes (a bad one makes the value
    NaN, then the first is named); a NaN prediction with good labels is a NaN value, no error."""
    n = 30_000
    y = np.full(n, 2.0, dtype)
    y[[777, 20_000]] = -1.0
    z = np.zeros(n, dtype)
    for loss in (fl.PoissonNLL(), fl.GammaNLL(), fl.TweedieNLL(power=1.5), fl.TweedieNLL(power=3.0)):
        for call in (lambda: loss.grad_hess(y, z), lambda: loss.value_and_grad(y, z),
                     lambda: loss(y, z, reduction="sum")):
            with fl.num_threads(2), pytest.raises(ValueError, match=r"y_true\[777\] = -1.0"):
                call()
        zn = z.copy()
        zn[5] = np.nan
        value, grad = loss.value_and_grad(np.full(n, 2.0, dtype), zn)
        assert np.isnan(value) and np.isnan(grad[5]) and np.isfinite(np.delete(grad, 5)).all()
    # p <= 0 accepts any finite label, and still rejects infinities in the same pass
    yn = np.full(n, -4.0, dtype)
    assert np.isfinite(fl.TweedieNLL(power=-1.0)(yn, z))
    yn[9] = -np.inf
    with pytest.raises(ValueError, match=r"y_true\[9\] = -inf"):
        fl.TweedieNLL(power=-1.0).grad_hess(yn, z)


def test_label_boundaries_accepted():
    z = np.zeros(3)
    fl.PoissonNLL()(np.array([0, 1, 5]), z)  # integer counts, zero included
    fl.TweedieNLL(power=1.0)(np.array([0.0, 0.5, 2.0]), z)
    fl.TweedieNLL(power=1.5)(np.array([0.0, 0.5, 2.0]), z)
    fl.TweedieNLL(power=0.0)(np.array([-3.0, 0.0, 2.0]), z)
    fl.TweedieNLL(power=-1.0)(np.array([-3.0, 0.0, 2.0]), z)
    with pytest.raises(ValueError, match=r"y_true\[1, 0\] = -1"):
        fl.PoissonNLL()(np.array([[0, 1], [-1, 2]]), np.zeros((2, 2)))


@pytest.mark.parametrize("power", [0.5, 0.01, 0.999, math.nan, math.inf])
def test_tweedie_power_rejected(power):
    with pytest.raises(ValueError, match="power"):
        fl.TweedieNLL(power=power)
    with pytest.raises(TypeError, match="power"):
        fl.TweedieNLL(power="1.5")


def test_tweedie_special_powers_are_poisson_and_gamma(rng):
    y, z = _data("gamma", 300, rng)
    for p, other in [(1.0, fl.PoissonNLL()), (2.0, fl.GammaNLL())]:
        a = fl.TweedieNLL(power=p).value_grad_hess(y, z, reduction="none")
        b = other.value_grad_hess(y, z, reduction="none")
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_weights_equal_repetition(rng):
    y, z = _data("poisson", 50, rng)
    k = rng.integers(0, 4, 50)
    loss = fl.TweedieNLL(power=1.3)
    v, g = loss.value_and_grad(y, z, sample_weight=k.astype(float))
    v2 = loss(np.repeat(y, k), np.repeat(z, k))
    assert v == pytest.approx(v2, rel=1e-13)
    _, g_sum = loss.value_and_grad(y, z, sample_weight=k.astype(float), reduction="sum")
    np.testing.assert_allclose(g * k.sum(), g_sum, rtol=1e-13)


def test_strided_and_broadcast_inputs(rng):
    y, z = _data("gamma", 400, rng)
    yw, zw = np.repeat(y, 3)[::3], np.repeat(z, 2)[::2]
    for loss in (fl.GammaNLL(), fl.PoissonNLL(full=True), fl.TweedieNLL(power=3.0)):
        a = loss.value_grad_hess(y, z, reduction="none")
        b = loss.value_grad_hess(yw, zw, reduction="none")
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    # Gaussian on a non-contiguous (n, 2) view and strided labels
    x = np.stack([y, np.log(y)], axis=1)
    xw = np.asfortranarray(x)
    for u, v in zip(fl.GaussianNLL().value_grad_hess(y, x, reduction="none"),
                    fl.GaussianNLL().value_grad_hess(yw, xw, reduction="none")):
        np.testing.assert_array_equal(u, v)


def test_gaussian_shapes_and_errors(rng):
    y = rng.standard_normal((3, 4))
    x = rng.standard_normal((3, 4, 2))
    v, g = fl.GaussianNLL().value_and_grad(y, x, reduction="none")
    assert v.shape == (3, 4) and g.shape == (3, 4, 2)
    with pytest.raises(ValueError, match="size 2"):
        fl.GaussianNLL()(y[:, :2], x[:, :3].reshape(3, 2, 3))
    with pytest.raises(ValueError, match="y_true must have the shape"):
        fl.GaussianNLL()(y[:, :3], x)
    with pytest.raises(ValueError, match="sample_weight"):
        fl.GaussianNLL()(y, x, sample_weight=np.ones(5))


def _signed_exp_sum(terms):
    """sum(sign * exp(log)) over ``terms`` = [(log, sign), ...] without overflowing a term:
    exp(M) * sum(sign * exp(log - M)) is formed as sign(S) exp(M + log|S|), so it is infinite only
    where the sum itself overflows (a float64 reference for the limits of the exponential
    losses, no extended precision needed). Returns the sum and the terms' size sum(exp(log))."""
    logs = np.stack([np.broadcast_to(t[0], np.shape(terms[0][0])) for t in terms])
    signs = np.stack([np.broadcast_to(t[1], logs.shape[1:]) for t in terms])
    m = np.max(logs, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)  # every term 0 (log -inf): the sum is 0
    w = np.exp(logs - m)
    total, size = np.sum(signs * w, axis=0), np.sum(w, axis=0)
    with np.errstate(divide="ignore", over="ignore"):
        return (np.sign(total) * np.exp(m + np.log(np.abs(total))),
                np.exp(m + np.log(size)))


def ref_tweedie_log_space(y, z, p):
    """(l, g, h) of ref_tweedie, each term exp(b z), y exp(a z) (a = 1-p, b = 2-p) and c y^2 kept
    as a logarithm and a sign; with the terms' sizes."""
    a, b, c = 1.0 - p, 2.0 - p, 0.5 if p == 0 else 0.0
    with np.errstate(divide="ignore"):
        ly = np.log(np.abs(y))  # y = 0: -inf, the term is 0
        lc = np.log(c * y * y) if c else np.full_like(z, -np.inf)
    sy = np.sign(y)
    l = _signed_exp_sum([(b * z - math.log(abs(b)), np.sign(b)),
                         (ly + a * z - math.log(abs(a)), -np.sign(a) * sy), (lc, 1.0)])
    g = _signed_exp_sum([(b * z, 1.0), (ly + a * z, -sy)])
    h = _signed_exp_sum([(math.log(abs(b)) + b * z, np.sign(b)),
                         (math.log(abs(a)) + ly + a * z, -np.sign(a) * sy)])
    return l, g, h


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("p", [-2.0, -1.0, -0.5, 0.0, 1.3, 1.5, 1.9, 2.5, 3.0, 4.0])
def test_tweedie_over_the_whole_range(isa, p, dtype):
    """Over z far into both exponentials' overflow and underflow, every result is the value of a
    log-space reference rounded to the dtype: infinite where the true value overflows (p <= 0 as
    z -> +inf: l, g, h -> +inf; p > 2 as z -> -inf: l, h -> +inf, g -> -inf, where
    exp((2-p) z) - y exp((1-p) z) would be inf - inf), never NaN, and finite values within the
    rounding of (1-p) z and (2-p) z of the terms' size (and of an exponential's underflow).
    p = 0, 1.5 and 3 take one exponential."""
    a, b = 1.0 - p, 2.0 - p
    zmax = 1500.0 if dtype == np.float64 else 200.0
    z = np.linspace(-zmax, zmax, 6001).astype(dtype)
    # (a label far below 1 times an exponential that overflows gives inf where y exp(a z) is
    # finite: the kernel does not form exp(log y + a z))
    labels = [2.0, 0.5, 7e20] + ([0.0] if p < 2 else []) + ([-3.0] if p <= 0 else [])
    eps = np.finfo(dtype).eps
    k_max = max(abs(a), abs(b), 1 / abs(a), 1 / abs(b), 2)
    for yv in labels:
        y = np.full_like(z, yv)
        got = fl.TweedieNLL(power=p).value_grad_hess(y, z, reduction="none")
        zf, yf = z.astype(np.float64), y.astype(np.float64)
        # the rounding of the exponents (the reference's too: exp(log y + (1-p) z))
        tol = 8 * eps * (1 + np.abs(zf) * (abs(a) + abs(b) + 1) + abs(math.log(abs(yv) or 1.0)))
        for name, r, (ref, size) in zip("lgh", got, ref_tweedie_log_space(yf, zf, p)):
            with np.errstate(over="ignore"):
                ref, size = ref.astype(dtype), size.astype(dtype)
            assert not np.isnan(r).any(), (name, yv, z[np.isnan(r)][:5])
            inf = np.isinf(ref)
            np.testing.assert_array_equal(r[inf], ref[inf], err_msg=f"{name}, y = {yv}")
            # an exponential may overflow first where its coefficient (a, b, 1/a, 1/b, y) brings
            # the result back just below the largest float
            near = np.isinf(r) & ~inf & (np.abs(ref.astype(np.float64))
                                         >= np.finfo(dtype).max / k_max * min(abs(yv) or 1, 1))
            assert np.all(np.sign(r[near]) == np.sign(ref[near]))
            inf |= near
            # an exponential that underflows is off by up to half the smallest subnormal
            floor = 4 * np.finfo(dtype).smallest_subnormal * (1 + abs(yv)) * (abs(a) + abs(b) + 1)
            ok = ~inf & np.isfinite(size)
            err = np.abs(r[ok].astype(np.float64) - ref[ok].astype(np.float64))
            bound = tol[ok] * size[ok].astype(np.float64) + floor
            assert np.all(err <= bound), (name, yv, np.max(err / bound))
    # the limits named above, where both exponentials overflow
    big = np.array([-1400.0, 1400.0], dtype)
    v, g, h = fl.TweedieNLL(power=p).value_grad_hess(np.full(2, 2.0, dtype), big, reduction="none")
    if p <= 0:
        assert v[1] == g[1] == h[1] == np.inf
    if p > 2:
        assert v[0] == h[0] == np.inf and g[0] == -np.inf


def test_tweedie_log_space_reference_matches_the_formula(rng):
    """The log-space reference is ref_tweedie where nothing overflows."""
    z = rng.uniform(-5, 5, 200)
    for p in (-1.0, 0.0, 1.5, 2.5, 3.0):
        y = rng.uniform(0.1, 3, 200) * (1 if p > 0 else rng.choice([-1, 0, 1], 200))
        for (r, _), x in zip(ref_tweedie_log_space(y, z, p), ref_tweedie(y, z, p)):
            np.testing.assert_allclose(r, x, rtol=1e-12, atol=1e-12 * np.max(np.abs(x)))


def test_extremes_stay_finite_where_the_math_is():
    z = np.array([-800.0, 0.0, 50.0])
    y0 = np.zeros(3)
    v, g, h = fl.PoissonNLL().value_grad_hess(y0, z, reduction="none")
    np.testing.assert_allclose(v, np.exp(z))  # y = 0: no 0 * inf
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    v = fl.TweedieNLL(power=1.5)(y0, np.array([-2000.0, 0.0, 1.0]), reduction="none")
    assert np.all(np.isfinite(v))
    assert np.isnan(fl.PoissonNLL()(np.ones(2), np.array([np.nan, 0.0])))


def test_registry_and_functional(rng):
    names = {i.name: i for i in fl.losses("likelihood")}
    assert set(names) == {"poisson_nll", "gamma_nll", "tweedie_nll", "gaussian_nll"}
    assert names["tweedie_nll"].params == {"power": 1.5}
    y, z = _data("poisson", 20, rng)
    assert fl.poisson_nll(y, z, full=True) == fl.PoissonNLL(full=True)(y, z)
    assert fl.tweedie_nll(y, z, power=1.2, reduction="sum") == fl.TweedieNLL(power=1.2)(
        y, z, reduction="sum")
    assert fl.get_loss("GammaNLL") == fl.GammaNLL()


# ---- gradient boosting -----------------------------------------------------------------------

@pytest.mark.parametrize("loss,builtin", [
    (fl.PoissonNLL(), {"objective": "count:poisson"}),
    (fl.GammaNLL(), {"objective": "reg:gamma"}),
    (fl.TweedieNLL(power=1.5), {"objective": "reg:tweedie", "tweedie_variance_power": 1.5}),
], ids=["poisson", "gamma", "tweedie"])
def test_xgboost_objective_matches_builtin(rng, loss, builtin):
    """The fastloss objective grows XGBoost's own trees: count:poisson multiplies its Hessian by
    exp(max_delta_step) (0.7 by default) and clips the leaves at it, so both runs set
    max_delta_step=0; both start from the margin log(mean(y))."""
    xgb = pytest.importorskip("xgboost")
    fx = pytest.importorskip("fastloss.xgboost")
    X = rng.standard_normal((2000, 5))
    mu = np.exp(0.3 + 0.5 * X[:, 0] - 0.4 * X[:, 1])
    y = rng.poisson(mu).astype(float) if builtin["objective"] != "reg:gamma" else rng.gamma(2, mu / 2)
    w = rng.uniform(0.5, 2, y.size)
    d = xgb.DMatrix(X, label=y, weight=w)
    params = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "nthread": 1,
              "max_delta_step": 0.0}
    start = float(np.average(y, weights=w))
    ours = xgb.train(dict(params, base_score=math.log(start)), d, 10, obj=fx.Objective(loss))
    theirs = xgb.train(dict(params, base_score=start, **builtin), d, 10)
    dx = xgb.DMatrix(X)
    m_ours = ours.predict(dx, output_margin=True)
    m_theirs = theirs.predict(dx, output_margin=True)
    # float32 margins and Hessian sums accumulated in another order: agreement to ~1e-5
    np.testing.assert_allclose(m_ours, m_theirs, rtol=2e-5, atol=2e-5)
    assert np.std(m_ours) > 0.1  # the trees learned something


def test_lightgbm_objective_matches_builtin_poisson(rng):
    """LightGBM's poisson objective multiplies its Hessian by exp(poisson_max_delta_step) (0.7 by
    default, and it must be > 0): at 1e-12 it grows the same trees as the fastloss objective
    started from the same score log(mean(y)) (LightGBM's boost_from_average)."""
    lgb = pytest.importorskip("lightgbm")
    flgb = pytest.importorskip("fastloss.lightgbm")
    X = rng.standard_normal((2000, 5))
    y = rng.poisson(np.exp(0.3 + 0.5 * X[:, 0] - 0.4 * X[:, 1])).astype(float)
    params = {"num_leaves": 8, "learning_rate": 0.3, "verbose": -1, "num_threads": 1,
              "deterministic": True, "poisson_max_delta_step": 1e-12}
    init = flgb.init_score(fl.PoissonNLL(), y)
    assert init == pytest.approx(math.log(y.mean()), abs=1e-6)
    ours = lgb.train(dict(params, objective=flgb.Objective(fl.PoissonNLL())),
                     lgb.Dataset(X, label=y, init_score=np.full(len(y), init)), 10)
    builtin = lgb.train(dict(params, objective="poisson"), lgb.Dataset(X, label=y), 10)
    np.testing.assert_allclose(ours.predict(X) + init, builtin.predict(X, raw_score=True),
                               rtol=1e-5, atol=1e-5)
