"""The public Redis store: one class for both layouts, picked by the client's type.

.. versionadded:: 0.2
"""

from __future__ import annotations

import functools
from typing import Any, Self, cast
from urllib.parse import unquote, urlsplit

from ...errors import ConfigurationError, StoreUnavailable
from .._toolkit import DriverErrors
from ._base import Client, RedisBase
from ._cluster import ClusterLayout
from .._timeouts import DEFAULT_STORE_TIMEOUT, settings_of
from ._driver import ClusterNode, RedisCluster, is_unavailable, quick_retry, redis
from ._standalone import StandaloneLayout

__all__ = ["RedisStore"]


class RedisStore(RedisBase):
    """Sessions in Redis, one STRING per session plus an index per user.

    ``RedisStore(client)`` is a store on one Redis for a ``redis.Redis`` client and a store
    on a Redis Cluster for a ``RedisCluster`` (``is_cluster`` says which); a subclass of
    ``RedisStore`` is combined with the layout the same way.

    :param client: a ``redis.Redis`` client (standalone or from Sentinel) or a
        ``redis.cluster.RedisCluster``, preferably with
        ``decode_responses=False`` (see :mod:`kitsession_wsgi.stores.redis`).  Give it timeouts:
        :meth:`from_url` and :meth:`from_cluster_url` do.
    :param prefix: put before every Redis key.
    :param wait_replicas: after each delete, batch of "sign out everywhere" and
        save that changes the user, ``WAIT`` until this many replicas have the
        write (0, the default, waits for none).  See :mod:`kitsession_wsgi.stores.redis`.
    :param wait_timeout_ms: how long ``WAIT`` may block; fewer replicas by then
        raises :class:`~kitsession_wsgi.StoreUnavailable`.
    :raises ConfigurationError: an empty prefix, a negative ``wait_replicas``
        or a ``wait_timeout_ms`` below 1.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``client`` may be a ``RedisCluster``; ``wait_replicas`` and ``wait_timeout_ms``.
    """

    def __new__(cls, client: Client, *args: Any, **kwargs: Any) -> Self:
        layout = ClusterLayout if isinstance(client, RedisCluster) else StandaloneLayout
        return cast(Self, super().__new__(_with_layout(cls, layout)))

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sess:", **client_options: Any) -> RedisStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``, ``rediss://``, ``unix://``).

        The client gets connect and read timeouts of the manager's ``store_timeout``
        (:meth:`apply_timeout`) and one quick retry (enough to replace a connection a
        restarted server closed; none after a timeout) instead of redis-py's ten;
        ``client_options`` override them.  A
        ``redis+cluster://`` or ``rediss+cluster://`` URL goes to
        :meth:`from_cluster_url`.

        .. versionadded:: 0.1
        """
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url", f"must be a Redis URL, got {url!r}")
        if url.split(":", 1)[0].lower() in ("redis+cluster", "rediss+cluster"):
            return cls.from_cluster_url(url, prefix=prefix, **client_options)
        options: dict[str, Any] = {"retry": quick_retry(), **client_options}
        store = cls(redis.Redis.from_url(url, **options), prefix=prefix)
        store.apply_timeout(DEFAULT_STORE_TIMEOUT)
        return store

    @classmethod
    def from_cluster_url(cls, url: str, *, prefix: str = "sess:", wait_replicas: int = 0,
                         wait_timeout_ms: int = 1000, **client_options: Any) -> RedisStore:
        """A store on the Redis Cluster at ``redis+cluster://[user:password@]host:port[,host:port...]/``.

        ``rediss+cluster://`` connects with TLS.  The hosts are startup nodes:
        any reachable one is enough to discover the rest.  The client gets
        1-second connect and read timeouts and one quick retry per node;
        ``client_options`` (``RedisCluster`` arguments) override them.  Unlike
        :meth:`from_url`, this connects: redis-py reads the cluster's slot map
        when the client is built.

        :raises StoreUnavailable: no startup node answered.
        :raises ConfigurationError: a URL of another scheme, without hosts, with
            a bad port, or with a database number (a cluster has only database 0).

        .. versionadded:: 0.2
        """
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url", f"must be a Redis Cluster URL, got {url!r}")
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("redis+cluster", "rediss+cluster") or not rest:
            raise ConfigurationError("url", f"must be redis+cluster://host:port[,host:port...]/, got {url!r}")
        parts = urlsplit("redis://" + rest)
        credentials, _, hosts = parts.netloc.rpartition("@")
        nodes: list[ClusterNode] = []
        for host_port in hosts.split(","):
            host, _, port = host_port.strip().rpartition(":")
            if not host_port.strip():
                continue
            if not host:
                host, port = port, "6379"
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError("url", f"{host_port!r} in {url!r} has no valid port")
            nodes.append(cast(Any, ClusterNode)(host.strip("[]"), int(port)))
        if not nodes:
            raise ConfigurationError("url", f"{url!r} names no cluster node (redis+cluster://host:port,...)")
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigurationError("url", f"{url!r}: a Redis Cluster has only database 0")
        options: dict[str, Any] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": quick_retry(),
        }
        if credentials:
            username, has_password, password = credentials.partition(":")
            if has_password:
                options["username"] = unquote(username) or None
                options["password"] = unquote(password)
            else:
                options["password"] = unquote(username)
        if scheme.lower() == "rediss+cluster":
            options["ssl"] = True
        options.update(client_options)
        def unreachable(exc: Exception, _action: str) -> Exception | None:
            if not is_unavailable(exc):
                return None
            return StoreUnavailable(f"Redis Cluster at {hosts!r} could not be reached: {type(exc).__name__}: {exc}",
                                    store="redis")

        with DriverErrors(unreachable, "connect"):
            # RedisCluster asks a startup node for the slot map as it is built.
            client = RedisCluster(startup_nodes=nodes, **options)
        return cls(client, prefix=prefix, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)

    def apply_timeout(self, seconds: float) -> None:
        """Bound connects and reads by ``seconds`` (``socket_connect_timeout``, ``socket_timeout``).

        Set in the client's connection arguments (its pool's; a cluster client's node
        arguments) where they are unset or longer (redis-py's defaults are 5 s); shorter
        ones are kept.  Where the bound is set, the client's retry policy (redis-py's
        default retries a timeout ten times) becomes one quick retry of a refused or
        closed connection and none of a timeout, so one call waits once.  Connections opened from now on get it.

        .. versionadded:: 0.3
        """
        settings = settings_of(self)
        client: Any = self.client
        names = ("socket_timeout", "socket_connect_timeout")
        if self.is_cluster:
            kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", None)
            if isinstance(kwargs, dict):
                settings.fill(kwargs, names, seconds)
            return
        if settings.fill(client.connection_pool.connection_kwargs, names, seconds):
            client.set_retry(quick_retry())

    @property
    def partial_outages(self) -> bool:
        """Whether one node can fail while the others serve (a cluster): then no
        store-wide outage backoff."""
        return self.is_cluster


@functools.cache
def _with_layout(cls: type[RedisStore], layout: type[RedisBase]) -> type[RedisStore]:
    """``cls`` with the layout's methods behind it, under ``cls``'s own name (so ``type(store)`` reads as before)."""
    if issubclass(cls, layout):
        return cls
    namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    return cast("type[RedisStore]", type(cls.__name__, (cls, layout), namespace))
