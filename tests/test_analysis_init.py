"""Initializers: statistics within sampling error of the PyTorch nn.init formulas; gains and fans
as torch computes them; orthogonality; seeding."""

import math

import numpy as np
import pytest

from fastloss.analysis import init

SHAPES = [(256, 384), (64, 32, 3, 3)]  # dense (out, in) and conv (out, in, kh, kw)


def _fans(shape):
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _expected_var(name, shape):
    """Variances from the formulas documented by torch.nn.init."""
    fan_in, fan_out = _fans(shape)
    return {
        "xavier_uniform": 2.0 / (fan_in + fan_out), "xavier_normal": 2.0 / (fan_in + fan_out),
        "kaiming_uniform": 2.0 / fan_in, "kaiming_normal": 2.0 / fan_in,
        "lecun_uniform": 1.0 / fan_in, "lecun_normal": 1.0 / fan_in,
        "small_random": 1e-4,
    }[name]


def _assert_variance(w, var, uniform):
    n = w.size
    # the sample variance's standard error: var sqrt(2/n) (normal) or var sqrt(0.8/n) (uniform)
    se = var * math.sqrt((0.8 if uniform else 2.0) / n)
    assert abs(float(np.mean(w))) < 5 * math.sqrt(var / n)
    assert abs(float(np.var(w)) - var) < 5 * se


@pytest.mark.parametrize("shape", SHAPES, ids=["dense", "conv"])
@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "kaiming_uniform",
                                  "kaiming_normal", "lecun_uniform", "lecun_normal", "small_random"])
def test_variance_matches_formula(name, shape):
    w = getattr(init, name)(shape, seed=1)
    assert w.shape == shape and w.dtype == np.float64
    _assert_variance(w, _expected_var(name, shape), "uniform" in name)
    if "uniform" in name:  # the support is exactly the documented bound
        bound = math.sqrt(3 * _expected_var(name, shape))
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound


@pytest.mark.parametrize("shape", SHAPES, ids=["dense", "conv"])
def test_against_torch_nn_init(shape):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cases = [
        ("xavier_uniform", dict(gain=1.3), lambda t: torch.nn.init.xavier_uniform_(t, gain=1.3)),
        ("xavier_normal", dict(gain=0.7), lambda t: torch.nn.init.xavier_normal_(t, gain=0.7)),
        ("kaiming_uniform", dict(mode="fan_out", nonlinearity="relu"),
         lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")),
        ("kaiming_normal", dict(a=0.2), lambda t: torch.nn.init.kaiming_normal_(t, a=0.2)),
        ("kaiming_uniform", {}, lambda t: torch.nn.init.kaiming_uniform_(t)),
    ]
    for name, kwargs, torch_init in cases:
        ours = getattr(init, name)(shape, seed=3, **kwargs)
        theirs = torch_init(torch.empty(shape, dtype=torch.float64)).numpy()
        # both within sampling error of each other's variance (two samples of the same law)
        var = float(np.var(theirs))
        se = var * math.sqrt(2.0 / ours.size)
        assert abs(float(np.var(ours)) - var) < 7 * se, (name, kwargs)
        if "uniform" in name:
            assert np.abs(ours).max() == pytest.approx(float(np.abs(theirs).max()), rel=0.01)


def test_gains_and_fans_match_torch():
    torch = pytest.importorskip("torch")
    for nl, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                      ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))
    for shape in [(5, 3), (8, 4, 3, 3), (2, 6, 5)]:
        t = torch.empty(shape)
        assert init.compute_fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(t)


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (8, 2, 3, 3)])
def test_orthogonal(shape):
    w = init.orthogonal(shape, gain=2.0, seed=0)
    flat = w.reshape(shape[0], -1)
    small = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    np.testing.assert_allclose(small, 4.0 * np.eye(small.shape[0]), atol=1e-12)


def test_seeded_and_dtype():
    a = init.kaiming_normal((30, 20), seed=5)
    assert np.array_equal(a, init.kaiming_normal((30, 20), seed=5))
    assert not np.array_equal(a, init.kaiming_normal((30, 20), seed=6))
    rng = np.random.default_rng(1)
    assert not np.array_equal(init.xavier_uniform((4, 4), seed=rng), init.xavier_uniform((4, 4), seed=rng))
    assert init.he_uniform((3, 3), dtype=np.float32).dtype == np.float32


def test_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform((5,))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal((3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")
