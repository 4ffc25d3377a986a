"""Learning-to-rank losses and metrics over query groups.

Documents are a flat vector of scores ``y_pred`` (n,) with relevance labels ``y_true`` (n,);
scores are compared within a query group only. Groups are given either as

- ``group=``: the group sizes, in order (LightGBM's ``group``; ``sum(group) == n``), or
- ``qid=``: one query id per document, sorted so that each query is one contiguous run
  (XGBoost's ``qid``);

with neither, all documents form one group. ``sample_weight`` holds one weight per group
(XGBoost's convention for ranking); ``reduction="mean"`` is the weighted mean of the per-group
losses and ``reduction="none"`` returns one value per group. The boosting adapters translate
LightGBM's per-document weights (see :mod:`fastloss.lightgbm`).

The group losses (RankNet, LambdaRank, ListNet, ListMLE) run in C++, in parallel over groups,
with results that do not depend on the thread count. See docs/ranking.md for the formulas.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from ._base import FloatArray, KernelResult, Loss, param
from ._validate import boolean, choice, integer, non_negative, optional, positive, real_array

__all__ = ["RankNet", "LambdaRank", "ListNet", "ListMLE", "MarginRanking",
           "rank_net", "lambda_rank", "list_net", "list_mle", "margin_ranking",
           "group_offsets", "ndcg", "mean_average_precision", "mrr"]

MAX_LABEL = 1024  # LambdaRank's labels: 2^y - 1 is finite in float64 below it

SIGMA = param(default=1.0, check=positive, doc="scale of the score differences in the sigmoid")


def _integers(value: Any, name: str) -> np.ndarray:
    """A 1-D array of integers (floats only when integral: boosters store them as floats)."""
    a = value if isinstance(value, np.ndarray) else np.asarray(value)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integers")
    elif a.dtype.kind not in "iub":
        raise TypeError(f"{name} must be an integer array; got dtype {a.dtype}")
    return a


def group_offsets(n: int, group: Optional[ArrayLike] = None,
                  qid: Optional[ArrayLike] = None) -> np.ndarray:
    """The boundaries (``len(groups) + 1`` int64 offsets from 0 to ``n``) of the query groups
    given by their sizes (``group``) or by sorted query ids (``qid``); one group without either.
    ValueError naming the argument for sizes that are negative or do not sum to ``n``, and for
    query ids of another length or not sorted."""
    if group is not None and qid is not None:
        raise ValueError("give group (group sizes) or qid (query ids), not both")
    if group is not None:
        sizes = _integers(group, "group")
        if sizes.size and sizes.min() < 0:
            i = int(np.flatnonzero(sizes < 0)[0])
            raise ValueError(f"group sizes must be non-negative; group[{i}] = {sizes[i]}")
        offsets = np.zeros(sizes.size + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        if offsets[-1] != n:
            raise ValueError(f"group sizes must sum to the number of documents ({n}); "
                             f"they sum to {int(offsets[-1])}")
        return offsets
    if qid is not None:
        q = _integers(qid, "qid")
        if q.shape != (n,):
            raise ValueError(f"qid must hold one query id per document, shape ({n},); got {q.shape}")
        step = np.diff(q)
        if np.any(step < 0):
            i = int(np.flatnonzero(step < 0)[0]) + 1
            raise ValueError(f"qid must be sorted (each query one contiguous run); qid[{i}] = "
                             f"{q[i]} follows {q[i - 1]}")
        return np.concatenate(([0], np.flatnonzero(step) + 1, [n] if n else [])).astype(np.int64)
    return np.array([0, n], np.int64)


def _documents(y_pred: Any) -> int:
    a = y_pred if isinstance(y_pred, np.ndarray) else np.asarray(y_pred)
    if a.ndim != 1:
        raise ValueError(f"y_pred must be 1-D (one score per document); got shape {a.shape}")
    return a.shape[0]


class PreparedGroups(NamedTuple):
    """A booster's labels and query groups as the kernels take them (see
    :meth:`_RankingLoss.prepare_groups`)."""

    labels: np.ndarray  # contiguous, in the scores' dtype, checked
    offsets: np.ndarray
    group_data: Optional[np.ndarray]  # per-group constants (LambdaRank: 1 / maxDCG@k), or None


class _RankingLoss(Loss[FloatArray]):
    """A loss over query groups (the C++ kernels of cpp/losses/ranking.hpp): per-group values,
    one sample weight per group, derivatives per document."""

    family = "ranking"
    native_buffers = True
    optional_inputs = ("group", "qid")

    def _kernel_params(self) -> list:
        return [float(getattr(self, p.name)) for p in self.params]

    def __post_init__(self) -> None:
        self._id = _core.ranking_kernels[self.function_name]
        self._packed = self._kernel_params()

    def _check_labels(self, y_true: Any) -> None:
        """Checks of the labels beyond finiteness (which the kernel binding checks)."""

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out,
             group=None, qid=None):
        y_true, y_pred = args
        self._check_labels(y_true)
        offsets = group_offsets(_documents(y_pred), group, qid)
        return _core.groupwise(self._id, self._packed, y_true, y_pred, offsets, sample_weight,
                               reduction, want_grad, want_hess, out, grad_out, hess_out)

    def _group_data(self, labels: np.ndarray, offsets: np.ndarray) -> Optional[np.ndarray]:
        """Per-group constants of the labels that the kernel can take precomputed (None: none)."""
        return None

    def prepare_groups(self, y_true: Any, offsets: np.ndarray, dtype: Any) -> "PreparedGroups":
        """The labels converted to ``dtype`` (the scores') and checked, and what the kernel derives
        from them alone, computed once for a booster's rounds (its labels and groups do not
        change): pass the result to :meth:`boosting_grad_hess` as ``prepared``."""
        self._check_labels(y_true)
        labels = np.ascontiguousarray(real_array(y_true, "y_true"), dtype=dtype)
        return PreparedGroups(labels, offsets, self._group_data(labels, offsets))

    def boosting_grad_hess(self, y_true: np.ndarray, y_pred: np.ndarray,
                           sample_weight: Optional[np.ndarray], offsets: np.ndarray,
                           prepared: Optional["PreparedGroups"] = None) -> Tuple[np.ndarray, np.ndarray]:
        """``(grad, hess)`` of the weighted sum over the groups bounded by ``offsets`` (from
        :func:`group_offsets`), without the value: what a booster reads at every round.
        ``prepared`` (from :meth:`prepare_groups` on these labels and offsets) skips the label
        checks and conversion and the per-group constants."""
        group_data = None
        if prepared is None:
            self._check_labels(y_true)
        else:
            y_true, offsets, group_data = prepared
        result = _core.groupwise(self._id, self._packed, y_true, y_pred, offsets, sample_weight,
                                 "sum", True, True, None, None, None, want_value=False,
                                 group_data=group_data)
        return result[3], result[4]

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Query groups of 1 to 20 documents with graded relevance 0..4 (at least two grades in
        every group of two or more), and scores ``relevance + N(0, 1)``."""
        sizes = rng.integers(1, 21, n // 1 + 1)
        sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
        sizes[-1] -= int(sizes.sum()) - n
        sizes = sizes[sizes > 0]
        y = rng.integers(0, 5, n).astype(np.float64)
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        for s, m in zip(starts, sizes):
            if m > 1 and np.all(y[s:s + m] == y[s]):
                y[s] = (y[s] + 1) % 5
        p = y + rng.standard_normal(n)
        return y.astype(dtype), p.astype(dtype), {"group": sizes.astype(np.int64)}


class RankNet(_RankingLoss):
    """RankNet (Burges et al. 2005): pairwise logistic loss over every pair of documents of a
    group with different labels, as XGBoost's ``rank:pairwise``.

    For a group with scores ``s`` and labels ``y``, over its ``P`` pairs ``y_i > y_j``:
    ``l = (1/P) sum log(1 + exp(-sigma (s_i - s_j)))`` (the mean over the group's pairs, so every
    group counts alike; a group without such a pair has the value 0 and still counts in the mean
    over groups). Gradient ``-(sigma/P) sum_j sigmoid(-sigma (s_i - s_j))`` for the higher
    document of each pair and its negative for the lower one; exact Hessian diagonal
    ``(sigma^2/P) sum p (1 - p)``. O(m log m + P) per group of m documents.

    Parameters
    ----------
    sigma : float > 0, default 1.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.RankNet()(np.array([1.0, 0.0]), np.array([0.0, 0.0])), 6)
    0.693147
    """

    function_name = "rank_net"
    convex, robust, smooth = True, False, True
    sigma: float = SIGMA


class LambdaRank(_RankingLoss):
    """LambdaRank / LambdaMART with NDCG (Burges 2010), exactly LightGBM's ``lambdarank``
    objective: the gradients (lambdas) and Hessians of LightGBM, and as the value the
    lambda-weighted pairwise surrogate.

    Documents of a group are sorted by score (ties by position). Each pair ``(i, j)`` with
    ``y_i > y_j`` where the better-ranked of the two is within the first ``k`` positions has the
    weight ``D_ij = |2^y_i - 2^y_j| |1/log2(2 + r_i) - 1/log2(2 + r_j)| / maxDCG@k`` (``r`` the
    0-based ranks: the change of NDCG@k when the two swap, with the discount not truncated, as
    LightGBM computes it). The value is ``sum D_ij log(1 + exp(-sigma (s_i - s_j)))``, gradient
    ``-sigma D_ij sigmoid(-sigma (s_i - s_j))`` for ``i`` (the negative for ``j``), Hessian
    ``sigma^2 D_ij p (1 - p)`` for both. With ``norm=True`` (LightGBM's ``lambdarank_norm``,
    default) ``D_ij`` is further divided by ``0.01 + |s_i - s_j|`` (unless all scores of the group
    are equal) and the group's terms are scaled by ``log2(1 + L) / L``, ``L`` the sum of
    ``2 |lambda|`` over its pairs; these factors are taken at the current scores, so the gradient
    is LightGBM's and not the derivative of the value. With ``norm=False`` the gradient and
    Hessian are the exact derivatives of the value (away from tied scores, where the ranks
    change). Documents scored ``-inf`` are skipped (LightGBM's ``kMinScore``). LightGBM computes
    the sigmoid from a lookup table (relative error about 1e-5); fastloss computes it exactly.
    Gain ``2^y - 1``: labels must be non-negative and below 1024, where the gain overflows
    float64 (LightGBM requires integers below 31, its ``label_gain`` table).

    Parameters
    ----------
    k : int >= 1 or None, default None
        Truncation level: pairs need one document within the first ``k`` positions, and the
        NDCG is normalized by the ideal DCG@k (LightGBM's ``lambdarank_truncation_level``, whose
        default is 30); None: the whole group.
    sigma : float > 0, default 1.0
        LightGBM's ``sigmoid``.
    norm : bool, default True
        LightGBM's ``lambdarank_norm``.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> g = fl.LambdaRank().grad_hess(np.array([0.0, 1.0]), np.array([0.0, 0.0]), reduction="sum")[0]
    >>> [round(float(v), 6) for v in g]
    [0.226598, -0.226598]
    """

    function_name = "lambda_rank"
    convex, robust, smooth = False, False, False
    # norm=False: the gradient and Hessian are the value's derivatives (what finite differences see)
    exact_gradient_params: ClassVar[dict] = {"norm": False}
    k: Optional[int] = param(default=None, check=optional(integer(1)),
                             doc="truncation level (None: the whole group)")
    sigma: float = SIGMA
    norm: bool = param(default=True, check=boolean,
                       doc="LightGBM's lambdarank_norm: score-distance and per-group scaling")

    def _kernel_params(self) -> list:
        return [float(self.k or 0), self.sigma, float(self.norm)]

    def _check_labels(self, y_true: Any) -> None:
        y = y_true if isinstance(y_true, np.ndarray) else np.asarray(y_true)
        if y.dtype.kind not in "biuf" or not y.size:
            return
        if np.min(y) < 0:
            raise ValueError("y_true (relevance labels) must be non-negative for the gain 2^y - 1")
        if np.max(y) >= MAX_LABEL:  # NaN compares False: the kernel reports it
            i = int(np.flatnonzero(y.reshape(-1) >= MAX_LABEL)[0])
            raise ValueError(f"y_true (relevance labels) must be below {MAX_LABEL}: the gain 2^y - 1 "
                             f"overflows float64 from there; y_true[{i}] = {y.reshape(-1)[i]}")

    def _group_data(self, labels: np.ndarray, offsets: np.ndarray) -> Optional[np.ndarray]:
        return _core.lambda_rank_inverse_max_dcg(float(self.k or 0), labels, offsets)


class ListNet(_RankingLoss):
    """ListNet (Cao et al. 2007) with top-one probabilities: the cross-entropy between the
    softmax of the labels and the softmax of the scores of a group,
    ``l = -sum_i softmax(y)_i log softmax(s)_i``. Gradient ``softmax(s) - softmax(y)``, Hessian
    diagonal ``p (1 - p)`` with ``p = softmax(s)``. A group of one document has the value 0.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.ListNet()(np.array([1.0, 0.0]), np.array([0.0, 0.0])), 6)
    0.693147
    """

    function_name = "list_net"
    convex, robust, smooth = True, False, True


class ListMLE(_RankingLoss):
    """ListMLE (Xia et al. 2008): the negative Plackett-Luce log-likelihood of the ranking by
    decreasing label, ties broken by position (the earlier document first):
    ``l = sum_a (logsumexp(s_pi(a), ..., s_pi(m-1)) - s_pi(a))``. Gradient
    ``sum_{a <= b} p_ab - 1`` and Hessian diagonal ``sum_{a <= b} p_ab (1 - p_ab)`` for the
    document at position ``b`` of the order, ``p_ab = exp(s_pi(b) - logsumexp(s_pi(a..)))``; the
    sums are kept in the log domain.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.ListMLE()(np.array([1.0, 0.0]), np.array([0.0, 0.0])), 6)
    0.693147
    """

    function_name = "list_mle"
    convex, robust, smooth = True, False, True


class MarginRanking(Loss[Tuple[FloatArray, FloatArray]]):
    """Margin ranking loss on explicit pairs: ``l = max(0, -y (x1 - x2) + margin)``, exactly
    PyTorch's ``margin_ranking_loss(x1, x2, y, margin)`` (``y = 1``: ``x1`` should rank higher,
    ``y = -1``: ``x2``).

    Inputs ``(y_true, x1, x2)`` of one shape; gradients ``(d x1, d x2)`` (``d x2 = -d x1``); the
    Hessian diagonal is 0 (exact almost everywhere; the kink takes derivative 0).

    Parameters
    ----------
    margin : float >= 0, default 0.0

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.MarginRanking(margin=1.0)(np.array([1, -1]), np.array([2.0, 0.5]), np.array([1.5, 0.0]))
    1.0
    """

    function_name = "margin_ranking"
    family = "ranking"
    arguments = ("y_true", "x1", "x2")
    grads = ("x1", "x2")
    convex, robust, smooth = True, True, False
    hessian = "a.e."
    margin: float = param(default=0.0, check=non_negative, doc="required score gap")

    def __post_init__(self) -> None:
        self._packed = [float(self.margin)]

    def _run(self, args, sample_weight, reduction, want_grad, want_hess, out, grad_out, hess_out):
        y, x1, x2 = args
        x1, x2 = real_array(x1, "x1"), real_array(x2, "x2")
        total, norm, values, g1, _ = _core.margin_ranking(
            self._packed, real_array(y, "y_true"), x1, x2, sample_weight, reduction, want_grad)
        if not want_grad:
            return KernelResult(total, norm, values, None, None)
        g2 = np.negative(g1, dtype=x2.dtype)  # d l / d x2 = -d l / d x1, in x2's dtype
        grads = (g1.astype(x1.dtype, copy=False), g2)
        hess = (np.zeros_like(grads[0]), np.zeros_like(grads[1])) if want_hess else None
        return KernelResult(total, norm, values, grads, hess)

    def synthetic(self, n: int, rng: np.random.Generator, dtype: str = "float64"):
        """Pairs of scores ``N(0, 1)`` and the sign of their difference, flipped for about 20 %
        of the pairs (always for the first, so that some pair is misordered)."""
        x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
        flip = rng.random(n) < 0.2
        flip[:1] = True
        y = np.where(x1 > x2, 1.0, -1.0) * np.where(flip, -1.0, 1.0)
        return y.astype(dtype), x1.astype(dtype), {"x2": x2.astype(dtype)}


rank_net, lambda_rank, list_net, list_mle, margin_ranking = (
    RankNet.functional, LambdaRank.functional, ListNet.functional, ListMLE.functional,
    MarginRanking.functional)


# --------------------------------------------------------------------------------------------------
# Metrics (higher is better), the mean over groups
# --------------------------------------------------------------------------------------------------


def _ranked(y_true: ArrayLike, y_pred: ArrayLike, group: Any, qid: Any):
    """(labels in rank order, 0-based ranks, group ids, offsets): the documents of each group
    sorted by decreasing score, ties by position (LightGBM's order), NaN scores last."""
    s = np.asarray(real_array(y_pred, "y_pred"), np.float64)
    n = _documents(s)
    y = np.asarray(real_array(y_true, "y_true"), np.float64)
    if y.shape != s.shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got y_true {y.shape} and "
                         f"y_pred {s.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_true must hold finite relevance labels")
    offsets = group_offsets(n, group, qid)
    gid = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    order = np.lexsort((np.arange(n), np.where(np.isnan(s), np.inf, -s), gid))
    return y[order], np.arange(n) - offsets[gid], gid, offsets


