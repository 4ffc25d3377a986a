"""Ranking and similarity losses (spec section 4): pairwise distances, contrastive, triplet (explicit
and mined), center loss, CosFace and ArcFace.

Independent float64 references written from the papers (below, nothing here calls fastloss), a
brute-force NumPy miner, cross-checks against PyTorch and pytorch-metric-learning (skipped when not
installed), gradients against central finite differences (away from the hinge kinks), determinism
for 1 vs 2 threads, and the error paths.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastloss as fl
from conftest import assert_bitwise_equal

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}
METRICS = ["euclidean", "sqeuclidean", "cosine"]
MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------------


def ref_dist(x, y, metric, eps=1e-8):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
        yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), eps)
        return 1.0 - xn @ yn.T
    sq = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return sq if metric == "sqeuclidean" else np.sqrt(sq)


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def brute_force_mine(labels, D, mining, seed=0):
    """The documented miner, one anchor at a time, on the distance matrix D (lowest index wins)."""
    n = len(labels)
    out = []
    for a in range(n):
        pos = [j for j in range(n) if labels[j] == labels[a] and j != a]
        neg = [j for j in range(n) if labels[j] != labels[a]]
        if not pos or not neg:
            continue
        dn = D[a, neg]
        if mining == "hard":
            out.append((a, pos[int(np.argmax(D[a, pos]))], neg[int(np.argmin(dn))]))
            continue
        ha = splitmix64((seed + splitmix64(a)) & MASK64)
        for p in pos:
            if mining == "random":
                h = splitmix64((ha + p) & MASK64)
                out.append((a, p, neg[(h * len(neg)) >> 64]))
            else:  # semi-hard
                farther = [k for k in range(len(neg)) if dn[k] > D[a, p]]
                k = min(farther, key=lambda k: (dn[k], k)) if farther else int(np.argmax(dn))
                out.append((a, p, neg[k]))
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def ref_triplet_value(labels, x, mining, margin, metric, soft=False, w=None, seed=0):
    D = ref_dist(x, x, metric)
    w = np.ones(len(labels)) if w is None else w
    if mining == "all":
        t = [(a, p, n) for a in range(len(labels)) for p in range(len(labels))
             for n in range(len(labels)) if labels[p] == labels[a] and p != a and labels[n] != labels[a]]
    else:
        t = brute_force_mine(labels, D, mining, seed)
    if len(t) == 0:
        return 0.0
    t = np.array(t)
    h = D[t[:, 0], t[:, 1]] - D[t[:, 0], t[:, 2]] + margin
    l = np.logaddexp(0, h) if soft else np.maximum(h, 0)
    wa = w[t[:, 0]]
    count = wa if (soft or mining != "all") else wa * (h > 0)
    return float(np.sum(wa * l) / np.sum(count)) if np.sum(count) > 0 else 0.0


def ref_margin_softmax(labels, x, W, s, m, arc, easy=False):
    """Per-row CosFace / ArcFace losses in float64 from the papers."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    cos = xn @ wn.T
    rows = np.arange(len(labels))
    ct = cos[rows, labels]
    if arc:
        theta = np.arccos(np.clip(ct, -1, 1))
        phi = np.cos(theta + m)
        if easy:
            phi = np.where(ct > 0, phi, ct)
        else:
            phi = np.where(theta + m < np.pi, phi, ct - m * np.sin(np.pi - m))
    else:
        phi = ct - m
    z = s * cos
    z[rows, labels] = s * phi
    zmax = z.max(1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(1)) + zmax[:, 0]
    return lse - z[rows, labels]


def fd_check(f, arrays, grads, step=1e-6, rtol=1e-5, atol=1e-8, max_checks=40, rng=None):
    """Central differences of the scalar f(*arrays) against the analytic grads, on sampled entries."""
    rng = rng or np.random.default_rng(0)
    for k, (arr, g) in enumerate(zip(arrays, grads)):
        flat = rng.choice(arr.size, size=min(max_checks, arr.size), replace=False)
        for i in flat:
            idx = np.unravel_index(i, arr.shape)
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k][idx] += step
            minus[k][idx] -= step
            fd = (f(*plus) - f(*minus)) / (2 * step)
            assert abs(fd - g[idx]) <= atol + rtol * abs(fd), (k, idx, fd, g[idx])


