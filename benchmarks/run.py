#!/usr/bin/env python
"""Benchmark kitsession-wsgi against its peers, in one process, with direct WSGI calls.

Run ``make bench`` (installs ``benchmarks/requirements.txt``, then runs this
script) or ``.venv/bin/python benchmarks/run.py [--quick | --smoke] [--only
PATTERN] [--markdown FILE]``.  The report is Markdown on stdout; progress goes
to stderr.  See ``benchmarks/README.md`` for how to read it.

Method (see /work/shared/BENCHMARKS.md for why):

* every request is ``app(environ, start_response)`` with the body drained and
  closed; each scenario's environ is built once with werkzeug's
  ``EnvironBuilder`` and copied per call (no test client in the timed loop);
* every cell is warmed up, then timed in 5 repetitions; each repetition of a
  cell runs right after a repetition of the bare Flask app (A B A B), and the
  ratio reported is the median of those adjacent ratios;
* "read" re-reads an existing session without changing it; "write" changes
  one key to a value that differs on every request (SQLite skips identical
  rewrites); after every write cell the stored value is read back through the
  store's own backend and must be exactly the last value written;
* store calls are counted by a wrapper swapped in for one pass that is not
  timed; memcached and Redis commands are counted on the server.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from werkzeug.test import EnvironBuilder  # noqa: E402

SECRET = "benchmark-secret-key-0123456789abcdef"
#: ~200 bytes of JSON, like a logged-in user's session
PAYLOAD: dict[str, Any] = {
    "user_id": 42,
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "roles": ["admin", "editor"],
    "csrf_token": "Zk3tq0xJm2C5b8s9dVQw1eRr7yTu4iOp6aSd0fGh2Jk",
    "theme": "dark",
    "locale": "en-GB",
    "n": 0,
}
READ_BODY = b"ada@example.com"

MODES = {
    # reps, seconds per timed cell, seconds of warm-up, fewest / most requests per cell
    "full": dict(reps=5, cell_seconds=0.25, warmup_seconds=0.05, min_n=20, max_n=200_000,
                 scale_small=1_000, scale_large=1_000_000, scale_sqlite_large=1_000_000,
                 remove_small=10, remove_iterations=60, profile_seconds=2.0, subrounds=8),
    "quick": dict(reps=5, cell_seconds=0.05, warmup_seconds=0.02, min_n=10, max_n=50_000,
                  scale_small=1_000, scale_large=100_000, scale_sqlite_large=100_000,
                  remove_small=10, remove_iterations=20, profile_seconds=0.5, subrounds=4),
    "smoke": dict(reps=2, cell_seconds=0.0, warmup_seconds=0.0, min_n=2, max_n=2,
                  scale_small=100, scale_large=1_000, scale_sqlite_large=1_000,
                  remove_small=10, remove_iterations=2, profile_seconds=0.0, subrounds=1),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Skip(Exception):
    """A scenario whose dependency is missing: reported as a row with the reason."""


class CheckFailed(AssertionError):
    """A correctness check failed: the run exits non-zero."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- one request ------------------------------------------------------------------------


class Caller:
    """Calls a WSGI app with a copy of one environ; keeps the last status, headers and body."""

    __slots__ = ("app", "environ", "status", "headers", "body")

    def __init__(self, app: Any, environ: dict[str, Any]) -> None:
        self.app = app
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def _write(self, data: bytes) -> None:  # pragma: no cover - nobody uses write()
        raise RuntimeError("write() is not supported")

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        self.headers = headers
        return self._write

    def __call__(self) -> None:
        body = self.app(self.environ.copy(), self.start_response)
        try:
            self.body = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


def environ_for(path: str, cookie: str | None = None) -> dict[str, Any]:
    headers = {"Cookie": cookie} if cookie else {}
    builder = EnvironBuilder(path=path, method="GET", headers=headers)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def cookie_pair(set_cookie: str) -> str:
    """``name=value`` of a Set-Cookie header value, as a browser sends it back."""
    return set_cookie.split(";", 1)[0].strip()


def request(app: Any, path: str, cookie: str | None = None) -> Caller:
    caller = Caller(app, environ_for(path, cookie))
    caller()
    return caller


# -- scenarios --------------------------------------------------------------------------


class Scenario:
    """One row of the table: an app (or a bare callable) and its checks.

    ``calls`` maps a kind ("read", "write") to a zero-argument callable doing
    one request; ``checks`` maps the kind to a callable that raises
    :class:`CheckFailed` when the last request or the store is wrong.
    """

    def __init__(self, key: str, title: str, *, kind: str = "flask") -> None:
        self.key = key
        self.title = title
        self.kind = kind  # "flask", "wsgi" or "roundtrip"
        self.calls: dict[str, Callable[[], None]] = {}
        self.checks: dict[str, Callable[[], None]] = {}
        self.count_calls: Callable[[], str] | None = None
        self.count_server: Callable[[], str] | None = None
        #: what count_calls / count_server measured: store calls and server commands per probe request
        self.store_calls: dict[str, int] = {}
        self.server_commands: dict[str, int] = {}
        self.cleanup: list[Callable[[], None]] = []
        self.notes = ""
        self.skip: str | None = None
        self.failure: str | None = None
        self.profile_target: Callable[[], None] | None = None
        # kitsession scenarios: the store, the logged-in session's handle, the manager, the cookie
        self.store: Any = None
        self.handle = ""
        self.manager: Any = None
        self.cookie = ""


def flask_app(name: str, *, secret: bool, session_getter: Callable[[], Any] | None = None) -> tuple[Any, dict[str, int]]:
    """A Flask app with the three routes every Flask scenario shares.

    ``/read`` reads one scalar; ``/write`` sets ``n`` to a new value every time;
    ``/login`` stores the payload.  ``session_getter`` replaces ``flask.session``
    (Beaker puts its session in the environ).
    """
    from flask import Flask
    from flask import session as flask_session

    app = Flask(name)
    if secret:
        app.config["SECRET_KEY"] = SECRET
    state = {"n": 0}
    get = session_getter or (lambda: flask_session)

    @app.get("/read")
    def read() -> str:
        return str(get().get("email"))

    @app.get("/write")
    def write() -> str:
        state["n"] += 1
        session = get()
        session["n"] = state["n"]
        if hasattr(session, "save") and session_getter is not None:
            session.save()
        return str(state["n"])

    @app.get("/login")
    def login() -> str:
        session = get()
        session.update(PAYLOAD)
        if hasattr(session, "save") and session_getter is not None:
            session.save()
        return "ok"

    return app, state


def attach_flask_cells(scenario: Scenario, app: Any, state: dict[str, int],
                       stored: Callable[[], dict[str, Any] | None], *, write: bool = True) -> str:
    """Log in once, then add read and write cells whose checks read the store back."""
    login = request(app, "/login")
    check(login.status.startswith("200"), f"login answered {login.status}")
    cookies = login.set_cookies()
    check(len(cookies) == 1, f"login set {len(cookies)} cookies")
    cookie = cookie_pair(cookies[0])
    read = Caller(app, environ_for("/read", cookie))
    scenario.calls["read"] = read

    def check_read() -> None:
        check(read.status.startswith("200"), f"read answered {read.status}")
        check(read.body == READ_BODY, f"read returned {read.body[:60]!r}")
        data = stored()
        check(data is not None and data.get("email") == PAYLOAD["email"], f"store holds {data!r} after reads")

    scenario.checks["read"] = check_read
    if write:
        writer = Caller(app, environ_for("/write", cookie))
        scenario.calls["write"] = writer

        def check_write() -> None:
            check(writer.status.startswith("200"), f"write answered {writer.status}")
            check(writer.body == str(state["n"]).encode(), f"write returned {writer.body!r}, expected {state['n']}")
            data = stored()
            check(data is not None, "the store lost the session")
            assert data is not None
            check(data.get("n") == state["n"], f"store holds n={data.get('n')!r}, expected exactly {state['n']}")
            check(data.get("email") == PAYLOAD["email"], "the write lost the other keys")

        scenario.checks["write"] = check_write
    return cookie


