"""MigratingStore: sessions move from one store to another while the application serves.

The contract suite runs on several pairs twice: as the store is used (new records go to
``target``), and with every record created in ``source`` as if stored before the
migration began, so each contract rule is checked on records that still have to move
(and the concurrency tests move one record from eight threads at once).  Then: the
markers the core keeps, ``drain()``, a migration under load through a ``SessionManager``,
and a move paused at its dangerous step while a removal runs.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import MemoryStore, Session, SessionManager, SessionStore
from kitsession_wsgi.manager import session_key
from kitsession_wsgi.stores.base import SessionRecord, SetResult, UserId
from kitsession_wsgi.stores.migrating import DrainCounts, MigratingStore
from kitsession_wsgi.testing import StoreContract, make_record

from session_helpers import live_records
from store_kinds import open_store, store_servers  # noqa: F401 (store_servers is a fixture)
from thread_helpers import run_threads

WAIT = 15.0


class DictStore(SessionStore):
    """A third-party store in a few lines: a dict under a lock, no session locks."""

    def __init__(self) -> None:
        self.records: dict[str, SessionRecord] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> SessionRecord | None:
        return self.records.get(key)

    def create(self, record: SessionRecord) -> bool:
        with self.lock:
            return self.records.setdefault(record.key, record) is record

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        with self.lock:
            current = self.records.get(record.key)
            if current is None:
                return SetResult.MISSING
            if current.version != expected_version:
                return SetResult.CONFLICT
            self.records[record.key] = record
            return SetResult.SAVED

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        with self.lock:
            current = self.records.get(key)
            if current is None:
                return False
            self.records[key] = current.with_changes(updated_at=updated_at, expires_at=expires_at)
            return True

    def delete(self, key: str) -> bool:
        with self.lock:
            return self.records.pop(key, None) is not None

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        with self.lock:
            doomed = [k for k, r in self.records.items() if self._owned(r, user_id) and k != except_key]
            for key in doomed:
                del self.records[key]
            return len(doomed)

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        return [r for r in list(self.records.values()) if self._owned(r, user_id)]

    def get_all(self) -> list[SessionRecord]:
        return list(self.records.values())

    def purge_expired(self, now: float) -> int:
        with self.lock:
            doomed = [k for k, r in self.records.items() if r.expires_at <= now]
            for key in doomed:
                del self.records[key]
            return len(doomed)

    @staticmethod
    def _owned(record: SessionRecord, user_id: UserId) -> bool:
        return record.user_id == user_id and type(record.user_id) is type(user_id)


class TestDictStore(StoreContract):
    """The third-party store passes the contract on its own."""

    @pytest.fixture
    def store(self) -> Iterator[SessionStore]:
        yield DictStore()


@contextlib.contextmanager
def open_kind(kind: str, tmp_path: Path, servers: Any) -> Iterator[SessionStore]:
    if kind == "dict":
        yield DictStore()
        return
    with open_store(kind, tmp_path, servers) as store:
        yield store


#: (source, target): the moves users make
PAIRS = [("memory", "sqlite"), ("redis", "sqlite"), ("redis", "postgresql"), ("memcached", "redis"),
         ("dict", "memory")]
PAIR_IDS = [f"{source}-to-{target}" for source, target in PAIRS]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[tuple[SessionStore, SessionStore]]:
    source_kind, target_kind = request.param
    (tmp_path / "target").mkdir()
    with open_kind(source_kind, tmp_path, store_servers) as source, \
            open_kind(target_kind, tmp_path / "target", store_servers) as target:
        yield source, target


class FromSource(MigratingStore):
    """For the tests only: creates insert into ``source``, as records stored before the migration."""

    def create(self, record: SessionRecord) -> bool:
        if self.get(record.key) is not None:
            return False
        if self.target.get(record.key) is not None:  # a tombstone: the key was used since
            return super().create(record)
        return self.source.create(record)


class TestMigratingStore(StoreContract):
    """New records go to ``target``; ``source`` starts empty."""

    @pytest.fixture
    def store(self, pair: tuple[SessionStore, SessionStore]) -> Iterator[SessionStore]:
        source, target = pair
        yield MigratingStore(target, source)


class TestMigratingStoreWithRecordsToMove(StoreContract):
    """Every record starts in ``source``: each rule is checked on records that still move."""

    @pytest.fixture
    def store(self, pair: tuple[SessionStore, SessionStore]) -> Iterator[SessionStore]:
        source, target = pair
        yield FromSource(target, source)


def holds_nothing(source: SessionStore, target: SessionStore, key: str) -> bool:
    """Neither store holds ``key`` (``target`` may keep its tombstone)."""
    record = target.get(key)
    return source.get(key) is None and (record is None or MigratingStore.is_tombstone(record))


# -- the operations, one by one -----------------------------------------------------------


@pytest.fixture
def stores() -> tuple[MemoryStore, MemoryStore, MigratingStore]:
    source, target = MemoryStore(), MemoryStore()
    return source, target, MigratingStore(target, source)


def test_a_read_moves_the_record_once(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    record = make_record(source, user_id=3)
    source.create(record)
    assert migrating.get(record.key) == record
    assert source.get(record.key) is None and target.get(record.key) == record
    assert migrating.get(record.key) == record


def test_writes_and_touches_move_then_update_target(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    saved, touched = make_record(source), make_record(source)
    source.create(saved)
    source.create(touched)
    assert migrating.set(saved.with_changes(data='{"n":1}', version=2), 1) is SetResult.SAVED
    assert migrating.touch(touched.key, touched.updated_at + 1, touched.expires_at + 1)
    assert source.get_all() == []
    assert target.get(saved.key) is not None and target.get(saved.key).data == '{"n":1}'  # type: ignore[union-attr]
    assert target.get(touched.key).expires_at == touched.expires_at + 1  # type: ignore[union-attr]


def test_create_is_insert_only_across_both_stores(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    record = make_record(source)
    source.create(record)
    assert migrating.create(record.with_changes(data='{"other":1}')) is False
    assert migrating.get(record.key) == record


def test_removals_reach_both_stores(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    old, new = make_record(source, user_id=5), make_record(source, user_id=5)
    kept = make_record(source, user_id=5)
    source.create(old)
    source.create(kept)
    migrating.create(new)
    assert migrating.delete_all_for_user(5, except_key=kept.key) == 2
    assert [r.key for r in migrating.get_all_for_user(5)] == [kept.key]
    assert migrating.delete(kept.key) is True and migrating.delete(kept.key) is False
    assert source.get_all() == [] and migrating.get_all() == []
    # target keeps a tombstone per removed key, for moves that read source before the removal
    assert {r.key for r in target.get_all() if MigratingStore.is_tombstone(r)} == {old.key, new.key, kept.key}


def test_removing_an_unknown_key_writes_nothing(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    assert migrating.delete(session_key("made-up")) is False
    assert source.get_all() == [] and target.get_all() == []


def test_a_tombstone_is_never_served_written_touched_or_listed(
        stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    record = make_record(source, user_id=2)
    migrating.create(record)
    assert migrating.delete(record.key)
    assert migrating.get(record.key) is None
    assert migrating.set(record.with_changes(version=2), 1) is SetResult.MISSING
    assert migrating.set(record.with_changes(version=1), 0) is SetResult.MISSING
    assert migrating.touch(record.key, record.updated_at, record.expires_at) is False
    assert migrating.get_all() == [] and migrating.get_all_for_user(2) == []
    assert migrating.delete(record.key) is False
    # a stale copy of it (a move that read source before the removal) cannot be inserted
    assert target.create(record) is False
    # and the key is free again for a new record
    assert migrating.create(record.with_changes(data='{"new":1}'))
    assert migrating.get(record.key).data == '{"new":1}'  # type: ignore[union-attr]


def test_listings_see_both_without_duplicates(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    in_source, in_target, in_both = (make_record(source, user_id=1) for _ in range(3))
    source.create(in_source)
    target.create(in_target)
    source.create(in_both)  # a move caught between its insert and its claim
    target.create(in_both)
    for listed in (migrating.get_all(), migrating.get_all_for_user(1)):
        assert sorted(r.key for r in listed) == sorted(r.key for r in (in_source, in_target, in_both))


def test_purge_reaches_both_stores(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    now = 1_000_000.0
    source.create(make_record(source, now=now - 100, lifetime=50))
    target.create(make_record(source, now=now - 100, lifetime=50))
    live = make_record(source, now=now)
    source.create(live)
    assert migrating.purge_expired(now) == 2
    assert [r.key for r in migrating.get_all()] == [live.key]


def test_locks_are_targets(stores: tuple[MemoryStore, MemoryStore, MigratingStore]) -> None:
    source, target, migrating = stores
    assert migrating.acquire_lock("k", "a", 30)
    assert not target.acquire_lock("k", "b", 30)
    assert source.acquire_lock("k", "b", 30)  # source's locks are not used
    migrating.release_lock("k", "a")
    assert target.acquire_lock("k", "b", 30)


def test_a_migration_from_a_store_url(tmp_path: Path) -> None:
    """What ``KITSESSION_MIGRATE_FROM`` and ``flask kitsession migrate --from URL`` build."""
    from kitsession_wsgi.stores.peewee import PeeweeStore

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = PeeweeStore.from_url(url)
    old.create_tables()
    session = SessionManager(old).create_session(user_id=1, data={"n": 1})
    old.close()
    target = MemoryStore()
    migrating = MigratingStore.from_url(target, url)
    assert isinstance(migrating.source, PeeweeStore) and migrating.target is target
    steps: list[tuple[int, int]] = []
    assert migrating.drain(lambda done, total: steps.append((done, total))).moved == 1
    assert steps == [(1, 1)] and target.get(session.handle) is not None  # type: ignore[arg-type]
    migrating.close()


def test_a_store_is_not_migrated_to_itself() -> None:
    store = MemoryStore()
    with pytest.raises(TypeError, match="target is source"):
        MigratingStore(store, store)
    with pytest.raises(TypeError, match="source must be a SessionStore"):
        MigratingStore(store, object())  # type: ignore[arg-type]


# -- the core's markers move with the sessions --------------------------------------------


def _cookie(manager: SessionManager, session: Session) -> dict[str, str]:
    return {"Cookie": manager.set_session_cookie(session).split(";", 1)[0]}


def test_a_login_before_the_migration_is_still_recognised_and_revocable() -> None:
    """The "replaced" marker a login left in ``source``: the old cookie is recognised (no
    clearing cookie), and a logout sent with it removes what the session became."""
    source, target = MemoryStore(), MemoryStore()
    before = SessionManager(source, keys="k", secure=False)
    session = before.create_session(user_id=9, data={"id": 9})
    old_cookie = _cookie(before, session)
    before.regenerate(session)
    manager = SessionManager(MigratingStore(target, source), keys="k", secure=False)
    late = manager.initialize_session(old_cookie)
    assert late.is_new and manager.commit(late) is None  # recognised as replaced: no clearing cookie
    manager.remove_session(manager.initialize_session(old_cookie))
    assert manager.get_session(session.id) is None  # type: ignore[arg-type]
    assert [r for r in live_records(source) + live_records(target)] == []


def test_a_revocation_before_the_migration_still_undoes_a_move_of_a_revoked_lineage() -> None:
    """The user's revocation marker in ``source`` is consulted by a move that runs after it."""
    source, target = MemoryStore(), MemoryStore()
    before = SessionManager(source, keys="k", secure=False)
    device = before.create_session(user_id=4, data={"id": 4})
    other = before.create_session(user_id=4, data={"id": 4})
    assert before.remove_all_sessions_for_user(4, device) == 1
    manager = SessionManager(MigratingStore(target, source), keys="k", secure=False)
    assert manager.get_session(other.id) is None  # type: ignore[arg-type]
    moved = manager.get_session(device.id)  # type: ignore[arg-type]
    assert moved is not None
    manager.regenerate(moved)  # the spared device moves freely: the marker moved and spares it
    assert not moved.is_destroyed and manager.get_session(moved.id) is not None  # type: ignore[arg-type]
    assert [r.key for r in live_records(target)] == [moved.handle] and live_records(source) == []


