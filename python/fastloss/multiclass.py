"""Multi-class losses on a class axis (the last one): softmax cross-entropy with sparse labels or
target distributions, on logits or probabilities, with class weights, ignore_index and label
smoothing, computed by one fused pass per row; and the softmax utilities.

Normalization of ``reduction="mean"`` follows PyTorch's ``cross_entropy``: with labels, the sum of
the losses divided by the summed weight of the rows that count (sample weight times the class
weight of the row's label; ignored rows count 0); with target distributions, divided by the
summed sample weights (the number of rows without weights). A mean over no counted row is NaN,
with a zero gradient.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence, Union

import numpy as np
from numpy.typing import NDArray

from . import _core
from ._base import FloatArray, Loss, param
from ._validate import between, choice, floats, integer, non_negative, optional, positive
from .classification import EPS, FROM_LOGITS, LABEL_SMOOTHING

__all__ = ["SparseCategoricalCrossEntropy", "CategoricalCrossEntropy", "SparseCategoricalFocal",
           "CategoricalFocal",
           "MultiClassHinge", "Distillation", "KLDivergence",
           "logsumexp", "softmax",
           "log_softmax", "smooth_labels", "class_weights"]


#: One weight per class: a sequence or array of K numbers >= 0, or None.
ClassWeights = Optional[Union[Sequence[float], NDArray[np.floating]]]
CLASS_WEIGHTS = optional(floats(non_negative, as_array=True))
CLASS_WEIGHT = param(default=None, check=CLASS_WEIGHTS,
                     doc="one weight per class (stored as a read-only array), or None")
IGNORE_INDEX = param(default=None, check=optional(integer(-2**63, 2**63)),  # labels are int64
                     doc="label whose rows are skipped")
# T^2 scales Distillation's soft term: it must stay finite.
TEMPERATURE = between(0.0, 1e150, closed="right")
SMOOTHING = param(default=0.0, check=LABEL_SMOOTHING, doc="mass spread uniformly over the K classes")


class _RowLoss(Loss[FloatArray]):
    """The Loss contract on (..., K) predictions with a class axis (the last): reductions over
    rows, ``sample_weight`` per row, per-row values for ``reduction="none"``; ``grad_out=y_pred``
    computes the gradient in place over the logits. Subclasses define ``_run``."""

    family = "classification"
    native_buffers = True

    @property
    def _row_id(self) -> int:
        # The C++ row kernel of this name (cpp/losses/registry.hpp, FASTLOSS_ROW_LOSSES).
        return _core.row_kernels[self.function_name]

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64",
                  num_classes: int = 10):
        """Labels (n,) of the largest of logits ``2 N(0, 1)``, and those logits plus ``N(0, 1)``
        noise (n, num_classes): softmax probabilities when the loss takes probabilities, one-hot
        targets when it takes target distributions."""
        z = 2.0 * rng.standard_normal((n, num_classes))
        labels = z.argmax(axis=1)
        z += rng.standard_normal(z.shape)
        from_logits = getattr(self, "from_logits", True)
        p = z if from_logits else np.exp(z - z.max(1, keepdims=True))
        if not from_logits:
            p /= p.sum(1, keepdims=True)
        y = np.eye(num_classes)[labels].astype(dtype) if getattr(self, "dense", False) else labels
        return y, p.astype(dtype), {}


class _SoftmaxCrossEntropy(_RowLoss):
    dense: ClassVar[bool] = False
    convex, robust, smooth = True, False, True

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        return _core.rowwise(
            self._row_id, self._row_params(), y_true, y_pred, sample_weight, None, self.class_weight,
            getattr(self, "ignore_index", None), reduction, want_grad, want_hess, out, grad_out,
            hess_out)

    def _row_params(self) -> list[float]:
        return [float(self.from_logits), self.eps, self.label_smoothing]


class SparseCategoricalCrossEntropy(_SoftmaxCrossEntropy):
    """Cross-entropy with integer class labels: ``y_true`` (...) and ``y_pred`` (..., K).

    On logits (``from_logits=True``), with ``p = softmax(z)``, class weights ``w`` and smoothing
    ``a``: ``l = (1-a) w_t (logsumexp(z) - z_t) + (a/K) sum_k w_k (logsumexp(z) - z_k)``, exactly
    PyTorch's ``cross_entropy(z, t, weight=w, ignore_index=..., label_smoothing=a)`` including its
    mean normalization. Gradient ``c p_k - (a/K) w_k - (1-a) w_t [k = t]`` with
    ``c = (1-a) w_t + a sum(w)/K``; Hessian diagonal ``c p_k (1 - p_k)``. One pass per row: the
    logits are read once from memory and the gradient written once. A +inf logit takes the
    probability (shared among +inf classes); a class at -inf that is not the target contributes
    nothing; rows whose label is ``ignore_index`` contribute nothing, whatever their logits.

    On probabilities: ``l = -sum_k w_k q_k log(max(p_k, eps))`` with the smoothed one-hot ``q``;
    rows are used as given (not renormalized).

    Labels must be integers in ``[0, K)`` (or ``ignore_index``): anything else is a ValueError
    naming the first bad row.

    Parameters
    ----------
    from_logits : bool, default False
    class_weight : sequence of K floats or None
    ignore_index : int or None, default None
    label_smoothing : float in [0, 1), default 0.0
    eps : float in (0, 0.5), default 1e-7
        Probability clamp (``from_logits=False`` only).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    >>> round(loss(np.array([0, 2]), np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])), 6)
    0.669079
    """

    function_name = "sparse_categorical_cross_entropy"
    from_logits: bool = FROM_LOGITS
    class_weight: ClassWeights = CLASS_WEIGHT
    ignore_index: Optional[int] = IGNORE_INDEX
    label_smoothing: float = SMOOTHING
    eps: float = EPS


class CategoricalCrossEntropy(_SoftmaxCrossEntropy):
    """Cross-entropy with target distributions: ``y_true`` and ``y_pred`` both (..., K).

    ``l = sum_k w_k q_k (logsumexp(z) - z_k)`` with ``q = (1-a) y + a/K``: PyTorch's
    ``cross_entropy`` with probability targets (its mean divides by the number of rows). Gradient
    ``(sum_j w_j q_j) p_k - w_k q_k``. On probabilities ``-sum_k w_k q_k log(max(p_k, eps))``.

    Parameters
    ----------
    from_logits : bool, default False
    class_weight : sequence of K floats or None
    label_smoothing : float in [0, 1), default 0.0
    eps : float in (0, 0.5), default 1e-7

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> loss = fl.CategoricalCrossEntropy(from_logits=True)
    >>> round(loss(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])), 6)
    0.693147
    """

    function_name = "categorical_cross_entropy"
    dense = True
    from_logits: bool = FROM_LOGITS
    class_weight: ClassWeights = CLASS_WEIGHT
    label_smoothing: float = SMOOTHING
    eps: float = EPS


GAMMA = param(default=2.0, check=non_negative, doc="focusing parameter")
ALPHA = param(default=None, check=CLASS_WEIGHTS, doc="one weight per class, or None")


class _SoftmaxFocal(_SoftmaxCrossEntropy):
    """The softmax focal losses: the cross-entropy's call on logits, alpha in the class weight
    slot, gamma their one kernel parameter."""

    convex = False
    from_logits, eps, label_smoothing = True, 1e-7, 0.0

    @property
    def class_weight(self):
        return self.alpha

    def _row_params(self) -> list[float]:
        return [self.gamma]


class SparseCategoricalFocal(_SoftmaxFocal):
    """Softmax focal loss (Lin et al. 2017) on logits (..., K) with integer labels (...):
    ``l = alpha_t (1 - p_t)^gamma (-log p_t)``, ``p = softmax(z)``.

    ``alpha`` is one weight per class (or None). ``gamma = 0`` with ``alpha=None`` is
    SparseCategoricalCrossEntropy exactly. The mean divides by the summed sample weights of the
    rows that count (``ignore_index`` rows do not); ``alpha`` does not normalize. Gradient
    ``c (p_k - [k = t])`` with ``c = alpha_t (1 - p_t)^gamma (gamma p_t (-log p_t) / (1 - p_t) + 1)``,
    and the exact Hessian diagonal; ``1 - p_t`` is summed from the other classes, so confident
    rows keep their accuracy and every derivative stays finite.

    Parameters
    ----------
    gamma : float >= 0, default 2.0
    alpha : sequence of K floats or None
    ignore_index : int or None, default None

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.SparseCategoricalFocal(gamma=2.0)(np.array([0]), np.array([[0.0, 0.0]])), 6)
    0.173287
    """

    function_name = "sparse_categorical_focal"
    gamma: float = GAMMA
    alpha: ClassWeights = ALPHA
    ignore_index: Optional[int] = IGNORE_INDEX


class CategoricalFocal(_SoftmaxFocal):
    """Softmax focal loss with target distributions (Keras' ``CategoricalFocalCrossentropy`` on
    logits): ``l = -sum_k alpha_k y_k (1 - p_k)^gamma log p_k``, ``p = softmax(z)``; ``y_true``
    and ``y_pred`` both (..., K).

    ``gamma = 0`` with ``alpha=None`` is CategoricalCrossEntropy. The mean divides by the summed
    sample weights (the number of rows). Gradient ``p_j C - c_j`` with
    ``c_k = alpha_k y_k (1 - p_k)^gamma (gamma p_k (-log p_k) / (1 - p_k) + 1)`` and
    ``C = sum_k c_k``; the exact Hessian diagonal stays finite for saturated rows.

    Parameters
    ----------
    gamma : float >= 0, default 2.0
    alpha : sequence of K floats or None

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.CategoricalFocal(gamma=2.0)(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])), 6)
    0.173287
    """

    function_name = "categorical_focal"
    dense = True
    gamma: float = GAMMA
    alpha: ClassWeights = ALPHA


class MultiClassHinge(_RowLoss):
    """Multi-class hinge on scores ``y_pred`` (..., K) with integer labels (...), in PyTorch's
    ``multi_margin_loss`` semantics.

    With ``u_k = margin - z_t + z_k`` and the class weight ``w_t`` of the label:

    - ``form="weston_watkins"`` (PyTorch): ``l = w_t / K * sum_{k != t} max(0, u_k)^p``
    - ``form="crammer_singer"``: ``l = w_t * max(0, u_{k*})^p``, ``k* = argmax_{k != t} z_k``
      (the first on ties)

    The mean divides by the number of rows (the summed sample weights), as PyTorch does. The
    gradient is ``w p u^(p-1)`` (divided by K for Weston-Watkins) on each active class and minus
    their sum on the label; the Hessian diagonal is the exact a.e. value (0 for ``p = 1``).

    Parameters
    ----------
    form : "weston_watkins" or "crammer_singer", default "weston_watkins"
    p : 1 or 2, default 1
    margin : float >= 0, default 1.0
    class_weight : sequence of K floats or None

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.MultiClassHinge()(np.array([0]), np.array([[1.0, 0.5, -1.0]])), 6)
    0.166667
    >>> fl.MultiClassHinge(form="crammer_singer")(np.array([0]), np.array([[1.0, 0.5, -1.0]]))
    0.5
    """

    function_name = "multi_class_hinge"
    form: str = param(default="weston_watkins", check=choice("weston_watkins", "crammer_singer"),
                      doc="weston_watkins or crammer_singer")
    p: int = param(default=1, check=choice(1, 2), doc="power of the hinge, 1 or 2")
    margin: float = param(default=1.0, check=non_negative, doc="required score gap")
    class_weight: ClassWeights = CLASS_WEIGHT
    convex, robust, smooth, hessian = True, False, False, "a.e."

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y_true, y_pred = args
        return _core.rowwise(
            self._row_id, [float(self.form == "crammer_singer"), self.p, self.margin], y_true, y_pred,
            sample_weight, None, self.class_weight, None, reduction, want_grad, want_hess, out,
            grad_out, hess_out)


class _TemperedSoftmaxKL(_RowLoss):
    """The distillation kernel: ``alpha`` CE on labels plus ``(1 - alpha) kl_scale`` KL between
    the tempered softmaxes of the teacher and the student; the mean is over rows."""

    inputs = ("teacher_logits",)
    convex, robust, smooth = True, False, True

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64",
                  num_classes: int = 10):
        """CLI data: labels from teacher logits, student logits = teacher's + noise."""
        teacher = 2.0 * rng.standard_normal((n, num_classes))
        student = (teacher + rng.standard_normal(teacher.shape)).astype(dtype)
        labels = teacher.argmax(axis=1)
        if self.inputs:
            return labels, student, {"teacher_logits": teacher.astype(dtype)}
        return teacher.astype(dtype), student, {}

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             teacher_logits=None):
        y_true, y_pred = args
        if not self.inputs:  # the tempered KL: y_true holds the target logits
            if np.shape(y_true) != np.shape(y_pred):
                raise ValueError(f"y_true (target logits) and y_pred must have the same shape; got "
                                 f"y_true {np.shape(y_true)} and y_pred {np.shape(y_pred)}")
            y_true, teacher_logits = None, y_true
        return _core.rowwise(
            _core.row_kernels["distillation"], [self.alpha, self.temperature, self._kl_scale], y_true,
            y_pred, sample_weight, teacher_logits, None, None, reduction, want_grad, want_hess, out,
            grad_out, hess_out)


