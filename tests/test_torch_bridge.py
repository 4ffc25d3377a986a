"""fastloss.torch: values and gradients against PyTorch's own losses on the same tensors, the
reductions and the incoming gradient's scaling, several differentiable inputs, zero-copy CPU
reads, the nn.Module wrapper and the errors."""

import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastloss.torch")
F = torch.nn.functional

N, K = 257, 5


def _data(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(N, generator=g, dtype=dtype)
    p = (y + 0.8 * torch.randn(N, generator=g, dtype=dtype)).requires_grad_(True)
    return y, p


def _both(ours, theirs, inputs):
    """(value, grads) of a fastloss call and of a PyTorch call on fresh copies of ``inputs``."""
    out = []
    for fn in (ours, theirs):
        xs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
        v = fn(*xs)
        v.sum().backward() if v.ndim else v.backward()
        out.append((v.detach(), [x.grad for x in xs if x.requires_grad]))
    return out


def _check(ours, theirs, inputs, rtol=1e-12, atol=1e-14):
    (v1, g1), (v2, g2) = _both(ours, theirs, inputs)
    torch.testing.assert_close(v1, v2, rtol=rtol, atol=atol)
    assert len(g1) == len(g2) and g1
    for a, b in zip(g1, g2):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_against_torch(reduction):
    y, p = _data()
    _check(lambda y, p: ft.loss(fl.MSE(), y, p, reduction=reduction),
           lambda y, p: F.mse_loss(p, y, reduction=reduction), [y, p])
    _check(lambda y, p: ft.loss(fl.Huber(delta=0.7), y, p, reduction=reduction),
           lambda y, p: F.huber_loss(p, y, delta=0.7, reduction=reduction), [y, p])
    _check(lambda y, p: ft.loss(fl.SmoothL1(beta=0.5), y, p, reduction=reduction),
           lambda y, p: F.smooth_l1_loss(p, y, beta=0.5, reduction=reduction), [y, p])


def test_float32_matches_torch():
    y, p = _data(torch.float32)
    _check(lambda y, p: ft.loss(fl.Huber(delta=1.0), y, p),
           lambda y, p: F.huber_loss(p, y, delta=1.0), [y, p], rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_against_torch(reduction):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (N,), generator=g).double()
    z = (2 * torch.randn(N, generator=g, dtype=torch.float64)).requires_grad_(True)
    _check(lambda y, z: ft.loss(fl.BinaryCrossEntropy(from_logits=True), y, z, reduction=reduction),
           lambda y, z: F.binary_cross_entropy_with_logits(z, y, reduction=reduction), [y, z])
    prob = torch.sigmoid(z.detach()).requires_grad_(True)
    _check(lambda y, q: ft.loss(fl.BinaryCrossEntropy(), y, q, reduction=reduction),
           lambda y, q: F.binary_cross_entropy(q, y, reduction=reduction), [y, prob])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_against_torch(reduction):
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, K, (N,), generator=g)
    z = (2 * torch.randn(N, K, generator=g, dtype=torch.float64)).requires_grad_(True)
    cw = [1.0, 2.0, 0.5, 3.0, 1.5]
    _check(lambda y, z: ft.loss(fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=cw,
                                                                 label_smoothing=0.1), y, z,
                                reduction=reduction),
           lambda y, z: F.cross_entropy(z, y, weight=torch.tensor(cw, dtype=torch.float64),
                                        label_smoothing=0.1, reduction=reduction), [labels, z])


def test_several_differentiable_inputs():
    g = torch.Generator().manual_seed(3)
    a, p, n = (torch.randn(64, 8, generator=g, dtype=torch.float64).requires_grad_(True)
               for _ in range(3))
    _check(lambda a, p, n: ft.loss(fl.TripletMargin(margin=0.5), a, p, n),
           lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=0.5), [a, p, n])
    # only some inputs require a gradient: the others get none
    a2, p2 = a.detach().clone().requires_grad_(True), p.detach().clone()
    ft.loss(fl.TripletMargin(margin=0.5), a2, p2, n.detach()).backward()
    assert a2.grad is not None and p2.grad is None


