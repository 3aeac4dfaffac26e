"""Every row of the report, in table order: its key (for ``--only``), its title and its builder.

The keys are stable (``tests/test_benchmarks.py`` and ``--only`` patterns use
them); ``raw`` and ``bare`` always run, since every ratio is against bare Flask.
``python benchmarks/run.py --list`` prints this table, with the reason a row is
skipped on this machine.
"""

from __future__ import annotations

from functools import partial

from . import peers, roundtrips, scenarios
from .bench import Bench


def build_all(bench: Bench) -> None:
    add = bench.add
    add("raw", "raw WSGI callable (harness floor)", peers.build_raw, kind="wsgi")
    add("bare", "bare Flask app (no extension, no SECRET_KEY)", peers.build_bare)
    add("flask-cookie", "Flask's own signed-cookie session", peers.build_flask_cookie)
    add("fs-cachelib", "Flask-Session cachelib memory, defaults", partial(peers.build_fs_cachelib, refresh=True))
    add("fs-cachelib-norefresh", "Flask-Session cachelib memory, refresh off",
        partial(peers.build_fs_cachelib, refresh=False))
    add("beaker-flask", "Beaker memory around Flask", peers.build_beaker_flask)
    add("beaker-wsgi", "Beaker memory around a bare WSGI callable", peers.build_beaker_wsgi, kind="wsgi")
    add("kit-memory", "kitsession KitSession, MemoryStore", scenarios.build_kit_memory)
    add("kit-bearer", "kitsession KitSession, MemoryStore, bearer=True, session in the header",
        scenarios.build_kit_bearer)
    add("kit-anon", "kitsession KitSession, MemoryStore, neither cookie nor header",
        partial(scenarios.build_kit_anonymous, bearer=False))
    add("kit-anon-bearer", "kitsession KitSession, MemoryStore, bearer=True, neither cookie nor header",
        partial(scenarios.build_kit_anonymous, bearer=True))
    add("kit-memory-nocache", "kitsession KitSession, MemoryStore, cookie cache off",
        partial(scenarios.build_kit_memory, cache=False))
    add("kit-middleware", "kitsession SessionMiddleware around a bare WSGI callable, MemoryStore",
        scenarios.build_kit_middleware, kind="wsgi")
    add("fs-sqlite", "Flask-Session SQLAlchemy on SQLite, defaults", partial(peers.build_fs_sqlite, refresh=True))
    add("fs-sqlite-norefresh", "Flask-Session SQLAlchemy on SQLite, refresh off",
        partial(peers.build_fs_sqlite, refresh=False))
    add("kit-sqlite", "kitsession KitSession, PeeweeStore on SQLite", scenarios.build_kit_sqlite)
    add("kit-postgres", "kitsession KitSession, PeeweeStore on PostgreSQL", scenarios.build_kit_postgres)
    add("fs-memcached", "Flask-Session memcached, defaults", partial(peers.build_fs_memcached, refresh=True))
    add("fs-memcached-norefresh", "Flask-Session memcached, refresh off",
        partial(peers.build_fs_memcached, refresh=False))
    add("kit-memcached", "kitsession KitSession, MemcachedStore", scenarios.build_kit_memcached)
    add("fs-redis", "Flask-Session Redis, defaults", partial(peers.build_fs_redis, refresh=True))
    add("fs-redis-norefresh", "Flask-Session Redis, refresh off", partial(peers.build_fs_redis, refresh=False))
    add("kit-redis", "kitsession KitSession, RedisStore", scenarios.build_kit_redis)
    add("kit-redis-cluster", "kitsession KitSession, RedisStore on a Redis Cluster", scenarios.build_kit_redis_cluster)
    add("rt-sqlite", "one SQLite primary-key SELECT through peewee execute_sql", roundtrips.build_rt_sqlite,
        kind="roundtrip")
    add("rt-memcached", "one memcached get (pymemcache, no_delay)", roundtrips.build_rt_memcached, kind="roundtrip")
    add("rt-redis", "one Redis GET (redis-py)", roundtrips.build_rt_redis, kind="roundtrip")
    add("rt-redis-cluster", "one Redis Cluster GET (redis-py RedisCluster)", roundtrips.build_rt_redis_cluster,
        kind="roundtrip")
    add("rt-flask-memcached", "bare Flask + one raw memcached get in the view (a round trip in place)",
        partial(roundtrips.build_rt_flask, server="memcached"))
    add("rt-flask-redis", "bare Flask + one raw Redis GET in the view (a round trip in place)",
        partial(roundtrips.build_rt_flask, server="redis"))
    add("rt-flask-sqlite", "bare Flask + one raw SQLite statement in the view (read: the store's SELECT; "
        "write: one UPDATE, committed)", roundtrips.build_rt_flask_sqlite)