# -- drain --------------------------------------------------------------------------------


def test_drain_moves_everything_and_reports_progress() -> None:
    source, target = MemoryStore(), MemoryStore()
    now = [1_000_000.0]
    before = SessionManager(source, clock=lambda: now[0])
    kept = [before.create_session(user_id=i % 3, data={"i": i}) for i in range(10)]
    expired = make_record(source, now=now[0] - 100, lifetime=50)
    source.create(expired)
    migrating = MigratingStore(target, source, clock=lambda: now[0])
    calls: list[tuple[int, int]] = []
    counts = migrating.drain(lambda done, total: calls.append((done, total)))
    assert counts == DrainCounts(moved=10, skipped=0, expired=1, remaining=0)
    assert calls == [(i, 11) for i in range(1, 12)]
    assert source.get_all() == []
    manager = SessionManager(target, clock=lambda: now[0])
    assert [manager.get_session(s.id).data for s in kept] == [{"i": i} for i in range(10)]  # type: ignore[arg-type, union-attr]
    assert migrating.drain() == DrainCounts(0, 0, 0, 0)


def test_drain_finishes_a_move_whose_process_died_between_its_steps() -> None:
    source, target = MemoryStore(), MemoryStore()
    record = make_record(source)
    source.create(record)
    target.create(record)  # inserted, never claimed
    migrating = MigratingStore(target, source)
    assert migrating.drain() == DrainCounts(moved=1, skipped=0, expired=0, remaining=0)
    assert source.get_all() == [] and target.get(record.key) == record


