"""Under Flask, Flask's own session settings are KitSession's configuration (issue 14).

One test per honoured setting through the Flask test client, one that changes every setting on
a running app, the precedence of ``KitSession(...)`` arguments and ``KITSESSION_*`` keys,
``session.permanent`` with Flask's meaning, a missing ``SECRET_KEY`` (never silent), and the
per-request config reading (a manager is rebuilt only when the config changed).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask, session
from werkzeug.test import TestResponse

from kitsession_wsgi import ConfigurationError, MemoryStore
from kitsession_wsgi.flask import KitSession, current_session, get_manager
from kitsession_wsgi.flask_settings import REFRESH_ABSOLUTE_LIFETIME
from kitsession_wsgi.signing import CookieSigner

SECRET = "flask-config-secret"


def make_app(config: dict[str, Any] | None = None, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)
    app.config.update(config or {})
    KitSession(app, store=MemoryStore(), **options)

    @app.get("/write")
    def write() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    @app.get("/read")
    def read() -> str:
        return str(session.get("n"))

    @app.get("/permanent/<flag>")
    def permanent(flag: str) -> str:
        session.permanent = flag == "on"
        return str(session.permanent)

    @app.get("/nothing")
    def nothing() -> str:
        return ""

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return ""

    return app


def cookies(response: TestResponse) -> list[dict[str, Any]]:
    """Every ``Set-Cookie`` of the response: name, value and lower-cased attributes."""
    parsed = []
    for header in response.headers.getlist("Set-Cookie"):
        first, *rest = header.split(";")
        name, _, value = first.strip().partition("=")
        attributes: dict[str, Any] = {}
        for part in rest:
            key, has_value, attribute = part.strip().partition("=")
            attributes[key.lower()] = attribute if has_value else True
        parsed.append({"name": name, "value": value, **attributes})
    return parsed


def only_cookie(response: TestResponse) -> dict[str, Any]:
    found = cookies(response)
    assert len(found) == 1, response.headers.getlist("Set-Cookie")
    return found[0]


# -- one test per honoured setting --------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "url", "expected"),
    [
        pytest.param({"SESSION_COOKIE_NAME": "sid"}, "/write", {"name": "sid"}, id="SESSION_COOKIE_NAME"),
        pytest.param({"SESSION_COOKIE_DOMAIN": "example.com"}, "http://www.example.com/write",
                     {"domain": "example.com"}, id="SESSION_COOKIE_DOMAIN"),
        pytest.param({"SESSION_COOKIE_PATH": "/app", "APPLICATION_ROOT": "/ignored"}, "/write",
                     {"path": "/app"}, id="SESSION_COOKIE_PATH"),
        pytest.param({"APPLICATION_ROOT": "/root"}, "/write", {"path": "/root"},
                     id="APPLICATION_ROOT-as-path-fallback"),
        pytest.param({"SESSION_COOKIE_HTTPONLY": False}, "/write", {"httponly": None},
                     id="SESSION_COOKIE_HTTPONLY"),
        pytest.param({"SESSION_COOKIE_SECURE": True, "DEBUG": True}, "/write", {"secure": True},
                     id="SESSION_COOKIE_SECURE-beats-debug"),
        pytest.param({"SESSION_COOKIE_SAMESITE": "Lax"}, "/write", {"samesite": "Lax"},
                     id="SESSION_COOKIE_SAMESITE"),
        pytest.param({"SESSION_COOKIE_PARTITIONED": True}, "/write", {"partitioned": True},
                     id="SESSION_COOKIE_PARTITIONED"),
    ],
)
def test_flask_cookie_setting_is_honoured(config: dict[str, Any], url: str, expected: dict[str, Any]) -> None:
    app = make_app(config)
    cookie = only_cookie(app.test_client().get(url))
    for attribute, value in expected.items():
        assert cookie.get(attribute) == value, (attribute, cookie)


def test_flask_cookie_defaults_and_kitsession_choices() -> None:
    """Flask's defaults: cookie "session", Path=/, HttpOnly, no Domain, a browser-session cookie;
    where Flask's default is weaker, KitSession's: Secure unless debug, SameSite=Strict."""
    cookie = only_cookie(make_app().test_client().get("/write"))
    assert cookie["name"] == "session" and cookie["path"] == "/" and cookie["httponly"] is True
    assert "domain" not in cookie and "max-age" not in cookie and "expires" not in cookie
    assert cookie["secure"] is True and cookie["samesite"] == "Strict"
    debug_cookie = only_cookie(make_app({"DEBUG": True}).test_client().get("/write"))
    assert "secure" not in debug_cookie


def test_invalid_samesite_raises_value_error_as_flask_does() -> None:
    app = make_app()
    app.config["TESTING"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "invalid"
    with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE"):
        app.test_client().get("/write")


def test_partitioned_is_on_the_removal_cookie_too() -> None:
    app = make_app({"SESSION_COOKIE_PARTITIONED": True})
    client = app.test_client()
    client.get("/write")
    removal = only_cookie(client.get("/clear"))
    assert removal["value"] == "" and removal["max-age"] == "0" and removal["partitioned"] is True


def test_permanent_session_lifetime_is_the_cookie_and_server_lifetime(clock: Any) -> None:
    app = make_app({"PERMANENT_SESSION_LIFETIME": timedelta(minutes=30), "SESSION_REFRESH_EACH_REQUEST": False},
                   clock=clock)
    client = app.test_client()
    client.get("/write")
    cookie = only_cookie(client.get("/permanent/on"))
    assert cookie["max-age"] == "1800"
    clock.advance(1799)
    assert client.get("/read").text == "1"
    clock.advance(1)
    assert client.get("/read").text == "None", "the server-side lifetime ended the session"


def test_permanent_session_lifetime_as_seconds(clock: Any) -> None:
    app = make_app({"PERMANENT_SESSION_LIFETIME": 600, "SESSION_REFRESH_EACH_REQUEST": False}, clock=clock)
    assert only_cookie(app.test_client().get("/permanent/on"))["max-age"] == "600"


def test_refresh_each_request_resends_a_permanent_cookie_and_slides_the_lifetime(clock: Any) -> None:
    app = make_app({"PERMANENT_SESSION_LIFETIME": timedelta(minutes=30)}, clock=clock)
    client = app.test_client()
    client.get("/write")
    client.get("/permanent/on")
    for _ in range(6):  # two hours of activity, a request every 20 minutes
        clock.advance(20 * 60)
        response = client.get("/read")
        assert response.text == "1"
        assert only_cookie(response)["max-age"] == "1800", "re-sent on every response, as Flask does"
    assert only_cookie(client.get("/nothing"))["max-age"] == "1800", "even when the view never read it"
    clock.advance(30 * 60)
    assert client.get("/read").text == "None", "30 idle minutes end it"


def test_refresh_leaves_a_non_permanent_session_alone(clock: Any) -> None:
    app = make_app(clock=clock)
    client = app.test_client()
    client.get("/write")
    assert client.get("/read").headers.getlist("Set-Cookie") == []
    response = client.get("/nothing")
    assert response.headers.getlist("Set-Cookie") == [] and "Vary" not in response.headers


def test_without_refresh_a_read_sends_no_cookie(clock: Any) -> None:
    app = make_app({"SESSION_REFRESH_EACH_REQUEST": False}, clock=clock)
    client = app.test_client()
    client.get("/permanent/on")
    assert client.get("/read").headers.getlist("Set-Cookie") == []


def test_refresh_keeps_an_absolute_cap(clock: Any) -> None:
    app = make_app({"PERMANENT_SESSION_LIFETIME": timedelta(days=1)}, clock=clock)
    client = app.test_client()
    client.get("/write")
    client.get("/permanent/on")
    elapsed = 0.0
    while elapsed + 80000 < REFRESH_ABSOLUTE_LIFETIME:
        clock.advance(80000)
        elapsed += 80000
        assert client.get("/read").text == "1"
    clock.advance(80000)
    assert client.get("/read").text == "None"


def test_secret_key_signs_and_a_key_set_after_kitsession_is_used() -> None:
    app = Flask(__name__)
    KitSession(app, store=MemoryStore())  # the app-factory order: config comes later
    app.config["SECRET_KEY"] = "set-later"

    @app.get("/write")
    def write() -> str:
        session["n"] = 1
        return ""

    cookie = only_cookie(app.test_client().get("/write"))
    assert CookieSigner((b"set-later",)).unsign(unquote(cookie["value"])) is not None


def test_secret_key_fallbacks_verify_and_the_cookie_is_resigned() -> None:
    app = make_app({"SECRET_KEY": "old"})
    client = app.test_client()
    client.get("/write")
    app.config.update(SECRET_KEY="new", SECRET_KEY_FALLBACKS=["old"])
    response = client.get("/read")
    assert response.text == "1"
    assert CookieSigner((b"new",)).unsign(unquote(only_cookie(response)["value"])) is not None


def test_secret_key_fallbacks_changed_in_place_are_seen() -> None:
    app = make_app({"SECRET_KEY": "old", "SECRET_KEY_FALLBACKS": []})
    client = app.test_client()
    client.get("/write")
    app.config["SECRET_KEY"] = "new"
    app.config["SECRET_KEY_FALLBACKS"].append("x")
    assert client.get("/read").text == "None"
    client.get("/write")
    app.config["SECRET_KEY"] = "newer"
    app.config["SECRET_KEY_FALLBACKS"].append("new")
    assert client.get("/read").text == "1"


# -- no SECRET_KEY: never silent -----------------------------------------------------------------


def test_missing_secret_key_warns_once_and_the_session_is_unavailable_as_in_flask(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask(__name__)
    app.config["TESTING"] = True
    KitSession(app, store=MemoryStore())

    @app.get("/write")
    def write() -> str:
        session["n"] = 1
        return ""

    @app.get("/read")
    def read() -> str:
        return str(session.get("n"))

    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi"):
        assert client.get("/read").text == "None"
        with pytest.raises(RuntimeError, match="secret key"):
            client.get("/write")
        client.get("/read")
    warnings = [r for r in caplog.records if "SECRET_KEY is not set" in r.getMessage()]
    assert len(warnings) == 1, "warned once per app, not per request"


def test_missing_secret_key_with_signing_turned_off_gives_unsigned_sessions() -> None:
    app = make_app({"SECRET_KEY": None, "KITSESSION_SIGNED": False})
    client = app.test_client()
    cookie = only_cookie(client.get("/write"))
    assert not unquote(cookie["value"]).startswith("s:")
    assert client.get("/read").text == "1"


# -- precedence ------------------------------------------------------------------------------------


def test_arguments_beat_flask_settings_and_kitsession_keys_beat_both() -> None:
    app = make_app({"SESSION_COOKIE_NAME": "flask_name", "SESSION_COOKIE_SAMESITE": "None"},
                   name="argument_name", samesite="Lax")
    cookie = only_cookie(app.test_client().get("/write"))
    assert cookie["name"] == "argument_name" and cookie["samesite"] == "Lax"
    app.config["KITSESSION_NAME"] = "config_name"
    cookie = only_cookie(app.test_client().get("/write"))
    assert cookie["name"] == "config_name"


def test_kitsession_lifetime_keys_replace_flask_lifetime(clock: Any) -> None:
    app = make_app({"PERMANENT_SESSION_LIFETIME": timedelta(minutes=30), "KITSESSION_MAX_AGE": 3600},
                   clock=clock)
    with app.app_context():
        manager = get_manager()
        assert manager.max_age == 3600 and manager.idle_timeout is None and not manager.rolling


def test_permanent_default_from_argument_and_config() -> None:
    assert "max-age" in only_cookie(make_app(permanent=True).test_client().get("/write"))
    assert "max-age" in only_cookie(make_app({"KITSESSION_PERMANENT": True}).test_client().get("/write"))
    assert "max-age" in only_cookie(make_app({"SESSION_PERMANENT": True}).test_client().get("/write"))
    assert "max-age" not in only_cookie(make_app(permanent=False).test_client().get("/write"))
    with pytest.raises(ConfigurationError, match="permanent"):
        make_app({"KITSESSION_PERMANENT": "yes"})


# -- session.permanent ---------------------------------------------------------------------------


def test_changing_permanent_resends_the_cookie_with_or_without_expiry(clock: Any) -> None:
    app = make_app({"SESSION_REFRESH_EACH_REQUEST": False, "PERMANENT_SESSION_LIFETIME": 7200}, clock=clock)
    client = app.test_client()
    first = only_cookie(client.get("/write"))
    assert "max-age" not in first and "expires" not in first
    assert client.get("/read").headers.getlist("Set-Cookie") == []
    made_permanent = only_cookie(client.get("/permanent/on"))
    assert made_permanent["max-age"] == "7200" and "expires" in made_permanent
    assert made_permanent["value"] == first["value"], "same session, same id"
    assert client.get("/permanent/on").headers.getlist("Set-Cookie") == [], "unchanged: nothing re-sent"
    back = only_cookie(client.get("/permanent/off"))
    assert "max-age" not in back and "expires" not in back and back["value"] == first["value"]


def test_non_permanent_session_still_ends_server_side(clock: Any) -> None:
    app = make_app({"SESSION_REFRESH_EACH_REQUEST": False, "PERMANENT_SESSION_LIFETIME": 600}, clock=clock)
    client = app.test_client()
    client.get("/write")
    clock.advance(599)
    assert client.get("/read").text == "1"
    clock.advance(1)
    assert client.get("/read").text == "None"


# -- every setting changed on a running app ----------------------------------------------------------


def test_every_setting_changed_on_a_running_app_takes_effect_on_the_next_request(clock: Any) -> None:
    app = make_app({"SESSION_REFRESH_EACH_REQUEST": False}, clock=clock)
    client = app.test_client()

    def fresh_cookie(url: str = "/write") -> dict[str, Any]:
        client.delete_cookie("session")
        return only_cookie(client.get(url))

    assert fresh_cookie()["name"] == "session"
    app.config["SESSION_COOKIE_NAME"] = "renamed"
    assert only_cookie(client.get("/write"))["name"] == "renamed"
    app.config["SESSION_COOKIE_NAME"] = "session"

    app.config["SESSION_COOKIE_DOMAIN"] = "example.com"
    assert only_cookie(client.get("http://www.example.com/write"))["domain"] == "example.com"
    app.config["SESSION_COOKIE_DOMAIN"] = None
    client = app.test_client()

    app.config["APPLICATION_ROOT"] = "/root"
    assert fresh_cookie()["path"] == "/root"
    app.config["SESSION_COOKIE_PATH"] = "/cookie-path"
    client = app.test_client()
    assert fresh_cookie()["path"] == "/cookie-path"
    app.config.update(APPLICATION_ROOT="/", SESSION_COOKIE_PATH=None)
    client = app.test_client()

    app.config["SESSION_COOKIE_HTTPONLY"] = False
    assert "httponly" not in fresh_cookie()
    app.config["SESSION_COOKIE_HTTPONLY"] = True

    app.config["DEBUG"] = True
    assert "secure" not in fresh_cookie()
    app.config["SESSION_COOKIE_SECURE"] = True
    assert fresh_cookie()["secure"] is True
    app.config.update(DEBUG=False, SESSION_COOKIE_SECURE=False)

    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert fresh_cookie()["samesite"] == "Lax"
    app.config["SESSION_COOKIE_SAMESITE"] = None

    app.config["SESSION_COOKIE_PARTITIONED"] = True
    assert fresh_cookie()["partitioned"] is True
    app.config["SESSION_COOKIE_PARTITIONED"] = False

    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=5)
    assert fresh_cookie("/permanent/on")["max-age"] == "300"

    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    assert only_cookie(client.get("/read"))["max-age"] == "300"
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    assert client.get("/read").headers.getlist("Set-Cookie") == []

    app.config["SECRET_KEY"] = "rotated"
    assert client.get("/read").text == "None", "the old key no longer verifies"
    cookie = fresh_cookie()
    assert CookieSigner((b"rotated",)).unsign(unquote(cookie["value"])) is not None
    app.config.update(SECRET_KEY="rotated-again", SECRET_KEY_FALLBACKS=["rotated"])
    assert client.get("/read").text == "1"


# -- cheap per-request reading ---------------------------------------------------------------------


def test_manager_is_rebuilt_only_when_the_config_changes() -> None:
    app = make_app()
    state = app.extensions["kitsession"]
    client = app.test_client()
    client.get("/write")
    manager = state.manager
    for _ in range(3):
        client.get("/read")
        assert state.manager is manager
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    assert state.manager is not manager and state.manager.samesite == "Lax"
    assert state.manager.store is manager.store, "one store, shared by every configuration"
    app.config["SESSION_COOKIE_SAMESITE"] = None
    assert state.manager is manager, "a configuration seen before is found again, not rebuilt"


def test_config_changing_under_concurrent_requests_never_mixes_two_configurations() -> None:
    """A key added and removed (a rescan of the watched keys) while 4 threads serve requests:
    every cookie carries one configuration's name, never values paired with another scan's keys."""
    import threading

    app = make_app({"SESSION_COOKIE_PATH": "/"})
    errors: list[BaseException] = []
    names: set[str] = set()
    stop = threading.Event()

    def serve() -> None:
        client = app.test_client()
        try:
            while not stop.is_set():
                client.delete_cookie("session")
                client.delete_cookie("flipped")
                names.add(only_cookie(client.get("/write"))["name"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(300):
        app.config["KITSESSION_NAME"] = "flipped"
        app.config["SESSION_COOKIE_PATH"] = None  # present but unset: the size stays, a value changes
        del app.config["KITSESSION_NAME"]
        app.config["SESSION_COOKIE_PATH"] = "/"
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert names <= {"session", "flipped"} and "session" in names
