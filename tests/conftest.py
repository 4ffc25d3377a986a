"""Shared fixtures and helpers for the fastloss test-suite.

Fixtures
--------
isa      parametrized over every SIMD target this CPU can run; selects it for the test and
         restores the previously selected one afterwards.
rng      a numpy Generator seeded from the test's node id (reproducible, different per test).

Hypothesis runs ~50 examples per property (profile "default"); set HYPOTHESIS_PROFILE=thorough
for a long run.

Every test also runs under an autouse fixture that restores the selected ISA and the thread count,
so no test leaks global state into another.

Helpers (import them with ``from conftest import ...``)
-------------------------------------------------------
assert_elementwise_close   per-element comparison in ULPs of the compute dtype
assert_value_close         reduced values (Python floats) with a per-dtype relative tolerance
assert_bitwise_equal       exact equality of bits (NaN-aware), for determinism tests
reference_atol             allowances for outputs that cancel (binary losses with soft labels)
make_loss / LOSS_CASES     construct every regression loss configuration from reference.py
BINARY_CASES               the same for the binary-classification kernels
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np
import pytest
from hypothesis import settings as _hyp_settings

import fastloss
from fastloss import _core

import reference as R

AVAILABLE_ISAS = list(_core.available_isas())

# Hypothesis: ~50 examples per property by default (fast CI); HYPOTHESIS_PROFILE=thorough for a
# long exploratory run. No example database is written into the checkout.
_hyp_settings.register_profile("default", max_examples=50, deadline=None, database=None)
_hyp_settings.register_profile("thorough", max_examples=3000, deadline=None, database=None)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Per-element tolerance, in units in the last place of the compute dtype.
ELEMENT_ULPS = 8
# Relative tolerance of a reduced value (a float64 sum of non-negative terms).
VALUE_RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-12}


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    """Forces each available SIMD target in turn; restores the previous selection afterwards."""
    previous = _core.selected_isa()
    fastloss.select_isa(request.param)
    assert _core.selected_isa() == request.param
    try:
        yield request.param
    finally:
        fastloss.select_isa(previous)


@pytest.fixture(autouse=True)
def _restore_runtime_state():
    isa_before, threads_before = _core.selected_isa(), fastloss.get_num_threads()
    yield
    if _core.selected_isa() != isa_before:
        fastloss.select_isa(isa_before)
    if fastloss.get_num_threads() != threads_before:
        fastloss.set_num_threads(threads_before)


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# --------------------------------------------------------------------------------------------------
# Loss configurations
# --------------------------------------------------------------------------------------------------


def make_loss(name, params=None, **kwargs):
    """The fastloss class for kernel ``name`` built with ``params`` (plus the constructor arguments
    that select that kernel, e.g. ``from_logits=True`` for ``bce_logits``)."""
    ref = R.REFERENCES[name]
    cls = getattr(fastloss, ref.cls_name)
    return cls(**{**ref.base_params, **dict(params or {}), **kwargs})


def _case_id(name, params):
    return name + "".join(f"-{k}={v}" for k, v in params.items())


def loss_cases(family):
    """(kernel name, params) for every reference of ``family`` and every param set."""
    return [(n, p) for n, ref in R.REFERENCES.items() if ref.family == family
            for p in ref.param_sets]


LOSS_CASES = loss_cases("regression")
LOSS_CASE_IDS = [_case_id(n, p) for n, p in LOSS_CASES]
DEFAULT_CASES = [(n, ref.param_sets[0]) for n, ref in R.REFERENCES.items()
                 if ref.family == "regression"]
DEFAULT_CASE_IDS = [n for n, _ in DEFAULT_CASES]
BINARY_CASES = loss_cases("binary")
BINARY_CASE_IDS = [_case_id(n, p) for n, p in BINARY_CASES]


# --------------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------------


def _tiny(dtype):
    return float(np.finfo(dtype).smallest_subnormal)


def assert_elementwise_close(got, expected, dtype, ulps=ELEMENT_ULPS, atol=None, what=""):
    """``got`` (an array in ``dtype``) equals the float64 ``expected`` to ``ulps`` ULPs of dtype.

    The ULP is that of the expected value rounded to dtype (values that overflow dtype must be inf
    in ``got``); NaN must match NaN and infinities must match exactly. ``atol`` adds an absolute
    allowance (default: a few subnormal quanta).
    """
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != expected {expected.shape}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != expected {dtype}"
    g = got.astype(np.float64)
    with np.errstate(all="ignore"):
        e_rounded = expected.astype(dtype)  # overflow -> inf, as the kernel's arithmetic does
        nan_g, nan_e = np.isnan(g), np.isnan(e_rounded)
        bad = nan_g != nan_e
        inf_e = np.isinf(e_rounded)
        bad |= inf_e & (g != e_rounded.astype(np.float64))
        fin = ~nan_e & ~inf_e
        spacing = np.spacing(np.abs(e_rounded)).astype(np.float64)
        allow = ulps * spacing + (4 * _tiny(dtype) if atol is None else atol)
        err = np.abs(g - expected)
        bad |= fin & ~(err <= allow)
    if np.any(bad):
        idx = np.argwhere(bad)[:5]
        rows = []
        for i in map(tuple, idx):
            u = err[i] / spacing[i] if spacing[i] else math.inf
            rows.append(f"  at {i}: got {g[i]!r}, expected {expected[i]!r} ({u:.3g} ulp)")
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ by more than {ulps} ulp "
            f"({dtype}):\n" + "\n".join(rows))


def assert_value_close(got, expected, dtype, rtol=None, what=""):
    """A reduced value: a Python float, NaN iff expected NaN, inf iff expected inf."""
    assert isinstance(got, float), f"{what}: value is {type(got).__name__}, not float"
    rtol = VALUE_RTOL[np.dtype(dtype)] if rtol is None else rtol
    if math.isnan(expected):
        assert math.isnan(got), f"{what}: got {got!r}, expected NaN"
        return
    if math.isinf(expected):
        assert got == expected, f"{what}: got {got!r}, expected {expected!r}"
        return
    assert math.isfinite(got), f"{what}: got {got!r}, expected {expected!r}"
    assert abs(got - expected) <= rtol * abs(expected) + 1e-300, (
        f"{what}: got {got!r}, expected {expected!r} (rel err "
        f"{abs(got - expected) / max(abs(expected), 1e-300):.3g} > {rtol})")


def assert_bitwise_equal(a, b, what=""):
    """Same type/shape/dtype and identical bits. NaN matches NaN whatever its sign or payload
    (NumPy does not define those); everything else, -0.0 included, is compared by bits."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, float) and isinstance(b, float), f"{what}: {a!r} vs {b!r}"
        same = np.float64(a).tobytes() == np.float64(b).tobytes()
        assert same or (math.isnan(a) and math.isnan(b)), f"{what}: {a!r} != {b!r} (bitwise)"
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (
        f"{what}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}")
    fa, fb = np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel()
    differ = fa.view(f"u{a.itemsize}") != fb.view(f"u{b.itemsize}")
    if a.dtype.kind == "f":
        differ &= ~(np.isnan(fa) & np.isnan(fb))
    if np.any(differ):
        diff = np.flatnonzero(differ)
        i = diff[0]
        raise AssertionError(f"{what}: {diff.size} elements differ bitwise; first at flat index "
                             f"{i}: {fa[i]!r} vs {fb[i]!r}")


