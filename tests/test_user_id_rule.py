"""One user-id rule, in the core, before any store is asked: the same answer on every store.

The rule (``kitsession_wsgi.session.validate_user_id``): an int (not bool) or a
non-empty str, at most ``USER_ID_MAX_BYTES`` (200) bytes of UTF-8, no control
characters, no lone surrogates.  Before it, each store checked on its own: a NUL
was a 500 on PostgreSQL, an id over 253 bytes failed only on the SQL stores.

Every route a user id takes is tried with every bad id on every store, through a
pass-through store that records calls, so "refused before any store is asked"
is checked, not assumed.  Ids at the limit and non-ASCII ids round-trip and are
revocable on every store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import (
    USER_ID_MAX_BYTES,
    InvalidUserId,
    KitSessionError,
    Session,
    SessionManager,
    SessionRecord,
    SessionStore,
    SetResult,
)
from kitsession_wsgi.session import user_id_from_data, validate_user_id
from kitsession_wsgi.stores.base import UserId
from kitsession_wsgi.wsgi import SessionMiddleware

from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)


class RecordingStore(SessionStore):
    """Pass-through to a real store that notes every call by name (instrumentation, not a mock)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def create_id(self) -> str:
        return self.inner.create_id()

    def get(self, key: str) -> SessionRecord | None:
        self.calls.append("get")
        return self.inner.get(key)

    def create(self, record: SessionRecord) -> bool:
        self.calls.append("create")
        return self.inner.create(record)

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        self.calls.append("set")
        return self.inner.set(record, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        self.calls.append("touch")
        return self.inner.touch(key, updated_at, expires_at)

    def delete(self, key: str) -> bool:
        self.calls.append("delete")
        return self.inner.delete(key)

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        self.calls.append("delete_all_for_user")
        return self.inner.delete_all_for_user(user_id, except_key)

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        self.calls.append("get_all_for_user")
        return self.inner.get_all_for_user(user_id)

    def get_all(self) -> list[SessionRecord]:
        self.calls.append("get_all")
        return self.inner.get_all()

    def purge_expired(self, now: float) -> int:
        self.calls.append("purge_expired")
        return self.inner.purge_expired(now)


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[RecordingStore]:
    with open_store(request.param, tmp_path, store_servers) as real:
        yield RecordingStore(real)


@pytest.fixture
def manager(store: RecordingStore) -> SessionManager:
    return SessionManager(store, keys=["user-id-rule"])


def cookie_for(manager: SessionManager, session: Session) -> str:
    return manager.set_session_cookie(session).split(";", 1)[0]


#: (id, why it is refused); each breaks exactly one part of the rule
BAD_IDS: list[Any] = [
    pytest.param("alice\x00", "control_character", id="nul"),
    pytest.param("\x00", "control_character", id="only-nul"),
    pytest.param("alice\nINFO forged log line", "control_character", id="newline"),
    pytest.param("tab\there", "control_character", id="tab"),
    pytest.param("esc\x1b[31m", "control_character", id="escape"),
    pytest.param("del\x7f", "control_character", id="del"),
    pytest.param("c1\x85", "control_character", id="c1-next-line"),
    pytest.param("u" * (USER_ID_MAX_BYTES + 1), "too_long", id="ascii-one-over"),
    # 101 characters, 202 bytes: the limit is in bytes, not characters
    pytest.param("\u00e9" * 101, "too_long", id="non-ascii-over-in-bytes"),
    pytest.param("x" * 10_000, "too_long", id="ascii-10k"),
    pytest.param(10**USER_ID_MAX_BYTES, "too_long", id="int-201-digits"),
    pytest.param(-(10 ** (USER_ID_MAX_BYTES - 1)), "too_long", id="negative-int-201-chars"),
    pytest.param(10**5000, "too_long", id="int-beyond-str-conversion-limit"),
    pytest.param("\ud800", "surrogate", id="lone-surrogate"),
    pytest.param("", "empty", id="empty"),
    pytest.param(True, "type", id="bool"),
    pytest.param(1.5, "type", id="float"),
    pytest.param(b"alice", "type", id="bytes"),
    pytest.param(["alice"], "type", id="list"),
]

#: ids at the edges of the rule, accepted on every store
GOOD_IDS: list[Any] = [
    pytest.param("u" * USER_ID_MAX_BYTES, id="ascii-exactly-max"),
    pytest.param("\u00e9" * (USER_ID_MAX_BYTES // 2), id="two-byte-chars-exactly-max-bytes"),
    pytest.param("\U0001f469\u200d\U0001f4bb" * (USER_ID_MAX_BYTES // 11), id="emoji-zwj-near-max"),
    pytest.param("Jos\u00e9 \u7528\u6237 \u0645\u0633\u062a\u062e\u062f\u0645", id="non-ascii-words"),
    pytest.param("user@example.com", id="email"),
    pytest.param(" spaced ", id="spaces-kept"),
    pytest.param(10**USER_ID_MAX_BYTES - 1, id="int-exactly-max-digits"),
    pytest.param(-(10 ** (USER_ID_MAX_BYTES - 1) - 1), id="negative-int-exactly-max"),
    pytest.param(0, id="zero"),
]


def refused(reason: str, call: Callable[[], object]) -> InvalidUserId:
    with pytest.raises(InvalidUserId) as info:
        call()
    error = info.value
    assert error.reason == reason
    # one class for every store, caught as the family and as the built-ins callers used before
    assert isinstance(error, KitSessionError) and isinstance(error, ValueError) and isinstance(error, TypeError)
    return error


# -- every route, every store: refused before the store is asked ----------------------------------


@pytest.mark.parametrize(("bad", "reason"), BAD_IDS)
def test_every_route_refuses_a_bad_user_id_before_any_store_call(
    manager: SessionManager, store: RecordingStore, bad: Any, reason: str
) -> None:
    owner = manager.create_session(user_id=1, data={"n": 1})
    store.calls.clear()

    refused(reason, lambda: manager.create_session(user_id=bad, data={"n": 1}))
    refused(reason, lambda: manager.new_session(owner, user_id=bad))
    refused(reason, lambda: manager.remove_all_sessions_for_user(bad))
    refused(reason, lambda: manager.get_sessions_for_user(bad))
    refused(reason, lambda: Session(user_id=bad))
    session = Session()
    refused(reason, lambda: setattr(session, "user_id", bad))
    assert session.user_id is None
    assert store.calls == []

    # The data keys name the user too ("empty" and wrong types are "not an id" there: see below).
    if reason not in ("empty", "type"):
        for key in ("id", "user_id", "userId"):
            error = refused(reason, lambda: setattr(Session(), "data", {key: bad}))
            assert error.argument == f"data[{key!r}]"
            refused(reason, lambda: manager.create_session(data={key: bad}))
            refused(reason, lambda: manager.new_session(owner, data={key: bad}))
        assert store.calls == []

    # The user was not touched and is still listed and revocable.
    assert [s.handle for s in manager.get_sessions_for_user(1)] == [owner.handle]


#: the bad ids a data key can hold (an empty string or another type is "not an id" there)
BAD_DATA_IDS = [p for p in BAD_IDS if p.values[1] not in ("empty", "type")]


@pytest.mark.parametrize(
    ("bad", "reason"),
    # (an int past Python's str conversion limit cannot even be serialised: SessionDataError first)
    [p for p in BAD_DATA_IDS if p.id != "int-beyond-str-conversion-limit"],
)
@pytest.mark.parametrize("key", ["id", "user_id", "userId"])
def test_a_bad_user_id_written_in_place_into_stored_data_is_refused_at_commit(
    manager: SessionManager, store: RecordingStore, bad: Any, reason: str, key: str
) -> None:
    stored = manager.create_session(data={"n": 1})
    header = {"Cookie": cookie_for(manager, stored)}
    loaded = manager.initialize_session(header)
    loaded.data[key] = bad
    store.calls.clear()
    refused(reason, lambda: manager.commit(loaded))
    assert "set" not in store.calls and "create" not in store.calls
    again = manager.initialize_session(header)
    assert again.data == {"n": 1} and again.user_id is None


@pytest.mark.parametrize(("bad", "reason"), BAD_DATA_IDS[:1] + BAD_DATA_IDS[7:8])
def test_a_bad_user_id_written_in_place_on_a_first_visit_is_refused_at_commit(
    manager: SessionManager, store: RecordingStore, bad: Any, reason: str
) -> None:
    # flask.session["user_id"] = x on a first visit: the data changes in place, the core sees it at commit.
    fresh = manager.initialize_session({})
    fresh.data["user_id"] = bad
    refused(reason, lambda: manager.commit(fresh))
    assert "create" not in store.calls and "set" not in store.calls


def test_the_rule_reads_the_same_through_the_wsgi_adapter(manager: SessionManager, store: RecordingStore) -> None:
    seen: list[InvalidUserId] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        try:
            environ["kitsession"].new_session(user_id="bob\x00")
        except InvalidUserId as exc:  # the application's own input check would answer 400 here
            seen.append(exc)
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"bad user"]

    middleware = SessionMiddleware(app, manager)
    from werkzeug.test import Client

    response = Client(middleware).post("/login")
    assert response.status_code == 400 and [e.reason for e in seen] == ["control_character"]
    assert "create" not in store.calls and response.headers.get("Set-Cookie") is None


# -- ids at the limits: accepted, round-trip, listed and revocable on every store --------------------


@pytest.mark.parametrize("user_id", GOOD_IDS)
def test_ids_at_the_limits_round_trip_and_are_revocable(
    manager: SessionManager, store: RecordingStore, user_id: UserId
) -> None:
    assert validate_user_id(user_id) == user_id
    direct = manager.create_session(user_id=user_id, data={"route": "create_session"})
    by_data = manager.create_session(data={"id": user_id, "route": "data"})
    other = manager.create_session(user_id="someone-else", data={"n": 1})
    assert by_data.user_id == user_id and type(by_data.user_id) is type(user_id)

    loaded = manager.initialize_session({"Cookie": cookie_for(manager, direct)})
    assert not loaded.is_new and loaded.user_id == user_id and type(loaded.user_id) is type(user_id)
    listed = manager.get_sessions_for_user(user_id)
    assert sorted(s.handle for s in listed) == sorted([direct.handle, by_data.handle])  # type: ignore[type-var]

    assert manager.remove_all_sessions_for_user(user_id) == 2
    assert manager.get_sessions_for_user(user_id) == []
    assert manager.initialize_session({"Cookie": cookie_for(manager, direct)}).is_new
    assert not manager.initialize_session({"Cookie": cookie_for(manager, other)}).is_new


def test_the_limit_is_in_bytes_of_utf8() -> None:
    assert validate_user_id("\u00e9" * 100) == "\u00e9" * 100  # 100 characters, 200 bytes
    assert refused("too_long", lambda: validate_user_id("\u00e9" * 100 + "x")).argument == "user_id"
    assert validate_user_id("\u20ac" * 66 + "xx") is not None  # 3-byte characters: 198 + 2
    refused("too_long", lambda: validate_user_id("\u20ac" * 67))  # 201 bytes


# -- the rule's details --------------------------------------------------------------------------------


def test_subclasses_are_stored_as_the_plain_type() -> None:
    import enum

    class Role(enum.IntEnum):
        ADMIN = 7

    class Name(str):
        def __eq__(self, other: object) -> bool:  # pragma: no cover - must never be consulted
            return True

        __hash__ = str.__hash__

    got = validate_user_id(Role.ADMIN)
    assert got == 7 and type(got) is int
    named = validate_user_id(Name("alice"))
    assert named == "alice" and type(named) is str
    refused("control_character", lambda: validate_user_id(Name("a\x00")))


def test_the_message_never_repeats_the_id() -> None:
    error = refused("control_character", lambda: validate_user_id("evil\nFORGED LOG LINE"))
    assert "FORGED" not in str(error) and "\n" not in str(error) and "U+000A" in str(error)
    long_error = refused("too_long", lambda: validate_user_id("secret-" * 40))
    assert "secret" not in str(long_error)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"id": None, "user_id": 5}, 5),
        ({"id": 1.5, "user_id": "bob"}, "bob"),  # a float is not an id: the next key decides
        ({"id": "", "userId": 0}, 0),
        ({"id": True, "user_id": [1]}, None),
        ({}, None),
    ],
    ids=["none-falls-through", "float-falls-through", "empty-falls-through", "no-id", "empty-data"],
)
def test_values_that_are_not_ids_still_fall_through(data: dict[str, Any], expected: UserId | None) -> None:
    assert user_id_from_data(data) == expected


