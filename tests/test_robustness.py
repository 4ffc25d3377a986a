"""Robustness: Ctrl-C in long kernels, failed allocations, misaligned and overlapping buffers,
probabilities outside [0, 1], NaN that must not be swallowed, and errors that name the argument."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastloss as fl

TIMEOUT = 120.0


# --------------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------------


def _interrupted_after(delay: float, work) -> float:
    """Seconds from a SIGINT sent `delay` s into `work()` to the KeyboardInterrupt it raised."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    sent = []

    def send():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(delay, send)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            work()
        caught = time.monotonic()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent, "the work finished before the signal was sent: make it longer"
    return caught - sent[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_stops_a_long_elementwise_kernel(threads):
    # 2**32 elements of a broadcast view: no memory, many seconds of work.
    y = np.broadcast_to(np.float64(1.0), (1 << 32,))
    p = np.broadcast_to(np.float64(2.0), (1 << 32,))
    with fl.num_threads(threads):
        assert _interrupted_after(0.3, lambda: fl.mse(y, p)) < 1.0


def test_ctrl_c_stops_a_sinkhorn_that_does_not_converge():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)), rng.standard_normal((64, 2))
    work = lambda: fl.sinkhorn(x, y, epsilon=0.05, max_iter=10**8, tol=1e-300)  # noqa: E731
    assert _interrupted_after(0.3, work) < 1.0


def test_a_kernel_after_an_interrupt_gives_the_same_bits():
    # The pool and the per-thread state are reusable after an interrupted call.
    y = np.broadcast_to(np.float64(1.0), (1 << 32,))
    with fl.num_threads(2):
        _interrupted_after(0.2, lambda: fl.mse(y, y))
        a = np.linspace(0, 1, 1 << 18)
        assert fl.mse(a, a[::-1]) == fl.mse(a, a[::-1].copy())


# --------------------------------------------------------------------------------------------------
# Failed allocations: MemoryError, never a crash
# --------------------------------------------------------------------------------------------------


def test_failed_allocations_raise_memory_error_not_a_crash():
    # Under a shrinking address-space limit every call either succeeds or raises MemoryError; the
    # process must never die of a signal (a null scratch pointer written through).
    code = textwrap.dedent(
        """
        import resource, warnings, numpy as np, fastloss as fl
        warnings.simplefilter("ignore")  # Sinkhorn's "did not converge"
        fl.set_num_threads(1)
        rng = np.random.default_rng(0)
        img = rng.random((1, 1, 512, 512)).astype(np.float32)
        seg = rng.random((2, 4, 128, 128))
        seg /= seg.sum(1, keepdims=True)
        lab = rng.integers(0, 4, (2, 128, 128))
        z = rng.standard_normal((256, 1000)); z[::7, 3] = np.inf  # +inf rows take scratch
        labels = rng.integers(0, 1000, 256)
        pts = rng.standard_normal((300, 3)), rng.standard_normal((300, 3))
        calls = [
            lambda: fl.MSSSIMLoss(data_range=1.0).value_and_grad(img, img * 0.9),
            lambda: fl.DiceLoss(activation=None).value_and_grad(lab, seg),
            lambda: fl.SparseCategoricalCrossEntropy(from_logits=True).value_and_grad(labels, z),
            lambda: fl.sinkhorn(*pts, epsilon=0.1, max_iter=50),
        ]
        for c in calls:
            c()  # warm: imports and first-use allocations happen here
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        raised = 0
        for extra in range(0, 64 << 20, 1 << 20):
            resource.setrlimit(resource.RLIMIT_AS, (used + extra, hard))
            for c in calls:
                try:
                    c()
                except MemoryError:
                    raised += 1
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        print("memory errors", raised)
        """
    )
    if not sys.platform.startswith("linux"):
        pytest.skip("needs RLIMIT_AS and /proc")
    if os.environ.get("FASTLOSS_SANITIZED"):
        pytest.skip("AddressSanitizer reserves more address space than any limit leaves")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert int(r.stdout.split()[-1]) > 0  # the limit did bite


# --------------------------------------------------------------------------------------------------
# Misaligned buffers
# --------------------------------------------------------------------------------------------------


