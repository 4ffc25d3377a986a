"""The optional CUDA target (built with FASTLOSS_CUDA=ON) against the CPU kernels: the elementwise
and the row-wise losses.

Skipped where fastloss._cuda is not built or no GPU is visible (CI has none); run on a GPU machine
after `FASTLOSS_CUDA=ON pip install .`.
"""

import math

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core

_cuda = pytest.importorskip("fastloss._cuda", reason="fastloss built without FASTLOSS_CUDA=ON")
if _cuda.device_count() == 0:
    pytest.skip("no CUDA device visible", allow_module_level=True)

LOSSES = [fl.MSE(), fl.MAE(), fl.Huber(delta=0.7), fl.SmoothL1(beta=0.5), fl.Quantile(quantile=0.3),
          fl.LogCosh(), fl.SmoothL1(beta=0.0)]
RTOL = {np.float32: 2e-6, np.float64: 1e-13}


def data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n).astype(dtype)
    p = (y + rng.standard_normal(n) * 2).astype(dtype)
    w = rng.random(n).astype(dtype)
    return y, p, w


def run_gpu_host(loss, y, p, w=None, reduction="mean", grad=True, hess=False):
    """The CUDA kernels on host arrays (copied to the device and back): (value, values, grad, hess)."""
    total, norm, values, g, h = _cuda.elementwise(loss._id, loss._kernel_params, y, p, w, loss._aux,
                                                  reduction, grad, hess, None, None, None)
    if reduction == "mean":
        total = total / norm if norm > 0 else math.nan
    return total, values, g, h


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_host_arrays_match_cpu(loss, dtype, reduction, weighted):
    y, p, w = data(300_001, dtype)
    w = w if weighted else None
    value, per_elem, grad, hess = run_gpu_host(loss, y, p, w, reduction, True, True)
    ref_value, ref_grad, ref_hess = loss.value_grad_hess(y, p, w, reduction=reduction)
    rtol = RTOL[dtype]
    if reduction == "none":
        np.testing.assert_allclose(per_elem, ref_value, rtol=rtol, atol=0)
    else:
        assert value == pytest.approx(ref_value, rel=1e-10 if dtype == np.float64 else 1e-6)
    # Same body, same operation order, explicit FMAs: the GPU agrees with the CPU's FMA targets
    # to rounding of the few non-fused operations.
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(hess, ref_hess, rtol=rtol, atol=np.finfo(dtype).tiny)


def test_deterministic_repeat():
    y, p, w = data(2_000_003, np.float32, seed=3)
    a = run_gpu_host(fl.LogCosh(), y, p, w)
    b = run_gpu_host(fl.LogCosh(), y, p, w)
    assert a[0] == b[0]
    assert np.array_equal(a[2], b[2])


def test_quantile_vector_and_row_weights():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(5000)
    p = rng.standard_normal((5000, 3))
    w = rng.random(5000)
    loss = fl.Quantile(quantile=[0.1, 0.5, 0.9])
    value, _, grad, _ = run_gpu_host(loss, y, p, w)
    ref_value, ref_grad = loss.value_and_grad(y, p, w)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-13)


def test_errors_before_work():
    y, p, _ = data(10, np.float64)
    with pytest.raises(ValueError, match="same shape"):
        run_gpu_host(fl.MSE(), y[:5], p)
    with pytest.raises(ValueError, match="non-negative"):
        run_gpu_host(fl.MSE(), y, p, -np.ones(10))


def test_device_arrays_in_place():
    cupy = pytest.importorskip("cupy")
    y, p, w = data(1_000_000, np.float32, seed=5)
    dy, dp, dw = cupy.asarray(y), cupy.asarray(p), cupy.asarray(w)
    loss = fl.Huber(delta=0.5)
    g = cupy.empty_like(dp)
    value, grad = loss.value_and_grad(dy, dp, dw, grad_out=g)
    assert grad is g
    ref_value, ref_grad = loss.value_and_grad(y, p, w)
    assert value == pytest.approx(ref_value, rel=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(g), ref_grad, rtol=2e-6, atol=1e-30)
    value2, grad2 = loss.value_and_grad(dy, dp, dw)  # allocated with CuPy
    assert value2 == value and bool((grad2 == g).all())
    with pytest.raises(TypeError, match="dtype of y_pred"):
        loss(dy.astype(cupy.float64), dp)
    with pytest.raises(TypeError, match="device array"):
        loss(y, dp)


