"""Helpers shared by the memcached and Redis store tests: counting real clients, node lookup."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from kitsession_wsgi import Session, SessionManager

from thread_helpers import run_threads


class CountingProxy:
    """Wraps a real client and records the name of every method called through it.

    Nothing is faked: every call goes to the real client and the real server.
    """

    def __init__(self, target: Any) -> None:
        self._target = target
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return counted


def cookie_for(manager: SessionManager, session: Session) -> str:
    """The ``Cookie`` request header a browser would send back for ``session``."""
    return manager.set_session_cookie(session).split(";", 1)[0]


def concurrent_logins_for_one_user(manager: SessionManager, threads: int = 8, per_thread: int = 3) -> None:
    """8 threads log one user in at once; the user's index must hold every session.

    Then "sign out everywhere else" must leave exactly the current session.
    """
    sessions: list[Session] = []
    lock = threading.Lock()

    def login(_: int) -> None:
        for n in range(per_thread):
            session = manager.create_session(user_id="shared-user", data={"n": n})
            with lock:
                sessions.append(session)

    run_threads(threads, login)
    assert len(sessions) == threads * per_thread
    listed = sorted(s.handle or "" for s in manager.get_sessions_for_user("shared-user"))
    assert listed == sorted(s.handle or "" for s in sessions)
    current = sessions[0]
    assert manager.remove_all_sessions_for_user("shared-user", current) == len(sessions) - 1
    assert [s.handle for s in manager.get_sessions_for_user("shared-user")] == [current.handle]
    for other in sessions[1:]:
        assert other.id is not None and manager.get_session(other.id) is None
    assert current.id is not None and manager.get_session(current.id) is not None


def servers_holding(addresses: Sequence[str], item_key: str) -> list[str]:
    """Which memcached servers hold ``item_key``, asked of each server directly."""
    from pymemcache.client.base import Client

    holders = []
    for address in addresses:
        client = Client(address, connect_timeout=2, timeout=2, no_delay=True)
        try:
            if client.get(item_key) is not None:
                holders.append(address)
        finally:
            client.close()
    return holders
