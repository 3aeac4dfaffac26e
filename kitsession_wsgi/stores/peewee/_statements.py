"""Every SQL statement of the peewee store, rendered once per database as text.

A store runs prepared text with ``database.execute_sql`` rather than building peewee
queries on each call, so a read costs about as much as a raw primary-key ``SELECT``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, cast

import peewee  # type: ignore[import-untyped, unused-ignore]

from ...errors import ConfigurationError
from ..base import SessionRecord

__all__ = ["Statements", "dialect_of", "quoter", "render"]


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement's SQL text for one database, rendered once per store."""

    database: Any
    dialect: str
    get: str
    get_all: str
    get_all_for_user: str
    insert: str
    update: str
    #: ``update`` without the indexed columns that did not change since the read (see ``PeeweeStore.set``)
    update_same_user: str
    update_same_expiry: str
    update_same_user_and_expiry: str
    stored: str
    touch: str
    delete: str
    delete_for_user: str
    delete_for_user_except: str
    purge: str
    lock_take_over: str
    lock_insert: str
    lock_holder: str
    lock_release: str
    lock_purge: str
    #: turns a row of ``get`` into a record, chosen for this store's dialect and options
    record: Callable[[Sequence[Any], str], SessionRecord]
    #: ``database.execute_sql`` is peewee's own, so a read may run its steps inline
    direct_reads: bool


