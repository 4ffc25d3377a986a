"""Command line: ``fastloss list | info | eval | bench | landscape | check-grad`` (also
``python -m fastloss``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import build_info, get_loss, losses


def _parse_value(text: str) -> Any:
    """``1.5`` -> float, ``0.1,0.9`` -> list of floats, ``true`` -> bool, anything else -> str."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        if "," in text:
            return [float(v) for v in text.split(",")]
        number = float(text)
        return int(number) if low.lstrip("+-").isdigit() else number
    except ValueError:
        return text


def _parse_params(items: Sequence[str]) -> Dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"fastloss: --param expects key=value; got {item!r}")
        params[key.strip()] = _parse_value(value)
    return params


def load_array(path: str) -> np.ndarray:
    """Reads a .npy file, or a .csv/.txt file of numbers (comma or whitespace separated)."""
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"fastloss: no such file: {path}")
    if p.suffix == ".npy":
        return np.load(p, allow_pickle=False)
    delimiter = "," if p.suffix == ".csv" else None
    return np.loadtxt(p, delimiter=delimiter, ndmin=1)


def save_array(path: str, array: np.ndarray) -> None:
    p = Path(path)
    if p.suffix == ".npy":
        np.save(p, array)
    else:
        np.savetxt(p, array, delimiter="," if p.suffix == ".csv" else " ", fmt="%.17g")


def synthetic(loss, n: int, seed: int = 0, dtype: str = "float64"):
    """``loss.synthetic(n, rng, dtype)`` with ``rng`` seeded by ``seed``: built-in data that
    suits the loss, as ``(y_true, y_pred, inputs)``."""
    return loss.synthetic(n, np.random.default_rng(seed), dtype)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [("name", "class", "family", "parameters", "convex", "robust", "smooth", "hessian")]
    for info in losses():
        params = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "-"
        rows.append((info.name, info.cls.__name__, info.family, params, str(info.convex),
                     str(info.robust), str(info.smooth), info.hessian))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(build_info(), indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    loss = get_loss(args.loss, **_parse_params(args.param))
    if args.synthetic:
        y_true, y_pred, inputs = synthetic(loss, args.synthetic, args.seed, args.dtype)
        source = f"synthetic n={args.synthetic} seed={args.seed}"
    else:
        if not (args.y_true and args.y_pred):
            raise SystemExit("fastloss eval: give --y-true and --y-pred files, or --synthetic N")
        y_true, y_pred = load_array(args.y_true), load_array(args.y_pred)
        inputs = {k: load_array(v) for k, v in _parse_params(args.input).items()}
        if args.dtype:
            y_pred = y_pred.astype(args.dtype)
        source = f"{args.y_true}, {args.y_pred}"
    weight = load_array(args.sample_weight) if args.sample_weight else None
    start = time.perf_counter()
    value, grad = loss.value_and_grad(y_true, y_pred, sample_weight=weight, reduction=args.reduction,
                                      **inputs)
    elapsed = time.perf_counter() - start
    if isinstance(grad, (tuple, list)):  # one gradient per input (similarity) or feature map
        shape, grad = [list(np.shape(g)) for g in grad], np.concatenate([np.ravel(g) for g in grad])
    else:
        shape = list(np.shape(y_pred))
    report = {
        "loss": repr(loss),
        "data": source,
        "shape": shape,
        "dtype": str(grad.dtype),
        "reduction": args.reduction,
        "value": value if np.isscalar(value) else None,
        "grad_l2_norm": float(np.linalg.norm(np.ravel(grad).astype(np.float64))),
        "grad_max_abs": float(np.max(np.abs(grad))) if grad.size else 0.0,
        "seconds": elapsed,
        "isa": build_info()["isa_selected"],
    }
    if args.reduction == "none":
        report["value_sum"] = float(np.sum(value, dtype=np.float64))
        if args.out:
            save_array(args.out, value)
    if args.grad_out:
        save_array(args.grad_out, grad)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, val in report.items():
            if val is not None:
                print(f"{key:>14}: {val:.10g}" if isinstance(val, float) else f"{key:>14}: {val}")
    return 0


def cmd_bench(args: argparse.Namespace, rest: List[str]) -> int:
    from . import benchmark

    argv = list(rest)
    if args.quick:
        argv.append("--quick")
    if args.json:
        argv += ["--json", args.json]
    return benchmark.main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastloss", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list every registered loss with its parameters and properties")
    sub.add_parser("info", help="build information: version, SIMD targets, OpenMP, threads")
    ev = sub.add_parser("eval", help="evaluate a loss and its gradient on files or synthetic data")
    ev.add_argument("loss", help="loss name, e.g. huber (see `fastloss list`)")
    ev.add_argument("--y-true", help=".npy or .csv file")
    ev.add_argument("--y-pred", help=".npy or .csv file")
    ev.add_argument("--sample-weight", help=".npy or .csv file")
    ev.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                    help="an extra input the loss takes, e.g. teacher_logits=t.npy (repeatable)")
    ev.add_argument("--synthetic", type=int, metavar="N", help="use N built-in synthetic samples")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--dtype", choices=["float32", "float64"], default=None)
    ev.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="loss parameter, e.g. delta=1.5 or quantile=0.1,0.9 (repeatable)")
    ev.add_argument("--reduction", choices=["mean", "sum", "none"], default="mean")
    ev.add_argument("--grad-out", help="write the gradient to this .npy/.csv file")
    ev.add_argument("--out", help="with --reduction none: write per-element losses here")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    be = sub.add_parser("bench", help="benchmark table vs NumPy / PyTorch / scikit-learn")
    be.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    be.add_argument("--json", metavar="FILE", help="save all results as JSON")
    _add_analysis_parsers(sub)
    return parser