class Distillation(_TemperedSoftmaxKL):
    """Teacher-student distillation (Hinton et al. 2015) from logits, in one fused pass per row:
    ``l = alpha CE(y, z) + (1 - alpha) T^2 KL(softmax(t/T) || softmax(z/T))``.

    ``y_true`` are the hard labels (...), ``y_pred`` the student logits ``z`` (..., K) and
    ``teacher_logits`` ``t`` (keyword, same shape as ``y_pred``). ``T^2`` keeps the soft term's
    gradient on the scale of the hard one. The mean is over rows, weighted by ``sample_weight``
    (for (n, K) logits, PyTorch's ``kl_div(..., reduction="batchmean")``). The gradient with respect
    to the student logits is ``alpha (softmax(z) - onehot(y)) + (1 - alpha) T (softmax(z/T) -
    softmax(t/T))``; the Hessian diagonal is ``alpha p (1 - p) + (1 - alpha) q (1 - q)`` with
    ``p = softmax(z)``, ``q = softmax(z/T)``. Both logit rows are read once from memory; +inf and
    -inf logits take the softmax limits (a teacher class at -inf contributes nothing).

    Parameters
    ----------
    alpha : float in [0, 1], default 0.5
        Weight of the hard-label cross-entropy.
    temperature : float > 0, default 2.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> z, t = np.array([[2.0, 0.0, -1.0]]), np.array([[1.0, 1.0, -2.0]])
    >>> round(fl.Distillation(alpha=0.5, temperature=2.0)(np.array([0]), z, teacher_logits=t), 6)
    0.315461
    """

    function_name = "distillation"
    alpha: float = param(default=0.5, check=between(0, 1),
                         doc="weight of the hard-label cross-entropy")
    temperature: float = param(default=2.0, check=TEMPERATURE, doc="softmax temperature T > 0")

    @property
    def _kl_scale(self) -> float:
        return self.temperature ** 2


