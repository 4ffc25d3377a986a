"""The analysis commands of the CLI (``fastloss landscape``, ``fastloss check-grad``) and the
built-in ill-conditioned problem they use."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .curvature import detect_saddle, hessian_eigenvalues, hutchinson_trace
from .gradcheck import check_grad
from .models import LogisticRegression, Objective
from .monitor import TrainingMonitor
from .surface import loss_line, loss_plane

__all__ = ["ill_conditioned_logistic", "landscape", "check_figure_output", "check_grad_command"]


def ill_conditioned_logistic(n: int = 2000, d: int = 20, condition: float = 1e4, l2: float = 1e-4,
                             seed: Any = 0, dtype=np.float64) -> Tuple[Objective, np.ndarray]:
    """Logistic regression whose feature scales span ``sqrt(condition)`` (so the Hessian's
    eigenvalues span about ``condition``), labels drawn from a logistic model, L2 ``l2``.
    Returns the objective and a starting point (zeros)."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(0.0, -0.5 * np.log10(condition), d)
    X = rng.standard_normal((n, d)) * scales
    w_true = 2.0 * rng.standard_normal(d) / (scales * np.sqrt(d))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w_true))).astype(np.float64)
    model = LogisticRegression(d)
    return Objective(model, X.astype(dtype), y, l2=l2), np.zeros(model.n_params, dtype)


def _silent(step: str) -> None:
    pass


