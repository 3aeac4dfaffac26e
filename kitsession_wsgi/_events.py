"""The core's signals (:mod:`kitsession_wsgi.signals`), sent by one object per manager.

Every signal is sent with the manager as its sender, so a receiver connected for
one manager (``signals.created.connect(receiver, sender=manager)``) hears only
that manager's sessions.  The parts send through :class:`SessionEvents` and so
need no reference to the manager; the sender is an identity here, never called.
"""

from __future__ import annotations

from . import signals
from .session import Session
from .stores.base import UserId

__all__ = ["SessionEvents"]


class SessionEvents:
    """Sends the core's signals from ``sender`` (the manager)."""

    __slots__ = ("sender",)

    def __init__(self, sender: object) -> None:
        self.sender = sender

    def created(self, session: Session) -> None:
        signals.created.send(self.sender, session=session)

    def regenerated(self, session: Session, previous_handle: str) -> None:
        signals.regenerated.send(self.sender, session=session, previous_handle=previous_handle)

    def destroyed(self, session: Session) -> None:
        signals.destroyed.send(self.sender, session=session)

    def expired(self, handle: str) -> None:
        signals.expired.send(self.sender, handle=handle)

    def unknown_id(self, handle: str) -> None:
        signals.unknown_id.send(self.sender, handle=handle)

    def key_rotated(self, session: Session) -> None:
        signals.key_rotated.send(self.sender, session=session)

    def invalid_signature(self) -> None:
        signals.invalid_signature.send(self.sender)

    def revoked(self, user_id: UserId | None, count: int) -> None:
        signals.revoked.send(self.sender, user_id=user_id, count=count)

    def conflict_merged(self, session: Session) -> None:
        signals.conflict_merged.send(self.sender, session=session)

    def session_evicted(self, handle: str, user_id: UserId) -> None:
        signals.session_evicted.send(self.sender, handle=handle, user_id=user_id)
