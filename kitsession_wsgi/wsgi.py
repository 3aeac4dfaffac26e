"""Framework-neutral WSGI middleware and view decorators.

Wrap any WSGI application::

    from kitsession_wsgi import MemoryStore, SessionManager
    from kitsession_wsgi.wsgi import SessionMiddleware

    app = SessionMiddleware(app, SessionManager(MemoryStore(), keys=["secret"]))

and inside it read ``environ["kitsession"]`` (a :class:`RequestSession`), or
``request_session(request)`` from a framework view (Bottle, Falcon, Pyramid,
Django, werkzeug, ...).  The middleware only translates: every cookie,
signing, expiry and store rule lives in :class:`~kitsession_wsgi.SessionManager`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from http import HTTPStatus
import logging
import typing as t

from ._http import (  # re-exported: importable from here since 0.1
    OutageReport,
    add_bearer_headers,
    add_response_headers,
    add_session_headers,
    error_reply,
    validate_retry_after,
    vary_covers_cookie,
)
from ._lifecycle import RequestLifecycle
from .errors import KitSessionError, SessionConflict, StoreUnavailable
from .manager import SessionManager
from .session import Session
from .stores.base import UserId

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("kitsession_wsgi")

__all__ = [
    "ENVIRON_KEY", "MiddlewareMissing", "NotAWSGIApplication", "RequestSession", "SessionMiddleware",
    "add_bearer_headers", "add_session_headers", "request_session", "session_lock", "validate_retry_after",
    "vary_covers_cookie", "with_delete_session", "with_new_session",
]

#: where the middleware puts the request's :class:`RequestSession`
ENVIRON_KEY = "kitsession"


class MiddlewareMissing(KitSessionError, RuntimeError):
    """A view asked for the session of a request that did not pass through :class:`SessionMiddleware`.

    Also a ``RuntimeError``, which is what this situation raised before 0.2.

    .. versionadded:: 0.2
    """


class NotAWSGIApplication(KitSessionError, TypeError):
    """A WSGI-only decorator was put on something that is not called as a WSGI application.

    ``with_new_session``, ``with_delete_session`` and ``session_lock`` wrap plain
    ``app(environ, start_response)`` callables; framework views use
    :meth:`RequestSession.login`, :meth:`RequestSession.logout` and
    :meth:`RequestSession.lock` instead.

    .. versionadded:: 0.2
    """


def _succeeded(status: str, exc_info: t.Any) -> bool:
    """A response that keeps a login or performs a logout: status below 400, no ``exc_info``."""
    return exc_info is None and status[:1] in ("1", "2", "3")


class RequestSession:
    """The session side of one request, at ``environ["kitsession"]``.

    Get it with :func:`request_session` from a framework's request object.
    Loads lazily: a request that never touches :attr:`session` costs no
    cookie parsing and no store call.  Everything is committed when the
    response starts (see :class:`SessionMiddleware`).  The lifecycle itself
    (lazy load, a login kept only on success, locks) is the core's
    :attr:`lifecycle`, shared with the Flask extension; this class adds what
    only WSGI has: a response that starts while the application still runs.

    :attr:`manager` is the :class:`~kitsession_wsgi.SessionManager`, for what a
    request does beyond its own session (``remove_all_sessions_for_user``,
    ``get_sessions_for_user``, ``remove_session_by_handle``, ...).

    .. versionadded:: 0.1
    """

    __slots__ = ("manager", "environ", "lifecycle", "_streamed")

    def __init__(self, manager: SessionManager, environ: WSGIEnvironment) -> None:
        self.manager = manager
        self.environ = environ
        #: the request's :class:`~kitsession_wsgi._lifecycle.RequestLifecycle`
        self.lifecycle = RequestLifecycle(manager, environ)
        # committed before the first chunk of a body that still runs application code
        self._streamed = False

    @property
    def session(self) -> Session:
        """The request's :class:`~kitsession_wsgi.Session` (loaded on first use).

        :raises StoreUnavailable: the store cannot be reached.
        """
        return self.lifecycle.session

    @property
    def loaded(self) -> bool:
        """Whether the application touched the session during this request."""
        return self.lifecycle.loaded

    def login(self, user_id: UserId | None = None, data: dict[str, t.Any] | None = None) -> Session:
        """Log a user in: a fresh session, kept only if the response succeeds.

        The fixation-safe path of :meth:`new_session` (a new id; the previous
        session is deleted when the new one is stored), decided when the
        response starts: a final status below 400 without ``exc_info`` keeps
        it, anything else (a 403 for a wrong password, a 500, an exception)
        drops it, storing nothing and sending no cookie; the previous session
        then stays as it was.

        :returns: the new session; set its :attr:`~kitsession_wsgi.Session.data` as needed.

        .. versionadded:: 0.2
        """
        self._warn_if_streamed("login()")
        return self.lifecycle.login(user_id=user_id, data=data)

    def logout(self) -> None:
        """Log out when the response succeeds: remove the session and clear its cookie.

        Decided when the response starts: with a final status below 400 and
        no ``exc_info`` the session's record is removed and its cookie
        cleared (even a stale or unknown cookie); a 4xx or 5xx answer (a
        failed CSRF check, an error) leaves the session as it was.

        .. versionadded:: 0.2
        """
        self._warn_if_streamed("logout()")
        self.lifecycle.logout()

    def new_session(self, user_id: UserId | None = None, data: dict[str, t.Any] | None = None) -> Session:
        """Replace the request's session with a fresh one (new id on save), whatever the status.

        The fixation defence for logins: when the response is committed the new
        session is stored and the previous one deleted.  A 4xx answer still
        stores it (only a 5xx or an exception persists nothing): for a login
        that may fail use :meth:`login`, which also drops it on a 4xx.
        """
        self._warn_if_streamed("new_session()")
        return self.lifecycle.new_session(user_id=user_id, data=data)

    def abandon_new_session(self) -> None:
        """Undo :meth:`new_session` or :meth:`login`: the previous session stays, nothing new is stored.

        For a view that decides, after starting a login, not to log in after all.
        """
        self.lifecycle.restore()

    def delete_session(self) -> bool:
        """Remove the session from the store now and clear its cookie on this response.

        Acts at once, whatever status the response ends with: for a logout that
        may fail use :meth:`logout`.  Clears the cookie even when the presented
        cookie was stale or unknown.

        :returns: ``True`` when a stored record was removed.
        """
        return self.lifecycle.delete()

    def lock(self) -> Session:
        """Take the session's lock and reload it (see :meth:`SessionManager.lock_session`).

        Call it first thing in a view that does a read-modify-write of one key
        (a counter); the lock is freed when the response starts.
        """
        return self.lifecycle.lock()

    def commit(self) -> str | None:
        """Persist the session and return the ``Set-Cookie`` value, if one is due."""
        return self.lifecycle.commit()

    def release(self) -> None:
        """Free any session lock this request holds (nothing is persisted)."""
        self.lifecycle.release()

    # -- used by the middleware when the response starts ------------------------------

    def _watch_late_writes(self) -> None:
        """The session was committed while the body still runs: note any later change."""
        self._streamed = True
        self.lifecycle.watch_late_changes()

    def _report_late_writes(self) -> None:
        """Log a warning naming each session key changed after the session was committed."""
        if not self._streamed:
            return
        self._streamed = False
        changed = self.lifecycle.late_changes()
        if changed:
            logger.warning(
                "session %s changed after the response started: the session is committed before "
                "the first chunk of the body is sent, so the change was not saved; change the "
                "session before the body starts (before the first yield or write())",
                ", ".join(changed),
            )

    def _warn_if_streamed(self, what: str) -> None:
        if self._streamed:
            logger.warning(
                "%s was called after the response started: the session was already committed "
                "(before the first chunk of the body), so it has no effect", what
            )


def request_session(request: t.Any) -> RequestSession:
    """The :class:`RequestSession` of a request, from its WSGI environ or a framework's request object.

    Accepts the environ itself or any object that carries it: ``.environ``
    (Bottle, Pyramid/WebOb, werkzeug and Flask, Django), ``.env`` (Falcon) or
    ``.META`` (Django).

    :raises MiddlewareMissing: the request did not pass through :class:`SessionMiddleware`.
    :raises TypeError: ``request`` is neither an environ nor carries one.

    .. versionadded:: 0.2
    """
    environ: WSGIEnvironment
    if isinstance(request, dict):
        environ = request
    else:
        for attribute in ("environ", "env", "META"):
            candidate = getattr(request, attribute, None)
            if isinstance(candidate, dict):
                environ = candidate
                break
        else:
            raise TypeError(
                "request_session() takes a WSGI environ or a request object that carries one "
                f"(.environ, .env or .META), not {type(request).__name__}"
            )
    found = environ.get(ENVIRON_KEY)
    if not isinstance(found, RequestSession):
        raise MiddlewareMissing(
            f"no session on this request: wrap the WSGI application in "
            f"kitsession_wsgi.wsgi.SessionMiddleware (nothing is at environ[{ENVIRON_KEY!r}])"
        )
    return found


def _error_response(start_response: StartResponse, exc: Exception, middleware: SessionMiddleware) -> list[bytes]:
    """503 for an unreachable store, 409 for a session that stayed locked or kept conflicting."""
    if isinstance(exc, StoreUnavailable):
        middleware.outage.failed(exc, middleware.manager)
    status, text, headers = error_reply(exc, middleware.retry_after)
    body = text.encode("utf-8")
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *headers],
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

    def flush(self, *, streaming: bool = False) -> None:
        """Commit the session against the final status, then start the response at the server.

        ``streaming``: application code still runs after this (a body being
        iterated, an app that called ``write()``), so later session changes,
        which can no longer be saved, are watched for and reported.
        """
        status, headers, exc_info = self.calls[-1]
        request = self.request
        lifecycle = request.lifecycle
        lifecycle.settle(_succeeded(status, exc_info))
        if lifecycle.loaded:
            set_cookie = lifecycle.finish(persist=exc_info is None and not status.startswith("5"))
            add_response_headers(headers, set_cookie, lifecycle.bearer_headers())
        if streaming:
            request._watch_late_writes()
        self.sent = True
        for call in self.calls:
            self.server_write = self.start_response(*call)

    def write(self, data: bytes) -> object:
        if not self.sent:
            self.flush(streaming=True)
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

    def __init__(self, iterable: t.Iterable[bytes], start: _ResponseStart, middleware: SessionMiddleware) -> None:
        self.iterable = iterable
        self.start = start
        self.middleware = middleware

    def __iter__(self) -> t.Iterator[bytes]:
        start = self.start
        try:
            for chunk in self.iterable:
                if start.pending:
                    start.flush(streaming=True)
                yield chunk
            if start.pending:
                start.flush()
        except (StoreUnavailable, SessionConflict) as exc:
            start.request.release()
            if start.sent:
                raise
            yield from _error_response(start.start_response, exc, self.middleware)
        except BaseException:
            # Not every server calls close() after a failing iterable.
            start.request.release()
            raise

    def close(self) -> None:
        request = self.start.request
        try:
            close = getattr(self.iterable, "close", None)
            if close is not None:
                close()
        finally:
            request.release()
            request._report_late_writes()


class SessionMiddleware:
    """WSGI middleware giving every request a lazily loaded server-side session.

    :param app: the WSGI application to wrap.
    :param manager: the :class:`~kitsession_wsgi.SessionManager` holding every rule.
    :param retry_after: seconds for the ``Retry-After`` header of the ``503``
        answered when the store is unavailable before the response started.

    The session is committed and its cookie added when the response starts
    (the app returned a list or tuple, any other iterable produced its first
    chunk, or the app called ``write()``), against the final status: a ``5xx``
    or an ``exc_info`` call persists nothing, and a :meth:`RequestSession.login`
    or :meth:`RequestSession.logout` takes effect only below 400.  A session
    change made after that (by a streamed body after its first chunk) cannot be
    saved: it is logged as a warning naming the keys.

    .. versionadded:: 0.1
    """

    def __init__(self, app: WSGIApplication, manager: SessionManager, *, retry_after: int = 5) -> None:
        self.retry_after = validate_retry_after(retry_after)
        self.app = app
        self.manager = manager
        #: one log line per outage (and a signal per failed request), as in the Flask extension
        self.outage = OutageReport()

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
            return _error_response(start_response, exc, self)
        except BaseException:
            request.release()
            raise
        lifecycle = request.lifecycle
        if self.outage.in_outage and lifecycle.loaded:  # answered() is a no-op otherwise
            self.outage.answered()
        if request._streamed and isinstance(response, (list, tuple)):
            # The app called write(): all its code has run by now.
            request._report_late_writes()
        if start.sent and not request._streamed and not lifecycle.holds_lock():
            return response
        return _GuardedResponse(response, start, self)


# The view decorators live in their own module; importable from here, as always.
from ._wsgi_decorators import session_lock, with_delete_session, with_new_session  # noqa: E402
