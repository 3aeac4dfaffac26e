"""Validation of :class:`~kitsession_wsgi.SessionManager`'s options.

Each function checks one option and returns its normalised value, or raises
:class:`~kitsession_wsgi.ConfigurationError` naming the option: configuration
mistakes fail when the manager is built, never on a request.
"""

from __future__ import annotations

import math
from datetime import timedelta

from .cookies import ATTRIBUTE_FORBIDDEN_RE, COOKIE_NAME_RE
from .errors import ConfigurationError

SAMESITE_VALUES = {"lax": "Lax", "strict": "Strict", "none": "None"}
CONFLICT_POLICIES = ("merge", "raise", "overwrite")
#: what a store must offer (``acquire_lock`` / ``release_lock`` come from the base class)
STORE_METHODS = ("get", "create", "set", "touch", "delete", "delete_all_for_user",
                 "get_all_for_user", "get_all", "purge_expired", "create_id")


def store(value: object) -> None:
    missing = [m for m in STORE_METHODS if not callable(getattr(value, m, None))]
    if missing:
        raise ConfigurationError(
            "store", f"{type(value).__name__} is not a SessionStore (missing {', '.join(missing)})"
        )


def seconds(option: str, value: object, *, allow_none: bool = False) -> float | None:
    """A positive number of seconds from an int, float or ``timedelta`` (or ``None`` if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        kind = "seconds (int, float or timedelta)" + (" or None" if allow_none else "")
        raise ConfigurationError(option, f"must be {kind}, got {value!r}")
    if value <= 0:
        raise ConfigurationError(option, f"must be greater than 0, got {value!r}")
    return float(value)


def flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(option, f"must be True or False, got {value!r}")
    return value


def positive_int(option: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(option, f"must be a positive int, got {value!r}")
    return value


def cookie_name(name: object) -> str:
    if not isinstance(name, str) or not COOKIE_NAME_RE.fullmatch(name):
        raise ConfigurationError(
            "name", f"{name!r} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        )
    return name


def cookie_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or ATTRIBUTE_FORBIDDEN_RE.search(path):
        raise ConfigurationError("path", f"{path!r} must start with / and hold no ;, comma, space or control character")
    return path


def cookie_domain(domain: object) -> str | None:
    if domain is not None and (
        not isinstance(domain, str) or not domain or ATTRIBUTE_FORBIDDEN_RE.search(domain)
    ):
        raise ConfigurationError("domain", f"{domain!r} must be None or a host name with no ;, comma, space or control character")
    return domain


def samesite(value: object, *, secure: bool) -> str:
    normalized = SAMESITE_VALUES.get(value.lower()) if isinstance(value, str) else None
    if normalized is None:
        raise ConfigurationError("samesite", f"must be 'Lax', 'Strict' or 'None' (a string), got {value!r}")
    if normalized == "None" and not secure:
        raise ConfigurationError("samesite", "SameSite=None requires secure=True (browsers reject it otherwise)")
    return normalized


def cookie_prefix(name: str, *, secure: bool, path: str, domain: str | None) -> None:
    """The rules browsers enforce for ``__Secure-`` and ``__Host-`` cookie names."""
    if name.startswith("__Secure-") and not secure:
        raise ConfigurationError("name", "a __Secure- cookie requires secure=True")
    if name.startswith("__Host-") and (not secure or path != "/" or domain is not None):
        raise ConfigurationError("name", "a __Host- cookie requires secure=True, path='/' and no domain")


def touch_interval(value: object, idle_timeout: float | None) -> float | None:
    """Least seconds between two expiry-only writes (default: a tenth of ``idle_timeout``, at most 60)."""
    interval = seconds("touch_interval", value, allow_none=True)
    if interval is None and idle_timeout is not None:
        interval = min(60.0, idle_timeout / 10)
    if interval is not None and idle_timeout is not None and interval >= idle_timeout:
        raise ConfigurationError(
            "touch_interval", f"must be shorter than idle_timeout ({idle_timeout:g}s), or active sessions expire"
        )
    return interval


def conflict_policy(value: object) -> str:
    if value not in CONFLICT_POLICIES:
        raise ConfigurationError("on_conflict", f"must be one of {', '.join(CONFLICT_POLICIES)}, got {value!r}")
    assert isinstance(value, str)
    return value


def cache_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError("cookie_cache_size", f"must be an int >= 0, got {value!r}")
    return value


def bearer(value: object, *, signed: bool) -> bool:
    """The header transport needs signing: a bearer token is the signed session id."""
    enabled = flag("bearer", value)
    if enabled and not signed:
        raise ConfigurationError(
            "bearer", "bearer=True needs signing keys (keys=...): a bearer token is the signed session id"
        )
    return enabled
