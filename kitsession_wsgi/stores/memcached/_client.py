"""The memcached client side: which pymemcache client to build, a cluster client that fails loudly,
and which driver errors are outages.

pymemcache's own ``HashClient`` answers a miss for a failing node and, after
``retry_attempts`` failures, moves that node's keys to the other nodes: both log
users out silently.  :class:`StrictHashClient` raises for the keys of a failing
node instead, keeps serving the other nodes, and uses the node again once it
answers.  Only pymemcache's public API is used (no private method is
overridden, so the dependency needs no upper pin).

.. versionadded:: 0.2
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ...errors import ConfigurationError, SessionDataError, StoreUnavailable
from .._timeouts import TimeoutSettings
from .._toolkit import is_number

try:
    from pymemcache.client.base import PooledClient  # type: ignore[import-untyped]
    from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
    from pymemcache.exceptions import (  # type: ignore[import-untyped]
        MemcacheClientError,
        MemcacheError,
        MemcacheServerError,
        MemcacheUnexpectedCloseError,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kitsession_wsgi.stores.memcached needs pymemcache: pip install 'kitsession-wsgi[memcached]'"
    ) from exc

__all__ = ["HashClient", "MemcacheClient", "MemcachedNodeDown", "StrictHashClient", "bound_client", "build_client",
           "drop_idle_connections", "gets", "translate"]


class MemcacheClient(Protocol):
    """The part of a pymemcache client the store uses.

    ``pymemcache.Client``, ``PooledClient``, ``HashClient`` and
    :class:`StrictHashClient` all fit; only the thread-safe ones (pooled) may
    be shared between request threads.

    .. versionadded:: 0.1
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""

    def get_many(self, keys: Iterable[str]) -> dict[Any, Any]:
        """The values of the ``keys`` that exist."""

    def gets(self, key: str) -> tuple[Any, Any]:
        """The value and its CAS token, or ``(None, None)``."""

    def add(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        """Store only if ``key`` is absent; true when stored."""

    def append(self, key: str, value: bytes, expire: int = 0, noreply: bool | None = None) -> Any:
        """Append to an existing value; true when stored."""

    def cas(self, key: str, value: bytes, cas: Any, expire: int = 0, noreply: bool = False) -> Any:
        """Store if the CAS token still matches: true, false (changed) or ``None`` (gone)."""

    def delete(self, key: str, noreply: bool | None = None) -> Any:
        """Delete ``key``; true when it existed."""

    def incr(self, key: str, value: int, noreply: bool | None = False) -> Any:
        """Add ``value`` to the number under ``key``: the new number, or ``None`` when it is absent."""

    def close(self) -> None:
        """Close the connections."""


class MemcachedNodeDown(ConnectionError):
    """A memcached node failed recently and is not tried again until its ``dead_timeout`` passes.

    Raised by :class:`StrictHashClient` for keys of that node; the store turns
    it into :class:`~kitsession_wsgi.StoreUnavailable`.

    .. versionadded:: 0.1
    """


class StrictHashClient(HashClient):  # type: ignore[misc]
    """A pymemcache ``HashClient`` for which a failing node raises instead of being skipped.

    pymemcache's ``HashClient`` returns a default value (a miss) for a node in
    its retry window and, after ``retry_attempts`` failures, removes the node
    so its keys re-hash onto the others.  For sessions both mean a silent
    logout, and the re-hashed writes come back stale when the node returns.
    This client never removes a node and never answers for it:

    * a call whose node fails raises (``OSError`` or a pymemcache error), and the
      node's pooled connections are dropped;
    * for ``dead_timeout`` seconds after that, calls for that node raise
      :class:`MemcachedNodeDown` at once instead of waiting for a timeout;
    * after that, the next call tries the node again; if it answers, it is in
      use again.  ``dead_timeout=0`` tries the node on every call.

    Keys of the other nodes are unaffected throughout.  Each node is a
    pymemcache ``PooledClient`` (thread-safe).  The key commands are written
    out here on ``HashClient``'s public parts (``hasher``, ``clients``), so no
    private method of pymemcache is overridden; anything else (``flush_all``,
    ``stats``) runs through ``HashClient`` itself, configured never to skip
    or remove a node (``retry_attempts`` never reached, ``retry_timeout=0``).
    All other keyword arguments of ``HashClient`` are accepted, with safer
    defaults ``no_delay=True`` and ``default_noreply=False``.

    :raises ConfigurationError: no servers, ``ignore_exc=True``,
        ``use_pooling=False``, ``retry_attempts`` or ``retry_timeout``
        (``dead_timeout`` replaces them), or a bad ``dead_timeout``.

    .. versionadded:: 0.1
    """

    def __init__(self, servers: Sequence[Any], *, dead_timeout: float = 1.0, **options: Any) -> None:
        if options.get("ignore_exc"):
            raise ConfigurationError("ignore_exc", "StrictHashClient never ignores errors: an outage is not a miss")
        if options.get("use_pooling", True) is not True:
            raise ConfigurationError("use_pooling", "StrictHashClient is shared between threads: its nodes are pooled")
        for option in ("retry_attempts", "retry_timeout"):
            if option in options:
                raise ConfigurationError(
                    option, "StrictHashClient never skips or removes a failing node; dead_timeout is how long it "
                    "fails fast before trying the node again")
        if not is_number(dead_timeout) or dead_timeout < 0:
            raise ConfigurationError("dead_timeout", f"must be a number of seconds >= 0, got {dead_timeout!r}")
        if isinstance(servers, (str, bytes)) or not servers:
            raise ConfigurationError("servers", f"must be a non-empty list of 'host:port', got {servers!r}")
        self._down_until: dict[str, float] = {}
        options = {"no_delay": True, "default_noreply": False, **options, "use_pooling": True}
        super().__init__(servers, dead_timeout=dead_timeout, ignore_exc=False,
                         retry_attempts=sys.maxsize, retry_timeout=0, **options)

    def node_for(self, key: str) -> str:
        """The ``host:port`` of the node that holds ``key`` (prefix included).

        .. versionadded:: 0.1
        """
        return str(self.hasher.get_node(key))

    def _node(self, key: Any) -> str:
        """The node that holds ``key``; raises :class:`MemcachedNodeDown` inside its dead window."""
        node = str(self.hasher.get_node(key))
        until = self._down_until.get(node)
        if until is not None and time.monotonic() < until:
            raise MemcachedNodeDown(f"memcached node {node} is down")
        return node

    def _on(self, node: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``method`` of ``node``'s client: a connection failure marks the node down and raises."""
        try:
            result = getattr(self.clients[node], method)(*args, **kwargs)
        except (OSError, MemcacheUnexpectedCloseError):
            self._mark_down(node)
            raise
        self._down_until.pop(node, None)
        return result

    def _mark_down(self, node: str) -> None:
        self._down_until[node] = time.monotonic() + self.dead_timeout
        # The pool's other connections go to the same failed server: after a
        # restart each would fail once more, so drop them now.
        drop_idle_connections(self.clients[node])

    def _keyed(self, method: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._on(self._node(key), method, key, *args, **kwargs)

    def get(self, key: Any, default: Any = None, **kwargs: Any) -> Any:
        return self._keyed("get", key, default, **kwargs)

    def gets(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("gets", key, *args, **kwargs)

    def set(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("set", key, *args, **kwargs)

    def add(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("add", key, *args, **kwargs)

    def replace(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("replace", key, *args, **kwargs)

    def append(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("append", key, *args, **kwargs)

    def prepend(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("prepend", key, *args, **kwargs)

    def cas(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("cas", key, *args, **kwargs)

    def delete(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("delete", key, *args, **kwargs)

    def touch(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("touch", key, *args, **kwargs)

    def incr(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("incr", key, *args, **kwargs)

    def decr(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        return self._keyed("decr", key, *args, **kwargs)

    def _by_node(self, keys: Iterable[Any]) -> dict[str, list[Any]]:
        batches: dict[str, list[Any]] = {}
        for key in keys:
            batches.setdefault(self._node(key), []).append(key)
        return batches

    def get_many(self, keys: Iterable[Any], gets: bool = False, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        for node, batch in self._by_node(keys).items():
            found.update(self._on(node, "gets_many" if gets else "get_many", batch, *args, **kwargs))
        return found

    get_multi = get_many

    def gets_many(self, keys: Iterable[Any], *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return self.get_many(keys, True, *args, **kwargs)

    gets_multi = gets_many

    def set_many(self, values: dict[Any, Any], *args: Any, **kwargs: Any) -> list[Any]:
        failed: list[Any] = []
        for node, batch in self._by_node(values).items():
            failed += self._on(node, "set_many", {key: values[key] for key in batch}, *args, **kwargs)
        return failed

    set_multi = set_many

    def delete_many(self, keys: Iterable[Any], *args: Any, **kwargs: Any) -> bool:
        for node, batch in self._by_node(keys).items():
            self._on(node, "delete_many", batch, *args, **kwargs)
        return True

    delete_multi = delete_many

    def close(self) -> None:
        """Close every node's connections (no network round trip, never raises for a down node).

        .. versionadded:: 0.1
        """
        for client in self.clients.values():
            client.close()

    disconnect_all = close


def drop_idle_connections(client: Any) -> None:
    """Close the idle connections of a pymemcache ``PooledClient``; connections busy in a call are left alone.

    Only the pool's public ``free``, ``get`` and ``destroy`` are used: ``get``
    hands out an idle connection first (or a new, not yet connected one when
    another thread took it meanwhile), and ``destroy`` closes it.
    """
    pool = getattr(client, "client_pool", None)
    if pool is None:
        return
    for _ in range(len(pool.free)):
        try:
            connection = pool.get()
        except RuntimeError:  # max_pool_size reached by other threads: nothing idle is left
            return
        pool.destroy(connection)


def build_client(servers: Sequence[str | tuple[str, int]], *, connect_timeout: float | None, timeout: float | None,
                 dead_timeout: float, **client_options: Any) -> MemcacheClient:
    """A pooled client for ``servers``: a ``PooledClient`` for one, a :class:`StrictHashClient` for several.

    Both with ``no_delay=True`` (pymemcache's default waits for delayed TCP
    acknowledgements, tens of milliseconds per request), confirmed writes and the
    given timeouts; ``client_options`` go to pymemcache and override them.

    :raises ConfigurationError: no servers, or a bad option.
    """
    if isinstance(servers, (str, bytes)) or not servers:
        raise ConfigurationError("servers", f"must be a non-empty list of 'host:port', got {servers!r}")
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "timeout": timeout,
        "no_delay": True,
        "default_noreply": False,
        **client_options,
    }
    if len(servers) == 1:
        if client_options.get("ignore_exc"):
            raise ConfigurationError("ignore_exc", "an outage is not a missing session")
        return PooledClient(servers[0], **options)  # type: ignore[no-any-return]
    return StrictHashClient(list(servers), dead_timeout=dead_timeout, **options)


def bound_client(client: Any, seconds: float, settings: TimeoutSettings) -> None:
    """Set ``connect_timeout`` and ``timeout`` on a pymemcache client (each node of a
    ``HashClient``, and its defaults for nodes added later) through ``settings``; an open
    plain ``Client``'s socket gets the new read timeout too."""
    nodes = list(client.clients.values()) if isinstance(client, HashClient) else [client]
    if isinstance(client, HashClient):
        settings.fill(client.default_kwargs, ("connect_timeout", "timeout"), seconds)
    for node in nodes:
        if "timeout" in settings.fill_attributes(node, ("connect_timeout", "timeout"), seconds):
            sock = getattr(node, "sock", None)
            if sock is not None:
                sock.settimeout(seconds)


def gets(client: MemcacheClient, key: str) -> tuple[Any, Any]:
    """``client.gets(key)``: the value and its CAS token, or ``(None, None)``.

    pymemcache's ``HashClient`` answers a bare ``None`` (its miss) for a node
    in its retry window instead of a pair.
    """
    reply = client.gets(key)
    return (None, None) if reply is None else reply


def translate(client: Any, exc: Exception, action: str) -> Exception | None:
    """The library error for a driver error raised while doing ``action``; ``None`` for anything else.

    A malformed command (``MemcacheClientError``) is a bug here, not an outage.
    A lost connection also closes the pool's idle ones (what
    :class:`StrictHashClient` does for each of its nodes).
    """
    if isinstance(exc, MemcacheClientError) or not isinstance(exc, (MemcacheError, OSError)):
        return None
    if isinstance(exc, (OSError, MemcacheUnexpectedCloseError)):
        drop_idle_connections(client)
    if isinstance(exc, MemcacheServerError) and not isinstance(exc, MemcacheUnexpectedCloseError):
        if "too large" in str(exc):
            return SessionDataError(
                f"memcached refused the session as too large ({exc}); set max_item_bytes to its -I size"
            )
        return StoreUnavailable(f"memcached failed to {action}: {exc}", store="memcached")
    return StoreUnavailable(f"memcached could not {action}: {type(exc).__name__}: {exc}", store="memcached")