def test_incoming_gradient_scales():
    y, p = _data()
    weights = torch.rand(N, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    v = ft.loss(fl.Huber(), y, p, reduction="none")
    (v * weights).sum().backward()
    expected = fl.Huber().value_and_grad(y.numpy(), p.detach().numpy(), reduction="none")[1]
    np.testing.assert_allclose(p.grad.numpy(), weights.numpy() * expected, rtol=1e-15)
    p.grad = None
    (3.0 * ft.loss(fl.Huber(), y, p, reduction="sum")).backward()
    np.testing.assert_allclose(p.grad.numpy(), 3 * expected, rtol=1e-15)
    # a row loss under "none": one incoming value per row, broadcast over the class axis
    labels = torch.randint(0, K, (N,))
    z = torch.randn(N, K, dtype=torch.float64, requires_grad=True)
    ce = fl.SparseCategoricalCrossEntropy(from_logits=True)
    (ft.loss(ce, labels, z, reduction="none") * weights).sum().backward()
    ref = ce.value_and_grad(labels.numpy(), z.detach().numpy(), sample_weight=weights.numpy(),
                            reduction="sum")[1]
    np.testing.assert_allclose(z.grad.numpy(), ref, rtol=1e-13)


def test_sample_weight_and_keyword_inputs():
    y, p = _data()
    w = torch.rand(N, dtype=torch.float64)
    v = ft.loss(fl.MSE(), y, p, sample_weight=w)
    v.backward()
    ref_v, ref_g = fl.MSE().value_and_grad(y.numpy(), p.detach().numpy(), w.numpy())
    assert v.item() == pytest.approx(ref_v, rel=1e-15)
    np.testing.assert_allclose(p.grad.numpy(), ref_g, rtol=1e-15)
    labels = torch.randint(0, K, (N,))
    z = torch.randn(N, K, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(N, K, dtype=torch.float64)
    d = fl.Distillation(alpha=0.3, temperature=2.0)
    v = ft.loss(d, labels, z, teacher_logits=teacher)
    v.backward()
    ref_v, ref_g = d.value_and_grad(labels.numpy(), z.detach().numpy(), teacher_logits=teacher.numpy())
    assert v.item() == pytest.approx(ref_v, rel=1e-14)
    np.testing.assert_allclose(z.grad.numpy(), ref_g, rtol=1e-14)


def test_zero_copy_on_cpu(monkeypatch):
    y, p = _data()
    seen = {}
    original = fl.MSE.value_and_grad

    def spy(self, y_true, y_pred, **kw):
        seen["shares"] = np.shares_memory(y_pred, p.detach().numpy())
        result = original(self, y_true, y_pred, **kw)
        seen["grad"] = result[1]
        return result

    monkeypatch.setattr(fl.MSE, "value_and_grad", spy)
    ft.loss(fl.MSE(), y, p).backward()
    assert seen["shares"]
    assert np.shares_memory(p.grad.numpy(), seen["grad"])  # the kernel's array, not a copy


def test_half_precision_computed_in_float32():
    y, p = _data(torch.float32)
    pb = p.detach().to(torch.bfloat16).requires_grad_(True)
    v = ft.loss(fl.MSE(), y.to(torch.bfloat16), pb)
    v.backward()
    assert v.dtype == torch.bfloat16 and pb.grad.dtype == torch.bfloat16
    ref = F.mse_loss(pb.detach().float(), y.to(torch.bfloat16).float())
    assert v.float().item() == pytest.approx(ref.item(), rel=1e-2)


def test_module_and_training_step():
    module = ft.FastLoss("huber", delta=0.5)
    assert module.fl_loss == fl.Huber(delta=0.5) and "Huber" in repr(module)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1).double()
    x = torch.randn(200, 3, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        value = module(y, net(x).squeeze(1))
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.1 * losses[0]
    # the same step with PyTorch's loss gives the same parameter gradients
    opt.zero_grad()
    module(y, net(x).squeeze(1)).backward()
    ours = [q.grad.clone() for q in net.parameters()]
    opt.zero_grad()
    F.huber_loss(net(x).squeeze(1), y, delta=0.5).backward()
    for a, q in zip(ours, net.parameters()):
        torch.testing.assert_close(a, q.grad, rtol=1e-12, atol=1e-15)


def test_errors():
    y, p = _data()
    with pytest.raises(TypeError, match="Loss or a registered loss name"):
        ft.loss(object(), y, p)
    with pytest.raises(ValueError, match="same shape"):
        ft.loss(fl.MSE(), y[:5], p)
    if not torch.cuda.is_available():
        return
    try:
        import fastloss._cuda  # noqa: F401
    except ImportError:
        with pytest.raises(TypeError, match="FASTLOSS_CUDA"):
            ft.loss(fl.MSE(), y.cuda(), p.detach().cuda())


def test_cuda_tensors():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("fastloss._cuda", reason="fastloss built without FASTLOSS_CUDA=ON")
    y, p = _data()
    y, p = y.cuda(), p.detach().cuda().requires_grad_(True)
    v = ft.loss(fl.Huber(delta=0.7), y, p)
    v.backward()
    p2 = p.detach().clone().requires_grad_(True)
    F.huber_loss(p2, y, delta=0.7).backward()
    torch.testing.assert_close(p.grad, p2.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [lambda: fl.CenterLoss(), lambda: fl.BatchTripletMargin(margin=0.5),
                                  lambda: fl.CosFace()], ids=["center", "batch_triplet", "cosface"])
def test_per_item_backward_of_losses_whose_items_share_inputs(make):
    # d/dθ sum(v_i l_i) with signed v, against central differences of fastloss's own values
    loss = make()
    rng = np.random.default_rng(5)
    y, p, extra = loss.synthetic(6, rng)
    inputs = [y, p] + [extra[k] for k in loss.arguments[2:]]
    tensors = [torch.as_tensor(np.asarray(a)) for a in inputs]
    diff = [loss.arguments.index(n) for n in loss.grads]
    for i in diff:
        tensors[i] = tensors[i].double().requires_grad_(True)
    v = torch.tensor(rng.normal(size=len(inputs[0])))
    (ft.loss(loss, *tensors, reduction="none") * v).sum().backward()
    for i in diff:
        x = np.array(inputs[i], dtype=np.float64)
        num = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            vals = []
            for h in (1e-6, -1e-6):
                xs = [np.asarray(a) for a in inputs]
                xh = x.copy()
                xh[j] += h
                xs[i] = xh
                vals.append(float(np.sum(v.numpy() * loss(*xs, reduction="none"))))
            num[j] = (vals[0] - vals[1]) / 2e-6
        np.testing.assert_allclose(tensors[i].grad.numpy(), num, rtol=1e-5, atol=1e-6)
