"""Removing sessions: logout, removal by handle, sign-out-everywhere.

Each removal also ends what a concurrent move made of the session (its
successors) or, for sign-out-everywhere, writes the user's revocation marker
first: why that makes revocation win every race is argued, with the code it
proves, in :mod:`kitsession_wsgi._lineage`.
"""

from __future__ import annotations

from ._events import SessionEvents
from ._lineage import Lineage
from ._options import SessionOptions
from .session import Session
from .stores.base import UserId

__all__ = ["SessionRemover"]


class SessionRemover:
    """Removes sessions from ``options.store``, following moves through ``lineage``.

    ``events`` sends the ``destroyed`` and ``revoked`` signals.
    """

    def __init__(self, options: SessionOptions, lineage: Lineage, events: SessionEvents) -> None:
        self.options = options
        self.lineage = lineage
        self.events = events

    def remove(self, session: Session) -> bool:
        """:meth:`~kitsession_wsgi.SessionManager.remove_session`."""
        store = self.options.store
        lineage = self.lineage
        removed = False
        if session.handle is not None and not session._destroyed:
            removed = store.delete(session.handle)
            lineage.remove_successors(session.handle)
            lineage.end_graced_predecessors(session.handle)
        elif session._replaced_handle is not None:
            # Sent with an id a regenerate replaced moments ago: the logout is meant for
            # what that session became; not when a login gave it another user (the
            # pre-login id is no credential of the signed-in session).
            lineage.remove_successors(session._replaced_handle, same_user_only=True)
            lineage.end_graced_predecessors(session._replaced_handle)
        previous = session._take_replaced()
        if previous is not None and previous.handle is not None:
            store.delete(previous.handle)
            lineage.remove_successors(previous.handle)
        session._removed()
        self.events.destroyed(session=session)
        return removed

    def remove_by_handle(self, handle: str, user_id: UserId | None) -> bool:
        """:meth:`~kitsession_wsgi.SessionManager.remove_session_by_handle` (``user_id`` checked)."""
        store = self.options.store
        lineage = self.lineage
        if user_id is not None:
            record = store.get(handle)
            if record is None:
                # Moved to a new id moments ago (a login, regenerate or rotation): the
                # device is the same, so its new id goes.
                removed = lineage.remove_successors(handle, user_id=user_id)
                lineage.end_graced_predecessors(handle, user_id=user_id)
                if removed:
                    self.events.revoked(user_id, 1)
                return removed
            if record.user_id != user_id:
                return False
        removed = store.delete(handle)
        removed = lineage.remove_successors(handle) or removed
        # An id a regenerate with a grace period left live before this one goes too.
        lineage.end_graced_predecessors(handle)
        if removed:
            self.events.revoked(user_id, 1)
        return removed

    def remove_all_for_user(self, user_id: UserId, except_key: str | None) -> int:
        """:meth:`~kitsession_wsgi.SessionManager.remove_all_sessions_for_user` (``user_id`` checked)."""
        # First, so that a move to a new id running meanwhile undoes itself (see _lineage).
        self.lineage.note_revocation(user_id, except_key)
        count = self.options.store.delete_all_for_user(user_id, except_key)
        self.events.revoked(user_id, count)
        return count
