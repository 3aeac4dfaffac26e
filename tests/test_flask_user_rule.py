"""F12: under Flask a write to ``flask.session`` is never a login unless the app opts in.

``session["id"] = item_id`` once made ``g.user`` the user with that id.  Now the data-derived
user rule (``id`` > ``user_id`` > ``userId``) applies under Flask only in a ``with_new_session``
view (an explicit login) or with ``KITSESSION_USER_ID_FROM_DATA = True``; removing the key
that named the user still ends the link.
"""

from __future__ import annotations

from typing import Any

import flask
import pytest

from kitsession_wsgi import MemoryStore
from kitsession_wsgi.flask import KitSession, current_session, with_new_session


def build_app(**config: Any) -> tuple[flask.Flask, MemoryStore]:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="user-rule", **config)
    store = MemoryStore()
    kit = KitSession(app, store=store)

    @kit.user_loader
    def load(user_id: Any) -> Any:
        return {"id": user_id, "admin": user_id == 1}

    @app.post("/items/<int:item_id>/view")
    def view_item(item_id: int) -> str:
        flask.session["id"] = item_id  # "the last item viewed": not a login
        return "ok"

    @app.post("/login/<int:user_id>")
    @with_new_session
    def login(session: Any, user_id: int) -> str:
        session["user_id"] = user_id  # in a login view the data rule applies
        return "ok"

    @app.post("/forget")
    def forget() -> str:
        flask.session.pop("user_id", None)
        return "ok"

    @app.get("/whoami")
    def whoami() -> Any:
        return {"user": flask.g.user, "user_id": current_session.user_id}

    return app, store


def test_writing_id_into_the_session_is_not_a_login() -> None:
    app, _ = build_app()
    client = app.test_client()
    client.post("/items/1/view")
    assert client.get("/whoami").json == {"user": None, "user_id": None}, "item 1 did not make us user 1"
    client.post("/login/5")
    client.post("/items/1/view")
    assert client.get("/whoami").json["user_id"] == 5, "a signed-in user stays who they are"


def test_a_with_new_session_login_links_the_user_from_the_data_and_popping_it_logs_out() -> None:
    app, store = build_app()
    client = app.test_client()
    client.post("/login/5")
    assert client.get("/whoami").json == {"user": {"id": 5, "admin": False}, "user_id": 5}
    client.post("/forget")
    assert client.get("/whoami").json == {"user": None, "user_id": None}


def test_the_opt_in_restores_the_data_rule() -> None:
    app, _ = build_app(KITSESSION_USER_ID_FROM_DATA=True)
    client = app.test_client()
    client.post("/items/1/view")
    assert client.get("/whoami").json["user_id"] == 1


def test_the_opt_in_must_be_a_bool() -> None:
    from kitsession_wsgi import ConfigurationError

    with pytest.raises(ConfigurationError, match="user_id_from_data"):
        build_app(KITSESSION_USER_ID_FROM_DATA="yes")
