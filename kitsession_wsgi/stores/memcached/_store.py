"""The memcached store: records, the per-user and global indexes, and locks over a pymemcache client.

memcached has no transactions and no secondary indexes, so the store keeps its
indexes itself, with ``append`` (atomic on the server) to add an entry and
``gets``/``cas`` retries to remove one; see the package notes for what that costs.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from ...errors import ConfigurationError, SessionDataError, StoreUnavailable
from .._format import decode_record, encode_record
from .._format import storage_id as _storage_id
from .._toolkit import DriverErrors, RecentReads, is_int, same_user, user_index_key
from ..base import SessionRecord, SessionStore, SetResult, UserId
from .._timeouts import DEFAULT_STORE_TIMEOUT, settings_of
from ._client import HashClient, MemcacheClient, StrictHashClient, bound_client, build_client, gets, translate
from ._global_index import GlobalIndex, index_entries

__all__ = ["MemcachedStore"]

logger = logging.getLogger("kitsession_wsgi.stores.memcached")

#: memcached reads an expiry above 30 days as an absolute Unix time
_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 60 * 60
#: the latest absolute expiry memcached keeps: it reads the time as a signed 32-bit number, and an
#: item sent with a later one (past January 2038) is stored and never returned
_LATEST_EXPIRY = 2**31 - 1
_PREFIX = re.compile(r"[!-~]{0,100}")
#: memcached's per-item bookkeeping besides key and value (header, flags, CAS, suffix)
_ITEM_OVERHEAD = 128
_CAS_ATTEMPTS = 100
#: recent reads whose CAS token is kept for the following save, and the largest item kept
_REMEMBERED_READS = 256
_REMEMBERED_ITEM_BYTES = 64 * 1024
_INDEX_ADD_ATTEMPTS = 4
_CHUNK = 500


class MemcachedStore(SessionStore):
    """Sessions in memcached, through any pymemcache client.

    See :mod:`kitsession_wsgi.stores.memcached` for eviction, the indexes and cluster
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
            if not is_int(number) or not low <= number <= high:
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
        self._global_index = GlobalIndex(client, key_prefix, index_buckets)
        # item key -> (record, CAS token) of recent reads, so the save or touch that
        # usually follows a read is one cas instead of gets + cas (see _remembered).
        self._read_tokens: RecentReads[tuple[SessionRecord, Any]] = RecentReads(_REMEMBERED_READS,
                                                                                 _REMEMBERED_ITEM_BYTES)

    @classmethod
    def from_servers(
        cls,
        servers: Sequence[str | tuple[str, int]],
        *,
        key_prefix: str = "kitsession:",
        max_item_bytes: int = 1024 * 1024,
        index_buckets: int = 16,
        connect_timeout: float | None = None,
        timeout: float | None = None,
        dead_timeout: float = 1.0,
        **client_options: Any,
    ) -> MemcachedStore:
        """A store over ``servers`` (``"host:port"`` or ``(host, port)``) with safe client settings.

        One server gives a pymemcache ``PooledClient``, several a
        :class:`StrictHashClient` with a ``PooledClient`` per node; all
        with ``no_delay=True``, confirmed writes and the given timeouts
        (seconds; by default the manager's ``store_timeout``, see :meth:`apply_timeout`).  ``dead_timeout`` is how long a failed cluster node fails
        fast before it is tried again.  Other keyword arguments go to
        pymemcache's ``PooledClient`` (``max_pool_size``,
        ``pool_idle_timeout``, ``tls_context``, ``socket_keepalive``, ...).
        A connection that fails is closed together with the pool's idle ones
        (after a server restart each of them would fail once more).

        :raises ConfigurationError: no servers, or a bad option.

        .. versionadded:: 0.1
        """
        client = build_client(servers, connect_timeout=connect_timeout, timeout=timeout, dead_timeout=dead_timeout,
                              **client_options)
        store = cls(client, key_prefix=key_prefix, max_item_bytes=max_item_bytes, index_buckets=index_buckets)
        store.apply_timeout(DEFAULT_STORE_TIMEOUT)
        return store

    def apply_timeout(self, seconds: float) -> None:
        """Bound connects and reads by ``seconds`` (pymemcache's ``connect_timeout`` and ``timeout``).

        Set on the client (each node of a ``HashClient``, and its defaults for nodes added
        later) where it has none, or a longer one; a shorter one is kept.  Connections
        opened from now on get it, and an open plain ``Client``'s socket too.

        .. versionadded:: 0.3
        """
        bound_client(self.client, seconds, settings_of(self))

    @property
    def partial_outages(self) -> bool:
        """Whether one node can fail while the others serve (a cluster client): then no
        store-wide outage backoff; the client's ``dead_timeout`` skips the failed node."""
        return isinstance(self.client, HashClient)

    # -- keys and values --------------------------------------------------------------

    def _record_key(self, storage_id: str) -> str:
        return self.key_prefix + storage_id

    def _user_key(self, user_id: UserId) -> str:
        digest = hashlib.sha256(user_index_key(user_id).encode("utf-8", "surrogatepass")).digest()
        return f"{self.key_prefix}user:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

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
        """The item expiry memcached should get for a record living ``ttl`` more seconds.

        memcached reads anything above 30 days as an absolute Unix time, and
        nothing past 2038: a longer lifetime keeps the item until then, while
        the record's own ``expires_at`` still ends the session on time.
        """
        return ttl if ttl <= _RELATIVE_EXPIRY_LIMIT else min(int(time.time()) + ttl, _LATEST_EXPIRY)

    def _driver_errors(self, action: str) -> DriverErrors:
        """Outages inside become :class:`~kitsession_wsgi.StoreUnavailable` naming ``action``."""
        return DriverErrors(self._translate, action)

    def _translate(self, exc: Exception, action: str) -> Exception | None:
        return translate(self.client, exc, action)

    # -- records ----------------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key`` with one ``get`` on its node, or ``None``.

        :raises StoreUnavailable: that node cannot be reached.

        .. versionadded:: 0.1
        """
        item_key = self.key_prefix + _storage_id(key)
        with self._driver_errors("read a session"):
            raw, token = gets(self.client, item_key)
        if raw is None:
            return None
        record = decode_record(raw)
        if record is None or record.key != key:
            if record is None:
                logger.error("unreadable session item in memcached ignored (%d bytes)", len(raw))
            return None
        if token is not None:
            self._read_tokens.remember(item_key, (record, token), len(raw))
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
                raw, token = gets(self.client, item_key)
                yield decode_record(raw), token

    def _remembered(self, item_key: str, key: str, version: int | None = None) -> tuple[SessionRecord, Any] | None:
        """The record and CAS token a recent :meth:`get` read for ``item_key``, taken out of the cache.

        ``None`` when there is none, or it is for another version than the one
        the caller expects (another request's read).  A token is only ever
        used with ``cas``, which fails if the item changed since that read.
        """
        entry = self._read_tokens.take(item_key)
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
                        and not same_user(current.user_id, record.user_id)):
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
        if current.user_id is not None and not same_user(current.user_id, record.user_id):
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
        self._read_tokens.take(item_key)
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
            entries = index_entries(self.client.get(index_key))
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
        return [records[i] for i in entries if i in records and same_user(records[i].user_id, user_id)]

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
            if record is not None and same_user(record.user_id, user_id):
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
        """Every generation of every global-index bucket (item key -> its entries), and their live records."""
        entries = self._global_index.read(self._driver_errors("read the session index"))
        records = self._records(i for ids in entries.values() for i in ids)
        for item_key, ids in entries.items():
            gone = {i for i in ids if i not in records}
            if gone:
                self._index_remove_quietly(item_key, gone)
        return entries, records

    def get_all(self) -> list[SessionRecord]:
        """Every record in the global index (see :mod:`kitsession_wsgi.stores.memcached` on what it can miss).

        :raises StoreUnavailable: a node is down.

        .. versionadded:: 0.1
        """
        return list(self._all_records()[1].values())

    def purge_expired(self, now: float) -> int:
        """Delete records with ``expires_at <= now`` and compact the indexes; return how many.

        :raises StoreUnavailable: a node is down.

        .. versionadded:: 0.1
        """
        entries_by_item, records = self._all_records()
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
        for item_key, ids in entries_by_item.items():
            self._index_remove_quietly(item_key, purged.intersection(ids))
        return removed

    # -- locks ------------------------------------------------------------------------

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock with ``add`` (insert-only) and an expiry of ``ceil(ttl)`` seconds.

        .. versionadded:: 0.1
        """
        lock_key = f"{self.key_prefix}lock:{_storage_id(key)}"
        with self._driver_errors("take a session lock"):
            return bool(
                self.client.add(lock_key, token.encode("utf-8", "surrogatepass"), expire=max(1, math.ceil(ttl)),
                                noreply=False)
            )

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock if ``token`` holds it: ``gets``, compare, then expire it with ``cas``.

        The ``cas`` makes the release a no-op when the lock expired and was
        taken by someone else in between.

        .. versionadded:: 0.1
        """
        lock_key = f"{self.key_prefix}lock:{_storage_id(key)}"
        with self._driver_errors("release a session lock"):
            raw, cas_token = gets(self.client, lock_key)
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
            entries = index_entries(self.client.get(index_key))
        records = self._records(entries)
        self._index_remove(index_key, {i for i in entries if i not in records})

    def _global_add(self, storage_id: str) -> None:
        self._global_index.add(storage_id, self._driver_errors("update the session index"))

    def _index_remove(self, index_key: str, storage_ids: AbstractSet[str]) -> None:
        if not storage_ids:
            return
        with self._driver_errors("update a session index"):
            for _attempt in range(_CAS_ATTEMPTS):
                raw, token = gets(self.client, index_key)
                if raw is None:
                    return
                entries = index_entries(raw)
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

