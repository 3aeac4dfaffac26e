"""The WSGI adapter: SessionMiddleware and its decorators, through werkzeug's test client.

The application under test is a bare WSGI function (no framework), so these
tests are also the proof that the library works without Flask.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from werkzeug.test import Client, TestResponse

from kitsession_wsgi import ConfigurationError, SessionDataError, SessionManager
from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS
from kitsession_wsgi.session import Session
from kitsession_wsgi.signing import CookieSigner
from kitsession_wsgi.wsgi import SessionMiddleware, session_lock, with_delete_session, with_new_session

from clocks import FakeClock
import client_helpers
from client_helpers import hammer_path
from session_helpers import FlakyStore, live_records, parse_set_cookie
from thread_helpers import Background

KEY = "wsgi-test-key"
BASE = "https://localhost"

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


# -- the bare WSGI application ----------------------------------------------------------


def respond(start_response: StartResponse, body: Any, status: str = "200 OK",
            headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload))), *headers])
    return [payload]


def query(environ: Environ) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def describe(session: Session) -> dict[str, Any]:
    return {"data": session.data, "user_id": session.user_id, "is_new": session.is_new,
            "handle": session.handle}


def plain(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return respond(start_response, {"ok": True})


def read(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return respond(start_response, describe(environ["kitsession"].session))


def set_values(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Every query parameter becomes a session key (changed in place)."""
    session = environ["kitsession"].session
    for key, value in query(environ).items():
        session.data[key] = value
    return respond(start_response, describe(session))


@with_new_session
def login_view(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    params = query(environ)
    data: dict[str, Any] = {"id": int(params.get("user", "5")), "name": "ada"}
    if "carried_cart" in environ:
        data["cart"] = environ["carried_cart"]
    session.data = data
    if params.get("fail") == "raise":
        raise RuntimeError("login exploded")
    status = params.get("status", "200 OK")
    return respond(start_response, {"logged_in": True}, status=status)


def login(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Login; ``?copy=cart`` carries the anonymous cart over (read before the new session exists)."""
    if query(environ).get("copy") == "cart":
        environ["carried_cart"] = environ["kitsession"].session.data.get("cart")
    return login_view(environ, start_response)


@with_delete_session
def logout(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    status = query(environ).get("status", "200 OK")
    return respond(start_response, {"logged_out": True}, status=status)


def counter_unlocked(environ: Environ, start_response: StartResponse) -> list[bytes]:
    session = environ["kitsession"].session
    session.data["n"] = session.data.get("n", 0) + 1
    return respond(start_response, {"n": session.data["n"]})


counter = session_lock(counter_unlocked)


def boom(environ: Environ, start_response: StartResponse) -> list[bytes]:
    environ["kitsession"].session.data["lost"] = "yes"
    raise RuntimeError("view exploded")


def fail500(environ: Environ, start_response: StartResponse) -> list[bytes]:
    environ["kitsession"].session.data["lost"] = "yes"
    return respond(start_response, {"error": True}, status="500 Internal Server Error")


def fail_with_exc_info(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """An app that handles its own error and reports it with ``exc_info``."""
    environ["kitsession"].session.data["lost"] = "yes"
    try:
        raise ValueError("handled by the app")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error"]


def own_headers(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Sets its own cookie and Vary (and Cache-Control on request), and touches the session."""
    params = query(environ)
    session = environ["kitsession"].session
    if params.get("write"):
        session.data["w"] = params["write"]
    else:
        session.data.get("w")
    headers = [("Set-Cookie", "theme=dark; Path=/"), ("Vary", params.get("vary", "Accept-Encoding"))]
    if params.get("cache"):
        headers.append(("Cache-Control", params["cache"]))
    return respond(start_response, {"ok": True}, headers=headers)


class ClosingBody:
    """An app iterable that records whether the server closed it."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"streamed"

    def close(self) -> None:
        self.closed = True


BODIES: list[ClosingBody] = []


def closing(environ: Environ, start_response: StartResponse) -> ClosingBody:
    environ["kitsession"].session.data["c"] = 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = ClosingBody()
    BODIES.append(body)
    return body


def generator_read(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """A generator app: the session is read when the server starts iterating."""
    data = environ["kitsession"].session.data
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield json.dumps(data).encode()


ROUTES: dict[str, Callable[..., Iterable[bytes]]] = {
    "plain": plain,
    "read": read,
    "set": set_values,
    "login": login,
    "logout": logout,
    "counter": counter,
    "counter-unlocked": counter_unlocked,
    "boom": boom,
    "fail500": fail500,
    "fail-exc-info": fail_with_exc_info,
    "own-headers": own_headers,
    "closing": closing,
    "generator-read": generator_read,
}


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Routes on the last path segment, so ``/app/login`` and ``/login`` are one route."""
    route = ROUTES.get(environ.get("PATH_INFO", "/").rsplit("/", 1)[-1])
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    return route(environ, start_response)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def manager(store: FlakyStore, clock: FakeClock) -> SessionManager:
    return SessionManager(store, keys=[KEY], clock=clock)


@pytest.fixture
def client(manager: SessionManager) -> Client:
    return Client(SessionMiddleware(application, manager))


def get(client: Client, path: str, **kwargs: Any) -> TestResponse:
    return client.get(path, base_url=BASE, **kwargs)


def cookie_of(response: TestResponse, name: str = "session") -> Any:
    """The parsed Set-Cookie of ``name`` on the response (exactly one)."""
    values = [parse_set_cookie(v) for v in response.headers.getlist("Set-Cookie")]
    matching = [c for c in values if c.name == name]
    assert len(matching) == 1, f"expected one {name} cookie, got {response.headers.getlist('Set-Cookie')}"
    return matching[0]


def session_cookies(response: TestResponse, name: str = "session") -> list[str]:
    return [v for v in response.headers.getlist("Set-Cookie") if parse_set_cookie(v).name == name]


def log_in(client: Client, path: str = "/login", **params: str) -> TestResponse:
    return client_helpers.log_in(client, path, base_url=BASE, **params)


def vary_tokens(response: TestResponse) -> list[str]:
    return [token.strip().lower() for value in response.headers.getlist("Vary") for token in value.split(",")]


# -- anonymous traffic costs nothing -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expect_vary"),
    [pytest.param("/plain", False, id="never-touches-session"),
     pytest.param("/read", True, id="only-reads-session")],
)
def test_anonymous_request_writes_nothing_and_sets_no_cookie(
    client: Client, store: FlakyStore, path: str, expect_vary: bool
) -> None:
    response = get(client, path)
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert store.writes() == 0
    assert store.calls["create"] == store.calls["set"] == store.calls["touch"] == 0
    assert store.calls["get"] == 0, "no cookie: nothing to look up"
    assert ("cookie" in vary_tokens(response)) is expect_vary
    assert "Cache-Control" not in response.headers


def test_anonymous_read_with_a_bogus_cookie_costs_no_store_call(client: Client, store: FlakyStore) -> None:
    client.set_cookie("session", "s%3Aforged.AAAA")
    response = get(client, "/read")
    assert response.status_code == 200
    assert response.json is not None and response.json["is_new"] is True
    assert store.calls["get"] == 0, "a bad signature costs no store call"
    assert store.writes() == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param("sessionid", "abc", id="other-cookie-named-sessionid"),
     pytest.param("theme", "session-dark", id="value-mentions-session"),
     pytest.param("Session", "abc", id="other-case")],
)
def test_similar_foreign_cookie_is_not_cleared(client: Client, store: FlakyStore, name: str, value: str) -> None:
    client.set_cookie(name, value)
    response = get(client, "/read")
    assert response.status_code == 200
    assert response.headers.getlist("Set-Cookie") == []
    assert store.writes() == 0 and store.calls["get"] == 0


