"""Waiting in tests: poll for a condition until a deadline, never sleep a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Fails the test (``AssertionError`` naming ``what``) when ``timeout`` seconds
    pass first; the last check runs at or after the deadline, so a slow machine
    gets the whole ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting until {what}")
        time.sleep(interval)
