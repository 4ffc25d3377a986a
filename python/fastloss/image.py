"""Image losses: SSIM and MS-SSIM, their maps and exact gradients.

Layouts: ``(H, W)`` one grey image; ``(N, H, W)`` a batch of grey images; ``(N, C, H, W)`` a
batch of C-channel images; with ``channels_last=True``, ``(H, W, C)`` or ``(N, H, W, C)``. The
loss of one image is ``1 - SSIM`` averaged over its channels (scikit-image's ``channel_axis``);
``reduction`` then combines the images: ``"mean"`` (weighted by ``sample_weight``, one weight per
image), ``"sum"``, or ``"none"`` (one value per image; a 0-d array for a single image).

Borders: as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``: local statistics are filtered with reflected borders, and the mean
runs over the pixels at least 5 (the filter radius) from every border, so the borders never enter
the value; the SSIM map (:meth:`SSIMLoss.ssim_map`) covers every pixel, reflected borders included.

Gradients are exact, with respect to ``y_pred``, of the value returned (the cropped mean). They
differ from scikit-image's ``gradient=True`` near the borders: scikit-image differentiates the
uncropped mean and treats the reflected filter as its own adjoint; in the interior the two agree
up to the ratio of the pixel counts (uncropped / cropped). The Hessian is not provided.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from . import _core
from ._base import FloatArray, Loss, param
from ._batch import (check_out, check_same_shape, direct_buffer, item_result, item_scale,
                     item_weights)
from ._validate import boolean, floats, positive, real_array

__all__ = ["SSIMLoss", "MSSSIMLoss", "ssim_loss", "ms_ssim_loss", "WINDOW", "MS_SSIM_WEIGHTS"]

WINDOW = 11  # Gaussian window taps (sigma 1.5, truncated at 3.5 sigma)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli, Bovik 2003


DATA_RANGE = param(default=1.0, check=positive,
                   doc="max - min of the image values (1.0 for [0, 1] images, 255 for 8-bit)")
K1 = param(default=0.01, check=positive, doc="luminance constant: c1 = (k1 data_range)^2")
K2 = param(default=0.03, check=positive, doc="contrast constant: c2 = (k2 data_range)^2")
CHANNELS_LAST = param(default=False, check=boolean, doc="channel axis last: (N, H, W, C)")


class _ImageLoss(Loss[FloatArray]):
    """SSIM-type losses: one value per image (``1 - similarity`` averaged over channels)."""

    family = "image"
    convex, robust, smooth, hessian = False, False, True, "none"
    _scales = None  # MS-SSIM exponents, None for SSIM

    @property
    def min_size(self) -> int:
        """The smallest image side this loss accepts."""
        return WINDOW * 2 ** (len(self._scales) - 1) if self._scales else WINDOW

    def _planes(self, y_true, y_pred):
        """``(x, y, batch_shape, channels)``: y_true and y_pred as (planes, H, W) stacks."""
        y = real_array(y_pred, "y_pred")
        x = real_array(y_true, "y_true", y.dtype)
        check_same_shape(x, y)
        layouts = "(H, W, C) or (N, H, W, C)" if self.channels_last else "(H, W), (N, H, W) or (N, C, H, W)"
        if y.ndim not in ((3, 4) if self.channels_last else (2, 3, 4)):
            raise ValueError(f"y_pred must be an image array {layouts}; got shape {y.shape}")
        if y.size == 0:
            raise ValueError(f"empty input: y_pred has shape {y.shape}")
        if self.channels_last:
            x, y = np.moveaxis(x, -1, -3), np.moveaxis(y, -1, -3)
        H, W = y.shape[-2:]
        if min(H, W) < self.min_size:
            raise ValueError(f"the window is larger than the image: {type(self).__name__} needs images "
                             f"of at least {self.min_size} x {self.min_size}; got {H} x {W}")
        if self.channels_last or y.ndim == 4:
            batch, channels = y.shape[:-3], y.shape[-3]
        else:
            batch, channels = y.shape[:-2], 1
        return x.reshape(-1, H, W), y.reshape(-1, H, W), batch, channels

    def _unplane(self, planes: np.ndarray, ndim: int, batch, channels: int) -> np.ndarray:
        """(planes, H, W) back to the caller's layout (of ``ndim`` axes)."""
        has_channels = self.channels_last or ndim == 4
        a = planes.reshape(batch + ((channels,) if has_channels else ()) + planes.shape[-2:])
        return np.ascontiguousarray(np.moveaxis(a, -3, -1)) if self.channels_last else a

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, k in (("k1", self.k1), ("k2", self.k2)):  # c = (k data_range)^2 must be finite
            if not k * self.data_range <= 1e150:
                raise ValueError(f"{name} * data_range must be at most 1e150 (its square is a "
                                 f"stabilizing constant); got {k} * {self.data_range}")

    def _constants(self) -> Tuple[float, float]:
        return (self.k1 * self.data_range) ** 2, (self.k2 * self.data_range) ** 2

    def _similarity(self, y_true, y_pred):
        """Per-image similarity (SSIM or MS-SSIM, averaged over channels), shape of the batch."""
        x, y, batch, channels = self._planes(y_true, y_pred)
        values, _, _ = _core.ssim(x, y, *self._constants(), self._scales, None, False)
        return values.reshape(batch + (channels,)).mean(axis=-1)

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        x, y, batch, channels = self._planes(y_true, y_pred)
        weights = item_weights(sample_weight, batch, reduction)
        # The gradient's per-image factor does not depend on the values: d value / d loss_n.
        norm, scale = item_scale(weights, batch, reduction)
        # Caller buffers are checked before any is written (the gradient may be written directly).
        if reduction == "none":
            check_out(out, "out", batch, y.dtype)
        check_out(grad_out, "grad_out", np.shape(y_pred), y.dtype)
        # loss_n = 1 - mean_c sim_nc, so d loss_n / d sim_nc = -1 / C.
        plane_scale = np.repeat(np.ravel(scale) * (-1.0 / channels), channels) if want_grad else None
        direct = None if self.channels_last or not want_grad else direct_buffer(grad_out, y.shape, x, y)
        values, grad, _ = _core.ssim(x, y, *self._constants(), self._scales, plane_scale, False,
                                     direct)
        losses = 1.0 - values.reshape(batch + (channels,)).mean(axis=-1)
        if want_grad:
            grad = grad_out if direct is not None else self._unplane(grad, np.ndim(y_pred), batch,
                                                                     channels)
        return item_result(losses, weights, norm, reduction, y.dtype, grad)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Built-in data for the CLI: n RGB images in [0, 1] (8 x 8 blocks) and noisy copies."""
        side = max(64, self.min_size + 16 - self.min_size % 8)
        base = rng.random((n, 3, side // 8, side // 8)).repeat(8, axis=2).repeat(8, axis=3)
        y = np.clip(base + 0.1 * rng.standard_normal(base.shape), 0, 1)
        return base.astype(dtype), y.astype(dtype), {}


class SSIMLoss(_ImageLoss):
    """Structural-similarity loss ``1 - SSIM(y_true, y_pred)`` (Wang et al. 2004), per image.

    ``SSIM = mean over the window-valid pixels of
    (2 ux uy + c1)(2 sxy + c2) / ((ux^2 + uy^2 + c1)(sx^2 + sy^2 + c2))`` with local means,
    variances and covariance from the 11-tap Gaussian window (sigma = 1.5, population
    covariance), ``c1 = (k1 data_range)^2``, ``c2 = (k2 data_range)^2``: scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range)``, averaged over channels. Images must be at least 11 x 11.
    The gradient with respect to ``y_pred`` is exact (separable adjoint filters); no Hessian.

    Parameters
    ----------
    data_range : float > 0, default 1.0
        ``max - min`` of the pixel values: 1.0 for images in [0, 1], 255 for 8-bit images.
        (scikit-image requires it for float images; here the default is 1.0.)
    k1, k2 : float > 0, default 0.01, 0.03
    channels_last : bool, default False
        Layout ``(N, H, W, C)`` (or ``(H, W, C)``) instead of ``(N, C, H, W)``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.tile(np.linspace(0, 1, 16), (16, 1))
    >>> fl.SSIMLoss()(x, x)
    0.0
    >>> round(fl.SSIMLoss()(x, 0.5 * x), 6)
    0.349163
    """

    function_name = "ssim_loss"
    data_range: float = DATA_RANGE
    k1: float = K1
    k2: float = K2
    channels_last: bool = CHANNELS_LAST

    def ssim(self, y_true, y_pred):
        """The SSIM of each image (averaged over channels): the batch's shape."""
        return self._similarity(y_true, y_pred)

    def ssim_map(self, y_true, y_pred) -> np.ndarray:
        """The SSIM map, every pixel (reflected borders), in the layout and dtype of ``y_pred``:
        scikit-image's ``full=True`` image."""
        x, y, batch, channels = self._planes(y_true, y_pred)
        _, _, smap = _core.ssim(x, y, *self._constants(), None, None, True)
        return self._unplane(smap, np.ndim(y_pred), batch, channels)


