"""This library's rows: KitSession on every store, the bearer transport, anonymous requests, the middleware.

Every row goes through the public API only: ``KitSession(app, store=...)`` and
``kitsession_wsgi.flask.get_manager()``, ``SessionMiddleware``, the stores'
``from_url`` / ``from_servers`` constructors, ``SessionManager.cookie_value`` and
``session_token`` for the probes, and ``SessionStore.get`` to read a written
value back.  Store calls are counted by putting a counting stand-in for
``manager.store`` (a public attribute) for one untimed request per probe.

The rules checked on every run, in every mode (the "one round trip" verdicts of
the report come from the same counts):

* a read makes exactly one store ``get`` and writes nothing;
* a request with no cookie, or with a bad signature, makes no store call;
* a request that carries the cookie but never touches the session makes no store call in
  steady state (Flask's defaults; the MemoryStore row also with a permanent session and
  with ``SESSION_REFRESH_EACH_REQUEST=False``);
* a read sends no ``Set-Cookie`` and sends ``Vary: Cookie`` (``Vary:
  Authorization`` for the header transport);
* after every write cell the store holds exactly the last value written,
  other keys intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from .bench import Bench
from .harness import (
    PAYLOAD,
    READ_BODY,
    SECRET,
    Caller,
    Scenario,
    Skip,
    check,
    check_written,
    count_probe,
    describe_probe,
    environ_for,
    flask_app,
    login_cookie,
    raw_session_app,
)
from .servers import (
    memcached_command_counter,
    need,
    redis_cluster_command_counter,
    redis_command_counter,
    server_probe,
)

#: store methods that write; a read of an unchanged session calls none of them
WRITES = ("set", "create", "touch", "delete")


def kit_flask(name: str, store: Any, **options: Any) -> tuple[Any, Any, dict[str, int]]:
    """A Flask app (:func:`~kitbench.harness.flask_app`) with KitSession on ``store``: app, manager, counter."""
    from kitsession_wsgi.flask import KitSession, get_manager

    app, state = flask_app(name, secret=True)
    KitSession(app, store=store, **options)
    with app.app_context():
        manager = get_manager()
    return app, manager, state


def stored_data(store: Any, handle: str) -> dict[str, Any] | None:
    """The session data ``store`` holds under ``handle``, read through the store's own ``get``."""
    record = store.get(handle)
    return None if record is None else json.loads(record.data)


def check_round_trip_rules(counts: dict[str, Any], what: str = "read", *, untouched_free: bool = True) -> None:
    """One ``get`` per read, no write, nothing for anonymous requests or bad signatures, nor
    (``untouched_free``: the verified-cookie cache is on, where the refresh facts live) for a
    request that never touches the session."""
    check(sum(counts["read"].values()) == 1 and counts["read"]["get"] == 1,
          f"a {what} made {dict(counts['read'])} store calls, expected exactly one get")
    check(sum(counts["anon"].values()) == 0, f"an anonymous request made {dict(counts['anon'])} store calls")
    check(sum(counts["bad sig"].values()) == 0, f"a bad signature made {dict(counts['bad sig'])} store calls")
    check(not any(counts["read"][w] for w in WRITES), "an unchanged session was written")
    for label, calls in counts.items():
        if label.startswith("untouched") and untouched_free:
            check(sum(calls.values()) == 0, f"a request that never touches the session ({label}) made "
                                            f"{dict(calls)} store calls")


def cookie_probes(app: Any, cookie: str, manager: Any) -> list[tuple[str, Caller]]:
    """read, write, no cookie, a tampered signature, a correctly signed id the store does not hold."""
    from kitsession_wsgi.cookies import encode_cookie_value

    name, value = cookie.split("=", 1)
    tampered = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    unknown = f"{name}={encode_cookie_value(manager.cookie_value('x' * 43))}"
    return [("read", Caller(app, environ_for("/read", cookie))),
            ("write", Caller(app, environ_for("/write", cookie))),
            ("anon", Caller(app, environ_for("/read"))),
            ("bad sig", Caller(app, environ_for("/read", f"{name}={tampered}"))),
            ("unknown id", Caller(app, environ_for("/read", unknown))),
            ("untouched", Caller(app, environ_for("/plain", cookie)))]


def untouched_variants() -> list[tuple[str, Any, Any]]:
    """Apps whose untouched requests are counted too: a permanent session under Flask's
    defaults, and ``SESSION_REFRESH_EACH_REQUEST=False``: (label, caller, manager)."""
    from kitsession_wsgi import MemoryStore

    variants = []
    for label, config in (("untouched permanent", {"SESSION_PERMANENT": True}),
                          ("untouched refresh off", {"SESSION_REFRESH_EACH_REQUEST": False,
                                                     "SESSION_PERMANENT": True})):
        from kitsession_wsgi.flask import KitSession, get_manager

        app, _ = flask_app(f"kit_{label.replace(' ', '_')}", secret=True)
        app.config.update(config)
        KitSession(app, store=MemoryStore())
        with app.app_context():
            manager = get_manager()
        cookie = login_cookie(app)
        request_with(app, "/read", cookie)  # the first sight of the cookie reads the store
        variants.append((label, Caller(app, environ_for("/plain", cookie)), manager))
    return variants


