#!/usr/bin/env python
"""Optimal transport and adversarial losses: fastloss vs SciPy / POT / NumPy, ratios measured in the
same run (median of several interleaved repeats)::

    python bench/bench_transport.py            # n = 10^6 (1-D), 1000 x 1000 (Sinkhorn)
    python bench/bench_transport.py --quick    # smaller sizes, fewer repeats
    OPENBLAS_NUM_THREADS=1 python bench/bench_transport.py --threads 1   # one core each side

On a machine whose cores are busy, compare single-threaded: an idle-spinning or descheduled thread
makes every multi-threaded BLAS call (POT) or OpenMP region pay a scheduler time slice, which
swamps the ratios.

Cases:
  w1d        exact 1-D Wasserstein p = 1, value AND gradient (fastloss) vs SciPy's
             wasserstein_distance (value only) and POT's wasserstein_1d (value only)
  sinkhorn   entropic OT on a 1000 x 1000 squared-Euclidean cost (normalized by its max), same
             epsilon and the same stopping rule (column marginal error ||P^T 1 - b||_2 < tol) vs
             POT's NumPy backend: ot.sinkhorn2 method="sinkhorn" (scaling form) and
             method="sinkhorn_log" (log domain, like fastloss)
  sliced     sliced Wasserstein, same projections, value + gradient vs POT (value only)
  gan        non-saturating discriminator loss, value + both gradients vs a NumPy composition
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

import fastloss as fl
from fastloss.benchmark.timing import median_times


def row(name, ours, base, base_name, note=""):
    print(f"{name:<34} fastloss {ours * 1e3:9.2f} ms   {base_name:<26} {base * 1e3:9.2f} ms   "
          f"x{base / ours:6.2f}  {note}")


def bench_w1d(n, repeats):
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    u, v = rng.standard_normal(n), rng.standard_normal(n) * 1.5 + 0.3
    loss = fl.Wasserstein1D(p=1)
    value, _ = loss.value_and_grad(u, v)
    assert abs(value - wasserstein_distance(u, v)) <= 1e-9 * value
    fns = [lambda: loss.value_and_grad(u, v), lambda: wasserstein_distance(u, v)]
    names = ["scipy wasserstein_distance"]
    try:
        import ot

        fns.append(lambda: ot.wasserstein_1d(u, v, p=1))
        names.append("POT wasserstein_1d")
    except ImportError:
        pass
    times = median_times(fns, repeats)
    for base, name in zip(times[1:], names):
        row(f"w1d n={n:.0e} p=1 value+grad f64", times[0], base, name, "(baseline: value only)")
    u32, v32 = u.astype(np.float32), v.astype(np.float32)
    t32, t_scipy = median_times([lambda: loss.value_and_grad(u32, v32),
                                 lambda: wasserstein_distance(u, v)], repeats)
    row(f"w1d n={n:.0e} p=1 value+grad f32", t32, t_scipy, names[0], "(baseline: value only, f64)")


def bench_sinkhorn(n, repeats, reg, tol):
    try:
        import ot
    except ImportError:
        print("sinkhorn: POT not installed (pip install pot); skipped")
        return
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 2)), rng.standard_normal((n, 2)) + 1.0
    M = ot.dist(x, y)
    M /= M.max()
    a = b = np.full(n, 1.0 / n)
    r = fl.sinkhorn(cost=M, a=a, b=b, epsilon=reg, tol=tol, max_iter=100000)
    cost_pot, log = ot.sinkhorn2(a, b, M, reg, stopThr=tol, numItermax=100000, log=True)
    print(f"sinkhorn {n}x{n} eps={reg} tol={tol}: fastloss {r.n_iter} iterations (error checked "
          f"every iteration), POT {log['niter']} (every 10); cost rel diff "
          f"{abs(r.cost - float(cost_pot)) / float(cost_pot):.1e}")
    fns = [lambda: fl.sinkhorn(cost=M, a=a, b=b, epsilon=reg, tol=tol, max_iter=100000),
           lambda: ot.sinkhorn2(a, b, M, reg, stopThr=tol, numItermax=100000),
           lambda: ot.sinkhorn2(a, b, M, reg, method="sinkhorn_log", stopThr=tol, numItermax=100000)]
    t = median_times(fns, repeats)
    row(f"sinkhorn {n}x{n} f64", t[0], t[1], "POT sinkhorn (scaling)")
    row(f"sinkhorn {n}x{n} f64", t[0], t[2], "POT sinkhorn_log")
    M32 = M.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r32 = fl.sinkhorn(cost=M32, epsilon=reg, tol=1e-6, max_iter=100000)
        t32, t_pot = median_times([lambda: fl.sinkhorn(cost=M32, epsilon=reg, tol=1e-6, max_iter=100000),
                                   lambda: ot.sinkhorn2(a, b, M, reg, stopThr=1e-6, numItermax=100000)],
                                  repeats)
    row(f"sinkhorn {n}x{n} f32 tol=1e-6", t32, t_pot, "POT sinkhorn f64 tol=1e-6",
        f"({r32.n_iter} iterations)")


def bench_sliced(n, repeats):
    try:
        import ot
    except ImportError:
        return
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) + 0.5
    theta = fl.random_projections(3, 50, 0)
    loss = fl.SlicedWasserstein(p=2)
    t = median_times([lambda: loss.value_and_grad(x, y, projections=theta),
                      lambda: ot.sliced_wasserstein_distance(x, y, projections=theta, p=2)], repeats)
    row(f"sliced n={n:.0e} d=3 L=50 value+grad", t[0], t[1], "POT sliced (value only)")


def bench_gan(n, repeats):
    rng = np.random.default_rng(0)
    zr, zf = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    gan = fl.AdversarialLoss("non_saturating")

    def numpy_composition():
        value = np.mean(np.logaddexp(0, -zr)) + np.mean(np.logaddexp(0, zf))
        g_real = -1 / (1 + np.exp(zr)) / n
        g_fake = 1 / (1 + np.exp(-zf)) / n
        return value, g_real, g_fake

    t = median_times([lambda: gan.discriminator_value_and_grad(zr, zf), numpy_composition], repeats)
    row(f"gan D loss n={n:.0e} f32 value+grads", t[0], t[1], "NumPy composition")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--epsilon", type=float, default=0.01, help="Sinkhorn epsilon (cost/max)")
    parser.add_argument("--tol", type=float, default=1e-9, help="Sinkhorn marginal tolerance")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastloss threads (set OPENBLAS_NUM_THREADS alike for NumPy/POT)")
    args = parser.parse_args(argv)
    if args.threads:
        fl.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    info = fl.build_info()
    print(f"fastloss {fl.__version__}  isa={info.get('isa_selected')}  threads={fl.get_num_threads()}")
    bench_w1d(10**5 if args.quick else 10**6, repeats)
    bench_sinkhorn(300 if args.quick else 1000, repeats, args.epsilon, args.tol)
    bench_sliced(10**4 if args.quick else 10**5, repeats)
    bench_gan(10**5 if args.quick else 10**6, repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
