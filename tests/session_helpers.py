"""Shared helpers for the core tests: a call-counting store and a Set-Cookie parser.

Set-Cookie values are parsed with :class:`http.cookies.SimpleCookie` (attributes)
and werkzeug's ``parse_date`` (Expires), never with regexes over the header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import unquote

from werkzeug.http import parse_date

from kitsession_wsgi import MemoryStore, Session, SessionManager, StoreUnavailable
from kitsession_wsgi import _backoff as backoff
from kitsession_wsgi.stores.base import SessionRecord, SetResult, UserId


class CountingStore(MemoryStore):
    """A real :class:`MemoryStore` that counts every call, and can hand out chosen ids.

    ``ids``: ids returned by ``create_id`` in order before falling back to random ones.
    """

    def __init__(self, *, ids: Iterable[str] = (), **options: Any) -> None:
        super().__init__(**options)
        self.calls: Counter[str] = Counter()
        self.queued_ids = list(ids)

    def reset(self) -> None:
        self.calls.clear()

    def create_id(self) -> str:
        self.calls["create_id"] += 1
        if self.queued_ids:
            return self.queued_ids.pop(0)
        return super().create_id()

    def get(self, key: str) -> SessionRecord | None:
        self.calls["get"] += 1
        return super().get(key)

    def create(self, record: SessionRecord) -> bool:
        self.calls["create"] += 1
        return super().create(record)

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        self.calls["set"] += 1
        return super().set(record, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        self.calls["touch"] += 1
        return super().touch(key, updated_at, expires_at)

    def delete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return super().delete(key)

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        self.calls["delete_all_for_user"] += 1
        return super().delete_all_for_user(user_id, except_key)

    def writes(self) -> int:
        """Calls that change the store."""
        return sum(self.calls[m] for m in ("create", "set", "touch", "delete", "delete_all_for_user"))


@dataclass
class SetCookie:
    """One parsed ``Set-Cookie`` value."""

    name: str
    raw_value: str  # as on the wire (percent-encoded)
    attributes: dict[str, Any]

    @property
    def value(self) -> str:
        """The value as ``cookie.parse`` / the core decode it."""
        return unquote(self.raw_value)

    @property
    def max_age(self) -> int:
        return int(self.attributes["max-age"])

    @property
    def expires(self) -> float:
        parsed = parse_date(self.attributes["expires"])
        assert parsed is not None, self.attributes["expires"]
        return parsed.timestamp()

    @property
    def request_header(self) -> str:
        """What a browser sends back in its ``Cookie`` header."""
        return f"{self.name}={self.raw_value}"

    @property
    def is_removal(self) -> bool:
        return self.raw_value == "" and self.max_age == 0


def parse_set_cookie(header: str | None) -> SetCookie:
    assert header is not None, "expected a Set-Cookie value, got None"
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    assert len(jar) == 1, f"expected exactly one cookie in {header!r}"
    (morsel,) = jar.values()
    attributes = {k: v for k, v in morsel.items() if v not in ("", False)}
    return SetCookie(morsel.key, morsel.coded_value, attributes)


def node_signed_value(secret: str | bytes, session_id: str) -> str:
    """express-session's value, ``s:`` + ``cookie-signature`` 1.x ``sign``: id + ``.`` + unpadded base64
    HMAC-SHA256.  A fast in-process oracle for the many tests that need one; that it equals the real
    npm package is checked by ``test_signing.py`` (node_cookie_signature)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = base64.b64encode(hmac.new(key, session_id.encode("utf-8"), hashlib.sha256).digest())
    return f"s:{session_id}.{mac.decode('ascii').rstrip('=')}"


