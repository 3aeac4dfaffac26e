"""Property tests (hypothesis) for the cookie path of the core.

* Any ``Cookie`` header, however hostile, never makes
  ``SessionManager.initialize_session`` raise, and never reaches the store
  unless it carries a cookie whose signature verifies (the only ids ever
  signed here are the test's own, so every store call must be for one of them).
* Well-formed noise around a valid cookie never hides it.
* Signing then verifying round-trips any id, with every key of a rotation,
  including through ``Set-Cookie`` -> ``Cookie`` -> the store.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from kitsession_wsgi import SessionManager, SessionRecord, session_key
from kitsession_wsgi._keys import marker_key
from kitsession_wsgi.cookies import encode_cookie_value
from kitsession_wsgi.signing import CookieSigner, normalize_keys

from session_helpers import CountingStore, InterleavingStore, node_signed_value, parse_set_cookie

NAME = "session"
KEYS = ["current-key", "previous-key"]
#: KITSESSION_HYPOTHESIS_EXAMPLES=20000 for a deeper local hunt
SETTINGS = settings(max_examples=int(os.environ.get("KITSESSION_HYPOTHESIS_EXAMPLES", "300")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class RecordingStore(CountingStore):
    """A counting MemoryStore that also remembers which keys were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []

    def get(self, key: str) -> SessionRecord | None:
        self.looked_up.append(key)
        return super().get(key)


class World:
    """A manager over a recording store, with two live sessions and one unknown signed id."""

    def __init__(self) -> None:
        self.store = RecordingStore()
        self.manager = SessionManager(self.store, keys=KEYS, secure=False)
        live = self.manager.create_session(data={"user": "alice"})
        assert live.id is not None
        self.live_id = live.id
        self.unknown_id = secrets.token_urlsafe(32)
        #: every id this test ever signs: the only keys the store may be asked for
        self.allowed_keys = {session_key(self.live_id), session_key(self.unknown_id)}
        self.store.reset()
        self.store.looked_up.clear()

    def value(self, session_id: str, key: str = KEYS[0]) -> str:
        return encode_cookie_value(node_signed_value(key, session_id))


WORLD = World()

# -- header strategies ----------------------------------------------------------------------

#: everything, surrogates included (a mapping may carry any str)
any_text = st.text(st.characters(exclude_categories=()), max_size=300)
#: what a WSGI server puts in the environ: latin-1 text (raw bytes of the header)
latin1_text = st.text(st.characters(max_codepoint=0xFF), max_size=300)
#: pieces that matter to a cookie parser and to the signature format
PIECES = [";", "; ", "=", '"', "'", ",", ", ", " ", "\t", "\\", "%", "%3A", "%3a", "%00", "%ZZ", ".", "s:",
          "s%3A", NAME, f"{NAME}=", f" {NAME} = ", "$Version=1", "\x00", "\x7f", "\r\n", "é", "\u2028", "🍪",
          "\udcff", "=" * 3, "A" * 43]


