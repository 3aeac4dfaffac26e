"""A save merged more than once keeps only what THIS request changed, against what it loaded.

Two other requests commit between this request's attempts (an
:class:`~session_helpers.InterleavingStore` runs them just before each ``set``),
so the save conflicts twice and is merged twice.  Its change set must be the
one computed against the data it loaded: recomputed against the first merge's
result, the other request's value would count as "ours" and overwrite the
newer one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kitsession_wsgi import SessionManager

from clocks import FakeClock
from session_helpers import InterleavingStore, stored_session


def test_a_second_merge_does_not_replay_values_taken_from_the_first(clock: FakeClock) -> None:
    store = InterleavingStore()
    manager = SessionManager(store, keys="k", clock=clock, on_conflict="merge")
    _, header = stored_session(manager, store, data={"mine": 0, "theirs": 0, "gone": 1})

    def other_request(value: int) -> Callable[[], None]:
        def commit() -> None:
            session = manager.initialize_session({"Cookie": header})
            session.data["theirs"] = value
            manager.commit(session)
        return commit

    mine = manager.initialize_session({"Cookie": header})
    mine.data["mine"] = 1
    del mine.data["gone"]
    store.before_set = [other_request(2), other_request(3)]
    manager.commit(mine)

    assert store.before_set == [], "both other requests committed: two conflicts, two merges"
    assert store.calls["set"] == 5  # two others + this request's three attempts
    final: dict[str, Any] = manager.initialize_session({"Cookie": header}).data
    assert final == {"mine": 1, "theirs": 3}
