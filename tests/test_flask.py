"""The Flask adapter: KitSession, flask.session, the decorators and svelte-kit-session's functions.

Everything goes through Flask's test client against a real MemoryStore
(counted by a subclass, never mocked).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask, flash, g, get_flashed_messages, jsonify, make_response, redirect, request, session
from flask.testing import FlaskClient
from markupsafe import Markup
from werkzeug.test import TestResponse

from kitsession_wsgi import ConfigurationError, MemoryStore, session_key
from kitsession_wsgi._device import split_device
from kitsession_wsgi.flask import (
    FlaskSession,
    KitSession,
    create_session,
    current_session,
    get_all_sessions,
    get_manager,
    get_session,
    get_sessions_for_user,
    remove_all_sessions_for_user,
    remove_session,
    remove_session_cookie,
    session_lock,
    set_session,
    set_session_cookie,
    with_delete_session,
    with_new_session,
)
from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS
from kitsession_wsgi.session import Session
from kitsession_wsgi.signing import CookieSigner

from clocks import FakeClock
from client_helpers import hammer_path, log_in
from session_helpers import FlakyStore, live_records, parse_set_cookie
from thread_helpers import Background

SECRET = "flask-test-secret"




# -- the Flask application -----------------------------------------------------------------


def describe() -> dict[str, Any]:
    core = current_session
    return {"data": {k: session[k] for k in session}, "user_id": core.user_id, "handle": core.handle,
            "is_new": core.is_new}


def add_routes(app: Flask) -> None:
    @app.route("/plain")
    def plain() -> Any:
        return "ok"

    @app.route("/read")
    @app.route("/app/read")
    def read() -> Any:
        return jsonify(describe())

    @app.route("/peek")
    def peek() -> Any:
        return jsonify(value=session.get("w"))

    @app.route("/set")
    def set_values() -> Any:
        for key, value in request.args.items():
            session[key] = value
        return jsonify(describe())

    @app.before_request
    def remember_cart() -> None:
        # An app that wants to carry anonymous data over reads it before the login view runs.
        if request.endpoint == "login" and request.args.get("copy") == "cart":
            g.cart = session.get("cart")

    @app.route("/login")
    @app.route("/app/login")
    @with_new_session
    def login(session: Session) -> Any:
        data: dict[str, Any] = {"id": int(request.args.get("user", "5")), "name": "ada"}
        if "cart" in g:
            data["cart"] = g.cart
        session.data = data
        if request.args.get("flash"):
            flash(request.args["flash"])
        if request.args.get("fail") == "raise":
            raise RuntimeError("login exploded")
        status = int(request.args.get("status", "200"))
        if request.args.get("redirect"):
            return redirect("/read")
        return jsonify(logged_in=True), status

    @app.route("/logout")
    @app.route("/app/logout")
    @with_delete_session
    def logout(session: Session) -> Any:
        if request.args.get("flash"):
            flash(request.args["flash"], "info")
        status = int(request.args.get("status", "302"))
        if status == 302:
            return redirect("/messages")
        return jsonify(logged_out=True), status

    @app.route("/messages")
    def messages() -> Any:
        return jsonify(messages=get_flashed_messages(with_categories=True))

    @app.route("/flash")
    def flash_view() -> Any:
        flash(request.args.get("m", "hello"))
        return "flashed"

    @app.route("/counter")
    @session_lock
    def counter() -> Any:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @app.route("/counter-unlocked")
    def counter_unlocked() -> Any:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"])

    @app.route("/boom")
    def boom() -> Any:
        session["lost"] = "yes"
        raise RuntimeError("view exploded")

    @app.route("/fail500")
    def fail500() -> Any:
        session["lost"] = "yes"
        return "failed", 500

    @app.route("/own-headers")
    def own_headers() -> Any:
        if request.args.get("write"):
            session["w"] = request.args["write"]
        else:
            session.get("w")
        response = make_response("ok")
        response.set_cookie("theme", "dark")
        response.headers["Vary"] = request.args.get("vary", "Accept-Encoding")
        if request.args.get("cache"):
            response.headers["Cache-Control"] = request.args["cache"]
        return response

    @app.route("/whoami")
    def whoami() -> Any:
        return jsonify(g_user=g.get("user"), session_user=current_session.user,
                       user_id=current_session.user_id, handle=current_session.handle)


def make_app(store: MemoryStore | None = None, *, config: dict[str, Any] | None = None,
             **options: Any) -> Flask:
    app = Flask(__name__)
    # KitSession's own lifetime rules with permanent sessions, which these tests were written
    # for; Flask's defaults (non-permanent, refresh each request) are tests/test_flask_config.py's.
    app.config.update(SECRET_KEY=SECRET, SESSION_REFRESH_EACH_REQUEST=False,
                      PERMANENT_SESSION_LIFETIME=timedelta(days=14))
    app.config.update(config or {})
    add_routes(app)
    options.setdefault("permanent", True)
    KitSession(app, store=store, **options)
    return app


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def app(store: FlakyStore, clock: FakeClock) -> Flask:
    return make_app(store, clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def session_cookies(response: TestResponse, name: str = "session") -> list[Any]:
    return [c for c in (parse_set_cookie(v) for v in response.headers.getlist("Set-Cookie")) if c.name == name]


def cookie_of(response: TestResponse, name: str = "session") -> Any:
    cookies = session_cookies(response, name)
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def vary_tokens(response: TestResponse) -> list[str]:
    return [t.strip().lower() for v in response.headers.getlist("Vary") for t in v.split(",")]


def read(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/read")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json is not None
    return response.json


# -- anonymous traffic costs nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expect_vary"),
    [pytest.param("/plain", False, id="never-touches-session"),
     pytest.param("/peek", True, id="only-reads-session"),
     pytest.param("/read", True, id="reads-whole-session"),
     pytest.param("/messages", True, id="get-flashed-messages-with-none")],
)
def test_anonymous_request_writes_nothing_and_sets_no_cookie(
    client: FlaskClient, store: FlakyStore, path: str, expect_vary: bool
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert store.calls["create"] == store.calls["set"] == store.calls["touch"] == 0
    assert store.writes() == 0 and store.calls["get"] == 0
    assert ("cookie" in vary_tokens(response)) is expect_vary
    assert "Cache-Control" not in response.headers


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param("sessionid", "abc", id="other-cookie-named-sessionid"),
     pytest.param("theme", "session-dark", id="value-mentions-session"),
     pytest.param("Session", "abc", id="other-case")],
)
def test_similar_foreign_cookie_is_not_cleared(client: FlaskClient, store: FlakyStore, name: str, value: str) -> None:
    client.set_cookie(name, value)
    response = client.get("/peek")
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert store.writes() == 0 and store.calls["get"] == 0


def test_session_transaction_helper_works(client: FlaskClient, store: FlakyStore) -> None:
    with client.session_transaction() as test_session:
        test_session["cart"] = ["from-test"]
    assert read(client)["data"] == {"cart": ["from-test"]}
    with client.session_transaction() as test_session:
        assert test_session["cart"] == ["from-test"]
    assert len(store.get_all()) == 1


# -- login: configured cookie ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path", "expected"),
    [
        pytest.param({}, "/login",
                     {"name": "session", "path": "/", "domain": None, "samesite": "Strict", "max_age": 14 * 86400,
                      "secure": True}, id="defaults"),
        pytest.param({"KITSESSION_NAME": "sid", "KITSESSION_PATH": "/app", "KITSESSION_DOMAIN": "example.com",
                      "KITSESSION_SAMESITE": "Lax", "KITSESSION_MAX_AGE": 3600},
                     "/app/login",
                     {"name": "sid", "path": "/app", "domain": "example.com", "samesite": "Lax", "max_age": 3600,
                      "secure": True}, id="config-name-path-domain-lax-1h"),
        pytest.param({"KITSESSION_NAME": "__Host-sid", "KITSESSION_SAMESITE": "None", "KITSESSION_MAX_AGE": 60},
                     "/login",
                     {"name": "__Host-sid", "path": "/", "domain": None, "samesite": "None", "max_age": 60,
                      "secure": True}, id="config-host-prefix-samesite-none"),
        pytest.param({"DEBUG": True, "KITSESSION_SAMESITE": "lax"}, "/login",
                     {"name": "session", "path": "/", "domain": None, "samesite": "Lax", "max_age": 14 * 86400,
                      "secure": False}, id="debug-app-not-secure"),
    ],
)
def test_login_sets_cookie_with_configured_attributes(
    store: FlakyStore, clock: FakeClock, config: dict[str, Any], path: str, expected: dict[str, Any]
) -> None:
    app = make_app(store, config=config, clock=clock)
    client = app.test_client()
    host = "www.example.com" if expected["domain"] else "localhost"
    response = client.get(path, base_url=f"https://{host}")
    assert response.status_code == 200

    cookie = client.get_cookie(expected["name"], domain=expected["domain"] or host, path=expected["path"])
    assert cookie is not None, response.headers.getlist("Set-Cookie")
    assert cookie.secure is expected["secure"]
    assert cookie.http_only is True
    assert cookie.same_site == expected["samesite"]
    assert cookie.path == expected["path"]
    assert cookie.origin_only is (expected["domain"] is None)
    assert cookie.max_age == expected["max_age"]
    assert cookie.expires is not None and cookie.expires.timestamp() == clock.now + expected["max_age"]
    assert CookieSigner((SECRET.encode(),)).unsign(unquote(cookie.value)) is not None
    assert response.headers["Cache-Control"] == "no-store"
    assert "cookie" in vary_tokens(response)

    follow = client.get(path.replace("login", "read"), base_url=f"https://{host}")
    assert follow.json is not None and follow.json["user_id"] == 5


def test_config_overrides_extension_keyword_defaults(store: FlakyStore, clock: FakeClock) -> None:
    app = make_app(store, config={"KITSESSION_NAME": "from_config"}, name="from_kwargs", samesite="Lax",
                   clock=clock)
    response = log_in(app.test_client())
    cookie = cookie_of(response, "from_config")
    assert cookie.attributes["samesite"] == "Lax", "kwargs stay defaults for what the config does not set"


@pytest.mark.parametrize(
    ("kwargs", "config"),
    [pytest.param({"lock_timeout": 2}, {}, id="kwarg"),
     pytest.param({}, {"KITSESSION_LOCK_TIMEOUT": 2}, id="config")],
)
def test_every_manager_option_is_accepted_by_the_extension(
    kwargs: dict[str, Any], config: dict[str, Any]
) -> None:
    """Regression: lock, lock_timeout and lock_ttl were rejected as kwargs and ignored as config keys."""
    app = make_app(MemoryStore(), config=config, **kwargs)
    with app.app_context():
        assert get_manager().lock_timeout == 2


# -- fixation -----------------------------------------------------------------------------------


def test_pre_login_id_is_dead_after_login_and_data_does_not_leak(
    client: FlaskClient, app: Flask, store: FlakyStore, clock: FakeClock
) -> None:
    old = cookie_of(client.get("/set", query_string={"cart": "apples"}))
    assert read(client)["data"] == {"cart": "apples"}

    new = cookie_of(log_in(client))
    assert new.value != old.value
    after = read(client)
    assert after["data"] == {"id": 5, "name": "ada"}, "anonymous data leaked into the login session"
    assert after["handle"] == session_key(CookieSigner((SECRET.encode(),)).unsign(new.value)[0])  # type: ignore[index]
    assert len(live_records(store)) == 1

    attacker = app.test_client()
    attacker.set_cookie("session", old.raw_value)
    replay = attacker.get("/read")
    assert replay.json is not None and replay.json["is_new"] is True and replay.json["data"] == {}
    assert replay.headers.getlist("Set-Cookie") == []  # marked "replaced": left alone for a minute
    clock.advance(REPLACED_MARKER_SECONDS)
    replay = attacker.get("/read")
    assert replay.json is not None and replay.json["is_new"] is True and replay.json["data"] == {}
    assert cookie_of(replay).is_removal


def test_anonymous_data_is_kept_when_the_app_copies_it(client: FlaskClient) -> None:
    client.get("/set", query_string={"cart": "pears"})
    log_in(client, copy="cart")
    assert read(client)["data"] == {"id": 5, "name": "ada", "cart": "pears"}


def test_login_with_redirect_sets_cookie_and_flash_survives(client: FlaskClient) -> None:
    response = client.get("/login", query_string={"redirect": "1", "flash": "welcome"})
    assert response.status_code == 302
    assert cookie_of(response).value
    assert client.get("/messages").json == {"messages": [["message", "welcome"]]}
    assert read(client)["user_id"] == 5


# -- a failed login changes nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [pytest.param({"fail": "raise"}, id="view-raises"),
     pytest.param({"status": "401"}, id="answers-401"),
     pytest.param({"status": "422"}, id="answers-422"),
     pytest.param({"status": "500"}, id="answers-500"),
     pytest.param({"status": "503"}, id="answers-503")],
)
@pytest.mark.parametrize("before", ["anonymous", "previous-session"])
def test_failed_login_stores_nothing_and_keeps_previous_session(
    client: FlaskClient, store: FlakyStore, params: dict[str, str], before: str
) -> None:
    if before == "previous-session":
        previous = cookie_of(client.get("/set", query_string={"cart": "plums"}))
    records_before = store.get_all()
    store.reset()

    response = client.get("/login", query_string=params)
    assert response.status_code == int(params.get("status", "500"))
    assert session_cookies(response) == []
    assert store.calls["create"] == store.calls["set"] == store.calls["delete"] == 0
    assert store.get_all() == records_before

    after = read(client)
    if before == "previous-session":
        assert after["data"] == {"cart": "plums"}
        assert client.get_cookie("session").value == previous.raw_value  # type: ignore[union-attr]
    else:
        assert after["is_new"] is True


# -- logout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cookie", ["live", "stale", "unknown", "garbage", "none"])
def test_logout_removes_record_and_clears_cookie(
    client: FlaskClient, app: Flask, store: FlakyStore, clock: FakeClock, cookie: str
) -> None:
    if cookie in ("live", "stale"):
        log_in(client)
        if cookie == "stale":
            clock.advance(14 * 86400 + 1)
    elif cookie == "unknown":
        with app.app_context():
            client.set_cookie("session", parse_set_cookie(set_session_cookie("never-stored")).raw_value)
    elif cookie == "garbage":
        client.set_cookie("session", "%%%not-a-cookie")

    response = client.get("/logout")
    assert response.status_code == 302
    removal = cookie_of(response)
    assert removal.is_removal
    assert removal.expires < clock.now
    assert removal.attributes["path"] == "/"
    assert response.headers["Cache-Control"] == "no-store"
    assert live_records(store) == []
    assert client.get_cookie("session") is None
    assert read(client)["is_new"] is True


def test_logout_removal_cookie_repeats_configured_path_and_domain(store: FlakyStore) -> None:
    app = make_app(store, config={"KITSESSION_NAME": "sid", "KITSESSION_PATH": "/app",
                                  "KITSESSION_DOMAIN": "example.com"})
    client = app.test_client()
    client.get("/app/login", base_url="https://www.example.com")
    response = client.get("/app/logout", base_url="https://www.example.com")
    removal = cookie_of(response, "sid")
    assert removal.is_removal
    assert removal.attributes["path"] == "/app" and removal.attributes["domain"] == "example.com"
    assert live_records(store) == []


def test_flash_in_logout_view_shows_on_next_page(client: FlaskClient, store: FlakyStore) -> None:
    login_cookie = cookie_of(log_in(client))
    (user_record,) = store.get_all()
    response = client.get("/logout", query_string={"flash": "You have been logged out"})
    assert response.status_code == 302
    assert store.get(user_record.key) is None, "the logged-in record is removed"
    assert all(r.user_id is None for r in store.get_all()), "only an anonymous flash carrier may remain"
    carrier = cookie_of(response)
    assert not carrier.is_removal, "the flash travels in a fresh anonymous session"
    assert carrier.value != login_cookie.value

    assert client.get("/messages").json == {"messages": [["info", "You have been logged out"]]}
    assert client.get("/messages").json == {"messages": []}, "a flash shows once"
    assert read(client)["user_id"] is None


def test_logout_that_answers_4xx_keeps_the_session(client: FlaskClient, store: FlakyStore) -> None:
    log_in(client)
    response = client.get("/logout", query_string={"status": "403"})
    assert response.status_code == 403
    assert session_cookies(response) == []
    assert read(client)["user_id"] == 5


# -- SECRET_KEY rotation ------------------------------------------------------------------------------


def test_cookie_signed_with_old_secret_key_is_accepted_and_resigned(store: FlakyStore, clock: FakeClock) -> None:
    old_app = make_app(store, config={"SECRET_KEY": "old-secret"}, clock=clock)
    old_cookie = cookie_of(log_in(old_app.test_client()))

    rotated = make_app(store, config={"SECRET_KEY": "new-secret", "SECRET_KEY_FALLBACKS": ["old-secret"]},
                       clock=clock)
    client = rotated.test_client()
    client.set_cookie("session", old_cookie.raw_value)
    response = client.get("/read")
    assert response.json is not None and response.json["user_id"] == 5

    resigned = cookie_of(response)
    new_only, old_only = CookieSigner((b"new-secret",)), CookieSigner((b"old-secret",))
    assert new_only.unsign(resigned.value) is not None
    assert old_only.unsign(resigned.value) is None
    assert new_only.unsign(resigned.value)[0] == old_only.unsign(old_cookie.value)[0]  # type: ignore[index]

    again = client.get("/read")
    assert again.json is not None and again.json["user_id"] == 5
    assert session_cookies(again) == []

    unrotated = make_app(store, config={"SECRET_KEY": "new-secret"}, clock=clock).test_client()
    unrotated.set_cookie("session", old_cookie.raw_value)
    assert unrotated.get("/read").json["is_new"] is True  # type: ignore[index]


# -- store outage --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "path", "logged_in"),
    [
        pytest.param({"get"}, "/read", True, id="loading-read"),
        pytest.param({"get"}, "/login", True, id="loading-in-login"),
        pytest.param({"get"}, "/logout", True, id="loading-in-logout"),
        pytest.param({"create"}, "/login", False, id="saving-new-login"),
        pytest.param({"create"}, "/login", True, id="saving-re-login-keeps-previous"),
        pytest.param({"create"}, "/set?k=v", False, id="saving-new-anonymous"),
        pytest.param({"set"}, "/set?k=v", True, id="saving-existing"),
        pytest.param({"delete"}, "/logout", True, id="deleting-in-logout"),
    ],
)
@pytest.mark.parametrize(
    ("kwargs", "config", "expected"),
    [pytest.param({}, {}, "5", id="retry-default"),
     pytest.param({"retry_after": 30}, {}, "30", id="retry-kwarg"),
     pytest.param({"retry_after": 30}, {"KITSESSION_RETRY_AFTER": 120}, "120", id="retry-config")],
)
def test_store_outage_answers_503_with_retry_after(
    store: FlakyStore, failing: set[str], path: str, logged_in: bool,
    kwargs: dict[str, Any], config: dict[str, Any], expected: str
) -> None:
    client = make_app(store, config=config, **kwargs).test_client()
    if logged_in:
        log_in(client)
    records_before = store.get_all()
    store.failing = failing
    response = client.get(path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == expected
    assert session_cookies(response) == [], "an outage is not a logout"
    store.failing = set()
    assert store.get_all() == records_before
    if logged_in:
        assert read(client)["user_id"] == 5


def test_store_outage_in_user_loader_request_answers_503(store: FlakyStore) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    add_routes(app)
    extension = KitSession(app, store=store)
    extension.user_loader(lambda user_id: {"id": user_id})
    client = app.test_client()
    log_in(client)
    store.failing = {"get"}
    response = client.get("/plain")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


# -- 5xx and exceptions persist nothing -------------------------------------------------------------------


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
@pytest.mark.parametrize("path", ["/boom", "/fail500"])
def test_5xx_or_exception_persists_nothing(
    client: FlaskClient, store: FlakyStore, path: str, logged_in: bool
) -> None:
    if logged_in:
        log_in(client)
    records_before = store.get_all()
    store.reset()
    response = client.get(path)
    assert response.status_code == 500
    assert session_cookies(response) == []
    assert store.calls["create"] == store.calls["set"] == store.calls["touch"] == 0
    assert store.get_all() == records_before
    assert "lost" not in read(client)["data"]


def test_exception_propagates_in_testing_mode_and_persists_nothing(store: FlakyStore) -> None:
    app = make_app(store, config={"TESTING": True})
    client = app.test_client()
    with pytest.raises(RuntimeError, match="view exploded"):
        client.get("/boom")
    assert store.get_all() == []


# -- headers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected_vary"),
    [
        pytest.param({}, ["accept-encoding", "cookie"], id="merged-into-existing-vary"),
        pytest.param({"vary": "Cookie"}, ["cookie"], id="already-cookie-not-duplicated"),
        pytest.param({"vary": "Accept, cookie"}, ["accept", "cookie"], id="lowercase-cookie-not-duplicated"),
        pytest.param({"write": "1"}, ["accept-encoding", "cookie"], id="merged-when-setting-cookie"),
    ],
)
def test_vary_cookie_is_merged_not_duplicated(
    client: FlaskClient, params: dict[str, str], expected_vary: list[str]
) -> None:
    response = client.get("/own-headers", query_string=params)
    assert response.status_code == 200
    assert sorted(vary_tokens(response)) == sorted(expected_vary)
    assert len(response.headers.getlist("Vary")) == 1


def test_every_vary_header_of_the_app_is_kept(app: Flask, client: FlaskClient) -> None:
    """Regression: a second Vary header of the app was dropped when Cookie was merged in."""
    @app.route("/two-vary")
    def two_vary() -> Any:
        session.get("w")
        response = make_response("ok")
        response.headers.add("Vary", "Accept-Encoding")
        response.headers.add("Vary", "Accept-Language")
        return response

    tokens = vary_tokens(client.get("/two-vary"))
    assert sorted(tokens) == ["accept-encoding", "accept-language", "cookie"]


def test_vary_star_is_left_alone(client: FlaskClient) -> None:
    """Regression: `Vary: *` became `Vary: *, Cookie` (the WSGI adapter already left it alone)."""
    response = client.get("/own-headers", query_string={"vary": "*"})
    assert response.headers.getlist("Vary") == ["*"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"write": "1"}, ["no-store"], id="cookie-set-no-store-added"),
        pytest.param({"write": "1", "cache": "private, max-age=60"}, ["private, max-age=60"],
                     id="app-cache-control-kept"),
        pytest.param({}, [], id="no-cookie-no-cache-control"),
    ],
)
def test_cache_control_no_store_only_when_cookie_set_and_app_did_not(
    client: FlaskClient, params: dict[str, str], expected: list[str]
) -> None:
    response = client.get("/own-headers", query_string=params)
    assert response.headers.getlist("Cache-Control") == expected


@pytest.mark.parametrize("write", [True, False], ids=["session-cookie-too", "read-only"])
def test_apps_own_set_cookie_headers_are_kept(client: FlaskClient, write: bool) -> None:
    response = client.get("/own-headers", query_string={"write": "x"} if write else {})
    names = sorted(parse_set_cookie(v).name for v in response.headers.getlist("Set-Cookie"))
    assert names == (["session", "theme"] if write else ["theme"])


# -- several apps, one extension --------------------------------------------------------------------------------


def test_two_apps_with_own_config_do_not_see_each_others_sessions() -> None:
    first_store, second_store = MemoryStore(), MemoryStore()
    first = make_app(first_store)
    second = make_app(second_store, config={"KITSESSION_NAME": "other", "SECRET_KEY": "second-secret"})
    first_client, second_client = first.test_client(), second.test_client()

    first_cookie = cookie_of(log_in(first_client, user="1"))
    second_cookie = cookie_of(log_in(second_client, user="2"), "other")
    assert len(first_store) == 1 and len(second_store) == 1

    # present each app's cookie, under each name, to the other app
    for name in ("session", "other"):
        intruder = second.test_client()
        intruder.set_cookie(name, first_cookie.raw_value)
        assert intruder.get("/read").json["user_id"] is None  # type: ignore[index]
        intruder = first.test_client()
        intruder.set_cookie(name, second_cookie.raw_value)
        assert intruder.get("/read").json["user_id"] is None  # type: ignore[index]
    assert read(first_client)["user_id"] == 1
    assert read(second_client)["user_id"] == 2


def test_one_extension_on_two_apps_keeps_state_per_app_and_holds_no_app() -> None:
    extension = KitSession(samesite="Lax")
    apps = []
    for name in ("a", "b"):
        app = Flask(name)
        app.config.update(SECRET_KEY=f"secret-{name}", KITSESSION_NAME=f"sid_{name}")
        add_routes(app)
        extension.init_app(app)
        apps.append(app)
    states = [app.extensions["kitsession"] for app in apps]
    assert states[0] is not states[1]
    assert states[0].manager is not states[1].manager
    assert states[0].manager.store is not states[1].manager.store
    assert [s.manager.name for s in states] == ["sid_a", "sid_b"]
    assert all(s.manager.samesite == "Lax" for s in states)
    assert not any(isinstance(value, Flask) for value in vars(extension).values())
    assert extension.store is None

    for index, app in enumerate(apps):
        client = app.test_client()
        cookie_of(log_in(client, user=str(index + 1)), f"sid_{'ab'[index]}")
        assert read(client)["user_id"] == index + 1
        with app.app_context():
            assert [s.user_id for s in get_all_sessions()] == [index + 1]


# -- flask.session behaviour --------------------------------------------------------------------------------------


def test_session_is_a_flask_session(app: Flask) -> None:
    with app.test_request_context("/"):
        assert isinstance(session._get_current_object(), FlaskSession)  # type: ignore[attr-defined]
        assert session.permanent is True


def test_dict_api_round_trips(app: Flask, client: FlaskClient) -> None:
    results: dict[str, Any] = {}

    @app.route("/dict-ops")
    def dict_ops() -> Any:
        session["a"] = 1
        session["b"] = 2
        session["c"] = 3
        del session["a"]
        results["pop"] = session.pop("b")
        results["pop_default"] = session.pop("missing", "dflt")
        results["setdefault_existing"] = session.setdefault("c", 99)
        results["setdefault_new"] = session.setdefault("d", 4)
        results["in"] = ("c" in session, "a" in session)
        results["len"] = len(session)
        results["iter"] = sorted(session)
        results["get"] = (session.get("c"), session.get("zz", "fallback"))
        return "ok"

    @app.route("/clear")
    def clear() -> Any:
        session.clear()
        return "ok"

    assert client.get("/dict-ops").status_code == 200
    assert results == {"pop": 2, "pop_default": "dflt", "setdefault_existing": 3, "setdefault_new": 4,
                       "in": (True, False), "len": 2, "iter": ["c", "d"], "get": (3, "fallback")}
    assert read(client)["data"] == {"c": 3, "d": 4}

    client.get("/clear")
    assert read(client)["data"] == {}


def test_missing_key_raises_key_error(app: Flask, client: FlaskClient) -> None:
    @app.route("/missing")
    def missing() -> Any:
        with pytest.raises(KeyError):
            session["nope"]
        with pytest.raises(KeyError):
            del session["nope"]
        with pytest.raises(KeyError):
            session.pop("nope")
        return "ok"

    assert client.get("/missing").data == b"ok"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param(lambda: session["cart"].append("kiwi"), {"cart": ["apple", "kiwi"]}, id="list-append-in-place"),
        pytest.param(lambda: session["prefs"].update(theme="dark"), {"prefs": {"lang": "en", "theme": "dark"}},
                     id="dict-update-in-place"),
        pytest.param(lambda: session.setdefault("l", []).append(1), {"l": [1]}, id="setdefault-new-list-append"),
        pytest.param(lambda: session.get("cart", []).append("fig"), {"cart": ["apple", "fig"]}, id="get-then-append"),
        pytest.param(lambda: session["deep"]["x"].append(2), {"deep": {"x": [1, 2]}}, id="two-levels-deep"),
        pytest.param(lambda: [v.append("z") for k, v in session.items() if k == "cart"],
                     {"cart": ["apple", "z"]}, id="items-view-mutation"),
    ],
)
def test_nested_in_place_change_is_saved(
    app: Flask, client: FlaskClient, mutation: Callable[[], Any], expected: dict[str, Any]
) -> None:
    @app.route("/seed")
    def seed() -> Any:
        session.update({"cart": ["apple"], "prefs": {"lang": "en"}, "deep": {"x": [1]}})
        return "ok"

    @app.route("/mutate")
    def mutate() -> Any:
        mutation()
        return "ok"

    client.get("/seed")
    assert client.get("/mutate").status_code == 200
    data = read(client)["data"]
    for key, value in expected.items():
        assert data[key] == value


def test_flask_tagged_types_round_trip(app: Flask, client: FlaskClient, store: FlakyStore) -> None:
    values = {
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "bytes": b"\x00\xffraw",
        "markup": Markup("<b>bold</b>"),
        "tuple": (1, "two", 3.0),
        "nested": {"t": (1, 2), "d": [uuid.UUID(int=7)]},
    }
    seen: dict[str, Any] = {}

    @app.route("/types-write")
    def types_write() -> Any:
        for key, value in values.items():
            session[key] = value
        return "ok"

    @app.route("/types-read")
    def types_read() -> Any:
        seen.update({key: session[key] for key in values})
        return "ok"

    client.get("/types-write")
    (record,) = store.get_all()
    assert "uuid" in record.data and "pickle" not in record.data
    json.loads(record.data)  # stored as JSON text
    client.get("/types-read")
    assert seen == values
    assert type(seen["markup"]) is Markup and type(seen["tuple"]) is tuple
    assert type(seen["nested"]["t"]) is tuple and type(seen["bytes"]) is bytes


def test_expired_session_is_not_served_and_its_cookie_is_cleared(
    client: FlaskClient, store: FlakyStore, clock: FakeClock
) -> None:
    log_in(client)
    clock.advance(14 * 86400 - 1)
    assert read(client)["user_id"] == 5
    clock.advance(1)
    response = client.get("/read")
    assert response.json is not None and response.json["is_new"] is True
    assert cookie_of(response).is_removal
    assert store.get_all() == []


def test_idle_timeout_and_rolling_from_config(store: FlakyStore, clock: FakeClock) -> None:
    app = make_app(store, config={"KITSESSION_IDLE_TIMEOUT": 600, "KITSESSION_ROLLING": True}, clock=clock)
    client = app.test_client()
    first = cookie_of(log_in(client))
    assert first.max_age == 600
    clock.advance(300)
    rolled = cookie_of(client.get("/read"))
    assert rolled.max_age == 600 and rolled.expires == clock.now + 600
    clock.advance(599)
    assert read(client)["user_id"] == 5
    clock.advance(601)
    response = client.get("/read")
    assert response.json is not None and response.json["is_new"] is True
    assert store.get_all() == []


def test_unchanged_session_is_not_rewritten(client: FlaskClient, store: FlakyStore) -> None:
    log_in(client)
    client.get("/set", query_string={"cart": "x"})
    store.reset()
    for path in ("/read", "/peek", "/messages", "/plain"):
        response = client.get(path)
        assert session_cookies(response) == []
    assert store.writes() == 0


def test_flash_and_get_flashed_messages(client: FlaskClient) -> None:
    client.get("/flash", query_string={"m": "one"})
    client.get("/flash", query_string={"m": "two"})
    assert client.get("/messages").json == {"messages": [["message", "one"], ["message", "two"]]}
    assert client.get("/messages").json == {"messages": []}


def test_current_session_user_id_and_handle(client: FlaskClient, store: FlakyStore) -> None:
    anonymous = client.get("/whoami").json
    assert anonymous == {"g_user": None, "session_user": None, "user_id": None, "handle": None}
    log_in(client, user="77")
    who = client.get("/whoami").json
    (record,) = store.get_all()
    assert who is not None
    assert who["user_id"] == 77 and who["handle"] == record.key


def test_session_clear_makes_the_session_anonymous(store: FlakyStore) -> None:
    """Regression: session.clear() (Flask's logout idiom) kept the user_id, so user_loader still loaded the user."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    add_routes(app)
    extension = KitSession(app, store=store)
    extension.user_loader(lambda user_id: {"id": user_id})

    @app.route("/clear")
    def clear() -> Any:
        session.clear()
        return "ok"

    client = app.test_client()
    log_in(client)
    assert client.get("/whoami").json["g_user"] == {"id": 5}  # type: ignore[index]
    client.get("/clear")
    who = client.get("/whoami").json
    assert who is not None
    assert who["user_id"] is None and who["g_user"] is None
    assert all(r.user_id is None for r in store.get_all()), "no stored record still names the user"
    with app.app_context():
        assert get_sessions_for_user(5) == []


def test_user_loader_puts_user_on_g_and_current_session(store: FlakyStore) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    add_routes(app)
    extension = KitSession(app, store=store)
    loaded: list[Any] = []

    @extension.user_loader
    def load_user(user_id: Any) -> dict[str, Any]:
        loaded.append(user_id)
        return {"id": user_id, "name": f"user{user_id}"}

    client = app.test_client()
    assert client.get("/whoami").json["g_user"] is None  # type: ignore[index]
    assert loaded == [], "no user: the loader is not called"
    log_in(client, user="9")
    who = client.get("/whoami").json
    assert who is not None
    assert who["g_user"] == {"id": 9, "name": "user9"}
    assert who["session_user"] == {"id": 9, "name": "user9"}
    assert loaded[-1] == 9


# -- svelte-kit-session's functions inside an app context -------------------------------------------------------------------------


def test_module_level_functions_in_app_context(app: Flask, client: FlaskClient, clock: FakeClock) -> None:
    with app.app_context():
        first = create_session(user_id=7, data={"theme": "dark"})
        second = create_session(user_id=7)
        other = create_session(data={"id": 8})
        assert first.id and first.handle == session_key(first.id)
        assert other.user_id == 8

        loaded = get_session(first.id)
        assert loaded is not None and loaded.data == {"theme": "dark"} and loaded.user_id == 7
        assert get_session("no-such-id") is None

        set_session(loaded, {"theme": "light", "when": datetime(2024, 5, 6, tzinfo=timezone.utc)})
        reloaded = get_session(first.id)
        assert reloaded is not None and reloaded.data["theme"] == "light"
        assert reloaded.data["when"] == datetime(2024, 5, 6, tzinfo=timezone.utc)

        assert {s.handle for s in get_all_sessions()} == {first.handle, second.handle, other.handle}
        assert all(s.id is None for s in get_all_sessions()), "listed sessions carry no secret id"
        assert {s.handle for s in get_sessions_for_user(7)} == {first.handle, second.handle}

        cookie = parse_set_cookie(set_session_cookie(first))
        assert cookie.name == "session" and cookie.max_age == 14 * 86400
        assert CookieSigner((SECRET.encode(),)).unsign(cookie.value)[0] == first.id  # type: ignore[index]
        removal = parse_set_cookie(remove_session_cookie())
        assert removal.is_removal and removal.attributes["path"] == "/"

    # the cookie made in the app context opens the session over HTTP
    client.set_cookie("session", cookie.raw_value)
    assert read(client)["data"]["theme"] == "light"

    with app.app_context():
        assert remove_all_sessions_for_user(7, first) == 1
        assert [s.handle for s in get_sessions_for_user(7)] == [first.handle]
        assert remove_session(first) is True
        assert remove_session(first) is False
        assert get_session(first.id) is None
        assert [s.handle for s in get_all_sessions()] == [other.handle]
    assert read(client)["is_new"] is True


def test_module_level_functions_need_an_initialised_app() -> None:
    bare = Flask(__name__)
    with bare.app_context():
        with pytest.raises(RuntimeError, match="KitSession"):
            get_all_sessions()


# -- session_lock under 8 threads ---------------------------------------------------------------------------------------


THREADS, REQUESTS = 8, 50


def browsers_sharing(app: Flask, cookie_value: str) -> list[FlaskClient]:
    """``THREADS`` clients that all hold the session cookie ``cookie_value``."""
    clients = [app.test_client() for _ in range(THREADS)]
    for client in clients:
        client.set_cookie("session", cookie_value)
    return clients


def test_session_lock_loses_no_update_under_8_threads(app: Flask, store: FlakyStore) -> None:
    cookie = cookie_of(log_in(app.test_client()))
    statuses, errors = hammer_path(browsers_sharing(app, cookie.raw_value), "/counter", per_thread=REQUESTS)
    assert errors == []
    assert statuses == [200] * (THREADS * REQUESTS)
    (record,) = store.get_all()
    assert json.loads(record.data)["n"] == THREADS * REQUESTS
    assert store._locks == {}, "every lock was released"


def test_without_lock_updates_are_lost_report_only(
    app: Flask, store: FlakyStore, record_property: Callable[[str, object], None]
) -> None:
    cookie = cookie_of(log_in(app.test_client()))
    statuses, errors = hammer_path(browsers_sharing(app, cookie.raw_value), "/counter-unlocked", per_thread=REQUESTS)
    assert errors == []
    assert statuses == [200] * (THREADS * REQUESTS)
    (record,) = store.get_all()
    final = json.loads(record.data)["n"]
    assert 1 <= final <= THREADS * REQUESTS
    lost = THREADS * REQUESTS - final
    record_property("lost_updates_without_lock", lost)
    print(f"\nFlask without session_lock: {lost} of {THREADS * REQUESTS} increments lost")


def test_session_lock_releases_the_lock_when_the_view_fails(app: Flask, client: FlaskClient, store: FlakyStore) -> None:
    @app.route("/locked-boom")
    @session_lock
    def locked_boom() -> Any:
        session["n"] = 1000
        raise RuntimeError("locked view exploded")

    log_in(client)
    assert client.get("/locked-boom").status_code == 500
    assert store._locks == {}
    assert client.get("/counter").json == {"n": 1}


def test_session_lock_held_elsewhere_answers_409(store: FlakyStore) -> None:
    client = make_app(store, config={"KITSESSION_LOCK_TIMEOUT": 0.01}).test_client()
    log_in(client)
    client.get("/counter")
    (record,) = store.get_all()
    assert store.acquire_lock(record.key, "another-request", 60)
    response = client.get("/counter")
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"
    assert session_cookies(response) == []
    store.release_lock(record.key, "another-request")
    assert client.get("/counter").json == {"n": 2}


def test_session_lock_on_a_new_session_does_not_lock(client: FlaskClient, store: FlakyStore) -> None:
    assert client.get("/counter").json == {"n": 1}
    assert client.get("/counter").json == {"n": 2}
    assert store._locks == {}


# -- two overlapping requests of one session --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slow_change", "fast_path", "expected"),
    [
        pytest.param("set-a", "/set?b=fast", {"a": "slow", "b": "fast", "old": "x", "cart": ["apple"]},
                     id="different-keys-both-kept"),
        pytest.param("append-cart", "/set?b=fast", {"b": "fast", "old": "x", "cart": ["apple", "kiwi"]},
                     id="nested-append-and-other-key-both-kept"),
        pytest.param("delete-old", "/set?b=fast", {"b": "fast", "cart": ["apple"]},
                     id="deleted-key-stays-deleted"),
        pytest.param("set-a", "/logout?status=200", None, id="logout-is-not-undone-by-slower-request"),
    ],
)
def test_overlapping_requests_keep_both_changes(
    app: Flask, store: FlakyStore, slow_change: str, fast_path: str, expected: dict[str, Any] | None
) -> None:
    loaded, proceed = threading.Event(), threading.Event()

    @app.route("/slow")
    def slow() -> Any:
        session.get("old")  # loads the session before the fast request saves
        loaded.set()
        assert proceed.wait(timeout=30)
        if slow_change == "set-a":
            session["a"] = "slow"
        elif slow_change == "append-cart":
            session["cart"].append("kiwi")
        else:
            del session["old"]
        return "ok"

    @app.route("/seed-cart")
    def seed_cart() -> Any:
        session["cart"] = ["apple"]
        session["old"] = "x"
        return "ok"

    setup = app.test_client()
    cookie = cookie_of(log_in(setup)).raw_value
    assert setup.get("/seed-cart").status_code == 200

    slow_client, fast_client = app.test_client(), app.test_client()
    slow_client.set_cookie("session", cookie)
    fast_client.set_cookie("session", cookie)
    slow = Background(lambda: slow_client.get("/slow"))
    assert loaded.wait(timeout=30)
    fast = fast_client.get(fast_path)
    assert fast.status_code == 200
    proceed.set()
    slow_response = slow.result()
    assert slow_response.status_code == 200

    if expected is None:
        assert live_records(store) == [], "a slower request must not bring a removed session back"
        # and it sends no cookie: the logout already cleared it, and a late clearing
        # cookie would also wipe one a concurrent login had just set
        assert slow_response.headers.getlist("Set-Cookie") == []
    else:
        (record,) = store.get_all()
        data = json.loads(split_device(record.data)[1])  # the browser's device rides beside the data
        data.pop("id"), data.pop("name")
        assert data == expected


