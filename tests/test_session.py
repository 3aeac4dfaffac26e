"""Session data rules: user id from data, change tracking, size and JSON limits before any write."""

from __future__ import annotations

import datetime
import math
from types import MappingProxyType
from typing import Any

import pytest

from kitsession_wsgi import Session, SessionData, SessionDataError, SessionManager, SessionSerializationError

from session_helpers import CountingStore, parse_set_cookie, stored_session


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def manager(store: CountingStore, clock: Any) -> SessionManager:
    return SessionManager(store, keys="k", clock=clock)


def load(manager: SessionManager, header: str) -> Any:
    return manager.initialize_session({"Cookie": header})


# -- user id from data ------------------------------------------------------------------------

USER_ID_FROM_DATA = [
    pytest.param({"id": 1, "user_id": 2, "userId": 3}, 1, id="id-first"),
    pytest.param({"userId": 3, "user_id": 2}, 2, id="user_id-before-userId"),
    pytest.param({"userId": 3}, 3, id="userId-last"),
    pytest.param({"id": 0, "user_id": 2, "userId": 3}, 0, id="id-zero"),
    pytest.param({"user_id": 0, "userId": 3}, 0, id="user_id-zero"),
    pytest.param({"userId": 0}, 0, id="userId-zero"),
    pytest.param({"id": None, "user_id": 2}, 2, id="None-falls-through"),
    pytest.param({"id": None, "user_id": None, "userId": 3}, 3, id="two-None-fall-through"),
    pytest.param({"id": None, "user_id": None, "userId": None}, None, id="all-None"),
    pytest.param({"id": "alice", "userId": 3}, "alice", id="str-id"),
    pytest.param({"email": "a@example.com"}, None, id="no-id-key"),
    pytest.param({}, None, id="empty"),
]


@pytest.mark.parametrize(("data", "expected"), USER_ID_FROM_DATA)
def test_assigning_data_sets_user_id(data: dict[str, Any], expected: Any) -> None:
    session = Session()
    session.data = data
    assert session.user_id == expected
    assert type(session.user_id) is type(expected)


@pytest.mark.parametrize(("data", "expected"), USER_ID_FROM_DATA)
def test_user_id_from_data_is_stored(manager: SessionManager, store: CountingStore, data: dict[str, Any],
                                     expected: Any) -> None:
    session = load(manager, "")
    session.data = {**data, "keep": 1}
    manager.commit(session)
    (record,) = store.get_all()
    assert record.user_id == expected
    if expected is not None:
        assert [s.handle for s in manager.get_sessions_for_user(expected)] == [session.handle]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda m: m.create_session(user_id=9, data={"id": 1}), 9, id="create_session-user_id"),
        pytest.param(lambda m: m.create_session(user_id=0, data={"id": 1}), 0, id="create_session-user_id-zero"),
        pytest.param(lambda m: m.new_session(user_id=9, data={"userId": 1}), 9, id="new_session-user_id"),
        pytest.param(lambda m: m.new_session(user_id="bob", data={"id": "alice"}), "bob", id="new_session-str"),
    ],
)
def test_explicit_user_id_wins_over_data(manager: SessionManager, store: CountingStore, build: Any,
                                         expected: Any) -> None:
    session = build(manager)
    manager.commit(session)
    assert session.user_id == expected
    assert store.get(session.handle).user_id == expected


def test_user_id_set_on_the_session_wins_over_later_data() -> None:
    session = Session()
    session.user_id = 9
    session.data = {"id": 1}
    assert session.user_id == 9
    session.user_id = 0
    session.data = {"user_id": 1}
    assert session.user_id == 0


def test_loaded_session_takes_a_new_user_from_assigned_data(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, rotate_on_user_change=False)  # saved in place
    original, header = stored_session(manager, store, data={"id": 1})
    loaded = load(manager, header)
    assert loaded.user_id == 1
    loaded.data = {"id": 2}
    manager.commit(loaded)
    assert store.get(original.handle).user_id == 2  # type: ignore[union-attr]


def test_user_id_change_alone_is_saved(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, rotate_on_user_change=False)  # saved in place
    original, header = stored_session(manager, store)
    loaded = load(manager, header)
    loaded.user_id = "bob"
    manager.commit(loaded)
    assert store.calls["set"] == 1
    assert load(manager, header).user_id == "bob"
    assert store.get(original.handle).data == '{"n":1}'  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("bad", "error"),
    [(True, TypeError), (1.5, TypeError), (b"id", TypeError), ("", ValueError), ([1], TypeError)],
    ids=["bool", "float", "bytes", "empty-str", "list"],
)
def test_user_id_is_validated(bad: Any, error: type[Exception]) -> None:
    session = Session()
    with pytest.raises(error):
        session.user_id = bad
    with pytest.raises(error):
        Session(user_id=bad)
    assert session.user_id is None


