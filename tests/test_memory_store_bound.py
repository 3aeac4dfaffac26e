"""MemoryStore is bounded by default: expired records go first, then the least recently used.

Issue 13 item 6: 20,000 cookie-less requests writing a flash kept 20,000 records for 14
days.  Now the store keeps at most ``max_sessions``, says so (signal + log line), and
keeps the sessions people are using.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, flash, get_flashed_messages
from werkzeug.test import Client

from kitsession_wsgi import ConfigurationError, MemoryStore, SessionManager, signals
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.stores import memory
from kitsession_wsgi.stores.base import SessionRecord, SetResult
from kitsession_wsgi.testing import StoreContract, make_record
from kitsession_wsgi.wsgi import SessionMiddleware

from clocks import FakeClock
from session_helpers import parse_set_cookie

LOGGER = "kitsession_wsgi.stores.memory"


class TestBoundedMemoryStoreContract(StoreContract):
    """The whole contract still holds with a bound small enough to matter between tests' records."""

    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        yield MemoryStore(max_sessions=64)


@pytest.fixture
def evictions() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append({"sender": sender, **extra})

    signals.evicted.connect(receiver)
    yield seen
    signals.evicted.disconnect(receiver)


def record_at(store: MemoryStore, now: float, lifetime: float, user_id: Any = None) -> SessionRecord:
    return make_record(store, now=now, lifetime=lifetime, user_id=user_id)


# -- the default and the option ---------------------------------------------------------------------