def request_with(app: Any, path: str, cookie: str) -> None:
    Caller(app, environ_for(path, cookie))()


def wire_cookie_cells(scenario: Scenario, app: Any, manager: Any, state: dict[str, int],
                      server_total: Callable[[], int] | None = None,
                      variants: list[tuple[str, Any, Any]] | None = None) -> None:
    """Log in through ``app``, then add the read and write cells, their checks and the counters."""
    store = manager.store
    cookie = login_cookie(app)
    # the session the cookie names, as the manager reads it (public: Session.handle)
    handle = manager.initialize_session(environ_for("/read", cookie)).handle
    check(handle is not None and stored_data(store, handle) == PAYLOAD, "the store does not hold the login payload")
    scenario.store, scenario.handle, scenario.manager, scenario.cookie = store, handle, manager, cookie

    read = Caller(app, environ_for("/read", cookie))
    writer = Caller(app, environ_for("/write", cookie))
    scenario.calls["read"] = read
    scenario.calls["write"] = writer
    scenario.profile_target = read

    def check_read() -> None:
        check(read.status.startswith("200"), f"read answered {read.status}")
        check(read.body == READ_BODY, f"read returned {read.body[:60]!r}")
        check(not read.set_cookies(), "a read of an unchanged session set a cookie")
        check(any(k.lower() == "vary" and "Cookie" in v for k, v in read.headers), "read without Vary: Cookie")
        data = stored_data(store, handle)
        check(data is not None and data.get("email") == PAYLOAD["email"], f"store holds {data!r} after reads")

    scenario.checks["read"] = check_read
    scenario.checks["write"] = lambda: check_written(writer, state, lambda: stored_data(store, handle))

    def count() -> str:
        counts = count_probe(manager, "store", cookie_probes(app, cookie, manager))
        for label, caller, variant_manager in variants or ():
            counts.update(count_probe(variant_manager, "store", [(label, caller)]))
        check_round_trip_rules(counts, untouched_free=manager.cookie_cache_size > 0)
        scenario.store_calls = {label: sum(c.values()) for label, c in counts.items()}
        return describe_probe(counts)

    scenario.count_calls = count
    if server_total is not None:
        scenario.count_server = lambda: server_probe(server_total, cookie_probes(app, cookie, manager)[:4],
                                                     scenario.server_commands)


# -- MemoryStore: cookie, header, anonymous, middleware ------------------------------------


def build_kit_memory(bench: Bench, scenario: Scenario, *, cache: bool = True) -> None:
    from kitsession_wsgi import MemoryStore

    options = {} if cache else {"cookie_cache_size": 0}
    app, manager, state = kit_flask("kit_memory", MemoryStore(), **options)
    wire_cookie_cells(scenario, app, manager, state, variants=untouched_variants() if cache else None)


def build_kit_bearer(bench: Bench, scenario: Scenario) -> None:
    """The same app and store as kit-memory, the session in ``Authorization: Bearer`` instead of a cookie."""
    from kitsession_wsgi import MemoryStore

    app, manager, state = kit_flask("kit_bearer", MemoryStore(), bearer=True)
    session = manager.create_session(data=dict(PAYLOAD))
    token = manager.session_token(session)
    # a correctly signed token for an id the store no longer holds
    gone = manager.create_session(data={"n": 0})
    unknown = manager.session_token(gone)
    manager.remove_session(gone)
    scenario.store, scenario.handle, scenario.manager = manager.store, session.handle, manager

    def with_header(path: str, value: str | None) -> Caller:
        environ = environ_for(path)
        if value is not None:
            environ["HTTP_AUTHORIZATION"] = value
        return Caller(app, environ)

    read, writer = with_header("/read", f"Bearer {token}"), with_header("/write", f"Bearer {token}")
    scenario.calls["read"] = read
    scenario.calls["write"] = writer
    scenario.profile_target = read

    def check_read() -> None:
        check(read.status.startswith("200") and read.body == READ_BODY, f"read answered {read.status} {read.body!r}")
        check(not read.set_cookies(), "a header read set a cookie")
        check(any(k.lower() == "vary" and "Authorization" in v for k, v in read.headers),
              "read without Vary: Authorization")

    def check_write() -> None:
        check(writer.status.startswith("200"), f"write answered {writer.status}")
        check(not writer.set_cookies(), "a header write set a cookie")
        data = stored_data(manager.store, session.handle)
        check(data is not None and data.get("n") == state["n"], f"store holds {data!r}, expected n={state['n']}")

    scenario.checks["read"] = check_read
    scenario.checks["write"] = check_write

    def count() -> str:
        probes = [("read", read), ("write", writer), ("anon", with_header("/read", None)),
                  ("bad sig", with_header("/read", f"Bearer {token[:-3]}AAA")),
                  ("unknown id", with_header("/read", f"Bearer {unknown}"))]
        counts = count_probe(manager, "store", probes)
        check_round_trip_rules(counts, "header read")
        scenario.store_calls = {label: sum(c.values()) for label, c in counts.items()}
        return describe_probe(counts)

    scenario.count_calls = count
    scenario.notes = "session in Authorization: Bearer (same store and app as the MemoryStore row)"


