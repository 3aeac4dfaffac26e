"""When a session expires: the one liveness rule and the deadline a write stores.

Rule 4 in docs/design.rst: expiry is enforced on the server on every read; an
expired session is never served.
"""

from __future__ import annotations

from .stores.base import SessionRecord

__all__ = ["deadline", "is_live"]


def is_live(record: SessionRecord, now: float, max_age: float) -> bool:
    """The one expiry rule: before its stored deadline and within ``max_age`` of its creation.

    ``max_age`` is the manager's current setting, so lowering it ends older
    sessions at once, whatever deadline they were stored with.
    """
    return now < record.expires_at and now < record.created_at + max_age


def deadline(created_at: float, now: float, max_age: float, idle_timeout: float | None) -> float:
    """When a session active at ``now`` expires: its absolute lifetime, or sooner when idle."""
    absolute = created_at + max_age
    if idle_timeout is None:
        return absolute
    return min(absolute, now + idle_timeout)
