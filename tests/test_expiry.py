"""Expiry with the fake clock: absolute lifetime, idle timeout, touch throttling, rolling caps."""

from __future__ import annotations

from typing import Any

import pytest

from kitsession_wsgi import SessionManager

from session_helpers import CountingStore, parse_set_cookie, stored_session


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def load(manager: SessionManager, header: str) -> Any:
    return manager.initialize_session({"Cookie": header})


# -- absolute lifetime ------------------------------------------------------------------------

READERS = ["initialize_session", "get_session"]


def read(manager: SessionManager, how: str, session_id: str, header: str) -> Any:
    if how == "initialize_session":
        session = load(manager, header)
        return None if session.is_new else session
    return manager.get_session(session_id)


@pytest.mark.parametrize("how", READERS)
@pytest.mark.parametrize(
    ("offset", "served"),
    [(0, True), (99.999, True), (100, False), (100.001, False), (10_000, False)],
    ids=["at-creation", "just-before", "at-max-age", "just-after", "long-after"],
)
def test_absolute_max_age(store: CountingStore, clock: Any, how: str, offset: float, served: bool) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100)
    session, header = stored_session(manager, store)
    clock.advance(offset)
    found = read(manager, how, session.id, header)
    if served:
        assert found is not None and found.data == {"n": 1}
        assert store.calls["delete"] == 0
    else:
        assert found is None
        assert store.get(session.handle) is None, "an expired record found on read is deleted"
        assert store.calls["delete"] == 1


def test_expired_cookie_is_cleared_and_nothing_is_written(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100)
    _, header = stored_session(manager, store)
    clock.advance(100)
    session = load(manager, header)
    assert session.is_new
    assert parse_set_cookie(manager.commit(session)).is_removal
    assert store.calls["create"] == store.calls["set"] == store.calls["touch"] == 0


def test_activity_does_not_extend_the_absolute_lifetime(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100, idle_timeout=30)
    _, header = stored_session(manager, store)
    for step in range(1, 10):
        clock.advance(10)  # t = 10 .. 90
        session = load(manager, header)
        assert not session.is_new, f"lost at t={step * 10}"
        session.data["step"] = step  # a write every time
        manager.commit(session)
        assert store.get(session.handle).expires_at <= session.created_at + 100  # type: ignore[union-attr]
    clock.advance(10)  # t = 100
    assert load(manager, header).is_new


# -- idle timeout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle_for", "served"), [(29.999, True), (30, False), (31, False)], ids=["just-within", "exactly", "beyond"]
)
def test_idle_timeout(store: CountingStore, clock: Any, idle_for: float, served: bool) -> None:
    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=30)
    session, header = stored_session(manager, store)
    assert session.expires_at == session.created_at + 30
    clock.advance(idle_for)
    loaded = load(manager, header)
    assert loaded.is_new is not served
    if not served:
        assert store.get(session.handle) is None


def test_activity_within_the_window_keeps_the_session_and_touches_at_most_once_per_interval(
    store: CountingStore, clock: Any
) -> None:
    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=30, max_age=10_000)
    assert manager.touch_interval == 3
    _, header = stored_session(manager, store)
    for _ in range(90):  # one unchanged request a second for 90 s: three idle windows
        clock.advance(1)
        session = load(manager, header)
        assert not session.is_new
        assert manager.commit(session) is None  # not rolling: no cookie
    touches = store.calls["touch"]
    assert 1 <= touches <= 90 / 3
    assert store.calls["set"] == 0  # unchanged: never rewritten
    # the last touch was at most one interval ago, so the session lives on past idle_timeout - interval
    clock.advance(30 - 3 - 0.001)
    assert not load(manager, header).is_new


@pytest.mark.parametrize(("interval", "most"), [(10, 9), (45, 2)], ids=["10s", "45s"])
def test_touch_interval_option(store: CountingStore, clock: Any, interval: float, most: int) -> None:
    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=60, touch_interval=interval)
    _, header = stored_session(manager, store)
    for _ in range(90):
        clock.advance(1)
        session = load(manager, header)
        assert not session.is_new
        manager.commit(session)
    assert 1 <= store.calls["touch"] <= most


def test_without_idle_timeout_an_unchanged_session_is_never_written(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=1000)
    _, header = stored_session(manager, store)
    for _ in range(50):
        clock.advance(10)
        assert manager.commit(load(manager, header)) is None
    assert store.writes() == 0


def test_a_session_idle_once_is_gone_even_after_earlier_activity(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=30)
    _, header = stored_session(manager, store)
    for _ in range(5):
        clock.advance(20)
        manager.commit(load(manager, header))
    clock.advance(31)
    assert load(manager, header).is_new


# -- rolling -----------------------------------------------------------------------------------


