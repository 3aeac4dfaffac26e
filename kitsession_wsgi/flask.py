"""The Flask extension: ``flask.session`` becomes the server-side session.

::

    from flask import Flask, session
    from kitsession_wsgi.flask import KitSession

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "change me"
    KitSession(app)            # MemoryStore unless a store or KITSESSION_STORE is given

Flask's own session settings (``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``,
``SESSION_REFRESH_EACH_REQUEST``, ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``) are the
configuration, re-read on every request (:mod:`kitsession_wsgi.flask_settings`); keyword
arguments given to :class:`KitSession` override them for every app, and an app's
``KITSESSION_<OPTION>`` keys (the :class:`~kitsession_wsgi.SessionManager` options) override
both.  An app configured for Flask-Session runs with ``KitSession`` imported as ``Session``
(:mod:`kitsession_wsgi.flask_session_compat`).  ``flask.session`` itself is a
:class:`~kitsession_wsgi.flask_view.FlaskSession`; the CLI is :mod:`kitsession_wsgi.flask_cli`.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Flask's session settings, ``session.permanent``, the Flask-Session switch.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import typing as t
from collections.abc import Callable

from flask import Flask, Response, current_app, g, has_request_context
from flask import make_response as _make_response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import Headers
from werkzeug.local import LocalProxy

from ._http import OutageReport, add_response_headers, error_reply, validate_retry_after
from .errors import ConfigurationError, SessionConflict, StoreUnavailable
from .flask_cli import cli as _cli
from .flask_serializer import FlaskSessionSerializer
from .flask_session_compat import FlaskSessionMigration, flask_session_setup, uses_flask_session
from .flask_settings import (
    EXTENSION_OPTIONS,
    MANAGER_OPTIONS,
    ConfigWatch,
    FlaskSettings,
    build_settings,
    frozen,
)
from .flask_view import _REQUEST_SESSION, FlaskSession
from .manager import SessionManager
from .session import Session
from .stores.base import SessionStore, UserId
from .stores.memory import MemoryStore

logger = logging.getLogger("kitsession_wsgi")

#: How many configurations (and their managers) an app remembers, for config that flips back.
_SETTINGS_CACHE_SIZE = 8

F = t.TypeVar("F", bound=Callable[..., t.Any])


class _AppState:
    """Per-app state in ``app.extensions["kitsession"]``: the shared store and, per
    configuration snapshot, the settings (and manager) built for it."""

    def __init__(self, extension: KitSession, config: dict[str, t.Any], store: SessionStore,
                 serializer: FlaskSessionSerializer, retry_after: int,
                 migration: FlaskSessionMigration | None = None) -> None:
        self.extension = extension
        self.migration = migration
        self.config = config
        self.store = store
        self.serializer = serializer
        self.retry_after = retry_after
        #: one log line per outage (and a signal per failed request), as in the WSGI middleware
        self.outage = OutageReport()
        self._warned: set[str] = set()
        self._watch = ConfigWatch(config)
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
            settings = build_settings(dict(zip(keys, values)), self.extension.options, self.store,
                                      self.serializer)
            entry = ((keys, frozen(values)), settings)
            self._cache = [entry, *self._cache[:_SETTINGS_CACHE_SIZE - 1]]
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



def _state(app: Flask | None = None) -> _AppState:
    app = app or t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return t.cast(_AppState, app.extensions["kitsession"])
    except KeyError:
        raise RuntimeError("KitSession is not initialised on this app: call KitSession(app) or init_app(app)") from None


def _error_response(exc: StoreUnavailable | SessionConflict, state: _AppState) -> Response:
    """503 for an unreachable store (reported as an outage), 409 for a session that stayed busy."""
    if isinstance(exc, StoreUnavailable):
        state.outage.failed(exc, state.manager)
    status, body, headers = error_reply(exc, state.retry_after)
    return Response(body, status, headers=headers, mimetype="text/plain")


def _carries_cookie(environ: dict[str, t.Any], name: str) -> bool:
    """A cheap pre-check (no parsing) that the request may carry the session cookie."""
    header = environ.get("HTTP_COOKIE")
    return isinstance(header, str) and name in header


class KitSessionInterface(SessionInterface):
    """The Flask session interface installed by :class:`KitSession`.

    ``serializer`` is the app's :class:`FlaskSessionSerializer`: register
    custom tagged types on it as on Flask's own (``serializer.register(MyTag)``).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``serializer``; Flask's session settings are read on every request.
    """

    def __init__(self, serializer: FlaskSessionSerializer | None = None) -> None:
        self.serializer = serializer if serializer is not None else FlaskSessionSerializer()

    def open_session(self, app: Flask, request: t.Any) -> FlaskSession | None:
        state: _AppState = app.extensions["kitsession"]
        settings = state.settings()
        if settings.warning is not None:
            # On a request, not at init_app: the app-factory order sets SECRET_KEY later.
            state.warn(settings.warning)
            if not settings.available:
                return None  # Flask then uses its null session: reads are empty, writes raise
        flask_session = FlaskSession(settings.manager, request.environ, settings, state.migration)
        flask_session._context_token = _REQUEST_SESSION.set(flask_session)
        return flask_session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        settings = session._settings
        assert settings is not None
        lifecycle = session.lifecycle
        if not lifecycle.loaded:
            self._refresh_unread(app, session, settings, response)
            return
        state: _AppState = app.extensions["kitsession"]
        persist = response.status_code < 500
        try:
            set_cookie = lifecycle.finish(persist=persist)
        except (StoreUnavailable, SessionConflict) as exc:
            _become(response, _error_response(exc, state))
            return
        if persist:
            outage = state.outage
            if outage.in_outage:  # answered() is a no-op otherwise: no call per request
                outage.answered()
            raw_permanent = lifecycle.data.get("_permanent")
            if (set_cookie is not None or raw_permanent != session._permanent_at_load
                    or (settings.refresh and (settings.permanent if raw_permanent is None else raw_permanent))):
                set_cookie = self._cookie(session, lifecycle.session, settings, set_cookie)
        # The lifecycle's manager read the request (and just committed): it answers for its
        # transport, not ``state.manager``, which would take a second config snapshot.
        add_response_headers(response.headers, set_cookie, lifecycle.bearer_headers())

    def _refresh_unread(self, app: Flask, session: FlaskSession, settings: FlaskSettings, response: Response) -> None:
        """Flask re-sends a permanent session's cookie on every response with
        ``SESSION_REFRESH_EACH_REQUEST``, even when the view never read the session."""
        if not (settings.refresh and _carries_cookie(session._environ, settings.manager.name)):
            return
        accessed = session.accessed
        try:
            core = session.core
        except StoreUnavailable:
            return  # a page that did not use the session is not failed by the store
        finally:
            session.accessed = accessed
        if not session._permanent_now() or core.is_new:
            session.lifecycle.release()
            return
        self.save_session(app, session, response)

    @staticmethod
    def _cookie(session: FlaskSession, core: Session, settings: FlaskSettings, committed: str | None) -> str | None:
        """The cookie to send, with Flask's meaning of ``permanent`` and ``SESSION_REFRESH_EACH_REQUEST``."""
        if committed is not None and committed == settings.removal_cookie:
            return settings.finish_cookie(committed)
        live = core.id is not None and not core.is_new and not core.is_destroyed
        if not live:
            return None if committed is None else settings.finish_cookie(committed)
        manager = session.lifecycle.manager
        permanent = session._permanent_now()
        if permanent and settings.refresh:
            # Re-sent on every response, so it can carry the session's current deadline.
            return settings.finish_cookie(manager.set_session_cookie(core, expires_at=core.expires_at))
        if committed is None:
            if not session.permanent_changed():
                return None
            return settings.finish_cookie(manager.set_session_cookie(core, persistent=permanent))
        if permanent:
            return settings.finish_cookie(committed)
        header = session._environ.get("HTTP_COOKIE")
        if not session.permanent_changed() and isinstance(header, str) and committed.partition(";")[0] in header:
            # A browser-session cookie carries no expiry: when the request already holds this
            # exact value (re-sent only to move an expiry, with rolling), there is nothing to send.
            return None
        return settings.finish_cookie(manager.set_session_cookie(core, persistent=False))


