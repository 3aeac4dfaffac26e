"""The session core: every session rule, once, for every adapter.

:class:`SessionManager` reads the cookie, verifies it, loads and expires
sessions, decides what to write and builds ``Set-Cookie`` values.  The WSGI
middleware and the Flask extension only translate requests and responses
(through :mod:`kitsession_wsgi.lifecycle`, the one request lifecycle).

The manager holds the public API and its documentation; it builds its parts
from its options and delegates.  Each part gets its collaborators passed in and
none knows the manager (one concept per module, dependencies one way):

* ``_options``: every option's rule (a :class:`ConfigurationError` naming it), in
  :class:`~kitsession_wsgi._options.SessionOptions`, shared by every part;
* ``_keys``: the storage digest of an id (``session_key``) and the markers' keys;
* ``_markers``: the markers' format (typed values with ``encode`` / ``decode``);
* ``_expiry``: the one liveness rule and the deadline a write stores;
* ``_session_cookie``: which ids a ``Cookie`` header (or a bearer token) names, and the
  ``Set-Cookie`` values;
* ``_locks``: per-session locks;
* ``_loader``: a request's session, and when a stored session may be served;
* ``_lineage``: a fresh id, moves to a new id, the old id's retirement, the revocation
  marker, and why revocation wins every race (the argument with its code);
* ``_writer``: the commit decision, versioned saves and merges, touches;
* ``_remover``: logout, removal by handle, sign-out-everywhere;
* ``_session_limit``: ``max_sessions_per_user``, and why it holds under concurrent logins;
* ``_events``: the signals, sent with the manager as their sender;
* ``_backoff``: the breaker that stops calling a failing store for ``outage_backoff``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from . import metrics as _metrics
from ._backoff import guarded
from ._events import SessionEvents
from ._keys import session_key
from ._lineage import Lineage
from ._loader import SessionLoader
from ._locks import SessionLocks
from ._markers import REPLACED_MARKER_SECONDS
from ._options import SessionOptions, days_to_max_age
from ._remover import SessionRemover
from ._session_limit import SessionLimit
from ._session_cookie import TOKEN_HEADER, RefreshFacts, SessionCookie, authorization_header, bearer_credentials
from .cookies import cookie_header
from ._writer import SessionWriter
from .errors import ConfigurationError
from .serialization import Serializer
from .session import Session, require_user_id, validate_user_id
from .signing import CookieSigner
from .stores.base import SessionStore, UserId

__all__ = ["REPLACED_MARKER_SECONDS", "TOKEN_HEADER", "RefreshFacts", "SessionManager", "days_to_max_age",
           "session_key"]

T = TypeVar("T")
P = ParamSpec("P")


def _with_signature_of(
    options_init: Callable[Concatenate[SessionOptions, P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[SessionManager, P], None]]:
    """The manager takes exactly :class:`SessionOptions`' arguments: one signature, for
    type checkers and ``inspect.signature`` alike, written once (in ``_options``)."""
    def decorate(init: Callable[..., None]) -> Callable[Concatenate[SessionManager, P], None]:
        functools.update_wrapper(init, options_init, assigned=(), updated=())  # sets __wrapped__ only
        return init
    return decorate


class _Option(Generic[T]):
    """One of the manager's options, shown as its attribute: ``manager.max_age`` is
    ``manager.options.max_age`` (read and replaced there, so every part sees it)."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, manager: None, owner: type) -> _Option[T]: ...
    @overload
    def __get__(self, manager: SessionManager, owner: type) -> T: ...
    def __get__(self, manager: SessionManager | None, owner: type) -> T | _Option[T]:
        if manager is None:
            return self
        value: T = getattr(manager.options, self.name)
        return value

    def __set__(self, manager: SessionManager, value: T) -> None:
        setattr(manager.options, self.name, value)


def _no_wrap(store: SessionStore) -> SessionStore:
    return store


