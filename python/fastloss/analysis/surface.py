"""Loss-surface slices: the objective along a line or over a plane through ``theta``.

Random directions are normalized as in Li et al. 2018, "Visualizing the Loss Landscape of Neural
Nets": a Gaussian direction ``d`` is rescaled block by block so that its scale matches the
parameters', which makes slices of differently scaled networks comparable:

- ``"filter"``: each filter (one row of a weight, i.e. one output unit) gets
  ``d_f * ||theta_f|| / ||d_f||``; bias blocks are set to zero (the paper's choice);
- ``"layer"``: the same per parameter block;
- ``None``: the raw Gaussian direction scaled to ``||theta||`` (or unit norm at theta = 0).

Without a model layout (``objective.model.param_specs``) theta is one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["Slice1D", "Slice2D", "random_direction", "loss_line", "loss_plane"]


@dataclass
class Slice1D:
    """``values[i] = L(theta + alphas[i] direction)``."""

    alphas: np.ndarray
    values: np.ndarray
    direction: np.ndarray


@dataclass
class Slice2D:
    """``values[j, i] = L(theta + alphas[i] d1 + betas[j] d2)`` (rows follow ``betas``)."""

    alphas: np.ndarray
    betas: np.ndarray
    values: np.ndarray
    d1: np.ndarray
    d2: np.ndarray


def _blocks(objective, n: int):
    """(slice, shape, kind) of each parameter block."""
    specs = getattr(getattr(objective, "model", None), "param_specs", None)
    if not specs:
        return [(slice(0, n), (n,), "weight")]
    out, start = [], 0
    for s in specs:
        out.append((slice(start, start + s.size), s.shape, s.kind))
        start += s.size
    return out


def random_direction(objective, theta, normalization: Optional[str] = "filter",
                     seed: Any = None) -> np.ndarray:
    """A seeded Gaussian direction normalized as in the module docs."""
    if normalization not in ("filter", "layer", None):
        raise ValueError(f"normalization must be 'filter', 'layer' or None; got {normalization!r}")
    theta = np.asarray(theta, dtype=np.float64)
    d = np.random.default_rng(seed).standard_normal(theta.shape)
    if normalization is None:
        scale = np.linalg.norm(theta) or 1.0
        return d * (scale / np.linalg.norm(d))
    for sl, shape, kind in _blocks(objective, theta.size):
        if kind == "bias":
            d[sl] = 0.0
            continue
        db, tb = d[sl].reshape(shape), theta[sl].reshape(shape)
        if normalization == "filter" and len(shape) > 1:
            axes = tuple(range(1, len(shape)))
            tn = np.sqrt(np.sum(tb ** 2, axis=axes, keepdims=True))
            dn = np.sqrt(np.sum(db ** 2, axis=axes, keepdims=True))
        else:
            tn, dn = np.linalg.norm(tb), np.linalg.norm(db)
        d[sl] = (db * (tn / np.maximum(dn, np.finfo(np.float64).tiny))).ravel()
    return d


def _direction(objective, theta, direction, normalization, seed) -> np.ndarray:
    if direction is None:
        return random_direction(objective, theta, normalization, seed)
    direction = np.asarray(direction, dtype=np.float64)
    if direction.shape != np.shape(theta):
        raise ValueError(f"direction must have the shape of theta {np.shape(theta)}; got {direction.shape}")
    return direction


def loss_line(objective, theta, direction=None, alphas: Sequence[float] = np.linspace(-1, 1, 41),
              normalization: Optional[str] = "filter", seed: Any = 0) -> Slice1D:
    """The objective along ``theta + a d`` for each ``a`` in ``alphas`` (``d`` random if not given)."""
    theta = np.asarray(theta, dtype=np.float64)
    d = _direction(objective, theta, direction, normalization, seed)
    alphas = np.asarray(alphas, dtype=np.float64)
    values = np.array([objective.value(theta + a * d) for a in alphas])
    return Slice1D(alphas, values, d)


def loss_plane(objective, theta, directions=None, alphas: Sequence[float] = np.linspace(-1, 1, 21),
               betas: Optional[Sequence[float]] = None, normalization: Optional[str] = "filter",
               seed: Any = 0) -> Slice2D:
    """The objective over ``theta + a d1 + b d2`` (two random directions unless
    ``directions=(d1, d2)``; both drawn from one generator seeded with ``seed``)."""
    theta = np.asarray(theta, dtype=np.float64)
    if directions is None:
        rng = np.random.default_rng(seed)
        d1, d2 = (random_direction(objective, theta, normalization, rng) for _ in range(2))
    else:
        d1, d2 = (_direction(objective, theta, d, normalization, seed) for d in directions)
    alphas = np.asarray(alphas, dtype=np.float64)
    betas = alphas if betas is None else np.asarray(betas, dtype=np.float64)
    values = np.array([[objective.value(theta + a * d1 + b * d2) for a in alphas] for b in betas])
    return Slice2D(alphas, betas, values, d1, d2)
