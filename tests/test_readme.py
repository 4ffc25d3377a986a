"""The README's tour and every page under docs/ are runnable as written (every python block), and
what users read cites papers and libraries, not internal documents."""

import re
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


# A user has the papers and the libraries, not our planning documents or tracker.
INTERNAL = re.compile(r"\b[Ss]pec(\s+sections?)?\s+\d|\b[Ss]pec's\b|\bthe spec\b|§|\bissue\s+\d"
                      r"|\bissue targets?\b|\bthe issue's\b")


def test_user_text_cites_no_internal_documents():
    files = [*PAGES, ROOT / "CHANGELOG.md", *(ROOT / "python").rglob("*.py"),
             *(ROOT / "python").rglob("*.pyi"), *(ROOT / "bench").rglob("*.py"),
             ROOT / "bench" / "README.md"]
    files = [f for f in files if f.exists()]
    if len(files) < 10:
        pytest.skip("the sources are not beside tests/ (installed tests)")
    found = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in files
             for i, line in enumerate(f.read_text().splitlines(), 1) if INTERNAL.search(line)]
    assert not found, "\n".join(found)
