"""fastloss.xgboost: objective and metric adapters trained on synthetic data.

(a) grad/hess at the exact inputs XGBoost hands over (float32 labels, float32 margins, and the
same margins as float64) equal a NumPy reference; (b) the squared-error, logistic and softmax
adapters reproduce XGBoost's built-in objectives with matching base scores; (c) focal beats
plain logistic on an imbalanced set by balanced accuracy.
"""

import pickle

import numpy as np
import pytest

import fastloss as fl

from boosting_cases import (CASES, FOCAL, N_CLASSES, balanced_accuracy, imbalanced,
                            reference_grad_hess, task_data)

xgb = pytest.importorskip("xgboost")
fx = pytest.importorskip("fastloss.xgboost")

TREE = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "nthread": 1}


class Recording(fx.Objective):
    """The adapter, keeping a copy of what XGBoost handed it at the first call."""

    seen = None

    def __call__(self, predt, dtrain):
        if self.seen is None:
            self.seen = (dtrain.get_label().copy(), predt.copy(), dtrain.get_weight().copy())
        return super().__call__(predt, dtrain)


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_hess_at_the_inputs_xgboost_hands_over(name, rng):
    factory, task, policy, _ = CASES[name]
    X, y, w = task_data(task, rng)
    params = dict(TREE, base_score=0.0, **({"num_class": N_CLASSES} if task == "multiclass" else {}))
    obj = Recording(factory())
    assert obj.hessian == policy
    xgb.train(params, xgb.DMatrix(X, label=y, weight=w), 2, obj=obj)
    labels, margins, weights = obj.seen
    assert labels.dtype == np.float32
    assert margins.shape == ((len(y), N_CLASSES) if task == "multiclass" else (len(y),))
    for z, rtol in ((margins, 3e-6), (margins.astype(np.float64), 1e-12)):
        g, h = obj.grad_hess(labels, z, weights)
        assert g.dtype == h.dtype == z.dtype and g.shape == h.shape == z.shape
        g_ref, h_ref = reference_grad_hess(name, labels, z, weights)
        np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=rtol * np.abs(g_ref).max())
        np.testing.assert_allclose(h, h_ref, rtol=rtol, atol=rtol * np.abs(h_ref).max())


def _margins(booster, X):
    return booster.predict(xgb.DMatrix(X), output_margin=True)


def test_squared_error_reproduces_builtin(rng):
    X, y, _ = task_data("regression", rng)
    d = xgb.DMatrix(X, label=y)
    # fastloss's MSE is r**2 (Hessian 2): without L2 and min_child_weight the leaves -G/H agree.
    params = dict(TREE, reg_lambda=0.0, min_child_weight=0.0)
    ours = xgb.train(dict(params, base_score=fx.base_score(fl.MSE(), y)), d, 10, obj=fx.Objective(fl.MSE()))
    builtin = xgb.train(dict(params, objective="reg:squarederror", base_score=float(np.mean(y))), d, 10)
    np.testing.assert_allclose(_margins(ours, X), _margins(builtin, X), rtol=1e-5, atol=1e-5)


def test_logistic_reproduces_builtin(rng):
    X, y, w = task_data("binary", rng)
    d = xgb.DMatrix(X, label=y, weight=w)
    prior = float(np.average(y, weights=w))
    ours = xgb.train(dict(TREE, base_score=fx.base_score(fl.Logistic(), y, w)), d, 10,
                     obj=fx.Objective(fl.Logistic()))
    # built-in base_score is a probability, ours a margin: the same starting point
    builtin = xgb.train(dict(TREE, objective="binary:logistic", base_score=prior), d, 10)
    np.testing.assert_allclose(_margins(ours, X), _margins(builtin, X), rtol=1e-5, atol=1e-5)


def test_softmax_reproduces_builtin(rng):
    X, y, _ = task_data("multiclass", rng)
    d = xgb.DMatrix(X, label=y)
    params = dict(TREE, num_class=N_CLASSES, base_score=0.0, reg_lambda=0.0, min_child_weight=0.0)
    # XGBoost's softmax Hessian is 2 p (1 - p), fastloss's p (1 - p): half the step size agrees.
    ours = xgb.train(dict(params, eta=TREE["eta"] / 2), d, 8,
                     obj=fx.Objective(fl.SparseCategoricalCrossEntropy(from_logits=True)))
    builtin = xgb.train(dict(params, objective="multi:softprob"), d, 8)
    np.testing.assert_allclose(_margins(ours, X), _margins(builtin, X), rtol=1e-5, atol=1e-5)


