"""MemcachedStore against private memcached servers: one server, and a 3-node cluster."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.exceptions import MemcacheError
from pymemcache.client.hash import HashClient

from cache_servers import CountingProxy, concurrent_logins_for_one_user, cookie_for, servers_holding
from kitsession_wsgi import ConfigurationError, SessionDataError, SessionManager, SetResult, StoreUnavailable
from kitsession_wsgi.manager import session_key
from kitsession_wsgi.stores.memcached import MemcachedNodeDown, MemcachedStore, StrictHashClient
from kitsession_wsgi.testing import DAY, StoreContract, make_record
from polling import wait_until
from servers import PrivateServer, free_port, service_missing, start_memcached
from thread_helpers import run_threads


@pytest.fixture(scope="module")
def memcached_server() -> Iterator[PrivateServer]:
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def memcached_cluster() -> Iterator[list[PrivateServer]]:
    servers: list[PrivateServer] = []
    try:
        for _ in range(3):
            servers.append(start_memcached())
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def tiny_item_memcached() -> Iterator[PrivateServer]:
    """A memcached whose items hold at most 2 KB, so an index fills up after ~45 entries."""
    binary = shutil.which("memcached")
    if binary is None:
        service_missing("memcached is not installed (apt-get install -y memcached)")
    port = free_port()
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64",
            "-I", "2k", "-o", "slab_chunk_max=2048"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    server = PrivateServer("memcached", argv, port).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_item_memcached() -> Iterator[PrivateServer]:
    """A memcached whose items hold at most 64 KB: a global-index bucket fills after ~1,450 entries."""
    binary = shutil.which("memcached")
    if binary is None:
        service_missing("memcached is not installed (apt-get install -y memcached)")
    port = free_port()
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-I", "64k",
            "-o", "slab_chunk_max=32768"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    server = PrivateServer("memcached", argv, port).start()
    yield server
    server.stop()


def _flushed(store: MemcachedStore) -> MemcachedStore:
    store.client.flush_all(noreply=False)  # type: ignore[attr-defined]
    return store


@pytest.fixture
def single_store(memcached_server: PrivateServer) -> Iterator[MemcachedStore]:
    store = _flushed(MemcachedStore.from_servers([memcached_server.address]))
    yield store
    store.close()


@pytest.fixture
def cluster_store(memcached_cluster: list[PrivateServer]) -> Iterator[MemcachedStore]:
    store = _flushed(MemcachedStore.from_servers([s.address for s in memcached_cluster]))
    yield store
    store.close()


class TestMemcachedSingleServerContract(StoreContract):
    @pytest.fixture
    def store(self, single_store: MemcachedStore) -> Iterator[MemcachedStore]:
        yield single_store


class TestMemcachedClusterContract(StoreContract):
    @pytest.fixture
    def store(self, cluster_store: MemcachedStore) -> Iterator[MemcachedStore]:
        yield cluster_store


# -- configuration ---------------------------------------------------------------------


def test_from_servers_builds_a_pooled_no_delay_client_for_one_server(memcached_server: PrivateServer) -> None:
    store = MemcachedStore.from_servers([memcached_server.address], max_pool_size=3, pool_idle_timeout=30)
    client = store.client
    assert isinstance(client, PooledClient)
    assert client.server == ("127.0.0.1", memcached_server.port)
    assert client.no_delay is True and client.ignore_exc is False and client.default_noreply is False
    assert client.connect_timeout == 2.0 and client.timeout == 2.0  # store_timeout's default
    assert client.client_pool.max_size == 3 and client.client_pool.idle_timeout == 30


def test_from_servers_builds_a_strict_pooled_hash_client_for_several(memcached_cluster: list[PrivateServer]) -> None:
    store = MemcachedStore.from_servers([s.address for s in memcached_cluster], dead_timeout=0.25, max_pool_size=2)
    client = store.client
    assert isinstance(client, StrictHashClient)
    assert client.ignore_exc is False and client.dead_timeout == 0.25
    assert client.default_kwargs["no_delay"] is True and client.default_kwargs["default_noreply"] is False
    nodes = list(client.clients.values())
    assert len(nodes) == 3 and all(isinstance(node, PooledClient) and node.client_pool.max_size == 2 for node in nodes)


def test_strict_hash_client_defaults_are_the_safe_ones(memcached_cluster: list[PrivateServer]) -> None:
    client = StrictHashClient([s.address for s in memcached_cluster])
    assert client.ignore_exc is False and client.dead_timeout == 1.0
    assert client.default_kwargs["no_delay"] is True and client.default_kwargs["default_noreply"] is False
    assert all(isinstance(node, PooledClient) and node.default_noreply is False and node.no_delay is True
               for node in client.clients.values())


def test_strict_hash_client_can_still_use_pymemcache_pools(memcached_cluster: list[PrivateServer]) -> None:
    client = StrictHashClient([s.address for s in memcached_cluster], use_pooling=True)
    assert all(isinstance(node, PooledClient) for node in client.clients.values())
    store = MemcachedStore(client)
    record = make_record(store)
    assert store.create(record) is True and store.get(record.key) == record
    client.close()


@pytest.mark.parametrize(
    ("option", "value"),
    [("use_pooling", False), ("retry_attempts", 5), ("retry_timeout", 1), ("dead_timeout", -1),
     ("dead_timeout", True), ("dead_timeout", "1")],
    ids=repr,
)
def test_strict_hash_client_refuses_options_that_would_skip_or_drop_a_node(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        StrictHashClient(["127.0.0.1:11211", "127.0.0.1:11212"], **{option: value})


@pytest.mark.parametrize("servers", [[], "127.0.0.1:11211"], ids=repr)
def test_strict_hash_client_needs_a_list_of_servers(servers: object) -> None:
    with pytest.raises(ConfigurationError, match="servers"):
        StrictHashClient(servers)  # type: ignore[arg-type]


def test_strict_hash_client_overrides_no_private_pymemcache_method() -> None:
    # pymemcache is not pinned: overriding its private methods would break silently on an upgrade.
    private = {name for name in vars(HashClient) if name.startswith("_") and not name.startswith("__")}
    assert private, "HashClient has no private methods to compare against"
    assert sorted(private & set(vars(StrictHashClient))) == []


def test_from_servers_refuses_unknown_client_options() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        MemcachedStore.from_servers(["127.0.0.1:11211"], no_such_option=1)


def test_a_pymemcache_hash_client_in_its_retry_window_is_a_miss_not_a_crash(memcached_server: PrivateServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.warns(RuntimeWarning):
        store = MemcachedStore(HashClient([memcached_server.address, dead], connect_timeout=0.2, timeout=0.2,
                                          retry_attempts=2, retry_timeout=30))
    outcomes = set()
    for _ in range(12):  # keys on both nodes; each read twice, the second inside the retry window
        record = make_record(store)
        for _ in range(2):
            try:
                outcomes.add(type(store.get(record.key)).__name__)
            except StoreUnavailable:
                outcomes.add("StoreUnavailable")
    assert outcomes <= {"NoneType", "StoreUnavailable"} and "NoneType" in outcomes
    store.client.close()


# -- the clients: threads, outages ------------------------------------------------------


def test_the_single_server_client_is_safe_to_share_between_threads(memcached_server: PrivateServer) -> None:
    store = MemcachedStore.from_servers([memcached_server.address])
    client: Any = store.client
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(300):
            key, value = f"pool-thread-{n}", f"{n}:{i}".encode()
            client.set(key, value, noreply=False)
            got = client.get(key)
            if got != value:
                errors.append(f"thread {n} wrote {value!r}, read {got!r}")

    run_threads(8, worker)
    assert errors == []
    assert 1 <= len(client.client_pool.free) <= 8 and client.client_pool.used == ()
    store.close()


def _idle_connections(client: Any, count: int) -> list[Any]:
    """Open ``count`` connections of a pymemcache PooledClient and leave them idle in its pool."""
    pool = client.client_pool
    busy = [pool.get() for _ in range(count)]
    for connection in busy:
        connection.get("warm")  # connects
    for connection in busy:
        pool.release(connection)
    assert len(pool.free) == count and all(connection.sock is not None for connection in busy)
    return busy


def test_a_lost_connection_closes_the_idle_ones_and_the_store_reconnects_at_once() -> None:
    port = free_port()
    server = start_memcached(port)
    store = MemcachedStore.from_servers([("127.0.0.1", port)], connect_timeout=0.5, timeout=0.5)
    client: Any = store.client
    try:
        record = make_record(store)
        assert store.create(record) is True
        idle = _idle_connections(client, 3)
        server.stop()
        with pytest.raises(StoreUnavailable):
            store.get(record.key)
        # Every idle connection to the lost server is closed, not only the one that failed.
        assert client.client_pool.free == () and all(connection.sock is None for connection in idle)
        with pytest.raises(StoreUnavailable):
            store.get(record.key)  # nothing listens: connecting fails
        server = start_memcached(port)
        assert store.get(record.key) is None  # the first call after the restart works (an empty server)
        assert store.create(record) is True and store.get(record.key) == record
    finally:
        store.close()
        server.stop()


#: every key command of HashClient, with the arguments after the key (None: a many-keys command)
_KEY_COMMANDS: dict[str, tuple[Any, ...] | None] = {
    "get": (), "gets": (), "set": (b"v",), "add": (b"v",), "replace": (b"v",), "append": (b"v",),
    "prepend": (b"v",), "cas": (b"v", b"1"), "delete": (), "touch": (60,), "incr": (1,), "decr": (1,),
    "get_many": None, "gets_many": None, "set_many": None, "delete_many": None,
}


def _run_key_command(client: StrictHashClient, command: str, key: str) -> Any:
    method = getattr(client, command)
    args = _KEY_COMMANDS[command]
    if args is not None:
        return method(key, *args) if command in ("get", "gets") else method(key, *args, noreply=False)
    if command == "set_many":
        return method({key: b"2"}, noreply=False)
    return method([key], noreply=False) if command == "delete_many" else method([key])


def test_every_key_command_of_a_strict_hash_client_raises_for_a_dead_node_and_keeps_it() -> None:
    assert set(_KEY_COMMANDS) < set(dir(HashClient))
    servers = [start_memcached() for _ in range(2)]
    client = StrictHashClient([s.address for s in servers], connect_timeout=0.5, timeout=0.5, dead_timeout=0)
    try:
        victim = servers[0]
        dead_key = next(f"k{n}" for n in range(200) if client.node_for(f"k{n}") == victim.address)
        live_key = next(f"k{n}" for n in range(200) if client.node_for(f"k{n}") != victim.address)
        for key in (dead_key, live_key):
            client.set(key, b"1", noreply=False)
        victim.kill()
        answered = {}
        for command in _KEY_COMMANDS:
            # pymemcache's HashClient answers a default from the second failure on and drops the
            # node after retry_attempts (2): this client raises every time, the key stays on its node.
            for attempt in range(4):
                try:
                    answered[command, attempt] = _run_key_command(client, command, dead_key)
                except (OSError, MemcacheError):
                    pass
            client.set(live_key, b"1", noreply=False)
            _run_key_command(client, command, live_key)  # the other node is unaffected
        assert answered == {}
        assert client.node_for(dead_key) == victim.address and len(client.clients) == 2
        servers[0] = start_memcached(victim.port)
        client.set(dead_key, b"1", noreply=False)  # used again at once (dead_timeout=0)
        for command in _KEY_COMMANDS:
            _run_key_command(client, command, dead_key)
            client.set(dead_key, b"1", noreply=False)
    finally:
        client.close()
        for server in servers:
            server.stop()


def test_a_strict_hash_client_fails_fast_inside_its_dead_window() -> None:
    servers = [start_memcached() for _ in range(2)]
    client = StrictHashClient([s.address for s in servers], connect_timeout=0.5, timeout=0.5, dead_timeout=30)
    try:
        dead_key = next(f"k{n}" for n in range(200) if client.node_for(f"k{n}") == servers[0].address)
        servers[0].kill()
        with pytest.raises((OSError, MemcacheError)) as first:
            client.get(dead_key)
        assert not isinstance(first.value, MemcachedNodeDown)  # the real failure first
        with pytest.raises(MemcachedNodeDown, match=servers[0].address):
            client.get(dead_key)  # then at once, without trying the node
        with pytest.raises(MemcachedNodeDown):
            client.get_many([dead_key, "other"])
    finally:
        client.close()
        for server in servers:
            server.stop()


def test_a_client_that_ignores_errors_is_refused(memcached_server: PrivateServer) -> None:
    with pytest.raises(ConfigurationError, match="ignore_exc"):
        MemcachedStore(PooledClient(memcached_server.address, ignore_exc=True))
    with pytest.raises(ConfigurationError, match="ignore_exc"):
        StrictHashClient([memcached_server.address], ignore_exc=True)


def test_pymemcache_hash_client_draws_a_warning(memcached_cluster: list[PrivateServer]) -> None:
    with pytest.warns(RuntimeWarning, match="StrictHashClient"):
        MemcachedStore(HashClient([s.address for s in memcached_cluster], use_pooling=True))


@pytest.mark.parametrize(
    ("option", "value"),
    [("key_prefix", "has space:"), ("key_prefix", "x" * 101), ("key_prefix", "caf\u00e9:"),
     ("index_buckets", 0), ("index_buckets", True), ("max_item_bytes", 10), ("max_item_bytes", 1.5)],
    ids=repr,
)
def test_bad_options_name_themselves(memcached_server: PrivateServer, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        MemcachedStore(PooledClient(memcached_server.address), **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("servers", [[], "127.0.0.1:11211"], ids=repr)
def test_from_servers_needs_a_list_of_servers(servers: object) -> None:
    with pytest.raises(ConfigurationError, match="servers"):
        MemcachedStore.from_servers(servers)  # type: ignore[arg-type]


# -- writes are confirmed, never noreply ----------------------------------------------


def test_writes_are_confirmed_even_on_a_client_that_defaults_to_noreply(memcached_server: PrivateServer) -> None:
    client = PooledClient(memcached_server.address, no_delay=True)  # pymemcache default: noreply writes
    assert client.default_noreply is True
    client.flush_all(noreply=False)
    store = MemcachedStore(client)
    record = make_record(store)
    assert store.create(record) is True
    # With noreply, "add" reports success without waiting for NOT_STORED.
    assert store.create(record.with_changes(data='{"again":1}')) is False
    assert store.acquire_lock(record.key, "a", 30) is True
    assert store.acquire_lock(record.key, "b", 30) is False
    assert store.set(make_record(store), 1) is SetResult.MISSING


# -- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["has space", "new\nline", "caf\u00e9 \u2603", "x" * 300, "a:b", "", "~" + "A" * 43], ids=repr
)
def test_keys_that_are_not_digests_are_hashed_and_still_work(single_store: MemcachedStore, key: str) -> None:
    record = make_record(single_store, user_id="k").with_changes(key=key)
    assert single_store.create(record) is True
    got = single_store.get(key)
    assert got is not None and got.key == key
    assert [r.key for r in single_store.get_all_for_user("k")] == [key]
    assert single_store.touch(key, record.updated_at + 1, record.expires_at + 1) is True
    assert single_store.set(record.with_changes(version=2, data='{"n":2}'), 1) is SetResult.SAVED
    assert single_store.delete(key) is True
    assert single_store.get(key) is None


def test_digest_keys_are_stored_under_the_prefix_as_they_are(
    single_store: MemcachedStore, memcached_server: PrivateServer
) -> None:
    record = make_record(single_store)
    single_store.create(record)
    assert servers_holding([memcached_server.address], "kitsession:" + record.key) == [memcached_server.address]


# -- expiry -----------------------------------------------------------------------------


@pytest.mark.parametrize("days", [29, 30, 31, 90, 400], ids=lambda d: f"{d}days")
def test_lifetimes_over_30_days_are_sent_as_absolute_time(single_store: MemcachedStore, days: int) -> None:
    # Sent as a relative 31-day expiry, memcached would read a date in 1970 and drop the item.
    record = make_record(single_store, lifetime=days * DAY)
    assert single_store.create(record)
    assert single_store.get(record.key) is not None
    assert single_store.touch(record.key, record.updated_at + 1, record.expires_at + 1)
    assert single_store.get(record.key) is not None
    assert single_store.set(record.with_changes(version=2), 1) is SetResult.SAVED
    assert single_store.get(record.key) is not None


@pytest.mark.parametrize("years", [12, 20, 100], ids=lambda y: f"{y}years")
def test_lifetimes_past_2038_are_kept_and_read_back(single_store: MemcachedStore, years: int) -> None:
    # memcached drops an absolute expiry past 2**31 - 1 at once: the item TTL is capped there.
    record = make_record(single_store, lifetime=years * 365 * DAY)
    assert single_store.create(record)
    assert single_store.get(record.key) == record
    assert single_store.touch(record.key, record.updated_at + 1, record.expires_at + 1)
    assert single_store.get(record.key) is not None
    assert single_store.set(record.with_changes(version=2), 1) is SetResult.SAVED
    got = single_store.get(record.key)
    assert got is not None and got.version == 2 and got.expires_at == record.expires_at


def test_a_twenty_year_max_age_session_is_served_and_still_ends_on_its_record(
    single_store: MemcachedStore, clock: Any
) -> None:
    manager = SessionManager(single_store, keys=["k"], max_age=20 * 365 * DAY, clock=clock)
    session = manager.create_session(user_id=7, data={"n": 1})
    cookie = cookie_for(manager, session)
    loaded = manager.initialize_session({"Cookie": cookie})
    assert not loaded.is_new and loaded.data == {"n": 1} and loaded.user_id == 7
    clock.advance(20 * 365 * DAY + 1)  # the record's expires_at ends it, not memcached's capped TTL
    assert manager.initialize_session({"Cookie": cookie}).is_new


def test_memcached_expires_the_item_on_the_records_ttl(single_store: MemcachedStore) -> None:
    record = make_record(single_store, lifetime=DAY)
    single_store.create(record)
    assert single_store.touch(record.key, time.time(), time.time() + 1) is True
    wait_until(lambda: single_store.get(record.key) is None, timeout=10, what="memcached expired the touched item")


# -- item size --------------------------------------------------------------------------


def test_a_record_over_max_item_bytes_raises_before_anything_is_written(single_store: MemcachedStore) -> None:
    store = MemcachedStore(single_store.client, max_item_bytes=4096)
    too_big = '{"blob":"' + "x" * 5000 + '"}'
    record = make_record(store, user_id=1, data=too_big)
    with pytest.raises(SessionDataError, match="max_item_bytes=4096"):
        store.create(record)
    assert store.get(record.key) is None and store.get_all_for_user(1) == []
    small = make_record(store, user_id=1)
    assert store.create(small)
    with pytest.raises(SessionDataError, match="max_item_bytes"):
        store.set(small.with_changes(data=too_big, version=2), 1)
    got = store.get(small.key)
    assert got is not None and got.data == small.data and got.version == 1


def test_a_record_the_server_finds_too_large_is_a_data_error(single_store: MemcachedStore) -> None:
    # max_item_bytes set above the server's real 1 MB item size: the server's refusal is still a data error.
    store = MemcachedStore(single_store.client, max_item_bytes=8 * 1024 * 1024)
    record = make_record(store, data='{"blob":"' + "x" * 1_500_000 + '"}')
    with pytest.raises(SessionDataError, match="too large"):
        store.create(record)
    assert store.get(record.key) is None


# -- indexes ----------------------------------------------------------------------------


def test_stale_user_index_entries_are_pruned_when_read(single_store: MemcachedStore) -> None:
    records = [make_record(single_store, user_id=31) for _ in range(3)]
    for record in records:
        single_store.create(record)
    evicted = records[1]
    single_store.client.delete("kitsession:" + evicted.key, noreply=False)  # as an LRU eviction would
    assert sorted(r.key for r in single_store.get_all_for_user(31)) == sorted([records[0].key, records[2].key])
    index = single_store.client.get(single_store._user_key(31))
    assert evicted.key.encode() not in index and records[0].key.encode() in index
    assert evicted.key not in {r.key for r in single_store.get_all()}
    buckets = single_store.client.get_many(single_store._global_index.bucket_keys)
    assert not any(evicted.key.encode() in value for value in buckets.values())


def test_sign_out_everywhere_never_deletes_a_session_that_moved_to_another_user(
    single_store: MemcachedStore,
) -> None:
    record = make_record(single_store, user_id=40)
    single_store.create(record)
    # A stale entry survives in user 40's index while the record now belongs to user 41.
    assert single_store.set(record.with_changes(user_id=41, version=2), 1) is SetResult.SAVED
    single_store._index_add(single_store._user_key(40), record.key)
    assert single_store.get_all_for_user(40) == []
    assert single_store.delete_all_for_user(40) == 0
    got = single_store.get(record.key)
    assert got is not None and got.user_id == 41


def test_purge_expired_counts_and_compacts_the_global_index(single_store: MemcachedStore) -> None:
    now = time.time()
    expired = [make_record(single_store, user_id=3, now=now - 100, lifetime=50) for _ in range(5)]
    live = [make_record(single_store, now=now) for _ in range(5)]
    for record in expired + live:
        single_store.create(record)
    assert single_store.purge_expired(now) == 5
    buckets = single_store.client.get_many(single_store._global_index.bucket_keys)
    indexed = b" ".join(buckets.values())
    assert all(r.key.encode() not in indexed for r in expired)
    assert all(r.key.encode() in indexed for r in live)
    assert single_store.client.get(single_store._user_key(3)) is None  # an emptied index is removed


def test_a_full_user_index_refuses_the_login_and_keeps_nothing(tiny_item_memcached: PrivateServer) -> None:
    store = _flushed(MemcachedStore.from_servers([tiny_item_memcached.address], max_item_bytes=2048))
    created = []
    with pytest.raises(StoreUnavailable, match="is full"):
        for _ in range(100):
            record = make_record(store, user_id=1)
            store.create(record)
            created.append(record)
    assert 30 < len(created) < 100
    assert store.get(record.key) is None  # the unindexed record was taken back
    assert sorted(r.key for r in store.get_all_for_user(1)) == sorted(r.key for r in created)
    # Once some sessions are gone (here: evicted), the index is compacted and logins work again.
    for gone in created[:5]:
        store.client.delete("kitsession:" + gone.key, noreply=False)
    late = make_record(store, user_id=1)
    assert store.create(late) is True
    assert late.key in {r.key for r in store.get_all_for_user(1)}


def test_a_full_global_index_bucket_opens_a_new_generation_and_get_all_misses_nothing(
    tiny_item_memcached: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = _flushed(MemcachedStore.from_servers([tiny_item_memcached.address], max_item_bytes=2048,
                                                 index_buckets=1))
    records = [make_record(store) for _ in range(200)]  # about four 2 KB generations
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi.stores.memcached"):
        for record in records:
            assert store.create(record) is True
        assert {r.key for r in store.get_all()} == {r.key for r in records}
    assert "global index" not in caplog.text
    assert int(store.client.get("kitsession:all:0:top")) >= 3
    # Another process (a fresh store) finds the newest generation and appends there too.
    other = MemcachedStore.from_servers([tiny_item_memcached.address], max_item_bytes=2048, index_buckets=1)
    late = make_record(other)
    assert other.create(late) is True
    assert late.key in {r.key for r in store.get_all()}
    other.close()


def _calls_per_creation(store: MemcachedStore, proxy: CountingProxy, count: int) -> float:
    proxy.calls.clear()
    for _ in range(count):
        assert store.create(make_record(store)) is True
    return len(proxy.calls) / count


def test_creating_a_session_on_a_full_global_index_costs_what_it_does_on_an_empty_one(
    small_item_memcached: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Counted store calls, not time: on a full bucket, creation used to compact it (a get and a
    # get_many of every entry) and log a warning, on every creation.
    real = _flushed(MemcachedStore.from_servers([small_item_memcached.address], max_item_bytes=64 * 1024,
                                                index_buckets=1))
    proxy = CountingProxy(real.client)
    store = MemcachedStore(proxy, max_item_bytes=64 * 1024, index_buckets=1)  # type: ignore[arg-type]
    assert store.create(make_record(store)) is True  # the bucket's first entry creates it
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi.stores.memcached"):
        early = _calls_per_creation(store, proxy, 100)
        _calls_per_creation(store, proxy, 1500)  # 64 KB hold about 1,450 entries: the bucket is full
        late = _calls_per_creation(store, proxy, 100)
    assert early == 2  # the record's add and one append
    assert late / early <= 1.1, (early, late)
    assert "global index" not in caplog.text
    assert len(store.get_all()) == 1701


def test_a_released_lock_can_be_taken_and_a_foreign_release_does_nothing(single_store: MemcachedStore) -> None:
    key = session_key("lock-me")
    assert single_store.acquire_lock(key, "a", 30)
    single_store.release_lock(key, "b")
    assert single_store.client.get(f"kitsession:lock:{key}") == b"a"
    single_store.release_lock(key, "a")
    assert single_store.client.get(f"kitsession:lock:{key}") is None
    assert single_store.acquire_lock(key, "b", 30)


@pytest.mark.parametrize("user_id", ["\ud800", "caf\u00e9 \u2603", "a b\n", 7], ids=repr)
def test_lone_surrogates_in_data_and_user_ids_round_trip(request: pytest.FixtureRequest, user_id: object) -> None:
    # JSON from a client can carry "\\ud800"; the core keeps it, so the store must too (never a 500).
    store = request.getfixturevalue("single_store")
    record = make_record(store, user_id=user_id, data='{"x":"\ud800 \udfff"}')
    assert store.create(record)
    got = store.get(record.key)
    assert got is not None and got.data == record.data and got.user_id == user_id
    assert [r.key for r in store.get_all_for_user(user_id)] == [record.key]
    assert store.set(record.with_changes(version=2, data='{"y":"\udc80"}'), 1) is SetResult.SAVED
    assert [r.data for r in store.get_all()] == ['{"y":"\udc80"}']
    assert store.delete_all_for_user(user_id) == 1
    assert store.get_all_for_user(user_id) == []
    manager = SessionManager(store, keys=["k"])
    if user_id in ("\ud800", "a b\n"):
        # The store keeps such a user id, but the core refuses it up front (the one user-id rule).
        with pytest.raises(ValueError, match="surrogate|control character"):
            manager.create_session(user_id=user_id)
        return
    session = manager.create_session(user_id=user_id, data={"x": "\ud800"})
    loaded = manager.initialize_session({"Cookie": cookie_for(manager, session)})
    assert loaded.data == {"x": "\ud800"} and loaded.user_id == user_id


# -- through the manager ----------------------------------------------------------------


def _counted(real: MemcachedStore) -> tuple[MemcachedStore, CountingProxy, MemcachedStore, SessionManager]:
    """A store and manager over ``real``'s client, with every client call recorded by name."""
    proxy = CountingProxy(real.client)
    store = MemcachedStore(proxy)  # type: ignore[arg-type]
    return real, proxy, store, SessionManager(store, keys=["k"])


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_reading_an_existing_session_is_exactly_one_get(
    request: pytest.FixtureRequest, topology: str
) -> None:
    real, proxy, store, manager = _counted(request.getfixturevalue(f"{topology}_store"))
    session = manager.create_session(user_id=5, data={"cart": [1]})
    cookie = cookie_for(manager, session)
    before = _server_commands(real)
    proxy.calls.clear()
    loaded = manager.initialize_session({"Cookie": cookie})
    assert loaded.data == {"cart": [1]} and not loaded.is_new
    assert proxy.calls == ["gets"]  # a get that also returns the CAS token
    assert manager.commit(loaded) is None  # unchanged: no write either
    assert proxy.calls == ["gets"]
    after = _server_commands(real)
    # Counted by memcached itself, over every node: one get, nothing else.
    assert _changed(before, after) == {"cmd_get": 1}


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_saving_a_session_read_in_the_same_request_is_one_cas(
    request: pytest.FixtureRequest, topology: str
) -> None:
    real, proxy, store, manager = _counted(request.getfixturevalue(f"{topology}_store"))
    cookie = cookie_for(manager, manager.create_session(user_id=5, data={"n": 1}))
    for n in (2, 3):
        before = _server_commands(real)
        proxy.calls.clear()
        loaded = manager.initialize_session({"Cookie": cookie})
        loaded.data["n"] = n
        assert manager.commit(loaded) is None
        assert proxy.calls == ["gets", "cas"]
        assert _changed(before, _server_commands(real)) == {"cmd_get": 1, "cmd_set": 1, "cas_hits": 1}
        stored = store.get(loaded.handle)
        assert stored is not None and stored.data == f'{{"n":{n}}}' and stored.version == n


