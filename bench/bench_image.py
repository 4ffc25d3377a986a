#!/usr/bin/env python
"""Image and segmentation losses: fastloss vs scikit-image, NumPy (and pytorch_msssim / PyTorch
when installed), ratios measured in the same run (medians of several repeats)::

    python bench/bench_image.py            # SSIM on 16 x 3 x 256 x 256, Dice on 16 x 4 x 256 x 256
    python bench/bench_image.py --quick    # 4 images, fewer repeats
    python bench/bench_image.py --threads 1,2
    python bench/bench_image.py --only dice    # one section (ssim or dice)

What is timed (float32):

- SSIM value + gradient: ``SSIMLoss().value_and_grad(x, y, grad_out=g)`` vs scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, gradient=True)`` looping over images and channels (it takes one plane or one
  image at a time); pytorch_msssim ``ssim`` forward + backward when installed.
- MS-SSIM value + gradient vs pytorch_msssim ``ms_ssim`` forward + backward (when installed).
- Dice (softmax over 4 classes, one-hot targets) value + gradient vs the NumPy formulation below
  (precomputed one-hot targets, fewest passes); fastloss also with integer labels, and on
  channels-last arrays (``(N, H, W, C)`` memory passed as its ``(N, C, H, W)`` view, gradient
  buffer channels-last too). Dice rows
  also give GB/s (bytes the call must move: logits and one-hot targets read, gradient written,
  12 B per float32 element; 8 B plus the labels with labels) and its percentage of the memory
  bandwidth (a triad ``a = b + s*c`` measured before and after, at the same thread count).
  The Dice timings are interleaved (NumPy and fastloss alternate) and the medians compared.

Baselines run single-threaded; fastloss at each thread count asked. Values are cross-checked
(the exit status is 1 when a check fails, never because of a timing).

On a machine whose cores are shared with other busy processes, the baselines' own OpenMP threads
(PyTorch through pytorch_msssim) may spin-wait; compare single-threaded there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import fastloss as fl
from fastloss.benchmark.bandwidth import Triad
from fastloss.benchmark.timing import median_times


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def images(n, c, side, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, side // 8, side // 8), dtype=np.float32).repeat(8, 2).repeat(8, 3)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1)
    return x, y


def skimage_ssim(x, y):
    from skimage.metrics import structural_similarity

    grad = np.empty_like(y)
    total = 0.0
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            s, grad[n, c] = structural_similarity(
                x[n, c], y[n, c], data_range=1.0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False, gradient=True)
            total += s
    return 1 - total / (x.shape[0] * x.shape[1]), grad


def torch_fn(kind, x, y):
    """pytorch_msssim forward + backward, or None when not installed."""
    try:
        import torch
        import pytorch_msssim
    except ImportError:
        return None
    torch.set_num_threads(1)
    f = pytorch_msssim.ssim if kind == "ssim" else pytorch_msssim.ms_ssim
    tx = torch.from_numpy(x)

    def run():
        ty = torch.from_numpy(y).requires_grad_()
        loss = 1 - f(tx, ty, data_range=1.0)
        loss.backward()
        return loss.item(), ty.grad

    return run


def numpy_dice(g, z, smooth=1e-5):
    """Softmax Dice (mean over images and classes) and its gradient w.r.t. the logits, NumPy."""
    N, C = z.shape[:2]
    p = z - z.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    inter = np.einsum("ncij,ncij->nc", p, g)
    den = p.sum(axis=(2, 3)) + g.sum(axis=(2, 3)) + smooth
    num = 2 * inter + smooth
    value = float(np.mean(1 - num / den))
    a = (-2 / den / (N * C)).astype(z.dtype)[:, :, None, None]
    b = (num / den**2 / (N * C)).astype(z.dtype)[:, :, None, None]
    d = a * g + b
    d -= np.einsum("ncij,ncij->nij", p, d)[:, None]
    d *= p
    return value, d


def row(name, base_name, t_base, t_fl, threads, note=""):
    print(f"{name:<28} {base_name:<22} {t_base * 1e3:>10.1f} ms  fastloss({threads}t) "
          f"{t_fl * 1e3:>8.1f} ms  speedup {t_base / t_fl:>7.1f}x {note}")


def triad_gbps(tri, threads, repeats=5):
    """The fastest triad implementation's median GB/s at this thread count."""
    return max(tri.measure(m, threads, repeats)["gbps_median"] for m in Triad.available())


