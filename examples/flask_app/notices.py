"""Telling a browser why it is no longer signed in, on the first page it opens afterwards.

The library answers every cookie it cannot use with a fresh anonymous session
and says why in a signal (:mod:`kitsession_wsgi.signals`): ``unknown_id`` for a
correctly signed cookie whose session is gone (signed out from another device,
"Sign out every other device", a revoked token), ``expired`` for a session
past its lifetime, ``invalid_signature`` for a cookie this site never signed.
The receivers below note the reason for the request; a ``before_request``
hook flashes one message for it, so the page the browser lands on (the
landing page, the login page a protected page bounces to, the page a stale
form is answered with) says what happened, whatever was clicked.

A forged or tampered cookie gets no message: it is not a session this visitor
ever had, so it is simply treated as signed out.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, flash, g, has_request_context, request

from kitsession_wsgi import signals
from kitsession_wsgi.flask import current_session

#: ``app.extensions`` key marking the apps that use these notices (the signals are process-wide)
EXTENSION_KEY = "example_session_notices"

SIGNED_OUT_ELSEWHERE = "signed-out-elsewhere"
EXPIRED = "expired"

MESSAGES = {
    SIGNED_OUT_ELSEWHERE: "This device was signed out from another device. Log in again to continue.",
    EXPIRED: "Your session expired. Log in again to continue.",
}


def _note(reason: str) -> None:
    """Remember for this request why the presented cookie gave no session."""
    if has_request_context() and current_app.extensions.get(EXTENSION_KEY):
        g.session_end_reason = reason


def _unknown_id(sender: Any, **extra: Any) -> None:
    _note(SIGNED_OUT_ELSEWHERE)


def _expired(sender: Any, **extra: Any) -> None:
    _note(EXPIRED)


# Module-level functions: blinker keeps weak references, and these live as long as the module.
signals.unknown_id.connect(_unknown_id)
signals.expired.connect(_expired)


def session_end_reason() -> str | None:
    """Why this request's cookie gave no session (:data:`SIGNED_OUT_ELSEWHERE`, :data:`EXPIRED`), or ``None``.

    ``None`` also for a browser that sent no cookie, or a forged one.
    """
    if current_session.is_new:  # reading the session loads it: the signals have fired by now
        reason = g.get("session_end_reason")
        return reason if isinstance(reason, str) else None
    return None


def flash_session_end() -> None:
    """``before_request`` hook: flash why the browser was signed out, on the first request that finds out.

    The flash is stored in the browser's new anonymous session, which replaces
    the dead cookie: the next request presents that one, so the message is
    shown once.  The JSON API, static files and requests with an
    ``Authorization`` header (API clients, whose sessions hold no messages) are
    left alone.
    """
    if request.blueprint == "api" or request.endpoint == "static" or "Authorization" in request.headers:
        return
    reason = session_end_reason()
    if reason is not None:
        flash(MESSAGES[reason], "info")


def init_notices(app: Flask) -> None:
    """Flash why a browser's session ended; register before the CSRF check, which may answer first."""
    app.extensions[EXTENSION_KEY] = True
    app.before_request(flash_session_end)