# -- under load ---------------------------------------------------------------------------


SESSIONS = 240
THREADS = 8


def test_a_migration_under_load_loses_nothing_and_resurrects_nothing(
    pair: tuple[SessionStore, SessionStore],
) -> None:
    """8 threads read and write their sessions (and log some out) while drain() runs."""
    source, target = pair
    before = SessionManager(source, keys="k", secure=False)
    sessions = [before.create_session(user_id=i % 20, data={"n": 0}) for i in range(SESSIONS)]
    migrating = MigratingStore(target, source)
    manager = SessionManager(migrating, keys="k", secure=False)
    cookies = [_cookie(manager, s) for s in sessions]
    expected: dict[int, int] = {}
    removed: set[int] = set()
    created: list[tuple[dict[str, str], int]] = []
    lock = threading.Lock()
    draining = threading.Event()
    drained = threading.Event()
    counts: list[DrainCounts] = []

    def worker(index: int) -> None:
        if index == THREADS:  # the drain, started once the workers are under way
            assert draining.wait(WAIT)
            counts.append(migrating.drain())
            drained.set()
            return
        rng = random.Random(index)
        mine = list(range(index, SESSIONS, THREADS))
        values = {i: 0 for i in mine}
        rounds = 0
        while rounds < 3 or not drained.is_set():
            for i in mine:
                if i in removed:
                    continue
                session = manager.initialize_session(cookies[i])
                assert not session.is_new, f"session {i} was lost"
                assert session.data == {"n": values[i]}, f"session {i} lost a write"
                if rng.random() < 0.04:
                    assert manager.remove_session(session)
                    with lock:
                        removed.add(i)
                    continue
                session.data["n"] += 1
                manager.commit(session)
                values[i] += 1
            fresh = manager.create_session(user_id=index, data={"n": rounds})
            with lock:
                created.append((_cookie(manager, fresh), rounds))
            rounds += 1
            draining.set()
        with lock:
            expected.update({i: n for i, n in values.items() if i not in removed})

    run_threads(THREADS + 1, worker)
    assert counts and counts[0].remaining == 0
    assert live_records(source) == [], "source still holds sessions after the drain"
    for i, n in expected.items():
        session = manager.initialize_session(cookies[i])
        assert not session.is_new and session.data == {"n": n}, f"session {i} lost (or lost a write)"
    for i in removed:
        assert manager.initialize_session(cookies[i]).is_new, f"removed session {i} came back"
        assert holds_nothing(source, target, sessions[i].handle)  # type: ignore[arg-type]
    for cookie, n in created:
        assert manager.initialize_session(cookie).data == {"n": n}
    assert removed, "no logout ran during the drain"


