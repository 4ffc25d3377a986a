"""Distillation and the tempered-softmax KL divergence: float64 references written from the
formulas, PyTorch's composition (cross_entropy + T^2 kl_div(log_target=True, "batchmean")),
finite-difference derivatives, the Loss contract (reductions, weights, out buffers, strides),
limits at +-inf, determinism and errors."""

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal

CONFIGS = [(0.5, 2.0), (0.0, 1.0), (1.0, 3.0), (0.3, 1.0), (0.9, 0.5)]


def log_softmax64(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def reference_rows(y, z, t, alpha, T, kl_scale):
    """Per-row losses and derivatives (float64) from the formulas."""
    z64, t64 = np.asarray(z, np.float64), np.asarray(t, np.float64)
    logq, logp = log_softmax64(z64 / T), log_softmax64(t64 / T)
    p, q = np.exp(logp), np.exp(logq)
    with np.errstate(invalid="ignore"):  # terms with p = 0 (logp = -inf) are dropped
        kl = np.where(p > 0, p * (logp - logq), 0.0).sum(-1)
    rows = (1 - alpha) * kl_scale * kl
    grad = (1 - alpha) * kl_scale / T * (q - p)
    hess = (1 - alpha) * kl_scale / T**2 * q * (1 - q)
    if alpha > 0:
        logp1 = log_softmax64(z64)
        p1 = np.exp(logp1)
        onehot = np.eye(z64.shape[-1])[y]
        rows = rows - alpha * np.take_along_axis(logp1, np.asarray(y)[..., None], -1)[..., 0]
        grad = grad + alpha * (p1 - onehot)
        hess = hess + alpha * p1 * (1 - p1)
    return rows, grad, hess


def problem(rng, rows=37, K=11, dtype=np.float64, scale=3.0):
    z = (rng.standard_normal((rows, K)) * scale).astype(dtype)
    t = (rng.standard_normal((rows, K)) * scale).astype(dtype)
    return rng.integers(0, K, rows), z, t


def tol(dtype):
    return dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,T", CONFIGS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(isa, rng, dtype, alpha, T, reduction, weighted):
    y, z, t = problem(rng, dtype=dtype)
    w = rng.random(len(y)) if weighted else None
    loss = fl.Distillation(alpha=alpha, temperature=T, reduction=reduction)
    value, grad, hess = loss.value_grad_hess(y, z, w, teacher_logits=t)
    rows, g, h = reference_rows(y, z, t, alpha, T, T * T)
    ww = np.ones(len(y)) if w is None else w
    scale = {"mean": ww / ww.sum(), "sum": ww, "none": ww}[reduction]
    if reduction == "none":
        np.testing.assert_allclose(value, ww * rows, **tol(dtype))
        assert value.dtype == dtype
    else:
        assert isinstance(value, float)
        assert value == pytest.approx(float(np.dot(scale, rows)), rel=tol(dtype)["rtol"] * 10)
    assert grad.dtype == dtype and grad.shape == z.shape
    np.testing.assert_allclose(grad, scale[:, None] * g, **tol(dtype))
    np.testing.assert_allclose(hess, scale[:, None] * h, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,T", CONFIGS)
@pytest.mark.parametrize("K", [16, 100, 300])
def test_matches_reference_wide_rows(isa, rng, dtype, alpha, T, K):
    # rows of several lane groups and exponential chunks, with a tail (the vector passes)
    y, z, t = problem(rng, rows=9, K=K, dtype=dtype)
    z[0], t[0] = 0, 0  # every term equal to 1
    z[1, 3] += 40  # a confident row
    value, grad, hess = fl.Distillation(alpha=alpha, temperature=T, reduction="none").value_grad_hess(
        y, z, teacher_logits=t)
    rows, g, h = reference_rows(y, z, t, alpha, T, T * T)
    np.testing.assert_allclose(value, rows, **tol(dtype))
    np.testing.assert_allclose(grad, g, **tol(dtype))
    np.testing.assert_allclose(hess, h, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,T", CONFIGS)
def test_torch_composition(rng, dtype, alpha, T):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y, z, t = problem(rng, rows=64, K=10, dtype=dtype)
    zt = torch.tensor(z, requires_grad=True)
    tt = torch.tensor(t)
    ref = (alpha * F.cross_entropy(zt, torch.tensor(y))
           + (1 - alpha) * T * T * F.kl_div(F.log_softmax(zt / T, -1), F.log_softmax(tt / T, -1),
                                             log_target=True, reduction="batchmean"))
    ref.backward()
    value, grad = fl.Distillation(alpha=alpha, temperature=T).value_and_grad(y, z, teacher_logits=t)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert value == pytest.approx(ref.item(), rel=rtol)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
def test_kl_divergence_matches_torch_and_has_no_t2_factor(rng, T):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    _, z, t = problem(rng, rows=20, K=7)
    zt = torch.tensor(z, requires_grad=True)
    ref = F.kl_div(F.log_softmax(zt / T, -1), F.log_softmax(torch.tensor(t) / T, -1),
                   log_target=True, reduction="batchmean")
    ref.backward()
    value, grad = fl.KLDivergence(temperature=T).value_and_grad(t, z)
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    # Distillation with alpha = 0 is T^2 times the KL
    d = fl.Distillation(alpha=0.0, temperature=T)(np.zeros(20, int), z, teacher_logits=t)
    assert d == pytest.approx(T * T * value, rel=1e-12)


def test_kl_divergence_shapes_against_torch_batchmean(rng):
    """The mean is over rows; PyTorch's "batchmean" divides by the first axis: equal for (n, K)
    only (the README and the docstring say so)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    kl = fl.KLDivergence()

    def torch_kl(t, z, reduction):
        return F.kl_div(F.log_softmax(torch.tensor(z), -1), F.log_softmax(torch.tensor(t), -1),
                        log_target=True, reduction=reduction).item()

    for shape, factor in (((7,), 7), ((5, 7), 1), ((2, 5, 7), 1 / 5)):
        t, z = rng.normal(size=shape), rng.normal(size=shape)
        assert kl(t, z) == pytest.approx(factor * torch_kl(t, z, "batchmean"), rel=1e-12)
        assert kl(t, z, reduction="sum") == pytest.approx(torch_kl(t, z, "sum"), rel=1e-12)


def test_kl_of_identical_logits_is_zero_with_zero_gradient(rng):
    _, z, _ = problem(rng)
    value, grad = fl.KLDivergence(temperature=2.0).value_and_grad(z, z)
    assert abs(value) < 1e-15
    assert np.abs(grad).max() < 1e-17


@pytest.mark.parametrize("alpha,T", [(0.5, 2.0), (0.0, 0.7), (1.0, 1.0)])
def test_derivatives_vs_finite_differences(rng, alpha, T):
    y, z, t = problem(rng, rows=5, K=6, scale=1.5)
    w = rng.random(5) + 0.5
    loss = fl.Distillation(alpha=alpha, temperature=T)
    _, grad, hess = loss.value_grad_hess(y, z, w, teacher_logits=t)
    h = 1e-5
    fd_g, fd_h = np.empty_like(z), np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd_g[idx] = (loss(y, zp, w, teacher_logits=t) - loss(y, zm, w, teacher_logits=t)) / (2 * h)
        gp = loss.value_and_grad(y, zp, w, teacher_logits=t)[1][idx]
        gm = loss.value_and_grad(y, zm, w, teacher_logits=t)[1][idx]
        fd_h[idx] = (gp - gm) / (2 * h)
    np.testing.assert_allclose(grad, fd_g, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hess, fd_h, rtol=1e-5, atol=1e-8)


def test_large_k_uses_heap_scratch_and_leading_axes(rng):
    y, z, t = problem(rng, rows=6, K=5000)
    loss = fl.Distillation(alpha=0.4, temperature=1.5, reduction="none")
    rows = loss(y, z, teacher_logits=t)
    np.testing.assert_allclose(rows, reference_rows(y, z, t, 0.4, 1.5, 2.25)[0], rtol=1e-11)
    # (2, 3, K) leading axes: per-row values of shape (2, 3)
    v3 = loss(y.reshape(2, 3), z.reshape(2, 3, -1), teacher_logits=t.reshape(2, 3, -1))
    np.testing.assert_array_equal(v3, rows.reshape(2, 3))


def test_infinite_logits_take_the_softmax_limits():
    inf = np.inf
    z = np.array([[0.0, 1.0, -inf], [inf, 0.0, 0.0]])
    t = np.array([[0.5, 0.5, -inf], [inf, -1.0, 2.0]])
    value, grad = fl.Distillation(alpha=0.5, temperature=2.0, reduction="none").value_and_grad(
        np.array([1, 0]), z, teacher_logits=t)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    finite_row = reference_rows(np.array([1]), z[:1], t[:1], 0.5, 2.0, 4.0)
    assert value[0] == pytest.approx(float(finite_row[0][0]), rel=1e-12)
    assert value[1] == 0.0 and np.all(grad[1] == 0.0)  # both one-hot on the label: no loss
    # the student puts no mass where the teacher does: +inf
    v = fl.KLDivergence()(np.array([[0.0, 0.0]]), np.array([[0.0, -inf]]))
    assert v == inf


def test_nan_stays_in_its_row(rng):
    y, z, t = problem(rng, rows=4, K=5)
    z[1, 2] = np.nan
    v, g = fl.Distillation(reduction="none").value_and_grad(y, z, teacher_logits=t)
    assert np.isnan(v[1]) and np.all(np.isfinite(np.delete(v, 1)))
    assert np.all(np.isfinite(np.delete(g, 1, axis=0)))


def test_in_place_gradient_and_out_buffers(rng):
    y, z, t = problem(rng, dtype=np.float32)
    loss = fl.Distillation(alpha=0.3, temperature=2.0)
    v, g = loss.value_and_grad(y, z, teacher_logits=t)
    zz = z.copy()
    v2, g2 = loss.value_and_grad(y, zz, teacher_logits=t, grad_out=zz)
    assert g2 is zz and v2 == v
    assert_bitwise_equal(g2, g)
    out = np.empty(len(y), np.float32)
    rows = loss(y, z, teacher_logits=t, reduction="none", out=out)
    assert rows is out


def test_strided_and_mixed_dtype_inputs(rng):
    y, z, t = problem(rng, rows=20, K=8)
    loss = fl.Distillation(alpha=0.6, temperature=1.7)
    v, g = loss.value_and_grad(y, z, teacher_logits=t)
    zs = np.asfortranarray(z)
    v2, g2 = loss.value_and_grad(y, zs, teacher_logits=np.asfortranarray(t))
    assert v2 == v
    np.testing.assert_array_equal(g2, g)
    t_strided = np.empty((20, 16))
    t_strided[:, ::2] = t
    assert loss(y, z, teacher_logits=t_strided[:, ::2]) == v
    # float32 student with float64 teacher: the teacher is read as float32
    v32 = loss(y, z.astype(np.float32), teacher_logits=t)
    assert v32 == loss(y, z.astype(np.float32), teacher_logits=t.astype(np.float32))


def test_thread_count_bitwise(rng):
    y, z, t = problem(rng, rows=4000, K=33, dtype=np.float32)
    loss = fl.Distillation(alpha=0.5, temperature=2.0)
    with fl.num_threads(1):
        v1, g1 = loss.value_and_grad(y, z, teacher_logits=t)
    with fl.num_threads(2):
        v2, g2 = loss.value_and_grad(y, z, teacher_logits=t)
    assert v1 == v2
    assert_bitwise_equal(g1, g2)


def test_empty_and_zero_weight_means():
    z = np.zeros((0, 3))
    assert np.isnan(fl.Distillation()(np.zeros(0, int), z, teacher_logits=z))
    assert fl.Distillation(reduction="sum")(np.zeros(0, int), z, teacher_logits=z) == 0.0


def test_errors_name_the_argument(rng):
    y, z, t = problem(rng, rows=4, K=3)
    with pytest.raises(ValueError, match="alpha"):
        fl.Distillation(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        fl.Distillation(temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        fl.KLDivergence(temperature=-1.0)
    with pytest.raises(TypeError, match="teacher_logits"):
        fl.Distillation()(y, z)
    with pytest.raises(TypeError, match="unexpected"):
        fl.KLDivergence()(t, z, teacher_logits=t)
    with pytest.raises(ValueError, match=r"teacher_logits.*\(4, 3\).*\(4, 4\)|teacher_logits and y_pred"):
        fl.Distillation()(y, z, teacher_logits=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="y_true"):
        fl.Distillation()(np.array([0, 1, 2, 3]), z, teacher_logits=t)
    with pytest.raises(TypeError, match="y_true"):
        fl.Distillation()(y.astype(float), z, teacher_logits=t)
    with pytest.raises(ValueError, match="KLDivergence|same shape"):
        fl.KLDivergence()(np.zeros((4, 2)), z)
    g = np.full_like(z, 7.0)
    with pytest.raises(ValueError):
        fl.Distillation().value_and_grad(np.array([0, 1, 2, 9]), z, teacher_logits=t, grad_out=g)
    assert np.all(g == 7.0)  # nothing written


def test_registry_functionals_and_doctests():
    import doctest

    import fastloss.multiclass

    names = {info.name: info for info in fl.losses("classification")}
    assert names["distillation"].cls is fl.Distillation
    assert names["kl_divergence"].cls is fl.KLDivergence
    z, t = np.array([[2.0, 0.0, -1.0]]), np.array([[1.0, 1.0, -2.0]])
    assert fl.distillation(np.array([0]), z, teacher_logits=t, alpha=0.2) == \
        fl.Distillation(alpha=0.2)(np.array([0]), z, teacher_logits=t)
    assert fl.kl_divergence(t, z, temperature=3.0) == fl.KLDivergence(temperature=3.0)(t, z)
    assert "teacher_logits" in fl.distillation.__doc__
    assert repr(fl.Distillation(alpha=0.25)) == "Distillation(alpha=0.25, temperature=2.0)"
    assert doctest.testmod(fastloss.multiclass).failed == 0


def test_gradient_accumulation_over_chunks_equals_one_shot(rng):
    y, z, t = problem(rng, rows=300, K=9)
    w = rng.random(300)
    loss = fl.Distillation(alpha=0.3, temperature=2.5)
    value, grad = loss.value_and_grad(y, z, w, teacher_logits=t)
    acc = fl.GradientAccumulator(loss)
    cuts = [0, 1, 1, 57, 200, 300]
    grads = [acc.update(y[a:b], z[a:b], w[a:b], teacher_logits=t[a:b])
             for a, b in zip(cuts[:-1], cuts[1:])]
    assert acc.value() == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(np.concatenate(grads) * acc.scale, grad, rtol=1e-12,
                               atol=1e-12 * np.abs(grad).max())
