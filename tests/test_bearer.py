"""The session in an ``Authorization: Bearer`` header, through BOTH adapters.

* The bad-input matrix of ``tests/test_bad_input.py``, for the header: never a
  500, no store call for a token that does not verify, never an adopted id, and
  never a ``Set-Cookie`` on a request that used the Bearer scheme.
* Header only, cookie only, both (the header decides), key rotation re-sign
  (``Session-Token``), revocation from another device, logout, JSON login.

Tokens are built here independently of the library (``node_token_value``: the id and
an HMAC under a key derived for tokens, so a cookie's value is never a token).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import flask
import pytest
from werkzeug.test import Client

from kitsession_wsgi import ConfigurationError, MemoryStore, SessionManager, SessionRecord, session_key
from kitsession_wsgi.cookies import encode_cookie_value
from kitsession_wsgi.flask import KitSession, current_session, session_token, with_delete_session
from kitsession_wsgi.flask import with_new_session as flask_with_new_session
from kitsession_wsgi.wsgi import SessionMiddleware
from kitsession_wsgi.wsgi import with_delete_session as wsgi_with_delete_session
from kitsession_wsgi.wsgi import with_new_session as wsgi_with_new_session

from session_helpers import (CountingStore, SetCookie, node_signed_value, node_token_value,
                             parse_set_cookie)

KEY = "the-current-key"
OLD_KEY = "the-previous-key"
REMOVED_KEY = "a-key-that-was-rotated-out"
MAX_AGE = 3600
IDLE = 600
NAME = "session"


def token_for(session_id: str, key: str = KEY) -> str:
    """A bearer token as the docs define it (``node_token_value``)."""
    return node_token_value(key, session_id)


# -- one app, two adapters -------------------------------------------------------------


def _describe(session: Any) -> dict[str, Any]:
    return {"new": session.is_new, "data": dict(session.data), "user_id": session.user_id,
            "transport": session.transport}


def build_wsgi(store: CountingStore, clock: Callable[[], float], keys: list[str],
               **options: Any) -> tuple[Any, SessionManager]:
    manager = SessionManager(store, keys=keys, max_age=MAX_AGE, idle_timeout=IDLE, clock=clock, secure=False,
                             bearer=True, **options)

    def answer(start_response: Callable[..., Any], body: dict[str, Any], status: str = "200 OK") -> list[bytes]:
        raw = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
        return [raw]

    @wsgi_with_new_session
    def login(environ: dict[str, Any], start_response: Callable[..., Any], session: Any) -> list[bytes]:
        user = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))["user"]
        session.data = {"id": user}
        if environ["PATH_INFO"] == "/login-cookie":
            return answer(start_response, {})
        return answer(start_response, {"token": manager.session_token(session)})

    @wsgi_with_delete_session
    def logout(environ: dict[str, Any], start_response: Callable[..., Any], session: Any) -> list[bytes]:
        return answer(start_response, {})

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path in ("/login", "/login-cookie"):
            return login(environ, start_response)
        if path == "/logout":
            return logout(environ, start_response)
        session = environ["kitsession"].session
        if path == "/write":
            session.data["written"] = True
        elif path == "/revoke-others":
            manager.remove_all_sessions_for_user(session.user_id, session)
        return answer(start_response, _describe(session))

    return SessionMiddleware(app, manager), manager


def build_flask(store: CountingStore, clock: Callable[[], float], keys: list[str]) -> tuple[Any, SessionManager]:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=keys[0], SECRET_KEY_FALLBACKS=keys[1:], KITSESSION_BEARER=True)
    KitSession(app, store=store, max_age=MAX_AGE, idle_timeout=IDLE, clock=clock, secure=False)

    @app.get("/read")
    def read() -> Any:
        return _describe(current_session)

    @app.post("/write")
    def write() -> Any:
        flask.session["written"] = True
        return _describe(current_session)

    @app.post("/login")
    @app.post("/login-cookie", endpoint="login_cookie")
    @flask_with_new_session
    def login(session: Any) -> Any:
        session.data = {"id": flask.request.get_json()["user"]}
        if flask.request.path == "/login-cookie":
            return {}
        return {"token": session_token(session)}

    @app.post("/logout")
    @with_delete_session
    def logout(session: Any) -> Any:
        return {}

    @app.post("/revoke-others")
    def revoke_others() -> Any:
        app.extensions["kitsession"].manager.remove_all_sessions_for_user(current_session.user_id, current_session)
        return _describe(current_session)

    return app, app.extensions["kitsession"].manager


ADAPTERS = {"wsgi-middleware": build_wsgi, "flask": build_flask}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    cookies: list[SetCookie]
    vary: str
    token: str | None
    cache_control: str | None
    error: str = ""


@dataclass
class World:
    """An app with ``bearer=True``, its manager and counting store, and one live stored session."""

    app: Any
    manager: SessionManager
    store: CountingStore
    clock: Any
    valid_id: str = ""
    other_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> str:
        return token_for(self.valid_id)

    def mac(self, session_id: str, key: str = KEY) -> str:
        return token_for(session_id, key).rsplit(".", 1)[1]

    def stored_id(self, data: dict[str, Any], user_id: Any = None) -> str:
        session = self.manager.create_session(user_id=user_id, data=data)
        assert session.id is not None
        return session.id

    def cookie(self, session_id: str) -> str:
        return f"{NAME}={encode_cookie_value(node_signed_value(KEY, session_id))}"

    def request(self, path: str, authorization: list[str] | str | None = None, cookie: str | None = None,
                json_body: Any = None) -> Reply:
        client = Client(self.app, use_cookies=False)
        method = "GET" if path == "/read" else "POST"
        environ: dict[str, Any] = {}
        headers: list[tuple[str, str]] = []
        if isinstance(authorization, str):
            environ["HTTP_AUTHORIZATION"] = authorization  # exactly as a server puts it in the environ
        elif authorization is not None:
            headers += [("Authorization", value) for value in authorization]
        if cookie is not None:
            environ["HTTP_COOKIE"] = cookie
        try:
            response = client.open(path, method=method, environ_overrides=environ, headers=headers,
                                   json=json_body)
        except Exception as exc:  # noqa: BLE001 - a WSGI server turns this into a 500
            return Reply(500, {}, [], "", None, None, f"{type(exc).__name__}: {exc}")
        cookies = [parse_set_cookie(value) for value in response.headers.getlist("Set-Cookie")]
        return Reply(response.status_code, response.get_json(silent=True) or {}, cookies,
                     ", ".join(response.headers.getlist("Vary")), response.headers.get("Session-Token"),
                     response.headers.get("Cache-Control"), response.get_data(as_text=True)[:300])


def make_world(adapter: str, clock: Any, keys: list[str] | None = None) -> World:
    store = CountingStore()
    app, manager = ADAPTERS[adapter](store, clock, keys or [KEY, OLD_KEY])
    world = World(app, manager, store, clock)
    world.data = {"user": "alice", "n": 1}
    world.valid_id = world.stored_id(world.data)
    world.other_id = world.stored_id({"user": "bob"})
    store.reset()
    return world


@pytest.fixture(params=list(ADAPTERS))
def world(request: pytest.FixtureRequest, clock: Any) -> Iterator[World]:
    yield make_world(request.param, clock)


def unsign_token(world: World, token: str) -> str:
    session_id = token.rsplit(".", 1)[0]
    assert token == token_for(session_id), token
    return session_id


# -- the matrix -----------------------------------------------------------------------


@dataclass
class Case:
    """What a request presents in ``Authorization``, and what must happen.

    ``outcome``:
    * ``other-scheme``: not the Bearer scheme: the request is left to its (absent) cookie;
    * ``bad``: Bearer, but the token does not verify: anonymous, NO store call, no cookie;
    * ``stale``: verifies but leads to no live session: anonymous, never adopted, no cookie;
    * ``valid``: the live session is served.
    """

    authorization: list[str] | str | None
    outcome: str
    presented: list[str] = field(default_factory=list)


def _bearer(template: str, outcome: str) -> Callable[[World], Case]:
    def build(world: World) -> Case:
        text = template.format(valid=world.valid, id=world.valid_id, mac=world.mac(world.valid_id),
                               other_mac=world.mac(world.other_id))
        return Case(text, outcome, [world.valid_id])

    return build


def _url_safe_mac(world: World) -> Case:
    while True:
        session_id = secrets.token_urlsafe(32)
        mac = world.mac(session_id)
        if "+" in mac or "/" in mac:
            return Case(f"Bearer {session_id}.{mac.replace('+', '-').replace('/', '_')}", "bad", [session_id])


def _stored_then(change: Callable[[World, str], None]) -> Callable[[World], Case]:
    def build(world: World) -> Case:
        session_id = world.stored_id({"user": "carol"})
        change(world, session_id)
        return Case(f"Bearer {token_for(session_id)}", "stale", [session_id])

    return build


def _destroy(world: World, session_id: str) -> None:
    session = world.manager.get_session(session_id)
    assert session is not None and world.manager.remove_session(session)


def _planted(text: str) -> Callable[[World], Case]:
    def build(world: World) -> Case:
        session_id = secrets.token_urlsafe(32)
        now = world.clock()
        assert world.store.create(SessionRecord(key=session_key(session_id), data=text, user_id=None,
                                                created_at=now, updated_at=now, expires_at=now + MAX_AGE))
        return Case(f"Bearer {token_for(session_id)}", "stale", [session_id])

    return build


CASES: dict[str, Callable[[World], Case]] = {
    # -- not the Bearer scheme: left to the cookie (there is none here)
    "no-authorization-header": lambda w: Case(None, "other-scheme"),
    "empty-authorization-header": lambda w: Case("", "other-scheme"),
    "basic-scheme": lambda w: Case("Basic dXNlcjpwYXNzd29yZA==", "other-scheme"),
    "basic-scheme-carrying-a-valid-token": _bearer("Basic {valid}", "other-scheme"),
    "no-space-after-bearer": _bearer("Bearer{valid}", "other-scheme"),
    "tab-after-bearer": _bearer("Bearer\t{valid}", "other-scheme"),
    "scheme-with-a-suffix": _bearer("Bearers {valid}", "other-scheme"),
    "token-without-scheme": _bearer("{valid}", "other-scheme"),
    # -- the scheme is case-insensitive (RFC 7235 section 2.1), documented
    "bearer-lower-case": _bearer("bearer {valid}", "valid"),
    "bearer-upper-case": _bearer("BEARER {valid}", "valid"),
    "bearer-mixed-case-forged": _bearer("bEaReR {id}." + "A" * 43, "bad"),
    "two-spaces-and-surrounding-whitespace": _bearer("  Bearer  {valid} ", "valid"),
    # -- Bearer, but no usable token
    "bearer-without-token": lambda w: Case("Bearer", "bad"),
    "bearer-space-only": lambda w: Case("Bearer ", "bad"),
    "two-tokens": _bearer("Bearer {valid} {valid}", "bad"),
    "two-authorization-headers": lambda w: Case([f"Bearer {w.valid}", f"Bearer {w.valid}"], "bad", [w.valid_id]),
    "comma-joined-credentials": _bearer("Bearer {valid}, Bearer {valid}", "bad"),
    "64KB-token": lambda w: Case("Bearer " + "A" * 65536, "bad"),
    "64KB-signed-looking-token": lambda w: Case("Bearer " + "A" * 65536 + "." + "B" * 43, "bad"),
    "valid-token-then-64KB": _bearer("Bearer {valid}" + "A" * 65536, "bad"),
    "non-ascii-token": _bearer("Bearer {id}.\xe9\xe9", "bad"),
    "nul-inside-valid": lambda w: Case(f"Bearer {w.valid[:20]}\x00{w.valid[20:]}", "bad", [w.valid_id]),
    "control-character-after-valid": _bearer("Bearer {valid}\x01", "bad"),
    "cookie-form-with-prefix": _bearer("Bearer s:{valid}", "bad"),
    "cookie-form-url-encoded": _bearer("Bearer s%3A{valid}", "bad"),
    "unsigned-stored-id": _bearer("Bearer {id}", "bad"),
    "empty-signature": _bearer("Bearer {id}.", "bad"),
    "truncated-signature": lambda w: _bearer("Bearer {id}." + w.mac(w.valid_id)[:-1], "bad")(w),
    "padded-signature": _bearer("Bearer {valid}=", "bad"),
    "case-flipped-signature": lambda w: _bearer("Bearer {id}." + w.mac(w.valid_id).swapcase(), "bad")(w),
    "junk-suffixed-after-dot": _bearer("Bearer {valid}.x", "bad"),
    "another-sessions-signature": _bearer("Bearer {id}.{other_mac}", "bad"),
    "url-safe-alphabet-signature": _url_safe_mac,
    "id-shortened-by-one": lambda w: Case(f"Bearer {w.valid_id[:-1]}.{w.mac(w.valid_id)}", "bad", [w.valid_id]),
    "signed-with-a-removed-key": lambda w: Case(f"Bearer {token_for(w.valid_id, REMOVED_KEY)}", "bad",
                                                [w.valid_id]),
    # -- verified, but no live session behind it
    "unknown-id": lambda w: (lambda i: Case(f"Bearer {token_for(i)}", "stale", [i]))(secrets.token_urlsafe(32)),
    "attacker-chosen-id": lambda w: Case(f"Bearer {token_for('attacker-chosen')}", "stale", ["attacker-chosen"]),
    "expired-id": _stored_then(lambda w, i: w.clock.advance(MAX_AGE + 1)),
    "idle-expired-id": _stored_then(lambda w, i: w.clock.advance(IDLE + 1)),
    "destroyed-id": _stored_then(_destroy),
    "corrupt-stored-json": _planted("{not json"),
    "stored-json-array": _planted("[1, 2]"),
}


def _check(world: World, case: Case) -> None:
    presented_keys = {session_key(i) for i in case.presented}
    before = {k: world.store.get(k) for k in presented_keys}
    world.store.reset()

    read = world.request("/read", case.authorization)
    assert read.status == 200, f"read answered {read.status}: {read.error}"
    assert "Authorization" in read.vary, "the header was consulted"
    if case.outcome == "valid":
        assert read.body == {"new": False, "data": world.data, "user_id": None, "transport": "header"}
        assert read.cookies == [] and read.token is None
        return
    assert read.body == {"new": True, "data": {}, "user_id": None, "transport": None}, read.body
    assert read.cookies == [], "nothing to clear (the cookie is not the header's), nothing to set"
    assert world.store.writes() == 0 or case.outcome == "stale", world.store.calls
    gets_after_read = world.store.calls["get"]

    write = world.request("/write", case.authorization)
    gets_after_write = world.store.calls["get"]
    assert write.status == 200, f"write answered {write.status}: {write.error}"
    assert write.body["new"] is True and write.body["data"] == {"written": True}
    if case.outcome == "other-scheme":
        (new_cookie,) = write.cookies
        signer = world.manager.signer
        assert signer is not None
        unsigned = signer.unsign(new_cookie.value)
        assert unsigned is not None
        new_id = unsigned.session_id
        assert write.token is None
    else:
        assert write.cookies == [], "a Bearer request never gets a Set-Cookie"
        assert write.token is not None and write.cache_control == "no-store"
        new_id = unsign_token(world, write.token)
    assert new_id not in case.presented, "a presented id was adopted"
    assert new_id not in (world.valid_id, world.other_id)
    assert world.store.get(session_key(new_id)) is not None

    if case.outcome in ("bad", "other-scheme"):
        assert gets_after_read == 0 and gets_after_write == 0, (
            f"a token that does not verify cost store calls: {dict(world.store.calls)}"
        )
    for key in presented_keys:
        after = world.store.get(key)
        if case.outcome == "stale":
            assert after is None, "a stale record must not be served, kept for later, or written"
        else:
            assert after == before[key], "a presented session was changed by a request that did not own it"


@pytest.mark.parametrize("case_name", list(CASES))
def test_bad_token_is_never_a_500_never_costs_a_store_call_and_is_never_adopted(world: World,
                                                                                 case_name: str) -> None:
    _check(world, CASES[case_name](world))


def test_a_forged_token_never_reaches_the_store_even_when_repeated(world: World) -> None:
    forged = f"Bearer {world.valid_id}.{'A' * 43}"
    for _ in range(5):
        assert world.request("/read", forged).body["new"] is True
    assert world.store.calls["get"] == 0


# -- transports and precedence ---------------------------------------------------------


def test_header_only(world: World) -> None:
    reply = world.request("/write", f"Bearer {world.valid}")
    assert reply.body == {"new": False, "data": {**world.data, "written": True}, "user_id": None,
                          "transport": "header"}
    assert reply.cookies == [] and reply.token is None
    assert "Authorization" in reply.vary and "Cookie" in reply.vary
    record = world.store.get(session_key(world.valid_id))
    assert record is not None and json.loads(record.data)["written"] is True


def test_cookie_only_is_untouched_by_the_option(world: World) -> None:
    reply = world.request("/write", cookie=world.cookie(world.valid_id))
    assert reply.body["transport"] == "cookie" and reply.body["data"]["written"] is True
    assert reply.token is None
    assert "Authorization" in reply.vary, "with bearer=True the header is read on every request"


def test_with_both_the_bearer_header_decides_and_the_cookie_is_neither_read_nor_touched(world: World) -> None:
    cookie = world.cookie(world.other_id)
    reply = world.request("/write", f"Bearer {world.valid}", cookie=cookie)
    assert reply.body["transport"] == "header" and reply.body["data"]["user"] == "alice"
    assert reply.cookies == []
    other = world.store.get(session_key(world.other_id))
    assert other is not None and json.loads(other.data) == {"user": "bob"}

    # A Bearer header that does not verify does not fall back to the cookie, and clears nothing.
    world.store.reset()
    reply = world.request("/read", f"Bearer {world.other_id}.{'A' * 43}", cookie=cookie)
    assert reply.body["new"] is True and reply.cookies == []
    assert world.store.calls["get"] == 0

    # Any other scheme (HTTP Basic in front of a staging site) leaves the request to its cookie.
    reply = world.request("/read", "Basic dXNlcjpwYXNzd29yZA==", cookie=cookie)
    assert reply.body["transport"] == "cookie" and reply.body["data"] == {"user": "bob"}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_a_token_signed_with_the_previous_key_is_re_signed_in_session_token(adapter: str, clock: Any) -> None:
    world = make_world(adapter, clock, keys=[KEY, OLD_KEY])
    old_token = token_for(world.valid_id, OLD_KEY)
    reply = world.request("/read", f"Bearer {old_token}")
    assert reply.body["new"] is False and reply.body["data"] == world.data
    assert reply.cookies == []
    assert reply.token == token_for(world.valid_id, KEY)
    assert reply.cache_control == "no-store"
    again = world.request("/read", f"Bearer {reply.token}")
    assert again.body["new"] is False and again.token is None
    # The old token goes on working until the key is removed from the rotation.
    assert world.request("/read", f"Bearer {old_token}").token == reply.token


def test_login_over_the_header_transport_gives_a_token_and_no_cookie(world: World) -> None:
    login = world.request("/login", json_body={"user": 7})
    assert login.status == 200 and login.cookies == []
    token = login.body["token"]
    assert login.token == token, "the response header names the new token too"
    me = world.request("/read", f"Bearer {token}")
    assert me.body["user_id"] == 7 and me.body["transport"] == "header"


def test_a_json_login_from_a_browser_leaves_its_cookie_session_alone(world: World) -> None:
    cookie_login = world.request("/login-cookie", json_body={"user": 7})
    (cookie,) = cookie_login.cookies
    api_login = world.request("/login", json_body={"user": 7}, cookie=cookie.request_header)
    assert api_login.cookies == []
    browser = world.request("/read", cookie=cookie.request_header)
    assert browser.body["user_id"] == 7 and browser.body["transport"] == "cookie"
    api = world.request("/read", f"Bearer {api_login.body['token']}")
    assert api.body["user_id"] == 7 and api.body["transport"] == "header"
    assert len(world.manager.get_sessions_for_user(7)) == 2


def test_a_login_with_a_token_replaces_that_token(world: World) -> None:
    first = world.request("/login", json_body={"user": 7}).body["token"]
    second = world.request("/login", f"Bearer {first}", json_body={"user": 7})
    assert second.cookies == []
    assert world.request("/read", f"Bearer {first}").body["new"] is True
    assert world.request("/read", f"Bearer {second.body['token']}").body["user_id"] == 7


def test_revoked_from_another_device_the_next_api_call_is_anonymous(world: World) -> None:
    token = world.request("/login", json_body={"user": 7}).body["token"]
    (cookie,) = world.request("/login-cookie", json_body={"user": 7}).cookies
    assert world.request("/read", f"Bearer {token}").body["user_id"] == 7
    world.request("/revoke-others", cookie=cookie.request_header)
    reply = world.request("/read", f"Bearer {token}")
    assert reply.body == {"new": True, "data": {}, "user_id": None, "transport": None}
    assert reply.cookies == []
    assert world.request("/read", cookie=cookie.request_header).body["user_id"] == 7


def test_logout_with_the_header_removes_the_session_and_sets_no_cookie(world: World) -> None:
    token = world.request("/login", json_body={"user": 7}).body["token"]
    handle = session_key(unsign_token(world, token))
    reply = world.request("/logout", f"Bearer {token}")
    assert reply.status == 200 and reply.cookies == [] and reply.token is None
    assert world.store.get(handle) is None
    assert world.request("/read", f"Bearer {token}").body["new"] is True


def test_neither_header_nor_cookie_costs_no_store_call_and_sets_nothing(world: World) -> None:
    reply = world.request("/read")
    assert reply.body["new"] is True and reply.cookies == [] and reply.token is None
    assert sum(world.store.calls.values()) == 0


# -- the core API ----------------------------------------------------------------------


def test_bearer_without_keys_is_a_configuration_error_naming_the_option() -> None:
    with pytest.raises(ConfigurationError) as error:
        SessionManager(MemoryStore(), bearer=True)
    assert error.value.option == "bearer"
    with pytest.raises(ConfigurationError) as error:
        SessionManager(MemoryStore(), keys=["k"], bearer="yes")  # type: ignore[arg-type]
    assert error.value.option == "bearer"


def test_flask_kitsession_bearer_config_key() -> None:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="k", KITSESSION_BEARER=True)
    KitSession(app)
    assert app.extensions["kitsession"].manager.bearer is True
    bare = flask.Flask(__name__)
    bare.config.update(KITSESSION_BEARER=True)
    with pytest.raises(ConfigurationError) as error:
        KitSession(bare)
    assert error.value.option == "bearer"


def test_without_the_option_the_header_is_ignored_and_vary_does_not_name_it(clock: Any) -> None:
    store = CountingStore()
    manager = SessionManager(store, keys=[KEY], secure=False, clock=clock)
    session = manager.create_session(data={"n": 1})
    assert session.id is not None
    store.reset()
    read = manager.initialize_session({"Authorization": f"Bearer {token_for(session.id)}"})
    assert read.is_new and store.calls["get"] == 0
    assert manager.bearer_headers(read) == []
    with pytest.raises(ConfigurationError):
        manager.session_token(session)


def test_session_token_refuses_what_it_cannot_or_must_not_hand_out(clock: Any) -> None:
    store = CountingStore()
    manager = SessionManager(store, keys=[KEY], secure=False, clock=clock, bearer=True)
    with pytest.raises(ValueError, match="empty"):
        manager.session_token(manager.new_session())
    stored = manager.create_session(user_id=3)
    assert stored.id is not None
    cookie = parse_set_cookie(manager.set_session_cookie(stored)).request_header
    from_cookie = manager.initialize_session({"Cookie": cookie})
    assert from_cookie.transport == "cookie"
    with pytest.raises(ValueError, match="HttpOnly"):
        manager.session_token(from_cookie)
    (listed,) = manager.get_sessions_for_user(3)
    with pytest.raises(ValueError, match="listed"):
        manager.session_token(listed)
    manager.remove_session(stored)
    with pytest.raises(ValueError, match="removed"):
        manager.session_token(stored)


def test_a_token_round_trips_and_the_header_forms_are_all_read(clock: Any) -> None:
    from werkzeug.datastructures import Headers

    manager = SessionManager(CountingStore(), keys=[KEY], secure=False, clock=clock, bearer=True)
    session = manager.create_session(user_id=1)
    token = manager.session_token(session)
    assert session.id is not None and token == token_for(session.id)
    for source in ({"Authorization": f"Bearer {token}"}, {"authorization": f"Bearer {token}"},
                   {"HTTP_AUTHORIZATION": f"Bearer {token}", "wsgi.version": (1, 0)},
                   Headers([("Authorization", f"Bearer {token}")]),
                   {"Authorization": f"Bearer {token}".encode("latin-1")}):
        read = manager.initialize_session(source)
        assert read.user_id == 1 and read.transport == "header", source


def test_a_rolling_refresh_keeps_the_token_and_sends_neither_cookie_nor_session_token(clock: Any) -> None:
    store = CountingStore()
    manager = SessionManager(store, keys=[KEY], secure=False, clock=clock, bearer=True, rolling=True,
                             idle_timeout=IDLE, max_age=MAX_AGE)
    session = manager.create_session(user_id=1)
    token = manager.session_token(session)
    clock.advance(IDLE / 2)
    read = manager.initialize_session({"Authorization": f"Bearer {token}"})
    store.reset()
    assert manager.commit(read) is None
    assert store.calls["touch"] == 1, "the idle deadline moved"
    assert manager.bearer_headers(read) == [("Vary", "Authorization")]
    # the same token goes on working past the first idle deadline
    clock.advance(IDLE / 2 + 1)
    assert manager.initialize_session({"Authorization": f"Bearer {token}"}).user_id == 1


def test_regenerate_on_a_header_session_hands_out_the_new_token(clock: Any) -> None:
    manager = SessionManager(CountingStore(), keys=[KEY], secure=False, clock=clock, bearer=True)
    token = manager.session_token(manager.create_session(user_id=1))
    read = manager.initialize_session({"Authorization": f"Bearer {token}"})
    manager.regenerate(read)
    assert manager.commit(read) is None
    headers = dict(manager.bearer_headers(read))
    assert read.id is not None and headers["Session-Token"] == token_for(read.id) != token
    assert manager.initialize_session({"Authorization": f"Bearer {token}"}).is_new
    assert manager.initialize_session({"Authorization": f"Bearer {headers['Session-Token']}"}).user_id == 1


class LockCountingStore(CountingStore):
    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        self.calls["acquire_lock"] += 1
        return super().acquire_lock(key, token, ttl)

    def release_lock(self, key: str, token: str) -> None:
        self.calls["release_lock"] += 1
        super().release_lock(key, token)


@pytest.mark.parametrize("case_name", list(CASES))
def test_with_locks_a_bad_token_takes_no_lock_and_a_stale_one_leaves_none_behind(case_name: str,
                                                                                 clock: Any) -> None:
    store = LockCountingStore()
    app, manager = build_wsgi(store, clock, [KEY, OLD_KEY], lock=True, lock_timeout=2)
    world = World(app, manager, store, clock)
    world.data = {"user": "alice", "n": 1}
    world.valid_id = world.stored_id(world.data)
    world.other_id = world.stored_id({"user": "bob"})
    case = CASES[case_name](world)
    store.reset()
    for path in ("/read", "/write"):
        reply = world.request(path, case.authorization)
        assert reply.status == 200, reply.error
        assert reply.cookies == [] or case.outcome == "other-scheme"
    if case.outcome in ("bad", "other-scheme"):
        assert store.calls["acquire_lock"] == 0 and store.calls["get"] == 0, dict(store.calls)
    assert store.calls["acquire_lock"] == store.calls["release_lock"], dict(store.calls)
    for session_id in [*case.presented, world.valid_id]:
        assert store.acquire_lock(session_key(session_id), "probe", 30), "a lock was left behind"
