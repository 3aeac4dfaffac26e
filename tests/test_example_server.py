"""``make run`` and ``python -m examples.flask_app``: what they install and what they print.

The server runs as a real process (the entry point ``make run`` starts), on a
port a real listening socket holds; the Makefile is read with ``make -n``, so
nothing is installed.
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_example(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m examples.flask_app`` with ``env`` added, as ``make run`` starts it."""
    environment = {key: value for key, value in os.environ.items() if key != "KITSESSION_STORE"}
    environment.update(KITSESSION_EXAMPLE_DB=str(tmp_path / "example.sqlite3"), SECRET_KEY="server-test",
                       HOST="127.0.0.1", **env)
    return subprocess.run([sys.executable, "-m", "examples.flask_app"], cwd=REPO_ROOT, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process's socket is listening on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(1)
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_busy_port_is_one_line_and_exit_status_3(tmp_path: Path, busy_port: int) -> None:
    """Regression: a port in use ended in a 22-line traceback."""
    result = run_example(tmp_path, PORT=str(busy_port))
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [f"port {busy_port} is in use: try make run PORT={busy_port + 1}"]
    assert result.stdout == ""


@pytest.mark.parametrize("port", ["http", "-1", "65536", "50 00"])
def test_a_port_that_is_not_a_number_is_one_line(tmp_path: Path, port: str) -> None:
    result = run_example(tmp_path, PORT=port)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"PORT must be a number from 0 to 65535, got {port!r}"]


# -- the Makefile: `make run` installs the demo extra, `make test` the dev one ----------------------


def setup_extras() -> dict[str, list[str]]:
    """setup.py's extras, by running its module-level code up to ``setup()``."""
    source = (REPO_ROOT / "setup.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    body = [node for node in tree.body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))]  # no setup(...)
    namespace: dict[str, object] = {"__file__": str(REPO_ROOT / "setup.py")}
    exec(compile(ast.Module(body=body, type_ignores=[]), "setup.py", "exec"), namespace)
    extras = namespace["EXTRAS"]
    assert isinstance(extras, dict)
    return extras


def requirement_names(requirements: list[str]) -> set[str]:
    return {requirement.split(">")[0].split("=")[0].split("<")[0].strip().lower() for requirement in requirements}


def test_the_demo_extra_is_what_the_example_needs_and_nothing_else() -> None:
    extras = setup_extras()
    assert requirement_names(extras["demo"]) == {"flask", "peewee", "waitress"}
    assert requirement_names(extras["demo"]) <= requirement_names(extras["dev"]), "make test covers make run"
    assert {"pytest", "playwright", "django", "mypy"} <= requirement_names(extras["dev"])


@pytest.fixture
def make() -> str:
    found = shutil.which("make")
    if found is None:
        pytest.skip("make is not installed")
    return found


def make_dry_run(make: str, target: str, venv: Path) -> list[str]:
    """The commands ``make target`` would run for a fresh venv at ``venv`` (``make -n``: none runs)."""
    result = subprocess.run([make, "-n", "-C", str(REPO_ROOT), target, f"VENV={venv}"],
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def test_make_run_installs_the_demo_extra_quietly(make: str, tmp_path: Path) -> None:
    commands = make_dry_run(make, "run", tmp_path / "venv")
    installs = [line for line in commands if " pip " in line and " install " in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip --quiet --disable-pip-version-check "
                        "--no-input install -e '.[demo]'"]
    assert any("-m examples.flask_app" in line for line in commands)


def test_make_test_installs_the_dev_extra_after_make_run(make: str, tmp_path: Path) -> None:
    """One stamp per extra: after ``make run`` made the demo's, ``make test`` still installs [dev]."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / ".installed-demo").touch()
    assert not any(" install " in line for line in make_dry_run(make, "run", venv)), "the demo stamp is fresh"
    installs = [line for line in make_dry_run(make, "test", venv) if " install " in line]
    assert len(installs) == 1 and installs[0].endswith("install -e '.[dev]'")