# -- a move paused at its dangerous step ------------------------------------------------


class PausingStore(SessionStore):
    """A pass-through store that stops at a chosen step for one key until released:
    ``"get"`` after reading it, ``"create"`` after inserting it (if it did), ``"delete"`` after
    deleting it (alone or with its user's records)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.key: str | None = None
        self.pause_after: str | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def _stop(self, step: str, key: str) -> None:
        if self.pause_after == step and key == self.key:
            self.pause_after = None
            self.paused.set()
            assert self.resume.wait(WAIT), "the test never resumed the paused move"

    def get(self, key: str) -> SessionRecord | None:
        record = self.inner.get(key)
        self._stop("get", key)
        return record

    def create(self, record: SessionRecord) -> bool:
        created = self.inner.create(record)
        if created:
            self._stop("create", record.key)
        return created

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        return self.inner.set(record, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        return self.inner.touch(key, updated_at, expires_at)

    def delete(self, key: str) -> bool:
        deleted = self.inner.delete(key)
        self._stop("delete", key)
        return deleted

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        deleted = self.inner.delete_all_for_user(user_id, except_key)
        self._stop("delete", self.key or "")
        return deleted

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        return self.inner.get_all_for_user(user_id)

    def get_all(self) -> list[SessionRecord]:
        return self.inner.get_all()

    def purge_expired(self, now: float) -> int:
        return self.inner.purge_expired(now)


REMOVALS: dict[str, Callable[[SessionManager, Session], Any]] = {
    "logout": lambda manager, session: manager.remove_session(session),
    "revoke-all": lambda manager, session: manager.remove_all_sessions_for_user(6),
    "remove-by-handle": lambda manager, session: manager.remove_session_by_handle(session.handle, user_id=6),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("removal", list(REMOVALS))
@pytest.mark.parametrize("mover", ["request", "drain"])
@pytest.mark.parametrize("pause", ["after-the-target-insert", "after-the-source-read"])
def test_a_removal_during_a_paused_move_wins(
    pair: tuple[SessionStore, SessionStore], pause: str, mover: str, removal: str,
) -> None:
    source, target = pair
    before = SessionManager(source, keys="k", secure=False)
    session = before.create_session(user_id=6, data={"id": 6})
    bystander = before.create_session(user_id=7, data={"id": 7})
    paused_target, paused_source = PausingStore(target), PausingStore(source)
    pausing = paused_target if pause == "after-the-target-insert" else paused_source
    pausing.key, pausing.pause_after = session.handle, "create" if pausing is paused_target else "get"
    migrating = MigratingStore(paused_target, paused_source)
    manager = SessionManager(migrating, keys="k", secure=False)
    cookie = _cookie(manager, session)
    outcome: list[Any] = []

    def move() -> None:
        outcome.append(migrating.drain() if mover == "drain" else manager.initialize_session(cookie))

    thread = threading.Thread(target=move)
    thread.start()
    try:
        assert pausing.paused.wait(WAIT), "the move never reached the step to pause at"
        REMOVALS[removal](manager, session)
    finally:
        pausing.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive() and outcome
    if mover == "request":
        assert outcome[0].is_new, "the request that moved the session served it after the removal"
    assert manager.initialize_session(cookie).is_new
    assert holds_nothing(source, target, session.handle)  # type: ignore[arg-type]
    assert manager.get_session(bystander.id) is not None  # type: ignore[arg-type]
    migrating.drain()
    assert live_records(source) == [] and [r.key for r in live_records(target)] == [bystander.handle]


@pytest.mark.parametrize("removal", list(REMOVALS))
@pytest.mark.parametrize("mover", ["request", "drain"])
def test_a_move_run_inside_a_removal_does_not_bring_it_back(
    pair: tuple[SessionStore, SessionStore], mover: str, removal: str,
) -> None:
    """The removal stops between its two deletes (whichever store it deletes from first)
    while a whole move runs: the order of the deletes is what keeps the session removed."""
    source, target = pair
    before = SessionManager(source, keys="k", secure=False)
    session = before.create_session(user_id=6, data={"id": 6})
    paused_target, paused_source = PausingStore(target), PausingStore(source)
    for pausing in (paused_target, paused_source):
        pausing.key, pausing.pause_after, pausing.paused = session.handle, "delete", paused_source.paused
        pausing.resume = paused_source.resume
    migrating = MigratingStore(paused_target, paused_source)
    manager = SessionManager(migrating, keys="k", secure=False)
    cookie = _cookie(manager, session)
    errors: list[BaseException] = []

    def remove() -> None:
        try:
            REMOVALS[removal](manager, session)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=remove)
    thread.start()
    try:
        assert paused_source.paused.wait(WAIT), "the removal never reached its first delete"
        for pausing in (paused_target, paused_source):
            pausing.pause_after = None
        if mover == "drain":
            migrating.drain()
        else:
            manager.initialize_session(cookie)
    finally:
        paused_source.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive() and not errors, errors
    assert manager.initialize_session(cookie).is_new, "the session outlived its removal"
    assert holds_nothing(source, target, session.handle)  # type: ignore[arg-type]


@pytest.mark.parametrize("mover", ["request", "drain"])
@pytest.mark.parametrize("pause", ["after-the-target-insert", "after-the-claim"])
def test_a_session_paused_mid_move_is_still_served(
    pair: tuple[SessionStore, SessionStore], pause: str, mover: str,
) -> None:
    """No moment of a move leaves the session in neither store (a read then would sign
    its user out), and a concurrent read never steals the move's claim."""
    source, target = pair
    before = SessionManager(source, keys="k", secure=False)
    session = before.create_session(user_id=6, data={"id": 6, "cart": [1]})
    paused_target, paused_source = PausingStore(target), PausingStore(source)
    pausing = paused_target if pause == "after-the-target-insert" else paused_source
    pausing.key, pausing.pause_after = session.handle, "create" if pausing is paused_target else "delete"
    migrating = MigratingStore(paused_target, paused_source)
    manager = SessionManager(migrating, keys="k", secure=False)
    cookie = _cookie(manager, session)
    outcome: list[Any] = []

    def move() -> None:
        outcome.append(migrating.drain() if mover == "drain" else manager.initialize_session(cookie))

    thread = threading.Thread(target=move)
    thread.start()
    try:
        assert pausing.paused.wait(WAIT), "the move never reached the step to pause at"
        during = manager.initialize_session(cookie)
        assert not during.is_new and during.data == {"id": 6, "cart": [1]}, "the session was lost mid-move"
        during.data["cart"].append(2)
        manager.commit(during)
    finally:
        pausing.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive() and outcome
    if mover == "request":
        assert not outcome[0].is_new
    assert manager.initialize_session(cookie).data == {"id": 6, "cart": [1, 2]}
    assert live_records(source) == [] and [r.key for r in live_records(target)] == [session.handle]


