"""Sessions in a SQL database through peewee: SQLite, PostgreSQL and MySQL/MariaDB.

(Why this module is long: three SQL dialects with their null-safe comparisons, type
families and locking, the schema check of an existing table, reconnecting after an
outage, and statements rendered once per store so a read costs close to a raw
primary-key SELECT.)

:class:`PeeweeStore` takes the application's peewee ``Database`` (or a
``DatabaseProxy``) and keeps sessions in one table, plus a small table for the
per-session locks.  Nothing touches the database until the first call;
:meth:`PeeweeStore.create_tables` creates the tables explicitly.

Schema (``table_name`` defaults to ``kitsession_sessions``)::

    kitsession_sessions
      session_key  VARCHAR(64)  PRIMARY KEY  -- SHA-256 digest of the session id, never the id
      data         TEXT         NOT NULL     -- the JSON text the core wrote, byte for byte
      user_id      VARCHAR(255) NULL, INDEX  -- "i:5" / "s:alice" (type-tagged), or
                                             -- a FOREIGN KEY to user_model (ON DELETE CASCADE)
      created_at   DOUBLE       NOT NULL     -- Unix seconds
      updated_at   DOUBLE       NOT NULL     -- Unix seconds, last write or touch
      expires_at   DOUBLE       NOT NULL, INDEX
      version      BIGINT       NOT NULL     -- optimistic-lock counter

    kitsession_sessions_locks
      session_key  VARCHAR(64)  PRIMARY KEY
      token        VARCHAR(255) NOT NULL     -- the holder
      expires_at   DOUBLE       NOT NULL, INDEX   -- Unix seconds (real time, not the core's clock)

Types per database: SQLite stores the times as ``REAL``.  PostgreSQL uses
``DOUBLE PRECISION``.  MySQL/MariaDB uses ``VARBINARY`` for ``session_key``,
``user_id`` and ``token`` (their default collations compare case-insensitively
and ignore trailing spaces, which would merge ``s:Alice`` with ``s:alice``) and
``LONGTEXT CHARACTER SET utf8mb4`` for ``data`` (``TEXT`` holds only 64 KiB).
``data`` is text rather than JSON/JSONB everywhere because JSONB does not keep
the exact text, and the store must hand back what it was given.

Migration note: the schema is versionless and only ever created by
:meth:`PeeweeStore.create_tables` (``CREATE TABLE IF NOT EXISTS``), which never
alters an existing table.  The store checks an existing table's columns on its
first call (and in ``create_tables()`` and :meth:`PeeweeStore.check_schema`) and
refuses one of another shape with :class:`~kitsession_wsgi.SchemaMismatch`; the
README's "Migrating the PeeweeStore table" gives the SQL per database.  If a later release changes it, the release notes give
the ``ALTER TABLE`` statements; sessions are disposable, so dropping both tables
(:meth:`PeeweeStore.drop_tables`) and recreating them is always a valid
migration at the cost of signing everyone out.  Adding ``user_model`` to an
existing store changes ``user_id`` from tagged text to the user's primary key
type: recreate the table, or convert it (``user_id = substr(user_id, 3)``, then
change the type and add the foreign key).

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable

try:
    import peewee  # type: ignore[import-untyped, unused-ignore]
    from playhouse import db_url  # type: ignore[import-untyped, unused-ignore]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kitsession_wsgi.stores.peewee needs peewee: pip install 'kitsession-wsgi[peewee]'"
    ) from exc

from ..errors import ConfigurationError, SchemaMismatch, StoreUnavailable
from .base import SessionRecord, SessionStore, SetResult, UserId, put_bounded, user_index_key

__all__ = ["PeeweeStore"]

#: 40 characters leave room for "_locks_expires_at" index names within PostgreSQL's 63
_TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}\Z")
_USER_COLUMN_BYTES = 255
#: MySQL's "Duplicate entry" error number: the only IntegrityError ``create`` answers with False
_MYSQL_DUPLICATE_KEY = 1062
#: SQLite reports programming mistakes as OperationalError too; those are not outages
_SQLITE_PROGRAMMING_ERRORS = ("no such ", "syntax error", "has no column", "already exists")
_SQLITE_DEFAULT_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1}
#: what ``Database.execute_sql`` wraps driver errors with (turning them into peewee's
#: classes); ``None`` in a peewee without it, and then every read goes through ``execute_sql``
_DRIVER_ERROR_WRAPPER: Any = getattr(peewee, "__exception_wrapper__", None)
_PEEWEE_LOGGER = logging.getLogger("peewee")
#: positions in a row of the ``get`` SELECT
_ROW_USER, _ROW_EXPIRES, _ROW_VERSION = 2, 5, 6
#: rows of recent reads kept for the save that usually follows (see PeeweeStore.set)
_RECENT_READS = 256
_RECENT_ROW_DATA = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Statements:
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


class PeeweeStore(SessionStore):
    """Sessions in a SQL table, through the application's peewee database.

    Every statement is rendered to SQL once per store and run with
    ``database.execute_sql`` (``get`` runs its steps inline while no query
    hook, debug logging or replaced ``execute_sql`` would see the difference),
    so a read costs about as much as a raw primary-key ``SELECT``.  Writes run in peewee's autocommit mode, each one
    statement (purging runs one statement per batch); called inside the
    application's own ``database.atomic()`` block they join that transaction.

    peewee keeps one connection per thread, so the store is safe under a
    threaded WSGI server.  An in-memory SQLite database is per connection, so
    each thread would see its own empty store: use a file.

    Outages: on a connection error (peewee ``OperationalError`` or
    ``InterfaceError``) the store closes this thread's connection and runs the
    statement once more on a new one, so the stale connections a database
    restart leaves behind cost no request.  If that fails too it raises
    :class:`~kitsession_wsgi.StoreUnavailable` (the driver error chained), and
    the next call connects afresh: no restart of the process is needed.  SQLite's
    "database is locked" is retried for ``locked_retry_timeout`` seconds.

    :param database: a peewee ``SqliteDatabase``, ``PostgresqlDatabase`` or
        ``MySQLDatabase`` (or a subclass, or a ``DatabaseProxy`` initialised
        with one before the first call).  The database must connect on demand
        (peewee's default ``autoconnect=True``) so the store can reconnect
        after an outage, and keep a connection per thread (``thread_safe=True``,
        also the default).
    :param table_name: the sessions table; the locks table is
        ``<table_name>_locks``.
    :param user_model: a peewee model whose primary key ``user_id`` refers to.
        Makes ``user_id`` a real foreign key (``ON DELETE CASCADE``: deleting a
        user signs them out); user ids are then stored as the model's primary
        key and returned as its Python value (an int or str; other key types,
        such as a UUID, come back as their str).
    :param user_fields: names of ``user_model`` fields to load with every
        session, in the same query (a ``LEFT JOIN``), as ``record.user`` (a
        dict with exactly these keys; ``None`` for an anonymous session).
    :param purge_batch_size: how many expired sessions one ``DELETE`` removes,
        so purging a million rows never holds a long lock.
    :param locked_retry_timeout: seconds to keep retrying a statement SQLite
        refused with "database is locked" (after the connection's own busy
        timeout gave up) before raising :class:`~kitsession_wsgi.StoreUnavailable`.
    :raises ConfigurationError: an option has a wrong type or value; the
        message names it.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        database: peewee.Database | peewee.DatabaseProxy,
        *,
        table_name: str = "kitsession_sessions",
        user_model: type[peewee.Model] | None = None,
        user_fields: Sequence[str] | None = None,
        purge_batch_size: int = 5000,
        locked_retry_timeout: float = 1.0,
    ) -> None:
        if not isinstance(database, (peewee.Database, peewee.DatabaseProxy)):
            raise ConfigurationError(
                "database", f"must be a peewee Database or DatabaseProxy, got {type(database).__name__}"
            )
        if not isinstance(database, peewee.DatabaseProxy):
            _dialect(database)  # an unsupported database fails now, not on the first request
        if not isinstance(table_name, str) or not _TABLE_NAME_RE.match(table_name):
            raise ConfigurationError(
                "table_name", f"must be 1-40 letters, digits or underscores, got {table_name!r}"
            )
        if user_model is not None and not (
            isinstance(user_model, type) and issubclass(user_model, peewee.Model)
        ):
            raise ConfigurationError("user_model", f"must be a peewee Model class, got {user_model!r}")
        if user_model is not None and not isinstance(user_model._meta.primary_key, peewee.Field):
            raise ConfigurationError("user_model", f"{user_model.__name__} has no single-column primary key")
        if user_model is not None:
            bound = user_model._meta.database
            if isinstance(bound, peewee.Database) and isinstance(database, peewee.Database) and bound is not database:
                # the join and the foreign key need both tables in one database
                raise ConfigurationError("user_model", f"{user_model.__name__} is bound to a different database")
        if user_fields is not None:
            if user_model is None:
                raise ConfigurationError("user_fields", "needs user_model")
            if isinstance(user_fields, str) or not user_fields:
                raise ConfigurationError("user_fields", "must be a non-empty list of field names")
            unknown = [name for name in user_fields if name not in user_model._meta.fields]
            if unknown:
                raise ConfigurationError(
                    "user_fields", f"{user_model.__name__} has no field {', '.join(map(repr, unknown))}"
                )
        if isinstance(purge_batch_size, bool) or not isinstance(purge_batch_size, int) or purge_batch_size < 1:
            raise ConfigurationError("purge_batch_size", f"must be a positive int, got {purge_batch_size!r}")
        if (
            isinstance(locked_retry_timeout, bool)
            or not isinstance(locked_retry_timeout, (int, float))
            or not 0 <= locked_retry_timeout < 3600
        ):
            raise ConfigurationError(
                "locked_retry_timeout", f"must be seconds between 0 and 3600, got {locked_retry_timeout!r}"
            )
        self.database = database
        self.table_name = table_name
        self.lock_table_name = f"{table_name}_locks"
        self.user_model = user_model
        self.user_fields = tuple(user_fields) if user_fields is not None else None
        self.purge_batch_size = purge_batch_size
        self.locked_retry_timeout = float(locked_retry_timeout)
        self._user_key: Any = None
        #: (field name, converter from the column value) for each of ``user_fields``
        self._user_readers: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
        if user_model is not None:
            self._user_key = user_model._meta.primary_key
            self._user_readers = tuple(
                (name, user_model._meta.fields[name].python_value) for name in self.user_fields or ()
            )
        self._statements: _Statements | None = None
        # session key -> the row its last get() read; set() pops it to leave unchanged indexed columns alone
        self._recent_rows: dict[str, Sequence[Any]] = {}
        self._proxy = database if isinstance(database, peewee.DatabaseProxy) else None
        self._owns_database = False

    # -- construction helpers ----------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        table_name: str = "kitsession_sessions",
        purge_batch_size: int = 5000,
        locked_retry_timeout: float = 1.0,
        **connect_params: Any,
    ) -> PeeweeStore:
        """A store on a database opened from a URL (``playhouse.db_url`` syntax).

        ``sqlite:///path/sessions.db``, ``postgresql://user:pw@host:5432/db``,
        ``mysql://user:pw@host:3306/db``.  SQLite connections default to WAL
        journaling, ``synchronous=NORMAL``, foreign keys on and a 5 second busy
        timeout; PostgreSQL connections to a 10 second connect timeout.
        ``connect_params`` go to the peewee database and override these
        defaults (``pragmas`` are merged).  Nothing connects until the first call.

        :raises ConfigurationError: the URL names an in-memory SQLite database
            (each thread's connection would see a different, empty database)
            or an option is invalid.

        .. versionadded:: 0.1
        """
        scheme = url.split(":", 1)[0].lower()
        if scheme.startswith("sqlite"):
            connect_params["pragmas"] = {**_SQLITE_DEFAULT_PRAGMAS, **dict(connect_params.get("pragmas") or {})}
            connect_params.setdefault("timeout", 5)
        elif scheme.startswith(("postgres", "cockroach")):
            connect_params.setdefault("connect_timeout", 10)
        database = db_url.connect(url, **connect_params)
        if isinstance(database, peewee.SqliteDatabase) and (
            database.database in ("", ":memory:") or "mode=memory" in str(database.database)
        ):
            raise ConfigurationError(
                "url", "an in-memory SQLite database is private to one connection (one per thread); use a file"
            )
        store = cls(
            database,
            table_name=table_name,
            purge_batch_size=purge_batch_size,
            locked_retry_timeout=locked_retry_timeout,
        )
        store._owns_database = True
        return store

    def _resolve_database(self) -> Any:
        database = self.database
        if isinstance(database, peewee.DatabaseProxy):
            database = database.obj
            if database is None:
                raise ConfigurationError("database", "the DatabaseProxy was never initialised")
        return database

    def _models(self) -> tuple[type[peewee.Model], type[peewee.Model]]:
        """peewee models of the two tables; used for DDL only (statements are prepared text)."""
        database = self._resolve_database()
        dialect = _dialect(database)
        mysql = dialect == "mysql"
        time_type = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE"}[dialect]

        def column(ddl_type: str, **options: Any) -> Any:
            field = peewee.Field(**options)
            # peewee renders an unknown field_type verbatim; setattr because the
            # stubs declare field_type a class attribute.
            setattr(field, "field_type", ddl_type)
            return field

        user_column: Any
        if self.user_model is not None:
            # backref="+" keeps the user's model free of an attribute per store.
            user_column = peewee.ForeignKeyField(
                self.user_model, null=True, column_name="user_id", backref="+", on_delete="CASCADE"
            )
        else:
            user_column = column(f"VARBINARY({_USER_COLUMN_BYTES})" if mysql else f"VARCHAR({_USER_COLUMN_BYTES})",
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
            "Meta": type("Meta", (), {"database": self.database, "table_name": self.table_name,
                                      # index names from the table name, unique per table
                                      "legacy_table_names": False}),
        }
        lock_fields: dict[str, Any] = {
            "session_key": column(key_type, primary_key=True),
            "token": column("VARBINARY(255)" if mysql else "VARCHAR(255)"),
            "expires_at": column(time_type, index=True),
            "Meta": type("Meta", (), {"database": self.database, "table_name": self.lock_table_name,
                                      "legacy_table_names": False}),
        }
        session_model = type("KitSessionRow", (peewee.Model,), session_fields)
        lock_model = type("KitSessionLockRow", (peewee.Model,), lock_fields)
        if self.user_model is not None:
            # peewee registers every foreign key on the referenced model too;
            # these throwaway DDL models must not pile up on the application's
            # User (its recursive deletes would visit them).  The database's
            # ON DELETE CASCADE does that job.
            user_meta = self.user_model._meta
            user_meta.backrefs.pop(user_column, None)
            user_meta.model_backrefs.pop(session_model, None)
        return session_model, lock_model

    def create_tables(self, safe: bool = True) -> None:
        """Create the sessions and locks tables and their indexes.

        :param safe: skip tables that exist (``IF NOT EXISTS``) instead of failing.
        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        database = self._resolve_database()
        with self._unavailable_on_connection_errors():
            database.create_tables(list(self._models()), safe=safe)
        # IF NOT EXISTS keeps a table of another shape: say so now, not on a request.
        self._prepare(require_tables=True)

    def check_schema(self) -> None:
        """Check that both tables exist and have the columns this store needs.

        The same check runs once on the store's first call (and again only if
        a ``DatabaseProxy`` is pointed at another database), so calling this at
        start-up only moves a failure earlier, before any request.  It checks
        each column's presence and type family (text, binary on MySQL,
        integer, floating point; with ``user_model``, ``user_id`` must have the
        type of the user's primary key), that ``user_id`` accepts NULL and
        that ``session_key`` is the primary key.

        :raises SchemaMismatch: a column is missing or of the wrong type
            (a :class:`~kitsession_wsgi.ConfigurationError`; its message
            names the table, column, expected and found, and points at the
            README's migration recipe).
        :raises ConfigurationError: a table does not exist (call :meth:`create_tables`).
        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.2
        """
        self._prepare(require_tables=True)

    def drop_tables(self) -> None:
        """Drop both tables if they exist, removing every session and lock (for tests and resets).

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        database = self._resolve_database()
        with self._unavailable_on_connection_errors():
            database.drop_tables(list(self._models()), safe=True)

    def clear(self) -> None:
        """Remove every session and lock, keeping the tables.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        quote = _quoter(statements.database)
        self._write(statements, f"DELETE FROM {quote(self.table_name)}", ())
        self._write(statements, f"DELETE FROM {quote(self.lock_table_name)}", ())

    def close(self) -> None:
        """Close this thread's connection if the store opened the database (:meth:`from_url`).

        A database passed in by the application is the application's to close.

        .. versionadded:: 0.1
        """
        if self._owns_database:
            database = self._resolve_database()
            if not database.is_closed():
                database.close()

    # -- prepared statements ------------------------------------------------------------

    def _ready(self) -> _Statements:
        """The prepared statements, rendered again when a DatabaseProxy was pointed elsewhere."""
        statements = self._statements
        if statements is None or (self._proxy is not None and self._proxy.obj is not statements.database):
            statements = self._prepare()
        return statements

    def _prepare(self, *, require_tables: bool = False) -> _Statements:
        """Render every statement for this database, after checking the table's shape.

        Runs on the first call rather than in ``__init__`` because a
        ``DatabaseProxy`` only learns its database later.  Two threads racing
        here build equal objects, so no lock is needed.  The statements are
        kept (so later calls skip the check) only once the sessions table
        exists and fits; while it does not exist, each call checks again and
        its statement fails as it always did ("no such table").
        """
        database = self._resolve_database()
        dialect = _dialect(database)
        quote = _quoter(database)
        p = database.param
        table = quote(self.table_name)
        locks = quote(self.lock_table_name)

        def s(column: str) -> str:
            return f"{quote('s')}.{quote(column)}"

        columns = ", ".join(
            s(c) for c in ("session_key", "data", "user_id", "created_at", "updated_at", "expires_at", "version")
        )
        source = f"{table} AS {quote('s')}"
        if self.user_model is not None and self.user_fields:
            meta = self.user_model._meta
            user_key = self._user_key.column_name
            user_table = quote(meta.table_name)
            if meta.schema:
                user_table = f"{quote(meta.schema)}.{user_table}"

            def u(column: str) -> str:
                return f"{quote('u')}.{quote(column)}"

            # The user's primary key comes first so a missing user (an
            # anonymous session) is told apart from a user whose fields are NULL.
            user_columns = [user_key] + [meta.fields[n].column_name for n in self.user_fields]
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
        batch = self.purge_batch_size
        if dialect == "mysql":
            # MySQL refuses LIMIT in an IN subquery but has DELETE ... LIMIT.
            purge = f"DELETE FROM {table} WHERE {expires} <= {p} LIMIT {batch}"
        else:
            purge = (
                f"DELETE FROM {table} WHERE {key} IN "
                f"(SELECT {key} FROM {table} WHERE {expires} <= {p} LIMIT {batch})"
            )
        statements = _Statements(
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
            # Only MySQL hands back bytes (VARBINARY) and only user_model changes
            # what user_id holds; every other store reads rows the short way.
            record=self._record if dialect == "mysql" or self.user_model is not None else _record_of_tagged_row,
            direct_reads=(
                _DRIVER_ERROR_WRAPPER is not None
                and type(database).execute_sql is peewee.Database.execute_sql
                and getattr(type(database), "_execute_cursor", None) is getattr(peewee.Database, "_execute_cursor", 0)
            ),
        )
        if self._schema_fits(database, dialect, require_tables=require_tables):
            self._statements = statements
        return statements

    # -- the schema check ---------------------------------------------------------------

    def _schema_fits(self, database: Any, dialect: str, *, require_tables: bool) -> bool:
        """Whether the sessions table exists (``False``: not yet); raise if a table has another shape."""
        columns = self._existing_columns(database, self.table_name)
        if not columns:
            if require_tables:
                raise ConfigurationError(
                    "table_name", f"table {self.table_name!r} does not exist: call create_tables()"
                )
            return False
        text = _BINARY if dialect == "mysql" else _TEXT
        floating = _ColumnNeed(frozenset({_REAL}), "a floating-point type (REAL, DOUBLE PRECISION, DOUBLE)")
        needs = {
            "session_key": _ColumnNeed(frozenset({text}), _DESCRIBED[text], primary_key=True),
            "data": (
                _ColumnNeed(frozenset({_LONG_TEXT}), "LONGTEXT (TEXT holds only 64 KiB)")
                if dialect == "mysql"
                else _ColumnNeed(frozenset({_TEXT, _LONG_TEXT}), "a text type (TEXT)")
            ),
            "user_id": self._user_column_need(database, text),
            "created_at": floating,
            "updated_at": floating,
            "expires_at": floating,
            "version": _ColumnNeed(frozenset({_INTEGER}), "an integer type (BIGINT)"),
        }
        _check_columns(self.table_name, columns, needs)
        lock_columns = self._existing_columns(database, self.lock_table_name)
        if lock_columns:
            _check_columns(self.lock_table_name, lock_columns, {
                "session_key": needs["session_key"],
                "token": _ColumnNeed(frozenset({text}), _DESCRIBED[text]),
                "expires_at": floating,
            })
        elif require_tables:
            raise ConfigurationError(
                "table_name", f"table {self.lock_table_name!r} does not exist: call create_tables()"
            )
        return True

    def _user_column_need(self, database: Any, text: str) -> _ColumnNeed:
        """What ``user_id`` must be: tagged text, or the type of ``user_model``'s primary key."""
        if self.user_model is None:
            return _ColumnNeed(frozenset({text}), _DESCRIBED[text] + " for the tagged id (\"i:5\", \"s:alice\")",
                               nullable=True)
        meta = self.user_model._meta
        key_column = self._user_key.column_name
        where = f"{meta.table_name}.{key_column}"
        for column in self._existing_columns(database, meta.table_name, meta.schema):
            if column.name == key_column:
                return _user_key_need(column.data_type, column.full_type or column.data_type, where)
        # The user table does not exist yet: the type peewee would create for its key.
        declared = str(database._field_types.get(self._user_key.field_type, self._user_key.field_type))
        return _user_key_need(declared, declared, where)

    def _existing_columns(self, database: Any, table: str, schema: str | None = None) -> list[Any]:
        """peewee's column metadata of ``table`` (empty: no such table), with one reconnect."""
        def columns() -> list[Any]:
            # MySQL's get_columns fails on a missing table (SHOW INDEX); the others return [].
            return list(database.get_columns(table, schema)) if database.table_exists(table, schema) else []

        try:
            try:
                return columns()
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if _is_sqlite_programming_error(str(exc)):
                    raise
                self._discard_connection(database)
                return columns()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if _is_sqlite_programming_error(str(exc)):
                raise
            self._discard_connection(database)
            raise StoreUnavailable(f"session store unavailable: {exc}", store=type(self).__name__) from exc

    # -- execution and error mapping ------------------------------------------------------

    def _read(self, statements: _Statements, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a SELECT; retried once on a fresh connection after a connection error."""
        try:
            rows: list[tuple[Any, ...]] = statements.database.execute_sql(sql, params).fetchall()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            rows = self._recover(statements, exc, sql, params, fetch=True)
        return rows

    def _read_one(self, statements: _Statements, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """The row of a SELECT by primary key, or ``None``; retried like :meth:`_read`.

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
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                rows = self._recover(statements, exc, sql, params, fetch=True)
                return rows[0] if rows else None
            row: Sequence[Any] | None = cursor.fetchone()
            return row
        rows = self._read(statements, sql, params)
        return rows[0] if rows else None

    def _write_noting_retry(self, statements: _Statements, sql: str, params: Sequence[Any]) -> tuple[int, bool]:
        """Like :meth:`_write`, and whether the statement had to be run again.

        On MySQL, which has no ``ON CONFLICT DO NOTHING``, an INSERT of an
        existing key counts as 0 rows instead of raising.
        """
        retried = False
        try:
            try:
                return int(statements.database.execute_sql(sql, params).rowcount), False
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                retried = True
                return int(self._recover(statements, exc, sql, params, fetch=False)), True
        except peewee.IntegrityError as exc:
            if statements.dialect == "mysql" and _mysql_error_number(exc) == _MYSQL_DUPLICATE_KEY:
                return 0, retried
            raise

    def _write(self, statements: _Statements, sql: str, params: Sequence[Any]) -> int:
        """Rows changed by a statement; retried once on a fresh connection after a connection error.

        A retry is safe for every write of this store even when the first
        attempt was applied and only its answer was lost: deletes, touches and
        locks are idempotent, and ``create`` and ``set`` recognise their own
        row when the row count says nothing happened.
        """
        return self._write_noting_retry(statements, sql, params)[0]

    def _recover(
        self, statements: _Statements, exc: Exception, sql: str, params: Sequence[Any], *, fetch: bool
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
                        f"SQLite database stayed locked: {message}", store=type(self).__name__
                    ) from exc
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, 0.1)
            elif statements.dialect == "sqlite" and _is_sqlite_programming_error(message):
                raise exc  # a missing table is a setup mistake, not an outage
            else:
                # A server restart leaves every thread's connection dead; one
                # retry on a new connection hides that from the request.  Inside
                # the application's transaction there is no new connection to take.
                self._discard_connection(database)
                if reconnected or database.in_transaction():
                    raise StoreUnavailable(
                        f"{statements.dialect} session store unavailable: {message.strip()}",
                        store=type(self).__name__,
                    ) from exc
                reconnected = True
            try:
                cursor = database.execute_sql(sql, params)
                return cursor.fetchall() if fetch else cursor.rowcount
            except (peewee.OperationalError, peewee.InterfaceError) as again:
                exc = again

    @staticmethod
    def _discard_connection(database: Any) -> None:
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

    @contextlib.contextmanager
    def _unavailable_on_connection_errors(self) -> Iterator[None]:
        """Connection errors of DDL calls become StoreUnavailable (no retry: DDL is rare)."""
        try:
            yield
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if _is_sqlite_programming_error(str(exc)):
                raise
            self._discard_connection(self._resolve_database())
            raise StoreUnavailable(f"session store unavailable: {exc}", store=type(self).__name__) from exc

    # -- value conversion -----------------------------------------------------------------

    def _user_column(self, user_id: UserId | None) -> Any:
        if user_id is None:
            return None
        if self._user_key is not None:
            return self._user_key.db_value(user_id)
        text = user_index_key(user_id)
        if len(text.encode("utf-8")) > _USER_COLUMN_BYTES:
            raise ValueError(f"user_id is too long for the user_id column ({_USER_COLUMN_BYTES - 2} bytes at most)")
        return text

    def _record(self, row: Sequence[Any], key: str | None = None) -> SessionRecord:
        stored_user = row[2]
        user_id: UserId | None
        if stored_user is None:
            user_id = None
        elif self._user_key is not None:
            user_id = self._user_key.python_value(stored_user)
            if isinstance(user_id, bool) or not isinstance(user_id, (int, str)):
                user_id = str(user_id)  # e.g. a UUID key: sessions hold int or str user ids
        else:
            if isinstance(stored_user, bytes):  # MySQL VARBINARY
                stored_user = stored_user.decode("utf-8")
            user_id = int(stored_user[2:]) if stored_user[0] == "i" else stored_user[2:]
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

    # -- the store contract ---------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key`` (with ``user`` joined in when configured), or ``None``.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        row = self._read_one(statements, statements.get, (key,))
        if row is None:
            return None
        if len(row[1]) <= _RECENT_ROW_DATA:
            put_bounded(self._recent_rows, key, row, _RECENT_READS)
        return statements.record(row, key)

    def create(self, record: SessionRecord) -> bool:
        """Insert ``record``; ``False`` when the key exists (nothing changes).

        :raises StoreUnavailable: the database cannot be reached.
        :raises peewee.IntegrityError: with ``user_model``, ``user_id`` names no user.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        user = self._user_column(record.user_id)
        params = (
            record.key, record.data, user, record.created_at, record.updated_at, record.expires_at, record.version,
        )
        inserted, retried = self._write_noting_retry(statements, statements.insert, params)
        if inserted or not retried:
            return bool(inserted)
        # The INSERT ran twice: the first attempt may have committed and only
        # its answer died with the connection.  Keys are random digests, so a
        # row equal to ours is ours.
        rows = self._read(statements, statements.stored, (record.key,))
        return bool(rows) and _same_row(rows[0], record, user, compare_created=True)

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version``; never inserts.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        user = self._user_column(record.user_id)
        retried = False
        read = self._recent_rows.pop(record.key, None)
        if read is not None and read[_ROW_VERSION] == expected_version:
            # Indexed columns cost an index write each when assigned, even an unchanged
            # value (SQLite: about 8 us per index here).  The read of this version says
            # what they hold; a column left out of SET is required in WHERE to still
            # hold that value (a touch moves expires_at without a version bump; a caller
            # of the store may keep the version), so a row that changed meanwhile makes
            # the narrow UPDATE match nothing and the full UPDATE below decides.
            sql, params = self._narrow_update(statements, record, expected_version, user, read)
            updated, retried = self._write_noting_retry(statements, sql, params)
            if updated:
                return SetResult.SAVED
        params = (
            record.data, user, record.created_at, record.updated_at,
            record.expires_at, record.version, record.key, expected_version,
        )
        updated, retried_full = self._write_noting_retry(statements, statements.update, params)
        retried = retried or retried_full
        if updated:
            return SetResult.SAVED
        rows = self._read(statements, statements.stored, (record.key,))
        if not rows:
            return SetResult.MISSING
        # Two ways a row count of 0 can still mean "saved": a retried UPDATE
        # whose first attempt committed, and MySQL, which counts changed rows
        # rather than matched ones (an UPDATE writing identical values reports 0).
        unchanged_on_mysql = statements.dialect == "mysql" and record.version == expected_version
        if (retried or unchanged_on_mysql) and _same_row(rows[0], record, user, compare_created=False):
            return SetResult.SAVED
        return SetResult.CONFLICT

    @staticmethod
    def _narrow_update(statements: _Statements, record: SessionRecord, expected_version: int, user: Any,
                       read: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """The UPDATE for ``set`` that leaves out indexed columns equal to what ``read`` holds."""
        stored_user = read[_ROW_USER]
        if isinstance(stored_user, bytes) and isinstance(user, str):  # MySQL VARBINARY
            stored_user = stored_user.decode("utf-8", "replace")
        same_user = stored_user == user and type(stored_user) is type(user)
        same_expiry = read[_ROW_EXPIRES] == record.expires_at
        data, created, updated, version, key = (record.data, record.created_at, record.updated_at, record.version,
                                                record.key)
        if same_user and same_expiry:
            return statements.update_same_user_and_expiry, (
                data, created, updated, version, key, expected_version, user, read[_ROW_EXPIRES])
        if same_user:
            return statements.update_same_user, (
                data, created, updated, record.expires_at, version, key, expected_version, user)
        if same_expiry:
            return statements.update_same_expiry, (
                data, user, created, updated, version, key, expected_version, read[_ROW_EXPIRES])
        return statements.update, (
            data, user, created, updated, record.expires_at, version, key, expected_version)

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move the record's activity time and expiry; ``False`` when it is gone.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        if self._write(statements, statements.touch, (updated_at, expires_at, key)):
            return True
        # MySQL reports 0 for a matched row whose values did not change.
        return statements.dialect == "mysql" and bool(self._read(statements, statements.stored, (key,)))

    def delete(self, key: str) -> bool:
        """Remove the record; ``True`` when one was removed.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        self._recent_rows.pop(key, None)
        return self._write(statements, statements.delete, (key,)) > 0

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Remove every record of ``user_id`` but ``except_key``, in one statement.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        user = self._user_column(user_id)
        if except_key is None:
            return self._write(statements, statements.delete_for_user, (user,))
        return self._write(statements, statements.delete_for_user_except, (user, except_key))

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """Every record of ``user_id`` (an index lookup).

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        return [self._record(row) for row in self._read(statements, statements.get_all_for_user, (self._user_column(user_id),))]

    def get_all(self) -> list[SessionRecord]:
        """Every record in the table.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        return [self._record(row) for row in self._read(statements, statements.get_all, ())]

    def purge_expired(self, now: float) -> int:
        """Remove records with ``expires_at <= now``, ``purge_batch_size`` per statement.

        Each batch commits on its own, so other requests wait at most one
        batch for the rows it touches.  Lock rows left by crashed holders
        (expired in real time) are removed too.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        removed = 0
        while True:
            batch = self._write(statements, statements.purge, (now,))
            removed += batch
            if batch < self.purge_batch_size:
                break
        self._write(statements, statements.lock_purge, (time.time(),))
        return removed

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock for ``key`` unless another live token holds it.

        A conditional ``UPDATE`` takes over an expired lock (or refreshes our
        own); otherwise an ``INSERT`` creates it, and the primary key lets only
        one concurrent inserter win.  Expiry is real (``time.time()``) seconds,
        so app servers sharing the database need synchronised clocks.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        now = time.time()
        if self._write(statements, statements.lock_take_over, (token, now + ttl, key, token, now)):
            return True
        if self._write_noting_retry(statements, statements.lock_insert, (key, token, now + ttl))[0]:
            return True
        # MySQL reports 0 for an UPDATE that matched but changed nothing, so
        # re-read the holder rather than trusting the row counts alone.
        rows = self._read(statements, statements.lock_holder, (key,))
        if not rows:
            return False
        holder = rows[0][0]
        return (holder.decode("utf-8") if isinstance(holder, bytes) else holder) == token

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock for ``key`` if ``token`` still holds it.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        self._write(statements, statements.lock_release, (key, token))


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


def _dialect(database: Any) -> str:
    if isinstance(database, peewee.SqliteDatabase):
        return "sqlite"
    if isinstance(database, peewee.PostgresqlDatabase):
        return "postgres"
    if isinstance(database, peewee.MySQLDatabase):
        return "mysql"
    raise ConfigurationError(
        "database", f"{type(database).__name__} is not a SQLite, PostgreSQL or MySQL peewee database"
    )


def _record_of_tagged_row(row: Sequence[Any], key: str) -> SessionRecord:
    """The row-to-record function for SQLite and PostgreSQL stores without ``user_model``.

    There ``user_id`` is tagged text (``i:5`` / ``s:alice``), never bytes, so
    it skips the branches of :meth:`PeeweeStore._record` those stores never take.
    """
    user = row[2]
    return SessionRecord(
        key,
        row[1],
        None if user is None else int(user[2:]) if user[0] == "i" else user[2:],
        float(row[3]),
        float(row[4]),
        float(row[5]),
        int(row[6]),
    )




def _same_row(row: Sequence[Any], record: SessionRecord, user: Any, *, compare_created: bool) -> bool:
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


def _is_sqlite_programming_error(message: str) -> bool:
    return any(marker in message for marker in _SQLITE_PROGRAMMING_ERRORS)


def _quoter(database: Any) -> Callable[[str], str]:
    opening, closing = database.quote[0], database.quote[1]

    def quote(name: str) -> str:
        return f"{opening}{name.replace(closing, closing * 2)}{closing}"

    return quote


def _mysql_error_number(exc: Exception) -> int | None:
    # peewee keeps the driver's error as .orig (and its args as its own);
    # pymysql's args are (errno, message).
    args = getattr(getattr(exc, "orig", None), "args", None) or exc.args
    return args[0] if args and isinstance(args[0], int) else None
