"""A response that hands out a session is never left cacheable by a shared cache.

An application's ``Cache-Control: public`` (or ``s-maxage`` / ``max-age`` without
``private`` or ``no-store``) on a response carrying the session's ``Set-Cookie`` or
``Session-Token`` would let a CDN serve that session to every client: it is replaced
by ``private, no-store`` and logged once; any other ``Cache-Control`` the application
set is its choice and kept (rule 5 in docs/design.rst).  Both adapters, one merge.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, session as flask_session
from werkzeug.test import Client

from kitsession_wsgi import MemoryStore, SessionManager
from kitsession_wsgi import _http
from kitsession_wsgi.flask import KitSession, session_token, with_new_session
from kitsession_wsgi.wsgi import SessionMiddleware

SHARED = ["public, max-age=600", "max-age=600", "s-maxage=600", "public"]
KEPT = ["no-cache", "private, max-age=60", "public, no-store", "must-revalidate"]


@pytest.fixture(autouse=True)
def fresh_log_once() -> Any:
    """Each test sees the once-per-process log line afresh."""
    _http._shared_caching.logged = False  # noqa: SLF001 - the log-once flag is process-wide
    yield


def wsgi_app(cache_control: str, *, bearer: bool = False) -> Client:
    manager = SessionManager(MemoryStore(), keys="k", secure=False, bearer=bearer)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        request_session = environ["kitsession"]
        if environ["PATH_INFO"] == "/token":
            fresh = request_session.new_session(data={"id": 1})
            body = manager.session_token(fresh).encode()
        else:
            request_session.session.data["n"] = 1
            body = b"ok"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", cache_control)])
        return [body]

    return Client(SessionMiddleware(app, manager), use_cookies=False)


def flask_client(cache_control: str) -> Any:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", KITSESSION_SECURE=False, KITSESSION_BEARER=True)
    KitSession(app, store=MemoryStore())

    @app.get("/")
    def index() -> Any:
        flask_session["n"] = 1
        return "ok", 200, {"Cache-Control": cache_control}

    @app.post("/token")
    @with_new_session
    def token(session: Any) -> Any:
        session.data = {"id": 1}
        return {"token": session_token(session)}, 200, {"Cache-Control": cache_control}

    return app.test_client(use_cookies=False)


def cache_controls(response: Any) -> list[str]:
    return response.headers.getlist("Cache-Control")


@pytest.mark.parametrize("cache_control", SHARED)
def test_a_cookie_response_the_app_marked_shareable_is_made_private_and_logged_once(
    cache_control: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kitsession_wsgi")
    for client in (wsgi_app(cache_control), flask_client(cache_control)):
        for _ in range(3):
            response = client.get("/")
            assert response.headers.getlist("Set-Cookie")
            assert cache_controls(response) == ["private, no-store"], cache_control
    assert sum("replaced by 'private, no-store'" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("cache_control", SHARED)
def test_a_token_response_the_app_marked_shareable_is_made_private(cache_control: str) -> None:
    for client in (wsgi_app(cache_control, bearer=True), flask_client(cache_control)):
        response = client.post("/token")
        assert response.status_code == 200
        assert cache_controls(response) == ["private, no-store"], cache_control


def test_a_session_token_header_response_the_app_marked_public_is_made_private() -> None:
    manager = SessionManager(MemoryStore(), keys="k", secure=False, bearer=True)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["kitsession"].new_session(data={"id": 1})  # a header request storing a new session
        start_response("200 OK", [("Cache-Control", "public, max-age=60")])
        return [b""]

    response = Client(SessionMiddleware(app, manager)).get("/", headers={"Authorization": "Bearer x.y"})
    assert response.headers.get("Session-Token")
    assert cache_controls(response) == ["private, no-store"]


@pytest.mark.parametrize("cache_control", KEPT)
def test_a_cache_control_no_shared_cache_may_store_is_the_apps_choice(
    cache_control: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kitsession_wsgi")
    for client in (wsgi_app(cache_control), flask_client(cache_control)):
        response = client.get("/")
        assert response.headers.getlist("Set-Cookie")
        assert cache_controls(response) == [cache_control]
    assert not caplog.records


def test_a_public_response_that_hands_out_no_session_stays_public() -> None:
    manager = SessionManager(MemoryStore(), keys="k", secure=False)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["kitsession"].session  # read, nothing stored
        start_response("200 OK", [("Cache-Control", "public, max-age=600")])
        return [b""]

    response = Client(SessionMiddleware(app, manager)).get("/")
    assert response.headers.getlist("Set-Cookie") == []
    assert cache_controls(response) == ["public, max-age=600"]


def test_several_cache_control_headers_become_one_private_one() -> None:
    headers = [("Cache-Control", "public"), ("X-Other", "1"), ("Cache-Control", "max-age=600")]
    _http.add_session_headers(headers, "session=v; Path=/")
    assert [value for name, value in headers if name == "Cache-Control"] == ["private, no-store"]
    assert ("X-Other", "1") in headers
