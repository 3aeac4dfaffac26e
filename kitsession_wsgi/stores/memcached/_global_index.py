"""The memcached store's global index: every session's storage id, in buckets that never fill up.

memcached cannot list its keys, so ``get_all`` and ``purge_expired`` read this
index.  It is split into buckets (``all:n``, by a CRC of the storage id) so that
concurrent prunes rarely contend on one ``cas`` token.  A bucket is a chain of
generations (items ``all:n``, ``all:n.1``, ``all:n.2``, ..., the newest number
counted atomically in ``all:n:top``): entries are appended to the newest one,
and when that item reaches memcached's item size the next generation is opened.
Adding an entry therefore costs one ``append`` whatever the index holds, and a
flood of sessions can neither make creation compact the index (which reads every
entry) nor push sessions out of ``get_all``.  Entries of gone sessions are
compacted by the store's readers (``get_all``, ``purge_expired``), never on
creation.

.. versionadded:: 0.3
"""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any

from ...errors import StoreUnavailable
from .._toolkit import DriverErrors
from ._client import MemcacheClient

__all__ = ["GlobalIndex", "index_entries"]

logger = logging.getLogger("kitsession_wsgi.stores.memcached")

#: appends tried (each on the newest generation known) before a creation gives up indexing
_ADD_ATTEMPTS = 8
#: at most one warning per this many seconds about sessions left out of the index
_WARNING_INTERVAL = 60.0
_CHUNK = 500


def index_entries(raw: Any) -> list[str]:
    """The storage ids in an index value (space-separated; duplicates dropped, order kept)."""
    if raw is None:
        return []
    text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
    return list(dict.fromkeys(text.split()))


def _name(key: Any) -> str:
    return key.decode("ascii") if isinstance(key, bytes) else str(key)


class GlobalIndex:
    """The bucketed, generational index of every session over a pymemcache client.

    :param client: the store's client.
    :param key_prefix: the store's key prefix.
    :param buckets: how many buckets (the store's ``index_buckets``).

    .. versionadded:: 0.3
    """

    def __init__(self, client: MemcacheClient, key_prefix: str, buckets: int) -> None:
        self.client = client
        self.bucket_keys = [f"{key_prefix}all:{n}" for n in range(buckets)]
        self.top_keys = [f"{bucket_key}:top" for bucket_key in self.bucket_keys]
        # bucket -> the newest generation this process appended to; a stale
        # number only costs one failed append before the newer one is read.
        self._generations: dict[int, int] = {}
        self._unindexed_since_warning = 0
        self._last_warning: float | None = None

    def generation_key(self, bucket: int, generation: int) -> str:
        """The item holding ``generation`` of ``bucket`` (generation 0 is the bucket's own key)."""
        bucket_key = self.bucket_keys[bucket]
        return bucket_key if generation == 0 else f"{bucket_key}.{generation}"

    def add(self, storage_id: str, errors: DriverErrors) -> None:
        """Add ``storage_id`` to its bucket's newest generation, opening a new one when it is full.

        A write that fails (the bucket's node is down) leaves the session out
        of ``get_all``: it is logged, at most once per minute with the count,
        never raised (the session itself works and expires on its TTL).
        """
        bucket = zlib.crc32(storage_id.encode("ascii")) % len(self.bucket_keys)
        entry = b" " + storage_id.encode("ascii")
        try:
            with errors:
                generation = self._generations.get(bucket)
                if generation is None:
                    generation = self._newest_generation(bucket)
                for _attempt in range(_ADD_ATTEMPTS):
                    item_key = self.generation_key(bucket, generation)
                    if (self.client.append(item_key, entry, noreply=False)
                            or self.client.add(item_key, entry, expire=0, noreply=False)):
                        self._generations[bucket] = generation
                        return
                    # Neither appended nor added: this generation is full (or was removed
                    # and re-created in between): go on in the newest one.
                    newest = self._newest_generation(bucket)
                    generation = newest if newest > generation else self._open_generation(bucket)
        except StoreUnavailable as exc:
            self._warn_unindexed(storage_id, str(exc))
            return
        self._warn_unindexed(storage_id, f"no room in {_ADD_ATTEMPTS} generations of its bucket")

    def read(self, errors: DriverErrors) -> dict[str, list[str]]:
        """Every generation item that exists, with its entries: one ``get_many`` for the
        counters, then one per 500 generation items."""
        with errors:
            newest = {_name(key): int(raw) for key, raw in self.client.get_many(self.top_keys).items()}
            item_keys = [self.generation_key(bucket, generation)
                         for bucket, top_key in enumerate(self.top_keys)
                         for generation in range(newest.get(top_key, 0) + 1)]
            entries: dict[str, list[str]] = {}
            for start in range(0, len(item_keys), _CHUNK):
                for item_key, raw in self.client.get_many(item_keys[start:start + _CHUNK]).items():
                    entries[_name(item_key)] = index_entries(raw)
        return entries

    def _newest_generation(self, bucket: int) -> int:
        raw = self.client.get(self.top_keys[bucket])
        return int(raw) if raw is not None else 0

    def _open_generation(self, bucket: int) -> int:
        """The number of a new generation for ``bucket``, counted atomically on the server."""
        top_key = self.top_keys[bucket]
        newest = self.client.incr(top_key, 1, noreply=False)
        if newest is None:
            if self.client.add(top_key, b"1", expire=0, noreply=False):
                return 1
            newest = self.client.incr(top_key, 1, noreply=False)
        return int(newest) if newest is not None else 0

    def _warn_unindexed(self, storage_id: str, reason: str) -> None:
        self._unindexed_since_warning += 1
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < _WARNING_INTERVAL:
            return
        logger.warning("%d session(s) are not in the global index (get_all will miss them), the latest %s: %s",
                       self._unindexed_since_warning, storage_id[:12], reason)
        self._unindexed_since_warning = 0
        self._last_warning = now
