"""Objectives, Hessian-vector products and Lanczos curvature (fastloss.analysis) against dense
references written from the formulas."""

import numpy as np
import pytest

import fastloss as fl
from fastloss import analysis as fa


def _logistic_problem(rng, n=300, d=12, l2=1e-3, dtype=np.float64):
    X = rng.standard_normal((n, d)) * np.logspace(0, -2, d)
    y = (rng.random(n) < 0.5).astype(np.float64)
    model = fa.LogisticRegression(d)
    return fa.Objective(model, X.astype(dtype), y, l2=l2), model.init_params(1, dtype=dtype), X, y


def _logistic_hessian(X, theta, l2):
    """Dense Hessian of mean logistic loss + l2/2 ||theta||^2 from the formula X^T diag(s(1-s)/n) X."""
    n, d = X.shape
    Xa = np.c_[X, np.ones(n)]
    s = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
    return Xa.T @ (Xa * (s * (1 - s) / n)[:, None]) + l2 * np.eye(d + 1)


def _central_hvp(objective, theta, v, h=1e-5):
    return (objective.grad(theta + h * v) - objective.grad(theta - h * v)) / (2 * h)


def test_linear_hvp_is_exact_and_matches_dense_hessian_and_differences(rng):
    obj, theta, X, _ = _logistic_problem(rng)
    assert obj.hvp_exact
    H = _logistic_hessian(X, theta, obj.l2)
    v = rng.standard_normal(obj.n_params)
    np.testing.assert_allclose(obj.hvp(theta, v), H @ v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(obj.hvp(theta, v), _central_hvp(obj, theta, v), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(obj.hessian(theta), H, rtol=1e-12, atol=1e-15)


def test_mse_linear_regression_hessian():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((50, 4)), rng.standard_normal(50)
    obj = fa.Objective(fa.LinearRegression(4, fit_intercept=False), X, y)
    np.testing.assert_allclose(obj.hessian(np.zeros(4)), 2 * X.T @ X / 50, rtol=1e-12)


@pytest.mark.parametrize("model", ["softmax", "mlp"])
def test_central_difference_hvp_matches_differences_of_the_value(model, rng):
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    m = fa.SoftmaxRegression(4, 3) if model == "softmax" else fa.MLP([4, 5, 3], activation="tanh")
    obj = fa.Objective(m, X, y, fl.SparseCategoricalCrossEntropy(from_logits=True), l2=1e-2)
    assert not obj.hvp_exact
    theta = m.init_params(0) + 0.1 * rng.standard_normal(m.n_params)
    # the Hessian from second differences of the value alone (independent of grad and hvp)
    h, n = 1e-4, obj.n_params
    E = np.eye(n) * h
    H = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            H[i, j] = H[j, i] = (obj.value(theta + E[i] + E[j]) - obj.value(theta + E[i] - E[j])
                                 - obj.value(theta - E[i] + E[j]) + obj.value(theta - E[i] - E[j])) / (4 * h * h)
    v = rng.standard_normal(n)
    np.testing.assert_allclose(obj.hvp(theta, v), H @ v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("block_size", [1, 4])
@pytest.mark.parametrize("which", ["top", "bottom", "both"])
def test_lanczos_matches_dense_eigh(which, block_size, rng):
    obj, theta, X, _ = _logistic_problem(rng)
    exact = np.linalg.eigh(_logistic_hessian(X, theta, obj.l2))[0][::-1]
    spec = fa.hessian_eigenvalues(obj, theta, k=3, which=which, tol=1e-8, seed=1, block_size=block_size)
    want = {"top": exact[:3], "bottom": exact[-3:], "both": np.r_[exact[:3], exact[-3:]]}[which]
    assert spec.converged
    np.testing.assert_allclose(spec.eigenvalues, want, rtol=1e-8)
    H = _logistic_hessian(X, theta, obj.l2)
    for lam, vec in zip(spec.eigenvalues, spec.eigenvectors.T):
        np.testing.assert_allclose(H @ vec, lam * vec, atol=1e-6 * exact[0])


@pytest.mark.parametrize("block_size", [1, 3])
def test_lanczos_finds_repeated_eigenvalues_after_restart(block_size, rng):
    # 5 samples, 10 features: the eigenvalue l2 has multiplicity 6; a full run must find all copies
    X, y = rng.standard_normal((5, 10)), rng.integers(0, 2, 5).astype(float)
    obj = fa.Objective(fa.LogisticRegression(10), X, y, l2=0.1)
    theta = np.zeros(11)
    spec = fa.hessian_eigenvalues(obj, theta, k=11, which="top", block_size=block_size)
    np.testing.assert_allclose(spec.eigenvalues, np.linalg.eigvalsh(obj.hessian(theta))[::-1],
                               rtol=1e-10, atol=1e-12)
    assert np.sum(np.isclose(spec.eigenvalues, 0.1)) == 6
    assert spec.n_matvec == 11


def test_softmax_and_mlp_spectrum_against_dense(rng):
    X, y = rng.standard_normal((40, 3)), rng.integers(0, 3, 40)
    m = fa.MLP([3, 4, 3])
    obj = fa.Objective(m, X, y, fl.SparseCategoricalCrossEntropy(from_logits=True))
    theta = m.init_params(2)
    exact = np.linalg.eigvalsh(obj.hessian(theta))
    spec = fa.hessian_eigenvalues(obj, theta, k=2, which="both", tol=1e-10)
    np.testing.assert_allclose(spec.eigenvalues, np.r_[exact[::-1][:2], exact[::-1][-2:]],
                               rtol=1e-6, atol=1e-9)


def test_condition_number_trace_and_reproducibility(rng):
    obj, theta, X, _ = _logistic_problem(rng)
    exact = np.linalg.eigvalsh(_logistic_hessian(X, theta, obj.l2))
    assert fa.condition_number(obj, theta, tol=1e-10) == pytest.approx(float(exact[-1] / exact[0]), rel=1e-6)
    t = fa.hutchinson_trace(obj, theta, n_samples=200, seed=5)
    assert abs(t.value - exact.sum()) < 5 * t.stderr
    assert t.stderr > 0
    a = fa.hessian_eigenvalues(obj, theta, k=2, seed=7, tol=1e-3)
    b = fa.hessian_eigenvalues(obj, theta, k=2, seed=7, tol=1e-3)
    assert np.array_equal(a.eigenvalues, b.eigenvalues) and a.iterations == b.iterations
    assert fa.hutchinson_trace(obj, theta, 20, seed=1).value == fa.hutchinson_trace(obj, theta, 20, seed=1).value


class _Quadratic:
    """f(theta) = 1/2 theta^T H theta with a fixed H: a saddle at 0 when H is indefinite."""

    dtype = np.dtype(np.float64)

    def __init__(self, H):
        self.H, self.n_params = H, H.shape[0]

    def grad(self, theta):
        return self.H @ theta

    def hvp(self, theta, v):
        return self.H @ v


def test_detect_saddle():
    saddle = fa.detect_saddle(_Quadratic(np.diag([3.0, 1.0, -0.5])), np.zeros(3))
    assert saddle.is_saddle and saddle.negative_curvature
    assert saddle.min_eigenvalue == pytest.approx(-0.5)
    assert abs(saddle.direction[2]) == pytest.approx(1.0)
    minimum = fa.detect_saddle(_Quadratic(np.diag([3.0, 1.0, 0.5])), np.zeros(3))
    assert not minimum.negative_curvature and not minimum.is_saddle
    away = fa.detect_saddle(_Quadratic(np.diag([3.0, -1.0])), np.ones(2))
    assert away.negative_curvature and not away.is_saddle  # negative curvature, not a critical point


def test_float32_objective(rng):
    obj64, theta, X, _ = _logistic_problem(rng)
    obj32 = obj64.astype(np.float32)
    v = rng.standard_normal(obj64.n_params)
    assert obj32.grad(theta).dtype == np.float32 and obj32.hvp(theta, v).dtype == np.float32
    np.testing.assert_allclose(obj32.hvp(theta, v), obj64.hvp(theta, v), rtol=1e-4, atol=1e-6)


def test_objective_errors(rng):
    obj, theta, _, _ = _logistic_problem(rng)
    with pytest.raises(ValueError, match="theta must have shape"):
        obj.value(theta[:-1])
    with pytest.raises(ValueError, match="v must have the shape"):
        obj.hvp(theta, theta[:-1])
    with pytest.raises(ValueError, match="X must have shape"):
        fa.LinearModel(3).predict(np.zeros(4), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="rows"):
        fa.Objective(fa.LinearRegression(2), np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="which"):
        fa.hessian_eigenvalues(obj, theta, which="middle")
    with pytest.raises(ValueError, match="k must lie"):
        fa.hessian_eigenvalues(obj, theta, k=0)
