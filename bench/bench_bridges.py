#!/usr/bin/env python
"""The framework bridges (fastloss.torch, fastloss.jax, fastloss.keras): agreement with each
framework's own loss, per-call overhead against the direct fastloss call, and a PyTorch training
loop whose loss is a fastloss loss.

    python bench/bench_bridges.py                      # every installed framework, each in its own process
    python bench/bench_bridges.py --framework torch    # one
    python bench/bench_bridges.py --quick              # fewer repeats

1. Max |difference| of value and gradient against the framework's loss on the same data (float64
   for PyTorch and JAX, float32 for Keras, whose losses compute in float32): MSE, Huber, BCE
   (logits), softmax cross-entropy.
2. Time of value + gradient through each bridge vs ``loss.value_and_grad`` on NumPy arrays
   (n = 1000 and 10^6, float32; MSE): the ratio and the added microseconds.
3. A 2-layer MLP (64 hidden units) regressing 4096 x 32 float32 inputs with Huber loss, Adam:
   time per training step with ``fastloss.torch.FastLoss(fl.Huber())`` vs ``torch.nn.HuberLoss``.

Timings are medians over rounds in which the compared functions alternate; nothing here asserts a
timing. Skips the bridges whose framework is not installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import fastloss as fl  # noqa: E402


def paired(fns: Dict[str, Callable[[], object]], repeats: int, inner: int) -> Dict[str, float]:
    """Median seconds per call of each function (``inner`` calls per sample), interleaved."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def data(kind: str, n: int, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "regression":
        y = rng.normal(size=n)
        return y.astype(dtype), (y + rng.normal(size=n)).astype(dtype)
    if kind == "binary":
        return rng.integers(0, 2, n).astype(dtype), (2 * rng.normal(size=n)).astype(dtype)
    return rng.integers(0, 10, n), (2 * rng.normal(size=(n, 10))).astype(dtype)


CASES = [("MSE", fl.MSE(), "regression"), ("Huber(delta=0.7)", fl.Huber(delta=0.7), "regression"),
         ("BCE (logits)", fl.BinaryCrossEntropy(from_logits=True), "binary"),
         ("cross-entropy (logits)", fl.SparseCategoricalCrossEntropy(from_logits=True), "multiclass")]


def torch_reference(name):
    import torch.nn.functional as F
    return {"MSE": lambda y, p: F.mse_loss(p, y),
            "Huber(delta=0.7)": lambda y, p: F.huber_loss(p, y, delta=0.7),
            "BCE (logits)": lambda y, p: F.binary_cross_entropy_with_logits(p, y),
            "cross-entropy (logits)": lambda y, p: F.cross_entropy(p, y)}[name]


def jax_reference(name):
    import jax
    import jax.numpy as jnp

    def huber(y, p):
        r = jnp.abs(p - y)
        return jnp.mean(jnp.where(r <= 0.7, 0.5 * r ** 2, 0.7 * (r - 0.35)))

    return {"MSE": lambda y, p: jnp.mean((p - y) ** 2), "Huber(delta=0.7)": huber,
            "BCE (logits)": lambda y, p: jnp.mean(jnp.logaddexp(0, p) - y * p),
            "cross-entropy (logits)": lambda y, p: -jnp.mean(
                jnp.take_along_axis(jax.nn.log_softmax(p), y[:, None], 1))}[name]


def keras_reference(name):
    import keras
    return {"MSE": keras.losses.MeanSquaredError(), "Huber(delta=0.7)": keras.losses.Huber(delta=0.7),
            "BCE (logits)": keras.losses.BinaryCrossentropy(from_logits=True),
            "cross-entropy (logits)": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}[name]


def accuracy(n: int, framework: str) -> None:
    print(f"\n[1] Agreement with {framework}'s own loss (n = {n}; value and gradient, max |diff|)")
    print(f"    {'bridge':16} {'loss':24} {'value':>10} {'gradient':>10}")
    rows = []
    if framework == "torch":
        import torch

        import fastloss.torch as ft
        for name, loss, kind in CASES:
            y, p = data(kind, n, np.float64)
            out = []
            for fn in (lambda y, p: ft.loss(loss, y, p), torch_reference(name)):
                pt = torch.tensor(p, requires_grad=True)
                v = fn(torch.as_tensor(y), pt)
                v.backward()
                out.append((v.item(), pt.grad.numpy()))
            rows.append(("fastloss.torch", name, out))
    if framework == "jax":
        import jax

        import fastloss.jax as fj
        jax.config.update("jax_enable_x64", True)
        for name, loss, kind in CASES:
            y, p = data(kind, n, np.float64)
            y, p = jax.numpy.asarray(y), jax.numpy.asarray(p)
            out = [jax.value_and_grad(lambda q: fj.loss(loss, y, q))(p),
                   jax.value_and_grad(lambda q: jax_reference(name)(y, q))(p)]
            rows.append(("fastloss.jax", name, [(float(v), np.asarray(g)) for v, g in out]))
        jax.config.update("jax_enable_x64", False)
    if framework == "keras":
        import keras
        import torch

        import fastloss.keras as fk
        for name, loss, kind in CASES:
            y, p = data(kind, n, np.float32)
            out = []
            for fn in (fk.Loss(loss), keras_reference(name)):
                pt = torch.tensor(p, requires_grad=True)
                yt = torch.tensor(y if kind != "regression" and kind != "binary" else y[:, None])
                v = fn(yt, pt if kind == "multiclass" else pt[:, None])
                v.backward()
                out.append((v.item(), pt.grad.numpy()))
            rows.append(("fastloss.keras", name, out))
        print(f"    (Keras on the {keras.backend.backend()} backend, float32)")
    for bridge, name, ((v1, g1), (v2, g2)) in rows:
        print(f"    {bridge:16} {name:24} {abs(v1 - v2):10.1e} {np.max(np.abs(g1 - g2)):10.1e}")


