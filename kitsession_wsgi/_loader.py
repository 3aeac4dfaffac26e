"""Loading sessions: a request's session (from its bearer token or its cookie, through
the verified-cookie cache), a verified id or a store record turned into a live
:class:`~kitsession_wsgi.Session`, or refused (expired, unreadable, a marker, replaced
moments ago); and the reload under a session lock (``lock=True``, ``lock_session``).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from ._device import split_device
from ._events import SessionEvents
from ._expiry import is_live
from ._keys import marker_key
from ._locks import SessionLocks
from ._markers import is_marker, is_replaced_marker
from ._options import SessionOptions
from ._session_cookie import CookieIdentity, SessionCookie, authorization_header, bearer_credentials
from .cookies import cookie_header
from .serialization import Serializer
from .session import Session
from .stores.base import SessionRecord

__all__ = ["Gone", "SessionLoader", "readable"]

logger = logging.getLogger("kitsession_wsgi")


class Gone(enum.Enum):
    """Why a verified cookie gave no session."""

    #: the store holds no such session
    UNKNOWN = "unknown"
    #: a login or ``regenerate`` replaced it moments ago (its response set the new cookie)
    REPLACED = "replaced"
    #: the record exists but must not be served (expired, unreadable or a marker); removed
    NOT_SERVED = "not served"


def readable(serializer: Serializer, text: str) -> dict[str, Any] | None:
    """Stored data as a dict, or ``None`` when it is corrupt or not a JSON object."""
    try:
        data = serializer.loads(text)
    except (ValueError, TypeError, RecursionError):
        # Whatever a damaged or hostile record holds, it is never a 500.
        return None
    return data if isinstance(data, dict) else None


class SessionLoader:
    """Loads sessions from ``options.store``, reading requests through ``cookie``.

    ``locks`` takes a session's lock with ``lock=True``; ``events`` sends the
    loading signals (``key_rotated``, ``unknown_id``, ``expired``).
    """

    def __init__(self, options: SessionOptions, cookie: SessionCookie, locks: SessionLocks, events: SessionEvents) -> None:
        self.options = options
        self.cookie = cookie
        self.locks = locks
        self.events = events

    def for_request(self, headers_or_environ: Any) -> Session:
        """:meth:`~kitsession_wsgi.SessionManager.initialize_session`."""
        if self.options.bearer:
            credentials = bearer_credentials(authorization_header(headers_or_environ))
            if credentials is not None:
                return self.from_token(credentials)
        header = cookie_header(headers_or_environ)
        if not header:
            return Session()
        cookie = self.cookie
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
                self.events.key_rotated(session=session)
            return session
        # An id a login just replaced: the response that replaced it set the new cookie,
        # and a logout sent with it removes what it became (see remove_session).
        return Session._anonymous(clear_cookie=replaced is None, replaced_handle=replaced)

    def locked(self, session: Session) -> None:
        """:meth:`~kitsession_wsgi.SessionManager.lock_session`: lock, then reload what the store holds."""
        if session.handle is None or session.is_new or session._destroyed or session._lock_token:
            return
        session._locked(self.locks.acquire(session.handle))
        record = self.options.store.get(session.handle)
        fresh = None if record is None else self.from_record(record, session.id)
        if fresh is None:
            self.locks.release(session)
            if record is None:
                # Removed by another request meanwhile (a logout, or a login that
                # replaced it): that response already sent the right cookie.
                session._vanished()
            else:
                session._removed()  # expired or unreadable: cleared
            return
        session._take_stored_state(fresh)

    def load(self, identity: CookieIdentity) -> Session | Gone:
        """The live session a verified cookie names (locked with ``lock=True``), or why there is none."""
        options = self.options
        token = self.locks.acquire(identity.key) if options.lock else None
        try:
            record = options.store.get(identity.key)
            session = None if record is None else self.from_record(record, identity.session_id)
        except BaseException:
            if token is not None:
                self.locks.release_key(identity.key, token)
            raise
        if session is None:
            if token is not None:
                self.locks.release_key(identity.key, token)
            if record is not None:
                return Gone.NOT_SERVED
            if self.was_replaced(identity.key):
                return Gone.REPLACED
            self.events.unknown_id(handle=identity.key)
            logger.info("unknown session %s presented", options.log_reference(identity.key))
            return Gone.UNKNOWN
        if token is not None:  # from_record's session holds no lock token
            session._locked(token)
        return session

    def from_token(self, credentials: str) -> Session:
        """The session a bearer token names, or an anonymous header session."""
        identity = self.cookie.token_identity(credentials)
        if identity is not None:
            session = self.load(identity)
            if isinstance(session, Session):
                self.cookie.remember_token(credentials, identity)
                # A re-signed token goes out in the Session-Token response header (commit()).
                session._loaded_by("header", resigned=identity.resign)
                if identity.resign:
                    self.events.key_rotated(session=session)
                return session
        # Even anonymous: whatever this request stores travels back as a token, not a cookie.
        return Session._anonymous(transport="header")

    def from_record(self, record: SessionRecord, session_id: str | None) -> Session | None:
        """A Session for a stored record; ``None`` (and the record removed) if it must not be served."""
        options = self.options
        if is_marker(record):
            # Reachable only with unsigned cookies (an id spelling a marker's key):
            # never served, and not removed as unreadable either.
            return None
        if not is_live(record, options.clock(), options.max_age):
            options.store.delete(record.key)
            self.events.expired(handle=record.key)
            logger.info("expired session %s removed", options.log_reference(record.key))
            return None
        device, text = split_device(record.data)
        data = readable(options.serializer, text)
        if data is None:
            logger.error("session %s holds unreadable data; removed", options.log_reference(record.key))
            options.store.delete(record.key)
            return None
        session = Session.from_record(record, session_id, data)
        if device is not None:
            session._records_device(device, text)
        return session

    def listed(self, records: list[SessionRecord]) -> list[Session]:
        """The live, readable sessions among ``records``, oldest first, without ids."""
        options = self.options
        now = options.clock()
        sessions = []
        for record in records:
            if not is_live(record, now, options.max_age):
                continue
            device, text = split_device(record.data)
            data = readable(options.serializer, text)
            if data is None:
                continue
            session = Session.from_record(record, None, data)
            if device is not None:
                session._records_device(device, text)
            sessions.append(session)
        sessions.sort(key=lambda s: s.created_at)
        return sessions

    def was_replaced(self, key: str) -> bool:
        """Whether the session ``key`` was replaced by a login or ``regenerate`` moments ago.

        Asked only for a verified cookie whose session is gone, so it costs
        ordinary requests nothing.
        """
        marker = self.options.store.get(marker_key(key))
        return marker is not None and is_replaced_marker(marker) and self.options.clock() < marker.expires_at