def test_data_must_be_a_mapping_and_is_copied() -> None:
    session = Session()
    with pytest.raises(TypeError):
        session.data = [("a", 1)]  # type: ignore[assignment]
    source = {"a": 1}
    session.data = MappingProxyType(source)
    source["b"] = 2
    assert session.data == {"a": 1}
    assert type(session.data) is SessionData and isinstance(session.data, dict)


def test_repr_does_not_leak_the_secret_id(manager: SessionManager) -> None:
    session = manager.create_session(data={"a": 1})
    assert session.id and session.id not in repr(session)


# -- change tracking ------------------------------------------------------------------------------

CHANGES = [
    pytest.param(lambda d: d.__setitem__("new", 1), id="add-key"),
    pytest.param(lambda d: d.__setitem__("n", 2), id="change-key"),
    pytest.param(lambda d: d.pop("n"), id="delete-key"),
    pytest.param(lambda d: d["nested"]["deep"].append(4), id="append-to-nested-list"),
    pytest.param(lambda d: d["nested"].__setitem__("flag", False), id="change-nested-dict"),
    pytest.param(lambda d: d["nested"]["deep"].clear(), id="clear-nested-list"),
]
DATA = {"n": 1, "nested": {"deep": [1, 2, 3], "flag": True}}


@pytest.mark.parametrize("change", CHANGES)
def test_in_place_changes_are_saved(manager: SessionManager, store: CountingStore, change: Any) -> None:
    _, header = stored_session(manager, store, data=DATA)
    expected = {"n": 1, "nested": {"deep": [1, 2, 3], "flag": True}}
    change(expected)

    loaded = load(manager, header)
    change(loaded.data)
    manager.commit(loaded)

    assert store.calls["set"] == 1
    assert load(manager, header).data == expected


def test_clearing_everything_in_place_stays_cleared(manager: SessionManager, store: CountingStore) -> None:
    """Whether the core stores an empty session or removes it, the old data never comes back."""
    original, header = stored_session(manager, store, data=DATA)
    loaded = load(manager, header)
    loaded.data.clear()
    manager.commit(loaded)
    assert load(manager, header).data == {}
    record = store.get(original.handle)  # type: ignore[arg-type]
    assert record is None or record.data == "{}"


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda s: s.data["nested"]["deep"][0], id="read-nested"),
        pytest.param(lambda s: list(s.data.items()), id="iterate"),
        pytest.param(lambda s: setattr(s, "data", {"n": 1, "nested": {"deep": [1, 2, 3], "flag": True}}),
                     id="assign-equal-data"),
        pytest.param(lambda s: s.data.update(n=1), id="update-with-same-value"),
        pytest.param(lambda s: s.user_id, id="read-user-id"),
        pytest.param(lambda s: None, id="nothing"),
    ],
)
def test_an_unchanged_session_is_not_rewritten(manager: SessionManager, store: CountingStore, read: Any) -> None:
    _, header = stored_session(manager, store, data=DATA)
    loaded = load(manager, header)
    read(loaded)
    assert manager.commit(loaded) is None
    assert store.writes() == 0


@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda s: None, id="untouched"),
        pytest.param(lambda s: s.data.get("x"), id="read"),
        pytest.param(lambda s: setattr(s, "data", {}), id="assign-empty"),
        pytest.param(lambda s: (s.data.__setitem__("x", 1), s.data.pop("x")), id="set-then-remove"),
    ],
)
def test_nothing_is_written_for_an_anonymous_session_without_data(manager: SessionManager, store: CountingStore,
                                                                 use: Any) -> None:
    session = load(manager, "")
    use(session)
    assert manager.commit(session) is None
    assert store.calls["create"] == 0 and store.calls["create_id"] == 0 and len(store) == 0


def test_an_anonymous_session_with_only_a_user_is_stored(manager: SessionManager, store: CountingStore) -> None:
    session = load(manager, "")
    session.user_id = 0
    cookie = parse_set_cookie(manager.commit(session))
    assert store.calls["create"] == 1
    assert load(manager, cookie.request_header).user_id == 0


def test_an_anonymous_session_with_data_is_stored_once(manager: SessionManager, store: CountingStore) -> None:
    session = load(manager, "")
    session.data["cart"] = ["apple"]
    cookie = parse_set_cookie(manager.commit(session))
    assert store.calls["create"] == 1 and store.calls["set"] == 0
    assert load(manager, cookie.request_header).data == {"cart": ["apple"]}
    assert manager.commit(session) is None  # committing again writes nothing more
    assert store.calls["create"] == 1 and store.calls["set"] == 0


