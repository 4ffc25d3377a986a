"""Validators of hyper-parameters, shared by every loss and helper.

A validator is ``check(name, value) -> value to store``: it raises TypeError when the value has
the wrong type (a string or None where a number is expected) and ValueError when it is out of
range, naming the parameter in both cases. The factories below build the range checks.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Optional

import numpy as np

Check = Callable[[str, Any], Any]


def _number(name: str, value: Any) -> float:
    """A real number (int, float or their NumPy scalars; not bool) as a float, inf and NaN
    included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    return float(value)


def finite_float(name: str, value: Any) -> float:
    v = _number(name, value)
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


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def between(low: float, high: float, closed: str = "both") -> Check:
    """A finite float in the interval from ``low`` to ``high``; ``closed`` is "both", "left",
    "right" or "neither"."""
    left, right = closed in ("both", "left"), closed in ("both", "right")
    shown = f"{'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"

    def check(name: str, value: Any) -> float:
        v = finite_float(name, value)
        if not ((low <= v if left else low < v) and (v <= high if right else v < high)):
            raise ValueError(f"{name} must lie in {shown}; got {v}")
        return v

    return check


def at_least(low: float, *, allow_inf: bool = False) -> Check:
    """A float >= ``low`` (finite unless ``allow_inf``: a norm's degree may be inf)."""

    def check(name: str, value: Any) -> float:
        v = _number(name, value) if allow_inf else finite_float(name, value)
        if not v >= low:  # NaN fails too
            raise ValueError(f"{name} must be >= {low:g}{' (or inf)' if allow_inf else ''}; got {v}")
        return v

    return check


