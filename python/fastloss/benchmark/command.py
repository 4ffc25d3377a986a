"""``fastloss bench``: the run drivers (elementwise and multi-class losses), the machine
description recorded with each run, and the command line."""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .bandwidth import ROW_TRIAD_MIN_BYTES, TRIAD_N, RowTriad, Triad, resolve_triad_method
from .baselines import (DATA, DATA_KIND, NUMPY, RTOL, SKLEARN, TORCH, as_numpy, check_result,
                        data_regression, np_categorical_ce, np_distillation, np_softmax_ce,
                        torch_multiclass)
from .report import fmt_n, format_multiclass_table, format_table, format_vmath_table, jsonable
from .timing import (FULL, QUICK, BlasThreads, measure, median, paired_speedup, time_calls, touched,
                     try_import)


SCHEMA = 1
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")
THREADS = (1, 2)
BASELINE_NAMES = ("numpy", "torch", "sklearn")

# Hyper-parameters used for the benchmark (defaults otherwise). Quantile 0.9 rather than the
# symmetric default 0.5 so that the two branches of the gradient differ.
BENCH_PARAMS: Dict[str, Dict[str, Any]] = {
    "quantile": {"quantile": 0.9},
    "binary_cross_entropy": {"from_logits": True},
    "binary_focal": {"from_logits": True, "gamma": 2.0},
}

# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _caches() -> Dict[str, str]:
    out: Dict[str, str] = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            if not d.startswith("index"):
                continue
            def rd(k: str) -> str:
                with open(os.path.join(base, d, k)) as f:
                    return f.read().strip()
            kind = rd("type")
            if kind == "Instruction":
                continue
            out[f"L{rd('level')}"] = rd("size")
    except OSError:
        pass
    return out


def _environment(want: Sequence[str]) -> Dict[str, Any]:
    import fastloss

    try:
        affinity = len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except AttributeError:
        affinity = os.cpu_count()
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "fastloss": fastloss.__version__}
    if "torch" in want:
        torch = try_import("torch")
        versions["torch"] = torch.__version__ if torch is not None else None
    if "sklearn" in want:
        sk = try_import("sklearn")
        versions["sklearn"] = sk.__version__ if sk is not None else None
    ne = try_import("numexpr")
    if ne is not None:
        versions["numexpr"] = ne.__version__
    blas = None
    tpc = try_import("threadpoolctl")
    if tpc is not None:
        try:
            blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                    for i in tpc.threadpool_info() if i.get("user_api") == "blas"]
        except Exception:
            blas = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "caches": _caches(), "platform": platform.platform(), "versions": versions,
        "build_info": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in fastloss.build_info().items()},
        "blas": blas, "loadavg_start": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def _elementwise_losses() -> Dict[str, Any]:
    import fastloss
    from fastloss._base import ElementwiseLoss

    return {info.name: info for info in fastloss.losses() if issubclass(info.cls, ElementwiseLoss)}

# Many classes (language-model-like rows) and few (multiclass boosting: the rows go 16 at a time).
MULTICLASS_SHAPES = [(65536, 1000), (1048576, 10)]
MULTICLASS_QUICK_SHAPES = [(8192, 1000), (65536, 10)]

