"""Framework-neutral WSGI middleware and view decorators.

Wrap any WSGI application::

    from kitsession_wsgi import MemoryStore, SessionManager
    from kitsession_wsgi.wsgi import SessionMiddleware

    app = SessionMiddleware(app, SessionManager(MemoryStore(), keys=["secret"]))

and inside it read ``environ["kitsession"]`` (a :class:`RequestSession`).
The middleware only translates: every cookie, signing, expiry and store rule
lives in :class:`~kitsession_wsgi.SessionManager`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import logging
import typing as t

from .errors import ConfigurationError, SessionConflict, StoreUnavailable
from .manager import SessionManager
from .session import Session
from .stores.base import UserId

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("kitsession_wsgi")

#: where the middleware puts the request's :class:`RequestSession`
ENVIRON_KEY = "kitsession"


class RequestSession:
    """The session side of one request, at ``environ["kitsession"]``.

    Loads lazily: a request that never touches :attr:`session` costs no
    cookie parsing and no store call.

    .. versionadded:: 0.1
    """

    __slots__ = ("manager", "environ", "_session", "_previous", "_logout")

    def __init__(self, manager: SessionManager, environ: WSGIEnvironment) -> None:
        self.manager = manager
        self.environ = environ
        self._session: Session | None = None
        self._previous: Session | None = None
        # set by with_delete_session: remove the session when the response starts successfully
        self._logout = False

    @property
    def session(self) -> Session:
        """The request's :class:`~kitsession_wsgi.Session` (loaded on first use).

        :raises StoreUnavailable: the store cannot be reached.
        """
        session = self._session
        if session is None:
            session = self._session = self.manager.initialize_session(self.environ)
        return session

    @property
    def loaded(self) -> bool:
        """Whether the application touched the session during this request."""
        return self._session is not None

    def new_session(self, user_id: UserId | None = None, data: dict[str, t.Any] | None = None) -> Session:
        """Replace the request's session with a fresh one (new id on save).

        The fixation defence for logins: when the response is committed the new
        session is stored and the previous one deleted.
        """
        previous = self.session
        self._previous = previous
        self._session = self.manager.new_session(previous, user_id=user_id, data=data)
        return self._session

    def abandon_new_session(self) -> None:
        """Undo :meth:`new_session`: the previous session stays, nothing new is stored."""
        if self._previous is not None:
            self._session = self._previous
            self._previous = None

    def delete_session(self) -> bool:
        """Remove the session from the store and clear its cookie on this response.

        Clears the cookie even when the presented cookie was stale or unknown.
        :returns: ``True`` when a stored record was removed.
        """
        return self.manager.remove_session(self.session)

    def lock(self) -> Session:
        """Take the session's lock and reload it (see :meth:`SessionManager.lock_session`)."""
        return self.manager.lock_session(self.session)

    def commit(self) -> str | None:
        """Persist the session and return the ``Set-Cookie`` value, if one is due."""
        if self._session is None:
            return None
        return self.manager.commit(self._session)

    def release(self) -> None:
        """Free any session lock this request holds (nothing is persisted)."""
        for session in (self._session, self._previous):
            if session is not None:
                self.manager.release(session)


