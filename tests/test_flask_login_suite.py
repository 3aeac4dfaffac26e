"""Flask-Login's own test suite, with ``KitSession(app, store=MemoryStore())`` on every app it creates.

As ``tests/test_flask_suite.py`` does for Flask: the tests come from the sdist of the
INSTALLED Flask-Login (``pip download flask-login==<version> --no-binary :all: --no-deps``
into ``KITSESSION_FLASK_LOGIN_SDIST_CACHE``, default
``~/.cache/kitsession-wsgi/flask-login-sdist``), run once without KitSession (the baseline)
and once with ``tests/flask_suite/kitsession_flask_plugin.py``.  The tests that fail only
with KitSession must be exactly the remember-me token tests: under KitSession remember-me
is the server-side session and Flask-Login's ``remember_token`` cookie is never set nor
honoured (docs/flask-login.md, "Remember-me").
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

pytest.importorskip("flask_login")
pytest.importorskip("semantic_version")  # Flask-Login's suite imports it

HERE = Path(__file__).resolve().parent
#: Flask-Login tests that set, read or expire its ``remember_token`` cookie: by design, the
#: session is the remember-me under KitSession (docs/flask-login.md lists them).
BY_DESIGN = {
    f"tests.test_login.{case}::{name}" for case, name in [
        ("LoginTestCase", "test_confirm_login"),
        ("LoginTestCase", "test_fresh_login_required_decorator"),
        ("LoginTestCase", "test_remember_me"),
        ("LoginTestCase", "test_remember_me_accepts_duration_as_int"),
        ("LoginTestCase", "test_remember_me_custom_duration"),
        ("LoginTestCase", "test_remember_me_custom_duration_uses_custom_cookie"),
        ("LoginTestCase", "test_remember_me_is_unfresh"),
        ("LoginTestCase", "test_remember_me_no_refresh_every_request"),
        ("LoginTestCase", "test_remember_me_uses_custom_cookie_parameters"),
        ("LoginTestCase", "test_remember_me_with_invalid_duration_returns_500_response"),
        ("LoginTestCase", "test_session_protection_strong_deletes_session"),
        ("LoginTestCase", "test_user_loaded_from_cookie_fired"),
        ("UnicodeCookieUserIDTestCase", "test_remember_me_user_id"),
        ("UnicodeCookieUserIDTestCase", "test_remember_me_username"),
    ]
}


def _sdist(version: str) -> Path:
    cache = Path(os.environ.get("KITSESSION_FLASK_LOGIN_SDIST_CACHE")
                 or Path.home() / ".cache" / "kitsession-wsgi" / "flask-login-sdist")
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"[Ff]lask[-_][Ll]ogin-{version}.tar.gz"
    found = sorted(cache.glob(pattern))
    if found:
        return found[0]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"flask-login=={version}", "--no-binary", ":all:",
         "--no-deps", "-d", str(cache)],
        capture_output=True, text=True, timeout=300,
    )
    found = sorted(cache.glob(pattern))
    if result.returncode != 0 or not found:
        service_missing(f"cannot download the Flask-Login {version} sdist: {result.stderr[-500:]}")
    return found[0]


def _run_suite(root: Path, mode: str, tmp_path: Path) -> tuple[set[str], int]:
    """Failed test ids (``module.Class::name``) and the number of tests run."""
    report = tmp_path / f"{mode}.xml"
    # The checkout's package first: the suite runs in the sdist's directory, where an
    # editable install of another checkout would otherwise be the one imported.
    env = dict(os.environ, KITSESSION_FLASK_SUITE=mode, PYTHONPATH=os.pathsep.join(
        [str(HERE / "flask_suite"), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "kitsession_flask_plugin",
         f"--junitxml={report}", "tests"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), f"the {mode} run of Flask-Login's suite wrote no report"
    failed: set[str] = set()
    total = 0
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(f"{case.get('classname')}::{case.get('name', '').split('[')[0]}")
    return failed, total


def test_flask_login_suite_passes_with_kitsession_except_the_remember_token_tests(tmp_path: Path) -> None:
    version = importlib.metadata.version("flask-login")
    with tarfile.open(_sdist(version)) as archive:
        archive.extractall(tmp_path, filter="data")
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "tests").is_dir()]

    baseline, baseline_total = _run_suite(root, "baseline", tmp_path)
    with_kitsession, total = _run_suite(root, "kitsession", tmp_path)

    assert total == baseline_total and total > 100, (total, baseline_total)
    assert len(baseline) < 5, f"Flask-Login's suite is broken in this environment: {sorted(baseline)}"
    only_with_kitsession = with_kitsession - baseline
    assert only_with_kitsession == BY_DESIGN, {
        "unexpected failures": sorted(only_with_kitsession - BY_DESIGN),
        "expected differences that passed": sorted(BY_DESIGN - only_with_kitsession),
    }


@pytest.mark.parametrize("test", sorted(BY_DESIGN))
def test_each_difference_is_listed_in_the_docs(test: str) -> None:
    page = (HERE.parent / "docs" / "flask-login.md").read_text(encoding="utf-8")
    assert test.split("::")[1] in page
