"""Every ```python block of the README and of the docs/ pages runs, so the examples cannot rot.

Blocks that talk to memcached or Redis get private servers, started here on free
ports and named through the environment variables the examples read.  A block whose
first line names a file (``# bottle_app.py``) is a whole script, run by
test_readme_frameworks.py in its own interpreter; there is no other way to leave a
block out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import start_memcached, start_redis

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: the README and every Markdown page of the documentation site
PAGES = [README, *sorted(DOCS.rglob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page, scripts (first line ``# name.py``) left out."""
    return [block for block in re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
            if not re.match(r"# \w+\.py\n", block)]


#: (page, block) for every block to run
BLOCKS = [(page, block) for page in PAGES for block in python_blocks(page)]


def _block_id(page: Path, block: str) -> str:
    first = next(line for line in block.splitlines() if line.strip() and not line.startswith(("import", "from")))
    return f"{page.relative_to(ROOT)}: {first.strip()[:50]}"


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


def test_readme_and_docs_have_examples() -> None:
    assert len(python_blocks(README)) >= 2
    assert len(BLOCKS) >= 20


def test_every_docs_code_block_is_python_or_a_known_language() -> None:
    """A block in another language is not run: only shell, SQL and text are allowed to be."""
    for page in PAGES:
        languages = set(re.findall(r"^```(\S*)", page.read_text(encoding="utf-8"), re.M)) - {""}
        assert languages <= {"python", "sh", "sql", "text", "{toctree}", "{include}", "{kitsession-options}",
                             "{kitsession-extension-options}"}, (page, languages)


def test_scripts_are_only_where_their_test_runs_them() -> None:
    """test_readme_frameworks.py runs the scripts of docs/frameworks.md; one elsewhere would never run."""
    for page in PAGES:
        blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
        scripts = [block for block in blocks if re.match(r"# \w+\.py\n", block)]
        assert not scripts or page == DOCS / "frameworks.md", page


@pytest.mark.parametrize(("page", "block"), BLOCKS, ids=[_block_id(p, b) for p, b in BLOCKS])
def test_readme_example_runs(page: Path, block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(tmp_path)
    if "MEMCACHED_SERVERS" in block:
        monkeypatch.setenv("MEMCACHED_SERVERS", request.getfixturevalue("memcached_address"))
    if "REDIS_URL" in block:
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    code = compile(block, str(page), "exec")
    # Twice, against the same servers and files: a snippet a reader runs again must not trip
    # over what its first run left (a database file, user ids piling up in a shared server).
    for _run in range(2):
        exec(code, {"__name__": "readme_example"})


def test_the_readme_cli_commands_name_the_app_and_run(tmp_path: Path) -> None:
    """Regression: the README showed ``flask kitsession ...``, which answers "No such command"."""
    text = "".join(page.read_text(encoding="utf-8") for page in PAGES)
    commands = re.findall(r"^(?:.*/)?flask .*?kitsession .*$", text, re.M)
    assert commands and all(" --app " in line for line in commands), commands
    flask_cli = Path(sys.executable).with_name("flask")
    env = {**os.environ, "KITSESSION_EXAMPLE_DB": str(tmp_path / "example.sqlite3"), "SECRET_KEY": "k"}
    result = subprocess.run([str(flask_cli), "--app", "examples.flask_app", "kitsession", "stats"],
                            cwd=README.parent, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sessions: 0"), result.stdout


CONTRACT_BLOCKS = [block for _page, block in BLOCKS if "(StoreContract)" in block]


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
