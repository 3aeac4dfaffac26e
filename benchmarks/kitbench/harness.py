"""One request, one scenario, its checks, and counting what it asks of its store.

Every request of the benchmark is a direct WSGI call, ``app(environ,
start_response)``, with the body joined and ``close()``d: :class:`Caller` does
that with a copy of an environ built once by werkzeug's ``EnvironBuilder``
(werkzeug's test ``Client`` costs 44-75 us per request by itself, so it is never
in a timed loop).

A :class:`Scenario` is one row of the report: zero-argument callables for its
"read" and "write" cells, a check per cell that raises :class:`CheckFailed` when
the last response or the store is wrong, and optional counters of store calls
and server commands.  :class:`CallCounter` counts the public method calls made on
an object it stands in for; :func:`count_probe` swaps one in for a single pass
that is not timed.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from werkzeug.test import EnvironBuilder

SECRET = "benchmark-secret-key-0123456789abcdef"
#: ~200 bytes of JSON, like a logged-in user's session
PAYLOAD: dict[str, Any] = {
    "user_id": 42,
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "roles": ["admin", "editor"],
    "csrf_token": "Zk3tq0xJm2C5b8s9dVQw1eRr7yTu4iOp6aSd0fGh2Jk",
    "theme": "dark",
    "locale": "en-GB",
    "n": 0,
}
#: what every ``/read`` view answers for a logged-in session
READ_BODY = b"ada@example.com"


def log(message: str) -> None:
    """Progress goes to stderr; stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


class Skip(Exception):
    """A scenario whose dependency is missing: reported as a row with the reason."""


