"""How a Flask app's configuration becomes KitSession's, re-read on every request.

Under Flask, Flask's own session settings are the configuration
(``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``,
``SESSION_REFRESH_EACH_REQUEST``, ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``);
``KitSession(...)`` arguments override them and ``KITSESSION_<OPTION>`` keys
override both.  Flask's tests, and apps, change ``app.config`` between
requests, so every request takes a snapshot of the keys below (one
``dict.get`` each) and compares it with the last one: only a changed snapshot
builds a new :class:`~kitsession_wsgi.SessionManager` (over the same store).
The secret key and the permanent lifetime are read as Flask's own session interface
reads them, from ``app.secret_key`` and ``app.permanent_session_lifetime``
(:data:`APP_ATTRIBUTES`), so a subclass's class attribute (``class App(Flask):
secret_key = "..."``) and an assignment after ``init_app`` count.

.. versionadded:: 0.2
"""

from __future__ import annotations

import logging
import operator
import typing as t
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..errors import ConfigurationError
from ..manager import SessionManager, days_to_max_age
from ..serialization import Serializer
from ..stores.base import SessionStore

__all__ = [
    "APP_ATTRIBUTES",
    "EXTENSION_OPTIONS",
    "FLASK_KEYS",
    "FLASK_SESSION_LIVE_KEYS",
    "LIVE_OPTIONS",
    "MANAGER_OPTIONS",
    "REFRESH_ABSOLUTE_LIFETIME",
    "WATCHED_KEYS",
    "ConfigWatch",
    "FlaskSettings",
    "build_settings",
    "explicit_options",
    "flask_samesite",
    "frozen",
]

logger = logging.getLogger("kitsession_wsgi")

#: SessionManager options that ``KITSESSION_<NAME>`` config keys and ``KitSession(...)`` may set
MANAGER_OPTIONS = (
    "name", "keys", "signed", "secure", "httponly", "path", "domain", "samesite", "max_age",
    "idle_timeout", "rolling", "clock", "on_conflict", "max_data_bytes", "touch_interval",
    "cookie_cache_size", "merge_retries", "lock", "lock_timeout", "lock_ttl", "rotate_on_user_change",
    "bearer", "metrics", "store_timeout", "outage_backoff", "record_ip", "max_sessions_per_user",
)
#: options of the extension itself (not passed to the manager)
EXTENSION_OPTIONS = ("retry_after", "store", "permanent", "user_id_from_data", "flask_login")
#: options read on every request (``store`` and ``retry_after`` are read once, by ``init_app``)
LIVE_OPTIONS = MANAGER_OPTIONS + ("permanent", "user_id_from_data")

#: Flask's own session settings, as ``flask.Flask.default_config`` names them
FLASK_KEYS = (
    "SESSION_COOKIE_NAME", "SESSION_COOKIE_DOMAIN", "SESSION_COOKIE_PATH", "APPLICATION_ROOT",
    "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_PARTITIONED", "PERMANENT_SESSION_LIFETIME", "SESSION_REFRESH_EACH_REQUEST",
    "SECRET_KEY", "SECRET_KEY_FALLBACKS", "DEBUG",
)
#: Flask-Session's keys that act per request (the store keys are read once, by ``init_app``)
FLASK_SESSION_LIVE_KEYS = ("SESSION_TYPE", "SESSION_PERMANENT", "SESSION_USE_SIGNER")
#: Every config key a request's snapshot holds, in a fixed order
WATCHED_KEYS = FLASK_KEYS + FLASK_SESSION_LIVE_KEYS + tuple(f"KITSESSION_{o.upper()}" for o in LIVE_OPTIONS)

#: The app attributes Flask's ``SecureCookieSessionInterface`` reads instead of config keys:
#: the snapshot holds them under these names, and they win over the config keys they mirror.
APP_ATTRIBUTES = {"app.secret_key": "SECRET_KEY", "app.permanent_session_lifetime": "PERMANENT_SESSION_LIFETIME"}

#: With ``SESSION_REFRESH_EACH_REQUEST`` Flask slides a permanent session's expiry forever;
#: KitSession slides its idle deadline but keeps an absolute cap: this, or the
#: lifetime itself when that is longer (``KITSESSION_MAX_AGE`` sets it outright).
REFRESH_ABSOLUTE_LIFETIME = days_to_max_age(90)

_APP_KEYS = tuple(APP_ATTRIBUTES)
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
_LIFETIME_OPTIONS = ("max_age", "idle_timeout", "rolling")


