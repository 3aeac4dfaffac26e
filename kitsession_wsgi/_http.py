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


def add_session_headers(headers: t.Any, set_cookie: str | None) -> None:
    """Add ``Vary: Cookie``, the cookie and ``Cache-Control: no-store`` to a WSGI header
    list or werkzeug ``Headers``.

    ``Cookie`` joins the first ``Vary`` header unless some ``Vary`` header already
    covers it (one ``Vary`` line, which werkzeug's ``response.vary`` reads whole);
    other ``Set-Cookie`` headers of the application, and a ``Cache-Control`` it set,
    are kept.

    .. versionchanged:: 0.2
       werkzeug ``Headers`` too (the Flask extension's response).
    """
    first_vary = None
    vary_values = []
    has_cache_control = False
    for index, (name, value) in enumerate(headers):
        lowered = name.lower()
        if lowered == "vary":
            vary_values.append(value)
            if first_vary is None:
                first_vary = index
        elif lowered == "cache-control":
            has_cache_control = True
    if first_vary is None:
        _append(headers, "Vary", "Cookie")
    elif not vary_covers_cookie(vary_values):
        name, value = headers[first_vary]
        headers[first_vary] = (name, f"{value}, Cookie")
    if set_cookie is not None:
        _append(headers, "Set-Cookie", set_cookie)
        if not has_cache_control:
            _append(headers, "Cache-Control", "no-store")


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
    it; a ``Cache-Control`` (or ``Session-Token``) the application set itself is kept.

    .. versionadded:: 0.2
    """
    for name, value in extra:
        lowered = name.lower()
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
