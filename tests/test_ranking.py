"""Learning-to-rank losses and metrics: values against brute-force float64 formulas on ragged
groups (sizes 1 and 2 included), derivatives against finite differences, LambdaRank against a
brute-force transcription of LightGBM's lambdarank, NDCG against scikit-learn, margin ranking
against PyTorch, the group arguments, and a LightGBM ranker trained through the adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss.analysis import check_grad

SIZES = [1, 2, 5, 3, 1, 8, 2, 4, 6]


def _data(seed=0, sizes=SIZES, levels=4):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    y = rng.integers(0, levels, n).astype(np.float64)
    s = rng.standard_normal(n) + 0.5 * y
    return y, s, np.array(sizes)


def _groups(sizes):
    o = np.concatenate(([0], np.cumsum(sizes)))
    return [slice(o[i], o[i + 1]) for i in range(len(sizes))]


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------------------------------------
# Brute-force float64 references, written from the papers / LightGBM's source
# ------------------------------------------------------------------------------------------------


def ref_ranknet(y, s, sizes, sigma=1.0):
    values, g, h = [], np.zeros_like(s), np.zeros_like(s)
    for sl in _groups(sizes):
        yy, ss = y[sl], s[sl]
        pairs = [(i, j) for i in range(len(yy)) for j in range(len(yy)) if yy[i] > yy[j]]
        P = len(pairs)
        v = 0.0
        for i, j in pairs:
            d = ss[i] - ss[j]
            v += _softplus(-sigma * d) / P
            p = _sigmoid(-sigma * d)
            g[sl][i] -= sigma * p / P
            g[sl][j] += sigma * p / P
            h[sl][i] += sigma ** 2 * p * (1 - p) / P
            h[sl][j] += sigma ** 2 * p * (1 - p) / P
        values.append(v)
    return np.array(values), g, h


def ref_listnet(y, s, sizes):
    values, g, h = [], np.zeros_like(s), np.zeros_like(s)
    for sl in _groups(sizes):
        py = np.exp(y[sl] - y[sl].max())
        py /= py.sum()
        ps = np.exp(s[sl] - s[sl].max())
        ps /= ps.sum()
        values.append(-np.sum(py * np.log(ps)))
        g[sl] = ps - py
        h[sl] = ps * (1 - ps)
    return np.array(values), g, h


def ref_listmle(y, s, sizes):
    from scipy.special import logsumexp
    values, g, h = [], np.zeros_like(s), np.zeros_like(s)
    for sl in _groups(sizes):
        yy, ss = y[sl], s[sl]
        m = len(yy)
        pi = sorted(range(m), key=lambda i: (-yy[i], i))  # ties by position
        sp = ss[pi]
        v = sum(logsumexp(sp[a:]) - sp[a] for a in range(m))
        values.append(v)
        gg, hh = np.zeros(m), np.zeros(m)
        for a in range(m):
            p = np.exp(sp[a:] - logsumexp(sp[a:]))
            gg[a:] += p
            hh[a:] += p * (1 - p)
            gg[a] -= 1.0
        g[sl][pi] = gg
        h[sl][pi] = hh
    return np.array(values), g, h


def ref_lightgbm_lambdarank(y, s, sizes, k=None, sigma=1.0, norm=True):
    """LightGBM's LambdarankNDCG::GetGradientsForOneQuery (src/objective/rank_objective.hpp)
    line by line, with the exact sigmoid instead of its lookup table; the value is the
    lambda-weighted surrogate."""
    values, lam, hes = [], np.zeros_like(s), np.zeros_like(s)
    for sl in _groups(sizes):
        label, score = y[sl], s[sl]
        cnt = len(label)
        trunc = cnt if k is None else k
        gain = lambda v: 2.0 ** v - 1.0  # noqa: E731
        disc = lambda r: 1.0 / math.log2(2.0 + r)  # noqa: E731
        ideal = sorted(label, reverse=True)[:trunc]
        max_dcg = sum(gain(v) * disc(i) for i, v in enumerate(ideal))
        inv_max = 1.0 / max_dcg if max_dcg > 0 else 0.0
        idx = sorted(range(cnt), key=lambda i: (-score[i], i))  # std::stable_sort, descending
        best, worst = score[idx[0]], score[idx[-1]]
        lg, hg = np.zeros(cnt), np.zeros(cnt)
        value, sum_l = 0.0, 0.0
        for i in range(min(cnt - 1, trunc)):
            for j in range(i + 1, cnt):
                if label[idx[i]] == label[idx[j]]:
                    continue
                hr, lr = (i, j) if label[idx[i]] > label[idx[j]] else (j, i)
                high, low = idx[hr], idx[lr]
                ds = score[high] - score[low]
                delta = (gain(label[high]) - gain(label[low])) * abs(disc(hr) - disc(lr)) * inv_max
                if norm and best != worst:
                    delta /= 0.01 + abs(ds)
                p = 1.0 / (1.0 + math.exp(sigma * ds))
                ph = p * (1 - p)
                value += delta * _softplus(-sigma * ds)
                p_l = -sigma * delta * p
                ph *= sigma * sigma * delta
                lg[low] -= p_l
                hg[low] += ph
                lg[high] += p_l
                hg[high] += ph
                sum_l -= 2 * p_l
        f = math.log2(1 + sum_l) / sum_l if norm and sum_l > 0 else 1.0
        values.append(value * f)
        lam[sl], hes[sl] = lg * f, hg * f
    return np.array(values), lam, hes


REFERENCES = {
    "rank_net": (fl.RankNet(), ref_ranknet),
    "rank_net_sigma": (fl.RankNet(sigma=2.5), lambda y, s, z: ref_ranknet(y, s, z, 2.5)),
    "list_net": (fl.ListNet(), ref_listnet),
    "list_mle": (fl.ListMLE(), ref_listmle),
    "lambda_rank": (fl.LambdaRank(), ref_lightgbm_lambdarank),
    "lambda_rank_plain": (fl.LambdaRank(norm=False),
                          lambda y, s, z: ref_lightgbm_lambdarank(y, s, z, norm=False)),
    "lambda_rank_k3": (fl.LambdaRank(k=3, sigma=0.7),
                       lambda y, s, z: ref_lightgbm_lambdarank(y, s, z, k=3, sigma=0.7)),
    "lambda_rank_k1_plain": (fl.LambdaRank(k=1, norm=False),
                             lambda y, s, z: ref_lightgbm_lambdarank(y, s, z, k=1, norm=False)),
}


@pytest.mark.parametrize("case", sorted(REFERENCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_values_and_derivatives_match_reference(case, seed):
    loss, ref = REFERENCES[case]
    y, s, sizes = _data(seed)
    values, g, h = ref(y, s, sizes)
    w = np.random.default_rng(seed + 10).uniform(0.5, 2.0, len(sizes))
    np.testing.assert_allclose(loss(y, s, group=sizes, reduction="none"), values, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(loss(y, s, group=sizes, reduction="sum"), values.sum(), rtol=1e-12)
    mean, grad, hess = loss.value_grad_hess(y, s, group=sizes, sample_weight=w)
    assert mean == pytest.approx(np.sum(w * values) / w.sum(), rel=1e-12)
    doc_w = np.repeat(w, sizes) / w.sum()
    np.testing.assert_allclose(grad, doc_w * g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(hess, doc_w * h, rtol=1e-10, atol=1e-14)
    # float32 computes the same within its precision
    v32, g32 = loss.value_and_grad(y.astype(np.float32), s.astype(np.float32), group=sizes)
    assert g32.dtype == np.float32
    assert v32 == pytest.approx(loss(y, s, group=sizes), rel=1e-5)
    np.testing.assert_allclose(g32, loss.value_and_grad(y, s, group=sizes)[1], rtol=1e-4, atol=1e-6)


def test_groups_of_one_and_two():
    y, s = np.array([3.0, 1.0, 0.0]), np.array([0.2, -0.4, 0.9])
    for loss in (fl.RankNet(), fl.ListNet(), fl.ListMLE(), fl.LambdaRank()):
        v, g, h = loss.value_grad_hess(y, s, group=[1, 2], reduction="none")
        assert v[0] == 0.0 and g[0] == 0.0 and h[0] == 0.0
        assert v[1] > 0 and g[1] < 0 < g[2]
    # RankNet of one pair: softplus(-(s1 - s2))
    assert fl.RankNet()(y[1:], s[1:]) == pytest.approx(_softplus(-(s[1] - s[2])), rel=1e-14)
    # an empty group is allowed and has the value 0
    assert fl.rank_net(y, s, group=[0, 3, 0], reduction="none").tolist()[0::2] == [0.0, 0.0]


@pytest.mark.parametrize("loss", [fl.RankNet(sigma=0.8), fl.ListNet(), fl.ListMLE(),
                                  fl.LambdaRank(norm=False), fl.LambdaRank(k=2, norm=False)],
                         ids=repr)
def test_gradients_and_hessians_match_finite_differences(loss):
    y, s, sizes = _data(5)
    w = np.linspace(0.5, 1.5, len(sizes))
    report = check_grad(loss, y, s, sample_weight=w, group=sizes, hessian=True, max_elements=200)
    assert report.all_passed, str(report)


def test_lambdarank_norm_gradient_is_lightgbms_not_the_values():
    """With lambdarank_norm the lambdas carry score-dependent factors: the finite differences of
    the value differ from them (the reason norm=False exists)."""
    y, s, sizes = _data(5)
    report = check_grad(fl.LambdaRank(), y, s, group=sizes, hessian=False)
    assert not report.passed


def test_lambdarank_skips_minus_inf_scores_and_ties_by_position():
    y = np.array([2.0, 0.0, 1.0, 0.0])
    s = np.array([-np.inf, 0.5, 0.5, 0.1])
    v, g, h = fl.LambdaRank().value_grad_hess(y, s, reduction="sum")
    assert g[0] == 0.0 and h[0] == 0.0 and np.all(np.isfinite(g))
    ref = ref_lightgbm_lambdarank(y[1:], s[1:], [3])
    # dropping the -inf document changes maxDCG (it has the best label), so compare the shape:
    assert np.sign(g[1:]).tolist() == np.sign(ref[1]).tolist()


def test_large_groups_tied_scores_and_real_labels():
    """Groups above the insertion-sort size (sorted by std::sort), tied scores (ties by
    position), labels that are not integers below 31 (maxDCG from sorted gains, not counts)."""
    rng = np.random.default_rng(7)
    sizes = np.array([30, 3, 61, 25, 40, 26])
    n = int(sizes.sum())
    y = rng.integers(0, 4, n).astype(np.float64)
    y[:30] += 0.5  # real labels in the first group
    y[35] = 31.0   # beyond LightGBM's label_gain table
    s = np.round(rng.standard_normal(n) + 0.3 * y, 1)  # many exact ties
    for loss, ref in ((fl.LambdaRank(), ref_lightgbm_lambdarank),
                      (fl.LambdaRank(k=10, norm=False),
                       lambda y, s, z: ref_lightgbm_lambdarank(y, s, z, k=10, norm=False)),
                      (fl.RankNet(), ref_ranknet), (fl.ListMLE(), ref_listmle)):
        values, g, h = ref(y, s, sizes)
        v, g_fl, h_fl = loss.value_grad_hess(y, s, group=sizes, reduction="none")
        np.testing.assert_allclose(v, values, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(g_fl, g, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(h_fl, h, rtol=1e-9, atol=1e-14)


def test_lambdarank_signed_zero_ties_and_group_sizes_around_the_sort_limits():
    """Scores -0.0 and 0.0 tie (by position), in groups sorted by rank counting (up to 16 and up
    to 32 documents) and by std::sort (above)."""
    rng = np.random.default_rng(11)
    sizes = np.array([2, 7, 16, 17, 32, 33, 50])
    n = int(sizes.sum())
    y = rng.integers(0, 4, n).astype(np.float64)
    s = rng.choice([-0.0, 0.0, 0.5, -0.5, 1.0], n)
    values, g, h = ref_lightgbm_lambdarank(y, s, sizes, norm=False)
    v, g_fl, h_fl = fl.LambdaRank(norm=False).value_grad_hess(y, s, group=sizes, reduction="none")
    np.testing.assert_allclose(v, values, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(g_fl, g, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(h_fl, h, rtol=1e-9, atol=1e-14)


def test_lambdarank_labels_up_to_1023_are_exact_and_larger_ones_value_errors():
    y, s = np.array([1023.0, 40.0, 0.0]), np.array([0.1, 0.3, 0.2])
    values, g, h = ref_lightgbm_lambdarank(y, s, [3])
    v, g_fl, h_fl = fl.LambdaRank().value_grad_hess(y, s, reduction="none")
    np.testing.assert_allclose(v, values, rtol=1e-12)
    np.testing.assert_allclose(g_fl, g, rtol=1e-10)
    assert np.all(np.isfinite(g_fl)) and np.all(np.isfinite(h_fl))
    for big in (1024.0, 2.0 ** 31, 2.0 ** 40, 1e300):
        bad = np.array([1.0, big, 0.0])
        with pytest.raises(ValueError, match=r"y_true .*below 1024.*y_true\[1\] = "):
            fl.LambdaRank()(bad, s)
        with pytest.raises(ValueError, match=r"y_true .*below 1024"):
            fl.LambdaRank().prepare_groups(bad, np.array([0, 3]), np.float64)
    with pytest.raises(ValueError, match=r"y_true .*below 1024"):
        fl.LambdaRank()(np.array([1, 2 ** 40, 0], dtype=np.int64), s)


@pytest.mark.parametrize("loss", [fl.LambdaRank(), fl.LambdaRank(k=3, norm=False), fl.RankNet()],
                         ids=repr)
def test_prepared_groups_give_the_same_derivatives(loss):
    """A booster's labels are prepared once (checked, converted, LambdaRank's 1 / maxDCG per
    group): the derivatives are bitwise those computed from scratch; bad labels are still
    reported, by the preparation."""
    from fastloss.ranking import group_offsets
    y, s, sizes = _data(6)
    offsets = group_offsets(len(y), sizes)
    for dtype in (np.float64, np.float32):
        yy, ss = y.astype(np.float32), s.astype(dtype)  # LightGBM's float32 labels
        prepared = loss.prepare_groups(yy, offsets, dtype)
        assert prepared.labels.dtype == dtype
        g0, h0 = loss.boosting_grad_hess(yy, ss, None, offsets)
        g, h = loss.boosting_grad_hess(yy, ss, None, offsets, prepared)
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(h, h0)
    bad = np.where(np.arange(len(y)) == 2, np.nan, y)
    with pytest.raises(ValueError, match=r"y_true\[2\] = nan is not a finite relevance label"):
        loss.boosting_grad_hess(bad, s, None, offsets, loss.prepare_groups(bad, offsets, np.float64))


def test_boosting_adapter_prepares_the_groups_once_per_dataset():
    """The objective keeps the prepared labels while LightGBM hands the same arrays, and prepares
    again for other arrays (another Dataset)."""
    from fastloss.lightgbm import Objective
    y, s, sizes = _data(7)
    y2 = y[::-1].copy()

    class Data:
        def __init__(self, label):
            self.label = label

        def get_label(self):
            return self.label

        def get_weight(self):
            return None

        def get_group(self):
            return sizes

    obj = Objective(fl.LambdaRank(), hessian="exact")
    first = Data(y)
    results = [obj(s, first) for _ in range(3)]
    assert obj._groups._entry[1][2] is not None  # prepared at the second call
    g0, h0 = fl.LambdaRank().grad_hess(y, s, group=sizes, reduction="sum")
    for g, h in results:
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(h, h0)
    for _ in range(2):
        g, h = obj(s, Data(y2))
    np.testing.assert_array_equal(g, fl.LambdaRank().grad_hess(y2, s, group=sizes, reduction="sum")[0])
    import pickle
    assert not hasattr(pickle.loads(pickle.dumps(obj)), "_groups")


@pytest.mark.parametrize("loss", [fl.LambdaRank(), fl.LambdaRank(k=3, norm=False), fl.RankNet(),
                                  fl.ListNet(), fl.ListMLE()], ids=repr)
def test_boosting_derivatives_without_the_value_are_the_same(loss):
    """The boosters' path skips the value: the derivatives are bitwise those of grad_hess."""
    from fastloss.ranking import group_offsets
    y, s, sizes = _data(4)
    w = np.linspace(0.5, 2.0, len(sizes))
    for dtype in (np.float64, np.float32):
        yy, ss = y.astype(dtype), s.astype(dtype)
        g0, h0 = loss.grad_hess(yy, ss, sample_weight=w, group=sizes, reduction="sum")
        g, h = loss.boosting_grad_hess(yy, ss, w, group_offsets(len(y), sizes))
        assert g.dtype == h.dtype == dtype
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(h, h0)


