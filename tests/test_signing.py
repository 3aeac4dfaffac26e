"""Cookie signing: the cookie-parser format, strict verification, key rotation, Node interop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

from kitsession_wsgi import SessionManager
from kitsession_wsgi.signing import CookieSigner, normalize_keys

import node_cookie_signature
from session_helpers import CountingStore, node_signed_value, parse_set_cookie, stored_session


def encode_uri_component(value: str) -> str:
    """JavaScript's ``encodeURIComponent`` (what ``cookie.serialize`` applies)."""
    return quote(value, safe="-_.!~*'()")


# -- CookieSigner ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "session_id"),
    [
        ("keyboard cat", "abc"),
        ("sécret-🔑", "ünïcödé"),
        ("k" * 200, "a+b/c=d"),
        ("k", ""),
    ],
    ids=["ascii", "non-ascii", "long-key", "empty-id"],
)
def test_sign_is_cookie_signature_format(key: str, session_id: str) -> None:
    signed = CookieSigner(normalize_keys(key)).sign(session_id)
    assert signed == node_signed_value(key, session_id)
    assert signed.startswith("s:" + session_id + ".")
    assert len(signed.rsplit(".", 1)[1]) == 43
    assert not signed.endswith("=")


def test_unsign_reports_which_key_verified() -> None:
    signer = CookieSigner(normalize_keys(["k3", "k2", "k1"]))
    for index, key in enumerate(["k3", "k2", "k1"]):
        result = signer.unsign(node_signed_value(key, "the-id"))
        assert result is not None
        assert (result.session_id, result.key_index) == ("the-id", index)
    assert signer.unsign(node_signed_value("k0", "the-id")) is None


def test_ids_containing_dots_verify() -> None:
    signer = CookieSigner(normalize_keys("k"))
    result = signer.unsign(signer.sign("a.b.c"))
    assert result is not None and result.session_id == "a.b.c"


def _flip_first_letter(text: str) -> str:
    for index, char in enumerate(text):
        if char.isalpha():
            return text[:index] + char.swapcase() + text[index + 1 :]
    raise AssertionError(f"no letter in {text!r}")


def _replace_char(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


Forgery = Callable[[str, str, str], str]

#: (id, forge(session_id, mac, other_session_mac) -> decoded cookie value)
FORGERIES: list[Any] = [
    pytest.param(lambda i, m, o: f"s:{_replace_char(i, 0)}.{m}", id="tampered-id"),
    pytest.param(lambda i, m, o: f"s:{i}x.{m}", id="id-with-suffix"),
    pytest.param(lambda i, m, o: f"s:{i}.{_replace_char(m, 10)}", id="tampered-mac"),
    pytest.param(lambda i, m, o: f"s:{i}.{m[:-1]}", id="truncated-mac-by-one"),
    pytest.param(lambda i, m, o: f"s:{i}.{m[:16]}", id="truncated-mac-to-16"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}=", id="padded-one"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}==", id="padded-two"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}x", id="junk-suffix-char"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}.junk", id="junk-suffix-dotted"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}{m}", id="mac-twice"),
    pytest.param(lambda i, m, o: f"s:{i}.{m.swapcase()}", id="case-flipped-mac"),
    pytest.param(lambda i, m, o: f"s:{i}.{_flip_first_letter(m)}", id="one-letter-case-flipped"),
    pytest.param(lambda i, m, o: f"S:{i}.{m}", id="uppercase-prefix"),
    pytest.param(lambda i, m, o: f"s:{i}.", id="empty-signature"),
    pytest.param(lambda i, m, o: f"s:{i}", id="no-signature"),
    pytest.param(lambda i, m, o: f"s:.{m}", id="empty-id"),
    pytest.param(lambda i, m, o: i, id="unsigned-bare-id"),
    pytest.param(lambda i, m, o: f"{i}.{m}", id="signature-without-prefix"),
    pytest.param(lambda i, m, o: f"s:{i}.{o}", id="other-sessions-signature"),
    pytest.param(lambda i, m, o: f"s:{i}.{m.replace('+', '-').replace('/', '_')}", id="base64url-alphabet"),
    pytest.param(lambda i, m, o: f"s:{i}.{m} ", id="trailing-space"),
    pytest.param(lambda i, m, o: f"s:{i}.{m}\x00", id="trailing-nul"),
    pytest.param(lambda i, m, o: f"s:{i}\x00.{m}", id="nul-in-id"),
    pytest.param(lambda i, m, o: f"s:{i}.{m[:-2]}\u00e9\u00e9", id="non-ascii-mac"),
]