def _group_mean(per_group: np.ndarray, sample_weight: Any) -> float:
    if per_group.size == 0:
        return float("nan")
    if sample_weight is None:
        return float(np.mean(per_group))
    w = np.asarray(real_array(sample_weight, "sample_weight"), np.float64)
    if w.shape != per_group.shape:
        raise ValueError(f"sample_weight must have one weight per group, shape {per_group.shape}; "
                         f"got {w.shape}")
    return float(np.average(per_group, weights=w))


def _per_group(values: np.ndarray, gid: np.ndarray, groups: int) -> np.ndarray:
    return np.bincount(gid, weights=values, minlength=groups)


def ndcg(y_true: ArrayLike, y_pred: ArrayLike, *, group: Optional[ArrayLike] = None,
         qid: Optional[ArrayLike] = None, k: Optional[int] = None, gain: str = "exponential",
         sample_weight: Optional[ArrayLike] = None) -> float:
    """Normalized discounted cumulative gain (Järvelin & Kekäläinen 2002), the mean over groups
    of ``DCG@k / IDCG@k`` with ``DCG@k = sum_{r < k} gain(y_(r)) / log2(2 + r)`` over the
    documents sorted by decreasing score (ties by position, as LightGBM; scikit-learn's
    ``ndcg_score`` averages over tied scores instead).

    ``gain="exponential"``: ``2^y - 1`` (LightGBM, XGBoost); ``"linear"``: ``y`` (scikit-learn's
    ``ndcg_score``, which this equals per group). A group whose ideal DCG is 0 (no relevant
    document) scores 1, as in LightGBM and XGBoost (scikit-learn scores it 0). ``k=None``: the
    whole group. ``sample_weight``: one weight per group.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.ndcg(np.array([3, 2, 0, 1]), np.array([0.9, 0.1, 0.5, 0.2]), group=[4]), 6)
    0.93604
    """
    if k is not None:
        integer(1)("k", k)
    choice("exponential", "linear")("gain", gain)
    y_sorted, rank, gid, offsets = _ranked(y_true, y_pred, group, qid)
    groups = offsets.size - 1
    y_flat = np.asarray(real_array(y_true, "y_true"), np.float64)
    ideal = y_flat[np.lexsort((-y_flat, gid))]  # labels decreasing within each group
    g, gi = y_sorted, ideal
    if gain == "exponential":
        g, gi = np.exp2(y_sorted) - 1.0, np.exp2(ideal) - 1.0
    disc = 1.0 / np.log2(2.0 + rank)
    if k is not None:
        disc = np.where(rank < k, disc, 0.0)
    dcg, idcg = _per_group(g * disc, gid, groups), _per_group(gi * disc, gid, groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 1.0)
    return _group_mean(per, sample_weight)


