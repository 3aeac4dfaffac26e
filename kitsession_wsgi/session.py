"""The :class:`Session` object handed to applications.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ._device import Device
from .errors import InvalidUserId
from .stores.base import SessionRecord, UserId

__all__ = [
    "USER_ID_DATA_KEYS",
    "USER_ID_MAX_BYTES",
    "Session",
    "SessionData",
    "require_user_id",
    "user_id_from_data",
    "validate_user_id",
]

#: Data keys that name the user, in the order svelte-kit-session's README lists them.
USER_ID_DATA_KEYS = ("id", "user_id", "userId")
#: How an error message names each of them (built once: every write with a user checks one)
_DATA_KEY_NAMES = {name: f"data[{name!r}]" for name in USER_ID_DATA_KEYS}

#: The longest user id, in bytes of UTF-8 (an int: its decimal text).  Every
#: bundled store can index it: the SQL ``user_id`` column holds 255 bytes of
#: which the ``i:``/``s:`` type tag takes 2; memcached keys (250 bytes at most)
#: and Redis keys hold a digest of it or the id plus a short prefix.  The
#: margin leaves room for a custom store's own prefix.
#:
#: .. versionadded:: 0.2
USER_ID_MAX_BYTES = 200

# C0 controls, DEL and C1 controls: a NUL ends a C string (PostgreSQL refuses it
# in text), a newline forges a log line; no real account id holds one.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
# An int whose decimal text is at most USER_ID_MAX_BYTES long ("-" counts).
_INT_ABOVE = 10 ** USER_ID_MAX_BYTES
_INT_BELOW = -(10 ** (USER_ID_MAX_BYTES - 1))


def validate_user_id(user_id: object, *, what: str = "user_id") -> UserId | None:
    """Apply the user-id rule: return ``user_id`` (``None`` passes) or raise.

    The rule, the same for every store and every route a user id takes
    (``create_session``, ``new_session``, ``Session.user_id``, data keys,
    ``remove_all_sessions_for_user``, ``get_sessions_for_user``, revoking by
    handle):

    * an ``int`` (not ``bool``) or a non-empty ``str``; a subclass of either is
      returned as the plain type;
    * at most :data:`USER_ID_MAX_BYTES` (200) bytes in UTF-8; for an int, its
      decimal text (so ``-10**199 < user_id < 10**200``);
    * no control characters (U+0000-U+001F, U+007F-U+009F) and no lone surrogates.

    :param what: how the message names the value (``"data['id']"``).
    :raises InvalidUserId: the id breaks the rule (a ``ValueError`` and a ``TypeError``).

    .. versionchanged:: 0.2
        Length and control-character checks; :class:`~kitsession_wsgi.InvalidUserId`.
    """
    if user_id is None:
        return None
    if type(user_id) is int:
        if not _INT_BELOW < user_id < _INT_ABOVE:
            raise InvalidUserId(
                f"{what} is an int of more than {USER_ID_MAX_BYTES} digits", argument=what, reason="too_long"
            )
        return user_id
    if type(user_id) is not str:
        if isinstance(user_id, bool) or not isinstance(user_id, (int, str)):
            raise InvalidUserId(
                f"{what} must be an int or a str, got {type(user_id).__name__}", argument=what, reason="type"
            )
        # A subclass could answer ==, hash or str() its own way; stores see the plain value.
        return validate_user_id(int(user_id) if isinstance(user_id, int) else str.__str__(user_id), what=what)
    if not user_id:
        raise InvalidUserId(f"{what} must not be an empty string", argument=what, reason="empty")
    size = len(user_id)
    if size > USER_ID_MAX_BYTES or not user_id.isascii():
        try:
            size = len(user_id.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidUserId(
                f"{what} must be valid Unicode text (it holds a lone surrogate)", argument=what, reason="surrogate"
            ) from None
        if size > USER_ID_MAX_BYTES:
            raise InvalidUserId(
                f"{what} is {size} bytes in UTF-8; at most {USER_ID_MAX_BYTES} are allowed",
                argument=what,
                reason="too_long",
            )
    match = _CONTROL_CHARACTER.search(user_id)
    if match is not None:
        raise InvalidUserId(
            f"{what} holds a control character (U+{ord(match.group()):04X} at index {match.start()})",
            argument=what,
            reason="control_character",
        )
    return user_id


def require_user_id(user_id: object, *, what: str = "user_id") -> UserId:
    """:func:`validate_user_id` for arguments that must name a user: ``None`` is refused too.

    For ``remove_all_sessions_for_user``, ``get_sessions_for_user`` and the
    ``user_id=`` of ``remove_session_by_handle``, where ``None`` would ask each
    store something different (a SQL ``= NULL`` matches nothing, other stores
    raise ``TypeError``).

    :raises InvalidUserId: ``user_id`` is ``None`` or breaks the user-id rule.

    .. versionadded:: 0.2
    """
    if user_id is None:
        raise InvalidUserId(f"{what} must name a user, got None", argument=what, reason="type")
    checked = validate_user_id(user_id, what=what)
    assert checked is not None
    return checked


def user_id_from_data(data: Mapping[str, Any], *, strict: bool = True) -> UserId | None:
    """svelte-kit-session's rule: the first of ``id``, ``user_id``, ``userId`` that holds a user id.

    ``0`` is a valid id (svelte-kit-session's truthiness test lost it); ``None``, ``""``
    and values of other types (a float, a bool, a list) are not ids and fall
    through to the next key.  An int or non-empty str under one of these keys
    *is* the session's user, so it must pass :func:`validate_user_id`: one that
    does not (too long, a control character) is refused with
    :class:`~kitsession_wsgi.InvalidUserId` rather than skipped, because a
    session that looks logged in to the application but is linked to no user
    would escape "sign out everywhere".  Like an oversized value, it is
    refused before anything is written.

    :param strict: ``False`` returns such a value unchecked instead (for asking
        whether data read back from a store named a user at all).
    :raises InvalidUserId: with ``strict``, the value breaks the user-id rule.

    .. versionchanged:: 0.2
        A value that breaks the user-id rule is refused.
    """
    for name in USER_ID_DATA_KEYS:
        value = data.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
            continue
        if value == "":
            continue
        if not strict:
            return value
        return validate_user_id(value, what=_DATA_KEY_NAMES[name])
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
        "_device",
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
        self._device: tuple[str, str | None] | None = None  # (user agent, ip) as stored

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
        session._device = None
        return session

    @property
    def device(self) -> Device | None:
        """The browser this session belongs to (:class:`~kitsession_wsgi.Device`), or ``None``.

        Recorded when a request creates or logs in the session; ``None`` without one.
        """
        if self._device is None:
            return None
        return Device(self._device[0], self._device[1], self.created_at, self.updated_at)

    # -- state transitions ------------------------------------------------------------------
    # The manager moves a session between states only through these methods: nothing outside
    # this class writes its private slots (tests/test_session_state.py checks the package).

    @classmethod
    def _anonymous(cls, *, transport: str | None = None, clear_cookie: bool = False,
                   replaced_handle: str | None = None) -> Session:
        """A new session for a request whose cookie or token named no live session.

        ``clear_cookie``: the presented cookie is cleared on the response;
        ``replaced_handle``: the cookie named an id a move replaced moments ago.
        """
        session = cls()
        session._transport = transport
        session._clear_cookie = clear_cookie
        session._replaced_handle = replaced_handle
        return session

    def _records_device(self, device: tuple[str, str | None], text: str | None = None) -> None:
        """Its browser is ``device`` (``(user agent, ip)``); ``text``: its stored data text without it."""
        self._device = device
        if text is not None:
            self._loaded_text = text

    def _loaded_by(self, transport: str, *, resigned: bool) -> None:
        """Served to a request through ``transport``; ``resigned``: its cookie or token is sent again."""
        self._transport = transport
        if resigned:
            self._send_cookie = True

    def _inserted(self, *, session_id: str, handle: str, text: str, created_at: float, updated_at: float,
                  expires_at: float) -> None:
        """The store now holds this session under a new id (version 1); its cookie is due."""
        self.id = session_id
        self.handle = handle
        self.created_at = created_at
        self.is_new = False
        self._clear_cookie = False
        self._stored(text, self._user_id, 1, updated_at, expires_at, send_cookie=True)

    def _stored(self, text: str, user_id: UserId | None, version: int, updated_at: float, expires_at: float,
                *, send_cookie: bool) -> None:
        """The store now holds ``text`` and ``user_id`` for this session at ``version``."""
        self._loaded_text = text
        self._loaded_user_id = user_id
        self._user_id = user_id
        self._version = version
        self.updated_at = updated_at
        self.expires_at = expires_at
        if send_cookie:
            self._send_cookie = True

    def _touched(self, updated_at: float, expires_at: float, *, send_cookie: bool) -> None:
        """Only the expiry moved in the store."""
        self.updated_at = updated_at
        self.expires_at = expires_at
        if send_cookie:
            self._send_cookie = True

    def _vanished(self) -> None:
        """Removed by another request (or replaced by a move) meanwhile: it stays removed, no cookie."""
        self._destroyed = True
        self._clear_cookie = False
        self._send_cookie = False

    def _removed(self) -> None:
        """Removed by this request: the cookie is cleared."""
        self._destroyed = True
        self._clear_cookie = True
        self._send_cookie = False

    def _merged(self, data: dict[str, Any], user_id: UserId | None) -> None:
        """Data and user as they will be stored (a merge with what another request saved, or a move)."""
        self._data = data
        self._user_id = user_id

    def _follow_user(self, user_id: UserId | None) -> None:
        """The user the data now names (svelte-kit-session's rule), unlike the explicit setter."""
        self._user_id = user_id

    def _cookie_due(self) -> bool:
        """Whether a cookie (or token) must be sent; answering clears the flag."""
        due, self._send_cookie = self._send_cookie, False
        return due

    def _replacing(self, previous: Session | None) -> None:
        """Commit replaces ``previous`` (the login path); ``None`` drops that."""
        self._replaces = previous

    def _take_replaced(self) -> Session | None:
        """The session this one replaces, once: the move that retires it takes it."""
        previous, self._replaces = self._replaces, None
        return previous

    def _carried_by(self, transport: str | None) -> None:
        """Which transport the session's id travels by (a header session gets tokens, never cookies)."""
        self._transport = transport

    def _token_is_due(self, due: bool) -> None:
        self._token_due = due

    def _locked(self, token: str | None) -> None:
        """This request holds the store's lock on the session (``token``), or no longer does (``None``)."""
        self._lock_token = token

    def _note_data_touched(self) -> None:
        """The data was handed out for writing (an adapter's own mapping view): it may change."""
        self._data_touched = True

    def _forget_changes(self) -> None:
        """From now on, change tracking counts changes made after this point only."""
        self._data_touched = False
        if type(self._data) is SessionData:
            self._data.changed = False

    def _differs_from_stored(self, dumps: Callable[[dict[str, Any]], str]) -> str | None:
        """The data serialised if it differs from what was loaded or saved, else ``None``.

        Serialises only when the data may have changed at all (see :class:`SessionData`).
        """
        if not self._maybe_changed():
            return None
        text = dumps(self._data)
        return None if text == self._loaded_text else text

    def _user_changed(self) -> bool:
        return self._user_id != self._loaded_user_id

    def _take_stored_state(self, fresh: Session) -> None:
        """Adopt what a just-loaded copy says is stored (data, user, version, times)."""
        self._data = fresh._data
        self._data_touched = False
        self._user_id = fresh._user_id
        self._loaded_text = fresh._loaded_text
        self._device = fresh._device
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
        """Whether the data may differ from what was loaded (a commit then compares the serialised text).

        The one "may have changed" rule: the data was handed out for writing or
        replaced, or the :class:`SessionData` noted a write or a mutable value read.
        """
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
