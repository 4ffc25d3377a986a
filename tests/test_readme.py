"""The README's tour and every page under docs/ are runnable as written (every python block)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(text):
    blocks, rest = [], text
    while "```python" in rest:
        rest = rest[rest.index("```python") + len("```python"):]
        blocks.append(rest[:rest.index("```")])
        rest = rest[rest.index("```") + 3:]
    return blocks


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page):
    if not page.exists():
        pytest.skip(f"{page.name} not beside tests/ (installed tests)")
    blocks = python_blocks(page.read_text())
    assert blocks, f"{page.name} has no python example"
    namespace = {}  # one namespace per page: later blocks build on earlier ones
    for code in blocks:
        # "..." bodies in the tour stand for the user's own code
        exec(compile(code.replace(": ...", ": pass"), page.name, "exec"), namespace)
