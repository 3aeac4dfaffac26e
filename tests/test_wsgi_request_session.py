"""request_session(), the status-aware login()/logout(), the decorators' refusals and late writes.

Plain WSGI callables inside SessionMiddleware, driven through werkzeug's test
client (or called as a server would, to control exc_info); the store is a real,
call-counting MemoryStore, so "nothing stored" is read from the store itself.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Request

from kitsession_wsgi import KitSessionError, SessionManager
from kitsession_wsgi.wsgi import (
    MiddlewareMissing,
    NotAWSGIApplication,
    RequestSession,
    SessionMiddleware,
    request_session,
    session_lock,
    with_delete_session,
    with_new_session,
)

from session_helpers import CountingStore, live_records, parse_set_cookie

KEY = "request-session-key"
Environ = dict[str, Any]
StartResponse = Callable[..., Any]


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def manager(store: CountingStore) -> SessionManager:
    return SessionManager(store, keys=[KEY], secure=False)


def text(start_response: StartResponse, status: str, body: str = "") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain")])
    return [body.encode()]


def status_of(environ: Environ) -> str:
    query = environ.get("QUERY_STRING", "")
    return {"": "200 OK", "302": "302 Found", "400": "400 Bad Request", "403": "403 Forbidden",
            "500": "500 Internal Server Error"}[query]


def set_cookies(response: TestResponse) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def app_for(routes: dict[str, Callable[..., Iterable[bytes]]]) -> Callable[..., Iterable[bytes]]:
    def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return routes[environ["PATH_INFO"]](environ, start_response)
    return application


def count(environ: Environ, start_response: StartResponse) -> list[bytes]:
    session = request_session(environ).session
    session.data["n"] = session.data.get("n", 0) + 1
    return text(start_response, "200 OK", str(session.data["n"]))


def whoami(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return text(start_response, "200 OK", repr(request_session(environ).session.user_id))


def login(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).login(user_id=7, data={"name": "ada"})
    return text(start_response, status_of(environ))


def login_raises(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).login(user_id=7)
    raise RuntimeError("login exploded")


def login_then_exc_info(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """A 200 replaced by a 500 through exc_info before the body: the login must not stick."""
    request_session(environ).login(user_id=7)
    start_response("200 OK", [])
    try:
        raise ValueError("handled by the app")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    return [b"error"]


def logout(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).logout()
    return text(start_response, status_of(environ))


def new_session(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).new_session(user_id=9)
    return text(start_response, status_of(environ))


def delete_session(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).delete_session()
    return text(start_response, status_of(environ))


ROUTES: dict[str, Callable[..., Iterable[bytes]]] = {
    "/count": count, "/me": whoami, "/login": login, "/login-raises": login_raises,
    "/login-exc-info": login_then_exc_info, "/logout": logout, "/new-session": new_session,
    "/delete-session": delete_session,
}


@pytest.fixture
def client(manager: SessionManager) -> Client:
    return Client(SessionMiddleware(app_for(ROUTES), manager))


# -- request_session ---------------------------------------------------------------------------


class FalconLike:
    def __init__(self, environ: Environ) -> None:
        self.env = environ


class DjangoLike:
    def __init__(self, environ: Environ) -> None:
        self.META = environ


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda environ: environ, id="environ"),
    pytest.param(Request, id="werkzeug-request-.environ"),
    pytest.param(FalconLike, id=".env"),
    pytest.param(DjangoLike, id=".META"),
])
def test_request_session_from_an_environ_or_a_request_object(manager: SessionManager,
                                                             wrap: Callable[[Environ], Any]) -> None:
    found: list[RequestSession] = []

    def probe(environ: Environ, start_response: StartResponse) -> list[bytes]:
        found.append(request_session(wrap(environ)))
        assert found[0] is environ["kitsession"]
        return text(start_response, "200 OK")

    Client(SessionMiddleware(probe, manager)).get("/")
    assert len(found) == 1 and found[0].manager is manager


def test_request_session_without_the_middleware_names_it() -> None:
    with pytest.raises(MiddlewareMissing, match=r"SessionMiddleware") as caught:
        request_session({"PATH_INFO": "/"})
    assert isinstance(caught.value, KitSessionError) and isinstance(caught.value, RuntimeError)
    with pytest.raises(MiddlewareMissing):
        request_session({"kitsession": "not a RequestSession"})


def test_request_session_of_something_without_an_environ_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\.environ, \.env or \.META"):
        request_session(object())


# -- login() -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["", "302"], ids=["200", "302"])
def test_login_is_kept_below_400_and_replaces_the_previous_session(client: Client, store: CountingStore,
                                                                   manager: SessionManager, status: str) -> None:
    client.get("/count")
    (before,) = live_records(store)
    response = client.get("/login", query_string=status)
    (cookie,) = set_cookies(response)
    assert not parse_set_cookie(cookie).is_removal
    (after,) = live_records(store)
    assert after.key != before.key and after.user_id == 7
    assert client.get("/me").text == "7"


@pytest.mark.parametrize("path,status", [
    ("/login", "400"), ("/login", "403"), ("/login", "500"), ("/login-exc-info", ""), ("/login-raises", ""),
])
def test_login_is_dropped_on_4xx_5xx_exc_info_or_an_exception(client: Client, store: CountingStore,
                                                              path: str, status: str) -> None:
    client.get("/count")
    (before,) = live_records(store)
    store.reset()
    if path == "/login-raises":
        with pytest.raises(RuntimeError, match="login exploded"):
            client.get(path)
    elif path == "/login-exc-info":
        with pytest.raises(ValueError, match="handled by the app"):  # werkzeug re-raises exc_info
            client.get(path)
    else:
        response = client.get(path, query_string=status)
        assert response.status_code == int(status)
        assert set_cookies(response) == []
    assert store.calls["create"] == store.calls["set"] == store.calls["delete"] == 0, store.calls
    assert live_records(store) == [before]
    assert client.get("/count").text == "2", "the previous session stays, with its data"


def test_a_failed_login_of_a_new_visitor_stores_nothing_and_sends_no_cookie(client: Client,
                                                                            store: CountingStore) -> None:
    response = client.get("/login", query_string="403")
    assert set_cookies(response) == []
    assert store.writes() == 0 and store.get_all() == []


def test_new_session_and_delete_session_act_whatever_the_status(client: Client, store: CountingStore) -> None:
    """The documented contrast: only a 5xx or an exception stops new_session(); delete_session() acts at once."""
    response = client.get("/new-session", query_string="403")
    assert response.status_code == 403 and len(set_cookies(response)) == 1
    assert [record.user_id for record in live_records(store)] == [9]
    assert client.get("/delete-session", query_string="400").status_code == 400
    assert live_records(store) == []


def test_abandon_new_session_undoes_a_login(manager: SessionManager, store: CountingStore) -> None:
    def changed_mind(environ: Environ, start_response: StartResponse) -> list[bytes]:
        sessions = request_session(environ)
        sessions.login(user_id=7)
        sessions.abandon_new_session()
        return text(start_response, "200 OK")

    response = Client(SessionMiddleware(changed_mind, manager)).get("/")
    assert set_cookies(response) == [] and store.get_all() == []


# -- logout() ----------------------------------------------------------------------------------


def test_logout_below_400_removes_the_session_and_clears_the_cookie(client: Client, store: CountingStore) -> None:
    client.get("/login")
    response = client.get("/logout", query_string="302")
    (cookie,) = set_cookies(response)
    assert parse_set_cookie(cookie).is_removal
    assert live_records(store) == []
    assert client.get("/me").text == "None"


@pytest.mark.parametrize("status", ["400", "403", "500"])
def test_logout_answering_4xx_or_5xx_removes_nothing(client: Client, store: CountingStore, status: str) -> None:
    client.get("/login")
    records = live_records(store)
    response = client.get("/logout", query_string=status)
    assert set_cookies(response) == []
    assert live_records(store) == records
    assert client.get("/me").text == "7"


def test_logout_with_a_stale_cookie_still_clears_it(client: Client, store: CountingStore) -> None:
    client.get("/login")
    for record in store.get_all():
        store.delete(record.key)
    (cookie,) = set_cookies(client.get("/logout"))
    assert parse_set_cookie(cookie).is_removal


# -- the decorators refuse what they cannot wrap -------------------------------------------------


def zero_args() -> list[bytes]:  # a Bottle view
    return []


def one_arg(request: Any) -> Any:  # a Pyramid or Django view
    return request


class FalconResource:
    def on_get(self, req: Any, resp: Any) -> None:
        pass


@pytest.mark.parametrize("decorator,instead", [
    (with_new_session, r"login\(user_id=\.\.\., data=\.\.\.\)"),
    (with_delete_session, r"logout\(\)"),
    (session_lock, r"lock\(\) first thing"),
])
@pytest.mark.parametrize("view", [zero_args, one_arg, FalconResource.on_get], ids=["no-args", "request", "falcon"])
def test_decorators_refuse_framework_views_when_decorating(decorator: Callable[[Any], Any], instead: str,
                                                           view: Callable[..., Any]) -> None:
    with pytest.raises(NotAWSGIApplication, match=instead) as caught:
        decorator(view)
    message = str(caught.value)
    assert "plain WSGI callable app(environ, start_response" in message
    assert view.__qualname__ in message and "request_session(request)" in message
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, KitSessionError)


def takes_config(config: str, environ: Environ, start_response: StartResponse, session: Any = None) -> list[bytes]:
    return text(start_response, "200 OK", config)


class CallableApp:
    def __call__(self, environ: Environ, start_response: StartResponse, session: Any = None) -> list[bytes]:
        return text(start_response, "200 OK", "instance")

    def method(self, environ: Environ, start_response: StartResponse, session: Any = None) -> list[bytes]:
        return text(start_response, "200 OK", "method")


def anything(*args: Any, **kwargs: Any) -> list[bytes]:
    return text(args[1], "200 OK", "varargs")


@pytest.mark.parametrize("decorator", [with_new_session, with_delete_session, session_lock])
@pytest.mark.parametrize("app,body", [
    (functools.partial(takes_config, "partial"), "partial"),
    (CallableApp(), "instance"),
    (CallableApp().method, "method"),
    (anything, "varargs"),
])
def test_decorators_accept_every_shape_of_wsgi_callable(decorator: Callable[[Any], Any], app: Any, body: str,
                                                        manager: SessionManager) -> None:
    response = Client(SessionMiddleware(decorator(app), manager)).get("/")
    assert response.status_code == 200 and response.text == body


def test_decorators_stack_in_the_order_that_can_work(manager: SessionManager) -> None:
    locked_login = session_lock(with_new_session(CallableApp()))
    assert Client(SessionMiddleware(locked_login, manager)).get("/").text == "instance"
    # with_new_session passes a session argument that session_lock's wrapper does not take.
    with pytest.raises(NotAWSGIApplication, match=r"cannot be called that way"):
        with_new_session(session_lock(CallableApp()))


def test_a_wrapper_called_like_a_view_is_refused_naming_what_it_got(manager: SessionManager) -> None:
    @session_lock
    def item(request: Any, pk: int) -> Any:  # binds (environ, start_response): accepted when decorated
        raise AssertionError("never called")

    with pytest.raises(NotAWSGIApplication, match=r"item was called with \(str, pk=\.\.\.\) instead"):
        item("a request", pk=3)


# -- a session written after the response started ---------------------------------------------


@pytest.fixture
def warnings_of(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="kitsession_wsgi")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "kitsession_wsgi"]


def streaming(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    session = request_session(environ).session
    session.data["before"] = 1                    # saved: the session is committed at the first chunk
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    session.data["cart"].append("late")            # nested, after the commit
    session.data["after"] = 2                      # direct, after the commit
    yield b"second"


def streaming_reads_only(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    session = request_session(environ).session
    session.data["cart"] = ["book"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    yield ",".join(session.data["cart"]).encode()  # hands out a list, changes nothing
    yield str(session.data.get("before")).encode()


def streaming_loads_late(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    request_session(environ).session.data["late"] = True


def streaming_login_late(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first"
    request_session(environ).login(user_id=7)


def write_then_change(environ: Environ, start_response: StartResponse) -> list[bytes]:
    session = request_session(environ).session
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"first")
    session.data["after"] = 2
    return [b"second"]


def list_response(environ: Environ, start_response: StartResponse) -> list[bytes]:
    request_session(environ).session.data["n"] = 1
    return text(start_response, "200 OK", "done")


LATE_ROUTES: dict[str, Callable[..., Iterable[bytes]]] = {
    "/seed": lambda environ, start_response: (request_session(environ).session.data.update(cart=["book"]),
                                              text(start_response, "200 OK"))[1],
    "/streaming": streaming, "/reads-only": streaming_reads_only, "/loads-late": streaming_loads_late,
    "/login-late": streaming_login_late, "/write": write_then_change, "/list": list_response,
}


class ClosingClient(Client):
    """Buffers every response, so the server side closes the body as a real server does."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def late_client(manager: SessionManager) -> Client:
    return ClosingClient(SessionMiddleware(app_for(LATE_ROUTES), manager))


