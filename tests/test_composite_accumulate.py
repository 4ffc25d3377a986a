"""Exact gradient accumulation (fastloss.GradientAccumulator): random chunkings and merges of
partial states reproduce the one-shot call (1e-12 relative in float64), for elementwise, binary
and multi-class losses with sample weights, class weights and ignore_index."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastloss as fl
from fastloss.accumulate import _ExactSum

RTOL = 1e-12
N = 997  # rows: ragged chunks


def assert_grad_close(got, expected):
    """1e-12 relative to the gradient's scale: an element that is a difference of nearly equal
    terms (p_k - 1 scaled by 1/N before or after) keeps only that absolute accuracy."""
    np.testing.assert_allclose(got, expected, rtol=RTOL,
                               atol=RTOL * float(np.abs(expected).max(initial=0.0)) or 1e-300)


def _ints(rng, k, n):
    return rng.integers(0, k, n)


# (id, loss, make(rng) -> (y_true, y_pred)); y_pred's first axis is the row axis.
def _regression(rng):
    y = rng.standard_normal(N)
    return y, y + rng.standard_normal(N)


def _quantiles(rng):
    y = rng.standard_normal(N)
    return y, y[:, None] + rng.standard_normal((N, 3))


def _binary(rng):
    return (rng.random(N) < 0.4).astype(np.float64), 2 * rng.standard_normal(N)


def _sparse(rng, k=5):
    y = _ints(rng, k, N)
    y[rng.random(N) < 0.15] = -100  # ignored rows
    return y, 2 * rng.standard_normal((N, k))


def _sparse_no_ignore(rng, k=5):
    return _ints(rng, k, N), 2 * rng.standard_normal((N, k))


def _dense(rng, k=4):
    t = rng.random((N, k))
    return t / t.sum(1, keepdims=True), rng.standard_normal((N, k))


CW5 = [0.5, 2.0, 1.0, 0.0, 3.0]
CASES = [
    ("mse", fl.MSE(), _regression),
    ("huber-sum", fl.Huber(delta=0.7, reduction="sum"), _regression),
    ("quantile-vector", fl.Quantile(quantile=[0.1, 0.5, 0.9]), _quantiles),
    ("bce-logits", fl.BinaryCrossEntropy(from_logits=True, label_smoothing=0.1), _binary),
    ("sparse-ce-cw-ignore", fl.SparseCategoricalCrossEntropy(
        from_logits=True, class_weight=CW5, ignore_index=-100, label_smoothing=0.1), _sparse),
    ("sparse-ce-probs", fl.SparseCategoricalCrossEntropy(class_weight=CW5), None),
    ("sparse-focal-alpha-ignore", fl.SparseCategoricalFocal(
        gamma=2.0, alpha=CW5, ignore_index=-100), _sparse),
    ("dense-ce-cw", fl.CategoricalCrossEntropy(from_logits=True, class_weight=[1, 2, 0.5, 1]), _dense),
    ("multi-hinge-cw", fl.MultiClassHinge(p=2, class_weight=CW5), _sparse_no_ignore),
    ("consistency-mse", fl.ConsistencyMSE(from_logits=True, temperature=2.0), _dense),
]


def _inputs(case, rng):
    name, loss, make = case
    if make is None:  # probabilities for the probability-space cross-entropy
        y, z = _sparse_no_ignore(rng)
        p = np.exp(z)
        return y, p / p.sum(1, keepdims=True)
    return make(rng)


def _random_cuts(rng, n, k):
    """k chunks with random sizes, some of them empty."""
    cuts = np.sort(rng.integers(0, n + 1, k - 1))
    if k > 2:
        cuts[rng.random(k - 1) < 0.1] = cuts[0]  # repeated cuts -> empty chunks
    return np.concatenate([[0], np.sort(cuts), [n]]).astype(np.int64)


def _accumulate(loss, y, p, w, cuts):
    acc = fl.GradientAccumulator(loss)
    grads = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        grads.append(acc.update(y[a:b], p[a:b], None if w is None else w[a:b]))
    return acc, np.concatenate(grads)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_random_chunkings_equal_one_shot(rng, case, weighted):
    loss = case[1]
    y, p = _inputs(case, rng)
    w = rng.uniform(0, 2, N) if weighted else None
    value, grad = loss.value_and_grad(y, p, w)
    for k in (1, 2, 7, 100):
        acc, g = _accumulate(loss, y, p, w, _random_cuts(rng, N, k))
        assert acc.value() == pytest.approx(value, rel=RTOL, abs=0.0)
        assert_grad_close(g * acc.scale, grad)
        assert acc.batches == k


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_normalizer_is_the_loss_own_mean_denominator(rng, case):
    loss = case[1]
    y, p = _inputs(case, rng)
    w = rng.uniform(0, 2, N)
    for weights in (None, w):
        total = loss(y, p, weights, reduction="sum")
        mean = loss(y, p, weights, reduction="mean")
        _, norm = fl.partial_sum(loss, y, p, weights)
        assert total / norm == pytest.approx(mean, rel=RTOL)


def test_row_weights_broadcast_over_trailing_axis(rng):
    # A weight per row of a (N, 3) elementwise prediction repeats over the 3 columns.
    loss = fl.Quantile(quantile=[0.2, 0.5, 0.8])
    y, p = _quantiles(rng)
    w = rng.uniform(0, 1, N)
    acc, g = _accumulate(loss, y, p, w, [0, 10, 500, N])
    assert acc.normalizer == pytest.approx(3 * float(w.sum()), rel=RTOL)
    value, grad = loss.value_and_grad(y, p, w)
    assert acc.value() == pytest.approx(value, rel=RTOL)
    np.testing.assert_allclose(g * acc.scale, grad, rtol=RTOL)


def test_merge_pickled_partial_states_any_order(rng):
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=CW5, ignore_index=-100)
    y, p = _sparse(rng)
    w = rng.uniform(0, 2, N)
    cuts = _random_cuts(rng, N, 12)
    # Each "machine" accumulates some chunks and ships its state.
    parts = [fl.GradientAccumulator(loss) for _ in range(3)]
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        parts[i % 3].update(y[a:b], p[a:b], w[a:b], want_grad=False)
    shipped = [pickle.loads(pickle.dumps(acc)) for acc in parts]
    merged = [shipped[0].merge(shipped[1], shipped[2]), shipped[2].merge(shipped[0]).merge(shipped[1]),
              shipped[1].merge(shipped[2], shipped[0])]
    values = {m.value() for m in merged}
    assert len(values) == 1, "merge order changed the result"
    assert merged[0].batches == 12
    assert merged[0].value() == pytest.approx(loss(y, p, w), rel=RTOL, abs=0.0)
    assert merged[0].normalizer == pytest.approx(fl.partial_sum(loss, y, p, w)[1], rel=RTOL)
    # merging leaves its inputs alone
    assert parts[0].value() == shipped[0].value()


def test_arrival_order_does_not_change_the_result(rng):
    loss = fl.MSE()
    y, p = _regression(rng)
    w = 10.0 ** rng.uniform(-8, 8, N)  # widely spread magnitudes: rounding would show
    cuts = _random_cuts(rng, N, 30)
    chunks = list(zip(cuts[:-1], cuts[1:]))
    results = []
    for order in (chunks, chunks[::-1], [chunks[i] for i in rng.permutation(len(chunks))]):
        acc = fl.GradientAccumulator(loss)
        for a, b in order:
            acc.update(y[a:b], p[a:b], w[a:b], want_grad=False)
        results.append((acc.total, acc.normalizer))
    assert results[0] == results[1] == results[2]


def test_exact_sum_is_exact():
    s = _ExactSum()
    for x in (1e16, 1.0, -1e16, 1e-3, 3.0, -3.0):
        s.add(x)
    assert s.value() == 1.0 + 1e-3
    assert math.fsum([0.1] * 10) == 1.0
    t = _ExactSum()
    for _ in range(10):
        t.add(0.1)
    assert t.value() == 1.0
    u = _ExactSum()
    u.add(math.inf)
    u.add(1.0)
    assert u.value() == math.inf
    u.add(-math.inf)
    assert math.isnan(u.value())


def test_nan_propagates(rng):
    y, p = _regression(rng)
    p[5] = np.nan
    acc = fl.GradientAccumulator(fl.MSE())
    acc.update(y[:10], p[:10])
    acc.update(y[10:], p[10:])
    assert math.isnan(acc.value())


def test_sum_reduction_scale_is_one(rng):
    loss = fl.MAE(reduction="sum")
    y, p = _regression(rng)
    acc, g = _accumulate(loss, y, p, None, [0, 300, N])
    assert acc.scale == 1.0
    value, grad = loss.value_and_grad(y, p)
    assert acc.value() == pytest.approx(value, rel=RTOL)
    np.testing.assert_array_equal(g, grad)


def test_float32_chunks(rng):
    loss = fl.MSE()
    y, p = (a.astype(np.float32) for a in _regression(rng))
    acc, g = _accumulate(loss, y, p, None, [0, 100, 400, N])
    value, grad = loss.value_and_grad(y, p)
    assert g.dtype == np.float32
    assert acc.value() == pytest.approx(value, rel=2e-6)
    np.testing.assert_allclose(g * np.float32(acc.scale), grad, rtol=1e-6)


def test_grad_out_and_want_grad(rng):
    y, p = _regression(rng)
    acc = fl.GradientAccumulator(fl.MSE())
    buf = np.empty(100)
    g = acc.update(y[:100], p[:100], grad_out=buf)
    assert g is buf
    np.testing.assert_allclose(buf, 2 * (p[:100] - y[:100]), rtol=1e-15)
    assert acc.update(y[100:], p[100:], want_grad=False) is None
    assert acc.value() == pytest.approx(fl.MSE()(y, p), rel=RTOL)


def test_determinism_threads(rng):
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=CW5, ignore_index=-100)
    y = _ints(rng, 5, 200_000)
    p = rng.standard_normal((200_000, 5))
    out = []
    for threads in (1, 2):
        with fl.num_threads(threads):
            acc, g = _accumulate(loss, y, p, None, [0, 70_000, 200_000])
            out.append((acc.value(), g.tobytes()))
    assert out[0] == out[1]


def test_empty_micro_batch_policy(rng):
    y, p = _regression(rng)
    acc = fl.GradientAccumulator(fl.MSE())
    assert math.isnan(acc.value()) and acc.scale == 0.0  # nothing added: the mean of nothing
    g = acc.update(y[:0], p[:0])
    assert g.shape == (0,) and acc.batches == 1 and acc.normalizer == 0.0
    assert math.isnan(acc.value())
    acc.update(y, p)
    assert acc.value() == pytest.approx(fl.MSE()(y, p), rel=RTOL)

    strict = fl.GradientAccumulator(fl.MSE(), on_empty="raise")
    with pytest.raises(ValueError, match="empty micro-batch.*on_empty='raise'"):
        strict.update(y[:0], p[:0])
    assert strict.batches == 0
    rows = fl.GradientAccumulator(fl.SparseCategoricalCrossEntropy(from_logits=True), on_empty="raise")
    with pytest.raises(ValueError, match=r"\(0, 5\)"):
        rows.update(np.zeros(0, dtype=np.int64), np.zeros((0, 5)))


def test_all_rows_ignored_is_nan_with_zero_scale(rng):
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, ignore_index=-1)
    acc = fl.GradientAccumulator(loss)
    g = acc.update(np.full(4, -1), rng.standard_normal((4, 3)))
    assert np.all(g == 0) and acc.scale == 0.0 and math.isnan(acc.value())
    assert math.isnan(loss(np.full(4, -1), rng.standard_normal((4, 3))))  # as the one-shot mean


def test_errors(rng):
    with pytest.raises(TypeError, match="fastloss.Loss"):
        fl.GradientAccumulator(lambda y, p: 0.0)
    with pytest.raises(ValueError, match="reduction 'mean' or 'sum'"):
        fl.GradientAccumulator(fl.MSE(reduction="none"))
    with pytest.raises(ValueError, match="on_empty"):
        fl.GradientAccumulator(fl.MSE(), on_empty="ignore")
    a, b = fl.GradientAccumulator(fl.Huber(delta=1.0)), fl.GradientAccumulator(fl.Huber(delta=2.0))
    with pytest.raises(ValueError, match="different losses"):
        a.merge(b)
    with pytest.raises(ValueError, match="different losses"):
        a.merge(fl.GradientAccumulator(fl.Huber(delta=1.0, reduction="sum")))
    with pytest.raises(TypeError, match="GradientAccumulator"):
        a.merge(3)
    # a bad micro-batch is rejected before it changes the state
    acc = fl.GradientAccumulator(fl.SparseCategoricalCrossEntropy(from_logits=True))
    acc.update(np.array([0, 1]), np.zeros((2, 3)))
    before = (acc.total, acc.normalizer, acc.batches)
    with pytest.raises(ValueError, match="not a class index"):
        acc.update(np.array([0, 7]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        acc.update(np.array([0, 1, 2]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="sample_weight"):
        acc.update(np.array([0, 1]), np.zeros((2, 3)), np.array([1.0, -1.0]))
    assert (acc.total, acc.normalizer, acc.batches) == before


def test_every_registered_loss_streams_by_its_own_denominator():
    # Streaming needs each loss's mean denominator, which comes from the same kernel call as the
    # sum; a loss that compares whole batches says so instead.
    from fastloss.cli import synthetic

    for info in fl.losses():
        loss = info.cls()
        y, p, inputs = synthetic(loss, 50, seed=1)  # the CLI's data suits every registered loss
        if not loss.chunkable:
            with pytest.raises(NotImplementedError, match="whole batches"):
                fl.partial_sum(loss, y, p, **inputs)
            with pytest.raises(NotImplementedError, match="whole batches"):
                fl.GradientAccumulator(loss)
            continue
        items = np.shape(p[0] if isinstance(p, list) else p)[:1]
        if "group" in inputs:  # losses over query groups weigh each group
            items = (len(inputs["group"]),)
        w = np.random.default_rng(2).uniform(0, 2, items)
        for weights in (None, w):
            total, norm = fl.partial_sum(loss, y, p, sample_weight=weights, **inputs)
            assert total == loss(y, p, weights, reduction="sum", **inputs), info.name
            assert total / norm == pytest.approx(loss(y, p, weights, **inputs), rel=RTOL), info.name


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), k=st.integers(1, 12), seed=st.integers(0, 2**32 - 1),
       zero_weights=st.booleans())
def test_property_chunkings(n, k, seed, zero_weights):
    rng = np.random.default_rng(seed)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=CW5, ignore_index=-100)
    y = rng.integers(0, 5, n)
    y[rng.random(n) < 0.2] = -100
    z = 3 * rng.standard_normal((n, 5))
    w = rng.uniform(0, 2, n)
    if zero_weights:
        w[rng.random(n) < 0.5] = 0.0
    cuts = _random_cuts(rng, n, k)
    acc, g = _accumulate(loss, y, z, w, cuts)
    value, grad = loss.value_and_grad(y, z, w)
    if math.isnan(value):  # nothing counted: NaN and a zero gradient both ways
        assert math.isnan(acc.value()) and acc.scale == 0.0 and not np.any(g * acc.scale)
    else:
        assert acc.value() == pytest.approx(value, rel=RTOL, abs=0.0)
        assert_grad_close(g * acc.scale, grad)
