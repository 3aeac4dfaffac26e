"""The session cookie, both ways: which ids a request's ``Cookie`` header names, and
the ``Set-Cookie`` values that hand out or clear a session; and the same signed id
carried as an ``Authorization: Bearer`` token (the header transport).

Built by :class:`~kitsession_wsgi.SessionManager` from its options; the request path's
cookie rules read in one place.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from werkzeug.datastructures import Headers

from ._bounded import put_bounded
from ._events import SessionEvents
from ._keys import session_key
from ._options import SessionOptions
from .cookies import build_set_cookie, read_cookies
from .errors import ConfigurationError
from .session import Session
from .signing import MAC_LENGTH, MAX_ID_LENGTH, SIGNED_PREFIX

__all__ = ["STEADY_SECONDS", "TOKEN_HEADER", "CookieIdentity", "RefreshFacts", "SessionCookie", "authorization_header",
           "bearer_credentials"]

logger = logging.getLogger("kitsession_wsgi")

#: Longer Cookie headers are verified every time, so the cache holds at most
#: ``cookie_cache_size`` x 4 KiB, whatever clients send.
CACHEABLE_HEADER_LENGTH = 4096
#: At most this many values of the session cookie's name are examined per request: a
#: sibling subdomain or a deeper path can plant values that the browser sends before
#: ours ("cookie tossing"), and up to 16 of them must not hide the live session.
MAX_COOKIE_VALUES = 20
#: At most this many values that verify (each costs a store read) are tried per request.
MAX_VERIFIED_CANDIDATES = 8
#: ``s:`` + id + ``.`` + 43 characters of MAC: longer values are refused before any HMAC.
MAX_SIGNED_LENGTH = len(SIGNED_PREFIX) + MAX_ID_LENGTH + 1 + MAC_LENGTH

#: Without an idle timeout there are no touches to pace re-reads: remembered refresh
#: facts are then trusted this many seconds after they were learned.
STEADY_SECONDS = 60.0

#: The response header that hands a header session its new token (a new session, or
#: one whose token verified with an old key and was re-signed with the current one).
TOKEN_HEADER = "Session-Token"
#: RFC 6750 ``b64token`` (the token68 of RFC 7235): what a bearer token may hold.
TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: At most one log line per this many seconds reports rejected cookie values and tokens
#: (with their count): a client sending junk must not be able to fill the log.
REJECTION_LOG_INTERVAL = 60.0
#: id + ``.`` + MAC: longer tokens are refused before any regex or HMAC.
MAX_TOKEN_LENGTH = MAX_SIGNED_LENGTH - len(SIGNED_PREFIX)


def authorization_header(source: Any) -> str | None:
    """The raw ``Authorization`` header from a WSGI environ, werkzeug ``Headers`` or a mapping.

    Several values (repeated headers) are joined with ``", "``, so a request
    carrying two never has one of them picked: the joined text is no token.
    """
    if type(source) is dict and "wsgi.version" in source:
        value = source.get("HTTP_AUTHORIZATION")
    elif isinstance(source, Headers):
        values = source.getlist("Authorization")
        value = ", ".join(values) if values else None
    elif isinstance(source, Mapping):
        if "wsgi.version" in source or "HTTP_COOKIE" in source or "HTTP_AUTHORIZATION" in source:
            value = source.get("HTTP_AUTHORIZATION")
        else:
            value = source.get("Authorization")
            if value is None:
                value = next((v for k, v in source.items() if isinstance(k, str) and k.lower() == "authorization"),
                             None)
    else:
        return None  # cookie_header() names the accepted types in its TypeError
    if value is None or type(value) is str:
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return ", ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in value)
    return str(value)


def bearer_credentials(header: str | None) -> str | None:
    """What follows ``Bearer`` in an ``Authorization`` header; ``None`` for any other scheme.

    The scheme is matched case-insensitively (RFC 7235: ``bearer`` and ``BEARER``
    are the Bearer scheme) and must be followed by a space or nothing, so
    ``Bearertoken`` or ``Basic ...`` are other schemes, left to the application.
    The credentials are returned unchecked (``""`` for a bare ``Bearer``).
    """
    if not header:
        return None
    header = header.strip(" \t")
    if header[:6].lower() != "bearer" or header[6:7] not in (" ", ""):
        return None
    return header[7:].lstrip(" ")


class RejectionLog:
    """Counts cookie values and tokens that failed verification, and logs the count at most
    once per :data:`REJECTION_LOG_INTERVAL` (the first one at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unlogged = 0
        self._logged_at: float | None = None

    def add(self, count: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._unlogged += count
            if self._logged_at is not None and now - self._logged_at < REJECTION_LOG_INTERVAL:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
        logger.info("%d session cookie value(s) or token(s) with an invalid signature rejected "
                    "(at most one such line per %g s)", count, REJECTION_LOG_INTERVAL)


class CookieIdentity(NamedTuple):
    """A session id read from a cookie whose signature verified."""

    session_id: str
    key: str
    #: verified by an old key: send the cookie again, signed with the current one
    resign: bool


class RefreshFacts(NamedTuple):
    """What a cookie's re-sending needs to know about its session, remembered per verified
    ``Cookie`` header, so a request that never touches the session costs no store read.

    Learned when a request of that exact header that left the session alone loaded it; used by
    :meth:`SessionCookie.refresh_facts` only until ``trusted_until``: the session's stored
    deadline, its absolute end, or the moment an expiry-only write (a touch) becomes due,
    whichever is first (without an idle timeout, :data:`STEADY_SECONDS` after it was
    learned).  So a client costs at most about one store read per touch interval.
    """

    session_id: str
    #: the session's ``expires_at`` as last read or written: a re-sent cookie's expiry
    expires_at: float
    #: what the adapter noted with it (Flask: the session's raw ``"_permanent"``)
    note: Any
    trusted_until: float


class SessionCookie:
    """Reads and writes the session cookie (and bearer token) that ``options`` describe.

    ``events`` sends the ``invalid_signature`` signal.
    """

    def __init__(self, options: SessionOptions, events: SessionEvents) -> None:
        self.options = options
        self.events = events
        # Verified Cookie headers -> their identity, as the 1-tuple cached() hands out as is.
        self._cache: dict[str, tuple[CookieIdentity]] = {}
        # Kept apart from the Cookie header cache: a Cookie header with the text of a
        # token must never be taken for one (and the other way round).
        self._token_cache: dict[str, CookieIdentity] = {}
        self._rejections = RejectionLog()
        # Verified Cookie headers -> what re-sending their cookie needs (RefreshFacts).
        self._facts: dict[str, RefreshFacts] = {}
        self._check_attributes()

    def _check_attributes(self) -> None:
        """Build both cookies once now, so a value werkzeug cannot write fails here, not per request."""
        options = self.options
        try:
            self.removal()
        except (ValueError, UnicodeError) as exc:
            raise ConfigurationError("domain", f"{options.domain!r} cannot be written in a cookie: {exc}") from exc
        try:
            self.set_cookie("0" * 43)
        except (ValueError, OverflowError, OSError) as exc:
            raise ConfigurationError("max_age", f"{options.max_age:g}s cannot be written as a cookie expiry: {exc}") from exc

    # -- reading ----------------------------------------------------------------------

    def cached(self, header: str) -> tuple[CookieIdentity] | None:
        """The identity :meth:`remember` stored for this exact header (``None``: not seen)."""
        return self._cache.get(header)

    def identities(self, header: str) -> tuple[CookieIdentity, ...] | None:
        """The verified identities in ``header``, first first; ``None`` when it holds no
        session cookie, ``()`` when it holds only values that do not verify.

        Browsers send a cookie set at a more specific path (or by a sibling
        domain) first, so a stale or foreign value with our name must not hide
        the live one: every value that verifies is a candidate, first first.
        Parses and verifies every time: the caller asks :meth:`cached` first.
        """
        values = read_cookies(header, self.options.name)
        if not values:
            return None
        identities: list[CookieIdentity] = []
        rejected = 0
        for value in values[:MAX_COOKIE_VALUES]:
            identity = self._verify(value)
            if identity is None:
                if value and self.options.signer is not None:  # an empty or unsigned value is no forgery
                    rejected += 1
            elif identity not in identities:
                identities.append(identity)
                if len(identities) == MAX_VERIFIED_CANDIDATES:
                    break
        if rejected:
            self._rejected(rejected)
        return tuple(identities)

    def remember(self, header: str, identity: CookieIdentity) -> None:
        """Cache ``header`` -> ``identity``, so the next request with it costs no parse and no HMAC."""
        size = self.options.cookie_cache_size
        if size and len(header) <= CACHEABLE_HEADER_LENGTH and header not in self._cache:
            put_bounded(self._cache, header, (identity,), size)

    def remember_refresh_facts(self, header: str, session: Session, note: Any) -> None:
        """Remember what re-sending ``header``'s cookie needs, after a request with it loaded
        or committed ``session``; forget it when the session ended.

        Only for a header the cookie cache verified and names this session (its exact
        text: a forged or foreign header never reaches here), and only for a live
        cookie session.  Cheap when nothing changed: the facts are replaced only when
        the deadline or the note moved, or they stopped being trusted.
        """
        remembered = self._cache.get(header)
        if remembered is None:
            return
        if (session._destroyed or session.id is None or session._transport != "cookie"
                or remembered[0].key != session.handle):
            self._facts.pop(header, None)
            return
        options = self.options
        now = options.clock()
        known = self._facts.get(header)
        if known is not None and known.expires_at == session.expires_at and known.note == note \
                and now < known.trusted_until:
            return
        trusted_until = min(session.expires_at, session.created_at + options.max_age)
        if options.idle_timeout is not None and options.touch_interval is not None:
            # deadline(now) - expires_at >= touch_interval from this moment on: a touch is due
            trusted_until = min(trusted_until, session.expires_at - options.idle_timeout + options.touch_interval)
        else:
            trusted_until = min(trusted_until, now + STEADY_SECONDS)
        put_bounded(self._facts, header, RefreshFacts(session.id, session.expires_at, note, trusted_until),
                    options.cookie_cache_size)

    def forget_refresh_facts(self, header: str) -> None:
        """Drop the facts remembered for ``header``: the next untouched request asks the store."""
        self._facts.pop(header, None)

    def refresh_facts(self, header: str) -> RefreshFacts | None:
        """The facts remembered for ``header``, while they are trusted (``None``: ask the store)."""
        facts = self._facts.get(header)
        if facts is None or self.options.clock() >= facts.trusted_until:
            return None
        return facts

    def token_identity(self, credentials: str) -> CookieIdentity | None:
        """The verified identity a bearer token names, or ``None``.

        The token is ``<id>.<mac>``, its MAC under the token keys (derived from
        the cookie keys for tokens alone: a cookie's value is no token), and it
        goes through the same checks as a cookie: rotation, the same lengths,
        the same full-length, constant-time comparison.  Its shape (RFC 6750
        characters, length) is checked first, so junk costs string tests, not
        an HMAC.
        """
        cached = self._token_cache.get(credentials)
        if cached is not None:
            return cached
        signer = self.options.token_signer
        unsigned = None
        if signer is not None and len(credentials) <= MAX_TOKEN_LENGTH and TOKEN68_RE.fullmatch(credentials):
            unsigned = signer.unsign(credentials)
        if unsigned is None:
            self._rejected()
            return None
        return CookieIdentity(unsigned.session_id, session_key(unsigned.session_id), unsigned.key_index > 0)

    def remember_token(self, credentials: str, identity: CookieIdentity) -> None:
        """Cache a token that led to a live session (bounded like the cookie cache)."""
        size = self.options.cookie_cache_size
        if size and credentials not in self._token_cache:
            put_bounded(self._token_cache, credentials, identity, size)

    def _rejected(self, count: int = 1) -> None:
        """``count`` values of one request did not verify: one signal, and the rate-limited log."""
        self.events.invalid_signature()
        self._rejections.add(count)

    def _verify(self, value: str) -> CookieIdentity | None:
        """The identity a cookie value names if it verifies (never logs: the caller counts)."""
        if not value:
            return None
        signer = self.options.signer
        if signer is None:
            if len(value) > MAX_ID_LENGTH or not value.isprintable():
                return None
            return CookieIdentity(value, session_key(value), False)
        # Cheap shape checks first (the signer checks the prefix and the MAC's length),
        # so a header full of junk values costs string tests, not HMACs.
        unsigned = signer.unsign(value) if len(value) <= MAX_SIGNED_LENGTH else None
        if unsigned is None:
            return None
        return CookieIdentity(unsigned.session_id, session_key(unsigned.session_id), unsigned.key_index > 0)

    # -- writing ----------------------------------------------------------------------

    def value(self, session_id: str) -> str:
        """The cookie value for an id: signed ``s:<id>.<mac>`` or the bare id (not yet URL-encoded)."""
        signer = self.options.signer
        return signer.sign(session_id) if signer is not None else session_id

    def token(self, session_id: str) -> str:
        """The bearer token for an id, ``<id>.<mac>`` under the token keys (never a cookie's value).

        :raises ValueError: the id holds characters a bearer token cannot carry
            (a store whose ``create_id`` is not URL-safe).
        """
        signer = self.options.token_signer
        assert signer is not None, "bearer=True is refused without keys"
        token = signer.sign(session_id)
        if not TOKEN68_RE.fullmatch(token):
            raise ValueError("this session id cannot be carried in a bearer token (A-Z a-z 0-9 - . _ ~ + / only)")
        return token

    def bearer_headers(self, session: Session) -> list[tuple[str, str]]:
        """:meth:`~kitsession_wsgi.SessionManager.bearer_headers` (``bearer=True``)."""
        if not session._token_due or session.id is None or session._destroyed:
            return [("Vary", "Authorization")]
        session._token_is_due(False)
        return [("Vary", "Authorization"), (TOKEN_HEADER, self.token(session.id)), ("Cache-Control", "no-store")]

    def set_cookie(self, session_or_id: Session | str, *, persistent: bool = True,
                   expires_at: float | None = None) -> str:
        """The ``Set-Cookie`` value for a session (its expiry) or a bare id (``max_age`` from now).

        ``expires_at`` replaces that expiry; ``persistent=False`` gives a browser-session
        cookie (neither ``Max-Age`` nor ``Expires``).
        """
        options = self.options
        now = options.clock()
        if isinstance(session_or_id, Session):
            if session_or_id.id is None:
                raise ValueError("this session has no id yet (it was listed from the store, or never saved)")
            session_id = session_or_id.id
            expires = (session_or_id.expires_at if options.rolling
                       else session_or_id.created_at + options.max_age)
        else:
            session_id = session_or_id
            expires = now + options.max_age
        if expires_at is not None:
            expires = expires_at
        if not persistent:
            return self._build(self.value(session_id), max_age=None, expires=None)
        return self._build(self.value(session_id), max_age=max(0, round(expires - now)), expires=expires)

    def removal(self) -> str:
        """The ``Set-Cookie`` value that clears the cookie (same Path and Domain, ``Max-Age=0``)."""
        return self._build("", max_age=0, expires=0)

    def _build(self, value: str, *, max_age: int | None, expires: float | None) -> str:
        options = self.options
        return build_set_cookie(
            options.name,
            value,
            max_age=max_age,
            expires=expires,
            path=options.path,
            domain=options.domain,
            secure=options.secure,
            httponly=options.httponly,
            samesite=options.samesite,
        )
