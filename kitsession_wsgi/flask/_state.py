"""Per-app state of the Flask extension, and where a request finds its session and manager.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import typing as t

from flask import Flask, current_app, has_request_context

from .._http import OutageReport
from ..manager import SessionManager
from .serializer import FlaskSessionSerializer
from .session_compat import FlaskSessionMigration
from .settings import ConfigWatch, FlaskSettings, build_settings, frozen
from .view import REQUEST_SESSION, FlaskSession
from ..stores.base import SessionStore

__all__ = ["SETTINGS_CACHE_SIZE", "AppState", "app_state", "current_flask_session", "get_manager", "request_flask_session"]

logger = logging.getLogger("kitsession_wsgi")

#: How many configurations (and their managers) an app remembers, for config that flips back.
SETTINGS_CACHE_SIZE = 8


class AppState:
    """Per-app state in ``app.extensions["kitsession"]``: the shared store and, per
    configuration snapshot, the settings (and manager) built for it."""

    def __init__(self, options: dict[str, t.Any], config: dict[str, t.Any], store: SessionStore,
                 serializer: FlaskSessionSerializer, retry_after: int,
                 migration: FlaskSessionMigration | None = None, app: Flask | None = None) -> None:
        #: the ``KitSession(...)`` keyword arguments: defaults for every app
        self.options = options
        self.migration = migration
        self.config = config
        self.store = store
        self.serializer = serializer
        self.retry_after = retry_after
        #: one log line per outage (and a signal per failed request), as in the WSGI middleware
        self.outage = OutageReport()
        self._warned: set[str] = set()
        self._watch = ConfigWatch(config, app)
        # (snapshot, settings), replaced whole: a request never pairs one snapshot with another's settings
        self._current: tuple[tuple[tuple[str, ...], tuple[t.Any, ...]], FlaskSettings] | None = None
        self._cache: list[tuple[tuple[tuple[str, ...], tuple[t.Any, ...]], FlaskSettings]] = []

    def settings(self) -> FlaskSettings:
        """The settings for the app's config as it is now (rebuilt only when a watched key changed)."""
        snapshot = self._watch.snapshot()
        current = self._current
        if current is not None and snapshot == current[0]:
            return current[1]
        for entry in self._cache:
            if entry[0] == snapshot:
                break
        else:
            keys, values = snapshot
            settings = build_settings(dict(zip(keys, values)), self.options, self.store,
                                      self.serializer)
            entry = ((keys, frozen(values)), settings)
            self._cache = [entry, *self._cache[:SETTINGS_CACHE_SIZE - 1]]
        self._current = entry
        return entry[1]

    @property
    def manager(self) -> SessionManager:
        """The :class:`~kitsession_wsgi.SessionManager` for the app's config as it is now."""
        return self.settings().manager

    def warn(self, message: str) -> None:
        """Log ``message`` as a warning, once per app."""
        # Once per app and message: a missing SECRET_KEY is never silent, nor a log flood.
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)


def app_state(app: Flask | None = None) -> AppState:
    """The :class:`AppState` of ``app`` (default: the current app)."""
    app = app or t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return t.cast(AppState, app.extensions["kitsession"])
    except KeyError:
        raise RuntimeError("KitSession is not initialised on this app: call KitSession(app) or init_app(app)") from None


def current_flask_session() -> FlaskSession:
    """The request's :class:`FlaskSession` (``flask.session``), or a ``RuntimeError`` saying why not."""
    from flask import session

    real = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(real, FlaskSession):
        if "kitsession" in current_app.extensions and not app_state().settings().available:
            raise RuntimeError("the session is unavailable because no SECRET_KEY is set: set SECRET_KEY "
                               "(or KITSESSION_SIGNED=False for unsigned server-side sessions)")
        raise RuntimeError("flask.session is not a KitSession session: call KitSession(app) first")
    return real


def get_manager() -> SessionManager:
    """The :class:`~kitsession_wsgi.SessionManager` of the current app (for its config as it is now)."""
    real = request_flask_session()
    return real.lifecycle.manager if real is not None else app_state().manager


def request_flask_session() -> FlaskSession | None:
    """The request's :class:`FlaskSession`, if a request is active and has one."""
    return REQUEST_SESSION.get() if has_request_context() else None
