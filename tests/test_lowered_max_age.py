"""Lowering ``max_age`` takes effect at once for sessions already stored, on every store and adapter.

A record keeps the ``expires_at`` computed under the old, longer ``max_age``;
the core must still refuse to serve or list a session older than the new
``max_age`` (``created_at + max_age``), while a younger one stays served and
listed.  Purging such sessions is a known limitation (a strict xfail in
``test_expiry.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import SessionStore

from adapter_apps import ADAPTERS, USER, handles, read
from client_helpers import log_in, session_cookies
from clocks import FakeClock
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (fixture)

LONG, SHORT = 1000, 200


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:  # noqa: F811
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


def logged_in_cookie(client: Any) -> str:
    """Log in through ``client`` (a browser of its own); the ``Cookie`` header of the new session."""
    (cookie,) = session_cookies(log_in(client))
    return cookie.request_header


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_lowered_max_age_neither_serves_nor_lists_older_sessions(
    store: SessionStore, clock: FakeClock, adapter: str
) -> None:
    before = ADAPTERS[adapter](store, clock=clock, max_age=LONG)
    old = logged_in_cookie(ADAPTERS[adapter](store, clock=clock, max_age=LONG))
    clock.advance(150)
    young = logged_in_cookie(ADAPTERS[adapter](store, clock=clock, max_age=LONG))
    clock.advance(100)  # old: 250 s, young: 100 s; both live under the long max_age
    assert len(handles(before, "/devices")) == 2

    after = ADAPTERS[adapter](store, clock=clock, max_age=SHORT)
    listed_for_user = handles(after, "/devices")
    listed = handles(after, "/all-sessions")
    assert len(listed_for_user) == 1, "a session older than the lowered max_age is listed for its user"
    assert listed == listed_for_user, "a session older than the lowered max_age is listed"
    assert read(after, old)["user_id"] is None, "a session older than the lowered max_age is served"
    assert read(after, young)["user_id"] == USER
    assert handles(after, "/devices") == listed_for_user
