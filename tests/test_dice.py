"""DiceLoss, GeneralizedDiceLoss and TverskyLoss against float64 references written from the papers
(Milletari et al. 2016, Sudre et al. 2017, Salehi et al. 2017) in MONAI's conventions; gradients
against central finite differences of the reference; labels vs one-hot targets, reductions,
weights, dtypes, determinism and errors."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal, same_on_one_and_two_threads

# ----------------------------------------------------------------------------------------------
# float64 references
# ----------------------------------------------------------------------------------------------


def activate(z, activation):
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if activation == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def sums(g, p, batch, square=False):
    axes = tuple(range(2, p.ndim)) + ((0,) if batch else ())
    f = (lambda a: a * a) if square else (lambda a: a)
    return (p * g).sum(axes), f(p).sum(axes), f(g).sum(axes)


def class_mean(f, class_weight):
    w = np.ones(f.shape[-1]) if class_weight is None else np.asarray(class_weight, float)
    return (f * w).sum(-1) / w.sum()


def ref_dice(g, z, activation=None, smooth_nr=1e-5, smooth_dr=1e-5, squared=False,
             class_weight=None, batch=False):
    I, P, G = sums(g, activate(z, activation), batch, squared)
    return class_mean(1 - (2 * I + smooth_nr) / (P + G + smooth_dr), class_weight)


def ref_tversky(g, z, alpha=0.5, beta=0.5, activation=None, smooth_nr=1e-5, smooth_dr=1e-5,
                class_weight=None, batch=False):
    p = activate(z, activation)
    axes = tuple(range(2, p.ndim)) + ((0,) if batch else ())
    tp, fp, fn = (p * g).sum(axes), (p * (1 - g)).sum(axes), ((1 - p) * g).sum(axes)
    return class_mean(1 - (tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr), class_weight)


def ref_generalized(g, z, activation=None, smooth_nr=1e-5, smooth_dr=1e-5, batch=False):
    I, P, G = sums(g, activate(z, activation), batch)
    I, P, G = np.atleast_2d(I), np.atleast_2d(P), np.atleast_2d(G)
    w = np.zeros_like(G)
    present = G > 0
    w[present] = 1 / G[present] ** 2
    for r in range(w.shape[0]):  # absent classes: the largest weight of the present ones (MONAI)
        w[r, ~present[r]] = w[r].max()
    out = 1 - (2 * (w * I).sum(-1) + smooth_nr) / ((w * (P + G)).sum(-1) + smooth_dr)
    return out[0] if batch else out


CASES = [
    (fl.DiceLoss, ref_dice, {}),
    (fl.DiceLoss, ref_dice, {"activation": "softmax", "squared": True}),
    (fl.DiceLoss, ref_dice, {"activation": "sigmoid", "class_weight": [0.0, 1.0, 2.0]}),
    (fl.DiceLoss, ref_dice, {"activation": "softmax", "batch": True, "smooth_nr": 0.0,
                             "smooth_dr": 1e-3}),
    (fl.TverskyLoss, ref_tversky, {"alpha": 0.3, "beta": 0.7, "activation": "softmax"}),
    (fl.TverskyLoss, ref_tversky, {"alpha": 0.8, "beta": 0.1, "class_weight": [1, 2, 3],
                                   "batch": True}),
    (fl.GeneralizedDiceLoss, ref_generalized, {"activation": "softmax"}),
    (fl.GeneralizedDiceLoss, ref_generalized, {"activation": "sigmoid", "batch": True}),
]
CASE_IDS = [f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)]


def make_inputs(rng, shape, activation, absent_class=False):
    """One-hot targets (N, C, *spatial), their labels, and predictions (logits or probabilities)."""
    N, C = shape[:2]
    labels = rng.integers(0, C - 1 if absent_class else C, (N,) + shape[2:])
    g = np.moveaxis(np.eye(C)[labels], -1, 1)
    z = 1.5 * g + rng.standard_normal(shape)
    if activation is None:
        z = activate(z, "softmax")
    return g, labels, z


def fd_grad(f, z, h=1e-6):
    g = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        g[idx] = (f(zp) - f(zm)) / (2 * h)
    return g


# ----------------------------------------------------------------------------------------------
# values and gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,ref,params", CASES, ids=CASE_IDS)
def test_value_and_gradient_match_reference(rng, cls, ref, params):
    g, labels, z = make_inputs(rng, (2, 3, 4, 5), params.get("activation"), absent_class=True)
    loss = cls(**params)
    per = np.asarray(ref(g, z, **params))
    value, grad = loss.value_and_grad(g, z)
    assert value == pytest.approx(float(per.mean()), rel=1e-12, abs=1e-15)
    fd = fd_grad(lambda zz: float(np.mean(ref(g, zz, **params))), z)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)  # FD noise ~ 1e-16 / h
    # integer labels are one-hot encoded inside: the same sums, bit for bit
    v2, g2 = loss.value_and_grad(labels, z)
    assert_bitwise_equal(v2, value)
    assert_bitwise_equal(g2, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,ref,params", CASES, ids=CASE_IDS)
def test_dtypes_and_reductions(rng, dtype, cls, ref, params):
    g, labels, z = make_inputs(rng, (3, 3, 7, 9, 2), params.get("activation"))
    z = z.astype(dtype)
    loss = cls(**params)
    per_ref = np.asarray(ref(g, z.astype(np.float64), **params))
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    per, grad_none = loss.value_and_grad(labels, z, reduction="none")
    assert per.dtype == dtype and grad_none.dtype == dtype and grad_none.shape == z.shape
    np.testing.assert_allclose(per, per_ref, rtol=rtol, atol=rtol)
    if params.get("batch"):
        assert per.shape == ()
        assert loss(labels, z, reduction="sum") == loss(labels, z)
        return
    w = np.array([0.5, 0.0, 2.0])
    mean, g_mean = loss.value_and_grad(labels, z, sample_weight=w)
    total, g_sum = loss.value_and_grad(labels, z, sample_weight=w, reduction="sum")
    assert isinstance(mean, float) and isinstance(total, float)
    assert mean == pytest.approx(float(np.sum(w * per_ref) / w.sum()), rel=rtol, abs=rtol)
    assert total == pytest.approx(float(np.sum(w * per_ref)), rel=rtol, abs=rtol)
    np.testing.assert_allclose(g_sum, grad_none * w.reshape(-1, 1, 1, 1, 1).astype(dtype),
                               rtol=rtol * 10, atol=rtol * np.abs(grad_none).max())
    np.testing.assert_allclose(g_mean, g_sum / w.sum(), rtol=rtol * 10,
                               atol=rtol * np.abs(g_sum).max())
    assert loss.functional(labels, z, **params) == loss(labels, z)


def test_float32_gradient_close_to_float64(rng):
    g, labels, z = make_inputs(rng, (2, 4, 16, 16), "softmax")
    for loss in (fl.DiceLoss(activation="softmax"), fl.GeneralizedDiceLoss(activation="softmax"),
                 fl.TverskyLoss(alpha=0.2, beta=0.8, activation="softmax")):
        _, g64 = loss.value_and_grad(labels, z)
        _, g32 = loss.value_and_grad(labels, z.astype(np.float32))
        np.testing.assert_allclose(g32, g64, atol=1e-5 * np.abs(g64).max())


def test_special_cases(rng):
    g, labels, z = make_inputs(rng, (2, 3, 6, 6), None)
    # alpha = beta = 0.5: Tversky is Dice (without smoothing, which enters them differently)
    nosmooth = {"smooth_nr": 0.0, "smooth_dr": 0.0}
    assert fl.TverskyLoss(**nosmooth)(g, z) == pytest.approx(fl.DiceLoss(**nosmooth)(g, z), rel=1e-14)
    # a perfect prediction: 0 (up to smoothing); binary segmentation is C = 1 with sigmoid
    assert fl.DiceLoss(smooth_nr=0, smooth_dr=0)(g, g) == 0.0
    b = (rng.random((2, 1, 8, 8)) < 0.3).astype(float)
    zb = rng.standard_normal(b.shape)
    assert fl.DiceLoss(activation="sigmoid")(b, zb) == pytest.approx(
        float(ref_dice(b, zb, "sigmoid").mean()), rel=1e-12)
    # an empty class with smoothing costs nothing when predicted empty
    e = np.zeros((1, 1, 4, 4))
    assert fl.DiceLoss()(e, e) == 0.0


def test_strided_input_and_buffers(rng):
    g, labels, z = make_inputs(rng, (2, 3, 10, 12), "softmax")
    loss = fl.DiceLoss(activation="softmax")
    zs = np.asfortranarray(z)
    assert_bitwise_equal(loss.value_and_grad(labels, zs)[1], loss.value_and_grad(labels, z)[1])
    buf, out = np.empty_like(z), np.empty(2)
    per, grad = loss.value_and_grad(labels, z, reduction="none", out=out, grad_out=buf)
    assert grad is buf and per is out
    assert_bitwise_equal(buf, loss.value_and_grad(labels, z, reduction="none")[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_bitwise(rng, dtype):
    g, labels, z = make_inputs(rng, (2, 4, 64, 80), "softmax")
    z = z.astype(dtype)
    for loss in (fl.DiceLoss(activation="softmax", squared=True),
                 fl.GeneralizedDiceLoss(activation="softmax"), fl.TverskyLoss(activation="sigmoid")):
        same_on_one_and_two_threads(loss, labels, z)


def channels_last(a):
    """The (N, C, *spatial) view of a channels-last (N, *spatial, C) copy of a."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,ref,params", CASES, ids=CASE_IDS)
