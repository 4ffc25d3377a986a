"""Benchmark of fastloss.analysis curvature on a logistic-regression objective, against two targets:

1. top-5 Hessian eigenvalues by Lanczos in <= 1.5x the time of 50 exact HVPs;
2. one exact HVP in <= 2x the time of two matrix-vector products with X (``X @ v`` and ``X.T @ u``).

The problem is ``fastloss.analysis.commands.ill_conditioned_logistic`` (feature scales spanning
sqrt(condition), L2 1e-4) at the zero vector, 10^5 samples x 1000 features by default; ``--iid``
adds the same sizes with i.i.d. Gaussian features (a clustered Marchenko-Pastur spectrum, the hard
case for Lanczos). Timings are medians of ``--repeats`` runs, ratios taken within the same run.
The Lanczos result is checked (not timed) against ``numpy.linalg.eigvalsh`` of the dense Hessian
built from its formula: the top-k must agree to ``--tol`` relative to the largest. Exit status 1 if a check fails, never for a timing.

    python bench/bench_landscape.py            # 1e5 x 1000, float64
    python bench/bench_landscape.py --quick    # 2e4 x 500
    python bench/bench_landscape.py --quick --eigsh --n 20000 --d 300   # vs SciPy's eigsh
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fastloss as fl
from fastloss.analysis import Objective, LogisticRegression, hessian_eigenvalues
from fastloss.analysis.commands import ill_conditioned_logistic
from fastloss.benchmark.timing import median_times


def _dense_hessian(objective: Objective, theta) -> np.ndarray:
    """The Hessian from its formula, independently of the HVP code: [X 1]^T diag(h) [X 1] + l2 I,
    accumulated over row chunks (h: the loss's Hessian diagonal at the predictions)."""
    X = objective.X
    h = objective.loss.grad_hess(objective.y, objective.model.predict(theta, X))[1]
    H = np.zeros((X.shape[1] + 1,) * 2)
    for start in range(0, X.shape[0], 8192):
        Xa = np.c_[X[start:start + 8192], np.ones(min(8192, X.shape[0] - start))]
        H += Xa.T @ (Xa * h[start:start + 8192, None])
    return H + objective.l2 * np.eye(len(H))


def bench_problem(label: str, objective: Objective, theta, k: int, tol: float, repeats: int,
                  block_size=None) -> bool:
    X = objective.X
    rng = np.random.default_rng(0)
    v = rng.standard_normal(objective.n_params)
    u = rng.standard_normal(X.shape[0])
    w = v[:X.shape[1]].copy()
    objective.hvp(theta, v)  # warm: predictions and the loss's Hessian diagonal cached at theta
    t_hvp, t_2mv = median_times([lambda: objective.hvp(theta, v), lambda: (X @ w, X.T @ u)],
                                 3 * repeats)
    block_used = 1 if block_size is None else block_size

    def lanczos(block=block_used):
        objective._cache.clear()  # include the one-time cost of the Hessian diagonal
        return hessian_eigenvalues(objective, theta, k=k, which="top", tol=tol, seed=0,
                                   block_size=block)

    fns = [lambda: [objective.hvp(theta, v) for _ in range(50)], lanczos]
    if block_used != 1:  # the single-vector Lanczos, for comparison
        fns.append(lambda: lanczos(1))
    t_50, t_lanczos, *t_single = median_times(fns, max(1, repeats // 2))
    spec = lanczos()
    n_single = lanczos(1).n_matvec if block_used != 1 else None
    exact = np.linalg.eigvalsh(_dense_hessian(objective, theta))[::-1][:k]
    rel_err = np.abs(spec.eigenvalues - exact) / exact[0]
    ok = bool(spec.converged and np.all(rel_err <= tol))
    print(f"\n{label}: n={X.shape[0]}, d={X.shape[1]}, {X.dtype}, threads={fl.get_num_threads()}")
    print(f"  top-{k} eigenvalues: " + "  ".join(f"{e:.6g}" for e in spec.eigenvalues)
          + f"   ({spec.iterations} Lanczos steps, {spec.n_matvec} HVPs; vs dense eigh: max rel. error "
          f"{rel_err.max():.1e}, "
          f"{'OK' if ok else 'CHECK FAILED'})")
    print(f"  one HVP {t_hvp * 1e3:8.2f} ms   two X matvecs {t_2mv * 1e3:8.2f} ms   "
          f"ratio {t_hvp / t_2mv:5.2f}  (target <= 2)")
    print(f"  Lanczos top-{k} (block {block_used}) {t_lanczos * 1e3:8.1f} ms   50 HVPs {t_50 * 1e3:8.1f} ms"
          f"   ratio {t_lanczos / t_50:5.2f}  (target <= 1.5)")
    if block_used != 1:
        print(f"  single-vector Lanczos ({n_single} HVPs) {t_single[0] * 1e3:8.1f} ms   ratio to 50 HVPs "
              f"{t_single[0] / t_50:5.2f}")
    return ok


def compare_eigsh(objective: Objective, theta, k: int, tol: float) -> None:
    """Our Lanczos against SciPy's ``eigsh`` (ARPACK) on a ``LinearOperator`` of the same HVP, at
    the same relative tolerance: HVPs used and wall time, for each end of the spectrum."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = objective.n_params
    print(f"  Lanczos vs SciPy eigsh (ARPACK), k={k}, tol={tol:g}:")
    for which, arpack in (("top", "LA"), ("bottom", "SA")):
        t0 = time.perf_counter()
        ours = hessian_eigenvalues(objective, theta, k=k, which=which, tol=tol, seed=0)
        t_ours = time.perf_counter() - t0
        count = [0]

        def matvec(v):
            count[0] += 1 if v.ndim == 1 else v.shape[1]
            return objective.hvp(theta, v.reshape(n, -1)).reshape(v.shape)

        op = LinearOperator((n, n), matvec=matvec, matmat=matvec, dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n)
        t0 = time.perf_counter()
        theirs = eigsh(op, k=k, which=arpack, tol=tol, v0=v0, maxiter=100 * n,
                       return_eigenvectors=False)
        t_theirs = time.perf_counter() - t0
        agree = np.max(np.abs(np.sort(theirs)[::-1] - ours.eigenvalues) / np.abs(ours.eigenvalues))
        print(f"    {which:6s}  Lanczos {ours.n_matvec:6d} HVPs {t_ours * 1e3:9.1f} ms   eigsh "
              f"{count[0]:6d} HVPs {t_theirs * 1e3:9.1f} ms   (eigenvalues agree to {agree:.1e})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2e4 x 500, fewer repeats")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--d", type=int, default=None)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--tol", type=float, default=1e-3, help="Lanczos relative residual tolerance")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None, help="Lanczos block size (default 1; "
                   "another value also times the single-vector run)")
    p.add_argument("--iid", action="store_true", help="also run i.i.d. Gaussian features")
    p.add_argument("--eigsh", action="store_true",
                   help="also count HVPs and time SciPy's eigsh on the same problem, both ends")
    args = p.parse_args(argv)
    n = args.n or (20_000 if args.quick else 100_000)
    d = args.d or (500 if args.quick else 1000)
    repeats = args.repeats or (3 if args.quick else 5)
    dtype = np.dtype(args.dtype)
    objective, theta = ill_conditioned_logistic(n, d, condition=1e4, seed=0, dtype=dtype)
    ok = bench_problem("ill-conditioned logistic regression (condition 1e4)", objective, theta,
                       args.k, args.tol, repeats, args.block_size)
    if args.eigsh:
        compare_eigsh(objective, theta, args.k, args.tol)
    if args.iid:
        del objective
        rng = np.random.default_rng(1)
        X = rng.standard_normal((n, d)).astype(dtype)
        y = (rng.random(n) < 0.5).astype(np.float64)
        objective = Objective(LogisticRegression(d), X, y, l2=1e-4)
        ok &= bench_problem("i.i.d. Gaussian features", objective, theta, args.k, args.tol, repeats,
                            args.block_size)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