class KLDivergence(_TemperedSoftmaxKL):
    """KL divergence between tempered softmaxes, from logits:
    ``l = KL(softmax(t/T) || softmax(z/T)) = sum_k p_k (log p_k - log q_k)``.

    ``y_true`` are the target logits ``t`` (..., K) (a teacher's, or a second view's for
    consistency training), ``y_pred`` the logits ``z`` of the same shape. The mean is over rows:
    for (n, K) logits it equals PyTorch's ``kl_div(log_softmax(z/T), log_softmax(t/T),
    log_target=True, reduction="batchmean")``. PyTorch's ``"batchmean"`` divides the sum by the
    size of the first axis, so for other shapes the two differ: a single row (K,) is one sample
    here, while PyTorch divides its sum by K; (n, m, K) is a mean over n*m rows here, over n
    there. ``reduction="sum"`` agrees with PyTorch's ``"sum"`` for every shape. Gradient ``(softmax(z/T) - softmax(t/T)) / T``, Hessian diagonal
    ``q (1 - q) / T^2``; no ``T^2`` factor (that is Distillation's convention).

    Parameters
    ----------
    temperature : float > 0, default 1.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.KLDivergence()(np.array([[0.0, 0.0]]), np.array([[1.0, -1.0]])), 6)
    0.433781
    """

    function_name = "kl_divergence"
    dense = True  # y_true is a row of K values (target logits), like a target distribution
    temperature: float = param(default=1.0, check=TEMPERATURE, doc="softmax temperature T > 0")
    inputs = ()
    alpha, _kl_scale = 0.0, 1.0


