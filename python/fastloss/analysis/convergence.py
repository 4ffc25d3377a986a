"""Convergence analysis of a training history, with debugging advice for each finding.

From the loss values ``f_k`` (and optionally the gradient norms) of successive steps:

- the *errors* ``e_k``: ``f_k - target`` when the optimum ``target`` is known, otherwise the
  successive decreases ``f_k - f_{k+1}`` (they shrink at the same rate); both are cut where they
  reach rounding noise;
- the linear rate ``rho``: least-squares fit of ``log e_k = a + k log rho``;
- the classification: ``"diverging"`` (non-finite values, or the loss grows), ``"quadratic"``
  (convergence order ``log(e_{k+1}/e_k) / log(e_k/e_{k-1})`` about 2, i.e. superlinear),
  ``"linear"`` (``log e_k`` linear in ``k``: ``O(rho^k)``), ``"sublinear"`` (``log e_k`` linear in
  ``log k`` fits better: ``O(k^-p)``), or ``"insufficient"`` (fewer than 4 usable errors);
- detectors, each a list of ``Finding`` (kind, step, message, advice):

  * plateau: with ``m_k`` the running mean of ``window`` losses (oscillation and minibatch noise
    cancel in it), a stretch where the relative change ``|m_k - m_{k+w}| / |m_k|`` is below
    ``rel_tol``. Reported when it starts at step 0 (``"not_decreasing"``), when real progress
    resumes after it (``"plateau"``), or when the run ends flat with a gradient norm still above
    ``grad_rtol`` times the first one (``"stalled"``). A run that flattens as it converges is not
    an alarm.
  * oscillation: a window whose successive differences change sign in at least
    ``min_sign_changes`` of the pairs while the net change is at most ``max_net_ratio`` of the path
    length ``sum |f_{k+1} - f_k|`` (differences at rounding level are ignored).
  * explosion: a non-finite loss or gradient norm, a loss above ``f_0 + growth |f_0|``, or a
    gradient norm above ``grad_growth`` times the median of the earlier ones.

Convergence criteria are ``StoppingRule``: gradient-norm threshold, loss-change
threshold, validation plateau with patience.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["ADVICE", "Finding", "ConvergenceReport", "errors_of", "fit_linear_rate", "convergence_order",
           "classify_convergence", "detect_plateau", "detect_oscillation", "detect_explosion", "explosion_at",
           "analyze_convergence", "StoppingRule"]

# What to do about each finding, with the reasons the loss landscape gives (conditioning, curvature);
# see Goodfellow, Bengio & Courville, Deep Learning (2016), ch. 8 and 11.4, and Pascanu et al. 2013
# for gradient clipping.
ADVICE = {
    "not_decreasing": "Loss not decreasing: check the gradients (fastloss.analysis.check_grad) and "
                      "the learning rate; verify the loss, the preprocessing and the label "
                      "encoding, and test a simple baseline.",
    "plateau": "Plateau: a flat region with small gradients slows convergence and may indicate poor "
               "conditioning; check the learning rate, try momentum or a second-order "
               "method, and look at the Hessian's condition number.",
    "stalled": "Loss stopped decreasing while the gradient is not small: check the gradients and the "
               "learning rate (a schedule may have decayed too far); slow progress along "
               "the flat directions of an ill-conditioned Hessian looks the same: "
               "compare the condition number.",
    "oscillation": "Loss oscillating: reduce the learning rate, increase the batch size; "
                   "momentum smooths the updates, and oscillation may indicate poor "
                   "conditioning.",
    "explosion": "Loss exploding: clip the gradients (clip_grad_norm), lower the learning "
                 "rate.",
    "diverging": "Diverging: lower the learning rate and clip the gradients; check the "
                 "gradients and the data for non-finite values.",
    "sublinear": "Sublinear convergence, slower than O(rho^k): typical of non-smooth or "
                 "not strongly convex objectives, and of ill-conditioned ones before the slowest "
                 "direction dominates (a spread of Hessian eigenvalues: compare the "
                 "condition number); a smooth loss (Huber, smooth hinge), L2 regularization, "
                 "rescaled features or a second-order method converge faster.",
    "slow_linear": "Linear convergence with rho close to 1: the Hessian is ill-conditioned; "
                   "rescale the features, precondition, or use momentum / a second-order method.",
}


@dataclass
class Finding:
    kind: str
    step: int
    message: str
    advice: str = ""

    def __post_init__(self):
        if not self.advice:
            self.advice = ADVICE.get(self.kind, "")

    def __str__(self) -> str:
        return f"step {self.step}: {self.message}\n    -> {self.advice}"


def _as_history(values, name: str = "losses") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence; got shape {v.shape}")
    return v


def errors_of(values, target: Optional[float] = None) -> np.ndarray:
    """The positive errors of a history (module docs), cut at the first one at rounding level."""
    f = _as_history(values)
    if not np.all(np.isfinite(f)):
        f = f[:int(np.argmin(np.isfinite(f)))]
    # A difference of two rounded values is exact only to ~eps |f|: keep those well above that.
    if target is None:
        e, noise = f[:-1] - f[1:], 1e4 * np.finfo(np.float64).eps * np.maximum(np.abs(f[:-1]), np.abs(f[1:]))
    else:
        e, noise = f - target, 16 * np.finfo(np.float64).eps * np.maximum(np.abs(f), abs(target))
    bad = np.nonzero(e <= noise)[0]
    return e[:bad[0]] if bad.size else e


def _lstsq_rss(x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    """Slope and residual sum of squares of the least-squares line y = a + b x."""
    A = np.c_[np.ones_like(x), x]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(coef[1]), float(np.sum((A @ coef - y) ** 2))


def fit_linear_rate(values, target: Optional[float] = None) -> float:
    """The fitted linear rate ``rho`` (``e_k ~ C rho^k``); NaN with fewer than 3 usable errors."""
    e = errors_of(values, target)
    if len(e) < 3:
        return math.nan
    return math.exp(_lstsq_rss(np.arange(len(e), dtype=np.float64), np.log(e))[0])


def convergence_order(errors) -> float:
    """The median order estimate ``log(e_{k+1}/e_k) / log(e_k/e_{k-1})`` (1 linear, 2 quadratic)."""
    le = np.log(np.asarray(errors, dtype=np.float64))
    d = np.diff(le)
    ok = (d[:-1] < 0) & (d[1:] < 0)
    if not ok.any():
        return math.nan
    return float(np.median(d[1:][ok] / d[:-1][ok]))


def classify_convergence(values, target: Optional[float] = None) -> Tuple[str, float, float]:
    """``(kind, rho, order)`` for a history; kinds in the module docs."""
    f = _as_history(values)
    if not np.all(np.isfinite(f)):
        return "diverging", math.nan, math.nan
    if target is not None and len(f) > 2 and f[-1] - target > f[0] - target > 0:
        return "diverging", fit_linear_rate(np.abs(f - target)), math.nan
    if target is None and len(f) > 2 and f[-1] > f[0] and np.mean(np.diff(f[len(f) // 2:]) > 0) > 0.5:
        return "diverging", math.nan, math.nan
    e = errors_of(f, target)
    if len(e) < 4:
        return "insufficient", math.nan, math.nan
    order = convergence_order(e)
    k = np.arange(len(e), dtype=np.float64)
    slope, rss_linear = _lstsq_rss(k, np.log(e))
    rho = math.exp(slope)
    if order >= 1.5:
        return "quadratic", rho, order
    _, rss_power = _lstsq_rss(np.log1p(k), np.log(e))
    return ("linear" if rss_linear <= rss_power else "sublinear"), rho, order


def _segments(mask: np.ndarray, gap: int = 1) -> List[Tuple[int, int]]:
    """Runs of True as (first, last) index pairs; runs less than ``gap`` apart are merged."""
    idx = np.flatnonzero(mask)
    if not idx.size:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts, ends = np.r_[idx[0], idx[breaks + 1]], np.r_[idx[breaks], idx[-1]]
    return list(zip(starts.tolist(), ends.tolist()))


def detect_plateau(values, window: int = 20, rel_tol: float = 1e-3, grad_norms=None,
                   grad_rtol: float = 1e-3) -> List[Finding]:
    f = _as_history(values)
    if len(f) < 2 * window or not np.all(np.isfinite(f)):
        return []
    # The running mean over a window: oscillation and minibatch noise cancel, trends stay.
    c = np.r_[0.0, np.cumsum(f)]
    smooth = (c[window:] - c[:-window]) / window
    level = np.maximum(np.abs(smooth[:-window]), np.finfo(np.float64).tiny)
    change = (smooth[:-window] - smooth[window:]) / level
    flat = np.abs(change) < rel_tol
    findings = []
    for start, end in _segments(flat, gap=window):
        stop = end + 2 * window - 1
        if start == 0:
            findings.append(Finding("not_decreasing", 0, f"loss changed by less than {rel_tol:g} "
                                    f"(relative) over steps 0..{stop}"))
        elif smooth[end] - smooth[-1] > 10 * rel_tol * level[end]:
            findings.append(Finding("plateau", start, f"loss flat (relative change < {rel_tol:g} "
                                    f"per {window} steps) over steps {start}..{stop}, then decreasing again"))
        elif end == len(change) - 1 and grad_norms is not None:
            g = _as_history(grad_norms, "grad_norms")
            if len(g) and g[-1] > grad_rtol * g[0]:
                findings.append(Finding("stalled", start, f"loss flat from step {start} while the "
                                        f"gradient norm is {g[-1]:.3g} ({g[-1] / g[0]:.2g} of the first)"))
    return findings


def detect_oscillation(values, window: int = 20, min_sign_changes: float = 0.5,
                       max_net_ratio: float = 0.5) -> List[Finding]:
    f = _as_history(values)
    if len(f) <= window + 1 or not np.all(np.isfinite(f)):
        return []
    d = np.diff(f)
    noise = 1e3 * np.finfo(np.float64).eps * np.maximum(np.abs(f[:-1]), np.abs(f[1:]))
    s = np.where(np.abs(d) > noise, np.sign(d), 0.0)
    flips = ((s[:-1] * s[1:]) < 0).astype(np.float64)
    w = window - 1  # sign pairs per window of `window` differences
    c = np.r_[0.0, np.cumsum(flips)]
    flip_frac = (c[w:] - c[:-w]) / w
    ca = np.r_[0.0, np.cumsum(np.abs(d) * (s != 0))]
    cd = np.r_[0.0, np.cumsum(d * (s != 0))]
    path = ca[window:] - ca[:-window]
    net = np.abs(cd[window:] - cd[:-window])
    n = min(len(flip_frac), len(path))
    osc = (flip_frac[:n] >= min_sign_changes) & (net[:n] <= max_net_ratio * path[:n]) & (path[:n] > 0)
    return [Finding("oscillation", a, f"loss oscillating over steps {a}..{b + window}: "
                    f"{flip_frac[a:b + 1].max():.0%} sign changes of the step-to-step difference, net "
                    f"change {net[a:b + 1].min() / path[a:b + 1].max():.0%} of the path length")
            for a, b in _segments(osc, gap=window)]


def explosion_at(f0: float, fk: float, gk: Optional[float] = None, g_recent=None,
                 growth: float = 10.0, grad_growth: float = 100.0) -> Tuple[Optional[str], Optional[str]]:
    """The explosion rule for one step ``k``: (message about the loss ``fk`` against the first
    loss ``f0``, message about the gradient norm ``gk`` against the median of ``g_recent``, the
    norms of up to 100 steps before it); None where there is nothing to report."""
    loss_msg = grad_msg = None
    if not math.isfinite(fk):
        loss_msg = f"loss is {fk}"
    elif math.isfinite(f0) and fk > f0 + growth * max(abs(f0), np.finfo(np.float64).tiny):
        loss_msg = f"loss grew from {f0:.4g} to {fk:.4g}"
    if gk is not None:
        recent = np.asarray([] if g_recent is None else g_recent, dtype=np.float64)
        recent = recent[np.isfinite(recent)]
        if not math.isfinite(gk):
            grad_msg = f"gradient norm is {gk}"
        elif len(recent) >= 3 and np.median(recent) > 0 and gk > grad_growth * np.median(recent):
            grad_msg = f"gradient norm {gk:.4g} is {gk / np.median(recent):.3g} times the recent median"
    return loss_msg, grad_msg


def detect_explosion(values, grad_norms=None, growth: float = 10.0,
                     grad_growth: float = 100.0) -> List[Finding]:
    """The first step where the loss explodes and the first where the gradient norm does."""
    f = _as_history(values)
    g = None if grad_norms is None else _as_history(grad_norms, "grad_norms")
    found: Dict[int, Finding] = {}
    for k in range(max(len(f), 0 if g is None else len(g))):
        msgs = explosion_at(f[0] if len(f) else math.nan, f[k] if k < len(f) else 0.0,
                            None if g is None or k >= len(g) else float(g[k]),
                            None if g is None else g[max(0, k - 100):k], growth, grad_growth)
        for slot, msg in enumerate(msgs):
            if msg and slot not in found:
                found[slot] = Finding("explosion", k, f"{msg} at step {k}")
        if len(found) == 2:
            break
    return sorted(found.values(), key=lambda x: x.step)


@dataclass
class ConvergenceReport:
    kind: str
    rate: float
    order: float
    findings: List[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def __str__(self) -> str:
        head = f"convergence: {self.kind}"
        if math.isfinite(self.rate):
            head += f", fitted rate rho = {self.rate:.6g}"
        if math.isfinite(self.order):
            head += f", order {self.order:.3g}"
        return "\n".join([head] + [str(x) for x in self.findings] or [head])


def analyze_convergence(losses, grad_norms=None, target: Optional[float] = None, window: int = 20,
                        rel_tol: float = 1e-3, slow_rate: float = 0.99) -> ConvergenceReport:
    """Every measurement of the module docs on one history; findings ordered by step."""
    kind, rho, order = classify_convergence(losses, target)
    findings = (detect_explosion(losses, grad_norms) + detect_oscillation(losses, window)
                + detect_plateau(losses, window, rel_tol, grad_norms))
    if kind == "diverging" and not any(x.kind == "explosion" for x in findings):
        findings.append(Finding("diverging", len(_as_history(losses)) - 1, "the loss is increasing"))
    elif kind == "sublinear":
        findings.append(Finding("sublinear", 0, "errors fit O(k^-p) better than O(rho^k)"))
    elif kind == "linear" and rho > slow_rate:
        findings.append(Finding("slow_linear", 0, f"linear rate rho = {rho:.6g} > {slow_rate}"))
    return ConvergenceReport(kind, rho, order, sorted(findings, key=lambda x: x.step))


class StoppingRule:
    """Convergence criteria as a reusable rule: ``update(...)`` returns True when any
    criterion that was configured is met, and ``reason`` says which.

    - ``grad_tol``: the gradient norm is at most ``grad_tol``;
    - ``loss_tol``: ``|f_k - f_{k-1}| <= loss_tol * max(1, |f_k|)``;
    - ``patience``: the validation loss has not improved on its best by more than ``min_delta``
      for ``patience`` successive updates (early stopping).
    """

    def __init__(self, grad_tol: Optional[float] = None, loss_tol: Optional[float] = None,
                 patience: Optional[int] = None, min_delta: float = 0.0) -> None:
        if grad_tol is None and loss_tol is None and patience is None:
            raise ValueError("give at least one of grad_tol, loss_tol, patience")
        for name, v in (("grad_tol", grad_tol), ("loss_tol", loss_tol), ("min_delta", min_delta)):
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0; got {v}")
        if patience is not None and (isinstance(patience, bool) or int(patience) != patience or patience < 1):
            raise ValueError(f"patience must be a positive integer; got {patience!r}")
        self.grad_tol, self.loss_tol, self.patience, self.min_delta = grad_tol, loss_tol, patience, min_delta
        self.reset()

    def reset(self) -> None:
        self.reason: Optional[str] = None
        self.best = math.inf
        self.bad_updates = 0
        self._last_loss: Optional[float] = None

    def update(self, loss: Optional[float] = None, grad_norm: Optional[float] = None,
               val_loss: Optional[float] = None) -> bool:
        reasons = []
        if self.grad_tol is not None and grad_norm is not None and grad_norm <= self.grad_tol:
            reasons.append(f"gradient norm {grad_norm:.3g} <= {self.grad_tol:g}")
        if self.loss_tol is not None and loss is not None:
            if self._last_loss is not None and abs(loss - self._last_loss) <= self.loss_tol * max(1.0, abs(loss)):
                reasons.append(f"loss change {abs(loss - self._last_loss):.3g} <= {self.loss_tol:g} (relative)")
            self._last_loss = loss
        if self.patience is not None and val_loss is not None:
            if val_loss < self.best - self.min_delta:
                self.best, self.bad_updates = val_loss, 0
            else:
                self.bad_updates += 1
                if self.bad_updates >= self.patience:
                    reasons.append(f"validation loss not improved for {self.bad_updates} updates "
                                   f"(best {self.best:.6g})")
        self.reason = "; ".join(reasons) or None
        return bool(reasons)
