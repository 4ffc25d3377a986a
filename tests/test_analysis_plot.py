"""Surface slices, the plot functions without a display, and the analysis CLI commands."""

import numpy as np
import pytest

import fastloss as fl
from fastloss import analysis as fa
from fastloss.cli import main


@pytest.fixture
def mlp_objective():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((80, 4)), rng.integers(0, 2, 80).astype(float)
    m = fa.MLP([4, 6, 1])
    return fa.Objective(m, X, y, fl.BinaryCrossEntropy(from_logits=True)), m.init_params(0)


def test_filter_normalized_direction(mlp_objective):
    obj, theta = mlp_objective
    d = fa.random_direction(obj, theta, "filter", seed=1)
    blocks_d, blocks_t = obj.model.unflatten(d), obj.model.unflatten(theta)
    for spec in obj.model.param_specs:
        if spec.kind == "bias":
            assert not blocks_d[spec.name].any()
        else:  # every filter (row) has the norm of the parameters' filter
            np.testing.assert_allclose(np.linalg.norm(blocks_d[spec.name], axis=1),
                                       np.linalg.norm(blocks_t[spec.name], axis=1), rtol=1e-12)
    layer = fa.random_direction(obj, theta, "layer", seed=1)
    w0 = obj.model.unflatten(layer)["weight0"]
    assert np.linalg.norm(w0) == pytest.approx(float(np.linalg.norm(blocks_t["weight0"])))
    assert np.array_equal(d, fa.random_direction(obj, theta, "filter", seed=1))


def test_slices_evaluate_the_objective(mlp_objective):
    obj, theta = mlp_objective
    line = fa.loss_line(obj, theta, alphas=np.linspace(-1, 1, 5), seed=2)
    assert line.values.shape == (5,)
    assert line.values[2] == pytest.approx(obj.value(theta))
    assert line.values[0] == pytest.approx(obj.value(theta - line.direction))
    plane = fa.loss_plane(obj, theta, alphas=np.linspace(-1, 1, 3), betas=np.linspace(-0.5, 0.5, 5))
    assert plane.values.shape == (5, 3)
    assert plane.values[4, 0] == pytest.approx(obj.value(theta - plane.d1 + 0.5 * plane.d2))
    user = np.ones_like(theta)
    assert np.array_equal(fa.loss_line(obj, theta, user, alphas=[0.5]).direction, user)
    with pytest.raises(ValueError, match="direction must have the shape"):
        fa.loss_line(obj, theta, np.ones(3))


def test_plots_draw_headless(mlp_objective, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obj, theta = mlp_objective
    line = fa.loss_line(obj, theta, alphas=np.linspace(-1, 1, 7))
    plane = fa.loss_plane(obj, theta, alphas=np.linspace(-1, 1, 5))
    spectrum = fa.hessian_eigenvalues(obj, theta, k=2, which="both")
    monitor = fa.TrainingMonitor(callback=lambda f: None)
    for k in range(30):
        monitor.record(0.9 ** k, grad_norm=0.9 ** k, val_loss=0.9 ** k + 0.1, per_class={0: 0.8 ** k, 1: 0.95 ** k})
    fig, axes = plt.subplots(2, 2)
    for fn, arg, ax in [(fa.plot_line, line, axes[0, 0]), (fa.plot_contour, plane, axes[0, 1]),
                        (fa.plot_spectrum, spectrum, axes[1, 0]), (fa.plot_history, monitor, axes[1, 1])]:
        assert fn(arg, ax=ax) is ax
        assert ax.has_data()
    fig.savefig(tmp_path / "a.png")
    ax3 = fa.plot_surface(plane)  # a new 3-D figure
    assert ax3.name == "3d" and ax3.figure is not fig
    assert monitor.plot().has_data()
    assert fa.plot_history([1.0, 0.5, 0.25]).get_yscale() == "log"
    plt.close("all")
    assert (tmp_path / "a.png").stat().st_size > 0


def test_cli_landscape_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "land.png"
    assert main(["landscape", "--n", "300", "--d", "8", "--steps", "60", "--k", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "condition number" in text and "convergence:" in text and "top:" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_check_grad(capsys):
    assert main(["check-grad", "huber", "--param", "delta=0.5", "--n", "50"]) == 0
    assert "gradient: PASS" in capsys.readouterr().out
    assert main(["check-grad", "sparse_categorical_cross_entropy", "--param", "from_logits=true",
                 "--dtype", "float32", "--n", "20"]) == 0
    assert main(["check-grad", "no_such_loss"]) == 2
