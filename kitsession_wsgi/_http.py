"""HTTP details shared by both adapters (the WSGI middleware and the Flask extension).

The ``Vary`` merge, the session headers of a response, the 503 and 409 answers, and
the report of a store outage: written once, so a WSGI app and a Flask app answer and
log alike.
"""

from __future__ import annotations

import logging
import threading
import typing as t

from . import signals
from .errors import ConfigurationError, StoreUnavailable

__all__ = [
    "CONFLICT_BODY", "CONFLICT_RETRY_AFTER", "UNAVAILABLE_BODY", "OutageReport", "add_bearer_headers",
    "add_response_headers", "add_session_headers", "error_reply", "validate_retry_after", "vary_covers",
    "vary_covers_cookie",
]

logger = logging.getLogger("kitsession_wsgi")

UNAVAILABLE_BODY = "Session store unavailable, please retry shortly.\n"
CONFLICT_BODY = "The session is busy with another request, please retry.\n"
#: a session that stayed locked or kept conflicting is worth retrying at once
CONFLICT_RETRY_AFTER = 1
#: What a response handing out a session (a cookie or a token) carries instead of an
#: application's ``Cache-Control`` that lets a shared cache store it.
PRIVATE_CACHE_CONTROL = "private, no-store"
#: ``Cache-Control`` directives that let a shared cache (a CDN, a proxy) store a response
#: (RFC 9111, section 3), unless ``private`` or ``no-store`` forbid it.
_SHAREABLE_DIRECTIVES = frozenset(("public", "s-maxage", "max-age"))
_NOT_SHAREABLE_DIRECTIVES = frozenset(("private", "no-store"))


