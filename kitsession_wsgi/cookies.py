"""Reading the session cookie from a request and writing ``Set-Cookie`` values.

Parsing and writing go through werkzeug's ``parse_cookie`` / ``dump_cookie``;
this module adds the express-session value encoding (JavaScript's
``encodeURIComponent``) and makes sure no header, however broken, raises.

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from werkzeug.datastructures import Headers
from werkzeug.http import dump_cookie, parse_cookie

__all__ = [
    "ATTRIBUTE_FORBIDDEN_RE",
    "COOKIE_NAME_RE",
    "build_set_cookie",
    "cookie_header",
    "decode_cookie_value",
    "encode_cookie_value",
    "read_cookies",
]

#: What ``encodeURIComponent`` leaves unescaped besides letters and digits.
_URI_COMPONENT_SAFE = "-_.!~*'()"
#: RFC 6265 cookie-name token: visible ASCII except separators.
COOKIE_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Characters never allowed in a cookie path or domain attribute.
ATTRIBUTE_FORBIDDEN_RE = re.compile(r"[\x00-\x20;,\x7f]")


def encode_cookie_value(value: str) -> str:
    """Encode as ``encodeURIComponent`` does (``s:`` -> ``s%3A``, ``+`` -> ``%2B``)."""
    return quote(value, safe=_URI_COMPONENT_SAFE)


def decode_cookie_value(value: str) -> str:
    """Decode percent escapes; a malformed escape is left as it is (as the ``cookie`` package does)."""
    return unquote(value) if "%" in value else value


def cookie_header(source: Any) -> str | None:
    """The raw ``Cookie`` header from a WSGI environ, werkzeug ``Headers`` or a mapping.

    Header names are matched case-insensitively; several values (a list, or
    repeated headers) are joined with ``"; "`` as browsers send them.
    """
    if type(source) is dict and "wsgi.version" in source:
        # The common case, a real WSGI environ: no ABC checks on the request path.
        environ_value = source.get("HTTP_COOKIE")
        return environ_value if environ_value is None or type(environ_value) is str else str(environ_value)
    if isinstance(source, Headers):
        values = source.getlist("Cookie")
        return "; ".join(values) if values else None
    if not isinstance(source, Mapping):
        raise TypeError(
            "initialize_session() takes a WSGI environ, werkzeug Headers or a mapping "
            f"of header names, got {type(source).__name__}"
        )
    if "wsgi.version" in source or "HTTP_COOKIE" in source:
        value = source.get("HTTP_COOKIE")
    else:
        value = source.get("Cookie")
        if value is None:
            value = source.get("cookie")
        if value is None:
            for name, candidate in source.items():
                if isinstance(name, str) and name.lower() == "cookie":
                    value = candidate
                    break
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif isinstance(value, (list, tuple)):
        value = "; ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in value)
    return value if isinstance(value, str) else str(value)


def read_cookies(header: str, name: str) -> list[str]:
    """Every value of cookie ``name`` in ``header``, in order, percent-decoded; never raises."""
    try:
        cookies = parse_cookie(header)
    except UnicodeError:
        # werkzeug reads the header as WSGI latin-1 text holding UTF-8 bytes;
        # repair anything else so one bad byte cannot hide the session cookie.
        repaired = (
            header.encode("latin-1", "replace")
            .decode("utf-8", "replace")
            .encode("utf-8")
            .decode("latin-1")
        )
        cookies = parse_cookie(repaired)
    return [decode_cookie_value(value) for value in cookies.getlist(name)]


def build_set_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None,
    expires: float | None,
    path: str,
    domain: str | None,
    secure: bool,
    httponly: bool,
    samesite: str,
) -> str:
    """A full ``Set-Cookie`` value; ``value`` is encoded here (no ``max_age``/``expires``: a browser-session cookie)."""
    return dump_cookie(
        name,
        encode_cookie_value(value),
        max_age=max_age,
        expires=expires,
        path=path,
        domain=domain,
        secure=secure,
        httponly=httponly,
        samesite=samesite,
        sync_expires=False,
        max_size=0,
    )