def _add_analysis_parsers(sub) -> None:
    """``landscape`` and ``check-grad``: the fastloss.analysis tools (docs/analysis.md)."""
    la = sub.add_parser("landscape", help="spectrum, condition number and convergence of gradient "
                        "descent on an ill-conditioned logistic regression; writes a PNG")
    la.add_argument("--n", type=int, default=2000, help="samples")
    la.add_argument("--d", type=int, default=20, help="features")
    la.add_argument("--condition", type=float, default=1e4, help="spread of the feature scales squared")
    la.add_argument("--steps", type=int, default=300, help="gradient-descent steps")
    la.add_argument("--k", type=int, default=5, help="eigenvalues at each end")
    la.add_argument("--seed", type=int, default=0)
    la.add_argument("--out", default="landscape.png", help="PNG to write ('' for none)")
    cg = sub.add_parser("check-grad", help="gradient and Hessian-diagonal check of a loss")
    cg.add_argument("loss", help="loss name (see `fastloss list`)")
    cg.add_argument("--param", action="append", default=[], metavar="K=V")
    cg.add_argument("--n", type=int, default=200, help="synthetic samples")
    cg.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    cg.add_argument("--seed", type=int, default=0)
    cg.add_argument("--no-hessian", action="store_true", help="check the gradient only")


def cmd_landscape(args: argparse.Namespace) -> int:
    from .analysis.commands import landscape

    landscape(args.n, args.d, args.condition, args.steps, args.k, args.seed, args.out or None)
    return 0


def cmd_check_grad(args: argparse.Namespace) -> int:
    from .analysis.commands import check_grad_command

    ok = check_grad_command(args.loss, _parse_params(args.param), args.n, args.dtype, args.seed,
                            not args.no_hessian)
    return 0 if ok else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return cmd_bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "eval" and args.dtype is None and args.synthetic:
        args.dtype = "float64"
    try:
        return {"list": cmd_list, "info": cmd_info, "eval": cmd_eval, "landscape": cmd_landscape,
                "check-grad": cmd_check_grad}[args.command](args)
    except (ValueError, TypeError) as e:
        print(f"fastloss {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
