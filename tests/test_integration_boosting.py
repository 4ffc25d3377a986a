"""The core every boosting adapter shares (fastloss._boosting): per-sample derivatives at raw
margins against NumPy references, the Hessian policy, label conversion, the best constant margin,
pickling and errors. No booster needed."""

import pickle

import numpy as np
import pytest

import fastloss as fl
from fastloss._boosting import BoostingObjective, best_constant

import reference as R

pytest.importorskip("scipy")


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax_ref(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def binary(rng):
    n = 257
    return (rng.random(n) < 0.3).astype(np.float32), rng.normal(0, 3, n), rng.random(n) + 0.5


def test_exact_policy_is_the_weighted_kernel_derivative(binary):
    y, z, w = binary
    g, h = BoostingObjective(fl.BinaryFocal(gamma=2.0, from_logits=True), hessian="exact").grad_hess(y, z, w)
    _, g_ref, h_ref = R.focal_logits(y.astype(np.float64), z, gamma=2.0)
    np.testing.assert_allclose(g, w * g_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, w * h_ref, rtol=1e-10, atol=1e-15)
    assert (h_ref < 0).any(), "the focal Hessian is negative somewhere: the policies matter"


def test_clip_policy_floors_per_unit_weight(binary):
    y, z, w = binary
    floor = 0.05
    g, h = BoostingObjective(fl.BinaryFocal(gamma=2.0, from_logits=True), hessian="clip",
                             floor=floor).grad_hess(y, z, w)
    _, g_ref, h_ref = R.focal_logits(y.astype(np.float64), z, gamma=2.0)
    np.testing.assert_allclose(g, w * g_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, w * np.maximum(h_ref, floor), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("loss, fisher", [
    (fl.BinaryFocal(gamma=2.0, from_logits=True), lambda y, z: sigmoid(z) * sigmoid(-z)),
    (fl.SmoothHinge(), lambda y, z: sigmoid(z) * sigmoid(-z)),
    (fl.Quantile(quantile=0.8), lambda y, z: np.ones_like(z)),
    (fl.MAE(), lambda y, z: np.ones_like(z)),
], ids=["focal", "smooth_hinge", "quantile", "mae"])
def test_fisher_policy(binary, loss, fisher):
    y, z, w = binary
    g, h = BoostingObjective(loss, hessian="fisher").grad_hess(y, z, w)
    g_ref = loss.grad_hess(y, z, reduction="none")[0]
    np.testing.assert_allclose(g, w * g_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, w * np.maximum(fisher(y, z), 1e-16), rtol=1e-12)


def test_fisher_policy_multiclass(rng):
    z = rng.normal(0, 2, (50, 4))
    y = rng.integers(0, 4, 50).astype(np.float32)
    g, h = BoostingObjective(fl.SparseCategoricalFocal(gamma=1.0), hessian="fisher").grad_hess(y, z)
    p = softmax_ref(z)
    np.testing.assert_allclose(h, p * (1 - p), rtol=1e-12)
    assert g.shape == h.shape == z.shape


def test_default_policy_by_loss():
    assert BoostingObjective(fl.MSE()).hessian == "clip"
    assert BoostingObjective(fl.Logistic()).hessian == "clip"
    assert BoostingObjective(fl.SparseCategoricalCrossEntropy(from_logits=True)).hessian == "clip"
    for loss in (fl.MAE(), fl.Huber(), fl.Quantile(), fl.Hinge(), fl.BinaryFocal(from_logits=True)):
        assert BoostingObjective(loss).hessian == "fisher", loss


def test_float32_labels_with_float64_and_float32_margins(rng):
    y = rng.integers(0, 2, 100).astype(np.float32)
    z = rng.normal(size=100)
    obj = BoostingObjective(fl.Logistic())
    for margin in (z, z.astype(np.float32)):
        g, h = obj.grad_hess(y, margin)
        assert g.dtype == h.dtype == margin.dtype and g.shape == margin.shape
        _, g_ref, h_ref = R.logistic(y.astype(np.float64), margin.astype(np.float64))
        tol = 1e-12 if margin.dtype == np.float64 else 2e-6
        np.testing.assert_allclose(g, g_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(h, h_ref, rtol=tol, atol=tol)


def test_multi_output_labels_stored_flat(rng):
    z = rng.normal(size=(30, 3))
    y = rng.normal(size=(30, 3))
    obj = BoostingObjective(fl.Quantile(quantile=[0.1, 0.5, 0.9]), hessian="exact")
    g_flat, _ = obj.grad_hess(y.ravel(), z)
    g_full, _ = obj.grad_hess(y, z)
    np.testing.assert_array_equal(g_flat, g_full)


def test_multiclass_labels_must_be_integers():
    obj = BoostingObjective(fl.SparseCategoricalCrossEntropy(from_logits=True))
    with pytest.raises(ValueError, match="integer class indices"):
        obj.grad_hess(np.array([0.5, 1.0]), np.zeros((2, 3)))


def test_errors():
    with pytest.raises(ValueError, match="from_logits=True"):
        BoostingObjective(fl.BinaryCrossEntropy())
    with pytest.raises(ValueError, match="hessian"):
        BoostingObjective(fl.MSE(), hessian="newton")
    with pytest.raises(ValueError, match="floor"):
        BoostingObjective(fl.MSE(), floor=-1.0)
    with pytest.raises(TypeError, match="loss"):
        BoostingObjective(lambda y, p: 0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        BoostingObjective("nope")


def test_picklable():
    obj = BoostingObjective(fl.BinaryFocal(gamma=2.0, alpha=0.75, from_logits=True), hessian="clip", floor=1e-3)
    back = pickle.loads(pickle.dumps(obj))
    y, z = np.array([0.0, 1.0]), np.array([0.3, -2.0])
    for a, b in zip(obj.grad_hess(y, z), back.grad_hess(y, z)):
        np.testing.assert_array_equal(a, b)


def test_best_constant(rng):
    y = rng.normal(2.0, 1.0, 501)
    w = rng.random(501) + 0.1
    assert best_constant(fl.MSE(), y) == pytest.approx(float(y.mean()), rel=1e-7)
    assert best_constant(fl.MSE(), y, w) == pytest.approx(float(np.average(y, weights=w)), rel=1e-7)
    assert best_constant(fl.MAE(), y) == pytest.approx(float(np.median(y)), abs=1e-6)  # odd n: unique
    assert best_constant("quantile", y) == pytest.approx(float(np.median(y)), abs=1e-6)
    # n = 501: the 0.9-pinball loss has its unique minimum at the 451st order statistic
    assert best_constant(fl.Quantile(quantile=0.9), y) == pytest.approx(float(np.sort(y)[450]), abs=1e-6)
    yb = (rng.random(400) < 0.2).astype(np.float32)
    logit = float(np.log(yb.mean() / (1 - yb.mean())))
    assert best_constant(fl.Logistic(), yb) == pytest.approx(logit, abs=1e-6)
    assert best_constant(fl.BinaryCrossEntropy(from_logits=True), yb) == pytest.approx(logit, abs=1e-6)
    yc = rng.integers(0, 3, 300)
    c = best_constant(fl.SparseCategoricalCrossEntropy(from_logits=True), yc)
    np.testing.assert_allclose(softmax_ref(c[None, :])[0], np.bincount(yc) / 300, atol=1e-6)


def test_families_without_a_known_fisher_curvature():
    class Other(fl.MSE):  # not registered: no kernel name of its own
        family, convex = "similarity", False

    assert BoostingObjective(Other()).hessian == "clip"
    with pytest.raises(ValueError, match="no Fisher curvature"):
        BoostingObjective(Other(), hessian="fisher")


@pytest.mark.parametrize("loss", [fl.BinaryFocal(gamma=2.0, from_logits=True), fl.MAE()],
                         ids=["binary", "regression"])
@pytest.mark.parametrize("hessian", ["fisher", "clip"])
def test_integer_margins_give_float_derivatives(loss, hessian):
    # An integer margin is computed in float64: the curvature must not come back in the margin's
    # integer dtype (weights of 0.5 made the regression Fisher curvature all zeros in int8).
    obj = BoostingObjective(loss, hessian=hessian)
    y = np.array([0.0, 1.0, 1.0, 0.0])
    margin = np.array([-1, 0, 2, 1], dtype=np.int8)
    w = np.full(4, 0.5)
    grad, hess = obj.grad_hess(y, margin, w)
    ref_grad, ref_hess = obj.grad_hess(y, margin.astype(np.float64), w)
    assert grad.dtype == hess.dtype == np.float64
    np.testing.assert_array_equal(grad, ref_grad)
    np.testing.assert_array_equal(hess, ref_hess)
    assert np.all(hess > 0)