sparse_categorical_cross_entropy = SparseCategoricalCrossEntropy.functional
sparse_categorical_focal = SparseCategoricalFocal.functional
categorical_focal = CategoricalFocal.functional
multi_class_hinge = MultiClassHinge.functional
categorical_cross_entropy = CategoricalCrossEntropy.functional
distillation = Distillation.functional
kl_divergence = KLDivergence.functional


def _rows(x, axis: int):
    axis = integer()("axis", axis)
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis")
    return np.moveaxis(x, axis, -1) if axis not in (-1, x.ndim - 1) else x


def logsumexp(x, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(x)))`` along ``axis``, stable (max shift); +inf if any element is +inf."""
    return _core.softmax(_rows(x, axis), _core.softmax_modes["logsumexp"])


def softmax(x, axis: int = -1) -> np.ndarray:
    """Stable softmax along ``axis`` (+inf entries share the probability)."""
    return np.moveaxis(_core.softmax(_rows(x, axis), _core.softmax_modes["softmax"]), -1, axis)


def log_softmax(x, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``."""
    return np.moveaxis(_core.softmax(_rows(x, axis), _core.softmax_modes["log_softmax"]), -1, axis)


def smooth_labels(y, alpha: float, num_classes: Optional[int] = None) -> np.ndarray:
    """``(1 - alpha) y + alpha / K`` for one-hot/probability rows ``y`` (..., K), or for integer
    labels (one-hot encoded first; ``num_classes`` defaults to ``max + 1``)."""
    alpha = LABEL_SMOOTHING("alpha", alpha)
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        k = int(y.max()) + 1 if num_classes is None else int(num_classes)
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"labels must lie in [0, {k})")
        y = np.eye(k)[y]
    y = y.astype(np.result_type(y.dtype, np.float32), copy=False)
    return (1 - alpha) * y + alpha / y.shape[-1]