class CallCounter:
    """Counts calls of an object's public methods; everything else passes through."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        counts = self.counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return value(*args, **kwargs)

        return counted


def describe_counts(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    inner = ", ".join(f"{name}" if n == 1 else f"{name}x{n}" for name, n in sorted(counts.items()))
    return f"{total} ({inner})"


def count_probe(set_counter: Callable[[CallCounter | None], CallCounter | None],
                probes: list[tuple[str, Caller]]) -> dict[str, Counter[str]]:
    """Run each probe once with the counter swapped in; return counts per probe."""
    result: dict[str, Counter[str]] = {}
    for label, caller in probes:
        caller()  # warm (caches, connections) outside the count
        counter = set_counter(None)
        assert counter is not None
        counter.counts.clear()
        caller()
        result[label] = Counter(counter.counts)
        set_counter(counter)  # hand it back: the callback restores the original
    return result


# -- servers ------------------------------------------------------------------------------


class Servers:
    """Private memcached and Redis on free ports (tests/servers.py), stopped at the end."""

    def __init__(self) -> None:
        self._memcached: Any = None
        self._redis: Any = None
        self._redis_cluster: Any = None
        self.memcached_error: str | None = None
        self.redis_error: str | None = None
        self.redis_cluster_error: str | None = None

    def memcached(self) -> Any:
        if self._memcached is None and self.memcached_error is None:
            try:
                from tests.servers import start_memcached

                self._memcached = start_memcached()
            except BaseException as exc:  # pytest's skip is a BaseException
                self.memcached_error = f"memcached unavailable: {exc}"
        if self._memcached is None:
            raise Skip(self.memcached_error or "memcached unavailable")
        return self._memcached

    def redis(self) -> Any:
        if self._redis is None and self.redis_error is None:
            try:
                from tests.servers import start_redis

                self._redis = start_redis()
            except BaseException as exc:
                self.redis_error = f"redis-server unavailable: {exc}"
        if self._redis is None:
            raise Skip(self.redis_error or "redis-server unavailable")
        return self._redis

    def redis_cluster(self) -> Any:
        """A private Redis Cluster (3 masters + 3 replicas, tests/servers.py)."""
        if self._redis_cluster is None and self.redis_cluster_error is None:
            try:
                from tests.servers import start_redis_cluster

                self._redis_cluster = start_redis_cluster()
            except BaseException as exc:
                self.redis_cluster_error = f"Redis Cluster unavailable: {exc}"
        if self._redis_cluster is None:
            raise Skip(self.redis_cluster_error or "Redis Cluster unavailable")
        return self._redis_cluster

    def stop(self) -> None:
        for server in (self._memcached, self._redis, self._redis_cluster):
            if server is not None:
                server.stop()


def need(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{what} not installed ({exc.name or module}); pip install -r benchmarks/requirements.txt") from None


def memcached_command_counter(port: int) -> Callable[[], int]:
    from pymemcache.client.base import Client

    admin = Client(("127.0.0.1", port), no_delay=True)
    # cmd_get counts get and gets; cmd_set counts set, add, append and cas (cas_* are subsets)
    fields = ("cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "delete_hits", "delete_misses",
              "incr_hits", "incr_misses", "decr_hits", "decr_misses")

    def total() -> int:
        stats = admin.stats()
        return sum(int(stats.get(f.encode(), stats.get(f, 0))) for f in fields)

    return total


def redis_command_counter(port: int) -> Callable[[], int]:
    import redis

    admin = redis.Redis(host="127.0.0.1", port=port)

    def total() -> int:
        # INFO counts itself once per call; the caller takes a difference of two calls
        return int(admin.info("stats")["total_commands_processed"])

    return total


def redis_cluster_command_counter(ports: list[int]) -> Callable[[], int]:
    import redis

    admins = [redis.Redis(host="127.0.0.1", port=port) for port in ports]

    def total() -> int:
        # the masters only (a replica counts what it replays); INFO counts itself on each node,
        # which the caller's difference of two calls takes out
        return sum(int(admin.info("stats")["total_commands_processed"]) for admin in admins)

    return total


def server_probe(total: Callable[[], int], probes: list[tuple[str, Caller]],
                 measured: dict[str, int] | None = None) -> str:
    """Server commands per request for each probe, counted by the server; also put into ``measured``."""
    baseline = total()
    idle = total() - baseline  # what one INFO / stats call adds by itself
    parts = []
    for label, caller in probes:
        caller()
        before = total()
        caller()
        after = total()
        if measured is not None:
            measured[label] = after - before - idle
        parts.append(f"{label} {after - before - idle}")
    return ", ".join(parts)


# -- the scenario builders ------------------------------------------------------------------


class Bench:
    def __init__(self, mode: str, only: list[str] | None) -> None:
        self.mode = mode
        self.settings = MODES[mode]
        self.only = only
        self.tmp = Path(tempfile.mkdtemp(prefix="kitsession-bench-"))
        self.servers = Servers()
        self.scenarios: list[Scenario] = []
        self.failures: list[str] = []
        self.versions: dict[str, str] = {}
        self.load_at_start = ", ".join(f"{value:.1f}" for value in os.getloadavg())

    def wanted(self, key: str) -> bool:
        if key in ("bare", "raw"):
            return True
        if not self.only:
            return True
        return any(fnmatch.fnmatch(key, p) or p in key for p in self.only)

    def add(self, key: str, title: str, build: Callable[[Scenario], None], *, kind: str = "flask") -> None:
        if not self.wanted(key):
            return
        scenario = Scenario(key, title, kind=kind)
        log(f"setting up {key}")
        try:
            build(scenario)
        except Skip as exc:
            scenario.skip = str(exc)
            scenario.calls.clear()
        except CheckFailed as exc:
            scenario.failure = f"setup check failed: {exc}"
            scenario.calls.clear()
            self.failures.append(f"{key}: {scenario.failure}")
        except Exception as exc:  # a peer that cannot run here is a row with the reason, not a crash
            scenario.failure = f"setup error: {type(exc).__name__}: {exc}"
            scenario.calls.clear()
            self.failures.append(f"{key}: {scenario.failure}")
            log(traceback.format_exc())
        self.scenarios.append(scenario)

    # baseline rows

    def build_raw(self, scenario: Scenario) -> None:
        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "15")])
            return [READ_BODY]

        caller = Caller(app, environ_for("/read"))
        scenario.calls["read"] = caller
        scenario.checks["read"] = lambda: check(caller.body == READ_BODY, "raw app body")

    def build_bare(self, scenario: Scenario) -> None:
        app, _ = flask_app("bare", secret=False)
        caller = Caller(app, environ_for("/read"))
        scenario.calls["read"] = caller
        scenario.checks["read"] = lambda: check(caller.status.startswith("200") and caller.body == b"None",
                                                f"bare Flask answered {caller.status} {caller.body!r}")
        scenario.profile_target = caller

    def build_flask_cookie(self, scenario: Scenario) -> None:
        app, state = flask_app("flask_cookie", secret=True)
        serializer = app.session_interface.get_signing_serializer(app)
        holder: dict[str, Any] = {}

        def stored() -> dict[str, Any] | None:
            # the "store" is the cookie: decode the last one this app sent
            writer = holder.get("writer")
            cookies = writer.set_cookies() if writer is not None and writer.headers else []
            value = cookie_pair(cookies[-1]).split("=", 1)[1] if cookies else holder["cookie"].split("=", 1)[1]
            return dict(serializer.loads(value))

        holder["cookie"] = attach_flask_cells(scenario, app, state, stored)
        holder["writer"] = scenario.calls["write"]
        scenario.count_calls = lambda: "0 (the data is in the cookie)"

    # Flask-Session 0.8

    def flask_session_app(self, name: str, config: dict[str, Any]) -> tuple[Any, dict[str, int]]:
        need("flask_session", "Flask-Session")
        from flask_session import Session as FlaskSessionExtension

        app, state = flask_app(name, secret=True)
        app.config.update(config)
        FlaskSessionExtension(app)
        self.versions.setdefault("Flask-Session", importlib.metadata.version("Flask-Session"))
        return app, state

    def sid_of(self, cookie: str) -> str:
        return cookie.split("=", 1)[1]

    def fs_probes(self, app: Any, cookie: str) -> list[tuple[str, Caller]]:
        return [("read", Caller(app, environ_for("/read", cookie))),
                ("write", Caller(app, environ_for("/write", cookie))),
                ("anon", Caller(app, environ_for("/read")))]

    def fs_count(self, interface: Any, attribute: str, probes: list[tuple[str, Caller]]) -> str:
        original = getattr(interface, attribute)
        counter = CallCounter(original)

        def swap(returned: CallCounter | None) -> CallCounter | None:
            if returned is None:
                setattr(interface, attribute, counter)
                return counter
            setattr(interface, attribute, original)
            return None

        counts = count_probe(swap, probes)
        return "; ".join(f"{label} {describe_counts(c)}" for label, c in counts.items())

    def build_fs_cachelib(self, scenario: Scenario, refresh: bool) -> None:
        need("cachelib", "cachelib")
        from cachelib import SimpleCache

        cache = SimpleCache(threshold=100_000, default_timeout=0)
        app, state = self.flask_session_app(
            "fs_cachelib", {"SESSION_TYPE": "cachelib", "SESSION_CACHELIB": cache,
                            "SESSION_REFRESH_EACH_REQUEST": refresh})
        holder: dict[str, str] = {}
        holder["sid"] = self.sid_of(attach_flask_cells(
            scenario, app, state, lambda: cache.get("session:" + holder["sid"])))
        cookie = f"session={holder['sid']}"
        scenario.count_calls = lambda: self.fs_count(app.session_interface, "cache", self.fs_probes(app, cookie))

    def build_fs_memcached(self, scenario: Scenario, refresh: bool) -> None:
        need("pymemcache", "pymemcache")
        msgspec = need("msgspec", "msgspec")
        from pymemcache.client.base import Client

        server = self.servers.memcached()
        # no_delay=True: pymemcache's default (Nagle + noreply writes) waits ~43 ms per request
        client = Client(("127.0.0.1", server.port), no_delay=True)
        app, state = self.flask_session_app(
            "fs_memcached", {"SESSION_TYPE": "memcached", "SESSION_MEMCACHED": client,
                             "SESSION_REFRESH_EACH_REQUEST": refresh})
        holder: dict[str, str] = {}

        def stored() -> dict[str, Any] | None:
            # the app's own connection: its noreply writes are ordered before this get
            raw = client.get("session:" + holder["sid"])
            return None if raw is None else msgspec.msgpack.decode(raw)

        holder["sid"] = self.sid_of(attach_flask_cells(scenario, app, state, stored))
        cookie = f"session={holder['sid']}"
        scenario.count_calls = lambda: self.fs_count(app.session_interface, "client", self.fs_probes(app, cookie))
        total = memcached_command_counter(server.port)
        scenario.count_server = lambda: server_probe(total, self.fs_probes(app, cookie))
        scenario.notes = "pymemcache Client(no_delay=True), its default noreply writes"

    def build_fs_redis(self, scenario: Scenario, refresh: bool) -> None:
        redis = need("redis", "redis-py")
        msgspec = need("msgspec", "msgspec")
        server = self.servers.redis()
        client = redis.Redis(host="127.0.0.1", port=server.port)
        app, state = self.flask_session_app(
            "fs_redis", {"SESSION_TYPE": "redis", "SESSION_REDIS": client,
                         "SESSION_REFRESH_EACH_REQUEST": refresh})
        reader = redis.Redis(host="127.0.0.1", port=server.port)
        holder: dict[str, str] = {}

        def stored() -> dict[str, Any] | None:
            raw = reader.get("session:" + holder["sid"])
            return None if raw is None else msgspec.msgpack.decode(raw)

        holder["sid"] = self.sid_of(attach_flask_cells(scenario, app, state, stored))
        cookie = f"session={holder['sid']}"
        scenario.count_calls = lambda: self.fs_count(app.session_interface, "client", self.fs_probes(app, cookie))
        total = redis_command_counter(server.port)
        scenario.count_server = lambda: server_probe(total, self.fs_probes(app, cookie))

    def build_fs_sqlite(self, scenario: Scenario, refresh: bool) -> None:
        need("sqlalchemy", "SQLAlchemy")
        need("flask_sqlalchemy", "Flask-SQLAlchemy")
        msgspec = need("msgspec", "msgspec")
        from flask_sqlalchemy import SQLAlchemy
        from flask import Flask  # noqa: F401  (Flask-SQLAlchemy needs the app first)

        path = self.tmp / f"flask_session_{'refresh' if refresh else 'norefresh'}.db"
        need("flask_session", "Flask-Session")
        from flask_session import Session as FlaskSessionExtension

        app, state = flask_app("fs_sqlite", secret=True)
        app.config.update({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SESSION_TYPE": "sqlalchemy",
                           "SESSION_REFRESH_EACH_REQUEST": refresh})
        db = SQLAlchemy(app)
        app.config["SESSION_SQLALCHEMY"] = db
        FlaskSessionExtension(app)
        self.versions.setdefault("SQLAlchemy", importlib.metadata.version("SQLAlchemy"))
        holder: dict[str, str] = {}

        def stored() -> dict[str, Any] | None:
            # a separate sqlite3 connection: only committed data counts
            with contextlib.closing(sqlite3.connect(path)) as connection:
                row = connection.execute("SELECT data FROM sessions WHERE session_id = ?",
                                         ("session:" + holder["sid"],)).fetchone()
            return None if row is None else msgspec.msgpack.decode(row[0])

        holder["sid"] = self.sid_of(attach_flask_cells(scenario, app, state, stored))
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
                for label, caller in self.fs_probes(app, cookie):
                    caller()
                    statements.clear()
                    caller()
                    parts.append(f"{label} {describe_counts(statements)} SQL")
            finally:
                event.remove(engine, "before_cursor_execute", on_execute)
            return "; ".join(parts)

        scenario.count_calls = count
        scenario.notes = "SQLite with its default journal (rollback, synchronous=FULL)"

    # Beaker

    def beaker_stored(self, sid: str) -> dict[str, Any] | None:
        from beaker.container import MemoryNamespaceManager

        namespace = MemoryNamespaceManager.namespaces.get(sid, dict)
        entry = namespace.get("session")
        if entry is None:
            return None
        from beaker.util import deserialize

        # Beaker pickles the session even in memory (its default data_serializer)
        return dict(deserialize(base64.b64decode(entry), "pickle"))

    def build_beaker_flask(self, scenario: Scenario) -> None:
        need("beaker", "Beaker")
        from beaker.middleware import SessionMiddleware as BeakerMiddleware
        from flask import request as flask_request

        inner, state = flask_app("beaker_flask", secret=False,
                                 session_getter=lambda: flask_request.environ["beaker.session"])
        app = BeakerMiddleware(inner, {"session.type": "memory", "session.key": "beaker"})
        self.versions.setdefault("Beaker", importlib.metadata.version("Beaker"))
        holder: dict[str, str] = {}
        holder["sid"] = self.sid_of(attach_flask_cells(scenario, app, state, lambda: self.beaker_stored(holder["sid"])))
        scenario.notes = "session.type=memory, unsigned cookie"

    def build_beaker_wsgi(self, scenario: Scenario) -> None:
        need("beaker", "Beaker")
        from beaker.middleware import SessionMiddleware as BeakerMiddleware

        app = BeakerMiddleware(self.raw_session_app("beaker"), {"session.type": "memory", "session.key": "beaker"})
        holder: dict[str, str] = {}
        holder["sid"] = self.sid_of(attach_flask_cells(scenario, app, app.wrap_app.state,
                                                       lambda: self.beaker_stored(holder["sid"])))
        scenario.notes = "session.type=memory, unsigned cookie"

    def raw_session_app(self, flavour: str) -> Any:
        """A bare WSGI callable with /read, /write and /login over Beaker's or this library's session."""
        state = {"n": 0}

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            path = environ["PATH_INFO"]
            if flavour == "beaker":
                session = environ["beaker.session"]
                data = session
            else:
                session = environ["kitsession"].session
                data = session.data
            if path == "/read":
                body = str(data.get("email")).encode()
            elif path == "/write":
                state["n"] += 1
                data["n"] = state["n"]
                if flavour == "beaker":
                    session.save()
                body = str(state["n"]).encode()
            else:
                data.update(PAYLOAD)
                if flavour == "beaker":
                    session.save()
                body = b"ok"
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]

        app.state = state  # type: ignore[attr-defined]
        return app

    # this library

    def kit_probes(self, app: Any, cookie: str, manager: Any) -> list[tuple[str, Caller]]:
        from kitsession_wsgi.cookies import encode_cookie_value

        name, value = cookie.split("=", 1)
        tampered = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
        unknown = f"{name}={encode_cookie_value(manager.cookie_value('x' * 43))}"
        return [("read", Caller(app, environ_for("/read", cookie))),
                ("write", Caller(app, environ_for("/write", cookie))),
                ("anon", Caller(app, environ_for("/read"))),
                ("bad sig", Caller(app, environ_for("/read", f"{name}={tampered}"))),
                ("unknown id", Caller(app, environ_for("/read", unknown)))]

    def kit_wire(self, scenario: Scenario, app: Any, manager: Any, state: dict[str, int],
                 server_total: Callable[[], int] | None = None) -> None:
        store = manager.store
        holder: dict[str, str] = {}

        def stored() -> dict[str, Any] | None:
            record = store.get(holder["handle"])
            return None if record is None else json.loads(record.data)

        def bootstrap_stored() -> dict[str, Any] | None:
            return stored() if "handle" in holder else None

        login = request(app, "/login")
        check(login.status.startswith("200"), f"login answered {login.status}")
        cookies = login.set_cookies()
        check(len(cookies) == 1, f"login set {len(cookies)} cookies")
        cookie = cookie_pair(cookies[0])
        holder["handle"] = self.handle_of(manager, cookie)
        check(bootstrap_stored() == PAYLOAD, "the store does not hold the login payload")
        scenario.store, scenario.handle, scenario.manager = store, holder["handle"], manager
        scenario.cookie = cookie

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
            data = stored()
            check(data is not None and data.get("email") == PAYLOAD["email"], f"store holds {data!r} after reads")

        def check_write() -> None:
            check(writer.status.startswith("200"), f"write answered {writer.status}")
            check(writer.body == str(state["n"]).encode(), f"write returned {writer.body!r}, expected {state['n']}")
            data = stored()
            check(data is not None, "the store lost the session")
            assert data is not None
            check(data.get("n") == state["n"], f"store holds n={data.get('n')!r}, expected exactly {state['n']}")
            check(data.get("email") == PAYLOAD["email"], "the write lost the other keys")

        scenario.checks["read"] = check_read
        scenario.checks["write"] = check_write

        def count() -> str:
            original = manager.store
            counter = CallCounter(original)

            def swap(returned: CallCounter | None) -> CallCounter | None:
                if returned is None:
                    manager.store = counter
                    return counter
                manager.store = original
                return None

            counts = count_probe(swap, self.kit_probes(app, cookie, manager))
            # the issue's rules, checked on every run
            check(sum(counts["read"].values()) == 1 and counts["read"]["get"] == 1,
                  f"a read made {dict(counts['read'])} store calls, expected exactly one get")
            check(sum(counts["anon"].values()) == 0, f"an anonymous request made {dict(counts['anon'])} store calls")
            check(sum(counts["bad sig"].values()) == 0, f"a bad signature made {dict(counts['bad sig'])} store calls")
            writes = {"set", "create", "touch", "delete"}
            check(not any(counts["read"][w] for w in writes), "an unchanged session was written")
            scenario.store_calls = {label: sum(c.values()) for label, c in counts.items()}
            return "; ".join(f"{label} {describe_counts(c)}" for label, c in counts.items())

        scenario.count_calls = count
        if server_total is not None:
            scenario.count_server = lambda: server_probe(server_total, self.kit_probes(app, cookie, manager)[:4],
                                                         scenario.server_commands)

    @staticmethod
    def handle_of(manager: Any, cookie: str) -> str:
        """The store key of the session a cookie names: from the cookie, else the newest stored session."""
        try:
            from kitsession_wsgi.cookies import decode_cookie_value
            from kitsession_wsgi.manager import session_key

            unsigned = manager.signer.unsign(decode_cookie_value(cookie.split("=", 1)[1]))
            handle = session_key(unsigned.session_id)
            if manager.store.get(handle) is not None:
                return str(handle)
        except (ImportError, AttributeError, TypeError):
            pass  # the core's internals moved: fall back on the public listing (slow on a huge store)
        sessions = manager.get_all_sessions()
        check(bool(sessions), "the login stored no session")
        return str(sessions[-1].handle)

    def kit_flask(self, name: str, store: Any, **options: Any) -> tuple[Any, Any, dict[str, int]]:
        from kitsession_wsgi.flask import KitSession

        app, state = flask_app(name, secret=True)
        KitSession(app, store=store, **options)
        return app, app.extensions["kitsession"].manager, state

    def build_kit_memory(self, scenario: Scenario, cache: bool = True) -> None:
        from kitsession_wsgi import MemoryStore

        options = {} if cache else {"cookie_cache_size": 0}
        app, manager, state = self.kit_flask("kit_memory", MemoryStore(), **options)
        self.kit_wire(scenario, app, manager, state)

    def build_kit_bearer(self, scenario: Scenario) -> None:
        """The same app and store as kit-memory, the session in ``Authorization: Bearer`` instead of a cookie."""
        from kitsession_wsgi import MemoryStore

        app, manager, state = self.kit_flask("kit_bearer", MemoryStore(), bearer=True)
        session = manager.create_session(data=dict(PAYLOAD))
        token = manager.session_token(session)
        scenario.store, scenario.handle, scenario.manager = manager.store, session.handle, manager

        def with_header(path: str, value: str | None) -> Caller:
            environ = environ_for(path)
            if value is not None:
                environ["HTTP_AUTHORIZATION"] = value
            return Caller(app, environ)

        def stored() -> dict[str, Any] | None:
            record = manager.store.get(session.handle)
            return None if record is None else json.loads(record.data)

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
            data = stored()
            check(data is not None and data.get("n") == state["n"], f"store holds {data!r}, expected n={state['n']}")

        scenario.checks["read"] = check_read
        scenario.checks["write"] = check_write

        def count() -> str:
            original = manager.store
            counter = CallCounter(original)

            def swap(returned: CallCounter | None) -> CallCounter | None:
                manager.store = counter if returned is None else original
                return counter if returned is None else None

            probes = [("read", read), ("write", writer), ("anon", with_header("/read", None)),
                      ("bad sig", with_header("/read", f"Bearer {token[:-3]}AAA")),
                      ("unknown id", with_header("/read", f"Bearer {manager._cookie.token('x' * 43)}"))]
            counts = count_probe(swap, probes)
            check(sum(counts["read"].values()) == 1 and counts["read"]["get"] == 1,
                  f"a header read made {dict(counts['read'])} store calls, expected exactly one get")
            check(sum(counts["anon"].values()) == 0, f"an anonymous request made {dict(counts['anon'])} store calls")
            check(sum(counts["bad sig"].values()) == 0, f"a bad token made {dict(counts['bad sig'])} store calls")
            scenario.store_calls = {label: sum(c.values()) for label, c in counts.items()}
            return "; ".join(f"{label} {describe_counts(c)}" for label, c in counts.items())

        scenario.count_calls = count
        scenario.notes = "session in Authorization: Bearer (same store and app as the MemoryStore row)"

    def build_kit_anonymous(self, scenario: Scenario, bearer: bool) -> None:
        """A request with neither cookie nor header, whose view reads the session (read column)."""
        from kitsession_wsgi import MemoryStore

        app, manager, _ = self.kit_flask("kit_anonymous", MemoryStore(), bearer=bearer)
        caller = Caller(app, environ_for("/read"))
        scenario.calls["read"] = caller
        scenario.checks["read"] = lambda: check(
            caller.status.startswith("200") and caller.body == b"None" and not caller.set_cookies()
            and len(manager.store.get_all()) == 0, f"anonymous read answered {caller.status} {caller.body!r}")
        scenario.notes = "no cookie, no Authorization header: the cost of reading an empty session"

    def build_kit_sqlite(self, scenario: Scenario) -> None:
        need("peewee", "peewee")
        try:
            from kitsession_wsgi.stores.peewee import PeeweeStore
        except ImportError as exc:
            raise Skip(f"kitsession_wsgi.stores.peewee not available: {exc}") from None
        store = PeeweeStore.from_url(f"sqlite:///{self.tmp / 'kit.db'}")
        store.create_tables()
        scenario.cleanup.append(store.close)
        app, manager, state = self.kit_flask("kit_sqlite", store)
        self.kit_wire(scenario, app, manager, state)
        scenario.notes = "PeeweeStore.from_url defaults: WAL, synchronous=NORMAL"

    def build_kit_postgres(self, scenario: Scenario) -> None:
        need("peewee", "peewee")
        need("psycopg2", "psycopg2")
        try:
            from kitsession_wsgi.stores.peewee import PeeweeStore
        except ImportError as exc:
            raise Skip(f"kitsession_wsgi.stores.peewee not available: {exc}") from None
        url = os.environ.get("KITSESSION_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
        # a table of this run only: concurrent runs (a test and a benchmark) never share it
        store = PeeweeStore.from_url(url, table_name=f"kitsession_bench_{os.getpid()}", connect_timeout=2)
        try:
            store.create_tables()
            store.clear()
        except Exception as exc:
            raise Skip(f"PostgreSQL unavailable at {url}: {type(exc).__name__}: {str(exc).strip()[:80]}") from None

        def drop() -> None:
            store.drop_tables()
            store.close()

        scenario.cleanup.append(drop)
        app, manager, state = self.kit_flask("kit_postgres", store)
        self.kit_wire(scenario, app, manager, state)
        scenario.notes = "a table of this run, dropped at the end"

    def build_kit_memcached(self, scenario: Scenario) -> None:
        need("pymemcache", "pymemcache")
        try:
            from kitsession_wsgi.stores.memcached import MemcachedStore
        except ImportError as exc:
            raise Skip(f"kitsession_wsgi.stores.memcached not available: {exc}") from None
        server = self.servers.memcached()
        store = MemcachedStore.from_servers([server.address])
        scenario.cleanup.append(store.close)
        app, manager, state = self.kit_flask("kit_memcached", store)
        self.kit_wire(scenario, app, manager, state, memcached_command_counter(server.port))
        scenario.notes = "MemcachedStore.from_servers (same server as Flask-Session)"

    def build_kit_redis(self, scenario: Scenario) -> None:
        need("redis", "redis-py")
        try:
            from kitsession_wsgi.stores.redis import RedisStore
        except ImportError as exc:
            raise Skip(f"kitsession_wsgi.stores.redis not available: {exc}") from None
        server = self.servers.redis()
        store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0")
        scenario.cleanup.append(store.close)
        app, manager, state = self.kit_flask("kit_redis", store)
        self.kit_wire(scenario, app, manager, state, redis_command_counter(server.port))
        scenario.notes = "RedisStore.from_url (same server as Flask-Session)"

    def build_kit_redis_cluster(self, scenario: Scenario) -> None:
        need("redis", "redis-py")
        try:
            from kitsession_wsgi.stores.redis import RedisStore
        except ImportError as exc:
            raise Skip(f"kitsession_wsgi.stores.redis not available: {exc}") from None
        cluster = self.servers.redis_cluster()
        store = RedisStore.from_url(f"redis+cluster://{cluster.startup_nodes}/")
        scenario.cleanup.append(store.close)
        masters = [int(node.port) for node in store.client.get_primaries()]
        app, manager, state = self.kit_flask("kit_redis_cluster", store)
        self.kit_wire(scenario, app, manager, state, redis_cluster_command_counter(masters))
        scenario.notes = "RedisStore over RedisCluster, 3 masters + 3 replicas on loopback"

    def build_kit_middleware(self, scenario: Scenario) -> None:
        from kitsession_wsgi import MemoryStore, SessionManager
        from kitsession_wsgi.wsgi import SessionMiddleware

        inner = self.raw_session_app("kit")
        manager = SessionManager(MemoryStore(), keys=[SECRET])
        app = SessionMiddleware(inner, manager)
        self.kit_wire(scenario, app, manager, inner.state)

    # one round trip, for the "memory read + 1.15x one round trip" target

    def build_rt_memcached(self, scenario: Scenario) -> None:
        need("pymemcache", "pymemcache")
        from pymemcache.client.base import Client

        server = self.servers.memcached()
        client = Client(("127.0.0.1", server.port), no_delay=True, default_noreply=False)
        value = json.dumps(PAYLOAD).encode()
        client.set("bench:roundtrip", value)
        scenario.calls["read"] = lambda: client.get("bench:roundtrip")
        scenario.checks["read"] = lambda: check(client.get("bench:roundtrip") == value, "memcached get")

    def build_rt_redis(self, scenario: Scenario) -> None:
        redis = need("redis", "redis-py")
        server = self.servers.redis()
        client = redis.Redis(host="127.0.0.1", port=server.port)
        value = json.dumps(PAYLOAD).encode()
        client.set("bench:roundtrip", value)
        scenario.calls["read"] = lambda: client.get("bench:roundtrip")
        scenario.checks["read"] = lambda: check(client.get("bench:roundtrip") == value, "redis GET")

    def build_rt_redis_cluster(self, scenario: Scenario) -> None:
        need("redis", "redis-py")
        from redis.cluster import ClusterNode, RedisCluster

        cluster = self.servers.redis_cluster()
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in cluster.nodes])
        scenario.cleanup.append(client.close)
        value = json.dumps(PAYLOAD).encode()
        client.set("bench:roundtrip", value)
        scenario.calls["read"] = lambda: client.get("bench:roundtrip")
        scenario.checks["read"] = lambda: check(client.get("bench:roundtrip") == value, "redis cluster GET")

    def build_rt_sqlite(self, scenario: Scenario) -> None:
        peewee = need("peewee", "peewee")
        database = peewee.SqliteDatabase(str(self.tmp / "roundtrip.db"),
                                         pragmas={"journal_mode": "wal", "synchronous": "normal"})
        database.execute_sql("CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, data TEXT)")
        database.execute_sql("INSERT INTO t VALUES (?, ?)", ("k" * 43, json.dumps(PAYLOAD)))
        scenario.cleanup.append(database.close)

        def select() -> Any:
            return database.execute_sql("SELECT data FROM t WHERE k = ?", ("k" * 43,)).fetchall()

        scenario.calls["read"] = select
        scenario.checks["read"] = lambda: check(len(select()) == 1, "sqlite select")

    def build_rt_flask(self, scenario: Scenario, server: str) -> None:
        """Bare Flask whose view makes one raw store round trip: what a round trip costs in place.

        A tight loop of gets keeps the server and the loopback path hot; between
        two real requests the server's thread goes idle and waking it costs more
        on this machine, so the targets compare with this row.
        """
        from flask import Flask

        value = json.dumps(PAYLOAD).encode()
        if server == "memcached":
            need("pymemcache", "pymemcache")
            from pymemcache.client.base import Client

            port = self.servers.memcached().port
            client: Any = Client(("127.0.0.1", port), no_delay=True, default_noreply=False)
        else:
            redis = need("redis", "redis-py")
            port = self.servers.redis().port
            client = redis.Redis(host="127.0.0.1", port=port)
        client.set("bench:inplace", value)
        app = Flask(f"rt_flask_{server}")

        @app.get("/read")
        def read() -> str:
            # the round trip alone: a bytes comparison, not a JSON parse, stands in for using the value
            return READ_BODY.decode() if client.get("bench:inplace") == value else "wrong value"

        caller = Caller(app, environ_for("/read"))
        scenario.calls["read"] = caller
        scenario.checks["read"] = lambda: check(caller.body == READ_BODY, f"in-place {server} get: {caller.body!r}")

    def build_rt_flask_sqlite(self, scenario: Scenario) -> None:
        """Bare Flask whose view runs one raw statement on a PeeweeStore's own SQLite table and connection.

        read: the store's primary-key SELECT through peewee ``execute_sql``;
        write: one UPDATE of that row by primary key, committed (autocommit),
        as the SQLite floor the "memory + 15 us" and "memory write + 1.3x one
        commit" targets are measured against.
        """
        need("peewee", "peewee")
        from flask import Flask

        from kitsession_wsgi.stores.peewee import PeeweeStore
        from kitsession_wsgi.testing import make_record

        store = PeeweeStore.from_url(f"sqlite:///{self.tmp / 'inplace.db'}")
        store.create_tables()
        scenario.cleanup.append(store.close)
        record = make_record(store, data=json.dumps(PAYLOAD, separators=(",", ":")))
        store.create(record)
        database, select = store.database, store._ready().get
        update = f"UPDATE {store.table_name} SET data = ?, version = version + 1 WHERE session_key = ?"
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

    # the table

    def build_all(self) -> None:
        add = self.add
        add("raw", "raw WSGI callable (harness floor)", self.build_raw, kind="wsgi")
        add("bare", "bare Flask app (no extension, no SECRET_KEY)", self.build_bare)
        add("flask-cookie", "Flask's own signed-cookie session", self.build_flask_cookie)
        add("fs-cachelib", "Flask-Session cachelib memory, defaults",
            lambda s: self.build_fs_cachelib(s, True))
        add("fs-cachelib-norefresh", "Flask-Session cachelib memory, refresh off",
            lambda s: self.build_fs_cachelib(s, False))
        add("beaker-flask", "Beaker memory around Flask", self.build_beaker_flask)
        add("beaker-wsgi", "Beaker memory around a bare WSGI callable", self.build_beaker_wsgi, kind="wsgi")
        add("kit-memory", "kitsession KitSession, MemoryStore", self.build_kit_memory)
        add("kit-bearer", "kitsession KitSession, MemoryStore, bearer=True, session in the header",
            self.build_kit_bearer)
        add("kit-anon", "kitsession KitSession, MemoryStore, neither cookie nor header",
            lambda s: self.build_kit_anonymous(s, bearer=False))
        add("kit-anon-bearer", "kitsession KitSession, MemoryStore, bearer=True, neither cookie nor header",
            lambda s: self.build_kit_anonymous(s, bearer=True))
        add("kit-memory-nocache", "kitsession KitSession, MemoryStore, cookie cache off",
            lambda s: self.build_kit_memory(s, cache=False))
        add("kit-middleware", "kitsession SessionMiddleware around a bare WSGI callable, MemoryStore",
            self.build_kit_middleware, kind="wsgi")
        add("fs-sqlite", "Flask-Session SQLAlchemy on SQLite, defaults", lambda s: self.build_fs_sqlite(s, True))
        add("fs-sqlite-norefresh", "Flask-Session SQLAlchemy on SQLite, refresh off",
            lambda s: self.build_fs_sqlite(s, False))
        add("kit-sqlite", "kitsession KitSession, PeeweeStore on SQLite", self.build_kit_sqlite)
        add("kit-postgres", "kitsession KitSession, PeeweeStore on PostgreSQL", self.build_kit_postgres)
        add("fs-memcached", "Flask-Session memcached, defaults", lambda s: self.build_fs_memcached(s, True))
        add("fs-memcached-norefresh", "Flask-Session memcached, refresh off",
            lambda s: self.build_fs_memcached(s, False))
        add("kit-memcached", "kitsession KitSession, MemcachedStore", self.build_kit_memcached)
        add("fs-redis", "Flask-Session Redis, defaults", lambda s: self.build_fs_redis(s, True))
        add("fs-redis-norefresh", "Flask-Session Redis, refresh off", lambda s: self.build_fs_redis(s, False))
        add("kit-redis", "kitsession KitSession, RedisStore", self.build_kit_redis)
        add("kit-redis-cluster", "kitsession KitSession, RedisStore on a Redis Cluster", self.build_kit_redis_cluster)
        add("rt-sqlite", "one SQLite primary-key SELECT through peewee execute_sql", self.build_rt_sqlite,
            kind="roundtrip")
        add("rt-memcached", "one memcached get (pymemcache, no_delay)", self.build_rt_memcached, kind="roundtrip")
        add("rt-redis", "one Redis GET (redis-py)", self.build_rt_redis, kind="roundtrip")
        add("rt-redis-cluster", "one Redis Cluster GET (redis-py RedisCluster)", self.build_rt_redis_cluster,
            kind="roundtrip")
        add("rt-flask-memcached", "bare Flask + one raw memcached get in the view (a round trip in place)",
            lambda s: self.build_rt_flask(s, "memcached"))
        add("rt-flask-redis", "bare Flask + one raw Redis GET in the view (a round trip in place)",
            lambda s: self.build_rt_flask(s, "redis"))
        add("rt-flask-sqlite", "bare Flask + one raw SQLite statement in the view (read: the store's SELECT; "
            "write: one UPDATE, committed)", self.build_rt_flask_sqlite)

    def close(self) -> None:
        for scenario in self.scenarios:
            for step in scenario.cleanup:
                try:
                    step()
                except Exception as exc:
                    log(f"cleanup of {scenario.key} failed: {exc}")
        self.servers.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- timing -------------------------------------------------------------------------------


def timed_both(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Wall-clock and this thread's CPU microseconds per call over ``n`` calls, GC paused (as timeit does).

    Wall clock is the figure that counts (it includes waiting for a server); CPU
    time leaves out the time other processes took this core, so on a busy
    machine it is the steadier figure for work done in this process.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        loop = range(n)
        cpu_start = time.thread_time_ns()
        start = time.perf_counter_ns()
        for _ in loop:
            call()
        elapsed = time.perf_counter_ns() - start
        cpu = time.thread_time_ns() - cpu_start
    finally:
        if enabled:
            gc.enable()
    return elapsed / n / 1000.0, cpu / n / 1000.0


def timed(call: Callable[[], Any], n: int) -> float:
    """Wall-clock microseconds per call (see :func:`timed_both`)."""
    return timed_both(call, n)[0]


def calibrate(call: Callable[[], Any], settings: dict[str, Any]) -> int:
    """Warm ``call`` up and choose how many calls make one timed cell."""
    deadline = time.perf_counter() + settings["warmup_seconds"]
    calls = 0
    start = time.perf_counter()
    while True:
        call()
        calls += 1
        if calls >= 3 and time.perf_counter() >= deadline:
            break
    per_call = (time.perf_counter() - start) / calls
    if settings["cell_seconds"] <= 0:
        return settings["min_n"]
    n = int(settings["cell_seconds"] / max(per_call, 1e-7))
    return max(settings["min_n"], min(settings["max_n"], n))


class Cell:
    """One scenario's read or write: per repetition, the medians of its interleaved sub-rounds."""

    def __init__(self, scenario: Scenario, kind: str) -> None:
        self.scenario = scenario
        self.kind = kind
        self.n = 0
        self.times: list[float] = []
        self.baselines: list[float] = []  # bare Flask, measured in the same repetition, interleaved
        self.cpu_times: list[float] = []
        self.cpu_baselines: list[float] = []
        self.rep_ratios: list[float] = []
        self.rep_cpu_ratios: list[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def ratio(self) -> float:
        return statistics.median(self.rep_ratios)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.rep_cpu_ratios)


