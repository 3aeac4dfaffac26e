"""Redis Cluster: every script touches one key, and the steps' order keeps the contract.

Given a ``redis.cluster.RedisCluster`` client, every key hashes by its own name
(no ``{hash tag}``), so sessions and user indexes spread over every master, and
every script touches exactly one key.  A record and its user's index usually
live on different masters, so no step is atomic with another; the rules the
contract needs come from the order of the steps and from the index entries'
values instead:

* **The index rule**: every live record naming user U has an entry in U's index.
  An entry is written *before* any record names its user, and removed only when
  its record is gone or names someone else at a version at least the entry's.
* **Entries** are ``"<version> <nonce>"``: the version of the write that added
  it (an entry never goes down: a write keeps the larger version) and a fresh
  random nonce on every write.  Every removal is a compare-and-delete of the
  whole value read *before* the record was checked, so an entry written again
  meanwhile (a racing create or move) is never removed by a decision made about
  the old one.
* **Create** (insert-only) with a user: ``SET NX`` of the record marked
  *pending* (header ``P1`` instead of ``K1``: readers, saves and touches treat it
  as absent), then the index entry, then a script turning ``P1`` into ``K1`` if
  the pending record is still there.  A pruner that sees the entry therefore
  also sees the record (pending counts as naming U), so "entry present, record
  absent" always means the record is gone for good.  An anonymous create is one
  ``SET NX``.  A pending record left by a crashed creator expires with its TTL.
* **Versioned save** is one script on the record when the user does not change
  (plus a stretch of the index's TTL when it moves a signed-in session's expiry
  later).  A save that changes the user from U to W gets "user changes" back
  without writing; it reads U's entry, adds W's entry (if any), repeats the
  versioned write (which may now conflict: W's entry is then a stale one), and
  after a successful write compare-and-deletes U's entry with the value read
  before it.
* **Why a compare-and-delete never breaks the rule**: the remover read the entry
  (value x), then saw the record gone or naming someone else at a version at
  least x's (or, for a save, wrote it so).  A write that makes the record name U
  afterwards writes U's entry first; if after the read of x, the nonce differs
  and the entry stays.  If before: a create would have put its pending record
  there before its entry, so the record would have been seen naming U; a save
  reads the record, then writes its entry with the version it will write, and
  can only succeed on the version it read, which is below the version already
  seen (or written), so it conflicts.  This relies on every save writing a
  higher version than it expects, as the core does, and on a deleted key never
  being created again (the core's keys are digests of fresh random ids).
* **No resurrection**: a save or touch of a missing (or pending) record changes
  nothing; a deleted record is gone from its own key, whatever its index says.
* **Touch** rewrites the record's times and TTL, then stretches the user
  index's TTL (an hour of margin over the record's, so the index cannot expire
  between the two steps).
* **Delete** removes the record, then its entry by the compare-and-delete above.
* **Readers filter**: ``get_all_for_user`` reads the index (``HGETALL``), then the
  records (one pipelined round trip per master) and keeps records that are live
  and name the user; stale entries it met are compare-and-deleted.
  ``purge_expired`` sweeps every index the same way.
* **Sign out everywhere** reads the index in ``HSCAN`` batches of at most
  ``BATCH`` entries; a script on each record deletes it only if it still names
  the user, and the stale entries are compare-and-deleted.  It repeats until a
  one-key check on the index finds no entry but the kept session's: at that
  moment, by the index rule, the user had no other live session, so a session
  moved to a new id meanwhile (its entry written before the old one is retired)
  is caught by a later pass.  After ``MAX_PASSES`` passes it stops anyway:
  what is left then are entries whose records did not name the user when last
  checked (a save to the user still in flight, or one that expected a version
  the record never had).  It is not a point-in-time snapshot: a session
  created meanwhile may or may not be removed.  A session written before the
  call started is removed.  When a master is down it removes what it can reach,
  then raises :class:`~kitsession_wsgi.StoreUnavailable`; calling it again
  finishes the job.
* Reading a session stays one ``GET``.  Writes that name a user cost more round
  trips than on one Redis: a create with a user 3, a save moving a session from
  one user to another 5 (to or from anonymous 3-4), a save moving a signed-in session's expiry 2, a touch of a user's
  session 2, a delete of a user's session 4.

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

from ...errors import StoreUnavailable
from .._format import decode_record, encode_record, storage_id, to_text
from .._toolkit import user_tag
from ..base import SessionRecord, SetResult, UserId
from . import _scripts
from ._base import BATCH, SCAN_COUNT, RedisBase
from ._driver import is_unavailable

__all__ = ["ClusterLayout", "MAX_PASSES"]

#: most passes of a "sign out everywhere" (see the module notes)
MAX_PASSES = 50
#: a user index outlives the user's longest session by this much (seconds)
_INDEX_TTL_MARGIN = 3600
#: header of a stored record: format tag, version, three times, user length, key length
_HEADER_BYTES = re.compile(rb"([KP])1 (-?\d+) \S+ \S+ \S+ (\d+) \d+\n")


def _owner(raw: Any) -> tuple[str, int, bool] | None:
    """``(user tag, version, pending)`` from a stored record's header; ``None`` if none."""
    if not raw:
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    match = _HEADER_BYTES.match(raw)
    if match is None:
        return None
    start = match.end()
    return (to_text(raw[start:start + int(match.group(3))]), int(match.group(2)), match.group(1) == b"P")


