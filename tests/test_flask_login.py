"""Flask-Login without glue: ``login_user()`` / ``logout_user()`` drive the server-side session.

The real Flask-Login, with no KitSession-specific code in the app: sign-in links the
session to ``user.get_id()`` on a new id, sign-out removes the record, and remember-me
is the session itself, so every way of ending the session (logout, sign-out
everywhere, a revoke by handle) leaves the browser no cookie that signs it in again.
On the memory store and on SQLite (a SQL store).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, session
from werkzeug.test import Client

flask_login = pytest.importorskip("flask_login")
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user  # noqa: E402

from kitsession_wsgi import SessionStore  # noqa: E402
from kitsession_wsgi.errors import ConfigurationError  # noqa: E402
from kitsession_wsgi.flask import KitSession, current_session, with_new_session  # noqa: E402
from kitsession_wsgi.flask import get_manager  # noqa: E402

from session_helpers import live_records  # noqa: E402
from store_kinds import open_store, store_servers  # noqa: E402,F401 (store_servers is a fixture)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


def make_app(store: SessionStore, **config: Any) -> Flask:
    """An ordinary Flask-Login app: nothing in it knows about KitSession but ``KitSession(app, store)``."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test secret", SESSION_COOKIE_SECURE=False, **config)
    KitSession(app, store)
    login_manager = LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return User(user_id) if user_id.isdigit() else None

    @app.post("/login/<user_id>")
    def login(user_id: str) -> Any:
        session["before"] = "kept"
        login_user(User(user_id), remember=bool(app.config.get("TEST_REMEMBER")))
        return "ok"

    @app.post("/login-new/<user_id>")
    @with_new_session
    def login_new(user_id: str, session: Any) -> Any:
        login_user(User(user_id))
        return "ok"

    @app.post("/visit")
    def visit() -> Any:
        session["cart"] = ["apple"]
        return "ok"

    @app.post("/logout")
    def logout() -> Any:
        logout_user()
        return "bye"

    @app.get("/me")
    @login_required
    def me() -> Any:
        return jsonify(user=current_user.get_id(), linked=current_session.user_id,
                       handle=current_session.handle)

    @app.get("/whoami")
    def whoami() -> Any:
        return jsonify(user=current_user.get_id() if current_user.is_authenticated else None)

    return app


def cookie_value(client: Client, name: str = "session") -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


def restart_browser(client: Client) -> None:
    """A browser restart: every cookie without an expiry is gone."""
    for cookie in list(client._cookies.values()):
        if cookie.expires is None:
            client.delete_cookie(cookie.key, domain=cookie.domain, path=cookie.path)


def replay(app: Flask, cookies: dict[str, str]) -> Any:
    """A fresh client that presents every cookie the browser ever held."""
    client = app.test_client()
    for name, value in cookies.items():
        client.set_cookie(name, value)
    return client.get("/whoami").get_json()["user"]


def test_login_user_links_the_session_and_rotates_its_id(store: SessionStore) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/visit")
    before = cookie_value(client)
    assert before is not None
    client.post("/login/7")
    after = cookie_value(client)
    assert after is not None and after != before
    me = client.get("/me").get_json()
    assert me["user"] == "7" and me["linked"] == "7"
    assert [record.user_id for record in live_records(store)] == ["7"]
    # the id held before the login is dead at once
    assert replay(app, {"session": before}) is None
    with app.test_request_context():
        assert [s.handle for s in get_manager().get_sessions_for_user("7")] == [me["handle"]]


def test_login_on_a_first_visit_and_under_with_new_session(store: SessionStore) -> None:
    app = make_app(store)
    first = app.test_client()
    first.post("/login/1")
    assert first.get("/me").get_json()["linked"] == "1"
    second = app.test_client()
    second.post("/visit")
    planted = cookie_value(second)
    second.post("/login-new/2")
    assert cookie_value(second) != planted
    assert second.get("/me").get_json()["linked"] == "2"
    assert replay(app, {"session": planted or ""}) is None
    assert sorted(str(record.user_id) for record in live_records(store)) == ["1", "2"]


def test_logout_user_removes_the_record_and_clears_the_cookie(store: SessionStore) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/login/7")
    held = cookie_value(client)
    client.post("/logout")
    assert cookie_value(client) is None
    assert live_records(store) == []
    assert replay(app, {"session": held or ""}) is None