# A fixed id whose signature under KEY contains both "+" and "/", so the base64url
# forgery really differs from the genuine MAC.
KEY = "current-key"
SESSION_ID = next(
    f"fixed-session-id-{n}" for n in range(10_000)
    if {"+", "/"} <= set(node_signed_value(KEY, f"fixed-session-id-{n}").rsplit(".", 1)[1])
)
OTHER_ID = "another-session-id"


@pytest.mark.parametrize("forge", FORGERIES)
def test_signer_rejects_forgeries(forge: Forgery) -> None:
    mac = node_signed_value(KEY, SESSION_ID).rsplit(".", 1)[1]
    other = node_signed_value(KEY, OTHER_ID).rsplit(".", 1)[1]
    assert CookieSigner(normalize_keys(KEY)).unsign(forge(SESSION_ID, mac, other)) is None


@pytest.mark.parametrize("forge", FORGERIES)
def test_forged_cookie_costs_no_store_call_and_is_left_alone(forge: Forgery) -> None:
    """Neither trusted nor cleared (as Flask and Starlette do): clearing would only turn a
    signing-key mistake into a logout of every user."""
    store = CountingStore(ids=[SESSION_ID, OTHER_ID])
    manager = SessionManager(store, keys=KEY, path="/app", domain="example.com")
    session, genuine_header = stored_session(manager, store)
    other, _ = stored_session(manager, store)
    assert (session.id, other.id) == (SESSION_ID, OTHER_ID)
    mac = node_signed_value(KEY, SESSION_ID).rsplit(".", 1)[1]
    other_mac = node_signed_value(KEY, OTHER_ID).rsplit(".", 1)[1]
    header = f"session={encode_uri_component(forge(SESSION_ID, mac, other_mac))}"

    forged = manager.initialize_session({"Cookie": header})

    assert forged.is_new and forged.id is None and forged.data == {}
    assert store.calls["get"] == 0
    assert manager.commit(forged) is None
    assert store.writes() == 0
    assert store.writes() == 0
    # the genuine cookie still works: a forgery destroys nothing
    assert manager.initialize_session({"Cookie": genuine_header}).handle == session.handle


def test_genuine_cookie_is_accepted_by_the_same_fixture() -> None:
    """The forgery tests' control: the untampered value does load the session."""
    store = CountingStore(ids=[SESSION_ID])
    manager = SessionManager(store, keys=KEY)
    session, _ = stored_session(manager, store)
    header = f"session={encode_uri_component(node_signed_value(KEY, SESSION_ID))}"
    loaded = manager.initialize_session({"Cookie": header})
    assert not loaded.is_new and loaded.handle == session.handle and loaded.id == SESSION_ID
    assert manager.commit(loaded) is None


# -- unsigned mode -------------------------------------------------------------------------


def test_unsigned_mode_uses_the_bare_id() -> None:
    store = CountingStore()
    manager = SessionManager(store)
    session, header = stored_session(manager, store)
    assert session.id is not None
    assert parse_set_cookie(manager.set_session_cookie(session)).raw_value == session.id
    assert manager.initialize_session({"Cookie": header}).handle == session.handle
    # a signed-looking value is just an unknown id there
    signed = encode_uri_component(node_signed_value("k", session.id))
    assert manager.initialize_session({"Cookie": f"session={signed}"}).is_new


