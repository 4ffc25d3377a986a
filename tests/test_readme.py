"""The README's tour is runnable as written (every python block of the README)."""

from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text):
    blocks, rest = [], text
    while "```python" in rest:
        rest = rest[rest.index("```python") + len("```python"):]
        blocks.append(rest[:rest.index("```")])
        rest = rest[rest.index("```") + 3:]
    return blocks


def test_readme_python_blocks_run():
    if not README.exists():
        pytest.skip("README.md not beside tests/ (installed tests)")
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no python example"
    for code in blocks:
        # "..." bodies in the tour stand for the user's own code
        exec(compile(code.replace(": ...", ": pass"), "README.md", "exec"), {})