def test_qid_and_group_are_equivalent():
    y, s, sizes = _data(3)
    qid = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    for loss in (fl.RankNet(), fl.LambdaRank(), fl.ListNet(), fl.ListMLE()):
        a = loss.value_grad_hess(y, s, group=sizes, reduction="none")
        b = loss.value_grad_hess(y, s, qid=qid, reduction="none")
        for x1, x2 in zip(a, b):
            np.testing.assert_array_equal(x1, x2)
    assert fl.ndcg(y, s, group=sizes) == fl.ndcg(y, s, qid=qid)
    # no group at all: one group
    assert fl.RankNet()(y, s) == fl.RankNet()(y, s, group=[len(y)])


@pytest.mark.parametrize("kwargs, match", [
    ({"group": [3, 3]}, "group sizes must sum to the number of documents"),
    ({"group": [5, -1, 3]}, r"group sizes must be non-negative; group\[1\] = -1"),
    ({"group": [[7]]}, "group must be 1-D"),
    ({"group": [3.5, 3.5]}, "group must hold integers"),
    ({"qid": [0, 0, 1, 1, 0, 2, 2]}, r"qid must be sorted .*qid\[4\] = 0 follows 1"),
    ({"qid": [0, 1]}, "qid must hold one query id per document"),
    ({"group": [7], "qid": np.zeros(7)}, "not both"),
])
def test_bad_groups_are_value_errors_naming_the_argument(kwargs, match):
    y, s = np.arange(7.0) % 3, np.linspace(0, 1, 7)
    for loss in (fl.RankNet(), fl.LambdaRank()):
        with pytest.raises(ValueError, match=match):
            loss(y, s, **kwargs)
    with pytest.raises(ValueError, match=match):
        fl.ndcg(y, s, **kwargs)


