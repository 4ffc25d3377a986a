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


def test_large_rows_time_their_own_triad():
    """A row beyond the cache (here: every row) reports its percentage against a triad timed in
    its own repeats; the others against the triads before and after the run."""
    res = benchmark.run(losses=["mse"], sizes=[1000, 4000], dtypes=["float64"], threads=[1],
                        repeats=3, quick=True, triad_n=100_000, baselines=["numpy"],
                        row_triad_min_bytes=3 * 8 * 4000)
    small, large = res["rows"]
    assert "triad" not in small and "triad" not in small["timing"]
    assert large["triad"]["gbps_median"] > 0 and len(large["triad"]["times_s"]) == 3
    assert "triad" not in large["timing"] and large["pct_triad"] > 0
    bw = res["triad"]["1"]["gbps_median"]
    assert abs(small["pct_triad"] - 100 * small["gbps"] / bw) < 1e-9 * small["pct_triad"]
    assert "timed in the row's own repeats" in benchmark.format_table(res)


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
