"""The session side of one WSGI request: :class:`RequestSession` at ``environ["kitsession"]``,
and :func:`request_session` to find it from a framework's request object.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import typing as t

from .._lifecycle import RequestLifecycle
from ..errors import KitSessionError
from ..manager import SessionManager
from ..session import Session
from ..stores.base import UserId

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["ENVIRON_KEY", "MiddlewareMissing", "NotAWSGIApplication", "RequestSession", "request_session"]

logger = logging.getLogger("kitsession_wsgi")

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
