"""Removals along a session's lineage, on every store.

* A logout presented with an id a login replaced moments ago (the anonymous pre-login
  id) must not log out the signed-in session it became: knowing a pre-login id is no
  credential of the new session.  The same user's ``regenerate`` keeps its meaning: a
  logout sent with the old cookie ends the new session too.
* After ``regenerate(session, grace=...)``, logging out or revoking the NEW session ends
  the old id's grace period as well: no cookie of the lineage stays signed in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import SessionManager, SessionRecord, SessionStore

from session_helpers import live_records
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)

USER = 7


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


@pytest.fixture
def manager(store: SessionStore) -> SessionManager:
    return SessionManager(store, keys="k", secure=False)


def cookie_of(manager: SessionManager, session: Any) -> dict[str, str]:
    return {"Cookie": f"session={manager.set_session_cookie(session).split(';')[0].split('=', 1)[1]}"}


def live_handles(store: SessionStore) -> set[str]:
    return {record.key for record in live_records(store)}


def test_a_logout_with_the_pre_login_id_does_not_log_out_the_signed_in_session(
    manager: SessionManager, store: SessionStore
) -> None:
    anonymous = manager.create_session(data={"cart": [1]})
    pre_login = cookie_of(manager, anonymous)
    signed_in = manager.new_session(manager.initialize_session(pre_login), user_id=USER, data={"id": USER})
    manager.commit(signed_in)
    assert signed_in.handle is not None and not signed_in.is_destroyed

    stale = manager.initialize_session(pre_login)  # within the replaced marker's minute
    assert stale.is_new
    manager.remove_session(stale)
    assert live_handles(store) == {signed_in.handle}, "the pre-login id logged the user out"
    assert manager.initialize_session(cookie_of(manager, signed_in)).user_id == USER


def test_a_logout_with_another_users_old_id_does_not_log_out_the_new_user(
    manager: SessionManager, store: SessionStore
) -> None:
    first = manager.create_session(user_id=USER, data={"id": USER})
    old = cookie_of(manager, first)
    second = manager.new_session(manager.initialize_session(old), user_id=USER + 1, data={"id": USER + 1})
    manager.commit(second)
    manager.remove_session(manager.initialize_session(old))
    assert live_handles(store) == {second.handle}


def test_a_logout_with_the_old_cookie_of_the_same_users_regenerate_still_ends_the_new_session(
    manager: SessionManager, store: SessionStore
) -> None:
    session = manager.create_session(user_id=USER, data={"id": USER})
    old = cookie_of(manager, session)
    manager.regenerate(session)
    assert session.handle in live_handles(store)
    manager.remove_session(manager.initialize_session(old))
    assert live_handles(store) == set()


@pytest.mark.parametrize("removal", ["logout", "remove-by-handle", "remove-by-handle-for-the-user"])
def test_removing_the_new_session_ends_the_grace_period_of_the_old_id(
    manager: SessionManager, store: SessionStore, removal: str
) -> None:
    session = manager.create_session(user_id=USER, data={"id": USER})
    old = cookie_of(manager, session)
    old_handle = session.handle
    manager.regenerate(session, grace=30)
    new = cookie_of(manager, session)
    assert manager.initialize_session(old).handle == old_handle  # the grace period: still served
    if removal == "logout":
        manager.remove_session(manager.initialize_session(new))
    else:
        assert session.handle is not None
        manager.remove_session_by_handle(session.handle, user_id=USER if removal.endswith("user") else None)
    assert manager.initialize_session(old).is_new, "the old cookie stayed signed in for the grace period"
    assert live_handles(store) == set()


def test_removing_the_newest_of_a_chain_of_graced_regenerates_ends_them_all(
    manager: SessionManager, store: SessionStore
) -> None:
    session = manager.create_session(user_id=USER, data={"id": USER})
    cookies = [cookie_of(manager, session)]
    for _ in range(3):
        manager.regenerate(session, grace=30)
        cookies.append(cookie_of(manager, session))
    assert len(live_handles(store)) == 4
    manager.remove_session(manager.initialize_session(cookies[-1]))
    assert all(manager.initialize_session(cookie).is_new for cookie in cookies)
    assert live_handles(store) == set()


def test_without_a_removal_the_grace_period_still_serves_the_old_cookie(
    manager: SessionManager, store: SessionStore
) -> None:
    """The control: a graced regenerate keeps both ids live until something ends them."""
    session = manager.create_session(user_id=USER, data={"id": USER})
    old = cookie_of(manager, session)
    manager.regenerate(session, grace=30)
    assert manager.initialize_session(old).user_id == USER
    assert manager.initialize_session(cookie_of(manager, session)).user_id == USER


class PauseAfterNewRecord:
    """A pass-through store that stops a graced ``regenerate`` right after it inserted the new
    record (before the "graced" marker names the old id) until the test resumes it."""

    def __init__(self, inner: SessionStore, old_key: str) -> None:
        self.inner = inner
        self.old_key = old_key
        self.new_key: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create(self, record: SessionRecord) -> bool:
        created = self.inner.create(record)
        if self.new_key is None and record.user_id == USER and record.key != self.old_key:
            self.new_key = record.key
            self.paused.set()
            assert self.resume.wait(15), "never resumed"
        return created


def test_a_removal_of_the_new_session_while_the_graced_move_runs_still_ends_the_old_id(store: SessionStore) -> None:
    plain = SessionManager(store, keys="k", secure=False)
    session = plain.create_session(user_id=USER, data={"id": USER})
    assert session.handle is not None
    old = cookie_of(plain, session)
    pausing = PauseAfterNewRecord(store, session.handle)
    manager = SessionManager(pausing, keys="k", secure=False)  # type: ignore[arg-type]
    moving = manager.initialize_session(old)
    thread = threading.Thread(target=lambda: manager.regenerate(moving, grace=30))
    thread.start()
    try:
        assert pausing.paused.wait(15)
        assert pausing.new_key is not None
        assert plain.remove_session_by_handle(pausing.new_key, user_id=USER)
    finally:
        pausing.resume.set()
        thread.join(15)
    assert not thread.is_alive()
    assert plain.initialize_session(old).is_new, "the old id outlived the removal of its successor"
    assert live_handles(store) == set()
