"""Progressive training: self-paced learning weights and objective, and curriculum
pacing functions.

Self-paced learning (Kumar, Packer & Koller 2010) minimizes over the model and the sample weights
``v_i`` in [0, 1] jointly: ``sum_i v_i l_i + sum_i f(v_i; lam)``. For fixed losses the optimal
weights have closed forms, one per self-paced regularizer ``f``:

- ``"hard"`` (Kumar et al. 2010): ``f = -lam v``, the paper's ``sum v_i l_i - lam sum v_i``;
  ``v_i = 1`` if ``l_i < lam`` else 0 (a tie ``l_i = lam`` is optimal either way and takes 0);
- ``"linear"`` (Jiang et al. 2014): ``f = lam (v^2 / 2 - v)``; ``v_i = clip(1 - l_i / lam, 0, 1)``;
- ``"mixture"`` (Jiang et al. 2014), with ``0 < gamma < lam``:
  ``f = -zeta log(v + zeta / lam)``, ``zeta = lam gamma / (lam - gamma)``;
  ``v_i = 1`` if ``l_i <= gamma``, 0 if ``l_i >= lam``, else ``zeta (1 / l_i - 1 / lam)``.

Curriculum learning (Bengio et al. 2009) trains on the easiest fraction of the data, growing to
all of it; the pacing functions give that fraction at a training step (Platanios et al. 2019 for
the linear and root "competence" functions; Hacohen & Weinshall 2019 for the step schedule).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from ._base import Loss
from ._validate import between, choice, integer, non_negative, positive, real_array

__all__ = ["self_paced_weights", "self_paced_objective", "SelfPaced", "SelfPacedResult",
           "curriculum_fraction", "curriculum_indices", "PACINGS", "SELF_PACED_REGULARIZERS"]

SELF_PACED_REGULARIZERS = ("hard", "linear", "mixture")
PACINGS = ("linear", "root", "geometric", "step")


def _check_regularizer(regularizer: str, lam: float, gamma: Optional[float]):
    choice(*SELF_PACED_REGULARIZERS)("regularizer", regularizer)
    lam = non_negative("lam", lam) if regularizer == "hard" else positive("lam", lam)
    if regularizer == "mixture":
        if gamma is None:
            raise ValueError("the mixture regularizer needs gamma, with 0 < gamma < lam")
        gamma = positive("gamma", gamma)
        if gamma >= lam:
            raise ValueError(f"gamma must be < lam for the mixture regularizer; got gamma={gamma}, "
                             f"lam={lam}")
    elif gamma is not None:
        raise ValueError(f"gamma is only used by the mixture regularizer, not {regularizer!r}")
    return lam, gamma


def _losses(losses) -> np.ndarray:
    return real_array(losses, "losses", np.float64)


def self_paced_weights(losses, lam: float, regularizer: str = "hard",
                       gamma: Optional[float] = None) -> np.ndarray:
    """The optimal self-paced weights ``v_i`` in [0, 1] for per-sample ``losses`` (any shape;
    float64 result of the same shape), in closed form (see the module docs).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.self_paced_weights(np.array([0.5, 1.5, 3.0]), lam=2.0).tolist()
    [1.0, 1.0, 0.0]
    >>> fl.self_paced_weights(np.array([0.5, 1.5, 3.0]), lam=2.0, regularizer="linear").tolist()
    [0.75, 0.25, 0.0]
    """
    lam, gamma = _check_regularizer(regularizer, lam, gamma)
    l = _losses(losses)
    if regularizer == "hard":
        return (l < lam).astype(np.float64)
    if regularizer == "linear":
        return np.clip(1.0 - l / lam, 0.0, 1.0)
    zeta = lam * gamma / (lam - gamma)
    with np.errstate(divide="ignore"):
        middle = zeta * (1.0 / l - 1.0 / lam)
    return np.where(l <= gamma, 1.0, np.where(l >= lam, 0.0, middle))


def self_paced_objective(losses, v, lam: float, regularizer: str = "hard",
                         gamma: Optional[float] = None) -> float:
    """``sum_i v_i l_i + sum_i f(v_i; lam)``: for ``"hard"`` Kumar et al.'s
    ``sum v_i l_i - lam sum v_i``. ``v`` must have the shape of ``losses`` and lie in [0, 1]."""
    lam, gamma = _check_regularizer(regularizer, lam, gamma)
    l, v = _losses(losses), _losses(v)
    if v.shape != l.shape:
        raise ValueError(f"v and losses must have the same shape; got v {v.shape} and losses "
                         f"{l.shape}")
    if np.any((v < 0) | (v > 1)):
        raise ValueError("v must lie in [0, 1]")
    if regularizer == "hard":
        f = -lam * v
    elif regularizer == "linear":
        f = lam * (0.5 * v * v - v)
    else:
        zeta = lam * gamma / (lam - gamma)
        f = -zeta * np.log(v + zeta / lam)
    return math.fsum(np.ravel(v * l + f))


class SelfPacedResult(NamedTuple):
    value: float             # the self-paced objective at the optimal weights
    weights: np.ndarray      # v, one per per-sample loss
    grad: np.ndarray         # d(value)/d(y_pred)


class SelfPaced:
    """A loss under self-paced learning: for the current predictions, the per-sample losses
    ``l_i`` (``reduction="none"``, sample weights applied), their optimal weights ``v_i`` and the
    objective ``sum v_i l_i + sum f(v_i; lam)`` -- a sum, whatever the wrapped loss's reduction.

    The gradient is ``d/dy_pred sum_i v_i l_i`` with ``v`` held at its optimum: the derivative of
    the objective minimized over ``v`` (envelope theorem; almost everywhere for ``"hard"``). It
    comes from one weighted ``reduction="sum"`` call of the loss's fused kernel. Grow ``lam`` over
    training (a new ``SelfPaced`` per stage) to admit harder samples.

    Parameters
    ----------
    loss : fastloss.Loss
    lam : float (>= 0 for "hard", > 0 otherwise)
    regularizer : "hard", "linear" or "mixture", default "hard"
    gamma : float in (0, lam), mixture only

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> sp = fl.SelfPaced(fl.MSE(), lam=1.0)
    >>> r = sp.evaluate(np.zeros(3), np.array([0.5, 2.0, -0.1]))
    >>> r.weights.tolist(), round(r.value, 6), r.grad.tolist()
    ([1.0, 0.0, 1.0], -1.74, [1.0, 0.0, -0.2])
    """

    def __init__(self, loss: Loss, lam: float, regularizer: str = "hard",
                 gamma: Optional[float] = None) -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastloss.Loss; got {type(loss).__name__}")
        self.lam, self.gamma = _check_regularizer(regularizer, lam, gamma)
        self.loss, self.regularizer = loss, regularizer

    def __repr__(self) -> str:
        gamma = f", gamma={self.gamma!r}" if self.gamma is not None else ""
        return f"SelfPaced({self.loss!r}, lam={self.lam!r}, regularizer={self.regularizer!r}{gamma})"

    def evaluate(self, *args, sample_weight=None, **inputs) -> SelfPacedResult:
        """The objective, the weights and the gradient; the arguments are the wrapped loss's own
        (``evaluate(y_true, y_pred)``, its several inputs, keyword inputs such as
        ``teacher_logits``)."""
        args, sample_weight, inputs = self.loss._bind(args, inputs, sample_weight)
        per_sample = self.loss(*args, sample_weight=sample_weight, reduction="none", **inputs)
        v = self_paced_weights(per_sample, self.lam, self.regularizer, self.gamma)
        value = self_paced_objective(per_sample, v, self.lam, self.regularizer, self.gamma)
        w = v
        if sample_weight is not None:  # a weight of leading axes applies to the trailing ones
            sw = np.asarray(sample_weight, dtype=np.float64)
            w = v * sw.reshape(sw.shape + (1,) * (v.ndim - sw.ndim))
        _, grad = self.loss.value_and_grad(*args, sample_weight=w, reduction="sum", **inputs)
        return SelfPacedResult(value, v, grad)


def curriculum_fraction(step: float, total_steps: float, pacing: str = "linear",
                        start: float = 0.1, num_steps: int = 4) -> float:
    """The fraction of the easiest samples in use at training ``step`` of a curriculum that
    reaches the full data set at ``total_steps`` (and stays there). With ``c0 = start``,
    ``u = step / total_steps``:

    - ``"linear"``: ``c0 + (1 - c0) u``
    - ``"root"``: ``sqrt(c0^2 + (1 - c0^2) u)`` (fast start, Platanios et al. 2019)
    - ``"geometric"``: ``c0^(1 - u)`` (the fraction grows by a constant factor per step)
    - ``"step"``: ``c0 + (1 - c0) floor(num_steps u) / num_steps`` (``num_steps`` equal jumps)

    each capped at 1.

    Examples
    --------
    >>> import fastloss as fl
    >>> [round(fl.curriculum_fraction(t, 100, "linear", start=0.2), 3) for t in (0, 50, 100, 200)]
    [0.2, 0.6, 1.0, 1.0]
    >>> round(fl.curriculum_fraction(50, 100, "step", start=0.2, num_steps=4), 12)
    0.6
    """
    choice(*PACINGS)("pacing", pacing)
    total = positive("total_steps", total_steps)
    t = non_negative("step", step)
    c0 = between(0, 1, "right")("start", start)
    num_steps = integer(1)("num_steps", num_steps)
    u = min(t / total, 1.0)
    if pacing == "linear":
        c = c0 + (1.0 - c0) * u
    elif pacing == "root":
        c = math.sqrt(c0 * c0 + (1.0 - c0 * c0) * u)
    elif pacing == "geometric":
        c = c0 ** (1.0 - u)
    else:
        c = c0 + (1.0 - c0) * math.floor(num_steps * u) / num_steps
    return min(c, 1.0)


def curriculum_indices(difficulty, fraction: float) -> np.ndarray:
    """Indices of the easiest ``ceil(fraction * n)`` samples (lowest ``difficulty``, a 1-D
    score such as a per-sample loss), ties broken by index (a stable sort, deterministic).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.curriculum_indices(np.array([0.3, 0.1, 0.9, 0.1]), 0.5).tolist()
    [1, 3]
    """
    d = _losses(difficulty)
    if d.ndim != 1:
        raise ValueError(f"difficulty must be 1-D (one score per sample); got shape {d.shape}")
    f = between(0, 1)("fraction", fraction)
    k = math.ceil(round(f * d.size, 9))  # 0.3 * 10 is 3, not 4
    return np.argsort(d, kind="stable")[:k]
