"""The contract every registered loss obeys, whatever its kind (elementwise, row-wise, per image,
several inputs, whole distributions), driven by the registry: a loss added without its
documentation, its export, its synthetic data or a working call path fails here.

Each loss runs on its own synthetic data (the CLI's). Per loss and every compiled SIMD target:
results and gradients of the documented shapes and dtypes; strided inputs equal their contiguous
copies; 1 and 2 threads agree to the bit; errors leave caller buffers untouched; finite
differences confirm every gradient, on a case where each differentiable input has a non-zero
gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss.analysis import check_grad
from fastloss.cli import synthetic

NAMES = [info.name for info in fl.losses()]
DTYPES = [np.float32, np.float64]
SENTINEL = -12345.0
# Enough items that the parallel paths run (several blocks per thread), little enough to stay fast.
BIG = {"image": 6, "segmentation": 12, "distribution": 700, "similarity": 600, "perceptual": 40}


def _case(name, n, dtype=np.float64, seed=0):
    """(loss, positional arguments, keyword inputs) on the loss's synthetic data."""
    loss = fl.get_loss(name)
    y, p, inputs = synthetic(loss, n, seed=seed, dtype=np.dtype(dtype).name)
    return loss, (y, p), inputs


def _small(name):
    return 4 if fl.get_loss(name).family in ("image", "segmentation", "perceptual") else 24


def _big(name):
    return BIG.get(fl.get_loss(name).family, 40_000)


def _arrays(loss, args, inputs):
    """Every input by name."""
    return dict(zip(loss.arguments, args), **inputs)


def _as_tuple(grad):
    return grad if isinstance(grad, tuple) else (grad,)


def _flat(x):
    """The arrays of a result: a value, a gradient, a tuple of gradients, a list of layers."""
    if x is None:
        return []
    if isinstance(x, (tuple, list)):
        return [a for item in x for a in _flat(item)]
    return [np.asarray(x)]


def _assert_bitwise(a, b, what):
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb), what
    for x, y in zip(fa, fb):
        assert x.shape == y.shape and x.dtype == y.dtype, what
        np.testing.assert_array_equal(x, y, err_msg=what)


def _all_results(loss, args, inputs):
    value, grad = loss.value_and_grad(*args, **inputs)
    results = [value, grad, loss(*args, reduction="none", **inputs)]
    if loss.hessian != "none":
        results.append(loss.grad_hess(*args, **inputs))
    return results


@pytest.mark.parametrize("name", NAMES)
def test_exported_documented_and_listed(name):
    info = next(i for i in fl.losses() if i.name == name)
    for public in (info.cls.__name__, info.name):
        assert public in fl.__all__, f"{public} is not in fastloss.__all__"
    assert getattr(fl, info.cls.__name__) is info.cls
    assert getattr(fl, info.name) is info.function
    doc = info.cls.__doc__ or ""
    assert "Examples" in doc, f"{info.cls.__name__}'s docstring has no Examples"
    if info.params:
        assert "Parameters" in doc, f"{info.cls.__name__}'s docstring has no Parameters section"
    assert set(info.cls.grads) <= set(info.cls.arguments), "grads names inputs the loss lacks"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(isa, name, dtype):
    loss, args, inputs = _case(name, _small(name), dtype)
    value = loss(*args, **inputs)
    assert isinstance(value, float)
    assert isinstance(loss(*args, reduction="sum", **inputs), float)
    v2, grad = loss.value_and_grad(*args, **inputs)
    assert v2 == value
    arrays = _arrays(loss, args, inputs)
    grads = _as_tuple(grad)
    assert len(grads) == len(loss.grads)
    for g, x_name in zip(grads, loss.grads):
        for g_arr, x in zip(_flat(g), _flat(arrays[x_name])):
            assert g_arr.shape == x.shape, (x_name, g_arr.shape, x.shape)
            assert g_arr.dtype == x.dtype, (x_name, g_arr.dtype, x.dtype)
    if loss.hessian == "none":
        with pytest.raises(NotImplementedError, match="Hessian"):
            loss.grad_hess(*args, **inputs)
        with pytest.raises(NotImplementedError, match="Hessian"):
            loss.value_grad_hess(*args, **inputs)
    else:
        g3, h3 = loss.grad_hess(*args, **inputs)
        _assert_bitwise(g3, grad, "grad_hess's gradient")
        for h, g_arr in zip(_flat(h3), _flat(grad)):
            assert h.shape == g_arr.shape and h.dtype == g_arr.dtype


