"""RedisStore against a private redis-server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from cache_servers import CountingProxy, concurrent_logins_for_one_user, cookie_for
from kitsession_wsgi import ConfigurationError, SessionManager, SetResult, StoreUnavailable
from kitsession_wsgi.manager import session_key
from kitsession_wsgi.stores.redis import RedisStore
from kitsession_wsgi.stores.redis._base import BATCH as _BATCH
from kitsession_wsgi.testing import DAY, StoreContract, make_record
from polling import wait_until
from servers import PrivateServer, start_redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_store(redis_server: PrivateServer) -> Iterator[RedisStore]:
    store = RedisStore.from_url(f"redis://{redis_server.address}/0")
    store.client.flushdb()
    yield store
    store.close()


class TestRedisContract(StoreContract):
    @pytest.fixture
    def store(self, redis_store: RedisStore) -> Iterator[RedisStore]:
        yield redis_store


class TestRedisDecodedResponsesContract(StoreContract):
    """The same rules on a client created with ``decode_responses=True``."""

    @pytest.fixture
    def store(self, redis_server: PrivateServer) -> Iterator[RedisStore]:
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=1, decode_responses=True,
                             socket_timeout=2)
        client.flushdb()
        store = RedisStore(client, prefix="app1:")
        yield store
        store.close()


# -- configuration ---------------------------------------------------------------------


def test_from_url_gives_the_client_short_timeouts_and_one_retry(redis_server: PrivateServer) -> None:
    store = RedisStore.from_url(f"redis://{redis_server.address}/2")
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0 and kwargs["socket_connect_timeout"] == 2.0  # store_timeout's default
    assert kwargs["retry"].get_retries() == 1 and kwargs["db"] == 2


@pytest.mark.parametrize("prefix", ["", 5, "x" * 101], ids=repr)
def test_bad_prefix_is_refused(redis_server: PrivateServer, prefix: object) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(redis.Redis(port=redis_server.port), prefix=prefix)  # type: ignore[arg-type]


# -- layout and TTL ---------------------------------------------------------------------


def test_the_whole_record_is_stored_with_a_ttl_in_seconds(redis_store: RedisStore) -> None:
    record = make_record(redis_store, user_id=5, lifetime=3600)
    redis_store.create(record)
    stored = redis_store.client.get(f"sess:{record.key}")
    header = f"K1 1 {record.created_at!r} {record.updated_at!r} {record.expires_at!r} 3 {len(record.key)}\n"
    assert stored == header.encode() + b"i:5" + record.key.encode() + record.data.encode()
    assert 3590 <= redis_store.client.ttl(f"sess:{record.key}") <= 3600
    assert redis_store.client.ttl("sess:user:i:5") >= 3590


def test_touch_and_set_move_the_ttl(redis_store: RedisStore) -> None:
    record = make_record(redis_store, user_id="t", lifetime=3600)
    redis_store.create(record)
    assert redis_store.touch(record.key, record.updated_at, record.updated_at + 7 * DAY)
    assert redis_store.client.ttl(f"sess:{record.key}") > 6 * DAY
    assert redis_store.client.ttl("sess:user:s:t") > 6 * DAY  # the user's SET lives as long as its longest session
    assert redis_store.set(record.with_changes(version=2, expires_at=record.updated_at + 60), 1) is SetResult.SAVED
    assert 50 <= redis_store.client.ttl(f"sess:{record.key}") <= 60


def test_redis_drops_the_record_on_its_ttl(redis_store: RedisStore) -> None:
    record = make_record(redis_store)
    redis_store.create(record)
    assert redis_store.touch(record.key, time.time(), time.time() + 1)
    wait_until(lambda: redis_store.get(record.key) is None, timeout=10, what="Redis expired the touched record")


@pytest.mark.parametrize("key", ["has space", "a:b", "user:i:5", "x" * 300, "caf\u00e9", "*"], ids=repr)
def test_keys_that_are_not_digests_are_hashed_and_still_work(redis_store: RedisStore, key: str) -> None:
    record = make_record(redis_store, user_id=6).with_changes(key=key)
    assert redis_store.create(record)
    got = redis_store.get(key)
    assert got is not None and got.key == key
    assert [r.key for r in redis_store.get_all()] == [key]
    assert [r.key for r in redis_store.get_all_for_user(6)] == [key]
    assert redis_store.delete(key) is True and redis_store.get_all_for_user(6) == []
    assert redis_store.client.exists("sess:user:i:5") == 0


def test_get_all_skips_indexes_locks_and_foreign_keys(redis_store: RedisStore) -> None:
    record = make_record(redis_store, user_id=1)
    redis_store.create(record)
    redis_store.acquire_lock(record.key, "t", 30)
    redis_store.client.set("sess:legacy-string", "{}")
    redis_store.client.hset("sess:other:thing", mapping={"k": "x"})
    redis_store.client.hset("sess:junk", mapping={"a": "b"})
    redis_store.client.hset("other:" + record.key, mapping={"k": "x"})
    assert [r.key for r in redis_store.get_all()] == [record.key]


def test_a_prefix_with_glob_characters_only_lists_its_own_records(redis_server: PrivateServer) -> None:
    client = redis.Redis(port=redis_server.port, db=3)
    client.flushdb()
    odd = RedisStore(client, prefix="s[1]*:")
    plain = RedisStore(client, prefix="s1x:")
    mine, theirs = make_record(odd), make_record(plain)
    odd.create(mine)
    plain.create(theirs)
    assert [r.key for r in odd.get_all()] == [mine.key]
    assert odd.purge_expired(time.time() + 10 * DAY) == 1
    assert plain.get(theirs.key) is not None


def test_purge_expired_prunes_user_sets(redis_store: RedisStore) -> None:
    gone = make_record(redis_store, user_id=9)
    live = make_record(redis_store, user_id=9)
    redis_store.create(gone)
    redis_store.create(live)
    redis_store.client.delete(f"sess:{gone.key}")  # as Redis's own expiry would
    assert redis_store.purge_expired(time.time()) == 0
    assert redis_store.client.smembers("sess:user:i:9") == {live.key.encode()}


def test_sign_out_everywhere_never_deletes_a_session_that_moved_to_another_user(redis_store: RedisStore) -> None:
    record = make_record(redis_store, user_id=40)
    redis_store.create(record)
    assert redis_store.set(record.with_changes(user_id=41, version=2), 1) is SetResult.SAVED
    redis_store.client.sadd("sess:user:i:40", record.key)  # a stale member
    assert redis_store.get_all_for_user(40) == []
    assert redis_store.delete_all_for_user(40) == 0
    got = redis_store.get(record.key)
    assert got is not None and got.user_id == 41


@pytest.mark.parametrize("keep_one", [False, True], ids=["all", "all-but-one"])
def test_sign_out_everywhere_of_many_sessions_runs_in_bounded_scripts(redis_store: RedisStore,
                                                                       keep_one: bool) -> None:
    # 20,000 sessions in one script blocked Redis ~80 ms; now each script handles at most _BATCH.
    count = 3 * _BATCH + 17
    records = [make_record(redis_store, user_id=77) for _ in range(count)]
    for record in records:
        assert redis_store.create(record)
    kept = records[count // 2].key if keep_one else None
    redis_store.client.config_resetstat()
    assert redis_store.delete_all_for_user(77, except_key=kept) == count - keep_one
    scripts = redis_store.client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert scripts >= -(-count // _BATCH)  # several bounded calls, not one
    assert [r.key for r in redis_store.get_all_for_user(77)] == ([kept] if kept else [])
    assert redis_store.client.smembers("sess:user:i:77") == ({kept.encode()} if kept else set())
    assert sum(redis_store.get(r.key) is not None for r in records) == keep_one


def test_wait_replicas_without_replicas_is_unavailable_after_the_write(redis_store: RedisStore) -> None:
    store = RedisStore(redis_store.client, wait_replicas=1, wait_timeout_ms=20)
    record = make_record(store, user_id=8)
    assert store.create(record)
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.delete(record.key)
    assert redis_store.get(record.key) is None  # done on the server; a retry is safe
    other = make_record(store, user_id=8)
    assert store.create(other)
    assert store.set(other.with_changes(version=2, data='{"same":"user"}'), 1) is SetResult.SAVED  # no WAIT
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.set(other.with_changes(version=3, user_id=9), 2)
    assert [r.key for r in redis_store.get_all_for_user(9)] == [other.key]


def test_scripts_are_reloaded_after_the_server_forgets_them(redis_store: RedisStore) -> None:
    record = make_record(redis_store, user_id=2)
    assert redis_store.create(record)
    redis_store.client.script_flush()  # what a restart does to the script cache
    assert redis_store.set(record.with_changes(version=2, data='{"n":2}'), 1) is SetResult.SAVED
    redis_store.client.script_flush()
    assert redis_store.touch(record.key, record.updated_at, record.expires_at + 5)
    redis_store.client.script_flush()
    assert redis_store.delete(record.key) is True


def test_a_foreign_release_leaves_the_lock_held(redis_store: RedisStore) -> None:
    key = session_key("lock-me")
    assert redis_store.acquire_lock(key, "a", 30)
    redis_store.release_lock(key, "b")
    assert redis_store.client.get(f"sess:lock:{key}") == b"a"
    assert 0 < redis_store.client.pttl(f"sess:lock:{key}") <= 30_000
    redis_store.release_lock(key, "a")
    assert redis_store.client.exists(f"sess:lock:{key}") == 0


@pytest.mark.parametrize("user_id", ["\ud800", "caf\u00e9 \u2603", "a b\n", 7], ids=repr)
def test_lone_surrogates_in_data_and_user_ids_round_trip(request: pytest.FixtureRequest, user_id: object) -> None:
    # JSON from a client can carry "\\ud800"; the core keeps it, so the store must too (never a 500).
    store = request.getfixturevalue("redis_store")
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


def test_reading_an_existing_session_is_exactly_one_get(redis_store: RedisStore) -> None:
    proxy = CountingProxy(redis_store.client)
    manager = SessionManager(RedisStore(proxy), keys=["k"])  # type: ignore[arg-type]
    session = manager.create_session(user_id=5, data={"cart": [1]})
    cookie = cookie_for(manager, session)
    redis_store.client.config_resetstat()
    proxy.calls.clear()
    loaded = manager.initialize_session({"Cookie": cookie})
    assert loaded.data == {"cart": [1]} and loaded.user_id == 5 and not loaded.is_new
    assert manager.commit(loaded) is None
    assert proxy.calls == ["get"]
    # Counted by Redis itself: one GET, and nothing else but this test's own RESETSTAT and INFO.
    stats = redis_store.client.info("commandstats")
    counted = {name: s["calls"] for name, s in stats.items() if name not in ("cmdstat_info", "cmdstat_config|resetstat")}
    assert counted == {"cmdstat_get": 1}


def test_eight_threads_logging_one_user_in_are_all_indexed(redis_store: RedisStore) -> None:
    concurrent_logins_for_one_user(SessionManager(redis_store, keys=["k"]))


# -- packaging --------------------------------------------------------------------------


def test_a_missing_redis_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "try:\n    import kitsession_wsgi.stores.redis\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'kitsession-wsgi[redis]'" in out.stdout


def _command_calls(client: redis.Redis) -> dict[str, int]:
    """How many times Redis ran each command (script-internal calls included), by name."""
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def test_listing_a_user_with_many_sessions_prunes_in_bounded_scripts(redis_store: RedisStore) -> None:
    # One script used to check every member of the user's SET: 100,000 sessions blocked Redis 824 ms.
    # Counted by Redis, not timed: each script call checks at most BATCH members.
    records = [make_record(redis_store, user_id="many") for _ in range(20_000)]
    pipeline = redis_store.client.pipeline(transaction=False)
    for record in records:
        redis_store.create(record)
    gone = records[::20]  # 1,000 records vanish (as an eviction would): their members are stale
    for record in gone:
        pipeline.delete(redis_store.prefix + record.key)
    pipeline.execute()
    redis_store.client.config_resetstat()
    listed = redis_store.get_all_for_user("many")
    calls = _command_calls(redis_store.client)
    assert len(listed) == 19_000 and {r.key for r in listed} == {r.key for r in records} - {r.key for r in gone}
    scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
    script_gets = calls["get"] - 20_000  # the listing's own pipelined reads are one GET per member
    assert scripts >= len(gone) // _BATCH
    assert script_gets <= scripts * _BATCH, (scripts, script_gets)
    assert calls["srem"] == len(gone)
    assert redis_store.client.scard(redis_store._user_key("many")) == 19_000
    # purge_expired prunes the SET the same way (SSCAN, then BATCH members per script).
    for record in records[1::20]:
        pipeline.delete(redis_store.prefix + record.key)
    pipeline.execute()
    redis_store.client.config_resetstat()
    assert redis_store.purge_expired(time.time()) == 0
    calls = _command_calls(redis_store.client)
    scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
    assert calls["srem"] == 1_000 and scripts >= 19_000 // _BATCH
    assert calls["get"] <= scripts * _BATCH + 20_000
    assert redis_store.client.scard(redis_store._user_key("many")) == 18_000
