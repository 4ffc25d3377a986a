#!/usr/bin/env python
"""The ranking losses' performance targets, as ratios measured in the same run (medians).

1. LightGBM training time per round with ``fastloss.lightgbm.Objective(fl.LambdaRank())`` vs the
   built-in ``lambdarank`` on ``--docs`` documents (10^6) in ``--queries`` query groups (10^5).
   Target: at most 1.3x. Also as CPU time of the process per round (all threads), which a
   machine shared with other work disturbs less than wall-clock time.
2. RankNet value and gradient (``fl.RankNet().value_and_grad``) vs a NumPy pairwise
   implementation of the same loss (groups padded to the largest, every pair of a group at once).
   Target: >= 10x. The NumPy side is also timed with its pairs enumerated beforehand (the per-pair
   arithmetic alone), for information.
3. ListNet, ListMLE and MarginRanking value and gradient vs PyTorch's forward + backward of the
   same losses (groups of equal size, so that PyTorch works on a dense (queries, size) array;
   ``torch.nn.functional.margin_ranking_loss`` on pairs), for information.

    python bench/bench_ranking.py
    python bench/bench_ranking.py --quick

Timings are wall-clock; within a round the compared functions run one after the other, and a ratio
is the median of the per-round ratios (robust to a machine whose load changes). Nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fastloss as fl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_integrations import median, paired_times, ratio  # noqa: E402


def ranking_data(docs: int, queries: int, features: int = 10, seed: int = 0):
    """Query groups of random sizes (mean docs / queries), graded labels 0..4 from a noisy linear
    function of the features."""
    rng = np.random.default_rng(seed)
    mean = docs / queries
    sizes = rng.integers(max(2, int(mean / 2)), int(1.5 * mean) + 1, queries)
    diff = docs - int(sizes.sum())  # spread over the first |diff| groups, one document each
    np.add.at(sizes, np.arange(abs(diff)) % queries, int(np.sign(diff)))
    X = rng.standard_normal((docs, features)).astype(np.float32)
    latent = X @ rng.standard_normal(features) + rng.standard_normal(docs)
    y = np.clip(np.floor(latent / 1.5), 0, 4)
    return X, y, sizes


def numpy_ranknet(y, s, sizes, sigma=1.0, chunk=8192):
    """RankNet value and gradient in NumPy: groups padded to the largest, all pairs of a chunk of
    groups at once."""
    G, M = len(sizes), int(sizes.max())
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    col = np.arange(M)
    total, grad = 0.0, np.zeros_like(s)
    for c0 in range(0, G, chunk):
        size, offsets = sizes[c0:c0 + chunk], starts[c0:c0 + chunk]
        valid = col[None, :] < size[:, None]
        idx = np.where(valid, offsets[:, None] + col[None, :], 0)
        S, Y = s[idx], np.where(valid, y[idx], -np.inf)
        mask = (Y[:, :, None] > Y[:, None, :]) & valid[:, None, :]
        P = mask.sum(axis=(1, 2))
        inv = np.where(P > 0, 1.0 / np.maximum(P, 1), 0.0)
        d = S[:, :, None] - S[:, None, :]
        total += (np.where(mask, np.logaddexp(0.0, -sigma * d), 0.0).sum(axis=(1, 2)) * inv).sum()
        slope = np.where(mask, -sigma / (1.0 + np.exp(sigma * d)), 0.0) * inv[:, None, None]
        g_pad = slope.sum(axis=2) - slope.sum(axis=1)
        np.add.at(grad, idx[valid], g_pad[valid])
    return total / G, grad / G


def numpy_pairs(y, sizes):
    """Every pair (i, j), y_i > y_j, of every group, and each group's pair count per pair."""
    starts = np.concatenate(([0], np.cumsum(sizes)))
    I, J, inv = [], [], []
    for a, b in zip(starts[:-1], starts[1:]):
        yy = y[a:b]
        i, j = np.nonzero(yy[:, None] > yy[None, :])
        I.append(i + a)
        J.append(j + a)
        inv.append(np.full(len(i), 1.0 / max(len(i), 1)))
    return np.concatenate(I), np.concatenate(J), np.concatenate(inv)


