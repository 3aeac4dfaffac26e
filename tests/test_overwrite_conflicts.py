"""``on_conflict="overwrite"`` is last-write-wins for the data, never for the user link.

A request that loaded a signed-in session and saves after a concurrent logout (one that
popped the user's key: ``session.pop("id")``, Flask's idiom) must not bring the user back,
and one that saves after the session was removed must not bring the session back: an
update-only store write, and a merge whenever the user link changed meanwhile.  The two
requests interleave deterministically (each is loaded before the other commits), on every
store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import SessionManager, SessionStore

from session_helpers import live_records
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)

USER = 7


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


@pytest.fixture
def manager(store: SessionStore) -> SessionManager:
    return SessionManager(store, keys="k", secure=False, on_conflict="overwrite")


def two_requests(manager: SessionManager) -> tuple[Any, Any, dict[str, str]]:
    session = manager.create_session(user_id=USER, data={"id": USER, "cart": [1]})
    cookie = {"Cookie": f"session={manager.set_session_cookie(session).split(';')[0].split('=', 1)[1]}"}
    return manager.initialize_session(cookie), manager.initialize_session(cookie), cookie


def test_a_stale_overwrite_does_not_bring_back_a_user_a_concurrent_logout_popped(manager: SessionManager) -> None:
    slow, logout, cookie = two_requests(manager)
    slow.data["cart"] = [1, 2]          # the slow request changes the cart
    logout.data.pop("id")               # the logout pops the user's key
    manager.commit(logout)
    assert manager.initialize_session(cookie).user_id is None
    manager.commit(slow)
    after = manager.initialize_session(cookie)
    assert after.user_id is None, "the overwrite signed the user back in"
    assert "id" not in after.data
    assert after.data["cart"] == [1, 2]  # the slow request's own change is kept


def test_a_stale_overwrite_does_not_bring_back_a_session_a_concurrent_logout_removed(
    manager: SessionManager, store: SessionStore
) -> None:
    slow, logout, cookie = two_requests(manager)
    slow.data["cart"] = [1, 2]
    manager.remove_session(logout)
    manager.commit(slow)
    assert manager.initialize_session(cookie).is_new
    assert [r for r in live_records(store) if r.user_id == USER] == []


def test_without_a_user_change_meanwhile_the_last_write_wins(manager: SessionManager) -> None:
    """The control: "overwrite" still overwrites another request's data change."""
    slow, other, cookie = two_requests(manager)
    other.data["cart"] = [9]
    other.data["note"] = "other"
    manager.commit(other)
    slow.data["cart"] = [1, 2]
    manager.commit(slow)
    after = manager.initialize_session(cookie)
    assert after.data == {"id": USER, "cart": [1, 2]} and after.user_id == USER
