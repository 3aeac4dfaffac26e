"""A store that hangs instead of refusing: ``store_timeout`` bounds each request, and
``outage_backoff`` keeps requests off the store while it keeps failing.

Two kinds of hang, against real drivers:

* a *blackhole*: a listener on a free port that accepts every connection and never
  answers (a host that took the packets and went silent); it counts the connections
  it accepted, so "no store call during the backoff" is checked literally;
* a *stopped server*: a private redis-server or memcached, SIGSTOPped (its kernel still
  accepts connections into the backlog; the process answers nothing) and SIGCONTed.

The bounds are generous (this is a bound, not a benchmark): a request during the hang
takes at most ``store_timeout`` plus :data:`MARGIN`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from kitsession_wsgi import SessionManager, SessionStore
from kitsession_wsgi.wsgi import SessionMiddleware

from polling import wait_until
from servers import PrivateServer, start_memcached, start_redis

STORE_TIMEOUT = 0.5
BACKOFF = 1.5
#: slack on top of the bound, for a loaded machine
MARGIN = 1.5


class Blackhole:
    """A TCP listener that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def _app(manager: SessionManager) -> Client:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ["PATH_INFO"] == "/session":
            environ["kitsession"].session  # noqa: B018 - loads the session: a store read
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return Client(SessionMiddleware(app, manager))


def _timed(client: Client, path: str = "/session") -> tuple[int, float]:
    started = time.monotonic()
    response = client.get(path)
    return response.status_code, time.monotonic() - started


def _with_cookie(manager: SessionManager, session_id: str) -> Client:
    client = _app(manager)
    client.set_cookie(manager.name, manager.cookie_value(session_id))
    return client


def _check_the_hang(client: Client, bound: float, connections: Callable[[], int] | None) -> None:
    """The first request waits at most ``bound`` and answers 503; the next ones answer 503
    at once, reach no store (``connections`` unchanged) until the backoff ends; a request
    that needs no store call is served."""
    status, first = _timed(client)
    assert status == 503 and first <= bound, (status, first)
    started = time.monotonic()
    before = connections() if connections is not None else 0
    worst = 0.0
    while time.monotonic() - started < BACKOFF * 0.6:
        status, took = _timed(client)
        assert status == 503
        worst = max(worst, took)
    assert worst <= bound
    if connections is not None:
        assert connections() == before, "a request reached the store during the backoff"
    assert _timed(client, "/anonymous")[0] == 200  # no store call, never failed


def _bound(store_timeout: float = STORE_TIMEOUT) -> float:
    return store_timeout + MARGIN


# -- blackholes ----------------------------------------------------------------------


def _manager(store: SessionStore, **options: Any) -> SessionManager:
    return SessionManager(store, keys="k", secure=False, store_timeout=options.pop("store_timeout", STORE_TIMEOUT),
                          outage_backoff=BACKOFF, **options)


def _probe_after_backoff(client: Client, bound: float, blackhole: Blackhole) -> None:
    """Once the backoff is over, one request probes the store (a connection) and fails within the bound."""
    time.sleep(BACKOFF)  # the backoff is the behaviour under test: let it pass
    before = blackhole.accepted
    status, took = _timed(client)
    assert status == 503 and took <= bound
    wait_until(lambda: blackhole.accepted > before, timeout=5, what="the probe connected")


def test_a_redis_blackhole_fails_fast_and_is_left_alone_during_the_backoff(blackhole: Blackhole) -> None:
    pytest.importorskip("redis")
    from kitsession_wsgi.stores.redis import RedisStore

    manager = _manager(RedisStore.from_url(f"redis://127.0.0.1:{blackhole.port}/0"))
    client = _with_cookie(manager, "x" * 43)
    _check_the_hang(client, _bound(), lambda: blackhole.accepted)
    _probe_after_backoff(client, _bound(), blackhole)


def test_a_redis_client_without_timeouts_is_bounded_too(blackhole: Blackhole) -> None:
    redis = pytest.importorskip("redis")
    from kitsession_wsgi.stores.redis import RedisStore

    user_client = redis.Redis(host="127.0.0.1", port=blackhole.port, socket_timeout=None, socket_connect_timeout=None)
    manager = _manager(RedisStore(user_client))
    kwargs = user_client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == STORE_TIMEOUT and kwargs["socket_connect_timeout"] == STORE_TIMEOUT
    _check_the_hang(_with_cookie(manager, "x" * 43), _bound(), lambda: blackhole.accepted)


def test_a_redis_clients_shorter_timeout_is_kept() -> None:
    redis = pytest.importorskip("redis")
    from kitsession_wsgi.stores.redis import RedisStore

    user_client = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2)
    _manager(RedisStore(user_client))
    assert user_client.connection_pool.connection_kwargs["socket_timeout"] == 0.2


