"""The Python contract every elementwise loss obeys (DESIGN.md, "The Python contract" and "Errors").

Registry and documentation, reductions and weights, out buffers, dtypes, strides, empty inputs,
determinism (threads and SIMD targets), thread API, concurrency, and every error path -- including
that an error leaves the caller's buffers untouched.
"""

from __future__ import annotations

import doctest
import math
import platform
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core
from fastloss._base import ElementwiseLoss

import reference as R
from conftest import (
    AVAILABLE_ISAS,
    assert_bitwise_equal,
    assert_elementwise_close,
    assert_value_close,
    reference_atol,
)

KERNELS = sorted(_core.elementwise_kernels)
# Contract tests run for every kernel that has a reference entry (a registry test fails otherwise).
NAMES = [n for n in KERNELS if n in R.REFERENCES]
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]
REDUCTIONS = ["mean", "sum", "none"]
SENTINEL = -12345.0
PARALLEL_N = 150_001  # above the OpenMP threshold, several superblocks, a ragged tail


def _kernel_names(cls):
    """The C++ kernels a class uses: ``cls.kernel``, or every value of its ``cls.kernels`` mapping
    (one class, several kernels: ``BinaryCrossEntropy.kernels = {False: "bce_probs", True:
    "bce_logits"}`` keyed by ``from_logits``)."""
    kernels = getattr(cls, "kernels", None)
    return list(kernels.values()) if kernels else [cls.kernel]


def _info_by_kernel():
    return {kernel: info for info in fl.losses()
            if isinstance(info.cls, type) and issubclass(info.cls, ElementwiseLoss)
            for kernel in _kernel_names(info.cls)}


def _params(name, params=None):
    """``params`` plus the constructor arguments that select kernel ``name``."""
    return {**R.REFERENCES[name].base_params, **dict(params or {})}


def loss_for(name, **kwargs):
    return getattr(fl, R.REFERENCES[name].cls_name)(**_params(name, kwargs))


def inputs(name, rng, shape, dtype=np.float64):
    return R.REFERENCES[name].make_inputs(rng, shape, dtype)


def all_outputs(loss, y, p, w=None, reduction="mean", **kw):
    """(value, grad, hess) from value_grad_hess."""
    return loss.value_grad_hess(y, p, sample_weight=w, reduction=reduction, **kw)


def assert_same_results(a, b, what=""):
    for i, (x, y) in enumerate(zip(a, b)):
        assert_bitwise_equal(x, y, f"{what} [output {i}]")


# --------------------------------------------------------------------------------------------------
# Registry, documentation, functional shortcuts, repr, get_loss
# --------------------------------------------------------------------------------------------------


def test_every_kernel_has_a_registered_class_and_vice_versa():
    # The union of the kernels the registered classes use is the C++ list, each used by one class.
    used = [k for info in fl.losses() if isinstance(info.cls, type)
            and issubclass(info.cls, ElementwiseLoss) for k in _kernel_names(info.cls)]
    assert len(used) == len(set(used)), f"a kernel is claimed by two classes: {sorted(used)}"
    by_kernel = _info_by_kernel()
    assert set(by_kernel) == set(_core.elementwise_kernels), (
        "kernels without a Python class: "
        f"{sorted(set(_core.elementwise_kernels) - set(by_kernel))}; "
        f"classes without a kernel: {sorted(set(by_kernel) - set(_core.elementwise_kernels))}")
    ids = sorted(_core.elementwise_kernels.values())
    assert ids == list(range(len(ids))), "kernel ids must be 0..n-1"


def test_every_kernel_has_a_reference_entry():
    missing = sorted(set(_core.elementwise_kernels) - set(R.REFERENCES))
    assert not missing, f"add these kernels to tests/reference.py REFERENCES: {missing}"
    for name, ref in R.REFERENCES.items():
        assert name in _kernel_names(getattr(fl, ref.cls_name))
        # The instance built with the entry's base_params runs this very kernel.
        loss = loss_for(name)
        assert getattr(loss, "_kernel_name", type(loss).kernel) == name
        assert loss._id == _core.elementwise_kernels[name]


@pytest.mark.parametrize("name", KERNELS)
def test_registry_entry(name):
    info = _info_by_kernel()[name]
    cls = info.cls
    assert info.function is getattr(fl, info.name), "functional shortcut exported under its name"
    assert info.function.__name__ == info.name
    assert getattr(fl, cls.__name__) is cls
    assert cls.__name__ in fl.__all__ and info.name in fl.__all__
    assert info.params == {p.name: p.default for p in cls.params}
    assert info.family and fl.losses(info.family) and info in fl.losses(info.family)
    assert info.hessian in ("exact", "a.e.")
    assert info.summary and info.summary == cls.__doc__.strip().splitlines()[0]
    assert isinstance(info.convex, bool) and isinstance(info.robust, bool)
    assert isinstance(info.smooth, bool)


@pytest.mark.parametrize("name", KERNELS)
def test_docstring_has_formula_and_examples(name):
    cls = _info_by_kernel()[name].cls
    doc = cls.__doc__ or ""
    assert re.search(r"^\s*Examples\s*\n\s*-+\s*$", doc, re.M), (
        f"{cls.__name__}: no Examples section")
    assert ">>>" in doc
    for p in cls.params:
        assert p.name in doc, f"{cls.__name__} docstring does not document parameter {p.name!r}"
    info = _info_by_kernel()[name]
    if info.hessian == "a.e.":
        # "Where a loss has no Hessian ... the exact a.e. value (0) is returned and the docstring
        # says so."
        assert re.search(r"a\.e\.|almost.everywhere", doc), (
            f"{cls.__name__}: hessian='a.e.' but the docstring does not say so")
    assert info.function.__doc__ and cls.__name__ in info.function.__doc__


