"""The Flask view decorators and ``current_session``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Callable

from flask import Response
from flask import make_response as _make_response
from werkzeug.local import LocalProxy

from ..session import Session
from ._state import current_flask_session, get_manager

__all__ = ["current_session", "session_lock", "with_delete_session", "with_new_session"]

F = t.TypeVar("F", bound=Callable[..., t.Any])

#: The request's :class:`~kitsession_wsgi.Session` object (``flask.session`` is a dict view of it).
current_session: Session = t.cast(Session, LocalProxy(lambda: current_flask_session().core))


def with_new_session(view: F) -> F:
    """Run ``view(..., session=flask.session)`` on a fresh session; on success it replaces the request's.

    ``session`` is ``flask.session`` itself (a
    :class:`~kitsession_wsgi.flask.FlaskSession`): Flask's session API (``session["k"]``,
    ``session.permanent = True``) and the :class:`~kitsession_wsgi.Session` attributes
    (``session.data = {...}``, ``session.user_id``) both work on it.

    The new session is stored with a new id and the previous one is deleted
    (no fixation).  If the view raises or answers 4xx/5xx, nothing is stored,
    no cookie is set and the previous session stays.

    .. versionadded:: 0.1
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> Response:
        flask_session = current_flask_session()
        flask_session.core  # loaded as flask.session loads it (the fresh session replaces it)
        lifecycle = flask_session.lifecycle
        lifecycle.login()
        try:
            response = _make_response(view(*args, session=flask_session, **kwargs))
        except BaseException:
            lifecycle.restore()
            raise
        lifecycle.settle(response.status_code < 400)
        return response

    return t.cast(F, wrapper)


def session_lock(view: F) -> F:
    """Run ``view`` with the request's session locked and freshly reloaded.

    Requests of the same session through locked views run one at a time, so a
    read-modify-write of one key (a counter, a cart total) loses nothing.
    Waits at most ``lock_timeout`` seconds, then answers with
    :class:`~kitsession_wsgi.SessionConflict`.

    .. versionadded:: 0.1
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        get_manager().lock_session(current_flask_session().core)
        return view(*args, **kwargs)

    return t.cast(F, wrapper)


def with_delete_session(view: F) -> F:
    """Run ``view(..., session=flask.session)``; on success remove the session and clear the cookie.

    The cookie is cleared even when the presented cookie was stale or
    unknown.  Messages flashed during the view survive in a fresh anonymous
    session, so "You have been logged out" still shows.

    .. versionadded:: 0.1
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> Response:
        flask_session = current_flask_session()
        flask_session.core  # loaded before the view, as the session it removes
        response = _make_response(view(*args, session=flask_session, **kwargs))
        if response.status_code < 400:
            flask_session.lifecycle.sign_out(carry=("_flashes",))
        return response

    return t.cast(F, wrapper)
