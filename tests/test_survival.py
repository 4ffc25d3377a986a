"""Survival losses: CoxPH (Breslow and Efron ties) against a brute-force partial likelihood, AFT
against the closed-form log-likelihood of each censoring kind, derivatives against finite
differences, XGBoost training parity with survival:cox and survival:aft, and the concordance index
against an O(n^2) count."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import fastloss as fl

# ----------------------------------------------------------------------------------------------
# references (float64, written from the definitions, O(n^2))
# ----------------------------------------------------------------------------------------------


def cox_reference(time, event, eta, weight=None, ties="breslow"):
    """Negative log partial likelihood, looping over the distinct event times; Efron's weighted
    form as R's survival::coxph (average event weight times the sum over the d tied terms)."""
    time, event, eta = (np.asarray(a, dtype=np.float64) for a in (time, event, eta))
    w = np.ones_like(eta) if weight is None else np.asarray(weight, dtype=np.float64)
    total = 0.0
    for t in np.unique(time[event == 1]):
        dead = (time == t) & (event == 1)
        at_risk = time >= t
        S = np.sum(w[at_risk] * np.exp(eta[at_risk]))
        E = np.sum(w[dead] * np.exp(eta[dead]))
        d = int(dead.sum())
        total -= np.sum(w[dead] * eta[dead])
        if ties == "breslow":
            total += np.sum(w[dead]) * math.log(S)
        else:
            total += np.sum(w[dead]) / d * sum(math.log(S - r / d * E) for r in range(d))
    return total


def finite_differences(f, x, h=1e-5, hh=1e-3):
    """Central differences of f at x: the gradient (step h) and the Hessian diagonal (second
    differences, step hh: rounding error ~ eps |f| / hh^2)."""
    g, hd = np.empty_like(x), np.empty_like(x)
    f0 = f(x)
    for i in range(x.size):
        xp, xm, xpp, xmm = x.copy(), x.copy(), x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        xpp[i] += hh
        xmm[i] -= hh
        g[i] = (f(xp) - f(xm)) / (2 * h)
        hd[i] = (f(xpp) - 2 * f0 + f(xmm)) / (hh * hh)
    return g, hd


def survival_data(n, seed, ties=True):
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal(n)
    time = rng.exponential(size=n) * np.exp(-eta)
    if ties:
        time = np.round(time, 1) + 0.1
    event = (rng.random(n) < 0.7).astype(np.int8)
    event[0] = 1
    pred = eta + 0.3 * rng.standard_normal(n)
    weight = rng.uniform(0.2, 2.0, n)
    return time, event, pred, weight


# ----------------------------------------------------------------------------------------------
# CoxPH
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cox_value_matches_brute_force(ties, weighted):
    time, event, pred, weight = survival_data(200, seed=1)
    assert len(np.unique(time)) < 150  # many ties
    w = weight if weighted else None
    ref = cox_reference(time, event, pred, w, ties)
    loss = fl.CoxPH(ties=ties)
    assert loss(time, pred, w, event=event, reduction="sum") == pytest.approx(ref, rel=1e-12)
    norm = np.sum(event * (weight if weighted else 1.0))
    assert loss(time, pred, w, event=event) == pytest.approx(ref / norm, rel=1e-12)
    per_item = loss(time, pred, w, event=event, reduction="none")
    assert per_item.shape == pred.shape
    assert np.all(per_item[event == 0] == 0)
    assert per_item.sum() == pytest.approx(ref, rel=1e-12)
    # XGBoost's sign-encoded labels give the same value
    signed = np.where(event == 1, time, -time)
    assert loss(signed, pred, w, reduction="sum") == loss(time, pred, w, event=event, reduction="sum")