def test_bad_labels_scores_and_weights():
    y, s = np.array([1.0, 0.0, 2.0]), np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"y_true\[1\] = nan is not a finite relevance label"):
        fl.RankNet()(np.array([1.0, np.nan, 0.0]), s)
    with pytest.raises(ValueError, match="non-negative"):
        fl.LambdaRank()(np.array([1.0, -1.0, 0.0]), s)
    with pytest.raises(ValueError, match="y_pred must be 1-D"):
        fl.ListNet()(y, s[None])
    with pytest.raises(ValueError, match="one weight per group"):
        fl.ListMLE()(y, s, group=[1, 2], sample_weight=[1.0, 1.0, 1.0])
    grad_out = np.full(3, 7.0)
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        fl.ListMLE().value_and_grad(y, s, group=[1, 2], sample_weight=[1.0, -1.0], grad_out=grad_out)
    assert np.all(grad_out == 7.0)
    # NaN scores propagate into the value, never crash
    assert math.isnan(fl.RankNet()(y, np.array([0.1, np.nan, 0.3])))
    assert math.isnan(fl.ListMLE()(y, np.array([0.1, np.nan, 0.3])))


def test_buffers_and_none_reduction():
    y, s, sizes = _data(1)
    loss = fl.LambdaRank()
    out, g, h = np.empty(len(sizes)), np.empty_like(s), np.empty_like(s)
    v, g2, h2 = loss.value_grad_hess(y, s, group=sizes, reduction="none", out=out, grad_out=g,
                                     hess_out=h)
    assert v is out and g2 is g and h2 is h
    ref = loss.value_grad_hess(y, s, group=sizes, reduction="none")
    for a, b in zip((out, g, h), ref):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [None, 1, 3, 10])
