"""Reading a request's session, and when a stored session may be served: expiry (one
:func:`is_live` rule), unreadable data, and the "replaced" markers a login or
``regenerate`` leaves for an old id.

Part of :class:`~kitsession_wsgi.SessionManager`: everything that turns a request
(its bearer token or its cookie, through the verified-cookie cache), a verified id or
a store record into a live :class:`~kitsession_wsgi.Session`, or refuses to; and the
per-session locks a load may take (``lock=True``, :meth:`SessionLoader.locked`).
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from . import signals
from ._session_cookie import CookieIdentity, authorization_header, bearer_credentials, session_key
from .cookies import cookie_header
from .errors import SessionConflict
from .session import Session
from .stores.base import SessionRecord, UserId

if TYPE_CHECKING:
    from .manager import SessionManager
    from .serialization import Serializer

logger = logging.getLogger("kitsession_wsgi")

#: Internal records (markers) hold a JSON string starting so: never a session's data (always an
#: object), so listings skip them as unreadable, and none can be served.
MARKER_PREFIX = '"kitsession:'
#: A "replaced" marker is what a login, ``regenerate`` or a rotation leaves for the old id for
#: ``REPLACED_MARKER_SECONDS``, under a key of its own (:func:`marker_key`); it names the
#: successor's handle, so removing the old id within that time removes the new one too.
REPLACED_PREFIX = '"kitsession:replaced'
#: How long an id replaced by a login or ``regenerate`` is recognised (never served): a request
#: the browser sent with the old cookie before the new one arrived gets an anonymous session
#: and no clearing cookie, which would otherwise delete the new cookie if it arrived last.
REPLACED_MARKER_SECONDS = 60.0
#: A "removed" marker: a removal's claim on the marker slot of an id it removed, so that a
#: move of that id still under way cannot complete (see ``SessionRemover.remove_successors``).
REMOVED_DATA = '"kitsession:removed"'
#: A user's revocation marker: when ``remove_all_sessions_for_user`` last ran for the user
#: and which session it spared, and the lineages a removal ended (see :func:`revoked_data`),
#: so a move to a new id that overlaps either can tell, and undo itself.
REVOKED_PREFIX = '"kitsession:revoked'
#: How long a revocation marker is kept after the last revocation: far longer than any
#: removal of a user's sessions takes, however many they are.
REVOCATION_MARKER_SECONDS = 3600.0


class Gone(enum.Enum):
    """Why a verified cookie gave no session."""

    #: the store holds no such session
    UNKNOWN = "unknown"
    #: a login or ``regenerate`` replaced it moments ago (its response set the new cookie)
    REPLACED = "replaced"
    #: the record exists but must not be served (expired, unreadable or a marker); removed
    NOT_SERVED = "not served"


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


def readable(serializer: Serializer, text: str) -> dict[str, Any] | None:
    """Stored data as a dict, or ``None`` when it is corrupt or not a JSON object."""
    try:
        data = serializer.loads(text)
    except (ValueError, TypeError, RecursionError):
        # Whatever a damaged or hostile record holds, it is never a 500.
        return None
    return data if isinstance(data, dict) else None


def marker_key(handle: str) -> str:
    """Where the "replaced" marker of the session ``handle`` is kept: a digest no cookie id maps to."""
    return session_key("kitsession:replaced:" + handle)


def revocation_key(user_id: UserId) -> str:
    """Where the revocation marker of ``user_id`` is kept (``5`` and ``"5"`` are different users)."""
    return session_key(f"kitsession:revoked:{type(user_id).__name__}:{user_id}")


def replaced_data(successor: str, user_id: UserId | None = None, created_at: float = 0.0) -> str:
    """The data of a "replaced" marker whose session now lives under handle ``successor``,
    with its lineage (the user and the ``created_at`` every move of it keeps)."""
    user = "" if user_id is None else f"{'i' if isinstance(user_id, int) else 's'}:{user_id}"
    return f'{REPLACED_PREFIX}:{successor}|{created_at!r}|{user}"'


def _replaced_fields(marker: SessionRecord) -> list[str]:
    head = REPLACED_PREFIX + ":"
    if not marker.data.startswith(head) or not marker.data.endswith('"'):
        return []
    return marker.data[len(head):-1].split("|", 2)


def revoked_data(spared: str | None, killed: tuple[float, ...] = (), revoked_at: float | None = None) -> str:
    """The data of a user's revocation marker: when ``remove_all_sessions_for_user`` last ran
    (``revoked_at``; ``None``: never), the session it spared (handle ``spared``), and the
    lineages a removal ended (sessions moved from id to id keep their ``created_at``)."""
    at = "" if revoked_at is None else repr(revoked_at)
    return f'{REVOKED_PREFIX}:{spared or ""}|{" ".join(repr(c) for c in killed)}|{at}"'


def _revoked_fields(marker: SessionRecord) -> list[str]:
    head = REVOKED_PREFIX + ":"
    if not marker.data.startswith(head) or not marker.data.endswith('"'):
        return ["", "", ""]
    fields = marker.data[len(head):-1].split("|", 2)
    return fields + [""] * (3 - len(fields))


def spared_by(marker: SessionRecord) -> str | None:
    """The handle a revocation marker spared (``None``: none)."""
    return _revoked_fields(marker)[0] or None


def killed_lineages(marker: SessionRecord) -> tuple[float, ...]:
    """The ``created_at`` of the lineages a removal ended (see ``SessionRemover.remove_successors``)."""
    try:
        return tuple(float(at) for at in _revoked_fields(marker)[1].split())
    except ValueError:
        return ()


def revoked_at(marker: SessionRecord) -> float | None:
    """When the user's sessions were last revoked all at once (``None``: never)."""
    try:
        text = _revoked_fields(marker)[2]
        return float(text) if text else None
    except ValueError:
        return None


