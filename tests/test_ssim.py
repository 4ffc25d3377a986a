"""SSIMLoss and MSSSIMLoss: values against a float64 reference written from the definitions and
against scikit-image's structural_similarity (value, full map, gradient=True) and pytorch_msssim;
gradients against central finite differences of the reference; layouts, reductions, weights,
buffers, dtypes, determinism and errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import fastloss as fl
from conftest import assert_bitwise_equal, same_on_one_and_two_threads

R = 5  # window radius: the cropped band
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ----------------------------------------------------------------------------------------------
# float64 reference, from Wang et al. 2004 / 2003 with scikit-image's borders
# ----------------------------------------------------------------------------------------------


def ref_maps(x, y, data_range=1.0, k1=0.01, k2=0.03):
    """The SSIM and contrast-structure maps of one plane (reflected borders)."""
    f = lambda a: ndimage.gaussian_filter(a, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    return (2 * ux * uy + c1) / (ux**2 + uy**2 + c1) * cs, cs


def crop_mean(m):
    return m[R:-R, R:-R].mean()


def ref_ssim(x, y, **kw):
    return crop_mean(ref_maps(x, y, **kw)[0])


def pool(a):
    h, w = a.shape[0] // 2, a.shape[1] // 2
    a = a[:2 * h, :2 * w]
    return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])


def ref_ms_ssim(x, y, weights=WEIGHTS, **kw):
    value = 1.0
    for j, w in enumerate(weights):
        s, cs = ref_maps(x, y, **kw)
        m = crop_mean(s if j == len(weights) - 1 else cs)
        value *= max(m, 0.0) ** w
        x, y = pool(x), pool(y)
    return value


def fd_grad(f, y, h=1e-6, pixels=None):
    """Central differences of the scalar f at the given (or all) pixels of y."""
    g = np.full(y.shape, np.nan)
    for idx in (np.ndindex(y.shape) if pixels is None else pixels):
        yp, ym = y.copy(), y.copy()
        yp[idx] += h
        ym[idx] -= h
        g[idx] = (f(yp) - f(ym)) / (2 * h)
    return g


def images(rng, shape, noise=0.15, dtype=np.float64):
    """Smooth-ish images in [0, 1] and noisy copies."""
    x = ndimage.uniform_filter(rng.random(shape), 3)
    y = np.clip(x + noise * rng.standard_normal(shape), 0, 1)
    return x.astype(dtype), y.astype(dtype)


# ----------------------------------------------------------------------------------------------
# SSIM values and gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_value_and_gradient_match_reference(rng, data_range):
    x, y = images(rng, (14, 17))
    x, y = x * data_range, y * data_range
    loss = fl.SSIMLoss(data_range=data_range)
    value, grad = loss.value_and_grad(x, y)
    assert value == pytest.approx(1 - ref_ssim(x, y, data_range=data_range), rel=1e-12, abs=1e-14)
    fd = fd_grad(lambda yy: 1 - ref_ssim(x, yy, data_range=data_range), y, h=1e-6 * data_range)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8 * np.abs(fd).max())
    # every pixel matters, borders included (they feed the windows of the cropped region)
    assert np.all(grad[0] != 0) and np.all(grad[:, -1] != 0)


def test_ssim_matches_scikit_image(rng):
    skm = pytest.importorskip("skimage.metrics")
    x, y = images(rng, (2, 3, 23, 31))
    loss = fl.SSIMLoss()
    per_image = loss(x, y, reduction="none")
    value, grad = loss.value_and_grad(x, y)
    smap = loss.ssim_map(x, y)
    for n in range(2):
        ref = skm.structural_similarity(x[n], y[n], channel_axis=0, data_range=1.0,
                                        gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False)
        assert per_image[n] == pytest.approx(1 - ref, abs=1e-13)
        for c in range(3):
            s, g, full = skm.structural_similarity(
                x[n, c], y[n, c], data_range=1.0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, gradient=True, full=True)
            np.testing.assert_allclose(smap[n, c], full, rtol=0, atol=1e-13)
            # scikit-image differentiates the uncropped mean of the map with the filter as its own
            # adjoint: away from the borders (2 radii) it agrees with the exact gradient up to the
            # pixel counts; ours is d loss / d y_pred (loss = mean over images and channels of 1 - s).
            inner = (slice(2 * R, -2 * R), slice(2 * R, -2 * R))
            full_n, crop_n = 23 * 31, 13 * 21
            np.testing.assert_allclose(grad[n, c][inner], -g[inner] * full_n / crop_n / 6,
                                       rtol=1e-9, atol=1e-15)
    assert value == pytest.approx(float(per_image.mean()), rel=1e-14)


def test_scikit_image_gradient_is_approximate_at_borders(rng):
    """Why we do not reproduce scikit-image's gradient at the borders: ours is the derivative of
    the value (finite differences agree), scikit-image's is not."""
    skm = pytest.importorskip("skimage.metrics")
    x, y = images(rng, (15, 16))
    s, g = skm.structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, gradient=True)
    fd = fd_grad(lambda yy: skm.structural_similarity(
        x, yy, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
        y, pixels=[(0, 0), (1, 7), (7, 7)])
    ours = -fl.SSIMLoss().value_and_grad(x, y)[1]
    for idx in [(0, 0), (1, 7), (7, 7)]:
        assert ours[idx] == pytest.approx(fd[idx], rel=1e-5, abs=1e-10)
    assert abs(g[0, 0] - fd[0, 0]) > 100 * abs(fd[0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ssim_layouts_and_dtypes(rng, dtype):
    x, y = images(rng, (3, 2, 16, 13), dtype=dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    loss = fl.SSIMLoss()
    ref = np.array([[1 - ref_ssim(x[n, c].astype(np.float64), y[n, c].astype(np.float64))
                     for c in range(2)] for n in range(3)])
    v4, g4 = loss.value_and_grad(x, y, reduction="none")
    assert v4.shape == (3,) and v4.dtype == dtype and g4.shape == x.shape and g4.dtype == dtype
    np.testing.assert_allclose(v4, ref.mean(1), rtol=rtol * 10, atol=rtol)
    # (N, H, W) and (H, W): each plane its own image
    v3, g3 = loss.value_and_grad(x[:, 0], y[:, 0], reduction="none")
    np.testing.assert_allclose(v3, ref[:, 0], rtol=rtol * 10, atol=rtol)
    v2, g2 = loss.value_and_grad(x[1, 1], y[1, 1], reduction="none")
    assert v2.shape == () and g2.shape == (16, 13)
    assert float(v2) == pytest.approx(ref[1, 1], rel=rtol * 10, abs=rtol)
    # the gradient of one plane does not depend on the layout (up to the per-image scale)
    np.testing.assert_allclose(g4[1, 1] * 2, g2, rtol=rtol * 100, atol=rtol * np.abs(g2).max())
    np.testing.assert_allclose(g3[1], g4[1, 0] * 2, rtol=rtol * 100, atol=rtol * np.abs(g2).max())
    # channels last: (N, H, W, C) and (H, W, C)
    xl, yl = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)
    last = fl.SSIMLoss(channels_last=True)
    vl, gl = last.value_and_grad(xl, yl, reduction="none")
    assert_bitwise_equal(vl, v4)
    assert gl.shape == xl.shape
    assert_bitwise_equal(gl, np.moveaxis(g4, 1, -1))
    v1, g1 = last.value_and_grad(xl[2], yl[2], reduction="none")
    assert_bitwise_equal(v1, v4[2:3].reshape(()))
    assert_bitwise_equal(g1, np.moveaxis(g4[2], 0, -1))
    assert_bitwise_equal(last.ssim_map(xl, yl), np.moveaxis(loss.ssim_map(x, y), 1, -1))


def test_reductions_weights_and_buffers(rng):
    x, y = images(rng, (4, 3, 12, 12))
    loss = fl.SSIMLoss()
    per, g_none = loss.value_and_grad(x, y, reduction="none")
    w = np.array([0.5, 0.0, 2.0, 1.0])
    mean, g_mean = loss.value_and_grad(x, y, sample_weight=w)
    total, g_sum = loss.value_and_grad(x, y, sample_weight=w, reduction="sum")
    assert isinstance(mean, float) and isinstance(total, float)
    assert mean == pytest.approx(float(np.sum(w * per) / w.sum()), rel=1e-14)
    assert total == pytest.approx(float(np.sum(w * per)), rel=1e-14)
    np.testing.assert_allclose(g_sum, g_none * w[:, None, None, None], rtol=1e-14, atol=0)
    np.testing.assert_allclose(g_mean, g_sum / w.sum(), rtol=1e-14, atol=0)
    assert_bitwise_equal(loss(x, y, sample_weight=w, reduction="none"), w * per)
    assert fl.ssim_loss(x, y) == loss(x, y)
    # per-image SSIM, caller buffers, non-contiguous input
    np.testing.assert_allclose(loss.ssim(x, y), 1 - per, rtol=0, atol=1e-15)
    gbuf, obuf = np.empty_like(x), np.empty(4)
    _, g = loss.value_and_grad(x, y, reduction="none", out=obuf, grad_out=gbuf)
    assert g is gbuf
    assert_bitwise_equal(gbuf, g_none)
    assert_bitwise_equal(obuf, per)
    xs, ys = np.asfortranarray(x), y[:, :, ::1, :].copy()[..., ::-1][..., ::-1]
    assert_bitwise_equal(loss.value_and_grad(xs, ys)[1], loss.value_and_grad(x, y)[1])


# ----------------------------------------------------------------------------------------------
# MS-SSIM
# ----------------------------------------------------------------------------------------------


def test_ms_ssim_value_and_gradient_match_reference(rng):
    x, y = images(rng, (2, 23, 25))  # two scales: 23x25 and 11x12 (odd row/column dropped)
    loss = fl.MSSSIMLoss(weights=(0.4, 0.6))
    per, grad = loss.value_and_grad(x, y, reduction="none")
    for n in range(2):
        assert per[n] == pytest.approx(1 - ref_ms_ssim(x[n], y[n], (0.4, 0.6)), rel=1e-12)
        fd = fd_grad(lambda yy: 1 - ref_ms_ssim(x[n], yy, (0.4, 0.6)), y[n])
        np.testing.assert_allclose(grad[n], fd, rtol=1e-5, atol=1e-8 * np.abs(fd).max())


def test_ms_ssim_standard_weights(rng):
    x, y = images(rng, (1, 2, 176, 181), noise=0.05)
    loss = fl.MSSSIMLoss()
    assert loss.min_size == 176
    per, grad = loss.value_and_grad(x, y, reduction="none")
    ref = np.mean([ref_ms_ssim(x[0, c], y[0, c]) for c in range(2)])
    assert per[0] == pytest.approx(1 - ref, rel=1e-12)
    pixels = [(0, 0), (3, 170), (90, 90), (175, 180), (100, 7)]
    fd = fd_grad(lambda yy: 1 - ref_ms_ssim(x[0, 1], yy) / 2 - ref_ms_ssim(x[0, 0], y[0, 0]) / 2,
                 y[0, 1], pixels=pixels)
    for idx in pixels:
        assert grad[0, 1][idx] == pytest.approx(fd[idx], rel=1e-5, abs=1e-8)


def test_ms_ssim_matches_pytorch_msssim(rng):
    torch = pytest.importorskip("torch")
    pm = pytest.importorskip("pytorch_msssim")
    x, y = images(rng, (2, 3, 176, 192), noise=0.05)  # sides divisible by 16: same pooling
    ours = fl.MSSSIMLoss().ms_ssim(x, y)
    theirs = pm.ms_ssim(torch.tensor(x), torch.tensor(y), data_range=1.0, size_average=False)
    # pytorch_msssim builds its window in float32 (relative differences of a few 1e-6)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5)
    ssim_theirs = pm.ssim(torch.tensor(x), torch.tensor(y), data_range=1.0, size_average=False)
    np.testing.assert_allclose(fl.SSIMLoss().ssim(x, y), ssim_theirs.numpy(), rtol=1e-5)


def test_ms_ssim_float32(rng):
    x, y = images(rng, (2, 30, 30))
    loss = fl.MSSSIMLoss(weights=(0.3, 0.7))
    v64, g64 = loss.value_and_grad(x, y)
    v32, g32 = loss.value_and_grad(x.astype(np.float32), y.astype(np.float32))
    assert g32.dtype == np.float32
    assert v32 == pytest.approx(v64, abs=2e-6)
    np.testing.assert_allclose(g32, g64, atol=1e-4 * np.abs(g64).max())


def test_ms_ssim_negative_factor_gives_zero_gradient(rng):
    x, _ = images(rng, (24, 24))
    loss = fl.MSSSIMLoss(weights=(0.5, 0.5))
    value, grad = loss.value_and_grad(x, 1 - x)  # anti-correlated: cs < 0 is clipped
    assert value == 1.0 and np.all(grad == 0)


# ----------------------------------------------------------------------------------------------
# float32, determinism, errors
# ----------------------------------------------------------------------------------------------


def test_float32_close_to_float64(rng):
    x, y = images(rng, (3, 2, 40, 33))
    v64, g64 = fl.SSIMLoss().value_and_grad(x, y)
    v32, g32 = fl.SSIMLoss().value_and_grad(x.astype(np.float32), y.astype(np.float32))
    assert v32 == pytest.approx(v64, abs=2e-6)
    np.testing.assert_allclose(g32, g64, atol=1e-4 * np.abs(g64).max())


@pytest.mark.parametrize("shape", [(6, 3, 40, 40), (1, 1, 190, 200)], ids=["planes", "rows"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_bitwise(rng, shape, dtype):
    x, y = images(rng, shape, dtype=dtype)
    for loss in (fl.SSIMLoss(), fl.MSSSIMLoss(weights=(0.5, 0.5))):
        same_on_one_and_two_threads(loss, x, y)
    with fl.num_threads(1):
        m1 = fl.SSIMLoss().ssim_map(x, y)
    with fl.num_threads(2):
        m2 = fl.SSIMLoss().ssim_map(x, y)
    assert_bitwise_equal(m1, m2)


def test_errors(rng):
    x, y = images(rng, (2, 3, 16, 16))
    loss = fl.SSIMLoss()
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3, 16, 16\).*\(2, 3, 16, 15\)"):
        loss(x, y[..., :15])
    with pytest.raises(ValueError, match="window is larger than the image.*10 x 16"):
        loss(x[..., :10, :], y[..., :10, :])
    with pytest.raises(ValueError, match="at least 176 x 176"):
        fl.MSSSIMLoss()(x, y)
    with pytest.raises(ValueError, match="data_range must be > 0"):
        fl.SSIMLoss(data_range=-1.0)
    with pytest.raises(ValueError, match="data_range must be > 0"):
        fl.MSSSIMLoss(data_range=0)
    with pytest.raises(ValueError, match="empty input"):
        loss(np.empty((0, 16, 16)), np.empty((0, 16, 16)))
    with pytest.raises(ValueError, match="image array"):
        loss(x[0, 0, 0], y[0, 0, 0])
    with pytest.raises(ValueError, match="image array"):
        fl.SSIMLoss(channels_last=True)(x[0, 0], y[0, 0])
    with pytest.raises(ValueError, match="sample_weight must have one weight per item"):
        loss(x, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sums to zero"):
        loss(x, y, sample_weight=np.zeros(2))
    with pytest.raises(TypeError, match="y_pred must be a real numeric array"):
        loss(x, y.astype(np.complex128))
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        fl.SSIMLoss(channels_last=1)
    with pytest.raises(ValueError, match="weights must hold 1 to 16"):
        fl.MSSSIMLoss(weights=())
    with pytest.raises(NotImplementedError, match="Hessian"):
        loss.grad_hess(x, y)
    buf = np.full(x.shape, 7.0)
    with pytest.raises(ValueError, match="grad_out must have shape"):
        loss.value_and_grad(x, y, grad_out=buf[:1])
    with pytest.raises(ValueError, match="same shape"):  # nothing written on error
        loss.value_and_grad(x, y[:1], grad_out=buf)
    assert np.all(buf == 7.0)


def test_registry_and_cli(capsys):
    from fastloss import cli

    names = {i.name for i in fl.losses("image")}
    assert {"ssim_loss", "ms_ssim_loss"} <= names
    assert fl.get_loss("ssim_loss", data_range=255.0).data_range == 255.0
    assert cli.main(["eval", "ssim_loss", "--synthetic", "2", "--json"]) == 0
    assert '"shape": [\n    2,\n    3,' in capsys.readouterr().out


def test_simd_targets_agree_bitwise(rng):
    """No fused multiply-add anywhere in the SSIM kernels: every compiled target gives the same
    bits (baseline included)."""
    from conftest import AVAILABLE_ISAS

    x, y = images(rng, (2, 3, 30, 41), dtype=np.float32)
    results = {}
    for isa in AVAILABLE_ISAS:
        fl.select_isa(isa)
        results[isa] = (fl.SSIMLoss().value_and_grad(x, y),
                        fl.MSSSIMLoss(weights=(0.5, 0.5)).value_and_grad(x, y))
    first = results[AVAILABLE_ISAS[0]]
    for isa, res in results.items():
        for (v, g), (v0, g0) in zip(res, first):
            assert_bitwise_equal(v, v0, isa)
            assert_bitwise_equal(g, g0, isa)
