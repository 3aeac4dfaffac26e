"""OpenTelemetry metrics: what sessions do, and how long each store call takes.

Install the extra (``pip install 'kitsession-wsgi[otel]'``, the ``opentelemetry-api``
package) and configure OpenTelemetry as for any instrumented library (an SDK
``MeterProvider`` set as the global one, by hand or by ``opentelemetry-instrument``):
kitsession-wsgi records through the global ``MeterProvider`` with no enabling call of
its own.  Without ``opentelemetry-api`` this module still imports and records nothing,
and until a provider is configured nothing is timed (:func:`instrumented`).

Instruments (meter ``kitsession_wsgi``):

============================== ========= ==============================================
name                           kind      attributes
============================== ========= ==============================================
``kitsession.sessions.created`` counter
``kitsession.sessions.removed`` counter   ``kitsession.reason``: ``"removed"`` (a logout,
                                          ``remove_session``) or ``"expired"`` (a
                                          presented session past its expiry)
``kitsession.sessions.revoked`` counter   (``remove_all_sessions_for_user``, a removal by
                                          handle: each session counted once)
``kitsession.sessions.evicted`` counter   ``kitsession.reason`` (a bounded store made room,
                                          or ``"max_sessions_per_user"``)
``kitsession.conflicts.merged`` counter   (a save merged into a concurrent one)
``kitsession.store.errors``     counter   ``kitsession.store``, ``kitsession.operation``,
                                          ``error.type``
``kitsession.store.duration``   histogram ``kitsession.store`` (the store's class),
                                (seconds) ``kitsession.operation`` (``get``, ``set``, ...),
                                          ``error.type`` on a failed call
============================== ========= ==============================================

The session counters are fed by :mod:`kitsession_wsgi.signals`, connected when this
module is imported; a manager built with ``metrics=False`` is not counted.  The store
histogram and the error counter come from :func:`instrumented`, a pass-through store
that times each call of the store it wraps.  ``error.type`` is the class of the driver
error behind a :class:`~kitsession_wsgi.StoreUnavailable` (``ConnectionError``,
``TimeoutError``, ``OperationalError``), or of the exception itself when it has none.

.. versionadded:: 0.3
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from . import signals
from .stores.base import SessionRecord, SessionStore, SetResult, UserId

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram

try:
    from opentelemetry import metrics as otel_metrics
except ImportError:  # the [otel] extra is not installed: nothing is recorded
    otel_metrics = None  # type: ignore[assignment]

#: Whether ``opentelemetry-api`` is importable (the ``[otel]`` extra).
AVAILABLE = otel_metrics is not None

#: The meter's name: the instrumentation scope every instrument reports under.
METER_NAME = "kitsession_wsgi"
#: Store call durations are seconds; these bounds (0.1 ms to 10 s) resolve both an
#: in-process store and one that hangs until its timeout.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0)

STORE = "kitsession.store"
OPERATION = "kitsession.operation"
REASON = "kitsession.reason"
ERROR_TYPE = "error.type"


class Instruments(NamedTuple):
    """The instruments, created once from the global ``MeterProvider``'s meter."""

    created: Counter
    removed: Counter
    revoked: Counter
    evicted: Counter
    merged: Counter
    store_errors: Counter
    store_duration: Histogram


_instruments: Instruments | None = None


def instruments() -> Instruments | None:
    """The instruments (``None`` without ``opentelemetry-api``).

    Taken from the global provider's meter on first use; before a provider is
    configured that is the API's proxy meter, whose instruments start recording
    once one is, so the order of configuration does not matter.
    """
    global _instruments
    if _instruments is None and otel_metrics is not None:
        meter = otel_metrics.get_meter(METER_NAME, _version())
        _instruments = Instruments(
            created=meter.create_counter("kitsession.sessions.created", "{session}", "Sessions stored for the first time"),
            removed=meter.create_counter("kitsession.sessions.removed", "{session}",
                                         "Sessions removed by the application or found expired"),
            revoked=meter.create_counter("kitsession.sessions.revoked", "{session}",
                                         "Sessions revoked: sign-out-everywhere or removal by handle"),
            evicted=meter.create_counter("kitsession.sessions.evicted", "{session}",
                                         "Sessions a bounded store dropped to make room"),
            merged=meter.create_counter("kitsession.conflicts.merged", "{conflict}",
                                        "Saves merged into a concurrent save of the same session"),
            store_errors=meter.create_counter("kitsession.store.errors", "{error}", "Store calls that raised"),
            store_duration=meter.create_histogram(
                "kitsession.store.duration", "s", "Duration of store calls",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS),
        )
    return _instruments


