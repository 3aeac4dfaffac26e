"""The ``session`` a ``with_new_session`` / ``with_delete_session`` view receives has Flask's session API."""

from __future__ import annotations

from typing import Any

import flask
import pytest

from kitsession_wsgi import MemoryStore
from kitsession_wsgi.flask import KitSession, current_session, session_token, with_delete_session, with_new_session


def build_app(spelling: str) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="decorated", KITSESSION_BEARER=True)
    KitSession(app, store=MemoryStore())

    @app.post("/login")
    @with_new_session
    def login(session: Any) -> Any:
        assert session is flask.session._get_current_object()  # type: ignore[attr-defined]
        target = session if spelling == "argument" else flask.session
        target.permanent = True          # the README's advice, on either spelling
        target["email"] = "ada@example.com"
        session.user_id = 7
        return {"new": target.new, "modified": target.modified, "permanent": target.permanent,
                "handle_is_none": session.handle is None}

    @app.post("/token")
    @with_new_session
    def token(session: Any) -> Any:
        session.data = {"email": "ada@example.com"}
        session.user_id = 7
        return {"token": session_token(session)}

    @app.get("/me")
    def me() -> Any:
        return {"email": flask.session.get("email"), "user_id": current_session.user_id,
                "permanent": flask.session.permanent}

    @app.post("/logout")
    @with_delete_session
    def logout(session: Any) -> Any:
        target = session if spelling == "argument" else flask.session
        return {"email": target["email"], "user_id": session.user_id, "permanent": target.permanent}

    return app


@pytest.mark.parametrize("spelling", ["argument", "flask.session"])
def test_the_login_view_sets_permanent_and_keys_on_either_spelling(spelling: str) -> None:
    client = build_app(spelling).test_client()
    response = client.post("/login")
    assert response.status_code == 200
    assert response.json == {"new": True, "modified": True, "permanent": True, "handle_is_none": True}
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None, "a permanent cookie carries an expiry"
    assert client.get("/me").json == {"email": "ada@example.com", "user_id": 7, "permanent": True}
    assert client.post("/logout").json == {"email": "ada@example.com", "user_id": 7, "permanent": True}
    assert client.get("/me").json == {"email": None, "user_id": None, "permanent": False}


def test_the_argument_still_works_with_the_session_api_functions() -> None:
    client = build_app("argument").test_client()
    token = client.post("/token").json["token"]
    me = client.get("/me", headers={"Authorization": f"Bearer {token}"}).json
    assert me["user_id"] == 7 and me["email"] == "ada@example.com"
