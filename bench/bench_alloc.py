#!/usr/bin/env python
"""Fresh outputs: the cost of new pages, and what fastloss's cache of freed blocks saves.

For each case three calls are timed, interleaved in rounds (medians): outputs into preallocated
caller buffers (``grad_out=``), fresh outputs with the cache of freed blocks (the default), and
fresh outputs with the cache off (``fl.set_buffer_cache(0)``: every large output is new memory
from the system, its pages faulted and zeroed on first touch, as with NumPy's own allocation)::

    python bench/bench_alloc.py              # 2 threads
    python bench/bench_alloc.py --threads 1 --rounds 21

Cases: MSE value + gradient of 10^7 values (float32, float64), sparse softmax cross-entropy
65536 x 1000 float32 value + gradient, PoissonNLL gradient + Hessian of 10^7 float64, CoxPH
value + gradient + Hessian of 10^6 (float64; its scratch comes from the same cache).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastloss as fl


def _cases(rng):
    n = 10**7
    for dt in (np.float32, np.float64):
        y, z = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
        g = np.zeros_like(z)
        yield (f"MSE value+grad 1e7 {np.dtype(dt).name}",
               lambda y=y, z=z: fl.MSE().value_and_grad(y, z),
               lambda y=y, z=z, g=g: fl.MSE().value_and_grad(y, z, grad_out=g))
    logits = rng.standard_normal((65536, 1000)).astype(np.float32)
    labels = rng.integers(0, 1000, 65536)
    g = np.zeros_like(logits)
    sce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    yield ("sparse softmax CE 65536x1000 float32", lambda: sce.value_and_grad(labels, logits),
           lambda: sce.value_and_grad(labels, logits, grad_out=g))
    z = 0.5 * rng.standard_normal(n)
    y = rng.poisson(np.exp(z)).astype(np.float64)
    g, h = np.zeros_like(z), np.zeros_like(z)
    yield ("PoissonNLL grad+hess 1e7 float64", lambda: fl.PoissonNLL().grad_hess(y, z),
           lambda: fl.PoissonNLL().grad_hess(y, z, grad_out=g, hess_out=h))
    m = 10**6
    eta = rng.standard_normal(m)
    t = np.round(rng.exponential(size=m) * np.exp(-eta), 3) + 1e-3
    event = rng.random(m) < 0.7
    g, h = np.zeros_like(eta), np.zeros_like(eta)
    cox = fl.CoxPH(reduction="sum")
    yield ("CoxPH value+grad+hess 1e6 float64", lambda: cox.value_grad_hess(t, eta, event=event),
           lambda: cox.value_grad_hess(t, eta, event=event, grad_out=g, hess_out=h))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=11, help="interleaved rounds (medians)")
    args = ap.parse_args(argv)
    fl.set_num_threads(args.threads)
    limit = fl.buffer_cache_info()["limit"] or 512 << 20
    print(f"{args.threads} threads, {args.rounds} interleaved rounds (medians); cache limit "
          f"{limit >> 20} MiB when on")
    print(f"{'case':40s} {'caller ms':>10s} {'fresh ms':>9s} {'no cache':>9s} {'saved':>6s}")
    previous = fl.set_buffer_cache(limit)
    try:
        for name, fresh, caller in _cases(np.random.default_rng(0)):
            times = {"caller": [], "fresh": [], "off": []}
            for _ in range(args.rounds):
                for kind, fn in (("caller", caller), ("fresh", fresh), ("off", fresh)):
                    fl.set_buffer_cache(0 if kind == "off" else limit)
                    fn()  # untimed: the cache fills, or the previous call's pages are gone
                    start = time.perf_counter()
                    fn()
                    times[kind].append(time.perf_counter() - start)
            med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            print(f"{name:40s} {med['caller']:10.2f} {med['fresh']:9.2f} {med['off']:9.2f} "
                  f"{med['off'] / med['fresh']:5.2f}x")
    finally:
        fl.set_buffer_cache(previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