def is_marker(record: SessionRecord) -> bool:
    """Whether ``record`` is one of the core's markers (never served, never listed)."""
    return record.data.startswith(MARKER_PREFIX)


def is_replaced_marker(record: SessionRecord) -> bool:
    """Whether ``record`` is a "replaced" marker."""
    return record.data.startswith(REPLACED_PREFIX)


def successor(marker: SessionRecord) -> str | None:
    """The handle a "replaced" marker points to."""
    fields = _replaced_fields(marker)
    return fields[0] or None if fields else None


def marker_lineage(marker: SessionRecord) -> tuple[UserId, float] | None:
    """The user and ``created_at`` of the lineage a "replaced" marker belongs to (``None``: anonymous)."""
    fields = _replaced_fields(marker)
    if len(fields) != 3 or len(fields[2]) < 2:
        return None
    kind, _, user = fields[2].partition(":")
    try:
        return (int(user) if kind == "i" else user), float(fields[1])
    except ValueError:
        return None


class SessionLoader:
    """Loads the sessions of one :class:`~kitsession_wsgi.SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def for_request(self, headers_or_environ: Any) -> Session:
        """:meth:`~kitsession_wsgi.SessionManager.initialize_session`."""
        manager = self.manager
        if manager.bearer:
            credentials = bearer_credentials(authorization_header(headers_or_environ))
            if credentials is not None:
                return self.from_token(credentials)
        header = cookie_header(headers_or_environ)
        if not header:
            return Session()
        cookie = manager._cookie
        # A returning client's exact header: its one verified identity, nothing to remember again.
        remembered = cookie.cached(header)
        candidates = remembered if remembered is not None else cookie.identities(header)
        if not candidates:
            # Absent, or no value verifies: an anonymous session, and the cookie is left
            # alone, as Flask and Starlette do.  Clearing it would help nothing (it costs no
            # store call) and would turn a signing-key mistake into a logout of every user
            # (after the keys are put right, their cookies verify again).
            return Session()
        replaced: str | None = None
        for identity in candidates:
            session = self.load(identity)
            if not isinstance(session, Session):
                if session is Gone.REPLACED and replaced is None:
                    replaced = identity.key
                continue
            if remembered is None:
                cookie.remember(header, identity)
            session._loaded_by("cookie", resigned=identity.resign)
            if identity.resign:
                signals.key_rotated.send(manager, session=session)
            return session
        # An id a login just replaced: the response that replaced it set the new cookie,
        # and a logout sent with it removes what it became (see remove_session).
        return Session._anonymous(clear_cookie=replaced is None, replaced_handle=replaced)

    def acquire(self, key: str) -> str:
        """Take the store's lock of session ``key``, waiting up to ``lock_timeout``; the lock token."""
        manager = self.manager
        token = secrets.token_hex(16)
        give_up = time.monotonic() + manager.lock_timeout
        pause = 0.002
        while not manager.store.acquire_lock(key, token, manager.lock_ttl):
            if time.monotonic() >= give_up:
                raise SessionConflict(
                    f"the session stayed locked by another request for {manager.lock_timeout:g}s", handle=key
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return token

    def locked(self, session: Session) -> None:
        """:meth:`~kitsession_wsgi.SessionManager.lock_session`: lock, then reload what the store holds."""
        if session.handle is None or session.is_new or session._destroyed or session._lock_token:
            return
        manager = self.manager
        session._locked(self.acquire(session.handle))
        record = manager.store.get(session.handle)
        fresh = None if record is None else self.from_record(record, session.id)
        if fresh is None:
            manager.release(session)
            if record is None:
                # Removed by another request meanwhile (a logout, or a login that
                # replaced it): that response already sent the right cookie.
                manager._writer.vanished(session)
            else:
                session._removed()  # expired or unreadable: cleared
            return
        session._take_stored_state(fresh)

    def load(self, identity: CookieIdentity) -> Session | Gone:
        """The live session a verified cookie names (locked with ``lock=True``), or why there is none."""
        manager = self.manager
        token = self.acquire(identity.key) if manager.lock else None
        try:
            record = manager.store.get(identity.key)
            session = None if record is None else self.from_record(record, identity.session_id)
        except BaseException:
            if token is not None:
                manager.store.release_lock(identity.key, token)
            raise
        if session is None:
            if token is not None:
                manager.store.release_lock(identity.key, token)
            if record is not None:
                return Gone.NOT_SERVED
            if self.was_replaced(identity.key):
                return Gone.REPLACED
            signals.unknown_id.send(manager, handle=identity.key)
            logger.info("unknown session %s presented", manager.log_reference(identity.key))
            return Gone.UNKNOWN
        if token is not None:  # from_record's session holds no lock token
            session._locked(token)
        return session

    def from_token(self, credentials: str) -> Session:
        """The session a bearer token names, or an anonymous header session."""
        identity = self.manager._cookie.token_identity(credentials)
        if identity is not None:
            session = self.load(identity)
            if isinstance(session, Session):
                self.manager._cookie.remember_token(credentials, identity)
                # A re-signed token goes out in the Session-Token response header (commit()).
                session._loaded_by("header", resigned=identity.resign)
                if identity.resign:
                    signals.key_rotated.send(self.manager, session=session)
                return session
        # Even anonymous: whatever this request stores travels back as a token, not a cookie.
        return Session._anonymous(transport="header")

    def from_record(self, record: SessionRecord, session_id: str | None) -> Session | None:
        """A Session for a stored record; ``None`` (and the record removed) if it must not be served."""
        manager = self.manager
        if is_marker(record):
            # Reachable only with unsigned cookies (an id spelling a marker's key):
            # never served, and not removed as unreadable either.
            return None
        if not is_live(record, manager.clock(), manager.max_age):
            manager.store.delete(record.key)
            signals.expired.send(manager, handle=record.key)
            logger.info("expired session %s removed", manager.log_reference(record.key))
            return None
        data = readable(manager.serializer, record.data)
        if data is None:
            logger.error("session %s holds unreadable data; removed", manager.log_reference(record.key))
            manager.store.delete(record.key)
            return None
        return Session.from_record(record, session_id, data)

    def listed(self, records: list[SessionRecord]) -> list[Session]:
        """The live, readable sessions among ``records``, oldest first, without ids."""
        manager = self.manager
        now = manager.clock()
        sessions = []
        for record in records:
            if not is_live(record, now, manager.max_age):
                continue
            data = readable(manager.serializer, record.data)
            if data is None:
                continue
            sessions.append(Session.from_record(record, None, data))
        sessions.sort(key=lambda s: s.created_at)
        return sessions

    def was_replaced(self, key: str) -> bool:
        """Whether the session ``key`` was replaced by a login or ``regenerate`` moments ago.

        Asked only for a verified cookie whose session is gone, so it costs
        ordinary requests nothing.
        """
        marker = self.manager.store.get(marker_key(key))
        return marker is not None and is_replaced_marker(marker) and self.manager.clock() < marker.expires_at