def run_cells(bench: Bench) -> dict[tuple[str, str], Cell]:
    """Every cell, 5 repetitions; each repetition alternates bare Flask and the cell in sub-rounds.

    A repetition is ``subrounds`` pairs (bare Flask, then the cell), each pair a
    fraction of the cell's requests; its ratio is the median of the pairs'
    ratios.  Interleaving at this grain cancels the drift of a shared machine,
    which moves absolute times by tens of percent within seconds.
    """
    settings = bench.settings
    subrounds = max(1, settings.get("subrounds", 1))
    bare = next(s for s in bench.scenarios if s.key == "bare")
    bare_call = bare.calls["read"]
    cells: dict[tuple[str, str], Cell] = {}
    for scenario in bench.scenarios:
        for kind in scenario.calls:
            cells[(scenario.key, kind)] = Cell(scenario, kind)
    log("warming up and calibrating")
    bare_n = max(1, calibrate(bare_call, settings) // subrounds)
    for cell in list(cells.values()):
        try:
            cell.n = max(settings["min_n"] if subrounds == 1 else 2,
                         calibrate(cell.scenario.calls[cell.kind], settings) // subrounds)
            cell.scenario.checks[cell.kind]()
        except Exception as exc:
            fail(bench, cell.scenario, f"{cell.kind} warm-up: {type(exc).__name__}: {exc}")
            cells.pop((cell.scenario.key, cell.kind))
    for rep in range(settings["reps"]):
        log(f"repetition {rep + 1}/{settings['reps']}")
        order = list(cells.values())
        if rep % 2:
            order.reverse()  # position effects cancel out across repetitions
        for cell in order:
            if cell.scenario.failure:
                continue
            gc.collect()
            pairs = []
            try:
                for _ in range(subrounds):
                    baseline, baseline_cpu = timed_both(bare_call, bare_n)
                    elapsed, cpu = timed_both(cell.scenario.calls[cell.kind], cell.n)
                    pairs.append((elapsed, baseline, cpu, baseline_cpu))
                cell.scenario.checks[cell.kind]()
            except Exception as exc:
                fail(bench, cell.scenario, f"{cell.kind}: {type(exc).__name__}: {exc}")
                continue
            cell.times.append(statistics.median(p[0] for p in pairs))
            cell.baselines.append(statistics.median(p[1] for p in pairs))
            cell.cpu_times.append(statistics.median(p[2] for p in pairs))
            cell.cpu_baselines.append(statistics.median(p[3] for p in pairs))
            cell.rep_ratios.append(statistics.median(p[0] / p[1] for p in pairs))
            cell.rep_cpu_ratios.append(statistics.median(p[2] / p[3] for p in pairs if p[3] > 0))
    return {key: cell for key, cell in cells.items() if cell.times and not cell.scenario.failure}


def fail(bench: Bench, scenario: Scenario, message: str) -> None:
    scenario.failure = scenario.failure or message
    bench.failures.append(f"{scenario.key}: {message}")
    log(f"FAILED {scenario.key}: {message}")


# -- store-size scaling ---------------------------------------------------------------------


def fill_memory(store: Any, count: int, user_of: Callable[[int], Any]) -> None:
    from kitsession_wsgi.manager import session_key
    from kitsession_wsgi.stores.base import SessionRecord

    now = time.time()
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    expires = now + 14 * 86400
    for i in range(count):
        store.create(SessionRecord(key=session_key(f"filler-{i}"), data=text, user_id=user_of(i),
                                   created_at=now, updated_at=now, expires_at=expires, version=1))


def fill_sqlite(store: Any, count: int, user_of: Callable[[int], Any]) -> None:
    """Bulk insert through the store's own table, one transaction, executemany."""
    from kitsession_wsgi.manager import session_key

    now = time.time()
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    expires = now + 14 * 86400
    database = store.database
    connection = database.connection()
    sql = (f"INSERT INTO {store.table_name} (session_key, data, user_id, created_at, updated_at, expires_at, version)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)")
    batch = 50_000
    with database.atomic():
        for start in range(0, count, batch):
            rows = [(session_key(f"filler-{i}"), text, store._user_column(user_of(i)), now, now, expires, 1)
                    for i in range(start, min(count, start + batch))]
            connection.executemany(sql, rows)
    database.execute_sql("ANALYZE")


def other_user(i: int) -> int:
    return 100_000 + i // 4  # four sessions per other user


def interleaved_pair(call_a: Callable[[], Any], call_b: Callable[[], Any], settings: dict[str, Any],
                     check_a: Callable[[], None], check_b: Callable[[], None]) -> tuple[float, float, float]:
    """Median us of a and b, and the median ratio b/a, timed in interleaved sub-rounds (a b a b ...)."""
    subrounds = max(1, settings.get("subrounds", 1))
    n = max(2, min(calibrate(call_a, settings), calibrate(call_b, settings)) // subrounds)
    a_times, b_times, ratios = [], [], []
    for _ in range(settings["reps"]):
        gc.collect()
        pairs = [(timed(call_a, n), timed(call_b, n)) for _ in range(subrounds)]
        check_a()
        check_b()
        a_times.append(statistics.median(a for a, _ in pairs))
        b_times.append(statistics.median(b for _, b in pairs))
        ratios.append(statistics.median(b / a for a, b in pairs))
    return statistics.median(a_times), statistics.median(b_times), statistics.median(ratios)


def remove_all_once(manager: Any, user_id: int = 7) -> tuple[float, int]:
    """us of one remove_all_sessions_for_user for a user with 3 fresh sessions (one kept), and the count."""
    sessions = [manager.create_session(user_id=user_id, data={"device": i}) for i in range(3)]
    keep = sessions[0]
    gc.disable()
    start = time.perf_counter_ns()
    count = manager.remove_all_sessions_for_user(user_id, keep)
    elapsed = (time.perf_counter_ns() - start) / 1000
    gc.enable()
    manager.remove_session(keep)
    return elapsed, count


def run_scaling(bench: Bench) -> list[dict[str, Any]]:
    """Read cost at two store sizes; remove_all_sessions_for_user with few and many other users' sessions."""
    settings = bench.settings
    rows: list[dict[str, Any]] = []
    from kitsession_wsgi import MemoryStore

    kinds: list[tuple[str, Callable[[str], Any], Callable[[Any, int, Callable[[int], Any]], None], int]] = [
        ("memory", lambda label: MemoryStore(max_sessions=None), fill_memory, settings["scale_large"]),
    ]
    try:
        from kitsession_wsgi.stores.peewee import PeeweeStore

        def sqlite_store(label: str) -> Any:
            store = PeeweeStore.from_url(f"sqlite:///{bench.tmp / f'scale-{label}.db'}")
            store.create_tables()
            return store

        kinds.append(("SQLite", sqlite_store, fill_sqlite, settings["scale_sqlite_large"]))
    except ImportError as exc:
        rows.append({"store": "SQLite", "what": "skipped", "note": f"peewee store unavailable: {exc}"})

    for label, make, fill, large in kinds:
        if bench.only and not any(p in f"scale-{label.lower()}" or fnmatch.fnmatch(f"scale-{label.lower()}", p)
                                  for p in bench.only):
            continue
        small = settings["scale_small"]
        log(f"scaling: {label}, {small:,} and {large:,} sessions")
        apps = {}
        build_seconds = {}
        for size in (small, large):
            store = make(f"{size}")
            started = time.perf_counter()
            fill(store, size, other_user)
            build_seconds[size] = time.perf_counter() - started
            app, manager, state = bench.kit_flask(f"scale_{label}_{size}", store)
            scenario = Scenario(f"scale-{label}-{size}", "")
            bench.kit_wire(scenario, app, manager, state)
            apps[size] = (scenario, manager, store)
        gc.collect()
        gc.freeze()  # a million records must not make every GC pass of the timing slower
        (sa, ma, store_a), (sb, mb, store_b) = apps[small], apps[large]
        try:
            a, b, ratio = interleaved_pair(sa.calls["read"], sb.calls["read"], settings,
                                           sa.checks["read"], sb.checks["read"])
            rows.append({"store": label, "what": "read, Flask", "small": small, "large": large,
                         "a": a, "b": b, "ratio": ratio,
                         "note": f"filled in {build_seconds[small]:.1f} s / {build_seconds[large]:.1f} s"})
            # remove_all: few other users' sessions vs the large store
            few = make("few")
            fill(few, settings["remove_small"], other_user)
            few_manager = bench.kit_flask(f"scale_{label}_few", few)[1]
            iterations = settings["remove_iterations"]
            times_a, times_b, ratios = [], [], []
            for _ in range(settings["reps"]):
                few_times, many_times = [], []
                for _ in range(iterations):  # alternate: few, many, few, many, ...
                    ta, removed_a = remove_all_once(few_manager)
                    tb, removed_b = remove_all_once(mb)
                    check(removed_a == 2 and removed_b == 2,
                          f"remove_all_sessions_for_user removed {removed_a} / {removed_b}, expected 2")
                    few_times.append(ta)
                    many_times.append(tb)
                times_a.append(statistics.median(few_times))
                times_b.append(statistics.median(many_times))
                ratios.append(times_b[-1] / times_a[-1])
            rows.append({"store": label, "what": "remove_all_sessions_for_user (user with 3 sessions)",
                         "small": settings["remove_small"], "large": large,
                         "a": statistics.median(times_a), "b": statistics.median(times_b),
                         "ratio": statistics.median(ratios), "note": ""})
            with contextlib.suppress(Exception):
                few.close()
        except CheckFailed as exc:
            bench.failures.append(f"scaling {label}: {exc}")
            rows.append({"store": label, "what": "FAILED", "note": str(exc)})
        finally:
            gc.unfreeze()
            for scenario, manager, store in apps.values():
                with contextlib.suppress(Exception):
                    store.close()
            apps.clear()
            gc.collect()
    return rows


# -- component costs ------------------------------------------------------------------------


def component_cells(bench: Bench, errors: list[str]) -> list[tuple[str, str, Callable[[], Any]]]:
    """(group, label, call) for the pieces of a read, each timed on its own; pieces that fail go to ``errors``."""
    from kitsession_wsgi import cookies as cookies_module
    from kitsession_wsgi.cookies import cookie_header
    from kitsession_wsgi.manager import session_key

    if hasattr(cookies_module, "read_cookie"):
        read_cookie = cookies_module.read_cookie
    else:  # newer core: every value of the name, newest rules in the manager

        def read_cookie(header: str, name: str) -> str | None:
            values = cookies_module.read_cookies(header, name)
            return values[0] if values else None

    from kitsession_wsgi.serialization import JSONSerializer

    by_key = {s.key: s for s in bench.scenarios if not s.skip and not s.failure}
    items: list[tuple[str, str, Callable[[], Any]]] = []
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    plain = JSONSerializer()
    items += [("data codec", "json.loads (stdlib)", lambda: json.loads(text)),
              ("data codec", "JSONSerializer.dumps (stdlib, compact)", lambda: plain.dumps(PAYLOAD))]
    with contextlib.suppress(ImportError):
        from kitsession_wsgi.flask import FlaskSessionSerializer

        tagged = FlaskSessionSerializer()
        items += [("data codec", "FlaskSessionSerializer.loads (Flask tagged JSON)", lambda: tagged.loads(text)),
                  ("data codec", "FlaskSessionSerializer.dumps (Flask tagged JSON)", lambda: tagged.dumps(PAYLOAD))]
    with contextlib.suppress(ImportError):
        import msgspec

        decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
        items += [("data codec", "msgspec.json decode (same JSON text)", lambda: decoder.decode(text)),
                  ("data codec", "msgspec.json encode", lambda: encoder.encode(PAYLOAD))]
    try:
        items += candidate_codec_cells(text)
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"candidate codecs: {type(exc).__name__}: {exc}")
    try:
        memory = by_key.get("kit-memory")
        if memory is not None:
            manager = memory.manager
            environ = environ_for("/read", memory.cookie)
            header = cookie_header(environ)
            assert header is not None
            value = read_cookie(header, manager.name)
            assert value is not None and manager.signer is not None
            session_id = manager.signer.unsign(value).session_id
            uncached = by_key.get("kit-memory-nocache")
            items += [
                ("cookie", "cookie_header(environ)", lambda: cookie_header(environ)),
                ("cookie", "candidate: environ.get('HTTP_COOKIE') (what an adapter already holds)",
                 lambda: environ.get("HTTP_COOKIE")),
                ("cookie", "read the session cookie from the header (werkzeug parse_cookie + unquote)",
                 lambda: read_cookie(header, "session")),
                ("cookie", "CookieSigner.unsign (HMAC-SHA256, constant-time compare)",
                 lambda: manager.signer.unsign(value)),
                ("cookie", "session_key(id) (SHA-256 digest)", lambda: session_key(session_id)),
                ("core", "initialize_session(environ), cookie cache hit, MemoryStore",
                 lambda: manager.initialize_session(environ)),
                ("core", "initialize_session + commit (unchanged), cookie cache hit",
                 lambda: manager.commit(manager.initialize_session(environ))),
            ]
            if uncached is not None:
                environ_nc = environ_for("/read", uncached.cookie)
                items.append(("core", "initialize_session(environ), cookie cache off",
                              lambda: uncached.manager.initialize_session(environ_nc)))
            items.append(("store get", "MemoryStore.get", lambda: memory.store.get(memory.handle)))
            items += session_construction_cells(memory.store.get(memory.handle), session_id)
            items += vary_cells()
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"memory store and core pieces: {type(exc).__name__}: {exc}")
    try:
        sqlite_s = by_key.get("kit-sqlite")
        if sqlite_s is not None:
            database = sqlite_s.store.database
            table = sqlite_s.store.table_name
            sql = f"SELECT session_key, data, user_id, created_at, updated_at, expires_at, version FROM {table} WHERE session_key = ?"
            connection = database.connection()
            record = sqlite_s.store.get(sqlite_s.handle)
            from kitsession_wsgi.stores.base import SessionRecord

            items += [("store get", "SQLite: peewee execute_sql SELECT by primary key", lambda: database.execute_sql(sql, (sqlite_s.handle,)).fetchall()),
                      ("store get", "SQLite: candidate: sqlite3 connection.execute (peewee's connection, no wrapper)",
                       lambda: connection.execute(sql, (sqlite_s.handle,)).fetchall()),
                      ("store get", "SQLite: PeeweeStore.get", lambda: sqlite_s.store.get(sqlite_s.handle)),
                      ("store get", "SessionRecord(...) (frozen slots dataclass), built by every store read",
                       lambda: SessionRecord(key=record.key, data=record.data, user_id=record.user_id,
                                             created_at=record.created_at, updated_at=record.updated_at,
                                             expires_at=record.expires_at, version=record.version))]
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"SQLite pieces: {type(exc).__name__}: {exc}")
    try:
        pg = by_key.get("kit-postgres")
        if pg is not None:
            items.append(("store get", "PostgreSQL: PeeweeStore.get", lambda: pg.store.get(pg.handle)))
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"PostgreSQL pieces: {type(exc).__name__}: {exc}")
    try:
        mc = by_key.get("kit-memcached")
        if mc is not None:
            from pymemcache.client.base import Client

            port = bench.servers.memcached().port
            bare_client = Client(("127.0.0.1", port), no_delay=True, default_noreply=False)
            item_key = mc.store.key_prefix + mc.handle
            items += [("store get", "memcached: pymemcache Client.get of the same item", lambda: bare_client.get(item_key)),
                      ("store get", "memcached: the store's own client .get of the same item", lambda: mc.store.client.get(item_key)),
                      ("store get", "memcached: MemcachedStore.get", lambda: mc.store.get(mc.handle))]
            items += memcached_decode_cells(mc.store.client.get(item_key))
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"memcached pieces: {type(exc).__name__}: {exc}")
    try:
        rd = by_key.get("kit-redis")
        if rd is not None:
            import redis

            port = bench.servers.redis().port
            client = redis.Redis(host="127.0.0.1", port=port)
            record_key = rd.store._record_key(rd.handle) if hasattr(rd.store, "_record_key") else None
            client.set("bench:string", json.dumps(PAYLOAD) + "x" * 100)
            items.append(("store get", "Redis: GET of a ~300-byte string", lambda: client.get("bench:string")))
            if record_key is not None:
                items.append(("store get", "Redis: GET of the session's string", lambda: client.get(record_key)))
            items.append(("store get", "Redis: RedisStore.get", lambda: rd.store.get(rd.handle)))
    except Exception as exc:  # internals move faster than the benchmark: skip the piece, say why
        errors.append(f"Redis pieces: {type(exc).__name__}: {exc}")
    return items


