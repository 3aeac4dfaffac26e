"""One Redis (standalone or Sentinel): every write is one atomic Lua script.

Create, versioned save, touch and delete are Lua scripts (one round trip each,
atomic with the per-user SET; redis-py's ``register_script`` re-loads them
after a server restart).  "Sign out everywhere" runs in batches of at most
``BATCH`` members per script, so a user with many sessions never blocks Redis
for one long script (20,000 sessions in one script blocked it about 80 ms); so
does pruning a user's SET of members whose record is gone; "sign out everywhere"
repeats until the user's SET holds nothing but the kept session, a check made
inside the last script, so it ends at a moment when the user had no other
session.  ``get_all`` and ``purge_expired`` use ``SCAN``; Redis drops expired
records itself, so ``purge_expired`` only removes records the application's
clock considers expired before their TTL and prunes the per-user SETs.  The
scripts build the per-user SET key from the record, which only one Redis allows.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from .._format import encode_record, storage_id, to_text
from .._toolkit import user_tag
from ..base import SessionRecord, SetResult, UserId
from . import _scripts
from ._base import BATCH, RedisBase

__all__ = ["StandaloneLayout"]


class StandaloneLayout(RedisBase):
    """The writes and per-user calls of a store on one Redis; a user's index is a SET of record keys."""

    is_cluster: ClassVar[bool] = False
    _index_type: ClassVar[str] = "set"

    def _register(self, register: Callable[[str], Any]) -> None:
        self._create = register(_scripts.CREATE)
        self._set = register(_scripts.SET)
        self._touch = register(_scripts.TOUCH)
        self._delete = register(_scripts.DELETE)
        self._delete_for_user = register(_scripts.DELETE_FOR_USER)
        self._prune = register(_scripts.PRUNE)

    def create(self, record: SessionRecord) -> bool:
        """Insert the record and add it to its user's index in one script; ``False`` if the key exists.

        .. versionadded:: 0.1
        """
        record_key = self._record_key(record.key)
        keys = [record_key]
        if record.user_id is not None:
            keys.append(self._user_key(record.user_id))
        with self._driver_errors("create a session"):
            return bool(self._create(keys=keys, args=[record.ttl(), storage_id(record.key), encode_record(record)]))

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version``, moving it between user indexes.

        .. versionadded:: 0.1
        """
        new_index = user_tag(record.user_id) if record.user_id is not None else ""
        record_key = self._record_key(record.key)
        args: list[Any] = [expected_version, record.ttl(), storage_id(record.key), self._user_prefix, new_index,
                           encode_record(record), "1" if self.wait_replicas else "0"]
        with self._driver_errors("save a session"):
            result = int(self._set(keys=[record_key], args=args))
        if result == 3:
            # A user change with wait_replicas: written again with WAIT on the same connection.
            args[6] = "0"
            result = int(self._written_then_waited("save a session", record_key, self._set, [record_key], args))
        return (SetResult.MISSING, SetResult.CONFLICT, SetResult.SAVED)[result]

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move ``updated_at``, ``expires_at`` and the key's TTL; ``False`` when gone.

        .. versionadded:: 0.1
        """
        ttl = max(1, math.ceil(expires_at - updated_at))
        with self._driver_errors("touch a session"):
            return bool(
                self._touch(keys=[self._record_key(key)],
                            args=[repr(updated_at), repr(expires_at), ttl, self._user_prefix])
            )

    def delete(self, key: str) -> bool:
        """Delete the record and its user-index entry; ``True`` when it existed.

        .. versionadded:: 0.1
        """
        record_key = self._record_key(key)
        return bool(self._written_then_waited("delete a session", record_key, self._delete, [record_key],
                                              [self._user_prefix, storage_id(key), ""]))

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records: the index, then one pipelined read; stale members are pruned.

        .. versionadded:: 0.1
        """
        users = self._user_key(user_id)
        index = user_tag(user_id)
        with self._driver_errors("list a user's sessions"):
            members = sorted(to_text(m) for m in self.client.smembers(users))
        loaded = self._load([self.prefix + m for m in members])
        records: list[SessionRecord] = []
        stale: list[str] = []
        for member, (_key, record) in zip(members, loaded):
            if record is not None and record.user_id is not None and user_tag(record.user_id) == index:
                records.append(record)
            else:
                stale.append(member)
        self._prune_members(users, index, stale)
        return records

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Delete every record of the user but ``except_key``, ``BATCH`` index members per script.

        :raises StoreUnavailable: Redis cannot be reached; what could be removed
            is removed, and calling again finishes the job.

        .. versionadded:: 0.1
        """
        kept = storage_id(except_key) if except_key is not None else ""
        users = self._user_key(user_id)
        args = [self.prefix, user_tag(user_id), kept, BATCH]
        removed = 0
        while True:
            removed_now, left = self._written_then_waited("remove a user's sessions", users, self._delete_for_user,
                                                          [users], args)
            removed += int(removed_now)
            if int(left) <= 0:
                return removed

    def _delete_if_expired(self, record_key: str, now: float) -> int:
        return int(self._delete(keys=[record_key], args=[self._user_prefix, record_key[len(self.prefix):], repr(now)]))

    def _prune_members(self, users: str, index: str, members: list[str]) -> None:
        """Drop the ``members`` of ``users`` whose record is gone or someone else's (checked again
        inside the script), ``BATCH`` per script: one call's work stays bounded however many there are."""
        for start in range(0, len(members), BATCH):
            with self._driver_errors("prune a user's session index"):
                self._prune(keys=[users], args=[self.prefix, index, *members[start:start + BATCH]])

    def _prune_index(self, index: str) -> None:
        """Drop the stale members of a user's SET, read with ``SSCAN`` and checked ``BATCH`` per script."""
        users = self._user_prefix + index
        cursor: Any = 0
        while True:
            with self._driver_errors("prune user session indexes"):
                cursor, batch = self.client.sscan(users, cursor=cursor, count=BATCH)
            self._prune_members(users, index, [to_text(m) for m in batch])
            if int(cursor) == 0:
                return
