"""fastloss.sklearn: scorers for every registered loss; linear estimators that pass
check_estimator, fit like scikit-learn's own, and search over the loss's parameters."""

import pickle
import warnings

import numpy as np
import pytest

import fastloss as fl

pytest.importorskip("sklearn")
pytest.importorskip("scipy")
from sklearn.base import BaseEstimator, clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastloss.sklearn import LinearClassifier, LinearRegressor, loss_scorer  # noqa: E402

K = 3


class Fixed(BaseEstimator):
    """A fitted 'estimator' (neither classifier nor regressor, so the scorer passes its output
    through) whose every response method returns the same array."""

    def __init__(self, output=None):
        self.output = output

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.output

    decision_function = predict_proba = predict


def inputs_for(loss, rng, n=40):
    """(y_true, estimator output, response method) in the loss's convention."""
    from fastloss._adapters import loss_kind

    kind, logits = loss_kind(loss), getattr(loss, "from_logits", True)
    if kind == "regression":
        return rng.normal(size=n), rng.normal(size=n), "predict"
    if kind == "binary":
        y = rng.integers(0, 2, n).astype(float)
        return (y, rng.normal(size=n), "decision_function") if logits else (y, rng.random(n), "predict_proba")
    z = rng.normal(size=(n, K))
    out = (z, "decision_function") if logits else (fl.softmax(z), "predict_proba")
    y = fl.softmax(rng.normal(size=(n, K))) if getattr(loss, "dense", False) else rng.integers(0, K, n)
    return (y, *out)


@pytest.mark.parametrize("name", [info.name for info in fl.losses()
                                  if info.family in ("regression", "classification")
                                  and not info.cls.inputs])  # (y_true, y_pred) losses
def test_scorer_for_every_registered_loss(name, rng):
    loss = fl.get_loss(name)
    y, output, method = inputs_for(loss, rng)
    scorer = loss_scorer(name)
    assert scorer._response_method == method
    w = rng.random(len(y)) + 0.1
    X = np.zeros((len(y), 1))
    assert scorer(Fixed(output), X, y) == pytest.approx(-loss(y, output))
    assert scorer(Fixed(output), X, y, sample_weight=w) == pytest.approx(-loss(y, output, w))
    assert pickle.loads(pickle.dumps(scorer))(Fixed(output), X, y) == pytest.approx(-loss(y, output))


def test_scorer_with_params_and_cross_validation(rng):
    X = rng.normal(size=(120, 3))
    y = X @ [1.0, 2.0, -1.0] + rng.standard_t(2, size=120)
    scorer = loss_scorer("huber", delta=0.5)
    assert scorer._score_func.loss.delta == 0.5
    scores = cross_val_score(LinearRegressor(loss="huber"), X, y, scoring=scorer, cv=3)
    assert scores.shape == (3,) and np.all(scores < 0)
    assert loss_scorer(fl.Quantile(quantile=0.9))._score_func.loss.quantile == 0.9
    with pytest.raises(TypeError, match="loss_params"):
        loss_scorer(fl.MSE(), delta=1.0)
    with pytest.raises(TypeError, match="teacher_logits"):
        loss_scorer("distillation")
    with pytest.raises(TypeError, match="x2"):  # a loss on pairs is no estimator's score
        loss_scorer("contrastive")


@parametrize_with_checks([LinearRegressor(), LinearRegressor(loss=fl.Huber(delta=0.5)),
                          LinearClassifier(loss="sparse_categorical_cross_entropy")])
def test_check_estimator(estimator, check):
    check(estimator)


def test_classifier_matches_logistic_regression(rng):
    X = rng.normal(size=(200, 3))
    y = np.where(X @ [1.0, -1.0, 0.5] + rng.normal(size=200) > 0, "yes", "no")
    C = 1.0
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(X, y)
    ours = LinearClassifier(loss="logistic", alpha=1.0 / (C * len(y))).fit(X, y)
    np.testing.assert_allclose(ours.coef_, sk.coef_[0], rtol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-6)
    assert list(ours.classes_) == ["no", "yes"]
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))


def test_one_vs_rest_for_binary_losses_and_newton_cg(rng):
    X = rng.normal(size=(150, 2))
    y = np.digitize(X[:, 0] + 0.2 * rng.normal(size=150), [-0.5, 0.5])
    model = LinearClassifier(loss="smooth_hinge", solver="newton-cg").fit(X, y)
    assert model.coef_.shape == (2, 3) and model.decision_function(X).shape == (150, 3)
    assert np.mean(model.predict(X) == y) > 0.8
    assert not hasattr(model, "predict_proba")  # a margin loss: no probabilities
    with pytest.raises(TypeError, match="L-BFGS"):
        LinearClassifier(loss="sparse_categorical_cross_entropy", solver="newton-cg").fit(X, y)


def test_regressor_losses_weights_and_quantiles(rng):
    X = rng.normal(size=(200, 2))
    y = X @ [2.0, -1.0] + 1.0 + rng.normal(size=200)
    w = rng.random(200) + 0.5
    mse = LinearRegressor().fit(X, y, sample_weight=w)
    sw = np.sqrt(w)
    A = np.c_[X, np.ones(200)]
    exact = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
    np.testing.assert_allclose(np.r_[mse.coef_, mse.intercept_], exact, rtol=1e-7)
    multi = LinearRegressor(loss="quantile", loss_params={"quantile": [0.1, 0.9]}).fit(X, y)
    q = multi.predict(X)
    assert q.shape == (200, 2) and np.all(q[:, 0] < q[:, 1])
    assert clone(multi).get_params()["loss_params"] == {"quantile": [0.1, 0.9]}