def candidate_codec_cells(text: str) -> list[tuple[str, str, Callable[[], Any]]]:
    """Faster codecs that produce the same results, measured here to size the suggestions."""
    try:
        from kitsession_wsgi.flask import FlaskSessionSerializer
    except ImportError:
        return []
    tagged = FlaskSessionSerializer()
    tags = set(tagged._tagged.tags)
    plain_scalars = (str, int, float, bool, type(None))

    def untagged_loads(value: str) -> Any:
        # Flask's tag keys all start with a space; a text with no '" ' and no \u0020
        # has no such key, and json.loads alone gives exactly what the tagged loads gives
        if '" ' not in value and "\\u0020" not in value:
            return json.loads(value)
        return tagged.loads(value)

    def plain(value: Any) -> bool:
        kind = type(value)
        if kind in plain_scalars:
            return True
        if kind is list:
            return all(plain(item) for item in value)
        if kind is dict:
            if len(value) == 1 and next(iter(value)) in tags:
                return False
            return all(type(k) is str and plain(v) for k, v in value.items())
        return False

    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def plain_dumps(data: dict[str, Any]) -> str:
        return encoder.encode(data) if plain(data) else tagged.dumps(data)

    check(untagged_loads(text) == tagged.loads(text), "candidate loads differs")
    check(json.loads(plain_dumps(PAYLOAD)) == PAYLOAD, "candidate dumps differs")
    return [
        ("candidate codec", "tagged loads with a no-tag fast path ('\" ' not in text -> json.loads)",
         lambda: untagged_loads(text)),
        ("candidate codec", "tagged dumps with a plain-JSON fast path (type walk + prebuilt encoder)",
         lambda: plain_dumps(PAYLOAD)),
        ("candidate codec", "the type walk alone", lambda: plain(PAYLOAD)),
        ("candidate codec", "prebuilt JSONEncoder.encode (instead of json.dumps(..., options) per call)",
         lambda: encoder.encode(PAYLOAD)),
    ]