@st.composite
def structured_headers(draw: st.DrawFn) -> str:
    """Headers made of cookie syntax, signature fragments and real signed values, in any order."""
    world = WORLD
    live, unknown = world.value(world.live_id), world.value(world.unknown_id)
    old = world.value(world.live_id, KEYS[1])
    fragments = st.one_of(
        st.sampled_from(PIECES),
        st.sampled_from([live, unknown, old, world.live_id, live[: len(live) // 2], live[len(live) // 2:],
                         live.swapcase(), live + "x", live[:-1]]),
        st.text(max_size=12),
    )
    return "".join(draw(st.lists(fragments, max_size=20)))


@st.composite
def noise_around_a_valid_cookie(draw: st.DrawFn) -> str:
    """A real valid cookie with arbitrary noise before and after it."""
    before = draw(st.one_of(any_text, structured_headers()))
    after = draw(st.one_of(any_text, structured_headers()))
    glue = draw(st.sampled_from(["; ", ";", " ; ", "", ", "]))
    return f"{before}{glue}{NAME}={WORLD.value(WORLD.live_id)}{glue}{after}"


any_header = st.one_of(any_text, latin1_text, structured_headers(), noise_around_a_valid_cookie())


def _initialize(world: World, header: str, form: str) -> object:
    if form == "environ":
        return world.manager.initialize_session({"HTTP_COOKIE": header, "wsgi.version": (1, 0)})
    if form == "Headers":
        return world.manager.initialize_session(Headers([("Cookie", header)]))
    return world.manager.initialize_session({"cookie": header})


@SETTINGS
@given(header=any_header, form=st.sampled_from(["environ", "mapping", "Headers"]))
@example(header=f"{NAME}=s%3A{'A' * 65536}.{'B' * 43}", form="environ")
@example(header=f"{NAME}=" + "%" * 5000, form="mapping")
@example(header=f'{NAME}="s:x.y"; {NAME}=', form="environ")
def test_any_cookie_header_never_raises_and_reaches_the_store_only_with_a_valid_signature(
    header: str, form: str
) -> None:
    world = WORLD
    if form == "environ":
        assume(all(ord(c) <= 0xFF for c in header))  # a WSGI environ holds latin-1 text
    if form == "Headers":
        assume("\n" not in header and "\r" not in header)  # werkzeug Headers refuse newlines
    world.store.looked_up.clear()
    session = _initialize(world, header, form)
    strays = set(world.store.looked_up) - world.allowed_keys
    assert not strays, f"the store was asked for a key no signed cookie names: {header!r}"
    assert world.store.writes() == 0, dict(world.store.calls)
    event("store reached" if world.store.looked_up else "no store call")
    if not session.is_new:  # type: ignore[attr-defined]
        event("the live session was served")
        assert session.id == world.live_id  # type: ignore[attr-defined]
    if world.manager.commit(session) is not None:  # type: ignore[arg-type]
        assert world.store.writes() == 0, "committing an unused session wrote to the store"


#: RFC 6265 cookie-name (token) and cookie-octet characters
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')
noise_cookie = st.tuples(st.text(TOKEN, min_size=1, max_size=12), st.text(COOKIE_OCTETS, max_size=30))


@SETTINGS
@given(before=st.lists(noise_cookie, max_size=8), after=st.lists(noise_cookie, max_size=8),
       separator=st.sampled_from(["; ", ";"]))
def test_well_formed_cookies_around_the_session_cookie_never_hide_it(
    before: list[tuple[str, str]], after: list[tuple[str, str]], separator: str
) -> None:
    world = WORLD
    assume(all(name != NAME for name, _ in before))  # the first cookie of a name wins
    cookies = [f"{n}={v}" for n, v in before] + [f"{NAME}={world.value(world.live_id)}"]
    cookies += [f"{n}={v}" for n, v in after]
    session = world.manager.initialize_session({"Cookie": separator.join(cookies)})
    assert not session.is_new and session.id == world.live_id
    # The same cookies split over several Cookie header lines (HTTP/2 splits them) are read alike.
    lines = [cookies[i:i + 3] for i in range(0, len(cookies), 3)]
    split = Headers([("Cookie", separator.join(line)) for line in lines])
    session = world.manager.initialize_session(split)
    assert not session.is_new and session.id == world.live_id


#: what a tossing attacker can plant under our name without a key: any cookie-octet text,
#: signed-looking forgeries, and real signed ids the store does not hold
tossed_value = st.one_of(
    st.text(COOKIE_OCTETS, max_size=60),
    st.builds(lambda i, m: f"s%3A{i}.{m}", st.text(TOKEN, min_size=1, max_size=50),
              st.text(string.ascii_letters + string.digits + "+/", min_size=43, max_size=43)),
    st.just(WORLD.value(WORLD.unknown_id)),
)


@SETTINGS
@given(tossed=st.lists(tossed_value, max_size=16), after=st.lists(tossed_value, max_size=4))
def test_up_to_sixteen_tossed_values_before_the_session_cookie_never_hide_it(
    tossed: list[str], after: list[str]
) -> None:
    world = WORLD
    # the unknown id verifies and costs a store read: the documented cap on verified values
    assume(sum(v == world.value(world.unknown_id) for v in tossed) < 8)
    cookies = [f"{NAME}={v}" for v in tossed] + [f"{NAME}={world.value(world.live_id)}"]
    cookies += [f"{NAME}={v}" for v in after]
    world.store.looked_up.clear()
    session = world.manager.initialize_session({"Cookie": "; ".join(cookies)})
    assert not session.is_new and session.id == world.live_id
    # (an unknown id is looked up, then whether a login replaced it moments ago)
    markers = {marker_key(key) for key in world.allowed_keys}
    assert set(world.store.looked_up) <= world.allowed_keys | markers
    assert world.manager.commit(session) is None, "the live session is never cleared"


# -- sign -> unsign ----------------------------------------------------------------------------

#: any text id but lone surrogates, which have no UTF-8 form to sign
ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200)
keys = st.lists(st.one_of(st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=40)),
                min_size=1, max_size=4)


