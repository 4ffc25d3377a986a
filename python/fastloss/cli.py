"""Command line: ``fastloss list | info | eval | bench | landscape | check-grad`` (also
``python -m fastloss``).

Exit status: 0 on success, 1 when a check fails (``check-grad``, the correctness check of
``bench``), 2 for a mistake in the command line or its files (an unknown option or loss, a bad
value, an input file that cannot be read, an output file that cannot be written). Every error is
one line on stderr; outputs are checked before any work is done."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, NoReturn, Optional, Sequence

import numpy as np

from . import __version__, build_info, get_loss, losses

USAGE_ERROR = 2
CHECK_FAILED = 1
BROKEN_PIPE = 141  # what a shell reports for a writer whose reader stopped: 128 + SIGPIPE
PROGRESS_AFTER = 1.0  # seconds of silence before the first progress line


class UsageError(Exception):
    """A mistake in the command line or its files: reported in one line, exit status 2.
    ``prog``: the command it concerns (default: the one being run)."""

    def __init__(self, message: str, prog: Optional[str] = None) -> None:
        super().__init__(message)
        self.prog = prog


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` to each option's help, except for flags and for options whose
    help already says what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or "default" in text:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (raised as ``UsageError``, reported by ``main``) and every
    option's default in ``--help``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')", self.prog)


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


def _parse_params(items: Sequence[str], option: str = "--param") -> Dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{option} expects NAME=VALUE; got {item!r}")
        params[key.strip()] = _parse_value(value)
    return params


def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= minimum and value == int(value)):
        raise argparse.ArgumentTypeError(f"must be {what} integer; got {text!r}")
    return int(value)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``1e5`` allowed)."""
    return _integer(text, 1, "a positive")


def count(text: str) -> int:
    """argparse type: an integer >= 0 (``1e5`` allowed)."""
    return _integer(text, 0, "a non-negative")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}")
    return value


