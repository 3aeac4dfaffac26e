"""The core's markers: records a store holds for the core, never a session.

Each marker is a JSON string (a session's data is always an object), so a
listing skips it as unreadable and no request can be served one:

* a "replaced" marker, ``"kitsession:replaced:<successor>|<created_at>|<user tag>"``,
  left for an id a move (a login, ``regenerate``, a rotation) retired: it names the
  handle the session now lives under and its lineage (the user, ``i:5`` / ``s:alice``,
  and the ``created_at`` every move keeps); a move that changed the session's user (a
  login) writes ``"kitsession:replaced-new-user:..."``, the same fields;
* a "graced" marker, ``"kitsession:graced:<predecessor>"``, kept under the successor's own
  key while a ``regenerate(..., grace=...)`` leaves the old id live: removing the successor
  ends the predecessor too;
* a "removed" marker, ``"kitsession:removed"``: a removal's claim on the marker slot of
  an id it removed, so a move of that id still under way cannot complete;
* a user's revocation marker, ``"kitsession:revoked:<spared>|<killed ...>|<revoked_at>"``:
  when ``remove_all_sessions_for_user`` last ran and which session it spared, and the
  lineages a removal ended.

What the markers are for, and why they let revocation win every race, is argued in
:mod:`kitsession_wsgi._lineage`; this module only reads and writes them.  A marker the
core wrote is never malformed: one whose fields do not parse raises
:class:`MalformedMarker` rather than reading as "no marker".
"""

from __future__ import annotations

from dataclasses import dataclass

from .stores.base import SessionRecord, UserId, user_index_key

__all__ = [
    "MARKER_PREFIX", "NEW_USER_REPLACED_PREFIX", "REMOVED_DATA", "REPLACED_MARKER_SECONDS", "REPLACED_PREFIX", "REVOCATION_MARKER_SECONDS",
    "REVOKED_PREFIX", "GracedMarker", "MalformedMarker", "ReplacedMarker", "RevocationMarker", "is_marker", "is_replaced_marker",
]

#: Every marker's data starts so: never a session's data (always a JSON object).
MARKER_PREFIX = '"kitsession:'
#: Both kinds of "replaced" marker start so (the same user's move, and a move to a new user).
REPLACED_PREFIX = '"kitsession:replaced'
#: The kind of "replaced" marker a move that changed the session's user writes.
NEW_USER_REPLACED_PREFIX = '"kitsession:replaced-new-user'
REVOKED_PREFIX = '"kitsession:revoked'
GRACED_PREFIX = '"kitsession:graced:'
#: The data of a "removed" marker.
REMOVED_DATA = '"kitsession:removed"'
#: How long an id replaced by a login or ``regenerate`` is recognised (never served): a request
#: the browser sent with the old cookie before the new one arrived gets an anonymous session
#: and no clearing cookie, which would otherwise delete the new cookie if it arrived last.
REPLACED_MARKER_SECONDS = 60.0
#: How long a revocation marker is kept after the last revocation: far longer than any
#: removal of a user's sessions takes, however many they are.
REVOCATION_MARKER_SECONDS = 3600.0


class MalformedMarker(ValueError):
    """A record holds a marker whose fields do not parse (the core never writes one)."""

    def __init__(self, data: str, field: str) -> None:
        super().__init__(f"malformed kitsession marker ({field}): {data[:120]!r}")
        self.data = data
        self.field = field


def is_marker(record: SessionRecord) -> bool:
    """Whether ``record`` is one of the core's markers (never served, never listed)."""
    return record.data.startswith(MARKER_PREFIX)


def is_replaced_marker(record: SessionRecord) -> bool:
    """Whether ``record`` is a "replaced" marker."""
    return record.data.startswith(REPLACED_PREFIX)


def _fields(data: str, prefix: str) -> list[str] | None:
    """The three ``|``-separated fields of a marker of kind ``prefix``; ``None``: another kind."""
    head = prefix + ":"
    if not data.startswith(head):
        return None
    if not data.endswith('"'):
        raise MalformedMarker(data, "closing quote")
    fields = data[len(head):-1].split("|", 2)
    if len(fields) != 3:
        raise MalformedMarker(data, "field count")
    return fields


