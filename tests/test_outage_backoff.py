"""``outage_backoff``: after a failed store call, calls fail at once without reaching the store,
then one call probes it; the store serves again as soon as a probe succeeds.

A real MemoryStore that fails on demand (FlakyStore) counts the calls that reached it; the
hang itself, with real drivers and servers, is in ``tests/test_store_hangs.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kitsession_wsgi import ConfigurationError, MemoryStore, SessionManager, StoreUnavailable
from kitsession_wsgi._backoff import BackoffStore

from polling import wait_until
from session_helpers import FlakyStore

BACKOFF = 0.3


class StillFailing(FlakyStore):
    """A FlakyStore whose failure state changes without resetting the manager's backoff
    (a real outage ends without telling anyone)."""

    def fail(self, *methods: str) -> None:
        self._failing = frozenset(methods)


def test_calls_during_the_backoff_never_reach_the_store() -> None:
    store = StillFailing()
    manager = SessionManager(store, outage_backoff=BACKOFF)
    session = manager.create_session(data={"n": 1})
    store.fail("get")
    with pytest.raises(StoreUnavailable):
        manager.get_session(session.id)  # type: ignore[arg-type]
    assert store.failures["get"] == 1
    for _ in range(20):
        with pytest.raises(StoreUnavailable) as refused:
            manager.get_session(session.id)  # type: ignore[arg-type]
        assert "not tried again" in str(refused.value)
    assert store.failures["get"] == 1, "a call reached the store during the backoff"


def test_after_the_backoff_one_probe_goes_through_and_recovery_serves_at_once() -> None:
    store = StillFailing()
    manager = SessionManager(store, outage_backoff=BACKOFF)
    session = manager.create_session(data={"n": 1})
    store.fail("get")
    with pytest.raises(StoreUnavailable):
        manager.get_session(session.id)  # type: ignore[arg-type]
    # The backoff passes while the store still fails: one probe, which fails, backs off again.
    wait_until(lambda: store.failures["get"] == 2 or _probe(manager, session.id), timeout=5,
               what="a probe reached the failing store")
    assert store.failures["get"] == 2
    store.fail()
    served = wait_until(lambda: _probe(manager, session.id), timeout=5, what="the store serves again")
    assert served.data == {"n": 1}
    assert manager.get_session(session.id) is not None  # type: ignore[arg-type]  # closed: no waiting


def _probe(manager: SessionManager, session_id: Any) -> Any:
    try:
        return manager.get_session(session_id)
    except StoreUnavailable:
        return None


def test_only_one_request_probes_while_the_others_still_fail_fast() -> None:
    entered = threading.Event()
    release = threading.Event()

    class SlowProbe(MemoryStore):
        slow = False

        def get(self, key: str) -> Any:
            if self.slow:
                entered.set()
                release.wait(10)
            return super().get(key)

    store = SlowProbe()
    breaker = BackoffStore(store, BACKOFF)
    breaker.open_until = time.monotonic() - 1  # backed off, and the backoff is over
    store.slow = True
    probe = threading.Thread(target=breaker.get, args=("k",))
    probe.start()
    assert entered.wait(10)
    with pytest.raises(StoreUnavailable):
        breaker.get("k")  # the probe is in flight: this one does not reach the store
    release.set()
    probe.join(10)
    assert not breaker.is_open
    assert breaker.get("k") is None


def test_an_anonymous_request_is_served_during_an_outage() -> None:
    store = StillFailing()
    manager = SessionManager(store, keys="k", outage_backoff=BACKOFF)
    store.fail(*("get", "create", "set"))
    with pytest.raises(StoreUnavailable):
        manager.initialize_session({"Cookie": f"session={manager.cookie_value('x' * 43)}"})
    anonymous = manager.initialize_session({})
    assert anonymous.is_new and manager.commit(anonymous) is None


def test_managers_over_one_store_share_its_backoff() -> None:
    store = StillFailing()
    first = SessionManager(store, outage_backoff=BACKOFF)
    second = SessionManager(store, outage_backoff=BACKOFF, max_age=60)
    store.fail("get")
    with pytest.raises(StoreUnavailable):
        first.get_session("x" * 43)
    with pytest.raises(StoreUnavailable):
        second.get_session("x" * 43)
    assert store.failures["get"] == 1
    assert first.store is store and second.store is store


def test_other_errors_do_not_open_the_breaker() -> None:
    class NoLocks(MemoryStore):
        def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
            raise NotImplementedError("no locks")

    breaker = BackoffStore(NoLocks(), BACKOFF)
    with pytest.raises(NotImplementedError):
        breaker.acquire_lock("k", "t", 1)
    assert not breaker.is_open


def test_outage_backoff_none_calls_the_store_every_time() -> None:
    store = StillFailing()
    manager = SessionManager(store, outage_backoff=None)
    store.fail("get")
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            manager.get_session("x" * 43)
    assert store.failures["get"] == 3


@pytest.mark.parametrize("option", ["store_timeout", "outage_backoff"])
@pytest.mark.parametrize("value", [0, -1, "2", True], ids=repr)
def test_bad_values_name_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        SessionManager(MemoryStore(), **{option: value})


def test_a_cluster_store_has_no_store_wide_backoff() -> None:
    class TwoNodes(StillFailing):
        partial_outages = True

    store = TwoNodes()
    manager = SessionManager(store)
    store.fail("get")
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            manager.get_session("x" * 43)
    assert store.failures["get"] == 2


def test_flask_config_keys_reach_the_manager_and_the_store(tmp_path: Any) -> None:
    pytest.importorskip("flask")
    pytest.importorskip("peewee")
    from flask import Flask

    from kitsession_wsgi.flask import KitSession

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", KITSESSION_STORE=f"sqlite:///{tmp_path / 's.db'}",
                      KITSESSION_STORE_TIMEOUT=0.7, KITSESSION_OUTAGE_BACKOFF=3, KITSESSION_METRICS=False)
    KitSession(app)
    state = app.extensions["kitsession"]
    manager = state.manager
    assert (manager.store_timeout, manager.outage_backoff, manager.metrics) == (0.7, 3.0, False)
    assert state.store.database.timeout == 0.7  # SQLite's busy timeout
    state.store.close()
