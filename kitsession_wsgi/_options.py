"""The options of a :class:`~kitsession_wsgi.SessionManager`, validated.

:class:`SessionOptions` holds them, normalised, as plain attributes; the
manager and each of its parts read them from the one instance they share.
Each function below checks one option and returns its normalised value, or
raises :class:`~kitsession_wsgi.ConfigurationError` naming the option:
configuration mistakes fail when the manager is built, never on a request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from ._device import record_ip_mode
from .cookies import ATTRIBUTE_FORBIDDEN_RE, COOKIE_NAME_RE
from .errors import ConfigurationError
from .serialization import JSONSerializer, Serializer
from .signing import CookieSigner, TokenSigner, normalize_keys
from .stores.base import SessionStore

__all__ = ["SessionOptions", "days_to_max_age"]

SAMESITE_VALUES = {"lax": "Lax", "strict": "Strict", "none": "None"}
CONFLICT_POLICIES = ("merge", "raise", "overwrite")
#: what a store must offer (``acquire_lock`` / ``release_lock`` come from the base class)
STORE_METHODS = ("get", "create", "set", "touch", "delete", "delete_all_for_user",
                 "get_all_for_user", "get_all", "purge_expired", "create_id")


def check_store(value: object) -> None:
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


def same_site(value: object, *, secure: bool) -> str:
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


def expiry_touch_interval(value: object, idle_timeout: float | None) -> float | None:
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


def bearer_transport(value: object, *, signed: bool) -> bool:
    """The header transport needs signing: a bearer token is the signed session id."""
    enabled = flag("bearer", value)
    if enabled and not signed:
        raise ConfigurationError(
            "bearer", "bearer=True needs signing keys (keys=...): a bearer token is the signed session id"
        )
    return enabled


def days_to_max_age(days: float = 14) -> int:
    """Seconds in ``days`` days, for the ``max_age`` option (svelte-kit-session returned milliseconds).

    .. versionadded:: 0.1
    """
    return int(days * 24 * 60 * 60)


class SessionOptions:
    """The validated options of one :class:`~kitsession_wsgi.SessionManager`.

    Documented on :class:`~kitsession_wsgi.SessionManager`, which shows each
    as a public attribute of the same name (``manager.max_age``).  The manager
    and its parts share one instance and read it at call time, so an option
    replaced on the manager (a test counting store calls swaps ``store``) is
    what every part uses from then on.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        name: str = "session",
        keys: str | bytes | Sequence[str | bytes] | None = None,
        signed: bool | None = None,
        secure: bool = True,
        httponly: bool = True,
        path: str = "/",
        domain: str | None = None,
        samesite: str = "Strict",
        max_age: int | float | timedelta = days_to_max_age(14),
        idle_timeout: int | float | timedelta | None = None,
        rolling: bool = False,
        clock: Callable[[], float] = time.time,
        on_conflict: str = "merge",
        max_data_bytes: int = 524288,
        touch_interval: int | float | timedelta | None = None,
        serializer: Serializer | None = None,
        cookie_cache_size: int = 4096,
        merge_retries: int = 100,
        lock: bool = False,
        lock_timeout: int | float | timedelta = 10.0,
        lock_ttl: int | float | timedelta = 30.0,
        rotate_on_user_change: bool = True,
        bearer: bool = False,
        metrics: bool = True,
        store_timeout: int | float | timedelta = 2.0,
        outage_backoff: int | float | timedelta | None = 1.0,
        record_ip: str = "truncated",
        max_sessions_per_user: int | None = None,
    ) -> None:
        # Each option is documented on SessionManager's docstring: keep the two in step.
        check_store(store)
        self.store = store
        self.name = cookie_name(name)

        normalized_keys = normalize_keys(keys)
        if keys is not None and not normalized_keys and signed is None:
            # An empty list is not "no keys": signing was asked for with nothing to sign with.
            raise ConfigurationError(
                "keys", "holds no key: give at least one, or keys=None with signed=False for unsigned cookies"
            )
        if signed is None:
            signed = bool(normalized_keys)
        self.signed = flag("signed", signed)
        if self.signed and not normalized_keys:
            raise ConfigurationError("signed", "signed=True needs at least one key in keys=")
        self.signer: CookieSigner | None = CookieSigner(normalized_keys) if self.signed else None
        # Bearer tokens are signed apart (keys derived for them), so a token is no cookie and no cookie a token.
        self.token_signer: TokenSigner | None = TokenSigner(normalized_keys) if self.signed else None
        self.bearer = bearer_transport(bearer, signed=self.signed)
        # Log lines name sessions by a keyed hash, so logs cannot be matched to store rows.
        self._log_key = normalized_keys[0] if normalized_keys else secrets.token_bytes(32)

        self.secure = flag("secure", secure)
        self.httponly = flag("httponly", httponly)
        self.rolling = flag("rolling", rolling)
        self.path = cookie_path(path)
        self.domain = cookie_domain(domain)
        self.samesite = same_site(samesite, secure=self.secure)
        cookie_prefix(name, secure=self.secure, path=self.path, domain=self.domain)

        self.max_age = seconds("max_age", max_age) or 0.0
        self.idle_timeout = seconds("idle_timeout", idle_timeout, allow_none=True)
        if self.rolling and self.idle_timeout is None:
            raise ConfigurationError(
                "rolling", "rolling=True moves the idle deadline: set idle_timeout as well (max_age stays the absolute cap)"
            )
        self.touch_interval = expiry_touch_interval(touch_interval, self.idle_timeout)

        if not callable(clock):
            raise ConfigurationError("clock", "must be a zero-argument callable returning Unix time")
        self.clock = clock
        self.on_conflict = conflict_policy(on_conflict)
        self.max_data_bytes = positive_int("max_data_bytes", max_data_bytes)
        self.merge_retries = positive_int("merge_retries", merge_retries)
        self.rotate_on_user_change = flag("rotate_on_user_change", rotate_on_user_change)
        self.lock = flag("lock", lock)
        self.lock_timeout = seconds("lock_timeout", lock_timeout) or 0.0
        self.lock_ttl = seconds("lock_ttl", lock_ttl) or 0.0
        self.cookie_cache_size = cache_size(cookie_cache_size)
        self.serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        self.metrics = flag("metrics", metrics)
        self.store_timeout = seconds("store_timeout", store_timeout) or 0.0
        self.outage_backoff = seconds("outage_backoff", outage_backoff, allow_none=True)
        self.record_ip = record_ip_mode(record_ip)
        self.max_sessions_per_user = (
            None if max_sessions_per_user is None else positive_int("max_sessions_per_user", max_sessions_per_user)
        )

    def log_reference(self, handle: str) -> str:
        """A short keyed hash of a session handle, for log lines (never the id or cookie)."""
        return hmac.new(self._log_key, handle.encode("ascii", "replace"), hashlib.sha256).hexdigest()[:16]
