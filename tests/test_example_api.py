"""The example app's JSON API (examples/flask_app/api.py) through werkzeug's test client:
``POST /api/token``, ``GET /api/me``, ``DELETE /api/token``, and API tokens on the devices page.

The same flow in a real browser is in ``test_browser.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kitsession_wsgi import session_key

from test_example_app import (  # noqa: F401 (fixtures)
    FIREFOX,
    PASSWORD,
    app,
    clean_environment,
    client,
    database_path,
    form,
    log_in,
    new_client,
    parse,
    sign_up,
    signed_in_as,
    user_sessions,
)

EMAIL = "ada@example.com"


def mint(client: FlaskClient, email: str = EMAIL, password: str = PASSWORD) -> str:
    response = client.post("/api/token", json={"email": email, "password": password})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers.getlist("Set-Cookie") == [], "the API hands out no cookie"
    token = response.get_json()["token"]
    assert isinstance(token, str) and token
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_client(app: Flask) -> FlaskClient:
    """A client that keeps no cookies, like curl."""
    return app.test_client(use_cookies=False)


def test_token_then_me_then_delete(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    curl = api_client(app)
    token = mint(curl)

    me = curl.get("/api/me", headers=bearer(token))
    assert me.status_code == 200 and me.get_json()["email"] == EMAIL and isinstance(me.get_json()["id"], int)
    assert me.headers.getlist("Set-Cookie") == []
    assert "Authorization" in me.headers["Vary"]

    gone = curl.delete("/api/token", headers=bearer(token))
    assert gone.status_code == 204 and gone.headers.getlist("Set-Cookie") == []
    after = curl.get("/api/me", headers=bearer(token))
    assert after.status_code == 401 and after.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_password_or_bad_body_stores_nothing(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    before = len(user_sessions(app))
    curl = api_client(app)
    assert curl.post("/api/token", json={"email": EMAIL, "password": "wrong password"}).status_code == 401
    assert curl.post("/api/token", json={"email": "nobody@example.com", "password": PASSWORD}).status_code == 401
    assert curl.post("/api/token", json=["not", "an", "object"]).status_code == 400
    # A form post (what another site could make a browser send) is not JSON: refused.
    assert curl.post("/api/token", data={"email": EMAIL, "password": PASSWORD}).status_code == 400
    assert len(user_sessions(app)) == before


def test_me_needs_a_live_header_session(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    curl = api_client(app)
    assert curl.get("/api/me").status_code == 401
    assert curl.get("/api/me", headers=bearer("not-a-token")).status_code == 401
    assert curl.get("/api/me", headers={"Authorization": "Basic YWRhOnB3"}).status_code == 401
    # The browser's cookie session does not open the API (it would need CSRF protection).
    assert client.get("/api/me").status_code == 401
    assert client.delete("/api/token").status_code == 401
    assert signed_in_as(client) == EMAIL


def test_a_token_does_not_open_the_pages(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    curl = api_client(app)
    token = mint(curl)
    response = curl.get("/devices/", headers=bearer(token))
    assert response.status_code == 302 and response.headers.getlist("Set-Cookie") == []


def test_minting_from_a_signed_in_browser_keeps_the_browser_signed_in(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    token = mint(client)  # the browser's cookie goes along; no CSRF token is needed
    assert signed_in_as(client) == EMAIL
    assert api_client(app).get("/api/me", headers=bearer(token)).status_code == 200
    assert len(user_sessions(app)) == 2


@pytest.mark.parametrize("keep_signed_in", [False, True], ids=["browser-session-cookie", "kept-signed-in"])
def test_minting_from_a_browser_never_gives_the_browser_the_tokens_session(
    app: Flask, keep_signed_in: bool
) -> None:
    """Regression: minting from a browser whose session's ``permanent`` was set answered with a
    ``Set-Cookie`` for the token's session (the token as the browser's cookie)."""
    browser = new_client(app)
    sign_up(browser)
    browser.post("/logout", data={"csrf_token": form(browser.get("/"), "/logout").fields["csrf_token"]})
    log_in(browser, keep_signed_in=keep_signed_in)
    before = browser.get_cookie("session")
    assert before is not None
    response = browser.post("/api/token", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 201
    token_id = response.get_json()["token"].rsplit(".", 1)[0]
    for header in response.headers.getlist("Set-Cookie"):
        assert token_id not in header
    after = browser.get_cookie("session")
    assert after is not None and after.value == before.value
    assert signed_in_as(browser) == EMAIL


def test_deleting_a_token_with_a_browser_cookie_is_refused_and_removes_nothing(app: Flask,
                                                                             client: FlaskClient) -> None:
    sign_up(client)
    response = client.delete("/api/token")
    assert response.status_code == 401
    assert signed_in_as(client) == EMAIL and len(user_sessions(app)) == 1


def test_api_tokens_are_listed_and_revoked_on_the_devices_page(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    curl = api_client(app)
    curl.environ_base["HTTP_USER_AGENT"] = "curl/8.5.0"
    token = mint(curl)
    assert curl.get("/api/me", headers=bearer(token)).status_code == 200

    page = client.get("/devices/")
    text = page.get_data(as_text=True)
    assert "API token" in text and "curl/8.5.0" in text
    rows = parse(page).device_rows
    assert len(rows) == 2
    (token_session,) = [s for s in user_sessions(app) if s.data.get("kind") == "api-token"]
    revoke = next(f for f in parse(page).forms
                  if f.action == "/devices/revoke" and f.fields.get("handle") == token_session.handle)
    assert "Revoke this token" in revoke.buttons

    response = client.post("/devices/revoke", data=revoke.fields, follow_redirects=True)
    assert "That device has been signed out." in response.get_data(as_text=True)
    assert curl.get("/api/me", headers=bearer(token)).status_code == 401
    assert signed_in_as(client) == EMAIL


def test_sign_out_every_other_device_revokes_api_tokens(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    curl = api_client(app)
    tokens = [mint(curl), mint(curl)]
    laptop = new_client(app, FIREFOX)
    laptop.get("/")
    page = client.get("/devices/")
    client.post("/devices/revoke-others", data=form(page, "/devices/revoke-others").fields)
    for token in tokens:
        assert curl.get("/api/me", headers=bearer(token)).status_code == 401
    assert signed_in_as(client) == EMAIL


def test_a_token_names_a_stored_session_by_its_digest_only(app: Flask, client: FlaskClient,
                                                             database_path: Path) -> None:
    sign_up(client)
    token = mint(api_client(app))
    session_id = token.rsplit(".", 1)[0]
    assert any(s.handle == session_key(session_id) for s in user_sessions(app))
    assert session_id.encode() not in database_path.read_bytes()


def test_a_revoked_token_on_a_page_gets_no_message_and_no_new_session(app: Flask, client: FlaskClient) -> None:
    """The "signed out from another device" message is for browsers: an API client's request stores nothing."""
    sign_up(client)
    curl = api_client(app)
    token = mint(curl)
    assert curl.delete("/api/token", headers=bearer(token)).status_code == 204
    sessions_before = len(user_sessions(app))
    response = curl.get("/", headers=bearer(token))
    assert response.status_code == 200
    assert "signed out from another device" not in response.get_data(as_text=True)
    assert response.headers.getlist("Set-Cookie") == [] and "Session-Token" not in response.headers
    assert len(user_sessions(app)) == sessions_before
