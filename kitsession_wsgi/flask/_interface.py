"""The Flask session interface: ``flask.session`` opened for a request and saved into its response.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t

from flask import Flask, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import Headers

from .._http import add_response_headers, error_reply
from ..errors import SessionConflict, StoreUnavailable
from ..session import Session
from ._state import AppState
from .serializer import FlaskSessionSerializer
from .settings import FlaskSettings
from .view import REQUEST_SESSION, FlaskSession

__all__ = ["KitSessionInterface", "error_response"]


def error_response(exc: StoreUnavailable | SessionConflict, state: AppState) -> Response:
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
        state: AppState = app.extensions["kitsession"]
        settings = state.settings()
        if settings.warning is not None:
            # On a request, not at init_app: the app-factory order sets SECRET_KEY later.
            state.warn(settings.warning)
            if not settings.available:
                return None  # Flask then uses its null session: reads are empty, writes raise
        flask_session = FlaskSession(settings.manager, request.environ, settings, state.migration)
        flask_session.context_token = REQUEST_SESSION.set(flask_session)
        return flask_session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            return
        settings = session.settings
        assert settings is not None
        lifecycle = session.lifecycle
        if not lifecycle.loaded:
            self._refresh_unread(app, session, settings, response)
            return
        state: AppState = app.extensions["kitsession"]
        persist = response.status_code < 500
        session.settle_user()
        try:
            set_cookie = lifecycle.finish(persist=persist)
        except (StoreUnavailable, SessionConflict) as exc:
            _become(response, error_response(exc, state))
            return
        if persist:
            outage = state.outage
            if outage.in_outage:  # answered() is a no-op otherwise: no call per request
                outage.answered()
            raw_permanent = lifecycle.data.get("_permanent")
            if not lifecycle.cookie_allowed:
                set_cookie = None  # a header session never gets a cookie (the core sent none)
            elif (set_cookie is not None or raw_permanent != session.permanent_at_load
                    or (settings.refresh and (settings.permanent if raw_permanent is None else raw_permanent))):
                set_cookie = self._cookie(session, lifecycle.session, settings, set_cookie)
            if raw_permanent != session.permanent_at_load:
                # What an untouched request would re-send is no longer true: it asks the store again.
                lifecycle.forget_refresh_facts()
        # The lifecycle's manager read the request (and just committed): it answers for its
        # transport, not ``state.manager``, which would take a second config snapshot.
        add_response_headers(response.headers, set_cookie, lifecycle.bearer_headers())

    def _refresh_unread(self, app: Flask, session: FlaskSession, settings: FlaskSettings, response: Response) -> None:
        """Flask re-sends a permanent session's cookie on every response with
        ``SESSION_REFRESH_EACH_REQUEST``, even when the view never read the session.

        In steady state this costs no store call: what the cookie needs (the session's
        id, deadline and ``"_permanent"``) was remembered for this exact verified header
        by an earlier untouched request (``RequestLifecycle.refresh_facts``; a commit that
        changes ``permanent`` forgets it), and the cookie is
        re-sent from it with the deadline the store last held, as the full path would
        send it while no touch is due.  The session is loaded (a store read, and the
        touch) only on first sight of the header and about once per touch interval.
        """
        if not (settings.refresh and _carries_cookie(session.environ, settings.manager.name)):
            return
        lifecycle = session.lifecycle
        facts = lifecycle.refresh_facts()
        if facts is not None:
            if settings.permanent if facts.note is None else facts.note:
                manager = lifecycle.manager
                cookie = manager.set_session_cookie(facts.session_id, expires_at=facts.expires_at)
                bearer = [("Vary", "Authorization")] if manager.bearer else []
                add_response_headers(response.headers, settings.finish_cookie(cookie), bearer)
            return
        accessed = session.accessed
        try:
            core = session.core
        except StoreUnavailable:
            return  # a page that did not use the session is not failed by the store
        finally:
            session.accessed = accessed
        raw_permanent = lifecycle.data.get("_permanent")
        if not session.permanent_now() or core.is_new:
            lifecycle.remember_refresh_facts(raw_permanent)
            lifecycle.release()
            return
        self.save_session(app, session, response)
        # Learned here, not on every commit: a read or a write pays nothing for it; a deadline
        # moved by a later write only makes these facts due sooner (an earlier Expires).
        lifecycle.remember_refresh_facts(raw_permanent)

    @staticmethod
    def _cookie(session: FlaskSession, core: Session, settings: FlaskSettings, committed: str | None) -> str | None:
        """The cookie to send, with Flask's meaning of ``permanent`` and ``SESSION_REFRESH_EACH_REQUEST``."""
        if committed is not None and committed == settings.removal_cookie:
            return settings.finish_cookie(committed)
        live = core.id is not None and not core.is_new and not core.is_destroyed
        if not live:
            return None if committed is None else settings.finish_cookie(committed)
        manager = session.lifecycle.manager
        permanent = session.permanent_now()
        if permanent and settings.refresh:
            # Re-sent on every response, so it can carry the session's current deadline.
            return settings.finish_cookie(manager.set_session_cookie(core, expires_at=core.expires_at))
        if committed is None:
            if not session.permanent_changed():
                return None
            return settings.finish_cookie(manager.set_session_cookie(core, persistent=permanent))
        if permanent:
            return settings.finish_cookie(committed)
        header = session.environ.get("HTTP_COOKIE")
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
