"""A request that never touches the session costs no store call in steady state (issue 23, item 6).

Under Flask's defaults (``SESSION_REFRESH_EACH_REQUEST=True``), Flask re-sends a permanent
session's cookie on every response; KitSession remembers, per verified cookie header, what
that needs (id, deadline, ``permanent``), so a static file or a health check behind a
signed-in browser does not read the store: at most about one read (and the touch) per
client, process and touch interval.  The store is a real ``MemoryStore`` that counts its
calls.  The cookie keeps Flask's meaning (Expires is the session's deadline) and a revoked
session is not made live again by its cookie being re-sent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, session
from werkzeug.http import parse_date

from kitsession_wsgi import SessionManager
from kitsession_wsgi.flask import KitSession, get_manager
from kitsession_wsgi.wsgi import SessionMiddleware, request_session

from clocks import FakeClock
from session_helpers import CountingStore

SECRET = "untouched-secret-key-0123456789"
LIFETIME = timedelta(minutes=30)


def make_app(store: CountingStore, clock: FakeClock, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, PERMANENT_SESSION_LIFETIME=LIFETIME, **config)
    KitSession(app, store=store, clock=clock)

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("user"))

    @app.get("/permanent/<flag>")
    def permanent(flag: str) -> str:
        session.permanent = flag == "on"
        return "ok"

    @app.get("/static")
    def static_file() -> str:
        return "body { }"

    return app


def set_cookies(response: Any) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def expires_of(set_cookie: str) -> float:
    for part in set_cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "expires":
            parsed = parse_date(value)
            assert parsed is not None
            return parsed.timestamp()
    raise AssertionError(f"no Expires in {set_cookie!r}")


def untouched_calls(client: Any, store: CountingStore, times: int = 5) -> list[int]:
    counts = []
    for _ in range(times):
        store.reset()
        assert client.get("/static").status_code == 200
        counts.append(sum(store.calls.values()))
    return counts


def test_untouched_requests_cost_no_store_call_under_flask_defaults() -> None:
    store, clock = CountingStore(), FakeClock()
    client = make_app(store, clock).test_client()
    client.get("/login")
    client.get("/static")  # the first untouched request with the cookie reads the store once
    assert untouched_calls(client, store) == [0] * 5
    response = client.get("/static")
    assert set_cookies(response) == [], "a browser-session cookie is not re-sent"


def test_untouched_requests_resend_a_permanent_cookie_without_a_store_call() -> None:
    store, clock = CountingStore(), FakeClock()
    app = make_app(store, clock)
    client = app.test_client()
    client.get("/login")
    client.get("/permanent/on")
    client.get("/static")
    assert untouched_calls(client, store) == [0] * 5
    with app.test_request_context():
        manager = get_manager()
    handle = next(iter(store.get_all())).key
    stored = store.get(handle)
    assert stored is not None
    clock.advance(10)
    store.reset()
    (cookie,) = set_cookies(client.get("/static"))
    assert sum(store.calls.values()) == 0
    # Flask's meaning: the re-sent cookie carries the session's deadline, here the stored one.
    assert abs(expires_of(cookie) - stored.expires_at) < 1
    assert manager.cookie_value("x") != ""  # the manager is the app's, for its current config


def test_a_due_touch_costs_one_read_and_one_touch_then_nothing_again() -> None:
    store, clock = CountingStore(), FakeClock()
    app = make_app(store, clock, SESSION_PERMANENT=True)
    client = app.test_client()
    client.get("/login")
    client.get("/read")
    handle = next(iter(store.get_all())).key
    before = store.get(handle)
    assert before is not None
    clock.advance(120)  # past the touch interval (60 s for a 30-minute idle timeout)
    store.reset()
    (cookie,) = set_cookies(client.get("/static"))
    assert dict(store.calls) == {"get": 1, "touch": 1}
    after = store.get(handle)
    assert after is not None and after.expires_at == before.expires_at + 120
    assert abs(expires_of(cookie) - after.expires_at) < 1, "the moved deadline is the cookie's"
    assert untouched_calls(client, store) == [0] * 5


def test_refresh_off_costs_nothing() -> None:
    store, clock = CountingStore(), FakeClock()
    client = make_app(store, clock, SESSION_REFRESH_EACH_REQUEST=False, SESSION_PERMANENT=True).test_client()
    client.get("/login")
    assert untouched_calls(client, store) == [0] * 5
    assert set_cookies(client.get("/static")) == []


def test_making_the_session_non_permanent_stops_the_resending_at_once() -> None:
    store, clock = CountingStore(), FakeClock()
    client = make_app(store, clock).test_client()
    client.get("/login")
    client.get("/permanent/on")
    client.get("/static")
    assert len(set_cookies(client.get("/static"))) == 1
    client.get("/permanent/off")  # forgets what the untouched requests re-sent
    assert set_cookies(client.get("/static")) == [], "not re-sent, not even once, after permanent=False"
    store.reset()
    assert set_cookies(client.get("/static")) == []
    assert sum(store.calls.values()) == 0


def test_a_revoked_session_is_not_made_live_by_untouched_requests() -> None:
    store, clock = CountingStore(), FakeClock()
    app = make_app(store, clock, SESSION_PERMANENT=True)
    client = app.test_client()
    client.get("/login")
    client.get("/static")
    handle = next(iter(store.get_all())).key
    expires_at = store.get(handle).expires_at  # type: ignore[union-attr]
    with app.test_request_context():
        assert get_manager().remove_session_by_handle(handle)  # "sign out this device", elsewhere
    for _ in range(3):
        store.reset()
        (cookie,) = set_cookies(client.get("/static"))
        assert sum(store.calls.values()) == 0
        # re-sent with the deadline the store held, never a later one, and nothing written
        assert expires_of(cookie) <= expires_at + 1
        assert store.get(handle) is None
    # The next request that reads the session asks the store: anonymous, cookie cleared.
    response = client.get("/read")
    assert response.text == "None"
    (cleared,) = set_cookies(response)
    assert "Max-Age=0" in cleared
    assert store.get(handle) is None, "nothing brought the revoked session back"


def test_a_forged_cookie_is_never_remembered() -> None:
    store, clock = CountingStore(), FakeClock()
    client = make_app(store, clock, SESSION_PERMANENT=True).test_client()
    client.set_cookie("session", "s:forged-id.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    for _ in range(3):
        store.reset()
        assert set_cookies(client.get("/static")) == []
        assert sum(store.calls.values()) == 0  # a value that does not verify costs no store call


def test_the_middleware_costs_no_store_call_for_an_untouched_request() -> None:
    store, clock = CountingStore(), FakeClock()
    manager = SessionManager(store, keys=[SECRET], clock=clock)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/login":
            request_session(environ).session.data["user"] = "ada"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    from werkzeug.test import Client

    client = Client(SessionMiddleware(app, manager))
    client.get("/login")
    assert client.get_cookie("session") is not None
    for _ in range(3):
        store.reset()
        response = client.get("/static")
        assert sum(store.calls.values()) == 0
        assert response.headers.getlist("Set-Cookie") == []


def test_the_user_loader_hook_exists_only_with_a_loader_registered_before_or_after_init_app() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)
    extension = KitSession(app, store=CountingStore())
    assert not app.before_request_funcs.get(None), "no per-request hook without a user loader"

    @app.get("/login")
    def login() -> str:
        session.user_id = 7  # type: ignore[attr-defined]  # an explicit link (data keys link no user under Flask)
        return "ok"

    @app.get("/who")
    def who() -> str:
        from flask import g

        return str(g.user)

    extension.user_loader(lambda user_id: {"id": user_id})  # after init_app, as a decorator often is
    extension.user_loader(lambda user_id: {"id": user_id, "again": True})  # replaced, not hooked twice
    assert len(app.before_request_funcs[None]) == 1
    client = app.test_client()
    client.get("/login")
    assert client.get("/who").text == str({"id": 7, "again": True})
