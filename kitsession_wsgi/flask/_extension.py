"""The Flask extension object, :class:`KitSession`: installs sessions on an app.

.. versionadded:: 0.1
"""

from __future__ import annotations

import functools
import os
import random
import typing as t
import weakref
from collections.abc import Callable

from flask import Flask, Response, g

from .._http import validate_retry_after
from ..errors import ConfigurationError, SessionConflict, StoreUnavailable
from ..stores.base import SessionStore, UserId
from ..stores.memory import MemoryStore
from ._decorators import current_session
from ._flask_login import connect_flask_login, flask_login_available
from ._interface import KitSessionInterface, error_response
from ._state import AppState, app_state
from .cli import cli as _cli
from .session_compat import flask_session_setup, refuse_keys_without_type, uses_flask_session
from .settings import EXTENSION_OPTIONS, MANAGER_OPTIONS
from .view import REQUEST_SESSION

__all__ = ["KitSession"]


class KitSession:
    """Server-side sessions for Flask apps.

    Flask's own session settings are the configuration (``SESSION_COOKIE_*``,
    ``PERMANENT_SESSION_LIFETIME``, ``SESSION_REFRESH_EACH_REQUEST``,
    ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``), re-read on every request;
    keyword arguments override them for every app, and an app's
    ``KITSESSION_<OPTION>`` keys override both.

    :param app: the app to initialise now (or call :meth:`init_app` later).
    :param store: a :class:`~kitsession_wsgi.SessionStore`; by default the store
        named by ``KITSESSION_STORE`` in the app config or the environment (a URL, see
        :func:`kitsession_wsgi.stores.urls.store_from_url`) or a :class:`MemoryStore`.
        ``KITSESSION_MIGRATE_FROM`` (a store URL, in the config or the environment)
        serves that store through a
        :class:`~kitsession_wsgi.stores.migrating.MigratingStore` that moves its
        sessions to this one (``flask kitsession migrate`` drains it).
    :param options: :class:`~kitsession_wsgi.SessionManager` options,
        ``permanent`` (the default ``session.permanent``) and ``retry_after``
        (seconds in the ``Retry-After`` of the 503 answered when the store is down).
    :raises ConfigurationError: an unknown option.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Flask's session settings are honoured; the ``permanent`` option.
    .. versionchanged:: 0.3
       ``KITSESSION_MIGRATE_FROM``.
       ``flask_login`` (``KITSESSION_FLASK_LOGIN``, on when Flask-Login is installed): its
       ``login_user()`` / ``logout_user()`` drive the session (see ``docs/flask-login.md``).
    """

    def __init__(self, app: Flask | None = None, store: SessionStore | None = None, **options: t.Any) -> None:
        unknown = sorted(set(options) - set(MANAGER_OPTIONS) - set(EXTENSION_OPTIONS))
        if unknown:
            raise ConfigurationError(
                unknown[0], f"unknown KitSession option (known: {', '.join(MANAGER_OPTIONS + EXTENSION_OPTIONS)})")
        self.store = store
        self.options = options
        self._user_loader: Callable[[UserId], t.Any] | None = None
        # the apps init_app installed sessions on: a loader registered later hooks them too
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def user_loader(self, loader: Callable[[UserId], t.Any]) -> Callable[[UserId], t.Any]:
        """Register ``loader(user_id) -> user``; its result is ``g.user`` and ``session.user``.

        The seed's ``prepare``/``getSession`` step: runs before each request of
        a session that has a user.  The hook is registered only once there is a
        loader (before or after :meth:`init_app`): an app without one pays nothing
        per request for it.
        """
        first = self._user_loader is None
        self._user_loader = loader
        if first:
            for app in self._apps:
                app.before_request(self._load_user)
        return loader

    def manager_options(self, app: Flask) -> dict[str, t.Any]:
        """The options this app's manager has now (from Flask's settings, arguments and ``KITSESSION_*``)."""
        manager = app_state(app).manager
        options = {name: getattr(manager, name) for name in MANAGER_OPTIONS if hasattr(manager, name)}
        options["serializer"] = manager.serializer
        return options

    def init_app(self, app: Flask) -> None:
        """Install sessions on ``app``; state goes to ``app.extensions["kitsession"]``.

        A store named by ``KITSESSION_STORE`` (or Flask-Session's ``sqlalchemy``
        keys) gets its tables here (``create_tables()``, idempotent); a store passed
        in is the application's to set up (``flask kitsession init-db``).

        :raises ConfigurationError: a bad option or config value (names it).
        :raises StoreUnavailable: the store named by ``KITSESSION_STORE`` cannot be
            reached to create its tables.
        """
        store = self.store
        cleanup_every = None
        migration = None
        if store is None:
            # App config first; the environment lets a deployment switch stores without code.
            url = app.config.get("KITSESSION_STORE") or os.environ.get("KITSESSION_STORE")
            if url:
                from ..stores.urls import store_from_url

                store = store_from_url(url)
                # Named by configuration, so set up here, as Flask-Session does (idempotent).
                # An unreachable database fails the start, loudly, not every request later.
                store.create_tables()
            elif uses_flask_session(app.config):
                setup = flask_session_setup(app)
                store, cleanup_every, migration = setup.store, setup.cleanup_every, setup.migration
            else:
                refuse_keys_without_type(app.config)
                store = MemoryStore()
        # Moving to this store from another while serving (see docs/operations.md).
        migrate_from = app.config.get("KITSESSION_MIGRATE_FROM") or os.environ.get("KITSESSION_MIGRATE_FROM")
        if migrate_from:
            from ..stores.migrating import MigratingStore

            store = MigratingStore.from_url(store, migrate_from)
        if "KITSESSION_RETRY_AFTER" in app.config:
            retry_after = validate_retry_after(app.config["KITSESSION_RETRY_AFTER"])
        else:
            retry_after = validate_retry_after(self.options.get("retry_after", 5))
        interface = KitSessionInterface()
        state = AppState(self.options, app.config, store, interface.serializer, retry_after, migration, app)
        state.settings()  # a bad option fails here, not on the first request
        app.extensions["kitsession"] = state
        app.session_interface = interface
        app.register_error_handler(StoreUnavailable, self._handle_unavailable)
        app.register_error_handler(SessionConflict, self._handle_conflict)
        if self._user_loader is not None:
            app.before_request(self._load_user)
        self._apps.add(app)
        app.teardown_request(_release_lock)
        if cleanup_every is not None:
            app.teardown_request(functools.partial(_maybe_purge, state, cleanup_every))
        app.cli.add_command(_cli)
        if _flag(app.config, "KITSESSION_FLASK_LOGIN", self.options.get("flask_login", flask_login_available())):
            connect_flask_login(app)

    def _handle_unavailable(self, exc: StoreUnavailable) -> Response:
        return error_response(exc, app_state())

    def _handle_conflict(self, exc: SessionConflict) -> Response:
        return error_response(exc, app_state())

    def _load_user(self) -> None:
        if self._user_loader is None:
            return
        core = current_session._get_current_object()  # type: ignore[attr-defined]
        user = None if core.user_id is None else self._user_loader(core.user_id)
        core.user = user
        g.user = user


def _flag(config: t.Any, key: str, default: bool) -> bool:
    """A boolean option from ``config[key]`` (``default`` when absent).

    :raises ConfigurationError: the value is not a bool.
    """
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(key, f"must be True or False, not {value!r}")
    return value


def _release_lock(exc: BaseException | None) -> None:
    """A request that failed before ``save_session`` must not keep its session locked.

    The request's session comes from this module's context variable, set by ``open_session``
    (no Flask internals, the same on every supported Flask), and the variable is restored.
    """
    flask_session = REQUEST_SESSION.get()
    if flask_session is None:
        return
    token = flask_session.context_token
    flask_session.context_token = None
    if token is not None:
        try:
            REQUEST_SESSION.reset(token)
        except ValueError:  # set in another context (a copied one): nothing to restore here
            pass
    flask_session.lifecycle.release()


def _maybe_purge(state: AppState, every: int, exc: BaseException | None) -> None:
    """``SESSION_CLEANUP_N_REQUESTS``: purge expired sessions after about one request in ``every``."""
    if random.randrange(every) == 0:
        try:
            state.manager.purge_expired()
        except StoreUnavailable as error:
            state.outage.failed(error, state.manager)
