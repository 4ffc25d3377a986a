#!/usr/bin/env python
"""The integrations' performance targets, as ratios measured in the same run (medians).

1. XGBoost focal objective call on ``--rows`` rows (10^6): ``fastloss.xgboost.Objective`` vs the
   focal objective a user writes in NumPy (same formula: gradient and exact Hessian).
   Target: >= 10x.
2. XGBoost training time per round with that objective vs the built-in ``binary:logistic``.
   Target: within 1.2x.
3. Dask: the MSE value over ``--size`` float32 elements, two arrays persisted on a
   ``distributed.LocalCluster`` of 2 worker processes x 1 thread (block i of both arrays on one
   worker, as data read by rows is), vs in-memory fastloss over the same numbers in this process
   with as many threads in total (``--threads``, default 2 on a 2-core machine); asserted equal
   before timing. Target: >= 80 % of the in-memory throughput from 10^7 elements up. Both sides
   do the same work: read both arrays once and return the value as a float here. Also printed:
   the value and gradient, in memory (``value_and_grad``: the gradient in this process) vs
   ``fastloss.dask.value_and_grad`` with the value returned here and the gradient persisted on the
   workers (where it is computed; it is not gathered); the same two on dask's threaded scheduler
   (in-memory blocks, no cluster); the bytes moved between workers during the timings (the
   blocks' partials; with small blocks the scheduler may also move a gradient block to scale it); and the cluster's fixed costs with no work, which bound the
   ratio at small sizes: an empty compute (one no-op task), one no-op task reading one block, and
   a no-op graph of the same shape (a task per block reading its two blocks, then a root).

    python bench/bench_integrations.py --quick
    python bench/bench_integrations.py --only dask --size 1e7 1e8 4e8   # 4e8: 1.6 GB per array
    python bench/bench_integrations.py --only xgboost

Timings are wall-clock medians over ``--repeats`` rounds; within a round the compared functions
run one after the other, and a ratio is the median of the per-round ratios (robust to a machine
whose load changes). The Dask part holds the arrays on the cluster and in this process at once
(about 10 GB at 4e8 with the gradients). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np

import fastloss as fl

GAMMA, ALPHA = 2.0, 0.25
FOCAL = fl.BinaryFocal(gamma=GAMMA, alpha=ALPHA, from_logits=True)


def paired_times(fns: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, List[float]]:
    """Times of each function over ``repeats`` rounds, the functions interleaved within a round
    so that a change of the machine's load hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def ratio(times: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over the rounds of the per-round ratio ``num / den``."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def median(xs: List[float]) -> float:
    return statistics.median(xs)


def numpy_focal_objective(predt: np.ndarray, dtrain):
    """The focal objective as users write it in NumPy (float64; gradient and exact Hessian of
    l = -a_t (1 - p_t)^g log p_t with respect to the margin)."""
    y = dtrain.get_label().astype(np.float64)
    z = predt.astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    pt = np.where(y == 1, p, 1 - p)
    at = np.where(y == 1, ALPHA, 1 - ALPHA)
    s = 2 * y - 1                       # dp_t/dz = s p_t (1 - p_t)
    q = 1 - pt
    logpt = np.log(np.clip(pt, 1e-300, None))
    # d l / d p_t and d2 l / d p_t2
    d1 = at * (GAMMA * q ** (GAMMA - 1) * logpt - q ** GAMMA / pt)
    d2 = at * (-GAMMA * (GAMMA - 1) * q ** (GAMMA - 2) * logpt
               + 2 * GAMMA * q ** (GAMMA - 1) / pt + q ** GAMMA / pt ** 2)
    dpt = s * pt * q
    d2pt = s * s * pt * q * (1 - 2 * pt)
    return d1 * dpt, d2 * dpt ** 2 + d1 * d2pt


