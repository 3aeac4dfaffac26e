"""The benchmark uses the package's public API only, so a refactoring inside the package cannot break it silently.

Reads every module of ``benchmarks/`` (the ``kitbench`` package, ``run.py`` and
the exploration scripts) and fails on an import of a private module of
``kitsession_wsgi`` or on a private attribute read from anything but the
benchmark's own objects (``self._x``).  ``--profile`` names private files
as text to say where samples fall; text is not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SOURCES = sorted(BENCHMARKS.glob("*.py")) + sorted((BENCHMARKS / "kitbench").glob("*.py"))


def private_uses(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kitsession_wsgi"):
            names = [alias.name for alias in node.names]
            if any(part.startswith("_") for part in node.module.split(".") + names):
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kitsession_wsgi") and any(p.startswith("_") for p in alias.name.split(".")):
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id == "self"
            if private and not own:
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_the_check_sees_private_reads() -> None:
    assert private_uses("store._ready().get\n") == ["line 1: ._ready"]
    assert private_uses("from kitsession_wsgi.stores._format import decode_record\n")
    assert private_uses("from kitsession_wsgi.manager import _x\n")
    assert private_uses("self._cache.get(1)\nfrom kitsession_wsgi import session_key\n") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(BENCHMARKS)))
def test_benchmarks_read_no_private_names(path: Path) -> None:
    assert private_uses(path.read_text(encoding="utf-8")) == []
