"""Multi-task losses: a weighted sum of named task losses, and uncertainty weighting
(Kendall, Gal & Cipolla 2018) with learned log-variances.

Each task is any fastloss loss with a scalar reduction (``"mean"`` or ``"sum"``), evaluated by
its own fused kernel; inputs are mappings from task name to array (truth first, prediction
second, as everywhere). A task whose loss takes several inputs gets a tuple as its prediction
(``(x1, x2)`` for a contrastive loss on ``(similar, x1, x2)``; ``(features, centers)`` for the
center loss), and keyword inputs through ``inputs={task: {"teacher_logits": t}}``. Gradients are
returned per task, with respect to that task's prediction (a tuple where it has several
differentiable inputs).
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from ._base import Loss
from ._validate import non_negative

__all__ = ["MultiTask", "UncertaintyWeighting", "MultiTaskResult", "UncertaintyResult"]


class MultiTaskResult(NamedTuple):
    value: float                                  # the total loss
    task_values: Dict[str, float]                 # each task's own (unweighted) loss
    grads: Optional[Dict[str, np.ndarray]]        # d(total)/d(y_pred[task]), or None


class UncertaintyResult(NamedTuple):
    value: float
    task_values: Dict[str, float]
    grads: Optional[Dict[str, np.ndarray]]
    grad_log_vars: Optional[np.ndarray]           # d(total)/d(s_t), in task order


def _check_keys(what: str, given: Mapping, names: Tuple[str, ...], optional: bool = False) -> None:
    if not isinstance(given, Mapping):
        raise TypeError(f"{what} must be a mapping from task name to array; got "
                        f"{type(given).__name__}")
    missing = [] if optional else [n for n in names if n not in given]
    extra = [k for k in given if k not in names]
    if missing or extra:
        raise ValueError(f"{what} does not match the tasks {list(names)}: missing {missing}, "
                         f"unexpected {extra}")


class _Tasks:
    """Named task losses, and their evaluation over mappings of inputs."""

    def __init__(self, tasks: Mapping[str, Loss]) -> None:
        if not isinstance(tasks, Mapping) or not tasks:
            raise ValueError("tasks must be a non-empty mapping from task name to fastloss.Loss")
        for name, loss in tasks.items():
            if not isinstance(name, str):
                raise TypeError(f"task names must be strings; got {name!r}")
            if not isinstance(loss, Loss):
                raise TypeError(f"task {name!r} must be a fastloss.Loss; got {type(loss).__name__}")
            if loss.reduction not in ("mean", "sum"):
                raise ValueError(f"task {name!r} must have reduction 'mean' or 'sum'; got "
                                 f"{loss.reduction!r}")
        self.tasks: Dict[str, Loss] = dict(tasks)
        self.names: Tuple[str, ...] = tuple(self.tasks)

    def _each(self, y_true, y_pred, sample_weight, inputs, want_grad):
        """Every task's (value, grad | None), in task order; all inputs checked before any work.
        A task's prediction may be a tuple (the loss's inputs after its first), and ``inputs``
        maps a task to its keyword inputs (``{"kd": {"teacher_logits": t}}``)."""
        _check_keys("y_true", y_true, self.names)
        _check_keys("y_pred", y_pred, self.names)
        weights = {} if sample_weight is None else sample_weight
        _check_keys("sample_weight", weights, self.names, optional=True)
        inputs = {} if inputs is None else inputs
        _check_keys("inputs", inputs, self.names, optional=True)
        out = []
        for name, loss in self.tasks.items():
            pred = y_pred[name]
            args = (y_true[name],) + (tuple(pred) if isinstance(pred, tuple) else (pred,))
            kwargs = dict(inputs.get(name, {}), sample_weight=weights.get(name))
            out.append(loss.value_and_grad(*args, **kwargs) if want_grad
                       else (loss(*args, **kwargs), None))
        return out


def _scaled(grad, factor: float):
    """A task's gradient (an array, or a tuple for a loss with several differentiable inputs),
    scaled in place (fresh arrays from the task's kernel)."""
    for g in (grad if isinstance(grad, tuple) else (grad,)):
        g *= g.dtype.type(factor)
    return grad


class MultiTask(_Tasks):
    """Weighted sum of named task losses: ``L = sum_t lambda_t L_t``.

    Parameters
    ----------
    tasks : mapping name -> fastloss.Loss
        Each task's loss (its own reduction, ``"mean"`` or ``"sum"``, and parameters).
    weights : mapping name -> float >= 0, optional
        ``lambda_t``; tasks not named get 1.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> mt = fl.MultiTask({"depth": fl.MSE(), "label": fl.SparseCategoricalCrossEntropy(from_logits=True)},
    ...                   weights={"label": 0.5})
    >>> y = {"depth": np.array([1.0, 2.0]), "label": np.array([0, 1])}
    >>> p = {"depth": np.array([1.5, 2.0]), "label": np.zeros((2, 3))}
    >>> r = mt.evaluate(y, p)
    >>> round(r.value, 6), round(r.task_values["label"], 6), r.grads["depth"].tolist()
    (0.674306, 1.098612, [0.5, 0.0])
    """

    def __init__(self, tasks: Mapping[str, Loss], weights: Optional[Mapping[str, float]] = None):
        super().__init__(tasks)
        weights = {} if weights is None else weights
        _check_keys("weights", weights, self.names, optional=True)
        self.weights: Dict[str, float] = {
            n: non_negative(f"weights[{n!r}]", weights.get(n, 1.0)) for n in self.names}

    def __repr__(self) -> str:
        return f"MultiTask({self.tasks!r}, weights={self.weights!r})"

    def evaluate(self, y_true, y_pred, sample_weight=None, *, inputs=None,
                 want_grad: bool = True):
        """:class:`MultiTaskResult` ``(value, task_values, grads)`` from one call per task."""
        total, values, grads = 0.0, {}, ({} if want_grad else None)
        for name, (value, grad) in zip(self.names, self._each(y_true, y_pred, sample_weight,
                                                             inputs, want_grad)):
            lam = self.weights[name]
            values[name] = value
            total += lam * value
            if want_grad:
                grads[name] = _scaled(grad, lam)
        return MultiTaskResult(total, values, grads)

    def __call__(self, y_true, y_pred, sample_weight=None, *, inputs=None) -> float:
        return self.evaluate(y_true, y_pred, sample_weight, inputs=inputs, want_grad=False).value

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, inputs=None):
        """``(value, {task: d value / d y_pred[task]})`` (a tuple of gradients for a task whose
        loss has several differentiable inputs)."""
        r = self.evaluate(y_true, y_pred, sample_weight, inputs=inputs)
        return r.value, r.grads


