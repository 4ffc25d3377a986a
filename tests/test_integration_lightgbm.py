"""fastloss.lightgbm: objective and metric adapters trained on synthetic data.

(a) grad/hess at the exact inputs LightGBM hands over (float32 labels, float64 raw scores)
equal a NumPy reference; (b) the squared-error, logistic and softmax adapters reproduce
LightGBM's built-in objectives with matching initial scores; (c) focal beats plain logistic on
an imbalanced set by balanced accuracy.
"""

import pickle

import numpy as np
import pytest

import fastloss as fl

from boosting_cases import (CASES, FOCAL, N_CLASSES, balanced_accuracy, imbalanced,
                            reference_grad_hess, task_data)

lgb = pytest.importorskip("lightgbm")
flgb = pytest.importorskip("fastloss.lightgbm")

TREE = {"num_leaves": 8, "learning_rate": 0.3, "num_threads": 1, "verbose": -1, "deterministic": True}


class Recording(flgb.Objective):
    """The adapter, keeping a copy of what LightGBM handed it at each call (in a class-level log:
    lightgbm.train deep-copies its params, the objective with them)."""

    log = []

    def __call__(self, preds, train_data):
        self.log.append((train_data.get_label().copy(), preds.copy(), train_data.get_weight().copy()))
        return super().__call__(preds, train_data)


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_hess_at_the_inputs_lightgbm_hands_over(name, rng):
    factory, task, policy, _ = CASES[name]
    X, y, w = task_data(task, rng)
    obj = Recording(factory())
    assert obj.hessian == policy
    params = dict(TREE, objective=obj, **({"num_class": N_CLASSES} if task == "multiclass" else {}))
    Recording.log.clear()
    lgb.train(params, lgb.Dataset(X, label=y, weight=w), 2)
    labels, scores, weights = Recording.log[-1]
    assert labels.dtype == np.float32 and scores.dtype == np.float64
    assert scores.shape == ((len(y), N_CLASSES) if task == "multiclass" else (len(y),))
    g, h = obj.grad_hess(labels, scores, weights)
    assert g.dtype == h.dtype == np.float64 and g.shape == h.shape == scores.shape
    g_ref, h_ref = reference_grad_hess(name, labels, scores, weights)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-14)


def _fit(params, X, y, rounds, w=None, init=None):
    init_score = None if init is None else np.full(len(y), init)
    return lgb.train(params, lgb.Dataset(X, label=y, weight=w, init_score=init_score), rounds)


def test_squared_error_reproduces_builtin(rng):
    X, y, _ = task_data("regression", rng)
    # fastloss's MSE is r**2 (Hessian 2): with no Hessian threshold the leaves -G/H agree.
    params = dict(TREE, min_sum_hessian_in_leaf=0.0)
    init = flgb.init_score(fl.MSE(), y)
    ours = _fit(dict(params, objective=flgb.Objective(fl.MSE())), X, y, 10, init=init)
    builtin = _fit(dict(params, objective="regression"), X, y, 10)  # boost_from_average: the mean
    np.testing.assert_allclose(ours.predict(X) + init, builtin.predict(X), rtol=1e-6, atol=1e-6)


def test_logistic_reproduces_builtin(rng):
    X, y, w = task_data("binary", rng)
    init = flgb.init_score(fl.Logistic(), y, w)
    ours = _fit(dict(TREE, objective=flgb.Objective(fl.Logistic())), X, y, 10, w, init)
    builtin = _fit(dict(TREE, objective="binary"), X, y, 10, w)  # boost_from_average: logit(mean)
    np.testing.assert_allclose(ours.predict(X) + init, builtin.predict(X, raw_score=True), rtol=1e-6, atol=1e-6)


def test_softmax_reproduces_builtin(rng):
    X, y, _ = task_data("multiclass", rng)
    params = dict(TREE, num_class=N_CLASSES, min_sum_hessian_in_leaf=0.0)
    # LightGBM's multiclass Hessian is K/(K-1) p (1 - p): a learning rate (K-1)/K times ours agrees.
    rate = TREE["learning_rate"] * (N_CLASSES - 1) / N_CLASSES
    ours = _fit(dict(params, learning_rate=rate,
                     objective=flgb.Objective(fl.SparseCategoricalCrossEntropy(from_logits=True))), X, y, 8)
    builtin = _fit(dict(params, objective="multiclass", boost_from_average=False), X, y, 8)
    np.testing.assert_allclose(ours.predict(X), builtin.predict(X, raw_score=True), rtol=1e-6, atol=1e-6)


def test_focal_beats_logistic_on_imbalanced_data():
    X, y = imbalanced(0)
    X_test, y_test = imbalanced(100)
    scores = {}
    for name, loss in (("logistic", fl.Logistic()), ("focal", FOCAL)):
        booster = _fit(dict(TREE, objective=flgb.Objective(loss)), X, y, 20)
        scores[name] = balanced_accuracy(y_test, booster.predict(X_test))
    assert scores["focal"] > scores["logistic"] + 0.05, scores


def test_native_metric_reports_the_weighted_mean(rng):
    X, y, w = task_data("binary", rng)
    train = lgb.Dataset(X, label=y, weight=w)
    result = {}
    booster = lgb.train(dict(TREE, objective=flgb.Objective(FOCAL), metric="None"), train, 4,
                        valid_sets=[train], valid_names=["train"], feval=flgb.Metric(FOCAL),
                        callbacks=[lgb.record_evaluation(result)])
    assert result["train"]["binary_focal"][-1] == pytest.approx(FOCAL(y, booster.predict(X), w), rel=1e-9)


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")  # lightgbm >= 4.7
def test_sklearn_api_with_weights_and_metric(rng):
    X, y, w = task_data("multiclass", rng)
    loss = fl.SparseCategoricalCrossEntropy(from_logits=True)
    model = lgb.LGBMClassifier(n_estimators=4, num_leaves=8, n_jobs=1, verbose=-1,
                               objective=flgb.SklearnObjective(loss))
    model.fit(X, y, sample_weight=w, eval_set=[(X, y)], eval_sample_weight=[w],
              eval_metric=flgb.SklearnMetric(loss))
    scores = model.predict(X, raw_score=True)
    assert scores.shape == (len(y), N_CLASSES)
    (reported,) = model.evals_result_.values()  # the one eval set, whatever LightGBM names it
    assert reported["sparse_categorical_cross_entropy"][-1] == pytest.approx(loss(y.astype(int), scores, w), rel=1e-9)
    assert np.mean(scores.argmax(axis=1) == y) > 0.6


def test_adapters_pickle():
    for adapter in (flgb.Objective(FOCAL, hessian="clip", floor=1e-3), flgb.SklearnObjective(fl.MSE()),
                    flgb.Metric(FOCAL), flgb.SklearnMetric(fl.Huber())):
        back = pickle.loads(pickle.dumps(adapter))
        assert type(back) is type(adapter) and repr(back) == repr(adapter)