def render(database: Any, *, table_name: str, lock_table_name: str, user_model: type[peewee.Model] | None,
           user_fields: Sequence[str] | None, purge_batch_size: int,
           record: Callable[[Sequence[Any], str], SessionRecord], direct_reads: bool) -> Statements:
    """Every statement for ``database`` (a resolved peewee database, not a proxy).

    :param record: the row-to-record function to keep with them.
    :param direct_reads: whether a read may run ``execute_sql``'s steps inline.
    """
    dialect = dialect_of(database)
    quote = quoter(database)
    p = database.param
    table = quote(table_name)
    locks = quote(lock_table_name)

    def s(column: str) -> str:
        return f"{quote('s')}.{quote(column)}"

    columns = ", ".join(
        s(c) for c in ("session_key", "data", "user_id", "created_at", "updated_at", "expires_at", "version")
    )
    source = f"{table} AS {quote('s')}"
    if user_model is not None and user_fields:
        meta = user_model._meta
        user_key: str = cast(Any, meta.primary_key).column_name
        user_table = quote(meta.table_name)
        if meta.schema:
            user_table = f"{quote(meta.schema)}.{user_table}"

        def u(column: str) -> str:
            return f"{quote('u')}.{quote(column)}"

        # The user's primary key comes first so a missing user (an
        # anonymous session) is told apart from a user whose fields are NULL.
        user_columns = [user_key] + [meta.fields[n].column_name for n in user_fields]
        columns += ", " + ", ".join(u(c) for c in user_columns)
        source += (
            f" LEFT OUTER JOIN {user_table} AS {quote('u')}"
            f" ON {u(user_key)} = {s('user_id')}"
        )
    select = f"SELECT {columns} FROM {source}"
    key = quote("session_key")
    user = quote("user_id")
    expires = quote("expires_at")
    # PostgreSQL aborts an enclosing transaction on a failed INSERT, so
    # duplicates are skipped in SQL, not caught; MySQL's INSERT IGNORE would
    # also swallow foreign-key errors, so there the duplicate error is caught.
    skip_duplicate = "" if dialect == "mysql" else f" ON CONFLICT ({key}) DO NOTHING"
    # equality that holds for two NULLs (an anonymous session's user_id)
    same = {"sqlite": "IS", "postgres": "IS NOT DISTINCT FROM", "mysql": "<=>"}[dialect]
    batch = purge_batch_size
    if dialect == "mysql":
        # MySQL refuses LIMIT in an IN subquery but has DELETE ... LIMIT.
        purge = f"DELETE FROM {table} WHERE {expires} <= {p} LIMIT {batch}"
    else:
        purge = (
            f"DELETE FROM {table} WHERE {key} IN "
            f"(SELECT {key} FROM {table} WHERE {expires} <= {p} LIMIT {batch})"
        )
    return Statements(
        database=database,
        dialect=dialect,
        get=f"{select} WHERE {s('session_key')} = {p}",
        get_all=select,
        get_all_for_user=f"{select} WHERE {s('user_id')} = {p}",
        insert=(
            f"INSERT INTO {table} ({key}, {quote('data')}, {user}, {quote('created_at')}, "
            f"{quote('updated_at')}, {expires}, {quote('version')}) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}){skip_duplicate}"
        ),
        update=(
            f"UPDATE {table} SET {quote('data')} = {p}, {user} = {p}, {quote('created_at')} = {p}, "
            f"{quote('updated_at')} = {p}, {expires} = {p}, {quote('version')} = {p} "
            f"WHERE {key} = {p} AND {quote('version')} = {p}"
        ),
        update_same_user=(
            f"UPDATE {table} SET {quote('data')} = {p}, {quote('created_at')} = {p}, "
            f"{quote('updated_at')} = {p}, {expires} = {p}, {quote('version')} = {p} "
            f"WHERE {key} = {p} AND {quote('version')} = {p} AND {user} {same} {p}"
        ),
        update_same_expiry=(
            f"UPDATE {table} SET {quote('data')} = {p}, {user} = {p}, {quote('created_at')} = {p}, "
            f"{quote('updated_at')} = {p}, {quote('version')} = {p} "
            f"WHERE {key} = {p} AND {quote('version')} = {p} AND {expires} = {p}"
        ),
        update_same_user_and_expiry=(
            f"UPDATE {table} SET {quote('data')} = {p}, {quote('created_at')} = {p}, "
            f"{quote('updated_at')} = {p}, {quote('version')} = {p} "
            f"WHERE {key} = {p} AND {quote('version')} = {p} AND {user} {same} {p} AND {expires} = {p}"
        ),
        stored=(
            f"SELECT {quote('version')}, {quote('data')}, {user}, {quote('created_at')} "
            f"FROM {table} WHERE {key} = {p}"
        ),
        touch=f"UPDATE {table} SET {quote('updated_at')} = {p}, {expires} = {p} WHERE {key} = {p}",
        delete=f"DELETE FROM {table} WHERE {key} = {p}",
        delete_for_user=f"DELETE FROM {table} WHERE {user} = {p}",
        delete_for_user_except=f"DELETE FROM {table} WHERE {user} = {p} AND {key} <> {p}",
        purge=purge,
        lock_take_over=(
            f"UPDATE {locks} SET {quote('token')} = {p}, {expires} = {p} "
            f"WHERE {key} = {p} AND ({quote('token')} = {p} OR {expires} <= {p})"
        ),
        lock_insert=(
            f"INSERT INTO {locks} ({key}, {quote('token')}, {expires}) VALUES ({p}, {p}, {p}){skip_duplicate}"
        ),
        lock_holder=f"SELECT {quote('token')} FROM {locks} WHERE {key} = {p}",
        lock_release=f"DELETE FROM {locks} WHERE {key} = {p} AND {quote('token')} = {p}",
        lock_purge=f"DELETE FROM {locks} WHERE {expires} <= {p}",
        record=record,
        direct_reads=direct_reads,
    )


def dialect_of(database: Any) -> str:
    """``"sqlite"``, ``"postgres"`` or ``"mysql"``; :class:`~kitsession_wsgi.ConfigurationError` for others."""
    if isinstance(database, peewee.SqliteDatabase):
        return "sqlite"
    if isinstance(database, peewee.PostgresqlDatabase):
        return "postgres"
    if isinstance(database, peewee.MySQLDatabase):
        return "mysql"
    raise ConfigurationError(
        "database", f"{type(database).__name__} is not a SQLite, PostgreSQL or MySQL peewee database"
    )


def quoter(database: Any) -> Callable[[str], str]:
    """A function quoting an identifier for ``database`` (its quote character doubled inside)."""
    opening, closing = database.quote[0], database.quote[1]

    def quote(name: str) -> str:
        return f"{opening}{name.replace(closing, closing * 2)}{closing}"

    return quote