class UncertaintyWeighting(_Tasks):
    """Homoscedastic uncertainty weighting of named task losses (Kendall, Gal & Cipolla, CVPR 2018),
    parameterized by learned log-variances ``s_t = log sigma_t**2``:

    ``L = sum_t 0.5 * exp(-s_t) * L_t + 0.5 * s_t``.

    This is the paper's ``sum_t L_t / (2 sigma_t**2) + log sigma_t`` exactly: with
    ``sigma_t**2 = exp(s_t)``, ``1 / (2 sigma_t**2) = 0.5 exp(-s_t)`` and
    ``log sigma_t = 0.5 s_t``. Optimizing ``s_t`` (unconstrained) instead of ``sigma_t`` keeps the
    weight positive and the objective smooth. Gradients: ``dL/ds_t = 0.5 - 0.5 exp(-s_t) L_t``
    (zero at the optimum ``s_t = log L_t``) and ``dL/dy_pred[t] = 0.5 exp(-s_t) dL_t/dy_pred[t]``.

    Parameters
    ----------
    tasks : mapping name -> fastloss.Loss

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> uw = fl.UncertaintyWeighting({"a": fl.MSE(), "b": fl.MAE()})
    >>> y = {"a": np.zeros(2), "b": np.zeros(2)}
    >>> p = {"a": np.array([1.0, 3.0]), "b": np.array([1.0, -1.0])}
    >>> r = uw.evaluate(y, p, log_vars=[0.0, 0.0])
    >>> r.value, r.grad_log_vars.tolist()
    (3.0, [-2.0, 0.0])
    """

    def __repr__(self) -> str:
        return f"UncertaintyWeighting({self.tasks!r})"

    def _log_vars(self, log_vars) -> np.ndarray:
        if isinstance(log_vars, Mapping):
            _check_keys("log_vars", log_vars, self.names)
            log_vars = [log_vars[n] for n in self.names]
        s = np.asarray(log_vars, dtype=np.float64)
        if s.shape != (len(self.names),):
            raise ValueError(f"log_vars must hold one value per task ({len(self.names)}: "
                             f"{list(self.names)}); got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError("log_vars must be finite")
        return s

    def combine(self, task_losses, log_vars) -> Tuple[float, np.ndarray, np.ndarray]:
        """The weighting of task losses computed elsewhere (another framework's, say):
        ``(L, dL/dL_t, dL/ds_t)`` for ``L = sum_t L_t / (2 sigma_t**2) + log sigma_t`` with
        ``s_t = log sigma_t**2``; ``task_losses`` and ``log_vars`` are sequences in task order
        or mappings name -> value."""
        s = self._log_vars(log_vars)
        if isinstance(task_losses, Mapping):
            _check_keys("task_losses", task_losses, self.names)
            task_losses = [task_losses[n] for n in self.names]
        task_l = np.asarray(task_losses, dtype=np.float64)
        if task_l.shape != s.shape:
            raise ValueError(f"task_losses must hold one value per task ({len(self.names)}: "
                             f"{list(self.names)}); got shape {task_l.shape}")
        precision = 0.5 * np.exp(-s)  # 1 / (2 sigma_t^2)
        total = math.fsum(precision * task_l + 0.5 * s)
        return total, precision, 0.5 - precision * task_l

    def evaluate(self, y_true, y_pred, log_vars, sample_weight=None, *, inputs=None,
                 want_grad: bool = True):
        """:class:`UncertaintyResult` ``(value, task_values, grads, grad_log_vars)``; ``log_vars``
        is a sequence in task order or a mapping name -> s_t."""
        s = self._log_vars(log_vars)  # checked before any task runs
        results = self._each(y_true, y_pred, sample_weight, inputs, want_grad)
        values = {n: v for n, (v, _) in zip(self.names, results)}
        total, precision, grad_s = self.combine([values[n] for n in self.names], s)
        if not want_grad:
            return UncertaintyResult(total, values, None, None)
        grads = {name: _scaled(grad, c) for name, c, (_, grad) in zip(self.names, precision, results)}
        return UncertaintyResult(total, values, grads, grad_s)

    def __call__(self, y_true, y_pred, log_vars, sample_weight=None, *, inputs=None) -> float:
        return self.evaluate(y_true, y_pred, log_vars, sample_weight, inputs=inputs,
                             want_grad=False).value

    def value_and_grad(self, y_true, y_pred, log_vars, sample_weight=None, *, inputs=None):
        """``(value, {task: d value / d y_pred[task]}, d value / d log_vars)``."""
        r = self.evaluate(y_true, y_pred, log_vars, sample_weight, inputs=inputs)
        return r.value, r.grads, r.grad_log_vars