def integer(low: Optional[int] = None, high: Optional[int] = None) -> Check:
    """A Python or NumPy integer (not bool) in ``[low, high)`` (either bound may be None)."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
        v = int(value)
        if (low is not None and v < low) or (high is not None and v >= high):
            bounds = (f"in [{low}, {high})" if low is not None and high is not None
                      else f">= {low}" if low is not None else f"< {high}")
            raise ValueError(f"{name} must be {bounds}; got {v}")
        return v

    return check


def choice(*options: Any) -> Check:
    """One of ``options``; a value of another type than every option is a TypeError."""

    def check(name: str, value: Any) -> Any:
        for option in options:
            if type(value) is type(option) and value == option:
                return option
        if not any(type(value) is type(option) for option in options):
            raise TypeError(f"{name} must be one of {options}; got {type(value).__name__} {value!r}")
        raise ValueError(f"{name} must be one of {options}; got {value!r}")

    return check


def optional(check: Check) -> Check:
    """None, or a value that passes ``check``."""

    def optional_check(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return optional_check


def floats(element: Check = finite_float, *, max_size: Optional[int] = None,
           as_array: bool = False) -> Check:
    """A non-empty 1-D sequence (or array) of numbers, each checked by ``element``, stored as a
    tuple of floats -- or, with ``as_array``, as a read-only float64 array (what the kernels
    index). Either way the value is immutable, and losses compare and hash by value."""

    def check(name: str, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "iuf":
                raise TypeError(f"{name} must hold real numbers; got dtype {value.dtype}")
            if value.ndim != 1:
                raise ValueError(f"{name} must be a 1-D sequence; got shape {value.shape}")
            items = value.tolist()
        elif isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a sequence of numbers; got {type(value).__name__} "
                            f"{value!r}")
        else:
            items = list(value)
            if any(isinstance(v, (list, tuple, np.ndarray)) for v in items):
                raise ValueError(f"{name} must be a 1-D sequence of numbers; got {value!r}")
        if max_size is not None and not 1 <= len(items) <= max_size:
            raise ValueError(f"{name} must hold 1 to {max_size} values; got {len(items)}")
        if not items:
            raise ValueError(f"{name} must not be empty")
        values = tuple(element(f"{name}[{i}]", v) for i, v in enumerate(items))
        if not as_array:
            return values
        a = np.array(values, dtype=np.float64)
        a.setflags(write=False)
        return a

    return check


def number_or_floats(element: Check) -> Check:
    """One number (stored as a float) or a sequence of them (a tuple), each checked by
    ``element``."""
    many = floats(element)

    def check(name: str, value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if isinstance(value, (Real, np.integer, np.floating)) and not isinstance(value, bool):
            return element(name, value)
        if isinstance(value, (str, bytes, bool, np.bool_)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a number or a sequence of numbers; got "
                            f"{type(value).__name__} {value!r}")
        return many(name, value)

    return check


def frozen(value: Any) -> Any:
    """A hashable stand-in with the same equality as a stored parameter value (arrays by
    value)."""
    if isinstance(value, np.ndarray):
        return ("array", value.shape, tuple(value.ravel().tolist()))
    return value


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


_PLAIN = (list, tuple, float, int, np.generic)


def host_input(value: Any, name: str) -> Any:
    """An input that is not a plain ndarray, made readable by the kernels, or a TypeError naming
    the argument: a dask array (never loaded whole behind the caller's back: use
    ``fastloss.dask``), a masked array (the mask would be ignored), a PyTorch tensor that requires
    grad (use ``fastloss.torch``); a bfloat16 tensor is read as float32; an object exposing only
    ``__dlpack__`` is read through ``numpy.from_dlpack`` (no copy). GPU arrays
    (``__cuda_array_interface__``) and everything else pass unchanged."""
    if type(value) is np.ndarray or isinstance(value, _PLAIN) or value is None:
        return value
    if hasattr(value, "__dask_graph__"):
        raise TypeError(f"{name} is a dask collection ({type(value).__name__}): fastloss would "
                        "load it whole into memory; use fastloss.dask (loss_value, value_and_grad, "
                        "grad_hess), or pass .compute() of it")
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array (numpy.ma): fastloss does not apply masks; pass "
                        f"the values of the items to keep (or zero sample_weight where masked)")
    if type(value).__module__.startswith("torch"):
        if getattr(value, "requires_grad", False):
            raise TypeError(f"{name} is a torch tensor that requires grad: use "
                            "fastloss.torch.loss(loss, ...) to backpropagate through fastloss, or "
                            f"pass {name}.detach()")
        if str(getattr(value, "dtype", "")) == "torch.bfloat16" and value.device.type == "cpu":
            return value.float().numpy()
        return value
    if (hasattr(value, "__dlpack__") and not hasattr(value, "__array__")
            and not hasattr(value, "__array_interface__")
            and not hasattr(value, "__cuda_array_interface__")):
        return np.from_dlpack(value)
    return value


def real_array(value: Any, name: str, dtype: Any = None) -> np.ndarray:
    """``value`` as a float32/float64 ndarray: ``dtype`` if given, else its own float32/float64,
    float16 and bfloat16 promoted to float32 and integers and bools to float64 (as the kernels
    compute). Complex, object and string arrays are a TypeError naming the argument."""
    if type(value) is np.ndarray and value.flags.aligned:  # the common case, answered first
        dt = value.dtype
        if (dt is FLOATS[0] or dt is FLOATS[1] or dt in FLOATS) and (dtype is None or dt == dtype):
            return value
    a = value if isinstance(value, np.ndarray) else np.asarray(host_input(value, name))
    if isinstance(a, np.ma.MaskedArray):
        host_input(a, name)  # the masked-array error
    if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {a.dtype}")
    if dtype is None:
        if a.dtype in FLOATS and a.flags.aligned:
            return a
        dtype = a.dtype if a.dtype in FLOATS else np.float32 if a.dtype == np.float16 else np.float64
    # A misaligned view (np.frombuffer at an odd offset) is copied once: kernels load whole elements.
    return a.astype(dtype, copy=not a.flags.aligned)


def _element(a: np.ndarray, i: int, name: str) -> str:
    """``name[index] = value`` for the element at C-order flat index ``i`` of ``a``."""
    where = ", ".join(str(int(k)) for k in np.unravel_index(i, a.shape))
    return f"{name}[{where}] = {a.ravel()[i].item()!r}"


def _first_outside(value: Any, scan: Callable[[np.ndarray], int]):
    """``(array, flat index)`` of the first element ``scan`` (a parallel C++ pass) rejects, or
    None. Device arrays (CUDA) are not read back to the host, and non-numeric arrays are left to
    the kernel call's dtype error."""
    if hasattr(value, "__cuda_array_interface__"):
        return None
    a = value if isinstance(value, np.ndarray) else np.asarray(value)
    if a.size == 0 or a.dtype.kind not in "biuf":
        return None
    i = scan(a)
    return (a, i) if i >= 0 else None


def check_probabilities(value: Any, name: str) -> None:
    """ValueError naming ``name`` and its first element outside [0, 1]; NaN passes (it propagates
    to the result like any NaN)."""
    from . import _core

    bad = _first_outside(value, lambda a: _core.first_outside_unit_interval(a, name))
    if bad:
        raise ValueError(f"{name} holds probabilities, which must lie in [0, 1]; got "
                         f"{_element(*bad, name)}")


def check_sign_labels(y_true: Any) -> None:
    """Binary labels must be -1/+1 or 0/1: a ValueError naming ``y_true`` and its first offending
    element."""
    from . import _core

    bad = _first_outside(y_true, _core.first_bad_sign_label)
    if bad:
        raise ValueError(f"y_true must hold binary labels in {{-1, +1}} or {{0, 1}}; "
                         f"{_element(*bad, 'y_true')}")


def check_label_range(y_true: Any, low: float, closed: bool, what: str) -> None:
    """Labels must be finite and ``> low`` (``>= low`` when ``closed``; ``low`` may be -inf):
    a ValueError naming ``y_true``, the allowed range (``what`` describes it) and the first
    offending element, index and value."""
    from . import _core

    bad = _first_outside(y_true, lambda a: _core.first_bad_real_label(a, low, closed))
    if bad:
        interval = f"{'[' if closed else '('}{low:g}, inf)"
        raise ValueError(f"y_true must hold {what} (finite, in {interval}); "
                         f"{_element(*bad, 'y_true')}")