# -- login: cookie attributes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "path", "expected"),
    [
        pytest.param({}, "/login",
                     {"name": "session", "path": "/", "domain": None, "samesite": "Strict", "max_age": 14 * 86400,
                      "secure": True},
                     id="defaults"),
        pytest.param({"name": "sid", "path": "/app", "domain": "example.com", "samesite": "Lax", "max_age": 3600},
                     "/app/login",
                     {"name": "sid", "path": "/app", "domain": "example.com", "samesite": "Lax", "max_age": 3600,
                      "secure": True},
                     id="custom-name-path-domain-lax-1h"),
        pytest.param({"name": "__Host-id", "samesite": "None", "max_age": 60},
                     "/login",
                     {"name": "__Host-id", "path": "/", "domain": None, "samesite": "None", "max_age": 60,
                      "secure": True},
                     id="host-prefix-samesite-none"),
        pytest.param({"name": "dev", "secure": False, "httponly": True, "samesite": "Lax", "max_age": 120},
                     "/login",
                     {"name": "dev", "path": "/", "domain": None, "samesite": "Lax", "max_age": 120, "secure": False},
                     id="insecure-dev"),
    ],
)
def test_login_sets_cookie_with_configured_attributes(
    store: FlakyStore, clock: FakeClock, options: dict[str, Any], path: str, expected: dict[str, Any]
) -> None:
    manager = SessionManager(store, keys=[KEY], clock=clock, **options)
    client = Client(SessionMiddleware(application, manager))
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
    assert cookie.expires is not None
    assert cookie.expires.timestamp() == clock.now + expected["max_age"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "cookie" in vary_tokens(response)
    assert CookieSigner((KEY.encode(),)).unsign(unquote(cookie.value)) is not None

    # the cookie is presented back under its path and domain and loads the session
    follow = client.get(path.replace("login", "read"), base_url=f"https://{host}")
    assert follow.json is not None
    assert follow.json["user_id"] == 5 and follow.json["data"]["name"] == "ada"


def test_login_stores_one_session_with_the_user(client: Client, store: FlakyStore) -> None:
    log_in(client, user="42")
    (record,) = store.get_all()
    assert record.user_id == 42
    assert json.loads(record.data) == {"id": 42, "name": "ada"}


# -- fixation ------------------------------------------------------------------------------


def test_pre_login_id_is_dead_after_login_and_data_does_not_leak(client: Client, store: FlakyStore,
                                                                 clock: FakeClock) -> None:
    anonymous = get(client, "/set", query_string={"cart": "apples"})
    old = cookie_of(anonymous)
    assert get(client, "/read").json["data"] == {"cart": "apples"}  # type: ignore[index]

    login = log_in(client)
    new = cookie_of(login)
    assert new.value != old.value
    after = get(client, "/read").json
    assert after is not None
    assert after["data"] == {"id": 5, "name": "ada"}, "anonymous data leaked into the login session"
    assert len(live_records(store)) == 1, "the pre-login record must be deleted or only marked replaced"

    fixated = Client(client.application)
    fixated.set_cookie("session", old.raw_value)
    replay = get(fixated, "/read")
    assert replay.json is not None
    assert replay.json["is_new"] is True and replay.json["data"] == {}
    # Marked "replaced" for a minute: a request in flight during the login must not clear
    # the browser's new cookie, so the dead one is left alone until then ...
    assert replay.headers.getlist("Set-Cookie") == []
    clock.advance(REPLACED_MARKER_SECONDS)
    replay = get(fixated, "/read")
    assert replay.json is not None and replay.json["is_new"] is True and replay.json["data"] == {}
    assert cookie_of(replay).is_removal, "the dead cookie is cleared"  # ... and cleared after


def test_anonymous_data_is_kept_when_the_app_copies_it(client: Client) -> None:
    get(client, "/set", query_string={"cart": "pears"})
    log_in(client, copy="cart")
    after = get(client, "/read").json
    assert after is not None
    assert after["data"] == {"id": 5, "name": "ada", "cart": "pears"}


# -- a failed login changes nothing ------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [pytest.param({"fail": "raise"}, id="view-raises"),
     pytest.param({"status": "401 Unauthorized"}, id="answers-401"),
     pytest.param({"status": "422 Unprocessable Entity"}, id="answers-422"),
     pytest.param({"status": "500 Internal Server Error"}, id="answers-500"),
     pytest.param({"status": "503 Service Unavailable"}, id="answers-503")],
)
@pytest.mark.parametrize("before", ["anonymous", "previous-session"])
def test_failed_login_stores_nothing_and_keeps_previous_session(
    client: Client, store: FlakyStore, params: dict[str, str], before: str
) -> None:
    if before == "previous-session":
        previous = cookie_of(get(client, "/set", query_string={"cart": "plums"}))
    records_before = store.get_all()
    store.reset()

    if params.get("fail") == "raise":
        with pytest.raises(RuntimeError, match="login exploded"):
            get(client, "/login", query_string=params)
    else:
        response = get(client, "/login", query_string=params)
        assert response.status_code == int(params["status"][:3])
        assert session_cookies(response) == []
    assert store.calls["create"] == store.calls["set"] == store.calls["delete"] == 0
    assert store.get_all() == records_before

    after = get(client, "/read").json
    assert after is not None
    if before == "previous-session":
        assert after["data"] == {"cart": "plums"}
        assert client.get_cookie("session") is not None
        assert client.get_cookie("session").value == previous.raw_value  # type: ignore[union-attr]
    else:
        assert after["is_new"] is True