def check_output(path: str, option: str, make_dirs: bool = False) -> None:
    """Raises ``UsageError`` when ``path`` cannot be written (a missing or read-only directory, a
    directory in its place); ``make_dirs``: missing directories will be created, so the nearest
    existing one must be writable."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    parent = p.parent
    if make_dirs:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "no such directory"
        raise UsageError(f"{option} {path}: {what}: {parent}")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{option} {path}: permission denied")


def load_array(path: str) -> np.ndarray:
    """Reads a .npy file, or a .csv/.txt file of numbers (comma or whitespace separated)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{'not a file' if p.exists() else 'no such file'}: {path}")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=1)
    except (ValueError, OSError, EOFError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


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


class Progress:
    """Progress on stderr for work that may take a while: silent for the first ``after``
    seconds (default ``PROGRESS_AFTER``), then the current step, repeated every ``every``
    seconds while it lasts.
    ``progress("step")`` starts a step; use as a context manager around the work."""

    def __init__(self, prog: str, enabled: bool = True, after: Optional[float] = None,
                 every: float = 5.0):
        self.prog, self.enabled, self.every = prog, enabled, every
        self.after = PROGRESS_AFTER if after is None else after
        self._start = time.monotonic()
        self._step: Optional[str] = None
        self._shown: Optional[str] = None
        self._last = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __call__(self, step: str) -> None:
        with self._lock:
            self._step = step
        self._tick()

    def _tick(self) -> None:
        with self._lock:
            now = time.monotonic()
            elapsed = now - self._start
            if (not self.enabled or self._step is None or elapsed < self.after
                    or (self._step == self._shown and now - self._last < self.every)):
                return
            more = " (still running)" if self._step == self._shown else ""
            self._shown, self._last = self._step, now
            print(f"{self.prog}: [{elapsed:5.1f} s] {self._step}{more}", file=sys.stderr, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._tick()

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="fastloss-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    families = sorted({info.family for info in losses()})
    if args.family is not None and args.family not in families:
        raise UsageError(f"unknown family {args.family!r}; families: {', '.join(families)}")
    selected = losses(args.family)
    if args.json:
        print(json.dumps([{"name": info.name, "class": info.cls.__name__, "family": info.family,
                           "parameters": info.params, "inputs": list(info.cls.arguments),
                           "differentiable": list(info.cls.grads), "convex": info.convex,
                           "robust": info.robust, "smooth": info.smooth, "hessian": info.hessian,
                           "summary": info.summary} for info in selected],
                         indent=2, default=repr))
        return 0
    rows = [("name", "class", "family", "parameters", "convex", "robust", "smooth", "hessian")]
    for info in selected:
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
    files = [opt for opt, given in (("--y-true", args.y_true), ("--y-pred", args.y_pred),
                                    ("--input", args.input)) if given]
    if args.synthetic is not None and files:
        raise UsageError(f"--synthetic makes its own data; it cannot be combined with "
                         f"{' or '.join(files)}")
    if args.synthetic is None and not (args.y_true and args.y_pred):
        raise UsageError("give both --y-true and --y-pred files, or --synthetic N")
    if args.out and args.reduction != "none":
        raise UsageError("--out writes the per-element losses of --reduction none; add "
                         "--reduction none (the gradient goes to --grad-out)")
    for option, path in (("--out", args.out), ("--grad-out", args.grad_out)):
        if path:
            check_output(path, option)
    loss = get_loss(args.loss, **_parse_params(args.param))
    if args.synthetic is not None:
        y_true, y_pred, inputs = synthetic(loss, args.synthetic, args.seed, args.dtype or "float64")
        source = f"synthetic n={args.synthetic} seed={args.seed}"
    else:
        y_true, y_pred = load_array(args.y_true), load_array(args.y_pred)
        inputs = {k: load_array(v) for k, v in _parse_params(args.input, "--input").items()}
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


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import command

    return command.run_command(args)


def cmd_landscape(args: argparse.Namespace) -> int:
    from .analysis.commands import landscape

    if args.out:
        check_output(args.out, "--out")
    with Progress("fastloss landscape", not args.quiet) as progress:
        landscape(args.n, args.d, args.condition, args.steps, args.k, args.seed, args.out or None,
                  progress=progress)
    return 0


def cmd_check_grad(args: argparse.Namespace) -> int:
    from .analysis.commands import check_grad_command

    params = _parse_params(args.param)
    with Progress("fastloss check-grad", not args.quiet) as progress:
        ok = check_grad_command(args.loss, params, args.n, args.dtype, args.seed,
                                not args.no_hessian, progress=progress)
    return 0 if ok else CHECK_FAILED


COMMANDS = {"list": cmd_list, "info": cmd_info, "eval": cmd_eval, "bench": cmd_bench,
            "landscape": cmd_landscape, "check-grad": cmd_check_grad}


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="fastloss", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate, check and benchmark the fastloss losses, their gradients and "
                    "Hessian diagonals.\n'fastloss COMMAND --help' describes each command.",
        epilog="exit status: 0 on success, 1 when a check fails (check-grad, the correctness "
               "check of bench),\n2 for a mistake in the command line or its files.")
    parser.add_argument("--version", action="version", version=f"fastloss {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        cmd.set_defaults(parser=cmd)  # reports unknown options as its own
        return cmd

    li = command("list", "list every registered loss with its parameters and properties")
    li.add_argument("--family", metavar="NAME",
                    help="only the losses of this family, e.g. regression (default: every family)")
    li.add_argument("--json", action="store_true",
                    help="print a JSON list (parameters with their defaults, inputs, properties)")

    command("info", "build information: version, SIMD targets, OpenMP, threads")

    ev = command("eval", "evaluate a loss and its gradient on files or built-in synthetic data")
    ev.add_argument("loss", help="loss name, e.g. huber (see 'fastloss list')")
    data = ev.add_argument_group("data (either --y-true and --y-pred files, or --synthetic N)")
    data.add_argument("--y-true", metavar="FILE", help="true values, .npy, .csv or .txt (needed without --synthetic)")
    data.add_argument("--y-pred", metavar="FILE", help="predictions, .npy, .csv or .txt (needed without --synthetic)")
    data.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                      help="an extra input the loss takes, e.g. teacher_logits=t.npy (repeatable; "
                           "default: none)")
    data.add_argument("--synthetic", type=positive_int, metavar="N",
                      help="use N samples of built-in data that suit the loss (default: read "
                           "the --y-true and --y-pred files)")
    data.add_argument("--seed", type=int, default=0, help="random seed of --synthetic")
    ev.add_argument("--sample-weight", metavar="FILE",
                    help="per-sample weights, .npy, .csv or .txt (default: unweighted)")
    ev.add_argument("--dtype", choices=["float32", "float64"],
                    help="dtype of the prediction (default: the file's dtype; float64 with "
                         "--synthetic)")
    ev.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="loss parameter, e.g. delta=1.5 or quantile=0.1,0.9 (repeatable; "
                         "default: the loss's defaults)")
    ev.add_argument("--reduction", choices=["mean", "sum", "none"], default="mean",
                    help="how per-element losses are combined")
    ev.add_argument("--grad-out", metavar="FILE",
                    help="write the gradient to this .npy, .csv or .txt file (default: not written)")
    ev.add_argument("--out", metavar="FILE",
                    help="write the per-element losses here; needs --reduction none "
                         "(default: not written)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")

    from .benchmark import command as bench

    bench.add_arguments(command("bench", bench.SUMMARY))

    la = command("landscape", "gradient descent on an ill-conditioned logistic regression: "
                 "Hessian spectrum, condition number, convergence, and a PNG of the loss surface")
    la.add_argument("--n", type=positive_int, default=2000, help="samples")
    la.add_argument("--d", type=positive_int, default=20, help="features")
    la.add_argument("--condition", type=positive_float, default=1e4,
                    help="spread of the squared feature scales")
    la.add_argument("--steps", type=count, default=300, help="gradient-descent steps")
    la.add_argument("--k", type=positive_int, default=5, help="eigenvalues at each end")
    la.add_argument("--seed", type=int, default=0, help="random seed")
    la.add_argument("--out", metavar="FILE", default="landscape.png",
                    help="figure to write, e.g. .png or .pdf ('' for none; needs matplotlib)")
    la.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    cg = command("check-grad", "check a loss's gradient (every differentiable input) and Hessian "
                 "diagonal against central differences on built-in synthetic data")
    cg.epilog = ("Exit status 1 when a check fails, and when it could not fail: no elements to "
                 "check, or a gradient that is zero everywhere on the data.")
    cg.add_argument("loss", help="loss name (see 'fastloss list')")
    cg.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="loss parameter, e.g. delta=0.5 (repeatable; default: the loss's defaults)")
    cg.add_argument("--n", type=count, default=200, help="synthetic samples")
    cg.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                    help="dtype of the prediction")
    cg.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data")
    cg.add_argument("--no-hessian", action="store_true", help="check the gradient only")
    cg.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _run(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    prog = "fastloss"
    try:
        try:
            args, unknown = parser.parse_known_args(argv)
        except SystemExit as e:  # --help, --version
            return e.code if isinstance(e.code, int) else 0
        if unknown:
            args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        prog = f"fastloss {args.command}"
        return COMMANDS[args.command](args)
    except UsageError as e:
        message, prog = str(e), e.prog or prog
    except BrokenPipeError:
        raise
    except (ValueError, TypeError, NotImplementedError) as e:  # from the library: bad input
        message = str(e)
    except OSError as e:
        message = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
    except MemoryError:
        message = "not enough memory for this input"
    print(f"{prog}: error: {message}".replace("\n", " "), file=sys.stderr)
    return USAGE_ERROR


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``fastloss ARGS``; returns the exit status: 0 ok, 1 a failed check, 2 a usage error,
    141 when the reader of the output stopped early (quietly, like other command-line tools: a
    check whose report was cut short does not pass as 0)."""
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # e.g. `fastloss list | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print("fastloss: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
