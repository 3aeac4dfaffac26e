"""A store made of two, that moves sessions from one to the other while serving.

Going from one store to another (memory to SQLite, SQLite to Redis, memcached to Redis)
should not sign anyone out.  :class:`MigratingStore` is built from the store the
sessions go to (``target``) and the one they come from (``source``); every live session
keeps working while it moves:

* a read looks in ``target``, then in ``source``, and a record found there is *moved*
  (copied to ``target`` and removed from ``source``) before it is returned;
* writes (``set``, ``touch``) go to ``target``, moving the record first when it is still
  in ``source``; ``create`` inserts into ``target`` and is insert-only across both
  (a key still held by ``source`` is moved and then counts as taken);
* removals (``delete``, ``delete_all_for_user``, ``purge_expired``) reach both stores,
  ``source`` first;
* listings see both, without duplicates (``target``'s copy wins);
* per-session locks are ``target``'s;
* :meth:`MigratingStore.drain` moves whatever is left, so that afterwards ``source``
  holds nothing live and the application can be configured with ``target`` alone.

Nothing is ever written to ``source``: it only shrinks.  That is what makes the
arguments below short.  The core keeps its own bookkeeping ("replaced", "removed" and
revocation markers) as records in the same store, so markers move exactly as
sessions do, and a marker still in ``source`` is consulted (and moved) the first time
the core asks for it.

**Moving a record** (:meth:`MigratingStore.move`), for a key ``k``:

1. read ``k`` from ``source``; if it is not there, read ``target`` again (a concurrent
   move may have just completed) and stop;
2. insert the record into ``target`` (insert-only: if ``target`` already holds ``k``,
   another move got there first: return what ``target`` holds, and stop);
3. *claim* the record by deleting it from ``source``;
4. if the claim found nothing to delete, something removed the record from ``source``
   after step 1: undo step 2 (bury ``k`` in ``target``, below).

**Removing a record** deletes it from ``source`` first, then *buries* it in ``target``:
replaces whatever ``target`` holds under ``k`` by a tombstone (a short-lived record this
store never returns, listed by no one, that no ``set`` or ``touch`` can revive), or inserts
one if ``target`` holds nothing.  The tombstone is there for a move that read the record
from ``source`` just before the removal: its insert (2) finds the key taken and the move
stops, so the removed record is never readable again, not even for a moment.

Why a removal (a logout, a revoke, "sign out everywhere", expiry) wins every race with
a move, as it does with every other write (rule 9 in docs/design.rst):

* The removal's ``source`` delete comes before the move's read (1): the move finds
  nothing to move.
* It comes between the move's read (1) and its claim (3): the claim finds nothing and
  the move buries its copy (4).  If the move's insert (2) came after the removal's
  burial, the tombstone made it fail and nothing was ever copied.  Either way ``target``
  ends with a tombstone and ``source`` without ``k``.
* It comes after the claim: the record was in ``target`` since step 2, before the claim,
  so the removal's burial, which follows its ``source`` delete, buries it.
* A write racing the move (``set``, ``touch``) only ever updates ``target`` (update-only,
  versioned): it either updates the copy, which the removal or the undo then buries,
  or finds a tombstone or nothing and reports ``MISSING`` / ``False``, as it does after
  any removal.  (A tombstone's version is 0, which no session has, so no ``set`` matches it.)
* Two moves of one key: only one insert (2) succeeds; the other returns that copy and
  never claims, so it cannot take the claim from the move that owns it (which would
  make that move undo a record nobody removed).

The order of a removal matters: with ``source`` first, every case above but the stale
read holds without the tombstone (which can expire, or be evicted by memcached).  With
``target`` first and no tombstone, a whole move could run between the two deletes
(insert after the ``target`` delete, claim before the ``source`` one) and the removed
session would live on in ``target``.  The order of a move matters too: claiming before
copying would leave a moment when neither store holds a live session, and a request
reading it then would sign its user out.

The tombstones' lifetime bounds what they guard: a move stalled for more than
:data:`TOMBSTONE_SECONDS` between its read (1) and its insert (2) finds the tombstone
gone (as does one whose tombstone memcached evicted), and its copy is readable for the two store calls until its claim fails and it
buries the copy again.  :meth:`drain` re-reads each record right before moving it, so a
listing taken minutes ago never widens that gap.  Costs during a migration: a removal is
three store calls instead of one (``source`` delete, ``target`` read and write), a
``touch`` reads first, and a tombstone occupies ``target`` for :data:`TOMBSTONE_SECONDS`
(``purge_expired`` counts expired tombstones among what it removed).

**Operating it.**  Configure every worker with the same ``MigratingStore`` first, then
run :meth:`drain` once (``flask kitsession migrate --from URL``); a worker still using
``source`` alone would keep writing where the others no longer look.  After the drain,
configure ``target`` alone: until then every miss (an unknown or expired cookie) costs
a ``source`` read too.

.. versionadded:: 0.3
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ..errors import SessionConflict
from .base import SessionRecord, SessionStore, SetResult, UserId

#: How many times :meth:`MigratingStore.drain` lists ``source`` again for records a
#: concurrent move was still holding (inserted in ``target``, not yet claimed).
DRAIN_PASSES = 5
#: Pause between those passes (seconds of real time): a move in flight takes two store calls.
DRAIN_PASS_PAUSE = 0.2

#: How long a removed record's tombstone stays in ``target`` (seconds of real time): far
#: longer than a move takes between reading a record and inserting its copy.
TOMBSTONE_SECONDS = 300.0
#: A tombstone's data: a core marker's form (``"kitsession:...`` is never served, never listed).
TOMBSTONE_DATA = '"kitsession:migrating:removed"'
#: A tombstone's version: no session has version 0, so no versioned ``set`` matches it.
TOMBSTONE_VERSION = 0

#: How many times a burial reads and writes again when the record keeps changing under it.
BURY_ATTEMPTS = 100

#: A drain's progress callback: ``progress(done, total)`` after each record of a pass.
Progress = Callable[[int, int], None]


class DrainCounts(NamedTuple):
    """What :meth:`MigratingStore.drain` did.

    .. versionadded:: 0.3
    """

    #: records moved to ``target`` by the drain itself
    moved: int
    #: records found gone, or already moved by a concurrent request
    skipped: int
    #: expired records removed from ``source`` instead of moved
    expired: int
    #: records still in ``source`` after the last pass (held by a move that never finished)
    remaining: int


class MigratingStore(SessionStore):
    """Serve from ``target`` and ``source`` while sessions move from ``source`` to ``target``.

    See the module documentation for what each operation does and why a removal wins
    every race with a move.  Both stores are used as they are (their tables must
    exist); closing this store closes both.

    :param target: the store sessions go to; it serves every write and the locks.
    :param source: the store sessions come from; nothing is written to it, records are
        only read and removed.
    :param clock: returns Unix time; :meth:`drain` removes records expired by it
        instead of moving them.  Pass the manager's clock if it is not ``time.time``.
    :raises TypeError: ``target`` or ``source`` is not a :class:`SessionStore`, or they are
        the same store.

    .. versionadded:: 0.3
    """

    def __init__(self, target: SessionStore, source: SessionStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        for name, store in (("target", target), ("source", source)):
            if not isinstance(store, SessionStore):
                raise TypeError(f"MigratingStore {name} must be a SessionStore, got {type(store).__name__}")
        if target is source:
            raise TypeError("MigratingStore needs two different stores: target is source")
        self.target = target
        self.source = source
        self.clock = clock

    @classmethod
    def from_url(cls, target: SessionStore, source_url: str, *,
                 clock: Callable[[], float] = time.time) -> MigratingStore:
        """A migration to ``target`` from the store at ``source_url`` (see
        :func:`~kitsession_wsgi.stores.urls.store_from_url`): what Flask's
        ``KITSESSION_MIGRATE_FROM`` and ``flask kitsession migrate --from URL`` build.
        The source's tables exist already (it is the store in use until now).

        :raises ConfigurationError: the URL names no store (option ``store``).
        """
        from .urls import store_from_url

        return cls(target, store_from_url(source_url), clock=clock)

    def __repr__(self) -> str:
        return f"MigratingStore(target={self.target!r}, source={self.source!r})"

    # -- moving -----------------------------------------------------------------------

    def move(self, key: str) -> SessionRecord | None:
        """Move the record ``key`` from ``source`` to ``target``; what ``target`` then holds.

        ``None`` when neither store holds it, or when a removal took it from
        ``source`` during the move (the copy is then undone).  Safe to call for a key
        that is not in ``source``: it then only reads ``target``.
        """
        record = self.source.get(key)
        if record is None:
            # A concurrent move may have inserted and claimed it since our caller read target.
            return self._alive(self.target.get(key))
        if not self.target.create(record):
            # Another move's copy (claimed or not yet: it owns the claim, never take it),
            # or the tombstone of a removal that ran since our read.
            return self._alive(self.target.get(key))
        if self.source.delete(key):
            return record
        # A removal (or a purge) deleted it from source after our read: it wins.
        self.bury(key)
        return None

    def bury(self, key: str, *, insert: bool = True) -> bool:
        """Put a tombstone under ``key`` in ``target``; ``True`` if it replaced a live record.

        ``insert=False``: only replace a record ``target`` holds, never add one where it
        holds nothing (see :meth:`delete`).
        """
        for _attempt in range(BURY_ATTEMPTS):
            current = self.target.get(key)
            if current is not None and self.is_tombstone(current):
                return False
            if current is None and not insert:
                return False
            now = time.time()
            tombstone = SessionRecord(key=key, data=TOMBSTONE_DATA, user_id=None, created_at=now, updated_at=now,
                                      expires_at=now + TOMBSTONE_SECONDS, version=TOMBSTONE_VERSION)
            if current is None:
                if self.target.create(tombstone):
                    return False
            elif self.target.set(tombstone, current.version) is SetResult.SAVED:
                return True
            # Written meanwhile (a save of the copy, another burial): look again.
        raise SessionConflict("the record kept changing while it was removed", handle=key)

    @staticmethod
    def is_tombstone(record: SessionRecord) -> bool:
        """Whether ``record`` is a tombstone this store left (never returned by it)."""
        return record.version == TOMBSTONE_VERSION and record.data == TOMBSTONE_DATA

    def _alive(self, record: SessionRecord | None) -> SessionRecord | None:
        return None if record is None or self.is_tombstone(record) else record

    # -- the contract -----------------------------------------------------------------

    def create_id(self) -> str:
        """A new id, as ``target`` makes them."""
        return self.target.create_id()

    def get(self, key: str) -> SessionRecord | None:
        """``target``'s record, or ``source``'s moved to ``target``."""
        record = self.target.get(key)
        if record is None:
            return self.move(key)
        return None if self.is_tombstone(record) else record

    def create(self, record: SessionRecord) -> bool:
        """Insert into ``target``; ``False`` when either store holds the key."""
        if self.move(record.key) is not None:
            return False
        if self.target.create(record):
            return True
        # A removed record's tombstone does not keep its key taken.
        return self.target.set(record, TOMBSTONE_VERSION) is SetResult.SAVED

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """A versioned update in ``target``, after moving the record there if it is still in ``source``."""
        if expected_version == TOMBSTONE_VERSION and self.get(record.key) is None:
            return SetResult.MISSING  # the one version that would match a tombstone
        result = self.target.set(record, expected_version)
        if result is SetResult.CONFLICT and self.get(record.key) is None:
            return SetResult.MISSING  # the stored version was a tombstone's
        if result is not SetResult.MISSING or self.move(record.key) is None:
            return result
        return self.target.set(record, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move activity and expiry in ``target``, after moving the record there if needed."""
        if self.get(key) is None:  # moved to target by the read if it was in source; never a tombstone
            return False
        # A removal between the read and the touch buries the record: its tombstone's
        # expiry moves, nothing else (the data, the version and the user stay the tombstone's).
        return self.target.touch(key, updated_at, expires_at)

    def delete(self, key: str) -> bool:
        """Remove ``key`` from ``source``, then bury it in ``target`` (the order the module documentation argues).

        A key neither store held gets no tombstone: no move can have read it from
        ``source`` (a removal of it would have left one), so a removal of an unknown key
        (a made-up handle) costs ``target`` no write.
        """
        from_source = self.source.delete(key)
        return self.bury(key, insert=from_source) or from_source

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Remove the user's records from ``source``, then from ``target``, and bury them.

        The count is the sum of both stores'; a record caught in both mid-move counts twice.
        """
        listed = {record.key for store in (self.source, self.target)
                  for record in store.get_all_for_user(user_id)} - {except_key}
        from_source = self.source.delete_all_for_user(user_id, except_key)
        from_target = self.target.delete_all_for_user(user_id, except_key)
        for key in listed:
            self.bury(key)
        return from_source + from_target

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records in either store, each once."""
        return self._union(self.source.get_all_for_user(user_id), self.target.get_all_for_user(user_id))

    def get_all(self) -> list[SessionRecord]:
        """Every record in either store, each once (tombstones are not records)."""
        return self._union(self.source.get_all(), self.target.get_all())

    def _union(self, from_source: list[SessionRecord], from_target: list[SessionRecord]) -> list[SessionRecord]:
        # Source is listed first: a record moving in between is then listed twice (and
        # kept once, target's copy), never missed.
        listed = {record.key: record for record in from_source}
        listed.update((record.key, record) for record in from_target)
        return [record for record in listed.values() if not self.is_tombstone(record)]

    def purge_expired(self, now: float) -> int:
        """Purge ``source``, then ``target``; the sum of both counts."""
        return self.source.purge_expired(now) + self.target.purge_expired(now)

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """``target``'s lock (``NotImplementedError`` if ``target`` has none)."""
        return self.target.acquire_lock(key, token, ttl)

    def release_lock(self, key: str, token: str) -> None:
        """Free ``target``'s lock."""
        self.target.release_lock(key, token)

    def create_tables(self) -> None:
        """Set up ``target`` (``source`` already holds sessions, so it is set up)."""
        self.target.create_tables()

    @property
    def process_local(self) -> bool:  # type: ignore[override]  # read from the wrapped store
        """Whether either store lives in this process's memory alone."""
        return self.target.process_local or self.source.process_local

    def apply_timeout(self, seconds: float) -> None:
        """Bound the calls of both stores."""
        self.target.apply_timeout(seconds)
        self.source.apply_timeout(seconds)

    def close(self) -> None:
        """Close both stores."""
        try:
            self.source.close()
        finally:
            self.target.close()

    # -- draining ---------------------------------------------------------------------

    def drain(self, progress: Progress | None = None) -> DrainCounts:
        """Move every record left in ``source`` to ``target``, while the application serves.

        Each listed record is read again right before it moves (its newest version,
        and a record removed since the listing is not copied back).  Records expired
        by ``clock`` are removed from ``source`` instead.  A record that a concurrent
        move holds (inserted in ``target``, not yet claimed) is left to that move;
        ``source`` is listed again, up to :data:`DRAIN_PASSES` times, until it is
        empty.  In the last pass, a record whose copy is still unclaimed was left by
        a move that never finished (its process died between insert and claim):
        requests already use that copy, so the drain claims it.  (A move merely
        stalled for all the passes, about a second, would then undo its copy and
        sign that one session out.)  ``remaining`` counts what is still in
        ``source`` after that: records a worker running with ``source`` alone keeps
        writing.

        :param progress: called as ``progress(done, total)`` after each record of a
            pass (``total`` is that pass's listing), for a progress bar.
        :raises StoreUnavailable: either store cannot be reached; a drain is safe to
            run again.
        """
        moved = skipped = expired = 0
        held: list[str] = []
        for attempt in range(DRAIN_PASSES):
            listed = [record.key for record in self.source.get_all()]
            if not listed:
                return DrainCounts(moved, skipped, expired, 0)
            if attempt:
                time.sleep(DRAIN_PASS_PAUSE)
            held = []
            now = self.clock()
            for done, key in enumerate(listed, 1):
                outcome = self._drain_one(key, now, final=attempt == DRAIN_PASSES - 1)
                if outcome == "moved":
                    moved += 1
                elif outcome == "expired":
                    expired += 1
                elif outcome == "held":
                    held.append(key)
                else:
                    skipped += 1
                if progress is not None:
                    progress(done, len(listed))
        return DrainCounts(moved, skipped, expired, len(held))

    def _drain_one(self, key: str, now: float, *, final: bool) -> str:
        """Move or expire one listed record: ``"moved"``, ``"expired"``, ``"held"`` or ``"gone"``."""
        record = self.source.get(key)
        if record is None:
            return "gone"
        if record.expires_at <= now:
            return "expired" if self.source.delete(key) else "gone"
        if self.target.create(record):
            if self.source.delete(key):
                return "moved"
            self.bury(key)  # removed meanwhile: it stays removed
            return "gone"
        copy = self.target.get(key)
        if copy is None:
            return "held"  # the copy that was there is gone: the next pass inserts again
        if self.is_tombstone(copy):
            # Removed since the read (its source record is a leftover): it stays removed.
            self.source.delete(key)
            return "gone"
        if final:
            # A copy still unclaimed after every pass: its move never finished (its process
            # died between insert and claim).  Requests already use the copy; claim it.
            return "moved" if self.source.delete(key) else "gone"
        return "held"
