"""GAN losses, the WGAN critic objective and the gradient penalties, against PyTorch compositions
(autograd for the gradients), float64 formulas and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal

KINDS = ["minimax", "non_saturating", "lsgan", "wgan", "hinge"]
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def torch_gan(kind, zr, zf, a=0.0, b=1.0, c=1.0):
    """(L_D, L_G) composed from PyTorch ops, written from the papers."""
    F = pytest.importorskip("torch.nn.functional")
    if kind in ("minimax", "non_saturating"):
        d = -F.logsigmoid(zr).mean() - F.logsigmoid(-zf).mean()  # -E log D(x) - E log(1 - D(G(z)))
        g = F.logsigmoid(-zf).mean() if kind == "minimax" else -F.logsigmoid(zf).mean()
    elif kind == "lsgan":
        d = 0.5 * ((zr - b) ** 2).mean() + 0.5 * ((zf - a) ** 2).mean()
        g = 0.5 * ((zf - c) ** 2).mean()
    elif kind == "wgan":
        d, g = zf.mean() - zr.mean(), -zf.mean()
    else:
        d, g = F.relu(1 - zr).mean() + F.relu(1 + zf).mean(), -zf.mean()
    return d, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_gan_losses_match_torch(rng, kind, dtype):
    torch = pytest.importorskip("torch")
    zr = (rng.standard_normal((16, 3)) * 3).astype(dtype)
    zf = (rng.standard_normal(40) * 3 - 1).astype(dtype)
    params = dict(a=-1.0, b=1.0, c=0.5) if kind == "lsgan" else {}
    gan = fl.AdversarialLoss(kind, **params)
    d, g_real, g_fake = gan.discriminator_value_and_grad(zr, zf)
    g, gg_fake = gan.generator_value_and_grad(zf)
    tr = torch.tensor(zr, requires_grad=True)
    tf = torch.tensor(zf, requires_grad=True)
    td, tg = torch_gan(kind, tr, tf, **params)
    td.backward()
    assert isinstance(d, float) and d == pytest.approx(td.item(), rel=RTOL[dtype], abs=1e-6)
    assert g_real.dtype == dtype and g_fake.shape == zf.shape
    np.testing.assert_allclose(g_real, tr.grad.numpy(), rtol=RTOL[dtype] * 10, atol=1e-7)
    np.testing.assert_allclose(g_fake, tf.grad.numpy(), rtol=RTOL[dtype] * 10, atol=1e-7)
    tf.grad = None
    tg.backward()
    assert g == pytest.approx(tg.item(), rel=RTOL[dtype], abs=1e-6)
    np.testing.assert_allclose(gg_fake, tf.grad.numpy(), rtol=RTOL[dtype] * 10, atol=1e-7)
    assert gan.discriminator(zr, zf) == d and gan.generator(zf) == g


@pytest.mark.parametrize("kind", KINDS)
def test_gan_gradients_finite_differences(rng, kind):
    zr, zf = rng.standard_normal(7) * 2, rng.standard_normal(5) * 2
    gan = fl.AdversarialLoss(kind)
    _, g_real, g_fake = gan.discriminator_value_and_grad(zr, zf)
    _, gg = gan.generator_value_and_grad(zf)
    h = 1e-6
    for i in range(zr.size):
        e = np.zeros_like(zr)
        e[i] = h
        fd = (gan.discriminator(zr + e, zf) - gan.discriminator(zr - e, zf)) / (2 * h)
        assert g_real[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    for i in range(zf.size):
        e = np.zeros_like(zf)
        e[i] = h
        fd = (gan.discriminator(zr, zf + e) - gan.discriminator(zr, zf - e)) / (2 * h)
        assert g_fake[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)
        fd = (gan.generator(zf + e) - gan.generator(zf - e)) / (2 * h)
        assert gg[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_gan_extreme_logits_are_stable():
    z = np.array([-1000.0, -50.0, 50.0, 1000.0])
    for kind in ("minimax", "non_saturating"):
        gan = fl.AdversarialLoss(kind)
        d, gr, gf = gan.discriminator_value_and_grad(z, z)
        g, gg = gan.generator_value_and_grad(z)
        assert np.isfinite(d) and np.isfinite(g)
        assert np.all(np.isfinite(gr)) and np.all(np.isfinite(gf)) and np.all(np.isfinite(gg))
    # -E log sigmoid(z) at z = -1000 is 1000 (no clamp); the saturating G loss there is ~0
    assert fl.AdversarialLoss("non_saturating").generator(np.array([-1000.0])) == 1000.0
    value, grad = fl.AdversarialLoss("minimax").generator_value_and_grad(np.array([-1000.0]))
    assert value == pytest.approx(0.0, abs=1e-300) and abs(grad[0]) < 1e-300  # saturated


def test_gan_determinism_threads(rng):
    zr = rng.standard_normal(200_000).astype(np.float32)
    zf = rng.standard_normal(150_000).astype(np.float32)
    runs = []
    for threads in (1, 2):
        with fl.num_threads(threads):
            runs.append(fl.AdversarialLoss("non_saturating").discriminator_value_and_grad(zr, zf))
    for a, b in zip(*runs):
        assert_bitwise_equal(a, b)


def test_gan_errors():
    with pytest.raises(ValueError, match="kind"):
        fl.AdversarialLoss("vanilla")
    with pytest.raises(ValueError, match="fake is empty"):
        fl.AdversarialLoss().generator(np.zeros(0))
    with pytest.raises(TypeError, match="real"):
        fl.AdversarialLoss().discriminator(np.array(["x"]), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        fl.AdversarialLoss("lsgan", a=np.inf)


# --------------------------------------------------------------------------------------------------
# critic objective
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_wasserstein_critic(rng, dtype):
    real, fake = rng.standard_normal(30).astype(dtype), rng.standard_normal(20).astype(dtype)
    wr, wf = rng.random(30), rng.random(20)
    value, gr, gf = fl.wasserstein_critic(real, fake, real_weight=wr, fake_weight=wf, grad=True)
    expected = np.dot(wr, real.astype(np.float64)) / wr.sum() - np.dot(wf, fake.astype(np.float64)) / wf.sum()
    assert value == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(gr, wr / wr.sum(), rtol=RTOL[dtype])
    np.testing.assert_allclose(gf, -wf / wf.sum(), rtol=RTOL[dtype])
    assert gr.dtype == dtype
    # unweighted: the WGAN discriminator loss is its negative
    assert fl.wasserstein_critic(real, fake) == pytest.approx(
        -fl.AdversarialLoss("wgan").discriminator(real, fake), rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        fl.wasserstein_critic(real, fake, real_weight=np.zeros(30))
    with pytest.raises(ValueError, match="non-negative"):
        fl.wasserstein_critic(real, fake, fake_weight=-np.ones(20))
    with pytest.raises(ValueError, match="shape"):
        fl.wasserstein_critic(real, fake, fake_weight=np.ones(3))


# --------------------------------------------------------------------------------------------------
# penalties
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_penalty_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    g = rng.standard_normal((6, 3, 4, 4)).astype(dtype) * 0.3
    g[2] = 0  # a sample with a zero gradient: the penalty is lam, its gradient 0
    value, grad = fl.GradientPenalty(lam=10.0).value_and_grad(g)
    t = torch.tensor(g, requires_grad=True)
    tv = 10.0 * ((t.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=RTOL[dtype])
    assert grad.dtype == dtype and grad.shape == g.shape
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=RTOL[dtype] * 10, atol=1e-7)
    assert np.all(grad[2] == 0)
    assert fl.GradientPenalty(lam=10.0)(g) == value


def test_gradient_penalty_finite_differences(rng):
    g = rng.standard_normal((4, 5))
    pen = fl.GradientPenalty(lam=3.0, target=0.5)
    _, grad = pen.value_and_grad(g)
    h = 1e-6
    for idx in np.ndindex(g.shape):
        e = np.zeros_like(g)
        e[idx] = h
        assert grad[idx] == pytest.approx((pen(g + e) - pen(g - e)) / (2 * h), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_r1_penalty_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    g = rng.standard_normal((5, 2, 3)).astype(dtype)
    value, grad = fl.R1Penalty(gamma=4.0).value_and_grad(g)
    t = torch.tensor(g, requires_grad=True)
    tv = (t.square().sum(dim=[1, 2]) * (4.0 / 2)).mean()  # StyleGAN2's r1 penalty
    tv.backward()
    assert value == pytest.approx(tv.item(), rel=RTOL[dtype])
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=RTOL[dtype] * 10)
    assert grad.dtype == dtype


def test_penalty_errors():
    with pytest.raises(ValueError, match="lam"):
        fl.GradientPenalty(lam=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        fl.R1Penalty(gamma=-1.0)
    with pytest.raises(ValueError, match="batch"):
        fl.GradientPenalty()(np.float64(1.0))
    with pytest.raises(ValueError, match="empty"):
        fl.R1Penalty()(np.zeros((0, 3)))
