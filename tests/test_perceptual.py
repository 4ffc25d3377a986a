"""Perceptual loss over user feature maps: float64 reference from the definition, a PyTorch
composition, finite differences, reductions, weights, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal


def _features(rng, dtype=np.float64, n=3):
    shapes = [(n, 4, 6, 6), (n, 8, 3, 3), (n, 5)]
    t = [rng.standard_normal(s).astype(dtype) for s in shapes]
    p = [(x + rng.standard_normal(x.shape) * 0.5).astype(dtype) for x in t]
    return t, p


def ref_perceptual(t, p, weights, distance, normalize):
    """Per-sample loss sum_l w_l sum |p - t|^q / F_l, float64."""
    q = 2 if distance == "l2" else 1
    n = p[0].shape[0]
    out = np.zeros(n)
    for w, a, b in zip(weights, t, p):
        diff = np.abs(b.astype(np.float64) - a.astype(np.float64)).reshape(n, -1) ** q
        out += w * diff.sum(1) / (diff.shape[1] if normalize else 1)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("distance", ["l2", "l1"])
@pytest.mark.parametrize("normalize", [True, False])
def test_perceptual_reference(rng, dtype, distance, normalize):
    t, p = _features(rng, dtype)
    weights = [1.0, 0.5, 2.0]
    loss = fl.PerceptualLoss(layer_weights=weights, distance=distance, normalize=normalize)
    per = ref_perceptual(t, p, weights, distance, normalize)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss(t, p) == pytest.approx(float(per.mean()), rel=rtol)
    assert loss(t, p, reduction="sum") == pytest.approx(float(per.sum()), rel=rtol)
    np.testing.assert_allclose(loss(t, p, reduction="none"), per, rtol=rtol)
    w = rng.random(3)
    assert loss(t, p, w) == pytest.approx(float(np.dot(w, per) / w.sum()), rel=rtol)
    value, grads = loss.value_and_grad(t, p, w)
    assert [g.shape for g in grads] == [x.shape for x in p]
    assert all(g.dtype == dtype for g in grads)


def test_perceptual_matches_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t, p = _features(rng)
    weights = [1.0, 0.25, 3.0]
    value, grads = fl.PerceptualLoss(layer_weights=weights).value_and_grad(t, p)
    tp = [torch.tensor(x, requires_grad=True) for x in p]
    tv = sum(w * F.mse_loss(a, torch.tensor(b)) for w, a, b in zip(weights, tp, t))
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=1e-12)
    for g, x in zip(grads, tp):
        np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-12, atol=1e-15)
    value1, grads1 = fl.PerceptualLoss(distance="l1").value_and_grad(t, p)
    tp = [torch.tensor(x, requires_grad=True) for x in p]
    tv = sum(F.l1_loss(a, torch.tensor(b)) for a, b in zip(tp, t))
    tv.backward()
    assert value1 == pytest.approx(tv.item(), rel=1e-12)
    for g, x in zip(grads1, tp):
        np.testing.assert_allclose(g, x.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_perceptual_gradient_hessian_finite_differences(rng, reduction):
    t, p = _features(rng, n=2)
    t, p = [x[:, :2] for x in t], [x[:, :2] for x in p]  # few elements: a fast loop
    loss = fl.PerceptualLoss(layer_weights=[1.0, 2.0, 0.5])
    w = np.array([0.3, 1.7])
    _, grads, hesses = loss.value_grad_hess(t, p, w, reduction=reduction)
    h = 1e-6
    for layer in range(3):
        base = p[layer]
        for idx in list(np.ndindex(base.shape))[:12]:
            plus = [x.copy() for x in p]
            minus = [x.copy() for x in p]
            plus[layer][idx] += h
            minus[layer][idx] -= h
            fd = (loss(t, plus, w, reduction=reduction) - loss(t, minus, w, reduction=reduction)) / (2 * h)
            assert grads[layer][idx] == pytest.approx(fd, rel=1e-6, abs=1e-10)
        # l2: the Hessian diagonal is constant, 2 w_l / F_l times the sample's scale
        n_feat = base[0].size
        scale = w / w.sum() if reduction == "mean" else w
        expected = (2 * [1.0, 2.0, 0.5][layer] / n_feat * scale).reshape((2,) + (1,) * (base.ndim - 1))
        np.testing.assert_allclose(hesses[layer], np.broadcast_to(expected, base.shape), rtol=1e-12)


def test_perceptual_single_array_and_determinism(rng):
    t, p = _features(rng)
    assert fl.perceptual(t[0], p[0]) == fl.perceptual([t[0]], [p[0]])
    big_t = rng.standard_normal((4, 64, 32, 32)).astype(np.float32)
    big_p = big_t + 0.1
    runs = []
    for threads in (1, 2):
        with fl.num_threads(threads):
            runs.append(fl.PerceptualLoss().value_and_grad([big_t], [big_p]))
    assert_bitwise_equal(runs[0][0], runs[1][0])
    assert_bitwise_equal(runs[0][1][0], runs[1][1][0])


def test_perceptual_errors(rng):
    t, p = _features(rng)
    loss = fl.PerceptualLoss()
    with pytest.raises(ValueError, match="same number"):
        loss(t, p[:2])
    with pytest.raises(ValueError, match=r"layer 1.*\(3, 8, 3, 3\)"):
        loss(t, [p[0], p[1][:, :4], p[2]])
    with pytest.raises(ValueError, match="layer_weights has 2"):
        fl.PerceptualLoss(layer_weights=[1.0, 1.0])(t, p)
    with pytest.raises(ValueError, match="layer_weights"):
        fl.PerceptualLoss(layer_weights=[-1.0])
    with pytest.raises(ValueError, match="distance"):
        fl.PerceptualLoss(distance="l3")
    with pytest.raises(ValueError, match="batch size"):
        loss([t[0], t[1][:2]], [p[0], p[1][:2]])
    with pytest.raises(ValueError, match="sample_weight"):
        loss(t, p, np.ones(2))
    with pytest.raises(ValueError, match="at least one"):
        loss([], [])