class MSSSIMLoss(_ImageLoss):
    """Multi-scale structural-similarity loss ``1 - MS-SSIM(y_true, y_pred)``, per image.

    MS-SSIM as defined by Wang, Simoncelli and Bovik (2003):
    ``MS-SSIM = prod_{j<M} relu(cs_j)^w_j * relu(ssim_M)^w_M`` where scale j sees the images
    2x2-average-pooled j-1 times (an odd last row or column is dropped), ``cs_j`` is the mean over
    the window-valid pixels of ``(2 sxy + c2)/(sx^2 + sy^2 + c2)`` and ``ssim_M`` the SSIM of the
    coarsest scale (the window and constants of :class:`SSIMLoss`): the definition of
    ``tf.image.ssim_multiscale`` and ``pytorch_msssim``. Averaged over channels. The coarsest
    scale must hold the 11 x 11 window: with the 5 standard weights, images of at least
    176 x 176 (``min_size``); fewer weights allow smaller images. Exact gradient through every
    scale and pooling; 0 where a clipped factor makes MS-SSIM vanish. No Hessian.

    Parameters
    ----------
    data_range : float > 0, default 1.0
    k1, k2 : float > 0, default 0.01, 0.03
    weights : sequence of positive floats, default (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
        One exponent per scale, finest first.
    channels_last : bool, default False

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> x = np.tile(np.linspace(0, 1, 176), (176, 1))
    >>> fl.MSSSIMLoss()(x, x)
    0.0
    >>> round(fl.MSSSIMLoss(weights=(0.5, 0.5))(x[:22, :22], 0.5 * x[:22, :22]), 6)
    0.137551
    """

    function_name = "ms_ssim_loss"
    data_range: float = DATA_RANGE
    k1: float = K1
    k2: float = K2
    weights: Sequence[float] = param(default=MS_SSIM_WEIGHTS, check=floats(positive, max_size=16),
                                     doc="exponent of each scale, finest first")
    channels_last: bool = CHANNELS_LAST

    @property
    def _scales(self):
        return self.weights

    def ms_ssim(self, y_true, y_pred):
        """The MS-SSIM of each image (averaged over channels): the batch's shape."""
        return self._similarity(y_true, y_pred)


ssim_loss = SSIMLoss.functional
ms_ssim_loss = MSSSIMLoss.functional
