"""The command line as a user meets it: --version, every option's default in --help, list --json
and --family, one source of data for eval, usage mistakes reported in one line with exit status 2
and caught before any work, a reader that closes the pipe early, progress on stderr, and
check-grad failing checks that cannot fail."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastloss as fl
from fastloss import cli
from fastloss.benchmark import command as bench_command


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``fastloss ARGV``."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, argv, message, prog=None):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""  # nothing was computed
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"{prog or 'fastloss ' + argv[0]}: error: ")
    assert message in err


def test_version(capsys):
    assert run(capsys, "--version") == (0, f"fastloss {fl.__version__}\n", "")


def _subcommands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_option_has_help_with_its_default(name):
    parser = _subcommands()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        text = formatter._get_help_string(action)
        assert text, f"fastloss {name} {action.option_strings[0]} has no help"
        if action.nargs != 0:  # an option with a value (not a flag): its default is shown
            assert "default" in text or "without --synthetic" in text, (name, action.option_strings)


def test_bench_help_shows_every_option(capsys):
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0
    for option in ("--quick", "--json", "--losses", "--sizes", "--dtypes", "--threads", "--repeats",
                   "--baselines", "--triad", "--quiet"):
        assert option in out
    assert "(default: float32,float64)" in out and "(default: auto)" in out


def test_bench_usage_errors_come_before_the_run(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert_usage_error(capsys, ["bench", "--json", str(tmp_path / "file" / "r.json")], "not a directory")
    assert_usage_error(capsys, ["bench", "--sizes", "0"], "size must be a positive integer")
    assert_usage_error(capsys, ["bench", "--repeats", "0"], "--repeats must be >= 1")
    # python -m fastloss.benchmark is the same command
    assert bench_command.main(["--baselines", "matlab"]) == 2
    assert "fastloss bench: error: unknown baseline" in capsys.readouterr().err


def test_list_json_and_family(capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    entries = json.loads(out)
    assert [e["name"] for e in entries] == [info.name for info in fl.losses()]
    huber = next(e for e in entries if e["name"] == "huber")
    assert huber["parameters"] == {"delta": 1.0} and huber["family"] == "regression"
    assert huber["differentiable"] == ["y_pred"]
    triplet = next(e for e in entries if e["name"] == "triplet_margin")
    assert triplet["differentiable"] == ["anchor", "positive", "negative"]

    code, out, _ = run(capsys, "list", "--family", "regression", "--json")
    assert code == 0
    assert {e["name"] for e in json.loads(out)} == {i.name for i in fl.losses("regression")}
    code, out, _ = run(capsys, "list", "--family", "regression")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == [i.name for i in fl.losses("regression")]
    assert_usage_error(capsys, ["list", "--family", "nope"], "unknown family 'nope'; families: ")


def test_eval_takes_one_source_of_data(capsys, tmp_path):
    np.save(tmp_path / "y.npy", np.zeros(4))
    np.save(tmp_path / "p.npy", np.ones(4))
    files = ["--y-true", str(tmp_path / "y.npy"), "--y-pred", str(tmp_path / "p.npy")]
    assert_usage_error(capsys, ["eval", "mse", "--synthetic", "10", *files],
                       "--synthetic makes its own data; it cannot be combined with --y-true or --y-pred")
    assert_usage_error(capsys, ["eval", "mse", *files[:2]], "give both --y-true and --y-pred files")
    assert_usage_error(capsys, ["eval", "mse"], "give both --y-true and --y-pred files, or --synthetic N")
    code, out, _ = run(capsys, "eval", "mse", *files, "--json")
    assert code == 0 and json.loads(out)["value"] == 1.0


@pytest.mark.parametrize("n", ["0", "-3", "1.5", "many"])
def test_eval_synthetic_needs_a_positive_count(capsys, n):
    assert_usage_error(capsys, ["eval", "huber", "--synthetic", n],
                       f"argument --synthetic: must be a positive integer; got '{n}'")


def test_eval_out_needs_reduction_none(capsys, tmp_path):
    out = tmp_path / "l.npy"
    assert_usage_error(capsys, ["eval", "huber", "--synthetic", "10", "--out", str(out)],
                       "--out writes the per-element losses of --reduction none")
    assert not out.exists()
    assert run(capsys, "eval", "huber", "--synthetic", "10", "--reduction", "none", "--out", str(out))[0] == 0
    assert np.load(out).shape == (10,)


def test_files_that_cannot_be_read_or_written(capsys, tmp_path):
    missing = tmp_path / "missing"
    assert_usage_error(capsys, ["eval", "huber", "--y-true", str(missing / "y.npy"), "--y-pred",
                                str(missing / "p.npy")], f"no such file: {missing / 'y.npy'}")
    (tmp_path / "junk.npy").write_text("not an array")
    assert_usage_error(capsys, ["eval", "huber", "--y-true", str(tmp_path / "junk.npy"), "--y-pred",
                                str(tmp_path / "junk.npy")], f"cannot read {tmp_path / 'junk.npy'}")
    for option in ("--grad-out", "--out"):  # checked before the work: no report on stdout
        assert_usage_error(capsys, ["eval", "huber", "--synthetic", "10", "--reduction", "none",
                                    option, str(missing / "g.npy")],
                           f"{option} {missing / 'g.npy'}: no such directory: {missing}")
    assert_usage_error(capsys, ["eval", "huber", "--synthetic", "10", "--grad-out", str(tmp_path)],
                       "is a directory")


def test_landscape_checks_its_output_first(capsys, tmp_path, monkeypatch):
    import fastloss.analysis.commands as commands

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(commands, "ill_conditioned_logistic", no_work)
    missing = tmp_path / "missing" / "x.png"
    assert_usage_error(capsys, ["landscape", "--out", str(missing)],
                       f"--out {missing}: no such directory: {missing.parent}")
    pytest.importorskip("matplotlib")
    assert_usage_error(capsys, ["landscape", "--out", str(tmp_path / "x.foo")], "unknown format 'foo'")
    assert_usage_error(capsys, ["landscape", "--steps", "-1"], "must be a non-negative integer")
    for bad in ("0", "-1", "nan"):
        assert_usage_error(capsys, ["landscape", "--condition", bad], "must be a positive number")


def test_unknown_options_and_commands(capsys):
    assert_usage_error(capsys, ["eval", "huber", "--synthetic", "10", "--bogus"],
                       "unrecognized arguments: --bogus (see 'fastloss eval --help')")
    assert_usage_error(capsys, ["frobnicate"], "invalid choice: 'frobnicate'", prog="fastloss")
    assert_usage_error(capsys, [], "required: COMMAND", prog="fastloss")


def _fastloss(*argv, stdout=subprocess.PIPE):
    env = dict(os.environ)
    package_root = str(Path(fl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "fastloss", *argv], stdout=stdout,
                            stderr=subprocess.PIPE, env=env)


@pytest.mark.parametrize("command, status", [("list", 141), ("info", 141), ("--help", 0)])
def test_a_reader_that_stops_early_gets_no_traceback(command, status):
    # `fastloss list | head -1`: the reader closes the pipe before fastloss has written. Quietly,
    # with the status shells give such a writer (128 + SIGPIPE), not 0: the report of a check that
    # was cut short must not read as a pass (argparse's --help ignores the closed pipe itself)
    proc = _fastloss(command)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == status
    assert err == ""
    assert cli.BROKEN_PIPE == 141


def test_progress_on_stderr_for_long_runs(capsys, monkeypatch):
    # quick commands print no progress; after PROGRESS_AFTER seconds each step is named
    code, out, err = run(capsys, "check-grad", "huber", "--n", "20")
    assert code == 0 and err == ""
    monkeypatch.setattr(cli, "PROGRESS_AFTER", 0.0)
    code, out, err = run(capsys, "check-grad", "huber", "--n", "20")
    assert code == 0 and "gradient: PASS" in out
    assert err.startswith("fastloss check-grad: [") and "comparing the gradient and Hessian diagonal" in err
    assert run(capsys, "check-grad", "huber", "--n", "20", "--quiet")[2] == ""
    code, out, err = run(capsys, "landscape", "--n", "200", "--d", "6", "--steps", "20", "--k", "2",
                         "--out", "")
    assert code == 0 and "condition number" in out
    assert "gradient descent, 20 steps" in err and "Hessian spectrum" in err


def test_check_grad_fails_a_gradient_that_is_zero_everywhere(capsys):
    # one triplet whose negative is far: value 0 and every gradient 0, so any check would pass
    code, out, err = run(capsys, "check-grad", "triplet_margin", "--n", "1")
    assert code == 1 and err == ""
    for name in ("anchor", "positive", "negative"):
        assert f"gradient w.r.t. {name}: FAIL (zero everywhere on this data" in out
    assert "PASS" not in out


def test_check_grad_fails_on_nothing(capsys, monkeypatch):
    code, out, _ = run(capsys, "check-grad", "huber", "--n", "0")
    assert code == 1 and "FAIL: nothing to check on 0 samples" in out and "PASS" not in out
    assert_usage_error(capsys, ["check-grad", "huber", "--n", "-1"], "must be a non-negative integer")

    def empty_input(self, n, rng, dtype="float64"):  # synthetic data with an empty input
        return (rng.standard_normal((n, 4)), rng.standard_normal((n, 4)),
                {"negative": np.empty((0, 4))})

    monkeypatch.setattr(fl.TripletMargin, "synthetic", empty_input)
    code, out, _ = run(capsys, "check-grad", "triplet_margin", "--n", "5")
    assert code == 1 and "FAIL: nothing to check: negative has no elements" in out


@pytest.mark.parametrize("wrong", [0, 1, 2])
def test_check_grad_checks_every_differentiable_input(capsys, monkeypatch, wrong):
    original = fl.TripletMargin.value_and_grad

    def one_gradient_off(self, *args, **kwargs):
        value, grads = original(self, *args, **kwargs)
        return value, tuple(g * 1.01 if k == wrong else g for k, g in enumerate(grads))

    monkeypatch.setattr(fl.TripletMargin, "value_and_grad", one_gradient_off)
    code, out, _ = run(capsys, "check-grad", "triplet_margin")
    name = ("anchor", "positive", "negative")[wrong]
    assert code == 1
    assert "differentiable inputs: anchor (200, 16), positive (200, 16), negative (200, 16)" in out
    assert f"gradient w.r.t. {name}: FAIL" in out


def test_check_grad_passes_and_says_what_it_did_not_check(capsys):
    code, out, _ = run(capsys, "check-grad", "triplet_margin")
    assert code == 0 and ": PASS (600 elements" in out  # 200 per input
    assert "hessian diagonal: not checked (the loss provides none)" in out
