"""Servers dying mid-run: outages raise StoreUnavailable, healthy nodes keep serving, recovery needs no new client.

Every server here is private to its test (killed and restarted on purpose).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pymemcache.exceptions import MemcacheError

from cache_servers import cookie_for, servers_holding
from kitsession_wsgi import Session, SessionManager, StoreUnavailable
from kitsession_wsgi.stores.memcached import MemcachedStore, StrictHashClient
from kitsession_wsgi.stores.redis import RedisStore
from kitsession_wsgi.testing import make_record
from polling import wait_until
from servers import PrivateServer, start_memcached, start_redis

RECOVERY_DEADLINE = 20.0


@pytest.fixture
def private_servers() -> Iterator[list[PrivateServer]]:
    """Servers a test starts; each is stopped by its pid at the end, whatever happened."""
    started: list[PrivateServer] = []
    yield started
    for server in started:
        server.stop()


def _until_it_works(action: Callable[[], Any]) -> Any:
    """``action()`` once it stops raising StoreUnavailable (a node in its dead window), up to a deadline."""
    def attempt() -> Any:
        try:
            return action()
        except StoreUnavailable:
            return None

    return wait_until(attempt, timeout=RECOVERY_DEADLINE, what="the store works again")


def _loads(manager: SessionManager, session: Session) -> Session:
    loaded = manager.initialize_session({"Cookie": cookie_for(manager, session)})
    assert not loaded.is_new, "a live session was not served"
    assert loaded.data == session.data
    return loaded


# -- memcached cluster ------------------------------------------------------------------


def test_a_dead_memcached_node_fails_only_its_own_sessions_and_is_used_again_when_back(
    private_servers: list[PrivateServer],
) -> None:
    for _ in range(3):
        private_servers.append(start_memcached())
    addresses = [s.address for s in private_servers]
    store = MemcachedStore.from_servers(addresses, dead_timeout=0.5)
    assert isinstance(store.client, StrictHashClient)
    manager = SessionManager(store, keys=["fault-key"])
    victim = private_servers[0]

    # A user whose session index lives on the node that will die.
    user = next(f"user-{n}" for n in range(1000) if store.client.node_for(store._user_key(f"user-{n}")) == victim.address)
    sessions = [manager.create_session(data={"n": n}) for n in range(30)]
    sessions += [manager.create_session(user_id=user, data={"u": n}) for n in range(12)]
    node_of = {s.handle: servers_holding(addresses, "kitsession:" + (s.handle or "")) for s in sessions}
    assert all(len(nodes) == 1 for nodes in node_of.values())
    on_dead = [s for s in sessions if node_of[s.handle] == [victim.address]]
    on_live = [s for s in sessions if node_of[s.handle] != [victim.address]]
    assert on_dead and on_live
    assert any(s.user_id == user for s in on_live), "no session of the index-less user on a live node"

    victim.kill()

    # Several rounds: pymemcache's HashClient would answer a miss from the second
    # failure on and move the node's keys elsewhere after retry_attempts.
    for _round in range(4):
        for session in on_dead:
            with pytest.raises(StoreUnavailable) as raised:
                manager.initialize_session({"Cookie": cookie_for(manager, session)})
            assert isinstance(raised.value.__cause__, (OSError, MemcacheError))
            with pytest.raises(StoreUnavailable):
                store.get(session.handle or "")
        for session in on_live:
            _loads(manager, session)  # includes the user's sessions: reads never touch the index node

    # The user's index is on the dead node: listing, revoking and new logins raise, never a silent miss.
    with pytest.raises(StoreUnavailable):
        manager.get_sessions_for_user(user)
    with pytest.raises(StoreUnavailable):
        manager.remove_all_sessions_for_user(user)
    with pytest.raises(StoreUnavailable):
        manager.create_session(user_id=user, data={"late": True})

    # New anonymous sessions: those whose key lands on the dead node raise, the others work.
    created, refused = [], 0
    for n in range(30):
        try:
            created.append(manager.create_session(data={"new": n}))
        except StoreUnavailable:
            refused += 1
    assert created and refused
    for session in created:
        _loads(manager, session)

    revived = start_memcached(port=victim.port)
    private_servers.append(revived)

    # After dead_timeout the node is used again: a new session lands on it and is served from it.
    def session_on_revived_node() -> Session | None:
        try:
            session = manager.create_session(data={"after": "restart"})
        except StoreUnavailable:  # the node is still in its dead window
            return None
        return session if servers_holding([revived.address], "kitsession:" + (session.handle or "")) else None

    back = wait_until(session_on_revived_node, timeout=RECOVERY_DEADLINE,
                      what="a new session lands on the revived node")
    _loads(manager, back)
    # The restarted memcached lost its items: the old sessions there are now simply unknown.
    for session in on_dead:
        assert manager.initialize_session({"Cookie": cookie_for(manager, session)}).is_new
    for session in on_live:
        _loads(manager, session)


def test_a_strict_hash_client_with_no_dead_window_tries_the_node_on_every_call(
    private_servers: list[PrivateServer],
) -> None:
    for _ in range(2):
        private_servers.append(start_memcached())
    store = MemcachedStore.from_servers([s.address for s in private_servers], dead_timeout=0)
    victim = private_servers[1]
    record = next(r for r in (make_record(store) for _ in range(200))
                  if store.client.node_for("kitsession:" + r.key) == victim.address)
    victim.kill()
    for _ in range(5):
        with pytest.raises(StoreUnavailable):
            store.create(record)
    private_servers.append(start_memcached(port=victim.port))
    assert store.create(record) is True  # no waiting: the node is tried at once
    assert store.get(record.key) is not None


def test_a_single_memcached_outage_raises_and_the_same_store_recovers(
    private_servers: list[PrivateServer],
) -> None:
    server = start_memcached()
    private_servers.append(server)
    store = MemcachedStore.from_servers([server.address])
    client = store.client
    manager = SessionManager(store, keys=["k"])
    session = manager.create_session(user_id=1, data={"a": 1})
    server.kill()
    calls: list[Callable[[], Any]] = [
        lambda: manager.initialize_session({"Cookie": cookie_for(manager, session)}),
        lambda: manager.create_session(data={"b": 1}),
        lambda: manager.get_sessions_for_user(1),
        lambda: manager.remove_all_sessions_for_user(1),
        store.get_all,
        lambda: store.purge_expired(time.time()),
        lambda: store.acquire_lock(session.handle or "", "t", 5),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable):
            call()
    private_servers.append(start_memcached(port=server.port))
    fresh = _until_it_works(lambda: manager.create_session(user_id=1, data={"b": 2}))
    _loads(manager, fresh)
    assert store.client is client


# -- Redis ------------------------------------------------------------------------------


def test_a_redis_outage_raises_and_the_same_store_recovers_after_a_restart(
    private_servers: list[PrivateServer],
) -> None:
    server = start_redis()
    private_servers.append(server)
    store = RedisStore.from_url(f"redis://{server.address}/0")
    client = store.client
    manager = SessionManager(store, keys=["k"])
    session = manager.create_session(user_id=1, data={"a": 1})
    loaded = _loads(manager, session)

    server.kill()
    record = make_record(store, user_id=1)
    calls: list[Callable[[], Any]] = [
        lambda: manager.initialize_session({"Cookie": cookie_for(manager, session)}),
        lambda: manager.create_session(data={"b": 1}),
        lambda: manager.get_sessions_for_user(1),
        lambda: manager.remove_all_sessions_for_user(1),
        manager.get_all_sessions,
        manager.purge_expired,
        lambda: store.set(record, 1),
        lambda: store.touch(record.key, record.updated_at, record.expires_at),
        lambda: store.delete(record.key),
        lambda: store.acquire_lock(record.key, "t", 5),
        lambda: store.release_lock(record.key, "t"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert isinstance(raised.value.__cause__, (redis.ConnectionError, redis.TimeoutError))
    loaded.data["b"] = 2
    with pytest.raises(StoreUnavailable):
        manager.commit(loaded)

    private_servers.append(start_redis(port=server.port))
    # The same store and client: redis-py reconnects, register_script re-loads the scripts.
    fresh = _until_it_works(lambda: manager.create_session(user_id=1, data={"after": "restart"}))
    again = _loads(manager, fresh)
    again.data["more"] = True
    assert manager.commit(again) is None  # the versioned-save script, re-loaded on NOSCRIPT
    reread = manager.initialize_session({"Cookie": cookie_for(manager, fresh)})
    assert not reread.is_new and reread.data == {"after": "restart", "more": True}
    assert [s.handle for s in manager.get_sessions_for_user(1)] == [fresh.handle]
    assert manager.remove_session(again) is True
    assert store.client is client
