"""Binary classification losses: cross-entropy, logistic, focal, hinge family.

``y_pred`` holds logits/scores (``from_logits=True``, and always for Logistic and the hinge
family) or probabilities; derivatives are with respect to it. A probability outside [0, 1] is a
ValueError naming the first one (as in PyTorch; NaN propagates instead). Probabilities are clamped
to ``[eps, 1 - eps]`` and the value, gradient and Hessian are those at the clamped point: the clamp
bounds the loss without zeroing its gradient (unlike PyTorch's ``log`` clamp at -100).
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from ._base import ElementwiseLoss, param
from ._validate import between, boolean, non_negative, optional, positive

FROM_LOGITS = param(default=False, check=boolean,
                    doc="y_pred holds logits (True) or probabilities")
EPS = param(default=1e-7, check=between(0, 0.5, "neither"),
            doc="probabilities are clamped to [eps, 1 - eps]")
LABEL_SMOOTHING = between(0, 1, "left")

__all__ = ["BinaryCrossEntropy", "Logistic", "BinaryFocal", "Hinge", "SquaredHinge", "SmoothHinge"]


class _BinaryLoss(ElementwiseLoss):
    """A loss on one score (or probability) per element and a binary label."""

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Labels drawn from a logistic model on scores ``z ~ N(0, 4)`` (-1/+1 for the margin
        losses, else 0/1); predictions ``z + N(0, 1)``, or ``sigmoid(z)`` on probabilities."""
        z = 2.0 * rng.standard_normal(n)
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
        if self.sign_labels:
            y = 2 * y - 1
        logits = getattr(self, "from_logits", True)
        p = z + rng.standard_normal(n) if logits else 1 / (1 + np.exp(-z))
        return y.astype(dtype), p.astype(dtype), {}


class BinaryCrossEntropy(_BinaryLoss):
    """Binary cross-entropy on probabilities or logits, with ``pos_weight`` and label smoothing.

    With the smoothed target ``ys = y (1 - label_smoothing) + label_smoothing / 2`` (Keras) and
    ``pw = pos_weight``:

    - logits ``z``: ``l = pw ys softplus(-z) + (1 - ys) softplus(z)`` (stable for any ``z``),
      gradient ``(1 - ys) sigmoid(z) - pw ys sigmoid(-z)``, Hessian
      ``(pw ys + 1 - ys) sigmoid(z) sigmoid(-z)``; equals PyTorch's
      ``binary_cross_entropy_with_logits(z, ys, pos_weight=pw)``.
    - probabilities ``p``: ``l = -(pw ys log p + (1 - ys) log(1 - p))`` at ``p`` clamped to
      ``[eps, 1 - eps]``; gradient and Hessian are those at the clamped point (never zeroed).

    Targets ``y`` are probabilities in [0, 1] (soft labels allowed; not validated).

    Parameters
    ----------
    from_logits : bool, default False
    pos_weight : float > 0, default 1.0
        Weight of the positive term (PyTorch's ``pos_weight``).
    label_smoothing : float in [0, 1), default 0.0
    eps : float in (0, 0.5), default 1e-7
        Probability clamp (``from_logits=False`` only).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.BinaryCrossEntropy()(np.array([1.0, 0.0]), np.array([0.9, 0.2])), 6)
    0.164252
    >>> round(fl.BinaryCrossEntropy(from_logits=True)(np.array([1.0]), np.array([0.0])), 6)
    0.693147
    """

    function_name = "binary_cross_entropy"
    kernels = {False: "bce_probs", True: "bce_logits"}
    from_logits: bool = FROM_LOGITS
    pos_weight: float = param(default=1.0, check=positive, doc="weight of the positive term")
    label_smoothing: float = param(default=0.0, check=LABEL_SMOOTHING, doc="smoothing towards 1/2")
    eps: float = EPS
    family, convex, robust, smooth = "classification", True, False, True

    def _pack_params(self) -> List[float]:
        return [self.pos_weight, self.label_smoothing, self.eps]


