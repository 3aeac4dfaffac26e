"""Build a store from a URL, for ``KITSESSION_STORE`` and command lines.

.. versionadded:: 0.1
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import ConfigurationError
from .base import SessionStore
from .memory import MemoryStore

__all__ = ["SCHEMES", "store_from_url"]

#: URL schemes :func:`store_from_url` understands
SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "mysql", "mariadb", "memcached", "redis", "rediss",
           "redis+cluster", "rediss+cluster")


def store_from_url(url: str) -> SessionStore:
    """A store for ``url``:

    * ``memory`` (or ``memory://``): a :class:`MemoryStore`;
    * ``sqlite:///path.db``, ``postgresql://user@host:port/db``, ``mysql://user@host:port/db``:
      a :class:`~kitsession_wsgi.stores.peewee.PeeweeStore` (``?table=name`` names its table,
      default ``kitsession_sessions``; the URL builds it without creating the tables: the
      Flask extension's ``init_app`` and ``flask kitsession init-db`` call ``create_tables()``);
    * ``memcached://host:port,host:port``: a :class:`~kitsession_wsgi.stores.memcached.MemcachedStore`;
    * ``redis://host:port/db``: a :class:`~kitsession_wsgi.stores.redis.RedisStore`;
    * ``redis+cluster://host:port[,host:port...]/`` (``rediss+cluster://`` with TLS): a
      :class:`~kitsession_wsgi.stores.redis.RedisStore` over a Redis Cluster (the hosts are
      startup nodes; one reachable node is enough).

    .. versionchanged:: 0.2
       ``redis+cluster://`` and ``rediss+cluster://``; ``?table=`` on SQL URLs.

    :raises ConfigurationError: an unknown scheme or a malformed URL (option ``store``).
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError("store", f"a store URL must be a non-empty string, got {url!r}")
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    if scheme == "memory":
        return MemoryStore()
    if scheme in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        from .peewee import PeeweeStore

        if scheme == "mariadb":
            url = "mysql" + url[len(scheme):]
        # ``?table=`` is ours; the rest of the query goes to the database driver.  Split by
        # hand: urlunsplit would turn ``sqlite:////abs/path`` into a host name.
        address, _, query_text = url.partition("?")
        query = parse_qsl(query_text, keep_blank_values=True)
        tables = [value for name, value in query if name == "table"]
        if not tables:
            return PeeweeStore.from_url(url)
        rest = urlencode([(name, value) for name, value in query if name != "table"])
        return PeeweeStore.from_url(f"{address}?{rest}" if rest else address, table_name=tables[-1])
    if scheme == "memcached":
        from .memcached import MemcachedStore

        servers = [s for s in urlsplit(url).netloc.split(",") if s]
        if not servers:
            raise ConfigurationError("store", f"{url!r} names no memcached server (memcached://host:port,...)")
        return MemcachedStore.from_servers(servers)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore

        return RedisStore.from_url(url)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .redis import RedisStore

        return RedisStore.from_cluster_url(url)
    raise ConfigurationError("store", f"unknown store URL scheme {scheme!r} (known: {', '.join(SCHEMES)})")
