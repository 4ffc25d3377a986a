"""Weight initialization (Glorot & Bengio 2010, He et al. 2015), with PyTorch's
``torch.nn.init`` formulas and conventions.

Shapes follow PyTorch: dense weights ``(fan_out, fan_in)``, convolution weights
``(out_channels, in_channels / groups, *kernel)``; ``fan_in = shape[1] * receptive``,
``fan_out = shape[0] * receptive`` with ``receptive = prod(shape[2:])``.

=====================  ==============================================================
initializer            distribution
=====================  ==============================================================
xavier_uniform         U(-a, a), ``a = gain sqrt(6 / (fan_in + fan_out))``
xavier_normal          N(0, s^2), ``s = gain sqrt(2 / (fan_in + fan_out))``
kaiming_uniform (He)   U(-b, b), ``b = sqrt(3) gain / sqrt(fan)``, ``fan`` = fan_in or fan_out
kaiming_normal (He)    N(0, s^2), ``s = gain / sqrt(fan)``
lecun_uniform          U(-b, b), ``b = sqrt(3 / fan_in)``  (variance 1/fan_in, SELU nets)
lecun_normal           N(0, 1/fan_in)
orthogonal             ``gain Q``, Q from the QR of a Gaussian matrix, signs fixed by diag(R)
small_random           N(0, scale^2), default scale 0.01 (symmetry breaking only)
=====================  ==============================================================

``seed`` is an int, a ``numpy.random.Generator`` or None; the same seed gives the same array.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = ["calculate_gain", "compute_fans", "xavier_uniform", "xavier_normal", "kaiming_uniform",
           "kaiming_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "orthogonal",
           "small_random"]

_UNIT_GAIN = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``: 1 for
    linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu
    (slope ``param``, default 0.01), 3/4 for selu."""
    if nonlinearity in _UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _shape(shape) -> Tuple[int, ...]:
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must be non-negative; got {shape}")
    return shape


def compute_fans(shape: Sequence[int]) -> Tuple[int, int]:
    """``(fan_in, fan_out)`` of a dense ``(out, in)`` or convolution ``(out, in, *kernel)`` weight."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"fans need a weight of at least 2 dimensions (out, in, ...); got shape {shape}")
    receptive = int(np.prod(shape[2:], dtype=np.int64))
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out'; got {mode!r}")
    fan_in, fan_out = compute_fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"cannot initialize a weight with {mode} = 0 (shape {tuple(shape)})")
    return fan


def _uniform(shape, bound: float, seed: Any, dtype) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-bound, bound, _shape(shape)).astype(dtype, copy=False)


def _normal(shape, std: float, seed: Any, dtype) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(_shape(shape)) * std).astype(dtype, copy=False)


def xavier_uniform(shape, gain: float = 1.0, seed: Any = None, dtype=np.float64) -> np.ndarray:
    fan_in, fan_out = compute_fans(shape)
    return _uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), seed, dtype)


def xavier_normal(shape, gain: float = 1.0, seed: Any = None, dtype=np.float64) -> np.ndarray:
    fan_in, fan_out = compute_fans(shape)
    return _normal(shape, gain * math.sqrt(2.0 / (fan_in + fan_out)), seed, dtype)


def kaiming_uniform(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    seed: Any = None, dtype=np.float64) -> np.ndarray:
    """He uniform; ``a`` is the leaky_relu slope (PyTorch's defaults: leaky_relu with a = 0,
    that is relu's gain sqrt(2))."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    return _uniform(shape, math.sqrt(3.0) * std, seed, dtype)


def kaiming_normal(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                   seed: Any = None, dtype=np.float64) -> np.ndarray:
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(shape, mode))
    return _normal(shape, std, seed, dtype)


he_uniform, he_normal = kaiming_uniform, kaiming_normal


def lecun_uniform(shape, seed: Any = None, dtype=np.float64) -> np.ndarray:
    return _uniform(shape, math.sqrt(3.0 / _fan(shape, "fan_in")), seed, dtype)


def lecun_normal(shape, seed: Any = None, dtype=np.float64) -> np.ndarray:
    return _normal(shape, 1.0 / math.sqrt(_fan(shape, "fan_in")), seed, dtype)


def orthogonal(shape, gain: float = 1.0, seed: Any = None, dtype=np.float64) -> np.ndarray:
    """A (semi-)orthogonal matrix on the weight flattened to ``(shape[0], prod(shape[1:]))``:
    orthonormal rows or columns, whichever are fewer, times ``gain`` (``torch.nn.init.orthogonal_``)."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs at least 2 dimensions; got shape {shape}")
    rows, cols = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    a = np.random.default_rng(seed).standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # makes Q uniformly distributed (Haar), as PyTorch does
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype, copy=False)


def small_random(shape, scale: float = 0.01, seed: Any = None, dtype=np.float64) -> np.ndarray:
    """N(0, scale^2): breaks symmetry without regard to fan; fine for shallow models."""
    return _normal(shape, scale, seed, dtype)