class CheckFailed(AssertionError):
    """A correctness check failed: the run exits non-zero."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# -- one request ------------------------------------------------------------------------


class Caller:
    """Calls a WSGI app with a copy of one environ; keeps the last status, headers and body."""

    __slots__ = ("app", "environ", "status", "headers", "body")

    def __init__(self, app: Any, environ: dict[str, Any]) -> None:
        self.app = app
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def _write(self, data: bytes) -> None:  # pragma: no cover - nobody uses write()
        raise RuntimeError("write() is not supported")

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        self.headers = headers
        return self._write

    def __call__(self) -> None:
        body = self.app(self.environ.copy(), self.start_response)
        try:
            self.body = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]


def environ_for(path: str, cookie: str | None = None) -> dict[str, Any]:
    """A GET environ for ``path``, with ``cookie`` (``name=value``) as its Cookie header."""
    headers = [("Cookie", cookie)] if cookie else []
    builder = EnvironBuilder(path=path, method="GET", headers=headers)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def cookie_pair(set_cookie: str) -> str:
    """``name=value`` of a Set-Cookie header value, as a browser sends it back."""
    return set_cookie.split(";", 1)[0].strip()


def request(app: Any, path: str, cookie: str | None = None) -> Caller:
    caller = Caller(app, environ_for(path, cookie))
    caller()
    return caller


# -- scenarios --------------------------------------------------------------------------


class Scenario:
    """One row of the table: an app (or a bare callable) and its checks.

    ``calls`` maps a kind ("read", "write") to a zero-argument callable doing
    one request; ``checks`` maps the kind to a callable that raises
    :class:`CheckFailed` when the last request or the store is wrong.
    """

    def __init__(self, key: str, title: str, *, kind: str = "flask") -> None:
        self.key = key
        self.title = title
        self.kind = kind  # "flask", "wsgi" or "roundtrip"
        self.calls: dict[str, Callable[[], Any]] = {}
        self.checks: dict[str, Callable[[], None]] = {}
        self.count_calls: Callable[[], str] | None = None
        self.count_server: Callable[[], str] | None = None
        #: what count_calls / count_server measured: store calls and server commands per probe request
        self.store_calls: dict[str, int] = {}
        self.server_commands: dict[str, int] = {}
        self.cleanup: list[Callable[[], None]] = []
        self.notes = ""
        self.skip: str | None = None
        self.failure: str | None = None
        self.profile_target: Callable[[], None] | None = None
        # this library's scenarios: the store, the logged-in session's handle, the manager, the cookie
        self.store: Any = None
        self.handle = ""
        self.manager: Any = None
        self.cookie = ""


def flask_app(name: str, *, secret: bool, session_getter: Callable[[], Any] | None = None) -> tuple[Any, dict[str, int]]:
    """A Flask app with the four routes every Flask scenario shares.

    ``/plain`` never touches the session; ``/read`` reads one scalar; ``/write`` sets ``n`` to a new value every time;
    ``/login`` stores the payload.  ``session_getter`` replaces ``flask.session``
    (Beaker puts its session in the environ).  Returns the app and its counter
    (``state["n"]``, the value the last write stored).
    """
    from flask import Flask
    from flask import session as flask_session

    app = Flask(name)
    if secret:
        app.config["SECRET_KEY"] = SECRET
    state = {"n": 0}
    get = session_getter or (lambda: flask_session)

    @app.get("/read")
    def read() -> str:
        return str(get().get("email"))

    @app.get("/write")
    def write() -> str:
        state["n"] += 1
        session = get()
        session["n"] = state["n"]
        if hasattr(session, "save") and session_getter is not None:
            session.save()
        return str(state["n"])

    @app.get("/plain")
    def plain() -> str:
        # a static file or a health check: the view never touches the session
        return "ok"

    @app.get("/login")
    def login() -> str:
        session = get()
        session.update(PAYLOAD)
        if hasattr(session, "save") and session_getter is not None:
            session.save()
        return "ok"

    return app, state


def raw_session_app(flavour: str) -> Any:
    """A bare WSGI callable with /plain (no session), /read, /write and /login over Beaker's or this library's session.

    ``flavour`` is ``"beaker"`` (``environ["beaker.session"]``) or ``"kit"``
    (``environ["kitsession"]``, this library's middleware).  The counter is
    ``app.state``.
    """
    state = {"n": 0}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/plain":  # never touches the session
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        if flavour == "beaker":
            session = environ["beaker.session"]
            data = session
        else:
            session = environ["kitsession"].session
            data = session.data
        if path == "/read":
            body = str(data.get("email")).encode()
        elif path == "/write":
            state["n"] += 1
            data["n"] = state["n"]
            if flavour == "beaker":
                session.save()
            body = str(state["n"]).encode()
        else:
            data.update(PAYLOAD)
            if flavour == "beaker":
                session.save()
            body = b"ok"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    app.state = state  # type: ignore[attr-defined]
    return app


def login_cookie(app: Any) -> str:
    """Log in once (``/login``) and return the one cookie it set, as ``name=value``."""
    login = request(app, "/login")
    check(login.status.startswith("200"), f"login answered {login.status}")
    cookies = login.set_cookies()
    check(len(cookies) == 1, f"login set {len(cookies)} cookies")
    return cookie_pair(cookies[0])


def check_written(writer: Caller, state: dict[str, int], stored: Callable[[], dict[str, Any] | None]) -> None:
    """The write answered the new value and the store holds exactly it, other keys intact."""
    check(writer.status.startswith("200"), f"write answered {writer.status}")
    check(writer.body == str(state["n"]).encode(), f"write returned {writer.body!r}, expected {state['n']}")
    data = stored()
    check(data is not None, "the store lost the session")
    assert data is not None
    check(data.get("n") == state["n"], f"store holds n={data.get('n')!r}, expected exactly {state['n']}")
    check(data.get("email") == PAYLOAD["email"], "the write lost the other keys")


def attach_flask_cells(scenario: Scenario, app: Any, state: dict[str, int],
                       stored: Callable[[], dict[str, Any] | None], *, write: bool = True) -> str:
    """Log in once, then add read and write cells whose checks read the store back; the cookie."""
    cookie = login_cookie(app)
    read = Caller(app, environ_for("/read", cookie))
    scenario.calls["read"] = read

    def check_read() -> None:
        check(read.status.startswith("200"), f"read answered {read.status}")
        check(read.body == READ_BODY, f"read returned {read.body[:60]!r}")
        data = stored()
        check(data is not None and data.get("email") == PAYLOAD["email"], f"store holds {data!r} after reads")

    scenario.checks["read"] = check_read
    if write:
        writer = Caller(app, environ_for("/write", cookie))
        scenario.calls["write"] = writer
        scenario.checks["write"] = lambda: check_written(writer, state, stored)
    return cookie


# -- counting store calls -----------------------------------------------------------------


class CallCounter:
    """Counts calls of an object's public methods; everything else passes through."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.counts: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        counts = self.counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return value(*args, **kwargs)

        return counted


def describe_counts(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    inner = ", ".join(f"{name}" if n == 1 else f"{name}x{n}" for name, n in sorted(counts.items()))
    return f"{total} ({inner})"


def count_probe(owner: Any, attribute: str, probes: list[tuple[str, Caller]]) -> dict[str, Counter[str]]:
    """Run each probe once with ``owner.<attribute>`` counted; return the counts per probe.

    The counter stands in only for the counted request (a warm-up request runs
    first, outside the count, so caches and connections are ready), and the
    original object is put back after each probe.
    """
    original = getattr(owner, attribute)
    counter = CallCounter(original)
    result: dict[str, Counter[str]] = {}
    for label, caller in probes:
        caller()
        counter.counts.clear()
        setattr(owner, attribute, counter)
        try:
            caller()
        finally:
            setattr(owner, attribute, original)
        result[label] = Counter(counter.counts)
    return result


def describe_probe(counts: dict[str, Counter[str]]) -> str:
    return "; ".join(f"{label} {describe_counts(c)}" for label, c in counts.items())