def test_ndcg_equals_scikit_learn_per_group(k):
    from sklearn.metrics import ndcg_score
    y, s, sizes = _data(2, sizes=[4, 2, 6, 9, 3, 5], levels=5)
    per_linear, per_exp = [], []
    for sl in _groups(sizes):
        if y[sl].max() > 0:
            per_linear.append(ndcg_score(y[sl][None], s[sl][None], k=k))
            per_exp.append(ndcg_score((2.0 ** y[sl] - 1)[None], s[sl][None], k=k))
        else:
            per_linear.append(1.0)
            per_exp.append(1.0)
    assert fl.ndcg(y, s, group=sizes, k=k, gain="linear") == pytest.approx(np.mean(per_linear),
                                                                            rel=1e-12)
    assert fl.ndcg(y, s, group=sizes, k=k) == pytest.approx(np.mean(per_exp), rel=1e-12)


def test_ndcg_of_groups_without_relevance_is_one():
    y, s = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.3, 0.1, 0.2, 0.9])
    assert fl.ndcg(y[:2], s[:2]) == 1.0
    both = fl.ndcg(y, s, group=[2, 2])
    assert both == pytest.approx((1.0 + 1.0 / math.log2(3)) / 2)


def test_map_and_mrr_brute_force():
    y, s, sizes = _data(4, sizes=[4, 2, 6, 1, 5], levels=3)
    aps, rrs = [], []
    for sl in _groups(sizes):
        order = sorted(range(len(s[sl])), key=lambda i: (-s[sl][i], i))
        rel = (y[sl][order] > 0).astype(float)
        if rel.sum() == 0:
            aps.append(1.0)
            rrs.append(0.0)
            continue
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        aps.append(np.sum(prec * rel) / rel.sum())
        rrs.append(1.0 / (1 + np.argmax(rel)))
    assert fl.mean_average_precision(y, s, group=sizes) == pytest.approx(np.mean(aps), rel=1e-12)
    assert fl.mrr(y, s, group=sizes) == pytest.approx(np.mean(rrs), rel=1e-12)
    w = np.arange(1.0, 6.0)
    assert fl.mrr(y, s, group=sizes, sample_weight=w) == pytest.approx(np.average(rrs, weights=w))