class Logistic(_BinaryLoss):
    """Logistic loss for labels in {-1, +1} (0 is read as -1): ``l = log(1 + exp(-y z))``.

    Gradient ``-y sigmoid(-y z)``, Hessian ``sigmoid(z) sigmoid(-z)``. Equals PyTorch's
    ``soft_margin_loss`` and scikit-learn's ``HalfBinomialLoss`` with 0/1 labels. Any label other
    than -1, 0, +1 raises ValueError.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.Logistic()(np.array([1, -1]), np.array([2.0, 2.0])), 6)
    1.126928
    """

    kernel = "logistic"
    sign_labels = True
    family, convex, robust, smooth = "classification", True, False, True


class BinaryFocal(_BinaryLoss):
    """Binary focal loss (Lin et al. 2017): ``l = alpha_t (1 - p_t)^gamma BCE(y, p)``.

    ``p = sigmoid(z)`` for logits (or the clamped probability), ``p_t = y p + (1 - y)(1 - p)``,
    ``alpha_t = alpha y + (1 - alpha)(1 - y)`` (1 when ``alpha`` is None); soft labels as in
    torchvision's ``sigmoid_focal_loss``. ``gamma = 0`` with ``alpha=None`` is exactly
    BinaryCrossEntropy. Gradient and Hessian are the exact derivatives, finite also where
    ``1 - p_t`` reaches 0.

    Parameters
    ----------
    gamma : float >= 0, default 2.0
        Focusing parameter.
    alpha : float in [0, 1] or None, default None
        Weight of the positive class.
    from_logits : bool, default False
    eps : float in (0, 0.5), default 1e-7
        Probability clamp (``from_logits=False`` only).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.BinaryFocal(gamma=2.0, from_logits=True)(np.array([1.0]), np.array([0.0])), 6)
    0.173287
    """

    function_name = "binary_focal"
    kernels = {False: "focal_probs", True: "focal_logits"}
    gamma: float = param(default=2.0, check=non_negative, doc="focusing parameter")
    alpha: Optional[float] = param(default=None, check=optional(between(0, 1)),
                                   doc="positive-class weight, or None")
    from_logits: bool = FROM_LOGITS
    eps: float = EPS
    family, convex, robust, smooth = "classification", False, False, True

    def _pack_params(self) -> List[float]:
        return [self.gamma, -1.0 if self.alpha is None else self.alpha, self.eps]


class Hinge(_BinaryLoss):
    """Hinge loss ``max(0, 1 - y z)`` for labels in {-1, +1} (0 is read as -1).

    Gradient ``-y`` where ``y z < 1``, else 0; Hessian: the exact a.e. value 0. Equals
    scikit-learn's ``hinge_loss`` (mean).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.Hinge()(np.array([1, -1]), np.array([0.5, 0.5]))
    1.0
    """

    kernel = "hinge"
    sign_labels = True
    family, convex, robust, smooth, hessian = "classification", True, False, False, "a.e."


class SquaredHinge(_BinaryLoss):
    """Squared hinge loss ``max(0, 1 - y z)^2`` for labels in {-1, +1} (0 is read as -1).

    Gradient ``-2 y (1 - y z)`` where ``y z < 1``; Hessian 2 there and 0 elsewhere (exact a.e.).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.SquaredHinge()(np.array([1, -1]), np.array([0.5, 0.5]))
    1.25
    """

    kernel = "squared_hinge"
    sign_labels = True
    family, convex, robust, smooth, hessian = "classification", True, False, True, "a.e."


class SmoothHinge(_BinaryLoss):
    """Quadratically smoothed hinge (Rennie & Srebro 2005) on the margin ``u = y z``.

    ``l = 1/2 - u`` for ``u <= 0``, ``(1 - u)^2 / 2`` for ``0 < u < 1``, 0 for ``u >= 1``;
    gradient ``-y``, ``-y (1 - u)``, 0; Hessian 0, 1, 0 (exact a.e.). Labels in {-1, +1}
    (0 is read as -1).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.SmoothHinge()(np.array([1, -1]), np.array([0.5, 0.5]))
    0.5625
    """

    kernel = "smooth_hinge"
    sign_labels = True
    family, convex, robust, smooth, hessian = "classification", True, False, True, "a.e."


binary_cross_entropy = BinaryCrossEntropy.functional
logistic = Logistic.functional
binary_focal = BinaryFocal.functional
hinge = Hinge.functional
squared_hinge = SquaredHinge.functional
smooth_hinge = SmoothHinge.functional