def _become(response: Response, replacement: Response) -> None:
    """Turn ``response`` into ``replacement`` in place (Flask keeps its response object)."""
    response.status = replacement.status
    response.headers = Headers(replacement.headers)
    response.set_data(replacement.get_data())


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
    :param options: :class:`~kitsession_wsgi.SessionManager` options,
        ``permanent`` (the default ``session.permanent``) and ``retry_after``
        (seconds in the ``Retry-After`` of the 503 answered when the store is down).
    :raises ConfigurationError: an unknown option.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Flask's session settings are honoured; the ``permanent`` option.
    """

    def __init__(self, app: Flask | None = None, store: SessionStore | None = None, **options: t.Any) -> None:
        unknown = sorted(set(options) - set(MANAGER_OPTIONS) - set(EXTENSION_OPTIONS))
        if unknown:
            raise ConfigurationError(
                unknown[0], f"unknown KitSession option (known: {', '.join(MANAGER_OPTIONS + EXTENSION_OPTIONS)})")
        self.store = store
        self.options = options
        self._user_loader: Callable[[UserId], t.Any] | None = None
        if app is not None:
            self.init_app(app)

    def user_loader(self, loader: Callable[[UserId], t.Any]) -> Callable[[UserId], t.Any]:
        """Register ``loader(user_id) -> user``; its result is ``g.user`` and ``session.user``.

        The seed's ``prepare``/``getSession`` step: runs before each request of
        a session that has a user.
        """
        self._user_loader = loader
        return loader

    def manager_options(self, app: Flask) -> dict[str, t.Any]:
        """The options this app's manager has now (from Flask's settings, arguments and ``KITSESSION_*``)."""
        manager = _state(app).manager
        options = {name: getattr(manager, name) for name in MANAGER_OPTIONS if hasattr(manager, name)}
        options["serializer"] = manager.serializer
        return options

    def init_app(self, app: Flask) -> None:
        """Install sessions on ``app``; state goes to ``app.extensions["kitsession"]``.

        :raises ConfigurationError: a bad option or config value (names it).
        """
        store = self.store
        cleanup_every = None
        migration = None
        if store is None:
            # App config first; the environment lets a deployment switch stores without code.
            url = app.config.get("KITSESSION_STORE") or os.environ.get("KITSESSION_STORE")
            if url:
                from .stores.urls import store_from_url

                store = store_from_url(url)
            elif uses_flask_session(app.config):
                setup = flask_session_setup(app)
                store, cleanup_every, migration = setup.store, setup.cleanup_every, setup.migration
            else:
                store = MemoryStore()
        if "KITSESSION_RETRY_AFTER" in app.config:
            retry_after = validate_retry_after(app.config["KITSESSION_RETRY_AFTER"])
        else:
            retry_after = validate_retry_after(self.options.get("retry_after", 5))
        interface = KitSessionInterface()
        state = _AppState(self, app.config, store, interface.serializer, retry_after, migration)
        state.settings()  # a bad option fails here, not on the first request
        app.extensions["kitsession"] = state
        app.session_interface = interface
        app.register_error_handler(StoreUnavailable, self._handle_unavailable)
        app.register_error_handler(SessionConflict, self._handle_conflict)
        app.before_request(self._load_user)
        app.teardown_request(_release_lock)
        if cleanup_every is not None:
            app.teardown_request(functools.partial(_maybe_purge, state, cleanup_every))
        app.cli.add_command(_cli)

    def _handle_unavailable(self, exc: StoreUnavailable) -> Response:
        return _error_response(exc, _state())

    def _handle_conflict(self, exc: SessionConflict) -> Response:
        return _error_response(exc, _state())

    def _load_user(self) -> None:
        if self._user_loader is None:
            return
        core = current_session._get_current_object()  # type: ignore[attr-defined]
        user = None if core.user_id is None else self._user_loader(core.user_id)
        core.user = user
        g.user = user


def _release_lock(exc: BaseException | None) -> None:
    """A request that failed before ``save_session`` must not keep its session locked.

    The request's session comes from this module's context variable, set by ``open_session``
    (no Flask internals, the same on every supported Flask), and the variable is restored.
    """
    flask_session = _REQUEST_SESSION.get()
    if flask_session is None:
        return
    token = flask_session._context_token
    flask_session._context_token = None
    if token is not None:
        try:
            _REQUEST_SESSION.reset(token)
        except ValueError:  # set in another context (a copied one): nothing to restore here
            pass
    flask_session.lifecycle.release()


def _maybe_purge(state: _AppState, every: int, exc: BaseException | None) -> None:
    """``SESSION_CLEANUP_N_REQUESTS``: purge expired sessions after about one request in ``every``."""
    if random.randrange(every) == 0:
        try:
            state.manager.purge_expired()
        except StoreUnavailable as error:
            state.outage.failed(error, state.manager)


def _flask_session() -> FlaskSession:
    from flask import session

    real = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(real, FlaskSession):
        if "kitsession" in current_app.extensions and not _state().settings().available:
            raise RuntimeError("the session is unavailable because no SECRET_KEY is set: set SECRET_KEY "
                               "(or KITSESSION_SIGNED=False for unsigned server-side sessions)")
        raise RuntimeError("flask.session is not a KitSession session: call KitSession(app) first")
    return real


def get_manager() -> SessionManager:
    """The :class:`~kitsession_wsgi.SessionManager` of the current app (for its config as it is now)."""
    real = _request_flask_session()
    return real.lifecycle.manager if real is not None else _state().manager


def _request_flask_session() -> FlaskSession | None:
    """The request's :class:`FlaskSession`, if a request is active and has one."""
    return _REQUEST_SESSION.get() if has_request_context() else None


