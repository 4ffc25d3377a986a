"""Gradient checks: analytic derivatives against central finite differences, to verify a loss
implementation or a model's backward pass.

``check_grad(loss, y_true, y_pred)`` checks a fastloss loss (gradient and Hessian diagonal with
respect to ``y_pred``); ``check_grad(objective, theta)`` checks an objective's gradient (and the
diagonal of its HVPs). The numeric side is always computed in float64 (a float32 ``y_pred`` or
objective is cast), so a float32 kernel is checked against the float64 function, with step
``h_i = eps64^(1/3) max(1, |x_i|)`` (about 6e-6: truncation error O(h^2) against rounding O(eps/h)).

Pass/fail: every checked element must satisfy ``|analytic - numeric| <= atol + rtol |numeric|``
with ``atol = rtol * max|numeric|`` (a relative error on the scale of the whole gradient) and the
dtype-aware default ``rtol`` (1e-5 for float64, 1e-3 for float32 analytic derivatives). At most
``max_elements`` elements are checked (a seeded random subset beyond that). Where the loss has a
kink (hinge, MAE, the Huber switch) a point within ``h`` of it gives a false failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np

from .._base import Loss

__all__ = ["GradCheck", "check_grad", "DEFAULT_RTOL"]

DEFAULT_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-5}
_STEP = np.finfo(np.float64).eps ** (1.0 / 3.0)


@dataclass
class GradCheck:
    """One comparison: ``what`` ("gradient" or "hessian diagonal"), the errors, the worst element
    (an index into the checked array), pass/fail, and the Hessian check nested in ``hessian``."""

    what: str
    max_abs_error: float
    max_rel_error: float
    worst_index: Tuple[int, ...]
    analytic: float
    numeric: float
    passed: bool
    rtol: float
    atol: float
    n_checked: int
    hessian: Optional["GradCheck"] = None

    @property
    def all_passed(self) -> bool:
        return self.passed and (self.hessian is None or self.hessian.passed)

    def __str__(self) -> str:
        lines = [f"{self.what}: {'PASS' if self.passed else 'FAIL'} ({self.n_checked} elements; "
                 f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}, "
                 f"worst at {self.worst_index}: analytic {self.analytic:.10g} vs numeric "
                 f"{self.numeric:.10g}; rtol {self.rtol:g}, atol {self.atol:.3g})"]
        if self.hessian is not None:
            lines.append(str(self.hessian))
        return "\n".join(lines)


def _compare(what, analytic, numeric, shape, indices, rtol, atol) -> GradCheck:
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = float(np.max(np.abs(numeric))) if numeric.size else 0.0
    atol = rtol * scale if atol is None else atol
    err = np.abs(analytic - numeric)
    rel = err / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), np.finfo(np.float64).tiny)
    worst = int(np.argmax(err - (atol + rtol * np.abs(numeric)))) if err.size else 0
    passed = bool(np.all(err <= atol + rtol * np.abs(numeric))) and bool(np.all(np.isfinite(analytic)))
    where = tuple(int(i) for i in np.unravel_index(indices[worst], shape)) if err.size else ()
    return GradCheck(what, float(err.max(initial=0.0)), float(rel.max(initial=0.0)), where,
                     float(analytic[worst]) if err.size else 0.0,
                     float(numeric[worst]) if err.size else 0.0, passed, rtol, atol, int(err.size))


def _indices(size: int, max_elements: int, seed: Any) -> np.ndarray:
    if size <= max_elements:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, max_elements, replace=False))


def _central(f: Callable[[np.ndarray], Any], x: np.ndarray, indices: np.ndarray, pick) -> np.ndarray:
    """``(f(x + h e_i) - f(x - h e_i)) / 2h`` for each flat index i, through ``pick(f(.), i)``."""
    # a private C-ordered float64 copy, perturbed one element at a time through its flat view
    # (the view of a non-C-ordered copy would be a copy, and the perturbation lost)
    x = np.array(x, dtype=np.float64, order="C")
    flat = x.reshape(-1)
    out = np.empty(len(indices))
    for j, i in enumerate(indices):
        x0 = flat[i]
        h = _STEP * max(1.0, abs(x0))
        flat[i] = x0 + h
        hi = pick(f(x), i)
        flat[i] = x0 - h
        lo = pick(f(x), i)
        flat[i] = x0
        out[j] = (hi - lo) / ((x0 + h) - (x0 - h))
    return out


def check_grad(fn, *args, sample_weight=None, reduction: Optional[str] = None, hessian: bool = True,
               rtol: Optional[float] = None, atol: Optional[float] = None, max_elements: int = 200,
               seed: Any = 0, **inputs) -> GradCheck:
    """Check analytic derivatives against central differences; returns a ``GradCheck`` report.

    ``check_grad(loss, y_true, y_pred, sample_weight=None, reduction=None, **inputs)``: the loss's
    gradient (``value_and_grad``) and, with ``hessian=True``, its Hessian diagonal (``grad_hess``);
    ``inputs`` are the extra keyword arrays the loss takes (e.g. ``teacher_logits``).
    ``check_grad(objective, theta)``: ``objective.grad`` against differences of
    ``objective.value``, and with ``hessian=True`` the diagonal of ``objective.hvp``.
    """
    if isinstance(fn, Loss):
        if len(args) != 2:
            raise TypeError("check_grad(loss, y_true, y_pred, ...) takes y_true and y_pred")
        return _check_loss(fn, *args, sample_weight, reduction, hessian, rtol, atol, max_elements, seed,
                           inputs)
    if hasattr(fn, "value") and hasattr(fn, "grad"):
        if len(args) != 1:
            raise TypeError("check_grad(objective, theta) takes theta")
        return _check_objective(fn, args[0], hessian, rtol, atol, max_elements, seed)
    raise TypeError(f"check_grad needs a fastloss Loss or an objective with value/grad/hvp; got "
                    f"{type(fn).__name__}")


def _check_parts(parts, grads, rtol, atol, max_elements, seed) -> GradCheck:
    """Several differentiable arrays, ``parts = [(label, array, value(array))]`` with their
    analytic ``grads``: each is checked; the report is the worst (its ``what`` names the part),
    ``n_checked`` counts every checked element."""
    reports = []
    for (label, x, value), grad in zip(parts, grads):
        x = np.asarray(x)
        idx = _indices(x.size, max_elements, seed)
        numeric = _central(value, x, idx, lambda v, i: v)
        reports.append(_compare(f"gradient w.r.t. {label}", np.asarray(grad).reshape(-1)[idx], numeric,
                                x.shape, idx, rtol, atol))
    worst = min(reports, key=lambda r: (r.passed, -r.max_rel_error))
    worst.n_checked = sum(r.n_checked for r in reports)
    return worst


def _check_inputs(loss, y_true, y_pred, sample_weight, reduction, rtol, atol, max_elements, seed,
                  inputs):
    """Losses with several differentiable inputs (``loss.grads``, e.g. the similarity losses)."""
    arrays = dict(zip(loss.arguments, (y_true, y_pred)), **inputs)
    _, grads = loss.value_and_grad(sample_weight=sample_weight, reduction=reduction, **arrays)
    grads = grads if isinstance(grads, tuple) else (grads,)
    parts = [(name, arrays[name],
              lambda v, name=name: loss(sample_weight=sample_weight, reduction=reduction,
                                        **{**arrays, name: v}))
             for name in loss.grads]
    return _check_parts(parts, grads, rtol, atol, max_elements, seed)


def _check_layers(loss, y_true, y_pred, sample_weight, reduction, rtol, atol, max_elements, seed,
                  inputs):
    """``y_pred`` given as a list of arrays (feature maps of a perceptual loss): each layer."""
    _, grads = loss.value_and_grad(y_true, y_pred, sample_weight, reduction=reduction, **inputs)
    parts = [(f"y_pred[{layer}]", x,
              lambda v, layer=layer: loss(y_true, [v if k == layer else p for k, p in enumerate(y_pred)],
                                          sample_weight, reduction=reduction, **inputs))
             for layer, x in enumerate(y_pred)]
    return _check_parts(parts, grads, rtol, atol, max_elements, seed)


def _check_loss(loss, y_true, y_pred, sample_weight, reduction, hessian, rtol, atol, max_elements, seed,
                inputs):
    layers = isinstance(y_pred, (list, tuple))
    dtype = np.asarray(y_pred[0] if layers else y_pred).dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"y_pred must be float32 or float64; got {dtype}")
    reduction = reduction or loss.reduction
    if reduction == "none":
        reduction = "sum"  # per-element derivatives under "none" are those of "sum"
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    if layers or len(loss.arguments) > 2:
        check = _check_layers if layers else _check_inputs
        return check(loss, y_true, y_pred, sample_weight, reduction, rtol, atol, max_elements, seed,
                     inputs)
    y_pred = np.asarray(y_pred)
    idx = _indices(y_pred.size, max_elements, seed)
    _, grad = loss.value_and_grad(y_true, y_pred, sample_weight, reduction=reduction, **inputs)
    value = lambda p: loss(y_true, p, sample_weight, reduction=reduction, **inputs)  # noqa: E731
    numeric = _central(value, y_pred, idx, lambda v, i: v)
    report = _compare("gradient", grad.reshape(-1)[idx], numeric, y_pred.shape, idx, rtol, atol)
    if hessian and loss.hessian != "none":  # "none": the loss provides no Hessian diagonal
        _, hess = loss.grad_hess(y_true, y_pred, sample_weight, reduction=reduction, **inputs)
        gradient = lambda p: loss.value_and_grad(y_true, p, sample_weight, reduction=reduction,  # noqa: E731
                                                 **inputs)[1]
        numeric_h = _central(gradient, y_pred, idx, lambda g, i: g.reshape(-1)[i])
        report.hessian = _compare("hessian diagonal", hess.reshape(-1)[idx], numeric_h, y_pred.shape,
                                  idx, rtol, atol)
    return report


def _check_objective(objective, theta, hessian, rtol, atol, max_elements, seed):
    theta = np.asarray(theta, dtype=objective.dtype)
    rtol = DEFAULT_RTOL[np.dtype(objective.dtype)] if rtol is None else rtol
    exact = objective.astype(np.float64) if objective.dtype != np.float64 else objective
    idx = _indices(theta.size, max_elements, seed)
    numeric = _central(exact.value, theta, idx, lambda v, i: v)
    report = _compare("gradient", objective.grad(theta)[idx], numeric, theta.shape, idx, rtol, atol)
    if hessian:
        analytic_h = np.empty(len(idx))
        for j, i in enumerate(idx):
            e = np.zeros_like(theta)
            e[i] = 1
            analytic_h[j] = objective.hvp(theta, e)[i]
        numeric_h = _central(exact.grad, theta, idx, lambda g, i: g[i])
        report.hessian = _compare("hessian diagonal", analytic_h, numeric_h, theta.shape, idx, rtol, atol)
    return report