def _misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of `a` at an address one byte off its dtype's alignment."""
    buf = bytearray(a.nbytes + 1)
    m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_misaligned_inputs_and_outputs_give_identical_results(dtype):
    rng = np.random.default_rng(1)
    y, p = rng.standard_normal(1000).astype(dtype), rng.standard_normal(1000).astype(dtype)
    ref = fl.Huber().value_grad_hess(y, p, reduction="none")
    out, g, h = (_misaligned(np.zeros(1000, dtype)) for _ in range(3))
    got = fl.Huber().value_grad_hess(_misaligned(y), _misaligned(p), reduction="none", out=out,
                                     grad_out=g, hess_out=h)
    for r, o, buf in zip(ref, got, (out, g, h)):
        assert o is buf
        np.testing.assert_array_equal(r, o)
    labels = rng.integers(0, 7, 300)
    z = rng.standard_normal((300, 7)).astype(dtype)
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    ref = ce.value_and_grad(labels, z)
    g = _misaligned(np.zeros_like(z))
    got = ce.value_and_grad(_misaligned(labels), _misaligned(z), grad_out=g)
    assert got[0] == ref[0]
    np.testing.assert_array_equal(g, ref[1])
    img = rng.random((2, 1, 32, 32)).astype(dtype)
    ref = fl.SSIMLoss().value_and_grad(img, img[::-1])
    got = fl.SSIMLoss().value_and_grad(_misaligned(img), _misaligned(img[::-1].copy()))
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("name", sorted(info.name for info in fl.losses()))
def test_every_loss_gives_identical_results_on_misaligned_inputs(name):
    from fastloss.cli import synthetic

    loss = fl.get_loss(name)
    y, p, inputs = synthetic(loss, 4, seed=1)

    def mis(a):
        if isinstance(a, list):
            return [mis(x) for x in a]
        return _misaligned(a) if isinstance(a, np.ndarray) and a.dtype.itemsize > 1 else a

    ref = loss.value_and_grad(y, p, **inputs)
    got = loss.value_and_grad(mis(y), mis(p), **{k: mis(v) for k, v in inputs.items()})
    assert got[0] == ref[0] or (np.isnan(got[0]) and np.isnan(ref[0]))
    for g, r in zip(*(x if isinstance(x, (list, tuple)) else (x,) for x in (got[1], ref[1]))):
        np.testing.assert_array_equal(g, r)


# --------------------------------------------------------------------------------------------------
# Output buffers that overlap the inputs
# --------------------------------------------------------------------------------------------------


