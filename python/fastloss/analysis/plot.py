"""Plots of the analysis results (the ``plot`` extra: ``pip install fastloss[plot]``).

matplotlib is imported only when a plot is drawn. Every function takes ``ax=`` (an Axes to draw
into; a 3-D Axes for ``plot_surface``) and returns the Axes; without ``ax`` a new figure is made
through ``matplotlib.pyplot`` (any backend, Agg included, works).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["plot_line", "plot_contour", "plot_surface", "plot_history", "plot_spectrum"]


def _new_axes(ax, projection: Optional[str] = None):
    if ax is not None:
        return ax
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'fastloss[plot]'") from e
    return plt.figure().add_subplot(projection=projection)


def plot_line(slice1d, ax=None, **kwargs: Any):
    """A 1-D slice (``loss_line``): loss against the step along the direction."""
    ax = _new_axes(ax)
    ax.plot(slice1d.alphas, slice1d.values, **kwargs)
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("step along direction")
    ax.set_ylabel("loss")
    return ax


def plot_contour(slice2d, ax=None, levels: int = 15, log: bool = False, **kwargs: Any):
    """Contour lines of a 2-D slice (``loss_plane``), theta marked at the origin."""
    ax = _new_axes(ax)
    z = np.log10(slice2d.values) if log else slice2d.values
    cs = ax.contour(slice2d.alphas, slice2d.betas, z, levels=levels, **kwargs)
    ax.clabel(cs, cs.levels[::3], fontsize=7, fmt="%.3g")
    ax.plot([0], [0], "k+")
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    return ax


def plot_surface(slice2d, ax=None, **kwargs: Any):
    """The 2-D slice as a 3-D surface (``ax`` must be a 3-D Axes if given)."""
    ax = _new_axes(ax, projection="3d")
    a, b = np.meshgrid(slice2d.alphas, slice2d.betas)
    ax.plot_surface(a, b, slice2d.values, cmap=kwargs.pop("cmap", "viridis"), **kwargs)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel("loss")
    return ax


def _column(history, key):
    v = history.get(key) or []
    arr = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
    return arr if arr.size and not np.all(np.isnan(arr)) else None


def plot_history(history, ax=None, log: bool = True, per_class: bool = True):
    """Loss curves from a ``TrainingMonitor``, its ``history`` dict, or a sequence of losses:
    training loss, validation loss and per-class losses when recorded; findings marked."""
    ax = _new_axes(ax)
    findings = getattr(history, "findings", [])
    if hasattr(history, "history"):
        history = history.history
    if not isinstance(history, dict):
        history = {"loss": list(np.asarray(history, dtype=np.float64))}
    steps = history.get("step") or list(range(len(history["loss"])))
    ax.plot(steps, _column(history, "loss"), label="loss")
    val = _column(history, "val_loss")
    if val is not None:
        ok = ~np.isnan(val)
        ax.plot(np.asarray(steps)[ok], val[ok], label="validation loss")
    if per_class and history.get("per_class"):
        classes = sorted({c for row in history["per_class"] for c in row})
        for c in classes:
            ax.plot(steps, [row.get(c, np.nan) for row in history["per_class"]], lw=0.8, ls="--",
                    label=f"class {c}")
    for x in findings:
        ax.axvline(steps[min(x.step, len(steps) - 1)], color="C3", lw=0.8, alpha=0.6)
    if log and np.all(np.nan_to_num(_column(history, "loss"), nan=1.0) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return ax


def plot_spectrum(spectrum, ax=None, **kwargs: Any):
    """Hessian eigenvalues (a ``Spectrum`` or an array) in decreasing order, symmetric-log scale."""
    ax = _new_axes(ax)
    ev = np.asarray(getattr(spectrum, "eigenvalues", spectrum), dtype=np.float64)
    ax.plot(np.arange(1, len(ev) + 1), ev, "o", **kwargs)
    ax.set_yscale("symlog", linthresh=max(float(np.min(np.abs(ev[ev != 0]), initial=1.0)), 1e-300))
    ax.set_xlabel("eigenvalue, in decreasing order (top k, then bottom k)")
    ax.set_ylabel("Hessian eigenvalue")
    return ax
