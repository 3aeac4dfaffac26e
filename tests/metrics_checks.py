"""kitsession_wsgi.metrics, read back through the OpenTelemetry SDK's in-memory reader.

The SDK's ``MeterProvider`` is set as the global one, the way an application configures
OpenTelemetry; nothing of kitsession-wsgi is enabled by hand.  Counters are cumulative,
so each test compares a reading before and after.

A global provider cannot be unset, and every manager built after it would time its
store, so these tests run in a pytest process of their own: ``tests/test_metrics.py``
starts it (the name keeps this module out of the main collection).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics", reason="pip install opentelemetry-sdk (the dev extra)")

from opentelemetry import metrics as otel_metrics  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from kitsession_wsgi import MemoryStore, SessionManager, SessionStore, StoreUnavailable, signals  # noqa: E402
from kitsession_wsgi import metrics  # noqa: E402
from kitsession_wsgi.metrics import InstrumentedStore, instrumented  # noqa: E402
from kitsession_wsgi.testing import StoreContract, make_record  # noqa: E402

from clocks import FakeClock  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

READER = InMemoryMetricReader()
otel_metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))

Point = tuple[str, frozenset[tuple[str, Any]]]


def reading() -> dict[Point, float]:
    """Every data point now: a counter's value, a histogram's count, by name and attributes."""
    points: dict[Point, float] = {}
    data = READER.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            if scope.scope.name != metrics.METER_NAME:
                continue
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "count", None)
                    points[(metric.name, frozenset(point.attributes.items()))] = (
                        value if value is not None else point.value)  # type: ignore[union-attr]
    return points


class Meter:
    """Differences between two readings: ``meter.delta(name, **attributes)``."""

    def __init__(self) -> None:
        self.before = reading()

    def delta(self, name: str, attributes: dict[str, Any] | None = None) -> float:
        key = (name, frozenset((attributes or {}).items()))
        return reading().get(key, 0) - self.before.get(key, 0)


@pytest.fixture
def meter() -> Iterator[Meter]:
    yield Meter()


# -- the session counters ---------------------------------------------------------------


def test_created_and_removed_sessions_are_counted(meter: Meter) -> None:
    manager = SessionManager(MemoryStore())
    sessions = [manager.create_session(data={"n": i}) for i in range(3)]
    manager.remove_session(sessions[0])
    assert meter.delta("kitsession.sessions.created") == 3
    assert meter.delta("kitsession.sessions.removed", {metrics.REASON: "removed"}) == 1


def test_an_expired_session_is_counted_as_removed_for_expiry(meter: Meter, clock: FakeClock) -> None:
    manager = SessionManager(MemoryStore(), max_age=60, clock=clock)
    session = manager.create_session(data={"k": 1})
    clock.advance(61)
    assert manager.get_session(session.id) is None  # type: ignore[arg-type]
    assert meter.delta("kitsession.sessions.removed", {metrics.REASON: "expired"}) == 1


def test_evictions_are_counted_by_reason(meter: Meter) -> None:
    manager = SessionManager(MemoryStore(max_sessions=2))
    for i in range(5):
        manager.create_session(data={"n": i})
    assert meter.delta("kitsession.sessions.evicted", {metrics.REASON: "least_recently_used"}) == 3


def test_sessions_evicted_by_the_per_user_limit_are_counted(meter: Meter) -> None:
    manager = SessionManager(MemoryStore(), max_sessions_per_user=1)
    for _ in range(3):
        manager.create_session(user_id=5)
    assert meter.delta("kitsession.sessions.evicted", {metrics.REASON: "max_sessions_per_user"}) == 2


def test_revocations_and_merges_are_counted_from_their_signals(meter: Meter) -> None:
    manager = SessionManager(MemoryStore())
    signals.revoked.send(manager, user_id=5, count=3)
    signals.revoked.send(manager, user_id=5, count=0)
    signals.conflict_merged.send(manager, session=None)
    assert meter.delta("kitsession.sessions.revoked") == 3
    assert meter.delta("kitsession.conflicts.merged") == 1


def test_sign_out_everywhere_and_revoke_by_handle_are_counted(meter: Meter) -> None:
    manager = SessionManager(MemoryStore())
    here = manager.create_session(user_id=5)
    there = manager.create_session(user_id=5)
    for _ in range(2):
        manager.create_session(user_id=5)
    assert manager.remove_session_by_handle(there.handle, user_id=5)  # type: ignore[arg-type]
    assert manager.remove_all_sessions_for_user(5, here) == 2
    assert meter.delta("kitsession.sessions.revoked") == 3


def test_a_merged_conflict_is_counted(meter: Meter) -> None:
    manager = SessionManager(MemoryStore())
    session = manager.create_session(data={"a": 0, "b": 0})
    first, second = (manager.get_session(session.id) for _ in range(2))  # type: ignore[arg-type]
    assert first is not None and second is not None
    first.data["a"] = 1
    second.data["b"] = 1
    manager.commit(first)
    manager.commit(second)
    assert manager.get_session(session.id).data == {"a": 1, "b": 1}  # type: ignore[arg-type, union-attr]
    assert meter.delta("kitsession.conflicts.merged") == 1


def test_a_manager_with_metrics_off_is_not_counted(meter: Meter) -> None:
    manager = SessionManager(MemoryStore(), metrics=False)
    manager.remove_session(manager.create_session(data={"n": 1}))
    assert meter.delta("kitsession.sessions.created") == 0
    assert meter.delta("kitsession.sessions.removed", {metrics.REASON: "removed"}) == 0


# -- the store histogram ----------------------------------------------------------------


def _store_point(operation: str, store: str = "MemoryStore", **extra: str) -> dict[str, str]:
    return {metrics.STORE: store, metrics.OPERATION: operation, **extra}


def test_the_manager_times_its_store_unless_metrics_is_off(meter: Meter) -> None:
    timed = SessionManager(MemoryStore())
    untimed = SessionManager(MemoryStore(), metrics=False)
    for manager in (timed, untimed):
        manager.create_session(data={"n": 1})
    assert meter.delta("kitsession.store.duration", _store_point("create")) == 1
    assert meter.delta("kitsession.sessions.created") == 1


def test_each_store_call_is_timed_by_store_and_operation(meter: Meter) -> None:
    manager = SessionManager(instrumented(MemoryStore()), keys="k")
    session = manager.create_session(user_id=1, data={"n": 0})
    cookie = {"Cookie": manager.set_session_cookie(session).split(";", 1)[0]}
    for _ in range(4):
        loaded = manager.initialize_session(cookie)
    loaded.data["n"] = 1
    manager.commit(loaded)
    manager.get_sessions_for_user(1)
    duration = "kitsession.store.duration"
    assert meter.delta(duration, _store_point("create")) == 1
    assert meter.delta(duration, _store_point("get")) == 4
    assert meter.delta(duration, _store_point("set")) == 1
    assert meter.delta(duration, _store_point("get_all_for_user")) == 1
    data = READER.get_metrics_data()
    assert data is not None
    [histogram] = [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name == duration]
    assert histogram.unit == "s"
    [get_point] = [p for p in histogram.data.data_points if dict(p.attributes) == _store_point("get")]
    assert get_point.sum > 0 and get_point.explicit_bounds == metrics.DURATION_BUCKETS  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_errors_are_counted_by_the_drivers_error(meter: Meter) -> None:
    """A Redis store whose server is not there: the driver's ConnectionError, counted and timed."""
    pytest.importorskip("redis")
    from kitsession_wsgi.stores.redis import RedisStore

    store = instrumented(RedisStore.from_url(f"redis://127.0.0.1:{_free_port()}/0"))
    with pytest.raises(StoreUnavailable) as raised:
        store.get("k")
    kind = type(raised.value.__cause__).__qualname__
    assert kind == "ConnectionError"
    failed = _store_point("get", "RedisStore", **{metrics.ERROR_TYPE: kind})
    assert meter.delta("kitsession.store.errors", failed) == 1
    assert meter.delta("kitsession.store.duration", failed) == 1
    assert meter.delta("kitsession.store.duration", _store_point("get", "RedisStore")) == 0


