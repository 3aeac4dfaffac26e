"""The embedded in-process store: the default, for development and single-process apps.

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
import time

from ..errors import ConfigurationError
from .base import SessionRecord, SessionStore, SetResult, UserId, user_index_key


class MemoryStore(SessionStore):
    """Sessions in a dict of this process, guarded by one lock.

    Records are immutable and their data is JSON text, so nothing handed out
    can change what is stored.  A per-user index makes listing and revoking a
    user's sessions cost O(that user's sessions).  Sessions live as long as the
    process: use a shared store when you run several worker processes.

    :param max_sessions: upper bound on stored sessions.  When a new session
        would exceed it, the oldest-created session is evicted, so anonymous
        traffic cannot exhaust memory.  ``None`` means no bound.
    :raises ConfigurationError: ``max_sessions`` is not a positive int.

    .. versionadded:: 0.1
    """

    def __init__(self, *, max_sessions: int | None = None) -> None:
        if max_sessions is not None and (
            isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1
        ):
            raise ConfigurationError("max_sessions", "must be a positive int or None")
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._records: dict[str, SessionRecord] = {}
        self._by_user: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> SessionRecord | None:
        return self._records.get(key)

    def create(self, record: SessionRecord) -> bool:
        with self._lock:
            if record.key in self._records:
                return False
            if self.max_sessions is not None and len(self._records) >= self.max_sessions:
                self._remove(next(iter(self._records)))
            self._records[record.key] = record
            self._index(record)
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
            return SetResult.SAVED

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        with self._lock:
            current = self._records.get(key)
            if current is None:
                return False
            self._records[key] = current.with_changes(updated_at=updated_at, expires_at=expires_at)
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
            expired = [k for k, r in self._records.items() if r.expires_at <= now]
            for key in expired:
                self._remove(key)
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