# -- logout --------------------------------------------------------------------------------


@pytest.mark.parametrize("cookie", ["live", "stale", "unknown", "garbage", "none"])
def test_logout_removes_record_and_clears_cookie(
    client: Client, store: FlakyStore, manager: SessionManager, clock: FakeClock, cookie: str
) -> None:
    if cookie in ("live", "stale"):
        log_in(client)
        assert len(store.get_all()) == 1
        if cookie == "stale":
            clock.advance(manager.max_age + 1)
    elif cookie == "unknown":
        client.set_cookie("session", parse_set_cookie(manager.set_session_cookie("never-stored-id")).raw_value)
    elif cookie == "garbage":
        client.set_cookie("session", "%%%not-a-cookie")

    response = get(client, "/logout")
    assert response.status_code == 200
    removal = cookie_of(response)
    assert removal.is_removal
    assert removal.expires < clock.now
    assert removal.attributes["path"] == "/"
    assert response.headers["Cache-Control"] == "no-store"
    assert live_records(store) == []
    assert client.get_cookie("session") is None
    assert get(client, "/read").json["is_new"] is True  # type: ignore[index]


def test_logout_removal_cookie_repeats_custom_path_and_domain(store: FlakyStore, clock: FakeClock) -> None:
    manager = SessionManager(store, keys=[KEY], clock=clock, name="sid", path="/app", domain="example.com")
    client = Client(SessionMiddleware(application, manager))
    client.get("/app/login", base_url="https://www.example.com")
    response = client.get("/app/logout", base_url="https://www.example.com")
    removal = cookie_of(response, "sid")
    assert removal.is_removal
    assert removal.attributes["path"] == "/app"
    assert removal.attributes["domain"] == "example.com"
    assert client.get_cookie("sid", domain="example.com", path="/app") is None
    assert live_records(store) == []


