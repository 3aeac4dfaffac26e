"""SessionManager operations: strict ids, CRUD, sign-out-everywhere, concurrency, regenerate, remove."""

from __future__ import annotations

from typing import Any

import pytest

from kitsession_wsgi import SessionConflict, SessionManager, session_key

from kitsession_wsgi._keys import marker_key as _marker_key
from session_helpers import (CountingStore, FlakyStore, gone_or_replaced, live_records, node_signed_value,
                             parse_set_cookie, stored_session)
from thread_helpers import run_threads


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def manager(store: CountingStore, clock: Any) -> SessionManager:
    return SessionManager(store, keys="k", clock=clock)


def load(manager: SessionManager, header: str) -> Any:
    return manager.initialize_session({"Cookie": header})


def cookie_for(manager: SessionManager, session_id: str) -> str:
    return parse_set_cookie(manager.set_session_cookie(session_id)).request_header


# -- strict mode: an id the store does not hold is never adopted ------------------------------


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_unknown_valid_id_gives_an_anonymous_session_and_a_fresh_id(store: CountingStore, clock: Any,
                                                                    signed: bool) -> None:
    manager = SessionManager(store, keys="k" if signed else None, clock=clock)
    planted = "attacker-chosen-id"
    header = cookie_for(manager, planted)

    session = load(manager, header)
    assert session.is_new and session.id is None
    # One get for the session, one for a "replaced" marker (asked only when the session is gone).
    assert store.calls["get"] == 2

    session.data["cart"] = [1]
    cookie = parse_set_cookie(manager.commit(session))
    assert session.id is not None and session.id != planted
    assert cookie.value == (node_signed_value("k", session.id) if signed else session.id)
    assert store.get(session_key(planted)) is None
    assert [r.key for r in store.get_all()] == [session.handle]
    assert load(manager, header).is_new
    assert load(manager, cookie.request_header).data == {"cart": [1]}


def test_unknown_valid_id_without_data_writes_nothing_and_clears_the_cookie(manager: SessionManager,
                                                                            store: CountingStore) -> None:
    session = load(manager, cookie_for(manager, "unknown-id"))
    assert parse_set_cookie(manager.commit(session)).is_removal
    assert store.writes() == 0 and len(store) == 0


def test_cookie_of_a_removed_session_is_not_adopted(manager: SessionManager, store: CountingStore) -> None:
    session, header = stored_session(manager, store)
    assert manager.remove_session(session) is True
    again = load(manager, header)
    assert again.is_new
    again.data["x"] = 1
    manager.commit(again)
    assert again.id != session.id and again.handle != session.handle


def test_store_keys_are_digests_never_ids(manager: SessionManager, store: CountingStore) -> None:
    session, _ = stored_session(manager, store)
    assert session.id is not None
    (record,) = store.get_all()
    assert record.key == session.handle == session_key(session.id) != session.id
    assert session.id not in record.key and session.id not in record.data


# -- create / get / set / list ------------------------------------------------------------


def test_create_session_stores_and_get_session_loads(manager: SessionManager) -> None:
    created = manager.create_session(user_id=7, data={"theme": "dark"})
    assert not created.is_new and created.id and created.handle
    loaded = manager.get_session(created.id)
    assert loaded is not None
    assert (loaded.id, loaded.handle, loaded.user_id, loaded.data) == (created.id, created.handle, 7, {"theme": "dark"})
    assert (loaded.created_at, loaded.expires_at) == (created.created_at, created.expires_at)


@pytest.mark.parametrize("bad", ["", "unknown", "s:signed-looking", None, 42], ids=repr)
def test_get_session_of_an_unknown_id_is_none(manager: SessionManager, bad: Any) -> None:
    manager.create_session(data={"a": 1})
    assert manager.get_session(bad) is None


def test_set_session_replaces_the_data_and_saves(manager: SessionManager, store: CountingStore) -> None:
    session, header = stored_session(manager, store, data={"a": 1, "b": 2})
    returned = manager.set_session(session, {"c": 3})
    assert returned is session
    assert store.calls["set"] == 1
    assert load(manager, header).data == {"c": 3}
    manager.set_session(session, {"c": 3})
    assert store.calls["set"] == 1  # unchanged: not rewritten


def test_set_session_on_a_new_session_creates_it(manager: SessionManager, store: CountingStore) -> None:
    session = load(manager, "")
    manager.set_session(session, {"a": 1})
    assert not session.is_new and session.id
    assert store.calls["create"] == 1
    assert manager.get_session(session.id).data == {"a": 1}  # type: ignore[union-attr]


