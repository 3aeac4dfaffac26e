"""Framework-neutral WSGI middleware and view decorators.

Wrap any WSGI application::

    from kitsession_wsgi import MemoryStore, SessionManager
    from kitsession_wsgi.wsgi import SessionMiddleware

    app = SessionMiddleware(app, SessionManager(MemoryStore(), keys=["secret"]))

and inside it read ``environ["kitsession"]`` (a :class:`RequestSession`), or
``request_session(request)`` from a framework view (Bottle, Falcon, Pyramid,
Django, werkzeug, ...).  The middleware only translates: every cookie,
signing, expiry and store rule lives in :class:`~kitsession_wsgi.SessionManager`.

.. versionadded:: 0.1
"""

from __future__ import annotations

from .._http import (  # importable from here since 0.1
    OutageReport,
    add_bearer_headers,
    add_session_headers,
    error_reply,
    validate_retry_after,
    vary_covers_cookie,
)
from ._decorators import session_lock, with_delete_session, with_new_session
from ._middleware import SessionMiddleware
from ._request import ENVIRON_KEY, MiddlewareMissing, NotAWSGIApplication, RequestSession, request_session

__all__ = [
    "ENVIRON_KEY", "MiddlewareMissing", "NotAWSGIApplication", "OutageReport", "RequestSession",
    "SessionMiddleware", "add_bearer_headers", "add_session_headers", "error_reply", "request_session",
    "session_lock", "validate_retry_after", "vary_covers_cookie", "with_delete_session", "with_new_session",
]
