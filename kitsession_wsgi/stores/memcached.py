"""Sessions in memcached through pymemcache: one server, or a cluster with :class:`StrictHashClient`.

(Why this module is long: memcached has no transactions or secondary indexes, so the
per-user and global indexes, the compare-and-set loops that keep them right, and a cluster
client that fails loudly for a dead node's keys instead of re-hashing them live here.)

Each session is one memcached item under ``key_prefix + key``: the whole
:class:`~kitsession_wsgi.SessionRecord` in the layout the Redis store uses (a
``K1`` header line, then user, key and the data's JSON as it is, never escaped
inside another JSON document), with the record's lifetime as the item's expiry.
Reading a session is exactly one ``get`` on the node that holds it.

What memcached is, and what that costs:

* **memcached may evict sessions.**  It is a cache: when its memory is full it
  drops the least recently used items, sessions and indexes included, with no
  error.  An evicted session is a logged-out user; an evicted per-user index
  hides that user's sessions from "sign out everywhere" until they expire.
  Give memcached enough memory that it never evicts (watch the ``evictions``
  stat), or use Redis or SQL when losing a session is not acceptable.
* **Indexes.**  memcached cannot enumerate keys, so the store keeps them:

  - a per-user index (``key_prefix + "user:" + digest``) listing that user's
    record keys, used by ``get_all_for_user`` and ``delete_all_for_user``;
  - a global index split into ``index_buckets`` buckets
    (``key_prefix + "all:" + n``), used only by ``get_all`` and
    ``purge_expired``.

  Indexes carry no expiry (memcached may still evict them); an emptied index
  is removed.  Entries are added with ``append`` (atomic on the server, so concurrent
  logins never drop one another's entry; ``add`` creates a missing index) and
  removed with ``gets``/``cas`` retries.  Entries whose record is gone
  (deleted, expired or evicted) are pruned when an index is read; ``delete``
  removes the per-user entry at once and leaves the global one to that
  pruning.  Creating a session costs the record's ``add`` plus one append
  (two for a session with a user); the global index is sharded so that
  concurrent prunes rarely contend on one ``cas`` token.
  A global-index write that fails is logged, not raised: the session still
  works and still expires on its memcached TTL, it is only missing from
  ``get_all``.  memcached expires items on its own, so ``purge_expired`` is
  only housekeeping: it compacts the global index and removes records the
  application's clock considers expired before their TTL.
* **Item size.**  memcached refuses items above its item size (``-I``, 1 MB by
  default); the store checks ``max_item_bytes`` before writing and raises
  :class:`~kitsession_wsgi.SessionDataError`.
* **Clusters.**  pymemcache's own ``HashClient`` answers a miss for a failing
  node and, after ``retry_attempts`` failures, moves that node's keys to the
  other nodes: both log users out silently.  :class:`StrictHashClient` (what
  :meth:`MemcachedStore.from_servers` builds) raises for the keys of a failing
  node instead, keeps serving the other nodes, and uses the node again once
  it answers (it fails fast for ``dead_timeout`` seconds in between).  The
  per-user index of a user lives on one node: while that node is down, new
  logins and "sign out everywhere" for that user raise
  :class:`~kitsession_wsgi.StoreUnavailable`, but reading existing sessions on
  healthy nodes keeps working.

**Why plain pymemcache.**  Up to 0.1 this module held its own connection pool
(``MemcachedPool``: a lock-free idle list) and a hand-written ``get``/``gets``
reply parser reading a session straight off the socket, about 340 lines with
their tests, to skip pymemcache's ``PooledClient`` lock and general reader.
``benchmarks/explore_memcached_pool.py`` measured what they saved: KitSession
in Flask over one memcached on loopback, each variant interleaved with the
others in one process (500 rounds of 20 requests, medians of the differences
paired within a round; 2 cores shared with other work).  In the quietest run
(load average 2.6) a read request cost 165 us with them and 180 us with
``PooledClient``: they saved **12 us, 7% of a read request** (13 us, 10% of
its CPU time), a write 11-12 us (6%); the pool and the parser about half
each.  In runs at a load of 6-7 they saved 17-24 us, 6-10% of a read (10-13%
of its CPU); at 9-12 the CPU saving was 17-19 us (11-14%) and the wall-time
differences too noisy to rank.  That is at or below the ~10% of a read that
would pay for a second connection pool and a protocol parser kept in step
with memcached, so they were removed (afterwards ``from_servers`` and a
hand-built ``PooledClient`` measure the same, within 1.5 us): one server is a pymemcache ``PooledClient``, a cluster a
:class:`StrictHashClient` of ``PooledClient`` nodes, and the module uses only
pymemcache's public API (no private method is overridden, so the dependency
needs no upper pin).

Writes are always confirmed (``noreply=False``), and a client created with
``ignore_exc=True`` is refused: an outage must never look like a missing session.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import sys
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import Any, Protocol

from ..errors import ConfigurationError, SessionDataError, StoreUnavailable
from ._format import decode_record, encode_record
from ._format import storage_id as _storage_id
from .base import SessionRecord, SessionStore, SetResult, UserId, put_bounded, user_index_key

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

__all__ = ["MemcacheClient", "MemcachedNodeDown", "MemcachedStore", "StrictHashClient"]

logger = logging.getLogger("kitsession_wsgi.stores.memcached")

#: memcached reads an expiry above 30 days as an absolute Unix time
_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 60 * 60
_PREFIX = re.compile(r"[!-~]{0,100}")
#: memcached's per-item bookkeeping besides key and value (header, flags, CAS, suffix)
_ITEM_OVERHEAD = 128
_CAS_ATTEMPTS = 100
#: recent reads whose CAS token is kept for the following save, and the largest item kept
_REMEMBERED_READS = 256
_REMEMBERED_ITEM_BYTES = 64 * 1024
_INDEX_ADD_ATTEMPTS = 4
_CHUNK = 500


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
        if isinstance(dead_timeout, bool) or not isinstance(dead_timeout, (int, float)) or dead_timeout < 0:
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
        _drop_idle_connections(self.clients[node])

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


def _drop_idle_connections(client: Any) -> None:
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


def _same_user(a: UserId | None, b: UserId | None) -> bool:
    return a == b and type(a) is type(b)


def _entries(raw: Any) -> list[str]:
    """The storage ids in an index value (space-separated; duplicates dropped, order kept)."""
    if raw is None:
        return []
    text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
    return list(dict.fromkeys(text.split()))


class MemcachedStore(SessionStore):
    """Sessions in memcached, through any pymemcache client.

    See the module documentation for eviction, the indexes and cluster
    behaviour.  Build one with :meth:`from_servers`, or pass a client you
    configured yourself: then use ``no_delay=True`` (pymemcache's default
    waits for delayed TCP acknowledgements, tens of milliseconds per request),
    a thread-safe client (pymemcache's ``PooledClient`` or
    :class:`StrictHashClient`) and timeouts.

    :param client: a pymemcache client; the store never closes it unless
        :meth:`close` is called.
    :param key_prefix: put before every memcached key (printable ASCII, no
        spaces, at most 100 characters).
    :param max_item_bytes: memcached's item size limit (its ``-I`` option);
        a record that would not fit raises
        :class:`~kitsession_wsgi.SessionDataError` before anything is written.
    :param index_buckets: how many items the global index is split into.
    :raises ConfigurationError: a bad option, or a client with ``ignore_exc=True``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        client: MemcacheClient,
        *,
        key_prefix: str = "kitsession:",
        max_item_bytes: int = 1024 * 1024,
        index_buckets: int = 16,
    ) -> None:
        if not isinstance(key_prefix, str) or not _PREFIX.fullmatch(key_prefix):
            raise ConfigurationError(
                "key_prefix", f"must be printable ASCII without spaces, at most 100 characters, got {key_prefix!r}"
            )
        for option, number, low, high in (
            ("max_item_bytes", max_item_bytes, 1024, 1 << 30),
            ("index_buckets", index_buckets, 1, 1024),
        ):
            if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
                raise ConfigurationError(option, f"must be an int from {low} to {high}, got {number!r}")
        if getattr(client, "ignore_exc", False) is True:
            raise ConfigurationError(
                "client", "a pymemcache client with ignore_exc=True turns an outage into a missing session"
            )
        if isinstance(client, HashClient) and not isinstance(client, StrictHashClient):
            warnings.warn(
                "pymemcache's HashClient answers a miss for a failing node and moves its keys to other "
                "nodes, which logs users out silently; use MemcachedStore.from_servers() or StrictHashClient",
                RuntimeWarning,
                stacklevel=2,
            )
        self.client = client
        self.key_prefix = key_prefix
        self.max_item_bytes = max_item_bytes
        self.index_buckets = index_buckets
        self._bucket_keys = [f"{key_prefix}all:{n}" for n in range(index_buckets)]
        # item key -> (record, CAS token) of recent reads, so the save or touch that
        # usually follows a read is one cas instead of gets + cas (see _remembered).
        self._read_tokens: dict[str, tuple[SessionRecord, Any]] = {}

    @classmethod
    def from_servers(
        cls,
        servers: Sequence[str | tuple[str, int]],
        *,
        key_prefix: str = "kitsession:",
        max_item_bytes: int = 1024 * 1024,
        index_buckets: int = 16,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        dead_timeout: float = 1.0,
        **client_options: Any,
    ) -> MemcachedStore:
        """A store over ``servers`` (``"host:port"`` or ``(host, port)``) with safe client settings.

        One server gives a pymemcache ``PooledClient``, several a
        :class:`StrictHashClient` with a ``PooledClient`` per node; all
        with ``no_delay=True``, confirmed writes and the given timeouts
        (seconds).  ``dead_timeout`` is how long a failed cluster node fails
        fast before it is tried again.  Other keyword arguments go to
        pymemcache's ``PooledClient`` (``max_pool_size``,
        ``pool_idle_timeout``, ``tls_context``, ``socket_keepalive``, ...).
        A connection that fails is closed together with the pool's idle ones
        (after a server restart each of them would fail once more).

        :raises ConfigurationError: no servers, or a bad option.

        .. versionadded:: 0.1
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
        client: MemcacheClient
        if len(servers) == 1:
            if client_options.get("ignore_exc"):
                raise ConfigurationError("ignore_exc", "an outage is not a missing session")
            client = PooledClient(servers[0], **options)
        else:
            client = StrictHashClient(list(servers), dead_timeout=dead_timeout, **options)
        return cls(client, key_prefix=key_prefix, max_item_bytes=max_item_bytes, index_buckets=index_buckets)

    # -- keys and values --------------------------------------------------------------

    def _record_key(self, storage_id: str) -> str:
        return self.key_prefix + storage_id

    def _user_key(self, user_id: UserId) -> str:
        digest = hashlib.sha256(user_index_key(user_id).encode("utf-8", "surrogatepass")).digest()
        return f"{self.key_prefix}user:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def _bucket_key(self, storage_id: str) -> str:
        return self._bucket_keys[zlib.crc32(storage_id.encode("ascii")) % self.index_buckets]

    def _value(self, record: SessionRecord, item_key: str) -> bytes:
        value = encode_record(record)
        size = len(value) + len(item_key) + _ITEM_OVERHEAD
        if size > self.max_item_bytes:
            raise SessionDataError(
                f"the session record is {size} bytes in memcached, more than max_item_bytes="
                f"{self.max_item_bytes} (memcached's item size, its -I option): store less in the session"
            )
        return value

    @staticmethod
    def _expire(ttl: int) -> int:
        # memcached reads anything above 30 days as an absolute Unix time.
        return ttl if ttl <= _RELATIVE_EXPIRY_LIMIT else int(time.time()) + ttl

    def _unavailable(self, exc: BaseException, action: str) -> Exception:
        """The library error for a driver error raised while doing ``action``.

        A lost connection also closes the pool's idle ones (what
        :class:`StrictHashClient` does for each of its nodes).
        """
        if isinstance(exc, (OSError, MemcacheUnexpectedCloseError)):
            _drop_idle_connections(self.client)
        if isinstance(exc, MemcacheServerError) and not isinstance(exc, MemcacheUnexpectedCloseError):
            if "too large" in str(exc):
                return SessionDataError(
                    f"memcached refused the session as too large ({exc}); set max_item_bytes to its -I size"
                )
            return StoreUnavailable(f"memcached failed to {action}: {exc}", store="memcached")
        return StoreUnavailable(f"memcached could not {action}: {type(exc).__name__}: {exc}", store="memcached")

    @contextmanager
    def _driver_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except MemcacheClientError:
            raise  # a malformed command is a bug here, not an outage
        except (MemcacheError, OSError) as exc:
            raise self._unavailable(exc, action) from exc

    def _gets(self, key: str) -> tuple[Any, Any]:
        """``client.gets(key)``: the value and its CAS token, or ``(None, None)``.

        pymemcache's ``HashClient`` answers a bare ``None`` (its miss) for a node
        in its retry window instead of a pair.
        """
        reply = self.client.gets(key)
        return (None, None) if reply is None else reply

    # -- records ----------------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key`` with one ``get`` on its node, or ``None``.

        :raises StoreUnavailable: that node cannot be reached.

        .. versionadded:: 0.1
        """
        item_key = self.key_prefix + _storage_id(key)
        try:
            raw, token = self._gets(item_key)
        except MemcacheClientError:
            raise
        except (MemcacheError, OSError) as exc:
            raise self._unavailable(exc, "read a session") from exc
        if raw is None:
            return None
        record = decode_record(raw)
        if record is None or record.key != key:
            if record is None:
                logger.error("unreadable session item in memcached ignored (%d bytes)", len(raw))
            return None
        if token is not None and len(raw) <= _REMEMBERED_ITEM_BYTES:
            put_bounded(self._read_tokens, item_key, (record, token), _REMEMBERED_READS)
        return record

    def _cas_states(self, item_key: str, key: str, version: int | None = None
                    ) -> Iterator[tuple[SessionRecord | None, Any]]:
        """The record and CAS token each attempt of a ``gets``/``cas`` loop works on, ``_CAS_ATTEMPTS`` in all.

        The first is the read that loaded this session when it is remembered
        (so a save after a read is a lone ``cas``), the others fresh ``gets``.
        """
        remembered = self._remembered(item_key, key, version)
        for attempt in range(_CAS_ATTEMPTS):
            if attempt == 0 and remembered is not None:
                yield remembered
            else:
                raw, token = self._gets(item_key)
                yield decode_record(raw), token

    def _remembered(self, item_key: str, key: str, version: int | None = None) -> tuple[SessionRecord, Any] | None:
        """The record and CAS token a recent :meth:`get` read for ``item_key``, taken out of the cache.

        ``None`` when there is none, or it is for another version than the one
        the caller expects (another request's read).  A token is only ever
        used with ``cas``, which fails if the item changed since that read.
        """
        entry = self._read_tokens.pop(item_key, None)
        if entry is None or entry[0].key != key or (version is not None and entry[0].version != version):
            return None
        return entry

    def create(self, record: SessionRecord) -> bool:
        """Insert with ``add``; index the record for its user and in the global index.

        :raises SessionDataError: the record exceeds ``max_item_bytes``.
        :raises StoreUnavailable: the record's node or its user's index node is down.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        item_key = self._record_key(storage_id)
        value = self._value(record, item_key)
        with self._driver_errors("create a session"):
            if not self.client.add(item_key, value, expire=self._expire(record.ttl()), noreply=False):
                return False
        if record.user_id is not None:
            try:
                self._index_add(self._user_key(record.user_id), storage_id)
            except StoreUnavailable:
                # An unindexed session would survive "sign out everywhere": take it back.
                with self._driver_errors("remove an unindexed session"):
                    self.client.delete(item_key, noreply=False)
                raise
        self._global_add(storage_id)
        return True

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record with ``gets``/``cas`` if its stored version is ``expected_version``.

        :raises SessionDataError: the record exceeds ``max_item_bytes`` (nothing written).
        :raises StoreUnavailable: memcached cannot be reached.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        item_key = self._record_key(storage_id)
        value = self._value(record, item_key)
        expire = self._expire(record.ttl())
        indexed_for_new_user = False
        current: SessionRecord | None = None
        with self._driver_errors("save a session"):
            for current, token in self._cas_states(item_key, record.key, expected_version):
                if current is None or current.key != record.key:
                    return SetResult.MISSING
                if current.version != expected_version:
                    return SetResult.CONFLICT
                if (record.user_id is not None and not indexed_for_new_user
                        and not _same_user(current.user_id, record.user_id)):
                    # Index before the record names its new user, so the record
                    # is never owned by a user whose index lacks it.
                    self._index_add(self._user_key(record.user_id), storage_id)
                    indexed_for_new_user = True
                stored = self.client.cas(item_key, value, token, expire=expire, noreply=False)
                if stored is None:
                    return SetResult.MISSING
                if stored:
                    break
                # EXISTS: a touch or a save came in between; re-read and re-check the version.
            else:
                return SetResult.CONFLICT
        if current.user_id is not None and not _same_user(current.user_id, record.user_id):
            self._index_remove_quietly(self._user_key(current.user_id), {storage_id})
        return SetResult.SAVED

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move ``updated_at``, ``expires_at`` and the item's expiry with ``gets``/``cas``.

        :raises StoreUnavailable: memcached cannot be reached.

        .. versionadded:: 0.1
        """
        item_key = self._record_key(_storage_id(key))
        with self._driver_errors("touch a session"):
            for current, token in self._cas_states(item_key, key):
                if current is None or current.key != key:
                    return False
                moved = current.with_changes(updated_at=updated_at, expires_at=expires_at)
                stored = self.client.cas(
                    item_key, encode_record(moved), token, expire=self._expire(moved.ttl()), noreply=False
                )
                if stored is None:
                    return False
                if stored:
                    return True
        # Saved by others on every attempt: the record exists and carries their expiry.
        return True

    def delete(self, key: str) -> bool:
        """Delete the record and its per-user index entry; ``True`` when it existed.

        :raises StoreUnavailable: memcached cannot be reached.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(key)
        item_key = self._record_key(storage_id)
        self._read_tokens.pop(item_key, None)
        with self._driver_errors("delete a session"):
            raw = self.client.get(item_key)
            if raw is None:
                return False
            removed = bool(self.client.delete(item_key, noreply=False))
        current = decode_record(raw)
        if removed and current is not None and current.user_id is not None:
            self._index_remove_quietly(self._user_key(current.user_id), {storage_id})
        return removed

    # -- per user ---------------------------------------------------------------------

    def _records(self, storage_ids: Iterable[str]) -> dict[str, SessionRecord]:
        """The live records of ``storage_ids`` (a ``get_many`` per chunk), by storage id."""
        found: dict[str, SessionRecord] = {}
        ids = list(storage_ids)
        prefix_length = len(self.key_prefix)
        with self._driver_errors("read sessions"):
            for start in range(0, len(ids), _CHUNK):
                chunk = [self.key_prefix + i for i in ids[start:start + _CHUNK]]
                for item_key, raw in self.client.get_many(chunk).items():
                    record = decode_record(raw)
                    if record is not None:
                        name = item_key.decode("ascii") if isinstance(item_key, bytes) else str(item_key)
                        found[name[prefix_length:]] = record
        return found

    def _user_records(self, user_id: UserId) -> tuple[str, list[str], dict[str, SessionRecord]]:
        index_key = self._user_key(user_id)
        with self._driver_errors("read a user's session index"):
            entries = _entries(self.client.get(index_key))
        records = self._records(entries)
        gone = {i for i in entries if i not in records}
        if gone:
            self._index_remove_quietly(index_key, gone)
        return index_key, entries, records

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records, from the per-user index (entries of vanished records are pruned).

        :raises StoreUnavailable: the index's node or a record's node is down.

        .. versionadded:: 0.1
        """
        _index_key, entries, records = self._user_records(user_id)
        return [records[i] for i in entries if i in records and _same_user(records[i].user_id, user_id)]

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Delete every record of the user but ``except_key``; return how many were removed.

        Records that another node holds and that cannot be reached make it
        raise after the reachable ones are deleted; their index entries stay,
        so a retry finishes the job.

        :raises StoreUnavailable: the index's node or a record's node is down.

        .. versionadded:: 0.1
        """
        kept = _storage_id(except_key) if except_key is not None else None
        index_key, entries, records = self._user_records(user_id)
        removed = 0
        done: set[str] = set()
        failed: list[StoreUnavailable] = []
        for storage_id in entries:
            if storage_id == kept:
                continue
            record = records.get(storage_id)
            if record is not None and _same_user(record.user_id, user_id):
                try:
                    with self._driver_errors("delete a session"):
                        removed += bool(self.client.delete(self._record_key(storage_id), noreply=False))
                except StoreUnavailable as exc:
                    failed.append(exc)
                    continue
            done.add(storage_id)
        self._index_remove_quietly(index_key, done)
        if failed:
            raise StoreUnavailable(
                f"{len(failed)} of the user's sessions could not be removed: {failed[0]}", store="memcached"
            ) from failed[0].__cause__
        return removed

    # -- everything -------------------------------------------------------------------

    def _all_records(self) -> tuple[dict[str, list[str]], dict[str, SessionRecord]]:
        with self._driver_errors("read the session index"):
            buckets = self.client.get_many(self._bucket_keys)
        entries: dict[str, list[str]] = {}
        for bucket, raw in buckets.items():
            name = bucket.decode("ascii") if isinstance(bucket, bytes) else str(bucket)
            entries[name] = _entries(raw)
        records = self._records(i for ids in entries.values() for i in ids)
        for bucket_key, ids in entries.items():
            gone = {i for i in ids if i not in records}
            if gone:
                self._index_remove_quietly(bucket_key, gone)
        return entries, records

    def get_all(self) -> list[SessionRecord]:
        """Every record in the global index (see the module notes on what it can miss).

        :raises StoreUnavailable: a node is down.

        .. versionadded:: 0.1
        """
        return list(self._all_records()[1].values())

    def purge_expired(self, now: float) -> int:
        """Delete records with ``expires_at <= now`` and compact the indexes; return how many.

        :raises StoreUnavailable: a node is down.

        .. versionadded:: 0.1
        """
        _entries_by_bucket, records = self._all_records()
        removed = 0
        purged: set[str] = set()
        for storage_id, record in records.items():
            if record.expires_at > now:
                continue
            with self._driver_errors("delete an expired session"):
                if self.client.delete(self._record_key(storage_id), noreply=False):
                    removed += 1
            purged.add(storage_id)
            if record.user_id is not None:
                self._index_remove_quietly(self._user_key(record.user_id), {storage_id})
        for storage_id in purged:
            self._index_remove_quietly(self._bucket_key(storage_id), {storage_id})
        return removed

    # -- locks ------------------------------------------------------------------------

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock with ``add`` (insert-only) and an expiry of ``ceil(ttl)`` seconds.

        .. versionadded:: 0.1
        """
        lock_key = f"{self.key_prefix}lock:{_storage_id(key)}"
        with self._driver_errors("take a session lock"):
            return bool(
                self.client.add(lock_key, token.encode("utf-8", "surrogatepass"), expire=max(1, math.ceil(ttl)), noreply=False)
            )

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock if ``token`` holds it: ``gets``, compare, then expire it with ``cas``.

        The ``cas`` makes the release a no-op when the lock expired and was
        taken by someone else in between.

        .. versionadded:: 0.1
        """
        lock_key = f"{self.key_prefix}lock:{_storage_id(key)}"
        with self._driver_errors("release a session lock"):
            raw, cas_token = self._gets(lock_key)
            if raw is not None and raw == token.encode("utf-8", "surrogatepass"):
                # A negative expiry expires the item at once: a delete guarded by cas.
                self.client.cas(lock_key, b"", cas_token, expire=-1, noreply=False)

    def close(self) -> None:
        """Close the client's connections.

        .. versionadded:: 0.1
        """
        self.client.close()

    # -- indexes ----------------------------------------------------------------------

    def _index_add(self, index_key: str, storage_id: str) -> None:
        entry = b" " + storage_id.encode("ascii")
        with self._driver_errors("update a session index"):
            for attempt in range(_INDEX_ADD_ATTEMPTS):
                if self.client.append(index_key, entry, noreply=False):
                    return
                if self.client.add(index_key, entry, expire=0, noreply=False):
                    return
                # Neither appended nor added: the index was removed in between
                # (retry), or it reached the item size (compact it, then retry).
                if attempt == 0:
                    self._compact(index_key)
        raise StoreUnavailable(
            f"the session index {index_key} is full (memcached's item size): too many live sessions for it",
            store="memcached",
        )

    def _compact(self, index_key: str) -> None:
        with self._driver_errors("read a session index"):
            entries = _entries(self.client.get(index_key))
        records = self._records(entries)
        self._index_remove(index_key, {i for i in entries if i not in records})

    def _global_add(self, storage_id: str) -> None:
        try:
            self._index_add(self._bucket_key(storage_id), storage_id)
        except StoreUnavailable as exc:
            logger.warning("session %s is not in the global index (get_all will miss it): %s",
                           storage_id[:12], exc)

    def _index_remove(self, index_key: str, storage_ids: AbstractSet[str]) -> None:
        if not storage_ids:
            return
        with self._driver_errors("update a session index"):
            for _attempt in range(_CAS_ATTEMPTS):
                raw, token = self._gets(index_key)
                if raw is None:
                    return
                entries = _entries(raw)
                kept = [i for i in entries if i not in storage_ids]
                if len(kept) == len(entries):
                    return
                value = "".join(" " + i for i in kept).encode("ascii")
                # An emptied index is expired at once (negative expiry), still guarded by cas.
                stored = self.client.cas(index_key, value, token, expire=0 if kept else -1, noreply=False)
                if stored is None or stored:
                    return
        logger.warning("gave up removing %d entries from %s under contention", len(storage_ids), index_key)

    def _index_remove_quietly(self, index_key: str, storage_ids: AbstractSet[str]) -> None:
        """Remove index entries; a failure only leaves stale entries, which readers prune."""
        try:
            self._index_remove(index_key, storage_ids)
        except StoreUnavailable as exc:
            logger.warning("could not prune %s (stale entries stay until the next read): %s", index_key, exc)