def test_logout_that_answers_4xx_keeps_the_session(client: Client, store: FlakyStore) -> None:
    log_in(client)
    response = get(client, "/logout", query_string={"status": "403 Forbidden"})
    assert response.status_code == 403
    assert session_cookies(response) == []
    assert len(store.get_all()) == 1
    assert get(client, "/read").json["user_id"] == 5  # type: ignore[index]


# -- key rotation ----------------------------------------------------------------------------


def test_cookie_signed_with_old_key_is_accepted_and_resigned(store: FlakyStore, clock: FakeClock) -> None:
    old_manager = SessionManager(store, keys=["old-key"], clock=clock)
    old_client = Client(SessionMiddleware(application, old_manager))
    old_cookie = cookie_of(log_in(old_client))

    rotated = SessionManager(store, keys=["new-key", "old-key"], clock=clock)
    client = Client(SessionMiddleware(application, rotated))
    client.set_cookie("session", old_cookie.raw_value)
    response = get(client, "/read")
    assert response.json is not None and response.json["user_id"] == 5

    resigned = cookie_of(response)
    assert resigned.value != old_cookie.value
    new_only, old_only = CookieSigner((b"new-key",)), CookieSigner((b"old-key",))
    assert new_only.unsign(resigned.value) is not None
    assert old_only.unsign(resigned.value) is None
    assert new_only.unsign(resigned.value) == (old_only.unsign(old_cookie.value)[0], 0)  # type: ignore[index]

    again = get(client, "/read")
    assert again.json is not None and again.json["user_id"] == 5
    assert session_cookies(again) == [], "a cookie signed with the current key is not re-sent"


# -- store outage ---------------------------------------------------------------------------


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
@pytest.mark.parametrize("retry_after", [5, 120], ids=["retry-default-5", "retry-120"])
def test_store_outage_answers_503_with_retry_after(
    store: FlakyStore, manager: SessionManager, failing: set[str], path: str, logged_in: bool, retry_after: int
) -> None:
    middleware = (SessionMiddleware(application, manager) if retry_after == 5
                  else SessionMiddleware(application, manager, retry_after=retry_after))
    client = Client(middleware)
    if logged_in:
        log_in(client)
    records_before = store.get_all()
    store.failing = failing
    response = get(client, path)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(retry_after)
    assert session_cookies(response) == [], "an outage is not a logout"
    store.failing = set()
    assert store.get_all() == records_before
    if logged_in:
        assert get(client, "/read").json["user_id"] == 5  # type: ignore[index]


def test_store_outage_while_a_generator_app_loads_answers_503(
    client: Client, store: FlakyStore
) -> None:
    """Regression: an outage inside a generator app escaped to the server instead of a 503."""
    log_in(client)
    store.failing = {"get"}
    response = get(client, "/generator-read")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


# -- 5xx and exceptions persist nothing -------------------------------------------------------


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
@pytest.mark.parametrize("path", ["/boom", "/fail500", "/fail-exc-info"])
def test_5xx_or_exception_persists_nothing(
    client: Client, store: FlakyStore, path: str, logged_in: bool
) -> None:
    if logged_in:
        log_in(client)
    records_before = store.get_all()
    store.reset()
    if path == "/boom":
        with pytest.raises(RuntimeError, match="view exploded"):
            get(client, path)
    elif path == "/fail-exc-info":
        # werkzeug's test server re-raises exc_info, as PEP 3333 allows
        with pytest.raises(ValueError, match="handled by the app"):
            get(client, path)
    else:
        response = get(client, path)
        assert response.status_code == 500
        assert session_cookies(response) == []
    assert store.calls["create"] == store.calls["set"] == store.calls["touch"] == 0
    assert store.get_all() == records_before
    assert "lost" not in get(client, "/read").json["data"]  # type: ignore[index]


def call_directly(middleware: SessionMiddleware, path: str, cookie: str | None = None,
                  query_string: str = "") -> tuple[list[tuple[str, list[tuple[str, str]], Any]], Iterable[bytes]]:
    """Call the middleware as a server would, recording every start_response call."""
    calls: list[tuple[str, list[tuple[str, str]], Any]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        calls.append((status, list(headers), exc_info))
        return lambda data: None

    environ: Environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query_string,
                        "SERVER_NAME": "localhost", "SERVER_PORT": "443", "wsgi.url_scheme": "https",
                        "wsgi.version": (1, 0)}
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    body = middleware(environ, start_response)
    return calls, body


def test_exc_info_is_passed_through_to_the_server(manager: SessionManager, store: FlakyStore) -> None:
    calls, body = call_directly(SessionMiddleware(application, manager), "/fail-exc-info")
    assert b"".join(body) == b"error"
    ((status, headers, exc_info),) = calls
    assert status.startswith("500")
    assert exc_info is not None and exc_info[0] is ValueError
    assert str(exc_info[1]) == "handled by the app"
    assert not [v for k, v in headers if k.lower() == "set-cookie"]
    assert store.get_all() == []


