"""The Loss contract shared by every loss, the parameter declarations, and the registry."""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import (Any, Callable, ClassVar, Dict, Generic, List, Literal, NamedTuple, Optional,
                    Protocol, Tuple, TypeVar, overload)

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validate import Check, check_probabilities, check_sign_labels, frozen, host_input

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # type checkers read the 3.11 branch; at runtime the decorator only records its options
    def dataclass_transform(**options: Any) -> Callable[[Any], Any]:
        return lambda cls: cls

REDUCTIONS = tuple(_core.reductions)

# What type checkers see of a call: values are floats (a scalar reduction; the loss's own when
# reduction=None) or per-item arrays (reduction="none"); the gradient type G is the loss's: one
# array, a tuple of arrays (several differentiable inputs) or a list (feature maps).
FloatArray = NDArray[np.floating[Any]]
Scalar = Optional[Literal["mean", "sum"]]
G = TypeVar("G")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return reduction


class Functional(Protocol):
    """A loss's functional shortcut (``fl.huber``): the value of ``Loss(**params)(*args)``."""

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Literal["mean", "sum"] = ..., **params: Any) -> float: ...

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Literal["none"], **params: Any) -> FloatArray: ...


class KernelResult(NamedTuple):
    """What one evaluation of a loss returns, before the reduction (``Loss._value``)."""

    total: float  # the sum of the weighted per-item losses, in double
    norm: float  # the denominator of the mean: the summed weights of the items that count
    values: Any  # the weighted per-item losses (reduction="none"), else None
    grad: Any  # d value / d input: an array, a sequence in ``grads`` order, or None
    hess: Any  # the Hessian diagonal, likewise
    extra: Any = None  # what a loss returns besides (e.g. the mined triplets)


# Arguments that need no conversion (torch tensors, DLPack objects, dask arrays ... do): checked by
# type identity, the cheapest test on the hot path of small calls.
_PLAIN = frozenset({np.ndarray, type(None)})
_NDARRAY = {np.ndarray}
_ndarray = np.ndarray

# The common call (plain float ndarrays, a reduced value) in one compiled step, for the
# losses that set ``_fast`` (ElementwiseLoss._fast_spec); NotImplemented for any other call, which
# then takes the general path (``_call``). What each method asks it for:
_fast_call = _core.elementwise_fast
_VALUE, _VALUE_GRAD, _GRAD_HESS, _VALUE_GRAD_HESS = range(4)


def _host_inputs(loss: "Loss", args: tuple, sample_weight: Any, buffers: tuple):
    """Inputs that are not plain ndarrays through ``host_input`` (dask, masked arrays, tensors,
    DLPack); CPU torch tensors as ``out``/``grad_out``/``hess_out`` are written in place through
    their NumPy views."""
    args = tuple(host_input(a, n) for a, n in zip(args, loss.arguments))

    def host(buffer: Any) -> Any:
        if type(buffer).__module__.startswith("torch") and buffer.device.type == "cpu":
            return buffer.detach().numpy()
        if isinstance(buffer, (list, tuple)):
            return type(buffer)(map(host, buffer))
        return buffer

    return args, host_input(sample_weight, "sample_weight"), tuple(map(host, buffers))


def _writeable(buffer: Any, name: str) -> None:
    if not isinstance(buffer, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(buffer).__name__}")
    if not buffer.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _check_buffers(out: Any, grad_out: Any, hess_out: Any, n_grads: int) -> None:
    """Caller buffers are writeable ndarrays; with several differentiable inputs, ``grad_out``
    and ``hess_out`` are sequences with one buffer (or None) per input. Checked before any work;
    shapes and dtypes are checked against the results before any buffer is written."""
    if out is not None:
        _writeable(out, "out")
    for name, given in (("grad_out", grad_out), ("hess_out", hess_out)):
        if given is None:
            continue
        if n_grads > 1 or isinstance(given, (list, tuple)):
            if not isinstance(given, (list, tuple)):
                raise TypeError(f"{name} must be a tuple of {n_grads} arrays (or None), one per "
                                f"differentiable input; got {type(given).__name__}")
            for i, b in enumerate(given):
                if b is not None:
                    _writeable(b, f"{name}[{i}]")
        else:
            _writeable(given, name)


