"""Benchmark of the similarity losses against the same computation composed from PyTorch ops.

Float32, same run, median of several repeats, same thread count for fastloss, NumPy's BLAS and
PyTorch:

- batch-hard and semi-hard triplet mining with the gradient on 4096 x 128 embeddings (256 classes
  of 16): fastloss ``BatchTripletMargin.value_and_grad`` vs PyTorch forward + backward (distances
  from the Gram matrix, mining with masks under ``no_grad``, the loss on the mined distances);
- ArcFace value + gradients (embeddings and class weights) on 4096 x 512 embeddings with 10 000
  classes vs two PyTorch compositions, forward + backward: a lean one (normalize, matmul, the
  margin on the target column only, cross_entropy) and the widely copied ArcMarginProduct (the
  margin on the whole cosine matrix, mixed in by a one-hot mask). Three matrix products of
  4096 x 512 x 10 000 (forward, and the two of the backward) dominate both sides.

Every case also checks that both sides agree (value and gradient) before timing.

    python bench/bench_similarity.py            # the sizes above
    python bench/bench_similarity.py --quick    # smaller sizes, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np

import fastloss as fl


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_distances(torch, x):
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * (x @ x.T)
    return torch.sqrt(d2.clamp_min(1e-12))  # clamped: the diagonal's sqrt(0) has no gradient


def torch_batch_hard(torch, labels, margin):
    def run(x):
        d = torch_distances(torch, x)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool)
        pos, neg = same & ~eye, ~same
        hardest_pos = d.masked_fill(~pos, -math.inf).max(1).values
        hardest_neg = d.masked_fill(~neg, math.inf).min(1).values
        valid = pos.any(1) & neg.any(1)
        loss = torch.relu(hardest_pos - hardest_neg + margin)[valid].mean()
        loss.backward()
        return loss
    return run


def torch_semi_hard(torch, labels, margin, chunk=256):
    def run(x):
        d = torch_distances(torch, x)
        n = len(labels)
        with torch.no_grad():  # mining: per anchor-positive pair, chunks of anchors
            same = labels[:, None] == labels[None, :]
            pos = same & ~torch.eye(n, dtype=torch.bool)
            a_idx, p_idx, n_idx = [], [], []
            for a0 in range(0, n, chunk):
                a, p = torch.nonzero(pos[a0:a0 + chunk], as_tuple=True)
                a = a + a0
                rows = d[a]                                   # (pairs, n)
                dap = rows.gather(1, p[:, None])
                negmask = ~same[a]
                farther = negmask & (rows > dap)
                cand = rows.masked_fill(~farther, math.inf).min(1)
                fallback = rows.masked_fill(~negmask, -math.inf).max(1).indices
                ng = torch.where(farther.any(1), cand.indices, fallback)
                a_idx.append(a), p_idx.append(p), n_idx.append(ng)
            a, p, ng = torch.cat(a_idx), torch.cat(p_idx), torch.cat(n_idx)
        loss = torch.relu(d[a, p] - d[a, ng] + margin).mean()
        loss.backward()
        return loss
    return run


def torch_arcface(torch, labels, s, m):
    F = torch.nn.functional
    cos_m, sin_m, th, mm = math.cos(m), math.sin(m), math.cos(math.pi - m), math.sin(math.pi - m) * m

    def run(x, W):
        cos = F.normalize(x) @ F.normalize(W).T
        ct = cos.gather(1, labels[:, None])
        sin = torch.sqrt((1 - ct * ct).clamp_min(0))
        phi = torch.where(ct > th, ct * cos_m - sin * sin_m, ct - mm)
        loss = F.cross_entropy(s * cos.scatter(1, labels[:, None], phi), labels)
        loss.backward()
        return loss
    return run


def torch_arc_margin_product(torch, labels, s, m):
    """The widely copied ArcMarginProduct of arcface-pytorch / InsightFace's PyTorch examples: the
    margin computed on the whole cosine matrix and mixed in by a one-hot mask."""
    F = torch.nn.functional
    cos_m, sin_m, th, mm = math.cos(m), math.sin(m), math.cos(math.pi - m), math.sin(math.pi - m) * m

    def run(x, W):
        cosine = F.linear(F.normalize(x), F.normalize(W))
        sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(0, 1))
        phi = torch.where(cosine > th, cosine * cos_m - sine * sin_m, cosine - mm)
        one_hot = torch.zeros_like(cosine).scatter_(1, labels[:, None], 1)
        loss = F.cross_entropy(s * (one_hot * phi + (1.0 - one_hot) * cosine), labels)
        loss.backward()
        return loss
    return run


def bench_triplets(torch, n, d, per_class, repeats, results):
    rng = np.random.default_rng(0)
    k = n // per_class
    labels = rng.permutation(np.repeat(np.arange(k), per_class))
    centres = rng.standard_normal((k, d)).astype(np.float32)
    x = centres[labels] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    ty = torch.tensor(labels)
    for mining, make in (("hard", torch_batch_hard), ("semi-hard", torch_semi_hard)):
        loss = fl.BatchTripletMargin(margin=0.5, mining=mining)
        ref = make(torch, ty, 0.5)

        def run_torch():
            t = torch.tensor(x, requires_grad=True)
            return ref(t), t

        v, g = loss.value_and_grad(labels, x)
        r, t = run_torch()
        assert abs(v - r.item()) <= 1e-3 * abs(v) + 1e-6, (mining, v, r.item())
        err = np.abs(g - t.grad.numpy()).max() / max(np.abs(g).max(), 1e-30)
        assert err < 1e-2, (mining, err)
        t_fl = median_time(lambda: loss.value_and_grad(labels, x), repeats)
        t_pt = median_time(run_torch, repeats)
        results.append(dict(case=f"triplet {mining} {n}x{d} f32", baseline="Gram + masks",
                            fastloss_s=t_fl, torch_s=t_pt, speedup=t_pt / t_fl))


def bench_arcface(torch, n, d, classes, repeats, results):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((classes, d)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    x = (W[labels] + 2.0 * rng.standard_normal((n, d))).astype(np.float32)
    loss = fl.ArcFace(scale=64.0, margin=0.5)
    ty = torch.tensor(labels)
    v, (gx, gw) = loss.value_and_grad(labels, x, W)
    t_fl = median_time(lambda: loss.value_and_grad(labels, x, W), repeats)
    for variant, make in (("lean: margin on the target column", torch_arcface),
                          ("ArcMarginProduct: margin on all, one-hot mix", torch_arc_margin_product)):
        ref = make(torch, ty, 64.0, 0.5)

        def run_torch():
            tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
            return ref(tx, tw), tx, tw

        r, tx, tw = run_torch()
        assert abs(v - r.item()) <= 1e-3 * abs(v), (v, r.item())
        for g, t in ((gx, tx), (gw, tw)):
            err = np.abs(g - t.grad.numpy()).max() / max(np.abs(g).max(), 1e-30)
            assert err < 1e-2, err
        del r, tx, tw
        t_pt = median_time(run_torch, repeats)
        results.append(dict(case=f"arcface {n}x{d} C={classes} f32", baseline=variant, fastloss_s=t_fl,
                            torch_s=t_pt, speedup=t_pt / t_fl))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", metavar="FILE", help="save the results as JSON")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare against", file=sys.stderr)
        return 1
    threads = fl.get_num_threads()
    torch.set_num_threads(threads)
    repeats = args.repeats or (3 if args.quick else 7)
    results = []
    if args.quick:
        bench_triplets(torch, 1024, 128, 16, repeats, results)
        bench_arcface(torch, 1024, 512, 2000, repeats, results)
    else:
        bench_triplets(torch, 4096, 128, 16, repeats, results)
        bench_arcface(torch, 4096, 512, 10_000, repeats, results)
    print(f"threads={threads} isa={fl.build_info()['isa_selected']} repeats={repeats} (median)")
    print(f"{'case':<34} {'fastloss':>10} {'torch':>10} {'speedup':>8}  torch composition")
    for r in results:
        print(f"{r['case']:<34} {r['fastloss_s'] * 1e3:>8.1f}ms {r['torch_s'] * 1e3:>8.1f}ms "
              f"{r['speedup']:>7.2f}x  {r['baseline']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=threads, repeats=repeats, results=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
