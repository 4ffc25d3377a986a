"""Threads on a busy machine: fastloss with its default thread count against one thread.

Starts busy processes itself (pure-Python spin loops, one per busy core), then times each case with
the default number of threads and with one thread under the same load, in alternating order. A
ratio (default time / one-thread time) near 1 or below means the default threads never cost more
than running serially; a large ratio means a thread waited for a core held by another process.

    python bench/bench_threads.py            # ~2 min: idle, one busy process, every core busy
    python bench/bench_threads.py --quick    # < 1 min
    python bench/bench_threads.py --loads all --cases mse_1e5,sce --repeats 21

The ratio per repeat is taken from two samples measured back to back, and the median over repeats
is printed, so slow moments of a shared machine hit both sides. Timing never sets the exit status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

import fastloss as fl

_SPIN = "while True:\n    pass\n"


def _cases(names: List[str]) -> Dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    out: Dict[str, Callable[[], object]] = {}
    mse = fl.MSE()
    for name, n in (("mse_1e5", 10**5), ("mse_1e6", 10**6), ("mse_1e7", 10**7)):
        if name not in names:
            continue
        yt = rng.standard_normal(n)
        yp = yt + rng.standard_normal(n)
        g = np.empty_like(yp)
        out[name] = lambda yt=yt, yp=yp, g=g: mse.value_and_grad(yt, yp, grad_out=g)
    if "sce" in names:
        rows, k = 8192, 1000
        logits = rng.standard_normal((rows, k)).astype(np.float32)
        labels = rng.integers(0, k, rows)
        g = np.empty_like(logits)
        sce = fl.SparseCategoricalCrossEntropy()
        out["sce"] = lambda: sce.value_and_grad(labels, logits, grad_out=g)
    return out


_LABELS = {
    "mse_1e5": "MSE float64 v+g n=1e5",
    "mse_1e6": "MSE float64 v+g n=1e6",
    "mse_1e7": "MSE float64 v+g n=1e7",
    "sce": "sparse CE 8192x1000 float32 v+g",
}


def _sample(fn: Callable[[], object], threads: int, k: int) -> float:
    with fl.num_threads(threads):
        fn()  # wake this configuration's threads: steady state, as in a loop of calls
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return (time.perf_counter() - t0) / k


def _measure(
    fn: Callable[[], object], threads: int, repeats: int, min_sample: float
) -> Tuple[float, float, float]:
    """Median default time, median one-thread time (seconds), median per-repeat ratio."""
    one = min(_sample(fn, 1, 1) for _ in range(3))
    k = max(1, math.ceil(min_sample / max(one, 1e-7)))
    t_def: List[float] = []
    t_one: List[float] = []
    for r in range(repeats):
        order = (threads, 1) if r % 2 == 0 else (1, threads)
        got = {t: _sample(fn, t, k) for t in order}
        t_def.append(got[threads])
        t_one.append(got[1])
    ratios = [d / o for d, o in zip(t_def, t_one)]
    return statistics.median(t_def), statistics.median(t_one), statistics.median(ratios)


def _spinners(count: int) -> List[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN]) for _ in range(count)]
    time.sleep(0.3)  # let them reach the loop
    return procs


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter repeats (< 1 min)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--loads", default="idle,1,all", help="idle, 1 (one busy process), all (one per core)"
    )
    ap.add_argument("--cases", default="mse_1e5,mse_1e6,mse_1e7,sce")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)

    cores = os.cpu_count() or 1
    threads = fl.get_num_threads()
    repeats = args.repeats or (5 if args.quick else 11)
    min_sample = 0.02 if args.quick else 0.05
    cases = _cases(args.cases.split(","))
    loads = {"idle": 0, "1": 1, "all": cores}
    print(
        f"cores {cores}, default threads {threads}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, load average before start "
        f"{os.getloadavg()[0]:.1f}; {repeats} repeats, medians"
    )
    print(f"{'busy processes':<16}{'case':<34}{'default ms':>11}{'1 thread ms':>13}{'ratio':>8}")
    results = []
    for load in args.loads.split(","):
        busy = loads[load]
        procs = _spinners(busy)
        try:
            for name, fn in cases.items():
                d, o, ratio = _measure(fn, threads, repeats, min_sample)
                print(f"{busy:<16}{_LABELS[name]:<34}{d * 1e3:>11.3f}{o * 1e3:>13.3f}{ratio:>8.2f}")
                results.append(dict(busy=busy, case=name, default_s=d, one_thread_s=o, ratio=ratio))
                sys.stdout.flush()
        finally:
            for p in procs:
                p.kill()
                p.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cores=cores, threads=threads, results=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