def test_cox_efron_and_breslow_agree_without_ties_and_differ_with():
    time, event, pred, _ = survival_data(100, seed=2, ties=False)
    b = fl.CoxPH(ties="breslow")(time, pred, event=event)
    e = fl.CoxPH(ties="efron")(time, pred, event=event)
    assert b == pytest.approx(e, rel=1e-14)
    time, event, pred, _ = survival_data(100, seed=2, ties=True)
    assert fl.CoxPH(ties="breslow")(time, pred, event=event) > fl.CoxPH(ties="efron")(time, pred, event=event)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_cox_gradient_and_hessian_match_finite_differences(ties, reduction):
    time, event, pred, weight = survival_data(40, seed=3)
    ref = lambda x: cox_reference(time, event, x, weight, ties)  # noqa: E731
    g_fd, h_fd = finite_differences(ref, pred)
    scale = 1.0 if reduction == "sum" else 1.0 / np.sum(weight * event)
    value, grad, hess = fl.CoxPH(ties=ties).value_grad_hess(time, pred, weight, event=event,
                                                             reduction=reduction)
    assert value == pytest.approx(ref(pred) * scale, rel=1e-12)
    np.testing.assert_allclose(grad, g_fd * scale, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hess, h_fd * scale, rtol=1e-3, atol=1e-5)


def test_cox_breslow_matches_xgboost_formula_without_ties():
    """XGBoost's survival:cox gradient (regression_obj.cu), transcribed: equal for distinct times."""
    time, event, pred, _ = survival_data(300, seed=4, ties=False)
    y = np.where(event == 1, time, -time)
    order = np.argsort(np.abs(y), kind="stable")
    exp_p_sum = np.sum(np.exp(pred))
    r_k = s_k = last_exp_p = last_abs_y = acc = 0.0
    grad, hess = np.empty(300), np.empty(300)
    for ind in order:
        exp_p = math.exp(pred[ind])
        acc += last_exp_p
        if last_abs_y < abs(y[ind]):
            exp_p_sum -= acc
            acc = 0.0
        if y[ind] > 0:
            r_k += 1 / exp_p_sum
            s_k += 1 / exp_p_sum ** 2
        grad[ind] = exp_p * r_k - (y[ind] > 0)
        hess[ind] = exp_p * r_k - exp_p ** 2 * s_k
        last_abs_y, last_exp_p = abs(y[ind]), exp_p
    g, h = fl.CoxPH().grad_hess(y, pred, reduction="sum")
    np.testing.assert_allclose(g, grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h, hess, rtol=1e-9, atol=1e-12)