# -- limits: checked before anything is written -----------------------------------------------------


@pytest.fixture
def small(store: CountingStore, clock: Any) -> SessionManager:
    return SessionManager(store, keys="k", clock=clock, max_data_bytes=100)


def test_data_at_the_limit_is_accepted(small: SessionManager, store: CountingStore) -> None:
    data = {"x": "a" * (100 - len('{"x":""}'))}
    session = small.create_session(data=data)
    assert store.get(session.handle).data.encode() == b'{"x":"' + b"a" * 92 + b'"}'  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [{"x": "a" * 93}, {"x": "\u00e9" * 50}, {"x": "\U0001f36a" * 25}],
    ids=["ascii-one-over", "two-byte-chars", "four-byte-chars"],
)
def test_max_data_bytes_on_create(small: SessionManager, store: CountingStore, data: dict[str, Any]) -> None:
    with pytest.raises(SessionDataError, match="max_data_bytes"):
        small.create_session(data=data)
    assert store.calls["create"] == 0 and len(store) == 0


def test_max_data_bytes_on_a_new_sessions_commit(small: SessionManager, store: CountingStore) -> None:
    session = small.initialize_session({})
    session.data["x"] = "a" * 200
    with pytest.raises(SessionDataError):
        small.commit(session)
    assert store.calls["create"] == 0 and len(store) == 0


def test_max_data_bytes_on_an_update(small: SessionManager, store: CountingStore) -> None:
    original, header = stored_session(small, store, data={"x": "small"})
    loaded = load(small, header)
    loaded.data["x"] = "a" * 200
    with pytest.raises(SessionDataError):
        small.commit(loaded)
    with pytest.raises(SessionDataError):
        small.set_session(loaded, {"y": "b" * 200})
    assert store.writes() == 0
    assert load(small, header).data == {"x": "small"}


