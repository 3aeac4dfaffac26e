"""RedisStore on a Redis Cluster: a private 3-master, 3-replica cluster on loopback ports.

The shared cluster (``stores.SERVERS``) is started once per test session; the fault
tests start their own, so killing a master never disturbs the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.cluster import RedisCluster as ClusterClient

from kitsession_wsgi import ConfigurationError, SessionManager, SetResult, StoreUnavailable
from kitsession_wsgi.stores.redis import RedisStore
from kitsession_wsgi.stores.redis._base import BATCH as _BATCH
from kitsession_wsgi.stores.urls import store_from_url
from kitsession_wsgi.testing import StoreContract, make_record
from servers import PrivateRedisCluster, free_cluster_port
from store_kinds import store_servers  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def cluster(store_servers: Any) -> PrivateRedisCluster:
    return store_servers.redis_cluster()  # type: ignore[no-any-return]


def _flush(store: RedisStore) -> None:
    store.client.flushall(target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]


@pytest.fixture
def cluster_store(cluster: PrivateRedisCluster) -> Iterator[RedisStore]:
    store = RedisStore.from_url(f"redis+cluster://{cluster.startup_nodes}/")
    _flush(store)
    yield store
    store.close()


class TestRedisClusterContract(StoreContract):
    @pytest.fixture
    def store(self, cluster_store: RedisStore) -> Iterator[RedisStore]:
        yield cluster_store


class TestRedisClusterDecodedResponsesContract(StoreContract):
    """The same rules through a cluster client created with ``decode_responses=True``."""

    @pytest.fixture
    def store(self, cluster: PrivateRedisCluster) -> Iterator[RedisStore]:
        store = RedisStore.from_cluster_url(f"redis+cluster://{cluster.startup_nodes}/", prefix="app1:",
                                            decode_responses=True)
        _flush(store)
        yield store
        store.close()


def _master_of(store: RedisStore, key: str) -> str:
    return str(store.client.get_node_from_key(key).name)  # type: ignore[union-attr]


def _masters(store: RedisStore) -> set[str]:
    return {node.name for node in store.client.get_primaries()}  # type: ignore[union-attr]


def _records_on_every_master(store: RedisStore, user_id: Any, at_least: int = 12) -> list[Any]:
    """At least ``at_least`` records of ``user_id``, created until every master holds some."""
    records = []
    masters = _masters(store)
    while len(records) < at_least or {_master_of(store, f"{store.prefix}{r.key}") for r in records} != masters:
        record = make_record(store, user_id=user_id)
        assert store.create(record)
        records.append(record)
        assert len(records) < 500, "keys never reached every master"
    return records


# -- layout --------------------------------------------------------------------------------


def test_sessions_and_indexes_are_spread_over_the_masters(cluster_store: RedisStore) -> None:
    records = [make_record(cluster_store, user_id=u) for u in range(60)]
    for record in records:
        assert cluster_store.create(record)
    # Counted by the servers themselves: each master holds some records and some indexes.
    masters = _masters(cluster_store)
    slots = {cluster_store.client.keyslot(f"sess:{r.key}") for r in records}
    assert len(slots) > 50  # sharded by each key, not one hash slot
    assert {_master_of(cluster_store, f"sess:{r.key}") for r in records} == masters
    assert {_master_of(cluster_store, f"sess:user:i:{u}") for u in range(60)} == masters
    for record in records:
        assert [r.key for r in cluster_store.get_all_for_user(record.user_id)] == [record.key]  # type: ignore[arg-type]


def test_a_cluster_record_is_the_same_bytes_as_on_one_redis(cluster_store: RedisStore) -> None:
    record = make_record(cluster_store, user_id=5, lifetime=3600)
    assert cluster_store.create(record)
    stored = cluster_store.client.get(f"sess:{record.key}")
    header = f"K1 1 {record.created_at!r} {record.updated_at!r} {record.expires_at!r} 3 {len(record.key)}\n"
    assert stored == header.encode() + b"i:5" + record.key.encode() + record.data.encode()
    entry = cluster_store.client.hget("sess:user:i:5", record.key)
    assert entry is not None and entry.split(b" ")[0] == b"1"
    # The index outlives the record by the margin, so a touch cannot outrun it.
    assert cluster_store.client.ttl("sess:user:i:5") > 3600
    assert cluster_store.touch(record.key, record.updated_at, record.updated_at + 86400)
    assert cluster_store.client.ttl("sess:user:i:5") > 86400


def test_a_save_that_moves_the_expiry_stretches_the_index(cluster_store: RedisStore) -> None:
    record = make_record(cluster_store, user_id="idle", lifetime=600)
    assert cluster_store.create(record)
    assert cluster_store.client.ttl("sess:user:s:idle") <= 600 + 3600
    later = record.with_changes(version=2, updated_at=record.updated_at + 1, expires_at=record.updated_at + 86400)
    assert cluster_store.set(later, 1) is SetResult.SAVED
    # The index must outlive the record, or "sign out everywhere" would miss it.
    assert cluster_store.client.ttl("sess:user:s:idle") > cluster_store.client.ttl(f"sess:{record.key}") > 80000


def test_reading_a_session_is_one_get(cluster_store: RedisStore) -> None:
    manager = SessionManager(cluster_store, keys=["k"])
    session = manager.create_session(user_id=5, data={"cart": [1]})
    cookie = manager.set_session_cookie(session).split(";", 1)[0]
    node = cluster_store.client.get_node_from_key(f"sess:{session.handle}")  # type: ignore[union-attr]
    cluster_store.client.config_resetstat(target_nodes=ClusterClient.ALL_NODES)  # type: ignore[call-arg]
    loaded = manager.initialize_session({"Cookie": cookie})
    assert loaded.data == {"cart": [1]} and not loaded.is_new
    assert manager.commit(loaded) is None
    stats = cluster_store.client.info("commandstats", target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]
    # Counted by the masters themselves: one GET on the session's master, nothing anywhere else.
    per_node = {
        node_name: {cmd: s["calls"] for cmd, s in info.items()
                    if cmd.startswith("cmdstat_") and cmd not in ("cmdstat_info", "cmdstat_config|resetstat")}
        for node_name, info in stats.items()
    }
    assert per_node[node.name] == {"cmdstat_get": 1}
    assert all(counts == {} for name, counts in per_node.items() if name != node.name)


# -- sign out everywhere -----------------------------------------------------------------------


def test_revoke_all_reaches_sessions_on_every_master(cluster_store: RedisStore) -> None:
    mine = _records_on_every_master(cluster_store, "spread")
    others = [make_record(cluster_store, user_id="other") for _ in range(5)]
    for record in others:
        assert cluster_store.create(record)
    kept = mine[0]
    assert cluster_store.delete_all_for_user("spread", except_key=kept.key) == len(mine) - 1
    assert [r.key for r in cluster_store.get_all_for_user("spread")] == [kept.key]
    for record in mine[1:]:
        assert cluster_store.get(record.key) is None
    assert cluster_store.client.hkeys("sess:user:s:spread") == [kept.key.encode()]
    assert sorted(r.key for r in cluster_store.get_all_for_user("other")) == sorted(r.key for r in others)


def _calls(store: RedisStore, command: str) -> int:
    stats = store.client.info("commandstats", target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]
    return sum(info.get(f"cmdstat_{command}", {}).get("calls", 0) for info in stats.values())


def test_revoke_all_of_many_sessions_runs_in_bounded_batches(cluster_store: RedisStore) -> None:
    count = 3 * _BATCH + 17
    records = [make_record(cluster_store, user_id=99) for _ in range(count)]
    for record in records:
        assert cluster_store.create(record)
    cluster_store.client.config_resetstat(target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]
    assert cluster_store.delete_all_for_user(99) == count
    assert cluster_store.get_all_for_user(99) == []
    assert all(cluster_store.get(r.key) is None for r in records[:: max(1, count // 50)])
    assert cluster_store.client.exists("sess:user:i:99") == 0
    # One script per record (each touching only that record) and the index read and
    # cleaned in several HSCAN batches of at most _BATCH entries, never in one call.
    assert _calls(cluster_store, "eval") == count
    assert _calls(cluster_store, "hscan") >= 4
    assert _calls(cluster_store, "evalsha") >= 4 + 1  # the entry clean-ups, then the final count


# -- the index rule under races ----------------------------------------------------------------


class PausingStore(RedisStore):
    """A RedisStore that stops at one named internal step until the test lets it go on."""

    def __init__(self, client: Any, pause_in: str) -> None:
        super().__init__(client)
        self.pause_in = pause_in
        self.reached = threading.Event()
        self.resume = threading.Event()

    def _pause(self, step: str) -> None:
        if step == self.pause_in and not self.reached.is_set():
            self.reached.set()
            assert self.resume.wait(30), "the test never resumed the paused step"

    def _load_raw(self, record_keys: Any) -> list[Any]:
        raws = super()._load_raw(record_keys)
        self._pause("after reading records")  # a pruner has decided, not yet deleted
        return raws

    def _add_entry(self, index: str, storage_id: str, version: int, ttl: int) -> None:
        super()._add_entry(index, storage_id, version, ttl)
        self._pause("after adding an entry")  # a create or move has its entry, not its record

    def _written_then_waited(self, *args: Any) -> Any:
        reply = super()._written_then_waited(*args)
        self._pause("after moving the record")  # a move wrote the record, not yet cleaned the old index
        return reply


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_pruner_never_drops_the_entry_of_a_move_that_raced_it(cluster_store: RedisStore) -> None:
    record = make_record(cluster_store, user_id="u")
    assert cluster_store.create(record)
    assert cluster_store.set(record.with_changes(user_id="w", version=2), 1) is SetResult.SAVED
    # A stale entry of "u" (as a save that lost its version check leaves one).
    cluster_store.client.hset("sess:user:s:u", record.key, "1 stale")
    pruner = PausingStore(cluster_store.client, "after reading records")
    thread, out = _in_thread(lambda: pruner.get_all_for_user("u"))
    assert pruner.reached.wait(10)
    # Meanwhile the session moves back to "u": the entry is written again (a new nonce).
    assert cluster_store.set(record.with_changes(user_id="u", version=3), 2) is SetResult.SAVED
    pruner.resume.set()
    thread.join(10)
    assert out == [[]]  # the pruner read the record while it still named "w"
    assert [r.key for r in cluster_store.get_all_for_user("u")] == [record.key]
    assert cluster_store.delete_all_for_user("u") == 1


def test_a_move_never_drops_the_entry_of_a_move_back_that_raced_it(cluster_store: RedisStore) -> None:
    record = make_record(cluster_store, user_id="u")
    assert cluster_store.create(record)
    mover = PausingStore(cluster_store.client, "after moving the record")
    thread, out = _in_thread(lambda: mover.set(record.with_changes(user_id="w", version=2), 1))
    assert mover.reached.wait(10)
    # The first move wrote the record (now "w"'s) but has not removed "u"'s entry yet; a second
    # move brings the session back to "u" (writing "u"'s entry again) before it does.
    assert cluster_store.set(record.with_changes(user_id="u", version=3), 2) is SetResult.SAVED
    mover.resume.set()
    thread.join(10)
    assert out == [SetResult.SAVED]
    assert [r.key for r in cluster_store.get_all_for_user("u")] == [record.key]
    assert cluster_store.get_all_for_user("w") == []
    assert cluster_store.delete_all_for_user("u") == 1


def test_a_pending_create_keeps_its_entry_and_is_not_listed(cluster_store: RedisStore) -> None:
    creator = PausingStore(cluster_store.client, "after adding an entry")
    record = make_record(cluster_store, user_id="p")
    thread, out = _in_thread(lambda: creator.create(record))
    assert creator.reached.wait(10)
    # The record exists but is pending: not served, not listed, its entry not pruned.
    assert cluster_store.get(record.key) is None
    assert cluster_store.get_all_for_user("p") == []
    assert cluster_store.touch(record.key, record.updated_at, record.expires_at) is False
    assert cluster_store.set(record.with_changes(version=2), 1) is SetResult.MISSING
    assert cluster_store.purge_expired(time.time()) == 0
    assert cluster_store.client.hexists("sess:user:s:p", record.key)
    creator.resume.set()
    thread.join(10)
    assert out == [True]
    assert [r.key for r in cluster_store.get_all_for_user("p")] == [record.key]


def test_revoke_all_during_a_create_removes_the_pending_record(cluster_store: RedisStore) -> None:
    creator = PausingStore(cluster_store.client, "after adding an entry")
    record = make_record(cluster_store, user_id="r")
    thread, out = _in_thread(lambda: creator.create(record))
    assert creator.reached.wait(10)
    assert cluster_store.delete_all_for_user("r") == 1
    creator.resume.set()
    thread.join(10)
    assert out == [True]  # created, then revoked: it never comes back
    assert cluster_store.get(record.key) is None
    assert cluster_store.get_all_for_user("r") == []


def test_revoke_all_during_a_move_to_the_user_catches_the_moved_session(cluster_store: RedisStore) -> None:
    record = make_record(cluster_store, user_id="from")
    assert cluster_store.create(record)
    mover = PausingStore(cluster_store.client, "after adding an entry")
    thread, out = _in_thread(lambda: mover.set(record.with_changes(user_id="to", version=2), 1))
    assert mover.reached.wait(10)
    # The entry of "to" is there, the record still names "from": revoking "to" must neither
    # delete "from"'s session nor drop the entry (the record may still become theirs); it
    # gives up after its bounded passes while the move stays paused.
    assert cluster_store.delete_all_for_user("to") == 0
    assert cluster_store.client.hexists("sess:user:s:to", record.key)
    assert cluster_store.get(record.key) is not None
    mover.resume.set()
    thread.join(10)
    assert out == [SetResult.SAVED]
    assert [r.key for r in cluster_store.get_all_for_user("to")] == [record.key]
    assert cluster_store.get_all_for_user("from") == []
    assert cluster_store.delete_all_for_user("to") == 1


def test_concurrent_moves_and_pruning_never_lose_an_index_entry(cluster_store: RedisStore) -> None:
    users = ["a", "b", "c", None]
    records = [make_record(cluster_store, user_id="a") for _ in range(6)]
    for record in records:
        assert cluster_store.create(record)
    stop = threading.Event()
    errors: list[BaseException] = []
    moves = [0]
    lock = threading.Lock()

    def mover(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(60):
                key = rng.choice(records).key
                current = cluster_store.get(key)
                assert current is not None
                result = cluster_store.set(current.with_changes(user_id=rng.choice(users),
                                                                version=current.version + 1), current.version)
                assert result is not SetResult.MISSING
                with lock:
                    moves[0] += result is SetResult.SAVED
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def pruner() -> None:
        try:
            while not stop.is_set():
                for user in users[:3]:
                    cluster_store.get_all_for_user(user)  # type: ignore[arg-type]
                cluster_store.purge_expired(time.time())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    movers = [threading.Thread(target=mover, args=(i,)) for i in range(4)]
    pruners = [threading.Thread(target=pruner) for _ in range(2)]
    for thread in movers + pruners:
        thread.start()
    for thread in movers:
        thread.join(120)
    stop.set()
    for thread in pruners:
        thread.join(60)
    assert not errors, errors[:3]
    assert moves[0] > 40
    # The rule: every record naming a user has that user's entry (entries of other records
    # may linger: readers skip them).
    for record in records:
        current = cluster_store.get(record.key)
        assert current is not None
        if current.user_id is not None:
            assert cluster_store.client.hexists(f"sess:user:s:{current.user_id}", record.key), current
    owners = {record.key: cluster_store.get(record.key).user_id for record in records}  # type: ignore[union-attr]
    by_user = {u: sorted(key for key, owner in owners.items() if owner == u) for u in users[:3]}
    for user, keys in by_user.items():
        assert sorted(r.key for r in cluster_store.get_all_for_user(user)) == keys  # type: ignore[arg-type]


# -- URLs ----------------------------------------------------------------------------------------


def test_store_from_a_cluster_url_with_one_or_every_node(cluster: PrivateRedisCluster) -> None:
    first = cluster.nodes[0].address
    for url in (f"redis+cluster://{first}/", f"redis+cluster://{cluster.startup_nodes}",
                f"REDIS+CLUSTER://{first}/0"):
        store = store_from_url(url)
        assert isinstance(store, RedisStore) and store.is_cluster
        record = make_record(store, user_id=3)
        assert store.create(record)
        assert store.get(record.key) is not None
        assert store.delete(record.key)
        store.close()


def test_a_cluster_url_names_its_options(cluster: PrivateRedisCluster) -> None:
    store = RedisStore.from_cluster_url(f"redis+cluster://{cluster.nodes[1].address}/", prefix="p:",
                                        wait_replicas=1, wait_timeout_ms=500)
    assert (store.prefix, store.wait_replicas, store.wait_timeout_ms) == ("p:", 1, 500)
    kwargs = store.client.nodes_manager.connection_kwargs  # type: ignore[union-attr]
    assert kwargs["socket_timeout"] == 1.0 and kwargs["socket_connect_timeout"] == 1.0
    store.close()


def test_a_tls_cluster_url_connects_with_tls(cluster: PrivateRedisCluster) -> None:
    # These nodes speak plain text: a TLS handshake fails, as StoreUnavailable.
    with pytest.raises(StoreUnavailable):
        store_from_url(f"rediss+cluster://{cluster.nodes[0].address}/")


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster:///", "redis+cluster://host:notaport/",
                                 "redis+cluster://127.0.0.1:6379/3", "redis+cluster://127.0.0.1:99999/"])
def test_a_bad_cluster_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        store_from_url(url)


def test_a_cluster_nobody_answers_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        store_from_url(f"redis+cluster://127.0.0.1:{free_cluster_port()}/")


def test_flask_takes_the_cluster_from_kitsession_store(cluster: PrivateRedisCluster) -> None:
    from flask import Flask, session

    from kitsession_wsgi.flask import KitSession

    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KITSESSION_STORE=f"redis+cluster://{cluster.startup_nodes}/")
    KitSession(app)

    @app.get("/")
    def index() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/").get_data(as_text=True) for _ in range(3)] == ["1", "2", "3"]
    store = app.extensions["kitsession"].manager.store
    assert isinstance(store, RedisStore) and store.is_cluster


@pytest.mark.parametrize("option, value", [("wait_replicas", -1), ("wait_replicas", True), ("wait_timeout_ms", 0)])
def test_bad_wait_options_are_refused(cluster_store: RedisStore, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        RedisStore(cluster_store.client, **{option: value})  # type: ignore[arg-type]


def test_wait_replicas_on_a_healthy_cluster_waits_and_succeeds(cluster_store: RedisStore) -> None:
    store = RedisStore(cluster_store.client, wait_replicas=1, wait_timeout_ms=2000)
    records = _records_on_every_master(store, 12)
    assert store.delete(records[0].key) is True
    assert store.set(records[1].with_changes(user_id=13, version=2), 1) is SetResult.SAVED
    assert store.delete_all_for_user(12) == len(records) - 2
    assert [r.key for r in store.get_all_for_user(13)] == [records[1].key]


def test_asking_for_more_replicas_than_exist_is_unavailable_not_lost(cluster_store: RedisStore) -> None:
    store = RedisStore(cluster_store.client, wait_replicas=2, wait_timeout_ms=50)
    record = make_record(store, user_id=14)
    assert store.create(record)
    with pytest.raises(StoreUnavailable, match="1 of 2 replicas"):
        store.delete(record.key)
    assert store.get(record.key) is None  # done on the master; a retry is safe
    assert cluster_store.delete(record.key) is False


def _primaries_command_calls(store: RedisStore) -> dict[str, int]:
    """How many times the masters ran each command (script-internal calls included), summed."""
    totals: dict[str, int] = {}
    for node in store.client.get_primaries():  # type: ignore[attr-defined]
        stats = store.client.info("commandstats", target_nodes=node)  # type: ignore[call-arg]
        for name, value in stats.items():
            key = name.removeprefix("cmdstat_")
            totals[key] = totals.get(key, 0) + int(value["calls"])
    return totals


def test_listing_a_user_with_many_sessions_prunes_in_bounded_scripts(cluster_store: RedisStore) -> None:
    # The stale entries found by a listing are dropped BATCH per script, never all in one.
    records = [make_record(cluster_store, user_id="many") for _ in range(5_000)]
    for record in records:
        cluster_store.create(record)
    gone = records[::10]
    for record in gone:
        cluster_store.client.delete(cluster_store.prefix + record.key)
    cluster_store.client.config_resetstat(target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]
    listed = cluster_store.get_all_for_user("many")
    calls = _primaries_command_calls(cluster_store)
    assert {r.key for r in listed} == {r.key for r in records} - {r.key for r in gone}
    scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
    assert calls["hdel"] == len(gone)
    assert scripts >= len(gone) // _BATCH and calls["hget"] <= scripts * _BATCH, (scripts, calls["hget"])
