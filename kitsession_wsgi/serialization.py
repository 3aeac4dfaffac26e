"""How session data becomes text and back.

Session data is JSON, never pickle: a leaked or tampered store can at worst
hand back wrong data, never run code.  The Flask extension swaps in a
serializer that adds Flask's tagged types on top of the same JSON.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from typing import Any, Protocol

from .errors import SessionDataError

__all__ = [
    "COMPACT_ASCII_ENCODER",
    "COMPACT_ENCODER",
    "JSONSerializer",
    "SessionSerializationError",
    "Serializer",
    "check_keys",
    "describe_serialization_error",
    "loads_json",
]


class SessionSerializationError(SessionDataError, TypeError):
    """A value in the session data cannot be serialised; ``key`` names where it is.

    .. versionadded:: 0.1
    """

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        super().__init__(message)


class Serializer(Protocol):
    """Turns a session's data dict into text and back."""

    def dumps(self, data: dict[str, Any]) -> str: ...

    def loads(self, text: str) -> Any: ...


#: Built once: ``json.dumps`` with keyword arguments builds an encoder per call.
COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
COMPACT_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False)
#: The scanner a default ``json.JSONDecoder`` (``json.loads``'s) builds: the C one when available.
#: (typeshed types its argument as a scanner; it is the decoder whose settings it copies)
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder())  # type: ignore[arg-type]


def loads_json(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same error.

    Every read parses its session's data, and ``json.loads`` reaches the C scanner
    through three Python frames and two regex matches (about 1.5 us a read).  Data
    this library stored is one compact JSON object, ``{`` to ``}`` with nothing
    around it: that is scanned directly.  Anything else (whitespace around the
    value, trailing data, an error of any kind) is handed to ``json.loads``.
    ``json.scanner`` is not in Python's documentation, but it is what
    ``json.JSONDecoder`` itself calls (unchanged since Python 2.7), and
    ``tests/test_serialization.py`` holds the two equal, value and error.
    """
    if type(text) is str and text[:1] == "{":
        try:
            value, end = _SCAN_ONCE(text, 0)
        except (ValueError, StopIteration, RecursionError):
            return json.loads(text)  # raises json.loads's own error
        if end == len(text):
            return value
    return json.loads(text)


class JSONSerializer:
    """Compact stdlib JSON; raises :class:`SessionSerializationError` naming the bad key.

    .. versionadded:: 0.1
    """

    def dumps(self, data: dict[str, Any]) -> str:
        check_keys(data)
        try:
            text = COMPACT_ENCODER.encode(data)
        except (TypeError, ValueError) as exc:
            raise describe_serialization_error(data, exc, self._dumps_one) from exc
        except RecursionError as exc:
            raise SessionSerializationError(None, "session data is nested too deeply to store") from exc
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # Lone surrogates (JSON from a client can carry them) cannot be
                # stored as UTF-8; escaped, they round-trip in every store.
                text = COMPACT_ASCII_ENCODER.encode(data)
        return text

    def loads(self, text: str) -> Any:
        return loads_json(text)

    @staticmethod
    def _dumps_one(value: Any) -> str:
        return json.dumps(value, allow_nan=False)


def check_keys(data: dict[str, Any]) -> None:
    """Reject non-str keys at any depth: JSON would turn ``1`` into ``"1"`` and merge duplicates.

    Nested containers are walked only where they exist, so flat data costs one
    pass over its keys.

    :raises SessionSerializationError: naming the top-level key that holds the bad key.
    """
    for key, value in data.items():
        if type(key) is not str:
            raise SessionSerializationError(
                None, f"session data keys must be str, got {key!r} ({type(key).__name__})"
            )
        if isinstance(value, (dict, list, tuple)):
            try:
                bad = _non_str_key(value)
            except RecursionError:
                raise SessionSerializationError(key, "session data is nested too deeply to store") from None
            if bad is not _NONE:
                raise SessionSerializationError(
                    key, f"session data key {key!r} holds a dict with the key {bad!r} ({type(bad).__name__}): "
                    "keys must be str at every depth (JSON would store it as a string)"
                )


_NONE = object()


def _non_str_key(value: Any) -> Any:
    """The first dict key inside ``value`` that is not a str, or ``_NONE``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                return key
            if isinstance(item, (dict, list, tuple)) and (bad := _non_str_key(item)) is not _NONE:
                return bad
    else:
        for item in value:
            if isinstance(item, (dict, list, tuple)) and (bad := _non_str_key(item)) is not _NONE:
                return bad
    return _NONE


def describe_serialization_error(
    data: dict[str, Any], exc: Exception, dumps_one: Any
) -> SessionSerializationError:
    """Find the top-level key whose value fails to serialise and say so."""
    for key, value in data.items():
        if not isinstance(key, str):
            return SessionSerializationError(
                None, f"session data keys must be str, got {key!r} ({type(key).__name__})"
            )
        try:
            dumps_one(value)
        except (TypeError, ValueError) as inner:
            return SessionSerializationError(
                key, f"session data key {key!r} cannot be stored as JSON: {inner}"
            )
    return SessionSerializationError(None, f"session data cannot be stored as JSON: {exc}")
