"""One small application for both adapters: the WSGI middleware and the Flask extension.

The same routes, with the same JSON answers, written once per adapter, so a
test can send one request sequence through both:

``/read`` (user and data), ``/set?k=v`` (writes), ``/login`` (a new session for
user 5), ``/logout``, ``/sign-out-others``, ``/devices`` (the user's session
handles), ``/all-sessions`` (every live handle), ``/purge`` and
``/locked-counter`` (a locked read-modify-write).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import flask
from flask import Flask, jsonify, request
from werkzeug.test import Client

from kitsession_wsgi import SessionManager, SessionStore
from kitsession_wsgi.flask import (
    KitSession,
    current_session,
    get_all_sessions,
    get_manager,
    get_sessions_for_user,
    remove_all_sessions_for_user,
)
from kitsession_wsgi.flask import session_lock as flask_session_lock
from kitsession_wsgi.flask import with_delete_session as flask_with_delete_session
from kitsession_wsgi.flask import with_new_session as flask_with_new_session
from kitsession_wsgi.session import Session
from kitsession_wsgi.wsgi import SessionMiddleware, session_lock, with_delete_session, with_new_session

USER = 5
SECRET = "adapter-apps-key"

StartResponse = Callable[..., Any]
Environ = dict[str, Any]


# -- the WSGI application ------------------------------------------------------------------


def _respond(start_response: StartResponse, body: Any) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]


def _wsgi_read(environ: Environ, start_response: StartResponse) -> list[bytes]:
    core = environ["kitsession"].session
    return _respond(start_response, {"user_id": core.user_id, "data": core.data})


def _wsgi_set(environ: Environ, start_response: StartResponse) -> list[bytes]:
    core = environ["kitsession"].session
    for key, values in parse_qs(environ.get("QUERY_STRING", "")).items():
        core.data[key] = values[-1]
    return _respond(start_response, {"user_id": core.user_id})


@with_new_session
def _wsgi_login(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    session.data = {"id": USER}
    return _respond(start_response, {"logged_in": True})


@with_delete_session
def _wsgi_logout(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    return _respond(start_response, {"logged_out": True})


def _wsgi_sign_out_others(environ: Environ, start_response: StartResponse) -> list[bytes]:
    requested = environ["kitsession"]
    removed = requested.manager.remove_all_sessions_for_user(USER, requested.session)
    return _respond(start_response, {"removed": removed})


def _wsgi_devices(environ: Environ, start_response: StartResponse) -> list[bytes]:
    sessions = environ["kitsession"].manager.get_sessions_for_user(USER)
    return _respond(start_response, {"handles": [s.handle for s in sessions]})


def _wsgi_all_sessions(environ: Environ, start_response: StartResponse) -> list[bytes]:
    sessions = environ["kitsession"].manager.get_all_sessions()
    return _respond(start_response, {"handles": [s.handle for s in sessions]})


def _wsgi_purge(environ: Environ, start_response: StartResponse) -> list[bytes]:
    return _respond(start_response, {"purged": environ["kitsession"].manager.purge_expired()})


@session_lock
def _wsgi_locked_counter(environ: Environ, start_response: StartResponse) -> list[bytes]:
    core = environ["kitsession"].session
    core.data["n"] = core.data.get("n", 0) + 1
    return _respond(start_response, {"n": core.data["n"]})


WSGI_ROUTES: dict[str, Callable[[Environ, StartResponse], Iterable[bytes]]] = {
    "/read": _wsgi_read,
    "/set": _wsgi_set,
    "/login": _wsgi_login,
    "/logout": _wsgi_logout,
    "/sign-out-others": _wsgi_sign_out_others,
    "/devices": _wsgi_devices,
    "/all-sessions": _wsgi_all_sessions,
    "/purge": _wsgi_purge,
    "/locked-counter": _wsgi_locked_counter,
}


def _wsgi_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return WSGI_ROUTES[environ["PATH_INFO"]](environ, start_response)


def wsgi_client(store: SessionStore, *, retry_after: int = 5, **options: Any) -> Client:
    """A test client of the WSGI app; ``options`` go to the :class:`SessionManager`."""
    manager = SessionManager(store, keys=SECRET, **options)
    return Client(SessionMiddleware(_wsgi_app, manager, retry_after=retry_after))


# -- the Flask application -----------------------------------------------------------------


def flask_client(store: SessionStore, *, retry_after: int = 5, **options: Any) -> Client:
    """A test client of the Flask app; ``options`` go to :class:`KitSession`."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)
    KitSession(app, store=store, retry_after=retry_after, **options)

    @app.route("/read")
    def read() -> Any:
        return jsonify(user_id=current_session.user_id, data=dict(flask.session))

    @app.route("/set")
    def set_values() -> Any:
        flask.session.update(request.args)
        return jsonify(user_id=current_session.user_id)

    @app.route("/login")
    @flask_with_new_session
    def login(session: Session) -> Any:
        session.data = {"id": USER}
        return jsonify(logged_in=True)

    @app.route("/logout")
    @flask_with_delete_session
    def logout(session: Session) -> Any:
        return jsonify(logged_out=True)

    @app.route("/sign-out-others")
    def sign_out_others() -> Any:
        return jsonify(removed=remove_all_sessions_for_user(USER, current_session))

    @app.route("/devices")
    def devices() -> Any:
        return jsonify(handles=[s.handle for s in get_sessions_for_user(USER)])

    @app.route("/all-sessions")
    def all_sessions() -> Any:
        return jsonify(handles=[s.handle for s in get_all_sessions()])

    @app.route("/purge")
    def purge() -> Any:
        return jsonify(purged=get_manager().purge_expired())

    @app.route("/locked-counter")
    @flask_session_lock
    def locked_counter() -> Any:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return jsonify(n=flask.session["n"])

    return app.test_client()


#: a test client factory per adapter: ``ADAPTERS[name](store, retry_after=..., **manager_options)``
ADAPTERS: dict[str, Callable[..., Client]] = {"wsgi": wsgi_client, "flask": flask_client}


def read(client: Client, cookie: str | None = None) -> dict[str, Any]:
    """``/read``: ``{"user_id": ..., "data": ...}``; with ``cookie`` (a ``Cookie`` header) as a
    browser holding only that cookie (the client's own cookie jar is left out)."""
    if cookie is not None:
        client = type(client)(client.application, use_cookies=False)
    response = client.get("/read", headers={"Cookie": cookie} if cookie is not None else {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json is not None
    return dict(response.json)


def handles(client: Client, path: str) -> list[str]:
    """The session handles a listing route (``/devices`` or ``/all-sessions``) answers."""
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json is not None
    return list(response.json["handles"])



