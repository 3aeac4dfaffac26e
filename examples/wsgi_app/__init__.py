"""kitsession in plain WSGI: a visit counter, log in, log out (no passwords or CSRF: see flask_app)."""

from __future__ import annotations

import html
import os
import secrets
import typing as t
from urllib.parse import parse_qs

from kitsession_wsgi import InvalidUserId, MemoryStore, Session, SessionManager
from kitsession_wsgi.wsgi import SessionMiddleware, with_delete_session, with_new_session

Environ = dict[str, t.Any]
StartResponse = t.Callable[..., t.Any]
PAGE = """<!doctype html><title>kitsession WSGI</title><p>{greeting} Visits this session: <b>{visits}</b></p>
<form method=post action=/login><input name=name placeholder="Your name"> <button>Log in</button></form>
<form method=post action=/logout><button>Log out</button></form>"""


def respond(start_response: StartResponse, status: str, body: str = "", location: str | None = None) -> list[bytes]:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body.encode())))]
    start_response(status, headers + ([("Location", location)] if location else []))
    return [body.encode()]


@with_new_session
def login(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    """A fresh session (new id; the old one is deleted) holding the user's name."""
    form = parse_qs(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode())
    try:
        session.data = {"user_id": form.get("name", [""])[0].strip()[:40] or "guest", "visits": 0}
    except InvalidUserId:  # a control character in the name: the client's mistake, a 400 (nothing is stored)
        return respond(start_response, "400 Bad Request", "That name cannot be used.")
    return respond(start_response, "303 See Other", location="/")


@with_delete_session
def logout(environ: Environ, start_response: StartResponse, session: Session) -> list[bytes]:
    """The session leaves the store and the cookie is cleared."""
    return respond(start_response, "303 See Other", location="/")


def home(environ: Environ, start_response: StartResponse) -> list[bytes]:
    session: Session = environ["kitsession"].session
    session.data["visits"] = session.data.get("visits", 0) + 1
    who = "stranger" if session.user_id is None else html.escape(str(session.user_id))
    return respond(start_response, "200 OK", PAGE.format(greeting=f"Hello, {who}.", visits=session.data["visits"]))


ROUTES: dict[tuple[str, str], t.Callable[..., t.Iterable[bytes]]] = {
    ("POST", "/login"): login, ("POST", "/logout"): logout, ("GET", "/"): home}


def router(environ: Environ, start_response: StartResponse) -> t.Iterable[bytes]:
    view = ROUTES.get((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")))
    return view(environ, start_response) if view else respond(start_response, "404 Not Found", "Not found")


manager = SessionManager(MemoryStore(), keys=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
                         secure=False, idle_timeout=3600)  # secure=False: plain http on localhost
app = SessionMiddleware(router, manager)