def overhead(sizes, repeats: int, framework: str) -> None:
    print(f"\n[2] Value + gradient per call, MSE, float32: the {framework} bridge (and {framework}'s "
          "own MSE) vs loss.value_and_grad on NumPy arrays")
    loss = fl.MSE()
    for n in sizes:
        inner = 200 if n <= 10_000 else 3
        y, p = data("regression", n, np.float32)
        fns: Dict[str, Callable[[], object]] = {"direct": lambda: loss.value_and_grad(y, p)}
        if framework == "torch":
            import torch

            import fastloss.torch as ft
            ty, tp = torch.from_numpy(y), torch.from_numpy(p).requires_grad_(True)

            def torch_step():
                tp.grad = None
                ft.loss(loss, ty, tp).backward()

            def torch_native():
                tp.grad = None
                torch.nn.functional.mse_loss(tp, ty).backward()

            fns["fastloss.torch"], fns["torch mse_loss"] = torch_step, torch_native
        if framework == "jax":
            import jax

            import fastloss.jax as fj
            jy, jp = jax.numpy.asarray(y), jax.numpy.asarray(p)
            vg = jax.jit(jax.value_and_grad(lambda q: fj.loss(loss, jy, q)))
            vg_native = jax.jit(jax.value_and_grad(lambda q: jax.numpy.mean((q - jy) ** 2)))
            fns["fastloss.jax (jit)"] = lambda: jax.block_until_ready(vg(jp))
            fns["jax.numpy (jit)"] = lambda: jax.block_until_ready(vg_native(jp))
        if framework == "keras":
            import torch

            import fastloss.keras as fk
            kl = fk.Loss(loss)
            ty2, tp2 = torch.from_numpy(y), torch.from_numpy(p).requires_grad_(True)

            def keras_step():
                tp2.grad = None
                kl(ty2, tp2).backward()

            def keras_native():
                tp2.grad = None
                native(ty2, tp2).backward()

            import keras
            native = keras.losses.MeanSquaredError()
            fns["fastloss.keras"], fns["keras MSE"] = keras_step, keras_native
        t = paired(fns, repeats, inner)
        print(f"    n = {n:.0e}")
        base = t["direct"]
        for k, v in t.items():
            extra = "" if k == "direct" else f"   {v / base:6.2f}x   {1e6 * (v - base):+9.1f} us"
            print(f"      {k:20} {1e6 * v:10.1f} us{extra}")


def training(steps: int, repeats: int) -> None:
    import torch

    import fastloss.torch as ft
    print("\n[3] PyTorch training step, MLP 32-64-1 on 4096 x 32 float32, Huber(delta=1), Adam, "
          f"{torch.get_num_threads()} torch threads, {fl.get_num_threads()} fastloss threads")
    torch.manual_seed(0)
    X = torch.randn(4096, 32)
    y = X @ torch.randn(32) + 0.1 * torch.randn(4096)

    def make(loss_fn):
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        history = []

        def step():
            opt.zero_grad()
            value = loss_fn(net(X).squeeze(1), y)
            value.backward()
            opt.step()
            history.append(value.item())
        return step, history

    fast = ft.FastLoss(fl.Huber(delta=1.0))
    ours, h1 = make(lambda p, t: fast(t, p))
    theirs, h2 = make(torch.nn.HuberLoss(delta=1.0))
    for _ in range(steps):  # the same trajectory from the same start
        ours()
        theirs()
    drift = max(abs(a - b) / abs(b) for a, b in zip(h1, h2))
    t = paired({"fastloss": ours, "torch": theirs}, repeats, 20)
    print(f"    loss after {steps} steps: fastloss {h1[steps - 1]:.6f}, torch {h2[steps - 1]:.6f} "
          f"(max relative difference along the way {drift:.1e})")
    print(f"    time per step: fastloss.torch {1e3 * t['fastloss']:.3f} ms, torch.nn.HuberLoss "
          f"{1e3 * t['torch']:.3f} ms ({t['fastloss'] / t['torch']:.2f}x)")


FRAMEWORKS = ("torch", "jax", "keras")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of fastloss and of the framework (default 1: on a loaded machine "
                         "multi-threaded framework kernels can stall for tens of ms at a barrier)")
    ap.add_argument("--framework", choices=FRAMEWORKS,
                    help="one framework in this process (default: each in its own process, so "
                         "that one framework's idle thread pools do not slow another's timings)")
    args = ap.parse_args(argv)
    if args.framework is None:
        print(f"fastloss {fl.__version__}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}")
        for framework in FRAMEWORKS:
            if have_framework(framework):
                print(f"\n===== {framework} =====", flush=True)
                command = [sys.executable, __file__, "--framework", framework, "--repeats",
                           str(args.repeats), "--threads", str(args.threads)]
                subprocess.run(command + (["--quick"] if args.quick else []), check=True)
            else:
                print(f"\n===== {framework}: not installed, skipped =====")
        return 0
    repeats = 5 if args.quick else args.repeats
    fl.set_num_threads(args.threads)
    if args.framework in ("torch", "keras"):
        import torch
        torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s) for fastloss and {args.framework}; load average "
          f"{os.getloadavg()[0]:.1f}")
    accuracy(10_000, args.framework)
    overhead([1000, 1_000_000], repeats, args.framework)
    if args.framework == "torch":
        training(50, repeats)
    return 0


def have_framework(framework: str) -> bool:
    import importlib.util
    need = {"keras": ("keras", "torch")}.get(framework, (framework,))
    return all(importlib.util.find_spec(m) is not None for m in need)


if __name__ == "__main__":
    sys.exit(main())