def session_construction_cells(record: Any, session_id: str) -> list[tuple[str, str, Callable[[], Any]]]:
    from kitsession_wsgi.session import Session

    data = dict(PAYLOAD)

    def via_init() -> Any:
        return Session(id=session_id, handle=record.key, data=data, user_id=record.user_id, user=record.user,
                       created_at=record.created_at, updated_at=record.updated_at,
                       expires_at=record.expires_at, is_new=False)

    return [("core", "Session for a record: Session.from_record (what SessionLoader.from_record uses)",
             lambda: Session.from_record(record, session_id, data)),
            ("core", "for comparison: the validating Session(...) constructor", via_init)]


def vary_cells() -> list[tuple[str, str, Callable[[], Any]]]:
    from werkzeug.datastructures import Headers

    base = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "15")]

    def set_item() -> Any:
        headers = Headers(base)
        if "Vary" in headers:
            pass
        else:
            headers["Vary"] = "Cookie"
        return headers

    def add() -> Any:
        headers = Headers(base)
        if "Vary" not in headers:
            headers.add("Vary", "Cookie")
        return headers

    def append() -> Any:
        headers = Headers(base)
        headers._list.append(("Vary", "Cookie"))
        return headers

    return [("headers", "Headers(...) + 'Vary' in + headers['Vary'] = 'Cookie' (as save_session)", set_item),
            ("headers", "candidate: Headers(...) + 'Vary' in + headers.add('Vary', 'Cookie')", add),
            ("headers", "floor: Headers(...) + a plain list append", append)]


