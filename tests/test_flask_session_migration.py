"""Signed-in users survive the switch from Flask-Session (opt-in, Redis; issue 14).

Real Flask-Session 0.8 writes a signed-in session into a private Redis; the same app then runs
with only the import changed and ``KITSESSION_MIGRATE_FLASK_SESSION = True``: the browser's
Flask-Session cookie is read once, the session is moved into KitSession's format and a new
cookie replaces the old one.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from flask import Flask, session

from kitsession_wsgi import ConfigurationError
from kitsession_wsgi.flask import KitSession, current_session

from store_kinds import store_servers  # noqa: F401 (fixture)


def build_app(session_class: Any, client: redis.Redis, prefix: str, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="migration-secret", SESSION_TYPE="redis", SESSION_REDIS=client,
                      SESSION_KEY_PREFIX=prefix, **config)
    session_class(app)

    @app.get("/login")
    def login() -> str:
        session["user_id"] = 7
        session["name"] = "Ada"
        return "ok"

    @app.get("/me")
    def me() -> Any:
        return {"user_id": session.get("user_id"), "name": session.get("name")}

    @app.get("/kit")
    def kit() -> Any:
        return {"user_id": current_session.user_id, "is_new": current_session.is_new}

    return app


@pytest.fixture
def redis_client(store_servers: Any) -> Any:
    client = redis.Redis.from_url(store_servers.redis_url())
    yield client
    client.close()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned-ids", "SESSION_USE_SIGNER"])
def test_a_flask_session_login_moves_into_kitsession_once(redis_client: Any, signed: bool) -> None:
    from flask_session import Session

    prefix = f"mig{int(signed)}{id(redis_client)}:"
    before = build_app(Session, redis_client, prefix, SESSION_USE_SIGNER=signed)
    browser = before.test_client()
    browser.get("/login")
    old_cookie = browser.get_cookie("session")
    assert old_cookie is not None
    assert redis_client.keys(prefix + "*"), "Flask-Session stored the login"

    after = build_app(KitSession, redis_client, prefix, SESSION_USE_SIGNER=signed,
                      KITSESSION_MIGRATE_FLASK_SESSION=True)
    switched = after.test_client()
    switched.set_cookie("session", old_cookie.value)
    response = switched.get("/me")
    assert response.json == {"user_id": 7, "name": "Ada"}, "still signed in after the switch"
    new_cookie = switched.get_cookie("session")
    assert new_cookie is not None and new_cookie.value != old_cookie.value
    assert unquote(new_cookie.value).startswith("s:") is signed, "a KitSession cookie, signed as SESSION_USE_SIGNER says"
    assert switched.get("/kit").json == {"user_id": 7, "is_new": False}, "linked to the user"
    flask_session_keys = [key for key in redis_client.keys(prefix + "*")
                          if key.decode().removeprefix(prefix) == _flask_session_id(old_cookie.value, signed)]
    assert flask_session_keys == [], "the Flask-Session record was moved, not copied"

    replay = after.test_client()
    replay.set_cookie("session", old_cookie.value)
    assert replay.get("/me").json == {"user_id": None, "name": None}, "moved once: the old cookie is dead"
    redis_client.delete(*redis_client.keys(prefix + "*"))


def _flask_session_id(cookie_value: str, signed: bool) -> str:
    value = unquote(cookie_value)
    return value.rsplit(".", 1)[0] if signed else value


def test_without_the_opt_in_flask_session_users_start_anonymous(redis_client: Any) -> None:
    from flask_session import Session

    prefix = f"nomig{id(redis_client)}:"
    browser = build_app(Session, redis_client, prefix).test_client()
    browser.get("/login")
    old_cookie = browser.get_cookie("session")
    assert old_cookie is not None
    switched = build_app(KitSession, redis_client, prefix).test_client()
    switched.set_cookie("session", old_cookie.value)
    assert switched.get("/me").json == {"user_id": None, "name": None}
    assert redis_client.keys(prefix + "*"), "the Flask-Session record is left alone"
    redis_client.delete(*redis_client.keys(prefix + "*"))


def test_a_forged_flask_session_cookie_moves_nothing(redis_client: Any) -> None:
    from flask_session import Session

    prefix = f"forged{id(redis_client)}:"
    browser = build_app(Session, redis_client, prefix, SESSION_USE_SIGNER=True).test_client()
    browser.get("/login")
    old_cookie = browser.get_cookie("session")
    assert old_cookie is not None
    sid = _flask_session_id(old_cookie.value, True)
    after = build_app(KitSession, redis_client, prefix, SESSION_USE_SIGNER=True,
                      KITSESSION_MIGRATE_FLASK_SESSION=True)
    forger = after.test_client()
    forger.set_cookie("session", sid + ".forgedsignature")
    assert forger.get("/me").json == {"user_id": None, "name": None}
    assert redis_client.get(prefix + sid) is not None, "still there for its real owner"
    redis_client.delete(*redis_client.keys(prefix + "*"))


def test_migration_is_for_redis_only() -> None:
    from cachelib import SimpleCache

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache(), KITSESSION_MIGRATE_FLASK_SESSION=True)
    with pytest.raises(ConfigurationError, match="KITSESSION_MIGRATE_FLASK_SESSION"):
        KitSession(app)


def test_without_msgspec_the_migration_is_a_configuration_error_at_init_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a 500 on every request: the extra to install is named when the app is set up."""
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url("redis://127.0.0.1:1"),
                      KITSESSION_MIGRATE_FLASK_SESSION=True)
    with pytest.raises(ConfigurationError) as raised:
        KitSession(app)
    assert raised.value.option == "KITSESSION_MIGRATE_FLASK_SESSION"
    assert "kitsession-wsgi[flask-session]" in str(raised.value)


def test_a_migration_lookup_never_reaches_kitsession_records_or_markers(redis_client: Any) -> None:
    """F4: a cookie holding a victim's public handle, or a user's revocation-marker key, is read as a
    Flask-Session id; the GETDEL it causes must not log the victim out or erase the marker."""
    from kitsession_wsgi._keys import revocation_key

    prefix = f"f4{id(redis_client)}:"
    app = build_app(KitSession, redis_client, prefix, KITSESSION_MIGRATE_FLASK_SESSION=True,
                    KITSESSION_SIGNED=False)
    with app.test_request_context():
        manager = app.extensions["kitsession"].manager
        victim = manager.create_session(user_id=7, data={"name": "Ada"})
        other = manager.create_session(user_id=8, data={"name": "Bob"})
        manager.remove_all_sessions_for_user(8)
    assert victim.id is not None and victim.handle is not None
    marker = revocation_key(8)
    marker_keys = [key for key in redis_client.keys(prefix + "*") if marker in key.decode()]
    assert marker_keys, "the revocation marker is stored"
    assert other.handle is not None

    for planted in (victim.handle, marker):
        attacker = app.test_client()
        attacker.set_cookie("session", planted)
        assert attacker.get("/me").json == {"user_id": None, "name": None}
    assert [key for key in redis_client.keys(prefix + "*") if marker in key.decode()] == marker_keys
    owner = app.test_client()
    owner.set_cookie("session", victim.id)
    assert owner.get("/me").json == {"user_id": None, "name": "Ada"}, "the victim is still signed in"
    redis_client.delete(*redis_client.keys(prefix + "*"))
