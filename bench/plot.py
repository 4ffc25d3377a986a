#!/usr/bin/env python
"""Plots a JSON saved by ``fastloss bench --json FILE`` (or ``bench/bench_losses.py --json``).

One panel per loss: fastloss's speedup over each baseline (median of per-repeat ratios) against
the array size, log-log; colour = baseline, line style = dtype, marker = thread count. With
``--metric pct_triad`` the panels show fastloss's achieved bandwidth as a percentage of the
triad instead (one line per dtype and thread count).

    python bench/plot.py bench/results/x.json                   # -> bench/results/x.png
    python bench/plot.py x.json -o speedup.png --dtypes float32 --threads 2
    python bench/plot.py x.json --metric pct_triad

matplotlib is imported only here (``pip install matplotlib``, or the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

BASELINE_COLORS = {"numpy": "tab:blue", "torch": "tab:red", "sklearn": "tab:green"}
DTYPE_STYLES = {"float32": "-", "float64": "--"}
THREAD_MARKERS = ["o", "s", "^", "D", "v", "P"]


def _series(rows: List[Dict[str, Any]], loss: str, key) -> Dict[Any, List[tuple]]:
    out: Dict[Any, List[tuple]] = {}
    for r in rows:
        if r["loss"] != loss:
            continue
        for label, y in key(r):
            if y is not None and math.isfinite(y):
                out.setdefault(label, []).append((r["n"], y))
    return {k: sorted(v) for k, v in out.items()}


def plot(results: Dict[str, Any], output: str, metric: str = "speedup",
         dtypes: Optional[Sequence[str]] = None, threads: Optional[Sequence[int]] = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"]
            if (not dtypes or r["dtype"] in dtypes) and (not threads or r["threads"] in threads)]
    if not rows:
        raise SystemExit("no rows to plot (check --dtypes / --threads)")
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    all_threads = sorted({r["threads"] for r in rows})
    marker = {t: THREAD_MARKERS[i % len(THREAD_MARKERS)] for i, t in enumerate(all_threads)}

    ncols = min(3, len(losses))
    nrows = math.ceil(len(losses) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.9 * nrows), squeeze=False)
    for ax, loss in zip(axes.flat, losses):
        if metric == "speedup":
            series = _series(rows, loss, lambda r: [((b, r["dtype"], r["threads"]), s)
                                                    for b, s in r["speedup"].items()])
            for (base, dt, t), pts in series.items():
                xs, ys = zip(*pts)
                ax.plot(xs, ys, DTYPE_STYLES.get(dt, ":"), marker=marker[t], ms=4,
                        color=BASELINE_COLORS.get(base, "gray"), label=f"vs {base}, {dt}, {t} thr")
            ax.axhline(1.0, color="black", lw=0.8)
            ax.set_yscale("log")
            ax.set_ylabel("speedup (baseline time / fastloss time)")
        else:
            series = _series(rows, loss, lambda r: [((r["dtype"], r["threads"]), r.get("pct_triad"))])
            for i, ((dt, t), pts) in enumerate(series.items()):
                xs, ys = zip(*pts)
                ax.plot(xs, ys, DTYPE_STYLES.get(dt, ":"), marker=marker[t], ms=4,
                        color=f"C{all_threads.index(t)}", label=f"{dt}, {t} thr")
            ax.axhline(100.0, color="black", lw=0.8)
            ax.set_ylabel("value+grad GB/s, % of triad")
        ax.set_xscale("log")
        ax.set_xlabel("n (elements)")
        ax.set_title(loss)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(losses):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in list(axes.flat)[1:len(losses)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="lower center",
               ncol=min(4, len(seen)), fontsize="small", frameon=False)
    env = results.get("env", {})
    tri = results.get("triad", {})
    bw = ", ".join(f"{t} thr {v['gbps_median']:.1f} GB/s" for t, v in tri.items())
    fig.suptitle(f"fastloss {env.get('versions', {}).get('fastloss', '')} on {env.get('cpu', '?')}"
                 f" ({env.get('build_info', {}).get('isa_selected', '?')}); triad {bw}",
                 fontsize="medium")
    rows_legend = math.ceil(len(seen) / 4)
    fig.tight_layout(rect=(0, 0.03 + 0.03 * rows_legend, 1, 0.96))
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="results saved by fastloss bench --json")
    ap.add_argument("-o", "--output", help="PNG path (default: the JSON path with .png)")
    ap.add_argument("--metric", choices=("speedup", "pct_triad"), default="speedup")
    ap.add_argument("--dtypes", help="comma-separated, e.g. float32")
    ap.add_argument("--threads", help="comma-separated, e.g. 2")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        results = json.load(f)
    out = args.output or os.path.splitext(args.json)[0] + (
        ".png" if args.metric == "speedup" else f".{args.metric}.png")
    dtypes = args.dtypes.split(",") if args.dtypes else None
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    print(plot(results, out, args.metric, dtypes, threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
