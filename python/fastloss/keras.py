"""Keras 3 bridge: any fastloss loss as a ``keras.losses.Loss``.

``model.compile(optimizer="adam", loss=fastloss.keras.Loss(fl.Huber(delta=1.0)))``: the per-item
values come from fastloss (through ``fastloss.torch`` on the PyTorch backend, ``fastloss.jax`` on
the JAX backend, with their gradients from the same kernel pass), and Keras applies the sample
weights, masks and its ``reduction`` (``"sum_over_batch_size"`` by default: the mean over every
value, as fastloss's own mean). The TensorFlow backend is not supported.

Keras casts ``y_true`` to the loss's float dtype before the call; integer class labels (sparse
cross-entropy, focal, hinge) are cast back to integers here. The loss saves and loads with the
model (``get_config`` holds the fastloss loss's registered name and parameters).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras
import numpy as np

from ._adapters import as_loss
from ._base import get_loss
from .multiclass import _RowLoss

__all__ = ["Loss"]


def _bridge_loss():
    backend = keras.backend.backend()
    if backend == "torch":
        from .torch import loss
    elif backend == "jax":
        from .jax import loss
    else:
        raise NotImplementedError(f"fastloss.keras runs on the 'torch' and 'jax' Keras backends; "
                                  f"this Keras uses {backend!r} (set KERAS_BACKEND)")
    return loss


def _plain(value: Any) -> Any:
    """A parameter value as JSON-friendly Python (arrays and tuples as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


@keras.saving.register_keras_serializable(package="fastloss")
class Loss(keras.losses.Loss):
    """A fastloss loss (an instance or a registered name such as ``"huber"``) for Keras.

    Parameters
    ----------
    loss : fastloss Loss or str
        Its parameters are kept; its own ``reduction`` is replaced by Keras's.
    name : str, optional
        Defaults to the loss's registered name (``"huber"``).
    reduction, dtype
        As for every Keras loss.
    """

    def __init__(self, loss: Any, name: Optional[str] = None,
                 reduction: Optional[str] = "sum_over_batch_size", dtype: Any = None) -> None:
        self.fl_loss = as_loss(loss).replace(reduction="none")
        self._sparse = isinstance(self.fl_loss, _RowLoss) and not getattr(self.fl_loss, "dense", False)
        self._call_fastloss = _bridge_loss()
        super().__init__(name=name or self.fl_loss.function_name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        if self._sparse:
            y_true = keras.ops.cast(y_true, "int32")
            if len(y_true.shape) == len(y_pred.shape):  # Keras's (N, 1) label columns
                y_true = keras.ops.squeeze(y_true, axis=-1)
        return self._call_fastloss(self.fl_loss, y_true, y_pred, reduction="none")

    def get_config(self) -> Dict[str, Any]:
        params = {k: _plain(v) for k, v in self.fl_loss.get_params().items()}
        return {**super().get_config(), "loss": self.fl_loss.function_name, "params": params}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Loss":
        config = dict(config)
        loss = get_loss(config.pop("loss"), **config.pop("params", {}))
        return cls(loss, **config)