#: The request's :class:`~kitsession_wsgi.Session` object (``flask.session`` is a dict view of it).
current_session: Session = t.cast(Session, LocalProxy(lambda: _flask_session().core))


def with_new_session(view: F) -> F:
    """Run ``view(..., session=<fresh Session>)``; on success it replaces the request's session.

    The new session is stored with a new id and the previous one is deleted
    (no fixation).  If the view raises or answers 4xx/5xx, nothing is stored,
    no cookie is set and the previous session stays.

    .. versionadded:: 0.1
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> Response:
        flask_session = _flask_session()
        flask_session.core  # loaded as flask.session loads it (the fresh session replaces it)
        lifecycle = flask_session.lifecycle
        fresh = lifecycle.login()
        try:
            response = _make_response(view(*args, session=fresh, **kwargs))
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
        get_manager().lock_session(_flask_session().core)
        return view(*args, **kwargs)

    return t.cast(F, wrapper)


def with_delete_session(view: F) -> F:
    """Run ``view(..., session=<current Session>)``; on success remove it and clear the cookie.

    The cookie is cleared even when the presented cookie was stale or
    unknown.  Messages flashed during the view survive in a fresh anonymous
    session, so "You have been logged out" still shows.

    .. versionadded:: 0.1
    """

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> Response:
        flask_session = _flask_session()
        session = flask_session.core
        response = _make_response(view(*args, session=session, **kwargs))
        if response.status_code < 400:
            flask_session.lifecycle.sign_out(carry=("_flashes",))
        return response

    return t.cast(F, wrapper)


# -- the seed API, bound to the current app --------------------------------------------


def create_session(user_id: UserId | None = None, data: dict[str, t.Any] | None = None) -> Session:
    """:meth:`SessionManager.create_session` on the current app's manager."""
    return get_manager().create_session(user_id, data)


