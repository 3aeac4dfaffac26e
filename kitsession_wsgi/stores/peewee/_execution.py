"""Running the peewee store's statements: one retry on a fresh connection, SQLite's lock, error mapping.

A database restart leaves every thread's connection dead; a statement that fails on a
connection error closes this thread's connection and runs once more on a new one, so
the restart costs no request.  If that fails too it raises
:class:`~kitsession_wsgi.StoreUnavailable` (the driver error chained), and the next call
connects afresh.  SQLite's "database is locked" is retried for ``locked_retry_timeout``
seconds.  Programming mistakes (a missing table) pass through as they are.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import peewee  # type: ignore[import-untyped, unused-ignore]

from ...errors import StoreUnavailable
from .._toolkit import DriverErrors
from ._statements import Statements

__all__ = ["Executor"]

#: MySQL's "Duplicate entry" error number: the only IntegrityError ``create`` answers with False
_MYSQL_DUPLICATE_KEY = 1062
#: SQLite reports programming mistakes as OperationalError too; those are not outages
_SQLITE_PROGRAMMING_ERRORS = ("no such ", "syntax error", "has no column", "already exists")
#: what ``Database.execute_sql`` wraps driver errors with (turning them into peewee's
#: classes); ``None`` in a peewee without it, and then every read goes through ``execute_sql``
_DRIVER_ERROR_WRAPPER: Any = getattr(peewee, "__exception_wrapper__", None)
_PEEWEE_LOGGER = logging.getLogger("peewee")
_CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


class Executor:
    """Runs statements for one store.

    :param locked_retry_timeout: seconds to keep retrying a statement SQLite refused
        with "database is locked".
    :param store_name: what :class:`~kitsession_wsgi.StoreUnavailable` names as its store.
    """

    def __init__(self, locked_retry_timeout: float, store_name: str) -> None:
        self.locked_retry_timeout = locked_retry_timeout
        self.store_name = store_name

    @staticmethod
    def allows_direct_reads(database: Any) -> bool:
        """Whether ``database.execute_sql`` is peewee's own, so a read may run its steps inline."""
        return (
            _DRIVER_ERROR_WRAPPER is not None
            and type(database).execute_sql is peewee.Database.execute_sql
            and getattr(type(database), "_execute_cursor", None) is getattr(peewee.Database, "_execute_cursor", 0)
        )

    def read(self, statements: Statements, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a SELECT; retried once on a fresh connection after a connection error."""
        try:
            rows: list[tuple[Any, ...]] = statements.database.execute_sql(sql, params).fetchall()
        except _CONNECTION_ERRORS as exc:
            rows = self._recover(statements, exc, sql, params, fetch=True)
        return rows

    def read_one(self, statements: Statements, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """The row of a SELECT by primary key, or ``None``; retried like :meth:`read`.

        Runs the steps of peewee's ``execute_sql`` inline (this thread's cursor,
        connecting on demand, driver errors wrapped as peewee's) when nothing
        observes them: no query hooks, no debug logging of the ``peewee``
        logger, no ``execute_sql`` replaced on the database object.  That
        saves about a microsecond per SQLite read.
        """
        database = statements.database
        if (
            statements.direct_reads
            and not database.query_hooks
            and "execute_sql" not in database.__dict__
            and not _PEEWEE_LOGGER.isEnabledFor(logging.DEBUG)
        ):
            try:
                with _DRIVER_ERROR_WRAPPER:
                    cursor = database.cursor()
                    cursor.execute(sql, params)
            except _CONNECTION_ERRORS as exc:
                rows = self._recover(statements, exc, sql, params, fetch=True)
                return rows[0] if rows else None
            row: Sequence[Any] | None = cursor.fetchone()
            return row
        rows = self.read(statements, sql, params)
        return rows[0] if rows else None

    def write_noting_retry(self, statements: Statements, sql: str, params: Sequence[Any]) -> tuple[int, bool]:
        """Like :meth:`write`, and whether the statement had to be run again.

        On MySQL, which has no ``ON CONFLICT DO NOTHING``, an INSERT of an
        existing key counts as 0 rows instead of raising.
        """
        retried = False
        try:
            try:
                return int(statements.database.execute_sql(sql, params).rowcount), False
            except _CONNECTION_ERRORS as exc:
                retried = True
                return int(self._recover(statements, exc, sql, params, fetch=False)), True
        except peewee.IntegrityError as exc:
            if statements.dialect == "mysql" and _mysql_error_number(exc) == _MYSQL_DUPLICATE_KEY:
                return 0, retried
            raise

    def write(self, statements: Statements, sql: str, params: Sequence[Any]) -> int:
        """Rows changed by a statement; retried once on a fresh connection after a connection error.

        A retry is safe for every write of this store even when the first
        attempt was applied and only its answer was lost: deletes, touches and
        locks are idempotent, and ``create`` and ``set`` recognise their own
        row when the row count says nothing happened.
        """
        return self.write_noting_retry(statements, sql, params)[0]

    def _recover(
        self, statements: Statements, exc: Exception, sql: str, params: Sequence[Any], *, fetch: bool
    ) -> Any:
        """Retry a failed statement where that is safe, else raise StoreUnavailable."""
        database = statements.database
        deadline: float | None = None
        delay = 0.01
        reconnected = False
        while True:
            message = str(exc)
            if statements.dialect == "sqlite" and "is locked" in message:
                # Another connection holds the write lock past the busy timeout:
                # nothing ran, so any statement may be retried, within a budget.
                now = time.monotonic()
                deadline = now + self.locked_retry_timeout if deadline is None else deadline
                if now >= deadline:
                    raise StoreUnavailable(
                        f"SQLite database stayed locked: {message}", store=self.store_name
                    ) from exc
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 0.1)
            elif statements.dialect == "sqlite" and _is_sqlite_programming_error(message):
                raise exc  # a missing table is a setup mistake, not an outage
            else:
                # A server restart leaves every thread's connection dead; one
                # retry on a new connection hides that from the request.  Inside
                # the application's transaction there is no new connection to take.
                # A connect that failed is not tried again: it would wait out its
                # timeout a second time (store_timeout bounds the call, not each try).
                never_connected = database.is_closed()
                self.discard_connection(database)
                if reconnected or never_connected or database.in_transaction():
                    raise StoreUnavailable(
                        f"{statements.dialect} session store unavailable: {message.strip()}",
                        store=self.store_name,
                    ) from exc
                reconnected = True
            try:
                cursor = database.execute_sql(sql, params)
                return cursor.fetchall() if fetch else cursor.rowcount
            except _CONNECTION_ERRORS as again:
                exc = again

    @staticmethod
    def discard_connection(database: Any) -> None:
        """Forget this thread's connection so the next statement reconnects.

        Inside the application's transaction the connection is left alone:
        that transaction owns it and will fail on its own.
        """
        if database.in_transaction():
            return
        try:
            database.close()
        except Exception:  # noqa: BLE001 - a dead connection may refuse to close
            # Drop it without closing; the driver frees the socket when collected.
            database._state.reset()

    def connection_errors(self, database: Any) -> DriverErrors:
        """Connection errors inside (DDL, the schema check) become StoreUnavailable, without a retry."""
        def translate(exc: Exception, _action: str) -> Exception | None:
            if not isinstance(exc, _CONNECTION_ERRORS) or _is_sqlite_programming_error(str(exc)):
                return None
            self.discard_connection(database)
            return StoreUnavailable(f"session store unavailable: {exc}", store=self.store_name)

        return DriverErrors(translate, "run DDL")

    def columns(self, database: Any, table: str, schema: str | None = None) -> list[Any]:
        """peewee's column metadata of ``table`` (empty: no such table), with one reconnect."""
        def columns() -> list[Any]:
            # MySQL's get_columns fails on a missing table (SHOW INDEX); the others return [].
            return list(database.get_columns(table, schema)) if database.table_exists(table, schema) else []

        try:
            return columns()
        except _CONNECTION_ERRORS as exc:
            if _is_sqlite_programming_error(str(exc)):
                raise
            never_connected = database.is_closed()  # a second connect would wait out its timeout again
            self.discard_connection(database)
            if never_connected:
                raise StoreUnavailable(f"session store unavailable: {exc}", store=self.store_name) from exc
        with self.connection_errors(database):
            return columns()


def _is_sqlite_programming_error(message: str) -> bool:
    return any(marker in message for marker in _SQLITE_PROGRAMMING_ERRORS)


def _mysql_error_number(exc: Exception) -> int | None:
    # peewee keeps the driver's error as .orig (and its args as its own);
    # pymysql's args are (errno, message).
    args = getattr(getattr(exc, "orig", None), "args", None) or exc.args
    return args[0] if args and isinstance(args[0], int) else None