def run_multiclass(shapes: Optional[Sequence[Tuple[int, int]]] = None, threads: Iterable[int] = THREADS,
                   quick: bool = False, progress: Optional[Callable[[str], None]] = None,
                   bandwidth: Optional[Dict[int, float]] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """float32 value+gradient of the sparse softmax cross-entropy, the categorical one (target
    rows: the teacher's softmax), the softmax focal loss on labels and on those target rows, and
    distillation (alpha 0.5, T 2; teacher logits read besides the student's)."""
    import fastloss

    say = progress or (lambda msg: None)
    budget = dict(QUICK if quick else FULL)
    rng = np.random.default_rng(seed)
    rows_out = []
    for (n, k) in (shapes or (MULTICLASS_QUICK_SHAPES if quick else MULTICLASS_SHAPES)):
        z = rng.standard_normal((n, k)).astype(np.float32)
        t = rng.integers(0, k, n)
        teacher = rng.standard_normal((n, k)).astype(np.float32)
        soft = np.exp(teacher - teacher.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        g = touched(z.shape, z.dtype)
        # (name, loss, y_true, extra inputs, bytes moved per logit)
        for name, loss, y, inputs, nbytes in (
                ("sparse_categorical_cross_entropy",
                 fastloss.SparseCategoricalCrossEntropy(from_logits=True), t, {}, 8),
                ("categorical_cross_entropy", fastloss.CategoricalCrossEntropy(from_logits=True),
                 soft, {}, 12),
                ("sparse_categorical_focal", fastloss.SparseCategoricalFocal(gamma=2.0), t, {}, 8),
                ("categorical_focal", fastloss.CategoricalFocal(gamma=2.0), soft, {}, 12),
                ("distillation", fastloss.Distillation(alpha=0.5, temperature=2.0), t,
                 {"teacher_logits": teacher}, 12)):
            for th in threads:
                say(f"{name} {n}x{k} threads={th}")
                impls: Dict[str, Callable[[], Any]] = {}

                def ours(loss=loss, y=y, th=th, inputs=inputs) -> Any:
                    with fastloss.num_threads(th):
                        return loss.value_and_grad(y, z, grad_out=g, **inputs)
                impls["fastloss"] = ours
                if name == "sparse_categorical_cross_entropy":
                    impls["numpy"] = np_softmax_ce(z, t)
                elif name == "categorical_cross_entropy":
                    impls["numpy"] = np_categorical_ce(z, soft)
                elif name == "distillation":
                    impls["numpy"] = np_distillation(z, t, teacher, 0.5, 2.0)
                tf = torch_multiclass(name, z, t, 2.0,
                                      soft if name.startswith("categorical") else teacher)
                if tf is not None:
                    torch = try_import("torch")

                    def theirs(tf=tf, th=th) -> Any:
                        torch.set_num_threads(th)
                        return tf()
                    impls["torch"] = theirs
                v, grad = impls["fastloss"]()
                checks = {}
                for nm, fn in impls.items():
                    if nm != "fastloss":
                        bv, bg = fn()
                        checks[nm] = bool(np.isclose(v, bv, rtol=1e-4)
                                          and np.allclose(grad, as_numpy(bg), rtol=1e-3, atol=1e-9))
                pools = {"fastloss": "fastloss", "torch": "torch"}
                res = measure(impls, budget, None, pools=pools, gap_s=0.01)
                times = {nm: r["times_s"] for nm, r in res.items()}
                med = {nm: r["median_s"] for nm, r in res.items()}
                gbs = nbytes * n * k / med["fastloss"] / 1e9
                rows_out.append({
                    "loss": name, "rows": n, "classes": k, "threads": th, "ms": med["fastloss"] * 1e3,
                    "gbs": gbs, "pct_triad": (100 * gbs / bandwidth[th]) if bandwidth and th in bandwidth else None,
                    "speedup": {nm: paired_speedup(times[nm], times["fastloss"]) for nm in impls if nm != "fastloss"},
                    "check_ok": all(checks.values())})
    return rows_out

def _np_sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) in NumPy, written in place (no temporaries)."""
    np.negative(x, out=out)
    np.exp(out, out=out)
    np.add(out, 1.0, out=out)
    return np.divide(1.0, out, out=out)


def _np_log_sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """-logaddexp(0, -x) in NumPy, written in place."""
    np.negative(x, out=out)
    np.logaddexp(0, out, out=out)
    return np.negative(out, out=out)


# The vector math functions next to NumPy's equivalents (softplus: logaddexp(0, x); sigmoid and
# log_sigmoid: the in-place ufunc sequences above); inputs inside each function's domain, where
# both do the full work.
VMATH_NUMPY: Dict[str, Tuple[Callable[..., Any], Tuple[float, float]]] = {
    "exp": (np.exp, (-20.0, 20.0)),
    "expm1": (np.expm1, (-20.0, 20.0)),
    "log": (np.log, (0.01, 100.0)),
    "log1p": (np.log1p, (-0.99, 10.0)),
    "tanh": (np.tanh, (-5.0, 5.0)),
    "softplus": (lambda x, out: np.logaddexp(0, x, out=out), (-20.0, 20.0)),
    "sigmoid": (_np_sigmoid, (-20.0, 20.0)),
    "log_sigmoid": (_np_log_sigmoid, (-20.0, 20.0)),
}


def _cpu_time(fn: Callable[[], Any]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def run_vmath(n: int = 10**6, dtypes: Iterable[str] = DTYPES, samples: int = 21,
              progress: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """Nanoseconds per element of each vector math function (one thread, n values, written into
    a preallocated array) on every available SIMD target, and of NumPy's equivalent. Samples
    interleave all targets and NumPy; ratios are medians of per-sample ratios. Timed in the
    calling thread's CPU time: on a busy machine, time spent descheduled does not count."""
    from .. import _core

    say = progress or (lambda msg: None)
    isas = list(_core.available_isas())
    selected = _core.selected_isa()
    rng = np.random.default_rng(0)
    rows = []
    try:
        for name, (np_fn, (lo, hi)) in VMATH_NUMPY.items():
            for dt in dtypes:
                say(f"vector math {name} {dt}")
                x = rng.uniform(lo, hi, n).astype(dt)
                out = touched(x.shape, x.dtype)
                ts: Dict[str, List[float]] = {isa: [] for isa in isas}
                ts["numpy"] = []
                for _ in range(samples):
                    for isa in isas:
                        _core.select_isa(isa)
                        ts[isa].append(_cpu_time(functools.partial(_core.vmath, name, x, out)))
                    ts["numpy"].append(_cpu_time(functools.partial(np_fn, x, out=out)))
                ns = {k: median(v) / n * 1e9 for k, v in ts.items()}
                ratio = {isa: median([a / b for a, b in zip(ts[isa], ts["numpy"])]) for isa in isas}
                rows.append({"function": name, "dtype": dt, "n": n, "ns_per_elem": ns,
                             "vs_numpy": ratio})
    finally:
        _core.select_isa(selected)
    return rows


def _parse_list(text: str, conv: Callable[[str], Any]) -> List[Any]:
    return [conv(s.strip()) for s in text.split(",") if s.strip()]


def _size(s: str) -> int:
    v = float(s)
    if not math.isfinite(v) or v < 1 or v != int(v):
        raise ValueError(f"size must be a positive integer (1e5 allowed); got {s!r}")
    return int(v)


def _overhead(losses: Dict[str, Any], dtypes: Sequence[str], samples: int) -> List[Dict[str, Any]]:
    """Per-call cost of value_and_grad at n=1000 with grad_out (default threads; below the
    parallel threshold), next to one NumPy ufunc call on the same arrays. Samples of 200 calls,
    round-robin over the losses (and the ufunc) so that a noisy moment hits them all alike."""
    rng = np.random.default_rng(1)
    out = []
    calls = 200
    for dt in dtypes:
        y, p = data_regression(1000, np.dtype(dt), rng)
        g = touched(p.shape, p.dtype)
        fns: Dict[str, Callable[[], Any]] = {
            "numpy_ufunc": functools.partial(np.subtract, p, y, out=g)}
        for name, loss in losses.items():
            fn = functools.partial(loss.value_and_grad, y, p, grad_out=g)
            try:
                fn()
            except Exception:
                continue
            fns[name] = fn
        ts: Dict[str, List[float]] = {name: [] for name in fns}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for _ in range(samples):
                for name, fn in fns.items():
                    ts[name].append(time_calls(fn, calls))
        finally:
            if gc_was:
                gc.enable()
        ref = median(ts.pop("numpy_ufunc"))
        for name, t in ts.items():
            out.append({"loss": name, "dtype": dt, "n": 1000, "us_per_call": median(t) * 1e6,
                        "us_min": min(t) * 1e6, "numpy_ufunc_us": ref * 1e6,
                        "samples_us": [x * 1e6 for x in t]})
    return out


def run(losses: Optional[Iterable[str]] = None, sizes: Optional[Iterable[int]] = None,
        dtypes: Iterable[str] = DTYPES, threads: Iterable[int] = THREADS,
        repeats: Optional[int] = None, quick: bool = False,
        progress: Optional[Callable[[str], None]] = None,
        baselines: Iterable[str] = BASELINE_NAMES, triad_method: str = "auto",
        triad_n: int = TRIAD_N, seed: int = 0,
        row_triad_min_bytes: int = ROW_TRIAD_MIN_BYTES) -> Dict[str, Any]:
    """Runs the benchmark; returns a JSON-serializable dict (see ``format_table``).

    losses: names from ``fastloss.losses()`` (elementwise ones; default: all of them).
    sizes: element counts (default ``SIZES``, or ``QUICK_SIZES`` when ``quick``).
    repeats: fixed number of interleaved repeats (default: adaptive, see ``timing.FULL``/``QUICK``).
    baselines: any of "numpy", "torch", "sklearn" (those not installed are skipped).
    progress: called with a short message before each measurement.
    triad_n: elements per triad array (keep it far above the last-level cache; a smoke test
    may pass a small one).
    row_triad_min_bytes: rows that move at least this many bytes (value + gradient) time the
    triad interleaved with their own repeats and report their percentage against it; smaller
    rows (in cache) use the median of the triads before and after the run.
    """
    t_start = time.perf_counter()
    budget = dict(QUICK if quick else FULL)
    say = progress or (lambda msg: None)

    available = _elementwise_losses()
    names = list(available) if losses is None else list(losses)
    unknown = [nm for nm in names if nm not in available]
    if unknown:
        raise ValueError(f"unknown or non-elementwise loss(es) {unknown}; "
                         f"known: {', '.join(available)}")
    sizes = [int(s) for s in (sizes if sizes is not None else (QUICK_SIZES if quick else SIZES))]
    dtypes = [str(np.dtype(d)) for d in dtypes]
    for d in dtypes:
        if d not in RTOL:
            raise ValueError(f"dtype must be float32 or float64; got {d!r}")
    threads = [int(t) for t in threads]
    if any(t < 1 for t in threads):
        raise ValueError("thread counts must be >= 1")
    want = [b for b in baselines if b in BASELINE_NAMES]
    have = {"numpy": True,
            "torch": "torch" in want and try_import("torch") is not None,
            "sklearn": "sklearn" in want and try_import("sklearn._loss.loss") is not None}
    torch = try_import("torch") if have["torch"] else None

    env = _environment(want)
    results: Dict[str, Any] = {
        "schema": SCHEMA, "env": env,
        "config": {"losses": names, "sizes": sizes, "dtypes": dtypes, "threads": threads,
                   "quick": quick, "repeats": repeats, "baselines": want,
                   "baselines_available": [b for b in want if have[b]], "budget": budget,
                   "params": {nm: BENCH_PARAMS.get(nm, {}) for nm in names}, "seed": seed,
                   "rtol": RTOL, "row_triad_min_bytes": int(row_triad_min_bytes)},
        "triad": {}, "rows": [], "overhead": [], "skipped": [],
    }

    # Memory bandwidth first, and again at the end (the median of both is used). "auto" times
    # every available triad method and keeps the fastest: each is a lower bound.
    methods = Triad.available() if triad_method == "auto" else [resolve_triad_method(triad_method)]
    say(f"triad bandwidth ({', '.join(methods)}; threads {','.join(map(str, threads))})")
    tri = Triad(triad_n)
    triad_runs = {t: {m: [tri.measure(m, t, budget["triad_repeats"])] for m in methods}
                  for t in threads}
    # The fastest method at the start times each large row's own triad (see _one_row).
    row_triad = {t: RowTriad(tri, max(methods, key=lambda m: triad_runs[t][m][0]["gbps_median"]), t)
                 for t in threads}

    instances: Dict[str, Any] = {}
    for nm in names:
        try:
            instances[nm] = available[nm].cls(**BENCH_PARAMS.get(nm, {}))
        except Exception as e:  # a loss needing parameters we do not know
            results["skipped"].append({"loss": nm, "reason": f"construction failed: {e}"})

    total = len(instances) * len(dtypes) * len(sizes) * len(threads)
    k = 0
    rng = np.random.default_rng(seed)
    torch_threads0 = torch.get_num_threads() if torch is not None else None
    try:
        for dt in dtypes:
            for n in sizes:
                data: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
                for nm, loss in instances.items():
                    # Inputs: the loss's data kind, else the first kind it accepts.
                    kinds = [DATA_KIND[nm]] if nm in DATA_KIND else list(DATA)
                    y = p = None
                    err = None
                    g = None
                    for kind in kinds:
                        if kind not in data:
                            data[kind] = DATA[kind](n, np.dtype(dt), rng)
                        y, p = data[kind]
                        g = touched(p.shape, p.dtype)
                        try:
                            loss.value_and_grad(y, p, grad_out=g)
                            err = None
                            break
                        except Exception as e:
                            err = e
                    if err is not None:
                        results["skipped"].append({"loss": nm, "dtype": dt, "n": n,
                                                   "reason": f"fastloss call failed: {err}"})
                        k += len(threads)
                        continue
                    big = y.nbytes + p.nbytes + g.nbytes >= row_triad_min_bytes
                    for t in threads:
                        k += 1
                        say(f"[{k}/{total}] {nm} {dt} n={fmt_n(n)} threads={t}")
                        results["rows"].append(
                            _one_row(nm, loss, y, p, g, dt, n, t, have, budget, repeats,
                                     row_triad[t] if big else None))
                data.clear()
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads0)

    say("per-call overhead (n=1000)")
    time.sleep(0.1)  # let the thread pools of the last measurement go idle
    results["overhead"] = _overhead(instances, dtypes, budget["overhead_samples"])

    say("triad bandwidth again")
    for t in threads:
        for m in methods:
            triad_runs[t][m].append(tri.measure(m, t, budget["triad_repeats"]))
    del tri
    for t in threads:
        per_method = {}
        for m, runs in triad_runs[t].items():
            per_method[m] = {"gbps_median": median([x for r in runs for x in r["gbps"]]),
                             "gbps_start": runs[0]["gbps_median"],
                             "gbps_end": runs[1]["gbps_median"], "runs": runs}
        best = max(per_method, key=lambda m: per_method[m]["gbps_median"])
        results["triad"][str(t)] = {"method": best, "n": int(triad_n),
                                    "gbps_median": per_method[best]["gbps_median"],
                                    "gbps_start": per_method[best]["gbps_start"],
                                    "gbps_end": per_method[best]["gbps_end"],
                                    "methods": per_method}
    for row in results["rows"]:
        if "pct_triad" in row:  # against its own interleaved triad
            continue
        bw = results["triad"][str(row["threads"])]["gbps_median"]
        row["pct_triad"] = 100.0 * row["gbps"] / bw
        row["value_pct_triad"] = 100.0 * row["value_gbps"] / bw

    try:
        env["loadavg_end"] = list(os.getloadavg())
    except OSError:
        env["loadavg_end"] = None
    results["elapsed_s"] = time.perf_counter() - t_start
    return results


