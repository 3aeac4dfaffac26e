"""The store contract suite, for bundled and third-party stores alike.

Subclass :class:`StoreContract` in a pytest module and provide a ``store``
fixture that yields an empty store::

    import pytest
    from kitsession_wsgi.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)
            yield store
            store.clear()

Every test then runs against your store.  Records use real Unix times
(``time.time()``), so stores that hand expiry to the server (memcached and
Redis TTLs) are exercised as deployed.

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .manager import SessionManager, session_key
from .stores.base import SessionRecord, SessionStore, SetResult, UserId

__all__ = [
    "DAY",
    "StoreContract",
    "make_record",
]

#: a day: long enough that no test run reaches real expiry
DAY = 86400.0


def make_record(
    store: SessionStore,
    *,
    user_id: UserId | None = None,
    data: str = '{"n":0}',
    lifetime: float = DAY,
    now: float | None = None,
    version: int = 1,
) -> SessionRecord:
    """A fresh record keyed like the core keys them (a digest of a new id)."""
    now = time.time() if now is None else now
    return SessionRecord(
        key=session_key(store.create_id()),
        data=data,
        user_id=user_id,
        created_at=now,
        updated_at=now,
        expires_at=now + lifetime,
        version=version,
    )


def _same(a: SessionRecord | None, b: SessionRecord | None) -> None:
    assert a is not None and b is not None
    assert (a.key, a.data, a.user_id, a.version) == (b.key, b.data, b.user_id, b.version)
    assert a.created_at == pytest.approx(b.created_at, abs=1e-3)
    assert a.updated_at == pytest.approx(b.updated_at, abs=1e-3)
    assert a.expires_at == pytest.approx(b.expires_at, abs=1e-3)


class StoreContract:
    """Pytest base class: every rule a :class:`~kitsession_wsgi.SessionStore` must keep.

    Subclasses provide a ``store`` fixture yielding an empty store.  Set
    ``threads`` lower for a store that cannot take eight writers.

    .. versionadded:: 0.1
    """

    threads = 8

    @pytest.fixture
    def store(self) -> Iterator[SessionStore]:  # pragma: no cover - overridden
        raise NotImplementedError("subclass StoreContract and provide a `store` fixture")

    # -- ids and keys -----------------------------------------------------------------

    def test_create_id_is_unguessable_text(self, store: SessionStore) -> None:
        ids = {store.create_id() for _ in range(200)}
        assert len(ids) == 200
        assert all(isinstance(i, str) and len(i) >= 32 for i in ids)

    # -- create / get -----------------------------------------------------------------

    def test_get_missing_is_none(self, store: SessionStore) -> None:
        assert store.get(session_key("never-created")) is None

    def test_create_then_get_round_trips(self, store: SessionStore) -> None:
        record = make_record(store, user_id=42, data='{"a":[1,2,{"b":"\\u00e9\u00e9 \u2603"}]}')
        assert store.create(record) is True
        _same(store.get(record.key), record)

    def test_create_is_insert_only(self, store: SessionStore) -> None:
        record = make_record(store, data='{"first":true}')
        assert store.create(record)
        assert store.create(record.with_changes(data='{"second":true}', version=7)) is False
        _same(store.get(record.key), record)

    @pytest.mark.parametrize("user_id", [0, 1, 2**62, "alice", "5", "user@example.com"], ids=repr)
    def test_user_ids_round_trip_with_their_type(self, store: SessionStore, user_id: UserId) -> None:
        record = make_record(store, user_id=user_id)
        store.create(record)
        got = store.get(record.key)
        assert got is not None and got.user_id == user_id and type(got.user_id) is type(user_id)

    def test_anonymous_session_is_stored(self, store: SessionStore) -> None:
        record = make_record(store, user_id=None)
        assert store.create(record)
        got = store.get(record.key)
        assert got is not None and got.user_id is None

    def test_large_data_round_trips(self, store: SessionStore) -> None:
        payload = '{"blob":"' + "x" * 200_000 + '"}'
        record = make_record(store, data=payload)
        assert store.create(record)
        got = store.get(record.key)
        assert got is not None and got.data == payload

    # -- set (versioned, update-only) -------------------------------------------------

    def test_set_with_expected_version_saves(self, store: SessionStore) -> None:
        record = make_record(store, user_id=1)
        store.create(record)
        updated = record.with_changes(data='{"n":1}', version=2, updated_at=record.updated_at + 5)
        assert store.set(updated, 1) is SetResult.SAVED
        _same(store.get(record.key), updated)

    def test_set_with_stale_version_is_a_conflict(self, store: SessionStore) -> None:
        record = make_record(store)
        store.create(record)
        assert store.set(record.with_changes(data='{"n":1}', version=2), 1) is SetResult.SAVED
        assert store.set(record.with_changes(data='{"n":99}', version=2), 1) is SetResult.CONFLICT
        got = store.get(record.key)
        assert got is not None and got.data == '{"n":1}' and got.version == 2

    def test_set_never_inserts(self, store: SessionStore) -> None:
        record = make_record(store)
        assert store.set(record.with_changes(version=2), 1) is SetResult.MISSING
        assert store.get(record.key) is None

    def test_set_after_delete_does_not_resurrect(self, store: SessionStore) -> None:
        record = make_record(store, user_id=3)
        store.create(record)
        assert store.delete(record.key)
        assert store.set(record.with_changes(data='{"late":1}', version=2), 1) is SetResult.MISSING
        assert store.get(record.key) is None
        assert [r.key for r in store.get_all_for_user(3)] == []

    def test_set_moves_the_user_index(self, store: SessionStore) -> None:
        record = make_record(store, user_id=None)
        store.create(record)
        assert store.set(record.with_changes(user_id=9, version=2), 1) is SetResult.SAVED
        assert [r.key for r in store.get_all_for_user(9)] == [record.key]
        assert store.set(record.with_changes(user_id=10, version=3), 2) is SetResult.SAVED
        assert store.get_all_for_user(9) == []
        assert [r.key for r in store.get_all_for_user(10)] == [record.key]

    # -- touch ------------------------------------------------------------------------

    def test_touch_moves_only_activity_and_expiry(self, store: SessionStore) -> None:
        record = make_record(store, user_id=1)
        store.create(record)
        assert store.touch(record.key, record.updated_at + 30, record.expires_at + 60) is True
        got = store.get(record.key)
        assert got is not None
        assert (got.data, got.version, got.user_id) == (record.data, record.version, 1)
        assert got.updated_at == pytest.approx(record.updated_at + 30, abs=1e-3)
        assert got.expires_at == pytest.approx(record.expires_at + 60, abs=1e-3)

    def test_touch_missing_does_not_resurrect(self, store: SessionStore) -> None:
        record = make_record(store)
        assert store.touch(record.key, record.updated_at, record.expires_at) is False
        assert store.get(record.key) is None

    # -- delete -----------------------------------------------------------------------

    def test_delete_reports_whether_it_removed(self, store: SessionStore) -> None:
        record = make_record(store, user_id=4)
        store.create(record)
        assert store.delete(record.key) is True
        assert store.delete(record.key) is False
        assert store.get(record.key) is None
        assert store.get_all_for_user(4) == []

    def test_delete_all_for_user_keeps_the_excepted_session(self, store: SessionStore) -> None:
        mine = [make_record(store, user_id=7) for _ in range(4)]
        others = [make_record(store, user_id=8), make_record(store, user_id="7"), make_record(store)]
        for record in mine + others:
            store.create(record)
        assert store.delete_all_for_user(7, except_key=mine[0].key) == 3
        assert [r.key for r in store.get_all_for_user(7)] == [mine[0].key]
        for record in others:
            assert store.get(record.key) is not None

    def test_delete_all_for_user_without_exception_removes_all(self, store: SessionStore) -> None:
        for _ in range(3):
            store.create(make_record(store, user_id="bob"))
        assert store.delete_all_for_user("bob") == 3
        assert store.get_all_for_user("bob") == []
        assert store.delete_all_for_user("bob") == 0

    # -- listing ----------------------------------------------------------------------

    def test_get_all_for_user_lists_exactly_theirs(self, store: SessionStore) -> None:
        records = [make_record(store, user_id=11) for _ in range(3)]
        for record in records:
            store.create(record)
        store.create(make_record(store, user_id=12))
        store.create(make_record(store, user_id="11"))
        assert sorted(r.key for r in store.get_all_for_user(11)) == sorted(r.key for r in records)
        assert all(r.user_id == 11 for r in store.get_all_for_user(11))

    def test_get_all_lists_every_record(self, store: SessionStore) -> None:
        records = [make_record(store, user_id=u) for u in (None, 1, "x")]
        for record in records:
            store.create(record)
        listed = {r.key: r for r in store.get_all()}
        for record in records:
            _same(listed.get(record.key), record)

    # -- expiry -----------------------------------------------------------------------

    def test_purge_expired_removes_only_expired(self, store: SessionStore) -> None:
        now = time.time()
        live = make_record(store, user_id=5, now=now)
        expired = make_record(store, user_id=5, now=now - 100, lifetime=50)
        store.create(live)
        store.create(expired)
        assert store.purge_expired(now) == 1
        assert store.get(live.key) is not None
        assert store.get(expired.key) is None
        assert [r.key for r in store.get_all_for_user(5)] == [live.key]
        assert store.purge_expired(now) == 0

    # -- concurrency ------------------------------------------------------------------

    def _run_threads(self, target: Any) -> None:
        errors: list[BaseException] = []

        def guarded(index: int) -> None:
            try:
                target(index)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(self.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors

    def test_concurrent_versioned_increments_lose_nothing(self, store: SessionStore) -> None:
        record = make_record(store, data='{"n":0}')
        store.create(record)
        per_thread = 25

        def increment(_: int) -> None:
            done = 0
            while done < per_thread:
                current = store.get(record.key)
                assert current is not None
                n = int(current.data[5:-1])
                result = store.set(
                    current.with_changes(data=f'{{"n":{n + 1}}}', version=current.version + 1),
                    current.version,
                )
                assert result is not SetResult.MISSING
                if result is SetResult.SAVED:
                    done += 1

        self._run_threads(increment)
        final = store.get(record.key)
        assert final is not None
        assert final.data == f'{{"n":{self.threads * per_thread}}}'
        assert final.version == 1 + self.threads * per_thread

    def test_concurrent_creates_for_one_user_are_all_indexed(self, store: SessionStore) -> None:
        keys: list[str] = []
        lock = threading.Lock()

        def login(_: int) -> None:
            for _ in range(5):
                record = make_record(store, user_id="shared")
                assert store.create(record)
                with lock:
                    keys.append(record.key)

        self._run_threads(login)
        assert sorted(r.key for r in store.get_all_for_user("shared")) == sorted(keys)
        assert store.delete_all_for_user("shared", except_key=keys[0]) == len(keys) - 1
        assert [r.key for r in store.get_all_for_user("shared")] == [keys[0]]

    # -- per-session locks -------------------------------------------------------------

    def test_lock_excludes_other_holders_until_released(self, store: SessionStore) -> None:
        key = session_key(store.create_id())
        try:
            assert store.acquire_lock(key, "holder-a", 30) is True
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not support session locks")
        assert store.acquire_lock(key, "holder-b", 30) is False
        store.release_lock(key, "holder-b")  # not the holder: no effect
        assert store.acquire_lock(key, "holder-b", 30) is False
        store.release_lock(key, "holder-a")
        assert store.acquire_lock(key, "holder-b", 30) is True
        store.release_lock(key, "holder-b")

    def test_lock_frees_itself_after_its_ttl(self, store: SessionStore) -> None:
        key = session_key(store.create_id())
        try:
            assert store.acquire_lock(key, "crashed-holder", 1) is True
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} does not support session locks")
        deadline = time.monotonic() + 5
        while not store.acquire_lock(key, "next-holder", 30):
            assert time.monotonic() < deadline, "the lock never expired"
            time.sleep(0.1)
        store.release_lock(key, "next-holder")

    # -- through the manager ----------------------------------------------------------

    def test_manager_round_trip_through_a_cookie(self, store: SessionStore) -> None:
        manager = SessionManager(store, keys=["contract-key"])
        session = manager.create_session(user_id=21, data={"cart": [1, 2]})
        cookie = manager.set_session_cookie(session).split(";", 1)[0]
        loaded = manager.initialize_session({"Cookie": cookie})
        assert not loaded.is_new and loaded.id == session.id
        assert loaded.data == {"cart": [1, 2]} and loaded.user_id == 21
        loaded.data["cart"].append(3)
        assert manager.commit(loaded) is None
        assert manager.initialize_session({"Cookie": cookie}).data == {"cart": [1, 2, 3]}
        assert manager.remove_session(loaded) is True
        assert manager.initialize_session({"Cookie": cookie}).is_new

    def test_data_with_lone_surrogates_round_trips(self, store: SessionStore) -> None:
        manager = SessionManager(store)
        data = {"x": "\ud800", "y": "caf\u00e9 \U0001f600"}
        session = manager.create_session(data=data)
        assert session.id is not None
        loaded = manager.get_session(session.id)
        assert loaded is not None and loaded.data == data

    def test_manager_never_serves_an_expired_session(self, store: SessionStore) -> None:
        now = [time.time()]
        manager = SessionManager(store, max_age=60, clock=lambda: now[0])
        session = manager.create_session(data={"k": 1})
        assert session.id is not None
        assert manager.get_session(session.id) is not None
        now[0] += 61
        assert manager.get_session(session.id) is None
        assert store.get(session_key(session.id)) is None

    def test_manager_sign_out_everywhere_else(self, store: SessionStore) -> None:
        manager = SessionManager(store)
        here = manager.create_session(user_id=77)
        for _ in range(3):
            manager.create_session(user_id=77)
        other = manager.create_session(user_id=78)
        assert manager.remove_all_sessions_for_user(77, here) == 3
        assert [s.handle for s in manager.get_sessions_for_user(77)] == [here.handle]
        assert [s.handle for s in manager.get_sessions_for_user(78)] == [other.handle]