def test_regression_module_doctests():
    import fastloss.regression as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted >= 6, result
    assert result.failed == 0, result


def test_losses_listing():
    infos = fl.losses()
    names = [i.name for i in infos]
    assert len(names) == len(set(names))
    reg = {i.name for i in fl.losses("regression")}
    assert {"mse", "mae", "huber", "smooth_l1", "quantile", "log_cosh"} <= reg
    assert fl.losses("no-such-family") == []
    assert all(isinstance(i, fl.LossInfo) for i in infos)


@pytest.mark.parametrize("name", NAMES)
def test_functional_equals_class(rng, name):
    info = _info_by_kernel()[name]
    y, p = inputs(name, rng, (301,))
    w = rng.uniform(0, 2, size=301)
    for params in R.REFERENCES[name].param_sets:
        params = _params(name, params)
        cls = info.cls(**params)
        for reduction in REDUCTIONS:
            a = info.function(y, p, sample_weight=w, reduction=reduction, **params)
            b = cls(y, p, sample_weight=w, reduction=reduction)
            assert_bitwise_equal(a, b, f"{name}{params} {reduction}")
        assert_bitwise_equal(info.function(y, p, **params), cls(y, p), "default reduction")


@pytest.mark.parametrize("name", NAMES)
def test_repr_round_trips(rng, name):
    y, p = inputs(name, rng, (50,))
    ns = {k: getattr(fl, k) for k in fl.__all__}
    for params in R.REFERENCES[name].param_sets:
        for red in ("mean", "sum"):
            loss = loss_for(name, reduction=red, **params)
            text = repr(loss)
            assert text.startswith(type(loss).__name__ + "(")
            clone = eval(text, ns)  # noqa: S307
            assert type(clone) is type(loss)
            assert clone.get_params() == loss.get_params() and clone.reduction == loss.reduction
            assert_bitwise_equal(clone(y, p), loss(y, p), text)


def test_repr_examples():
    assert repr(fl.Huber(delta=2.0)) == "Huber(delta=2.0)"
    assert repr(fl.MSE()) == "MSE()"
    assert repr(fl.SmoothL1(beta=0.5, reduction="sum")) == "SmoothL1(beta=0.5, reduction='sum')"
    q = eval(repr(fl.Quantile(quantile=[0.1, 0.9])), {"Quantile": fl.Quantile})  # noqa: S307
    assert q.quantile == (0.1, 0.9)


@pytest.mark.parametrize("name", NAMES)
def test_get_loss(name):
    info = _info_by_kernel()[name]
    for key in (info.name, info.cls.__name__):
        loss = fl.get_loss(key)
        assert type(loss) is info.cls
    for params in R.REFERENCES[name].param_sets:
        params = _params(name, params)
        assert fl.get_loss(info.name, **params).get_params() == info.cls(**params).get_params()


def test_get_loss_errors():
    assert fl.get_loss("huber", delta=2.0).delta == 2.0
    with pytest.raises(ValueError, match="unknown loss 'hubber'.*huber"):
        fl.get_loss("hubber")
    with pytest.raises(TypeError):
        fl.get_loss("mse", delta=1.0)
    with pytest.raises(ValueError):
        fl.get_loss("huber", delta=-1.0)


# --------------------------------------------------------------------------------------------------
# Return types, reductions, empty inputs, weights
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_return_types(rng, name, dtype):
    loss = loss_for(name)
    for shape in [(), (5,), (3, 4)]:
        y, p = inputs(name, rng, shape, dtype)
        for red in ("mean", "sum"):
            v = loss(y, p, reduction=red)
            assert type(v) is float
            v, g = loss.value_and_grad(y, p, reduction=red)
            assert type(v) is float and isinstance(g, np.ndarray)
            assert g.shape == shape and g.dtype == dtype
        v, g, h = loss.value_grad_hess(y, p, reduction="none")
        for a in (v, g, h):
            assert isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dtype
        g, h = loss.grad_hess(y, p, reduction="none")
        g2, h2 = loss.grad_hess(y, p, reduction="sum")
        assert_bitwise_equal(g, g2, "grad_hess none vs sum")
        assert_bitwise_equal(h, h2, "grad_hess none vs sum")


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_empty_inputs(name, shape):
    loss = loss_for(name)
    for dtype in DTYPES:
        y = np.zeros(shape, dtype)
        v, g, h = loss.value_grad_hess(y, y)
        assert math.isnan(v) and type(v) is float
        assert g.shape == shape and g.dtype == dtype and h.shape == shape
        v, g = loss.value_and_grad(y, y, reduction="sum")
        assert v == 0.0 and type(v) is float and g.shape == shape
        v = loss(y, y, reduction="none")
        assert v.shape == shape and v.dtype == dtype
        # Full-shape (empty) weights are accepted too.
        assert math.isnan(loss(y, y, sample_weight=np.zeros(shape)))
        assert loss(y, y, sample_weight=np.zeros(shape), reduction="sum") == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_weights_of_ones_equal_unweighted(rng, name):
    loss = loss_for(name)
    for dtype in DTYPES:
        y, p = inputs(name, rng, (2049,), dtype)
        for red in REDUCTIONS:
            assert_same_results(all_outputs(loss, y, p, np.ones(2049), red),
                                all_outputs(loss, y, p, None, red), f"{name} {red} ones")