def _entry_version(value: Any) -> int:
    return int(to_text(value).split(" ", 1)[0])


class ClusterLayout(RedisBase):
    """The writes and per-user calls of a store on a Redis Cluster; a user's index is a HASH of entries."""

    is_cluster: ClassVar[bool] = True
    _index_type: ClassVar[str] = "hash"

    def _register(self, register: Callable[[str], Any]) -> None:
        self._publish = register(_scripts.CLUSTER_PUBLISH)
        self._cluster_set = register(_scripts.CLUSTER_SET)
        self._cluster_touch = register(_scripts.CLUSTER_TOUCH)
        self._cluster_delete = register(_scripts.CLUSTER_DELETE)
        self._index_add = register(_scripts.CLUSTER_INDEX_ADD)
        self._index_drop_seen = register(_scripts.CLUSTER_INDEX_DROP_SEEN)
        self._index_stretch = register(_scripts.CLUSTER_INDEX_STRETCH)
        self._index_left = register(_scripts.CLUSTER_INDEX_LEFT)

    # -- connections ------------------------------------------------------------------

    def _node_pipeline(self, key: str) -> Any:
        """A plain pipeline on one connection to the master holding ``key``.

        This bypasses ``ClusterPipeline``, which asks the client's default node
        (``COMMAND GETKEYS``) where each ``EVAL`` goes: with that node down, every
        pipeline would fail, not only the dead master's.  ``WAIT`` must follow the write on
        the same connection anyway.  A ``MOVED`` reply (a stale slot map) raises
        ``MovedError``, which is unavailability; see :meth:`_refresh_slots`.
        """
        cluster: Any = self.client
        return cluster.get_redis_connection(cluster.get_node_from_key(key)).pipeline(transaction=False)

    def _read_pipeline(self) -> Any:
        return self.client.pipeline()

    def _refresh_slots(self) -> None:
        """Re-read the cluster's slot map after a master failed us, so a retry goes to its successor."""
        try:
            cast(Any, self.client).nodes_manager.initialize()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            # Still unreachable: the caller raises StoreUnavailable already, and the client
            # re-reads the map itself on its next redirection or connection error.

    # -- records ----------------------------------------------------------------------

    def create(self, record: SessionRecord) -> bool:
        """Insert the record, marked pending until its user's index has its entry; ``False`` if the key exists.

        .. versionadded:: 0.1
        """
        record_key = self._record_key(record.key)
        value = encode_record(record)
        with self._driver_errors("create a session"):
            if record.user_id is None:
                return bool(self.client.set(record_key, value, nx=True, ex=record.ttl()))
            # Pending first, then the index entry, then live: see the module notes.
            if not self.client.set(record_key, b"P1" + value[2:], nx=True, ex=record.ttl()):
                return False
            self._add_entry(user_tag(record.user_id), storage_id(record.key), record.version, record.ttl())
            # 0 here means a "sign out everywhere" removed the pending record meanwhile: the
            # session was created, then revoked.
            self._publish(keys=[record_key])
        return True

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version`` (a user change: the module notes).

        .. versionadded:: 0.1
        """
        new_index = user_tag(record.user_id) if record.user_id is not None else ""
        stored_id = storage_id(record.key)
        record_key = self.prefix + stored_id
        args: list[Any] = [expected_version, record.ttl(), new_index, "0", encode_record(record)]
        with self._driver_errors("save a session"):
            reply = self._cluster_set(keys=[record_key], args=args)
        old_entry: Any = None
        if int(reply[0]) == 3:
            # A user change.  The old user's entry is read now, before the write, so that it
            # can be removed afterwards only if nothing wrote it meanwhile; the new user's
            # entry goes first; then the versioned write again.
            old_index = to_text(reply[1])
            with self._driver_errors("save a session"):
                if old_index:
                    old_entry = self.client.hget(self._user_prefix + old_index, stored_id)
                if new_index:
                    self._add_entry(new_index, stored_id, record.version, record.ttl())
            args[3] = "1"
            reply = self._written_then_waited("save a session", record_key, self._cluster_set, [record_key], args)
        code, old_index = int(reply[0]), to_text(reply[1])
        if code == 2 and old_entry is not None:
            with self._driver_errors("move a session between users"):
                self._index_drop_seen(keys=[self._user_prefix + old_index], args=[stored_id, old_entry])
        elif code == 2 and new_index and record.expires_at > float(to_text(reply[2])):
            # The record now outlives what its index was last stretched for (an idle deadline
            # moved by a save): stretch the index too, as touch does.
            with self._driver_errors("save a session"):
                self._index_stretch(keys=[self._user_prefix + new_index], args=[record.ttl() + _INDEX_TTL_MARGIN])
        return (SetResult.MISSING, SetResult.CONFLICT, SetResult.SAVED)[code]

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move ``updated_at``, ``expires_at`` and the key's TTL, then stretch the user index's TTL.

        .. versionadded:: 0.1
        """
        ttl = max(1, math.ceil(expires_at - updated_at))
        with self._driver_errors("touch a session"):
            found, user = self._cluster_touch(keys=[self._record_key(key)],
                                              args=[repr(updated_at), repr(expires_at), ttl])
            if int(found) and to_text(user):
                self._index_stretch(keys=[self._user_prefix + to_text(user)], args=[ttl + _INDEX_TTL_MARGIN])
        return bool(int(found))

    def delete(self, key: str) -> bool:
        """Delete the record, then compare-and-delete its user-index entry; ``True`` when it existed.

        .. versionadded:: 0.1
        """
        stored_id = storage_id(key)
        record_key = self.prefix + stored_id
        found, user = self._written_then_waited("delete a session", record_key, self._cluster_delete,
                                                [record_key], [""])
        if to_text(user):
            self._forget_if_stale(to_text(user), stored_id)
        return bool(int(found))

    def _delete_if_expired(self, record_key: str, now: float) -> int:
        return int(self._cluster_delete(keys=[record_key], args=[repr(now)])[0])

    # -- index entries ----------------------------------------------------------------

    def _add_entry(self, index: str, stored_id: str, version: int, ttl: int) -> None:
        self._index_add(keys=[self._user_prefix + index],
                        args=[stored_id, version, secrets.token_hex(8), ttl + _INDEX_TTL_MARGIN])

    def _forget_if_stale(self, index: str, stored_id: str) -> None:
        """Drop ``stored_id``'s entry from ``index`` if its record is gone or someone else's."""
        with self._driver_errors("update a user's session index"):
            value = self.client.hget(self._user_prefix + index, stored_id)
        if value is not None:
            self._prune_entries(index, {stored_id: value})

    def _prune_entries(self, index: str, entries: dict[str, Any]) -> list[tuple[str, Any]]:
        """Check the records of ``entries`` (read before this call) and drop the stale entries.

        Returns ``(storage id, raw record)`` of the entries whose records are live and the user's.
        """
        if not entries:
            return []
        ids = sorted(entries)
        raws = self._load_raw([self.prefix + i for i in ids])
        owned: list[tuple[str, Any]] = []
        stale: list[Any] = []
        for stored_id, raw in zip(ids, raws):
            owner = _owner(raw)
            if owner is not None and owner[0] == index:
                if not owner[2]:
                    owned.append((stored_id, raw))
            elif owner is None or owner[1] >= _entry_version(entries[stored_id]):
                stale += [stored_id, entries[stored_id]]
        # BATCH entries (two arguments each) per script: one call's work stays bounded.
        for start in range(0, len(stale), 2 * BATCH):
            with self._driver_errors("prune a user's session index"):
                self._index_drop_seen(keys=[self._user_prefix + index], args=stale[start:start + 2 * BATCH])
        return owned

    def _prune_index(self, index: str) -> None:
        """Drop the stale entries of a user index, ``BATCH`` at a time."""
        cursor: Any = 0
        while True:
            with self._driver_errors("prune user session indexes"):
                cursor, batch = cast("tuple[Any, dict[Any, Any]]",
                                     self.client.hscan(self._user_prefix + index, cursor=cursor, count=BATCH))
            self._prune_entries(index, {to_text(k): v for k, v in batch.items()})
            if int(cursor) == 0:
                return

    # -- per user ---------------------------------------------------------------------

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records: the index (``HGETALL``), then one pipelined read per master; stale entries pruned.

        .. versionadded:: 0.1
        """
        with self._driver_errors("list a user's sessions"):
            index = cast("dict[Any, Any]", self.client.hgetall(self._user_key(user_id)))
        entries = {to_text(k): v for k, v in index.items()}
        found = [decode_record(raw) for _, raw in self._prune_entries(user_tag(user_id), entries)]
        return [r for r in found if r is not None]

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Delete every record of the user but ``except_key`` in ``HSCAN`` passes (see the module notes).

        :raises StoreUnavailable: a master cannot be reached; what could be removed
            is removed, and calling again finishes the job.

        .. versionadded:: 0.1
        """
        index = user_tag(user_id)
        kept = storage_id(except_key) if except_key is not None else ""
        removed = 0
        for _ in range(MAX_PASSES):
            removed_now, unreachable = self._revoke_pass(index, kept)
            removed += removed_now
            if unreachable:
                self._refresh_slots()
                raise StoreUnavailable(
                    f"Redis Cluster could not remove every session of a user: {unreachable} stayed out of "
                    f"reach ({removed} removed); retrying finishes the job", store="redis",
                )
            with self._driver_errors("remove a user's sessions"):
                if int(self._index_left(keys=[self._user_prefix + index], args=[kept])) <= 0:
                    return removed
        return removed
    def _revoke_pass(self, index: str, kept: str) -> tuple[int, int]:
        """One ``HSCAN`` pass over the index: ``(records removed, entries whose record was unreachable)``."""
        users = self._user_prefix + index
        removed = unreachable = 0
        cursor: Any = 0
        while True:
            with self._driver_errors("remove a user's sessions"):
                cursor, batch = cast("tuple[Any, dict[Any, Any]]",
                                     self.client.hscan(users, cursor=cursor, count=BATCH))
            entries = {to_text(k): v for k, v in batch.items() if to_text(k) != kept}
            if entries:
                removed_now, failed = self._revoke_batch(index, entries)
                removed += removed_now
                unreachable += failed
            if int(cursor) == 0:
                return removed, unreachable

    def _revoke_batch(self, index: str, entries: dict[str, Any]) -> tuple[int, int]:
        """Revoke the records of one batch of entries, one pipeline per master; ``(removed, unreachable)``.

        A master that cannot be reached leaves its entries for a later call; the
        others are still done (a pipeline over every master would stop at the first).
        """
        cluster: Any = self.client
        by_master: dict[str, list[str]] = {}
        with self._driver_errors("remove a user's sessions"):
            for stored_id in sorted(entries):
                by_master.setdefault(cluster.get_node_from_key(self.prefix + stored_id).name, []).append(stored_id)
        removed = failed = 0
        stale: list[Any] = []
        acknowledgements: list[Any] = []
        for ids in by_master.values():
            try:
                pipeline = self._node_pipeline(self.prefix + ids[0])
                for stored_id in ids:
                    pipeline.execute_command("EVAL", _scripts.CLUSTER_REVOKE, 1, self.prefix + stored_id, index)
                if self.wait_replicas:
                    pipeline.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                replies = pipeline.execute()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                failed += len(ids)
                continue
            acknowledgements += replies[len(ids):]
            for stored_id, reply in zip(ids, replies):
                status, version = to_text(reply[0]), int(reply[1])
                removed += status == "d"
                if status in ("d", "a") or version >= _entry_version(entries[stored_id]):
                    stale += [stored_id, entries[stored_id]]
        if stale:
            with self._driver_errors("remove a user's sessions"):
                self._index_drop_seen(keys=[self._user_prefix + index], args=stale)
        self._check_acknowledged("remove a user's sessions", acknowledgements)
        return removed, failed

    def _scan(self, pattern: str, kind: str) -> Iterator[list[str]]:
        """Batches of keys matching ``pattern`` of Redis type ``kind``, on every master."""
        batch: list[str] = []
        with self._driver_errors("scan sessions"):
            for found in self.client.scan_iter(match=pattern, count=SCAN_COUNT, _type=kind):
                batch.append(to_text(found))
                if len(batch) >= SCAN_COUNT:
                    yield batch
                    batch = []
        if batch:
            yield batch
