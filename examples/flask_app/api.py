"""A small JSON API for scripts, CLIs and apps: the session in ``Authorization: Bearer``.

::

    POST   /api/token   {"email", "password"} -> 201 {"token": ...}   (no cookie, no CSRF token)
    GET    /api/me      -> {"id", "email"}, or 401 without a live token
    DELETE /api/token   revokes the token it is called with -> 204

A token is a session of its own: it is listed on the devices page as an
"API token" (with when it was last used), and revoked there, by "Sign out every
other device", by ``DELETE /api/token``, or when it expires, like any browser.

The API accepts only header sessions (``current_session.transport == "header"``):
a browser's cookie is ignored here, which is what makes the API safe without
CSRF tokens (another site's page cannot make a browser send an ``Authorization``
header).  ``POST /api/token`` takes JSON only, which a cross-site form cannot send.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue

from kitsession_wsgi import Session
from kitsession_wsgi.flask import create_session, current_session, session_token, with_delete_session

from .auth import check_credentials, normalize_email

bp = Blueprint("api", __name__, url_prefix="/api")

#: ``kind`` in a session's data: how the devices page tells API tokens from browsers
API_TOKEN_KIND = "api-token"


def unauthorized() -> ResponseReturnValue:
    response = jsonify(error="a live API token is required: Authorization: Bearer <token>")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@bp.post("/token")
def create_token() -> ResponseReturnValue:
    """Exchange an e-mail and password for a token; a wrong pair gets 401 and stores nothing.

    The token's session is created on its own (``create_session``), not in
    place of the request's: a browser's cookie session, if it sent one, is
    left exactly as it was (the token is a device of its own), and no cookie
    is ever set for the token's session.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("email"), str) or not isinstance(
        body.get("password"), str
    ):
        return jsonify(error='send JSON {"email": ..., "password": ...}'), 400
    user = check_credentials(normalize_email(body["email"]), body["password"])
    if user is None:
        return jsonify(error="wrong e-mail address or password"), 401
    session = create_session(user_id=user.id, data={
        "email": user.email,
        "kind": API_TOKEN_KIND,
        "user_agent": request.user_agent.string[:512],
        "ip": request.remote_addr or "",
    })
    return jsonify(token=session_token(session)), 201


@bp.get("/me")
def me() -> ResponseReturnValue:
    """The token's user."""
    if current_session.transport != "header" or g.user is None:
        return unauthorized()
    return jsonify(id=g.user.id, email=g.user.email)


@bp.delete("/token")
@with_delete_session
def delete_token(session: Session) -> ResponseReturnValue:
    """Revoke the token this request carries (``with_delete_session`` removes it on a 2xx answer)."""
    if session.transport != "header":
        return unauthorized()  # a 4xx answer: nothing is removed
    return "", 204