def test_a_memcached_blackhole_fails_fast_and_is_left_alone_during_the_backoff(blackhole: Blackhole) -> None:
    pytest.importorskip("pymemcache")
    from kitsession_wsgi.stores.memcached import MemcachedStore

    manager = _manager(MemcachedStore.from_servers([f"127.0.0.1:{blackhole.port}"]))
    client = _with_cookie(manager, "x" * 43)
    _check_the_hang(client, _bound(), lambda: blackhole.accepted)
    _probe_after_backoff(client, _bound(), blackhole)


def test_a_pymemcache_client_without_timeouts_is_bounded_too(blackhole: Blackhole) -> None:
    pytest.importorskip("pymemcache")
    from pymemcache.client.base import PooledClient

    from kitsession_wsgi.stores.memcached import MemcachedStore

    user_client = PooledClient(("127.0.0.1", blackhole.port), no_delay=True, default_noreply=False)
    manager = _manager(MemcachedStore(user_client))
    assert user_client.connect_timeout == STORE_TIMEOUT and user_client.timeout == STORE_TIMEOUT
    _check_the_hang(_with_cookie(manager, "x" * 43), _bound(), lambda: blackhole.accepted)


#: libpq's connect_timeout is whole seconds and at least 2 (its own floor)
LIBPQ_CONNECT_FLOOR = 2.0


def test_a_postgresql_blackhole_fails_within_the_bound(blackhole: Blackhole) -> None:
    pytest.importorskip("psycopg2")
    from kitsession_wsgi.stores.peewee import PeeweeStore

    manager = _manager(PeeweeStore.from_url(f"postgresql://postgres@127.0.0.1:{blackhole.port}/test"))
    bound = _bound(max(STORE_TIMEOUT, LIBPQ_CONNECT_FLOOR))
    client = _with_cookie(manager, "x" * 43)
    _check_the_hang(client, bound, lambda: blackhole.accepted)
    _probe_after_backoff(client, bound, blackhole)


def test_a_peewee_database_without_timeouts_is_bounded_too(blackhole: Blackhole) -> None:
    peewee = pytest.importorskip("peewee")
    pytest.importorskip("pymysql")
    from kitsession_wsgi.stores.peewee import PeeweeStore

    database = peewee.MySQLDatabase("test", host="127.0.0.1", port=blackhole.port, user="root")
    manager = _manager(PeeweeStore(database))
    assert database.connect_params["read_timeout"] == STORE_TIMEOUT
    _check_the_hang(_with_cookie(manager, "x" * 43), _bound(), lambda: blackhole.accepted)


def test_a_mariadb_blackhole_fails_within_the_bound(blackhole: Blackhole) -> None:
    pytest.importorskip("pymysql")
    from kitsession_wsgi.stores.peewee import PeeweeStore

    manager = _manager(PeeweeStore.from_url(f"mysql://root@127.0.0.1:{blackhole.port}/test"))
    client = _with_cookie(manager, "x" * 43)
    _check_the_hang(client, _bound(), lambda: blackhole.accepted)
    _probe_after_backoff(client, _bound(), blackhole)


# -- stopped servers -----------------------------------------------------------------


@pytest.fixture
def private_servers() -> Iterator[list[PrivateServer]]:
    started: list[PrivateServer] = []
    yield started
    for server in started:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)  # a stopped process cannot exit on SIGTERM
        server.stop()


def _stop_and_resume(server: PrivateServer, manager: SessionManager) -> None:
    """A signed-in session is served, then the server is SIGSTOPped: the hang is bounded and
    backed off; after SIGCONT the session is served again within the backoff and one probe."""
    session = manager.create_session(data={"n": 1})
    client = _with_cookie(manager, session.id)  # type: ignore[arg-type]
    assert client.get("/session").status_code == 200
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        _check_the_hang(client, _bound(), None)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    resumed = time.monotonic()
    wait_until(lambda: client.get("/session").status_code == 200, timeout=BACKOFF + _bound(),
               what="the session is served again")
    assert time.monotonic() - resumed <= BACKOFF + _bound()


def test_a_stopped_redis_server_is_bounded_and_served_again_when_resumed(
        private_servers: list[PrivateServer]) -> None:
    pytest.importorskip("redis")
    from kitsession_wsgi.stores.redis import RedisStore

    server = start_redis()
    private_servers.append(server)
    _stop_and_resume(server, _manager(RedisStore.from_url(f"redis://{server.address}/0")))


def test_a_stopped_memcached_is_bounded_and_served_again_when_resumed(private_servers: list[PrivateServer]) -> None:
    pytest.importorskip("pymemcache")
    from kitsession_wsgi.stores.memcached import MemcachedStore

    server = start_memcached()
    private_servers.append(server)
    _stop_and_resume(server, _manager(MemcachedStore.from_servers([server.address])))
