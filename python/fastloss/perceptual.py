"""Perceptual (feature-matching) loss over feature maps that the user's own
network computes."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from ._base import FloatArray, Loss, param
from ._batch import item_result, item_scale
from ._validate import boolean, choice, floats, non_negative, optional, real_array
from .regression import MAE, MSE

__all__ = ["PerceptualLoss", "perceptual"]


def _layers(x: Any, name: str) -> List[np.ndarray]:
    arrays = [x] if isinstance(x, np.ndarray) else list(x)
    out = []
    for i, a in enumerate(arrays):
        a = real_array(a, f"{name}[{i}]")
        if a.ndim < 1 or a.size == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty array with a batch axis (first); "
                             f"got shape {a.shape}")
        out.append(a)
    if not out:
        raise ValueError(f"{name} must hold at least one feature map")
    return out


class PerceptualLoss(Loss[List[FloatArray]]):
    """Perceptual loss ``sum_l w_l d(phi_l(x), phi_l(y))`` between feature maps.

    **The network is yours**: fastloss ships no pretrained model. Compute the feature maps
    ``phi_l`` of the target and of the prediction with your own network (VGG, ResNet, ...), pass
    them as two lists of arrays (batch axis first, layer l of the same shape in both), and
    backpropagate the returned gradients (w.r.t. the prediction's features) through your network.

    Per sample n and layer l, ``d_l[n] = sum |phi_l(y)[n] - phi_l(x)[n]|^q / F_l`` over the
    sample's feature elements, q = 2 (``distance="l2"``, the squared distance of Johnson et al.
    2016) or 1 (``"l1"``), ``F_l`` the number of elements per sample of layer l when
    ``normalize=True`` (Johnson et al.'s normalization by feature size; 1 otherwise). The per-sample loss
    ``sum_l w_l d_l[n]`` is reduced over the batch like every fastloss loss (``sample_weight`` per
    sample). ``value_and_grad`` returns the list of gradients, one per layer, with the shapes and
    dtypes of the prediction's features; the Hessian diagonal is ``2 w_l / F_l`` (l2) or the a.e.
    value 0 (l1), scaled like the gradient. Each layer is one pass of the fused MSE/MAE kernel.

    Parameters
    ----------
    layer_weights : sequence of floats >= 0, or None (1 for every layer)
    distance : "l2" (default) or "l1"
    normalize : bool, default True

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> feats_true = [np.zeros((2, 3, 4, 4)), np.zeros((2, 8, 2, 2))]
    >>> feats_pred = [np.ones((2, 3, 4, 4)), np.full((2, 8, 2, 2), 2.0)]
    >>> fl.PerceptualLoss(layer_weights=[1.0, 0.5])(feats_true, feats_pred)
    3.0
    """

    function_name = "perceptual"
    family = "perceptual"
    layer_weights: Optional[Sequence[float]] = param(
        default=None, check=optional(floats(non_negative)), doc="weight of each layer (None: 1 each)")
    distance: str = param(default="l2", check=choice("l2", "l1"), doc="'l2' (squared) or 'l1'")
    normalize: bool = param(default=True, check=boolean, doc="divide each layer by its feature size")
    smooth = True

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """CLI data: two layers of (n, 8, 16, 16) and (n, 16, 8, 8) features, and noisy copies."""
        y = [rng.standard_normal(s).astype(dtype) for s in ((n, 8, 16, 16), (n, 16, 8, 8))]
        return y, [f + 0.3 * rng.standard_normal(f.shape).astype(dtype) for f in y], {}

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        truth, pred = _layers(args[0], "y_true"), _layers(args[1], "y_pred")
        if len(truth) != len(pred):
            raise ValueError(f"y_true and y_pred must hold the same number of feature maps; got "
                             f"{len(truth)} and {len(pred)}")
        weights = self.layer_weights or (1.0,) * len(pred)
        if len(weights) != len(pred):
            raise ValueError(f"layer_weights has {len(weights)} weights for {len(pred)} layers")
        n = pred[0].shape[0]
        for i, (t, p) in enumerate(zip(truth, pred)):
            if t.shape != p.shape:
                raise ValueError(f"layer {i}: y_true {t.shape} and y_pred {p.shape} differ in shape")
            if p.shape[0] != n:
                raise ValueError(f"layer {i} has batch size {p.shape[0]}, layer 0 has {n}")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(f"sample_weight must be {n} finite non-negative weights (one per "
                                 f"sample); got shape {w.shape}")
        # d(value)/d(per-sample loss n): w_n / sum(w) for the mean, w_n otherwise.
        norm, per_sample_scale = item_scale(w, (n,), reduction)
        kernel = MSE() if self.distance == "l2" else MAE()
        per_sample = np.zeros(n)
        grads, hesses = [], []
        for wl, t, p in zip(weights, truth, pred):
            size = p.size // n
            scale = wl / size if self.normalize else wl
            r = kernel._evaluate((t, p), {}, None, "none", want_grad, want_hess)
            per_sample += scale * r.values.reshape(n, -1).sum(axis=1, dtype=np.float64)
            if want_grad or want_hess:
                factor = (scale * per_sample_scale).astype(r.grad.dtype).reshape(
                    (n,) + (1,) * (p.ndim - 1))
                grads.append(np.multiply(r.grad, factor, out=r.grad))
                if want_hess:
                    hesses.append(np.multiply(r.hess, factor, out=r.hess))
        return item_result(per_sample, w, norm, reduction, pred[0].dtype, grads or None,
                           hesses or None)


perceptual = PerceptualLoss.functional