def test_listing_is_oldest_first_without_ids(manager: SessionManager, clock: Any) -> None:
    first = manager.create_session(user_id=1, data={"n": 1})
    clock.advance(10)
    second = manager.create_session(user_id=2, data={"n": 2})
    clock.advance(10)
    third = manager.create_session(user_id=1, data={"n": 3})
    listed = manager.get_all_sessions()
    assert [s.handle for s in listed] == [first.handle, second.handle, third.handle]
    assert all(s.id is None for s in listed)
    assert [s.data for s in manager.get_sessions_for_user(1)] == [{"n": 1}, {"n": 3}]
    assert manager.get_sessions_for_user(3) == []


def test_user_ids_keep_their_type_in_listings(manager: SessionManager) -> None:
    manager.create_session(user_id=5, data={"int": True})
    manager.create_session(user_id="5", data={"str": True})
    assert [s.data for s in manager.get_sessions_for_user(5)] == [{"int": True}]
    assert [s.data for s in manager.get_sessions_for_user("5")] == [{"str": True}]


# -- remove_all_sessions_for_user --------------------------------------------------------------


@pytest.mark.parametrize("user_id", [7, 0, "alice"], ids=["int", "zero", "str"])
def test_remove_all_sessions_for_user_keeps_the_current_one(manager: SessionManager, store: CountingStore,
                                                            user_id: Any) -> None:
    current, current_header = stored_session(manager, store, user_id=user_id)
    others = [stored_session(manager, store, user_id=user_id) for _ in range(3)]
    bystander, bystander_header = stored_session(manager, store, user_id=999)
    anonymous, anonymous_header = stored_session(manager, store, data={"anon": True})

    removed = manager.remove_all_sessions_for_user(user_id, load(manager, current_header))

    assert removed == 3
    assert load(manager, current_header).handle == current.handle
    for _, header in others:
        assert load(manager, header).is_new
    assert load(manager, bystander_header).handle == bystander.handle
    assert load(manager, anonymous_header).handle == anonymous.handle
    assert [s.handle for s in manager.get_sessions_for_user(user_id)] == [current.handle]


def test_remove_all_sessions_for_user_without_a_current_session_removes_all(manager: SessionManager,
                                                                           store: CountingStore) -> None:
    for _ in range(2):
        stored_session(manager, store, user_id=0)
    assert manager.remove_all_sessions_for_user(0) == 2
    assert manager.get_sessions_for_user(0) == []
    assert manager.remove_all_sessions_for_user(0) == 0


def test_remove_all_sessions_for_user_zero_is_not_anonymous_nor_the_string_zero(manager: SessionManager,
                                                                               store: CountingStore) -> None:
    stored_session(manager, store, user_id=0)
    _, anonymous_header = stored_session(manager, store)
    _, string_header = stored_session(manager, store, user_id="0")
    assert manager.remove_all_sessions_for_user(0) == 1
    assert not load(manager, anonymous_header).is_new
    assert not load(manager, string_header).is_new


@pytest.mark.parametrize(("bad", "error"), [(None, TypeError), (True, TypeError), (1.5, TypeError), ("", ValueError)],
                         ids=repr)
def test_remove_all_sessions_for_user_rejects_non_ids(manager: SessionManager, bad: Any,
                                                      error: type[Exception]) -> None:
    """A wrong type is a TypeError, an empty string a ValueError (validate_user_id's promise)."""
    manager.create_session(user_id=1, data={"a": 1})
    with pytest.raises(error):
        manager.remove_all_sessions_for_user(bad)
    assert len(manager.get_sessions_for_user(1)) == 1


# -- concurrency: two requests on one session -----------------------------------------------------


def two_requests(manager: SessionManager, store: CountingStore, data: dict[str, Any] | None = None) -> Any:
    session, header = stored_session(manager, store, data={"n": 1} if data is None else data)
    return session, load(manager, header), load(manager, header), header


