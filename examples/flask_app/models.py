"""The example's users, in the same SQLite file as the sessions.

The models are bound to :data:`database`, a :class:`peewee.DatabaseProxy` that
:func:`open_database` points at a real SQLite file when an app is created.  A
peewee model is bound to one database per process, so the app created last
owns it: fine for a server (one app) and for tests (one app at a time).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import peewee

#: Filled in by :func:`open_database`; every model of the example uses it.
database = peewee.DatabaseProxy()


def open_database(path: str | Path) -> peewee.SqliteDatabase:
    """Open (creating if needed) the SQLite file at ``path`` and bind the models to it.

    WAL mode lets the server's threads read while one of them writes; the busy
    timeout makes a writer wait for another instead of failing at once.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sqlite = peewee.SqliteDatabase(
        str(path),
        timeout=10,
        pragmas={"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal"},
    )
    database.initialize(sqlite)
    return sqlite


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


class User(peewee.Model):
    """An account: an e-mail address and a password hash (never the password)."""

    id = peewee.AutoField()
    email = peewee.CharField(max_length=254, unique=True)
    password_hash = peewee.CharField(max_length=255)
    created_at = peewee.DateTimeField(default=utc_now)

    class Meta:
        database = database
        table_name = "example_users"


#: Every model of the example, for ``create_tables``.
MODELS: list[type[peewee.Model]] = [User]
