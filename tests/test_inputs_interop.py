"""Inputs from other array libraries: DLPack-only objects, PyTorch tensors (requiring grad or not,
bfloat16, as grad_out), masked arrays, dask arrays, bfloat16 NumPy arrays and Fortran-ordered
inputs of elementwise losses."""

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core

LOSSES = [fl.MSE(), fl.Huber(delta=0.5), fl.SparseCategoricalCrossEntropy(from_logits=True),
          fl.SSIMLoss()]


class DLPackOnly:
    """An array exposing nothing but the DLPack protocol."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _data(loss, rng):
    return loss.synthetic(8, rng)[:2]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_dlpack_only_objects_are_read(loss, rng):
    y, p = _data(loss, rng)
    assert loss(DLPackOnly(y), DLPackOnly(p)) == loss(y, p)
    np.testing.assert_array_equal(loss.value_and_grad(y, DLPackOnly(p))[1],
                                  loss.value_and_grad(y, p)[1])


def test_dlpack_read_is_zero_copy(monkeypatch, rng):
    y, p = rng.normal(size=(2, 100))
    seen = []
    original = _core.elementwise
    monkeypatch.setattr(_core, "elementwise",
                        lambda *a: seen.append(np.shares_memory(a[3], p)) or original(*a))
    fl.MSE()(y, DLPackOnly(p))
    assert seen == [True]


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_masked_arrays_are_an_error(loss, rng):
    y, p = _data(loss, rng)
    masked = np.ma.masked_array(p, mask=np.zeros(p.shape, bool))
    with pytest.raises(TypeError, match="y_pred is a masked array"):
        loss(y, masked)
    with pytest.raises(TypeError, match="sample_weight is a masked array"):
        loss(y, p, sample_weight=np.ma.masked_array(np.ones(len(p)), mask=False))


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
def test_dask_arrays_are_never_loaded(loss, rng):
    da = pytest.importorskip("dask.array")
    y, p = _data(loss, rng)
    lazy = da.from_array(p, chunks=2)
    with pytest.raises(TypeError, match="fastloss.dask"):
        loss(y, lazy)
    with pytest.raises(TypeError, match="fastloss.dask"):
        loss.value_and_grad(da.from_array(y, chunks=2), p)


def test_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    y, p = rng.normal(size=(2, 50))
    ty, tp = torch.from_numpy(y), torch.from_numpy(p)
    assert fl.Huber()(ty, tp) == fl.Huber()(y, p)  # read in place through __array__
    with pytest.raises(TypeError, match=r"requires grad.*fastloss\.torch"):
        fl.Huber()(ty, tp.clone().requires_grad_(True))
    with pytest.raises(TypeError, match=r"requires grad.*fastloss\.torch"):
        fl.SparseCategoricalCrossEntropy()(np.zeros(2, int), torch.ones(2, 3, requires_grad=True))
    # bfloat16 is computed in float32
    b = tp.to(torch.bfloat16)
    expected = fl.Huber()(ty.to(torch.bfloat16).float().numpy(), b.float().numpy())
    assert fl.Huber()(ty.to(torch.bfloat16), b) == expected
    # a CPU tensor receives the gradient in place
    g = torch.empty(50, dtype=torch.float64)
    _, grad = fl.Huber().value_and_grad(y, p, grad_out=g)
    np.testing.assert_array_equal(g.numpy(), fl.Huber().value_and_grad(y, p)[1])
    assert np.shares_memory(grad, g.numpy())
    with pytest.raises(TypeError, match="grad_out must have dtype"):
        fl.Huber().value_and_grad(y, p, grad_out=torch.empty(50, dtype=torch.float32))
    # out= and hess_out= likewise
    out, h = torch.empty(50, dtype=torch.float64), torch.empty(50, dtype=torch.float64)
    fl.Huber().value_grad_hess(y, p, reduction="none", out=out, hess_out=h)
    ref = fl.Huber().value_grad_hess(y, p, reduction="none")
    np.testing.assert_array_equal(out.numpy(), ref[0])
    np.testing.assert_array_equal(h.numpy(), ref[2])
    # several differentiable inputs: one tensor per input
    a, pos, neg = rng.normal(size=(3, 6, 4))
    outs = tuple(torch.empty(6, 4, dtype=torch.float64) for _ in range(3))
    fl.TripletMargin().value_and_grad(a, pos, neg, grad_out=outs)
    for o, r in zip(outs, fl.TripletMargin().value_and_grad(a, pos, neg)[1]):
        np.testing.assert_array_equal(o.numpy(), r)


def test_bfloat16_numpy_arrays(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    y, p = rng.normal(size=(2, 64)).astype(ml_dtypes.bfloat16)
    for loss in (fl.MSE(), fl.LogCosh()):
        value, grad = loss.value_and_grad(y, p)
        ref_value, ref_grad = loss.value_and_grad(y.astype(np.float32), p.astype(np.float32))
        assert value == ref_value and grad.dtype == np.float32
        np.testing.assert_array_equal(grad, ref_grad)
    z = rng.normal(size=(5, 3)).astype(ml_dtypes.bfloat16)
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    assert ce(np.arange(5) % 3, z) == ce(np.arange(5) % 3, z.astype(np.float32))


@pytest.mark.parametrize("loss", [fl.MSE(), fl.Huber(delta=0.3), fl.LogCosh(),
                                  fl.Logistic()], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fortran_order_none_is_read_in_place(monkeypatch, rng, loss, dtype):
    y, p = (np.asfortranarray(a.reshape(40, 30).astype(dtype)) for a in loss.synthetic(1200, rng)[:2])
    w = np.asfortranarray(rng.random((40, 30)))
    seen = []
    original = _core.elementwise
    monkeypatch.setattr(_core, "elementwise",
                        lambda *a: seen.append((np.shares_memory(a[3], p), a[3].flags.c_contiguous))
                        or original(*a))
    values, grad, hess = loss.value_grad_hess(y, p, w, reduction="none")
    assert seen == [(True, True)]  # no copy of y_pred
    assert values.flags.f_contiguous and grad.flags.f_contiguous and hess.flags.f_contiguous
    yc, pc, wc = (np.ascontiguousarray(a) for a in (y, p, w))
    for got, expected in zip((values, grad, hess), loss.value_grad_hess(yc, pc, wc, reduction="none")):
        np.testing.assert_array_equal(got, expected)
    # caller buffers in Fortran order are written in place and returned
    out, g_out = np.empty_like(p), np.empty_like(p)
    v2, g2 = loss.value_and_grad(y, p, w, reduction="none", out=out, grad_out=g_out)
    assert v2 is out and g2 is g_out
    np.testing.assert_array_equal(out, values)
    np.testing.assert_array_equal(g_out, grad)
    # reduced values are bitwise those of the contiguous copy
    assert loss.value_and_grad(y, p, w)[0] == loss.value_and_grad(yc, pc, wc)[0]
