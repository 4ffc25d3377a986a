"""The cache of freed blocks behind large output arrays and kernel scratch: reuse, limits,
ordinary-array behaviour, threads and fork."""

from __future__ import annotations

import gc
import os
import pickle
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core

N = 300_000  # float64: 2.4 MB, above the smallest cached block
TIMEOUT = 60.0


@pytest.fixture
def cache():
    """A 64 MiB cache, emptied first (sanitizer builds start with none), restored after. Arrays
    of earlier tests are collected first, so that none comes back into the cache mid-test."""
    gc.collect()
    previous = fl.set_buffer_cache(0)
    fl.set_buffer_cache(64 << 20)
    yield
    fl.set_buffer_cache(previous)


def _grad(loss, *args, **kwargs):
    return loss.value_and_grad(*args, **kwargs)[1]


def _data(n=N, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


def test_a_freed_output_serves_the_next_call(cache):
    y, p = _data()
    _, g = fl.MSE().value_and_grad(y, p)
    address = g.ctypes.data
    assert type(g.base).__name__ == "PyCapsule" and not g.flags.owndata
    del g
    assert fl.buffer_cache_info()["held"] >= N * 8
    _, g2 = fl.MSE().value_and_grad(y, p)
    assert g2.ctypes.data == address  # the same block again: no fresh pages
    assert fl.buffer_cache_info()["held"] == 0
    np.testing.assert_allclose(g2, 2.0 * (p - y) / N, rtol=1e-15)


def test_small_outputs_are_numpys_own(cache):
    y, p = _data(1000)
    _, g = fl.MSE().value_and_grad(y, p)
    assert g.flags.owndata and g.base is None
    assert g.nbytes < _core.cached_block_min


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_cached_output_is_an_ordinary_array(cache, dtype):
    y, p = _data(dtype=dtype)
    ref = _grad(fl.Huber(), y, p)
    for _ in range(3):  # fresh, then recycled blocks
        g = _grad(fl.Huber(), y, p)
        assert g.dtype == dtype and g.shape == (N,)
        assert g.flags.c_contiguous and g.flags.writeable and g.flags.aligned
        assert g.ctypes.data % 64 == 0
        np.testing.assert_array_equal(g, ref)
        assert not np.shares_memory(g, ref)
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(g)), ref)
        g[:] = 0.0  # writeable: the next call's array must not see this
        g2 = _grad(fl.Huber(), y, p, grad_out=g)  # and usable as a caller buffer
        assert g2 is g
        np.testing.assert_array_equal(g, ref)
        del g, g2


def test_every_binding_returns_correct_arrays_from_recycled_blocks(cache):
    # Fill the cache with blocks of garbage first: each output must be written whole.
    junk = [_grad(fl.MSE(), *_data(n)) for n in (N, 2 * N, 4 * N)]
    for j in junk:
        j.fill(np.nan)
    del junk, j
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4096, 100))
    labels = rng.integers(0, 100, 4096)
    value, g = fl.SparseCategoricalCrossEntropy(from_logits=True).value_and_grad(labels, z)
    sm = np.exp(z - z.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)
    ref = sm.copy()
    ref[np.arange(4096), labels] -= 1.0
    np.testing.assert_allclose(g, ref / 4096, rtol=1e-12, atol=1e-18)
    t = np.round(rng.exponential(size=N), 2) + 0.01
    eta = rng.standard_normal(N)
    gh = fl.CoxPH().grad_hess(t, eta)
    assert all(np.isfinite(a).all() for a in gh)
    y = rng.standard_normal(N)
    np.testing.assert_array_equal(fl.MSE(reduction="none")(y, eta), (eta - y) ** 2)
    x = rng.standard_normal(N)
    np.testing.assert_allclose(_core.vmath("exp", x), np.exp(x), rtol=1e-15)


def test_the_limit_keeps_the_most_recently_freed_blocks(cache):
    y, p = _data()
    outs = [_grad(fl.MSE(), y, p) for _ in range(4)]
    addresses = [o.ctypes.data for o in outs]
    while outs:  # freed in order: outs[3] is the most recent
        outs.pop(0)
    info = fl.buffer_cache_info()
    assert info["blocks"] == 4
    capacity = info["held"] // 4  # whole pages (huge pages here): at least the array's bytes
    assert capacity >= N * 8 and info["held"] == 4 * capacity
    assert fl.set_buffer_cache(2 * capacity) == 64 << 20
    assert fl.buffer_cache_info() == {"limit": 2 * capacity, "held": 2 * capacity, "blocks": 2}
    first = _grad(fl.MSE(), y, p)
    second = _grad(fl.MSE(), y, p)
    assert (first.ctypes.data, second.ctypes.data) == (addresses[3], addresses[2])
    assert fl.buffer_cache_info()["held"] == 0
    del first, second
    fl.set_buffer_cache(0)
    assert fl.buffer_cache_info() == {"limit": 0, "held": 0, "blocks": 0}
    g = _grad(fl.MSE(), y, p)
    del g  # nothing kept with a limit of 0
    assert fl.buffer_cache_info()["held"] == 0


def test_a_block_above_the_limit_is_freed_at_once(cache):
    fl.set_buffer_cache(1 << 20)
    g = _grad(fl.MSE(), *_data())  # 2.4 MB
    del g
    assert fl.buffer_cache_info()["held"] == 0


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2 ** 63, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("1", TypeError)])
def test_bad_limits_are_named(bad, error):
    with pytest.raises(error, match="max_bytes"):
        fl.set_buffer_cache(bad)


def test_concurrent_callers_share_the_cache(cache):
    sizes = [N, N + 1, 2 * N, N // 2 + 7]
    data = {n: _data(n, seed=n) for n in sizes}
    refs = {n: _grad(fl.LogCosh(), *data[n]) for n in sizes}

    def work(i):
        n = sizes[i % len(sizes)]
        with fl.num_threads(1 + i % 2):  # kernels on one and on two threads at once
            g = _grad(fl.LogCosh(), *data[n])
        return np.array_equal(g, refs[n])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(200)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_takes_blocks(cache):
    # CoxPH takes and returns a scratch block inside its kernel, without the GIL, while the main
    # thread forks: each child inherits the cache in whatever state it was and must still compute
    # (the lock is held for nanoseconds, so this rarely catches a fork inside it: the fork handlers
    # in cpp/cpu/memory.cpp are what guarantee that).
    rng = np.random.default_rng(2)
    t, eta = rng.exponential(size=N), rng.standard_normal(N)
    ref = fl.CoxPH(reduction="sum")(t, eta)
    stop = threading.Event()

    def churn():
        with fl.num_threads(1):
            while not stop.is_set():
                fl.CoxPH(reduction="sum")(t, eta)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(10):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: never returns into pytest
                try:
                    with fl.num_threads(1):
                        os.write(w, repr(fl.CoxPH(reduction="sum")(t, eta)).encode())
                finally:
                    os._exit(0)
            os.close(w)
            ready, _, _ = select.select([r], [], [], TIMEOUT)
            if not ready:
                os.kill(pid, 9)
            out = os.read(r, 256).decode() if ready else ""
            os.close(r)
            os.waitpid(pid, 0)
            assert ready, f"the forked child did not finish within {TIMEOUT} s"
            assert out == repr(ref)
            time.sleep(0.005)
    finally:
        stop.set()
        worker.join()