# ------------------------------------------------------------------------------------------------
# Margin ranking
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_matches_pytorch(margin):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal(50), rng.standard_normal(50)
    y = np.where(rng.random(50) < 0.5, 1.0, -1.0)
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    ref = torch.nn.functional.margin_ranking_loss(t1, t2, torch.tensor(y), margin=margin)
    ref.backward()
    value, (g1, g2) = fl.MarginRanking(margin=margin).value_and_grad(y, x1, x2)
    assert value == pytest.approx(ref.item(), rel=1e-14)
    np.testing.assert_allclose(g1, t1.grad.numpy(), rtol=1e-14)
    np.testing.assert_allclose(g2, t2.grad.numpy(), rtol=1e-14)
    none = fl.margin_ranking(y, x1, x2, margin=margin, reduction="none")
    np.testing.assert_allclose(none, np.maximum(0, -y * (x1 - x2) + margin), rtol=1e-14)
    with pytest.raises(ValueError, match="y_true must hold 1 or -1"):
        fl.margin_ranking(np.zeros(50), x1, x2)


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    return np.where(rng.random(n) < 0.5, 1.0, -1.0), x1, x2


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_margin_ranking_weighted_against_float64_reference(reduction):
    y, x1, x2 = _pairs(300, 1)
    w = np.random.default_rng(2).uniform(0.0, 2.0, 300)
    loss = fl.MarginRanking(margin=0.3)
    per = w * np.maximum(0.0, 0.3 - y * (x1 - x2))
    active = 0.3 - y * (x1 - x2) > 0
    scale = w / w.sum() if reduction == "mean" else w
    ref = {"mean": per.sum() / w.sum(), "sum": per.sum(), "none": per}[reduction]
    value, (g1, g2) = loss.value_and_grad(y, x1, x2, sample_weight=w, reduction=reduction)
    np.testing.assert_allclose(value, ref, rtol=1e-13)
    np.testing.assert_allclose(g1, np.where(active, -y, 0.0) * scale, rtol=1e-14)
    np.testing.assert_array_equal(g2, -g1)
    h1, h2 = loss.grad_hess(y, x1, x2, sample_weight=w, reduction=reduction)[1]
    assert not np.any(h1) and not np.any(h2)


