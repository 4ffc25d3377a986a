"""The machine's memory bandwidth, measured as a triad ``a = b + s*c`` (STREAM's convention):
the reference the benchmark reports fastloss's GB/s against."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List

import numpy as np

from .timing import median, touched, try_import


TRIAD_N = 20_000_000  # float64: 3 arrays x 160 MB, far beyond any last-level cache
_TRIAD_CHUNK = 1 << 16  # NumPy fallback: elements per cache-resident chunk (512 KiB float64)

# --------------------------------------------------------------------------------------------
# Memory bandwidth: the triad a = b + s*c
# --------------------------------------------------------------------------------------------

class Triad:
    """Triad buffers (allocated and touched once) and the implementations that can time it.
    ``run`` times every available one and keeps the fastest per thread count.

    Bytes counted per element: 3 x itemsize (read b, read c, write a), the STREAM convention
    (the write-allocate read of ``a`` is not counted; neither is it for fastloss's outputs).

    Methods:

    * ``numexpr``: ``evaluate("b + s*c", out=a)``, one pass, numexpr's own threads (its
      interpreter is compute-bound with one thread: about half the others there);
    * ``torch``: ``torch.add(b, c, alpha=s, out=a)``, one pass, torch's OpenMP threads;
    * ``numpy``: NumPy has no fused multiply-add ufunc, and ``np.multiply`` then ``np.add`` over
      the whole arrays is two passes (5 streams). So each thread walks its half of the arrays in
      chunks of 64 Ki elements (512 KiB, cache resident): ``multiply(c_k, s, out=a_k);
      add(a_k, b_k, out=a_k)``, which moves the 3 streams of a triad to and from memory. It
      reads about 15-25 % below a one-pass triad on the machines we tried (the second pass over
      the chunk and the Python loop are not free), so percentages against it read high.
      Threads are Python threads (ufuncs release the GIL).
    """

    def __init__(self, n: int = TRIAD_N, dtype: Any = np.float64) -> None:
        self.n = int(n)
        self.a = touched(self.n, dtype, 0.0)
        self.b = touched(self.n, dtype, 1.0)
        self.c = touched(self.n, dtype, 2.0)
        self.s = 3.0
        self.bytes = 3 * self.a.itemsize * self.n

    @staticmethod
    def available() -> List[str]:
        out = []
        if try_import("numexpr") is not None:
            out.append("numexpr")
        if try_import("torch") is not None:
            out.append("torch")
        out.append("numpy")
        return out

    def runner(self, method: str, threads: int) -> Callable[[], float]:
        """A callable running one triad and returning its duration in seconds."""
        a, b, c, s = self.a, self.b, self.c, self.s
        if method == "numexpr":
            ne = try_import("numexpr")

            def run_ne() -> float:
                prev = ne.set_num_threads(threads)
                try:
                    t0 = time.perf_counter()
                    ne.evaluate("b + s*c", local_dict={"b": b, "c": c, "s": s}, out=a)
                    return time.perf_counter() - t0
                finally:
                    ne.set_num_threads(prev)
            return run_ne
        if method == "torch":
            torch = try_import("torch")
            ta, tb, tc = (torch.from_numpy(x) for x in (a, b, c))

            def run_torch() -> float:
                prev = torch.get_num_threads()
                torch.set_num_threads(threads)
                try:
                    t0 = time.perf_counter()
                    torch.add(tb, tc, alpha=s, out=ta)
                    return time.perf_counter() - t0
                finally:
                    torch.set_num_threads(prev)
            return run_torch
        if method != "numpy":
            raise ValueError(f"unknown triad method {method!r}; known: numexpr, torch, numpy")

        def part(lo: int, hi: int) -> None:
            for i in range(lo, hi, _TRIAD_CHUNK):
                j = min(i + _TRIAD_CHUNK, hi)
                ak = a[i:j]
                np.multiply(c[i:j], s, out=ak)
                np.add(ak, b[i:j], out=ak)

        if threads == 1:
            def run_np1() -> float:
                t0 = time.perf_counter()
                part(0, self.n)
                return time.perf_counter() - t0
            return run_np1

        def run_npt() -> float:
            bounds = [self.n * k // threads for k in range(threads + 1)]
            start = threading.Barrier(threads + 1)
            workers = [threading.Thread(target=lambda lo=lo, hi=hi: (start.wait(), part(lo, hi)))
                       for lo, hi in zip(bounds[:-1], bounds[1:])]
            for w in workers:
                w.start()
            start.wait()
            t0 = time.perf_counter()
            for w in workers:
                w.join()
            return time.perf_counter() - t0
        return run_npt

    def measure(self, method: str, threads: int, repeats: int) -> Dict[str, Any]:
        run1 = self.runner(method, threads)
        run1()  # warm-up
        times = [run1() for _ in range(repeats)]
        gbps = [self.bytes / t / 1e9 for t in times]
        return {"method": method, "threads": threads, "n": self.n, "dtype": str(self.a.dtype),
                "bytes": self.bytes, "times_s": times, "gbps": gbps, "gbps_median": median(gbps)}


# A row that moves this many bytes or more (value + gradient) is far beyond the last-level
# cache: its percentage of the triad is taken against a triad timed in its own repeats.
ROW_TRIAD_MIN_BYTES = 64 << 20


class RowTriad:
    """One triad call of ``method`` on ``threads`` threads, as an implementation that a row's
    repeats time interleaved with fastloss. A shared virtual machine can move between bandwidth
    regimes within minutes (two-thread triads of 67 GB/s at the start of one run and 37 at its
    end, on a 2-core cloud VM), so a triad measured before and after a run may belong to another
    regime than a row's timings; one timed in the same repeats does not."""

    def __init__(self, tri: Triad, method: str, threads: int) -> None:
        self.method, self.bytes = method, tri.bytes
        self.call = tri.runner(method, threads)
        self.pool = method if method in ("torch", "numexpr") else None  # their own threads