def node_token_value(secret: str | bytes, session_id: str) -> str:
    """A bearer token as the docs define it, computed here apart from the library: id + ``.`` +
    unpadded base64 HMAC-SHA256 under the key ``HMAC-SHA256(secret, "kitsession-wsgi bearer token
    key v1")``, so no cookie's MAC is a token's."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    token_key = hmac.new(key, b"kitsession-wsgi bearer token key v1", hashlib.sha256).digest()
    mac = base64.b64encode(hmac.new(token_key, session_id.encode("utf-8"), hashlib.sha256).digest())
    return f"{session_id}.{mac.decode('ascii').rstrip('=')}"


def stored_session(manager: SessionManager, store: CountingStore, *, data: dict[str, Any] | None = None,
                   user_id: UserId | None = None) -> tuple[Session, str]:
    """A stored session and the ``Cookie`` request header value that carries it."""
    session = manager.create_session(user_id=user_id, data={"n": 1} if data is None else data)
    cookie = parse_set_cookie(manager.set_session_cookie(session))
    store.reset()
    return session, cookie.request_header


#: every I/O method of the store contract (:class:`~kitsession_wsgi.SessionStore`): what an outage can hit
STORE_METHODS = ("get", "create", "set", "touch", "delete", "delete_all_for_user", "get_all", "get_all_for_user",
                 "purge_expired", "acquire_lock", "release_lock")


class FlakyStore(CountingStore):
    """A real (counting) MemoryStore that fails on demand: every contract method in ``failing``
    raises StoreUnavailable, before it changes anything.

    The one test double for a store outage at the manager and adapter level
    (real server outages are tested in the store suites).  ``failing`` accepts
    only names from :data:`STORE_METHODS`, so a typo cannot make a test fail
    nothing; ``failures`` counts the calls that really failed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._failing: frozenset[str] = frozenset()
        self.failures: Counter[str] = Counter()

    @property
    def failing(self) -> frozenset[str]:
        return self._failing

    @failing.setter
    def failing(self, methods: Iterable[str]) -> None:
        methods = frozenset(methods)
        unknown = methods - set(STORE_METHODS)
        assert not unknown, f"not store contract methods: {sorted(unknown)}"
        self._failing = methods
        # The store changed its mind at once: the manager's outage backoff (which would
        # refuse calls for a second after a failure) forgets the last failure.
        backoff.reset(self)

    def _check(self, method: str) -> None:
        if method in self._failing:
            self.failures[method] += 1
            raise StoreUnavailable(f"{method}: store is down (test double)", store="flaky")

    def get(self, key: str) -> SessionRecord | None:
        self._check("get")
        return super().get(key)

    def create(self, record: SessionRecord) -> bool:
        self._check("create")
        return super().create(record)

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        self._check("set")
        return super().set(record, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        self._check("touch")
        return super().touch(key, updated_at, expires_at)

    def delete(self, key: str) -> bool:
        self._check("delete")
        return super().delete(key)

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        self._check("delete_all_for_user")
        return super().delete_all_for_user(user_id, except_key)

    def get_all(self) -> list[SessionRecord]:
        self._check("get_all")
        return super().get_all()

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        self._check("get_all_for_user")
        return super().get_all_for_user(user_id)

    def purge_expired(self, now: float) -> int:
        self._check("purge_expired")
        return super().purge_expired(now)

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        self._check("acquire_lock")
        return super().acquire_lock(key, token, ttl)

    def release_lock(self, key: str, token: str) -> None:
        self._check("release_lock")
        super().release_lock(key, token)


class InterleavingStore(CountingStore):
    """A real (counting) MemoryStore that runs queued "other requests" just before a ``set``.

    Each queued callable runs once, before the next ``set`` reaches the store,
    as if another request had committed at that moment.
    """

    def __init__(self) -> None:
        super().__init__()
        self.before_set: list[Callable[[], None]] = []

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        if self.before_set:
            queued, self.before_set = self.before_set, []
            queued.pop(0)()
            self.before_set = queued
        return super().set(record, expected_version)


def gone_or_replaced(record: SessionRecord | None) -> bool:
    """The state of an id a login or ``regenerate`` replaced: no record, or the core's short-lived
    "replaced" marker (never served, no user, no data of the session)."""
    from kitsession_wsgi._markers import is_replaced_marker

    return record is None or (is_replaced_marker(record) and record.user_id is None)


def live_records(store: Any) -> list[SessionRecord]:
    """The store's records without the core's markers ("replaced", "revoked")."""
    from kitsession_wsgi._markers import is_marker

    return [record for record in store.get_all() if not is_marker(record)]