@pytest.fixture
def remembered(store: SessionStore) -> tuple[Flask, Client, dict[str, str]]:
    """A remembered login, and every cookie the browser held after it."""
    app = make_app(store, TEST_REMEMBER=True)
    client = app.test_client()
    client.post("/login/7")
    held = {cookie.key: cookie.value for cookie in client._cookies.values()}
    return app, client, held


def test_remember_me_survives_a_browser_restart(remembered: tuple[Flask, Client, dict[str, str]]) -> None:
    app, client, held = remembered
    assert "remember_token" not in held  # the session is the remember-me
    assert client.get_cookie("session").expires is not None
    restart_browser(client)
    assert client.get("/whoami").get_json()["user"] == "7"


def test_without_remember_a_browser_restart_signs_out(store: SessionStore) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/login/7")
    restart_browser(client)
    assert client.get("/whoami").get_json()["user"] is None


@pytest.mark.parametrize("ending", ["logout", "sign-out-everywhere", "revoke-by-handle"])
def test_remember_me_ends_with_the_session(remembered: tuple[Flask, Client, dict[str, str]], ending: str) -> None:
    app, client, held = remembered
    handle = client.get("/me").get_json()["handle"]
    if ending == "logout":
        client.post("/logout")
    else:
        with app.test_request_context():
            manager = get_manager()
            if ending == "sign-out-everywhere":
                assert manager.remove_all_sessions_for_user("7") == 1
            else:
                assert manager.remove_session_by_handle(handle) is True
    assert replay(app, held) is None
    restart_browser(client)
    assert client.get("/whoami").get_json()["user"] is None


def test_a_flask_login_remember_token_never_signs_in(store: SessionStore) -> None:
    """A token Flask-Login set before KitSession was installed (or a stolen one) is refused and cleared."""
    plain = Flask(__name__)
    plain.config.update(SECRET_KEY="test secret")
    with plain.test_request_context():
        from flask_login.utils import encode_cookie

        token = encode_cookie("7")
    app = make_app(store)
    client = app.test_client()
    client.set_cookie("remember_token", token)
    response = client.get("/whoami")
    assert response.get_json()["user"] is None
    assert client.get_cookie("remember_token") is None
    assert client.get("/whoami").get_json()["user"] is None
    assert all(record.user_id is None and "_user_id" not in record.data for record in live_records(store))


def test_the_opt_out_leaves_flask_login_alone(store: SessionStore) -> None:
    app = make_app(store, KITSESSION_FLASK_LOGIN=False, TEST_REMEMBER=True)
    client = app.test_client()
    client.post("/visit")
    before = cookie_value(client)
    client.post("/login/7")
    assert cookie_value(client) == before  # no rotation
    assert client.get("/me").get_json()["linked"] is None  # no link
    assert client.get_cookie("remember_token") is not None  # Flask-Login's own remember-me


def test_the_option_must_be_a_bool(store: SessionStore) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KITSESSION_FLASK_LOGIN="yes")
    with pytest.raises(ConfigurationError, match="KITSESSION_FLASK_LOGIN"):
        KitSession(app, store)


def test_other_apps_are_untouched(store: SessionStore) -> None:
    """The handlers are bound to the apps KitSession is installed on."""
    linked = make_app(store)
    other = Flask(__name__)
    other.config.update(SECRET_KEY="other")
    LoginManager(other).user_loader(lambda user_id: User(user_id))

    @other.post("/login")
    def login() -> Any:
        login_user(User("3"))
        return "ok"

    client = other.test_client()
    client.post("/login")
    assert client.get_cookie("session") is not None  # Flask's own cookie session
    assert live_records(store) == []
    assert linked.test_client().post("/login/4").status_code == 200


def test_a_second_login_as_another_user_moves_the_link_to_a_new_id(store: SessionStore) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/login/1")
    first = cookie_value(client)
    client.post("/login/2")
    assert cookie_value(client) != first
    assert client.get("/me").get_json()["linked"] == "2"
    assert [str(record.user_id) for record in live_records(store)] == ["2"]
    assert replay(app, {"session": first or ""}) is None


def test_logout_user_under_with_delete_session(store: SessionStore) -> None:
    from kitsession_wsgi.flask import with_delete_session

    app = make_app(store)

    @app.post("/logout-decorated")
    @with_delete_session
    def logout_decorated(session: Any) -> Any:
        logout_user()
        return "bye"

    client = app.test_client()
    client.post("/login/7")
    held = cookie_value(client)
    assert client.post("/logout-decorated").status_code == 200
    assert cookie_value(client) is None
    assert live_records(store) == []
    assert replay(app, {"session": held or ""}) is None