def mean_average_precision(y_true: ArrayLike, y_pred: ArrayLike, *,
                           group: Optional[ArrayLike] = None, qid: Optional[ArrayLike] = None,
                           k: Optional[int] = None,
                           sample_weight: Optional[ArrayLike] = None) -> float:
    """Mean average precision: the mean over groups of
    ``AP@k = sum_{r < k, relevant} precision@(r+1) / min(R, k)`` with ``R`` the group's number
    of relevant documents (label > 0), documents sorted by decreasing score (ties by position),
    as LightGBM's ``map``. A group without a relevant document scores 1 (LightGBM, XGBoost).

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> round(fl.mean_average_precision(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1])), 6)
    0.833333
    """
    if k is not None:
        integer(1)("k", k)
    y_sorted, rank, gid, offsets = _ranked(y_true, y_pred, group, qid)
    groups = offsets.size - 1
    rel = (y_sorted > 0).astype(np.float64)
    hits = np.cumsum(rel)
    hits -= np.repeat(np.concatenate(([0.0], hits))[offsets[:-1]], np.diff(offsets))
    keep = rel if k is None else rel * (rank < k)
    prec = _per_group(keep * hits / (rank + 1.0), gid, groups)
    R = _per_group(rel, gid, groups)
    denom = R if k is None else np.minimum(R, k)
    per = np.where(R > 0, prec / np.where(R > 0, denom, 1.0), 1.0)
    return _group_mean(per, sample_weight)


def mrr(y_true: ArrayLike, y_pred: ArrayLike, *, group: Optional[ArrayLike] = None,
        qid: Optional[ArrayLike] = None, sample_weight: Optional[ArrayLike] = None) -> float:
    """Mean reciprocal rank: the mean over groups of ``1 / (r + 1)``, ``r`` the 0-based rank of
    the best-scored relevant document (label > 0; ties by position). A group without a relevant
    document scores 0.

    Examples
    --------
    >>> import numpy as np, fastloss as fl
    >>> fl.mrr(np.array([0, 1, 0, 0, 1]), np.array([0.9, 0.8, 0.1, 0.5, 0.7]), group=[3, 2])
    0.75
    """
    y_sorted, rank, gid, offsets = _ranked(y_true, y_pred, group, qid)
    groups = offsets.size - 1
    best = np.full(groups, np.inf)
    rel = y_sorted > 0
    np.minimum.at(best, gid[rel], rank[rel])
    per = np.where(np.isfinite(best), 1.0 / (best + 1.0), 0.0)
    return _group_mean(per, sample_weight)