def test_torch_cuda_tensors():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    y, p, _ = data(100_000, np.float64, seed=7)
    ty, tp = torch.from_numpy(y).cuda(), torch.from_numpy(p).cuda()
    tp.requires_grad_(True)
    ref = torch.nn.functional.smooth_l1_loss(tp, ty, beta=0.5)
    ref.backward()
    g = torch.empty_like(tp, requires_grad=False)
    value, _ = fl.SmoothL1(beta=0.5).value_and_grad(ty, tp.detach(), grad_out=g)
    assert value == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(g, tp.grad, rtol=1e-12, atol=0)


# Row-wise kernels: the same (loss, params, y_true, y_pred, sample_weight, extra, class_weight,
# ignore_index) call on both targets; the per-row values and derivatives come from the same bodies.
def row_data(dtype, rows=3001, K=37, seed=11):
    rng = np.random.default_rng(seed)
    z = (3 * rng.standard_normal((rows, K))).astype(dtype)
    z[5, 3] = np.inf  # the softmax limit (scratch rows)
    z[7, :4] = -np.inf
    labels = rng.integers(0, K, rows)
    labels[::17] = -1  # ignored where the loss takes ignore_index
    probs = rng.dirichlet(np.ones(K), rows).astype(dtype)
    teacher = (z + rng.standard_normal((rows, K))).astype(dtype)
    teacher[5, 3] = 1.0
    w = rng.random(rows)
    cw = rng.random(K) + 0.5
    return z, labels, probs, teacher, w, cw


def row_cases(dtype):
    z, labels, probs, teacher, w, cw = row_data(dtype)
    ok = np.where(labels < 0, 0, labels)
    ids = _core.row_kernels
    return {
        "sparse_ce_logits": (ids["sparse_categorical_cross_entropy"], [1.0, 1e-7, 0.1], labels, z, w, None, cw, -1),
        "sparse_ce_probs": (ids["sparse_categorical_cross_entropy"], [0.0, 1e-7, 0.0], ok, probs, w, None, None, None),
        "categorical_ce": (ids["categorical_cross_entropy"], [1.0, 1e-7, 0.05], probs, z, w, None, cw, None),
        "sparse_focal": (ids["sparse_categorical_focal"], [2.0], labels, z, w, None, cw, -1),
        "categorical_focal": (ids["categorical_focal"], [1.5], probs, z, None, None, None, None),
        "hinge_ww": (ids["multi_class_hinge"], [0.0, 1.0, 1.0], ok, z, w, None, cw, None),
        "hinge_cs_sq": (ids["multi_class_hinge"], [1.0, 2.0, 0.5], ok, z, None, None, None, None),
        "distillation": (ids["distillation"], [0.5, 2.0, 4.0], ok, z, w, teacher, None, None),
        "kl": (ids["distillation"], [0.0, 1.5, 1.0], None, z, w, teacher, None, None),
    }


@pytest.mark.parametrize("case", sorted(row_cases(np.float64)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_rowwise_host_arrays_match_cpu(case, dtype, reduction):
    args = row_cases(dtype)[case]
    cpu = _core.rowwise(*args, reduction, True, True, None, None, None)
    gpu = _cuda.rowwise(*args, reduction, True, True, None, None, None)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert gpu[1] == cpu[1]  # the same normalizer, from the same host code
    assert gpu[0] == pytest.approx(cpu[0], rel=rtol)
    for got, ref in zip(gpu[2:], cpu[2:]):
        if ref is None:
            assert got is None
        else:
            assert got.dtype == ref.dtype and got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-6 if dtype == np.float32 else 1e-14)


def test_rowwise_errors_before_work():
    z, labels, *_ = row_data(np.float64, rows=10, K=4)
    sparse = _core.row_kernels["sparse_categorical_cross_entropy"]
    with pytest.raises(ValueError, match="is not a class index"):
        _cuda.rowwise(sparse, [1.0, 1e-7, 0.0], labels, z, None, None, None, None, "mean", True, False,
                      None, None, None)
    with pytest.raises(ValueError, match="required when alpha"):
        _cuda.rowwise(_core.row_kernels["distillation"], [0.5, 2.0, 4.0], None, z, None, z, None, None,
                      "mean", True, False, None, None, None)
