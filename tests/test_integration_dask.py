"""fastloss.dask on a real distributed cluster (2 worker processes started here): chunked values,
gradients and Hessians equal the in-memory ones (1e-12 relative in float64); xgboost.dask trains
with a fastloss objective.

The workers import fastloss: in CI it is pip-installed; from a source tree, PYTHONPATH reaches the
worker processes through the environment.
"""

import numpy as np
import pytest

import fastloss as fl

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
fd = pytest.importorskip("fastloss.dask")


@pytest.fixture(scope="module")
def client():
    import dask

    # No work stealing (it may move a task, and with it an input block, to the other worker) and
    # no active memory manager (every 2 s it drops all but one copy of a block, the original or
    # not, so block i of two arrays may end up on different workers): the tests below check where
    # blocks are computed and what crosses between workers.
    with dask.config.set({"distributed.scheduler.work-stealing": False,
                          "distributed.scheduler.active-memory-manager.start": False}), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


N, K = 5003, 4


def _case(name, rng):
    """(loss, y_true, y_pred) for each family."""
    z = rng.normal(0, 2, (N, K))
    labels = rng.integers(0, K, N)
    return {
        "mse": (fl.MSE(), rng.normal(size=N), rng.normal(size=N)),
        "huber": (fl.Huber(delta=0.5), rng.normal(size=N), rng.normal(size=N)),
        "quantiles": (fl.Quantile(quantile=[0.1, 0.5, 0.9]), rng.normal(size=N), rng.normal(size=(N, 3))),
        "logistic": (fl.Logistic(), rng.integers(0, 2, N), rng.normal(size=N)),
        "focal": (fl.BinaryFocal(gamma=2.0, alpha=0.25, from_logits=True), rng.integers(0, 2, N), rng.normal(size=N)),
        "cross_entropy": (fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=[1.0, 2.0, 0.5, 3.0],
                                                           ignore_index=1, label_smoothing=0.1), labels, z),
        "softmax_focal": (fl.SparseCategoricalFocal(gamma=1.5, alpha=[1.0, 2.0, 0.5, 3.0]), labels, z),
        "dense_cross_entropy": (fl.CategoricalCrossEntropy(from_logits=True), fl.softmax(rng.normal(size=(N, K))), z),
        "multi_hinge": (fl.MultiClassHinge(), labels, z),
    }[name]


CASES = ["mse", "huber", "quantiles", "logistic", "focal", "cross_entropy", "softmax_focal",
         "dense_cross_entropy", "multi_hinge"]


def _chunked(x, rows):
    return da.from_array(x, chunks=(rows,) + x.shape[1:])


def _close(got, expected, rtol):
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", CASES)
def test_chunked_equals_in_memory(client, rng, name, reduction):
    loss, y, p = _case(name, rng)
    w = rng.random(N) + 0.1
    for weights in (None, w):
        # uneven chunks, the predictions' and the labels' different
        yd, pd_ = _chunked(y, 700), _chunked(p, 1100)
        wd = None if weights is None else _chunked(weights, 900)
        value = fd.loss_value(loss, yd, pd_, wd, reduction=reduction).compute()
        lazy_value, grad = fd.value_and_grad(loss, yd, pd_, wd, reduction=reduction)
        g2, h2 = fd.grad_hess(loss, yd, pd_, wd, reduction=reduction)
        assert isinstance(grad, da.Array) and grad.shape == p.shape and grad.dtype == p.dtype
        value2, grad, g2, h2 = client.compute([lazy_value, grad, g2, h2], sync=True)
        ref_value, ref_grad, ref_hess = loss.value_grad_hess(y, p, weights, reduction=reduction)
        assert isinstance(value, float)
        assert value == pytest.approx(ref_value, rel=1e-12)
        assert value2 == pytest.approx(ref_value, rel=1e-12)
        _close(grad, ref_grad, 1e-12)
        _close(g2, ref_grad, 1e-12)
        _close(h2, ref_hess, 1e-12)


def test_float32_and_numpy_inputs(client, rng):
    y = rng.normal(size=N).astype(np.float32)
    p = rng.normal(size=N).astype(np.float32)
    value, grad = fd.value_and_grad(fl.LogCosh(), y, _chunked(p, 1000))  # y stays a NumPy array
    value, grad = client.compute([value, grad], sync=True)
    ref_value, ref_grad = fl.LogCosh().value_and_grad(y, p)
    assert grad.dtype == np.float32
    assert value == pytest.approx(ref_value, rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-12)


