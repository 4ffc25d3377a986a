"""fastloss.scipy.linear_objective: fits with scipy.optimize.minimize equal scikit-learn's
LogisticRegression, HuberRegressor and QuantileRegressor on the same problems; the gradient and
Hessian-vector product against finite differences."""

import numpy as np
import pytest

import fastloss as fl

optimize = pytest.importorskip("scipy.optimize")
linear_model = pytest.importorskip("sklearn.linear_model")
from fastloss.scipy import linear_objective  # noqa: E402

TIGHT = {"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000}
BETA = np.array([1.0, -2.0, 0.5])


@pytest.fixture
def problem(rng):
    X = rng.normal(size=(300, 3))
    return X, rng.random(300) + 0.5, X @ BETA


def lbfgs(obj):
    return optimize.minimize(obj.fun, obj.x0, jac=True, method="L-BFGS-B", options=TIGHT)


def test_logistic_regression(problem, rng):
    X, w, f = problem
    y = (f + rng.normal(size=len(f)) > 0).astype(float)
    C = 0.5
    sk = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(X, y, sample_weight=w)
    # sklearn: 1/2 ||coef||^2 + C sum(w l) = C sum(w) (mean loss + l2/2 ||coef||^2), l2 = 1/(C sum(w))
    obj = linear_objective(fl.Logistic(), X, y, w, l2=1.0 / (C * w.sum()))
    res = optimize.minimize(obj.fun, obj.x0, jac=True, hessp=obj.hessp, method="Newton-CG",
                            options={"xtol": 1e-12})
    coef, intercept = obj.unpack(res.x)
    np.testing.assert_allclose(coef, sk.coef_[0], rtol=1e-5)
    assert intercept == pytest.approx(float(sk.intercept_[0]), abs=1e-5)


def test_multinomial_logistic_regression(problem, rng):
    X, w, f = problem
    y = np.digitize(f + rng.normal(size=len(f)), [-1.0, 1.0])
    C = 2.0
    sk = linear_model.LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(X, y, sample_weight=w)
    obj = linear_objective(fl.SparseCategoricalCrossEntropy(from_logits=True), X, y, w, l2=1.0 / (C * w.sum()))
    coef, intercept = obj.unpack(lbfgs(obj).x)
    np.testing.assert_allclose(coef, sk.coef_.T, atol=1e-5)  # both centered: sum over classes 0
    np.testing.assert_allclose(intercept - intercept.mean(), sk.intercept_ - sk.intercept_.mean(), atol=1e-5)


def test_huber_regressor(problem, rng):
    X, w, f = problem
    y = f + rng.standard_t(2, size=len(f))
    eps, alpha = 1.35, 0.01
    sk = linear_model.HuberRegressor(epsilon=eps, alpha=alpha, tol=1e-12, max_iter=10000).fit(X, y, sample_weight=w)
    # At its fitted scale s, HuberRegressor minimizes (2/s) sum(w Huber_{eps s}(r)) + alpha ||coef||^2.
    s = sk.scale_
    obj = linear_objective(fl.Huber(delta=eps * s, reduction="sum"), X, y, w, l2=alpha * s)
    coef, intercept = obj.unpack(lbfgs(obj).x)
    np.testing.assert_allclose(coef, sk.coef_, rtol=1e-5)
    assert intercept == pytest.approx(float(sk.intercept_), abs=1e-5)


def test_quantile_regressor(problem, rng):
    X, w, f = problem
    y = f + rng.standard_t(2, size=len(f))
    sk = linear_model.QuantileRegressor(quantile=0.8, alpha=0.0).fit(X, y, sample_weight=w)
    obj = linear_objective(fl.Quantile(quantile=0.8), X, y, w)
    res = lbfgs(obj)
    coef, intercept = obj.unpack(res.x)
    best = obj.fun(np.r_[sk.coef_, sk.intercept_])[0]  # the linear program's optimum
    # L-BFGS on a piecewise-linear objective stops near the LP vertex, not on it: the value
    # agrees to ~1e-5 relative, the coefficients (a flat optimum) to a few 1e-2.
    assert best - 1e-12 <= res.fun <= best * (1 + 1e-4)
    np.testing.assert_allclose(coef, sk.coef_, atol=0.1)
    assert intercept == pytest.approx(float(sk.intercept_), abs=0.1)


@pytest.mark.parametrize("loss, fit_intercept", [
    (fl.LogCosh(), True), (fl.Logistic(), False), (fl.MSE(reduction="sum"), True),
    (fl.Quantile(quantile=[0.2, 0.7]), True)])
def test_gradient_and_hessp_against_finite_differences(problem, rng, loss, fit_intercept):
    X, w, f = problem
    y = (f > 0).astype(float) if isinstance(loss, fl.Logistic) else f + rng.normal(size=len(f))
    obj = linear_objective(loss, X, y, w, l2=0.3, fit_intercept=fit_intercept)
    theta = rng.normal(size=obj.x0.size) * 0.3
    p = rng.normal(size=obj.x0.size)
    eps = 1e-6
    _, g = obj.fun(theta)
    fd = (obj.fun(theta + eps * p)[0] - obj.fun(theta - eps * p)[0]) / (2 * eps)
    assert float(g @ p) == pytest.approx(fd, rel=1e-6, abs=1e-8)
    if isinstance(loss, fl.Quantile):
        return  # a.e. Hessian: only the penalty
    fd_h = (obj.fun(theta + eps * p)[1] - obj.fun(theta - eps * p)[1]) / (2 * eps)
    np.testing.assert_allclose(obj.hessp(theta, p), fd_h, rtol=1e-5, atol=1e-7)


def test_shapes_and_errors(problem):
    X, w, f = problem
    assert linear_objective(fl.MSE(), X, f).x0.shape == (4,)
    assert linear_objective(fl.MSE(), X, f, fit_intercept=False).x0.shape == (3,)
    multi = linear_objective(fl.SparseCategoricalCrossEntropy(from_logits=True), X, (f > 0).astype(int) * 2)
    assert multi.n_outputs == 3 and multi.x0.shape == (12,)
    with pytest.raises(TypeError, match="L-BFGS"):
        multi.hessp(multi.x0, multi.x0)
    with pytest.raises(ValueError, match="from_logits=True"):
        linear_objective(fl.BinaryCrossEntropy(), X, f > 0)
    with pytest.raises(ValueError, match="same number of rows"):
        linear_objective(fl.MSE(), X, f[:-1])
    with pytest.raises(ValueError, match="2-D"):
        linear_objective(fl.MSE(), f, f)
    with pytest.raises(ValueError, match="reduction"):
        linear_objective(fl.MSE(reduction="none"), X, f)
    with pytest.raises(ValueError, match="l2"):
        linear_objective(fl.MSE(), X, f, l2=-1.0)
