"""Load over real HTTP: a Flask + KitSession app served by waitress (8 threads).

The server runs in a subprocess (its own interpreter, so client threads and
server threads do not share a GIL) on a free 127.0.0.1 port and is stopped by
its pid at the end, whatever happens.  A bounded pool of client threads, each
one a browser with its own cookie and keep-alive connection, sends a seeded
mix of anonymous requests, logins, reads, writes, logouts and replays of dead
cookies.  Every client knows exactly what its session must hold, so:

* no response is a 5xx;
* every read, and every session's final state, equals what its client wrote;
* anonymous requests store nothing, a logout or re-login kills the old cookie,
  and the store ends with exactly one live session per client holding a cookie.

It runs on every store kind (``stores.STORE_KINDS``: memory, SQLite,
PostgreSQL, MariaDB, memcached, Redis; a server that is absent skips locally
and fails under ``KITSESSION_REQUIRE_SERVICES=1``).  Bounded in time: a hard
deadline (150 s) fails the test instead of hanging it, and a hang dumps the
server threads' stacks into the failure message.  Each store gets 6,000
requests (it was 20,000 on memory and SQLite only; six stores at 6,000 cost
about the same time): 2-9 s per store on this 2-core machine with a load
average of 6, 36 s for all six with the server start-ups
(``KITSESSION_LOAD_REQUESTS`` changes the count; ``-m "not load"`` deselects it).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from polling import wait_until
from servers import MYSQL_URL, POSTGRES_URL, free_port, wait_for_port
from session_helpers import parse_set_cookie
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (fixture)

HERE = Path(__file__).resolve().parent
CLIENTS = 16
#: a hard cap on the whole run; the test fails when it is reached
DEADLINE_SECONDS = 150.0
SOCKET_TIMEOUT = 15.0
#: requests per store: 6,000 by default; KITSESSION_LOAD_REQUESTS changes it (e.g. 2000 for a quick local run)
TOTAL_REQUESTS = int(os.environ.get("KITSESSION_LOAD_REQUESTS", "6000"))


# -- the server side (runs in the subprocess) ------------------------------------------------


def build_store(spec: dict[str, str]) -> Any:
    """The store a spec names (see :func:`store_spec`), in the server process; SQL tables created."""
    from kitsession_wsgi import MemoryStore

    kind = spec["kind"]
    if kind == "memory":
        return MemoryStore()
    if kind in ("sqlite", "postgresql", "mariadb"):
        from kitsession_wsgi.stores.peewee import PeeweeStore

        store = PeeweeStore.from_url(spec["url"], table_name=spec["name"])
        store.create_tables()
        return store
    if kind == "memcached":
        from kitsession_wsgi.stores.memcached import MemcachedStore

        return MemcachedStore.from_servers([spec["url"]], key_prefix=spec["name"])
    if kind in ("redis", "redis-cluster"):
        from kitsession_wsgi.stores.redis import RedisStore

        # (RedisStore.from_url sends a redis+cluster:// URL to from_cluster_url)
        return RedisStore.from_url(spec["url"], prefix=spec["name"] + ":")
    raise ValueError(f"unknown store kind {kind!r}")


def create_app(spec: dict[str, str]) -> Any:
    """The app under load: read, write, login, logout, and a live-session count."""
    import flask

    from kitsession_wsgi.flask import (
        KitSession,
        current_session,
        get_manager,
        with_delete_session,
        with_new_session,
    )

    app = flask.Flask("kitsession-load")
    app.config.update(SECRET_KEY="load-test-key", KITSESSION_SECURE=False)
    KitSession(app, store=build_store(spec))

    def state() -> Any:
        return flask.jsonify(new=current_session.is_new, data=dict(flask.session))

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/me")
    def me() -> Any:
        return state()

    @app.post("/write")
    def write() -> Any:
        flask.session[flask.request.args["k"]] = int(flask.request.args["v"])
        return state()

    @app.post("/login")
    @with_new_session
    def login(session: Any) -> Any:
        session.data = {"id": flask.request.args["user"]}
        return flask.jsonify(new=False, data=session.data)

    @app.post("/logout")
    @with_delete_session
    def logout(session: Any) -> Any:
        return flask.jsonify(new=True, data={})

    @app.get("/_live")
    def live() -> Any:
        return flask.jsonify(count=len(get_manager().get_all_sessions()))

    return app


def serve(port: int, spec: dict[str, str]) -> None:  # pragma: no cover - runs in the subprocess
    import faulthandler

    import waitress

    # SIGUSR1 dumps every server thread's stack to stderr: how a hang is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    waitress.serve(create_app(spec), host="127.0.0.1", port=port, threads=8, _quiet=True,
                   connection_limit=200, channel_timeout=60)


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stacks(self) -> str:
        """The server threads' stacks (faulthandler on SIGUSR1) and the tail of its stderr."""
        if self.process.poll() is None:
            before = self.log.stat().st_size
            os.kill(self.process.pid, signal.SIGUSR1)
            try:
                wait_until(lambda: "most recent call first" in self.log.read_text(errors="replace")[before:],
                           timeout=10, what="the server dumped its stacks")
            except AssertionError as exc:
                return f"({exc})\n" + self.log.read_text(errors="replace")[-6000:]
        return self.log.read_text(errors="replace")[-6000:]