def test_a_save_after_someone_else_saved_falls_back_to_gets_and_merges(single_store: MemcachedStore) -> None:
    manager = SessionManager(single_store, keys=["k"])
    cookie = cookie_for(manager, manager.create_session(data={"a": 1, "b": 1}))
    first = manager.initialize_session({"Cookie": cookie})
    second = manager.initialize_session({"Cookie": cookie})  # the same version, the same CAS token
    first.data["a"] = 2
    manager.commit(first)
    second.data["b"] = 2
    manager.commit(second)  # its remembered token is stale (or gone): cas fails, gets, merge
    final = manager.initialize_session({"Cookie": cookie})
    assert final.data == {"a": 2, "b": 2} and final._version == 3


def test_a_touch_after_a_read_is_one_cas(single_store: MemcachedStore) -> None:
    proxy = CountingProxy(single_store.client)
    store = MemcachedStore(proxy)  # type: ignore[arg-type]
    record = make_record(store)
    assert store.create(record) is True
    assert store.get(record.key) == record
    proxy.calls.clear()
    assert store.touch(record.key, record.updated_at + 5, record.expires_at + 5) is True
    assert proxy.calls == ["cas"]
    moved = store.get(record.key)
    assert moved is not None and moved.updated_at == record.updated_at + 5 and moved.version == record.version
    # Nothing remembered (this read was the last): gets + cas.
    store._read_tokens.clear()
    proxy.calls.clear()
    assert store.touch(record.key, record.updated_at + 9, record.expires_at + 9) is True
    assert proxy.calls == ["gets", "cas"]