def class_weights(labels, scheme: str = "inverse", *, beta: float = 0.999,
                  num_classes: Optional[int] = None) -> np.ndarray:
    """Per-class weights from integer labels, normalized so that the mean weight over the
    samples is 1: ``sum_k n_k w_k = n`` (``n_k`` samples of class k, ``n`` in all).

    ``"inverse"``: 1/n_k; ``"inverse_sqrt"``: 1/sqrt(n_k); ``"effective"``: (1 - beta) /
    (1 - beta^n_k) (the effective number of samples of Cui et al. 2019, ``beta`` in [0, 1)).
    Classes absent from ``labels`` get weight 0. With ``"inverse"`` the weights are
    ``n / (C n_k)`` (C classes present): scikit-learn's ``compute_class_weight("balanced")``.
    """
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers; got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError("labels must be non-negative")
    k = (int(y.max()) + 1 if y.size else 0) if num_classes is None else int(num_classes)
    counts = np.bincount(y.ravel(), minlength=k).astype(np.float64)
    if counts.size > k:
        raise ValueError(f"labels must lie in [0, {k})")
    present = counts > 0
    w = np.zeros(k)
    if scheme == "inverse":
        w[present] = 1.0 / counts[present]
    elif scheme == "inverse_sqrt":
        w[present] = 1.0 / np.sqrt(counts[present])
    elif scheme == "effective":
        beta = between(0, 1, "left")("beta", beta)
        w[present] = (1.0 - beta) / (1.0 - beta ** counts[present])
    else:
        raise ValueError(f"scheme must be 'inverse', 'inverse_sqrt' or 'effective'; got {scheme!r}")
    if present.any():
        w *= y.size / float(np.dot(counts, w))
    return w
