"""Real stores for the cross-store tests (concurrency, destroy races): one factory per kind.

``STORE_KINDS`` lists every store whose module exists in this checkout
(memory always; SQLite file, PostgreSQL and MariaDB once
``kitsession_wsgi.stores.peewee`` exists; memcached and Redis once their modules
exist; Redis also as ``redis-cluster``, a private 3-master cluster), so a store
joins the parametrized tests the moment it lands.  A store
whose server is absent skips locally and fails with
``KITSESSION_REQUIRE_SERVICES=1`` (through :func:`servers.service_missing`).

memcached and Redis are private instances started once per test session on free
ports (or the external ones named by ``KITSESSION_MEMCACHED_SERVERS`` /
``KITSESSION_REDIS_URL``) and stopped by their pid at the end.  Every store a
test gets is empty: SQL stores get their own tables, cache stores their own key
prefix.

Use it from a test module with::

    from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (fixture)
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kitsession_wsgi import MemoryStore, SessionStore, StoreUnavailable

from servers import (
    MEMCACHED_SERVERS,
    MYSQL_URL,
    POSTGRES_URL,
    REDIS_URL,
    PrivateServer,
    PrivateRedisCluster,
    service_missing,
    start_memcached,
    start_redis,
    start_redis_cluster,
)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


HAS_PEEWEE_STORE = _module_exists("kitsession_wsgi.stores.peewee")
HAS_MEMCACHED_STORE = _module_exists("kitsession_wsgi.stores.memcached")
HAS_REDIS_STORE = _module_exists("kitsession_wsgi.stores.redis")

#: every store kind this checkout can build, in a stable order (readable test ids)
STORE_KINDS: list[str] = (
    ["memory"]
    + (["sqlite", "postgresql", "mariadb"] if HAS_PEEWEE_STORE else [])
    + (["memcached"] if HAS_MEMCACHED_STORE else [])
    + (["redis", "redis-cluster"] if HAS_REDIS_STORE else [])
)


class _Servers:
    """memcached and Redis started at most once per test session, stopped by pid."""

    def __init__(self) -> None:
        self.private: dict[str, PrivateServer] = {}
        self.cluster: PrivateRedisCluster | None = None

    def memcached_address(self) -> str:
        if MEMCACHED_SERVERS:
            return MEMCACHED_SERVERS.split(",")[0]
        server = self.private.get("memcached")
        if server is None or server.process is None or server.process.poll() is not None:
            server = self.private["memcached"] = start_memcached()
        return server.address

    def redis_url(self) -> str:
        if REDIS_URL:
            return REDIS_URL
        server = self.private.get("redis")
        if server is None or server.process is None or server.process.poll() is not None:
            server = self.private["redis"] = start_redis()
        return f"redis://{server.address}/0"

    def redis_cluster(self) -> PrivateRedisCluster:
        """The shared Redis Cluster (3 masters, 3 replicas), started on first use."""
        if self.cluster is None:
            self.cluster = start_redis_cluster()
        return self.cluster

    def redis_cluster_url(self) -> str:
        return f"redis+cluster://{self.redis_cluster().startup_nodes}/"

    def stop(self) -> None:
        for server in self.private.values():
            server.stop()
        self.private.clear()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


SERVERS = _Servers()


@pytest.fixture(scope="session")
def store_servers() -> Iterator[_Servers]:
    """The session-wide server registry; stops the private servers at the end."""
    yield SERVERS
    SERVERS.stop()


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def _peewee_store(url: str, what: str) -> Iterator[SessionStore]:
    from kitsession_wsgi.stores.peewee import PeeweeStore

    if not url.startswith("sqlite") and not _reachable(url):
        service_missing(f"{what} is not reachable at {url}")
    store = PeeweeStore.from_url(url, table_name=_unique("kt_"))
    try:
        store.create_tables()
    except StoreUnavailable as exc:  # the server answered but refused us (no database, no rights)
        service_missing(f"{what} at {url}: cannot create tables: {exc}")
    try:
        yield store
    finally:
        store.drop_tables()
        store.close()


@contextlib.contextmanager
def open_store(kind: str, tmp_path: Path, servers: _Servers = SERVERS) -> Iterator[SessionStore]:
    """An empty store of ``kind`` (one of :data:`STORE_KINDS`), removed afterwards."""
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        with _peewee_store(f"sqlite:///{tmp_path / 'sessions.db'}", "SQLite") as store:
            yield store
    elif kind == "postgresql":
        with _peewee_store(POSTGRES_URL, "PostgreSQL") as store:
            yield store
    elif kind == "mariadb":
        with _peewee_store(MYSQL_URL, "MariaDB") as store:
            yield store
    elif kind == "memcached":
        from kitsession_wsgi.stores.memcached import MemcachedStore

        store = MemcachedStore.from_servers([servers.memcached_address()], key_prefix=_unique("kt"))
        try:
            yield store
        finally:
            store.close()
    elif kind == "redis":
        from kitsession_wsgi.stores.redis import RedisStore

        store = RedisStore.from_url(servers.redis_url(), prefix=_unique("kt") + ":")
        try:
            yield store
        finally:
            store.close()
    elif kind == "redis-cluster":
        from kitsession_wsgi.stores.redis import RedisStore

        store = RedisStore.from_url(servers.redis_cluster_url(), prefix=_unique("kt") + ":")
        try:
            yield store
        finally:
            store.close()
    else:  # pragma: no cover - a typo in a parametrization
        raise ValueError(f"unknown store kind {kind!r}")
