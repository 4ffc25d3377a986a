"""The Loss contract shared by every loss, the parameter declarations, and the registry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _core

REDUCTIONS = tuple(_core.reductions)


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: its name, default, a validator and one line of documentation.

    ``check(value)`` returns the value to store (possibly normalized) or raises ValueError.
    """

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    doc: str = ""


def finite_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    return v


def positive(name: str, value: Any) -> float:
    v = finite_float(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0; got {v}")
    return v


def non_negative(name: str, value: Any) -> float:
    v = finite_float(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0; got {v}")
    return v


@dataclass(frozen=True)
class LossInfo:
    """One registry entry: what ``fastloss.losses()`` lists."""

    name: str
    cls: type
    function: Callable
    family: str
    params: Dict[str, Any]
    convex: bool
    robust: bool
    smooth: bool
    hessian: str
    summary: str = field(repr=False, default="")


_REGISTRY: Dict[str, LossInfo] = {}


def losses(family: Optional[str] = None) -> List[LossInfo]:
    """Every registered loss (optionally one family), with its parameters and properties."""
    return [info for info in _REGISTRY.values() if family is None or info.family == family]


def get_loss(name: str, **params: Any) -> "Loss":
    """Constructs a registered loss from its functional name (``"huber"``) or class name."""
    for info in _REGISTRY.values():
        if name in (info.name, info.cls.__name__):
            return info.cls(**params)
    known = ", ".join(sorted(_REGISTRY))
    raise ValueError(f"unknown loss {name!r}; known losses: {known}")


class Loss:
    """Base class. Subclasses declare ``params`` and the properties below; see the module docs."""

    params: Tuple[Param, ...] = ()
    family: str = ""
    convex: bool = False
    robust: bool = False
    smooth: bool = False
    # "exact"; "a.e." where it is the almost-everywhere value 0; "none" where the loss provides
    # no Hessian diagonal (grad_hess raises NotImplementedError)
    hessian: str = "exact"

    def __init__(self, *, reduction: str = "mean", **kwargs: Any) -> None:
        self.reduction = _check_reduction(reduction)
        names = {p.name for p in self.params}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected parameter(s) {sorted(unknown)}; "
                f"it takes {sorted(names) or 'none'}"
            )
        for p in self.params:
            setattr(self, p.name, p.check(p.name, kwargs.get(p.name, p.default)))

    def get_params(self) -> Dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.params}

    def __repr__(self) -> str:
        args = [f"{k}={v!r}" for k, v in self.get_params().items()]
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    # The contract every loss obeys, over one kernel call: _run(y_true, y_pred, sample_weight,
    # reduction, want_grad, want_hess, out, grad_out, hess_out, **inputs) -> (value, per-element
    # values | None, grad | None, hess | None). `inputs` are the extra keyword-only arrays a loss
    # declares in ``inputs`` (e.g. Distillation's ``teacher_logits``), each required.
    inputs: Tuple[str, ...] = ()

    def _run(self, y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out, grad_out,
             hess_out, **inputs):
        raise NotImplementedError

    def _call(self, y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out, grad_out,
              hess_out, inputs):
        if set(inputs) != set(self.inputs):
            missing, unknown = set(self.inputs) - set(inputs), set(inputs) - set(self.inputs)
            raise TypeError(f"{type(self).__name__} "
                            + (f"needs the keyword argument(s) {sorted(missing)}" if missing
                               else f"got unexpected keyword argument(s) {sorted(unknown)}"))
        result = self._run(y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out,
                           grad_out, hess_out, **inputs)
        if len(result) == 5:  # a kernel's (total, norm, values, grad, hess)
            total, norm, values, grad, hess = result
            if (reduction or self.reduction) == "mean":
                total = total / norm if norm > 0 else math.nan
            return total, values, grad, hess
        return result

    def _normalizer(self, y_true, y_pred, sample_weight) -> float:
        """The denominator of this loss's ``reduction="mean"`` on these (already validated)
        inputs: ``mean = sum / _normalizer``. Exact streaming (``fastloss.GradientAccumulator``)
        adds these up over micro-batches. Reads only the labels, the weights and the *shape* of
        ``y_pred`` (Dask computes it from a shape placeholder, before the predictions exist)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the normalizer of its mean")

    def __call__(self, y_true, y_pred, sample_weight=None, *, reduction=None, out=None, **inputs):
        """The loss value: a float (``"mean"``/``"sum"``) or the per-element array (``"none"``)."""
        value, per_elem, _, _ = self._call(y_true, y_pred, sample_weight, reduction, False, False,
                                           out, None, None, inputs)
        return value if per_elem is None else per_elem

    def value_and_grad(self, y_true, y_pred, sample_weight=None, *, reduction=None, out=None,
                       grad_out=None, **inputs):
        """``(value, grad)`` in one pass; ``grad`` has the shape and dtype of ``y_pred``."""
        value, per_elem, grad, _ = self._call(y_true, y_pred, sample_weight, reduction, True, False,
                                              out, grad_out, None, inputs)
        return (value if per_elem is None else per_elem), grad

    def grad_hess(self, y_true, y_pred, sample_weight=None, *, reduction=None, grad_out=None,
                  hess_out=None, **inputs):
        """``(grad, hess)``: gradient and Hessian diagonal with respect to ``y_pred``."""
        reduction = reduction or self.reduction
        # Per-element derivatives under "none" are those of "sum"; no per-element values needed.
        _, _, grad, hess = self._call(y_true, y_pred, sample_weight,
                                      "sum" if reduction == "none" else reduction, True, True, None,
                                      grad_out, hess_out, inputs)
        return grad, hess

    def value_grad_hess(self, y_true, y_pred, sample_weight=None, *, reduction=None, out=None,
                        grad_out=None, hess_out=None, **inputs):
        """``(value, grad, hess)`` from the same single pass."""
        value, per_elem, grad, hess = self._call(y_true, y_pred, sample_weight, reduction, True, True,
                                                 out, grad_out, hess_out, inputs)
        return (value if per_elem is None else per_elem), grad, hess

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("function_name") or cls.__dict__.get("kernel")
        if name is None:  # an abstract base, not a loss
            return
        cls.function_name = name
        fn = _make_functional(cls)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        _REGISTRY[name] = LossInfo(
            name=name, cls=cls, function=fn, family=cls.family,
            params={p.name: p.default for p in cls.params},
            convex=cls.convex, robust=cls.robust, smooth=cls.smooth, hessian=cls.hessian,
            summary=summary,
        )
        cls.functional = staticmethod(fn)


def _make_functional(cls: type) -> Callable:
    def functional(y_true, y_pred, *, sample_weight=None, reduction="mean", **params):
        inputs = {name: params.pop(name) for name in cls.inputs if name in params}
        return cls(reduction=reduction, **params)(y_true, y_pred, sample_weight=sample_weight, **inputs)

    functional.__name__ = functional.__qualname__ = cls.function_name
    functional.__doc__ = (
        f"Functional form of :class:`fastloss.{cls.__name__}`: returns the loss value.\n\n"
        f"``{cls.function_name}(y_true, y_pred, *, "
        + "".join(f"{name}, " for name in cls.inputs)
        + "sample_weight=None, reduction='mean', "
        + ", ".join(f"{p.name}={p.default!r}" for p in cls.params)
        + ")``"
    )
    return functional


class ElementwiseLoss(Loss):
    """A loss whose value is a (weighted) reduction of per-element terms l(y_true, y_pred).

    All derivatives are with respect to ``y_pred`` and are exactly those of the returned value
    under the chosen reduction: for ``"mean"`` the per-element terms are scaled by
    ``w / sum(w)``, for ``"sum"`` by ``w``, for ``"none"`` by ``w`` (the derivative of each
    returned per-element value).
    """

    kernel: Optional[str] = None  # name in the C++ registry (cpp/losses/registry.hpp)
    # Losses with a from_logits switch name one kernel per input space instead.
    kernels: Optional[Dict[bool, str]] = None
    # True for losses on {-1, +1} (or {0, 1}) labels: other values are rejected before any work.
    sign_labels: bool = False

    def __init__(self, *, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__(reduction=reduction, **kwargs)
        self._id = _core.elementwise_kernels[self._kernel_name]
        self._kernel_params = self._pack_params()
        self._aux = self._column_params()

    @property
    def _kernel_name(self) -> str:
        return self.kernel if self.kernels is None else self.kernels[self.from_logits]

    # Subclasses map their parameters onto the kernel's flat parameter list / per-column vector.
    def _pack_params(self) -> List[float]:
        return [float(getattr(self, p.name)) for p in self.params]

    def _column_params(self) -> Optional[np.ndarray]:
        return None

    def _normalizer(self, y_true, y_pred, sample_weight) -> float:
        # The sum of the weights over all elements: a weight of y_pred's shape, or of its leading
        # axes repeated over the trailing ones (as the kernel broadcasts it).
        n = int(np.size(y_pred))
        if sample_weight is None:
            return float(n)
        w = np.asarray(sample_weight, dtype=np.float64)
        return float(w.sum()) * (n // w.size) if w.size else 0.0

    def _run(self, y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out, grad_out,
             hess_out):
        if self.sign_labels:
            _check_sign_labels(y_true)
        kernels = _core if type(y_pred) is np.ndarray else _kernels_for(y_pred)
        return kernels.elementwise(
            self._id, self._kernel_params, y_true, y_pred, sample_weight, self._aux,
            reduction or self.reduction, want_grad, want_hess, out, grad_out, hess_out)


def _check_sign_labels(y_true) -> None:
    """Binary labels must be -1/+1 or 0/1; reports the first offending element."""
    if hasattr(y_true, "__cuda_array_interface__"):
        return  # device labels are not inspected from the host
    y = y_true if isinstance(y_true, np.ndarray) else np.asarray(y_true)
    if y.dtype.kind not in "biuf":
        return  # the kernel call raises the dtype error
    i = _core.first_bad_sign_label(y)
    if i >= 0:
        where = tuple(int(k) for k in np.unravel_index(i, y.shape)) if y.ndim > 1 else i
        raise ValueError(f"y_true must hold binary labels in {{-1, +1}} or {{0, 1}}; "
                         f"y_true[{where}] = {y.ravel()[i].item()!r}")


def _kernels_for(y_pred):
    """The CUDA kernels for device arrays (``__cuda_array_interface__``), else the CPU ones."""
    if not hasattr(y_pred, "__cuda_array_interface__"):
        return _core
    try:
        from . import _cuda
    except ImportError:
        raise TypeError(
            "y_pred is a GPU array but this fastloss build has no CUDA target; rebuild with "
            "FASTLOSS_CUDA=ON, or pass host (NumPy) arrays") from None
    return _cuda