def build_kit_anonymous(bench: Bench, scenario: Scenario, *, bearer: bool) -> None:
    """A request with neither cookie nor header, whose view reads the session (read column)."""
    from kitsession_wsgi import MemoryStore

    app, manager, _ = kit_flask("kit_anonymous", MemoryStore(), bearer=bearer)
    caller = Caller(app, environ_for("/read"))
    scenario.calls["read"] = caller
    scenario.checks["read"] = lambda: check(
        caller.status.startswith("200") and caller.body == b"None" and not caller.set_cookies()
        and len(manager.store.get_all()) == 0, f"anonymous read answered {caller.status} {caller.body!r}")
    scenario.notes = "no cookie, no Authorization header: the cost of reading an empty session"


def build_kit_middleware(bench: Bench, scenario: Scenario) -> None:
    from kitsession_wsgi import MemoryStore, SessionManager
    from kitsession_wsgi.wsgi import SessionMiddleware

    inner = raw_session_app("kit")
    manager = SessionManager(MemoryStore(), keys=[SECRET])
    wire_cookie_cells(scenario, SessionMiddleware(inner, manager), manager, inner.state)


# -- SQL stores ---------------------------------------------------------------------------


def peewee_store_class() -> Any:
    need("peewee", "peewee")
    from kitsession_wsgi.stores.peewee import PeeweeStore

    return PeeweeStore


def build_kit_sqlite(bench: Bench, scenario: Scenario) -> None:
    store = peewee_store_class().from_url(f"sqlite:///{bench.tmp / 'kit.db'}")
    store.create_tables()
    scenario.cleanup.append(store.close)
    app, manager, state = kit_flask("kit_sqlite", store)
    wire_cookie_cells(scenario, app, manager, state)
    scenario.notes = "PeeweeStore.from_url defaults: WAL, synchronous=NORMAL"


def postgres_url() -> str:
    return os.environ.get("KITSESSION_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")


def build_kit_postgres(bench: Bench, scenario: Scenario) -> None:
    store_class = peewee_store_class()
    need("psycopg2", "psycopg2")
    url = postgres_url()
    # a table of this run only: concurrent runs (a test and a benchmark) never share it
    store = store_class.from_url(url, table_name=f"kitsession_bench_{os.getpid()}", connect_timeout=2)
    try:
        store.create_tables()
        store.clear()
    except Exception as exc:
        raise Skip(f"PostgreSQL unavailable at {url}: {type(exc).__name__}: {str(exc).strip()[:80]}") from None

    def drop() -> None:
        store.drop_tables()
        store.close()

    scenario.cleanup.append(drop)
    app, manager, state = kit_flask("kit_postgres", store)
    wire_cookie_cells(scenario, app, manager, state)
    scenario.notes = "a table of this run, dropped at the end"


# -- memcached and Redis --------------------------------------------------------------------


def build_kit_memcached(bench: Bench, scenario: Scenario) -> None:
    need("pymemcache", "pymemcache")
    from kitsession_wsgi.stores.memcached import MemcachedStore

    server = bench.servers.memcached()
    store = MemcachedStore.from_servers([server.address])
    scenario.cleanup.append(store.close)
    app, manager, state = kit_flask("kit_memcached", store)
    wire_cookie_cells(scenario, app, manager, state, memcached_command_counter(server.port))
    scenario.notes = "MemcachedStore.from_servers (same server as Flask-Session)"


def build_kit_redis(bench: Bench, scenario: Scenario) -> None:
    need("redis", "redis-py")
    from kitsession_wsgi.stores.redis import RedisStore

    server = bench.servers.redis()
    store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0")
    scenario.cleanup.append(store.close)
    app, manager, state = kit_flask("kit_redis", store)
    wire_cookie_cells(scenario, app, manager, state, redis_command_counter(server.port))
    scenario.notes = "RedisStore.from_url (same server as Flask-Session)"


def build_kit_redis_cluster(bench: Bench, scenario: Scenario) -> None:
    need("redis", "redis-py")
    from kitsession_wsgi.stores.redis import RedisStore

    cluster = bench.servers.redis_cluster()
    store = RedisStore.from_url(f"redis+cluster://{cluster.startup_nodes}/")
    scenario.cleanup.append(store.close)
    # the masters, from the store's own client (redis-py's public RedisCluster API)
    masters = [int(node.port) for node in store.client.get_primaries()]
    app, manager, state = kit_flask("kit_redis_cluster", store)
    wire_cookie_cells(scenario, app, manager, state, redis_cluster_command_counter(masters))
    scenario.notes = "RedisStore over RedisCluster, 3 masters + 3 replicas on loopback"
