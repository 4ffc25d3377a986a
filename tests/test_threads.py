"""Threads and processes: results independent of the thread count, concurrent callers, fork, and
control through threadpoolctl."""

from __future__ import annotations

import multiprocessing
import os
import select
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastloss as fl

N = 400_000  # large enough for every thread to be given work
TIMEOUT = 60.0  # a hung child fails instead of blocking the run


def _mse_bits(y_true, y_pred):
    value, grad = fl.MSE().value_and_grad(y_true, y_pred)
    return value, grad.tobytes()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(12)
    y = rng.standard_normal(N)
    return y, y + rng.standard_normal(N)


def test_any_thread_count_gives_the_same_bits(data):
    y, p = data
    with fl.num_threads(1):
        ref = _mse_bits(y, p)
    for t in (2, 3, 4, 16):
        with fl.num_threads(t):
            assert _mse_bits(y, p) == ref, t


def test_concurrent_callers_give_the_same_bits(data):
    # Several Python threads at once: one owns the helpers, the others run on their own thread.
    y, p = data
    with fl.num_threads(2):
        ref = _mse_bits(y, p)
        got: list = []

        def work():
            got.extend(_mse_bits(y, p) == ref for _ in range(20))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(TIMEOUT)
    assert len(got) == 80 and all(got)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_after_fork_completes(data):
    y, p = data
    with fl.num_threads(2):
        ref_value = fl.mse(y, p)  # the parent's helper threads exist now
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            try:
                value = fl.mse(y, p)
                _, grad = fl.MSE().value_and_grad(y, p)
                os.write(w, f"{value!r} {float(grad.sum())!r}".encode())
            finally:
                os._exit(0)
        os.close(w)
        try:
            ready, _, _ = select.select([r], [], [], TIMEOUT)
            if not ready:
                os.kill(pid, 9)
                pytest.fail(f"the forked child did not finish within {TIMEOUT} s")
            value, gsum = (float(s) for s in os.read(r, 200).decode().split())
        finally:
            os.close(r)
            os.waitpid(pid, 0)
    assert value == ref_value
    assert gsum == float(fl.MSE().value_and_grad(y, p)[1].sum())


def _child_value(args):
    y, p = args
    with fl.num_threads(2):
        return fl.mse(y, p)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_multiprocessing_fork_pool(data):
    y, p = data
    with fl.num_threads(2):
        ref = fl.mse(y, p)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        got = pool.map_async(_child_value, [(y, p)] * 4).get(TIMEOUT)
    assert got == [ref] * 4


def test_threadpoolctl_limits_the_default_thread_count():
    # In a fresh interpreter: fl.set_num_threads (which takes precedence) never called.
    pytest.importorskip("threadpoolctl")
    if fl.build_info()["openmp"] is None:
        pytest.skip("built without OpenMP: threadpoolctl has no OpenMP runtime to limit")
    code = textwrap.dedent(
        """
        import numpy as np, fastloss as fl
        from threadpoolctl import threadpool_limits, threadpool_info
        assert any(i["user_api"] == "openmp" for i in threadpool_info())
        y = np.linspace(0, 1, 400_000); p = y[::-1].copy()
        before = fl.get_num_threads()
        ref = fl.mse(y, p)
        with threadpool_limits(limits=1, user_api="openmp"):
            inside = fl.get_num_threads()
            assert fl.mse(y, p) == ref
        print(before, inside, fl.get_num_threads())
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "1", "3"]


def test_long_call_returns_promptly_with_many_threads(data):
    # More threads than cores: helpers that never get a core must not hold the caller.
    y, p = data
    with fl.num_threads(1):
        ref = _mse_bits(y, p)
    with fl.num_threads(64):
        t0 = time.perf_counter()
        for _ in range(20):
            assert _mse_bits(y, p) == ref
    assert time.perf_counter() - t0 < TIMEOUT


def test_thread_count_is_bounded():
    # One call runs at most _core.max_threads threads: a larger count is an error, not a crash.
    limit = fl._core.max_threads
    fl.set_num_threads(limit)
    fl.set_num_threads(2)
    for bad in (0, -1, limit + 1, 100_000, 2**31 - 1, 2**70):
        with pytest.raises(ValueError, match=rf"\[1, {limit}\]"):
            fl.set_num_threads(bad)
    assert fl.get_num_threads() == 2


def test_num_threads_context_belongs_to_its_python_thread():
    # Two Python threads in their own `with fl.num_threads(k)` blocks, interleaved step by step:
    # each sees its own count, and neither leaks into the other or into the process-wide one.
    fl.set_num_threads(2)
    barrier = threading.Barrier(2)
    seen = {}

    def worker(k):
        with fl.num_threads(k):
            barrier.wait()
            inner = fl.get_num_threads()
            with fl.num_threads(1):
                nested = fl.get_num_threads()
            barrier.wait()
            seen[k] = (inner, nested, fl.get_num_threads())
        seen[k] += (fl.get_num_threads(),)

    threads = [threading.Thread(target=worker, args=(k,)) for k in (3, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {3: (3, 1, 3, 2), 5: (5, 1, 5, 2)}
    assert fl.get_num_threads() == 2
    with pytest.raises(ValueError, match=r"\[1, "):
        with fl.num_threads(0):
            pass


def _in_forked_child(work):
    """``work()``'s repr computed in a forked child, or a failure when the child hangs."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.write(w, repr(work()).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, 9)
                pytest.fail(f"the forked child did not finish within {TIMEOUT} s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def _w1d_large():
    # Large enough for the transport family's sorter thread to start (u.size + v.size >= 2**16).
    rng = np.random.default_rng(3)
    return fl.wasserstein_1d(rng.standard_normal(70_000), rng.standard_normal(60_000))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_wasserstein_1d_after_fork():
    with fl.num_threads(2):
        ref = _w1d_large()  # the parent's sorter thread exists now
        assert _in_forked_child(_w1d_large) == repr(ref)


def _child_w1d(_):
    with fl.num_threads(2):
        return _w1d_large()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_wasserstein_1d_multiprocessing_fork():
    with fl.num_threads(2):
        ref = _w1d_large()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map_async(_child_w1d, range(3)).get(TIMEOUT) == [ref] * 3


def _family_values():
    """One loss of each family on data large enough for two threads to share it."""
    from fastloss.cli import synthetic

    first = {}
    for info in fl.losses():
        first.setdefault(info.family, info)
    values = {}
    for family, info in sorted(first.items()):
        loss = info.cls()
        n = 1
        while True:  # the smallest n with >= 2 x 32768 elements in the largest input
            y, p, inputs = synthetic(loss, n, seed=4)
            leaves = list(p) if isinstance(p, list) else [p]
            if max(np.size(a) for a in (*leaves, *inputs.values())) >= 1 << 16:
                break
            n *= 2
        value, grad = loss.value_and_grad(y, p, **inputs)
        grads = grad if isinstance(grad, (tuple, list)) else (grad,)
        values[family] = (float(value), [float(np.sum(g)) for g in grads])
    return values


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_family_after_fork():
    with fl.num_threads(2):
        ref = _family_values()  # every family's threads exist in the parent now
        assert _in_forked_child(_family_values) == repr(ref)
