"""Timing primitives of the benchmark: interleaved samples, paired speedups, and the
helpers every measurement shares (touched buffers, optional imports, BLAS thread limits)."""

from __future__ import annotations

import gc
import itertools
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np


# Timing budgets. A "sample" is k back-to-back calls of one implementation (k calibrated so
# that a sample lasts at least sample_s); a "repeat" is one sample of every implementation.
# repeats = clamp(ceil(target_s / sample time of the slowest one), min, max); past max_s
# seconds no further repeat starts once min are done.
# gap_s: pause between samples of implementations with different thread pools (see measure).
FULL = dict(sample_s=0.010, target_s=0.20, min_repeats=5, max_repeats=25, triad_repeats=9,
             overhead_samples=101, gap_s=0.010, max_s=5.0)
QUICK = dict(sample_s=0.002, target_s=0.02, min_repeats=3, max_repeats=7, triad_repeats=7,
              overhead_samples=41, gap_s=0.010, max_s=0.5)

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def touched(shape: Any, dtype: Any, fill: float = 0.0) -> np.ndarray:
    """An array whose pages are all faulted in (np.empty/np.zeros map them lazily)."""
    a = np.empty(shape, dtype=dtype)
    a.fill(fill)
    return a


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def try_import(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # ImportError, or a broken install raising something else
        return None


class BlasThreads:
    """Limits BLAS threads (NumPy's ``dot``) to ``n`` inside the block, when threadpoolctl is
    installed; otherwise does nothing. The NumPy baselines run with one BLAS thread: NumPy's
    ufuncs are single-threaded anyway, and idle OpenBLAS workers busy-wait long enough after a
    threaded ``dot`` to slow down whatever runs next on a small machine."""

    def __init__(self, n: int) -> None:
        self.n, self._ctx = n, None

    def __enter__(self) -> "BlasThreads":
        tpc = try_import("threadpoolctl")
        if tpc is not None:
            self._ctx = tpc.threadpool_limits(limits=self.n, user_api="blas")
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

def median_times(fns: Sequence[Callable[[], Any]], repeats: int) -> List[float]:
    """Median seconds of each callable, the calls interleaved (same machine state for all)."""
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for t, f in zip(times, fns):
            start = time.perf_counter()
            f()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def time_calls(fn: Callable[[], Any], k: int) -> float:
    """Seconds per call, over k back-to-back calls."""
    loop = itertools.repeat(None, k)
    t0 = time.perf_counter()
    for _ in loop:
        fn()
    return (time.perf_counter() - t0) / k


def measure(impls: Dict[str, Callable[[], Any]], budget: Dict[str, Any],
             repeats: Optional[int], pools: Optional[Dict[str, str]] = None,
             gap_s: float = 0.0) -> Dict[str, Dict[str, Any]]:
    """Interleaved timing: each repeat runs one sample of every implementation, rotating the
    order. Returns per implementation: calls per sample, per-call times of each repeat.

    ``pools`` names the thread pool each implementation uses (fastloss, torch and scikit-learn
    each bring their own OpenMP runtime). An OpenMP worker spins for a few milliseconds after
    its parallel region before it sleeps; on a machine with as many cores as threads the next
    implementation's threads would fight that spinner. So when the previous sample used another
    pool, the harness first sleeps ``gap_s`` and then makes one untimed call, so that the timed
    calls find their own pool awake (steady state, as in a loop of calls), not asleep."""
    names = list(impls)
    pools = pools or {}
    last_pool: List[Optional[str]] = [None]

    def settle(nm: str) -> bool:
        """Pauses if the previous sample used another thread pool; True if it paused and this
        implementation has a pool of its own to wake up."""
        paused = gap_s > 0 and last_pool[0] is not None and last_pool[0] != pools.get(nm)
        if paused:
            time.sleep(gap_s)
        last_pool[0] = pools.get(nm)
        return paused and pools.get(nm) is not None

    calls: Dict[str, int] = {}
    est: Dict[str, float] = {}
    for name in names:  # warm-up (first call: lazy init, page faults) then calibrate
        fn = impls[name]
        settle(name)
        fn()
        # timeit-style autorange: k = 1, 2, 5, 10, 20, ... until k calls last >= sample_s / 2
        # (one call alone misleads on a busy machine, where it may be far from typical).
        k = 1
        for step in itertools.cycle((2, 2.5, 2)):
            t = time_calls(fn, k)
            if t * k >= budget["sample_s"] / 2 or k >= 1_000_000:
                break
            k = int(k * step)
        if t * k < 3 * budget["sample_s"]:
            # Cheap enough to retry: keep the fastest of three, so that one preemption of a
            # worker thread during calibration does not shrink k to 1 and leave every sample
            # exposed to it (a loop of calls amortizes such events; a single call does not).
            t = min(t, time_calls(fn, k), time_calls(fn, k))
        est[name] = t
        calls[name] = max(1, int(math.ceil(budget["sample_s"] / max(t, 1e-9))))
    adaptive = repeats is None
    if repeats is None:
        slowest = max(calls[nm] * est[nm] for nm in names)
        repeats = int(math.ceil(budget["target_s"] / max(slowest, 1e-9)))
        repeats = max(budget["min_repeats"], min(budget["max_repeats"], repeats))
    times: Dict[str, List[float]] = {nm: [] for nm in names}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t_end = time.perf_counter() + budget["max_s"]
        for i in range(repeats):
            if adaptive and i >= budget["min_repeats"] and time.perf_counter() > t_end:
                break  # the machine got slower than calibrated: keep the run bounded
            order = names[i % len(names):] + names[:i % len(names)]
            for nm in order:
                if settle(nm):
                    impls[nm]()  # untimed: wakes the pool's workers after the pause
                times[nm].append(time_calls(impls[nm], calls[nm]))
    finally:
        if gc_was:
            gc.enable()
    return {nm: {"calls_per_sample": calls[nm], "times_s": times[nm],
                 "median_s": median(times[nm])} for nm in names}


def paired_speedup(base: List[float], fast: List[float]) -> float:
    """Median over repeats of base/fast, both timed in the same repeat."""
    return median([b / f for b, f in zip(base, fast) if f > 0])
