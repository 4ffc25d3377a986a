"""Curvature of an objective from Hessian-vector products (spec 7.1, 7.2): extreme eigenvalues by
Lanczos, the condition number, Hutchinson's trace estimate, and saddle detection. Every random
start is drawn from ``seed``: the same seed gives the same numbers.

Lanczos keeps every basis vector and re-orthogonalizes each new one against all of them (twice,
classical Gram-Schmidt), so the Ritz values carry no spurious copies; if the Krylov space becomes
invariant it restarts from a fresh random vector orthogonal to the basis, so after ``n`` steps
the Ritz values are the whole spectrum, multiplicities included. It stops when the wanted Ritz
pairs have residual ``||H y - t y|| = beta_m |s_mi| <= tol * max|t|`` (tested every
``max(1, m // 20)`` steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["Spectrum", "lanczos", "hessian_eigenvalues", "condition_number", "hutchinson_trace",
           "TraceEstimate", "SaddleReport", "detect_saddle"]


@dataclass
class Spectrum:
    """Extreme eigenpairs: ``eigenvalues`` in decreasing order, ``eigenvectors[:, i]`` unit vectors."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    which: str
    iterations: int
    converged: bool
    n_matvec: int
    residuals: np.ndarray

    @property
    def condition_number(self) -> float:
        """``lambda_max / lambda_min`` when both ends were computed (``which="both"``); inf when
        ``lambda_min <= 0`` (not positive definite)."""
        if self.which != "both":
            raise ValueError("the condition number needs which='both'")
        lo, hi = float(self.eigenvalues[-1]), float(self.eigenvalues[0])
        return hi / lo if lo > 0 else float("inf")


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices into the ascending Ritz values ``theta`` of the ones asked for."""
    m = len(theta)
    if which == "top":
        return np.arange(max(m - k, 0), m)
    if which == "bottom":
        return np.arange(min(k, m))
    return np.unique(np.r_[np.arange(min(k, m)), np.arange(max(m - k, 0), m)])


def lanczos(matvec: Callable[[np.ndarray], np.ndarray], n: int, k: int = 5, which: str = "top",
            tol: float = 1e-6, max_iter: Optional[int] = None, seed: Any = 0,
            dtype=np.float64) -> Spectrum:
    """The ``k`` largest (``"top"``), smallest (``"bottom"``) or both (``"both"``: k of each)
    eigenpairs of the symmetric operator ``matvec`` on R^n."""
    if which not in ("top", "bottom", "both"):
        raise ValueError(f"which must be 'top', 'bottom' or 'both'; got {which!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, n = {n}]; got {k}")
    max_iter = n if max_iter is None else min(int(max_iter), n)
    rng = np.random.default_rng(seed)
    Q = np.zeros((max_iter + 1, n), dtype=dtype)
    alpha, beta = np.zeros(max_iter), np.zeros(max_iter)

    def fresh() -> np.ndarray:  # a random unit vector orthogonal to the current basis
        q = rng.standard_normal(n).astype(dtype)
        for _ in range(2):
            q -= Q[:j].T @ (Q[:j] @ q)
        return q / np.linalg.norm(q)

    j = 0
    Q[0] = fresh()
    n_matvec, converged, norm_est = 0, False, np.finfo(dtype).tiny
    need = min(k if which != "both" else 2 * k, n)
    while True:
        w = np.asarray(matvec(Q[j]), dtype=dtype)
        n_matvec += 1
        alpha[j] = float(Q[j] @ w)
        for _ in range(2):  # full re-orthogonalization
            w -= Q[:j + 1].T @ (Q[:j + 1] @ w)
        beta[j] = float(np.linalg.norm(w))
        norm_est = max(norm_est, abs(alpha[j]) + beta[j] + (beta[j - 1] if j else 0.0))  # >= ||T||
        m = j + 1
        # The convergence test (an eigh of T) every max(1, m // 20) steps: at most 5 % extra
        # steps, and far fewer small LAPACK calls, which cost more than an HVP on small problems.
        last = m == max_iter
        if last or (m >= need and m % max(1, m // 20) == 0):
            T = np.diag(alpha[:m]) + np.diag(beta[:m - 1], 1) + np.diag(beta[:m - 1], -1)
            theta, S = np.linalg.eigh(T)
            want = _wanted(theta, k, which)
            scale = max(float(np.max(np.abs(theta))), np.finfo(dtype).tiny)
            if m >= need and (m == n or np.all(beta[j] * np.abs(S[-1, want]) <= tol * scale)):
                converged = True
                break
            if last:
                break
        if beta[j] <= np.sqrt(np.finfo(dtype).eps) * norm_est:  # invariant subspace: restart
            beta[j] = 0.0
            j += 1
            Q[j] = fresh()
        else:
            j += 1
            Q[j] = w / beta[j - 1]
    order = want[::-1]  # decreasing
    return Spectrum(eigenvalues=theta[order], eigenvectors=Q[:m].T @ S[:, order], which=which,
                    iterations=m, converged=converged, n_matvec=n_matvec,
                    residuals=beta[j] * np.abs(S[-1, order]))


def hessian_eigenvalues(objective, theta, k: int = 5, which: str = "top", tol: float = 1e-6,
                        max_iter: Optional[int] = None, seed: Any = 0) -> Spectrum:
    """Extreme Hessian eigenpairs of ``objective`` at ``theta`` by Lanczos on its HVPs."""
    theta = np.asarray(theta, dtype=objective.dtype)
    return lanczos(lambda v: objective.hvp(theta, v), objective.n_params, k, which, tol, max_iter,
                   seed, dtype=np.float64)


def condition_number(objective, theta, tol: float = 1e-6, max_iter: Optional[int] = None,
                     seed: Any = 0) -> float:
    """``lambda_max / lambda_min`` of the Hessian (inf unless positive definite). The smallest
    eigenvalue of an ill-conditioned Hessian converges slowly: raise ``max_iter`` (up to
    ``n_params``, where it is exact) when ``Spectrum.converged`` is False."""
    return hessian_eigenvalues(objective, theta, 1, "both", tol, max_iter, seed).condition_number


@dataclass
class TraceEstimate:
    value: float
    stderr: float
    n_samples: int


def hutchinson_trace(objective, theta, n_samples: int = 100, seed: Any = 0) -> TraceEstimate:
    """``tr(H) ~ mean(z^T H z)`` over Rademacher vectors ``z`` (Hutchinson 1990); ``stderr`` is
    the standard error of that mean."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2; got {n_samples}")
    theta = np.asarray(theta, dtype=objective.dtype)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_samples)
    for i in range(n_samples):
        z = rng.integers(0, 2, objective.n_params).astype(objective.dtype) * 2 - 1
        samples[i] = float(z @ objective.hvp(theta, z))
    return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(n_samples)),
                         n_samples)


