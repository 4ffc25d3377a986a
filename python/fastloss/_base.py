"""The Loss contract shared by every loss, the parameter declarations, and the registry."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, TypeVar

import numpy as np

from . import _core
from ._validate import Check, frozen

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # type checkers read the 3.11 branch; at runtime the decorator only records its options
    def dataclass_transform(**options: Any) -> Callable[[Any], Any]:
        return lambda cls: cls

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: its name, default, a validator and one line of documentation.

    ``check(name, value)`` returns the value to store (possibly normalized) or raises TypeError
    (wrong type) or ValueError (out of range). ``annotation`` is the declared type.
    """

    name: str
    default: Any
    check: Check
    doc: str = ""
    annotation: Any = field(default=inspect.Parameter.empty, repr=False, compare=False)


@dataclass(frozen=True)
class _Field:
    default: Any
    check: Check
    doc: str


def param(*, default: Any, check: Check, doc: str = "") -> Any:
    """Declares a hyper-parameter in a Loss subclass's body::

        delta: float = param(default=1.0, check=positive, doc="threshold ...")

    The class gets a keyword-only constructor argument ``delta`` (its signature, as
    ``dataclasses`` would write it, which type checkers read through ``dataclass_transform``),
    validated by ``check`` at construction, and an entry in ``cls.params``.
    """
    return _Field(default, check, doc)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(param,))
class _LossType(type):
    """Loss classes are frozen, keyword-only dataclasses for type checkers (PEP 681); at runtime
    ``Loss.__init_subclass__`` writes the same constructor."""


def _declare(cls: type) -> None:
    """Collects the ``param(...)`` fields of ``cls`` (after those inherited), replaces each by its
    default as a class attribute, and gives the class its constructor signature."""
    if "__init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: derive state in __post_init__, not __init__")
    module = sys.modules.get(cls.__module__)
    hints = cls.__dict__.get("__annotations__", {})
    fields: Dict[str, Param] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(base.__dict__.get("_fields", {}))
    for name, spec in list(cls.__dict__.items()):
        if isinstance(spec, _Field):
            annotation = hints.get(name, inspect.Parameter.empty)
            if isinstance(annotation, str) and module is not None:
                try:  # the annotation as an object, for inspect.signature; else its text
                    annotation = eval(annotation, vars(module))  # noqa: S307
                except Exception:  # noqa: BLE001
                    pass
            fields[name] = Param(name, spec.default, spec.check, spec.doc, annotation)
            spec.check(name, spec.default)  # a declaration with an invalid default fails here
            setattr(cls, name, spec.default)
    cls._fields = fields
    cls.params = tuple(p for p in fields.values() if p.name != "reduction")

    def __init__(self: Loss, **kwargs: Any) -> None:
        Loss._construct(self, kwargs)

    ordered = list(cls.params) + [p for p in fields.values() if p.name == "reduction"]
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
        + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                             annotation=p.annotation) for p in ordered])
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = f"Keyword arguments: {', '.join(p.name for p in ordered)}."
    cls.__init__ = __init__  # type: ignore[misc]


_L = TypeVar("_L", bound="Loss")


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


