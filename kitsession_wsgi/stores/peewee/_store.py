"""The peewee store: options, the contract's calls over prepared statements, and rows to records.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

import peewee  # type: ignore[import-untyped, unused-ignore]
from playhouse import db_url  # type: ignore[import-untyped, unused-ignore]

from ...errors import ConfigurationError, InvalidUserId, SessionDataError
from .._timeouts import DEFAULT_STORE_TIMEOUT, settings_of
from .._toolkit import RecentReads, is_int, is_number, is_storable_text
from ..base import SessionRecord, SessionStore, SetResult, UserId
from ._execution import Executor
from ._rows import ROW_VERSION, Rows, narrow_update, record_of_tagged_row, same_row
from ._schema import table_models, tables_fit
from ._statements import Statements, dialect_of, quoter, render

__all__ = ["PeeweeStore"]

#: 40 characters leave room for "_locks_expires_at" index names within PostgreSQL's 63
_TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}\Z")
_SQLITE_DEFAULT_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1}
#: rows of recent reads kept for the save that usually follows (see PeeweeStore.set)
_RECENT_READS = 256
_RECENT_ROW_DATA = 64 * 1024


def _statement_timeout(options: object) -> int | None:
    """The ``statement_timeout`` (milliseconds) a libpq ``options`` string sets, if any."""
    if not isinstance(options, str):
        return None
    found = re.search(r"statement_timeout=(\d+)\b", options)
    return int(found.group(1)) if found else None


def _with_statement_timeout(options: object, milliseconds: int) -> str:
    """A libpq ``options`` string with ``statement_timeout`` set to ``milliseconds``."""
    text = options if isinstance(options, str) else ""
    text = re.sub(r"\s*-c\s*statement_timeout=\S*", "", text).strip()
    return f"{text} -c statement_timeout={milliseconds}".strip()


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
            dialect_of(database)  # an unsupported database fails now, not on the first request
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
        if not is_int(purge_batch_size) or purge_batch_size < 1:
            raise ConfigurationError("purge_batch_size", f"must be a positive int, got {purge_batch_size!r}")
        if not is_number(locked_retry_timeout) or not 0 <= locked_retry_timeout < 3600:
            raise ConfigurationError(
                "locked_retry_timeout", f"must be seconds between 0 and 3600, got {locked_retry_timeout!r}"
            )
        self.database = database
        self.table_name = table_name
        self.lock_table_name = f"{table_name}_locks"
        self.user_model = user_model
        self.user_fields = tuple(user_fields) if user_fields is not None else None
        self.purge_batch_size = purge_batch_size
        self._run = Executor(float(locked_retry_timeout), type(self).__name__)
        self._rows = Rows(user_model, self.user_fields)
        self._statements: Statements | None = None
        # session key -> the row its last get() read; set() takes it to leave unchanged indexed columns alone
        self._recent_rows: RecentReads[Sequence[Any]] = RecentReads(_RECENT_READS, _RECENT_ROW_DATA)
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
        journaling, ``synchronous=NORMAL`` and foreign keys on; every connection's
        timeouts are the manager's ``store_timeout`` (:meth:`apply_timeout`).
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
        store.apply_timeout(DEFAULT_STORE_TIMEOUT)
        return store

    def apply_timeout(self, seconds: float) -> None:
        """Bound connects and statements by ``seconds``, in the database's connect parameters.

        SQLite: the busy timeout (how long a statement waits for another connection's
        lock).  PostgreSQL: libpq's ``connect_timeout`` (whole seconds, and at least 2:
        libpq's own floor) and ``statement_timeout`` (a server that answers but is
        slow).  MariaDB/MySQL: PyMySQL's ``connect_timeout``, ``read_timeout`` and
        ``write_timeout`` (socket timeouts: they hold for a stopped server too).  Each
        is set where unset or longer; a shorter one is kept.  Connections opened from
        now on get it.  A PostgreSQL server that stops answering in the middle of a
        statement on an open connection is not bounded by the client (libpq has no
        read timeout); the outage backoff keeps other requests from waiting on it.

        .. versionadded:: 0.3
        """
        if isinstance(self.database, peewee.DatabaseProxy) and self.database.obj is None:
            return  # not initialised yet: nothing to bound (its first call raises ConfigurationError)
        database = self._resolve_database()
        settings = settings_of(self)
        params = database.connect_params
        if isinstance(database, peewee.SqliteDatabase):
            current = {"timeout": database.timeout}
            if settings.fill(current, ("timeout",), seconds):
                database.timeout = current["timeout"]
        elif isinstance(database, peewee.PostgresqlDatabase):
            settings.fill(params, ("connect_timeout",), max(2, math.ceil(seconds)))
            statement = {"statement_timeout": _statement_timeout(params.get("options"))}
            milliseconds = math.ceil(seconds * 1000)
            if settings.fill(statement, ("statement_timeout",), milliseconds):
                params["options"] = _with_statement_timeout(params.get("options"), milliseconds)
        elif isinstance(database, peewee.MySQLDatabase):
            settings.fill(params, ("connect_timeout", "read_timeout", "write_timeout"), seconds)

    def _resolve_database(self) -> Any:
        database = self.database
        if isinstance(database, peewee.DatabaseProxy):
            database = database.obj
            if database is None:
                raise ConfigurationError("database", "the DatabaseProxy was never initialised")
        return database

    @property
    def locked_retry_timeout(self) -> float:
        """Seconds a statement SQLite refused with "database is locked" is retried."""
        return self._run.locked_retry_timeout

    @locked_retry_timeout.setter
    def locked_retry_timeout(self, seconds: float) -> None:
        self._run.locked_retry_timeout = float(seconds)

    def _models(self) -> tuple[type[peewee.Model], type[peewee.Model]]:
        """peewee models of the two tables; used for DDL only (statements are prepared text)."""
        return table_models(self._resolve_database(), self.database, table_name=self.table_name,
                            lock_table_name=self.lock_table_name, user_model=self.user_model)

    def create_tables(self, safe: bool = True) -> None:
        """Create the sessions and locks tables and their indexes.

        :param safe: skip tables that exist (``IF NOT EXISTS``) instead of failing.
        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        database = self._resolve_database()
        with self._run.connection_errors(database):
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
        :raises TablesMissing: a table does not exist (a :class:`~kitsession_wsgi.ConfigurationError`:
            call :meth:`create_tables` or run ``flask kitsession init-db``).
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
        with self._run.connection_errors(database):
            database.drop_tables(list(self._models()), safe=True)

    def clear(self) -> None:
        """Remove every session and lock, keeping the tables.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        quote = quoter(statements.database)
        self._run.write(statements, f"DELETE FROM {quote(self.table_name)}", ())
        self._run.write(statements, f"DELETE FROM {quote(self.lock_table_name)}", ())

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

    def _ready(self) -> Statements:
        """The prepared statements, rendered again when a DatabaseProxy was pointed elsewhere."""
        statements = self._statements
        if statements is None or (self._proxy is not None and self._proxy.obj is not statements.database):
            statements = self._prepare()
        return statements

    def _prepare(self, *, require_tables: bool = False) -> Statements:
        """Render every statement for this database, after checking the table's shape.

        Runs on the first call rather than in ``__init__`` because a
        ``DatabaseProxy`` only learns its database later.  Two threads racing
        here build equal objects, so no lock is needed.  The statements are
        kept (so later calls skip the check) only once the sessions table
        exists and fits; while it does not exist, each call checks again and
        raises :class:`~kitsession_wsgi.TablesMissing` (a table created later,
        by ``init-db`` or a migration tool, is found without a restart).
        """
        database = self._resolve_database()
        statements = render(
            database, table_name=self.table_name, lock_table_name=self.lock_table_name, user_model=self.user_model,
            user_fields=self.user_fields, purge_batch_size=self.purge_batch_size,
            # Only MySQL hands back bytes (VARBINARY) and only user_model changes
            # what user_id holds; every other store reads rows the short way.
            record=(self._rows.record if dialect_of(database) == "mysql" or self.user_model is not None
                    else record_of_tagged_row),
            direct_reads=self._run.allows_direct_reads(database),
        )
        if tables_fit(database, self._run.columns, table_name=self.table_name, lock_table_name=self.lock_table_name,
                      user_model=self.user_model, require_tables=require_tables):
            self._statements = statements
        return statements

    # -- the store contract ---------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key`` (with ``user`` joined in when configured), or ``None``.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        if not is_storable_text(key):
            return None  # a NUL or lone surrogate: no row holds it (PostgreSQL would refuse the query)
        statements = self._ready()
        row = self._run.read_one(statements, statements.get, (key,))
        if row is None:
            return None
        self._recent_rows.remember(key, row, len(row[1]))
        return statements.record(row, key)

    def create(self, record: SessionRecord) -> bool:
        """Insert ``record``; ``False`` when the key exists (nothing changes).

        :raises StoreUnavailable: the database cannot be reached.
        :raises peewee.IntegrityError: with ``user_model``, ``user_id`` names no user.

        .. versionadded:: 0.1
        """
        if not is_storable_text(record.key):
            raise SessionDataError("the session key holds a NUL or a lone surrogate, which no SQL text column stores")
        statements = self._ready()
        user = self._rows.user_column(record.user_id)
        params = (
            record.key, record.data, user, record.created_at, record.updated_at, record.expires_at, record.version,
        )
        inserted, retried = self._run.write_noting_retry(statements, statements.insert, params)
        if inserted or not retried:
            return bool(inserted)
        # The INSERT ran twice: the first attempt may have committed and only
        # its answer died with the connection.  Keys are random digests, so a
        # row equal to ours is ours.
        rows = self._run.read(statements, statements.stored, (record.key,))
        return bool(rows) and same_row(rows[0], record, user, compare_created=True)

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version``; never inserts.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        if not is_storable_text(record.key):
            return SetResult.MISSING
        statements = self._ready()
        user = self._rows.user_column(record.user_id)
        retried = False
        read = self._recent_rows.take(record.key)
        if read is not None and read[ROW_VERSION] == expected_version:
            # Indexed columns cost an index write each when assigned, even an unchanged
            # value (SQLite: about 8 us per index here).  The read of this version says
            # what they hold; a column left out of SET is required in WHERE to still
            # hold that value (a touch moves expires_at without a version bump; a caller
            # of the store may keep the version), so a row that changed meanwhile makes
            # the narrow UPDATE match nothing and the full UPDATE below decides.
            sql, params = narrow_update(statements, record, expected_version, user, read)
            updated, retried = self._run.write_noting_retry(statements, sql, params)
            if updated:
                return SetResult.SAVED
        params = (
            record.data, user, record.created_at, record.updated_at,
            record.expires_at, record.version, record.key, expected_version,
        )
        updated, retried_full = self._run.write_noting_retry(statements, statements.update, params)
        retried = retried or retried_full
        if updated:
            return SetResult.SAVED
        rows = self._run.read(statements, statements.stored, (record.key,))
        if not rows:
            return SetResult.MISSING
        # Two ways a row count of 0 can still mean "saved": a retried UPDATE
        # whose first attempt committed, and MySQL, which counts changed rows
        # rather than matched ones (an UPDATE writing identical values reports 0).
        unchanged_on_mysql = statements.dialect == "mysql" and record.version == expected_version
        if (retried or unchanged_on_mysql) and same_row(rows[0], record, user, compare_created=False):
            return SetResult.SAVED
        return SetResult.CONFLICT

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move the record's activity time and expiry; ``False`` when it is gone.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        if not is_storable_text(key):
            return False
        statements = self._ready()
        if self._run.write(statements, statements.touch, (updated_at, expires_at, key)):
            return True
        # MySQL reports 0 for a matched row whose values did not change.
        return statements.dialect == "mysql" and bool(self._run.read(statements, statements.stored, (key,)))

    def delete(self, key: str) -> bool:
        """Remove the record; ``True`` when one was removed.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        if not is_storable_text(key):
            return False
        statements = self._ready()
        self._recent_rows.take(key)
        return self._run.write(statements, statements.delete, (key,)) > 0

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Remove every record of ``user_id`` but ``except_key``, in one statement.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        try:
            user = self._rows.user_column(user_id)
        except InvalidUserId:
            return 0  # no row can hold such a user id
        statements = self._ready()
        if except_key is None or not is_storable_text(except_key):
            return self._run.write(statements, statements.delete_for_user, (user,))
        return self._run.write(statements, statements.delete_for_user_except, (user, except_key))

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """Every record of ``user_id`` (an index lookup).

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        try:
            user = self._rows.user_column(user_id)
        except InvalidUserId:
            return []  # no row can hold such a user id
        statements = self._ready()
        rows = self._run.read(statements, statements.get_all_for_user, (user,))
        return [self._rows.record(row) for row in rows]

    def get_all(self) -> list[SessionRecord]:
        """Every record in the table.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        statements = self._ready()
        return [self._rows.record(row) for row in self._run.read(statements, statements.get_all, ())]

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
            batch = self._run.write(statements, statements.purge, (now,))
            removed += batch
            if batch < self.purge_batch_size:
                break
        self._run.write(statements, statements.lock_purge, (time.time(),))
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
        if not is_storable_text(key) or not is_storable_text(token):
            return True  # no session can have such a key: there is nothing to guard
        statements = self._ready()
        now = time.time()
        if self._run.write(statements, statements.lock_take_over, (token, now + ttl, key, token, now)):
            return True
        if self._run.write_noting_retry(statements, statements.lock_insert, (key, token, now + ttl))[0]:
            return True
        # MySQL reports 0 for an UPDATE that matched but changed nothing, so
        # re-read the holder rather than trusting the row counts alone.
        rows = self._run.read(statements, statements.lock_holder, (key,))
        if not rows:
            return False
        holder = rows[0][0]
        return (holder.decode("utf-8") if isinstance(holder, bytes) else holder) == token

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock for ``key`` if ``token`` still holds it.

        :raises StoreUnavailable: the database cannot be reached.

        .. versionadded:: 0.1
        """
        if not is_storable_text(key) or not is_storable_text(token):
            return
        statements = self._ready()
        self._run.write(statements, statements.lock_release, (key, token))
