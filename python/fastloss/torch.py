"""PyTorch bridge: any fastloss loss as a differentiable PyTorch operation.

``fastloss.torch.loss(fl.Huber(delta=1.0), y, p)`` returns a tensor whose ``backward()`` delivers
the fastloss gradient (computed in the same fused kernel pass as the value) to every
differentiable input the loss declares (``loss.grads``: ``y_pred``, or ``x1`` and ``x2`` for a
pairwise loss ...). ``FastLoss(loss)`` is the same as an ``nn.Module``.

- CPU tensors are read in place (``Tensor.numpy()`` shares memory: no copy in or out); the
  gradient arrays the kernel writes become tensors without a copy.
- bfloat16 and float16 tensors are computed in float32 (the kernels' narrowest float) and their
  gradients cast back to the input's dtype.
- CUDA tensors go to fastloss's CUDA kernels (a build with ``FASTLOSS_CUDA=ON``) for the
  elementwise losses, in place on the device; other losses, or a build without the CUDA target,
  raise a TypeError (move the tensors to the CPU with ``.cpu()``).
- Reductions follow the loss (``reduction=`` overrides it): a 0-d tensor for ``"mean"`` and
  ``"sum"``, the per-item tensor for ``"none"``. ``backward`` multiplies by the incoming gradient,
  per item for ``"none"`` (for a loss whose items share inputs -- the centers of a center
  loss, a batch-mined triplet loss -- by a second kernel pass with the incoming gradient as
  per-item weights).
- First derivatives only: a second ``backward`` through the gradient (``create_graph=True``
  and differentiating again) is not supported.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from . import _bridge
from ._adapters import as_loss
from ._base import ElementwiseLoss, Loss

__all__ = ["loss", "FastLoss"]

_WIDENED = (torch.bfloat16, torch.float16)


def _to_host(t: Any, name: str) -> Any:
    """A NumPy view of a CPU tensor (float32 for bfloat16/float16); other values unchanged."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if t.is_cuda:
        return t if t.dtype not in _WIDENED else t.float()
    if t.device.type != "cpu":
        raise TypeError(f"{name} is on {t.device}: fastloss reads CPU and CUDA tensors")
    if t.dtype in _WIDENED:
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _cuda_kernels(loss: Loss, tensors) -> bool:
    """True when the call runs on the GPU; TypeError when it cannot."""
    if not any(isinstance(t, torch.Tensor) and t.is_cuda for t in tensors):
        return False
    try:
        from . import _cuda  # noqa: F401
    except ImportError:
        raise TypeError("CUDA tensors need a fastloss build with FASTLOSS_CUDA=ON; or move the "
                        "tensors to the CPU (.cpu())") from None
    if not isinstance(loss, ElementwiseLoss):
        raise TypeError(f"{type(loss).__name__} runs on the CPU only: move its tensors to the CPU "
                        "(.cpu())")
    return True


def _as_tensor(x: Any, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, np.ndarray):  # a float (the reduced value) or a device array
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    t = torch.from_numpy(x)
    return t if t.dtype == like.dtype else t.to(like.dtype)


class _Function(torch.autograd.Function):
    """forward(ctx, loss, reduction, names, sample_weight, keyword inputs, *tensors): the
    value; backward: the saved fastloss gradients times the incoming gradient."""

    @staticmethod
    def forward(ctx, fl_loss: Loss, reduction: str, names: Tuple[str, ...], sample_weight: Any,
                inputs: Dict[str, Any], *tensors: Any):
        on_gpu = _cuda_kernels(fl_loss, tensors + (sample_weight,))
        args = tuple(_to_host(t, n) for t, n in zip(tensors, names))
        w = _to_host(sample_weight, "sample_weight")
        named = {k: _to_host(v, k) for k, v in inputs.items()}
        pred = tensors[names.index(fl_loss.grads[0])]
        wanted = [names.index(n) for n in fl_loss.grads]
        need_grad = any(ctx.needs_input_grad[5 + i] for i in wanted)
        buffers = {}
        if on_gpu:  # the device kernels write into tensors allocated here
            p = args[wanted[0]]
            buffers["grad_out"] = torch.empty_like(p)
            if reduction == "none":
                buffers["out"] = torch.empty_like(p)
        value, grads = _bridge.forward(fl_loss, reduction, args, w, named, need_grad, **buffers)
        ctx.grads = [None] * len(tensors)
        for g, i in zip(grads, wanted):
            ctx.grads[i] = _as_tensor(g, tensors[i])
        ctx.reduction = reduction
        if reduction == "none" and need_grad and not _bridge.separable(fl_loss):
            ctx.call = (fl_loss, args, w, named)  # backward re-weights the items
        return _as_tensor(value, pred)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, go: torch.Tensor):
        grads, ctx.grads = ctx.grads, None  # not needed twice
        if ctx.reduction != "none":
            if go.device.type != "cpu" or go.item() != 1.0:
                grads = [g if g is None else g * go.to(g.dtype) for g in grads]
        elif hasattr(ctx, "call"):
            fl_loss, args, w, named = ctx.call
            fresh = iter(_bridge.per_item_backward(fl_loss, args, w, named, go.cpu().numpy()))
            grads = [g if g is None else _as_tensor(next(fresh), g) for g in grads]
        else:
            grads = [g if g is None else g * go.to(g.dtype).reshape(
                _bridge.broadcast_items(go, g.shape)) for g in grads]
        return (None,) * 5 + tuple(grads)


def loss(fl_loss: Any, *args: Any, sample_weight: Any = None, reduction: Optional[str] = None,
         **inputs: Any) -> torch.Tensor:
    """The value of ``fl_loss`` (a fastloss Loss or a registered name) on tensors, as a tensor
    that backpropagates into the differentiable inputs (``fl_loss.grads``).

    Positional arguments follow the loss (``y_true, y_pred`` for most; ``similar, x1, x2`` for
    a pairwise loss); keyword inputs (``teacher_logits=``) and ``sample_weight`` are taken as
    constants. NumPy arrays are accepted beside tensors.

    >>> import torch, fastloss as fl, fastloss.torch as ft
    >>> p = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64, requires_grad=True)
    >>> value = ft.loss(fl.Huber(delta=1.0), torch.zeros(3, dtype=torch.float64), p)
    >>> value.backward()
    >>> round(value.item(), 6), p.grad.tolist()
    (0.708333, [0.16666666666666666, 0.3333333333333333, -0.3333333333333333])
    """
    fl_loss, reduction, bound, w, named = _bridge.bind(fl_loss, args, sample_weight, inputs,
                                                     reduction)
    bound = tuple(a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in bound)
    return _Function.apply(fl_loss, reduction, fl_loss.arguments, w, named, *bound)


class FastLoss(torch.nn.Module):
    """A fastloss loss as a ``torch.nn.Module``: ``FastLoss(fl.Huber(delta=1.0))(y, p)``.

    Keyword arguments at construction override the loss's parameters (``FastLoss("huber",
    delta=2.0)``); a call takes the loss's inputs, ``sample_weight=`` and ``reduction=``.
    """

    def __init__(self, fl_loss: Any, **params: Any) -> None:
        super().__init__()
        fl_loss = as_loss(fl_loss)
        self.fl_loss = fl_loss.replace(**params) if params else fl_loss

    def forward(self, *args: Any, sample_weight: Any = None, reduction: Optional[str] = None,
                **inputs: Any) -> torch.Tensor:
        return loss(self.fl_loss, *args, sample_weight=sample_weight, reduction=reduction, **inputs)

    def extra_repr(self) -> str:
        return repr(self.fl_loss)