def validate_retry_after(value: object, option: str = "retry_after") -> int:
    """``Retry-After`` seconds: a whole number >= 0.

    :raises ConfigurationError: anything else, naming ``option``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(option, f"must be a whole number of seconds >= 0, got {value!r}")
    return value


def vary_covers(values: t.Iterable[str], header: str) -> bool:
    """Whether ``Vary`` header values already name ``header`` (or ``*``, which covers it)."""
    header = header.lower()
    for value in values:
        for token in value.split(","):
            token = token.strip().lower()
            if token == header or token == "*":
                return True
    return False


def vary_covers_cookie(values: t.Iterable[str]) -> bool:
    """Whether ``Vary`` header values already name ``Cookie`` (or ``*``, which covers it)."""
    return vary_covers(values, "cookie")


def _append(headers: t.Any, name: str, value: str) -> None:
    if isinstance(headers, list):
        headers.append((name, value))
    else:
        headers.add(name, value)


def _directives(values: t.Iterable[str]) -> set[str]:
    """The directive names of ``Cache-Control`` header values, lower-cased (arguments dropped)."""
    return {part.partition("=")[0].strip().lower() for value in values for part in value.split(",")}


class _SharedCachingOverride:
    """Replaces an application's ``Cache-Control`` that would let a shared cache store a
    response handing out a session; logs it once per process (the app's code is what to fix)."""

    def __init__(self) -> None:
        self.logged = False

    def apply(self, headers: t.Any) -> None:
        found = [index for index, (name, _) in enumerate(headers) if name.lower() == "cache-control"]
        if not found:
            _append(headers, "Cache-Control", "no-store")
            return
        values = [headers[index][1] for index in found]
        directives = _directives(values)
        if directives & _NOT_SHAREABLE_DIRECTIVES or not directives & _SHAREABLE_DIRECTIVES:
            return  # the application's choice (rule 5): no shared cache may store it
        first_name = headers[found[0]][0]
        for index in reversed(found[1:]):
            del headers[index]
        headers[found[0]] = (first_name, PRIVATE_CACHE_CONTROL)
        if not self.logged:
            self.logged = True
            logger.warning(
                "Cache-Control %r on a response that sets the session cookie or token was replaced by %r: a "
                "shared cache would hand the session to other clients (logged once)", ", ".join(values),
                PRIVATE_CACHE_CONTROL)


_shared_caching = _SharedCachingOverride()


def add_session_headers(headers: t.Any, set_cookie: str | None) -> None:
    """Add ``Vary: Cookie``, the cookie and ``Cache-Control: no-store`` to a WSGI header
    list or werkzeug ``Headers``.

    ``Cookie`` joins the first ``Vary`` header unless some ``Vary`` header already
    covers it (one ``Vary`` line, which werkzeug's ``response.vary`` reads whole);
    other ``Set-Cookie`` headers of the application are kept, and so is a
    ``Cache-Control`` it set, unless it lets a shared cache store the response
    (``public``, ``s-maxage`` or ``max-age`` without ``private`` or ``no-store``):
    that one is replaced by ``private, no-store`` (and logged once), since a cached
    ``Set-Cookie`` hands the session to every client the cache serves.

    .. versionchanged:: 0.2
       werkzeug ``Headers`` too (the Flask extension's response).
    """
    first_vary = None
    vary_values = []
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            vary_values.append(value)
            if first_vary is None:
                first_vary = index
    if first_vary is None:
        _append(headers, "Vary", "Cookie")
    elif not vary_covers_cookie(vary_values):
        name, value = headers[first_vary]
        headers[first_vary] = (name, f"{value}, Cookie")
    if set_cookie is not None:
        _append(headers, "Set-Cookie", set_cookie)
        _shared_caching.apply(headers)


def add_response_headers(headers: t.Any, set_cookie: str | None, bearer_headers: list[tuple[str, str]]) -> None:
    """Everything a response that loaded the session carries: :func:`add_session_headers`,
    then the header transport's :func:`add_bearer_headers` (none without ``bearer``)."""
    add_session_headers(headers, set_cookie)
    if bearer_headers:
        add_bearer_headers(headers, bearer_headers)


def add_bearer_headers(headers: t.Any, extra: list[tuple[str, str]]) -> None:
    """Add :meth:`SessionManager.bearer_headers` to a WSGI header list or werkzeug ``Headers``.

    ``Authorization`` joins the first ``Vary`` header (one ``Vary`` line, which
    werkzeug's ``response.vary`` reads whole) unless a ``Vary`` already covers
    it; a ``Session-Token`` the application set itself is kept, and so is its
    ``Cache-Control``, unless it lets a shared cache store the token (replaced as in
    :func:`add_session_headers`).

    .. versionadded:: 0.2
    """
    for name, value in extra:
        lowered = name.lower()
        if lowered == "cache-control":
            _shared_caching.apply(headers)
            continue
        found = [index for index, (existing, _) in enumerate(headers) if existing.lower() == lowered]
        if not found:
            _append(headers, name, value)
        elif lowered == "vary":
            if not vary_covers([headers[index][1] for index in found], value):
                first_name, first_value = headers[found[0]]
                headers[found[0]] = (first_name, f"{first_value}, {value}")


def error_reply(exc: Exception, retry_after: int) -> tuple[int, str, list[tuple[str, str]]]:
    """Status, body and headers answering a store outage (503) or a session conflict (409)."""
    if isinstance(exc, StoreUnavailable):
        status, body, retry = 503, UNAVAILABLE_BODY, retry_after
    else:
        logger.warning("session conflict: %s", exc)
        status, body, retry = 409, CONFLICT_BODY, CONFLICT_RETRY_AFTER
    return status, body, [("Retry-After", str(retry)), ("Cache-Control", "no-store")]


class OutageReport:
    """Reports a store outage the same way from either adapter.

    Every failed request sends :data:`~kitsession_wsgi.signals.store_unavailable`
    (a metrics hook); the log gets one error line when an outage starts and one
    warning when the store answers again, not a line per request.
    """

    def __init__(self) -> None:
        self.in_outage = False
        self._lock = threading.Lock()

    def failed(self, exc: StoreUnavailable, sender: object) -> None:
        """A request failed on ``exc``; ``sender`` (the manager) sends the signal."""
        with self._lock:
            starts, self.in_outage = not self.in_outage, True
        if starts:
            logger.error("session store unavailable: %s", exc)
        signals.store_unavailable.send(sender, error=exc)

    def answered(self) -> None:
        """A request reached the store (cheap when there was no outage)."""
        if self.in_outage:
            with self._lock:
                ended, self.in_outage = self.in_outage, False
            if ended:
                logger.warning("session store reachable again")
