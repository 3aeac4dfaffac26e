"""Removing sessions: logout, removal by handle, sign-out-everywhere, and why none of
them loses a race with a move to a new id.

Part of :class:`~kitsession_wsgi.SessionManager`.  Moving a session to a new id (a login
that replaces a session, ``regenerate``, the rotation when the session's user changes;
``_writing``) must never let it outlive a concurrent removal (rule 9 of the design:
revocation wins every race).  :meth:`~kitsession_wsgi._writing.SessionWriter.move` does
it in this order:

1. insert the new record, with its user: from here on a removal by user finds it;
2. retire the old id: write a "replaced" marker naming the new handle, then delete the
   old record (or, with a grace period, cap its lifetime);
3. read the user's revocation marker (:meth:`SessionRemover.revoked_since`);
4. if the old record was already gone (2), or the user's sessions were revoked after the
   old session was created and it was not the one spared (3), delete the new one.

The argument, for each kind of removal:

* ``remove_all_sessions_for_user`` first writes the user's revocation marker (the time, and
  the session it spares), then deletes; a store may do the delete as a list and then a
  delete of what it listed.  If the move's read (3) comes after the marker was written,
  the move sees a revocation newer than its session and undoes itself.  If it comes
  before, the new record was inserted (1) before the revocation started, so the removal
  lists it and deletes it.  Either way no new record survives.  (A session created after
  the revocation began is a new login, not one the revocation was meant to end.)
* Removing the old session (a logout, ``remove_session``, removal by handle) deletes its
  record, then claims its marker slot (an insert-only "removed" marker) or, if a move's
  "replaced" marker holds the slot already, removes the successor it names, and so on.
  If the removal deletes the old record before step 2's delete, the move finds it gone
  and deletes the new one; if it claims the slot before step 2's marker, the move's
  insert-only marker write fails and it deletes the new one too; otherwise the marker
  (written first in step 2) leads the removal to the new record, which exists since
  step 1.  A walk that has taken many steps (a client looping ``regenerate``) also ends
  the lineage in the user's revocation marker: every move of it from then on undoes
  itself at step 4, so the chain stops growing and the walk reaches its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from . import signals
from ._lifetime import (
    REMOVED_DATA,
    REPLACED_MARKER_SECONDS,
    REVOCATION_MARKER_SECONDS,
    killed_lineages,
    marker_key,
    marker_lineage,
    revocation_key,
    revoked_at,
    revoked_data,
    spared_by,
    successor,
)
from .errors import SessionConflict
from .session import Session
from .stores.base import SessionRecord, SetResult, UserId

if TYPE_CHECKING:
    from .manager import SessionManager

#: A chain of "replaced" markers is followed this far (a safety bound: each step claims the
#: id it stands on, so a looping client is caught as soon as the walk reaches its head).
MAX_MARKER_HOPS = 100_000
#: After this many steps the walk ends the lineage in the user's revocation marker: a client
#: looping ``regenerate`` could otherwise keep ahead of it when scheduling favours the client.
CHASE_HOPS = 16
#: How many ended lineages a revocation marker remembers (the newest).
MAX_KILLED_LINEAGES = 32


class SessionRemover:
    """Removes the sessions of one :class:`~kitsession_wsgi.SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    # -- the public removals ----------------------------------------------------------

    def remove(self, session: Session) -> bool:
        """:meth:`~kitsession_wsgi.SessionManager.remove_session`."""
        store = self.manager.store
        removed = False
        if session.handle is not None and not session._destroyed:
            removed = store.delete(session.handle)
            self.remove_successors(session.handle)
        elif session._replaced_handle is not None:
            # Sent with an id a login or regenerate replaced moments ago: the logout
            # is meant for what that session became.
            self.remove_successors(session._replaced_handle)
        previous = session._take_replaced()
        if previous is not None and previous.handle is not None:
            store.delete(previous.handle)
            self.remove_successors(previous.handle)
        session._removed()
        signals.destroyed.send(self.manager, session=session)
        return removed

    def remove_by_handle(self, handle: str, user_id: UserId | None) -> bool:
        """:meth:`~kitsession_wsgi.SessionManager.remove_session_by_handle` (``user_id`` checked)."""
        store = self.manager.store
        if user_id is not None:
            record = store.get(handle)
            if record is None:
                # Moved to a new id moments ago (a login, regenerate or rotation): the
                # device is the same, so its new id goes.
                return self.remove_successors(handle, user_id=user_id)
            if record.user_id != user_id:
                return False
        removed = store.delete(handle)
        return self.remove_successors(handle) or removed

    def remove_all_for_user(self, user_id: UserId, except_key: str | None) -> int:
        """:meth:`~kitsession_wsgi.SessionManager.remove_all_sessions_for_user` (``user_id`` checked)."""
        # First, so that a move to a new id running meanwhile undoes itself (see above).
        self.note_revocation(user_id, except_key)
        return self.manager.store.delete_all_for_user(user_id, except_key)

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
        store = self.manager.store
        marker = store.get(revocation_key(user_id))
        if marker is None:
            return False
        killed = killed_lineages(marker)
        if created_at in killed:
            return True  # a removal of this very session ended its lineage (remove_successors)
        revoked = revoked_at(marker)
        if revoked is None or revoked <= created_at:
            return False
        if spared_by(marker) != handle:
            return True
        assert successor.handle is not None
        # One try: if another revocation wrote the marker meanwhile, it spares no move of ours.
        store.set(marker.with_changes(data=revoked_data(successor.handle, killed, revoked),
                                      version=marker.version + 1), marker.version)
        return False

    def note_revocation(self, user_id: UserId, spared: str | None) -> None:
        """Write ``user_id``'s revocation marker (now, sparing ``spared``), before its sessions are removed.

        Two revocations close together that spare different sessions spare none:
        each removes the other's spared session anyway.
        """
        def marker_data(record: SessionRecord | None, now: float) -> str:
            nonlocal spared
            if record is None:
                return revoked_data(spared, revoked_at=now)
            before = revoked_at(record)
            if spared_by(record) != spared and before is not None and now - before < REPLACED_MARKER_SECONDS:
                spared = None
            return revoked_data(spared, killed_lineages(record), max(now, before or now))

        self._write_revocation_marker(user_id, marker_data)

    def end_lineage(self, user_id: UserId, created_at: float) -> None:
        """Add the lineage ``created_at`` of ``user_id`` to the revocation marker: every later
        move of it undoes itself (:meth:`revoked_since`).  Not a revocation of the user's other
        sessions: the marker's revocation time is left as it is (none on a new marker)."""
        def marker_data(record: SessionRecord | None, now: float) -> str:
            if record is None:
                return revoked_data(None, (created_at,))
            killed = (*killed_lineages(record)[-(MAX_KILLED_LINEAGES - 1):], created_at)
            return revoked_data(spared_by(record), killed, revoked_at(record))

        self._write_revocation_marker(user_id, marker_data)

    def _write_revocation_marker(self, user_id: UserId,
                                 marker_data: Callable[[SessionRecord | None, float], str]) -> None:
        """Insert or update (versioned, retried) ``user_id``'s marker to ``marker_data(current, now)``."""
        store = self.manager.store
        key = revocation_key(user_id)
        for _attempt in range(self.manager.merge_retries + 1):
            now = self.manager.clock()
            record = store.get(key)
            data = marker_data(record, now)
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

    def remove_successors(self, handle: str, *, user_id: UserId | None = None) -> bool:
        """After ``handle`` was removed: remove what a recent move of it became, too.

        Walks the "replaced" markers from ``handle`` on.  At each step it first
        *claims* the marker slot of the id it stands on (an insert-only "removed"
        marker): a move of that id which has not written its marker yet can then
        never complete (its own insert-only marker write fails and it undoes
        itself), so a client looping ``regenerate`` is caught at the first step
        the walk wins, not chased.  Where the slot is already taken, the marker
        names the successor, which is removed in turn.  With ``user_id``, only a
        successor owned by that user is removed.  ``True`` if one was.
        """
        store = self.manager.store
        now = self.manager.clock()
        removed = False
        ended = False
        for hop in range(MAX_MARKER_HOPS):
            if store.create(SessionRecord(key=marker_key(handle), data=REMOVED_DATA, user_id=None, created_at=now,
                                          updated_at=now, expires_at=now + REPLACED_MARKER_SECONDS, version=1)):
                return removed
            marker = store.get(marker_key(handle))
            next_handle = None if marker is None or now >= marker.expires_at else successor(marker)
            if next_handle is None:
                return removed
            if not ended and hop >= CHASE_HOPS:
                # A long chain: a client is moving its session as fast as it can.  End the
                # lineage outright, so its next move undoes itself and the walk catches up.
                assert marker is not None
                lineage = marker_lineage(marker)
                if lineage is not None:
                    self.end_lineage(*lineage)
                    ended = True
            if user_id is not None:
                record = store.get(next_handle)
                if record is not None and record.user_id != user_id:
                    return removed
            removed = store.delete(next_handle) or removed
            handle = next_handle
        return removed
