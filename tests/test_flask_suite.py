"""Flask's own test suite, with ``KitSession(app, store=MemoryStore())`` on every app it creates.

The tests come from the sdist of the INSTALLED Flask version, downloaded at test time with
``pip download flask==<version> --no-binary :all: --no-deps`` into a cache directory
(``KITSESSION_FLASK_SDIST_CACHE``, default ``~/.cache/kitsession-wsgi/flask-sdist``), never
copied into this repository.  The suite runs twice in subprocesses: once as it is (the
baseline: a failure there comes from the environment, not from KitSession) and once with the
plugin ``tests/flask_suite/kitsession_flask_plugin.py``.  The tests that fail only with
KitSession must be exactly the by-design differences listed in docs/flask.md
("Differences from Flask's cookie session").
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from servers import service_missing

HERE = Path(__file__).resolve().parent
#: Flask tests that fail with KitSession by design, each explained in docs/flask.md.
BY_DESIGN = {
    # KitSession keeps SameSite=Strict where Flask sends no SameSite attribute.
    "tests.test_basic::test_session_using_samesite_attribute",
}


def _sdist(version: str) -> Path:
    cache = Path(os.environ.get("KITSESSION_FLASK_SDIST_CACHE")
                 or Path.home() / ".cache" / "kitsession-wsgi" / "flask-sdist")
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"[Ff]lask-{version}.tar.gz"))
    if found:
        return found[0]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"flask=={version}", "--no-binary", ":all:",
         "--no-deps", "-d", str(cache)],
        capture_output=True, text=True, timeout=300,
    )
    found = sorted(cache.glob(f"[Ff]lask-{version}.tar.gz"))
    if result.returncode != 0 or not found:
        service_missing(f"cannot download the Flask {version} sdist: {result.stderr[-500:]}")
    return found[0]


def _run_suite(root: Path, mode: str, tmp_path: Path) -> tuple[set[str], int]:
    """Failed test ids (``module::name``) and the number of tests run."""
    report = tmp_path / f"{mode}.xml"
    env = dict(os.environ, KITSESSION_FLASK_SUITE=mode,
               PYTHONPATH=os.pathsep.join([str(HERE / "flask_suite"), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "kitsession_flask_plugin",
         f"--junitxml={report}", "tests"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), f"the {mode} run of Flask's suite wrote no report"
    failed: set[str] = set()
    total = 0
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            name = case.get("name", "").split("[")[0]
            failed.add(f"{case.get('classname')}::{name}")
    return failed, total


def test_flask_suite_passes_with_kitsession_except_the_documented_differences(tmp_path: Path) -> None:
    version = importlib.metadata.version("flask")
    with tarfile.open(_sdist(version)) as archive:
        archive.extractall(tmp_path, filter="data")
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "tests").is_dir()]

    baseline, baseline_total = _run_suite(root, "baseline", tmp_path)
    with_kitsession, total = _run_suite(root, "kitsession", tmp_path)

    assert total == baseline_total and total > 300, (total, baseline_total)
    assert len(baseline) < 10, f"Flask's suite is broken in this environment: {sorted(baseline)}"
    only_with_kitsession = with_kitsession - baseline
    expected = {test for test in BY_DESIGN if test.split("::")[1] in _test_names(root)}
    assert only_with_kitsession == expected, {
        "unexpected failures": sorted(only_with_kitsession - expected),
        "expected differences that passed": sorted(expected - only_with_kitsession),
    }


def _test_names(root: Path) -> set[str]:
    names = set()
    for path in (root / "tests").glob("test_*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("def test_"):
                names.add(line[4:].split("(")[0])
    return names


@pytest.mark.parametrize("test", sorted(BY_DESIGN))
def test_each_difference_is_explained_in_the_docs(test: str) -> None:
    page = (HERE.parent / "docs" / "flask.md").read_text(encoding="utf-8")
    assert test.split("::")[1] in page
