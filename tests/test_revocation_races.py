"""Revocation wins every race (rule 9 in docs/design.rst), on every store.

A session moved to a new id (``regenerate``, a login through ``new_session(previous)``,
the rotation when its user changes) must never outlive a removal that runs meanwhile:
``remove_all_sessions_for_user``, ``remove_session`` (a logout), removal by handle.

Each race is tried twice: widened, with a pass-through store that stops the move right
after one of its steps until the removal has finished; and natural, with one thread
moving a session in a loop while another removes once, over many rounds.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import SessionManager, SessionRecord, SessionStore, SetResult

from session_helpers import live_records
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)

USER = 7
WAIT = 15.0


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


class PausingStore:
    """A pass-through store that stops one move at a chosen step until released.

    ``pause_after``: ``"insert"`` stops right after the new record is created (before
    the old one is retired); ``"retire"`` right after the old record is retired (deleted,
    or its lifetime capped by a grace ``set``).
    """

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.pause_after: str | None = None
        self.old_key: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _stop(self, step: str) -> None:
        if self.pause_after == step:
            self.pause_after = None
            self.paused.set()
            assert self.resume.wait(WAIT), "the test never resumed the paused move"

    def create(self, record: SessionRecord) -> bool:
        created = self.inner.create(record)
        if record.user_id is not None and record.key != self.old_key:
            self._stop("insert")
        return created

    def delete(self, key: str) -> bool:
        deleted = self.inner.delete(key)
        if key == self.old_key:
            self._stop("retire")
        return deleted

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        result = self.inner.set(record, expected_version)
        if record.key == self.old_key and result is SetResult.SAVED:
            self._stop("retire")
        return result


def survivors(store: SessionStore) -> list[SessionRecord]:
    """Live session records that still name the user (markers are not sessions)."""
    return [record for record in live_records(store) if record.user_id == USER]


def run_paused(pausing: PausingStore, move: Callable[[], Any], removal: Callable[[], Any]) -> None:
    """Start ``move`` in a thread, run ``removal`` while it is paused, then let it finish."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            move()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert pausing.paused.wait(WAIT), "the move never reached the step to pause at"
        removal()
    finally:
        pausing.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive(), "the move did not finish"
    assert not errors, errors


def logged_in(manager: SessionManager) -> tuple[Any, str]:
    session = manager.create_session(user_id=USER, data={"id": USER, "cart": [1, 2]})
    assert session.id is not None and session.handle is not None
    return session, session.handle


MOVES = ["regenerate", "regenerate-with-grace", "login-replacing-it"]
REMOVALS = ["revoke-all", "revoke-all-but-another", "logout", "logout-with-the-old-cookie", "remove-by-handle",
            "remove-by-handle-for-the-user"]


def _move(manager: SessionManager, session: Any, how: str) -> Callable[[], Any]:
    if how == "regenerate":
        return lambda: manager.regenerate(session)
    if how == "regenerate-with-grace":
        return lambda: manager.regenerate(session, grace=5)

    def login() -> None:
        fresh = manager.new_session(session, user_id=USER, data={"id": USER, "fresh": True})
        manager.commit(fresh)

    return login


def _removal(manager: SessionManager, how: str, old_cookie: str, handle: str) -> Callable[[], Any]:
    if how == "revoke-all":
        return lambda: manager.remove_all_sessions_for_user(USER)
    if how == "revoke-all-but-another":
        keep = manager.create_session(user_id=USER + 1)  # another user's session, to except
        return lambda: manager.remove_all_sessions_for_user(USER, keep)
    if how == "logout":
        # another request of the same browser, loaded before the move started
        other_request = manager.initialize_session({"Cookie": old_cookie})
        assert other_request.handle == handle
        return lambda: manager.remove_session(other_request)
    if how == "logout-with-the-old-cookie":
        # a logout sent with the old cookie while the move was under way
        return lambda: manager.remove_session(manager.initialize_session({"Cookie": old_cookie}))
    if how == "remove-by-handle":
        return lambda: manager.remove_session_by_handle(handle)
    return lambda: manager.remove_session_by_handle(handle, user_id=USER)