def replaced_by_error(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """Starts a 200, then fails before any body and replaces it with a 500 (PEP 3333 allows this)."""
    environ["kitsession"].session.data["lost"] = "yes"
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("rendering failed after start_response")
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error"]


def test_status_replaced_by_exc_info_500_persists_nothing(manager: SessionManager, store: FlakyStore) -> None:
    calls, body = call_directly(SessionMiddleware(replaced_by_error, manager), "/")
    assert b"".join(body) == b"error"
    assert [status for status, _, _ in calls] == ["200 OK", "500 Internal Server Error"]
    assert calls[1][2] is not None
    assert store.calls["create"] == store.calls["set"] == 0
    assert store.get_all() == []


def test_app_iterable_is_returned_and_closed(manager: SessionManager, store: FlakyStore) -> None:
    BODIES.clear()
    calls, body = call_directly(SessionMiddleware(application, manager), "/closing")
    assert list(body) == [b"streamed"]
    assert hasattr(body, "close"), "the middleware must keep the app iterable's close()"
    body.close()  # type: ignore[attr-defined]
    assert BODIES and BODIES[0].closed
    ((status, headers, _),) = calls
    assert [parse_set_cookie(v).name for k, v in headers if k.lower() == "set-cookie"] == ["session"]


def test_werkzeug_client_closes_app_iterable(client: Client) -> None:
    BODIES.clear()
    response = get(client, "/closing", buffered=True)
    assert response.get_data() == b"streamed"
    assert BODIES and BODIES[0].closed


# -- headers: Vary, Cache-Control, the app's own cookies ---------------------------------------


@pytest.mark.parametrize(
    ("params", "expected_vary"),
    [
        pytest.param({}, ["accept-encoding", "cookie"], id="merged-into-existing-vary"),
        pytest.param({"vary": "Cookie"}, ["cookie"], id="already-cookie-not-duplicated"),
        pytest.param({"vary": "Accept, cookie"}, ["accept", "cookie"], id="lowercase-cookie-not-duplicated"),
        pytest.param({"vary": "*"}, ["*"], id="star-left-alone"),
        pytest.param({"write": "1"}, ["accept-encoding", "cookie"], id="merged-when-setting-cookie"),
    ],
)
def test_vary_cookie_is_merged_not_duplicated(
    client: Client, params: dict[str, str], expected_vary: list[str]
) -> None:
    response = get(client, "/own-headers", query_string=params)
    assert response.status_code == 200
    assert sorted(vary_tokens(response)) == sorted(expected_vary)
    assert len(response.headers.getlist("Vary")) == 1


@pytest.mark.parametrize(
    "vary_headers",
    [pytest.param([("Vary", "Accept-Encoding"), ("Vary", "Cookie")], id="cookie-in-second-header"),
     pytest.param([("Vary", "Accept-Encoding"), ("Vary", "Accept-Language")], id="two-headers-without-cookie")],
)
def test_vary_cookie_across_several_vary_headers_appears_once(
    manager: SessionManager, vary_headers: list[tuple[str, str]]
) -> None:
    """Regression: each Vary header was checked alone, so Cookie was added twice."""
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["kitsession"].session.data.get("x")
        start_response("200 OK", [("Content-Type", "text/plain"), *vary_headers])
        return [b"ok"]

    response = get(Client(SessionMiddleware(app, manager)), "/")
    tokens = vary_tokens(response)
    assert tokens.count("cookie") == 1
    assert {t.strip().lower() for _, v in vary_headers for t in v.split(",")} <= set(tokens)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"write": "1"}, "no-store", id="cookie-set-no-store-added"),
        pytest.param({"write": "1", "cache": "private, max-age=60"}, "private, max-age=60", id="app-cache-control-kept"),
        pytest.param({}, None, id="no-cookie-no-cache-control"),
    ],
)
def test_cache_control_no_store_only_when_cookie_set_and_app_did_not(
    client: Client, params: dict[str, str], expected: str | None
) -> None:
    response = get(client, "/own-headers", query_string=params)
    assert response.headers.getlist("Cache-Control") == ([] if expected is None else [expected])


@pytest.mark.parametrize("write", [True, False], ids=["session-cookie-too", "read-only"])
def test_apps_own_set_cookie_headers_are_kept(client: Client, write: bool) -> None:
    response = get(client, "/own-headers", query_string={"write": "x"} if write else {})
    names = sorted(parse_set_cookie(v).name for v in response.headers.getlist("Set-Cookie"))
    assert names == (["session", "theme"] if write else ["theme"])
    assert client.get_cookie("theme") is not None and client.get_cookie("theme").value == "dark"  # type: ignore[union-attr]


# -- the session across requests ---------------------------------------------------------------


