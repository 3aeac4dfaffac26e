"""Flask-WTF's own test suite, with ``KitSession(app, store=MemoryStore())`` on every app it creates.

Each suite comes from the sdist of the INSTALLED version (``tests/sdist_suites.py``), runs once
without KitSession (the baseline) and once with the plugin
``tests/flask_suite/kitsession_flask_plugin.py``.  Flask-WTF keeps its CSRF token in the session
and its tests build apps as ``class App(Flask): secret_key = ...``.  No test fails only with
KitSession: the by-design list is empty, and a new failure names itself here.  (Flask-Login's
suite has its own module, with its by-design remember-me list.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdist_suites import run_suite, unpacked_sdist

#: distribution -> (the fewest tests its suite has, tests failing with KitSession by design).
SUITES: dict[str, tuple[int, set[str]]] = {
    "flask-wtf": (80, set()),
}


@pytest.mark.parametrize("distribution", sorted(SUITES))
def test_suite_passes_with_kitsession_except_the_documented_differences(distribution: str,
                                                                       tmp_path: Path) -> None:
    fewest, by_design = SUITES[distribution]
    root = unpacked_sdist(distribution, tmp_path)

    baseline = run_suite(root, "baseline", tmp_path)
    with_kitsession = run_suite(root, "kitsession", tmp_path)

    assert with_kitsession.total == baseline.total and baseline.total >= fewest, (
        with_kitsession.total, baseline.total)
    assert baseline.apps_with_kitsession == 0
    assert with_kitsession.apps_with_kitsession >= fewest // 2, "the plugin gave KitSession to too few apps"
    assert len(baseline.failed) < 5, f"{distribution}'s suite is broken here: {sorted(baseline.failed)}"
    only_with_kitsession = with_kitsession.failed - baseline.failed
    assert only_with_kitsession == by_design, {
        "unexpected failures": sorted(only_with_kitsession - by_design),
        "expected differences that passed": sorted(by_design - only_with_kitsession),
    }