@pytest.mark.parametrize("pause_after", ["insert", "retire"])
@pytest.mark.parametrize("removal_kind", REMOVALS)
@pytest.mark.parametrize("move_kind", MOVES)
def test_a_move_paused_at_its_dangerous_step_never_outlives_a_removal(
    store: SessionStore, move_kind: str, removal_kind: str, pause_after: str
) -> None:
    pausing = PausingStore(store)
    manager = SessionManager(pausing, keys="k", secure=False)  # type: ignore[arg-type]
    session, handle = logged_in(manager)
    old_cookie = f"session={manager.set_session_cookie(session).split(';')[0].split('=', 1)[1]}"
    removal = _removal(manager, removal_kind, old_cookie, handle)
    pausing.old_key, pausing.pause_after = handle, pause_after
    run_paused(pausing, _move(manager, session, move_kind), removal)
    assert survivors(store) == [], f"a moved session outlived {removal_kind}"


def test_the_move_survives_when_nothing_removes_it(store: SessionStore) -> None:
    """The control: the same moves with no removal keep exactly one live session."""
    manager = SessionManager(store, keys="k", secure=False)
    for how in MOVES:
        session, old_handle = logged_in(manager)
        _move(manager, session, how)()
        live = {record.key for record in survivors(store)}
        # the new record, plus the old one for the few seconds of a grace period
        expected = {old_handle} if how == "regenerate-with-grace" else set()
        assert len(live - expected) == 1 and old_handle not in live - expected
        manager.remove_all_sessions_for_user(USER)
        assert survivors(store) == []


#: rounds of the natural race per store kind (the SQL servers are slower per operation)
ROUNDS = {"memory": 200, "sqlite": 40, "postgresql": 40, "mariadb": 40, "memcached": 60, "redis": 60, "redis-cluster": 40}


@pytest.mark.parametrize("removal_kind", ["revoke-all", "remove-by-handle-for-the-user", "logout"])
def test_a_client_looping_regenerate_never_beats_one_removal(
    store: SessionStore, removal_kind: str, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["store"]
    manager = SessionManager(store, keys="k", secure=False)
    rng = random.Random(1234)
    for round_number in range(ROUNDS[kind]):
        session, handle = logged_in(manager)
        other_request = manager.initialize_session(
            {"Cookie": f"session={manager.set_session_cookie(session).split(';')[0].split('=', 1)[1]}"})
        stop = threading.Event()
        errors: list[str] = []

        def loop(session: Any = session) -> None:
            try:
                deadline = time.monotonic() + WAIT
                while not stop.is_set() and not session.is_destroyed and time.monotonic() < deadline:
                    manager.regenerate(session)
            except BaseException:  # noqa: BLE001 - reported below, with where it came from
                errors.append(traceback.format_exc())

        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(rng.uniform(0, 0.003))  # where in the loop the removal lands: varied on purpose
        if removal_kind == "revoke-all":
            manager.remove_all_sessions_for_user(USER)
        elif removal_kind == "logout":
            manager.remove_session(other_request)
        else:
            manager.remove_session_by_handle(handle, user_id=USER)
        # Once the removal has returned the session is over: let the loop try to revive it
        # for a few more moves before stopping it.
        time.sleep(0.002)
        stop.set()
        thread.join(WAIT)
        assert not thread.is_alive() and not errors, "\n".join(errors)
        left = survivors(store)
        assert left == [], (f"round {round_number}: the regenerated session survived {removal_kind}: {left}; "
                            f"the loop's session: {session!r}")


class ListThenDeleteStore(PausingStore):
    """A store whose removal of a user's sessions is not atomic: it lists them, waits
    (here: until a whole move ran), then deletes what it listed, as a third-party store
    that implements the contract with two queries may.  The core must be safe over it."""

    def __init__(self, inner: SessionStore, move: Callable[[], Any]) -> None:
        super().__init__(inner)
        self.move = move

    def delete_all_for_user(self, user_id: Any, except_key: str | None = None) -> int:
        listed = [record.key for record in self.inner.get_all_for_user(user_id) if record.key != except_key]
        self.move()  # a whole move lands between the listing and the deletes
        return sum(self.inner.delete(key) for key in listed)


@pytest.mark.parametrize("move_kind", MOVES)
def test_a_move_inside_a_non_atomic_revoke_all_undoes_itself(store: SessionStore, move_kind: str) -> None:
    """The revocation marker: revoke-all moves it before listing, the move reads it before and after."""
    moves: list[Callable[[], Any]] = []
    wrapped = ListThenDeleteStore(store, lambda: moves[0]())
    manager = SessionManager(wrapped, keys="k", secure=False)  # type: ignore[arg-type]
    session, _ = logged_in(manager)
    moves.append(_move(manager, session, move_kind))
    manager.remove_all_sessions_for_user(USER)
    assert survivors(store) == [], "the move that ran inside the revoke-all survived it"


def test_the_device_that_signed_out_the_others_keeps_moving_freely(store: SessionStore) -> None:
    """The revocation marker spares the current device's session, and each of its successors."""
    manager = SessionManager(store, keys="k", secure=False)
    this_device, _ = logged_in(manager)
    other_device, _ = logged_in(manager)
    assert manager.remove_all_sessions_for_user(USER, this_device) == 1
    assert manager.get_session(other_device.id) is None  # type: ignore[arg-type]
    for _ in range(3):
        old_id = this_device.id
        manager.regenerate(this_device)
        assert this_device.id != old_id and not this_device.is_destroyed
        assert manager.get_session(this_device.id) is not None  # type: ignore[arg-type]
    assert [record.key for record in survivors(store)] == [this_device.handle]
    # and a new login after the revocation is a session like any other
    later, _ = logged_in(manager)
    manager.regenerate(later)
    assert manager.get_session(later.id) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ["new-session"])