def test_class_axis_is_never_split(rng):
    loss, y, p = _case("cross_entropy", rng)
    _, grad = fd.value_and_grad(loss, y, da.from_array(p, chunks=(1000, 2)))
    assert grad.chunks[1] == (K,)
    np.testing.assert_allclose(grad.compute(scheduler="sync"), loss.value_and_grad(y, p)[1], rtol=1e-12, atol=1e-18)


def test_errors(rng):
    p = da.zeros(10, chunks=5)
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        fd.loss_value(fl.MSE(), p, p, reduction="none")
    with pytest.raises(ValueError, match="rows"):
        fd.loss_value(fl.MSE(), da.zeros(9, chunks=5), p)
    assert np.isnan(fd.loss_value(fl.MSE(), p, p, da.zeros(10, chunks=5)).compute(scheduler="sync"))


def test_xgboost_dask_training_with_a_fastloss_objective(client, rng):
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("xgboost.dask")
    fx = pytest.importorskip("fastloss.xgboost")
    X = rng.normal(size=(2000, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=2000) > 0.8).astype(np.float32)
    dtrain = xgb.dask.DaskDMatrix(client, da.from_array(X, chunks=(500, 4)), da.from_array(y, chunks=500))
    loss = fl.BinaryFocal(gamma=2.0, alpha=0.75, from_logits=True)
    out = xgb.dask.train(client, {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "base_score": 0.0,
                                  "nthread": 1},
                         dtrain, num_boost_round=5, obj=fx.Objective(loss), evals=[(dtrain, "train")],
                         custom_metric=fx.Metric(loss))
    history = out["history"]["train"]["binary_focal"]
    assert len(history) == 5 and history[-1] < history[0]
    margins = xgb.dask.predict(client, out["booster"], dtrain, output_margin=True).compute()
    assert history[-1] == pytest.approx(loss(y, margins.astype(np.float64)), rel=1e-5)


def _names(graph):
    return [k[0] if isinstance(k, tuple) else k for k in graph]


def test_results_are_dask_arrays_from_a_blockwise_graph(rng):
    y, p = rng.normal(size=(2, 4000))
    loss = fl.Huber(delta=0.5)
    # 40 blocks: more than SPLIT_EVERY, so a level of the tree below the root
    value, grad = fd.value_and_grad(loss, _chunked(y, 100), _chunked(p, 100))
    assert isinstance(value, da.Array) and value.shape == () and value.dtype == np.float64
    assert grad.chunks == ((100,) * 40,)
    names = _names(dict(grad.__dask_graph__()))
    assert sum(n.startswith("fastloss-block") for n in names) == 40  # one fused task per block
    assert sum(n.startswith("fastloss-merge0") for n in names) == 3
    assert not any(n.startswith("fastloss-merge1") for n in names)
    # the loss rides in the block tasks: no task of its own that every worker would fetch
    assert not any(v is loss for v in dict(grad.__dask_graph__()).values())
    v, g = dask_compute(value, grad)
    ref_value, ref_grad = loss.value_and_grad(y, p)
    assert v == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(g, ref_grad, rtol=1e-12, atol=1e-18)
    assert (value + 1).compute(scheduler="sync") == pytest.approx(ref_value + 1, rel=1e-12)


def test_the_reduction_reads_partials_not_gradient_blocks(rng):
    import dask.core

    y, p = rng.normal(size=(2, 1000))
    value, grad = fd.value_and_grad(fl.MSE(), _chunked(y, 100), _chunked(p, 100))
    graph = dict(grad.__dask_graph__())
    blocks = {k for k in graph if isinstance(k, tuple) and k[0].startswith("fastloss-block")}
    readers = {k for k in graph if graph[k] is not None and dask.core.get_dependencies(graph, k) & blocks}
    # a block's arrays are read by its own partial and its scaled derivative, never by the root
    assert {k[0].split("-")[1] for k in readers} == {"partial", "d1"}
    # the sum's gradient blocks need no global normalizer: they do not wait for the root
    _, grad = fd.value_and_grad(fl.MSE(), _chunked(y, 100), _chunked(p, 100), reduction="sum")
    graph = dict(grad.__dask_graph__())
    d1 = [k for k in graph if isinstance(k, tuple) and k[0].startswith("fastloss-d1")]
    assert len(d1) == 10
    assert all({dep[0].split("-")[1] for dep in dask.core.get_dependencies(graph, k)} == {"block"} for k in d1)


