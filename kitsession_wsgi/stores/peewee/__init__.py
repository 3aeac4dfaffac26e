"""Sessions in a SQL database through peewee: SQLite, PostgreSQL and MySQL/MariaDB.

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
:meth:`PeeweeStore.create_tables` (``CREATE TABLE IF NOT EXISTS``), which never alters
an existing table. The store checks an existing table's columns on its first call (and
in ``create_tables()`` and :meth:`PeeweeStore.check_schema`) and refuses one of another
shape with :class:`~kitsession_wsgi.SchemaMismatch`; the README's "Migrating the
PeeweeStore table" gives the SQL per database. If a later release changes it, the
release notes give the ``ALTER TABLE`` statements; sessions are disposable, so dropping
both tables (:meth:`PeeweeStore.drop_tables`) and recreating them is always a valid
migration at the cost of signing everyone out. Adding ``user_model`` to an existing
store changes ``user_id`` from tagged text to the user's primary key type: recreate the
table, or convert it (``user_id = substr(user_id, 3)``, then change the type and add the
foreign key).

The package: ``_statements.py`` renders the SQL once per database, ``_schema.py`` holds
the tables' models and the check of an existing table, ``_execution.py`` runs statements
(reconnecting after an outage), ``_rows.py`` turns rows into records, and ``_store.py`` is
the store.

.. versionadded:: 0.1
"""

from __future__ import annotations

try:
    import peewee  # type: ignore[import-untyped, unused-ignore]  # noqa: F401 - checked here, used below
    from playhouse import db_url  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kitsession_wsgi.stores.peewee needs peewee: pip install 'kitsession-wsgi[peewee]'"
    ) from exc

from ._store import PeeweeStore

__all__ = ["PeeweeStore"]