def test_margin_ranking_gradients_match_finite_differences():
    y, x1, x2 = _pairs(40, 3)
    x2 = np.where(np.abs(0.5 - y * (x1 - x2)) < 1e-3, x2 + 0.01, x2)  # away from the kink
    w = np.linspace(0.5, 1.5, 40)
    loss = fl.MarginRanking(margin=0.5)
    g1, g2 = loss.value_and_grad(y, x1, x2, sample_weight=w)[1]
    h = 1e-6
    for i in range(40):
        e = np.zeros(40)
        e[i] = h
        d1 = (loss(y, x1 + e, x2, sample_weight=w) - loss(y, x1 - e, x2, sample_weight=w)) / (2 * h)
        d2 = (loss(y, x1, x2 + e, sample_weight=w) - loss(y, x1, x2 - e, sample_weight=w)) / (2 * h)
        assert g1[i] == pytest.approx(d1, abs=1e-8) and g2[i] == pytest.approx(d2, abs=1e-8)


def test_margin_ranking_dtypes_strides_shapes_and_threads():
    y, x1, x2 = _pairs(200_000, 4)
    loss = fl.MarginRanking(margin=0.2)
    with fl.num_threads(1):
        one = loss.value_and_grad(y, x1, x2)
    with fl.num_threads(2):
        two = loss.value_and_grad(y, x1, x2)
    assert one[0] == two[0]  # bitwise, any thread count
    np.testing.assert_array_equal(one[1][0], two[1][0])
    # float32 inputs compute in float32; mixed inputs in float64, each gradient in its input's dtype
    v32, (a32, b32) = loss.value_and_grad(y.astype(np.float32), x1.astype(np.float32),
                                          x2.astype(np.float32))
    assert a32.dtype == b32.dtype == np.float32 and v32 == pytest.approx(one[0], rel=1e-6)
    _, (a, b) = loss.value_and_grad(y, x1.astype(np.float32), x2)
    assert a.dtype == np.float32 and b.dtype == np.float64
    # strided and 2-D inputs give the answer of their contiguous copies
    v, (g1, g2) = loss.value_and_grad(y[::2], x1[::2], x2[::2])
    vc, (c1, c2) = loss.value_and_grad(y[::2].copy(), x1[::2].copy(), x2[::2].copy())
    assert v == vc
    np.testing.assert_array_equal(g1, c1)
    none = loss(y[:600].reshape(20, 30), x1[:600].reshape(20, 30), x2[:600].reshape(20, 30),
                reduction="none")
    assert none.shape == (20, 30)
    np.testing.assert_array_equal(none.ravel(), loss(y[:600], x1[:600], x2[:600], reduction="none"))