@pytest.mark.parametrize("name", NAMES)
def test_leading_axis_weights_broadcast(rng, name):
    loss = loss_for(name)
    y, p = inputs(name, rng, (64, 3, 5))
    for wshape in [(64,), (64, 3)]:
        w = rng.uniform(0, 2, size=wshape)
        wfull = np.ascontiguousarray(R.broadcast_weight(w, p.shape))
        for red in ("sum", "none"):
            assert_same_results(all_outputs(loss, y, p, w, red),
                                all_outputs(loss, y, p, wfull, red), f"{wshape} {red}")
        v, g, h = all_outputs(loss, y, p, w, "mean")
        vf, gf, hf = all_outputs(loss, y, p, wfull, "mean")
        assert_value_close(v, vf, np.float64, rtol=1e-14)
        np.testing.assert_allclose(g, gf, rtol=8 * np.finfo(np.float64).eps, atol=0)
        # The normalizer is sum(w) * (product of trailing axes).
        norm = w.sum() * (p.size / w.size)
        assert_value_close(v, loss(y, p, sample_weight=w, reduction="sum") / norm, np.float64,
                           rtol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_zero_weights(rng, name):
    loss = loss_for(name)
    y, p = inputs(name, rng, (100,))
    w = np.zeros(100)
    with pytest.raises(ValueError, match="sample_weight"):
        loss(y, p, sample_weight=w)
    with pytest.raises(ValueError, match="sample_weight"):
        loss.value_and_grad(y, p, sample_weight=w)
    v, g, h = all_outputs(loss, y, p, w, "sum")
    assert v == 0.0 and not np.any(g) and not np.any(h)
    assert not np.any(loss(y, p, sample_weight=w, reduction="none"))
    # A zero weight removes an element exactly.
    w = np.ones(100)
    w[::3] = 0
    keep = w > 0
    assert_value_close(loss(y, p, sample_weight=w), loss(y[keep], p[keep]), np.float64, rtol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_scaling_weights_leaves_the_mean_unchanged(rng, name):
    loss = loss_for(name)
    y, p = inputs(name, rng, (500,))
    w = rng.uniform(0, 1, size=500)
    v, g = loss.value_and_grad(y, p, sample_weight=w)
    v8, g8 = loss.value_and_grad(y, p, sample_weight=8.0 * w)  # power of two: exact
    assert_bitwise_equal(v, v8, "mean value with weights * 8")
    np.testing.assert_allclose(g, g8, rtol=4e-16)


# --------------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_native_dtypes_and_promotion(rng, name):
    loss = loss_for(name)
    y, p = inputs(name, rng, (257,))
    for dtype in DTYPES:
        v, g, h = loss.value_grad_hess(y.astype(dtype), p.astype(dtype), reduction="none")
        assert v.dtype == g.dtype == h.dtype == dtype
    # float16 -> float32; ints / bools -> float64; big-endian -> native; lists -> float64.
    p16 = p.astype(np.float16)
    assert_same_results(all_outputs(loss, y.astype(np.float16), p16, reduction="none"),
                        all_outputs(loss, y.astype(np.float16).astype(np.float32),
                                    p16.astype(np.float32), reduction="none"), "float16")
    pi = np.round(p * (1 if loss_for(name)._probabilities else 3)).astype(np.int64)  # in [0, 1]
    for int_dtype in (np.int64, np.int32, np.int8, np.uint16):
        unsigned = np.dtype(int_dtype).kind == "u"
        pint = (np.abs(pi) if unsigned else pi).astype(int_dtype)
        out = all_outputs(loss, y, pint, reduction="none")
        assert out[1].dtype == np.float64
        assert_same_results(out, all_outputs(loss, y, pint.astype(np.float64), reduction="none"),
                            f"int y_pred {int_dtype}")
    pb = p > 0
    assert_same_results(all_outputs(loss, y, pb, reduction="none"),
                        all_outputs(loss, y, pb.astype(np.float64), reduction="none"), "bool")
    be = p.astype(">f8")
    out = all_outputs(loss, y.astype(">f4"), be, reduction="none")
    assert out[1].dtype == np.float64 and out[1].dtype.isnative
    assert_same_results(out, all_outputs(loss, y.astype(np.float32), p, reduction="none"),
                        "big-endian")
    assert_same_results(all_outputs(loss, y.tolist(), p.tolist(), reduction="none"),
                        all_outputs(loss, y, p, reduction="none"), "lists")


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes(rng, name):
    """float32 y_pred with float64 y_true / weights (the XGBoost case) and vice versa, int labels:
    the kernel computes in y_pred's dtype (targets are cast to it) while weights are applied in
    double, so the result equals that of pre-cast targets and float64 weights."""
    loss = loss_for(name)
    y, p = inputs(name, rng, (5000,))
    w = rng.uniform(0, 2, size=5000)
    for pdt in DTYPES:
        pp = p.astype(pdt)
        for ydt in DTYPES:
            for wdt in DTYPES:
                yy, ww = y.astype(ydt), w.astype(wdt)
                ref_y, ref_w = yy.astype(pdt), ww.astype(np.float64)
                for red in ("sum", "none"):
                    assert_same_results(all_outputs(loss, yy, pp, ww, red),
                                        all_outputs(loss, ref_y, pp, ref_w, red),
                                        f"y {ydt.__name__} p {pdt.__name__} w {wdt.__name__} {red}")
                v, g, h = all_outputs(loss, yy, pp, ww, "mean")
                ev, eg, _ = R.reference(name, yy, pp, _params(name), ww.astype(np.float64),
                                        "mean")
                assert_value_close(v, ev, pdt)
                assert g.dtype == pdt
                atol = reference_atol(name, yy, pp, _params(name), ww.astype(np.float64), "mean")
                assert_elementwise_close(g, eg, pdt, atol=None if atol is None else atol[1],
                                         what="mixed-dtype mean grad")
    # Integer labels (valid ones, for losses that validate their labels).
    int_labels = R.REFERENCES[name].int_labels
    labels = rng.integers(-3, 4, size=5000) if int_labels is None else int_labels(rng, 5000)
    for ldt in (np.int64, np.int32, np.uint8, np.bool_):
        lab = np.abs(labels).astype(ldt) if ldt in (np.uint8, np.bool_) else labels.astype(ldt)
        for pdt in DTYPES:
            pp = p.astype(pdt)
            assert_same_results(all_outputs(loss, lab, pp, reduction="none"),
                                all_outputs(loss, lab.astype(pdt), pp, reduction="none"),
                                f"int labels {ldt.__name__} with {pdt.__name__}")
    # Integer weights.
    iw = rng.integers(0, 4, size=5000)
    iw[0] = 1
    assert_same_results(all_outputs(loss, y, p, iw, "sum"),
                        all_outputs(loss, y, p, iw.astype(np.float64), "sum"), "int weights")


BAD_VALUES = {
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "string": lambda a: a.astype(str),
    "bytes": lambda a: a.astype("S8"),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("arg", ["y_true", "y_pred", "sample_weight"])
@pytest.mark.parametrize("name", NAMES)
def test_bad_dtypes_raise_type_error_naming_the_argument(rng, name, arg, bad):
    loss = loss_for(name)
    y, p = inputs(name, rng, (10,))
    kwargs = {"y_true": y, "y_pred": p, "sample_weight": np.ones(10)}
    kwargs[arg] = BAD_VALUES[bad](kwargs[arg])
    for call in (loss.__call__, loss.value_and_grad, loss.grad_hess, loss.value_grad_hess):
        with pytest.raises(TypeError, match=arg):
            call(kwargs["y_true"], kwargs["y_pred"], sample_weight=kwargs["sample_weight"])


# --------------------------------------------------------------------------------------------------
# Strided inputs
# --------------------------------------------------------------------------------------------------


def _strided_variants(base2d):
    """(label, view) pairs of non-contiguous views with the shape of their contiguous copy."""
    a1 = base2d.ravel()
    return [
        ("step2", a1[::2]),
        ("reversed", a1[::-1]),
        ("step-3", a1[::-3]),
        ("fortran", np.asfortranarray(base2d)),
        ("cols_step2", base2d[:, ::2]),
        ("transpose", base2d.T),
        ("sub_block", base2d[1:, 2:]),
        ("rows_reversed", base2d[::-1]),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_strided_inputs_equal_contiguous(isa, rng, name, dtype):
    loss = loss_for(name)
    Y, P = inputs(name, rng, (60, 41), dtype)
    W = rng.uniform(0, 2, size=(60, 41))
    for (label, yv), (_, pv), (_, wv) in zip(_strided_variants(Y), _strided_variants(P),
                                            _strided_variants(W)):
        assert not pv.flags.c_contiguous or pv.ndim == 1
        yc, pc, wc = (np.ascontiguousarray(a) for a in (yv, pv, wv))
        for red in REDUCTIONS:
            expected = all_outputs(loss, yc, pc, wc, red)
            # Every argument strided at once, then each one alone.
            for args in [(yv, pv, wv), (yv, pc, wc), (yc, pv, wc), (yc, pc, wv), (yv, pv, None)]:
                w_arg = args[2]
                exp = expected if w_arg is not None else all_outputs(loss, yc, pc, None, red)
                assert_same_results(all_outputs(loss, args[0], args[1], w_arg, red), exp,
                                    f"{label} {red}")
        # Strided leading-axis weights.
        if pv.ndim == 2:
            w1 = rng.uniform(0, 2, size=2 * pv.shape[0])[::2]
            assert_same_results(all_outputs(loss, yv, pv, w1, "mean"),
                                all_outputs(loss, yc, pc, np.ascontiguousarray(w1), "mean"),
                                f"{label} strided leading weights")


_BROADCAST_SCRIPT = textwrap.dedent("""
    import ast, numpy as np, fastloss as fl, sys
    failures = []
    def check(label, loss, y, p, w=None):
        yc, pc = np.ascontiguousarray(y), np.ascontiguousarray(p)
        wc = None if w is None else np.ascontiguousarray(w)
        for red in ("sum", "none"):
            b = loss.value_grad_hess(yc, pc, sample_weight=wc, reduction=red)
            try:
                a = loss.value_grad_hess(y, p, sample_weight=w, reduction=red)
            except Exception as e:
                failures.append(f"{label} {red}: raised {e!r}")
                return
            for x, z in zip(a, b):
                if not np.array_equal(np.asarray(x), np.asarray(z), equal_nan=True):
                    failures.append(f"{label} {red}: {x!r} != {z!r}")
                    return
    loss = getattr(fl, sys.argv[1])(**ast.literal_eval(sys.argv[2]))
    # Losses that validate {-1, +1} labels get the signs of the same numbers as y_true.
    # Losses with a support (counts, positive amounts) get positive labels from the same numbers.
    L = ((lambda a: np.where(np.asarray(a) > 0, 1.0, -1.0)) if sys.argv[3] == "pm1"
         else (lambda a: np.abs(a) + 0.5) if sys.argv[3] == "support" else (lambda a: a))
    # Predictions of the probability-space losses must lie in [0, 1]: squashed by a sigmoid.
    Q = (lambda a: 1 / (1 + np.exp(-a))) if getattr(loss, "from_logits", True) is False else (lambda a: a)
    n = 24
    p = Q(np.linspace(-3, 3, n))
    check("y_true = broadcast scalar", loss, np.broadcast_to(L(np.float64(0.5)), (n,)), p)
    check("y_pred = broadcast scalar", loss, L(p), np.broadcast_to(np.float64(0.5), (n,)))
    col = np.linspace(-1, 1, 6).reshape(6, 1)
    P = np.linspace(-2, 2, 24).reshape(6, 4)
    check("y_true = broadcast column", loss, np.broadcast_to(L(col), (6, 4)), Q(P))
    check("y_pred = broadcast column", loss, L(P), np.broadcast_to(Q(col), (6, 4)))
    check("y_true = broadcast row", loss, np.broadcast_to(L(np.arange(4.0)), (6, 4)), Q(P))
    check("weights = broadcast scalar", loss, L(P), Q(P + 1),
          np.broadcast_to(np.float64(2.0), (6, 4)))
    print("\\n".join(failures))
    sys.exit(1 if failures else 0)
""")


@pytest.mark.parametrize("name", NAMES)
def test_broadcast_zero_stride_inputs_equal_contiguous(name):
    """np.broadcast_to views (stride 0) are strided inputs too. Run in a subprocess: a kernel that
    reads a stride-0 view as contiguous reads past the end of the buffer."""
    ref = R.REFERENCES[name]
    proc = subprocess.run([sys.executable, "-c", _BROADCAST_SCRIPT, ref.cls_name,
                           repr(ref.base_params), ref.labels],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-2000:]}"


# --------------------------------------------------------------------------------------------------
# Output buffers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_out_buffers_are_used_and_returned(rng, name, dtype):
    loss = loss_for(name)
    y, p = inputs(name, rng, (7, 300), dtype)
    w = rng.uniform(0, 2, size=7)
    ev, eg, eh = loss.value_grad_hess(y, p, sample_weight=w, reduction="none")
    out, g_out, h_out = (np.full(p.shape, SENTINEL, dtype) for _ in range(3))
    v, g, h = loss.value_grad_hess(y, p, sample_weight=w, reduction="none", out=out,
                                   grad_out=g_out, hess_out=h_out)
    assert v is out and g is g_out and h is h_out
    assert_same_results((out, g_out, h_out), (ev, eg, eh), "out buffers")
    # Each entry point alone.
    out2 = np.empty_like(p)
    assert loss(y, p, sample_weight=w, reduction="none", out=out2) is out2
    assert_bitwise_equal(out2, ev)
    g2 = np.empty_like(p)
    vm, g_ret = loss.value_and_grad(y, p, sample_weight=w, grad_out=g2)
    assert g_ret is g2
    assert_bitwise_equal(g2, loss.value_and_grad(y, p, sample_weight=w)[1])
    g3, h3 = np.empty_like(p), np.empty_like(p)
    rg, rh = loss.grad_hess(y, p, sample_weight=w, reduction="sum", grad_out=g3, hess_out=h3)
    assert rg is g3 and rh is h3
    assert_same_results((g3, h3), (eg, eh), "grad_hess buffers")
    # A buffer can be reused across calls (the hot path allocates nothing).
    for _ in range(3):
        assert loss.value_and_grad(y, p, grad_out=g2)[1] is g2


def _strided_out_views(shape, dtype):
    """(label, parent, view): writeable strided views of ``shape`` inside sentinel parents."""
    n = int(np.prod(shape))
    res = []
    parent = np.full(2 * n, SENTINEL, dtype)
    res.append(("step2", parent, parent[::2].reshape(shape) if len(shape) == 1 else None))
    parent = np.full(n + 3, SENTINEL, dtype)
    res.append(("reversed", parent, parent[3:][::-1] if len(shape) == 1 else None))
    rows, cols = shape if len(shape) == 2 else (1, shape[0])
    parent = np.full((rows, 2 * cols), SENTINEL, dtype)
    res.append(("cols_step2", parent, parent[:, ::2].reshape(shape)))
    parent = np.full((rows + 2, cols + 3), SENTINEL, dtype)
    res.append(("sub_block", parent, parent[1:-1, 2:-1].reshape(shape)))
    if len(shape) == 2:
        parent = np.full(shape[::-1], SENTINEL, dtype)
        res.append(("transpose", parent, parent.T))
        parent = np.full((2 * rows, cols), SENTINEL, dtype, order="F")
        res.append(("fortran_rows_step2", parent, parent[::2]))
    return [(label, par, view) for label, par, view in res if view is not None]


@pytest.mark.parametrize("shape", [(501,), (9, 40)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_strided_out_buffers(isa, rng, name, dtype, shape):
    loss = loss_for(name)
    y, p = inputs(name, rng, shape, dtype)
    ev, eg, eh = loss.value_grad_hess(y, p, reduction="none")
    views = _strided_out_views(shape, dtype)
    assert sum(not v.flags.c_contiguous for _, _, v in views) >= 3
    for (label, par_o, out), (_, par_g, g_out), (_, par_h, h_out) in zip(
            views, _strided_out_views(shape, dtype), _strided_out_views(shape, dtype)):
        assert out.shape == shape
        v, g, h = loss.value_grad_hess(y, p, reduction="none", out=out, grad_out=g_out,
                                       hess_out=h_out)
        assert v is out and g is g_out and h is h_out, label
        assert_same_results((out, g_out, h_out), (ev, eg, eh), f"strided out {label}")
        for par, view in ((par_o, out), (par_g, g_out), (par_h, h_out)):
            # Reset the view: if anything outside it was written, the parent is not all sentinel.
            view[...] = SENTINEL
            assert np.all(par == SENTINEL), f"{label}: wrote outside the view"
    # Strided grad_out with value_and_grad and reduction mean.
    parent = np.full(2 * p.size, SENTINEL, dtype)
    gview = parent[::2].reshape(shape) if len(shape) == 1 else parent.reshape(shape[0], -1)[:, ::2]
    vm, gm = loss.value_and_grad(y, p, grad_out=gview)
    assert gm is gview
    assert_bitwise_equal(gview, loss.value_and_grad(y, p)[1], "strided grad_out, mean")
    assert np.all(parent.reshape(-1)[1::2] == SENTINEL)


@pytest.mark.parametrize("name", NAMES)
def test_out_buffer_validation(rng, name):
    loss = loss_for(name)
    y, p = inputs(name, rng, (10,))
    good = np.empty(10)
    for kw in ("out", "grad_out", "hess_out"):
        def call(buf, reduction="none"):
            return loss.value_grad_hess(y, p, reduction=reduction, **{kw: buf})
        with pytest.raises(TypeError, match=kw):
            call(np.empty(10, np.float32))
        with pytest.raises(TypeError, match=kw):
            call(np.empty(10, np.int64))
        with pytest.raises(TypeError, match=kw):
            call([0.0] * 10)
        with pytest.raises(ValueError, match=rf"{kw}.*\(10,\).*\(11,\)"):
            call(np.empty(11))
        with pytest.raises(ValueError, match=rf"{kw}.*\(10,\).*\(10, 1\)"):
            call(np.empty((10, 1)))
        with pytest.raises(ValueError, match=rf"{kw}.*\(10,\).*\(2, 5\)"):
            call(np.empty((2, 5)))
        ro = np.empty(10)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match=rf"{kw}.*read-only"):
            call(ro)
    # float32 y_pred needs float32 buffers.
    with pytest.raises(TypeError, match="grad_out"):
        loss.value_and_grad(y.astype(np.float32), p.astype(np.float32), grad_out=good)
    # out= only with reduction="none".
    for red in ("mean", "sum"):
        with pytest.raises(ValueError, match="out"):
            loss(y, p, reduction=red, out=good)
        with pytest.raises(ValueError, match="out"):
            loss.value_and_grad(y, p, reduction=red, out=good)


# --------------------------------------------------------------------------------------------------
# Errors, and no partial writes on error
# --------------------------------------------------------------------------------------------------


def _error_cases(name, rng, n, dtype):
    y, p = inputs(name, rng, (n,), dtype)
    w = rng.uniform(0.5, 1.5, size=n)
    ro = np.full(n, SENTINEL, dtype)
    ro.flags.writeable = False
    neg, nan_w, inf_w = w.copy(), w.copy(), w.copy()
    neg[-1] = -1e-3
    nan_w[n // 2] = np.nan
    inf_w[7] = np.inf
    other = np.float32 if dtype == np.float64 else np.float64
    return [
        # label, kwargs override, reduction, exception, message regex
        # (ones: a label every loss accepts, so that the shape is the only error)
        ("y_true longer", {"y_true": np.ones(n + 1, dtype)}, "none", ValueError,
         rf"\({n + 1},\).*\({n},\)|\({n},\).*\({n + 1},\)"),
        ("y_true column", {"y_true": y[:, None]}, "none", ValueError, rf"\({n}, 1\)"),
        ("y_true scalar", {"y_true": np.float64(1.0)}, "none", ValueError, r"y_true"),
        ("weights shape", {"sample_weight": np.ones(n - 1)}, "none", ValueError,
         rf"sample_weight.*\({n - 1},\)"),
        ("weights 2-D", {"sample_weight": np.ones((n, 2))}, "none", ValueError, r"sample_weight"),
        ("negative weight", {"sample_weight": neg}, "none", ValueError, r"sample_weight"),
        ("negative weight (sum)", {"sample_weight": neg}, "sum", ValueError, r"sample_weight"),
        ("negative weight (mean)", {"sample_weight": neg}, "mean", ValueError, r"sample_weight"),
        ("NaN weight", {"sample_weight": nan_w}, "none", ValueError, r"sample_weight"),
        ("NaN weight (mean)", {"sample_weight": nan_w}, "mean", ValueError, r"sample_weight"),
        ("inf weight", {"sample_weight": inf_w}, "sum", ValueError, r"sample_weight"),
        ("zero-sum weights", {"sample_weight": np.zeros(n)}, "mean", ValueError, r"sample_weight"),
        ("complex y_true", {"y_true": y.astype(complex)}, "none", TypeError, r"y_true"),
        ("object weights", {"sample_weight": w.astype(object)}, "none", TypeError,
         r"sample_weight"),
        ("string weights", {"sample_weight": w.astype(str)}, "sum", TypeError, r"sample_weight"),
        ("invalid reduction", {}, "average", ValueError, r"reduction"),
        ("out with mean", {"out": "OUT"}, "mean", ValueError, r"out"),
        ("out with sum", {"out": "OUT"}, "sum", ValueError, r"out"),
        ("hess_out dtype", {"hess_out": np.full(n, SENTINEL, other)}, "none", TypeError,
         r"hess_out"),
        ("hess_out shape", {"hess_out": np.full(n + 1, SENTINEL, dtype)}, "none", ValueError,
         r"hess_out"),
        ("hess_out read-only", {"hess_out": ro}, "none", ValueError, r"read-only"),
        ("grad_out dtype", {"grad_out": np.full(n, SENTINEL, other)}, "mean", TypeError,
         r"grad_out"),
        ("grad_out shape", {"grad_out": np.full((n, 1), SENTINEL, dtype)}, "sum", ValueError,
         r"grad_out"),
        ("out dtype", {"out": np.full(n, SENTINEL, other)}, "none", TypeError, r"out"),
        ("out read-only", {"out": ro}, "none", ValueError, r"read-only"),
    ], y, p, w


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [37, PARALLEL_N], ids=["small", "parallel"])
@pytest.mark.parametrize("name", NAMES)
def test_errors_leave_buffers_untouched(rng, name, n, dtype):
    loss = loss_for(name)
    cases, y, p, w = _error_cases(name, rng, n, dtype)
    for label, override, reduction, exc, match in cases:
        bufs = {k: np.full(n, SENTINEL, dtype) for k in ("out", "grad_out", "hess_out")}
        if reduction != "none" and override.get("out") != "OUT":
            bufs.pop("out")
        args = {"y_true": y, "y_pred": p, "sample_weight": w, **bufs}
        args.update({k: v for k, v in override.items() if not isinstance(v, str)})
        with pytest.raises(exc, match=match):
            loss.value_grad_hess(args.pop("y_true"), args.pop("y_pred"), reduction=reduction,
                                 **args)
        for k, buf in bufs.items():
            assert np.all(buf == SENTINEL), f"{label}: {k} written before the error"
        for k, v in override.items():
            if isinstance(v, np.ndarray) and k.endswith("out") and v.size:
                assert np.all(v == SENTINEL), f"{label}: the bad {k} was written"
        # value_and_grad fails the same way and writes nothing either.
        if not {"out", "hess_out"} & set(override):
            g = override.get("grad_out", np.full(n, SENTINEL, dtype))
            with pytest.raises(exc, match=match):
                loss.value_and_grad(override.get("y_true", y), p,
                                    sample_weight=override.get("sample_weight", w),
                                    reduction=reduction, grad_out=g)
            assert np.all(g == SENTINEL), f"{label}: grad_out written (value_and_grad)"


# --------------------------------------------------------------------------------------------------
# Determinism: threads and SIMD targets
# --------------------------------------------------------------------------------------------------


def _determinism_inputs(name, rng, dtype, n=PARALLEL_N):
    y, p = inputs(name, rng, (n,), dtype)
    w = rng.uniform(0, 2, size=n)
    return y, p, w


def _results(loss, y, p, w):
    res = []
    for ww in (None, w):
        for red in REDUCTIONS:
            res.extend(loss.value_grad_hess(y, p, sample_weight=ww, reduction=red))
        res.append(loss(y, p, sample_weight=ww))
    return res


# 20001 and 70000: fewer than 4 superblocks per thread, so blocked_sum shares the blocks, not the
# superblocks, between the threads (for the losses with a transcendental already at 20001); with
# 3 threads PARALLEL_N takes that path too.
@pytest.mark.parametrize("n", [PARALLEL_N, 20_001, 70_000])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_bits(isa, rng, name, dtype, n):
    loss = loss_for(name)
    y, p, w = _determinism_inputs(name, rng, dtype, n)
    results = {}
    for t in (1, 2, 3):
        with fl.num_threads(t):
            assert fl.get_num_threads() == t
            results[t] = _results(loss, y, p, w)
    for t in (2, 3):
        for i, (a, b) in enumerate(zip(results[1], results[t])):
            assert_bitwise_equal(a, b, f"{name} {isa}: 1 vs {t} threads, output {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_fma_targets_agree_bitwise_and_baseline_closely(rng, name, dtype):
    loss = loss_for(name)
    y, p, w = _determinism_inputs(name, rng, dtype)
    if dtype == np.float64:  # NaN in the labels, or in y_pred where a NaN label is a ValueError
        (p if R.REFERENCES[name].labels != "any" else y)[:20] = np.nan
    results = {}
    for isa in AVAILABLE_ISAS:
        fl.select_isa(isa)
        results[isa] = _results(loss, y, p, w)
        assert_same_results(_results(loss, y, p, w), results[isa], f"{isa} repeat")
    if "avx2" in results and "avx512" in results:
        for i, (a, b) in enumerate(zip(results["avx2"], results["avx512"])):
            assert_bitwise_equal(a, b, f"{name}: avx2 vs avx512, output {i}")
    fma = next((k for k in ("avx2", "avx512") if k in results), None)
    if "baseline" in results and fma:
        for i, (a, b) in enumerate(zip(results["baseline"], results[fma])):
            if isinstance(a, float):  # sums of per-element terms that differ in the last bits
                assert a == b or (math.isnan(a) and math.isnan(b)) or \
                    abs(a - b) <= 16 * np.finfo(dtype).eps * abs(b), (i, a, b)
            else:
                # Last bits only: a few ulp per element, plus a tiny absolute allowance for
                # Hessian-like outputs that are differences of nearly equal numbers.
                scale = np.nanmax(np.abs(b)) if b.size and np.any(np.isfinite(b)) else 0.0
                np.testing.assert_allclose(a, b, rtol=16 * np.finfo(dtype).eps,
                                           atol=16 * np.finfo(dtype).eps * scale, equal_nan=True)
    if len(AVAILABLE_ISAS) < 2:
        pytest.skip("only one ISA available on this CPU")


def test_isa_selection_api():
    assert _core.selected_isa() in AVAILABLE_ISAS
    assert "baseline" in _core.compiled_isas() and "baseline" in AVAILABLE_ISAS
    info = fl.build_info()
    assert info["isa_selected"] == _core.selected_isa()
    assert set(info["isa_available"]) == set(AVAILABLE_ISAS)
    assert info["num_threads"] == fl.get_num_threads()
    with pytest.raises(ValueError):
        fl.select_isa("sse9")
    for isa in AVAILABLE_ISAS:
        fl.select_isa(isa)
        assert _core.selected_isa() == isa and fl.build_info()["isa_selected"] == isa


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.machine() != "x86_64",
                    reason="reads /proc/cpuinfo of an x86-64 Linux")
def test_isa_detection_agrees_with_the_kernel():
    # fastloss reads CPUID/XGETBV itself (portable to MSVC-ABI builds); Linux's flags are the
    # independent answer, and they already account for the OS enabling the vector state.
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    avx2 = {"avx2", "fma", "bmi1", "bmi2"} <= flags
    avx512 = avx2 and {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags
    compiled = set(_core.compiled_isas())
    available = set(fl.build_info()["isa_available"])
    assert ("avx2" in available) == (avx2 and "avx2" in compiled)
    assert ("avx512" in available) == (avx512 and "avx512" in compiled)


# --------------------------------------------------------------------------------------------------
# Threads API and concurrency
# --------------------------------------------------------------------------------------------------


def test_threads_api():
    before = fl.get_num_threads()
    assert isinstance(before, int) and before >= 1
    fl.set_num_threads(1)
    assert fl.get_num_threads() == 1
    fl.set_num_threads(3)
    assert fl.get_num_threads() == 3
    with fl.num_threads(1):
        assert fl.get_num_threads() == 1
        with fl.num_threads(2):
            assert fl.get_num_threads() == 2
        assert fl.get_num_threads() == 1
    assert fl.get_num_threads() == 3
    with pytest.raises(RuntimeError):
        with fl.num_threads(2):
            raise RuntimeError("boom")
    assert fl.get_num_threads() == 3, "num_threads() must restore the count after an exception"
    for bad in (0, -1):
        with pytest.raises(ValueError):
            fl.set_num_threads(bad)
        with pytest.raises(ValueError):
            with fl.num_threads(bad):
                pass
    for bad in (1.5, 2.0, "2", None, True):
        with pytest.raises(TypeError):
            fl.set_num_threads(bad)
    assert fl.get_num_threads() == 3, "a rejected call must not change the count"
    fl.set_num_threads(before)


def test_default_thread_count_follows_omp_num_threads():
    code = "import fastloss as fl; print(fl.get_num_threads())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@pytest.mark.parametrize("name", NAMES)
def test_concurrent_calls_match_serial(rng, name):
    loss = loss_for(name)
    jobs = []
    for k in range(8):
        dtype = DTYPES[k % 2]
        y, p = inputs(name, rng, (120_000 + 17 * k,), dtype)
        w = rng.uniform(0, 2, size=y.shape) if k % 3 else None
        jobs.append((y, p, w, REDUCTIONS[k % 3]))

    def run(job):
        y, p, w, red = job
        return loss.value_grad_hess(y, p, sample_weight=w, reduction=red)

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(2):
            parallel = list(pool.map(run, jobs * 2))
            for i, res in enumerate(parallel):
                assert_same_results(res, serial[i % len(jobs)], f"{name} job {i % len(jobs)}")


def test_concurrent_calls_with_shared_output_buffers_per_thread(rng):
    """Each thread reuses its own grad_out buffer; results equal the serial ones."""
    loss = fl.Huber(delta=0.7)
    y, p = inputs("huber", rng, (200_000,))
    expected = loss.value_and_grad(y, p)

    def run(_):
        buf = np.empty_like(p)
        for _ in range(3):
            v, g = loss.value_and_grad(y, p, grad_out=buf)
        return v, g

    with ThreadPoolExecutor(max_workers=4) as pool:
        for v, g in pool.map(run, range(8)):
            assert_bitwise_equal(v, expected[0])
            assert_bitwise_equal(g, expected[1])