def memcached_decode_cells(raw: bytes) -> list[tuple[str, str, Callable[[], Any]]]:
    """The item's decode against the JSON-inside-JSON layout the memcached store used before."""
    from kitsession_wsgi.stores._format import decode_record
    from kitsession_wsgi.stores.base import SessionRecord

    record = decode_record(raw)
    if record is None:
        return []
    nested = json.dumps({"k": record.key, "d": record.data, "u": record.user_id, "c": record.created_at,
                         "m": record.updated_at, "e": record.expires_at, "v": record.version},
                        separators=(",", ":")).encode()

    def nested_decode() -> Any:
        fields = json.loads(nested.decode())
        return SessionRecord(key=fields["k"], data=fields["d"], user_id=fields["u"], created_at=fields["c"],
                             updated_at=fields["m"], expires_at=fields["e"], version=fields["v"])

    check(nested_decode() == record, "JSON-inside-JSON decode differs")
    return [("store get", f"memcached: decode_record of the item ({len(raw)} bytes, K1 header + data)",
             lambda: decode_record(raw)),
            ("store get", f"reference: the earlier JSON-inside-JSON item ({len(nested)} bytes)", nested_decode)]


def run_components(bench: Bench) -> list[tuple[str, str, float]]:
    """Each piece in 3x the repetitions, a third as long each; the minimum (noise only ever adds)."""
    settings = {**bench.settings, "cell_seconds": bench.settings["cell_seconds"] / 3}
    errors: list[str] = []
    try:
        items = component_cells(bench, errors)
    except Exception as exc:  # internals move faster than the benchmark: report, do not fail the run
        log(traceback.format_exc())
        return [("error", f"component cells unavailable: {type(exc).__name__}: {exc}", float("nan"))]
    times: dict[str, list[float]] = {label: [] for _, label, _ in items}
    counts = {label: calibrate(call, settings) for _, label, call in items}
    for _ in range(3 * settings["reps"]):
        for _, label, call in items:
            times[label].append(timed(call, counts[label]))
    return ([(group, label, min(times[label])) for group, label, _ in items]
            + [("not measured", error, float("nan")) for error in errors])