def test_margin_ranking_buffers_errors_and_nan():
    y, x1, x2 = _pairs(10, 5)
    loss = fl.MarginRanking(margin=0.1)
    g1, g2, out = np.empty(10), np.empty(10), np.empty(10)
    v, (r1, r2) = loss.value_and_grad(y, x1, x2, reduction="none", out=out, grad_out=(g1, g2))
    assert v is out and r1 is g1 and r2 is g2
    ref = loss.value_and_grad(y, x1, x2, reduction="none")
    np.testing.assert_array_equal(out, ref[0])
    np.testing.assert_array_equal(g1, ref[1][0])
    np.testing.assert_array_equal(g2, ref[1][1])
    keep = (np.full(10, 7.0), np.full(10, 7.0))
    bad = [({"sample_weight": -np.ones(10)}, "sample_weight must be finite and non-negative"),
           ({"sample_weight": np.zeros(10)}, "sums to zero"),
           ({"sample_weight": np.ones(3)}, "one weight per pair"),
           ({"y_true": np.where(np.arange(10) == 4, 0.5, y)}, r"y_true.flat\[4\] = 0.5"),
           ({"y_true": np.where(np.arange(10) == 2, np.nan, y)}, r"y_true.flat\[2\] = nan"),
           ({"x2": x2[:9]}, r"same shape; got y_true \(10,\), x1 \(10,\) and x2 \(9,\)")]
    for change, match in bad:
        args = {"y_true": y, "x2": x2, "sample_weight": None, **change}
        with pytest.raises(ValueError, match=match):
            loss.value_and_grad(args["y_true"], x1, args["x2"], sample_weight=args["sample_weight"],
                                grad_out=keep)
        assert np.all(keep[0] == 7.0) and np.all(keep[1] == 7.0)  # nothing written
    with pytest.raises(ValueError, match="grad_out"):
        loss.value_and_grad(y, x1, x2, grad_out=(np.empty(10), np.empty(9)))
    # NaN reaches the value and the gradient entries of its pair only
    v, (a, b) = loss.value_and_grad(y, np.where(np.arange(10) == 3, np.nan, x1), x2)
    assert math.isnan(v) and np.isnan(a[3]) and np.isnan(b[3])
    assert np.all(np.isfinite(np.delete(a, 3)))
    # empty input: the documented mean over nothing
    assert loss(np.zeros(0), np.zeros(0), np.zeros(0), reduction="sum") == 0.0


# ------------------------------------------------------------------------------------------------
# Registry and boosting adapters
# ------------------------------------------------------------------------------------------------


def test_registered_in_the_ranking_family():
    names = {info.name for info in fl.losses("ranking")}
    assert {"rank_net", "lambda_rank", "list_net", "list_mle", "margin_ranking"} <= names


def _ranking_dataset(seed, queries=300, features=10):
    """Query groups of 5 to 29 documents, relevance 0..4 from a noisy function of the features
    (the same function for every seed)."""
    w = np.random.default_rng(12345).standard_normal(features)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 30, queries)
    n = int(sizes.sum())
    X = rng.standard_normal((n, features))
    latent = X @ w + 0.5 * np.sin(3 * X[:, 0]) + 0.5 * rng.standard_normal(n)
    y = np.clip(np.floor(latent / 1.5), 0, 4)
    return X, y, sizes


def test_lightgbm_objective_matches_builtin_lambdarank():
    lgb = pytest.importorskip("lightgbm")
    from fastloss.lightgbm import Objective
    X, y, sizes = _ranking_dataset(0)
    Xt, yt, st = _ranking_dataset(1)
    params = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 20, "verbose": -1,
              "num_threads": 2, "deterministic": True, "seed": 0}
    scores = {}
    for name, objective in (("builtin", "lambdarank"), ("fastloss", Objective(fl.LambdaRank()))):
        data = lgb.Dataset(X, y, group=sizes)
        booster = lgb.train(dict(params, objective=objective), data, num_boost_round=60)
        scores[name] = fl.ndcg(yt, booster.predict(Xt), group=st, k=10)
    assert scores["fastloss"] >= scores["builtin"] - 0.01, scores
    assert scores["fastloss"] > 0.6, scores


def test_lightgbm_first_gradients_equal_the_builtin_objective():
    """At the first round every score is 0, where LightGBM's lambdas are exact (no sigmoid table
    error: p = 1/2): the trees of one round agree."""
    lgb = pytest.importorskip("lightgbm")
    from fastloss.lightgbm import Objective
    X, y, sizes = _ranking_dataset(2, queries=80)
    preds = {}
    params = {"learning_rate": 0.1, "num_leaves": 7, "verbose": -1, "num_threads": 1,
              "deterministic": True}
    for name, objective in (("builtin", "lambdarank"), ("fastloss", Objective(fl.LambdaRank(k=30)))):
        booster = lgb.train(dict(params, objective=objective), lgb.Dataset(X, y, group=sizes),
                            num_boost_round=1)
        preds[name] = booster.predict(X)
    np.testing.assert_allclose(preds["fastloss"], preds["builtin"], rtol=1e-5, atol=1e-7)


