"""CSRF protection for every POST form: a per-session token, checked in constant time.

The token lives in ``flask.session`` (so on the server, in the session store)
and every form repeats it in a hidden ``csrf_token`` field.  A POST without
the right token from a signed-in browser is answered with 400 before its view
runs; a stale form (another tab, a session that ended) gets a page saying
what happened instead (:func:`check_csrf_token`).  The session
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
    """``before_request`` hook: an unsafe request must carry the session's token.

    A wrong or missing token is usually an ordinary stale form, not an attack,
    and gets a page that says what happened rather than a 400:

    * a signed-in browser posting the login or sign-up form of another tab
      (opened before it logged in there) is sent home: "already signed in";
    * a browser that is not signed in (logged out in another tab, signed out
      from another device, session expired) posting a form of the signed-in
      pages goes on to the view, whose login check answers with the login page
      (a note being saved is kept, see ``home.save_note``): with no signed-in
      session there is no account a forged request could act on;
    * a browser that is not signed in posting a stale login or sign-up form
      gets that form again, with a fresh token and what it had typed.

    What is left is a signed-in session receiving a form with someone else's
    token, or none: 400, before the view runs.

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
    if isinstance(expected, str) and hmac.compare_digest(expected.encode("utf-8"), sent.encode("utf-8")):
        g.csrf_token = expected
        return None
    from . import auth  # auth imports this module

    if request.endpoint in auth.ACCOUNT_FORMS:
        if g.user is not None:
            return auth.already_signed_in()
        return auth.stale_account_form()
    if g.user is None:
        return None
    abort(400, description="The form was out of date or did not come from this site. "
                           "Reload the page and try again.")


def init_csrf(app: Flask) -> None:
    """Check every unsafe request and offer ``csrf_token()`` to templates."""
    app.before_request(check_csrf_token)
    app.jinja_env.globals["csrf_token"] = csrf_token