@pytest.mark.parametrize(
    "value", ["x" * 257, "a\x07b", "tab\there"], ids=["over-256", "control-char", "tab"]
)
def test_unsigned_mode_rejects_implausible_ids_without_a_store_call(value: str) -> None:
    store = CountingStore()
    manager = SessionManager(store)
    session = manager.initialize_session({"Cookie": f"session={encode_uri_component(value)}"})
    assert session.is_new
    assert store.calls["get"] == 0


# -- rotation ------------------------------------------------------------------------------


def _old_key_cookie(store: CountingStore) -> tuple[str, str, str]:
    """(id, handle, Cookie header) of a session signed by a manager that only knows "old"."""
    old_manager = SessionManager(store, keys=["old"])
    session, header = stored_session(old_manager, store)
    assert session.id is not None and session.handle is not None
    return session.id, session.handle, header


@pytest.mark.parametrize(
    "keys", [["new", "old"], ["newest", "new", "old"], [b"new", "old"]], ids=["two-keys", "three-keys", "bytes-and-str"]
)
def test_old_key_verifies_and_commit_resigns_with_the_new_key(keys: list[str | bytes]) -> None:
    store = CountingStore()
    session_id, handle, header = _old_key_cookie(store)
    manager = SessionManager(store, keys=keys)

    session = manager.initialize_session({"Cookie": header})
    assert not session.is_new and session.handle == handle and session.data == {"n": 1}

    resigned = parse_set_cookie(manager.commit(session))
    newest = keys[0]
    assert resigned.value == node_signed_value(newest, session_id)
    assert resigned.raw_value == encode_uri_component(node_signed_value(newest, session_id))
    assert resigned.max_age > 0
    assert store.writes() == 0  # re-signing is a cookie matter: no store write

    only_new = SessionManager(store, keys=[newest])
    assert only_new.initialize_session({"Cookie": resigned.request_header}).handle == handle
    # once re-signed, the next response sends nothing more
    again = manager.initialize_session({"Cookie": resigned.request_header})
    assert manager.commit(again) is None


def test_resigned_cookie_keeps_the_sessions_expiry(clock: Any) -> None:
    store = CountingStore()
    old = SessionManager(store, keys=["old"], clock=clock, max_age=1000)
    session, header = stored_session(old, store)
    clock.advance(400)
    manager = SessionManager(store, keys=["new", "old"], clock=clock, max_age=1000)
    resigned = parse_set_cookie(manager.commit(manager.initialize_session({"Cookie": header})))
    assert resigned.max_age == 600
    assert resigned.expires == session.created_at + 1000


def test_cookie_signed_by_a_removed_key_is_rejected() -> None:
    store = CountingStore()
    _, handle, header = _old_key_cookie(store)
    manager = SessionManager(store, keys=["new"])
    session = manager.initialize_session({"Cookie": header})
    assert session.is_new
    assert store.calls["get"] == 0
    assert manager.commit(session) is None  # not cleared either: the key may come back
    assert store.get(handle) is not None  # not deleted: another deployment may still know the key


# -- interoperability with Node's cookie-signature ------------------------------------------

NODE_SECRETS = ["keyboard cat", "sécret ключ 🔑", "k" * 100, "p;a=s+s/w,o r\"d"]
NODE_IDS = [
    "n0vQ3Yd0qfO8mE4o1iWq3y8fJz5pZbX1oUeYl3cTq4k",  # token_urlsafe shape
    "a+b/c=d==",
    "with space;comma,and\"quote",
    "ünïcödé-✓-🍪",
    "%41-literal-percent",
    "dots.in.the.id",
    "unreserved-_.!~*'()",
]