def test_channels_last(rng, dtype, cls, ref, params):
    """Channels-last predictions, targets and gradient buffers are read and written in place and
    give the channels-first results bit for bit; the gradient keeps the layout of y_pred."""
    g, labels, z = make_inputs(rng, (2, 3, 17, 70), params.get("activation"))  # 1190 pixels
    g, z = g.astype(dtype), z.astype(dtype)
    loss = cls(**params)
    value, grad = loss.value_and_grad(g, z, reduction="none")
    z_cl, g_cl = channels_last(z), channels_last(g)
    for target in (g_cl, g, labels):
        v, gr = loss.value_and_grad(target, z_cl, reduction="none")
        assert_bitwise_equal(v, value)
        assert_bitwise_equal(gr, grad)
        assert np.moveaxis(gr, 1, -1).flags.c_contiguous  # channels-last, like z_cl
    assert_bitwise_equal(loss(g_cl, z_cl, reduction="none"), value)  # the value alone
    for buf in (channels_last(np.empty_like(z)), np.empty_like(z)):
        v, gr = loss.value_and_grad(g_cl, z_cl, reduction="none", grad_out=buf)
        assert gr is buf
        assert_bitwise_equal(buf, grad)
    # the gradient written over the predictions themselves goes through a temporary
    zz = z_cl.copy(order="K")
    v, gr = loss.value_and_grad(g_cl, zz, reduction="none", grad_out=zz)
    assert gr is zz
    assert_bitwise_equal(zz, grad)


