"""The framework examples of docs/frameworks.md (Bottle, Falcon, Pyramid, Django) run as scripts.

Each is a whole file whose first line names it (``# bottle_app.py``); each runs
in its own interpreter, as its user would run it, so Django's one-per-process
settings and ``ROOT_URLCONF=__name__`` work as written.  tests/test_readme.py
runs every other ``python`` block in process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "frameworks.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.M | re.S)
#: a block whose first line is ``# name.py`` is a script
SCRIPT = re.compile(r"# (\w+\.py)\n")
SCRIPTS = {match.group(1): block for block in BLOCKS if (match := SCRIPT.match(block))}


def test_every_framework_has_an_example() -> None:
    assert sorted(SCRIPTS) == ["bottle_app.py", "django_app.py", "falcon_app.py", "pyramid_app.py"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_framework_example_runs(name: str, tmp_path: Path) -> None:
    script = tmp_path / name
    script.write_text(SCRIPTS[name], encoding="utf-8")
    completed = subprocess.run([sys.executable, "-W", "error::SyntaxWarning", str(script)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"{name} failed:\n{completed.stdout}\n{completed.stderr}"