@pytest.mark.parametrize("removal", list(REMOVALS))
def test_a_move_that_read_the_session_before_a_removal_never_shows_it_again(
    pair: tuple[SessionStore, SessionStore], removal: str,
) -> None:
    """The move reads ``source``, stops, a removal runs to its end; the move resumes and would
    insert its (stale) copy: if the insert succeeded, the move stops there again and a
    request reads the session.  It must find none, not even for that moment."""
    source, target = pair
    before = SessionManager(source, keys="k", secure=False)
    session = before.create_session(user_id=6, data={"id": 6})
    paused_target, paused_source = PausingStore(target), PausingStore(source)
    paused_source.key, paused_source.pause_after = session.handle, "get"
    paused_target.key, paused_target.pause_after = session.handle, "create"
    migrating = MigratingStore(paused_target, paused_source)
    manager = SessionManager(migrating, keys="k", secure=False)
    cookie = _cookie(manager, session)
    thread = threading.Thread(target=lambda: migrating.move(session.handle))  # type: ignore[arg-type]
    thread.start()
    try:
        assert paused_source.paused.wait(WAIT), "the move never read the session"
        paused_target.pause_after = None  # the removal's own writes must not stop
        REMOVALS[removal](manager, session)
        paused_target.pause_after = "create"
        paused_source.resume.set()
        if paused_target.paused.wait(1.0):  # the stale insert went through: read in its moment
            assert manager.initialize_session(cookie).is_new, "a removed session was served again"
    finally:
        paused_source.resume.set()
        paused_target.resume.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert not paused_target.paused.is_set(), "the stale copy was inserted"
    assert manager.initialize_session(cookie).is_new
