"""L1, L2 and elastic-net regularizers: values, (sub)gradients, proximal operators (closed form
and numerical argmin), parameter structures, the regularized data loss, errors."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl


def _theta(rng, dtype=np.float64):
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]


REGS = [fl.L1(0.3), fl.L2(0.7), fl.ElasticNet(l1=0.2, l2=0.4), fl.ElasticNet()]


@pytest.mark.parametrize("reg", REGS, ids=repr)
def test_value_and_grad_vs_formula(rng, reg):
    theta = _theta(rng)
    flat = np.concatenate([a.ravel() for a in theta])
    assert reg(theta) == pytest.approx(reg.l1 * np.abs(flat).sum() + reg.l2 * (flat ** 2).sum(), rel=1e-14)
    grads = reg.grad(theta)
    assert isinstance(grads, list) and [g.shape for g in grads] == [a.shape for a in theta]
    for a, g in zip(theta, grads):
        np.testing.assert_allclose(g, reg.l1 * np.sign(a) + 2 * reg.l2 * a, rtol=1e-15)


@pytest.mark.parametrize("reg", REGS[:3], ids=repr)
def test_grad_finite_differences(rng, reg):
    a = rng.standard_normal(20)
    a[np.abs(a) < 0.05] = 0.5  # away from the kink of |x|
    g = reg.grad(a)
    h = 1e-6
    fd = np.array([(reg(a + h * e) - reg(a - h * e)) / (2 * h) for e in np.eye(20)])
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)


def test_l1_subgradient_at_zero_is_zero():
    np.testing.assert_array_equal(fl.L1(2.0).grad(np.array([0.0, -0.0, 1.0])), [0.0, 0.0, 2.0])


@pytest.mark.parametrize("step", [0.1, 1.0, 3.0])
@pytest.mark.parametrize("reg", REGS, ids=repr)
def test_prox_closed_form(rng, reg, step):
    v = 2 * rng.standard_normal(50)
    x = reg.prox(v, step=step)
    expected = np.sign(v) * np.maximum(np.abs(v) - step * reg.l1, 0) / (1 + 2 * step * reg.l2)
    np.testing.assert_allclose(x, expected, rtol=1e-15, atol=0)
    assert not np.any(np.signbit(x) & (x == 0)), "no negative zeros"


@pytest.mark.parametrize("reg", REGS[:3], ids=repr)
def test_prox_is_the_argmin(reg):
    # prox_{t R}(v) = argmin_x t R(x) + (x - v)^2 / 2, found numerically per element.
    optimize = pytest.importorskip("scipy.optimize")
    step = 0.8
    for v in (-2.0, -0.1, 0.0, 0.15, 0.9, 3.0):
        res = optimize.minimize_scalar(lambda x: step * reg(np.array([x])) + 0.5 * (x - v) ** 2,
                                       bounds=(-5, 5), method="bounded",
                                       options={"xatol": 1e-12})
        assert reg.prox(np.array([v]), step=step)[0] == pytest.approx(res.x, abs=1e-7)


def test_structures_and_dtypes(rng):
    reg = fl.ElasticNet(l1=0.1, l2=0.2)
    d = {"w": rng.standard_normal((2, 2)).astype(np.float32), "b": np.array([1, -2])}
    g = reg.grad(d)
    assert set(g) == {"w", "b"} and g["w"].dtype == np.float32 and g["b"].dtype == np.float64
    x = reg.prox(d, step=0.5)
    assert set(x) == {"w", "b"} and x["w"].dtype == np.float32
    t = tuple(_theta(rng))
    assert isinstance(reg.grad(t), tuple) and isinstance(reg.prox(t), tuple)
    single = rng.standard_normal(7)
    assert isinstance(reg.grad(single), np.ndarray)
    assert reg(t) == pytest.approx(reg(list(t)), rel=0)
    v, gg = reg.value_and_grad(single)
    assert v == reg(single) and np.array_equal(gg, reg.grad(single))
    # the input is never modified
    before = single.copy()
    reg.prox(single)
    reg.grad(single)
    np.testing.assert_array_equal(single, before)


def test_regularized_data_loss(rng):
    loss, reg = fl.Huber(delta=0.5), fl.ElasticNet(l1=0.01, l2=0.1)
    obj = fl.Regularized(loss, reg)
    y, p = rng.standard_normal(30), rng.standard_normal(30)
    theta = {"w": rng.standard_normal(4)}
    value, g_pred, g_theta = obj.value_and_grad(y, p, theta)
    assert value == pytest.approx(loss(y, p) + reg(theta), rel=1e-15)
    np.testing.assert_array_equal(g_pred, loss.value_and_grad(y, p)[1])
    np.testing.assert_array_equal(g_theta["w"], reg.grad(theta)["w"])
    assert obj(y, p, theta) == pytest.approx(value, rel=1e-15)
    w = rng.uniform(0, 1, 30)
    assert obj(y, p, theta, sample_weight=w) == pytest.approx(loss(y, p, w) + reg(theta), rel=1e-15)


def test_errors():
    with pytest.raises(ValueError, match="lam must be >= 0"):
        fl.L1(-0.1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        fl.L2(-1)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        fl.ElasticNet(l1=1.0, l2=-1.0)
    with pytest.raises(ValueError, match="finite"):
        fl.ElasticNet(l1=float("nan"))
    with pytest.raises(TypeError, match="real number"):
        fl.L1("0.1")
    with pytest.raises(ValueError, match="step must be > 0"):
        fl.L1(1.0).prox(np.ones(3), step=0.0)
    with pytest.raises(TypeError, match="theta\\[1\\] must be a real numeric array"):
        fl.L2(1.0)([np.ones(2), np.array(["a"])])
    with pytest.raises(TypeError, match="complex"):
        fl.L1(1.0)(np.ones(2, dtype=complex))
    with pytest.raises(TypeError, match="regularizer must be"):
        fl.Regularized(fl.MSE(), 0.1)
    with pytest.raises(ValueError, match="reduction"):
        fl.Regularized(fl.MSE(reduction="none"), fl.L2(0.1))


def test_repr():
    assert repr(fl.L1(0.5)) == "L1(lam=0.5)"
    assert repr(fl.L2(2)) == "L2(lam=2.0)"
    assert repr(fl.ElasticNet(l1=0.1, l2=0.2)) == "ElasticNet(l1=0.1, l2=0.2)"