# -- profiles -------------------------------------------------------------------------------

#: (category, file fragment, function names); the innermost matching frame names the category
PROFILE_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("store get (incl. driver)", "kitsession_wsgi/stores/", ("get",)),
    ("json loads of the data", "kitsession_wsgi/", ("loads",)),
    ("commit: change detection (dumps)", "kitsession_wsgi/", ("dumps",)),
    ("cookie header read", "kitsession_wsgi/cookies.py", ("cookie_header",)),
    ("cookie parse (cache miss)", "kitsession_wsgi/cookies.py", ("read_cookie", "read_cookies")),
    ("cookie parse (cache miss)", "kitsession_wsgi/_session_cookie.py", ("identities",)),
    ("signature verify (cache miss)", "kitsession_wsgi/signing.py", ("unsign",)),
    ("signature verify (cache miss)", "kitsession_wsgi/_session_cookie.py", ("_verify",)),
    ("id digest (session_key, cache miss)", "kitsession_wsgi/_session_cookie.py", ("session_key",)),
    ("Session object + expiry checks", "kitsession_wsgi/_lifetime.py", ("from_record", "load", "is_live")),
    ("Session object + expiry checks", "kitsession_wsgi/session.py", ("__init__",)),
    ("initialize_session (cookie cache lookup, rest)", "kitsession_wsgi/manager.py", ("initialize_session",)),
    ("commit (rest)", "kitsession_wsgi/manager.py", ("commit",)),
    ("commit (rest)", "kitsession_wsgi/_writing.py", ("commit",)),
    ("Vary / session headers", "kitsession_wsgi/wsgi.py", ("add_session_headers",)),
    ("Flask session interface (open/save, FlaskSession)", "kitsession_wsgi/flask.py",
     ("open_session", "save_session", "get", "__getitem__", "core", "_state", "__init__", "_load_user",
      "_release_lock")),
    ("middleware plumbing", "kitsession_wsgi/wsgi.py", ("__call__", "session_start_response", "session",
                                                        "commit", "__init__")),
    ("Flask / werkzeug request handling", "/flask/", ()),
    ("Flask / werkzeug request handling", "/werkzeug/", ()),
]


def categorize(file_path: str, function: str, inherited: str) -> str:
    path = file_path.replace(os.sep, "/")
    if "save_session" in inherited and ("werkzeug/datastructures" in path or "werkzeug/sansio/response" in path):
        return "Vary / session headers"
    for category, fragment, functions in PROFILE_RULES:
        if fragment in path and (not functions or function in functions):
            if category.startswith("Flask / werkzeug") and inherited != "harness / other":
                return inherited  # Flask code called from inside the session code stays with its caller
            if category.startswith("Flask session interface") and function == "save_session":
                return "Flask session interface (open/save, FlaskSession) save_session"
            return category
    return inherited


def profile_breakdown(call: Callable[[], Any], seconds: float,
                      measured_us: float) -> tuple[list[tuple[str, float, float]], str]:
    """Where the time of ``call`` goes, by a wall-clock sampling profiler.

    A ``SIGALRM`` every 0.25 ms records the interpreted stack; nothing runs on
    function calls (unlike cProfile or pyinstrument, which hook every call and
    so inflate code made of many small calls, such as Flask's tagged JSON).
    A sample taken inside a C function or a blocking ``recv`` lands in the
    Python frame that called it, which is the frame that owns that time.
    """
    if not hasattr(signal, "setitimer"):
        return [], "no setitimer on this platform: no breakdown"
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()

    def sample(signum: int, frame: Any) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_name))
            frame = frame.f_back
        stacks[tuple(stack)] += 1

    for _ in range(200):
        call()
    previous = signal.signal(signal.SIGALRM, sample)
    calls = 0
    deadline = time.perf_counter() + seconds
    signal.setitimer(signal.ITIMER_REAL, 0.00025, 0.00025)
    try:
        while time.perf_counter() < deadline:
            for _ in range(20):
                call()
            calls += 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        category = "harness / other"
        for file_path, function in reversed(stack):
            category = categorize(file_path, function, category)
        totals[category.replace(" save_session", "")] += count
    grand = sum(totals.values()) or 1
    rows = [(category, n / grand * measured_us, n / grand * 100) for category, n in totals.most_common()]
    return rows, f"{calls:,} requests, {grand:,} samples (one every 0.25 ms of wall-clock time)"


