"""A training monitor for the user's own loop, per-class losses, and gradient clipping (by norm,
as PyTorch's ``clip_grad_norm_``, or by value; Pascanu, Mikolov & Bengio 2013).

>>> mon = TrainingMonitor(callback=print)            # doctest: +SKIP
>>> for step in range(n_steps):                      # doctest: +SKIP
...     loss, grads = ...                            # the user's own forward/backward
...     norm = clip_grad_norm(grads, max_norm=1.0)   # in place; the norm before clipping
...     mon.record(loss, grad_norm=norm, lr=lr)
...     if mon.should_stop: break

``record`` runs the detectors of ``fastloss.analysis.convergence`` as the history grows: the
explosion check on every record, the oscillation and plateau checks every ``window // 2`` records
on the last ``4 window`` steps (bounded cost per step). Each finding goes to ``callback`` (default:
``warnings.warn`` with ``TrainingWarning``) once; a kind is reported again only after
``4 window`` steps without it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .convergence import (ConvergenceReport, Finding, StoppingRule, analyze_convergence,
                          detect_oscillation, detect_plateau, explosion_at)

__all__ = ["TrainingMonitor", "TrainingWarning", "global_norm", "clip_grad_norm", "clip_grad_value",
           "per_class_losses"]


class TrainingWarning(UserWarning):
    """A finding of the training monitor (explosion, oscillation, plateau ...)."""


Arrays = Union[np.ndarray, Sequence[np.ndarray]]


def _array_list(grads: Arrays, writeable: bool) -> List[np.ndarray]:
    arrays = [grads] if isinstance(grads, np.ndarray) else list(grads)
    for i, g in enumerate(arrays):
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"grads[{i}] must be a floating-point numpy array; got "
                            f"{type(g).__name__}{'' if not isinstance(g, np.ndarray) else ' of ' + str(g.dtype)}")
        if writeable and not g.flags.writeable:
            raise ValueError(f"grads[{i}] is read-only; clipping works in place")
    return arrays


def global_norm(grads: Arrays, norm_type: float = 2.0) -> float:
    """The norm of all arrays taken together as one vector (``inf`` for the max-norm)."""
    arrays = _array_list(grads, writeable=False)
    if norm_type == math.inf:
        return max((float(np.max(np.abs(g))) for g in arrays if g.size), default=0.0)
    if not norm_type > 0:
        raise ValueError(f"norm_type must be > 0 or inf; got {norm_type}")
    total = sum(float(np.sum(np.abs(g.astype(np.float64, copy=False)) ** norm_type)) for g in arrays)
    return total ** (1.0 / norm_type)


def clip_grad_norm(grads: Arrays, max_norm: float, norm_type: float = 2.0) -> float:
    """Scales every array in place by ``min(1, max_norm / (norm + 1e-6))`` (as
    ``torch.nn.utils.clip_grad_norm_``); returns the global norm before clipping. A non-finite norm
    leaves the arrays untouched (the monitor reports it as an explosion)."""
    if not (math.isfinite(max_norm) and max_norm >= 0):
        raise ValueError(f"max_norm must be finite and >= 0; got {max_norm}")
    arrays = _array_list(grads, writeable=True)
    total = global_norm(arrays, norm_type)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1.0:
        for g in arrays:
            g *= coef
    return total


def clip_grad_value(grads: Arrays, clip_value: float) -> float:
    """Clamps every element in place to ``[-clip_value, clip_value]``; returns the global L2 norm
    before clipping."""
    if not (math.isfinite(clip_value) and clip_value >= 0):
        raise ValueError(f"clip_value must be finite and >= 0; got {clip_value}")
    arrays = _array_list(grads, writeable=True)
    total = global_norm(arrays)
    for g in arrays:
        np.clip(g, -clip_value, clip_value, out=g)
    return total


def per_class_losses(loss, y_true, y_pred, sample_weight=None) -> Dict[Any, float]:
    """The (weighted) mean loss of each class (to watch class-wise performance, e.g. on imbalanced data).

    Classes are the labels of ``y_true``: integer (or 0/1, -1/+1) labels of shape (n,), or the
    argmax of target rows (n, K) for dense targets.
    """
    y = np.asarray(y_true)
    per_sample = np.asarray(loss(y_true, y_pred, sample_weight, reduction="none"), dtype=np.float64)
    labels = y.argmax(axis=-1) if y.ndim == per_sample.ndim + 1 else y
    if labels.shape != per_sample.shape:
        raise ValueError(f"per-class losses need one label per sample: labels {labels.shape}, "
                         f"per-sample losses {per_sample.shape}")
    w = np.ones_like(per_sample) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, np.float64), per_sample.shape)
    out = {}
    for c in np.unique(labels):
        m = labels == c
        # per-sample values are already weighted by w; divide by the class's summed weight
        out[c.item()] = float(per_sample[m].sum() / w[m].sum()) if w[m].sum() > 0 else math.nan
    return out


class TrainingMonitor:
    """Records a training history and reports findings as they happen (module docs).

    Parameters: ``window``, ``rel_tol``, ``growth``, ``grad_growth`` as in
    ``fastloss.analysis.convergence``; ``stopping`` a ``StoppingRule`` consulted on each record
    (``should_stop``, ``stop_reason``); ``callback(finding)`` receives each finding.
    """

    FIELDS = ("step", "loss", "grad_norm", "lr", "val_loss")

    def __init__(self, window: int = 20, rel_tol: float = 1e-3, growth: float = 10.0,
                 grad_growth: float = 100.0, stopping: Optional[StoppingRule] = None,
                 callback: Optional[Callable[[Finding], Any]] = None) -> None:
        if int(window) != window or window < 3:
            raise ValueError(f"window must be an integer >= 3; got {window!r}")
        self.window, self.rel_tol, self.growth, self.grad_growth = int(window), rel_tol, growth, grad_growth
        self.stopping = stopping
        self.callback = callback
        self.history: Dict[str, List[Any]] = {k: [] for k in self.FIELDS}
        self.history["per_class"] = []
        self.findings: List[Finding] = []
        self.should_stop = False
        self.stop_reason: Optional[str] = None
        self._last_seen: Dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.history["loss"])

    def record(self, loss: float, grads: Optional[Arrays] = None, grad_norm: Optional[float] = None,
               lr: Optional[float] = None, per_class: Optional[Dict[Any, float]] = None,
               val_loss: Optional[float] = None, step: Optional[int] = None) -> List[Finding]:
        """Adds one step (``grads``: the gradient arrays, whose global norm is recorded, or
        ``grad_norm`` directly); returns the findings it raised."""
        if grads is not None:
            if grad_norm is not None:
                raise ValueError("give grads or grad_norm, not both")
            grad_norm = global_norm(grads)
        h = self.history
        h["step"].append(len(self) if step is None else int(step))
        h["loss"].append(float(loss))
        for key, value in (("grad_norm", grad_norm), ("lr", lr), ("val_loss", val_loss)):
            h[key].append(None if value is None else float(value))
        h["per_class"].append({str(k): float(v) for k, v in (per_class or {}).items()})
        new = self._check()
        if self.stopping is not None and self.stopping.update(float(loss), grad_norm, val_loss):
            self.should_stop, self.stop_reason = True, self.stopping.reason
        return new

    def _grad_norms(self) -> Optional[np.ndarray]:
        """The gradient norms, when every step recorded one."""
        g = self.history["grad_norm"]
        return np.asarray(g, dtype=np.float64) if g and all(v is not None for v in g) else None

    def _check(self) -> List[Finding]:
        n, w, h = len(self), self.window, self.history
        losses = np.asarray(h["loss"])
        g = h["grad_norm"][-1]
        recent = [v for v in h["grad_norm"][-101:-1] if v is not None]
        found = [Finding("explosion", n - 1, f"{msg} at step {n - 1}")
                 for msg in explosion_at(losses[0], losses[-1], g, recent, self.growth, self.grad_growth)
                 if msg]
        if n >= 2 * w and n % max(1, w // 2) == 0:  # the windowed detectors, on the last 4 windows
            start = max(0, n - 4 * w)
            grads = self._grad_norms()
            for x in detect_oscillation(losses[start:], w) + detect_plateau(
                    losses[start:], w, self.rel_tol, None if grads is None else grads[start:]):
                if x.kind != "not_decreasing" or start == 0:
                    x.step += start
                    found.append(x)
        new = []
        for x in found:  # one report per kind until it has been absent for 4 windows
            last = self._last_seen.get(x.kind)
            self._last_seen[x.kind] = n - 1
            if last is None or n - 1 - last >= 4 * w:
                new.append(x)
        for x in new:
            self.findings.append(x)
            if self.callback is None:
                warnings.warn(str(x), TrainingWarning, stacklevel=3)
            else:
                self.callback(x)
        return new

    def report(self, target: Optional[float] = None) -> ConvergenceReport:
        """``analyze_convergence`` over the whole recorded history."""
        return analyze_convergence(self.history["loss"], self._grad_norms(), target, self.window,
                                   self.rel_tol)

    def save(self, path) -> None:
        """Writes the history as JSON (null for values not recorded)."""
        Path(path).write_text(json.dumps({"window": self.window, "history": self.history}))

    @classmethod
    def load(cls, path) -> "TrainingMonitor":
        data = json.loads(Path(path).read_text())
        mon = cls(window=data["window"], callback=lambda finding: None)
        mon.history = {k: list(v) for k, v in data["history"].items()}
        return mon

    def plot(self, ax=None, log: bool = True):
        """Loss (and validation loss) curves; see ``fastloss.analysis.plot.plot_history``."""
        from .plot import plot_history
        return plot_history(self, ax=ax, log=log)
