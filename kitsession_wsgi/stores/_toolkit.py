"""Small pieces every store shares: option checks, the driver-error guard, the recent-reads memo
and the user-tag codec.

Nothing here knows a driver; each store passes in what is its own (which driver errors are
outages, what a message says).

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar, Union

from .._bounded import put_bounded

__all__ = [
    "DriverErrors", "RecentReads", "is_int", "is_number", "same_user", "user_from_tag", "user_index_key",
    "user_tag",
]

_Value = TypeVar("_Value")

#: what a store's translator returns for a driver error: the library error to raise instead,
#: or ``None`` to let the error through (a bug, not an outage)
Translator = Callable[[Exception, str], Union[Exception, None]]


# -- option checks ------------------------------------------------------------------------

def is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` and not a ``bool`` (``True`` is an ``int`` to Python, never to an option)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or ``float`` and not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- driver errors --------------------------------------------------------------------------

class DriverErrors:
    """``with DriverErrors(translate, "read a session"):``: a driver error inside becomes the library's.

    ``translate(exc, action)`` gives the error to raise (chained ``from`` the
    driver's) or ``None`` to re-raise the original.  Only ``Exception``s are
    translated; ``KeyboardInterrupt`` and the like pass.  A class rather than a
    generator-based context manager: it is entered on every store call.
    """

    __slots__ = ("_action", "_translate")

    def __init__(self, translate: Translator, action: str) -> None:
        self._translate = translate
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if not isinstance(exc, Exception):
            return False
        error = self._translate(exc, self._action)
        if error is None:
            return False
        raise error from exc


# -- the recent-reads memo ------------------------------------------------------------------

class RecentReads(dict[str, _Value]):
    """What the last reads of some sessions saw, kept for the save that usually follows a read.

    A bounded dict (oldest entry out first) of session key (or item key) to what
    the store read; a write takes its entry out with :meth:`take`, so an entry
    is used at most once.  Entries are hints: a store must still check that the
    stored row or item did not change since (a version compared in ``WHERE``, a
    CAS token).

    :param limit: most entries kept.
    :param max_size: the largest value remembered (by the ``size`` given to :meth:`remember`),
        so large sessions do not pin memory.
    """

    def __init__(self, limit: int = 256, max_size: int = 64 * 1024) -> None:
        super().__init__()
        self.limit = limit
        self.max_size = max_size

    def remember(self, key: str, value: _Value, size: int) -> None:
        """Keep ``value`` under ``key`` unless ``size`` is over ``max_size``."""
        if size <= self.max_size:
            put_bounded(self, key, value, self.limit)

    def take(self, key: str) -> _Value | None:
        """The entry under ``key``, removed; ``None`` when there is none."""
        return self.pop(key, None)


# -- the user-tag codec ---------------------------------------------------------------------

def is_storable_text(text: str) -> bool:
    """Whether ``text`` fits an SQL text column: no NUL (PostgreSQL refuses one in any string)
    and no lone surrogate (not encodable as UTF-8).

    Keys, handles and user ids the core writes always are; one that is not names
    nothing stored, so a store answers "not found" for it instead of a driver error.
    """
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def user_index_key(user_id: int | str) -> str:
    """A stable text form of a user id for indexes: ``i:5`` or ``s:alice``.

    Keeps ``5`` and ``"5"`` apart, so a user named ``"5"`` never sees user 5's
    sessions.

    :raises TypeError: ``user_id`` is neither an ``int`` (not ``bool``) nor a ``str``.
    """
    if isinstance(user_id, bool) or not isinstance(user_id, (int, str)):
        raise TypeError(f"user_id must be int or str, got {type(user_id).__name__}")
    return f"i:{user_id}" if isinstance(user_id, int) else f"s:{user_id}"


def user_tag(user_id: int | str) -> str:
    """:func:`user_index_key`, or ``u:`` + hex of it when it is not valid UTF-8 text.

    For stores that write the tag as UTF-8 (into keys and records); ``u:`` never
    starts a plain ``i:``/``s:`` form, so the two cannot collide.
    """
    text = user_index_key(user_id)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "u:" + text.encode("utf-8", "surrogatepass").hex()
    return text


def user_from_tag(tag: str | bytes) -> int | str | None:
    """The user id of a tag :func:`user_index_key` or :func:`user_tag` wrote (text or UTF-8 bytes).

    An empty tag is an anonymous session (``None``).

    :raises ValueError: ``tag`` is not a user tag.
    """
    # Bytes first, without decoding: this is on every read of a Redis or memcached record.
    if isinstance(tag, bytes):
        if tag.startswith(b"i:"):
            return int(tag[2:])
        if tag.startswith(b"s:"):
            return tag[2:].decode("utf-8")
        tag = tag.decode("utf-8", "surrogatepass")
    if tag.startswith("u:"):
        tag = bytes.fromhex(tag[2:]).decode("utf-8", "surrogatepass")
    if not tag:
        return None
    if tag.startswith("s:"):
        return tag[2:]
    if tag.startswith("i:"):
        return int(tag[2:])
    raise ValueError(f"not a user index key: {tag!r}")


def same_user(a: Any, b: Any) -> bool:
    """Whether two user ids (or ``None``) are the same user: equal and of one type (``5`` is not ``"5"``)."""
    return bool(a == b) and type(a) is type(b)