def numpy_ranknet_pairs(s, n, groups, I, J, inv, sigma=1.0):
    d = s[I] - s[J]
    value = np.sum(inv * np.logaddexp(0.0, -sigma * d)) / groups
    slope = inv * (-sigma / (1.0 + np.exp(sigma * d))) / groups
    grad = np.bincount(I, slope, n) - np.bincount(J, slope, n)
    return value, grad


def bench_lightgbm(docs: int, queries: int, rounds: int, repeats: int, threads: int) -> None:
    import lightgbm as lgb
    from fastloss.lightgbm import Objective

    X, y, sizes = ranking_data(docs, queries)
    data = lgb.Dataset(X, y, group=sizes, params={"verbose": -1}, free_raw_data=False).construct()
    params = {"learning_rate": 0.1, "num_leaves": 31, "verbose": -1, "num_threads": threads,
              "deterministic": True}

    def per_round(objective):
        """Seconds per boosting round, wall-clock and CPU time of the process (all threads): the
        medians of the gaps between consecutive iterations."""
        stamps = []
        lgb.train(dict(params, objective=objective), data, num_boost_round=rounds,
                  callbacks=[lambda env: stamps.append((time.perf_counter(), time.process_time()))])
        gaps = np.diff(np.array(stamps), axis=0)
        return median(gaps[:, 0].tolist()), median(gaps[:, 1].tolist())

    objective = Objective(fl.LambdaRank())
    gaps = {"builtin": [], "fastloss": []}
    for _ in range(repeats):  # interleaved: one training of each per repeat
        gaps["builtin"].append(per_round("lambdarank"))
        gaps["fastloss"].append(per_round(objective))
    for i, clock in enumerate(("wall-clock", "CPU time")):
        ours, theirs = ([g[i] for g in gaps[k]] for k in ("fastloss", "builtin"))
        r = median([a / b for a, b in zip(ours, theirs)])
        print(f"LightGBM lambdarank, {docs} documents in {queries} queries, {threads} threads, "
              f"{clock}: built-in {median(theirs) * 1e3:.1f} ms/round, fastloss LambdaRank "
              f"{median(ours) * 1e3:.1f} ms/round: ratio {r:.2f} (target <= 1.3)")
    call = paired_times({"objective": lambda: objective.grad_hess(y, np.zeros(docs), None, sizes)},
                        repeats)
    print(f"  fastloss LambdaRank gradient + Hessian alone: {median(call['objective']) * 1e3:.1f} ms")


def bench_ranknet(docs: int, queries: int, repeats: int) -> None:
    _, y, sizes = ranking_data(docs, queries)
    s = y + np.random.default_rng(1).standard_normal(docs)
    loss = fl.RankNet()
    v_fl, g_fl = loss.value_and_grad(y, s, group=sizes)
    v_np, g_np = numpy_ranknet(y, s, sizes)
    assert abs(v_fl - v_np) <= 1e-9 * abs(v_np) and np.allclose(g_fl, g_np, rtol=1e-7, atol=1e-15)
    I, J, inv = numpy_pairs(y, sizes)
    v_p, g_p = numpy_ranknet_pairs(s, docs, len(sizes), I, J, inv)
    assert abs(v_fl - v_p) <= 1e-9 * abs(v_p) and np.allclose(g_fl, g_p, rtol=1e-7, atol=1e-15)
    times = paired_times({
        "fastloss": lambda: loss.value_and_grad(y, s, group=sizes),
        "numpy": lambda: numpy_ranknet(y, s, sizes),
        "numpy_pairs": lambda: numpy_ranknet_pairs(s, docs, len(sizes), I, J, inv),
    }, repeats)
    print(f"RankNet value + gradient, {docs} documents in {queries} queries ({len(I)} pairs), "
          f"{fl.get_num_threads()} threads: fastloss {median(times['fastloss']) * 1e3:.1f} ms, "
          f"NumPy {median(times['numpy']) * 1e3:.1f} ms: {ratio(times, 'numpy', 'fastloss'):.1f}x "
          f"(target >= 10); NumPy with its pairs enumerated beforehand "
          f"{median(times['numpy_pairs']) * 1e3:.1f} ms: "
          f"{ratio(times, 'numpy_pairs', 'fastloss'):.1f}x")