def store_spec(kind: str, tmp_path: Path, servers: Any) -> dict[str, str]:
    """What the server process needs to open a fresh, empty store of ``kind`` (its own table or key prefix)."""
    name = f"kl{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        return {"kind": kind, "url": "memory", "name": name}
    if kind == "sqlite":
        return {"kind": kind, "url": f"sqlite:///{tmp_path / 'load.db'}", "name": name}
    if kind in ("postgresql", "mariadb"):
        with open_store(kind, tmp_path, servers):  # skips (or fails in CI) when the server is absent
            pass
        return {"kind": kind, "url": POSTGRES_URL if kind == "postgresql" else MYSQL_URL, "name": name}
    if kind == "memcached":
        return {"kind": kind, "url": servers.memcached_address(), "name": name}
    if kind == "redis":
        return {"kind": kind, "url": servers.redis_url(), "name": name}
    if kind == "redis-cluster":
        return {"kind": kind, "url": servers.redis_cluster_url(), "name": name}
    raise ValueError(f"unknown store kind {kind!r}")


def drop_tables(spec: dict[str, str]) -> None:
    """Remove a SQL load test's tables (cache stores' keys go with their private servers)."""
    if spec["kind"] in ("postgresql", "mariadb"):
        from kitsession_wsgi.stores.peewee import PeeweeStore

        store = PeeweeStore.from_url(spec["url"], table_name=spec["name"])
        try:
            store.drop_tables()
        finally:
            store.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[Server]:
    spec = store_spec(request.param, tmp_path, store_servers)
    port = free_port()
    log = tmp_path / "server.log"
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_load; test_load.serve({port}, {spec!r})"
    with log.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-c", code], cwd=HERE.parent, start_new_session=True,
                                   stdout=log_file, stderr=log_file)
    running = Server(port, process, log)
    try:
        if not wait_for_port(port, timeout=30):
            pytest.fail(f"the waitress server did not start: {running.stacks()}")
        yield running
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        drop_tables(spec)


# -- the client side -------------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def count(self, status: int) -> None:
        with self.lock:
            self.requests += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