def _one_row(nm: str, loss: Any, y: np.ndarray, p: np.ndarray, g: np.ndarray, dt: str, n: int,
             t: int, have: Dict[str, bool], budget: Dict[str, Any],
             repeats: Optional[int], triad: Optional[RowTriad] = None) -> Dict[str, Any]:
    import fastloss

    impls: Dict[str, Callable[[], Any]] = {
        "fastloss": functools.partial(loss.value_and_grad, y, p, grad_out=g),
        "fastloss_value": functools.partial(loss, y, p),
    }
    formulations: Dict[str, str] = {}
    errors: Dict[str, str] = {}
    factories = {"numpy": NUMPY.get(nm), "torch": TORCH.get(nm) if have["torch"] else None,
                 "sklearn": SKLEARN.get(nm) if have["sklearn"] else None}
    for base, fac in factories.items():
        if fac is None:
            continue
        try:
            fn = fac(loss, y, p, threads=t) if base == "sklearn" else fac(loss, y, p)
        except Exception as e:
            errors[base] = f"{type(e).__name__}: {e}"
            continue
        if fn is not None:
            impls[base] = fn
            formulations[base] = fac.__name__ if base == "numpy" else base

    torch = try_import("torch") if have["torch"] else None
    if torch is not None:
        torch.set_num_threads(t)
    with fastloss.num_threads(t), BlasThreads(1):
        # Correctness first (also the warm-up of every implementation).
        fl_v, fl_g = impls["fastloss"]()
        fl_v_only = impls["fastloss_value"]()
        outs: Dict[str, Tuple[float, np.ndarray]] = {}
        for base in [b for b in BASELINE_NAMES if b in impls]:
            try:
                v, gb = impls[base]()
                outs[base] = (float(v), as_numpy(gb))
            except Exception as e:
                errors[base] = f"{type(e).__name__}: {e}"
                del impls[base]
        check = None
        if "numpy" in outs:
            check = check_result(dt, float(fl_v), fl_g, float(fl_v_only), *outs["numpy"])
        pools = {"fastloss": "fastloss", "fastloss_value": "fastloss", "torch": "torch",
                 "sklearn": "sklearn"}
        if triad is not None:
            impls["triad"] = triad.call
            pools["triad"] = triad.pool
        timing = measure(impls, budget, repeats, pools, budget["gap_s"] if t > 1 else 0.0)

    bytes_vg = y.nbytes + p.nbytes + g.nbytes
    bytes_v = y.nbytes + p.nbytes
    fl = timing["fastloss"]
    row: Dict[str, Any] = {
        "loss": nm, "params": loss.get_params(), "dtype": dt, "n": n, "threads": t,
        "fastloss_ms": fl["median_s"] * 1e3,
        "value_ms": timing["fastloss_value"]["median_s"] * 1e3,
        "bytes": bytes_vg, "value_bytes": bytes_v,
        "gbps": bytes_vg / fl["median_s"] / 1e9,
        "value_gbps": bytes_v / timing["fastloss_value"]["median_s"] / 1e9,
        "speedup": {}, "median_ms": {}, "check": check, "formulation": formulations,
        "errors": errors, "repeats": len(fl["times_s"]), "timing": timing,
    }
    for base in BASELINE_NAMES:
        if base in timing:
            row["speedup"][base] = paired_speedup(timing[base]["times_s"], fl["times_s"])
            row["median_ms"][base] = timing[base]["median_s"] * 1e3
    if triad is not None:  # GB/s over the triad's GB/s, per repeat: its time over fastloss's
        tt = timing.pop("triad")["times_s"]
        row["triad"] = {"method": triad.method, "gbps_median": triad.bytes / median(tt) / 1e9,
                        "times_s": tt}
        row["pct_triad"] = 100.0 * bytes_vg / triad.bytes * paired_speedup(tt, fl["times_s"])
        row["value_pct_triad"] = (100.0 * bytes_v / triad.bytes
                                  * paired_speedup(tt, timing["fastloss_value"]["times_s"]))
    return row

