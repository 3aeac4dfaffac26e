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


#: Value types a reader cannot change in place: handing one out cannot change the session.
#: (Not tuples: a serializer may produce tuples that hold lists.)
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


class SessionData(dict):  # type: ignore[type-arg]
    """The ``dict`` :attr:`Session.data` returns: it notes whether it may have changed.

    ``changed`` becomes true on any write (``d[k] = v``, ``del``, ``update``,
    ``pop``, ``setdefault``, ``clear``, ``|=``, ...) and whenever a value that
    can be changed in place (a list, a dict, a tuple, anything not a str,
    number, bool, ``None`` or bytes) is handed out, by ``d[k]``,
    ``get``, ``values()``, ``items()``, ``copy()``, ``|`` or ``dict(d)`` /
    ``{**d}``.  A commit serialises the data to look for changes only when it
    is true, so a request that only reads strings and numbers skips that work;
    nested in-place changes are still saved, because reaching the nested value
    set the flag.

    .. versionadded:: 0.1
    """

    __slots__ = ("changed",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self.changed = False

    # reads that may hand out a mutable value
    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) not in _IMMUTABLE:
            self.changed = True
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = dict.get(self, key, default)
        if type(value) not in _IMMUTABLE:
            self.changed = True
        return value

    def values(self) -> Any:
        self.changed = True
        return dict.values(self)

    def items(self) -> Any:
        self.changed = True
        return dict.items(self)

    def copy(self) -> dict[Any, Any]:
        self.changed = True
        return dict(dict.items(self))

    def __or__(self, other: Any) -> Any:
        self.changed = True
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self.changed = True
        return dict.__ror__(self, other)

    def __iter__(self) -> Any:
        # Overridden only so that dict(d) and {**d} read values through __getitem__
        # (CPython copies a dict subclass's values directly unless __iter__ is its own).
        return dict.__iter__(self)

    # writes
    def __setitem__(self, key: Any, value: Any) -> None:
        self.changed = True
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self.changed = True
        dict.__delitem__(self, key)

    def __ior__(self, other: Any) -> SessionData:
        self.changed = True
        dict.update(self, other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.changed = True
        dict.update(self, *args, **kwargs)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.changed = True
        return dict.setdefault(self, key, default)

    def pop(self, key: Any, *default: Any) -> Any:
        self.changed = True
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[Any, Any]:
        self.changed = True
        return dict.popitem(self)

    def clear(self) -> None:
        self.changed = True
        dict.clear(self)

    def __reduce__(self) -> Any:
        self.changed = True
        return (dict, (dict(dict.items(self)),))


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
    * ``transport``: ``"cookie"``, ``"header"`` (an ``Authorization: Bearer``
      token) or ``None`` (new, or listed from the store).

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
        "_replaced_handle",
        "_lock_token",
        "_transport",
        "_token_due",
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
        # the handle a verified cookie named, when a login or regenerate had just replaced it
        self._replaced_handle: str | None = None
        self._lock_token: str | None = None
        # "cookie" or "header": how this request presented the session (or, for a new
        # session, what it will be handed out by); the header transport never sets a cookie.
        self._transport: str | None = None
        # a header session whose token changed (new id, new key): the response names it
        self._token_due = False

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
        session._replaced_handle = None
        session._lock_token = None
        session._transport = None
        session._token_due = False
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
        """The session's data, a :class:`SessionData` dict; JSON types (plus Flask's tagged types under Flask)."""
        data = self._data
        if type(data) is not SessionData:
            # Converted on first use: reads through the core and the Flask adapter keep the plain dict.
            data = self._data = SessionData(data)
        return data

    @data.setter
    def data(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"session data must be a mapping, got {type(value).__name__}")
        self._data = SessionData(value)
        self._data_touched = True
        if not self._user_id_explicit:
            derived = user_id_from_data(self._data)
            if derived is not None:
                self._user_id = derived

    def _maybe_changed(self) -> bool:
        """Whether the data may differ from what was loaded (a commit then compares the serialised text)."""
        return self._data_touched or getattr(self._data, "changed", False)

    @property
    def user_id(self) -> UserId | None:
        """The owning user's id, or ``None`` for an anonymous session."""
        return self._user_id

    @user_id.setter
    def user_id(self, value: UserId | None) -> None:
        self._user_id = validate_user_id(value)
        self._user_id_explicit = True

    @property
    def transport(self) -> str | None:
        """How this request presented the session: ``"cookie"``, ``"header"`` or ``None``.

        ``"header"`` for a session read from an ``Authorization: Bearer`` token
        (or handed out as one by :meth:`~kitsession_wsgi.SessionManager.session_token`),
        ``"cookie"`` for one read from the session cookie, ``None`` for a new
        session and for sessions listed from the store.  An API can refuse
        cookie sessions (they need a CSRF token) and a form can refuse header
        sessions with it.

        .. versionadded:: 0.2
        """
        return None if self.is_new else self._transport

    @property
    def is_destroyed(self) -> bool:
        """The session was removed during this request."""
        return self._destroyed

    def __repr__(self) -> str:
        state = "new" if self.is_new else ("destroyed" if self._destroyed else "stored")
        return f"<Session handle={self.handle!r} user_id={self._user_id!r} {state}>"
