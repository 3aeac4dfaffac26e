"""The per-user session limit (``max_sessions_per_user``): after a save links a session to
its user, that user's sessions beyond the limit are removed, least recently active first.

**One ranking, computed the same way by every racer.**  Every save that links a session to
a user (a new session stored with a user, a login's move to a new id, a save that gives a
stored session its user) calls :meth:`SessionLimit.enforce` *after* its own record is
stored.  ``enforce`` lists the user's records, keeps the live ones, ranks them by
``(updated_at, handle)``, newest first, and removes all but the first ``limit``.  Nothing
in the ranking depends on which session is doing the linking, so two racers that list the
same records keep the same ones.

*At most N live.*  Records of a user are only added by linking saves, and each of those
lists after its insert.  Take the linking save whose listing ran last: every record
linked before that listing was stored before it, so the listing saw every live record of
the user (some maybe removed meanwhile by another racer, which only lowers the count).
It removes all but N of them, and no record is linked after it.  So once every racer is
done, at most N live records remain.  (A session that only saves or touches links no new
record: it may reorder the ranking, never add to the count.)

*The last login survives.*  A linking save writes ``updated_at`` = its clock reading, so
of the racers the one whose write came last ranks first in every listing that sees it,
and every listing that does not see it ran before its write (and so before its own
listing, which keeps it).  No racer removes it.  Why not "the linking session keeps itself
and removes the others by activity": with N=1, two logins racing would each keep itself and
remove the other, and both would end.  The price of one shared ranking: a session of the
same user that writes (saves, touches) after the login, before the login's listing, is
more recently active and ranks above it; with N=1 that session is kept and the login ends
(the user stays signed in on the device they just used; the login's response sends no
cookie for its removed id).

Removal goes through ``store.delete`` and follows moves (``remove_successors``), as a
removal by handle does, so rule 9 in docs/design.rst holds: a session moved to a new id
meanwhile does not outlive its eviction.  Each removed session is announced with
:data:`kitsession_wsgi.signals.session_evicted`.
"""

from __future__ import annotations

from ._events import SessionEvents
from ._expiry import is_live
from ._lineage import Lineage
from ._options import SessionOptions
from .stores.base import SessionRecord, UserId

__all__ = ["SessionLimit", "ranked"]


def ranked(records: list[SessionRecord]) -> list[SessionRecord]:
    """``records`` by last activity, newest first, ties broken by handle: the one ranking."""
    return sorted(records, key=lambda record: (record.updated_at, record.key), reverse=True)


class SessionLimit:
    """Keeps at most ``options.max_sessions_per_user`` live sessions per user.

    ``lineage`` follows a removed session's moves; ``events`` sends ``session_evicted``.
    """

    def __init__(self, options: SessionOptions, lineage: Lineage, events: SessionEvents) -> None:
        self.options = options
        self.lineage = lineage
        self.events = events

    def enforce(self, user_id: UserId | None, handle: str | None) -> bool:
        """Remove ``user_id``'s sessions beyond the limit, after a save linked the session
        ``handle`` to that user and stored it.

        ``True`` when that session itself was removed: another of the user's sessions was
        active after it (see the module docstring), and the caller ends it.
        """
        limit = self.options.max_sessions_per_user
        if limit is None or user_id is None:
            return False
        options = self.options
        now = options.clock()
        live = [record for record in options.store.get_all_for_user(user_id)
                if record.user_id == user_id and is_live(record, now, options.max_age)]
        if len(live) <= limit:
            return False
        itself = False
        for record in ranked(live)[limit:]:
            removed = options.store.delete(record.key)
            removed = self.lineage.remove_successors(record.key, user_id=user_id) or removed
            self.lineage.end_graced_predecessors(record.key, user_id=user_id)
            itself = itself or record.key == handle
            if removed:
                self.events.session_evicted(record.key, user_id)
        return itself
