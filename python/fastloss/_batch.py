"""The Loss contract for losses with one value per item of a batch (an image, a segmentation):
input checks, per-item weights, reductions, and caller output buffers. Everything here runs
before (checks) or after (reduction, delivery) the kernel, on arrays of one value per item."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from ._base import KernelResult, _writeable
from ._validate import real_array


def check_same_shape(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got y_true {y_true.shape} "
                         f"and y_pred {y_pred.shape}")


def item_weights(sample_weight, shape: Tuple[int, ...], reduction: str) -> Optional[np.ndarray]:
    """Validated float64 weights, one per item (``shape``), or None."""
    if sample_weight is None:
        return None
    w = np.asarray(real_array(sample_weight, "sample_weight"), dtype=np.float64)
    if w.shape != shape:
        raise ValueError(f"sample_weight must have one weight per item, shape {shape}; got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if reduction == "mean" and w.size and not np.sum(w) > 0:
        raise ValueError("sample_weight sums to zero: the weighted mean is undefined")
    return w


def item_scale(weights: Optional[np.ndarray], shape: Tuple[int, ...], reduction: str):
    """``(norm, scale)``: the mean's denominator (the summed weights, the number of items without)
    and ``d value / d loss_i`` per item (for "none", the derivative of each returned value)."""
    if weights is None:  # the count, and 1 / count (as w / norm gives it) without a reduction
        norm = float(math.prod(shape))
        if reduction != "mean":
            return norm, np.ones(shape)
        return norm, np.full(shape, 1.0 / norm if norm > 0 else 0.0)
    norm = float(weights.sum())
    if reduction != "mean":
        return norm, weights
    return norm, (weights / norm if norm > 0 else 0 * weights)


def item_result(losses, weights: Optional[np.ndarray], norm: float, reduction: str, dtype,
                grad=None, hess=None) -> KernelResult:
    """The result of a per-item loss: the weighted sum, the denominator, and the weighted
    per-item values (in ``dtype``) for "none"."""
    wl = np.asarray(losses, dtype=np.float64)
    if weights is not None:
        wl = weights * wl
    values = np.asarray(wl, dtype=dtype) if reduction == "none" else None
    return KernelResult(float(wl.sum()), norm, values, grad, hess)


def check_out(buffer, name: str, shape: Sequence[int], dtype: np.dtype) -> None:
    """A caller buffer must be a writeable ndarray of exactly ``shape`` and ``dtype`` (checked
    before the kernel when it may write the buffer directly; the same errors as elsewhere)."""
    if buffer is None:
        return
    _writeable(buffer, name)
    if buffer.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the result's); got {buffer.dtype}")
    if buffer.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {buffer.shape}")


def direct_buffer(buffer, shape, *inputs):
    """A C-contiguous view of ``shape`` onto the caller's (checked) buffer, for a kernel to write
    directly; None when there is no buffer, it is not C-contiguous and aligned, or it overlaps one
    of the kernel's ``inputs`` (the kernel would read what it has written: the result then goes
    through a temporary)."""
    if buffer is None or not (buffer.flags.c_contiguous and buffer.flags.aligned):
        return None
    if any(np.may_share_memory(buffer, a) for a in inputs if isinstance(a, np.ndarray)):
        return None
    return buffer.reshape(shape)