def test_the_default_store_is_bounded() -> None:
    assert MemoryStore().max_sessions == memory.DEFAULT_MAX_SESSIONS == 100_000
    assert MemoryStore(max_sessions=None).max_sessions is None


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "1000"], ids=repr)
def test_a_bad_bound_names_the_option(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        MemoryStore(max_sessions=bad)
    assert info.value.option == "max_sessions" and repr(bad) in str(info.value)


# -- the flood ---------------------------------------------------------------------------------------


def flash_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Every visit writes a flash message: what a login form's CSRF token or a notice does."""
    environ["kitsession"].session.data["_flashes"] = [["message", "Welcome!"]]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_twenty_thousand_cookieless_requests_keep_at_most_the_bound(
    evictions: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    bound = 500
    store = MemoryStore(max_sessions=bound)
    manager = SessionManager(store, keys=["flood"])
    client = Client(SessionMiddleware(flash_app, manager), use_cookies=False)
    # One real user, active throughout: least-recently-used eviction must keep them signed in.
    regular = manager.create_session(user_id=7, data={"name": "Ada"})
    regular_cookie = manager.set_session_cookie(regular).split(";", 1)[0]
    most = 0
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(20_000):
            response = client.get("/")
            assert response.status_code == 200 and parse_set_cookie(response.headers.get("Set-Cookie")).value
            most = max(most, len(store))
            if i % 100 == 0:
                assert client.get("/", headers={"Cookie": regular_cookie}).status_code == 200
    assert most == len(store) == bound
    assert len(evictions) == 20_000 + 1 - bound
    assert {e["reason"] for e in evictions} == {"least_recently_used"}
    assert all(e["sender"] is store and e["user_id"] is None for e in evictions)
    assert regular.handle not in {e["handle"] for e in evictions}
    assert manager.get_sessions_for_user(7)[0].data["name"] == "Ada"
    # One line for the first drop; the rest of the flood (well within a minute) is counted, not logged.
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "max_sessions=500" in lines[0].getMessage()


def test_a_flood_through_flask_keeps_at_most_the_bound(evictions: list[dict[str, Any]]) -> None:
    bound = 200
    store = MemoryStore(max_sessions=bound)
    app = Flask(__name__)
    app.config.update(SECRET_KEY="flask-flood", TESTING=True)
    KitSession(app, store=store)

    @app.get("/")
    def index() -> str:
        flash("Welcome!")
        return "ok"

    @app.get("/read")
    def read() -> str:
        return ",".join(get_flashed_messages())

    for _ in range(3_000):
        with app.test_client() as client:  # a new client each time: no cookie, like a bot
            assert client.get("/").status_code == 200
    assert len(store) == bound and len(evictions) == 3_000 - bound
    # The latest visitor's flash is still there.
    client = app.test_client()
    client.get("/")
    assert client.get("/read").get_data(as_text=True) == "Welcome!"


# -- what is dropped ----------------------------------------------------------------------------------


def test_expired_records_are_dropped_before_live_ones(evictions: list[dict[str, Any]]) -> None:
    store = MemoryStore(max_sessions=3)
    oldest_live = record_at(store, 1000, 500)
    expiring = record_at(store, 1000, 50)  # expires at 1050
    newest_live = record_at(store, 1000, 500)
    for record in (oldest_live, expiring, newest_live):
        assert store.create(record)
    # At t=1040 nothing has expired: the least recently used (oldest_live) goes.
    early = record_at(store, 1040, 500)
    assert store.create(early)
    assert [(e["handle"], e["reason"]) for e in evictions] == [(oldest_live.key, "least_recently_used")]
    # By use: expiring, newest_live, early.  A read makes "expiring" the most recently used...
    store.get(expiring.key)
    # ...but at t=1100 it has expired (at 1050): it goes first, not the least recently used newest_live.
    late = record_at(store, 1100, 500)
    assert store.create(late)
    assert evictions[-1]["handle"] == expiring.key and evictions[-1]["reason"] == "expired"
    assert store.get(newest_live.key) is not None and store.get(expiring.key) is None
    assert len(store) == 3


def test_expired_means_by_the_cores_clock(evictions: list[dict[str, Any]]) -> None:
    clock = FakeClock(start=2_000_000_000.0)
    store = MemoryStore(max_sessions=2)
    manager = SessionManager(store, keys=["k"], clock=clock, idle_timeout=60)
    idle = manager.create_session(data={"who": "idle"})
    clock.advance(30)
    busy = manager.create_session(data={"who": "busy"})
    manager.get_session(idle.id)  # type: ignore[arg-type]  # idle is now the most recently used...
    clock.advance(45)  # ...but its idle deadline (t+60) has passed; busy's (t+90) has not
    manager.create_session(data={"who": "new"})
    assert [(e["handle"], e["reason"]) for e in evictions] == [(idle.handle, "expired")]
    assert manager.get_session(busy.id) is not None  # type: ignore[arg-type]


def test_least_recently_used_means_read_or_written(evictions: list[dict[str, Any]]) -> None:
    store = MemoryStore(max_sessions=3)
    a, b, c, d, e, f, g = (record_at(store, 1000, 10_000) for _ in range(7))
    for record in (a, b, c):
        store.create(record)
    store.get(a.key)  # order by use: b, c, a
    store.create(d)  # drops b
    assert store.set(c.with_changes(data='{"n":1}', version=2), 1) is SetResult.SAVED  # a, d, c
    store.create(e)  # drops a
    assert store.touch(d.key, 1001, 11_000)  # c, e, d
    store.create(f)  # drops c
    store.get_all()
    store.get_all_for_user(1)  # listing is not use: e, d, f
    store.create(g)  # drops e
    assert [ev["handle"] for ev in evictions] == [b.key, a.key, c.key, e.key]
    assert {ev["reason"] for ev in evictions} == {"least_recently_used"}
    assert sorted(r.key for r in store.get_all()) == sorted([d.key, f.key, g.key])


def test_an_evicted_users_session_leaves_the_user_index(evictions: list[dict[str, Any]]) -> None:
    store = MemoryStore(max_sessions=2)
    first = record_at(store, 1000, 10_000, user_id=5)
    store.create(first)
    store.create(record_at(store, 1000, 10_000, user_id=5))
    store.create(record_at(store, 1000, 10_000, user_id=6))
    assert evictions[0]["handle"] == first.key and evictions[0]["user_id"] == 5
    assert len(store.get_all_for_user(5)) == 1
    assert store.delete_all_for_user(5) == 1 and store.get_all_for_user(5) == []


def test_every_drop_is_logged_with_counts_when_the_interval_allows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(memory, "EVICTION_LOG_INTERVAL", 0.0)
    store = MemoryStore(max_sessions=2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.create(record_at(store, 1000, 10))
        store.create(record_at(store, 1000, 1000))
        store.create(record_at(store, 1020, 1000))  # the first one expired at 1010
        store.create(record_at(store, 1020, 1000))
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2
    assert "dropped 1 expired and 0 least recently used" in messages[0]
    assert "dropped 0 expired and 1 least recently used" in messages[1]


def test_a_receiver_may_call_the_store(evictions: list[dict[str, Any]]) -> None:
    store = MemoryStore(max_sessions=1)
    seen: list[int] = []

    def count(sender: MemoryStore, **extra: Any) -> None:
        seen.append(len(sender.get_all()))  # takes the store's lock: the signal is sent after it is released

    signals.evicted.connect(count)
    try:
        store.create(record_at(store, 1000, 100))
        store.create(record_at(store, 1000, 100))
    finally:
        signals.evicted.disconnect(count)
    assert seen == [1]


def test_unbounded_store_never_drops(evictions: list[dict[str, Any]]) -> None:
    store = MemoryStore(max_sessions=None)
    for _ in range(3_000):
        store.create(record_at(store, 1000, 1))
    assert len(store) == 3_000 and evictions == []


def test_the_expiry_heap_stays_proportional_to_the_records() -> None:
    store = MemoryStore(max_sessions=10)
    records = [record_at(store, 1000, 100) for _ in range(10)]
    for record in records:
        store.create(record)
    for step in range(20_000):
        record = records[step % 10]
        assert store.touch(record.key, 1000 + step, 1100 + step)
    assert len(store._expiries) <= 2 * len(store) + 1024
    for _ in range(5_000):  # create/delete churn leaves stale entries too
        extra = record_at(store, 30_000, 100)
        store.create(extra)
        store.delete(extra.key)
    assert len(store._expiries) <= 2 * len(store) + 1024


# -- threads --------------------------------------------------------------------------------------------


def test_concurrent_reads_writes_and_evictions_keep_the_store_consistent() -> None:
    """A natural race: 6 threads read, write, touch, delete, purge and create over a bound."""
    bound = 300
    store = MemoryStore(max_sessions=bound)
    errors: list[BaseException] = []
    keys: list[str] = []
    start = threading.Barrier(6)

    def pick(rng: random.Random) -> str:
        return rng.choice(keys[-bound:])  # mostly keys still stored, so reads do reorder

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for step in range(3_000):
                choice = rng.random()
                now = 1000 + step
                if choice < 0.25 or not keys:
                    record = record_at(store, now, rng.choice((5, 5_000)), user_id=rng.choice((None, 1, 2)))
                    store.create(record)
                    keys.append(record.key)
                elif choice < 0.6:
                    store.get(pick(rng))
                elif choice < 0.7:
                    current = store.get(pick(rng))
                    if current is not None:
                        store.set(current.with_changes(version=current.version + 1, user_id=rng.choice((None, 1, 2))),
                                  current.version)
                elif choice < 0.78:
                    store.touch(pick(rng), now, now + 100)
                elif choice < 0.85:
                    store.delete(pick(rng))
                elif choice < 0.93:
                    store.purge_expired(now - 500)  # iterates every record while readers reorder them
                else:
                    store.get_all()
                assert len(store) <= bound
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    # Switch threads every few bytecodes instead of every 5 ms: lock-free reads then land
    # inside the writers' critical sections (eviction, purge, listing) many times.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(previous)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    records = {r.key: r for r in store.get_all()}
    assert len(records) <= bound
    for user in (1, 2):
        assert {r.key for r in store.get_all_for_user(user)} == {k for k, r in records.items() if r.user_id == user}


def test_a_read_in_the_middle_of_a_purge_scan_does_not_break_it() -> None:
    """The window widened: a lock-free read reorders the dict while purge_expired walks it.

    ``now`` is a float whose comparison reads a record (as another thread's request
    would, without the store's lock), so the read lands between two steps of the scan.
    """
    store = MemoryStore(max_sessions=100)
    records = [record_at(store, 1000, lifetime) for lifetime in (10, 500, 10, 500, 10, 500)]
    for record in records:
        store.create(record)

    class ReadingNow(float):
        reads = 0

        def __ge__(self, expires_at: object) -> bool:
            ReadingNow.reads += 1
            store.get(records[ReadingNow.reads % len(records)].key)  # moves it to the recent end
            return float(self) >= expires_at  # type: ignore[operator]

    assert store.purge_expired(ReadingNow(1100)) == 3
    assert ReadingNow.reads >= len(records)
    assert sorted(r.key for r in store.get_all()) == sorted(r.key for r in records if r.expires_at > 1100)