def _torch_list_losses(torch):
    """ListNet and ListMLE (ties by position) on dense (queries, size) arrays: mean over groups."""
    def list_net(y, s):
        return -(torch.softmax(y, 1) * torch.log_softmax(s, 1)).sum(1).mean()

    def list_mle(y, s):
        order = torch.sort(-y, dim=1, stable=True).indices
        z = torch.gather(s, 1, order)
        tail = torch.logcumsumexp(z.flip(1), 1).flip(1)  # log sum_{j >= i} exp(z_j)
        return (tail - z).sum(1).mean()
    return list_net, list_mle


def bench_vs_torch(docs: int, queries: int, repeats: int) -> None:
    try:
        import torch
    except ImportError:
        print("ListNet / ListMLE / MarginRanking vs PyTorch: torch not installed, skipped")
        return
    torch.set_num_threads(fl.get_num_threads())
    size = max(2, docs // queries)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, (queries, size)).astype(np.float64)
    s = y + rng.standard_normal((queries, size))
    group = np.full(queries, size)
    list_net, list_mle = _torch_list_losses(torch)
    yt = torch.from_numpy(y)

    def torch_step(fn, *args):
        st = torch.from_numpy(s).requires_grad_()
        v = fn(yt, st, *args)
        v.backward()
        return v.item(), st.grad.numpy()

    cases = [("ListNet", fl.ListNet(), list_net), ("ListMLE", fl.ListMLE(), list_mle)]
    for name, loss, ref in cases:
        v_fl, g_fl = loss.value_and_grad(y.ravel(), s.ravel(), group=group)
        v_t, g_t = torch_step(ref)
        assert abs(v_fl - v_t) <= 1e-9 * abs(v_t) and np.allclose(g_fl, g_t.ravel(), atol=1e-12)
        times = paired_times({"fastloss": lambda: loss.value_and_grad(y.ravel(), s.ravel(), group=group),
                              "torch": lambda: torch_step(ref)}, repeats)
        print(f"{name} value + gradient, {queries} groups of {size}: fastloss "
              f"{median(times['fastloss']) * 1e3:.2f} ms, PyTorch {median(times['torch']) * 1e3:.2f} ms: "
              f"{ratio(times, 'torch', 'fastloss'):.1f}x")
    n = docs
    t = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    loss = fl.MarginRanking(margin=0.1)
    tt, x2t = torch.from_numpy(t), torch.from_numpy(x2)

    def torch_margin():
        a = torch.from_numpy(x1).requires_grad_()
        v = torch.nn.functional.margin_ranking_loss(a, x2t, tt, margin=0.1)
        v.backward()
        return v.item(), a.grad

    v_fl, (g1, _) = loss.value_and_grad(t, x1, x2)
    v_t, g_t = torch_margin()
    assert abs(v_fl - v_t) <= 1e-12 * max(1.0, abs(v_t)) and np.allclose(g1, g_t.numpy())
    times = paired_times({"fastloss": lambda: loss.value_and_grad(t, x1, x2),
                          "torch": torch_margin}, repeats)
    print(f"MarginRanking value + gradients, {n} pairs: fastloss "
          f"{median(times['fastloss']) * 1e3:.2f} ms, PyTorch {median(times['torch']) * 1e3:.2f} ms: "
          f"{ratio(times, 'torch', 'fastloss'):.1f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=float, default=1e6)
    ap.add_argument("--queries", type=float, default=1e5)
    ap.add_argument("--rounds", type=int, default=8, help="boosting rounds per training")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", choices=["lightgbm", "ranknet", "torch"])
    ap.add_argument("--quick", action="store_true", help="10^5 documents, 3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.docs, args.queries, args.repeats = 1e5, 1e4, 3
    docs, queries = int(args.docs), int(args.queries)
    fl.set_num_threads(args.threads)
    if args.only in (None, "ranknet"):
        bench_ranknet(docs, queries, args.repeats)
    if args.only in (None, "torch"):
        bench_vs_torch(docs, queries, args.repeats)
    if args.only in (None, "lightgbm"):
        bench_lightgbm(docs, queries, args.rounds, args.repeats, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
