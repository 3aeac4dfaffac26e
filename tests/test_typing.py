"""The package type-checks under ``mypy --strict`` (it ships ``py.typed``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_package_ships_py_typed() -> None:
    assert (ROOT / "kitsession_wsgi" / "py.typed").is_file()


def test_mypy_strict_is_clean() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "kitsession_wsgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = completed.stdout + completed.stderr
    print(output)
    assert completed.returncode == 0, f"mypy --strict kitsession_wsgi failed:\n{output}"
