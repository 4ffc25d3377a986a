"""Hyper-parameters: real constructor signatures, immutability, replace, equality and hashing,
validation (TypeError for types, ValueError for values), and what type checkers see."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastloss as fl
from fastloss import _core
from fastloss import _validate as V
from fastloss._base import Loss, param

INFOS = fl.losses()
IDS = [info.name for info in INFOS]


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_signature_lists_exactly_the_parameters(info):
    sig = inspect.signature(info.cls)
    names = [p.name for p in info.cls.params]
    assert list(sig.parameters) == names + ["reduction"]
    for p in sig.parameters.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY
        assert p.annotation is not inspect.Parameter.empty, f"{info.cls.__name__}.{p.name}"
    assert {k: sig.parameters[k].default for k in names} == info.params
    assert sig.parameters["reduction"].default == "mean"
    loss = info.cls()  # the defaults construct, and are what get_params reports
    assert loss.get_params().keys() == info.params.keys() and loss.reduction == "mean"
    with pytest.raises(TypeError):
        info.cls(1.0)  # keyword-only


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_functional_signature_lists_the_parameters(info):
    sig = inspect.signature(info.function)
    keywords = [k for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keywords[-len(info.params) - 2:] == ["sample_weight", "reduction", *info.params]
    assert {k: sig.parameters[k].default for k in info.params} == info.params
    assert f"{info.name}(" in info.function.__doc__


def test_signature_text():
    assert str(inspect.signature(fl.Huber)) == "(*, delta: float = 1.0, reduction: str = 'mean')"
    assert str(inspect.signature(fl.MSE)) == "(*, reduction: str = 'mean')"


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_assignment_raises(info):
    loss = info.cls()
    for name in [*info.params, "reduction", "new_attribute"]:
        with pytest.raises(AttributeError, match=r"replace\("):
            setattr(loss, name, getattr(loss, name, 1.0))
    for name in info.params:
        with pytest.raises(AttributeError):
            delattr(loss, name)
    assert loss == info.cls()


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_replace(info):
    loss = info.cls(reduction="sum")
    copy = loss.replace()
    assert copy == loss and copy is not loss and hash(copy) == hash(loss)
    assert type(copy) is info.cls and copy.get_params() == loss.get_params()
    other = loss.replace(reduction="mean")
    assert other != loss and other.reduction == "mean" and loss.reduction == "sum"
    assert other == info.cls()
    with pytest.raises(TypeError, match="no_such_parameter"):
        loss.replace(no_such_parameter=1)
    with pytest.raises(ValueError, match="reduction"):
        loss.replace(reduction="median")
    for name in info.params:  # validated like the constructor, naming the parameter
        with pytest.raises(TypeError, match=name):
            loss.replace(**{name: object()})
        with pytest.raises(TypeError, match=name):
            info.cls(**{name: object()})


def test_replace_changes_what_is_computed():
    rng = np.random.default_rng(0)
    y, p = rng.standard_normal(100), 3 * rng.standard_normal(100)
    loss = fl.Huber(delta=1.0)
    wider = loss.replace(delta=2.0)
    assert wider == fl.Huber(delta=2.0) and loss.delta == 1.0
    assert wider(y, p) == fl.Huber(delta=2.0)(y, p) != loss(y, p)
    bce = fl.BinaryCrossEntropy().replace(from_logits=True)  # another kernel, picked again
    assert bce(np.array([1.0]), np.array([0.0])) == pytest.approx(math.log(2))
    q = fl.Quantile(quantile=0.5).replace(quantile=[0.1, 0.9])
    assert q(np.zeros(2), np.ones((2, 2))) == fl.Quantile(quantile=(0.1, 0.9))(np.zeros(2), np.ones((2, 2)))


def test_equality_and_hash_by_value():
    assert fl.Huber(delta=1) == fl.Huber(delta=1.0) and hash(fl.Huber(delta=1)) == hash(fl.Huber())
    assert fl.Huber(delta=1.0) != fl.Huber(delta=2.0)
    assert fl.Huber() != fl.Huber(reduction="sum")
    assert fl.MSE() != fl.MAE() and fl.MSE() == fl.MSE()  # the type is part of the value
    assert fl.MSE() != "MSE()" and fl.MSE().__eq__(1) is NotImplemented
    # sequences are stored as tuples, per-class weights as read-only arrays: compared by value
    q1, q2 = fl.Quantile(quantile=[0.1, 0.9]), fl.Quantile(quantile=np.array([0.1, 0.9]))
    assert q1.quantile == (0.1, 0.9) and q1 == q2 and hash(q1) == hash(q2)
    w = np.array([1.0, 2.0, 3.0])
    a = fl.SparseCategoricalCrossEntropy(class_weight=w)
    b = fl.SparseCategoricalCrossEntropy(class_weight=[1, 2, 3])
    c = fl.SparseCategoricalCrossEntropy(class_weight=[1, 2, 4])
    assert a == b and hash(a) == hash(b) and a != c
    assert a != fl.SparseCategoricalCrossEntropy()
    assert len({a, b, c, fl.SparseCategoricalCrossEntropy()}) == 3
    assert {fl.Huber(): "kept"}[fl.Huber(delta=1.0)] == "kept"
    # the stored weights are the loss's own, read-only copy
    assert not a.class_weight.flags.writeable
    w[0] = 100.0
    assert a == b
    with pytest.raises(ValueError):
        a.class_weight[0] = 5.0
    assert eval(repr(a), {"SparseCategoricalCrossEntropy": fl.SparseCategoricalCrossEntropy}) == a


def test_type_and_value_errors_name_the_parameter():
    for bad in ("0.25", None, True, [0.1, "x"], b"q"):
        with pytest.raises(TypeError, match="quantile"):
            fl.Quantile(quantile=bad)
    for bad in (0.0, 1.0, float("nan"), [], [0.2, 1.5], [[0.1, 0.5]]):
        with pytest.raises(ValueError, match="quantile"):
            fl.Quantile(quantile=bad)
    with pytest.raises(TypeError, match="delta must be a real number"):
        fl.Huber(delta="1.0")
    with pytest.raises(ValueError, match="delta must be > 0"):
        fl.Huber(delta=-1.0)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        fl.BinaryCrossEntropy(from_logits=1)
    with pytest.raises(ValueError, match="metric must be one of"):
        fl.BatchContrastive(metric="manhattan")
    with pytest.raises(TypeError, match="metric must be one of"):
        fl.BatchContrastive(metric=2)
    with pytest.raises(TypeError, match="max_iter must be an int"):
        fl.SinkhornLoss(max_iter=10.0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        fl.SinkhornLoss(max_iter=0)
    with pytest.raises(TypeError, match="p must be one of"):
        fl.MultiClassHinge(p=2.0)
    with pytest.raises(TypeError, match=r"class_weight\[1\] must be a real number"):
        fl.SparseCategoricalCrossEntropy(class_weight=[1.0, None])
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be >= 0"):
        fl.SparseCategoricalCrossEntropy(class_weight=[-1.0, 1.0])
    with pytest.raises(TypeError, match="unexpected keyword argument.*'dleta'"):
        fl.Huber(dleta=1.0)


def test_validators():
    assert V.between(0, 1, "left")("a", 0) == 0.0
    with pytest.raises(ValueError, match=r"a must lie in \[0, 1\); got 1.0"):
        V.between(0, 1, "left")("a", 1)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        V.between(0, 1, "right")("a", 0.0)
    assert V.at_least(1, allow_inf=True)("p", math.inf) == math.inf
    with pytest.raises(ValueError, match="finite"):
        V.at_least(1)("p", math.inf)
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        V.integer(0, 4)("seed", 4)
    with pytest.raises(TypeError):
        V.integer(0)("seed", True)
    assert V.integer(0)("seed", np.int32(3)) == 3 and V.boolean("b", np.bool_(True)) is True
    assert V.choice(None, "a")("c", None) is None and V.optional(V.positive)("x", None) is None
    assert V.floats(V.positive, max_size=2)("w", [1, 2]) == (1.0, 2.0)
    with pytest.raises(ValueError, match="w must hold 1 to 2 values"):
        V.floats(V.positive, max_size=2)("w", [1, 2, 3])
    arr = V.floats(as_array=True)("w", (1, 2))
    assert arr.dtype == np.float64 and not arr.flags.writeable
    with pytest.raises(TypeError):
        V.floats()("w", np.array(["a"]))


def test_subclass_declares_parameters_once():
    class Scaled(Loss):  # an abstract loss (no function_name): not registered
        """A test class."""

        scale: float = param(default=2.0, check=V.positive, doc="a factor")
        derived_calls = []

        def __post_init__(self) -> None:
            self._twice = 2 * self.scale
            Scaled.derived_calls.append(self.scale)

    assert [p.name for p in Scaled.params] == ["scale"] and Scaled.scale == 2.0
    assert str(inspect.signature(Scaled)) == "(*, scale: float = 2.0, reduction: str = 'mean')"
    s = Scaled(scale=3)
    assert s.scale == 3.0 and s._twice == 6.0 and Scaled.derived_calls == [3.0]
    assert s.replace(scale=4.0)._twice == 8.0
    with pytest.raises(ValueError, match="scale must be > 0"):
        Scaled(scale=0)
    assert all(type(info.cls).__name__ == "_LossType" for info in INFOS)

    with pytest.raises(TypeError, match="__post_init__"):
        class Old(Loss):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
    with pytest.raises(TypeError, match="annotate"):
        class Unannotated(Loss):
            scale = param(default=2.0, check=V.positive)


# --------------------------------------------------------------------------------------------------
# What type checkers see: the constructors (PEP 681) and the compiled module's stub
# --------------------------------------------------------------------------------------------------


def _mypy(tmp_path, code: str):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(code))
    env = dict(os.environ)
    root = Path(fl.__file__).resolve().parent.parent
    if "site-packages" not in root.parts:  # a source checkout: point mypy at it
        env["MYPYPATH"] = str(root)
    cmd = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
           "--python-executable", sys.executable, "--cache-dir", str(tmp_path / "cache"),
           "--no-error-summary", str(script)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return result.returncode, result.stdout + result.stderr


def test_mypy_checks_constructor_keywords(tmp_path):
    rc, out = _mypy(tmp_path, """
        import fastloss as fl

        fl.Huber(dleta=1.0)
        fl.Huber(delta="x")
        loss = fl.Quantile(quantile=0.9)
        loss.quantile = 0.5
    """)
    assert rc == 1, out
    assert 'Unexpected keyword argument "dleta" for "Huber"' in out
    assert 'Argument "delta" to "Huber" has incompatible type "str"' in out
    assert 'Property "quantile" defined in "Quantile" is read-only' in out


def test_mypy_passes_correct_use(tmp_path):
    # every registered loss with each default spelled out: the annotations admit the defaults
    spelled = "".join(
        f"        fl.{info.cls.__name__}("
        + ", ".join(f"{k}={v!r}" for k, v in [*info.params.items(), ("reduction", "none")])
        + ")\n" for info in INFOS)
    rc, out = _mypy(tmp_path, """
        from typing import Any, Dict

        import numpy as np
        import fastloss as fl
        from fastloss import _core

        huber = fl.Huber(delta=1.0, reduction="sum")
        wider: fl.Huber = huber.replace(delta=2.0)
        delta: float = wider.delta
        quantiles = fl.Quantile(quantile=[0.1, 0.5, 0.9])
        ce = fl.SparseCategoricalCrossEntropy(from_logits=True, class_weight=np.ones(3),
                                              ignore_index=-100, label_smoothing=0.1)
        kd = fl.Distillation(alpha=0.5, temperature=2.0)
        dice = fl.DiceLoss(activation="softmax", class_weight=[1.0, 2.0], batch=True)
        same: bool = huber == fl.Huber(delta=1.0)
        params: Dict[str, Any] = wider.get_params()
        key: int = hash(quantiles)
        y = np.zeros(4)
        total, norm, per, grad, hess = _core.elementwise(_core.elementwise_kernels["mse"], [], y, y,
                                                   None, None, "mean", True, False, None, None,
                                                   None)
        mean: float = total / norm
        if grad is not None:
            g: np.ndarray = grad + 1.0
    """ + spelled)
    assert rc == 0, out


def _stub_functions():
    tree = ast.parse((Path(_core.__file__).parent / "_core.pyi").read_text())
    return {node.name: [a.arg for a in node.args.args]
            for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_core_stub_matches_the_compiled_module():
    stub = _stub_functions()
    compiled = {}
    for name in dir(_core):
        obj = getattr(_core, name)
        if name.startswith("_") or not callable(obj):
            continue
        first = obj.__doc__.strip().splitlines()[0]  # pybind11: "name(a: T, b: T = ...) -> R"
        args = first[first.index("(") + 1:first.rindex(") ->")]
        depth, names, current = 0, [], ""
        for ch in args + ",":
            depth += ch in "[(" and 1 or 0
            depth -= ch in "])" and 1 or 0
            if ch == "," and depth == 0:
                if current.strip():
                    names.append(current.split(":")[0].strip())
                current = ""
            else:
                current += ch
        compiled[name] = names
    assert stub == compiled


def test_mypy_types_values_and_gradients(tmp_path):
    # Ten typical calls: values are floats (arrays with reduction="none"), gradients arrays, or
    # tuples of arrays for losses with several differentiable inputs; never a bare Any.
    rc, out = _mypy(tmp_path, """
        import numpy as np
        import fastloss as fl

        rng = np.random.default_rng(0)
        y, p, w = rng.standard_normal(8), rng.standard_normal(8), rng.random(8)
        labels, logits = rng.integers(0, 3, 8), rng.standard_normal((8, 3))
        x1, x2 = rng.standard_normal((8, 2)), rng.standard_normal((8, 2))
        huber = fl.Huber(delta=1.0)
        reveal_type(huber(y, p))
        reveal_type(huber(y, p, sample_weight=w, reduction="none"))
        reveal_type(huber.value_and_grad(y, p))
        reveal_type(huber.grad_hess(y, p, reduction="sum"))
        reveal_type(fl.huber(y, p, delta=2.0))
        reveal_type(fl.SparseCategoricalCrossEntropy().value_and_grad(labels, logits))
        reveal_type(fl.Distillation().value_grad_hess(labels, logits, teacher_logits=logits))
        reveal_type(fl.Contrastive().value_and_grad(labels % 2, x1, x2))
        reveal_type(fl.CenterLoss().value_and_grad(labels, x1, x2[:3]))
        reveal_type(fl.BatchTripletMargin()(labels, x1, return_triplets=True))
    """)
    assert rc == 0, out
    revealed = [line.split("Revealed type is ", 1)[1].strip('"').replace("builtins.", "")
                for line in out.splitlines() if "Revealed type is" in line]
    assert len(revealed) == 10, out
    array = "numpy.ndarray[tuple[Any, ...], numpy.dtype[numpy.floating[Any]]]"
    assert revealed[0] == "float"
    assert revealed[1] == array
    assert revealed[2] == f"tuple[float, {array}]"
    assert revealed[3] == f"tuple[{array}, {array}]"
    assert revealed[4] == "float"
    assert revealed[5] == f"tuple[float, {array}]"
    assert revealed[6] == f"tuple[float, {array}, {array}]"
    assert revealed[7] == f"tuple[float, tuple[{array}, {array}]]"
    assert revealed[8] == revealed[7]
    assert revealed[9].startswith("tuple[float, numpy.ndarray[") and "integer" in revealed[9]
