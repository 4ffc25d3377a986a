"""Convergence classification, detectors, stopping rules, the training monitor and clipping."""

import json
import math
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss import analysis as fa

K = np.arange(200, dtype=np.float64)
CLEAN = 0.3 + 0.9 ** K  # gradient descent on a strongly convex problem: linear convergence


def _quadratic_errors(e0=0.5, steps=8):
    e = [e0]
    for _ in range(steps):
        e.append(e[-1] ** 2)
    return np.array(e)


@pytest.mark.parametrize("target, offset", [(0.0, 0.0), (None, 0.3)])
def test_known_sequences_are_classified(target, offset):
    kind, rho, order = fa.classify_convergence(offset + 0.8 ** K, target)
    assert kind == "linear" and rho == pytest.approx(0.8, rel=1e-6) and order == pytest.approx(1.0, rel=1e-4)
    kind, rho, _ = fa.classify_convergence(offset + 1.0 / (K + 1), target)
    assert kind == "sublinear" and rho > 0.95
    kind, _, order = fa.classify_convergence(offset + _quadratic_errors(), target)
    assert kind == "quadratic" and order > 1.8
    assert fa.classify_convergence(offset + 1.1 ** K[:50], target)[0] == "diverging"
    assert fa.classify_convergence([1.0, 0.5, math.nan, 0.1], target)[0] == "diverging"
    assert fa.classify_convergence([1.0, 0.5], target)[0] == "insufficient"


def test_fit_linear_rate_and_order():
    assert fa.fit_linear_rate(2.0 * 0.5 ** K[:40], 0.0) == pytest.approx(0.5, rel=1e-9)
    assert fa.fit_linear_rate(1.0 + 0.5 ** K[:40]) == pytest.approx(0.5, rel=1e-6)
    assert fa.convergence_order(_quadratic_errors()) == pytest.approx(2.0, rel=1e-9)


def test_clean_run_raises_no_alarm():
    report = fa.analyze_convergence(CLEAN, grad_norms=0.9 ** K)
    assert report.kind == "linear" and report.findings == [] and report.ok
    assert fa.detect_plateau(CLEAN, grad_norms=0.9 ** K) == []
    assert fa.detect_oscillation(CLEAN) == [] and fa.detect_explosion(CLEAN, 0.9 ** K) == []


def test_plateau_detector():
    history = np.r_[1 - 0.01 * np.arange(30), np.full(60, 0.7), 0.7 * 0.95 ** np.arange(60)]
    found = fa.detect_plateau(history)
    assert [f.kind for f in found] == ["plateau"]
    assert 25 <= found[0].step <= 35
    assert found[0].advice == fa.ADVICE["plateau"]
    assert [f.kind for f in fa.detect_plateau(np.full(100, 0.7))] == ["not_decreasing"]
    # flat at the end with a gradient that is not small: stalled; with a vanishing one: converged
    tail = np.r_[0.3 + 0.5 ** np.arange(20), np.full(80, 0.3)]
    assert [f.kind for f in fa.detect_plateau(tail, grad_norms=np.ones(100))] == ["stalled"]
    assert fa.detect_plateau(tail, grad_norms=np.r_[np.ones(20), np.full(80, 1e-9)]) == []


def test_oscillation_detector():
    history = 0.5 + 0.9 ** K + 0.05 * (-1) ** K * (K > 100)
    found = fa.detect_oscillation(history)
    assert [f.kind for f in found] == ["oscillation"]
    assert 80 <= found[0].step <= 101
    assert "reduce the learning rate" in found[0].advice
    # the same history is not also a plateau (the running mean cancels the oscillation)
    assert [f.kind for f in fa.analyze_convergence(history).findings] == ["oscillation"]


def test_explosion_detector():
    history = np.r_[0.9 ** np.arange(50), 1.5 ** np.arange(30)]
    found = fa.detect_explosion(history)
    assert [f.kind for f in found] == ["explosion"] and found[0].step == 56  # 1.5^6 > 1 + 10
    assert fa.detect_explosion([1.0, 0.5, np.inf])[0].step == 2
    spike = fa.detect_explosion(np.ones(10), grad_norms=[1, 1, 1, 1, 1, 500, 1, 1, 1, 1])
    assert [(f.kind, f.step) for f in spike] == [("explosion", 5)]
    assert "clip" in spike[0].advice
    assert fa.analyze_convergence(history).kind == "diverging"


def test_stopping_rule():
    rule = fa.StoppingRule(grad_tol=1e-3)
    assert not rule.update(grad_norm=1.0) and rule.update(grad_norm=1e-4)
    assert "gradient norm" in rule.reason
    rule = fa.StoppingRule(loss_tol=1e-6)
    assert not rule.update(loss=1.0) and not rule.update(loss=0.5) and rule.update(loss=0.5 + 1e-8)
    rule = fa.StoppingRule(patience=3, min_delta=0.01)
    stops = [rule.update(val_loss=v) for v in [1.0, 0.9, 0.895, 0.899, 0.91]]
    assert stops == [False, False, False, False, True]
    assert "not improved for 3" in rule.reason
    with pytest.raises(ValueError, match="at least one"):
        fa.StoppingRule()
    with pytest.raises(ValueError, match="patience"):
        fa.StoppingRule(patience=0)