class ConfigWatch:
    """Reads the watched keys of one app's config, cheaply, on every request.

    One C-level ``itemgetter`` call over the watched keys the config holds;
    the set of keys held is re-scanned when the config's size changes or a
    held key disappeared.  :meth:`snapshot` returns ``(keys, values)``.  The
    scan's result is one tuple, replaced whole, so concurrent requests never
    pair one scan's keys with another's values.  Given the ``app``, the snapshot also
    holds ``app.secret_key`` and ``app.permanent_session_lifetime`` (:data:`APP_ATTRIBUTES`).
    """

    def __init__(self, config: Mapping[str, t.Any], app: t.Any = None) -> None:
        self.config = config
        # A weak reference: the app holds this (through app.extensions), and a cycle would
        # keep a deleted app alive until the garbage collector runs (Flask's own suite checks it).
        self._app = weakref.ref(app) if app is not None else None
        self._scan = self._rescan()

    def _rescan(self) -> tuple[int, tuple[str, ...], Callable[[Mapping[str, t.Any]], t.Any]]:
        config = self.config
        size = len(config)
        keys = tuple(key for key in WATCHED_KEYS if key in config)
        getter: Callable[[Mapping[str, t.Any]], t.Any]
        if len(keys) == 1:
            getter = lambda config: (config[keys[0]],)  # noqa: E731
        elif keys:
            getter = operator.itemgetter(*keys)
        else:
            getter = lambda config: ()  # noqa: E731
        self._scan = (size, keys, getter)
        return self._scan

    def snapshot(self) -> tuple[tuple[str, ...], tuple[t.Any, ...]]:
        """The watched keys the config holds and their values, in :data:`WATCHED_KEYS` order."""
        config = self.config
        size, keys, getter = self._scan
        if len(config) != size:
            size, keys, getter = self._rescan()
        try:
            values = getter(config)
        except KeyError:
            size, keys, getter = self._rescan()
            values = getter(config)
        app = self._app() if self._app is not None else None
        if app is None:
            return keys, values
        return keys + _APP_KEYS, (*values, app.secret_key, app.permanent_session_lifetime)


def frozen(values: tuple[t.Any, ...]) -> tuple[t.Any, ...]:
    """``values`` with lists and dicts copied, so an in-place change to the config is noticed."""
    return tuple(
        list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        for value in values
    )


@dataclass(frozen=True)
class FlaskSettings:
    """What one snapshot of an app's config means for a request.

    :ivar manager: the :class:`~kitsession_wsgi.SessionManager` for this configuration.
    :ivar permanent: ``session.permanent`` of a session that never set it.
    :ivar refresh: re-send a permanent session's cookie on every response
        (``SESSION_REFRESH_EACH_REQUEST``).
    :ivar partitioned: add ``Partitioned`` to the cookie (``SESSION_COOKIE_PARTITIONED``).
    :ivar available: sessions can be used; ``False`` when there is no usable
        ``SECRET_KEY`` and signing was not turned off (Flask's null session).
    :ivar user_id_from_data: writes to ``flask.session`` link the session to the user its
        ``id`` / ``user_id`` / ``userId`` key names (``KITSESSION_USER_ID_FROM_DATA``; off by
        default: only a ``with_new_session`` view, ``session.user_id = ...`` or a login
        integration links a user, so ``session["id"] = item_id`` is never a login).
    :ivar warning: what to log (once per app, on a request) about a missing ``SECRET_KEY``.
    :ivar removal_cookie: the manager's ``Set-Cookie`` value that clears the cookie
        (before :meth:`finish_cookie`), to tell it from a cookie that sets one.
    """

    manager: SessionManager
    permanent: bool
    refresh: bool
    partitioned: bool
    available: bool
    removal_cookie: str
    warning: str | None = None
    user_id_from_data: bool = False

    def finish_cookie(self, value: str) -> str:
        """``value`` with the attributes the manager does not write (``Partitioned``)."""
        return value + "; Partitioned" if self.partitioned else value


