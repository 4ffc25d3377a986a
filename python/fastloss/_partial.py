"""Partial sums of a loss over a slice of the rows, ``(sum, normalizer)``, that merge by addition:
the mean over all rows is ``sum(sums) / sum(normalizers)``. Used where data arrive in pieces
(Dask blocks, CatBoost's metric protocol).

The normalizer is the denominator of each loss's ``reduction="mean"``:

- elementwise losses: the summed weight of every element (row weights count once per trailing
  element; without weights, the number of elements);
- softmax cross-entropy with labels: the summed ``sample_weight * class_weight[label]`` of the rows
  whose label is not ``ignore_index`` (PyTorch's);
- softmax focal with labels: the summed sample weight of those rows (``alpha`` does not normalize);
- target-distribution losses and the multi-class hinge: the summed sample weight of the rows.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._base import ElementwiseLoss, Loss
from .multiclass import MultiClassHinge, _SoftmaxCrossEntropy, _SoftmaxFocal


def mean_normalizer(loss: Loss, y_true: Any, pred_shape: Tuple[int, ...],
                    sample_weight: Optional[np.ndarray]) -> float:
    """The denominator of ``loss``'s mean over these rows (see the module docs), from the labels,
    the weights and the shape of the predictions (not their values)."""
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    size = int(np.prod(pred_shape))
    if isinstance(loss, ElementwiseLoss):
        return float(size) if w is None else float(w.sum()) * (size // max(w.size, 1))
    rows = size // pred_shape[-1] if pred_shape else 1
    row_w = np.ones(rows) if w is None else w.reshape(-1)
    if isinstance(loss, MultiClassHinge) or (isinstance(loss, _SoftmaxCrossEntropy) and loss.dense):
        return float(row_w.sum())
    if isinstance(loss, _SoftmaxCrossEntropy):
        labels = np.asarray(y_true).reshape(-1)
        counted = np.ones(labels.shape, bool) if loss.ignore_index is None else labels != loss.ignore_index
        if loss.class_weight is not None and not isinstance(loss, _SoftmaxFocal):
            row_w = row_w * loss.class_weight[np.where(counted, labels, 0)]
        return float(row_w[counted].sum())
    raise TypeError(f"the mean normalizer of {type(loss).__name__} is not known here; use reduction='sum'")


def partial_sum(loss: Loss, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tuple[float, float]:
    """``(weighted sum of the loss, mean normalizer)`` over these rows."""
    y_pred = np.asarray(y_pred)
    total = loss(y_true, y_pred, sample_weight, reduction="sum")
    return total, mean_normalizer(loss, y_true, y_pred.shape, sample_weight)