def stored_data(store: CountingStore, manager: SessionManager) -> dict[str, Any]:
    (record,) = live_records(store)
    data = manager.serializer.loads(record.data)
    assert isinstance(data, dict)
    return data


def test_a_write_after_the_first_chunk_is_logged_naming_the_keys(late_client: Client, store: CountingStore,
                                                                 manager: SessionManager,
                                                                 warnings_of: Callable[[], list[str]]) -> None:
    late_client.get("/seed")
    assert late_client.get("/streaming").text == "firstsecond"
    assert stored_data(store, manager) == {"cart": ["book"], "before": 1}, "written before the first chunk: saved"
    (warning,) = warnings_of()
    assert "'cart', 'after'" in warning and "before the first chunk" in warning
    assert "'before'" not in warning


def test_reading_after_the_first_chunk_is_not_a_write(late_client: Client, warnings_of: Callable[[], list[str]],
                                                      store: CountingStore, manager: SessionManager) -> None:
    assert late_client.get("/reads-only").text == "firstbookNone"
    assert stored_data(store, manager) == {"cart": ["book"]}
    assert warnings_of() == []


@pytest.mark.parametrize("path,named", [
    ("/loads-late", "'late'"),                   # the session was first loaded after the commit
    ("/write", "'after'"),                       # an app that used write()
])
def test_other_late_writes_are_logged(late_client: Client, warnings_of: Callable[[], list[str]], path: str,
                                      named: str, store: CountingStore) -> None:
    late_client.get(path)
    (warning,) = warnings_of()
    assert named in warning
    assert store.writes() == 0


def test_a_login_after_the_first_chunk_is_logged_and_stores_nothing(late_client: Client, store: CountingStore,
                                                                    warnings_of: Callable[[], list[str]]) -> None:
    response = late_client.get("/login-late")
    assert set_cookies(response) == [] and store.get_all() == []
    logged = warnings_of()
    assert any("login() was called after the response started" in message for message in logged), logged
    assert any("the user id" in message for message in logged), logged


def test_a_list_response_is_never_reported(late_client: Client, warnings_of: Callable[[], list[str]]) -> None:
    late_client.get("/list")
    assert warnings_of() == []