def _pairs(result: Any, given: Any, name: str) -> List[Tuple[Any, Any, str]]:
    """(result array, caller buffer, name) for each array of one output."""
    if given is None or result is None:
        return []
    if isinstance(given, (list, tuple)):
        if not isinstance(result, (list, tuple)) or len(result) != len(given):
            count = len(result) if isinstance(result, (list, tuple)) else 1
            raise ValueError(f"{name} must hold {count} buffers; got {len(given)}")
        return [(r, b, f"{name}[{i}]") for i, (r, b) in enumerate(zip(result, given))]
    return [(result, given, name)]


def _deliver(result: KernelResult, out: Any, grad_out: Any, hess_out: Any) -> KernelResult:
    """The result with its arrays in the caller's buffers. Every buffer's shape and dtype is
    checked before the first is written: an error leaves them all untouched."""
    pairs = (_pairs(result.values, out, "out") + _pairs(result.grad, grad_out, "grad_out")
             + _pairs(result.hess, hess_out, "hess_out"))
    copies = []
    for r, b, name in pairs:
        if b is None or r is b:
            continue
        r = np.asarray(r)
        if b.dtype != r.dtype:
            raise TypeError(f"{name} must have dtype {r.dtype} (the result's); got {b.dtype}")
        if b.shape != r.shape:
            raise ValueError(f"{name} must have shape {r.shape}; got {b.shape}")
        copies.append((r, b))
    for r, b in copies:
        np.copyto(b, r)

    def placed(r: Any, given: Any) -> Any:
        if given is None or r is None:
            return r
        if isinstance(given, (list, tuple)):
            return type(r)(x if b is None else b for x, b in zip(r, given))
        return given

    return result._replace(values=placed(result.values, out), grad=placed(result.grad, grad_out),
                           hess=placed(result.hess, hess_out))


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
            if name not in hints:  # type checkers only see annotated fields
                raise TypeError(f"{cls.__name__}.{name}: annotate the parameter "
                                f"({name}: <type> = param(...))")
            annotation = hints[name]
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