def _seconds(key: str, value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(key, f"must be a timedelta or a number of seconds, got {value!r}")
    return float(value)


def _fallbacks(value: object) -> list[t.Any]:
    """``SECRET_KEY_FALLBACKS`` as a list of keys: a lone str or bytes is one key, never its characters."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(key, (str, bytes)) and key for key in value):
        raise ConfigurationError("SECRET_KEY_FALLBACKS", f"must be a list of keys (str or bytes), got {value!r}")
    return list(value)


def flask_samesite(value: object) -> str | None:
    """``SESSION_COOKIE_SAMESITE`` as Flask accepts it; anything else is a ``ValueError``, as in Flask."""
    if value is None:
        return None
    normalized = _SAMESITE.get(value.lower()) if isinstance(value, str) else None
    if normalized is None:
        raise ConfigurationError("SESSION_COOKIE_SAMESITE", f"must be 'Strict', 'Lax', 'None' or None, got {value!r}")
    return normalized


def explicit_options(defaults: Mapping[str, t.Any], config: Mapping[str, t.Any]) -> dict[str, t.Any]:
    """``KitSession(...)`` arguments, overridden by the config's ``KITSESSION_*`` keys (``None`` is unset)."""
    options = {name: value for name, value in defaults.items() if name in LIVE_OPTIONS}
    for name in LIVE_OPTIONS:
        value = config.get(f"KITSESSION_{name.upper()}")
        if value is not None:
            options[name] = value
    return options


def build_settings(
    watched: Mapping[str, t.Any],
    defaults: Mapping[str, t.Any],
    store: SessionStore,
    serializer: Serializer,
) -> FlaskSettings:
    """The settings (and manager) for one snapshot of the config.

    :param watched: the watched config keys and their values (a missing key is unset).
    :param defaults: the ``KitSession(...)`` keyword arguments.
    :raises ConfigurationError: a bad value, naming its key or option (a ``ValueError``).
    """
    config = {key: watched.get(key) for key in WATCHED_KEYS}
    for attribute, key in APP_ATTRIBUTES.items():
        if attribute in watched:
            config[key] = watched[attribute]
    explicit = explicit_options(defaults, config)
    options: dict[str, t.Any] = {}

    options["name"] = config["SESSION_COOKIE_NAME"] or "session"
    options["domain"] = config["SESSION_COOKIE_DOMAIN"] or None
    options["path"] = config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"] or "/"
    httponly = config["SESSION_COOKIE_HTTPONLY"]
    options["httponly"] = True if httponly is None else bool(httponly)
    # Flask's default (False) is weaker than KitSession's: only an explicit True is taken as is.
    options["secure"] = True if config["SESSION_COOKIE_SECURE"] else not config["DEBUG"]
    samesite = flask_samesite(config["SESSION_COOKIE_SAMESITE"])
    if samesite is not None:
        # None (Flask's default, no attribute) keeps KitSession's SameSite=Strict.
        options["samesite"] = samesite

    refresh_setting = config["SESSION_REFRESH_EACH_REQUEST"]
    refresh = True if refresh_setting is None else bool(refresh_setting)
    if not any(name in explicit for name in _LIFETIME_OPTIONS):
        lifetime_setting = config["PERMANENT_SESSION_LIFETIME"]
        lifetime = days_to_max_age(31) if lifetime_setting is None else _seconds(
            "PERMANENT_SESSION_LIFETIME", lifetime_setting)
        if refresh:
            # Sliding server-side, as Flask's re-sent cookie slides.  Not the manager's ``rolling``:
            # the adapter re-sends a permanent cookie on every response itself, and a
            # non-permanent one has no expiry to move.
            options.update(idle_timeout=lifetime, max_age=max(lifetime, REFRESH_ABSOLUTE_LIFETIME))
        else:
            options["max_age"] = lifetime

    flask_session_mode = config["SESSION_TYPE"] is not None
    use_signer = config["SESSION_USE_SIGNER"]
    secret = config["SECRET_KEY"]
    if secret:
        options["keys"] = [secret, *_fallbacks(config["SECRET_KEY_FALLBACKS"])]
    if use_signer is False:
        options["signed"] = False
    options.update(explicit)
    options.pop("permanent", None)
    user_id_from_data = options.pop("user_id_from_data", False)
    if not isinstance(user_id_from_data, bool):
        raise ConfigurationError("user_id_from_data", f"must be True or False, got {user_id_from_data!r}")
    available = True
    warning = None
    if not options.get("keys") and options.get("signed") is not False:
        if flask_session_mode and not use_signer:
            # Flask-Session's default is unsigned ids: an app switched from it keeps working.
            options["signed"] = False
            warning = ("SECRET_KEY is not set: session cookies are unsigned (Flask-Session's default); "
                       "set SECRET_KEY to sign them")
        else:
            available = False
            options["signed"] = False
            warning = ("SECRET_KEY is not set: the session is unavailable, as in Flask; set SECRET_KEY "
                       "(or KITSESSION_SIGNED=False for unsigned server-side sessions)")
    options["serializer"] = serializer

    permanent_setting = explicit.get("permanent", config["SESSION_PERMANENT"])
    if permanent_setting is None and flask_session_mode:
        permanent_setting = True  # Flask-Session's default
    if permanent_setting is not None and not isinstance(permanent_setting, bool):
        raise ConfigurationError("permanent", f"must be True or False, got {permanent_setting!r}")
    manager = SessionManager(store, **options)
    return FlaskSettings(
        manager=manager,
        permanent=bool(permanent_setting),
        refresh=refresh,
        partitioned=bool(config["SESSION_COOKIE_PARTITIONED"]),
        available=available,
        removal_cookie=manager.remove_session_cookie(),
        warning=warning,
        user_id_from_data=user_id_from_data,
    )