# -- data the store must not take ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [pytest.param("/set?big=" + "x" * 400, id="over-max-data-bytes"),
     pytest.param("/unserialisable", id="not-json-serialisable")],
)
def test_data_that_cannot_be_stored_answers_500_and_keeps_the_stored_session(
    store: FlakyStore, path: str
) -> None:
    app = make_app(store, config={"KITSESSION_MAX_DATA_BYTES": 300})

    @app.route("/unserialisable")
    def unserialisable() -> Any:
        session["thing"] = object()
        return "ok"

    client = app.test_client()
    log_in(client)
    (before,) = store.get_all()
    response = client.get(path)
    assert response.status_code == 500
    assert session_cookies(response) == []
    assert store.get_all() == [before]
    assert read(client)["data"] == {"id": 5, "name": "ada"}


def test_outage_is_logged_once_per_outage(
    client: FlaskClient, store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    log_in(client)
    caplog.set_level("WARNING", logger="kitsession_wsgi")

    def outage_errors() -> int:
        return sum(1 for r in caplog.records if r.levelname == "ERROR" and "unavailable" in r.getMessage())

    store.failing = {"get"}
    assert [client.get("/read").status_code for _ in range(3)] == [503, 503, 503]
    assert outage_errors() == 1
    store.failing = set()
    client.get("/set", query_string={"k": "v"})  # a successful save ends the outage
    store.failing = {"get"}
    assert client.get("/read").status_code == 503
    assert outage_errors() == 2


def test_sign_out_other_devices_from_a_request(app: Flask, store: FlakyStore) -> None:
    @app.route("/sign-out-others")
    def sign_out_others() -> Any:
        removed = remove_all_sessions_for_user(current_session.user_id, current_session)  # type: ignore[arg-type]
        return jsonify(removed=removed)

    this_device, other_device, third_device = app.test_client(), app.test_client(), app.test_client()
    for device in (this_device, other_device, third_device):
        log_in(device)
    assert len(live_records(store)) == 3
    assert this_device.get("/sign-out-others").json == {"removed": 2}
    assert read(this_device)["user_id"] == 5
    assert read(other_device)["user_id"] is None
    assert read(third_device)["user_id"] is None
    assert len(live_records(store)) == 1


@pytest.mark.parametrize("bad", [-1, "soon", None], ids=repr)
def test_retry_after_config_is_validated_and_named(bad: object) -> None:
    """Regression: KITSESSION_RETRY_AFTER went through int() unchecked."""
    with pytest.raises(ConfigurationError) as info:
        make_app(MemoryStore(), config={"KITSESSION_RETRY_AFTER": bad})
    assert info.value.option == "retry_after"


@pytest.mark.parametrize("bad", [-1, "soon", None], ids=repr)
def test_retry_after_keyword_is_validated_and_named(bad: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_app(MemoryStore(), retry_after=bad)
    assert info.value.option == "retry_after"


def test_duplicate_cookie_name_uses_the_value_that_verifies(app: Flask, client: FlaskClient) -> None:
    live = cookie_of(log_in(client)).request_header
    fresh = app.test_client(use_cookies=False)
    response = fresh.get("/read", headers={"Cookie": f"session=stale-from-old-path; {live}"})
    assert response.json is not None and response.json["user_id"] == 5
    assert session_cookies(response) == []


@pytest.mark.parametrize("failing", [{"get"}, {"create"}], ids=["loading", "saving"])
def test_store_outage_is_503_in_testing_mode_too(store: FlakyStore, failing: set[str]) -> None:
    client = make_app(store, config={"TESTING": True}).test_client()
    if failing == {"get"}:
        log_in(client)
    store.failing = failing
    response = client.get("/read" if failing == {"get"} else "/login")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
