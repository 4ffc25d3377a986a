"""Consistency losses: MSE between two predictions (probabilities, or logits with a temperature),
temporal, graph and grid smoothness -- values against loop references written from the spec,
gradients (and the Hessian diagonal) against finite differences, PyTorch, errors, determinism."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import fastloss as fl


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs(rng, shape):
    return _softmax(rng.standard_normal(shape))


def _consistency_ref(t, z, from_logits, T, w=None):
    p = _softmax(z / T) if from_logits else z
    q = _softmax(t / T) if from_logits else t
    per_row = ((p - q) ** 2).sum(-1)
    w = np.ones(per_row.shape) if w is None else w
    return per_row * w, w.sum()


def _fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


CONFIGS = [dict(), dict(from_logits=True), dict(from_logits=True, temperature=3.0),
           dict(from_logits=True, temperature=0.5)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("params", CONFIGS, ids=str)
def test_consistency_mse_values(rng, params, reduction):
    logits = params.get("from_logits", False)
    shape = (7, 5, 4)
    t, z = (rng.standard_normal(shape) for _ in range(2)) if logits else (_probs(rng, shape) for _ in range(2))
    w = rng.uniform(0, 2, shape[:-1])
    loss = fl.ConsistencyMSE(reduction=reduction, **params)
    per, norm = _consistency_ref(t, z, logits, params.get("temperature", 1.0), w)
    got = loss(t, z, w)
    expected = {"mean": per.sum() / norm, "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(got, expected, rtol=1e-13)


@pytest.mark.parametrize("params", CONFIGS, ids=str)
def test_consistency_mse_grad_hess_finite_differences(rng, params):
    logits = params.get("from_logits", False)
    t, z = (rng.standard_normal((3, 4)) for _ in range(2)) if logits else (_probs(rng, (3, 4)) for _ in range(2))
    w = rng.uniform(0.5, 2, 3)
    loss = fl.ConsistencyMSE(**params)
    value, grad, hess = loss.value_grad_hess(t, z, w)
    np.testing.assert_allclose(grad, _fd(lambda x: loss(t, x, w), z), rtol=1e-6, atol=1e-10)
    # Hessian diagonal: derivative of each gradient entry along its own coordinate
    h = 1e-5
    fd_h = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[i] = h
        fd_h[i] = (loss.value_and_grad(t, z + e, w)[1][i] - loss.value_and_grad(t, z - e, w)[1][i]) / (2 * h)
    np.testing.assert_allclose(hess, fd_h, rtol=1e-5, atol=1e-9)
    # "none": derivatives are those of the per-row values (as "sum")
    g_sum = loss.value_and_grad(t, z, w, reduction="sum")[1]
    g_none = loss.grad_hess(t, z, w, reduction="none")[0]
    np.testing.assert_array_equal(g_sum, g_none)


def test_consistency_mse_symmetry(rng):
    loss = fl.ConsistencyMSE(from_logits=True, temperature=2.0)
    a, b = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
    assert loss(a, b) == pytest.approx(loss(b, a), rel=1e-15)
    ga = loss.value_and_grad(b, a)[1]  # w.r.t. the first view
    np.testing.assert_allclose(ga, _fd(lambda x: loss(x, b), a), rtol=1e-6, atol=1e-10)


def test_consistency_mse_vs_torch_mean_teacher(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t = rng.standard_normal((16, 10)), rng.standard_normal((16, 10))
    T = 2.0
    value, grad = fl.ConsistencyMSE(from_logits=True, temperature=T).value_and_grad(t, z)
    tz = torch.tensor(z, requires_grad=True)
    # Mean Teacher's softmax_mse_loss (sum over elements / num_classes) / batch size, times K
    ref = F.mse_loss(F.softmax(tz / T, dim=1), F.softmax(torch.tensor(t) / T, dim=1),
                     reduction="sum") / 16
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-11, atol=1e-18)


def test_consistency_mse_dtypes_out_and_registry(rng):
    t, z = _probs(rng, (6, 3)).astype(np.float32), _probs(rng, (6, 3)).astype(np.float32)
    loss = fl.ConsistencyMSE()
    v, g = loss.value_and_grad(t, z)
    assert isinstance(v, float) and g.dtype == np.float32
    assert v == pytest.approx(((z.astype(float) - t) ** 2).sum() / 6, rel=1e-6)
    buf = np.full((6, 3), -1.0, dtype=np.float32)
    assert loss.value_and_grad(t, z, grad_out=buf)[1] is buf
    np.testing.assert_array_equal(buf, g)
    out = np.empty(6, dtype=np.float32)
    assert loss(t, z, reduction="none", out=out) is out
    info = {i.name: i for i in fl.losses("consistency")}["consistency_mse"]
    assert info.cls is fl.ConsistencyMSE and info.function is fl.consistency_mse
    assert fl.get_loss("consistency_mse", from_logits=True, temperature=2.0).temperature == 2.0
    assert fl.consistency_mse(t, z) == v
    assert math.isnan(loss(np.zeros((0, 3)), np.zeros((0, 3))))


def test_consistency_mse_errors(rng):
    a = _probs(rng, (4, 3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        fl.ConsistencyMSE(from_logits=True, temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        fl.ConsistencyMSE(from_logits=True, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature applies to logits"):
        fl.ConsistencyMSE(temperature=2.0)
    loss = fl.ConsistencyMSE()
    with pytest.raises(ValueError, match=r"same shape.*\(4, 2\).*\(4, 3\)"):
        loss(a[:, :2], a)
    with pytest.raises(ValueError, match="one weight per row"):
        loss(a, a, np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        loss(a, a, -np.ones(4))
    with pytest.raises(TypeError, match="y_pred must be a real numeric array"):
        loss(a, a.astype(complex))
    buf = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="grad_out must have dtype float64"):
        loss.value_and_grad(a, a, grad_out=buf)
    ro = np.zeros((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        loss.value_and_grad(a, a, grad_out=ro)
    with pytest.raises(ValueError, match="out= is only used"):
        loss(a, a, out=np.zeros(4))
    sentinel = np.full((4, 3), 7.0)
    with pytest.raises(ValueError):
        loss.value_and_grad(a, a, np.ones(5), grad_out=sentinel)
    assert np.all(sentinel == 7.0), "no partial write on error"


# ---- temporal, graph, grid ---------------------------------------------------------------------


def _temporal_ref(f, axis):
    f = np.moveaxis(f, axis, 0)
    return sum(float(((f[t] - f[t + 1]) ** 2).sum()) for t in range(len(f) - 1))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_temporal(rng, axis):
    f = rng.standard_normal((4, 5, 3))
    tc = fl.TemporalConsistency(axis=axis)
    v, g = tc.value_and_grad(f)
    assert v == pytest.approx(_temporal_ref(f, axis), rel=1e-14)
    np.testing.assert_allclose(g, _fd(tc, f), rtol=1e-7, atol=1e-9)
    m = fl.TemporalConsistency(axis=axis, reduction="mean")
    n_diffs = f.size // f.shape[axis] * (f.shape[axis] - 1)
    vm, gm = m.value_and_grad(f)
    assert vm == pytest.approx(v / n_diffs, rel=1e-14)
    np.testing.assert_allclose(gm, g / n_diffs, rtol=1e-14)


def test_graph(rng):
    f = rng.standard_normal((6, 2))
    edges = np.array([[0, 1], [1, 2], [2, 0], [3, 4], [4, 3], [5, 5], [0, 1]])  # repeats count
    w = rng.uniform(0, 2, len(edges))
    gc = fl.GraphConsistency(edges, edge_weight=w)
    v, g = gc.value_and_grad(f)
    ref = sum(wk * float(((f[i] - f[j]) ** 2).sum()) for (i, j), wk in zip(edges, w))
    assert v == pytest.approx(ref, rel=1e-14)
    # the Laplacian form: grad = 2 (D - W) f
    W = np.zeros((6, 6))
    for (i, j), wk in zip(edges, w):
        W[i, j] += wk
        W[j, i] += wk
    np.testing.assert_allclose(g, 2 * (np.diag(W.sum(1)) - W) @ f, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g, _fd(gc, f), rtol=1e-7, atol=1e-9)
    m = fl.GraphConsistency(edges, edge_weight=w, reduction="mean")
    assert m(f) == pytest.approx(v / (w.sum() * 2), rel=1e-14)
    assert fl.GraphConsistency(edges)(f) == pytest.approx(
        sum(float(((f[i] - f[j]) ** 2).sum()) for i, j in edges), rel=1e-14)


def _grid_ref(f, ndim, neighbors):
    """Every unordered pair of neighbouring cells, by brute force over cell pairs."""
    grid = f.shape[-ndim:]
    cells = list(np.ndindex(grid))
    total = 0.0
    for a, b in itertools.combinations(cells, 2):
        d = np.abs(np.subtract(a, b))
        if d.max() != 1:
            continue
        if neighbors in (4, 6) and d.sum() != 1:
            continue
        total += float(((f[(Ellipsis,) + a] - f[(Ellipsis,) + b]) ** 2).sum())
    return total


@pytest.mark.parametrize("ndim,neighbors", [(2, 4), (2, 8), (3, 6), (3, 26)])
def test_grid(rng, ndim, neighbors):
    shape = (2, 4, 3) if ndim == 2 else (2, 3, 3, 2)
    f = rng.standard_normal(shape)
    gc = fl.GridConsistency(ndim=ndim, neighbors=neighbors)
    v, g = gc.value_and_grad(f)
    assert v == pytest.approx(_grid_ref(f, ndim, neighbors), rel=1e-13)
    np.testing.assert_allclose(g, _fd(gc, f), rtol=1e-7, atol=1e-9)
    assert len(gc.offsets) == neighbors // 2


def test_grid_pairs_count_and_float32(rng):
    # a constant-gradient image: each horizontal pair differs by 1, each vertical by 10
    f = np.add.outer(10.0 * np.arange(5), np.arange(6)).astype(np.float32)
    assert fl.GridConsistency(neighbors=4)(f) == 5 * 5 * 1 + 4 * 6 * 100
    assert fl.GridConsistency(neighbors=4, reduction="mean")(f) == pytest.approx(
        (25 + 2400) / (25 + 24), rel=1e-12)
    assert fl.GridConsistency(neighbors=8)(f) == 25 + 2400 + 2 * 4 * 5 * 101
    _, g = fl.GridConsistency(neighbors=8).value_and_grad(f)
    assert g.dtype == np.float32
    # a single row or cell: no vertical pairs, no pairs at all
    assert fl.GridConsistency()(np.ones((1, 1))) == 0.0
    assert math.isnan(fl.GridConsistency(reduction="mean")(np.ones((1, 1))))


def test_determinism(rng):
    f = rng.standard_normal((300, 400))
    out = []
    for threads in (1, 2):
        with fl.num_threads(threads):
            v, g = fl.GridConsistency(neighbors=8).value_and_grad(f)
            vt, gt = fl.TemporalConsistency(axis=1).value_and_grad(f)
            out.append((v, g.tobytes(), vt, gt.tobytes()))
    assert out[0] == out[1]


def test_pairwise_errors(rng):
    with pytest.raises(ValueError, match="reduction"):
        fl.TemporalConsistency(reduction="none")
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        fl.TemporalConsistency(axis=3)(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"shape \(E, 2\)"):
        fl.GraphConsistency(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="non-negative"):
        fl.GraphConsistency([[0, -1]])
    with pytest.raises(ValueError, match="refer to node 5 but f has 3 nodes"):
        fl.GraphConsistency([[0, 5]])(np.ones(3))
    with pytest.raises(ValueError, match="one weight per edge"):
        fl.GraphConsistency([[0, 1]], edge_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        fl.GraphConsistency([[0, 1]], edge_weight=[-1.0])
    with pytest.raises(ValueError, match="neighbors must be one of \\[4, 8\\]"):
        fl.GridConsistency(neighbors=6)
    with pytest.raises(ValueError, match="neighbors must be one of \\[6, 26\\]"):
        fl.GridConsistency(ndim=3, neighbors=8)
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        fl.GridConsistency(ndim=1)
    with pytest.raises(ValueError, match="at least 3"):
        fl.GridConsistency(ndim=3)(np.ones((4, 4)))
    with pytest.raises(TypeError, match="real numeric array"):
        fl.TemporalConsistency()(np.array(["a", "b"]))
