"""The session core: every session rule, once, for every adapter.

:class:`SessionManager` reads the cookie, verifies it, loads and expires
sessions, decides what to write and builds ``Set-Cookie`` values.  The WSGI
middleware and the Flask extension only translate requests and responses.

The manager holds the public API; the work is done by four private modules,
each readable alone:

* ``_options``: validation of every option (a :class:`ConfigurationError` naming it);
* ``_session_cookie``: which ids a ``Cookie`` header names, and the ``Set-Cookie`` values;
* ``_lifetime``: when a stored session may be served (one ``is_live`` rule, replaced markers);
* ``_writing``: the commit decision, versioned saves and merges, inserts, touches, retirement.

.. versionadded:: 0.1
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from . import _options, signals
from ._lifetime import REPLACED_MARKER_SECONDS, Gone, SessionLoader
from ._session_cookie import TOKEN_HEADER, SessionCookie, authorization_header, bearer_credentials, session_key
from ._writing import SessionWriter
from .errors import ConfigurationError, SessionConflict
from .serialization import JSONSerializer, Serializer
from .cookies import cookie_header
from .session import Session, require_user_id, validate_user_id
from .signing import CookieSigner, normalize_keys
from .stores.base import SessionStore, UserId

__all__ = ["REPLACED_MARKER_SECONDS", "TOKEN_HEADER", "SessionManager", "days_to_max_age", "session_key"]


def days_to_max_age(days: float = 14) -> int:
    """Seconds in ``days`` days, for the ``max_age`` option (svelte-kit-session returned milliseconds).

    .. versionadded:: 0.1
    """
    return int(days * 24 * 60 * 60)


class SessionManager:
    """Server-side sessions over one :class:`~kitsession_wsgi.SessionStore`.

    All options are validated here; a bad value raises
    :class:`~kitsession_wsgi.ConfigurationError` naming the option.

    :param store: where sessions live.
    :param name: cookie name; ``__Host-`` requires ``secure``, ``path="/"`` and no
        ``domain``; ``__Secure-`` requires ``secure``.
    :param keys: signing key (a str or bytes is ONE key) or keys, newest first:
        ``keys[0]`` signs, every key verifies.
    :param signed: sign the cookie; defaults to ``True`` when keys are given.
    :param secure, httponly, path, domain, samesite: cookie attributes
        (``samesite="None"`` requires ``secure``).
    :param max_age: absolute lifetime in seconds (int or timedelta).
    :param idle_timeout: seconds without a request after which the session ends.
    :param rolling: re-send the cookie with the moved idle deadline on activity
        (needs ``idle_timeout``; never past the absolute lifetime).
    :param clock: zero-argument callable returning Unix time; every expiry decision uses it.
    :param on_conflict: what a save does when another request saved the same
        session first: ``"merge"`` re-applies this request's changed keys,
        ``"raise"`` raises :class:`~kitsession_wsgi.SessionConflict`,
        ``"overwrite"`` is last-write-wins.
    :param max_data_bytes: the largest serialised data accepted.
    :param touch_interval: least seconds between two expiry-only writes of one
        session (default: a tenth of ``idle_timeout``, at most 60).
    :param serializer: turns data into text and back (default: compact JSON).
    :param cookie_cache_size: how many verified cookie headers to remember, so a
        returning client costs no parse and no HMAC; 0 disables it.
    :param merge_retries: how many times a conflicting save is merged and retried.
    :param lock: serialise the requests of one session with the store's lock
        (for read-modify-write of one key; costs a store round trip or two per request).
    :param lock_timeout: seconds to wait for a session lock before
        :class:`~kitsession_wsgi.SessionConflict`.
    :param lock_ttl: seconds after which a lock whose holder died frees itself.
    :param rotate_on_user_change: give a stored session a new id whenever its user
        changes (anonymous -> user, user A -> user B), by any route (data keys, the
        ``user_id`` setter, Flask's ``session[...]``), so an id planted before a login
        is worthless after it.  Turn off only if every login goes through
        ``with_new_session`` / :meth:`regenerate`.
    :param bearer: also accept the session as ``Authorization: Bearer <token>``
        (API clients; see :meth:`session_token`).  Needs signing keys.  A
        request whose ``Authorization`` header uses the Bearer scheme is read
        from the header only (its cookie is ignored), never gets a
        ``Set-Cookie``, and learns a new token from the ``Session-Token``
        response header.  ``.. versionadded:: 0.2``

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        name: str = "session",
        keys: str | bytes | Sequence[str | bytes] | None = None,
        signed: bool | None = None,
        secure: bool = True,
        httponly: bool = True,
        path: str = "/",
        domain: str | None = None,
        samesite: str = "Strict",
        max_age: int | float | timedelta = days_to_max_age(14),
        idle_timeout: int | float | timedelta | None = None,
        rolling: bool = False,
        clock: Callable[[], float] = time.time,
        on_conflict: str = "merge",
        max_data_bytes: int = 524288,
        touch_interval: int | float | timedelta | None = None,
        serializer: Serializer | None = None,
        cookie_cache_size: int = 4096,
        merge_retries: int = 100,
        lock: bool = False,
        lock_timeout: int | float | timedelta = 10.0,
        lock_ttl: int | float | timedelta = 30.0,
        rotate_on_user_change: bool = True,
        bearer: bool = False,
    ) -> None:
        _options.store(store)
        self.store = store
        self.name = _options.cookie_name(name)

        normalized_keys = normalize_keys(keys)
        if signed is None:
            signed = bool(normalized_keys)
        self.signed = _options.flag("signed", signed)
        if self.signed and not normalized_keys:
            raise ConfigurationError("signed", "signed=True needs at least one key in keys=")
        self.signer: CookieSigner | None = CookieSigner(normalized_keys) if self.signed else None
        self.bearer = _options.bearer(bearer, signed=self.signed)
        # Log lines name sessions by a keyed hash, so logs cannot be matched to store rows.
        self._log_key = normalized_keys[0] if normalized_keys else secrets.token_bytes(32)

        self.secure = _options.flag("secure", secure)
        self.httponly = _options.flag("httponly", httponly)
        self.rolling = _options.flag("rolling", rolling)
        self.path = _options.cookie_path(path)
        self.domain = _options.cookie_domain(domain)
        self.samesite = _options.samesite(samesite, secure=self.secure)
        _options.cookie_prefix(name, secure=self.secure, path=self.path, domain=self.domain)

        self.max_age = _options.seconds("max_age", max_age) or 0.0
        self.idle_timeout = _options.seconds("idle_timeout", idle_timeout, allow_none=True)
        if self.rolling and self.idle_timeout is None:
            raise ConfigurationError(
                "rolling", "rolling=True moves the idle deadline: set idle_timeout as well (max_age stays the absolute cap)"
            )
        self.touch_interval = _options.touch_interval(touch_interval, self.idle_timeout)

        if not callable(clock):
            raise ConfigurationError("clock", "must be a zero-argument callable returning Unix time")
        self.clock = clock
        self.on_conflict = _options.conflict_policy(on_conflict)
        self.max_data_bytes = _options.positive_int("max_data_bytes", max_data_bytes)
        self.merge_retries = _options.positive_int("merge_retries", merge_retries)
        self.rotate_on_user_change = _options.flag("rotate_on_user_change", rotate_on_user_change)
        self.lock = _options.flag("lock", lock)
        self.lock_timeout = _options.seconds("lock_timeout", lock_timeout) or 0.0
        self.lock_ttl = _options.seconds("lock_ttl", lock_ttl) or 0.0
        self.cookie_cache_size = _options.cache_size(cookie_cache_size)
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()

        self._cookie = SessionCookie(self)
        self._loader = SessionLoader(self)
        self._writer = SessionWriter(self)
        self._check_cookie_attributes()

    def _check_cookie_attributes(self) -> None:
        """Build both cookies once now, so a value werkzeug cannot write fails here, not per request."""
        try:
            self.remove_session_cookie()
        except (ValueError, UnicodeError) as exc:
            raise ConfigurationError("domain", f"{self.domain!r} cannot be written in a cookie: {exc}") from exc
        try:
            self.set_session_cookie("0" * 43)
        except (ValueError, OverflowError, OSError) as exc:
            raise ConfigurationError("max_age", f"{self.max_age:g}s cannot be written as a cookie expiry: {exc}") from exc

    # -- reading a request ------------------------------------------------------------

    def initialize_session(self, headers_or_environ: Any) -> Session:
        """The request's session, from a WSGI environ, werkzeug ``Headers`` or header mapping.

        Never raises on client input: a missing, malformed, forged, unknown or
        expired cookie gives a new anonymous session (``is_new``; nothing is
        written until it gets data).  A cookie that verifies but names no live
        session (unknown, expired, revoked) is cleared on the response; one that
        does not verify is left alone.

        With ``bearer=True``, a request whose ``Authorization`` header uses the
        Bearer scheme (in any case) is read from that header only: its cookie is
        neither read nor cleared, a token that does not verify costs no store
        call, and a bad, forged, expired or revoked token gives an anonymous
        session (the application answers 401).  Any other scheme (``Basic``)
        leaves the request to its cookie.

        :raises StoreUnavailable: the store cannot be reached.
        """
        if self.bearer:
            credentials = bearer_credentials(authorization_header(headers_or_environ))
            if credentials is not None:
                return self._loader.from_token(credentials)
        header = cookie_header(headers_or_environ)
        if not header:
            return Session()
        cookie = self._cookie
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
            session = self._loader.load(identity)
            if not isinstance(session, Session):
                if session is Gone.REPLACED and replaced is None:
                    replaced = identity.key
                continue
            if remembered is None:
                cookie.remember(header, identity)
            session._loaded_by("cookie", resigned=identity.resign)
            if identity.resign:
                signals.key_rotated.send(self, session=session)
            return session
        # An id a login just replaced: the response that replaced it set the new cookie,
        # and a logout sent with it removes what it became (see remove_session).
        return Session._anonymous(clear_cookie=replaced is None, replaced_handle=replaced)

    def log_reference(self, handle: str) -> str:
        """A short keyed hash of a session handle, for log lines (never the id or cookie)."""
        return hmac.new(self._log_key, handle.encode("ascii", "replace"), hashlib.sha256).hexdigest()[:16]

    # -- per-session locks ------------------------------------------------------------

    def _acquire(self, key: str) -> str:
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.002
        while not self.store.acquire_lock(key, token, self.lock_ttl):
            if time.monotonic() >= deadline:
                raise SessionConflict(
                    f"the session stayed locked by another request for {self.lock_timeout:g}s", handle=key
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return token

    def lock_session(self, session: Session) -> Session:
        """Take the session's lock and reload it, for a read-modify-write of one key.

        Requests of the same session then run one at a time until
        :meth:`commit` or :meth:`release` (adapters call both for you).  A new
        session has nothing to lock; it is returned as it is.

        :raises SessionConflict: the lock was not free within ``lock_timeout``.
        :raises StoreUnavailable: the store cannot be reached.
        """
        if session.handle is None or session.is_new or session._destroyed or session._lock_token:
            return session
        session._locked(self._acquire(session.handle))
        record = self.store.get(session.handle)
        fresh = None if record is None else self._loader.from_record(record, session.id)
        if fresh is None:
            self.release(session)
            if record is None:
                # Removed by another request meanwhile (a logout, or a login that
                # replaced it): that response already sent the right cookie.
                self._writer.vanished(session)
            else:
                self._writer.mark_destroyed(session)  # expired or unreadable: cleared
            return session
        session._take_stored_state(fresh)
        return session

    def release(self, session: Session) -> None:
        """Free the session's lock if this request holds it; safe to call twice."""
        token = session._lock_token
        if token is not None and session.handle is not None:
            session._locked(None)
            self.store.release_lock(session.handle, token)

    def commit(self, session: Session) -> str | None:
        """Persist what the request changed; return the ``Set-Cookie`` value to send, if any.

        Adapters call this once per request, after a successful (non-5xx)
        response.  Nothing is written for a session that never got data, an
        unchanged session is not rewritten, and activity only moves expiry
        (once per ``touch_interval``).

        :raises StoreUnavailable: the store cannot be reached.
        :raises SessionConflict: with ``on_conflict="raise"``, or when merging keeps failing.
        :raises SessionDataError: the data is too large or not serialisable.
        """
        # A new id or a re-signed token is due before the write; a rolling refresh (same token) is not.
        token_changes = session._send_cookie
        id_before = session.id
        if session._lock_token is None:
            set_cookie = self._writer.commit(session)
        else:
            try:
                set_cookie = self._writer.commit(session)
            finally:
                self.release(session)
        if session._transport != "header":
            return set_cookie
        # The header transport never sets or clears a cookie (the request may carry a
        # browser's cookie that is not ours to touch): a new token for the session
        # goes out in the Session-Token response header instead (bearer_headers).
        if set_cookie is not None and not session._destroyed and (token_changes or session.id != id_before):
            session._token_is_due(True)
        return None

    # -- svelte-kit-session's operations ----------------------------------------------

    def new_session(self, previous: Session | None = None, *, user_id: UserId | None = None,
                    data: dict[str, Any] | None = None) -> Session:
        """A fresh, unsaved session that replaces ``previous`` when it is committed.

        The fixation defence behind ``with_new_session``: the new session gets a
        new id when :meth:`commit` stores it, and only then is ``previous``
        deleted.  If the new session is never given data or a user, nothing is
        written and ``previous`` stays.
        """
        session = Session(user_id=validate_user_id(user_id))
        if data is not None:
            session.data = data
        if previous is not None and not previous.is_new:
            session._replacing(previous)
        if previous is not None and previous._transport == "header":
            session._carried_by("header")  # a header request's new session is a header session too
        return session

    def session_token(self, session: Session) -> str:
        """The bearer token for ``session``: ``Authorization: Bearer <token>`` presents it.

        The token is the signed session id in an RFC 6750 form (``<id>.<mac>``),
        verified like the cookie (same keys, rotation and strict-id rules); it
        lives as long as the session and dies with it (logout, revocation from
        the devices page, sign out everywhere, expiry).  The session becomes a
        header session for this request: no cookie is set for it.

        A new session (from :meth:`new_session` / ``with_new_session``) is
        stored now, under a fresh id, because a token must name a stored
        session: call this last, once the login succeeded.  It replaces the
        previous session only if that was a header session too; a browser's
        cookie session it was to replace is left as it is (the token is a
        device of its own).

        .. versionadded:: 0.2

        :raises ConfigurationError: the manager was built without ``bearer=True``.
        :raises ValueError: the session came from a cookie (its id stays in the
            HttpOnly cookie: mint a token for a new session instead), was removed,
            was listed from the store (no id), or is new and empty (an empty
            session is never stored).
        :raises StoreUnavailable, SessionDataError: storing a new session failed.
        """
        if not self.bearer:
            raise ConfigurationError("bearer", "session_token() needs bearer=True (and signing keys)")
        if session._destroyed:
            raise ValueError("this session was removed: it has no token")
        if session.is_new:
            if not session._data and session._user_id is None:
                raise ValueError("an empty session is never stored: give it data or a user before its token")
            previous = session._replaces
            if previous is not None and previous._transport != "header":
                session._replacing(None)
            session._carried_by("header")
            self._writer.save(session)
        elif session._transport == "cookie":
            raise ValueError("this session came from its HttpOnly cookie; mint a token for a new session instead")
        if session.id is None:
            raise ValueError("this session was listed from the store: it has no id, so no token")
        session._carried_by("header")
        return self._cookie.token(session.id)

    def bearer_headers(self, session: Session) -> list[tuple[str, str]]:
        """Response headers the header transport adds for a request that loaded ``session``.

        Adapters add them after :meth:`commit`: ``Vary: Authorization`` whenever
        the manager reads the header (``bearer=True``), and, when the session's
        token changed (a new header session was stored, or its token verified
        with an old key and was re-signed), ``Session-Token: <token>`` with
        ``Cache-Control: no-store`` (to be added only if the application set no
        ``Cache-Control``).  Empty with ``bearer=False``.

        .. versionadded:: 0.2
        """
        if not self.bearer:
            return []
        if not session._token_due or session.id is None or session._destroyed:
            return [("Vary", "Authorization")]
        session._token_is_due(False)
        return [("Vary", "Authorization"), (TOKEN_HEADER, self._cookie.token(session.id)),
                ("Cache-Control", "no-store")]

    def create_session(self, user_id: UserId | None = None, data: dict[str, Any] | None = None) -> Session:
        """Create and store a session now; send it with :meth:`set_session_cookie`.

        :raises StoreUnavailable, SessionDataError:
        """
        session = self.new_session(user_id=user_id, data=data or {})
        self._writer.save(session)
        return session

    def get_session(self, id: str) -> Session | None:
        """The live session with secret id ``id``, or ``None`` (unknown or expired)."""
        if not isinstance(id, str) or not id:
            return None
        record = self.store.get(session_key(id))
        return None if record is None else self._loader.from_record(record, id)

    def set_session(self, session: Session, data: dict[str, Any]) -> Session:
        """Replace the session's data and save it now (a new session is created)."""
        session.data = data
        if session.is_new or self._writer.differs_from_stored(session):
            self._writer.save(session)
        return session

    def remove_session(self, session: Session) -> bool:
        """Delete the session's record and mark its cookie for clearing.

        :returns: ``True`` when a record was removed, ``False`` when it was already gone.
        """
        removed = False
        if session.handle is not None and not session._destroyed:
            removed = self.store.delete(session.handle)
            self._writer.remove_successors(session.handle)
        elif session._replaced_handle is not None:
            # Sent with an id a login or regenerate replaced moments ago: the logout
            # is meant for what that session became.
            self._writer.remove_successors(session._replaced_handle)
        previous = session._take_replaced()
        if previous is not None and previous.handle is not None:
            self.store.delete(previous.handle)
            self._writer.remove_successors(previous.handle)
        self._writer.mark_destroyed(session)
        signals.destroyed.send(self, session=session)
        return removed

    def remove_all_sessions_for_user(self, user_id: UserId, session: Session | None = None) -> int:
        """Remove every session of ``user_id`` except ``session`` (sign out every other device).

        :returns: how many sessions were removed.
        """
        user_id = require_user_id(user_id)
        except_key = session.handle if session is not None else None
        # First, so that a move to a new id running meanwhile undoes itself (see _writing).
        self._writer.note_revocation(user_id, except_key)
        return self.store.delete_all_for_user(user_id, except_key)

    def remove_session_by_handle(self, handle: str, *, user_id: UserId | None = None) -> bool:
        """Remove the session with public ``handle``, optionally only if it belongs to ``user_id``.

        Lets a "your devices" page revoke one device without ever seeing its id.
        """
        if user_id is not None:
            user_id = require_user_id(user_id)
            record = self.store.get(handle)
            if record is None:
                # Moved to a new id moments ago (a login, regenerate or rotation): the
                # device is the same, so its new id goes.
                return self._writer.remove_successors(handle, user_id=user_id)
            if record.user_id != user_id:
                return False
        removed = self.store.delete(handle)
        return self._writer.remove_successors(handle) or removed

    def get_all_sessions(self) -> list[Session]:
        """Every live session, oldest first, without ids (``id`` is ``None``)."""
        return self._loader.listed(self.store.get_all())

    def get_sessions_for_user(self, user_id: UserId) -> list[Session]:
        """The user's live sessions, oldest first, without ids; ``handle`` identifies each."""
        user_id = require_user_id(user_id)
        return self._loader.listed(self.store.get_all_for_user(user_id))

    def regenerate(self, session: Session, *, grace: float = 0) -> Session:
        """Give ``session`` a new id, keeping its data and lifetime.

        The defence against session fixation when privileges change.  The old
        id stops working at once, or with ``grace`` seconds only after that
        many seconds, so requests already in flight with the old cookie are
        still served (their changes stay with the old record, which then
        expires).  A session not stored yet gets its id when it is first saved
        anyway; a session another request removed stays removed.

        :raises ValueError: ``grace`` is negative.
        """
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        self._writer.regenerate(session, grace)
        return session

    def purge_expired(self) -> int:
        """Remove expired sessions from the store now; return how many."""
        return self.store.purge_expired(self.clock())

    # -- cookies ----------------------------------------------------------------------

    def cookie_value(self, session_id: str) -> str:
        """The cookie value for an id: signed ``s:<id>.<mac>`` or the bare id (not yet URL-encoded)."""
        return self._cookie.value(session_id)

    def set_session_cookie(self, session_or_id: Session | str, *, persistent: bool = True,
                           expires_at: float | None = None) -> str:
        """The ``Set-Cookie`` value that hands a session to the browser.

        Carries ``Max-Age`` and ``Expires`` from the session's expiry: the
        absolute lifetime, or the idle deadline with ``rolling``.  Given a bare
        id, the expiry is a full ``max_age`` from now.  ``expires_at`` (Unix
        time) replaces that expiry, for an adapter that re-sends the cookie on
        every response and so can carry the session's current deadline
        (Flask's ``SESSION_REFRESH_EACH_REQUEST``).  With ``persistent=False``
        the cookie carries neither: a browser-session cookie (Flask's
        non-permanent session), while the server-side expiry still ends the session.

        .. versionchanged:: 0.2
           The ``persistent`` and ``expires_at`` keywords.
        """
        return self._cookie.set_cookie(session_or_id, persistent=persistent, expires_at=expires_at)

    def remove_session_cookie(self) -> str:
        """The ``Set-Cookie`` value that clears the cookie (same Path and Domain, ``Max-Age=0``)."""
        return self._cookie.removal()
