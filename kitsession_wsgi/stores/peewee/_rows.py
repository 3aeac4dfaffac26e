"""The peewee store's rows and records: the user column's value, a row read back as a record,
and the narrow UPDATE a remembered read allows.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import peewee  # type: ignore[import-untyped, unused-ignore]

from ...errors import InvalidUserId
from .._toolkit import is_int, is_storable_text, same_user, user_from_tag, user_index_key
from ..base import SessionRecord, UserId
from ._schema import USER_COLUMN_BYTES
from ._statements import Statements

__all__ = ["ROW_VERSION", "Rows", "narrow_update", "record_of_tagged_row", "same_row"]

#: positions in a row of the ``get`` SELECT
_ROW_USER, _ROW_EXPIRES, ROW_VERSION = 2, 5, 6


class Rows:
    """Records to and from the sessions table's rows, for one store's ``user_model`` and ``user_fields``."""

    def __init__(self, user_model: type[peewee.Model] | None, user_fields: Sequence[str] | None) -> None:
        self._user_key: Any = None
        #: (field name, converter from the column value) for each of ``user_fields``
        self._user_readers: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
        if user_model is not None:
            self._user_key = user_model._meta.primary_key
            self._user_readers = tuple(
                (name, user_model._meta.fields[name].python_value) for name in user_fields or ()
            )

    def user_column(self, user_id: UserId | None) -> Any:
        """What ``user_id`` holds for a user: the tag (``i:5``), or ``user_model``'s key value."""
        if user_id is None:
            return None
        if self._user_key is not None:
            return self._user_key.db_value(user_id)
        text = user_index_key(user_id)
        if not is_storable_text(text):
            raise InvalidUserId("user_id holds a NUL or a lone surrogate, which no SQL text column stores",
                                reason="control_character" if "\x00" in text else "surrogate")
        if len(text.encode("utf-8")) > USER_COLUMN_BYTES:
            raise ValueError(f"user_id is too long for the user_id column ({USER_COLUMN_BYTES - 2} bytes at most)")
        return text

    def record(self, row: Sequence[Any], key: str | None = None) -> SessionRecord:
        """A row of the ``get`` SELECT as a record (``key`` given saves decoding the row's own)."""
        stored_user = row[2]
        user_id: UserId | None
        if stored_user is None:
            user_id = None
        elif self._user_key is not None:
            user_id = self._user_key.python_value(stored_user)
            if not is_int(user_id) and not isinstance(user_id, str):
                user_id = str(user_id)  # e.g. a UUID key: sessions hold int or str user ids
        else:
            user_id = user_from_tag(stored_user)  # bytes from MySQL's VARBINARY
        user: dict[str, Any] | None = None
        if self._user_readers and row[7] is not None:
            user = {name: read(value) for (name, read), value in zip(self._user_readers, row[8:])}
        if key is None:
            key = row[0].decode("ascii") if isinstance(row[0], bytes) else row[0]
        return SessionRecord(
            key=key,
            data=row[1],
            user_id=user_id,
            created_at=float(row[3]),
            updated_at=float(row[4]),
            expires_at=float(row[5]),
            version=int(row[6]),
            user=user,
        )


def narrow_update(statements: Statements, record: SessionRecord, expected_version: int, user: Any,
                   read: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE for ``set`` that leaves out indexed columns equal to what ``read`` holds."""
    stored_user = read[_ROW_USER]
    if isinstance(stored_user, bytes) and isinstance(user, str):  # MySQL VARBINARY
        stored_user = stored_user.decode("utf-8", "replace")
    unchanged_user = same_user(stored_user, user)
    same_expiry = read[_ROW_EXPIRES] == record.expires_at
    data, created, updated, version, key = (record.data, record.created_at, record.updated_at, record.version,
                                            record.key)
    if unchanged_user and same_expiry:
        return statements.update_same_user_and_expiry, (
            data, created, updated, version, key, expected_version, user, read[_ROW_EXPIRES])
    if unchanged_user:
        return statements.update_same_user, (
            data, created, updated, record.expires_at, version, key, expected_version, user)
    if same_expiry:
        return statements.update_same_expiry, (
            data, user, created, updated, version, key, expected_version, read[_ROW_EXPIRES])
    return statements.update, (
        data, user, created, updated, record.expires_at, version, key, expected_version)


def record_of_tagged_row(row: Sequence[Any], key: str) -> SessionRecord:
    """The row-to-record function for SQLite and PostgreSQL stores without ``user_model``.

    There ``user_id`` is tagged text (``i:5`` / ``s:alice``), never bytes, so
    it skips the branches of :meth:`Rows.record` those stores never take.
    """
    user = row[2]
    return SessionRecord(
        key,
        row[1],
        None if user is None else user_from_tag(user),
        float(row[3]),
        float(row[4]),
        float(row[5]),
        int(row[6]),
    )




def same_row(row: Sequence[Any], record: SessionRecord, user: Any, *, compare_created: bool) -> bool:
    """Whether a ``stored`` row (version, data, user_id, created_at) is what ``record`` wrote."""
    version, data, stored_user, created_at = row
    if isinstance(stored_user, bytes):  # MySQL VARBINARY
        stored_user = stored_user.decode("utf-8")
    return (
        int(version) == record.version
        and data == record.data
        and stored_user == user
        and (not compare_created or float(created_at) == record.created_at)
    )