def test_lightgbm_per_document_weights_scale_each_document():
    from fastloss.lightgbm import Objective
    y, s, sizes = _data(0)
    w = np.linspace(0.5, 2.0, len(y))

    class Data:
        def get_label(self):
            return y

        def get_weight(self):
            return w

        def get_group(self):
            return sizes

    g, h = Objective(fl.LambdaRank(), hessian="exact")(s, Data())
    g0, h0 = fl.LambdaRank().grad_hess(y, s, group=sizes, reduction="sum")
    np.testing.assert_allclose(g, w * g0, rtol=1e-15)
    np.testing.assert_allclose(h, w * h0, rtol=1e-15)


def test_xgboost_objective_reads_group_ptr():
    xgb = pytest.importorskip("xgboost")
    from fastloss.xgboost import Objective
    X, y, sizes = _ranking_dataset(3, queries=60)
    dtrain = xgb.DMatrix(X, y, group=sizes)
    obj = Objective(fl.RankNet(), hessian="exact")
    margin = np.random.default_rng(0).standard_normal(len(y)).astype(np.float32)
    g, h = obj(margin, dtrain)
    g0, h0 = fl.RankNet().grad_hess(y, margin, group=sizes, reduction="sum")
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(h, h0)
    booster = xgb.train({"max_depth": 3, "eta": 0.3, "base_score": 0.0}, dtrain, 20, obj=obj)
    assert fl.ndcg(y, booster.predict(dtrain), group=sizes, k=10) > 0.6


def test_metric_adapters_evaluate_ranking_losses_per_query_group():
    """The metrics pass the booster's query groups: XGBoost's weights are one per group,
    LightGBM's per document, averaged over each group (LightGBM's query weight)."""
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    from fastloss.lightgbm import Metric as LgbMetric, SklearnMetric as LgbSklearnMetric
    from fastloss.xgboost import Metric as XgbMetric
    X, y, sizes = _ranking_dataset(3, queries=60)
    margin = np.random.default_rng(1).standard_normal(len(y))
    loss = fl.LambdaRank(k=5)
    wq = np.linspace(0.5, 2.0, len(sizes))
    dtrain = xgb.DMatrix(X, y, group=sizes, weight=wq)
    name, value = XgbMetric(loss)(margin.astype(np.float32), dtrain)
    assert name == "lambda_rank"
    assert value == pytest.approx(loss(y, margin.astype(np.float32), wq, group=sizes), rel=1e-6)
    wd = np.repeat(wq, sizes) * np.where(np.arange(len(y)) % 2, 1.5, 0.5)  # varies within groups
    data = lgb.Dataset(X, y, group=sizes, weight=wd).construct()
    wd = np.asarray(data.get_weight(), dtype=np.float64)  # as LightGBM stores them (float32)
    per_group = np.add.reduceat(wd, np.r_[0, np.cumsum(sizes)[:-1]]) / sizes
    expected = loss(y, margin, per_group, group=sizes)
    assert LgbMetric(loss)(margin, data)[1] == pytest.approx(expected, rel=1e-12)
    assert LgbSklearnMetric(loss)(y, margin, wd, sizes)[1] == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(loss(y, margin, group=sizes), rel=1e-6)  # weights count


def test_ranking_scorer_routes_qid():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold, cross_val_score
    from fastloss.sklearn import ranking_scorer
    rng = np.random.default_rng(0)
    qid = np.repeat(np.arange(40), 10)
    X = rng.standard_normal((400, 4))
    y = np.clip(np.round(X[:, 0] + 0.3 * rng.standard_normal(400)), 0, 3)
    model = Ridge().fit(X, y)
    assert ranking_scorer("map")(model, X, y) == fl.mean_average_precision(y, model.predict(X))
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = ranking_scorer("ndcg", k=5).set_score_request(qid=True)
        assert scorer(model, X, y, qid=qid) == fl.ndcg(y, model.predict(X), qid=qid, k=5)
        scores = cross_val_score(Ridge(), X, y, cv=GroupKFold(4), scoring=scorer,
                                 params={"qid": qid, "groups": qid})
    assert scores.shape == (4,) and np.all(scores > 0.8)
    with pytest.raises(ValueError, match="metric must be one of"):
        ranking_scorer("auc")


def test_module_doctests():
    import doctest
    import fastloss.ranking as mod
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0