@SETTINGS
@given(session_id=ids, key_list=keys, signer_index=st.integers(min_value=0, max_value=3))
def test_sign_then_unsign_round_trips_any_id_with_any_key_of_a_rotation(
    session_id: str, key_list: list[str | bytes], signer_index: int
) -> None:
    signer = CookieSigner(normalize_keys(key_list))
    signed = signer.sign(session_id)
    assert signed == node_signed_value(key_list[0], session_id)  # the cookie-signature format, exactly
    unsigned = signer.unsign(signed)
    assert unsigned is not None and unsigned.session_id == session_id and unsigned.key_index == 0

    index = min(signer_index, len(key_list) - 1)
    by_old_key = node_signed_value(key_list[index], session_id)
    unsigned = signer.unsign(by_old_key)
    assert unsigned is not None and unsigned.session_id == session_id
    first_same_key = normalize_keys(key_list).index(normalize_keys([key_list[index]])[0])
    assert unsigned.key_index == first_same_key

    # Any change to the MAC is refused.
    mac_start = signed.rfind(".") + 1
    for position in (mac_start, len(signed) - 1):
        flipped = "A" if signed[position] != "A" else "B"
        assert signer.unsign(signed[:position] + flipped + signed[position + 1:]) is None


@SETTINGS
@given(session_id=ids)
def test_an_id_round_trips_through_set_cookie_cookie_and_the_store(session_id: str) -> None:
    store = RecordingStore()
    manager = SessionManager(store, keys=KEYS, secure=False)
    assert store.create(SessionRecord(key=session_key(session_id), data='{"k":1}', user_id=None,
                                      created_at=manager.clock(), updated_at=manager.clock(),
                                      expires_at=manager.clock() + 60)) is True
    cookie = parse_set_cookie(manager.set_session_cookie(session_id))
    assert cookie.name == NAME and cookie.value == node_signed_value(KEYS[0], session_id)
    session = manager.initialize_session({"Cookie": cookie.request_header})
    assert not session.is_new
    assert session.id == session_id and session.data == {"k": 1}
    assert store.looked_up == [session_key(session_id)]


# -- merging concurrent saves ------------------------------------------------------------------


KEYS_POOL = [f"k{i}" for i in range(8)]
values = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3), st.none())


@st.composite
def disjoint_changes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """2-4 requests, each setting or deleting its own keys (no key is changed by two requests)."""
    count = draw(st.integers(min_value=2, max_value=4))
    owners = draw(st.lists(st.integers(min_value=0, max_value=count), min_size=len(KEYS_POOL),
                           max_size=len(KEYS_POOL)))  # owner == count: nobody changes the key
    requests: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, owner in zip(KEYS_POOL, owners):
        if owner < count:
            requests[owner][key] = draw(st.one_of(values, st.just(DELETE)))
    return requests


DELETE = object()


@SETTINGS
@given(initial=st.dictionaries(st.sampled_from(KEYS_POOL), values, max_size=len(KEYS_POOL)),
       changes=disjoint_changes(), data=st.data(),
       new_user=st.one_of(st.none(), st.tuples(st.integers(min_value=0, max_value=3), st.integers(1, 99))))
