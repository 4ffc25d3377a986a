"""fastloss.catboost: objective and metric classes in CatBoost's sign convention (derivatives of
the maximized -loss), trained on synthetic data."""

import warnings

import numpy as np
import pytest

import fastloss as fl

from boosting_cases import CASES, FOCAL, N_CLASSES, reference_grad_hess, task_data

cb = pytest.importorskip("catboost")
fcb = pytest.importorskip("fastloss.catboost")

pytestmark = pytest.mark.filterwarnings("ignore:Failed to import numba")

# CatBoost's own Newton steps, without randomness, from margin 0.
NEWTON = dict(iterations=8, learning_rate=0.3, depth=3, leaf_estimation_method="Newton",
              leaf_estimation_iterations=1, boost_from_average=False, bootstrap_type="No",
              random_strength=0, random_seed=0, thread_count=1, verbose=0,
              allow_writing_files=False)  # no catboost_info/ in the working directory


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n][1] != "multiclass"))
def test_calc_ders_range_is_minus_the_loss_derivatives(name, rng):
    factory, task, _, _ = CASES[name]
    _, y, w = task_data(task, rng, n=60)
    z = rng.normal(0, 2, 60)
    ders = fcb.Objective(factory()).calc_ders_range(z, y, w)
    g_ref, h_ref = reference_grad_hess(name, y, z, w)
    assert ders.shape == (60, 2)
    np.testing.assert_allclose(ders[:, 0], -g_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ders[:, 1], -h_ref, rtol=1e-12, atol=1e-14)


def test_calc_ders_multi_one_object(rng):
    z = rng.normal(size=N_CLASSES)
    der1, der2 = fcb.Objective(CASES["softmax"][0]()).calc_ders_multi(list(z), 2.0, 0.5)
    g_ref, h_ref = reference_grad_hess("softmax", np.array([2.0]), z[None, :], np.array([0.5]))
    np.testing.assert_allclose(der1, -g_ref[0], rtol=1e-12)
    np.testing.assert_allclose(der2, np.diag(-h_ref[0]), rtol=1e-12)


def test_logistic_reproduces_builtin_logloss(rng):
    X, y, _ = task_data("binary", rng, n=300)
    ours = cb.CatBoostClassifier(loss_function=fcb.Objective(fl.Logistic()), eval_metric="Logloss", **NEWTON)
    builtin = cb.CatBoostClassifier(loss_function="Logloss", **NEWTON)
    ours.fit(X, y)
    builtin.fit(X, y)
    np.testing.assert_allclose(ours.predict(X, prediction_type="RawFormulaVal"),
                               builtin.predict(X, prediction_type="RawFormulaVal"), rtol=1e-9, atol=1e-9)


def test_metric_and_focal_training(rng):
    X, y, w = task_data("binary", rng, n=300)
    model = cb.CatBoostClassifier(loss_function=fcb.Objective(FOCAL), eval_metric=fcb.Metric(FOCAL), **NEWTON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CatBoost: Python metrics are slow
        model.fit(X, y, sample_weight=w, eval_set=cb.Pool(X, y, weight=w))
    margins = model.predict(X, prediction_type="RawFormulaVal")
    (history,) = model.get_evals_result()["validation"].values()
    assert history[-1] == pytest.approx(FOCAL(y, margins, w), rel=1e-6)
    assert history[-1] < history[0]