def test_rolling_moves_cookie_and_record_but_never_past_the_absolute_lifetime(store: CountingStore,
                                                                               clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100, idle_timeout=30, rolling=True)
    session, header = stored_session(manager, store)
    absolute = session.created_at + 100
    first = parse_set_cookie(manager.set_session_cookie(session))
    assert (first.max_age, first.expires) == (30, session.created_at + 30)

    seen_caps = []
    for elapsed in (25, 50, 75):
        clock.advance(elapsed - (clock() - session.created_at))
        loaded = load(manager, header)
        assert not loaded.is_new, f"lost at t={elapsed}"
        cookie = parse_set_cookie(manager.commit(loaded))
        record = store.get(session.handle)
        assert record is not None
        expected = min(clock() + 30, absolute)
        assert record.expires_at == expected == loaded.expires_at
        assert cookie.expires == expected
        assert cookie.max_age == round(expected - clock())
        assert cookie.expires <= absolute and record.expires_at <= absolute
        seen_caps.append(expected == absolute)
    assert seen_caps == [False, False, True]  # the cap was really reached
    # already at the cap: nothing left to move, nothing sent
    clock.advance(20)  # t = 95
    assert manager.commit(load(manager, header)) is None
    assert store.get(session.handle).expires_at == absolute  # type: ignore[union-attr]
    clock.advance(absolute - clock())
    assert load(manager, header).is_new


def test_rolling_on_a_write_is_capped_too(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100, idle_timeout=95, rolling=True)
    session, header = stored_session(manager, store)
    clock.advance(90)
    loaded = load(manager, header)
    assert not loaded.is_new
    loaded.data["late"] = True
    cookie = parse_set_cookie(manager.commit(loaded))
    assert cookie.expires == session.created_at + 100
    assert cookie.max_age == 10
    assert store.get(session.handle).expires_at == session.created_at + 100  # type: ignore[union-attr]


def test_without_rolling_the_cookie_keeps_the_absolute_expiry(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=1000, idle_timeout=30)
    session, header = stored_session(manager, store)
    assert parse_set_cookie(manager.set_session_cookie(session)).expires == session.created_at + 1000
    clock.advance(20)
    loaded = load(manager, header)
    loaded.data["x"] = 1
    assert manager.commit(loaded) is None  # saved, idle deadline moved server-side, no cookie
    assert store.get(session.handle).expires_at == clock() + 30  # type: ignore[union-attr]


# -- listings and purge never serve expired sessions ----------------------------------------------


def test_listings_skip_expired_sessions(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100, idle_timeout=50)
    old = manager.create_session(user_id=1, data={"which": "old"})
    clock.advance(60)
    idle = manager.create_session(user_id=1, data={"which": "idle"})
    clock.advance(30)
    live = manager.create_session(user_id=1, data={"which": "live"})
    anonymous = manager.create_session(data={"which": "anon"})
    clock.advance(25)  # t=115: old past max_age (and idle), idle idle for 55 s, live 25 s old
    assert [s.handle for s in manager.get_all_sessions()] == [live.handle, anonymous.handle]
    assert [s.handle for s in manager.get_sessions_for_user(1)] == [live.handle]
    assert manager.get_session(old.id) is None  # type: ignore[arg-type]
    assert manager.get_session(idle.id) is None  # type: ignore[arg-type]
    assert manager.get_session(live.id) is not None  # type: ignore[arg-type]


def test_purge_expired_removes_only_expired_sessions(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100)
    for _ in range(3):
        manager.create_session(data={"a": 1})
    clock.advance(50)
    keep = manager.create_session(data={"b": 2})
    assert manager.purge_expired() == 0
    clock.advance(50)
    assert manager.purge_expired() == 3
    assert [r.key for r in store.get_all()] == [keep.handle]
    assert manager.purge_expired() == 0


def test_an_expired_session_is_not_resurrected_by_its_slow_request(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100)
    _, header = stored_session(manager, store)
    clock.advance(99)
    loaded = load(manager, header)
    assert not loaded.is_new
    clock.advance(5)  # the request outlives the session
    loaded.data["late"] = True
    manager.commit(loaded)
    assert load(manager, header).is_new
    assert manager.get_all_sessions() == []


@pytest.mark.xfail(reason="core limitation: purge_expired() only asks the store for expires_at <= now; after "
                          "max_age is lowered, sessions past created_at + max_age are never served or listed "
                          "(test_lowered_max_age.py) yet never purged either", strict=True)
def test_purge_expired_follows_a_lowered_max_age(store: CountingStore, clock: Any) -> None:
    SessionManager(store, keys="k", clock=clock, max_age=1000).create_session(data={"a": 1})
    lowered = SessionManager(store, keys="k", clock=clock, max_age=100)
    clock.advance(200)
    assert lowered.purge_expired() == 1


@pytest.mark.parametrize("interval", [30, 60], ids=["equal", "longer"])
def test_touch_interval_not_below_idle_timeout_is_rejected(store: CountingStore, clock: Any,
                                                           interval: float) -> None:
    from kitsession_wsgi import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        SessionManager(store, keys="k", clock=clock, idle_timeout=30, touch_interval=interval)
    assert raised.value.option == "touch_interval"


def test_regenerate_keeps_the_absolute_lifetime(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=100)
    session, header = stored_session(manager, store)
    clock.advance(90)
    loaded = load(manager, header)
    manager.regenerate(loaded)
    cookie = parse_set_cookie(manager.commit(loaded))
    assert cookie.expires == session.created_at + 100
    clock.advance(10)
    assert load(manager, cookie.request_header).is_new
