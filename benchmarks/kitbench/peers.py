"""The baselines and the peers: raw WSGI, bare Flask, Flask's cookie session, Flask-Session, Beaker.

Each peer runs with its defaults, and Flask-Session also with
``SESSION_REFRESH_EACH_REQUEST=False`` (with its default, every read of a
permanent session rewrites it to the store).  pymemcache is always created with
``no_delay=True``: its default makes each request after a ``noreply`` write wait
~43 ms for a delayed TCP acknowledgement.  After every write cell the stored
value is read back through the peer's own backend (cachelib, memcached, Redis,
the SQLite table, Beaker's memory namespace, the signed cookie for Flask).

Every builder is ``build_*(bench, scenario)``; the peers' packages come from
``benchmarks/requirements.txt`` and a missing one skips its row.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import sqlite3
from collections import Counter
from typing import Any

from .bench import Bench
from .harness import (
    READ_BODY,
    Caller,
    Scenario,
    attach_flask_cells,
    check,
    cookie_pair,
    count_probe,
    describe_counts,
    describe_probe,
    environ_for,
    flask_app,
    raw_session_app,
)
from .servers import memcached_command_counter, need, redis_command_counter, server_probe

# -- baselines ----------------------------------------------------------------------------


def build_raw(bench: Bench, scenario: Scenario) -> None:
    """The harness floor: a WSGI callable that answers the read body and nothing else."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "15")])
        return [READ_BODY]

    caller = Caller(app, environ_for("/read"))
    scenario.calls["read"] = caller
    scenario.checks["read"] = lambda: check(caller.body == READ_BODY, "raw app body")


def build_bare(bench: Bench, scenario: Scenario) -> None:
    """The same app and route as every Flask scenario, no session extension, no SECRET_KEY (Flask's null session)."""
    app, _ = flask_app("bare", secret=False)
    caller = Caller(app, environ_for("/read"))
    scenario.calls["read"] = caller
    scenario.checks["read"] = lambda: check(caller.status.startswith("200") and caller.body == b"None",
                                            f"bare Flask answered {caller.status} {caller.body!r}")
    scenario.profile_target = caller


def build_flask_cookie(bench: Bench, scenario: Scenario) -> None:
    """Flask's own signed-cookie session; its "store" is the cookie."""
    app, state = flask_app("flask_cookie", secret=True)
    serializer = app.session_interface.get_signing_serializer(app)
    holder: dict[str, Any] = {}

    def stored() -> dict[str, Any] | None:
        # decode the last cookie this app sent
        writer = holder.get("writer")
        cookies = writer.set_cookies() if writer is not None and writer.headers else []
        value = cookie_pair(cookies[-1]).split("=", 1)[1] if cookies else holder["cookie"].split("=", 1)[1]
        return dict(serializer.loads(value))

    holder["cookie"] = attach_flask_cells(scenario, app, state, stored)
    holder["writer"] = scenario.calls["write"]
    scenario.count_calls = lambda: "0 (the data is in the cookie)"


# -- Flask-Session 0.8 --------------------------------------------------------------------


def _flask_session_app(bench: Bench, name: str, config: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    need("flask_session", "Flask-Session")
    from flask_session import Session as FlaskSessionExtension

    app, state = flask_app(name, secret=True)
    app.config.update(config)
    FlaskSessionExtension(app)
    bench.versions.setdefault("Flask-Session", importlib.metadata.version("Flask-Session"))
    return app, state


def _sid_of(cookie: str) -> str:
    return cookie.split("=", 1)[1]


def _probes(app: Any, cookie: str) -> list[tuple[str, Caller]]:
    return [("read", Caller(app, environ_for("/read", cookie))),
            ("write", Caller(app, environ_for("/write", cookie))),
            ("anon", Caller(app, environ_for("/read")))]


def _count(interface: Any, attribute: str, probes: list[tuple[str, Caller]]) -> str:
    """Calls on the session interface's client (``cache`` / ``client``) per probe request."""
    return describe_probe(count_probe(interface, attribute, probes))


def build_fs_cachelib(bench: Bench, scenario: Scenario, *, refresh: bool) -> None:
    need("cachelib", "cachelib")
    from cachelib import SimpleCache

    cache = SimpleCache(threshold=100_000, default_timeout=0)
    app, state = _flask_session_app(bench, "fs_cachelib", {
        "SESSION_TYPE": "cachelib", "SESSION_CACHELIB": cache, "SESSION_REFRESH_EACH_REQUEST": refresh})
    holder: dict[str, str] = {}
    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, state, lambda: cache.get("session:" + holder["sid"])))
    cookie = f"session={holder['sid']}"
    scenario.count_calls = lambda: _count(app.session_interface, "cache", _probes(app, cookie))


def build_fs_memcached(bench: Bench, scenario: Scenario, *, refresh: bool) -> None:
    need("pymemcache", "pymemcache")
    msgspec = need("msgspec", "msgspec")
    from pymemcache.client.base import Client

    server = bench.servers.memcached()
    client = Client(("127.0.0.1", server.port), no_delay=True)
    app, state = _flask_session_app(bench, "fs_memcached", {
        "SESSION_TYPE": "memcached", "SESSION_MEMCACHED": client, "SESSION_REFRESH_EACH_REQUEST": refresh})
    holder: dict[str, str] = {}

    def stored() -> dict[str, Any] | None:
        # the app's own connection: its noreply writes are ordered before this get
        raw = client.get("session:" + holder["sid"])
        return None if raw is None else msgspec.msgpack.decode(raw)

    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, state, stored))
    cookie = f"session={holder['sid']}"
    scenario.count_calls = lambda: _count(app.session_interface, "client", _probes(app, cookie))
    total = memcached_command_counter(server.port)
    scenario.count_server = lambda: server_probe(total, _probes(app, cookie))
    scenario.notes = "pymemcache Client(no_delay=True), its default noreply writes"