def test_expired_session_is_not_served_and_its_cookie_is_cleared(
    client: Client, store: FlakyStore, clock: FakeClock
) -> None:
    log_in(client)
    clock.advance(14 * 86400 - 1)
    assert get(client, "/read").json["user_id"] == 5  # type: ignore[index]
    clock.advance(1)
    response = get(client, "/read")
    assert response.json is not None and response.json["is_new"] is True and response.json["user_id"] is None
    assert cookie_of(response).is_removal
    assert store.get_all() == []


def test_unchanged_session_is_not_rewritten(client: Client, store: FlakyStore) -> None:
    log_in(client)
    store.reset()
    for _ in range(3):
        response = get(client, "/read")
        assert session_cookies(response) == []
    assert store.writes() == 0


def test_in_place_change_is_saved(client: Client, store: FlakyStore) -> None:
    log_in(client)
    get(client, "/set", query_string={"colour": "green"})
    assert get(client, "/read").json["data"]["colour"] == "green"  # type: ignore[index]
    (record,) = store.get_all()
    assert json.loads(record.data)["colour"] == "green"


def test_bare_wsgi_app_login_counter_logout_flow(client: Client, store: FlakyStore) -> None:
    """Framework-neutral proof: a plain WSGI function with login, counter and logout routes."""
    assert get(client, "/counter").json == {"n": 1}  # anonymous counter session
    first = client.get_cookie("session")
    assert first is not None
    assert get(client, "/counter").json == {"n": 2}

    log_in(client)
    assert client.get_cookie("session").value != first.value  # type: ignore[union-attr]
    assert [get(client, "/counter").json["n"] for _ in range(3)] == [1, 2, 3]  # type: ignore[index]
    (record,) = live_records(store)
    assert record.user_id == 5 and json.loads(record.data)["n"] == 3

    get(client, "/logout")
    assert live_records(store) == []
    assert get(client, "/read").json["is_new"] is True  # type: ignore[index]


def test_middleware_is_required_by_the_decorators() -> None:
    client = Client(login)
    with pytest.raises(RuntimeError, match="SessionMiddleware"):
        client.get("/login")


# -- session_lock: one shared key, many threads ---------------------------------------------------


THREADS, REQUESTS = 8, 50


def browsers_sharing(middleware: SessionMiddleware, cookie_value: str) -> list[Client]:
    """``THREADS`` clients that all hold the session cookie ``cookie_value``."""
    clients = [Client(middleware) for _ in range(THREADS)]
    for client in clients:
        client.set_cookie("session", cookie_value)
    return clients


def test_session_lock_loses_no_update_under_8_threads(store: FlakyStore, manager: SessionManager) -> None:
    middleware = SessionMiddleware(application, manager)
    cookie = cookie_of(log_in(Client(middleware)))
    browsers = browsers_sharing(middleware, cookie.raw_value)
    statuses, errors = hammer_path(browsers, "/counter", per_thread=REQUESTS, base_url=BASE)
    assert errors == []
    assert statuses == [200] * (THREADS * REQUESTS)
    (record,) = store.get_all()
    assert json.loads(record.data)["n"] == THREADS * REQUESTS
    assert store._locks == {}, "every lock was released"


