"""A store outage in any store call a request can make: 503 + Retry-After, never a logout, never a 500.

One store double (:class:`session_helpers.FlakyStore`) fails exactly one method
of the store contract at a time; each case is a request that reaches that
method, sent through the WSGI middleware and through the Flask extension.  The
client must get a 503 with the configured ``Retry-After``, no session cookie
(neither a new one nor a clearing one), the store must hold what it held before
(but for ``release_lock``, which fails after the save), and once the store is
back the session must still be there, signed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from werkzeug.test import TestResponse

from adapter_apps import ADAPTERS, USER, read
from client_helpers import log_in, session_cookies
from clocks import FakeClock
from session_helpers import STORE_METHODS, FlakyStore, live_records

RETRY_AFTER = 7
IDLE_TIMEOUT = 600  # the default touch interval is a tenth of it


@dataclass(frozen=True)
class Case:
    """A request (``path``) that reaches store method ``method``."""

    method: str
    path: str
    #: let time pass first, so that the request is due to touch the session
    touch_due: bool = False


CASES = [
    Case("get", "/read"),
    Case("create", "/login"),  # a re-login: the new session cannot be stored
    Case("set", "/set?k=v"),
    Case("touch", "/read", touch_due=True),
    Case("delete", "/logout"),
    Case("delete_all_for_user", "/sign-out-others"),
    Case("get_all_for_user", "/devices"),
    Case("get_all", "/all-sessions"),
    Case("purge_expired", "/purge"),
    Case("acquire_lock", "/locked-counter"),
    Case("release_lock", "/locked-counter"),
]


def test_the_cases_reach_every_method_of_the_store_contract() -> None:
    assert sorted(case.method for case in CASES) == sorted(STORE_METHODS)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.method}-{case.path.strip('/')}")
def test_an_outage_in_any_store_call_answers_503_and_logs_nobody_out(
    adapter: str, case: Case, clock: FakeClock
) -> None:
    store = FlakyStore()
    client = ADAPTERS[adapter](store, clock=clock, idle_timeout=IDLE_TIMEOUT, retry_after=RETRY_AFTER)
    log_in(client)
    assert read(client)["user_id"] == USER
    if case.touch_due:
        clock.advance(IDLE_TIMEOUT / 2)

    records_before = live_records(store)
    store.failing = {case.method}
    response: TestResponse = client.get(case.path)
    store.failing = set()

    assert store.failures[case.method] >= 1, f"{case.path} never reached store.{case.method}"
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert session_cookies(response) == [], "an outage is neither a logout nor a new session"
    if case.method != "release_lock":  # the lock is freed after the save, so only that outage comes too late
        # (a revoke-all writes the user's revocation marker before it deletes: not a session)
        assert live_records(store) == records_before, "a request the store failed changed what it holds"
    assert read(client)["user_id"] == USER, "the store came back and the session is still signed in"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_both_adapters_report_an_outage_alike(adapter: str, clock: FakeClock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """One error line per outage and one when it ends (not one per request); a signal per failed request."""
    from kitsession_wsgi import signals

    store = FlakyStore()
    client = ADAPTERS[adapter](store, clock=clock, retry_after=RETRY_AFTER)
    log_in(client)
    caplog.set_level("WARNING", logger="kitsession_wsgi")
    heard: list[object] = []

    def listener(sender: object, **extra: object) -> None:
        heard.append(extra["error"])

    def lines(text: str, level: str) -> int:
        return sum(1 for r in caplog.records if r.levelname == level and text in r.getMessage())

    signals.store_unavailable.connect(listener)
    try:
        store.failing = {"get"}
        assert [client.get("/read").status_code for _ in range(3)] == [503, 503, 503]
        assert lines("session store unavailable", "ERROR") == 1 and len(heard) == 3
        store.failing = set()
        assert read(client)["user_id"] == USER
        assert lines("reachable again", "WARNING") == 1
        store.failing = {"get"}
        assert client.get("/read").status_code == 503
        assert lines("session store unavailable", "ERROR") == 2 and len(heard) == 4
    finally:
        signals.store_unavailable.disconnect(listener)
        store.failing = set()