NOT_JSON = [
    pytest.param(object(), id="object"),
    pytest.param({1, 2}, id="set"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param(datetime.datetime(2026, 1, 1), id="datetime"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param({"nested": [1, {"deeper": object()}]}, id="nested-object"),
    pytest.param({(1, 2): "tuple key"}, id="nested-tuple-key"),
]


@pytest.mark.parametrize("value", NOT_JSON)
def test_non_json_data_names_the_key_on_create(manager: SessionManager, store: CountingStore, value: Any) -> None:
    with pytest.raises(TypeError) as info:
        manager.create_session(data={"fine": 1, "bad_key": value})
    assert isinstance(info.value, SessionSerializationError)
    assert info.value.key == "bad_key"
    assert "bad_key" in str(info.value)
    assert store.calls["create"] == 0 and len(store) == 0


@pytest.mark.parametrize("value", NOT_JSON)
def test_non_json_data_names_the_key_on_commit(manager: SessionManager, store: CountingStore, value: Any) -> None:
    _, header = stored_session(manager, store, data={"fine": 1})
    loaded = load(manager, header)
    loaded.data["bad_key"] = value
    with pytest.raises(TypeError, match="bad_key"):
        manager.commit(loaded)
    assert store.writes() == 0
    assert load(manager, header).data == {"fine": 1}


@pytest.mark.parametrize("key", [1, 1.5, None, True], ids=["int", "float", "None", "bool"])
def test_non_str_keys_are_rejected(manager: SessionManager, store: CountingStore, key: Any) -> None:
    with pytest.raises(TypeError):
        manager.create_session(data={key: "a", str(key): "b"})
    assert len(store) == 0


@pytest.mark.parametrize(
    "empty",
    [
        pytest.param(lambda s: s.data.clear(), id="clear-in-place"),
        pytest.param(lambda s: setattr(s, "data", {}), id="assign-empty"),
    ],
)
def test_removing_the_id_from_the_data_ends_the_user_link(manager: SessionManager, store: CountingStore,
                                                          empty: Any) -> None:
    _, header = stored_session(manager, store, data={"id": 5, "email": "alice@example.com"})
    loaded = load(manager, header)
    assert loaded.user_id == 5
    empty(loaded)
    manager.commit(loaded)
    assert load(manager, header).user_id is None
    assert manager.get_sessions_for_user(5) == []


# -- SessionData: which uses may change the data --------------------------------------


def _fresh() -> SessionData:
    data = SessionData({"name": "ada", "n": 1, "ok": True, "none": None, "pair": (1, 2), "cart": [1], "prefs": {}})
    assert data.changed is False
    return data


@pytest.mark.parametrize(
    "read",
    [lambda d: d["name"], lambda d: d["n"], lambda d: d.get("ok"), lambda d: d.get("none"),
     lambda d: d.get("missing"), lambda d: d.get("missing", "x"), lambda d: "cart" in d,
     lambda d: len(d), lambda d: list(d), lambda d: list(d.keys()), lambda d: d == {"name": "ada"},
     lambda d: sorted(d)],
    ids=["[str]", "[int]", "get bool", "get None", "get missing", "get default", "in", "len", "list",
         "keys", "==", "sorted"],
)
def test_session_data_reads_that_cannot_change_it_leave_it_unchanged(read: Any) -> None:
    data = _fresh()
    read(data)
    assert data.changed is False


@pytest.mark.parametrize(
    "use",
    [lambda d: d["cart"], lambda d: d["pair"], lambda d: d.get("prefs"), lambda d: d.get("missing", []),
     lambda d: d.values(),
     lambda d: d.items(), lambda d: d.copy(), lambda d: dict(d), lambda d: {**d}, lambda d: d | {},
     lambda d: {} | d, lambda d: __import__("copy").copy(d), lambda d: __import__("pickle").dumps(d),
     lambda d: d.__setitem__("x", 1), lambda d: d.__delitem__("n"), lambda d: d.update(x=1),
     lambda d: d.setdefault("x", 1), lambda d: d.pop("n"), lambda d: d.pop("missing", None),
     lambda d: d.popitem(), lambda d: d.clear(), lambda d: d.__ior__({"x": 1})],
    ids=["[list]", "[tuple]", "get dict", "get default list", "values", "items", "copy", "dict()", "{**}", "|", "r|",
         "copy.copy", "pickle", "set", "del", "update", "setdefault", "pop", "pop missing", "popitem", "clear",
         "|="],
)
def test_session_data_writes_and_hand_outs_of_mutable_values_mark_it(use: Any) -> None:
    data = _fresh()
    use(data)
    assert data.changed is True


@pytest.mark.parametrize(
    "change",
    [lambda d: d["cart"].append(2), lambda d: d.get("prefs").update(theme="dark"),
     lambda d: dict(d)["cart"].append(2), lambda d: {**d}["prefs"].update(theme="dark"),
     lambda d: [v for v in d.values() if isinstance(v, list)][0].append(2),
     lambda d: d.copy()["cart"].append(2)],
    ids=["[k].append", "get().update", "dict(d)[k].append", "{**d}[k].update", "values()", "copy()[k]"],
)
def test_nested_changes_reached_through_session_data_are_saved(
        manager: SessionManager, store: CountingStore, change: Any) -> None:
    _, cookie = stored_session(manager, store, data={"cart": [1], "prefs": {}, "name": "ada"})
    session = load(manager, cookie)
    change(session.data)
    manager.commit(session)
    assert store.calls["set"] == 1
    saved = manager.store.get(session.handle)
    assert saved is not None and saved.data != '{"cart":[1],"prefs":{},"name":"ada"}'


def test_reading_scalars_through_data_costs_no_serialisation(manager: SessionManager, store: CountingStore) -> None:
    _, cookie = stored_session(manager, store, data={"cart": [1], "name": "ada", "n": 3})
    session = load(manager, cookie)
    calls = []
    dumps = manager.serializer.dumps
    manager.serializer.dumps = lambda value: calls.append(1) or dumps(value)  # type: ignore[method-assign]
    try:
        assert session.data["name"] == "ada" and session.data.get("n") == 3 and "cart" in session.data
        assert manager.commit(session) is None
    finally:
        del manager.serializer.dumps
    assert calls == [] and store.calls["set"] == 0 and store.calls["touch"] == 0


def test_the_data_object_stays_the_same_and_assignment_replaces_it() -> None:
    session = Session(data={"a": 1})
    first = session.data
    assert session.data is first and type(first) is SessionData
    session.data = {"b": [2]}
    assert session.data is not first and session.data == {"b": [2]} and type(session.data) is SessionData


def test_a_list_inside_a_tuple_changed_in_place_is_saved(store: CountingStore, clock: Any) -> None:
    # A serializer may hand back tuples (Flask's tagged JSON does); one may hold a list.
    from kitsession_wsgi.flask import FlaskSessionSerializer

    manager = SessionManager(store, keys="k", clock=clock, serializer=FlaskSessionSerializer())
    _, cookie = stored_session(manager, store, data={"recent": ("page", [1])})
    session = load(manager, cookie)
    session.data["recent"][1].append(2)
    manager.commit(session)
    assert load(manager, cookie).data == {"recent": ("page", [1, 2])}