def test_cox_float32_and_large_predictions():
    time, event, pred, weight = survival_data(500, seed=5)
    v64, g64, h64 = fl.CoxPH(ties="efron").value_grad_hess(time, pred, weight, event=event)
    v32, g32, h32 = fl.CoxPH(ties="efron").value_grad_hess(time.astype(np.float32),
                                                            pred.astype(np.float32), weight,
                                                            event=event)
    assert g32.dtype == np.float32 and h32.dtype == np.float32
    assert v32 == pytest.approx(v64, rel=1e-6)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)
    # a shift of every log hazard ratio changes nothing, even beyond exp's range
    v, g, h = fl.CoxPH(ties="efron").value_grad_hess(time, pred + 1000.0, weight, event=event)
    assert v == pytest.approx(v64, rel=1e-9)
    np.testing.assert_allclose(g, g64, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(h, h64, rtol=1e-7, atol=1e-10)


def test_cox_edge_cases():
    loss = fl.CoxPH()
    # no events: sum 0, mean 0, zero gradient
    value, grad = loss.value_and_grad(np.array([1.0, 2.0]), np.array([0.3, -0.2]), event=[0, 0])
    assert value == 0.0 and np.all(grad == 0)
    assert loss(np.array([-1.0, -2.0]), np.array([0.3, -0.2]), reduction="sum") == 0.0
    # one sample: its own risk set
    assert loss(np.array([3.0]), np.array([5.0])) == 0.0
    # empty
    assert loss(np.zeros(0), np.zeros(0), reduction="sum") == 0.0
    # NaN prediction propagates
    assert math.isnan(loss(np.array([1.0, 2.0]), np.array([np.nan, 0.0])))
    # -0 and +0 are the same time
    a = loss(np.array([0.0, -0.0, 1.0]), np.array([0.1, 0.2, 0.3]), event=[1, 1, 0], reduction="sum")
    b = loss(np.array([0.0, 0.0, 1.0]), np.array([0.1, 0.2, 0.3]), event=[1, 1, 0], reduction="sum")
    assert a == b


def test_cox_errors_leave_buffers_untouched():
    loss = fl.CoxPH()
    grad_out = np.full(3, -7.0)
    with pytest.raises(ValueError, match=r"y_true must not hold NaN; y_true\[1\]"):
        loss.value_and_grad(np.array([1.0, np.nan, 2.0]), np.zeros(3), grad_out=grad_out)
    with pytest.raises(ValueError, match=r"non-negative times when event= is given.*y_true\[2\] = -2.0"):
        loss.value_and_grad(np.array([1.0, 2.0, -2.0]), np.zeros(3), event=[1, 0, 1],
                            grad_out=grad_out)
    with pytest.raises(ValueError, match=r"event must hold booleans or 0/1; event\[1\] = 2"):
        loss(np.array([1.0, 2.0, 3.0]), np.zeros(3), event=[1, 2, 0])
    with pytest.raises(ValueError, match="event must have the shape"):
        loss(np.array([1.0, 2.0, 3.0]), np.zeros(3), event=[1, 0])
    with pytest.raises(ValueError, match="y_pred must be 1-D"):
        loss(np.ones((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        loss(np.ones(4), np.zeros(3))
    with pytest.raises(ValueError, match="ties must be one of"):
        fl.CoxPH(ties="exact")
    assert np.all(grad_out == -7.0)


def numpy_cox(time, event, eta, weight=None):
    """Breslow's value, gradient and Hessian diagonal, vectorized (argsort and cumulative sums)."""
    w = np.ones_like(eta) if weight is None else weight
    order = np.argsort(time, kind="stable")
    t, e, d, ws = time[order], eta[order], event[order].astype(np.float64), w[order]
    u = ws * np.exp(e - e.max())
    new = np.r_[True, t[1:] != t[:-1]]
    group = np.cumsum(new) - 1
    S = np.cumsum(u[::-1])[::-1][np.flatnonzero(new)]
    dead = np.bincount(group, weights=d * ws)
    value = -np.sum(d * ws * (e - e.max())) + np.sum(dead * np.log(S))
    A, A2 = np.cumsum(dead / S)[group], np.cumsum(dead / S ** 2)[group]
    g, h = np.empty_like(eta), np.empty_like(eta)
    g[order] = u * A - d * ws
    h[order] = u * A - u * u * A2
    return value, g, h


def dense_ranks(time):
    """Times replaced by 1, 2, ... in their order (ties share one): the partial likelihood depends
    on the order of the times alone."""
    return np.unique(time, return_inverse=True)[1].astype(np.float64) + 1.0


@pytest.mark.parametrize("kind", ["close", "wide", "tiny", "zeros", "float32", "days"])
@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_depends_on_the_order_of_the_times_alone(kind, ties):
    """Times that agree in their leading bits and differ in the last ones, spread over the whole
    float range, subnormal, -0.0 next to +0.0, float32 or whole numbers: the same results as their
    ranks."""
    rng = np.random.default_rng(11)
    n = 3000
    if kind == "close":  # differing in the last bits only, next to a far larger time
        time = 1.0 + rng.integers(0, 64, n) * np.finfo(np.float64).eps
        time[0] = 1e10
    elif kind == "wide":  # last-bit differences next to 1e-300 and 1e300
        base = rng.choice([1e-300, 1.0, 1e300], n)
        time = base * (1.0 + rng.integers(0, 8, n) * np.finfo(np.float64).eps)
    elif kind == "tiny":
        time = rng.integers(0, 50, n) * 5e-324
    elif kind == "zeros":
        time = rng.choice([0.0, -0.0, 1.0, np.inf], n)
    elif kind == "float32":
        time = np.round(rng.exponential(size=n), 2).astype(np.float32)
    else:
        time = rng.integers(1, 3650, n).astype(np.float64)
    event = rng.random(n) < 0.6
    pred, weight = rng.standard_normal(n), rng.uniform(0.5, 2.0, n)
    loss = fl.CoxPH(ties=ties, reduction="sum")
    v, g, h = loss.value_grad_hess(time, pred, weight, event=event)
    v0, g0, h0 = loss.value_grad_hess(dense_ranks(time), pred, weight, event=event)
    assert v == pytest.approx(v0, rel=1e-12)
    np.testing.assert_allclose(g, g0, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(h, h0, rtol=1e-11, atol=1e-13)
    per_item = loss(time, pred, weight, event=event, reduction="none")
    np.testing.assert_allclose(per_item, loss(dense_ranks(time), pred, weight, event=event,
                                              reduction="none"), rtol=1e-11, atol=1e-13)
    if ties == "breslow" and kind != "float32":
        vr, gr, hr = numpy_cox(time.astype(np.float64) + 0.0, event, pred, weight)
        assert v == pytest.approx(vr, rel=1e-10)
        np.testing.assert_allclose(g, gr, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(h, hr, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_cox_large_batches_match_numpy_for_any_thread_count(weighted):
    """Above the size where the risk sets are walked in two halves, with many ties and with
    nearly distinct float64 times; bitwise the same with 1 and 2 threads."""
    rng = np.random.default_rng(12)
    n = 200_003
    wide = rng.choice([1e-300, 1.0, 1e300], n) * (1.0 + rng.integers(0, 8, n) * 2.0 ** -52)
    for time in (np.round(rng.exponential(size=n), 2) + 0.01, rng.exponential(size=n) * 1e3, wide):
        event = rng.random(n) < 0.7
        pred = rng.standard_normal(n)
        weight = rng.uniform(0.5, 2.0, n) if weighted else None
        loss = fl.CoxPH(reduction="sum")
        with fl.num_threads(1):
            one = loss.value_grad_hess(time, pred, weight, event=event)
        with fl.num_threads(2):
            two = loss.value_grad_hess(time, pred, weight, event=event)
        assert one[0] == two[0]
        assert np.array_equal(one[1], two[1]) and np.array_equal(one[2], two[2])
        v, g, h = numpy_cox(time, event, pred, weight)
        assert one[0] == pytest.approx(v, rel=1e-10)
        np.testing.assert_allclose(one[1], g, rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(one[2], h, rtol=1e-8, atol=1e-11)
        # a smaller call in between (the scratch memory is reused) changes nothing
        loss.value_grad_hess(time[:1000], pred[:1000], event=event[:1000])
        again = loss.value_grad_hess(time, pred, weight, event=event)
        assert again[0] == two[0] and np.array_equal(again[1], two[1])


def test_cox_reports_the_first_bad_time_in_any_chunk():
    n = 100_000
    time, pred = np.linspace(1.0, 2.0, n), np.zeros(n)
    grad_out = np.full(n, -7.0)
    bad = time.copy()
    bad[[70_000, 90_000]] = np.nan
    with pytest.raises(ValueError, match=r"must not hold NaN; y_true\[70000\] = nan"):
        fl.CoxPH().value_and_grad(bad, pred, grad_out=grad_out)
    bad = time.copy()
    bad[50_001] = -3.0
    with pytest.raises(ValueError, match=r"y_true\[50001\] = -3.0"):
        fl.CoxPH().value_and_grad(bad, pred, event=np.ones(n, bool), grad_out=grad_out)
    assert np.all(grad_out == -7.0)


def test_cox_not_chunkable_and_registered():
    assert fl.CoxPH.chunkable is False
    names = {info.name: info for info in fl.losses(family="survival")}
    assert {"cox_ph", "aft"} <= set(names)
    assert fl.get_loss("cox_ph", ties="efron") == fl.CoxPH(ties="efron")
    time, event, pred, _ = survival_data(30, seed=6)
    assert fl.cox_ph(time, pred, event=event, ties="efron") == fl.CoxPH(ties="efron")(time, pred, event=event)


# ----------------------------------------------------------------------------------------------
# AFT
# ----------------------------------------------------------------------------------------------

DISTRIBUTIONS = {"normal": stats.norm, "logistic": stats.logistic, "extreme": stats.gumbel_l}


def aft_reference(lower, upper, pred, distribution, sigma):
    """The negative log-likelihood of each censoring kind from scipy.stats (float64)."""
    D = DISTRIBUTIONS[distribution]
    out = np.empty(len(pred))
    for i, (lo, up, p) in enumerate(zip(lower, upper, pred)):
        zl = (math.log(lo) - p) / sigma if lo > 0 else -np.inf
        zu = (math.log(up) - p) / sigma if np.isfinite(up) else np.inf
        if lo == up:
            out[i] = -D.logpdf(zl) + math.log(sigma * lo)
        elif np.isinf(up):
            out[i] = -D.logsf(zl)
        elif lo == 0:
            out[i] = -D.logcdf(zu)
        elif zl > 0:  # both bounds in the upper tail: the survival functions keep the digits
            out[i] = -math.log(D.sf(zl) - D.sf(zu))
        else:
            out[i] = -math.log(D.cdf(zu) - D.cdf(zl))
    return out


def aft_data(n, seed):
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(n)
    t = np.exp(pred + 0.8 * rng.standard_normal(n))
    kind = np.arange(n) % 4  # observed, right, left, interval
    lower = np.select([kind == 0, kind == 1, kind == 2], [t, 0.8 * t, 0.0], 0.7 * t)
    upper = np.select([kind == 0, kind == 1, kind == 2], [t, np.inf, 1.3 * t], 1.6 * t)
    return lower, upper, pred, kind


@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
def test_aft_value_matches_closed_form_per_censoring_kind(distribution, sigma):
    lower, upper, pred, kind = aft_data(400, seed=7)
    loss = fl.AFT(distribution=distribution, sigma=sigma)
    values = loss(lower, pred, upper=upper, reduction="none")
    ref = aft_reference(lower, upper, pred, distribution, sigma)
    for k in range(4):
        np.testing.assert_allclose(values[kind == k], ref[kind == k], rtol=1e-11, atol=1e-13,
                                   err_msg=f"censoring kind {k}")
    assert loss(lower, pred, upper=upper) == pytest.approx(ref.mean(), rel=1e-12)
    w = np.linspace(0.5, 2.0, 400)
    assert loss(lower, pred, w, upper=upper) == pytest.approx(np.sum(w * ref) / w.sum(), rel=1e-12)
    # without upper=, every time is observed
    assert loss(lower[kind == 0], pred[kind == 0]) == pytest.approx(ref[kind == 0].mean(), rel=1e-12)


@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
def test_aft_derivatives_match_finite_differences(distribution):
    lower, upper, pred, kind = aft_data(40, seed=8)
    sigma = 0.8
    g, h = fl.AFT(distribution=distribution, sigma=sigma).grad_hess(lower, pred, upper=upper,
                                                                   reduction="sum")
    f = lambda x: aft_reference(lower, upper, x, distribution, sigma).sum()  # noqa: E731
    g_fd, h_fd = finite_differences(f, pred)
    np.testing.assert_allclose(g, g_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, h_fd, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
def test_aft_tails_are_finite_and_exact(distribution):
    """Far from the data, the exact derivatives keep their limits (where XGBoost's formulas turn
    to 0/0 and fall back to bounds)."""
    loss = fl.AFT(distribution=distribution)
    pred = np.array([-40.0, -8.0, 8.0, 40.0])
    for lo, up in ((1.0, np.inf), (0.0, 1.0), (1.0, 1.0), (1.0, 2.0)):
        lower, upper = np.full(4, lo), np.full(4, up)
        value, g, h = loss.value_grad_hess(lower, pred, upper=upper, reduction="none")
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(g)) and np.all(np.isfinite(h))
        assert np.all(h >= 0)
    if distribution == "normal":
        # right-censored far below the bound: gradient -> -z, Hessian -> 1 (Mills' ratio)
        g, h = loss.grad_hess(np.array([1.0]), np.array([-40.0]), upper=np.array([np.inf]))
        assert g[0] == pytest.approx(-40.025, rel=1e-4) and h[0] == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("distribution", list(DISTRIBUTIONS))
def test_aft_elements_are_independent_of_their_neighbours_kinds(distribution):
    """The kernel groups a block's elements by censoring kind: runs of one kind (whole blocks of
    observed, then of right-censored times) and kinds at random must give every element the value,
    gradient and Hessian it has alone, bit for bit, and the closed form."""
    rng = np.random.default_rng(11)
    n = 6000
    pred = 2.0 * rng.standard_normal(n)
    t = np.exp(pred + 0.8 * rng.standard_normal(n))
    # observed, right, left, no information (lower 0, upper inf), interval
    kind = np.concatenate([np.zeros(2100, int), np.ones(2100, int), rng.integers(0, 5, n - 4200)])
    lower = np.select([kind == 0, kind == 1, kind == 2, kind == 3], [t, 0.8 * t, 0.0, 0.0], 0.7 * t)
    upper = np.select([kind == 0, kind == 1, kind == 2, kind == 3], [t, np.inf, 1.3 * t, np.inf],
                      1.6 * t)
    nan = np.zeros(n, bool)
    nan[::97] = True
    pred[nan] = np.nan
    loss = fl.AFT(distribution=distribution, sigma=0.9)
    value, g, h = loss.value_grad_hess(lower, pred, upper=upper, reduction="none")
    assert np.all(np.isnan(value[nan])) and np.all(np.isnan(g[nan]))  # (the normal's observed
    # Hessian 1 / sigma^2 does not depend on the prediction)
    for i in range(0, n, 7):
        alone = loss.value_grad_hess(lower[i:i + 1], pred[i:i + 1], upper=upper[i:i + 1],
                                     reduction="none")
        for name, full, one in zip(("value", "gradient", "Hessian"), (value, g, h), alone):
            np.testing.assert_array_equal(full[i:i + 1], one, err_msg=f"{name} of element {i}")
    check = np.flatnonzero(~nan)[::3]
    ref = aft_reference(lower[check], upper[check], pred[check], distribution, 0.9)
    np.testing.assert_allclose(value[check], ref, rtol=1e-11, atol=1e-13)
    assert np.all(value[kind == 3][~nan[kind == 3]] == 0.0)


def test_aft_normal_tail_accuracy_against_mpmath():
    """The normal distribution's log S(z), hazard f/S and curvature f/S - z, through AFT's
    right-censored loss at lower = 1, sigma = 1 (z = -y_pred), against 40-digit references from
    the right tail (where S underflows) to the left (where S rounds to 1)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    z = np.concatenate([-np.linspace(0.0, 37.0, 75)[1:], np.linspace(0.0, 6.0, 25),
                        np.geomspace(6.0, 1e6, 60)])
    value, g, h = fl.AFT().value_grad_hess(np.ones_like(z), -z, upper=np.full_like(z, np.inf),
                                           reduction="none")
    log_s, hazard, curvature = [], [], []
    for v in z:
        zm = mp.mpf(float(v))
        s = mp.erfc(zm / mp.sqrt(2)) / 2
        # where S rounds to 1 in 40 digits, log S = log1p(-F) from F = erfc(-z / sqrt 2) / 2
        log_s.append(float(mp.log(s) if zm >= 0 else mp.log1p(-mp.erfc(-zm / mp.sqrt(2)) / 2)))
        r = mp.exp(-zm * zm / 2) / mp.sqrt(2 * mp.pi) / s
        hazard.append(float(r))
        curvature.append(float(r * (r - zm)))
    np.testing.assert_allclose(value, -np.array(log_s), rtol=4e-15, atol=0)
    # d/dy_pred of -log S(z(y_pred)) = -hazard (dz/dy_pred = -1); curvature hazard (hazard - z)
    np.testing.assert_allclose(g, -np.array(hazard), rtol=4e-15, atol=0)
    np.testing.assert_allclose(h, curvature, rtol=1e-12, atol=0)  # hazard - z cancels below z = 30


def test_aft_errors():
    loss = fl.AFT()
    with pytest.raises(ValueError, match="distribution must be one of"):
        fl.AFT(distribution="weibull")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        fl.AFT(sigma=0.0)
    with pytest.raises(ValueError, match=r"upper must be >= y_true.*y_true\[1\] = 2.0"):
        loss(np.array([1.0, 2.0]), np.zeros(2), upper=np.array([1.0, 1.5]))
    with pytest.raises(ValueError, match=r"lower bounds\) must be >= 0"):
        loss(np.array([-1.0, 2.0]), np.zeros(2))
    with pytest.raises(ValueError, match="upper must be > 0"):
        loss(np.array([0.0, 2.0]), np.zeros(2), upper=np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="upper must have the shape"):
        loss(np.array([1.0, 2.0]), np.zeros(2), upper=np.array([3.0]))


# ----------------------------------------------------------------------------------------------
# concordance index
# ----------------------------------------------------------------------------------------------


def concordance_reference(time, event, risk):
    concordant = tied = comparable = 0
    n = len(time)
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                comparable += 1
                concordant += risk[i] > risk[j]
                tied += risk[i] == risk[j]
    return (concordant + 0.5 * tied) / comparable


@pytest.mark.parametrize("seed", range(4))
def test_concordance_index_matches_pairwise_count(seed):
    rng = np.random.default_rng(seed)
    n = 300
    time = np.round(rng.exponential(size=n), 1)  # tied times
    event = rng.random(n) < 0.6
    risk = np.round(rng.standard_normal(n), 1) - 0.5 * time  # tied risks
    ref = concordance_reference(time, event, risk)
    assert fl.concordance_index(time, event, risk) == pytest.approx(ref, rel=1e-14)
    assert fl.concordance_index(time.astype(np.float32), event.astype(int), risk) == pytest.approx(ref, rel=1e-14)


def test_concordance_index_extremes_and_errors():
    t = np.arange(1.0, 6.0)
    assert fl.concordance_index(t, np.ones(5, bool), -t) == 1.0
    assert fl.concordance_index(t, np.ones(5, bool), t) == 0.0
    assert fl.concordance_index(t, np.ones(5, bool), np.zeros(5)) == 0.5
    with pytest.raises(ValueError, match="no comparable pair"):
        fl.concordance_index(t, np.zeros(5, bool), t)
    with pytest.raises(ValueError, match="risk must not hold NaN"):
        fl.concordance_index(t, np.ones(5, bool), np.array([1, 2, np.nan, 4, 5]))
    with pytest.raises(ValueError, match="risk must have the shape"):
        fl.concordance_index(t, np.ones(5, bool), np.zeros(4))


# ----------------------------------------------------------------------------------------------
# XGBoost training parity
# ----------------------------------------------------------------------------------------------


def _xgb_margins(params, dtrain, rounds, obj=None):
    import xgboost as xgb

    booster = xgb.train(params, dtrain, num_boost_round=rounds, obj=obj)
    return booster.predict(dtrain, output_margin=True)


def _survival_features(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    eta = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] ** 2
    time = rng.exponential(size=n) * np.exp(-eta)
    return rng, X, time


def test_xgboost_cox_objective_reproduces_survival_cox():
    xgb = pytest.importorskip("xgboost")
    from fastloss.xgboost import Objective

    rng, X, time = _survival_features(2000, seed=10)
    y = np.where(rng.random(2000) < 0.7, time, -time)
    dtrain = xgb.DMatrix(X, label=y, base_margin=np.zeros(2000))
    params = {"tree_method": "hist", "max_depth": 3, "eta": 0.1, "nthread": 1, "seed": 0}
    ref = _xgb_margins({**params, "objective": "survival:cox"}, dtrain, 30)
    ours = _xgb_margins({**params, "disable_default_eval_metric": 1}, dtrain, 30,
                        Objective(fl.CoxPH()))
    assert np.std(ref) > 0.1
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("distribution", ["normal", "logistic", "extreme"])
def test_xgboost_aft_objective_reproduces_survival_aft(distribution):
    xgb = pytest.importorskip("xgboost")
    from fastloss.xgboost import Objective

    rng, X, _ = _survival_features(2000, seed=11)
    # log-normal times: |z| stays below ~6, where XGBoost's 0.5 (1 + erf(z / sqrt 2)) keeps its
    # digits (beyond ~8 its normal derivatives lose them; fastloss's stay exact, see
    # test_aft_tails_are_finite_and_exact)
    time = np.exp(X[:, 0] - 0.5 * X[:, 1] + 0.5 * rng.standard_normal(2000))
    kind = rng.choice(4, size=2000)
    lower = np.select([kind == 0, kind == 1, kind == 2], [time, 0.8 * time, 0.0], 0.7 * time)
    upper = np.select([kind == 0, kind == 1, kind == 2], [time, np.inf, 1.3 * time], 1.6 * time)
    dtrain = xgb.DMatrix(X, base_margin=np.zeros(2000))
    dtrain.set_float_info("label_lower_bound", lower)
    dtrain.set_float_info("label_upper_bound", upper)
    params = {"tree_method": "hist", "max_depth": 3, "eta": 0.1, "nthread": 1, "seed": 0}
    ref = _xgb_margins({**params, "objective": "survival:aft", "aft_loss_distribution": distribution,
                        "aft_loss_distribution_scale": 1.2}, dtrain, 30)
    ours = _xgb_margins({**params, "disable_default_eval_metric": 1}, dtrain, 30,
                        Objective(fl.AFT(distribution=distribution, sigma=1.2)))
    assert np.std(ref) > 0.1
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_xgboost_aft_objective_bounds_and_metric():
    xgb = pytest.importorskip("xgboost")
    from fastloss.xgboost import Metric, Objective

    lower = np.array([1.0, 1.0, 0.0, 1.0])
    upper = np.array([1.0, np.inf, 1.0, 2.0])
    dtrain = xgb.DMatrix(np.zeros((4, 1)))
    dtrain.set_float_info("label_lower_bound", lower)
    dtrain.set_float_info("label_upper_bound", upper)
    margins = np.array([-40.0, -40.0, 40.0, 0.3], dtype=np.float32)
    g, h = Objective(fl.AFT())(margins, dtrain)
    g_exact, h_exact = fl.AFT().grad_hess(lower.astype(np.float32), margins,
                                          upper=upper.astype(np.float32), reduction="sum")
    np.testing.assert_array_equal(g, np.clip(g_exact, -15, 15))
    np.testing.assert_array_equal(h, np.clip(h_exact, 1e-16, 15))
    assert g[0] == -15 and g[1] == -15 and g[2] == 15
    g_raw, _ = Objective(fl.AFT(), hessian="exact")(margins, dtrain)
    np.testing.assert_array_equal(g_raw, g_exact)
    name, value = Metric(fl.AFT())(margins, dtrain)
    assert name == "aft" and value == pytest.approx(
        fl.AFT()(lower.astype(np.float32), margins, upper=upper.astype(np.float32)))


def test_lightgbm_cox_objective_uses_signed_labels():
    lgb = pytest.importorskip("lightgbm")
    from fastloss.lightgbm import Objective

    time, event, pred, _ = survival_data(200, seed=12)
    y = np.where(event == 1, time, -time)
    ds = lgb.Dataset(np.zeros((200, 1)), label=y, free_raw_data=False).construct()
    g, h = Objective(fl.CoxPH(ties="efron"))(pred, ds)
    g_ref, h_ref = fl.CoxPH(ties="efron").grad_hess(time, pred, event=event, reduction="sum")
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-7)  # LightGBM stores float32 labels
    np.testing.assert_allclose(h, np.maximum(h_ref, 1e-16), rtol=1e-6, atol=1e-7)


def test_catboost_refuses_losses_that_couple_the_batch():
    pytest.importorskip("catboost")
    from fastloss.catboost import Objective

    with pytest.raises(ValueError, match="couples the whole batch"):
        Objective(fl.CoxPH())
    Objective(fl.AFT())  # elementwise: fine
