"""fastloss.jax: values and gradients against the same losses written in jax.numpy (JAX's own
autodiff) on the same arrays, under jit and vmap, the reductions and the incoming cotangent,
several differentiable inputs, and what is not supported."""

import numpy as np
import pytest

import fastloss as fl

jax = pytest.importorskip("jax")
fj = pytest.importorskip("fastloss.jax")
jnp = jax.numpy

N, K = 203, 5


@pytest.fixture(autouse=True, scope="module")
def float64():
    """float64 arrays here (compared at 1e-12); JAX's default is restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def _huber(y, p, delta):
    r = jnp.abs(p - y)
    return jnp.where(r <= delta, 0.5 * r ** 2, delta * (r - 0.5 * delta))


def _reduce(values, reduction):
    return {"mean": jnp.mean, "sum": jnp.sum, "none": lambda v: v}[reduction](values)


REFERENCES = {  # name: (fastloss loss, jax.numpy per-item values, data)
    "mse": (fl.MSE(), lambda y, p: (p - y) ** 2, "regression"),
    "huber": (fl.Huber(delta=0.7), lambda y, p: _huber(y, p, 0.7), "regression"),
    "bce_logits": (fl.BinaryCrossEntropy(from_logits=True),
                   lambda y, z: jnp.logaddexp(0, z) - y * z, "binary"),
    "cross_entropy": (fl.SparseCategoricalCrossEntropy(from_logits=True),
                      lambda y, z: -jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1)[:, 0],
                      "multiclass"),
}


def _data(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "regression":
        y = rng.normal(size=N)
        return jnp.asarray(y), jnp.asarray(y + rng.normal(size=N))
    if kind == "binary":
        return jnp.asarray(rng.integers(0, 2, N).astype(float)), jnp.asarray(2 * rng.normal(size=N))
    return jnp.asarray(rng.integers(0, K, N)), jnp.asarray(2 * rng.normal(size=(N, K)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_against_jax_numpy(name, reduction):
    loss, ref, kind = REFERENCES[name]
    y, p = _data(kind)
    weights = jnp.asarray(np.random.default_rng(1).normal(size=N))  # a signed cotangent

    def ours(p):
        v = fj.loss(loss, y, p, reduction=reduction)
        return jnp.sum(v * weights) if reduction == "none" else 3.0 * v

    def theirs(p):
        v = _reduce(ref(y, p), reduction)
        return jnp.sum(v * weights) if reduction == "none" else 3.0 * v

    for transform in (lambda f: f, jax.jit):
        v1, g1 = transform(jax.value_and_grad(ours))(p)
        v2, g2 = jax.value_and_grad(theirs)(p)
        np.testing.assert_allclose(v1, v2, rtol=1e-12)
        np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-14)


def test_float32_by_default_dtype():
    y, p = _data("regression")
    y32, p32 = y.astype(jnp.float32), p.astype(jnp.float32)
    value, grad = jax.value_and_grad(lambda p: fj.loss(fl.Huber(), y32, p))(p32)
    assert value.dtype == jnp.float32 and grad.dtype == jnp.float32
    ref = fl.Huber().value_and_grad(np.asarray(y32), np.asarray(p32))
    assert float(value) == pytest.approx(ref[0], rel=1e-6)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-6)


def test_vmap_loops_over_the_mapped_axis():
    rng = np.random.default_rng(2)
    y, p = jnp.asarray(rng.normal(size=(4, 30))), jnp.asarray(rng.normal(size=(4, 30)))
    f = jax.vmap(jax.value_and_grad(lambda y, p: fj.loss(fl.Huber(), y, p), argnums=1))
    values, grads = jax.jit(f)(y, p)
    for i in range(4):
        v, g = fl.Huber().value_and_grad(np.asarray(y[i]), np.asarray(p[i]))
        assert float(values[i]) == pytest.approx(v, rel=1e-14)
        np.testing.assert_allclose(grads[i], g, rtol=1e-14)


def test_several_differentiable_inputs_and_weights():
    rng = np.random.default_rng(3)
    a, pos, neg = (jnp.asarray(rng.normal(size=(40, 6))) for _ in range(3))
    w = jnp.asarray(rng.random(40))
    loss = fl.TripletMargin(margin=0.5)
    grads = jax.grad(lambda a, p, n: fj.loss(loss, a, p, n, sample_weight=w), argnums=(0, 1, 2))(
        a, pos, neg)
    ref = loss.value_and_grad(*(np.asarray(x) for x in (a, pos, neg)), sample_weight=np.asarray(w))[1]
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, rtol=1e-14)


def test_keyword_inputs_and_items_that_share_inputs():
    rng = np.random.default_rng(4)
    labels = jnp.asarray(rng.integers(0, K, 30))
    z, teacher = jnp.asarray(rng.normal(size=(30, K))), jnp.asarray(rng.normal(size=(30, K)))
    d = fl.Distillation(alpha=0.3)
    g = jax.grad(lambda z: fj.loss(d, labels, z, teacher_logits=teacher))(z)
    np.testing.assert_allclose(g, d.value_and_grad(np.asarray(labels), np.asarray(z),
                                                   teacher_logits=np.asarray(teacher))[1], rtol=1e-14)
    # center loss: the centers' gradient under "none" with a signed cotangent
    c = fl.CenterLoss()
    y, f, extra = c.synthetic(8, rng)
    v = jnp.asarray(rng.normal(size=8))
    def fn(f, centers):
        return jnp.sum(v * fj.loss(c, jnp.asarray(y), f, centers, reduction="none"))
    gf, gc = jax.grad(fn, argnums=(0, 1))(jnp.asarray(f), jnp.asarray(extra["centers"]))
    h = 1e-6
    cen = np.asarray(extra["centers"], dtype=float)
    num = np.zeros_like(cen)
    for j in np.ndindex(cen.shape):
        e = np.zeros_like(cen)
        e[j] = h
        num[j] = (np.sum(np.asarray(v) * c(y, f, cen + e, reduction="none"))
                  - np.sum(np.asarray(v) * c(y, f, cen - e, reduction="none"))) / (2 * h)
    np.testing.assert_allclose(gc, num, rtol=1e-5, atol=1e-7)


def test_what_is_not_supported():
    y, p = _data("regression")
    f = lambda p: fj.loss(fl.MSE(), y, p)  # noqa: E731
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(f, (p,), (p,))
    with pytest.raises(NotImplementedError, match="per-item values"):
        fj.loss(fl.BatchContrastive(), jnp.zeros(4, int), jnp.ones((4, 3)), reduction="none")