@pytest.fixture
def persisted(client, rng):
    # 8 blocks of 1.6 MB of each array, every block on both workers: whichever worker runs a
    # block task holds its inputs, so what crosses between workers is only what the graph sends
    # (persisting alone may leave block i of the two arrays on different workers)
    yp = da.random.default_rng(0).standard_normal((2, 1_600_000), chunks=(2, 200_000))
    yd, pd_ = client.persist([yp[0], yp[1]])
    distributed.wait([yd, pd_])
    client.replicate(distributed.futures_of(yd) + distributed.futures_of(pd_), n=2)
    return yd.compute(), pd_.compute(), yd, pd_


def test_a_value_costs_the_block_tasks_and_one_root(client, persisted):
    y, p, yd, pd_ = persisted
    with distributed.get_task_stream(client) as stream:
        value = fd.loss_value(fl.MSE(), yd, pd_).compute()
    assert value == pytest.approx(fl.MSE()(y, p), rel=1e-12)
    names = sorted(_names(r["key"] for r in stream.data))
    # 8 blocks and the root that is the value: no task for the loss, no gathering "finalize" task
    assert len(names) == 9 and names.count(names[0]) == 8 and names[0].startswith("fastloss-block")
    assert names[-1].startswith("fastloss-value")


def test_a_persisted_value_and_gradient(client, persisted):
    y, p, yd, pd_ = persisted
    value, grad = client.persist(fd.value_and_grad(fl.MSE(), yd, pd_))
    distributed.wait([value, grad])
    ref_value, ref_grad = fl.MSE().value_and_grad(y, p)
    with distributed.get_task_stream(client) as stream:
        v = value.compute()
    assert isinstance(v, float) and v == pytest.approx(ref_value, rel=1e-12)
    assert not stream.data  # fetched from the worker holding it: no task
    assert (value * 2).compute() == pytest.approx(2 * ref_value, rel=1e-12)
    np.testing.assert_allclose(grad.compute(), ref_grad, rtol=1e-12, atol=1e-18)


def test_gradient_blocks_mostly_stay_on_their_workers(client, persisted):
    y, p, yd, pd_ = persisted
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    value, grad = client.persist(fd.value_and_grad(fl.MSE(), yd, pd_))
    distributed.wait([value, grad])
    moved = client.run(lambda dask_worker: [k for t in dask_worker.transfer_incoming_log for k in t["keys"]])
    # The partials (two floats per block) go to the root, the global scale back to the blocks.
    # The graph never sends a gradient block to the root (test_the_reduction_reads_partials_not_
    # gradient_blocks); the scheduler may still run a block's partial task on the other worker
    # and move that block, but not most of them, as gathering the gradient for the root did.
    names = [n.split("-")[1] for keys in moved.values() for n in _names(keys)]
    assert set(names) <= {"partial", "finish", "block"} and "partial" in names, moved
    assert names.count("block") <= 2, moved
    ref_value, ref_grad = fl.MSE().value_and_grad(y, p)
    assert value.compute() == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad.compute(), ref_grad, rtol=1e-12, atol=1e-18)


def test_block_tasks_share_the_threads(client):
    from fastloss.dask import _threads_per_task

    with fl.num_threads(4):
        assert _threads_per_task(8) == 4  # the synchronous scheduler: this thread, one task at a time
    # dask's threaded scheduler runs one block per core at once
    import dask

    with dask.config.set(num_workers=2):
        shares = dask.compute([dask.delayed(_threads_per_task)(b) for b in (1, 2, 8)], scheduler="threads")[0]
    assert shares == [fl.get_num_threads(), max(1, fl.get_num_threads() // 2), max(1, fl.get_num_threads() // 2)]
    # a worker process started by a nanny has one OpenMP thread per task already
    assert set(client.run(lambda: fl.get_num_threads()).values()) == {1}
    assert client.submit(_threads_per_task, 8, pure=False).result() == 1


def dask_compute(*xs):
    import dask
    return dask.compute(*xs, scheduler="sync")


def test_dask_arrays_passed_to_a_loss_point_to_fastloss_dask():
    p = da.zeros(10, chunks=5)
    with pytest.raises(TypeError, match="fastloss.dask"):
        fl.MSE()(p, p)
    with pytest.raises(TypeError, match="fastloss.dask"):
        fl.SparseCategoricalCrossEntropy().value_and_grad(np.zeros(10, int), da.ones((10, 3), chunks=5))
