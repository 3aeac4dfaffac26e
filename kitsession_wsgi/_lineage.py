"""A session's lineage: stored under a fresh id, moved to a new id, the old id retired, the
move undone when a removal won; and why revocation wins every race with such a move.

A session keeps its ``created_at`` (its lineage) across every move: a login that
replaces a session (``new_session(previous)``), ``regenerate``, the rotation when the
session's user changes.  Rule 9 in docs/design.rst: a moved session never outlives a
concurrent revoke, logout or sign-out-everywhere.  :meth:`Lineage.move` (and the login
path, :meth:`Lineage.insert`) does it in this order:

1. insert the new record, with its user: from here on a removal by user finds it;
2. retire the old id: write a "replaced" marker naming the new handle, then delete the
   old record (or, with a grace period, cap its lifetime) (:meth:`Lineage.retire`);
3. read the user's revocation marker (:meth:`Lineage.revoked_since`);
4. if the old record was already gone (2), or the user's sessions were revoked after the
   old session was created and it was not the one spared (3), delete the new one
   (:meth:`Lineage.undo_move`).

The argument, for each kind of removal:

* ``remove_all_sessions_for_user`` first writes the user's revocation marker (the time, and
  the session it spares: :meth:`Lineage.note_revocation`), then deletes; a store may do the
  delete as a list and then a delete of what it listed.  If the move's read (3) comes after
  the marker was written, the move sees a revocation newer than its session and undoes
  itself.  If it comes before, the new record was inserted (1) before the revocation
  started, so the removal lists it and deletes it.  Either way no new record survives.  (A
  session created after the revocation began is a new login, not one the revocation was
  meant to end.)
* Removing the old session (a logout, ``remove_session``, removal by handle) deletes its
  record, then claims its marker slot (an insert-only "removed" marker) or, if a move's
  "replaced" marker holds the slot already, removes the successor it names, and so on
  (:meth:`Lineage.remove_successors`).  If the removal deletes the old record before step
  2's delete, the move finds it gone and deletes the new one; if it claims the slot before
  step 2's marker, the move's insert-only marker write fails and it deletes the new one
  too; otherwise the marker (written first in step 2) leads the removal to the new record,
  which exists since step 1.  A walk that has taken many steps (a client looping
  ``regenerate``) also ends the lineage in the user's revocation marker
  (:meth:`Lineage.end_lineage`): every move of it from then on undoes itself at step 4, so
  the chain stops growing and the walk reaches its end.

A move with a grace period (``regenerate(session, grace=...)``) leaves the old id live for
a while, so the lineage has two live records: removing either ends both.  Removing the old
one follows its "replaced" marker, as above.  For the other way, the move writes a "graced"
marker under the new session's key, naming the old id, after inserting the new record and
before retiring the old id; a removal of the new session deletes it, then reads that marker
and deletes the old record (:meth:`Lineage.end_graced_predecessors`).  If the removal read
the marker slot before the move wrote it, the removal deleted the new record before that
too, and the move, which looks for its new record once it is done, finds it gone and ends
the grace period itself.

The store contract this relies on: ``create`` is insert-only and ``set`` is update-only
and versioned.  The markers' format is :mod:`kitsession_wsgi._markers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._device import stored_text
from ._events import SessionEvents
from ._expiry import deadline
from ._keys import marker_key, predecessor_key, revocation_key, session_key
from ._locks import SessionLocks
from ._markers import (
    REMOVED_DATA,
    REPLACED_MARKER_SECONDS,
    REVOCATION_MARKER_SECONDS,
    GracedMarker,
    ReplacedMarker,
    RevocationMarker,
)
from ._options import SessionOptions
from .errors import ConfigurationError, SessionConflict
from .session import Session
from .signing import MAX_ID_LENGTH
from .stores.base import SessionRecord, SetResult, UserId

__all__ = ["CHASE_HOPS", "CREATE_ATTEMPTS", "MAX_GRACED_HOPS", "MAX_KILLED_LINEAGES", "MAX_MARKER_HOPS", "Lineage"]

#: A stored session whose id collides with a fresh one is astronomically rare;
#: a few retries cover a store whose ``create_id`` is weaker than the default.
CREATE_ATTEMPTS = 5
#: A chain of "replaced" markers is followed this far (a safety bound: each step claims the
#: id it stands on, so a looping client is caught as soon as the walk reaches its head).
MAX_MARKER_HOPS = 100_000
#: After this many steps the walk ends the lineage in the user's revocation marker: a client
#: looping ``regenerate`` could otherwise keep ahead of it when scheduling favours the client.
CHASE_HOPS = 16
#: How many ids retired with a grace period, one before the other, a removal ends (newest first).
MAX_GRACED_HOPS = 100
#: How many ended lineages a revocation marker remembers (the newest).
MAX_KILLED_LINEAGES = 32


class Lineage:
    """Creates, moves and retires sessions' ids over ``options.store``, revocation first.

    ``locks`` frees a moved session's lock; ``events`` sends the ``created`` and
    ``regenerated`` signals.
    """

    def __init__(self, options: SessionOptions, locks: SessionLocks, events: SessionEvents) -> None:
        self.options = options
        self.locks = locks
        self.events = events

    # -- a fresh id -------------------------------------------------------------------

    def create(self, session: Session, text: str, now: float, *, created_at: float | None = None) -> None:
        """Insert a record for ``session`` under a fresh id (retried on a taken one)."""
        options = self.options
        user_id = session._user_id
        created_at = now if created_at is None else created_at
        for _attempt in range(CREATE_ATTEMPTS):
            session_id = options.store.create_id()
            if len(session_id) > MAX_ID_LENGTH:
                # Stored, it could never be read back: every request would be a new session.
                raise ConfigurationError(
                    "store", f"create_id() returned an id of {len(session_id)} characters; a cookie carries "
                    f"at most {MAX_ID_LENGTH}")
            key = session_key(session_id)
            record = SessionRecord(
                key=key,
                data=stored_text(text, session._device),
                user_id=user_id,
                created_at=created_at,
                updated_at=now,
                expires_at=deadline(created_at, now, options.max_age, options.idle_timeout),
                version=1,
            )
            if options.store.create(record):
                break
        else:
            raise SessionConflict(f"store.create_id() returned taken ids {CREATE_ATTEMPTS} times")
        session._inserted(session_id=session_id, handle=key, text=text, created_at=created_at, updated_at=now,
                          expires_at=record.expires_at)

    def insert(self, session: Session, text: str, now: float) -> None:
        """Store a new ``session`` under a fresh id (insert-only) and mark its cookie due.

        A session that replaces another (``new_session(previous)``, the login path)
        is a move, in the order the module docstring argues: insert, retire, check.
        """
        old = session._take_replaced()
        if old is not None and (old.handle is None or old._destroyed):
            old = None
        self.create(session, text, now)
        self.events.created(session=session)
        if old is None:
            return
        assert old.handle is not None
        old._vanished()
        self.locks.release(old)
        retired = self.mark_replaced(old.handle, session, user_changed=old._loaded_user_id != session._user_id)
        # An anonymous predecessor that vanished (evicted, expired, removed) leaves nothing to
        # revoke: the login stands.  A signed-in one removed meanwhile takes the login with it.
        if (not retired and old._loaded_user_id is not None) or (
            self.revoked_since(old._loaded_user_id, old.created_at, old.handle, session)
        ):
            self.undo_move(session)
            return
        self.events.regenerated(session=session, previous_handle=old.handle)

    # -- moving a stored session to a new id ------------------------------------------

    def move(self, session: Session, current: SessionRecord, text: str, data: dict[str, Any],
             user_id: UserId | None, grace: float = 0) -> bool:
        """Give the stored session ``current`` a new id holding ``data`` (serialised: ``text``) and ``user_id``.

        The order (insert, retire, check) is argued in the module docstring.
        ``False``, with ``session`` ended and no cookie sent, when a concurrent
        removal got there first.
        """
        session._merged(data, user_id)
        self.create(session, text, self.options.clock(), created_at=session.created_at)
        if grace > 0:
            self._write_graced_marker(session, current.key, grace)
        if not self.retire(current, grace, session, user_changed=current.user_id != user_id) or (
            self.revoked_since(current.user_id, current.created_at, current.key, session)
        ):
            self.undo_move(session)
            return False
        assert session.handle is not None
        if grace > 0 and self.options.store.get(session.handle) is None:
            # The new session was removed before its removal could see the graced marker:
            # the old id's grace period ends with it.
            self.options.store.delete(current.key)
            session._vanished()
            return False
        return True

    def _write_graced_marker(self, successor: Session, predecessor: str, grace: float) -> None:
        """Name ``predecessor`` (left live for ``grace`` seconds) under ``successor``'s own key."""
        assert successor.handle is not None
        now = self.options.clock()
        self.options.store.create(SessionRecord(
            key=predecessor_key(successor.handle), data=GracedMarker(predecessor).encode(), user_id=None,
            created_at=now, updated_at=now, expires_at=now + grace, version=1,
        ))

    def end_graced_predecessors(self, handle: str, *, user_id: UserId | None = None) -> None:
        """After ``handle`` was removed: remove the ids a ``regenerate`` with a grace period
        left live before it (one graced move after another, newest first).

        With ``user_id``, only a predecessor owned by that user is removed.
        """
        store = self.options.store
        for _hop in range(MAX_GRACED_HOPS):
            record = store.get(predecessor_key(handle))
            if record is None or self.options.clock() >= record.expires_at:
                return
            handle = GracedMarker.decode(record.data).predecessor
            if user_id is not None:
                predecessor = store.get(handle)
                if predecessor is not None and predecessor.user_id != user_id:
                    return
            store.delete(handle)

    def undo_move(self, session: Session) -> None:
        """A removal won the race: the new record goes too, and no cookie is sent."""
        assert session.handle is not None
        self.options.store.delete(session.handle)
        session._vanished()

    def mark_replaced(self, key: str, successor: Session, *, user_changed: bool = False) -> bool:
        """Remove the session ``key``, leaving a "replaced" marker naming ``successor``; ``False`` if it was gone.

        The marker lives under a key of its own, so nothing done through the
        old id (a save, a touch, a lock) can reach or extend it.  It holds no
        data and no user and expires after ``REPLACED_MARKER_SECONDS`` (stores
        with TTLs drop it then, ``purge_expired`` removes it from SQL).  It is
        written before the session is removed, so no request in between finds
        neither, and a removal of the old id finds the successor through it.
        """
        if not self._write_marker(key, successor, user_changed=user_changed):
            return False  # a removal claimed the id first (remove_successors)
        return self.options.store.delete(key)

    def _write_marker(self, key: str, successor: Session, grace: float = 0, *, user_changed: bool) -> bool:
        """Insert the "replaced" marker of ``key``; ``False`` if its slot is taken (a removal claimed it).

        ``user_changed``: the move gave the session another user (a login), which the
        marker records, so a logout presented with the retired id stops there.
        """
        assert successor.handle is not None
        now = self.options.clock()
        marker = ReplacedMarker(successor.handle, successor._user_id, successor.created_at, user_changed)
        return self.options.store.create(SessionRecord(
            key=marker_key(key), data=marker.encode(), user_id=None, created_at=now,
            updated_at=now, expires_at=now + grace + REPLACED_MARKER_SECONDS, version=1,
        ))

    def retire(self, record: SessionRecord, grace: float, successor: Session, *, user_changed: bool = False) -> bool:
        """End an id replaced by a move: now, or after ``grace`` seconds.

        A grace record's lifetime is capped by moving its ``created_at``, so no
        save or touch through the old id can ever extend it.  ``False`` when
        another request removed it first.
        """
        if grace <= 0:
            return self.mark_replaced(record.key, successor, user_changed=user_changed)
        if not self._write_marker(record.key, successor, grace, user_changed=user_changed):
            return False
        options = self.options
        now = options.clock()
        end = min(now + grace, record.expires_at)
        for _attempt in range(options.merge_retries + 1):
            result = options.store.set(
                record.with_changes(created_at=end - options.max_age, updated_at=now, expires_at=end,
                                    version=record.version + 1),
                record.version,
            )
            if result is SetResult.SAVED:
                return True
            if result is SetResult.MISSING:
                return False
            fresh = options.store.get(record.key)
            if fresh is None:
                return False
            record = fresh
        raise SessionConflict("the session kept changing while its id was replaced", handle=record.key)

    # -- the user's revocation marker -------------------------------------------------

    def revoked_since(self, user_id: UserId | None, created_at: float, handle: str, successor: Session) -> bool:
        """Whether ``user_id``'s sessions were revoked after ``created_at``, not sparing ``handle``.

        Strictly after: a session created at the very instant of a revocation (as
        with a test's frozen clock) counts as created after it.  When ``handle`` is
        the session a revocation spared, the marker now spares its successor, so the
        device that signed out its others can move its session again.
        """
        if user_id is None:
            return False
        store = self.options.store
        record = store.get(revocation_key(user_id))
        if record is None:
            return False
        marker = RevocationMarker.decode(record.data)
        if created_at in marker.killed:
            return True  # a removal of this very session ended its lineage (remove_successors)
        if marker.revoked_at is None or marker.revoked_at <= created_at:
            return False
        if marker.spared != handle:
            return True
        assert successor.handle is not None
        # One try: if another revocation wrote the marker meanwhile, it spares no move of ours.
        spares_successor = RevocationMarker(successor.handle, marker.killed, marker.revoked_at)
        store.set(record.with_changes(data=spares_successor.encode(), version=record.version + 1), record.version)
        return False

    def note_revocation(self, user_id: UserId, spared: str | None) -> None:
        """Write ``user_id``'s revocation marker (now, sparing ``spared``), before its sessions are removed.

        Two revocations close together that spare different sessions spare none:
        each removes the other's spared session anyway.
        """
        def updated(record: SessionRecord | None, now: float) -> RevocationMarker:
            nonlocal spared
            if record is None:
                return RevocationMarker(spared, revoked_at=now)
            marker = RevocationMarker.decode(record.data)
            before = marker.revoked_at
            if marker.spared != spared and before is not None and now - before < REPLACED_MARKER_SECONDS:
                spared = None
            return RevocationMarker(spared, marker.killed, max(now, before or now))

        self._write_revocation_marker(user_id, updated)

    def end_lineage(self, user_id: UserId, created_at: float) -> None:
        """Add the lineage ``created_at`` of ``user_id`` to the revocation marker: every later
        move of it undoes itself (:meth:`revoked_since`).  Not a revocation of the user's other
        sessions: the marker's revocation time is left as it is (none on a new marker)."""
        def updated(record: SessionRecord | None, now: float) -> RevocationMarker:
            if record is None:
                return RevocationMarker(None, (created_at,))
            marker = RevocationMarker.decode(record.data)
            killed = (*marker.killed[-(MAX_KILLED_LINEAGES - 1):], created_at)
            return RevocationMarker(marker.spared, killed, marker.revoked_at)

        self._write_revocation_marker(user_id, updated)

    def _write_revocation_marker(self, user_id: UserId,
                                 updated: Callable[[SessionRecord | None, float], RevocationMarker]) -> None:
        """Insert or update (versioned, retried) ``user_id``'s marker to ``updated(current, now)``."""
        options = self.options
        store = options.store
        key = revocation_key(user_id)
        for _attempt in range(options.merge_retries + 1):
            now = options.clock()
            record = store.get(key)
            data = updated(record, now).encode()
            expires_at = now + REVOCATION_MARKER_SECONDS
            if record is None:
                if store.create(SessionRecord(key=key, data=data, user_id=None, created_at=now, updated_at=now,
                                              expires_at=expires_at, version=1)):
                    return
            elif store.set(record.with_changes(data=data, updated_at=now, expires_at=expires_at,
                                               version=record.version + 1), record.version) is SetResult.SAVED:
                return
        raise SessionConflict("the user's revocation marker kept changing", handle=key)

    # -- following a move -------------------------------------------------------------

    def remove_successors(self, handle: str, *, user_id: UserId | None = None, same_user_only: bool = False) -> bool:
        """After ``handle`` was removed: remove what a recent move of it became, too.

        Walks the "replaced" markers from ``handle`` on.  At each step it first
        *claims* the marker slot of the id it stands on (an insert-only "removed"
        marker): a move of that id which has not written its marker yet can then
        never complete (its own insert-only marker write fails and it undoes
        itself), so a client looping ``regenerate`` is caught at the first step
        the walk wins, not chased.  Where the slot is already taken, the marker
        names the successor, which is removed in turn.  With ``user_id``, only a
        successor owned by that user is removed.  With ``same_user_only`` (a logout
        presented with an id a move had already retired), the walk stops at a move that
        changed the session's user: whoever knows a pre-login id must not be able to
        log out the signed-in session it became, while a logout sent with the old cookie
        of the same user's ``regenerate`` still ends its successor.  ``True`` if one was.
        """
        store = self.options.store
        now = self.options.clock()
        removed = False
        ended = False
        for hop in range(MAX_MARKER_HOPS):
            if store.create(SessionRecord(key=marker_key(handle), data=REMOVED_DATA, user_id=None, created_at=now,
                                          updated_at=now, expires_at=now + REPLACED_MARKER_SECONDS, version=1)):
                return removed
            record = store.get(marker_key(handle))
            marker = None if record is None or now >= record.expires_at else ReplacedMarker.decode(record.data)
            if marker is None or (same_user_only and marker.user_changed):
                return removed
            if not ended and hop >= CHASE_HOPS:
                # A long chain: a client is moving its session as fast as it can.  End the
                # lineage outright, so its next move undoes itself and the walk catches up.
                lineage = marker.lineage
                if lineage is not None:
                    self.end_lineage(*lineage)
                    ended = True
            if user_id is not None:
                successor = store.get(marker.successor)
                if successor is not None and successor.user_id != user_id:
                    return removed
            removed = store.delete(marker.successor) or removed
            handle = marker.successor
        return removed
