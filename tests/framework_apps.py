"""One small app, written the way each framework's users write it, for tests/test_frameworks.py.

Every app has the same routes and answers JSON:

* ``GET /me``: ``{"user_id", "count", "handle"}`` of the request's session;
* ``POST /login?user=N&status=S``: ``request_session(request).login(user_id=N)``, then answers
  status ``S`` (``status=raise`` raises instead);
* ``POST /logout?status=S``: ``request_session(request).logout()``, then answers ``S``;
* ``POST /count`` and ``POST /count-locked`` (the latter calls ``.lock()`` first): add 1 to
  ``count``;
* ``POST /sign-out-others``: ``.manager.remove_all_sessions_for_user(user_id, session)``;
* ``GET /stream``: a streamed body (the framework's own way) that sets ``early`` before its
  first chunk and ``late`` after it, which the middleware can no longer save.

None of them knows about the middleware: the tests wrap them in ``SessionMiddleware``
(or deliberately do not).  Exceptions the framework catches are recorded in
``FrameworkApp.errors`` through the framework's own error hook, so a test can see what a
view raised behind the framework's 500 page.

:func:`serve` runs one of them under waitress in a subprocess (tests/test_frameworks.py
starts it on a free port and stops it by its pid).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kitsession_wsgi import SessionManager
from kitsession_wsgi.wsgi import RequestSession, SessionMiddleware, request_session

FRAMEWORKS = ["bottle", "falcon", "pyramid", "django"]
KEY = "framework-test-key"


@dataclass
class FrameworkApp:
    """A framework's WSGI application (no session middleware) and what its error hook saw."""

    name: str
    wsgi: Any
    errors: list[BaseException] = field(default_factory=list)
    #: builds the framework's own request object around an environ
    make_request: Callable[[dict[str, Any]], Any] | None = None


def describe(sessions: RequestSession) -> dict[str, Any]:
    session = sessions.session
    return {"user_id": session.user_id, "count": session.data.get("count", 0), "handle": session.handle}


def count(sessions: RequestSession, *, locked: bool) -> dict[str, Any]:
    if locked:
        sessions.lock()
    data = sessions.session.data
    data["count"] = data.get("count", 0) + 1
    return {"count": data["count"]}


def sign_out_others(sessions: RequestSession) -> dict[str, Any]:
    session = sessions.session
    if session.user_id is None:
        return {"removed": 0}
    return {"removed": sessions.manager.remove_all_sessions_for_user(session.user_id, session)}


def stream(sessions: RequestSession) -> Iterator[bytes]:
    """Set ``early``, then a body whose code after the first chunk sets ``late``."""
    data = sessions.session.data
    data["early"] = True

    def body() -> Iterator[bytes]:
        yield b"first,"
        data["late"] = True
        yield b"second"

    return body()


def login(sessions: RequestSession, user: str, status: str) -> tuple[int, dict[str, Any]]:
    session = sessions.login(user_id=int(user), data={"name": f"user {user}"})
    if status == "raise":
        raise RuntimeError("login exploded")
    return int(status), {"user_id": session.user_id}


# -- Bottle ----------------------------------------------------------------------------------


def bottle_app() -> FrameworkApp:
    import bottle

    app = bottle.Bottle()
    built = FrameworkApp("bottle", app, make_request=bottle.BaseRequest)

    @app.error(500)
    def on_error(error: Any) -> str:
        built.errors.append(error.exception)
        return "server error"

    @app.get("/me")
    def me() -> Any:
        return describe(request_session(bottle.request))

    @app.post("/login")
    def log_in() -> Any:
        status, body = login(request_session(bottle.request), bottle.request.query["user"],
                             bottle.request.query.get("status", "200"))
        bottle.response.status = status
        return body

    @app.post("/logout")
    def log_out() -> Any:
        request_session(bottle.request).logout()
        bottle.response.status = int(bottle.request.query.get("status", "200"))
        return {}

    @app.post("/count")
    def counter() -> Any:
        return count(request_session(bottle.request), locked=False)

    @app.post("/count-locked")
    def counter_locked() -> Any:
        return count(request_session(bottle.request), locked=True)

    @app.post("/sign-out-others")
    def others() -> Any:
        return sign_out_others(request_session(bottle.request))

    @app.get("/stream")
    def streamed() -> Any:
        return stream(request_session(bottle.request))

    return built


# -- Falcon ----------------------------------------------------------------------------------


def falcon_app() -> FrameworkApp:
    import falcon

    app = falcon.App()
    built = FrameworkApp("falcon", app, make_request=falcon.Request)

    def on_kitsession_error(req: Any, resp: Any, ex: BaseException, params: Any) -> None:
        built.errors.append(ex)
        raise falcon.HTTPInternalServerError()

    app.add_error_handler(Exception, on_kitsession_error)

    class Me:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.media = describe(request_session(req))

    class Login:
        def on_post(self, req: Any, resp: Any) -> None:
            status, resp.media = login(request_session(req), req.get_param("user"), req.get_param("status") or "200")
            resp.status = status

    class Logout:
        def on_post(self, req: Any, resp: Any) -> None:
            request_session(req).logout()
            resp.status = int(req.get_param("status") or "200")
            resp.media = {}

    class Count:
        def __init__(self, locked: bool) -> None:
            self.locked = locked

        def on_post(self, req: Any, resp: Any) -> None:
            resp.media = count(request_session(req), locked=self.locked)

    class SignOutOthers:
        def on_post(self, req: Any, resp: Any) -> None:
            resp.media = sign_out_others(request_session(req))

    class Stream:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.stream = stream(request_session(req))

    app.add_route("/me", Me())
    app.add_route("/login", Login())
    app.add_route("/logout", Logout())
    app.add_route("/count", Count(locked=False))
    app.add_route("/count-locked", Count(locked=True))
    app.add_route("/sign-out-others", SignOutOthers())
    app.add_route("/stream", Stream())
    return built