def _seconds(data: str, text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MalformedMarker(data, field) from None


def _user(data: str, tag: str) -> UserId | None:
    """The user of a stores' user tag (``i:5``, ``s:alice``); ``""`` is no user."""
    if not tag:
        return None
    kind, colon, text = tag.partition(":")
    if kind == "i" and colon:
        try:
            return int(text)
        except ValueError:
            pass
    elif kind == "s" and colon and text:
        return text
    raise MalformedMarker(data, "user")


@dataclass(frozen=True)
class ReplacedMarker:
    """What a move leaves for the id it retired: where the session went, and its lineage."""

    #: the handle the session now lives under
    successor: str
    #: the lineage's user (``None``: anonymous) and the ``created_at`` every move keeps
    user_id: UserId | None
    created_at: float
    #: the move changed the session's user (a login, anonymous -> user or user A -> user B):
    #: a logout presented with the retired id is then no logout of the successor
    user_changed: bool = False

    def encode(self) -> str:
        user = "" if self.user_id is None else user_index_key(self.user_id)
        prefix = NEW_USER_REPLACED_PREFIX if self.user_changed else REPLACED_PREFIX
        return f'{prefix}:{self.successor}|{self.created_at!r}|{user}"'

    @classmethod
    def decode(cls, data: str) -> ReplacedMarker | None:
        """The marker ``data`` holds; ``None`` when it is no "replaced" marker (a "removed" one).

        :raises MalformedMarker: a field does not parse.
        """
        user_changed = False
        fields = _fields(data, REPLACED_PREFIX)
        if fields is None:
            user_changed = True
            fields = _fields(data, NEW_USER_REPLACED_PREFIX)
        if fields is None:
            return None
        if not fields[0]:
            raise MalformedMarker(data, "successor")
        return cls(fields[0], _user(data, fields[2]), _seconds(data, fields[1], "created_at"), user_changed)

    @property
    def lineage(self) -> tuple[UserId, float] | None:
        """The user and ``created_at`` of the lineage (``None``: anonymous, nothing to revoke)."""
        return None if self.user_id is None else (self.user_id, self.created_at)


@dataclass(frozen=True)
class GracedMarker:
    """What a move with a grace period leaves under its successor: the predecessor still live."""

    #: the handle of the id the move retired with a grace period
    predecessor: str

    def encode(self) -> str:
        return f'{GRACED_PREFIX}{self.predecessor}"'

    @classmethod
    def decode(cls, data: str) -> GracedMarker:
        """:raises MalformedMarker: ``data`` is no "graced" marker, or names no handle."""
        if not data.startswith(GRACED_PREFIX) or not data.endswith('"'):
            raise MalformedMarker(data, "kind")
        predecessor = data[len(GRACED_PREFIX):-1]
        if not predecessor:
            raise MalformedMarker(data, "predecessor")
        return cls(predecessor)


@dataclass(frozen=True)
class RevocationMarker:
    """A user's revocation marker."""

    #: the session the last ``remove_all_sessions_for_user`` spared (``None``: none)
    spared: str | None = None
    #: the ``created_at`` of the lineages a removal ended (sessions moved from id to id keep it)
    killed: tuple[float, ...] = ()
    #: when ``remove_all_sessions_for_user`` last ran for the user (``None``: never)
    revoked_at: float | None = None

    def encode(self) -> str:
        at = "" if self.revoked_at is None else repr(self.revoked_at)
        return f'{REVOKED_PREFIX}:{self.spared or ""}|{" ".join(repr(c) for c in self.killed)}|{at}"'

    @classmethod
    def decode(cls, data: str) -> RevocationMarker:
        """The revocation marker ``data`` holds.

        :raises MalformedMarker: ``data`` is no revocation marker, or a field does not parse.
        """
        fields = _fields(data, REVOKED_PREFIX)
        if fields is None:
            raise MalformedMarker(data, "kind")
        spared, killed, at = fields
        return cls(spared or None, tuple(_seconds(data, text, "killed") for text in killed.split()),
                   _seconds(data, at, "revoked_at") if at else None)