class TriadReference:
    """The bandwidth every "% of triad" column divides by, measured one way for every script:
    ``Triad(n)`` with ``n = TRIAD_N`` whatever the size of the losses timed (a triad over the
    benchmark's own ``n`` sits in the last-level cache once ``n`` is small, and reads several times
    the memory's bandwidth), float64, ``repeats`` back-to-back triads per method and thread count
    per ``sample()`` call (the benchmarks call it before and after their timings). ``gbps(t)``:
    per method, the median GB/s over all samples; the fastest method. This is the recipe of
    ``fastloss.benchmark.run`` (``bench/bench_losses.py``)."""

    def __init__(self, threads, method: str = "auto", n: int = TRIAD_N, repeats: int = 9) -> None:
        self.threads = [int(t) for t in threads]
        self.methods = Triad.available() if method == "auto" else [resolve_triad_method(method)]
        self.n, self.repeats = int(n), int(repeats)
        self.runs: Dict[int, Dict[str, List[Dict[str, Any]]]] = {
            t: {m: [] for m in self.methods} for t in self.threads}
        self._tri: Any = None

    def sample(self) -> None:
        if self._tri is None:
            self._tri = Triad(self.n)  # kept until close(), as fastloss.benchmark.run keeps it
        for t in self.threads:
            for m in self.methods:
                self.runs[t][m].append(self._tri.measure(m, t, self.repeats))

    def close(self) -> None:
        self._tri = None

    def per_method(self, threads: int) -> Dict[str, float]:
        return {m: median([x for r in runs for x in r["gbps"]])
                for m, runs in self.runs[int(threads)].items()}

    def gbps(self, threads: int) -> float:
        return max(self.per_method(threads).values())


def resolve_triad_method(method: str) -> str:
    avail = Triad.available()
    if method == "auto":
        return avail[0]
    if method not in avail:
        raise ValueError(f"triad method {method!r} not available here; available: {avail}")
    return method


def measure_triad_bandwidth(threads: int = 1, *, n: int = TRIAD_N, repeats: int = 9,
                            method: str = "auto") -> float:
    """Memory bandwidth in GB/s (1e9 bytes/s): median of ``repeats`` triads ``a = b + s*c`` over
    three float64 arrays of ``n`` elements, with ``threads`` threads. See ``Triad`` for the
    methods; ``"auto"`` times every available one and returns the fastest."""
    tri = Triad(n)
    methods = Triad.available() if method == "auto" else [resolve_triad_method(method)]
    return max(tri.measure(m, int(threads), int(repeats))["gbps_median"] for m in methods)
