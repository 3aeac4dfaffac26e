"""Flask-Login without glue: its sign-in and sign-out drive the server-side session.

:class:`~kitsession_wsgi.flask.KitSession` connects these handlers to Flask-Login's
signals for each app it is installed on (``KITSESSION_FLASK_LOGIN``, on by default
when ``flask_login`` is importable), so an app's own Flask-Login code stays as it is:

* ``login_user(user)`` links the session to ``user.get_id()`` and gives it a new id
  (the fixation defence of ``with_new_session``: the id the browser held before the
  login is dead as soon as the response is committed);
* ``logout_user()`` removes the server-side record and clears the cookie;
* ``login_user(user, remember=True)`` is remember-me as a long-lived server-side
  session (a permanent session whose cookie carries its deadline) instead of
  Flask-Login's ``remember_token`` cookie, which is never set and never honoured: a
  revoked session (logout, sign-out-everywhere, a revoke by handle) leaves the browser
  no cookie that signs it in again.  The argument is in docs/design.rst ("Remember-me").

.. versionadded:: 0.3
"""

from __future__ import annotations

import importlib.util
import typing as t

from flask import Flask, current_app, request

from ._state import current_flask_session, request_flask_session

__all__ = ["connect_flask_login", "flask_login_available"]

#: Flask-Login's default name for its remember-me cookie (``REMEMBER_COOKIE_NAME``)
_REMEMBER_COOKIE_NAME = "remember_token"


def flask_login_available() -> bool:
    """Whether Flask-Login can be imported (the default of ``KITSESSION_FLASK_LOGIN``)."""
    return importlib.util.find_spec("flask_login") is not None


def connect_flask_login(app: Flask) -> None:
    """Connect the handlers to Flask-Login's signals for ``app`` (sender-bound: other apps are untouched).

    :raises ImportError: Flask-Login is not installed.
    """
    from flask_login import user_accessed, user_logged_in, user_logged_out  # type: ignore[import-untyped]

    # weak=False: the handlers are module functions, but blinker must not drop them either way.
    user_logged_in.connect(_logged_in, sender=app, weak=False)
    user_logged_out.connect(_logged_out, sender=app, weak=False)
    # Flask-Login sends user_accessed as it starts loading the user, before it looks at the
    # remember cookie: a request that never reads current_user pays nothing (no hook).
    user_accessed.connect(_refuse_remember_token, sender=app, weak=False)


def _logged_in(app: Flask, user: t.Any = None, **extra: t.Any) -> None:
    """``login_user()``: link the session to the user, on a new id, remembered if asked."""
    flask_session = current_flask_session()
    lifecycle = flask_session.lifecycle
    user_id = str(user.get_id())
    if lifecycle.session.is_new:
        # Not stored yet (a first visit, or the fresh session of ``with_new_session``):
        # it gets a new id when it is stored, there is nothing to rotate.
        lifecycle.session.user_id = user_id
    else:
        lifecycle.login(user_id=user_id, data=dict(lifecycle.data))
    data = lifecycle.writable()
    if data.get("_remember") == "set":
        # Remember-me is this session, made permanent: its cookie survives a browser restart
        # until the session's deadline, and Flask-Login's own token cookie is never set.
        del data["_remember"]
        data.pop("_remember_seconds", None)
        data["_permanent"] = True


def _logged_out(app: Flask, user: t.Any = None, **extra: t.Any) -> None:
    """``logout_user()``: remove the record now; the response clears the cookie.

    Flashed messages survive, and so does Flask-Login's ``"_remember": "clear"``, so a
    ``remember_token`` cookie the browser may still hold is cleared too.
    """
    current_flask_session().lifecycle.sign_out(carry=("_flashes", "_remember"))


def _refuse_remember_token(app: Flask, **extra: t.Any) -> None:
    """A ``remember_token`` cookie never signs a browser in: only a live session does.

    Flask-Login reads the token only when the session has no user; marking the request's
    session ``"_remember": "clear"`` makes it skip the token and clear the cookie.  The
    session is looked at only when the request carries the cookie.
    """
    name = current_app.config.get("REMEMBER_COOKIE_NAME", _REMEMBER_COOKIE_NAME)
    if name not in request.cookies:
        return
    flask_session = request_flask_session()
    if flask_session is None:  # no KitSession session on this request (no SECRET_KEY)
        return
    lifecycle = flask_session.lifecycle
    if "_user_id" not in lifecycle.data:
        lifecycle.writable()["_remember"] = "clear"