class SessionManager:
    """Server-side sessions over one :class:`~kitsession_wsgi.SessionStore`.

    All options are validated when the manager is built; a bad value raises
    :class:`~kitsession_wsgi.ConfigurationError` naming the option.  Each is
    kept as a public attribute of the same name (``manager.max_age``).

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
        ``"overwrite"`` is last-write-wins (but merges when another request changed
        the session's user meanwhile, so a stale save never brings back a user a
        logout removed).
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
    :param metrics: record this manager's sessions and store calls in OpenTelemetry
        (:mod:`kitsession_wsgi.metrics`; nothing is recorded unless a ``MeterProvider``
        is configured).  ``.. versionadded:: 0.3``
    :param store_timeout: seconds that bound each store call, connect and read
        (:meth:`SessionStore.apply_timeout <kitsession_wsgi.SessionStore.apply_timeout>`:
        the bundled stores set their driver's timeouts, filling in those a user's client
        lacks).  ``.. versionadded:: 0.3``
    :param outage_backoff: after a store call raised
        :class:`~kitsession_wsgi.StoreUnavailable`, seconds during which store calls fail
        at once without reaching the store; then one request probes it.  ``None`` calls
        the store every time.  ``.. versionadded:: 0.3``
    :param record_ip: how much of the client address a session's
        :class:`~kitsession_wsgi.Device` keeps: ``"truncated"`` (default: an IPv4
        address to its /24, an IPv6 address to its /48), ``"full"`` or ``"none"``.
        ``.. versionadded:: 0.3``
    :param max_sessions_per_user: at most this many live sessions per user (``None``: no
        limit).  A save that links a session to its user (a login) removes that user's
        least recently active sessions beyond it, each announced with
        :data:`~kitsession_wsgi.signals.session_evicted`; it holds under concurrent
        logins (see ``kitsession_wsgi._session_limit``).  ``.. versionadded:: 0.3``

    .. versionadded:: 0.1
    """

    name = _Option[str]()
    signed = _Option[bool]()
    signer = _Option["CookieSigner | None"]()
    bearer = _Option[bool]()
    secure = _Option[bool]()
    httponly = _Option[bool]()
    rolling = _Option[bool]()
    path = _Option[str]()
    domain = _Option["str | None"]()
    samesite = _Option[str]()
    max_age = _Option[float]()
    idle_timeout = _Option["float | None"]()
    touch_interval = _Option["float | None"]()
    clock = _Option[Callable[[], float]]()
    on_conflict = _Option[str]()
    max_data_bytes = _Option[int]()
    merge_retries = _Option[int]()
    rotate_on_user_change = _Option[bool]()
    lock = _Option[bool]()
    lock_timeout = _Option[float]()
    lock_ttl = _Option[float]()
    cookie_cache_size = _Option[int]()
    serializer = _Option[Serializer]()
    metrics = _Option[bool]()
    store_timeout = _Option[float]()
    outage_backoff = _Option["float | None"]()
    record_ip = _Option[str]()
    max_sessions_per_user = _Option["int | None"]()

    @_with_signature_of(SessionOptions.__init__)
    def __init__(self, store: SessionStore, **arguments: Any) -> None:
        #: the validated options, shared by every part (each is also an attribute: ``manager.max_age``)
        self.options = SessionOptions(store, **arguments)
        options = self.options
        apply_timeout = getattr(store, "apply_timeout", None)  # a duck-typed store may lack it
        if apply_timeout is not None:
            apply_timeout(options.store_timeout)
        wrap = _metrics.instrumented if options.metrics else _no_wrap
        options.store = self._calls = guarded(store, options.outage_backoff, wrap)
        self._given_store = store
        # The parts, each given what it works with (the manager is only the signals' sender).
        options = self.options
        events = SessionEvents(self)
        self._cookie = SessionCookie(options, events)
        self._locks = SessionLocks(options)
        lineage = Lineage(options, self._locks, events)
        self._loader = SessionLoader(options, self._cookie, self._locks, events)
        self._remover = SessionRemover(options, lineage, events)
        limit = SessionLimit(options, lineage, events)
        self._writer = SessionWriter(options, self._cookie, self._locks, lineage, self._remover, events, limit)

    @property
    def store(self) -> SessionStore:
        """The store given to the manager (its calls go through the outage backoff and,
        with OpenTelemetry configured, the metrics' timing); assigning one makes the
        manager call it directly."""
        calls = self.options.store
        return self._given_store if calls is self._calls else calls

    @store.setter
    def store(self, store: SessionStore) -> None:
        self.options.store = store

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
        return self._loader.for_request(headers_or_environ)

    def remember_refresh_facts(self, headers_or_environ: Any, session: Session, note: Any = None) -> None:
        """Remember, for the request's exact ``Cookie`` header, what re-sending its cookie
        needs (the session's id and deadline, and the adapter's ``note``): a later request
        with that header that never touches the session then needs no store read to
        re-send it (:meth:`refresh_facts`).  Called by an adapter after a request loaded
        or committed ``session``; a session that ended is forgotten.

        Nothing here serves data or keeps a session alive, which is why it is safe
        (rule 4 in docs/design.rst, expiry enforced on the server on every read):

        * the facts are only what a re-sent ``Set-Cookie`` carries.  A request that
          reads the session still reads the store, which alone decides whether the
          session lives; the cookie cache never holds data;
        * a re-sent cookie's expiry is the deadline the store held when the facts were
          learned, never later, and the re-sending writes nothing: a session revoked,
          logged out or expired meanwhile (in any process) is not made live again by
          its cookie being re-sent; the next real read finds it gone and clears the cookie;
        * they are trusted only until a touch would be due (or the deadline), so a
          client that keeps coming costs about one store read (and the touch) per
          touch interval and process, and what another process changed (a session made
          non-permanent) is seen within that interval.

        Only a header the verified-cookie cache holds for this session is remembered
        (never a forged one), and nothing with ``cookie_cache_size=0``.
        """
        header = cookie_header(headers_or_environ)
        if header:
            self._cookie.remember_refresh_facts(header, session, note)

    def forget_refresh_facts(self, headers_or_environ: Any) -> None:
        """Forget what :meth:`remember_refresh_facts` remembered for this request's ``Cookie``
        header (the adapter's note changed: a session made permanent or not)."""
        header = cookie_header(headers_or_environ)
        if header:
            self._cookie.forget_refresh_facts(header)

    def refresh_facts(self, headers_or_environ: Any) -> RefreshFacts | None:
        """What :meth:`remember_refresh_facts` remembered for this request's ``Cookie`` header,
        while it is trusted; ``None`` means "load the session" (first sight of the header, a
        touch is due, the deadline passed, or the request is read from a bearer token).

        Costs no store call: :meth:`set_session_cookie` with ``facts.session_id`` and
        ``expires_at=facts.expires_at`` re-sends the cookie.
        """
        if self.bearer and bearer_credentials(authorization_header(headers_or_environ)) is not None:
            return None
        header = cookie_header(headers_or_environ)
        return self._cookie.refresh_facts(header) if header else None

    def log_reference(self, handle: str) -> str:
        """A short keyed hash of a session handle, for log lines (never the id or cookie)."""
        return self.options.log_reference(handle)

    # -- per-session locks ------------------------------------------------------------

    def lock_session(self, session: Session) -> Session:
        """Take the session's lock and reload it, for a read-modify-write of one key.

        Requests of the same session then run one at a time until
        :meth:`commit` or :meth:`release` (adapters call both for you).  A new
        session has nothing to lock; it is returned as it is.

        :raises SessionConflict: the lock was not free within ``lock_timeout``.
        :raises StoreUnavailable: the store cannot be reached.
        """
        self._loader.locked(session)
        return session

    def release(self, session: Session) -> None:
        """Free the session's lock if this request holds it; safe to call twice."""
        self._locks.release(session)

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
        return self._writer.commit(session)

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
        return self._cookie.token(self._writer.token_session_id(session))

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
        return self._cookie.bearer_headers(session) if self.bearer else []

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
        record = self.options.store.get(session_key(id))
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
        return self._remover.remove(session)

    def remove_all_sessions_for_user(self, user_id: UserId, session: Session | None = None) -> int:
        """Remove every session of ``user_id`` except ``session`` (sign out every other device).

        :returns: how many sessions were removed.
        """
        return self._remover.remove_all_for_user(require_user_id(user_id),
                                                 session.handle if session is not None else None)

    def remove_session_by_handle(self, handle: str, *, user_id: UserId | None = None) -> bool:
        """Remove the session with public ``handle``, optionally only if it belongs to ``user_id``.

        Lets a "your devices" page revoke one device without ever seeing its id.
        """
        return self._remover.remove_by_handle(handle, None if user_id is None else require_user_id(user_id))

    def get_all_sessions(self) -> list[Session]:
        """Every live session, oldest first, without ids (``id`` is ``None``)."""
        return self._loader.listed(self.options.store.get_all())

    def get_sessions_for_user(self, user_id: UserId) -> list[Session]:
        """The user's live sessions, oldest first, without ids; ``handle`` identifies each."""
        user_id = require_user_id(user_id)
        return self._loader.listed(self.options.store.get_all_for_user(user_id))

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
        return self.options.store.purge_expired(self.clock())

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
