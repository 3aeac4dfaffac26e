"""The exception hierarchy of kitsession-wsgi.

Every error the library raises on purpose is a :class:`KitSessionError`, so an
application can catch the family with one clause.  Errors carry the data a
caller needs to act on them (the option name, the store, the session handle).

.. versionadded:: 0.1
"""

from __future__ import annotations


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