# -- Pyramid ---------------------------------------------------------------------------------


def pyramid_app() -> FrameworkApp:
    from pyramid.config import Configurator
    from pyramid.request import Request

    built = FrameworkApp("pyramid", None, make_request=Request)

    def me(request: Any) -> Any:
        return describe(request_session(request))

    def log_in(request: Any) -> Any:
        status, body = login(request_session(request), request.GET["user"], request.GET.get("status", "200"))
        request.response.status_int = status
        return body

    def log_out(request: Any) -> Any:
        request_session(request).logout()
        request.response.status_int = int(request.GET.get("status", "200"))
        return {}

    def streamed(request: Any) -> Any:
        request.response.app_iter = stream(request_session(request))
        return request.response

    def on_error(exc: BaseException, request: Any) -> Any:
        built.errors.append(exc)
        request.response.status_int = 500
        return {"error": "server error"}

    with Configurator() as config:
        routes: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "me": ("GET", me),
            "login": ("POST", log_in),
            "logout": ("POST", log_out),
            "count": ("POST", lambda request: count(request_session(request), locked=False)),
            "count-locked": ("POST", lambda request: count(request_session(request), locked=True)),
            "sign-out-others": ("POST", lambda request: sign_out_others(request_session(request))),
        }
        for name, (method, view) in routes.items():
            config.add_route(name, f"/{name}", request_method=method)
            config.add_view(view, route_name=name, renderer="json")
        config.add_route("stream", "/stream", request_method="GET")
        config.add_view(streamed, route_name="stream")
        config.add_exception_view(on_error, context=Exception, renderer="json")
        built.wsgi = config.make_wsgi_app()
    return built


# -- Django (no contrib.sessions, no middleware of its own) ----------------------------------

DJANGO_ERRORS: list[BaseException] = []


def _django_json(body: dict[str, Any], status: int = 200) -> Any:
    from django.http import JsonResponse

    return JsonResponse(body, status=status)


def django_me(request: Any) -> Any:
    return _django_json(describe(request_session(request)))


def django_login(request: Any) -> Any:
    status, body = login(request_session(request), request.GET["user"], request.GET.get("status", "200"))
    return _django_json(body, status)


def django_logout(request: Any) -> Any:
    request_session(request).logout()
    return _django_json({}, int(request.GET.get("status", "200")))


def django_count(request: Any) -> Any:
    return _django_json(count(request_session(request), locked=False))


def django_count_locked(request: Any) -> Any:
    return _django_json(count(request_session(request), locked=True))


def django_sign_out_others(request: Any) -> Any:
    return _django_json(sign_out_others(request_session(request)))


def django_stream(request: Any) -> Any:
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(stream(request_session(request)))


def _django_urlpatterns() -> list[Any]:
    from django.urls import path

    return [
        path("me", django_me),
        path("login", django_login),
        path("logout", django_logout),
        path("count", django_count),
        path("count-locked", django_count_locked),
        path("sign-out-others", django_sign_out_others),
        path("stream", django_stream),
    ]


def __getattr__(name: str) -> Any:
    # ROOT_URLCONF is this module; its urlpatterns are built when Django first resolves a URL.
    if name == "urlpatterns":
        return _django_urlpatterns()
    raise AttributeError(name)


def django_app() -> FrameworkApp:
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIRequest
    from django.core.signals import got_request_exception
    from django.core.wsgi import get_wsgi_application

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="framework-test-only",
            ALLOWED_HOSTS=["localhost", "127.0.0.1"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            LOGGING_CONFIG=None,  # the 500s the tests provoke on purpose are not printed
        )
        django.setup()

        def record(sender: Any, **kwargs: Any) -> None:
            DJANGO_ERRORS.append(sys.exc_info()[1])  # type: ignore[arg-type]

        got_request_exception.connect(record, weak=False)
    DJANGO_ERRORS.clear()
    return FrameworkApp("django", get_wsgi_application(), DJANGO_ERRORS, make_request=WSGIRequest)


BUILDERS: dict[str, Callable[[], FrameworkApp]] = {
    "bottle": bottle_app,
    "falcon": falcon_app,
    "pyramid": pyramid_app,
    "django": django_app,
}


def wrapped(framework: str, manager: SessionManager) -> tuple[SessionMiddleware, FrameworkApp]:
    """The framework's app inside ``SessionMiddleware``, and the app itself."""
    built = BUILDERS[framework]()
    return SessionMiddleware(built.wsgi, manager), built


def serve(framework: str, store_url: str, port: int) -> None:  # pragma: no cover - runs in the subprocess
    import waitress

    from kitsession_wsgi.stores.urls import store_from_url

    store = store_from_url(store_url)
    if hasattr(store, "create_tables"):
        store.create_tables()
    middleware, _built = wrapped(framework, SessionManager(store, keys=[KEY], secure=False))
    waitress.serve(middleware, host="127.0.0.1", port=port, threads=8, _quiet=True)
