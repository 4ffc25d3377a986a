"""The benchmark harness runs end to end on a tiny configuration: fastloss agrees with the NumPy
baselines, the tables have their columns, and the result is JSON. Timings are not asserted."""

import json

from fastloss import benchmark
from fastloss.benchmark.report import jsonable


def test_small_run_checks_against_numpy_and_reports():
    res = benchmark.run(losses=["mse", "huber", "hinge"], sizes=[1000], dtypes=["float32"],
                        threads=[1], repeats=1, quick=True, triad_n=100_000, baselines=["numpy"])
    assert [r["loss"] for r in res["rows"]] == ["mse", "huber", "hinge"]
    assert all(r["check"]["ok"] for r in res["rows"])
    table = benchmark.format_table(res)
    assert "vs numpy" in table and "%triad" in table and "FAIL" not in table
    json.dumps(jsonable(res))


def test_every_elementwise_loss_gets_data_it_accepts():
    """The default run skips no loss: each gets inputs in its domain (positive times and amounts
    for the survival and Gamma losses, labels for the classification ones)."""
    res = benchmark.run(sizes=[64], dtypes=["float64"], threads=[1], repeats=1, quick=True,
                        triad_n=100_000, baselines=[])
    assert res["skipped"] == []
    assert {"aft", "gamma_nll", "mse", "logistic"} <= {r["loss"] for r in res["rows"]}


def test_small_multiclass_run():
    rows = benchmark.run_multiclass(shapes=[(64, 10)], threads=[1], quick=True)
    assert {r["loss"] for r in rows} == {"sparse_categorical_cross_entropy",
                                         "categorical_cross_entropy", "sparse_categorical_focal",
                                         "categorical_focal", "distillation"}
    assert all(r["check_ok"] for r in rows)
    assert "rows x K" in benchmark.format_multiclass_table(rows)


def test_bandwidth_is_positive():
    assert benchmark.measure_triad_bandwidth(1, n=100_000, repeats=1, method="numpy") > 0
