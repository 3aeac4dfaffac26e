"""``SessionManager.set_session_cookie``'s ``persistent`` and ``expires_at`` keywords (issue 14)."""

from __future__ import annotations

from typing import Any

from kitsession_wsgi import MemoryStore, SessionManager

from session_helpers import parse_set_cookie


def test_persistent_false_gives_a_browser_session_cookie(clock: Any) -> None:
    manager = SessionManager(MemoryStore(), keys="k", max_age=600, clock=clock)
    session = manager.create_session(data={"a": 1})
    cookie = parse_set_cookie(manager.set_session_cookie(session, persistent=False))
    assert "max-age" not in cookie.attributes and "expires" not in cookie.attributes
    assert cookie.value == parse_set_cookie(manager.set_session_cookie(session)).value
    assert cookie.attributes["path"] == "/" and cookie.attributes["samesite"] == "Strict"


def test_expires_at_replaces_the_cookie_expiry(clock: Any) -> None:
    manager = SessionManager(MemoryStore(), keys="k", max_age=600, idle_timeout=60, clock=clock)
    session = manager.create_session(data={"a": 1})
    assert parse_set_cookie(manager.set_session_cookie(session)).max_age == 600, "absolute, without rolling"
    cookie = parse_set_cookie(manager.set_session_cookie(session, expires_at=session.expires_at))
    assert cookie.max_age == 60 and cookie.expires == clock.now + 60
