"""Optimization-landscape and debugging toolkit, computed with fastloss kernels: models and
objectives with exact Hessian-vector products, gradient checks, loss-surface slices, Hessian
spectra, convergence analysis, a training monitor with gradient clipping, initializers, and a
loss-selection guide. Plots need the ``plot`` extra (matplotlib).

See docs/analysis.md for a tour.
"""

from . import init
from .convergence import (
    ADVICE, ConvergenceReport, Finding, StoppingRule, analyze_convergence, classify_convergence,
    convergence_order, detect_explosion, detect_oscillation, detect_plateau, fit_linear_rate,
)
from .curvature import (
    SaddleReport, Spectrum, TraceEstimate, condition_number, detect_saddle, hessian_eigenvalues,
    hutchinson_trace, lanczos,
)
from .gradcheck import GradCheck, check_grad
from .guide import Recommendation, loss_properties, recommend
from .models import (
    MLP, LinearModel, LinearRegression, LogisticRegression, Model, Objective, ParamSpec,
    SoftmaxRegression,
)
from .monitor import (
    TrainingMonitor, TrainingWarning, clip_grad_norm, clip_grad_value, global_norm, per_class_losses,
)
from .plot import plot_contour, plot_history, plot_line, plot_spectrum, plot_surface
from .surface import Slice1D, Slice2D, loss_line, loss_plane, random_direction

__all__ = [
    "init",
    "Model", "ParamSpec", "LinearModel", "LinearRegression", "LogisticRegression",
    "SoftmaxRegression", "MLP", "Objective",
    "GradCheck", "check_grad",
    "Slice1D", "Slice2D", "random_direction", "loss_line", "loss_plane",
    "Spectrum", "lanczos", "hessian_eigenvalues", "condition_number", "TraceEstimate",
    "hutchinson_trace", "SaddleReport", "detect_saddle",
    "ADVICE", "Finding", "ConvergenceReport", "fit_linear_rate", "convergence_order",
    "classify_convergence", "detect_plateau", "detect_oscillation", "detect_explosion",
    "analyze_convergence", "StoppingRule",
    "TrainingMonitor", "TrainingWarning", "global_norm", "clip_grad_norm", "clip_grad_value",
    "per_class_losses",
    "Recommendation", "recommend", "loss_properties",
    "plot_line", "plot_contour", "plot_surface", "plot_history", "plot_spectrum",
]
