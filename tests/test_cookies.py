"""Reading the Cookie header (never raises, finds the session where it should) and writing Set-Cookie."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import EnvironHeaders, Headers

from kitsession_wsgi import MemoryStore, SessionManager, days_to_max_age
from kitsession_wsgi.cookies import encode_cookie_value

from session_helpers import CountingStore, parse_set_cookie, stored_session


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def manager(store: CountingStore, clock: Any) -> SessionManager:
    return SessionManager(store, keys=["k1", "k0"], clock=clock, path="/app", domain="example.com")


def environ(cookie: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.version": (1, 0), "REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    return env


# -- where the session is found ----------------------------------------------------------

# Each builder gets the valid "session=..." pair and returns what initialize_session receives.
FOUND: list[Any] = [
    pytest.param(lambda v: {"Cookie": v}, id="mapping"),
    pytest.param(lambda v: {"cookie": v}, id="mapping-lowercase"),
    pytest.param(lambda v: {"COOKIE": v}, id="mapping-uppercase"),
    pytest.param(lambda v: {"Accept": "*/*", "CoOkIe": v}, id="mapping-mixed-case"),
    pytest.param(lambda v: {"Cookie": v.encode("latin-1")}, id="mapping-bytes-value"),
    pytest.param(lambda v: {"Cookie": ["a=1", v]}, id="mapping-list-value"),
    pytest.param(lambda v: Headers([("Cookie", v)]), id="werkzeug-headers"),
    pytest.param(lambda v: Headers([("Cookie", "a=1"), ("cookie", v)]), id="werkzeug-headers-two-cookie-headers"),
    pytest.param(lambda v: EnvironHeaders(environ(v)), id="werkzeug-environ-headers"),
    pytest.param(lambda v: environ(v), id="wsgi-environ"),
    pytest.param(lambda v: environ(f"junk=\xff\xfe\x80; {v}"), id="environ-non-utf8-byte-in-other-cookie"),
    pytest.param(lambda v: environ(f"{v}; junk=\xff"), id="environ-non-utf8-byte-after"),
    pytest.param(lambda v: {"Cookie": f"junk=\u20ac\ud800; {v}"}, id="mapping-non-latin1-and-lone-surrogate"),
    pytest.param(lambda v: {"Cookie": f"a=\x01\x02\x7f; b=\x00; {v}"}, id="control-characters-elsewhere"),
    pytest.param(lambda v: {"Cookie": "; ".join([*(f"c{i}=v{i}" for i in range(5000)), v])}, id="5000-pairs-last"),
    pytest.param(lambda v: {"Cookie": "; ".join([v, *(f"c{i}=v{i}" for i in range(5000))])}, id="5000-pairs-first"),
    pytest.param(lambda v: {"Cookie": f"big={'a' * 65536}; {v}"}, id="64KB-other-value"),
    pytest.param(lambda v: {"Cookie": f"a=1;;; ;{v};;"}, id="stray-semicolons"),
    pytest.param(lambda v: {"Cookie": f"a=1;{v}"}, id="no-space-after-semicolon"),
    pytest.param(lambda v: {"Cookie": "  " + v.replace("=", " = ", 1) + "  "}, id="spaces-around-equals"),
    pytest.param(lambda v: {"Cookie": v.replace("=", '="', 1) + '"'}, id="quoted-value"),
    pytest.param(lambda v: {"Cookie": f"noequals; {v}"}, id="pair-without-equals"),
    pytest.param(lambda v: {"Cookie": f'x="unterminated; {v}'}, id="unterminated-quote-before"),
]


@pytest.mark.parametrize("build", FOUND)
def test_session_is_found(manager: SessionManager, store: CountingStore, build: Any) -> None:
    session, valid = stored_session(manager, store, data={"where": "here"})
    loaded = manager.initialize_session(build(valid))
    assert not loaded.is_new
    assert (loaded.handle, loaded.data) == (session.handle, {"where": "here"})
    assert manager.commit(loaded) is None


def test_duplicate_names_first_wins(manager: SessionManager, store: CountingStore) -> None:
    first, first_pair = stored_session(manager, store, data={"n": 1})
    second, second_pair = stored_session(manager, store, data={"n": 2})
    assert manager.initialize_session({"Cookie": f"{first_pair}; {second_pair}"}).handle == first.handle
    assert manager.initialize_session({"Cookie": f"{second_pair}; {first_pair}"}).handle == second.handle
    # across two Cookie headers too
    headers = Headers([("Cookie", second_pair), ("Cookie", first_pair)])
    assert manager.initialize_session(headers).handle == second.handle


def test_duplicate_names_a_forged_first_value_does_not_hide_the_valid_one(
    manager: SessionManager, store: CountingStore
) -> None:
    """Browsers send a cookie of a more specific path first: a bad value there must not log the user out."""
    original, valid = stored_session(manager, store)
    store.calls.clear()
    session = manager.initialize_session({"Cookie": f"session=s%3Aforged.sig; {valid}"})
    assert session.handle == original.handle
    assert store.calls["get"] == 1  # the forged value cost no store call


def test_sixteen_tossed_values_cost_no_store_call_and_hide_nothing(
    manager: SessionManager, store: CountingStore
) -> None:
    """Cookie tossing: forged values planted before ours are refused by shape or HMAC, not by the store."""
    original, valid = stored_session(manager, store)
    store.calls.clear()
    tossed = [f"session=s%3A{secrets.token_urlsafe(32)}.{'A' * 43}" for _ in range(8)]
    tossed += [f"session=junk{i}" for i in range(7)] + ["session=s%3A" + "x" * 5000 + "." + "B" * 43]
    session = manager.initialize_session({"Cookie": "; ".join(tossed + [valid])})
    assert session.handle == original.handle
    assert store.calls["get"] == 1
    assert manager.commit(session) is None, "the live session is served, not cleared"


def test_verified_candidates_are_capped(manager: SessionManager, store: CountingStore) -> None:
    """Values that verify cost a store read each: at most MAX_VERIFIED_CANDIDATES are tried."""
    from kitsession_wsgi._session_cookie import MAX_VERIFIED_CANDIDATES

    original, valid = stored_session(manager, store)
    unknown = [f"session={encode_cookie_value(manager.cookie_value(secrets.token_urlsafe(32)))}"
               for _ in range(MAX_VERIFIED_CANDIDATES)]
    store.calls.clear()
    session = manager.initialize_session({"Cookie": "; ".join(unknown + [valid])})
    assert session.is_new, "the live value came after the cap"
    assert store.calls["get"] <= 2 * MAX_VERIFIED_CANDIDATES  # a record read and a replaced-marker read each
    store.calls.clear()
    session = manager.initialize_session({"Cookie": "; ".join(unknown[1:] + [valid])})
    assert session.handle == original.handle


# -- where it must not be found -----------------------------------------------------------

NOT_FOUND: list[Any] = [
    pytest.param(lambda v: {}, id="empty-mapping"),
    pytest.param(lambda v: {"Cookie": ""}, id="empty-header"),
    pytest.param(lambda v: {"Cookie": None}, id="None-header"),
    pytest.param(lambda v: environ(None), id="environ-without-cookie"),
    pytest.param(lambda v: Headers(), id="empty-werkzeug-headers"),
    pytest.param(lambda v: {"Cookie": v.upper()}, id="name-is-case-sensitive"),
    pytest.param(lambda v: {"Cookie": "x" + v}, id="longer-name"),
    pytest.param(lambda v: {"Cookie": f'x="{v}"'}, id="inside-another-cookies-quoted-value"),
    pytest.param(lambda v: {"Set-Cookie": v}, id="set-cookie-header-is-not-cookie"),
    pytest.param(lambda v: {"Cookie": v[:-5]}, id="truncated"),
    pytest.param(lambda v: {"Cookie": v + "\x00"}, id="nul-appended"),
    pytest.param(lambda v: {"Cookie": v + "\xff"}, id="latin1-byte-appended"),
    pytest.param(lambda v: environ(v + "\xff\xfe"), id="environ-non-utf8-in-the-session-cookie"),
    pytest.param(lambda v: {"Cookie": f"session={'a' * 65536}"}, id="64KB-session-value"),
    pytest.param(lambda v: {"Cookie": f"session=s%3A{'a' * 65536}.{'b' * 43}"}, id="64KB-signed-looking"),
    pytest.param(lambda v: {"Cookie": "session=%"}, id="lone-percent"),
    pytest.param(lambda v: {"Cookie": "session=%ZZ%"}, id="bad-escape"),
    pytest.param(lambda v: {"Cookie": "session=%C3%28%ED%A0%80"}, id="invalid-utf8-escape"),
    pytest.param(lambda v: {"Cookie": "session=\u20ac\ud800"}, id="non-latin1-and-surrogate"),
    pytest.param(lambda v: {"Cookie": "session=" + "\x01\x02\x1f"}, id="control-characters"),
    pytest.param(lambda v: {"Cookie": 'session="'}, id="lone-quote"),
    pytest.param(lambda v: {"Cookie": 'session="\\'}, id="quote-backslash"),
    pytest.param(lambda v: {"Cookie": "=;=;=session"}, id="equals-soup"),
    pytest.param(lambda v: {"Cookie": 12345}, id="int-header-value"),
    pytest.param(lambda v: {"Cookie": [b"\xff\xfe", None]}, id="odd-list-value"),
]


@pytest.mark.parametrize("build", NOT_FOUND)
def test_bad_or_absent_cookie_is_an_anonymous_session(manager: SessionManager, store: CountingStore, build: Any) -> None:
    _, valid = stored_session(manager, store)
    session = manager.initialize_session(build(valid))
    assert session.is_new and session.handle is None and session.data == {}
    result = manager.commit(session)
    assert result is None or parse_set_cookie(result).is_removal
    assert store.writes() == 0


def test_a_cookie_that_does_not_verify_is_left_alone(manager: SessionManager) -> None:
    assert manager.commit(manager.initialize_session({"Cookie": "session=junk"})) is None


def test_a_verified_cookie_naming_no_live_session_is_cleared(manager: SessionManager) -> None:
    value = manager.cookie_value("an-id-the-store-never-held")
    result = manager.commit(manager.initialize_session({"Cookie": f"session={encode_cookie_value(value)}"}))
    cleared = parse_set_cookie(result)
    assert cleared.is_removal and cleared.attributes["path"] == "/app"


def test_no_cookie_no_set_cookie(manager: SessionManager) -> None:
    assert manager.commit(manager.initialize_session({"Cookie": "theme=dark"})) is None
    assert manager.commit(manager.initialize_session({})) is None


@pytest.mark.parametrize(
    "header", ["sessionid=abc", "mysession=1", "theme=session"], ids=["prefix-name", "suffix-name", "in-a-value"]
)
def test_unrelated_cookie_containing_the_name_gets_no_set_cookie(manager: SessionManager, header: str) -> None:
    assert manager.commit(manager.initialize_session({"Cookie": header})) is None


def test_initialize_session_rejects_non_mappings_as_a_programming_error(manager: SessionManager) -> None:
    with pytest.raises(TypeError, match="initialize_session"):
        manager.initialize_session([("Cookie", "session=x")])


@settings(max_examples=300, deadline=None)
@given(header=st.text())
def test_any_text_header_never_raises(header: str) -> None:
    manager = SessionManager(MemoryStore(), keys="k")
    session = manager.initialize_session({"Cookie": header})
    assert session.is_new
    result = manager.commit(session)
    assert result is None or parse_set_cookie(result).is_removal


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(), signed=st.booleans())
def test_any_wsgi_bytes_never_raise(raw: bytes, signed: bool) -> None:
    manager = SessionManager(MemoryStore(), keys="k" if signed else None)
    session = manager.initialize_session(environ("session=" + raw.decode("latin-1")))
    assert session.is_new
    manager.commit(session)


# -- Set-Cookie ------------------------------------------------------------------------


def test_set_session_cookie_carries_the_sessions_expiry(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, max_age=3600)
    session = manager.create_session(data={"a": 1})
    cookie = parse_set_cookie(manager.set_session_cookie(session))
    assert cookie.max_age == 3600
    assert cookie.expires == session.created_at + 3600 == session.expires_at

    clock.advance(1000)
    later = parse_set_cookie(manager.set_session_cookie(session))
    assert later.max_age == 2600
    assert later.expires == session.created_at + 3600


def test_set_session_cookie_for_a_bare_id_lasts_max_age_from_now(clock: Any) -> None:
    manager = SessionManager(MemoryStore(), clock=clock, max_age=600)
    cookie = parse_set_cookie(manager.set_session_cookie("an-id"))
    assert (cookie.value, cookie.max_age, cookie.expires) == ("an-id", 600, clock() + 600)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, {"path": "/", "secure": True, "httponly": True, "samesite": "Strict"}, id="defaults"),
        pytest.param(
            {"path": "/app", "domain": "example.com", "samesite": "Lax"},
            {"path": "/app", "domain": "example.com", "secure": True, "httponly": True, "samesite": "Lax"},
            id="configured",
        ),
        pytest.param(
            {"secure": False, "httponly": False, "samesite": "lax"},
            {"path": "/", "samesite": "Lax"},
            id="insecure-dev",
        ),
    ],
)
def test_cookie_attributes_follow_the_options(options: dict[str, Any], expected: dict[str, Any]) -> None:
    manager = SessionManager(MemoryStore(), name="sid", **options)
    for header in (manager.set_session_cookie("x"), manager.remove_session_cookie()):
        cookie = parse_set_cookie(header)
        assert cookie.name == "sid"
        attributes = {k: v for k, v in cookie.attributes.items() if k not in ("expires", "max-age")}
        assert attributes == expected


def test_remove_session_cookie_expires_it_now(clock: Any) -> None:
    manager = SessionManager(MemoryStore(), clock=clock, path="/app", domain="example.com", name="__Secure-sid")
    cookie = parse_set_cookie(manager.remove_session_cookie())
    assert cookie.name == "__Secure-sid"
    assert cookie.raw_value == ""
    assert cookie.max_age == 0
    assert cookie.expires < clock()
    assert cookie.expires < time.time()
    assert (cookie.attributes["path"], cookie.attributes["domain"]) == ("/app", "example.com")


def test_listed_session_has_no_id_to_put_in_a_cookie() -> None:
    manager = SessionManager(MemoryStore())
    manager.create_session(user_id=1, data={"a": 1})
    (listed,) = manager.get_sessions_for_user(1)
    assert listed.id is None
    with pytest.raises(ValueError, match="no id"):
        manager.set_session_cookie(listed)


@pytest.mark.parametrize(
    ("days", "seconds"), [(14, 1209600), (1, 86400), (0.5, 43200), (30, 2592000)], ids=["14", "1", "half", "30"]
)
def test_days_to_max_age_is_seconds(days: float, seconds: int) -> None:
    assert days_to_max_age(days) == seconds


def test_days_to_max_age_defaults_to_fourteen_days() -> None:
    assert days_to_max_age() == 1209600 == days_to_max_age(14)
    assert isinstance(days_to_max_age(), int)