def bench_xgboost(rows: int, rounds: int, repeats: int, threads: int) -> None:
    import xgboost as xgb

    from fastloss.xgboost import Objective

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 10)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] + rng.normal(size=rows) > 2.5).astype(np.float32)
    dtrain = xgb.DMatrix(X, label=y)
    margins = (rng.normal(size=rows)).astype(np.float32)  # XGBoost hands float32 margins

    ours_exact = Objective(FOCAL, hessian="exact")
    ours_default = Objective(FOCAL)  # hessian="fisher": the focal Hessian can be negative
    g_ref, h_ref = numpy_focal_objective(margins, dtrain)
    g, h = ours_exact(margins, dtrain)
    err = max(np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)), np.max(np.abs(h - h_ref)) / np.max(np.abs(h_ref)))
    t = paired_times({"numpy": lambda: numpy_focal_objective(margins, dtrain),
                      "exact": lambda: ours_exact(margins, dtrain),
                      "default": lambda: ours_default(margins, dtrain)}, 3 * repeats)
    print(f"\n[1] XGBoost focal objective call, {rows:.0e} rows, float32 margins, "
          f"{fl.get_num_threads()} fastloss threads (max rel. diff vs NumPy {err:.1e})")
    print(f"    NumPy focal objective             {median(t['numpy']) * 1e3:8.2f} ms")
    print(f"    fastloss Objective(exact)         {median(t['exact']) * 1e3:8.2f} ms   "
          f"{ratio(t, 'numpy', 'exact'):6.1f}x faster   (target >= 10x)")
    print(f"    fastloss Objective(fisher, dflt)  {median(t['default']) * 1e3:8.2f} ms   "
          f"{ratio(t, 'numpy', 'default'):6.1f}x faster")

    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "base_score": 0.0, "max_bin": 256,
              "nthread": threads}

    def train(**kw):
        return lambda: xgb.train(dict(params, **kw.get("params", {})), dtrain, rounds, obj=kw.get("obj"))

    t = paired_times({"builtin": train(params={"objective": "binary:logistic", "base_score": 0.5}),
                      "ours": train(obj=ours_default), "numpy": train(obj=numpy_focal_objective)}, repeats)
    print(f"\n[2] XGBoost training, {rows:.0e} rows x 10 features, depth 6, hist, {rounds} rounds, "
          f"{threads} threads (per round)")
    print(f"    built-in binary:logistic          {median(t['builtin']) / rounds * 1e3:8.1f} ms")
    print(f"    fastloss focal objective          {median(t['ours']) / rounds * 1e3:8.1f} ms   "
          f"{ratio(t, 'ours', 'builtin'):5.2f}x the built-in   (target <= 1.2x)")
    print(f"    NumPy focal objective             {median(t['numpy']) / rounds * 1e3:8.1f} ms   "
          f"{ratio(t, 'numpy', 'builtin'):5.2f}x the built-in")


def _noop(*args) -> float:
    return 0.0


def _gather_blocks(client, x) -> np.ndarray:
    """A persisted 1-d dask array as one NumPy array, fetched block by block. ``x.compute()``
    would first gather every block on one worker (a task concatenating them), leaving copies
    there; when the cluster later drops one of two copies, block i of ``y`` and ``p`` may end up
    on different workers, and every timed call would then move blocks between workers."""
    import distributed

    futures = {f.key: f for f in distributed.futures_of(x)}
    return np.concatenate(client.gather([futures[k] for k in x.__dask_keys__()]))


def _bytes_received(dask_worker) -> int:
    """Bytes this worker has fetched from other workers (and forgets the log)."""
    total = sum(t["total"] for t in dask_worker.transfer_incoming_log)
    dask_worker.transfer_incoming_log.clear()
    return total