def test_a_store_without_locks_is_not_an_error(meter: Meter) -> None:
    class NoLocks(MemoryStore):
        def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
            return SessionStore.acquire_lock(self, key, token, ttl)

    with pytest.raises(NotImplementedError):
        instrumented(NoLocks()).acquire_lock("k", "t", 1)
    assert not [point for point in reading() if point[0] == "kitsession.store.errors"
                and (metrics.STORE, "NoLocks") in point[1]]


def test_the_wrapper_passes_the_stores_own_attributes_through(tmp_path: Path) -> None:
    pytest.importorskip("peewee")
    from kitsession_wsgi.stores.peewee import PeeweeStore

    inner = PeeweeStore.from_url(f"sqlite:///{tmp_path / 's.db'}")
    store = instrumented(inner)
    store.create_tables()  # type: ignore[attr-defined]
    record = make_record(store)
    assert store.create(record) and inner.get(record.key) is not None
    assert instrumented(store) is store
    store.close()


class TestInstrumentedStore(StoreContract):
    """The wrapper is a store like any other."""

    @pytest.fixture
    def store(self) -> Iterator[SessionStore]:
        wrapped = instrumented(MemoryStore())
        assert isinstance(wrapped, InstrumentedStore)
        yield wrapped


# -- without OpenTelemetry --------------------------------------------------------------


def test_the_package_imports_and_records_nothing_without_opentelemetry() -> None:
    script = textwrap.dedent("""
        import sys

        class NoOpenTelemetry:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from kitsession_wsgi import MemoryStore, SessionManager, metrics
        store = MemoryStore()
        assert metrics.AVAILABLE is False and metrics.instruments() is None and not metrics.configured()
        assert metrics.instrumented(store) is store
        manager = SessionManager(store)
        manager.remove_session(manager.create_session(data={"n": 1}))
        assert not any(name.startswith("opentelemetry") for name in sys.modules)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_provider_configured_after_the_first_sessions_receives_what_follows() -> None:
    """No enabling call, and no order to keep for the counters: the API's proxy instruments
    forward to a provider set later.  The store is timed only when a provider was
    configured before it was instrumented: until then ``instrumented`` costs nothing."""
    script = textwrap.dedent("""
        from kitsession_wsgi import MemoryStore, SessionManager, metrics
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        bare = MemoryStore()
        assert not metrics.configured() and metrics.instrumented(bare) is bare
        manager = SessionManager(metrics.instrumented(bare))
        manager.create_session(data={"before": 1})
        reader = InMemoryMetricReader()
        otel_metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        assert metrics.configured()
        timed = SessionManager(metrics.instrumented(MemoryStore()))
        for current in (manager, timed):
            current.create_session(data={"after": 1})
        values = {m.name: sum(getattr(p, "count", None) or getattr(p, "value", 0) for p in m.data.data_points)
                  for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics}
        print(values["kitsession.sessions.created"], values["kitsession.store.duration"])
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "1"]
