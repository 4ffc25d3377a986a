"""check_grad: passes on every registered loss and on the objectives, catches wrong derivatives."""

import numpy as np
import pytest

import fastloss as fl
from fastloss import analysis as fa
from fastloss.cli import synthetic


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", [info.name for info in fl.losses()])
def test_every_registered_loss_passes(name, dtype):
    loss = fl.get_loss(name)
    # LambdaRank's default returns LightGBM's normalized lambdas: checked in its exact form
    loss = loss.replace(**getattr(loss, "exact_gradient_params", {}))
    y_true, y_pred, inputs = synthetic(loss, 60, seed=1, dtype=dtype)
    report = fa.check_grad(loss, y_true, y_pred, **inputs)
    assert report.all_passed, str(report)
    if not getattr(loss, "grads", ()) and not isinstance(y_pred, list):  # one input, y_pred
        assert report.n_checked == min(y_pred.size, 200)
    assert report.rtol == fa.gradcheck.DEFAULT_RTOL[np.dtype(dtype)]


class _WrongGradient(fl.Huber):  # no function_name: not registered
    def value_and_grad(self, y_true, y_pred, sample_weight=None, **kw):
        value, grad = super().value_and_grad(y_true, y_pred, sample_weight, **kw)
        grad = grad.copy()
        grad[7] *= 1.01  # one element 1 % off
        return value, grad


class _WrongHessian(fl.LogCosh):
    def grad_hess(self, y_true, y_pred, sample_weight=None, **kw):
        grad, hess = super().grad_hess(y_true, y_pred, sample_weight, **kw)
        return grad, 2 * hess


def test_catches_a_wrong_gradient():
    loss = _WrongGradient()
    y, p, _ = synthetic(loss, 50, seed=2)
    report = fa.check_grad(loss, y, p, hessian=False)
    assert not report.passed and not report.all_passed
    assert report.worst_index == (7,)
    assert report.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-4)  # relative to the larger
    assert "FAIL" in str(report)


def test_catches_a_wrong_hessian():
    loss = _WrongHessian()
    y, p, _ = synthetic(loss, 50, seed=2)
    report = fa.check_grad(loss, y, p)
    assert report.passed and not report.hessian.passed and not report.all_passed


def test_objective_check_and_wrong_objective_gradient(rng):
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 2, 40).astype(float)
    m = fa.MLP([3, 4, 1])
    obj = fa.Objective(m, X, y, fl.BinaryCrossEntropy(from_logits=True), l2=0.1)
    theta = m.init_params(0)
    assert fa.check_grad(obj, theta).all_passed
    assert fa.check_grad(obj.astype(np.float32), theta).all_passed

    class Wrong(fa.Objective):
        def value_and_grad(self, theta):
            v, g = super().value_and_grad(theta)
            return v, g - 0.05 * self.l2 * theta  # forgets part of the penalty's gradient

    report = fa.check_grad(Wrong(m, X, y, fl.BinaryCrossEntropy(from_logits=True), l2=0.1), theta,
                           hessian=False)
    assert not report.passed


def test_reduction_weights_and_subset():
    loss = fl.MSE()
    rng = np.random.default_rng(0)
    y, p, w = rng.standard_normal(500), rng.standard_normal(500), rng.random(500)
    for reduction in ("mean", "sum", "none"):
        assert fa.check_grad(loss, y, p, sample_weight=w, reduction=reduction).all_passed
    assert fa.check_grad(loss, y, p, max_elements=50).n_checked == 50


def test_errors():
    with pytest.raises(TypeError, match="Loss or an objective"):
        fa.check_grad(lambda x: x, np.zeros(3))
    with pytest.raises(TypeError, match="y_true and y_pred"):
        fa.check_grad(fl.MSE(), np.zeros(3))
    with pytest.raises(TypeError, match="float32 or float64"):
        fa.check_grad(fl.MSE(), np.zeros(3), np.zeros(3, dtype=np.int64))
