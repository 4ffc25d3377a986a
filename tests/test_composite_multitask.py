"""Multi-task losses: fixed weights and uncertainty weighting (Kendall et al. 2018), against the
formulas, PyTorch autograd and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl


def _tasks():
    return {"depth": fl.Huber(delta=0.5),
            "seg": fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=[1.0, 2.0, 0.5]),
            "edge": fl.BinaryCrossEntropy(from_logits=True, reduction="sum")}


def _data(rng, dtype=np.float64):
    y = {"depth": rng.standard_normal(40), "seg": rng.integers(0, 3, 40),
         "edge": (rng.random(40) < 0.3).astype(np.float64)}
    p = {"depth": rng.standard_normal(40).astype(dtype), "seg": rng.standard_normal((40, 3)).astype(dtype),
         "edge": rng.standard_normal(40).astype(dtype)}
    return y, p


def test_multitask_value_task_values_and_grads(rng):
    tasks, lam = _tasks(), {"depth": 2.0, "seg": 0.25}
    mt = fl.MultiTask(tasks, weights=lam)
    y, p = _data(rng)
    w = {"seg": rng.uniform(0, 2, 40)}
    r = mt.evaluate(y, p, w)
    expected = {n: loss(y[n], p[n], w.get(n)) for n, loss in tasks.items()}
    assert r.task_values == expected
    weights = {"depth": 2.0, "seg": 0.25, "edge": 1.0}
    assert r.value == pytest.approx(sum(weights[n] * expected[n] for n in tasks), rel=1e-14)
    for n, loss in tasks.items():
        np.testing.assert_allclose(r.grads[n], weights[n] * loss.value_and_grad(y[n], p[n], w.get(n))[1],
                                   rtol=1e-15)
        assert r.grads[n].shape == p[n].shape
    assert mt(y, p, w) == r.value
    v, g = mt.value_and_grad(y, p, w)
    assert v == r.value and g.keys() == r.grads.keys()


def test_multitask_finite_differences(rng):
    mt = fl.MultiTask({"a": fl.LogCosh(), "b": fl.CategoricalCrossEntropy(from_logits=True)},
                      weights={"a": 0.7, "b": 3.0})
    t = rng.random((6, 4))
    y = {"a": rng.standard_normal(8), "b": t / t.sum(1, keepdims=True)}
    p = {"a": rng.standard_normal(8), "b": rng.standard_normal((6, 4))}
    _, grads = mt.value_and_grad(y, p)
    h = 1e-6
    for name in p:
        fd = np.zeros_like(p[name])
        for i in np.ndindex(p[name].shape):
            up = {k: v.copy() for k, v in p.items()}
            dn = {k: v.copy() for k, v in p.items()}
            up[name][i] += h
            dn[name][i] -= h
            fd[i] = (mt(y, up) - mt(y, dn)) / (2 * h)
        np.testing.assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-9)


def test_multitask_float32_grads_keep_dtype(rng):
    mt = fl.MultiTask(_tasks(), weights={"seg": 0.5})
    y, p = _data(rng, np.float32)
    _, g = mt.value_and_grad(y, p)
    assert all(g[n].dtype == np.float32 for n in g)


def test_uncertainty_weighting_formula_and_spec_form(rng):
    tasks = _tasks()
    uw = fl.UncertaintyWeighting(tasks)
    y, p = _data(rng)
    s = np.array([0.3, -1.2, 2.0])
    r = uw.evaluate(y, p, s)
    L = np.array([tasks[n](y[n], p[n]) for n in tasks])
    assert r.value == pytest.approx(float(np.sum(0.5 * np.exp(-s) * L + 0.5 * s)), rel=1e-14)
    sigma = np.exp(s / 2)  # the spec's form: sum L / (2 sigma^2) + log sigma
    assert r.value == pytest.approx(float(np.sum(L / (2 * sigma ** 2) + np.log(sigma))), rel=1e-13)
    np.testing.assert_allclose(r.grad_log_vars, 0.5 - 0.5 * np.exp(-s) * L, rtol=1e-14)
    for i, n in enumerate(tasks):
        np.testing.assert_allclose(r.grads[n], 0.5 * np.exp(-s[i]) * tasks[n].value_and_grad(y[n], p[n])[1],
                                   rtol=1e-15)
    # a mapping gives the same as the sequence in task order
    assert uw(y, p, dict(zip(tasks, s))) == r.value
    # the optimum of s_t is log L_t: zero gradient there
    np.testing.assert_allclose(uw.evaluate(y, p, np.log(L)).grad_log_vars, 0.0, atol=1e-15)


def test_uncertainty_weighting_finite_differences_in_s(rng):
    uw = fl.UncertaintyWeighting(_tasks())
    y, p = _data(rng)
    s = np.array([0.1, 0.5, -0.4])
    g = uw.value_and_grad(y, p, s)[2]
    h = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * h
        assert g[i] == pytest.approx((uw(y, p, s + e) - uw(y, p, s - e)) / (2 * h), rel=1e-7)


def test_uncertainty_weighting_vs_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tasks = {"reg": fl.MSE(), "cls": fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=[1.0, 3.0, 0.5, 1.0])}
    uw = fl.UncertaintyWeighting(tasks)
    y = {"reg": rng.standard_normal(50), "cls": rng.integers(0, 4, 50)}
    p = {"reg": rng.standard_normal(50), "cls": rng.standard_normal((50, 4))}
    s = np.array([-0.7, 0.9])
    value, grads, grad_s = uw.value_and_grad(y, p, s)

    ts = torch.tensor(s, requires_grad=True)
    reg = torch.tensor(p["reg"], requires_grad=True)
    cls = torch.tensor(p["cls"], requires_grad=True)
    l_reg = F.mse_loss(reg, torch.tensor(y["reg"]))
    l_cls = F.cross_entropy(cls, torch.tensor(y["cls"]), weight=torch.tensor([1.0, 3.0, 0.5, 1.0], dtype=torch.float64))
    total = sum(0.5 * torch.exp(-ts[i]) * l + 0.5 * ts[i] for i, l in enumerate((l_reg, l_cls)))
    total.backward()
    assert value == pytest.approx(total.item(), rel=1e-13)
    np.testing.assert_allclose(grad_s, ts.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["reg"], reg.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads["cls"], cls.grad.numpy(), rtol=1e-12, atol=1e-17)


def test_determinism(rng):
    mt = fl.MultiTask({"a": fl.MSE(), "b": fl.SparseCategoricalCrossEntropy(from_logits=True)})
    y = {"a": rng.standard_normal(300_000), "b": rng.integers(0, 4, 100_000)}
    p = {"a": rng.standard_normal(300_000), "b": rng.standard_normal((100_000, 4))}
    out = []
    for threads in (1, 2):
        with fl.num_threads(threads):
            v, g = mt.value_and_grad(y, p)
            out.append((v, g["a"].tobytes(), g["b"].tobytes()))
    assert out[0] == out[1]


def test_errors(rng):
    tasks = _tasks()
    y, p = _data(rng)
    with pytest.raises(ValueError, match="weights\\['seg'\\] must be >= 0"):
        fl.MultiTask(tasks, weights={"seg": -1.0})
    with pytest.raises(ValueError, match="weights does not match.*unexpected \\['sge'\\]"):
        fl.MultiTask(tasks, weights={"sge": 1.0})
    with pytest.raises(ValueError, match="non-empty"):
        fl.MultiTask({})
    with pytest.raises(TypeError, match="task 'x' must be a fastloss.Loss"):
        fl.MultiTask({"x": np.mean})
    with pytest.raises(ValueError, match="task 'x' must have reduction"):
        fl.UncertaintyWeighting({"x": fl.MSE(reduction="none")})
    mt = fl.MultiTask(tasks)
    bad = dict(p)
    del bad["edge"]
    with pytest.raises(ValueError, match="y_pred does not match.*missing \\['edge'\\]"):
        mt(y, bad)
    with pytest.raises(ValueError, match="y_true does not match.*unexpected \\['extra'\\]"):
        mt({**y, "extra": y["depth"]}, p)
    with pytest.raises(TypeError, match="mapping"):
        mt(list(y.values()), p)
    with pytest.raises(ValueError, match="sample_weight does not match"):
        mt(y, p, {"nope": np.ones(40)})
    with pytest.raises(ValueError, match="shape"):  # the task's own shape check
        mt(y, {**p, "depth": p["depth"][:10]})
    uw = fl.UncertaintyWeighting(tasks)
    with pytest.raises(ValueError, match="one value per task \\(3"):
        uw(y, p, [0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        uw(y, p, [0.0, math.inf, 0.0])
    with pytest.raises(ValueError, match="log_vars does not match"):
        uw(y, p, {"depth": 0.0})


# Composites take any registered loss: several inputs (a tuple prediction), keyword inputs.

def _any_loss_tasks(rng, n=32, d=6, k=4):
    labels = rng.integers(0, k, n)
    x1, x2 = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    similar = rng.integers(0, 2, n)
    logits, teacher = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    centers = rng.standard_normal((k, d))
    tasks = {"pairs": fl.Contrastive(margin=2.0), "center": fl.CenterLoss(),
             "kd": fl.Distillation(alpha=0.3, temperature=2.0)}
    y = {"pairs": similar, "center": labels, "kd": labels}
    p = {"pairs": (x1, x2), "center": (x1, centers), "kd": logits}
    inputs = {"kd": {"teacher_logits": teacher}}
    w = {"pairs": rng.uniform(0, 2, n)}
    separate = {
        "pairs": tasks["pairs"].value_and_grad(similar, x1, x2, sample_weight=w["pairs"]),
        "center": tasks["center"].value_and_grad(labels, x1, centers),
        "kd": tasks["kd"].value_and_grad(labels, logits, teacher_logits=teacher),
    }
    return tasks, y, p, inputs, w, separate


def _grads_equal(a, b, scale):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, scale * y, rtol=1e-15)


def test_multitask_takes_losses_with_several_and_keyword_inputs(rng):
    tasks, y, p, inputs, w, separate = _any_loss_tasks(rng)
    lam = {"pairs": 0.5, "center": 0.01, "kd": 1.0}
    r = fl.MultiTask(tasks, weights=lam).evaluate(y, p, w, inputs=inputs)
    assert r.value == pytest.approx(sum(lam[n] * separate[n][0] for n in tasks), rel=1e-14)
    for n in tasks:
        assert r.task_values[n] == separate[n][0]
        _grads_equal(r.grads[n], separate[n][1], lam[n])
    assert isinstance(r.grads["pairs"], tuple) and isinstance(r.grads["kd"], np.ndarray)
    assert fl.MultiTask(tasks)(y, p, w, inputs=inputs) == pytest.approx(
        sum(separate[n][0] for n in tasks), rel=1e-14)
    with pytest.raises(TypeError, match="teacher_logits"):
        fl.MultiTask(tasks).evaluate(y, p, w)
    with pytest.raises(ValueError, match="inputs"):
        fl.MultiTask(tasks).evaluate(y, p, w, inputs={"nope": {}})


def test_uncertainty_weighting_takes_any_loss_and_precomputed_task_losses(rng):
    tasks, y, p, inputs, w, separate = _any_loss_tasks(rng)
    s = np.array([0.3, -0.2, 0.1])
    r = fl.UncertaintyWeighting(tasks).evaluate(y, p, s, w, inputs=inputs)
    L = np.array([separate[n][0] for n in tasks])
    expected = float(np.sum(0.5 * np.exp(-s) * L + 0.5 * s))
    assert r.value == pytest.approx(expected, rel=1e-14)
    for c, n in zip(0.5 * np.exp(-s), tasks):
        _grads_equal(r.grads[n], separate[n][1], c)
    # The spec form sum L_t / (2 sigma_t^2) + log sigma_t on losses computed elsewhere.
    uw = fl.UncertaintyWeighting(tasks)
    value, d_losses, d_s = uw.combine(dict(zip(tasks, L)), s)
    sigma = np.exp(0.5 * s)
    assert value == pytest.approx(float(np.sum(L / (2 * sigma ** 2) + np.log(sigma))), rel=1e-14)
    np.testing.assert_allclose(d_losses, 1 / (2 * sigma ** 2), rtol=1e-15)
    np.testing.assert_allclose(d_s, r.grad_log_vars, rtol=1e-15)
    with pytest.raises(ValueError, match="task_losses"):
        uw.combine([1.0, 2.0], s)


def test_self_paced_regularized_and_accumulator_take_any_loss(rng):
    _, y, p, inputs, w, separate = _any_loss_tasks(rng)
    labels, (x1, centers) = y["center"], p["center"]
    center = fl.CenterLoss(reduction="sum")
    # Self-paced weights over the rows of a loss with two differentiable inputs.
    r = fl.SelfPaced(center, lam=2.0).evaluate(labels, x1, centers)
    per = center(labels, x1, centers, reduction="none")
    v = (per < 2.0).astype(float)
    _grads_equal(r.grad, center.value_and_grad(labels, x1, centers, sample_weight=v)[1], 1.0)
    # Regularized: the loss's own inputs, then theta.
    theta = rng.standard_normal(5)
    reg = fl.Regularized(fl.Distillation(alpha=0.3, temperature=2.0), fl.L2(0.1))
    value, g, g_theta = reg.value_and_grad(labels, p["kd"], theta=theta, **inputs["kd"])
    assert value == pytest.approx(separate["kd"][0] + 0.1 * float(theta @ theta), rel=1e-14)
    _grads_equal(g, separate["kd"][1], 1.0)
    assert reg(labels, p["kd"], theta, **inputs["kd"]) == pytest.approx(value, rel=1e-15)
    # The accumulator streams a multi-input loss exactly.
    loss = fl.Contrastive(margin=2.0)
    similar, (a, b) = y["pairs"], p["pairs"]
    acc = fl.GradientAccumulator(loss)
    parts = [acc.update(similar[i:i + 10], a[i:i + 10], b[i:i + 10], sample_weight=w["pairs"][i:i + 10])
             for i in range(0, len(similar), 10)]
    whole_value, (ga, gb) = loss.value_and_grad(similar, a, b, sample_weight=w["pairs"])
    assert acc.value() == pytest.approx(whole_value, rel=1e-13)
    np.testing.assert_allclose(np.concatenate([g[0] for g in parts]) * acc.scale, ga, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([g[1] for g in parts]) * acc.scale, gb, rtol=1e-12)