def get_session(id: str) -> Session | None:
    """:meth:`SessionManager.get_session` on the current app's manager."""
    return get_manager().get_session(id)


def set_session(session: Session, data: dict[str, t.Any]) -> Session:
    """:meth:`SessionManager.set_session` on the current app's manager."""
    return get_manager().set_session(session, data)


def remove_session(session: Session) -> bool:
    """:meth:`SessionManager.remove_session` on the current app's manager."""
    return get_manager().remove_session(session)


def remove_all_sessions_for_user(user_id: UserId, session: Session | None = None) -> int:
    """:meth:`SessionManager.remove_all_sessions_for_user` on the current app's manager."""
    return get_manager().remove_all_sessions_for_user(user_id, session)


def remove_session_by_handle(handle: str, *, user_id: UserId | None = None) -> bool:
    """:meth:`SessionManager.remove_session_by_handle` on the current app's manager.

    For a "your devices" page: pass the signed-in user's id so nobody can
    revoke someone else's session.
    """
    return get_manager().remove_session_by_handle(handle, user_id=user_id)


def get_all_sessions() -> list[Session]:
    """:meth:`SessionManager.get_all_sessions` on the current app's manager."""
    return get_manager().get_all_sessions()


def get_sessions_for_user(user_id: UserId) -> list[Session]:
    """:meth:`SessionManager.get_sessions_for_user` on the current app's manager."""
    return get_manager().get_sessions_for_user(user_id)


def session_token(session: Session | None = None) -> str:
    """:meth:`SessionManager.session_token` on the current app's manager (default: this request's session).

    In a ``with_new_session`` view, pass the fresh session: it is stored now and
    its token returned (needs ``KITSESSION_BEARER = True``)::

        @app.post("/api/token")
        @with_new_session
        def create_token(session):
            session.data = {"id": user.id}
            return {"token": session_token(session)}

    .. versionadded:: 0.2
    """
    return get_manager().session_token(_flask_session().core if session is None else session)


def set_session_cookie(session_or_id: Session | str) -> str:
    """:meth:`SessionManager.set_session_cookie` on the current app's manager."""
    return get_manager().set_session_cookie(session_or_id)


def remove_session_cookie() -> str:
    """:meth:`SessionManager.remove_session_cookie` on the current app's manager."""
    return get_manager().remove_session_cookie()


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