def clustered(rng, n, d, k, dtype=np.float64, spread=0.8):
    labels = rng.integers(0, k, n)
    centres = rng.standard_normal((k, d))
    return labels, (centres[labels] + spread * rng.standard_normal((n, d))).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Pairwise distances
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_reference(rng, metric, dtype):
    x, y = rng.standard_normal((13, 7)).astype(dtype), rng.standard_normal((9, 7)).astype(dtype)
    d = fl.pairwise_distances(x, y, metric=metric)
    assert d.dtype == dtype and d.shape == (13, 9)
    np.testing.assert_allclose(d, ref_dist(x, y, metric), rtol=10 * RTOL[dtype], atol=10 * RTOL[dtype])
    ds = fl.pairwise_distances(x, metric=metric)
    np.testing.assert_allclose(ds, ref_dist(x, x, metric), rtol=10 * RTOL[dtype], atol=1e-3 if dtype == np.float32 else 1e-7)
    if metric != "cosine":
        assert np.all(np.diag(ds) == 0)
    np.testing.assert_array_equal(ds, ds.T)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_backward_fd(rng, metric):
    x, y = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    g = rng.standard_normal((6, 5))
    gx, gy = fl.pairwise_distances_backward(g, x, y, metric=metric)
    f = lambda a, b: float(np.sum(g * ref_dist(a, b, metric)))  # noqa: E731
    fd_check(f, [x, y], [gx, gy])
    gs = rng.standard_normal((6, 6))
    gself = fl.pairwise_distances_backward(gs, x, metric=metric)
    fd_check(lambda a: float(np.sum(gs * ref_dist(a, a, metric))), [x], [gself], atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_pairwise_distances_vs_torch(rng, metric):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, y = rng.standard_normal((11, 6)), rng.standard_normal((8, 6))
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    if metric == "cosine":
        r = 1 - F.cosine_similarity(tx[:, None, :], ty[None, :, :], dim=-1, eps=1e-8)
    else:
        r = torch.cdist(tx, ty) ** (2 if metric == "sqeuclidean" else 1)
    g = rng.standard_normal((11, 8))
    (r * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(fl.pairwise_distances(x, y, metric=metric), r.detach().numpy(), atol=1e-12)
    gx, gy = fl.pairwise_distances_backward(g, x, y, metric=metric)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(gy, ty.grad.numpy(), atol=1e-12)


def test_paired_distance_matches_torch_pairwise_distance(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((9, 5)), rng.standard_normal((9, 5))
    for p in (1.0, 2.0, 3.0, math.inf):
        ref = torch.nn.functional.pairwise_distance(torch.tensor(a), torch.tensor(b), p=p, eps=1e-6)
        got = fl._core.sim_paired_distance(a, b, p, 1e-6)
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-13)


# --------------------------------------------------------------------------------------------------
# Contrastive
# --------------------------------------------------------------------------------------------------


def ref_contrastive(y, x1, x2, margin, p=2.0, eps=1e-6):
    d = np.linalg.norm(x1 - x2 + eps, ord=p, axis=1)
    return 0.5 * (y * d * d + (1 - y) * np.maximum(margin - d, 0) ** 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_contrastive_pairs_reference_and_fd(rng, dtype):
    n = 40
    x1 = rng.standard_normal((n, 6)).astype(dtype)
    x2 = (x1 + rng.standard_normal((n, 6))).astype(dtype)
    y = rng.integers(0, 2, n)
    w = rng.uniform(0.1, 2, n)
    loss = fl.Contrastive(margin=3.0)
    per = ref_contrastive(y, x1.astype(np.float64), x2.astype(np.float64), 3.0)
    assert loss(y, x1, x2) == pytest.approx(float(per.mean()), rel=RTOL[dtype])
    assert loss(y, x1, x2, sample_weight=w) == pytest.approx(float((w * per).sum() / w.sum()), rel=RTOL[dtype])
    assert loss(y, x1, x2, reduction="sum") == pytest.approx(float(per.sum()), rel=RTOL[dtype])
    np.testing.assert_allclose(loss(y, x1, x2, reduction="none"), per, rtol=RTOL[dtype])
    v, (g1, g2) = loss.value_and_grad(y, x1, x2, sample_weight=w)
    assert g1.dtype == dtype and g2.dtype == dtype and g1.shape == x1.shape
    np.testing.assert_array_equal(g1, -g2)
    if dtype == np.float64:
        fd_check(lambda a, b: float((w * ref_contrastive(y, a, b, 3.0)).sum() / w.sum()), [x1, x2], [g1, g2])
        l1 = fl.Contrastive(margin=3.0, p=1.0)
        _, (h1, h2) = l1.value_and_grad(y, x1, x2)
        fd_check(lambda a, b: float(ref_contrastive(y, a, b, 3.0, p=1.0).mean()), [x1, x2], [h1, h2])


def ref_batch_contrastive(labels, x, pos_margin, neg_margin, metric):
    D = ref_dist(x, x, metric)
    iu = np.triu_indices(len(labels), 1)
    same = labels[iu[0]] == labels[iu[1]]
    d = D[iu]
    return np.where(same, 0.5 * np.maximum(d - pos_margin, 0) ** 2, 0.5 * np.maximum(neg_margin - d, 0) ** 2)


@pytest.mark.parametrize("metric", METRICS)
def test_batch_contrastive_reference_and_fd(rng, metric):
    labels, x = clustered(rng, 24, 5, 4)
    nm = 0.8 if metric == "cosine" else 3.0
    loss = fl.BatchContrastive(pos_margin=0.1, neg_margin=nm, metric=metric)
    per = ref_batch_contrastive(labels, x, 0.1, nm, metric)
    np.testing.assert_allclose(loss(labels, x, reduction="none"), per, rtol=1e-10, atol=1e-13)
    assert loss(labels, x) == pytest.approx(float(per.mean()), rel=1e-10)
    v, g = loss.value_and_grad(labels, x)
    fd_check(lambda a: float(ref_batch_contrastive(labels, a, 0.1, nm, metric).mean()), [x], [g],
             atol=1e-7)
    x32 = x.astype(np.float32)
    v32, g32 = loss.value_and_grad(labels, x32)
    assert g32.dtype == np.float32 and v32 == pytest.approx(v, rel=1e-3)


def test_batch_contrastive_vs_pytorch_metric_learning(rng):
    pml = pytest.importorskip("pytorch_metric_learning")
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss
    from pytorch_metric_learning.reducers import DoNothingReducer
    labels, x = clustered(rng, 20, 4, 3)
    ref = ContrastiveLoss(pos_margin=0.2, neg_margin=2.5, distance=LpDistance(normalize_embeddings=False),
                          reducer=DoNothingReducer())
    out = ref(torch.tensor(x), torch.tensor(labels))
    ours = fl.BatchContrastive(pos_margin=0.2, neg_margin=2.5)(labels, x, reduction="none")
    # pml's terms are unsquared hinges over ordered pairs: ours = 1/2 pml^2, each pair twice there.
    n = len(labels)
    iu = np.triu_indices(n, 1)
    full = np.zeros((n, n))
    full[iu] = ours
    full += full.T
    for key in ("pos_loss", "neg_loss"):
        a, b = (t.numpy() for t in out[key]["indices"])
        np.testing.assert_allclose(0.5 * out[key]["losses"].detach().numpy() ** 2, full[a, b],
                                   rtol=1e-10, atol=1e-14)
    assert int(out["pos_loss"]["losses"].numel() + out["neg_loss"]["losses"].numel()) == n * (n - 1)


# --------------------------------------------------------------------------------------------------
# Triplet margin on explicit triplets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_vs_torch(rng, p, swap):
    torch = pytest.importorskip("torch")
    a, pos, neg = (rng.standard_normal((30, 6)) for _ in range(3))
    pos = a + 0.7 * pos
    ts = [torch.tensor(v, requires_grad=True) for v in (a, pos, neg)]
    r = torch.nn.functional.triplet_margin_loss(*ts, margin=1.5, p=p, swap=swap)
    r.backward()
    v, grads = fl.TripletMargin(margin=1.5, p=p, swap=swap).value_and_grad(a, pos, neg)
    assert v == pytest.approx(r.item(), rel=1e-12)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_triplet_margin_soft_weights_fd(rng, dtype):
    a, pos, neg = (rng.standard_normal((25, 5)).astype(dtype) for _ in range(3))
    w = rng.uniform(0, 2, 25)

    def ref(a, p, n, soft):
        h = np.linalg.norm(a - p + 1e-6, axis=1) - np.linalg.norm(a - n + 1e-6, axis=1) + 0.5
        return np.logaddexp(0, h) if soft else np.maximum(h, 0)

    for soft in (False, True):
        loss = fl.TripletMargin(margin=0.5, soft=soft)
        per = ref(*(v.astype(np.float64) for v in (a, pos, neg)), soft)
        v, grads = loss.value_and_grad(a, pos, neg, sample_weight=w)
        assert v == pytest.approx(float((w * per).sum() / w.sum()), rel=RTOL[dtype])
        assert all(g.dtype == dtype for g in grads)
        if dtype == np.float64:
            fd_check(lambda *t: float((w * ref(*t, soft)).sum() / w.sum()), [a, pos, neg], grads)


# --------------------------------------------------------------------------------------------------
# Mined triplets
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("mining", ["hard", "semi-hard", "random"])
def test_mining_equals_brute_force(rng, mining, metric, dtype):
    labels, x = clustered(rng, 60, 4, 5, dtype)
    x[7] = x[3]  # exact ties between candidates
    labels[7] = labels[3]
    loss = fl.BatchTripletMargin(mining=mining, metric=metric, seed=12345)
    got = loss.mine(labels, x)
    D = fl.pairwise_distances(x, metric=metric)
    np.testing.assert_array_equal(got, brute_force_mine(labels, D, mining, seed=12345))
    _, _, trip = loss.value_and_grad(labels, x, return_triplets=True)
    np.testing.assert_array_equal(trip, got)


def test_mining_ties_lowest_index():
    # Anchor 0: positives 1, 2 at equal distance; negatives 3, 4 at equal distance.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    labels = np.array([0, 0, 0, 1, 1])
    t = fl.BatchTripletMargin(mining="hard").mine(labels, x)
    assert tuple(t[0]) == (0, 1, 3)
    t = fl.BatchTripletMargin(mining="semi-hard").mine(labels, x)
    assert tuple(t[0]) == (0, 1, 3) and tuple(t[1]) == (0, 2, 3)


def test_mining_with_a_negative_on_the_anchor(rng):
    # Zero distances: a negative equal to its anchor is the hardest; the anchor itself never is.
    labels, x = clustered(rng, 40, 3, 4)
    x[5] = x[2]
    labels[5] = (labels[2] + 1) % 4
    D = fl.pairwise_distances(x)
    for mining in ("hard", "semi-hard"):
        got = fl.BatchTripletMargin(mining=mining).mine(labels, x)
        np.testing.assert_array_equal(got, brute_force_mine(labels, D, mining))
    assert tuple(fl.BatchTripletMargin(mining="hard").mine(labels, x)[2][[0, 2]]) == (2, 5)


def test_semi_hard_fallback():
    # Every negative is closer than the positive: the farthest negative is taken.
    x = np.array([[0.0], [10.0], [1.0], [2.0]])
    labels = np.array([0, 0, 1, 1])
    t = fl.BatchTripletMargin(mining="semi-hard").mine(labels, x)
    assert tuple(t[0]) == (0, 1, 3)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("mining", ["all", "hard", "semi-hard", "random"])
def test_batch_triplet_value_and_fd(rng, mining, metric):
    labels, x = clustered(rng, 30, 4, 4)
    w = rng.uniform(0.2, 2, 30)
    margin = 0.3 if metric == "cosine" else 1.0
    for soft in (False, True):
        loss = fl.BatchTripletMargin(margin=margin, mining=mining, metric=metric, soft=soft, seed=7)
        v, g = loss.value_and_grad(labels, x, sample_weight=w)
        assert v == pytest.approx(ref_triplet_value(labels, x, mining, margin, metric, soft, w, seed=7),
                                  rel=1e-10)
        assert g.shape == x.shape
        trip = loss.mine(labels, x)

        def f(a):  # the loss with the mined triplets held fixed
            D = ref_dist(a, a, metric)
            if mining == "all":
                return loss(labels, a, sample_weight=w)
            h = D[trip[:, 0], trip[:, 1]] - D[trip[:, 0], trip[:, 2]] + margin
            l = np.logaddexp(0, h) if soft else np.maximum(h, 0)
            return float(np.sum(w[trip[:, 0]] * l) / np.sum(w[trip[:, 0]]))

        fd_check(f, [x], [g], atol=1e-7, rtol=1e-5)


def test_batch_triplet_reductions(rng):
    labels, x = clustered(rng, 25, 3, 3)
    for mining in ("all", "hard", "semi-hard"):
        loss = fl.BatchTripletMargin(mining=mining)
        per = loss(labels, x, reduction="none")
        assert per.shape == (25,)
        assert loss(labels, x, reduction="sum") == pytest.approx(float(per.sum()), rel=1e-12)
        _, g_none = loss.value_and_grad(labels, x, reduction="none")
        _, g_sum = loss.value_and_grad(labels, x, reduction="sum")
        np.testing.assert_allclose(g_none, g_sum, rtol=1e-12)


@pytest.mark.parametrize("mining", ["all", "hard", "semi-hard", "random"])
def test_batch_without_triplets(mining):
    x = np.random.default_rng(0).standard_normal((6, 3))
    for labels in (np.zeros(6, int), np.arange(6)):  # one class; singletons only
        loss = fl.BatchTripletMargin(mining=mining)
        v, g, t = loss.value_and_grad(labels, x, return_triplets=True)
        assert v == 0.0 and np.all(g == 0) and t.shape == (0, 3)
    v, g = fl.BatchTripletMargin(mining=mining).value_and_grad(np.zeros(0, int), np.zeros((0, 3)))
    assert v == 0.0 and g.shape == (0, 3)


def test_random_mining_seeded(rng):
    labels, x = clustered(rng, 40, 3, 3)
    a = fl.BatchTripletMargin(mining="random", seed=1).mine(labels, x)
    assert np.array_equal(a, fl.BatchTripletMargin(mining="random", seed=1).mine(labels, x))
    assert not np.array_equal(a, fl.BatchTripletMargin(mining="random", seed=2).mine(labels, x))


def test_batch_triplet_vs_pytorch_metric_learning(rng):
    pytest.importorskip("pytorch_metric_learning")
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer
    labels, x = clustered(rng, 32, 5, 4, spread=1.2)
    dist = LpDistance(normalize_embeddings=False)
    cases = [  # (ours, pml loss, miner)
        (fl.BatchTripletMargin(margin=0.5, mining="hard"),
         TripletMarginLoss(margin=0.5, distance=dist, reducer=MeanReducer()), BatchHardMiner(distance=dist)),
        (fl.BatchTripletMargin(margin=0.5, mining="all"), TripletMarginLoss(margin=0.5, distance=dist), None),
        (fl.BatchTripletMargin(margin=0.2, mining="all", soft=True),
         TripletMarginLoss(margin=0.2, distance=dist, smooth_loss=True), None),
    ]
    for ours, ref, miner in cases:
        t = torch.tensor(x, requires_grad=True)
        ty = torch.tensor(labels)
        r = ref(t, ty, miner(t, ty) if miner else None)
        r.backward()
        v, g = ours.value_and_grad(labels, x)
        assert v == pytest.approx(r.item(), rel=1e-9), ours
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-7, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Center loss
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_center_loss_and_update(rng, dtype):
    labels = rng.integers(0, 4, 30)
    x = rng.standard_normal((30, 5)).astype(dtype)
    c = rng.standard_normal((5, 5)).astype(dtype)  # class 4 has no sample
    per = 0.5 * ((x.astype(np.float64) - c.astype(np.float64)[labels]) ** 2).sum(1)
    loss = fl.CenterLoss()
    assert loss(labels, x, c) == pytest.approx(float(per.mean()), rel=RTOL[dtype])
    assert loss(labels, x, c, reduction="sum") == pytest.approx(float(per.sum()), rel=RTOL[dtype])
    v, (gx, gc) = loss.value_and_grad(labels, x, c, reduction="sum")
    assert gx.dtype == dtype and gc.dtype == dtype
    if dtype == np.float64:
        fd_check(lambda a, b: float((0.5 * ((a - b[labels]) ** 2).sum(1)).sum()), [x, c], [gx, gc])
    assert np.all(gc[4] == 0)
    # The paper's update (eq. 4).
    alpha = 0.3
    expect = c.astype(np.float64).copy()
    for j in range(5):
        m = labels == j
        delta = (c[j].astype(np.float64) - x[m].astype(np.float64)).sum(0) / (1 + m.sum())
        expect[j] -= alpha * delta
    new = fl.update_centers(labels, x, c, alpha)
    np.testing.assert_allclose(new, expect, rtol=RTOL[dtype] * 10, atol=1e-6 if dtype == np.float32 else 1e-14)
    before = c.copy()
    out = fl.update_centers(labels, x, c, alpha, out=c)
    assert out is c and np.array_equal(c, new) and not np.array_equal(c, before)


def test_center_loss_combined_with_cross_entropy(rng):
    # Spec: Total = CE + lambda * Center; the gradients with respect to the features add up.
    labels = rng.integers(0, 3, 20)
    feats = rng.standard_normal((20, 3))
    centers = rng.standard_normal((3, 3))
    lam = 0.1
    ce, g_ce = fl.SparseCategoricalCrossEntropy(from_logits=True).value_and_grad(labels, feats)
    center, (g_c, _) = fl.CenterLoss().value_and_grad(labels, feats, centers)

    def total(f):
        return (fl.SparseCategoricalCrossEntropy(from_logits=True)(labels, f)
                + lam * fl.CenterLoss()(labels, f, centers))

    fd_check(total, [feats], [g_ce + lam * g_c])


# --------------------------------------------------------------------------------------------------
# CosFace / ArcFace
# --------------------------------------------------------------------------------------------------


MARGIN_CASES = [("cosface", dict(scale=16.0, margin=0.35)), ("arcface", dict(scale=16.0, margin=0.5)),
                ("arcface", dict(scale=8.0, margin=1.2)),
                ("arcface", dict(scale=8.0, margin=0.5, easy_margin=True))]


def _margin_loss(name, params):
    return (fl.CosFace if name == "cosface" else fl.ArcFace)(**params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,params", MARGIN_CASES)
def test_margin_softmax_reference_and_fd(rng, name, params, dtype):
    labels = rng.integers(0, 7, 40)
    W = rng.standard_normal((7, 6))
    x = W[labels] * 0.5 + rng.standard_normal((40, 6))
    x[0] = -W[labels[0]]  # theta near pi: the ArcFace fallback
    w = rng.uniform(0.1, 2, 40)
    loss = _margin_loss(name, params)
    arc, easy = name == "arcface", params.get("easy_margin", False)
    per = ref_margin_softmax(labels, x, W, params["scale"], params["margin"], arc, easy)
    x_, W_ = x.astype(dtype), W.astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    v, (gx, gw) = loss.value_and_grad(labels, x_, W_, sample_weight=w)
    assert v == pytest.approx(float((w * per).sum() / w.sum()), rel=tol)
    np.testing.assert_allclose(loss(labels, x_, W_, reduction="none"), per, rtol=tol)
    assert gx.dtype == dtype and gw.dtype == dtype and gx.shape == x.shape and gw.shape == W.shape
    if dtype == np.float64:
        f = lambda a, b: float((w * ref_margin_softmax(labels, a, b, params["scale"], params["margin"],  # noqa: E731
                                                       arc, easy)).sum() / w.sum())
        fd_check(f, [x, W], [gx, gw], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name,params", MARGIN_CASES[:2])
def test_margin_softmax_vs_pytorch_metric_learning(rng, name, params):
    pytest.importorskip("pytorch_metric_learning")
    torch = pytest.importorskip("torch")
    from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss
    labels = rng.integers(0, 6, 30)
    W = rng.standard_normal((6, 8))
    x = W[labels] + rng.standard_normal((30, 8))
    if name == "cosface":
        ref = CosFaceLoss(6, 8, margin=params["margin"], scale=params["scale"])
    else:
        ref = ArcFaceLoss(6, 8, margin=math.degrees(params["margin"]), scale=params["scale"])
    ref = ref.double()
    ref.W.data = torch.tensor(W.T.copy())
    t = torch.tensor(x, requires_grad=True)
    r = ref(t, torch.tensor(labels))
    r.backward()
    v, (gx, gw) = _margin_loss(name, params).value_and_grad(labels, x, W)
    assert v == pytest.approx(r.item(), rel=1e-9)
    np.testing.assert_allclose(gx, t.grad.numpy(), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(gw, ref.W.grad.numpy().T, rtol=1e-7, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Determinism, registry, CLI, errors
# --------------------------------------------------------------------------------------------------


def test_determinism_threads(rng):
    labels, x = clustered(rng, 300, 32, 20, np.float32)
    W = rng.standard_normal((200, 32)).astype(np.float32)
    calls = [lambda: fl.BatchTripletMargin(mining=m).value_and_grad(labels, x, return_triplets=True)
             for m in ("hard", "semi-hard", "random", "all")]
    calls.append(lambda: fl.ArcFace().value_and_grad(labels, x, W))
    calls.append(lambda: fl.BatchTripletMargin(mining="hard", metric="cosine").value_and_grad(labels, x))
    for call in calls:
        with fl.num_threads(1):
            a = call()
        with fl.num_threads(2):
            b = call()
        for u, v in zip(a, b):
            for uu, vv in zip(u if isinstance(u, tuple) else (u,), v if isinstance(v, tuple) else (v,)):
                assert_bitwise_equal(uu, vv)


def test_registry_and_functionals(rng):
    names = {i.name for i in fl.losses("similarity")}
    assert names == {"contrastive", "batch_contrastive", "triplet_margin", "batch_triplet_margin",
                     "center_loss", "cosface", "arcface"}
    for info in fl.losses("similarity"):
        assert getattr(fl, info.name) is info.function
        assert getattr(fl, info.cls.__name__) is info.cls
    labels, x = clustered(rng, 20, 3, 3)
    assert fl.batch_triplet_margin(labels, x, mining="all") == fl.BatchTripletMargin(mining="all")(labels, x)
    assert isinstance(fl.get_loss("arcface", margin=0.3), fl.ArcFace)
    with pytest.raises(NotImplementedError, match="Hessian"):
        fl.ArcFace().grad_hess(labels, x, x)


@pytest.mark.parametrize("name", ["contrastive", "batch_contrastive", "triplet_margin",
                                  "batch_triplet_margin", "center_loss", "cosface", "arcface"])
def test_cli_eval_synthetic(name, capsys):
    from fastloss.cli import main
    assert main(["eval", name, "--synthetic", "64", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"value"' in out and "grad_l2_norm" in out


def test_inputs_by_position_or_name(rng):
    # Like the library's loss(y_true, y_pred, sample_weight, **inputs): positional arguments fill
    # the inputs not given by name; one more positional is the sample weight.
    a, p, n = (rng.standard_normal((12, 4)) for _ in range(3))
    w = rng.uniform(0.5, 1.5, 12)
    loss = fl.TripletMargin(margin=2.0)
    v = loss(a, p, n, sample_weight=w)
    assert loss(a, p, n, w) == v and loss(a, p, w, negative=n) == v
    assert loss(anchor=a, positive=p, negative=n) == loss(a, p, n)
    labels = rng.integers(0, 3, 12)
    W = rng.standard_normal((3, 4))
    assert fl.CosFace()(labels, a, weight=W) == fl.CosFace()(labels, a, W)
    assert fl.cosface(labels, a, weight=W, margin=0.2) == fl.CosFace(margin=0.2)(labels, a, W)


def test_gradient_accumulator_streams_decomposable_losses(rng):
    # CosFace's mean is over rows: micro-batches reproduce the full batch exactly.
    labels = rng.integers(0, 5, 40)
    x, W = rng.standard_normal((40, 6)), rng.standard_normal((5, 6))
    loss = fl.CosFace(scale=10.0)
    acc = fl.GradientAccumulator(loss)
    parts = [acc.update(labels[i:i + 16], x[i:i + 16], weight=W) for i in range(0, 40, 16)]
    v, (gx, gw) = loss.value_and_grad(labels, x, W)
    assert acc.value() == pytest.approx(v, rel=1e-12)
    np.testing.assert_allclose(np.concatenate([g[0] for g in parts]) * acc.scale, gx, rtol=1e-10)
    np.testing.assert_allclose(sum(g[1] for g in parts) * acc.scale, gw, rtol=1e-10, atol=1e-15)


def test_errors(rng):
    labels, x = clustered(rng, 10, 3, 2)
    W = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        fl.BatchTripletMargin()(labels[:9], x)
    with pytest.raises(TypeError, match="labels must be an integer"):
        fl.BatchTripletMargin()(labels.astype(float), x)
    with pytest.raises(ValueError, match="embeddings must be"):
        fl.BatchTripletMargin()(labels, x[:, 0])
    with pytest.raises(TypeError, match="real numeric"):
        fl.BatchContrastive()(labels, x.astype(complex))
    with pytest.raises(ValueError, match="same dimension D"):
        fl.ArcFace()(labels % 4, x, rng.standard_normal((4, 5)))
    with pytest.raises(ValueError, match=r"labels\[\d+\] = \d+ is not a class index"):
        fl.CosFace()(labels + 4, x, W)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        fl.TripletMargin(margin=-1.0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        fl.BatchTripletMargin(margin=-0.1)
    with pytest.raises(ValueError, match="margin must lie in"):
        fl.ArcFace(margin=4.0)
    with pytest.raises(ValueError, match="mining must be one of"):
        fl.BatchTripletMargin(mining="hardest")
    with pytest.raises(ValueError, match="metric must be one of"):
        fl.pairwise_distances(x, metric="manhattan")
    with pytest.raises(ValueError, match="same shape"):
        fl.TripletMargin()(x, x, x[:5])
    with pytest.raises(ValueError, match="similar must hold 0 or 1"):
        fl.Contrastive()(np.full(10, 2), x, x)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        fl.CenterLoss()(labels, x, W[:2], sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="p must be >= 1"):
        fl.TripletMargin(p=0.5)
    with pytest.raises(TypeError, match="missing negative"):
        fl.TripletMargin()(x, x)
    with pytest.raises(TypeError, match="positional arguments"):
        fl.TripletMargin()(x, x, x, np.ones(10), np.ones(10))
    with pytest.raises(TypeError, match="unexpected keyword"):
        fl.ArcFace()(labels, x, weights=W)
    c = np.zeros((2, 3))
    with pytest.raises(ValueError, match="alpha must lie"):
        fl.update_centers(labels, x, c, alpha=2.0)
    ro = c.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        fl.update_centers(labels, x, c, out=ro)


def test_strided_inputs_equal_contiguous(rng):
    labels, x = clustered(rng, 30, 8, 4)
    big = np.zeros((30, 16))
    big[:, ::2] = x
    view = big[:, ::2]
    for loss in (fl.BatchTripletMargin(mining="semi-hard"), fl.BatchContrastive()):
        assert_bitwise_equal(loss.value_and_grad(labels, view)[1], loss.value_and_grad(labels, x)[1])
    W = rng.standard_normal((4, 16))[:, ::2]
    a, b = fl.ArcFace().value_and_grad(labels, view, W)[1], fl.ArcFace().value_and_grad(
        labels, x, np.ascontiguousarray(W))[1]
    for u, v in zip(a, b):
        assert_bitwise_equal(u, v)


def test_nan_embeddings_propagate(rng):
    labels, x = clustered(rng, 20, 3, 3)
    x[4, 1] = np.nan
    for mining in ("all", "hard", "semi-hard", "random"):
        assert math.isnan(fl.BatchTripletMargin(mining=mining)(labels, x))
    W = rng.standard_normal((3, 3))
    assert math.isnan(fl.ArcFace()(labels, x, W))


def test_doctests():
    import doctest

    import fastloss.similarity as mod
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 5 and result.failed == 0, result
