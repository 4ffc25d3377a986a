"""The package's layers: no import circles between fastloss's modules, and every public module
imports on its own in a fresh interpreter (no hidden dependence on what was imported first)."""

import ast
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import fastloss

ROOT = Path(fastloss.__file__).resolve().parent


def _module_name(path):
    parts = ("fastloss",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_extension(dotted):
    """A compiled module (``_core``): it imports nothing of ours."""
    *package, name = dotted.split(".")
    folder = ROOT.joinpath(*package[1:])
    return any((folder / (name + suffix)).exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _import_time_nodes(tree):
    """Statements that run when the module is imported: everything but function bodies and
    ``if TYPE_CHECKING:`` blocks."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(name, path):
    """(fastloss modules, other top-level packages) that ``name`` imports at import time."""
    ours, theirs = set(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _import_time_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for module, attr in targets:
            if module.split(".")[0] != "fastloss":
                theirs.add(module.split(".")[0])
                continue
            sub = f"{module}.{attr}" if attr else None
            if sub in MODULES:  # from package import submodule
                ours.add(sub)
            elif sub and _is_extension(sub):
                continue
            elif module in MODULES:
                ours.add(module)
    ours.discard(name)
    return ours, theirs


GRAPH, THIRD_PARTY = {}, {}
for _name, _path in MODULES.items():
    GRAPH[_name], THIRD_PARTY[_name] = _imports(_name, _path)


def test_the_graph_sees_the_imports():
    # guards the parser: a graph without edges would pass the acyclicity test trivially
    assert "fastloss._base" in GRAPH["fastloss.regression"]
    assert "fastloss.analysis.init" in GRAPH["fastloss.analysis"]
    assert "fastloss.benchmark.command" in GRAPH["fastloss.benchmark"]
    assert "numpy" in THIRD_PARTY["fastloss._base"]


def test_no_import_circles():
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as e:
        pytest.fail("import circle: " + " -> ".join(e.args[1]))


def test_the_boosting_adapters_do_not_import_the_scipy_adapter():
    for name in ("_boosting", "xgboost", "lightgbm", "catboost"):
        path = MODULES[f"fastloss.{name}"]
        assert "fastloss.scipy" not in _all_imports(path), name


def _all_imports(path):
    """Every fastloss module named in any import of the file, deferred ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update(f"fastloss.{node.module or alias.name}" for alias in node.names)
    return found


def _needs(name, seen=None):
    """Third-party packages ``name`` needs at import time, through our modules too."""
    seen = set() if seen is None else seen
    seen.add(name)
    needs = set(THIRD_PARTY[name])
    for dep in GRAPH[name] - seen:
        needs |= _needs(dep, seen)
    return needs


PUBLIC = sorted(n for n in MODULES if not any(part.startswith("_") for part in n.split(".")))
STDLIB = set(getattr(sys, "stdlib_module_names", ()))


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_module_imports_alone(name):
    missing = sorted(m for m in _needs(name) - STDLIB
                     if m != "__future__" and importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT.parent), *sys.path]))
    run = subprocess.run([sys.executable, "-c", f"import {name}"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