def test_remembered_reads_are_bounded_and_dropped_on_delete(single_store: MemcachedStore) -> None:
    records = [make_record(single_store) for _ in range(300)]
    for record in records:
        assert single_store.create(record) is True
        assert single_store.get(record.key) == record
    remembered = single_store._read_tokens
    assert len(remembered) == 256
    prefix = single_store.key_prefix
    assert prefix + records[0].key not in remembered and prefix + records[-1].key in remembered  # oldest go first
    assert single_store.delete(records[-1].key) is True
    assert prefix + records[-1].key not in remembered
    big = make_record(single_store, data='{"x":"' + "y" * 70_000 + '"}')
    assert single_store.create(big) is True and single_store.get(big.key) == big
    assert prefix + big.key not in remembered  # large items are not kept


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def _server_commands(store: MemcachedStore) -> dict[str, int]:
    """memcached's own command counters, summed over the store's nodes."""
    client = store.client
    addresses = (
        list(client.clients) if isinstance(client, HashClient) else ["%s:%s" % client.server]  # type: ignore[attr-defined]
    )
    names = ("cmd_get", "cmd_set", "cmd_touch", "cas_hits", "cas_misses", "cas_badval",
             "delete_hits", "delete_misses", "incr_hits", "decr_hits")
    totals = dict.fromkeys(names, 0)
    for address in addresses:
        raw = Client(address, no_delay=True, timeout=2)
        try:
            stats = raw.stats()
        finally:
            raw.close()
        for name in names:
            totals[name] += int(stats[name.encode()])
    return totals


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_eight_threads_logging_one_user_in_are_all_indexed(request: pytest.FixtureRequest, topology: str) -> None:
    store = request.getfixturevalue(f"{topology}_store")
    concurrent_logins_for_one_user(SessionManager(store, keys=["k"]))


# -- packaging --------------------------------------------------------------------------


def test_importing_the_package_does_not_import_the_drivers() -> None:
    code = "import sys, kitsession_wsgi; print(sorted(m for m in ('pymemcache', 'redis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_pymemcache_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['pymemcache'] = None\n"
        "try:\n    import kitsession_wsgi.stores.memcached\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'kitsession-wsgi[memcached]'" in out.stdout
