"""Segmentation losses: soft Dice, generalized Dice and Tversky.

Layout (MONAI's): predictions ``y_pred`` of shape ``(N, C, *spatial)`` -- probabilities, or logits
with ``activation="sigmoid"`` (each class independently: binary or multi-label) or
``activation="softmax"`` (over the class axis). Binary segmentation is ``C = 1``. Targets
``y_true``: the same shape (one-hot or soft), or integer labels ``(N, *spatial)`` in ``[0, C)``
(one-hot encoded inside).

Sums run over the spatial axes of each image and class (with ``batch=True``, over the batch too):
``I = sum p g``, ``P = sum p``, ``G = sum g`` (``sum p^2``, ``sum g^2`` with ``squared=True``).
Per-class losses are combined with the class weights (their weighted mean over classes) into one
loss per image (one for the batch with ``batch=True``); ``reduction`` then combines the images:
``"mean"`` (weighted by ``sample_weight``, one weight per image), ``"sum"``, ``"none"`` (one value
per image; a 0-d array with ``batch=True``). ``smooth_nr`` is added to the numerator and
``smooth_dr`` to the denominator (MONAI's names and defaults, 1e-5: they keep an empty class
finite); MONAI's ``reduction="mean"`` over images and classes is the default here without class
weights.

Gradients with respect to ``y_pred`` (the logits when an activation is given) are exact; computed
by two fused passes over the pixels (the per-class sums, then the gradient) in one native call.
Channels-last arrays (the ``(N, C, *spatial)`` view of ``(N, *spatial, C)`` memory) are read in
place, and the gradient then has the same layout. No Hessian.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._base import FloatArray, Loss, param
from ._batch import check_out, item_result, item_scale, item_weights
from ._validate import boolean, choice, non_negative, real_array
from .multiclass import CLASS_WEIGHTS, ClassWeights

__all__ = ["DiceLoss", "GeneralizedDiceLoss", "TverskyLoss", "dice_loss", "generalized_dice_loss",
           "tversky_loss"]

_ACTIVATIONS = {(None if k == "none" else k): v for k, v in _core.activations.items()}


ACTIVATION = param(default=None, check=choice(None, "sigmoid", "softmax"),
                   doc="None (probabilities), 'sigmoid' or 'softmax' (logits)")
SMOOTH_NR = param(default=1e-5, check=non_negative, doc="added to the numerator")
SMOOTH_DR = param(default=1e-5, check=non_negative, doc="added to the denominator")
BATCH = param(default=False, check=boolean,
              doc="sum over the batch before the ratio (one loss per batch)")


def _class_weight_with_mass(name: str, value: Any) -> Optional[np.ndarray]:
    w = CLASS_WEIGHTS(name, value)
    if w is not None and not w.sum() > 0:
        raise ValueError(f"{name} must not sum to zero (the loss is their weighted mean)")
    return w


CLASS_WEIGHT = param(default=None, check=_class_weight_with_mass,
                     doc="one weight per class (stored as a read-only array), or None")


def _kernel_view(buffer, shape, *inputs):
    """An ``shape`` view of the caller's (checked) gradient buffer for the kernel to write, or
    None when it has none, the view would need a copy, or it overlaps an input (the kernel would
    read what it has written); the kernel itself then decides whether the layout suits it."""
    if buffer is None or any(np.may_share_memory(buffer, a) for a in inputs):
        return None
    view = buffer.view()
    try:
        view.shape = shape  # raises where a reshape would copy
    except AttributeError:
        return None
    return view


class _SoftDice(Loss[FloatArray]):
    """The Dice family over per-(image, class) sums, computed by one native call; subclasses
    name the kernel's loss (``_kind``)."""

    family = "segmentation"
    convex, robust, smooth, hessian = False, False, True, "none"

    def _inputs(self, y_true, y_pred):
        """``(target, z, batch_shape, C)`` with z (N, C, S) and target (N, C, S) or labels (N, S)."""
        z = real_array(y_pred, "y_pred")
        if z.ndim < 2:
            raise ValueError(f"y_pred must be (N, C, *spatial); got shape {z.shape}")
        if z.size == 0:
            raise ValueError(f"empty input: y_pred has shape {z.shape}")
        N, C = z.shape[:2]
        if self.activation == "softmax" and C < 2:
            raise ValueError(f"activation='softmax' needs at least 2 classes; y_pred has shape {z.shape}")
        weight = getattr(self, "class_weight", None)
        if weight is not None and weight.size != C:
            raise ValueError(f"class_weight must have one weight per class ({C}); got {weight.size}")
        t = np.asarray(y_true)
        if t.dtype.kind in "iu" and t.shape == (N,) + z.shape[2:]:
            target = np.require(t, np.int64, "CA").reshape(N, -1)  # C order and aligned
            bad = _core.first_bad_label(target, C)
            if bad >= 0:
                raise ValueError(f"y_true (labels) must lie in [0, {C}); y_true.flat[{bad}] = "
                                 f"{target.ravel()[bad]}")
        elif t.shape == z.shape:
            target = real_array(t, "y_true", z.dtype).reshape(N, C, -1)
        else:
            raise ValueError(f"y_true must have the shape of y_pred {z.shape} (targets) or "
                             f"{(N,) + z.shape[2:]} (integer labels); got {t.shape}")
        return target, z.reshape(N, C, -1), (() if self.batch else (N,)), C

    @property
    def chunkable(self) -> bool:  # type: ignore[override]
        # with batch=True the loss is one ratio over the whole batch: no sum of chunks gives it
        return not self.batch

    # The kernel's loss: (kind, squared, alpha, beta); overridden per loss.
    def _kind(self):
        raise NotImplementedError

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        target, z, items, C = self._inputs(y_true, y_pred)
        if self.batch and sample_weight is not None:
            raise ValueError("sample_weight weighs images; with batch=True there is one loss per batch")
        weights = item_weights(sample_weight, items, reduction)
        # Caller buffers are checked before any is written (the gradient may be written directly).
        if reduction == "none":
            check_out(out, "out", items, z.dtype)
        check_out(grad_out, "grad_out", np.shape(y_pred), z.dtype)
        norm, scale = item_scale(weights, items, reduction)
        kind, squared, alpha, beta = self._kind()
        gview = _kernel_view(grad_out, z.shape, target, z) if want_grad else None
        losses, grad = _core.dice(
            target, z, _ACTIVATIONS[self.activation], _core.dice_kinds[kind], squared,
            self.smooth_nr, self.smooth_dr, alpha, beta, getattr(self, "class_weight", None),
            self.batch, np.reshape(scale, -1) if want_grad else None, gview)
        if want_grad:
            grad = grad_out if gview is not None and grad is gview else grad.reshape(np.shape(y_pred))
        return item_result(losses if not self.batch else losses[0], weights, norm, reduction,
                           z.dtype, grad)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Built-in data for the CLI: labels of 4 classes on 64 x 64 images (8 x 8 blocks) and
        logits (or probabilities) that mostly agree."""
        labels = rng.integers(0, 4, (n, 8, 8)).repeat(8, axis=1).repeat(8, axis=2)
        z = 3.0 * np.moveaxis(np.eye(4)[labels], -1, 1) + rng.standard_normal((n, 4, 64, 64))
        if self.activation is None:
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        return labels, z.astype(dtype), {}


class DiceLoss(_SoftDice):
    """Soft Dice loss, binary or multi-class, on probabilities or logits.

    ``1 - (2 I + smooth_nr) / (P + G + smooth_dr)`` per class, averaged over the classes
    (weighted by ``class_weight``), one value per image.

    ``I = sum p g``, ``P = sum p`` and ``G = sum g`` over the spatial axes (``sum p^2`` and
    ``sum g^2`` with ``squared=True``, Milletari et al. 2016), ``p = activation(y_pred)``: MONAI's
    ``DiceLoss(sigmoid=..., softmax=..., squared_pred=..., batch=...)``. Gradient
    ``d l / d p = -2 g / D + N' / D^2`` (``2 p N' / D^2`` when squared) chained through the
    activation, with ``N' = 2 I + smooth_nr`` and ``D`` the denominator. No Hessian.

    Parameters
    ----------
    activation : None, "sigmoid" or "softmax", default None
    smooth_nr, smooth_dr : float >= 0, default 1e-5
    squared : bool, default False
    class_weight : sequence of C floats or None
    batch : bool, default False

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> g = np.array([[[1.0, 1.0, 0.0, 0.0]]])           # (N=1, C=1, S=4)
    >>> round(fl.DiceLoss(smooth_nr=0, smooth_dr=0)(g, np.array([[[0.9, 0.6, 0.2, 0.1]]])), 6)
    0.210526
    """

    function_name = "dice_loss"
    activation: Optional[str] = ACTIVATION
    smooth_nr: float = SMOOTH_NR
    smooth_dr: float = SMOOTH_DR
    squared: bool = param(default=False, check=boolean, doc="squared denominators")
    class_weight: ClassWeights = CLASS_WEIGHT
    batch: bool = BATCH

    def _kind(self):
        return "dice", self.squared, 0.5, 0.5


class TverskyLoss(_SoftDice):
    """Tversky loss (Salehi et al. 2017): Dice with weighted false positives and negatives.

    ``1 - (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr)`` per class, averaged over the
    classes (weighted by ``class_weight``), one value per image; ``alpha = beta = 0.5`` is the
    soft Dice loss.

    ``TP = sum p g``, ``FP = sum p (1 - g)``, ``FN = sum (1 - p) g`` over the spatial axes,
    ``p = activation(y_pred)``: MONAI's ``TverskyLoss``. ``alpha`` weighs false positives,
    ``beta`` false negatives. Exact gradient; no Hessian.

    Parameters
    ----------
    alpha, beta : float >= 0, default 0.5, 0.5
    activation : None, "sigmoid" or "softmax", default None
    smooth_nr, smooth_dr : float >= 0, default 1e-5
    class_weight : sequence of C floats or None
    batch : bool, default False

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> g = np.array([[[1.0, 1.0, 0.0, 0.0]]])
    >>> round(fl.TverskyLoss(alpha=0.3, beta=0.7, smooth_nr=0, smooth_dr=0)(g, np.array([[[0.9, 0.6, 0.2, 0.1]]])), 6)
    0.226804
    """

    function_name = "tversky_loss"
    alpha: float = param(default=0.5, check=non_negative, doc="weight of false positives")
    beta: float = param(default=0.5, check=non_negative, doc="weight of false negatives")
    activation: Optional[str] = ACTIVATION
    smooth_nr: float = SMOOTH_NR
    smooth_dr: float = SMOOTH_DR
    class_weight: ClassWeights = CLASS_WEIGHT
    batch: bool = BATCH

    def _kind(self):
        return "tversky", False, self.alpha, self.beta


class GeneralizedDiceLoss(_SoftDice):
    """Generalized Dice loss (Sudre et al. 2017) with inverse-square-volume class weights.

    ``1 - (2 sum_c w_c I_c + smooth_nr) / (sum_c w_c (P_c + G_c) + smooth_dr)`` per image, with
    inverse-square-volume weights ``w_c = 1 / G_c^2``.

    ``I_c = sum p g``, ``P_c = sum p``, ``G_c = sum g`` over the spatial axes of class c,
    ``p = activation(y_pred)``. A class absent from an image (``G_c = 0``) takes the largest
    weight of the present classes (MONAI's ``GeneralizedDiceLoss``, ``w_type="square"``). The
    weights depend on the targets only and are constants for the gradient. No Hessian.

    Parameters
    ----------
    activation : None, "sigmoid" or "softmax", default None
    smooth_nr, smooth_dr : float >= 0, default 1e-5
    batch : bool, default False

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> g = np.array([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    >>> p = np.array([[[0.9, 0.6, 0.2, 0.1], [0.1, 0.4, 0.8, 0.9]]])
    >>> round(fl.GeneralizedDiceLoss(smooth_nr=0, smooth_dr=0)(g, p), 6)
    0.2
    """

    function_name = "generalized_dice_loss"
    activation: Optional[str] = ACTIVATION
    smooth_nr: float = SMOOTH_NR
    smooth_dr: float = SMOOTH_DR
    batch: bool = BATCH
    class_weight = None

    def _kind(self):
        return "generalized", False, 0.5, 0.5


dice_loss = DiceLoss.functional
tversky_loss = TverskyLoss.functional
generalized_dice_loss = GeneralizedDiceLoss.functional