@session_lock
def locked_generator_fails(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    environ["kitsession"].session.data["n"] = -1
    raise RuntimeError("generator failed before start_response")
    yield b""  # pragma: no cover - makes this a generator app


def test_session_lock_is_released_when_a_generator_app_fails(manager: SessionManager, store: FlakyStore) -> None:
    """Regression: a generator app failing before start_response kept the session lock until lock_ttl."""
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/locked-generator":
            return locked_generator_fails(environ, start_response)
        return application(environ, start_response)

    client = Client(SessionMiddleware(app, manager))
    log_in(client)
    with pytest.raises(RuntimeError, match="generator failed"):
        get(client, "/locked-generator")
    assert store._locks == {}, "the failed request still holds the session lock"


def test_without_lock_updates_are_lost_report_only(
    store: FlakyStore, manager: SessionManager, record_property: Callable[[str, object], None]
) -> None:
    middleware = SessionMiddleware(application, manager)
    cookie = cookie_of(log_in(Client(middleware)))
    browsers = browsers_sharing(middleware, cookie.raw_value)
    statuses, errors = hammer_path(browsers, "/counter-unlocked", per_thread=REQUESTS, base_url=BASE)
    assert errors == []
    assert statuses == [200] * (THREADS * REQUESTS)
    (record,) = store.get_all()
    final = json.loads(record.data)["n"]
    assert 1 <= final <= THREADS * REQUESTS
    lost = THREADS * REQUESTS - final
    record_property("lost_updates_without_lock", lost)
    print(f"\nWSGI without session_lock: {lost} of {THREADS * REQUESTS} increments lost")


# -- two overlapping requests of one session -----------------------------------------------------


@pytest.mark.parametrize(
    ("slow_change", "fast_path", "expected"),
    [
        pytest.param("set-a", "/set?b=fast", {"a": "slow", "b": "fast", "old": "x"}, id="different-keys-both-kept"),
        pytest.param("delete-old", "/set?b=fast", {"b": "fast"}, id="deleted-key-stays-deleted"),
        pytest.param("replace-data", "/set?b=fast", {"b": "fast", "old": "x", "r": 1},
                     id="replaced-dict-merged-by-key"),
        pytest.param("set-a", "/logout", None, id="logout-is-not-undone-by-slower-request"),
    ],
)
def test_overlapping_requests_keep_both_changes(
    manager: SessionManager, store: FlakyStore, slow_change: str, fast_path: str,
    expected: dict[str, Any] | None
) -> None:
    loaded, proceed = threading.Event(), threading.Event()

    def slow(environ: Environ, start_response: StartResponse) -> list[bytes]:
        session = environ["kitsession"].session
        session.data.get("old")
        loaded.set()
        assert proceed.wait(timeout=30)
        if slow_change == "set-a":
            session.data["a"] = "slow"
        elif slow_change == "delete-old":
            del session.data["old"]
        else:
            session.data = {**session.data, "r": 1}
        return respond(start_response, {"ok": True})

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            return slow(environ, start_response)
        return application(environ, start_response)

    middleware = SessionMiddleware(app, manager)
    setup = Client(middleware)
    cookie = cookie_of(log_in(setup)).raw_value
    get(setup, "/set", query_string={"old": "x"})

    slow_client, fast_client = Client(middleware), Client(middleware)
    slow_client.set_cookie("session", cookie)
    fast_client.set_cookie("session", cookie)
    slow = Background(lambda: get(slow_client, "/slow"))
    assert loaded.wait(timeout=30)
    assert get(fast_client, fast_path).status_code == 200
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
        data = json.loads(record.data)
        assert {k: v for k, v in data.items() if k not in ("id", "name")} == expected


def test_data_over_max_data_bytes_raises_and_keeps_the_stored_session(store: FlakyStore, clock: FakeClock) -> None:
    manager = SessionManager(store, keys=[KEY], clock=clock, max_data_bytes=300)
    client = Client(SessionMiddleware(application, manager))
    log_in(client)
    (before,) = store.get_all()
    with pytest.raises(SessionDataError, match="max_data_bytes"):
        get(client, "/set", query_string={"big": "x" * 400})
    assert store.get_all() == [before]
    assert get(client, "/read").json["data"] == {"id": 5, "name": "ada"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("rolling", "advance", "touched"),
    [
        pytest.param(False, 30, False, id="within-touch-interval-no-write"),
        pytest.param(False, 61, True, id="after-touch-interval-one-touch"),
        pytest.param(True, 61, True, id="rolling-touch-resends-cookie"),
    ],
)
def test_idle_timeout_activity_only_touches_once_per_interval(
    store: FlakyStore, clock: FakeClock, rolling: bool, advance: float, touched: bool
) -> None:
    manager = SessionManager(store, keys=[KEY], clock=clock, idle_timeout=600, rolling=rolling)
    client = Client(SessionMiddleware(application, manager))
    log_in(client)
    store.reset()
    clock.advance(advance)
    response = get(client, "/read")
    assert response.json["user_id"] == 5  # type: ignore[index]
    assert store.calls["touch"] == int(touched)
    assert store.calls["set"] == store.calls["create"] == 0
    if rolling:
        rolled = cookie_of(response)
        assert rolled.max_age == 600 and rolled.expires == clock.now + 600
    else:
        assert session_cookies(response) == []
    assert get(client, "/read").status_code == 200
    assert store.calls["touch"] == int(touched), "a second request in the same interval does not touch again"


@pytest.mark.parametrize("bad", [-1, "soon", None, True, 2.5], ids=repr)
def test_retry_after_is_validated_at_construction(manager: SessionManager, bad: object) -> None:
    """Regression: any retry_after was accepted and written into the Retry-After header."""
    with pytest.raises(ConfigurationError) as info:
        SessionMiddleware(application, manager, retry_after=bad)  # type: ignore[arg-type]
    assert info.value.option == "retry_after"


def test_session_lock_held_elsewhere_answers_409(store: FlakyStore, clock: FakeClock) -> None:
    manager = SessionManager(store, keys=[KEY], clock=clock, lock_timeout=0.01)
    client = Client(SessionMiddleware(application, manager))
    log_in(client)
    (record,) = store.get_all()
    assert store.acquire_lock(record.key, "another-request", 60)
    response = get(client, "/counter")
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"
    assert session_cookies(response) == []
    store.release_lock(record.key, "another-request")
    assert get(client, "/counter").json == {"n": 1}



@session_lock
def locked_generator_counter(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    session = environ["kitsession"].session
    session.data["n"] = session.data.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield str(session.data["n"]).encode()


@pytest.mark.parametrize("consume", [True, False], ids=["iterated-then-closed", "closed-without-iterating"])
def test_locked_generator_app_frees_the_lock(manager: SessionManager, store: FlakyStore, consume: bool) -> None:
    client = Client(SessionMiddleware(application, manager))
    cookie = cookie_of(log_in(client)).raw_value
    (record,) = store.get_all()
    middleware = SessionMiddleware(locked_generator_counter, manager)
    calls, body = call_directly(middleware, "/", cookie=f"session={cookie}")
    assert record.key in store._locks, "the lock is held while the response is pending"
    if consume:
        assert list(body) == [b"1"]
        assert [status for status, _, _ in calls] == ["200 OK"]
    body.close()  # type: ignore[attr-defined]
    assert store._locks == {}
    expected = 1 if consume else None
    assert json.loads(store.get_all()[0].data).get("n") == expected


@pytest.mark.parametrize("first", ["garbage", "forged-signature", "unknown-id"])
def test_duplicate_cookie_name_uses_the_value_that_verifies(
    manager: SessionManager, client: Client, first: str
) -> None:
    live = cookie_of(log_in(client)).request_header
    decoy = {
        "garbage": "session=garbage",
        "forged-signature": "session=s%3Aabc.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "unknown-id": parse_set_cookie(manager.set_session_cookie("not-stored")).request_header,
    }[first]
    fresh = Client(client.application, use_cookies=False)
    response = get(fresh, "/read", headers={"Cookie": f"{decoy}; {live}"})
    assert response.json is not None and response.json["user_id"] == 5
    assert session_cookies(response) == [], "the live cookie must not be cleared"


# -- the response starts (and the session is committed) once, against the final status ------


def write_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """An app that sends its body with the write() callable (PEP 3333's legacy path)."""
    environ["kitsession"].session.data["via"] = "write"
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"part one, ")
    write(b"part two")
    return []


def test_an_app_using_write_gets_its_session_committed_before_the_first_write(
        manager: SessionManager, store: FlakyStore) -> None:
    written: list[bytes] = []
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        calls.append((status, list(headers)))
        stored_when_started.append(len(store.get_all()))
        return written.append

    stored_when_started: list[int] = []
    environ: Environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "localhost",
                        "SERVER_PORT": "443", "wsgi.url_scheme": "https", "wsgi.version": (1, 0)}
    body = SessionMiddleware(write_app, manager)(environ, start_response)
    assert list(body) == [] and written == [b"part one, ", b"part two"]
    ((status, headers),) = calls
    assert status == "200 OK" and stored_when_started == [1]
    (cookie,) = [parse_set_cookie(v) for k, v in headers if k.lower() == "set-cookie"]
    loaded = manager.initialize_session({"Cookie": cookie.request_header})
    assert loaded.data == {"via": "write"}


