"""The exception hierarchy of kitsession-wsgi.

Every error the library raises on purpose is a :class:`KitSessionError`, so an
application can catch the family with one clause.  Errors carry the data a
caller needs to act on them (the option name, the store, the session handle).

.. versionadded:: 0.1
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidUserId",
    "KitSessionError",
    "SchemaMismatch",
    "SessionConflict",
    "SessionDataError",
    "StoreUnavailable",
    "TablesMissing",
]


class KitSessionError(Exception):
    """Base class of every error raised by kitsession-wsgi.

    .. versionadded:: 0.1
    """


class ConfigurationError(KitSessionError, ValueError):
    """An option was given a value the library cannot work with.

    Raised at construction time, never on a request.  ``option`` names the
    offending option so the message and the attribute both point at the fix.

    .. versionadded:: 0.1
    """

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}")


class SchemaMismatch(ConfigurationError):
    """An existing store table does not have the shape the store needs.

    Raised by :class:`~kitsession_wsgi.stores.peewee.PeeweeStore` on its first
    use (or by ``check_schema()`` / ``create_tables()``) instead of letting a
    later statement fail with a driver error.  The attributes name what to fix;
    the README's "Migrating the PeeweeStore table" gives the SQL.

    :param option: the store option the mismatch relates to (``table_name``,
        or ``user_model`` when the ``user_id`` column's type follows it).
    :param table: the table's name.
    :param column: the column's name.
    :param expected: what the store needs, in words (``"a text type"``).
    :param found: what the database reports (``"integer"``, ``"no such column"``).

    .. versionadded:: 0.2
    """

    def __init__(self, option: str, *, table: str, column: str, expected: str, found: str) -> None:
        self.table = table
        self.column = column
        self.expected = expected
        self.found = found
        super().__init__(
            option,
            f"table {table!r} column {column!r}: expected {expected}, found {found}"
            " (see \"Migrating the PeeweeStore table\" in the README)",
        )


class StoreUnavailable(KitSessionError):
    """The session store could not be reached or did not answer in time.

    Raised instead of treating the outage as "no session": an outage must never
    log users out silently or drop their data.  The Flask extension answers
    ``503 Service Unavailable`` with ``Retry-After``.  The driver's exception is
    chained as ``__cause__``.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, *, store: str = "") -> None:
        self.store = store
        super().__init__(message)


class TablesMissing(StoreUnavailable, ConfigurationError):
    """A store's table does not exist: the store was never set up.

    Both a setup mistake (a :class:`ConfigurationError`, whose fix is one command)
    and, for the request that meets it, an unavailable store (a
    :class:`StoreUnavailable`): the adapters answer ``503`` and log it once per
    outage, as for any store that cannot serve, instead of a driver error and a
    ``500`` on every request.  A store built from a ``KITSESSION_STORE`` URL
    creates its tables at ``init_app``; an explicitly built store is set up with
    ``flask kitsession init-db`` or ``store.create_tables()``.

    :param table: the missing table's name.
    :param store: the store's class name.

    .. versionadded:: 0.2
    """

    def __init__(self, table: str, *, store: str = "") -> None:
        self.table = table
        self.option = "table_name"
        self.store = store
        # Exception's own __init__: the two bases' constructors take different arguments.
        KitSessionError.__init__(
            self, f"table {table} does not exist: run `flask kitsession init-db` or call store.create_tables()")


class SessionConflict(KitSessionError):
    """A concurrent request changed the same session and the change cannot be merged.

    Raised with ``on_conflict="raise"``, when merge retries are exhausted, or
    when a session lock cannot be acquired within its wait time.

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, *, handle: str | None = None) -> None:
        self.handle = handle
        super().__init__(message)


class SessionDataError(KitSessionError, ValueError):
    """Session data cannot be stored: too large, or not serialisable.

    Raised before anything is written, so the stored session stays as it was.

    .. versionadded:: 0.1
    """


class InvalidUserId(KitSessionError, ValueError, TypeError):
    """A user id breaks the one user-id rule, checked in the core before any store is asked.

    The rule (see :func:`kitsession_wsgi.session.validate_user_id`): an ``int``
    (not ``bool``) or a non-empty ``str``; at most
    :data:`~kitsession_wsgi.session.USER_ID_MAX_BYTES` (200) bytes in UTF-8 (an
    int: its decimal text); no control characters (U+0000-U+001F,
    U+007F-U+009F) and no lone surrogates.  Every store refuses the same ids
    the same way, because none of them is asked.

    It is both a ``ValueError`` and a ``TypeError``, so code written against
    the earlier ``TypeError`` (wrong type) / ``ValueError`` (empty string)
    keeps catching it.  The message never repeats the id (it may hold control
    characters meant for a log).

    :param message: what is wrong, without the value.
    :param argument: where the id came from (``"user_id"``, ``"data['id']"``).
    :param reason: ``"type"``, ``"empty"``, ``"too_long"``,
        ``"control_character"`` or ``"surrogate"``.

    .. versionadded:: 0.2
    """

    def __init__(self, message: str, *, argument: str = "user_id", reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(message)