class Browser:
    """One client: its own connection, its own cookie, and what its session must hold."""

    def __init__(self, index: int, port: int, tally: Tally, deadline: float) -> None:
        self.index = index
        self.user = f"user-{index}"
        self.port = port
        self.tally = tally
        self.deadline = deadline
        self.random = random.Random(index)
        self.cookie: str | None = None
        #: what the session holds; None when the client holds no session
        self.expected: dict[str, Any] | None = None
        self.dead_cookies: list[tuple[str, str]] = []
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=SOCKET_TIMEOUT)

    def send(self, method: str, path: str, cookie: str | None) -> tuple[int, Any, list[str]]:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the load test passed its deadline")
        headers = {"Cookie": cookie} if cookie is not None else {}
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, headers=headers)
                response = self.connection.getresponse()
                body = response.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                # the server may close an idle keep-alive connection: reconnect once
                self.connection.close()
                self.connection = self._connect()
                if attempt == 2:
                    raise
        self.tally.count(response.status)
        set_cookies = response.msg.get_all("Set-Cookie") or []
        data = json.loads(body) if response.headers.get("Content-Type", "").startswith("application/json") else body
        if response.status >= 500:
            self.tally.problem(f"{method} {path} -> {response.status}: {body[:200]!r}")
        return response.status, data, set_cookies

    def _adopt(self, set_cookies: list[str], what: str) -> None:
        """Follow Set-Cookie as a browser does."""
        for value in set_cookies:
            cookie = parse_set_cookie(value)
            if cookie.is_removal:
                if self.cookie is not None:
                    self.dead_cookies.append((self.cookie, "removed"))
                self.cookie = None
            else:
                if self.cookie is not None and self.cookie != cookie.request_header:
                    self.dead_cookies.append((self.cookie, "replaced"))
                self.cookie = cookie.request_header

    def check(self, what: str, status: int, data: Any, expected: dict[str, Any] | None,
              new: bool | None = None) -> None:
        """``new``: the session the view saw was new (default: when nothing is expected)."""
        want = {"new": expected is None if new is None else new, "data": expected or {}}
        if status != 200 or data != want:
            self.tally.problem(f"client {self.index} {what}: got {status} {data!r}, expected {want!r}")

    # -- the operations

    def anonymous(self) -> None:
        status, data, set_cookies = self.send("GET", "/me", None)
        self.check("anonymous read", status, data, None)
        if set_cookies:
            self.tally.problem(f"anonymous request got Set-Cookie {set_cookies}")

    def login(self) -> None:
        old = self.cookie
        status, data, set_cookies = self.send("POST", f"/login?user={self.user}", self.cookie)
        self._adopt(set_cookies, "login")
        self.expected = {"id": self.user}
        self.check("login", status, data, self.expected)
        if self.cookie is None or self.cookie == old:
            self.tally.problem(f"client {self.index}: login did not hand out a new cookie ({set_cookies})")

    def read(self) -> None:
        status, data, set_cookies = self.send("GET", "/me", self.cookie)
        self._adopt(set_cookies, "read")
        self.check("read", status, data, self.expected)

    def write(self) -> None:
        key, value = f"k{self.random.randrange(5)}", self.random.randrange(1_000_000)
        starts_a_session = self.cookie is None
        status, data, set_cookies = self.send("POST", f"/write?k={key}&v={value}", self.cookie)
        self._adopt(set_cookies, "write")
        self.expected = {**(self.expected or {}), key: value}
        self.check("write", status, data, self.expected, new=starts_a_session)
        if self.cookie is None:
            self.tally.problem(f"client {self.index}: a write left no session cookie")

    def logout(self) -> None:
        had = self.cookie
        status, data, set_cookies = self.send("POST", "/logout", self.cookie)
        self._adopt(set_cookies, "logout")
        self.expected = None
        self.check("logout", status, data, None)
        if self.cookie is not None or (had is not None and not set_cookies):
            self.tally.problem(f"client {self.index}: logout did not clear the cookie ({set_cookies})")

    def replay_dead_cookie(self) -> None:
        if not self.dead_cookies:
            return self.read()
        dead, how = self.random.choice(self.dead_cookies)
        status, data, set_cookies = self.send("GET", "/me", dead)
        self.check("dead cookie replay", status, data, None)
        removals = [v for v in set_cookies if parse_set_cookie(v).is_removal]
        if how == "removed" and not removals:
            self.tally.problem(f"client {self.index}: a logged-out cookie was not cleared ({set_cookies})")
        # A cookie a login replaced is marked "replaced" for a minute and left alone meanwhile
        # (clearing it could delete the new cookie); after that it is cleared like any dead one.
        if len(removals) != len(set_cookies):
            self.tally.problem(f"client {self.index}: a dead cookie got a live Set-Cookie ({set_cookies})")

    OPERATIONS = [("anonymous", 10), ("login", 10), ("read", 38), ("write", 30), ("logout", 6),
                  ("replay_dead_cookie", 6)]

    def run(self, requests: int) -> None:
        names = [name for name, _ in self.OPERATIONS]
        weights = [weight for _, weight in self.OPERATIONS]
        try:
            for _ in range(requests):
                getattr(self, self.random.choices(names, weights)[0])()
            self.read()  # the final state, as the server sees it
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.tally.problem(f"client {self.index} stopped: {type(exc).__name__}: {exc}")
        finally:
            self.connection.close()


def run_load(server: Server, total_requests: int) -> Tally:
    port = server.port
    tally = Tally()
    deadline = time.monotonic() + DEADLINE_SECONDS
    browsers = [Browser(i, port, tally, deadline) for i in range(CLIENTS)]
    per_client = total_requests // CLIENTS
    threads = [threading.Thread(target=b.run, args=(per_client,), daemon=True) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 5)
    stuck = sum(thread.is_alive() for thread in threads)
    assert stuck == 0, (f"{stuck} client threads were still running at the {DEADLINE_SECONDS:.0f}s deadline; "
                        f"server stacks:\n{server.stacks()}")
    if any("stopped" in problem for problem in tally.problems):
        pytest.fail(f"clients stopped early: {tally.problems[:5]}\nserver stacks:\n{server.stacks()}")

    # Exactly one live session per client that holds a cookie: anonymous reads stored
    # nothing, logouts and re-logins removed the old session.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        connection.request("GET", "/_live")
        live = json.loads(connection.getresponse().read())["count"]
    except OSError as exc:
        pytest.fail(f"the server stopped answering after the load ({exc}); its stacks:\n{server.stacks()}")
    finally:
        connection.close()
    holding = sum(b.cookie is not None for b in browsers)
    if live != holding:
        tally.problem(f"the store holds {live} live sessions, but {holding} clients hold a cookie")
    return tally


def _report(tally: Tally, total: int, elapsed: float, store: str) -> None:
    print(f"\n[load] {store}: {tally.requests} requests in {elapsed:.1f}s "
          f"({tally.requests / elapsed:.0f}/s), statuses {tally.statuses}")
    assert not tally.problems, f"{len(tally.problems)} problems, first: {tally.problems[:5]}"
    assert not [s for s in tally.statuses if s >= 500]
    assert tally.requests >= total, "fewer requests than planned were sent"


@pytest.mark.load
@pytest.mark.parametrize("server", STORE_KINDS, indirect=True)
def test_load_mixed_requests_over_http(server: Server, request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    tally = run_load(server, TOTAL_REQUESTS)
    _report(tally, TOTAL_REQUESTS, time.monotonic() - started, request.node.callspec.params["server"])
