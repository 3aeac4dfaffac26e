"""Property tests (hypothesis) for the ``Authorization: Bearer`` path, as
``tests/test_properties.py`` does for the cookie.

* Any ``Authorization`` header, however hostile, never makes
  ``initialize_session`` raise, reaches the store only for a token whose
  signature verifies (only the test's own ids are ever signed), and a request
  using the Bearer scheme never gets a ``Set-Cookie``, not even with a cookie.
* The scheme in any case and any run of spaces before the token never hide it.
* ``session_token`` -> ``Authorization`` -> the store round-trips any URL-safe id
  with every key of a rotation.
* Neither adapter answers 500 to any header.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers

from kitsession_wsgi import SessionManager, session_key
from kitsession_wsgi.cookies import encode_cookie_value

from session_helpers import CountingStore, node_signed_value, node_token_value, parse_set_cookie
from test_properties import SETTINGS, RecordingStore, any_text, latin1_text

NAME = "session"
KEYS = ["current-key", "previous-key"]


def token_for(session_id: str, key: str = KEYS[0]) -> str:
    return node_token_value(key, session_id)


class World:
    """A bearer manager over a recording store: a live token session, a live cookie session, an unknown id."""

    def __init__(self) -> None:
        self.store = RecordingStore()
        self.manager = SessionManager(self.store, keys=KEYS, secure=False, bearer=True)
        live = self.manager.create_session(data={"user": "alice"})
        browser = self.manager.create_session(data={"user": "bob"})
        assert live.id is not None and browser.id is not None
        self.live_id = live.id
        self.cookie = f"{NAME}={encode_cookie_value(node_signed_value(KEYS[0], browser.id))}"
        self.cookie_key = session_key(browser.id)
        self.unknown_id = secrets.token_urlsafe(32)
        #: every id ever signed for a token here: the only keys a Bearer request may look up
        self.token_keys = {session_key(self.live_id), session_key(self.unknown_id)}
        self.store.reset()
        self.store.looked_up.clear()


WORLD = World()

#: pieces that matter to the scheme parser and to the token format
PIECES = ["Bearer", "bearer", "BEARER", "Basic", " ", "  ", "\t", ",", ", ", "=", "==", ".", "s:", "s%3A", "%",
          "+", "/", "-", "_", "~", "\x00", "\x7f", "\r\n", "é", "\u2028", "🍪", "\udcff", "A" * 43, "A" * 300]


@st.composite
def structured_authorization(draw: st.DrawFn) -> str:
    """Headers made of scheme names, separators, token fragments and real tokens, in any order."""
    world = WORLD
    live, unknown, old = token_for(world.live_id), token_for(world.unknown_id), token_for(world.live_id, KEYS[1])
    fragments = st.one_of(
        st.sampled_from(PIECES),
        st.sampled_from([live, unknown, old, world.live_id, live[: len(live) // 2], live[len(live) // 2:],
                         live.swapcase(), live + "x", live[:-1], "Bearer " + live]),
        st.text(max_size=12),
    )
    return "".join(draw(st.lists(fragments, max_size=12)))


any_authorization = st.one_of(any_text, latin1_text, structured_authorization())


def _is_bearer_scheme(header: str) -> bool:
    stripped = header.strip(" \t")
    return stripped[:6].lower() == "bearer" and stripped[6:7] in (" ", "")


def _source(header: str, cookie: str | None, form: str) -> Any:
    if form == "environ":
        environ = {"HTTP_AUTHORIZATION": header, "wsgi.version": (1, 0)}
        if cookie is not None:
            environ["HTTP_COOKIE"] = cookie
        return environ
    if form == "Headers":
        # werkzeug refuses to build Headers holding a line break: no server hands one over
        assume("\n" not in header and "\r" not in header)
        return Headers([("Authorization", header)] + ([("Cookie", cookie)] if cookie is not None else []))
    return {"authorization": header, **({"cookie": cookie} if cookie is not None else {})}


@SETTINGS
@given(header=any_authorization, with_cookie=st.booleans(), form=st.sampled_from(["environ", "mapping", "Headers"]))
def test_any_authorization_header_never_raises_and_reaches_the_store_only_with_a_valid_token(
    header: str, with_cookie: bool, form: str
) -> None:
    world = WORLD
    world.store.looked_up.clear()
    session = world.manager.initialize_session(_source(header, world.cookie if with_cookie else None, form))
    looked_up = set(world.store.looked_up)
    if _is_bearer_scheme(header):
        assert looked_up <= world.token_keys, "a Bearer request looked up something it did not present"
        assert session.is_new or session.transport == "header"
        if session.is_new:
            session.data["w"] = 1  # even a new session is answered with a token, never a cookie
            assert world.manager.commit(session) is None
            assert dict(world.manager.bearer_headers(session))["Session-Token"]
            world.manager.remove_session(session)
        else:
            assert session.data == {"user": "alice"}
            assert world.manager.commit(session) is None
    else:
        assert looked_up <= {world.cookie_key}, "another scheme must leave the request to its cookie"
        assert session.transport in (None, "cookie")
    world.store.reset()


@SETTINGS
@given(scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]), spaces=st.integers(1, 8),
       lead=st.sampled_from(["", " ", "\t", " \t "]), trail=st.sampled_from(["", " ", "\t"]),
       old_key=st.booleans())
def test_any_case_of_the_scheme_and_any_run_of_spaces_never_hide_a_valid_token(
    scheme: str, spaces: int, lead: str, trail: str, old_key: bool
) -> None:
    world = WORLD
    token = token_for(world.live_id, KEYS[1] if old_key else KEYS[0])
    session = world.manager.initialize_session({"Authorization": f"{lead}{scheme}{' ' * spaces}{token}{trail}",
                                                "Cookie": world.cookie})
    assert session.transport == "header" and session.data == {"user": "alice"}
    assert world.manager.commit(session) is None
    headers = dict(world.manager.bearer_headers(session))
    assert headers.get("Session-Token") == (token_for(world.live_id) if old_key else None)


url_safe_ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=200)
rotations = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4, unique=True)


@SETTINGS
@given(session_id=url_safe_ids, keys=rotations, signer_index=st.integers(0, 3))
def test_a_token_round_trips_through_the_header_and_the_store_with_any_key_of_a_rotation(
    session_id: str, keys: list[str], signer_index: int
) -> None:
    assume(signer_index < len(keys))
    store = CountingStore(ids=[session_id])
    issuing = SessionManager(store, keys=keys[signer_index:], secure=False, bearer=True)
    session = issuing.create_session(user_id=1)
    token = issuing.session_token(session)
    assert token == token_for(session_id, keys[signer_index])
    reading = SessionManager(store, keys=keys, secure=False, bearer=True)
    read = reading.initialize_session({"Authorization": f"Bearer {token}"})
    assert read.id == session_id and read.user_id == 1 and read.transport == "header"
    assert reading.commit(read) is None
    resigned = dict(reading.bearer_headers(read)).get("Session-Token")
    assert resigned == (token_for(session_id, keys[0]) if signer_index else None)


# -- through both adapters -------------------------------------------------------------------------


def _adapters() -> dict[str, Any]:
    import flask
    from werkzeug.test import Client

    from kitsession_wsgi.flask import KitSession, current_session
    from kitsession_wsgi.wsgi import SessionMiddleware

    manager = SessionManager(RecordingStore(), keys=KEYS, secure=False, bearer=True)

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = environ["kitsession"].session
        if environ["REQUEST_METHOD"] == "POST":
            session.data["w"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"new" if session.is_new else b"old"]

    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY=KEYS[0], KITSESSION_BEARER=True)
    KitSession(app, store=RecordingStore(), secure=False)

    @app.route("/", methods=["GET", "POST"])
    def view() -> str:
        if flask.request.method == "POST":
            flask.session["w"] = 1
        return "new" if current_session.is_new else "old"

    return {"wsgi-middleware": Client(SessionMiddleware(bare, manager), use_cookies=False),
            "flask": Client(app, use_cookies=False)}


ADAPTER_CLIENTS: dict[str, Any] = {}


@settings(SETTINGS, max_examples=max(50, SETTINGS.max_examples // 3))
@given(header=st.one_of(latin1_text, structured_authorization()), with_cookie=st.booleans(),
       adapter=st.sampled_from(["wsgi-middleware", "flask"]), method=st.sampled_from(["GET", "POST"]))
def test_no_authorization_header_makes_either_adapter_answer_500_or_set_a_cookie(
    header: str, with_cookie: bool, adapter: str, method: str
) -> None:
    assume(all(ord(c) <= 0xFF for c in header))  # what a WSGI server can put in the environ
    if not ADAPTER_CLIENTS:
        ADAPTER_CLIENTS.update(_adapters())
    environ = {"HTTP_AUTHORIZATION": header}
    if with_cookie:
        environ["HTTP_COOKIE"] = f"{NAME}=s%3Aforged.{'A' * 43}"
    response = ADAPTER_CLIENTS[adapter].open("/", method=method, environ_overrides=environ)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "Authorization" in response.headers.get("Vary", "")
    set_cookies = response.headers.getlist("Set-Cookie")
    if _is_bearer_scheme(header):
        assert set_cookies == [], "a Bearer request got a cookie"
        if method == "POST":
            assert response.headers.get("Session-Token")
    for value in set_cookies:
        assert parse_set_cookie(value).name == NAME
