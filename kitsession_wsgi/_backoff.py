"""Outage backoff: a failing store is left alone for a while instead of asked again at once.

When a store hangs (a blackholed host, a stopped server), every call waits out its
``store_timeout``; a busy site would have all its workers waiting at once.  The
manager therefore calls its store through :class:`BackoffStore`, a circuit breaker:

* closed (the store answers): each call goes straight through;
* a call raises :class:`~kitsession_wsgi.StoreUnavailable`: the breaker opens for
  ``outage_backoff`` seconds, during which every call raises ``StoreUnavailable`` at
  once without touching the store (no connection attempt, no driver retry), so the
  adapters answer ``503`` with ``Retry-After`` immediately;
* the backoff over, ONE call (the probe) goes to the store while the others still fail
  fast; if it answers, the breaker closes and the store serves every request again; if
  it fails, the breaker opens for another ``outage_backoff``.

Only store calls are refused: a request that needs none (an anonymous request whose
session is never given data, a cookie that fails verification) is never failed.  Only
``StoreUnavailable`` opens the breaker, and not its ``TablesMissing`` kind: a conflict, a
missing lock support, bad data or a missing table are answers, not outages.  The state is the store's, shared by every manager over it
(:func:`guarded` returns one breaker per store), since an outage is the store's too.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import StoreUnavailable, TablesMissing
from .stores.base import SessionRecord, SessionStore, SetResult, UserId

__all__ = ["BackoffStore", "guarded", "reset"]

T = TypeVar("T")

# id(store) -> its breaker, while a manager holds the breaker (which holds the store, so the
# id cannot be reused meanwhile); a dict keyed by the store itself would keep it alive.
_breakers: weakref.WeakValueDictionary[int, BackoffStore] = weakref.WeakValueDictionary()
_breakers_lock = threading.Lock()


def guarded(store: SessionStore, backoff: float | None, wrap: Callable[[SessionStore], SessionStore]) -> SessionStore:
    """``wrap(store)`` behind its breaker (no breaker when ``backoff`` is ``None``).

    One breaker per store: managers built over the same store (a Flask app's, one per
    configuration) share its outage state.  ``wrap`` is applied to the store inside the
    breaker the first time (the metrics' timing wrapper), so refused calls are not timed
    as store calls.
    """
    if isinstance(store, BackoffStore):
        return store
    if getattr(store, "partial_outages", False) is True:
        # A cluster whose nodes fail one at a time: the client skips a failed node itself
        # (memcached's dead_timeout); one node's outage must not fail every session.
        backoff = None
    if backoff is None:
        return wrap(store)
    with _breakers_lock:
        breaker = _breakers.get(id(store))
        if breaker is None or breaker.given is not store:
            breaker = BackoffStore(wrap(store), backoff)
            breaker.given = store
            _breakers[id(store)] = breaker
        breaker.backoff = backoff
        return breaker


def reset(store: SessionStore) -> None:
    """Forget ``store``'s outage: its next call goes to it (a test double that recovers at once)."""
    with _breakers_lock:
        breaker = _breakers.get(id(store))
    if breaker is not None and breaker.given is store:
        breaker._closed()


class BackoffStore(SessionStore):
    """A pass-through :class:`SessionStore` that stops calling ``inner`` while it keeps failing.

    :param inner: the store.
    :param backoff: seconds without a store call after a failed one.

    A refused call's :class:`~kitsession_wsgi.StoreUnavailable` has the last failure's
    driver error as its ``__cause__``.  Any other attribute (``drain``, ``create_tables``, a store's client) is the inner
    store's.

    .. versionadded:: 0.3
    """

    def __init__(self, inner: SessionStore, backoff: float) -> None:
        self.inner = inner
        #: the store this breaker guards (``inner`` may be that store, timed)
        self.given: SessionStore = inner
        self.backoff = backoff
        #: ``time.monotonic()`` until which calls fail without reaching the store (0: closed)
        self.open_until = 0.0
        self._probing = False
        self._lock = threading.Lock()
        self._last_error: StoreUnavailable | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BackoffStore({self.inner!r})"

    @property
    def is_open(self) -> bool:
        """Whether calls are refused now (an outage, backing off or probing)."""
        return self.open_until != 0.0

    def _call(self, call: Callable[[], T]) -> T:
        probe = self._admit() if self.open_until else False
        try:
            result = call()
        except StoreUnavailable as exc:
            self._failed(exc)
            raise
        except BaseException:
            if probe:
                self._closed()  # the store answered, with an error of another kind
            raise
        if self.open_until:
            self._closed()
        return result

    def _failed(self, exc: StoreUnavailable) -> None:
        if isinstance(exc, TablesMissing):
            # The database answered: a missing table is set-up to do (``init-db``), not an
            # outage to wait out, and the next request after it should find the table.
            if self.open_until:
                self._closed()
            return
        with self._lock:
            self.open_until = time.monotonic() + self.backoff
            self._probing = False
            self._last_error = exc

    def _closed(self) -> None:
        with self._lock:
            self.open_until = 0.0
            self._probing = False

    def _admit(self) -> bool:
        """Let this call through as the probe (``True``), or refuse it without touching the store.

        ``False``: the breaker closed meanwhile (another request's call answered).
        """
        with self._lock:
            open_until = self.open_until
            if not open_until:
                return False
            if time.monotonic() < open_until or self._probing:
                cause = self._last_error
                raise StoreUnavailable(
                    f"session store failing; not tried again for up to {self.backoff:g}s"
                    + (f" (last error: {cause})" if cause is not None else ""),
                    store=cause.store if cause is not None else "",
                ) from (cause.__cause__ or cause) if cause is not None else None
            self._probing = True
            return True

    # -- the contract, each call through the breaker ----------------------------------

    def create_id(self) -> str:
        return self.inner.create_id()

    def get(self, key: str) -> SessionRecord | None:
        if not self.open_until:
            # The common case, inlined: one attribute test on the read path.
            try:
                return self.inner.get(key)
            except StoreUnavailable as exc:
                self._failed(exc)
                raise
        return self._call(lambda: self.inner.get(key))

    def create(self, record: SessionRecord) -> bool:
        return self._call(lambda: self.inner.create(record))

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        return self._call(lambda: self.inner.set(record, expected_version))

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        return self._call(lambda: self.inner.touch(key, updated_at, expires_at))

    def delete(self, key: str) -> bool:
        return self._call(lambda: self.inner.delete(key))

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        return self._call(lambda: self.inner.delete_all_for_user(user_id, except_key))

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        return self._call(lambda: self.inner.get_all_for_user(user_id))

    def get_all(self) -> list[SessionRecord]:
        return self._call(lambda: self.inner.get_all())

    def purge_expired(self, now: float) -> int:
        return self._call(lambda: self.inner.purge_expired(now))

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        return self._call(lambda: self.inner.acquire_lock(key, token, ttl))

    def release_lock(self, key: str, token: str) -> None:
        self._call(lambda: self.inner.release_lock(key, token))

    def apply_timeout(self, seconds: float) -> None:
        self.inner.apply_timeout(seconds)

    def create_tables(self) -> None:
        self.inner.create_tables()

    @property
    def process_local(self) -> bool:  # type: ignore[override]  # read from the wrapped store
        return self.inner.process_local

    def close(self) -> None:
        self.inner.close()