@dataclass
class SaddleReport:
    """``negative_curvature``: the Hessian has an eigenvalue below ``-tol * |lambda_max|``;
    ``is_saddle``: that, at a (near-)critical point (``grad_norm <= grad_tol``). ``direction`` is
    the unit eigenvector of ``min_eigenvalue``: a step along it decreases the loss (spec 7.1)."""

    negative_curvature: bool
    is_saddle: bool
    min_eigenvalue: float
    max_eigenvalue: float
    direction: np.ndarray
    grad_norm: float


def detect_saddle(objective, theta, tol: float = 1e-6, grad_tol: float = 1e-5,
                  max_iter: Optional[int] = None, seed: Any = 0) -> SaddleReport:
    theta = np.asarray(theta, dtype=objective.dtype)
    spec = hessian_eigenvalues(objective, theta, 1, "both", tol=1e-6, max_iter=max_iter, seed=seed)
    lo, hi = float(spec.eigenvalues[-1]), float(spec.eigenvalues[0])
    negative = lo < -tol * max(abs(hi), abs(lo))
    grad_norm = float(np.linalg.norm(objective.grad(theta)))
    return SaddleReport(negative, negative and grad_norm <= grad_tol, lo, hi,
                        spec.eigenvectors[:, -1], grad_norm)
