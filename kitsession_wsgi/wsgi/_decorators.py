"""The WSGI view decorators: ``with_new_session``, ``session_lock``, ``with_delete_session``.

For plain WSGI callables; a framework view is refused with :class:`NotAWSGIApplication`
(use :func:`~kitsession_wsgi.wsgi.request_session` and its ``login()`` / ``logout()`` /
``lock()`` there).  Import them from :mod:`kitsession_wsgi.wsgi`, which re-exports them.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import inspect
import typing as t

from ._request import NotAWSGIApplication, request_session

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


__all__ = ["SessionWSGIApp", "session_lock", "with_delete_session", "with_new_session"]

SessionWSGIApp = t.Callable[..., t.Iterable[bytes]]

#: what the decorators' wrappers report to ``inspect.signature`` (and to a
#: decorator stacked on top of them): they are called as WSGI applications,
#: whatever extra ``session`` argument the function they wrap takes.
_WSGI_SIGNATURE = inspect.Signature([
    inspect.Parameter("environ", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("start_response", inspect.Parameter.POSITIONAL_OR_KEYWORD),
])


def _refusal(decorator: str, shape: str, instead: str, what: str) -> NotAWSGIApplication:
    return NotAWSGIApplication(
        f"{decorator} decorates a plain WSGI callable {shape} (one mounted with Bottle's "
        f"app.mount() or Pyramid's @wsgiapp, or routed by hand), and {what}. "
        f"In a framework view (Bottle, Falcon, Pyramid, Django, ...) call "
        f"kitsession_wsgi.wsgi.request_session(request).{instead} instead."
    )


def _check_wsgi_callable(app: object, decorator: str, shape: str, instead: str, *, takes_session: bool) -> None:
    """Refuse, at decoration time, what cannot be called as ``shape``.

    Binding the arguments the wrapper will pass, rather than counting
    positional parameters, is what decides: ``inspect.signature`` already
    drops ``self`` of a bound method or a callable instance's ``__call__``
    and the arguments a ``functools.partial`` fills in, and it accepts
    optional extra parameters and ``*args`` / ``**kwargs``, exactly as the
    call will.  So every framework view that takes no arguments, one
    ``request``, or ``(self, req, resp)`` (a Falcon responder decorated in
    its class body) is refused here, and nothing a server could call is.
    A view that happens to bind (Django's ``view(request, pk)``, Pyramid's
    ``view(context, request)``) is refused by the wrapper on its first
    call, which checks it got an environ dict.  A callable without a
    readable signature (some C callables) is let through for that check.
    """
    if not callable(app):
        raise _refusal(decorator, shape, instead, f"{app!r} is not callable")
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return
    try:
        if takes_session:
            signature.bind(None, None, session=None)
        else:
            signature.bind(None, None)
    except TypeError:
        name = getattr(app, "__qualname__", None) or type(app).__name__
        raise _refusal(decorator, shape, instead, f"{name}{signature} cannot be called that way") from None


def _wsgi_arguments(args: tuple[t.Any, ...], kwargs: dict[str, t.Any], decorator: str, shape: str,
                    instead: str, app: object) -> tuple[WSGIEnvironment, StartResponse]:
    """The ``(environ, start_response)`` a wrapper was called with, or a refusal naming the fix."""
    if len(args) == 2 and not kwargs and isinstance(args[0], dict) and callable(args[1]):
        return args[0], args[1]
    name = getattr(app, "__qualname__", None) or type(app).__name__
    received = ", ".join([*(type(arg).__name__ for arg in args), *(f"{key}=..." for key in kwargs)])
    raise _refusal(decorator, shape, instead, f"{name} was called with ({received}) instead")


def with_new_session(app: SessionWSGIApp) -> WSGIApplication:
    """Decorate a WSGI callable ``app(environ, start_response, session)`` that logs a user in.

    ``session`` is a fresh session (:meth:`RequestSession.login`) that replaces
    the request's session when the response succeeds: it is stored with a
    new id and the old one is deleted.  If ``app`` raises or answers
    4xx/5xx, nothing is stored and the old session stays.

    For plain WSGI callables only, including those a framework runs as they
    are (Bottle's ``app.mount()``, Pyramid's ``@wsgiapp``).  A framework view
    is refused when it is decorated (or, if its signature fits by accident,
    on its first call) with :class:`NotAWSGIApplication`: call
    ``request_session(request).login(user_id, data)`` in it instead.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Framework views are refused with a message naming ``login()``.
    """
    shape, instead = "app(environ, start_response, session)", "login(user_id=..., data=...)"
    _check_wsgi_callable(app, "with_new_session", shape, instead, takes_session=True)

    @functools.wraps(app)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Iterable[bytes]:
        environ, start_response = _wsgi_arguments(args, kwargs, "with_new_session", shape, instead, app)
        request = request_session(environ)
        session = request.login()
        try:
            return app(environ, start_response, session=session)
        except BaseException:
            # Even when an outer layer turns the exception into a page of its own.
            request.abandon_new_session()
            raise

    wrapper.__signature__ = _WSGI_SIGNATURE  # type: ignore[attr-defined]
    return wrapper


def session_lock(app: WSGIApplication) -> WSGIApplication:
    """Decorate a WSGI callable so its requests of one session run one at a time.

    The session is locked and reloaded before ``app`` runs; the lock is freed
    when the response is committed (or fails).  Use it for read-modify-write of
    one key, such as a counter.  A framework view is refused (see
    :func:`with_new_session`): call ``request_session(request).lock()`` first
    thing in it instead.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Framework views are refused with a message naming ``lock()``.
    """
    shape, instead = "app(environ, start_response)", "lock() first thing"
    _check_wsgi_callable(app, "session_lock", shape, instead, takes_session=False)

    @functools.wraps(app)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Iterable[bytes]:
        environ, start_response = _wsgi_arguments(args, kwargs, "session_lock", shape, instead, app)
        request_session(environ).lock()
        return app(environ, start_response)

    wrapper.__signature__ = _WSGI_SIGNATURE  # type: ignore[attr-defined]
    return wrapper


def with_delete_session(app: SessionWSGIApp) -> WSGIApplication:
    """Decorate a WSGI callable ``app(environ, start_response, session)`` that logs out.

    When the response starts with a successful (below 400) final status, the
    session's record is removed and its cookie cleared, even for a stale or
    unknown cookie (:meth:`RequestSession.logout`); a 4xx, a 5xx, a 200
    replaced by a 500 through ``exc_info`` or an exception removes nothing.
    A framework view is refused (see :func:`with_new_session`): call
    ``request_session(request).logout()`` in it instead.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Framework views are refused with a message naming ``logout()``.
    """
    shape, instead = "app(environ, start_response, session)", "logout()"
    _check_wsgi_callable(app, "with_delete_session", shape, instead, takes_session=True)

    @functools.wraps(app)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Iterable[bytes]:
        environ, start_response = _wsgi_arguments(args, kwargs, "with_delete_session", shape, instead, app)
        request = request_session(environ)
        session = request.session
        request.logout()
        try:
            return app(environ, start_response, session=session)
        except BaseException:
            request.lifecycle.cancel_logout()
            raise

    wrapper.__signature__ = _WSGI_SIGNATURE  # type: ignore[attr-defined]
    return wrapper