SUMMARY = "benchmark fastloss against NumPy, PyTorch and scikit-learn and against the memory bandwidth"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``fastloss bench`` (``ap`` shows each one's default in its help)."""
    ap.epilog = ("Exit status 1 when a result differs from the NumPy baseline. "
                 "See bench/README.md for what is measured.")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {','.join(fmt_n(s) for s in QUICK_SIZES)} and fewer repeats")
    ap.add_argument("--json", metavar="FILE",
                    help="save all results (raw timings too) as JSON (default: not saved)")
    ap.add_argument("--losses", metavar="NAMES",
                    help="comma-separated loss names (default: every elementwise loss, then the "
                         "multi-class table)")
    ap.add_argument("--sizes", metavar="SIZES",
                    help=f"comma-separated sizes, e.g. 1e3,1e5 (default: "
                         f"{','.join(fmt_n(s) for s in SIZES)}; with --quick "
                         f"{','.join(fmt_n(s) for s in QUICK_SIZES)})")
    ap.add_argument("--dtypes", metavar="DTYPES", default=",".join(DTYPES),
                    help="comma-separated dtypes")
    ap.add_argument("--threads", metavar="COUNTS", default=",".join(map(str, THREADS)),
                    help="comma-separated thread counts")
    ap.add_argument("--repeats", type=int,
                    help="fixed number of repeats (default: adaptive, until the timings settle)")
    ap.add_argument("--baselines", metavar="NAMES", default=",".join(BASELINE_NAMES),
                    help="which of numpy,torch,sklearn to run; those not installed are skipped")
    ap.add_argument("--triad", default="auto", choices=("auto", "numexpr", "torch", "numpy"),
                    help="triad implementation for the bandwidth reference; auto keeps the fastest")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument("--multiclass", action="store_true",
                    help="only the multi-class table (softmax cross-entropy, focal, distillation) "
                         "and the triad it is compared with")
    ap.add_argument("--vmath", action="store_true",
                    help="also time the vector math functions against NumPy (always on without "
                         "--losses)")


def run_command(args: argparse.Namespace) -> int:
    """Runs ``fastloss bench`` with parsed ``args``: prints the table; returns 1 when a
    correctness check failed, else 0. A bad option value raises ``fastloss.cli.UsageError``."""
    from ..cli import UsageError, check_output

    try:
        losses = _parse_list(args.losses, str) if args.losses else None
        sizes = _parse_list(args.sizes, _size) if args.sizes else None
        threads = _parse_list(args.threads, int)
        dtypes = _parse_list(args.dtypes, str)
        baselines = _parse_list(args.baselines, str)
        bad = [b for b in baselines if b not in BASELINE_NAMES]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}; known: {', '.join(BASELINE_NAMES)}")
        if args.repeats is not None and args.repeats < 1:
            raise ValueError("--repeats must be >= 1")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.json:
        check_output(args.json, "--json", make_dirs=True)

    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        # Silent for short runs; after ~2 s, one line per measurement on stderr.
        el = time.perf_counter() - t0
        if not args.quiet and el > 2.0:
            print(f"  {el:6.1f}s  {msg}", file=sys.stderr, flush=True)

    if args.multiclass:
        return _run_multiclass_only(args, threads, progress)

    res = run(losses=losses, sizes=sizes, dtypes=dtypes, threads=threads,
              repeats=args.repeats, quick=args.quick, progress=progress,
              baselines=baselines, triad_method=args.triad)
    print(format_table(res))
    if losses is None:  # the whole benchmark: the multi-class kernels too
        bw = {int(t): v["gbps_median"] for t, v in res["triad"].items()}
        res["multiclass"] = run_multiclass(threads=threads, quick=args.quick, progress=progress,
                                           bandwidth=bw)
        print(format_multiclass_table(res["multiclass"]))
    if losses is None or args.vmath:
        res["vmath"] = run_vmath(dtypes=dtypes, samples=7 if args.quick else 21, progress=progress)
        print(format_vmath_table(res["vmath"]))
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(jsonable(res), f, indent=1)
        print(f"saved {args.json}")
    failed = [r for r in res["rows"] if r.get("check") and not r["check"]["ok"]]
    failed += [r for r in res.get("multiclass", []) if not r["check_ok"]]
    if failed:
        print(f"{len(failed)} row(s) FAILED the correctness check", file=sys.stderr)
        return 1
    return 0


