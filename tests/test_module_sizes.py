"""The package stays readable in an evening: no module over ~600 lines unless its docstring
says why (the three long stores).  The layout rules (no import cycle, nothing calling back
through the manager) are tests/test_house.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kitsession_wsgi

PACKAGE = Path(kitsession_wsgi.__file__).parent
MODULE_LIMIT = 600
MODULES = sorted(PACKAGE.rglob("*.py"))


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_a_long_module_says_why(path: Path) -> None:
    if _lines(path) <= MODULE_LIMIT:
        return
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "Why this module is long" in docstring, (
        f"{path.relative_to(PACKAGE)} has {_lines(path)} lines (over {MODULE_LIMIT}) and its docstring "
        "does not say why: split it by concern, or explain"
    )


def test_only_stores_are_long() -> None:
    long_modules = {str(p.relative_to(PACKAGE)) for p in MODULES if _lines(p) > MODULE_LIMIT}
    assert {m for m in long_modules if not m.startswith("stores/")} == set()

