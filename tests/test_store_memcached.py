"""MemcachedStore against private memcached servers: one server, and a 3-node cluster."""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache import exceptions as pymemcache_exceptions
from pymemcache.exceptions import MemcacheIllegalInputError, MemcacheUnexpectedCloseError
from pymemcache.client.hash import HashClient

from cache_servers import CountingProxy, concurrent_logins_for_one_user, cookie_for, servers_holding
from kitsession_wsgi import ConfigurationError, SessionDataError, SessionManager, SetResult, StoreUnavailable
from kitsession_wsgi.manager import session_key
from kitsession_wsgi.stores.memcached import MemcachedPool, MemcachedStore, StrictHashClient, _plain_fetch
from kitsession_wsgi.testing import DAY, StoreContract, make_record
from polling import wait_until
from servers import PrivateServer, free_port, service_missing, start_memcached
from thread_helpers import Background, run_threads


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
    store = MemcachedStore.from_servers([memcached_server.address], max_idle=3)
    client = store.client
    assert isinstance(client, MemcachedPool)
    assert client.max_idle == 3 and client.server == ("127.0.0.1", memcached_server.port)
    options = client.client_options
    assert options["no_delay"] is True and options["ignore_exc"] is False and options["default_noreply"] is False
    assert options["connect_timeout"] == 1.0 and options["timeout"] == 1.0


def test_from_servers_builds_a_strict_pooled_hash_client_for_several(memcached_cluster: list[PrivateServer]) -> None:
    store = MemcachedStore.from_servers([s.address for s in memcached_cluster], dead_timeout=0.25, max_idle=2)
    client = store.client
    assert isinstance(client, StrictHashClient)
    assert client.ignore_exc is False and client.dead_timeout == 0.25
    assert client.default_kwargs["no_delay"] is True and client.default_kwargs["default_noreply"] is False
    nodes = list(client.clients.values())
    assert len(nodes) == 3 and all(isinstance(node, MemcachedPool) and node.max_idle == 2 for node in nodes)


def test_strict_hash_client_defaults_are_the_safe_ones(memcached_cluster: list[PrivateServer]) -> None:
    client = StrictHashClient([s.address for s in memcached_cluster])
    assert client.ignore_exc is False and client.dead_timeout == 1.0
    assert client.default_kwargs["no_delay"] is True and client.default_kwargs["default_noreply"] is False
    assert all(isinstance(node, MemcachedPool) and node.client_options["default_noreply"] is False
               for node in client.clients.values())


def test_strict_hash_client_can_still_use_pymemcache_pools(memcached_cluster: list[PrivateServer]) -> None:
    client = StrictHashClient([s.address for s in memcached_cluster], use_pooling=True)
    assert all(isinstance(node, PooledClient) for node in client.clients.values())
    store = MemcachedStore(client)
    record = make_record(store)
    assert store.create(record) is True and store.get(record.key) == record
    client.close()