def _run_multiclass_only(args: argparse.Namespace, threads: Sequence[int],
                         progress: Callable[[str], None]) -> int:
    """``fastloss bench --multiclass``: the triad (before and after, median of both) and the
    multi-class table."""
    budget = QUICK if args.quick else FULL
    methods = Triad.available() if args.triad == "auto" else [resolve_triad_method(args.triad)]
    tri = Triad()
    gbps: Dict[int, List[float]] = {t: [] for t in threads}

    def triad() -> None:
        for t in threads:
            gbps[t].append(max(tri.measure(m, t, budget["triad_repeats"])["gbps_median"]
                               for m in methods))
    progress("triad bandwidth")
    triad()
    res: Dict[str, Any] = {"schema": SCHEMA, "env": _environment(["torch"])}
    rows = run_multiclass(threads=threads, quick=args.quick, progress=progress)
    progress("triad bandwidth again")
    triad()
    del tri
    res["triad"] = {str(t): {"gbps_median": median(v), "gbps_runs": v} for t, v in gbps.items()}
    for row in rows:
        row["pct_triad"] = 100.0 * row["gbs"] / median(gbps[row["threads"]])
    res["multiclass"] = rows
    try:
        res["env"]["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    print("triad GB/s: " + ", ".join(f"{t} thread(s) {median(v):.1f}" for t, v in gbps.items())
          + f"; load average {res['env']['loadavg_start']} -> {res['env'].get('loadavg_end')}")
    print(format_multiclass_table(rows))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(jsonable(res), f, indent=1)
        print(f"saved {args.json}")
    if not all(r["check_ok"] for r in rows):
        print("a multi-class row FAILED the correctness check", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``fastloss bench ARGS`` (see ``fastloss bench --help``); returns the exit status: 0, 1 when
    a correctness check failed, 2 for a usage error."""
    from .. import cli

    return cli.main(["bench", *(sys.argv[1:] if argv is None else argv)])
