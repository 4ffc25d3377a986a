"""fastloss.keras: values and gradients against Keras's own losses on the same tensors, sample
weights, config round trip, saving with a model, and training through model.compile/fit (on the
PyTorch backend, which the test selects)."""

import os

import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() not in ("torch", "jax"):
    pytest.skip("Keras runs another backend in this process", allow_module_level=True)
fk = pytest.importorskip("fastloss.keras")

N, K = 64, 4


def _as(x):
    return keras.ops.convert_to_tensor(x)


def _value_and_grad(loss, y, p, w=None):
    """The loss value and its gradient with respect to ``p``, on the active backend."""
    if keras.backend.backend() == "torch":
        pt = torch.tensor(p, requires_grad=True)
        v = loss(torch.tensor(y), pt, sample_weight=None if w is None else torch.tensor(w))
        v.backward()
        return float(v), pt.grad.numpy()
    import jax
    return jax.value_and_grad(lambda q: loss(y, q, sample_weight=w))(p)


CASES = {
    "mse": (lambda: fl.MSE(), lambda: keras.losses.MeanSquaredError(), "regression"),
    "huber": (lambda: fl.Huber(delta=0.7), lambda: keras.losses.Huber(delta=0.7), "regression"),
    "bce": (lambda: fl.BinaryCrossEntropy(from_logits=True),
            lambda: keras.losses.BinaryCrossentropy(from_logits=True), "binary"),
    "cross_entropy": (lambda: fl.SparseCategoricalCrossEntropy(from_logits=True),
                      lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True), "multiclass"),
}


def _data(kind, rng):
    if kind == "regression":
        y = rng.normal(size=(N, 1)).astype(np.float32)
        return y, (y + rng.normal(size=(N, 1))).astype(np.float32)
    if kind == "binary":
        return rng.integers(0, 2, (N, 1)).astype(np.float32), rng.normal(size=(N, 1)).astype(np.float32)
    return rng.integers(0, K, N).astype(np.float32), (2 * rng.normal(size=(N, K))).astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_against_keras_losses(rng, name, weighted):
    ours, theirs, kind = CASES[name]
    y, p = _data(kind, rng)
    w = rng.random(N).astype(np.float32) if weighted else None
    v1, g1 = _value_and_grad(fk.Loss(ours()), y, p, w)
    v2, g2 = _value_and_grad(theirs(), y, p, w)
    assert float(v1) == pytest.approx(float(v2), rel=2e-6)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=2e-5, atol=1e-7)


def test_config_round_trip():
    loss = fk.Loss(fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=[1, 2, 3],
                                                    label_smoothing=0.1), name="ce")
    config = loss.get_config()
    assert config["loss"] == "sparse_categorical_cross_entropy" and config["name"] == "ce"
    again = fk.Loss.from_config(config)
    assert again.fl_loss == loss.fl_loss and again.name == "ce"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, fk.Loss) and restored.fl_loss == loss.fl_loss
    assert fk.Loss("huber").fl_loss == fl.Huber(reduction="none")


def test_compile_fit_and_save(rng, tmp_path):
    keras.utils.set_random_seed(0)
    X = rng.normal(size=(256, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=256)).astype(np.float32)[:, None]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=fk.Loss(fl.Huber(delta=1.0)))
    history = model.fit(X, y, epochs=15, batch_size=64, verbose=0).history["loss"]
    assert history[-1] < 0.2 * history[0]
    # the reported loss is the fastloss loss of the model's predictions
    assert model.evaluate(X, y, verbose=0, batch_size=256) == pytest.approx(
        fl.Huber(delta=1.0)(y, model.predict(X, verbose=0)), rel=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, fk.Loss) and loaded.loss.fl_loss == fl.Huber(delta=1.0, reduction="none")