def same_on_one_and_two_threads(loss, *args):
    """Per-item values (reduction="none") and the gradient, bitwise the same on 1 and 2 threads;
    returns them."""
    with fastloss.num_threads(1):
        a = loss.value_and_grad(*args, reduction="none")
    with fastloss.num_threads(2):
        b = loss.value_and_grad(*args, reduction="none")
    assert_bitwise_equal(a[0], b[0])
    assert_bitwise_equal(a[1], b[1])
    return a


def reference_atol(name, y_true, y_pred, params=None, sample_weight=None, reduction="mean",
                   dtype=None, ulps=ELEMENT_ULPS):
    """Absolute allowances (value, grad, hess) for kernels whose outputs may cancel or go through
    pow (``Reference.scales``): ``ulps`` eps times the term scales, weighted and reduced like the
    outputs, plus the smallest normal number of the dtype (products of several factors lose
    their relative accuracy when an intermediate underflows: results below the normal range are
    compared absolutely). None for references without scales (the plain ULP comparison
    applies)."""
    if R.REFERENCES[name].scales is None:
        return None
    dt = np.dtype(dtype) if dtype is not None else R.compute_dtype(y_pred)
    ls, gs, hs = R.elementwise_scales(name, y_true, y_pred, params, dt)
    v, g, h = R.reduce_reference(ls, gs, hs, sample_weight, reduction)
    e, tiny = ulps * float(np.finfo(dt).eps), float(np.finfo(dt).tiny)
    with np.errstate(all="ignore"):
        return e * v + (0.0 if np.ndim(v) == 0 else tiny), e * g + tiny, e * h + tiny


def fd_grad_hess(loss, y, x, w, reduction, steps):
    """Central differences, element by element, of the reduced value (-> gradient) and of the
    gradient (-> Hessian diagonal) of `loss` at `x`; `steps[i]` is the step of element i."""
    n = x.size
    fd_g, fd_h = np.empty(n), np.empty(n)
    for i in range(n):
        pp, pm = x.copy(), x.copy()
        pp[i] += steps[i]
        pm[i] -= steps[i]
        vp, gp = loss.value_and_grad(y, pp, sample_weight=w, reduction=reduction)
        vm, gm = loss.value_and_grad(y, pm, sample_weight=w, reduction=reduction)
        fd_g[i] = (vp - vm) / (pp[i] - pm[i])
        fd_h[i] = (gp[i] - gm[i]) / (pp[i] - pm[i])
    return fd_g, fd_h


def ulp_tolerance(dtype, ulps=ELEMENT_ULPS):
    """``ulps`` units of relative precision of ``dtype`` (for assert_allclose's rtol)."""
    return ulps * float(np.finfo(dtype).eps)