class Loss(Generic[G], metaclass=_LossType):
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
    functional: ClassVar["Functional"]

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
        # Probabilities (not logits) in y_pred: outside [0, 1] is an error, as in PyTorch.
        self._probabilities = (getattr(self, "from_logits", True) is False
                               or ("activation" in fields and self.activation is None))
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

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The hyper-parameters, by name (``reduction`` apart). ``deep`` is accepted for
        scikit-learn's convention; a loss holds no nested estimators."""
        return {p.name: getattr(self, p.name) for p in self.params}

    def __sklearn_clone__(self: _L) -> _L:
        """``sklearn.base.clone`` of an estimator holding this loss: a loss is immutable, so the
        clone shares it (``loss__delta=...`` in a search replaces it by a copy)."""
        return self

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

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Built-in data this loss accepts: ``(y_true, y_pred, inputs)``, ``n`` samples (rows,
        images, pairs ...) of ``dtype`` drawn from ``rng``; ``inputs`` holds the extra keyword
        arrays the loss declares (e.g. ``teacher_logits``). ``fastloss eval --synthetic`` and the
        gradient checks evaluate every registered loss on it, so each family provides one."""
        raise NotImplementedError(f"{type(self).__name__} provides no synthetic data: define "
                                  "synthetic(n, rng, dtype)")

    # The inputs of a call. Positional (or by name): ``arguments``, truth first; keyword-only:
    # ``inputs`` (required, e.g. Distillation's ``teacher_logits``) and ``optional_inputs``
    # (default None). ``grads`` names the differentiable arguments, in the order in which
    # ``value_and_grad`` returns their gradients (one array when there is one).
    arguments: ClassVar[Tuple[str, ...]] = ("y_true", "y_pred")
    grads: ClassVar[Tuple[str, ...]] = ("y_pred",)
    inputs: ClassVar[Tuple[str, ...]] = ()
    optional_inputs: ClassVar[Tuple[str, ...]] = ()
    # False for losses that compare whole batches (a distance between distributions, a Dice
    # ratio over the batch): no sum over chunks of the data reproduces them.
    chunkable: ClassVar[bool] = True
    # True where the compiled binding checks and writes the caller's buffers itself (before any
    # work, all or none): no second check or copy in Python.
    native_buffers: ClassVar[bool] = False
    # The mean over nothing that counts (a zero denominator): NaN, or 0 for losses whose batch
    # may legitimately hold nothing to count (no mined triplet, as pytorch-metric-learning).
    empty_mean: ClassVar[float] = math.nan
    # The spec of _core.elementwise_fast for this loss, or None (no fast path).
    _fast: Optional[tuple] = None

    def _run(self, args: tuple, sample_weight: Any, reduction: str, want_grad: bool,
             want_hess: bool, out: Any, grad_out: Any, hess_out: Any, **inputs: Any) -> "KernelResult":
        """One evaluation on the bound ``args`` (in ``arguments`` order). It may write the caller's
        buffers itself (returning them) or return fresh arrays, which the caller's buffers then
        receive."""
        raise NotImplementedError

    def _call(self, args: tuple, named: Dict[str, Any], sample_weight: Any, reduction: Any,
              want_grad: bool, want_hess: bool, out: Any = None, grad_out: Any = None,
              hess_out: Any = None) -> Tuple[tuple, str]:
        """The one call path of every loss: binds and checks the call's arguments, runs the loss
        once and delivers into the caller's buffers. Returns the result, in ``KernelResult``'s
        field order (a plain tuple from the compiled kernels: no wrapping on the hot path), and
        the reduction."""
        reduction = self.reduction if reduction is None else _check_reduction(reduction)
        if want_hess and self.hessian == "none":
            raise NotImplementedError(f"{type(self).__name__} provides no Hessian diagonal; use "
                                      "value_and_grad")
        if out is not None and reduction != "none":
            raise ValueError("out= is only used with reduction='none'")
        if named or self.inputs or len(args) != len(self.arguments):
            args, sample_weight, named = self._bind(args, named, sample_weight)
        if (type(args[0]) is not _ndarray or type(args[-1]) is not _ndarray
                or type(grad_out) not in _PLAIN or type(sample_weight) not in _PLAIN
                or type(out) not in _PLAIN or type(hess_out) not in _PLAIN
                or (len(args) > 2 and {*map(type, args)} != _NDARRAY)):
            args, sample_weight, (out, grad_out, hess_out) = _host_inputs(
                self, args, sample_weight, (out, grad_out, hess_out))
        if self._probabilities:
            check_probabilities(args[self.arguments.index("y_pred")], "y_pred")
        deliver = not self.native_buffers and (out is not None or grad_out is not None
                                                or hess_out is not None)
        if deliver:
            _check_buffers(out, grad_out, hess_out, len(self.grads))
        result = self._run(args, sample_weight, reduction, want_grad, want_hess, out, grad_out,
                           hess_out, **named)
        if deliver:
            result = _deliver(KernelResult(*result), out, grad_out, hess_out)
        return result, reduction

    def _evaluate(self, args: tuple, named: Dict[str, Any], sample_weight: Any, reduction: Any,
                  want_grad: bool, want_hess: bool, out: Any = None, grad_out: Any = None,
                  hess_out: Any = None) -> KernelResult:
        """``_call``'s result with its fields named, for composites and adapters."""
        result = self._call(args, named, sample_weight, reduction, want_grad, want_hess, out,
                            grad_out, hess_out)[0]
        return result if type(result) is KernelResult else KernelResult(*result)

    def _value(self, result: tuple, reduction: str) -> Any:
        """The value under ``reduction``: the per-item values, the sum, or the mean."""
        if reduction == "none":
            return result[2]
        if reduction == "sum":
            return result[0]
        return result[0] / result[1] if result[1] > 0 else self.empty_mean

    def _bind(self, args: tuple, named: Dict[str, Any], sample_weight: Any):
        """``(arguments, sample_weight, keyword inputs)`` from a call, like
        ``loss(*arguments, sample_weight, **inputs)``: positional values fill the arguments not
        given by name, in order; one more positional value is the sample weight."""
        names = self.arguments
        keywords = self.inputs + self.optional_inputs
        unknown = [k for k in named if k not in names and k not in keywords]
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) {unknown}; "
                            f"it takes the inputs {names + keywords}")
        missing = [k for k in self.inputs if k not in named]
        if missing:
            raise TypeError(f"{type(self).__name__} needs the keyword argument(s) {missing}")
        free = [k for k in names if k not in named]
        if len(args) > len(free) + 1 or (len(args) == len(free) + 1 and sample_weight is not None):
            raise TypeError(f"{type(self).__name__} takes the inputs ({', '.join(names)}) and "
                            f"sample_weight; got {len(args)} positional arguments")
        if len(args) < len(free):
            raise TypeError(f"{type(self).__name__} takes the inputs ({', '.join(names)}); "
                            f"missing {', '.join(free[len(args):])}")
        bound = dict(zip(free, args))
        if len(args) > len(free):
            sample_weight = args[-1]
        inputs = {k: named.get(k) for k in keywords}
        return tuple(named[k] if k in named else bound[k] for k in names), sample_weight, inputs

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Scalar = ..., out: None = ..., **inputs: ArrayLike) -> float: ...

    @overload
    def __call__(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                 reduction: Literal["none"], out: Optional[FloatArray] = ...,
                 **inputs: ArrayLike) -> FloatArray: ...

    def __call__(self, *args: Any, sample_weight: Any = None, reduction: Optional[str] = None,
                 out: Any = None, **inputs: Any) -> Any:
        """The loss value: a float (``"mean"``/``"sum"``) or the per-item array (``"none"``,
        into ``out`` if given)."""
        if self._fast is not None and out is None and not inputs:
            value = _fast_call(self._fast, args, sample_weight, reduction, None, None, _VALUE)
            if value is not NotImplemented:
                return value
        result, reduction = self._call(args, inputs, sample_weight, reduction, False, False, out)
        return self._value(result, reduction)

    @overload
    def value_and_grad(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                       reduction: Scalar = ..., out: None = ..., grad_out: Optional[G] = ...,
                       **inputs: ArrayLike) -> Tuple[float, G]: ...

    @overload
    def value_and_grad(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                       reduction: Literal["none"], out: Optional[FloatArray] = ...,
                       grad_out: Optional[G] = ..., **inputs: ArrayLike) -> Tuple[FloatArray, G]: ...

    def value_and_grad(self, *args: Any, sample_weight: Any = None,
                       reduction: Optional[str] = None, out: Any = None, grad_out: Any = None,
                       **inputs: Any) -> Tuple[Any, Any]:
        """``(value, grad)`` in one pass: the gradient of the returned value with respect to the
        differentiable inputs (``grads``; for ``"none"``, of their sum) with their shapes and
        dtypes -- one array, or a tuple in ``grads`` order (``grad_out`` likewise)."""
        if self._fast is not None and out is None and not inputs:
            result = _fast_call(self._fast, args, sample_weight, reduction, grad_out, None,
                                _VALUE_GRAD)
            if result is not NotImplemented:
                return result
        result, reduction = self._call(args, inputs, sample_weight, reduction, True, False, out,
                                       grad_out)
        return self._value(result, reduction), result[3]

    def grad_hess(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                  reduction: Optional[Literal["mean", "sum", "none"]] = None,
                  grad_out: Optional[G] = None, hess_out: Optional[G] = None,
                  **inputs: ArrayLike) -> Tuple[G, G]:
        """``(grad, hess)``: the gradient and the Hessian diagonal. NotImplementedError for a
        loss that provides no Hessian diagonal (``hessian == "none"``)."""
        # Per-item derivatives under "none" are those of "sum"; no per-item values needed.
        if reduction == "none" or (reduction is None and self.reduction == "none"):
            reduction = "sum"
        if self._fast is not None and not inputs:
            result = _fast_call(self._fast, args, sample_weight, reduction, grad_out, hess_out,
                                _GRAD_HESS)
            if result is not NotImplemented:
                return result
        result, _ = self._call(args, inputs, sample_weight, reduction, True, True, None,
                               grad_out, hess_out)
        return result[3], result[4]

    @overload
    def value_grad_hess(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                        reduction: Scalar = ..., out: None = ..., grad_out: Optional[G] = ...,
                        hess_out: Optional[G] = ..., **inputs: ArrayLike) -> Tuple[float, G, G]: ...

    @overload
    def value_grad_hess(self, *args: ArrayLike, sample_weight: Optional[ArrayLike] = ...,
                        reduction: Literal["none"], out: Optional[FloatArray] = ...,
                        grad_out: Optional[G] = ..., hess_out: Optional[G] = ...,
                        **inputs: ArrayLike) -> Tuple[FloatArray, G, G]: ...

    def value_grad_hess(self, *args: Any, sample_weight: Any = None,
                        reduction: Optional[str] = None, out: Any = None, grad_out: Any = None,
                        hess_out: Any = None, **inputs: Any) -> Tuple[Any, Any, Any]:
        """``(value, grad, hess)`` from the same single pass."""
        if self._fast is not None and out is None and not inputs:
            result = _fast_call(self._fast, args, sample_weight, reduction, grad_out, hess_out,
                                _VALUE_GRAD_HESS)
            if result is not NotImplemented:
                return result
        result, reduction = self._call(args, inputs, sample_weight, reduction, True, True, out,
                                       grad_out, hess_out)
        return self._value(result, reduction), result[3], result[4]

    def _require_chunkable(self) -> None:
        if not self.chunkable:
            raise NotImplementedError(f"{self!r} compares whole batches: it is not a sum over "
                                      "items and cannot be accumulated or split into chunks")

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


