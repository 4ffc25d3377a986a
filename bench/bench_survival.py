#!/usr/bin/env python
"""Survival losses: fastloss vs NumPy and XGBoost's built-in objective, ratios measured in the same
run (median of interleaved repeats)::

    python bench/bench_survival.py                 # n = 10^6
    python bench/bench_survival.py --quick         # n = 10^5, fewer repeats

Cases:
  cox        CoxPH (Breslow) value + gradient + Hessian diagonal at n samples, float64, tied and
             censored times, vs a vectorized NumPy implementation of the same formulas (argsort,
             cumsum over the risk sets and the event times); both checked to agree first
  cox-efron  the same with Efron's ties (fastloss only; the NumPy baseline is Breslow's)
  xgboost    XGBoost training time per round, Objective(fl.CoxPH()) vs objective="survival:cox",
             same data, parameters and thread count
  aft        the same for Objective(fl.AFT(distribution=...)) vs objective="survival:aft", for
             each distribution, on interval bounds (30 % right-censored, 20 % interval-censored,
             the rest observed)
  aft-kinds  AFT value + gradient into grad_out, one thread, ns per element for each censoring
             kind alone and mixed, per distribution, and the mixed time over MSE's on the same
             arrays (n <= 2e5)
  cindex     concordance_index, O(n log n)
"""

from __future__ import annotations

import argparse

import numpy as np

import fastloss as fl
from fastloss.benchmark.timing import median_times


def numpy_cox_breslow(time_, event, eta, kind=None):
    """Value (sum), gradient and Hessian diagonal of Breslow's partial likelihood, vectorized
    (``kind``: NumPy's argsort algorithm; the default introsort is its fastest for floats)."""
    order = np.argsort(time_, kind=kind)
    t, e, d = time_[order], eta[order], event[order].astype(np.float64)
    m = e.max()
    u = np.exp(e - m)
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])       # first index of each time
    group = np.cumsum(np.r_[False, t[1:] != t[:-1]])             # group of each sorted sample
    S = np.cumsum(u[::-1])[::-1][starts]                         # risk-set sum per time
    dead = np.bincount(group, weights=d)                         # events per time
    value = -np.sum(d * (e - m)) + np.sum(dead * np.log(S))
    A = np.cumsum(dead / S)[group]
    A2 = np.cumsum(dead / S ** 2)[group]
    g, h = np.empty_like(eta), np.empty_like(eta)
    g[order] = u * A - d
    h[order] = u * A - u * u * A2
    return value, g, h


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    time_ = np.round(rng.exponential(size=n) * np.exp(-x), 3) + 1e-3   # some ties
    event = rng.random(n) < 0.7
    return x, time_, event, 0.8 * x + 0.3 * rng.standard_normal(n)


def bench_cox(n, repeats):
    _, time_, event, eta = data(n)
    loss = fl.CoxPH(reduction="sum")
    v, g, h = loss.value_grad_hess(time_, eta, event=event)
    v0, g0, h0 = numpy_cox_breslow(time_, event, eta)
    assert abs(v - v0) <= 1e-9 * abs(v0)
    assert np.allclose(g, g0, rtol=1e-8, atol=1e-10) and np.allclose(h, h0, rtol=1e-8, atol=1e-10)
    efron = fl.CoxPH(ties="efron", reduction="sum")
    signed = np.where(event, time_, -time_)
    t32 = time_.astype(np.float32)
    t_ours, t_np, t_stable, t_efron, t_signed, t_f32 = median_times(
        [lambda: loss.value_grad_hess(time_, eta, event=event),
         lambda: numpy_cox_breslow(time_, event, eta),
         lambda: numpy_cox_breslow(time_, event, eta, kind="stable"),
         lambda: efron.value_grad_hess(time_, eta, event=event),
         lambda: loss.value_grad_hess(signed, eta),
         lambda: loss.value_grad_hess(t32, eta, event=event)], repeats)
    print(f"cox n={n:.0e} f64, {fl.get_num_threads()} threads: value+grad+hess")
    print(f"  fastloss Breslow            {t_ours * 1e3:9.2f} ms   x{t_np / t_ours:6.2f} vs NumPy, "
          f"x{t_stable / t_ours:6.2f} vs NumPy stable (target >= 5x)")
    print(f"  fastloss Breslow, signed    {t_signed * 1e3:9.2f} ms   (XGBoost's labels)")
    print(f"  fastloss Breslow, f32 times {t_f32 * 1e3:9.2f} ms")
    print(f"  fastloss Efron              {t_efron * 1e3:9.2f} ms")
    print(f"  NumPy Breslow (argsort)     {t_np * 1e3:9.2f} ms")
    print(f"  NumPy Breslow (stable)      {t_stable * 1e3:9.2f} ms")