def test_an_id_that_breaks_the_rule_is_refused_not_skipped() -> None:
    # Skipping it would let "user_id" name the next key's user, or no user: a session the app
    # treats as logged in that "sign out everywhere" cannot find.
    refused("control_character", lambda: user_id_from_data({"id": "a\x00", "user_id": 5}))
    assert user_id_from_data({"id": "a\x00"}, strict=False) == "a\x00"  # "did stored data name a user?"


def test_the_wsgi_example_answers_400_for_a_name_that_cannot_be_a_user_id() -> None:
    # Regression: the example put the login form's name in session.data unchecked; with the rule a
    # NUL in it would have been a 500 on client input.
    import sys

    repository = str(Path(__file__).resolve().parents[1])
    if repository not in sys.path:
        sys.path.insert(0, repository)
    from werkzeug.test import Client

    from examples.wsgi_app import app as wsgi_app
    from examples.wsgi_app import manager as wsgi_manager

    client = Client(wsgi_app)
    before = len(wsgi_manager.get_all_sessions())
    response = client.post("/login", data={"name": "mallory\x00admin"})
    assert response.status_code == 400 and response.headers.get("Set-Cookie") is None
    assert len(wsgi_manager.get_all_sessions()) == before
    assert client.post("/login", data={"name": "Jos\u00e9"}).status_code == 303
    assert wsgi_manager.get_sessions_for_user("Jos\u00e9")


