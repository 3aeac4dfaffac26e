"""Flask's tagged JSON for session data, with Flask's ``register()`` hook for custom tags.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json as _json
import typing as t

from flask.json.tag import JSONTag, TaggedJSONSerializer

from ..serialization import (
    COMPACT_ENCODER,
    SessionSerializationError,
    check_keys,
    describe_serialization_error,
    loads_json,
)
from ..session import SessionData

__all__ = [
    "FlaskSessionSerializer",
]

#: JSON's own scalar types (exactly these: a subclass may serialise another way).  A tuple, not a
#: set: membership compares by identity first and never hashes the type (a metaclass may make
#: a class unhashable).
_PLAIN_SCALARS = (str, int, float, bool, type(None))


class FlaskSessionSerializer:
    """Flask's tagged JSON (datetime, UUID, bytes, Markup, tuple) over plain JSON.

    Independent of the app's JSON provider, so the stored text is the same in
    and out of an app context.  Data made only of plain JSON types (the usual
    case) skips Flask's tagging walk both ways; the text is identical either
    way, so change detection stays exact.  :meth:`register` is Flask's hook for
    custom tagged types (``app.session_interface.serializer.register(MyTag)``).

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._tagged = TaggedJSONSerializer()
        self._untag = getattr(self._tagged, "_untag_scan", None)
        self._custom_tags = False
        self._refresh_tags()

    def register(self, tag_class: type[JSONTag], force: bool = False, index: int | None = None) -> None:
        """Register a :class:`flask.json.tag.JSONTag` subclass, as on Flask's own serializer.

        :raises KeyError: the tag's key is taken and ``force`` is false.

        .. versionadded:: 0.2
        """
        self._tagged.register(tag_class, force=force, index=index)
        # A custom tag may claim plain values, so its data always goes through the tagging walk.
        self._custom_tags = True
        self._refresh_tags()

    def _refresh_tags(self) -> None:
        self._tag_keys = frozenset(self._tagged.tags)
        # Flask's own tag keys start with a space; the load shortcut below relies on that.
        self._spaced_keys = all(key.startswith(" ") for key in self._tag_keys)

    def dumps(self, data: dict[str, t.Any]) -> str:
        check_keys(data)
        try:
            tagged = data if not self._custom_tags and self._is_plain(data) else self._tagged.tag(data)
            return COMPACT_ENCODER.encode(tagged)
        except (TypeError, ValueError) as exc:
            raise describe_serialization_error(data, exc, self._dumps_value) from exc
        except RecursionError as exc:
            raise SessionSerializationError(None, "session data is nested too deeply to store") from exc

    def loads(self, text: str) -> t.Any:
        value = loads_json(text)
        # Every tag is a one-key object whose key starts with a space: without
        # '{" ' in the text there is nothing to untag.
        if self._spaced_keys and '{" ' not in text:
            return value
        return self._untag(value) if self._untag is not None else self._tagged.loads(text)

    def _dumps_value(self, value: t.Any) -> str:
        return _json.dumps(self._tagged.tag(value), allow_nan=False)

    def _is_plain(self, value: t.Any) -> bool:
        kind = type(value)
        if kind in _PLAIN_SCALARS:
            return True
        # Scalars are tested in the generators, not by a call each: every write walks all the
        # data.  Containers still recurse through a generator, two frames a level as before, so
        # the depth that is refused as too deep (RecursionError, below) has not moved.
        if kind is list:
            return all(type(item) in _PLAIN_SCALARS or self._is_plain(item) for item in value)
        if kind is dict or kind is SessionData:
            if len(value) == 1 and next(iter(value)) in self._tag_keys:
                return False
            return all(type(key) is str and (type(item) in _PLAIN_SCALARS or self._is_plain(item))
                       for key, item in value.items())
        return False
