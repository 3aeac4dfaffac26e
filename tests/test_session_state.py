"""Session owns its state: nothing outside ``kitsession_wsgi/session.py`` writes its private slots.

The manager, the adapters and the stores move a session from state to state through
its transition methods (``_inserted``, ``_stored``, ``_vanished``, ...), so each state
change is written once and can be read in one place.  This check reads the package's
source and fails when an assignment to one of ``Session``'s private slots comes back
anywhere else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kitsession_wsgi
from kitsession_wsgi import Session

PACKAGE = Path(kitsession_wsgi.__file__).resolve().parent
PRIVATE_SLOTS = {slot for slot in Session.__slots__ if slot.startswith("_")}


def outside_writes(source: str, filename: str) -> list[str]:
    """``file:line: target`` for every assignment to a Session private slot name on an object."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and part.attr in PRIVATE_SLOTS:
                    found.append(f"{filename}:{part.lineno}: {ast.unparse(part)}")
    return found


def test_the_check_sees_an_outside_write() -> None:
    assert outside_writes("session._destroyed = True\nsession.data = {}\n", "example.py") == [
        "example.py:1: session._destroyed"]
    assert outside_writes("a._send_cookie, b = True, 1\nx._version += 1\n", "example.py") == [
        "example.py:1: a._send_cookie", "example.py:2: x._version"]


def test_no_module_but_session_py_writes_a_sessions_private_slots() -> None:
    assert PRIVATE_SLOTS >= {"_data", "_destroyed", "_send_cookie", "_lock_token"}
    writes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "session.py" and path.parent == PACKAGE:
            continue
        writes += outside_writes(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert writes == [], "use Session's transition methods instead:\n" + "\n".join(writes)
