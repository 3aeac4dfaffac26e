"""Flask-Login's own test suite, with ``KitSession(app, store=MemoryStore())`` on every app it creates.

As ``tests/test_flask_suite.py`` does for Flask: the tests come from the sdist of the
INSTALLED Flask-Login (downloaded and run by ``tests/sdist_suites.py``), run once without
KitSession (the baseline)
and once with ``tests/flask_suite/kitsession_flask_plugin.py``.  The tests that fail only
with KitSession must be exactly the remember-me token tests: under KitSession remember-me
is the server-side session and Flask-Login's ``remember_token`` cookie is never set nor
honoured (docs/flask-login.md, "Remember-me").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdist_suites import run_suite, unpacked_sdist

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


def test_flask_login_suite_passes_with_kitsession_except_the_remember_token_tests(tmp_path: Path) -> None:
    root = unpacked_sdist("flask-login", tmp_path)

    baseline = run_suite(root, "baseline", tmp_path)
    with_kitsession = run_suite(root, "kitsession", tmp_path)

    assert with_kitsession.total == baseline.total and baseline.total > 100, (with_kitsession.total, baseline.total)
    assert baseline.apps_with_kitsession == 0 and with_kitsession.apps_with_kitsession > 50
    assert len(baseline.failed) < 5, f"Flask-Login's suite is broken in this environment: {sorted(baseline.failed)}"
    only_with_kitsession = with_kitsession.failed - baseline.failed
    assert only_with_kitsession == BY_DESIGN, {
        "unexpected failures": sorted(only_with_kitsession - BY_DESIGN),
        "expected differences that passed": sorted(BY_DESIGN - only_with_kitsession),
    }


@pytest.mark.parametrize("test", sorted(BY_DESIGN))
def test_each_difference_is_listed_in_the_docs(test: str) -> None:
    page = (HERE.parent / "docs" / "flask-login.md").read_text(encoding="utf-8")
    assert test.split("::")[1] in page
