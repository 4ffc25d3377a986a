#!/usr/bin/env python
"""Exact gradient accumulation vs one full call (target: <= 1.2x the time).

Times, for an MSE over N elements (default 10^7) split into C micro-batches (default 100):

* ``full``: one ``MSE().value_and_grad(y, p, grad_out=g)`` (value and gradient of the mean);
* ``accumulate``: a ``GradientAccumulator(MSE())`` fed the C chunks, each ``update`` writing the
  gradient of its sum into its slice of ``g`` (``grad_out=``), then ``value()`` -- what a training
  loop does before back-propagating each chunk (the 1/N scale is applied once to the parameter
  gradients, not to ``g``);
* ``accumulate+scale``: the same plus ``g *= scale``, which reproduces the full call's gradient
  array exactly (one more pass over g; for information);
* ``bare chunks``: the same C kernel calls without the accumulator (``reduction="sum"``), which
  separates the accumulator's own cost from that of entering C parallel regions instead of one;
* the weighted variants (``sample_weight`` per element; the normalizer sums each chunk's weights).

Every repeat runs each variant once, in turn; the ratios are medians of per-repeat ratios. The
results are checked against the full call (value 1e-12 relative, gradient 1e-12 relative).

    python bench/bench_composite.py            # N = 1e7, C = 100, 21 repeats, float64 and float32
    python bench/bench_composite.py --quick    # 5 repeats, float64 only
    python bench/bench_composite.py --n 1e6 --chunks 10 --threads 1

On an oversubscribed machine (more runnable threads than cores) the timings are noisy; compare
with ``--threads 1`` (``bench/bench_threads.py`` measures the default threads against one thread
under load). The exit status is 1 when a result mismatches, never because of a timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import fastloss as fl


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(n: int, chunks: int, dtype, repeats: int, weighted: bool) -> dict:
    rng = np.random.default_rng(0)
    y = rng.standard_normal(n).astype(dtype)
    p = (y + rng.standard_normal(n)).astype(dtype)
    w = rng.uniform(0, 2, n) if weighted else None
    g_full = np.empty(n, dtype=dtype)
    g_acc = np.empty(n, dtype=dtype)
    loss = fl.MSE()
    cuts = np.linspace(0, n, chunks + 1).astype(np.int64)
    result = {}

    def full():
        result["full"] = loss.value_and_grad(y, p, w, grad_out=g_full)[0]

    def accumulate(scale=False):
        acc = fl.GradientAccumulator(loss)
        for a, b in zip(cuts[:-1], cuts[1:]):
            acc.update(y[a:b], p[a:b], None if w is None else w[a:b], grad_out=g_acc[a:b])
        result["acc"] = acc.value()
        if scale:
            np.multiply(g_acc, g_acc.dtype.type(acc.scale), out=g_acc)

    def bare_chunks():  # the same kernel calls without the accumulator: its own overhead apart
        for a, b in zip(cuts[:-1], cuts[1:]):
            loss.value_and_grad(y[a:b], p[a:b], None if w is None else w[a:b], reduction="sum",
                                grad_out=g_acc[a:b])

    variants = {"full": full, "bare chunks": bare_chunks, "accumulate": accumulate,
                "accumulate+scale": lambda: accumulate(scale=True)}
    for fn in variants.values():  # warm-up (pages touched, caches of the allocator)
        fn()
    # correctness: value and (scaled) gradient equal the full call's
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    value_err = abs(result["acc"] - result["full"]) / abs(result["full"])
    grad_err = float(np.max(np.abs(g_acc - g_full)) / np.max(np.abs(g_full)))
    ok = value_err <= rtol and grad_err <= rtol

    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            times[k].append(_time(fn))
    ratio = {k: statistics.median(t / f for t, f in zip(times[k], times["full"]))
             for k in variants if k != "full"}
    return {"median_s": {k: statistics.median(v) for k, v in times.items()}, "ratio": ratio,
            "value_rel_err": value_err, "grad_rel_err": grad_err, "ok": ok}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--quick", action="store_true", help="5 repeats, float64 only")
    ap.add_argument("--n", type=float, default=1e7, help="elements (default 1e7)")
    ap.add_argument("--chunks", type=int, default=100, help="micro-batches (default 100)")
    ap.add_argument("--repeats", type=int, help="interleaved repeats (default 21, quick 5)")
    ap.add_argument("--threads", type=int, help="fastloss threads (default: OMP_NUM_THREADS)")
    args = ap.parse_args(argv)
    n, repeats = int(args.n), args.repeats or (5 if args.quick else 21)
    dtypes = [np.float64] if args.quick else [np.float64, np.float32]
    if args.threads:
        fl.set_num_threads(args.threads)
    print(f"fastloss {fl.__version__}  isa={fl.build_info()['isa_selected']}  threads={fl.get_num_threads()}  N={n:.0e}  chunks={args.chunks}  repeats={repeats}")
    print(f"{'dtype':8} {'weights':8} {'full ms':>9} {'accum ms':>9} {'accum/full':>11} "
          f"{'+scale/full':>12} {'bare/full':>10} {'value err':>10} {'grad err':>10}")
    all_ok = True
    for dtype in dtypes:
        for weighted in (False, True):
            r = run(n, args.chunks, dtype, repeats, weighted)
            all_ok &= r["ok"]
            m = r["median_s"]
            print(f"{np.dtype(dtype).name:8} {('yes' if weighted else 'no'):8} "
                  f"{m['full'] * 1e3:9.2f} {m['accumulate'] * 1e3:9.2f} "
                  f"{r['ratio']['accumulate']:10.3f}x {r['ratio']['accumulate+scale']:11.3f}x "
                  f"{r['ratio']['bare chunks']:9.3f}x "
                  f"{r['value_rel_err']:10.1e} {r['grad_rel_err']:10.1e}"
                  + ("" if r["ok"] else "  MISMATCH"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