def test_focal_beats_logistic_on_imbalanced_data():
    X, y = imbalanced(0)
    X_test, y_test = imbalanced(100)
    scores = {}
    for name, loss in (("logistic", fl.Logistic()), ("focal", FOCAL)):
        booster = xgb.train(dict(TREE, base_score=0.0), xgb.DMatrix(X, label=y), 20, obj=fx.Objective(loss))
        scores[name] = balanced_accuracy(y_test, _margins(booster, X_test))
    assert scores["focal"] > scores["logistic"] + 0.05, scores


def test_native_metric_reports_the_weighted_mean(rng):
    X, y, w = task_data("binary", rng)
    d = xgb.DMatrix(X, label=y, weight=w)
    result = {}
    booster = xgb.train(dict(TREE, base_score=0.0), d, 4, obj=fx.Objective(FOCAL), evals=[(d, "train")],
                        custom_metric=fx.Metric(FOCAL, name="focal"), evals_result=result,
                        verbose_eval=False)
    expected = FOCAL(y, _margins(booster, X).astype(np.float64), w)
    assert result["train"]["focal"][-1] == pytest.approx(expected, rel=1e-5)


def test_metric_on_a_builtin_objective_takes_probabilities(rng):
    X, y, w = task_data("binary", rng)
    d = xgb.DMatrix(X, label=y, weight=w)
    result = {}
    booster = xgb.train(dict(TREE, objective="binary:logistic", eval_metric="logloss"), d, 4,
                        evals=[(d, "train")], custom_metric=fx.Metric(fl.BinaryCrossEntropy()),
                        evals_result=result, verbose_eval=False)
    ours, builtin = result["train"]["binary_cross_entropy"], result["train"]["logloss"]
    np.testing.assert_allclose(ours, builtin, rtol=1e-5)
    assert ours[-1] == pytest.approx(fl.BinaryCrossEntropy()(y, booster.predict(d), w), rel=1e-5)


def test_sklearn_api_with_weights_and_metric(rng):
    X, y, w = task_data("binary", rng)
    # XGBClassifier runs a callable objective under binary:logistic's link: base_score is a
    # probability there (0.5 = margin 0) and predict_proba applies the sigmoid.
    model = xgb.XGBClassifier(n_estimators=4, max_depth=3, n_jobs=1, base_score=0.5,
                              objective=fx.SklearnObjective(fl.Logistic()),
                              eval_metric=fx.SklearnMetric(fl.Logistic()))
    model.fit(X, y, sample_weight=w, eval_set=[(X, y)], sample_weight_eval_set=[w], verbose=False)
    reported = model.evals_result()["validation_0"]["logistic"][-1]
    margins = model.predict(X, output_margin=True)
    assert reported == pytest.approx(fl.Logistic()(y, margins.astype(np.float64), w), rel=1e-5)
    assert balanced_accuracy(y, margins) > 0.6
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], 1 / (1 + np.exp(-margins)), rtol=1e-5)


def test_multi_quantile_regression(rng):
    X, y, _ = task_data("regression", rng, n=600)
    taus = [0.1, 0.5, 0.9]
    loss = fl.Quantile(quantile=taus)
    labels = np.repeat(y[:, None], len(taus), axis=1)  # one label column per quantile
    booster = xgb.train(dict(TREE, base_score=0.0), xgb.DMatrix(X, label=labels), 30, obj=fx.Objective(loss))
    q = _margins(booster, X)
    assert q.shape == (len(y), 3)
    coverage = (y[:, None] <= q).mean(axis=0)
    assert coverage[0] < coverage[1] < coverage[2], coverage


def test_adapters_pickle():
    for adapter in (fx.Objective(FOCAL, hessian="clip", floor=1e-3), fx.SklearnObjective(fl.MSE()),
                    fx.Metric(FOCAL), fx.SklearnMetric(fl.Huber())):
        back = pickle.loads(pickle.dumps(adapter))
        assert type(back) is type(adapter) and repr(back) == repr(adapter)
