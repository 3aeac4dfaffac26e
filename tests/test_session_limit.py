"""``max_sessions_per_user``: at most N live sessions per user, the least recently active
others removed by a login beyond N (signal ``session_evicted``), under concurrent logins
of one user on every store (the argument is in ``kitsession_wsgi._session_limit``).

"The last login" is defined by the clock: every session's linking write reads the
manager's clock once (its ``updated_at``), and the tests' clock hands out strictly
increasing readings, so the last login is the session with the largest ``updated_at``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import ConfigurationError, MemoryStore, SessionManager, SessionRecord, SessionStore, signals

from session_helpers import live_records
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)

USER = 7
KEYS = "limit-test-key-" * 3
WAIT = 15.0


class StepClock:
    """Real time, but every reading strictly after the one before (thread-safe)."""

    def __init__(self) -> None:
        self._base = time.time()
        self._steps = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._base + next(self._steps) * 0.001


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


def manager_for(store: SessionStore, limit: int | None, clock: Any = None) -> SessionManager:
    return SessionManager(store, keys=KEYS, max_sessions_per_user=limit, clock=clock or StepClock())


def live_handles(store: SessionStore, user_id: int = USER) -> set[str]:
    return {record.key for record in live_records(store) if record.user_id == user_id}


def evictions(manager: SessionManager) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def receiver(sender: object, **extra: Any) -> None:
        sent.append(extra)

    signals.session_evicted.connect(receiver, sender=manager, weak=False)
    return sent


# -- the option --------------------------------------------------------------------------


def test_no_limit_by_default() -> None:
    manager = SessionManager(MemoryStore(), keys=KEYS)
    assert manager.max_sessions_per_user is None
    for _ in range(5):
        manager.create_session(user_id=USER)
    assert len(live_handles(manager.store)) == 5


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_a_bad_limit_is_a_configuration_error_naming_it(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_sessions_per_user"):
        SessionManager(MemoryStore(), keys=KEYS, max_sessions_per_user=bad)


def test_the_signal_is_exported() -> None:
    assert "session_evicted" in signals.__all__


# -- the basic cases -----------------------------------------------------------------------


def test_one_session_per_user_a_second_login_ends_the_first() -> None:
    manager = manager_for(MemoryStore(), 1)
    sent = evictions(manager)
    first = manager.create_session(user_id=USER)
    other_user = manager.create_session(user_id=USER + 1)
    second = manager.create_session(user_id=USER)
    assert live_handles(manager.store) == {second.handle}
    assert live_handles(manager.store, USER + 1) == {other_user.handle}
    assert sent == [{"handle": first.handle, "user_id": USER}]
    assert manager.get_session(first.id or "") is None


def test_two_sessions_a_third_login_evicts_the_least_recently_active() -> None:
    manager = manager_for(MemoryStore(), 2)
    sent = evictions(manager)
    older = manager.create_session(user_id=USER, data={"n": 1})
    newer = manager.create_session(user_id=USER, data={"n": 2})
    # The older session is used again: the newer one is now the least recently active.
    active = manager.get_session(older.id or "")
    assert active is not None
    manager.set_session(active, {"n": 3})
    third = manager.create_session(user_id=USER)
    assert live_handles(manager.store) == {older.handle, third.handle}
    assert sent == [{"handle": newer.handle, "user_id": USER}]


def test_anonymous_sessions_are_not_limited() -> None:
    manager = manager_for(MemoryStore(), 1)
    for n in range(3):
        manager.create_session(data={"n": n})
    assert len([r for r in live_records(manager.store) if r.user_id is None]) == 3


def test_a_login_by_rotation_counts() -> None:
    """A stored anonymous session that gains its user (rotated to a new id) is a login."""
    manager = manager_for(MemoryStore(), 1)
    sent = evictions(manager)
    first = manager.create_session(user_id=USER)
    browsing = manager.create_session(data={"cart": [1]})
    loaded = manager.get_session(browsing.id or "")
    assert loaded is not None
    loaded.user_id = USER
    manager.commit(loaded)
    assert loaded.handle != browsing.handle  # rotated on login
    assert live_handles(manager.store) == {loaded.handle}
    assert sent == [{"handle": first.handle, "user_id": USER}]


def test_a_login_without_rotation_counts() -> None:
    manager = SessionManager(MemoryStore(), keys=KEYS, max_sessions_per_user=1, clock=StepClock(),
                             rotate_on_user_change=False)
    first = manager.create_session(user_id=USER)
    browsing = manager.create_session(data={"cart": [1]})
    loaded = manager.get_session(browsing.id or "")
    assert loaded is not None
    loaded.user_id = USER
    manager.commit(loaded)
    assert loaded.handle == browsing.handle
    assert live_handles(manager.store) == {browsing.handle}
    assert first.handle not in live_handles(manager.store)


# -- concurrent logins, on every store ------------------------------------------------------


def concurrent_logins(manager: SessionManager, count: int) -> list[Any]:
    barrier = threading.Barrier(count)
    sessions: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def login() -> None:
        try:
            barrier.wait(WAIT)
            session = manager.create_session(user_id=USER, data={"id": USER})
            with lock:
                sessions.append(session)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=login) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    return sessions


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_eight_concurrent_logins_leave_the_newest_n(store: SessionStore, limit: int) -> None:
    manager = manager_for(store, limit)
    sent = evictions(manager)
    for _round in range(3):
        manager.remove_all_sessions_for_user(USER)
        sent.clear()
        sessions = concurrent_logins(manager, 8)
        newest = sorted(sessions, key=lambda s: (s.updated_at, s.handle), reverse=True)
        live = live_handles(store)
        assert len(live) <= limit
        assert newest[0].handle in live  # the last login survives
        # In fact exactly the newest N survive: every listing ranks them the same way.
        assert live == {s.handle for s in newest[:limit]}
        assert sorted(e["handle"] for e in sent) == sorted(s.handle for s in newest[limit:])


class PausingStore:
    """A pass-through store that stops the first login right after one step until released.

    ``pause_after``: ``"insert"`` (its record is stored, the user's sessions not listed
    yet) or ``"listing"`` (listed, nothing removed yet).
    """

    def __init__(self, inner: SessionStore, pause_after: str) -> None:
        self.inner = inner
        self.pause_after: str | None = pause_after
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.first = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _stop(self, step: str) -> None:
        if self.pause_after == step and threading.get_ident() == self.first:
            self.pause_after = None
            self.paused.set()
            assert self.resume.wait(WAIT), "the test never resumed the paused login"

    def create(self, record: SessionRecord) -> bool:
        created = self.inner.create(record)
        if record.user_id is not None:
            self._stop("insert")
        return created

    def get_all_for_user(self, user_id: Any) -> list[SessionRecord]:
        records = self.inner.get_all_for_user(user_id)
        self._stop("listing")
        return records


@pytest.mark.parametrize("pause_after", ["insert", "listing"])
@pytest.mark.parametrize("limit", [1, 2])
def test_a_paused_login_and_a_second_one(store: SessionStore, pause_after: str, limit: int) -> None:
    manager = manager_for(store, limit)
    earlier = [manager.create_session(user_id=USER) for _ in range(limit)]
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def first_login() -> None:
        pausing.first = threading.get_ident()
        try:
            results["first"] = manager.create_session(user_id=USER)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    pausing = PausingStore(store, pause_after)
    pausing.first = -1
    manager.store = pausing  # type: ignore[misc]
    thread = threading.Thread(target=first_login)
    thread.start()
    try:
        assert pausing.paused.wait(WAIT), "the first login never reached the step to pause at"
        results["second"] = manager.create_session(user_id=USER)
    finally:
        pausing.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert not errors, errors
    first, second = results["first"], results["second"]
    assert second.updated_at > first.updated_at
    live = live_handles(store)
    assert len(live) <= limit
    assert second.handle in live  # the last login survives
    expected = sorted([*earlier, first, second], key=lambda s: (s.updated_at, s.handle), reverse=True)[:limit]
    assert live == {s.handle for s in expected}


# -- under Flask-Login: the Flask key and the login path ------------------------------------


def test_flask_login_logins_beyond_the_limit_sign_out_the_oldest_browser() -> None:
    pytest.importorskip("flask_login")
    from flask import Flask
    from flask_login import LoginManager, UserMixin, current_user, login_user
    from werkzeug.test import Client

    from kitsession_wsgi.flask import KitSession, get_manager

    class User(UserMixin):
        def __init__(self, user_id: str) -> None:
            self.id = user_id

    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", SESSION_COOKIE_SECURE=False, KITSESSION_MAX_SESSIONS_PER_USER=1)
    KitSession(app, MemoryStore())
    LoginManager(app).user_loader(lambda user_id: User(user_id))

    @app.post("/login")
    def login() -> str:
        login_user(User("7"))
        return "ok"

    @app.get("/me")
    def me() -> str:
        return str(current_user.get_id()) if current_user.is_authenticated else "anonymous"

    first, second = Client(app), Client(app)
    assert first.post("/login").status_code == 200
    assert first.get("/me").text == "7"
    with app.app_context():
        assert get_manager().max_sessions_per_user == 1
        sent = evictions(get_manager())
    assert second.post("/login").status_code == 200
    assert second.get("/me").text == "7"
    assert first.get("/me").text == "anonymous"  # the first browser was signed out
    assert len(sent) == 1
    with app.app_context():
        assert len(get_manager().get_sessions_for_user("7")) == 1


def test_a_session_active_between_a_login_and_its_check_outranks_it_with_one_allowed() -> None:
    """The price of one shared ranking (see ``kitsession_wsgi._session_limit``): the login
    that ranks below the limit is the one removed, and sends no cookie for a dead id."""
    manager = manager_for(MemoryStore(), 1)
    used = manager.create_session(user_id=USER, data={"n": 1})
    pausing = PausingStore(manager.store, "insert")
    results: dict[str, Any] = {}

    def login() -> None:
        pausing.first = threading.get_ident()
        results["login"] = manager.create_session(user_id=USER)

    pausing.first = -1
    manager.store = pausing  # type: ignore[misc]
    thread = threading.Thread(target=login)
    thread.start()
    try:
        assert pausing.paused.wait(WAIT)
        active = manager.get_session(used.id or "")
        assert active is not None
        manager.set_session(active, {"n": 2})  # written after the login's insert
    finally:
        pausing.resume.set()
        thread.join(WAIT)
    login_session = results["login"]
    assert live_handles(manager.store) == {used.handle}
    assert manager.get_session(login_session.id or "") is None
    assert login_session.is_destroyed
