"""The :class:`Session` object handed to applications.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .stores.base import SessionRecord, UserId

#: Data keys that name the user, in the order the seed's README lists them.
USER_ID_DATA_KEYS = ("id", "user_id", "userId")


def validate_user_id(user_id: object, *, what: str = "user_id") -> UserId | None:
    """Return ``user_id`` if it is ``None``, an ``int`` (not ``bool``) or a non-empty ``str``.

    :raises TypeError: any other type.
    :raises ValueError: an empty string.
    """
    if user_id is None:
        return None
    if isinstance(user_id, bool) or not isinstance(user_id, (int, str)):
        raise TypeError(f"{what} must be an int or a str, got {type(user_id).__name__}")
    if isinstance(user_id, str):
        if not user_id:
            raise ValueError(f"{what} must not be an empty string")
        if not user_id.isascii():
            try:
                user_id.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{what} must be valid Unicode text (it holds a lone surrogate)") from None
    return user_id


def user_id_from_data(data: Mapping[str, Any]) -> UserId | None:
    """The seed's rule: the first of ``id``, ``user_id``, ``userId`` that holds a user id.

    ``0`` is a valid id (the seed's truthiness test lost it); ``None`` and
    values that are not ids fall through to the next key.
    """
    for name in USER_ID_DATA_KEYS:
        value = data.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
            continue
        if value == "":
            continue
        return value
    return None


class Session:
    """One user's session: its secret id, public handle, data and lifetimes.

    Applications read and change :attr:`data` (a ``dict``, in place or by
    assignment); the :class:`~kitsession_wsgi.SessionManager` decides what to
    write.  Assigning ``data`` with an ``id``, ``user_id`` or ``userId`` key sets
    :attr:`user_id` from it, unless ``user_id`` was set explicitly.

    Attributes:

    * ``id``: the secret id carried by the cookie; ``None`` on sessions listed
      from the store and on a new session not yet saved.
    * ``handle``: public, non-secret identifier (a SHA-256 digest of the id),
      safe to put in a page to list or revoke a device.
    * ``data``, ``user_id``, ``user`` (user row loaded by the store, if configured).
    * ``created_at``, ``updated_at`` (last activity), ``expires_at``: Unix times.
    * ``is_new``: the session has no stored record yet.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "id",
        "handle",
        "user",
        "created_at",
        "updated_at",
        "expires_at",
        "is_new",
        "_data",
        "_data_touched",
        "_user_id",
        "_user_id_explicit",
        "_loaded_text",
        "_loaded_user_id",
        "_version",
        "_send_cookie",
        "_clear_cookie",
        "_destroyed",
        "_replaces",
        "_lock_token",
    )

    def __init__(
        self,
        *,
        id: str | None = None,
        handle: str | None = None,
        data: dict[str, Any] | None = None,
        user_id: UserId | None = None,
        user: dict[str, Any] | None = None,
        created_at: float = 0.0,
        updated_at: float = 0.0,
        expires_at: float = 0.0,
        is_new: bool = True,
    ) -> None:
        self.id = id
        self.handle = handle
        self.user = user
        self.created_at = created_at
        self.updated_at = updated_at
        self.expires_at = expires_at
        self.is_new = is_new
        self._data: dict[str, Any] = {} if data is None else data
        # Set whenever the data dict was handed out or replaced: only then can
        # it differ from what is stored, so untouched sessions skip serialising.
        self._data_touched = False
        self._user_id = validate_user_id(user_id)
        self._user_id_explicit = user_id is not None
        # What the store holds, to tell a changed session from an unchanged one.
        self._loaded_text = "{}"
        self._loaded_user_id: UserId | None = self._user_id if not is_new else None
        self._version = 0
        self._send_cookie = False
        self._clear_cookie = False
        self._destroyed = False
        self._replaces: Session | None = None
        self._lock_token: str | None = None

    @classmethod
    def from_record(cls, record: SessionRecord, session_id: str | None, data: dict[str, Any]) -> Session:
        """The session a stored record describes (``data`` is its parsed data).

        Skips the argument checks of ``__init__``: a record holds what a
        manager validated when it wrote it.  On the read path of every request.
        """
        session = cls.__new__(cls)
        session.id = session_id
        session.handle = record.key
        session.user = record.user
        session.created_at = record.created_at
        session.updated_at = record.updated_at
        session.expires_at = record.expires_at
        session.is_new = False
        session._data = data
        session._data_touched = False
        session._user_id = record.user_id
        session._user_id_explicit = False
        session._loaded_text = record.data
        session._loaded_user_id = record.user_id
        session._version = record.version
        session._send_cookie = False
        session._clear_cookie = False
        session._destroyed = False
        session._replaces = None
        session._lock_token = None
        return session

    def _take_stored_state(self, fresh: Session) -> None:
        """Adopt what a just-loaded copy says is stored (data, user, version, times)."""
        self._data = fresh._data
        self._data_touched = False
        self._user_id = fresh._user_id
        self._loaded_text = fresh._loaded_text
        self._loaded_user_id = fresh._loaded_user_id
        self._version = fresh._version
        self.updated_at = fresh.updated_at
        self.expires_at = fresh.expires_at

    @property
    def data(self) -> dict[str, Any]:
        """The session's data; JSON types (plus Flask's tagged types under Flask)."""
        self._data_touched = True
        return self._data

    @data.setter
    def data(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"session data must be a mapping, got {type(value).__name__}")
        self._data = dict(value)
        self._data_touched = True
        if not self._user_id_explicit:
            derived = user_id_from_data(self._data)
            if derived is not None:
                self._user_id = derived

    @property
    def user_id(self) -> UserId | None:
        """The owning user's id, or ``None`` for an anonymous session."""
        return self._user_id

    @user_id.setter
    def user_id(self, value: UserId | None) -> None:
        self._user_id = validate_user_id(value)
        self._user_id_explicit = True

    @property
    def is_destroyed(self) -> bool:
        """The session was removed during this request."""
        return self._destroyed

    def __repr__(self) -> str:
        state = "new" if self.is_new else ("destroyed" if self._destroyed else "stored")
        return f"<Session handle={self.handle!r} user_id={self._user_id!r} {state}>"
