"""The Flask extension: ``flask.session`` becomes the server-side session.

::

    from flask import Flask, session
    from kitsession_wsgi.flask import KitSession

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "change me"
    KitSession(app)            # MemoryStore unless a store or KITSESSION_STORE is given

Flask's own session settings (``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``,
``SESSION_REFRESH_EACH_REQUEST``, ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``) are the
configuration, re-read on every request (:mod:`kitsession_wsgi.flask.settings`); keyword
arguments given to :class:`KitSession` override them for every app, and an app's
``KITSESSION_<OPTION>`` keys (the :class:`~kitsession_wsgi.SessionManager` options) override
both.  An app configured for Flask-Session runs with ``KitSession`` imported as ``Session``
(:mod:`kitsession_wsgi.flask.session_compat`).  ``flask.session`` itself is a
:class:`~kitsession_wsgi.flask.view.FlaskSession`; the CLI is :mod:`kitsession_wsgi.flask.cli`.

The package, one module per part: ``_extension`` (:class:`KitSession`, ``init_app``),
``_state`` (per-app state, :func:`get_manager`), ``_interface`` (opening and saving
``flask.session``), ``view`` (:class:`~kitsession_wsgi.flask.view.FlaskSession`),
``_decorators`` and ``_api`` (the decorators and svelte-kit-session's operations),
``settings``, ``serializer``, ``session_compat`` and ``cli``.  The request's session
itself goes through the core's lifecycle (:mod:`kitsession_wsgi._lifecycle`), as under
the WSGI middleware.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Flask's session settings, ``session.permanent``, the Flask-Session switch.
"""

from __future__ import annotations

from ._api import (
    create_session,
    get_all_sessions,
    get_session,
    get_sessions_for_user,
    remove_all_sessions_for_user,
    remove_session,
    remove_session_by_handle,
    remove_session_cookie,
    session_token,
    set_session,
    set_session_cookie,
)
from ._decorators import current_session, session_lock, with_delete_session, with_new_session
from ._extension import KitSession
from ._interface import KitSessionInterface
from ._state import get_manager
from .serializer import FlaskSessionSerializer
from .view import FlaskSession

__all__ = [
    "FlaskSession",
    "FlaskSessionSerializer",
    "KitSession",
    "KitSessionInterface",
    "create_session",
    "current_session",
    "get_all_sessions",
    "get_manager",
    "get_session",
    "get_sessions_for_user",
    "remove_all_sessions_for_user",
    "remove_session",
    "remove_session_by_handle",
    "remove_session_cookie",
    "session_token",
    "set_session",
    "set_session_cookie",
    "session_lock",
    "with_delete_session",
    "with_new_session",
]