def _version() -> str:
    """The installed distribution's version (the package itself imports the manager, which imports this)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kitsession-wsgi")
    except PackageNotFoundError:
        return "0"


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of a failed store call: the driver error's class behind a wrapped one."""
    return type(exc.__cause__ or exc).__qualname__


# -- the session counters, from the signals ---------------------------------------------


def _counted(sender: object) -> bool:
    # A manager built with metrics=False is not counted (stores send evicted themselves).
    return getattr(sender, "metrics", True) is not False


def _on_created(sender: object, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.created.add(1)


def _on_destroyed(sender: object, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.removed.add(1, {REASON: "removed"})


def _on_expired(sender: object, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.removed.add(1, {REASON: "expired"})


def _on_revoked(sender: object, *, count: int = 1, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender) and count > 0:
        found.revoked.add(count)


def _on_evicted(sender: object, *, reason: str = "unknown", **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.evicted.add(1, {REASON: reason})


def _on_session_evicted(sender: object, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.evicted.add(1, {REASON: "max_sessions_per_user"})


def _on_conflict_merged(sender: object, **_: Any) -> None:
    found = instruments()
    if found is not None and _counted(sender):
        found.merged.add(1)


if AVAILABLE:
    # Strong references: these module-level functions live as long as the module.
    signals.created.connect(_on_created, weak=False)
    signals.destroyed.connect(_on_destroyed, weak=False)
    signals.expired.connect(_on_expired, weak=False)
    signals.evicted.connect(_on_evicted, weak=False)
    signals.session_evicted.connect(_on_session_evicted, weak=False)
    signals.revoked.connect(_on_revoked, weak=False)
    signals.conflict_merged.connect(_on_conflict_merged, weak=False)


# -- the store histogram, from a pass-through store --------------------------------------


def configured() -> bool:
    """Whether a ``MeterProvider`` is configured: installed, and set as the global one.

    The API's own providers (the proxy it hands out until one is set, the no-op one)
    record nothing; any other provider (the SDK's) is configured.
    """
    if otel_metrics is None:
        return False
    return not type(otel_metrics.get_meter_provider()).__module__.startswith("opentelemetry.metrics")


def instrumented(store: SessionStore) -> SessionStore:
    """``store``, timed: every call's duration goes to ``kitsession.store.duration``.

    Returns ``store`` itself, so that the read path costs exactly what it costs
    without metrics, when no ``MeterProvider`` is configured at the time of the
    call (:func:`configured`: ``opentelemetry-api`` missing, or no provider set
    yet), and when ``store`` is instrumented already.  The manager applies it to
    its store when it is built, unless built with ``metrics=False``: configure
    OpenTelemetry before the application builds its manager, as
    ``opentelemetry-instrument`` and a setup at the top of the WSGI entry point do
    (the session counters need no such order).  Wrap the parts of a composed store
    to see them apart (``MigratingStore(instrumented(target), instrumented(source))``).

    .. versionadded:: 0.3
    """
    if isinstance(store, InstrumentedStore) or not configured():
        return store
    found = instruments()
    assert found is not None  # configured() implies the API is there
    return InstrumentedStore(store, found)


class InstrumentedStore(SessionStore):
    """A pass-through :class:`SessionStore` that times each call of ``inner``.

    Any other attribute (``create_tables``, ``clear``, a store's client) is the
    inner store's.  A call that raises is timed with ``error.type`` and counted in
    ``kitsession.store.errors``; ``NotImplementedError`` (a store without locks) is
    passed on untouched, since it is a property of the store, not a failure.

    .. versionadded:: 0.3
    """

    def __init__(self, inner: SessionStore, found: Instruments) -> None:
        self.inner = inner
        self._duration = found.store_duration
        self._errors = found.store_errors
        name = type(inner).__name__
        self._store_name = name
        # One attribute mapping per operation, built once: recording allocates nothing.
        self._attributes: dict[str, Mapping[str, str]] = {
            operation: {STORE: name, OPERATION: operation} for operation in OPERATIONS
        }

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"instrumented({self.inner!r})"

    def _failed(self, operation: str, started: float, exc: Exception) -> None:
        attributes = {STORE: self._store_name, OPERATION: operation, ERROR_TYPE: error_type(exc)}
        self._duration.record(time.perf_counter() - started, attributes)
        self._errors.add(1, attributes)

    def create_id(self) -> str:
        return self.inner.create_id()

    def get(self, key: str) -> SessionRecord | None:
        started = time.perf_counter()
        try:
            record = self.inner.get(key)
        except Exception as exc:
            self._failed("get", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["get"])
        return record

    def create(self, record: SessionRecord) -> bool:
        started = time.perf_counter()
        try:
            created = self.inner.create(record)
        except Exception as exc:
            self._failed("create", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["create"])
        return created

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        started = time.perf_counter()
        try:
            result = self.inner.set(record, expected_version)
        except Exception as exc:
            self._failed("set", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["set"])
        return result

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        started = time.perf_counter()
        try:
            touched = self.inner.touch(key, updated_at, expires_at)
        except Exception as exc:
            self._failed("touch", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["touch"])
        return touched

    def delete(self, key: str) -> bool:
        started = time.perf_counter()
        try:
            deleted = self.inner.delete(key)
        except Exception as exc:
            self._failed("delete", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["delete"])
        return deleted

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        started = time.perf_counter()
        try:
            count = self.inner.delete_all_for_user(user_id, except_key)
        except Exception as exc:
            self._failed("delete_all_for_user", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["delete_all_for_user"])
        return count

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        started = time.perf_counter()
        try:
            records = self.inner.get_all_for_user(user_id)
        except Exception as exc:
            self._failed("get_all_for_user", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["get_all_for_user"])
        return records

    def get_all(self) -> list[SessionRecord]:
        started = time.perf_counter()
        try:
            records = self.inner.get_all()
        except Exception as exc:
            self._failed("get_all", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["get_all"])
        return records

    def purge_expired(self, now: float) -> int:
        started = time.perf_counter()
        try:
            count = self.inner.purge_expired(now)
        except Exception as exc:
            self._failed("purge_expired", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["purge_expired"])
        return count

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        started = time.perf_counter()
        try:
            acquired = self.inner.acquire_lock(key, token, ttl)
        except NotImplementedError:
            raise
        except Exception as exc:
            self._failed("acquire_lock", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["acquire_lock"])
        return acquired

    def release_lock(self, key: str, token: str) -> None:
        started = time.perf_counter()
        try:
            self.inner.release_lock(key, token)
        except NotImplementedError:
            raise
        except Exception as exc:
            self._failed("release_lock", started, exc)
            raise
        self._duration.record(time.perf_counter() - started, self._attributes["release_lock"])

    def apply_timeout(self, seconds: float) -> None:
        self.inner.apply_timeout(seconds)

    def create_tables(self) -> None:
        self.inner.create_tables()

    @property
    def process_local(self) -> bool:  # type: ignore[override]  # read from the wrapped store
        return self.inner.process_local

    def close(self) -> None:
        self.inner.close()


#: The store operations the histogram distinguishes (``kitsession.operation``).
OPERATIONS = ("get", "create", "set", "touch", "delete", "delete_all_for_user", "get_all_for_user", "get_all",
              "purge_expired", "acquire_lock", "release_lock")