def test_concurrent_saves_of_disjoint_keys_keep_every_change(
    initial: dict[str, Any], changes: list[dict[str, Any]], data: st.DataObject,
    new_user: tuple[int, int] | None,
) -> None:
    """Every request loads the same version; they commit in any order, and while one saves,
    others may commit in between its attempts.  With disjoint keys nothing may be lost.

    An "anchor" key nobody changes keeps every request's data non-empty: a request that
    empties its view of the session ends it (see test_bad_input's emptied-session test).
    """
    initial = {**initial, "anchor": 1}
    store = InterleavingStore()
    # The merge of a user change in place; with the default rotation the id moves instead
    # (and requests still on the old id end: tests/test_revocation_races.py).
    manager = SessionManager(store, keys=KEYS, secure=False, rotate_on_user_change=False)
    live = manager.create_session(data=dict(initial))
    cookie = parse_set_cookie(manager.set_session_cookie(live)).request_header
    sessions = [manager.initialize_session({"Cookie": cookie}) for _ in changes]
    expected_user = None
    if new_user is not None and new_user[0] < len(sessions):  # one request also signs a user in
        sessions[new_user[0]].user_id = expected_user = new_user[1]
    for session, change in zip(sessions, changes):
        for key, value in change.items():
            if value is DELETE:
                session.data.pop(key, None)
            else:
                session.data[key] = value

    pending = list(range(len(sessions)))
    order = data.draw(st.permutations(pending))

    def commit(index: int) -> Callable[[], None]:
        def run() -> None:
            if index in pending:
                pending.remove(index)
                manager.commit(sessions[index])
        return run

    for index in order:
        if index not in pending:
            continue
        pending.remove(index)
        # Others that have not committed yet may do so between this request's attempts.
        others = [i for i in pending if data.draw(st.booleans())]
        store.before_set = [commit(i) for i in others]
        manager.commit(sessions[index])
        store.before_set = []

    expected = dict(initial)
    for change in changes:
        for key, value in change.items():
            if value is DELETE:
                expected.pop(key, None)
            else:
                expected[key] = value
    record = store.get(live.handle or "")
    assert record is not None
    assert json.loads(record.data) == expected
    assert record.user_id == expected_user


# -- through both adapters -------------------------------------------------------------------------


def _adapters() -> dict[str, Any]:
    import flask
    from werkzeug.test import Client

    from kitsession_wsgi.flask import KitSession, current_session
    from kitsession_wsgi.wsgi import SessionMiddleware

    store = RecordingStore()
    manager = SessionManager(store, keys=KEYS, secure=False)

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = environ["kitsession"].session
        if environ["REQUEST_METHOD"] == "POST":
            session.data["w"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"new" if session.is_new else b"old"]

    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = KEYS[0]
    KitSession(app, store=RecordingStore(), keys=KEYS, secure=False)

    @app.route("/", methods=["GET", "POST"])
    def view() -> str:
        if flask.request.method == "POST":
            flask.session["w"] = 1
        return "new" if current_session.is_new else "old"

    return {"wsgi-middleware": Client(SessionMiddleware(bare, manager), use_cookies=False),
            "flask": Client(app, use_cookies=False)}


ADAPTER_CLIENTS: dict[str, Any] = {}


@settings(SETTINGS, max_examples=max(50, SETTINGS.max_examples // 3))
@given(header=st.one_of(latin1_text, structured_headers(), noise_around_a_valid_cookie()),
       adapter=st.sampled_from(["wsgi-middleware", "flask"]), method=st.sampled_from(["GET", "POST"]))
def test_no_cookie_header_makes_either_adapter_answer_500(header: str, adapter: str, method: str) -> None:
    assume(all(ord(c) <= 0xFF for c in header))  # what a WSGI server can put in the environ
    if not ADAPTER_CLIENTS:
        ADAPTER_CLIENTS.update(_adapters())
    response = ADAPTER_CLIENTS[adapter].open("/", method=method, environ_overrides={"HTTP_COOKIE": header})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    for value in response.headers.getlist("Set-Cookie"):
        assert parse_set_cookie(value).name == NAME
