"""Independent float64 NumPy references for the elementwise losses, written from the spec.

Nothing here calls fastloss. Every formula gives, per element, the loss ``l``, its derivative
``g = dl/dy_pred`` and second derivative ``h`` (the exact almost-everywhere value where the loss is
piecewise linear). Regression losses are functions of the residual ``r = y_pred - y_true``;
binary-classification losses (``pair=True``) are functions of the label ``y`` and the prediction
``z`` (a logit / score, or a probability ``p``).

The kernels compute natively in ``y_pred``'s dtype. To compare float32 results element by element,
``elementwise_reference`` first rounds the inputs, the residual and the hyper-parameters to the
compute dtype (what the kernel sees), then evaluates the formulas in float64. ``reduce_reference``
applies the weights and the reduction exactly as the contract states.

Adding an elementwise loss to fastloss means adding an entry to ``REFERENCES`` (a contract test
fails when one is missing). One Python class may use several kernels (``BinaryCrossEntropy`` uses
``bce_probs`` or ``bce_logits`` by ``from_logits``): an entry's ``base_params`` are the constructor
arguments that select its kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

LN2 = math.log(2.0)


def _nan_where(r, x):
    """``x``, with NaN wherever the residual is NaN."""
    return np.where(np.isnan(r), np.nan, x)


# --------------------------------------------------------------------------------------------------
# Per-element formulas: f(r, **params) -> (l, g, h), all float64 arrays of r's shape.
# --------------------------------------------------------------------------------------------------


def mse(r):
    l = r * r
    g = 2.0 * r
    h = _nan_where(r, np.full_like(r, 2.0))
    return l, g, h


def mae(r):
    l = np.abs(r)
    g = np.sign(r)  # 0 at r = 0, NaN for NaN
    h = _nan_where(r, np.zeros_like(r))
    return l, g, h


def huber(r, delta=1.0):
    a = np.abs(r)
    inside = a <= delta
    l = np.where(inside, 0.5 * r * r, delta * (a - 0.5 * delta))
    g = np.where(inside, r, delta * np.sign(r))
    h = np.where(inside, 1.0, 0.0)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def smooth_l1(r, beta=1.0):
    a = np.abs(r)
    if beta == 0.0:  # exactly the L1 loss
        return a, np.sign(r), _nan_where(r, np.zeros_like(r))
    inside = a < beta
    l = np.where(inside, 0.5 * r * r / beta, a - 0.5 * beta)
    g = np.where(inside, r / beta, np.sign(r))
    h = np.where(inside, 1.0 / beta, 0.0)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def quantile(r, quantile=0.5):
    tau = np.asarray(quantile, dtype=np.float64)
    pos = r > 0
    l = np.where(pos, (1.0 - tau) * r, -tau * r)
    g = np.where(pos, 1.0 - tau, -tau)  # subgradient -tau at r = 0 (scikit-learn's choice)
    h = np.zeros_like(l)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def log_cosh(r):
    """log(cosh r) without overflow or cancellation.

    |r| < 1:  cosh r - 1 = 2 sinh(r/2)^2, so l = log1p(2 sinh(r/2)^2)   (no cancellation near 0)
    |r| >= 1: l = |r| - log 2 + log1p(exp(-2|r|))                        (no overflow)
    g = tanh r; h = sech^2 r = 1 / cosh(r)^2 (cosh overflowing to inf gives the correct 0).
    """
    a = np.abs(r)
    small = a < 1.0
    s = np.sinh(0.5 * np.where(small, a, 0.0))
    l_small = np.log1p(2.0 * s * s)
    big_a = np.where(small, 1.0, a)
    l_big = big_a - LN2 + np.log1p(np.exp(-2.0 * big_a))
    l = np.where(small, l_small, l_big)
    g = np.tanh(r)
    c = np.cosh(r)
    h = 1.0 / (c * c)
    return _nan_where(r, l), _nan_where(r, g), _nan_where(r, h)


def log_cosh_mp(r: float, dps: int = 50) -> Tuple[float, float, float]:
    """High-precision log(cosh r), tanh r, sech^2 r with mpmath (for spot checks)."""
    import mpmath

    if r != 0 and math.isfinite(r):  # cosh(r) = 1 + r^2/2: keep enough digits beyond the 1
        dps += int(max(0.0, -2.0 * math.log10(abs(r))))
    with mpmath.workdps(dps):
        x = mpmath.mpf(r)
        if mpmath.isinf(x):
            return math.inf, math.copysign(1.0, r), 0.0
        l = mpmath.log(mpmath.cosh(x))
        g = mpmath.tanh(x)
        h = mpmath.sech(x) ** 2
        return float(l), float(g), float(h)


# --------------------------------------------------------------------------------------------------
# The registry of references: one entry per C++ elementwise kernel name.
# --------------------------------------------------------------------------------------------------


def regression_inputs(rng: np.random.Generator, shape, dtype=np.float64, scale: float = 1.5):
    """(y_true, y_pred) with residuals on both sides of every kink of the regression losses."""
    y_true = rng.normal(0.0, 2.0, size=shape)
    resid = rng.normal(0.0, scale, size=shape) * rng.choice([0.05, 1.0, 4.0], size=shape)
    y_pred = y_true + resid
    return np.asarray(y_true, dtype=dtype), np.asarray(y_pred, dtype=dtype)


@dataclass(frozen=True)
class Reference:
    name: str                       # kernel name (fastloss._core.elementwise_kernels key)
    cls_name: str                   # the Python class in fastloss
    formula: Callable[..., Tuple[np.ndarray, np.ndarray, np.ndarray]]
    kinks: Callable[[Dict[str, Any]], Tuple[float, ...]]  # |r| values where l, g or h jump
    param_sets: Tuple[Dict[str, Any], ...]                # hyper-parameters worth testing
    make_inputs: Callable[..., Tuple[np.ndarray, np.ndarray]] = regression_inputs
    smooth_grad: bool = True        # gradient continuous (so FD of the value works at kinks)
    has_hessian: bool = True        # a non-trivial Hessian worth FD-checking
    float_params: Tuple[str, ...] = field(default=())  # params the kernel rounds to the dtype
    family: str = "regression"
    # Constructor arguments that select this kernel (not passed to the formula).
    base_params: Dict[str, Any] = field(default_factory=dict)
    # pair=True: formula(y, p, **params) on (label, prediction) instead of formula(r, **params).
    pair: bool = False
    # The formula takes the compute dtype as ``dt`` (for clamps that the kernel forms in dt).
    dtype_arg: bool = False
    # "any": any real y_true; "pm1": labels in {-1, +1} or {0, 1}, anything else is a ValueError;
    # "support": finite labels in the distribution's support, counts, amounts or times (make_inputs
    # draws positive ones; outside it a ValueError, NaN propagates).
    labels: str = "any"
    # Integer labels valid for this loss, for dtype tests: f(rng, n) -> int array.
    int_labels: Optional[Callable[[np.random.Generator, int], np.ndarray]] = None
    # scales(y, p, **params) -> (l_scale, g_scale, h_scale): per element, the sum of the absolute
    # values of the terms each output is computed from (times the amplification of pow, where the
    # formula has one). An output that cancels is accurate to ulps * eps * scale, not to ulps of
    # itself. None: the outputs themselves (no cancellation).
    scales: Optional[Callable[..., Tuple[np.ndarray, np.ndarray, np.ndarray]]] = None


REFERENCES: Dict[str, Reference] = {
    "mse": Reference("mse", "MSE", mse, lambda p: (), ({},)),
    "mae": Reference("mae", "MAE", mae, lambda p: (0.0,), ({},), smooth_grad=False,
                     has_hessian=False),
    "huber": Reference("huber", "Huber", huber, lambda p: (0.0, p.get("delta", 1.0)),
                       ({}, {"delta": 0.3}, {"delta": 2.5}), float_params=("delta",)),
    "smooth_l1": Reference("smooth_l1", "SmoothL1", smooth_l1, lambda p: (0.0, p.get("beta", 1.0)),
                           ({}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 3.0}),
                           float_params=("beta",)),
    "quantile": Reference("quantile", "Quantile", quantile, lambda p: (0.0,),
                          ({}, {"quantile": 0.1}, {"quantile": 0.9}), smooth_grad=False,
                          has_hessian=False, float_params=("quantile",)),
    "log_cosh": Reference("log_cosh", "LogCosh", log_cosh, lambda p: (), ({},)),
}


# --------------------------------------------------------------------------------------------------
# Binary classification: per-element formulas f(y, z_or_p, **params) -> (l, g, h), derivatives with
# respect to the prediction (the logit/score z, or the probability p evaluated at the clamped pc).
# --------------------------------------------------------------------------------------------------


def _softplus(x):
    """log(1 + e^x) without overflow: inf at +inf, 0 at -inf, NaN for NaN."""
    with np.errstate(all="ignore"):
        return np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))


def _sigmoid(x):
    """1 / (1 + e^-x) with full relative accuracy on both tails (1 at +inf, 0 at -inf)."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _mul0(a, b):
    """a * b, where a term with an exactly-zero factor is 0 even if the other factor is infinite
    (a label that gives a term weight 0 removes it, whatever the logit). NaN still propagates."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        zero = ((a == 0) & ~np.isnan(b)) | ((b == 0) & ~np.isnan(a))
        return np.where(zero, 0.0, a * b)


def _clamp_bounds(eps, dt):
    """(lo, hi) = (eps, 1 - eps) as the kernel forms them in its dtype ``dt``."""
    dt = np.dtype(dt)
    lo = dt.type(eps)
    hi = dt.type(1.0 - np.float64(lo))  # one correctly rounded subtraction, as in dt arithmetic
    return float(lo), float(hi)


def _smoothed(y, label_smoothing):
    a = float(label_smoothing)
    return y * (1.0 - a) + 0.5 * a


def _pm1(y):
    """The sign s of a {-1, +1} / {0, 1} label: +1 if y > 0 else -1."""
    return np.where(y > 0, 1.0, -1.0)


def bce_logits(y, z, pos_weight=1.0, label_smoothing=0.0, eps=1e-7):
    """Binary cross-entropy on logits (``eps`` unused). ys = y (1 - a) + a / 2;
    l = pw ys softplus(-z) + (1 - ys) softplus(z); g = -pw ys s(-z) + (1 - ys) s(z);
    h = (pw ys + 1 - ys) s(z) s(-z)."""
    pw = float(pos_weight)
    ys = _smoothed(y, label_smoothing)
    sm, sp = _sigmoid(-z), _sigmoid(z)
    with np.errstate(all="ignore"):
        l = _mul0(pw * ys, _softplus(-z)) + _mul0(1.0 - ys, _softplus(z))
        g = -pw * ys * sm + (1.0 - ys) * sp
        h = (pw * ys + 1.0 - ys) * sp * sm
    return l, g, h


def bce_logits_scales(y, z, pos_weight=1.0, label_smoothing=0.0, eps=1e-7):
    pw = float(pos_weight)
    ys = _smoothed(y, label_smoothing)
    l, _, h = bce_logits(y, z, pos_weight, label_smoothing)
    with np.errstate(all="ignore"):
        g = pw * np.abs(ys) * _sigmoid(-z) + np.abs(1.0 - ys) * _sigmoid(z)
    return np.abs(l), g, np.abs(h)


def bce_probs(y, p, pos_weight=1.0, label_smoothing=0.0, eps=1e-7, dt=np.float64):
    """Binary cross-entropy on probabilities, pc = clamp(p, eps, 1 - eps) (NaN propagates);
    l = -(pw ys log pc + (1 - ys) log(1 - pc)); g and h are the unclamped formula's derivatives
    evaluated at pc: g = -pw ys / pc + (1 - ys) / (1 - pc),
    h = pw ys / pc^2 + (1 - ys) / (1 - pc)^2.
    """
    pw = float(pos_weight)
    ys = _smoothed(y, label_smoothing)
    lo, hi = _clamp_bounds(eps, dt)
    pc = np.clip(p, lo, hi)
    q = 1.0 - pc
    with np.errstate(all="ignore"):
        l = -(pw * ys * np.log(pc) + (1.0 - ys) * np.log1p(-pc))
        g = -pw * ys / pc + (1.0 - ys) / q
        h = pw * ys / (pc * pc) + (1.0 - ys) / (q * q)
    return l, g, h


def bce_probs_scales(y, p, pos_weight=1.0, label_smoothing=0.0, eps=1e-7, dt=np.float64):
    """l: the term (1 - ys) log(1 - pc) is allowed an absolute error of ~eps (1 - pc formed in the
    dtype, then log): a separate test requires log1p accuracy for small p."""
    pw = float(pos_weight)
    ys = _smoothed(y, label_smoothing)
    lo, hi = _clamp_bounds(eps, dt)
    pc = np.clip(p, lo, hi)
    q = 1.0 - pc
    with np.errstate(all="ignore"):
        l = pw * np.abs(ys) * np.abs(np.log(pc)) + \
            np.abs(1.0 - ys) * np.maximum(np.abs(np.log1p(-pc)), 1.0)
        g = pw * np.abs(ys) / pc + np.abs(1.0 - ys) / q
        h = pw * np.abs(ys) / (pc * pc) + np.abs(1.0 - ys) / (q * q)
    return l, g, h


def logistic(y, z):
    """Logistic loss with s = +1 if y > 0 else -1: l = softplus(-s z), g = -s sigmoid(-s z),
    h = sigmoid(z) sigmoid(-z)."""
    s = _pm1(y)
    with np.errstate(all="ignore"):
        u = s * z
        return _softplus(-u), -s * _sigmoid(-u), _sigmoid(z) * _sigmoid(-z)


def _alpha_t(y, alpha):
    if alpha is None:
        return np.ones_like(y)
    a = float(alpha)
    return a * y + (1.0 - a) * (1.0 - y)


def _focal_combine(at, m, ce, r1, r2, c1, c2, gamma):
    """l = at m^g ce and its first two derivatives, given m, r1 = m'/m, r2 = m''/m, ce, ce' = c1,
    ce'' = c2. With the ratios (bounded) instead of m^(g-1), m^(g-2), nothing overflows or
    underflows before the final product:
      l' = at m^g (g r1 ce + c1),  l'' = at m^g (g (g-1) r1^2 ce + g r2 ce + 2 g r1 c1 + c2).
    Zero factors kill infinite ones (see _mul0)."""
    gm = float(gamma)
    with np.errstate(all="ignore"):
        p0 = np.power(m, gm)
        # an m^g that underflows for m > 0 is no zero factor: against an infinite ce (an
        # infinite logit opposite a positive target) the loss is infinite
        l = _mul0(at, np.where((p0 == 0) & (m > 0) & np.isinf(ce), ce, _mul0(p0, ce)))
        g = at * p0 * (gm * _mul0(r1, ce) + c1)
        h = at * p0 * (gm * (gm - 1.0) * _mul0(r1 * r1, ce) + gm * _mul0(r2, ce)
                       + 2.0 * gm * r1 * c1 + c2)
    return l, g, h


def _focal_scales(at, m, ce_s, r1, r2_s, c1_s, c2, gamma):
    """Sums of |terms| of _focal_combine (with the scales of the cancelling factors) times the
    amplification 1 + gamma |log m| of an m^gamma computed as exp(gamma log m)."""
    gm = float(gamma)
    with np.errstate(all="ignore"):
        p0 = np.power(m, gm)
        amp = 1.0 + gm * np.abs(np.log(np.maximum(m, 1e-300)))
        k = np.abs(at) * amp * p0
        l = _mul0(k, ce_s)
        g = k * (gm * _mul0(np.abs(r1), ce_s) + c1_s)
        h = k * (gm * abs(gm - 1.0) * _mul0(r1 * r1, ce_s) + gm * _mul0(r2_s, ce_s)
                 + 2.0 * gm * np.abs(r1) * c1_s + np.abs(c2))
    return l, g, h


def _focal_logit_parts(y, z):
    sm, sp = _sigmoid(-z), _sigmoid(z)
    with np.errstate(all="ignore"):
        m = y * sm + (1.0 - y) * sp       # 1 - p_t
        ce = _mul0(y, _softplus(-z)) + _mul0(1.0 - y, _softplus(z))
        # r1 = m'/m = (1 - 2y) s(z) s(-z) / m, formed without 0/0, overflow or underflow:
        #   z >= 0: s(-z)/m = e^-z / (y e^-z + (1 - y))   (= 1 for y = 1)
        #   z <  0: s(z)/m  = e^z / (y + (1 - y) e^z)      (= 1 for y = 0)
        pos = z >= 0
        ez = np.exp(-np.abs(z))
        ratio = np.where(pos, np.where(y == 1, 1.0, ez / (y * ez + (1.0 - y))),
                         np.where(y == 0, 1.0, ez / (y + (1.0 - y) * ez)))
        r1 = (1.0 - 2.0 * y) * np.where(pos, sp, sm) * ratio
        r1 = np.where(np.isnan(z) | np.isnan(y), np.nan, r1)
        r2 = r1 * -np.tanh(0.5 * z)       # m''/m: s' = s (s(-z) - s(z)) = -s tanh(z/2)
        c1 = -y * sm + (1.0 - y) * sp     # dce/dz
        c2 = sp * sm
    return m, ce, r1, r2, c1, c2


def focal_logits(y, z, gamma=2.0, alpha=None, eps=1e-7):
    """Focal loss on logits (Lin et al. 2017; torchvision sigmoid_focal_loss with soft labels):
    p = sigmoid(z), ce = BCE(y, z), m = 1 - p_t = y (1 - p) + (1 - y) p,
    at = 1 (alpha None) or alpha y + (1 - alpha)(1 - y); l = at m^gamma ce. ``eps`` unused."""
    m, ce, r1, r2, c1, c2 = _focal_logit_parts(y, z)
    return _focal_combine(_alpha_t(y, alpha), m, ce, r1, r2, c1, c2, gamma)


def focal_logits_scales(y, z, gamma=2.0, alpha=None, eps=1e-7):
    m, ce, r1, _, _, c2 = _focal_logit_parts(y, z)
    with np.errstate(all="ignore"):
        c1_s = np.abs(y) * _sigmoid(-z) + np.abs(1.0 - y) * _sigmoid(z)
    return _focal_scales(_alpha_t(y, alpha), m, ce, r1, np.abs(r1), c1_s, c2, gamma)


def _focal_prob_parts(y, p, eps, dt):
    lo, hi = _clamp_bounds(eps, dt)
    pc = np.clip(p, lo, hi)
    q = 1.0 - pc
    with np.errstate(all="ignore"):
        m = y * q + (1.0 - y) * pc
        lp, lq = np.log(pc), np.log1p(-pc)
        ce = -(y * lp + (1.0 - y) * lq)
        r1 = (1.0 - 2.0 * y) / m
        c1 = -y / pc + (1.0 - y) / q
        c2 = y / (pc * pc) + (1.0 - y) / (q * q)
        ce_s = np.abs(y) * np.abs(lp) + np.abs(1.0 - y) * np.maximum(np.abs(lq), 1.0)
        c1_s = np.abs(y) / pc + np.abs(1.0 - y) / q
    return m, ce, r1, c1, c2, ce_s, c1_s


def focal_probs(y, p, gamma=2.0, alpha=None, eps=1e-7, dt=np.float64):
    """Focal loss on probabilities: as focal_logits with p -> pc = clamp(p, eps, 1 - eps), ce the
    probability BCE; derivatives with respect to p of the unclamped formula, evaluated at pc."""
    m, ce, r1, c1, c2, _, _ = _focal_prob_parts(y, p, eps, dt)
    return _focal_combine(_alpha_t(y, alpha), m, ce, r1, np.zeros_like(m), c1, c2, gamma)


def focal_probs_scales(y, p, gamma=2.0, alpha=None, eps=1e-7, dt=np.float64):
    m, _, r1, _, c2, ce_s, c1_s = _focal_prob_parts(y, p, eps, dt)
    return _focal_scales(_alpha_t(y, alpha), m, ce_s, r1, np.zeros_like(m), c1_s, c2, gamma)


def hinge(y, z):
    """l = max(0, 1 - u), u = s z; g = -s where u < 1 else 0; h = 0 (a.e.)."""
    s = _pm1(y)
    with np.errstate(all="ignore"):
        u = s * z
        l = np.maximum(0.0, 1.0 - u)
        g = np.where(u < 1.0, -s, 0.0)
        h = np.zeros_like(u)
    return _nan_where(u, l), _nan_where(u, g), _nan_where(u, h)


def squared_hinge(y, z):
    """l = max(0, 1 - u)^2; g = -2 s (1 - u) where u < 1 else 0; h = 2 where u < 1 else 0."""
    s = _pm1(y)
    with np.errstate(all="ignore"):
        u = s * z
        inside = u < 1.0
        l = np.where(inside, (1.0 - u) ** 2, 0.0)
        g = np.where(inside, -2.0 * s * (1.0 - u), 0.0)
        h = np.where(inside, 2.0, 0.0)
    return _nan_where(u, l), _nan_where(u, g), _nan_where(u, h)


def smooth_hinge(y, z):
    """Rennie & Srebro (2005): l = 1/2 - u (u <= 0), (1 - u)^2 / 2 (0 < u < 1), 0 (u >= 1);
    g = -s, -s (1 - u), 0; h = 0, 1, 0."""
    s = _pm1(y)
    with np.errstate(all="ignore"):
        u = s * z
        lin, quad = u <= 0.0, (u > 0.0) & (u < 1.0)
        l = np.where(lin, 0.5 - u, np.where(quad, 0.5 * (1.0 - u) ** 2, 0.0))
        g = np.where(lin, -s, np.where(quad, -s * (1.0 - u), 0.0))
        h = np.where(quad, 1.0, 0.0)
    return _nan_where(u, l), _nan_where(u, g), _nan_where(u, h)


def focal_mp(y: float, z: float, gamma: float, alpha=None, from_logits: bool = True,
             eps: float = 1e-7, dps: int = 60) -> Tuple[float, float, float]:
    """(l, g, h) of the focal loss at one point by mpmath: the value at high precision and its
    derivatives by mpmath.diff (numerical differentiation at high precision, independent of the
    hand-derived chain rule above). Probabilities must lie inside (eps, 1 - eps)."""
    import mpmath

    with mpmath.workdps(dps):
        Y = mpmath.mpf(y)
        at = 1 if alpha is None else mpmath.mpf(alpha) * Y + (1 - mpmath.mpf(alpha)) * (1 - Y)

        def f(x):
            if from_logits:
                p = 1 / (1 + mpmath.exp(-x))
                q = 1 / (1 + mpmath.exp(x))
                ce = Y * mpmath.log1p(mpmath.exp(-x)) + (1 - Y) * mpmath.log1p(mpmath.exp(x))
            else:
                p, q = x, 1 - x
                ce = -(Y * mpmath.log(p) + (1 - Y) * mpmath.log(q))
            m = Y * q + (1 - Y) * p
            return at * m ** mpmath.mpf(gamma) * ce

        x = mpmath.mpf(z)
        return (float(f(x)), float(mpmath.diff(f, x, 1)), float(mpmath.diff(f, x, 2)))


def binary_inputs(rng: np.random.Generator, shape, dtype=np.float64, soft: bool = False,
                  scale=(0.1, 1.0, 3.0, 6.0)):
    """(y, z): labels in {0, 1} (with ``soft``, a third of them uniform in [0, 1]) and logits of
    both signs and several magnitudes (|z| mostly below ~25)."""
    y = rng.integers(0, 2, size=shape).astype(np.float64)
    if soft:
        u = rng.uniform(0.0, 1.0, size=shape)
        y = np.where(rng.uniform(size=shape) < 1 / 3, u, y)
    z = rng.normal(0.0, 1.0, size=shape) * rng.choice(scale, size=shape)
    return np.asarray(y, dtype=dtype), np.asarray(z, dtype=dtype)


def prob_inputs(rng: np.random.Generator, shape, dtype=np.float64, soft: bool = False,
                edges: bool = True):
    """(y, p): labels as binary_inputs, probabilities sigmoid(z) in (0, 1) with, when ``edges``,
    some exactly 0 or 1 or next to them (the clamp's territory; outside [0, 1] is an error)."""
    y, z = binary_inputs(rng, shape, np.float64, soft)
    p = np.asarray(_sigmoid(z))
    if edges and p.size >= 8:
        flat = p.reshape(-1)
        k = rng.choice(flat.size, size=max(1, flat.size // 40), replace=False)
        flat[k] = rng.choice([0.0, 1.0, 1e-12, 1.0 - 1e-12], size=k.size)
    return np.asarray(y, dtype=dtype), np.asarray(p, dtype=dtype)


def pm1_inputs(rng: np.random.Generator, shape, dtype=np.float64, scale=(0.1, 1.0, 3.0, 6.0)):
    """(y, z): labels drawn from {-1, 0, +1} (0 meaning -1) and scores as binary_inputs."""
    y = rng.choice([-1.0, 0.0, 1.0], size=shape)
    z = rng.normal(0.0, 1.0, size=shape) * rng.choice(scale, size=shape)
    return np.asarray(y, dtype=dtype), np.asarray(z, dtype=dtype)


def _ints01(rng, n):
    return rng.integers(0, 2, size=n)


def _ints_pm1(rng, n):
    return rng.choice([-1, 0, 1], size=n)


_BINARY = dict(family="binary", pair=True)
_LOGITS = {"from_logits": True}
_BCE_SETS = ({}, {"pos_weight": 2.5}, {"label_smoothing": 0.25},
             {"pos_weight": 0.375, "label_smoothing": 0.5})
_FOCAL_SETS = ({}, {"gamma": 0.0}, {"gamma": 0.5, "alpha": 0.25}, {"gamma": 1.0},
               {"gamma": 3.0, "alpha": 0.75})

# For binary kernels, ``kinks`` are the values of u = s z (hinge family) or of p (the clamp edges)
# where l, g or h jump.
REFERENCES.update({
    "bce_logits": Reference(
        "bce_logits", "BinaryCrossEntropy", bce_logits, lambda p: (), _BCE_SETS,
        make_inputs=binary_inputs, float_params=("pos_weight", "label_smoothing"),
        base_params=_LOGITS, int_labels=_ints01, scales=bce_logits_scales, **_BINARY),
    "bce_probs": Reference(
        "bce_probs", "BinaryCrossEntropy", bce_probs,
        lambda p: (p.get("eps", 1e-7), 1.0 - p.get("eps", 1e-7)), _BCE_SETS + ({"eps": 1e-3},),
        make_inputs=prob_inputs, float_params=("pos_weight", "label_smoothing", "eps"),
        dtype_arg=True, int_labels=_ints01, scales=bce_probs_scales, **_BINARY),
    "logistic": Reference(
        "logistic", "Logistic", logistic, lambda p: (), ({},), make_inputs=pm1_inputs,
        labels="pm1", int_labels=_ints_pm1, **_BINARY),
    "focal_logits": Reference(
        "focal_logits", "BinaryFocal", focal_logits, lambda p: (), _FOCAL_SETS,
        make_inputs=binary_inputs, float_params=("gamma", "alpha"), base_params=_LOGITS,
        int_labels=_ints01, scales=focal_logits_scales, **_BINARY),
    "focal_probs": Reference(
        "focal_probs", "BinaryFocal", focal_probs,
        lambda p: (p.get("eps", 1e-7), 1.0 - p.get("eps", 1e-7)), _FOCAL_SETS + ({"eps": 1e-3},),
        make_inputs=prob_inputs, float_params=("gamma", "alpha", "eps"), dtype_arg=True,
        int_labels=_ints01, scales=focal_probs_scales, **_BINARY),
    "hinge": Reference(
        "hinge", "Hinge", hinge, lambda p: (1.0,), ({},), make_inputs=pm1_inputs,
        smooth_grad=False, has_hessian=False, labels="pm1", int_labels=_ints_pm1, **_BINARY),
    "squared_hinge": Reference(
        "squared_hinge", "SquaredHinge", squared_hinge, lambda p: (1.0,), ({},),
        make_inputs=pm1_inputs, labels="pm1", int_labels=_ints_pm1, **_BINARY),
    "smooth_hinge": Reference(
        "smooth_hinge", "SmoothHinge", smooth_hinge, lambda p: (0.0, 1.0), ({},),
        make_inputs=pm1_inputs, labels="pm1", int_labels=_ints_pm1, **_BINARY),
})


# --------------------------------------------------------------------------------------------------
# Likelihood losses with a log link: f(y, z, **params) -> (l, g, h), z = log(mean).
# --------------------------------------------------------------------------------------------------


def poisson_nll(y, z):
    mu = np.exp(z)
    return mu - _mul0(y, z), mu - y, mu


def poisson_nll_full(y, z):
    l, g, h = poisson_nll(y, z)
    ys = np.where(y > 1, y, 1.0)
    return l + np.where(y > 1, ys * np.log(ys) - ys + 0.5 * np.log(2 * np.pi * ys), 0.0), g, h


def gamma_nll(y, z):
    t = y * np.exp(-z)
    return z + t, 1 - t, t


def tweedie_nll(y, z, power=1.5):
    """scikit-learn's HalfTweedieLoss for p not in {1, 2} (those run the Poisson/Gamma kernels)."""
    p = power
    if p == 0:
        mu = np.exp(z)
        return 0.5 * (mu - y) ** 2, mu * (mu - y), mu * (2 * mu - y)
    e1, e2 = _mul0(y, np.exp((1 - p) * z)), np.exp((2 - p) * z)
    return e2 / (2 - p) - e1 / (1 - p), e2 - e1, (2 - p) * e2 - (1 - p) * e1


def _log_link_scales(y, z, a=1.0, b=2.0, extra=0.0):
    """Sizes of the terms exp(b z) and y exp(a z) (a = 1 - p, b = 2 - p), amplified by the
    rounding of a z and b z in the compute dtype (an absolute error |a z| eps in the exponent)."""
    e1, e2 = np.abs(_mul0(y, np.exp(a * z))), np.exp(b * z)
    amp = 1 + np.abs(z) * max(abs(a), abs(b))
    l = (e1 / max(abs(a), 1e-3) + e2 / max(abs(b), 1e-3) + np.abs(_mul0(y, z)) + np.abs(z)
         + y * y + extra) * amp
    return l, (e1 + e2 + 1) * amp, (e1 + e2) * (abs(a) + abs(b) + 1) * amp


def _stirling_size(y):
    ys = np.where(y > 1, y, 1.0)
    return np.abs(ys * np.log(ys)) + ys + 0.5 * np.log(2 * np.pi * ys) + 1


def likelihood_inputs(rng: np.random.Generator, shape, dtype=np.float64, kind="count"):
    """(y, z): log-means z ~ N(0.5, 1) and observations around exp(z): Poisson counts (zeros
    included) or positive Gamma amounts."""
    z = rng.normal(0.5, 1.0, size=shape)
    mu = np.exp(z)
    y = np.asarray(rng.poisson(mu), np.float64) if kind == "count" else rng.gamma(2.0, mu / 2) + 1e-3
    return np.asarray(y, dtype=dtype), np.asarray(z + rng.normal(0, 0.4, size=shape), dtype=dtype)


def _positive_inputs(rng, shape, dtype=np.float64):
    return likelihood_inputs(rng, shape, dtype, kind="amount")


_LIKELIHOOD = dict(family="likelihood", pair=True, labels="support")
REFERENCES.update({
    "poisson_nll": Reference(
        "poisson_nll", "PoissonNLL", poisson_nll, lambda p: (), ({},), make_inputs=likelihood_inputs,
        int_labels=lambda rng, n: rng.integers(0, 6, size=n),
        scales=lambda y, z: _log_link_scales(y, z, 0.0, 1.0), **_LIKELIHOOD),
    "poisson_nll_full": Reference(
        "poisson_nll_full", "PoissonNLL", poisson_nll_full, lambda p: (), ({},),
        make_inputs=likelihood_inputs, base_params={"full": True},
        int_labels=lambda rng, n: rng.integers(0, 6, size=n),
        scales=lambda y, z: _log_link_scales(y, z, 0.0, 1.0, _stirling_size(y)), **_LIKELIHOOD),
    "gamma_nll": Reference(
        "gamma_nll", "GammaNLL", gamma_nll, lambda p: (), ({},), make_inputs=_positive_inputs,
        int_labels=lambda rng, n: rng.integers(1, 6, size=n),
        scales=lambda y, z: _log_link_scales(y, z, -1.0, 0.0), **_LIKELIHOOD),
    "tweedie_nll": Reference(
        "tweedie_nll", "TweedieNLL", tweedie_nll, lambda p: (),
        ({}, {"power": 0.0}, {"power": -1.0}, {"power": 1.2}, {"power": 3.0}),
        make_inputs=_positive_inputs,
        int_labels=lambda rng, n: rng.integers(1, 6, size=n),
        scales=lambda y, z, power=1.5: _log_link_scales(y, z, 1 - power, 2 - power),
        **_LIKELIHOOD),
})


# --------------------------------------------------------------------------------------------------
# Survival: the accelerated failure time loss of observed times (no upper= bound), l = -log f(z) +
# log(sigma y), z = (log y - p) / sigma, with psi = -(log f)': g = -psi(z) / sigma,
# h = psi'(z) / sigma^2 (censored kinds: tests/test_survival.py).
# --------------------------------------------------------------------------------------------------


def aft_inputs(rng: np.random.Generator, shape, dtype=np.float64):
    """(y, p): positive times over several decades, log-time predictions around them."""
    y = np.exp(rng.normal(0.0, 1.5, size=shape))
    p = np.log(y) + rng.normal(0.0, 1.0, size=shape) * rng.choice([0.1, 1.0, 3.0], size=shape)
    return np.asarray(y, dtype=dtype), np.asarray(p, dtype=dtype)


def _aft(neg_log_pdf, psi, dpsi):
    def formula(y, p, sigma=1.0):
        with np.errstate(all="ignore"):
            z = (np.log(y) - p) / sigma
            l = neg_log_pdf(z) + np.log(sigma) + np.log(y)
            return l, -psi(z) / sigma, dpsi(z) / sigma ** 2
    return formula


def _aft_scales(neg_log_pdf):
    def scales(y, p, sigma=1.0):
        with np.errstate(all="ignore"):
            z = (np.log(y) - p) / sigma
            l = np.abs(neg_log_pdf(z)) + abs(np.log(sigma)) + np.abs(np.log(y)) + np.abs(z)
            g = (np.abs(z) + 1.0) / sigma
            return l, g, (np.exp(np.minimum(z, 700.0)) + 1.0) / sigma ** 2
    return scales


_AFT = {
    "aft_normal": (lambda z: 0.5 * z * z + 0.5 * np.log(2 * np.pi), lambda z: z,
                   lambda z: np.ones_like(z)),
    "aft_logistic": (lambda z: _softplus(z) + _softplus(-z), lambda z: np.tanh(z / 2),
                     lambda z: 2 * _sigmoid(z) * _sigmoid(-z)),
    "aft_extreme": (lambda z: np.exp(z) - z, np.expm1, np.exp),
}
REFERENCES.update({
    name: Reference(name, "AFT", _aft(*fns), lambda p: (), ({}, {"sigma": 0.5}, {"sigma": 2.0}),
                    make_inputs=aft_inputs, base_params={"distribution": name[4:]},
                    scales=_aft_scales(fns[0]), family="survival", pair=True,
                    int_labels=lambda rng, n: rng.integers(1, 10, size=n), labels="support")
    for name, fns in _AFT.items()
})


# --------------------------------------------------------------------------------------------------
# Elementwise evaluation and reductions.
# --------------------------------------------------------------------------------------------------


def compute_dtype(y_pred) -> np.dtype:
    """The dtype the kernel computes in: y_pred's float dtype; ints/bools -> float64, f16 -> f32."""
    dt = np.asarray(y_pred).dtype
    if dt == np.float32 or dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _kernel_inputs(name, y_true, y_pred, params, dtype):
    """(ref, y, p, params) as the kernel sees them: inputs in the compute dtype (returned in
    float64), float hyper-parameters rounded to it, the kernel-selecting params removed."""
    ref = REFERENCES[name]
    params = {k: v for k, v in dict(params or {}).items() if k not in ref.base_params}
    dt = np.dtype(dtype) if dtype is not None else compute_dtype(y_pred)
    p = np.asarray(y_pred).astype(dt)
    y = np.asarray(y_true).astype(dt)
    if y.shape != p.shape:  # per-row y_true against (..., q) predictions
        y = np.broadcast_to(y[..., None], p.shape)
    for k in ref.float_params:
        if params.get(k) is not None:
            v = np.asarray(params[k], dtype=np.float64).astype(dt).astype(np.float64)
            params[k] = float(v) if v.ndim == 0 else v
    if ref.dtype_arg:
        params["dt"] = dt
    return ref, y, p, params


def elementwise_reference(name: str, y_true, y_pred, params: Optional[Dict[str, Any]] = None,
                          dtype=None):
    """Per-element (l, g, h) in float64 for kernel ``name``.

    Inputs, residual and float hyper-parameters are rounded to ``dtype`` (default: the compute
    dtype of ``y_pred``) before the float64 formulas run. For a vector ``quantile`` the last axis of
    ``y_pred`` holds the quantiles and ``y_true`` may lack it. Binary losses (``pair``) take the
    label and the prediction, both rounded to ``dtype``.
    """
    ref, y, p, params = _kernel_inputs(name, y_true, y_pred, params, dtype)
    with np.errstate(all="ignore"):
        if ref.pair:
            return ref.formula(y.astype(np.float64), p.astype(np.float64), **params)
        r = (p - y).astype(np.float64)  # the residual as the kernel forms it, in dt
        return ref.formula(r, **params)


def elementwise_scales(name: str, y_true, y_pred, params: Optional[Dict[str, Any]] = None,
                       dtype=None):
    """Per-element (l_scale, g_scale, h_scale) >= |(l, g, h)|: see ``Reference.scales``."""
    ref, y, p, params = _kernel_inputs(name, y_true, y_pred, params, dtype)
    if ref.scales is None:
        return tuple(np.abs(a) for a in elementwise_reference(name, y_true, y_pred, params, dtype))
    with np.errstate(all="ignore"):
        return ref.scales(y.astype(np.float64), p.astype(np.float64), **params)


def broadcast_weight(w, shape) -> np.ndarray:
    """sample_weight of shape ``shape`` or of its leading axes, broadcast to ``shape`` (float64)."""
    w = np.asarray(w, dtype=np.float64)
    extra = len(shape) - w.ndim
    return np.broadcast_to(w.reshape(w.shape + (1,) * extra), shape)


def reduce_reference(l, g, h, sample_weight=None, reduction="mean"):
    """(value, grad, hess) in float64 under the contract's weighting and reduction.

    mean: sum(w l) / sum(w) (w broadcast over trailing axes); grads w g / sum(w).
    sum:  sum(w l); grads w g.      none: w l per element; grads w g.
    Mean of an empty input is NaN; sum of an empty input is 0.
    """
    shape = np.shape(l)
    w = np.ones(shape) if sample_weight is None else broadcast_weight(sample_weight, shape)
    with np.errstate(all="ignore"):
        wl = w * l
        if reduction == "none":
            return wl, w * g, w * h
        total = float(np.sum(wl, dtype=np.float64))
        if reduction == "sum":
            return total, w * g, w * h
        norm = float(np.sum(w))
        if np.size(l) == 0:
            return math.nan, w * g, w * h
        return total / norm, w * g / norm, w * h / norm


def reference(name, y_true, y_pred, params=None, sample_weight=None, reduction="mean", dtype=None):
    """Shortcut: elementwise_reference + reduce_reference."""
    l, g, h = elementwise_reference(name, y_true, y_pred, params, dtype)
    return reduce_reference(l, g, h, sample_weight, reduction)