def test_merge_keeps_both_requests_changes(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, header = two_requests(manager, store)
    first.data["a"] = 1
    second.data["b"] = 2
    assert manager.commit(first) is None
    assert manager.commit(second) is None
    assert load(manager, header).data == {"n": 1, "a": 1, "b": 2}
    assert second.data == {"n": 1, "a": 1, "b": 2}


def test_merge_keeps_the_other_requests_deletion(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, header = two_requests(manager, store, {"n": 1, "flash": "hi"})
    del first.data["flash"]
    second.data["b"] = 2
    manager.commit(first)
    manager.commit(second)
    assert load(manager, header).data == {"n": 1, "b": 2}


def test_merge_applies_this_requests_deletion(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, header = two_requests(manager, store, {"n": 1, "flash": "hi"})
    first.data["a"] = 1
    second.data.pop("flash")
    manager.commit(first)
    manager.commit(second)
    assert load(manager, header).data == {"n": 1, "a": 1}


def test_merge_on_the_same_key_is_last_writer_wins(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, header = two_requests(manager, store)
    first.data["n"] = "first"
    second.data["n"] = "second"
    manager.commit(first)
    manager.commit(second)
    assert load(manager, header).data == {"n": "second"}


def test_an_unchanged_slower_request_does_not_revert_the_faster_one(manager: SessionManager,
                                                                    store: CountingStore) -> None:
    _, first, second, header = two_requests(manager, store)
    first.data["a"] = 1
    assert second.data["n"] == 1  # read only
    manager.commit(first)
    store.reset()
    assert manager.commit(second) is None
    assert store.calls["set"] == 0
    assert load(manager, header).data == {"n": 1, "a": 1}


def test_merge_keeps_the_other_requests_login(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, rotate_on_user_change=False)  # the merge in place
    original, first, second, header = two_requests(manager, store)
    first.user_id = 42
    second.data["b"] = 2
    manager.commit(first)
    manager.commit(second)
    assert load(manager, header).user_id == 42
    assert store.get(original.handle).user_id == 42  # type: ignore[union-attr]


def test_merged_session_reflects_the_stored_user(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, rotate_on_user_change=False)  # the merge in place
    original, first, second, header = two_requests(manager, store)
    first.user_id = 42
    manager.commit(first)
    second.data["b"] = 2
    manager.commit(second)
    assert second.user_id == 42
    manager.set_session(second, {"c": 3})
    assert store.get(original.handle).user_id == 42  # type: ignore[union-attr]


def test_on_conflict_raise(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, on_conflict="raise")
    original, first, second, header = two_requests(manager, store)
    first.data["a"] = 1
    second.data["b"] = 2
    manager.commit(first)
    with pytest.raises(SessionConflict) as info:
        manager.commit(second)
    assert info.value.handle == original.handle
    assert load(manager, header).data == {"n": 1, "a": 1}


def test_on_conflict_overwrite_is_last_write_wins(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, on_conflict="overwrite")
    _, first, second, header = two_requests(manager, store)
    first.data["a"] = 1
    second.data["b"] = 2
    manager.commit(first)
    manager.commit(second)
    assert load(manager, header).data == {"n": 1, "b": 2}


@pytest.mark.parametrize("on_conflict", ["merge", "raise", "overwrite"])
@pytest.mark.parametrize("change", ["data", "user_id", "nothing"])
def test_a_removed_session_is_not_resurrected_by_a_slower_request(store: CountingStore, clock: Any,
                                                                  on_conflict: str, change: str) -> None:
    manager = SessionManager(store, keys="k", clock=clock, on_conflict=on_conflict, idle_timeout=3600)
    _, first, second, header = two_requests(manager, store)
    clock.advance(600)  # far enough for the unchanged request to want a touch
    assert manager.remove_session(first) is True
    assert parse_set_cookie(manager.commit(first)).is_removal
    if change == "data":
        second.data["late"] = True
    elif change == "user_id":
        second.user_id = 5

    result = manager.commit(second)

    # No cookie at all: the logout response already cleared it, and a late clearing
    # cookie would also wipe one that a concurrent login had just set.
    assert result is None
    assert live_records(store) == []
    assert load(manager, header).is_new


# -- regenerate ------------------------------------------------------------------------------


def test_regenerate_gives_a_new_id_with_the_same_data(manager: SessionManager, store: CountingStore) -> None:
    session, old_header = stored_session(manager, store, data={"cart": [1, 2]}, user_id=9)
    old_id, old_handle = session.id, session.handle
    loaded = load(manager, old_header)

    returned = manager.regenerate(loaded)

    assert returned is loaded
    assert loaded.id and loaded.id != old_id and loaded.handle != old_handle
    assert (loaded.data, loaded.user_id) == ({"cart": [1, 2]}, 9)
    assert manager.get_session(old_id) is None  # type: ignore[arg-type]
    assert load(manager, old_header).is_new
    cookie = parse_set_cookie(manager.commit(loaded))
    assert cookie.value == node_signed_value("k", loaded.id)
    fresh = load(manager, cookie.request_header)
    assert (fresh.handle, fresh.data, fresh.user_id) == (loaded.handle, {"cart": [1, 2]}, 9)
    assert [r.key for r in live_records(store)] == [loaded.handle] and gone_or_replaced(store.get(old_handle))


def test_regenerate_keeps_unsaved_changes(manager: SessionManager, store: CountingStore) -> None:
    _, header = stored_session(manager, store)
    loaded = load(manager, header)
    loaded.data["added"] = True
    manager.regenerate(loaded)
    manager.commit(loaded)
    assert manager.get_session(loaded.id).data == {"n": 1, "added": True}  # type: ignore[arg-type,union-attr]


def test_regenerate_of_a_new_session_writes_nothing(manager: SessionManager, store: CountingStore) -> None:
    session = load(manager, "")
    assert manager.regenerate(session) is session
    assert session.is_new and store.writes() == 0


def test_regenerate_does_not_resurrect_a_removed_session(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, _ = two_requests(manager, store)
    manager.remove_session(first)
    manager.regenerate(second)
    result = manager.commit(second)
    assert live_records(store) == []
    assert result is None or parse_set_cookie(result).is_removal


# -- remove_session ------------------------------------------------------------------------


def test_remove_session_returns_true_then_false(manager: SessionManager, store: CountingStore) -> None:
    session, header = stored_session(manager, store)
    loaded = load(manager, header)
    assert manager.remove_session(loaded) is True
    assert manager.remove_session(loaded) is False
    assert loaded.is_destroyed
    assert manager.get_session(session.id) is None  # type: ignore[arg-type]
    cleared = parse_set_cookie(manager.commit(loaded))
    assert cleared.is_removal


def test_remove_session_already_removed_elsewhere_is_false(manager: SessionManager, store: CountingStore) -> None:
    _, first, second, _ = two_requests(manager, store)
    assert manager.remove_session(first) is True
    assert manager.remove_session(second) is False
    assert parse_set_cookie(manager.commit(second)).is_removal


def test_remove_session_of_an_anonymous_session_is_false_and_writes_nothing(manager: SessionManager,
                                                                          store: CountingStore) -> None:
    session = load(manager, "")
    assert manager.remove_session(session) is False
    assert store.writes() == 0


def test_changes_after_remove_are_not_saved(manager: SessionManager, store: CountingStore) -> None:
    _, header = stored_session(manager, store)
    loaded = load(manager, header)
    manager.remove_session(loaded)
    loaded.data["after"] = True
    assert parse_set_cookie(manager.commit(loaded)).is_removal
    assert live_records(store) == []


# -- new_session: the fixation-safe login ---------------------------------------------------------


def test_new_session_replaces_the_previous_on_commit(manager: SessionManager, store: CountingStore) -> None:
    old, old_header = stored_session(manager, store, data={"anon": 1})
    previous = load(manager, old_header)
    fresh = manager.new_session(previous, data={"id": 5})
    assert store.get(old.handle) is not None  # nothing happens before the commit  # type: ignore[arg-type]
    cookie = parse_set_cookie(manager.commit(fresh))
    assert fresh.id != old.id and fresh.user_id == 5
    assert gone_or_replaced(store.get(old.handle))  # type: ignore[arg-type]
    assert load(manager, old_header).is_new
    assert load(manager, cookie.request_header).data == {"id": 5}


def test_new_session_without_data_keeps_the_previous(manager: SessionManager, store: CountingStore) -> None:
    old, old_header = stored_session(manager, store)
    fresh = manager.new_session(load(manager, old_header))
    assert manager.commit(fresh) is None
    assert not load(manager, old_header).is_new


# -- revoking one device by its public handle ----------------------------------------------------


def test_remove_session_by_handle_checks_the_owner(manager: SessionManager, store: CountingStore) -> None:
    mine, my_header = stored_session(manager, store, user_id=0)
    theirs, their_header = stored_session(manager, store, user_id=1)
    assert manager.remove_session_by_handle(theirs.handle, user_id=0) is False  # type: ignore[arg-type]
    assert not load(manager, their_header).is_new
    assert manager.remove_session_by_handle(mine.handle, user_id=0) is True  # type: ignore[arg-type]
    assert manager.remove_session_by_handle(mine.handle, user_id=0) is False  # type: ignore[arg-type]
    assert load(manager, my_header).is_new


# -- what the store hands back -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"', "null", ""], ids=repr)
def test_unreadable_stored_data_is_removed_not_served(manager: SessionManager, store: CountingStore,
                                                      text: str) -> None:
    session, header = stored_session(manager, store)
    record = store.get(session.handle)
    assert record is not None
    store.delete(record.key)
    store.create(record.with_changes(data=text))
    loaded = load(manager, header)
    assert loaded.is_new
    assert store.get(session.handle) is None
    assert parse_set_cookie(manager.commit(loaded)).is_removal


def test_expiry_metadata_never_collides_with_user_keys(manager: SessionManager, store: CountingStore,
                                                       clock: Any) -> None:
    data = {"maxAge": 1, "expires_at": 0, "created_at": "x", "user_id": None, "version": -1}
    session, header = stored_session(manager, store, data=data)
    clock.advance(3600)
    loaded = load(manager, header)
    assert loaded.data == data
    assert loaded.expires_at == session.expires_at


# -- store outages ----------------------------------------------------------------------------


def test_store_outage_raises_instead_of_logging_out(clock: Any) -> None:
    from kitsession_wsgi import StoreUnavailable

    store = FlakyStore()
    manager = SessionManager(store, keys="k", clock=clock)
    _, header = stored_session(manager, store)
    store.failing = {"get"}
    with pytest.raises(StoreUnavailable):
        load(manager, header)
    # a forged cookie costs no store call, so it still gets an anonymous session
    assert load(manager, "session=s%3Aforged.nope").is_new
    store.failing = set()
    assert not load(manager, header).is_new


# -- real threads on one session ------------------------------------------------------------


def test_eight_threads_changing_different_keys_all_keep_their_change(manager: SessionManager,
                                                                      store: CountingStore) -> None:
    _, header = stored_session(manager, store, data={})
    sessions = [load(manager, header) for _ in range(8)]

    def request(index: int) -> None:
        sessions[index].data[f"k{index}"] = index
        manager.commit(sessions[index])

    run_threads(8, request)
    assert load(manager, header).data == {f"k{i}": i for i in range(8)}


# -- regenerate with a grace window ---------------------------------------------------------------


def test_regenerate_with_grace_keeps_the_old_id_briefly_and_never_longer(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=3600, touch_interval=1)
    original = manager.create_session(user_id=5, data={"role": "user"})
    old_header = parse_set_cookie(manager.set_session_cookie(original)).request_header
    old_handle = original.handle

    promoted = manager.regenerate(manager.initialize_session({"Cookie": old_header}), grace=30)
    assert promoted.handle != old_handle
    assert manager.get_session(promoted.id) is not None  # type: ignore[arg-type]

    clock.advance(10)
    in_flight = manager.initialize_session({"Cookie": old_header})
    assert in_flight.handle == old_handle and in_flight.data == {"role": "user"}
    in_flight.data["late"] = 1
    manager.commit(in_flight)  # a save through the old id cannot extend it past the grace window
    assert manager.initialize_session({"Cookie": old_header}).handle == old_handle

    clock.advance(21)
    assert manager.initialize_session({"Cookie": old_header}).is_new
    assert manager.get_session(promoted.id) is not None  # type: ignore[arg-type]


def test_regenerate_without_grace_ends_the_old_id_at_once(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock)
    original = manager.create_session(data={"a": 1})
    old_header = parse_set_cookie(manager.set_session_cookie(original)).request_header
    manager.regenerate(manager.initialize_session({"Cookie": old_header}))
    assert manager.initialize_session({"Cookie": old_header}).is_new


def test_regenerate_refuses_a_negative_grace(store: CountingStore) -> None:
    manager = SessionManager(store, keys="k")
    with pytest.raises(ValueError, match="grace"):
        manager.regenerate(manager.create_session(data={"a": 1}), grace=-1)


# -- an id replaced by a login or regenerate: a short-lived marker, never served ----------------


def _logged_in(manager: SessionManager, store: CountingStore) -> tuple[Any, str, Any, str]:
    """An anonymous session with data, then a login replacing it: (old, old header, new, new header)."""
    old, old_header = stored_session(manager, store, data={"cart": ["secret item"]}, user_id="anon-user")
    fresh = manager.new_session(load(manager, old_header), data={"id": 5})
    new_header = parse_set_cookie(manager.commit(fresh)).request_header
    return old, old_header, fresh, new_header


def test_a_replaced_id_is_never_served_and_leaves_the_user_lists(manager: SessionManager, store: CountingStore) -> None:
    old, old_header, fresh, _ = _logged_in(manager, store)
    assert store.get(old.handle) is None
    marker = store.get(_marker_key(old.handle))
    assert marker is not None and marker.user_id is None and "secret item" not in marker.data
    assert manager.get_session(old.id) is None
    replay = load(manager, old_header)
    assert replay.is_new and replay.data == {} and replay.user_id is None
    assert manager.commit(replay) is None, "no clearing cookie while the id is marked replaced"
    assert manager.get_sessions_for_user("anon-user") == []
    assert [s.handle for s in manager.get_all_sessions()] == [fresh.handle]
    assert manager.remove_all_sessions_for_user(5) == 1 and store.get(_marker_key(old.handle)) is not None


def test_a_save_through_a_replaced_id_does_not_bring_it_back(manager: SessionManager, store: CountingStore) -> None:
    old, old_header, _, _ = _logged_in(manager, store)
    in_flight = load(manager, old_header)
    assert in_flight.is_new  # loaded after the login: a new anonymous session
    old, old_header = stored_session(manager, store, data={"n": 1})
    slow = load(manager, old_header)  # loaded before the login below
    manager.commit(manager.new_session(load(manager, old_header), data={"id": 7}))
    slow.data["n"] = 2
    assert manager.commit(slow) is None, "the slower request sends no cookie at all"
    assert gone_or_replaced(store.get(old.handle)) and manager.get_session(old.id) is None


def test_the_marker_expires_then_the_dead_cookie_is_cleared(manager: SessionManager, store: CountingStore,
                                                            clock: Any) -> None:
    from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS

    old, old_header, _, _ = _logged_in(manager, store)
    clock.advance(REPLACED_MARKER_SECONDS - 1)
    assert manager.commit(load(manager, old_header)) is None
    clock.advance(1)
    cleared = manager.commit(load(manager, old_header))
    assert cleared is not None and parse_set_cookie(cleared).is_removal
    assert manager.purge_expired() == 1 and store.get(_marker_key(old.handle)) is None


def test_purge_removes_expired_markers(manager: SessionManager, store: CountingStore, clock: Any) -> None:
    from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS

    old, _, fresh, _ = _logged_in(manager, store)
    clock.advance(REPLACED_MARKER_SECONDS)
    assert manager.purge_expired() == 1
    assert store.get(_marker_key(old.handle)) is None and store.get(fresh.handle) is not None


def test_regenerate_marks_the_old_id_replaced(manager: SessionManager, store: CountingStore) -> None:
    old, old_header = stored_session(manager, store, data={"n": 1})
    session = load(manager, old_header)
    manager.regenerate(session)
    manager.commit(session)
    assert store.get(old.handle) is None and store.get(_marker_key(old.handle)) is not None
    replay = load(manager, old_header)
    assert replay.is_new and manager.commit(replay) is None


def test_a_locked_manager_frees_the_lock_of_a_replaced_id(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock, lock=True)
    old, old_header, _, _ = _logged_in(manager, store)
    assert load(manager, old_header).is_new
    assert store.acquire_lock(old.handle, "someone-else", 30) is True, "the replaced id's lock was left held"


@pytest.mark.parametrize("rolling", [False, True])
def test_an_earlier_request_touching_its_session_after_a_login_sends_no_cookie(store: CountingStore, clock: Any,
                                                                               rolling: bool) -> None:
    from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS

    manager = SessionManager(store, keys="k", clock=clock, idle_timeout=3600, rolling=rolling, touch_interval=60)
    old, old_header = stored_session(manager, store, data={"n": 1})
    earlier = load(manager, old_header)  # loaded before the login, committed after it, unchanged
    clock.advance(120)  # past touch_interval: its commit would touch
    manager.commit(manager.new_session(load(manager, old_header), data={"id": 5}))
    assert manager.commit(earlier) is None, "the replaced id must not be sent again"
    marker = store.get(_marker_key(old.handle))
    assert marker is not None and marker.expires_at == clock.now + REPLACED_MARKER_SECONDS  # not extended
    assert store.get(old.handle) is None


def test_locking_a_session_a_login_replaced_meanwhile_sends_no_cookie(store: CountingStore, clock: Any) -> None:
    manager = SessionManager(store, keys="k", clock=clock)
    _, old_header = stored_session(manager, store, data={"n": 1})
    earlier = load(manager, old_header)
    manager.commit(manager.new_session(load(manager, old_header), data={"id": 5}))
    locked = manager.lock_session(earlier)
    assert locked.is_destroyed and manager.commit(locked) is None