@pytest.mark.parametrize("C", [2, 3, 4, 5, 8, 70])
def test_class_counts(rng, C):
    """Class counts with and without a class-fused softmax and a specialized transposition (2, 3,
    4, 8), and enough classes for the smallest blocks (the block size follows C), on images whose
    pixel count leaves a tail: reference values, channels-last bitwise equal."""
    g, labels, z = make_inputs(rng, (2, C, 19, 41), "softmax")
    loss = fl.DiceLoss(activation="softmax", squared=True)
    value, grad = loss.value_and_grad(labels, z, reduction="none")
    np.testing.assert_allclose(value, ref_dice(g, z, "softmax", squared=True), rtol=1e-12)
    v, gr = loss.value_and_grad(channels_last(g), channels_last(z), reduction="none")
    assert_bitwise_equal(v, value)
    assert_bitwise_equal(gr, grad)
    # the gradient by finite differences, on images of 21 pixels (16 and a tail of 5)
    g, labels, z = make_inputs(rng, (2, C, 3, 7), "softmax")
    _, grad = loss.value_and_grad(labels, z)
    fd = fd_grad(lambda zz: float(np.mean(ref_dice(g, zz, "softmax", squared=True))), z)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("C", [2, 4, 8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_last_softmax_in_place_with_extreme_logits(isa, rng, C, dtype):
    """Softmax over 2, 4 or 8 channels-last classes runs without transposition (a pixel's classes
    side by side in a register): bit for bit the channels-first results, with +-inf, NaN, huge and
    tied logits (+-0 included) among them, targets or labels, into a fresh or a caller's buffer,
    and the value alone; images of 7 x 9 pixels leave a tail after each 16."""
    shape = (3, C, 7, 9)
    g, labels, z = make_inputs(rng, shape, "softmax")
    g, z = g.astype(dtype), z.astype(dtype)
    flat = z.reshape(3, C, -1)
    flat[0, :, 0] = 0.0
    flat[0, 0, 0] = -0.0  # a tie of zeros for the max
    flat[0, :, 1] = np.inf
    flat[0, C - 1, 2] = np.inf
    flat[0, :, 3] = -np.inf
    flat[1, C // 2, 4] = np.nan
    flat[1, :, 5] = 1e30
    flat[2, 0, 6] = -1e30
    for loss in (fl.DiceLoss(activation="softmax"), fl.DiceLoss(activation="softmax", squared=True),
                 fl.TverskyLoss(alpha=0.3, beta=0.7, activation="softmax"),
                 fl.GeneralizedDiceLoss(activation="softmax", batch=True)):
        value, grad = loss.value_and_grad(g, z, reduction="none")
        for target in (channels_last(g), labels):
            v, gr = loss.value_and_grad(target, channels_last(z), reduction="none")
            assert_bitwise_equal(v, value)
            assert_bitwise_equal(gr, grad)
            buf = channels_last(np.empty_like(z))
            v, gr = loss.value_and_grad(target, channels_last(z), reduction="none", grad_out=buf)
            assert gr is buf
            assert_bitwise_equal(buf, grad)
            assert_bitwise_equal(loss(target, channels_last(z), reduction="none"), value)


@pytest.mark.parametrize("layout", ["first", "last"])
def test_threads_and_groups_bitwise(rng, layout):
    """Images large enough to be processed in several groups, whose number follows the thread
    count: the results do not depend on it."""
    g, labels, z = make_inputs(rng, (3, 4, 150, 300), "softmax")
    z = z.astype(np.float32)
    if layout == "last":
        z = channels_last(z)
    for loss in (fl.DiceLoss(activation="softmax"), fl.GeneralizedDiceLoss(activation="softmax"),
                 fl.DiceLoss(activation="softmax", batch=True)):
        a = same_on_one_and_two_threads(loss, labels, z)
        ref = np.asarray(ref_dice(np.moveaxis(np.eye(4)[labels], -1, 1), z.astype(np.float64),
                                  "softmax", batch=loss.batch)) if isinstance(loss, fl.DiceLoss) else None
        if ref is not None:
            np.testing.assert_allclose(a[0], ref, rtol=2e-5)


def test_errors(rng):
    g, labels, z = make_inputs(rng, (2, 3, 4, 4), None)
    loss = fl.DiceLoss()
    with pytest.raises(ValueError, match=r"y_true must have the shape of y_pred \(2, 3, 4, 4\)"):
        loss(g[:, :2], z)
    bad = labels.copy()
    bad[1, 2, 3] = 3
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\); y_true.flat\[27\] = 3"):
        loss(bad, z)
    with pytest.raises(ValueError, match="softmax.*at least 2 classes"):
        fl.DiceLoss(activation="softmax")(g[:, :1], z[:, :1])
    with pytest.raises(ValueError, match="empty input"):
        loss(g[:0], z[:0])
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        loss(g[0, 0, 0], z[0, 0, 0])
    with pytest.raises(ValueError, match="class_weight must have one weight per class"):
        fl.DiceLoss(class_weight=[1.0, 2.0])(g, z)
    with pytest.raises(ValueError, match="class_weight must not sum to zero"):
        fl.DiceLoss(class_weight=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="batch=True"):
        fl.DiceLoss(batch=True)(g, z, sample_weight=np.ones(2))
    with pytest.raises(ValueError, match="activation must be"):
        fl.DiceLoss(activation="relu")
    with pytest.raises(ValueError, match="smooth_nr must be >= 0"):
        fl.DiceLoss(smooth_nr=-1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        fl.TverskyLoss(alpha=-0.1)
    with pytest.raises(TypeError, match="y_pred must be a real numeric array"):
        loss(g, z.astype(complex))
    with pytest.raises(NotImplementedError, match="Hessian"):
        loss.grad_hess(g, z)
    buf = np.full(z.shape, 7.0)
    with pytest.raises(ValueError, match="sample_weight must have one weight per item"):
        loss.value_and_grad(g, z, sample_weight=np.ones(3), grad_out=buf)
    assert np.all(buf == 7.0)


def test_registry_and_cli(capsys):
    from fastloss import cli

    names = {i.name for i in fl.losses("segmentation")}
    assert names == {"dice_loss", "generalized_dice_loss", "tversky_loss"}
    for name in names:
        assert cli.main(["eval", name, "--synthetic", "2", "--param", "activation=softmax"]) == 0
    assert "shape: [2, 4, 64, 64]" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_targets_agree(rng, dtype):
    """FMA targets (AVX2, AVX-512) agree to the bit; the baseline (no FMA) to rounding."""
    from conftest import AVAILABLE_ISAS

    g, labels, z = make_inputs(rng, (2, 4, 20, 30), "softmax")
    z = z.astype(dtype)
    results = {}
    for isa in AVAILABLE_ISAS:
        fl.select_isa(isa)
        results[isa] = fl.DiceLoss(activation="softmax", squared=True).value_and_grad(labels, z)
    fma = [isa for isa in AVAILABLE_ISAS if isa != "baseline"]
    for isa in fma[1:]:
        assert_bitwise_equal(results[isa][0], results[fma[0]][0], isa)
        assert_bitwise_equal(results[isa][1], results[fma[0]][1], isa)
    for isa in AVAILABLE_ISAS:
        v, gr = results[isa]
        v0, g0 = results[AVAILABLE_ISAS[-1]]
        assert v == pytest.approx(v0, rel=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(gr, g0, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-14)
                                   * np.abs(g0).max())
