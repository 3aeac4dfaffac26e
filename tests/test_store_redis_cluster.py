"""RedisStore on a Redis Cluster: a private 3-master, 3-replica cluster on loopback ports.

The shared cluster (``stores.SERVERS``) is started once per test session; the fault
tests start their own, so killing a master never disturbs the others.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from kitsession_wsgi import ConfigurationError, SessionManager, SetResult, StoreUnavailable
from kitsession_wsgi.stores._format import storage_id
from kitsession_wsgi.stores.redis import _BATCH, RedisStore
from kitsession_wsgi.stores.urls import store_from_url
from kitsession_wsgi.testing import StoreContract, make_record
from servers import RedisCluster, start_redis_cluster, wait_for_cluster_ok
from stores import store_servers  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def cluster(store_servers: Any) -> RedisCluster:
    return store_servers.redis_cluster()  # type: ignore[no-any-return]


def _flush(store: RedisStore) -> None:
    store.client.flushall(target_nodes=ClusterClient.PRIMARIES)  # type: ignore[call-arg]


@pytest.fixture
def cluster_store(cluster: RedisCluster) -> Iterator[RedisStore]:
    store = RedisStore.from_url(f"redis+cluster://{cluster.startup_nodes}/")
    _flush(store)
    yield store
    store.close()


class TestRedisClusterContract(StoreContract):
    @pytest.fixture
    def store(self, cluster_store: RedisStore) -> Iterator[RedisStore]:
        yield cluster_store


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
