"""Store timeouts: how the bundled stores bound each driver call by ``store_timeout``.

A store that hangs (a blackholed host, a stopped server) must fail within
``store_timeout`` seconds, never wait for ever, including a store built on a client
the user configured without timeouts.  Each bundled store's ``apply_timeout`` writes
the bound into its driver's settings (a redis-py pool's connection arguments,
pymemcache's client attributes, a peewee database's connect parameters) through
:class:`TimeoutSettings`, which keeps the one rule: a setting left unset, set longer
than the bound (redis-py's own 5 s defaults), or set by the store itself before takes
the bound; a shorter one the user chose is kept.

.. versionadded:: 0.3
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

__all__ = ["DEFAULT_STORE_TIMEOUT", "TimeoutSettings", "settings_of"]

#: seconds, the manager's ``store_timeout`` default, and the bound a store built from a
#: URL has before a manager gives it its own
DEFAULT_STORE_TIMEOUT = 2.0


class TimeoutSettings:
    """The driver settings a store bounds, and which of them are the store's to change."""

    __slots__ = ("_owned",)

    def __init__(self) -> None:
        # (id of the settings mapping, setting name): values this object wrote
        self._owned: set[tuple[int, str]] = set()

    def fill(self, settings: MutableMapping[str, Any], names: tuple[str, ...], value: Any) -> list[str]:
        """Set each of ``names`` in ``settings`` to ``value`` unless the user set a shorter one;
        the names set."""
        changed = []
        for name in names:
            mark = (id(settings), name)
            current = settings.get(name)
            if current is None or mark in self._owned or current > value:
                settings[name] = value
                self._owned.add(mark)
                changed.append(name)
        return changed

    def fill_attributes(self, target: object, names: tuple[str, ...], value: Any) -> list[str]:
        """:meth:`fill` for attributes of ``target`` (a pymemcache client)."""
        return self.fill(vars(target), names, value)


def settings_of(store: object) -> TimeoutSettings:
    """The store's :class:`TimeoutSettings`, made on first use (no constructor has to know)."""
    found: TimeoutSettings | None = getattr(store, "_timeout_settings", None)
    if found is None:
        found = TimeoutSettings()
        setattr(store, "_timeout_settings", found)
    return found