def _strided(x):
    """The same values through a view that is not contiguous (every other row of a copy)."""
    if isinstance(x, list):
        return [_strided(a) for a in x]
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        return x
    wide = np.repeat(x, 2, axis=0)
    view = wide[::2]
    assert not view.flags.c_contiguous or x.shape[0] <= 1
    return view


@pytest.mark.parametrize("name", NAMES)
def test_strided_inputs_equal_contiguous(isa, name):
    loss, args, inputs = _case(name, _small(name))
    strided_args = tuple(_strided(a) for a in args)
    strided_inputs = {k: _strided(v) for k, v in inputs.items()}
    for a, b in zip(_all_results(loss, args, inputs),
                    _all_results(loss, strided_args, strided_inputs)):
        _assert_bitwise(a, b, f"{name}: strided input changed the result")


@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_bits(isa, name):
    loss, args, inputs = _case(name, _big(name), np.float32)
    with fl.num_threads(1):
        one = _all_results(loss, args, inputs)
    with fl.num_threads(2):
        two = _all_results(loss, args, inputs)
    for a, b in zip(one, two):
        _assert_bitwise(a, b, f"{name}: 1 and 2 threads differ")


def _sentinel_buffers(grad):
    """Caller buffers of the gradient's layout, filled with a sentinel."""
    if isinstance(grad, (tuple, list)):
        return type(grad)(_sentinel_buffers(g) for g in grad)
    return np.full(grad.shape, SENTINEL, dtype=grad.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_buffers_are_filled_and_errors_leave_them_untouched(name):
    loss, args, inputs = _case(name, _small(name))
    value, grad = loss.value_and_grad(*args, **inputs)
    buffers = _sentinel_buffers(grad)
    before = [b.copy() for b in _flat(buffers)]
    bad_weight = np.ones(7919)  # no loss has that many items here
    with pytest.raises(ValueError, match="sample_weight"):
        loss.value_and_grad(*args, sample_weight=bad_weight, grad_out=buffers, **inputs)
    with pytest.raises((ValueError, TypeError), match="out"):
        loss.value_and_grad(*args, reduction="none", out=np.empty((7, 3, 2)), grad_out=buffers,
                            **inputs)
    for b, saved in zip(_flat(buffers), before):
        np.testing.assert_array_equal(b, saved, err_msg=f"{name}: an error wrote a caller buffer")
    # A valid call fills them and returns them.
    v2, g2 = loss.value_and_grad(*args, grad_out=buffers, **inputs)
    assert v2 == value
    for returned, given in zip(_flat(g2), _flat(buffers)):
        assert returned is given or np.shares_memory(returned, given)
    _assert_bitwise(g2, grad, f"{name}: grad_out holds another gradient")
    per_item = loss(*args, reduction="none", **inputs)
    if isinstance(per_item, np.ndarray):
        out = np.full(per_item.shape, SENTINEL, per_item.dtype)
        assert loss(*args, reduction="none", out=out, **inputs) is out
        np.testing.assert_array_equal(out, per_item)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    loss, args, inputs = _case(name, 6 if fl.get_loss(name).family != "image" else 1, seed=3)
    _, grad = loss.value_and_grad(*args, **inputs)
    arrays = _arrays(loss, args, inputs)
    for g, x_name in zip(_as_tuple(grad), loss.grads):
        for g_arr in _flat(g):
            assert np.any(g_arr != 0), f"{name}: the gradient w.r.t. {x_name} is zero: a " \
                                       "degenerate case checks nothing"
    # A loss whose default gradient is a booster's (LambdaRank: LightGBM's normalized lambdas, not
    # the value's derivative) declares the parameters of its exact form.
    loss = loss.replace(**getattr(loss, "exact_gradient_params", {}))
    report = check_grad(loss, *args, hessian=loss.hessian == "exact", max_elements=60, **inputs)
    assert report.passed, f"{name}:\n{report}"
    assert arrays  # every input was reachable by name


def _half(x):
    if isinstance(x, list):
        return [_half(a) for a in x]
    return x.astype(np.float16) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x


@pytest.mark.parametrize("name", NAMES)
def test_float16_is_computed_in_float32(name):
    loss, args, inputs = _case(name, _small(name))
    args, inputs = tuple(_half(a) for a in args), {k: _half(v) for k, v in inputs.items()}
    _, grad = loss.value_and_grad(*args, **inputs)
    for g in _flat(grad):
        assert g.dtype == np.float32, f"{name}: a float16 input gave a {g.dtype} gradient"