def validate_retry_after(value: object, option: str = "retry_after") -> int:
    """``Retry-After`` seconds: a whole number >= 0.

    :raises ConfigurationError: anything else, naming ``option``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(option, f"must be a whole number of seconds >= 0, got {value!r}")
    return value


def vary_covers_cookie(values: t.Iterable[str]) -> bool:
    """Whether ``Vary`` header values already name ``Cookie`` (or ``*``, which covers it)."""
    for value in values:
        for token in value.split(","):
            token = token.strip().lower()
            if token == "cookie" or token == "*":
                return True
    return False


def add_session_headers(headers: list[tuple[str, str]], set_cookie: str | None) -> None:
    """Add ``Vary: Cookie``, the cookie and ``Cache-Control: no-store`` to a header list.

    ``Cookie`` joins the first ``Vary`` header unless some ``Vary`` header already
    covers it; other ``Set-Cookie`` headers of the application are kept.
    """
    first_vary = None
    vary_values = []
    has_cache_control = False
    for index, (name, value) in enumerate(headers):
        lowered = name.lower()
        if lowered == "vary":
            vary_values.append(value)
            if first_vary is None:
                first_vary = index
        elif lowered == "cache-control":
            has_cache_control = True
    if first_vary is None:
        headers.append(("Vary", "Cookie"))
    elif not vary_covers_cookie(vary_values):
        name, value = headers[first_vary]
        headers[first_vary] = (name, f"{value}, Cookie")
    if set_cookie is not None:
        headers.append(("Set-Cookie", set_cookie))
        if not has_cache_control:
            headers.append(("Cache-Control", "no-store"))


def add_bearer_headers(headers: t.Any, extra: list[tuple[str, str]]) -> None:
    """Add :meth:`SessionManager.bearer_headers` to a WSGI header list or werkzeug ``Headers``.

    ``Authorization`` joins the first ``Vary`` header (one ``Vary`` line, which
    werkzeug's ``response.vary`` reads whole) unless a ``Vary`` already covers
    it; a ``Cache-Control`` (or ``Session-Token``) the application set itself is kept.

    .. versionadded:: 0.2
    """
    for name, value in extra:
        lowered = name.lower()
        found = [index for index, (existing, _) in enumerate(headers) if existing.lower() == lowered]
        if not found:
            if isinstance(headers, list):
                headers.append((name, value))
            else:
                headers.add(name, value)
        elif lowered == "vary":
            tokens = {token.strip().lower() for index in found for token in headers[index][1].split(",")}
            if value.lower() not in tokens and "*" not in tokens:
                first_name, first_value = headers[found[0]]
                headers[found[0]] = (first_name, f"{first_value}, {value}")


def _error_response(start_response: StartResponse, exc: Exception, retry_after: int) -> list[bytes]:
    """503 for an unreachable store, 409 for a session that stayed locked or kept conflicting."""
    if isinstance(exc, StoreUnavailable):
        logger.warning("session store unavailable: %s", exc)
        status, body, retry = "503 Service Unavailable", b"Session store unavailable, please retry shortly.\n", retry_after
    else:
        logger.warning("session conflict: %s", exc)
        status, body, retry = "409 Conflict", b"The session is busy with another request, please retry.\n", 1
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(retry)),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


class _ResponseStart:
    """The ``start_response`` a wrapped app calls: held back until the response really starts.

    PEP 3333 lets an app call ``start_response`` again with ``exc_info`` (a 200
    turned into a 500) until the first body bytes are produced, so the session
    is committed only then, against the final status: when the app returned
    a list or tuple (once it called ``start_response``), before the first
    chunk of any other iterable, or at its first ``write()``.  Every call is
    passed on to the server at that moment, in order; the session headers
    join the last.
    """

    __slots__ = ("request", "start_response", "calls", "sent", "server_write")

    def __init__(self, request: RequestSession, start_response: StartResponse) -> None:
        self.request = request
        self.start_response = start_response
        self.calls: list[tuple[str, list[tuple[str, str]], t.Any]] = []
        self.sent = False
        self.server_write: t.Callable[[bytes], object] | None = None

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
                 ) -> t.Callable[[bytes], object]:
        if self.sent:
            # Too late to change anything: the server re-raises exc_info (PEP 3333).
            return self.start_response(status, headers, exc_info)
        self.calls.append((status, headers, exc_info))
        return self.write

    @property
    def pending(self) -> bool:
        return bool(self.calls) and not self.sent

    def flush(self) -> None:
        """Commit the session against the final status, then start the response at the server."""
        status, headers, exc_info = self.calls[-1]
        request = self.request
        if request._logout and exc_info is None and status[:1] not in ("4", "5"):
            request.delete_session()
        if request._session is not None:
            set_cookie = None
            if exc_info is None and not status.startswith("5"):
                set_cookie = request.commit()
            else:
                request.release()
            add_session_headers(headers, set_cookie)
            add_bearer_headers(headers, request.manager.bearer_headers(request._session))
        self.sent = True
        for call in self.calls:
            self.server_write = self.start_response(*call)

    def write(self, data: bytes) -> object:
        if not self.sent:
            self.flush()
        assert self.server_write is not None
        return self.server_write(data)


class _GuardedResponse:
    """Wraps a response iterable that may still touch the session while it runs.

    Used for generator apps (``start_response`` not called yet) and for
    requests holding a session lock: the response starts (and the session is
    committed) before the first chunk goes out; an outage before that still
    becomes a 503, and the lock is freed when the server closes the response,
    whatever happened.
    """

    def __init__(self, iterable: t.Iterable[bytes], start: _ResponseStart, retry_after: int) -> None:
        self.iterable = iterable
        self.start = start
        self.retry_after = retry_after

    def __iter__(self) -> t.Iterator[bytes]:
        start = self.start
        try:
            for chunk in self.iterable:
                if start.pending:
                    start.flush()
                yield chunk
            if start.pending:
                start.flush()
        except (StoreUnavailable, SessionConflict) as exc:
            start.request.release()
            if start.sent:
                raise
            yield from _error_response(start.start_response, exc, self.retry_after)
        except BaseException:
            # Not every server calls close() after a failing iterable.
            start.request.release()
            raise

    def close(self) -> None:
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
        finally:
            self.start.request.release()


class SessionMiddleware:
    """WSGI middleware giving every request a lazily loaded server-side session.

    :param app: the WSGI application to wrap.
    :param manager: the :class:`~kitsession_wsgi.SessionManager` holding every rule.
    :param retry_after: seconds for the ``Retry-After`` header of the ``503``
        answered when the store is unavailable before the response started.

    The session is committed and its cookie added when the response starts
    (the app returned a list or tuple, any other iterable produced its first
    chunk, or the app called ``write()``), against the final status: a ``5xx``
    or an ``exc_info`` call persists nothing.

    .. versionadded:: 0.1
    """

    def __init__(self, app: WSGIApplication, manager: SessionManager, *, retry_after: int = 5) -> None:
        self.retry_after = validate_retry_after(retry_after)
        self.app = app
        self.manager = manager

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        request = RequestSession(self.manager, environ)
        environ[ENVIRON_KEY] = request
        start = _ResponseStart(request, start_response)
        response: t.Iterable[bytes] | None = None
        try:
            response = self.app(environ, start)
            if start.pending and isinstance(response, (list, tuple)):
                # A body already made: nothing can replace the status any more.  Any
                # other iterable may still call start_response with exc_info before
                # its first chunk, so it is committed then (_GuardedResponse).
                start.flush()
        except (StoreUnavailable, SessionConflict) as exc:
            request.release()
            if start.sent:
                raise
            close = getattr(response, "close", None)
            if close is not None:
                close()
            return _error_response(start_response, exc, self.retry_after)
        except BaseException:
            request.release()
            raise
        if start.sent and (request._session is None or request._session._lock_token is None):
            return response
        return _GuardedResponse(response, start, self.retry_after)


def _request_session(environ: WSGIEnvironment) -> RequestSession:
    request = environ.get(ENVIRON_KEY)
    if not isinstance(request, RequestSession):
        raise RuntimeError("wrap the application in kitsession_wsgi.wsgi.SessionMiddleware first")
    return request


SessionWSGIApp = t.Callable[..., t.Iterable[bytes]]


def with_new_session(app: SessionWSGIApp) -> WSGIApplication:
    """Decorate a WSGI callable ``app(environ, start_response, session)`` that logs a user in.

    ``session`` is a fresh session that replaces the request's session when the
    response succeeds: it is stored with a new id and the old one is deleted.
    If ``app`` raises or answers 4xx/5xx, nothing is stored and the old
    session stays.

    .. versionadded:: 0.1
    """

    @functools.wraps(app)
    def wrapper(environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        request = _request_session(environ)
        session = request.new_session()

        def guarded_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
        ) -> t.Callable[[bytes], object]:
            if exc_info is not None or status[:1] in ("4", "5"):
                request.abandon_new_session()
            return start_response(status, headers, exc_info)

        try:
            return app(environ, guarded_start_response, session=session)
        except BaseException:
            request.abandon_new_session()
            raise

    return wrapper


def session_lock(app: WSGIApplication) -> WSGIApplication:
    """Decorate a WSGI callable so its requests of one session run one at a time.

    The session is locked and reloaded before ``app`` runs; the lock is freed
    when the response is committed (or fails).  Use it for read-modify-write of
    one key, such as a counter.

    .. versionadded:: 0.1
    """

    @functools.wraps(app)
    def wrapper(environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        _request_session(environ).lock()
        return app(environ, start_response)

    return wrapper


def with_delete_session(app: SessionWSGIApp) -> WSGIApplication:
    """Decorate a WSGI callable ``app(environ, start_response, session)`` that logs out.

    When the response starts with a successful (non-4xx/5xx) final status, the
    session's record is removed and its cookie cleared, even for a stale or
    unknown cookie; a 200 replaced by a 500 through ``exc_info`` removes nothing.

    .. versionadded:: 0.1
    """

    @functools.wraps(app)
    def wrapper(environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        request = _request_session(environ)
        session = request.session

        def deleting_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
        ) -> t.Callable[[bytes], object]:
            # Decided when the response starts, against its final status (SessionMiddleware).
            request._logout = exc_info is None and status[:1] not in ("4", "5")
            return start_response(status, headers, exc_info)

        return app(environ, deleting_start_response, session=session)

    return wrapper
