"""The common call's compiled fast path (``_core.elementwise_fast``, ``ElementwiseLoss._fast``).

It serves plain float ndarrays without weights in one step and must answer exactly what the
general path answers (bit for bit, same types); every other call -- and every call that the
general path would reject -- must come back NotImplemented, so that the general path converts it
or raises its clear error.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core
from fastloss._base import _GRAD_HESS, _VALUE, _VALUE_GRAD, _VALUE_GRAD_HESS

import reference as R
from conftest import assert_bitwise_equal

def loss_for(name, **kwargs):
    ref = R.REFERENCES[name]
    return getattr(fl, ref.cls_name)(**{**ref.base_params, **kwargs})


NAMES = sorted(n for n in _core.elementwise_kernels if n in R.REFERENCES)
FAST = [n for n in NAMES if loss_for(n)._fast is not None]


def general(loss, y, p, reduction, grad_out=None, hess_out=None, args=None, sample_weight=None):
    """(value, grad, hess) from the general path (``_call``), which the fast path must match."""
    result, reduction = loss._call((y, p) if args is None else args, {}, sample_weight, reduction,
                                   True, loss.hessian != "none", None, grad_out, hess_out)
    return loss._value(result, reduction), result[3], result[4]


def assert_same(a, b, what):
    assert type(a) is type(b), f"{what}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, tuple):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{i}]")
    else:
        assert_bitwise_equal(a, b, what)


def test_fast_path_covers_the_plain_elementwise_losses():
    # Every elementwise loss whose call is ElementwiseLoss's own has a fast path.
    assert {"mse", "mae", "huber", "bce_logits", "bce_probs", "logistic", "quantile"} <= set(FAST)
    # One per-element parameter for every element rides in the spec (Quantile's scalar tau);
    # per-column parameter vectors and subclasses with their own _run take the general path.
    assert fl.Quantile(quantile=0.9)._fast[4] == 0.9 and fl.MSE()._fast[4] is None
    assert fl.Quantile(quantile=[0.1, 0.9])._fast is None
    assert fl.Quantile(quantile=[0.3])._fast is None
    assert fl.PoissonNLL()._fast is None


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["1d", "2d", "strided"])
def test_fast_path_matches_the_general_path_bitwise(name, dtype, layout):
    loss = loss_for(name)
    rng = np.random.default_rng(7)
    shape = {"1d": (37,), "2d": (5, 7), "strided": (74,)}[layout]
    y, p = R.REFERENCES[name].make_inputs(rng, shape, dtype)[:2]
    if layout == "strided":
        y, p = y[::2], p[::-2]
    hess = loss.hessian != "none"
    weights = (None, rng.random(p.shape).astype(dtype), rng.random(p.shape))
    for reduction, w in [(r, w) for r in (None, "mean", "sum") for w in weights]:
        # The fast path serves this call (not NotImplemented) ...
        assert _core.elementwise_fast(loss._fast, (y, p), w, reduction, None, None,
                                      _VALUE_GRAD) is not NotImplemented
        v, g, h = general(loss, y, p, reduction, sample_weight=w)
        what = f"{name} {layout} {reduction} weights {None if w is None else w.dtype}"
        # ... and every public method answers what the general path answers.
        assert_same(loss(y, p, sample_weight=w, reduction=reduction), v, what + " value")
        assert_same(loss.value_and_grad(y, p, w, reduction=reduction), (v, g),
                    what + " value_and_grad")
        gb = np.full_like(p, np.nan)
        got = loss.value_and_grad(y, p, sample_weight=w, reduction=reduction, grad_out=gb)
        assert got[1] is gb
        assert_same(got, (v, g), what + " value_and_grad(grad_out=)")
        if hess:
            gb, hb = np.full_like(p, np.nan), np.full_like(p, np.nan)
            got = loss.value_grad_hess(y, p, sample_weight=w, reduction=reduction, grad_out=gb,
                                       hess_out=hb)
            assert got[1] is gb and got[2] is hb
            assert_same(got, (v, g, h), what + " value_grad_hess")
            assert_same(loss.grad_hess(y, p, w, reduction=reduction), (g, h), what + " grad_hess")
        else:
            with pytest.raises(NotImplementedError, match="no Hessian"):
                loss.grad_hess(y, p, sample_weight=w, reduction=reduction)


def test_mixed_label_dtype_and_in_place_gradient():
    loss = fl.MSE()
    rng = np.random.default_rng(1)
    y, p = rng.standard_normal(50).astype(np.float32), rng.standard_normal(50)
    v, g, _ = general(loss, y, p, None)
    fast = _core.elementwise_fast(loss._fast, (y, p), None, None, None, None, _VALUE)
    assert fast is not NotImplemented
    assert_same(loss.value_and_grad(y, p), (v, g), "float32 labels, float64 predictions")
    # y_pred itself as grad_out: each element is read before it is written.
    q = p.copy()
    value, grad = loss.value_and_grad(y, q, grad_out=q)
    assert grad is q
    assert_same((value, q), (v, g), "in place")


def test_value_is_a_python_float():
    y, p = np.zeros(3), np.ones(3)
    assert type(fl.MSE()(y, p)) is float
    assert type(fl.MSE().value_and_grad(y, p)[0]) is float


def _y_p(n=8, dtype=np.float64):
    rng = np.random.default_rng(3)
    return rng.random(n).round().astype(dtype), rng.random(n).astype(dtype)


FALLBACKS = {  # (args, sample_weight, reduction, grad_out) from fresh (y, p, g)
    "integer labels": lambda y, p, g: ((y.astype(np.int64), p), None, None, None),
    "a list": lambda y, p, g: ((list(y), p), None, None, None),
    "float16": lambda y, p, g: ((y, p.astype(np.float16)), None, None, None),
    "big-endian": lambda y, p, g: ((y, p.astype(">f8")), None, None, None),
    "a subclass": lambda y, p, g: ((y, p.view(np.memmap)), None, None, None),
    "shapes differ": lambda y, p, g: ((y[:4], p), None, None, None),
    "not one stride": lambda y, p, g: ((y.reshape(2, 4)[:, :2], p.reshape(2, 4)[:, :2]), None,
                                       None, None),
    "empty": lambda y, p, g: ((y[:0], p[:0]), None, None, None),
    "four inputs": lambda y, p, g: ((y, p, p, p), None, None, None),
    "weight by position and by name": lambda y, p, g: ((y, p, p), p, None, None),
    "integer weights": lambda y, p, g: ((y, p), np.ones(p.shape, int), None, None),
    "row weights": lambda y, p, g: ((y.reshape(2, 4), p.reshape(2, 4)), np.ones(2), None, None),
    "negative weight": lambda y, p, g: ((y, p), -p, None, None),
    "weights summing to zero": lambda y, p, g: ((y, p), 0 * p, None, None),
    "grad_out is the weight": lambda y, p, g: ((y, p), g, None, g),
    "reduction none": lambda y, p, g: ((y, p), None, "none", None),
    "unknown reduction": lambda y, p, g: ((y, p), None, "avg", None),
    "reduction not a string": lambda y, p, g: ((y, p), None, 1, None),
    "grad_out read-only": lambda y, p, g: ((y, p), None, None, np.broadcast_to(g, g.shape)),
    "grad_out other dtype": lambda y, p, g: ((y, p), None, None, g.astype(np.float32)),
    "grad_out other shape": lambda y, p, g: ((y, p), None, None, g[:4]),
    "grad_out a list": lambda y, p, g: ((y, p), None, None, list(g)),
    "grad_out is y_true": lambda y, p, g: ((y, p), None, None, y),
    "grad_out overlaps y_pred": lambda y, p, g: ((y[:4], p[:4]), None, None, p[1:5]),
    "grad_out stride 0": lambda y, p, g: ((y, p), None, None, np.lib.stride_tricks.as_strided(
        g, shape=g.shape, strides=(0,))),
}
# Calls the general path rejects: the fast path may raise the very same error itself.
SAME_ERROR = {"negative weight", "weights summing to zero"}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_every_other_call_takes_the_general_path(case):
    loss = fl.MSE()

    def call():  # fresh inputs each time: some cases write into an input
        y, p = _y_p()
        return FALLBACKS[case](y, p, np.empty_like(p))

    args, w, reduction, grad_out = call()
    try:
        expected = general(loss, None, None, reduction, grad_out, args=args, sample_weight=w)[:2]
    except Exception as e:  # noqa: BLE001
        error = e
    else:
        error = None
    args, w, reduction, grad_out = call()
    if case not in SAME_ERROR:
        assert _core.elementwise_fast(loss._fast, args, w, reduction, grad_out, None,
                                      _VALUE_GRAD) is NotImplemented
    # The public call still answers (converting) or raises the general path's error.
    args, w, reduction, grad_out = call()
    if error is not None:
        with pytest.raises(type(error)) as raised:
            loss.value_and_grad(*args, sample_weight=w, reduction=reduction, grad_out=grad_out)
        assert str(raised.value) == str(error)
        return
    got = loss.value_and_grad(*args, sample_weight=w, reduction=reduction, grad_out=grad_out)
    assert_bitwise_equal(got[0], expected[0], case)
    assert_bitwise_equal(np.asarray(got[1]), np.asarray(expected[1]), case)


def test_checks_of_labels_and_probabilities_keep_their_errors():
    y, p = _y_p()
    bad_p = p.copy()
    bad_p[5] = 1.5
    bce = fl.BinaryCrossEntropy()
    fast = _core.elementwise_fast(bce._fast, (y, bad_p), None, None, None, None, _VALUE)
    assert fast is NotImplemented
    with pytest.raises(ValueError, match=r"y_pred holds probabilities.*y_pred\[5\] = 1.5"):
        bce.value_and_grad(y, bad_p)
    bad_y = y.copy()
    bad_y[2] = 2.0
    logistic = fl.Logistic()
    assert _core.elementwise_fast(logistic._fast, (bad_y, p), None, None, None, None,
                                  _VALUE) is NotImplemented
    with pytest.raises(ValueError, match=r"binary labels.*y_true\[2\] = 2.0"):
        logistic(bad_y, p)
    # NaN probabilities propagate rather than fail.
    nan_p = p.copy()
    nan_p[0] = np.nan
    assert np.isnan(bce(y, nan_p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logistic_on_checked_labels_gives_the_same_bits(isa, dtype):
    """With a caller's buffer the labels are checked before the kernel, whose body then takes the
    sign from each label's bits instead of comparing it (it would not make a bad label's value
    NaN); with fresh outputs the body that does runs. Both must give the same bits, labels -1, 0,
    -0 and 1 against edge logits, at every lane and in the tail."""
    rng = np.random.default_rng(11)
    n = 2 * 1024 + 37
    y = rng.choice(np.array([-1.0, 0.0, -0.0, 1.0]), n).astype(dtype)
    z = (4 * rng.standard_normal(n)).astype(dtype)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-40, -1e-40, 87.0, -88.0, 104.0,
             -104.0, 745.0, -746.0, 17.0, -17.0, 40.0, -40.0]
    spots = rng.choice(n, 4 * len(edges), replace=False)
    z[spots] = np.resize(np.array(edges, dtype), spots.size)
    loss = fl.Logistic()
    for reduction in ("mean", "sum", "none"):
        fresh = loss.value_grad_hess(y, z, reduction=reduction)
        gb, hb = np.empty_like(z), np.empty_like(z)
        given = loss.value_grad_hess(y, z, reduction=reduction, grad_out=gb, hess_out=hb)
        assert given[1] is gb and given[2] is hb
        assert_same(given, fresh, f"{reduction} value_grad_hess")
        gb = np.empty_like(z)
        assert_same(loss.value_and_grad(y, z, reduction=reduction, grad_out=gb),
                    loss.value_and_grad(y, z, reduction=reduction), f"{reduction} value_and_grad")
    # Finite logits: the values themselves, against the reference.
    finite = np.isfinite(z)
    v, g = loss.value_and_grad(y[finite], z[finite], reduction="none", grad_out=np.empty_like(z[finite]))
    s = np.where(y[finite] > 0, 1.0, -1.0)
    u = s * z[finite].astype(np.longdouble)
    tol, tiny = 4 * np.finfo(dtype).eps, np.finfo(dtype).smallest_subnormal
    np.testing.assert_allclose(v, np.logaddexp(0, -u).astype(np.float64), rtol=tol, atol=tiny)
    np.testing.assert_allclose(g, (-s * np.exp(-np.logaddexp(0, u))).astype(np.float64), rtol=tol,
                               atol=tiny)


_SCANS = {  # scan, NumPy's verdict (True: outside), values inside, values outside
    "sign": (_core.first_bad_sign_label, lambda y: ~np.isin(y, [-1.0, 0.0, 1.0]),
             [-1.0, 0.0, 1.0, -0.0], [0.5, 2.0, np.nan, np.inf, -3.0]),
    "unit interval": (lambda y: _core.first_outside_unit_interval(y, "y_pred"),
                      lambda y: (y < 0) | (y > 1), [0.0, 0.3, 1.0, np.nan], [-1e-30, 1.5, -np.inf]),
    ">= 0": (lambda y: _core.first_bad_real_label(y, 0.0, True),
             lambda y: ~(np.isfinite(y) & (y >= 0)), [0.0, -0.0, 2.5, 1e30], [-1e-30, np.nan, np.inf]),
    "> 0": (lambda y: _core.first_bad_real_label(y, 0.0, False),
            lambda y: ~(np.isfinite(y) & (y > 0)), [1e-30, 3.0], [0.0, -0.0, -2.0, np.nan]),
    "finite": (lambda y: _core.first_bad_real_label(y, -np.inf, True),
               lambda y: ~np.isfinite(y), [-1e30, 0.0, 7.0], [np.nan, np.inf, -np.inf]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("domain", list(_SCANS))
def test_label_scans_name_the_first_bad_value_on_every_isa(isa, domain, dtype):
    """The checks' scans (compiled per SIMD target) find the first value outside each domain,
    contiguous and strided, across block and thread boundaries, as NumPy does."""
    scan, outside, good, bad = _SCANS[domain]
    rng = np.random.default_rng(5)
    n = 40_000
    y = rng.choice(good, n).astype(dtype)
    assert scan(y) == -1 and scan(y[::3]) == -1
    for where in (0, 1023, 1024, 20_001, n - 1):
        for v in bad:
            yb = y.copy()
            yb[where] = v
            yb[-1] = bad[0] if where != n - 1 else v  # a later one is not the one named
            for arr in (yb, np.repeat(yb, 2)[::2]):
                with fl.num_threads(2):
                    assert scan(arr) == int(np.flatnonzero(outside(arr))[0]) == where


def test_label_scan_bound_is_exact_for_float32_labels():
    """A bound float32 cannot hold is compared in float64: 0.1f lies above 0.1."""
    y = np.array([np.float32(0.1)], np.float32)
    assert _core.first_bad_real_label(y, 0.1, False) == -1
    assert _core.first_bad_real_label(y, 0.2, True) == 0


def test_buffer_errors_leave_buffers_untouched():
    y, p = _y_p()
    g, h = np.full_like(p, 7.0), np.full_like(p, 7.0)
    with pytest.raises(ValueError, match="share memory"):
        fl.MSE().grad_hess(y, p, grad_out=g, hess_out=g)
    frozen = np.full_like(p, 7.0)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="hess_out is read-only"):
        fl.MSE().value_grad_hess(y, p, grad_out=h, hess_out=frozen)
    assert (g == 7.0).all() and (h == 7.0).all()
    with pytest.raises(TypeError, match="grad_out must have dtype float64"):
        fl.MSE().value_and_grad(y, p, grad_out=g.astype(np.float32))


def test_request_codes_and_spec_errors():
    y, p = _y_p()
    spec = fl.Huber()._fast
    v = _core.elementwise_fast(spec, (y, p), None, None, None, None, _VALUE)
    vg = _core.elementwise_fast(spec, (y, p), None, None, None, None, _VALUE_GRAD)
    gh = _core.elementwise_fast(spec, (y, p), None, None, None, None, _GRAD_HESS)
    vgh = _core.elementwise_fast(spec, (y, p), None, None, None, None, _VALUE_GRAD_HESS)
    assert type(v) is float and len(vg) == 2 and len(gh) == 2 and len(vgh) == 3
    assert vg[0] == v == vgh[0]
    with pytest.raises(ValueError, match="unknown loss id or request"):
        _core.elementwise_fast(spec, (y, p), None, None, None, None, 7)
    with pytest.raises(TypeError, match="spec must be"):
        _core.elementwise_fast((), (y, p), None, None, None, None, 0)
    with pytest.raises(TypeError, match="takes 7 arguments"):
        _core.elementwise_fast(spec, (y, p))


def test_losses_with_a_fast_path_still_pickle_and_compare():
    loss = fl.BinaryCrossEntropy(from_logits=True, pos_weight=2.0)
    copy = pickle.loads(pickle.dumps(loss))
    assert copy == loss and copy._fast == loss._fast
    y, p = _y_p()
    assert copy(y, p) == loss(y, p)
    # The spec follows the parameters: a replaced loss computes with its own.
    assert loss.replace(pos_weight=1.0)(y, p) == fl.BinaryCrossEntropy(from_logits=True)(y, p)
    assert fl.MSE(reduction="sum")(y, p) == fl.MSE()(y, p, reduction="sum")
    assert fl.MSE(reduction="none")(y, p).shape == p.shape


def test_large_calls_take_the_fast_path_too():
    # Above the size at which the GIL is released and threads may join in.
    rng = np.random.default_rng(5)
    y, p = rng.standard_normal(100_001), rng.standard_normal(100_001)
    loss = fl.Huber()
    v, g, h = general(loss, y, p, None)
    assert_same(loss.value_grad_hess(y, p), (v, g, h), "large")