def _make_functional(cls: type) -> Callable:
    keywords = cls.arguments + cls.inputs + cls.optional_inputs

    def functional(*args, sample_weight=None, reduction="mean", **params):
        named = {name: params.pop(name) for name in keywords if name in params}
        return cls(reduction=reduction, **params)(*args, sample_weight=sample_weight, **named)

    # a signature listing the loss's inputs and parameters (inspect, IDEs), shown in the doc
    P = inspect.Parameter
    sig = inspect.Signature(
        [P(name, P.POSITIONAL_OR_KEYWORD) for name in cls.arguments]
        + [P(name, P.KEYWORD_ONLY) for name in cls.inputs]
        + [P(name, P.KEYWORD_ONLY, default=None) for name in cls.optional_inputs]
        + [P("sample_weight", P.KEYWORD_ONLY, default=None),
           P("reduction", P.KEYWORD_ONLY, default="mean")]
        + [P(p.name, P.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
           for p in cls.params])
    plain = sig.replace(parameters=[p.replace(annotation=P.empty) for p in sig.parameters.values()])
    functional.__name__ = functional.__qualname__ = cls.function_name
    functional.__signature__ = sig  # type: ignore[attr-defined]
    functional.__doc__ = (f"Functional form of :class:`fastloss.{cls.__name__}`: returns the loss "
                          f"value.\n\n``{cls.function_name}{plain}``")
    return functional


class ElementwiseLoss(Loss[FloatArray]):
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
    native_buffers = True

    def __post_init__(self) -> None:
        self._id = _core.elementwise_kernels[self._kernel_name]
        self._kernel_params = self._pack_params()
        self._aux = self._column_params()
        self._fast = self._fast_spec()

    def _fast_spec(self) -> Optional[tuple]:
        """What ``_core.elementwise_fast`` needs to serve the common call: kernel id, the check
        its inputs need (1: sign labels, 2: probabilities), whether it has a Hessian, the default
        reduction, the per-element parameter where one value serves every element (Quantile's
        scalar tau) and the kernel's parameters. None (no fast path) where a subclass's ``_run``,
        ``_call`` or label check does more, or the loss takes a per-column parameter vector."""
        cls = type(self)
        if (cls._run is not ElementwiseLoss._run or cls._call is not Loss._call
                or cls._label_check is not ElementwiseLoss._label_check
                or (self._aux is not None and self._aux.ndim != 0)):
            return None
        check = 2 if self._probabilities else 1 if self.sign_labels else 0
        aux = None if self._aux is None else float(self._aux)  # one value for every element
        return (self._id, check, self.hessian != "none", _core.reductions[self.reduction], aux,
                *self._kernel_params)

    @property
    def _kernel_name(self) -> str:
        return self.kernel if self.kernels is None else self.kernels[self.from_logits]

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Regression data: ``y ~ N(0, 1)``, ``y_pred = y + N(0, 0.3^2)`` with 1 % outliers
        (20 sigma), so that the robust losses meet what they are for."""
        y = rng.standard_normal(n)
        p = y + 0.3 * rng.standard_normal(n)
        outliers = rng.random(n) < 0.01
        p[outliers] += rng.standard_normal(int(outliers.sum())) * 20
        return y.astype(dtype), p.astype(dtype), {}

    # Subclasses map their parameters onto the kernel's flat parameter list / per-column vector.
    def _pack_params(self) -> List[float]:
        return [float(getattr(self, p.name)) for p in self.params]

    def _column_params(self) -> Optional[np.ndarray]:
        return None

    def _label_check(self) -> Optional[Callable[[Any], None]]:
        """The check of ``y_true`` against the loss's label domain (a ValueError naming the first
        offending element), or None. The kernel of a loss with one makes the reduced value NaN at
        a label outside the domain."""
        return check_sign_labels if self.sign_labels else None

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        check = self._label_check()
        # Where fastloss allocates every output (nothing of the caller's is written) and the
        # kernel sees the labels as given, they are read once: the kernel runs first, and only a
        # NaN value (a bad label, or a NaN input) costs the scan that names the first bad label.
        # Otherwise the labels are checked before any write.
        fused = check is not None and _kernel_sees_labels(y_true, y_pred, reduction, out,
                                                          grad_out, hess_out)
        if check is not None and not fused:
            check(y_true)
        kernels = _core if type(y_pred) is np.ndarray else _kernels_for(y_pred)
        if (reduction == "none" and type(y_pred) is np.ndarray and y_pred.ndim > 1
                and self._aux is None and y_pred.flags.f_contiguous
                and not y_pred.flags.c_contiguous and isinstance(y_true, np.ndarray)
                and y_true.shape == y_pred.shape
                and (sample_weight is None or np.shape(sample_weight) == y_pred.shape)):
            return self._run_transposed(y_true, y_pred, sample_weight, reduction, want_grad,
                                        want_hess, out, grad_out, hess_out)
        result = kernels.elementwise(
            self._id, self._kernel_params, y_true, y_pred, sample_weight, self._aux, reduction,
            want_grad, want_hess, out, grad_out, hess_out)
        if fused and result[0] != result[0]:
            check(y_true)
        return result

    def _run_transposed(self, y_true, y_pred, sample_weight, reduction, want_grad, want_hess, out,
                        grad_out, hess_out):
        """A Fortran-ordered ``y_pred`` under ``reduction="none"``: per-element values and
        derivatives do not depend on the order, so the kernel reads the transposes (C-ordered
        views, no copy) and the results come back Fortran-ordered, like the inputs. (A reduced
        value is summed in C order, from a contiguous copy: bitwise the value of that copy.)"""
        def t(a):
            return a.T if isinstance(a, np.ndarray) and a.shape == y_pred.shape else a

        total, norm, values, grad, hess = _core.elementwise(
            self._id, self._kernel_params, y_true.T, y_pred.T, t(sample_weight), None, reduction,
            want_grad, want_hess, t(out), t(grad_out), t(hess_out))
        back = [given if given is not None else (None if r is None else r.T)
                for r, given in ((values, out), (grad, grad_out), (hess, hess_out))]
        return (total, norm, *back)


def _kernel_sees_labels(y_true, y_pred, reduction, out, grad_out, hess_out) -> bool:
    """True when a reduced call writes nothing of the caller's and the kernel reads ``y_true``
    exactly as given (same shape, no narrowing of float labels), so that a NaN value is the only
    trace a bad label needs to leave."""
    return (out is None and grad_out is None and hess_out is None and reduction != "none"
            and type(y_true) is np.ndarray and type(y_pred) is np.ndarray
            and y_true.shape == y_pred.shape and y_pred.dtype.kind == "f"
            and (y_true.dtype.kind in "biu" or (y_true.dtype.kind == "f" and
                                                y_true.dtype.itemsize <= y_pred.dtype.itemsize)))


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
