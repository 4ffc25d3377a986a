"""Self-paced learning (closed-form weights vs the numerical argmin, the objective, the wrapped
loss's gradient vs finite differences) and curriculum pacing functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl

LOSSES = np.array([0.0, 0.05, 0.3, 0.8, 1.0, 1.2, 1.999, 2.0, 2.5, 7.0])
SETTINGS = [("hard", 2.0, None), ("hard", 0.0, None), ("linear", 2.0, None), ("linear", 0.5, None),
            ("mixture", 2.0, 0.5), ("mixture", 1.0, 0.9)]


@pytest.mark.parametrize("regularizer,lam,gamma", SETTINGS)
def test_weights_are_the_argmin_of_the_objective(regularizer, lam, gamma):
    v = fl.self_paced_weights(LOSSES, lam, regularizer, gamma)
    assert v.shape == LOSSES.shape and np.all((v >= 0) & (v <= 1))
    grid = np.linspace(0.0, 1.0, 201)
    for l, vi in zip(LOSSES, v):
        per_v = [fl.self_paced_objective(np.array([l]), np.array([g]), lam, regularizer, gamma)
                 for g in grid]
        mine = fl.self_paced_objective(np.array([l]), np.array([vi]), lam, regularizer, gamma)
        assert mine <= min(per_v) + 1e-12, (l, vi, grid[int(np.argmin(per_v))])


def test_closed_forms():
    np.testing.assert_array_equal(fl.self_paced_weights(LOSSES, 2.0), (LOSSES < 2.0).astype(float))
    np.testing.assert_allclose(fl.self_paced_weights(LOSSES, 2.0, "linear"),
                               np.clip(1 - LOSSES / 2.0, 0, 1), rtol=1e-15)
    lam, gamma = 2.0, 0.5
    zeta = lam * gamma / (lam - gamma)
    v = fl.self_paced_weights(LOSSES, lam, "mixture", gamma)
    for l, vi in zip(LOSSES, v):
        expected = 1.0 if l <= gamma else 0.0 if l >= lam else zeta / l - zeta / lam
        assert vi == pytest.approx(expected, rel=1e-15)
    # continuity of the mixture weights at both thresholds
    eps = 1e-9
    assert fl.self_paced_weights(np.array([gamma + eps]), lam, "mixture", gamma)[0] == pytest.approx(1.0, abs=1e-8)
    assert fl.self_paced_weights(np.array([lam - eps]), lam, "mixture", gamma)[0] == pytest.approx(0.0, abs=1e-8)


def test_hard_objective_is_the_spec_formula(rng):
    l = rng.uniform(0, 3, 100)
    v = rng.uniform(0, 1, 100)
    assert fl.self_paced_objective(l, v, 1.5) == pytest.approx(float(np.sum(v * l) - 1.5 * np.sum(v)), rel=1e-13)


def test_self_paced_loss_value_weights_and_gradient(rng):
    loss = fl.Huber(delta=1.0)
    sp = fl.SelfPaced(loss, lam=0.4, regularizer="linear")
    y, p = rng.standard_normal(60), rng.standard_normal(60)
    w = rng.uniform(0.5, 2, 60)
    r = sp.evaluate(y, p, w)
    per = loss(y, p, w, reduction="none")
    v = fl.self_paced_weights(per, 0.4, "linear")
    np.testing.assert_array_equal(r.weights, v)
    assert r.value == pytest.approx(fl.self_paced_objective(per, v, 0.4, "linear"), rel=1e-15)
    # envelope theorem: the gradient of min_v objective(p, v) is that of sum v_i l_i at v*
    h = 1e-6
    fd = np.array([(sp.evaluate(y, p + h * e, w).value - sp.evaluate(y, p - h * e, w).value) / (2 * h)
                   for e in np.eye(60)])
    np.testing.assert_allclose(r.grad, fd, rtol=1e-5, atol=1e-8)


def test_self_paced_row_loss_and_broadcast_weights(rng):
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    y, z = rng.integers(0, 4, 30), rng.standard_normal((30, 4))
    r = fl.SelfPaced(ce, lam=1.3).evaluate(y, z)
    assert r.weights.shape == (30,)
    expected = ce.value_and_grad(y, z, r.weights, reduction="sum")[1]
    np.testing.assert_array_equal(r.grad, expected)
    # a weight per row of a (rows, q) elementwise prediction
    q = fl.Quantile(quantile=[0.2, 0.8])
    yq, pq, wq = rng.standard_normal(30), rng.standard_normal((30, 2)), rng.uniform(0, 1, 30)
    rq = fl.SelfPaced(q, lam=0.3).evaluate(yq, pq, wq)
    assert rq.weights.shape == (30, 2)
    np.testing.assert_allclose(rq.grad, q.value_and_grad(yq, pq, rq.weights * wq[:, None],
                                                         reduction="sum")[1], rtol=1e-15)


@pytest.mark.parametrize("pacing", ["linear", "root", "geometric", "step"])
def test_pacing_functions(pacing):
    c0, T = 0.2, 100
    values = [fl.curriculum_fraction(t, T, pacing, start=c0, num_steps=4) for t in range(0, 151)]
    assert values[0] == pytest.approx(c0, rel=1e-15)
    assert values[100] == pytest.approx(1.0, rel=1e-15) and values[150] == 1.0
    assert all(b >= a for a, b in zip(values, values[1:])), "pacing must not decrease"
    u = 0.37
    expected = {"linear": c0 + (1 - c0) * u, "root": math.sqrt(c0 ** 2 + (1 - c0 ** 2) * u),
                "geometric": c0 ** (1 - u), "step": c0 + (1 - c0) * 1 / 4}[pacing]
    assert fl.curriculum_fraction(37, T, pacing, start=c0, num_steps=4) == pytest.approx(expected, rel=1e-14)


def test_step_pacing_jumps():
    fr = [fl.curriculum_fraction(t, 12, "step", start=0.25, num_steps=3) for t in range(13)]
    assert sorted(set(round(f, 12) for f in fr)) == [0.25, 0.5, 0.75, 1.0]


def test_curriculum_indices(rng):
    d = rng.standard_normal(40)
    d[5] = d[6]  # a tie: lower index first
    for fraction in (0.0, 0.1, 0.3, 0.5, 1.0):
        idx = fl.curriculum_indices(d, fraction)
        assert len(idx) == math.ceil(round(fraction * 40, 9))
        assert set(d[idx]) == set(np.sort(d)[:len(idx)])
    assert len(fl.curriculum_indices(np.arange(10.0), 0.3)) == 3
    np.testing.assert_array_equal(fl.curriculum_indices(np.array([1.0, 0.0, 0.0]), 0.5), [1, 2])


def test_errors():
    with pytest.raises(ValueError, match="lam must be >= 0"):
        fl.self_paced_weights(LOSSES, -1.0)
    with pytest.raises(ValueError, match="lam must be > 0"):
        fl.self_paced_weights(LOSSES, 0.0, "linear")
    with pytest.raises(ValueError, match="needs gamma"):
        fl.self_paced_weights(LOSSES, 1.0, "mixture")
    with pytest.raises(ValueError, match="gamma must be < lam"):
        fl.self_paced_weights(LOSSES, 1.0, "mixture", gamma=1.0)
    with pytest.raises(ValueError, match="only used by the mixture"):
        fl.self_paced_weights(LOSSES, 1.0, "hard", gamma=0.5)
    with pytest.raises(ValueError, match="regularizer must be one of"):
        fl.self_paced_weights(LOSSES, 1.0, "soft")
    with pytest.raises(TypeError, match="real numeric array"):
        fl.self_paced_weights(np.array(["a"]), 1.0)
    with pytest.raises(ValueError, match="v must lie in"):
        fl.self_paced_objective(LOSSES, LOSSES, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        fl.self_paced_objective(LOSSES, LOSSES[:3], 1.0)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        fl.SelfPaced(fl.MSE(), lam=-0.1)
    with pytest.raises(TypeError, match="fastloss.Loss"):
        fl.SelfPaced(np.mean, lam=1.0)
    with pytest.raises(ValueError, match="total_steps must be > 0"):
        fl.curriculum_fraction(1, 0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        fl.curriculum_fraction(-1, 10)
    with pytest.raises(ValueError, match="start must lie in"):
        fl.curriculum_fraction(1, 10, start=0.0)
    with pytest.raises(ValueError, match="pacing must be one of"):
        fl.curriculum_fraction(1, 10, "cosine")
    with pytest.raises(ValueError, match="num_steps"):
        fl.curriculum_fraction(1, 10, "step", num_steps=0)
    with pytest.raises(ValueError, match="fraction must lie"):
        fl.curriculum_indices(np.ones(3), 1.5)
    with pytest.raises(ValueError, match="1-D"):
        fl.curriculum_indices(np.ones((3, 2)), 0.5)