# -- the user id arguments of the administration calls ------------------------------------


@pytest.mark.parametrize(("bad", "reason"), [BAD_IDS[0], BAD_IDS[7], BAD_IDS[14]])
def test_revoking_by_handle_applies_the_rule_to_its_user_id(
    manager: SessionManager, store: RecordingStore, bad: Any, reason: str
) -> None:
    owner = manager.create_session(user_id=1, data={"n": 1})
    store.calls.clear()
    refused(reason, lambda: manager.remove_session_by_handle(owner.handle, user_id=bad))  # type: ignore[arg-type]
    assert store.calls == []


def test_listing_and_revoking_all_refuse_none_alike_on_every_store(
    manager: SessionManager, store: RecordingStore
) -> None:
    manager.create_session(data={"anonymous": True})
    store.calls.clear()
    refused("type", lambda: manager.remove_all_sessions_for_user(None))  # type: ignore[arg-type]
    refused("type", lambda: manager.get_sessions_for_user(None))  # type: ignore[arg-type]
    assert store.calls == []


def test_require_user_id_refuses_none_and_applies_the_rule() -> None:
    from kitsession_wsgi.session import require_user_id

    assert require_user_id(0) == 0 and require_user_id("alice") == "alice"
    assert refused("type", lambda: require_user_id(None)).argument == "user_id"
    refused("control_character", lambda: require_user_id("a\x00", what="user_id"))


@pytest.mark.parametrize("command", ["list", "revoke"])
@pytest.mark.parametrize("user", ["a\x00b", "line\nbreak", "9" * 5000, "u" * (USER_ID_MAX_BYTES + 1)],
                         ids=["nul", "newline", "5000-digits", "over-length"])
def test_the_cli_answers_a_usage_error_for_a_bad_user(command: str, user: str) -> None:
    from flask import Flask

    from kitsession_wsgi import MemoryStore
    from kitsession_wsgi.flask import KitSession

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "cli"
    KitSession(app, store=MemoryStore())
    result = app.test_cli_runner().invoke(args=["kitsession", command, "--user", user])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert "--user" in result.output and "\x00" not in result.output
