"""Survival losses: the Cox proportional hazards partial likelihood (Breslow's or Efron's ties),
the accelerated failure time model with interval censoring (XGBoost's ``survival:aft``), and
Harrell's concordance index.

Predictions are what a model outputs: log hazard ratios for :class:`CoxPH` (higher = earlier
event), the location of log time for :class:`AFT` (higher = later event). Derivatives are with
respect to them.

Labels:

- :class:`CoxPH`: ``y_true`` holds times. Without ``event=`` they follow XGBoost's
  ``survival:cox`` convention: a positive time is an observed event, a negative one (or zero) a
  sample right-censored at ``|time|``. With ``event=`` (booleans or 0/1, 1 = event), ``y_true``
  holds non-negative times.
- :class:`AFT`: ``y_true`` is the lower bound of each time and ``upper=`` its upper bound
  (XGBoost's ``label_lower_bound`` / ``label_upper_bound``): ``lower == upper`` for an observed
  time, ``upper = inf`` for right censoring, ``lower = 0`` for left censoring, anything between
  for an interval. Without ``upper=`` every time is observed.

References: Cox (1972), Regression models and life-tables, JRSS B 34; Breslow (1974), Covariance
analysis of censored survival data, Biometrics 30; Efron (1977), The efficiency of Cox's
likelihood function for censored data, JASA 72; Barnwal, Cho & Hocking (2022), Survival regression
with accelerated failure time model in XGBoost, JCGS 31; Harrell, Califf, Pryor, Lee & Rosati
(1982), Evaluating the yield of medical tests, JAMA 247.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from . import _core
from ._base import ElementwiseLoss, FloatArray, Loss, param
from ._batch import item_weights
from ._validate import choice, positive, real_array

__all__ = ["CoxPH", "AFT", "cox_ph", "aft", "concordance_index"]


def _events(event: Any, shape: Tuple[int, ...]) -> np.ndarray:
    """``event`` (booleans or 0/1 numbers, ``shape``) as a C-contiguous uint8 array."""
    e = event if isinstance(event, np.ndarray) else np.asarray(event)
    if e.dtype.kind not in "biuf":
        raise TypeError(f"event must hold booleans or 0/1; got dtype {e.dtype}")
    if e.shape != shape:
        raise ValueError(f"event must have the shape of the times {shape}; got {e.shape}")
    if e.dtype == np.bool_:
        return np.ascontiguousarray(e).view(np.uint8)
    bad = ~((e == 0) | (e == 1))
    if bad.any():
        i = int(np.argmax(bad.ravel()))
        raise ValueError(f"event must hold booleans or 0/1; event[{i}] = {e.ravel()[i].item()!r}")
    return np.ascontiguousarray(e, dtype=np.uint8)


class CoxPH(Loss[FloatArray]):
    """Cox proportional hazards loss: the negative log partial likelihood of log hazard ratios.

    With risk sets ``R(t) = {j : t_j >= t}``, event times ``t_g`` with ``d_g`` events ``D_g``
    (summed weight ``W_g``), case weights ``w`` and ``S_g = sum_{j in R(t_g)} w_j exp(eta_j)``::

        breslow:  l = sum_g [ -sum_{i in D_g} w_i eta_i + W_g log S_g ]
        efron:    l = sum_g [ -sum_{i in D_g} w_i eta_i
                              + (W_g / d_g) sum_{r < d_g} log(S_g - (r / d_g) E_g) ]

    ``E_g = sum_{i in D_g} w_i exp(eta_i)`` (Efron's weighted form as in R's ``survival::coxph``
    and lifelines). Without ties both are Cox's partial likelihood. ``reduction="sum"`` is ``l``;
    ``"mean"`` divides by the summed weight of the events (the number of events without
    weights; pycox's ``cox_ph_loss`` normalization; 0 for a batch without events); ``"none"``
    gives each event its share ``w_i (mean_r log S_gr - eta_i)`` and each censored sample 0.

    One stable radix sort of the times, then suffix sums of ``w exp(eta - max eta)`` for the risk
    sets and prefix sums over the event times give the value, the exact gradient and the exact
    Hessian diagonal in O(n log n) (O(n) after the sort); every sum runs in a fixed order, so the
    result does not depend on the thread count. Not a sum over samples: ``chunkable`` is False.

    Differences from XGBoost's ``survival:cox`` (Breslow): there, a sample weight scales the
    sample's gradient but not its share of the risk sets, and tied event times enter the gradient
    one by one in sort order; here weights are case weights throughout and ties are exact. With
    distinct times and no weights the two coincide.

    Labels: ``y_true`` holds times, negative for right-censored samples (XGBoost's convention),
    or non-negative times with ``event=`` (booleans or 0/1, 1 = event). ``y_pred``: 1-D.

    Parameters
    ----------
    ties : "breslow" or "efron", default "breslow"

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> time = np.array([1.0, 2.0, 3.0]); eta = np.zeros(3)
    >>> round(fl.CoxPH(reduction="sum")(time, eta), 6)   # log 3 + log 2 + log 1
    1.791759
    >>> round(fl.CoxPH()(np.array([1.0, -2.0, 3.0]), eta), 6)  # the second sample censored
    0.549306
    >>> fl.CoxPH()(time, eta, event=[True, False, True]) == fl.CoxPH()(np.array([1.0, -2.0, 3.0]), eta)
    True
    """

    function_name = "cox_ph"
    ties: str = param(default="breslow", check=choice("breslow", "efron"),
                      doc="handling of tied event times: 'breslow' or 'efron'")
    family, convex, robust, smooth = "survival", True, False, True
    optional_inputs = ("event",)
    chunkable = False  # the risk sets span the whole batch
    native_buffers = True
    empty_mean = 0.0  # a batch without events: nothing to explain

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Exponential times with hazard ``exp(eta)``, rounded to 0.1 (so some tie), about 30 %
        right-censored; ``y_pred = eta + N(0, 0.5^2)``; times as ``y_true`` and ``event=``."""
        eta = rng.standard_normal(n)
        time = np.round(rng.exponential(size=n) * np.exp(-eta), 1)
        event = rng.random(n) >= 0.3
        event[np.argmin(time)] = True  # at least one event
        pred = eta + 0.5 * rng.standard_normal(n)
        return time.astype(dtype), pred.astype(dtype), {"event": event}

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             event=None):
        y_true, y_pred = args
        shape = np.shape(y_pred)
        w = item_weights(sample_weight, shape, reduction)
        if w is not None:
            w = np.ascontiguousarray(w, dtype=np.float64)
        if event is not None:
            event = _events(event, np.shape(y_true))
        return _core.cox(self.ties == "efron", y_true, y_pred, w, event, reduction, want_grad,
                         want_hess, out, grad_out, hess_out)


cox_ph = CoxPH.functional


def _aft_bounds(lower: Any, upper: Any, y_pred: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The checked lower and upper bounds of the times (NaN passes: it propagates)."""
    lo = real_array(lower, "y_true")
    shape = np.shape(y_pred)
    if lo.shape != shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got y_true {lo.shape} and "
                         f"y_pred {shape}")
    up = lo if upper is None else real_array(upper, "upper")
    if up.shape != lo.shape:
        raise ValueError(f"upper must have the shape of y_true {lo.shape}; got {up.shape}")
    for name, bad in (("y_true (the lower bounds) must be >= 0 (0 for left censoring)", lo < 0),
                      ("upper must be >= y_true (inf for right censoring)", up < lo),
                      ("upper must be > 0 (an observed time is positive)", up <= 0)):
        if bad.any():
            i = int(np.argmax(bad.ravel()))
            raise ValueError(f"{name}; y_true[{i}] = {lo.ravel()[i].item()!r}, "
                             f"upper[{i}] = {up.ravel()[i].item()!r}")
    return lo, up


class AFT(ElementwiseLoss):
    """Accelerated failure time loss: the negative log-likelihood of interval-censored times.

    The model is ``log T = y_pred + sigma Z`` with ``Z`` standard normal, logistic or extreme
    value (minimum Gumbel, ``F(z) = 1 - exp(-e^z)``), density ``f`` and distribution ``F``.
    With ``z(t) = (log t - y_pred) / sigma`` and bounds ``[lower, upper]`` per sample::

        observed (lower == upper == t):  l = -log f(z(t)) + log(sigma t)
        censored:                        l = -log(F(z(upper)) - F(z(lower)))

    (``upper = inf``: right-censored, ``F = 1``; ``lower = 0``: left-censored, ``F = 0``).
    This is XGBoost's ``survival:aft`` objective (Barnwal, Cho & Hocking 2022) and its
    ``aft-nloglik`` metric, except that the value is exact where XGBoost bounds each term by
    ``-log(1e-12)``. Gradient and Hessian are the exact derivatives, computed stably in the tails
    (Mills' ratio for the normal); the boosting adapters apply XGBoost's bounds to them
    (gradient in [-15, 15], Hessian in [1e-16, 15] per unit weight). Convex for all three
    distributions (their densities are log-concave). ``reduction="mean"``: ``sum(w l) / sum(w)``.

    Labels: ``y_true`` holds the lower bounds, ``upper=`` the upper bounds (XGBoost's
    ``label_lower_bound`` / ``label_upper_bound``); without ``upper=`` every time is observed.

    Parameters
    ----------
    distribution : "normal", "logistic" or "extreme", default "normal"
    sigma : float > 0, default 1.0
        Scale of ``Z`` (XGBoost's ``aft_loss_distribution_scale``).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> t = np.array([1.0, 2.0]); pred = np.log(t)
    >>> round(fl.AFT(reduction="sum")(t, pred), 6)   # 2 log(sqrt(2 pi)) + log 1 + log 2
    2.531024
    >>> round(fl.AFT()(np.array([1.0]), np.array([0.0]), upper=np.array([np.inf])), 6)  # log 2
    0.693147
    """

    function_name = "aft"
    distribution: str = param(default="normal", check=choice("normal", "logistic", "extreme"),
                              doc="distribution of the log-time noise Z")
    sigma: float = param(default=1.0, check=positive, doc="scale of the log-time noise")
    family, convex, robust, smooth = "survival", True, False, True
    optional_inputs = ("upper",)
    native_buffers = True
    # XGBoost's survival:aft bounds on the per-sample derivatives (src/common/survival_util.h),
    # applied by the boosting adapters: ((gradient min, max), (Hessian min, max)).
    boosting_bounds = ((-15.0, 15.0), (1e-16, 15.0))

    kernels = {d: f"aft_{d}" for d in ("normal", "logistic", "extreme")}

    @property
    def _kernel_name(self) -> str:
        return self.kernels[self.distribution]

    def _pack_params(self) -> List[float]:
        return [self.sigma]

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Log-normal times around ``exp(y_pred)``: 40 % observed, 25 % right-censored, 15 %
        left-censored, 20 % interval-censored (the lower bounds as ``y_true``, ``upper=``)."""
        pred = rng.standard_normal(n)
        t = np.exp(pred + 0.5 * rng.standard_normal(n))
        kind = rng.choice(4, size=n, p=[0.4, 0.25, 0.15, 0.2])
        lower = np.where(kind == 1, 0.8 * t, np.where(kind == 2, 0.0, np.where(kind == 3, 0.7 * t, t)))
        upper = np.where(kind == 1, np.inf, np.where(kind == 2, 1.3 * t, np.where(kind == 3, 1.5 * t, t)))
        return lower.astype(dtype), pred.astype(dtype), {"upper": upper.astype(dtype)}

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             upper=None):
        lower, y_pred = args
        lower, upper = _aft_bounds(lower, upper, y_pred)
        return _core.elementwise(self._id, self._kernel_params, lower, y_pred, sample_weight, upper,
                                 reduction, want_grad, want_hess, out, grad_out, hess_out)


aft = AFT.functional


def concordance_index(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index of risk scores (higher = earlier event).

    Over the comparable pairs -- an event at ``t_i`` and a sample still at risk after it
    (``t_j > t_i``, or ``t_j == t_i`` and censored) -- the fraction with ``risk_i > risk_j``,
    ties in risk counting 1/2: scikit-survival's ``concordance_index_censored`` and lifelines'
    ``concordance_index`` (which takes predicted times: pass ``-risk`` there). A Cox model's
    ``y_pred`` is such a risk; for an :class:`AFT` prediction (log time) pass ``-y_pred``.
    O(n log n): a sort of the times and of the risks, and a Fenwick tree over risk ranks.

    Parameters
    ----------
    time : (n,) array of times
    event : (n,) booleans or 0/1 (1 = event observed, 0 = right-censored)
    risk : (n,) array of risk scores

    Raises ValueError when no pair is comparable (no event before another time).

    Examples
    --------
    >>> import fastloss as fl
    >>> fl.concordance_index([1.0, 2.0, 3.0], [1, 1, 0], [3.0, 2.0, 1.0])
    1.0
    >>> fl.concordance_index([1.0, 2.0, 3.0], [1, 0, 1], [1.0, 1.0, 0.0])
    0.75
    """
    t = real_array(time, "time")
    r = real_array(risk, "risk")
    if t.ndim != 1:
        raise ValueError(f"time must be 1-D; got shape {t.shape}")
    if r.shape != t.shape:
        raise ValueError(f"risk must have the shape of time {t.shape}; got {r.shape}")
    e = _events(event, t.shape)
    for name, a in (("time", t), ("risk", r)):
        if np.isnan(a).any():
            raise ValueError(f"{name} must not hold NaN")
    concordant, tied, comparable = _core.concordance(
        np.ascontiguousarray(t, dtype=np.float64), e, np.ascontiguousarray(r, dtype=np.float64))
    if comparable == 0:
        raise ValueError("concordance_index: no comparable pair (no event earlier than another "
                         "time)")
    return (concordant + 0.5 * tied) / comparable
