"""CSRF protection for every POST form: a per-session token, checked in constant time.

The token lives in ``flask.session`` (so on the server, in the session store)
and every form repeats it in a hidden ``csrf_token`` field.  A POST without
the right token is answered with 400 before its view runs.  The session
cookie's ``SameSite=Strict`` already keeps other sites' forms from carrying
the cookie; the token is the second, independent line of defence.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, g, request, session
from flask.typing import ResponseReturnValue

#: the session key and the form field that carry the token
TOKEN_KEY = "csrf_token"
#: methods that change state and therefore need the token
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def csrf_token() -> str:
    """This session's token (created on first use); templates call it in every form."""
    token = g.get(TOKEN_KEY)
    if token is None:
        token = session.get(TOKEN_KEY)
        if not isinstance(token, str):
            token = session[TOKEN_KEY] = new_csrf_token()
        g.csrf_token = token
    return str(token)


def new_csrf_token() -> str:
    """A fresh random token; login and signup give the new session one.

    Also remembered for the rest of the request, so a page rendered after a
    login in the same request shows the new token.
    """
    token = secrets.token_urlsafe(32)
    g.csrf_token = token
    return token


def check_csrf_token() -> ResponseReturnValue | None:
    """``before_request`` hook: abort with 400 unless an unsafe request carries the session's token.

    A form posted from a browser whose session ended meanwhile (signed out from
    another device, or expired) carries the old session's token: that is not an
    attack, and the visitor gets the login page saying the session ended.

    The token seen here is remembered for the request (:func:`csrf_token`), so a
    form re-rendered after a failed login shows the token of the session that
    stays, even though ``with_new_session`` swapped sessions during the view.
    """
    if request.method not in UNSAFE_METHODS or request.blueprint == "api":
        # The JSON API (api.py) trusts only Authorization: Bearer sessions, which
        # another site cannot make a browser send: no CSRF token there.
        return None
    expected = session.get(TOKEN_KEY)
    sent = request.form.get(TOKEN_KEY, "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        expected.encode("utf-8"), sent.encode("utf-8")
    ):
        from .auth import session_ended, to_login  # auth imports this module

        if session_ended():
            return to_login()
        abort(400, description="The form was out of date or did not come from this site. "
                               "Reload the page and try again.")
    g.csrf_token = expected
    return None


def init_csrf(app: Flask) -> None:
    """Check every unsafe request and offer ``csrf_token()`` to templates."""
    app.before_request(check_csrf_token)
    app.jinja_env.globals["csrf_token"] = csrf_token
