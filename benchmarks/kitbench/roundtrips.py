"""One store round trip, alone and in place: the floors the report's targets are measured against.

``rt-memcached``, ``rt-redis``, ``rt-redis-cluster`` and ``rt-sqlite`` time one
raw ``get`` (one primary-key SELECT) in a tight loop.  A tight loop keeps the
server's thread hot; between two real requests it goes idle, and waking it
costs more on a shared machine (a memcached get measured 31 us in a loop and
55-65 us after 200-500 us of other work).  So the ``rt-flask-*`` rows put one
raw round trip inside the view of a bare Flask app ("a round trip in place"),
and the "memory read + 1.15x one round trip" targets use them.  The views
compare the returned bytes instead of parsing them, so a row is the round trip
alone.  ``rt-flask-sqlite`` does the same for a :class:`PeeweeStore`'s own
table and connection: its SELECT by primary key (read) and one committed
UPDATE (write).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .bench import Bench
from .harness import PAYLOAD, READ_BODY, Caller, Scenario, check, environ_for
from .servers import need

ITEM = json.dumps(PAYLOAD).encode()


def _timed_get(scenario: Scenario, client: Any, what: str) -> None:
    client.set("bench:roundtrip", ITEM)
    scenario.calls["read"] = lambda: client.get("bench:roundtrip")
    scenario.checks["read"] = lambda: check(client.get("bench:roundtrip") == ITEM, what)


def build_rt_memcached(bench: Bench, scenario: Scenario) -> None:
    need("pymemcache", "pymemcache")
    from pymemcache.client.base import Client

    server = bench.servers.memcached()
    _timed_get(scenario, Client(("127.0.0.1", server.port), no_delay=True, default_noreply=False), "memcached get")


def build_rt_redis(bench: Bench, scenario: Scenario) -> None:
    redis = need("redis", "redis-py")
    server = bench.servers.redis()
    _timed_get(scenario, redis.Redis(host="127.0.0.1", port=server.port), "redis GET")


def build_rt_redis_cluster(bench: Bench, scenario: Scenario) -> None:
    need("redis", "redis-py")
    from redis.cluster import ClusterNode, RedisCluster

    cluster = bench.servers.redis_cluster()
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in cluster.nodes])
    scenario.cleanup.append(client.close)
    _timed_get(scenario, client, "redis cluster GET")


def build_rt_sqlite(bench: Bench, scenario: Scenario) -> None:
    peewee = need("peewee", "peewee")
    database = peewee.SqliteDatabase(str(bench.tmp / "roundtrip.db"),
                                     pragmas={"journal_mode": "wal", "synchronous": "normal"})
    database.execute_sql("CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, data TEXT)")
    database.execute_sql("INSERT INTO t VALUES (?, ?)", ("k" * 43, json.dumps(PAYLOAD)))
    scenario.cleanup.append(database.close)

    def select() -> Any:
        return database.execute_sql("SELECT data FROM t WHERE k = ?", ("k" * 43,)).fetchall()

    scenario.calls["read"] = select
    scenario.checks["read"] = lambda: check(len(select()) == 1, "sqlite select")


def build_rt_flask(bench: Bench, scenario: Scenario, *, server: str) -> None:
    """Bare Flask whose view makes one raw ``get`` on ``server`` ("memcached" or "redis")."""
    from flask import Flask

    if server == "memcached":
        need("pymemcache", "pymemcache")
        from pymemcache.client.base import Client

        port = bench.servers.memcached().port
        client: Any = Client(("127.0.0.1", port), no_delay=True, default_noreply=False)
    else:
        redis = need("redis", "redis-py")
        port = bench.servers.redis().port
        client = redis.Redis(host="127.0.0.1", port=port)
    client.set("bench:inplace", ITEM)
    app = Flask(f"rt_flask_{server}")

    @app.get("/read")
    def read() -> str:
        # the round trip alone: a bytes comparison, not a JSON parse, stands in for using the value
        return READ_BODY.decode() if client.get("bench:inplace") == ITEM else "wrong value"

    caller = Caller(app, environ_for("/read"))
    scenario.calls["read"] = caller
    scenario.checks["read"] = lambda: check(caller.body == READ_BODY, f"in-place {server} get: {caller.body!r}")


#: the columns of PeeweeStore's table (its module docstring documents the schema), in the order its get reads them
SESSION_COLUMNS = ("session_key", "data", "user_id", "created_at", "updated_at", "expires_at", "version")


def store_select(table: str) -> str:
    """The SELECT a :class:`PeeweeStore` on SQLite runs for ``get``: every column, by primary key."""
    columns = ", ".join(f'"s"."{column}"' for column in SESSION_COLUMNS)
    return f'SELECT {columns} FROM "{table}" AS "s" WHERE "s"."session_key" = ?'


def build_rt_flask_sqlite(bench: Bench, scenario: Scenario) -> None:
    """Bare Flask whose view runs one raw statement on a PeeweeStore's own SQLite table and connection.

    read: the store's primary-key SELECT through peewee ``execute_sql``;
    write: one UPDATE of that row by primary key, committed (autocommit),
    as the SQLite floor the "memory + 15 us" and "memory write + 1.3x one
    commit" targets are measured against.
    """
    need("peewee", "peewee")
    from flask import Flask

    from kitsession_wsgi import SessionRecord, session_key
    from kitsession_wsgi.stores.peewee import PeeweeStore

    store = PeeweeStore.from_url(f"sqlite:///{bench.tmp / 'inplace.db'}")
    store.create_tables()
    scenario.cleanup.append(store.close)
    now = time.time()
    record = SessionRecord(key=session_key(store.create_id()), data=json.dumps(PAYLOAD, separators=(",", ":")),
                           user_id=None, created_at=now, updated_at=now, expires_at=now + 86400, version=1)
    store.create(record)
    database, select = store.database, store_select(store.table_name)
    update = f'UPDATE "{store.table_name}" SET data = ?, version = version + 1 WHERE session_key = ?'
    state = {"n": 0}
    app = Flask("rt_flask_sqlite")

    @app.get("/read")
    def read() -> str:
        row = database.execute_sql(select, (record.key,)).fetchone()
        return READ_BODY.decode() if row is not None and row[0] == record.key and row[1] else "wrong row"

    @app.get("/write")
    def write() -> str:
        state["n"] += 1
        data = json.dumps({**PAYLOAD, "n": state["n"]}, separators=(",", ":"))
        return str(database.execute_sql(update, (data, record.key)).rowcount)

    reader, writer = Caller(app, environ_for("/read")), Caller(app, environ_for("/write"))
    scenario.calls["read"], scenario.calls["write"] = reader, writer
    scenario.checks["read"] = lambda: check(reader.body == READ_BODY, f"in-place sqlite select: {reader.body!r}")

    def check_write() -> None:
        stored = store.get(record.key)
        check(writer.body == b"1" and stored is not None and json.loads(stored.data).get("n") == state["n"],
              f"in-place sqlite update: {writer.body!r}")

    scenario.checks["write"] = check_write
