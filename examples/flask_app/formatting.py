"""Template filters: times as people read them, a short name for a user agent, a session's lifetime in words."""

from __future__ import annotations

import datetime as dt
import re
import time

from flask import Flask

from kitsession_wsgi.flask import get_manager

#: (pattern, name) in priority order: Edge and Opera also claim to be Chrome, Chrome claims Safari.
_BROWSERS = (
    (re.compile(r"Edg(?:e|A|iOS)?/(\d+)"), "Edge"),
    (re.compile(r"OPR/(\d+)"), "Opera"),
    (re.compile(r"Firefox/(\d+)"), "Firefox"),
    (re.compile(r"HeadlessChrome/(\d+)"), "Headless Chrome"),
    (re.compile(r"(?:Chrome|CriOS)/(\d+)"), "Chrome"),
    (re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/"), "Safari"),
    (re.compile(r"curl/(\d+)"), "curl"),
)
_SYSTEMS = (
    ("Windows", "Windows"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_user_agent(user_agent: str) -> str:
    """A short label such as ``"Firefox 133 on Windows"``; ``"Unknown browser"`` when nothing matches."""
    browser = next(
        (f"{name} {match.group(1)}" for pattern, name in _BROWSERS if (match := pattern.search(user_agent))),
        None,
    )
    system = next((label for marker, label in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"


def absolute_time(timestamp: float) -> str:
    """``2026-11-27 16:40 UTC``."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(timestamp: float) -> str:
    """ISO 8601, for ``<time datetime=...>``."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    """In the largest unit that fits, rounded: ``7 days``, ``1 hour``, ``5 minutes``; ``""`` under a minute.

    Rounded rather than truncated, so a deadline 7 days away, seen a second
    later, still reads "7 days".
    """
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if abs(seconds) >= size:
            count = round(abs(seconds) / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return ""


def relative_time(timestamp: float, now: float | None = None) -> str:
    """``just now``, ``5 minutes ago``, ``in 7 days``, ..."""
    seconds = timestamp - (time.time() if now is None else now)
    amount = duration(seconds)
    if not amount:
        return "just now"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def relative_to_session_clock(timestamp: float) -> str:
    """:func:`relative_time` measured on the sessions' clock (``KITSESSION_CLOCK``), which set the times."""
    return relative_time(timestamp, now=get_manager().clock())


def lifetime_summary() -> str:
    """How long a kept session lasts, in words: ``until 7 days pass without a visit, and 30 days at most``."""
    manager = get_manager()
    idle_timeout, max_age = manager.idle_timeout, manager.max_age
    if idle_timeout is not None and idle_timeout < max_age:
        return f"until {duration(idle_timeout)} pass without a visit, and {duration(max_age)} at most"
    return f"for {duration(max_age)}"


def init_formatting(app: Flask) -> None:
    """Register the filters on ``app``'s Jinja environment."""
    app.jinja_env.filters.update(
        absolute_time=absolute_time,
        duration=duration,
        iso_time=iso_time,
        relative_time=relative_to_session_clock,
        user_agent=describe_user_agent,
    )
    app.jinja_env.globals["lifetime_summary"] = lifetime_summary
