"""Flask's own test suite, with ``KitSession(app, store=MemoryStore())`` on every app it creates.

The tests come from the sdist of the INSTALLED Flask version (``tests/sdist_suites.py``),
downloaded at test time into a cache directory (``KITSESSION_FLASK_SDIST_CACHE``, default
``~/.cache/kitsession-wsgi/flask-sdist``), never copied into this repository.  The suite runs
twice in subprocesses: once as it is (the baseline: a failure there comes from the environment,
not from KitSession) and once with the plugin ``tests/flask_suite/kitsession_flask_plugin.py``.  The tests that fail only with
KitSession must be exactly the by-design differences listed in docs/flask.md
("Differences from Flask's cookie session").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdist_suites import run_suite, unpacked_sdist

HERE = Path(__file__).resolve().parent
#: Flask tests that fail with KitSession by design, each explained in docs/flask.md.
BY_DESIGN = {
    # KitSession keeps SameSite=Strict where Flask sends no SameSite attribute.
    "tests.test_basic::test_session_using_samesite_attribute",
}


def test_flask_suite_passes_with_kitsession_except_the_documented_differences(tmp_path: Path) -> None:
    root = unpacked_sdist("flask", tmp_path, cache_env="KITSESSION_FLASK_SDIST_CACHE", cache_name="flask-sdist")

    baseline = run_suite(root, "baseline", tmp_path)
    with_kitsession = run_suite(root, "kitsession", tmp_path)

    assert with_kitsession.total == baseline.total and baseline.total > 300, (
        with_kitsession.total, baseline.total)
    assert baseline.apps_with_kitsession == 0 and with_kitsession.apps_with_kitsession > 100
    assert len(baseline.failed) < 10, f"Flask's suite is broken in this environment: {sorted(baseline.failed)}"
    only_with_kitsession = with_kitsession.failed - baseline.failed
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