def build_fs_redis(bench: Bench, scenario: Scenario, *, refresh: bool) -> None:
    redis = need("redis", "redis-py")
    msgspec = need("msgspec", "msgspec")
    server = bench.servers.redis()
    client = redis.Redis(host="127.0.0.1", port=server.port)
    app, state = _flask_session_app(bench, "fs_redis", {
        "SESSION_TYPE": "redis", "SESSION_REDIS": client, "SESSION_REFRESH_EACH_REQUEST": refresh})
    reader = redis.Redis(host="127.0.0.1", port=server.port)
    holder: dict[str, str] = {}

    def stored() -> dict[str, Any] | None:
        raw = reader.get("session:" + holder["sid"])
        return None if raw is None else msgspec.msgpack.decode(raw)

    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, state, stored))
    cookie = f"session={holder['sid']}"
    scenario.count_calls = lambda: _count(app.session_interface, "client", _probes(app, cookie))
    total = redis_command_counter(server.port)
    scenario.count_server = lambda: server_probe(total, _probes(app, cookie))


def build_fs_sqlite(bench: Bench, scenario: Scenario, *, refresh: bool) -> None:
    """Flask-Session on SQLAlchemy/SQLite; statements are counted with an SQLAlchemy event."""
    need("sqlalchemy", "SQLAlchemy")
    need("flask_sqlalchemy", "Flask-SQLAlchemy")
    msgspec = need("msgspec", "msgspec")
    need("flask_session", "Flask-Session")
    from flask_session import Session as FlaskSessionExtension
    from flask_sqlalchemy import SQLAlchemy

    path = bench.tmp / f"flask_session_{'refresh' if refresh else 'norefresh'}.db"
    app, state = flask_app("fs_sqlite", secret=True)
    app.config.update({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SESSION_TYPE": "sqlalchemy",
                       "SESSION_REFRESH_EACH_REQUEST": refresh})
    db = SQLAlchemy(app)
    app.config["SESSION_SQLALCHEMY"] = db
    FlaskSessionExtension(app)
    bench.versions.setdefault("SQLAlchemy", importlib.metadata.version("SQLAlchemy"))
    holder: dict[str, str] = {}

    def stored() -> dict[str, Any] | None:
        # a separate sqlite3 connection: only committed data counts
        with contextlib.closing(sqlite3.connect(path)) as connection:
            row = connection.execute("SELECT data FROM sessions WHERE session_id = ?",
                                     ("session:" + holder["sid"],)).fetchone()
        return None if row is None else msgspec.msgpack.decode(row[0])

    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, state, stored))
    cookie = f"session={holder['sid']}"

    def count() -> str:
        from sqlalchemy import event

        with app.app_context():
            engine = db.engine
        statements: Counter[str] = Counter()

        def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements[statement.split(None, 1)[0].upper()] += 1

        parts = []
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            for label, caller in _probes(app, cookie):
                caller()
                statements.clear()
                caller()
                parts.append(f"{label} {describe_counts(statements)} SQL")
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
        return "; ".join(parts)

    scenario.count_calls = count
    scenario.notes = "SQLite with its default journal (rollback, synchronous=FULL)"


# -- Beaker -------------------------------------------------------------------------------


def _beaker_stored(sid: str) -> dict[str, Any] | None:
    from beaker.container import MemoryNamespaceManager
    from beaker.util import deserialize

    namespace = MemoryNamespaceManager.namespaces.get(sid, dict)
    entry = namespace.get("session")
    if entry is None:
        return None
    # Beaker pickles the session even in memory (its default data_serializer)
    return dict(deserialize(base64.b64decode(entry), "pickle"))


def build_beaker_flask(bench: Bench, scenario: Scenario) -> None:
    need("beaker", "Beaker")
    from beaker.middleware import SessionMiddleware as BeakerMiddleware
    from flask import request as flask_request

    inner, state = flask_app("beaker_flask", secret=False,
                             session_getter=lambda: flask_request.environ["beaker.session"])
    app = BeakerMiddleware(inner, {"session.type": "memory", "session.key": "beaker"})
    bench.versions.setdefault("Beaker", importlib.metadata.version("Beaker"))
    holder: dict[str, str] = {}
    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, state, lambda: _beaker_stored(holder["sid"])))
    scenario.notes = "session.type=memory, unsigned cookie"


def build_beaker_wsgi(bench: Bench, scenario: Scenario) -> None:
    need("beaker", "Beaker")
    from beaker.middleware import SessionMiddleware as BeakerMiddleware

    inner = raw_session_app("beaker")
    app = BeakerMiddleware(inner, {"session.type": "memory", "session.key": "beaker"})
    holder: dict[str, str] = {}
    holder["sid"] = _sid_of(attach_flask_cells(scenario, app, inner.state, lambda: _beaker_stored(holder["sid"])))
    scenario.notes = "session.type=memory, unsigned cookie"