def _run(monitor, history, grads=None):
    for i, f in enumerate(history):
        monitor.record(f, grad_norm=None if grads is None else grads[i], lr=0.1)


@pytest.mark.parametrize("history, expected", [
    (CLEAN, []),
    (0.5 + 0.9 ** K + 0.05 * (-1) ** K * (K > 100), [("oscillation", 91)]),
    (np.r_[1 - 0.01 * np.arange(30), np.full(60, 0.7), 0.7 * 0.95 ** np.arange(50)], [("plateau", 29)]),
    (np.r_[0.9 ** np.arange(50), 1.5 ** np.arange(30)], [("explosion", 56)]),
    (np.full(100, 0.7), [("not_decreasing", 0)]),
], ids=["clean", "oscillation", "plateau", "explosion", "flat"])
def test_monitor_reports_as_it_happens(history, expected):
    seen = []
    monitor = fa.TrainingMonitor(callback=lambda f: seen.append((f, len(monitor))))
    _run(monitor, history)
    assert [(f.kind, f.step) for f, _ in seen] == expected
    for f, at in seen:  # reported during the run, within a few windows of where it starts
        assert at - f.step <= 4 * monitor.window + 1
    assert [(f.kind, f.step) for f in monitor.findings] == expected


def test_monitor_warns_by_default_and_stops():
    monitor = fa.TrainingMonitor(stopping=fa.StoppingRule(grad_tol=1e-3))
    with pytest.warns(fa.TrainingWarning, match="loss is nan"):
        monitor.record(1.0, grad_norm=1.0)
        monitor.record(math.nan, grad_norm=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor.record(0.5, grad_norm=1e-4)  # an explosion already reported is not repeated at once
    assert monitor.should_stop and "gradient norm" in monitor.stop_reason


def test_monitor_history_save_load_and_report(tmp_path):
    monitor = fa.TrainingMonitor(callback=lambda f: None)
    grads = [np.array([3.0, 0.0]), np.array([[4.0]])]
    monitor.record(CLEAN[0], grads=grads, lr=0.1, per_class={0: 0.5, 1: 1.5}, val_loss=1.2)
    monitor.record(CLEAN[1], grad_norm=2.0)
    assert monitor.history["grad_norm"] == [5.0, 2.0]
    assert monitor.history["val_loss"] == [1.2, None]
    path = tmp_path / "h.json"
    monitor.save(path)
    loaded = fa.TrainingMonitor.load(path)
    assert loaded.history == json.loads(path.read_text())["history"] == monitor.history
    _run(monitor, CLEAN[2:], 0.9 ** K[2:])
    assert monitor.report().kind == "linear" and monitor.report().ok


def test_per_class_losses(rng):
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    y, z = rng.integers(0, 3, 90), rng.standard_normal((90, 3))
    per_row = loss(y, z, reduction="none")
    got = fa.per_class_losses(loss, y, z)
    assert sorted(got) == [0, 1, 2]
    for c in range(3):
        assert got[c] == pytest.approx(float(per_row[y == c].mean()), rel=1e-12)
    w = rng.random(90)
    got_w = fa.per_class_losses(loss, y, z, sample_weight=w)
    assert got_w[1] == pytest.approx(float((per_row * w)[y == 1].sum() / w[y == 1].sum()), rel=1e-12)
    onehot = np.eye(3)[y]
    assert fa.per_class_losses(fl.CategoricalCrossEntropy(from_logits=True), onehot, z) == pytest.approx(got)


def test_clipping_in_place_returns_norm_before():
    a, b = np.array([3.0, 0.0]), np.array([[0.0, 4.0]], dtype=np.float32)
    norm = fa.clip_grad_norm([a, b], max_norm=1.0)
    assert norm == pytest.approx(5.0)
    assert fa.global_norm([a, b]) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a, [0.6, 0.0], rtol=1e-5)
    assert b.dtype == np.float32
    c = np.array([0.3, 0.4])
    assert fa.clip_grad_norm(c, 1.0) == pytest.approx(0.5) and np.array_equal(c, [0.3, 0.4])
    d = np.array([-5.0, 0.5, 2.0])
    assert fa.clip_grad_value([d], 1.0) == pytest.approx(math.sqrt(25 + 0.25 + 4))
    assert np.array_equal(d, [-1.0, 0.5, 1.0])
    assert fa.global_norm([np.array([1.0, -3.0])], norm_type=math.inf) == 3.0
    ro = np.ones(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        fa.clip_grad_norm([np.ones(2), ro], 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        fa.clip_grad_value([np.ones(2, dtype=int)], 1.0)


def test_clipping_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    expected = float(torch.nn.utils.clip_grad_norm_(params, 0.5))
    assert fa.clip_grad_norm(grads, 0.5) == pytest.approx(expected, rel=1e-12)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-12)
