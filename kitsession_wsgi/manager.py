"""The session core: every session rule, once, for every adapter.

:class:`SessionManager` reads the cookie, verifies it, loads and expires
sessions, decides what to write and builds ``Set-Cookie`` values.  The WSGI
middleware and the Flask extension only translate requests and responses.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from . import signals
from .cookies import (
    ATTRIBUTE_FORBIDDEN_RE,
    COOKIE_NAME_RE,
    build_set_cookie,
    cookie_header,
    read_cookies,
)
from .errors import ConfigurationError, SessionConflict, SessionDataError
from .serialization import JSONSerializer, Serializer
from .session import Session, user_id_from_data, validate_user_id
from .signing import CookieSigner, normalize_keys
from .stores.base import SessionRecord, SessionStore, SetResult, UserId, put_bounded

logger = logging.getLogger("kitsession_wsgi")

_SAMESITE_VALUES = {"lax": "Lax", "strict": "Strict", "none": "None"}
_CONFLICT_POLICIES = ("merge", "raise", "overwrite")
_STORE_METHODS = ("get", "create", "set", "touch", "delete", "delete_all_for_user",
                  "get_all_for_user", "get_all", "purge_expired", "create_id")
#: A stored session whose id collides with a fresh one is astronomically rare;
#: a few retries cover a store whose ``create_id`` is weaker than the default.
_CREATE_ATTEMPTS = 5


def days_to_max_age(days: float = 14) -> int:
    """Seconds in ``days`` days, for the ``max_age`` option (the seed returned milliseconds).

    .. versionadded:: 0.1
    """
    return int(days * 24 * 60 * 60)


def _marker_key(handle: str) -> str:
    """Where the "replaced" marker of the session ``handle`` is kept: a digest no cookie id maps to."""
    return session_key("kitsession:replaced:" + handle)


def session_key(session_id: str) -> str:
    """The storage key of a session id: unpadded URL-safe base64 of its SHA-256.

    Stores and logs only ever see this digest; it cannot be turned back into a
    cookie.  It doubles as the public :attr:`Session.handle`.
    """
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


#: Longer Cookie headers are verified every time, so the cache holds at most
#: ``cookie_cache_size`` x 4 KiB, whatever clients send.
_CACHEABLE_HEADER_LENGTH = 4096
#: At most this many values of the session cookie's name are verified per request.
_MAX_COOKIE_CANDIDATES = 4
#: ``_identify`` result for a session cookie that is present but not acceptable
_INVALID = "invalid"
#: The data of a "replaced" marker: what a login or ``regenerate`` leaves for the old id for
#: ``REPLACED_MARKER_SECONDS``, under a key of its own (``_marker_key``).  A JSON string, so never
#: a session's data (always an object).
_REPLACED_DATA = '"kitsession:replaced"'
#: How long an id replaced by a login or ``regenerate`` is recognised (never served): a request
#: the browser sent with the old cookie before the new one arrived gets an anonymous session
#: and no clearing cookie, which would otherwise delete the new cookie if it arrived last.
REPLACED_MARKER_SECONDS = 60.0
#: ``_load`` result for a cookie naming such an id
_REPLACED = object()


class _ChangeSet(NamedTuple):
    updated: dict[str, Any]
    deleted: list[str]
    user_id_changed: bool
    user_id: UserId | None


class _CookieIdentity(NamedTuple):
    session_id: str
    key: str
    #: verified by an old key: send the cookie again, signed with the current one
    resign: bool


def _seconds(option: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        kind = "seconds (int, float or timedelta)" + (" or None" if allow_none else "")
        raise ConfigurationError(option, f"must be {kind}, got {value!r}")
    if value <= 0:
        raise ConfigurationError(option, f"must be greater than 0, got {value!r}")
    return float(value)


def _flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(option, f"must be True or False, got {value!r}")
    return value


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
    ) -> None:
        missing = [m for m in _STORE_METHODS if not callable(getattr(store, m, None))]
        if missing:
            raise ConfigurationError(
                "store", f"{type(store).__name__} is not a SessionStore (missing {', '.join(missing)})"
            )
        self.store = store

        if not isinstance(name, str) or not COOKIE_NAME_RE.fullmatch(name):
            raise ConfigurationError(
                "name", f"{name!r} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
            )
        self.name = name

        normalized_keys = normalize_keys(keys)
        if signed is None:
            signed = bool(normalized_keys)
        self.signed = _flag("signed", signed)
        if self.signed and not normalized_keys:
            raise ConfigurationError("signed", "signed=True needs at least one key in keys=")
        self.signer: CookieSigner | None = CookieSigner(normalized_keys) if self.signed else None
        # Log lines name sessions by a keyed hash, so logs cannot be matched to store rows.
        self._log_key = normalized_keys[0] if normalized_keys else secrets.token_bytes(32)

        self.secure = _flag("secure", secure)
        self.httponly = _flag("httponly", httponly)
        self.rolling = _flag("rolling", rolling)

        if not isinstance(path, str) or not path.startswith("/") or ATTRIBUTE_FORBIDDEN_RE.search(path):
            raise ConfigurationError("path", f"{path!r} must start with / and hold no ;, comma, space or control character")
        self.path = path
        if domain is not None and (
            not isinstance(domain, str) or not domain or ATTRIBUTE_FORBIDDEN_RE.search(domain)
        ):
            raise ConfigurationError("domain", f"{domain!r} must be None or a host name with no ;, comma, space or control character")
        self.domain = domain

        normalized_samesite = _SAMESITE_VALUES.get(samesite.lower()) if isinstance(samesite, str) else None
        if normalized_samesite is None:
            raise ConfigurationError("samesite", f"must be 'Lax', 'Strict' or 'None' (a string), got {samesite!r}")
        if normalized_samesite == "None" and not self.secure:
            raise ConfigurationError("samesite", "SameSite=None requires secure=True (browsers reject it otherwise)")
        self.samesite = normalized_samesite

        if name.startswith("__Secure-") and not self.secure:
            raise ConfigurationError("name", "a __Secure- cookie requires secure=True")
        if name.startswith("__Host-") and (not self.secure or self.path != "/" or self.domain is not None):
            raise ConfigurationError("name", "a __Host- cookie requires secure=True, path='/' and no domain")

        self.max_age = _seconds("max_age", max_age) or 0.0
        self.idle_timeout = _seconds("idle_timeout", idle_timeout, allow_none=True)
        if self.rolling and self.idle_timeout is None:
            raise ConfigurationError(
                "rolling", "rolling=True moves the idle deadline: set idle_timeout as well (max_age stays the absolute cap)"
            )
        interval = _seconds("touch_interval", touch_interval, allow_none=True)
        if interval is None and self.idle_timeout is not None:
            interval = min(60.0, self.idle_timeout / 10)
        if interval is not None and self.idle_timeout is not None and interval >= self.idle_timeout:
            raise ConfigurationError(
                "touch_interval", f"must be shorter than idle_timeout ({self.idle_timeout:g}s), or active sessions expire"
            )
        self.touch_interval = interval

        if not callable(clock):
            raise ConfigurationError("clock", "must be a zero-argument callable returning Unix time")
        self.clock = clock
        if on_conflict not in _CONFLICT_POLICIES:
            raise ConfigurationError("on_conflict", f"must be one of {', '.join(_CONFLICT_POLICIES)}, got {on_conflict!r}")
        self.on_conflict = on_conflict
        for option, number in (("max_data_bytes", max_data_bytes), ("merge_retries", merge_retries)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ConfigurationError(option, f"must be a positive int, got {number!r}")
        self.max_data_bytes = max_data_bytes
        self.merge_retries = merge_retries
        self.lock = _flag("lock", lock)
        self.lock_timeout = _seconds("lock_timeout", lock_timeout) or 0.0
        self.lock_ttl = _seconds("lock_ttl", lock_ttl) or 0.0
        if isinstance(cookie_cache_size, bool) or not isinstance(cookie_cache_size, int) or cookie_cache_size < 0:
            raise ConfigurationError("cookie_cache_size", f"must be an int >= 0, got {cookie_cache_size!r}")
        self.cookie_cache_size = cookie_cache_size
        self._cookie_cache: dict[str, _CookieIdentity] = {}
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
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
        written until it gets data).  A presented cookie that does not lead to
        a live session is cleared on the response.

        :raises StoreUnavailable: the store cannot be reached.
        """
        header = cookie_header(headers_or_environ)
        if not header:
            return Session()
        cached = self._cookie_cache.get(header)
        if cached is not None:
            candidates: tuple[_CookieIdentity, ...] = (cached,)
        else:
            found = self._identify(header)
            if found is None or found == _INVALID:
                # A cookie we cannot accept is cleared; an absent one costs nothing.
                return self._anonymous(clear_cookie=found is not None)
            assert isinstance(found, tuple)
            candidates = found
        replaced = False
        for identity in candidates:
            session = self._load(identity)
            if session is None or session is _REPLACED:
                replaced = replaced or session is _REPLACED
                continue
            assert isinstance(session, Session)
            if cached is None and self.cookie_cache_size and len(header) <= _CACHEABLE_HEADER_LENGTH:
                put_bounded(self._cookie_cache, header, identity, self.cookie_cache_size)
            if identity.resign:
                session._send_cookie = True
                signals.key_rotated.send(self, session=session)
            return session
        # An id a login just replaced: the response that replaced it set the new cookie.
        return self._anonymous(clear_cookie=not replaced)

    def _load(self, identity: _CookieIdentity) -> Session | object | None:
        """The live session a verified cookie names (locked with ``lock=True``), ``None``,
        or ``_REPLACED`` for an id a login or ``regenerate`` replaced moments ago."""
        token = self._acquire(identity.key) if self.lock else None
        try:
            record = self.store.get(identity.key)
            session = None if record is None else self._session_from_record(record, identity.session_id)
        except BaseException:
            if token is not None:
                self.store.release_lock(identity.key, token)
            raise
        if session is None:
            if token is not None:
                self.store.release_lock(identity.key, token)
            if record is None:
                if self._was_replaced(identity.key):
                    return _REPLACED
                signals.unknown_id.send(self, handle=identity.key)
                logger.info("unknown session %s presented", self.log_reference(identity.key))
            return None
        session._lock_token = token
        return session

    def _identify(self, header: str) -> tuple[_CookieIdentity, ...] | str | None:
        """The verified identities in ``header`` (in order), ``None`` without a cookie, or ``_INVALID``.

        Browsers send a cookie set at a more specific path (or by a sibling
        domain) first, so a stale or foreign value with our name must not hide
        the live one: every value that verifies is a candidate, first first.
        """
        values = read_cookies(header, self.name)
        if not values:
            return None
        identities = []
        for value in values[:_MAX_COOKIE_CANDIDATES]:
            identity = self._verify(value)
            if identity is not None:
                identities.append(identity)
        return tuple(identities) if identities else _INVALID

    def _verify(self, value: str) -> _CookieIdentity | None:
        if not value:
            return None
        if self.signer is None:
            if len(value) > 256 or not value.isprintable():
                return None
            return _CookieIdentity(value, session_key(value), False)
        unsigned = self.signer.unsign(value)
        if unsigned is None:
            signals.invalid_signature.send(self)
            logger.info("session cookie with an invalid signature rejected")
            return None
        return _CookieIdentity(unsigned.session_id, session_key(unsigned.session_id), unsigned.key_index > 0)

    def _anonymous(self, *, clear_cookie: bool) -> Session:
        session = Session()
        session._clear_cookie = clear_cookie
        return session

    def _session_from_record(self, record: SessionRecord, session_id: str | None) -> Session | None:
        """A Session for a stored record; ``None`` (and the record removed) if it must not be served."""
        if self._is_replaced_marker(record):
            # Reachable only with unsigned cookies (an id spelling a marker's key):
            # never served, and not removed as unreadable either.
            return None
        now = self.clock()
        if now >= record.expires_at or now >= record.created_at + self.max_age:
            self.store.delete(record.key)
            signals.expired.send(self, handle=record.key)
            logger.info("expired session %s removed", self.log_reference(record.key))
            return None
        data = self._readable(record.data)
        if data is None:
            logger.error("session %s holds unreadable data; removed", self.log_reference(record.key))
            self.store.delete(record.key)
            return None
        return Session.from_record(record, session_id, data)

    def _is_replaced_marker(self, record: SessionRecord) -> bool:
        """Whether ``record`` is a "replaced" marker (never served as a session)."""
        return record.data == _REPLACED_DATA

    def _was_replaced(self, key: str) -> bool:
        """Whether the session ``key`` was replaced by a login or ``regenerate`` moments ago.

        Asked only for a verified cookie whose session is gone, so it costs
        ordinary requests nothing.
        """
        marker = self.store.get(_marker_key(key))
        return marker is not None and marker.data == _REPLACED_DATA and self.clock() < marker.expires_at

    def _mark_replaced(self, key: str) -> bool:
        """Remove the session ``key``, leaving a "replaced" marker for it; ``False`` if it was gone.

        The marker lives under a key of its own, so nothing done through the
        old id (a save, a touch, a lock) can reach or extend it.  It holds no
        data and no user and expires after ``REPLACED_MARKER_SECONDS`` (stores
        with TTLs drop it then, ``purge_expired`` removes it from SQL).  It is
        written before the session is removed, so no request in between finds
        neither.
        """
        now = self.clock()
        self.store.create(SessionRecord(key=_marker_key(key), data=_REPLACED_DATA, user_id=None, created_at=now,
                                        updated_at=now, expires_at=now + REPLACED_MARKER_SECONDS, version=1))
        return self.store.delete(key)

    # -- writing a response -----------------------------------------------------------

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
        token = self._acquire(session.handle)
        session._lock_token = token
        record = self.store.get(session.handle)
        fresh = None if record is None else self._session_from_record(record, session.id)
        if fresh is None:
            self.release(session)
            if record is None:
                # Removed by another request meanwhile (a logout, or a login that
                # replaced it): that response already sent the right cookie.
                self._vanished(session)
            else:
                self._mark_destroyed(session)  # expired or unreadable: cleared
            return session
        session._take_stored_state(fresh)
        return session

    def release(self, session: Session) -> None:
        """Free the session's lock if this request holds it; safe to call twice."""
        token = session._lock_token
        if token is not None and session.handle is not None:
            session._lock_token = None
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
        if session._lock_token is None:
            return self._commit(session)
        try:
            return self._commit(session)
        finally:
            self.release(session)

    def _commit(self, session: Session) -> str | None:
        if session._destroyed:
            return self.remove_session_cookie() if session._clear_cookie else None
        if session.is_new:
            if not session._data and session._user_id is None:
                return self.remove_session_cookie() if session._clear_cookie else None
            self._save(session)
        elif session._maybe_changed() and (text := self.serializer.dumps(session._data)) != session._loaded_text:
            if not session._user_id_explicit:
                self._follow_data_user(session)
            # Saved (merged) even when emptied, so a concurrent request's keys survive.
            self._save(session, text)
            if not session._destroyed and not session._data and session._user_id is None:
                # Emptied (Flask's session.clear() logout idiom): nothing left to keep.
                self.remove_session(session)
        elif session._user_id != session._loaded_user_id:
            self._save(session)
        elif self.touch_interval is not None:
            self._touch(session)
        if session._destroyed:
            return self.remove_session_cookie() if session._clear_cookie else None
        if session._send_cookie:
            session._send_cookie = False
            return self.set_session_cookie(session)
        return None

    def _follow_data_user(self, session: Session) -> None:
        """Apply the seed's user rule to data changed in place.

        ``data["id"] = 5`` links the session to user 5; data that named a user
        and no longer does (or was emptied, as ``flask.session.clear()`` does)
        ends the link, so clearing the session logs the user out.
        """
        derived = user_id_from_data(session._data)
        if derived is not None:
            session._user_id = derived
        elif not session._data or user_id_from_data(self._loads_object(session._loaded_text)) is not None:
            session._user_id = None

    def _deadline(self, created_at: float, now: float) -> float:
        absolute = created_at + self.max_age
        if self.idle_timeout is None:
            return absolute
        return min(absolute, now + self.idle_timeout)

    def _touch(self, session: Session) -> None:
        now = self.clock()
        deadline = self._deadline(session.created_at, now)
        assert self.touch_interval is not None
        if deadline - session.expires_at < self.touch_interval or session.handle is None:
            return
        if self.store.touch(session.handle, now, deadline):
            session.updated_at = now
            session.expires_at = deadline
            if self.rolling:
                session._send_cookie = True
        else:
            self._vanished(session)

    def _serialize(self, data: dict[str, Any]) -> str:
        return self._checked_size(self.serializer.dumps(data))

    def _checked_size(self, text: str) -> str:
        if len(text) * 4 > self.max_data_bytes and len(text.encode("utf-8")) > self.max_data_bytes:
            raise SessionDataError(
                f"session data is {len(text.encode('utf-8'))} bytes, more than max_data_bytes={self.max_data_bytes}"
            )
        return text

    def _save(self, session: Session, text: str | None = None) -> None:
        """Write the session: insert a new one, or a versioned update merged on conflict.

        ``text`` is the data already serialised by the caller, if it has it.
        """
        text = self._serialize(session._data) if text is None else self._checked_size(text)
        now = self.clock()
        if session.is_new:
            self._insert(session, text, now)
            return
        assert session.handle is not None
        expected = session._version
        user_id = session._user_id
        changes: _ChangeSet | None = None
        for attempt in range(self.merge_retries + 1):
            record = SessionRecord(
                key=session.handle,
                data=text,
                user_id=user_id,
                created_at=session.created_at,
                updated_at=now,
                expires_at=self._deadline(session.created_at, now),
                version=expected + 1,
            )
            result = self.store.set(record, expected)
            if result is SetResult.SAVED:
                session._loaded_text = text
                session._loaded_user_id = user_id
                session._user_id = user_id
                session._version = record.version
                session.updated_at = now
                session.expires_at = record.expires_at
                if self.rolling:
                    session._send_cookie = True
                return
            if result is SetResult.MISSING:
                # Removed by another request (logout, revoke): it stays removed.
                self._vanished(session)
                return
            if self.on_conflict == "raise":
                raise SessionConflict("the session was changed by another request", handle=session.handle)
            if attempt >= 2:
                # Many writers on one session: step aside briefly (jittered, growing)
                # so one request is not starved by the others' faster saves.
                time.sleep(random.uniform(0, min(0.002 * attempt, 0.025)))
            current = self.store.get(session.handle)
            if current is None or now >= current.expires_at:
                self._vanished(session)
                return
            expected = current.version
            if self.on_conflict == "overwrite":
                continue
            if changes is None:
                # What THIS request changed, against what it loaded; computed once,
                # so later merges never mistake other requests' values for ours.
                changes = self._changes(session)
            merged = self._loads_object(current.data)
            merged.update(changes.updated)
            for key in changes.deleted:
                merged.pop(key, None)
            user_id = changes.user_id if changes.user_id_changed else current.user_id
            text = self._serialize(merged)
            session._data = merged
        raise SessionConflict(
            f"the session kept changing under this request ({self.merge_retries} merges)", handle=session.handle
        )

    def _readable(self, text: str) -> dict[str, Any] | None:
        """Stored data as a dict, or ``None`` when it is corrupt or not a JSON object."""
        try:
            data = self.serializer.loads(text)
        except (ValueError, TypeError, RecursionError):
            # Whatever a damaged or hostile record holds, it is never a 500.
            return None
        return data if isinstance(data, dict) else None

    def _loads_object(self, text: str) -> dict[str, Any]:
        """Stored data as a dict; unreadable data reads as empty."""
        return self._readable(text) or {}

    def _changes(self, session: Session) -> _ChangeSet:
        """The keys this request set or deleted, compared with what it loaded."""
        dumps = self.serializer.dumps
        original = self._loads_object(session._loaded_text)
        updated = {
            key: value
            for key, value in session._data.items()
            if key not in original or dumps({key: value}) != dumps({key: original[key]})
        }
        deleted = [key for key in original if key not in session._data]
        user_id_changed = session._user_id != session._loaded_user_id
        return _ChangeSet(updated, deleted, user_id_changed, session._user_id)

    def _insert(self, session: Session, text: str, now: float, *, created_at: float | None = None,
                announce: bool = True) -> None:
        """Store ``session`` under a new id (insert-only, retried on a taken id) and mark its cookie due."""
        user_id = session._user_id
        created_at = now if created_at is None else created_at
        for _attempt in range(_CREATE_ATTEMPTS):
            session_id = self.store.create_id()
            key = session_key(session_id)
            record = SessionRecord(
                key=key,
                data=text,
                user_id=user_id,
                created_at=created_at,
                updated_at=now,
                expires_at=self._deadline(created_at, now),
                version=1,
            )
            if self.store.create(record):
                break
        else:
            raise SessionConflict(f"store.create_id() returned taken ids {_CREATE_ATTEMPTS} times")
        session.id = session_id
        session.handle = key
        session.created_at = created_at
        session.updated_at = now
        session.expires_at = record.expires_at
        session.is_new = False
        session._loaded_text = text
        session._loaded_user_id = user_id
        session._version = 1
        session._send_cookie = True
        session._clear_cookie = False
        if announce:
            signals.created.send(self, session=session)
        old = session._replaces
        session._replaces = None
        if old is not None and old.handle is not None and not old._destroyed:
            self._mark_replaced(old.handle)
            old._destroyed = True
            self.release(old)
            signals.regenerated.send(self, session=session, previous_handle=old.handle)

    def _vanished(self, session: Session) -> None:
        """The session was removed by another request while this one ran.

        It stays removed, and this response sends no cookie: the request that
        removed it (a logout, or a login that replaced it) already answered
        with the right one, and a clearing cookie arriving later would sign
        the browser out of the session a concurrent login just gave it.
        """
        session._destroyed = True
        session._clear_cookie = False
        session._send_cookie = False

    def _mark_destroyed(self, session: Session) -> None:
        session._destroyed = True
        session._clear_cookie = True
        session._send_cookie = False

    # -- seed operations --------------------------------------------------------------

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
            session._replaces = previous
        return session

    def create_session(self, user_id: UserId | None = None, data: dict[str, Any] | None = None) -> Session:
        """Create and store a session now; send it with :meth:`set_session_cookie`.

        :raises StoreUnavailable, SessionDataError:
        """
        session = self.new_session(user_id=user_id, data=data or {})
        self._save(session)
        return session

    def get_session(self, id: str) -> Session | None:
        """The live session with secret id ``id``, or ``None`` (unknown or expired)."""
        if not isinstance(id, str) or not id:
            return None
        record = self.store.get(session_key(id))
        return None if record is None else self._session_from_record(record, id)

    def set_session(self, session: Session, data: dict[str, Any]) -> Session:
        """Replace the session's data and save it now (a new session is created)."""
        session.data = data
        if session.is_new or self.serializer.dumps(session._data) != session._loaded_text or (
            session._user_id != session._loaded_user_id
        ):
            self._save(session)
        return session

    def remove_session(self, session: Session) -> bool:
        """Delete the session's record and mark its cookie for clearing.

        :returns: ``True`` when a record was removed, ``False`` when it was already gone.
        """
        removed = False
        if session.handle is not None and not session._destroyed:
            removed = self.store.delete(session.handle)
        if session._replaces is not None and session._replaces.handle is not None:
            self.store.delete(session._replaces.handle)
            session._replaces = None
        self._mark_destroyed(session)
        signals.destroyed.send(self, session=session)
        return removed

    def remove_all_sessions_for_user(self, user_id: UserId, session: Session | None = None) -> int:
        """Remove every session of ``user_id`` except ``session`` (sign out every other device).

        :returns: how many sessions were removed.
        """
        validate_user_id(user_id)
        except_key = session.handle if session is not None else None
        return self.store.delete_all_for_user(user_id, except_key)

    def remove_session_by_handle(self, handle: str, *, user_id: UserId | None = None) -> bool:
        """Remove the session with public ``handle``, optionally only if it belongs to ``user_id``.

        Lets a "your devices" page revoke one device without ever seeing its id.
        """
        if user_id is not None:
            record = self.store.get(handle)
            if record is None or record.user_id != user_id:
                return False
        return self.store.delete(handle)

    def _listed(self, records: list[SessionRecord]) -> list[Session]:
        now = self.clock()
        sessions = []
        for record in records:
            if now >= record.expires_at or now >= record.created_at + self.max_age:
                continue
            data = self._readable(record.data)
            if data is None:
                continue
            sessions.append(Session.from_record(record, None, data))
        sessions.sort(key=lambda s: s.created_at)
        return sessions

    def get_all_sessions(self) -> list[Session]:
        """Every live session, oldest first, without ids (``id`` is ``None``)."""
        return self._listed(self.store.get_all())

    def get_sessions_for_user(self, user_id: UserId) -> list[Session]:
        """The user's live sessions, oldest first, without ids; ``handle`` identifies each."""
        validate_user_id(user_id)
        return self._listed(self.store.get_all_for_user(user_id))

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
        if session.is_new or session._destroyed:
            return session
        old_key = session.handle
        assert old_key is not None
        if session._user_id != session._loaded_user_id or (
            session._maybe_changed() and self.serializer.dumps(session._data) != session._loaded_text
        ):
            # Merge this request's changes first, so a concurrent save is not lost.
            self._save(session)
            if session._destroyed:
                return session
        current = self.store.get(old_key)
        data = None if current is None else self._readable(current.data)
        if current is None or data is None:
            self._vanished(session)
            return session
        self.release(session)
        if not self._retire(current, grace):
            self._vanished(session)
            return session
        session._data = data
        session._user_id = current.user_id
        self._insert(session, current.data, self.clock(), created_at=session.created_at, announce=False)
        signals.regenerated.send(self, session=session, previous_handle=old_key)
        return session

    def _retire(self, record: SessionRecord, grace: float) -> bool:
        """End an id replaced by :meth:`regenerate`: now, or after ``grace`` seconds.

        A grace record's lifetime is capped by moving its ``created_at``, so no
        save or touch through the old id can ever extend it.  ``False`` when
        another request removed it first.
        """
        if grace <= 0:
            return self._mark_replaced(record.key)
        now = self.clock()
        end = min(now + grace, record.expires_at)
        for _attempt in range(self.merge_retries + 1):
            result = self.store.set(
                record.with_changes(created_at=end - self.max_age, updated_at=now, expires_at=end,
                                    version=record.version + 1),
                record.version,
            )
            if result is SetResult.SAVED:
                return True
            if result is SetResult.MISSING:
                return False
            fresh = self.store.get(record.key)
            if fresh is None:
                return False
            record = fresh
        raise SessionConflict("the session kept changing while its id was replaced", handle=record.key)

    def purge_expired(self) -> int:
        """Remove expired sessions from the store now; return how many."""
        return self.store.purge_expired(self.clock())

    # -- cookies ----------------------------------------------------------------------

    def cookie_value(self, session_id: str) -> str:
        """The cookie value for an id: signed ``s:<id>.<mac>`` or the bare id (not yet URL-encoded)."""
        return self.signer.sign(session_id) if self.signer is not None else session_id

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
        now = self.clock()
        if isinstance(session_or_id, Session):
            if session_or_id.id is None:
                raise ValueError("this session has no id yet (it was listed from the store, or never saved)")
            session_id = session_or_id.id
            expires = (session_or_id.expires_at if self.rolling
                       else session_or_id.created_at + self.max_age)
        else:
            session_id = session_or_id
            expires = now + self.max_age
        if expires_at is not None:
            expires = expires_at
        return build_set_cookie(
            self.name,
            self.cookie_value(session_id),
            max_age=max(0, round(expires - now)) if persistent else None,
            expires=expires if persistent else None,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )

    def remove_session_cookie(self) -> str:
        """The ``Set-Cookie`` value that clears the cookie (same Path and Domain, ``Max-Age=0``)."""
        return build_set_cookie(
            self.name,
            "",
            max_age=0,
            expires=0,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )
