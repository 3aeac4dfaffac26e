"""The bad-input matrix, through BOTH adapters: SessionMiddleware around a bare WSGI
app, and a Flask app with KitSession.

Every hostile or broken ``Cookie`` header, and every broken stored record, must
give: never a 500; no store call at all for a cookie whose signature does not
verify; never an adopted id (a later save gets a fresh id, and nothing is written
under the presented one); and the stale cookie cleared on the response.

Requests go through werkzeug's test client with the ``Cookie`` header placed in
the WSGI environ exactly as a server would (latin-1 text, bytes as they came).
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

from kitsession_wsgi import SessionManager, SessionRecord, session_key
from kitsession_wsgi.cookies import encode_cookie_value
from kitsession_wsgi.flask import KitSession, current_session
from kitsession_wsgi.wsgi import SessionMiddleware

from session_helpers import CountingStore, SetCookie, node_signed_value, parse_set_cookie

KEY = "the-current-key"
REMOVED_KEY = "a-key-that-was-rotated-out"
MAX_AGE = 3600
IDLE = 600
NAME = "session"


# -- the two adapters -----------------------------------------------------------------


def bare_wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["kitsession"].session
    if environ["PATH_INFO"] == "/write":
        session.data["written"] = True
    body = json.dumps({"new": session.is_new, "data": dict(session.data)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def build_wsgi(store: CountingStore, clock: Callable[[], float], signed: bool = True) -> tuple[Any, SessionManager]:
    manager = SessionManager(store, keys=[KEY], signed=signed, max_age=MAX_AGE, idle_timeout=IDLE,
                             clock=clock, secure=False)
    return SessionMiddleware(bare_wsgi_app, manager), manager


def build_flask(store: CountingStore, clock: Callable[[], float], signed: bool = True) -> tuple[Any, SessionManager]:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "unused: keys= is given"
    KitSession(app, store=store, keys=[KEY], signed=signed, max_age=MAX_AGE, idle_timeout=IDLE, clock=clock,
               secure=False)

    @app.get("/read")
    def read() -> Any:
        return {"new": current_session.is_new, "data": dict(flask.session)}

    @app.post("/write")
    def write() -> Any:
        flask.session["written"] = True
        return {"new": current_session.is_new, "data": dict(flask.session)}

    return app, app.extensions["kitsession"].manager


ADAPTERS = {"wsgi-middleware": build_wsgi, "flask": build_flask}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    cookies: list[SetCookie]
    error: str = ""


@dataclass
class World:
    """An app, its manager and counting store, and one live stored session."""

    app: Any
    manager: SessionManager
    store: CountingStore
    clock: Any
    valid_id: str = ""
    other_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def signed(self, session_id: str, key: str = KEY) -> str:
        """A cookie value on the wire: cookie-signature format, URL-encoded (independent of the library)."""
        return encode_cookie_value(node_signed_value(key, session_id))

    @property
    def valid(self) -> str:
        return self.signed(self.valid_id)

    def mac(self, session_id: str, key: str = KEY) -> str:
        return node_signed_value(key, session_id).rsplit(".", 1)[1]

    def stored_id(self, data: dict[str, Any]) -> str:
        session = self.manager.create_session(data=data)
        assert session.id is not None
        return session.id

    def plant(self, text: str) -> str:
        """Write a record with ``text`` as its data directly into the store; return its id."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        assert self.store.create(SessionRecord(
            key=session_key(session_id), data=text, user_id=None,
            created_at=now, updated_at=now, expires_at=now + MAX_AGE,
        ))
        return session_id

    def request(self, path: str, cookie_headers: list[str] | None) -> Reply:
        client = Client(self.app, use_cookies=False)
        method = "POST" if path == "/write" else "GET"
        options: dict[str, Any] = {}
        if cookie_headers is not None and len(cookie_headers) == 1:
            options["environ_overrides"] = {"HTTP_COOKIE": cookie_headers[0]}
        elif cookie_headers is not None:
            # several Cookie header lines: joined the way the test client (and waitress) join them
            options["headers"] = [("Cookie", value) for value in cookie_headers]
        try:
            response = client.open(path, method=method, **options)
        except Exception as exc:  # noqa: BLE001 - a WSGI server turns this into a 500
            return Reply(500, {}, [], f"{type(exc).__name__}: {exc}")
        cookies = [parse_set_cookie(value) for value in response.headers.getlist("Set-Cookie")]
        body = response.get_json(silent=True) or {}
        return Reply(response.status_code, body, cookies, response.get_data(as_text=True)[:300])


@pytest.fixture(params=list(ADAPTERS))
def world(request: pytest.FixtureRequest, clock: Any) -> Iterator[World]:
    store = CountingStore()
    app, manager = ADAPTERS[request.param](store, clock)
    world = World(app, manager, store, clock)
    world.data = {"user": "alice", "n": 1}
    world.valid_id = world.stored_id(world.data)
    world.other_id = world.stored_id({"user": "bob"})
    store.reset()
    yield world


# -- the matrix -----------------------------------------------------------------------


@dataclass
class Case:
    """What a request presents, and what must happen.

    ``outcome``:
    * ``absent``: no session cookie at all: anonymous, nothing cleared, no store call;
    * ``bad``: a session cookie that does not verify: anonymous, NOT cleared, NO store call;
    * ``stale``: verifies but leads to no live session: anonymous, cleared, never adopted;
    * ``valid``: the live session is served.
    """

    headers: list[str] | None
    outcome: str
    #: ids this request presents: none of them may be adopted by a later save
    presented: list[str] = field(default_factory=list)


def _mac_with_url_safe_alphabet(world: World) -> Case:
    # An id whose MAC holds + or /, so the url-safe variant really differs (a 43-character MAC
    # lacks both one time in four, so a few tries find one).
    for _ in range(100):
        session_id = secrets.token_urlsafe(32)
        mac = world.mac(session_id)
        if "+" in mac or "/" in mac:
            forged = f"s:{session_id}.{mac.replace('+', '-').replace('/', '_')}"
            return Case([f"{NAME}={encode_cookie_value(forged)}"], "bad", [session_id])
    raise AssertionError("100 MACs without + or /: is the MAC still standard base64?")


def _expired(world: World) -> Case:
    session_id = world.stored_id({"user": "carol"})
    world.clock.advance(MAX_AGE + 1)
    return Case([f"{NAME}={world.signed(session_id)}"], "stale", [session_id])


def _idle_expired(world: World) -> Case:
    session_id = world.stored_id({"user": "erin"})
    world.clock.advance(IDLE + 1)  # well inside MAX_AGE, past the idle deadline
    return Case([f"{NAME}={world.signed(session_id)}"], "stale", [session_id])


def _destroyed(world: World) -> Case:
    session_id = world.stored_id({"user": "dave"})
    session = world.manager.get_session(session_id)
    assert session is not None
    assert world.manager.remove_session(session)
    return Case([f"{NAME}={world.signed(session_id)}"], "stale", [session_id])


def _planted(text: str) -> Callable[[World], Case]:
    def build(world: World) -> Case:
        session_id = world.plant(text)
        return Case([f"{NAME}={world.signed(session_id)}"], "stale", [session_id])

    return build


def _signed_raw(value: str, outcome: str = "bad") -> Callable[[World], Case]:
    """A hand-built cookie value (already decoded text), URL-encoded as a browser would send it."""

    def build(world: World) -> Case:
        text = value.format(id=world.valid_id, mac=world.mac(world.valid_id),
                            other_mac=world.mac(world.other_id), other=world.other_id)
        return Case([f"{NAME}={encode_cookie_value(text)}"], outcome, [world.valid_id])

    return build


def _header(template: str, outcome: str) -> Callable[[World], Case]:
    """A raw header; ``{valid}`` is the live session's cookie value as sent on the wire."""

    def build(world: World) -> Case:
        return Case([template.format(valid=world.valid, id=world.valid_id)], outcome, [world.valid_id])

    return build


CASES: dict[str, Callable[[World], Case]] = {
    # -- no usable cookie at all
    "no-cookie-header": lambda w: Case(None, "absent"),
    "empty-cookie-header": lambda w: Case([""], "absent"),
    "only-other-cookies": lambda w: Case(["theme=dark; lang=en"], "absent"),
    "name-in-another-case": _header(f"{NAME.capitalize()}={{valid}}; {NAME.upper()}={{valid}}", "absent"),
    "empty-session-value": _header(f"{NAME}=", "bad"),
    "name-only-no-equals": _header(f"{NAME}", "bad"),
    "other-cookies-whose-names-contain-ours": _header(f"my{NAME}=1; {NAME}id=2; x=_{NAME}", "absent"),
    # -- duplicates and splitting
    # Duplicates: every value that verifies is a candidate, first first (a stale cookie from a
    # more specific Path is sent first and must not log the user out); forged ones cost nothing.
    "duplicate-names-valid-first": _header(f"{NAME}={{valid}}; {NAME}=garbage", "valid"),
    "duplicate-names-garbage-first": _header(f"{NAME}=garbage; {NAME}={{valid}}", "valid"),
    "duplicate-names-unknown-first": lambda w: Case(
        [f"{NAME}={w.signed(secrets.token_urlsafe(32))}; {NAME}={w.valid}"], "valid", [w.valid_id]),
    "duplicate-names-forged-twice": lambda w: Case(
        [f"{NAME}=s%3A{w.valid_id}.{'A' * 43}; {NAME}=s%3A{w.other_id}.{'B' * 43}"], "bad", [w.valid_id]),
    # Cookie tossing: a sibling subdomain or a deeper path plants values with our name that the
    # browser sends first; up to 16 (the documented cap examines 20 values) hide nothing.
    "sixteen-tossed-garbage-values-then-valid": _header("; ".join([f"{NAME}=junk{i}" for i in range(16)])
                                                        + f"; {NAME}={{valid}}", "valid"),
    "sixteen-tossed-forged-signatures-then-valid": lambda w: Case(
        ["; ".join(f"{NAME}=s%3A{secrets.token_urlsafe(32)}.{'A' * 43}" for _ in range(16)) + f"; {NAME}={w.valid}"],
        "valid", [w.valid_id]),
    "seven-tossed-unknown-verified-ids-then-valid": lambda w: Case(
        ["; ".join(f"{NAME}={w.signed(secrets.token_urlsafe(32))}" for _ in range(7)) + f"; {NAME}={w.valid}"],
        "valid", [w.valid_id]),
    "tossed-values-past-the-cap-are-not-examined": _header("; ".join([f"{NAME}=junk{i}" for i in range(20)])
                                                          + f"; {NAME}={{valid}}", "bad"),
    # Two Cookie lines reach the app joined with ", " (werkzeug and waitress do so), which is
    # not a cookie separator: no well-formed cookie of ours is left, so nothing is read or cleared.
    "split-across-two-headers-session-second": lambda w: Case(["theme=dark", f"{NAME}={w.valid}"], "absent",
                                                              [w.valid_id]),
    "split-across-two-headers-session-first": lambda w: Case([f"{NAME}={w.valid}", "theme=dark"], "absent",
                                                             [w.valid_id]),
    # -- size, bytes, characters
    "64KB-session-value": _header(f"{NAME}=" + "A" * 65536, "bad"),
    "64KB-signed-looking-value": _header(f"{NAME}=s%3A" + "A" * 65536 + "." + "B" * 43, "bad"),
    "64KB-noise-then-valid": _header("pad=" + "x" * 65536 + f"; {NAME}={{valid}}", "valid"),
    "thousands-of-cookies-then-valid": _header("; ".join(f"c{i}=v{i}" for i in range(6000))
                                               + f"; {NAME}={{valid}}", "valid"),
    "non-utf8-bytes-value": _header(f"{NAME}=\xff\xfe\xfd", "bad"),
    "non-utf8-bytes-noise-then-valid": _header(f"junk=\xff\xfe; {NAME}={{valid}}", "valid"),
    "percent-encoded-invalid-utf8": _header(f"{NAME}=%FF%FE%C3", "bad"),
    "bad-percent-escape": _header(f"{NAME}=s%3A%ZZ.%", "bad"),
    "control-characters-in-value": _header(f"{NAME}=s%3A\x00\x01\x1f\x7f.abc", "bad"),
    "control-character-inside-valid": lambda w: Case([f"{NAME}={w.valid[:20]}\x00{w.valid[20:]}"], "bad",
                                                     [w.valid_id]),
    "encoded-nul-inside-valid": lambda w: Case([f"{NAME}={w.valid[:20]}%00{w.valid[20:]}"], "bad",
                                               [w.valid_id]),
    "control-characters-noise-then-valid": _header(f"a=\x01\x7f; {NAME}={{valid}}", "valid"),
    "quoted-valid-value": _header(f'{NAME}="{{valid}}"', "valid"),
    "quoted-garbage": _header(f'{NAME}="s%3Agarbage.x"', "bad"),
    # werkzeug's parser drops a cookie with an unbalanced quote: nothing of ours is seen
    "unbalanced-quote": _header(f'{NAME}="{{valid}}', "absent"),
    "unbalanced-quote-noise-then-valid": _header(f'a="x; {NAME}={{valid}}', "valid"),
    # -- the signature
    "unsigned-stored-id-with-signing-on": _header(f"{NAME}={{id}}", "bad"),
    "prefix-but-no-signature": _signed_raw("s:{id}"),
    "empty-signature": _signed_raw("s:{id}."),
    "truncated-signature": lambda w: _signed_raw("s:{id}." + w.mac(w.valid_id)[:-1])(w),
    "padded-signature": _signed_raw("s:{id}.{mac}="),
    "padded-signature-unencoded": lambda w: Case([f"{NAME}={w.valid}="], "bad", [w.valid_id]),
    "case-flipped-signature": lambda w: _signed_raw("s:{id}." + w.mac(w.valid_id).swapcase())(w),
    "junk-suffixed-signature": _signed_raw("s:{id}.{mac}x"),
    "junk-suffixed-after-dot": _signed_raw("s:{id}.{mac}.x"),
    "another-sessions-signature": _signed_raw("s:{id}.{other_mac}"),
    "url-safe-alphabet-signature": _mac_with_url_safe_alphabet,
    "id-shortened-by-one": lambda w: _signed_raw("s:" + w.valid_id[:-1] + ".{mac}")(w),
    "double-signed": lambda w: Case([f"{NAME}={encode_cookie_value('s:' + node_signed_value(KEY, w.valid_id))}"],
                                    "bad", [w.valid_id]),
    "signed-with-a-removed-key": lambda w: Case([f"{NAME}={w.signed(w.valid_id, REMOVED_KEY)}"], "bad",
                                                [w.valid_id]),
    # -- verified, but no live session behind it
    "unknown-id": lambda w: (lambda i: Case([f"{NAME}={w.signed(i)}"], "stale", [i]))(secrets.token_urlsafe(32)),
    "attacker-chosen-id": lambda w: Case([f"{NAME}={w.signed('attacker-chosen')}"], "stale", ["attacker-chosen"]),
    "expired-id": _expired,
    "idle-expired-id": _idle_expired,
    "destroyed-id": _destroyed,
    "corrupt-stored-json": _planted("{not json"),
    "truncated-stored-json": _planted('{"user": "ali'),
    "empty-stored-data": _planted(""),
    "stored-json-array": _planted("[1, 2]"),
    "stored-json-number": _planted("42"),
    "stored-json-string": _planted('"text"'),
    "stored-json-null": _planted("null"),
    "stored-json-true": _planted("true"),
}

#: A stored record whose reading raised RecursionError, not ValueError (found by this matrix).
DEEP_JSON = "[" * 100_000 + "]" * 100_000


def _check(world: World, case: Case) -> None:
    presented_keys = {session_key(i) for i in case.presented}
    before = {k: world.store.get(k) for k in presented_keys}
    world.store.reset()

    read = world.request("/read", case.headers)
    assert read.status == 200, f"read answered {read.status}: {read.error}"
    removals = [c for c in read.cookies if c.is_removal]
    others = [c for c in read.cookies if not c.is_removal]

    if case.outcome == "valid":
        assert read.body == {"new": False, "data": world.data}
        assert removals == [] and others == []
        return

    assert read.body == {"new": True, "data": {}}, read.body
    if case.outcome == "absent":
        assert read.cookies == [], "nothing to clear, nothing to set"
    elif case.outcome == "bad":
        # Left alone, as Flask and Starlette do: a cookie that does not verify is neither
        # trusted nor cleared (a signing-key mistake must not log every user out).
        assert read.cookies == [], f"a cookie that does not verify is not cleared: {read.cookies}"
    elif case.outcome == "stale":
        assert others == [] and len(removals) == 1, f"the stale cookie must be cleared once: {read.cookies}"
        assert removals[0].name == NAME and removals[0].attributes.get("path") == "/"
    gets_after_read = world.store.calls["get"]
    assert world.store.writes() == 0 or case.outcome == "stale", world.store.calls

    write = world.request("/write", case.headers)
    gets_after_write = world.store.calls["get"]
    assert write.status == 200, f"write answered {write.status}: {write.error}"
    assert write.body == {"new": True, "data": {"written": True}}
    (new_cookie,) = write.cookies
    assert not new_cookie.is_removal
    signer = world.manager.signer
    if signer is None:
        new_id = new_cookie.value
    else:
        unsigned = signer.unsign(new_cookie.value)
        assert unsigned is not None, new_cookie.value
        new_id = unsigned.session_id
    assert new_id not in case.presented, "a presented id was adopted"
    assert new_id not in (world.valid_id, world.other_id)
    assert world.store.get(session_key(new_id)) is not None

    if case.outcome in ("bad", "absent"):
        assert gets_after_read == 0 and gets_after_write == 0, (
            f"a cookie that does not verify cost store calls: {dict(world.store.calls)}"
        )
    for key in presented_keys:
        after = world.store.get(key)
        if case.outcome == "stale":
            assert after is None, "a stale record must not be served, kept for later, or written"
        else:
            assert after == before[key], "a presented session was changed by a request that did not own it"


@pytest.mark.parametrize("case_name", list(CASES))
def test_bad_cookie_is_never_a_500_never_costs_a_store_call_and_is_never_adopted(
    world: World, case_name: str
) -> None:
    _check(world, CASES[case_name](world))


# -- stored records whose reading raises more than ValueError ---------------------------------


def test_deeply_nested_stored_json_is_a_stale_session(world: World) -> None:
    """Regression: json.loads raised RecursionError (not ValueError): a 500."""
    _check(world, _planted(DEEP_JSON)(world))


@pytest.mark.parametrize("tagged", ['{" t":5}', '{" di":5}', '{"cart":{" t":null}}'],
                         ids=["tuple-tag-on-int", "dict-tag-on-int", "nested-tuple-tag-on-null"])
def test_flask_malformed_tagged_json_is_a_stale_session(clock: Any, tagged: str) -> None:
    """Regression: TaggedJSONSerializer.loads raised TypeError (not ValueError): a 500."""
    store = CountingStore()
    app, manager = build_flask(store, clock)
    world = World(app, manager, store, clock)
    world.valid_id = world.stored_id({"user": "alice"})
    world.other_id = world.stored_id({"user": "bob"})
    _check(world, _planted(tagged)(world))


def test_plain_json_that_looks_tagged_is_plain_data_in_the_wsgi_adapter(clock: Any) -> None:
    store = CountingStore()
    app, manager = build_wsgi(store, clock)
    world = World(app, manager, store, clock)
    session_id = world.plant('{" t":5}')
    reply = world.request("/read", [f"{NAME}={world.signed(session_id)}"])
    assert reply.status == 200 and reply.body == {"new": False, "data": {" t": 5}}


# -- details of the matrix -------------------------------------------------------------------


def test_a_forged_cookie_never_reaches_the_store_even_when_repeated(world: World) -> None:
    forged = f"{NAME}={encode_cookie_value('s:' + world.valid_id + '.' + 'A' * 43)}"
    for _ in range(3):
        assert world.request("/read", [forged]).status == 200
    assert world.store.calls["get"] == 0


def test_the_valid_cookie_still_works_after_every_bad_one(world: World) -> None:
    for name, build in CASES.items():
        if name in ("expired-id", "idle-expired-id"):  # move the clock past every session's lifetime
            continue
        case = build(world)
        world.request("/read", case.headers)
    reply = world.request("/read", [f"{NAME}={world.valid}"])
    assert reply.status == 200 and reply.body == {"new": False, "data": world.data}


# -- unsigned cookies (signed=False): the id itself is the only secret -------------------------


UNSIGNED_CASES: dict[str, Callable[[World], Case]] = {
    "unknown-id": lambda w: Case([f"{NAME}=attacker-chosen-id"], "stale", ["attacker-chosen-id"]),
    "unknown-id-percent-encoded": lambda w: Case([f"{NAME}=attacker%20chosen"], "stale", ["attacker chosen"]),
    "signed-looking-value": lambda w: Case([f"{NAME}={w.valid}"], "stale", ["s:" + w.valid_id]),
    "expired-id": lambda w: (lambda i: (w.clock.advance(MAX_AGE + 1), Case([f"{NAME}={i}"], "stale", [i]))[1])(
        w.stored_id({"user": "carol"})),
    "corrupt-stored-json": lambda w: (lambda i: Case([f"{NAME}={i}"], "stale", [i]))(w.plant("{oops")),
    "stored-json-array": lambda w: (lambda i: Case([f"{NAME}={i}"], "stale", [i]))(w.plant("[]")),
    # Values a store key must never be built from: rejected before any store call.
    "64KB-id": lambda w: Case([f"{NAME}=" + "A" * 65536], "bad", ["A" * 65536]),
    "control-characters": lambda w: Case([f"{NAME}=abc\x01\x7fdef"], "bad", ["abc\x01\x7fdef"]),
    "encoded-control-characters": lambda w: Case([f"{NAME}=abc%00def"], "bad", ["abc\x00def"]),
    "valid-unsigned-id": lambda w: Case([f"{NAME}={w.valid_id}"], "valid", [w.valid_id]),
}


@pytest.mark.parametrize("case_name", list(UNSIGNED_CASES))
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_unsigned_cookies_are_never_adopted(adapter: str, case_name: str, clock: Any) -> None:
    store = CountingStore()
    app, manager = ADAPTERS[adapter](store, clock, signed=False)
    assert manager.signer is None
    world = World(app, manager, store, clock)
    world.data = {"user": "alice", "n": 1}
    world.valid_id = world.stored_id(world.data)
    world.other_id = world.stored_id({"user": "bob"})
    store.reset()
    _check(world, UNSIGNED_CASES[case_name](world))


# -- what a huge header costs --------------------------------------------------------------


def test_distinct_64kb_headers_around_a_valid_cookie_are_not_retained(clock: Any) -> None:
    """Regression: the cookie cache was keyed by the whole header and bounded by entries, not
    bytes: 4096 distinct 64 KB headers around one valid cookie retained 256 MB."""
    import tracemalloc

    store = CountingStore()
    app, manager = build_wsgi(store, clock)
    world = World(app, manager, store, clock)
    world.valid_id = world.stored_id({"user": "alice"})
    requests = 200
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(requests):
            noise = f"{i:08d}" + "x" * 65536
            session = manager.initialize_session({"HTTP_COOKIE": f"pad={noise}; {NAME}={world.valid}"})
            assert session.id == world.valid_id
            del session, noise
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # 200 x 64 KB = 12.8 MB passed through; a bounded cache keeps a small fraction of it.
    assert retained < 2 * 1024 * 1024, f"{retained / 1e6:.1f} MB retained after {requests} requests"


# -- signals: they fire, and never carry the raw id or the cookie --------------------------------

SIGNAL_NAMES = ["created", "regenerated", "destroyed", "expired", "invalid_signature", "unknown_id",
                "key_rotated"]


@dataclass
class Heard:
    signal: str
    sender: Any
    kwargs: dict[str, Any]
    #: repr of the sender and of every keyword argument, taken when the signal was sent
    reprs: list[str]


@pytest.fixture
def heard() -> Iterator[list[Heard]]:
    from kitsession_wsgi import signals

    received: list[Heard] = []
    receivers = []
    for name in [*SIGNAL_NAMES, "store_unavailable"]:
        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            reprs = [repr(sender), repr(kwargs)] + [repr(v) for v in kwargs.values()]
            reprs += [repr(vars(v)) for v in kwargs.values() if hasattr(v, "__dict__")]
            received.append(Heard(_name, sender, kwargs, reprs))

        getattr(signals, name).connect(receiver, weak=False)
        receivers.append((getattr(signals, name), receiver))
    yield received
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def _login_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    from kitsession_wsgi.wsgi import with_new_session

    @with_new_session
    def login(environ: dict[str, Any], start_response: Callable[..., Any], session: Any) -> list[bytes]:
        session.data = {"id": 7, "name": "alice"}
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"in"]

    return list(login(environ, start_response))


def _logout_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    environ["kitsession"].delete_session()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"out"]


def test_signals_fire_and_never_carry_the_id_or_the_cookie(heard: list[Heard], clock: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="kitsession_wsgi")
    store = CountingStore()
    old_manager = SessionManager(store, keys=[REMOVED_KEY], max_age=MAX_AGE, clock=clock, secure=False)
    manager = SessionManager(store, keys=[KEY, REMOVED_KEY], max_age=MAX_AGE, clock=clock, secure=False)
    secrets_seen: set[str] = set()

    def call(app: Any, cookie: str | None) -> list[SetCookie]:
        reply = World(SessionMiddleware(app, manager), manager, store, clock).request(
            "/write", None if cookie is None else [cookie])
        assert reply.status == 200, reply.error
        for set_cookie in reply.cookies:
            if set_cookie.value:
                secrets_seen.update({set_cookie.value, set_cookie.raw_value, set_cookie.request_header})
                unsigned = manager.signer.unsign(set_cookie.value)  # type: ignore[union-attr]
                assert unsigned is not None
                secrets_seen.add(unsigned.session_id)
        return reply.cookies

    # created: an anonymous request that writes
    (first,) = call(bare_wsgi_app, None)
    # created + regenerated: a login over that session (with_new_session)
    (second,) = call(_login_app, first.request_header)
    # regenerated: SessionManager.regenerate
    session = manager.initialize_session({"Cookie": second.request_header})
    assert not session.is_new and session.id
    secrets_seen.add(session.id)
    manager.regenerate(session)
    assert session.id
    secrets_seen.add(session.id)
    third = parse_set_cookie(manager.set_session_cookie(session))
    secrets_seen.update({third.value, third.raw_value})
    # key_rotated: a cookie signed with the previous key
    rotated = old_manager.create_session(data={"n": 1})
    assert rotated.id
    rotated_cookie = parse_set_cookie(old_manager.set_session_cookie(rotated))
    secrets_seen.update({rotated.id, rotated_cookie.value, rotated_cookie.raw_value})
    call(bare_wsgi_app, rotated_cookie.request_header)
    # invalid_signature: a tampered cookie
    tampered = f"{NAME}={encode_cookie_value('s:' + rotated.id + '.' + 'A' * 43)}"
    call(bare_wsgi_app, tampered)
    # unknown_id: a verified cookie for an id the store never held
    unknown = secrets.token_urlsafe(32)
    secrets_seen.add(unknown)
    call(bare_wsgi_app, f"{NAME}={encode_cookie_value(node_signed_value(KEY, unknown))}")
    # destroyed: logout
    call(_logout_app, third.request_header)
    # expired: a live session presented after its lifetime
    expiring = manager.create_session(data={"n": 2})
    assert expiring.id
    secrets_seen.add(expiring.id)
    expiring_cookie = parse_set_cookie(manager.set_session_cookie(expiring))
    secrets_seen.update({expiring_cookie.value, expiring_cookie.raw_value})
    clock.advance(MAX_AGE + 1)
    call(bare_wsgi_app, expiring_cookie.request_header)

    fired = {h.signal for h in heard}
    assert fired >= set(SIGNAL_NAMES), f"never fired: {set(SIGNAL_NAMES) - fired}"
    assert all(h.sender in (manager, old_manager) for h in heard)
    secrets_seen.discard("")
    for h in heard:
        for text in h.reprs:
            leaked = [s for s in secrets_seen if s in text]
            assert not leaked, f"{h.signal} received a secret id or cookie: {text[:200]}"
    # The handles point at the right sessions.
    assert any(h.kwargs.get("handle") == session_key(unknown) for h in heard if h.signal == "unknown_id")
    assert any(h.kwargs.get("handle") == session_key(expiring.id) for h in heard if h.signal == "expired")
    assert any(h.kwargs["session"].handle == session_key(rotated.id) for h in heard if h.signal == "key_rotated")
    # Nor do log lines.
    for record in caplog.records:
        message = record.getMessage()
        assert not [s for s in secrets_seen if s in message], f"a log line holds a secret: {message}"


# -- data that cannot be stored: a clear error before anything is written --------------------------


def _json_size(data: dict[str, Any]) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def test_max_data_bytes_is_exact_in_utf8_bytes_and_nothing_is_written_above_it() -> None:
    from kitsession_wsgi import SessionDataError

    data = {"name": "é" * 1000 + "🍪" * 100}  # 2 and 4 bytes per character
    size = _json_size(data)
    store = CountingStore()
    assert SessionManager(store, max_data_bytes=size).create_session(data=data).handle is not None
    assert len(store) == 1
    store = CountingStore()
    with pytest.raises(SessionDataError, match="max_data_bytes"):
        SessionManager(store, max_data_bytes=size - 1).create_session(data=data)
    assert store.writes() == 0 and len(store) == 0


NOT_JSON: dict[str, Any] = {
    "object": {"k": object()},
    "set": {"k": {1, 2}},
    "nan": {"k": float("nan")},
    "infinity": {"k": float("inf")},
    "bytes": {"k": b"raw"},
    "non-str-top-level-key": {1: "one"},
    "tuple-key-nested": {"k": {(1, 2): "pair"}},
    "function": {"k": len},
}


@pytest.mark.parametrize("data", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_data_that_is_not_json_is_refused_before_anything_is_written(data: dict[str, Any], clock: Any) -> None:
    from kitsession_wsgi import SessionDataError

    store = CountingStore()
    manager = SessionManager(store, keys=[KEY], clock=clock)
    live = manager.create_session(data={"n": 1})
    before = store.get(live.handle or "")
    store.reset()
    # a new session ...
    with pytest.raises(SessionDataError) as info:
        manager.create_session(data=data)
    assert str(info.value)
    # ... and an existing one
    session = manager.initialize_session({"Cookie": parse_set_cookie(manager.set_session_cookie(live)).request_header})
    session.data.update(data)
    with pytest.raises(SessionDataError):
        manager.commit(session)
    assert store.writes() == 0, dict(store.calls)
    assert store.get(live.handle or "") == before and len(store) == 1


@pytest.mark.parametrize(
    "data",
    [{"k": {1: "a", "1": "b"}}, {"k": {1: 2}}, {"k": [{"ok": 1}, {None: 1}]}, {"k": ({"x": {(1, 2): 3}},)},
     {"k": {"a": {"b": {"c": {2.5: 1}}}}}],
    ids=["duplicate-after-json", "int", "in-a-list", "tuple-key-in-a-tuple", "deep-float"],
)
@pytest.mark.parametrize("flask_types", [False, True], ids=["json", "flask-tagged"])
def test_nested_non_str_keys_are_refused_naming_the_top_level_key(data: dict[str, Any], flask_types: bool) -> None:
    # JSON would store {1: 2} as {"1": 2}, and {1: "a", "1": "b"} as two equal keys, one of them lost.
    from kitsession_wsgi import SessionDataError
    from kitsession_wsgi.flask import FlaskSessionSerializer

    store = CountingStore()
    options = {"serializer": FlaskSessionSerializer()} if flask_types else {}
    with pytest.raises(SessionDataError, match="keys must be str at every depth") as caught:
        SessionManager(store, **options).create_session(data=data)
    assert getattr(caught.value, "key", None) == "k"
    assert len(store) == 0


def test_nested_str_keys_and_containers_are_stored() -> None:
    store = CountingStore()
    manager = SessionManager(store)
    data = {"k": {"a": [{"b": ({"c": 1},)}], "d": {}}, "e": [], "f": "x"}
    session = manager.create_session(data=data)
    assert manager.get_session(session.id or "") is not None
    assert json.loads(store.get(session.handle or "").data) == {"k": {"a": [{"b": [{"c": 1}]}], "d": {}}, "e": [], "f": "x"}


def test_too_deeply_nested_data_is_a_session_data_error() -> None:
    from kitsession_wsgi import SessionDataError

    deep: list[Any] = []
    cursor = deep
    for _ in range(5000):
        cursor.append([])
        cursor = cursor[0]
    store = CountingStore()
    with pytest.raises(SessionDataError):
        SessionManager(store).create_session(data={"deep": deep})
    assert len(store) == 0


def _flask_app_writing(store: CountingStore, value: Callable[[], Any], max_data_bytes: int = 1024) -> Any:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = KEY
    KitSession(app, store=store, max_data_bytes=max_data_bytes, secure=False)

    @app.post("/write")
    def write() -> str:
        flask.session["value"] = value()
        return "written"

    return app


FLASK_UNSTORABLE = {
    "too-large": lambda: "x" * 2000,
    "too-large-multibyte": lambda: "é" * 600,
    "object": object,
    "set": lambda: {1, 2},
    "nested-tuple-key": lambda: {(1, 2): "pair"},
}


@pytest.mark.parametrize("existing", [False, True], ids=["new-session", "existing-session"])
@pytest.mark.parametrize("value", list(FLASK_UNSTORABLE.values()), ids=list(FLASK_UNSTORABLE))
def test_flask_unstorable_data_is_a_500_and_the_store_is_unchanged(value: Callable[[], Any], existing: bool) -> None:
    from flask import got_request_exception

    from kitsession_wsgi import SessionDataError

    store = CountingStore()
    app = _flask_app_writing(store, value)
    manager = app.extensions["kitsession"].manager
    headers = {}
    live = None
    if existing:
        live = manager.create_session(data={"value": "before"})
        headers["Cookie"] = parse_set_cookie(manager.set_session_cookie(live)).request_header
    before = {record.key: record for record in store.get_all()}
    store.reset()
    errors: list[BaseException] = []

    def record_error(sender: Any, exception: BaseException, **_: Any) -> None:
        errors.append(exception)

    got_request_exception.connect(record_error, app, weak=False)
    try:
        response = app.test_client(use_cookies=False).post("/write", headers=headers)
    finally:
        got_request_exception.disconnect(record_error, app)
    assert response.status_code == 500
    assert response.headers.getlist("Set-Cookie") == []
    assert store.writes() == 0, dict(store.calls)
    assert {record.key: record for record in store.get_all()} == before
    assert len(errors) == 1 and isinstance(errors[0], SessionDataError), errors
    assert "max_data_bytes" in str(errors[0]) or "'value'" in str(errors[0]), str(errors[0])


def test_flask_refuses_nan_like_the_core() -> None:
    store = CountingStore()
    app = _flask_app_writing(store, lambda: float("nan"))
    response = app.test_client(use_cookies=False).post("/write")
    assert response.status_code == 500
    assert len(store) == 0


def test_wsgi_middleware_unstorable_data_raises_a_clear_error_and_the_store_is_unchanged(clock: Any) -> None:
    from kitsession_wsgi import SessionDataError

    store = CountingStore()
    manager = SessionManager(store, keys=[KEY], max_data_bytes=1024, clock=clock, secure=False)
    live = manager.create_session(data={"value": "before"})
    before = store.get(live.handle or "")
    store.reset()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["kitsession"].session.data["value"] = "x" * 2000
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    cookie = parse_set_cookie(manager.set_session_cookie(live)).request_header
    with pytest.raises(SessionDataError, match="max_data_bytes=1024"):
        Client(SessionMiddleware(app, manager), use_cookies=False).post("/", headers={"Cookie": cookie})
    assert store.writes() == 0 and store.get(live.handle or "") == before


def test_flask_signals_fire_and_never_carry_the_id_or_the_cookie(heard: list[Heard], clock: Any) -> None:
    from kitsession_wsgi.flask import with_delete_session, with_new_session

    store = CountingStore()
    app, manager = build_flask(store, clock)

    @app.post("/login")
    @with_new_session
    def login(session: Any) -> str:
        session.data = {"id": 7}
        return "in"

    @app.post("/logout")
    @with_delete_session
    def logout(session: Any) -> str:
        return "out"

    client = Client(app, use_cookies=False)
    secrets_seen: set[str] = set()

    def remember(response: Any) -> str:
        (value,) = response.headers.getlist("Set-Cookie")
        cookie = parse_set_cookie(value)
        unsigned = manager.signer.unsign(cookie.value)  # type: ignore[union-attr]
        assert unsigned is not None
        secrets_seen.update({cookie.value, cookie.raw_value, unsigned.session_id})
        return cookie.request_header

    anonymous = remember(client.post("/write"))                                   # created
    logged_in = remember(client.post("/login", headers={"Cookie": anonymous}))    # created + regenerated
    client.post("/logout", headers={"Cookie": logged_in})                         # destroyed
    client.get("/read", headers={"Cookie": logged_in})                            # unknown_id
    client.get("/read", headers={"Cookie": logged_in[:-3] + "AAA"})               # invalid_signature
    expiring = remember(client.post("/write"))
    clock.advance(IDLE + 1)
    client.get("/read", headers={"Cookie": expiring})                             # expired (idle)

    fired = {h.signal for h in heard if h.sender is manager}
    assert fired >= {"created", "regenerated", "destroyed", "unknown_id", "invalid_signature", "expired"}, fired
    for h in heard:
        for text in h.reprs:
            assert not [s for s in secrets_seen if s in text], f"{h.signal} received a secret: {text[:200]}"


# -- with per-session locks on --------------------------------------------------------------------


class LockCountingStore(CountingStore):
    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        self.calls["acquire_lock"] += 1
        return super().acquire_lock(key, token, ttl)

    def release_lock(self, key: str, token: str) -> None:
        self.calls["release_lock"] += 1
        super().release_lock(key, token)


@pytest.mark.parametrize("case_name", list(CASES))
def test_with_locks_a_bad_cookie_takes_no_lock_and_a_stale_one_leaves_none_behind(case_name: str,
                                                                                  clock: Any) -> None:
    store = LockCountingStore()
    manager = SessionManager(store, keys=[KEY], max_age=MAX_AGE, idle_timeout=IDLE, clock=clock, secure=False,
                             lock=True, lock_timeout=2)
    world = World(SessionMiddleware(bare_wsgi_app, manager), manager, store, clock)
    world.data = {"user": "alice", "n": 1}
    world.valid_id = world.stored_id(world.data)
    world.other_id = world.stored_id({"user": "bob"})
    case = CASES[case_name](world)
    store.reset()
    for path in ("/read", "/write"):
        reply = world.request(path, case.headers)
        assert reply.status == 200, reply.error
    if case.outcome in ("bad", "absent"):
        assert store.calls["acquire_lock"] == 0 and store.calls["get"] == 0, dict(store.calls)
    assert store.calls["acquire_lock"] == store.calls["release_lock"], dict(store.calls)
    for session_id in [*case.presented, world.valid_id]:
        assert store.acquire_lock(session_key(session_id), "probe", 30), "a lock was left behind"
