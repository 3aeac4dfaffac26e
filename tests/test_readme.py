"""Every ```python block of the README runs, so its examples cannot rot.

Blocks that talk to memcached or Redis get private servers, started here on free
ports and named through the environment variables the examples read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import start_memcached, start_redis

README = Path(__file__).resolve().parent.parent / "README.md"
# Blocks whose first line names a file (``# bottle_app.py``) are whole scripts: test_readme_frameworks.py
# runs each in its own interpreter.
BLOCKS = [block for block in re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
          if not re.match(r"# \w+\.py\n", block)]


def _block_id(block: str) -> str:
    first = next(line for line in block.splitlines() if line.strip() and not line.startswith(("import", "from")))
    return first.strip()[:50]


@pytest.fixture(scope="module")
def memcached_address() -> Iterator[str]:
    server = start_memcached()
    yield server.address
    server.stop()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = start_redis()
    yield f"redis://{server.address}/0"
    server.stop()


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 9


@pytest.mark.parametrize("block", BLOCKS, ids=[_block_id(b) for b in BLOCKS])
def test_readme_example_runs(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(tmp_path)
    if "MEMCACHED_SERVERS" in block:
        monkeypatch.setenv("MEMCACHED_SERVERS", request.getfixturevalue("memcached_address"))
    if "REDIS_URL" in block:
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    code = compile(block, str(README), "exec")
    # Twice, against the same servers and files: a snippet a reader runs again must not trip
    # over what its first run left (a database file, user ids piling up in a shared server).
    for _run in range(2):
        exec(code, {"__name__": "readme_example"})


def test_the_readme_cli_commands_name_the_app_and_run(tmp_path: Path) -> None:
    """Regression: the README showed ``flask kitsession ...``, which answers "No such command"."""
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"^flask .*?kitsession .*$", text, re.M)
    assert commands and all(" --app " in line for line in commands), commands
    flask_cli = Path(sys.executable).with_name("flask")
    env = {**os.environ, "KITSESSION_EXAMPLE_DB": str(tmp_path / "example.sqlite3"), "SECRET_KEY": "k"}
    result = subprocess.run([str(flask_cli), "--app", "examples.flask_app", "kitsession", "stats"],
                            cwd=README.parent, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sessions: 0"), result.stdout


CONTRACT_BLOCKS = [block for block in BLOCKS if "(StoreContract)" in block]


def test_readme_store_contract_subclass_runs_the_whole_contract(tmp_path: Path) -> None:
    """The README's StoreContract subclass is collected and run by pytest, every contract test passing."""
    from kitsession_wsgi.testing import StoreContract

    (block,) = CONTRACT_BLOCKS
    module = tmp_path / "test_my_store.py"
    module.write_text(block, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not this project's setup.cfg
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(module)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    summary = re.search(r"^(\d+) passed(.*) in [\d.]+s", output, re.M)
    assert summary is not None, output[-3000:]
    contract_tests = [name for name in dir(StoreContract) if name.startswith("test_")]
    assert int(summary.group(1)) >= len(contract_tests) >= 10, output[-3000:]
    assert "skipped" not in summary.group(2) and "failed" not in summary.group(2), summary.group(0)