def channels_last(a):
    """The (N, C, H, W) view of a channels-last copy of a."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


def ssim_section(n, threads, repeats, base_repeats) -> bool:
    """SSIM and MS-SSIM rows; False when a value check fails."""
    ok = True
    x, y = images(n, 3, 256)
    loss, gbuf = fl.SSIMLoss(), np.empty_like(y)
    shape = "x".join(map(str, x.shape))
    ref_value, ref_grad = skimage_ssim(x, y)
    t_sk = median_time(lambda: skimage_ssim(x, y), base_repeats)
    t_torch = None
    torch_run = torch_fn("ssim", x, y)
    if torch_run:
        t_torch = median_time(torch_run, base_repeats)
    for t in threads:
        with fl.num_threads(t):
            value, grad = loss.value_and_grad(x, y, grad_out=gbuf)
            t_fl = median_time(lambda: loss.value_and_grad(x, y, grad_out=gbuf), repeats)
        ok &= abs(value - ref_value) < 1e-5
        row(f"SSIM v+g {shape}", "scikit-image loop", t_sk, t_fl, t,
            f"|dvalue| {abs(value - ref_value):.1e}")
        if t_torch:
            row(f"SSIM v+g {shape}", "pytorch_msssim f+b", t_torch, t_fl, t)

    # MS-SSIM (needs >= 176 x 176) --------------------------------------------------------------
    ms_run = torch_fn("ms_ssim", x, y)
    if ms_run:
        ms = fl.MSSSIMLoss()
        t_torch = median_time(ms_run, base_repeats)
        for t in threads:
            with fl.num_threads(t):
                value, _ = ms.value_and_grad(x, y, grad_out=gbuf)
                t_fl = median_time(lambda: ms.value_and_grad(x, y, grad_out=gbuf), repeats)
            ok &= abs(value - ms_run()[0]) < 1e-4
            row(f"MS-SSIM v+g {shape}", "pytorch_msssim f+b", t_torch, t_fl, t)
    return ok


def dice_section(n, threads, repeats) -> bool:
    """Softmax Dice rows; False when a value or gradient check fails."""
    ok = True
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (n, 32, 32)).repeat(8, 1).repeat(8, 2)
    g = np.ascontiguousarray(np.moveaxis(np.eye(4, dtype=np.float32)[labels], -1, 1))
    z = (2 * g + rng.standard_normal(g.shape, dtype=np.float32)).astype(np.float32)
    dice, dbuf = fl.DiceLoss(activation="softmax"), np.empty_like(z)
    g_cl, z_cl, dbuf_cl = channels_last(g), channels_last(z), channels_last(np.empty_like(z))
    shape = "x".join(map(str, z.shape))
    ref_value, ref_grad = numpy_dice(g, z)
    nbytes = {"one-hot": 12 * z.size, "labels": 8 * z.size + labels.nbytes, "channels-last": 12 * z.size}
    tri = Triad()
    for t in threads:
        with fl.num_threads(t):
            bw = triad_gbps(tri, t)
            value, grad = dice.value_and_grad(g, z, grad_out=dbuf)
            value_cl, _ = dice.value_and_grad(g_cl, z_cl, grad_out=dbuf_cl)
            t_np, t_fl, t_lab, t_cl = median_times([
                lambda: numpy_dice(g, z),
                lambda: dice.value_and_grad(g, z, grad_out=dbuf),
                lambda: dice.value_and_grad(labels, z, grad_out=dbuf),
                lambda: dice.value_and_grad(g_cl, z_cl, grad_out=dbuf_cl)], max(repeats, 3))
            bw = (bw + triad_gbps(tri, t)) / 2
        err = float(np.abs(grad - ref_grad).max() / np.abs(ref_grad).max())
        err_cl = float(np.abs(dbuf_cl - ref_grad).max() / np.abs(ref_grad).max())
        ok &= abs(value - ref_value) < 1e-5 and err < 1e-4 and abs(value_cl - ref_value) < 1e-5 and err_cl < 1e-4

        def pct(kind, secs):
            gbs = nbytes[kind] / secs / 1e9
            return f"{gbs:.1f} GB/s = {100 * gbs / bw:.0f} % of the triad ({bw:.1f} GB/s)"
        row(f"Dice softmax v+g {shape}", "NumPy (one-hot)", t_np, t_fl, t,
            f"grad rel.err {err:.1e}; {pct('one-hot', t_fl)}")
        row(f"Dice softmax v+g {shape}", "NumPy (one-hot)", t_np, t_lab, t,
            f"fastloss given labels; {pct('labels', t_lab)}")
        row(f"Dice softmax v+g {shape}", "NumPy (one-hot)", t_np, t_cl, t,
            f"fastloss channels-last; {pct('channels-last', t_cl)}")
    del tri
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 images, 3 repeats")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1 and the default)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--only", choices=("ssim", "dice"), default=None, help="run one section")
    args = ap.parse_args(argv)
    n = 4 if args.quick else 16
    repeats = args.repeats or (3 if args.quick else 7)
    base_repeats = max(1, repeats // 2) if not args.quick else 1
    default_threads = fl.get_num_threads()
    threads = sorted({int(t) for t in args.threads.split(",")} if args.threads else {1, default_threads})
    ok = True
    print(f"fastloss {fl.__version__}, ISA {fl.build_info()['isa_selected']}, float32, "
          f"median of {repeats} (baselines {base_repeats})")

    if args.only != "dice":
        ok &= ssim_section(n, threads, repeats, base_repeats)
    if args.only != "ssim":
        ok &= dice_section(n, threads, repeats)
    if not ok:
        print("CORRECTNESS CHECK FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
