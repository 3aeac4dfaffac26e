"""The peewee store's two tables: the models peewee creates them from, and the check of an existing table.

The schema is versionless and only ever created by ``create_tables()`` (``CREATE TABLE
IF NOT EXISTS``), which never alters an existing table; so the store checks an existing
table's columns on its first call and refuses one of another shape with
:class:`~kitsession_wsgi.SchemaMismatch` (the README's "Migrating the PeeweeStore table"
gives the SQL per database), and a missing one with :class:`~kitsession_wsgi.TablesMissing`
(which names the command that creates it) rather than a driver error on every statement.

.. versionadded:: 0.2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import peewee  # type: ignore[import-untyped, unused-ignore]

from ...errors import SchemaMismatch, TablesMissing
from ._statements import dialect_of

__all__ = ["USER_COLUMN_BYTES", "table_models", "tables_fit"]

USER_COLUMN_BYTES = 255
#: peewee's column metadata of a table (empty: no such table): ``(database, table, schema)``
Columns = Callable[..., list[Any]]


def table_models(database: Any, bound_to: Any, *, table_name: str, lock_table_name: str,
                 user_model: type[peewee.Model] | None) -> tuple[type[peewee.Model], type[peewee.Model]]:
    """peewee models of the two tables, for DDL only (statements are prepared text).

    :param database: the resolved database (its dialect picks the column types).
    :param bound_to: what the models are bound to (the store's database or proxy).
    """
    dialect = dialect_of(database)
    mysql = dialect == "mysql"
    time_type = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE"}[dialect]

    def column(ddl_type: str, **options: Any) -> Any:
        field = peewee.Field(**options)
        # peewee renders an unknown field_type verbatim; setattr because the
        # stubs declare field_type a class attribute.
        setattr(field, "field_type", ddl_type)
        return field

    user_column: Any
    if user_model is not None:
        # backref="+" keeps the user's model free of an attribute per store.
        user_column = peewee.ForeignKeyField(
            user_model, null=True, column_name="user_id", backref="+", on_delete="CASCADE"
        )
    else:
        user_column = column(f"VARBINARY({USER_COLUMN_BYTES})" if mysql else f"VARCHAR({USER_COLUMN_BYTES})",
                             null=True, index=True, column_name="user_id")
    key_type = "VARBINARY(64)" if mysql else "VARCHAR(64)"
    session_fields: dict[str, Any] = {
        "session_key": column(key_type, primary_key=True),
        "data": column("LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if mysql else "TEXT"),
        "user": user_column,
        "created_at": column(time_type),
        "updated_at": column(time_type),
        "expires_at": column(time_type, index=True),
        "version": column("BIGINT"),
        "Meta": type("Meta", (), {"database": bound_to, "table_name": table_name,
                                  # index names from the table name, unique per table
                                  "legacy_table_names": False}),
    }
    lock_fields: dict[str, Any] = {
        "session_key": column(key_type, primary_key=True),
        "token": column("VARBINARY(255)" if mysql else "VARCHAR(255)"),
        "expires_at": column(time_type, index=True),
        "Meta": type("Meta", (), {"database": bound_to, "table_name": lock_table_name,
                                  "legacy_table_names": False}),
    }
    session_model = type("KitSessionRow", (peewee.Model,), session_fields)
    lock_model = type("KitSessionLockRow", (peewee.Model,), lock_fields)
    if user_model is not None:
        # peewee registers every foreign key on the referenced model too;
        # these throwaway DDL models must not pile up on the application's
        # User (its recursive deletes would visit them).  The database's
        # ON DELETE CASCADE does that job.
        user_meta = user_model._meta
        user_meta.backrefs.pop(user_column, None)
        user_meta.model_backrefs.pop(session_model, None)
    return session_model, lock_model


def tables_fit(database: Any, columns_of: Columns, *, table_name: str, lock_table_name: str,
               user_model: type[peewee.Model] | None, require_tables: bool) -> bool:
    """Whether the tables fit (always ``True`` when it returns); raise if one is missing or of another shape.

    :raises SchemaMismatch: a column is missing or of the wrong type.
    :raises TablesMissing: the sessions table does not exist, or ``require_tables``
        and the locks table does not (it is needed only with the ``lock`` option).
    """
    dialect = dialect_of(database)
    columns = columns_of(database, table_name)
    if not columns:
        raise TablesMissing(table_name, store="PeeweeStore")
    text = _BINARY if dialect == "mysql" else _TEXT
    floating = _ColumnNeed(frozenset({_REAL}), "a floating-point type (REAL, DOUBLE PRECISION, DOUBLE)")
    needs = {
        "session_key": _ColumnNeed(frozenset({text}), _DESCRIBED[text], primary_key=True),
        "data": (
            _ColumnNeed(frozenset({_LONG_TEXT}), "LONGTEXT (TEXT holds only 64 KiB)")
            if dialect == "mysql"
            else _ColumnNeed(frozenset({_TEXT, _LONG_TEXT}), "a text type (TEXT)")
        ),
        "user_id": _user_column_need(database, columns_of, user_model, text),
        "created_at": floating,
        "updated_at": floating,
        "expires_at": floating,
        "version": _ColumnNeed(frozenset({_INTEGER}), "an integer type (BIGINT)"),
    }
    _check_columns(table_name, columns, needs)
    lock_columns = columns_of(database, lock_table_name)
    if lock_columns:
        _check_columns(lock_table_name, lock_columns, {
            "session_key": needs["session_key"],
            "token": _ColumnNeed(frozenset({text}), _DESCRIBED[text]),
            "expires_at": floating,
        })
    elif require_tables:
        raise TablesMissing(lock_table_name, store="PeeweeStore")
    return True


def _user_column_need(database: Any, columns_of: Columns, user_model: type[peewee.Model] | None,
                      text: str) -> _ColumnNeed:
    """What ``user_id`` must be: tagged text, or the type of ``user_model``'s primary key."""
    if user_model is None:
        return _ColumnNeed(frozenset({text}), _DESCRIBED[text] + " for the tagged id (\"i:5\", \"s:alice\")",
                           nullable=True)
    meta = user_model._meta
    user_key: Any = meta.primary_key
    key_column = user_key.column_name
    where = f"{meta.table_name}.{key_column}"
    for column in columns_of(database, meta.table_name, meta.schema):
        if column.name == key_column:
            return _user_key_need(column.data_type, column.full_type or column.data_type, where)
    # The user table does not exist yet: the type peewee would create for its key.
    declared = str(database._field_types.get(user_key.field_type, user_key.field_type))
    return _user_key_need(declared, declared, where)


_TEXT, _LONG_TEXT, _BINARY, _INTEGER, _REAL = "text", "long text", "binary", "integer", "floating point"
_DESCRIBED = {
    _TEXT: "a text type (VARCHAR(255) or TEXT)",
    _BINARY: "VARBINARY (exact comparison; MySQL's VARCHAR collations ignore case and trailing spaces)",
}


@dataclass(frozen=True, slots=True)
class _ColumnNeed:
    """What the store needs of one column, for :meth:`PeeweeStore.check_schema`."""

    families: frozenset[str]
    described: str
    nullable: bool = False
    primary_key: bool = False
    #: the option a mismatch is reported under
    option: str = "table_name"


def _user_key_need(type_name: str, shown: str, where: str) -> _ColumnNeed:
    family = _type_family(type_name)
    kind = {_INTEGER: "an integer type", _TEXT: "a text type", _LONG_TEXT: "a text type",
            _BINARY: "a binary type", _REAL: "a floating-point type"}.get(family, family)
    return _ColumnNeed(frozenset({family}), f"{kind}, the type of {where} ({shown}), since user_model is set",
                       nullable=True, option="user_model")


def _type_family(type_name: str) -> str:
    """A column type's family, by SQLite's affinity rules (which read PostgreSQL and MySQL names too).

    ``""`` (an SQLite column declared without a type) takes any value.  Other
    types (``uuid``, ``jsonb``, ``timestamp``) are their own family.
    """
    name = type_name.strip().lower().split("(")[0].strip()
    if not name:
        return "any"
    if name in ("longtext", "mediumtext"):
        return _LONG_TEXT
    if "binary" in name or "blob" in name or name == "bytea":
        return _BINARY
    if "int" in name and name != "interval" or "serial" in name:
        return _INTEGER
    if "char" in name or "text" in name or "clob" in name:
        return _TEXT
    if any(part in name for part in ("real", "floa", "doub", "numeric", "decimal")):
        return _REAL
    return name


def _check_columns(table: str, columns: list[Any], needs: dict[str, _ColumnNeed]) -> None:
    """Raise :class:`SchemaMismatch` for the first column of ``needs`` that ``columns`` lacks or breaks."""
    by_name = {column.name: column for column in columns}
    for name, need in needs.items():
        column = by_name.get(name)
        if column is None:
            raise SchemaMismatch(need.option, table=table, column=name, expected=need.described,
                                 found="no such column")
        family = _type_family(column.data_type or "")
        if family != "any" and family not in need.families:
            raise SchemaMismatch(need.option, table=table, column=name, expected=need.described,
                                 found=column.full_type or column.data_type)
        if need.nullable and not column.null:
            raise SchemaMismatch(need.option, table=table, column=name,
                                 expected="a column that accepts NULL (anonymous sessions have no user)",
                                 found="NOT NULL")
        if need.primary_key and not column.primary_key:
            raise SchemaMismatch(need.option, table=table, column=name,
                                 expected="the primary key (create is insert-only)", found="not the primary key")

