"""JAX bridge: any fastloss loss as a differentiable JAX function.

``fastloss.jax.loss(fl.Huber(delta=1.0), y, p)`` evaluates the loss on the host through
``jax.pure_callback`` and defines its derivative with ``jax.custom_vjp``: the forward pass computes
the value and the gradients of every differentiable input (``loss.grads``) in one fused kernel
call, the backward pass multiplies them by the incoming cotangent. So ``jax.grad``,
``jax.value_and_grad``, ``jax.jit`` and ``jax.vmap`` compose with it.

What to know:

- The computation runs on the CPU host: arrays on an accelerator are copied to the host and back
  (the callback's transfer), and XLA cannot fuse across the call.
- ``jax.vmap`` loops over the mapped axis on the host (``vmap_method="sequential"``): correct for
  every loss and reduction, one kernel call per mapped element.
- Reverse mode only (``jax.grad``, ``jax.vjp``); forward mode (``jax.jvp``, ``jax.jacfwd``) and
  second derivatives are not defined.
- ``reduction="none"`` needs the shape of the per-item values before the call: the shape of
  ``y_pred`` for elementwise losses, one value per leading item for the others; losses whose
  per-item count depends on the data (the mined pairs of ``BatchContrastive``) take "mean" or
  "sum" only.
- Under JAX's default 32-bit mode arrays are float32 (and the kernels compute in float32); enable
  ``jax_enable_x64`` for float64.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _bridge
from ._base import ElementwiseLoss, Loss
from .similarity import BatchContrastive

__all__ = ["loss"]


class _Call(NamedTuple):
    """The static part of a call (hashable: it keys JAX's caches)."""

    loss: Loss
    reduction: str
    names: Tuple[str, ...]  # of the arrays passed, in order: arguments, then keyword inputs
    weighted: bool


def _value_shape(call: _Call, arrays) -> Tuple[int, ...]:
    pred = arrays[call.names.index(call.loss.grads[0])]
    if call.reduction != "none":
        return ()
    if isinstance(call.loss, ElementwiseLoss):
        return tuple(pred.shape)
    if call.loss.chunkable and not isinstance(call.loss, BatchContrastive):  # one value per pair
        return tuple(pred.shape[:1])
    raise NotImplementedError(f"{type(call.loss).__name__} has no fixed number of per-item values: "
                              "use reduction='mean' or 'sum' with fastloss.jax")


def _split(call: _Call, arrays):
    n = len(call.loss.arguments)
    args = tuple(arrays[:n])
    w = arrays[n] if call.weighted else None
    rest = arrays[n + call.weighted:]
    return args, w, dict(zip(call.names[n:], rest))


def _host(call: _Call, want_grad: bool, *arrays):
    """The callback: ``(value, *grads)`` as arrays of the declared dtypes."""
    args, w, named = _split(call, [np.asarray(a) for a in arrays])
    value, grads = _bridge.forward(call.loss, call.reduction, args, w, named, want_grad)
    pred = args[call.loss.arguments.index(call.loss.grads[0])]
    out = [np.asarray(value, dtype=pred.dtype)]
    for g, n in zip(grads, call.loss.grads):
        out.append(np.asarray(g, dtype=args[call.loss.arguments.index(n)].dtype))
    return tuple(out)


def _callback(call: _Call, want_grad: bool, arrays):
    pred = arrays[call.names.index(call.loss.grads[0])]
    shapes = [jax.ShapeDtypeStruct(_value_shape(call, arrays), pred.dtype)]
    if want_grad:
        for n in call.loss.grads:
            x = arrays[call.names.index(n)]
            shapes.append(jax.ShapeDtypeStruct(x.shape, x.dtype))
    return jax.pure_callback(partial(_host, call, want_grad), tuple(shapes), *arrays,
                             vmap_method="sequential")


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _apply(call: _Call, *arrays):
    return _callback(call, False, arrays)[0]


def _forward(call: _Call, *arrays):
    value, *grads = _callback(call, True, arrays)
    return value, (tuple(grads), arrays)


def _backward(call: _Call, residuals, cotangent):
    grads, arrays = residuals
    if call.reduction != "none":
        scaled = [g * cotangent.astype(g.dtype) for g in grads]
    elif _bridge.separable(call.loss):
        scaled = [g * cotangent.astype(g.dtype).reshape(_bridge.broadcast_items(cotangent, g.shape))
                  for g in grads]
    else:  # items share inputs: the loss's "sum" gradient with the cotangent as item weights
        shapes = tuple(jax.ShapeDtypeStruct(g.shape, g.dtype) for g in grads)
        scaled = jax.pure_callback(partial(_reweighted, call), shapes, cotangent, *arrays,
                                   vmap_method="sequential")
    out = [None] * len(arrays)
    for g, n in zip(scaled, call.loss.grads):
        out[call.names.index(n)] = g
    # inputs that are not differentiated get a zero cotangent (JAX needs one per input)
    return tuple(jnp.zeros_like(a) if o is None and jnp.issubdtype(a.dtype, jnp.inexact)
                 else (np.zeros(a.shape, jax.dtypes.float0) if o is None else o)
                 for o, a in zip(out, arrays))


def _reweighted(call: _Call, cotangent, *arrays):
    args, w, named = _split(call, [np.asarray(a) for a in arrays])
    grads = _bridge.per_item_backward(call.loss, args, w, named, np.asarray(cotangent))
    return tuple(np.asarray(g, dtype=args[call.loss.arguments.index(n)].dtype)
                 for g, n in zip(grads, call.loss.grads))


_apply.defvjp(_forward, _backward)


def loss(fl_loss: Any, *args: Any, sample_weight: Any = None, reduction: Optional[str] = None,
         **inputs: Any) -> jax.Array:
    """The value of ``fl_loss`` (a fastloss Loss or a registered name) on JAX arrays, as a JAX
    array differentiable with respect to the loss's differentiable inputs (``fl_loss.grads``);
    ``sample_weight`` and the other inputs are constants (zero cotangent).

    >>> import jax, jax.numpy as jnp, fastloss as fl, fastloss.jax as fj
    >>> f = lambda p: fj.loss(fl.Huber(delta=1.0), jnp.zeros(3), p)
    >>> value, grad = jax.value_and_grad(f)(jnp.array([0.5, 2.0, -1.0]))
    >>> round(float(value), 5), [round(float(g), 5) for g in grad]
    (0.70833, [0.16667, 0.33333, -0.33333])
    """
    fl_loss, reduction, bound, w, named = _bridge.bind(fl_loss, args, sample_weight, inputs,
                                                       reduction)
    arrays = [jnp.asarray(a) for a in bound]
    if w is not None:
        arrays.append(jnp.asarray(w))
    arrays += [jnp.asarray(v) for v in named.values()]
    call = _Call(fl_loss, reduction, fl_loss.arguments + tuple(named), w is not None)
    return _apply(call, *arrays)
