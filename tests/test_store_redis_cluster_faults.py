"""RedisStore on a Redis Cluster that loses a master: a private cluster per test, so the kill stays here.

The cluster runs with ``cluster-require-full-coverage no`` (as docs/stores/redis-cluster.md recommends):
with the default ``yes`` every master refuses every key while one shard has no
master, so one dead machine would take every session down until its replica is
promoted.  The last step switches it back on to show that refusal as
``StoreUnavailable`` too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from kitsession_wsgi import SetResult, StoreUnavailable
from kitsession_wsgi.stores.base import SessionRecord
from kitsession_wsgi.stores.redis import RedisStore
from kitsession_wsgi.testing import make_record
from servers import PrivateRedisCluster, start_redis_cluster

FAILOVER_DEADLINE = 30.0


@pytest.fixture
def private_cluster() -> Iterator[PrivateRedisCluster]:
    cluster = start_redis_cluster(require_full_coverage=False)
    yield cluster
    cluster.stop()


def _master_of(store: RedisStore, key: str) -> str:
    return str(store.client.get_node_from_key(key).name)  # type: ignore[union-attr]


def _read_all(store: RedisStore, records: list[SessionRecord]) -> tuple[int, int]:
    """``(served, unavailable)``; a record that reads as missing fails the test at once."""
    served = unavailable = 0
    for record in records:
        try:
            got = store.get(record.key)
        except StoreUnavailable:
            unavailable += 1
            continue
        assert got is not None, f"session {record.key} read as missing during an outage"
        assert got.data == record.data
        served += 1
    return served, unavailable


def _user_indexed_away_from(store: RedisStore, victim: str) -> str:
    for n in range(1000):
        if _master_of(store, f"sess:user:s:spread-{n}") != victim:
            return f"spread-{n}"
    raise AssertionError("no user name hashed away from the victim")  # pragma: no cover


def test_a_killed_master_is_unavailable_then_fails_over_without_losing_anything(
        private_cluster: PrivateRedisCluster) -> None:
    store = RedisStore.from_url(f"redis+cluster://{private_cluster.startup_nodes}/")
    durable = RedisStore(store.client, wait_replicas=1, wait_timeout_ms=2000)
    masters = {node.name for node in store.client.get_primaries()}  # type: ignore[union-attr]
    records = [make_record(store, user_id=n % 5, data=f'{{"n":{n}}}') for n in range(40)]
    for record in records:
        assert store.create(record)
    victim = _master_of(store, f"sess:{records[0].key}")
    on_victim = [r for r in records if _master_of(store, f"sess:{r.key}") == victim]
    elsewhere = [r for r in records if _master_of(store, f"sess:{r.key}") != victim]
    assert on_victim and elsewhere and {_master_of(store, f"sess:{r.key}") for r in records} == masters

    # A user whose index lives on a healthy master and whose sessions sit on every master.
    user = _user_indexed_away_from(store, victim)
    theirs: list[SessionRecord] = []
    while {_master_of(store, f"sess:{r.key}") for r in theirs} != masters or len(theirs) < 9:
        theirs.append(make_record(store, user_id=user))
        assert store.create(theirs[-1])
    theirs_on_victim = [r for r in theirs if _master_of(store, f"sess:{r.key}") == victim]

    # An acknowledged logout with WAIT: on the replica before the master dies.
    logged_out = on_victim.pop()
    assert durable.delete(logged_out.key) is True

    # The client's default node (where redis-py sends keyless commands) is the one that dies.
    assert store.client.set_default_node(store.client.get_node(node_name=victim))  # type: ignore[union-attr]
    private_cluster.node_by_port(int(victim.rsplit(":", 1)[1])).kill()

    served, unavailable = _read_all(store, on_victim)
    assert (served, unavailable) == (0, len(on_victim))
    assert _read_all(store, elsewhere) == (len(elsewhere), 0)
    # Sign out everywhere does what it can reach, then says so.
    with pytest.raises(StoreUnavailable, match="retrying finishes the job"):
        store.delete_all_for_user(user)
    for record in theirs:
        if record not in theirs_on_victim:
            assert store.get(record.key) is None

    deadline = time.monotonic() + FAILOVER_DEADLINE
    while _read_all(store, on_victim)[0] < len(on_victim):
        assert time.monotonic() < deadline, "the replica was never promoted"
        time.sleep(0.2)
    kept = [r for r in records if r is not logged_out]
    assert _read_all(store, kept) == (len(kept), 0)  # nothing lost
    assert store.get(logged_out.key) is None  # the acknowledged logout was not undone
    # The promoted replica has no scripts cached yet: they are loaded again on first use.
    moved = on_victim[0]
    assert store.touch(moved.key, moved.updated_at + 1, moved.expires_at + 1)
    assert store.set(moved.with_changes(version=2, data='{"after":"failover"}'), 1) is SetResult.SAVED
    assert store.delete_all_for_user(user) == len(theirs_on_victim)  # the retry finishes the job
    assert store.get_all_for_user(user) == []

    # With cluster-require-full-coverage yes, a shard without any master takes every key down.
    live = [node for node in private_cluster.nodes if node.process is not None]
    for node in live:
        with redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2) as node_client:
            node_client.config_set("cluster-require-full-coverage", "yes")
    promoted = _master_of(store, f"sess:{moved.key}")
    private_cluster.node_by_port(int(promoted.rsplit(":", 1)[1])).kill()
    deadline = time.monotonic() + FAILOVER_DEADLINE
    # (Two sessions are enough: redis-py retries a CLUSTERDOWN reply for a while first.)
    while _read_all(store, elsewhere[:2])[1] < 2:
        assert time.monotonic() < deadline, "the healthy shards kept serving"
        time.sleep(0.2)
    with pytest.raises(StoreUnavailable):
        store.create(make_record(store, user_id=1))
    store.close()