def _overlap_cases(rng):
    z = rng.standard_normal((50, 6))
    t = np.exp(z[::-1]) / np.exp(z[::-1]).sum(1, keepdims=True)
    labels = rng.integers(0, 6, 50)
    seg = rng.random((2, 3, 16, 16))
    seg_lab = rng.integers(0, 3, (2, 16, 16))
    img = rng.random((2, 1, 16, 16))
    y = rng.standard_normal(100)
    return [
        # (loss, y_true, y_pred, the buffer passed as grad_out: an input or a view into one)
        (fl.CategoricalCrossEntropy(from_logits=True), t, z, "y_true"),
        (fl.CategoricalFocal(), t, z, "y_true"),
        (fl.SparseCategoricalFocal(), labels, z, "y_pred_shifted"),
        (fl.DiceLoss(activation="softmax"), seg_lab, seg, "y_pred_shifted"),
        (fl.SSIMLoss(), img, img[::-1].copy(), "y_true"),
        (fl.Huber(), y, y[::-1].copy(), "y_true"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_grad_out_overlapping_an_input_gives_the_right_gradient(case):
    loss, y_true, y_pred, which = _overlap_cases(np.random.default_rng(2))[case]
    ref_value, ref_grad = loss.value_and_grad(y_true, y_pred)
    y_true, y_pred = y_true.copy(), y_pred.copy()
    if which == "y_true":
        buf = y_true
    else:  # a buffer that overlaps y_pred shifted by one element (not the same view)
        store = np.concatenate([y_pred.ravel(), [0.0]])
        y_pred = store[:-1].reshape(y_pred.shape)
        buf = store[1:].reshape(y_pred.shape)
    value, grad = loss.value_and_grad(y_true, y_pred, grad_out=buf)
    assert grad is buf
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_grad_out_over_the_logits_themselves_stays_in_place():
    rng = np.random.default_rng(3)
    z, labels = rng.standard_normal((40, 5)), rng.integers(0, 5, 40)
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    ref = ce.value_and_grad(labels, z)
    value, grad = ce.value_and_grad(labels, z, grad_out=z)
    assert grad is z and value == ref[0]
    np.testing.assert_array_equal(z, ref[1])
    y, p = rng.standard_normal(100), rng.standard_normal(100)
    ref = fl.MSE().value_and_grad(y, p)
    value, grad = fl.MSE().value_and_grad(y, p, grad_out=p)
    np.testing.assert_array_equal(p, ref[1])


def test_outputs_that_share_memory_are_an_error():
    y, p = np.zeros(10), np.ones(10)
    buf = np.zeros(10)
    with pytest.raises(ValueError, match="grad_out and hess_out share memory"):
        fl.MSE().grad_hess(y, p, grad_out=buf, hess_out=buf)


# --------------------------------------------------------------------------------------------------
# Probabilities outside [0, 1]; NaN propagates
# --------------------------------------------------------------------------------------------------


PROBABILITY_LOSSES = [
    (fl.BinaryCrossEntropy(from_logits=False), lambda p: (np.ones(p.shape[0]), p[:, 0])),
    (fl.BinaryFocal(from_logits=False), lambda p: (np.ones(p.shape[0]), p[:, 0])),
    (fl.SparseCategoricalCrossEntropy(), lambda p: (np.zeros(p.shape[0], int), p)),
    (fl.CategoricalCrossEntropy(), lambda p: (np.full(p.shape, 0.5), p)),
    (fl.ConsistencyMSE(from_logits=False), lambda p: (np.full(p.shape, 0.5), p)),
    (fl.DiceLoss(activation=None), lambda p: (np.zeros((1, 4, 4), int), np.broadcast_to(
        p[:1, :1, None, None], (1, 2, 4, 4)).copy())),
]


@pytest.mark.parametrize("case", range(len(PROBABILITY_LOSSES)))
@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_probabilities_outside_the_unit_interval_are_an_error(case, bad):
    loss, make = PROBABILITY_LOSSES[case]
    p = np.full((4, 2), 0.5)
    y_true, y_pred = make(p)
    loss(y_true, y_pred)  # valid
    y_pred = y_pred.copy()
    y_pred.flat[0] = bad
    grad = np.full(y_pred.shape, 7.0)
    with pytest.raises(ValueError, match=r"y_pred holds probabilities.*y_pred\[0.*" + str(bad)):
        loss.value_and_grad(y_true, y_pred, grad_out=grad)
    assert (grad == 7.0).all()  # nothing written
    y_pred.flat[0] = np.nan
    assert np.isnan(loss(y_true, y_pred))


def test_ms_ssim_of_an_image_with_a_nan_pixel_is_nan():
    img = np.random.default_rng(4).random((1, 1, 180, 180))
    bad = img.copy()
    bad[0, 0, 90, 90] = np.nan
    value, grad = fl.MSSSIMLoss().value_and_grad(img, bad)
    assert np.isnan(value)
    assert np.isnan(grad).any()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pairwise_distance_gradient_of_a_nan_row_is_nan(metric):
    # Every coordinate of a row enters its distances through the row's norm (squared Euclidean
    # distances keep each coordinate apart: there the other coordinates' gradients stay finite).
    x = np.random.default_rng(5).standard_normal((4, 3))
    x[1, 0] = np.nan
    g = fl.pairwise_distances_backward(np.ones((4, 4)), x, metric=metric)
    assert np.isnan(g[1]).all()


# --------------------------------------------------------------------------------------------------
# Errors name the argument (ValueError / TypeError, at construction where possible)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, match", [
    (lambda: fl.SparseCategoricalCrossEntropy(ignore_index=2**70), ValueError, "ignore_index"),
    (lambda: fl.Distillation(temperature=1e308), ValueError, "temperature"),
    (lambda: fl.KLDivergence(temperature=1e200), ValueError, "temperature"),
    (lambda: fl.SSIMLoss(data_range=1e308), ValueError, "data_range"),
    (lambda: fl.MSSSIMLoss(k2=1e200), ValueError, "k2"),
    (lambda: fl.Quantile(quantile="0.25"), TypeError, "quantile"),
    (lambda: fl.Quantile(quantile=None), TypeError, "quantile"),
])
def test_bad_parameters_fail_at_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_call_arguments_are_named():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="y_true"):
        fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=[1, 1, 1, 1])(
            np.array([0, 1, 2**40]), z)
    with pytest.raises(ValueError, match="y_true .*target logits"):
        fl.KLDivergence()(np.zeros((3, 5)), z)
    with pytest.raises(TypeError, match="axis"):
        fl.softmax(z, axis=0.5)
    from fastloss.scipy import linear_objective

    X, y = np.ones((5, 3)), np.zeros(5)
    f = linear_objective(fl.MSE(), X, y)
    for theta in (np.zeros(2), np.zeros(7)):
        with pytest.raises(ValueError, match="theta must have shape"):
            f.fun(theta)
    with pytest.raises(ValueError, match="p must have shape"):
        f.hessp(np.zeros(4), np.zeros(3))


@pytest.mark.skipif(sys.platform != "linux" or not any(
    os.access(os.path.join(d, "valgrind"), os.X_OK) for d in os.environ.get("PATH", "").split(":")),
    reason="needs valgrind (Linux)")
def test_import_on_a_cpu_without_avx512():
    """valgrind's CPU has AVX2 but no AVX-512: importing fastloss and running a kernel there must
    pick avx2 without executing a single AVX-512 instruction (SIGILL), as on such a CPU."""
    if "avx2" not in fl.build_info()["isa_available"]:
        pytest.skip("this CPU has no AVX2")
    code = ("import numpy as np, fastloss as fl; "
            "print(fl.build_info()['isa_selected'], fl.MSE()(np.ones(100), np.zeros(100)))")
    done = subprocess.run(["valgrind", "-q", "--error-exitcode=0", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["avx2", "1.0"]