@pytest.fixture(scope="module")
def node_vectors() -> list[tuple[str, str, str, str]]:
    """(secret, id, signed, encoded) from the real npm cookie-signature package."""
    pairs = [(secret, session_id) for secret in NODE_SECRETS for session_id in NODE_IDS]
    version, signed = node_cookie_signature.run([("sign", secret, session_id) for secret, session_id in pairs])
    assert version.startswith("1."), version
    _, encoded = node_cookie_signature.run([("encode", "", value) for value in signed])
    return [(secret, session_id, s, e) for (secret, session_id), s, e in zip(pairs, signed, encoded)]


def _vector_ids() -> list[str]:
    return [f"secret{s}-id{i}" for s in range(len(NODE_SECRETS)) for i in range(len(NODE_IDS))]


@pytest.mark.parametrize("index", range(len(NODE_SECRETS) * len(NODE_IDS)), ids=_vector_ids())
def test_our_cookie_equals_nodes(node_vectors: list[tuple[str, str, str, str]], index: int) -> None:
    secret, session_id, node_signed, node_encoded = node_vectors[index]
    assert (secret, session_id) == (NODE_SECRETS[index // len(NODE_IDS)], NODE_IDS[index % len(NODE_IDS)])
    assert CookieSigner(normalize_keys(secret)).sign(session_id) == node_signed

    store = CountingStore(ids=[session_id])
    manager = SessionManager(store, keys=secret)
    session = manager.create_session(data={"from": "python"})
    assert session.id == session_id
    assert parse_set_cookie(manager.set_session_cookie(session)).raw_value == node_encoded
    assert parse_set_cookie(manager.set_session_cookie(session_id)).raw_value == node_encoded


@pytest.mark.parametrize("index", range(len(NODE_SECRETS) * len(NODE_IDS)), ids=_vector_ids())
def test_nodes_cookie_verifies_here(node_vectors: list[tuple[str, str, str, str]], index: int) -> None:
    secret, session_id, _, node_encoded = node_vectors[index]
    store = CountingStore(ids=[session_id])
    manager = SessionManager(store, keys=["newer-key", secret])
    stored = manager.create_session(data={"from": "node"})

    loaded = manager.initialize_session({"Cookie": f"other=1; session={node_encoded}"})
    assert not loaded.is_new
    assert (loaded.id, loaded.handle, loaded.data) == (session_id, stored.handle, {"from": "node"})
    # verified by the old (node's) key: re-signed with keys[0]
    assert parse_set_cookie(manager.commit(loaded)).value == node_signed_value("newer-key", session_id)
    # a manager that never knew node's secret does not accept it
    assert SessionManager(store, keys="other").initialize_session({"Cookie": f"session={node_encoded}"}).is_new


def test_node_verifies_our_cookies_and_rejects_tampered_ones() -> None:
    """The other direction: what we sign, express-session's cookie-signature accepts, and only that."""
    cases = []
    for secret in NODE_SECRETS:
        signer = CookieSigner(normalize_keys(secret))
        for session_id in NODE_IDS:
            ours = signer.sign(session_id)
            last = ours[-1]
            tampered = ours[:-1] + ("A" if last != "A" else "B")
            cases += [("unsign", secret, ours), ("unsign", secret, tampered), ("unsign", "other", ours)]
    _, answers = node_cookie_signature.run(cases)
    expected = [answer for session_id in NODE_IDS for answer in (session_id, False, False)] * len(NODE_SECRETS)
    assert answers == expected


def test_the_session_helpers_signing_oracle_is_the_npm_package() -> None:
    """session_helpers.node_signed_value (used by many tests for speed) equals the real package."""
    pairs = [(secret, session_id) for secret in [*NODE_SECRETS, "k"] for session_id in [*NODE_IDS, "the-id"]]
    _, signed = node_cookie_signature.run([("sign", secret, session_id) for secret, session_id in pairs])
    assert [node_signed_value(secret, session_id) for secret, session_id in pairs] == signed