def test_an_outage_while_committing_a_list_response_is_a_503_and_closes_the_app_iterable(
        manager: SessionManager, store: FlakyStore) -> None:
    closed: list[bool] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closed.append(True)

    def app(environ: Environ, start_response: StartResponse) -> Body:
        environ["kitsession"].session.data["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"ok"])

    store.failing = {"create"}
    calls, body = call_directly(SessionMiddleware(app, manager), "/")
    assert [status for status, _, _ in calls] == ["503 Service Unavailable"]
    assert b"".join(body).startswith(b"Session store unavailable") and closed == [True]


def test_a_generator_returned_after_start_response_may_still_turn_into_a_500(
        manager: SessionManager, store: FlakyStore) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        environ["kitsession"].session.data["lost"] = "yes"
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            try:
                raise ValueError("rendering failed before the first chunk")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"error"

        return body()

    calls, body = call_directly(SessionMiddleware(app, manager), "/")
    assert calls == [], "nothing goes to the server before the first chunk"
    assert b"".join(body) == b"error"
    assert [status for status, _, _ in calls] == ["200 OK", "500 Internal Server Error"]
    assert not [v for k, v in calls[-1][1] if k.lower() == "set-cookie"]
    assert store.get_all() == [] and store.calls["create"] == 0


def test_a_logout_whose_response_turns_into_a_500_removes_nothing(manager: SessionManager,
                                                                  store: FlakyStore) -> None:
    @with_delete_session
    def logout(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error"]

    stored = manager.create_session(user_id=5, data={"n": 1})
    cookie = parse_set_cookie(manager.set_session_cookie(stored)).request_header
    calls, body = call_directly(SessionMiddleware(logout, manager), "/logout", cookie=cookie)
    assert b"".join(body) == b"error" and calls[-1][0].startswith("500")
    assert store.get(stored.handle or "") is not None, "a failed logout must keep the session"


def test_a_session_locked_inside_a_generator_is_saved_and_unlocked(manager: SessionManager,
                                                                   store: FlakyStore) -> None:
    stored = manager.create_session(data={"n": 1})
    cookie = parse_set_cookie(manager.set_session_cookie(stored)).request_header

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            session = environ["kitsession"].lock()
            session.data["n"] += 1
            yield str(session.data["n"]).encode()

        return body()

    calls, body = call_directly(SessionMiddleware(app, manager), "/", cookie=cookie)
    assert b"".join(body) == b"2"
    body.close()  # type: ignore[attr-defined]
    assert json.loads(store.get(stored.handle or "").data) == {"n": 2}  # type: ignore[union-attr]
    assert store.acquire_lock(stored.handle or "", "another request", 30) is True, "the lock was left held"