# -- MemcachedPool ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"], ids=repr)
def test_memcached_pool_refuses_a_bad_max_idle(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_idle"):
        MemcachedPool("127.0.0.1:11211", max_idle=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_idle"):
        StrictHashClient(["127.0.0.1:11211", "127.0.0.1:11212"], max_idle=value)  # type: ignore[arg-type]


def test_memcached_pool_refuses_unknown_client_options() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        MemcachedPool("127.0.0.1:11211", no_such_option=1)


@pytest.mark.parametrize("option", ["max_pool_size", "pool_idle_timeout", "lock_generator"])
def test_memcached_pool_refuses_pooled_client_options_by_name(option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        MemcachedPool("127.0.0.1:11211", **{option: 4})
    with pytest.raises(ConfigurationError, match=option):
        MemcachedStore.from_servers(["127.0.0.1:11211"], **{option: 4})


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


def test_memcached_pool_is_safe_to_share_between_threads(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(300):
            key, value = f"pool-thread-{n}", f"{n}:{i}".encode()
            pool.set(key, value, noreply=False)
            got = pool.get(key)
            if got != value:
                errors.append(f"thread {n} wrote {value!r}, read {got!r}")

    run_threads(8, worker)
    assert errors == []
    # Every connection went back to the idle list, and no more were opened than threads ran.
    assert 1 <= len(pool._idle) <= 8
    pool.close()
    assert pool._idle == []


def test_memcached_pool_keeps_at_most_max_idle_connections(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address, max_idle=2)
    busy = [pool._take() for _ in range(4)]  # four calls at once
    for client in busy:
        client.get("warm")  # each opens its own connection
        assert client.sock is not None
    for client in busy:
        pool._give_back(client)
    assert pool._idle == busy[:2]
    assert [client.sock is None for client in busy] == [False, False, True, True]
    assert pool.get("missing", "default") == "default"
    pool.close()


def test_memcached_pool_drops_its_connections_after_a_failure_and_reconnects() -> None:
    port = free_port()
    server = start_memcached(port)
    pool = MemcachedPool(("127.0.0.1", port), connect_timeout=0.5, timeout=0.5)
    try:
        pool.set("k", b"v", noreply=False)
        assert pool.get("k") == b"v" and len(pool._idle) == 1
        server.stop()
        with pytest.raises((OSError, MemcacheUnexpectedCloseError)):
            pool.get("k")
        assert pool._idle == []  # the failed connection is closed, not put back
        with pytest.raises(OSError):
            pool.get("k")  # nothing listens: connecting fails
        server = start_memcached(port)
        assert pool.get("k") is None  # a fresh connection to the restarted (empty) server
        assert len(pool._idle) == 1
    finally:
        pool.close()
        server.stop()


def test_memcached_pool_keeps_the_connection_after_a_refused_key(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address)
    pool.set("k", b"v", noreply=False)
    with pytest.raises(MemcacheIllegalInputError):
        pool.get("a key with spaces")
    assert len(pool._idle) == 1 and pool._idle[0].sock is not None
    assert pool.get("k") == b"v"
    pool.close()


@pytest.mark.parametrize("size", [0, 1, 65_000, 65_536, 300_000, 1_000_000 - 300])
def test_memcached_pool_reads_values_of_every_size_byte_for_byte(memcached_server: PrivateServer, size: int) -> None:
    pool = MemcachedPool(memcached_server.address)
    # Protocol lookalikes inside the value, and every byte value, must come back as they went in.
    value = (b"\r\nEND\r\nVALUE x 0 1\r\n" + bytes(range(256)) * (size // 256 + 1))[:size]
    pool.set("sized", value, noreply=False)
    pool.get("warm-up")  # connects through pymemcache; the reads below take the plain path
    assert pool.get("sized") == value
    assert pool.get("sized") == value  # the connection is still aligned on the protocol
    assert pool.get("absent", b"default") == b"default"
    pool.close()


def test_memcached_pool_plain_reads_match_pymemcache(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address)
    reference = Client(memcached_server.address, no_delay=True, default_noreply=False)
    keys = ["plain", "kitsession:abc_DEF-123", "~tilde", "x" * 250]
    for i, key in enumerate(keys):
        reference.set(key, f"value {i} \u00e9".encode(), noreply=False)
    pool.get("warm-up")
    for key in keys + ["missing"]:
        assert pool.get(key) == reference.get(key)
    # Keys the plain path does not send as they are go through pymemcache, with its errors.
    with pytest.raises(MemcacheIllegalInputError):
        pool.get("x" * 251)
    assert pool.get(b"plain") == reference.get("plain")
    reference.close()
    pool.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [(b"SERVER_ERROR out of memory\r\n", "MemcacheServerError"),
     (b"CLIENT_ERROR bad command line format\r\n", "MemcacheClientError"),
     (b"ERROR\r\n", "MemcacheUnknownCommandError"),
     (b"GARBAGE\r\n", "MemcacheUnknownError"),
     (b"VALUE k 0\r\n", "MemcacheUnknownError"),
     (b"VALUE k 0 3x\r\nabc\r\nEND\r\n", "MemcacheUnknownError"),
     (b"VALUE k 0 -3\r\nabc\r\nEND\r\n", "MemcacheUnknownError"),
     (b"END\r\nEND\r\n", "MemcacheUnknownError"),
     (b"VALUE k 0 3\r\nabcXXEND\r\n", "MemcacheUnknownError"),
     (b"VALUE k 0 3\r\nabc\r\nEND\r\nEXTRA", "MemcacheUnknownError"),
     (b"VALUE k 0 3\r\nab", "MemcacheUnexpectedCloseError"),
     (b"", "MemcacheUnexpectedCloseError")],
    ids=repr,
)
def test_plain_get_raises_pymemcache_errors_for_bad_replies(reply: bytes, error: str) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        server.sendall(reply)
        server.shutdown(socket.SHUT_WR)
        with pytest.raises(getattr(pymemcache_exceptions, error)):
            _plain_fetch(ours, b"get", "k")
        assert server.recv(100) == b"get k\r\n"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [(b"VALUE k 7 10\r\n0123456789\r\nEND\r\n", (b"0123456789", None)), (b"END\r\n", (None, None))],
    ids=["value", "miss"],
)
def test_plain_get_reads_a_reply_split_across_many_packets(reply: bytes, expected: tuple[Any, Any]) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        def trickle() -> None:
            assert server.recv(100) == b"get k\r\n"
            for byte in reply:
                server.sendall(bytes([byte]))
                time.sleep(0.001)  # not a wait: spaces the bytes so they arrive as separate packets

        sender = Background(trickle)
        assert _plain_fetch(ours, b"get", "k") == expected
        sender.result()


def test_memcached_pool_drops_a_connection_that_got_a_bad_reply(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address)
    pool.set("k", b"v", noreply=False)
    pool.get("k")
    client = pool._idle[0]
    client.sock.sendall(b"bogus\r\n")  # its unread "ERROR" reply now sits before the next one
    assert select.select([client.sock], [], [], 5)[0]
    with pytest.raises(pymemcache_exceptions.MemcacheUnknownCommandError):
        pool.get("k")
    assert pool._idle == [] and client.sock is None
    assert pool.get("k") == b"v"  # a fresh connection
    pool.close()


def test_memcached_pool_forwards_other_client_methods_and_nothing_else(memcached_server: PrivateServer) -> None:
    pool = MemcachedPool(memcached_server.address)
    assert pool.set("forwarded", b"1", noreply=False) is True
    assert pool.incr("forwarded", 41, noreply=False) == 42
    assert pool.touch("forwarded", 60, noreply=False) is True
    assert "curr_connections" in {k.decode() if isinstance(k, bytes) else k for k in pool.stats()}
    for name in ("no_such_method", "_connect", "server_typo"):
        with pytest.raises(AttributeError, match=name):
            getattr(pool, name)
    pool.close()


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
    buckets = single_store.client.get_many(single_store._bucket_keys)
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
    buckets = single_store.client.get_many(single_store._bucket_keys)
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


def test_a_full_global_index_is_logged_and_the_session_still_works(
    tiny_item_memcached: PrivateServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = _flushed(MemcachedStore.from_servers([tiny_item_memcached.address], max_item_bytes=2048,
                                                 index_buckets=1))
    records = [make_record(store) for _ in range(80)]
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi.stores.memcached"):
        for record in records:
            assert store.create(record) is True
    assert all(store.get(r.key) is not None for r in records)
    assert "not in the global index" in caplog.text
    listed = {r.key for r in store.get_all()}
    assert 30 < len(listed) < 80 and listed <= {r.key for r in records}


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