def bench_dask(size: int, chunk: int, repeats: int) -> None:
    import dask
    import dask.array as da
    import distributed

    from fastloss.dask import loss_value, value_and_grad

    mse = fl.MSE()
    chunk = chunk or min(25_000_000, -(-size // 8))  # at least 8 blocks (4 per worker)
    print(f"\n[3] MSE over {size:.1e} float32 elements ({size * 4 / 1e9:.2f} GB per array), "
          f"chunks of {chunk:.2e}, load average {os.getloadavg()[0]:.1f}")
    # no work stealing: it may move a slice task of the inputs, and with it a block, to the other worker
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                     dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        # y and p drawn block by block together, so that block i of both lives on one worker
        # (as data loaded by rows would): the kernel task then moves no array between workers
        yp = client.persist(da.random.default_rng(1).standard_normal((2, size), chunks=(2, chunk),
                                                                    dtype=np.float32))
        distributed.wait(yp)
        y, p = client.persist([yp[0], yp[1]])  # each slice task runs where its block lies
        distributed.wait([y, p])
        del yp

        def apart() -> int:  # blocks i whose y and p no worker holds both of
            wy, wp = client.who_has(y), client.who_has(p)
            return sum(not set(wy[ky]) & set(wp[kp]) for ky, kp in zip(y.__dask_keys__(), p.__dask_keys__()))

        threads = client.run(lambda: fl.get_num_threads())
        # The same numbers in this process, in fresh (aligned) buffers like any a user allocates
        y_mem, p_mem = _gather_blocks(client, y), _gather_blocks(client, p)
        value, expected = loss_value(mse, y, p).compute(), mse(y_mem, p_mem)
        assert abs(value - expected) <= 1e-12 * abs(expected), (value, expected)
        apart_before = apart()
        # The same graph shape with no work: one task per block reading its two blocks, one root
        blocks = list(zip(y.to_delayed().ravel(), p.to_delayed().ravel()))

        def value_and_persisted_grad():
            # the value as a float here, the gradient (as large as y_pred) kept on the workers:
            # both persisted in one graph, then the value fetched (no task runs for it)
            v, g = client.persist(value_and_grad(mse, y, p))
            distributed.wait(g)
            return v.compute()

        client.run(_bytes_received)
        t = paired_times({
            "memory": lambda: mse(y_mem, p_mem),
            "dask": lambda: loss_value(mse, y, p).compute(),
            "memory grad": lambda: mse.value_and_grad(y_mem, p_mem),
            "grad": value_and_persisted_grad,
            "empty": lambda: dask.delayed(_noop)().compute(),
            "one task": lambda: dask.delayed(_noop)(blocks[0][0]).compute(),
            "shape": lambda: dask.delayed(_noop)(*[dask.delayed(_noop)(a, b) for a, b in blocks]).compute(),
        }, repeats)
        moved = sum(client.run(_bytes_received).values())
        apart_after = apart()
    y_local, p_local = da.from_array(y_mem, chunks=chunk), da.from_array(p_mem, chunks=chunk)
    local = paired_times({"memory": lambda: mse(y_mem, p_mem),
                          "threaded": lambda: loss_value(mse, y_local, p_local).compute(scheduler="threads"),
                          "memory grad": lambda: mse.value_and_grad(y_mem, p_mem),
                          "threaded grad": lambda: dask.persist(*value_and_grad(mse, y_local, p_local),
                                                                scheduler="threads")},
                         repeats)
    t_mem = median(t["memory"])

    def line(label, times, name, reference=None):
        s = median(times[name])
        print(f"    {label:<68} {s * 1e3:9.2f} ms {size / s / 1e9:6.2f} G elements/s"
              + (f" {ratio(times, reference, name) * 100:5.1f} %" if reference else ""))

    line(f"in-memory fastloss ({fl.get_num_threads()} threads)", t, "memory")
    line(f"fastloss.dask, 2 workers x 1 thread (fastloss threads: {sorted(set(threads.values()))})",
         t, "dask", "memory")
    line("value and gradient, in memory", t, "memory grad")
    line("value and gradient, fastloss.dask (gradient kept on the workers)", t, "grad", "memory grad")
    line("fastloss.dask, dask's threaded scheduler, the same blocks", local, "threaded", "memory")
    line("value and gradient, dask's threaded scheduler (gradient persisted)", local, "threaded grad",
         "memory grad")
    print(f"    {y_local.numblocks[0]} blocks; blocks i of y and p on no common worker: {apart_before} before the timings, "
          f"{apart_after} after; {moved / 1e3:.1f} kB moved between workers during them")
    print("    the cluster's fixed costs (no work):")
    print(f"    {'an empty compute (one no-op task)':<68} {median(t['empty']) * 1e3:9.2f} ms")
    print(f"    {'one no-op task reading one block':<68} {median(t['one task']) * 1e3:9.2f} ms")
    print(f"    {'a no-op graph of the same shape (a task per block, a root)':<68} {median(t['shape']) * 1e3:9.2f} ms")
    print(f"    80 % of the in-memory throughput needs the whole compute within {t_mem / 0.8 * 1e3:.2f} ms "
          f"(target >= 80 %, load average {os.getloadavg()[0]:.1f})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (~1 min)")
    ap.add_argument("--rows", type=float, default=1e6, help="XGBoost rows (default 1e6)")
    ap.add_argument("--rounds", type=int, default=20, help="XGBoost boosting rounds timed")
    ap.add_argument("--size", type=float, nargs="+", default=[1e8],
                    help="Dask elements per array, one or several (4e8: 1.6 GB per array)")
    ap.add_argument("--chunk", type=float, default=0,
                    help="Dask chunk length (default: size/8, at most 2.5e7)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=fl.get_num_threads(),
                    help="threads of in-memory fastloss and of XGBoost (default: fastloss's)")
    ap.add_argument("--only", choices=("xgboost", "dask"))
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.rounds, args.size, args.chunk, args.repeats = 2e5, 5, [1e7], 0, 3
    info = fl.build_info()
    print(f"fastloss {fl.__version__}, {os.cpu_count()} CPUs, ISA {info['isa_selected']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    fl.set_num_threads(args.threads)
    if args.only in (None, "xgboost"):
        bench_xgboost(int(args.rows), args.rounds, args.repeats, args.threads)
    if args.only in (None, "dask"):
        for size in args.size:
            bench_dask(int(size), int(args.chunk), args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
