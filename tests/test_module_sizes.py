"""The package stays readable in an evening: no module over 600 lines, stores included (a
long store is a package of short modules).  The layout rules (no import cycle, nothing calling
back through the manager) are tests/test_house.py."""

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
def test_no_module_is_long(path: Path) -> None:
    assert _lines(path) <= MODULE_LIMIT, (
        f"{path.relative_to(PACKAGE)} has {_lines(path)} lines (over {MODULE_LIMIT}): split it by concept"
    )
