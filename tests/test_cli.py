"""The command line: every registered loss evaluates on built-in synthetic data, files round-trip,
and bad input is an error message with exit status 2, not a traceback (more in test_cli_usage.py)."""

import json

import numpy as np
import pytest

import fastloss as fl
from fastloss import cli


@pytest.mark.parametrize("name", sorted(info.name for info in fl.losses()))
def test_every_registered_loss_evaluates_on_synthetic_data(name, capsys):
    assert cli.main(["eval", name, "--synthetic", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert np.isfinite(report["value"]) and np.isfinite(report["grad_l2_norm"])
    assert report["grad_l2_norm"] > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(info.name for info in fl.losses()))
def test_every_registered_loss_provides_synthetic_data(name, dtype):
    loss = fl.get_loss(name)
    assert type(loss).synthetic is not fl.Loss.synthetic, f"{name} provides no synthetic data"
    y_true, y_pred, inputs = loss.synthetic(16, np.random.default_rng(0), dtype)
    preds = y_pred if isinstance(y_pred, (list, tuple)) else [y_pred]
    assert all(np.asarray(p).dtype == dtype for p in preds)
    assert np.all(np.isfinite(loss(y_true, y_pred, reduction="none", **inputs)))


def test_a_loss_without_synthetic_data_fails_loudly():
    class NoData(fl.Loss):  # no function_name: an abstract base, not registered
        pass

    with pytest.raises(NotImplementedError, match="NoData provides no synthetic data"):
        cli.synthetic(NoData(), 4)


def test_eval_files_with_extra_input_and_outputs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    teacher, student = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    labels = rng.integers(0, 4, 20)
    for name, arr in (("y.npy", labels), ("p.npy", student), ("t.npy", teacher)):
        np.save(tmp_path / name, arr)
    argv = ["eval", "distillation", "--y-true", str(tmp_path / "y.npy"), "--y-pred",
            str(tmp_path / "p.npy"), "--input", f"teacher_logits={tmp_path / 't.npy'}",
            "--param", "alpha=0.25", "--grad-out", str(tmp_path / "g.npy"), "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    value, grad = fl.Distillation(alpha=0.25).value_and_grad(labels, student, teacher_logits=teacher)
    assert report["value"] == value
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), grad)


def test_errors_are_messages(capsys):
    assert cli.main(["eval", "huber", "--synthetic", "10", "--param", "delta=-1"]) == 2
    assert "delta" in capsys.readouterr().err
    assert cli.main(["eval", "no_such_loss", "--synthetic", "10"]) == 2
    capsys.readouterr()
    assert cli.main(["eval", "huber", "--synthetic", "10", "--param", "delta"]) == 2
    assert capsys.readouterr().err == "fastloss eval: error: --param expects NAME=VALUE; got 'delta'\n"


def test_list_names_every_loss(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(info.name in out for info in fl.losses())