def test_a_login_whose_anonymous_predecessor_vanished_stands(store: SessionStore, route: str) -> None:
    """``with_new_session``: a fresh login whose anonymous predecessor was evicted, expired or
    removed meanwhile leaves nothing to revoke, so it stands.  (A login by writing the user
    into a session that was removed meanwhile stays removed, as any save of it would:
    test_concurrency's removed-session tests.)"""
    manager = SessionManager(store, keys="k", secure=False)
    anonymous = manager.create_session(data={"csrf": "t"})
    header = manager.set_session_cookie(anonymous).split(";", 1)[0]
    loaded = manager.initialize_session({"Cookie": header})
    store.delete(anonymous.handle)  # evicted meanwhile
    if route == "new-session":
        login = manager.new_session(loaded, user_id=USER, data={"id": USER})
    else:
        login = loaded
        login.data["user_id"] = USER
    manager.commit(login)
    assert not login.is_destroyed and manager.get_session(login.id) is not None  # type: ignore[arg-type]
    assert [record.key for record in survivors(store)] == [login.handle]


def test_a_long_chain_removal_ends_the_lineage_so_later_moves_undo_themselves(store: SessionStore) -> None:
    """The walk's last resort against a client that keeps ahead of it: past CHASE_HOPS steps it
    writes the lineage (user, created_at) into the user's revocation marker, and any move of
    that lineage checks it and undoes itself (on every store: the markers round-trip)."""
    from kitsession_wsgi._keys import revocation_key
    from kitsession_wsgi._lineage import CHASE_HOPS
    from kitsession_wsgi._markers import RevocationMarker

    manager = SessionManager(store, keys="k", secure=False)
    session, first_handle = logged_in(manager)
    bystander, _ = logged_in(manager)  # the same user's other device: not this lineage
    for _ in range(CHASE_HOPS + 4):
        manager.regenerate(session)
    assert manager.remove_session_by_handle(first_handle, user_id=USER)
    marker = store.get(revocation_key(USER))
    assert marker is not None and RevocationMarker.decode(marker.data).killed == (session.created_at,)
    assert [record.key for record in survivors(store)] == [bystander.handle]
    # A record of the ended lineage that a move still under way would carry on: it undoes itself.
    straggler = manager.create_session(user_id=USER, data={"id": USER})
    copy = SessionRecord(key=straggler.handle, data='{"id":7}', user_id=USER, created_at=session.created_at,
                         updated_at=straggler.updated_at, expires_at=straggler.expires_at, version=1)
    store.delete(straggler.handle)
    assert store.create(copy)
    moved = manager.get_session(straggler.id)  # type: ignore[arg-type]
    assert moved is not None and moved.created_at == session.created_at
    manager.regenerate(moved)
    assert moved.is_destroyed and [record.key for record in survivors(store)] == [bystander.handle]
    # The user's other sessions move freely.
    manager.regenerate(bystander)
    assert not bystander.is_destroyed and [record.key for record in survivors(store)] == [bystander.handle]
