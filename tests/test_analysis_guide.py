"""recommend: only registered losses, the spec's guide (8.5), properties from the registry."""

import pytest

import fastloss as fl
from fastloss import _base
from fastloss import analysis as fa

SITUATIONS = [
    dict(task="regression"), dict(task="regression", outliers=True), dict(task="regression", quantile=0.9),
    dict(task="binary"), dict(task="binary", imbalance=True), dict(task="binary", imbalance=20.0),
    dict(task="binary", noisy_labels=True), dict(task="classification", n_classes=2),
    dict(task="multiclass"), dict(task="classification", n_classes=1000),
    dict(task="multiclass", imbalance=True, need_hessian=True), dict(task="similarity"),
]


@pytest.mark.parametrize("kwargs", SITUATIONS, ids=lambda k: "-".join(f"{v}" for v in k.values()))
def test_only_registered_losses_and_constructible(kwargs):
    registered = {info.name for info in fl.losses()}
    recs = fa.recommend(**kwargs)
    for r in recs:
        assert r.name in registered
        assert isinstance(r.make(), fl.Loss)  # the suggested parameters are valid
        assert r.reasons
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_follows_the_spec_guide():
    assert fa.recommend("regression")[0].name == "mse"
    assert fa.recommend("regression", outliers=True)[0].name in ("huber", "mae", "log_cosh")
    assert "mse" not in [r.name for r in fa.recommend("regression", outliers=True, top=3)]
    q = fa.recommend("regression", quantile=0.9)[0]
    assert (q.name, q.params) == ("quantile", {"quantile": 0.9})
    assert fa.recommend("binary")[0].name == "binary_cross_entropy"
    top2 = fa.recommend("binary", imbalance=20.0, top=2)
    assert {r.name for r in top2} == {"binary_cross_entropy", "binary_focal"}
    weighted = next(r for r in top2 if r.name == "binary_cross_entropy")
    assert weighted.params["pos_weight"] == 20.0
    assert fa.recommend("classification", n_classes=1000)[0].name == "sparse_categorical_cross_entropy"
    assert fa.recommend("binary", noisy_labels=True)[0].params.get("label_smoothing") == 0.1
    # second-order use demotes losses whose Hessian is only a.e.
    names = [r.name for r in fa.recommend("binary", need_hessian=True)]
    assert names.index("hinge") > names.index("logistic")


def test_unregistered_losses_are_skipped(monkeypatch):
    registry = dict(_base._REGISTRY)
    del registry["huber"]
    monkeypatch.setattr(_base, "_REGISTRY", registry)
    names = [r.name for r in fa.recommend("regression", outliers=True)]
    assert "huber" not in names and "mae" in names


def test_properties_from_registry_and_measured_lipschitz():
    props = {i.name: fa.loss_properties(i) for i in fl.losses()}
    assert props["mse"]["lipschitz"] is False and props["mae"]["lipschitz"] is True
    assert props["huber"]["lipschitz"] is True and props["squared_hinge"]["lipschitz"] is False
    info = next(i for i in fl.losses() if i.name == "huber")
    assert props["huber"]["robust"] == info.robust and props["huber"]["convex"] == info.convex


def test_errors():
    with pytest.raises(ValueError, match="task must be"):
        fa.recommend("ranking-ish")
    with pytest.raises(ValueError, match="n_classes"):
        fa.recommend("classification")
    with pytest.raises(ValueError, match="quantile"):
        fa.recommend("regression", quantile=1.5)
    with pytest.raises(ValueError, match="imbalance"):
        fa.recommend("binary", imbalance=0.5)