# -- report ---------------------------------------------------------------------------------


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description(bench: Bench) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}; {platform.platform()}",
        f"- load average when the run started: {bench.load_at_start}; at the end: {load} "
        "(other work on the machine inflates absolute times; the interleaved ratios hold better)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), SQLite {sqlite3.sqlite_version}",
    ]
    with contextlib.suppress(Exception):
        described = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                                   text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "kitsession_wsgi"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if described:
            state = "with uncommitted changes in kitsession_wsgi/" if dirty else "kitsession_wsgi/ clean"
            lines.append(f"- code measured: {described[:110]} ({state})")
    libraries = ["kitsession-wsgi", "Flask", "Werkzeug", "Flask-Session", "cachelib", "msgspec", "Beaker",
                 "SQLAlchemy", "Flask-SQLAlchemy", "peewee", "psycopg2-binary", "pymemcache", "redis"]
    lines.append("- libraries: " + ", ".join(f"{name} {version_of(name)}" for name in libraries))
    servers = []
    for binary, flag in (("memcached", "-V"), ("redis-server", "--version")):
        path = shutil.which(binary)
        if path:
            with contextlib.suppress(Exception):
                out = subprocess.run([path, flag], capture_output=True, text=True, timeout=5).stdout.strip()
                servers.append(out.split("\n")[0])
    with contextlib.suppress(Exception):
        import psycopg2

        url = os.environ.get("KITSESSION_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
        with contextlib.closing(psycopg2.connect(url, connect_timeout=2)) as connection:
            servers.append(f"PostgreSQL {connection.server_version // 10000}.{connection.server_version % 100}")
    if servers:
        lines.append("- servers (all on 127.0.0.1): " + "; ".join(servers))
    return lines


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def target_lines(bench: Bench, cells: dict[tuple[str, str], Cell], scaling: list[dict[str, Any]]) -> list[str]:
    """MET / MISSED for each target of the issue, from interleaved ratios.

    Differences in microseconds ("memory read + 15 us") are taken from the
    ratios times the bare Flask time of the same repetitions, not from absolute
    times measured minutes apart, which drift far more than the differences.
    """

    def cell(key: str, kind: str = "read") -> Cell | None:
        return cells.get((key, kind))

    lines: list[str] = []
    if bench.mode == "smoke":
        return ["| (all) | not evaluated | smoke mode makes no timing claims |"]
    bare_cell = cell("bare")
    every_baseline = [b for c in cells.values() for b in c.baselines]
    bare_us = statistics.median(every_baseline) if every_baseline else float("nan")

    def extra_us(a: Cell, b: Cell, cpu: bool = False) -> float:
        ratios_a = a.rep_cpu_ratios if cpu else a.rep_ratios
        ratios_b = b.rep_cpu_ratios if cpu else b.rep_ratios
        base = statistics.median(c for x in (a, b) for c in (x.cpu_baselines if cpu else x.baselines))
        return statistics.median(x - y for x, y in zip(ratios_a, ratios_b)) * base

    def verdict(name: str, ok: bool | None, detail: str) -> None:
        mark = "n/a" if ok is None else ("MET" if ok else "MISSED")
        lines.append(f"| {name} | {mark} | {detail} |")

    if bare_cell is not None:
        lines.append(f"| (noise: bare Flask against itself) | - | {bare_cell.ratio:.2f}x; bare Flask {bare_us:.1f} us |")
    mem, mem_w = cell("kit-memory"), cell("kit-memory", "write")
    cl_off, cl_w = cell("fs-cachelib-norefresh"), cell("fs-cachelib", "write")
    if mem:
        verdict("memory via Flask: read <= 1.5x bare Flask", mem.ratio <= 1.5,
                f"{mem.ratio:.2f}x; CPU time {mem.cpu_ratio:.2f}x")
    if mem and cl_off:
        verdict("memory via Flask: read cheaper than Flask-Session cachelib, refresh off",
                mem.ratio < cl_off.ratio, f"{mem.ratio:.2f}x vs {cl_off.ratio:.2f}x bare; CPU time "
                f"{mem.cpu_ratio:.2f}x vs {cl_off.cpu_ratio:.2f}x")
    if mem_w and cl_w:
        verdict("memory via Flask: write cheaper than Flask-Session cachelib write", mem_w.ratio < cl_w.ratio,
                f"{mem_w.ratio:.2f}x vs {cl_w.ratio:.2f}x bare; "
                f"CPU time {mem_w.cpu_ratio:.2f}x vs {cl_w.cpu_ratio:.2f}x")
    mw, raw = cell("kit-middleware"), cell("raw")
    if mw and raw:
        added = extra_us(mw, raw)
        verdict("middleware around a bare WSGI callable adds <= 15 us per read", added <= 15,
                f"+{added:.1f} us; CPU time +{extra_us(mw, raw, cpu=True):.1f} us")
    for store, rt_key in (("memcached", "rt-memcached"), ("redis", "rt-redis")):
        kit, peer, rt = cell(f"kit-{store}"), cell(f"fs-{store}"), cell(rt_key)
        in_place = cell(f"rt-flask-{store}")
        if kit is None:
            continue
        if mem and (rt or in_place):
            extra = extra_us(kit, mem)
            tight = f"tight-loop round trip {rt.median:.1f} us (limit +{1.15 * rt.median:.1f})" if rt else ""
            if in_place is not None and bare_cell is not None:
                trip = extra_us(in_place, bare_cell)
                verdict(f"{store}: read <= memory read + 1.15x one round trip", extra <= 1.15 * trip,
                        f"+{extra:.1f} us over memory; one round trip in place {trip:.1f} us "
                        f"(limit +{1.15 * trip:.1f}); {tight}")
            elif rt is not None:
                verdict(f"{store}: read <= memory read + 1.15x one round trip", extra <= 1.15 * rt.median,
                        f"+{extra:.1f} us over memory; {tight}")
        if peer:
            speedup = peer.ratio / kit.ratio
            verdict(f"{store}: read >= 1.5x faster than Flask-Session defaults, same server", speedup >= 1.5,
                    f"{speedup:.2f}x ({peer.ratio:.2f}x vs {kit.ratio:.2f}x bare)")
        measured = next((x for x in bench.scenarios if x.key == f"kit-{store}"), None)
        if measured is not None and measured.store_calls:
            calls, commands = measured.store_calls, measured.server_commands
            ok = (calls.get("read") == 1 and calls.get("anon") == 0 and calls.get("bad sig") == 0
                  and commands.get("read", 1) == 1)
            verdict(f"{store}: one round trip per read, none for anonymous requests or bad signatures", ok,
                    "store calls " + ", ".join(f"{k} {v}" for k, v in calls.items())
                    + ("; server commands " + ", ".join(f"{k} {v}" for k, v in commands.items()) if commands else ""))
    sq, sq_w, sq_in, sq_in_w = cell("kit-sqlite"), cell("kit-sqlite", "write"), cell("rt-flask-sqlite"), \
        cell("rt-flask-sqlite", "write")
    if sq and mem:
        extra = extra_us(sq, mem)
        floor = f"; the SELECT alone in place +{extra_us(sq_in, bare_cell):.1f} us" if sq_in and bare_cell else ""
        verdict("Peewee/SQLite read <= memory read + 15 us", extra <= 15,
                f"+{extra:.1f} us; CPU time +{extra_us(sq, mem, cpu=True):.1f} us{floor}")
    fs_sq = cell("fs-sqlite-norefresh")
    if sq and fs_sq:
        speedup = fs_sq.ratio / sq.ratio
        verdict("Peewee/SQLite read >= 5x faster than Flask-Session SQLAlchemy, refresh off", speedup >= 5,
                f"{speedup:.2f}x ({fs_sq.ratio:.2f}x vs {sq.ratio:.2f}x bare)")
    if sq_w and mem_w and sq_in_w and bare_cell:
        extra = extra_us(sq_w, mem_w)
        commit = extra_us(sq_in_w, bare_cell)
        verdict("Peewee/SQLite write <= memory write + 1.3x one SQLite commit", extra <= 1.3 * commit,
                f"+{extra:.1f} us over memory (a read's SELECT and the UPDATE); one UPDATE committed in place "
                f"+{commit:.1f} us (limit +{1.3 * commit:.1f})")
    for row in scaling:
        if "ratio" in row:
            verdict(f"flat scaling, {row['store']} {row['what']}: {row['large']:,} vs {row['small']:,} within 10%",
                    abs(row["ratio"] - 1) <= 0.10, f"{row['ratio']:.2f}x ({fmt(row['a'])} -> {fmt(row['b'])} us)")
    return lines


def report(bench: Bench, cells: dict[tuple[str, str], Cell], counts: dict[str, tuple[str, str]],
           scaling: list[dict[str, Any]], profiles: dict[str, tuple[list[tuple[str, float, float]], str]],
           components: list[tuple[str, str, float]], seconds: float) -> str:
    settings = bench.settings
    out = ["# kitsession-wsgi benchmark", ""]
    out += machine_description(bench)
    out.append(f"- mode: {bench.mode} ({settings['reps']} repetitions, ~{settings['cell_seconds']} s per cell, "
               f"median reported); run took {seconds:.0f} s; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if bench.mode == "smoke":
        out += ["", "**Smoke mode: a couple of requests per cell. Correctness checks only; the times mean nothing.**"]
    out += ["", "## Requests", "",
            "us = microseconds per request (median of the repetitions); x bare = median of the ratios to a bare "
            "Flask app measured in the same repetition, interleaved with the cell in sub-rounds (bare, cell, bare, "
            "cell, ...; each repetition's ratio is the median of its sub-rounds' ratios). read = existing session, unchanged; write = one "
            "key set to a new value (checked in the store after every cell). \"x bare, CPU\" is the same ratio in "
            "this thread's CPU time: steadier on a busy machine, but blind to time spent waiting for a server "
            "(memcached, Redis, PostgreSQL, SQLite's fsync), so use it only for in-process stores.", "",
            "| scenario | read us | read x bare | write us | write x bare | read x bare, CPU | write x bare, CPU | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for scenario in bench.scenarios:
        if scenario.skip:
            out.append(f"| {scenario.title} | - | - | - | - | - | - | skipped: {scenario.skip} |")
            continue
        if scenario.failure:
            out.append(f"| {scenario.title} | - | - | - | - | - | - | **FAILED**: {scenario.failure} |")
            continue
        r, w = cells.get((scenario.key, "read")), cells.get((scenario.key, "write"))
        ratio_r = "-" if r is None or scenario.kind == "roundtrip" else f"{r.ratio:.2f}"
        ratio_w = "-" if w is None else f"{w.ratio:.2f}"
        cpu_r = "-" if r is None or scenario.kind == "roundtrip" else f"{r.cpu_ratio:.2f}"
        cpu_w = "-" if w is None else f"{w.cpu_ratio:.2f}"
        out.append(f"| {scenario.title} | {fmt(r.median if r else None)} | {ratio_r} | "
                   f"{fmt(w.median if w else None)} | {ratio_w} | {cpu_r} | {cpu_w} | {scenario.notes} |")
    out += ["", "## Targets (issue 8)", "", "| target | verdict | numbers |", "|---|---|---|"]
    out += target_lines(bench, cells, scaling)
    out += ["", "## Store round trips per request", "",
            "Store calls counted by a wrapper swapped in for one untimed pass (after a warm-up request); "
            "server commands counted from memcached `stats` / Redis `INFO` differences (memcached: one per "
            "get/gets/set/add/cas/delete/touch, each a round trip here; Redis: commands run inside a Lua script "
            "count too, so a script is one round trip but several commands). anon = no cookie; "
            "bad sig = tampered signature; unknown id = a correctly signed id the store does not hold.", "",
            "| scenario | store calls per request | server commands per request |", "|---|---|---|"]
    for scenario in bench.scenarios:
        if scenario.key in counts:
            calls, server = counts[scenario.key]
            out.append(f"| {scenario.title} | {calls} | {server} |")
    if scaling:
        out += ["", "## Store size", "",
                "Same request or call against a small and a large store, interleaved (A B A B in sub-rounds; "
                "remove_all alternates one call each). large / small is the median of the per-repetition ratios.", "",
                "| store | measured | small | large | us small | us large | large / small | notes |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for row in scaling:
            if "ratio" not in row:
                out.append(f"| {row['store']} | {row['what']} | | | | | | {row.get('note', '')} |")
                continue
            out.append(f"| {row['store']} | {row['what']} | {row['small']:,} | {row['large']:,} | {fmt(row['a'])} | "
                       f"{fmt(row['b'])} | {row['ratio']:.2f} | {row['note']} |")
    if components:
        out += ["", "## Pieces of a read, each timed alone", "",
                "Isolated micro-benchmarks: the fastest of 15 short repetitions (preemption by other work only "
                "ever adds time, so the minimum is the stable figure here). \"candidate\" rows are possible "
                "changes implemented in run.py only, to size the suggestions. Inside a full request each piece costs "
                "more (cold caches: BENCHMARKS.md measured about 3x), so use them to compare alternatives, and "
                "the profiles below for the in-place split.", "",
                "| group | piece | us |", "|---|---|---:|"]
        out += [f"| {group} | {label} | {value:.2f} |" if value == value else f"| {group} | {label} | - |"
                for group, label, value in components]
    if profiles:
        out += ["", "## Where a read's microseconds go", "",
                "A wall-clock sampling profiler (SIGALRM every 0.25 ms, no per-call hooks) on the read cell; "
                "each sample is charged to the innermost session-related frame on its stack; us = share x the "
                "measured median above. \"Flask / werkzeug request handling\" is what bare Flask also does, "
                "plus Flask's own work for a non-null session.", ""]
        for key, (rows, note) in profiles.items():
            title = next(s.title for s in bench.scenarios if s.key == key)
            out += [f"### {title}", "", f"_{note}_", ""]
            if rows:
                out += ["| where | us / request | share |", "|---|---:|---:|"]
                out += [f"| {category} | {us:.1f} | {share:.0f}% |" for category, us, share in rows]
                session_us = sum(us for category, us, _ in rows
                                 if not category.startswith(("Flask / werkzeug", "harness")))
                cell = cells.get((key, "read"))
                bare = cells.get(("bare", "read"))
                over = ""
                raw = cells.get(("raw", "read"))
                scenario_kind = next(s.kind for s in bench.scenarios if s.key == key)
                if cell is not None and scenario_kind == "wsgi" and raw is not None:
                    over = f"; the table's read minus the raw WSGI callable: {cell.median - raw.median:.1f} us"
                elif cell is not None and bare is not None and key != "bare":
                    over = (f"; the table's read minus bare Flask: "
                            f"{statistics.median(t - b for t, b in zip(cell.times, cell.baselines)):.1f} us")
                out += ["", f"Session code in total: {session_us:.1f} us per request{over}."]
            out.append("")
    out += ["", "## Checks", ""]
    if bench.failures:
        out += [f"- FAILED: {failure}" for failure in bench.failures]
    else:
        checked = sum(1 for s in bench.scenarios if s.calls and not s.skip)
        out.append(f"- all correctness checks passed ({checked} scenarios)")
    for scenario in bench.scenarios:
        state = "skipped" if scenario.skip else ("FAILED" if scenario.failure else "ok")
        out.append(f"- scenario {scenario.key}: {state}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer iterations and a smaller large store")
    mode.add_argument("--smoke", action="store_true",
                      help="two requests per cell: correctness checks only, no timing claims (for tests)")
    parser.add_argument("--only", action="append", metavar="PATTERN",
                        help="scenario keys to run (glob or substring; repeatable); bare Flask always runs")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--reps", type=int, metavar="N", help="repetitions per cell (default 5; 2 with --smoke)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the store-size section")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="profile each adapter's read path with a sampling profiler (default: on in full mode)")
    parser.add_argument("--list", action="store_true", help="list the scenario keys and exit")
    args = parser.parse_args(argv)
    chosen = "smoke" if args.smoke else ("quick" if args.quick else "full")
    bench = Bench(chosen, args.only)
    if args.reps:
        bench.settings = {**bench.settings, "reps": max(1, args.reps)}
    started = time.perf_counter()
    try:
        bench.build_all()
        if args.list:
            for scenario in bench.scenarios:
                print(f"{scenario.key}\t{scenario.title}\t{scenario.skip or ''}")
            return 0
        cells = run_cells(bench)
        counts: dict[str, tuple[str, str]] = {}
        for scenario in bench.scenarios:
            if scenario.skip or scenario.failure or scenario.count_calls is None:
                continue
            try:
                calls = scenario.count_calls()
                server = scenario.count_server() if scenario.count_server else "-"
                counts[scenario.key] = (calls, server)
            except Exception as exc:
                fail(bench, scenario, f"round-trip count: {type(exc).__name__}: {exc}")
        components = run_components(bench) if chosen != "smoke" else []
        scaling = [] if args.no_scaling else run_scaling(bench)
        profiles = {}
        want_profile = args.profile if args.profile is not None else chosen == "full"
        if want_profile:
            for scenario in bench.scenarios:
                if scenario.profile_target is None or scenario.failure or (scenario.key, "read") not in cells:
                    continue
                log(f"profiling {scenario.key}")
                seconds = max(bench.settings["profile_seconds"], 0.3)
                profiles[scenario.key] = profile_breakdown(scenario.profile_target, seconds,
                                                           cells[(scenario.key, "read")].median)
        text = report(bench, cells, counts, scaling, profiles, components, time.perf_counter() - started)
    finally:
        bench.close()
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
