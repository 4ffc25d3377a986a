"""The benchmark's output: the human-readable tables and the JSON form of a run."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .bandwidth import ROW_TRIAD_MIN_BYTES, TRIAD_N



def fmt_n(n: int) -> str:
    e = math.log10(n) if n > 0 else 0.0
    return f"1e{int(round(e))}" if n > 0 and abs(e - round(e)) < 1e-12 else str(n)

def format_multiclass_table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["", "multi-class, float32 value+gradient of the mean (labels + logits; GB/s at 8 B/logit, "
             "12 with target rows or the teacher's):",
             f"{'loss':34} {'rows x K':>12} {'thr':>3} {'ms':>8} {'GB/s':>6} {'%triad':>7} "
             f"{'vs numpy':>9} {'vs torch':>9} check"]
    for r in rows:
        sp = r["speedup"]
        pct = f"{r['pct_triad']:.0f}%" if r["pct_triad"] is not None else "—"
        lines.append(
            f"{r['loss']:34} {str(r['rows']) + 'x' + str(r['classes']):>12} {r['threads']:>3} "
            f"{r['ms']:8.2f} {r['gbs']:6.1f} {pct:>7} "
            f"{(format(sp['numpy'], '.1f') + 'x') if 'numpy' in sp else '—':>9} "
            f"{(format(sp['torch'], '.1f') + 'x') if 'torch' in sp else '—':>9} "
            f"{'OK' if r['check_ok'] else 'FAIL'}")
    return "\n".join(lines)

def format_vmath_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Vector math: ns per element on each SIMD target and in NumPy; time / NumPy's time."""
    if not rows:
        return ""
    isas = [k for k in rows[0]["ns_per_elem"] if k != "numpy"]
    lines = ["", f"vector math, one thread, {fmt_n(rows[0]['n'])} values into a preallocated array: "
             "ns/element (fastloss per SIMD target, NumPy; softplus = logaddexp(0, x), sigmoid = "
             "1/(1+exp(-x)), log_sigmoid = -logaddexp(0, -x)) and "
             "fastloss time / NumPy time (below 1: faster):",
             f"{'function':12} {'dtype':8} " + " ".join(f"{i:>9}" for i in isas)
             + f" {'numpy':>9} " + " ".join(f"{'/np ' + i:>11}" for i in isas)]
    for r in rows:
        ns, vs = r["ns_per_elem"], r["vs_numpy"]
        lines.append(f"{r['function']:12} {r['dtype']:8} " + " ".join(f"{ns[i]:9.3f}" for i in isas)
                     + f" {ns['numpy']:9.3f} " + " ".join(f"{vs[i]:11.2f}" for i in isas))
    return "\n".join(lines)

# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _ratio(x: Optional[float]) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def format_table(results: Dict[str, Any]) -> str:
    """The human-readable report of a ``run`` result (or of its JSON)."""
    env = results.get("env", {})
    bi = env.get("build_info", {})
    vers = env.get("versions", {})
    lines = []
    caches = ", ".join(f"{k} {v}" for k, v in env.get("caches", {}).items())
    lines.append(f"machine:  {env.get('cpu')}, {env.get('cpus_usable')} usable cores"
                 + (f" ({caches})" if caches else ""))
    load = env.get("loadavg_start"), env.get("loadavg_end")
    if load[0] is not None:
        lines.append("load avg: start " + " ".join(f"{x:.2f}" for x in load[0])
                     + (", end " + " ".join(f"{x:.2f}" for x in load[1]) if load[1] else ""))
    if load[0] is not None and load[0][0] - 1.0 > 0.5:  # minus this process itself
        lines.append(f"WARNING:  the machine was busy at the start (1-min load {load[0][0]:.1f} on "
                     f"{env.get('cpus_usable')} cores): other processes compete with the timed "
                     "threads; multi-threaded rows are the least reliable")
    lines.append(f"fastloss: {vers.get('fastloss')}, ISA {bi.get('isa_selected')} "
                 f"(compiled {','.join(bi.get('isa_compiled', []))}), OpenMP {bi.get('openmp')}, "
                 f"compiler {bi.get('compiler')}")
    lines.append("versions: " + ", ".join(f"{k} {v if v else 'not installed'}"
                                          for k, v in vers.items() if k != "fastloss"))
    tri = results.get("triad", {})
    if tri:
        tn = next(iter(tri.values())).get("n", TRIAD_N)
        lines.append(f"triad a = b + s*c over 3 x {tn:.0e} float64 (counted 3 x 8 B/elem), "
                     "fastest method, median of start+end runs:")
        for t, v in tri.items():
            others = ", ".join(f"{m} {x['gbps_median']:.1f}" for m, x in v.get("methods", {}).items())
            lines.append(f"  {t} thread{'s' if t != '1' else ' '}: {v['gbps_median']:.1f} GB/s "
                         f"({v['method']}; start {v['gbps_start']:.1f}, end {v['gbps_end']:.1f}"
                         + (f"; all methods: {others}" if others else "") + ")")
    row_tri = [r["triad"]["gbps_median"] for r in results.get("rows", []) if "triad" in r]
    if row_tri:
        least = results.get("config", {}).get("row_triad_min_bytes", ROW_TRIAD_MIN_BYTES)
        lines.append(f"rows moving at least {least / 2**20:g} MiB: "
                     "%triad against the same triad timed in the row's own repeats "
                     "(median of per-repeat ratios; "
                     f"{min(row_tri):.1f}-{max(row_tri):.1f} GB/s over the rows)")
    lines.append("GB/s counts y_true + y_pred read and grad written once (12 B/elem float32, "
                 "24 float64); value only: 8/16. Speedups: median of per-repeat ratios "
                 "(baseline time / fastloss value+grad time).")
    params = {r["loss"]: r.get("params") for r in results.get("rows", [])}
    ps = ", ".join(f"{k}({', '.join(f'{a}={b}' for a, b in v.items())})" for k, v in params.items() if v)
    if ps:
        lines.append(f"params:   {ps}")
    lines.append("")

    head = ["loss", "dtype", "n", "thr", "v+g ms", "GB/s", "%triad", "value ms", "val %tri",
            "vs numpy", "vs torch", "vs sklearn", "check"]
    body = []
    for r in results.get("rows", []):
        chk = r.get("check")
        body.append([
            r["loss"], r["dtype"], fmt_n(r["n"]), str(r["threads"]), _ms(r["fastloss_ms"]),
            f"{r['gbps']:.1f}", f"{r.get('pct_triad', float('nan')):.0f}%", _ms(r["value_ms"]),
            f"{r.get('value_pct_triad', float('nan')):.0f}%",
            _ratio(r["speedup"].get("numpy")), _ratio(r["speedup"].get("torch")),
            _ratio(r["speedup"].get("sklearn")),
            "—" if chk is None else ("OK" if chk["ok"] else
                                     f"FAIL (value {chk['value_rel_err']:.1e}, "
                                     f"grad {chk['grad_rel_err']:.1e})"),
        ])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    left = {0, 1, 12}

    def fmt(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    lines.append(fmt(head))
    lines.append(fmt(["-" * w for w in widths]))
    prev = None
    for cells in body:
        if prev is not None and cells[0] != prev:
            lines.append("")
        prev = cells[0]
        lines.append(fmt(cells))

    ov = results.get("overhead", [])
    if ov:
        lines.append("")
        by_dt: Dict[str, List[str]] = {}
        ref: Dict[str, float] = {}
        for o in ov:
            by_dt.setdefault(o["dtype"], []).append(
                f"{o['loss']} {o['us_per_call']:.2f}" + (f" ({o['us_min']:.2f})" if "us_min" in o else ""))
            ref[o["dtype"]] = o["numpy_ufunc_us"]
        lines.append("per-call overhead, value_and_grad(n=1000, grad_out=g), us per call, median (min):")
        for dt, items in by_dt.items():
            lines.append(f"  {dt}: " + ", ".join(items)
                         + f"   [one np.subtract(out=) call, median: {ref[dt]:.2f}]")
    errs = [(r["loss"], r["dtype"], r["n"], r["threads"], b, e)
            for r in results.get("rows", []) for b, e in r.get("errors", {}).items()]
    if errs or results.get("skipped"):
        lines.append("")
        seen = set()
        for loss, dt, n, t, b, e in errs:
            key = (loss, b, e)
            if key not in seen:
                seen.add(key)
                lines.append(f"note: {b} baseline for {loss} failed ({dt} n={fmt_n(n)} t={t}): {e}")
        for s in results.get("skipped", []):
            lines.append(f"note: skipped {s['loss']}: {s['reason']}")
    lines.append("")
    lines.append(f"elapsed {results.get('elapsed_s', float('nan')):.1f} s")
    return "\n".join(lines)


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
