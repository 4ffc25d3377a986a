#!/usr/bin/env python
"""Log-link likelihood losses: gradient + Hessian diagonal, fastloss vs scikit-learn's
``sklearn._loss`` and vs the machine's memory bandwidth (a triad measured in the same run).

For each loss, rounds interleave one fastloss ``grad_hess(y, z, reduction="sum")`` and one
scikit-learn ``gradient_hessian(y, z, n_threads=threads)``, both ways: into preallocated arrays
(``grad_out``/``hess_out``, ``gradient_out``/``hessian_out``) and into arrays each library
allocates itself (scikit-learn's default, and the call fastloss can serve with one read of the
labels: it checks them in the kernel's pass when no caller buffer could be written). The table
reports medians.

GB/s counts the 4 streams a gradient + Hessian must move (read y and z, write g and h; STREAM's
convention: write-allocate reads are not counted, nor is a label check's read of y), for fastloss
and for scikit-learn alike. "% triad" divides by the triad of ``TriadReference`` (the same
measurement as ``bench/bench_losses.py``: 2e7 float64 elements per array, before and after the
timings, whatever ``--n`` is), so the columns of both scripts compare::

    python bench/bench_likelihood.py                       # n = 1e7 float64, 2 threads
    python bench/bench_likelihood.py --n 1e6 --threads 1 --rounds 21

A last line times ``GaussianNLL`` (rows of (mean, log-variance)) value + gradient against PyTorch's
``gaussian_nll_loss(mean, y, var=exp(log_var))`` forward + backward on the same data, when torch is
installed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastloss as fl
from fastloss.benchmark.bandwidth import TriadReference
from fastloss.benchmark.timing import median


def _cases():
    from sklearn._loss import loss as sk

    return [
        ("poisson_nll", fl.PoissonNLL(), sk.HalfPoissonLoss(), "poisson"),
        ("gamma_nll", fl.GammaNLL(), sk.HalfGammaLoss(), "gamma"),
        ("tweedie_nll (p=1.5)", fl.TweedieNLL(power=1.5), sk.HalfTweedieLoss(power=1.5), "poisson"),
        ("tweedie_nll (p=3)", fl.TweedieNLL(power=3.0), sk.HalfTweedieLoss(power=3.0), "gamma"),
    ]


def _data(kind: str, n: int, rng: np.random.Generator):
    z = 0.5 + 0.5 * rng.standard_normal(n)
    y = rng.poisson(np.exp(z)).astype(np.float64) if kind == "poisson" else rng.gamma(2.0, np.exp(z) / 2)
    return y, z + 0.3 * rng.standard_normal(n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e7, help="elements (float64)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds (medians)")
    args = ap.parse_args(argv)
    n, threads = int(args.n), args.threads
    rng = np.random.default_rng(0)
    triad = TriadReference([threads])
    triad.sample()
    g, h = np.zeros(n), np.zeros(n)
    g2, h2 = np.zeros(n), np.zeros(n)
    fl_bytes = 4 * 8 * n
    rows = []
    with fl.num_threads(threads):
        for name, loss, sk, kind in _cases():
            y, z = _data(kind, n, rng)
            np.testing.assert_allclose(  # both compute the same thing before anything is timed
                loss.grad_hess(y[:1000], z[:1000], reduction="sum")[1],
                sk.gradient_hessian(y[:1000], z[:1000])[1], rtol=1e-10)

            def timed(f):
                def run():
                    t0 = time.perf_counter()
                    f()
                    return time.perf_counter() - t0
                return run

            steps = {
                "fl_out": timed(lambda: loss.grad_hess(y, z, reduction="sum", grad_out=g, hess_out=h)),
                "sk_out": timed(lambda: sk.gradient_hessian(y, z, gradient_out=g2, hessian_out=h2,
                                                             n_threads=threads)),
                "fl_new": timed(lambda: loss.grad_hess(y, z, reduction="sum")),
                "sk_new": timed(lambda: sk.gradient_hessian(y, z, n_threads=threads)),
            }
            for run in steps.values():
                run()  # warm-up
            t = {k: [] for k in steps}
            keys = list(steps)
            for k in range(args.rounds):
                for key in keys[k % 4:] + keys[:k % 4]:
                    t[key].append(steps[key]())
            rows.append((name, {key: median(v) for key, v in t.items()}))
    triad.sample()
    triad.close()
    tri_gbps = triad.gbps(threads)
    print(f"n = {n:.0e} float64, {threads} threads, {args.rounds} interleaved rounds (medians); "
          f"ISA {fl.build_info()['isa_selected']}; triad {tri_gbps:.1f} GB/s "
          f"({', '.join(f'{m} {v:.1f}' for m, v in triad.per_method(threads).items())}; "
          f"2e7 elements, before and after)")
    print(f"{'loss':22} {'outputs':9} {'fastloss ms':>11} {'sklearn ms':>10} {'speedup':>8} "
          f"{'GB/s':>6} {'% triad':>7} {'sklearn % triad':>15}")
    for name, m in rows:
        for label, f, s_ in (("caller's", m["fl_out"], m["sk_out"]), ("own", m["fl_new"], m["sk_new"])):
            gbps, sk_gbps = fl_bytes / f / 1e9, fl_bytes / s_ / 1e9
            print(f"{name:22} {label:9} {1e3 * f:11.2f} {1e3 * s_:10.2f} {s_ / f:7.1f}x {gbps:6.1f} "
                  f"{100 * gbps / tri_gbps:6.0f}% {100 * sk_gbps / tri_gbps:14.0f}%")
    _gaussian_vs_torch(n, threads, args.rounds, rng)
    return 0


def _gaussian_vs_torch(n: int, threads: int, rounds: int, rng: np.random.Generator) -> None:
    try:
        import torch
    except ImportError:
        print("gaussian_nll vs PyTorch: torch not installed, skipped")
        return
    torch.set_num_threads(threads)
    rows = n // 2
    y = rng.standard_normal(rows)
    pred = np.stack([y + rng.standard_normal(rows), 0.3 * rng.standard_normal(rows)], axis=1)
    g = np.empty_like(pred)
    loss, yt = fl.GaussianNLL(), torch.from_numpy(y)

    def torch_step():
        p = torch.from_numpy(pred).requires_grad_()
        v = torch.nn.functional.gaussian_nll_loss(p[:, 0], yt, torch.exp(p[:, 1]))
        v.backward()
        return v.item(), p.grad

    v_fl, g_fl = loss.value_and_grad(y, pred)
    v_t, g_t = torch_step()
    assert abs(v_fl - v_t) <= 1e-9 * abs(v_t) and np.allclose(g_fl, g_t.numpy(), atol=1e-12)
    t_fl, t_t = [], []
    with fl.num_threads(threads):
        for _ in range(rounds):
            t0 = time.perf_counter()
            loss.value_and_grad(y, pred, grad_out=g)
            t_fl.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            torch_step()
            t_t.append(time.perf_counter() - t0)
    print(f"gaussian_nll value + gradient, {rows} rows of (mean, log-variance): fastloss "
          f"{1e3 * median(t_fl):.2f} ms, PyTorch {1e3 * median(t_t):.2f} ms: "
          f"{median(t_t) / median(t_fl):.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())