def bench_xgboost(n, rounds, repeats, threads):
    import xgboost as xgb

    from fastloss.xgboost import Objective

    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 10)).astype(np.float32)
    eta = X[:, 0] - 0.5 * X[:, 1]
    time_ = rng.exponential(size=n) * np.exp(-eta)
    y = np.where(rng.random(n) < 0.7, time_, -time_).astype(np.float32)
    dtrain = xgb.DMatrix(X, label=y, base_margin=np.zeros(n, np.float32))
    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.1, "max_bin": 256, "nthread": threads}
    obj = Objective(fl.CoxPH())

    def train(extra, objective=None):
        return lambda: xgb.train({**params, **extra}, dtrain, rounds, obj=objective)

    t_builtin, t_ours = median_times([train({"objective": "survival:cox"}),
                                      train({"disable_default_eval_metric": 1}, obj)], repeats)
    print(f"xgboost n={n:.0e} x 10, depth 6, hist, {rounds} rounds, {threads} threads (per round)")
    print(f"  survival:cox                {t_builtin / rounds * 1e3:9.2f} ms")
    print(f"  Objective(fl.CoxPH())       {t_ours / rounds * 1e3:9.2f} ms   "
          f"{t_ours / t_builtin:5.2f}x the built-in (target <= 1.3x)")


def bench_xgboost_aft(n, rounds, repeats, threads):
    import xgboost as xgb

    from fastloss.xgboost import Objective

    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 10)).astype(np.float32)
    time_ = rng.exponential(size=n) * np.exp(X[:, 0] - 0.5 * X[:, 1])
    lower, upper = time_.copy(), time_.copy()
    kind = rng.random(n)
    upper[kind < 0.3] = np.inf
    interval = (kind >= 0.3) & (kind < 0.5)
    lower[interval] *= 0.5
    upper[interval] *= 2.0
    dtrain = xgb.DMatrix(X, label_lower_bound=lower, label_upper_bound=upper)
    params = {"tree_method": "hist", "max_depth": 6, "eta": 0.1, "max_bin": 256, "nthread": threads}
    print(f"xgboost AFT n={n:.0e} x 10, depth 6, hist, {rounds} rounds, {threads} threads (per round)")
    for dist in ("normal", "logistic", "extreme"):
        builtin = {"objective": "survival:aft", "eval_metric": "aft-nloglik",
                   "aft_loss_distribution": dist, "aft_loss_distribution_scale": 1.0}
        obj = Objective(fl.AFT(distribution=dist))

        def train(extra, objective=None):
            return lambda: xgb.train({**params, **extra}, dtrain, rounds, obj=objective)

        t_builtin, t_ours = median_times([train(builtin),
                                          train({"disable_default_eval_metric": 1}, obj)], repeats)
        print(f"  {dist:9s} survival:aft {t_builtin / rounds * 1e3:8.2f} ms   "
              f"Objective(fl.AFT()) {t_ours / rounds * 1e3:8.2f} ms   {t_ours / t_builtin:5.2f}x")


def bench_aft_kinds(n, repeats):
    rng = np.random.default_rng(2)
    t = rng.gamma(2.0, 1.0, n) + 0.01
    pred = 2.0 * rng.standard_normal(n)
    mixed = t * 1.5
    mixed[::3] = np.inf
    mixed[1::3] = t[1::3]
    kinds = {"observed": (t, t), "right": (t, np.full(n, np.inf)), "left": (np.zeros(n), t),
             "interval": (t, 1.5 * t), "mixed": (t, mixed)}
    grad = np.empty(n)
    threads = fl.get_num_threads()
    fl.set_num_threads(1)
    try:
        mse = fl.MSE()
        (t_mse,) = median_times([lambda: mse.value_and_grad(t, pred, grad_out=grad)], repeats)
        print(f"AFT value + gradient, n={n:.0e} float64, one thread, ns per element "
              f"(MSE {t_mse / n * 1e9:.2f}; mixed: 1/3 observed, right, interval)")
        print(f"  {'':9s}" + "".join(f"{k:>10s}" for k in kinds) + "   mixed / MSE")
        for dist in ("normal", "logistic", "extreme"):
            loss = fl.AFT(distribution=dist)
            fns = [lambda lo=lo, up=up: loss.value_and_grad(lo, pred, grad_out=grad, upper=up)
                   for lo, up in kinds.values()]
            times = median_times(fns, repeats)
            print(f"  {dist:9s}" + "".join(f"{x / n * 1e9:10.1f}" for x in times)
                  + f"   {times[-1] / t_mse:8.0f}x")
    finally:
        fl.set_num_threads(threads)


def bench_cindex(n, repeats):
    _, time_, event, eta = data(n)
    (t,) = median_times([lambda: fl.concordance_index(time_, event, eta)], repeats)
    print(f"concordance_index n={n:.0e}       {t * 1e3:9.2f} ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e6)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="XGBoost threads (default: fastloss's)")
    ap.add_argument("--only", choices=("cox", "xgboost", "aft", "aft-kinds", "cindex"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = int(1e5 if args.quick else args.n)
    repeats = 3 if args.quick else args.repeats
    threads = args.threads or fl.get_num_threads()
    if args.only in (None, "cox"):
        bench_cox(n, repeats)
    if args.only in (None, "xgboost"):
        bench_xgboost(n, args.rounds, max(3, repeats // 2), threads)
    if args.only in (None, "aft"):
        bench_xgboost_aft(n, args.rounds, max(3, repeats // 2), threads)
    if args.only in (None, "aft-kinds"):
        bench_aft_kinds(min(n, 200_000), repeats)
    if args.only in (None, "cindex"):
        bench_cindex(n, repeats)


if __name__ == "__main__":
    main()