def landscape(n: int = 2000, d: int = 20, condition: float = 1e4, steps: int = 300, k: int = 5,
              seed: int = 0, out: Optional[str] = "landscape.png", printer=print,
              progress: Callable[[str], None] = _silent) -> Dict[str, Any]:
    """Gradient descent (step 1/lambda_max) on ``ill_conditioned_logistic``, then the spectrum,
    condition number, trace, saddle check and convergence findings at the end point; writes a
    four-panel figure to ``out`` (needs matplotlib; the format follows the suffix) and returns
    the numbers. ``progress`` is called with the name of each step before it starts."""
    if out:
        check_figure_output(out)
    objective, theta = ill_conditioned_logistic(n, d, condition, seed=seed)
    k = max(1, min(k, objective.n_params // 2))
    progress("largest Hessian eigenvalue (the step size)")
    lr = 1.0 / float(hessian_eigenvalues(objective, theta, 1, "top", seed=seed).eigenvalues[0])
    monitor = TrainingMonitor(callback=lambda finding: None)
    progress(f"gradient descent, {steps} steps")
    for _ in range(steps):
        value, grad = objective.value_and_grad(theta)
        monitor.record(value, grad_norm=float(np.linalg.norm(grad)), lr=lr)
        theta = theta - lr * grad
    progress(f"Hessian spectrum, {k} eigenvalues at each end (Lanczos)")
    spectrum = hessian_eigenvalues(objective, theta, k, "both", seed=seed)
    progress("Hessian trace (Hutchinson) and negative-curvature check")
    trace = hutchinson_trace(objective, theta, 100, seed=seed)
    saddle = detect_saddle(objective, theta, seed=seed)
    report = monitor.report()
    ev = spectrum.eigenvalues
    printer(f"problem: logistic regression, n={n}, d={d}, feature-scale condition {condition:g}, "
            f"{steps} gradient steps of 1/lambda_max = {lr:.4g}")
    printer(f"Hessian spectrum at the end point (Lanczos, {spectrum.n_matvec} HVPs, "
            f"converged={spectrum.converged}):")
    printer("  top:    " + "  ".join(f"{v:.6g}" for v in ev[:k]))
    printer("  bottom: " + "  ".join(f"{v:.6g}" for v in ev[k:]))
    printer(f"condition number: {spectrum.condition_number:.6g} (gradient descent at step "
            f"1/lambda_max: asymptotic linear rate 1 - 1/condition = {1 - 1 / spectrum.condition_number:.6g})")
    printer(f"trace (Hutchinson, {trace.n_samples} samples): {trace.value:.6g} +- {trace.stderr:.2g}")
    printer(f"negative curvature: {saddle.negative_curvature} (min eigenvalue {saddle.min_eigenvalue:.3g}); "
            f"gradient norm {saddle.grad_norm:.3g}")
    printer(str(report))
    if out:
        progress(f"figure {out}")
        _landscape_figure(objective, theta, monitor, spectrum).savefig(out, dpi=100)
        printer(f"wrote {out}")
    return {"eigenvalues": ev, "condition_number": spectrum.condition_number, "trace": trace.value,
            "convergence": report, "theta": theta}


def check_figure_output(out: str) -> None:
    """Raises ValueError, before any work, when ``landscape`` could not write the figure ``out``:
    matplotlib is missing or the suffix names no format it writes."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ValueError("writing the figure needs matplotlib (pip install 'fastloss[plot]'); "
                         "pass --out '' for none") from None
    suffix = Path(out).suffix[1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise ValueError(f"cannot write a figure as {out!r}: unknown format {suffix!r}; "
                         f"use one of {', '.join(sorted(formats))}")


def _landscape_figure(objective, theta, monitor, spectrum):
    from matplotlib.figure import Figure  # no pyplot: works without a display or global state

    from .plot import plot_contour, plot_history, plot_line, plot_spectrum

    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    plot_history(monitor, ax=axes[0, 0])
    axes[0, 0].set_title("gradient descent")
    plot_spectrum(spectrum, ax=axes[0, 1])
    axes[0, 1].set_title(f"Hessian extremes, condition {spectrum.condition_number:.3g}")
    top, bottom = spectrum.eigenvectors[:, 0], spectrum.eigenvectors[:, -1]
    scale = max(1.0, float(np.linalg.norm(theta)))
    alphas = np.linspace(-1, 1, 41) * scale
    plot_line(loss_line(objective, theta, top, alphas), ax=axes[1, 0], label="top eigenvector")
    plot_line(loss_line(objective, theta, bottom, alphas), ax=axes[1, 0], label="bottom eigenvector")
    axes[1, 0].legend(fontsize=8)
    plot_contour(loss_plane(objective, theta, (top, bottom), np.linspace(-1, 1, 21) * scale),
                 ax=axes[1, 1], log=True)
    axes[1, 1].set_xlabel("top eigenvector")
    axes[1, 1].set_ylabel("bottom eigenvector")
    axes[1, 1].set_title("log10 loss in the plane of the extreme eigenvectors")
    return fig


def _differentiable(loss, y_true, y_pred, inputs) -> List[Tuple[str, np.ndarray]]:
    """The arrays the loss differentiates, as ``(label, array)``: the inputs named by
    ``loss.grads``, or each feature map when ``y_pred`` is a list of them."""
    if isinstance(y_pred, (list, tuple)):
        return [(f"y_pred[{k}]", np.asarray(p)) for k, p in enumerate(y_pred)]
    arrays = dict(zip(loss.arguments, (y_true, y_pred)), **inputs)
    return [(name, np.asarray(arrays[name])) for name in loss.grads]


def check_grad_command(name: str, params: Dict[str, Any], n: int = 200, dtype: str = "float64",
                       seed: int = 0, hessian: bool = True, printer=print,
                       progress: Callable[[str], None] = _silent) -> bool:
    """Gradient (and Hessian-diagonal) check of a registered loss on its synthetic data
    (``loss.synthetic``), with respect to every differentiable input. Fails a check that could
    not fail: no elements, or a gradient that is zero everywhere on the data (finite differences
    then agree trivially). ``progress`` is called with the step before the long part."""
    from .._base import get_loss

    loss = get_loss(name, **params)
    printer(f"{loss!r} on {n} synthetic samples ({dtype}):")
    if n == 0:
        printer("FAIL: nothing to check on 0 samples")
        return False
    y_true, y_pred, inputs = loss.synthetic(n, np.random.default_rng(seed), dtype)
    parts = _differentiable(loss, y_true, y_pred, inputs)
    if len(parts) > 1:
        printer("differentiable inputs: " + ", ".join(f"{label} {x.shape}" for label, x in parts))
    empty = [label for label, x in parts if x.size == 0]
    if empty:
        printer(f"FAIL: nothing to check: {', '.join(empty)} has no elements")
        return False
    value, grads = loss.value_and_grad(y_true, y_pred, **inputs)
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    zero = [label for (label, _), g in zip(parts, grads) if not np.any(g)]
    if zero:
        for label in zero:
            printer(f"gradient w.r.t. {label}: FAIL (zero everywhere on this data, value {value:.6g}: "
                    f"the check cannot fail; try another --seed, a larger --n or other parameters)")
        return False
    checked = sum(min(x.size, 200) for _, x in parts)
    both = hessian and loss.hessian != "none"
    progress(f"comparing the gradient{' and Hessian diagonal' if both else ''} with central "
             f"differences at {checked} elements")
    result = check_grad(loss, y_true, y_pred, hessian=hessian, seed=seed, max_elements=200,
                        **inputs)
    printer(str(result))
    if hessian and result.hessian is None:
        printer("hessian diagonal: not checked (" + (
            "the loss provides none)" if loss.hessian == "none" else
            "checked only for losses of one prediction array)"))
    return result.all_passed
