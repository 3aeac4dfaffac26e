"""One credential per transport: a bearer token is no cookie, a cookie's value is no bearer token.

A token is ``<id>.<mac>`` with its MAC under a key derived for tokens alone, so
``Cookie: session=s:<token>`` is a forged cookie and ``Authorization: Bearer <cookie
value>`` a forged token, while the cookie keeps express-session's format (old cookies
stay valid).  And a session that travels by the header never gets a ``Set-Cookie``,
whatever Flask's own cookie rules (``permanent``) say.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask import session as flask_session

from kitsession_wsgi import MemoryStore, SessionManager
from kitsession_wsgi.cookies import encode_cookie_value
from kitsession_wsgi.flask import KitSession, session_token, with_new_session

from session_helpers import node_signed_value, node_token_value

KEY = "transport-key"


@pytest.fixture
def manager() -> SessionManager:
    return SessionManager(MemoryStore(), keys=[KEY, "older-key"], secure=False, bearer=True)


def cookie_header(value: str) -> dict[str, str]:
    return {"Cookie": f"session={encode_cookie_value(value)}"}


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_session(manager: SessionManager) -> tuple[Any, str]:
    fresh = manager.new_session(data={"id": 1, "kind": "token"})
    return fresh, manager.session_token(fresh)


def test_a_bearer_token_presented_as_a_cookie_is_an_anonymous_session(manager: SessionManager) -> None:
    session, token = token_session(manager)
    assert manager.initialize_session(bearer_header(token)).handle == session.handle  # the control
    as_cookie = manager.initialize_session(cookie_header("s:" + token))
    assert as_cookie.is_new and as_cookie.transport is None and as_cookie.handle is None


def test_a_cookie_value_presented_as_a_bearer_token_is_an_anonymous_session(manager: SessionManager) -> None:
    browser = manager.create_session(user_id=1, data={"id": 1})
    assert browser.id is not None
    value = manager.cookie_value(browser.id)
    assert manager.initialize_session(cookie_header(value)).handle == browser.handle  # the control
    for presented in (value.removeprefix("s:"), value):
        as_token = manager.initialize_session(bearer_header(presented))
        assert as_token.is_new and as_token.handle is None, presented


@pytest.mark.parametrize("key", [KEY, "older-key"], ids=["current-key", "rotated-out-key"])
def test_cookies_in_express_sessions_format_stay_valid(manager: SessionManager, key: str) -> None:
    browser = manager.create_session(data={"n": 1})
    assert browser.id is not None
    loaded = manager.initialize_session(cookie_header(node_signed_value(key, browser.id)))
    assert loaded.handle == browser.handle and loaded.transport == "cookie"


def test_tokens_are_signed_with_the_token_key_and_rotate_like_cookies(manager: SessionManager) -> None:
    session, token = token_session(manager)
    assert session.id is not None and token == node_token_value(KEY, session.id)
    older = manager.initialize_session(bearer_header(node_token_value("older-key", session.id)))
    assert older.handle == session.handle
    # A 0.2.0 token (the cookie's value without ``s:``) no longer opens the header.
    assert manager.initialize_session(bearer_header(node_signed_value(KEY, session.id)[2:])).is_new


def flask_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, KITSESSION_BEARER=True, KITSESSION_SECURE=False, **config)
    KitSession(app, store=MemoryStore())

    @app.post("/login")
    @with_new_session
    def login(session: Any) -> str:
        session.data = {"id": 1}
        flask_session.permanent = True
        return "ok"

    @app.post("/token")
    @with_new_session
    def token(session: Any) -> dict[str, str]:
        session.data = {"id": 1, "kind": "token"}
        return {"token": session_token(session)}

    @app.get("/me")
    def me() -> dict[str, Any]:
        flask_session.permanent = True  # a header session marked permanent, with a cookie beside it
        return {"user": flask_session.get("id")}

    return app


def test_a_token_minted_in_a_browser_with_a_permanent_session_sets_no_cookie() -> None:
    """The browser's loaded session had ``permanent``: Flask's cookie rule must not hand the token's
    session out as the browser's cookie."""
    client = flask_app().test_client()
    client.post("/login")
    browser_cookie = client.get_cookie("session")
    assert browser_cookie is not None
    answer = client.post("/token")
    token = answer.get_json()["token"]
    assert answer.headers.getlist("Set-Cookie") == [], "the token's session went out as a cookie"
    assert client.get_cookie("session").value == browser_cookie.value
    assert token.rsplit(".", 1)[0] not in browser_cookie.value


def test_a_header_request_carrying_a_cookie_gets_no_cookie_even_when_refreshed_and_permanent() -> None:
    app = flask_app(SESSION_REFRESH_EACH_REQUEST=True)
    client = app.test_client()
    client.post("/login")
    token = client.post("/token").get_json()["token"]
    answer = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert answer.get_json() == {"user": 1}
    assert answer.headers.getlist("Set-Cookie") == []