def test_estimator_errors(rng):
    X, y = rng.normal(size=(20, 2)), rng.integers(0, 3, 20)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearClassifier().fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="solver"):
        LinearRegressor(solver="sgd").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="alpha"):
        LinearRegressor(alpha=-1.0).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="unknown loss"):
        LinearRegressor(loss="nope").fit(X, y.astype(float))


def test_make_scorer_is_a_deprecated_alias(rng):
    import fastloss.sklearn as fsk

    with pytest.warns(DeprecationWarning, match="loss_scorer"):
        scorer = fsk.make_scorer("huber", delta=0.5)
    y, output = rng.normal(size=30), rng.normal(size=30)
    X = np.zeros((30, 1))
    assert scorer(Fixed(output), X, y) == loss_scorer("huber", delta=0.5)(Fixed(output), X, y)


def huber_data(rng, n=150):
    X = rng.normal(size=(n, 3))
    return X, X @ [1.0, 2.0, -1.0] + 0.5 + rng.standard_t(1.5, size=n)


def test_a_loss_instance_or_a_name(rng):
    X, y = huber_data(rng)
    by_name = LinearRegressor(loss="huber", loss_params={"delta": 0.5}).fit(X, y)
    by_instance = LinearRegressor(loss=fl.Huber(delta=0.5)).fit(X, y)
    np.testing.assert_array_equal(by_instance.coef_, by_name.coef_)
    assert by_instance.loss_ == fl.Huber(delta=0.5)
    assert not np.allclose(LinearRegressor(loss=fl.Huber(delta=5.0)).fit(X, y).coef_, by_name.coef_)
    model = LinearRegressor(loss=fl.Huber(delta=0.5))
    assert clone(model).get_params()["loss"] is model.loss  # stored as given; immutable, so shared
    labels = (X[:, 0] > 0).astype(int)
    clf = LinearClassifier(loss=fl.BinaryFocal(gamma=2.0, from_logits=True)).fit(X, labels)
    assert clf.loss_.gamma == 2.0 and np.mean(clf.predict(X) == labels) > 0.9
    with pytest.raises(ValueError, match="from_logits=True"):  # a linear model gives scores
        LinearClassifier(loss=fl.BinaryCrossEntropy(from_logits=False)).fit(X, labels)
    with pytest.raises(TypeError, match="loss_params"):
        LinearRegressor(loss=fl.Huber(), loss_params={"delta": 2.0}).fit(X, y)
    with pytest.raises(TypeError, match="Loss or a registered loss name"):
        LinearRegressor(loss=3).fit(X, y)


def test_grid_search_over_the_loss_parameters(rng):
    X, y = huber_data(rng)
    model = LinearRegressor(loss=fl.Huber())
    assert model.get_params(deep=True)["loss__delta"] == 1.0
    deltas = [0.1, 1.0, 10.0]
    search = GridSearchCV(model, {"loss__delta": deltas, "alpha": [0.0, 0.1]}, cv=3,
                          scoring=loss_scorer("mae")).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(set(np.round(scores, 12))) == len(scores)  # each candidate fitted its own delta
    best = search.best_params_
    assert best["loss__delta"] in deltas and search.best_estimator_.loss_.delta == best["loss__delta"]
    direct = LinearRegressor(loss=fl.Huber(delta=best["loss__delta"]), alpha=best["alpha"]).fit(X, y)
    np.testing.assert_array_equal(search.best_estimator_.coef_, direct.coef_)
    assert model.loss == fl.Huber()  # the searched estimator's loss is untouched
    assert model.set_params(loss__delta=2.0).loss == fl.Huber(delta=2.0)
    with pytest.raises(ValueError, match="loss__delta needs a Loss instance"):
        LinearRegressor(loss="huber").set_params(loss__delta=2.0)


def test_convergence_warning_at_max_iter(rng):
    X, y = huber_data(rng)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        model = LinearRegressor(loss=fl.Huber(), max_iter=2).fit(X, y)
    assert model.n_iter_ == 2
    with pytest.warns(ConvergenceWarning, match="newton-cg"):
        LinearClassifier(solver="newton-cg", max_iter=1).fit(X, (X[:, 0] > 0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LinearRegressor(loss=fl.Huber()).fit(X, y)  # converges: no warning


def test_concordance_scorer_conventions_and_routing(rng):
    """The scorer equals fl.concordance_index on signed (survival:cox) labels and on routed
    event flags; ``predicts="time"`` ranks later predicted times as lower risk."""
    import sklearn
    from sklearn.linear_model import Ridge

    from fastloss.sklearn import concordance_scorer
    X = rng.standard_normal((300, 3))
    time = rng.exponential(size=300) * np.exp(-X[:, 0])
    event = rng.random(300) < 0.7
    signed = np.where(event, time, -time)
    risk_model = Ridge().fit(X, X[:, 0])           # predicts a log hazard: higher = earlier
    time_model = Ridge().fit(X, np.log(time))      # predicts a log time: higher = later
    risk, log_t = risk_model.predict(X), time_model.predict(X)
    assert concordance_scorer()(risk_model, X, signed) == fl.concordance_index(time, event, risk)
    c_time = concordance_scorer("time")(time_model, X, signed)
    assert c_time == fl.concordance_index(time, event, -log_t) and c_time > 0.6
    assert concordance_scorer()(time_model, X, signed) == pytest.approx(1 - c_time)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = concordance_scorer().set_score_request(event=True)
        assert scorer(risk_model, X, time, event=event) == fl.concordance_index(time, event, risk)
    with pytest.raises(ValueError, match="predicts must be"):
        concordance_scorer("hazard")
