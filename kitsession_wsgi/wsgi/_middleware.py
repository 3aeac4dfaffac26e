"""The WSGI middleware: commits the session when the response starts, against its final status.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t
from http import HTTPStatus

from .._http import OutageReport, add_response_headers, error_reply, validate_retry_after
from ..errors import SessionConflict, StoreUnavailable
from ..manager import SessionManager
from ._request import ENVIRON_KEY, RequestSession

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["SessionMiddleware"]


def _succeeded(status: str, exc_info: t.Any) -> bool:
    """A response that keeps a login or performs a logout: status below 400, no ``exc_info``."""
    return exc_info is None and status[:1] in ("1", "2", "3")


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
