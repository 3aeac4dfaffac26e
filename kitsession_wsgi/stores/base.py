"""The store contract every session backend implements.

A store keeps :class:`SessionRecord` objects under a *key*.  The core hands
stores a digest of the session id as the key, never the id itself, so a leaked
table or cache dump yields no usable cookie.

The rules a store must keep (checked by :class:`kitsession_wsgi.testing.StoreContract`):

* ``create`` is insert-only: it returns ``False`` and changes nothing when the
  key exists.
* ``set`` is update-only and versioned: it writes only when the stored version
  equals ``expected_version``; a removed session is never brought back.
* ``touch`` moves ``updated_at`` and ``expires_at`` of an existing record and
  nothing else (no version bump, no resurrection).
* Listing and revoking per user costs O(that user's sessions).
* Driver connection errors become :class:`~kitsession_wsgi.StoreUnavailable`.
* Stores return records as stored, expired ones included; the core enforces
  expiry with its own clock (``purge_expired`` takes that clock's ``now``).

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import enum
import math
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Union

from .._bounded import put_bounded
from ._toolkit import user_index_key

__all__ = ["SessionRecord", "SessionStore", "SetResult", "UserId", "put_bounded", "user_index_key"]

#: A user id: an ``int`` (not ``bool``) or a non-empty ``str``.
UserId = Union[int, str]


class SetResult(enum.Enum):
    """Outcome of :meth:`SessionStore.set`.

    .. versionadded:: 0.1
    """

    SAVED = "saved"
    #: the stored version differs from the expected one: someone else saved first
    CONFLICT = "conflict"
    #: no record under the key: the session was removed and stays removed
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One stored session, as stores see it.

    :param key: storage key (a digest of the session id).
    :param data: the session data, already serialised (JSON text).
    :param user_id: the owning user, or ``None`` for an anonymous session.
    :param created_at: Unix time the session was created.
    :param updated_at: Unix time of the last write or touch (the "last active" time).
    :param expires_at: Unix time after which the record must not be served
        (the earlier of the absolute lifetime and the idle deadline).
    :param version: incremented by every ``set``; the optimistic-lock token.
    :param user: user columns joined in by a store that loads users (read-only).

    .. versionadded:: 0.1
    """

    key: str
    data: str
    user_id: UserId | None
    created_at: float
    updated_at: float
    expires_at: float
    version: int = 1
    user: dict[str, Any] | None = field(default=None, compare=False)

    def ttl(self) -> int:
        """Whole seconds from the last write to expiry, at least 1 (for cache TTLs)."""
        return max(1, math.ceil(self.expires_at - self.updated_at))

    def with_changes(self, **changes: Any) -> SessionRecord:
        """A copy with some fields replaced."""
        return replace(self, **changes)


class SessionStore(abc.ABC):
    """Base class of session stores; subclass it and fill in the abstract methods.

    All methods are synchronous and must be safe to call from several threads.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       :attr:`process_local` and :meth:`create_tables`.
    """

    #: ``True`` for a store whose records only this process sees (the
    #: :class:`~kitsession_wsgi.MemoryStore`): served by several worker processes it
    #: signs users out, so the adapters log a warning when a request says so
    #: (``wsgi.multiprocess``) or the process was forked after the store was built.
    process_local: bool = False

    def create_tables(self) -> None:
        """Create what the store needs in its backend (tables, indexes) if it is missing.

        Idempotent.  The Flask extension calls it at ``init_app`` for a store it
        built from a ``KITSESSION_STORE`` URL, and ``flask kitsession init-db`` for
        any store; constructors never do (no side effects in constructors).  The
        default does nothing: memory, memcached and Redis need no set-up.

        :raises StoreUnavailable: the backend cannot be reached.
        """

    def create_id(self) -> str:
        """A new secret session id: 256 random bits, URL-safe text.

        Override only to change the id format; whatever it returns must be
        unguessable.
        """
        return secrets.token_urlsafe(32)

    @abc.abstractmethod
    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key`` (expired or not), or ``None``."""

    @abc.abstractmethod
    def create(self, record: SessionRecord) -> bool:
        """Insert ``record``; ``False`` (and no change) when the key already exists."""

    @abc.abstractmethod
    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the stored record if its version is ``expected_version``.

        ``record.version`` is the new version (normally ``expected_version + 1``).
        Never inserts.
        """

    @abc.abstractmethod
    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move the record's activity time and expiry; ``False`` when it is gone."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the record; ``True`` when one was removed."""

    @abc.abstractmethod
    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Remove every record of ``user_id`` but ``except_key``; return how many."""

    @abc.abstractmethod
    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """Every record of ``user_id``."""

    @abc.abstractmethod
    def get_all(self) -> list[SessionRecord]:
        """Every record in the store."""

    @abc.abstractmethod
    def purge_expired(self, now: float) -> int:
        """Remove records with ``expires_at <= now``; return how many."""

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the per-session lock for ``key`` unless another token holds it.

        ``token`` identifies the holder; the lock frees itself after ``ttl``
        real seconds even if its holder dies.  The lock does not require a
        record under ``key``.  Returns ``False`` when another holder has it.
        Stores without locking raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support session locks")

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock for ``key`` if ``token`` still holds it (an expired lock taken over stays)."""
        raise NotImplementedError(f"{type(self).__name__} does not support session locks")

    def apply_timeout(self, seconds: float) -> None:
        """Bound each call (connect and read) by ``seconds``: the manager's ``store_timeout``.

        A bundled store sets its driver's timeouts: those of a client it built from a
        URL, and those a client given by the user leaves unset (a timeout the user set
        on their client is kept).  The default does nothing: a third-party store bounds
        its own calls.

        .. versionadded:: 0.3
        """

    def close(self) -> None:
        """Release connections; the default does nothing."""
