"""The package stays readable in an evening: no module over 600 lines, stores included (a
long store is a package of short modules), and a thin SessionManager that holds the public
API while the private modules do the work."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kitsession_wsgi

PACKAGE = Path(kitsession_wsgi.__file__).parent
MODULE_LIMIT = 600
MANAGER_LIMIT = 350
MODULES = sorted(PACKAGE.rglob("*.py"))


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_is_long(path: Path) -> None:
    assert _lines(path) <= MODULE_LIMIT, (
        f"{path.relative_to(PACKAGE)} has {_lines(path)} lines (over {MODULE_LIMIT}): split it by concept"
    )


def test_session_manager_is_thin() -> None:
    tree = ast.parse((PACKAGE / "manager.py").read_text(encoding="utf-8"))
    [manager] = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "SessionManager"]
    assert manager.end_lineno is not None
    length = manager.end_lineno - manager.lineno + 1
    assert length <= MANAGER_LIMIT, f"SessionManager is {length} lines: move the work to a private module"
