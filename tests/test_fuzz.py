"""Bad-input fuzzing of every registered loss: random shapes, dtypes, NaN/inf, empty, mismatched,
misaligned and non-contiguous inputs. A call either returns or raises ValueError/TypeError (never
another exception, never a crash), and an error leaves the caller's buffers untouched."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss as fl
from fastloss.cli import synthetic

LOSSES = sorted(info.name for info in fl.losses())
# Per loss: a fixed budget (derandomized), well under a minute in all; FASTLOSS_FUZZ_EXAMPLES
# raises it for a longer search.
EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "12"))
SENTINEL = 7.25

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

MUTATIONS = ["none", "nan", "inf", "empty", "drop_last", "extra_axis", "misaligned", "strided",
             "complex", "object", "strings", "int", "float16", "weight_shape", "weight_negative",
             "reduction", "scalar"]


def _misaligned(a: np.ndarray) -> np.ndarray:
    buf = bytearray(a.nbytes + 1)
    m = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    m[...] = a
    return m


def _strided(a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    return np.repeat(a, 2, axis=-1)[..., ::2]


def _mutate(a, how: str, rng: np.random.Generator):
    """`a` (an input array) changed as `how` says."""
    if not isinstance(a, np.ndarray):
        return a
    if how in ("nan", "inf"):
        if a.size == 0 or a.dtype.kind != "f":
            return a
        a = a.copy()
        a.flat[int(rng.integers(a.size))] = np.nan if how == "nan" else np.inf * rng.choice([-1, 1])
        return a
    if how == "empty":
        return a[:0]
    if how == "drop_last":
        return a[..., :-1] if a.ndim else a
    if how == "extra_axis":
        return a[None]
    if how == "misaligned":
        return _misaligned(a)
    if how == "strided":
        return _strided(a)
    if how == "complex":
        return a.astype(np.complex128)
    if how == "object":
        return a.astype(object)
    if how == "strings":
        return a.astype(str)
    if how == "int":
        return a.astype(np.int32)
    if how == "float16":
        return a.astype(np.float16)
    if how == "scalar":
        return np.float64(0.5)
    return a


@st.composite
def calls(draw, name):
    loss = fl.get_loss(name)
    n = draw(st.sampled_from([1, 2, 5]))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    seed = draw(st.integers(0, 2**16))
    y, p, inputs = synthetic(loss, n, seed=seed, dtype=dtype)
    how = draw(st.sampled_from(MUTATIONS))
    target = draw(st.sampled_from(["y_true", "y_pred"] + list(inputs)))
    return loss, y, p, inputs, how, target, seed


def _first_array(x):
    return x[0] if isinstance(x, (list, tuple)) else x


@pytest.mark.parametrize("name", LOSSES)
def test_bad_inputs_raise_value_or_type_error_and_leave_buffers_untouched(name):
    @FUZZ
    @given(calls(name))
    def run(call):
        loss, y, p, inputs, how, target, seed = call
        rng = np.random.default_rng(seed)
        kwargs = {}
        if target == "y_true":
            y = _mutate(y, how, rng)
        elif target == "y_pred":
            if isinstance(p, list):
                p = [_mutate(p[0], how, rng)] + p[1:]
            else:
                p = _mutate(p, how, rng)
        else:
            inputs = dict(inputs, **{target: _mutate(inputs[target], how, rng)})
        p0 = np.asarray(_first_array(p)) if not isinstance(_first_array(p), list) else None
        if how == "weight_shape":
            kwargs["sample_weight"] = np.ones(7)
        elif how == "weight_negative" and p0 is not None and p0.ndim:
            kwargs["sample_weight"] = -np.ones(p0.shape[0])
        elif how == "reduction":
            kwargs["reduction"] = "average"
        # A caller buffer of the gradient's expected shape and dtype (one differentiable input).
        grad_out = None
        if len(loss.grads) == 1 and p0 is not None and p0.dtype.kind == "f" and \
                p0.dtype.itemsize in (4, 8) and not isinstance(p, list):
            grad_out = np.full(p0.shape, SENTINEL, p0.dtype)
            kwargs["grad_out"] = grad_out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                loss.value_and_grad(y, p, **inputs, **kwargs)
            except (ValueError, TypeError):
                if grad_out is not None:
                    assert (grad_out == SENTINEL).all(), "an error wrote into grad_out"

    run()
