"""The embedded in-process store: the default, for development and single-process apps.

.. versionadded:: 0.1
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .. import signals
from ..errors import ConfigurationError
from ._toolkit import is_int, user_index_key
from .base import SessionRecord, SessionStore, SetResult, UserId

__all__ = ["DEFAULT_MAX_SESSIONS", "EVICTION_LOG_INTERVAL", "EXPIRED", "LEAST_RECENTLY_USED", "MemoryStore"]

#: The default bound on stored sessions: enough for a development server or a
#: small single-process site, small enough that a flood of cookie-less requests
#: cannot exhaust memory (a typical session holds well under 1 KB).
DEFAULT_MAX_SESSIONS = 100_000

#: Evictions are logged at most this often (seconds), with the counts since the last line,
#: so a flood of requests cannot flood the log as well.
EVICTION_LOG_INTERVAL = 60.0

_logger = logging.getLogger("kitsession_wsgi.stores.memory")

#: ``reason`` of :data:`kitsession_wsgi.signals.evicted` for a record past its expiry
EXPIRED = "expired"
#: ``reason`` of :data:`kitsession_wsgi.signals.evicted` for the least recently used live record
LEAST_RECENTLY_USED = "least_recently_used"


class MemoryStore(SessionStore):
    """Sessions in a dict of this process, bounded, guarded by one lock.

    Records are immutable and their data is JSON text, so nothing handed out
    can change what is stored.  A per-user index makes listing and revoking a
    user's sessions cost O(that user's sessions).  Sessions live as long as the
    process: use a shared store when you run several worker processes (a warning
    is logged once per process when a request's environ says ``wsgi.multiprocess``
    or the process was forked after the store was built).

    **The bound.**  At most ``max_sessions`` records are kept (100,000 by
    default), so traffic that writes a session per request (a flash message or
    a CSRF token for every cookie-less visitor) cannot grow memory without
    limit.  Storing a new session at the bound first drops one record:

    1. an expired one, if any (the earliest expiry first), else
    2. the least recently used one, where *used* means read (``get``) or
       written (``create``, ``set``, ``touch``); listing (``get_all``,
       ``get_all_for_user``) does not count.

    "Expired" uses the core's clock as the store last saw it (the newest
    ``updated_at`` written, or ``now`` given to :meth:`purge_expired`), so a
    fake clock in tests is honoured.  Each dropped record sends
    :data:`kitsession_wsgi.signals.evicted` (sender: the store; ``handle=``,
    ``user_id=``, ``reason=`` ``"expired"`` or ``"least_recently_used"``)
    after the store's lock is released, and a warning is logged on the
    ``kitsession_wsgi.stores.memory`` logger: at the first drop, then at most
    once a minute with the counts since the last line.  A user whose session
    was dropped is signed out; size ``max_sessions`` above your live sessions.

    Costs: a read is O(1) (with a bound, a move to the recent end of an
    ``OrderedDict`` under the store's lock, about 0.1 us); a write is O(1) plus, with a bound,
    O(log n) for a write that moves a record's expiry (a heap of expiries,
    rebuilt when stale entries pile up, amortised O(1)).

    :param max_sessions: upper bound on stored records; ``None`` removes the
        bound (memory then grows with every session stored until it expires
        and is purged).
    :raises ConfigurationError: ``max_sessions`` is not a positive int or ``None``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
        Bounded by default (``max_sessions=100_000``); expired records are
        dropped first, then the least recently used; :data:`~kitsession_wsgi.signals.evicted`
        and a log line on each drop.
    """

    def __init__(self, *, max_sessions: int | None = DEFAULT_MAX_SESSIONS) -> None:
        if max_sessions is not None and (not is_int(max_sessions) or max_sessions < 1):
            raise ConfigurationError("max_sessions", f"must be a positive int or None, got {max_sessions!r}")
        self.max_sessions = max_sessions
        #: the process that built the store: a forked child that serves it holds a copy
        self.created_in_pid = os.getpid()
        self._lock = threading.RLock()  # re-entrant: a hook of a purge may read
        # Least recently used first.  get() reads without the lock and reorders under it (see get).
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()
        # The bound method, bound once: the read path is the store's hot path.
        self._mark_used: Callable[[str], None] | None = (
            None if max_sessions is None else self._records.move_to_end
        )
        self._by_user: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        # (expires_at, key) of every record, plus stale entries of records since
        # removed or moved; only kept with a bound.
        self._expiries: list[tuple[float, str]] = []
        # The newest time the core has shown us: what "expired" is measured against.
        self._now = float("-inf")
        self._evicted_expired = 0
        self._evicted_lru = 0
        self._last_log: float | None = None

    #: records live in this process only: see :attr:`SessionStore.process_local`
    process_local = True

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> SessionRecord | None:
        record = self._records.get(key)
        if record is not None and self._mark_used is not None:
            # Under the lock: reordering the dict while a writer walks it (a purge, the
            # heap's rebuild) raised "OrderedDict mutated during iteration" in a thread race.
            with self._lock:
                try:
                    self._mark_used(key)
                except KeyError:  # removed meanwhile: nothing to reorder (no second lookup per read)
                    pass
        return record

    def create(self, record: SessionRecord) -> bool:
        evicted: list[tuple[SessionRecord, str]] = []
        with self._lock:
            if record.key in self._records:
                return False
            self._saw(record.updated_at)
            if self.max_sessions is not None:
                while len(self._records) >= self.max_sessions:
                    evicted.append(self._evict_one())
            self._records[record.key] = record
            self._index(record)
            if self.max_sessions is not None:
                self._push_expiry(record)
            if evicted:
                self._note_evictions(evicted)
        for dropped, reason in evicted:
            signals.evicted.send(self, handle=dropped.key, user_id=dropped.user_id, reason=reason)
        return True

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        with self._lock:
            current = self._records.get(record.key)
            if current is None:
                return SetResult.MISSING
            if current.version != expected_version:
                return SetResult.CONFLICT
            if current.user_id != record.user_id:
                self._unindex(current)
                self._index(record)
            self._records[record.key] = record
            self._saw(record.updated_at)
            if self.max_sessions is not None:
                self._records.move_to_end(record.key)
                if record.expires_at != current.expires_at:
                    self._push_expiry(record)
            return SetResult.SAVED

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        with self._lock:
            current = self._records.get(key)
            if current is None:
                return False
            record = self._records[key] = current.with_changes(updated_at=updated_at, expires_at=expires_at)
            self._saw(updated_at)
            if self.max_sessions is not None:
                self._records.move_to_end(key)
                if expires_at != current.expires_at:
                    self._push_expiry(record)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._remove(key)

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        with self._lock:
            keys = [k for k in self._by_user.get(user_index_key(user_id), ()) if k != except_key]
            for key in keys:
                self._remove(key)
            return len(keys)

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        with self._lock:
            keys = self._by_user.get(user_index_key(user_id), ())
            return [self._records[k] for k in keys]

    def get_all(self) -> list[SessionRecord]:
        with self._lock:
            return list(self._records.values())

    def purge_expired(self, now: float) -> int:
        with self._lock:
            self._saw(now)
            expired = [k for k, r in list(self._records.items()) if r.expires_at <= now]
            for key in expired:
                self._remove(key)
            if self.max_sessions is not None:
                self._compact_expiries()
            return len(expired)

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        with self._lock:
            now = time.monotonic()
            held = self._locks.get(key)
            if held is not None and held[0] != token and held[1] > now:
                return False
            self._locks[key] = (token, now + ttl)
            return True

    def release_lock(self, key: str, token: str) -> None:
        with self._lock:
            held = self._locks.get(key)
            if held is not None and held[0] == token:
                del self._locks[key]

    # -- the bound (called with the lock held) ------------------------------------------

    def _saw(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _push_expiry(self, record: SessionRecord) -> None:
        expiries = self._expiries
        heapq.heappush(expiries, (record.expires_at, record.key))
        # Every expiry move leaves its old entry behind; rebuilding once the heap
        # holds twice the records (plus slack) keeps it O(records) in size at an
        # amortised O(1) per write.  Tested here: most writes rebuild nothing.
        if len(expiries) > 2 * len(self._records) + 1024:
            self._compact_expiries()

    def _compact_expiries(self) -> None:
        """Rebuild the expiry heap from the live records, dropping stale entries."""
        self._expiries = [(r.expires_at, k) for k, r in list(self._records.items())]
        heapq.heapify(self._expiries)

    def _evict_one(self) -> tuple[SessionRecord, str]:
        """Drop the earliest-expiring record if it has expired, else the least recently used one."""
        expiries = self._expiries
        while expiries:
            expires_at, key = expiries[0]
            current = self._records.get(key)
            if current is None or current.expires_at != expires_at:
                heapq.heappop(expiries)  # stale: the record is gone or its expiry moved
                continue
            if expires_at <= self._now:
                heapq.heappop(expiries)
                self._remove(key)
                return current, EXPIRED
            break
        key, record = self._records.popitem(last=False)
        self._unindex(record)
        return record, LEAST_RECENTLY_USED

    def _note_evictions(self, evicted: list[tuple[SessionRecord, str]]) -> None:
        for _record, reason in evicted:
            if reason == EXPIRED:
                self._evicted_expired += 1
            else:
                self._evicted_lru += 1
        now = time.monotonic()
        if self._last_log is not None and now - self._last_log < EVICTION_LOG_INTERVAL:
            return
        _logger.warning(
            "MemoryStore is full (max_sessions=%d): dropped %d expired and %d least recently used sessions"
            "%s; raise max_sessions or use a shared store if live sessions are being dropped",
            self.max_sessions,
            self._evicted_expired,
            self._evicted_lru,
            "" if self._last_log is None else f" in the last {now - self._last_log:.0f} s",
        )
        self._last_log = now
        self._evicted_expired = self._evicted_lru = 0

    # -- records and the user index -------------------------------------------------------

    def _remove(self, key: str) -> bool:
        record = self._records.pop(key, None)
        if record is None:
            return False
        self._unindex(record)
        return True

    def _index(self, record: SessionRecord) -> None:
        if record.user_id is not None:
            self._by_user.setdefault(user_index_key(record.user_id), set()).add(record.key)

    def _unindex(self, record: SessionRecord) -> None:
        if record.user_id is None:
            return
        index_key = user_index_key(record.user_id)
        keys = self._by_user.get(index_key)
        if keys is not None:
            keys.discard(record.key)
            if not keys:
                del self._by_user[index_key]