class Loss(metaclass=_LossType):
    """Base class of every loss.

    Hyper-parameters are keyword-only constructor arguments (``inspect.signature(fl.Huber)``
    lists them), validated at construction and immutable afterwards: assigning an attribute
    raises AttributeError. ``loss.replace(delta=2.0)`` returns a copy with some parameters
    changed (validated like the constructor); ``loss.get_params()`` returns them as a dict.
    Losses compare equal and hash alike when their type, parameters and ``reduction`` are equal;
    sequence-valued parameters are stored as tuples, and per-class weights as read-only float64
    arrays, both compared by value.

    Subclasses declare each parameter once, as an annotated field
    ``delta: float = param(default=1.0, check=positive, doc="...")``, and derive further state
    (kernel ids, packed parameters) in ``__post_init__``.
    """

    # Derived from the fields by _declare: the hyper-parameters, in declaration order.
    params: ClassVar[Tuple[Param, ...]] = ()
    _fields: ClassVar[Dict[str, Param]] = {}
    family: ClassVar[str] = ""
    convex: ClassVar[bool] = False
    robust: ClassVar[bool] = False
    smooth: ClassVar[bool] = False
    # "exact"; "a.e." where it is the almost-everywhere value 0; "none" where the loss provides
    # no Hessian diagonal (grad_hess raises NotImplementedError)
    hessian: ClassVar[str] = "exact"
    function_name: ClassVar[str]
    functional: ClassVar[Callable[..., Any]]

    reduction: str = param(default="mean", check=lambda name, value: _check_reduction(value),
                           doc="'mean' (sum(w*l)/sum(w)), 'sum' or 'none' (per-item values)")

    def _construct(self, kwargs: Dict[str, Any]) -> None:
        fields = type(self)._fields
        unknown = set(kwargs) - set(fields)
        if unknown:
            names = [p.name for p in self.params]
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) {sorted(unknown)}; "
                f"it takes {names or 'no parameters'} and reduction")
        for p in fields.values():
            object.__setattr__(self, p.name, p.check(p.name, kwargs.get(p.name, p.default)))
        self.__post_init__()

    def __post_init__(self) -> None:
        """Derives state from the validated parameters (names starting with "_")."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):  # state derived in __post_init__
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__} is immutable: use loss.replace({name}=...) for a copy with "
            f"another {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; cannot delete {name!r}")

    def get_params(self) -> Dict[str, Any]:
        """The hyper-parameters, by name (``reduction`` apart)."""
        return {p.name: getattr(self, p.name) for p in self.params}

    def replace(self: _L, **changes: Any) -> _L:
        """A copy with some parameters (or ``reduction``) changed, validated like the constructor:
        ``fl.Huber(delta=1.0).replace(delta=2.0) == fl.Huber(delta=2.0)``."""
        return type(self)(**{**self.get_params(), "reduction": self.reduction, **changes})

    def _key(self) -> Tuple[Any, ...]:
        return (self.reduction,) + tuple(frozen(v) for v in self.get_params().values())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        args = [f"{k}={v.tolist() if isinstance(v, np.ndarray) else v!r}"
                for k, v in self.get_params().items()]
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    # The contract every loss obeys, over one kernel call: _run(y_true, y_pred, sample_weight,
    # reduction, want_grad, want_hess, out, grad_out, hess_out, **inputs) -> (value, per-element
    # values | None, grad | None, hess | None). `inputs` are the extra keyword-only arrays a loss
    # declares in ``inputs`` (e.g. Distillation's ``teacher_logits``), each required.
    inputs: ClassVar[Tuple[str, ...]] = ()

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
        return self._run(y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out,
                         grad_out, hess_out, **inputs)

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
        _declare(cls)
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


_declare(Loss)


def _describe_functional(functional: Callable, cls: Any, positional: Tuple[str, ...],
                         keyword_inputs: Tuple[str, ...] = ()) -> None:
    """Names ``functional`` after ``cls`` and gives it a signature that lists the loss's
    parameters (inspect, IDEs) and a docstring that shows it."""
    P = inspect.Parameter
    sig = inspect.Signature(
        [P(name, P.POSITIONAL_OR_KEYWORD) for name in positional]
        + [P(name, P.KEYWORD_ONLY) for name in keyword_inputs]
        + [P("sample_weight", P.KEYWORD_ONLY, default=None),
           P("reduction", P.KEYWORD_ONLY, default="mean")]
        + [P(p.name, P.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
           for p in cls.params])
    plain = sig.replace(parameters=[p.replace(annotation=P.empty) for p in sig.parameters.values()])
    functional.__name__ = functional.__qualname__ = cls.function_name
    functional.__signature__ = sig  # type: ignore[attr-defined]
    functional.__doc__ = (f"Functional form of :class:`fastloss.{cls.__name__}`: returns the loss "
                          f"value.\n\n``{cls.function_name}{plain}``")


def _make_functional(cls: type) -> Callable:
    def functional(y_true, y_pred, *, sample_weight=None, reduction="mean", **params):
        inputs = {name: params.pop(name) for name in cls.inputs if name in params}
        return cls(reduction=reduction, **params)(y_true, y_pred, sample_weight=sample_weight, **inputs)

    _describe_functional(functional, cls, ("y_true", "y_pred"), cls.inputs)
    return functional


class ElementwiseLoss(Loss):
    """A loss whose value is a (weighted) reduction of per-element terms l(y_true, y_pred).

    All derivatives are with respect to ``y_pred`` and are exactly those of the returned value
    under the chosen reduction: for ``"mean"`` the per-element terms are scaled by
    ``w / sum(w)``, for ``"sum"`` by ``w``, for ``"none"`` by ``w`` (the derivative of each
    returned per-element value).
    """

    kernel: ClassVar[Optional[str]] = None  # name in the C++ registry (cpp/losses/registry.hpp)
    # Losses with a from_logits switch name one kernel per input space instead.
    kernels: ClassVar[Optional[Dict[bool, str]]] = None
    # True for losses on {-1, +1} (or {0, 1}) labels: other values are rejected before any work.
    sign_labels: ClassVar[bool] = False

    def __post_init__(self) -> None:
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
